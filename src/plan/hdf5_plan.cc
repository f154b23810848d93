#include "ucp/plan/hdf5_plan.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "ucp/base/checked_math.h"
#include "ucp/format/crc32.h"

namespace ucp::plan {
using base::Result;
using base::Status;

namespace {

// One HDF5 link name: '/' would split it into groups, "." and ".." are path components.
Status check_link_name(const std::string& name, const char* what) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return base::failed_precondition(std::string(what) + " '" + name +
                                     "' cannot be one HDF5 dataset name (empty, '.', '..' or containing '/'); "
                                     "use --format safetensors");
  return {};
}

void fnv(std::uint64_t& h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
}
void fnv_str(std::uint64_t& h, const std::string& s) {
  const std::uint64_t n = s.size();
  fnv(h, &n, sizeof n);
  fnv(h, s.data(), s.size());
}

}  // namespace

namespace {

// Lays out the datasets of one HDF5 file in a virtual file (their bytes back to back), in order:
// the model, the optimizer states, the universal checkpoint's files.
class Hdf5Planner {
 public:
  explicit Hdf5Planner(const SourceLayout& model) : model_(model), layout_(model) {
    out_.groups.push_back(format::kHdf5ModelGroup);
  }

  Status add_model(base::DType float_dtype) {
    for (const LogicalTensor& lt : model_.tensors) {
      UCP_RETURN_IF_ERROR(check_link_name(lt.name, "tensor"));
      const base::DType dtype = base::dtype_is_floating(lt.dtype) ? float_dtype : lt.dtype;
      UCP_RETURN_IF_ERROR(add(lt, std::string(format::kHdf5ModelGroup) + "/" + lt.name, dtype));
      if (lt.role == TensorRole::kAlias)
        tied_[lt.name] = model_.tensors[static_cast<std::size_t>(out_.plan.tensors.back().shares_storage_with)].name;
    }
    return {};
  }

  // /optimizer/<param>/{fp32,exp_avg,exp_avg_sq}, fp32.
  Status add_optimizer_states(const Hdf5OptimizerStates& optimizer) {
    const std::vector<LogicalTensor>* states[] = {&optimizer.fp32, &optimizer.exp_avg, &optimizer.exp_avg_sq};
    const char* names[] = {"fp32", "exp_avg", "exp_avg_sq"};
    for (const auto* s : states)
      if (s->size() != optimizer.fp32.size()) return base::internal_error("plan_hdf5: optimizer state counts differ");
    out_.groups.push_back(format::kHdf5OptimizerGroup);
    for (std::size_t i = 0; i < optimizer.fp32.size(); ++i) {
      const std::string& param = optimizer.fp32[i].name;
      UCP_RETURN_IF_ERROR(check_link_name(param, "parameter"));
      const std::string group = std::string(format::kHdf5OptimizerGroup) + "/" + param;
      out_.groups.push_back(group);
      for (std::size_t k = 0; k < 3; ++k) {
        LogicalTensor lt = (*states[k])[i];
        if (lt.name != param) return base::internal_error("plan_hdf5: optimizer states list parameters in different orders");
        lt.role = TensorRole::kTrainable;
        lt.alias_of = -1;
        lt.name = param + "/" + names[k];
        UCP_RETURN_IF_ERROR(add(lt, group + "/" + names[k], base::DType::kF32));
        layout_.tensors.push_back(std::move(lt));
      }
    }
    return {};
  }

  // /universal/...: the model-state copies (byte ranges of the sources) and the optimizer files.
  Status add_universal_files(const Hdf5OptimizerStates& optimizer) {
    for (const SourceFileCopy& c : optimizer.source_copies) {
      UCP_ASSIGN_OR_RETURN(std::string path, universal_dataset_path(c.path));
      LogicalTensor lt = verbatim_tensor(path.substr(1), c.location());
      UCP_RETURN_IF_ERROR(add(lt, std::move(path), base::DType::kU8));
      layout_.tensors.push_back(std::move(lt));
    }
    for (const Hdf5Blob& b : optimizer.blobs) {
      UCP_ASSIGN_OR_RETURN(std::string path, universal_dataset_path(b.path));
      out_.blobs.push_back({std::move(path), b.bytes});
    }
    return {};
  }

  Result<Hdf5Plan> finish(const std::vector<std::string>& source_paths, const PlanOptions& options,
                          std::vector<Hdf5Attribute> attributes) {
    OutputFile file;
    file.name = format::kHdf5FileName;
    file.size = offset_;
    file.every_rank_writes = true;
    out_.plan.files.push_back(std::move(file));
    UCP_RETURN_IF_ERROR(finish_plan(out_.plan, layout_, source_paths, options));
    out_.attributes.push_back({format::kHdf5ModelGroup, "tied_aliases", tied_.dump()});
    for (auto& a : attributes) out_.attributes.push_back(std::move(a));
    return std::move(out_);
  }

