// The watch feed of the engine (storage/watch.hpp, docs/STORAGE.md section 11): groups in
// revision order, whole, with exact prev key-values, under concurrent writers of every
// kind; never beyond the visible revision; bounded history and `compacted`; refill after a
// restart; catch-up from the WAL (without prev).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "storage/durability.hpp"
#include "storage/engine.hpp"

namespace kv::storage {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kv-watch-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<Engine> open_ok(const Options& o) {
  std::string err;
  auto e = Engine::open(o, err);
  if (e == nullptr) throw std::runtime_error("open failed: " + err);
  return e;
}

Options durable(const std::string& dir, FsyncMode mode = FsyncMode::kNo) {
  Options o;
  o.background_sweeper = false;
  o.durability.data_dir = dir;
  o.durability.fsync = mode;
  return o;
}

// What a writer knows it committed at one revision: key -> value (nullopt: a delete).
using Expected = std::map<Revision, std::map<std::string, std::optional<std::string>>>;

struct Model {
  std::map<std::string, KeyValue> live;
};

// Applies one group to the model, checking every event against the state before it (exact
// prev key-value, create revision and version). Returns an error text or "".
std::string apply_checked(Model& m, const ChangeGroup& g, bool check_prev) {
  std::string last;
  for (const ChangeEvent& e : g.events) {
    const std::string key(e.key);
    if (!last.empty() && !(last < key)) return "events not in key order at " + key;
    last = key;
    auto it = m.live.find(key);
    const bool existed = it != m.live.end();
    if (check_prev) {
      if (e.has_prev != existed) return "prev presence wrong for " + key;
      if (existed && (e.prev_value != it->second.value ||
                      e.prev_create_revision != it->second.create_revision ||
                      e.prev_mod_revision != it->second.mod_revision ||
                      e.prev_version != it->second.version)) {
        return "prev_kv wrong for " + key + " at " + std::to_string(g.revision);
      }
    }
    if (e.is_delete) {
      if (!existed) return "delete of an absent key " + key;
      m.live.erase(it);
      continue;
    }
    KeyValue kv;
    kv.key = key;
    kv.value = e.value;
    kv.mod_revision = g.revision;
    kv.create_revision = existed ? it->second.create_revision : g.revision;
    kv.version = existed ? it->second.version + 1 : 1;
    if (e.create_revision != kv.create_revision || e.version != kv.version) {
      return "create_revision/version wrong for " + key;
    }
    m.live[key] = kv;
  }
  return {};
}

// Reads every group from `from` until the cursor passes `until`, with a small budget so
// that cursors move through many calls.
std::vector<std::shared_ptr<const ChangeGroup>> drain(const Engine& e, ChangeQuery q,
                                                      Revision until) {
  std::vector<std::shared_ptr<const ChangeGroup>> out;
  while (q.from <= until) {
    ChangeBatch b = e.read_changes(q);
    EXPECT_FALSE(b.compacted) << "at " << q.from;
    if (b.compacted) break;
    for (auto& g : b.groups) out.push_back(g);
    EXPECT_GE(b.next, q.from);
    if (b.next == q.from && b.groups.empty()) std::this_thread::yield();
    q.from = b.next;
  }
  return out;
}

// The checker: writers of every kind on 12 keys while a reader follows the feed; every
// committed change appears exactly once, in one group per revision, in revision order, with
// the exact prev key-value, and never before the revision is visible.
void run_checker(Engine& e) {
  constexpr int kWriters = 4;
  constexpr int kOpsPerWriter = 400;
  auto key = [](int i) { return "k" + std::to_string(i % 12); };
  std::mutex mu;
  Expected expected;
  auto record = [&](Revision r, std::map<std::string, std::optional<std::string>> w) {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(expected.emplace(r, std::move(w)).second) << "revision twice: " << r;
  };
  const Revision start = e.current_revision() + 1;
  std::atomic<bool> done{false};
  std::atomic<int> beyond_visible{0};
  std::vector<std::shared_ptr<const ChangeGroup>> seen;
  std::thread reader([&] {
    ChangeQuery q;
    q.from = start;
    q.need_prev = true;
    q.max_bytes = 600;  // a few groups per call
    for (;;) {
      const bool last = done.load();
      ChangeBatch b = e.read_changes(q);
      const Revision visible_after = e.current_revision();
      ASSERT_FALSE(b.compacted);
      for (auto& g : b.groups) {
        if (g->revision > visible_after) beyond_visible.fetch_add(1);
        seen.push_back(g);
      }
      q.from = b.next;
      if (last && q.from > e.current_revision()) break;
      if (b.groups.empty()) std::this_thread::yield();
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kOpsPerWriter; ++i) {
        const int k = (i * 7 + w * 5) % 12;
        const std::string v = "w" + std::to_string(w) + "-" + std::to_string(i);
        switch (i % 6) {
          case 0:
          case 1: {
            auto r = e.put(key(k), v);
            if (r.ok()) record(r->revision, {{key(k), v}});
            break;
          }
          case 2: {
            auto r = e.del(key(k), true);
            if (r.ok() && r->deleted == 1) record(r->revision, {{key(k), std::nullopt}});
            break;
          }
          case 3: {
            auto r = e.delete_range("k1", "k2", true);  // k1, k10, k11
            if (r.ok() && r->deleted > 0) {
              std::map<std::string, std::optional<std::string>> m;
              for (const auto& kv : r->prev_kvs) m[kv.key] = std::nullopt;
              record(r->revision, m);
            }
            break;
          }
          case 4: {
            CondTxn t;
            Compare c;
            c.key = key(k);
            c.target = Compare::Target::kVersion;
            c.op = Compare::Op::kGreater;
            c.number = -1;
            t.compare.push_back(c);
            TxnOp a;
            a.type = TxnOp::Type::kPut;
            a.key = key(k);
            a.value = v;
            TxnOp b = a;
            b.key = key(k + 3);
            t.success = {a, b};
            auto r = e.txn(t);
            if (r.ok() && r->succeeded) record(r->revision, {{key(k), v}, {key(k + 3), v}});
            break;
          }
          case 5: {
            auto tx = e.begin();
            if (!tx.ok()) break;
            (void)tx->get(key(k + 1));
            if (!tx->put(key(k + 1), v).ok() || !tx->put(key(k + 2), v).ok()) break;
            auto r = tx->commit();
            if (r.ok()) record(*r, {{key(k + 1), v}, {key(k + 2), v}});
            break;
          }
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  done.store(true);
  reader.join();
  EXPECT_EQ(beyond_visible.load(), 0) << "a group was served before its revision was visible";

  // Exactly the committed changes, one group per revision, in order.
  ASSERT_EQ(seen.size(), expected.size());
  Model m;
  Revision prev = 0;
  auto exp = expected.begin();
  for (const auto& g : seen) {
    ASSERT_GT(g->revision, prev) << "revision order";
    prev = g->revision;
    ASSERT_EQ(g->revision, exp->first) << "a revision missing or extra";
    std::map<std::string, std::optional<std::string>> got;
    for (const ChangeEvent& ev : g->events) {
      got[std::string(ev.key)] = ev.is_delete ? std::nullopt : std::optional<std::string>(ev.value);
    }
    EXPECT_EQ(got, exp->second) << "group of revision " << g->revision;
    ++exp;
    ASSERT_EQ(apply_checked(m, *g, true), "");
  }
  // The model built from the feed is the store.
  auto all = e.scan("", "");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->kvs.size(), m.live.size());
  for (const KeyValue& kv : all->kvs) {
    const KeyValue& x = m.live.at(kv.key);
    EXPECT_EQ(kv.value, x.value);
    EXPECT_EQ(kv.mod_revision, x.mod_revision);
    EXPECT_EQ(kv.create_revision, x.create_revision);
    EXPECT_EQ(kv.version, x.version);
  }
}

TEST(ChangeLog, CheckerInMemory) {
  Options o;
  Engine e(o);
  run_checker(e);
}

// Durable: a commit's group sits in the log for the whole WAL write before it is visible,
// which is when a reader that ignored the visible revision would see it.
TEST(ChangeLog, CheckerDurable) {
  TempDir d;
  auto e = open_ok(durable(d.path(), FsyncMode::kAlways));
  run_checker(*e);
}

TEST(ChangeLog, RangeFilterAndBudget) {
  Engine e;
  ASSERT_TRUE(e.put("a", "1").ok());
  ASSERT_TRUE(e.put("b1", "2").ok());
  ASSERT_TRUE(e.put("c", "3").ok());
  ASSERT_TRUE(e.put("b2", "4").ok());
  ChangeQuery q;
  q.from = 1;
  q.start = "b";
  q.end = "c";
  ChangeBatch b = e.read_changes(q);
  ASSERT_FALSE(b.compacted);
  ASSERT_EQ(b.groups.size(), 2u);
  EXPECT_EQ(b.groups[0]->events[0].key, "b1");
  EXPECT_EQ(b.groups[1]->events[0].key, "b2");
  EXPECT_EQ(b.next, e.current_revision() + 1);
  // A budget of one byte still returns one group, and the cursor to go on from.
  q.max_bytes = 1;
  b = e.read_changes(q);
  ASSERT_EQ(b.groups.size(), 1u);
  EXPECT_EQ(b.groups[0]->events[0].key, "b1");
  q.from = b.next;
  b = e.read_changes(q);
  ASSERT_EQ(b.groups.size(), 1u);
  EXPECT_EQ(b.groups[0]->events[0].key, "b2");
}

TEST(ChangeLog, BoundedHistoryAndCompacted) {
  Options o;
  o.watch_history_bytes = 8 * 1024;
  Engine e(o);
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(e.put("key" + std::to_string(i % 10), "v").ok());
  const ChangeLogStats s = e.change_log_stats();
  EXPECT_TRUE(s.enabled);
  EXPECT_LE(s.bytes, o.watch_history_bytes);
  EXPECT_GT(s.evicted, 0u);
  EXPECT_GT(s.first_kept, 2u);
  ChangeQuery q;
  q.from = 2;
  ChangeBatch b = e.read_changes(q);
  EXPECT_TRUE(b.compacted);
  EXPECT_EQ(b.compact_revision, s.first_kept);
  EXPECT_EQ(e.oldest_change_revision(false), s.first_kept);
  // From the oldest kept revision on: every revision up to the current one, in order.
  q.from = s.first_kept;
  auto groups = drain(e, q, e.current_revision());
  ASSERT_EQ(groups.size(), e.current_revision() - s.first_kept + 1);
  for (std::size_t i = 0; i < groups.size(); ++i) {
    EXPECT_EQ(groups[i]->revision, s.first_kept + i);
  }
}

TEST(ChangeLog, ListenerCalledAfterVisibility) {
  Engine e;
  std::atomic<int> calls{0};
  std::atomic<int> early{0};
  e.set_change_listener([&](Revision r) {
    calls.fetch_add(1);
    if (e.current_revision() < r) early.fetch_add(1);
  });
  ASSERT_TRUE(e.put("a", "1").ok());
  ASSERT_TRUE(e.del("a").ok());
  ASSERT_TRUE(e.del("a").ok());  // deletes nothing: no revision changed anything
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(early.load(), 0);
}

// A transaction whose only write deletes an absent key commits a revision that installs
// nothing: no group, and the feed goes on.
TEST(ChangeLog, CommitThatInstallsNothingHasNoGroup) {
  Engine e;
  ASSERT_TRUE(e.put("a", "1").ok());
  auto tx = e.begin();
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(tx->del("absent").ok());
  auto r = tx->commit();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(e.put("b", "2").ok());
  ChangeQuery q;
  q.from = 1;
  ChangeBatch b = e.read_changes(q);
  ASSERT_EQ(b.groups.size(), 2u);
  EXPECT_EQ(b.groups[0]->events[0].key, "a");
  EXPECT_EQ(b.groups[1]->events[0].key, "b");
}

// After a restart the log is refilled from the replayed WAL with exact prev key-values;
// what the checkpoint covers is served from the WAL segments still on disk, without prev.
TEST(ChangeLog, RestartRefillAndWalCatchUp) {
  TempDir d;
  Options o = durable(d.path());
  o.durability.segment_bytes = 512;  // many segments
  std::vector<std::shared_ptr<const ChangeGroup>> before;
  Revision ckpt = 0;
  Revision last = 0;
  {
    auto e = open_ok(o);
    for (int i = 0; i < 60; ++i)
      ASSERT_TRUE(e->put("k" + std::to_string(i % 5), "a" + std::to_string(i)).ok());
    auto c = e->checkpoint();
    ASSERT_TRUE(c.ok());
    ckpt = *c;
    for (int i = 0; i < 40; ++i) {
      if (i % 4 == 3) {
        ASSERT_TRUE(e->del("k" + std::to_string(i % 5)).ok());
      } else {
        ASSERT_TRUE(e->put("k" + std::to_string(i % 5), "b" + std::to_string(i)).ok());
      }
    }
    last = e->current_revision();
    ChangeQuery q;
    q.from = ckpt + 1;
    q.need_prev = true;
    before = drain(*e, q, last);
    ASSERT_FALSE(before.empty());
  }
  auto e = open_ok(o);
  ASSERT_EQ(e->current_revision(), last);
  // With prev: the refilled history starts after the checkpoint.
  EXPECT_EQ(e->oldest_change_revision(true), ckpt + 1);
  ChangeQuery q;
  q.from = 2;
  q.need_prev = true;
  ChangeBatch b = e->read_changes(q);
  EXPECT_TRUE(b.compacted);
  EXPECT_EQ(b.compact_revision, ckpt + 1);
  q.from = ckpt + 1;
  auto after = drain(*e, q, last);
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    ASSERT_EQ(after[i]->revision, before[i]->revision);
    ASSERT_EQ(after[i]->events.size(), before[i]->events.size());
    for (std::size_t j = 0; j < after[i]->events.size(); ++j) {
      const ChangeEvent& x = after[i]->events[j];
      const ChangeEvent& y = before[i]->events[j];
      EXPECT_EQ(x.key, y.key);
      EXPECT_EQ(x.is_delete, y.is_delete);
      EXPECT_EQ(x.value, y.value);
      EXPECT_EQ(x.has_prev, y.has_prev);
      EXPECT_EQ(x.prev_value, y.prev_value);
      EXPECT_EQ(x.prev_mod_revision, y.prev_mod_revision);
      EXPECT_EQ(x.prev_version, y.prev_version);
    }
  }
  // Without prev: older revisions from the WAL segments the checkpoint did not trim.
  const Revision oldest = e->oldest_change_revision(false);
  EXPECT_LE(oldest, ckpt + 1);
  q.need_prev = false;
  q.from = oldest;
  q.max_bytes = 300;
  auto all = drain(*e, q, last);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front()->revision, oldest);
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]->revision, oldest + i);  // every revision wrote one key
    EXPECT_EQ(all[i]->has_prev, all[i]->revision > ckpt);
  }
  EXPECT_EQ(all.back()->revision, last);
}

