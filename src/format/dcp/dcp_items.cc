// DCP's non-tensor ("bytes") items and the nested state dict planner_data describes: what
// dcp_to_torch_save rebuilds. Items are decoded by our pickle VM and checked against what
// torch.load(weights_only=True) would accept, so that nothing a hostile checkpoint names is
// ever carried into an output as if it were data.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ucp/format/dcp.h"
#include "ucp/format/mapped_file.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"
#include "zstd_items.h"

namespace ucp::format::dcp {
using base::Result;
using base::Status;

namespace {

// Lists planner_data makes (their holes included) may not grow past this in total: a hostile
// .metadata could otherwise ask for huge lists of None with a few bytes.
constexpr std::uint64_t kMaxListSlots = 1ull << 24;

// The dotted name of a global, as Python spells it ("os.system").
std::string global_text(const Global& g) { return g.module + "." + g.name; }

// torch's weights_only unpickler allows these constructions besides plain containers: dtypes,
// devices (torch.device('cpu')), and what our VM already turned into typed values.
bool allowed_global(const Global& g) {
  if (g.module == "torch" && base::dtype_from_torch_dtype_attr(g.name)) return true;
  return g.module == "torch" && g.name == "device";
}

// The first thing in `v` that weights_only loading refuses, as a phrase, or "". `clean` holds the
// objects already found acceptable: a pickle may share one subtree many times.
std::string forbidden_in(const ValuePtr& v, std::set<const Value*>& clean) {
  if (!v || clean.count(v.get())) return "";
  switch (v->kind) {
    case Value::Kind::kGlobal:
      if (!allowed_global(v->global)) return "the global " + global_text(v->global);
      break;
    case Value::Kind::kObject: {
      const Object& o = v->object;
      if (!o.callable || o.callable->kind != Value::Kind::kGlobal) return "an object built by a non-global callable";
      if (o.callable->global.module != "torch" || o.callable->global.name != "device" || o.state || !o.list_items.empty() ||
          !o.dict_items.empty())
        return "the global " + global_text(o.callable->global);
      break;
    }
    case Value::Kind::kTensor:
      if (Status s = check_tensor(v->tensor); !s.ok()) return "an invalid tensor (" + s.message() + ")";
      break;
    default:
      break;
  }
  std::string found;
  for_each_child(*v, [&](const ValuePtr& c) {
    if (found.empty()) found = forbidden_in(c, clean);
  });
  if (found.empty()) clean.insert(v.get());
  return found;
}

Result<ValuePtr> decode_item(const std::shared_ptr<const MappedFile>& data, const Metadata& m, const BytesItem& item) {
  const std::string where = "non-tensor item '" + item.fqn + "' in '" + data->path() + "'";
  auto view = MappedFile::view(data, item.stored.offset, item.stored.length,
                               data->path() + "@" + std::to_string(item.stored.offset));
  if (!view.ok())
    return base::data_loss(where + ": item [" + std::to_string(item.stored.offset) + ", +" +
                           std::to_string(item.stored.length) + ") runs past the end of the file (" +
                           std::to_string(data->size()) + " bytes)");
  std::shared_ptr<const MappedFile> bytes = *view;
  if (!item.stored.transforms.empty()) {
    UCP_ASSIGN_OR_RETURN(bytes, undo_transforms(bytes, item.stored.transforms, where));
  }
  auto file = TorchFile::parse(bytes);
  if (!file.ok()) return std::move(file).take_status().annotate(where);
  std::set<const Value*> clean;
  if (const std::string bad = forbidden_in(file->root(), clean); !bad.empty())
    return base::data_loss(where + " (" + m.metadata_path() + ") holds " + bad +
                           ", which torch.load(weights_only=True) refuses; nothing was executed");
  return file->root();
}

// Makes `list` long enough to hold index `i`, holes None (as set_element's extend_list).
Status grow_list(Value& list, std::size_t i, std::uint64_t& slots) {
  if (list.items.size() > i) return {};
  slots += i + 1 - list.items.size();
  if (slots > kMaxListSlots) return base::data_loss("planner_data asks for lists of more than 2^24 entries");
  list.items.resize(i + 1, Value::none());
  return {};
}

// One step of torch's set_element: the child of `parent` at `at`, made `fresh` when missing.
Result<ValuePtr> child_at(const ValuePtr& parent, const PathElement& at, bool want_list, std::uint64_t& slots,
                          const std::string& fqn) {
  auto fresh = [&] { return want_list ? Value::list({}) : Value::dict(); };
  if (parent->is_dict()) {
    if (at.is_index()) return base::data_loss("the path of '" + fqn + "' indexes a dict with a number");
    ValuePtr c = parent->get(at.key);
    if (!c) {
      c = fresh();
      parent->set(at.key, c);
    }
    return c;
  }
  if (parent->kind != Value::Kind::kList || !at.is_index())
    return base::data_loss("the path of '" + fqn + "' steps into a " + parent->type_name() + " with key '" + at.key + "'");
  const auto i = static_cast<std::size_t>(at.index);
  UCP_RETURN_IF_ERROR(grow_list(*parent, i, slots));
  if (!parent->items[i] || parent->items[i]->kind == Value::Kind::kNone) parent->items[i] = fresh();
  return parent->items[i];
}

Status place(const ValuePtr& root, const std::vector<PathElement>& path, const ValuePtr& leaf, std::uint64_t& slots,
             const std::string& fqn) {
  ValuePtr cur = root;
  for (std::size_t k = 0; k + 1 < path.size(); ++k) {
    UCP_ASSIGN_OR_RETURN(cur, child_at(cur, path[k], path[k + 1].is_index(), slots, fqn));
    if (!cur->is_dict() && cur->kind != Value::Kind::kList)
      return base::data_loss("the path of '" + fqn + "' runs through a " + cur->type_name());
  }
  const PathElement& last = path.back();
  if (cur->is_dict()) {
    if (last.is_index()) return base::data_loss("the path of '" + fqn + "' indexes a dict with a number");
    cur->set(last.key, leaf);
    return {};
  }
  if (!last.is_index()) return base::data_loss("the path of '" + fqn + "' names key '" + last.key + "' in a list");
  const auto i = static_cast<std::size_t>(last.index);
  UCP_RETURN_IF_ERROR(grow_list(*cur, i, slots));
  cur->items[i] = leaf;
  return {};
}

}  // namespace

Result<ValuePtr> read_bytes_item(const Metadata& m, const BytesItem& item) {
  auto data = MappedFile::open(m.dir + "/" + item.stored.file);
  if (!data.ok()) return std::move(data).take_status().annotate("data file named by '" + m.metadata_path() + "'");
  return decode_item(*data, m, item);
}

Result<std::vector<ValuePtr>> read_bytes_items(const Metadata& m) {
  std::map<std::string, std::shared_ptr<const MappedFile>> files;
  std::vector<ValuePtr> out;
  for (const BytesItem& item : m.bytes_items) {
    auto& f = files[item.stored.file];
    if (!f) {
      auto data = MappedFile::open(m.dir + "/" + item.stored.file);
      if (!data.ok()) return std::move(data).take_status().annotate("data file named by '" + m.metadata_path() + "'");
      f = std::move(*data);
    }
    UCP_ASSIGN_OR_RETURN(ValuePtr v, decode_item(f, m, item));
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<PathElement> path_of(const Metadata& m, const std::string& fqn) {
  if (auto it = m.planner_paths.find(fqn); it != m.planner_paths.end()) return it->second;
  return {PathElement{fqn, -1}};
}

Result<ValuePtr> nested_state(const Metadata& m, const std::map<std::string, ValuePtr>& leaves) {
  ValuePtr root = Value::dict();
  std::uint64_t slots = 0;
  for (const std::string& fqn : m.item_order) {
    auto it = leaves.find(fqn);
    if (it == leaves.end()) continue;
    if (Status s = place(root, path_of(m, fqn), it->second, slots, fqn); !s.ok()) return s.annotate("'" + m.metadata_path() + "'");
  }
  return root;
}

}  // namespace ucp::format::dcp
