// Concurrent property tests built on range reads: predicate write skew ("on-call doctors"),
// phantoms, a bank whose balances are read by scans, wide and narrow increments, a hot key
// pruned under constant snapshots, puts racing index-node removal, strictness of commit, and
// snapshots that must repeat their scans while GC runs. Each test states the invariant it checks;
// the mutation list in docs/STORAGE.md ("Mutations and the tests that catch them") names the engine
// bug each one exists to catch.
//
// Threads start together on a latch or barrier (or spin until their partner arrives);
// nothing is ordered by sleeping. Each test is sized to take a few seconds at most on a
// loaded two-core machine.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <latch>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

// Sanitizer builds run each test on a quarter of the work (they are 5-20x slower).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
constexpr int scaled(int n) { return kSanitized ? n / 4 : n; }
// How long a thread spins for its partner before yielding (see run_pairs).
constexpr int kSpinsBeforeYield = kSanitized ? 1 << 16 : 1 << 22;

Options busy_options() {
  Options o;
  o.sweeper_period = std::chrono::milliseconds(1);  // GC races with everything
  o.txn_timeout = std::chrono::minutes(10);
  return o;
}

// The exclusive end of the range of keys that start with `prefix`.
std::string prefix_end(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

Transaction must_begin(Engine& e, Isolation iso) {
  auto r = e.begin(iso);
  if (!r.ok()) ADD_FAILURE() << r.status().to_string();
  return std::move(r).value();
}

const char* iso_name(Isolation iso) {
  return iso == Isolation::kSerializable ? "serializable" : "snapshot";
}

// Pins the calling thread to the i-th CPU it may run on (i < the number of such CPUs, at
// least two; otherwise it does nothing). Threads that must race are spread over two cores
// this way: on a loaded machine the scheduler may otherwise keep them on one core, where
// their commits never overlap.
void pin_to_own_cpu(int i) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == i) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// On-call doctors. Ward w is the key range "w<w>/". Its doctors on call are the keys
// "w<w>/d<id>"; after them come kPad padding keys "w<w>/z<i>" that nobody writes (they make
// each range read, and therefore each validation, walk more nodes, which widens the window in
// which two committers overlap). A doctor may go off call (delete its key) only if the ward
// has >= 2 on call; a doctor may join (insert a fresh key) only if the ward has < kMaxOnCall.
// Both decisions are made on the count returned by a scan of the ward, so under
// SERIALIZABLE every ward keeps 1..kMaxOnCall doctors at every snapshot; under SNAPSHOT,
// two transactions that read the same count and write different keys both commit (write
// skew through a predicate, and a phantom for the upper bound).
// ---------------------------------------------------------------------------------------
constexpr int kPad = 24;
constexpr int kMaxOnCall = 3;

std::string ward_prefix(int w) { return cat("w", w) + "/"; }
std::string doctor_key(int w, long long id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "d%08lld", id);
  return ward_prefix(w) + buf;
}
std::string pad_key(int w, int i) { return ward_prefix(w) + cat("z", 100 + i); }

void seed_ward(Engine& e, int w, int doctors, int pad = kPad) {
  for (int i = 0; i < pad; ++i) ASSERT_TRUE(e.put(pad_key(w, i), "pad").ok());
  for (int i = 0; i < doctors; ++i) ASSERT_TRUE(e.put(doctor_key(w, i), "on").ok());
}

// How a transaction reads the ward.
enum class WardRead : std::uint8_t {
  kForward,       // whole range, ascending
  kReverse,       // whole range, descending
  kForwardFirst,  // limit 1 ascending: the first doctor, and the exact count
  kReverseLast,   // limit kPad + 1 descending: the last doctor, and the exact count
  kCountOnly,     // count only (joins need no key)
};
constexpr int kWardReads = 5;

struct WardView {
  int on_call = 0;
  std::vector<std::string> doctors;  // the doctors the read returned
};

// Reads ward w in transaction t. False on an unexpected error.
bool read_ward(Transaction& t, int w, WardRead how, WardView* out, int pad = kPad) {
  ScanOptions so;
  so.keys_only = true;
  switch (how) {
    case WardRead::kForward:
      break;
    case WardRead::kReverse:
      so.reverse = true;
      break;
    case WardRead::kForwardFirst:
      so.limit = 1;
      break;
    case WardRead::kReverseLast:
      so.reverse = true;
      so.limit = static_cast<std::size_t>(pad) + 1;
      break;
    case WardRead::kCountOnly:
      so.count_only = true;
      break;
  }
  const std::string p = ward_prefix(w);
  auto r = t.scan(p, prefix_end(p), so);
  if (!r.ok()) {
    ADD_FAILURE() << r.status().to_string();
    return false;
  }
  out->on_call = static_cast<int>(r->count) - pad;
  out->doctors.clear();
  for (const KeyValue& kv : r->kvs) {
    if (kv.key.compare(p.size(), 1, "d") == 0) out->doctors.push_back(kv.key);
  }
  return true;
}

int on_call_now(Engine& e, int w, int pad = kPad) {
  ScanOptions so;
  so.count_only = true;
  const std::string p = ward_prefix(w);
  auto r = e.scan(p, prefix_end(p), so);
  EXPECT_TRUE(r.ok());
  return static_cast<int>(r->count) - pad;
}

struct DoctorsOutcome {
  long commits = 0;
  long conflicts = 0;
  long audits = 0;
  long violations = 0;  // ward counts outside 1..kMaxOnCall, seen by any reader
  long unexpected = 0;
};

