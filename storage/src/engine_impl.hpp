// storage/src/engine_impl.hpp — the MVCC engine's internal class, EngineImpl, and the
// per-transaction state. Internal to the storage engine. The design and the correctness
// arguments are in docs/STORAGE.md; the members are defined, one concern per file, in:
//
//   lifecycle.cpp  construction, destruction, begin/expiry/abort, the sweeper thread
//   reads.cpp      snapshot reads (get, scan) and buffering writes in a transaction
//   commit.cpp     the commit protocol: locks, timestamp, validation, install
//   gc.cpp         interval GC: pruning chains, removing index nodes, the sweep
//   one_shot.cpp   one-shot get/scan/put/delete (a transaction per call)
//   cond_txn.cpp   etcd-like conditional transactions (compare, then ops)
//   wal.cpp        the write-ahead log (wal.hpp: framing, group commit, L1-L3)
//   checkpoint.cpp checkpoints and snapshots from an MVCC snapshot; the checkpointer thread
//   recovery.cpp   opening a data directory: lock file, restore, checkpoint + WAL replay
//   lease.cpp      leases: the lease table, the check commits make, revoke and expiry (K1-K4)
//   stats.cpp      counters and diagnostics
//   engine.cpp     the public Engine and Transaction, forwarding here
//
// Thread safety: every public member may be called concurrently, except that the calls on
// one TxnState must hold its `mu` (Transaction does) or be on a TxnState the caller owns
// alone (one-shot operations).
//
// INVARIANTS (beyond index.hpp I1-I7 and snapshots.hpp C1-C2, S1)
// ------------------------------------------------------------------
// E1. Commit order on one key: a committer locks the key (CAS on KeyNode::owner; one-shot
//     writes wait for a busy lock, in key order: docs/STORAGE.md "Contention") before it
//     takes its commit timestamp and installs before it unlocks, so versions of a
//     key are installed in timestamp order (chain order = timestamp order).
// E2. A snapshot s reads, per key, the first version with commit_ts <= s. s is a value of W,
//     so every commit <= s is fully installed (C1), and none > s is visible.
// E3. A commit returns only after W >= its timestamp (strictness: a later begin sees it).
// E4. Pruning runs under the key's lock with owner kGcOwner, keeps the head, every version
//     newer than W_b (read before the slots), the version visible at W_b, and the version
//     visible at each registered snapshot < W_b (interval policy) or everything newer than
//     the oldest registered snapshot (watermark policy). Nothing else is reachable by a
//     registered or future snapshot (S1), so unlinked versions may be retired.
// E5. Validation treats a lock held by kGcOwner as free: pruning never changes the commit
//     timestamp of a head except by clearing a tombstone that every registered snapshot
//     already sees as "absent" (so "newest commit_ts <= start_ts" keeps its answer, or
//     changes only as E8 allows).
// E6. Index-node removal: only a pruner holding a key's commit lock (kGcOwner) removes its
//     node, and only when the pruned chain is empty and the node fully linked; it then sets
//     the owner to kDeadOwner (never changed again) before SkipList::remove marks and unlinks
//     the node. A committer that meets kDeadOwner looks the key up again and inserts a
//     fresh node (find_or_insert waits until the dead one is unlinked), so a write is never
//     installed into a removed node. Validation treats kDeadOwner as free (the chain is empty,
//     the key reads "absent"). Transactions keep keys, never KeyNode*, across calls.
// E8. A key whose versions are all newer than every registered snapshot older than W_b, and
//     whose newest version is a tombstone at or below W_b, reads "absent" at every registered
//     and future snapshot, and is emptied (then removed, E6) even while older snapshots are
//     registered. For such an older snapshot the key changed from "absent" to "absent":
//     serializable validation may treat it as unchanged (the transaction's reads still hold
//     at its commit point), but snapshot isolation's first-committer-wins must not lose the
//     write-write conflict, so the pruner records the tombstone's timestamp first
//     (removed_before_snapshot_) and SI validation treats an empty chain as changed for a
//     snapshot older than it (conservative: it may abort a writer of another new key).
// E9. Durability (docs/PERSISTENCE.md). With a WAL, every commit timestamp is given to the log
//     once, as a record or a skip, before it is finished (wal.hpp L1-L2), and a committed
//     timestamp is finished only after the log reports its record written (kAlways: and
//     fsynced). By C1/E2 no snapshot sees a commit before that, so under kAlways nothing a
//     reader saw can be lost by a crash. A commit the log failed is never finished: W stays
//     below it for good and the engine refuses writes from then on (L3).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "change_log.hpp"
#include "contention.hpp"
#include "index.hpp"
#include "snapshots.hpp"
#include "storage/engine.hpp"
#include "wal.hpp"

