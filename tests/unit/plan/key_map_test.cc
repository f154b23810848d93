// Key maps (plan/key_map.h): the q/k rotary permutation as pieces against a brute-force index
// permutation (torch's view/transpose written out as loops), for both directions, GQA, and tensors
// stored as DCP and ZeRO store them; renames, drops, ties and the one-line refusals; templates;
// Lingua's params.json.
#include "ucp/plan/key_map.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <ostream>

#include "testutil/status_matchers.h"
#include "ucp/plan/lingua_params.h"

namespace ucp::plan {
namespace {
using base::StatusCode;
using format::LogicalTensor;
using format::Piece;
using format::SourceLayout;
using format::TensorLocation;
using format::TensorRole;
using testutil::StatusIs;
using ::testing::HasSubstr;
using Dims = std::vector<std::int64_t>;

// Brute force of HF's permute (Meta -> HF): w.view(H, D/2, 2, W).transpose(1, 2).reshape(H*D, W),
// i.e. out[h][a][i] = in[h][i][a] with in indexed (h, i < D/2, a < 2) and out (h, a < 2, i < D/2).
// Returns src_row_of[out_row].
std::vector<std::uint64_t> meta_to_hf_sources(std::uint64_t heads, std::uint64_t head_dim) {
  std::vector<std::uint64_t> src(heads * head_dim);
  const std::uint64_t half = head_dim / 2;
  for (std::uint64_t h = 0; h < heads; ++h)
    for (std::uint64_t a = 0; a < 2; ++a)
      for (std::uint64_t i = 0; i < half; ++i) src[h * head_dim + a * half + i] = h * head_dim + i * 2 + a;
  return src;
}

// The inverse (torchtitan's reverse permute, HF -> Meta): view(H, 2, D/2, W).transpose(1, 2).
std::vector<std::uint64_t> hf_to_meta_sources(std::uint64_t heads, std::uint64_t head_dim) {
  std::vector<std::uint64_t> src(heads * head_dim);
  const std::uint64_t half = head_dim / 2;
  for (std::uint64_t h = 0; h < heads; ++h)
    for (std::uint64_t i = 0; i < half; ++i)
      for (std::uint64_t a = 0; a < 2; ++a) src[h * head_dim + i * 2 + a] = h * head_dim + a * half + i;
  return src;
}

// A tensor [rows, width] of f32 whose source file holds element e at byte 4 * (base + e'), where
// e' is e's position in the storage order `pieces` give (built by the helpers below).
LogicalTensor tensor_of(std::string name, Dims shape, std::vector<Piece> pieces) {
  LogicalTensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.dtype = base::DType::kF32;
  t.role = TensorRole::kStored;
  t.pieces = std::move(pieces);
  return t;
}

// Which source element (file element index) lands at each element of `t`.
std::vector<std::uint64_t> materialize(const LogicalTensor& t) {
  std::vector<std::uint64_t> out(t.numel(), ~std::uint64_t{0});
  EXPECT_TRUE(format::for_each_run(t, [&](const TensorLocation& src, std::uint64_t dst) {
                for (std::uint64_t k = 0; k < src.numel; ++k) out[dst + k] = src.offset / 4 + k;
                return base::Status();
              }).ok());
  return out;
}

// The chunks of a [rows, width] tensor cut as DCP stores them: `row_parts` x `col_parts` boxes
// (torch.chunk sizes), each stored contiguously after the previous one.
std::vector<Piece> dcp_chunks(std::int64_t rows, std::int64_t width, int row_parts, int col_parts) {
  std::vector<Piece> pieces;
  std::uint64_t at = 0;
  const std::int64_t rs = (rows + row_parts - 1) / row_parts, cs = (width + col_parts - 1) / col_parts;
  for (std::int64_t r0 = 0; r0 < rows; r0 += rs)
    for (std::int64_t c0 = 0; c0 < width; c0 += cs) {
      const Dims sizes{std::min(rs, rows - r0), std::min(cs, width - c0)};
      const auto n = static_cast<std::uint64_t>(sizes[0] * sizes[1]);
      auto box = format::box_pieces({rows, width}, {r0, c0}, sizes, {0, at * 4, n, base::DType::kF32});
      EXPECT_TRUE(box.ok());
      pieces.insert(pieces.end(), box->begin(), box->end());
      at += n;
    }
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.dst_offset < b.dst_offset; });
  return pieces;
}

