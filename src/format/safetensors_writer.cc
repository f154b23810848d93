// Writing safetensors files: plan the layout (header bytes + absolute offsets) once, so callers can
// write tensors in any order, from any thread or rank, with pwrite.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ucp/base/checked_math.h"
#include "ucp/format/safetensors.h"

namespace ucp::format {
namespace {

using base::DType;
using base::Result;
using base::Status;
using Json = nlohmann::ordered_json;

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

/// Position in the reference implementation's `Dtype` enum, which is declared in increasing
/// alignment order; its serializer sorts by this, descending, then by name. Following it exactly
/// (not just by element size) makes our layout match the reference byte for byte. -1: no such
/// safetensors dtype.
int reference_rank(DType t) {
  switch (t) {
    case DType::kBool: return 0;
    case DType::kU8: return 1;
    case DType::kI8: return 2;
    case DType::kF8E5M2: return 3;
    case DType::kF8E4M3: return 4;
    case DType::kI16: return 5;
    case DType::kU16: return 6;
    case DType::kF16: return 7;
    case DType::kBF16: return 8;
    case DType::kI32: return 9;
    case DType::kU32: return 10;
    case DType::kF32: return 11;
    case DType::kC64: return 12;
    case DType::kF64: return 13;
    case DType::kI64: return 14;
    case DType::kU64: return 15;
    case DType::kC128: return -1;
  }
  return -1;
}

void store_u64_le(std::uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

Status write_error(const std::string& path, std::uint64_t offset, std::uint64_t len, int err) {
  std::string msg = in_quotes(path) + ": writing " + std::to_string(len) + " bytes at offset " +
                    std::to_string(offset) + " failed: " + errno_text(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return base::resource_exhausted(std::move(msg));
  return base::failed_precondition(std::move(msg));
}

/// pwrite until done: a single call may write less than asked (signals, >2 GiB requests).
Status pwrite_all(int fd, const std::string& path, const void* data, std::uint64_t len, std::uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  std::uint64_t done = 0;
  while (done < len) {
    const ssize_t n = ::pwrite(fd, p + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return write_error(path, offset + done, len - done, errno);
    }
    // A zero-byte write on a regular file means no space could be allocated.
    if (n == 0) return write_error(path, offset + done, len - done, ENOSPC);
    done += static_cast<std::uint64_t>(n);
  }
  return Status();
}

}  // namespace

namespace {

// Each tensor's byte size, after checking its name, dtype and shape.
Result<std::vector<std::uint64_t>> checked_tensor_sizes(std::span<const SafetensorsTensorSpec> tensors) {
  std::vector<std::uint64_t> sizes(tensors.size());
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsTensorSpec& t = tensors[i];
    if (t.name == "__metadata__") {
      return base::invalid_argument("safetensors tensor name '__metadata__' is reserved for the metadata map");
    }
    if (!names.insert(t.name).second) {
      return base::invalid_argument("safetensors: duplicate tensor name " + in_quotes(t.name));
    }
    if (reference_rank(t.dtype) < 0) {
      return base::unimplemented("safetensors has no dtype for " + std::string(base::dtype_name(t.dtype)) +
                                 " (tensor " + in_quotes(t.name) + ")");
    }
    auto numel = base::checked_numel(t.shape);
    auto nbytes = numel ? base::checked_mul(*numel, base::dtype_size(t.dtype)) : std::nullopt;
    if (!nbytes) {
      return base::invalid_argument("safetensors: tensor " + in_quotes(t.name) +
                                    " has a negative dimension or a byte size that overflows 64 bits");
    }
    sizes[i] = *nbytes;
  }
  return sizes;
}

}  // namespace

Result<SafetensorsLayout> plan_safetensors(std::span<const SafetensorsTensorSpec> tensors,
                                           const std::map<std::string, std::string>& metadata) {
  UCP_ASSIGN_OR_RETURN(const std::vector<std::uint64_t> sizes, checked_tensor_sizes(tensors));

  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const int ra = reference_rank(tensors[a].dtype);
    const int rb = reference_rank(tensors[b].dtype);
    if (ra != rb) return ra > rb;
    return tensors[a].name < tensors[b].name;  // bytewise, like Rust's String ordering
  });

  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::vector<std::uint64_t> relative(tensors.size());
  std::uint64_t cursor = 0;
  for (std::size_t i : order) {
    const SafetensorsTensorSpec& t = tensors[i];
    auto end = base::checked_add(cursor, sizes[i]);
    if (!end) return base::invalid_argument("safetensors: total tensor size overflows 64 bits");
    Json entry = Json::object();
    entry["dtype"] = std::string(base::safetensors_dtype(t.dtype));
    entry["shape"] = t.shape;
    entry["data_offsets"] = Json::array({cursor, *end});
    header[t.name] = std::move(entry);
    relative[i] = cursor;
    cursor = *end;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {
    // The only failure dump() has: a name or metadata string that is not valid UTF-8.
    return base::invalid_argument(std::string("safetensors header cannot be encoded as JSON: ") + e.what());
  }
  // Space padding so that 8 + N is a multiple of 8: the buffer starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > kSafetensorsMaxHeaderSize) {
    return base::invalid_argument("safetensors header would be " + std::to_string(text.size()) +
                                  " bytes, over the " + std::to_string(kSafetensorsMaxHeaderSize) +
                                  "-byte limit readers accept; split the tensors over more files");
  }

