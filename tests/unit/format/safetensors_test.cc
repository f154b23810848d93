// safetensors reader/writer: exact bytes against the reference implementation's own test vectors,
// round trips of every dtype, the reference ordering, and each corruption the reader must reject.
// The Python oracle (tests/oracle/test_safetensors_numpy.py) checks the same against an
// independent implementation.
#include "ucp/format/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ucp/base/checked_math.h"
#include "testutil/temp_dir.h"

namespace ucp::format {
namespace {

using base::DType;
using base::StatusCode;

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::string le64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

/// A file image: length prefix + `header` + `buffer_size` bytes of data (0, 1, 2, ...).
std::string image(std::string_view header, std::size_t buffer_size) {
  std::string out = le64(header.size()) + std::string(header);
  for (std::size_t i = 0; i < buffer_size; ++i) out.push_back(static_cast<char>(i & 0xff));
  return out;
}

base::Result<SafetensorsFile> parse_image(const std::string& img, std::string name = "mem.safetensors") {
  return SafetensorsFile::parse(MappedFile::from_bytes(std::move(name), bytes_of(img)));
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 37 + seed * 11 + 5) & 0xff);
  return out;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  testutil::TempDir dir_;
};

// Byte-exact output of the reference serializer for one F32 tensor, no metadata
// (safetensors tensor.rs test_serialization): the header needs no padding (N = 64).
TEST(SafetensorsPlanTest, MatchesReferenceBytesWithoutPadding) {
  const SafetensorsTensorSpec spec{"attn.0", DType::kF32, {1, 2, 3}};
  auto layout = plan_safetensors(std::span(&spec, 1), {});
  ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  const std::string json = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(json.size(), 64u);
  EXPECT_EQ(layout->header, le64(64) + json);
  ASSERT_EQ(layout->placements.size(), 1u);
  EXPECT_EQ(layout->placements[0].file_offset, 72u);
  EXPECT_EQ(layout->placements[0].size, 24u);
  EXPECT_EQ(layout->total_size, 96u);
}

// Reference test_serialization_forced_alignement: 65-byte JSON padded with 7 spaces to N = 72.
TEST(SafetensorsPlanTest, MatchesReferenceBytesWithPadding) {
  const SafetensorsTensorSpec spec{"attn0", DType::kF32, {1, 1, 2, 3}};
  auto layout = plan_safetensors(std::span(&spec, 1), {});
  ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  const std::string json = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
  EXPECT_EQ(layout->header, le64(72) + json + std::string(7, ' '));
}

