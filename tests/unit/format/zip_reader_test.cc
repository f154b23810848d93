// ZipReader on the real torch.save fixtures, on a hand-checked listing of one of them, and on
// corrupted copies of it (each corruption built here from the valid bytes).
#include "ucp/format/zip_reader.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "testutil/golden.h"
#include "testutil/temp_dir.h"
#include "ucp/format/mapped_file.h"

namespace ucp::format {
namespace {

namespace fs = std::filesystem;
using base::StatusCode;

// One of the fixtures: torch 1.13 wrote it (miniz: data descriptors, ZIP64 end records always).
const std::string kModelStates =
    testutil::deepspeed_fixture("mlp_z1_fp32_ws1") + "/checkpoint/global_step3/mp_rank_00_model_states.pt";

std::uint64_t get_le(const std::vector<std::byte>& b, std::size_t off, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b.at(off + i)) << (8 * i);
  return v;
}

void put_le(std::vector<std::byte>& b, std::size_t off, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.at(off + i) = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}

std::string write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// ------------------------------------------------------------------------------------------------
// The fixtures

TEST(ZipReaderGolden, EveryFixtureParsesAndEveryCrcMatches) {
  const auto files = testutil::all_golden_pt_files();
  ASSERT_GT(files.size(), 300u) << "fixtures missing under " << testutil::golden_dir();
  std::size_t records = 0;
  for (const std::string& path : files) {
    auto reader = ZipReader::open_path(path);
    ASSERT_TRUE(reader.ok()) << reader.status().to_string();
    const auto& rs = reader->records();
    ASSERT_FALSE(rs.empty()) << path;
    // torch.save writes "<archive>/data.pkl" first and puts every record under one folder.
    const std::string& first = rs.front().name;
    ASSERT_TRUE(first.ends_with("/data.pkl")) << path << ": " << first;
    const std::string folder = first.substr(0, first.size() - std::string("data.pkl").size());
    for (const ZipRecord& r : rs) {
      EXPECT_TRUE(r.name.starts_with(folder)) << path << ": " << r.name;
      EXPECT_TRUE(reader->verify_crc(r).ok()) << reader->verify_crc(r).to_string();
      // torch aligns every record's data to 64 bytes.
      EXPECT_EQ(r.data_offset % 64, 0u) << path << ": " << r.name;
      EXPECT_EQ(reader->find(r.name), &r);
      ++records;
    }
    EXPECT_NE(reader->find(folder + "version"), nullptr) << path;
    EXPECT_EQ(reader->find(folder + "no_such_record"), nullptr);
  }
  EXPECT_GT(records, files.size() * 3);
}

TEST(ZipReaderGolden, ListingMatchesPythonZipfile) {
  // Expected values printed by Python's zipfile (infolist: header_offset, file_size, CRC) and the
  // local header lengths (data offset = header offset + 30 + name length + extra length).
  struct Expected {
    const char* name;
    std::uint64_t header_offset, data_offset, size;
    std::uint32_t crc;
  };
  const Expected expected[] = {
      {"mp_rank_00_model_states/data.pkl", 0, 128, 2339, 0x6287bca7},
      {"mp_rank_00_model_states/data/0", 2483, 2560, 1944, 0xf47d7e89},
      {"mp_rank_00_model_states/data/1", 4520, 4608, 20, 0xcab5a99a},
      {"mp_rank_00_model_states/data/2", 4644, 4736, 8, 0xebadd88a},
      {"mp_rank_00_model_states/data/3", 4760, 4864, 884, 0xa3d08a9b},
      {"mp_rank_00_model_states/data/4", 5764, 5888, 68, 0x35231d95},
      {"mp_rank_00_model_states/version", 5972, 6080, 2, 0x55679ed1},
  };
  auto reader = ZipReader::open_path(kModelStates);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  ASSERT_EQ(reader->records().size(), std::size(expected));
  for (std::size_t i = 0; i < std::size(expected); ++i) {
    const ZipRecord& r = reader->records()[i];
    EXPECT_EQ(r.name, expected[i].name);
    EXPECT_EQ(r.local_header_offset, expected[i].header_offset) << r.name;
    EXPECT_EQ(r.data_offset, expected[i].data_offset) << r.name;
    EXPECT_EQ(r.size, expected[i].size) << r.name;
    EXPECT_EQ(r.crc32, expected[i].crc) << r.name;
  }
  // The pickle starts with PROTO 2; "version" holds the text "3\n".
  auto pkl = reader->view(reader->records()[0]);
  ASSERT_EQ(pkl.size(), 2339u);
  EXPECT_EQ(pkl[0], std::byte{0x80});
  EXPECT_EQ(pkl[1], std::byte{0x02});
  auto version = reader->view(*reader->find("mp_rank_00_model_states/version"));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(version.data()), version.size()), "3\n");
}

