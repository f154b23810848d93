// Key maps: a pure transformation of a format::SourceLayout that renames, drops and ties tensors
// and reorders the rows of the q/k projections between HF's rotary layout (each head's halves)
// and Meta's (interleaved pairs), as pieces: no tensor data is read or copied here, the target
// planners read the permuted pieces as they read any other. A map is JSON (configs/key-maps/*.json
// are presets compiled into the binary; a user file has the same schema):
//
//   {"strip":  ["_orig_mod.", "module."],               // key components removed wherever they are
//    "drop":   ["model\\.layers\\.\\d+\\.self_attn\\.rotary_emb\\.inv_freq"],   // regex, whole key
//    "rename": [{"from": "model\\.layers\\.(\\d+)\\.self_attn\\.q_proj\\.weight",
//                "to": "layers.$1.attention.wq.weight", "rotary": "hf_to_meta", "heads": "n_heads"}],
//    "keep_unmatched": false,                           // keys no rule names: refused (default)
//    "tie":    [{"key": "output.weight", "from": "tok_embeddings.weight", "when": "absent",
//                "unless": ["lm_head.weight"]}]}
//
// Order: strip, drop, rename (first whole match wins), then ties. See docs/architecture.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/tensor_layout.h"

namespace ucp::plan {

/// Which way a rename rule reorders the rows of its tensor's dimension 0, per head.
enum class RotaryPermute : std::uint8_t {
  kNone,      ///< Rows kept as they are.
  kHfToMeta,  ///< HF (row h*D + j*D/2 + i) to Meta/torchtitan/Lingua (row h*D + 2i + j).
  kMetaToHf,  ///< The inverse.
};

/// Whose head count a permutation uses: wq has n_heads heads, wk n_kv_heads (GQA).
enum class HeadCount : std::uint8_t {
  kQuery,     ///< "n_heads"
  kKeyValue,  ///< "n_kv_heads"
};

struct RenameRule {
  std::string from;  ///< ECMAScript regex matched against the whole (stripped) source key.
  std::string to;    ///< The target key; $1, $2... are from's captures.
  RotaryPermute rotary = RotaryPermute::kNone;
  HeadCount heads = HeadCount::kQuery;
};

struct TieRule {
  std::string key;   ///< Target key made an alias (format::TensorRole::kAlias) ...
  std::string from;  ///< ... of this target key.
  /// Either way only when no source key maps to `key`, and with a template (to-dcp --like) only
  /// when it has `key`. false ("when": "absent"): also without a template; true ("when":
  /// "template"): only with one.
  bool only_in_template = false;
  /// Target keys whose presence means the source has its own output under another name: no tie
  /// (Lingua's tied `output.tied_module.weight` is not made when `output.weight` is there).
  std::vector<std::string> unless;
};

struct KeyMap {
  std::string name;                ///< The preset or file it came from, for error messages.
  std::vector<std::string> strip;  ///< Components ("_orig_mod.") removed at any component boundary.
  std::vector<std::string> drop;   ///< Regexes of (stripped) source keys left out.
  std::vector<RenameRule> rename;  ///< In order; the first whole match wins.
  bool keep_unmatched = false;     ///< Keys no rule matches or drops: kept as they are, else refused.
  std::vector<TieRule> tie;
  /// True when a rule permutes rows, so the model's heads must be known.
  bool needs_heads() const;
};

/// The attention geometry a rotary permutation needs (from an HF config.json or a Meta/Lingua
/// params.json).
struct ModelHeads {
  std::int64_t n_heads = 0;
  std::int64_t n_kv_heads = 0;
  std::int64_t head_dim = 0;  ///< 0 when the file does not say it and has no model width either.
  std::string source;         ///< The file they came from, for error messages.
};

/// Parses a key map's JSON; InvalidArgument naming `name` and the field for anything outside the
/// schema above (unknown keys included) and for a regex std::regex rejects.
base::Result<KeyMap> parse_key_map(std::string_view json, const std::string& name);

/// The presets compiled in from configs/key-maps/ (file name without .json), sorted.
std::vector<std::string> key_map_preset_names();
/// The preset named `name`, or nothing.
std::optional<std::string_view> key_map_preset(std::string_view name);

/// Heads from an HF config.json (num_attention_heads, num_key_value_heads, head_dim or
/// hidden_size; also under "text_config") or a Meta / Lingua params.json (n_heads, n_kv_heads,
/// head_dim or dim; Lingua's under "model"). InvalidArgument naming `name` when none is there.
base::Result<ModelHeads> parse_model_heads(std::string_view json, const std::string& name);

/// The key map applied to `layout` (pure): the kept tensors in source order, then the ties. `heads` is needed when a rule permutes; `template_keys`
/// (to-dcp --like) enables the ties that only a template asks for. InvalidArgument, one line, for:
/// a source key no rule names (unless keep_unmatched), two source keys mapping to one target key,
/// a tie whose `from` is missing, a permutation without heads or whose rows do not divide by them.
/// `sources`, when given, receives for each output tensor the index in `layout` of the tensor it
/// came from (kNoSource for a tie), so that states kept per tensor (optimizer moments) follow it.
base::Result<format::SourceLayout> apply_key_map(const format::SourceLayout& layout, const KeyMap& map,
                                                 const std::optional<ModelHeads>& heads,
                                                 const std::vector<std::string>* template_keys = nullptr,
                                                 std::vector<std::size_t>* sources = nullptr);
inline constexpr std::size_t kNoSource = static_cast<std::size_t>(-1);

/// The row of the target a source row `row` goes to, heads of `head_dim` rows each.
std::uint64_t rotary_row(std::uint64_t row, std::uint64_t head_dim, RotaryPermute permute);

/// `t`'s pieces with every row of dimension 0 moved to row_of(row): each source run is cut at row
/// boundaries and the parts are merged back into strided pieces wherever consecutive source
/// elements land at a uniform stride (HF -> Meta: one piece per head half). Sorted by dst_offset.
base::Result<std::vector<format::Piece>> permute_rows(const format::LogicalTensor& t,
                                                      const std::function<std::uint64_t(std::uint64_t)>& row_of);

/// A tensor of a template DCP (to-dcp --like): its key, global shape and stored dtype.
struct TemplateTensor {
  std::string key;
  std::vector<std::int64_t> shape;
  base::DType dtype = base::DType::kF32;
};

/// `layout` in the template's order, every template key filled and every tensor of `layout` in the
/// template, shapes equal, floating dtypes only cast to floating ones. InvalidArgument naming
/// `template_dir` and up to five keys otherwise.
base::Result<format::SourceLayout> conform_to_template(const format::SourceLayout& layout,
                                                       const std::vector<TemplateTensor>& tensors,
                                                       const std::string& template_dir);

}  // namespace ucp::plan