// Reference test_empty: no tensors -> "{}" padded to 8; with metadata it comes first.
TEST(SafetensorsPlanTest, MatchesReferenceBytesForEmptyFile) {
  auto empty = plan_safetensors({}, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->header, le64(8) + "{}      ");
  auto with_meta = plan_safetensors({}, {{"framework", "pt"}});
  ASSERT_TRUE(with_meta.ok());
  EXPECT_EQ(with_meta->header, le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST(SafetensorsPlanTest, DefaultMetadataIsFormatPt) {
  const SafetensorsTensorSpec spec{"w", DType::kU8, {1}};
  auto layout = plan_safetensors(std::span(&spec, 1));
  ASSERT_TRUE(layout.ok());
  const std::string json = R"({"__metadata__":{"format":"pt"},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  EXPECT_EQ(layout->header.substr(8), json + std::string((8 - json.size() % 8) % 8, ' '));
}

// Reference order: descending position in its Dtype enum (increasing alignment), then name; the
// expected order below is written out by hand from that enum.
TEST(SafetensorsPlanTest, OrdersByReferenceDtypeRankThenNameAndKeepsInputOrderInPlacements) {
  const std::vector<SafetensorsTensorSpec> specs = {
      {"b", DType::kF32, {3}},    {"a", DType::kI32, {1}},      {"c", DType::kF64, {2}},
      {"d", DType::kU8, {5}},     {"x", DType::kBF16, {1}},     {"y", DType::kF16, {1}},
      {"a2", DType::kF32, {1}},   {"q", DType::kBool, {3}},     {"m", DType::kI64, {1}},
      {"n", DType::kU64, {1}},    {"k", DType::kF8E4M3, {1}},   {"j", DType::kF8E5M2, {1}},
      {"i", DType::kI8, {1}},     {"h", DType::kI16, {1}},      {"g", DType::kU16, {1}},
      {"f", DType::kU32, {1}},    {"e", DType::kC64, {1}},
  };
  auto layout = plan_safetensors(specs, {});
  ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  auto header = nlohmann::ordered_json::parse(layout->header.substr(8));
  std::vector<std::string> order;
  for (const auto& [k, v] : header.items()) order.push_back(k);
  const std::vector<std::string> expected = {"n", "m", "c", "e", "a2", "b", "f", "a", "x",
                                             "y", "g", "h", "k", "j",  "i", "d", "q"};
  EXPECT_EQ(order, expected);

  // Placements follow the input order; offsets are absolute and contiguous in header order.
  ASSERT_EQ(layout->placements.size(), specs.size());
  const std::uint64_t data_start = layout->header.size();
  EXPECT_EQ(data_start % 8, 0u);
  std::uint64_t cursor = data_start;
  for (const std::string& name : expected) {
    std::size_t i = 0;
    while (specs[i].name != name) ++i;
    EXPECT_EQ(layout->placements[i].name, name);
    EXPECT_EQ(layout->placements[i].file_offset, cursor) << name;
    EXPECT_EQ(layout->placements[i].size,
              static_cast<std::uint64_t>(specs[i].shape[0]) * base::dtype_size(specs[i].dtype));
    const auto& offs = header[name]["data_offsets"];
    EXPECT_EQ(offs[0].get<std::uint64_t>() + data_start, cursor) << name;
    cursor += layout->placements[i].size;
  }
  EXPECT_EQ(layout->total_size, cursor);
}

TEST(SafetensorsPlanTest, NamesSortBytewiseLikeRustStrings) {
  // 'é' (0xC3 0xA9) sorts after 'z' bytewise; 'B' before 'a'.
  const std::vector<SafetensorsTensorSpec> specs = {
      {"\xC3\xA9", DType::kF32, {1}}, {"z", DType::kF32, {1}}, {"a", DType::kF32, {1}}, {"B", DType::kF32, {1}}};
  auto layout = plan_safetensors(specs, {});
  ASSERT_TRUE(layout.ok());
  auto header = nlohmann::ordered_json::parse(layout->header.substr(8));
  std::vector<std::string> order;
  for (const auto& [k, v] : header.items()) order.push_back(k);
  EXPECT_EQ(order, (std::vector<std::string>{"B", "a", "z", "\xC3\xA9"}));
}

TEST(SafetensorsPlanTest, HeaderAlwaysPaddedToEightWithSpaces) {
  for (std::size_t len = 1; len <= 17; ++len) {
    const SafetensorsTensorSpec spec{std::string(len, 'n'), DType::kF64, {2}};
    auto layout = plan_safetensors(std::span(&spec, 1));
    ASSERT_TRUE(layout.ok());
    const std::string& h = layout->header;
    EXPECT_EQ(h.size() % 8, 0u) << len;
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(h[i]);
    EXPECT_EQ(n + 8, h.size());
    const std::size_t close = h.find_last_of('}');
    EXPECT_EQ(h.find_first_not_of(' ', close + 1), std::string::npos) << "padding must be spaces";
    EXPECT_LT(h.size() - 1 - close, 8u);
  }
}

struct PlanErrorCase {
  const char* label;
  std::vector<SafetensorsTensorSpec> specs;
  StatusCode code;
  const char* fragment;
};

TEST(SafetensorsPlanTest, RejectsBadSpecs) {
  const std::vector<PlanErrorCase> cases = {
      {"duplicate", {{"w", DType::kF32, {1}}, {"w", DType::kF16, {1}}}, StatusCode::kInvalidArgument, "duplicate tensor name 'w'"},
      {"reserved", {{"__metadata__", DType::kF32, {1}}}, StatusCode::kInvalidArgument, "reserved"},
      {"negative", {{"w", DType::kF32, {2, -1}}}, StatusCode::kInvalidArgument, "negative dimension"},
      {"overflow", {{"w", DType::kF64, {1ll << 31, 1ll << 31, 1ll << 2}}}, StatusCode::kInvalidArgument, "overflows"},
      {"c128", {{"w", DType::kC128, {1}}}, StatusCode::kUnimplemented, "no dtype for c128"},
      {"bad_utf8", {{"w\xff", DType::kF32, {1}}}, StatusCode::kInvalidArgument, "UTF-8"},
  };
  for (const auto& c : cases) {
    auto layout = plan_safetensors(c.specs);
    ASSERT_FALSE(layout.ok()) << c.label;
    EXPECT_EQ(layout.status().code(), c.code) << c.label << ": " << layout.status().to_string();
    EXPECT_NE(layout.status().message().find(c.fragment), std::string::npos)
        << c.label << ": " << layout.status().to_string();
  }
}

TEST_F(SafetensorsTest, RoundTripsEveryDtypeWithScalarsEmptyTensorsAndUnicodeNames) {
  std::vector<SafetensorsTensorSpec> specs;
  for (DType t : base::kAllDTypes) {
    if (t == DType::kC128) continue;  // not a safetensors dtype
    const std::string name(base::dtype_name(t));
    specs.push_back({"t." + name, t, {2, 3}});
    specs.push_back({"scalar." + name, t, {}});
    specs.push_back({"empty." + name, t, {4, 0}});
  }
  specs.push_back({"\xE6\x9D\x83\xE9\x87\x8D.w\xC3\xA9ight \xF0\x9F\x98\x80", DType::kBF16, {5}});
  specs.push_back({"quote\"and\\slash\nnewline", DType::kF32, {1}});

  std::vector<std::vector<std::byte>> data;
  std::vector<SafetensorsBlob> blobs;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto numel = base::checked_numel(specs[i].shape);
    data.push_back(pattern(*numel * base::dtype_size(specs[i].dtype), static_cast<unsigned>(i)));
  }
  for (std::size_t i = 0; i < specs.size(); ++i) blobs.push_back({specs[i], data[i]});

  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "caf\xC3\xA9 \"q\""}};
  const std::string file = path("all.safetensors");
  ASSERT_TRUE(write_safetensors_file(file, blobs, meta).ok());
  auto expected_layout = plan_safetensors(specs, meta);
  ASSERT_TRUE(expected_layout.ok());
  EXPECT_EQ(std::filesystem::file_size(file), expected_layout->total_size);

  auto st = SafetensorsFile::open(file);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(st->path(), file);
  EXPECT_EQ(st->metadata(), meta);
  EXPECT_EQ(st->data_start() % 8, 0u);
  EXPECT_EQ(st->data_start(), expected_layout->header.size());
  ASSERT_EQ(st->entries().size(), specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const SafetensorsEntry* e = st->find(specs[i].name);
    ASSERT_NE(e, nullptr) << specs[i].name;
    EXPECT_EQ(e->dtype, specs[i].dtype) << specs[i].name;
    EXPECT_EQ(e->shape, specs[i].shape) << specs[i].name;
    EXPECT_EQ(st->data_start() + e->begin, expected_layout->placements[i].file_offset) << specs[i].name;
    auto view = st->view(*e);
    ASSERT_EQ(view.size(), data[i].size()) << specs[i].name;
    EXPECT_TRUE(std::equal(view.begin(), view.end(), data[i].begin())) << specs[i].name;
    // Every tensor's bytes start aligned to its element size in the file.
    EXPECT_EQ((st->data_start() + e->begin) % base::dtype_size(e->dtype), 0u) << specs[i].name;
  }
  EXPECT_EQ(st->find("missing"), nullptr);
  // entries() is in header order, i.e. the planned order: offsets increase.
  for (std::size_t i = 1; i < st->entries().size(); ++i) {
    EXPECT_LE(st->entries()[i - 1].end, st->entries()[i].begin);
  }
}