// Free-running doctors workload: kWorkers threads leave and join wards through every kind of
// ward read, while an auditor checks every ward at snapshots (one-shot count scans, and a
// transaction that reads each ward forward and in reverse and must get the same keys).
// Stops early once stop_after_violations violations were seen (0: never).
DoctorsOutcome run_doctors(Isolation iso, int txns_per_worker, long stop_after_violations) {
  constexpr int kWards = 3;
  constexpr int kWorkers = 4;
  Engine e(busy_options());
  for (int w = 0; w < kWards; ++w) seed_ward(e, w, 2);
  std::atomic<long long> next_id{1000};
  std::atomic<long> commits{0}, conflicts{0}, audits{0}, violations{0}, unexpected{0};
  std::atomic<int> workers_left{kWorkers};
  std::latch go(kWorkers + 1);
  auto enough = [&] {
    return stop_after_violations != 0 && violations.load() >= stop_after_violations;
  };
  auto check = [&](int on_call) {
    if (on_call < 1 || on_call > kMaxOnCall) ++violations;
  };

  auto worker = [&](int id) {
    pin_to_own_cpu(id % 2);
    std::mt19937 rng(static_cast<unsigned>(7 + id));
    go.arrive_and_wait();
    for (int i = 0; i < txns_per_worker && !enough(); ++i) {
      const int w = static_cast<int>(rng() % kWards);
      const bool leave = rng() % 2 == 0;
      // Leaving needs a doctor's key: every read but count-only returns one.
      const auto how = static_cast<WardRead>(rng() % (leave ? kWardReads - 1 : kWardReads));
      Transaction t = must_begin(e, iso);
      WardView v;
      if (!read_ward(t, w, how, &v)) {
        ++unexpected;
        continue;
      }
      check(v.on_call);  // a snapshot of a consistent history
      Status s;
      if (leave) {
        if (v.on_call < 2 || v.doctors.empty()) continue;  // destroyed handle aborts
        s = t.del(v.doctors[rng() % v.doctors.size()]);
      } else {
        if (v.on_call >= kMaxOnCall) continue;
        s = t.put(doctor_key(w, next_id.fetch_add(1)), "on");
      }
      if (!s.ok()) {
        ++unexpected;
        continue;
      }
      std::this_thread::yield();  // widen the read-to-commit window
      auto c = t.commit();
      if (c.ok()) {
        ++commits;
      } else if (c.code() == StatusCode::kConflict) {
        ++conflicts;
      } else {
        ++unexpected;
      }
    }
    workers_left.fetch_sub(1);
  };
  auto auditor = [&] {
    go.arrive_and_wait();
    long seen = -1;
    while (workers_left.load() > 0) {
      // One audit per new commit at most: the auditor does not starve the workers.
      if (commits.load() == seen) {
        std::this_thread::yield();
        continue;
      }
      seen = commits.load();
      for (int w = 0; w < kWards; ++w) check(on_call_now(e, w));
      Transaction t = must_begin(e, Isolation::kSerializable);
      for (int w = 0; w < kWards; ++w) {
        WardView fwd, rev;
        if (!read_ward(t, w, WardRead::kForward, &fwd) ||
            !read_ward(t, w, WardRead::kReverse, &rev)) {
          ++unexpected;
          break;
        }
        check(fwd.on_call);
        std::reverse(rev.doctors.begin(), rev.doctors.end());
        if (fwd.on_call != rev.on_call || fwd.doctors != rev.doctors) ++unexpected;
      }
      if (!t.commit().ok()) ++unexpected;  // read-only: never aborts
      ++audits;
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kWorkers; ++i) ts.emplace_back(worker, i);
  std::thread a(auditor);
  for (auto& t : ts) t.join();
  a.join();
  for (int w = 0; w < kWards; ++w) check(on_call_now(e, w));
  DoctorsOutcome out;
  out.commits = commits.load();
  out.conflicts = conflicts.load();
  out.audits = audits.load();
  out.violations = violations.load();
  out.unexpected = unexpected.load();
  std::printf("doctors (%s): %ld commits, %ld conflicts, %ld audits, %ld violations\n",
              iso_name(iso), out.commits, out.conflicts, out.audits, out.violations);
  return out;
}

TEST(RangeStressDoctors, SerializableKeepsEveryWardStaffed) {
  const DoctorsOutcome o = run_doctors(Isolation::kSerializable, scaled(4000), 0);
  EXPECT_EQ(o.unexpected, 0);
  EXPECT_EQ(o.violations, 0);
  EXPECT_GT(o.commits, scaled(1000));
  EXPECT_GT(o.conflicts, 0);  // the workload does contend
  EXPECT_GT(o.audits, 0);
}

// The same workload under SNAPSHOT breaks the invariant: this is the check that the test
// above can see write skew when it happens.
TEST(RangeStressDoctors, SnapshotIsolationShowsWriteSkew) {
  const DoctorsOutcome o = run_doctors(Isolation::kSnapshot, 20000, 1);
  EXPECT_EQ(o.unexpected, 0);
  EXPECT_GE(o.violations, 1);
}

// ---------------------------------------------------------------------------------------
// Paired write skew: every round, two transactions read the same ward (which holds exactly
// 2 doctors) at snapshots taken before either writes, then both write and commit at once
// (a barrier before each step; the commits start from a spin rendezvous of the two threads,
// pinned to two different cores). Each pair of reads is one of the ways to read a ward: both
// forward, both in reverse, first-by-limit against last-by-limit, and point reads of both
// doctors. "leave": each deletes a different doctor (count >= 2 before, >= 1 must hold);
// "join": each inserts a new doctor when fewer than 3 are on call (<= 3 must hold; a
// phantom: the key did not exist when the other read the range).
//
// The ward holds kPairPad padding keys after its doctors, so validating a range read walks
// them all after the doctors: each committer spends that long between locking its own key
// and installing it, and the other's validation (which reaches the doctors first) runs
// while that lock is held. A validation that ignored another committer's lock would then
// see no new version and let both commit.
// ---------------------------------------------------------------------------------------
constexpr int kPairPad = 3000;

struct PairOutcome {
  int rounds = 0;
  int both_committed = 0;
  int violations = 0;  // rounds that ended outside 1..kMaxOnCall
  int unexpected = 0;
};

PairOutcome run_pairs(Isolation iso, int rounds) {
  constexpr int kVariants = 5;  // 4 read pairs for "leave", then "join"
  Engine e(busy_options());
  seed_ward(e, 0, 0, kPairPad);
  std::barrier sync(3);  // two transactions and the referee
  std::atomic<int> committed{0};
  std::atomic<int> unexpected{0};
  std::atomic<long long> next_id{1000};
  std::atomic<int> rendezvous{0};

  auto player = [&](int me) {
    pin_to_own_cpu(me);
    for (int r = 0; r < rounds; ++r) {
      const int variant = r % kVariants;
      sync.arrive_and_wait();  // (1) the referee has reset the ward
      Transaction t = must_begin(e, iso);
      WardView v;
      bool ok = true;
      std::string victim;
      switch (variant) {
        case 0:
          ok = read_ward(t, 0, WardRead::kForward, &v, kPairPad);
          if (ok && v.doctors.size() == 2) victim = v.doctors[static_cast<std::size_t>(me)];
          break;
        case 1:
          ok = read_ward(t, 0, WardRead::kReverse, &v, kPairPad);
          if (ok && v.doctors.size() == 2) victim = v.doctors[static_cast<std::size_t>(me)];
          break;
        case 2:
          ok = read_ward(t, 0, me == 0 ? WardRead::kForwardFirst : WardRead::kReverseLast, &v,
                         kPairPad);
          if (ok && v.doctors.size() == 1) victim = v.doctors[0];
          break;
        case 3: {
          v.on_call = 0;
          for (int d = 0; d < 2; ++d) {
            auto g = t.get(doctor_key(0, d));
            if (g.ok()) {
              ++v.on_call;
            } else if (g.code() != StatusCode::kNotFound) {
              ok = false;
            }
          }
          victim = doctor_key(0, me);
          break;
        }
        default:
          ok = read_ward(t, 0, WardRead::kCountOnly, &v, kPairPad);
          break;
      }
      if (!ok || v.on_call != 2 || (variant < 4 && victim.empty())) ++unexpected;
      sync.arrive_and_wait();  // (2) both snapshots are taken and read
      const Status s = variant < 4 ? t.del(victim) : t.put(doctor_key(0, next_id++), "on");
      if (!s.ok()) ++unexpected;
      sync.arrive_and_wait();  // (3)
      // Commit together: both spin until both arrived, so their commits start within
      // nanoseconds of each other when both threads are on a core (the barrier's wake-ups
      // alone can be tens of microseconds apart).
      rendezvous.fetch_add(1);
      for (int spins = 0; rendezvous.load() < 2 * (r + 1); ++spins) {
        // Spin for long before yielding: on a loaded machine a thread that yields at once
        // rarely runs at the same time as the other one.
        if (spins > kSpinsBeforeYield) std::this_thread::yield();
      }
      auto c = t.commit();
      if (c.ok()) {
        ++committed;
      } else if (c.code() != StatusCode::kConflict) {
        ++unexpected;
      }
      sync.arrive_and_wait();  // (4) both finished
    }
  };

  PairOutcome out;
  std::thread a(player, 0), b(player, 1);
  for (int r = 0; r < rounds; ++r) {
    // Reset: exactly doctors 0 and 1 on call.
    auto all = e.scan(ward_prefix(0) + "d", ward_prefix(0) + "e");
    for (const KeyValue& kv : all->kvs) (void)e.del(kv.key);
    (void)e.put(doctor_key(0, 0), "on");
    (void)e.put(doctor_key(0, 1), "on");
    committed = 0;
    sync.arrive_and_wait();  // (1)
    sync.arrive_and_wait();  // (2)
    sync.arrive_and_wait();  // (3)
    sync.arrive_and_wait();  // (4)
    const int n = on_call_now(e, 0, kPairPad);
    if (n < 1 || n > kMaxOnCall) ++out.violations;
    if (committed.load() == 2) ++out.both_committed;
    ++out.rounds;
  }
  a.join();
  b.join();
  out.unexpected = unexpected.load();
  std::printf("pairs (%s): %d rounds, %d with both committed, %d violations\n", iso_name(iso),
              out.rounds, out.both_committed, out.violations);
  return out;
}

TEST(RangeStressDoctors, PairedWriteSkewSerializableCommitsAtMostOne) {
  const PairOutcome o = run_pairs(Isolation::kSerializable, scaled(400));
  EXPECT_EQ(o.unexpected, 0);
  EXPECT_EQ(o.violations, 0);
  EXPECT_EQ(o.both_committed, 0);
}

TEST(RangeStressDoctors, PairedWriteSkewSnapshotCommitsBoth) {
  const PairOutcome o = run_pairs(Isolation::kSnapshot, scaled(100));
  EXPECT_EQ(o.unexpected, 0);
  // Every round writes two different keys from two overlapping snapshots: first committer
  // wins does not apply, both commit, and the ward leaves its bounds.
  EXPECT_EQ(o.both_committed, o.rounds);
  EXPECT_EQ(o.violations, o.rounds);
}

// ---------------------------------------------------------------------------------------
// Bank read by scans. Accounts are the keys "bank/<id>"; money moves between accounts,
// accounts are opened (a new key funded from another) and closed (deleted, the balance
// moved to another). Serializable writers choose accounts and amounts from a scan of the
// whole bank (forward, reverse, or one page by limit), so their only protection is range
// validation; a snapshot-isolation writer reads both accounts by point reads (first
// committer wins protects it). Auditors check, at snapshots: the total is constant; a
// forward scan, a reverse scan, and a paged scan (limit 3, resumed after the last key) of the
// same transaction return the same accounts and balances; count/more agree with the keys.
// ---------------------------------------------------------------------------------------
TEST(RangeStressBank, TotalHoldsWithScanningWritersAndAuditors) {
  constexpr int kAccounts = 6;
  constexpr long kStart = 1000;
  constexpr long kTotal = kAccounts * kStart;
  constexpr int kOpsPerWriter = scaled(3000);
  const std::string lo = "bank/", hi = prefix_end("bank/");
  Engine e(busy_options());
  for (int a = 0; a < kAccounts; ++a) ASSERT_TRUE(e.put(cat("bank/", a), "1000").ok());
  std::atomic<long long> next_account{kAccounts};
  std::atomic<long> unexpected{0}, bad_audits{0}, audits{0}, commits{0};
  std::atomic<int> writers_left{3};
  std::latch go(5);

  auto scan_writer = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(31 + id));
    go.arrive_and_wait();
    for (int i = 0; i < kOpsPerWriter; ++i) {
      Transaction t = must_begin(e, Isolation::kSerializable);
      ScanOptions so;
      const int how = static_cast<int>(rng() % 3);
      so.reverse = how == 1;
      if (how == 2) so.limit = 3;  // only the first page: choose among its accounts
      auto r = t.scan(lo, hi, so);
      if (!r.ok()) {
        ++unexpected;
        continue;
      }
      if (r->kvs.size() < 2) continue;
      const std::size_t fi = rng() % r->kvs.size();
      const std::size_t ti = (fi + 1 + rng() % (r->kvs.size() - 1)) % r->kvs.size();
      const KeyValue& from = r->kvs[fi];
      const KeyValue& to = r->kvs[ti];
      const long fb = std::stol(from.value), tb = std::stol(to.value);
      const int op = static_cast<int>(rng() % 8);
      bool ok = true;
      if (op == 0 && r->count > 3) {  // close `from`, moving its balance to `to`
        ok = t.del(from.key).ok() && t.put(to.key, std::to_string(tb + fb)).ok();
      } else if (op == 1 && r->count < 10 && fb > 0) {  // open an account funded by `from`
        const long amount = 1 + static_cast<long>(rng() % static_cast<unsigned long>(fb));
        ok = t.put(from.key, std::to_string(fb - amount)).ok() &&
             t.put(cat("bank/", next_account.fetch_add(1)), std::to_string(amount)).ok();
      } else {  // transfer
        const long amount = static_cast<long>(rng() % 100);
        if (amount > fb) continue;
        ok = t.put(from.key, std::to_string(fb - amount)).ok() &&
             t.put(to.key, std::to_string(tb + amount)).ok();
      }
      if (!ok) {
        ++unexpected;
        continue;
      }
      std::this_thread::yield();  // widen the read-to-commit window
      auto c = t.commit();
      if (c.ok()) {
        ++commits;
      } else if (c.code() != StatusCode::kConflict) {
        ++unexpected;
      }
    }
    writers_left.fetch_sub(1);
  };
  auto si_writer = [&] {
    std::mt19937 rng(97);
    go.arrive_and_wait();
    for (int i = 0; i < kOpsPerWriter; ++i) {
      const long long top = next_account.load();
      const std::string a = cat("bank/", static_cast<long long>(rng() % top));
      const std::string b = cat("bank/", static_cast<long long>(rng() % top));
      if (a == b) continue;
      Transaction t = must_begin(e, Isolation::kSnapshot);
      auto ra = t.get(a);
      auto rb = t.get(b);
      if (!ra.ok() || !rb.ok()) continue;  // closed (or never opened)
      const long amount = static_cast<long>(rng() % 100);
      const long av = std::stol(ra->value), bv = std::stol(rb->value);
      if (amount > av) continue;
      if (!t.put(a, std::to_string(av - amount)).ok() ||
          !t.put(b, std::to_string(bv + amount)).ok()) {
        ++unexpected;
        continue;
      }
      std::this_thread::yield();
      auto c = t.commit();
      if (c.ok()) {
        ++commits;
      } else if (c.code() != StatusCode::kConflict) {
        ++unexpected;
      }
    }
    writers_left.fetch_sub(1);
  };
  using Accounts = std::vector<std::pair<std::string, std::string>>;
  auto accounts_of = [](const ScanResult& r) {
    Accounts out;
    for (const KeyValue& kv : r.kvs) out.emplace_back(kv.key, kv.value);
    return out;
  };
  auto sum = [](const Accounts& acc) {
    long s = 0;
    for (const auto& kv : acc) s += std::stol(kv.second);
    return s;
  };
  auto auditor = [&](bool interactive) {
    go.arrive_and_wait();
    long seen = -1;
    while (writers_left.load() > 0) {
      // One audit per new commit at most: the auditors do not starve the writers.
      if (commits.load() == seen) {
        std::this_thread::yield();
        continue;
      }
      seen = commits.load();
      ++audits;
      if (!interactive) {
        auto r = e.scan(lo, hi);
        if (!r.ok() || sum(accounts_of(*r)) != kTotal || r->count != r->kvs.size()) ++bad_audits;
        continue;
      }
      Transaction t = must_begin(e, Isolation::kSerializable);
      auto fwd = t.scan(lo, hi);
      ScanOptions rev_opts;
      rev_opts.reverse = true;
      auto rev = t.scan(lo, hi, rev_opts);
      if (!fwd.ok() || !rev.ok()) {
        ++unexpected;
        continue;
      }
      const Accounts f = accounts_of(*fwd);
      Accounts r = accounts_of(*rev);
      std::reverse(r.begin(), r.end());
      // Paged: limit 3, each page resumed just after the previous page's last key.
      Accounts paged;
      std::string from = lo;
      for (;;) {
        ScanOptions page_opts;
        page_opts.limit = 3;
        auto p = t.scan(from, hi, page_opts);
        if (!p.ok()) {
          ++unexpected;
          break;
        }
        for (const KeyValue& kv : p->kvs) paged.emplace_back(kv.key, kv.value);
        if (p->more != (p->count > 3)) ++bad_audits;
        if (!p->more) break;
        from = p->kvs.back().key + std::string(1, '\0');
      }
      // The last page from the top, in reverse: the largest keys.
      ScanOptions tail_opts;
      tail_opts.reverse = true;
      tail_opts.limit = 2;
      auto tail = t.scan(lo, hi, tail_opts);
      const bool tail_ok = f.size() >= 2 && tail.ok() && tail->count == f.size() &&
                           tail->kvs.size() == 2 && tail->kvs[0].key == f.back().first &&
                           tail->kvs[1].key == f[f.size() - 2].first;
      if (sum(f) != kTotal || f != r || f != paged || fwd->count != f.size() || !tail_ok) {
        ++bad_audits;
      }
      if (!t.commit().ok()) ++unexpected;  // read-only: never aborts
    }
  };
  std::thread w1(scan_writer, 0), w2(scan_writer, 1), w3(si_writer);
  std::thread a1(auditor, true), a2(auditor, false);
  w1.join();
  w2.join();
  w3.join();
  a1.join();
  a2.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(bad_audits.load(), 0);
  EXPECT_GT(audits.load(), 0);
  EXPECT_GT(commits.load(), scaled(1000));
  auto fin = e.scan(lo, hi);
  ASSERT_TRUE(fin.ok());
  EXPECT_EQ(sum(accounts_of(*fin)), kTotal);
  for (const KeyValue& kv : fin->kvs) EXPECT_GE(std::stol(kv.value), 0) << kv.key;
  std::printf("bank by scans: %ld commits, %ld audits, %zu accounts at the end\n", commits.load(),
              audits.load(), fin->kvs.size());
}

