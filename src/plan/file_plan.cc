#include "ucp/plan/file_plan.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "ucp/base/checked_math.h"
#include "ucp/base/size.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/pickle_writer.h"
#include "ucp/format/safetensors.h"
#include "ucp/format/value.h"

namespace ucp::plan {
using base::DType;
using base::Result;
using base::Status;

namespace {

// Conversions read through a bounce buffer of this size; it counts against the memory bound.
constexpr std::uint64_t kBounceBytes = kConvertBounceBytes;
constexpr std::uint64_t kMinMemory = 32ull << 20;

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

// Hugging Face's greedy split (huggingface_hub split_state_dict_into_shards_factory): in order, a
// tensor larger than the limit gets a shard of its own at once, otherwise a new shard starts when
// the running size would exceed the limit. Tensors sharing storage follow their first name. Shards
// are numbered as HF appends them to its list: an oversized tensor's at once, the running shard
// when it closes (so [a, BIG, b] gives BIG file 1 and a, b file 2).
std::vector<int> hf_split(const std::vector<OutputTensor>& tensors, const std::vector<int>& follows,
                          std::uint64_t limit, int& shard_count) {
  std::vector<int> shard(tensors.size(), -1);
  std::vector<std::size_t> running;  // members of the shard being filled
  std::uint64_t running_size = 0;
  int next_id = 0;
  auto close = [&] {
    if (running.empty()) return;
    for (std::size_t j : running) shard[j] = next_id;
    ++next_id;
    running.clear();
    running_size = 0;
  };
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (follows[i] >= 0) continue;
    const std::uint64_t size = tensors[i].nbytes;
    if (size > limit) {
      shard[i] = next_id++;
      continue;
    }
    if (running_size + size > limit) close();
    running.push_back(i);
    running_size += size;
  }
  close();
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (follows[i] >= 0) shard[i] = shard[static_cast<std::size_t>(follows[i])];
  shard_count = next_id;
  return shard;
}

void fnv(std::uint64_t& h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
}
template <typename T>
void fnv_value(std::uint64_t& h, const T& v) {
  fnv(h, &v, sizeof v);
}
void fnv_str(std::uint64_t& h, const std::string& s) {
  fnv_value(h, s.size());
  fnv(h, s.data(), s.size());
}

Status build_safetensors_file(OutputFile& file, std::vector<OutputTensor>& tensors, const std::vector<int>& members) {
  std::vector<format::SafetensorsTensorSpec> specs;
  for (int i : members) {
    const auto& t = tensors[static_cast<std::size_t>(i)];
    specs.push_back({t.name, t.dtype, t.shape});
  }
  UCP_ASSIGN_OR_RETURN(format::SafetensorsLayout layout, format::plan_safetensors(specs));
  for (std::size_t k = 0; k < members.size(); ++k)
    tensors[static_cast<std::size_t>(members[k])].file_offset = layout.placements[k].file_offset;
  std::vector<std::byte> header(layout.header.size());
  std::memcpy(header.data(), layout.header.data(), header.size());
  file.fixed.emplace_back(0, std::move(header));
  file.size = layout.total_size;
  return {};
}

}  // namespace

format::ValuePtr ordered_dict_root(std::vector<std::pair<std::string, format::ValuePtr>> tensors) {
  std::vector<std::pair<format::ValuePtr, format::ValuePtr>> entries;
  for (auto& [name, value] : tensors) entries.emplace_back(format::Value::string(name), std::move(value));
  return format::Value::dict(std::move(entries), /*ordered=*/true);
}

namespace {

// Storages the root holds besides the planned tensors' (tensors inside a DCP non-tensor item, such
// as a tuple of tensors), in pickling order: their bytes are known at plan time.
void collect_foreign_storages(const format::ValuePtr& v, const std::map<const format::Storage*, std::string>& planned,
                              std::vector<std::shared_ptr<format::Storage>>& out) {
  if (!v) return;
  if (v->kind == format::Value::Kind::kTensor && v->tensor.storage && !planned.count(v->tensor.storage.get()) &&
      std::find(out.begin(), out.end(), v->tensor.storage) == out.end())
    out.push_back(v->tensor.storage);
  if (v->kind == format::Value::Kind::kStorage && v->storage && !planned.count(v->storage.get()) &&
      std::find(out.begin(), out.end(), v->storage) == out.end())
    out.push_back(v->storage);
  if (format::may_have_children(*v))
    format::for_each_child(*v, [&](const format::ValuePtr& c) { collect_foreign_storages(c, planned, out); });
}

}  // namespace

