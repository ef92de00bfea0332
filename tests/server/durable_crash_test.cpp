// Crash test of a durable kovan-server: concurrent interactive transactions (bank transfers
// between accounts, and appends to lists) against a server with --data-dir; kill -9 at a
// random moment; restart on the same directory; check what survived; many rounds.
//
// What is checked after each restart, before anything new is written (R* = the revision
// the restarted server reports, i.e. the last recovered commit):
//   * the bank total holds (a transfer is never partially visible);
//   * every marker / list token the store holds was written by a commit that was
//     acknowledged, or whose commit was in flight when the server died: none from a
//     transaction that aborted, conflicted or never sent its commit (no phantom, no
//     partial transaction);
//   * what was recovered in an earlier round is still there (the list read after the
//     previous restart is a prefix of the list read now; old markers stay);
//   * the recovered state is the state at revision R*: every acknowledged commit of the
//     round with revision <= R* is present and every one above R* is absent; the tokens of
//     each list after the previous round's prefix, less the in-flight ones, are exactly the
//     acknowledged appends with revision <= R* in commit (revision) order;
//   * with --fsync always, R* is at least the highest acknowledged revision: nothing
//     acknowledged is lost. With everysec, a suffix of the commit order may be lost.
//
// Rounds: $KOVAN_CRASH_ROUNDS (default below; the `slow` registration runs many more);
// seed: $KOVAN_TEST_SEED (printed on failure).
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "durable_harness.hpp"

