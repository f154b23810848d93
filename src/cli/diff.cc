#include "ucp/cli/diff.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "ucp/base/convert.h"
#include "ucp/base/dtype.h"
#include "ucp/format/state_dict.h"
#include "ucp/format/value.h"

namespace ucp::cli {
namespace {

using base::DType;
using format::StateDict;
using format::StateDictTensor;
using Json = nlohmann::ordered_json;

// Elements converted to float64 at a time: bounded memory whatever the tensor size.
constexpr std::size_t kChunk = 16384;

/// Convertible to float64 by base::convert_elements.
bool is_real_float(DType t) { return t == DType::kF64 || t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

/// The real type a complex type is made of (two per element); nullopt for everything else.
std::optional<DType> complex_part(DType t) {
  if (t == DType::kC64) return DType::kF32;
  if (t == DType::kC128) return DType::kF64;
  return std::nullopt;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string describe(const StateDictTensor& t) {
  return std::string(base::dtype_name(t.dtype)) + " " + shape_string(t.shape);
}

std::string number(double v) {
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

Json json_number(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

struct ValueStats {
  std::uint64_t numel = 0;
  std::uint64_t differing = 0;
  std::uint64_t nan_mismatches = 0;  ///< Elements (or complex parts) NaN on one side only.
  bool floating = false;             ///< max_abs / max_rel are meaningful.
  double max_abs = 0;
  double max_rel = 0;
  std::optional<std::uint64_t> first_index;

  void differs_at(std::uint64_t element) {
    // Complex parts arrive in order, so one element differing in both parts is counted once.
    if (first_index && last_ == element) return;
    if (!first_index) first_index = element;
    last_ = element;
    ++differing;
  }

 private:
  std::uint64_t last_ = 0;
};

struct Tolerance {
  double rtol = 0;
  double atol = 0;
  bool exact() const { return rtol == 0 && atol == 0; }
};

// Floating values (possibly of two dtypes) compared in float64, kChunk at a time. `parts` is 2 for
// complex (each element is two reals, compared part by part), else 1.
void compare_floats(const StateDictTensor& a, DType ra, const StateDictTensor& b, DType rb, int parts,
                    const Tolerance& tol, ValueStats& st) {
  const std::size_t sa = base::dtype_size(ra);
  const std::size_t sb = base::dtype_size(rb);
  const std::uint64_t n = a.bytes.size() / sa;  // reals; equals b's count (shapes match)
  const bool same_type = ra == rb;
  std::vector<double> xa(kChunk), xb(kChunk);
  for (std::uint64_t off = 0; off < n; off += kChunk) {
    const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, n - off));
    const std::byte* pa = a.bytes.data() + off * sa;
    const std::byte* pb = b.bytes.data() + off * sb;
    // Bitwise-equal chunks are equal under every mode; most chunks of most diffs are.
    if (same_type && std::memcmp(pa, pb, len * sa) == 0) continue;
    base::convert_elements(ra, pa, DType::kF64, reinterpret_cast<std::byte*>(xa.data()), len);
    base::convert_elements(rb, pb, DType::kF64, reinterpret_cast<std::byte*>(xb.data()), len);
    for (std::size_t i = 0; i < len; ++i) {
      const double x = xa[i];
      const double y = xb[i];
      const bool nx = std::isnan(x);
      const bool ny = std::isnan(y);
      bool differ;
      if (tol.exact()) {
        differ = std::memcmp(pa + i * sa, pb + i * sb, sa) != 0;
      } else {
        // As numpy.isclose: NaN matches only NaN, an infinity only itself (the bound would be
        // infinite too when b is), everything else |a - b| <= atol + rtol * |b|.
        differ = !(x == y || (nx && ny) ||
                   (std::isfinite(x) && std::isfinite(y) && std::fabs(x - y) <= tol.atol + tol.rtol * std::fabs(y)));
      }
      if (!differ) continue;
      st.differs_at((off + i) / static_cast<std::uint64_t>(parts));
      if (nx != ny) {
        ++st.nan_mismatches;
        continue;
      }
      if (nx) continue;  // both NaN, different bits (bitwise mode)
      const double abs_err = x == y ? 0.0 : std::fabs(x - y);  // x == y: +0/-0, or equal infinities
      // Relative to |b| (the allclose convention); infinite when b is 0 or the gap is infinite.
      const double rel_err = abs_err == 0                       ? 0.0
                             : (y == 0 || std::isinf(abs_err)) ? std::numeric_limits<double>::infinity()
                                                               : abs_err / std::fabs(y);
      st.max_abs = std::max(st.max_abs, abs_err);
      st.max_rel = std::max(st.max_rel, rel_err);
    }
  }
}

// Same dtype, compared byte for byte per element.
void compare_bytes(const StateDictTensor& a, const StateDictTensor& b, ValueStats& st) {
  const std::size_t es = base::dtype_size(a.dtype);
  const std::uint64_t n = a.bytes.size() / es;
  for (std::uint64_t off = 0; off < n; off += kChunk) {
    const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, n - off));
    const std::byte* pa = a.bytes.data() + off * es;
    const std::byte* pb = b.bytes.data() + off * es;
    if (std::memcmp(pa, pb, len * es) == 0) continue;
    for (std::size_t i = 0; i < len; ++i)
      if (std::memcmp(pa + i * es, pb + i * es, es) != 0) st.differs_at(off + i);
  }
}

/// Values of two tensors of equal shape; dtypes equal, or both real floating (tolerance mode).
ValueStats compare_values(const StateDictTensor& a, const StateDictTensor& b, const Tolerance& tol) {
  ValueStats st;
  st.numel = a.numel();
  if (is_real_float(a.dtype) && is_real_float(b.dtype)) {
    st.floating = true;
    compare_floats(a, a.dtype, b, b.dtype, 1, tol, st);
  } else if (auto part = complex_part(a.dtype); part && a.dtype == b.dtype) {
    st.floating = true;
    compare_floats(a, *part, b, *part, 2, tol, st);
  } else {
    compare_bytes(a, b, st);  // integers, bool, and float8 (no float64 conversion): always exact
  }
  return st;
}

struct Difference {
  enum class Kind { kOnlyInA, kOnlyInB, kDType, kShape, kValues };
  Kind kind;
  const StateDictTensor* a = nullptr;
  const StateDictTensor* b = nullptr;
  ValueStats values;
};

std::string render_line(const Difference& d) {
  switch (d.kind) {
    case Difference::Kind::kOnlyInA:
      return "only in A: " + d.a->name + " (" + describe(*d.a) + ")";
    case Difference::Kind::kOnlyInB:
      return "only in B: " + d.b->name + " (" + describe(*d.b) + ")";
    case Difference::Kind::kDType:
      return "dtype differs: " + d.a->name + ": " + std::string(base::dtype_name(d.a->dtype)) + " in A, " +
             std::string(base::dtype_name(d.b->dtype)) + " in B";
    case Difference::Kind::kShape:
      return "shape differs: " + d.a->name + ": " + shape_string(d.a->shape) + " in A, " + shape_string(d.b->shape) +
             " in B";
    case Difference::Kind::kValues:
      break;
  }
  const ValueStats& v = d.values;
  std::string s = "values differ: " + d.a->name + " (" + describe(*d.a) +
                  (d.a->dtype != d.b->dtype ? " vs " + std::string(base::dtype_name(d.b->dtype)) : "") + "): " +
                  std::to_string(v.differing) + " of " + std::to_string(v.numel) + " elements differ";
  if (v.floating) s += ", max abs error " + number(v.max_abs) + ", max rel error " + number(v.max_rel);
  if (v.nan_mismatches) s += ", " + std::to_string(v.nan_mismatches) + " NaN on one side only";
  if (v.first_index) s += ", first at flat index " + std::to_string(*v.first_index);
  return s;
}

Json render_json(const Difference& d) {
  static constexpr const char* kKinds[] = {"only_in_a", "only_in_b", "dtype", "shape", "values"};
  const StateDictTensor* t = d.a ? d.a : d.b;
  Json j;
  j["name"] = t->name;
  j["kind"] = kKinds[static_cast<int>(d.kind)];
  if (d.a) {
    j["a_dtype"] = base::dtype_name(d.a->dtype);
    j["a_shape"] = d.a->shape;
  }
  if (d.b) {
    j["b_dtype"] = base::dtype_name(d.b->dtype);
    j["b_shape"] = d.b->shape;
  }
  if (d.kind == Difference::Kind::kValues) {
    const ValueStats& v = d.values;
    j["numel"] = v.numel;
    j["differing"] = v.differing;
    j["nan_mismatches"] = v.nan_mismatches;
    if (v.floating) {
      j["max_abs_error"] = json_number(v.max_abs);
      j["max_rel_error"] = json_number(v.max_rel);
    }
    if (v.first_index) j["first_index"] = *v.first_index;
  }
  return j;
}

}  // namespace

namespace {

// A non-tensor value (a DCP non-tensor item, a torch file's step counter) present on one side
// only, or different: `what` says how ("17 in A, 18 in B", or the first differing path).
struct ValueDifference {
  enum class Kind { kOnlyInA, kOnlyInB, kDiffers };
  Kind kind;
  std::string name;
  std::string what;
};

// Every difference between A and B, in report order, with counts.
struct Comparison {
  std::vector<Difference> diffs;
  std::vector<ValueDifference> value_diffs;
  std::size_t common = 0, only_a = 0, only_b = 0, dtype_n = 0, shape_n = 0, values_n = 0, differing_tensors = 0;
  std::size_t common_values = 0;
  bool values_compared = false;  ///< Both sides can hold non-tensor values.
  bool equal() const { return diffs.empty() && value_diffs.empty(); }
};

// Non-tensor values are compared only when both inputs can hold them (a safetensors file cannot:
// comparing a DCP with one is about its tensors). Equal means equal as Python values, tensors
// inside included, floats bitwise.
void compare_non_tensors(const StateDict& a, const StateDict& b, Comparison& c) {
  c.values_compared = a.holds_values() && b.holds_values();
  if (!c.values_compared) return;
  for (const format::StateDictValue& va : a.values()) {
    const format::StateDictValue* vb = b.find_value(va.name);
    if (!vb) {
      c.value_diffs.push_back({ValueDifference::Kind::kOnlyInA, va.name, va.value ? va.value->type_name() : "None"});
      continue;
    }
    ++c.common_values;
    if (!format::values_equal(va.value, vb->value)) {
      std::string where = format::first_difference(va.value, vb->value);
      c.value_diffs.push_back({ValueDifference::Kind::kDiffers, va.name, where});
    }
  }
  for (const format::StateDictValue& vb : b.values())
    if (!a.find_value(vb.name))
      c.value_diffs.push_back({ValueDifference::Kind::kOnlyInB, vb.name, vb.value ? vb.value->type_name() : "None"});
}

std::string render_value_line(const ValueDifference& d) {
  switch (d.kind) {
    case ValueDifference::Kind::kOnlyInA:
      return "only in A: " + d.name + " (non-tensor " + d.what + ")";
    case ValueDifference::Kind::kOnlyInB:
      return "only in B: " + d.name + " (non-tensor " + d.what + ")";
    case ValueDifference::Kind::kDiffers:
      break;
  }
  return "non-tensor value differs: " + d.name + (d.what.empty() ? "" : ": " + d.what);
}

Comparison compare_state_dicts(const StateDict& a, const StateDict& b, const Tolerance& tol) {
  Comparison c;
  for (const StateDictTensor& ta : a.tensors()) {
    const StateDictTensor* tb = b.find(ta.name);
    if (!tb) {
      c.diffs.push_back({Difference::Kind::kOnlyInA, &ta, nullptr, {}});
      ++c.only_a;
      continue;
    }
    ++c.common;
    bool differs = false;
    bool compare = true;
    if (ta.dtype != tb->dtype) {
      c.diffs.push_back({Difference::Kind::kDType, &ta, tb, {}});
      ++c.dtype_n;
      differs = true;
      // Bitwise equality across dtypes is meaningless; with a tolerance, two real float types are
      // still compared by value so the report says how far apart they are.
      compare = !tol.exact() && is_real_float(ta.dtype) && is_real_float(tb->dtype);
    }
    if (ta.shape != tb->shape) {
      c.diffs.push_back({Difference::Kind::kShape, &ta, tb, {}});
      ++c.shape_n;
      differs = true;
      compare = false;
    }
    if (compare) {
      ValueStats st = compare_values(ta, *tb, tol);
      if (st.differing != 0) {
        c.diffs.push_back({Difference::Kind::kValues, &ta, tb, st});
        ++c.values_n;
        differs = true;
      }
    }
    if (differs) ++c.differing_tensors;
  }
  for (const StateDictTensor& tb : b.tensors()) {
    if (!a.find(tb.name)) {
      c.diffs.push_back({Difference::Kind::kOnlyInB, nullptr, &tb, {}});
      ++c.only_b;
    }
  }
  compare_non_tensors(a, b, c);
  return c;
}

void report_json(const DiffOptions& options, const StateDict& a, const StateDict& b, const Tolerance& tol,
                 const Comparison& c, std::ostream& out) {
  Json j;
  j["equal"] = c.equal();
  j["a"] = options.a;
  j["b"] = options.b;
  j["mode"] = tol.exact() ? "bitwise" : "tolerance";
  j["rtol"] = tol.rtol;
  j["atol"] = tol.atol;
  j["a_format"] = a.format();
  j["b_format"] = b.format();
  j["a_tensors"] = a.size();
  j["b_tensors"] = b.size();
  j["common_tensors"] = c.common;
  j["differing_tensors"] = c.differing_tensors;
  j["only_in_a"] = c.only_a;
  j["only_in_b"] = c.only_b;
  j["dtype_mismatches"] = c.dtype_n;
  j["shape_mismatches"] = c.shape_n;
  j["value_mismatches"] = c.values_n;
  j["a_skipped_non_tensors"] = a.skipped_non_tensors();
  j["b_skipped_non_tensors"] = b.skipped_non_tensors();
  j["notes"] = {{"a", a.notes()}, {"b", b.notes()}};
  Json list = Json::array();
  for (const Difference& d : c.diffs) list.push_back(render_json(d));
  j["differences"] = std::move(list);
  if (c.values_compared) {
    static constexpr const char* kKinds[] = {"only_in_a", "only_in_b", "differs"};
    Json values = Json::array();
    for (const ValueDifference& d : c.value_diffs)
      values.push_back({{"name", d.name}, {"kind", kKinds[static_cast<int>(d.kind)]}, {"detail", d.what}});
    j["common_values"] = c.common_values;
    j["value_differences"] = std::move(values);
  }
  out << j.dump(2) << "\n";
}

void report_text(const DiffOptions& options, const StateDict& a, const StateDict& b, const Tolerance& tol,
                 const Comparison& c, std::ostream& out) {
  const std::string mode = tol.exact() ? "bitwise" : "rtol=" + number(tol.rtol) + ", atol=" + number(tol.atol);
  for (const std::string& n : a.notes()) out << "note: A: " << n << "\n";
  for (const std::string& n : b.notes()) out << "note: B: " << n << "\n";
  const std::size_t limit =
      options.max_report < 0 ? c.diffs.size() : std::min(c.diffs.size(), static_cast<std::size_t>(options.max_report));
  for (std::size_t i = 0; i < limit; ++i) out << render_line(c.diffs[i]) << "\n";
  if (limit < c.diffs.size()) out << "... and " << c.diffs.size() - limit << " more differences (--max-report)\n";
  const std::size_t value_limit = options.max_report < 0 ? c.value_diffs.size()
                                                         : std::min(c.value_diffs.size(), static_cast<std::size_t>(options.max_report));
  for (std::size_t i = 0; i < value_limit; ++i) out << render_value_line(c.value_diffs[i]) << "\n";
  if (value_limit < c.value_diffs.size())
    out << "... and " << c.value_diffs.size() - value_limit << " more non-tensor differences (--max-report)\n";
  const std::string values = c.common_values > 0 ? ", " + std::to_string(c.common_values) + " non-tensor values" : "";
  if (c.equal()) {
    out << "equal: " << c.common << " tensors" << values << " (" << mode << ")\n";
  } else if (c.diffs.empty()) {
    out << "DIFFERENT: " << c.value_diffs.size() << " non-tensor value difference(s); " << c.common << " tensors equal ("
        << mode << ")\n";
  } else {
    out << "DIFFERENT: " << c.differing_tensors << " of " << c.common << " tensors differ (" << c.dtype_n << " dtype, "
        << c.shape_n << " shape, " << c.values_n << " values; " << mode << "), " << c.only_a + c.only_b << " missing ("
        << c.only_a << " only in A, " << c.only_b << " only in B)"
        << (c.value_diffs.empty() ? "" : "; " + std::to_string(c.value_diffs.size()) + " non-tensor value difference(s)") << "\n";
  }
}

}  // namespace

base::Result<bool> run_diff(const DiffOptions& options, std::ostream& out) {
  if (!(options.rtol >= 0) || !(options.atol >= 0) || !std::isfinite(options.rtol) || !std::isfinite(options.atol))
    return base::invalid_argument("--rtol and --atol must be finite and non-negative, got " + number(options.rtol) +
                                  " and " + number(options.atol));
  const Tolerance tol{options.rtol, options.atol};
  UCP_ASSIGN_OR_RETURN(StateDict a, StateDict::open(options.a).annotate("A"));
  UCP_ASSIGN_OR_RETURN(StateDict b, StateDict::open(options.b).annotate("B"));
  const Comparison c = compare_state_dicts(a, b, tol);
  if (options.json) report_json(options, a, b, tol, c, out);
  else report_text(options, a, b, tol, c, out);
  return c.equal();
}

}  // namespace ucp::cli
