// liburcu, "memb" flavour: the read side uses compiler barriers only; grace periods use the
// membarrier system call to order the readers.
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

#include "urcu_scheme.hpp"

namespace reclaim_bench {
namespace {

struct Memb {
  static constexpr const char* kName = "urcu-memb";
  static void read_lock() noexcept { urcu_memb_read_lock(); }
  static void read_unlock() noexcept { urcu_memb_read_unlock(); }
  static void call_rcu(rcu_head* h, void (*fn)(rcu_head*)) noexcept { urcu_memb_call_rcu(h, fn); }
  static void register_thread() noexcept { urcu_memb_register_thread(); }
  static void unregister_thread() noexcept { urcu_memb_unregister_thread(); }
  static void quiescent_state() noexcept {}
  static void barrier() noexcept { urcu_memb_barrier(); }
};

}  // namespace

RunResult run_urcu_memb(const RunConfig& cfg) { return run_scheme<UrcuScheme<Memb, 2>>(cfg); }

}  // namespace reclaim_bench
