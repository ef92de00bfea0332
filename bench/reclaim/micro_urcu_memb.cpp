// liburcu memb flavour, read side inlined (_LGPL_SOURCE): the cost kovan's pin is compared to.
#define _LGPL_SOURCE
#include <benchmark/benchmark.h>
#include <urcu/urcu-memb.h>

#include <atomic>
#include <cstdint>

namespace {

struct MembNode {
  rcu_head rcu;  // first member: a rcu_head* converts back to the node
  std::uint64_t value = 42;
};

void free_node(rcu_head* h) { delete reinterpret_cast<MembNode*>(h); }

void BM_UrcuMemb_ReadLockUnlock(benchmark::State& state) {
  urcu_memb_register_thread();
  for (auto _ : state) {
    urcu_memb_read_lock();
    benchmark::ClobberMemory();
    urcu_memb_read_unlock();
  }
  urcu_memb_unregister_thread();
  // With the membarrier system call the read side is compiler barriers only; without it,
  // liburcu falls back to full fences.
  state.SetLabel(urcu_memb_has_sys_membarrier ? "sys_membarrier" : "fences (no sys_membarrier)");
}
BENCHMARK(BM_UrcuMemb_ReadLockUnlock)->ThreadRange(1, 2)->UseRealTime();

void BM_UrcuMemb_LockLoadUnlock(benchmark::State& state) {
  static std::atomic<MembNode*> cell{new MembNode()};
  urcu_memb_register_thread();
  for (auto _ : state) {
    urcu_memb_read_lock();
    MembNode* p = cell.load(std::memory_order_acquire);  // what rcu_dereference amounts to
    benchmark::DoNotOptimize(p->value);
    urcu_memb_read_unlock();
  }
  urcu_memb_unregister_thread();
}
BENCHMARK(BM_UrcuMemb_LockLoadUnlock)->ThreadRange(1, 2)->UseRealTime();

// Allocation plus call_rcu (the flavour's worker thread frees after a grace period).
void BM_UrcuMemb_NewCallRcu(benchmark::State& state) {
  urcu_memb_register_thread();
  for (auto _ : state) {
    auto* n = new MembNode();
    benchmark::DoNotOptimize(n);
    urcu_memb_call_rcu(&n->rcu, &free_node);
  }
  urcu_memb_barrier();
  urcu_memb_unregister_thread();
}
BENCHMARK(BM_UrcuMemb_NewCallRcu);

}  // namespace