namespace kv::storage::detail {

inline constexpr std::uint64_t kGcOwner = 1;  // the pruners' lock id; txn ids start at 2
inline constexpr std::uint64_t kDeadOwner = ~std::uint64_t{0};  // node removed (E6)
inline constexpr int kSweepChunk = 256;             // nodes visited per guard by the sweeper
inline constexpr int kMaxOneShotAttempts = 1000;    // lost validations, then CONFLICT
inline constexpr int kYieldingAttempts = 32;        // retries that only yield; then they sleep
inline constexpr std::size_t kOneShotSlots = 1024;  // snapshot slots beyond max_active_txns

inline Status invalid(std::string msg) {
  return Status(StatusCode::kInvalidArgument, std::move(msg));
}

// key < end (or <= end when inclusive); an empty end is no upper bound.
inline bool in_upper(std::string_view key, std::string_view end, bool inclusive) {
  if (end.empty()) return true;
  const int c = key.compare(end);
  return inclusive ? c <= 0 : c < 0;
}

enum class Phase : std::uint8_t { kActive, kCommitted, kAborted, kExpired };
enum class AbortCause : std::uint8_t { kConflict, kExpired, kUser, kOutOfMemory, kStorage, kLease };

inline constexpr std::size_t kNoBudget = ~std::size_t{0};  // response budget: none
// Bytes one write-set entry is charged (map node, key and value strings, allocator headers).
inline constexpr std::size_t kWriteEntryOverhead = 128;

inline Status budget_exceeded(std::size_t budget, std::string_view what) {
  return Status(StatusCode::kResourceExhausted, "the response would exceed its budget of " +
                                                    std::to_string(budget) + " bytes (" +
                                                    std::string(what) + "); nothing was applied");
}

// A statistic updated on hot paths (commits, GC) by many threads at once: one cell per
// thread shard, each on its own cache line, so concurrent committers never write the same
// line (a single shared atomic per statistic, or adjacent ones, would bounce one line between
// the cores on every commit). load() sums the cells. Same interface as the std::atomic it
// replaces (fetch_add, fetch_sub, load), so call sites read alike.
//
// Exactness: every update is one relaxed RMW on one cell, so the sum of the cells is the sum
// of the updates; a decrement on another thread's cell is fine (unsigned arithmetic wraps,
// and the sum is taken modulo 2^64 as well, so a counter that goes up and down still sums to
// its value). A load() that happens-after every update (e.g. after the updating threads were
// joined) is exact; a load() concurrent with updates sees each cell at some recent value (as
// a relaxed std::atomic read did: the statistics were never a consistent snapshot).
// Memory orders: all relaxed. A counter orders no other data; the `order` arguments are
// accepted for interface compatibility and ignored.
class ShardedCounter {
 public:
  static constexpr std::size_t kShards = 16;  // a power of two; threads share cells past it

  void fetch_add(std::uint64_t d, std::memory_order = std::memory_order_relaxed) noexcept {
    cells_[shard()].v.fetch_add(d, std::memory_order_relaxed);
  }
  void fetch_sub(std::uint64_t d, std::memory_order = std::memory_order_relaxed) noexcept {
    cells_[shard()].v.fetch_sub(d, std::memory_order_relaxed);
  }
  std::uint64_t load(std::memory_order = std::memory_order_relaxed) const noexcept {
    std::uint64_t sum = 0;
    for (const Cell& c : cells_) sum += c.v.load(std::memory_order_relaxed);
    return sum;
  }

  // This thread's cell index, given out round-robin at a thread's first update (process-wide,
  // so threads of one engine spread over its cells in the order they first counted).
  static std::size_t shard() noexcept {
    // Constant-initialized (no TLS guard on the hot path); 0 means "not given out yet".
    thread_local std::size_t idx = 0;
    if (idx == 0) [[unlikely]] {
      // relaxed: the index only spreads threads; any value is correct.
      idx = 1 + (next_shard_.fetch_add(1, std::memory_order_relaxed) & (kShards - 1));
    }
    return idx - 1;
  }

