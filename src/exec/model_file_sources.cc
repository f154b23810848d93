// Model tensors from PyTorch DCP folders, model files (format::StateDict's discovery), torch's
// HF-DCP safetensors and universal checkpoint folders: each filled into a format::SourceLayout whose pieces are runs of
// the source files, so the consolidated targets read them like any other source.
#include "model_file_sources.h"

#include <filesystem>
#include <map>
#include <set>

#include "ucp/base/size.h"
#include "ucp/format/dcp.h"
#include "ucp/format/mapped_file.h"
#include "ucp/exec/param_states.h"
#include "ucp/format/hf_dcp.h"
#include "ucp/format/state_dict.h"
#include "ucp/format/zero_checkpoint.h"

namespace ucp::exec {
using base::Result;
using base::Status;
using format::LogicalTensor;
using format::SourceLayout;
using format::TensorRole;
namespace fs = std::filesystem;

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Options only DeepSpeed sources understand, refused by name for the others.
Status refuse_deepspeed_options(const std::string& path, const std::string& tag, bool exclude_frozen,
                                const std::string& what) {
  if (!tag.empty()) return base::invalid_argument("--tag names a DeepSpeed tag folder; '" + path + "' is " + what);
  if (exclude_frozen)
    return base::invalid_argument("--exclude-frozen needs to know which parameters are frozen; " + what + " ('" + path +
                                  "') does not record it");
  return {};
}

std::string describe(const std::string& what, const std::string& path, const SourceLayout& layout, std::size_t files) {
  std::uint64_t bytes = 0;
  for (const auto& t : layout.tensors)
    for (const auto& p : t.pieces) bytes += p.src.nbytes();
  return what + " " + path + " (" + std::to_string(layout.tensors.size()) + " tensors, " + base::format_bytes(bytes) +
         " in " + std::to_string(files) + " file" + (files == 1 ? "" : "s") + ")";
}

// Every rank reads the same small headers and pickles; the outcome is agreed once.
Result<OpenedModelTensors> agreed(comm::Communicator& comm, Result<OpenedModelTensors> opened) {
  UCP_RETURN_IF_ERROR(comm::agree(comm, "source", opened.status()).status);
  return opened;
}

// ------------------------------------------------------------------ DCP folders

// Every rank parses .metadata and the chunk pickles (small: no tensor data is read; zstd items are
// decoded into scratch files that join the source files).
Result<OpenedModelTensors> open_dcp(const std::string& path, const std::string& tag, bool exclude_frozen, PhaseTimer& timer) {
  UCP_RETURN_IF_ERROR(refuse_deepspeed_options(path, tag, exclude_frozen, "a DCP folder"));
  UCP_ASSIGN_OR_RETURN(format::dcp::Metadata m, format::dcp::read_metadata(path));
  timer.mark("metadata");
  std::vector<std::shared_ptr<const format::MappedFile>> mapped;  // data files, then decoded zstd items
  UCP_ASSIGN_OR_RETURN(SourceLayout layout, format::dcp::read_layout(m, &mapped));
  std::vector<std::string> paths;
  for (const auto& f : mapped) paths.push_back(f->path());
  std::string description = describe("PyTorch DCP checkpoint", path, layout, m.files.size()) + " and " +
                            std::to_string(m.bytes_items.size()) + " non-tensor items";
  return OpenedModelTensors{std::move(layout), std::move(paths), std::move(description), {}, std::nullopt,
                            std::make_shared<const format::dcp::Metadata>(std::move(m))};
}

// ------------------------------------------------------------------ model files (StateDict)

bool is_deepspeed_file_name(const std::string& name) {
  return name.ends_with("model_states.pt") || name.ends_with("optim_states.pt");
}

// A DeepSpeed save dir or tag folder (possibly beside HF files, as in an HF Trainer checkpoint-K/).
bool is_deepspeed_folder(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "latest", ec)) return true;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_deepspeed_file_name(name)) return true;
  }
  return false;
}

// The layout of a StateDict whose tensors are views of their files: one run per tensor (HDF5's
// contiguous datasets included).
Result<SourceLayout> layout_of_state_dict(const format::StateDict& sd) {
  std::map<std::string, std::uint32_t> file_index;
  for (const std::string& f : sd.files()) file_index.emplace(f, static_cast<std::uint32_t>(file_index.size()));
  SourceLayout layout;
  for (const format::StateDictTensor& t : sd.tensors()) {
    LogicalTensor lt{t.name, t.shape, t.dtype, TensorRole::kStored, -1, {}};
    if (lt.numel() > 0) {
      if (!t.file_offset)
        return base::unimplemented(quoted(t.source_file) + ": tensor '" + t.name +
                                   "' is a non-contiguous view of its storage, not one run of the file (save it "
                                   "after .contiguous())");
      auto it = file_index.find(t.source_file);
      if (it == file_index.end()) return base::internal_error(quoted(t.source_file) + " is not among the files opened");
      lt.pieces.push_back({{it->second, *t.file_offset, lt.numel(), t.dtype}, 0});
    }
    layout.tensors.push_back(std::move(lt));
  }
  return layout;
}

