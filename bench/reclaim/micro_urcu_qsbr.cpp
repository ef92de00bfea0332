// liburcu QSBR flavour: read lock and unlock are empty; the cost moves to quiescent states.
#define _LGPL_SOURCE
#include <benchmark/benchmark.h>
#include <urcu/urcu-qsbr.h>

namespace {

void BM_UrcuQsbr_ReadLockUnlock(benchmark::State& state) {
  urcu_qsbr_register_thread();
  for (auto _ : state) {
    urcu_qsbr_read_lock();
    benchmark::ClobberMemory();
    urcu_qsbr_read_unlock();
  }
  urcu_qsbr_unregister_thread();
}
BENCHMARK(BM_UrcuQsbr_ReadLockUnlock)->ThreadRange(1, 2)->UseRealTime();

// A quiescent state with no grace period waiting (a load and a compare).
void BM_UrcuQsbr_QuiescentState(benchmark::State& state) {
  urcu_qsbr_register_thread();
  for (auto _ : state) {
    urcu_qsbr_quiescent_state();
    benchmark::ClobberMemory();
  }
  urcu_qsbr_unregister_thread();
}
BENCHMARK(BM_UrcuQsbr_QuiescentState)->ThreadRange(1, 2)->UseRealTime();

}  // namespace
