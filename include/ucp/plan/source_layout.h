// Where every element of every consolidated tensor comes from (format/tensor_layout.h): the
// partition math of ZeRO-1/2, BF16_Optimizer and ZeRO-3 turned into pieces (a run of source elements -> a run of the
// flattened output tensor). Pure: metadata in, pieces out; no I/O, no MPI.
//
// Semantics follow DeepSpeed's zero_to_fp32 (output order: buffers, frozen parameters, trainable
// parameters, tied aliases), with its known defects fixed: frozen parameters are also recovered at
// ZeRO-1 and with BF16_Optimizer (from the module weights), integer buffers keep their dtype.
//
// Coverage is proven here: each output tensor's pieces cover [0, numel) exactly once, and each
// fp32 partition is consumed exactly, up to the alignment padding DeepSpeed adds; otherwise the
// error names the tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/tensor_layout.h"
#include "ucp/format/zero_checkpoint.h"

namespace ucp::plan {

using format::box_pieces;
using format::check_coverage;
using format::LogicalTensor;
using format::Piece;
using format::SourceLayout;
using format::TensorRole;

/// Builds the layout. `exclude_frozen` drops frozen parameters (and aliases of them).
base::Result<SourceLayout> layout_model_tensors(const format::ZeroCheckpoint& ckpt, bool exclude_frozen);

/// The per-parameter optimizer states a universal checkpoint holds.
enum class OptimizerState : std::uint8_t { kFp32, kExpAvg, kExpAvgSq };
/// "fp32", "exp_avg", "exp_avg_sq" (the universal file stems).
const char* optimizer_state_name(OptimizerState state);

/// Trainable parameters only (param_shapes order), each with the pieces of `state` instead of the
/// fp32 master weights. Same partition math for all three: the moments of ZeRO-1/2 keep the
/// alignment padding (S_g per rank) where the fp32 partitions drop it; BF16_Optimizer keeps it in
/// both; ZeRO-3 moments mirror fp32_flat_groups. FailedPrecondition when a rank has no such state.
base::Result<std::vector<LogicalTensor>> layout_optimizer_state(const format::ZeroCheckpoint& ckpt, OptimizerState state);

/// Trainable parameters (param_shapes order), each with the pieces of the per-element optimizer
/// state `key` (format::OptimFileMeta::partition_states: exp_avg, momentum_buffer, ...), partitioned
/// like the Adam moments. A parameter whose flat group has no such state gets no pieces. Refused as
/// format::check_partitioned_optimizer_state says when the state is not partitioned like the params.
base::Result<std::vector<LogicalTensor>> layout_partitioned_state(const format::ZeroCheckpoint& ckpt, const std::string& key);


}  // namespace ucp::plan
