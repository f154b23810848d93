#include "hf_model_files.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>


namespace ucp::exec {
using base::Result;
using base::Status;
namespace fs = std::filesystem;

namespace {

// What transformers' from_pretrained / AutoTokenizer read from a model folder besides the weights.
constexpr const char* kModelFiles[] = {
    "config.json",         "generation_config.json", "tokenizer.json",       "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json",  "tokenizer.model",      "vocab.json",
    "vocab.txt",           "merges.txt",             "chat_template.jinja", "chat_template.json",
};

}  // namespace

Result<HfModelFiles> find_hf_model_files(const std::string& save_dir, const std::string& hf_config_dir) {
  HfModelFiles found;
  std::error_code ec;
  if (!hf_config_dir.empty()) {
    if (!fs::is_regular_file(fs::path(hf_config_dir) / "config.json", ec))
      return base::not_found("--hf-config '" + hf_config_dir + "' holds no config.json: expected an HF model folder "
                             "(config.json, tokenizer files)");
    found.source_dir = hf_config_dir;
  } else if (!save_dir.empty() && fs::is_regular_file(fs::path(save_dir) / "config.json", ec)) {
    found.source_dir = save_dir;
  } else {
    return found;
  }
  for (const char* name : kModelFiles)
    if (fs::is_regular_file(fs::path(found.source_dir) / name, ec)) found.names.push_back(name);
  return found;
}

Result<std::vector<plan::SmallFile>> hf_model_small_files(const HfModelFiles& files, base::DType weights_dtype) {
  std::vector<plan::SmallFile> out;
  for (const std::string& name : files.names) {
    const std::string from = (fs::path(files.source_dir) / name).string();
    if (name != "config.json") {
      out.push_back({name, {}, from, plan::SmallFile::Place::kInOutput});
      continue;
    }
    std::ifstream in(from);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return base::not_found("cannot read '" + from + "'");
    nlohmann::ordered_json config = nlohmann::ordered_json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) return base::data_loss("'" + from + "' is not a JSON object: expected an HF model config");
    const std::string dtype(base::torch_dtype_attr(weights_dtype));
    config["dtype"] = dtype;
    if (config.contains("torch_dtype")) config["torch_dtype"] = dtype;
    out.push_back({"config.json", config.dump(2) + "\n", {}, plan::SmallFile::Place::kInOutput});
  }
  return out;
}

}  // namespace ucp::exec