// Each group is one block whose events view the group's own bytes: the groups a reader holds
// stay exact (keys, values and prev values longer than a short string's inline buffer) after
// the log has evicted them and new groups have taken their memory, and each group is charged
// its events' bytes plus the fixed overheads.
TEST(ChangeLog, HeldGroupsStayExactAfterEviction) {
  Options o;
  o.watch_history_bytes = 32 * 1024;
  Engine e(o);
  auto key = [](int k) { return "a-rather-long-key-" + std::to_string(k); };
  auto val = [](int i) {
    return std::string(20 + i % 7, static_cast<char>('a' + i % 26)) + "/" + std::to_string(i);
  };
  struct Want {
    std::string key, value, prev;
    bool has_prev = false;
  };
  std::map<std::string, std::string> live;
  std::map<Revision, std::vector<Want>> want;
  const Revision start = e.current_revision() + 1;
  for (int i = 0; i < 40; ++i) {
    std::map<std::string, std::string> w;  // key order, as the group's events
    w[key(i % 5)] = val(i);
    if (i % 3 == 2) w[key(i % 5 + 5)] = val(i + 1000);
    CondTxn t;
    for (const auto& [k, v] : w) {
      TxnOp op;
      op.type = TxnOp::Type::kPut;
      op.key = k;
      op.value = v;
      t.success.push_back(op);
    }
    auto r = e.txn(t);
    ASSERT_TRUE(r.ok() && r->succeeded);
    std::vector<Want>& evs = want[r->revision];
    for (const auto& [k, v] : w) {
      auto it = live.find(k);
      evs.push_back({k, v, it == live.end() ? "" : it->second, it != live.end()});
      live[k] = v;
    }
  }
  ChangeQuery q;
  q.from = start;
  q.need_prev = true;
  auto held = drain(e, q, e.current_revision());
  ASSERT_EQ(held.size(), want.size());
  // Evict every held group; the new groups have the same sizes (and take the freed blocks).
  for (int i = 40; i < 400; ++i) ASSERT_TRUE(e.put(key(i % 5), val(i)).ok());
  ASSERT_GT(e.change_log_stats().first_kept, want.rbegin()->first);
  for (const auto& g : held) {
    ASSERT_EQ(want.count(g->revision), 1u);
    const std::vector<Want>& evs = want[g->revision];
    ASSERT_EQ(g->events.size(), evs.size()) << "at " << g->revision;
    std::size_t bytes = kChangeGroupOverhead;
    for (std::size_t j = 0; j < evs.size(); ++j) {
      const ChangeEvent& ev = g->events[j];
      EXPECT_EQ(ev.key, evs[j].key) << "at " << g->revision;
      EXPECT_EQ(ev.value, evs[j].value) << "at " << g->revision;
      EXPECT_EQ(ev.has_prev, evs[j].has_prev) << "at " << g->revision;
      EXPECT_EQ(ev.prev_value, evs[j].prev) << "at " << g->revision;
      bytes += kChangeEventOverhead + evs[j].key.size() + evs[j].value.size() + evs[j].prev.size();
    }
    EXPECT_EQ(g->bytes, bytes) << "at " << g->revision;
  }
}

