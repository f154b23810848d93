// The registry of sources that serve model tensors (to-fp32's consolidated outputs): one line per
// input format, each a probe and a collective reader. Adding an input format is a folder under
// format/ that fills a format::SourceLayout, and a line here.
#include "model_tensor_sources.h"

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ucp/exec/convert.h"
#include "ucp/format/dcp.h"
#include "ucp/plan/source_layout.h"
#include "model_file_sources.h"
#include "zero_source.h"

namespace ucp::exec {
using base::Result;

namespace {

struct ModelTensorSource {
  bool (*probe)(const std::string& path);
  Result<OpenedModelTensors> (*read)(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                     bool exclude_frozen, PhaseTimer& timer);
};

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

// In probing order; DeepSpeed's reader takes any path and names what it expected. Model files
// come after the folders that may hold some beside their own files; the model-file probe leaves
// DeepSpeed save dirs and tag folders (an HF Trainer checkpoint-K/ among them) to the ZeRO reader.
constexpr std::array<ModelTensorSource, 6> kSources = {{
    {&format::dcp::is_dcp_folder, &read_dcp},
    {&is_universal_source, &read_universal_model},
    {&is_hdf5_model_source, &read_hdf5_model},
    {&is_hf_dcp_source, &read_hf_dcp},
    {&is_model_file_source, &read_model_files},
    {&probe_zero, &read_zero},
}};

}  // namespace

Result<format::SourceLayout> selected(const format::SourceLayout& layout, const std::string& prefix) {
  if (prefix.empty()) return layout;
  return format::select_prefix(layout, prefix);
}

namespace {

// The heads a key map's permutations need: --model-config, else config.json in the save dir.
Result<std::optional<plan::ModelHeads>> model_heads(const OpenedModelTensors& source, const KeyMapping& key_map) {
  std::string path = key_map.model_config;
  if (path.empty() && !source.save_dir.empty() && std::filesystem::is_regular_file(source.save_dir + "/config.json"))
    path = source.save_dir + "/config.json";
  if (path.empty()) return std::optional<plan::ModelHeads>();
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  if (in.is_open()) text << in.rdbuf();
  if (!in.is_open() || !in) return base::invalid_argument("--model-config " + path + ": cannot read it (expected an HF config.json or a "
                                         "Meta/Lingua params.json)");
  UCP_ASSIGN_OR_RETURN(plan::ModelHeads heads, plan::parse_model_heads(text.str(), path));
  return std::optional<plan::ModelHeads>(std::move(heads));
}

}  // namespace

Result<format::SourceLayout> source_view(const OpenedModelTensors& source, const std::string& select,
                                         const KeyMapping& key_map, const std::vector<std::string>* template_keys) {
  UCP_ASSIGN_OR_RETURN(format::SourceLayout layout, selected(source.layout, select));
  if (!key_map.map) return layout;
  std::optional<plan::ModelHeads> heads;
  if (key_map.map->needs_heads()) {
    UCP_ASSIGN_OR_RETURN(heads, model_heads(source, key_map));
  }
  return plan::apply_key_map(layout, *key_map.map, heads, template_keys);
}

Result<format::SourceLayout> key_mapped(const OpenedModelTensors& source, const KeyMapping& key_map,
                                        const format::SourceLayout& layout, std::vector<std::size_t>* sources) {
  if (!key_map.map) {
    if (sources) {
      sources->resize(layout.tensors.size());
      for (std::size_t i = 0; i < sources->size(); ++i) (*sources)[i] = i;
    }
    return layout;
  }
  std::optional<plan::ModelHeads> heads;
  if (key_map.map->needs_heads()) {
    UCP_ASSIGN_OR_RETURN(heads, model_heads(source, key_map));
  }
  return plan::apply_key_map(layout, *key_map.map, heads, nullptr, sources);
}

Result<OpenedModelTensors> open_model_tensors(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                              bool exclude_frozen, PhaseTimer& timer) {
  for (const ModelTensorSource& source : kSources)
    if (source.probe(path)) return source.read(comm, path, tag, exclude_frozen, timer);
  return base::internal_error("no reader for '" + path + "'");  // unreachable: the ZeRO probe takes any path
}

}  // namespace ucp::exec