// ZeRO-like: the flat tensor cut into `parts` contiguous runs that start mid-row, stored in
// reverse order in the file.
std::vector<Piece> flat_parts(std::uint64_t numel, std::uint64_t parts) {
  std::vector<Piece> pieces;
  const std::uint64_t part = (numel + parts - 1) / parts;
  std::uint64_t at = 0;
  for (std::uint64_t p = parts; p-- > 0;) {
    const std::uint64_t begin = p * part, n = std::min(part, numel - std::min(numel, begin));
    if (n == 0) continue;
    pieces.push_back({{0, at * 4, n, base::DType::kF32}, begin, 1, 0});
    at += n;
  }
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.dst_offset < b.dst_offset; });
  return pieces;
}

struct PermuteCase {
  std::int64_t heads, head_dim, width;
  int row_parts, col_parts;  // 0: flat ZeRO-like parts instead (col_parts of them)
  RotaryPermute direction;
};

void PrintTo(const PermuteCase& c, std::ostream* os) {
  *os << c.heads << " heads of " << c.head_dim << " x " << c.width << ", "
      << (c.row_parts ? std::to_string(c.row_parts) + "x" + std::to_string(c.col_parts) + " DCP chunks"
                      : std::to_string(c.col_parts) + " flat runs")
      << (c.direction == RotaryPermute::kHfToMeta ? ", HF -> Meta" : ", Meta -> HF");
}

class PermuteRows : public ::testing::TestWithParam<PermuteCase> {};

TEST_P(PermuteRows, MatchesBruteForce) {
  const PermuteCase c = GetParam();
  const std::int64_t rows = c.heads * c.head_dim;
  std::vector<Piece> pieces = c.row_parts == 0 ? flat_parts(static_cast<std::uint64_t>(rows * c.width), static_cast<std::uint64_t>(c.col_parts))
                                               : dcp_chunks(rows, c.width, c.row_parts, c.col_parts);
  const LogicalTensor source = tensor_of("w", {rows, c.width}, pieces);
  ASSERT_TRUE(format::check_coverage(source).ok());
  const auto d = static_cast<std::uint64_t>(c.head_dim);
  auto permuted = permute_rows(source, [&](std::uint64_t r) { return rotary_row(r, d, c.direction); });
  ASSERT_TRUE(permuted.ok()) << permuted.status().message();
  const LogicalTensor target = tensor_of("w", {rows, c.width}, *permuted);
  ASSERT_TRUE(format::check_coverage(target).ok());

  const std::vector<std::uint64_t> before = materialize(source), after = materialize(target);
  const auto src_row = c.direction == RotaryPermute::kHfToMeta ? hf_to_meta_sources(static_cast<std::uint64_t>(c.heads), d)
                                                               : meta_to_hf_sources(static_cast<std::uint64_t>(c.heads), d);
  const auto w = static_cast<std::uint64_t>(c.width);
  for (std::uint64_t r = 0; r < static_cast<std::uint64_t>(rows); ++r)
    for (std::uint64_t col = 0; col < w; ++col)
      ASSERT_EQ(after[r * w + col], before[src_row[r] * w + col]) << "row " << r << " col " << col;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PermuteRows,
    ::testing::Values(PermuteCase{4, 8, 6, 1, 1, RotaryPermute::kHfToMeta},   // one whole chunk
                      PermuteCase{4, 8, 6, 1, 1, RotaryPermute::kMetaToHf},
                      PermuteCase{2, 8, 6, 1, 1, RotaryPermute::kHfToMeta},   // wk of GQA: 2 kv heads
                      PermuteCase{2, 8, 6, 3, 1, RotaryPermute::kMetaToHf},   // Shard(0) over 3 ranks
                      PermuteCase{4, 6, 10, 3, 1, RotaryPermute::kHfToMeta},  // head_dim 6, uneven chunks
                      PermuteCase{4, 8, 6, 2, 2, RotaryPermute::kHfToMeta},   // 2x2 mesh: strided boxes
                      PermuteCase{4, 8, 7, 3, 2, RotaryPermute::kMetaToHf},
                      PermuteCase{3, 4, 5, 0, 4, RotaryPermute::kHfToMeta},   // ZeRO runs cut mid-row
                      PermuteCase{3, 4, 5, 0, 5, RotaryPermute::kMetaToHf}));