  SafetensorsLayout layout;
  layout.header.resize(8);
  store_u64_le(text.size(), layout.header.data());
  layout.header += text;
  const std::uint64_t data_start = layout.header.size();
  auto total = base::checked_add(data_start, cursor);
  if (!total) return base::invalid_argument("safetensors: total file size overflows 64 bits");
  layout.total_size = *total;
  layout.placements.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    // relative[i] + sizes[i] <= cursor, so this cannot overflow once total did not.
    layout.placements.push_back({tensors[i].name, data_start + relative[i], sizes[i]});
  }
  return layout;
}

Status write_safetensors_file(const std::string& path, std::span<const SafetensorsBlob> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  specs.reserve(tensors.size());
  for (const SafetensorsBlob& b : tensors) specs.push_back(b.spec);
  auto planned = plan_safetensors(specs, metadata);
  if (!planned.ok()) return std::move(planned).take_status().annotate("while writing '" + path + "'");
  const SafetensorsLayout& layout = *planned;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].data.size() != layout.placements[i].size) {
      return base::invalid_argument(in_quotes(path) + ": tensor " + in_quotes(tensors[i].spec.name) + " has " +
                                    std::to_string(tensors[i].data.size()) + " bytes of data, but dtype " +
                                    std::string(base::safetensors_dtype(tensors[i].spec.dtype)) +
                                    " and its shape need " + std::to_string(layout.placements[i].size));
    }
  }

  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    std::string msg = in_quotes(path) + ": cannot create file: " + errno_text(err);
    if (err == ENOENT) return base::not_found(std::move(msg));
    if (err == ENOSPC || err == EDQUOT) return base::resource_exhausted(std::move(msg));
    return base::failed_precondition(std::move(msg));
  }
  // Only a regular file we truncated may be removed on failure (never a device such as /dev/full).
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  Status status = pwrite_all(fd, path, layout.header.data(), layout.header.size(), 0);
  for (std::size_t i = 0; status.ok() && i < tensors.size(); ++i) {
    status = pwrite_all(fd, path, tensors[i].data.data(), tensors[i].data.size(), layout.placements[i].file_offset);
  }
  // close() can report a deferred write error (NFS, quota): it counts as a failed write.
  if (::close(fd) != 0 && status.ok()) status = write_error(path, 0, layout.total_size, errno);
  if (!status.ok() && regular) ::unlink(path.c_str());  // never leave a truncated file that looks like output
  return status;
}

}  // namespace ucp::format
