// Hand-built checkpoint metadata for the worked examples of the DeepSpeed format spec (section 3),
// shared by the planner tests.
#pragma once

#include "ucp/format/zero_checkpoint.h"

namespace ucp::testutil {

/// dp=4, one group, params a(2x5), b(7), c(3): T=20, aligned to 2*dp=8 -> P=24, S=6 per rank.
/// fp32 partitions of ZeRO-1/2 are saved as 6,6,6,2 elements (padding dropped); the moments, and
/// everything of BF16_Optimizer, as 6,6,6,6. Rank r's tensors sit in file r+1: fp32 at offset
/// 1000(r+1), exp_avg at 10000(r+1), exp_avg_sq at 20000(r+1), so pieces show which vector they use.
inline format::ZeroCheckpoint zero12_worked_example(bool bf16_optimizer) {
  format::ZeroCheckpoint ck;
  ck.kind = bf16_optimizer ? format::DeepSpeedOptimizerKind::kBf16 : format::DeepSpeedOptimizerKind::kZero12;
  ck.zero_stage = bf16_optimizer ? 0 : 2;
  ck.dp = 4;
  format::ModelFileMeta m;
  m.param_shapes = {{{"a", {2, 5}}, {"b", {7}}, {"c", {3}}}};
  m.dp_world_size = 4;
  ck.models.push_back(m);
  for (std::uint32_t r = 0; r < 4; ++r) {
    format::OptimFileMeta o;
    o.partition_count = 4;
    o.fp32.push_back({r + 1, 1000 * (r + 1), bf16_optimizer || r < 3 ? 6u : 2u, base::DType::kF32});
    o.partition_states.push_back({{"exp_avg", {r + 1, 10000 * (r + 1), 6, base::DType::kF32}},
                                  {"exp_avg_sq", {r + 1, 20000 * (r + 1), 6, base::DType::kF32}}});
    o.group_paddings.push_back(r == 3 ? 4 : 0);
    ck.optims.push_back(o);
  }
  ck.paths = {"model", "o0", "o1", "o2", "o3"};
  return ck;
}

}  // namespace ucp::testutil