TEST(PermuteRows, HfToMetaIsTwoStridedPiecesPerHead) {
  const LogicalTensor t = tensor_of("wq", {32, 16}, {{{0, 0, 32 * 16, base::DType::kF32}, 0, 1, 0}});
  auto p = permute_rows(t, [](std::uint64_t r) { return rotary_row(r, 8, RotaryPermute::kHfToMeta); });
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 8u);  // 4 heads x 2 halves
  for (const Piece& piece : *p) {
    EXPECT_EQ(piece.rows, 4u);
    EXPECT_EQ(piece.dst_row_stride, 32u);  // every other row
  }
}

TEST(PermuteRows, RoundTripIsIdentity) {
  for (std::uint64_t r = 0; r < 48; ++r)
    EXPECT_EQ(rotary_row(rotary_row(r, 12, RotaryPermute::kHfToMeta), 12, RotaryPermute::kMetaToHf), r);
}

// ---------------------------------------------------------------- maps

// One HF Llama layer, [rows, 4] tensors stored back to back in file 0.
SourceLayout hf_layout(std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim, bool lm_head) {
  const std::int64_t dim = 4;
  std::vector<std::pair<std::string, Dims>> keys = {
      {"model.embed_tokens.weight", {10, dim}},
      {"model.layers.0.self_attn.q_proj.weight", {heads * head_dim, dim}},
      {"model.layers.0.self_attn.k_proj.weight", {kv_heads * head_dim, dim}},
      {"model.layers.0.self_attn.v_proj.weight", {kv_heads * head_dim, dim}},
      {"model.layers.0.self_attn.o_proj.weight", {dim, heads * head_dim}},
      {"model.layers.0.self_attn.rotary_emb.inv_freq", {head_dim / 2}},
      {"model.layers.0.mlp.gate_proj.weight", {6, dim}},
      {"model.layers.0.mlp.up_proj.weight", {6, dim}},
      {"model.layers.0.mlp.down_proj.weight", {dim, 6}},
      {"model.layers.0.input_layernorm.weight", {dim}},
      {"model.layers.0.post_attention_layernorm.weight", {dim}},
      {"model.norm.weight", {dim}}};
  if (lm_head) keys.push_back({"lm_head.weight", {10, dim}});
  SourceLayout layout;
  std::uint64_t at = 0;
  for (auto& [name, shape] : keys) {
    std::uint64_t n = 1;
    for (auto s : shape) n *= static_cast<std::uint64_t>(s);
    layout.tensors.push_back(tensor_of(name, shape, {{{0, at * 4, n, base::DType::kF32}, 0, 1, 0}}));
    at += n;
  }
  return layout;
}

KeyMap preset(const std::string& name) {
  auto text = key_map_preset(name);
  EXPECT_TRUE(text.has_value()) << name;
  auto map = parse_key_map(text.value_or("{}"), name);
  EXPECT_TRUE(map.ok()) << map.status().message();
  return *map;
}

