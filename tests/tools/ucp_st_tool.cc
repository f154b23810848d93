// Test-only CLI exposing our safetensors reader and writer to the Python oracle test
// (tests/oracle/test_safetensors_numpy.py), which checks them against its own implementation.
//
//   ucp_st_tool dump FILE        -> stdout: {"metadata": {..}, "tensors": [{"name", "dtype", "shape", "hex"}]}
//   ucp_st_tool write OUT SPEC   -> SPEC is [{"name", "dtype", "shape", "hex"}] or
//                                   {"metadata": {..}, "tensors": [..]}; without "metadata" the
//                                   writer's default {"format": "pt"} is used.
// Errors: the Status on stderr, exit code Status::exit_code() (never 0).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/safetensors.h"

namespace {

using ucp::base::Status;
using Json = nlohmann::ordered_json;

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    out.push_back(kDigits[static_cast<unsigned>(b) >> 4]);
    out.push_back(kDigits[static_cast<unsigned>(b) & 0xf]);
  }
  return out;
}

bool from_hex(const std::string& hex, std::vector<std::byte>& out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<std::byte>(hi * 16 + lo));
  }
  return true;
}

int fail(const Status& s) {
  std::cerr << "ucp_st_tool: " << s.to_string() << "\n";
  return s.exit_code();
}

int dump(const std::string& path) {
  auto file = ucp::format::SafetensorsFile::open(path);
  if (!file.ok()) return fail(file.status());
  Json out = Json::object();
  out["metadata"] = Json::object();
  for (const auto& [k, v] : file->metadata()) out["metadata"][k] = v;
  out["tensors"] = Json::array();
  for (const auto& e : file->entries()) {
    Json t = Json::object();
    t["name"] = e.name;
    t["dtype"] = std::string(ucp::base::safetensors_dtype(e.dtype));
    t["shape"] = e.shape;
    t["hex"] = to_hex(file->view(e));
    out["tensors"].push_back(std::move(t));
  }
  std::cout << out.dump() << "\n";
  return 0;
}

int write(const std::string& out_path, const std::string& spec_path) {
  std::ifstream in(spec_path, std::ios::binary);
  if (!in) return fail(ucp::base::not_found("cannot open spec '" + spec_path + "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  Json spec;
  try {
    spec = Json::parse(ss.str());
  } catch (const Json::exception& e) {
    return fail(ucp::base::invalid_argument("spec '" + spec_path + "': " + e.what()));
  }
  std::map<std::string, std::string> metadata{{"format", "pt"}};
  Json tensors = spec;
  try {
    if (spec.is_object()) {
      if (spec.contains("metadata")) metadata = spec.at("metadata").get<std::map<std::string, std::string>>();
      tensors = spec.at("tensors");
    }
    std::vector<std::vector<std::byte>> data(tensors.size());
    std::vector<ucp::format::SafetensorsBlob> blobs;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const Json& t = tensors.at(i);
      const std::string dtype_str = t.at("dtype").get<std::string>();
      auto dtype = ucp::base::dtype_from_safetensors(dtype_str);
      if (!dtype) return fail(ucp::base::invalid_argument("spec: unknown dtype '" + dtype_str + "'"));
      if (!from_hex(t.at("hex").get<std::string>(), data[i])) {
        return fail(ucp::base::invalid_argument("spec: tensor " + std::to_string(i) + " has malformed hex"));
      }
      ucp::format::SafetensorsBlob blob{
          {t.at("name").get<std::string>(), *dtype, t.at("shape").get<std::vector<std::int64_t>>()},
          std::span<const std::byte>(data[i])};
      blobs.push_back(std::move(blob));
    }
    Status s = ucp::format::write_safetensors_file(out_path, blobs, metadata);
    if (!s.ok()) return fail(s);
  } catch (const Json::exception& e) {
    return fail(ucp::base::invalid_argument("spec '" + spec_path + "': " + e.what()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "dump") return dump(args[1]);
  if (args.size() == 3 && args[0] == "write") return write(args[1], args[2]);
  std::cerr << "usage: ucp_st_tool dump FILE | ucp_st_tool write OUT SPEC.json\n";
  return 2;
}
