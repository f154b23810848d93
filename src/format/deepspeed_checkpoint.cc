#include "ucp/format/deepspeed_checkpoint.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "ucp/base/checked_math.h"
#include "ucp/format/torch_file.h"

namespace ucp::format {
namespace fs = std::filesystem;
using base::Result;
using base::Status;

namespace {

// File-name grammar of a tag folder (see header).
const std::regex kOptimRe(R"((bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_optim_states\.pt)");
const std::regex kZero3ModelRe(R"(zero_pp_rank_(\d+)_mp_rank_(\d+)_model_states\.pt)");
const std::regex kModelRe(R"(mp_rank_(\d+)_model_states\.pt)");
const std::regex kLayerRe(R"(layer_\d+-model_(\d+-)?model_states\.pt)");
// Checkpoints of features not supported yet, recognised by their file names so that the error
// names the feature (and the DeepSpeed setting behind it), not a missing file.
const std::regex kExpertRe(R"(.*(expert_\d+|expp_rank_\d+).*_states\.pt)");  // mixture of experts
const std::regex kFastPersistRe(R"(.*_states\.pt-\d+\.\d+)");  // checkpoint.writer.type = fast, ZeRO <= 2

int to_int(const std::string& s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string read_tag_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

bool has_rank_files(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, kOptimRe) || std::regex_match(name, kModelRe) ||
        std::regex_match(name, kZero3ModelRe))
      return true;
  }
  return false;
}

std::string list_ranks(const std::set<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ",") + std::to_string(r);
  return s.empty() ? "none" : s;
}

// Checks that `ranks` is exactly 0..n-1 for the expected n, naming the first missing file.
Status check_contiguous(const std::set<int>& ranks, int n, const fs::path& dir,
                        const std::function<std::string(int)>& file_name) {
  for (int r = 0; r < n; ++r) {
    if (!ranks.count(r))
      return base::not_found("missing '" + (dir / file_name(r)).string() + "': expected ranks 0.." +
                             std::to_string(n - 1) + ", found " + list_ranks(ranks));
  }
  return {};
}

}  // namespace

bool looks_like_deepspeed_checkpoint(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_regular_file(p / "latest", ec)) return true;
  return has_rank_files(p);
}

