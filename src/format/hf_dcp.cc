#include "ucp/format/hf_dcp.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "ucp/format/safetensors.h"

namespace ucp::format {
using base::Result;
using base::Status;
namespace fs = std::filesystem;

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// The header JSON of a safetensors file, read without mapping or validating the data.
nlohmann::json read_header_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8] = {};
  if (!in.read(reinterpret_cast<char*>(len), sizeof(len))) return nullptr;
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n == 0 || n > kSafetensorsMaxHeaderSize) return nullptr;
  std::string text(n, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) return nullptr;
  return nlohmann::json::parse(text, nullptr, false);
}

bool is_safetensors_name(const fs::path& p) { return p.extension() == ".safetensors"; }

std::string pad5(std::int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%05lld", static_cast<long long>(v));
  return buf;
}

// saved_offsets of `name` in the parsed DCP_SHARDING_INFO; zeros when absent, as torch reads it.
Result<std::vector<std::int64_t>> saved_offsets(const nlohmann::json& info, const SafetensorsEntry& e,
                                                const std::string& path) {
  std::vector<std::int64_t> offsets(e.shape.size(), 0);
  auto it = info.find(e.name);
  if (it == info.end()) return offsets;
  const std::string where = quoted(path) + ": " + kDcpShardingInfoKey + "['" + e.name + "']";
  if (!it->is_object() || !it->contains("saved_offsets") || !(*it)["saved_offsets"].is_array())
    return base::data_loss(where + " is not {\"saved_offsets\": [...]}");
  const auto& arr = (*it)["saved_offsets"];
  if (arr.size() != e.shape.size())
    return base::data_loss(where + " has " + std::to_string(arr.size()) + " offsets for a chunk of " +
                           std::to_string(e.shape.size()) + " dimensions");
  for (std::size_t d = 0; d < arr.size(); ++d) {
    if (!arr[d].is_number_integer() || arr[d].get<std::int64_t>() < 0)
      return base::data_loss(where + ": offset " + std::to_string(d) + " is not a non-negative integer");
    offsets[d] = arr[d].get<std::int64_t>();
  }
  return offsets;
}

// The global shape of a tensor stored as `chunks`: the max of offset + size per dimension.
Result<std::vector<std::int64_t>> global_shape(const HfDcpTensorChunks& t) {
  const std::size_t rank = t.chunks.front().sizes.size();
  std::vector<std::int64_t> shape(rank, 0);
  for (const HfDcpChunk& c : t.chunks) {
    if (c.sizes.size() != rank || c.offsets.size() != rank)
      return base::data_loss("tensor '" + t.name + "': chunks of " + std::to_string(rank) + " and " +
                             std::to_string(c.sizes.size()) + " dimensions");
    if (c.src.dtype != t.dtype)
      return base::data_loss("tensor '" + t.name + "': chunks of dtypes " + std::string(base::dtype_name(t.dtype)) +
                             " and " + std::string(base::dtype_name(c.src.dtype)));
    for (std::size_t d = 0; d < rank; ++d) {
      if (c.offsets[d] < 0 || c.sizes[d] < 0 || c.offsets[d] > INT64_MAX - c.sizes[d])
        return base::data_loss("tensor '" + t.name + "': a chunk with a negative or overflowing box");
      shape[d] = std::max(shape[d], c.offsets[d] + c.sizes[d]);
    }
  }
  return shape;
}

}  // namespace

bool has_dcp_sharding_info(const std::string& path) {
  const nlohmann::json j = read_header_json(path);
  if (!j.is_object()) return false;
  auto meta = j.find("__metadata__");
  return meta != j.end() && meta->is_object() && meta->contains(kDcpShardingInfoKey);
}

std::vector<std::string> find_hf_dcp_files(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec))
    return is_safetensors_name(path) && has_dcp_sharding_info(path) ? std::vector<std::string>{path}
                                                                    : std::vector<std::string>{};
  if (!fs::is_directory(path, ec)) return {};
  std::vector<std::string> files;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (is_safetensors_name(it->path()) && it->is_regular_file(ec)) files.push_back(it->path().string());
  std::sort(files.begin(), files.end());
  const bool any = std::any_of(files.begin(), files.end(), [](const std::string& f) { return has_dcp_sharding_info(f); });
  return any ? files : std::vector<std::string>{};
}