// One storage record per distinct tensor, aliases pickled as a second reference to the same
// storage (as torch.save does for tied weights). Storages the root brings of its own (non-tensor
// values holding tensors) follow as records whose bytes are fixed at plan time.
Status build_torch_file(OutputFile& file, std::vector<OutputTensor>& tensors, const std::vector<int>& members,
                        const TorchRootFn& make_root) {
  std::map<int, std::shared_ptr<format::Storage>> storage_of;  // tensor index -> storage
  std::vector<int> storage_tensor;                              // key -> tensor index
  std::map<const format::Storage*, std::string> key_of;
  std::vector<std::pair<std::string, format::ValuePtr>> entries;
  for (int i : members) {
    const auto& t = tensors[static_cast<std::size_t>(i)];
    const int owner = t.shares_storage_with >= 0 ? t.shares_storage_with : i;
    auto& st = storage_of[owner];
    if (!st) {
      const auto& src = tensors[static_cast<std::size_t>(owner)];
      st = std::make_shared<format::Storage>();
      st->dtype = src.dtype;
      st->numel = src.nbytes / base::dtype_size(src.dtype);
      st->key = std::to_string(storage_tensor.size());
      key_of[st.get()] = st->key;
      storage_tensor.push_back(owner);
    }
    format::Tensor tensor;
    tensor.storage = st;
    tensor.shape = t.shape;
    tensor.stride = format::Tensor::contiguous_strides(t.shape);
    tensor.requires_grad = t.requires_grad;
    entries.emplace_back(t.name, format::Value::tensor_value(std::move(tensor)));
  }
  format::ValuePtr root = make_root(std::move(entries));
  std::vector<std::shared_ptr<format::Storage>> foreign;
  collect_foreign_storages(root, key_of, foreign);
  for (const auto& st : foreign) key_of[st.get()] = std::to_string(key_of.size());
  UCP_ASSIGN_OR_RETURN(std::vector<std::byte> pickle,
                       format::write_pickle(root, [&](const std::shared_ptr<format::Storage>& s) { return key_of.at(s.get()); }));

  std::vector<std::uint64_t> record_bytes;
  for (int k : storage_tensor) record_bytes.push_back(tensors[static_cast<std::size_t>(k)].nbytes);
  for (const auto& st : foreign) record_bytes.push_back(st->bytes.size());
  const std::vector<std::uint64_t> offsets = lay_out_torch_zip(file, std::move(pickle), record_bytes);
  for (std::size_t k = 0; k < storage_tensor.size(); ++k)
    tensors[static_cast<std::size_t>(storage_tensor[k])].file_offset = offsets[k];
  for (std::size_t k = 0; k < foreign.size(); ++k)
    if (!foreign[k]->bytes.empty())
      file.fixed.emplace_back(offsets[storage_tensor.size() + k],
                              std::vector<std::byte>(foreign[k]->bytes.begin(), foreign[k]->bytes.end()));
  for (int i : members) {
    auto& t = tensors[static_cast<std::size_t>(i)];
    if (t.shares_storage_with >= 0) t.file_offset = tensors[static_cast<std::size_t>(t.shares_storage_with)].file_offset;
  }
  return {};
}

LogicalTensor verbatim_tensor(std::string name, const format::TensorLocation& src) {
  LogicalTensor lt;
  lt.name = std::move(name);
  lt.shape = {static_cast<std::int64_t>(src.numel)};
  lt.dtype = src.dtype;
  lt.role = TensorRole::kBuffer;
  if (src.numel > 0) lt.pieces.push_back({src, 0});
  return lt;
}

int add_verbatim_tensor(std::string name, const format::TensorLocation& src, FilePlan& plan, SourceLayout& layout) {
  OutputTensor t;
  t.name = name;
  t.logical = static_cast<int>(layout.tensors.size());
  t.dtype = src.dtype;
  t.shape = {static_cast<std::int64_t>(src.numel)};
  t.nbytes = src.nbytes();
  layout.tensors.push_back(verbatim_tensor(std::move(name), src));
  plan.tensors.push_back(std::move(t));
  return static_cast<int>(plan.tensors.size()) - 1;
}

std::vector<std::uint64_t> lay_out_torch_zip(OutputFile& file, std::vector<std::byte> pickle,
                                             const std::vector<std::uint64_t>& record_bytes) {
  file.size = 0;
  file.zips.clear();
  return append_torch_zip(file, format::torch_archive_name(file.name), std::move(pickle), record_bytes);
}