TEST(ZipReader, ViewChecksBounds) {
  auto reader = ZipReader::open_path(kModelStates);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  const ZipRecord& r = *reader->find("mp_rank_00_model_states/data/1");  // 20 bytes at offset 4608.
  auto whole = reader->view(r);
  ASSERT_EQ(whole.size(), 20u);
  EXPECT_EQ(whole.data(), reader->file()->bytes().data() + 4608);

  auto tail = reader->view(r, 12, 8);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->data(), whole.data() + 12);
  EXPECT_EQ(tail->size(), 8u);
  EXPECT_TRUE(reader->view(r, 20, 0).ok());

  for (auto [off, len] : {std::pair<std::uint64_t, std::uint64_t>{12, 9}, {21, 0}, {0, 21},
                          {1, UINT64_MAX}, {UINT64_MAX, 2}}) {
    auto v = reader->view(r, off, len);
    ASSERT_FALSE(v.ok()) << off << "+" << len;
    EXPECT_EQ(v.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(v.status().message().find("mp_rank_00_model_states/data/1"), std::string::npos)
        << v.status().message();
  }
}

TEST(ZipReader, VerifyCrcDetectsAFlippedDataByte) {
  auto bytes = testutil::read_file_bytes(kModelStates);
  bytes.at(4608 + 5) ^= std::byte{0x01};  // Inside data/1.
  auto reader = ZipReader::open(MappedFile::from_bytes("flipped.pt", std::move(bytes)));
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  const ZipRecord& r = *reader->find("mp_rank_00_model_states/data/1");
  const auto status = reader->verify_crc(r);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("'flipped.pt'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("0xcab5a99a"), std::string::npos) << status.message();
  EXPECT_TRUE(reader->verify_crc(*reader->find("mp_rank_00_model_states/data/0")).ok());
}

// ------------------------------------------------------------------------------------------------
// MappedFile

TEST(MappedFile, MissingFileIsNotFoundAndNamesThePath) {
  auto f = MappedFile::open("/nonexistent/dir/x.pt");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("'/nonexistent/dir/x.pt'"), std::string::npos);
  EXPECT_NE(f.status().message().find("No such file"), std::string::npos) << f.status().message();
}

TEST(MappedFile, EmptyFileMapsToEmptySpan) {
  testutil::TempDir dir;
  const std::string path = write_file((dir / "empty").string(), {});
  auto f = MappedFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ((*f)->size(), 0u);
  EXPECT_TRUE((*f)->bytes().empty());
  (*f)->advise_willneed(0, 100);  // Harmless on an empty file.

  auto reader = ZipReader::open(*f);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(reader.status().message().find("'" + path + "'"), std::string::npos);
}

TEST(MappedFile, MapsTheFileBytes) {
  testutil::TempDir dir;
  std::vector<std::byte> bytes(10000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 7);
  const std::string path = write_file((dir / "data").string(), bytes);
  auto f = MappedFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ((*f)->path(), path);
  ASSERT_EQ((*f)->size(), bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), (*f)->bytes().begin()));
  (*f)->advise_willneed(5000, 1 << 30);  // Past the end: clamped, not an error.
  (*f)->advise_willneed(20000, 10);
}

TEST(MappedFile, DirectoryIsRefused) {
  testutil::TempDir dir;
  auto f = MappedFile::open(dir.path().string());
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("not a regular file"), std::string::npos) << f.status().message();
}

