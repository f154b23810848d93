#include "ucp/plan/key_map.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "key_map_presets.h"

namespace ucp::plan {
using base::Result;
using base::Status;
using format::LogicalTensor;
using format::Piece;
using format::SourceLayout;
using format::TensorLocation;
using format::TensorRole;
using json = nlohmann::json;

bool KeyMap::needs_heads() const {
  return std::any_of(rename.begin(), rename.end(), [](const RenameRule& r) { return r.rotary != RotaryPermute::kNone; });
}

// ---------------------------------------------------------------- parsing

namespace {

Status bad_field(const std::string& name, const std::string& what) {
  return base::invalid_argument("key map " + name + ": " + what);
}

// Keys of `object` outside `allowed`: the first one, so that a typo is refused, not ignored.
Status only_keys(const json& object, std::initializer_list<const char*> allowed, const std::string& name,
                 const std::string& where) {
  if (!object.is_object()) return bad_field(name, where + " must be a JSON object");
  for (const auto& [key, value] : object.items())
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
      return bad_field(name, "unknown field '" + key + "' in " + where);
  return {};
}

Result<std::string> string_field(const json& object, const char* key, const std::string& name, const std::string& where,
                                 bool required) {
  if (!object.contains(key)) {
    if (required) return bad_field(name, where + " needs \"" + key + "\"");
    return std::string();
  }
  if (!object[key].is_string()) return bad_field(name, "\"" + std::string(key) + "\" in " + where + " must be a string");
  return object[key].get<std::string>();
}

Status check_regex(const std::string& pattern, const std::string& name, const std::string& where) {
  try {
    std::regex re(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return bad_field(name, where + ": '" + pattern + "' is not a valid regex (" + e.what() + ")");
  }
  return {};
}

Result<std::vector<std::string>> string_list(const json& doc, const char* key, const std::string& name) {
  std::vector<std::string> out;
  if (!doc.contains(key)) return out;
  if (!doc[key].is_array()) return bad_field(name, "\"" + std::string(key) + "\" must be a list of strings");
  for (const json& v : doc[key]) {
    if (!v.is_string()) return bad_field(name, "\"" + std::string(key) + "\" must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<RenameRule> parse_rename(const json& r, const std::string& name, std::size_t index) {
  const std::string where = "rename[" + std::to_string(index) + "]";
  UCP_RETURN_IF_ERROR(only_keys(r, {"from", "to", "rotary", "heads"}, name, where));
  RenameRule rule;
  UCP_ASSIGN_OR_RETURN(rule.from, string_field(r, "from", name, where, true));
  UCP_ASSIGN_OR_RETURN(rule.to, string_field(r, "to", name, where, true));
  UCP_RETURN_IF_ERROR(check_regex(rule.from, name, where));
  UCP_ASSIGN_OR_RETURN(const std::string rotary, string_field(r, "rotary", name, where, false));
  UCP_ASSIGN_OR_RETURN(const std::string heads, string_field(r, "heads", name, where, false));
  if (rotary == "hf_to_meta") rule.rotary = RotaryPermute::kHfToMeta;
  else if (rotary == "meta_to_hf") rule.rotary = RotaryPermute::kMetaToHf;
  else if (!rotary.empty()) return bad_field(name, where + ": \"rotary\" is hf_to_meta or meta_to_hf, not '" + rotary + "'");
  if (heads == "n_kv_heads") rule.heads = HeadCount::kKeyValue;
  else if (!heads.empty() && heads != "n_heads")
    return bad_field(name, where + ": \"heads\" is n_heads or n_kv_heads, not '" + heads + "'");
  if (rule.rotary == RotaryPermute::kNone && !heads.empty())
    return bad_field(name, where + ": \"heads\" without \"rotary\"");
  if (rule.rotary != RotaryPermute::kNone && heads.empty())
    return bad_field(name, where + ": \"rotary\" needs \"heads\" (n_heads for wq, n_kv_heads for wk)");
  return rule;
}

Result<TieRule> parse_tie(const json& t, const std::string& name, std::size_t index) {
  const std::string where = "tie[" + std::to_string(index) + "]";
  UCP_RETURN_IF_ERROR(only_keys(t, {"key", "from", "when", "unless"}, name, where));
  TieRule tie;
  UCP_ASSIGN_OR_RETURN(tie.key, string_field(t, "key", name, where, true));
  UCP_ASSIGN_OR_RETURN(tie.from, string_field(t, "from", name, where, true));
  UCP_ASSIGN_OR_RETURN(const std::string when, string_field(t, "when", name, where, false));
  UCP_ASSIGN_OR_RETURN(tie.unless, string_list(t, "unless", name + " " + where));
  if (when == "template") tie.only_in_template = true;
  else if (!when.empty() && when != "absent")
    return bad_field(name, where + ": \"when\" is absent or template, not '" + when + "'");
  return tie;
}

Result<KeyMap> parse_key_map_json(const json& doc, const std::string& name) {
  UCP_RETURN_IF_ERROR(only_keys(doc, {"description", "strip", "drop", "rename", "keep_unmatched", "tie"}, name, "the map"));
  KeyMap map;
  map.name = name;
  UCP_ASSIGN_OR_RETURN(map.strip, string_list(doc, "strip", name));
  UCP_ASSIGN_OR_RETURN(map.drop, string_list(doc, "drop", name));
  for (const std::string& d : map.drop) UCP_RETURN_IF_ERROR(check_regex(d, name, "drop"));
  for (const std::string& s : map.strip)
    if (s.empty()) return bad_field(name, "\"strip\" holds an empty string");
  if (doc.contains("keep_unmatched")) {
    if (!doc["keep_unmatched"].is_boolean()) return bad_field(name, "\"keep_unmatched\" must be true or false");
    map.keep_unmatched = doc["keep_unmatched"].get<bool>();
  }
  if (doc.contains("rename")) {
    if (!doc["rename"].is_array()) return bad_field(name, "\"rename\" must be a list of rules");
    for (std::size_t i = 0; i < doc["rename"].size(); ++i) {
      UCP_ASSIGN_OR_RETURN(RenameRule rule, parse_rename(doc["rename"][i], name, i));
      map.rename.push_back(std::move(rule));
    }
  }
  if (doc.contains("tie")) {
    if (!doc["tie"].is_array()) return bad_field(name, "\"tie\" must be a list of rules");
    for (std::size_t i = 0; i < doc["tie"].size(); ++i) {
      UCP_ASSIGN_OR_RETURN(TieRule tie, parse_tie(doc["tie"][i], name, i));
      map.tie.push_back(std::move(tie));
    }
  }
  return map;
}

}  // namespace

Result<KeyMap> parse_key_map(std::string_view text, const std::string& name) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return base::invalid_argument("key map " + name + ": not valid JSON (" + e.what() + ")");
  }
  return parse_key_map_json(doc, name);
}

std::vector<std::string> key_map_preset_names() {
  std::vector<std::string> names;
  for (const auto& p : detail::key_map_presets()) names.emplace_back(p.name);
  std::sort(names.begin(), names.end());
  return names;
}

std::optional<std::string_view> key_map_preset(std::string_view name) {
  for (const auto& p : detail::key_map_presets())
    if (p.name == name) return p.json;
  return std::nullopt;
}

// ---------------------------------------------------------------- heads

namespace {

// A non-negative integer field, 0 when absent or null.
Result<std::int64_t> count_field(const json& o, const char* key, const std::string& name) {
  if (!o.contains(key) || o[key].is_null()) return std::int64_t{0};
  if (!o[key].is_number_integer() || o[key].get<std::int64_t>() < 0)
    return base::invalid_argument(name + ": \"" + key + "\" must be a non-negative integer");
  return o[key].get<std::int64_t>();
}

// The object holding the attention fields: the top level, an HF multimodal "text_config", or
// Lingua's "model".
const json* heads_object(const json& doc) {
  for (const char* nested : {"text_config", "model"})
    if (doc.contains(nested) && doc[nested].is_object() &&
        (doc[nested].contains("num_attention_heads") || doc[nested].contains("n_heads") || doc[nested].contains("head_dim")))
      return &doc[nested];
  return &doc;
}

}  // namespace

Result<ModelHeads> parse_model_heads(std::string_view text, const std::string& name) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return base::invalid_argument(name + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) return base::invalid_argument(name + ": expected a JSON object (config.json or params.json)");
  const json& o = *heads_object(doc);
  const bool hf = o.contains("num_attention_heads");
  ModelHeads h;
  h.source = name;
  UCP_ASSIGN_OR_RETURN(h.n_heads, count_field(o, hf ? "num_attention_heads" : "n_heads", name));
  UCP_ASSIGN_OR_RETURN(h.n_kv_heads, count_field(o, hf ? "num_key_value_heads" : "n_kv_heads", name));
  UCP_ASSIGN_OR_RETURN(h.head_dim, count_field(o, "head_dim", name));
  UCP_ASSIGN_OR_RETURN(const std::int64_t width, count_field(o, hf ? "hidden_size" : "dim", name));
  if (h.n_heads == 0 && h.head_dim > 0 && width > 0 && width % h.head_dim == 0) h.n_heads = width / h.head_dim;  // Lingua
  if (h.n_heads == 0)
    return base::invalid_argument(name + ": no attention heads (expected num_attention_heads in an HF config.json, "
                                  "n_heads in a Meta or Lingua params.json)");
  if (h.n_kv_heads == 0) h.n_kv_heads = h.n_heads;
  if (h.head_dim == 0 && width > 0 && width % h.n_heads == 0) h.head_dim = width / h.n_heads;
  if (h.n_heads % h.n_kv_heads != 0)
    return base::invalid_argument(name + ": " + std::to_string(h.n_heads) + " heads do not divide into " +
                                  std::to_string(h.n_kv_heads) + " key/value heads");
  return h;
}

// ---------------------------------------------------------------- permutation

std::uint64_t rotary_row(std::uint64_t row, std::uint64_t head_dim, RotaryPermute permute) {
  const std::uint64_t head = row / head_dim, x = row % head_dim, half = head_dim / 2;
  switch (permute) {
    case RotaryPermute::kHfToMeta:  // x = j * half + i  ->  2i + j
      return head * head_dim + 2 * (x % half) + x / half;
    case RotaryPermute::kMetaToHf:  // x = 2i + j  ->  j * half + i
      return head * head_dim + (x % 2) * half + x / 2;
    case RotaryPermute::kNone:
      break;
  }
  return row;
}

namespace {

// Appends contiguous source runs, growing the last piece while the next run continues it: in the
// file, and in the tensor either right after it (a longer run) or one stride further (a strided box).
class PieceMerger {
 public:
  void add(const TensorLocation& src, std::uint64_t dst) {
    if (!pieces_.empty() && extend(pieces_.back(), src, dst)) return;
    pieces_.push_back({src, dst, 1, 0});
  }
  std::vector<Piece> take() {
    std::stable_sort(pieces_.begin(), pieces_.end(), [](const Piece& a, const Piece& b) { return a.dst_offset < b.dst_offset; });
    return std::move(pieces_);
  }

