// kovan: one Guard per operation, protected loads through kovan::Atomic<T>.
#include <kovan/kovan.hpp>

#include "harness.hpp"

namespace reclaim_bench {
namespace {

struct Kovan {
  static constexpr int kId = 1;
  static constexpr const char* kName = "kovan";

  template <class T>
  using Base = kovan::Node;

  struct Section {
    kovan::Guard guard = kovan::pin();
  };

  template <class T>
  class Slot {
   public:
    T* load_raw(std::memory_order o) const noexcept { return a_.load_unprotected(o); }
    void store(T* p, std::memory_order o) noexcept { a_.store(p, o); }
    // acq_rel (kovan's default): release publishes the new node, acquire on success orders
    // later reads of the unlinked node's fields.
    bool cas(Section& s, T*& expected, T* desired) noexcept {
      return a_.compare_exchange_strong(expected, desired, s.guard);
    }

    const kovan::Atomic<T>& atomic() const noexcept { return a_; }

   private:
    kovan::Atomic<T> a_;
  };

  template <class T>
  class Ref {
   public:
    T* protect(Section& s, const Slot<T>& slot) noexcept {
      p_ = slot.atomic().load(s.guard);  // acquire, protected while s.guard lives
      return p_;
    }
    T* get() const noexcept { return p_; }
    void retire() noexcept {
      kovan::retire(p_);
      p_ = nullptr;
    }

   private:
    T* p_ = nullptr;
  };

  static void thread_begin() noexcept {}
  static void thread_end() noexcept {}
  static void op_done() noexcept {}
  static void drain() noexcept { kovan::flush(); }
};

}  // namespace

RunResult run_kovan(const RunConfig& cfg) { return run_scheme<Kovan>(cfg); }

}  // namespace reclaim_bench
