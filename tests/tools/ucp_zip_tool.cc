// Test-only CLI over the zip reader and writer, driven by tests/oracle/test_zip_python.py, which
// checks everything it prints or writes against Python's zipfile:
//
//   ucp_zip_tool list FILE [FILE ...]               one JSON line per file: its records, or its error
//   ucp_zip_tool write OUT [--align N] NAME=PATH ...  write_zip_file with each PATH's bytes as NAME
//   ucp_zip_tool sparse64 OUT                        a sparse >4 GiB archive (5 GiB zero record)
//   ucp_zip_tool many OUT N                          N records "r/<i>" holding the decimal text of i
//
// Names are printed as hex so that any byte sequence survives JSON. Exit status 0 on success, 1 if
// any file failed (list still prints every file), 2 on bad usage.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ucp/base/status.h"
#include "ucp/format/crc32.h"
#include "ucp/format/zip_reader.h"
#include "ucp/format/zip_writer.h"

namespace {

using nlohmann::json;
using ucp::base::Status;
namespace fmt = ucp::format;

std::string to_hex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: ucp_zip_tool list FILE...\n"
               "       ucp_zip_tool write OUT [--align N] NAME=PATH...\n"
               "       ucp_zip_tool sparse64 OUT\n"
               "       ucp_zip_tool many OUT N\n");
  return 2;
}

int fail(const Status& s) {
  std::fprintf(stderr, "%s\n", s.to_string().c_str());
  return 1;
}

int list(const std::vector<std::string>& files) {
  int rc = 0;
  for (const std::string& path : files) {
    json line;
    line["path"] = path;
    auto reader = fmt::ZipReader::open_path(path);
    if (!reader.ok()) {
      line["error"] = reader.status().to_string();
      line["code"] = std::string(ucp::base::status_code_name(reader.status().code()));
      rc = 1;
    } else {
      json records = json::array();
      for (const fmt::ZipRecord& r : reader->records()) {
        // The CRC of records over 1 GiB is not recomputed: the sparse test's 5 GiB hole would cost
        // seconds and gigabytes of page cache; its CRC is checked against a known value instead.
        const bool check = r.size <= (std::uint64_t{1} << 30);
        records.push_back({{"name_hex", to_hex(r.name)},
                           {"header_offset", r.local_header_offset},
                           {"data_offset", r.data_offset},
                           {"size", r.size},
                           {"crc32", r.crc32},
                           {"crc_ok", check ? json(reader->verify_crc(r).ok()) : json(nullptr)}});
      }
      line["records"] = std::move(records);
    }
    std::cout << line.dump() << "\n";
  }
  return rc;
}

bool read_file(const std::string& path, std::vector<std::byte>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  out.resize(chars.size());
  for (std::size_t i = 0; i < chars.size(); ++i) out[i] = static_cast<std::byte>(chars[i]);
  return true;
}

int write(const std::string& out, const std::vector<std::string>& args) {
  std::uint64_t align = 64;
  std::vector<std::string> names;
  std::vector<std::vector<std::byte>> contents;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--align" && i + 1 < args.size()) {
      align = std::stoull(args[++i]);
      continue;
    }
    const auto eq = args[i].rfind('=');
    if (eq == std::string::npos) return usage();
    names.push_back(args[i].substr(0, eq));
    contents.emplace_back();
    if (!read_file(args[i].substr(eq + 1), contents.back())) {
      std::fprintf(stderr, "cannot read '%s'\n", args[i].substr(eq + 1).c_str());
      return 1;
    }
  }
  std::vector<fmt::ZipBlob> blobs;
  for (std::size_t i = 0; i < names.size(); ++i) blobs.push_back({names[i], contents[i]});
  Status s = fmt::write_zip_file(out, blobs, align);
  return s.ok() ? 0 : fail(s);
}

// Writes headers and small records of a planned layout with pwrite; the rest stays a hole.
int write_sparse(const std::string& out, const fmt::ZipLayout& layout,
                 const std::vector<std::vector<std::byte>>& small, const std::vector<std::uint32_t>& crcs) {
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(layout.total_size)) != 0) {
    std::perror(out.c_str());
    return 1;
  }
  auto put = [&](std::span<const std::byte> b, std::uint64_t at) {
    return ::pwrite(fd, b.data(), b.size(), static_cast<off_t>(at)) == static_cast<ssize_t>(b.size());
  };
  bool ok = true;
  for (std::size_t i = 0; i < layout.entries.size(); ++i) {
    ok = ok && put(fmt::zip_local_header(layout, i, crcs[i]), layout.entries[i].header_offset);
    ok = ok && put(small[i], layout.entries[i].data_offset);
  }
  ok = ok && put(fmt::zip_central_directory(layout, crcs), layout.central_directory_offset);
  ok = (::close(fd) == 0) && ok;
  if (!ok) std::perror(out.c_str());
  return ok ? 0 : 1;
}

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) out[i] = static_cast<std::byte>(s[i]);
  return out;
}

// CRC-32 of `len` zero bytes from a 4 KiB block, by doubling with crc32_combine.
std::uint32_t zeros_crc(std::uint64_t len) {
  const std::vector<std::byte> block(4096);
  std::uint32_t piece = fmt::crc32_update(0, block);
  std::uint64_t piece_len = block.size();
  std::uint32_t crc = fmt::crc32_update(0, std::span<const std::byte>(block).first(len % block.size()));
  for (std::uint64_t n = len / block.size(); n != 0; n >>= 1) {
    if (n & 1) crc = fmt::crc32_combine(crc, piece, piece_len);
    piece = fmt::crc32_combine(piece, piece, piece_len);
    piece_len *= 2;
  }
  return crc;
}

int sparse64(const std::string& out) {
  constexpr std::uint64_t kBig = std::uint64_t{5} << 30;
  const std::vector<fmt::ZipEntrySpec> specs = {
      {"big/data.pkl", 10}, {"big/data/0", kBig}, {"big/data/1", 10}, {"big/version", 2}};
  const std::vector<std::vector<std::byte>> small = {bytes_of("0123456789"), {}, bytes_of("tail-bytes"),
                                                     bytes_of("3\n")};
  std::vector<std::uint32_t> crcs;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    crcs.push_back(i == 1 ? zeros_crc(kBig) : fmt::crc32_update(0, small[i]));
  }
  return write_sparse(out, fmt::plan_zip_layout(specs), small, crcs);
}

int many(const std::string& out, std::uint64_t n) {
  std::vector<std::string> texts;
  std::vector<fmt::ZipBlob> blobs;
  texts.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) texts.push_back(std::to_string(i));
  for (std::uint64_t i = 0; i < n; ++i) {
    blobs.push_back({"r/" + texts[i], std::as_bytes(std::span(texts[i].data(), texts[i].size()))});
  }
  Status s = fmt::write_zip_file(out, blobs);
  return s.ok() ? 0 : fail(s);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) return usage();
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "list") return list(rest);
  if (command == "write") return write(rest[0], std::vector<std::string>(rest.begin() + 1, rest.end()));
  if (command == "sparse64" && rest.size() == 1) return sparse64(rest[0]);
  if (command == "many" && rest.size() == 2) return many(rest[0], std::stoull(rest[1]));
  return usage();
}
