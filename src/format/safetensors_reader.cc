// Reading safetensors files: validate the whole header up front so that later views cannot go out
// of bounds, then hand out zero-copy spans into the mapping.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <utility>
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

constexpr std::uint64_t kLengthPrefix = 8;

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::uint64_t load_u64_le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

/// "byte 0x5b ('[')": how a message shows one raw byte.
std::string describe_byte(char c) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto u = static_cast<unsigned char>(c);
  std::string out = "byte 0x";
  out.push_back(kDigits[u >> 4]);
  out.push_back(kDigits[u & 0xf]);
  if (u >= 0x20 && u < 0x7f) out += std::string(" ('") + c + "')";
  return out;
}

/// Reads a JSON integer that must be >= 0 (shape dims, offsets). nullopt for anything else.
std::optional<std::uint64_t> non_negative_int(const Json& j) {
  if (j.is_number_unsigned()) return j.get<std::uint64_t>();
  if (j.is_number_integer()) {
    auto v = j.get<std::int64_t>();
    if (v >= 0) return static_cast<std::uint64_t>(v);
  }
  return std::nullopt;
}

/// Parses `text`, failing on a key repeated inside one object: nlohmann keeps the last value of a
/// duplicate silently, while the safetensors spec forbids duplicates (two readers could otherwise
/// disagree on what the file holds).
Result<Json> parse_header_json(const std::string& path, std::string_view text, std::uint64_t n) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  int duplicate_depth = 0;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
          duplicate_depth = depth;
        }
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  Json root;
  try {
    root = Json::parse(text.begin(), text.end(), callback);
  } catch (const Json::exception& e) {
    return base::data_loss(in_quotes(path) + ": safetensors header (" + std::to_string(n) +
                           " bytes at offset 8) is not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) {
    return base::data_loss(in_quotes(path) + ": safetensors header has duplicate key " + in_quotes(duplicate) +
                           (duplicate_depth <= 1 ? " at top level" : " inside an entry"));
  }
  return root;
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::open(path));
  return parse(std::move(file));
}

