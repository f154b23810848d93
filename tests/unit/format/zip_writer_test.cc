// The zip writer: exact header bytes (from APPNOTE field tables), torch's alignment rule, round
// trips through ZipReader, ZIP64 layouts, and a real sparse archive larger than 4 GiB.
#include "ucp/format/zip_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "testutil/temp_dir.h"
#include "ucp/format/crc32.h"
#include "ucp/format/mapped_file.h"
#include "ucp/format/zip_reader.h"

namespace ucp::format {
namespace {

namespace fs = std::filesystem;
using base::StatusCode;

constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;

std::uint64_t get_le(std::span<const std::byte> b, std::size_t off, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b[off + i]) << (8 * i);
  return v;
}

std::string get_str(std::span<const std::byte> b, std::size_t off, std::size_t n) {
  return {reinterpret_cast<const char*>(b.data()) + off, n};
}

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

// CRC-32 of `len` zero bytes without touching that many bytes: doubling with crc32_combine.
std::uint32_t zeros_crc(std::uint64_t len) {
  const std::vector<std::byte> block(4096);
  std::uint32_t piece = crc32_update(0, block);
  std::uint64_t piece_len = block.size();
  std::uint32_t crc = crc32_update(0, std::span<const std::byte>(block).first(len % block.size()));
  for (std::uint64_t n = len / block.size(); n != 0; n >>= 1) {
    if (n & 1) crc = crc32_combine(crc, piece, piece_len);
    piece = crc32_combine(piece, piece, piece_len);
    piece_len *= 2;
  }
  return crc;
}

class ZipWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  testutil::TempDir dir_;  // Unique, removed when the test ends.
};

// ------------------------------------------------------------------------------------------------
// Layout and header bytes

TEST(ZipLayout, PaddingIsTheSmallestThatFitsAnExtraField) {
  // data_start = 30 + name length; padding p is 0 when data_start is aligned, else the smallest
  // p >= 4 with (data_start + p) % 64 == 0.
  struct Case {
    std::size_t name_len;
    std::uint64_t data_offset;
  };
  for (const Case c : {Case{1, 64}, Case{30, 64}, Case{31, 128}, Case{33, 128}, Case{34, 64}, Case{35, 128},
                       Case{98, 128}, Case{99, 192}}) {
    const ZipEntrySpec spec{std::string(c.name_len, 'n'), 5};
    const ZipLayout layout = plan_zip_layout(std::span(&spec, 1));
    ASSERT_EQ(layout.entries.size(), 1u);
    EXPECT_EQ(layout.entries[0].header_offset, 0u);
    EXPECT_EQ(layout.entries[0].data_offset, c.data_offset) << "name length " << c.name_len;
    const auto header = zip_local_header(layout, 0, 0);
    EXPECT_EQ(header.size(), c.data_offset);
    EXPECT_EQ(get_le(header, 28, 2), c.data_offset - 30 - c.name_len) << "extra length, name " << c.name_len;
  }
}

TEST(ZipLayout, FirstRecordMatchesTorch) {
  // torch 1.13 put data.pkl of this name at data offset 128 with a 66-byte "FB" extra field
  // (fixture mlp_z1_fp32_ws1/.../mp_rank_00_model_states.pt).
  const ZipEntrySpec specs[] = {{"mp_rank_00_model_states/data.pkl", 2339}};
  const ZipLayout layout = plan_zip_layout(specs);
  EXPECT_EQ(layout.entries[0].data_offset, 128u);
  const auto header = zip_local_header(layout, 0, 0x6287bca7);
  EXPECT_EQ(get_le(header, 28, 2), 66u);
  EXPECT_EQ(get_str(header, 30 + 32, 2), "FB");
  EXPECT_EQ(get_le(header, 30 + 32 + 2, 2), 62u);
  EXPECT_EQ(get_str(header, 30 + 32 + 4, 62), std::string(62, 'Z'));
}