 private:
  static bool extend(Piece& p, const TensorLocation& src, std::uint64_t dst) {
    if (p.src.file != src.file || p.src.dtype != src.dtype || p.src.offset + p.src.nbytes() != src.offset) return false;
    const std::uint64_t row = p.row_numel();
    if (p.rows == 1 && dst == p.dst_offset + row) {  // contiguous in both: one longer run
      p.src.numel += src.numel;
      return true;
    }
    if (src.numel != row) return false;
    if (p.rows == 1 && dst >= p.dst_offset + row) {
      p.rows = 2;
      p.dst_row_stride = dst - p.dst_offset;
    } else if (p.rows > 1 && dst == p.dst_offset + p.rows * p.dst_row_stride) {
      ++p.rows;
    } else {
      return false;
    }
    p.src.numel += src.numel;
    return true;
  }
  std::vector<Piece> pieces_;
};

}  // namespace

Result<std::vector<Piece>> permute_rows(const LogicalTensor& t, const std::function<std::uint64_t(std::uint64_t)>& row_of) {
  if (t.shape.empty() || t.shape[0] <= 0 || t.numel() == 0) return t.pieces;
  const std::uint64_t rows = static_cast<std::uint64_t>(t.shape[0]), width = t.numel() / rows;
  PieceMerger merger;
  Status walked = format::for_each_run(t, [&](const TensorLocation& src, std::uint64_t dst) -> Status {
    for (std::uint64_t done = 0; done < src.numel;) {  // cut at row boundaries
      const std::uint64_t at = dst + done, row = at / width, col = at % width;
      const std::uint64_t len = std::min(src.numel - done, width - col);
      const std::uint64_t to = row_of(row);
      if (to >= rows) return base::internal_error("'" + t.name + "': a row permutation leaves the tensor");
      merger.add(src.slice(done, len), to * width + col);
      done += len;
    }
    return {};
  });
  UCP_RETURN_IF_ERROR(walked);
  return merger.take();
}

// ---------------------------------------------------------------- applying a map

namespace {

// `key` without the components of `strip` (each removed at the start or after a '.').
std::string stripped(std::string key, const std::vector<std::string>& strip) {
  for (bool changed = true; changed;) {
    changed = false;
    for (const std::string& s : strip)
      for (std::size_t at = key.find(s); at != std::string::npos; at = key.find(s, at + 1))
        if (at == 0 || key[at - 1] == '.') {
          key.erase(at, s.size());
          changed = true;
          break;
        }
  }
  return key;
}

std::string listed(const std::vector<std::string>& keys, std::size_t most = 5) {
  std::string out;
  for (std::size_t i = 0; i < keys.size() && i < most; ++i) out += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > most) out += " (+" + std::to_string(keys.size() - most) + " more)";
  return out;
}

struct Compiled {
  std::vector<std::regex> drop, from;
};

Compiled compile(const KeyMap& map) {
  Compiled c;
  for (const auto& d : map.drop) c.drop.emplace_back(d, std::regex::ECMAScript);
  for (const auto& r : map.rename) c.from.emplace_back(r.from, std::regex::ECMAScript);
  return c;
}

// One source tensor's fate: its target key and the rule that named it (nullptr: kept unmatched).
struct Mapped {
  std::size_t source;
  std::string key;
  const RenameRule* rule;
};

Result<std::vector<Mapped>> map_keys(const SourceLayout& layout, const KeyMap& map) {
  const Compiled re = compile(map);
  std::vector<Mapped> out;
  std::vector<std::string> unmatched;
  std::map<std::string, std::size_t> target_of;
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
    const std::string key = stripped(layout.tensors[i].name, map.strip);
    if (std::any_of(re.drop.begin(), re.drop.end(), [&](const std::regex& d) { return std::regex_match(key, d); })) continue;
    Mapped m{i, key, nullptr};
    std::smatch match;
    std::size_t r = 0;
    while (r < re.from.size() && !std::regex_match(key, match, re.from[r])) ++r;
    if (r < re.from.size()) {
      m.key = match.format(map.rename[r].to);
      m.rule = &map.rename[r];
    } else if (!map.keep_unmatched) {
      unmatched.push_back(layout.tensors[i].name);
      continue;
    }
    if (auto [it, fresh] = target_of.emplace(m.key, i); !fresh)
      return base::invalid_argument("--key-map " + map.name + ": source keys '" + layout.tensors[it->second].name + "' and '" +
                                    layout.tensors[i].name + "' both map to '" + m.key + "'");
    out.push_back(std::move(m));
  }
  if (!unmatched.empty())
    return base::invalid_argument("--key-map " + map.name + ": no rule renames or drops source key " + listed(unmatched) +
                                  " (add a rename or drop rule, or \"keep_unmatched\": true)");
  return out;
}

