// cli::run_diff on hand-made safetensors pairs with differences known by construction, and on the
// DeepSpeed fixtures' zero_to_fp32 outputs, where the expected differences (counts, max errors,
// which tensors pass numpy.isclose at a tolerance) were computed with torch/numpy in Python.
#include "ucp/cli/diff.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "testutil/temp_dir.h"
#include "ucp/format/safetensors.h"
#include "ucp/format/state_dict.h"

namespace ucp::cli {
namespace {

using base::DType;
using base::StatusCode;
using ::testing::HasSubstr;
using ::testing::Not;
using testutil::IsOk;
using testutil::StatusIs;

struct T {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;
};

template <typename V>
T make(std::string name, DType dtype, std::vector<std::int64_t> shape, const std::vector<V>& values) {
  std::vector<std::byte> data(values.size() * sizeof(V));
  std::memcpy(data.data(), values.data(), data.size());
  return {std::move(name), dtype, std::move(shape), std::move(data)};
}
T f32(std::string name, const std::vector<float>& v) {
  return make(std::move(name), DType::kF32, {static_cast<std::int64_t>(v.size())}, v);
}

std::string fixture_ref(const std::string& config) {
  return testutil::deepspeed_fixture(config) + "/fp32_reference.pt";
}

struct Outcome {
  bool equal = false;
  std::string text;
};

class DiffTest : public ::testing::Test {
 protected:
  std::string write(const std::string& file, const std::vector<T>& tensors) {
    std::vector<format::SafetensorsBlob> blobs;
    for (const T& t : tensors) blobs.push_back({{t.name, t.dtype, t.shape}, t.data});
    const std::string path = (tmp_ / file).string();
    EXPECT_THAT(format::write_safetensors_file(path, blobs), IsOk());
    return path;
  }

  Outcome diff(const std::string& a, const std::string& b, double rtol = 0, double atol = 0, int max_report = 20) {
    DiffOptions o;
    o.a = a;
    o.b = b;
    o.rtol = rtol;
    o.atol = atol;
    o.max_report = max_report;
    std::ostringstream out;
    auto r = run_diff(o, out);
    EXPECT_THAT(r, IsOk());
    return {r.ok() && *r, out.str()};
  }