TEST(MappedFile, FifoIsRefusedWithoutBlocking) {
  testutil::TempDir dir;
  const std::string path = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto f = MappedFile::open(path);  // Would block forever without a writer if opened blocking.
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("'" + path + "': not a regular file"), std::string::npos)
      << f.status().message();
}

TEST(MappedFile, FromBytesOwnsItsCopy) {
  std::vector<std::byte> bytes = {std::byte{1}, std::byte{2}, std::byte{3}};
  auto f = MappedFile::from_bytes("memory", bytes);
  bytes[0] = std::byte{9};
  EXPECT_EQ(f->path(), "memory");
  ASSERT_EQ(f->size(), 3u);
  EXPECT_EQ(f->bytes()[0], std::byte{1});
  EXPECT_EQ(f->bytes()[2], std::byte{3});
}

// ------------------------------------------------------------------------------------------------
// Corruptions of the fixture

enum class Corruption {
  kEmptyFile,
  kTruncatedEocd,
  kBadEocdSignature,
  kEocdCommentLength,
  kEocdDisagreesWithZip64,
  kCdPastEnd,
  kEntryCountTooLarge,
  kEntryCountTooSmall,
  kBadCentralSignature,
  kRecordPastEnd,
  kCompressedRecord,
  kEncryptedRecord,
  kStoredSizesDiffer,
  kMissingZip64Extra,
  kMultiDisk,
  kBadLocalSignature,
  kLocalHeaderPastDirectory,
  kLocalMethodDiffers,
  kNameMismatch,
  kDuplicateName,
  kZip64LocatorBad,
  kZip64LocatorPastEnd,
  kZip64RecordSizeBad,
  kGarbage,
};

struct CorruptionCase {
  Corruption corruption;
  const char* label;
  StatusCode code;
  const char* fragment;  ///< Must appear in the message (besides the file name).
};

// Offsets inside the fixture, found by walking its structure (not hard-coded).
struct Layout {
  std::size_t eocd, locator, zip64_record, cd;
  std::vector<std::size_t> central;  // Offset of each central directory entry.
  std::vector<std::size_t> local;    // Offset of each local header.
};

Layout walk(const std::vector<std::byte>& b) {
  Layout l{};
  l.eocd = b.size() - 22;
  l.locator = l.eocd - 20;
  l.zip64_record = get_le(b, l.locator + 8, 8);
  l.cd = get_le(b, l.eocd + 16, 4);
  std::size_t pos = l.cd;
  for (std::uint64_t i = 0; i < get_le(b, l.eocd + 10, 2); ++i) {
    l.central.push_back(pos);
    l.local.push_back(get_le(b, pos + 42, 4));
    pos += 46 + get_le(b, pos + 28, 2) + get_le(b, pos + 30, 2) + get_le(b, pos + 32, 2);
  }
  return l;
}

