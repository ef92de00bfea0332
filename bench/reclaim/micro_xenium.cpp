// xenium: the cost of acquiring and releasing one guard_ptr (enter + protected load + leave)
// under epoch_based<>, hazard_pointer<> and hazard_eras<>, and of retiring through it.
#include <benchmark/benchmark.h>
#include <xenium/reclamation/generic_epoch_based.hpp>
#include <xenium/reclamation/hazard_eras.hpp>
#include <xenium/reclamation/hazard_pointer.hpp>

#include <cstdint>

namespace {

template <class R>
struct XNode : R::template enable_concurrent_ptr<XNode<R>> {
  std::uint64_t value = 42;
};

template <class R>
void BM_Xenium_AcquireReset(benchmark::State& state) {
  using Ptr = typename R::template concurrent_ptr<XNode<R>>;
  static Ptr cell{typename Ptr::marked_ptr(new XNode<R>())};
  typename Ptr::guard_ptr g;
  for (auto _ : state) {
    g.acquire(cell, std::memory_order_acquire);
    XNode<R>* p = g.get();
    if (p != nullptr) benchmark::DoNotOptimize(p->value);
    g.reset();
  }
}

template <class R>
void BM_Xenium_NewReclaim(benchmark::State& state) {
  using Ptr = typename R::template concurrent_ptr<XNode<R>>;
  for (auto _ : state) {
    auto* n = new XNode<R>();
    typename Ptr::guard_ptr g(typename Ptr::marked_ptr{n});
    g.reclaim();
  }
}

using Ebr = xenium::reclamation::epoch_based<>;
using Hp = xenium::reclamation::hazard_pointer<>;
using He = xenium::reclamation::hazard_eras<>;

BENCHMARK_TEMPLATE(BM_Xenium_AcquireReset, Ebr)->ThreadRange(1, 2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Xenium_AcquireReset, Hp)->ThreadRange(1, 2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Xenium_AcquireReset, He)->ThreadRange(1, 2)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Xenium_NewReclaim, Ebr);
BENCHMARK_TEMPLATE(BM_Xenium_NewReclaim, Hp);

}  // namespace
