// The plan of `to-fp32 --format hdf5`: one HDF5 file (model.h5) that every rank writes at once
// through parallel HDF5. Same transfers, rounds and coverage proof as the other formats
// (finish_plan), with one difference: each run is written by the rank that reads it (the file is
// `every_rank_writes`), so the all-to-all exchange moves nothing.
//
// Layout (names kept exactly, never split on dots, so h5py users write f["model"][name]):
//   /model/<tensor name>                           one dataset per tensor, N-d shape, dtype kept
//                                                  (bf16 convention: format/hdf5_writer.h); a tied
//                                                  name is a hard link to its source's dataset
//   /optimizer/<param name>/{fp32,exp_avg,exp_avg_sq}   with --with-optimizer: full-shape fp32
//                                                  states per trainable parameter (+ attribute step)
//   /universal/<relative path>                     with --with-optimizer: the small files of the
//                                                  universal checkpoint (model-state copies,
//                                                  zero/optimizer_state.pt, zero/<param>/step.pt) as
//                                                  1-D uint8 datasets holding their exact bytes, so
//                                                  `reshard` reads the file as a universal checkpoint
//   attributes on "/": format, source checkpoint, tag, DeepSpeed version, ...; on "/model":
//   tied_aliases (JSON object alias -> source name).
// Offsets in the plan address a virtual file (every dataset's bytes back to back, aliases none):
// HDF5 decides where datasets sit on disk, the plan only proves every element is written once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/hdf5_layout.h"
#include "ucp/plan/source_layout.h"
#include "ucp/plan/file_plan.h"

namespace ucp::plan {

struct Hdf5Attribute {
  std::string object;  ///< Path of the group or dataset ("/", "/model", "/optimizer/<param>").
  std::string name;
  std::variant<std::string, std::int64_t, double> value;
};

/// A universal checkpoint's file built in memory; every rank holds the same bytes, rank 0 writes
/// them. Shared, not copied, into the plan (a ZeRO-3 optimizer_state.pt holds rank 0's partitions).
struct Hdf5Blob {
  std::string path;  ///< Relative to the universal folder ("zero/optimizer_state.pt").
  std::shared_ptr<const std::vector<std::byte>> bytes;
};

/// Optional optimizer states: per trainable parameter (same order in all three), the layouts
/// plan::layout_optimizer_state gives for fp32, exp_avg and exp_avg_sq.
struct Hdf5OptimizerStates {
  std::vector<LogicalTensor> fp32, exp_avg, exp_avg_sq;
  /// Stored under format::kHdf5UniversalGroup, each at its relative path (sub-folders become groups).
  std::vector<SourceFileCopy> source_copies;  ///< Paths relative to the universal folder.
  std::vector<Hdf5Blob> blobs;
};

struct Hdf5Plan {
  FilePlan plan;                   ///< One file, format::kHdf5FileName, every_rank_writes.
  std::vector<std::string> paths;  ///< Per plan.tensors: its dataset path (an alias: its link's path).
  std::vector<std::string> groups; ///< Groups to create, parents first.
  std::vector<Hdf5Attribute> attributes;  ///< Written after every dataset and link exists.
  /// Datasets (1-D uint8) written from memory by rank 0 once created: path = dataset path.
  std::vector<Hdf5Blob> blobs;

  /// plan.digest() extended with paths, groups and attributes.
  std::uint64_t digest() const;
};

/// Builds the plan. `attributes` (source checkpoint, tag, ...) are copied after the ones the
/// plan adds itself ("/model" tied_aliases). Floating model tensors get options.float_dtype;
/// optimizer states stay fp32. Tensor and parameter names must be usable as one HDF5 link name
/// (non-empty, no '/', not "." or "..": FailedPrecondition naming the tensor otherwise).
base::Result<Hdf5Plan> plan_hdf5(const SourceLayout& model, const Hdf5OptimizerStates* optimizer,
                                 const std::vector<std::string>& source_paths, const PlanOptions& options,
                                 std::vector<Hdf5Attribute> attributes);

}  // namespace ucp::plan
