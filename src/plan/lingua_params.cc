#include "ucp/plan/lingua_params.h"

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>

namespace ucp::plan {
using base::Result;
using json = nlohmann::json;

namespace {

// Lingua's FeedForward hidden size for model width `dim` (lingua/transformer.py's rule, in the
// same double arithmetic Python uses).
std::int64_t lingua_ffn(std::int64_t dim, std::optional<double> multiplier, std::int64_t multiple_of) {
  auto hidden = static_cast<std::int64_t>(2.0 * static_cast<double>(4 * dim) / 3.0);
  if (multiplier) hidden = static_cast<std::int64_t>(*multiplier * static_cast<double>(hidden));
  return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

// (multiple_of, ffn_dim_multiplier) giving `ffn` for `dim`: the largest power-of-two multiple_of
// up to 1024 that divides it, and the shortest decimal multiplier (none when 1 fits).
std::pair<std::int64_t, std::optional<double>> solve_ffn(std::int64_t dim, std::int64_t ffn) {
  std::int64_t multiple_of = 1024;
  while (multiple_of > 1 && ffn % multiple_of != 0) multiple_of /= 2;
  if (lingua_ffn(dim, std::nullopt, multiple_of) == ffn) return {multiple_of, std::nullopt};
  const double base = static_cast<double>(static_cast<std::int64_t>(2.0 * static_cast<double>(4 * dim) / 3.0));
  for (int digits = 1; digits <= 9; ++digits) {
    const double scale = std::pow(10.0, digits);
    for (double m : {std::round(static_cast<double>(ffn) / base * scale) / scale,
                     std::ceil(static_cast<double>(ffn) / base * scale) / scale})
      if (lingua_ffn(dim, m, multiple_of) == ffn) return {multiple_of, m};
  }
  return {multiple_of, (static_cast<double>(ffn) + 0.5) / base};
}

Result<std::int64_t> positive(const json& c, const char* key, const std::string& name) {
  if (!c.contains(key) || !c[key].is_number_integer() || c[key].get<std::int64_t>() <= 0)
    return base::invalid_argument("--lingua-params " + name + ": expected a positive integer \"" + key + "\"");
  return c[key].get<std::int64_t>();
}

double number_or(const json& c, const char* key, double fallback) {
  return c.contains(key) && c[key].is_number() ? c[key].get<double>() : fallback;
}

// What Lingua's Llama cannot express: refused rather than written as a different model.
base::Status check_expressible(const json& c, const std::string& name) {
  const std::string why = "--lingua-params " + name + ": Lingua's transformer ";
  if (c.value("attention_bias", false) || c.value("mlp_bias", false)) return base::invalid_argument(why + "has no biases");
  if (c.contains("hidden_act") && c["hidden_act"] != "silu") return base::invalid_argument(why + "uses SiLU only");
  for (const char* scaling : {"rope_scaling", "rope_parameters"})
    if (c.contains(scaling) && c[scaling].is_object()) {
      const std::string type = c[scaling].value("rope_type", c[scaling].value("type", std::string("default")));
      if (type != "default") return base::invalid_argument(why + "has no '" + type + "' rope scaling");
    }
  return {};
}

Result<std::string> params_of(const json& c, const std::string& name, const std::string& tokenizer,
                              const std::string& model_dtype) {
  UCP_RETURN_IF_ERROR(check_expressible(c, name));
  UCP_ASSIGN_OR_RETURN(const std::int64_t dim, positive(c, "hidden_size", name));
  UCP_ASSIGN_OR_RETURN(const std::int64_t n_heads, positive(c, "num_attention_heads", name));
  UCP_ASSIGN_OR_RETURN(const std::int64_t ffn, positive(c, "intermediate_size", name));
  json model;
  model["dim"] = dim;
  UCP_ASSIGN_OR_RETURN(model["n_layers"], positive(c, "num_hidden_layers", name));
  model["n_heads"] = n_heads;
  model["n_kv_heads"] = c.contains("num_key_value_heads") && c["num_key_value_heads"].is_number_integer()
                            ? c["num_key_value_heads"].get<std::int64_t>() : n_heads;
  model["head_dim"] = c.contains("head_dim") && c["head_dim"].is_number_integer() ? c["head_dim"].get<std::int64_t>() : dim / n_heads;
  UCP_ASSIGN_OR_RETURN(model["vocab_size"], positive(c, "vocab_size", name));
  const auto [multiple_of, multiplier] = solve_ffn(dim, ffn);
  model["multiple_of"] = multiple_of;
  model["ffn_dim_multiplier"] = multiplier ? json(*multiplier) : json(nullptr);
  model["norm_eps"] = number_or(c, "rms_norm_eps", 1e-5);
  const json rope = c.contains("rope_parameters") && c["rope_parameters"].is_object() ? c["rope_parameters"] : c;
  model["rope_theta"] = number_or(rope, "rope_theta", 10000.0);
  model["max_seqlen"] = c.contains("max_position_embeddings") ? c["max_position_embeddings"] : json(1024);
  model["weight_tying"] = c.value("tie_word_embeddings", false);
  const std::size_t colon = tokenizer.find(':');
  json tok;
  tok["name"] = tokenizer.substr(0, colon);
  tok["path"] = colon == std::string::npos ? json(nullptr) : json(tokenizer.substr(colon + 1));
  json params;
  params["model"] = std::move(model);
  params["distributed"] = {{"model_dtype", model_dtype}};
  params["data"] = {{"tokenizer", std::move(tok)}};
  return params.dump(2) + "\n";
}

}  // namespace

Result<std::string> lingua_params_json(std::string_view hf_config, const std::string& name, const std::string& tokenizer,
                                       const std::string& model_dtype) {
  try {  // a field of an unexpected JSON type (null where a bool belongs) throws: refused, one line
    const json c = json::parse(hf_config);
    if (!c.is_object()) return base::invalid_argument("--lingua-params " + name + ": expected an HF config.json object");
    return params_of(c, name, tokenizer, model_dtype);
  } catch (const json::exception& e) {
    return base::invalid_argument("--lingua-params " + name + ": not an HF config.json we can read (" + e.what() + ")");
  }
}

}  // namespace ucp::plan