std::vector<std::uint64_t> append_torch_zip(OutputFile& file, const std::string& archive, std::vector<std::byte> pickle,
                                            const std::vector<std::uint64_t>& record_bytes) {
  const std::uint64_t base = file.size;
  std::vector<format::ZipEntrySpec> specs;
  specs.push_back({archive + "/data.pkl", pickle.size()});
  for (std::size_t k = 0; k < record_bytes.size(); ++k) specs.push_back({archive + "/data/" + std::to_string(k), record_bytes[k]});
  specs.push_back({archive + "/version", 2});
  specs.push_back({archive + "/byteorder", 6});
  format::ZipLayout zip = format::plan_zip_layout(specs);
  std::vector<std::uint64_t> offsets;
  for (std::size_t k = 0; k < record_bytes.size(); ++k) offsets.push_back(base + zip.entries[k + 1].data_offset);
  file.fixed.emplace_back(base + zip.entries.front().data_offset, std::move(pickle));
  file.fixed.emplace_back(base + zip.entries[zip.entries.size() - 2].data_offset, to_bytes("3\n"));
  file.fixed.emplace_back(base + zip.entries.back().data_offset, to_bytes("little"));
  file.size = base + zip.total_size;
  const int first = file.zips.empty() ? 0 : file.zips.back().first_entry + static_cast<int>(file.zips.back().layout.entries.size());
  file.zips.push_back({base, first, std::move(zip)});
  return offsets;
}

Status append_torch_object(OutputFile& file, const std::string& archive, const format::ValuePtr& value) {
  std::map<const format::Storage*, std::string> key_of;
  std::vector<std::shared_ptr<format::Storage>> storages;
  collect_foreign_storages(value, key_of, storages);
  std::vector<std::uint64_t> record_bytes;
  for (const auto& st : storages) {
    key_of[st.get()] = std::to_string(key_of.size());
    record_bytes.push_back(st->bytes.size());
  }
  UCP_ASSIGN_OR_RETURN(std::vector<std::byte> pickle,
                       format::write_pickle(value, [&](const std::shared_ptr<format::Storage>& s) { return key_of.at(s.get()); }));
  const std::vector<std::uint64_t> offsets = append_torch_zip(file, archive, std::move(pickle), record_bytes);
  for (std::size_t k = 0; k < storages.size(); ++k)
    if (!storages[k]->bytes.empty())
      file.fixed.emplace_back(offsets[k], std::vector<std::byte>(storages[k]->bytes.begin(), storages[k]->bytes.end()));
  return {};
}

std::string hf_shard_name(OutputFormat format, int index, int count) {
  const char* stem = format == OutputFormat::kSafetensors ? "model" : "pytorch_model";
  const char* ext = format == OutputFormat::kSafetensors ? "safetensors" : "bin";
  char buf[96];
  if (count == 1) std::snprintf(buf, sizeof buf, "%s.%s", stem, ext);
  else std::snprintf(buf, sizeof buf, "%s-%05d-of-%05d.%s", stem, index + 1, count, ext);
  return buf;
}

Result<OutputTensor> output_tensor_of(const LogicalTensor& lt, int logical, base::DType float_dtype) {
  OutputTensor t;
  t.name = lt.name;
  t.logical = logical;
  t.dtype = base::dtype_is_floating(lt.dtype) ? float_dtype : lt.dtype;
  t.shape = lt.shape;
  auto nbytes = base::checked_mul(lt.numel(), base::dtype_size(t.dtype));
  if (!nbytes) return base::data_loss("tensor '" + lt.name + "' is too large");
  t.nbytes = *nbytes;
  return t;
}

Result<FilePlan> plan_torch_state_file(const SourceLayout& layout, const std::vector<std::string>& source_paths,
                                       const PlanOptions& opt, const std::string& name, const TorchRootFn& root,
                                       const std::set<std::string>& keep_dtype) {
  FilePlan plan;
  std::vector<int> members;
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
    const LogicalTensor& lt = layout.tensors[i];
    const bool keep = opt.keep_float_dtypes || keep_dtype.count(lt.name);
    UCP_ASSIGN_OR_RETURN(OutputTensor t, output_tensor_of(lt, static_cast<int>(i), keep ? lt.dtype : opt.float_dtype));
    if (lt.role == TensorRole::kAlias) t.shares_storage_with = lt.alias_of;
    t.file = 0;
    plan.tensors.push_back(std::move(t));
    members.push_back(static_cast<int>(i));
  }
  OutputFile file;
  file.name = name;
  UCP_RETURN_IF_ERROR(build_torch_file(file, plan.tensors, members, root));
  plan.files.push_back(std::move(file));
  UCP_RETURN_IF_ERROR(finish_plan(plan, layout, source_paths, opt));
  return plan;
}