Result<OpenedModelTensors> open_model_files(const std::string& path, const std::string& tag, bool exclude_frozen,
                                            PhaseTimer& timer) {
  UCP_RETURN_IF_ERROR(refuse_deepspeed_options(path, tag, exclude_frozen, "a model file"));
  format::StateDictOptions options;
  options.flatten_nested = true;  // as DCP names them: {"model": {"w": t}} -> "model.w"
  UCP_ASSIGN_OR_RETURN(format::StateDict sd, format::StateDict::open(path, options));
  timer.mark("metadata");
  UCP_ASSIGN_OR_RETURN(SourceLayout layout, layout_of_state_dict(sd));
  std::error_code ec;
  std::string save_dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  std::string description = describe(sd.format() + " model", path, layout, sd.files().size());
  return OpenedModelTensors{std::move(layout), sd.files(), std::move(description), std::move(save_dir), std::nullopt, nullptr};
}

// ------------------------------------------------------------------ HF-DCP safetensors

Result<OpenedModelTensors> open_hf_dcp(const std::string& path, const std::string& tag, bool exclude_frozen,
                                       PhaseTimer& timer) {
  UCP_RETURN_IF_ERROR(refuse_deepspeed_options(path, tag, exclude_frozen, "an HF-DCP safetensors checkpoint"));
  std::vector<std::string> files = format::find_hf_dcp_files(path);
  if (files.empty()) return base::not_found(quoted(path) + ": no safetensors file with DCP_SHARDING_INFO");
  std::error_code ec;
  if (fs::is_directory(path, ec)) UCP_RETURN_IF_ERROR(format::check_hf_dcp_file_names(files).annotate(quoted(path)));
  Result<SourceLayout> layout = format::read_hf_dcp_layout(files);
  if (!layout.ok())
    return Status(layout.status()).annotate(quoted(path) + " (HF-DCP safetensors; a missing shard file leaves elements uncovered)");
  timer.mark("metadata");
  std::string description = describe("HF-DCP safetensors checkpoint", path, *layout, files.size());
  std::string save_dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  return OpenedModelTensors{std::move(*layout), std::move(files), std::move(description), std::move(save_dir),
                            std::nullopt, nullptr};
}

// ------------------------------------------------------------------ universal checkpoints

LogicalTensor whole(const format::NamedTensor& src, TensorRole role) {
  LogicalTensor t{src.name, src.shape, src.location.dtype, role, -1, {}};
  if (src.location.numel > 0) t.pieces.push_back({src.location, 0});
  return t;
}

// Frozen parameters, which the zero/ folder does not hold: ZeRO-3's from every rank's fragments
// (ParamStates::frozen), ZeRO-2's whole in rank 0's frozen_param_fragments, and for ZeRO-1 and
// BF16_Optimizer the module entries that are neither trainable, buffers nor tied aliases.
Result<std::vector<LogicalTensor>> universal_frozen(const plan::ParamStates& ps, const format::ModelFileMeta& m0,
                                                    const std::set<std::string>& trainable) {
  std::vector<LogicalTensor> out;
  if (ps.zero_stage == 3) {
    for (LogicalTensor t : ps.frozen) {
      t.role = TensorRole::kFrozen;
      out.push_back(std::move(t));
    }
    return out;
  }
  if (m0.has_frozen_param_shapes) {
    for (const format::NamedShape& p : m0.frozen_param_shapes) {
      auto frag = std::find_if(m0.frozen_fragments.begin(), m0.frozen_fragments.end(),
                               [&](const format::NamedTensor& f) { return f.name == p.name; });
      if (frag == m0.frozen_fragments.end() || frag->location.numel != p.numel())
        return base::data_loss("frozen parameter '" + p.name + "': frozen_param_fragments misses it or holds " +
                               "another number of elements than its shape");
      LogicalTensor t = whole(*frag, TensorRole::kFrozen);
      t.shape = p.shape;
      out.push_back(std::move(t));
    }
    return out;
  }
  std::set<std::string> skip(m0.buffer_names.begin(), m0.buffer_names.end());
  for (const auto& [alias, source] : m0.shared_params) skip.insert(alias);
  for (const auto& e : m0.module)
    if (!trainable.count(e.name) && !skip.count(e.name)) out.push_back(whole(e, TensorRole::kFrozen));
  return out;
}

