// The plan every conversion executes: the output files (their names, sizes and the bytes known at
// plan time), where every tensor byte lands, which rank reads each source range and which rank
// writes it, grouped in rounds so that no rank holds more than the memory bound, and the small
// files (HF index, `latest`, config files) written whole by rank 0. Pure and deterministic: every
// rank computes the same plan from the same source and options, and the ranks compare digests
// before moving a byte. Each target fills one (plan_consolidated here: HF safetensors or torch
// shards; plan/universal_plan, plan/zero_files_plan, plan/lightning_plan, plan/hdf5_plan).
//
// Data path of one round (see exec/file_plan_executor): reader ranks read their source runs and
// convert them to the output dtype straight into a send buffer -> all-to-all-v -> the rank that
// owns the output file pwrites each received run at its planned offset.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/zip_writer.h"
#include "ucp/plan/source_layout.h"

namespace ucp::plan {

/// Executors cast source runs to the output dtype through a buffer of this size; the planner
/// counts it in every rank's memory allowance.
inline constexpr std::uint64_t kConvertBounceBytes = 8ull << 20;

enum class OutputFormat : std::uint8_t { kSafetensors, kTorch };

struct PlanOptions {
  OutputFormat format = OutputFormat::kSafetensors;
  std::uint64_t max_shard_bytes = 5'000'000'000;  ///< HF default "5GB" (decimal).
  base::DType float_dtype = base::DType::kF32;    ///< Floating tensors are written in this dtype.
  /// Floating tensors keep their source dtype (float_dtype unused): a DCP's whole state written as
  /// dcp_to_torch_save writes it, when the user named no --dtype.
  bool keep_float_dtypes = false;
  std::uint64_t max_memory = 1ull << 30;          ///< Tensor bytes a rank may hold at once.
  std::uint64_t max_transfer_bytes = 64ull << 20; ///< Source runs are split to at most this (output bytes).
  /// Send + receive bytes a rank moves per round, even when max_memory would allow more: buffers
  /// reused across many small rounds stay resident, while touching fresh memory is slow (on VMs
  /// the first pass over new memory runs at a fraction of memcpy speed, see bench/).
  std::uint64_t round_bytes = 256ull << 20;
  int world_size = 1;
  /// Every rank sees the output folder (one host, or a shared filesystem): each run is written by
  /// the rank that reads it, straight into the shared file at its planned offset, so nothing is
  /// exchanged; a file's owner only creates it and writes its fixed bytes, zip headers and
  /// directory (from CRC pieces the writers hand over). Off: each run travels to the owner.
  bool direct_writes = false;
};

struct OutputTensor {
  std::string name;
  int logical = -1;            ///< Index into SourceLayout::tensors.
  base::DType dtype = base::DType::kF32;  ///< Output dtype.
  std::vector<std::int64_t> shape;
  std::uint64_t nbytes = 0;
  int file = -1;
  std::uint64_t file_offset = 0;  ///< Where its bytes start in the file.
  int shares_storage_with = -1;   ///< Torch, HDF5: alias written as a reference to (link to) this tensor's storage.
  bool requires_grad = false;     ///< Torch only: pickled requires_grad flag.
};

/// An output (a file, or an HDF5 dataset) that is a byte-for-byte copy of source file `file`:
/// the model-state files a universal checkpoint carries.
struct SourceFileCopy {
  std::string path;  ///< Relative to the output folder ("mp_rank_00_model_states.pt").
  std::uint32_t file = 0;
  std::uint64_t size = 0;
  /// The whole file as a run of `size` uint8 elements.
  format::TensorLocation location() const { return {file, 0, size, base::DType::kU8}; }
};

/// A zip inside an output file: its layout's offsets count from `base` (a DCP item is a whole
/// torch.save zip at some offset of its data file). Transfers name its records by global index
/// first_entry + i over every zip of the file.
struct PlacedZip {
  std::uint64_t base = 0;
  int first_entry = 0;
  format::ZipLayout layout;
};

struct OutputFile {
  std::string name;       ///< Relative to OUT.
  std::uint64_t size = 0;
  int owner = 0;          ///< The rank that creates and writes this file (-1 when every_rank_writes).
  /// Written by all ranks at once (parallel HDF5): each run is written by the rank that reads it,
  /// so nothing is exchanged; `size` and the tensors' file_offset then address a virtual file
  /// (the tensors' bytes back to back) that only proves coverage, not the on-disk layout.
  bool every_rank_writes = false;
  /// Bytes fully known at plan time: (offset, bytes) — safetensors header; torch data.pkl/version/byteorder.
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> fixed;
  /// Torch zips in the file (one for a torch file; one per item back to back in a DCP data file):
  /// each record's CRC is assembled from fixed bytes or transfers.
  std::vector<PlacedZip> zips;
};

/// A file that is not tensor data, written whole by rank 0 after the tensor data and before the
/// output becomes visible: the one route to disk for the HF index, `latest`, HF model files,
/// framework files beside the DeepSpeed folders, and `latest_universal` (which lives beside OUT and
/// is written right after OUT is renamed into place, so it never names a folder that is not there).
struct SmallFile {
  enum class Place : std::uint8_t { kInOutput, kBesideOutput };
  std::string name;       ///< Relative to OUT (kInOutput) or to the folder holding OUT (kBesideOutput).
  std::string bytes;      ///< The content, unless copy_from is set.
  std::string copy_from;  ///< A file copied as it is (read at write time, in bounded memory).
  Place place = Place::kInOutput;
};

/// One run of source elements, converted and written to one place: `rows` rows of equal length
/// (the source run split evenly, row after row), row k at file_offset + k * dst_row_stride bytes.
/// rows == 1 is one contiguous write; more is a strided box (plan::Piece). Buffers hold the
/// rows packed: out_bytes() in all.
struct Transfer {
  format::TensorLocation src;  ///< Source run (source dtype).
  base::DType out_dtype = base::DType::kF32;
  int reader = 0;              ///< Rank that reads `src`.
  int writer = 0;              ///< Rank that writes it: the owner of `file`, or the reader (direct writes).
  int file = 0;
  std::uint64_t file_offset = 0;
  std::uint64_t rows = 1;
  std::uint64_t dst_row_stride = 0;  ///< Bytes between row starts in the file; 0 when rows == 1.
  int zip_entry = -1;          ///< Torch: the record this run belongs to (global over the file's zips), else -1.
  std::uint64_t out_bytes() const { return src.numel * base::dtype_size(out_dtype); }
  std::uint64_t row_bytes() const { return out_bytes() / rows; }
  /// Calls fn(file_offset, packed_offset, bytes) for each row, in order.
  template <typename Fn>
  void for_each_row(Fn&& fn) const {
    const std::uint64_t len = row_bytes();
    for (std::uint64_t k = 0; k < rows; ++k) fn(file_offset + k * dst_row_stride, k * len, len);
  }
};

struct RankTotals {
  std::uint64_t bytes_read = 0;      ///< Source bytes read (tensor data only).
  std::uint64_t bytes_sent = 0;      ///< Output-dtype bytes sent to other ranks.
  std::uint64_t bytes_received = 0;  ///< From other ranks.
  std::uint64_t bytes_written = 0;   ///< Tensor bytes written (plus headers for owned files).
  std::uint64_t peak_round_bytes = 0;  ///< Max over rounds of send + receive buffer bytes.
  int files_owned = 0;
};

struct FilePlan {
  std::vector<OutputTensor> tensors;
  std::vector<OutputFile> files;
  std::vector<std::vector<Transfer>> rounds;  ///< Each round sorted by (reader, writer, file, offset).
  std::vector<SmallFile> small_files;  ///< In the order rank 0 writes them.
  std::vector<std::string> source_paths;
  /// Rank that reads each source file when runs travel to their file's owner (it also decides the
  /// owners); with direct writes readers take byte shares instead (Transfer::reader).
  std::vector<int> source_reader;
  std::vector<RankTotals> totals;  ///< Per rank.
  std::uint64_t min_bytes_read = 0;  ///< Bytes of source data the output needs (the floor).

