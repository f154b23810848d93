// Pickle encoder for Value trees, protocol 2 (torch.save's default) or 4. Protocol 4 output uses
// MEMOIZE, the short str/bytes opcodes, EMPTY_SET/FROZENSET and NEWOBJ_EX, but no FRAME (framing is
// optional) and GLOBAL rather than STACK_GLOBAL unless a name holds a newline.
//
// Re-emits every kind the reader produces, opaque objects included (callable, REDUCE/NEWOBJ,
// BUILD, appended items), so a DeepSpeed file read and re-written is rebuilt identically by Python.
// Shared values (same pointer) are memoised and referenced again, as pickle does. Tensors are
// written as torch._utils._rebuild_tensor_v2 over a persistent-id storage reference.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/value.h"

namespace ucp::format {

struct PickleWriteOptions {
  int protocol = 2;  ///< 2 or 4.
  /// Refuse trees nested deeper than this (counted as the reader counts, PickleLimits::max_depth),
  /// so that what is written can be read back and the recursive encoder stays shallow.
  std::size_t max_depth = 1000;
};

/// Returns the storage key ("0", "1", ...) under which `storage` will be stored; called once per
/// distinct storage (by pointer) in pickling order. A null function numbers them "0", "1", ...
using StorageKeyFn = std::function<std::string(const std::shared_ptr<Storage>& storage)>;

/// Byte layout follows CPython's C pickler as torch.save drives it (memo order, batching, the
/// protocol-2 encodings of bytes/sets, a fresh persistent-id tuple per storage reference with the
/// key string memoised), so re-writing a value tree read from a torch 1.13 protocol-2 file gives
/// back the same data.pkl bytes. InvalidArgument for trees the pickle cannot express (null
/// children, cycles, inconsistent tensors, names with newlines at protocol 2, sizes beyond the
/// protocol's length fields); Unimplemented for NEWOBJ_EX at protocol 2.
base::Result<std::vector<std::byte>> write_pickle(const ValuePtr& root, const StorageKeyFn& storage_key,
                                                  const PickleWriteOptions& options = {});

}  // namespace ucp::format
