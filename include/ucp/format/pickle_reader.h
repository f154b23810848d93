// A pickle VM that never executes anything: protocols 0-5 opcodes needed by torch.save / stdlib
// pickles (protocol 2 to 5 in practice) evaluate to a Value tree (value.h).
//
// Recognised GLOBALs become typed values: collections.OrderedDict -> Dict(ordered), torch.Size ->
// Size, __builtin__/builtins set/frozenset/bytearray, _codecs.encode(str, 'latin1') -> Bytes,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter -> Tensor. Anything else stays an opaque
// Object. The input is untrusted: every read is bounds-checked, containers never pre-allocate more
// than the input could describe, nesting depth and total tree size are capped, reference cycles are
// refused. Errors are DataLoss with the byte offset of the offending opcode ("APPEND at offset 17:
// stack underflow"); valid pickles we do not model are Unimplemented (EXT*, INST/OBJ, out-of-band
// buffers, protocol > 5, a second BUILD on one object).
//
// Details worth knowing: ints that fit int64 are always Int (LONG1/LONG4/text included), others
// BigInt in minimal two's complement; protocol 0-2 byte strings (STRING, BINSTRING) become str,
// decoded as UTF-8 like torch.load does; every str must be valid UTF-8 (surrogates allowed, as
// CPython's 'surrogatepass'); dict keys are kept as pickled, duplicates included (Value::get finds
// the last one, as Python would); REDUCE of a recognised global with arguments of an unexpected
// shape stays an opaque Object, except for tensors, whose metadata must be valid; BUILD with a dict
// on an OrderedDict goes to Value::state (state_dict()'s _metadata).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "ucp/base/status.h"
#include "ucp/format/value.h"

namespace ucp::format {

struct PickleLimits {
  /// Nesting depth: containers/objects holding children along one path (an empty list does not
  /// count). Also enforced while the graph is built, so a deeper structure is refused even if the
  /// pickle drops it before STOP (which is what keeps hostile nestings from being built at all).
  std::size_t max_depth = 1000;
  std::uint64_t max_expanded_values = 1ull << 26;  ///< Values in the tree if shared subtrees were copied.
  std::size_t max_tensor_dims = 64;
};

/// Resolves a BINPERSID/PERSID payload (for torch: ('storage', cls, key, location, numel)) to a
/// value, normally a Storage. The reader passes the decoded pid.
using PersistentLoad = std::function<base::Result<ValuePtr>(const ValuePtr& pid)>;

/// Decodes one pickle (up to STOP). `persistent_load` may be null: then a persistent id is an error.
base::Result<ValuePtr> read_pickle(std::span<const std::byte> data, const PersistentLoad& persistent_load,
                                   const PickleLimits& limits = {});

}  // namespace ucp::format
