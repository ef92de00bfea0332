// bench/reclaim/harness.hpp — the IBR-style reclaimer benchmark, written once for every scheme.
//
// A *scheme* is a small adapter type (see schemes.hpp) that gives the data structures below
// the same five words whatever the reclaimer underneath:
//
//   S::kId, S::kName                  counter index and the name printed in the CSV
//   S::Base<T>                        the header a reclaimable node derives from (first base)
//   S::Slot<T>                        a shared pointer: load_raw(order), store(p, order),
//                                     cas(section, expected, desired)
//   S::Section                        RAII critical section for one operation (a pin / read
//                                     lock / nothing)
//   S::Ref<T>                         a protected reference: protect(section, slot) returns a
//                                     pointer safe to dereference while the Ref and Section
//                                     live; retire() hands the referenced node to the reclaimer
//   S::thread_begin/thread_end/op_done/drain
//                                     registration, quiescent states (QSBR), end-of-run cleanup
//
// Unreclaimed objects are counted the same way for every scheme, with our own counters and
// not the libraries' statistics: `retired` is bumped when the benchmark hands a node to the
// scheme, `destroyed` in the node's destructor (only for nodes that were retired), so
// unreclaimed = retired - destroyed is comparable across schemes.
//
// Invariants of the data structures:
//  * A node is published (made reachable) by exactly one successful CAS and unlinked by
//    exactly one successful CAS; only the thread whose CAS unlinked it retires it, once.
//  * Nodes are immutable after publication (Treiber node: value and next; map bucket: keys,
//    values, count). Readers therefore need only the protection of the pointer they loaded.
//  * A node is dereferenced only through a Ref whose protect() returned it, within the
//    Section that Ref was protected in.
#pragma once

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace reclaim_bench {

// ---------------------------------------------------------------------------------------
// Configuration and results
// ---------------------------------------------------------------------------------------
enum class Ds { kStack, kMap };

struct RunConfig {
  Ds ds = Ds::kMap;
  int read_pct = 90;  // the rest is split evenly between insert/push and remove/pop
  int threads = 1;    // worker threads (a stalled thread comes on top)
  bool stall = false;
  double seconds = 1.0;
  std::uint64_t max_retired = 0;  // stop early once this many nodes were retired (0: never)
  int sample_ms = 10;             // main-thread sampling period (max and time series)
  std::uint64_t key_range = 65536;
  std::uint64_t stack_prefill = 1024;
};

struct Sample {
  double t;                   // seconds since the start of the run
  std::uint64_t retired;      // retired since the start of the run
  std::uint64_t unreclaimed;  // retired - destroyed, process-wide for this scheme
};

struct RunResult {
  double seconds = 0;
  std::uint64_t ops = 0;
  double avg_unreclaimed = 0;  // sampled by the workers every kSampleEvery operations
  std::uint64_t max_unreclaimed = 0;
  std::uint64_t retired = 0;
  std::uint64_t errors = 0;  // reads that found a destroyed node (must stay 0)
  std::vector<Sample> series;
};

using RunFn = RunResult (*)(const RunConfig&);

// ---------------------------------------------------------------------------------------
// Counters. One cache-line-aligned block per live thread, written only by its owner; blocks
// are reused after a thread exits (their totals carry on). Readers sum the blocks.
// ---------------------------------------------------------------------------------------
inline constexpr int kMaxSchemes = 8;
inline constexpr int kMaxCounterBlocks = 256;

struct alignas(64) CounterBlock {
  std::atomic<bool> in_use{false};
  std::array<std::atomic<std::uint64_t>, kMaxSchemes> retired{};
  std::array<std::atomic<std::uint64_t>, kMaxSchemes> destroyed{};
};

class Counters {
 public:
  // Claims the calling thread's block. Call first thing in every thread that touches nodes,
  // so that the block outlives the reclaimers' own thread-exit hooks (thread_local objects
  // are destroyed in reverse order of construction), which may still delete nodes.
  static void attach() noexcept { (void)local(); }
  static void add_retired(int scheme) noexcept { bump(local().retired[scheme]); }
  static void add_destroyed(int scheme) noexcept { bump(local().destroyed[scheme]); }
  static std::uint64_t retired(int scheme) noexcept { return sum(scheme, true); }
  // A snapshot: destroyed is summed before retired so that the difference is rarely
  // negative (relaxed reads of different blocks can still be out of order; clamped at 0).
  static std::uint64_t unreclaimed(int scheme) noexcept {
    const std::uint64_t d = sum(scheme, false);
    const std::uint64_t r = sum(scheme, true);
    return r > d ? r - d : 0;
  }

 private:
  struct Holder {
    CounterBlock* block;
    Holder() noexcept : block(claim()) {}
    // Pairs with the acquire CAS in claim(): the next owner continues from these totals.
    ~Holder() { block->in_use.store(false, std::memory_order_release); }
  };
  static CounterBlock& local() noexcept {
    thread_local Holder holder;
    return *holder.block;
  }
  // Owner-only counter: a plain read-modify-write without a locked instruction.
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  static CounterBlock* claim() noexcept;
  static std::uint64_t sum(int scheme, bool retired) noexcept;
  static std::array<CounterBlock, kMaxCounterBlocks> blocks_;
  static std::atomic<int> high_water_;
};

// Magic value checked by readers; overwritten in the destructor.
inline constexpr std::uint32_t kAlive = 0xA11CEu;
inline constexpr std::uint32_t kDead = 0xDEADu;

// Bookkeeping every benchmark node carries (after the scheme's header).
template <int Id>
struct Tracked {
  Tracked() noexcept = default;
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    magic.store(kDead, std::memory_order_relaxed);
    if (retired) Counters::add_destroyed(Id);
  }
  bool alive() const noexcept { return magic.load(std::memory_order_relaxed) == kAlive; }

  // Atomic only so that the destructor's store is not removed as a dead store.
  std::atomic<std::uint32_t> magic{kAlive};
  // Written by the retiring thread before the node is handed over; read by the destructor,
  // which runs after the scheme's hand-off (a happens-before edge inside every scheme).
  bool retired = false;
};

