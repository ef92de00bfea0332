// storage/src/snapshots.hpp — the commit clock with its visibility watermark, and the
// registry of active snapshots (the set A of docs/STORAGE.md). Internal to the engine.
//
// INVARIANTS
// ----------
// C1. `last_` is the last commit timestamp handed out; `visible_` (W) <= last_. Every
//     timestamp <= W is finished: its versions are installed (or it aborted and installs
//     nothing). W only grows, one step at a time, and only over finished timestamps.
// C2. A snapshot is always a value of W, so a snapshot never sees part of a commit.
// S1. A snapshot s is adopted only after a slot holding s was published and W was re-read
//     and still equal to s ("publish, then confirm"). Hence a pruner that reads W (= W_b)
//     and then the slots, and does not see s, knows s >= W_b (docs/STORAGE.md, "the
//     registration rule").
// R1. Every slot at index >= hi_ is free or fenced (holds no snapshot, candidate or claim).
//     acquire() claims a slot, then raises hi_ above it before publishing a candidate;
//     shrink() lowers hi_ only over slots it has fenced (CAS 0 -> kFenced, so no acquire()
//     can hold them), and frees them only after lowering. An acquire() that claims a slot
//     freed by a shrink therefore reads (through the freeing store, release/acquire) a hi_ at
//     or after the lowering, and raises it. While a slot is held, no shrink can lower hi_ to
//     or below it, so a collector that reads hi_ after a candidate store scans that slot.
// R2. Only shrink() lowers hi_, one shrink() at a time (the `shrinking_` flag); acquire()
//     only raises it. So hi_ cannot go from h to something else and back to h under a
//     shrink (no ABA on its CAS). The range follows the slots open now: after the top slot is
//     released it shrinks to the highest slot in use (not below kMinRange), so the cost of
//     collect() follows the snapshots open now, not the most ever open at once.
// R3. No shrink is lost to contention: release() frees its slot, then (seq_cst fence) tries
//     the flag; a shrinker drops the flag, then (seq_cst fence) re-checks the top slot and
//     goes again if it is free. By the fences' order one of the two sees the other.
//
// Memory orders: W's loads and updates, the slot stores of registration, and the slot
// and `hi_` loads of collect() are seq_cst: the argument for S1 needs a single total order
// over W and the slots (a store followed by a load of another location — release/acquire
// cannot order that). The ring's done-marks are seq_cst for the same store-then-load shape
// in advance() (see there).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "storage/engine.hpp"

namespace kv::storage::detail {

class CommitClock {
 public:
  static constexpr std::size_t kRing = 4096;  // > the number of commits in flight at once

  CommitClock() : ring_(std::make_unique<std::atomic<Revision>[]>(kRing)) {
    for (std::size_t i = 0; i < kRing; ++i) ring_[i].store(0, std::memory_order_relaxed);
  }

  // Recovery only, before any other use: the store is at revision r (r >= 1).
  void reset(Revision r) noexcept {
    last_.store(r, std::memory_order_relaxed);  // relaxed: no other thread exists yet
    visible_.store(r, std::memory_order_relaxed);
  }

  // The newest fully visible revision (W).
  Revision visible() const noexcept { return visible_.load(std::memory_order_seq_cst); }

  // Hands out the next commit timestamp. seq_cst RMW: a committer's lock acquisitions
  // (sequenced before this) happen-before the validation of any later committer (which
  // reads this clock first) — see commit.cpp, validate().
  Revision acquire() noexcept {
    const Revision ts = last_.fetch_add(1, std::memory_order_seq_cst) + 1;
    // Only possible with >= kRing commits in flight; wait for the ring slot to be reusable.
    while (ts - visible() >= kRing) std::this_thread::yield();
    return ts;
  }

  // Marks `ts` finished (installed or abandoned) and advances W as far as possible.
  void finish(Revision ts) noexcept {
    // seq_cst: store-then-load against advance() of other threads; whichever of two
    // finishers comes second in the total order sees the other's mark, so W never stalls
    // behind a finished timestamp.
    ring_[ts % kRing].store(ts, std::memory_order_seq_cst);
    advance();
  }

  // Returns once W >= ts (every earlier commit has finished too). Bounded by the other
  // committers' install time: they hold no locks while waiting. With a WAL, a committer
  // calls this only after the log reported its record done, and the log is in revision order
  // (wal.hpp L1), so every earlier commit's record is done too: what is left is their wake-up.
  void wait_visible(Revision ts) noexcept {
    for (int spins = 0; visible() < ts; ++spins) {
      advance();
      if (spins > 64) std::this_thread::yield();
    }
  }

 private:
  void advance() noexcept {
    for (;;) {
      Revision w = visible_.load(std::memory_order_seq_cst);
      if (ring_[(w + 1) % kRing].load(std::memory_order_seq_cst) != w + 1) return;
      // seq_cst: W's updates are in the single order with the slot stores of S1.
      visible_.compare_exchange_strong(w, w + 1, std::memory_order_seq_cst);
    }
  }

  std::atomic<Revision> last_{1};  // the empty store is revision 1
  std::atomic<Revision> visible_{1};
  std::unique_ptr<std::atomic<Revision>[]> ring_;
};

class SnapshotRegistry {
 public:
  static constexpr Revision kClaimed = ~Revision{0};  // slot taken, no snapshot yet
  static constexpr Revision kFenced = kClaimed - 1;   // slot held free by shrink()
  static constexpr std::size_t kMinRange = 64;        // shrink() stops here

  explicit SnapshotRegistry(std::size_t capacity)
      : cap_(capacity), slots_(std::make_unique<Slot[]>(capacity)) {}

