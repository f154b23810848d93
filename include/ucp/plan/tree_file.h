// A torch.save file whose pickled root is a whole Value tree (not just a flat state dict): the
// DeepSpeed ZeRO files reshard writes are the source files' trees with some tensors replaced.
// Every storage in the tree becomes a record whose bytes the plan moves: either a *planned*
// storage (a new tensor assembled from source pieces plus zero padding), a *template* storage
// carried over byte for byte from the source file it was read from, or an *inline* storage built
// in memory (a step counter copied out of a larger storage), whose few bytes the plan carries.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/value.h"
#include "ucp/plan/file_plan.h"

namespace ucp::plan {

/// Where a template storage's bytes sit in the source files (file index + offset of element 0);
/// NotFound for a storage that is in no source file (it is inlined).
using StorageLocator = std::function<base::Result<format::TensorLocation>(const format::Storage& storage)>;

/// A storage of the tree whose contents the plan assembles: plan tensor `tensor` (whose logical
/// tensor's pieces cover the non-padding elements), and element runs written as zeros.
struct PlannedStorage {
  int tensor = -1;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> zeros;
};

/// Builds an output file that collects plan tensors, its layout and zip records. `planned` maps
/// the planned storages of `root` (by identity) to their plan tensors; every other storage that
/// `locate` finds is a template storage, added to `plan.tensors` / `layout.tensors` as a
/// whole-storage copy, and the rest are written from memory with the file's fixed bytes.
/// Records are keyed "0", "1", ... in pickling order, as torch.save does. Appends to plan.files.
base::Status build_tree_file(const std::string& name, const format::ValuePtr& root,
                             const std::map<const format::Storage*, PlannedStorage>& planned,
                             const StorageLocator& locate, FilePlan& plan, SourceLayout& layout);

}  // namespace ucp::plan
