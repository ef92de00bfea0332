// Watch (docs/PROTOCOL.md 3.15) against kovan-server processes over raw sockets: a checker
// that compares the pushes with the committed history under concurrent writers of every
// kind; watches from past revisions (inside and outside the history, after a restart);
// a watcher that never reads while the server is hammered (VmRSS/VmHWM stay flat, the watch
// ends with COMPACTED); 10 000 watchers on one key; fragments, limits, cancel, shutdown and
// key prefixes.
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "server/auth.hpp"
#include "server_process.hpp"

namespace kv::test {
namespace {

pb::Request watch_req(std::uint64_t id, const std::string& key, bool prefix,
                      std::uint64_t start = 0, bool prev_kv = false) {
  pb::Request r;
  r.set_id(id);
  auto* w = r.mutable_watch();
  w->set_key(key);
  w->set_prefix(prefix);
  w->set_start_revision(start);
  w->set_prev_kv(prev_kv);
  return r;
}

pb::Request cancel_req(std::uint64_t id, std::uint64_t watch_id) {
  pb::Request r;
  r.set_id(id);
  r.mutable_cancel_watch()->set_watch_id(watch_id);
  return r;
}

pb::Request delete_range_req(std::uint64_t id, const std::string& start, const std::string& end) {
  pb::Request r;
  r.set_id(id);
  auto* d = r.mutable_delete_range();
  d->set_start(start);
  d->set_end(end);
  d->set_prev_kv(true);
  return r;
}

bool is_push(const pb::Response& r) {
  return r.id() == 0 && r.result_case() == pb::Response::kWatchEvents;
}

// A connection that holds watches: answers and pushes arrive interleaved.
class Watcher {
 public:
  explicit Watcher(std::uint16_t port, int rcvbuf = 0) : c_(port, rcvbuf) {}
  Client& client() { return c_; }

  // Sends `r` and returns its answer; pushes read meanwhile are kept.
  pb::Response call(const pb::Request& r, std::chrono::milliseconds timeout = 20s) {
    EXPECT_TRUE(c_.send(r));
    for (;;) {
      auto resp = c_.recv(timeout);
      EXPECT_TRUE(resp.has_value()) << "no answer to " << r.ShortDebugString();
      if (!resp) return {};
      if (is_push(*resp)) {
        pushes.push_back(std::move(*resp));
        continue;
      }
      return *resp;
    }
  }
  // Creates a watch; returns its id (0 on failure).
  std::uint64_t watch(const pb::Request& r) {
    const auto resp = call(r);
    EXPECT_EQ(resp.status().code(), pb::Status::OK) << resp.ShortDebugString();
    return resp.has_watch() ? resp.watch().watch_id() : 0;
  }
  // Reads pushes until `done` says so; false on timeout or a non-push frame.
  template <class Done>
  bool read_until(Done done, std::chrono::milliseconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      auto resp = c_.recv(left);
      if (!resp) return false;
      if (!is_push(*resp)) {
        others.push_back(std::move(*resp));
        continue;
      }
      pushes.push_back(std::move(*resp));
    }
    return true;
  }

  std::vector<pb::Response> pushes;
  std::vector<pb::Response> others;  // notices read by read_until

 private:
  Client c_;
};

std::unique_ptr<ServerProcess> start_server(std::vector<std::string> extra, const std::string& tag,
                                            std::uint16_t* port) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--threads", "2"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto s = std::make_unique<ServerProcess>(args, tag);
  *port = s->wait_for_port(20s);
  EXPECT_NE(*port, 0) << s->output();
  return s;
}

// What the writers know they committed: revision -> key -> value (nullopt: delete).
using History = std::map<std::uint64_t, std::map<std::string, std::optional<std::string>>>;

struct Kv {
  std::string value;
  std::uint64_t create = 0, mod = 0, version = 0;
};

