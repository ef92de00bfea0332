// storage/src/lease.cpp — leases (engine.hpp, "Leases"; docs/PERSISTENCE.md for their
// records): the lease table, the check a commit makes when it attaches or detaches keys,
// grant / keep-alive / time-to-live, and revoke and expiry, which delete the attached keys
// in one commit through the normal commit path (commit.cpp), then end the lease.
//
// INVARIANTS (all under lease_mu_)
// --------------------------------
// K1. For a lease in the table that is not `revoking`, `keys` holds every key whose newest
//     installed version names it. A commit changes the set only under the commit locks of
//     the keys concerned (lease_commit, called after validation and before publishing), so
//     the set's changes to one key are in that key's commit order. A commit that names a
//     lease inserts the key; one that replaces a version naming a lease by a version that
//     does not (a put with another or no lease, a delete) erases it, unless that lease is
//     `revoking` (then the key stays: the revoke reads it and skips it if it was detached).
//     A commit that fails after its insertions (out of memory, a failed log) leaves extra
//     keys: the set is a superset, and every reader checks the key's version.
// K2. Every commit that inserts or erases a key of lease L holds L (inflight > 0) from that
//     change until the commit is visible (W >= its timestamp) or abandoned. A commit that
//     names L holds it only if L is alive (not pending, not revoking, not expired): else it
//     fails with LEASE_NOT_FOUND before publishing anything.
// K3. A revoke (or an expiry) sets `revoking` (no commit can name L from then on: K2), waits
//     until inflight == 0, then reads `keys` and deletes, in one serializable one-shot
//     transaction, each key whose version at its snapshot names L. Its snapshot is taken
//     after every commit that changed L's set is visible (K2), and its reads are validated
//     at its commit (a key changed meanwhile makes it retry), so the deletion removes
//     exactly the keys attached to L at its revision, and no key is attached to L after it.
// K4. A grant and the end of a lease each take a commit timestamp and (durable engine) log
//     a record at it before the timestamp is finished; the table changes (grant: alive; end:
//     erased) before the timestamp is finished. So a checkpoint at revision R that lists the
//     table after registering its snapshot lists every lease granted at or below R and not
//     ended at or below R; records above R are replayed over it (idempotently).
// Lock order: key commit locks, then lease_mu_. lease_mu_ is never held while waiting for
// the log, running a transaction, or taking a key lock; revoke waits on lease_cv_ with
// lease_mu_ released by the wait.
#include <algorithm>

#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

Status lease_not_found(std::uint64_t id) {
  return Status(
      StatusCode::kLeaseNotFound,
      "lease " + std::to_string(id) + " is not alive (never granted, revoked or expired)");
}

// A commit timestamp taken for a lease record: logged (durable engine) and finished exactly
// once; abandoned (a skip) if the operation gives up before logging.
class LeaseTimestamp {
 public:
  LeaseTimestamp(CommitClock& clock, Wal* wal) noexcept
      : clock_(clock), wal_(wal), ts_(clock.acquire()) {}
  ~LeaseTimestamp() { finish(); }
  LeaseTimestamp(const LeaseTimestamp&) = delete;
  LeaseTimestamp& operator=(const LeaseTimestamp&) = delete;

  Revision value() const noexcept { return ts_; }
  // Logs `record` (a framed lease record at this timestamp) and waits until it is durable.
  Status log(std::string&& record) {
    if (wal_ == nullptr) return Status::Ok();
    logged_ = true;
    wal_->submit(ts_, std::move(record));
    Status s = wal_->wait(ts_);
    if (!s.ok()) finished_ = true;  // never finished: W stays below it (wal.hpp L3)
    return s;
  }
  void finish() noexcept {
    if (finished_) return;
    finished_ = true;
    if (wal_ != nullptr && !logged_) wal_->skip(ts_);
    clock_.finish(ts_);
  }
  void finish_visible() noexcept {
    finish();
    clock_.wait_visible(ts_);
  }

