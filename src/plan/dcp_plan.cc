#include "ucp/plan/dcp_plan.h"

#include <string>

#include "ucp/base/checked_math.h"
#include "ucp/format/dcp.h"
#include "ucp/format/pickle_writer.h"
#include "ucp/format/value.h"

namespace ucp::plan {
using base::Result;
using base::Status;

std::pair<std::int64_t, std::int64_t> chunk_rows(std::int64_t rows, int world, int rank) {
  const std::int64_t size = (rows + world - 1) / world;  // torch.chunk: ceil, the tail short or empty
  const std::int64_t begin = std::min(rows, size * rank);
  return {begin, std::min(rows, begin + size)};
}

namespace {

// The pickle of one chunk as torch.save writes a bare tensor: _rebuild_tensor_v2 over storage "0".
Result<std::vector<std::byte>> chunk_pickle(base::DType dtype, const std::vector<std::int64_t>& shape, std::uint64_t numel) {
  auto storage = std::make_shared<format::Storage>();
  storage->dtype = dtype;
  storage->numel = numel;
  storage->key = "0";
  format::Tensor t;
  t.storage = storage;
  t.shape = shape;
  t.stride = format::Tensor::contiguous_strides(shape);
  return format::write_pickle(format::Value::tensor_value(std::move(t)),
                              [](const std::shared_ptr<format::Storage>& s) { return s->key; });
}

struct Chunked {
  SourceLayout layout;                       // one tensor per chunk (what finish_plan reads)
  std::vector<format::dcp::TensorItem> items;  // what .metadata describes
  std::vector<format::dcp::BytesItem> objects;
};

format::dcp::StatePath path_of(const DcpExtras& extras, const std::string& fqn) {
  auto it = extras.paths.find(fqn);
  return it == extras.paths.end() ? format::dcp::StatePath{} : it->second;
}

// Small items go round the ranks' files, so that no one file gathers them all.
OutputFile& file_for_small_item(FilePlan& plan, std::size_t k) { return plan.files[k % plan.files.size()]; }

// Scalars: a whole 0-d tensor item each, its one record fixed bytes (torch.save of the tensor).
Status add_scalars(const DcpExtras& extras, FilePlan& plan, Chunked& out) {
  for (std::size_t k = 0; k < extras.scalars.size(); ++k) {
    const DcpScalar& s = extras.scalars[k];
    if (s.value.size() != base::dtype_size(s.dtype))
      return base::internal_error("scalar '" + s.fqn + "': " + std::to_string(s.value.size()) + " bytes for a " +
                                  std::string(base::dtype_name(s.dtype)));
    OutputFile& file = file_for_small_item(plan, k);
    const std::uint64_t item_offset = file.size;
    UCP_RETURN_IF_ERROR(append_torch_object(file, "archive", format::Value::tensor_value(format::Tensor::from_bytes(s.dtype, {}, s.value))));
    format::dcp::TensorItem item;
    item.fqn = s.fqn;
    item.dtype = s.dtype;
    item.path = s.path;
    item.chunks.push_back({{}, {}, {file.name, item_offset, file.size - item_offset, {}}});
    out.items.push_back(std::move(item));
  }
  return {};
}

// Objects: torch.save of the value (tensors inside it carried as fixed records).
Status add_objects(const DcpExtras& extras, FilePlan& plan, Chunked& out) {
  for (std::size_t k = 0; k < extras.objects.size(); ++k) {
    const DcpObject& o = extras.objects[k];
    OutputFile& file = file_for_small_item(plan, extras.scalars.size() + k);
    const std::uint64_t item_offset = file.size;
    Status written = append_torch_object(file, "archive", o.value);
    UCP_RETURN_IF_ERROR(written.annotate("non-tensor item '" + o.fqn + "'"));
    out.objects.push_back({o.fqn, {file.name, item_offset, file.size - item_offset, {}}, o.path});
  }
  return {};
}

// Every tensor cut into its chunks for `world` ranks; chunk k of rank r goes to file r.
Result<Chunked> cut_chunks(const SourceLayout& layout, int world, FilePlan& plan, const DcpPlanOptions& dcp,
                           const DcpExtras& extras) {
  Chunked out;
  for (int r = 0; r < world; ++r) {
    OutputFile file;
    file.name = format::dcp::data_file_name(r);
    plan.files.push_back(std::move(file));
  }
  for (const LogicalTensor& source : layout.tensors) {
    const LogicalTensor& values =
        source.role == TensorRole::kAlias ? layout.tensors[static_cast<std::size_t>(source.alias_of)] : source;
    format::dcp::TensorItem item;
    item.fqn = source.name;
    item.path = path_of(extras, source.name);
    item.dtype = dcp.float_dtype && base::dtype_is_floating(source.dtype) ? *dcp.float_dtype : source.dtype;
    if (auto it = dcp.dtype_of.find(source.name); it != dcp.dtype_of.end() && base::dtype_is_floating(source.dtype))
      item.dtype = it->second;
    item.shape = source.shape;
    const std::int64_t rows = source.shape.empty() ? 1 : source.shape[0];
    const std::uint64_t row_numel = source.shape.empty() ? 1 : source.numel() / static_cast<std::uint64_t>(std::max<std::int64_t>(rows, 1));
    for (int r = 0; r < world; ++r) {
      const auto [begin, end] = source.shape.empty() ? std::pair<std::int64_t, std::int64_t>{0, r == 0 ? 1 : 0}
                                                      : chunk_rows(rows, world, r);
      // Empty boxes are not stored: torch loads an empty shard from nothing.
      if (begin >= end || row_numel == 0) continue;
      LogicalTensor chunk;
      chunk.name = source.name;
      chunk.dtype = source.dtype;
      chunk.role = TensorRole::kStored;
      chunk.shape = source.shape;
      if (!chunk.shape.empty()) chunk.shape[0] = end - begin;
      format::clip_pieces(values.pieces, static_cast<std::uint64_t>(begin) * row_numel,
                          static_cast<std::uint64_t>(end) * row_numel, chunk.pieces);
      UCP_RETURN_IF_ERROR(format::check_coverage(chunk));
      UCP_ASSIGN_OR_RETURN(OutputTensor t, output_tensor_of(chunk, static_cast<int>(out.layout.tensors.size()), item.dtype));
      t.file = r;
      UCP_ASSIGN_OR_RETURN(std::vector<std::byte> pickle, chunk_pickle(t.dtype, chunk.shape, chunk.numel()));
      OutputFile& file = plan.files[static_cast<std::size_t>(r)];
      const std::uint64_t item_offset = file.size;
      t.file_offset = append_torch_zip(file, "archive", std::move(pickle), {t.nbytes}).at(0);
      format::dcp::Chunk c;
      c.offsets.assign(source.shape.size(), 0);
      if (!c.offsets.empty()) c.offsets[0] = begin;
      c.sizes = chunk.shape;
      c.stored = {file.name, item_offset, file.size - item_offset, {}};
      item.chunks.push_back(std::move(c));
      plan.tensors.push_back(std::move(t));
      out.layout.tensors.push_back(std::move(chunk));
    }
    out.items.push_back(std::move(item));
  }
  return out;
}

}  // namespace

Result<FilePlan> plan_dcp(const SourceLayout& layout, const std::vector<std::string>& source_paths,
                          const PlanOptions& options, const DcpPlanOptions& dcp, const DcpExtras& extras) {
  if (dcp.target_world_size < 1) return base::invalid_argument("--target-world-size must be at least 1");
  FilePlan plan;
  UCP_ASSIGN_OR_RETURN(Chunked chunked, cut_chunks(layout, dcp.target_world_size, plan, dcp, extras));
  UCP_RETURN_IF_ERROR(add_scalars(extras, plan, chunked));
  UCP_RETURN_IF_ERROR(add_objects(extras, plan, chunked));
  UCP_RETURN_IF_ERROR(finish_plan(plan, chunked.layout, source_paths, options));
  UCP_ASSIGN_OR_RETURN(std::vector<std::byte> metadata, format::dcp::metadata_bytes(chunked.items, chunked.objects, extras.order));
  plan.small_files.push_back({format::dcp::kMetadataFile, std::string(reinterpret_cast<const char*>(metadata.data()), metadata.size()),
                              {}, SmallFile::Place::kInOutput});
  return plan;
}

}  // namespace ucp::plan
