// Micro benchmarks of kovan's read and retire paths, next to a plain acquire load and
// new/delete. The liburcu and xenium counterparts are in micro_urcu_*.cpp and micro_xenium.cpp.
#include <benchmark/benchmark.h>
#include <kovan/kovan.hpp>

#include <atomic>
#include <cstdint>

namespace {

struct MicroNode : kovan::Node {
  std::uint64_t value = 42;
};

// One shared node for the load benchmarks; it is never retired.
kovan::Atomic<MicroNode>& shared_cell() {
  static kovan::Atomic<MicroNode> cell{new MicroNode()};
  return cell;
}

void BM_Kovan_PinUnpin(benchmark::State& state) {
  for (auto _ : state) {
    kovan::Guard g = kovan::pin();
    benchmark::DoNotOptimize(&g);
  }
}
BENCHMARK(BM_Kovan_PinUnpin)->ThreadRange(1, 2)->UseRealTime();

void BM_Kovan_NestedPinUnpin(benchmark::State& state) {
  kovan::Guard outer = kovan::pin();
  for (auto _ : state) {
    kovan::Guard g = kovan::pin();
    benchmark::DoNotOptimize(&g);
  }
}
BENCHMARK(BM_Kovan_NestedPinUnpin);

void BM_Kovan_ProtectedLoad(benchmark::State& state) {
  kovan::Atomic<MicroNode>& cell = shared_cell();
  kovan::Guard g = kovan::pin();
  for (auto _ : state) {
    MicroNode* p = cell.load(g);
    benchmark::DoNotOptimize(p->value);
  }
}
BENCHMARK(BM_Kovan_ProtectedLoad)->ThreadRange(1, 2)->UseRealTime();

void BM_PlainAcquireLoad(benchmark::State& state) {
  static std::atomic<MicroNode*> cell{new MicroNode()};
  for (auto _ : state) {
    MicroNode* p = cell.load(std::memory_order_acquire);
    benchmark::DoNotOptimize(p->value);
  }
}
BENCHMARK(BM_PlainAcquireLoad)->ThreadRange(1, 2)->UseRealTime();

// One whole read operation: pin, protected load, read, unpin.
void BM_Kovan_PinLoadUnpin(benchmark::State& state) {
  kovan::Atomic<MicroNode>& cell = shared_cell();
  for (auto _ : state) {
    kovan::Guard g = kovan::pin();
    MicroNode* p = cell.load(g);
    benchmark::DoNotOptimize(p->value);
  }
}
BENCHMARK(BM_Kovan_PinLoadUnpin)->ThreadRange(1, 2)->UseRealTime();

void BM_NewDelete(benchmark::State& state) {
  for (auto _ : state) {
    auto* n = new MicroNode();
    benchmark::DoNotOptimize(n);
    delete n;
  }
}
BENCHMARK(BM_NewDelete);

// Allocation plus retire (no guard open: batches are freed as soon as they attach).
void BM_Kovan_NewRetire(benchmark::State& state) {
  for (auto _ : state) {
    auto* n = new MicroNode();
    benchmark::DoNotOptimize(n);
    kovan::retire(n);
  }
  kovan::flush();
}
BENCHMARK(BM_Kovan_NewRetire)->ThreadRange(1, 2)->UseRealTime();

// Retire inside a guard, as lock-free code does (pin, new, retire, unpin).
void BM_Kovan_PinNewRetireUnpin(benchmark::State& state) {
  for (auto _ : state) {
    kovan::Guard g = kovan::pin();
    auto* n = new MicroNode();
    benchmark::DoNotOptimize(n);
    kovan::retire(n);
  }
  kovan::flush();
}
BENCHMARK(BM_Kovan_PinNewRetireUnpin)->ThreadRange(1, 2)->UseRealTime();

}  // namespace