// ---------------------------------------------------------------------------------------
// Wide and narrow increments. kCounters counter keys. A wide transaction reads all of them
// with one scan (forward, reverse, or limited to one key with the exact count) and writes each
// one plus 1; wide writers run at both isolation levels. A narrow transaction increments only
// the last counter (read by point read, serializable, or by a reverse scan limited to one key,
// snapshot isolation), which a wide commit locks last and installs last: narrow commits keep
// trying to slip in while a wide commit holds its locks or installs. Invariants: at every
// snapshot all counters but the last are equal and the last is at least as large (a snapshot
// sees whole commits); at the end the others equal the wide commits and the last equals wide
// plus narrow commits (no lost update).
// ---------------------------------------------------------------------------------------
TEST(RangeStressCounters, WideAndNarrowIncrementsAreAtomicAndLoseNothing) {
  constexpr int kCounters = 96;
  constexpr int kWideTxns = scaled(1000);
  const std::string lo = "ctr/", hi = prefix_end("ctr/");
  Engine e(busy_options());
  auto counter_key = [](int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "ctr/%03d", i);
    return std::string(buf);
  };
  const std::string last = counter_key(kCounters - 1);
  for (int i = 0; i < kCounters; ++i) ASSERT_TRUE(e.put(counter_key(i), "0").ok());
  std::atomic<long> wide_commits{0}, narrow_commits{0}, unexpected{0}, torn{0}, audits{0};
  std::atomic<int> wide_left{2};
  std::latch go(5);
  // All counters but the last equal, the last at least as large (kvs in either key order).
  auto torn_view = [&](const ScanResult& r) {
    std::vector<long> v;
    for (const KeyValue& kv : r.kvs) v.push_back(std::stol(kv.value));
    if (r.kvs.front().key > r.kvs.back().key) std::reverse(v.begin(), v.end());
    for (int i = 0; i < kCounters - 1; ++i) {
      if (v[static_cast<std::size_t>(i)] != v[0]) return true;
    }
    return v.back() < v[0];
  };
  auto finish = [&](Transaction& t, std::atomic<long>& commits) {
    auto c = t.commit();
    if (c.ok()) {
      ++commits;
    } else if (c.code() != StatusCode::kConflict) {
      ++unexpected;
    }
  };

  auto wide = [&](Isolation iso) {
    pin_to_own_cpu(iso == Isolation::kSerializable ? 0 : 1);
    go.arrive_and_wait();
    for (int i = 0; i < kWideTxns; ++i) {
      Transaction t = must_begin(e, iso);
      ScanOptions so;
      so.reverse = i % 3 == 1;
      auto r = t.scan(lo, hi, so);
      if (i % 3 == 2) {  // and once more, limited: the count must still be exact
        ScanOptions one;
        one.limit = 1;
        auto l = t.scan(lo, hi, one);
        if (!l.ok() || l->count != kCounters || !l->more) ++unexpected;
      }
      if (!r.ok() || r->kvs.size() != kCounters) {
        ++unexpected;
        continue;
      }
      if (torn_view(*r)) ++torn;  // each writer's snapshot is an audit too
      bool ok = true;
      for (const KeyValue& kv : r->kvs) {
        ok = ok && t.put(kv.key, std::to_string(std::stol(kv.value) + 1)).ok();
      }
      if (!ok) {
        ++unexpected;
        continue;
      }
      finish(t, wide_commits);
    }
    wide_left.fetch_sub(1);
  };
  auto narrow = [&](Isolation iso) {
    pin_to_own_cpu(iso == Isolation::kSerializable ? 1 : 0);  // away from the wide one
    go.arrive_and_wait();
    while (wide_left.load() > 0) {
      Transaction t = must_begin(e, iso);
      std::string value;
      if (iso == Isolation::kSerializable) {
        auto g = t.get(last);
        if (g.ok()) value = g->value;
      } else {
        ScanOptions so;
        so.reverse = true;
        so.limit = 1;
        auto r = t.scan(lo, hi, so);
        if (r.ok() && r->kvs.size() == 1 && r->kvs[0].key == last) value = r->kvs[0].value;
      }
      if (value.empty() || !t.put(last, std::to_string(std::stol(value) + 1)).ok()) {
        ++unexpected;
        continue;
      }
      finish(t, narrow_commits);
    }
  };
  auto auditor = [&] {
    go.arrive_and_wait();
    while (wide_left.load() > 0) {  // free-running: every audit may meet an install
      ++audits;
      auto r = e.scan(lo, hi);
      if (!r.ok() || r->kvs.size() != kCounters) {
        ++unexpected;
        continue;
      }
      if (torn_view(*r)) ++torn;
    }
  };
  std::thread w1(wide, Isolation::kSerializable), w2(wide, Isolation::kSnapshot);
  std::thread n1(narrow, Isolation::kSerializable), n2(narrow, Isolation::kSnapshot);
  std::thread a(auditor);
  w1.join();
  w2.join();
  n1.join();
  n2.join();
  a.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(wide_commits.load(), kWideTxns / 10);  // narrow ones may win most races
  long wrong = 0;
  for (int i = 0; i < kCounters; ++i) {
    auto g = e.get(counter_key(i));
    ASSERT_TRUE(g.ok());
    const long want =
        i == kCounters - 1 ? wide_commits.load() + narrow_commits.load() : wide_commits.load();
    if (std::stol(g->value) != want) ++wrong;
  }
  EXPECT_EQ(wrong, 0) << "counters whose final value is not the number of committed increments";
  std::printf("increments: %ld wide and %ld narrow commits, %ld audits\n", wide_commits.load(),
              narrow_commits.load(), audits.load());
}