TEST(ZipLayout, ExactSmallArchiveBytes) {
  const ZipEntrySpec specs[] = {{"ab", 3}, {"c", 0}};
  const ZipLayout layout = plan_zip_layout(specs);
  // "ab": header 0, data_start 32 -> data 64, ends 67. "c": header 67, data_start 98 -> data 128.
  ASSERT_EQ(layout.entries.size(), 2u);
  EXPECT_EQ(layout.entries[0].header_offset, 0u);
  EXPECT_EQ(layout.entries[0].data_offset, 64u);
  EXPECT_EQ(layout.entries[1].header_offset, 67u);
  EXPECT_EQ(layout.entries[1].data_offset, 128u);
  EXPECT_EQ(layout.central_directory_offset, 128u);
  // Directory: (46 + 2) + (46 + 1) bytes, then the 22-byte end record.
  EXPECT_EQ(layout.total_size, 128u + 48 + 47 + 22);

  const std::uint8_t expected_local[] = {
      0x50, 0x4b, 0x03, 0x04,  // Signature.
      20, 0,                   // Version needed: 2.0.
      0x00, 0x08,              // Flags: UTF-8 names.
      0, 0,                    // Stored.
      0, 0, 0, 0,              // Time, date.
      0x78, 0x56, 0x34, 0x12,  // CRC.
      3, 0, 0, 0,              // Compressed size.
      3, 0, 0, 0,              // Uncompressed size.
      2, 0,                    // Name length.
      32, 0,                   // Extra length.
      'a', 'b',                // Name.
      0x46, 0x42, 28, 0,       // "FB", 28 bytes of padding follow.
  };
  const auto local = zip_local_header(layout, 0, 0x12345678);
  ASSERT_EQ(local.size(), 64u);
  for (std::size_t i = 0; i < sizeof expected_local; ++i) {
    EXPECT_EQ(static_cast<std::uint8_t>(local[i]), expected_local[i]) << "byte " << i;
  }
  for (std::size_t i = sizeof expected_local; i < local.size(); ++i) EXPECT_EQ(local[i], std::byte{'Z'});

  const std::uint32_t crcs[] = {0x12345678, 0};
  const auto cd = zip_central_directory(layout, crcs);
  ASSERT_EQ(cd.size(), 48u + 47 + 22);
  const std::uint8_t expected_central0[] = {
      0x50, 0x4b, 0x01, 0x02,  // Signature.
      20, 0, 20, 0,            // Version made by, needed.
      0x00, 0x08, 0, 0,        // Flags, method.
      0, 0, 0, 0,              // Time, date.
      0x78, 0x56, 0x34, 0x12,  // CRC.
      3, 0, 0, 0, 3, 0, 0, 0,  // Sizes.
      2, 0, 0, 0, 0, 0,        // Name, extra, comment lengths.
      0, 0, 0, 0, 0, 0, 0, 0,  // Disk, internal and external attributes.
      0, 0, 0, 0,              // Local header offset.
      'a', 'b',
  };
  for (std::size_t i = 0; i < sizeof expected_central0; ++i) {
    EXPECT_EQ(static_cast<std::uint8_t>(cd[i]), expected_central0[i]) << "byte " << i;
  }
  EXPECT_EQ(get_le(cd, 48 + 42, 4), 67u);  // Second entry's local header offset.
  EXPECT_EQ(get_str(cd, 48 + 46, 1), "c");
  const std::uint8_t expected_eocd[] = {0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 2, 0, 2, 0,
                                        95, 0, 0, 0, 128, 0, 0, 0, 0, 0};
  for (std::size_t i = 0; i < sizeof expected_eocd; ++i) {
    EXPECT_EQ(static_cast<std::uint8_t>(cd[95 + i]), expected_eocd[i]) << "end record byte " << i;
  }
}