// In zero_to_fp32's order: buffers, frozen parameters, trainable parameters, tied aliases.
Result<SourceLayout> universal_layout(const plan::ParamStates& ps, const format::ModelFileMeta& m0, bool exclude_frozen) {
  SourceLayout layout;
  auto& out = layout.tensors;
  const std::set<std::string> buffers(m0.buffer_names.begin(), m0.buffer_names.end());
  for (const auto& e : m0.module)
    if (buffers.count(e.name)) out.push_back(whole(e, TensorRole::kBuffer));
  std::set<std::string> trainable;
  for (const auto& g : ps.groups)
    for (const auto& p : g) trainable.insert(p.name);
  UCP_ASSIGN_OR_RETURN(std::vector<LogicalTensor> frozen, universal_frozen(ps, m0, trainable));
  if (!exclude_frozen) out.insert(out.end(), frozen.begin(), frozen.end());
  for (LogicalTensor t : ps.fp32) {
    t.role = TensorRole::kTrainable;
    out.push_back(std::move(t));
  }
  std::map<std::string, int> index;
  for (std::size_t i = 0; i < out.size(); ++i) index[out[i].name] = static_cast<int>(i);
  for (const auto& [alias, source] : m0.shared_params) {
    auto it = index.find(source);
    if (it == index.end() || index.count(alias)) continue;
    const LogicalTensor& src = out[static_cast<std::size_t>(it->second)];
    out.push_back({alias, src.shape, src.dtype, TensorRole::kAlias, it->second, {}});
    index[alias] = static_cast<int>(out.size() - 1);
  }
  for (const auto& t : out)
    if (t.role != TensorRole::kAlias) UCP_RETURN_IF_ERROR(check_coverage(t));
  return layout;
}

// Rank 0's model-state copy among the files ParamStates maps.
Result<std::uint32_t> rank0_model_file(const plan::ParamStates& ps, const std::string& folder) {
  for (std::size_t i = 0; i < ps.paths.size(); ++i) {
    const std::string name = fs::path(ps.paths[i]).filename().string();
    if (name == "mp_rank_00_model_states.pt" || name == "zero_pp_rank_0_mp_rank_00_model_states.pt")
      return static_cast<std::uint32_t>(i);
  }
  return base::not_found(quoted(folder) + ": no model-state file copy (mp_rank_00_model_states.pt)");
}

Result<OpenedModelTensors> open_universal(const std::string& path, const std::string& tag, bool exclude_frozen,
                                          PhaseTimer& timer) {
  const std::string folder = find_universal_folder(path, tag);
  if (folder.empty()) return base::not_found(quoted(path) + ": no universal checkpoint folder '" + tag + "' in it");
  UCP_ASSIGN_OR_RETURN(plan::ParamStates ps, param_states_from_universal(folder));
  UCP_ASSIGN_OR_RETURN(const std::uint32_t model_index, rank0_model_file(ps, folder));
  UCP_ASSIGN_OR_RETURN(format::ModelFileMeta m0, format::extract_model_meta(ps.paths[model_index], model_index));
  timer.mark("metadata");
  UCP_ASSIGN_OR_RETURN(SourceLayout layout, universal_layout(ps, m0, exclude_frozen));
  std::string description = describe("universal checkpoint", folder, layout, ps.paths.size()) + " (ZeRO stage " +
                            std::to_string(ps.zero_stage) + ", dp " + std::to_string(ps.dp) + ")";
  std::string save_dir = fs::path(folder).parent_path().string();
  return OpenedModelTensors{std::move(layout), ps.paths, std::move(description), std::move(save_dir), std::nullopt, nullptr};
}

}  // namespace

Result<OpenedModelTensors> read_dcp(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                    bool exclude_frozen, PhaseTimer& timer) {
  return agreed(comm, open_dcp(path, tag, exclude_frozen, timer));
}

bool is_universal_source(const std::string& path) { return !find_universal_folder(path, "").empty(); }

Result<OpenedModelTensors> read_universal_model(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                                bool exclude_frozen, PhaseTimer& timer) {
  return agreed(comm, open_universal(path, tag, exclude_frozen, timer));
}

bool is_hdf5_model_source(const std::string& path) { return !find_hdf5_universal(path).empty(); }

Result<OpenedModelTensors> read_hdf5_model(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                           bool exclude_frozen, PhaseTimer& timer) {
  return agreed(comm, open_model_files(find_hdf5_universal(path), tag, exclude_frozen, timer));
}

bool is_hf_dcp_source(const std::string& path) { return !format::find_hf_dcp_files(path).empty(); }

Result<OpenedModelTensors> read_hf_dcp(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                       bool exclude_frozen, PhaseTimer& timer) {
  return agreed(comm, open_hf_dcp(path, tag, exclude_frozen, timer));
}

bool is_model_file_source(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    if (is_deepspeed_folder(p)) return false;
    return !format::hf_model_file_in(path).empty();
  }
  // By name; the HDF5 file of to-fp32 was probed before (is_hdf5_model_source).
  const std::string name = p.filename().string();
  return fs::is_regular_file(p, ec) && !is_deepspeed_file_name(name) && format::has_state_dict_file_name(name);
}

Result<OpenedModelTensors> read_model_files(comm::Communicator& comm, const std::string& path, const std::string& tag,
                                            bool exclude_frozen, PhaseTimer& timer) {
  return agreed(comm, open_model_files(path, tag, exclude_frozen, timer));
}

}  // namespace ucp::exec
