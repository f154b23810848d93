// The format-neutral description of a source's tensors, the equivalent of DCP's Metadata: per
// tensor its name, dtype and global shape, and where its elements lie as pieces (a contiguous run
// of a source file placed in the tensor as one row or as a 2-D strided box). Every input format
// fills one (format/dcp from its chunks, plan/source_layout from DeepSpeed's ZeRO partitions);
// every consolidated target (plan/file_plan, plan/hdf5_plan) reads only this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

namespace ucp::format {

/// A contiguous run of elements inside one checkpoint file.
struct TensorLocation {
  std::uint32_t file = 0;     ///< Index into the source's list of files.
  std::uint64_t offset = 0;   ///< Absolute byte offset of element 0 in the file.
  std::uint64_t numel = 0;
  base::DType dtype = base::DType::kF32;

  std::uint64_t nbytes() const { return numel * base::dtype_size(dtype); }
  /// The sub-run [first, first+count) in elements.
  TensorLocation slice(std::uint64_t first, std::uint64_t count) const {
    return {file, offset + first * base::dtype_size(dtype), count, dtype};
  }
};

enum class TensorRole : std::uint8_t {
  kBuffer,     ///< Persistent buffer from the module state (model file of rank 0).
  kFrozen,     ///< requires_grad=False parameter (not in the optimizer).
  kTrainable,  ///< Parameter with an fp32 master copy in the optimizer partitions.
  kAlias,      ///< Tied name: same values as `alias_of`.
  kStored,     ///< A tensor stored as it is (a DCP item): no role in a training state to tell.
};

/// Where a run of source elements lands in the flattened (row-major) tensor: `rows` rows of
/// row_numel() elements each, row k at elements [dst_offset + k * dst_row_stride, + row_numel()).
/// The source elements are contiguous, row after row. rows == 1 is a contiguous run (a ZeRO
/// partition piece); rows > 1 is a 2-D strided box (a tensor-parallel or DCP chunk cut along a
/// dimension other than 0): one piece, however many rows.
struct Piece {
  TensorLocation src;
  std::uint64_t dst_offset = 0;
  std::uint64_t rows = 1;
  std::uint64_t dst_row_stride = 0;  ///< Elements between row starts in the tensor; 0 when rows == 1.
  std::uint64_t row_numel() const { return rows == 0 ? 0 : src.numel / rows; }
};

/// The pieces that place a chunk stored contiguously (row-major in its own shape `sizes`) at
/// `offsets` of a row-major tensor of shape `shape`. One strided piece whenever the chunk's cut
/// dimensions allow it (any cut along one dimension, or along dimensions 0 and 1: every FSDP and
/// tensor-parallel layout); otherwise one piece per index of the leading dimensions. Nothing for
/// an empty chunk. InvalidArgument when the box does not fit the tensor or `src` does not hold
/// exactly its elements.
base::Result<std::vector<Piece>> box_pieces(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& offsets,
                                            const std::vector<std::int64_t>& sizes, const TensorLocation& src);

struct LogicalTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  base::DType dtype = base::DType::kF32;  ///< Dtype of the source elements.
  TensorRole role = TensorRole::kTrainable;
  int alias_of = -1;         ///< kAlias: index of the tensor it shares values with.
  std::vector<Piece> pieces; ///< Sorted by dst_offset; empty for aliases and empty tensors.
  std::uint64_t numel() const;
};

struct SourceLayout {
  std::vector<LogicalTensor> tensors;  ///< In output order.
};

/// Checks that the pieces of `t` cover [0, numel) exactly once (no gap, no overlap), each row of
/// a strided piece on its own; DataLoss naming the tensor and the first elements missed or
/// covered twice.
base::Status check_coverage(const LogicalTensor& t);

/// The tensors of `layout` under `prefix` (a key path: "model" takes "model.*"), renamed without
/// it, in order; a kept alias of a tensor left out becomes a copy of its pieces. InvalidArgument
/// naming the prefix and the top-level names there are when none matches.
base::Result<SourceLayout> select_prefix(const SourceLayout& layout, const std::string& prefix);

/// The parts of `pieces` that fall in elements [begin, end) of their tensor, placed relative to
/// `begin` (a row range of dimension 0 becomes a tensor of its own): a strided piece stays one
/// piece for the rows inside, with single-row pieces for rows cut at the edges. Appends to `out`.
void clip_pieces(const std::vector<Piece>& pieces, std::uint64_t begin, std::uint64_t end, std::vector<Piece>& out);

/// The one walk of a tensor's pieces to its elements: fn(src, dst) for every contiguous source run
/// (each row of a strided piece on its own), `dst` its first element in the flattened tensor.
/// Internal error naming the tensor when a piece does not fit it.
base::Status for_each_run(const LogicalTensor& t,
                          const std::function<base::Status(const TensorLocation& src, std::uint64_t dst)>& fn);

/// The one contiguous source run that holds all of `t` in its own dtype (a single row-piece
/// covering [0, numel)), or nothing: such a tensor can be a view of its file's bytes, no copy.
std::optional<TensorLocation> whole_run(const LogicalTensor& t);

class MappedFile;

/// Copies the elements of `t` (in its own dtype, row-major) from the mapped source files
/// (`files[src.file]`) into `out` (t.numel() * element size bytes). DataLoss naming the file when
/// a piece runs past its end.
base::Status read_tensor(const LogicalTensor& t, std::span<const std::shared_ptr<const MappedFile>> files,
                         std::span<std::byte> out);

}  // namespace ucp::format
