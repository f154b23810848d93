// torch's HuggingFaceStorageWriter layout ("HF-DCP", torch.distributed.checkpoint.hf_storage):
// plain safetensors files whose __metadata__ holds DCP_SHARDING_INFO, a JSON object
// {fqn: {"saved_offsets": [...]}} placing each stored tensor as a chunk (a box) of the global
// tensor. Files are model-<i>-of-<N>.safetensors (one writer) or
// shard-<rank>-model-<i>-of-<N>.safetensors (save_distributed=True). Nothing records the global
// shapes: they are the max of offset + size over the chunks, as torch's reader takes them.
#pragma once

#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/tensor_layout.h"

namespace ucp::format {

/// The __metadata__ key that marks a safetensors file as an HF-DCP chunk file.
inline constexpr const char* kDcpShardingInfoKey = "DCP_SHARDING_INFO";

/// Whether the header of the safetensors file `path` has DCP_SHARDING_INFO in its __metadata__.
/// Reads the header only, so a file whose data is truncated still answers true; false for
/// anything unreadable (the reader then says what is wrong).
bool has_dcp_sharding_info(const std::string& path);

/// The HF-DCP files `path` names: `path` itself when it is such a .safetensors file, or every
/// *.safetensors of the folder `path` (sorted) when one of them is. Empty when it is not HF-DCP.
std::vector<std::string> find_hf_dcp_files(const std::string& path);

/// One stored chunk: where it sits in the global tensor and where its bytes are.
struct HfDcpChunk {
  std::vector<std::int64_t> offsets;
  std::vector<std::int64_t> sizes;
  TensorLocation src;
};

struct HfDcpTensorChunks {
  std::string name;
  base::DType dtype = base::DType::kF32;
  std::vector<HfDcpChunk> chunks;
};

/// Pure: the layout of tensors stored as chunks (global shape = max of offset + size; pieces by
/// box_pieces; coverage proved). DataLoss naming the tensor when chunks disagree on dtype or rank,
/// overlap or leave elements in no file (a missing shard file).
base::Result<SourceLayout> layout_hf_dcp_chunks(const std::vector<HfDcpTensorChunks>& tensors);

/// Pure: the shard file names of an HF-DCP folder must leave none of model-<i>-of-<N> out, for
/// one N, and (save_distributed) name ranks without a gap. DataLoss naming what is missing.
base::Status check_hf_dcp_file_names(const std::vector<std::string>& file_names);

/// Reads the headers of `files` (every one must carry DCP_SHARDING_INFO) into a layout whose
/// TensorLocation::file indexes `files`. Errors name the file.
base::Result<SourceLayout> read_hf_dcp_layout(const std::vector<std::string>& files);

}  // namespace ucp::format
