#include "ucp/format/hyperslab.h"

namespace ucp::format {
namespace {

// Blocks for elements [b, e) of the sub-array spanned by dims k.. (row-major), whose leading
// coordinates are `prefix` (one per dim before k).
void blocks(std::span<const std::int64_t> shape, std::size_t k, std::vector<std::uint64_t>& prefix, std::uint64_t b,
            std::uint64_t e, std::vector<Hyperslab>& out) {
  if (b >= e) return;
  const std::size_t rank = shape.size();
  auto emit = [&](std::uint64_t first, std::uint64_t rows) {
    // `rows` whole rows of dim k starting at `first`, every later dim complete.
    Hyperslab h;
    h.start = prefix;
    h.count.assign(prefix.size(), 1);
    h.start.push_back(first);
    h.count.push_back(rows);
    for (std::size_t d = k + 1; d < rank; ++d) {
      h.start.push_back(0);
      h.count.push_back(static_cast<std::uint64_t>(shape[d]));
    }
    out.push_back(std::move(h));
  };
  if (k + 1 == rank) {  // last dimension: a plain interval
    emit(b, e - b);
    return;
  }
  std::uint64_t inner = 1;  // elements per row of dim k
  for (std::size_t d = k + 1; d < rank; ++d) inner *= static_cast<std::uint64_t>(shape[d]);
  auto row = [&](std::uint64_t i, std::uint64_t lo, std::uint64_t hi) {  // part [lo, hi) of row i
    if (lo == 0 && hi == inner) {
      emit(i, 1);
      return;
    }
    prefix.push_back(i);
    blocks(shape, k + 1, prefix, lo, hi, out);
    prefix.pop_back();
  };
  const std::uint64_t first_full = (b + inner - 1) / inner, end_full = e / inner;
  if (first_full > end_full) {  // inside one row, touching neither of its ends
    const std::uint64_t i = b / inner;
    row(i, b - i * inner, e - i * inner);
    return;
  }
  if (b < first_full * inner) row(first_full - 1, b - (first_full - 1) * inner, inner);
  if (end_full > first_full) emit(first_full, end_full - first_full);
  if (e > end_full * inner) row(end_full, 0, e - end_full * inner);
}

}  // namespace

std::vector<Hyperslab> flat_run_blocks(std::span<const std::int64_t> shape, std::uint64_t begin, std::uint64_t n) {
  std::vector<Hyperslab> out;
  if (n == 0) return out;
  if (shape.empty()) {  // a scalar: the one element
    out.push_back({});
    return out;
  }
  std::vector<std::uint64_t> prefix;
  blocks(shape, 0, prefix, begin, begin + n, out);
  return out;
}

}  // namespace ucp::format