Result<SourceLayout> layout_hf_dcp_chunks(const std::vector<HfDcpTensorChunks>& tensors) {
  SourceLayout layout;
  for (const HfDcpTensorChunks& t : tensors) {
    if (t.chunks.empty()) return base::internal_error("tensor '" + t.name + "': no chunk");
    LogicalTensor lt;
    lt.name = t.name;
    lt.dtype = t.dtype;
    lt.role = TensorRole::kStored;
    UCP_ASSIGN_OR_RETURN(lt.shape, global_shape(t));
    for (const HfDcpChunk& c : t.chunks) {
      if (c.src.numel == 0) continue;
      Result<std::vector<Piece>> pieces = box_pieces(lt.shape, c.offsets, c.sizes, c.src);
      if (!pieces.ok()) return base::data_loss("tensor '" + t.name + "': " + pieces.status().message());
      lt.pieces.insert(lt.pieces.end(), pieces->begin(), pieces->end());
    }
    std::stable_sort(lt.pieces.begin(), lt.pieces.end(),
                     [](const Piece& a, const Piece& b) { return a.dst_offset < b.dst_offset; });
    UCP_RETURN_IF_ERROR(check_coverage(lt));
    layout.tensors.push_back(std::move(lt));
  }
  return layout;
}

Status check_hf_dcp_file_names(const std::vector<std::string>& file_names) {
  static const std::regex kName(R"(^(?:shard-(\d+)-)?model-(\d+)-of-(\d+)\.safetensors$)");
  std::set<std::int64_t> totals, indices, ranks;
  bool distributed = false;
  for (const std::string& f : file_names) {
    std::smatch m;
    const std::string name = fs::path(f).filename().string();
    if (!std::regex_match(name, m, kName)) continue;
    if (m[1].matched) {
      distributed = true;
      ranks.insert(std::stoll(m[1].str()));
    }
    indices.insert(std::stoll(m[2].str()));
    totals.insert(std::stoll(m[3].str()));
  }
  if (totals.empty()) return Status();
  if (totals.size() > 1)
    return base::data_loss("shard files name different totals (model-<i>-of-" + pad5(*totals.begin()) + " and -of-" +
                           pad5(*totals.rbegin()) + "): files of two checkpoints mixed");
  const std::int64_t n = *totals.begin();
  for (std::int64_t i = 1; i <= n; ++i)
    if (!indices.count(i))
      return base::data_loss("no file model-" + pad5(i) + "-of-" + pad5(n) + ".safetensors" +
                             (distributed ? " of any rank" : "") + ": a shard file is missing");
  for (std::int64_t r = ranks.empty() ? 0 : *ranks.begin(); !ranks.empty() && r <= *ranks.rbegin(); ++r)
    if (!ranks.count(r)) return base::data_loss("no file shard-" + pad5(r) + "-model-*: the files of a rank are missing");
  return Status();
}

Result<SourceLayout> read_hf_dcp_layout(const std::vector<std::string>& files) {
  std::vector<HfDcpTensorChunks> tensors;
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < files.size(); ++i) {
    UCP_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(files[i]));
    auto meta = file.metadata().find(kDcpShardingInfoKey);
    if (meta == file.metadata().end())
      return base::data_loss(quoted(files[i]) + ": no " + kDcpShardingInfoKey + " in __metadata__, unlike the other "
                             "safetensors files beside it (HF-DCP shards and other files mixed?)");
    const nlohmann::json info = nlohmann::json::parse(meta->second, nullptr, false);
    if (!info.is_object())
      return base::data_loss(quoted(files[i]) + ": " + kDcpShardingInfoKey + " is not a JSON object");
    for (const SafetensorsEntry& e : file.entries()) {
      UCP_ASSIGN_OR_RETURN(std::vector<std::int64_t> offsets, saved_offsets(info, e, files[i]));
      std::uint64_t numel = 1;
      for (std::int64_t s : e.shape) numel *= static_cast<std::uint64_t>(s);
      auto [it, fresh] = index.emplace(e.name, tensors.size());
      if (fresh) tensors.push_back({e.name, e.dtype, {}});
      const TensorLocation src{static_cast<std::uint32_t>(i), file.data_start() + e.begin, numel, e.dtype};
      tensors[it->second].chunks.push_back({std::move(offsets), e.shape, src});
    }
  }
  return layout_hf_dcp_chunks(tensors);
}

}  // namespace ucp::format
