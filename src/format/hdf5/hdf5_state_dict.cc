#include "ucp/format/hdf5_state_dict.h"

#include "ucp/format/hdf5_layout.h"
#include "ucp/format/hdf5_reader.h"
#include "ucp/format/mapped_file.h"

namespace ucp::format {
using base::Result;

Result<StateDictContents> read_hdf5_state_dict(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5Reader> reader, Hdf5Reader::open(path));
  const std::string group = kHdf5ModelGroup;
  if (!reader->is_group(group))
    return base::not_found("'" + path + "': expected a '" + group + "' group (written by to-fp32 --format hdf5), found none");
  UCP_ASSIGN_OR_RETURN(std::vector<std::string> names, reader->members(group));
  // Datasets are contiguous byte ranges: tensors view the mapped file, as for safetensors.
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::open(path));
  StateDictContents out;
  for (const std::string& name : names) {
    UCP_ASSIGN_OR_RETURN(Hdf5Dataset d, reader->dataset(group + "/" + name));
    if (d.offset > file->size() || d.nbytes > file->size() - d.offset)
      return base::data_loss("'" + path + "': dataset '" + d.path + "' runs past the end of the file (size " +
                             std::to_string(file->size()) + ")");
    StateDictTensor t;
    t.name = name;
    t.dtype = d.dtype;
    t.shape = d.shape;
    t.bytes = file->bytes().subspan(static_cast<std::size_t>(d.offset), static_cast<std::size_t>(d.nbytes));
    t.owner = file;
    t.source_file = path;
    t.file_offset = d.offset;
    out.tensors.push_back(std::move(t));
  }
  if (reader->exists(kHdf5OptimizerGroup))
    out.notes.push_back("'" + path + "': the optimizer states under /optimizer are not part of the model (left out)");
  return out;
}

void install_hdf5_state_dict_loader() { set_hdf5_state_dict_loader(&read_hdf5_state_dict); }

}  // namespace ucp::format