Result<FilePlan> plan_consolidated(const SourceLayout& layout, const std::vector<std::string>& source_paths,
                           const PlanOptions& opt) {
  if (opt.world_size < 1) return base::internal_error("plan_consolidated: world size < 1");
  if (opt.max_memory < kMinMemory)
    return base::invalid_argument("--max-memory " + base::format_bytes(opt.max_memory) + " is too small: at least " +
                                  base::format_bytes(kMinMemory) + " is needed for buffers");
  if (opt.max_shard_bytes == 0) return base::invalid_argument("--max-shard-size must be positive");
  const bool torch = opt.format == OutputFormat::kTorch;
  FilePlan plan;

  // 1. Output tensors, in layout order.
  std::vector<int> follows(layout.tensors.size(), -1);
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
    const LogicalTensor& lt = layout.tensors[i];
    UCP_ASSIGN_OR_RETURN(OutputTensor t, output_tensor_of(lt, static_cast<int>(i), opt.keep_float_dtypes ? lt.dtype : opt.float_dtype));
    if (lt.role == TensorRole::kAlias) {
      follows[i] = lt.alias_of;
      if (torch) t.shares_storage_with = lt.alias_of;
    }
    plan.tensors.push_back(std::move(t));
  }

  // 2. Shards and their files.
  int shard_count = 0;
  std::vector<int> follows_for_split = follows;
  std::vector<OutputTensor> sized = plan.tensors;
  if (torch)
    for (std::size_t i = 0; i < sized.size(); ++i)
      if (follows[i] >= 0) sized[i].nbytes = 0;
  const std::vector<int> shard = hf_split(sized, follows_for_split, opt.max_shard_bytes, shard_count);
  if (shard_count == 0) shard_count = 1;  // an empty model still gets one (empty) file
  std::vector<std::vector<int>> members(static_cast<std::size_t>(shard_count));
  for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
    plan.tensors[i].file = shard[i];
    members[static_cast<std::size_t>(shard[i])].push_back(static_cast<int>(i));
  }
  for (int f = 0; f < shard_count; ++f) {
    OutputFile file;
    file.name = hf_shard_name(opt.format, f, shard_count);
    if (torch) UCP_RETURN_IF_ERROR(build_torch_file(file, plan.tensors, members[static_cast<std::size_t>(f)]));
    else UCP_RETURN_IF_ERROR(build_safetensors_file(file, plan.tensors, members[static_cast<std::size_t>(f)]));
    plan.files.push_back(std::move(file));
  }

  UCP_RETURN_IF_ERROR(finish_plan(plan, layout, source_paths, opt));

  // 8. Index, when sharded: keys sorted, indent 2, trailing newline (as zero_to_fp32 / HF write it).
  if (plan.files.size() > 1) {
    std::uint64_t total = 0;
    nlohmann::json weight_map = nlohmann::json::object();
    for (const auto& t : plan.tensors) {
      weight_map[t.name] = plan.files[static_cast<std::size_t>(t.file)].name;
      if (t.shares_storage_with < 0) total += t.nbytes;
    }
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    plan.small_files.push_back(
        {torch ? "pytorch_model.bin.index.json" : "model.safetensors.index.json", index.dump(2) + "\n", {}, {}});
  }
  return plan;
}

namespace {

// A source run of an output tensor's bytes.
struct Run {
  format::TensorLocation src;
  int tensor;
  std::uint64_t dst_offset;  // elements into the tensor
  std::uint64_t rows;        // plan::Piece's strided rows
  std::uint64_t dst_row_stride;
};

// Step 3: the source runs of every output tensor's bytes (an alias copy re-reads its source's
// runs); `need` gets each source file's bytes, plan.min_bytes_read the floor.
Result<std::vector<Run>> collect_runs(FilePlan& plan, const SourceLayout& layout, std::vector<std::uint64_t>& need) {
  std::vector<Run> runs;
  for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
    const OutputTensor& t = plan.tensors[i];
    if (t.shares_storage_with >= 0) continue;
    const LogicalTensor* lt = &layout.tensors[static_cast<std::size_t>(t.logical)];
    if (lt->role == TensorRole::kAlias) lt = &layout.tensors[static_cast<std::size_t>(lt->alias_of)];
    for (const Piece& p : lt->pieces) {
      if (p.src.file >= need.size()) return base::internal_error("piece refers to an unknown source file");
      runs.push_back({p.src, static_cast<int>(i), p.dst_offset, p.rows, p.dst_row_stride});
      need[p.src.file] += p.src.nbytes();
      if (layout.tensors[static_cast<std::size_t>(t.logical)].role != TensorRole::kAlias) plan.min_bytes_read += p.src.nbytes();
    }
  }
  return runs;
}