 private:
  struct alignas(64) Cell {
    std::atomic<std::uint64_t> v{0};
  };
  static inline std::atomic<std::size_t> next_shard_{0};
  Cell cells_[kShards];
};

// The write-set bytes of one transaction, also added to an engine-wide total (for the
// memory limit) until released: when the write set is cleared or the state destroyed.
// Relaxed: the total is a statistic and a limit checked against other relaxed counters; it
// orders no other data. The release may run on another thread than the adjustments (the
// expiry sweeper): the total's cells still sum exactly (ShardedCounter).
class WriteCharge {
 public:
  WriteCharge() noexcept = default;
  WriteCharge(const WriteCharge&) = delete;
  WriteCharge& operator=(const WriteCharge&) = delete;
  ~WriteCharge() { release(); }

  std::uint64_t bytes() const noexcept { return bytes_; }
  // Changes this transaction's charge by `delta` bytes (an entry added, replaced or removed).
  void adjust(ShardedCounter& total, std::int64_t delta) noexcept {
    total_ = &total;
    bytes_ = static_cast<std::uint64_t>(static_cast<std::int64_t>(bytes_) + delta);
    total.fetch_add(static_cast<std::uint64_t>(delta));
  }
  void release() noexcept {
    if (total_ != nullptr && bytes_ != 0) total_->fetch_sub(bytes_);
    bytes_ = 0;
  }

 private:
  ShardedCounter* total_ = nullptr;
  std::uint64_t bytes_ = 0;
};

// A range read of a serializable transaction: [lo, hi) or [lo, hi]; hi empty = unbounded.
struct RangeRead {
  std::string lo;
  std::string hi;
  bool hi_inclusive = false;
};

struct TxnState {
  std::mutex mu;  // serializes calls on one handle and the expiry sweeper
  std::uint64_t id = 0;
  Isolation iso = Isolation::kSerializable;
  bool track_reads = true;  // serializable and not a read-only one-shot
  bool registered = false;  // in EngineImpl::txns_
  // Contention (docs/STORAGE.md, section 3): a one-shot write waits for busy commit locks;
  // a retried one-shot (like an interactive transaction) closes hold-off windows.
  bool one_shot = false;
  bool prioritized = false;
  Phase phase = Phase::kActive;
  Revision start_ts = 0;
  std::size_t slot = 0;
  bool has_slot = false;
  std::chrono::steady_clock::time_point started;
  // Buffered writes: a value, or nullopt for a delete.
  std::map<std::string, std::optional<std::string>, std::less<>> writes;
  // The lease of each buffered put that names one (a key absent here: lease 0).
  std::map<std::string, std::uint64_t, std::less<>> write_leases;
  WriteCharge write_charge;            // bytes of `writes`; released whenever `writes` is cleared
  std::vector<std::string> read_keys;  // point reads (keys, not nodes: E6)
  std::vector<RangeRead> ranges;
};

// A view of the active snapshots for one pruning pass (E4).
struct GcView {
  Revision floor = 0;            // W_b
  std::vector<Revision> points;  // registered snapshots < floor, descending, unique
};

class EngineImpl {
 public:
  // lifecycle.cpp
  explicit EngineImpl(Options opts);
  // recovery.cpp: a durable engine (or an in-memory one when no data_dir is set); null and
  // `error` set on failure.
  static std::unique_ptr<EngineImpl> open(Options opts, std::string& error);
  ~EngineImpl();
  const Options& options() const noexcept { return opts_; }
  Result<Transaction> begin(Isolation iso);
  // With t.mu held: OK if t may run a call; else the status for the caller.
  Status admit(TxnState& t);
  void unregister(TxnState& t);
  void user_abort(TxnState& t);
  void run_maintenance();
  void shutdown();

  // Argument checks (lifecycle.cpp).
  Status check_key(std::string_view key) const;
  Status check_value(std::string_view value) const;
  Status check_range(std::string_view start, std::string_view end) const;
  Status check_open() const;

