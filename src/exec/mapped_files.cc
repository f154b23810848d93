#include "mapped_files.h"

namespace ucp::exec {

void MappedFiles::add(std::uint32_t index, const format::TorchFile& file) {
  const auto& mapped = file.zip().file();
  (*files_)[mapped.get()] = {index, mapped->bytes().data(), mapped->offset_in_parent()};
}

plan::StorageLocator MappedFiles::locator() const {
  // Storages are told apart by the mapping that owns their bytes.
  return [files = files_](const format::Storage& s) -> base::Result<format::TensorLocation> {
    auto it = files->find(s.owner.get());
    if (it == files->end()) return base::not_found("a storage does not belong to a source file");
    const Mapping& m = it->second;
    format::TensorLocation loc;
    loc.file = m.index;
    loc.dtype = s.dtype;
    loc.numel = s.numel;
    loc.offset = s.numel == 0 ? 0 : m.offset_in_file + static_cast<std::uint64_t>(s.bytes.data() - m.first_byte);
    return loc;
  };
}

}  // namespace ucp::exec
