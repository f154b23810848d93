// The registry of sources that serve model tensors (to-fp32's consolidated outputs): one line per
// input format, each a probe and a collective reader. Adding an input format is a folder under
// format/ that fills a format::SourceLayout, and a line here.
#include "model_tensor_sources.h"

#include <array>

#include "ucp/base/size.h"
#include "ucp/format/dcp.h"
#include "ucp/format/mapped_file.h"
#include "ucp/plan/source_layout.h"
#include "zero_source.h"

namespace ucp::exec {
using base::Result;

namespace {

struct ModelTensorSource {
  bool (*probe)(const std::string& path);
  Result<OpenedModelTensors> (*read)(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                     bool exclude_frozen, PhaseTimer& timer);
};

// DCP: every rank parses .metadata and the chunk pickles (small: no tensor data is read).
Result<OpenedModelTensors> read_dcp(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                    bool exclude_frozen, PhaseTimer& timer) {
  auto opened = [&]() -> Result<OpenedModelTensors> {
    if (!tag.empty()) return base::invalid_argument("--tag names a DeepSpeed tag folder; '" + path + "' is a DCP folder");
    if (exclude_frozen)
      return base::invalid_argument("--exclude-frozen needs to know which parameters are frozen; a DCP folder ('" + path +
                                    "') does not record it");
    UCP_ASSIGN_OR_RETURN(format::dcp::Metadata m, format::dcp::read_metadata(path));
    timer.mark("metadata");
    std::vector<std::shared_ptr<const format::MappedFile>> mapped;  // data files, then decoded zstd items
    UCP_ASSIGN_OR_RETURN(format::SourceLayout layout, format::dcp::read_layout(m, &mapped));
    std::uint64_t bytes = 0;
    for (const auto& t : layout.tensors)
      for (const auto& p : t.pieces) bytes += p.src.nbytes();
    std::vector<std::string> paths;
    for (const auto& f : mapped) paths.push_back(f->path());
    std::string description = "PyTorch DCP checkpoint " + path + " (" + std::to_string(layout.tensors.size()) + " tensors, " +
                              std::to_string(m.bytes_items.size()) + " non-tensor items, " + base::format_bytes(bytes) +
                              " in " + std::to_string(m.files.size()) + " data files)";
    return OpenedModelTensors{std::move(layout), std::move(paths), std::move(description), {}, std::nullopt,
                              std::make_shared<const format::dcp::Metadata>(std::move(m))};
  }();
  UCP_RETURN_IF_ERROR(comm::agree(comm, "source", opened.status()).status);
  return opened;
}

bool probe_zero(const std::string&) { return true; }

Result<OpenedModelTensors> read_zero(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                     bool exclude_frozen, PhaseTimer& timer) {
  UCP_ASSIGN_OR_RETURN(format::ZeroCheckpoint ckpt, read_zero_checkpoint(comm, path, tag, timer));  // agreed
  // The partition math is the first step of planning: its errors are agreed as the plan's.
  Result<format::SourceLayout> layout = plan::layout_model_tensors(ckpt, exclude_frozen);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", layout.status()).status);
  std::string description = describe_checkpoint(ckpt), save_dir = ckpt.files.save_dir;
  std::vector<std::string> paths = ckpt.paths;
  return OpenedModelTensors{std::move(*layout), std::move(paths),    std::move(description),
                            std::move(save_dir), std::move(ckpt), nullptr};
}

// In probing order; DeepSpeed's reader takes any path and names what it expected.
constexpr std::array<ModelTensorSource, 2> kSources = {{
    {&format::dcp::is_dcp_folder, &read_dcp},
    {&probe_zero, &read_zero},
}};

}  // namespace

Result<format::SourceLayout> selected(const format::SourceLayout& layout, const std::string& prefix) {
  if (prefix.empty()) return layout;
  return format::select_prefix(layout, prefix);
}

Result<OpenedModelTensors> open_model_tensors(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                              bool exclude_frozen, PhaseTimer& timer) {
  for (const ModelTensorSource& source : kSources)
    if (source.probe(path)) return source.read(comm, path, tag, exclude_frozen, timer);
  return base::internal_error("no reader for '" + path + "'");  // unreachable: the ZeRO probe takes any path
}

}  // namespace ucp::exec
