// The pickle VM. Structure: one loop over opcodes (no recursion), a value stack with MARK
// positions, a memo, and a registry of every container it created. The registry serves two
// purposes: after STOP the result graph is validated (acyclic, depth, expanded size) without
// recursion, and whatever is not part of the accepted result (garbage, or everything on error) is
// dismantled iteratively, so that freeing a hostile million-deep nesting can never recurse.
#include "ucp/format/pickle_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "ucp/base/checked_math.h"

#include "pickle_opcodes.h"

namespace ucp::format {
namespace {

using namespace pickle;  // NOLINT: the opcode table

using base::Result;
using base::Status;
using Kind = Value::Kind;


const char* op_name(std::uint8_t op) {
  switch (op) {
    case kMark: return "MARK";
    case kStop: return "STOP";
    case kPop: return "POP";
    case kPopMark: return "POP_MARK";
    case kDup: return "DUP";
    case kFloat: return "FLOAT";
    case kInt: return "INT";
    case kBinInt: return "BININT";
    case kBinInt1: return "BININT1";
    case kLong: return "LONG";
    case kBinInt2: return "BININT2";
    case kNone: return "NONE";
    case kPersId: return "PERSID";
    case kBinPersId: return "BINPERSID";
    case kReduce: return "REDUCE";
    case kString: return "STRING";
    case kBinString: return "BINSTRING";
    case kShortBinString: return "SHORT_BINSTRING";
    case kUnicode: return "UNICODE";
    case kBinUnicode: return "BINUNICODE";
    case kAppend: return "APPEND";
    case kBuild: return "BUILD";
    case kGlobal: return "GLOBAL";
    case kDict: return "DICT";
    case kEmptyDict: return "EMPTY_DICT";
    case kAppends: return "APPENDS";
    case kGet: return "GET";
    case kBinGet: return "BINGET";
    case kInst: return "INST";
    case kLongBinGet: return "LONG_BINGET";
    case kList: return "LIST";
    case kEmptyList: return "EMPTY_LIST";
    case kObj: return "OBJ";
    case kPut: return "PUT";
    case kBinPut: return "BINPUT";
    case kLongBinPut: return "LONG_BINPUT";
    case kSetItem: return "SETITEM";
    case kTuple: return "TUPLE";
    case kEmptyTuple: return "EMPTY_TUPLE";
    case kSetItems: return "SETITEMS";
    case kBinFloat: return "BINFLOAT";
    case kProto: return "PROTO";
    case kNewObj: return "NEWOBJ";
    case kExt1: return "EXT1";
    case kExt2: return "EXT2";
    case kExt4: return "EXT4";
    case kTuple1: return "TUPLE1";
    case kTuple2: return "TUPLE2";
    case kTuple3: return "TUPLE3";
    case kNewTrue: return "NEWTRUE";
    case kNewFalse: return "NEWFALSE";
    case kLong1: return "LONG1";
    case kLong4: return "LONG4";
    case kBinBytes: return "BINBYTES";
    case kShortBinBytes: return "SHORT_BINBYTES";
    case kShortBinUnicode: return "SHORT_BINUNICODE";
    case kBinUnicode8: return "BINUNICODE8";
    case kBinBytes8: return "BINBYTES8";
    case kEmptySet: return "EMPTY_SET";
    case kAddItems: return "ADDITEMS";
    case kFrozenSet: return "FROZENSET";
    case kNewObjEx: return "NEWOBJ_EX";
    case kStackGlobal: return "STACK_GLOBAL";
    case kMemoize: return "MEMOIZE";
    case kFrame: return "FRAME";
    case kByteArray8: return "BYTEARRAY8";
    case kNextBuffer: return "NEXT_BUFFER";
    case kReadonlyBuffer: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

constexpr int kHighestProtocol = 5;
// CPython refuses int literals longer than this (sys.int_info.default_max_str_digits); it also
// keeps the decimal conversion below cheap.
constexpr std::size_t kMaxDecimalDigits = 4300;

// ---------------------------------------------------------------- text helpers

// Validates UTF-8 as CPython's 'surrogatepass' decoder does (encoded surrogates allowed).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    i += len;
  }
  return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Strips redundant sign bytes of a little-endian two's complement number.
void minimise_twos_complement(std::string& le) {
  while (le.size() > 1) {
    const auto last = static_cast<unsigned char>(le[le.size() - 1]);
    const auto prev = static_cast<unsigned char>(le[le.size() - 2]);
    if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
      le.pop_back();
    } else {
      break;
    }
  }
  if (le.size() == 1 && le[0] == 0) le.clear();
}

// A Python int from little-endian two's complement bytes: Int when it fits int64, else BigInt
// holding the minimal encoding (so equal numbers always compare equal).
ValuePtr int_from_le(std::string le) {
  minimise_twos_complement(le);
  if (le.size() <= 8) {
    std::uint64_t u = 0;
    for (std::size_t k = 0; k < le.size(); ++k) u |= static_cast<std::uint64_t>(static_cast<unsigned char>(le[k])) << (8 * k);
    if (!le.empty() && (static_cast<unsigned char>(le.back()) & 0x80) && le.size() < 8) u |= ~std::uint64_t{0} << (8 * le.size());
    return Value::integer(static_cast<std::int64_t>(u));
  }
  auto v = std::make_shared<Value>();
  v->kind = Kind::kBigInt;
  v->str = std::move(le);
  return v;
}

// Decimal text ("-123", "123L" handled by the caller) to an int value; nullopt on bad syntax.
std::optional<ValuePtr> int_from_decimal(std::string_view text) {
  text = trim(text);
  bool negative = false;
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty() || text.size() > kMaxDecimalDigits) return std::nullopt;
  for (char c : text)
    if (c < '0' || c > '9') return std::nullopt;
  // Magnitude in base 2^32 limbs, little-endian.
  std::vector<std::uint32_t> limbs;
  for (char c : text) {
    std::uint64_t carry = static_cast<std::uint64_t>(c - '0');
    for (auto& limb : limbs) {
      const std::uint64_t x = static_cast<std::uint64_t>(limb) * 10 + carry;
      limb = static_cast<std::uint32_t>(x);
      carry = x >> 32;
    }
    if (carry) limbs.push_back(static_cast<std::uint32_t>(carry));
  }
  std::string le;
  for (std::uint32_t limb : limbs)
    for (int k = 0; k < 4; ++k) le += static_cast<char>((limb >> (8 * k)) & 0xff);
  le += '\0';  // sign byte: the magnitude is non-negative
  if (negative) {  // two's complement: invert and add one
    unsigned carry = 1;
    for (auto& ch : le) {
      const unsigned x = static_cast<unsigned char>(~static_cast<unsigned char>(ch)) + carry;
      ch = static_cast<char>(x & 0xff);
      carry = x >> 8;
    }
  }
  return int_from_le(std::move(le));
}

// codecs.escape_decode, which the STRING opcode applies to its quoted argument.
std::optional<std::string> escape_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) return std::nullopt;  // trailing backslash
    const char c = s[i];
    switch (c) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 't': out += '\t'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 'v': out += '\v'; break;
      case 'a': out += '\a'; break;
      case 'x': {
        if (i + 2 >= s.size()) return std::nullopt;  // needs two hex digits
        const int h = hex_digit(s[i + 1]);
        const int l = hex_digit(s[i + 2]);
        if (h < 0 || l < 0) return std::nullopt;
        out += static_cast<char>(h * 16 + l);
        i += 2;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int v = c - '0';
          for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + (s[++i] - '0');
          out += static_cast<char>(v & 0xff);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

// raw-unicode-escape, which the UNICODE opcode uses: latin-1 bytes plus \uXXXX / \UXXXXXXXX
// escapes (only when preceded by an odd number of backslashes). Result in UTF-8.
std::optional<std::string> raw_unicode_escape_decode(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\') {
      append_utf8(out, static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && s[j] == '\\') ++j;
    const std::size_t run = j - i;
    if (run % 2 == 1 && j < s.size() && (s[j] == 'u' || s[j] == 'U')) {
      out.append(run - 1, '\\');
      const std::size_t count = s[j] == 'u' ? 4 : 8;
      if (s.size() - (j + 1) < count) return std::nullopt;
      std::uint32_t cp = 0;
      for (std::size_t k = 0; k < count; ++k) {
        const int d = hex_digit(s[j + 1 + k]);
        if (d < 0) return std::nullopt;
        cp = cp * 16 + static_cast<std::uint32_t>(d);
      }
      if (cp > 0x10ffff) return std::nullopt;
      append_utf8(out, cp);
      i = j + 1 + count;
    } else {
      out.append(run, '\\');
      i = j;
    }
  }
  return out;
}

