// `reshard` from the HDF5 file of to-fp32 --with-optimizer: the file seen as a universal
// checkpoint (exec/param_states.h UniversalFiles), its small files embedded as byte datasets
// under /universal and its parameter states read in place from /optimizer.
#include <filesystem>
#include <fstream>

#include "ucp/exec/param_states.h"
#include "ucp/plan/hdf5_plan.h"

#if defined(UCP_HAVE_HDF5)
#include "ucp/format/hdf5_reader.h"
#include "ucp/format/mapped_file.h"
#endif

namespace ucp::exec {
using base::Result;
namespace fs = std::filesystem;

namespace {

bool has_hdf5_signature(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return false;
  std::ifstream in(p, std::ios::binary);
  char magic[8] = {};
  in.read(magic, sizeof magic);
  return in.gcount() == 8 && std::string_view(magic, 8) == std::string_view("\x89HDF\r\n\x1a\n", 8);
}

}  // namespace

std::string find_hdf5_universal(const std::string& path) {
  const fs::path p(path);
  if (has_hdf5_signature(p)) return p.string();
  std::error_code ec;
  if (fs::is_directory(p, ec) && has_hdf5_signature(p / format::kHdf5FileName)) return (p / format::kHdf5FileName).string();
  return {};
}

#if !defined(UCP_HAVE_HDF5)

Result<plan::ParamStates> param_states_from_hdf5(const std::string& path) {
  return base::unimplemented("'" + path + "': reading HDF5 needs a ucp-reshard built with HDF5 (install "
                             "libhdf5-openmpi-dev and rebuild)");
}

#else

namespace {

class Hdf5Files final : public UniversalFiles {
 public:
  static Result<std::unique_ptr<Hdf5Files>> create(const std::string& path) {
    auto files = std::unique_ptr<Hdf5Files>(new Hdf5Files(path));
    UCP_ASSIGN_OR_RETURN(files->reader_, format::Hdf5Reader::open(path));
    for (const char* group : {format::kHdf5OptimizerGroup, format::kHdf5UniversalGroup})
      if (!files->reader_->is_group(group))
        return base::not_found("'" + path + "': no '" + group +
                               "' group: reshard needs an HDF5 file written by to-fp32 --format hdf5 --with-optimizer");
    UCP_ASSIGN_OR_RETURN(files->mapped_, format::MappedFile::open(path));
    return files;
  }

  const std::string& name() const override { return path_; }
  // The tag to-fp32 recorded, else the name of the tag folder it converted.
  std::string tag() const override {
    for (const auto& [name, folder] : {std::pair{"tag", false}, std::pair{"source_checkpoint", true}}) {
      auto value = reader_->attribute("/", name);
      const auto* s = value.ok() && *value ? std::get_if<std::string>(&**value) : nullptr;
      if (!s || s->empty()) continue;
      const std::string tag = folder ? fs::path(*s).lexically_normal().filename().string() : *s;
      if (!tag.empty()) return tag;
    }
    return fs::path(path_).stem().string();
  }
  Result<std::vector<std::string>> top_level_files() const override {
    UCP_ASSIGN_OR_RETURN(std::vector<std::string> names, reader_->members(format::kHdf5UniversalGroup));
    std::erase_if(names, [&](const std::string& n) { return reader_->is_group(dataset_of(n)); });
    return names;
  }
  bool exists(const std::string& relative) const override { return reader_->exists(dataset_of(relative)); }
  Result<format::TorchFile> open(const std::string& relative) const override {
    const std::string dataset = dataset_of(relative);
    UCP_ASSIGN_OR_RETURN(format::Hdf5Dataset d, reader_->dataset(dataset));
    if (d.dtype != base::DType::kU8 || d.shape.size() != 1)
      return base::data_loss("'" + path_ + "': dataset '" + dataset + "' expected 1-D uint8 (an embedded file), found " +
                             std::string(base::dtype_name(d.dtype)) + " of " + std::to_string(d.shape.size()) + " dimension(s)");
    UCP_ASSIGN_OR_RETURN(std::shared_ptr<const format::MappedFile> view,
                         format::MappedFile::view(mapped_, d.offset, d.nbytes, path_ + ":" + dataset));
    return format::TorchFile::parse(std::move(view));
  }
  Result<std::optional<State>> state(const std::string& param, const std::string& state) const override {
    const std::string dataset = std::string(format::kHdf5OptimizerGroup) + "/" + param + "/" + state;
    if (!reader_->exists(dataset)) return std::optional<State>();
    UCP_ASSIGN_OR_RETURN(format::Hdf5Dataset d, reader_->dataset(dataset));
    State out;
    out.raw_path = path_;
    out.raw.offset = d.offset;
    out.raw.dtype = d.dtype;
    out.raw.numel = d.nbytes / base::dtype_size(d.dtype);
    return std::optional<State>(std::move(out));
  }

 private:
  explicit Hdf5Files(std::string path) : path_(std::move(path)) {}
  static std::string dataset_of(const std::string& relative) { return std::string(format::kHdf5UniversalGroup) + "/" + relative; }

  std::string path_;
  std::unique_ptr<format::Hdf5Reader> reader_;
  std::shared_ptr<const format::MappedFile> mapped_;
};

}  // namespace

Result<plan::ParamStates> param_states_from_hdf5(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<Hdf5Files> files, Hdf5Files::create(path));
  return param_states_from_universal(*files);
}

#endif

}  // namespace ucp::exec
