// liburcu, QSBR flavour: free read side; every registered thread reports a quiescent state
// after each operation (a load and a compare when no grace period is waiting).
#define _LGPL_SOURCE
#include <urcu/urcu-qsbr.h>

#include "urcu_scheme.hpp"

namespace reclaim_bench {
namespace {

struct Qsbr {
  static constexpr const char* kName = "urcu-qsbr";
  static void read_lock() noexcept { urcu_qsbr_read_lock(); }
  static void read_unlock() noexcept { urcu_qsbr_read_unlock(); }
  static void call_rcu(rcu_head* h, void (*fn)(rcu_head*)) noexcept { urcu_qsbr_call_rcu(h, fn); }
  static void register_thread() noexcept { urcu_qsbr_register_thread(); }
  static void unregister_thread() noexcept { urcu_qsbr_unregister_thread(); }
  static void quiescent_state() noexcept { urcu_qsbr_quiescent_state(); }
  // A registered QSBR thread is online; rcu_barrier() must not wait on its own quiescent state.
  static void barrier() noexcept {
    urcu_qsbr_thread_offline();
    urcu_qsbr_barrier();
    urcu_qsbr_thread_online();
  }
};

}  // namespace

RunResult run_urcu_qsbr(const RunConfig& cfg) { return run_scheme<UrcuScheme<Qsbr, 3>>(cfg); }

}  // namespace reclaim_bench
