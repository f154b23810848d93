// libFuzzer target for the pickle VM: any input must give a value or an error, never a crash,
// hang or leak. Inputs that decode are re-encoded (protocol 2 and 4) and decoded again; the value
// must survive unchanged (abort otherwise: that is a finding). Persistent ids shaped like torch's
// resolve to zero-filled fake storages so that tensor paths are reached.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/format/pickle_reader.h"
#include "ucp/format/pickle_writer.h"
#include "ucp/format/value.h"

namespace {

using ucp::format::Value;
using ucp::format::ValuePtr;

constexpr std::uint64_t kMaxFakeBytes = 1 << 16;

ucp::base::Result<ValuePtr> fake_storage(const ValuePtr& pid) {
  if (pid->kind != Value::Kind::kTuple || pid->items.size() != 5) return ucp::base::data_loss("pid shape");
  const auto& a = pid->items;
  if (a[1]->kind != Value::Kind::kGlobal || a[3]->kind != Value::Kind::kStr || a[4]->kind != Value::Kind::kInt)
    return ucp::base::data_loss("pid fields");
  auto dtype = ucp::base::dtype_from_torch_storage_class(a[1]->global.name);
  if (!dtype || a[1]->global.module != "torch") return ucp::base::data_loss("storage class");
  const std::uint64_t esize = ucp::base::dtype_size(*dtype);
  if (a[4]->i < 0 || static_cast<std::uint64_t>(a[4]->i) > kMaxFakeBytes / esize) return ucp::base::data_loss("numel");
  const auto numel = static_cast<std::uint64_t>(a[4]->i);
  auto storage = ucp::format::Storage::owning(*dtype, std::vector<std::byte>(numel * esize), a[3]->str);
  auto v = std::make_shared<Value>();
  v->kind = Value::Kind::kStorage;
  v->storage = std::move(storage);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ucp::format::PersistentLoad load = fake_storage;
  ucp::format::PickleLimits limits;
  limits.max_expanded_values = 1 << 20;  // keep each run fast; the cap logic is what is exercised
  auto first = ucp::format::read_pickle(std::span(reinterpret_cast<const std::byte*>(data), size), load, limits);
  if (!first.ok()) return 0;
  for (int protocol : {2, 4}) {
    ucp::format::PickleWriteOptions options;
    options.protocol = protocol;
    auto encoded = ucp::format::write_pickle(*first, nullptr, options);
    if (!encoded.ok()) {
      // Only trees the protocol cannot express may be refused.
      const std::string& m = encoded.status().message();
      if (m.find("newline") != std::string::npos || m.find("NEWOBJ_EX") != std::string::npos) continue;
      std::fprintf(stderr, "write_pickle failed: %s\n", encoded.status().to_string().c_str());
      std::abort();
    }
    auto second = ucp::format::read_pickle(*encoded, load, limits);
    if (!second.ok()) {
      std::fprintf(stderr, "re-read of protocol %d failed: %s\n", protocol, second.status().to_string().c_str());
      std::abort();
    }
    const std::string diff = ucp::format::first_difference(*first, *second);
    if (!diff.empty()) {
      std::fprintf(stderr, "protocol %d round trip changed the value: %s\n", protocol, diff.c_str());
      std::abort();
    }
  }
  return 0;
}