TEST_F(SafetensorsTest, WriteRejectsWrongDataSizeAndLeavesNoFile) {
  const std::vector<std::byte> data(7);
  const SafetensorsBlob blob{{"w", DType::kF32, {2}}, data};
  const std::string file = path("bad.safetensors");
  base::Status s = write_safetensors_file(file, std::span(&blob, 1));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("tensor 'w' has 7 bytes"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find("need 8"), std::string::npos) << s.to_string();
  EXPECT_FALSE(std::filesystem::exists(file));
}

TEST_F(SafetensorsTest, WriteIntoMissingDirectoryIsNotFound) {
  const std::string file = path("no/such/dir/x.safetensors");
  base::Status s = write_safetensors_file(file, {});
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.to_string();
  EXPECT_NE(s.message().find(file), std::string::npos) << s.to_string();
}

TEST_F(SafetensorsTest, DiskFullIsResourceExhausted) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::vector<std::byte> data(4096);
  const SafetensorsBlob blob{{"w", DType::kU8, {4096}}, data};
  base::Status s = write_safetensors_file("/dev/full", std::span(&blob, 1));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  EXPECT_NE(s.message().find("'/dev/full'"), std::string::npos) << s.to_string();
  EXPECT_TRUE(std::filesystem::exists("/dev/full"));  // a device is never unlinked on failure
}

