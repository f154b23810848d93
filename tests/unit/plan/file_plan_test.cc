// to-fp32 planning without any file: HF sharding rules, memory-bounded rounds, ownership,
// byte-exact coverage of every output file, determinism.
#include "ucp/plan/file_plan.h"

#include <gtest/gtest.h>

#include <map>

#include "testutil/status_matchers.h"
#include "ucp/format/pickle_reader.h"

namespace ucp::plan {
namespace {
using base::DType;

// A tensor of `numel` fp32 elements stored contiguously in source file `file` at `offset`.
LogicalTensor tensor(std::string name, std::uint64_t numel, std::uint32_t file, std::uint64_t offset,
                     DType dtype = DType::kF32) {
  LogicalTensor t{std::move(name), {static_cast<std::int64_t>(numel)}, dtype, TensorRole::kTrainable, -1, {}};
  if (numel) t.pieces.push_back({{file, offset, numel, dtype}, 0});
  return t;
}

std::vector<std::string> sources(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("src" + std::to_string(i));
  return v;
}

TEST(FilePlan, HuggingFaceShardingRules) {
  SourceLayout layout;
  layout.tensors = {tensor("t0", 3, 0, 0), tensor("t1", 3, 0, 12), tensor("big", 10, 1, 0), tensor("t3", 2, 1, 40)};
  PlanOptions opt;
  opt.max_shard_bytes = 5 * 4;  // five fp32 elements
  auto plan = plan_consolidated(layout, sources(2), opt);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  // t0 alone (t1 would overflow it), "big" in a shard of its own appended at once, then t1 + t3,
  // numbered when it closes: what huggingface_hub.split_torch_state_dict_into_shards gives
  // ({'t0': 1, 'big': 2, 't1': 3, 't3': 3}).
  ASSERT_EQ(plan->files.size(), 3u);
  EXPECT_EQ(plan->files[0].name, "model-00001-of-00003.safetensors");
  EXPECT_EQ(plan->tensors[0].file, 0);
  EXPECT_EQ(plan->tensors[1].file, 2);
  EXPECT_EQ(plan->tensors[2].file, 1);
  EXPECT_EQ(plan->tensors[3].file, 2);
  // The index is the plan's one small file, written by rank 0.
  ASSERT_EQ(plan->small_files.size(), 1u);
  const std::string& index_name = plan->small_files[0].name;
  const std::string& index_json = plan->small_files[0].bytes;
  EXPECT_EQ(index_name, "model.safetensors.index.json");
  EXPECT_NE(index_json.find("\"total_size\": 72"), std::string::npos) << index_json;
  EXPECT_NE(index_json.find("\"t3\": \"model-00003-of-00003.safetensors\""), std::string::npos);
  EXPECT_EQ(index_json.back(), '\n');
  EXPECT_EQ(hf_shard_name(OutputFormat::kTorch, 0, 1), "pytorch_model.bin");
  EXPECT_EQ(hf_shard_name(OutputFormat::kTorch, 1, 12), "pytorch_model-00002-of-00012.bin");
}

// A matrix stored as two column halves (a chunk cut along dimension 1, as in a 2x2 DCP mesh):
// each half is one strided piece; the plan keeps it one transfer while it fits, cuts it between
// rows when it does not, and every output byte is written once (finish_plan proves it), also
// into a torch zip whose record CRC then comes from per-row pieces.
TEST(FilePlan, StridedPiecesAreCutBetweenRows) {
  const std::int64_t rows = 64, cols = 4096, half = cols / 2;
  LogicalTensor w{"w", {rows, cols}, DType::kF32, TensorRole::kStored, -1, {}};
  for (std::int64_t h = 0; h < 2; ++h) {
    auto pieces = format::box_pieces({rows, cols}, {0, h * half}, {rows, half},
                                     {static_cast<std::uint32_t>(h), 0, static_cast<std::uint64_t>(rows * half), DType::kF32});
    ASSERT_TRUE(pieces.ok());
    ASSERT_EQ(pieces->size(), 1u);
    w.pieces.push_back((*pieces)[0]);
  }
  SourceLayout layout;
  layout.tensors = {w};
  for (OutputFormat format : {OutputFormat::kSafetensors, OutputFormat::kTorch})
    for (std::uint64_t max_transfer : {std::uint64_t{64} << 20, std::uint64_t{5} * half * 4, std::uint64_t{1000}}) {
      PlanOptions opt;
      opt.format = format;
      opt.max_transfer_bytes = max_transfer;
      opt.world_size = 2;
      auto plan = plan_consolidated(layout, sources(2), opt);
      ASSERT_TRUE(plan.ok()) << plan.status().to_string();
      std::uint64_t transfers = 0, row_writes = 0;
      for (const auto& round : plan->rounds)
        for (const Transfer& x : round) {
          ++transfers;
          EXPECT_LE(x.out_bytes(), std::max<std::uint64_t>(max_transfer, 1000));
          EXPECT_EQ(x.row_bytes() * x.rows, x.out_bytes());
          if (x.rows > 1) EXPECT_EQ(x.dst_row_stride, static_cast<std::uint64_t>(cols) * 4);
          row_writes += x.rows;
        }
      if (max_transfer == (std::uint64_t{64} << 20)) EXPECT_EQ(transfers, 2u);             // one per chunk
      if (max_transfer == std::uint64_t{5} * half * 4) EXPECT_EQ(transfers, 2u * 13);       // 5 rows each
      if (max_transfer == 1000) EXPECT_EQ(transfers, 2u * rows * ((half * 4 + 999) / 1000));  // rows cut
      EXPECT_GE(row_writes, 2u * rows);
    }
}

TEST(FilePlan, SingleFileHasNoIndex) {
  SourceLayout layout;
  layout.tensors = {tensor("w", 100, 0, 64)};
  auto plan = plan_consolidated(layout, sources(1), {});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->files.size(), 1u);
  EXPECT_EQ(plan->files[0].name, "model.safetensors");
  EXPECT_TRUE(plan->small_files.empty());
}

TEST(FilePlan, RoundsRespectTheMemoryBound) {
  SourceLayout layout;
  constexpr std::uint64_t kElems = 2u << 20;  // 8 MiB each
  for (std::uint32_t i = 0; i < 24; ++i) layout.tensors.push_back(tensor("p" + std::to_string(i), kElems, i % 6, 0));
  for (int world : {1, 2, 3, 4}) {
    SCOPED_TRACE(world);
    PlanOptions opt;
    opt.world_size = world;
    opt.max_memory = 48ull << 20;
    opt.max_shard_bytes = 40ull << 20;
    auto plan = plan_consolidated(layout, sources(6), opt);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    EXPECT_GT(plan->rounds.size(), 1u);
    std::uint64_t written = 0;
    for (int r = 0; r < world; ++r) {
      const auto& t = plan->totals[static_cast<std::size_t>(r)];
      EXPECT_LE(t.peak_round_bytes, opt.max_memory) << "rank " << r;
      written += t.bytes_written;
    }
    EXPECT_EQ(written, 24 * kElems * 4);
    // Each round's send/receive per rank recomputed independently.
    for (const auto& round : plan->rounds) {
      std::map<int, std::uint64_t> mem;
      for (const auto& x : round) {
        mem[x.reader] += x.out_bytes();
        mem[x.writer] += x.out_bytes();
      }
      for (const auto& [r, b] : mem) EXPECT_LE(b, opt.max_memory) << "rank " << r;
    }
    // Every source file is read by exactly one rank, and by the rank the plan names.
    for (const auto& round : plan->rounds)
      for (const auto& x : round) EXPECT_EQ(x.reader, plan->source_reader[x.src.file]);
    EXPECT_TRUE(check_file_coverage(*plan).ok());
  }
}

TEST(FilePlan, FilesGoToTheRankThatReadsThemWithinAFairShare) {
  // Four sources of equal size, each holding whole tensors of four shards: at 2 and 4 ranks
  // every shard is owned by the reader of its bytes, so nothing crosses ranks; at 3 ranks the
  // loads stay within 10 % over the even share.
  SourceLayout layout;
  constexpr std::uint64_t kElems = 1u << 20;
  for (std::uint32_t i = 0; i < 16; ++i) layout.tensors.push_back(tensor("p" + std::to_string(i), kElems, i / 4, (i % 4) * kElems * 4));
  for (int world : {2, 3, 4}) {
    SCOPED_TRACE(world);
    PlanOptions opt;
    opt.world_size = world;
    opt.max_shard_bytes = 4 * kElems * 4;  // one source's worth per shard
    auto plan = plan_consolidated(layout, sources(4), opt);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    ASSERT_EQ(plan->files.size(), 4u);
    std::uint64_t sent = 0, most = 0;
    std::map<int, std::uint64_t> load;
    for (const auto& f : plan->files) load[f.owner] += f.size;
    for (const auto& [r, bytes] : load) most = std::max(most, bytes);
    for (const auto& t : plan->totals) sent += t.bytes_sent;
    if (world != 3) EXPECT_EQ(sent, 0u);
    else EXPECT_EQ(sent, 4 * kElems * 4);  // one shard's tensors move
    EXPECT_LE(most, 2 * plan->files[3].size);  // the largest (its header has one more digit)
    EXPECT_TRUE(check_file_coverage(*plan).ok());
  }
}

TEST(FilePlan, DtypeCastAppliesToFloatsOnly) {
  SourceLayout layout;
  layout.tensors = {tensor("w", 10, 0, 0), tensor("steps", 1, 0, 100, DType::kI64), tensor("h", 4, 0, 200, DType::kF16)};
  PlanOptions opt;
  opt.float_dtype = DType::kBF16;
  auto plan = plan_consolidated(layout, sources(1), opt);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(plan->tensors[0].nbytes, 20u);
  EXPECT_EQ(plan->tensors[1].dtype, DType::kI64);
  EXPECT_EQ(plan->tensors[2].dtype, DType::kBF16);
}

TEST(FilePlan, TorchAliasesShareOneStorage) {
  SourceLayout layout;
  layout.tensors = {tensor("emb", 6, 0, 0), tensor("b", 2, 0, 64)};
  LogicalTensor alias{"head", {6}, DType::kF32, TensorRole::kAlias, 0, {}};
  layout.tensors.push_back(alias);
  PlanOptions opt;
  opt.format = OutputFormat::kTorch;
  auto plan = plan_consolidated(layout, sources(1), opt);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  ASSERT_EQ(plan->files.size(), 1u);
  EXPECT_EQ(plan->files[0].name, "pytorch_model.bin");
  EXPECT_EQ(plan->tensors[2].shares_storage_with, 0);
  EXPECT_EQ(plan->tensors[2].file_offset, plan->tensors[0].file_offset);
  ASSERT_EQ(plan->files[0].zips.size(), 1u);
  EXPECT_EQ(plan->files[0].zips[0].layout.entries.size(), 5u);  // data.pkl, data/0, data/1, version, byteorder
  for (const auto& e : plan->files[0].zips[0].layout.entries) EXPECT_EQ(e.data_offset % 64, 0u) << e.name;
  // The pickle names three tensors over two storages.
  const auto& pkl = plan->files[0].fixed.front().second;
  std::map<std::string, format::ValuePtr> storages;  // torch dedupes persistent ids by key too
  auto root = format::read_pickle(pkl, [&](const format::ValuePtr& pid) -> base::Result<format::ValuePtr> {
    auto& v = storages[pid->items.at(2)->str];
    if (!v) {
      auto st = std::make_shared<format::Storage>();
      st->key = pid->items.at(2)->str;
      st->numel = static_cast<std::uint64_t>(pid->items.at(4)->i);
      st->dtype = DType::kF32;
      v = std::make_shared<format::Value>();
      v->kind = format::Value::Kind::kStorage;
      v->storage = st;
    }
    return v;
  });
  EXPECT_EQ(storages.size(), 2u);
  ASSERT_TRUE(root.ok()) << root.status().to_string();
  ASSERT_TRUE((*root)->is_dict());
  EXPECT_EQ((*root)->entries.size(), 3u);
  EXPECT_EQ((*root)->get("head")->tensor.storage.get(), (*root)->get("emb")->tensor.storage.get());
  // Safetensors cannot share: the alias becomes a copy read from the same source.
  opt.format = OutputFormat::kSafetensors;
  auto st = plan_consolidated(layout, sources(1), opt);
  ASSERT_TRUE(st.ok());
  EXPECT_NE(st->tensors[2].file_offset, st->tensors[0].file_offset);
  EXPECT_EQ(st->tensors[2].nbytes, 24u);
}

TEST(FilePlan, DeterministicDigest) {
  SourceLayout layout;
  for (std::uint32_t i = 0; i < 10; ++i) layout.tensors.push_back(tensor("p" + std::to_string(i), 1000 + i, i % 3, 0));
  PlanOptions opt;
  opt.world_size = 3;
  auto a = plan_consolidated(layout, sources(3), opt);
  auto b = plan_consolidated(layout, sources(3), opt);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->digest(), b->digest());
  opt.world_size = 2;
  auto c = plan_consolidated(layout, sources(3), opt);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->digest(), c->digest());
}

TEST(FilePlan, TooLittleMemoryIsAnArgumentError) {
  SourceLayout layout;
  layout.tensors = {tensor("w", 10, 0, 0)};
  PlanOptions opt;
  opt.max_memory = 1 << 20;
  EXPECT_THAT(plan_consolidated(layout, sources(1), opt),
              testutil::StatusIs(base::StatusCode::kInvalidArgument, ::testing::HasSubstr("--max-memory")));
}

}  // namespace
}  // namespace ucp::plan