// The permuted pieces of `t` (named `key` in the target) under `rule`.
Result<std::vector<Piece>> rotary_pieces(const LogicalTensor& t, const std::string& key, const RenameRule& rule,
                                         const std::optional<ModelHeads>& heads, const std::string& map_name) {
  const char* which = rule.heads == HeadCount::kQuery ? "n_heads" : "n_kv_heads";
  if (!heads)
    return base::invalid_argument("--key-map " + map_name + ": '" + key + "' needs the model's " + which +
                                  " for its rotary permutation; give --model-config (an HF config.json or a Meta/Lingua "
                                  "params.json)");
  const std::int64_t count = rule.heads == HeadCount::kQuery ? heads->n_heads : heads->n_kv_heads;
  const std::int64_t rows = t.shape.empty() ? 0 : t.shape[0];
  const std::string named = "--key-map " + map_name + ": '" + t.name + "' -> '" + key + "' has " + std::to_string(rows) + " rows";
  if (count <= 0 || rows <= 0 || rows % count != 0)
    return base::invalid_argument(named + ", which do not divide into " + which + " = " + std::to_string(count) + " heads (" +
                                  heads->source + ")");
  const std::int64_t head_dim = rows / count;
  if (heads->head_dim > 0 && head_dim != heads->head_dim)
    return base::invalid_argument(named + ", not " + which + " x head_dim = " + std::to_string(count) + " x " +
                                  std::to_string(heads->head_dim) + " (" + heads->source + "): wrong heads for this model?");
  if (head_dim % 2 != 0)
    return base::invalid_argument(named + ": heads of " + std::to_string(head_dim) + " rows cannot hold rotary pairs");
  const auto d = static_cast<std::uint64_t>(head_dim);
  return permute_rows(t, [&](std::uint64_t row) { return rotary_row(row, d, rule.rotary); });
}

