#include "zero_source.h"

#include <cstring>
#include <nlohmann/json.hpp>

namespace ucp::exec {
using base::Result;
using base::Status;

namespace {

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

Result<format::ZeroCheckpoint> read_zero_checkpoint(comm::Communicator& comm, const std::string& path,
                                                    const std::string& tag, PhaseTimer& timer) {
  // 1. discover: every rank lists the folder (names only); they must agree.
  auto files = format::discover_deepspeed_checkpoint(path, tag);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "discover", files.status()).status);
  timer.mark("discover");

  // 2. metadata: file i is parsed by rank i % N; results travel as JSON.
  const std::vector<std::string> paths = format::zero_checkpoint_paths(*files);
  const std::size_t n_models = files->model_state_files.size();
  nlohmann::json mine = nlohmann::json::array();
  Status local;
  for (std::size_t i = static_cast<std::size_t>(comm.rank()); i < paths.size() && local.ok();
       i += static_cast<std::size_t>(comm.size())) {
    const auto index = static_cast<std::uint32_t>(i);
    if (i < n_models) {
      auto m = format::extract_model_meta(paths[i], index);
      if (m.ok()) mine.push_back({i, format::to_json(*m)}); else local = m.status();
    } else {
      auto o = format::extract_optim_meta(paths[i], index);
      if (o.ok()) mine.push_back({i, format::to_json(*o)}); else local = o.status();
    }
  }
  UCP_RETURN_IF_ERROR(comm::agree(comm, "metadata", local).status);
  const std::string payload = mine.dump();
  UCP_ASSIGN_OR_RETURN(auto gathered, comm.all_gather(as_bytes(payload)));

  std::vector<format::ModelFileMeta> models(n_models);
  std::vector<format::OptimFileMeta> optims(paths.size() - n_models);
  std::vector<bool> seen(paths.size(), false);
  for (const auto& blob : gathered) {
    nlohmann::json items = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(blob.data()), blob.size()), nullptr, false);
    if (items.is_discarded()) return base::internal_error("malformed metadata from a peer rank");
    for (const auto& item : items) {
      const auto i = item.at(0).get<std::size_t>();
      const std::string text = item.at(1).get<std::string>();
      if (i >= paths.size() || seen[i]) return base::internal_error("metadata for file " + std::to_string(i) + " received twice");
      seen[i] = true;
      if (i < n_models) {
        UCP_ASSIGN_OR_RETURN(models[i], format::model_meta_from_json(text));
      } else {
        UCP_ASSIGN_OR_RETURN(optims[i - n_models], format::optim_meta_from_json(text));
      }
    }
  }
  auto ckpt = format::assemble_zero_checkpoint(std::move(*files), std::move(models), std::move(optims));
  UCP_RETURN_IF_ERROR(comm::agree(comm, "metadata", ckpt.status()).status);
  timer.mark("metadata");
  return ckpt;
}

std::string describe_checkpoint(const format::ZeroCheckpoint& ckpt) {
  return "DeepSpeed " + std::string(format::optimizer_kind_name(ckpt.kind)) + " checkpoint " + ckpt.files.tag_dir +
         " (ZeRO stage " + std::to_string(ckpt.zero_stage) + ", dp " + std::to_string(ckpt.dp) + ")";
}

}  // namespace ucp::exec