TEST_F(SafetensorsTest, WriteTruncatesAnExistingLargerFile) {
  const std::string file = path("reuse.safetensors");
  { std::ofstream(file) << std::string(10000, 'x'); }
  const std::vector<std::byte> data = pattern(4, 1);
  const SafetensorsBlob blob{{"w", DType::kI32, {1}}, data};
  ASSERT_TRUE(write_safetensors_file(file, std::span(&blob, 1)).ok());
  auto st = SafetensorsFile::open(file);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(st->entries().size(), 1u);
}

TEST(SafetensorsReadTest, KeepsHeaderOrderNotOffsetOrder) {
  // Header order z, a, m; buffer order a, m, z. Metadata may come anywhere.
  const std::string header =
      R"({"z":{"dtype":"U8","shape":[2],"data_offsets":[6,8]},)"
      R"("__metadata__":{"k":"v"},)"
      R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},)"
      R"("m":{"dtype":"BOOL","shape":[2],"data_offsets":[4,6]}})";
  auto st = parse_image(image(header, 8));
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  ASSERT_EQ(st->entries().size(), 3u);
  EXPECT_EQ(st->entries()[0].name, "z");
  EXPECT_EQ(st->entries()[1].name, "a");
  EXPECT_EQ(st->entries()[2].name, "m");
  EXPECT_EQ(st->metadata().at("k"), "v");
  EXPECT_EQ(st->entries()[1].dtype, DType::kI16);
  auto z = st->view(*st->find("z"));
  ASSERT_EQ(z.size(), 2u);
  EXPECT_EQ(static_cast<int>(z[0]), 6);  // buffer bytes are 0,1,2,..
  EXPECT_EQ(static_cast<int>(z[1]), 7);
  EXPECT_EQ(st->data_start(), 8 + header.size());
}