// Marks a node retired, counts it, and hands it to the scheme through its Ref.
template <class S, class T>
void retire_ref(typename S::template Ref<T>& ref) noexcept {
  T* p = ref.get();
  p->retired = true;
  Counters::add_retired(S::kId);
  ref.retire();
}

struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) noexcept : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() noexcept {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
};

struct alignas(64) WorkerStats {
  std::uint64_t ops = 0;
  std::uint64_t errors = 0;
  std::uint64_t sink = 0;  // values read, so that reads are not optimized away
  double unreclaimed_sum = 0;
  std::uint64_t samples = 0;
};

// ---------------------------------------------------------------------------------------
// Treiber stack. Reads are peeks at the top node.
// ---------------------------------------------------------------------------------------
template <class S>
struct StackNode : S::template Base<StackNode<S>>, Tracked<S::kId> {
  explicit StackNode(std::uint64_t v) noexcept : value(v) {}
  std::uint64_t value;
  StackNode* next = nullptr;  // immutable once the node is published
};

template <class S>
class TreiberStack {
 public:
  using Node = StackNode<S>;
  using Slot = typename S::template Slot<Node>;
  using Ref = typename S::template Ref<Node>;
  using Section = typename S::Section;

  explicit TreiberStack(const RunConfig& cfg) : cfg_(cfg) {}
  TreiberStack(const TreiberStack&) = delete;
  TreiberStack& operator=(const TreiberStack&) = delete;
  ~TreiberStack() {  // single-threaded: every worker has joined
    Node* n = top_.load_raw(std::memory_order_acquire);
    while (n != nullptr) {
      Node* next = n->next;
      delete n;
      n = next;
    }
  }

  void prefill(Rng& rng) {
    for (std::uint64_t i = 0; i < cfg_.stack_prefill; ++i) push(rng.next());
  }

  void op(Rng& rng, WorkerStats& st) {
    const int r = static_cast<int>(rng.next() % 100);
    if (r < cfg_.read_pct) {
      peek(st);
    } else if (r < cfg_.read_pct + (100 - cfg_.read_pct) / 2) {
      push(rng.next());
    } else {
      pop(st);
    }
  }

  // Holds a protected reference to the top node until wait() returns.
  template <class Wait>
  void stall(Wait&& wait) {
    Section s;
    Ref r;
    (void)r.protect(s, top_);
    wait();
  }

 private:
  void peek(WorkerStats& st) {
    Section s;
    Ref r;
    Node* t = r.protect(s, top_);
    if (t == nullptr) return;
    if (!t->alive()) ++st.errors;
    st.sink += t->value;
  }

  void push(std::uint64_t v) {
    Node* n = new Node(v);
    Section s;
    Node* t = top_.load_raw(std::memory_order_relaxed);
    do {
      n->next = t;  // plain write, published by the release CAS below
    } while (!top_.cas(s, t, n));
  }

  void pop(WorkerStats& st) {
    Section s;
    Ref r;
    for (;;) {
      Node* t = r.protect(s, top_);
      if (t == nullptr) return;
      if (!t->alive()) ++st.errors;
      Node* expected = t;
      // No ABA: t is protected, so it cannot be freed and reused while we hold it.
      if (top_.cas(s, expected, t->next)) {
        st.sink += t->value;
        retire_ref<S, Node>(r);
        return;
      }
    }
  }

  const RunConfig& cfg_;
  Slot top_;
};

