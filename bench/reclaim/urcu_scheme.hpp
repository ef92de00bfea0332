// bench/reclaim/urcu_scheme.hpp — liburcu as a benchmark scheme. Include after the flavour's
// own header (urcu/urcu-memb.h or urcu/urcu-qsbr.h, with _LGPL_SOURCE so that the read side
// is inlined) and instantiate with a Flavor that names that flavour's functions.
//
// Readers take the flavour's read lock per operation; writers retire with call_rcu (the
// flavour's worker thread runs the deletions after a grace period); QSBR threads report a
// quiescent state after every operation. drain() waits for every queued callback.
#pragma once

#include "harness.hpp"
#include "raw_slot.hpp"

namespace reclaim_bench {

template <class Flavor, int Id>
struct UrcuScheme {
  static constexpr int kId = Id;
  static constexpr const char* kName = Flavor::kName;

  // rcu_head is the first member of a standard-layout struct, so a pointer to it converts to
  // a pointer to the Base (they are pointer-interconvertible).
  template <class T>
  struct Base {
    rcu_head rcu;
  };
  template <class T>
  using Slot = RawSlot<T>;

  struct Section {
    Section() noexcept { Flavor::read_lock(); }
    ~Section() { Flavor::read_unlock(); }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
  };

  template <class T>
  class Ref : public RawRef<T> {
   public:
    void retire() noexcept {
      Base<T>* b = this->p_;
      Flavor::call_rcu(&b->rcu, &reclaim<T>);
      this->p_ = nullptr;
    }
  };

  template <class T>
  static void reclaim(rcu_head* head) {
    delete static_cast<T*>(reinterpret_cast<Base<T>*>(head));
  }

  static void thread_begin() noexcept { Flavor::register_thread(); }
  static void thread_end() noexcept { Flavor::unregister_thread(); }
  static void op_done() noexcept { Flavor::quiescent_state(); }
  static void drain() noexcept { Flavor::barrier(); }
};

}  // namespace reclaim_bench