bool is_builtins(const std::string& module) { return module == "__builtin__" || module == "builtins"; }

// ---------------------------------------------------------------- the VM

class Vm {
 public:
  Vm(std::span<const std::byte> data, const PersistentLoad& persistent_load, const PickleLimits& limits)
      : data_(data), persistent_load_(persistent_load), limits_(limits) {}

  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  ~Vm() { dismantle_unreachable(); }

  Result<ValuePtr> run() {
    while (true) {
      if (pos_ >= data_.size())
        return base::data_loss("pickle ends at offset " + std::to_string(pos_) + " without a STOP opcode");
      op_offset_ = pos_;
      op_ = static_cast<std::uint8_t>(data_[pos_++]);
      if (op_ == kStop) {
        UCP_ASSIGN_OR_RETURN(ValuePtr result, pop());
        UCP_RETURN_IF_ERROR(validate(result));
        return result;
      }
      UCP_RETURN_IF_ERROR(step());
    }
  }

 private:
  // ------------------------------------------------------------ errors and input

  Status error(const std::string& what) const {
    const char* name = op_name(op_);
    return base::data_loss(std::string(name ? name : "opcode") + " at offset " + std::to_string(op_offset_) + ": " +
                           what);
  }
  Status unsupported(const std::string& what) const {
    const char* name = op_name(op_);
    return base::unimplemented(std::string(name ? name : "opcode") + " at offset " + std::to_string(op_offset_) + ": " +
                               what);
  }

  Status need(std::uint64_t n) const {
    if (n > data_.size() - pos_)
      return error("needs " + std::to_string(n) + " bytes but only " + std::to_string(data_.size() - pos_) +
                   " remain in the pickle");
    return Status();
  }