TEST(SafetensorsReadTest, AcceptsTrailingSpacesUnpaddedHeadersAndZeroSizeTensorsAtSharedOffsets) {
  const std::string header =
      R"({"e1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("e2":{"dtype":"F64","shape":[3,0],"data_offsets":[0,0]},)"
      R"("w":{"dtype":"F16","shape":[],"data_offsets":[0,2]},)"
      R"("e3":{"dtype":"I8","shape":[0],"data_offsets":[2,2]}})";
  for (const std::string& h : {header, header + "   ", header + std::string(7, ' ')}) {
    auto st = parse_image(image(h, 2));
    ASSERT_TRUE(st.ok()) << st.status().to_string();
    EXPECT_EQ(st->entries().size(), 4u);
    EXPECT_TRUE(st->find("w")->shape.empty());
    EXPECT_TRUE(st->metadata().empty());
  }
  auto empty = parse_image(image("{}", 0));
  ASSERT_TRUE(empty.ok()) << empty.status().to_string();
  EXPECT_TRUE(empty->entries().empty());
}

TEST(SafetensorsReadTest, OpenMissingFileIsNotFound) {
  auto st = SafetensorsFile::open("/nonexistent/dir/x.safetensors");
  EXPECT_EQ(st.status().code(), StatusCode::kNotFound) << st.status().to_string();
}

enum class Corruption {
  kShorterThanLength,
  kHeaderLengthOverCap,
  kHeaderLengthHuge,
  kHeaderPastEof,
  kEmptyHeader,
  kLeadingSpace,
  kArrayHeader,
  kNotJson,
  kTrailingGarbage,
  kNulPadding,
  kInvalidUtf8,
  kMetadataNotObject,
  kMetadataValueNotString,
  kEntryNotObject,
  kMissingDtype,
  kUnknownDtype,
  kC128Dtype,
  kShapeNotArray,
  kNegativeDim,
  kFractionalDim,
  kOffsetsWrongArity,
  kNegativeOffset,
  kBeginAfterEnd,
  kWrongSizeForShape,
  kShapeOverflow,
  kOverlap,
  kZeroSizeInsideTensor,
  kHole,
  kHoleAtStart,
  kTrailingBytes,
  kPastEnd,
  kDuplicateTensor,
  kDuplicateMetadata,
  kDuplicateField,
};

struct CorruptionCase {
  Corruption kind;
  const char* label;
  std::string file;  ///< Whole file image.
  StatusCode code;
  std::vector<std::string> fragments;  ///< All must appear in the message.
};

std::string tensor(std::string_view name, std::string_view dtype, std::string_view shape, std::uint64_t b,
                   std::uint64_t e) {
  return "\"" + std::string(name) + "\":{\"dtype\":\"" + std::string(dtype) + "\",\"shape\":" + std::string(shape) +
         ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
}