  nlohmann::json diff_json(const std::string& a, const std::string& b, double rtol = 0, double atol = 0) {
    DiffOptions o{a, b, rtol, atol, /*json=*/true, 20};
    std::ostringstream out;
    auto r = run_diff(o, out);
    EXPECT_THAT(r, IsOk());
    auto j = nlohmann::json::parse(out.str(), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << out.str();
    if (r.ok()) EXPECT_EQ(j["equal"].get<bool>(), *r);
    return j;
  }

  testutil::TempDir tmp_;
};

TEST_F(DiffTest, IdenticalInputsAreEqual) {
  const auto a = write("a.safetensors", {f32("w", {1, 2, 3}), make("n", DType::kI64, {2}, std::vector<std::int64_t>{4, 5})});
  const auto b = write("b.safetensors", {f32("w", {1, 2, 3}), make("n", DType::kI64, {2}, std::vector<std::int64_t>{4, 5})});
  const Outcome o = diff(a, b);
  EXPECT_TRUE(o.equal);
  EXPECT_EQ(o.text, "equal: 2 tensors (bitwise)\n");
}

TEST_F(DiffTest, MissingAndExtraKeys) {
  const auto a = write("a.safetensors", {f32("common", {1}), f32("only_a", {2})});
  const auto b = write("b.safetensors", {f32("common", {1}), f32("only_b1", {3}), f32("only_b2", {3})});
  const Outcome o = diff(a, b);
  EXPECT_FALSE(o.equal);
  EXPECT_THAT(o.text, HasSubstr("only in A: only_a (f32 [1])\n"));
  EXPECT_THAT(o.text, HasSubstr("only in B: only_b1 (f32 [1])\n"));
  EXPECT_THAT(o.text, HasSubstr("only in B: only_b2 (f32 [1])\n"));
  EXPECT_THAT(o.text, HasSubstr("DIFFERENT: 0 of 1 tensors differ (0 dtype, 0 shape, 0 values; bitwise), 3 missing "
                                "(1 only in A, 2 only in B)\n"));
  const auto j = diff_json(a, b);
  EXPECT_EQ(j["only_in_a"], 1);
  EXPECT_EQ(j["only_in_b"], 2);
  EXPECT_EQ(j["differences"].size(), 3u);
}

TEST_F(DiffTest, DTypeAndShapeMismatches) {
  const std::vector<std::uint16_t> half_ones = {0x3C00, 0x3C00};  // f16 1.0
  const auto a = write("a.safetensors", {f32("dt", {1, 1}), f32("sh", {1, 2, 3, 4}), make("ints", DType::kI32, {2}, std::vector<std::int32_t>{1, 1})});
  const auto b = write("b.safetensors", {make("dt", DType::kF16, {2}, half_ones), make("sh", DType::kF32, {2, 2}, std::vector<float>{1, 2, 3, 4}),
                                         make("ints", DType::kI64, {2}, std::vector<std::int64_t>{1, 1})});
  const Outcome o = diff(a, b);
  EXPECT_FALSE(o.equal);
  EXPECT_THAT(o.text, HasSubstr("dtype differs: dt: f32 in A, f16 in B\n"));
  EXPECT_THAT(o.text, HasSubstr("dtype differs: ints: i32 in A, i64 in B\n"));
  EXPECT_THAT(o.text, HasSubstr("shape differs: sh: [4] in A, [2, 2] in B\n"));
  EXPECT_THAT(o.text, HasSubstr("DIFFERENT: 3 of 3 tensors differ (2 dtype, 1 shape, 0 values; bitwise), 0 missing"));

  // With a tolerance the float pair is also compared by value: equal values, still a difference.
  const Outcome t = diff(a, b, 0, 1e-3);
  EXPECT_FALSE(t.equal);
  EXPECT_THAT(t.text, HasSubstr("dtype differs: dt: f32 in A, f16 in B\n"));
  EXPECT_THAT(t.text, Not(HasSubstr("values differ: dt")));
  const auto b2 = write("b2.safetensors", {make("dt", DType::kF16, {2}, std::vector<std::uint16_t>{0x3C00, 0x4000})});
  const auto a2 = write("a2.safetensors", {f32("dt", {1, 1})});
  const Outcome v = diff(a2, b2, 0, 1e-3);
  EXPECT_THAT(v.text, HasSubstr("values differ: dt (f32 [2] vs f16): 1 of 2 elements differ, max abs error 1, max rel error 0.5"));
}

TEST_F(DiffTest, OneUlpIsADifferenceBitwiseButNotWithinRtol) {
  const float two_plus_ulp = std::nextafter(2.0f, 3.0f);  // 2 + 2^-22
  const auto a = write("a.safetensors", {f32("w", {1, two_plus_ulp, 3})});
  const auto b = write("b.safetensors", {f32("w", {1, 2, 3})});
  const Outcome exact = diff(a, b);
  EXPECT_FALSE(exact.equal);
  std::ostringstream expected;
  expected.precision(9);
  expected << "values differ: w (f32 [3]): 1 of 3 elements differ, max abs error " << std::ldexp(1.0, -22)
           << ", max rel error " << std::ldexp(1.0, -23) << ", first at flat index 1\n";
  EXPECT_THAT(exact.text, HasSubstr(expected.str()));
  EXPECT_THAT(exact.text, HasSubstr("DIFFERENT: 1 of 1 tensors differ (0 dtype, 0 shape, 1 values; bitwise), 0 missing"));
  const Outcome tol = diff(a, b, 1e-6);
  EXPECT_TRUE(tol.equal) << tol.text;
  EXPECT_EQ(tol.text, "equal: 1 tensors (rtol=1e-06, atol=0)\n");
  EXPECT_FALSE(diff(a, b, 1e-8).equal);  // 2^-23 relative is above 1e-8
}

TEST_F(DiffTest, ToleranceIsRelativeToB) {
  // |a - b| <= atol + rtol * |b|: 1 <= 0.75 * 1 fails, 1 <= 0.75 * 2 holds.
  const auto a = write("a.safetensors", {f32("w", {2})});
  const auto b = write("b.safetensors", {f32("w", {1})});
  EXPECT_FALSE(diff(a, b, 0.75).equal);
  EXPECT_TRUE(diff(b, a, 0.75).equal);
  EXPECT_TRUE(diff(a, b, 0.5, 0.5).equal);  // 1 <= 0.5 + 0.5 * 1: the bound itself is accepted
}

TEST_F(DiffTest, NaNZeroAndInfinity) {
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  const float other_nan = std::bit_cast<float>(0x7FC00001u);
  const float inf = std::numeric_limits<float>::infinity();
  const auto a = write("a.safetensors", {f32("same_nan", {qnan, 1}), f32("payload", {qnan}), f32("zero", {0.0f}),
                                         f32("inf", {inf}), f32("nan_vs_num", {qnan, 5}), f32("inf_sign", {inf}),
                                         f32("num_vs_inf", {1})});
  const auto b = write("b.safetensors", {f32("same_nan", {qnan, 1}), f32("payload", {other_nan}), f32("zero", {-0.0f}),
                                         f32("inf", {inf}), f32("nan_vs_num", {1, 5}), f32("inf_sign", {-inf}),
                                         f32("num_vs_inf", {inf})});
  const Outcome exact = diff(a, b);
  EXPECT_THAT(exact.text, Not(HasSubstr("same_nan")));  // identical bits, NaN included
  EXPECT_THAT(exact.text, Not(HasSubstr(": inf (")));
  EXPECT_THAT(exact.text, HasSubstr("values differ: payload (f32 [1]): 1 of 1 elements differ"));
  EXPECT_THAT(exact.text, HasSubstr("values differ: zero (f32 [1]): 1 of 1 elements differ, max abs error 0, max rel error 0"));
  EXPECT_THAT(exact.text, HasSubstr("values differ: nan_vs_num (f32 [2]): 1 of 2 elements differ, max abs error 0, "
                                    "max rel error 0, 1 NaN on one side only, first at flat index 0"));
  EXPECT_THAT(exact.text, HasSubstr("values differ: inf_sign (f32 [1]): 1 of 1 elements differ, max abs error inf, max rel error inf"));
  EXPECT_THAT(exact.text, HasSubstr("values differ: num_vs_inf (f32 [1]): 1 of 1 elements differ, max abs error inf, max rel error inf"));
  EXPECT_THAT(exact.text, HasSubstr("DIFFERENT: 5 of 7 tensors differ"));
  // A tolerance forgives payload and zero sign, never NaN against a number or an infinity against
  // anything but itself (numpy.isclose), however large the tolerance.
  const Outcome tol = diff(a, b, 1e9, 1e9);
  EXPECT_FALSE(tol.equal);
  EXPECT_THAT(tol.text, HasSubstr("values differ: nan_vs_num"));
  EXPECT_THAT(tol.text, HasSubstr("values differ: inf_sign"));
  EXPECT_THAT(tol.text, HasSubstr("values differ: num_vs_inf"));
  EXPECT_THAT(tol.text, HasSubstr("DIFFERENT: 3 of 7 tensors differ"));
  const auto j = diff_json(a, b);
  bool found = false;
  for (const auto& d : j["differences"]) {
    if (d["name"] == "inf_sign") {
      found = true;
      EXPECT_EQ(d["max_abs_error"], "inf");
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(DiffTest, IntegersAndBoolsAreAlwaysExact) {
  const auto a = write("a.safetensors", {make("i", DType::kI64, {3}, std::vector<std::int64_t>{1, 2, 3}),
                                         make("m", DType::kBool, {2}, std::vector<std::uint8_t>{1, 0})});
  const auto b = write("b.safetensors", {make("i", DType::kI64, {3}, std::vector<std::int64_t>{1, 2, 4}),
                                         make("m", DType::kBool, {2}, std::vector<std::uint8_t>{1, 1})});
  const Outcome o = diff(a, b, 100, 100);
  EXPECT_FALSE(o.equal);
  EXPECT_THAT(o.text, HasSubstr("values differ: i (i64 [3]): 1 of 3 elements differ, first at flat index 2\n"));
  EXPECT_THAT(o.text, HasSubstr("values differ: m (bool [2]): 1 of 2 elements differ, first at flat index 1\n"));
}

TEST_F(DiffTest, LargeTensorsAcrossChunks) {
  // More elements than one comparison chunk; differences in two different chunks.
  std::vector<float> va(100000), vb(100000);
  for (std::size_t i = 0; i < va.size(); ++i) va[i] = vb[i] = static_cast<float>(i % 251);
  vb[5] += 0.5f;
  vb[70000] += 0.25f;
  const auto a = write("a.safetensors", {f32("w", va)});
  const auto b = write("b.safetensors", {f32("w", vb)});
  const Outcome o = diff(a, b);
  EXPECT_THAT(o.text, HasSubstr("2 of 100000 elements differ, max abs error 0.5"));
  EXPECT_THAT(o.text, HasSubstr("first at flat index 5"));
  EXPECT_TRUE(diff(a, b, 0, 0.5).equal);
}

TEST_F(DiffTest, MaxReportLimitsLines) {
  std::vector<T> a, b;
  for (int i = 0; i < 5; ++i) {
    a.push_back(f32("w" + std::to_string(i), {1}));
    b.push_back(f32("w" + std::to_string(i), {2}));
  }
  const auto pa = write("a.safetensors", a);
  const auto pb = write("b.safetensors", b);
  const Outcome o = diff(pa, pb, 0, 0, 2);
  EXPECT_THAT(o.text, HasSubstr("... and 3 more differences"));
  EXPECT_EQ(std::count(o.text.begin(), o.text.end(), '\n'), 4);
  const Outcome all = diff(pa, pb, 0, 0, -1);
  EXPECT_EQ(std::count(all.text.begin(), all.text.end(), '\n'), 6);
}

TEST_F(DiffTest, FixtureReferencesOfZeroTwoAndZeroThreeAreBitwiseEqual) {
  // Same model trained at ZeRO-2 and ZeRO-3 on one rank: torch.equal on every tensor (checked in Python).
  const Outcome o = diff(fixture_ref("mlp_z2_fp32_ws1"), fixture_ref("mlp_z3_fp32_ws1"));
  EXPECT_TRUE(o.equal) << o.text;
  EXPECT_EQ(o.text, "equal: 13 tensors (bitwise)\n");
}

TEST_F(DiffTest, FixtureReferencesAtDifferentWorldSizesDifferInTheLastBits) {
  // Values computed with torch from the two files: per tensor, differing elements, max |a-b|,
  // max |a-b|/|b|, first differing index.
  const std::string a = fixture_ref("mlp_z2_fp32_ws1");
  const std::string b = fixture_ref("mlp_z2_fp32_ws2");
  const Outcome o = diff(a, b);
  EXPECT_FALSE(o.equal);
  EXPECT_THAT(o.text, HasSubstr("values differ: fc1.weight (f32 [7, 13]): 10 of 91 elements differ, max abs error "
                                "1.49011612e-08, max rel error 5.77774016e-07, first at flat index 3\n"));
  EXPECT_THAT(o.text, HasSubstr("values differ: fc2.weight (f32 [17, 7]): 2 of 119 elements differ, max abs error "
                                "3.7252903e-09, max rel error 9.2564369e-08, first at flat index 18\n"));
  EXPECT_THAT(o.text, HasSubstr("values differ: out.weight (f32 [13, 17]): 19 of 221 elements differ, max abs error "
                                "1.49011612e-08, max rel error 2.32474746e-06, first at flat index 13\n"));
  EXPECT_THAT(o.text, HasSubstr("values differ: out.bias (f32 [13]): 3 of 13 elements differ, max abs error "
                                "7.4505806e-09, max rel error 1.11402441e-07, first at flat index 4\n"));
  EXPECT_THAT(o.text, HasSubstr("values differ: head.weight (f32 [7, 13]): 10 of 91 elements differ"));
  EXPECT_THAT(o.text, HasSubstr("DIFFERENT: 5 of 13 tensors differ (0 dtype, 0 shape, 5 values; bitwise), 0 missing"));
  // numpy.isclose(a, b, rtol=5e-7, atol=0) is False for 1, 2 and 1 elements of these three.
  const Outcome r = diff(a, b, 5e-7);
  EXPECT_THAT(r.text, HasSubstr("values differ: fc1.weight (f32 [7, 13]): 1 of 91"));
  EXPECT_THAT(r.text, HasSubstr("values differ: out.weight (f32 [13, 17]): 2 of 221"));
  EXPECT_THAT(r.text, HasSubstr("values differ: head.weight (f32 [7, 13]): 1 of 91"));
  EXPECT_THAT(r.text, HasSubstr("DIFFERENT: 3 of 13 tensors differ"));
  // numpy.allclose(..., rtol=0, atol=3e-8) holds for all of them.
  EXPECT_TRUE(diff(a, b, 0, 3e-8).equal);
}

TEST_F(DiffTest, Fp32ReferenceDiffersFromTheFp16Run) {
  // zero_to_fp32 keeps the frozen parameters of a fp16 run in fp16; everything trained differs by
  // up to ~1.7e-3 (torch), running_mean and calls are identical.
  const std::string a = fixture_ref("mlp_z2_fp32_ws1");
  const std::string b = fixture_ref("mlp_z2_fp16_ws1");
  const Outcome o = diff(a, b);
  EXPECT_FALSE(o.equal);
  EXPECT_THAT(o.text, HasSubstr("dtype differs: frozen.weight: f32 in A, f16 in B\n"));
  EXPECT_THAT(o.text, HasSubstr("dtype differs: frozen.bias: f32 in A, f16 in B\n"));
  EXPECT_THAT(o.text, HasSubstr("DIFFERENT: 11 of 13 tensors differ (2 dtype, 0 shape, 9 values; bitwise), 0 missing"));
  // Within atol 1e-2 (numpy.allclose holds for every tensor) only the dtype mismatches remain.
  const Outcome t = diff(a, b, 0, 1e-2, -1);
  EXPECT_FALSE(t.equal);
  EXPECT_THAT(t.text, HasSubstr("DIFFERENT: 2 of 13 tensors differ (2 dtype, 0 shape, 0 values; rtol=0, atol=0.01)"));
  EXPECT_THAT(t.text, Not(HasSubstr("values differ")));
  // At atol 1e-4 the frozen values (max error 1.19e-4 and 9.4e-5) split: weight differs, bias not.
  const Outcome f = diff(a, b, 0, 1e-4, -1);
  EXPECT_THAT(f.text, HasSubstr("values differ: frozen.weight (f32 [17, 13] vs f16)"));
  EXPECT_THAT(f.text, Not(HasSubstr("values differ: frozen.bias")));

  const auto j = diff_json(a, b);
  EXPECT_EQ(j["common_tensors"], 13);
  EXPECT_EQ(j["differing_tensors"], 11);
  EXPECT_EQ(j["dtype_mismatches"], 2);
  EXPECT_EQ(j["value_mismatches"], 9);
  EXPECT_EQ(j["mode"], "bitwise");
  EXPECT_EQ(j["differences"][0]["name"], "frozen.weight");
  EXPECT_EQ(j["differences"][0]["kind"], "dtype");
}

TEST_F(DiffTest, FormatsMixFreely) {
  // The same tensors as safetensors and as torch .pt compare equal.
  const std::string pt = fixture_ref("mlp_z2_fp32_ws1");
  auto sd = format::StateDict::open(pt);
  ASSERT_THAT(sd, IsOk());
  std::vector<format::SafetensorsBlob> blobs;
  for (const auto& t : sd->tensors()) blobs.push_back({{t.name, t.dtype, t.shape}, t.bytes});
  const std::string st = (tmp_ / "model.safetensors").string();
  ASSERT_THAT(format::write_safetensors_file(st, blobs), IsOk());
  EXPECT_TRUE(diff(pt, st).equal);
  EXPECT_TRUE(diff(st, tmp_.path().string()).equal);  // the directory holding model.safetensors
}

TEST_F(DiffTest, Errors) {
  const auto a = write("a.safetensors", {f32("w", {1})});
  DiffOptions o{a, (tmp_ / "missing.safetensors").string(), 0, 0, false, 20};
  std::ostringstream out;
  EXPECT_THAT(run_diff(o, out), StatusIs(StatusCode::kNotFound, HasSubstr("B: ")));
  o.b = a;
  o.rtol = -1;
  EXPECT_THAT(run_diff(o, out), StatusIs(StatusCode::kInvalidArgument, HasSubstr("--rtol")));
  o.rtol = 0;
  o.atol = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(run_diff(o, out), StatusIs(StatusCode::kInvalidArgument, HasSubstr("--atol")));
}

}  // namespace
}  // namespace ucp::cli