// Step 4: source files to reader ranks, most bytes first to the least-loaded rank.
void assign_readers(FilePlan& plan, const std::vector<std::uint64_t>& need, int world) {
  plan.source_reader.assign(need.size(), 0);
  std::vector<std::size_t> order(need.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return need[a] > need[b]; });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(world), 0);
  for (std::size_t k = 0; k < order.size(); ++k) {
    const std::size_t f = order[k];
    // Files nobody needs still get a reader (round-robin), so metadata extraction is spread too.
    const auto r = need[f] == 0 ? k % static_cast<std::size_t>(world)
                                : static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    plan.source_reader[f] = static_cast<int>(r);
    load[r] += need[f];
  }
}

// Step 5: file owners, after the readers so that a file goes to the rank that reads most of its
// bytes (they are then streamed, not exchanged) unless that rank would exceed its fair share of
// output (10 % over an even split); the others then go to the least-loaded rank. Largest file
// first; ties: lowest rank.
void assign_owners(FilePlan& plan, const std::vector<Run>& runs, int world) {
  std::vector<std::map<int, std::uint64_t>> local(plan.files.size());  // file -> reader -> bytes
  for (const Run& run : runs) {
    const OutputTensor& t = plan.tensors[static_cast<std::size_t>(run.tensor)];
    local[static_cast<std::size_t>(t.file)][plan.source_reader[run.src.file]] += run.src.numel * base::dtype_size(t.dtype);
  }
  std::uint64_t total = 0;
  for (const auto& f : plan.files)
    if (!f.every_rank_writes) total += f.size;
  const std::uint64_t fair_share = total / static_cast<std::uint64_t>(world) + total / (10 * static_cast<std::uint64_t>(world));
  std::vector<int> order(plan.files.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return plan.files[static_cast<std::size_t>(a)].size > plan.files[static_cast<std::size_t>(b)].size;
  });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(world), 0);
  auto assign = [&](OutputFile& file, std::size_t r) {
    file.owner = static_cast<int>(r);
    load[r] += file.size;
    plan.totals[r].files_owned++;
  };
  // Two passes, so that a file that cannot go to its reader does not take the place of a later
  // file that can.
  std::vector<int> deferred;
  for (int f : order) {
    OutputFile& file = plan.files[static_cast<std::size_t>(f)];
    if (file.every_rank_writes) {
      file.owner = -1;
      continue;
    }
    int reader = -1;
    std::uint64_t best = 0;
    for (const auto& [r, bytes] : local[static_cast<std::size_t>(f)])
      if (bytes > best) {
        best = bytes;
        reader = r;
      }
    if (reader >= 0 && load[static_cast<std::size_t>(reader)] + file.size <= fair_share) assign(file, static_cast<std::size_t>(reader));
    else deferred.push_back(f);
  }
  for (int f : deferred)
    assign(plan.files[static_cast<std::size_t>(f)], static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin()));
}

// The zip record of `file` whose data starts at `offset`, or -1.
int zip_entry_at(const OutputFile& file, std::uint64_t offset) {
  auto z = std::upper_bound(file.zips.begin(), file.zips.end(), offset,
                            [](std::uint64_t off, const PlacedZip& p) { return off < p.base; });
  if (z == file.zips.begin()) return -1;
  --z;
  const auto& entries = z->layout.entries;
  auto it = std::lower_bound(entries.begin(), entries.end(), offset - z->base,
                             [](const format::ZipLayout::Entry& e, std::uint64_t off) { return e.data_offset < off; });
  return it != entries.end() && it->data_offset == offset - z->base ? z->first_entry + static_cast<int>(it - entries.begin()) : -1;
}