const LogicalTensor* named(const SourceLayout& l, const std::string& name) {
  for (const auto& t : l.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

TEST(KeyMap, PresetsParse) {
  const auto names = key_map_preset_names();
  for (const char* want : {"hf-to-meta", "meta-to-hf", "hf-to-torchtitan", "torchtitan-to-hf", "hf-to-lingua", "lingua-to-hf",
                           "meta-to-torchtitan", "torchtitan-to-meta"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  for (const auto& n : names) preset(n);
}

TEST(KeyMap, HfToMetaRenamesDropsTiesAndPermutes) {
  const SourceLayout hf = hf_layout(4, 2, 8, /*lm_head=*/false);
  const ModelHeads heads{4, 2, 8, "config.json"};
  auto meta = apply_key_map(hf, preset("hf-to-meta"), heads);
  ASSERT_TRUE(meta.ok()) << meta.status().message();
  EXPECT_EQ(meta->tensors.size(), hf.tensors.size());  // inv_freq dropped, output tied
  EXPECT_EQ(named(*meta, "layers.0.attention.wq.weight")->shape, (Dims{32, 4}));
  EXPECT_NE(named(*meta, "layers.0.feed_forward.w3.weight"), nullptr);
  EXPECT_EQ(named(*meta, "model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
  const LogicalTensor* output = named(*meta, "output.weight");
  ASSERT_NE(output, nullptr);
  EXPECT_EQ(output->role, TensorRole::kAlias);
  EXPECT_EQ(meta->tensors[static_cast<std::size_t>(output->alias_of)].name, "tok_embeddings.weight");
  // wk permuted with the kv heads: rows of 2 heads of 8.
  const LogicalTensor* wk = named(*meta, "layers.0.attention.wk.weight");
  const auto before = materialize(hf.tensors[2]), after = materialize(*wk);
  const auto src = hf_to_meta_sources(2, 8);
  for (std::uint64_t r = 0; r < 16; ++r)
    for (std::uint64_t c = 0; c < 4; ++c) ASSERT_EQ(after[r * 4 + c], before[src[r] * 4 + c]);
  // And back: meta-to-hf gives every HF key its original elements.
  auto back = apply_key_map(*meta, preset("meta-to-hf"), heads);
  ASSERT_TRUE(back.ok()) << back.status().message();
  for (const LogicalTensor& t : hf.tensors) {
    if (t.name.find("inv_freq") != std::string::npos) continue;
    const LogicalTensor* b = named(*back, t.name);
    ASSERT_NE(b, nullptr) << t.name;
    EXPECT_EQ(materialize(*b), materialize(t)) << t.name;
  }
  ASSERT_NE(named(*back, "lm_head.weight"), nullptr);
}

TEST(KeyMap, LinguaTiesTheEmbeddingOnlyWithoutAnOutput) {
  const ModelHeads heads{4, 2, 8, "c"};
  auto untied = apply_key_map(hf_layout(4, 2, 8, true), preset("hf-to-lingua"), heads);
  ASSERT_TRUE(untied.ok()) << untied.status().message();
  EXPECT_EQ(named(*untied, "model.output.weight")->role, TensorRole::kStored);
  EXPECT_EQ(named(*untied, "model.output.tied_module.weight"), nullptr);  // "unless" output.weight
  auto tied = apply_key_map(hf_layout(4, 2, 8, false), preset("hf-to-lingua"), heads);
  ASSERT_TRUE(tied.ok()) << tied.status().message();
  EXPECT_EQ(named(*tied, "model.output.weight"), nullptr);  // a template-only tie
  EXPECT_EQ(named(*tied, "model.output.tied_module.weight")->role, TensorRole::kAlias);
  // With a template asking for output.weight, that is the key filled.
  const std::vector<std::string> keys = {"model.output.weight"};
  auto templated = apply_key_map(hf_layout(4, 2, 8, false), preset("hf-to-lingua"), heads, &keys);
  ASSERT_TRUE(templated.ok());
  EXPECT_NE(named(*templated, "model.output.weight"), nullptr);
  EXPECT_EQ(named(*templated, "model.output.tied_module.weight"), nullptr);
}

TEST(KeyMap, StripsWrapperComponents) {
  SourceLayout l = hf_layout(2, 2, 4, true);
  for (auto& t : l.tensors) t.name = "_orig_mod." + t.name;
  l.tensors[1].name = "_orig_mod.model.layers.0._checkpoint_wrapped_module.self_attn.q_proj.weight";
  auto out = apply_key_map(l, preset("hf-to-torchtitan"), ModelHeads{2, 2, 4, "c"});
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_NE(named(*out, "layers.0.attention.qkv_linear.wq.weight"), nullptr);
  EXPECT_EQ(named(*out, "lm_head.weight")->role, TensorRole::kStored);
}

TEST(KeyMap, RefusalsAreOneLine) {
  const SourceLayout hf = hf_layout(4, 2, 8, true);
  const KeyMap map = preset("hf-to-meta");
  SourceLayout extra = hf;
  extra.tensors.push_back(tensor_of("model.layers.0.self_attn.q_proj.bias", {32}, {{{0, 0, 32, base::DType::kF32}, 0, 1, 0}}));
  EXPECT_THAT(apply_key_map(extra, map, ModelHeads{4, 2, 8, "c"}).status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("no rule renames or drops source key 'model.layers.0.self_attn.q_proj.bias'")));
  SourceLayout twice = hf;
  twice.tensors.push_back(hf.tensors[1]);
  twice.tensors.back().name = "module.model.layers.0.self_attn.q_proj.weight";
  EXPECT_THAT(apply_key_map(twice, map, ModelHeads{4, 2, 8, "c"}).status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("both map to 'layers.0.attention.wq.weight'")));
  EXPECT_THAT(apply_key_map(hf, map, std::nullopt).status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("needs the model's n_heads")));
  EXPECT_THAT(apply_key_map(hf, map, ModelHeads{3, 3, 0, "cfg.json"}).status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("do not divide into n_heads = 3 heads (cfg.json)")));
  // Wrong n_kv_heads with a known head_dim: wk's 16 rows are not 4 x 8.
  EXPECT_THAT(apply_key_map(hf, map, ModelHeads{4, 4, 8, "cfg.json"}).status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("not n_kv_heads x head_dim = 4 x 8")));
  for (const std::string& bad : {std::string(R"({"renam": []})"), std::string(R"({"rename": [{"from": "(", "to": "x"}]})"),
                                 std::string(R"({"rename": [{"from": "a", "to": "b", "rotary": "hf_to_meta"}]})"),
                                 std::string(R"({"tie": [{"key": "a", "from": "b", "when": "always"}]})")})
    EXPECT_THAT(parse_key_map(bad, "user.json").status(), StatusIs(StatusCode::kInvalidArgument, HasSubstr("key map user.json")))
        << bad;
}

TEST(KeyMap, AliasesFollowTheirSource) {
  SourceLayout l = hf_layout(2, 2, 4, true);
  LogicalTensor& lm = l.tensors.back();  // lm_head as ZeRO records a tied name
  lm.role = TensorRole::kAlias;
  lm.alias_of = 0;
  lm.pieces.clear();
  auto out = apply_key_map(l, preset("hf-to-meta"), ModelHeads{2, 2, 4, "c"});
  ASSERT_TRUE(out.ok());
  const LogicalTensor* output = named(*out, "output.weight");
  EXPECT_EQ(output->role, TensorRole::kAlias);
  EXPECT_EQ(out->tensors[static_cast<std::size_t>(output->alias_of)].name, "tok_embeddings.weight");
  // Dropping the embedding makes the alias a copy of its pieces.
  KeyMap map = preset("hf-to-meta");
  map.drop.push_back("model\\.embed_tokens\\.weight");
  out = apply_key_map(l, map, ModelHeads{2, 2, 4, "c"});
  ASSERT_TRUE(out.ok()) << out.status().message();
  output = named(*out, "output.weight");
  EXPECT_EQ(output->role, TensorRole::kStored);
  EXPECT_EQ(materialize(*output), materialize(l.tensors[0]));
}

TEST(ModelHeads, FromHfMetaAndLingua) {
  auto hf = parse_model_heads(R"({"num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096})", "config.json");
  ASSERT_TRUE(hf.ok());
  EXPECT_EQ(hf->n_heads, 32);
  EXPECT_EQ(hf->n_kv_heads, 8);
  EXPECT_EQ(hf->head_dim, 128);
  auto meta = parse_model_heads(R"({"dim": 2048, "n_heads": 16, "n_kv_heads": null})", "params.json");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->n_kv_heads, 16);
  auto lingua = parse_model_heads(R"({"model": {"dim": 1024, "head_dim": 64, "n_heads": null, "n_kv_heads": 4}})", "p.json");
  ASSERT_TRUE(lingua.ok());
  EXPECT_EQ(lingua->n_heads, 16);
  EXPECT_THAT(parse_model_heads(R"({"dim": 8})", "x.json").status(), StatusIs(StatusCode::kInvalidArgument, HasSubstr("x.json")));
}

