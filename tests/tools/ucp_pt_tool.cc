// Test-only CLI over the torch file reader and writer, driven by the Python oracle tests
// (tests/oracle/test_torch_roundtrip.py, test_fixture_rewrite.py):
//
//   ucp_pt_tool dump FILE.pt [FILE.pt ...]           canonical JSON of each value tree, one per line
//   ucp_pt_tool rewrite IN.pt OUT.pt [--protocol N]  TorchFile::open + write_torch_file
//   ucp_pt_tool rewrite-list LIST [--protocol N]     same for every "IN<TAB>OUT" line of LIST
//
// The JSON form is chosen so that Python can produce the identical form from torch.load's result:
// every float as its IEEE-754 bits, ints outside int64 as decimal strings, tensors as row-major
// element bytes in hex. The batch forms exist because the fixture test handles thousands of files
// and a process per file would dominate its run time. Errors: the Status message on one stderr
// line, exit status non-zero.
#include <charconv>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"

namespace {

using nlohmann::json;
using ucp::base::Result;
using ucp::base::Status;
using ucp::format::Value;
using ucp::format::ValuePtr;

std::string to_hex(const void* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}

// Little-endian two's complement (pickle LONG1/LONG4 payload) -> signed decimal string.
std::string bigint_decimal(std::string_view le) {
  if (le.empty()) return "0";
  std::vector<std::uint8_t> mag(le.begin(), le.end());
  const bool negative = (mag.back() & 0x80) != 0;
  if (negative) {  // magnitude = ~x + 1
    unsigned carry = 1;
    for (auto& byte : mag) {
      const unsigned s = static_cast<std::uint8_t>(~byte) + carry;
      byte = static_cast<std::uint8_t>(s);
      carry = s >> 8;
    }
  }
  // Repeated division of the little-endian magnitude by 10^9.
  std::vector<std::uint32_t> chunks;  // base 1e9, least significant first
  auto is_zero = [&] {
    for (auto byte : mag) if (byte != 0) return false;
    return true;
  };
  while (!is_zero()) {
    std::uint64_t rem = 0;
    for (std::size_t i = mag.size(); i-- > 0;) {
      const std::uint64_t cur = (rem << 8) | mag[i];
      mag[i] = static_cast<std::uint8_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    chunks.push_back(static_cast<std::uint32_t>(rem));
  }
  if (chunks.empty()) return "0";
  std::string out = negative ? "-" : "";
  out += std::to_string(chunks.back());
  for (std::size_t i = chunks.size() - 1; i-- > 0;) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%09" PRIu32, chunks[i]);
    out += buf;
  }
  return out;
}

// Python ints render by value: within int64 a JSON number, otherwise {"bigint": decimal}.
json render_bigint(std::string_view le) {
  const std::string dec = bigint_decimal(le);
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(dec.data(), dec.data() + dec.size(), v);
  if (ec == std::errc() && ptr == dec.data() + dec.size()) return json(v);
  return json{{"bigint", dec}};
}

json render_float(double f) {
  std::uint64_t bits = 0;
  static_assert(sizeof bits == sizeof f);
  std::memcpy(&bits, &f, sizeof bits);
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, bits);
  return json{{"float", buf}};
}

class Renderer {
 public:
  Result<json> render(const ValuePtr& v) {
    if (!v) return ucp::base::internal_error("null ValuePtr in the value tree");
    switch (v->kind) {
      case Value::Kind::kNone: return json(nullptr);
      case Value::Kind::kBool: return json(v->b);
      case Value::Kind::kInt: return json(v->i);
      case Value::Kind::kBigInt: return render_bigint(v->str);
      case Value::Kind::kFloat: return render_float(v->f);
      case Value::Kind::kStr: return json(v->str);
      case Value::Kind::kBytes: return json{{"bytes", to_hex(v->str.data(), v->str.size())}};
      case Value::Kind::kByteArray: return json{{"bytearray", to_hex(v->str.data(), v->str.size())}};
      case Value::Kind::kTuple: return tagged_items("tuple", v->items);
      case Value::Kind::kList: return tagged_items("list", v->items);
      case Value::Kind::kSet: return tagged_items("set", v->items);
      case Value::Kind::kFrozenSet: return tagged_items("frozenset", v->items);
      case Value::Kind::kSize: return tagged_items("size", v->items);
      case Value::Kind::kDict: {
        UCP_ASSIGN_OR_RETURN(json entries, render_entries(v->entries));
        json out{{v->ordered_dict ? "odict" : "dict", std::move(entries)}};
        // BUILD state applied to a dict (OrderedDict._metadata of a state_dict).
        if (v->state) {
          UCP_ASSIGN_OR_RETURN(out["state"], render(v->state));
        }
        return out;
      }
      case Value::Kind::kGlobal: return json{{"global", v->global.module + "." + v->global.name}};
      case Value::Kind::kObject: return render_object(v->object);
      case Value::Kind::kStorage: return render_storage(v->storage);
      case Value::Kind::kTensor: return render_tensor(v->tensor);
    }
    return ucp::base::internal_error("value of unknown kind " + std::to_string(static_cast<int>(v->kind)));
  }

 private:
  Result<json> render_list(const std::vector<ValuePtr>& items) {
    json arr = json::array();
    for (const auto& item : items) {
      UCP_ASSIGN_OR_RETURN(json j, render(item));
      arr.push_back(std::move(j));
    }
    return arr;
  }
  Result<json> tagged_items(const char* tag, const std::vector<ValuePtr>& items) {
    UCP_ASSIGN_OR_RETURN(json arr, render_list(items));
    return json{{tag, std::move(arr)}};
  }
  Result<json> render_entries(const std::vector<std::pair<ValuePtr, ValuePtr>>& entries) {
    json arr = json::array();
    for (const auto& [k, val] : entries) {
      UCP_ASSIGN_OR_RETURN(json jk, render(k));
      UCP_ASSIGN_OR_RETURN(json jv, render(val));
      arr.push_back(json::array({std::move(jk), std::move(jv)}));
    }
    return arr;
  }

