#include "ucp/format/tensor_layout.h"

#include <algorithm>

#include <cstring>
#include <set>

#include "ucp/base/checked_math.h"
#include "ucp/format/mapped_file.h"

namespace ucp::format {
using base::Result;
using base::Status;

std::uint64_t LogicalTensor::numel() const { return base::checked_numel(shape).value_or(0); }

Status check_coverage(const LogicalTensor& t) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> rows;  // [begin, end) in elements
  bool sorted = true;
  for (const Piece& p : t.pieces) {
    if (p.src.dtype != t.dtype) return base::internal_error("tensor '" + t.name + "': pieces of mixed dtypes");
    if (p.rows == 0 || p.src.numel % p.rows != 0 || (p.rows > 1 && p.dst_row_stride < p.row_numel()))
      return base::internal_error("tensor '" + t.name + "': a strided piece whose rows do not divide it or overlap");
    for (std::uint64_t k = 0; k < p.rows; ++k) {
      const std::uint64_t begin = p.dst_offset + k * p.dst_row_stride;
      sorted = sorted && (rows.empty() || rows.back().first <= begin);
      rows.emplace_back(begin, begin + p.row_numel());
    }
  }
  if (!sorted) std::sort(rows.begin(), rows.end());
  std::uint64_t next = 0;
  for (const auto& [begin, end] : rows) {
    if (begin == end) continue;
    if (begin != next)
      return base::data_loss("tensor '" + t.name + "': elements [" + std::to_string(std::min(next, begin)) + ", " +
                             std::to_string(std::max(next, begin)) + ") are " +
                             (begin > next ? "not covered by any source" : "covered twice"));
    next = end;
  }
  if (next != t.numel())
    return base::data_loss("tensor '" + t.name + "': sources cover " + std::to_string(next) + " of " +
                           std::to_string(t.numel()) + " elements");
  return {};
}

Result<std::vector<Piece>> box_pieces(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& offsets,
                                      const std::vector<std::int64_t>& sizes, const TensorLocation& src) {
  const std::size_t n = shape.size();
  if (offsets.size() != n || sizes.size() != n)
    return base::invalid_argument("a chunk of " + std::to_string(sizes.size()) + " dimensions in a tensor of " +
                                  std::to_string(n));
  std::uint64_t numel = 1;
  for (std::size_t d = 0; d < n; ++d) {
    if (offsets[d] < 0 || sizes[d] < 0 || offsets[d] > shape[d] || sizes[d] > shape[d] - offsets[d])
      return base::invalid_argument("a chunk [" + std::to_string(offsets[d]) + ", +" + std::to_string(sizes[d]) +
                                    ") outside dimension " + std::to_string(d) + " of size " + std::to_string(shape[d]));
    numel *= static_cast<std::uint64_t>(sizes[d]);
  }
  if (src.numel != numel)
    return base::invalid_argument("a chunk of " + std::to_string(numel) + " elements stored as " + std::to_string(src.numel));
  if (numel == 0) return std::vector<Piece>{};
  // stride[d]: elements between consecutive indices of dimension d in the tensor.
  std::vector<std::uint64_t> stride(n, 1);
  for (std::size_t d = n; d-- > 1;) stride[d - 1] = stride[d] * static_cast<std::uint64_t>(shape[d]);
  // Trailing dimensions the chunk spans whole are contiguous in both; `cut` is the innermost one
  // it does not span (its run is one row), -1 when it is the whole tensor.
  int cut = static_cast<int>(n) - 1;
  while (cut >= 0 && sizes[static_cast<std::size_t>(cut)] == shape[static_cast<std::size_t>(cut)]) --cut;
  if (cut < 0) return std::vector<Piece>{{src, 0, 1, 0}};
  const auto c = static_cast<std::size_t>(cut);
  const std::uint64_t row = static_cast<std::uint64_t>(sizes[c]) * stride[c];
  // Rows index dimensions [first, cut): uniform stride as long as every dimension between them
  // is whole; the dimensions before `first` give one piece per index.
  std::size_t first = c;
  std::uint64_t rows = 1;
  if (c > 0) {
    first = c - 1;
    rows = static_cast<std::uint64_t>(sizes[first]);
    while (first > 0 && sizes[first] == shape[first]) rows *= static_cast<std::uint64_t>(sizes[--first]);
  }
  const std::uint64_t row_stride = c > 0 ? stride[c - 1] : 0;
  std::vector<Piece> pieces;
  std::vector<std::int64_t> index(first, 0);  // over dimensions [0, first)
  for (std::uint64_t done = 0; done < numel; done += rows * row) {
    std::uint64_t dst = 0;
    for (std::size_t d = 0; d < n; ++d)
      dst += static_cast<std::uint64_t>(offsets[d] + (d < first ? index[d] : 0)) * stride[d];
    pieces.push_back({src.slice(done, rows * row), dst, rows, rows > 1 ? row_stride : 0});
    for (std::size_t d = first; d-- > 0;) {  // next index, last dimension fastest
      if (++index[d] < sizes[d]) break;
      index[d] = 0;
    }
  }
  return pieces;
}