  // reads.cpp. `budget`: a response budget (kNoBudget: none). txn_get returns
  // RESOURCE_EXHAUSTED, copying nothing, when the key-value's response_cost exceeds it;
  // txn_scan cuts its result to fit (ScanOptions::max_bytes, also applied).
  Result<KeyValue> txn_get(TxnState& t, std::string_view key, std::size_t budget = kNoBudget);
  Result<ScanResult> txn_scan(TxnState& t, std::string_view start, std::string_view end,
                              const ScanOptions& opts, std::size_t budget = kNoBudget);
  Status txn_put(TxnState& t, std::string_view key, std::string_view value,
                 std::uint64_t lease = 0);
  Status txn_del(TxnState& t, std::string_view key);
  // The memory limits for a write that adds `grow` bytes to a transaction already charged
  // `charged` bytes: OK, or RESOURCE_EXHAUSTED (max_txn_bytes, max_memory_bytes).
  Status check_write_room(std::uint64_t charged, std::uint64_t grow) const;

  // commit.cpp: commits t (locks, timestamp, validation, install, visibility, pruning). On
  // return t is finished (committed or aborted) and its snapshot released.
  Result<Revision> txn_commit(TxnState& t);

  // one_shot.cpp
  Result<KeyValue> get(std::string_view key);
  // reads.cpp: Engine::get_with, the head read of get() visited in place under the guard.
  Status get_with(std::string_view key, GetVisitor visit, void* ctx);
  Result<ScanResult> scan(std::string_view start, std::string_view end, const ScanOptions& o);
  Result<PutResult> put(std::string_view key, std::string_view value, bool prev_kv,
                        std::size_t budget, std::uint64_t lease = 0);
  Result<PutResult> put_blind(std::string_view key, std::string_view value, std::uint64_t lease);

  // lease.cpp (see engine.hpp, "Leases", and the invariants there)
  Result<LeaseGrantResult> lease_grant(std::int64_t ttl_seconds, std::uint64_t id);
  Result<LeaseRevokeResult> lease_revoke(std::uint64_t id, bool expiry);
  Result<std::int64_t> lease_keepalive(std::uint64_t id);
  Result<LeaseInfo> lease_time_to_live(std::uint64_t id, bool keys);
  std::size_t expire_leases();
  Status lease_check_alive(std::uint64_t id);  // OK, or LEASE_NOT_FOUND
  std::size_t lease_count() const;

  // One key of a commit whose lease changes or is (re)named: the lease of its newest
  // version before (old) and after (fresh) the commit.
  struct LeaseChange {
    const std::string* key;
    std::uint64_t old_lease;
    std::uint64_t new_lease;
  };
  // The leases a commit holds from its lease check until it is visible (K2).
  class LeaseHold {
   public:
    explicit LeaseHold(EngineImpl* e) noexcept : e_(e) {}
    ~LeaseHold() { e_->lease_release(ids_); }
    LeaseHold(const LeaseHold&) = delete;
    LeaseHold& operator=(const LeaseHold&) = delete;

   private:
    friend class EngineImpl;
    EngineImpl* e_;
    std::vector<std::uint64_t> ids_;
  };
  // commit.cpp calls it under the written keys' commit locks, after validation and before
  // publishing: LEASE_NOT_FOUND (nothing changed) if a named lease is not alive; else the
  // key sets are updated and `hold` holds the leases involved.
  Status lease_commit(const std::vector<LeaseChange>& changes, LeaseHold* hold);
  void lease_release(std::vector<std::uint64_t>& ids) noexcept;
  Result<DeleteResult> delete_range(std::string_view start, std::string_view end, bool single,
                                    bool prev_kv, std::size_t budget);

  // cond_txn.cpp
  Result<CondTxnResult> txn(const CondTxn& req);

  // checkpoint.cpp
  Result<Revision> checkpoint();
  bool durable() const noexcept { return wal_ != nullptr; }
  Result<Revision> write_snapshot(const std::function<bool(std::string_view)>& sink);
  DurabilityStats durability_stats() const;
  std::vector<std::string> recovery_notes() const;

  // stats.cpp
  EngineStats stats() const;
  Revision current_revision() const noexcept { return clock_.visible(); }
  // What counts against Options::max_memory_bytes (reads.cpp).
  std::uint64_t memory_bytes() const;
  std::size_t version_count(std::string_view key) const;

  // change_log.cpp: the watch feed (docs/STORAGE.md section 11).
  ChangeBatch read_changes(const ChangeQuery& q) const;
  Revision oldest_change_revision(bool need_prev) const;
  ChangeLogStats change_log_stats() const;
  void set_change_listener(std::function<void(Revision)> listener);