// A record written in pieces by several ranks, in any order, plus bytes known at plan time: the CRC
// combined from the pieces is the CRC of the whole record (crc32_update over it, itself checked
// against zlib in crc32_test), and the finishing writes complete exactly what zip_file_bytes writes.
TEST(ZipLayout, RecordCrcsCombineFromPiecesInAnyOrder) {
  const ZipEntrySpec specs[] = {{"a/data.pkl", 7}, {"a/data/0", 1000}, {"a/data/1", 0}};
  const ZipLayout layout = plan_zip_layout(specs);
  std::vector<std::byte> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>((i * 131 + 7) % 251);
  const std::vector<std::byte> pickle = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4},
                                         std::byte{5}, std::byte{6}, std::byte{7}};
  const std::uint64_t base = layout.entries[1].data_offset;
  std::vector<std::vector<ZipCrcPiece>> pieces(3);
  for (std::uint64_t begin : {600u, 0u, 250u, 900u}) {  // out of order, as ranks finish
    const std::uint64_t end = begin == 0 ? 250 : begin == 250 ? 600 : begin == 600 ? 900 : 1000;
    pieces[1].push_back({base + begin, end - begin,
                         crc32_update(0, std::span<const std::byte>(data.data() + begin, end - begin))});
  }
  const std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> fixed = {{layout.entries[0].data_offset, pickle}};
  const std::vector<std::uint32_t> crcs = combine_record_crcs(layout, pieces, fixed);
  ASSERT_EQ(crcs.size(), 3u);
  EXPECT_EQ(crcs[0], crc32_update(0, pickle));
  EXPECT_EQ(crcs[1], crc32_update(0, data));
  EXPECT_EQ(crcs[2], 0u);

  // The whole archive from its parts equals the one-shot writer's.
  std::vector<std::byte> assembled(layout.total_size);
  std::memcpy(assembled.data() + layout.entries[0].data_offset, pickle.data(), pickle.size());
  std::memcpy(assembled.data() + base, data.data(), data.size());
  for (const auto& [offset, bytes] : zip_finish_writes(layout, crcs)) std::memcpy(assembled.data() + offset, bytes.data(), bytes.size());
  const std::vector<ZipBlob> blobs = {{"a/data.pkl", pickle}, {"a/data/0", data}, {"a/data/1", {}}};
  auto whole = zip_file_bytes(blobs);
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  EXPECT_EQ(*whole, assembled);
}

TEST(ZipLayout, OtherAlignments) {
  const ZipEntrySpec specs[] = {{"x/data.pkl", 10}, {"x/data/0", 4097}, {"x/version", 2}};
  const ZipLayout one = plan_zip_layout(specs, 1);
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < one.entries.size(); ++i) {
    EXPECT_EQ(one.entries[i].header_offset, offset);
    EXPECT_EQ(one.entries[i].data_offset, offset + 30 + specs[i].name.size());  // No padding at all.
    offset = one.entries[i].data_offset + specs[i].size;
  }
  const ZipLayout page = plan_zip_layout(specs, 4096);
  for (const auto& e : page.entries) EXPECT_EQ(e.data_offset % 4096, 0u) << e.name;
  // data.pkl: data start 40 -> 4096, ends 4106; data/0: start 4144 -> 8192, ends 12289; version -> 16384.
  EXPECT_EQ(page.entries[0].data_offset, 4096u);
  EXPECT_EQ(page.entries[1].data_offset, 8192u);
  EXPECT_EQ(page.entries[2].data_offset, 16384u);
}

TEST(ZipLayout, CheckRejectsWhatCannotBeWritten) {
  const ZipEntrySpec ok[] = {{"a", 1}};
  EXPECT_TRUE(check_zip_entries(ok, 64).ok());
  EXPECT_TRUE(check_zip_entries(ok, 1).ok());
  EXPECT_TRUE(check_zip_entries(ok, kMaxZipAlignment).ok());
  for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{3}, std::uint64_t{96}, kMaxZipAlignment * 2}) {
    const auto s = check_zip_entries(ok, bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("alignment " + std::to_string(bad)), std::string::npos) << s.message();
  }
  const ZipEntrySpec long_name[] = {{std::string(65536, 'n'), 1}};
  EXPECT_EQ(check_zip_entries(long_name).code(), StatusCode::kInvalidArgument);
  const ZipEntrySpec max_name[] = {{std::string(65535, 'n'), 1}};
  EXPECT_TRUE(check_zip_entries(max_name).ok());
  const ZipEntrySpec huge[] = {{"a", UINT64_MAX / 2}, {"b", UINT64_MAX / 2}};
  EXPECT_EQ(check_zip_entries(huge).code(), StatusCode::kInvalidArgument);
}

