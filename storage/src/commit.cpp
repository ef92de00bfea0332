// storage/src/commit.cpp — the commit protocol (docs/STORAGE.md, section 3): lock every
// written key (E1, E6; one-shot writes wait for a busy lock, "Contention"), take a commit
// timestamp, validate (E5), build the new versions,
// publish them, unlock, finish the timestamp, wait until it is visible (E3), then prune the
// chains it lengthened (E4).
//
// E7. Exception safety: the locks and the timestamp are held by RAII objects, and every
//     allocation of a commit happens before its first version is published; a bad_alloc
//     leaves no lock held, finishes the timestamp as abandoned and applies nothing (the
//     commit returns RESOURCE_EXHAUSTED). Code that runs under a pruner's lock allocates
//     nothing (noexcept).
//
// Memory orders: the lock word KeyNode::owner is taken with an acq_rel CAS and given back
// with a release store (pairs listed at try_lock/unlock); a version is published by the
// release store of `head` (pairs with the guarded acquire loads of readers). The clock's
// orders are in snapshots.hpp.
#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

enum class LockResult : std::uint8_t { kLocked, kBusy, kDead };

// Try-locks n for `owner`; waits only for a pruner (bounded, E4), never for a committer.
// kDead: n was removed from the index (E6); look the key up again.
LockResult try_lock(KeyNode* n, std::uint64_t owner) noexcept {
  for (;;) {
    std::uint64_t expected = 0;
    // acq_rel: acquire pairs with the previous owner's release unlock (we see its
    // installed versions); the lock is ordered before our clock RMW (validate()).
    if (n->owner.compare_exchange_strong(expected, owner, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      return LockResult::kLocked;
    }
    if (expected == kDeadOwner) return LockResult::kDead;
    if (expected != kGcOwner) return LockResult::kBusy;
    std::this_thread::yield();
  }
}

// Takes n's lock for `owner`, waiting for a committer that holds it for up to `limit`
// (kForever: however long it takes; zero: no wait, as try_lock), then kBusy. Deadlock-free
// because every committer takes its locks in key order and a holder never waits for a key
// below one it holds (docs/STORAGE.md, "Contention"). Allocates nothing (E7); the caller
// takes no timestamp before all its locks are held (E9 unchanged). `waits` counts the calls
// that had to wait (when the wait begins).
constexpr std::chrono::nanoseconds kForever = std::chrono::nanoseconds::max();
constexpr std::chrono::nanoseconds kInteractiveLockWait = std::chrono::milliseconds(10);

LockResult lock_waiting(KeyNode* n, std::uint64_t owner, std::chrono::nanoseconds limit,
                        ShardedCounter& waits) noexcept {
  std::chrono::steady_clock::time_point deadline{};
  for (unsigned round = 0;; ++round) {
    const LockResult lr = try_lock(n, owner);
    if (lr != LockResult::kBusy || limit.count() == 0) return lr;
    if (round == 0) {
      waits.fetch_add(1, std::memory_order_relaxed);  // a statistic: orders nothing
      if (limit != kForever) deadline = std::chrono::steady_clock::now() + limit;
    } else if (limit != kForever && std::chrono::steady_clock::now() >= deadline) {
      return LockResult::kBusy;
    }
    // The holder installs in microseconds: spin a little, then yield; if it still holds
    // the lock it was probably preempted, so sleep (growing to 1 ms) to give it the CPU.
    if (round < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else if (round < 512) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(1U << std::min(round - 512, 10U)));
    }
  }
}

void unlock(KeyNode* n) noexcept {
  // release: publishes the versions installed under the lock (pairs with try_lock and
  // with the acquire owner loads of validate()).
  n->owner.store(0, std::memory_order_release);
}

