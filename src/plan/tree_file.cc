#include "ucp/plan/tree_file.h"

#include <string>

#include "ucp/format/pickle_writer.h"

namespace ucp::plan {
using base::Result;
using base::Status;

Status build_tree_file(const std::string& name, const format::ValuePtr& root,
                       const std::map<const format::Storage*, PlannedStorage>& planned, const StorageLocator& locate,
                       FilePlan& plan, SourceLayout& layout) {
  const int file_index = static_cast<int>(plan.files.size());

  // Keys in first-pickled order; the writer asks once per reference.
  std::map<const format::Storage*, std::string> keys;
  std::vector<std::shared_ptr<format::Storage>> order;
  auto key_of = [&](const std::shared_ptr<format::Storage>& s) {
    auto [it, fresh] = keys.try_emplace(s.get(), std::to_string(keys.size()));
    if (fresh) order.push_back(s);
    return it->second;
  };
  auto pickle = format::write_pickle(root, key_of);
  if (!pickle.ok()) return Status(pickle.status()).annotate("'" + name + "'");

  // One plan tensor per record; -1 for a storage inlined into the file's fixed bytes.
  std::vector<int> record_tensor;
  std::vector<std::uint64_t> record_bytes;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const format::Storage& s = *order[k];
    auto it = planned.find(&s);
    if (it != planned.end()) {
      record_tensor.push_back(it->second.tensor);
      record_bytes.push_back(plan.tensors[static_cast<std::size_t>(it->second.tensor)].nbytes);
      continue;
    }
    Result<format::TensorLocation> located = locate(s);
    if (!located.ok() && located.status().code() == base::StatusCode::kNotFound) {
      record_tensor.push_back(-1);
      record_bytes.push_back(s.nbytes());
      continue;
    }
    UCP_ASSIGN_OR_RETURN(format::TensorLocation src, std::move(located));
    if (src.numel != s.numel || src.dtype != s.dtype)
      return base::internal_error("'" + name + "': template storage " + std::to_string(k) + " resolved to the wrong size");
    record_tensor.push_back(add_verbatim_tensor(name + ":data/" + std::to_string(k), src, plan, layout));
    record_bytes.push_back(src.nbytes());
  }

  OutputFile file;
  file.name = name;
  const std::vector<std::uint64_t> offsets = lay_out_torch_zip(file, std::move(*pickle), record_bytes);
  for (std::size_t k = 0; k < order.size(); ++k) {
    if (record_tensor[k] < 0) {
      const auto bytes = order[k]->bytes;
      if (!bytes.empty()) file.fixed.emplace_back(offsets[k], std::vector<std::byte>(bytes.begin(), bytes.end()));
      continue;
    }
    OutputTensor& t = plan.tensors[static_cast<std::size_t>(record_tensor[k])];
    t.file = file_index;
    t.file_offset = offsets[k];
    auto it = planned.find(order[k].get());
    if (it == planned.end()) continue;
    const std::size_t elt = base::dtype_size(t.dtype);
    for (const auto& [b, e] : it->second.zeros)
      if (e > b) file.fixed.emplace_back(t.file_offset + b * elt, std::vector<std::byte>((e - b) * elt));
  }
  plan.files.push_back(std::move(file));
  return {};
}

}  // namespace ucp::plan
