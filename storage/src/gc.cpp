// storage/src/gc.cpp — interval garbage collection (docs/STORAGE.md, sections 6 and 7):
// pruning a key's version chain under its commit lock (E4), removing the index node of a key
// whose chain became empty (E6), and the sweep over every key that the background sweeper
// and run_maintenance() run.
//
// Memory orders: the pruner takes a key's lock with an acquire CAS (pairs with the last
// committer's release unlock) and gives it back with a release store (pairs with the next
// locker's acquire CAS); every rewrite of a `next` or `head` link is a release store that
// pairs with the guarded acquire loads of readers walking the chain.
#include "engine_impl.hpp"

namespace kv::storage::detail {

GcView EngineImpl::gc_view() {
  GcView v;
  v.floor = clock_.visible();    // W_b first (seq_cst) ...
  registry_.collect(&v.points);  // ... then the slots (seq_cst): rule S1
  std::erase_if(v.points, [&](Revision s) { return s >= v.floor; });
  std::sort(v.points.begin(), v.points.end(), std::greater<>());
  v.points.erase(std::unique(v.points.begin(), v.points.end()), v.points.end());
  return v;
}

void EngineImpl::retire_run(Version* from, const Version* to, const kovan::Guard& g) noexcept {
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
void EngineImpl::prune_key(KeyNode* n, const GcView& view, const kovan::Guard& g) noexcept {
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
  // release: publishes the pruned chain to the next locker (pairs with its acquire CAS).
  n->owner.store(0, std::memory_order_release);
}

void EngineImpl::prune_chain(KeyNode* n, const GcView& view, const kovan::Guard& g) noexcept {
  Version* head = n->head.load(g);
  if (head == nullptr) return;
  if (head->tombstone && head->commit_ts <= view.floor) {
    // E8: a key whose whole history is newer than every registered snapshot older than the
    // floor, and ends in a tombstone that the floor (and so every later snapshot) sees: no
    // registered or future snapshot can read anything but "absent" from it.
    const Version* oldest = head;
    for (const Version* nx = head->next.load(g); nx != nullptr; nx = nx->next.load(g)) {
      oldest = nx;
    }
    if (view.points.empty() || oldest->commit_ts > view.points.front()) {
      if (!view.points.empty() && view.points.back() < head->commit_ts) {
        // A registered snapshot predates the tombstone: a snapshot-isolation writer of it
        // would conflict with the tombstone, and must still (see validate()). release:
        // pairs with the acquire load there (also ordered by the index's link locks).
        Revision h = removed_before_snapshot_.load(std::memory_order_relaxed);
        while (h < head->commit_ts &&
               !removed_before_snapshot_.compare_exchange_weak(
                   h, head->commit_ts, std::memory_order_release, std::memory_order_relaxed)) {
        }
      }
      // release: publishes the empty chain (pairs with guarded acquire loads of head).
      n->head.store(nullptr, std::memory_order_release);
      retire_run(head, nullptr, g);
      return;
    }
  }
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

// Visits every key; the guard is re-taken every kSweepChunk nodes (guards stay short, I1),
// resuming at the first key not yet visited.
void EngineImpl::sweep() {
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

}  // namespace kv::storage::detail
