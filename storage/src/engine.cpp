// storage/src/engine.cpp — the MVCC engine: transactions, commit protocol, interval GC.
// The design and the correctness arguments are in docs/STORAGE.md; this file refers to them.
//
// INVARIANTS (beyond index.hpp I1-I6 and snapshots.hpp C1-C2, S1)
// ------------------------------------------------------------------
// E1. Commit order on one key: a committer locks the key (no-wait CAS on KeyNode::owner)
//     before it takes its commit timestamp and installs before it unlocks, so versions of a
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
//     timestamp of a head except by clearing a lone tombstone that every registered snapshot
//     already sees as "absent" (so "newest commit_ts <= start_ts" keeps its answer).
// E6. Index-node removal: only a pruner holding a key's commit lock (kGcOwner) removes its
//     node, and only when the pruned chain is empty and the node fully linked; it then sets
//     the owner to kDeadOwner (never changed again) before SkipList::remove marks and unlinks
//     the node. A committer that meets kDeadOwner looks the key up again and inserts a
//     fresh node (find_or_insert waits until the dead one is unlinked), so a write is never
//     installed into a removed node. Validation treats kDeadOwner as free (the chain is empty,
//     the key reads "absent"). Transactions keep keys, never KeyNode*, across calls.
#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "index.hpp"
#include "snapshots.hpp"
#include "storage/engine.hpp"

namespace kv::storage::detail {

namespace {

constexpr std::uint64_t kGcOwner = 1;                    // the pruners' lock id; txn ids start at 2
constexpr std::uint64_t kDeadOwner = ~std::uint64_t{0};  // node removed from the index (E6)
constexpr int kSweepChunk = 256;                         // nodes visited per guard by the sweeper
constexpr int kMaxOneShotAttempts = 1000;                // then a one-shot write returns CONFLICT
constexpr std::size_t kOneShotSlots = 1024;              // snapshot slots beyond max_active_txns

class SteadyClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const noexcept override {
    return std::chrono::steady_clock::now();
  }
};

Status invalid(std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); }

bool in_upper(std::string_view key, std::string_view end, bool inclusive) {
  if (end.empty()) return true;  // no upper bound
  const int c = key.compare(end);
  return inclusive ? c <= 0 : c < 0;
}

}  // namespace