Result<SafetensorsFile> SafetensorsFile::parse(std::shared_ptr<const MappedFile> file) {
  if (!file) return base::internal_error("SafetensorsFile::parse given no file");
  const std::string& path = file->path();
  const std::uint64_t file_size = file->size();
  const std::string where = in_quotes(path);
  if (file_size < kLengthPrefix) {
    return base::data_loss(where + ": file is " + std::to_string(file_size) +
                           " bytes, too small for the 8-byte safetensors header length");
  }
  const std::uint64_t n = load_u64_le(file->bytes().data());
  if (n > kSafetensorsMaxHeaderSize) {
    return base::data_loss(where + ": safetensors header length " + std::to_string(n) +
                           " at offset 0 exceeds the " + std::to_string(kSafetensorsMaxHeaderSize) +
                           "-byte limit");
  }
  // n <= 1e8, so 8 + n cannot overflow.
  const std::uint64_t data_start = kLengthPrefix + n;
  if (data_start > file_size) {
    return base::data_loss(where + ": safetensors header of " + std::to_string(n) +
                           " bytes at offset 8 runs past end of file (size " + std::to_string(file_size) + ")");
  }
  const std::string_view text(reinterpret_cast<const char*>(file->bytes().data()) + kLengthPrefix, n);
  if (text.empty() || text.front() != '{') {
    return base::data_loss(where + ": safetensors header at offset 8 must be a JSON object starting with '{'" +
                           (text.empty() ? std::string(" but is empty") : ", found " + describe_byte(text.front())));
  }
  // nlohmann's lexer takes a NUL byte for end of input and would ignore whatever follows it; raw
  // NUL is never valid JSON, so reject it here (the reference reader does too).
  if (auto nul = text.find('\0'); nul != std::string_view::npos) {
    return base::data_loss(where + ": safetensors header has a NUL byte at offset " + std::to_string(8 + nul) +
                           "; JSON cannot contain one");
  }
  UCP_ASSIGN_OR_RETURN(Json root, parse_header_json(path, text, n));
  if (!root.is_object()) {
    return base::data_loss(where + ": safetensors header is JSON " + std::string(root.type_name()) +
                           ", expected an object");
  }

  const std::uint64_t buffer_size = file_size - data_start;
  SafetensorsFile out;
  out.file_ = file;
  out.data_start_ = data_start;
  out.entries_.reserve(root.size());
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        return base::data_loss(where + ": \"__metadata__\" is JSON " + std::string(value.type_name()) +
                               ", expected an object of string values");
      }
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return base::data_loss(where + ": \"__metadata__\" value for key " + in_quotes(mk) + " is JSON " +
                                 std::string(mv.type_name()) + ", expected a string");
        }
        out.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    const std::string tensor = where + ": tensor " + in_quotes(key);
    if (!value.is_object()) {
      return base::data_loss(tensor + " is JSON " + std::string(value.type_name()) + ", expected an object");
    }
    SafetensorsEntry entry;
    entry.name = key;

    auto dtype_it = value.find("dtype");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      return base::data_loss(tensor + " has no string \"dtype\"");
    }
    const std::string dtype_str = dtype_it->get<std::string>();
    auto dtype = base::dtype_from_safetensors(dtype_str);
    // "C128" is our own name for complex128; safetensors has no such dtype.
    if (!dtype || *dtype == DType::kC128) {
      return base::unimplemented(tensor + " has dtype " + in_quotes(dtype_str) +
                                 ", which ucp-reshard does not support");
    }
    entry.dtype = *dtype;

    auto shape_it = value.find("shape");
    if (shape_it == value.end() || !shape_it->is_array()) {
      return base::data_loss(tensor + " has no \"shape\" array");
    }
    for (const Json& d : *shape_it) {
      auto dim = non_negative_int(d);
      if (!dim || *dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return base::data_loss(tensor + " has shape entry " + d.dump() + ", expected a non-negative integer");
      }
      entry.shape.push_back(static_cast<std::int64_t>(*dim));
    }

    auto offsets_it = value.find("data_offsets");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      return base::data_loss(tensor + " has no \"data_offsets\" array [begin, end]");
    }
    auto begin = non_negative_int((*offsets_it)[0]);
    auto end = non_negative_int((*offsets_it)[1]);
    if (!begin || !end) {
      return base::data_loss(tensor + " has data_offsets " + offsets_it->dump() +
                             ", expected two non-negative integers");
    }
    const std::string range = "[" + std::to_string(*begin) + ", " + std::to_string(*end) + "]";
    if (*begin > *end) return base::data_loss(tensor + " has data_offsets " + range + " with begin > end");
    if (*end > buffer_size) {
      return base::data_loss(tensor + " has data_offsets " + range + " past the end of the data buffer (" +
                             std::to_string(buffer_size) + " bytes at offset " + std::to_string(data_start) + ")");
    }
    auto numel = base::checked_numel(entry.shape);
    auto nbytes = numel ? base::checked_mul(*numel, base::dtype_size(entry.dtype)) : std::nullopt;
    if (!nbytes) return base::data_loss(tensor + " has a shape whose byte size overflows 64 bits");
    if (*end - *begin != *nbytes) {
      return base::data_loss(tensor + " has data_offsets " + range + " spanning " + std::to_string(*end - *begin) +
                             " bytes, but dtype " + dtype_str + " and shape " + shape_it->dump() + " need " +
                             std::to_string(*nbytes));
    }
    entry.begin = *begin;
    entry.end = *end;
    out.index_.emplace(entry.name, out.entries_.size());
    out.entries_.push_back(std::move(entry));
  }

  // The tensors must tile the buffer exactly: no overlap (aliasing) and no hole (hidden payload).
  std::vector<std::size_t> by_offset(out.entries_.size());
  std::iota(by_offset.begin(), by_offset.end(), std::size_t{0});
  std::sort(by_offset.begin(), by_offset.end(), [&](std::size_t a, std::size_t b) {
    const auto& ea = out.entries_[a];
    const auto& eb = out.entries_[b];
    return std::pair(ea.begin, ea.end) < std::pair(eb.begin, eb.end);
  });
  std::uint64_t cursor = 0;
  const SafetensorsEntry* previous = nullptr;
  for (std::size_t i : by_offset) {
    const SafetensorsEntry& e = out.entries_[i];
    if (e.begin < cursor) {
      return base::data_loss(where + ": tensor " + in_quotes(e.name) + " data_offsets [" + std::to_string(e.begin) +
                             ", " + std::to_string(e.end) + "] overlap tensor " + in_quotes(previous->name) +
                             " which ends at " + std::to_string(cursor));
    }
    if (e.begin > cursor) {
      return base::data_loss(where + ": data buffer has a hole [" + std::to_string(cursor) + ", " +
                             std::to_string(e.begin) + ") not covered by any tensor, before tensor " +
                             in_quotes(e.name));
    }
    cursor = e.end;
    previous = &e;
  }
  if (cursor != buffer_size) {
    return base::data_loss(where + ": data buffer is " + std::to_string(buffer_size) + " bytes but tensors cover only [0, " +
                           std::to_string(cursor) + "); " + std::to_string(buffer_size - cursor) +
                           " trailing bytes belong to no tensor");
  }
  return out;
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::byte> SafetensorsFile::view(const SafetensorsEntry& e) const {
  return file_->bytes().subspan(data_start_ + e.begin, e.end - e.begin);
}

}  // namespace ucp::format
