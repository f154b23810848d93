// The plan of `to-universal`: DeepSpeed's universal checkpoint (ds_to_universal.py, v0.14.5) —
// one small torch file per (trainable parameter, optimizer state) under zero/<name>/ — built on
// the same transfer / round / coverage machinery as to-fp32 (finish_plan). The files that carry
// no partitioned tensor data (step.pt, optimizer_state.pt, model-state copies) are written
// outside the plan by exec/universal_extras.
#pragma once

#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/fp32_layout.h"
#include "ucp/plan/fp32_plan.h"

namespace ucp::plan {

struct UniversalParam {
  std::string name;
  int group = 0;  ///< Flat group (ZeRO-1/2, BF16: param group; ZeRO-3: sub-group) holding it.
};

struct UniversalPlan {
  Fp32Plan plan;                        ///< Tensors named "<param>/<state>"; files "zero/<param>/<state>.pt".
  std::vector<UniversalParam> params;   ///< Trainable parameters, param_shapes order.
};

/// Stage <= 2 and BF16_Optimizer: zero/<name>/<state>.pt = {'cat_dim': 0, 'param': fp32 tensor of
/// the full shape}; ZeRO-3: the bare 1-D tensor of exactly numel elements (DeepSpeed's own
/// converter emits padding for ranks holding none of a parameter; we do not). fp32 is saved with
/// requires_grad=True, the moments without, as DeepSpeed does. Uses options.max_memory,
/// max_transfer_bytes and world_size; float_dtype must be fp32.
base::Result<UniversalPlan> plan_universal(const format::ZeroCheckpoint& ckpt, const Fp32Options& options);

}  // namespace ucp::plan
