#include "ucp/cli/config_file.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace ucp::cli {
using base::Result;
using base::Status;

namespace {

// A preset is a handful of keys; anything near this size is not a config file.
constexpr std::size_t kMaxConfigBytes = 1 << 20;

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

struct KeyTarget {
  CLI::Option* option = nullptr;
  std::string lname;  // the name as registered, for the flag-negation lookup
};

// canonical key -> option, for every long name of every option a config file may set.
std::map<std::string, KeyTarget> key_targets(const CLI::App& cmd) {
  std::map<std::string, KeyTarget> out;
  for (const CLI::Option* opt : cmd.get_options()) {
    for (const std::string& lname : opt->get_lnames()) {
      if (lname == "help" || lname == "help-all" || lname == "config") continue;
      out[canonical_config_key(lname)] = {const_cast<CLI::Option*>(opt), lname};
    }
  }
  return out;
}

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return base::not_found(in_quotes(path) + ": cannot open config file");
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes)
      return base::invalid_argument(in_quotes(path) + ": config file is larger than " + std::to_string(kMaxConfigBytes) +
                                    " bytes; expected a small JSON object");
  }
  if (in.bad()) return base::data_loss(in_quotes(path) + ": read error");
  return text;
}

}  // namespace

std::string canonical_config_key(std::string_view key) {
  std::string k(key);
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

std::string closest_config_key(std::string_view key, const std::vector<std::string>& candidates) {
  std::string k = canonical_config_key(key);
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string best;
  std::size_t best_distance = 0;
  for (const std::string& c : candidates) {
    std::size_t d = edit_distance(k, c);
    if (best.empty() || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  // Two edits (a typo plus a transposition) or a third of the word: beyond that a suggestion is noise.
  std::size_t limit = std::max<std::size_t>(2, k.size() / 3);
  if (!best.empty() && best_distance <= limit) return best;
  // An abbreviation ("max_mem") names the one key it starts.
  std::string prefixed;
  for (const std::string& c : candidates) {
    if (k.size() < 3 || !c.starts_with(k)) continue;
    if (!prefixed.empty()) return {};  // ambiguous
    prefixed = c;
  }
  return prefixed;
}

Result<std::vector<ConfigEntry>> parse_config_text(std::string_view text, std::string_view name) {
  const std::string file = in_quotes(name);
  // The parser callback sees every key before nlohmann's object silently keeps the last duplicate.
  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::ordered_json::parser_callback_t on_event = [&](int depth, nlohmann::ordered_json::parse_event_t event,
                                                          nlohmann::ordered_json& parsed) {
    if (event == nlohmann::ordered_json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      std::string k = canonical_config_key(parsed.get<std::string>());
      if (!seen.insert(k).second && duplicate.empty()) duplicate = parsed.get<std::string>();
    }
    return true;
  };
  // ordered_json: entries (and so the first error reported) in the file's order.
  nlohmann::ordered_json doc;
  try {
    doc = nlohmann::ordered_json::parse(text.begin(), text.end(), on_event);
  } catch (const nlohmann::ordered_json::parse_error& e) {
    // e.byte is the 1-based position of the error in the text.
    return base::invalid_argument(file + ": not valid JSON at byte " + std::to_string(e.byte) + ": " +
                                  std::string(e.what()));
  }
  if (!doc.is_object())
    return base::invalid_argument(file + ": expected a JSON object {\"flag_name\": value, ...}, got " +
                                  std::string(doc.type_name()));
  if (!duplicate.empty())
    return base::invalid_argument(file + ": key " + in_quotes(duplicate) + " is given more than once");
  std::vector<ConfigEntry> out;
  for (const auto& [key, value] : doc.items()) {
    ConfigEntry e;
    e.key = key;
    if (value.is_string()) {
      e.value = value.get<std::string>();
    } else if (value.is_boolean()) {
      e.value = value.get<bool>() ? "true" : "false";
      e.is_bool = true;
    } else if (value.is_number()) {
      e.value = value.dump();
    } else {
      return base::invalid_argument(file + ": key " + in_quotes(key) + ": expected a string, number or boolean, got " +
                                    std::string(value.type_name()));
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> config_keys(const CLI::App& cmd) {
  std::vector<std::string> keys;
  for (const auto& [k, target] : key_targets(cmd)) keys.push_back(k);
  return keys;  // std::map order: sorted
}

void add_config_flag(CLI::App* cmd) {
  cmd->add_option("--config", "JSON preset of this command's flags, e.g. configs/hf-safetensors.json "
                              "(keys: long flag names; flags given here win)")
      ->type_name("FILE");
}

Status apply_config_file(CLI::App& cmd) {
  CLI::Option* config = cmd.get_option_no_throw("--config");
  if (config == nullptr || config->count() == 0) return {};
  const std::string path = config->as<std::string>();
  const std::string file = in_quotes(path);
  UCP_ASSIGN_OR_RETURN(std::string text, read_small_file(path));
  UCP_ASSIGN_OR_RETURN(std::vector<ConfigEntry> entries, parse_config_text(text, path));

  const std::map<std::string, KeyTarget> targets = key_targets(cmd);
  std::vector<std::string> valid;
  for (const auto& [k, t] : targets) valid.push_back(k);
  std::map<const CLI::Option*, std::string> set_by;  // option -> key that set it (--progress/--no-progress)

  // Check every key before touching any option, so a bad file changes nothing.
  for (const ConfigEntry& e : entries) {
    auto it = targets.find(canonical_config_key(e.key));
    if (it == targets.end()) {
      std::ostringstream msg;
      msg << file << ": unknown key " << in_quotes(e.key) << " for '" << cmd.get_name() << "'";
      if (std::string near = closest_config_key(e.key, valid); !near.empty()) msg << "; did you mean " << in_quotes(near) << "?";
      msg << " Valid keys:";
      for (std::size_t i = 0; i < valid.size(); ++i) msg << (i ? ", " : " ") << valid[i];
      return base::invalid_argument(msg.str());
    }
    const CLI::Option* opt = it->second.option;
    if (auto [prev, fresh] = set_by.emplace(opt, e.key); !fresh)
      return base::invalid_argument(file + ": keys " + in_quotes(prev->second) + " and " + in_quotes(e.key) +
                                    " set the same option");
    const bool is_flag = opt->get_expected_min() == 0;
    if (is_flag && !e.is_bool)
      return base::invalid_argument(file + ": key " + in_quotes(e.key) + " is a switch: expected true or false, got " +
                                    in_quotes(e.value));
    if (!is_flag && e.is_bool)
      return base::invalid_argument(file + ": key " + in_quotes(e.key) + " takes a value (e.g. " +
                                    in_quotes(opt->get_type_name()) + "), not true/false");
  }

  for (const ConfigEntry& e : entries) {
    const KeyTarget& t = targets.at(canonical_config_key(e.key));
    if (t.option->count() > 0) continue;  // given on the command line: the flag wins
    try {
      std::string value = t.option->get_expected_min() == 0 ? t.option->get_flag_value(t.lname, e.value) : e.value;
      t.option->add_result(value);
      t.option->run_callback();
    } catch (const CLI::Error& err) {
      return base::invalid_argument(file + ": key " + in_quotes(e.key) + ": " + err.what());
    }
  }
  return {};
}

}  // namespace ucp::cli
