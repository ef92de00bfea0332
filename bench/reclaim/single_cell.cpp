// kovan-single-cell: the kovan side of the single-cell comparison with crossbeam-epoch
// (bench/scripts/compare-crossbeam.sh runs both; the crossbeam side is
// bench/reclaim/crossbeam/src/main.rs and does exactly the same work).
//
// The workload:
//   * one shared cell holds a pointer to a node {value, magic};
//   * a writer allocates a fresh node, pins, exchanges it into the cell and retires the old
//     one, then unpins;
//   * a reader pins, loads the cell, checks the node's magic, adds its value, unpins.
//
// Two modes:
//   timed  (default)    W writers and R readers for S seconds; write and read rates
//   --stall-ops N       one thread pins a guard and holds it while W writers do N exchanges
//                       in all; unreclaimed = nodes retired - nodes destroyed, counted after
//                       the writers have finished and exited, with the guard still held
//
// One CSV line per run (the same columns as the crossbeam side; --header prints them):
//   impl,config,writers,readers,stall_ops,seconds,writes,reads,writes_per_s,reads_per_s,
//   unreclaimed,errors,vm_hwm_kb
// (vm_hwm_kb: the process's peak resident set, VmHWM in /proc/self/status, at the end.)
//
// Invariants: the cell never holds null; a node is unlinked by exactly one exchange and
// retired once, by the thread whose exchange unlinked it; a node is dereferenced only
// through a pointer that Atomic::load returned under a guard that is still alive.
#include <kovan/kovan.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr std::uint32_t kAlive = 0xA11CEu;
constexpr std::uint32_t kDead = 0xDEADu;

// Destructions counted per thread (no shared cache line on the hot path) and added to the
// total when the thread exits.
std::atomic<std::uint64_t> g_destroyed_total{0};

struct DestroyCount {
  std::uint64_t n = 0;
  // relaxed: the total is read after join(), which orders this add before the read.
  ~DestroyCount() { g_destroyed_total.fetch_add(n, std::memory_order_relaxed); }
};

DestroyCount& destroy_count() noexcept {
  thread_local DestroyCount c;
  return c;
}

// Constructs the calling thread's counter before kovan registers the thread, so that it is
// destroyed after kovan's thread-exit hook (which may still destroy nodes): thread_local
// objects are destroyed in reverse order of construction.
void attach_counter() noexcept { (void)destroy_count(); }

struct CellNode : kovan::Node {
  explicit CellNode(std::uint64_t v) noexcept : value(v) {}
  CellNode(const CellNode&) = delete;
  CellNode& operator=(const CellNode&) = delete;
  ~CellNode() {
    magic.store(kDead, std::memory_order_relaxed);
    ++destroy_count().n;
  }
  std::uint64_t value;
  // Atomic only so that the destructor's store is not removed as a dead store.
  std::atomic<std::uint32_t> magic{kAlive};
};

// One write: a fresh node, allocated before the pin (as the crossbeam side does).
void write_once(kovan::Atomic<CellNode>& cell, std::uint64_t value) {
  auto* fresh = new CellNode(value);
  kovan::Guard g = kovan::pin();
  // acq_rel (the default): release publishes the fresh node to readers' acquire loads;
  // acquire orders our retire after the previous writer's publication of `old`.
  CellNode* old = cell.exchange(fresh, g);
  kovan::retire(old);
}

// One read; returns whether the node was alive.
bool read_once(const kovan::Atomic<CellNode>& cell, std::uint64_t& sink) {
  kovan::Guard g = kovan::pin();
  const CellNode* n = cell.load(g);  // acquire; protected while g lives
  sink += n->value;
  return n->magic.load(std::memory_order_relaxed) == kAlive;
}

struct Config {
  std::string name = "run";
  int writers = 2;
  int readers = 0;
  double seconds = 1.0;
  std::uint64_t stall_ops = 0;
  bool header = false;
};

struct Totals {
  std::uint64_t writes = 0;
  std::uint64_t reads = 0;
  std::uint64_t errors = 0;
  double seconds = 0;
  std::uint64_t unreclaimed = 0;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: kovan-single-cell [--config NAME] [--writers W] [--readers R] "
               "[--seconds S]\n"
               "                         [--stall-ops N] [--header]\n");
  std::exit(2);
}

template <class T>
T parse_number(const char* s) {
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || v < 0) usage();
  return static_cast<T>(v);
}

Config parse_args(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--header") {
      c.header = true;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--config")
      c.name = v;
    else if (a == "--writers")
      c.writers = parse_number<int>(v);
    else if (a == "--readers")
      c.readers = parse_number<int>(v);
    else if (a == "--seconds")
      c.seconds = parse_number<double>(v);
    else if (a == "--stall-ops")
      c.stall_ops = parse_number<std::uint64_t>(v);
    else
      usage();
  }
  if (c.writers <= 0 || c.seconds <= 0) usage();
  return c;
}

struct alignas(64) ThreadResult {
  std::uint64_t ops = 0;
  std::uint64_t errors = 0;
  std::uint64_t sink = 0;
};