TEST(ZipLayout, Zip64EndRecordsStartAt65535Entries) {
  auto end_records_size = [](std::size_t n) {
    std::vector<ZipEntrySpec> specs(n, ZipEntrySpec{"r", 0});
    const ZipLayout layout = plan_zip_layout(specs);
    std::uint64_t cd = 0;
    for (const auto& e : layout.entries) cd += 46 + e.name.size();
    return layout.total_size - layout.central_directory_offset - cd;
  };
  EXPECT_EQ(end_records_size(65534), 22u);
  EXPECT_EQ(end_records_size(65535), 22u + 56 + 20);
}

// A 5 GiB record between small ones. Expected offsets worked out by hand from the rules:
//   big/data.pkl (12-byte name): header 0, data start 42 -> 64, ends 74.
//   big/data/0 (10): header 74, data start 74+30+10+20 (ZIP64 extra) = 134 -> 192, ends 192 + 5 GiB.
//   big/data/1 (10): header 5368709312, data start +40 -> 5368709376, 10 bytes, ends 5368709386.
//   big/version (11): header 5368709386, data start +41 = 5368709427 -> 5368709440, ends 5368709442.
//   Directory: (46+12) + (46+10+4+16) + (46+10+4+8) + (46+11+4+8) = 271 bytes,
//   then ZIP64 record (56) + locator (20) + end record (22): total 5368709442 + 271 + 98.
const ZipEntrySpec kBigSpecs[] = {
    {"big/data.pkl", 10}, {"big/data/0", 5 * kGiB}, {"big/data/1", 10}, {"big/version", 2}};
constexpr std::uint64_t kBigHeader[] = {0, 74, 5368709312, 5368709386};
constexpr std::uint64_t kBigData[] = {64, 192, 5368709376, 5368709440};
constexpr std::uint64_t kBigCd = 5368709442;
constexpr std::uint64_t kBigTotal = 5368709442 + 271 + 98;