  Result<std::uint64_t> read_uint(int bytes) {
    UCP_RETURN_IF_ERROR(need(static_cast<std::uint64_t>(bytes)));
    std::uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + k])) << (8 * k);
    pos_ += static_cast<std::size_t>(bytes);
    return v;
  }

  Result<std::string_view> read_bytes(std::uint64_t n) {
    UCP_RETURN_IF_ERROR(need(n));
    std::string_view s(reinterpret_cast<const char*>(data_.data()) + pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }

  // A protocol-0 argument line, without its '\n'.
  Result<std::string_view> read_line() {
    const char* begin = reinterpret_cast<const char*>(data_.data()) + pos_;
    const std::size_t remain = data_.size() - pos_;
    const void* nl = std::memchr(begin, '\n', remain);
    if (!nl) return error("argument line has no terminating newline before the end of the pickle");
    const std::size_t len = static_cast<std::size_t>(static_cast<const char*>(nl) - begin);
    pos_ += len + 1;
    return std::string_view(begin, len);
  }

  // ------------------------------------------------------------ stack

  std::size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }

  Result<ValuePtr> pop() {
    if (stack_.size() <= frame_base()) return error("stack underflow");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }

  Result<ValuePtr> top() const {
    if (stack_.size() <= frame_base()) return error("stack underflow");
    return stack_.back();
  }

  Result<std::vector<ValuePtr>> pop_mark() {
    if (marks_.empty()) return error("no MARK on the stack");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }

  void push(ValuePtr v) { stack_.push_back(std::move(v)); }

  // Every value that can hold children goes through here, so it can be dismantled later.
  ValuePtr container(Kind kind) {
    auto v = std::make_shared<Value>();
    v->kind = kind;
    containers_.push_back(v);
    return v;
  }

  // Depth bookkeeping while the graph is built. Containers only ever gain children, so the depth
  // recorded for a node (1 + the deepest child when it was added) is a lower bound of its depth in
  // the final graph: once it exceeds the limit, the pickle is refused right away, before a hostile
  // nesting has been built a million levels deep. (validate() computes exact depths after STOP.)
  std::uint32_t depth_of(const ValuePtr& v) const {
    if (!v || !may_have_children(*v)) return 0;
    auto it = depth_.find(v.get());
    return it == depth_.end() ? 0 : it->second;
  }

  template <typename Range>
  std::uint32_t max_depth_of(const Range& values) const {
    std::uint32_t d = 0;
    for (const ValuePtr& v : values) d = std::max(d, depth_of(v));
    return d;
  }

  // Records that `target` now holds a child of depth `child_depth`.
  Status deepen(const ValuePtr& target, std::uint32_t child_depth) {
    const std::uint32_t d = child_depth + 1;
    std::uint32_t& slot = depth_[target.get()];
    if (d > slot) {
      slot = d;
      if (d > limits_.max_depth) return error("pickle nesting deeper than " + std::to_string(limits_.max_depth));
    }
    return Status();
  }

  // A new container holding `items`.
  Result<ValuePtr> sequence(Kind kind, std::vector<ValuePtr> items) {
    auto v = container(kind);
    const bool any = !items.empty();
    const std::uint32_t d = any ? max_depth_of(items) : 0;
    v->items = std::move(items);
    if (any) UCP_RETURN_IF_ERROR(deepen(v, d));
    return v;
  }

  Status push_sequence(Kind kind, std::vector<ValuePtr> items) {
    UCP_ASSIGN_OR_RETURN(ValuePtr v, sequence(kind, std::move(items)));
    push(std::move(v));
    return Status();
  }

  ValuePtr scalar(Kind kind) {
    auto v = std::make_shared<Value>();
    v->kind = kind;
    return v;
  }

  Result<ValuePtr> make_str(std::string_view raw) {
    if (!valid_utf8(raw)) return error("string is not valid UTF-8");
    auto v = scalar(Kind::kStr);
    v->str.assign(raw);
    return v;
  }

  // ------------------------------------------------------------ memo

  Status memo_put(std::uint64_t key) {
    UCP_ASSIGN_OR_RETURN(ValuePtr v, top());
    memo_[key] = std::move(v);
    return Status();
  }

  Status memo_get(std::uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return error("memo key " + std::to_string(key) + " was never stored");
    push(it->second);
    return Status();
  }

  Result<std::uint64_t> decimal_arg() {
    UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
    line = trim(line);
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
    if (line.empty() || ec != std::errc() || p != line.data() + line.size())
      return error("argument '" + std::string(line.substr(0, 40)) + "' is not a non-negative integer");
    return v;
  }

  // ------------------------------------------------------------ opcodes

  Status step() {
    switch (op_) {
      case kProto: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t v, read_uint(1));
        if (v > kHighestProtocol) return unsupported("pickle protocol " + std::to_string(v) + " is not supported");
        return Status();
      }
      case kFrame: {
        // Frames only group opcodes for buffered reading; their content is read like any other.
        UCP_ASSIGN_OR_RETURN(std::uint64_t n, read_uint(8));
        return need(n);
      }
      case kMark: marks_.push_back(stack_.size()); return Status();
      case kPop: {
        if (stack_.size() > frame_base()) {
          stack_.pop_back();
        } else if (!marks_.empty()) {
          marks_.pop_back();  // as CPython: POP on an empty frame discards the MARK
        } else {
          return error("stack underflow");
        }
        return Status();
      }
      case kPopMark: return pop_mark().take_status();
      case kDup: {
        UCP_ASSIGN_OR_RETURN(ValuePtr v, top());
        push(std::move(v));
        return Status();
      }
      case kNone: push(scalar(Kind::kNone)); return Status();
      case kNewTrue:
      case kNewFalse: {
        auto v = scalar(Kind::kBool);
        v->b = op_ == kNewTrue;
        push(std::move(v));
        return Status();
      }
      case kInt: return op_int();
      case kBinInt: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t u, read_uint(4));
        push(Value::integer(static_cast<std::int32_t>(static_cast<std::uint32_t>(u))));
        return Status();
      }
      case kBinInt1:
      case kBinInt2: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t u, read_uint(op_ == kBinInt1 ? 1 : 2));
        push(Value::integer(static_cast<std::int64_t>(u)));
        return Status();
      }
      case kLong: {
        UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
        if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
        auto v = int_from_decimal(line);
        if (!v) return error("'" + std::string(line.substr(0, 40)) + "' is not a decimal integer of at most " +
                             std::to_string(kMaxDecimalDigits) + " digits");
        push(std::move(*v));
        return Status();
      }
      case kLong1:
      case kLong4: {
        std::uint64_t n;
        if (op_ == kLong1) {
          UCP_ASSIGN_OR_RETURN(n, read_uint(1));
        } else {
          UCP_ASSIGN_OR_RETURN(std::uint64_t u, read_uint(4));
          if (static_cast<std::int32_t>(static_cast<std::uint32_t>(u)) < 0) return error("negative byte count");
          n = u;
        }
        UCP_ASSIGN_OR_RETURN(std::string_view raw, read_bytes(n));
        push(int_from_le(std::string(raw)));
        return Status();
      }
      case kBinFloat: {
        UCP_ASSIGN_OR_RETURN(std::string_view raw, read_bytes(8));
        std::uint64_t bits = 0;
        for (char c : raw) bits = (bits << 8) | static_cast<unsigned char>(c);  // big-endian
        double d;
        std::memcpy(&d, &bits, 8);
        push(Value::floating(d));
        return Status();
      }
      case kFloat: {
        UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
        std::string_view t = trim(line);
        if (!t.empty() && t.front() == '+') t.remove_prefix(1);
        double d = 0;
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
        if (t.empty() || p != t.data() + t.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
          return error("'" + std::string(line.substr(0, 40)) + "' is not a float");
        push(Value::floating(d));
        return Status();
      }
      case kString: {
        UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
        if (line.size() < 2 || line.front() != line.back() || (line.front() != '\'' && line.front() != '"'))
          return error("argument must be quoted");
        auto decoded = escape_decode(line.substr(1, line.size() - 2));
        if (!decoded) return error("bad escape sequence in string");
        UCP_ASSIGN_OR_RETURN(ValuePtr v, make_str(*decoded));
        push(std::move(v));
        return Status();
      }
      case kBinString:
      case kShortBinString: {
        std::uint64_t n;
        if (op_ == kShortBinString) {
          UCP_ASSIGN_OR_RETURN(n, read_uint(1));
        } else {
          UCP_ASSIGN_OR_RETURN(std::uint64_t u, read_uint(4));
          if (static_cast<std::int32_t>(static_cast<std::uint32_t>(u)) < 0) return error("negative byte count");
          n = u;
        }
        UCP_ASSIGN_OR_RETURN(std::string_view raw, read_bytes(n));
        // Python 2 str: torch.load decodes these as UTF-8 text.
        UCP_ASSIGN_OR_RETURN(ValuePtr v, make_str(raw));
        push(std::move(v));
        return Status();
      }
      case kUnicode: {
        UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
        auto decoded = raw_unicode_escape_decode(line);
        if (!decoded) return error("bad \\u escape in raw-unicode-escape text");
        auto v = scalar(Kind::kStr);
        v->str = std::move(*decoded);
        push(std::move(v));
        return Status();
      }
      case kBinUnicode:
      case kShortBinUnicode:
      case kBinUnicode8: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t n, read_uint(op_ == kShortBinUnicode ? 1 : op_ == kBinUnicode ? 4 : 8));
        UCP_ASSIGN_OR_RETURN(std::string_view raw, read_bytes(n));
        UCP_ASSIGN_OR_RETURN(ValuePtr v, make_str(raw));
        push(std::move(v));
        return Status();
      }
      case kBinBytes:
      case kShortBinBytes:
      case kBinBytes8:
      case kByteArray8: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t n, read_uint(op_ == kShortBinBytes ? 1 : op_ == kBinBytes ? 4 : 8));
        UCP_ASSIGN_OR_RETURN(std::string_view raw, read_bytes(n));
        auto v = scalar(op_ == kByteArray8 ? Kind::kByteArray : Kind::kBytes);
        v->str.assign(raw);
        push(std::move(v));
        return Status();
      }
      case kEmptyTuple: push(container(Kind::kTuple)); return Status();
      case kTuple: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        return push_sequence(Kind::kTuple, std::move(items));
      }
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const std::size_t n = op_ - kTuple1 + 1u;
        if (stack_.size() < frame_base() + n) return error("stack underflow");
        std::vector<ValuePtr> items(std::make_move_iterator(stack_.end() - static_cast<std::ptrdiff_t>(n)),
                                    std::make_move_iterator(stack_.end()));
        stack_.resize(stack_.size() - n);
        return push_sequence(Kind::kTuple, std::move(items));
      }
      case kEmptyList: push(container(Kind::kList)); return Status();
      case kList: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        return push_sequence(Kind::kList, std::move(items));
      }
      case kAppend: {
        UCP_ASSIGN_OR_RETURN(ValuePtr item, pop());
        std::vector<ValuePtr> items{std::move(item)};
        return append_to_top(std::move(items));
      }
      case kAppends: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        return append_to_top(std::move(items));
      }
      case kEmptyDict: push(container(Kind::kDict)); return Status();
      case kDict: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        if (items.size() % 2) return error("odd number of items (" + std::to_string(items.size()) + ") for key/value pairs");
        auto v = container(Kind::kDict);
        if (!items.empty()) UCP_RETURN_IF_ERROR(deepen(v, max_depth_of(items)));
        for (std::size_t k = 0; k < items.size(); k += 2) v->entries.emplace_back(std::move(items[k]), std::move(items[k + 1]));
        push(std::move(v));
        return Status();
      }
      case kSetItem: {
        UCP_ASSIGN_OR_RETURN(ValuePtr value, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr key, pop());
        std::vector<ValuePtr> items{std::move(key), std::move(value)};
        return setitems_on_top(std::move(items));
      }
      case kSetItems: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        if (items.size() % 2) return error("odd number of items (" + std::to_string(items.size()) + ") for key/value pairs");
        return setitems_on_top(std::move(items));
      }
      case kEmptySet: push(container(Kind::kSet)); return Status();
      case kAddItems: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        UCP_ASSIGN_OR_RETURN(ValuePtr target, top());
        if (target->kind != Kind::kSet) return error("cannot add items to a " + target->type_name());
        if (!items.empty()) UCP_RETURN_IF_ERROR(deepen(target, max_depth_of(items)));
        for (auto& it : items) target->items.push_back(std::move(it));
        return Status();
      }
      case kFrozenSet: {
        UCP_ASSIGN_OR_RETURN(auto items, pop_mark());
        return push_sequence(Kind::kFrozenSet, std::move(items));
      }
      case kGlobal: {
        UCP_ASSIGN_OR_RETURN(std::string_view module, read_line());
        UCP_ASSIGN_OR_RETURN(std::string_view name, read_line());
        if (!valid_utf8(module) || !valid_utf8(name)) return error("module or name is not valid UTF-8");
        // Python 2 module names become their Python 3 names ("__builtin__" -> "builtins"), as
        // Python's unpickler does below protocol 3; from protocol 3 on it would fail to import
        // them, and we read them the same way, so the tree is the same whatever protocol wrote it
        // and the writer can spell it for any protocol.
        push(Value::global_ref(python3_module(module), std::string(name)));
        return Status();
      }
      case kStackGlobal: {
        UCP_ASSIGN_OR_RETURN(ValuePtr name, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr module, pop());
        if (module->kind != Kind::kStr || name->kind != Kind::kStr)
          return error("module and name must be str, got " + module->type_name() + " and " + name->type_name());
        push(Value::global_ref(python3_module(module->str), name->str));  // as GLOBAL above
        return Status();
      }
      case kReduce: {
        UCP_ASSIGN_OR_RETURN(ValuePtr args, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr callable, pop());
        if (args->kind != Kind::kTuple) return error("arguments are a " + args->type_name() + ", expected a tuple");
        UCP_ASSIGN_OR_RETURN(ValuePtr result, reduce(callable, args));
        push(std::move(result));
        return Status();
      }
      case kNewObj: {
        UCP_ASSIGN_OR_RETURN(ValuePtr args, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr cls, pop());
        if (args->kind != Kind::kTuple) return error("arguments are a " + args->type_name() + ", expected a tuple");
        UCP_ASSIGN_OR_RETURN(ValuePtr obj, make_object(std::move(cls), BuildKind::kNewObj, std::move(args), nullptr));
        push(std::move(obj));
        return Status();
      }
      case kNewObjEx: {
        UCP_ASSIGN_OR_RETURN(ValuePtr kwargs, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr args, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr cls, pop());
        if (args->kind != Kind::kTuple || kwargs->kind != Kind::kDict)
          return error("arguments are " + args->type_name() + " and " + kwargs->type_name() + ", expected tuple and dict");
        UCP_ASSIGN_OR_RETURN(ValuePtr obj,
                             make_object(std::move(cls), BuildKind::kNewObjEx, std::move(args), std::move(kwargs)));
        push(std::move(obj));
        return Status();
      }
      case kBuild: {
        UCP_ASSIGN_OR_RETURN(ValuePtr state, pop());
        UCP_ASSIGN_OR_RETURN(ValuePtr inst, top());
        if (inst->kind == Kind::kObject) {
          if (inst->object.state) return unsupported("a second BUILD on one " + inst->type_name() + " object");
          UCP_RETURN_IF_ERROR(deepen(inst, depth_of(state)));
          inst->object.state = std::move(state);
          return Status();
        }
        if (state->kind == Kind::kNone) return Status();  // Python: BUILD(None) changes nothing
        if (inst->kind == Kind::kDict && inst->ordered_dict && state->kind == Kind::kDict) {
          // OrderedDict.__reduce__ passes the instance __dict__ as state (state_dict's _metadata).
          if (inst->state) return unsupported("a second BUILD on one OrderedDict");
          UCP_RETURN_IF_ERROR(deepen(inst, depth_of(state)));
          inst->state = std::move(state);
          return Status();
        }
        return unsupported("BUILD with a " + state->type_name() + " state on a " + inst->type_name());
      }
      case kPut: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t key, decimal_arg());
        return memo_put(key);
      }
      case kBinPut:
      case kLongBinPut: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t key, read_uint(op_ == kBinPut ? 1 : 4));
        return memo_put(key);
      }
      case kMemoize: return memo_put(memo_.size());
      case kGet: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t key, decimal_arg());
        return memo_get(key);
      }
      case kBinGet:
      case kLongBinGet: {
        UCP_ASSIGN_OR_RETURN(std::uint64_t key, read_uint(op_ == kBinGet ? 1 : 4));
        return memo_get(key);
      }
      case kPersId: {
        UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
        UCP_ASSIGN_OR_RETURN(ValuePtr pid, make_str(line));
        return persistent(std::move(pid));
      }
      case kBinPersId: {
        UCP_ASSIGN_OR_RETURN(ValuePtr pid, pop());
        return persistent(std::move(pid));
      }
      case kExt1:
      case kExt2:
      case kExt4: return unsupported("extension registry codes are not supported");
      case kInst:
      case kObj: return unsupported("protocol 0/1 class instances are not supported");
      case kNextBuffer:
      case kReadonlyBuffer: return unsupported("out-of-band buffers are not supported");
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op_);
        return base::data_loss(std::string("unknown pickle opcode ") + hex + " at offset " + std::to_string(op_offset_));
      }
    }
  }

  Status op_int() {
    UCP_ASSIGN_OR_RETURN(std::string_view line, read_line());
    if (line == "00" || line == "01") {  // protocol 0 booleans
      auto v = scalar(Kind::kBool);
      v->b = line == "01";
      push(std::move(v));
      return Status();
    }
    auto v = int_from_decimal(line);
    if (!v) return error("'" + std::string(line.substr(0, 40)) + "' is not a decimal integer");
    push(std::move(*v));
    return Status();
  }

  Status append_to_top(std::vector<ValuePtr> items) {
    UCP_ASSIGN_OR_RETURN(ValuePtr target, top());
    std::vector<ValuePtr>* dst = nullptr;
    if (target->kind == Kind::kList) dst = &target->items;
    if (target->kind == Kind::kObject) dst = &target->object.list_items;  // e.g. a list subclass
    if (!dst) return error("cannot append to a " + target->type_name());
    if (!items.empty()) UCP_RETURN_IF_ERROR(deepen(target, max_depth_of(items)));
    for (auto& it : items) dst->push_back(std::move(it));
    return Status();
  }

  Status setitems_on_top(std::vector<ValuePtr> items) {
    UCP_ASSIGN_OR_RETURN(ValuePtr target, top());
    std::vector<std::pair<ValuePtr, ValuePtr>>* dst = nullptr;
    if (target->kind == Kind::kDict) dst = &target->entries;
    if (target->kind == Kind::kObject) dst = &target->object.dict_items;  // e.g. collections.defaultdict
    if (!dst) return error("cannot set items on a " + target->type_name());
    if (!items.empty()) UCP_RETURN_IF_ERROR(deepen(target, max_depth_of(items)));
    for (std::size_t k = 0; k + 1 < items.size(); k += 2) dst->emplace_back(std::move(items[k]), std::move(items[k + 1]));
    return Status();
  }

  Status persistent(ValuePtr pid) {
    if (!persistent_load_) return error("persistent id found but no persistent_load was given");
    auto r = persistent_load_(pid);
    if (!r.ok()) return std::move(r).take_status().annotate(std::string(op_name(op_)) + " at offset " + std::to_string(op_offset_));
    if (!*r) return error("persistent_load returned nothing");
    push(std::move(*r));
    return Status();
  }

  Result<ValuePtr> make_object(ValuePtr callable, BuildKind kind, ValuePtr args, ValuePtr kwargs) {
    auto v = container(Kind::kObject);
    UCP_RETURN_IF_ERROR(deepen(v, std::max({depth_of(callable), depth_of(args), depth_of(kwargs)})));
    v->object.callable = std::move(callable);
    v->object.kind = kind;
    v->object.args = std::move(args);
    v->object.kwargs = std::move(kwargs);
    return v;
  }

  // ------------------------------------------------------------ recognised callables

  Result<ValuePtr> reduce(const ValuePtr& callable, const ValuePtr& args) {
    const auto& a = args->items;
    if (callable->kind == Kind::kGlobal) {
      const std::string& module = callable->global.module;
      const std::string& name = callable->global.name;
      if (module == "collections" && name == "OrderedDict") {
        if (a.empty()) {
          auto v = container(Kind::kDict);
          v->ordered_dict = true;
          return v;
        }
        if (a.size() == 1 && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple)) {
          bool pairs = true;
          for (const auto& p : a[0]->items)
            pairs = pairs && (p->kind == Kind::kTuple || p->kind == Kind::kList) && p->items.size() == 2;
          if (pairs) {
            auto v = container(Kind::kDict);
            v->ordered_dict = true;
            for (const auto& p : a[0]->items) {
              UCP_RETURN_IF_ERROR(deepen(v, std::max(depth_of(p->items[0]), depth_of(p->items[1]))));
              v->entries.emplace_back(p->items[0], p->items[1]);
            }
            return v;
          }
        }
      } else if (module == "torch" && name == "Size") {
        if (a.empty() || (a.size() == 1 && (a[0]->kind == Kind::kTuple || a[0]->kind == Kind::kList))) {
          bool ints = true;
          if (!a.empty())
            for (const auto& d : a[0]->items) ints = ints && d->kind == Kind::kInt;
          if (ints) {
            return sequence(Kind::kSize, a.empty() ? std::vector<ValuePtr>() : a[0]->items);
          }
        }
      } else if (is_builtins(module) && (name == "set" || name == "frozenset")) {
        if (a.empty() || (a.size() == 1 && (a[0]->kind == Kind::kList || a[0]->kind == Kind::kTuple))) {
          return sequence(name == "set" ? Kind::kSet : Kind::kFrozenSet,
                          a.empty() ? std::vector<ValuePtr>() : a[0]->items);
        }
      } else if (is_builtins(module) && name == "bytearray") {
        if (a.empty() || (a.size() == 1 && a[0]->kind == Kind::kBytes)) {
          auto v = scalar(Kind::kByteArray);
          if (!a.empty()) v->str = a[0]->str;
          return v;
        }
      } else if (is_builtins(module) && name == "bytes") {
        if (a.empty()) return scalar(Kind::kBytes);
      } else if (module == "_codecs" && name == "encode") {
        // How protocol 2 pickles bytes: _codecs.encode(bytes.decode('latin1'), 'latin1').
        if (a.size() == 2 && a[0]->kind == Kind::kStr && a[1]->kind == Kind::kStr &&
            (a[1]->str == "latin1" || a[1]->str == "latin-1")) {
          return latin1_bytes(a[0]->str);
        }
      } else if (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_tensor_v3")) {
        return rebuild_tensor(a, name);
      } else if (module == "torch._tensor" && name == "_rebuild_from_type_v2") {
        if (auto v = rebuild_from_type(a)) return *v;
      } else if (module == "torch._utils" && (name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state")) {
        return rebuild_parameter(a, name == "_rebuild_parameter_with_state");
      }
    }
    return make_object(callable, BuildKind::kReduce, args, nullptr);
  }

  Result<ValuePtr> latin1_bytes(const std::string& text) {
    auto v = scalar(Kind::kBytes);
    for (std::size_t i = 0; i < text.size();) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c < 0x80) {
        v->str += static_cast<char>(c);
        ++i;
      } else if ((c == 0xc2 || c == 0xc3) && i + 1 < text.size()) {
        v->str += static_cast<char>(((c & 0x1f) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3f));
        i += 2;
      } else {
        return error("_codecs.encode(..., 'latin1') of a character above U+00FF");
      }
    }
    return v;
  }

  Result<std::vector<std::int64_t>> int_sequence(const ValuePtr& v, const std::string& fn, const char* what) {
    if (v->kind != Kind::kTuple && v->kind != Kind::kSize && v->kind != Kind::kList)
      return error(fn + " " + what + " is a " + v->type_name() + ", expected a tuple of ints");
    if (v->items.size() > limits_.max_tensor_dims)
      return error(fn + " " + what + " has " + std::to_string(v->items.size()) + " dims, more than the limit of " +
                   std::to_string(limits_.max_tensor_dims));
    std::vector<std::int64_t> out;
    for (const auto& d : v->items) {
      if (d->kind != Kind::kInt) return error(fn + " " + what + " holds a " + d->type_name() + ", expected ints");
      out.push_back(d->i);
    }
    return out;
  }

  // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]),
  // or _rebuild_tensor_v3(untyped storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]):
  // torch >= 2.1 pickles the dtypes without a typed storage class (float8, uint16/32/64) through v3.
  Result<ValuePtr> rebuild_tensor(const std::vector<ValuePtr>& a, const std::string& fn) {
    const bool v3 = fn == "_rebuild_tensor_v3";
    const std::size_t fixed = v3 ? 7 : 6;
    if (a.size() != fixed && a.size() != fixed + 1)
      return error(fn + " takes " + std::to_string(fixed) + " or " + std::to_string(fixed + 1) + " arguments, got " +
                   std::to_string(a.size()));
    if (a[0]->kind != Kind::kStorage || !a[0]->storage)
      return error(fn + " storage argument is a " + a[0]->type_name() + ", expected a storage");
    if (a[1]->kind != Kind::kInt) return error(fn + " storage offset is a " + a[1]->type_name() + ", expected an int");
    if (a[4]->kind != Kind::kBool) return error(fn + " requires_grad is a " + a[4]->type_name() + ", expected a bool");
    Tensor t;
    t.storage = a[0]->storage;
    if (v3) {
      UCP_ASSIGN_OR_RETURN(t.storage, typed_view(a[0]->storage, a[6]));
    }
    t.storage_offset = a[1]->i;
    UCP_ASSIGN_OR_RETURN(t.shape, int_sequence(a[2], fn, "size"));
    UCP_ASSIGN_OR_RETURN(t.stride, int_sequence(a[3], fn, "stride"));
    t.requires_grad = a[4]->b;
    t.backward_hooks = a[5];
    if (a.size() == fixed + 1) t.metadata = a[fixed];
    if (Status s = check_tensor(t); !s.ok()) return error(fn + ": " + s.message());
    auto v = container(Kind::kTensor);
    UCP_RETURN_IF_ERROR(deepen(v, std::max(depth_of(t.backward_hooks), depth_of(t.metadata))));
    v->tensor = std::move(t);
    return v;
  }

  // The untyped (byte) storage of a _rebuild_tensor_v3 seen as elements of its dtype argument
  // (a global torch.<dtype>). One view per (storage, dtype), so tensors sharing bytes share it.
  Result<std::shared_ptr<Storage>> typed_view(const std::shared_ptr<Storage>& bytes, const ValuePtr& dtype_arg) {
    if (dtype_arg->kind != Kind::kGlobal || dtype_arg->global.module != "torch")
      return error("_rebuild_tensor_v3 dtype is a " + dtype_arg->type_name() + ", expected a torch.<dtype>");
    auto dtype = base::dtype_from_torch_dtype_attr(dtype_arg->global.name);
    if (!dtype) return base::unimplemented("tensor dtype torch." + dtype_arg->global.name + " is not supported");
    if (bytes->dtype != base::DType::kU8 && bytes->dtype != *dtype)
      return error("_rebuild_tensor_v3 storage is a typed " + std::string(base::dtype_name(bytes->dtype)) +
                   " storage, expected torch.UntypedStorage");
    if (bytes->dtype == *dtype) return bytes;
    auto& view = typed_views_[{bytes.get(), *dtype}];
    if (!view) {
      const std::size_t size = base::dtype_size(*dtype);
      if (bytes->bytes.size() % size != 0)
        return error("_rebuild_tensor_v3 storage of " + std::to_string(bytes->bytes.size()) +
                     " bytes is not a whole number of torch." + dtype_arg->global.name + " elements");
      view = std::make_shared<Storage>(*bytes);
      view->dtype = *dtype;
      view->numel = bytes->bytes.size() / size;
    }
    return view;
  }

  // torch._tensor._rebuild_from_type_v2(func, torch.Tensor, args, state): how torch >= 2.0 pickles a
  // plain tensor that carries Python attributes (DeepSpeed's `ds_id` on ZeRO-3 fp32 partitions).
  // Only that case is a tensor; subclasses (new_type other than torch.Tensor) stay opaque objects.
  std::optional<Result<ValuePtr>> rebuild_from_type(const std::vector<ValuePtr>& a) {
    if (a.size() != 4 || a[0]->kind != Kind::kGlobal || a[1]->kind != Kind::kGlobal || a[2]->kind != Kind::kTuple)
      return std::nullopt;
    const Global& func = a[0]->global;
    const Global& type = a[1]->global;
    if (func.module != "torch._utils" || (func.name != "_rebuild_tensor_v2" && func.name != "_rebuild_tensor_v3") ||
        type.module != "torch" || type.name != "Tensor")
      return std::nullopt;
    auto v = rebuild_tensor(a[2]->items, func.name);
    if (!v.ok()) return v;
    ValuePtr tensor = std::move(*v);
    if (a[3]->kind != Kind::kNone) {
      if (Status s = deepen(tensor, depth_of(a[3])); !s.ok()) return Result<ValuePtr>(std::move(s));
      tensor->tensor.python_state = a[3];
    }
    return tensor;
  }

  Result<ValuePtr> rebuild_parameter(const std::vector<ValuePtr>& a, bool with_state) {
    const std::size_t want = with_state ? 4 : 3;
    const char* fn = with_state ? "_rebuild_parameter_with_state" : "_rebuild_parameter";
    if (a.size() != want)
      return error(std::string(fn) + " takes " + std::to_string(want) + " arguments, got " + std::to_string(a.size()));
    if (a[0]->kind != Kind::kTensor || a[0]->tensor.parameter)
      return error(std::string(fn) + " data is a " + a[0]->type_name() + ", expected a tensor");
    if (a[1]->kind != Kind::kBool)
      return error(std::string(fn) + " requires_grad is a " + a[1]->type_name() + ", expected a bool");
    auto v = container(Kind::kTensor);
    v->tensor = a[0]->tensor;
    Tensor::Parameter p;
    p.requires_grad = a[1]->b;
    p.backward_hooks = a[2];
    if (with_state) p.state = a[3];
    UCP_RETURN_IF_ERROR(deepen(v, std::max({depth_of(v->tensor.backward_hooks), depth_of(v->tensor.metadata),
                                            depth_of(p.backward_hooks), depth_of(p.state)})));
    v->tensor.parameter = std::move(p);
    return v;
  }

  // ------------------------------------------------------------ validation and teardown

  // Iterative DFS: cycles, nesting depth, and the size the tree would have if every shared
  // subtree were copied (so a small pickle cannot describe an exponentially large structure).
  Status validate(const ValuePtr& root) {
    struct Info {
      bool done = false;
      std::uint64_t expanded = 1;
    };
    struct Frame {
      const Value* v;
      std::vector<const Value*> children;
      std::size_t next = 0;
      std::uint64_t expanded = 1;
    };
    const std::uint64_t cap = limits_.max_expanded_values;
    auto add = [cap](std::uint64_t a, std::uint64_t b) {
      auto s = base::checked_add(a, b);
      return s && *s <= cap ? *s : cap + 1;
    };
    std::unordered_map<const Value*, Info> info;
    std::vector<Frame> frames;
    auto open = [&](const Value* v) -> Status {
      if (frames.size() >= limits_.max_depth)
        return base::data_loss("pickle nesting deeper than " + std::to_string(limits_.max_depth) + " (STOP at offset " +
                               std::to_string(op_offset_) + ")");
      info.emplace(v, Info{});
      Frame f{v, {}, 0, 1};
      for_each_child(*v, [&](const ValuePtr& c) {
        if (c) f.children.push_back(c.get());
      });
      frames.push_back(std::move(f));
      return Status();
    };
    std::uint64_t total = 1;
    if (root && may_have_children(*root)) {
      UCP_RETURN_IF_ERROR(open(root.get()));
      while (!frames.empty()) {
        Frame& f = frames.back();
        if (f.next == f.children.size()) {
          Info& fi = info[f.v];
          fi.done = true;
          fi.expanded = f.expanded;
          const std::uint64_t e = f.expanded;
          frames.pop_back();
          if (frames.empty()) {
            total = e;
          } else {
            frames.back().expanded = add(frames.back().expanded, e);
          }
          continue;
        }
        const Value* c = f.children[f.next++];
        if (!may_have_children(*c)) {
          f.expanded = add(f.expanded, 1);
          continue;
        }
        auto it = info.find(c);
        if (it != info.end()) {
          if (!it->second.done)
            return base::data_loss("pickle value graph contains a reference cycle (through a " + c->type_name() +
                                   "); STOP at offset " + std::to_string(op_offset_));
          f.expanded = add(f.expanded, it->second.expanded);
          continue;
        }
        UCP_RETURN_IF_ERROR(open(c));
      }
    }
    if (total > cap)
      return base::data_loss("pickle expands to more than " + std::to_string(cap) +
                             " values when shared references are counted (STOP at offset " + std::to_string(op_offset_) +
                             ")");
    for (const auto& [v, i] : info) reachable_.insert(v);
    return Status();
  }

  // Empties every container that is not part of the accepted result. `containers_` keeps each of
  // them alive meanwhile, so dropping their children never destroys a container (no recursion);
  // afterwards they are destroyed childless.
  void dismantle_unreachable() {
    for (const ValuePtr& v : containers_) {
      if (reachable_.count(v.get())) continue;
      std::vector<ValuePtr> items = std::move(v->items);
      std::vector<std::pair<ValuePtr, ValuePtr>> entries = std::move(v->entries);
      Object object = std::move(v->object);
      Tensor tensor = std::move(v->tensor);
      ValuePtr state = std::move(v->state);
      v->items.clear();
      v->entries.clear();
    }
    stack_.clear();
    memo_.clear();
    containers_.clear();
  }

  std::span<const std::byte> data_;
  const PersistentLoad& persistent_load_;
  const PickleLimits& limits_;
  std::size_t pos_ = 0;
  std::size_t op_offset_ = 0;
  std::uint8_t op_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, ValuePtr> memo_;
  std::vector<ValuePtr> containers_;
  std::unordered_set<const Value*> reachable_;
  std::unordered_map<const Value*, std::uint32_t> depth_;  ///< Lower bounds, see depth_of().
  std::map<std::pair<const Storage*, base::DType>, std::shared_ptr<Storage>> typed_views_;
};

}  // namespace

Result<ValuePtr> read_pickle(std::span<const std::byte> data, const PersistentLoad& persistent_load,
                             const PickleLimits& limits) {
  Vm vm(data, persistent_load, limits);
  return vm.run();
}

}  // namespace ucp::format
