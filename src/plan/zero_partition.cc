#include "ucp/plan/zero_partition.h"

#include <algorithm>

#include "ucp/base/checked_math.h"

namespace ucp::plan {

std::uint64_t flat_partition_size(std::uint64_t total, int dp) {
  const auto d = static_cast<std::uint64_t>(dp);
  return base::align_up(total, 2 * d) / d;
}

std::uint64_t flat_partition_padding(std::uint64_t total, int dp, int rank) {
  const std::uint64_t size = flat_partition_size(total, dp);
  const std::uint64_t left = static_cast<std::uint64_t>(rank) * size;
  if (total <= left) return size;
  if (total < left + size) return left + size - total;
  return 0;
}

PartitionLayout flat_partition(const std::vector<std::uint64_t>& numels, int dp, int rank, bool with_padding) {
  std::uint64_t total = 0;
  for (std::uint64_t n : numels) total += n;
  const std::uint64_t size = flat_partition_size(total, dp);
  const std::uint64_t begin = static_cast<std::uint64_t>(rank) * size, end = begin + size;
  PartitionLayout out;
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < numels.size(); ++i) {
    const std::uint64_t lo = std::max(offset, begin), hi = std::min(offset + numels[i], end);
    if (lo < hi) out.segments.push_back({static_cast<int>(i), lo - offset, hi - lo, lo - begin});
    offset += numels[i];
  }
  const std::uint64_t padding = flat_partition_padding(total, dp, rank);
  out.numel = with_padding ? size : size - padding;
  if (with_padding && padding > 0) out.zeros.emplace_back(size - padding, size);
  return out;
}

std::uint64_t zero3_partition_numel(std::uint64_t n, int dp) { return base::ceil_div(n, static_cast<std::uint64_t>(dp)); }

PartitionLayout zero3_partition(const std::vector<std::uint64_t>& numels, int dp, int rank) {
  PartitionLayout out;
  for (std::size_t i = 0; i < numels.size(); ++i) {
    const std::uint64_t part = zero3_partition_numel(numels[i], dp);
    const std::uint64_t first = static_cast<std::uint64_t>(rank) * part;
    const std::uint64_t have = first >= numels[i] ? 0 : std::min(part, numels[i] - first);
    if (have > 0) out.segments.push_back({static_cast<int>(i), first, have, out.numel});
    if (have < part) out.zeros.emplace_back(out.numel + have, out.numel + part);
    out.numel += part;
  }
  return out;
}

std::vector<std::vector<int>> zero3_sub_groups(const std::vector<std::uint64_t>& numels, int dp,
                                               std::uint64_t sub_group_size) {
  std::vector<std::vector<int>> out;
  if (numels.empty()) return out;
  std::uint64_t group_total = 0;
  for (std::uint64_t n : numels) group_total += zero3_partition_numel(n, dp);
  std::vector<int> all(numels.size());
  for (std::size_t i = 0; i < numels.size(); ++i) all[i] = static_cast<int>(i);
  if (sub_group_size >= group_total) return {all};
  std::vector<int> current;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < numels.size(); ++i) {
    current.push_back(static_cast<int>(i));
    running += zero3_partition_numel(numels[i], dp);
    if (running >= sub_group_size || i + 1 == numels.size()) {
      out.push_back(std::move(current));
      current.clear();
      running = 0;
    }
  }
  return out;
}

}  // namespace ucp::plan