namespace {

// The save dir, tag and tag folder `path` (with `tag`) names: a save dir with `latest`, a save
// dir and --tag, or a tag folder itself.
Result<DeepSpeedCheckpointFiles> locate_tag_folder(const std::string& path, const std::string& tag) {
  std::error_code ec;
  const fs::path root(path);
  if (!fs::exists(root, ec)) return base::not_found("checkpoint '" + path + "' does not exist");
  if (!fs::is_directory(root, ec))
    return base::invalid_argument("checkpoint '" + path + "' is not a directory (expected a DeepSpeed save dir or tag folder)");

  DeepSpeedCheckpointFiles files;
  if (!tag.empty()) {
    files.save_dir = path;
    files.tag = tag;
    files.tag_dir = (root / tag).string();
    if (!fs::is_directory(files.tag_dir, ec)) {
      if (has_rank_files(root) && root.filename() == tag) {
        files.save_dir.clear();
        files.tag_dir = path;
      } else {
        return base::not_found("tag folder '" + files.tag_dir + "' does not exist");
      }
    }
  } else if (fs::is_regular_file(root / "latest", ec)) {
    files.save_dir = path;
    files.tag = read_tag_file(root / "latest");
    if (files.tag.empty()) return base::data_loss("'" + (root / "latest").string() + "' is empty: expected a tag name");
    files.tag_dir = (root / files.tag).string();
    if (!fs::is_directory(files.tag_dir, ec))
      return base::not_found("'" + (root / "latest").string() + "' names tag '" + files.tag + "', but folder '" +
                             files.tag_dir + "' does not exist");
  } else if (has_rank_files(root)) {
    files.tag_dir = path;
    files.tag = fs::absolute(root).lexically_normal().filename().string();
    if (files.tag.empty()) files.tag = fs::absolute(root).lexically_normal().parent_path().filename().string();
  } else {
    return base::not_found("'" + path + "' is not a DeepSpeed checkpoint: no 'latest' file and no "
                           "*_model_states.pt / *_optim_states.pt files");
  }
  return files;
}

// What the tag folder holds, by kind of file: ranks per model-parallel rank.
struct TagFolderListing {
  std::map<int, std::set<int>> optim_ranks;  // mp -> dp ranks
  std::map<int, std::set<int>> zero3_model_ranks;
  std::set<int> model_mp;
  std::set<bool> prefixes;  // bf16_ optimizer files or not
};

// Classifies every file of the tag folder (layer files go straight to `files`); refuses the
// layouts we do not read (expert-parallel, FastPersist).
Result<TagFolderListing> list_tag_folder(DeepSpeedCheckpointFiles& files) {
  TagFolderListing l;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(files.tag_dir, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    std::smatch m;
    if (std::regex_match(name, kExpertRe))
      return base::unimplemented("'" + e.path().string() + "' is an expert-parallel file: mixture-of-experts "
                                 "checkpoints (deepspeed.moe) are not supported yet");
    if (std::regex_match(name, kFastPersistRe))
      return base::unimplemented("'" + e.path().string() + "' was split by DeepSpeed's FastPersist writer "
                                 "(checkpoint.writer.type: fast); such checkpoints are not supported: save "
                                 "without checkpoint.writer (the default torch writer)");
    if (std::regex_match(name, m, kOptimRe)) {
      l.prefixes.insert(m[1].matched);
      l.optim_ranks[to_int(m[3])].insert(to_int(m[2]));
    } else if (std::regex_match(name, m, kZero3ModelRe)) {
      l.zero3_model_ranks[to_int(m[2])].insert(to_int(m[1]));
    } else if (std::regex_match(name, m, kModelRe)) {
      l.model_mp.insert(to_int(m[1]));
    } else if (std::regex_match(name, kLayerRe)) {
      files.layer_files.push_back(e.path().string());
    }
  }
  if (ec) return base::not_found("cannot list '" + files.tag_dir + "': " + ec.message());
  std::sort(files.layer_files.begin(), files.layer_files.end());
  return l;
}

std::string mp_str(int mp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02d", mp);
  return std::string(buf);
}

// Optimizer files: one per DP rank and MP rank, all present, one prefix; sets the sizes.
Status list_optimizer_files(DeepSpeedCheckpointFiles& files, TagFolderListing& l) {
  if (l.optim_ranks.empty())
    return base::not_found("'" + files.tag_dir + "' holds no *_optim_states.pt files: not a ZeRO / BF16_Optimizer "
                           "checkpoint (stage-0 fp16/fp32 checkpoints keep the optimizer in the model file)");
  if (l.prefixes.size() > 1)
    return base::failed_precondition("'" + files.tag_dir + "' mixes bf16_zero_pp_rank_* and zero_pp_rank_* optimizer "
                                     "files: two different runs were saved into one tag folder");
  files.bf16_prefix = *l.prefixes.begin();
  files.mp_size = l.optim_ranks.rbegin()->first + 1;
  files.dp_size = *l.optim_ranks.begin()->second.rbegin() + 1;
  for (const auto& [mp, ranks] : l.optim_ranks) files.dp_size = std::max(files.dp_size, *ranks.rbegin() + 1);

  const std::string prefix = files.bf16_prefix ? "bf16_" : "";
  const fs::path dir(files.tag_dir);
  for (int mp = 0; mp < files.mp_size; ++mp) {
    auto name = [&](int d) { return prefix + "zero_pp_rank_" + std::to_string(d) + "_mp_rank_" + mp_str(mp) + "_optim_states.pt"; };
    UCP_RETURN_IF_ERROR(check_contiguous(l.optim_ranks[mp], files.dp_size, dir, name));
    for (int d = 0; d < files.dp_size; ++d) files.optim_files.push_back((dir / name(d)).string());
  }
  return {};
}

// Model-state files: one per DP and MP rank (ZeRO-3), or one per MP rank.
Status list_model_files(DeepSpeedCheckpointFiles& files, TagFolderListing& l) {
  const fs::path dir(files.tag_dir);
  files.zero3_model_files = !l.zero3_model_ranks.empty();
  if (files.zero3_model_files) {
    for (int mp = 0; mp < files.mp_size; ++mp) {
      auto name = [&](int d) { return "zero_pp_rank_" + std::to_string(d) + "_mp_rank_" + mp_str(mp) + "_model_states.pt"; };
      UCP_RETURN_IF_ERROR(check_contiguous(l.zero3_model_ranks[mp], files.dp_size, dir, name));
      for (int d = 0; d < files.dp_size; ++d) files.model_state_files.push_back((dir / name(d)).string());
    }
    // More ZeRO-3 model files than optimizer files means two world sizes were saved here.
    if (*l.zero3_model_ranks.begin()->second.rbegin() + 1 > files.dp_size)
      return base::failed_precondition("'" + files.tag_dir + "' has ZeRO-3 model-state files for ranks " +
                                       list_ranks(l.zero3_model_ranks.begin()->second) + " but optimizer files for " +
                                       std::to_string(files.dp_size) + " ranks: files from two world sizes");
    return {};
  }
  if (l.model_mp.empty() && files.layer_files.empty())
    return base::not_found("missing '" + (dir / "mp_rank_00_model_states.pt").string() +
                           "': every ZeRO-1/2 checkpoint has one model-state file per model-parallel rank");
  for (int mp = 0; mp < files.mp_size && !l.model_mp.empty(); ++mp) {
    if (!l.model_mp.count(mp))
      return base::not_found("missing '" + (dir / ("mp_rank_" + mp_str(mp) + "_model_states.pt")).string() + "'");
    files.model_state_files.push_back((dir / ("mp_rank_" + mp_str(mp) + "_model_states.pt")).string());
  }
  return {};
}

}  // namespace

