#include "ucp/cli/inspect.h"

#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ucp/format/dcp.h"
#include "ucp/format/deepspeed_checkpoint.h"
#include "ucp/format/safetensors.h"
#include "ucp/format/state_dict.h"
#include "ucp/format/torch_file.h"

namespace ucp::cli {
namespace fs = std::filesystem;
using base::Status;
using format::Value;
using format::ValuePtr;
using Json = nlohmann::ordered_json;

namespace {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string human_bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; ++u; }
  std::ostringstream os;
  if (u == 0) os << n << " B"; else os << std::fixed << std::setprecision(1) << v << ' ' << units[u];
  return os.str();
}

std::string quoted(const std::string& s) { return Json(s).dump(); }

std::string scalar_text(const ValuePtr& v) {
  switch (v->kind) {
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v->b ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v->i);
    case Value::Kind::kBigInt: return "int (" + std::to_string(v->str.size() * 8) + "-bit)";
    case Value::Kind::kFloat: { std::ostringstream os; os << v->f; return os.str(); }
    case Value::Kind::kStr: return quoted(v->str.size() > 80 ? v->str.substr(0, 77) + "..." : v->str);
    case Value::Kind::kBytes: case Value::Kind::kByteArray: return v->type_name() + " (" + std::to_string(v->str.size()) + " B)";
    case Value::Kind::kGlobal: return v->global.module + "." + v->global.name;
    case Value::Kind::kSize: { std::vector<std::int64_t> d; for (auto& i : v->items) d.push_back(i->i); return "torch.Size(" + shape_string(d) + ")"; }
    case Value::Kind::kTensor: {
      const auto& t = v->tensor;
      return std::string(t.parameter ? "Parameter " : "Tensor ") + std::string(base::dtype_name(t.dtype())) + " " +
             shape_string(t.shape) + " " + human_bytes(t.nbytes()) + (t.storage && t.storage->numel != t.numel() ? " (view of storage '" + t.storage->key + "', " + std::to_string(t.storage->numel) + " elements, offset " + std::to_string(t.storage_offset) + ")" : "");
    }
    case Value::Kind::kStorage: return "Storage " + std::string(base::dtype_name(v->storage->dtype)) + " " + std::to_string(v->storage->numel);
    default: return "";
  }
}

bool is_container(const ValuePtr& v) {
  switch (v->kind) {
    case Value::Kind::kTuple: case Value::Kind::kList: case Value::Kind::kSet: case Value::Kind::kFrozenSet:
    case Value::Kind::kDict: case Value::Kind::kObject: return true;
    default: return false;
  }
}

// A short one-line rendering for small containers of scalars, so lists of names stay on one line.
bool inline_text(const ValuePtr& v, std::string& out) {
  if (!is_container(v)) { out = scalar_text(v); return true; }
  if (v->kind == Value::Kind::kDict || v->kind == Value::Kind::kObject) {
    if (v->kind == Value::Kind::kDict && v->entries.empty()) { out = v->ordered_dict ? "OrderedDict()" : "{}"; return true; }
    return false;
  }
  if (v->items.size() > 8) return false;
  std::string s;
  for (const auto& item : v->items) {
    std::string t;
    if (is_container(item) || !inline_text(item, t)) return false;
    s += (s.empty() ? "" : ", ") + t;
  }
  const bool tuple = v->kind == Value::Kind::kTuple;
  out = v->kind == Value::Kind::kList ? "[" + s + "]" : tuple ? "(" + s + ")" : v->type_name() + "({" + s + "})";
  return out.size() <= 120;
}

void print_tree(const ValuePtr& v, std::ostream& out, int indent, int max_items, const std::string& label) {
  const std::string pad(static_cast<std::size_t>(indent) * 2, ' ');
  std::string line;
  if (inline_text(v, line)) { out << pad << label << line << '\n'; return; }
  if (v->kind == Value::Kind::kObject) {
    const auto& o = v->object;
    std::string cls = o.callable ? scalar_text(o.callable) : "?";
    out << pad << label << "object " << cls << '\n';
    if (o.args && !o.args->items.empty()) print_tree(o.args, out, indent + 1, max_items, "args: ");
    if (o.state) print_tree(o.state, out, indent + 1, max_items, "state: ");
    return;
  }
  const std::size_t n = v->kind == Value::Kind::kDict ? v->entries.size() : v->items.size();
  out << pad << label << v->type_name() << '[' << n << "]\n";
  for (std::size_t i = 0; i < n; ++i) {
    if (static_cast<int>(i) == max_items) { out << pad << "  ... " << (n - i) << " more\n"; break; }
    if (v->kind == Value::Kind::kDict) {
      const auto& [k, val] = v->entries[i];
      std::string key;
      if (!inline_text(k, key)) key = k->type_name();
      print_tree(val, out, indent + 1, max_items, key + ": ");
    } else {
      print_tree(v->items[i], out, indent + 1, max_items, "[" + std::to_string(i) + "]: ");
    }
  }
}

