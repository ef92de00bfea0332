// kovan/detail/dwcas.hpp — 16-byte compare-and-swap on x86-64, emitted inline.
//
// Why this header exists. The wait-free load's request and result words are {pointer, tag}
// pairs that must change together (a stale helper must never install a result into a newer
// request). GCC lowers std::atomic<unsigned __int128> to calls into libatomic, which is not
// lock-free (GCC PR 80878), so we emit `lock cmpxchg16b` ourselves. This is the only place
// in the library that steps outside std::atomic. Every access to a DWord goes through the
// functions below; we never mix 8-byte and 16-byte accesses on the same words, so the
// mixed-size question (reclaimer.md, pitfall 7) does not arise.
//
// Memory order: `lock cmpxchg16b` is a full barrier on x86-64 (it is a locked instruction),
// and the "memory" clobber stops the compiler from moving memory accesses across it. So
// every DWord operation below is sequentially consistent.
//
// Under ThreadSanitizer (KV_TSAN) the same operations go through the __atomic builtins on
// unsigned __int128, which TSan intercepts (__tsan_atomic128_*), so that the
// happens-before edges they create are visible to the race detector.
#pragma once

#include <cstdint>

namespace kovan::detail {

struct alignas(16) DWord {
  std::uint64_t lo;  // the pointer (or a sentinel)
  std::uint64_t hi;  // the tag
  friend bool operator==(const DWord& a, const DWord& b) noexcept {
    return a.lo == b.lo && a.hi == b.hi;
  }
};
static_assert(sizeof(DWord) == 16 && alignof(DWord) == 16);

#if defined(KV_TSAN)
inline bool dwcas(DWord* target, DWord& expected, DWord desired) noexcept {
  auto* t = reinterpret_cast<unsigned __int128*>(target);
  unsigned __int128 e = (static_cast<unsigned __int128>(expected.hi) << 64) | expected.lo;
  unsigned __int128 d = (static_cast<unsigned __int128>(desired.hi) << 64) | desired.lo;
  bool ok = __atomic_compare_exchange_n(t, &e, d, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  if (!ok) {
    expected.lo = static_cast<std::uint64_t>(e);
    expected.hi = static_cast<std::uint64_t>(e >> 64);
  }
  return ok;
}
#elif defined(__x86_64__)
// Returns true and leaves `expected` unchanged when *target == expected (then *target =
// desired); otherwise returns false and writes the current value of *target to `expected`.
inline bool dwcas(DWord* target, DWord& expected, DWord desired) noexcept {
  bool ok;
  __asm__ __volatile__("lock cmpxchg16b %1"
                       : "=@ccz"(ok), "+m"(*target), "+a"(expected.lo), "+d"(expected.hi)
                       : "b"(desired.lo), "c"(desired.hi)
                       : "memory");
  return ok;
}
#else
#error "kovan needs a 16-byte compare-and-swap; only x86-64 is implemented"
#endif

// An atomic 16-byte read. cmpxchg16b with expected == desired either succeeds (writing the
// same value back) or fails and reports the current value; either way `expected` ends up
// holding an atomic snapshot. It takes the cache line exclusively, so it is kept off the
// fast paths (only the slow-path load and helpers use it).
inline DWord dwload(DWord* target) noexcept {
  DWord v{0, 0};
  (void)dwcas(target, v, v);
  return v;
}

// An atomic 16-byte store, as a CAS loop. Used only by a word's owner when no other thread
// can be writing it concurrently with a *different* expectation, so it finishes in at most
// two iterations in practice; correctness does not depend on that.
inline void dwstore(DWord* target, DWord value) noexcept {
  DWord cur = dwload(target);
  while (!dwcas(target, cur, value)) {
  }
}

}  // namespace kovan::detail
