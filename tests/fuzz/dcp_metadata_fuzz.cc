// libFuzzer target for the DCP .metadata parser (a pickle of torch's Metadata, read through the
// pickle VM): any input must give a Metadata or an error, never a crash, hang or leak. A parsed
// Metadata must name each tensor once and give every chunk as many dimensions as its tensor, and
// its planner_data must nest into a state (dcp_to_torch_save's) or be refused, never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <span>
#include <string>

#include "ucp/format/dcp.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  auto m = ucp::format::dcp::parse_metadata(bytes, "fuzz");
  if (!m.ok()) return 0;
  std::set<std::string> names;
  for (const auto& t : m->tensors) {
    if (!names.insert(t.fqn).second) std::abort();
    for (const auto& c : t.chunks)
      if (c.offsets.size() != c.sizes.size()) std::abort();
  }
  std::map<std::string, ucp::format::ValuePtr> leaves;
  for (const auto& fqn : m->item_order) leaves[fqn] = ucp::format::Value::none();
  (void)ucp::format::dcp::nested_state(*m, leaves);
  return 0;
}