namespace kv::test {
namespace {

constexpr int kAccounts = 8;
constexpr std::int64_t kInitialBalance = 1000;
constexpr int kLists = 3;
constexpr int kBankWorkers = 3;
constexpr int kListWorkers = 3;

std::string account(int i) { return "a/" + std::to_string(i); }
std::string list_key(int i) { return "l/" + std::to_string(i); }

int rounds(int default_rounds) {
  const char* env = std::getenv("KOVAN_CRASH_ROUNDS");
  if (env != nullptr && *env != '\0') return std::max(1, std::atoi(env));
  return default_rounds;
}

std::vector<std::string> split_tokens(const std::string& v) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : v) {
    if (ch == ';') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  EXPECT_TRUE(cur.empty()) << "list value not ';'-terminated: " << v;
  return out;
}

// What one round's clients know about their commits.
struct RoundLog {
  std::mutex mu;
  std::vector<std::pair<std::string, std::uint64_t>> acked_markers;  // marker, revision
  std::set<std::string> unknown_markers;  // commit sent, connection lost before the answer
  std::set<std::string> never_markers;    // certainly not committed
  struct Append {
    int list;
    std::string token;
    std::uint64_t revision;
  };
  std::vector<Append> acked_appends;
  std::set<std::string> unknown_tokens;
  std::set<std::string> never_tokens;
};

enum class Outcome { kAcked, kRefused, kUnknown, kLost };

// Runs one interactive transaction: begin, `body` (reads and puts inside it), commit.
// kAcked with the revision; kRefused when it certainly did not commit (conflict, expired,
// or the body gave up); kUnknown when the connection broke after the commit was sent;
// kLost when it broke before (then nothing committed).
template <class Body>
Outcome run_txn(Client& c, std::uint64_t& id, Body body, std::uint64_t& revision) {
  auto b = try_call(c, begin(++id));
  if (!b) return Outcome::kLost;
  if (b->status().code() != pb::Status::OK) return Outcome::kRefused;
  const std::uint64_t txn = b->begin().txn_id();
  const int r = body(txn);  // 1: commit; 0: abort; -1: connection lost
  if (r < 0) return Outcome::kLost;
  if (r == 0) {
    auto a = try_call(c, abort_txn(++id, txn));
    return a ? Outcome::kRefused : Outcome::kLost;
  }
  if (!c.send(commit(++id, txn))) return Outcome::kLost;  // not (completely) sent
  auto resp = c.recv(30s);
  if (!resp) return Outcome::kUnknown;
  if (resp->status().code() == pb::Status::OK) {
    revision = resp->commit().revision();
    return Outcome::kAcked;
  }
  EXPECT_NE(resp->status().code(), pb::Status::STORAGE_FAILED) << resp->ShortDebugString();
  return Outcome::kRefused;
}

void bank_worker(std::uint16_t port, int round, int worker, std::uint64_t seed,
                 std::atomic<bool>& stop, RoundLog& log) {
  Client c(port);
  if (!c.connected()) return;
  std::mt19937_64 rng(seed);
  std::uint64_t id = 0;
  for (int seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
    const int from = static_cast<int>(rng() % kAccounts);
    const int to = (from + 1 + static_cast<int>(rng() % (kAccounts - 1))) % kAccounts;
    const std::int64_t amount = 1 + static_cast<std::int64_t>(rng() % 50);
    const std::string marker =
        "m/" + std::to_string(round) + "/" + std::to_string(worker) + "/" + std::to_string(seq);
    std::uint64_t revision = 0;
    const Outcome o = run_txn(
        c, id,
        [&](std::uint64_t txn) -> int {
          auto ga = try_call(c, get(++id, account(from), txn));
          auto gb = ga ? try_call(c, get(++id, account(to), txn)) : std::nullopt;
          if (!ga || !gb) return -1;
          if (ga->status().code() != pb::Status::OK || gb->status().code() != pb::Status::OK) {
            return 0;
          }
          const std::int64_t a = std::stoll(ga->get().kv().value());
          const std::int64_t b = std::stoll(gb->get().kv().value());
          if (a < amount) return 0;
          const std::vector<pb::Request> puts = {
              put(++id, account(from), std::to_string(a - amount), txn),
              put(++id, account(to), std::to_string(b + amount), txn), put(++id, marker, "1", txn)};
          for (const pb::Request& req : puts) {
            auto p = try_call(c, req);
            if (!p) return -1;
            if (p->status().code() != pb::Status::OK) return 0;
          }
          return 1;
        },
        revision);
    std::lock_guard lock(log.mu);
    switch (o) {
      case Outcome::kAcked:
        log.acked_markers.emplace_back(marker, revision);
        break;
      case Outcome::kUnknown:
        log.unknown_markers.insert(marker);
        return;
      case Outcome::kRefused:
        log.never_markers.insert(marker);
        break;
      case Outcome::kLost:
        log.never_markers.insert(marker);
        return;
    }
  }
}

void list_worker(std::uint16_t port, int round, int worker, std::uint64_t seed,
                 std::atomic<bool>& stop, RoundLog& log) {
  Client c(port);
  if (!c.connected()) return;
  std::mt19937_64 rng(seed);
  std::uint64_t id = 0;
  for (int seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
    const int list = static_cast<int>(rng() % kLists);
    const std::string token =
        "r" + std::to_string(round) + "w" + std::to_string(worker) + "s" + std::to_string(seq);
    std::uint64_t revision = 0;
    const Outcome o = run_txn(
        c, id,
        [&](std::uint64_t txn) -> int {
          auto g = try_call(c, get(++id, list_key(list), txn));
          if (!g) return -1;
          std::string value;
          if (g->status().code() == pb::Status::OK) {
            value = g->get().kv().value();
          } else if (g->status().code() != pb::Status::NOT_FOUND) {
            return 0;
          }
          auto p = try_call(c, put(++id, list_key(list), value + token + ";", txn));
          if (!p) return -1;
          return p->status().code() == pb::Status::OK ? 1 : 0;
        },
        revision);
    std::lock_guard lock(log.mu);
    switch (o) {
      case Outcome::kAcked:
        log.acked_appends.push_back({list, token, revision});
        break;
      case Outcome::kUnknown:
        log.unknown_tokens.insert(token);
        return;
      case Outcome::kRefused:
        log.never_tokens.insert(token);
        break;
      case Outcome::kLost:
        log.never_tokens.insert(token);
        return;
    }
  }
}

// What survived so far: the state recovered after the previous restart.
struct Durable {
  std::vector<std::vector<std::string>> lists = std::vector<std::vector<std::string>>(kLists);
  std::set<std::string> markers;
};

// Checks the restarted server against the round's log; updates `durable`. Returns the
// number of acknowledged commits of the round that were lost (0 required with always).
std::size_t verify(std::uint16_t port, RoundLog& log, Durable& durable, bool fsync_always,
                   const std::string& context) {
  const std::uint64_t rstar = current_revision(port);
  EXPECT_GT(rstar, 0u) << context;
  std::uint64_t max_acked = 0;
  for (const auto& [m, rev] : log.acked_markers) max_acked = std::max(max_acked, rev);
  for (const auto& a : log.acked_appends) max_acked = std::max(max_acked, a.revision);
  if (fsync_always) {
    EXPECT_GE(rstar, max_acked) << context << ": an acknowledged commit was lost";
  }
  std::size_t lost = 0;

  // Bank.
  std::int64_t total = 0;
  const auto accounts = scan_prefix(port, "a/");
  EXPECT_EQ(accounts.size(), static_cast<std::size_t>(kAccounts)) << context;
  for (const auto& kv : accounts) total += std::stoll(kv.value());
  EXPECT_EQ(total, kAccounts * kInitialBalance) << context << ": the bank total changed";
  std::set<std::string> markers;
  for (const auto& kv : scan_prefix(port, "m/")) markers.insert(kv.key());
  for (const auto& m : durable.markers) {
    EXPECT_TRUE(markers.count(m)) << context << ": marker " << m << " recovered before is gone";
  }
  std::set<std::string> allowed = durable.markers;
  for (const auto& [m, rev] : log.acked_markers) {
    allowed.insert(m);
    if (rev <= rstar) {
      EXPECT_TRUE(markers.count(m)) << context << ": acknowledged " << m << " at revision " << rev
                                    << " <= " << rstar << " is missing";
    } else {
      ++lost;
      EXPECT_FALSE(markers.count(m)) << context << ": " << m << " at revision " << rev
                                     << " is present past the recovered revision " << rstar;
    }
  }
  allowed.insert(log.unknown_markers.begin(), log.unknown_markers.end());
  for (const auto& m : markers) {
    EXPECT_TRUE(allowed.count(m)) << context << ": marker " << m
                                  << " of a transaction that did not commit is visible"
                                  << (log.never_markers.count(m) ? " (it certainly aborted)" : "");
  }
  durable.markers = markers;

  // Lists.
  for (int j = 0; j < kLists; ++j) {
    std::vector<std::string> now;
    {
      Client c(port);
      auto g = try_call(c, get(1, list_key(j)));
      EXPECT_TRUE(g.has_value()) << context;
      if (!g) return lost;
      if (g->status().code() == pb::Status::OK) now = split_tokens(g->get().kv().value());
    }
    const auto& before = durable.lists[static_cast<std::size_t>(j)];
    EXPECT_GE(now.size(), before.size()) << context << ": list " << j << " shrank";
    if (now.size() < before.size()) return lost;
    EXPECT_TRUE(std::equal(before.begin(), before.end(), now.begin()))
        << context << ": list " << j << " is not an extension of the list recovered before";
    std::set<std::string> seen;
    for (const auto& t : now) {
      EXPECT_TRUE(seen.insert(t).second) << context << ": token " << t << " appears twice";
      EXPECT_FALSE(log.never_tokens.count(t))
          << context << ": token " << t << " of an append that did not commit is visible";
    }
    std::vector<std::pair<std::uint64_t, std::string>> expected;
    std::set<std::string> acked_here;
    for (const auto& a : log.acked_appends) {
      if (a.list != j) continue;
      acked_here.insert(a.token);
      if (a.revision <= rstar) expected.emplace_back(a.revision, a.token);
    }
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> got;
    for (std::size_t i = before.size(); i < now.size(); ++i) {
      if (log.unknown_tokens.count(now[i])) continue;
      EXPECT_TRUE(acked_here.count(now[i]))
          << context << ": token " << now[i] << " in list " << j << " was never written";
      got.push_back(now[i]);
    }
    std::vector<std::string> want;
    for (const auto& [rev, t] : expected) want.push_back(t);
    EXPECT_EQ(got, want) << context << ": list " << j
                         << " is not the acknowledged appends up to revision " << rstar
                         << " in commit order";
    durable.lists[static_cast<std::size_t>(j)] = now;
  }
  for (const auto& a : log.acked_appends) lost += a.revision > rstar ? 1 : 0;
  return lost;
}

struct CrashStats {
  std::size_t acked = 0;
  std::size_t lost = 0;
  int rounds = 0;
};

CrashStats crash_rounds(const std::string& tag, std::vector<std::string> flags, bool fsync_always,
                        int n_rounds) {
  CrashStats stats;
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE("KOVAN_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TempDir dir(tag);
  Durable durable;
  std::unique_ptr<RoundLog> prev_log_;  // the last round's log, checked after the restart
  {
    DurableServer s(dir.str(), flags, tag + "-init");
    EXPECT_NE(s.port(), 0) << s.output();
    if (s.port() == 0) return stats;
    pb::Request t;
    t.set_id(1);
    for (int i = 0; i < kAccounts; ++i) {
      auto* op = t.mutable_txn()->add_success()->mutable_put();
      op->set_key(account(i));
      op->set_value(std::to_string(kInitialBalance));
    }
    Client c(s.port());
    auto r = try_call(c, t);
    EXPECT_TRUE(r && r->status().code() == pb::Status::OK);
    s.crash();
  }
  for (int round = 0; round < n_rounds && !::testing::Test::HasFailure(); ++round) {
    const std::string context = tag + " round " + std::to_string(round);
    DurableServer s(dir.str(), flags, tag);
    EXPECT_NE(s.port(), 0) << context << ": the server did not restart:\n" << s.output();
    if (s.port() == 0) break;
    RoundLog log;
    // Check what the previous round left, then load and crash.
    if (round > 0) {
      stats.lost += verify(s.port(), *prev_log_, durable, fsync_always, context);
    } else {
      RoundLog empty;
      (void)verify(s.port(), empty, durable, fsync_always, context);
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int w = 0; w < kBankWorkers; ++w) {
      threads.emplace_back(bank_worker, s.port(), round, w, rng(), std::ref(stop), std::ref(log));
    }
    for (int w = 0; w < kListWorkers; ++w) {
      threads.emplace_back(list_worker, s.port(), round, w, rng(), std::ref(stop), std::ref(log));
    }
    // The crash moment: random, while every worker is in the middle of its loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 1000));
    s.crash();
    stop.store(true, std::memory_order_relaxed);
    for (auto& t : threads) t.join();
    stats.acked += log.acked_markers.size() + log.acked_appends.size();
    ++stats.rounds;
    prev_log_ = std::make_unique<RoundLog>();
    {
      std::lock_guard lock(log.mu);
      prev_log_->acked_markers = std::move(log.acked_markers);
      prev_log_->unknown_markers = std::move(log.unknown_markers);
      prev_log_->never_markers = std::move(log.never_markers);
      prev_log_->acked_appends = std::move(log.acked_appends);
      prev_log_->unknown_tokens = std::move(log.unknown_tokens);
      prev_log_->never_tokens = std::move(log.never_tokens);
    }
  }
  if (prev_log_ && !::testing::Test::HasFailure()) {
    DurableServer s(dir.str(), flags, tag + "-final");
    EXPECT_NE(s.port(), 0) << s.output();
    if (s.port() != 0) {
      stats.lost += verify(s.port(), *prev_log_, durable, fsync_always, tag + " final");
    }
    EXPECT_EQ(s.stop(), 0);
  }
  prev_log_.reset();
  return stats;
}

TEST(DurableCrash, FsyncAlwaysLosesNothingAcknowledged) {
  const CrashStats st = crash_rounds(
      "crash-always", {"--fsync", "always", "--checkpoint-every", "256KiB"}, true, rounds(40));
  EXPECT_EQ(st.lost, 0u);
  EXPECT_GT(st.acked, static_cast<std::size_t>(st.rounds)) << "the load made too little progress";
  std::printf("fsync always: %d rounds, %zu acknowledged commits checked\n", st.rounds, st.acked);
}

TEST(DurableCrash, FsyncEverySecRecoversAPrefixOfTheCommitOrder) {
  const CrashStats st =
      crash_rounds("crash-everysec", {"--fsync", "everysec", "--checkpoint-every", "1MiB"}, false,
                   std::max(1, rounds(40) / 2));
  EXPECT_GT(st.acked, static_cast<std::size_t>(st.rounds)) << "the load made too little progress";
  std::printf("fsync everysec: %d rounds, %zu acknowledged commits, %zu lost to the crash\n",
              st.rounds, st.acked, st.lost);
}

}  // namespace
}  // namespace kv::test