Result<SourceLayout> select_prefix(const SourceLayout& layout, const std::string& prefix) {
  const std::string head = prefix + ".";
  SourceLayout out;
  std::vector<int> new_index(layout.tensors.size(), -1);
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
    const LogicalTensor& t = layout.tensors[i];
    if (t.name.compare(0, head.size(), head) != 0 || t.name.size() == head.size()) continue;
    LogicalTensor kept = t;
    kept.name = t.name.substr(head.size());
    if (kept.role == TensorRole::kAlias) {
      const int source = new_index[static_cast<std::size_t>(t.alias_of)];
      if (source >= 0) {
        kept.alias_of = source;
      } else {  // its source was left out: the alias keeps the values itself
        const LogicalTensor& from = layout.tensors[static_cast<std::size_t>(t.alias_of)];
        kept.role = from.role;
        kept.alias_of = -1;
        kept.pieces = from.pieces;
      }
    }
    new_index[i] = static_cast<int>(out.tensors.size());
    out.tensors.push_back(std::move(kept));
  }
  if (out.tensors.empty()) {
    std::set<std::string> tops;
    for (const LogicalTensor& t : layout.tensors) tops.insert(t.name.substr(0, t.name.find('.')));
    std::string names;
    for (const std::string& n : tops) names += (names.empty() ? "" : ", ") + n;
    return base::invalid_argument("--select " + prefix + ": no tensor is named '" + head + "*'; the top-level names are: " + names);
  }
  return out;
}

void clip_pieces(const std::vector<Piece>& pieces, std::uint64_t begin, std::uint64_t end, std::vector<Piece>& out) {
  auto clip_run = [&](const TensorLocation& src, std::uint64_t dst) {  // one contiguous row
    const std::uint64_t lo = std::max(dst, begin), hi = std::min(dst + src.numel, end);
    if (lo < hi) out.push_back({src.slice(lo - dst, hi - lo), lo - begin, 1, 0});
  };
  for (const Piece& p : pieces) {
    if (p.rows <= 1) {
      clip_run(p.src, p.dst_offset);
      continue;
    }
    const std::uint64_t n = p.row_numel();
    auto row_src = [&](std::uint64_t k) { return p.src.slice(k * n, n); };
    auto row_dst = [&](std::uint64_t k) { return p.dst_offset + k * p.dst_row_stride; };
    // Rows wholly inside form one strided piece; rows that straddle an edge are clipped alone.
    std::uint64_t first = p.rows, last = 0;  // whole rows [first, last)
    for (std::uint64_t k = 0; k < p.rows; ++k) {
      const std::uint64_t d = row_dst(k);
      if (d >= begin && d + n <= end) {
        if (first == p.rows) first = k;
        last = k + 1;
      } else {
        clip_run(row_src(k), d);
      }
    }
    if (first < last) {
      const std::uint64_t rows = last - first;
      out.push_back({p.src.slice(first * n, rows * n), row_dst(first) - begin, rows, rows > 1 ? p.dst_row_stride : 0});
    }
  }
  std::sort(out.begin(), out.end(), [](const Piece& a, const Piece& b) { return a.dst_offset < b.dst_offset; });
}

Status for_each_run(const LogicalTensor& t, const std::function<Status(const TensorLocation& src, std::uint64_t dst)>& fn) {
  const std::uint64_t numel = t.numel();
  for (const Piece& p : t.pieces) {
    const std::uint64_t rows = p.rows, row = p.row_numel();
    if (rows == 0 || row * rows != p.src.numel || (rows > 0 && p.dst_offset + (rows - 1) * p.dst_row_stride + row > numel))
      return base::internal_error("'" + t.name + "': a piece runs past the tensor's end");
    for (std::uint64_t k = 0; k < rows; ++k) UCP_RETURN_IF_ERROR(fn(p.src.slice(k * row, row), p.dst_offset + k * p.dst_row_stride));
  }
  return {};
}

std::optional<TensorLocation> whole_run(const LogicalTensor& t) {
  if (t.role == TensorRole::kAlias || t.pieces.size() != 1) return std::nullopt;
  const Piece& p = t.pieces.front();
  if (p.rows != 1 || p.dst_offset != 0 || p.src.numel != t.numel() || p.src.dtype != t.dtype) return std::nullopt;
  return p.src;
}

Status read_tensor(const LogicalTensor& t, std::span<const std::shared_ptr<const MappedFile>> files,
                   std::span<std::byte> out) {
  const std::uint64_t size = base::dtype_size(t.dtype);
  if (out.size() != t.numel() * size) return base::internal_error("read_tensor: buffer of the wrong size for '" + t.name + "'");
  return for_each_run(t, [&](const TensorLocation& src, std::uint64_t dst) -> Status {
    if (src.file >= files.size() || !files[src.file]) return base::internal_error("read_tensor: piece of an unknown file");
    const MappedFile& f = *files[src.file];
    if (src.offset > f.size() || src.nbytes() > f.size() - src.offset)
      return base::data_loss("'" + f.path() + "': bytes [" + std::to_string(src.offset) + ", +" + std::to_string(src.nbytes()) +
                             ") of tensor '" + t.name + "' run past its end (" + std::to_string(f.size()) + " bytes)");
    std::memcpy(out.data() + dst * size, f.bytes().data() + src.offset, src.nbytes());
    return {};
  });
}

}  // namespace ucp::format