// A running durable engine with a tiny history: a cursor behind it is served from the WAL
// (groups without prev), a cursor that needs prev gets `compacted`.
TEST(ChangeLog, WalCatchUpWhileRunning) {
  TempDir d;
  Options o = durable(d.path());
  o.watch_history_bytes = 2048;
  auto e = open_ok(o);
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(e->put("x" + std::to_string(i % 7), std::to_string(i)).ok());
  const Revision last = e->current_revision();
  const Revision first_kept = e->change_log_stats().first_kept;
  ASSERT_GT(first_kept, 10u);
  ChangeQuery q;
  q.from = 2;
  q.need_prev = true;
  ChangeBatch b = e->read_changes(q);
  EXPECT_TRUE(b.compacted);
  EXPECT_EQ(b.compact_revision, first_kept);
  q.need_prev = false;
  q.max_bytes = 1000;
  auto all = drain(*e, q, last);
  ASSERT_EQ(all.size(), 200u);
  Model m;
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]->revision, 2 + i);
    ASSERT_EQ(all[i]->events.size(), 1u);
    EXPECT_EQ(all[i]->events[0].value, std::to_string(i));
    EXPECT_EQ(apply_checked(m, *all[i], false), "");
  }
}

}  // namespace
}  // namespace kv::storage
