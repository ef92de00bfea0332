// Test objects that count constructions and destructions and carry a canary that the
// destructor overwrites, so a read of a freed object is caught even without ASan.
#pragma once

#include <atomic>
#include <cstdint>

#include "kovan/kovan.hpp"

namespace kovan_test {

inline constexpr std::uint64_t kAlive = 0xA11CEA11CEA11CE5ull;
inline constexpr std::uint64_t kDead = 0xDEADDEADDEADDEADull;

struct Counts {
  static inline std::atomic<std::int64_t> constructed{0};
  static inline std::atomic<std::int64_t> destroyed{0};
  static std::int64_t live() { return constructed.load() - destroyed.load(); }
};

struct Tracked : kovan::Node {
  Tracked() { Counts::constructed.fetch_add(1, std::memory_order_relaxed); }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    canary = kDead;
    Counts::destroyed.fetch_add(1, std::memory_order_relaxed);
  }
  bool alive() const { return canary == kAlive; }
  volatile std::uint64_t canary = kAlive;
};

}  // namespace kovan_test