 private:
  // change_log.cpp. The committer of revision ts, under its commit locks, before publishing:
  // the group of what it installs (null when it installs nothing). May throw bad_alloc.
  std::shared_ptr<const ChangeGroup> change_group(
      Revision ts, const std::map<std::string, std::optional<std::string>, std::less<>>& writes,
      const std::vector<std::unique_ptr<Version>>& fresh, const std::vector<KeyNode*>& nodes,
      const kovan::Guard& g) const;
  // The group of a commit that installs one version v of `key` into n (v not yet published).
  std::shared_ptr<const ChangeGroup> change_group_one(Revision ts, std::string_view key,
                                                      const Version* v, const KeyNode* n,
                                                      const kovan::Guard& g) const;
  // After the commit of ts is visible: tells the listener.
  void changed(Revision ts) const noexcept;
  // Recovery: the group of a replayed WAL record, built from the heads it replaces (CL4).
  void refill_changes(std::string_view payload);
  // The WAL part of read_changes: cursor below the in-memory log.
  ChangeBatch read_wal_changes(const ChangeQuery& q, Revision visible, Revision mem_first) const;

  // recovery.cpp (single-threaded, before the engine is handed out)
  bool recover(std::string* err);
  bool restore(const std::string& from, std::string* err);
  bool load_checkpoint(const std::string& path, std::string_view data, Revision* rev,
                       std::string* err);
  void recover_put(std::string_view key, std::string_view value, Revision create_rev,
                   Revision mod_rev, std::int64_t version, std::uint64_t lease = 0);
  // lease.cpp: recovery's lease records, and the key sets rebuilt after replay.
  void recover_lease_grant(std::uint64_t id, std::int64_t ttl);
  void recover_lease_end(std::uint64_t id);
  void recover_lease_keys();
  // The leases alive now (not pending), with their TTLs, for a checkpoint.
  std::vector<std::pair<std::uint64_t, std::int64_t>> lease_list() const;
  void recover_delete(std::string_view key);
  bool start_threads(std::string* err);  // a durable engine: the log, sweeper, checkpointer

  // checkpoint.cpp
  // Streams the image at a fresh snapshot to sink (hooks: the checkpoint steps).
  Result<Revision> snapshot_to(const std::function<bool(std::string_view)>& sink,
                               bool* hook_stopped);
  void checkpointer_loop();
  void request_checkpoint();
  bool hook(CheckpointStep step) {
    return !(opts_.durability.faults && opts_.durability.faults->checkpoint_step &&
             !opts_.durability.faults->checkpoint_step(step));
  }

  // lifecycle.cpp
  Status open_snapshot(TxnState& t);
  void close_snapshot(TxnState& t) noexcept;
  std::uint64_t next_id() noexcept;
  bool expired(const TxnState& t) const noexcept;
  void expire_txns();
  void abort_locked(TxnState& t, AbortCause cause);
  void sweeper_loop();
  void stop_sweeper();
  void stop_checkpointer();

  // reads.cpp
  // The key-value of a live version v of `key` (counted in value_bytes_copied).
  static KeyValue read_value(std::string_view key, const Version* v);
  template <bool kReverse, class Emit>
  void merge_scan(const TxnState& t, std::string_view start, std::string_view end,
                  const kovan::Guard& g, Emit&& emit);

  // commit.cpp
  bool validate(const TxnState& t, const std::vector<KeyNode*>& locked, const kovan::Guard& g);
  Result<Revision> commit_writes(TxnState& t);
  // A blind one-shot put of one key (no prev_kv: it reads nothing), committed without a
  // write set; `id` is its lock owner id. May throw bad_alloc (nothing applied, nothing held).
  Result<Revision> commit_blind(std::uint64_t id, std::string_view key, std::string_view value,
                                std::uint64_t lease);
  std::unique_ptr<Version> make_version(const KeyNode* n, const std::optional<std::string>& value,
                                        Revision ts, const kovan::Guard& g,
                                        std::uint64_t lease = 0);
  void publish(KeyNode* n, Version* v, const kovan::Guard& g) noexcept;
  void prune_written(const std::vector<KeyNode*>& nodes, const kovan::Guard& g) noexcept;
  void fault_point(AllocationFaults::Site site) {
    if (opts_.alloc_faults) opts_.alloc_faults->before_allocation(site);
  }