TEST(ZipLayout, Zip64FieldsForAFiveGibRecord) {
  const ZipLayout layout = plan_zip_layout(kBigSpecs);
  ASSERT_EQ(layout.entries.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(layout.entries[i].header_offset, kBigHeader[i]) << i;
    EXPECT_EQ(layout.entries[i].data_offset, kBigData[i]) << i;
  }
  EXPECT_EQ(layout.central_directory_offset, kBigCd);
  EXPECT_EQ(layout.total_size, kBigTotal);

  // Local header of the big record: placeholders, version 4.5, ZIP64 extra with both sizes, padding.
  const auto local = zip_local_header(layout, 1, 0xAABBCCDD);
  ASSERT_EQ(local.size(), 192u - 74);
  EXPECT_EQ(get_le(local, 4, 2), 45u);
  EXPECT_EQ(get_le(local, 14, 4), 0xAABBCCDDu);
  EXPECT_EQ(get_le(local, 18, 4), 0xFFFFFFFFu);
  EXPECT_EQ(get_le(local, 22, 4), 0xFFFFFFFFu);
  EXPECT_EQ(get_le(local, 26, 2), 10u);
  EXPECT_EQ(get_le(local, 28, 2), 20u + 58);
  EXPECT_EQ(get_str(local, 30, 10), "big/data/0");
  EXPECT_EQ(get_le(local, 40, 2), 1u);   // ZIP64 extra id.
  EXPECT_EQ(get_le(local, 42, 2), 16u);  // Both sizes.
  EXPECT_EQ(get_le(local, 44, 8), 5 * kGiB);
  EXPECT_EQ(get_le(local, 52, 8), 5 * kGiB);
  EXPECT_EQ(get_str(local, 60, 2), "FB");
  EXPECT_EQ(get_le(local, 62, 2), 54u);
  // Small records stay version 2.0 with real sizes, even past 4 GiB (offsets are not in the local header).
  const auto small = zip_local_header(layout, 2, 0);
  EXPECT_EQ(get_le(small, 4, 2), 20u);
  EXPECT_EQ(get_le(small, 18, 4), 10u);

  const std::uint32_t crcs[] = {1, 2, 3, 4};
  const auto cd = zip_central_directory(layout, crcs);
  ASSERT_EQ(cd.size(), 271u + 98);
  // Entry 1 (at 58): sizes in the ZIP64 extra, header offset 74 in its 32-bit field.
  EXPECT_EQ(get_le(cd, 58 + 6, 2), 45u);
  EXPECT_EQ(get_le(cd, 58 + 16, 4), 2u);
  EXPECT_EQ(get_le(cd, 58 + 20, 4), 0xFFFFFFFFu);
  EXPECT_EQ(get_le(cd, 58 + 24, 4), 0xFFFFFFFFu);
  EXPECT_EQ(get_le(cd, 58 + 30, 2), 20u);
  EXPECT_EQ(get_le(cd, 58 + 42, 4), 74u);
  EXPECT_EQ(get_le(cd, 58 + 56, 2), 1u);
  EXPECT_EQ(get_le(cd, 58 + 58, 2), 16u);
  EXPECT_EQ(get_le(cd, 58 + 60, 8), 5 * kGiB);
  EXPECT_EQ(get_le(cd, 58 + 68, 8), 5 * kGiB);
  // Entry 2 (at 134): real sizes, header offset in the ZIP64 extra.
  EXPECT_EQ(get_le(cd, 134 + 20, 4), 10u);
  EXPECT_EQ(get_le(cd, 134 + 42, 4), 0xFFFFFFFFu);
  EXPECT_EQ(get_le(cd, 134 + 30, 2), 12u);
  EXPECT_EQ(get_le(cd, 134 + 58, 2), 8u);
  EXPECT_EQ(get_le(cd, 134 + 60, 8), 5368709312u);
  // ZIP64 end record, locator, end record.
  EXPECT_EQ(get_le(cd, 271, 4), 0x06064b50u);
  EXPECT_EQ(get_le(cd, 271 + 4, 8), 44u);
  EXPECT_EQ(get_le(cd, 271 + 24, 8), 4u);
  EXPECT_EQ(get_le(cd, 271 + 32, 8), 4u);
  EXPECT_EQ(get_le(cd, 271 + 40, 8), 271u);
  EXPECT_EQ(get_le(cd, 271 + 48, 8), kBigCd);
  EXPECT_EQ(get_le(cd, 327, 4), 0x07064b50u);
  EXPECT_EQ(get_le(cd, 327 + 8, 8), kBigCd + 271);
  EXPECT_EQ(get_le(cd, 327 + 16, 4), 1u);
  EXPECT_EQ(get_le(cd, 347, 4), 0x06054b50u);
  EXPECT_EQ(get_le(cd, 347 + 10, 2), 4u);
  EXPECT_EQ(get_le(cd, 347 + 12, 4), 271u);
  EXPECT_EQ(get_le(cd, 347 + 16, 4), 0xFFFFFFFFu);
}

// ------------------------------------------------------------------------------------------------
// Files

struct Blob {
  std::string name;
  std::vector<std::byte> data;
};

void expect_round_trip(const std::string& path, const std::vector<Blob>& blobs, std::uint64_t alignment) {
  std::vector<ZipBlob> views;
  std::vector<ZipEntrySpec> specs;
  for (const Blob& b : blobs) {
    views.push_back({b.name, b.data});
    specs.push_back({b.name, b.data.size()});
  }
  ASSERT_TRUE(write_zip_file(path, views, alignment).ok());
  const ZipLayout layout = plan_zip_layout(specs, alignment);
  EXPECT_EQ(fs::file_size(path), layout.total_size);

  auto reader = ZipReader::open_path(path);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  ASSERT_EQ(reader->records().size(), blobs.size());
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    const ZipRecord& r = reader->records()[i];
    EXPECT_EQ(r.name, blobs[i].name);
    EXPECT_EQ(r.size, blobs[i].data.size());
    EXPECT_EQ(r.local_header_offset, layout.entries[i].header_offset);
    EXPECT_EQ(r.data_offset, layout.entries[i].data_offset);
    EXPECT_EQ(r.data_offset % alignment, 0u) << r.name;
    EXPECT_EQ(r.crc32, crc32_update(0, blobs[i].data));
    EXPECT_TRUE(reader->verify_crc(r).ok());
    const auto v = reader->view(r);
    EXPECT_TRUE(std::equal(v.begin(), v.end(), blobs[i].data.begin(), blobs[i].data.end())) << r.name;
    EXPECT_EQ(reader->find(blobs[i].name), &r);
  }
}