Json tree_json(const ValuePtr& v) {
  switch (v->kind) {
    case Value::Kind::kNone: return nullptr;
    case Value::Kind::kBool: return v->b;
    case Value::Kind::kInt: return v->i;
    case Value::Kind::kFloat: return v->f;
    case Value::Kind::kStr: return v->str;
    case Value::Kind::kTensor: {
      const auto& t = v->tensor;
      Json j{{"type", t.parameter ? "Parameter" : "Tensor"}, {"dtype", base::dtype_name(t.dtype())},
             {"shape", t.shape}, {"bytes", t.nbytes()}};
      if (t.storage) j["storage"] = {{"key", t.storage->key}, {"numel", t.storage->numel}, {"offset", t.storage_offset}};
      return j;
    }
    case Value::Kind::kDict: {
      Json j = Json::object();
      Json entries = Json::array();
      bool string_keys = true;
      for (const auto& [k, val] : v->entries) string_keys = string_keys && k->is_str();
      if (string_keys) {
        for (const auto& [k, val] : v->entries) j[k->str] = tree_json(val);
        return j;
      }
      for (const auto& [k, val] : v->entries) entries.push_back(Json::array({tree_json(k), tree_json(val)}));
      return Json{{"type", v->type_name()}, {"entries", entries}};
    }
    case Value::Kind::kList: case Value::Kind::kTuple: {
      Json j = Json::array();
      for (const auto& item : v->items) j.push_back(tree_json(item));
      return j;
    }
    case Value::Kind::kObject: {
      Json j{{"type", "object"}, {"class", v->object.callable ? scalar_text(v->object.callable) : ""}};
      if (v->object.args && !v->object.args->items.empty()) j["args"] = tree_json(v->object.args);
      if (v->object.state) j["state"] = tree_json(v->object.state);
      return j;
    }
    default: {
      Json j{{"type", v->type_name()}};
      if (!v->items.empty()) { Json a = Json::array(); for (auto& i : v->items) a.push_back(tree_json(i)); j["items"] = a; }
      else j["value"] = scalar_text(v);
      return j;
    }
  }
}

Status inspect_torch(const InspectOptions& o, std::ostream& out) {
  UCP_ASSIGN_OR_RETURN(format::TorchFile file, format::TorchFile::open(o.path));
  if (o.json) {
    out << Json{{"path", o.path}, {"format", "torch"}, {"archive", file.archive_name()},
                {"records", file.zip().records().size()}, {"tree", tree_json(file.root())}}.dump(2) << '\n';
    return {};
  }
  out << o.path << ": torch zip, archive '" << file.archive_name() << "', " << file.zip().records().size()
      << " records, " << human_bytes(file.zip().file()->size()) << '\n';
  print_tree(file.root(), out, 0, o.max_items, "");
  return {};
}

Status inspect_safetensors(const InspectOptions& o, std::ostream& out) {
  UCP_ASSIGN_OR_RETURN(format::SafetensorsFile file, format::SafetensorsFile::open(o.path));
  if (o.json) {
    Json tensors = Json::object();
    for (const auto& e : file.entries())
      tensors[e.name] = {{"dtype", base::dtype_name(e.dtype)}, {"shape", e.shape}, {"bytes", e.end - e.begin}};
    out << Json{{"path", o.path}, {"format", "safetensors"}, {"metadata", file.metadata()}, {"tensors", tensors}}.dump(2) << '\n';
    return {};
  }
  out << o.path << ": safetensors, " << file.entries().size() << " tensors, " << human_bytes(file.file()->size()) << '\n';
  for (const auto& [k, v] : file.metadata()) out << "  __metadata__ " << k << " = " << quoted(v) << '\n';
  for (const auto& e : file.entries())
    out << "  " << quoted(e.name) << ": " << base::dtype_name(e.dtype) << ' ' << shape_string(e.shape) << ' '
        << human_bytes(e.end - e.begin) << '\n';
  return {};
}

