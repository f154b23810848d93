// The source side of `reshard`: a checkpoint described per parameter (plan::NativeSource), with
// the pickle trees of the files whose non-partitioned content the new files carry over. Every
// rank builds the same NativeSource (the pickles are small; tensor data stays mapped, unread).
#pragma once

#include "ucp/base/status.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/native_plan.h"

namespace ucp::exec {

/// From a ZeRO / BF16_Optimizer checkpoint whose metadata was read (read_zero_checkpoint).
/// Refuses what cannot be re-partitioned natively (round-robin gradients, an optimizer without
/// Adam moments is fine, a ZeRO-3 sub-group layout that does not follow from sub_group_size).
base::Result<plan::NativeSource> native_source_from_zero(const format::ZeroCheckpoint& ckpt);

/// The universal folder `path` names: `path` itself when it holds zero/optimizer_state.pt, or
/// `path`/<tag> (tag from `tag` or `path`/latest_universal). Empty when `path` is not universal.
std::string find_universal_folder(const std::string& path, const std::string& tag);

/// From a universal checkpoint folder (ds_to_universal's layout, or ours): per-parameter files
/// zero/<name>/{fp32,exp_avg,exp_avg_sq,step}.pt, zero/optimizer_state.pt and the model-state
/// copies. Not collective: every rank parses the same small pickles. Parameter files must hold
/// exactly the parameter's elements (DeepSpeed's converter leaves padding in some ZeRO-3 files:
/// refused by name).
base::Result<plan::NativeSource> native_source_from_universal(const std::string& folder);

}  // namespace ucp::exec
