// Concurrent property tests: bank invariant, counter, list-append histories checked by the
// Elle-style checker, concurrent index inserts. Threads start together on a latch; nothing
// is ordered by sleeping. Sized to take about a second each on two cores.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <latch>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "elle.hpp"
#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

using testing::cat;

Options busy_options() {
  Options o;
  o.sweeper_period = std::chrono::milliseconds(1);  // GC races with everything
  o.txn_timeout = std::chrono::minutes(10);
  return o;
}

TEST(StressBank, TransfersKeepTotalAndSnapshotsSeeWholeCommits) {
  constexpr int kAccounts = 8;
  constexpr int kStart = 1000;
  constexpr int kTransfersPerThread = 20000;
  Engine e(busy_options());
  for (int a = 0; a < kAccounts; ++a)
    ASSERT_TRUE(e.put(cat("acct", a), std::to_string(kStart)).ok());

  std::latch go(4);
  std::atomic<int> writers_left{2};
  std::vector<std::vector<long>> net(2, std::vector<long>(kAccounts, 0));
  std::atomic<long> bad_totals{0};
  std::atomic<long> totals_checked{0};
  std::atomic<long> unexpected{0};

  auto transfer = [&](int id, Isolation iso) {
    std::mt19937 rng(static_cast<unsigned>(id + 1));
    go.arrive_and_wait();
    for (int i = 0; i < kTransfersPerThread; ++i) {
      const int from = static_cast<int>(rng() % kAccounts);
      const int to = (from + 1 + static_cast<int>(rng() % (kAccounts - 1))) % kAccounts;
      const int amount = static_cast<int>(rng() % 50);
      auto tr = e.begin(iso);
      if (!tr.ok()) {
        ++unexpected;
        continue;
      }
      Transaction t = std::move(tr).value();
      auto a = t.get(cat("acct", from));
      auto b = t.get(cat("acct", to));
      if (!a.ok() || !b.ok()) {
        ++unexpected;
        continue;
      }
      const long av = std::stol(a->value), bv = std::stol(b->value);
      if (av < amount) continue;  // destroyed handle aborts
      if (!t.put(cat("acct", from), std::to_string(av - amount)).ok() ||
          !t.put(cat("acct", to), std::to_string(bv + amount)).ok()) {
        ++unexpected;
        continue;
      }
      auto c = t.commit();
      if (c.ok()) {
        net[static_cast<std::size_t>(id)][static_cast<std::size_t>(from)] -= amount;
        net[static_cast<std::size_t>(id)][static_cast<std::size_t>(to)] += amount;
      } else if (c.code() != StatusCode::kConflict) {
        ++unexpected;
      }
    }
    writers_left.fetch_sub(1);
  };
  auto auditor = [&](bool interactive) {
    go.arrive_and_wait();
    while (writers_left.load() > 0) {
      long total = 0;
      if (interactive) {
        Transaction t = std::move(e.begin(Isolation::kSerializable)).value();
        auto r = t.scan("acct", "acct~");
        if (!r.ok()) {
          ++unexpected;
          continue;
        }
        for (auto& kv : r->kvs) total += std::stol(kv.value);
        if (!t.commit().ok()) ++unexpected;  // read-only: never aborts
      } else {
        auto r = e.scan("acct", "acct~");
        if (!r.ok()) {
          ++unexpected;
          continue;
        }
        for (auto& kv : r->kvs) total += std::stol(kv.value);
      }
      if (total != long{kAccounts} * kStart) ++bad_totals;
      ++totals_checked;
    }
  };
  std::thread w1(transfer, 0, Isolation::kSerializable);
  std::thread w2(transfer, 1, Isolation::kSnapshot);
  std::thread r1(auditor, true);
  std::thread r2(auditor, false);
  w1.join();
  w2.join();
  r1.join();
  r2.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(bad_totals.load(), 0);
  EXPECT_GT(totals_checked.load(), 0);
  const EngineStats st = e.stats();
  std::printf("bank: %ld audited totals, %llu commits, %llu conflict aborts, %llu pruned\n",
              totals_checked.load(), static_cast<unsigned long long>(st.commits),
              static_cast<unsigned long long>(st.aborts_conflict),
              static_cast<unsigned long long>(st.versions_pruned));
  for (int a = 0; a < kAccounts; ++a) {
    const long want =
        kStart + net[0][static_cast<std::size_t>(a)] + net[1][static_cast<std::size_t>(a)];
    EXPECT_EQ(std::stol(e.get(cat("acct", a))->value), want) << a;
  }
}