  Result<json> render_object(const ucp::format::Object& o) {
    json out;
    UCP_ASSIGN_OR_RETURN(out["callable"], render(o.callable));
    switch (o.kind) {
      case ucp::format::BuildKind::kReduce: out["kind"] = "reduce"; break;
      case ucp::format::BuildKind::kNewObj: out["kind"] = "newobj"; break;
      case ucp::format::BuildKind::kNewObjEx: out["kind"] = "newobj_ex"; break;
    }
    UCP_ASSIGN_OR_RETURN(out["args"], render(o.args ? o.args : Value::tuple({})));
    if (o.kwargs) {
      UCP_ASSIGN_OR_RETURN(out["kwargs"], render(o.kwargs));
    }
    if (o.state) {
      UCP_ASSIGN_OR_RETURN(out["state"], render(o.state));
    }
    if (!o.list_items.empty()) {
      UCP_ASSIGN_OR_RETURN(out["list_items"], render_list(o.list_items));
    }
    if (!o.dict_items.empty()) {
      UCP_ASSIGN_OR_RETURN(out["dict_items"], render_entries(o.dict_items));
    }
    return json{{"object", std::move(out)}};
  }

  Result<json> render_storage(const std::shared_ptr<ucp::format::Storage>& s) {
    if (!s) return ucp::base::internal_error("storage value without a storage");
    json out{{"dtype", std::string(ucp::base::torch_dtype_attr(s->dtype))},
             {"numel", s->numel},
             {"storage_key", s->key},
             {"hex", to_hex(s->bytes.data(), s->bytes.size())}};
    return json{{"storage", std::move(out)}};
  }

  Result<json> render_tensor(const ucp::format::Tensor& t) {
    if (!t.storage) return ucp::base::internal_error("tensor without a storage");
    const std::vector<std::byte> bytes = ucp::format::tensor_bytes(t);
    json out{{"dtype", std::string(ucp::base::torch_dtype_attr(t.dtype()))},
             {"shape", t.shape},
             {"stride", t.stride},
             {"storage_offset", t.storage_offset},
             {"storage_key", t.storage->key},
             {"storage_numel", t.storage->numel},
             {"requires_grad", t.parameter ? t.parameter->requires_grad : t.requires_grad},
             {"parameter", t.parameter.has_value()},
             {"hex", to_hex(bytes.data(), bytes.size())}};
    if (t.python_state) {  // attributes set in Python (torch >= 2.0 keeps them: _rebuild_from_type_v2)
      UCP_ASSIGN_OR_RETURN(out["attrs"], render(t.python_state));
    }
    return json{{"tensor", std::move(out)}};
  }
};

int fail(const std::string& message) {
  // One line: the oracle tests match on it.
  std::string line = message;
  for (char& c : line) if (c == '\n') c = ' ';
  std::cerr << line << "\n";
  return 1;
}

int dump(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    auto file = ucp::format::TorchFile::open(path);
    if (!file.ok()) return fail(file.status().to_string());
    Renderer renderer;
    auto rendered = renderer.render(file->root());
    if (!rendered.ok()) return fail("'" + path + "': " + rendered.status().to_string());
    try {
      std::cout << rendered->dump(-1, ' ', false, json::error_handler_t::strict) << "\n";
    } catch (const json::exception& e) {
      return fail("'" + path + "': cannot render as JSON: " + e.what());
    }
  }
  std::cout.flush();
  return std::cout.good() ? 0 : fail("writing to stdout failed");
}

Status rewrite_one(const std::string& in, const std::string& out, int protocol) {
  UCP_ASSIGN_OR_RETURN(auto file, ucp::format::TorchFile::open(in));
  ucp::format::TorchWriteOptions options;
  options.protocol = protocol;
  return ucp::format::write_torch_file(out, file.root(), options);
}

int usage() {
  return fail(
      "usage: ucp_pt_tool dump FILE.pt [FILE.pt ...] | rewrite IN.pt OUT.pt [--protocol 2|4] | "
      "rewrite-list LIST [--protocol 2|4]");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  const std::string command = args[0];
  args.erase(args.begin());

  int protocol = 2;
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--protocol" && command != "dump") {
      if (i + 1 >= args.size()) return usage();
      const std::string& p = args[++i];
      if (p != "2" && p != "4") return fail("--protocol must be 2 or 4, got '" + p + "'");
      protocol = p[0] - '0';
    } else {
      positional.push_back(args[i]);
    }
  }

  if (command == "dump") {
    if (positional.empty()) return usage();
    return dump(positional);
  }
  if (command == "rewrite") {
    if (positional.size() != 2) return usage();
    Status s = rewrite_one(positional[0], positional[1], protocol);
    return s.ok() ? 0 : fail(s.to_string());
  }
  if (command == "rewrite-list") {
    if (positional.size() != 1) return usage();
    std::ifstream list(positional[0]);
    if (!list) return fail("cannot open list file '" + positional[0] + "'");
    std::string line;
    while (std::getline(list, line)) {
      if (line.empty()) continue;
      const auto tab = line.find('\t');
      if (tab == std::string::npos) return fail("list line without a tab: '" + line + "'");
      Status s = rewrite_one(line.substr(0, tab), line.substr(tab + 1), protocol);
      if (!s.ok()) return fail(s.to_string());
    }
    return 0;
  }
  return usage();
}