// Step 6: transfers, split so that one run never exceeds max_transfer output bytes; in file order.
// A strided run is split between rows (whole rows per transfer), and a row longer than the limit
// on its own; a file every rank writes (HDF5) takes its runs row by row.
std::vector<Transfer> cut_transfers(const FilePlan& plan, const std::vector<Run>& runs, std::uint64_t max_transfer) {
  std::vector<Transfer> transfers;
  for (const Run& run : runs) {
    const OutputTensor& t = plan.tensors[static_cast<std::size_t>(run.tensor)];
    const std::uint64_t out_size = base::dtype_size(t.dtype);
    const std::uint64_t chunk = std::max<std::uint64_t>(1, max_transfer / out_size);
    const OutputFile& file = plan.files[static_cast<std::size_t>(t.file)];
    const int zip_entry = zip_entry_at(file, t.file_offset);
    const std::uint64_t row = run.src.numel / run.rows;
    const std::uint64_t rows_per = run.rows == 1 || file.every_rank_writes ? 1 : chunk / row;
    auto emit = [&](std::uint64_t first_elem, std::uint64_t numel, std::uint64_t dst_elem, std::uint64_t rows) {
      Transfer x;
      x.src = run.src.slice(first_elem, numel);
      x.out_dtype = t.dtype;
      x.reader = plan.source_reader[run.src.file];
      x.writer = file.every_rank_writes ? x.reader : file.owner;  // direct writes: balance_readers
      x.file = t.file;
      x.file_offset = t.file_offset + dst_elem * out_size;
      x.rows = rows;
      x.dst_row_stride = rows > 1 ? run.dst_row_stride * out_size : 0;
      x.zip_entry = zip_entry;
      transfers.push_back(x);
    };
    if (rows_per > 1) {
      for (std::uint64_t r = 0; r < run.rows; r += rows_per) {
        const std::uint64_t n = std::min(rows_per, run.rows - r);
        emit(r * row, n * row, run.dst_offset + r * run.dst_row_stride, n);
      }
      continue;
    }
    for (std::uint64_t r = 0; r < run.rows; ++r)  // contiguous: one row
      for (std::uint64_t done = 0; done < row; done += chunk)
        emit(r * row + done, std::min(chunk, row - done), run.dst_offset + r * run.dst_row_stride + done, 1);
  }
  std::stable_sort(transfers.begin(), transfers.end(), [](const Transfer& a, const Transfer& b) {
    return a.file != b.file ? a.file < b.file : a.file_offset < b.file_offset;
  });
  return transfers;
}

// Step 7: rounds, greedy in file order; a rank's send + receive bytes stay within `budget`.
void group_rounds(FilePlan& plan, const std::vector<Transfer>& transfers, std::uint64_t budget, int world) {
  std::vector<std::uint64_t> mem(static_cast<std::size_t>(world), 0);
  std::vector<Transfer> round;
  auto close_round = [&] {
    if (round.empty()) return;
    for (int r = 0; r < world; ++r)
      plan.totals[static_cast<std::size_t>(r)].peak_round_bytes =
          std::max(plan.totals[static_cast<std::size_t>(r)].peak_round_bytes, mem[static_cast<std::size_t>(r)]);
    std::stable_sort(round.begin(), round.end(), [](const Transfer& a, const Transfer& b) {
      if (a.reader != b.reader) return a.reader < b.reader;
      if (a.writer != b.writer) return a.writer < b.writer;
      return a.file != b.file ? a.file < b.file : a.file_offset < b.file_offset;
    });
    plan.rounds.push_back(std::move(round));
    round.clear();
    std::fill(mem.begin(), mem.end(), 0);
  };
  for (const Transfer& x : transfers) {
    const std::uint64_t b = x.out_bytes();
    const auto rd = static_cast<std::size_t>(x.reader), wr = static_cast<std::size_t>(x.writer);
    const bool fits = rd == wr ? mem[rd] + 2 * b <= budget : (mem[rd] + b <= budget && mem[wr] + b <= budget);
    if (!fits) close_round();
    mem[rd] += b;
    mem[wr] += b;
    round.push_back(x);
    auto& tr = plan.totals[rd];
    tr.bytes_read += x.src.nbytes();
    plan.totals[wr].bytes_written += b;
    if (rd != wr) {
      tr.bytes_sent += b;
      plan.totals[wr].bytes_received += b;
    }
  }
  close_round();
}

// Direct writes: each run is written by the rank that reads it, so a run may go to any rank. Readers
// by equal shares of the bytes to read, in source order (file, offset): every rank reads about as
// much, each a contiguous stretch of the sources, however few and large the source files are (whole
// files per rank leave a rank idle when a handful of large optimizer files do not divide evenly).
void balance_readers(std::vector<Transfer>& transfers, int world) {
  std::vector<std::size_t> order(transfers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const format::TensorLocation &x = transfers[a].src, &y = transfers[b].src;
    return x.file != y.file ? x.file < y.file : x.offset < y.offset;
  });
  unsigned __int128 total = 0, done = 0;
  for (const Transfer& x : transfers) total += x.src.nbytes();
  for (std::size_t i : order) {
    Transfer& x = transfers[i];
    const auto share = total == 0 ? 0 : static_cast<int>(done * static_cast<unsigned>(world) / total);
    x.reader = x.writer = std::min(share, world - 1);
    done += x.src.nbytes();
  }
}

