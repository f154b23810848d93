// DeepSpeed's partition math for a data-parallel size, as pure functions: which elements of which
// parameter a DP rank holds in its flat partition, where, and where the padding DeepSpeed adds
// sits. Used to lay out DeepSpeed ZeRO files for a new world size (reshard).
//
// ZeRO-1/2 and BF16_Optimizer: the trainable parameters of a group are flattened (group order),
// padded to a multiple of 2*dp and cut into dp equal partitions. ZeRO-3: every parameter is cut on
// its own into dp slices of ceil(n/dp) elements, and a rank's flat tensor per sub-group is the
// concatenation of its slices.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace ucp::plan {

/// Elements [param_offset, param_offset + numel) of parameter `param` sit at `dst_offset` of the
/// flat partition.
struct Segment {
  int param = 0;
  std::uint64_t param_offset = 0;
  std::uint64_t numel = 0;
  std::uint64_t dst_offset = 0;
};

/// One rank's flat partition: `numel` elements, made of `segments` and zero padding `zeros`
/// ([begin, end) element runs); together they cover [0, numel) exactly once.
struct PartitionLayout {
  std::uint64_t numel = 0;
  std::vector<Segment> segments;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> zeros;
};

/// ZeRO-1/2 / BF16_Optimizer partition size S = align(T, 2*dp) / dp.
std::uint64_t flat_partition_size(std::uint64_t total, int dp);
/// Padding elements at the end of rank `rank`'s partition (DeepSpeed's group_paddings entry).
std::uint64_t flat_partition_padding(std::uint64_t total, int dp, int rank);

/// Rank `rank`'s partition of a flat group whose parameters have `numels` elements (flattening
/// order). `with_padding` false gives the lean form ZeRO-1/2 saves its fp32 masters in (padding
/// dropped); true the full S elements (moments, and BF16_Optimizer's fp32).
PartitionLayout flat_partition(const std::vector<std::uint64_t>& numels, int dp, int rank, bool with_padding);

/// ZeRO-3: elements per rank of a parameter of n elements, ceil(n/dp).
std::uint64_t zero3_partition_numel(std::uint64_t n, int dp);
/// ZeRO-3: rank `rank`'s flat tensor of a sub-group whose parameters have `numels` elements.
PartitionLayout zero3_partition(const std::vector<std::uint64_t>& numels, int dp, int rank);

/// ZeRO-3 sub-groups of one parameter group: DeepSpeed closes a sub-group once the running sum of
/// partition numels reaches `sub_group_size`, or at the group's last parameter; a group whose
/// total partition numel is <= sub_group_size is one sub-group. Returns parameter index lists.
std::vector<std::vector<int>> zero3_sub_groups(const std::vector<std::uint64_t>& numels, int dp,
                                               std::uint64_t sub_group_size);

}  // namespace ucp::plan
