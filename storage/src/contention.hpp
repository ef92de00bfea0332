// storage/src/contention.hpp — fairness under write contention (docs/STORAGE.md, section 3,
// "Contention"): a table of per-key-hash loss streaks that opens a window, doubling with
// every loss, in which fresh one-shot writers keep off a key whose committers keep losing.
// Internal to the engine.
//
// INVARIANTS
// ----------
// H1. The table only delays fresh one-shot writes; it never makes a commit fail and never
//     takes part in a lock or a validation. Any state of it (stale, torn between fields,
//     shared by colliding keys) is safe: the worst case is an extra wait or a missed one.
// H2. A hold-off is bounded: a caller waits at most one cap (kMaxShift doublings of the
//     base) per call, whatever the other threads do, so a one-shot write is delayed, never
//     blocked for good.
// H3. A window opens only after kMinStreak conflict aborts in a row on the slot (since the
//     last prioritized commit, and within kForget of each other), and a prioritized commit
//     on the slot closes it at once.
//
// H4. `lost_any_` is set by the first loss and never cleared: until then no window can be
//     open, and window_open()/hold_off() return without hashing the key or touching a slot
//     (a write that reads it stale just misses a window that opened a moment ago: H1).
//
// Memory orders: every field is relaxed. The fields order no other data (H1): a thread
// that sees an old value waits a little longer or a little less, nothing else.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <thread>

namespace kv::storage::detail {

class HotKeys {
 public:
  static constexpr std::size_t kSlots = 1024;  // a power of two
  static constexpr std::uint32_t kMinStreak = 2;
  static constexpr std::uint32_t kMaxShift = 9;           // the cap: base * 2^9
  static constexpr std::int64_t kForget = 1'000'000'000;  // ns: an older streak restarts

  explicit HotKeys(std::chrono::microseconds base) noexcept
      : base_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(base).count()) {}

  bool enabled() const noexcept { return base_ns_ > 0; }

  // A commit that wrote `key` aborted for a conflict: lengthen the streak, open or widen
  // the window (H3).
  void lost(std::string_view key) noexcept {
    if (!enabled()) return;
    if (!lost_any_.load(std::memory_order_relaxed))
      lost_any_.store(true, std::memory_order_relaxed);
    Slot& s = slot(key);
    const std::int64_t t = now();
    if (t - s.last.load(std::memory_order_relaxed) > kForget) {
      s.streak.store(0, std::memory_order_relaxed);
    }
    s.last.store(t, std::memory_order_relaxed);
    const std::uint32_t n = s.streak.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n < kMinStreak) return;
    const std::uint32_t shift = std::min(n - kMinStreak, kMaxShift);
    s.until.store(t + (base_ns_ << shift), std::memory_order_relaxed);
  }

  // A prioritized commit that wrote `key` succeeded: close its window (H3). Reads first, so
  // that a cold key's slot is not written on every commit.
  void won(std::string_view key) noexcept {
    if (!enabled()) return;
    Slot& s = slot(key);
    if (s.streak.load(std::memory_order_relaxed) == 0) return;
    s.streak.store(0, std::memory_order_relaxed);
    s.until.store(0, std::memory_order_relaxed);
  }

  // Whether a window is open on any of `keys` (a range of pairs whose .first is the key).
  template <class Writes>
  bool window_open(const Writes& keys) const noexcept {
    if (!enabled() || !lost_any_.load(std::memory_order_relaxed)) return false;  // H4
    for (const auto& kv : keys) {
      const Slot& s = slot(kv.first);
      const std::int64_t until = s.until.load(std::memory_order_relaxed);
      if (until != 0 && s.streak.load(std::memory_order_relaxed) != 0 && now() < until) {
        return true;
      }
    }
    return false;
  }

  // Waits while a window is open on any of `keys`, at most one cap in all (H2).
  template <class Writes>
  void hold_off(const Writes& keys) const noexcept {
    std::int64_t deadline = 0;
    for (const auto& kv : keys) {
      const Slot& s = slot(kv.first);
      for (;;) {
        const std::int64_t until = s.until.load(std::memory_order_relaxed);
        if (until == 0 || s.streak.load(std::memory_order_relaxed) == 0) break;
        const std::int64_t t = now();
        if (deadline == 0) deadline = t + (base_ns_ << kMaxShift);
        const std::int64_t end = std::min(until, deadline);
        if (t >= end) break;
        // Sleep in short steps: a prioritized commit closes the window early.
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(std::min<std::int64_t>(end - t, 50'000)));
      }
    }
  }

 private:
  struct alignas(64) Slot {
    std::atomic<std::uint32_t> streak{0};
    std::atomic<std::int64_t> last{0};   // ns, the last conflict abort
    std::atomic<std::int64_t> until{0};  // ns, the window's end (0: never opened or closed)
  };

  static std::int64_t now() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  Slot& slot(std::string_view key) noexcept {
    return slots_[std::hash<std::string_view>{}(key) & (kSlots - 1)];
  }
  const Slot& slot(std::string_view key) const noexcept {
    return slots_[std::hash<std::string_view>{}(key) & (kSlots - 1)];
  }

  const std::int64_t base_ns_;
  std::atomic<bool> lost_any_{false};  // H4; on its own line (read by every fresh write)
  alignas(64) Slot slots_[kSlots];
};

}  // namespace kv::storage::detail
