#include "ucp/plan/source_layout.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "ucp/base/checked_math.h"

namespace ucp::plan {
using base::Result;
using base::Status;
using format::NamedShape;
using format::TensorLocation;
using format::ZeroCheckpoint;

namespace {

// A flat vector made of consecutive source runs (a rank's partitions, or one partition).
// `take` maps [begin, begin+count) of the virtual vector to pieces, splitting at run boundaries.
class VirtualVector {
 public:
  void append(const TensorLocation& run) {
    starts_.push_back(size_);
    runs_.push_back(run);
    size_ += run.numel;
  }
  std::uint64_t size() const { return size_; }

  void take(std::uint64_t begin, std::uint64_t count, std::uint64_t dst_offset, std::vector<Piece>& out) const {
    auto it = std::upper_bound(starts_.begin(), starts_.end(), begin);
    std::size_t i = static_cast<std::size_t>(it - starts_.begin()) - 1;
    while (count > 0) {
      const std::uint64_t within = begin - starts_[i];
      const std::uint64_t n = std::min(count, runs_[i].numel - within);
      if (n > 0) out.push_back({runs_[i].slice(within, n), dst_offset});
      begin += n;
      dst_offset += n;
      count -= n;
      ++i;
    }
  }

 private:
  std::vector<std::uint64_t> starts_;
  std::vector<TensorLocation> runs_;
  std::uint64_t size_ = 0;
};

// ZeRO-1/2 and BF16_Optimizer: group g is the concatenation, in rank order, of every rank's saved
// fp32 partition (ZeRO-1/2 save them without padding, BF16_Optimizer with, at the end); parameters
// sit back to back in param_shapes order.
using RankRuns = std::vector<std::vector<TensorLocation>>;  ///< [rank][flat group]

RankRuns runs_of_fp32(const ZeroCheckpoint& ck) {
  RankRuns out;
  for (const auto& o : ck.optims) out.push_back(o.fp32);
  return out;
}

// A state some flat groups do not have (Muon with auxiliary Adam: momentum_buffer in the Muon
// groups, exp_avg/exp_avg_sq in the others) stands in as runs of this file index; parameters made
// only of such runs have no such state.
constexpr std::uint32_t kAbsentState = std::numeric_limits<std::uint32_t>::max();

RankRuns runs_of(const ZeroCheckpoint& ck, const std::string& key) {
  RankRuns out;
  for (const auto& o : ck.optims) {
    std::vector<TensorLocation> runs;
    for (std::size_t g = 0; g < o.fp32.size(); ++g) {
      TensorLocation run{kAbsentState, 0, format::moment_partition_numel(ck, o, g), base::DType::kF32};
      if (g < o.partition_states.size())
        for (const auto& [k, loc] : o.partition_states[g])
          if (k == key) run = loc;
      runs.push_back(run);
    }
    out.push_back(std::move(runs));
  }
  return out;
}

// Concatenating every rank's run of group g works for every state: ZeRO-1/2 fp32 partitions
// lose only trailing padding (which sits after the last parameter), while the moments and
// BF16_Optimizer partitions keep it (S_g per rank); parameters start at the same offsets either way.
Status add_flat_group_params(const ZeroCheckpoint& ck, std::size_t g, std::vector<LogicalTensor>& out,
                             const RankRuns& runs) {
  VirtualVector flat;
  for (const auto& rank_runs : runs) flat.append(rank_runs[g]);
  std::uint64_t offset = 0;
  for (const NamedShape& p : ck.models[0].param_shapes[g]) {
    LogicalTensor t{p.name, p.shape, base::DType::kF32, TensorRole::kTrainable, -1, {}};
    const std::uint64_t n = p.numel();
    if (offset + n > flat.size())
      return base::data_loss("parameter '" + p.name + "' of group " + std::to_string(g) + " ends at element " +
                             std::to_string(offset + n) + " but the fp32 partitions of all " + std::to_string(ck.dp) +
                             " ranks hold only " + std::to_string(flat.size()) + " elements");
    flat.take(offset, n, 0, t.pieces);
    if (!t.pieces.empty()) t.dtype = t.pieces.front().src.dtype;
    offset += n;
    out.push_back(std::move(t));
  }
  // Everything past the last parameter must be alignment padding (to a multiple of 2 x dp),
  // exactly as DeepSpeed's own consolidation insists.
  const std::uint64_t align = 2 * static_cast<std::uint64_t>(ck.dp);
  if (base::align_up(offset, align) != base::align_up(flat.size(), align))
    return base::data_loss("group " + std::to_string(g) + ": parameters need " + std::to_string(offset) +
                           " elements but the fp32 partitions hold " + std::to_string(flat.size()) +
                           " (more than alignment padding): param_shapes and optimizer files disagree");
  return {};
}

// ZeRO-3: each parameter is split on its own into dp slices of ceil(n/dp) elements; rank r's
// sub-group tensors, concatenated, hold its slices of all parameters back to back.
Status add_zero3_params(const ZeroCheckpoint& ck, std::vector<LogicalTensor>& out, const RankRuns& runs) {
  const auto dp = static_cast<std::uint64_t>(ck.dp);
  std::vector<VirtualVector> per_rank(dp);
  for (std::uint64_t r = 0; r < dp; ++r)
    for (const auto& run : runs[r]) per_rank[r].append(run);
  std::uint64_t offset = 0;
  for (const auto& group : ck.models[0].param_shapes) {
    for (const NamedShape& p : group) {
      LogicalTensor t{p.name, p.shape, base::DType::kF32, TensorRole::kTrainable, -1, {}};
      const std::uint64_t n = p.numel();
      const std::uint64_t part = base::ceil_div(n, dp);
      for (std::uint64_t r = 0; r < dp && r * part < n; ++r) {
        if (offset + part > per_rank[r].size())
          return base::data_loss("parameter '" + p.name + "': rank " + std::to_string(r) + "'s fp32 partitions end at element " +
                                 std::to_string(per_rank[r].size()) + ", before its slice [" + std::to_string(offset) + ", " +
                                 std::to_string(offset + part) + ")");
        per_rank[r].take(offset, std::min(part, n - r * part), r * part, t.pieces);
      }
      if (!t.pieces.empty()) t.dtype = t.pieces.front().src.dtype;
      offset += part;
      out.push_back(std::move(t));
    }
  }
  for (std::uint64_t r = 0; r < dp; ++r)
    if (per_rank[r].size() != offset)
      return base::data_loss("rank " + std::to_string(r) + " holds " + std::to_string(per_rank[r].size()) +
                             " fp32 elements, but param_shapes partitioned over " + std::to_string(dp) + " ranks need " +
                             std::to_string(offset));
  return {};
}

const format::NamedTensor* find_tensor(const std::vector<format::NamedTensor>& v, const std::string& name) {
  for (const auto& t : v)
    if (t.name == name) return &t;
  return nullptr;
}

LogicalTensor whole(const format::NamedTensor& src, TensorRole role) {
  LogicalTensor t{src.name, src.shape, src.location.dtype, role, -1, {}};
  if (src.location.numel > 0) t.pieces.push_back({src.location, 0});
  return t;
}

Status add_frozen(const ZeroCheckpoint& ck, const std::set<std::string>& trainable, std::vector<LogicalTensor>& out) {
  const format::ModelFileMeta& m0 = ck.models[0];
  if (ck.kind == format::DeepSpeedOptimizerKind::kZero3) {
    const auto dp = static_cast<std::uint64_t>(ck.dp);
    for (const NamedShape& p : m0.frozen_param_shapes) {
      LogicalTensor t{p.name, p.shape, base::DType::kF32, TensorRole::kFrozen, -1, {}};
      const std::uint64_t n = p.numel();
      const std::uint64_t part = base::ceil_div(n, dp);
      for (std::uint64_t r = 0; r < dp; ++r) {
        const auto* frag = find_tensor(ck.models[r].frozen_fragments, p.name);
        if (!frag)
          return base::data_loss("'" + ck.files.model_state_files[r] + "': frozen_param_fragments has no '" + p.name + "'");
        if (frag->location.numel != part)
          return base::data_loss("'" + ck.files.model_state_files[r] + "': frozen fragment of '" + p.name + "' has " +
                                 std::to_string(frag->location.numel) + " elements, expected ceil(" + std::to_string(n) +
                                 "/" + std::to_string(dp) + ") = " + std::to_string(part));
        t.dtype = frag->location.dtype;
        if (r * part < n) t.pieces.push_back({frag->location.slice(0, std::min(part, n - r * part)), r * part});
      }
      out.push_back(std::move(t));
    }
    return {};
  }
  if (m0.has_frozen_param_shapes) {
    // ZeRO-2: rank 0's model file carries every frozen parameter whole.
    for (const NamedShape& p : m0.frozen_param_shapes) {
      const auto* frag = find_tensor(m0.frozen_fragments, p.name);
      if (!frag) return base::data_loss("'" + ck.files.model_state_files[0] + "': frozen_param_fragments has no '" + p.name + "'");
      if (frag->location.numel != p.numel())
        return base::data_loss("'" + ck.files.model_state_files[0] + "': frozen parameter '" + p.name + "' has " +
                               std::to_string(frag->location.numel) + " elements, expected " + std::to_string(p.numel()));
      LogicalTensor t = whole(*frag, TensorRole::kFrozen);
      t.shape = p.shape;
      out.push_back(std::move(t));
    }
    return {};
  }
  // ZeRO-1 and BF16_Optimizer record no frozen shapes: frozen parameters are the module entries that
  // are neither trainable, buffers nor tied aliases. Their only copy is the model-dtype weight.
  std::set<std::string> skip(m0.buffer_names.begin(), m0.buffer_names.end());
  for (const auto& [alias, source] : m0.shared_params) skip.insert(alias);
  for (const auto& e : m0.module)
    if (!trainable.count(e.name) && !skip.count(e.name)) out.push_back(whole(e, TensorRole::kFrozen));
  return {};
}

}  // namespace

Result<SourceLayout> layout_model_tensors(const ZeroCheckpoint& ck, bool exclude_frozen) {
  SourceLayout layout;
  auto& out = layout.tensors;
  const format::ModelFileMeta& m0 = ck.models[0];

  // Buffers: module entries named in buffer_names, in module order.
  std::set<std::string> buffers(m0.buffer_names.begin(), m0.buffer_names.end());
  for (const auto& e : m0.module)
    if (buffers.count(e.name)) out.push_back(whole(e, TensorRole::kBuffer));

  std::set<std::string> trainable;
  for (const auto& g : m0.param_shapes)
    for (const auto& p : g) {
      if (!trainable.insert(p.name).second) return base::data_loss("parameter '" + p.name + "' appears twice in param_shapes");
    }

  std::vector<LogicalTensor> frozen;
  UCP_RETURN_IF_ERROR(add_frozen(ck, trainable, frozen));
  if (!exclude_frozen)
    for (auto& t : frozen) out.push_back(std::move(t));

  const RankRuns fp32 = runs_of_fp32(ck);
  if (ck.kind == format::DeepSpeedOptimizerKind::kZero3) {
    UCP_RETURN_IF_ERROR(add_zero3_params(ck, out, fp32));
  } else {
    for (std::size_t g = 0; g < m0.param_shapes.size(); ++g) UCP_RETURN_IF_ERROR(add_flat_group_params(ck, g, out, fp32));
  }

  // Tied names: restored under every name, sharing the source's values.
  std::map<std::string, int> index;
  for (std::size_t i = 0; i < out.size(); ++i) index[out[i].name] = static_cast<int>(i);
  for (const auto& [alias, source] : m0.shared_params) {
    auto it = index.find(source);
    if (it == index.end() || index.count(alias)) continue;  // source excluded (frozen) or name already present
    const LogicalTensor& src = out[static_cast<std::size_t>(it->second)];
    LogicalTensor t{alias, src.shape, src.dtype, TensorRole::kAlias, it->second, {}};
    out.push_back(std::move(t));
    index[alias] = static_cast<int>(out.size() - 1);
  }

  for (const auto& t : out)
    if (t.role != TensorRole::kAlias) UCP_RETURN_IF_ERROR(check_coverage(t));
  return layout;
}

const char* optimizer_state_name(OptimizerState state) {
  switch (state) {
    case OptimizerState::kFp32: return "fp32";
    case OptimizerState::kExpAvg: return "exp_avg";
    case OptimizerState::kExpAvgSq: return "exp_avg_sq";
  }
  return "?";
}

namespace {

Result<std::vector<LogicalTensor>> layout_state_runs(const ZeroCheckpoint& ck, const RankRuns& runs) {
  std::vector<LogicalTensor> out;
  if (ck.kind == format::DeepSpeedOptimizerKind::kZero3) {
    UCP_RETURN_IF_ERROR(add_zero3_params(ck, out, runs));
  } else {
    for (std::size_t g = 0; g < ck.models[0].param_shapes.size(); ++g)
      UCP_RETURN_IF_ERROR(add_flat_group_params(ck, g, out, runs));
  }
  return out;
}

// The pieces of per-element state `key` for every trainable parameter; none for a parameter whose
// flat group has no such state; the others must cover their parameter exactly.
Result<std::vector<LogicalTensor>> layout_state(const ZeroCheckpoint& ck, const std::string& key) {
  UCP_ASSIGN_OR_RETURN(std::vector<LogicalTensor> out, layout_state_runs(ck, runs_of(ck, key)));
  for (auto& t : out) {
    const auto absent = std::count_if(t.pieces.begin(), t.pieces.end(),
                                      [](const Piece& p) { return p.src.file == kAbsentState; });
    if (absent == static_cast<std::ptrdiff_t>(t.pieces.size())) {
      t.pieces.clear();  // a parameter of a group without this state
      continue;
    }
    if (absent > 0)
      return base::data_loss("optimizer state '" + key + "' of parameter '" + t.name +
                             "' is saved by some ranks and not by others: files from two runs?");
    UCP_RETURN_IF_ERROR(check_coverage(t));
  }
  return out;
}

}  // namespace

Result<std::vector<LogicalTensor>> layout_optimizer_state(const ZeroCheckpoint& ck, OptimizerState state) {
  if (state == OptimizerState::kFp32) {
    UCP_ASSIGN_OR_RETURN(std::vector<LogicalTensor> out, layout_state_runs(ck, runs_of_fp32(ck)));
    for (const auto& t : out) UCP_RETURN_IF_ERROR(check_coverage(t));
    return out;
  }
  // The universal layout holds Adam's moments for every parameter: each rank's every group has them.
  UCP_RETURN_IF_ERROR(format::check_adam_optimizer_state(ck));
  const std::string key = optimizer_state_name(state);
  for (std::size_t r = 0; r < ck.optims.size(); ++r) {
    const format::OptimFileMeta& o = ck.optims[r];
    std::size_t have = 0;
    for (const auto& group : o.partition_states)
      have += std::any_of(group.begin(), group.end(), [&](const auto& e) { return e.first == key; }) ? 1 : 0;
    if (have != o.fp32.size())
      return base::failed_precondition(
          format::optim_file_label(ck, r) + " has no '" + key + "' optimizer state for every group (" + std::to_string(have) + " of " +
          std::to_string(o.fp32.size()) + "); only Adam-family optimizer state can be converted (no step taken yet?)");
  }
  return layout_state(ck, key);
}

Result<std::vector<LogicalTensor>> layout_partitioned_state(const ZeroCheckpoint& ck, const std::string& key) {
  UCP_RETURN_IF_ERROR(format::check_partitioned_optimizer_state(ck));
  return layout_state(ck, key);
}

}  // namespace ucp::plan