Status inspect_deepspeed(const InspectOptions& o, std::ostream& out) {
  UCP_ASSIGN_OR_RETURN(format::DeepSpeedCheckpointFiles files, format::discover_deepspeed_checkpoint(o.path, o.tag));
  UCP_ASSIGN_OR_RETURN(format::DeepSpeedSummary s, format::summarize_deepspeed_checkpoint(files));
  const std::string stage = std::to_string(s.zero_stage);
  if (o.json) {
    out << Json{{"path", o.path}, {"format", "deepspeed"}, {"tag", files.tag}, {"tag_dir", files.tag_dir},
                {"zero_stage", s.zero_stage}, {"optimizer_wrapper", format::optimizer_kind_name(s.kind)},
                {"precision", base::dtype_name(s.model_dtype)}, {"optimizer", s.optimizer_family},
                {"dp_world_size", files.dp_size}, {"mp_world_size", files.mp_size},
                {"ds_version", s.ds_version}, {"global_steps", s.global_steps},
                {"flat_groups", s.num_flat_groups}, {"trainable_params", s.trainable_params},
                {"frozen_params", s.frozen_params}, {"parameters", s.num_tensors}, {"buffers", s.num_buffers},
                {"tied_names", s.num_shared}, {"checkpoint_bytes", s.checkpoint_bytes},
                {"model_state_files", files.model_state_files}, {"optim_files", files.optim_files}}.dump(2) << '\n';
    return {};
  }
  out << "DeepSpeed checkpoint " << files.tag_dir << '\n'
      << "  tag:             " << files.tag << (o.tag.empty() && !files.save_dir.empty() ? " (from latest)" : "") << '\n'
      << "  ZeRO stage:      " << stage << " (" << format::optimizer_kind_name(s.kind) << ")\n"
      << "  precision:       " << base::dtype_name(s.model_dtype) << " model, fp32 master weights\n"
      << "  optimizer:       " << s.optimizer_family << '\n'
      << "  world sizes:     dp " << files.dp_size << ", mp " << files.mp_size << '\n'
      << "  parameters:      " << s.num_tensors << " tensors, " << s.trainable_params << " trainable + "
      << s.frozen_params << " frozen elements, " << s.num_flat_groups << " flat group(s)\n"
      << "  buffers:         " << s.num_buffers << ", tied names: " << s.num_shared << '\n'
      << "  saved by:        DeepSpeed " << s.ds_version << " at global step " << s.global_steps << '\n'
      << "  files:           " << files.model_state_files.size() << " model-state, " << files.optim_files.size()
      << " optimizer (" << human_bytes(s.checkpoint_bytes) << ")\n";
  return {};
}