// E5 / docs "Serializable validation": nothing committed (or committing) on n since
// start_ts, other than by this transaction.
bool unchanged(const KeyNode* n, const TxnState& t, const kovan::Guard& g) noexcept {
  // acquire: pairs with unlock()'s release, so an unlocked key shows its new version.
  const std::uint64_t o = n->owner.load(std::memory_order_acquire);
  if (o != 0 && o != t.id && o != kGcOwner && o != kDeadOwner) return false;
  const Version* v = n->head.load(g);
  return v == nullptr || v->commit_ts <= t.start_ts;
}

// The commit locks one commit holds. Every lock is given back by unlock_all() or, if the
// commit unwinds (bad_alloc), by the destructor. The node list outlives unlock_all() for the
// pruning that follows (the commit's guard keeps the nodes alive, I1).
class CommitLocks {
 public:
  explicit CommitLocks(std::size_t n) { nodes_.reserve(n); }  // may throw: nothing held yet
  ~CommitLocks() { unlock_all(); }
  CommitLocks(const CommitLocks&) = delete;
  CommitLocks& operator=(const CommitLocks&) = delete;

  void add(KeyNode* n) noexcept { nodes_.push_back(n); }  // within the reserved capacity
  void unlock_all() noexcept {
    if (held_) {
      for (KeyNode* m : nodes_) unlock(m);
      held_ = false;
    }
  }
  const std::vector<KeyNode*>& nodes() const noexcept { return nodes_; }

 private:
  std::vector<KeyNode*> nodes_;
  bool held_ = true;
};

// A commit timestamp taken from the clock. It must be finished exactly once, installed or
// abandoned, or W stalls behind it for good and every later commit waits forever (C1, E3);
// the destructor finishes it (as abandoned) if the commit unwinds before finish(). With a
// WAL, an abandoned timestamp is also given to the log as a skip (L1), and a commit whose
// record the log could not make durable is never finished: W stays below it, so it never
// becomes visible (the engine refuses writes from then on, wal.hpp L3).
class PendingTimestamp {
 public:
  PendingTimestamp(CommitClock& clock, Wal* wal) noexcept
      : clock_(clock), wal_(wal), ts_(clock.acquire()) {}
  ~PendingTimestamp() { finish(); }
  PendingTimestamp(const PendingTimestamp&) = delete;
  PendingTimestamp& operator=(const PendingTimestamp&) = delete;

  Revision value() const noexcept { return ts_; }
  // The record for this timestamp goes to the WAL (no skip from here on).
  void logged() noexcept { logged_ = true; }
  // The WAL failed this commit: it stays unfinished (never visible).
  void leave_unfinished() noexcept { finished_ = true; }
  void finish() noexcept {
    if (!finished_) {
      finished_ = true;
      if (wal_ != nullptr && !logged_) wal_->skip(ts_);  // before finish: L2
      clock_.finish(ts_);
    }
  }

 private:
  CommitClock& clock_;
  Wal* const wal_;
  const Revision ts_;
  bool finished_ = false;
  bool logged_ = false;
};

// One put or delete of a WAL commit record (docs/PERSISTENCE.md, "WAL record").
void append_op(std::string& payload, std::string_view key, const Version* v) {
  if (v->tombstone) {
    put_u8(payload, kOpDelete);
    put_bytes(payload, key);
  } else {
    put_u8(payload, v->lease != 0 ? kOpPutLease : kOpPut);
    put_bytes(payload, key);
    put_bytes(payload, v->value());
    put_u64(payload, v->create_rev);
    put_u64(payload, static_cast<std::uint64_t>(v->version));
    if (v->lease != 0) put_u64(payload, v->lease);
  }
}

std::size_t op_size(std::string_view key, const Version* v) {
  return 32 + key.size() + (v->tombstone ? 0 : v->value_size);
}

std::string frame(const std::string& payload) {
  std::string record;
  record.reserve(payload.size() + kFrameHeader);
  append_frame(record, payload);
  return record;
}

