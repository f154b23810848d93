// ucp_reshard._core: the C++ core seen from Python. One process, no MPI: checkpoints are read with
// the single-process reader (format::read_zero_checkpoint) and the self communicator, and every
// tensor is assembled by exec::read_logical_tensor. Nothing from a pickle is executed (our pickle
// VM builds values, it never calls anything). A failed base::Status becomes the Python exception
// class ucp_reshard._errors.error_class(code) with our one-line message.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/size.h"
#include "ucp/base/status.h"
#include "ucp/comm/self_comm.h"
#include "ucp/exec/convert.h"
#include "ucp/exec/param_states.h"
#include "ucp/exec/tensor_reader.h"
#include "model_tensor_sources.h"  // exec's registry (private to exec; this module is its second caller)
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/source_layout.h"

namespace nb = nanobind;

namespace ucp::python {
namespace {

/// A failed Status on its way to Python (translated in the module's exception translator).
class StatusError : public std::runtime_error {
 public:
  explicit StatusError(const base::Status& s)
      : std::runtime_error(s.message()), code_(std::string(base::status_code_name(s.code()))) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

void throw_if_error(const base::Status& s) {
  if (!s.ok()) throw StatusError(s);
}

template <typename T>
T value_or_throw(base::Result<T>&& r) {
  if (!r.ok()) throw StatusError(r.status());
  return std::move(r).value();
}

base::DType dtype_from_name(const std::string& name) {
  auto d = base::dtype_from_torch_dtype_attr(name);
  if (!d) throw StatusError(base::invalid_argument("unknown dtype '" + name + "'"));
  return *d;
}

const char* role_name(plan::TensorRole role) {
  switch (role) {
    case plan::TensorRole::kBuffer: return "buffer";
    case plan::TensorRole::kFrozen: return "frozen";
    case plan::TensorRole::kTrainable: return "trainable";
    case plan::TensorRole::kAlias: return "alias";
  }
  return "?";
}

/// The tensors of a checkpoint, by group: "model" (the consolidated model: what to-fp32 writes
/// for ZeRO files; fp32 masters and ZeRO-3 frozen parameters for a universal checkpoint), and one
/// group per optimizer state ("exp_avg", "exp_avg_sq", ...) when the checkpoint holds them.
/// Readable tensor by tensor; alias_of indexes the same flat list.
class TensorSet {
 public:
  using Info = std::tuple<std::string, std::vector<std::int64_t>, std::string, std::string, int, std::string>;

  /// The model tensors of any source the consolidated targets read (exec's registry: PyTorch DCP
  /// folders, DeepSpeed ZeRO / BF16_Optimizer save dirs or tag folders), and for ZeRO files the
  /// Adam moments too.
  static std::unique_ptr<TensorSet> model(const std::string& path, const std::string& tag, bool exclude_frozen) {
    comm::SelfComm comm;
    exec::PhaseTimer timer;
    exec::OpenedModelTensors opened = value_or_throw(exec::open_model_tensors(comm, path, tag, exclude_frozen, timer));
    auto set = std::make_unique<TensorSet>();
    for (auto& t : opened.layout.tensors) set->add("model", std::move(t));
    set->files_ = std::make_unique<exec::SourceFiles>(opened.paths);
    set->format_ = opened.description;
    if (const auto& ckpt = opened.zero) {
      for (auto state : {plan::OptimizerState::kExpAvg, plan::OptimizerState::kExpAvgSq}) {
        auto moments = plan::layout_optimizer_state(*ckpt, state);
        if (!moments.ok()) continue;  // no such state (no step yet, another optimizer): not offered
        for (auto& t : *moments) set->add(plan::optimizer_state_name(state), std::move(t));
      }
      set->format_ = "DeepSpeed " + std::string(format::optimizer_kind_name(ckpt->kind));
      set->tag_ = ckpt->files.tag;
      set->location_ = ckpt->files.tag_dir;
      set->zero_stage_ = ckpt->zero_stage;
      set->dp_ = ckpt->dp;
    } else {
      set->location_ = path;
    }
    return set;
  }

  /// A universal checkpoint folder (ds_to_universal's layout or ours; the folder, or the save dir
  /// with latest_universal / `tag`).
  static std::unique_ptr<TensorSet> universal(const std::string& path, const std::string& tag) {
    const std::string folder = exec::find_universal_folder(path, tag);
    if (folder.empty()) throw StatusError(base::not_found("'" + path + "' is not a universal checkpoint folder (no zero/optimizer_state.pt)"));
    plan::ParamStates ps = value_or_throw(exec::param_states_from_universal(folder));
    auto set = std::make_unique<TensorSet>();
    for (auto& t : ps.fp32) set->add("model", std::move(t));
    for (auto& t : ps.frozen) set->add("model", std::move(t));
    for (auto& [key, tensors] : ps.moments)
      for (auto& t : tensors)
        if (!t.pieces.empty() || t.numel() == 0) set->add(key, std::move(t));
    set->files_ = std::make_unique<exec::SourceFiles>(ps.paths);
    set->format_ = "universal";
    set->tag_ = ps.tag;
    set->location_ = folder;
    set->zero_stage_ = ps.zero_stage;
    set->dp_ = ps.dp;
    return set;
  }

  /// (name, shape, dtype, role, alias_of, group) per tensor, each group in its order (dtype: torch's
  /// attribute name).
  std::vector<Info> tensors() const {
    std::vector<Info> out;
    out.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      out.emplace_back(t.name, t.shape, std::string(base::torch_dtype_attr(t.dtype)), role_name(t.role), t.alias_of,
                       groups_[i]);
    }
    return out;
  }