// ---------------------------------------------------------------------------------------
// Lock-free hash map with copy-on-write buckets: each bucket is one immutable node holding up
// to kCap sorted-free (key, value) pairs; a write copies the bucket, CASes the bucket pointer
// and retires the old node. Reads are one protected load. Insert into a full bucket fails
// (with the default load of about one key per bucket this does not happen in practice).
// ---------------------------------------------------------------------------------------
template <class S>
struct Bucket : S::template Base<Bucket<S>>, Tracked<S::kId> {
  static constexpr std::uint32_t kCap = 8;
  std::uint32_t n = 0;
  std::array<std::uint64_t, kCap> keys{};
  std::array<std::uint64_t, kCap> vals{};

  int find(std::uint64_t k) const noexcept {
    for (std::uint32_t i = 0; i < n; ++i)
      if (keys[i] == k) return static_cast<int>(i);
    return -1;
  }
};

template <class S>
class HashMap {
 public:
  using Node = Bucket<S>;
  using Slot = typename S::template Slot<Node>;
  using Ref = typename S::template Ref<Node>;
  using Section = typename S::Section;

  explicit HashMap(const RunConfig& cfg)
      : cfg_(cfg),
        nbuckets_(cfg.key_range / 2 > 0 ? cfg.key_range / 2 : 1),
        slots_(std::make_unique<Slot[]>(nbuckets_)) {}
  HashMap(const HashMap&) = delete;
  HashMap& operator=(const HashMap&) = delete;
  ~HashMap() {  // single-threaded: every worker has joined
    for (std::size_t i = 0; i < nbuckets_; ++i)
      delete slots_[i].load_raw(std::memory_order_acquire);
  }

  // Half of the key range, so about one key per bucket.
  void prefill(Rng& rng) {
    std::uint64_t inserted = 0;
    while (inserted < cfg_.key_range / 2)
      if (insert(rng.next() % cfg_.key_range, 1)) ++inserted;
  }

  void op(Rng& rng, WorkerStats& st) {
    const int r = static_cast<int>(rng.next() % 100);
    const std::uint64_t k = rng.next() % cfg_.key_range;
    if (r < cfg_.read_pct) {
      get(k, st);
    } else if (r < cfg_.read_pct + (100 - cfg_.read_pct) / 2) {
      (void)insert(k, k);
    } else {
      (void)remove(k, st);
    }
  }

  // Holds a protected reference to the first non-empty bucket until wait() returns.
  template <class Wait>
  void stall(Wait&& wait) {
    Section s;
    Ref r;
    for (std::size_t i = 0; i < nbuckets_; ++i)
      if (r.protect(s, slots_[i]) != nullptr) break;
    wait();
  }

 private:
  Slot& slot_for(std::uint64_t k) noexcept { return slots_[k % nbuckets_]; }

  void get(std::uint64_t k, WorkerStats& st) {
    Section s;
    Ref r;
    const Node* b = r.protect(s, slot_for(k));
    if (b == nullptr) return;
    if (!b->alive()) ++st.errors;
    const int i = b->find(k);
    if (i >= 0) st.sink += b->vals[static_cast<std::size_t>(i)];
  }

  bool insert(std::uint64_t k, std::uint64_t v) {
    Slot& slot = slot_for(k);
    Section s;
    Ref r;
    for (;;) {
      Node* b = r.protect(s, slot);
      if (b != nullptr && (b->find(k) >= 0 || b->n == Node::kCap)) return false;
      Node* nb = new Node();
      if (b != nullptr) {
        nb->n = b->n;
        nb->keys = b->keys;
        nb->vals = b->vals;
      }
      nb->keys[nb->n] = k;
      nb->vals[nb->n] = v;
      ++nb->n;
      Node* expected = b;
      if (slot.cas(s, expected, nb)) {
        if (b != nullptr) retire_ref<S, Node>(r);
        return true;
      }
      delete nb;  // never published
    }
  }

  bool remove(std::uint64_t k, WorkerStats& st) {
    Slot& slot = slot_for(k);
    Section s;
    Ref r;
    for (;;) {
      Node* b = r.protect(s, slot);
      if (b == nullptr) return false;
      if (!b->alive()) ++st.errors;
      const int i = b->find(k);
      if (i < 0) return false;
      Node* nb = nullptr;
      if (b->n > 1) {
        nb = new Node();
        for (std::uint32_t j = 0; j < b->n; ++j) {
          if (static_cast<int>(j) == i) continue;
          nb->keys[nb->n] = b->keys[j];
          nb->vals[nb->n] = b->vals[j];
          ++nb->n;
        }
      }
      Node* expected = b;
      if (slot.cas(s, expected, nb)) {
        retire_ref<S, Node>(r);
        return true;
      }
      delete nb;  // never published (delete of nullptr is a no-op)
    }
  }