std::vector<std::byte> corrupt(std::vector<std::byte> b, Corruption c) {
  const Layout l = walk(b);
  switch (c) {
    case Corruption::kEmptyFile:
      b.clear();
      break;
    case Corruption::kTruncatedEocd:
      b.resize(b.size() - 10);
      break;
    case Corruption::kBadEocdSignature:
      b.at(l.eocd + 3) = std::byte{0x07};
      break;
    case Corruption::kEocdCommentLength:
      put_le(b, l.eocd + 20, 5, 2);
      break;
    case Corruption::kEocdDisagreesWithZip64:
      put_le(b, l.eocd + 10, get_le(b, l.eocd + 10, 2) - 1, 2);
      break;
    case Corruption::kCdPastEnd:
      put_le(b, l.eocd + 12, 0xFFFFFFFF, 4);
      put_le(b, l.zip64_record + 40, get_le(b, l.zip64_record + 40, 8) + 1, 8);
      break;
    case Corruption::kEntryCountTooLarge:
      put_le(b, l.eocd + 8, 0xFFFF, 2);
      put_le(b, l.eocd + 10, 0xFFFF, 2);
      put_le(b, l.zip64_record + 24, 1000000, 8);
      put_le(b, l.zip64_record + 32, 1000000, 8);
      break;
    case Corruption::kEntryCountTooSmall:
      for (std::size_t off : {l.eocd + 8, l.eocd + 10}) put_le(b, off, l.central.size() - 1, 2);
      for (std::size_t off : {l.zip64_record + 24, l.zip64_record + 32}) put_le(b, off, l.central.size() - 1, 8);
      break;
    case Corruption::kBadCentralSignature:
      b.at(l.central.at(2)) = std::byte{'X'};
      break;
    case Corruption::kRecordPastEnd:
      put_le(b, l.central.back() + 20, 1000000, 4);
      put_le(b, l.central.back() + 24, 1000000, 4);
      break;
    case Corruption::kCompressedRecord:
      put_le(b, l.central.at(1) + 10, 8, 2);
      break;
    case Corruption::kEncryptedRecord:
      put_le(b, l.central.at(1) + 8, get_le(b, l.central.at(1) + 8, 2) | 1, 2);
      break;
    case Corruption::kStoredSizesDiffer:
      put_le(b, l.central.at(1) + 20, get_le(b, l.central.at(1) + 20, 4) - 1, 4);
      break;
    case Corruption::kMissingZip64Extra:
      put_le(b, l.central.at(1) + 24, 0xFFFFFFFF, 4);
      break;
    case Corruption::kMultiDisk:
      put_le(b, l.locator + 16, 3, 4);
      break;
    case Corruption::kBadLocalSignature:
      b.at(l.local.at(0) + 1) = std::byte{'Q'};
      break;
    case Corruption::kLocalHeaderPastDirectory:
      put_le(b, l.central.at(3) + 42, l.cd - 10, 4);
      break;
    case Corruption::kLocalMethodDiffers:
      put_le(b, l.local.at(2) + 8, 8, 2);
      break;
    case Corruption::kNameMismatch:
      b.at(l.local.at(1) + 30 + 2) = std::byte{'X'};  // "mp_" -> "mpX" in data/0's local name.
      break;
    case Corruption::kDuplicateName:
      // data/2 -> data/1 in both headers: a well-formed archive with an ambiguous name.
      b.at(l.central.at(3) + 46 + 29) = std::byte{'1'};
      b.at(l.local.at(3) + 30 + 29) = std::byte{'1'};
      break;
    case Corruption::kZip64LocatorBad:
      put_le(b, l.locator + 8, l.zip64_record - 4, 8);
      break;
    case Corruption::kZip64LocatorPastEnd:
      put_le(b, l.locator + 8, b.size() * 2, 8);
      break;
    case Corruption::kZip64RecordSizeBad:
      put_le(b, l.zip64_record + 4, 1000, 8);
      break;
    case Corruption::kGarbage:
      for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>((i * 131) ^ (i >> 3));
      break;
  }
  return b;
}

class ZipCorruptionTest : public ::testing::TestWithParam<CorruptionCase> {
 protected:
  testutil::TempDir dir_;  // Unique, removed when the test ends.
};