  /// FNV-1a over every decision in the plan: equal on all ranks or the plans diverged.
  std::uint64_t digest() const;
  /// Human-readable summary (files, rounds, per-rank bytes and memory) for --dry-run.
  std::string describe() const;
};

/// The output tensor of layout tensor `logical` (`lt`): floating tensors in `float_dtype`, others as
/// they are; no file yet. DataLoss when its size overflows.
base::Result<OutputTensor> output_tensor_of(const LogicalTensor& lt, int logical, base::DType float_dtype);

/// Builds the pickled root of a torch file from its tensors, (name, tensor value) in member order.
using TorchRootFn = std::function<format::ValuePtr(std::vector<std::pair<std::string, format::ValuePtr>> tensors)>;
/// The root torch.save gets from zero_to_fp32: an OrderedDict name -> tensor.
format::ValuePtr ordered_dict_root(std::vector<std::pair<std::string, format::ValuePtr>> tensors);

/// Lays out `file` (a torch.save zip named file.name, archive folder = its stem) holding the
/// tensors `members` (indices into `tensors`), one storage per distinct tensor; sets their
/// file_offset. Aliases (shares_storage_with) become second references to one storage.
base::Status build_torch_file(OutputFile& file, std::vector<OutputTensor>& tensors, const std::vector<int>& members,
                              const TorchRootFn& root = ordered_dict_root);

/// Source run `src` as it is: a 1-D logical tensor of src.numel elements of src.dtype.
LogicalTensor verbatim_tensor(std::string name, const format::TensorLocation& src);
/// Appends the output tensor (and its logical tensor) that copies `src` byte for byte; returns its
/// index in plan.tensors. Its file and offset are the caller's to set.
int add_verbatim_tensor(std::string name, const format::TensorLocation& src, FilePlan& plan, SourceLayout& layout);

/// Lays out `file` as a torch.save zip (archive folder = the stem of file.name) holding `pickle`
/// as data.pkl and records data/0, data/1, ... of `record_bytes` bytes; the pickle, version and
/// byteorder records become fixed bytes. Sets file.size and file.zips (one zip at 0); returns each record's data
/// offset.
std::vector<std::uint64_t> lay_out_torch_zip(OutputFile& file, std::vector<std::byte> pickle,
                                             const std::vector<std::uint64_t>& record_bytes);
/// The same appended at the end of `file` (file.size grows), with archive folder `archive`: the
/// items of a DCP data file, each a torch.save zip of its own. Returns absolute data offsets.
std::vector<std::uint64_t> append_torch_zip(OutputFile& file, const std::string& archive, std::vector<std::byte> pickle,
                                            const std::vector<std::uint64_t>& record_bytes);
/// torch.save of `value` (a Python object; tensors inside it keep their storages' bytes, written as
/// fixed records) appended at the end of `file`: a DCP non-tensor item.
base::Status append_torch_object(OutputFile& file, const std::string& archive, const format::ValuePtr& value);

/// The shared back half of every plan: given plan.tensors (with .logical into `layout`) and
/// plan.files laid out, assigns file owners and source readers, cuts the source pieces into
/// transfers, groups them in memory-bounded rounds, fills the totals and proves file coverage.
base::Status finish_plan(FilePlan& plan, const SourceLayout& layout, const std::vector<std::string>& source_paths,
                         const PlanOptions& options);

/// Builds the plan. `source_paths[i]` is the file TensorLocation::file == i refers to.
base::Result<FilePlan> plan_consolidated(const SourceLayout& layout, const std::vector<std::string>& source_paths,
                                 const PlanOptions& options);

/// One torch.save file `name` holding every tensor of `layout` inside the pickle root `root` builds
/// (a DCP's nested state with its non-tensor values, as dcp_to_torch_save writes it): not sharded,
/// no index. Tensors still flow through the rounds of finish_plan; storages the root holds of its
/// own (tensors inside non-tensor values) are written as fixed bytes. Tensors named in `keep_dtype`
/// keep their source dtype whatever options.float_dtype says (optimizer step counters).
base::Result<FilePlan> plan_torch_state_file(const SourceLayout& layout, const std::vector<std::string>& source_paths,
                                             const PlanOptions& options, const std::string& name, const TorchRootFn& root,
                                             const std::set<std::string>& keep_dtype = {});

/// Checks that the plan writes every byte of every output file exactly once (fixed bytes, tensor
/// runs, and for torch files the zip headers and directory written at finalize).
base::Status check_file_coverage(const FilePlan& plan);

/// HF shard file names: "model.safetensors" or "model-00001-of-00003.safetensors" (torch:
/// "pytorch_model.bin" / "pytorch_model-00001-of-00003.bin").
std::string hf_shard_name(OutputFormat format, int index, int count);

}  // namespace ucp::plan