  // gc.cpp
  GcView gc_view();
  // The pruning under a key's lock never allocates (nothing can throw while the lock is held).
  void prune_key(KeyNode* n, const GcView& view, const kovan::Guard& g) noexcept;
  void prune_chain(KeyNode* n, const GcView& view, const kovan::Guard& g) noexcept;
  void retire_run(Version* from, const Version* to, const kovan::Guard& g) noexcept;
  void sweep();

  // Releases a one-shot operation's snapshot when it goes out of scope (also on an
  // exception: a leaked slot would pin GC for good). close_snapshot() is idempotent.
  class SnapshotCloser {
   public:
    SnapshotCloser(EngineImpl* e, TxnState& t) noexcept : e_(e), t_(t) {}
    ~SnapshotCloser() { e_->close_snapshot(t_); }
    SnapshotCloser(const SnapshotCloser&) = delete;
    SnapshotCloser& operator=(const SnapshotCloser&) = delete;

   private:
    EngineImpl* e_;
    TxnState& t_;
  };

  // one_shot.cpp (the template is defined below: cond_txn.cpp uses it too)
  // Runs body(t) in a fresh serializable transaction and commits it, retrying on CONFLICT.
  // body returns Result<R>; on success `set_rev(R&, Revision)` stores the revision.
  template <class R, class Body, class SetRev>
  Result<R> one_shot(Body&& body, SetRev&& set_rev);
  // Deletes a key (single) or the live keys of [start, end) inside t. Prev kvs that do not
  // fit `budget` fail it with RESOURCE_EXHAUSTED (values past the budget are not copied).
  Result<DeleteResult> delete_in(TxnState& t, std::string_view start, std::string_view end,
                                 bool single, bool prev_kv, std::size_t budget = kNoBudget);

  // cond_txn.cpp. `*left`: what remains of the response budget (kNoBudget: none); the op's
  // results are charged to it.
  Result<TxnOpResult> run_op(TxnState& t, const TxnOp& op, std::size_t* left);

  const Options opts_;
  const std::shared_ptr<const Clock> clock_src_;
  SkipList index_;
  CommitClock clock_;
  SnapshotRegistry registry_;

  mutable std::mutex txns_mu_;  // guards txns_; never held while taking a TxnState::mu
  std::unordered_map<std::uint64_t, std::shared_ptr<TxnState>> txns_;
  // The newest tombstone whose key was removed while an older snapshot was registered (E8);
  // snapshot-isolation validation treats an empty chain as changed for older snapshots.
  std::atomic<Revision> removed_before_snapshot_{0};
  std::atomic<bool> shutdown_{false};

  // Counters for stats(): per-thread cells summed on read (ShardedCounter; false sharing:
  // docs/STORAGE.md, "Statistics"). Each is a standalone statistic, read without ordering.
  ShardedCounter live_keys_;
  ShardedCounter live_versions_;
  ShardedCounter version_bytes_;
  ShardedCounter txn_write_bytes_;  // WriteCharge totals of unfinished txns
  ShardedCounter versions_pruned_;
  ShardedCounter commits_;
  ShardedCounter aborts_conflict_;
  ShardedCounter aborts_expired_;
  ShardedCounter aborts_user_;
  ShardedCounter aborts_oom_;
  ShardedCounter gc_sweeps_;
  ShardedCounter nodes_removed_;
  ShardedCounter lock_waits_;        // commits that waited for a busy commit lock
  ShardedCounter hold_offs_;         // one-shot writes that waited for a window
  ShardedCounter one_shot_retries_;  // one-shot attempts that lost a validation, ran again

  // Loss streaks and hold-off windows per key hash (contention.hpp).
  HotKeys hot_{opts_.contention_hold_off};