enum class Phase : std::uint8_t { kActive, kCommitted, kAborted, kExpired };
enum class AbortCause : std::uint8_t { kConflict, kExpired, kUser };

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
  Phase phase = Phase::kActive;
  Revision start_ts = 0;
  std::size_t slot = 0;
  bool has_slot = false;
  std::chrono::steady_clock::time_point started;
  // Buffered writes: a value, or nullopt for a delete.
  std::map<std::string, std::optional<std::string>, std::less<>> writes;
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
  explicit EngineImpl(Options opts)
      : opts_(std::move(opts)),
        clock_src_(opts_.clock ? opts_.clock : std::make_shared<SteadyClock>()),
        registry_(opts_.max_active_txns + kOneShotSlots) {
    if (opts_.background_sweeper) sweeper_ = std::thread([this] { sweeper_loop(); });
  }

  ~EngineImpl() {
    stop_sweeper();
    // No other thread may touch the engine now (contract): free chains directly.
    for (KeyNode* n = index_.first_unprotected(); n != nullptr; n = SkipList::next_unprotected(n)) {
      Version* v = n->head.load_unprotected(std::memory_order_relaxed);
      while (v != nullptr) {
        Version* nx = v->next.load_unprotected(std::memory_order_relaxed);
        delete v;
        v = nx;
      }
    }
    kovan::flush();
  }

  const Options& options() const noexcept { return opts_; }

  // ---------------------------------------------------------------- validation helpers
  Status check_key(std::string_view key) const {
    if (key.empty()) return invalid("empty key");
    if (key.size() > opts_.max_key_bytes) {
      return invalid("key of " + std::to_string(key.size()) + " bytes exceeds max_key_bytes " +
                     std::to_string(opts_.max_key_bytes));
    }
    return Status::Ok();
  }
  Status check_value(std::string_view value) const {
    if (value.size() > opts_.max_value_bytes) {
      return invalid("value of " + std::to_string(value.size()) +
                     " bytes exceeds max_value_bytes " + std::to_string(opts_.max_value_bytes));
    }
    return Status::Ok();
  }
  Status check_range(std::string_view start, std::string_view end) const {
    if (start.size() > opts_.max_key_bytes || end.size() > opts_.max_key_bytes) {
      return invalid("range bound exceeds max_key_bytes");
    }
    if (!end.empty() && end.compare(start) < 0) return invalid("range end before start");
    return Status::Ok();
  }
  Status check_open() const {
    if (shutdown_.load(std::memory_order_acquire)) {  // pairs with shutdown()'s release
      return Status(StatusCode::kUnavailable, "engine is shutting down");
    }
    return Status::Ok();
  }

  // ---------------------------------------------------------------- snapshots
  Status open_snapshot(TxnState& t) {
    if (!registry_.acquire(clock_, &t.slot, &t.start_ts)) {
      return Status(StatusCode::kResourceExhausted, "too many active snapshots");
    }
    t.has_slot = true;
    return Status::Ok();
  }
  void close_snapshot(TxnState& t) noexcept {
    if (t.has_slot) {
      registry_.release(t.slot);
      t.has_slot = false;
    }
  }

  // ---------------------------------------------------------------- reads
  // The version of `n` visible at snapshot s (null if none). Needs a guard held by caller.
  static Version* visible_at(const KeyNode* n, Revision s, const kovan::Guard& g) noexcept {
    Version* v = n->head.load(g);
    while (v != nullptr && v->commit_ts > s) v = v->next.load(g);
    return v;
  }
  static void fill(KeyValue* kv, std::string_view key, const Version* v, bool with_value) {
    kv->key.assign(key);
    if (with_value) kv->value = v->value;
    kv->create_revision = v->create_rev;
    kv->mod_revision = v->commit_ts;
    kv->version = v->version;
  }

  Result<KeyValue> txn_get(TxnState& t, std::string_view key) {
    if (Status s = check_key(key); !s.ok()) return s;
    if (auto w = t.writes.find(key); w != t.writes.end()) {
      if (!w->second) return Status(StatusCode::kNotFound, "");
      KeyValue kv;
      kv.key.assign(key);
      kv.value = *w->second;
      return kv;
    }
    if (t.track_reads) t.read_keys.emplace_back(key);
    kovan::Guard g = kovan::pin();
    const KeyNode* n = index_.find(key, g);
    if (n == nullptr) return Status(StatusCode::kNotFound, "");
    const Version* v = visible_at(n, t.start_ts, g);
    if (v == nullptr || v->tombstone) return Status(StatusCode::kNotFound, "");
    KeyValue kv;
    fill(&kv, key, v, true);
    return kv;
  }

  Result<ScanResult> txn_scan(TxnState& t, std::string_view start, std::string_view end,
                              const ScanOptions& opts) {
    if (Status s = check_range(start, end); !s.ok()) return s;
    ScanResult out;
    out.revision = t.start_ts;
    const bool collect = !opts.count_only;
    const std::size_t limit = collect ? opts.limit : 0;
    kovan::Guard g = kovan::pin();

    // Emits one key (from the snapshot or the write set); false stops the scan.
    auto emit = [&](std::string_view key, const Version* v,
                    const std::optional<std::string>* own) -> bool {
      if (own != nullptr ? !own->has_value() : (v == nullptr || v->tombstone)) return true;
      ++out.count;  // every key of the range is counted, also past the limit
      if (limit != 0 && out.kvs.size() == limit) {
        out.more = true;
        return true;
      }
      if (collect) {
        KeyValue kv;
        if (own != nullptr) {
          kv.key.assign(key);
          if (!opts.keys_only) kv.value = **own;
        } else {
          fill(&kv, key, v, !opts.keys_only);
        }
        out.kvs.push_back(std::move(kv));
      }
      return true;
    };

    if (!opts.reverse) {
      KeyNode* n = index_.lower_bound(start, g);
      auto w = t.writes.lower_bound(start);
      for (;;) {
        const bool n_ok = n != nullptr && in_upper(n->key, end, false);
        const bool w_ok = w != t.writes.end() && in_upper(w->first, end, false);
        if (!n_ok && !w_ok) break;
        bool go;
        if (w_ok && (!n_ok || w->first.compare(n->key) <= 0)) {
          if (n_ok && w->first == n->key) n = index_.next(n, g);
          go = emit(w->first, nullptr, &w->second);
          ++w;
        } else {
          go = emit(n->key, visible_at(n, t.start_ts, g), nullptr);
          n = index_.next(n, g);
        }
        if (!go) break;
      }
      // The count covers the whole range, so the whole range was read (also when a limit
      // cut the returned keys).
      if (t.track_reads) t.ranges.push_back(RangeRead{std::string(start), std::string(end), false});
    } else {
      KeyNode* n = end.empty() ? index_.last(g) : index_.last_less(end, g);
      auto w =
          end.empty() ? t.writes.rbegin() : std::make_reverse_iterator(t.writes.lower_bound(end));
      auto in_lower = [&](std::string_view k) { return k.compare(start) >= 0; };
      for (;;) {
        const bool n_ok = n != nullptr && in_lower(n->key);
        const bool w_ok = w != t.writes.rend() && in_lower(w->first);
        if (!n_ok && !w_ok) break;
        bool go;
        if (w_ok && (!n_ok || w->first.compare(n->key) >= 0)) {
          if (n_ok && w->first == n->key) n = index_.last_less(n->key, g);
          go = emit(w->first, nullptr, &w->second);
          ++w;
        } else {
          go = emit(n->key, visible_at(n, t.start_ts, g), nullptr);
          n = index_.last_less(n->key, g);
        }
        if (!go) break;
      }
      // The count covers the whole range, so the whole range was read (also when a limit
      // cut the returned keys).
      if (t.track_reads) t.ranges.push_back(RangeRead{std::string(start), std::string(end), false});
    }
    return out;
  }

  Status txn_put(TxnState& t, std::string_view key, std::string_view value) {
    if (Status s = check_key(key); !s.ok()) return s;
    if (Status s = check_value(value); !s.ok()) return s;
    t.writes.insert_or_assign(std::string(key), std::optional<std::string>(std::string(value)));
    return Status::Ok();
  }
  Status txn_del(TxnState& t, std::string_view key) {
    if (Status s = check_key(key); !s.ok()) return s;
    t.writes.insert_or_assign(std::string(key), std::nullopt);
    return Status::Ok();
  }

  // ---------------------------------------------------------------- commit
  enum class LockResult : std::uint8_t { kLocked, kBusy, kDead };
  // Try-locks n for `owner`; waits only for a pruner (bounded, E4), never for a committer.
  // kDead: n was removed from the index (E6); look the key up again.
  static LockResult try_lock(KeyNode* n, std::uint64_t owner) noexcept {
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
  static void unlock(KeyNode* n) noexcept {
    // release: publishes the versions installed under the lock (pairs with try_lock and
    // with the acquire owner loads of validate()).
    n->owner.store(0, std::memory_order_release);
  }

  // E5 / docs "Serializable validation": nothing committed (or committing) on n since
  // start_ts, other than by this transaction.
  static bool unchanged(const KeyNode* n, const TxnState& t, const kovan::Guard& g) noexcept {
    // acquire: pairs with unlock()'s release, so an unlocked key shows its new version.
    const std::uint64_t o = n->owner.load(std::memory_order_acquire);
    if (o != 0 && o != t.id && o != kGcOwner && o != kDeadOwner) return false;
    const Version* v = n->head.load(g);
    return v == nullptr || v->commit_ts <= t.start_ts;
  }

  bool validate(const TxnState& t, const std::vector<KeyNode*>& locked, const kovan::Guard& g) {
    if (t.iso == Isolation::kSnapshot) {
      // First committer wins: no other commit on a written key since the snapshot.
      for (const KeyNode* n : locked) {
        const Version* v = n->head.load(g);
        if (v != nullptr && v->commit_ts > t.start_ts) return false;
      }
      return true;
    }
    // A key read that has no node now changed nothing since start_ts: a chain that gained a
    // version after start_ts cannot be emptied (and its node removed) while t's snapshot is
    // registered (docs/STORAGE.md, "Validation across removal").
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

  void install(KeyNode* n, const std::optional<std::string>& value, Revision ts,
               const kovan::Guard& g) {
    Version* old = n->head.load(g);
    const bool old_live = old != nullptr && !old->tombstone;
    Version* v;
    if (!value) {
      if (!old_live) return;  // deleting an absent key writes nothing
      v = new Version(ts, 0, 0, true, {});
    } else if (old_live) {
      v = new Version(ts, old->create_rev, old->version + 1, false, *value);
    } else {
      v = new Version(ts, ts, 1, false, *value);
    }
    v->next.store(old, std::memory_order_relaxed);  // published by the head store below
    // release: publishes the version's fields (pairs with guarded acquire loads of head).
    n->head.store(v, std::memory_order_release);
    live_versions_.fetch_add(1, std::memory_order_relaxed);
    version_bytes_.fetch_add(v->footprint(), std::memory_order_relaxed);
    const bool new_live = !v->tombstone;
    if (new_live && !old_live) live_keys_.fetch_add(1, std::memory_order_relaxed);
    if (!new_live && old_live) live_keys_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Commits t (locks, timestamp, validation, install, visibility, pruning). On return t is
  // finished (committed or aborted) and its snapshot released.
  Result<Revision> txn_commit(TxnState& t) {
    if (t.writes.empty()) {  // read-only: never validates, never aborts
      close_snapshot(t);
      t.phase = Phase::kCommitted;
      commits_.fetch_add(1, std::memory_order_relaxed);
      return t.start_ts;
    }
    // One guard for the whole commit: `locked` holds KeyNode* until the pruning at the end.
    kovan::Guard g = kovan::pin();
    std::vector<KeyNode*> locked;
    locked.reserve(t.writes.size());
    for (const auto& [key, value] : t.writes) {
      KeyNode* n = nullptr;
      LockResult lr = LockResult::kDead;
      for (int tries = 0; lr == LockResult::kDead; ++tries) {
        // E6: a removed node is replaced by a fresh one. Until its remover marks it (a few
        // instructions after setting the dead owner), the lookup can still return it.
        if (tries > 0) std::this_thread::yield();
        bool inserted = false;
        n = index_.find_or_insert(key, g, &inserted);
        lr = try_lock(n, t.id);
      }
      if (lr == LockResult::kBusy) {
        // The message is built before abort_locked() clears the write set `key` lives in.
        Status conflict(StatusCode::kConflict,
                        "key '" + key + "' is being committed by another transaction");
        for (KeyNode* m : locked) unlock(m);
        abort_locked(t, AbortCause::kConflict);
        return conflict;
      }
      locked.push_back(n);
    }
    const Revision ts = clock_.acquire();
    if (!validate(t, locked, g)) {
      for (KeyNode* m : locked) unlock(m);
      clock_.finish(ts);  // abandoned: installs nothing
      abort_locked(t, AbortCause::kConflict);
      return Status(StatusCode::kConflict,
                    t.iso == Isolation::kSnapshot
                        ? "a written key was committed by another transaction after the snapshot"
                        : "data read by the transaction changed after its snapshot");
    }
    {
      std::size_t i = 0;
      for (const auto& [key, value] : t.writes) install(locked[i++], value, ts, g);
    }
    for (KeyNode* m : locked) unlock(m);
    clock_.finish(ts);
    clock_.wait_visible(ts);  // E3
    close_snapshot(t);
    t.phase = Phase::kCommitted;
    commits_.fetch_add(1, std::memory_order_relaxed);
    // Interval GC on the chains this commit lengthened. The watermark policy, kept for
    // comparison, prunes in the sweeper only (as horizon-based systems vacuum in the
    // background): its chains are long, and walking them on every commit would be quadratic.
    if (opts_.gc_policy == GcPolicy::kWatermark) return ts;
    GcView view;
    bool have_view = false;
    for (KeyNode* n : locked) {
      if (!needs_prune(n, g)) continue;
      if (!have_view) {
        view = gc_view();
        have_view = true;
      }
      prune_key(n, view, g);
    }
    return ts;
  }

  void abort_locked(TxnState& t, AbortCause cause) {
    close_snapshot(t);
    t.writes.clear();
    t.read_keys.clear();
    t.ranges.clear();
    switch (cause) {
      case AbortCause::kConflict:
        t.phase = Phase::kAborted;
        aborts_conflict_.fetch_add(1, std::memory_order_relaxed);
        break;
      case AbortCause::kExpired:
        t.phase = Phase::kExpired;
        aborts_expired_.fetch_add(1, std::memory_order_relaxed);
        break;
      case AbortCause::kUser:
        t.phase = Phase::kAborted;
        aborts_user_.fetch_add(1, std::memory_order_relaxed);
        break;
    }
  }

  // ---------------------------------------------------------------- GC (E4)
  GcView gc_view() {
    GcView v;
    v.floor = clock_.visible();    // W_b first (seq_cst) ...
    registry_.collect(&v.points);  // ... then the slots (seq_cst): rule S1
    std::erase_if(v.points, [&](Revision s) { return s >= v.floor; });
    std::sort(v.points.begin(), v.points.end(), std::greater<>());
    v.points.erase(std::unique(v.points.begin(), v.points.end()), v.points.end());
    return v;
  }

  // More than one version, a tombstone head, or no version at all (a node left by a commit
  // that installed nothing: a candidate for removal, E6).
  static bool needs_prune(const KeyNode* n, const kovan::Guard& g) {
    const Version* h = n->head.load(g);
    return h == nullptr || h->tombstone || h->next.load(g) != nullptr;
  }

  void retire_run(Version* from, const Version* to, const kovan::Guard& g) {
    // Retires the already-unlinked versions from `from` up to (not including) `to`.
    std::uint64_t count = 0;
    std::uint64_t bytes = 0;
    while (from != to) {
      Version* nx = from->next.load(g);
      ++count;
      bytes += from->footprint();
      kovan::retire(from);
      from = nx;
    }
    live_versions_.fetch_sub(count, std::memory_order_relaxed);
    version_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    versions_pruned_.fetch_add(count, std::memory_order_relaxed);
  }

  // Prunes one chain if its lock is free (skips it otherwise: the holder prunes later), and
  // removes the key's index node if the chain is then empty (E6).
  void prune_key(KeyNode* n, const GcView& view, const kovan::Guard& g) {
    std::uint64_t expected = 0;
    // acquire: pairs with the last committer's release unlock (we see its versions).
    if (!n->owner.compare_exchange_strong(expected, kGcOwner, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
      return;
    }
    prune_chain(n, view, g);
    // acquire on fully_linked: pairs with the inserter's release store (the node is linked at
    // every level, so remove() finds it at each). The head is ours to read (we hold the lock).
    if (n->head.load_unprotected(std::memory_order_relaxed) == nullptr &&
        n->fully_linked.load(std::memory_order_acquire)) {
      // Permanently taken: try_lock() of a committer that already holds n now returns kDead
      // and it inserts a fresh node. relaxed: the owner word is only ever CASed from 0, and
      // this value is never replaced; no data is published through it.
      n->owner.store(kDeadOwner, std::memory_order_relaxed);
      index_.remove(n, g);
      nodes_removed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    unlock(n);
  }

  void prune_chain(KeyNode* n, const GcView& view, const kovan::Guard& g) {
    Version* head = n->head.load(g);
    if (head == nullptr) return;
    // Keep every version newer than the floor, and the one visible at the floor.
    Version* keep = head;
    while (keep->commit_ts > view.floor) {
      Version* nx = keep->next.load(g);
      if (nx == nullptr) return;  // nothing at or below the floor
      keep = nx;
    }
    if (opts_.gc_policy == GcPolicy::kWatermark) {
      // Keep everything newer than the oldest registered snapshot, and its visible version.
      if (!view.points.empty()) {
        const Revision oldest = view.points.back();
        while (keep->commit_ts > oldest) {
          Version* nx = keep->next.load(g);
          if (nx == nullptr) break;
          keep = nx;
        }
      }
    } else {
      for (const Revision s : view.points) {  // descending, all < floor
        Version* vis = keep;
        while (vis != nullptr && vis->commit_ts > s) vis = vis->next.load(g);
        if (vis == nullptr) break;  // s sees no version: neither does any older snapshot
        if (vis != keep) {
          Version* first = keep->next.load(g);
          // release: the kept successor is published to readers that pass `keep`.
          keep->next.store(vis, std::memory_order_release);
          retire_run(first, vis, g);
          keep = vis;
        }
      }
    }
    if (Version* tail = keep->next.load(g); tail != nullptr) {
      keep->next.store(nullptr, std::memory_order_release);  // release: as above
      retire_run(tail, nullptr, g);
    }
    // A lone tombstone that every registered and future snapshot already sees as "absent".
    if (keep == head && head->tombstone && head->commit_ts <= view.floor &&
        (view.points.empty() || view.points.back() >= head->commit_ts)) {
      n->head.store(nullptr, std::memory_order_release);  // release: as above
      retire_run(head, nullptr, g);
    }
  }

  // Visits every key; the guard is re-taken every kSweepChunk nodes (guards stay short,
  // I1), resuming at the first key not yet visited.
  void sweep() {
    GcView view;
    bool have_view = false;
    std::string resume;
    bool started = false;
    for (;;) {
      kovan::Guard g = kovan::pin();
      KeyNode* n = started ? index_.lower_bound(resume, g) : index_.first(g);
      started = true;
      for (int budget = kSweepChunk; n != nullptr && budget > 0; --budget) {
        if (needs_prune(n, g)) {
          if (!have_view) {
            view = gc_view();
            have_view = true;
          }
          prune_key(n, view, g);
        }
        n = index_.next(n, g);  // also valid if n was just removed (it is still protected)
      }
      if (n == nullptr) break;
      resume = n->key;
    }
    gc_sweeps_.fetch_add(1, std::memory_order_relaxed);
    kovan::flush();
  }

  // ---------------------------------------------------------------- transactions
  Result<Transaction> begin(Isolation iso) {
    if (Status s = check_open(); !s.ok()) return s;
    auto t = std::make_shared<TxnState>();
    t->id = next_id();
    t->iso = iso;
    t->track_reads = iso == Isolation::kSerializable;
    t->started = clock_src_->now();
    {
      std::lock_guard lk(txns_mu_);
      if (txns_.size() >= opts_.max_active_txns) {
        return Status(StatusCode::kResourceExhausted, "too many active transactions");
      }
      if (Status s = open_snapshot(*t); !s.ok()) return s;
      t->registered = true;
      txns_.emplace(t->id, t);
    }
    return Transaction(this, std::move(t));
  }

  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  void unregister(TxnState& t) {
    if (!t.registered) return;
    t.registered = false;
    std::lock_guard lk(txns_mu_);
    txns_.erase(t.id);
  }

  bool expired(const TxnState& t) const noexcept {
    return clock_src_->now() - t.started > opts_.txn_timeout;
  }

  // With t.mu held: OK if t may run a call; else the status for the caller.
  Status admit(TxnState& t) {
    switch (t.phase) {
      case Phase::kActive:
        break;
      case Phase::kExpired:
        return Status(StatusCode::kTxnExpired, "transaction exceeded txn_timeout");
      default:
        return Status(StatusCode::kTxnNotFound, "transaction is no longer active");
    }
    if (Status s = check_open(); !s.ok()) return s;
    if (expired(t)) {
      abort_locked(t, AbortCause::kExpired);
      unregister(t);
      return Status(StatusCode::kTxnExpired, "transaction exceeded txn_timeout");
    }
    return Status::Ok();
  }

  void expire_txns() {
    std::vector<std::shared_ptr<TxnState>> due;
    {
      std::lock_guard lk(txns_mu_);
      for (auto& [id, t] : txns_) {
        if (expired(*t)) due.push_back(t);
      }
    }
    for (auto& t : due) {
      std::lock_guard lk(t->mu);  // never taken while holding txns_mu_
      if (t->phase == Phase::kActive && expired(*t)) {
        abort_locked(*t, AbortCause::kExpired);
        unregister(*t);
      }
    }
  }

  void run_maintenance() {
    expire_txns();
    sweep();
  }

  // ---------------------------------------------------------------- one-shot operations
  // Runs body(t) in a fresh serializable transaction and commits it, retrying on CONFLICT.
  // body returns Result<R>; on success `set_rev(R&, Revision)` stores the revision.
  template <class R, class Body, class SetRev>
  Result<R> one_shot(Body&& body, SetRev&& set_rev) {
    if (Status s = check_open(); !s.ok()) return s;
    for (int attempt = 0; attempt < kMaxOneShotAttempts; ++attempt) {
      TxnState t;
      t.id = next_id();
      if (Status s = open_snapshot(t); !s.ok()) return s;
      Result<R> r = body(t);
      if (!r.ok()) {
        close_snapshot(t);
        return r;
      }
      Result<Revision> c = txn_commit(t);
      if (c.ok()) {
        set_rev(r.value(), c.value());
        return r;
      }
      if (c.code() != StatusCode::kConflict) return c.status();
      std::this_thread::yield();
    }
    return Status(StatusCode::kConflict, "key range stayed contended through retries");
  }

  Result<KeyValue> get(std::string_view key) {
    if (Status s = check_open(); !s.ok()) return s;
    TxnState t;
    t.track_reads = false;
    if (Status s = check_key(key); !s.ok()) return s;
    if (Status s = open_snapshot(t); !s.ok()) return s;
    Result<KeyValue> r = txn_get(t, key);
    close_snapshot(t);
    return r;
  }

  Result<ScanResult> scan(std::string_view start, std::string_view end, const ScanOptions& o) {
    if (Status s = check_open(); !s.ok()) return s;
    TxnState t;
    t.track_reads = false;
    if (Status s = open_snapshot(t); !s.ok()) return s;
    Result<ScanResult> r = txn_scan(t, start, end, o);
    close_snapshot(t);
    return r;
  }

  Result<PutResult> put(std::string_view key, std::string_view value, bool prev_kv) {
    if (Status s = check_key(key); !s.ok()) return s;
    if (Status s = check_value(value); !s.ok()) return s;
    return one_shot<PutResult>(
        [&](TxnState& t) -> Result<PutResult> {
          PutResult pr;
          if (prev_kv) {
            Result<KeyValue> old = txn_get(t, key);
            if (old.ok()) pr.prev_kv = std::move(old).value();
          }
          if (Status s = txn_put(t, key, value); !s.ok()) return s;
          return pr;
        },
        [](PutResult& pr, Revision rev) { pr.revision = rev; });
  }

  Result<DeleteResult> delete_range(std::string_view start, std::string_view end, bool single,
                                    bool prev_kv) {
    if (single) {
      if (Status s = check_key(start); !s.ok()) return s;
    } else if (Status s = check_range(start, end); !s.ok()) {
      return s;
    }
    return one_shot<DeleteResult>(
        [&](TxnState& t) -> Result<DeleteResult> {
          return delete_in(t, start, end, single, prev_kv);
        },
        [](DeleteResult& dr, Revision rev) { dr.revision = rev; });
  }

  // Deletes a key (single) or the live keys of [start, end) inside t.
  Result<DeleteResult> delete_in(TxnState& t, std::string_view start, std::string_view end,
                                 bool single, bool prev_kv) {
    DeleteResult dr;
    if (single) {
      Result<KeyValue> old = txn_get(t, start);
      if (!old.ok()) {
        if (old.code() == StatusCode::kNotFound) return dr;
        return old.status();
      }
      if (Status s = txn_del(t, start); !s.ok()) return s;
      dr.deleted = 1;
      if (prev_kv) dr.prev_kvs.push_back(std::move(old).value());
      return dr;
    }
    ScanOptions so;
    so.keys_only = !prev_kv;
    Result<ScanResult> found = txn_scan(t, start, end, so);
    if (!found.ok()) return found.status();
    for (KeyValue& kv : found->kvs) {
      if (Status s = txn_del(t, kv.key); !s.ok()) return s;
      ++dr.deleted;
      if (prev_kv) dr.prev_kvs.push_back(std::move(kv));
    }
    return dr;
  }

  static bool compare_holds(const Compare& c, const Result<KeyValue>& cur) {
    const bool present = cur.ok();
    if (c.target == Compare::Target::kValue) {
      if (!present) return false;
      const int r = cur->value.compare(c.value);
      switch (c.op) {
        case Compare::Op::kEqual:
          return r == 0;
        case Compare::Op::kNotEqual:
          return r != 0;
        case Compare::Op::kLess:
          return r < 0;
        case Compare::Op::kGreater:
          return r > 0;
      }
      return false;
    }
    std::int64_t actual = 0;
    if (present) {
      switch (c.target) {
        case Compare::Target::kVersion:
          actual = cur->version;
          break;
        case Compare::Target::kCreateRevision:
          actual = static_cast<std::int64_t>(cur->create_revision);
          break;
        case Compare::Target::kModRevision:
          actual = static_cast<std::int64_t>(cur->mod_revision);
          break;
        case Compare::Target::kValue:
          break;
      }
    }
    switch (c.op) {
      case Compare::Op::kEqual:
        return actual == c.number;
      case Compare::Op::kNotEqual:
        return actual != c.number;
      case Compare::Op::kLess:
        return actual < c.number;
      case Compare::Op::kGreater:
        return actual > c.number;
    }
    return false;
  }

  Status check_op(const TxnOp& op) const {
    if (Status s = check_key(op.key); !s.ok()) return s;
    if (op.type == TxnOp::Type::kPut) return check_value(op.value);
    if (!op.range_end.empty() && op.range_end != std::string_view("\0", 1)) {
      return check_range(op.key, op.range_end);
    }
    return Status::Ok();
  }

  Result<CondTxnResult> txn(const CondTxn& req) {
    for (const Compare& c : req.compare) {
      if (Status s = check_key(c.key); !s.ok()) return s;
    }
    for (const auto* ops : {&req.success, &req.failure}) {
      for (const TxnOp& op : *ops) {
        if (Status s = check_op(op); !s.ok()) return s;
      }
    }
    return one_shot<CondTxnResult>(
        [&](TxnState& t) -> Result<CondTxnResult> {
          CondTxnResult res;
          res.succeeded = true;
          for (const Compare& c : req.compare) {
            Result<KeyValue> cur = txn_get(t, c.key);
            if (!cur.ok() && cur.code() != StatusCode::kNotFound) return cur.status();
            if (!compare_holds(c, cur)) {
              res.succeeded = false;
              break;
            }
          }
          for (const TxnOp& op : res.succeeded ? req.success : req.failure) {
            Result<TxnOpResult> r = run_op(t, op);
            if (!r.ok()) return r.status();
            res.results.push_back(std::move(r).value());
          }
          return res;
        },
        [](CondTxnResult& r, Revision rev) { r.revision = rev; });
  }

  Result<TxnOpResult> run_op(TxnState& t, const TxnOp& op) {
    TxnOpResult out;
    out.type = op.type;
    const bool ranged = !op.range_end.empty();
    const std::string_view end =
        op.range_end == std::string_view("\0", 1) ? std::string_view() : op.range_end;
    switch (op.type) {
      case TxnOp::Type::kGet: {
        if (!ranged) {
          Result<KeyValue> r = txn_get(t, op.key);
          if (r.ok()) {
            out.kvs.push_back(std::move(r).value());
            out.count = 1;
          } else if (r.code() != StatusCode::kNotFound) {
            return r.status();
          }
          return out;
        }
        Result<ScanResult> r = txn_scan(t, op.key, end, op.scan);
        if (!r.ok()) return r.status();
        out.kvs = std::move(r->kvs);
        out.count = r->count;
        out.more = r->more;
        return out;
      }
      case TxnOp::Type::kPut: {
        if (op.prev_kv) {
          Result<KeyValue> r = txn_get(t, op.key);
          if (r.ok()) out.kvs.push_back(std::move(r).value());
        }
        if (Status s = txn_put(t, op.key, op.value); !s.ok()) return s;
        return out;
      }
      case TxnOp::Type::kDelete: {
        Result<DeleteResult> r = delete_in(t, op.key, end, !ranged, op.prev_kv);
        if (!r.ok()) return r.status();
        out.deleted = r->deleted;
        out.kvs = std::move(r->prev_kvs);
        return out;
      }
    }
    return Status(StatusCode::kInternal, "unknown op type");
  }

  // ---------------------------------------------------------------- stats, lifecycle
  EngineStats stats() const {
    EngineStats s;
    s.keys = live_keys_.load(std::memory_order_relaxed);
    s.index_nodes = index_.size();
    s.live_versions = live_versions_.load(std::memory_order_relaxed);
    s.bytes = index_.bytes() + version_bytes_.load(std::memory_order_relaxed);
    s.active_snapshots = registry_.active();
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
    s.gc_sweeps = gc_sweeps_.load(std::memory_order_relaxed);
    s.index_nodes_removed = nodes_removed_.load(std::memory_order_relaxed);
    const kovan::Stats ks = kovan::stats();
    s.kovan_retired = ks.retired;
    s.kovan_reclaimed = ks.reclaimed;
    return s;
  }

  Revision current_revision() const noexcept { return clock_.visible(); }

  std::size_t version_count(std::string_view key) const {
    kovan::Guard g = kovan::pin();
    const KeyNode* n = index_.find(key, g);
    if (n == nullptr) return 0;
    std::size_t c = 0;
    for (const Version* v = n->head.load(g); v != nullptr; v = v->next.load(g)) ++c;
    return c;
  }

  void shutdown() {
    shutdown_.store(true, std::memory_order_release);  // pairs with check_open()'s acquire
    stop_sweeper();
  }

  void user_abort(TxnState& t) {
    abort_locked(t, AbortCause::kUser);
    unregister(t);
  }

 private:
  void sweeper_loop() {
    std::unique_lock lk(sweeper_mu_);
    while (!stop_) {
      sweeper_cv_.wait_for(lk, opts_.sweeper_period, [this] { return stop_; });
      if (stop_) break;
      lk.unlock();
      run_maintenance();
      lk.lock();
    }
    kovan::flush();
  }
  void stop_sweeper() {
    {
      std::lock_guard lk(sweeper_mu_);
      stop_ = true;
    }
    sweeper_cv_.notify_all();
    if (sweeper_.joinable()) sweeper_.join();
  }

  const Options opts_;
  const std::shared_ptr<const Clock> clock_src_;
  SkipList index_;
  CommitClock clock_;
  SnapshotRegistry registry_;

  mutable std::mutex txns_mu_;  // guards txns_; never held while taking a TxnState::mu
  std::unordered_map<std::uint64_t, std::shared_ptr<TxnState>> txns_;
  std::atomic<std::uint64_t> next_id_{kGcOwner + 1};
  std::atomic<bool> shutdown_{false};

  std::atomic<std::uint64_t> live_keys_{0};
  std::atomic<std::uint64_t> live_versions_{0};
  std::atomic<std::uint64_t> version_bytes_{0};
  std::atomic<std::uint64_t> versions_pruned_{0};
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> aborts_conflict_{0};
  std::atomic<std::uint64_t> aborts_expired_{0};
  std::atomic<std::uint64_t> aborts_user_{0};
  std::atomic<std::uint64_t> gc_sweeps_{0};
  std::atomic<std::uint64_t> nodes_removed_{0};

  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool stop_ = false;
  std::thread sweeper_;  // last: started after every member above exists
};

}  // namespace kv::storage::detail

namespace kv::storage {

using detail::TxnState;

// ------------------------------------------------------------------ Transaction
Transaction::Transaction() noexcept = default;
Transaction::Transaction(detail::EngineImpl* engine, std::shared_ptr<TxnState> state) noexcept
    : engine_(engine), state_(std::move(state)) {}
Transaction::Transaction(Transaction&& o) noexcept
    : engine_(std::exchange(o.engine_, nullptr)), state_(std::move(o.state_)) {}
Transaction& Transaction::operator=(Transaction&& o) noexcept {
  if (this != &o) {
    (void)abort_if_active();
    engine_ = std::exchange(o.engine_, nullptr);
    state_ = std::move(o.state_);
  }
  return *this;
}
Transaction::~Transaction() { (void)abort_if_active(); }

bool Transaction::abort_if_active() noexcept {
  if (!state_) return false;
  std::lock_guard lk(state_->mu);
  if (state_->phase != detail::Phase::kActive) return false;
  engine_->user_abort(*state_);
  return true;
}

std::uint64_t Transaction::id() const noexcept { return state_ ? state_->id : 0; }
Isolation Transaction::isolation() const noexcept {
  return state_ ? state_->iso : Isolation::kSerializable;
}
Revision Transaction::snapshot_revision() const noexcept { return state_ ? state_->start_ts : 0; }
bool Transaction::active() const noexcept {
  if (!state_) return false;
  std::lock_guard lk(state_->mu);
  return state_->phase == detail::Phase::kActive;
}

namespace {
Status no_txn() { return Status(StatusCode::kTxnNotFound, "empty transaction handle"); }
}  // namespace

Result<KeyValue> Transaction::get(std::string_view key) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_get(*state_, key);
}
Result<ScanResult> Transaction::scan(std::string_view start, std::string_view end,
                                     const ScanOptions& opts) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_scan(*state_, start, end, opts);
}
Status Transaction::put(std::string_view key, std::string_view value) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_put(*state_, key, value);
}
Status Transaction::del(std::string_view key) {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  return engine_->txn_del(*state_, key);
}
Result<Revision> Transaction::commit() {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  if (Status s = engine_->admit(*state_); !s.ok()) return s;
  Result<Revision> r = engine_->txn_commit(*state_);
  engine_->unregister(*state_);
  return r;
}
Status Transaction::abort() {
  if (!state_) return no_txn();
  std::lock_guard lk(state_->mu);
  switch (state_->phase) {
    case detail::Phase::kActive:
      engine_->user_abort(*state_);
      return Status::Ok();
    case detail::Phase::kExpired:
      return Status(StatusCode::kTxnExpired, "transaction exceeded txn_timeout");
    default:
      return Status(StatusCode::kTxnNotFound, "transaction is no longer active");
  }
}

// ------------------------------------------------------------------ Engine
Engine::Engine(Options options) : impl_(std::make_unique<detail::EngineImpl>(std::move(options))) {}
Engine::~Engine() = default;

Result<KeyValue> Engine::get(std::string_view key) { return impl_->get(key); }
Result<ScanResult> Engine::scan(std::string_view start, std::string_view end,
                                const ScanOptions& opts) {
  return impl_->scan(start, end, opts);
}
Result<PutResult> Engine::put(std::string_view key, std::string_view value, bool prev_kv) {
  return impl_->put(key, value, prev_kv);
}
Result<DeleteResult> Engine::del(std::string_view key, bool prev_kv) {
  return impl_->delete_range(key, {}, true, prev_kv);
}
Result<DeleteResult> Engine::delete_range(std::string_view start, std::string_view end,
                                          bool prev_kv) {
  return impl_->delete_range(start, end, false, prev_kv);
}
Result<CondTxnResult> Engine::txn(const CondTxn& request) { return impl_->txn(request); }
Result<Transaction> Engine::begin(Isolation isolation) { return impl_->begin(isolation); }
Revision Engine::current_revision() const noexcept { return impl_->current_revision(); }
EngineStats Engine::stats() const { return impl_->stats(); }
std::size_t Engine::version_count(std::string_view key) const { return impl_->version_count(key); }
void Engine::run_maintenance() { impl_->run_maintenance(); }
void Engine::shutdown() { impl_->shutdown(); }
const Options& Engine::options() const noexcept { return impl_->options(); }

}  // namespace kv::storage
