// to-dcp --lingua-params: the params.json Lingua (facebookresearch/lingua) reads beside a
// checkpoint (apps/main/generate.py load_consolidated_model_and_tokenizer: "model" as
// LMTransformerArgs, "distributed.model_dtype", "data.tokenizer.{name,path}"), derived from an HF
// Llama config.json. Pure.
#pragma once

#include <string>
#include <string_view>

#include "ucp/base/status.h"

namespace ucp::plan {

/// The params.json text for the model `hf_config` (the text of a config.json, named `name` in
/// errors) describes. `tokenizer` is "NAME" or "NAME:PATH" (Lingua's tiktoken, sp, bytes...);
/// `model_dtype` fp32, bf16 or fp16. Lingua sizes its FFN as multiple_of * ceil(int(m * int(8 *
/// dim / 3)) / multiple_of): multiple_of and ffn_dim_multiplier are chosen so that this gives
/// intermediate_size exactly. InvalidArgument naming `name` for a field missing, or a model Lingua's
/// transformer cannot express (biases, rope scaling, a non-SiLU activation).
base::Result<std::string> lingua_params_json(std::string_view hf_config, const std::string& name,
                                             const std::string& tokenizer, const std::string& model_dtype);

}  // namespace ucp::plan