TEST_F(ZipWriterTest, RoundTripVariedNamesAndSizes) {
  const std::vector<Blob> blobs = {
      {"archive/data.pkl", random_bytes(100, 1)},
      {"archive/empty", {}},
      {"archive/données/ü — 名前.bin", random_bytes(65, 2)},
      {"archive/" + std::string(300, 'L'), random_bytes(1, 3)},
      {std::string(34, 'p'), random_bytes(64, 4)},
      {"archive/data/0", random_bytes(100000, 5)},
      {"archive/version", to_bytes("3\n")},
  };
  expect_round_trip(file("varied.zip"), blobs, 64);
  expect_round_trip(file("varied_1.zip"), blobs, 1);
  expect_round_trip(file("varied_4096.zip"), blobs, 4096);
}

TEST_F(ZipWriterTest, RoundTripManyRecords) {
  std::vector<Blob> blobs;
  for (int i = 0; i < 500; ++i) {
    blobs.push_back({"many/data/" + std::to_string(i), random_bytes(static_cast<std::size_t>((i * 37) % 1000), i)});
  }
  expect_round_trip(file("many.zip"), blobs, 64);
}

TEST_F(ZipWriterTest, EmptyArchiveIsOneEndRecord) {
  const std::string path = file("empty.zip");
  ASSERT_TRUE(write_zip_file(path, {}).ok());
  auto mapped = MappedFile::open(path);
  ASSERT_TRUE(mapped.ok());
  ASSERT_EQ((*mapped)->size(), 22u);
  EXPECT_EQ(get_le((*mapped)->bytes(), 0, 4), 0x06054b50u);
  for (std::size_t i = 4; i < 22; ++i) EXPECT_EQ((*mapped)->bytes()[i], std::byte{0});
  auto reader = ZipReader::open(*mapped);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  EXPECT_TRUE(reader->records().empty());
}

TEST_F(ZipWriterTest, OverwritesALongerFile) {
  const std::string path = file("over.zip");
  const std::vector<std::byte> big(100000, std::byte{7});
  const ZipBlob first[] = {{"a", big}};
  ASSERT_TRUE(write_zip_file(path, first).ok());
  const auto small = to_bytes("hi");
  const ZipBlob second[] = {{"b", small}};
  ASSERT_TRUE(write_zip_file(path, second).ok());
  auto reader = ZipReader::open_path(path);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  ASSERT_EQ(reader->records().size(), 1u);
  EXPECT_EQ(reader->records()[0].name, "b");
  EXPECT_EQ(fs::file_size(path), 64u + 2 + 47 + 22);
}

TEST_F(ZipWriterTest, SixtyFiveThousandRecordsUseZip64EndRecords) {
  // Built in memory from the header functions, read back from memory.
  std::vector<ZipEntrySpec> specs;
  for (int i = 0; i < 70000; ++i) specs.push_back({"r/" + std::to_string(i), static_cast<std::uint64_t>(i % 3)});
  const ZipLayout layout = plan_zip_layout(specs);
  std::vector<std::byte> bytes(layout.total_size, std::byte{0});
  std::vector<std::uint32_t> crcs;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto& e = layout.entries[i];
    for (std::uint64_t k = 0; k < e.size; ++k) bytes[e.data_offset + k] = static_cast<std::byte>('a' + i % 26);
    crcs.push_back(crc32_update(0, std::span<const std::byte>(bytes).subspan(e.data_offset, e.size)));
    const auto header = zip_local_header(layout, i, crcs.back());
    ASSERT_EQ(header.size(), e.data_offset - e.header_offset);
    std::memcpy(bytes.data() + e.header_offset, header.data(), header.size());
  }
  const auto cd = zip_central_directory(layout, crcs);
  ASSERT_EQ(layout.central_directory_offset + cd.size(), layout.total_size);
  std::memcpy(bytes.data() + layout.central_directory_offset, cd.data(), cd.size());
  // The 16-bit count holds the placeholder; the ZIP64 record the real count.
  EXPECT_EQ(get_le(bytes, bytes.size() - 22 + 10, 2), 0xFFFFu);
  EXPECT_EQ(get_le(bytes, bytes.size() - 98 + 32, 8), 70000u);

  auto reader = ZipReader::open(MappedFile::from_bytes("many.zip", std::move(bytes)));
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  ASSERT_EQ(reader->records().size(), 70000u);
  for (int i : {0, 1, 2, 65534, 65535, 69999}) {
    const ZipRecord* r = reader->find("r/" + std::to_string(i));
    ASSERT_NE(r, nullptr) << i;
    EXPECT_EQ(r->size, static_cast<std::uint64_t>(i % 3));
    EXPECT_EQ(r->data_offset, layout.entries[i].data_offset);
    EXPECT_TRUE(reader->verify_crc(*r).ok());
  }
}

