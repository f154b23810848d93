#include "optimizer_steps.h"

#include <cstring>

#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"

namespace ucp::exec {
using base::Result;
using base::Status;
using format::ValuePtr;

namespace {

// One record per group on the wire: kind byte (0 none, 1 int, 2 float) + 8 value bytes.
constexpr std::size_t kRecord = 9;

Result<std::vector<OptimizerStep>> read_steps_locally(const format::ZeroCheckpoint& ck) {
  const std::size_t groups = ck.models.empty() ? 0 : ck.models[0].param_shapes.size();
  std::vector<OptimizerStep> steps(groups);
  if (ck.files.optim_files.empty()) return steps;
  const std::string& path = ck.files.optim_files[0];
  UCP_ASSIGN_OR_RETURN(format::TorchFile file, format::TorchFile::open(path));
  const ValuePtr& top = file.root();
  ValuePtr osd = top && top->is_dict() ? top->get("optimizer_state_dict") : nullptr;
  if (!osd || !osd->is_dict()) return base::data_loss("'" + path + "': 'optimizer_state_dict' is missing or not a dict");
  const bool zero3 = ck.kind == format::DeepSpeedOptimizerKind::kZero3;
  ValuePtr inner = osd->get(zero3 ? "optimizer_state_dict" : "base_optimizer_state");
  ValuePtr state = inner && inner->is_dict() ? inner->get("state") : nullptr;
  if (!state || !state->is_dict()) return steps;  // an optimizer without state keeps no step
  for (const auto& [k, v] : state->entries) {
    if (!k || !k->is_int() || k->i < 0 || static_cast<std::uint64_t>(k->i) >= groups || !v || !v->is_dict()) continue;
    ValuePtr step = v->get("step");
    if (!step) continue;
    OptimizerStep& out = steps[static_cast<std::size_t>(k->i)];
    if (step->is_int()) {
      out = step->i;
    } else if (step->kind == format::Value::Kind::kFloat) {
      out = step->f;
    } else if (step->is_tensor() && step->tensor.numel() == 1) {
      const std::vector<std::byte> bytes = format::tensor_bytes(step->tensor);
      const base::DType dt = step->tensor.dtype();
      if (dt == base::DType::kF32 && bytes.size() == 4) {
        float f;
        std::memcpy(&f, bytes.data(), 4);
        out = static_cast<double>(f);
      } else if (dt == base::DType::kF64 && bytes.size() == 8) {
        double d;
        std::memcpy(&d, bytes.data(), 8);
        out = d;
      } else if (dt == base::DType::kI64 && bytes.size() == 8) {
        std::int64_t i;
        std::memcpy(&i, bytes.data(), 8);
        out = i;
      }
    }
  }
  return steps;
}

}  // namespace

Result<std::vector<OptimizerStep>> read_optimizer_steps(comm::Communicator& comm, const format::ZeroCheckpoint& ck) {
  Result<std::vector<OptimizerStep>> local = std::vector<OptimizerStep>{};
  std::vector<std::byte> wire;
  if (comm.rank() == 0) {
    local = read_steps_locally(ck);
    if (local.ok()) {
      wire.resize(local->size() * kRecord);
      for (std::size_t g = 0; g < local->size(); ++g) {
        std::byte* r = wire.data() + g * kRecord;
        const OptimizerStep& s = (*local)[g];
        r[0] = static_cast<std::byte>(s.index());
        if (const auto* i = std::get_if<std::int64_t>(&s)) std::memcpy(r + 1, i, 8);
        if (const auto* d = std::get_if<double>(&s)) std::memcpy(r + 1, d, 8);
      }
    }
  }
  UCP_RETURN_IF_ERROR(comm::agree(comm, "metadata", local.status()).status);
  UCP_RETURN_IF_ERROR(comm.broadcast(wire, 0));
  std::vector<OptimizerStep> steps(wire.size() / kRecord);
  for (std::size_t g = 0; g < steps.size(); ++g) {
    const std::byte* r = wire.data() + g * kRecord;
    if (r[0] == std::byte{1}) {
      std::int64_t i;
      std::memcpy(&i, r + 1, 8);
      steps[g] = i;
    } else if (r[0] == std::byte{2}) {
      double d;
      std::memcpy(&d, r + 1, 8);
      steps[g] = d;
    }
  }
  return steps;
}

}  // namespace ucp::exec