 private:
  // One dataset at `path` for `lt` in `dtype`; an alias becomes a hard link to its source's dataset.
  Status add(const LogicalTensor& lt, std::string path, base::DType dtype) {
    FilePlan& plan = out_.plan;
    OutputTensor t;
    t.name = lt.name;
    t.logical = static_cast<int>(plan.tensors.size());
    t.dtype = dtype;
    t.shape = lt.shape;
    auto nbytes = base::checked_mul(lt.numel(), base::dtype_size(dtype));
    if (!nbytes) return base::data_loss("tensor '" + lt.name + "' is too large");
    t.nbytes = *nbytes;
    t.file = 0;
    if (lt.role == TensorRole::kAlias) {
      // A hard link to the source's dataset: no bytes of its own (finish_plan skips it).
      int src = lt.alias_of;
      for (int hops = 0; src >= 0 && layout_.tensors[static_cast<std::size_t>(src)].role == TensorRole::kAlias; ++hops) {
        if (hops > static_cast<int>(layout_.tensors.size())) return base::internal_error("alias cycle at '" + lt.name + "'");
        src = layout_.tensors[static_cast<std::size_t>(src)].alias_of;
      }
      if (src < 0 || static_cast<std::size_t>(src) >= plan.tensors.size())
        return base::internal_error("alias '" + lt.name + "' refers to no earlier tensor");
      t.shares_storage_with = src;
      t.file_offset = plan.tensors[static_cast<std::size_t>(src)].file_offset;
    } else {
      t.file_offset = offset_;
      const auto end = base::checked_add(offset_, t.nbytes);
      if (!end) return base::data_loss("tensor '" + lt.name + "': the model's total size overflows 64 bits");
      offset_ = *end;
    }
    plan.tensors.push_back(std::move(t));
    out_.paths.push_back(std::move(path));
    return {};
  }

  // The dataset path of a universal file; each folder of `relative` becomes a group (created
  // once, parents first).
  Result<std::string> universal_dataset_path(const std::string& relative) {
    std::string path = format::kHdf5UniversalGroup;
    add_group(path);
    std::size_t begin = 0;
    for (std::size_t slash; (slash = relative.find('/', begin)) != std::string::npos; begin = slash + 1) {
      UCP_RETURN_IF_ERROR(check_link_name(relative.substr(begin, slash - begin), "universal file folder"));
      path += "/" + relative.substr(begin, slash - begin);
      add_group(path);
    }
    UCP_RETURN_IF_ERROR(check_link_name(relative.substr(begin), "universal file"));
    return path + "/" + relative.substr(begin);
  }
  void add_group(const std::string& path) {
    if (std::find(out_.groups.begin(), out_.groups.end(), path) == out_.groups.end()) out_.groups.push_back(path);
  }

  const SourceLayout& model_;
  // finish_plan resolves every output tensor through one layout: the model's tensors first (so
  // alias_of indices stay valid), then the optimizer states.
  SourceLayout layout_;
  Hdf5Plan out_;
  std::uint64_t offset_ = 0;  // in the virtual file
  nlohmann::json tied_ = nlohmann::json::object();
};

}  // namespace

Result<Hdf5Plan> plan_hdf5(const SourceLayout& model, const Hdf5OptimizerStates* optimizer,
                           const std::vector<std::string>& source_paths, const PlanOptions& options,
                           std::vector<Hdf5Attribute> attributes) {
  Hdf5Planner planner(model);
  UCP_RETURN_IF_ERROR(planner.add_model(options.float_dtype));
  if (optimizer) {
    UCP_RETURN_IF_ERROR(planner.add_optimizer_states(*optimizer));
    UCP_RETURN_IF_ERROR(planner.add_universal_files(*optimizer));
  }
  return planner.finish(source_paths, options, std::move(attributes));
}

std::uint64_t Hdf5Plan::digest() const {
  std::uint64_t h = plan.digest();
  for (const auto& p : paths) fnv_str(h, p);
  for (const auto& g : groups) fnv_str(h, g);
  for (const auto& [path, bytes] : blobs) {
    // Their size and CRC-32: byte-wise FNV over a ZeRO-3 optimizer_state.pt would cost seconds.
    fnv_str(h, path);
    const std::uint64_t summary[] = {bytes->size(), format::crc32_update(0, *bytes)};
    fnv(h, summary, sizeof summary);
  }
  for (const auto& a : attributes) {
    fnv_str(h, a.object);
    fnv_str(h, a.name);
    const auto index = static_cast<std::uint64_t>(a.value.index());
    fnv(h, &index, sizeof index);
    if (const auto* s = std::get_if<std::string>(&a.value)) fnv_str(h, *s);
    else if (const auto* i = std::get_if<std::int64_t>(&a.value)) fnv(h, i, sizeof *i);
    else fnv(h, &std::get<double>(a.value), sizeof(double));
  }
  return h;
}

}  // namespace ucp::plan