TEST_F(ZipWriterTest, RealSparseArchiveLargerThanFourGib) {
  const std::string path = file("sparse64.zip");
  const ZipLayout layout = plan_zip_layout(kBigSpecs);
  ASSERT_EQ(layout.total_size, kBigTotal);
  const auto pkl = to_bytes("0123456789");
  const auto tail = to_bytes("tail-bytes");
  const auto version = to_bytes("3\n");
  const std::span<const std::byte> small[] = {pkl, {}, tail, version};
  const std::uint32_t crcs[] = {crc32_update(0, pkl), zeros_crc(5 * kGiB), crc32_update(0, tail),
                                crc32_update(0, version)};
  // Independent value: Python's zlib.crc32 over 5 GiB of zeros (see crc32_test.cc).
  ASSERT_EQ(crcs[1], 0x193838C3u);

  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(layout.total_size)), 0);  // The big record stays a hole.
  auto put = [&](std::span<const std::byte> b, std::uint64_t at) {
    ASSERT_EQ(::pwrite(fd, b.data(), b.size(), static_cast<off_t>(at)), static_cast<ssize_t>(b.size()));
  };
  for (std::size_t i = 0; i < 4; ++i) {
    put(zip_local_header(layout, i, crcs[i]), layout.entries[i].header_offset);
    put(small[i], layout.entries[i].data_offset);
  }
  put(zip_central_directory(layout, crcs), layout.central_directory_offset);
  ASSERT_EQ(::close(fd), 0);
  ASSERT_EQ(fs::file_size(path), kBigTotal);

  auto reader = ZipReader::open_path(path);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  ASSERT_EQ(reader->records().size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    const ZipRecord& r = reader->records()[i];
    EXPECT_EQ(r.name, kBigSpecs[i].name);
    EXPECT_EQ(r.size, kBigSpecs[i].size);
    EXPECT_EQ(r.local_header_offset, kBigHeader[i]);
    EXPECT_EQ(r.data_offset, kBigData[i]);
    EXPECT_EQ(r.crc32, crcs[i]);
    if (i != 1) {
      EXPECT_TRUE(reader->verify_crc(r).ok()) << r.name;  // Records 2 and 3 lie past 4 GiB.
    }
  }
  const auto last = reader->view(reader->records()[2]);
  EXPECT_EQ(get_str(last, 0, last.size()), "tail-bytes");
  auto end_of_big = reader->view(reader->records()[1], 5 * kGiB - 16, 16);
  ASSERT_TRUE(end_of_big.ok());
  for (std::byte b : *end_of_big) EXPECT_EQ(b, std::byte{0});
}

TEST_F(ZipWriterTest, DiskFullIsResourceExhausted) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const auto data = random_bytes(1000, 9);
  const ZipBlob blobs[] = {{"x", data}};
  const auto s = write_zip_file("/dev/full", blobs);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  EXPECT_NE(s.message().find("no space left on device while writing '/dev/full'"), std::string::npos)
      << s.message();
}

TEST_F(ZipWriterTest, MissingDirectoryIsNotFound) {
  const std::string path = file("no/such/dir/x.zip");
  const auto s = write_zip_file(path, {});
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.to_string();
  EXPECT_NE(s.message().find("'" + path + "'"), std::string::npos) << s.message();
}

TEST_F(ZipWriterTest, BadAlignmentIsInvalidArgument) {
  const std::string path = file("x.zip");
  const auto s = write_zip_file(path, {}, 48);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("'" + path + "'"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace ucp::format
