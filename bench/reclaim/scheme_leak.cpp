// No reclamation: retired nodes are only remembered (per thread) and deleted after the run,
// when every worker has joined. The speed ceiling of the other schemes.
#include <mutex>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "raw_slot.hpp"

namespace reclaim_bench {
namespace {

using Leaked = std::pair<void*, void (*)(void*)>;

std::mutex g_leaked_mu;  // taken once per thread per run, off the measured path
std::vector<std::vector<Leaked>> g_leaked;

std::vector<Leaked>& local_leaked() {
  thread_local std::vector<Leaked> v;
  return v;
}

struct Leak {
  static constexpr int kId = 0;
  static constexpr const char* kName = "leak";

  template <class T>
  struct Base {};
  template <class T>
  using Slot = RawSlot<T>;
  struct Section {};

  template <class T>
  class Ref : public RawRef<T> {
   public:
    void retire() noexcept {
      local_leaked().emplace_back(this->p_, [](void* p) { delete static_cast<T*>(p); });
      this->p_ = nullptr;
    }
  };

  static void thread_begin() {}
  static void thread_end() {
    auto& v = local_leaked();
    if (v.empty()) return;
    std::lock_guard<std::mutex> lock(g_leaked_mu);
    g_leaked.push_back(std::move(v));
    v.clear();
  }
  static void op_done() noexcept {}
  // Called after every worker joined: nothing can reach the leaked nodes any more.
  static void drain() {
    std::vector<std::vector<Leaked>> all;
    {
      std::lock_guard<std::mutex> lock(g_leaked_mu);
      all.swap(g_leaked);
    }
    for (auto& v : all)
      for (auto& [p, del] : v) del(p);
  }
};

}  // namespace

RunResult run_leak(const RunConfig& cfg) { return run_scheme<Leak>(cfg); }

}  // namespace reclaim_bench