TEST(Template, ReordersAndRefuses) {
  const SourceLayout l = hf_layout(2, 2, 4, true);
  std::vector<TemplateTensor> tmpl;
  for (auto it = l.tensors.rbegin(); it != l.tensors.rend(); ++it) tmpl.push_back({it->name, it->shape, base::DType::kBF16});
  auto ok = conform_to_template(l, tmpl, "seed");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->tensors.front().name, "lm_head.weight");
  auto missing = tmpl;
  missing.push_back({"freqs_cis", {4, 2}, base::DType::kF32});
  EXPECT_THAT(conform_to_template(l, missing, "seed").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("--like seed: no source tensor fills template key 'freqs_cis'")));
  auto fewer = tmpl;
  fewer.erase(fewer.begin());
  EXPECT_THAT(conform_to_template(l, fewer, "seed").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("source tensor 'lm_head.weight' has no key in the template")));
  auto shape = tmpl;
  shape[0].shape = {5, 4};
  EXPECT_THAT(conform_to_template(l, shape, "seed").status(), StatusIs(StatusCode::kInvalidArgument, HasSubstr("[10, 4] in the source")));
}

// Lingua's FFN rule, written from lingua/transformer.py's description.
std::int64_t lingua_hidden(std::int64_t dim, const nlohmann::json& model) {
  auto hidden = static_cast<std::int64_t>(2.0 * static_cast<double>(4 * dim) / 3.0);
  if (!model["ffn_dim_multiplier"].is_null()) hidden = static_cast<std::int64_t>(model["ffn_dim_multiplier"].get<double>() * static_cast<double>(hidden));
  const auto m = model["multiple_of"].get<std::int64_t>();
  return m * ((hidden + m - 1) / m);
}