// The WAL record of one commit (docs/PERSISTENCE.md, "WAL record"): the versions it
// installs, in key order. Built before anything is published (E7: may throw bad_alloc).
std::string encode_commit(
    Revision ts, const std::map<std::string, std::optional<std::string>, std::less<>>& writes,
    const std::vector<std::unique_ptr<Version>>& fresh) {
  std::size_t size = 16;
  std::uint32_t ops = 0;
  {
    std::size_t i = 0;
    for (const auto& [key, value] : writes) {
      if (const Version* v = fresh[i++].get()) {
        size += op_size(key, v);
        ++ops;
      }
    }
  }
  std::string payload;
  payload.reserve(size);
  put_u8(payload, kRecCommit);
  put_u64(payload, ts);
  put_u32(payload, ops);
  std::size_t i = 0;
  for (const auto& [key, value] : writes) {
    if (const Version* v = fresh[i++].get()) append_op(payload, key, v);
  }
  return frame(payload);
}

// The record of a commit that installs one version (the same bytes encode_commit makes for
// a write set of that one key).
std::string encode_one(Revision ts, std::string_view key, const Version* v) {
  std::string payload;
  payload.reserve(16 + op_size(key, v));
  put_u8(payload, kRecCommit);
  put_u64(payload, ts);
  put_u32(payload, 1);
  append_op(payload, key, v);
  return frame(payload);
}

// The commit lock of one key (a blind one-shot put): given back by unlock() or, if the
// commit unwinds (bad_alloc), by the destructor.
class OneLock {
 public:
  explicit OneLock(KeyNode* n) noexcept : n_(n) {}
  ~OneLock() { unlock(); }
  OneLock(const OneLock&) = delete;
  OneLock& operator=(const OneLock&) = delete;
  void unlock() noexcept {
    if (n_ != nullptr) ::kv::storage::detail::unlock(n_);
    n_ = nullptr;
  }

 private:
  KeyNode* n_;
};

}  // namespace

bool EngineImpl::validate(const TxnState& t, const std::vector<KeyNode*>& locked,
                          const kovan::Guard& g) {
  if (t.iso == Isolation::kSnapshot) {
    // First committer wins: no other commit on a written key since the snapshot. An empty
    // chain may be a key emptied under an older snapshot (E8): its tombstone was newer than
    // start_ts if the newest such removal is. acquire: pairs with the pruner's release (the
    // removal also happens-before our insertion of the key's fresh node, through the
    // index's link locks).
    const Revision removed = removed_before_snapshot_.load(std::memory_order_acquire);
    for (const KeyNode* n : locked) {
      const Version* v = n->head.load(g);
      if (v != nullptr ? v->commit_ts > t.start_ts : removed > t.start_ts) return false;
    }
    return true;
  }
  // A key read that has no node now reads "absent" as it did at start_ts: a chain that
  // gained a version after start_ts is emptied (and its node removed) while t's snapshot is
  // registered only if it ends in a tombstone (E8), so t's read still holds at its commit
  // point (docs/STORAGE.md, "Validation across removal").
  for (const std::string& k : t.read_keys) {
    const KeyNode* n = index_.find(k, g);
    if (n != nullptr && !unchanged(n, t, g)) return false;
  }
  for (const RangeRead& r : t.ranges) {
    for (const KeyNode* n = index_.lower_bound(r.lo, g);
         n != nullptr && in_upper(n->key, r.hi, r.hi_inclusive); n = index_.next(n, g)) {
      if (!unchanged(n, t, g)) return false;
    }
  }
  return true;
}

std::unique_ptr<Version> EngineImpl::make_version(const KeyNode* n,
                                                  const std::optional<std::string>& value,
                                                  Revision ts, const kovan::Guard& g,
                                                  std::uint64_t lease) {
  // The head is stable: we hold the key's lock (I5).
  const Version* old = n->head.load(g);
  const bool old_live = old != nullptr && !old->tombstone;
  if (!value && !old_live) return nullptr;  // deleting an absent key writes nothing
  fault_point(AllocationFaults::Site::kVersion);
  if (!value) return std::unique_ptr<Version>(Version::make(ts, 0, 0, true, std::string_view()));
  if (old_live)
    return std::unique_ptr<Version>(
        Version::make(ts, old->create_rev, old->version + 1, false, *value, lease));
  return std::unique_ptr<Version>(Version::make(ts, ts, 1, false, *value, lease));
}

