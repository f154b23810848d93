// libFuzzer target: ZipReader on arbitrary bytes. It must return a Status or a reader whose every
// record lies inside the input, never read out of bounds (ASan), and find/view/verify_crc must be
// consistent with the records it returned. Seeds: tests/fuzz/corpus/zip/ (real torch.save files).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ucp/format/mapped_file.h"
#include "ucp/format/zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using ucp::format::MappedFile;
  using ucp::format::ZipReader;
  // An exact-size heap copy: any read past the input is a heap overflow ASan reports.
  std::vector<std::byte> bytes(size);
  if (size != 0) std::memcpy(bytes.data(), data, size);
  auto reader = ZipReader::open(MappedFile::from_bytes("fuzz.zip", std::move(bytes)));
  if (!reader.ok()) {
    if (reader.status().message().find("'fuzz.zip'") == std::string::npos) __builtin_trap();
    return 0;
  }
  const auto file = reader->file()->bytes();
  unsigned sink = 0;
  for (const auto& r : reader->records()) {
    if (r.data_offset > file.size() || r.size > file.size() - r.data_offset) __builtin_trap();
    if (r.local_header_offset + 30 > r.data_offset) __builtin_trap();
    const auto whole = reader->view(r);
    if (whole.size() != r.size) __builtin_trap();
    if (r.size != 0) sink += static_cast<unsigned>(whole.front()) + static_cast<unsigned>(whole.back());
    const auto half = reader->view(r, r.size / 2, r.size - r.size / 2);
    if (!half.ok() || half->size() != r.size - r.size / 2) __builtin_trap();
    if (reader->view(r, r.size, 1).ok()) __builtin_trap();
    const auto* found = reader->find(r.name);
    if (found != &r) __builtin_trap();  // Names are unique, so find() returns this very record.
    sink += reader->verify_crc(r).ok() ? 1u : 0u;
  }
  volatile unsigned keep = sink;
  (void)keep;
  return 0;
}