// A PyTorch DCP folder: every item of .metadata (tensors with their chunks, non-tensor items), the
// data files, and whether the chunks tile every tensor (holes and overlaps are named, exit non-zero).
Status inspect_dcp(const InspectOptions& o, std::ostream& out) {
  UCP_ASSIGN_OR_RETURN(format::dcp::Metadata m, format::dcp::read_metadata(o.path));
  const Status coverage = format::dcp::read_layout(m).status();
  Status items_status;  // the first non-tensor item we cannot decode (or refuse)
  if (o.json) {
    Json tensors = Json::object(), bytes_items = Json::object();
    for (const auto& t : m.tensors) {
      Json chunks = Json::array();
      for (const auto& c : t.chunks)
        chunks.push_back({{"offsets", c.offsets}, {"sizes", c.sizes}, {"file", c.stored.file}, {"offset", c.stored.offset},
                          {"length", c.stored.length}});
      tensors[t.fqn] = {{"dtype", base::dtype_name(t.dtype)}, {"shape", t.shape}, {"chunks", chunks}};
    }
    for (const auto& b : m.bytes_items) {
      bytes_items[b.fqn] = {{"file", b.stored.file}, {"offset", b.stored.offset}, {"length", b.stored.length}};
      auto value = format::dcp::read_bytes_item(m, b);
      if (value.ok()) bytes_items[b.fqn]["value"] = tree_json(*value);
      else bytes_items[b.fqn]["error"] = value.status().message();
      if (!value.ok() && items_status.ok()) items_status = value.status();
    }
    out << Json{{"path", o.path}, {"format", "dcp"}, {"version", m.version}, {"files", m.files}, {"tensors", tensors},
                {"bytes_items", bytes_items}, {"coverage", coverage.ok() ? "complete" : coverage.message()}}.dump(2) << '\n';
    return coverage.ok() ? items_status : coverage;
  }
  std::uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& f : m.files) {
    const std::uintmax_t size = fs::file_size(fs::path(o.path) / f, ec);
    if (!ec) bytes += size;
  }
  out << "PyTorch DCP checkpoint " << o.path << (m.version.empty() ? "" : " (version " + m.version + ")") << '\n'
      << "  items:           " << m.tensors.size() << " tensors, " << m.bytes_items.size() << " non-tensor\n"
      << "  files:           " << m.files.size() << " data files (" << human_bytes(bytes) << ")\n"
      << "  chunks:          " << (coverage.ok() ? "every tensor tiled exactly once" : coverage.message()) << '\n';
  int listed = 0;
  for (const auto& t : m.tensors) {
    if (o.max_items >= 0 && listed++ >= o.max_items) {
      out << "  ... " << m.tensors.size() - static_cast<std::size_t>(o.max_items) << " more tensors\n";
      break;
    }
    out << "  " << quoted(t.fqn) << ": " << base::dtype_name(t.dtype) << ' ' << shape_string(t.shape) << ", "
        << t.chunks.size() << " chunk(s)";
    for (const auto& c : t.chunks) out << ' ' << shape_string(c.offsets) << '+' << shape_string(c.sizes) << '@' << c.stored.file;
    out << '\n';
  }
  for (const auto& b : m.bytes_items) {
    const std::string where = " (non-tensor, " + human_bytes(b.stored.length) + " in " + b.stored.file + ")";
    auto value = format::dcp::read_bytes_item(m, b);
    std::string line;
    if (!value.ok()) {
      out << "  " << quoted(b.fqn) << ": unreadable" << where << ": " << value.status().message() << '\n';
      if (items_status.ok()) items_status = value.status();
    } else if (inline_text(*value, line)) {
      out << "  " << quoted(b.fqn) << ": " << line << where << '\n';
    } else {
      out << "  " << quoted(b.fqn) << where << ":\n";
      print_tree(*value, out, 2, o.max_items < 0 ? 16 : o.max_items, "");
    }
  }
  return coverage.ok() ? items_status : coverage;
}

// An HDF5 file of to-fp32: its /model datasets, through the state-dict loader (no HDF5 here).
Status inspect_hdf5(const InspectOptions& o, std::ostream& out) {
  UCP_ASSIGN_OR_RETURN(format::StateDict sd, format::StateDict::open(o.path));
  if (o.json) {
    Json tensors = Json::object();
    for (const auto& t : sd.tensors())
      tensors[t.name] = {{"dtype", base::dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.bytes.size()}};
    out << Json{{"path", o.path}, {"format", "hdf5"}, {"tensors", tensors}}.dump(2) << '\n';
    return {};
  }
  out << o.path << ": HDF5 (to-fp32), " << sd.size() << " tensors under /model, " << human_bytes(fs::file_size(o.path)) << '\n';
  for (const auto& n : sd.notes()) out << "  note: " << n << '\n';
  for (const auto& t : sd.tensors())
    out << "  " << quoted(t.name) << ": " << base::dtype_name(t.dtype) << ' ' << shape_string(t.shape) << ' '
        << human_bytes(t.bytes.size()) << '\n';
  return {};
}

bool has_suffix(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Status run_inspect(const InspectOptions& o, std::ostream& out) {
  std::error_code ec;
  if (!fs::exists(o.path, ec)) return base::not_found("'" + o.path + "' does not exist");
  if (format::dcp::is_dcp_folder(o.path)) return inspect_dcp(o, out);
  if (fs::is_directory(o.path, ec)) return inspect_deepspeed(o, out);
  if (has_suffix(o.path, ".safetensors")) return inspect_safetensors(o, out);
  if (has_suffix(o.path, ".h5") || has_suffix(o.path, ".hdf5")) return inspect_hdf5(o, out);
  // Anything else must be a torch zip; the reader says clearly when it is not.
  return inspect_torch(o, out);
}

}  // namespace ucp::cli