 private:
  CommitClock& clock_;
  Wal* const wal_;
  const Revision ts_;
  bool finished_ = false;
  bool logged_ = false;
};

std::int64_t seconds_up(std::chrono::steady_clock::duration d) {
  if (d <= std::chrono::steady_clock::duration::zero()) return 0;
  const auto s = std::chrono::ceil<std::chrono::seconds>(d);
  return static_cast<std::int64_t>(s.count());
}

}  // namespace

Status EngineImpl::lease_check_alive(std::uint64_t id) {
  const auto now = clock_src_->now();
  std::lock_guard lk(lease_mu_);
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.pending || it->second.revoking ||
      now >= it->second.expiry) {
    return lease_not_found(id);
  }
  return Status::Ok();
}

std::size_t EngineImpl::lease_count() const {
  std::lock_guard lk(lease_mu_);
  std::size_t n = 0;
  for (const auto& [id, l] : leases_) n += l.pending ? 0 : 1;
  return n;
}

Status EngineImpl::lease_commit(const std::vector<LeaseChange>& changes, LeaseHold* hold) {
  hold->ids_.reserve(changes.size() * 2);  // before the lock: nothing below allocates but set
  const auto now = clock_src_->now();
  std::lock_guard lk(lease_mu_);
  // K2: every lease named must be alive; nothing is changed before all are checked.
  for (const LeaseChange& c : changes) {
    if (c.new_lease == 0) continue;
    auto it = leases_.find(c.new_lease);
    if (it == leases_.end() || it->second.pending || it->second.revoking ||
        now >= it->second.expiry) {
      return lease_not_found(c.new_lease);
    }
  }
  // K1: insertions (they may throw bad_alloc: the set is then a superset, K1), then erasures.
  for (const LeaseChange& c : changes) {
    if (c.new_lease == 0) continue;
    LeaseState& l = leases_.find(c.new_lease)->second;
    l.keys.insert(*c.key);
    ++l.inflight;
    hold->ids_.push_back(c.new_lease);
  }
  for (const LeaseChange& c : changes) {
    if (c.old_lease == 0 || c.old_lease == c.new_lease) continue;
    auto it = leases_.find(c.old_lease);
    if (it == leases_.end() || it->second.revoking) continue;  // K1: the revoke skips it
    auto k = it->second.keys.find(*c.key);
    if (k != it->second.keys.end()) it->second.keys.erase(k);
    ++it->second.inflight;
    hold->ids_.push_back(c.old_lease);
  }
  return Status::Ok();
}

void EngineImpl::lease_release(std::vector<std::uint64_t>& ids) noexcept {
  if (ids.empty()) return;
  bool wake = false;
  {
    std::lock_guard lk(lease_mu_);
    for (std::uint64_t id : ids) {
      auto it = leases_.find(id);
      if (it == leases_.end()) continue;  // cannot happen while held (K3 waits); defensive
      if (--it->second.inflight == 0 && it->second.revoking) wake = true;
    }
  }
  ids.clear();
  if (wake) lease_cv_.notify_all();
}