  // Leases (lease.cpp). Guarded by lease_mu_, which is taken under key commit locks
  // (lease_commit) and never held while taking one, nor while waiting for the log.
  struct LeaseState {
    std::int64_t ttl = 0;
    std::chrono::steady_clock::time_point expiry;
    bool pending = false;                     // granted, its record not yet durable: not alive yet
    bool revoking = false;                    // a revoke or expiry is deleting its keys: not alive
    std::uint32_t inflight = 0;               // commits holding it (K2)
    std::set<std::string, std::less<>> keys;  // K1
  };
  mutable std::mutex lease_mu_;
  std::condition_variable lease_cv_;  // inflight reached 0
  std::unordered_map<std::uint64_t, LeaseState> leases_;
  std::uint64_t next_lease_id_ = 1;
  std::atomic<std::uint64_t> leases_expired_{0};
  std::atomic<std::uint64_t> leases_revoked_{0};
  std::chrono::steady_clock::time_point last_maintenance_{};  // sweeper thread only
  // The watch feed (null: watch_history_bytes == 0) and its listener (change_log.cpp).
  const std::unique_ptr<ChangeLog> changes_{make_change_log(opts_.watch_history_bytes)};
  std::atomic<const std::function<void(Revision)>*> listener_{nullptr};
  std::mutex listeners_mu_;  // guards listeners_
  std::vector<std::unique_ptr<std::function<void(Revision)>>> listeners_;

  // Durability: all empty/null for an in-memory engine.
  std::unique_ptr<Wal> wal_;
  std::string dir_;
  int lock_fd_ = -1;
  std::vector<std::string> notes_;  // written by recovery only
  std::mutex ckpt_mu_;              // one checkpoint at a time
  std::atomic<Revision> last_ckpt_{0};
  std::atomic<std::uint64_t> checkpoints_{0};
  std::mutex cp_mu_;
  std::condition_variable cp_cv_;
  bool cp_stop_ = false;
  bool cp_request_ = false;
  std::thread checkpointer_;

  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool stop_ = false;
  std::thread sweeper_;  // last: started after every member above exists
};

// Chain helpers shared by reads, commit and GC. Each needs a guard held by the caller.

// The version of `n` visible at snapshot s (null if none).
inline Version* visible_at(const KeyNode* n, Revision s, const kovan::Guard& g) noexcept {
  Version* v = n->head.load(g);
  while (v != nullptr && v->commit_ts > s) v = v->next.load(g);
  return v;
}

// More than one version, a tombstone head, or no version at all (a node left by a commit
// that installed nothing: a candidate for removal, E6).
inline bool needs_prune(const KeyNode* n, const kovan::Guard& g) {
  const Version* h = n->head.load(g);
  return h == nullptr || h->tombstone || h->next.load(g) != nullptr;
}

template <class R, class Body, class SetRev>
Result<R> EngineImpl::one_shot(Body&& body, SetRev&& set_rev) {
  if (Status s = check_open(); !s.ok()) return s;
  bool held_off = false;
  for (int attempt = 0; attempt < kMaxOneShotAttempts;) {
    TxnState t;
    t.id = next_id();
    t.one_shot = true;            // waits for busy commit locks: no CONFLICT from locks
    t.prioritized = attempt > 0;  // a retry lost a validation: it is what windows are for
    if (Status s = open_snapshot(t); !s.ok()) return s;
    SnapshotCloser closer(this, t);  // also if body throws (e.g. bad_alloc)
    Result<R> r = body(t);
    if (!r.ok()) return r;
    // A fresh write keeps off keys whose committers keep losing (docs/STORAGE.md,
    // "Contention"), at most one cap per call; then it runs again on a fresh snapshot.
    if (attempt == 0 && !held_off && hot_.window_open(t.writes)) {
      close_snapshot(t);  // not pinned while waiting
      hot_.hold_off(t.writes);
      held_off = true;
      hold_offs_.fetch_add(1, std::memory_order_relaxed);
      continue;  // the body runs again, on a fresh snapshot
    }
    Result<Revision> c = txn_commit(t);
    if (c.ok()) {
      set_rev(r.value(), c.value());
      return r;
    }
    if (c.code() != StatusCode::kConflict) return c.status();
    if (attempt + 1 >= kMaxOneShotAttempts) {
      aborts_conflict_.fetch_add(1, std::memory_order_relaxed);  // the caller sees CONFLICT
      break;
    }
    one_shot_retries_.fetch_add(1, std::memory_order_relaxed);
    // A lost validation: a key this write read changed since its snapshot. Retry at once
    // a few times, then back off in sleeps growing to 1 ms.
    if (attempt < kYieldingAttempts) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(
          std::min(1000, 1 << std::min(attempt - kYieldingAttempts, 10))));
    }
    ++attempt;
  }
  return Status(StatusCode::kConflict, "the keys read kept changing through retries");
}

}  // namespace kv::storage::detail