void EngineImpl::publish(KeyNode* n, Version* v, const kovan::Guard& g) noexcept {
  Version* old = n->head.load(g);
  const bool old_live = old != nullptr && !old->tombstone;
  v->next.store(old, std::memory_order_relaxed);  // published by the head store below
  // release: publishes the version's fields (pairs with guarded acquire loads of head).
  n->head.store(v, std::memory_order_release);
  live_versions_.fetch_add(1, std::memory_order_relaxed);
  version_bytes_.fetch_add(v->footprint(), std::memory_order_relaxed);
  const bool new_live = !v->tombstone;
  if (new_live && !old_live) live_keys_.fetch_add(1, std::memory_order_relaxed);
  if (!new_live && old_live) live_keys_.fetch_sub(1, std::memory_order_relaxed);
}

Result<Revision> EngineImpl::txn_commit(TxnState& t) {
  if (t.writes.empty()) {  // read-only: never validates, never aborts
    close_snapshot(t);
    t.phase = Phase::kCommitted;
    commits_.fetch_add(1, std::memory_order_relaxed);
    return t.start_ts;
  }
  if (wal_ && wal_->failed()) {  // refuse before taking locks or a timestamp
    Status s = wal_->failure();
    abort_locked(t, AbortCause::kStorage);
    return s;
  }
  try {
    return commit_writes(t);
  } catch (const std::bad_alloc&) {
    // commit_writes gave back every lock and its timestamp, and published nothing.
    abort_locked(t, AbortCause::kOutOfMemory);
    return Status(StatusCode::kResourceExhausted,
                  "out of memory while committing; nothing was applied");
  }
}