// The tensor an alias reads its values from (aliases of aliases followed).
std::size_t values_of(const SourceLayout& layout, std::size_t i) {
  for (int hops = 0; layout.tensors[i].role == TensorRole::kAlias && hops < 8; ++hops)
    i = static_cast<std::size_t>(layout.tensors[i].alias_of);
  return i;
}

Status add_ties(SourceLayout& out, const KeyMap& map, const std::vector<std::string>* template_keys) {
  for (const TieRule& tie : map.tie) {
    // With a template, a tie fills only a key the template has; without one, only "absent" ties.
    const bool in_template =
        template_keys && std::find(template_keys->begin(), template_keys->end(), tie.key) != template_keys->end();
    if (template_keys ? !in_template : tie.only_in_template) continue;
    auto named = [&](const std::string& k) {
      return std::find_if(out.tensors.begin(), out.tensors.end(), [&](const LogicalTensor& t) { return t.name == k; });
    };
    if (named(tie.key) != out.tensors.end()) continue;  // a source filled it
    if (std::any_of(tie.unless.begin(), tie.unless.end(), [&](const std::string& k) { return named(k) != out.tensors.end(); }))
      continue;
    const auto from = named(tie.from);
    if (from == out.tensors.end())
      return base::invalid_argument("--key-map " + map.name + ": '" + tie.key + "' is tied to '" + tie.from +
                                    "', which no source key maps to");
    const std::size_t source = values_of(out, static_cast<std::size_t>(from - out.tensors.begin()));
    LogicalTensor alias{tie.key, from->shape, from->dtype, TensorRole::kAlias, static_cast<int>(source), {}};
    out.tensors.push_back(std::move(alias));
  }
  return {};
}

}  // namespace