std::vector<CorruptionCase> corruption_cases() {
  const std::string good = "{" + tensor("a", "F32", "[2]", 0, 8) + "}";
  return {
      {Corruption::kShorterThanLength, "shorter_than_length", std::string("\x05\0\0", 3), StatusCode::kDataLoss,
       {"file is 3 bytes", "too small"}},
      {Corruption::kHeaderLengthOverCap, "header_over_cap", le64(100'000'001) + good, StatusCode::kDataLoss,
       {"header length 100000001", "100000000-byte limit"}},
      {Corruption::kHeaderLengthHuge, "header_huge", le64(~0ull) + good, StatusCode::kDataLoss,
       {"header length 18446744073709551615"}},
      {Corruption::kHeaderPastEof, "header_past_eof", le64(good.size() + 1) + good, StatusCode::kDataLoss,
       {"runs past end of file", "size " + std::to_string(8 + good.size())}},
      {Corruption::kEmptyHeader, "empty_header", le64(0), StatusCode::kDataLoss, {"starting with '{'", "empty"}},
      {Corruption::kLeadingSpace, "leading_space", image(" " + good, 8), StatusCode::kDataLoss,
       {"starting with '{'", "found byte 0x20 (' ')"}},
      {Corruption::kArrayHeader, "array_header", image("[1,2]", 0), StatusCode::kDataLoss, {"starting with '{'"}},
      {Corruption::kNotJson, "not_json", image("{\"a\":", 0), StatusCode::kDataLoss, {"not valid JSON"}},
      {Corruption::kTrailingGarbage, "trailing_garbage", image(good + " x", 8), StatusCode::kDataLoss,
       {"not valid JSON"}},
      {Corruption::kNulPadding, "nul_padding", image(good + std::string("\0\0", 2), 8), StatusCode::kDataLoss,
       {"NUL byte at offset " + std::to_string(8 + good.size())}},
      {Corruption::kInvalidUtf8, "invalid_utf8", image("{" + tensor("a\xff", "F32", "[2]", 0, 8) + "}", 8),
       StatusCode::kDataLoss, {"not valid JSON"}},
      {Corruption::kMetadataNotObject, "metadata_not_object", image(R"({"__metadata__":[1]})", 0),
       StatusCode::kDataLoss, {"\"__metadata__\" is JSON array"}},
      {Corruption::kMetadataValueNotString, "metadata_value_not_string", image(R"({"__metadata__":{"k":1}})", 0),
       StatusCode::kDataLoss, {"key 'k'", "expected a string"}},
      {Corruption::kEntryNotObject, "entry_not_object", image(R"({"w":[0,0]})", 0), StatusCode::kDataLoss,
       {"tensor 'w' is JSON array"}},
      {Corruption::kMissingDtype, "missing_dtype", image(R"({"w":{"shape":[],"data_offsets":[0,0]}})", 0),
       StatusCode::kDataLoss, {"tensor 'w'", "\"dtype\""}},
      {Corruption::kUnknownDtype, "unknown_dtype", image("{" + tensor("w", "F4", "[2]", 0, 1) + "}", 1),
       StatusCode::kUnimplemented, {"tensor 'w'", "dtype 'F4'"}},
      {Corruption::kC128Dtype, "c128_dtype", image("{" + tensor("w", "C128", "[1]", 0, 16) + "}", 16),
       StatusCode::kUnimplemented, {"tensor 'w'", "dtype 'C128'"}},
      {Corruption::kShapeNotArray, "shape_not_array", image("{" + tensor("w", "F32", "4", 0, 16) + "}", 16),
       StatusCode::kDataLoss, {"tensor 'w'", "\"shape\""}},
      {Corruption::kNegativeDim, "negative_dim", image("{" + tensor("w", "F32", "[-1]", 0, 0) + "}", 0),
       StatusCode::kDataLoss, {"tensor 'w'", "shape entry -1"}},
      {Corruption::kFractionalDim, "fractional_dim", image("{" + tensor("w", "F32", "[1.5]", 0, 4) + "}", 4),
       StatusCode::kDataLoss, {"tensor 'w'", "shape entry 1.5"}},
      {Corruption::kOffsetsWrongArity, "offsets_wrong_arity",
       image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8), StatusCode::kDataLoss,
       {"tensor 'w'", "\"data_offsets\""}},
      {Corruption::kNegativeOffset, "negative_offset",
       image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 0), StatusCode::kDataLoss,
       {"tensor 'w'", "non-negative"}},
      {Corruption::kBeginAfterEnd, "begin_after_end", image("{" + tensor("w", "F32", "[0]", 4, 0) + "}", 4),
       StatusCode::kDataLoss, {"tensor 'w'", "[4, 0]", "begin > end"}},
      {Corruption::kWrongSizeForShape, "wrong_size_for_shape", image("{" + tensor("w", "F32", "[3]", 0, 8) + "}", 8),
       StatusCode::kDataLoss, {"tensor 'w'", "spanning 8 bytes", "dtype F32 and shape [3] need 12"}},
      {Corruption::kShapeOverflow, "shape_overflow",
       image("{" + tensor("w", "F64", "[4294967296,4294967296]", 0, 8) + "}", 8), StatusCode::kDataLoss,
       {"tensor 'w'", "overflows"}},
      {Corruption::kOverlap, "overlap",
       image("{" + tensor("a", "F32", "[2]", 0, 8) + "," + tensor("b", "F32", "[2]", 4, 12) + "}", 12),
       StatusCode::kDataLoss, {"tensor 'b'", "overlap tensor 'a'", "ends at 8"}},
      {Corruption::kZeroSizeInsideTensor, "zero_size_inside_tensor",
       image("{" + tensor("a", "F32", "[2]", 0, 8) + "," + tensor("e", "F32", "[0]", 4, 4) + "}", 8),
       StatusCode::kDataLoss, {"tensor 'e'", "overlap tensor 'a'"}},
      {Corruption::kHole, "hole",
       image("{" + tensor("a", "F32", "[1]", 0, 4) + "," + tensor("b", "F32", "[1]", 8, 12) + "}", 12),
       StatusCode::kDataLoss, {"hole [4, 8)", "before tensor 'b'"}},
      {Corruption::kHoleAtStart, "hole_at_start", image("{" + tensor("a", "F32", "[1]", 4, 8) + "}", 8),
       StatusCode::kDataLoss, {"hole [0, 4)", "before tensor 'a'"}},
      {Corruption::kTrailingBytes, "trailing_bytes", image(good, 9), StatusCode::kDataLoss,
       {"data buffer is 9 bytes", "[0, 8)", "1 trailing bytes"}},
      {Corruption::kPastEnd, "past_end", image(good, 7), StatusCode::kDataLoss,
       {"tensor 'a'", "[0, 8]", "past the end of the data buffer (7 bytes"}},
      {Corruption::kDuplicateTensor, "duplicate_tensor",
       image("{" + tensor("a", "F32", "[1]", 0, 4) + "," + tensor("a", "F32", "[1]", 4, 8) + "}", 8),
       StatusCode::kDataLoss, {"duplicate key 'a'", "top level"}},
      {Corruption::kDuplicateMetadata, "duplicate_metadata",
       image(R"({"__metadata__":{"k":"1","k":"2"}})", 0), StatusCode::kDataLoss,
       {"duplicate key 'k'", "inside an entry"}},
      {Corruption::kDuplicateField, "duplicate_field",
       image(R"({"w":{"dtype":"F32","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 1), StatusCode::kDataLoss,
       {"duplicate key 'dtype'"}},
  };
}