  /// Reads tensor `index` converted to `dtype` into the `nbytes` bytes at `address` (a contiguous
  /// numpy array or torch tensor the caller allocated). Releases the GIL while reading.
  void read_into(std::size_t index, std::uintptr_t address, std::uint64_t nbytes, const std::string& dtype) {
    const plan::LogicalTensor& t = tensor(index);
    const base::DType out = dtype_from_name(dtype);
    base::Status s;
    {
      nb::gil_scoped_release release;
      s = exec::read_logical_tensor(t, *files_, {reinterpret_cast<std::byte*>(address), static_cast<std::size_t>(nbytes)}, out);
    }
    throw_if_error(s);
  }

  /// (path, byte offset) when tensor `index` is one contiguous run of its own dtype in one file.
  std::optional<std::tuple<std::string, std::uint64_t>> source_run(std::size_t index) const {
    auto run = format::whole_run(tensor(index));
    if (!run) return std::nullopt;
    return std::make_tuple(files_->paths().at(run->file), run->offset);
  }

  const std::vector<std::string>& paths() const { return files_->paths(); }
  std::string format() const { return format_; }
  std::string tag() const { return tag_; }
  std::string location() const { return location_; }
  int zero_stage() const { return zero_stage_; }
  int dp() const { return dp_; }

 private:
  void add(const std::string& group, plan::LogicalTensor t) {
    if (t.alias_of >= 0) t.alias_of += static_cast<int>(first_of_group(group));
    tensors_.push_back(std::move(t));
    groups_.push_back(group);
  }
  std::size_t first_of_group(const std::string& group) const {
    for (std::size_t i = 0; i < groups_.size(); ++i)
      if (groups_[i] == group) return i;
    return groups_.size();
  }
  const plan::LogicalTensor& tensor(std::size_t index) const {
    if (index >= tensors_.size()) throw std::out_of_range("tensor index out of range");
    return tensors_[index];
  }

  std::vector<plan::LogicalTensor> tensors_;
  std::vector<std::string> groups_;
  std::unique_ptr<exec::SourceFiles> files_;
  std::string format_, tag_, location_;
  int zero_stage_ = 0, dp_ = 0;
};

/// to-fp32 at one rank without MPI: an HF model folder at `out` (which must not exist or be empty).
void convert_to_model_folder(const std::string& checkpoint, const std::string& out, const std::string& tag,
                             const std::string& format, const std::string& max_shard_size, bool exclude_frozen,
                             const std::string& dtype, const std::string& max_memory) {
  plan::PlanOptions options;
  options.format = format == "torch" ? plan::OutputFormat::kTorch : plan::OutputFormat::kSafetensors;
  options.max_shard_bytes = max_shard_size.empty() ? std::numeric_limits<std::uint64_t>::max()
                                                   : value_or_throw(base::parse_size(max_shard_size).annotate("max_shard_size"));
  options.float_dtype = dtype_from_name(dtype);
  options.max_memory = value_or_throw(base::parse_size(max_memory).annotate("max_memory"));
  options.world_size = 1;
  options.direct_writes = true;  // one rank: it reads and writes every run
  exec::RunOptions run;
  run.command = "to-fp32";
  run.out = out;
  run.quiet = true;
  exec::ModelFolderTarget target;
  target.exclude_frozen = exclude_frozen;
  target.dtype_given = true;  // DeepSpeed's functions always write their dtype, whatever the source
  base::Status s;
  {
    nb::gil_scoped_release release;
    comm::SelfComm comm;
    exec::PhaseTimer timer;
    s = exec::convert(comm, checkpoint, tag, target, options, run, timer);
  }
  throw_if_error(s);
}

}  // namespace
}  // namespace ucp::python

NB_MODULE(_core, m) {
  using namespace ucp::python;
  m.doc() = "ucp-reshard's C++ core (one process, no MPI)";
  m.attr("__version__") = UCP_VERSION;

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const StatusError& e) {
      nb::object cls = nb::module_::import_("ucp_reshard._errors").attr("error_class")(e.code());
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  nb::class_<TensorSet>(m, "TensorSet")
      .def_static("model", &TensorSet::model, nb::arg("path"), nb::arg("tag") = "", nb::arg("exclude_frozen") = false)
      .def_static("universal", &TensorSet::universal, nb::arg("path"), nb::arg("tag") = "")
      .def("tensors", &TensorSet::tensors)
      .def("read_into", &TensorSet::read_into, nb::arg("index"), nb::arg("address"), nb::arg("nbytes"), nb::arg("dtype"))
      .def("source_run", &TensorSet::source_run, nb::arg("index"))
      .def_prop_ro("paths", &TensorSet::paths)
      .def_prop_ro("format", &TensorSet::format)
      .def_prop_ro("tag", &TensorSet::tag)
      .def_prop_ro("location", &TensorSet::location)
      .def_prop_ro("zero_stage", &TensorSet::zero_stage)
      .def_prop_ro("dp", &TensorSet::dp);

  m.def("is_universal", [](const std::string& path, const std::string& tag) -> bool {
    return !ucp::exec::find_universal_folder(path, tag).empty();
  }, nb::arg("path"), nb::arg("tag") = "");

  m.def("convert_to_model_folder", &convert_to_model_folder, nb::arg("checkpoint"), nb::arg("out"), nb::arg("tag"),
        nb::arg("format"), nb::arg("max_shard_size"), nb::arg("exclude_frozen"), nb::arg("dtype") = "float32",
        nb::arg("max_memory") = "1GiB");
}
