// Private to format/dcp: undoing an item's transform_descriptors ("stream.zstd/1", written by
// torch's FileSystemWriter(_extensions=[ZStandard()])). A compressed item cannot be read in
// parts, so it is decoded whole, streamed through a fixed buffer into an unlinked scratch file
// (bounded memory, disk = the decoded size) that is then mapped like a data file. Its path
// (/proc/self/fd/N) stays valid for the life of the process, so the executors can open it as one
// more source file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/mapped_file.h"

namespace ucp::format::dcp {

inline constexpr const char* kZstdTransform = "stream.zstd/1";

/// The item's bytes after undoing `transforms` in order. `where` names the item in errors:
/// DataLoss for a corrupt or truncated stream, Unimplemented for a transform we do not know (or
/// zstd when built without libzstd).
base::Result<std::shared_ptr<const MappedFile>> undo_transforms(std::shared_ptr<const MappedFile> item,
                                                                const std::vector<std::string>& transforms,
                                                                const std::string& where);

}  // namespace ucp::format::dcp