// ---------------------------------------------------------------------------------------
// A hot key under constant updates and constant short snapshots. Two writers overwrite one
// key (every commit prunes its chain, reading W and then the registered snapshots); two
// readers begin transaction after transaction and read the key twice. The key always exists,
// so each read must find it, and both reads of a transaction must agree: pruning must keep
// the version visible at every snapshot that registered, even one that registered while the
// pruner was building its view. A slow committer runs alongside: it validates a range of
// kSlowRange keys after taking its timestamp, so W often stays behind commits that have
// finished, and the hot key's newest versions are often newer than W when it is pruned; a
// sweeper thread prunes every chain over and over meanwhile.
// ---------------------------------------------------------------------------------------
TEST(RangeStressSnapshot, HotKeyVisibleToEverySnapshotWhilePruned) {
  constexpr long kWrites = scaled(100000);
  constexpr int kSlowRange = 1000;
  constexpr int kIdleSnapshots = 1000;
  constexpr int kFreeSlots = 64;
  Engine e(busy_options());
  ASSERT_TRUE(e.put("hot", "0").ok());
  for (int i = 0; i < kSlowRange; ++i) ASSERT_TRUE(e.put(cat("slow/", i), "x").ok());
  // Many idle snapshots, registered in all but the first kFreeSlots registry slots: every
  // pruner's pass over the registry takes long, and the readers' snapshots (in the free
  // low slots) are read early in it, long before the pass ends.
  std::vector<Transaction> idle;
  for (int i = 0; i < kIdleSnapshots; ++i) idle.push_back(must_begin(e, Isolation::kSnapshot));
  for (int i = 0; i < kFreeSlots; ++i) ASSERT_TRUE(idle[static_cast<std::size_t>(i)].abort().ok());
  std::atomic<long> written{0}, missing{0}, changed{0}, unexpected{0}, reads{0};
  std::atomic<int> writers_left{2};
  std::latch go(6);
  auto slow = [&] {
    go.arrive_and_wait();
    for (long i = 0; writers_left.load() > 0; ++i) {
      Transaction t = must_begin(e, Isolation::kSerializable);
      ScanOptions so;
      so.count_only = true;
      if (!t.scan("slow/", prefix_end("slow/"), so).ok() || !t.put("slowout", cat("", i)).ok()) {
        ++unexpected;
        continue;
      }
      if (auto c = t.commit(); !c.ok() && c.code() != StatusCode::kConflict) ++unexpected;
    }
  };
  std::atomic<int> writer_ids{0};
  auto writer = [&] {
    pin_to_own_cpu(writer_ids.fetch_add(1) % 2);
    go.arrive_and_wait();
    for (long i = written.fetch_add(1); i < kWrites; i = written.fetch_add(1)) {
      auto p = e.put("hot", std::to_string(i));
      if (!p.ok()) ++unexpected;  // a one-shot put never answers CONFLICT ("Contention")
    }
    writers_left.fetch_sub(1);
  };
  auto reader = [&](Isolation iso) {
    pin_to_own_cpu(iso == Isolation::kSerializable ? 0 : 1);
    go.arrive_and_wait();
    while (writers_left.load() > 0) {
      Transaction t = must_begin(e, iso);
      auto a = t.get("hot");
      auto b = t.get("hot");
      ++reads;
      if (!a.ok() || !b.ok()) {
        ++missing;
      } else if (a->value != b->value || a->mod_revision != b->mod_revision) {
        ++changed;
      }
      if (!t.commit().ok()) ++unexpected;  // read-only
    }
  };
  auto sweeper = [&] {  // prunes every chain over and over, also while W lags
    go.arrive_and_wait();
    while (writers_left.load() > 0) e.run_maintenance();
  };
  std::thread w1(writer), w2(writer), r1(reader, Isolation::kSnapshot),
      r2(reader, Isolation::kSerializable), s1(slow), s2(sweeper);
  w1.join();
  w2.join();
  r1.join();
  r2.join();
  s1.join();
  s2.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(missing.load(), 0);
  EXPECT_EQ(changed.load(), 0);
  EXPECT_GT(reads.load(), 0);
  std::printf("hot key: %ld snapshots read it twice\n", reads.load());
}

