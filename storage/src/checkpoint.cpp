// storage/src/checkpoint.cpp — checkpoints and snapshots (docs/PERSISTENCE.md).
#include "engine_impl.hpp"

namespace kv::storage::detail {

std::unique_ptr<EngineImpl> EngineImpl::open(Options opts, std::string& error) {
  if (opts.durability.data_dir.empty() && opts.durability.restore_from.empty()) {
    return std::make_unique<EngineImpl>(std::move(opts));
  }
  error = "durability is not implemented yet";
  return nullptr;
}

Result<Revision> EngineImpl::checkpoint() {
  return Status(StatusCode::kInvalidArgument, "not implemented yet");
}

Result<Revision> EngineImpl::write_snapshot(const std::function<bool(std::string_view)>&) {
  return Status(StatusCode::kUnavailable, "not implemented yet");
}

DurabilityStats EngineImpl::durability_stats() const { return {}; }
std::vector<std::string> EngineImpl::recovery_notes() const { return {}; }

}  // namespace kv::storage::detail