Result<SourceLayout> apply_key_map(const SourceLayout& layout, const KeyMap& map, const std::optional<ModelHeads>& heads,
                                   const std::vector<std::string>* template_keys, std::vector<std::size_t>* sources) {
  UCP_ASSIGN_OR_RETURN(const std::vector<Mapped> mapped, map_keys(layout, map));
  std::vector<int> new_index(layout.tensors.size(), -1);
  std::vector<bool> permuted(layout.tensors.size(), false);
  for (std::size_t k = 0; k < mapped.size(); ++k) {
    new_index[mapped[k].source] = static_cast<int>(k);
    permuted[mapped[k].source] = mapped[k].rule && mapped[k].rule->rotary != RotaryPermute::kNone;
  }
  SourceLayout out;
  for (const Mapped& m : mapped) {
    LogicalTensor t = layout.tensors[m.source];
    t.name = m.key;
    if (t.role == TensorRole::kAlias) {
      const std::size_t source = values_of(layout, m.source);
      // An alias stays one while its values are the same elements in the target: its source kept
      // and neither of them permuted; otherwise it becomes a copy of its source's pieces.
      if (new_index[source] >= 0 && !permuted[source] && !permuted[m.source]) {
        t.alias_of = new_index[source];
      } else {
        t.role = layout.tensors[source].role;
        t.alias_of = -1;
        t.pieces = layout.tensors[source].pieces;
      }
    }
    if (permuted[m.source]) {
      LogicalTensor values = t;
      values.name = layout.tensors[m.source].name;
      UCP_ASSIGN_OR_RETURN(t.pieces, rotary_pieces(values, m.key, *m.rule, heads, map.name));
      UCP_RETURN_IF_ERROR(format::check_coverage(t));
    }
    out.tensors.push_back(std::move(t));
  }
  UCP_RETURN_IF_ERROR(add_ties(out, map, template_keys));
  if (sources) {
    sources->assign(out.tensors.size(), kNoSource);
    for (std::size_t k = 0; k < mapped.size(); ++k) (*sources)[k] = mapped[k].source;
  }
  return out;
}