Totals run_timed(const Config& c, kovan::Atomic<CellNode>& cell) {
  using Clock = std::chrono::steady_clock;
  std::atomic<bool> stop{false};
  std::barrier start(c.writers + c.readers + 1);
  std::vector<ThreadResult> res(static_cast<std::size_t>(c.writers + c.readers));
  std::vector<std::thread> threads;
  for (int w = 0; w < c.writers; ++w) {
    threads.emplace_back([&, w] {
      attach_counter();
      start.arrive_and_wait();
      std::uint64_t ops = 0;
      // relaxed: the flag only ends the loop; join() orders the results.
      while (!stop.load(std::memory_order_relaxed)) {
        write_once(cell, (static_cast<std::uint64_t>(w) << 48) | ops);
        ++ops;
      }
      res[static_cast<std::size_t>(w)].ops = ops;
    });
  }
  for (int r = 0; r < c.readers; ++r) {
    threads.emplace_back([&, r] {
      attach_counter();
      start.arrive_and_wait();
      ThreadResult& me = res[static_cast<std::size_t>(c.writers + r)];
      std::uint64_t ops = 0, errors = 0, sink = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!read_once(cell, sink)) ++errors;
        ++ops;
      }
      me.ops = ops;
      me.errors = errors;
      me.sink = sink;
    });
  }
  start.arrive_and_wait();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  stop.store(true, std::memory_order_relaxed);
  Totals t;
  t.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& th : threads) th.join();
  for (int i = 0; i < c.writers + c.readers; ++i) {
    const ThreadResult& r = res[static_cast<std::size_t>(i)];
    (i < c.writers ? t.writes : t.reads) += r.ops;
    t.errors += r.errors;
  }
  return t;
}

Totals run_stalled(const Config& c, kovan::Atomic<CellNode>& cell) {
  using Clock = std::chrono::steady_clock;
  std::barrier held(2);
  std::barrier release(2);
  bool stalled_alive = false;
  std::thread staller([&] {
    attach_counter();
    kovan::Guard g = kovan::pin();
    const CellNode* n = cell.load(g);
    stalled_alive = n->magic.load(std::memory_order_relaxed) == kAlive;
    held.arrive_and_wait();
    release.arrive_and_wait();
  });
  held.arrive_and_wait();  // the guard is pinned before any writer starts
  // relaxed: every thread that added to the total so far has been joined.
  const std::uint64_t destroyed0 = g_destroyed_total.load(std::memory_order_relaxed);
  const auto t0 = Clock::now();
  const auto nw = static_cast<std::uint64_t>(c.writers);
  const std::uint64_t per = c.stall_ops / nw;
  const std::uint64_t extra = c.stall_ops % nw;
  std::vector<std::thread> writers;
  for (std::uint64_t w = 0; w < nw; ++w) {
    const std::uint64_t n = per + (w < extra ? 1 : 0);
    writers.emplace_back([&cell, w, n] {
      attach_counter();
      for (std::uint64_t i = 0; i < n; ++i) write_once(cell, (w << 48) | i);
    });
  }
  for (auto& th : writers) th.join();
  Totals t;
  t.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t.writes = c.stall_ops;
  // The writers have exited: their destruction counts are in the total (join orders them).
  const std::uint64_t destroyed = g_destroyed_total.load(std::memory_order_relaxed) - destroyed0;
  t.unreclaimed = t.writes > destroyed ? t.writes - destroyed : 0;
  release.arrive_and_wait();
  staller.join();
  if (!stalled_alive) ++t.errors;
  return t;
}

// Peak resident set in KiB (0 where /proc is unavailable).
std::uint64_t vm_hwm_kb() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "VmHWM: %llu", &kb) == 1) break;
  std::fclose(f);
  return kb;
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse_args(argc, argv);
  attach_counter();
  kovan::Atomic<CellNode> cell{new CellNode(0)};
  const Totals t = c.stall_ops > 0 ? run_stalled(c, cell) : run_timed(c, cell);
  if (c.header)
    std::printf(
        "impl,config,writers,readers,stall_ops,seconds,writes,reads,writes_per_s,"
        "reads_per_s,unreclaimed,errors,vm_hwm_kb\n");
  std::printf(
      "kovan,%s,%d,%d,%llu,%.3f,%llu,%llu,%.0f,%.0f,%llu,%llu,%llu\n", c.name.c_str(), c.writers,
      c.stall_ops > 0 ? 0 : c.readers, static_cast<unsigned long long>(c.stall_ops), t.seconds,
      static_cast<unsigned long long>(t.writes), static_cast<unsigned long long>(t.reads),
      static_cast<double>(t.writes) / t.seconds, static_cast<double>(t.reads) / t.seconds,
      static_cast<unsigned long long>(t.unreclaimed), static_cast<unsigned long long>(t.errors),
      static_cast<unsigned long long>(vm_hwm_kb()));
  std::fflush(stdout);
  // Single-threaded from here: the last node was never retired.
  delete cell.load_unprotected(std::memory_order_acquire);
  kovan::flush();
  if (t.errors != 0) {
    std::fprintf(stderr, "kovan-single-cell: %llu reads saw a destroyed node\n",
                 static_cast<unsigned long long>(t.errors));
    return 1;
  }
  return 0;
}