Result<DeepSpeedCheckpointFiles> discover_deepspeed_checkpoint(const std::string& path, const std::string& tag) {
  UCP_ASSIGN_OR_RETURN(DeepSpeedCheckpointFiles files, locate_tag_folder(path, tag));
  UCP_ASSIGN_OR_RETURN(TagFolderListing listing, list_tag_folder(files));
  UCP_RETURN_IF_ERROR(list_optimizer_files(files, listing));
  UCP_RETURN_IF_ERROR(list_model_files(files, listing));
  return files;
}

std::string_view optimizer_kind_name(DeepSpeedOptimizerKind kind) {
  switch (kind) {
    case DeepSpeedOptimizerKind::kZero12: return "DeepSpeedZeroOptimizer";
    case DeepSpeedOptimizerKind::kZero3: return "DeepSpeedZeroOptimizer_Stage3";
    case DeepSpeedOptimizerKind::kBf16: return "BF16_Optimizer";
  }
  return "unknown";
}

int decode_zero_stage(const ValuePtr& v) {
  if (!v) return -1;
  if (v->kind == Value::Kind::kInt) return static_cast<int>(v->i);
  if (v->kind != Value::Kind::kObject) return -1;
  const Object& o = v->object;
  const ValuePtr& args = o.args;
  if (!o.callable || o.callable->kind != Value::Kind::kGlobal || !args || args->items.empty()) return -1;
  const Global& g = o.callable->global;
  // Python >= 3.11 pickles enum members by name: getattr(ZeroStageEnum, 'gradients').
  if (g.name == "getattr" && args->items.size() == 2 && args->items[1]->is_str()) {
    static const std::map<std::string, int> kNames{
        {"disabled", 0}, {"optimizer_states", 1}, {"gradients", 2}, {"weights", 3}, {"max_stage", 3}};
    auto it = kNames.find(args->items[1]->str);
    return it == kNames.end() ? -1 : it->second;
  }
  // Older Pythons: ZeroStageEnum(2).
  if (g.name == "ZeroStageEnum" && args->items[0]->is_int()) return static_cast<int>(args->items[0]->i);
  return -1;
}