TEST(StressCounter, NoLostUpdates) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 3000;
  Engine e(busy_options());
  ASSERT_TRUE(e.put("counter", "0").ok());
  std::latch go(kThreads);
  std::atomic<long> committed{0};
  std::atomic<long> unexpected{0};
  auto worker = [&](int id) {
    go.arrive_and_wait();
    for (int i = 0; i < kIncrements; ++i) {
      if (id == 0) {
        // Compare-and-swap through the conditional transaction.
        for (;;) {
          auto cur = e.get("counter");
          if (!cur.ok()) {
            ++unexpected;
            break;
          }
          CondTxn req;
          Compare c;
          c.key = "counter";
          c.target = Compare::Target::kModRevision;
          c.op = Compare::Op::kEqual;
          c.number = static_cast<std::int64_t>(cur->mod_revision);
          req.compare = {c};
          TxnOp put;
          put.type = TxnOp::Type::kPut;
          put.key = "counter";
          put.value = std::to_string(std::stol(cur->value) + 1);
          req.success = {put};
          auto r = e.txn(req);
          if (!r.ok()) {
            ++unexpected;
            break;
          }
          if (r->succeeded) {
            ++committed;
            break;
          }
        }
        continue;
      }
      const Isolation iso = id % 2 == 0 ? Isolation::kSnapshot : Isolation::kSerializable;
      for (;;) {
        Transaction t = std::move(e.begin(iso)).value();
        auto cur = t.get("counter");
        if (i % 2 == 0) std::this_thread::yield();  // widen the read-to-commit window
        if (!cur.ok() || !t.put("counter", std::to_string(std::stol(cur->value) + 1)).ok()) {
          ++unexpected;
          break;
        }
        auto c = t.commit();
        if (c.ok()) {
          ++committed;
          break;
        }
        if (c.code() != StatusCode::kConflict) {
          ++unexpected;
          break;
        }
      }
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(committed.load(), long{kThreads} * kIncrements);
  EXPECT_EQ(std::stol(e.get("counter")->value), committed.load());
  EXPECT_EQ(e.get("counter")->version, committed.load() + 1);
  const EngineStats st = e.stats();
  std::printf("counter: %ld increments, %llu conflict aborts\n", committed.load(),
              static_cast<unsigned long long>(st.aborts_conflict));
}

// Randomized list-append transactions; the committed history must have no dependency
// cycle (including real-time edges: strict serializability).
TEST(StressListAppend, SerializableHistoryHasNoCycle) {
  constexpr int kThreads = 4;
  constexpr int kTxnsPerThread = 2000;
  constexpr int kKeys = 6;
  Engine e(busy_options());
  std::atomic<std::uint64_t> logical{1};
  std::atomic<std::int64_t> next_value{1};
  std::vector<std::vector<elle::Txn>> per_thread(kThreads);
  std::atomic<long> unexpected{0};
  std::latch go(kThreads);
  auto parse = [](const std::string& s) {
    std::vector<std::int64_t> out;
    std::size_t pos = 0;
    while (pos < s.size()) {
      std::size_t comma = s.find(',', pos);
      if (comma == std::string::npos) comma = s.size();
      out.push_back(std::stoll(s.substr(pos, comma - pos)));
      pos = comma + 1;
    }
    return out;
  };
  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(100 + id));
    go.arrive_and_wait();
    for (int i = 0; i < kTxnsPerThread; ++i) {
      elle::Txn rec;
      rec.start = logical.fetch_add(1);
      Transaction t = std::move(e.begin()).value();
      std::vector<int> keys(kKeys);
      for (int k = 0; k < kKeys; ++k) keys[static_cast<std::size_t>(k)] = k;
      std::shuffle(keys.begin(), keys.end(), rng);
      const int nops = 1 + static_cast<int>(rng() % 4);
      bool failed = false;
      for (int j = 0; j < nops && !failed; ++j) {
        const std::string k = cat("list", keys[static_cast<std::size_t>(j)]);
        auto cur = t.get(k);
        if (!cur.ok() && cur.code() != StatusCode::kNotFound) {
          failed = true;
          break;
        }
        const std::string s = cur.ok() ? cur->value : std::string();
        if (rng() % 2 == 0) {
          rec.ops.push_back(elle::MicroOp{false, k, 0, parse(s)});
        } else {
          const std::int64_t v = next_value.fetch_add(1);
          std::string appended = s;
          if (!appended.empty()) appended += ",";
          appended += std::to_string(v);
          if (!t.put(k, appended).ok()) failed = true;
          rec.ops.push_back(elle::MicroOp{true, k, v, {}});
        }
      }
      if (failed) {
        ++unexpected;
        continue;
      }
      auto c = t.commit();
      rec.end = logical.fetch_add(1);
      if (c.ok()) {
        per_thread[static_cast<std::size_t>(id)].push_back(std::move(rec));
      } else if (c.code() != StatusCode::kConflict) {
        ++unexpected;
      }
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  ASSERT_EQ(unexpected.load(), 0);
  std::vector<elle::Txn> history;
  for (auto& v : per_thread) {
    for (auto& t : v) history.push_back(std::move(t));
  }
  std::map<std::string, std::vector<std::int64_t>> finals;
  for (int k = 0; k < kKeys; ++k) {
    auto r = e.get(cat("list", k));
    finals[cat("list", k)] = r.ok() ? parse(r->value) : std::vector<std::int64_t>{};
  }
  ASSERT_GT(history.size(), static_cast<std::size_t>(kThreads * kTxnsPerThread / 4));
  elle::Report rep = elle::check(history, finals);
  EXPECT_TRUE(rep.ok) << rep.problem << " (" << history.size() << " committed txns)";
}

TEST(StressIndex, ConcurrentInsertsKeepOrderAndUniqueness) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  Options o = busy_options();
  Engine e(o);
  std::latch go(kThreads);
  std::atomic<long> unexpected{0};
  auto worker = [&](int id) {
    go.arrive_and_wait();
    for (int i = 0; i < kPerThread; ++i) {
      // Half the keys are shared by all threads, half are private.
      const std::string k = i % 2 == 0 ? cat("shared", i) : cat(cat("t", id) + "-", i);
      if (!e.put(k, std::to_string(id)).ok()) ++unexpected;
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  const std::size_t distinct = kPerThread / 2 + static_cast<std::size_t>(kThreads) * kPerThread / 2;
  auto all = e.scan("", "");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->kvs.size(), distinct);
  for (std::size_t i = 1; i < all->kvs.size(); ++i) {
    ASSERT_LT(all->kvs[i - 1].key, all->kvs[i].key);
  }
  ScanOptions rev;
  rev.reverse = true;
  auto back = e.scan("", "", rev);
  ASSERT_EQ(back->kvs.size(), distinct);
  EXPECT_EQ(back->kvs.front().key, all->kvs.back().key);
  EXPECT_EQ(e.stats().index_nodes, distinct);
  EXPECT_EQ(e.stats().keys, distinct);
  e.run_maintenance();
  EXPECT_EQ(e.stats().live_versions, distinct);
}

// Interval GC bound under concurrent writers: a held snapshot keeps reading its values and
// chains stay short while other threads update.
TEST(StressGc, HeldSnapshotUnderConcurrentWriters) {
  constexpr int kKeys = 8;
  constexpr int kWriters = 2;
  constexpr int kUpdates = 100000;
  Engine e(busy_options());
  for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(e.put(cat("g", k), cat("init", k)).ok());
  Transaction held = std::move(e.begin(Isolation::kSnapshot)).value();
  std::latch go(kWriters);
  std::vector<std::thread> ts;
  for (int w = 0; w < kWriters; ++w) {
    ts.emplace_back([&, w] {
      go.arrive_and_wait();
      for (int u = 0; u < kUpdates; ++u) {
        if (!e.put(cat("g", (u + w) % kKeys), cat("w", u)).ok()) ADD_FAILURE();
      }
    });
  }
  for (int check = 0; check < 200; ++check) {
    const int k = check % kKeys;
    auto r = held.get(cat("g", k));
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->value, cat("init", k));
  }
  for (auto& t : ts) t.join();
  e.run_maintenance();
  for (int k = 0; k < kKeys; ++k) EXPECT_LE(e.version_count(cat("g", k)), 2u);
  ASSERT_TRUE(held.commit().ok());
  e.run_maintenance();
  EXPECT_EQ(e.stats().live_versions, static_cast<std::uint64_t>(kKeys));
}

}  // namespace
}  // namespace kv::storage