Result<LeaseGrantResult> EngineImpl::lease_grant(std::int64_t ttl, std::uint64_t id) {
  if (Status s = check_open(); !s.ok()) return s;
  if (ttl < 1 || ttl > kMaxLeaseTtlSeconds) {
    return invalid("lease TTL must be 1 to " + std::to_string(kMaxLeaseTtlSeconds) +
                   " seconds, got " + std::to_string(ttl));
  }
  if (wal_ && wal_->failed()) return wal_->failure();
  LeaseTimestamp ts(clock_, wal_.get());
  {
    std::lock_guard lk(lease_mu_);
    if (opts_.max_leases != 0 && leases_.size() >= opts_.max_leases) {
      return Status(StatusCode::kResourceExhausted,
                    "lease limit reached: " + std::to_string(leases_.size()) + " leases of " +
                        std::to_string(opts_.max_leases) + "; revoke some or raise the limit");
    }
    if (id != 0) {
      if (leases_.count(id) != 0) return invalid("lease " + std::to_string(id) + " exists");
    } else {
      id = std::max(next_lease_id_, ts.value());
      while (leases_.count(id) != 0 || id == 0) ++id;
      next_lease_id_ = id + 1;
    }
    LeaseState& l = leases_[id];
    l.ttl = ttl;
    l.pending = true;  // not alive until its record is durable
  }
  if (Status s = ts.log(encode_lease_record(kRecLeaseGrant, ts.value(), id, ttl)); !s.ok()) {
    std::lock_guard lk(lease_mu_);
    leases_.erase(id);
    return s;
  }
  {
    const auto now = clock_src_->now();
    std::lock_guard lk(lease_mu_);
    LeaseState& l = leases_.find(id)->second;
    l.pending = false;  // K4: alive before the timestamp is finished
    l.expiry = now + std::chrono::seconds(ttl);
  }
  ts.finish_visible();
  return LeaseGrantResult{id, ttl, ts.value()};
}

Result<std::int64_t> EngineImpl::lease_keepalive(std::uint64_t id) {
  if (Status s = check_open(); !s.ok()) return s;
  const auto now = clock_src_->now();
  std::lock_guard lk(lease_mu_);
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.pending || it->second.revoking ||
      now >= it->second.expiry) {
    return lease_not_found(id);
  }
  it->second.expiry = now + std::chrono::seconds(it->second.ttl);
  return it->second.ttl;
}

Result<LeaseInfo> EngineImpl::lease_time_to_live(std::uint64_t id, bool keys) {
  if (Status s = check_open(); !s.ok()) return s;
  LeaseInfo info;
  info.id = id;
  std::vector<std::string> candidates;
  {
    const auto now = clock_src_->now();
    std::lock_guard lk(lease_mu_);
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.pending || it->second.revoking ||
        now >= it->second.expiry) {
      return lease_not_found(id);
    }
    info.ttl_seconds = seconds_up(it->second.expiry - now);
    info.granted_ttl_seconds = it->second.ttl;
    if (keys) candidates.assign(it->second.keys.begin(), it->second.keys.end());
  }
  if (!keys || candidates.empty()) return info;
  // The set may hold keys of failed commits (K1): report those whose version names the lease.
  TxnState t;
  t.track_reads = false;
  if (Status s = open_snapshot(t); !s.ok()) return s;
  SnapshotCloser closer(this, t);
  for (const std::string& k : candidates) {
    Result<KeyValue> kv = txn_get(t, k);
    if (kv.ok() && kv->lease == id) info.keys.push_back(k);
  }
  return info;
}

