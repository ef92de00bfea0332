// bench/reclaim/raw_slot.hpp — the shared pointer of schemes whose readers need no
// per-pointer protection (no reclamation, RCU): a plain std::atomic<T*>.
#pragma once

#include <atomic>

namespace reclaim_bench {

template <class T>
class RawSlot {
 public:
  RawSlot() noexcept = default;
  RawSlot(const RawSlot&) = delete;
  RawSlot& operator=(const RawSlot&) = delete;

  T* load_raw(std::memory_order o) const noexcept { return p_.load(o); }
  void store(T* p, std::memory_order o) noexcept { p_.store(p, o); }
  // acq_rel: release publishes the new node's contents to readers' acquire loads; acquire
  // on failure orders the reload of `expected` like a reader's load.
  template <class Section>
  bool cas(Section& /*section*/, T*& expected, T* desired) noexcept {
    return p_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel,
                                      std::memory_order_acquire);
  }

 private:
  std::atomic<T*> p_{nullptr};
};

// The reader side of RCU and of no reclamation: an acquire load (pairs with the release CAS
// that published the node), protected by the enclosing read-side section, if any.
template <class T>
class RawRef {
 public:
  template <class Section>
  T* protect(Section& /*section*/, const RawSlot<T>& slot) noexcept {
    p_ = slot.load_raw(std::memory_order_acquire);
    return p_;
  }
  T* get() const noexcept { return p_; }

 protected:
  T* p_ = nullptr;
};

}  // namespace reclaim_bench