  const RunConfig& cfg_;
  std::size_t nbuckets_;
  std::unique_ptr<Slot[]> slots_;
};

// ---------------------------------------------------------------------------------------
// One run: prefill, optional stalled thread, workers for cfg.seconds, sampling, cleanup.
// ---------------------------------------------------------------------------------------
inline constexpr std::uint64_t kSampleEvery = 1024;  // worker-side unreclaimed sampling

template <class S, class DS>
RunResult run_one(const RunConfig& cfg) {
  using Clock = std::chrono::steady_clock;
  Counters::attach();
  RunResult res;
  {
    DS ds(cfg);
    {
      S::thread_begin();
      Rng rng(12345);
      ds.prefill(rng);
      S::thread_end();
    }

    std::atomic<bool> stop{false};
    std::vector<WorkerStats> stats(static_cast<std::size_t>(cfg.threads));
    std::latch stalled(cfg.stall ? 1 : 0);
    std::barrier start(cfg.threads + 1);

    std::thread staller;
    if (cfg.stall) {
      staller = std::thread([&] {
        Counters::attach();
        S::thread_begin();
        ds.stall([&] {
          stalled.count_down();
          stop.wait(false, std::memory_order_acquire);  // blocks until the run ends
        });
        S::thread_end();
      });
    }
    stalled.wait();  // the stall is in place before any worker starts

    std::vector<std::thread> workers;
    for (int t = 0; t < cfg.threads; ++t) {
      workers.emplace_back([&, t] {
        Counters::attach();
        S::thread_begin();
        Rng rng(static_cast<std::uint64_t>(t) + 1);
        WorkerStats& st = stats[static_cast<std::size_t>(t)];
        start.arrive_and_wait();
        std::uint64_t ops = 0;
        // relaxed: the flag only ends the loop; join() orders the results.
        while (!stop.load(std::memory_order_relaxed)) {
          ds.op(rng, st);
          S::op_done();
          if ((++ops % kSampleEvery) == 0) {
            st.unreclaimed_sum += static_cast<double>(Counters::unreclaimed(S::kId));
            ++st.samples;
          }
        }
        st.ops = ops;
        S::thread_end();
      });
    }

    const std::uint64_t retired0 = Counters::retired(S::kId);
    start.arrive_and_wait();
    const auto t0 = Clock::now();
    const auto t_end = t0 + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(cfg.seconds));
    auto next = t0;
    for (;;) {
      next += std::chrono::milliseconds(cfg.sample_ms);
      std::this_thread::sleep_until(next < t_end ? next : t_end);
      const auto now = Clock::now();
      const std::uint64_t unrec = Counters::unreclaimed(S::kId);
      const std::uint64_t retired = Counters::retired(S::kId) - retired0;
      res.series.push_back({std::chrono::duration<double>(now - t0).count(), retired, unrec});
      if (unrec > res.max_unreclaimed) res.max_unreclaimed = unrec;
      if (now >= t_end || (cfg.max_retired != 0 && retired >= cfg.max_retired)) break;
    }
    // release: pairs with the stalled thread's acquire wait (it then leaves its section).
    stop.store(true, std::memory_order_release);
    stop.notify_all();
    const auto t1 = Clock::now();
    for (auto& w : workers) w.join();
    if (staller.joinable()) staller.join();

    res.seconds = std::chrono::duration<double>(t1 - t0).count();
    res.retired = Counters::retired(S::kId) - retired0;
    double usum = 0;
    std::uint64_t samples = 0;
    for (const auto& st : stats) {
      res.ops += st.ops;
      res.errors += st.errors;
      usum += st.unreclaimed_sum;
      samples += st.samples;
    }
    res.avg_unreclaimed = samples > 0 ? usum / static_cast<double>(samples) : 0.0;

    S::thread_begin();
    S::drain();
    S::thread_end();
  }  // the structure is destroyed here; its live nodes were never retired
  return res;
}

template <class S>
RunResult run_scheme(const RunConfig& cfg) {
  return cfg.ds == Ds::kStack ? run_one<S, TreiberStack<S>>(cfg) : run_one<S, HashMap<S>>(cfg);
}

// One entry point per scheme, each in its own translation unit (the liburcu flavours cannot
// share one).
RunResult run_leak(const RunConfig& cfg);
RunResult run_kovan(const RunConfig& cfg);
RunResult run_urcu_memb(const RunConfig& cfg);
RunResult run_urcu_qsbr(const RunConfig& cfg);
RunResult run_xenium_ebr(const RunConfig& cfg);
RunResult run_xenium_hp(const RunConfig& cfg);
RunResult run_xenium_he(const RunConfig& cfg);

}  // namespace reclaim_bench