// ---------------------------------------------------------------------------------------
// Puts racing index-node removal (E6). A writer puts one key over and over, reading it back
// at once with a scan; a deleter, on the other core, deletes it over and over. Each delete's
// own commit prunes the chain and, when no snapshot needs the tombstone, removes the key's
// index node, so the writer's put (retrying while the delete holds the lock) often finds a
// node that is being removed. Such a put must look the key up again and install into a fresh
// node, or it is lost: its read-back finds nothing although no delete committed between the
// put and the read.
// ---------------------------------------------------------------------------------------
TEST(RangeStressRemoval, PutsRacingNodeRemovalAreNeverLost) {
  constexpr long kPuts = scaled(300000);
  Options o = busy_options();
  o.background_sweeper = false;  // the deleter's commits remove the nodes
  Engine e(o);
  std::atomic<bool> writer_done{false};
  std::atomic<long> unexpected{0};
  std::vector<Revision> deletes;  // deleter only (increasing), read after the join
  // Writer only: (put revision, read revision) of each read-back that found nothing.
  std::vector<std::pair<Revision, Revision>> absences;
  long found_wrong = 0;
  std::latch go(2);
  std::thread writer([&] {
    pin_to_own_cpu(0);
    go.arrive_and_wait();
    for (long i = 0; i < kPuts; ++i) {
      const std::string v = cat("v", i);
      auto p = e.put("rm", v);
      if (!p.ok()) {  // a one-shot put never answers CONFLICT ("Contention")
        ++unexpected;
        continue;
      }
      auto r = e.scan("rm", std::string("rm\0", 3));
      if (!r.ok()) {
        ++unexpected;
      } else if (r->kvs.empty()) {
        absences.emplace_back(p->revision, r->revision);
      } else if (r->kvs[0].value != v || r->kvs[0].mod_revision != p->revision) {
        ++found_wrong;  // only this thread puts: a value found must be this put's
      }
    }
    writer_done = true;
  });
  std::thread deleter([&] {
    pin_to_own_cpu(1);
    go.arrive_and_wait();
    while (!writer_done.load()) {
      // Snapshot isolation: the read is not validated; the delete commits unless a put
      // committed during this short transaction, and a delete that commits removed a
      // present key.
      Transaction t = must_begin(e, Isolation::kSnapshot);
      if (!t.get("rm").ok()) continue;  // absent: nothing to delete
      if (!t.del("rm").ok()) ++unexpected;
      auto c = t.commit();
      if (c.ok()) {
        deletes.push_back(*c);
      } else if (c.code() != StatusCode::kConflict) {
        ++unexpected;
      }
    }
  });
  writer.join();
  deleter.join();
  long lost = 0;  // absences no delete explains: none committed in (put, read]
  for (const auto& [put_rev, read_rev] : absences) {
    auto it = std::upper_bound(deletes.begin(), deletes.end(), put_rev);
    if (it == deletes.end() || *it > read_rev) ++lost;
  }
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(found_wrong, 0);
  EXPECT_EQ(lost, 0);
  std::printf("removal race: %zu deletes, %zu read-backs found nothing, %llu nodes removed\n",
              deletes.size(), absences.size(),
              static_cast<unsigned long long>(e.stats().index_nodes_removed));
}