// Exception safety: every allocation (index nodes, versions, messages) happens while the
// locks and the timestamp are owned by the RAII holders above, and before the first version
// is published; a bad_alloc therefore unwinds to "nothing applied, nothing held".
Result<Revision> EngineImpl::commit_writes(TxnState& t) {
  // One guard for the whole commit: the locked nodes are used until the pruning at the end.
  kovan::Guard g = kovan::pin();
  CommitLocks locks(t.writes.size());
  for (const auto& [key, value] : t.writes) {
    KeyNode* n = nullptr;
    LockResult lr = LockResult::kDead;
    for (int tries = 0; lr == LockResult::kDead; ++tries) {
      // E6: a removed node is replaced by a fresh one. Until its remover marks it (a few
      // instructions after setting the dead owner), the lookup can still return it.
      if (tries > 0) std::this_thread::yield();
      bool inserted = false;
      fault_point(AllocationFaults::Site::kIndexInsert);
      n = index_.find_or_insert(key, g, &inserted);
      // One-shot writes wait for the holder for as long as it takes, interactive
      // transactions for a bounded time ("Contention" in docs/STORAGE.md).
      lr = lock_waiting(n, t.id, t.one_shot ? kForever : kInteractiveLockWait, lock_waits_);
    }
    if (lr == LockResult::kBusy) {
      // The message is built before abort_locked() clears the write set `key` lives in.
      Status conflict(StatusCode::kConflict,
                      "key '" + key + "' is being committed by another transaction");
      locks.unlock_all();
      for (const auto& w : t.writes) hot_.lost(w.first);  // "Contention": a loss
      abort_locked(t, AbortCause::kConflict);
      return conflict;
    }
    locks.add(n);
  }
  std::vector<std::unique_ptr<Version>> fresh;  // built, not yet published
  fresh.reserve(t.writes.size());
  // Leases: held from the check below until the commit is visible (destroyed after `ts`).
  LeaseHold lease_hold(this);
  std::vector<LeaseChange> lease_changes;
  PendingTimestamp ts(clock_, wal_.get());
  if (!validate(t, locks.nodes(), g)) {
    Status conflict(StatusCode::kConflict,
                    t.iso == Isolation::kSnapshot
                        ? "a written key was committed by another transaction after the snapshot"
                        : "data read by the transaction changed after its snapshot");
    locks.unlock_all();
    ts.finish();  // abandoned: installs nothing
    // "Contention": a loss for each written key.
    for (const auto& w : t.writes) hot_.lost(w.first);
    abort_locked(t, AbortCause::kConflict);
    return conflict;
  }
  {
    std::size_t i = 0;
    for (const auto& [key, value] : t.writes) {
      std::uint64_t lease = 0;
      if (!t.write_leases.empty() && value) {
        auto it = t.write_leases.find(key);
        if (it != t.write_leases.end()) lease = it->second;
      }
      const KeyNode* n = locks.nodes()[i++];
      fresh.push_back(make_version(n, value, ts.value(), g, lease));
      // The head is stable under the key's lock (I5).
      const Version* old = n->head.load(g);
      const std::uint64_t old_lease = old != nullptr && !old->tombstone ? old->lease : 0;
      const std::uint64_t new_lease = fresh.back() ? fresh.back()->lease : old_lease;
      if (old_lease != 0 || new_lease != 0) {
        lease_changes.push_back(LeaseChange{&key, old_lease, new_lease});
      }
    }
  }
  if (!lease_changes.empty()) {
    if (Status s = lease_commit(lease_changes, &lease_hold); !s.ok()) {
      locks.unlock_all();
      ts.finish();  // abandoned: installs nothing
      abort_locked(t, AbortCause::kLease);
      return s;
    }
  }
  std::string record;
  if (wal_) record = encode_commit(ts.value(), t.writes, fresh);
  // The watch feed (change_log.hpp CL1): the group goes in before the timestamp finishes.
  if (changes_) changes_->insert(change_group(ts.value(), t.writes, fresh, locks.nodes(), g));
  // Nothing below allocates (the pruning catches its own failures; the WAL turns its own
  // into a refusal).
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    if (fresh[i]) publish(locks.nodes()[i], fresh[i].release(), g);
  }
  locks.unlock_all();
  if (wal_) {
    // Durability before visibility: the versions are installed with a timestamp above W, so
    // no snapshot sees them (E2) until ts.finish() lets W pass them, and that happens only
    // once the log says the record is written (kAlways: and fsynced). Later committers on the
    // same keys may stack their versions on top meanwhile; their records come later in the
    // log (L1), so a crash never keeps a later commit without this one.
    ts.logged();
    wal_->submit(ts.value(), std::move(record));
    if (Status s = wal_->wait(ts.value()); !s.ok()) {
      ts.leave_unfinished();
      abort_locked(t, AbortCause::kStorage);
      return s;
    }
  }
  ts.finish();
  clock_.wait_visible(ts.value());  // E3
  changed(ts.value());              // the watch feed's listener: after visibility
  close_snapshot(t);
  t.phase = Phase::kCommitted;
  commits_.fetch_add(1, std::memory_order_relaxed);
  if (!t.one_shot || t.prioritized) {
    for (const auto& w : t.writes) hot_.won(w.first);  // "Contention": the window closes
  }
  prune_written(locks.nodes(), g);
  return ts.value();
}

// Interval GC on the chains a commit lengthened. The watermark policy, kept for comparison,
// prunes in the sweeper only (as horizon-based systems vacuum in the background): its chains
// are long, and walking them on every commit would be quadratic. Out of memory for the view
// of the snapshots: the commit stands, and the sweeper prunes later.
void EngineImpl::prune_written(const std::vector<KeyNode*>& nodes, const kovan::Guard& g) noexcept {
  if (opts_.gc_policy == GcPolicy::kWatermark) return;
  try {
    GcView view;
    bool have_view = false;
    for (KeyNode* n : nodes) {
      if (!needs_prune(n, g)) continue;
      if (!have_view) {
        view = gc_view();
        have_view = true;
      }
      prune_key(n, view, g);
    }
  } catch (const std::bad_alloc&) {
  }
}