// Checks the pushes of one watch against the history restricted to [lo, hi) and the
// filters: every change exactly once, one push per revision (no fragments here), revision
// order, events in key order, exact kv metadata and prev_kv. Returns "" or the first problem.
std::string check_stream(const std::vector<pb::Response>& pushes, std::uint64_t watch_id,
                         const History& history, const std::string& lo, const std::string& hi,
                         bool prev_kv, bool no_delete, std::uint64_t from) {
  // The model of the whole store (the history covers every write since the store was empty).
  std::map<std::string, Kv> model;
  History expected;
  std::map<std::uint64_t, std::map<std::string, std::optional<Kv>>> prev_at;
  for (const auto& [rev, writes] : history) {
    for (const auto& [key, value] : writes) {
      auto it = model.find(key);
      const bool in = key >= lo && key < hi;
      if (in && rev >= from && (value || !no_delete)) {
        expected[rev][key] = value;
        prev_at[rev][key] = it == model.end() ? std::nullopt : std::optional<Kv>(it->second);
      }
      if (!value) {
        model.erase(key);
      } else if (it == model.end()) {
        model[key] = Kv{*value, rev, rev, 1};
      } else {
        it->second = Kv{*value, it->second.create, rev, it->second.version + 1};
      }
    }
  }
  std::map<std::string, Kv> state;  // rebuilt from the history for kv metadata checks
  auto exp = expected.begin();
  std::uint64_t last_rev = 0;
  for (const auto& p : pushes) {
    const auto& ev = p.watch_events();
    if (ev.watch_id() != watch_id) continue;
    if (ev.canceled()) return "watch canceled: " + ev.ShortDebugString();
    if (ev.fragment()) return "unexpected fragment";
    if (ev.revision() <= last_rev)
      return "revision order broken at " + std::to_string(ev.revision());
    last_rev = ev.revision();
    if (p.header().revision() != ev.revision()) return "header revision differs";
    if (exp == expected.end()) return "extra push at " + std::to_string(ev.revision());
    if (ev.revision() != exp->first) {
      return "push at " + std::to_string(ev.revision()) + ", expected " +
             std::to_string(exp->first);
    }
    if (static_cast<std::size_t>(ev.events_size()) != exp->second.size()) {
      return "revision " + std::to_string(ev.revision()) + " has " +
             std::to_string(ev.events_size()) + " events, expected " +
             std::to_string(exp->second.size());
    }
    auto want = exp->second.begin();
    for (const auto& e : ev.events()) {
      if (e.kv().key() != want->first) return "event key/order wrong: " + e.kv().key();
      if (e.kv().mod_revision() != ev.revision()) return "mod_revision wrong";
      const bool del = !want->second.has_value();
      if ((e.type() == pb::Event::DELETE) != del) return "event type wrong for " + e.kv().key();
      const auto& prev = prev_at.at(ev.revision()).at(want->first);
      if (!del) {
        if (e.kv().value() != *want->second) return "value wrong for " + e.kv().key();
        const std::uint64_t create = prev ? prev->create : ev.revision();
        const std::uint64_t version = prev ? prev->version + 1 : 1;
        if (e.kv().create_revision() != create || e.kv().version() != version) {
          return "create_revision/version wrong for " + e.kv().key();
        }
      }
      if (prev_kv) {
        if (e.has_prev_kv() != prev.has_value())
          return "prev_kv presence wrong for " + e.kv().key();
        if (prev &&
            (e.prev_kv().value() != prev->value || e.prev_kv().mod_revision() != prev->mod ||
             e.prev_kv().create_revision() != prev->create ||
             e.prev_kv().version() != prev->version)) {
          return "prev_kv wrong for " + e.kv().key() + " at " + std::to_string(ev.revision());
        }
      } else if (e.has_prev_kv()) {
        return "prev_kv not asked for";
      }
      ++want;
    }
    ++exp;
  }
  if (exp != expected.end()) return "missing push for revision " + std::to_string(exp->first);
  return {};
}