// ---------------------------------------------------------------- templates

namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

Result<SourceLayout> conform_to_template(const SourceLayout& layout, const std::vector<TemplateTensor>& tensors,
                                         const std::string& template_dir) {
  const std::string like = "--like " + template_dir + ": ";
  std::map<std::string, std::size_t> have;
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) have.emplace(layout.tensors[i].name, i);
  std::set<std::string> wanted;
  std::vector<std::string> missing, extra;
  for (const TemplateTensor& t : tensors) {
    wanted.insert(t.key);
    if (!have.count(t.key)) missing.push_back(t.key);
  }
  for (const LogicalTensor& t : layout.tensors)
    if (!wanted.count(t.name)) extra.push_back(t.name);
  if (!missing.empty())
    return base::invalid_argument(like + "no source tensor fills template key " + listed(missing) +
                                  " (rename a source key to it, or tie it, in the key map)");
  if (!extra.empty())
    return base::invalid_argument(like + "source tensor " + listed(extra) +
                                  " has no key in the template (drop it in the key map, or rename it)");
  SourceLayout out;
  std::vector<int> new_index(layout.tensors.size(), -1);
  for (std::size_t k = 0; k < tensors.size(); ++k) new_index[have.at(tensors[k].key)] = static_cast<int>(k);
  for (const TemplateTensor& want : tensors) {
    LogicalTensor t = layout.tensors[have.at(want.key)];
    if (t.shape != want.shape)
      return base::invalid_argument(like + "'" + want.key + "' is " + shape_text(t.shape) + " in the source and " +
                                    shape_text(want.shape) + " in the template");
    if (t.dtype != want.dtype && !(base::dtype_is_floating(t.dtype) && base::dtype_is_floating(want.dtype)))
      return base::invalid_argument(like + "'" + want.key + "' is " + std::string(base::dtype_name(t.dtype)) +
                                    " in the source and " + std::string(base::dtype_name(want.dtype)) +
                                    " in the template (only floating tensors are cast)");
    if (t.role == TensorRole::kAlias) t.alias_of = new_index[static_cast<std::size_t>(t.alias_of)];
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace ucp::plan