// A blind put of one key (docs/STORAGE.md, "The blind one-shot put"): the commit protocol
// of commit_writes() for a write set of one key that read nothing, without building one.
// The same steps in the same order: lock the key (waiting for a busy lock, as every one-shot
// write: E1, E6), take the timestamp, (validation: nothing was read, so a serializable
// commit has nothing to check), build the version straight from the caller's value, the
// lease check, the WAL record and the watch group, publish, unlock, durability, finish, wait
// for visibility (E3), prune the chain. E7 holds: every allocation happens before the
// version is published, with the lock and the timestamp held by RAII objects.
Result<Revision> EngineImpl::commit_blind(std::uint64_t id, std::string_view key,
                                          std::string_view value, std::uint64_t lease) {
  if (wal_ && wal_->failed()) return wal_->failure();  // before taking a lock or a timestamp
  kovan::Guard g = kovan::pin();
  KeyNode* n = nullptr;
  for (int tries = 0;; ++tries) {
    // E6: a removed node is replaced by a fresh one (as in commit_writes()).
    if (tries > 0) std::this_thread::yield();
    bool inserted = false;
    fault_point(AllocationFaults::Site::kIndexInsert);
    n = index_.find_or_insert(key, g, &inserted);
    // Waits for the holder as long as it takes: never kBusy.
    if (lock_waiting(n, id, kForever, lock_waits_) == LockResult::kLocked) break;
  }
  OneLock lock(n);
  LeaseHold lease_hold(this);
  PendingTimestamp ts(clock_, wal_.get());
  // The head is stable: we hold the key's lock (I5).
  const Version* old = n->head.load(g);
  const bool old_live = old != nullptr && !old->tombstone;
  fault_point(AllocationFaults::Site::kVersion);
  std::unique_ptr<Version> fresh(
      old_live ? Version::make(ts.value(), old->create_rev, old->version + 1, false, value, lease)
               : Version::make(ts.value(), ts.value(), 1, false, value, lease));
  const std::uint64_t old_lease = old_live ? old->lease : 0;
  if (old_lease != 0 || lease != 0) {
    const std::string k(key);
    const std::vector<LeaseChange> changes{LeaseChange{&k, old_lease, lease}};
    if (Status s = lease_commit(changes, &lease_hold); !s.ok()) {
      lock.unlock();
      ts.finish();  // abandoned: installs nothing
      return s;
    }
  }
  std::string record;
  if (wal_) record = encode_one(ts.value(), key, fresh.get());
  // The watch feed (change_log.hpp CL1): the group goes in before the timestamp finishes.
  if (changes_) changes_->insert(change_group_one(ts.value(), key, fresh.get(), n, g));
  // Nothing below allocates.
  publish(n, fresh.release(), g);
  lock.unlock();
  if (wal_) {
    // Durability before visibility, as in commit_writes().
    ts.logged();
    wal_->submit(ts.value(), std::move(record));
    if (Status s = wal_->wait(ts.value()); !s.ok()) {
      ts.leave_unfinished();
      return s;
    }
  }
  ts.finish();
  clock_.wait_visible(ts.value());  // E3
  changed(ts.value());              // the watch feed's listener: after visibility
  commits_.fetch_add(1, std::memory_order_relaxed);
  // The chain it lengthened (as prune_written(), for one node).
  if (opts_.gc_policy != GcPolicy::kWatermark && needs_prune(n, g)) {
    try {
      prune_key(n, gc_view(), g);
    } catch (const std::bad_alloc&) {  // the view's points: the commit stands, the sweeper prunes
    }
  }
  return ts.value();
}

}  // namespace kv::storage::detail