// ---------------------------------------------------------------------------------------
// Strictness (E3): a commit returns only once it is visible, so the writer's next read, and
// any transaction begun after the return, sees it; the revision it returns is <= the
// current revision at once. Slow committers run alongside: each validates a range of
// kSlowRange keys after taking its timestamp, so earlier timestamps are often still
// unfinished when a fast writer's commit returns.
// ---------------------------------------------------------------------------------------
TEST(RangeStressStrictness, CommitIsVisibleWhenItReturns) {
  constexpr int kSlowRange = 400;
  constexpr int kFastOps = scaled(30000);
  Engine e(busy_options());
  for (int i = 0; i < kSlowRange; ++i) ASSERT_TRUE(e.put(cat("slow/", i), "x").ok());
  std::atomic<bool> fast_done{false};
  std::atomic<long> stale{0}, unexpected{0}, slow_commits{0};
  std::latch go(4);
  auto slow = [&](int id) {
    pin_to_own_cpu(id % 2);
    go.arrive_and_wait();
    for (long i = 0; !fast_done.load(); ++i) {
      Transaction t = must_begin(e, Isolation::kSerializable);
      ScanOptions so;
      so.count_only = true;
      auto r = t.scan("slow/", prefix_end("slow/"), so);
      if (!r.ok() || !t.put(cat(cat("slowout", id) + "/", i % 16), "v").ok()) {
        ++unexpected;
        continue;
      }
      auto c = t.commit();
      if (c.ok()) ++slow_commits;
    }
  };
  auto fast = [&](int id) {
    pin_to_own_cpu((id + 1) % 2);
    go.arrive_and_wait();
    const std::string key = cat("fast", id);
    for (int i = 1; i <= kFastOps; ++i) {
      const std::string val = std::to_string(i);
      if (i % 2 == 0) {
        auto p = e.put(key, val);
        if (!p.ok()) {
          ++unexpected;
          continue;
        }
        if (e.current_revision() < p->revision) ++stale;
      } else {
        Transaction t = must_begin(e, Isolation::kSerializable);
        if (!t.put(key, val).ok()) ++unexpected;
        auto c = t.commit();
        if (!c.ok()) {
          ++unexpected;
          continue;
        }
        if (e.current_revision() < *c) ++stale;
      }
      auto g = e.get(key);
      if (!g.ok() || g->value != val) ++stale;
    }
  };
  std::thread s1(slow, 0), s2(slow, 1), f1(fast, 0), f2(fast, 1);
  f1.join();
  f2.join();
  fast_done = true;
  s1.join();
  s2.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(stale.load(), 0);
  std::printf("strictness: %ld slow commits alongside\n", slow_commits.load());
}