  // Registers a snapshot (rule S1) and returns it in *snap, the slot in *slot.
  // False when every slot is taken.
  bool acquire(const CommitClock& clock, std::size_t* slot, Revision* snap) noexcept {
    // Start at the slot this thread used last (threads spread over the slots), unless that
    // slot is outside the scanned range: then from the bottom, so as not to raise it again.
    thread_local std::size_t hint = 0;
    const std::size_t start = hint < hi_.load(std::memory_order_relaxed) ? hint : 0;
    std::size_t idx = cap_;
    for (std::size_t i = 0; i < cap_; ++i) {
      const std::size_t c = (start + i) % cap_;
      Revision expected = 0;
      // acquire on success: pairs with the release store that freed a slot fenced by
      // shrink(), so the shrink's lowering of hi_ happens-before our load of hi_ below (R1).
      if (slots_[c].value.load(std::memory_order_relaxed) == 0 &&
          slots_[c].value.compare_exchange_strong(expected, kClaimed, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
        idx = c;
        break;
      }
    }
    if (idx == cap_) return false;
    hint = idx;
    // Raise hi_ before publishing a candidate: a collector that reads a smaller hi_ read it
    // earlier in the total order than our candidate store (seq_cst, pairs with collect()).
    // R1: no value of hi_ <= idx can be written while we hold the slot, so a hi_ > idx read
    // here stays > idx for every later reader.
    std::size_t h = hi_.load(std::memory_order_seq_cst);
    while (h <= idx && !hi_.compare_exchange_weak(h, idx + 1, std::memory_order_seq_cst)) {
    }
    Revision w = clock.visible();  // seq_cst
    for (;;) {
      // seq_cst store, then seq_cst re-read of W (S1): publish, then confirm.
      slots_[idx].value.store(w, std::memory_order_seq_cst);
      const Revision again = clock.visible();
      if (again == w) break;
      w = again;
    }
    *slot = idx;
    *snap = w;
    return true;
  }

  void release(std::size_t slot) noexcept {
    // release: a collector that still sees the old value keeps more than needed (safe).
    slots_[slot].value.store(0, std::memory_order_release);
    // The top slot of a range above the floor: the range may shrink. relaxed: a hint only.
    const std::size_t h = hi_.load(std::memory_order_relaxed);
    if (h > kMinRange && slot + 1 == h) {
      // seq_cst fence: pairs with the fence in shrink() after it drops the flag (R3).
      std::atomic_thread_fence(std::memory_order_seq_cst);
      shrink();
    }
  }

  // Lowers hi_ over the free slots at the top of the range, down to the highest slot in use
  // (never below kMinRange). Safe concurrently with everything; one shrink at a time (R2),
  // and none missed (R3).
  void shrink() noexcept {
    for (;;) {
      // acquire/release: the shrinks are serialized (R2: only one thread ever lowers hi_).
      if (shrinking_.exchange(true, std::memory_order_acquire)) return;
      shrink_once();
      shrinking_.store(false, std::memory_order_release);
      // R3: a release() that found the flag taken left its shrink to us. seq_cst fence:
      // pairs with release()'s; either it sees the flag free, or we see its free slot.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      const std::size_t h = hi_.load(std::memory_order_relaxed);
      if (h <= kMinRange || slots_[h - 1].value.load(std::memory_order_relaxed) != 0) return;
    }
  }

  // Appends every published snapshot. Call after reading W (the pruner's W_b).
  void collect(std::vector<Revision>* out) const {
    const std::size_t h = hi_.load(std::memory_order_seq_cst);  // pairs: acquire()'s raise
    for (std::size_t i = 0; i < h; ++i) {
      // seq_cst: pairs with the candidate stores in acquire() (rule S1).
      const Revision v = slots_[i].value.load(std::memory_order_seq_cst);
      if (v != 0 && v != kClaimed && v != kFenced) out->push_back(v);
    }
  }

  // How many slots collect() scans now (a diagnostic).
  std::size_t scan_range() const noexcept { return hi_.load(std::memory_order_relaxed); }

  std::size_t active() const noexcept {
    std::size_t n = 0;
    const std::size_t h = hi_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < h; ++i) {
      const Revision v = slots_[i].value.load(std::memory_order_relaxed);
      if (v != 0 && v != kFenced) ++n;
    }
    return n;
  }

 private:
  // With `shrinking_` held.
  void shrink_once() noexcept {
    const std::size_t h = hi_.load(std::memory_order_seq_cst);
    std::size_t low = h;
    while (low > kMinRange) {
      Revision expected = 0;
      // relaxed: the fence only needs the slot's own modification order (RMW atomicity):
      // while it is fenced no acquire() can claim it.
      if (!slots_[low - 1].value.compare_exchange_strong(expected, kFenced,
                                                         std::memory_order_relaxed)) {
        break;  // in use (or claimed): the new top
      }
      --low;
    }
    if (low == h) return;
    std::size_t expected = h;
    // seq_cst: in the single order with acquire()'s raises and collect()'s loads (S1). Fails
    // only if an acquire() raised hi_ meanwhile (R2: nobody else lowers it); then the fenced
    // slots are below the new hi_ and are simply freed.
    hi_.compare_exchange_strong(expected, low, std::memory_order_seq_cst);
    for (std::size_t i = low; i < h; ++i) {
      // release: pairs with the claiming CAS in acquire() (R1).
      slots_[i].value.store(0, std::memory_order_release);
    }
  }

  struct alignas(64) Slot {
    std::atomic<Revision> value{0};  // 0 free, kClaimed, or a candidate/adopted snapshot
  };
  const std::size_t cap_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<std::size_t> hi_{0};      // slots at index >= hi_ are free (R1)
  std::atomic<bool> shrinking_{false};  // a shrink() is running (R2)
};

}  // namespace kv::storage::detail
