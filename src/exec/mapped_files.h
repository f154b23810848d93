// Resolves the storages of pickle trees read from mapped source files to where their bytes sit in
// those files, so a plan can copy them (plan/tree_file.h template storages) without reading them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "ucp/format/torch_file.h"
#include "ucp/plan/tree_file.h"

namespace ucp::exec {

class MappedFiles {
 public:
  /// Storages of `file`'s tree resolve to source file `index` (a view of a container file resolves
  /// to offsets in the container).
  void add(std::uint32_t index, const format::TorchFile& file);
  /// Resolves storages of every file added so far, and of those added later; NotFound for a
  /// storage that no added file owns (one built in memory).
  plan::StorageLocator locator() const;

 private:
  struct Mapping {
    std::uint32_t index;           // source file index
    const std::byte* first_byte;   // of the mapping
    std::uint64_t offset_in_file;  // where the mapping starts in that file (views of a container)
  };
  std::shared_ptr<std::map<const void*, Mapping>> files_ = std::make_shared<std::map<const void*, Mapping>>();
};

}  // namespace ucp::exec
