// xenium 0.0.2: epoch_based<> (EBR), hazard_pointer<> (HP) and hazard_eras<> (HE) with their
// default policies. Nodes derive from R::enable_concurrent_ptr<T>; a protected reference is
// a guard_ptr, and retiring is guard_ptr::reclaim().
#include <xenium/reclamation/generic_epoch_based.hpp>
#include <xenium/reclamation/hazard_eras.hpp>
#include <xenium/reclamation/hazard_pointer.hpp>

#include "harness.hpp"

namespace reclaim_bench {
namespace {

template <class R, int Id, const char* Name>
struct Xenium {
  static constexpr int kId = Id;
  static constexpr const char* kName = Name;

  template <class T>
  using Base = typename R::template enable_concurrent_ptr<T>;

  // epoch_based<> uses region_extension::none: a critical region lasts while a guard_ptr is
  // held, so the region_guard is empty. The hazard schemes have no regions.
  struct Section {
    typename R::region_guard region{};
  };

  template <class T>
  class Slot {
   public:
    using Ptr = typename R::template concurrent_ptr<T>;
    using Marked = typename Ptr::marked_ptr;

    T* load_raw(std::memory_order o) const noexcept { return p_.load(o).get(); }
    void store(T* p, std::memory_order o) noexcept { p_.store(Marked(p), o); }
    // acq_rel: release publishes the new node; acquire on failure like a reader's load.
    bool cas(Section& /*section*/, T*& expected, T* desired) noexcept {
      Marked e(expected);
      const bool ok = p_.compare_exchange_strong(e, Marked(desired), std::memory_order_acq_rel,
                                                 std::memory_order_acquire);
      expected = e.get();
      return ok;
    }

    const Ptr& ptr() const noexcept { return p_; }

   private:
    Ptr p_;
  };

  template <class T>
  class Ref {
   public:
    T* protect(Section& /*section*/, const Slot<T>& slot) noexcept {
      guard_.acquire(slot.ptr(), std::memory_order_acquire);
      return guard_.get();
    }
    T* get() const noexcept { return guard_.get(); }
    void retire() noexcept { guard_.reclaim(); }

   private:
    typename Slot<T>::Ptr::guard_ptr guard_;
  };

  static void thread_begin() noexcept {}
  static void thread_end() noexcept {}
  static void op_done() noexcept {}
  static void drain() noexcept {}
};

constexpr char kEbr[] = "xenium-ebr";
constexpr char kHp[] = "xenium-hp";
constexpr char kHe[] = "xenium-he";

using Ebr = Xenium<xenium::reclamation::epoch_based<>, 4, kEbr>;
using Hp = Xenium<xenium::reclamation::hazard_pointer<>, 5, kHp>;
using He = Xenium<xenium::reclamation::hazard_eras<>, 6, kHe>;

}  // namespace

RunResult run_xenium_ebr(const RunConfig& cfg) { return run_scheme<Ebr>(cfg); }
RunResult run_xenium_hp(const RunConfig& cfg) { return run_scheme<Hp>(cfg); }
RunResult run_xenium_he(const RunConfig& cfg) { return run_scheme<He>(cfg); }

}  // namespace reclaim_bench