TEST_P(ZipCorruptionTest, IsRefusedWithCodeAndMessage) {
  const CorruptionCase& c = GetParam();
  const auto valid = testutil::read_file_bytes(kModelStates);
  ASSERT_GT(valid.size(), 1000u);
  ASSERT_TRUE(ZipReader::open(MappedFile::from_bytes("valid.pt", valid)).ok());

  ASSERT_FALSE(dir_.path().empty());
  const std::string path = write_file((dir_ / (std::string(c.label) + ".pt")).string(), corrupt(valid, c.corruption));
  auto reader = ZipReader::open_path(path);
  ASSERT_FALSE(reader.ok()) << c.label << " was accepted";
  const base::Status& s = reader.status();
  EXPECT_EQ(s.code(), c.code) << s.to_string();
  EXPECT_NE(s.message().find("'" + path + "'"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find(c.fragment), std::string::npos) << s.to_string();
}

const CorruptionCase kCases[] = {
    {Corruption::kEmptyFile, "Empty", StatusCode::kDataLoss, "expected at least 22 bytes, found a file of 0 bytes"},
    {Corruption::kTruncatedEocd, "TruncatedEocd", StatusCode::kDataLoss, "expected signature 0x06054b50"},
    {Corruption::kBadEocdSignature, "BadEocdSignature", StatusCode::kDataLoss, "not a zip file, or truncated"},
    {Corruption::kEocdCommentLength, "EocdCommentLength", StatusCode::kDataLoss, "expected a comment length of 0"},
    {Corruption::kEocdDisagreesWithZip64, "EocdVsZip64", StatusCode::kDataLoss,
     "expected entry count 7 (as in the ZIP64 record), found 6"},
    {Corruption::kCdPastEnd, "CdPastEnd", StatusCode::kDataLoss, "central directory at offset 6098"},
    {Corruption::kEntryCountTooLarge, "CountTooLarge", StatusCode::kDataLoss, "an entry count of 1000000"},
    {Corruption::kEntryCountTooSmall, "CountTooSmall", StatusCode::kDataLoss, "bytes left over"},
    {Corruption::kBadCentralSignature, "BadCentralSignature", StatusCode::kDataLoss,
     "central directory entry 2 at offset"},
    {Corruption::kRecordPastEnd, "RecordPastEnd", StatusCode::kDataLoss,
     "data of record 'mp_rank_00_model_states/version' at offset 6080: expected 1000000 bytes"},
    {Corruption::kCompressedRecord, "Compressed", StatusCode::kUnimplemented,
     "record 'mp_rank_00_model_states/data/0' (central directory entry at offset"},
    {Corruption::kEncryptedRecord, "Encrypted", StatusCode::kUnimplemented, "is encrypted"},
    {Corruption::kStoredSizesDiffer, "SizesDiffer", StatusCode::kDataLoss,
     "expected equal compressed and uncompressed sizes for a stored record, found 1943 and 1944"},
    {Corruption::kMissingZip64Extra, "MissingZip64Extra", StatusCode::kDataLoss,
     "expected a ZIP64 extra field of at least 8 bytes"},
    {Corruption::kMultiDisk, "MultiDisk", StatusCode::kUnimplemented, "multi-disk archive"},
    {Corruption::kBadLocalSignature, "BadLocalSignature", StatusCode::kDataLoss,
     "local header of 'mp_rank_00_model_states/data.pkl' at offset 0: expected signature 0x04034b50, found"},
    {Corruption::kLocalHeaderPastDirectory, "LocalPastCd", StatusCode::kDataLoss,
     "local header of 'mp_rank_00_model_states/data/2'"},
    {Corruption::kLocalMethodDiffers, "LocalMethod", StatusCode::kDataLoss,
     "expected compression method 0 (stored, as in the central directory), found 8 (deflate)"},
    {Corruption::kNameMismatch, "NameMismatch", StatusCode::kDataLoss,
     "at offset 2483: expected name 'mp_rank_00_model_states/data/0' (as in the central directory), found "
     "'mpXrank_00_model_states/data/0'"},
    {Corruption::kDuplicateName, "DuplicateName", StatusCode::kDataLoss, "expected a unique name"},
    {Corruption::kZip64LocatorBad, "Zip64LocatorBad", StatusCode::kDataLoss,
     "ZIP64 end of central directory record at offset 6629: expected signature 0x06064b50"},
    {Corruption::kZip64LocatorPastEnd, "Zip64LocatorPastEnd", StatusCode::kDataLoss,
     "ZIP64 end of central directory locator at offset 6689"},
    {Corruption::kZip64RecordSizeBad, "Zip64RecordSize", StatusCode::kDataLoss, "found 1000"},
    {Corruption::kGarbage, "Garbage", StatusCode::kDataLoss, "end of central directory record"},
};

INSTANTIATE_TEST_SUITE_P(All, ZipCorruptionTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<CorruptionCase>& param_info) {
                           return std::string(param_info.param.label);
                         });

}  // namespace
}  // namespace ucp::format
