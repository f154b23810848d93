// The plan of `to-dcp`: a PyTorch DCP folder pre-chunked for M training ranks the way FSDP2 shards
// (Shard(0), torch.chunk's rule: chunks of ceil(rows / M) rows, the last ones short or empty), so
// that each rank of the next run reads its own box once. Data file `__{r}_0.distcp` holds rank r's
// chunks back to back, each a whole torch.save zip of that chunk (torch's item format); `.metadata`
// is a small file rank 0 writes last, after every data byte is in place. Pure.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/dcp.h"
#include "ucp/format/value.h"
#include "ucp/plan/file_plan.h"
#include "ucp/plan/source_layout.h"

namespace ucp::plan {

struct DcpPlanOptions {
  int target_world_size = 1;               ///< M: the ranks the chunks are cut for.
  std::optional<base::DType> float_dtype;  ///< Floating tensors cast to this; unset: kept as stored.
  std::map<std::string, base::DType> dtype_of;  ///< Floating tensors by key (to-dcp --like), unless float_dtype.
};

/// A 0-d tensor whose value is known when planning (Adam's `step` per parameter), written whole
/// into one rank's file, as torch stores a replicated tensor once.
struct DcpScalar {
  std::string fqn;
  format::dcp::StatePath path;  ///< In the nested state dict (format::dcp::TensorItem::path).
  base::DType dtype = base::DType::kF32;
  std::vector<std::byte> value;   ///< dtype_size(dtype) bytes, little-endian.
};

/// A non-tensor item (param_groups, a hyper-parameter): a Python object torch.save'd as the item.
struct DcpObject {
  std::string fqn;
  format::dcp::StatePath path;
  format::ValuePtr value;  ///< Plain data, or tensors inside it whose storages hold their bytes.
};

/// What a DCP holds beyond the layout's tensors: where every key sits in the nested state dict the
/// loader rebuilds (keys not named here are top-level), small tensors and non-tensor items.
struct DcpExtras {
  std::map<std::string, format::dcp::StatePath> paths;  ///< Layout tensor name -> path.
  std::vector<DcpScalar> scalars;
  std::vector<DcpObject> objects;
  std::vector<std::string> order;  ///< Keys in .metadata order (a copy keeps its source's); empty: as planned.
};

/// Builds the plan (options.world_size = ranks running the conversion). Tied names are written as
/// tensors of their own (DCP has no aliasing). The layout's tensor names are the DCP keys.
base::Result<FilePlan> plan_dcp(const SourceLayout& layout, const std::vector<std::string>& source_paths,
                                const PlanOptions& options, const DcpPlanOptions& dcp, const DcpExtras& extras = {});

/// Rows [begin, end) of dimension 0 that rank `rank` of `world` holds under torch.chunk's rule.
std::pair<std::int64_t, std::int64_t> chunk_rows(std::int64_t rows, int world, int rank);

}  // namespace ucp::plan