Result<LeaseRevokeResult> EngineImpl::lease_revoke(std::uint64_t id, bool expiry) {
  if (Status s = check_open(); !s.ok()) return s;
  std::vector<std::string> keys;
  {
    std::unique_lock lk(lease_mu_);
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second.pending || it->second.revoking) {
      return lease_not_found(id);
    }
    LeaseState& l = it->second;  // stable: only this revoke erases it now (K3)
    l.revoking = true;
    lease_cv_.wait(lk, [&] { return l.inflight == 0; });  // K3
    keys.assign(l.keys.begin(), l.keys.end());
  }
  auto give_up = [&] {
    std::lock_guard lk(lease_mu_);
    leases_.find(id)->second.revoking = false;  // alive again (an expiry is retried)
  };
  // K3: one commit deletes every key still attached, through the normal commit path.
  Result<DeleteResult> del = one_shot<DeleteResult>(
      [&](TxnState& t) -> Result<DeleteResult> {
        DeleteResult dr;
        for (const std::string& k : keys) {
          Result<KeyValue> kv = txn_get(t, k);
          if (!kv.ok()) {
            if (kv.code() == StatusCode::kNotFound) continue;
            return kv.status();
          }
          if (kv->lease != id) continue;  // detached meanwhile
          if (Status s = txn_del(t, k); !s.ok()) return s;
          ++dr.deleted;
        }
        return dr;
      },
      [](DeleteResult& dr, Revision rev) { dr.revision = rev; });
  if (!del.ok()) {
    give_up();
    return del.status();
  }
  if (wal_ && wal_->failed()) {
    give_up();
    return wal_->failure();
  }
  LeaseTimestamp ts(clock_, wal_.get());
  if (Status s = ts.log(encode_lease_record(kRecLeaseEnd, ts.value(), id, 0)); !s.ok()) {
    give_up();  // the keys are deleted; the engine refuses writes from now on
    return s;
  }
  {
    std::lock_guard lk(lease_mu_);
    leases_.erase(id);  // K4: before the timestamp is finished
  }
  (expiry ? leases_expired_ : leases_revoked_).fetch_add(1, std::memory_order_relaxed);
  ts.finish_visible();
  return LeaseRevokeResult{del->deleted, del->revision};
}

std::size_t EngineImpl::expire_leases() {
  if (!check_open().ok()) return 0;
  std::vector<std::uint64_t> due;
  {
    const auto now = clock_src_->now();
    std::lock_guard lk(lease_mu_);
    for (const auto& [id, l] : leases_) {
      if (!l.pending && !l.revoking && now >= l.expiry) due.push_back(id);
    }
  }
  std::size_t n = 0;
  for (std::uint64_t id : due) n += lease_revoke(id, true).ok() ? 1 : 0;
  return n;
}

std::vector<std::pair<std::uint64_t, std::int64_t>> EngineImpl::lease_list() const {
  std::vector<std::pair<std::uint64_t, std::int64_t>> out;
  std::lock_guard lk(lease_mu_);
  out.reserve(leases_.size());
  for (const auto& [id, l] : leases_) {
    if (!l.pending) out.emplace_back(id, l.ttl);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ------------------------------------------------------------------ recovery (one thread)
void EngineImpl::recover_lease_grant(std::uint64_t id, std::int64_t ttl) {
  LeaseState& l = leases_[id];
  l.ttl = ttl;
  next_lease_id_ = std::max(next_lease_id_, id + 1);
}

void EngineImpl::recover_lease_end(std::uint64_t id) {
  leases_.erase(id);
  next_lease_id_ = std::max(next_lease_id_, id + 1);
}

// After replay: the key sets (K1) from the recovered versions, and every lease's full TTL
// from now (a restart never makes a lease expire early). A key naming a lease that is not
// in the table (only possible with a log cut by WalRecovery::kTruncate) gets that lease back,
// already expired, so the sweeper deletes it at once rather than keeping it for ever.
void EngineImpl::recover_lease_keys() {
  const auto now = clock_src_->now();
  for (auto& [id, l] : leases_) l.expiry = now + std::chrono::seconds(l.ttl);
  kovan::Guard g = kovan::pin();
  for (KeyNode* n = index_.first(g); n != nullptr; n = index_.next(n, g)) {
    const Version* v = n->head.load(g);
    if (v == nullptr || v->tombstone || v->lease == 0) continue;
    auto it = leases_.find(v->lease);
    if (it == leases_.end()) {
      it = leases_.emplace(v->lease, LeaseState{}).first;
      it->second.ttl = 1;
      it->second.expiry = now;
      next_lease_id_ = std::max(next_lease_id_, v->lease + 1);
      notes_.push_back("key '" + std::string(n->key) + "' (and maybe others) names lease " +
                       std::to_string(v->lease) +
                       ", which the log does not hold: the lease is treated as expired");
    }
    it->second.keys.insert(std::string(n->key));
  }
}

}  // namespace kv::storage::detail