TEST(SafetensorsReadTest, RejectsEachCorruptionWithCodeAndMessage) {
  for (const CorruptionCase& c : corruption_cases()) {
    auto st = parse_image(c.file, std::string("bad_") + c.label + ".safetensors");
    ASSERT_FALSE(st.ok()) << c.label;
    const base::Status& s = st.status();
    EXPECT_EQ(s.code(), c.code) << c.label << ": " << s.to_string();
    EXPECT_NE(s.message().find(std::string("'bad_") + c.label + ".safetensors'"), std::string::npos)
        << c.label << " message must name the file: " << s.to_string();
    for (const std::string& f : c.fragments) {
      EXPECT_NE(s.message().find(f), std::string::npos) << c.label << ": missing '" << f << "' in " << s.to_string();
    }
  }
}

// The same corruptions through open() on real files: the mapped path must behave like from_bytes.
TEST_F(SafetensorsTest, RejectsCorruptionsReadFromDisk) {
  for (const CorruptionCase& c : corruption_cases()) {
    const std::string file = path(std::string(c.label) + ".safetensors");
    { std::ofstream(file, std::ios::binary) << c.file; }
    auto st = SafetensorsFile::open(file);
    ASSERT_FALSE(st.ok()) << c.label;
    EXPECT_EQ(st.status().code(), c.code) << c.label << ": " << st.status().to_string();
  }
}

}  // namespace
}  // namespace ucp::format