// Step 7 when every run is written by its reader (direct writes) into files only one rank writes
// at a time: nothing is exchanged, so no rank needs another's runs within a round. Rounds in file
// order would then give whole stretches of rounds to one reader (a parameter's bytes sit in one
// source file) while the others wait at each round's agreement; instead each rank's own runs, in
// file order, are cut into rounds on their own, and round k holds every rank's k-th share.
void group_rounds_per_rank(FilePlan& plan, const std::vector<Transfer>& transfers, std::uint64_t budget, int world) {
  std::vector<std::vector<std::vector<Transfer>>> shares(static_cast<std::size_t>(world));
  std::vector<std::uint64_t> mem(static_cast<std::size_t>(world), 0);
  for (const Transfer& x : transfers) {
    const auto r = static_cast<std::size_t>(x.reader);
    const std::uint64_t b = x.out_bytes();
    if (shares[r].empty() || mem[r] + 2 * b > budget) {
      shares[r].emplace_back();
      mem[r] = 0;
    }
    shares[r].back().push_back(x);
    mem[r] += 2 * b;  // as in group_rounds: a streamed run is counted on both sides
    plan.totals[r].peak_round_bytes = std::max(plan.totals[r].peak_round_bytes, mem[r]);
    plan.totals[r].bytes_read += x.src.nbytes();
    plan.totals[r].bytes_written += b;
  }
  for (std::size_t k = 0;; ++k) {
    std::vector<Transfer> round;
    for (const auto& rank_shares : shares)  // by reader, then (writer = reader) file and offset
      if (k < rank_shares.size()) round.insert(round.end(), rank_shares[k].begin(), rank_shares[k].end());
    if (round.empty()) break;
    plan.rounds.push_back(std::move(round));
  }
}

}  // namespace

Status finish_plan(FilePlan& plan, const SourceLayout& layout, const std::vector<std::string>& source_paths,
                   const PlanOptions& opt) {
  if (opt.world_size < 1) return base::internal_error("plan: world size < 1");
  if (opt.max_memory < kMinMemory)
    return base::invalid_argument("--max-memory " + base::format_bytes(opt.max_memory) + " is too small: at least " +
                                  base::format_bytes(kMinMemory) + " is needed for buffers");
  const int world = opt.world_size;
  plan.source_paths = source_paths;
  plan.totals.assign(static_cast<std::size_t>(world), RankTotals{});

  std::vector<std::uint64_t> need(source_paths.size(), 0);
  UCP_ASSIGN_OR_RETURN(const std::vector<Run> runs, collect_runs(plan, layout, need));
  assign_readers(plan, need, world);
  assign_owners(plan, runs, world);
  const std::uint64_t budget = std::min(opt.max_memory - kBounceBytes, std::max<std::uint64_t>(opt.round_bytes, 4096));
  const std::uint64_t max_transfer = std::max<std::uint64_t>(1, std::min(opt.max_transfer_bytes, budget / 4));
  std::vector<Transfer> transfers = cut_transfers(plan, runs, max_transfer);
  const bool every_rank_writes = std::any_of(plan.files.begin(), plan.files.end(), [](const OutputFile& f) { return f.every_rank_writes; });
  if (opt.direct_writes && !every_rank_writes) {
    balance_readers(transfers, world);
    group_rounds_per_rank(plan, transfers, budget, world);
  } else {
    group_rounds(plan, transfers, budget, world);
  }
  return check_file_coverage(plan);
}