std::optional<std::vector<std::int64_t>> shape_of(const ValuePtr& v) {
  if (!v) return std::nullopt;
  if (v->kind != Value::Kind::kSize && v->kind != Value::Kind::kTuple && v->kind != Value::Kind::kList)
    return std::nullopt;
  std::vector<std::int64_t> dims;
  for (const auto& item : v->items) {
    if (!item->is_int() || item->i < 0) return std::nullopt;
    dims.push_back(item->i);
  }
  return dims;
}

namespace {

// Sum of numels over an OrderedDict name -> Size; counts names into `names`.
Result<std::uint64_t> sum_shapes(const ValuePtr& dict, const std::string& where, std::set<std::string>& names) {
  std::uint64_t total = 0;
  if (!dict || dict->kind == Value::Kind::kNone) return total;
  if (!dict->is_dict()) return base::data_loss(where + ": expected a dict of name -> torch.Size, found " + dict->type_name());
  for (const auto& [k, v] : dict->entries) {
    auto dims = shape_of(v);
    if (!k->is_str() || !dims)
      return base::data_loss(where + ": expected name -> torch.Size entries, found " + v->type_name());
    auto n = base::checked_numel(*dims);
    auto t = n ? base::checked_add(total, *n) : std::nullopt;
    if (!t) return base::data_loss(where + ": parameter '" + k->str + "' has an impossible shape");
    total = *t;
    names.insert(k->str);
  }
  return total;
}

}  // namespace