// (a) The checker: writers of every kind (puts, deletes, delete_range, conditional txns,
// interactive transactions) on keys inside and outside the watched prefix; a prefix watcher
// with prev_kv, a single-key watcher with prev_kv and a prefix watcher without deletes.
TEST(Watch, CheckerMatchesCommittedHistory) {
  std::uint16_t port = 0;
  auto srv = start_server({}, "watch-checker", &port);
  Watcher w(port);
  const std::uint64_t all = w.watch(watch_req(1, "p/", true, 0, true));
  const std::uint64_t one = w.watch(watch_req(2, "p/k3", false, 0, true));
  pb::Request nd = watch_req(3, "p/", true);
  nd.mutable_watch()->set_no_delete(true);
  const std::uint64_t puts_only = w.watch(nd);
  ASSERT_NE(all * one * puts_only, 0u);
  const std::uint64_t from = w.call(ping(4)).header().revision() + 1;

  std::mutex mu;
  History history;
  auto record = [&](std::uint64_t rev, std::map<std::string, std::optional<std::string>> m) {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(history.emplace(rev, std::move(m)).second) << "revision twice " << rev;
  };
  constexpr int kWriters = 3;
  constexpr int kOps = 300;
  auto key = [](int i) { return (i % 5 == 4 ? "q/k" : "p/k") + std::to_string(i % 8); };
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      Client c(port);
      ASSERT_TRUE(c.connected());
      std::uint64_t id = 100;
      for (int i = 0; i < kOps; ++i) {
        const int k = i * 3 + t;
        const std::string v = "v" + std::to_string(t) + "-" + std::to_string(i);
        switch (i % 6) {
          case 0:
          case 1: {
            const auto r = c.call(put(++id, key(k), v));
            if (r.status().code() == pb::Status::OK) record(r.header().revision(), {{key(k), v}});
            break;
          }
          case 2: {
            const auto r = c.call(del(++id, key(k)));
            if (r.status().code() == pb::Status::OK && r.del().deleted() == 1) {
              record(r.header().revision(), {{key(k), std::nullopt}});
            }
            break;
          }
          case 3: {
            const auto r = c.call(delete_range_req(++id, "p/k1", "p/k4"));
            if (r.status().code() == pb::Status::OK && r.delete_range().deleted() > 0) {
              std::map<std::string, std::optional<std::string>> m;
              for (const auto& kv : r.delete_range().prev_kvs()) m[kv.key()] = std::nullopt;
              record(r.header().revision(), m);
            }
            break;
          }
          case 4: {  // conditional: two puts, one of them outside the prefix
            pb::Request q;
            q.set_id(++id);
            auto* cmp = q.mutable_txn()->add_compare();
            cmp->set_key(key(k));
            cmp->set_op(pb::Compare::GREATER);
            cmp->set_version(0);
            for (const std::string& kk : {key(k), std::string("q/t")}) {
              auto* p = q.mutable_txn()->add_success()->mutable_put();
              p->set_key(kk);
              p->set_value(v);
            }
            auto* p = q.mutable_txn()->add_failure()->mutable_put();
            p->set_key("p/k7");
            p->set_value(v);
            const auto r = c.call(q);
            if (r.status().code() == pb::Status::OK) {
              if (r.txn().succeeded()) {
                record(r.header().revision(), {{key(k), v}, {"q/t", v}});
              } else {
                record(r.header().revision(), {{"p/k7", v}});
              }
            }
            break;
          }
          case 5: {  // interactive: two puts
            const auto b = c.call(begin(++id));
            if (b.status().code() != pb::Status::OK) break;
            const std::uint64_t tx = b.begin().txn_id();
            (void)c.call(get(++id, key(k + 1), tx));
            (void)c.call(put(++id, key(k + 1), v, tx));
            (void)c.call(put(++id, key(k + 2), v, tx));
            const auto r = c.call(commit(++id, tx));
            if (r.status().code() == pb::Status::OK) {
              record(r.commit().revision(), {{key(k + 1), v}, {key(k + 2), v}});
            }
            break;
          }
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  // The end marker: the last revision every watcher must reach.
  Client c(port);
  const auto end = c.call(put(1, "p/zz-end", "x"));
  ASSERT_EQ(end.status().code(), pb::Status::OK);
  record(end.header().revision(), {{"p/zz-end", "x"}});
  const std::uint64_t last = end.header().revision();
  ASSERT_TRUE(w.read_until([&] {
    bool a = false, p = false;
    for (const auto& x : w.pushes) {
      if (x.watch_events().revision() == last && x.watch_events().watch_id() == all) a = true;
      if (x.watch_events().revision() == last && x.watch_events().watch_id() == puts_only) p = true;
    }
    return a && p;
  })) << "pushes: "
      << w.pushes.size();
  // The single-key watch has nothing at `last`; a cancel answered after its pushes closes it.
  const auto cr = w.call(cancel_req(5, one));
  EXPECT_EQ(cr.status().code(), pb::Status::OK);
  ASSERT_GT(history.size(), 100u);
  EXPECT_EQ(check_stream(w.pushes, all, history, "p/", "p0", true, false, from), "");
  EXPECT_EQ(
      check_stream(w.pushes, one, history, "p/k3", std::string("p/k3\0", 5), true, false, from),
      "");
  EXPECT_EQ(check_stream(w.pushes, puts_only, history, "p/", "p0", false, true, from), "");
}

// (b) From a past revision inside the history: exactly the changes from there on.
TEST(Watch, FromPastRevisionInsideHistory) {
  std::uint16_t port = 0;
  auto srv = start_server({}, "watch-past", &port);
  Client c(port);
  std::vector<std::uint64_t> revs;
  for (int i = 0; i < 10; ++i) {
    revs.push_back(
        c.call(put(i + 1, "a/" + std::to_string(i), std::to_string(i))).header().revision());
  }
  Watcher w(port);
  const auto r = w.call(watch_req(1, "a/", true, revs[3]));
  ASSERT_EQ(r.status().code(), pb::Status::OK) << r.ShortDebugString();
  EXPECT_EQ(r.watch().start_revision(), revs[3]);
  ASSERT_TRUE(w.read_until([&] { return w.pushes.size() >= 7; }));
  for (std::size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(w.pushes[i].watch_events().revision(), revs[3 + i]);
    EXPECT_EQ(w.pushes[i].watch_events().events(0).kv().value(), std::to_string(3 + i));
  }
  // Nothing else is pending: the next frame is the answer to a ping.
  EXPECT_EQ(w.call(ping(9)).id(), 9u);
  EXPECT_EQ(w.pushes.size(), 7u);
}

// (b) Outside the history (a small --watch-history): COMPACTED with the oldest revision kept;
// a watch from that revision works and starts there.
TEST(Watch, FromRevisionOutsideHistoryIsCompacted) {
  std::uint16_t port = 0;
  auto srv = start_server({"--watch-history", "16KiB"}, "watch-compacted", &port);
  Client c(port);
  std::uint64_t last = 0;
  for (int i = 0; i < 400; ++i)
    last = c.call(put(i + 1, "k" + std::to_string(i % 9), "v")).header().revision();
  Watcher w(port);
  const auto r = w.call(watch_req(1, "k", true, 2));
  ASSERT_EQ(r.status().code(), pb::Status::COMPACTED) << r.ShortDebugString();
  const std::uint64_t oldest = r.status().compact_revision();
  EXPECT_GT(oldest, 2u);
  EXPECT_LE(oldest, last);
  EXPECT_FALSE(r.has_watch());
  // One before the oldest is compacted too, with the same answer; the oldest itself works.
  const auto r2 = w.call(watch_req(2, "k", true, oldest - 1));
  EXPECT_EQ(r2.status().code(), pb::Status::COMPACTED);
  EXPECT_EQ(r2.status().compact_revision(), oldest);
  const auto r3 = w.call(watch_req(3, "k", true, oldest));
  ASSERT_EQ(r3.status().code(), pb::Status::OK) << r3.ShortDebugString();
  ASSERT_TRUE(w.read_until([&] { return w.pushes.size() >= last - oldest + 1; }));
  EXPECT_EQ(w.pushes.front().watch_events().revision(), oldest);
  EXPECT_EQ(w.pushes.back().watch_events().revision(), last);
}

// (b) After a restart with --data-dir: the history is refilled from the replayed WAL
// (prev_kv included); older revisions come from the WAL segments without prev_kv.
TEST(Watch, AfterRestartWithDataDir) {
  const fs::path dir = temp_path("watch-durable");
  fs::remove_all(dir);
  std::uint64_t last = 0;
  std::uint16_t port = 0;
  {
    auto srv = start_server({"--data-dir", dir.string()}, "watch-durable-1", &port);
    Client c(port);
    for (int i = 0; i < 30; ++i) {
      last = c.call(put(i + 1, "d/" + std::to_string(i % 4), "v" + std::to_string(i)))
                 .header()
                 .revision();
    }
    last = c.call(del(99, "d/0")).header().revision();
    srv->signal(SIGTERM);
    ASSERT_EQ(srv->wait_exit(20s), 0) << srv->output();
  }
  auto srv = start_server({"--data-dir", dir.string()}, "watch-durable-2", &port);
  Watcher w(port);
  // With prev_kv from the first write (revision 2): the refilled history, or COMPACTED at
  // the revision after a checkpoint the shutdown wrote.
  const auto r = w.call(watch_req(1, "d/", true, 2, true));
  std::uint64_t from = 2;
  if (r.status().code() == pb::Status::COMPACTED) {
    from = r.status().compact_revision();
    ASSERT_GT(from, 2u);
    ASSERT_TRUE(w.call(watch_req(2, "d/", true, from, true)).has_watch());
  } else {
    ASSERT_EQ(r.status().code(), pb::Status::OK) << r.ShortDebugString();
  }
  ASSERT_TRUE(w.read_until(
      [&] { return !w.pushes.empty() && w.pushes.back().watch_events().revision() == last; }));
  // Exact prev_kv: the value each push replaced is the one the previous push of the key set.
  std::map<std::string, std::string> seen;
  for (const auto& p : w.pushes) {
    for (const auto& e : p.watch_events().events()) {
      auto it = seen.find(e.kv().key());
      if (it != seen.end()) {
        ASSERT_TRUE(e.has_prev_kv()) << p.ShortDebugString();
        EXPECT_EQ(e.prev_kv().value(), it->second);
      } else if (from == 2) {
        EXPECT_FALSE(e.has_prev_kv());
      }
      seen[e.kv().key()] = e.kv().value();
    }
  }
  EXPECT_EQ(w.pushes.back().watch_events().events(0).type(), pb::Event::DELETE);
  // Without prev_kv, from revision 2: every write since the start (WAL or history).
  Watcher w2(port);
  ASSERT_TRUE(w2.call(watch_req(1, "d/", true, 2)).has_watch());
  ASSERT_TRUE(w2.read_until([&] { return w2.pushes.size() >= 31; }));
  EXPECT_EQ(w2.pushes.front().watch_events().revision(), 2u);
  EXPECT_EQ(w2.pushes.front().watch_events().events(0).kv().value(), "v0");
  EXPECT_EQ(w2.pushes.back().watch_events().revision(), last);
  srv.reset();
  fs::remove_all(dir);
}

// (b) A durable server with a small history: a watch from before it is served from the WAL
// (no prev_kv there); with prev_kv it is COMPACTED at the history's oldest revision.
TEST(Watch, WalCatchUpBehindTheHistory) {
  const fs::path dir = temp_path("watch-wal");
  fs::remove_all(dir);
  std::uint16_t port = 0;
  auto srv = start_server({"--data-dir", dir.string(), "--fsync", "no", "--watch-history", "16KiB"},
                          "watch-wal", &port);
  Client c(port);
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  for (int i = 0; i < 400; ++i) {
    last = c.call(put(i + 1, "w/" + std::to_string(i % 9), std::to_string(i))).header().revision();
    if (i == 0) first = last;
  }
  Watcher w(port);
  const auto r = w.call(watch_req(1, "w/", true, first, true));
  ASSERT_EQ(r.status().code(), pb::Status::COMPACTED) << r.ShortDebugString();
  EXPECT_GT(r.status().compact_revision(), first);
  ASSERT_TRUE(w.call(watch_req(2, "w/", true, first)).has_watch());
  ASSERT_TRUE(w.read_until([&] { return w.pushes.size() >= 400; }));
  for (std::size_t i = 0; i < 400; ++i) {
    const auto& ev = w.pushes[i].watch_events();
    ASSERT_EQ(ev.revision(), first + i);
    EXPECT_EQ(ev.events(0).kv().value(), std::to_string(i));
    EXPECT_FALSE(ev.events(0).has_prev_kv());
  }
  srv.reset();
  fs::remove_all(dir);
}

// (c) A watcher that never reads while the server takes as many updates as it can: the
// server's memory stays flat (history + output budget), and when the watcher finally reads it
// gets what was buffered, then one final COMPACTED push naming where to resume.
TEST(Watch, SlowWatcherLeavesMemoryFlatAndEndsCompacted) {
  std::uint16_t port = 0;
  auto srv = start_server({"--watch-history", "2MiB", "--max-output-bytes", "256KiB",
                           "--metrics-listen", "127.0.0.1:0"},
                          "watch-slow", &port);
  Watcher slow(port, 16 * 1024);
  const std::uint64_t id = slow.watch(watch_req(1, "s/", true));
  ASSERT_NE(id, 0u);
  const std::string value(1000, 'v');
  constexpr int kWriters = 2;
  constexpr int kBatch = 200;
  const int batches = std::getenv("KOVAN_WATCH_SLOW_BATCHES") != nullptr
                          ? std::atoi(std::getenv("KOVAN_WATCH_SLOW_BATCHES"))
                          : 400;  // 2 x 400 x 200 = 160 000 updates of 1 KB
  // The baseline is taken after an eighth of the updates (at most 20 000): the history is
  // full and every key written by then.
  const std::uint64_t warm_up =
      std::min<std::uint64_t>(20'000, std::uint64_t{kWriters} * batches * kBatch / 8);
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> base_rss{0};
  std::vector<std::thread> writers;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      Client c(port);
      ASSERT_TRUE(c.connected());
      std::uint64_t rid = 0;
      for (int b = 0; b < batches; ++b) {
        std::vector<pb::Request> rs;
        for (int i = 0; i < kBatch; ++i)
          rs.push_back(put(++rid, "s/" + std::to_string((b * kBatch + i) % 1000), value));
        ASSERT_TRUE(c.send_all(rs));
        for (int i = 0; i < kBatch; ++i) {
          auto r = c.recv(30s);
          ASSERT_TRUE(r.has_value());
          ASSERT_EQ(r->status().code(), pb::Status::OK);
        }
        // After the warm-up (the history filled, the keys written): the baseline.
        if (done.fetch_add(kBatch) + kBatch >= warm_up && t == 0 && base_rss.load() == 0) {
          base_rss.store(srv->rss_kib());
          srv->reset_peak();
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::uint64_t hwm = srv->hwm_kib();
  const std::uint64_t rss = srv->rss_kib();
  std::printf(
      "slow watcher: %llu updates in %.1f s (%.0f/s); VmRSS after warm-up %llu KiB, "
      "VmHWM after %llu KiB, VmRSS at the end %llu KiB\n",
      static_cast<unsigned long long>(done.load()), secs, done.load() / secs,
      static_cast<unsigned long long>(base_rss.load()), static_cast<unsigned long long>(hwm),
      static_cast<unsigned long long>(rss));
  const std::string metrics = scrape(srv->metrics_port());
  auto metric = [&](const std::string& name) -> std::uint64_t {
    const auto at = metrics.find("\n" + name + " ");
    return at == std::string::npos
               ? ~std::uint64_t{0}
               : std::strtoull(metrics.c_str() + at + name.size() + 2, nullptr, 10);
  };
  std::printf("slow watcher: kv_watch_pushes_total %llu, kv_watch_wakeups_total %llu\n",
              static_cast<unsigned long long>(metric("kv_watch_pushes_total")),
              static_cast<unsigned long long>(metric("kv_watch_wakeups_total")));
  // The watch is open, or already ended: the server ends a watch that fell past the history
  // as soon as its connection's output has room to pull, which a kernel send buffer that
  // drained part of the budget can give it before the writers stop.
  EXPECT_LE(metric("kv_watches_open"), 1u);
  EXPECT_GT(metric("kv_watch_wakeups_total"), 0u);
  EXPECT_LE(metric("kv_watch_history_bytes"), 2u << 20);
  ASSERT_NE(base_rss.load(), 0u);
  // The server's own accounting: the connections hold at most their output budget (which
  // is at least --max-frame-bytes, 4 MiB; one push may pass it), whatever the updates.
  const auto out_at = metrics.find("kv_connection_buffer_bytes{direction=\"out\"} ");
  ASSERT_NE(out_at, std::string::npos);
  EXPECT_LE(std::strtoull(metrics.c_str() + out_at + 44, nullptr, 10), 5u << 20)
      << "output held for the watcher beyond its budget";
  // Unbounded buffering would hold about 160 MB of events; the bounds (2 MiB of history,
  // the output budget) let the peak grow by 1-3 MiB past the warm-up in practice. Under
  // AddressSanitizer the process's memory is the allocator's quarantine of freed blocks
  // (hundreds of MiB by design), not what the server holds: the accounting above is the
  // check there, and this one runs in the default (Release) suite.
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(hwm, base_rss.load() + 12 * 1024) << "server memory grew with the updates";
#endif
  // Now the watcher reads: what was buffered, then the end of its watch.
  ASSERT_TRUE(slow.read_until(
      [&] { return !slow.pushes.empty() && slow.pushes.back().watch_events().canceled(); }, 120s));
  const auto& end = slow.pushes.back().watch_events();
  EXPECT_EQ(end.cancel_code(), pb::Status::COMPACTED);
  EXPECT_EQ(end.watch_id(), id);
  EXPECT_GT(end.compact_revision(), end.resume_revision());
  ASSERT_GE(slow.pushes.size(), 2u);
  // The resume revision is the first one not delivered: right after the last push.
  EXPECT_EQ(end.resume_revision(),
            slow.pushes[slow.pushes.size() - 2].watch_events().revision() + 1);
  EXPECT_LT(slow.pushes.size(), done.load() / 4) << "far fewer pushes than updates were kept";
  // The connection stays usable; the watch is gone.
  EXPECT_EQ(slow.call(cancel_req(7, id)).status().code(), pb::Status::NOT_FOUND);
}

// (d) 10 000 watchers on one key over four connections: each gets every event.
TEST(Watch, TenThousandWatchersOnOneKey) {
  std::uint16_t port = 0;
  auto srv = start_server({}, "watch-10k", &port);
  constexpr int kConns = 4;
  constexpr int kPer = 2500;
  constexpr int kEvents = 12;
  std::vector<std::unique_ptr<Watcher>> ws;
  for (int c = 0; c < kConns; ++c) {
    ws.push_back(std::make_unique<Watcher>(port));
    std::vector<pb::Request> rs;
    for (int i = 0; i < kPer; ++i) rs.push_back(watch_req(i + 1, "hot", false));
    ASSERT_TRUE(ws.back()->client().send_all(rs));
    for (int i = 0; i < kPer; ++i) {
      auto r = ws.back()->client().recv(30s);
      ASSERT_TRUE(r.has_value());
      ASSERT_EQ(r->status().code(), pb::Status::OK) << r->ShortDebugString();
    }
  }
  Client w(port);
  std::vector<std::uint64_t> revs;
  for (int i = 0; i < kEvents; ++i) {
    revs.push_back(w.call(put(i + 1, "hot", std::to_string(i))).header().revision());
  }
  for (auto& x : ws) {
    ASSERT_TRUE(
        x->read_until([&] { return x->pushes.size() >= std::size_t{kPer} * kEvents; }, 120s))
        << x->pushes.size();
    std::map<std::uint64_t, std::vector<std::uint64_t>> per;
    for (const auto& p : x->pushes)
      per[p.watch_events().watch_id()].push_back(p.watch_events().revision());
    ASSERT_EQ(per.size(), std::size_t{kPer});
    for (const auto& [id, rv] : per) ASSERT_EQ(rv, revs) << "watch " << id;
  }
}

// A revision whose events do not fit one frame is split into consecutive fragments.
TEST(Watch, LargeRevisionIsFragmented) {
  std::uint16_t port = 0;
  auto srv = start_server({"--max-frame-bytes", "64KiB", "--max-value-bytes", "16KiB"},
                          "watch-fragment", &port);
  Watcher w(port);
  const std::uint64_t id = w.watch(watch_req(1, "f/", true, 0, true));
  // One interactive transaction of 30 puts of 8 KB (a request each: every frame fits).
  Client c(port);
  const auto b = c.call(begin(1));
  ASSERT_EQ(b.status().code(), pb::Status::OK);
  const std::uint64_t tx = b.begin().txn_id();
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(c.call(put(i + 2, "f/" + std::to_string(100 + i),
                         std::string(8000, static_cast<char>('a' + i % 26)), tx))
                  .status()
                  .code(),
              pb::Status::OK);
  }
  const auto r = c.call(commit(50, tx));
  ASSERT_EQ(r.status().code(), pb::Status::OK) << r.ShortDebugString();
  ASSERT_TRUE(w.read_until(
      [&] { return !w.pushes.empty() && !w.pushes.back().watch_events().fragment(); }));
  ASSERT_GE(w.pushes.size(), 4u);
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < w.pushes.size(); ++i) {
    const auto& ev = w.pushes[i].watch_events();
    EXPECT_EQ(ev.watch_id(), id);
    EXPECT_EQ(ev.revision(), r.header().revision());
    EXPECT_EQ(ev.fragment(), i + 1 < w.pushes.size());
    for (const auto& e : ev.events()) keys.push_back(e.kv().key());
  }
  ASSERT_EQ(keys.size(), 30u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
}

TEST(Watch, LimitsCancelAndBadRequests) {
  std::uint16_t port = 0;
  auto srv = start_server({"--max-watches", "3", "--max-watches-per-connection", "2"},
                          "watch-limits", &port);
  Watcher a(port);
  Watcher b(port);
  const std::uint64_t a1 = a.watch(watch_req(1, "x", false));
  ASSERT_NE(a.watch(watch_req(2, "y", false)), 0u);
  EXPECT_EQ(a.call(watch_req(3, "z", false)).status().code(), pb::Status::RESOURCE_EXHAUSTED);
  ASSERT_NE(b.watch(watch_req(1, "x", false)), 0u);
  EXPECT_EQ(b.call(watch_req(2, "z", false)).status().code(), pb::Status::RESOURCE_EXHAUSTED);
  EXPECT_EQ(a.call(cancel_req(4, a1)).status().code(), pb::Status::OK);
  EXPECT_EQ(a.call(cancel_req(5, a1)).status().code(), pb::Status::NOT_FOUND);
  EXPECT_NE(b.watch(watch_req(3, "z", false)), 0u);  // the canceled slot is free again
  // A closed connection gives its watches back.
  a.client().close();
  Watcher c(port);
  EXPECT_TRUE(eventually(
      [&] { return c.call(watch_req(1, "q", false)).status().code() == pb::Status::OK; }, 10s));
  // Malformed ranges.
  Watcher d(port);
  pb::Request bad = watch_req(1, "a", true);
  bad.mutable_watch()->set_range_end("b");
  EXPECT_EQ(d.call(bad).status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_EQ(d.call(watch_req(2, "", false)).status().code(), pb::Status::INVALID_ARGUMENT);
  pb::Request back = watch_req(3, "m", false);
  back.mutable_watch()->set_range_end("a");
  EXPECT_EQ(d.call(back).status().code(), pb::Status::INVALID_ARGUMENT);
}

TEST(Watch, ShutdownEndsWatchesWithUnavailable) {
  std::uint16_t port = 0;
  auto srv = start_server({}, "watch-shutdown", &port);
  Watcher w(port);
  const std::uint64_t id = w.watch(watch_req(1, "k", true));
  Client c(port);
  const std::uint64_t rev = c.call(put(1, "k1", "v")).header().revision();
  ASSERT_TRUE(w.read_until([&] { return w.pushes.size() == 1; }));
  srv->signal(SIGTERM);
  ASSERT_TRUE(w.read_until([&] { return w.pushes.size() == 2; }, 20s));
  const auto& end = w.pushes.back().watch_events();
  EXPECT_TRUE(end.canceled());
  EXPECT_EQ(end.watch_id(), id);
  EXPECT_EQ(end.cancel_code(), pb::Status::UNAVAILABLE);
  EXPECT_EQ(end.resume_revision(), rev + 1);
  const auto notice = w.client().recv(10s);
  ASSERT_TRUE(notice.has_value());
  EXPECT_EQ(notice->id(), 0u);
  EXPECT_EQ(notice->status().code(), pb::Status::UNAVAILABLE);
}

TEST(Watch, ReadRoleWatchesInsideItsPrefixOnly) {
  const fs::path users = temp_path("watch.users");
  {
    std::ofstream out(users);
    out << "reader read " << server::hash_password("pw", 1000) << " prefix=t/\n"
        << "writer readwrite " << server::hash_password("pw", 1000) << "\n";
  }
  std::uint16_t port = 0;
  auto srv = start_server({"--users", users.string()}, "watch-auth", &port);
  auto login = [](Watcher& w, const std::string& user) {
    pb::Request r;
    r.set_id(100);
    r.mutable_authenticate()->set_user(user);
    r.mutable_authenticate()->set_password("pw");
    ASSERT_EQ(w.call(r).status().code(), pb::Status::OK);
  };
  Watcher anon(port);
  EXPECT_EQ(anon.call(watch_req(1, "t/", true)).status().code(), pb::Status::UNAUTHENTICATED);
  Watcher r(port);
  login(r, "reader");
  EXPECT_EQ(r.call(watch_req(1, "u/", true)).status().code(), pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(r.call(watch_req(2, "", true)).status().code(), pb::Status::PERMISSION_DENIED);
  const std::uint64_t id = r.watch(watch_req(3, "t/", true));
  ASSERT_NE(id, 0u);
  Watcher wr(port);
  login(wr, "writer");
  ASSERT_EQ(wr.call(put(1, "u/x", "1")).status().code(), pb::Status::OK);
  const std::uint64_t rev = wr.call(put(2, "t/x", "2")).header().revision();
  ASSERT_TRUE(r.read_until([&] { return !r.pushes.empty(); }));
  EXPECT_EQ(r.pushes[0].watch_events().revision(), rev);
  EXPECT_EQ(r.pushes[0].watch_events().events(0).kv().key(), "t/x");
  fs::remove(users);
}

}  // namespace
}  // namespace kv::test