// ---------------------------------------------------------------------------------------
// Repeatable scans under GC: long-lived transactions (both isolation levels) scan a range
// forward, in reverse and by limit, again and again, while writers update, delete and
// re-insert its keys and GC prunes every millisecond. Every repeat must return exactly what
// the first returned (keys, values, revisions): interval GC must keep the version each
// registered snapshot sees.
// ---------------------------------------------------------------------------------------
TEST(RangeStressSnapshot, ScansRepeatWhileWritersAndGcRun) {
  constexpr int kKeys = 32;
  constexpr int kReaders = 2;
  constexpr int kRepeats = 45;
  constexpr int kSnapshotsPerReader = scaled(30);
  constexpr long kWritesBetweenRepeats = 16;
  Engine e(busy_options());
  for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(e.put(cat("rr/", 10 + k), "init").ok());
  std::atomic<int> readers_left{kReaders};
  std::atomic<long> mismatches{0}, unexpected{0}, writes{0}, demand{0};
  std::latch go(kReaders + 2);

  auto writer = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(5 + id));
    go.arrive_and_wait();
    while (readers_left.load() > 0) {
      // Write only as far ahead as the readers asked (they raise `demand` between repeats),
      // so the writers do not run away with the CPU.
      if (writes.load() >= demand.load()) {
        std::this_thread::yield();
        continue;
      }
      const std::string k = cat("rr/", 10 + static_cast<long long>(rng() % kKeys));
      const bool del = rng() % 4 == 0;
      const Status st = del ? e.del(k).status() : e.put(k, cat("v", writes++)).status();
      // A one-shot put waits for a busy lock and reads nothing: it never answers CONFLICT
      // (docs/STORAGE.md, "Contention"). A delete reads its key, and may, in principle, lose
      // its validation through all its retries: allowed, not an error.
      if (!st.ok() && (!del || st.code() != StatusCode::kConflict)) ++unexpected;
    }
  };
  using Snap = std::vector<std::tuple<std::string, std::string, Revision, std::int64_t>>;
  auto snap_of = [](const ScanResult& r) {
    Snap s;
    for (const KeyValue& kv : r.kvs) s.emplace_back(kv.key, kv.value, kv.mod_revision, kv.version);
    return s;
  };
  auto reader = [&](int id) {
    go.arrive_and_wait();
    for (int n = 0; n < kSnapshotsPerReader; ++n) {
      Transaction t =
          must_begin(e, (n + id) % 2 == 0 ? Isolation::kSnapshot : Isolation::kSerializable);
      auto first = t.scan("rr/", "rr0");
      if (!first.ok()) {
        ++unexpected;
        continue;
      }
      const Snap want = snap_of(*first);
      Snap want_rev = want;
      std::reverse(want_rev.begin(), want_rev.end());
      for (int i = 0; i < kRepeats; ++i) {
        ScanOptions so;
        so.reverse = i % 3 == 1;
        if (i % 3 == 2) so.limit = 5;
        auto again = t.scan("rr/", "rr0", so);
        if (!again.ok()) {
          ++unexpected;
          break;
        }
        const Snap got = snap_of(*again);
        if (i % 3 == 0 && got != want) ++mismatches;
        if (i % 3 == 1 && got != want_rev) ++mismatches;
        if (i % 3 == 2 &&
            (got != Snap(want.begin(), want.begin() + std::min<std::size_t>(5, want.size())) ||
             again->count != want.size())) {
          ++mismatches;
        }
        // Let writers (and the GC of their commits) run between repeats.
        const long target = demand.fetch_add(kWritesBetweenRepeats) + kWritesBetweenRepeats;
        while (writes.load() < target) std::this_thread::yield();
      }
      if (!t.commit().ok()) ++unexpected;  // read-only: never aborts
    }
    readers_left.fetch_sub(1);
  };
  std::vector<std::thread> ts;
  ts.reserve(kReaders + 2);
  for (int r = 0; r < kReaders; ++r) ts.emplace_back(reader, r);
  for (int w = 0; w < 2; ++w) ts.emplace_back(writer, w);
  for (auto& t : ts) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(writes.load(), 0);
  EXPECT_GT(e.stats().versions_pruned, 0u);
  std::printf("repeatable scans: %ld writes alongside, %llu versions pruned\n", writes.load(),
              static_cast<unsigned long long>(e.stats().versions_pruned));
}

}  // namespace
}  // namespace kv::storage