namespace {

// What rank 0's model-state file says: world sizes, step, version, parameter counts, precision.
Status summarize_model_file(const DeepSpeedCheckpointFiles& files, DeepSpeedSummary& s) {
  const std::string& model_path = files.model_state_files.front();
  UCP_ASSIGN_OR_RETURN(TorchFile model, TorchFile::open(model_path));
  const ValuePtr& m = model.root();
  if (!m->is_dict()) return base::data_loss("'" + model_path + "': expected a dict at the top level, found " + m->type_name());

  auto int_field = [&](const ValuePtr& d, const char* key, std::int64_t fallback) -> std::int64_t {
    ValuePtr v = d->get(key);
    return v && v->is_int() ? v->i : fallback;
  };
  s.saved_dp_world_size = static_cast<int>(int_field(m, "dp_world_size", 0));
  s.saved_mp_world_size = static_cast<int>(int_field(m, "mp_world_size", 1));
  s.global_steps = int_field(m, "global_steps", -1);
  if (ValuePtr v = m->get("ds_version"); v && v->is_str()) s.ds_version = v->str;

  if (s.saved_dp_world_size != 0 && s.saved_dp_world_size != files.dp_size)
    return base::failed_precondition("'" + model_path + "' records dp_world_size=" + std::to_string(s.saved_dp_world_size) +
                                     " but '" + files.tag_dir + "' holds optimizer files for " +
                                     std::to_string(files.dp_size) + " ranks: files from two world sizes");

  std::set<std::string> names;
  ValuePtr shapes = m->get("param_shapes");
  if (!shapes || (shapes->kind != Value::Kind::kList && shapes->kind != Value::Kind::kTuple))
    return base::data_loss("'" + model_path + "': missing 'param_shapes' list (written by DeepSpeed >= 0.6 for ZeRO checkpoints)");
  s.num_flat_groups = shapes->items.size();
  for (std::size_t g = 0; g < shapes->items.size(); ++g) {
    UCP_ASSIGN_OR_RETURN(std::uint64_t n, sum_shapes(shapes->items[g], "'" + model_path + "' param_shapes[" + std::to_string(g) + "]", names));
    s.trainable_params += n;
  }
  UCP_ASSIGN_OR_RETURN(s.frozen_params, sum_shapes(m->get("frozen_param_shapes"), "'" + model_path + "' frozen_param_shapes", names));
  s.num_tensors = names.size();
  if (ValuePtr b = m->get("buffer_names"); b && b->kind == Value::Kind::kList) s.num_buffers = b->items.size();
  if (ValuePtr sh = m->get("shared_params"); sh && sh->is_dict()) s.num_shared = sh->entries.size();

  // Precision: dtype of the first parameter tensor in `module`.
  if (ValuePtr module = m->get("module"); module && module->is_dict()) {
    for (const auto& [k, v] : module->entries) {
      if (v->is_tensor() && k->is_str() && names.count(k->str)) {
        s.model_dtype = v->tensor.dtype();
        break;
      }
    }
  }
  return {};
}

// The optimizer family from the state keys of the optimizer's groups.
std::string optimizer_family(const ValuePtr& inner) {
  std::set<std::string> keys;
  if (inner && inner->is_dict())
    if (ValuePtr state = inner->get("state"); state && state->is_dict())
      for (const auto& [k, v] : state->entries)
        if (v->is_dict())
          for (const auto& [sk, sv] : v->entries)
            if (sk->is_str()) keys.insert(sk->str);
  if (keys.count("exp_avg") && keys.count("exp_avg_sq")) return "Adam";
  if (keys.empty()) return "none (empty optimizer state)";
  std::string family;
  for (const auto& k : keys) family += (family.empty() ? "" : ",") + k;
  return family;
}

// What rank 0's optimizer file says: the wrapper, the stage, the optimizer family.
Status summarize_optimizer_file(const DeepSpeedCheckpointFiles& files, DeepSpeedSummary& s) {
  const std::string& optim_path = files.optim_files.front();
  UCP_ASSIGN_OR_RETURN(TorchFile optim, TorchFile::open(optim_path));
  ValuePtr osd = optim.root()->is_dict() ? optim.root()->get("optimizer_state_dict") : nullptr;
  if (!osd || !osd->is_dict())
    return base::data_loss("'" + optim_path + "': missing 'optimizer_state_dict' dict: not a DeepSpeed optimizer file");
  ValuePtr stage = osd->get("zero_stage");
  ValuePtr inner;
  if (!stage) {
    s.kind = DeepSpeedOptimizerKind::kBf16;
    s.zero_stage = 0;
    if (ValuePtr cfg = optim.root()->get("ds_config"); cfg && cfg->is_dict())
      if (ValuePtr z = cfg->get("zero_optimization"); z && z->is_dict())
        if (ValuePtr st = z->get("stage"); st && st->is_int()) s.zero_stage = static_cast<int>(st->i);
    inner = osd->get("base_optimizer_state");
  } else {
    s.zero_stage = decode_zero_stage(stage);
    if (s.zero_stage < 1 || s.zero_stage > 3)
      return base::data_loss("'" + optim_path + "': unrecognised zero_stage value (" + stage->type_name() + ")");
    s.kind = s.zero_stage == 3 ? DeepSpeedOptimizerKind::kZero3 : DeepSpeedOptimizerKind::kZero12;
    inner = s.zero_stage == 3 ? osd->get("optimizer_state_dict") : osd->get("base_optimizer_state");
  }
  if (files.zero3_model_files != (s.kind == DeepSpeedOptimizerKind::kZero3))
    return base::data_loss("'" + optim_path + "': zero_stage " + std::to_string(s.zero_stage) +
                           " does not match the model-state file layout of '" + files.tag_dir + "'");
  s.optimizer_family = optimizer_family(inner);
  return {};
}

}  // namespace

Result<DeepSpeedSummary> summarize_deepspeed_checkpoint(const DeepSpeedCheckpointFiles& files) {
  DeepSpeedSummary s;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(files.tag_dir, ec))
    if (e.is_regular_file()) s.checkpoint_bytes += e.file_size(ec);
  if (files.model_state_files.empty())
    return base::unimplemented("'" + files.tag_dir + "' is a pipeline-parallel checkpoint (layer_* files): not supported yet");
  UCP_RETURN_IF_ERROR(summarize_model_file(files, s));
  UCP_RETURN_IF_ERROR(summarize_optimizer_file(files, s));
  return s;
}

}  // namespace ucp::format
