// storage/src/stats.cpp — counters and diagnostics. The counters are relaxed atomics, each
// a standalone statistic: a stats() snapshot is not atomic across fields.
#include "engine_impl.hpp"

namespace kv::storage::detail {

EngineStats EngineImpl::stats() const {
  EngineStats s;
  s.keys = live_keys_.load(std::memory_order_relaxed);
  s.index_nodes = index_.size();
  s.live_versions = live_versions_.load(std::memory_order_relaxed);
  s.bytes = index_.bytes() + version_bytes_.load(std::memory_order_relaxed);
  s.active_snapshots = registry_.active();
  s.snapshot_slots_scanned = registry_.scan_range();
  {
    std::lock_guard lk(txns_mu_);
    s.active_txns = txns_.size();
    std::optional<std::chrono::steady_clock::time_point> oldest;
    for (const auto& [id, t] : txns_) {
      if (!oldest || t->started < *oldest) oldest = t->started;
    }
    if (oldest) s.oldest_snapshot_age = clock_src_->now() - *oldest;
  }
  s.revision = clock_.visible();
  s.versions_pruned = versions_pruned_.load(std::memory_order_relaxed);
  s.commits = commits_.load(std::memory_order_relaxed);
  s.aborts_conflict = aborts_conflict_.load(std::memory_order_relaxed);
  s.aborts_expired = aborts_expired_.load(std::memory_order_relaxed);
  s.aborts_user = aborts_user_.load(std::memory_order_relaxed);
  s.aborts_out_of_memory = aborts_oom_.load(std::memory_order_relaxed);
  s.gc_sweeps = gc_sweeps_.load(std::memory_order_relaxed);
  s.index_nodes_removed = nodes_removed_.load(std::memory_order_relaxed);
  const kovan::Stats ks = kovan::stats();
  s.kovan_retired = ks.retired;
  s.kovan_reclaimed = ks.reclaimed;
  s.txn_write_bytes = txn_write_bytes_.load(std::memory_order_relaxed);
  s.memory_bytes = memory_bytes();
  s.leases = lease_count();
  s.leases_expired = leases_expired_.load(std::memory_order_relaxed);
  s.leases_revoked = leases_revoked_.load(std::memory_order_relaxed);
  s.commit_lock_waits = lock_waits_.load(std::memory_order_relaxed);
  s.one_shot_hold_offs = hold_offs_.load(std::memory_order_relaxed);
  s.one_shot_retries = one_shot_retries_.load(std::memory_order_relaxed);
  return s;
}

std::size_t EngineImpl::version_count(std::string_view key) const {
  kovan::Guard g = kovan::pin();
  const KeyNode* n = index_.find(key, g);
  if (n == nullptr) return 0;
  std::size_t c = 0;
  for (const Version* v = n->head.load(g); v != nullptr; v = v->next.load(g)) ++c;
  return c;
}

}  // namespace kv::storage::detail