Status check_file_coverage(const FilePlan& plan) {
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> spans(plan.files.size());
  for (std::size_t f = 0; f < plan.files.size(); ++f) {
    const OutputFile& file = plan.files[f];
    for (const auto& [off, bytes] : file.fixed) spans[f].emplace_back(off, off + bytes.size());
    for (const PlacedZip& z : file.zips) {
      for (const auto& e : z.layout.entries) spans[f].emplace_back(z.base + e.header_offset, z.base + e.data_offset);
      spans[f].emplace_back(z.base + z.layout.central_directory_offset, z.base + z.layout.total_size);
    }
  }
  for (const auto& round : plan.rounds)
    for (const Transfer& x : round)
      x.for_each_row([&](std::uint64_t offset, std::uint64_t, std::uint64_t len) {
        spans[static_cast<std::size_t>(x.file)].emplace_back(offset, offset + len);
      });
  for (std::size_t f = 0; f < plan.files.size(); ++f) {
    auto& s = spans[f];
    std::sort(s.begin(), s.end());
    std::uint64_t next = 0;
    for (const auto& [b, e] : s) {
      if (b == e) continue;
      if (b != next) {
        std::string who = "bytes [" + std::to_string(std::min(b, next)) + ", " + std::to_string(std::max(b, next)) + ")";
        for (const auto& t : plan.tensors)
          if (t.file == static_cast<int>(f) && t.file_offset <= std::min(b, next) && std::min(b, next) < t.file_offset + t.nbytes)
            who += " of tensor '" + t.name + "'";
        return base::internal_error("plan for '" + plan.files[f].name + "': " + who + (b > next ? " are never written" : " are written twice"));
      }
      next = e;
    }
    if (next != plan.files[f].size)
      return base::internal_error("plan for '" + plan.files[f].name + "' writes " + std::to_string(next) + " of " +
                                  std::to_string(plan.files[f].size) + " bytes");
  }
  return {};
}

std::uint64_t FilePlan::digest() const {
  std::uint64_t h = 1469598103934665603ull;
  for (const auto& t : tensors) {
    fnv_str(h, t.name);
    fnv_value(h, t.dtype);
    fnv_value(h, t.file);
    fnv_value(h, t.file_offset);
    fnv_value(h, t.nbytes);
  }
  for (const auto& f : files) {
    fnv_str(h, f.name);
    fnv_value(h, f.size);
    fnv_value(h, f.owner);
    fnv_value(h, f.every_rank_writes);
    for (const auto& [off, bytes] : f.fixed) {
      fnv_value(h, off);
      fnv(h, bytes.data(), bytes.size());
    }
  }
  for (const auto& round : rounds) {
    fnv_value(h, round.size());
    for (const auto& x : round) {
      fnv_value(h, x.src.file);
      fnv_value(h, x.src.offset);
      fnv_value(h, x.src.numel);
      fnv_value(h, x.reader);
      fnv_value(h, x.writer);
      fnv_value(h, x.file_offset);
      fnv_value(h, x.rows);
      fnv_value(h, x.dst_row_stride);
    }
  }
  for (const SmallFile& f : small_files) {
    fnv_str(h, f.name);
    fnv_str(h, f.bytes);
    fnv_str(h, f.copy_from);
    fnv_value(h, f.place);
  }
  return h;
}

std::string FilePlan::describe() const {
  std::ostringstream os;
  std::uint64_t out_bytes = 0;
  for (const auto& f : files) out_bytes += f.size;
  os << "plan: " << tensors.size() << " tensors -> " << files.size() << " file(s), " << base::format_bytes(out_bytes)
     << "; " << rounds.size() << " round(s); source data needed " << base::format_bytes(min_bytes_read) << "\n";
  // Universal outputs have three files per parameter: list the first ones, count the rest.
  constexpr std::size_t kListed = 40;
  for (std::size_t i = 0; i < files.size() && i < kListed; ++i)
    os << "  " << files[i].name << "  " << base::format_bytes(files[i].size)
       << (files[i].every_rank_writes ? "  (tensor data) written by every rank" : "  written by rank " + std::to_string(files[i].owner))
       << "\n";
  if (files.size() > kListed) {
    std::uint64_t rest = 0;
    for (std::size_t i = kListed; i < files.size(); ++i) rest += files[i].size;
    os << "  ... and " << files.size() - kListed << " more file(s), " << base::format_bytes(rest) << "\n";
  }
  for (const SmallFile& f : small_files)
    os << (f.place == SmallFile::Place::kInOutput ? "  " + f.name + "  written by rank 0 last\n"
                                                   : "  plus " + f.name + " beside the output, written by rank 0 after the commit\n");
  os << "  rank   read        sent        received    written     peak buffers\n";
  for (std::size_t r = 0; r < totals.size(); ++r) {
    const auto& t = totals[r];
    char line[256];
    std::snprintf(line, sizeof line, "  %-5zu  %-10s  %-10s  %-10s  %-10s  %s\n", r, base::format_bytes(t.bytes_read).c_str(),
                  base::format_bytes(t.bytes_sent).c_str(), base::format_bytes(t.bytes_received).c_str(),
                  base::format_bytes(t.bytes_written).c_str(), base::format_bytes(t.peak_round_bytes + kBounceBytes).c_str());
    os << line;
  }
  return os.str();
}

}  // namespace ucp::plan