TEST(LinguaParams, FfnMatchesIntermediateSize) {
  for (auto [dim, ffn] : std::vector<std::pair<std::int64_t, std::int64_t>>{{4096, 14336}, {2048, 8192}, {4096, 11008}, {64, 176}, {48, 100}}) {
    const nlohmann::json cfg = {{"hidden_size", dim},       {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                                {"intermediate_size", ffn}, {"num_hidden_layers", 2},   {"vocab_size", 128},
                                {"rms_norm_eps", 1e-6},     {"rope_theta", 500000.0},   {"tie_word_embeddings", true}};
    auto text = lingua_params_json(cfg.dump(), "config.json", "tiktoken:/t.model", "bf16");
    ASSERT_TRUE(text.ok()) << text.status().message();
    const auto p = nlohmann::json::parse(*text);
    EXPECT_EQ(lingua_hidden(dim, p["model"]), ffn) << dim << " " << ffn;
    EXPECT_EQ(p["model"]["n_kv_heads"], 2);
    EXPECT_EQ(p["model"]["head_dim"], dim / 4);
    EXPECT_EQ(p["model"]["rope_theta"], 500000.0);
    EXPECT_EQ(p["model"]["weight_tying"], true);
    EXPECT_EQ(p["distributed"]["model_dtype"], "bf16");
    EXPECT_EQ(p["data"]["tokenizer"]["path"], "/t.model");
  }
  EXPECT_THAT(lingua_params_json(R"({"hidden_size": 8, "rope_scaling": {"rope_type": "llama3"}})", "c.json", "sp", "fp32").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("no 'llama3' rope scaling")));
}

}  // namespace
}  // namespace ucp::plan
