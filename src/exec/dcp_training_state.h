// Private to exec: what `to-dcp` writes for a training framework to load, beyond the tensors of the
// source: the keys as the framework's checkpointer nests them (--layout), and with
// --with-optimizer torch Adam's state per parameter (exp_avg, exp_avg_sq, step) and param_groups
// taken from a DeepSpeed checkpoint, named as torch's get_state_dict names them, so that a DeepSpeed
// run continues under FSDP2 (Lingua, torchtitan) with its optimizer.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "optimizer_steps.h"
#include "ucp/base/status.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/dcp_plan.h"
#include "ucp/plan/source_layout.h"

namespace ucp::exec {

/// How the checkpointer of the run that loads the DCP nests its state dict.
enum class DcpLayout {
  kPlain,       ///< The source's keys as they are (a model state dict).
  kLingua,      ///< {"model": model, "optim": get_optimizer_state_dict}: "model.<fqn>", "optim.state.<fqn>.exp_avg", "optim.param_groups".
  kTorchtitan,  ///< Model keys at the top level, {"optimizer": flattened optimizer state}: "optimizer.state.<fqn>.exp_avg", "optimizer.param_groups.<fqn>.lr".
};

/// "plain", "lingua", "torchtitan" -> the layout; InvalidArgument otherwise.
base::Result<DcpLayout> dcp_layout_from_name(const std::string& name);

struct DcpTrainingState {
  plan::SourceLayout layout;  ///< Model tensors under their keys, then the optimizer's moments.
  plan::DcpExtras extras;     ///< Nesting, steps and param_groups.
};

/// How the optimizer's per-parameter tensors (named by the source's parameter names) are named in
/// the output, as the model's are (--key-map): the mapped layout, and per output tensor the index
/// of its source tensor (plan::kNoSource for a tie, which gets no state of its own).
using MomentView = std::function<base::Result<plan::SourceLayout>(const plan::SourceLayout&, std::vector<std::size_t>*)>;

/// The model tensors `model` (the consolidated fp32 model, as the user asked to see it) named for
/// `layout`; with `ckpt` (and its `steps`, exec/optimizer_steps.h) also the optimizer state, its
/// parameters named through `view`. Not collective. InvalidArgument when the optimizer is asked of
/// the plain layout; FailedPrecondition when the optimizer keeps no Adam moments (naming the file)
/// or a flat group has no step.
base::Result<DcpTrainingState> dcp_training_state(const plan::SourceLayout& model, DcpLayout layout,
                                                  const format::ZeroCheckpoint* ckpt, const std::vector<OptimizerStep>& steps,
                                                  const MomentView& view);

}  // namespace ucp::exec
