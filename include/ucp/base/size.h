// Byte sizes given by users: "5GB" (decimal, as Hugging Face's max_shard_size), "1GiB" (binary),
// "512M" / "64K" (binary, nccl-tests style), or a plain byte count.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ucp/base/status.h"

namespace ucp::base {

/// Parses a size; InvalidArgument naming the text and the accepted units on failure.
Result<std::uint64_t> parse_size(std::string_view text);
/// "1.5 GiB", "312 B": for messages and reports.
std::string format_bytes(std::uint64_t bytes);

}  // namespace ucp::base
