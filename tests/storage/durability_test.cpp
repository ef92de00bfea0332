// Durability of the storage engine (docs/PERSISTENCE.md): WAL round trips, torn tails at
// every offset, damage in the middle, missing and empty segments, checkpoints and a crash at
// each of their steps, the lock file, failed writes/fsyncs, group commit, visibility only
// after durability, and the memory a checkpoint costs under writes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include "storage/engine.hpp"
#include "test_util.hpp"

namespace kv::storage {
namespace {

namespace fs = std::filesystem;
using testing::cat;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kv-dura-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

Options durable(const std::string& dir, FsyncMode mode = FsyncMode::kAlways) {
  Options o;
  o.background_sweeper = false;
  o.durability.data_dir = dir;
  o.durability.fsync = mode;
  return o;
}

// Opens or fails the test (gtest reports the exception; no null engine is used after it).
std::unique_ptr<Engine> open_ok(const Options& o) {
  std::string err;
  auto e = Engine::open(o, err);
  if (e == nullptr) throw std::runtime_error("open failed: " + err);
  return e;
}

std::vector<fs::path> wal_segments(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("wal-", 0) == 0 && e.path().extension() == ".log") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> checkpoints(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".ckpt") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Everything an engine holds, with metadata, as one map.
std::map<std::string, KeyValue> dump(Engine& e) {
  std::map<std::string, KeyValue> m;
  Result<ScanResult> r = e.scan("", "");
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  for (KeyValue& kv : r->kvs) m[kv.key] = kv;
  return m;
}

bool same(const std::map<std::string, KeyValue>& a, const std::map<std::string, KeyValue>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, kv] : a) {
    auto it = b.find(k);
    if (it == b.end()) return false;
    const KeyValue& o = it->second;
    if (o.value != kv.value || o.create_revision != kv.create_revision ||
        o.mod_revision != kv.mod_revision || o.version != kv.version) {
      return false;
    }
  }
  return true;
}

// A mixed history: puts, overwrites, deletes, re-creations, a multi-key transaction and a
// delete of an absent key inside a transaction (a revision with no version).
void write_history(Engine& e) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(e.put(cat("k", i), cat("v", i)).ok());
  for (int i = 0; i < 20; i += 2) ASSERT_TRUE(e.put(cat("k", i), cat("w", i)).ok());
  for (int i = 0; i < 20; i += 5) ASSERT_TRUE(e.del(cat("k", i)).ok());
  ASSERT_TRUE(e.put("k0", "again").ok());
  Result<Transaction> t = e.begin();
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(t->put("t1", "a").ok());
  ASSERT_TRUE(t->put("t2", "b").ok());
  ASSERT_TRUE(t->del("k1").ok());
  ASSERT_TRUE(t->commit().ok());
  Result<Transaction> t2 = e.begin();
  ASSERT_TRUE(t2.ok());
  ASSERT_TRUE(t2->del("never-written").ok());
  ASSERT_TRUE(t2->commit().ok());
}

void flip_bit(const fs::path& p, std::uint64_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// ------------------------------------------------------------------ round trips
TEST(Durability, RoundTripKeepsValuesMetadataAndRevision) {
  TempDir dir;
  std::map<std::string, KeyValue> before;
  Revision rev = 0;
  {
    auto e = open_ok(durable(dir.path()));
    write_history(*e);
    before = dump(*e);
    rev = e->current_revision();
    EXPECT_TRUE(e->durability_stats().enabled);
  }
  auto e = open_ok(durable(dir.path()));
  EXPECT_EQ(e->current_revision(), rev);
  EXPECT_TRUE(same(dump(*e), before));
  EXPECT_TRUE(e->recovery_notes().empty());
  // Revisions keep counting; create_revision and version go on from the recovered ones.
  Result<PutResult> p = e->put("k2", "x");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->revision, rev + 1);
  Result<KeyValue> g = e->get("k2");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->create_revision, before["k2"].create_revision);
  EXPECT_EQ(g->version, before["k2"].version + 1);
}

TEST(Durability, EveryFsyncModeRoundTripsOnCleanClose) {
  for (FsyncMode m : {FsyncMode::kAlways, FsyncMode::kEverySec, FsyncMode::kNo}) {
    TempDir dir;
    std::map<std::string, KeyValue> before;
    {
      auto e = open_ok(durable(dir.path(), m));
      write_history(*e);
      before = dump(*e);
    }
    auto e = open_ok(durable(dir.path(), m));
    EXPECT_TRUE(same(dump(*e), before)) << static_cast<int>(m);
  }
}

TEST(Durability, CheckpointThenWalRoundTripAndTrimsSegments) {
  TempDir dir;
  Options o = durable(dir.path());
  o.durability.segment_bytes = 256;  // a segment every few records
  std::map<std::string, KeyValue> before;
  Revision ck = 0;
  {
    auto e = open_ok(o);
    write_history(*e);
    const auto segs_before = wal_segments(dir.path()).size();
    EXPECT_GT(segs_before, 3u);
    Result<Revision> c = e->checkpoint();
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    ck = *c;
    EXPECT_EQ(ck, e->current_revision());
    EXPECT_LT(wal_segments(dir.path()).size(), segs_before);
    EXPECT_EQ(e->durability_stats().last_checkpoint_revision, ck);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(e->put(cat("after", i), "x").ok());
    ASSERT_TRUE(e->del("k3").ok());
    before = dump(*e);
  }
  ASSERT_EQ(checkpoints(dir.path()).size(), 1u);
  auto e = open_ok(o);
  EXPECT_TRUE(same(dump(*e), before));
  EXPECT_EQ(e->durability_stats().last_checkpoint_revision, ck);
}

TEST(Durability, ByteTriggeredCheckpointsRunInTheBackground) {
  TempDir dir;
  Options o = durable(dir.path());
  o.durability.checkpoint_every_bytes = 2000;
  o.durability.faults = std::make_shared<FileFaults>();
  std::promise<void> done;
  std::atomic<bool> once{true};
  o.durability.faults->checkpoint_step = [&](CheckpointStep s) {
    if (s == CheckpointStep::kBeforeTrim && once.exchange(false)) done.set_value();
    return true;
  };
  auto e = open_ok(o);
  // Each record is over 100 bytes: 20 puts pass the threshold.
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(e->put(cat("k", i % 5), std::string(100, 'x')).ok());
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  e.reset();
  EXPECT_EQ(checkpoints(dir.path()).size(), 1u);
}

// ------------------------------------------------------------------ torn tails, damage
// The last record cut at every byte offset: recovery keeps every earlier commit, cuts the
// torn one with a note, and the repaired log stays valid across a second restart.
TEST(Durability, TornTailAtEveryOffsetOfTheLastRecord) {
  TempDir dir;
  std::map<std::string, KeyValue> before_last;
  std::uint64_t start = 0, end = 0;
  Revision rev_before_last = 0;
  {
    auto e = open_ok(durable(dir.path()));
    write_history(*e);
    before_last = dump(*e);
    rev_before_last = e->current_revision();
    start = fs::file_size(wal_segments(dir.path()).back());
    ASSERT_TRUE(e->put("last", std::string(40, 'L')).ok());
    end = fs::file_size(wal_segments(dir.path()).back());
  }
  ASSERT_GT(end, start + 12);
  const fs::path seg = wal_segments(dir.path()).back();
  for (std::uint64_t cut = start; cut < end; ++cut) {
    TempDir copy;
    fs::copy(dir.path(), copy.path(),
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    const fs::path s = fs::path(copy.path()) / seg.filename();
    fs::resize_file(s, cut);
    {
      auto e = open_ok(durable(copy.path()));
      ASSERT_NE(e, nullptr) << "cut at " << cut;
      EXPECT_TRUE(same(dump(*e), before_last)) << "cut at " << cut;
      EXPECT_EQ(e->current_revision(), rev_before_last) << "cut at " << cut;
      if (cut > start) {
        ASSERT_EQ(e->recovery_notes().size(), 1u) << "cut at " << cut;
        EXPECT_NE(e->recovery_notes()[0].find("torn"), std::string::npos);
      }
      ASSERT_TRUE(e->put("next", "n").ok());
    }
    auto e = open_ok(durable(copy.path()));  // the cut segment is no longer the last
    ASSERT_NE(e, nullptr) << "second open, cut at " << cut;
    EXPECT_EQ(dump(*e).size(), before_last.size() + 1) << "cut at " << cut;
  }
}

// A flipped bit in any byte of a record in the middle of the log refuses to open, naming the
// file and the record's offset; WalRecovery::kTruncate opens with the commits before it.
TEST(Durability, BitFlipInTheMiddleRefusesToOpenUnlessTruncating) {
  TempDir dir;
  std::uint64_t rec_start = 0, rec_end = 0;
  std::map<std::string, KeyValue> before;
  {
    auto e = open_ok(durable(dir.path()));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(e->put(cat("a", i), "x").ok());
    before = dump(*e);
    rec_start = fs::file_size(wal_segments(dir.path()).back());
    ASSERT_TRUE(e->put("middle", "m").ok());
    rec_end = fs::file_size(wal_segments(dir.path()).back());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(e->put(cat("b", i), "y").ok());
  }
  const fs::path seg = wal_segments(dir.path()).back();
  for (std::uint64_t off = rec_start; off < rec_end; ++off) {
    TempDir copy;
    fs::copy(dir.path(), copy.path(), fs::copy_options::recursive);
    const fs::path s = fs::path(copy.path()) / seg.filename();
    flip_bit(s, off);
    std::string err;
    EXPECT_EQ(Engine::open(durable(copy.path()), err), nullptr) << "flip at " << off;
    EXPECT_NE(err.find(s.filename().string()), std::string::npos) << err;
    EXPECT_NE(err.find("offset " + std::to_string(rec_start)), std::string::npos) << err;
    Options t = durable(copy.path());
    t.durability.recovery = WalRecovery::kTruncate;
    auto e = open_ok(t);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(same(dump(*e), before)) << "flip at " << off;
    EXPECT_FALSE(e->recovery_notes().empty());
  }
}

TEST(Durability, MissingMiddleSegmentRefusesEmptyAndTornSegmentsAreHandled) {
  TempDir dir;
  Options o = durable(dir.path());
  o.durability.segment_bytes = 128;
  std::map<std::string, KeyValue> all;
  {
    auto e = open_ok(o);
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(e->put(cat("k", i), std::string(50, 'v')).ok());
    all = dump(*e);
  }
  // Segments holding only a header (opens without writes) are fine anywhere.
  { auto e = open_ok(o); }
  { auto e = open_ok(o); }
  {
    auto e = open_ok(o);
    EXPECT_TRUE(same(dump(*e), all));
  }
  // An empty file as the newest segment (a crash right after creating it) is removed.
  auto segs = wal_segments(dir.path());
  ASSERT_GT(segs.size(), 4u);
  const fs::path extra = fs::path(dir.path()) / "wal-00000000000000ff.log";
  { std::ofstream(extra.string()).flush(); }
  {
    auto e = open_ok(o);
    EXPECT_TRUE(same(dump(*e), all));
    EXPECT_FALSE(fs::exists(extra));
    ASSERT_EQ(e->recovery_notes().size(), 1u);
  }
  // A missing segment in the middle refuses to open, naming the segment after the gap.
  segs = wal_segments(dir.path());
  fs::remove(segs[2]);
  std::string err;
  EXPECT_EQ(Engine::open(o, err), nullptr);
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  EXPECT_NE(err.find(segs[3].filename().string()), std::string::npos) << err;
  // A missing first segment (the log no longer reaches back to the empty store) too.
  TempDir d2;
  {
    auto e = open_ok(durable(d2.path()));
    ASSERT_TRUE(e->checkpoint().ok());
  }
  Options o2 = durable(d2.path());
  o2.durability.segment_bytes = 64;
  {
    auto e = open_ok(o2);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(e->put(cat("k", i), "v").ok());
  }
  for (const auto& c : checkpoints(d2.path())) fs::remove(c);
  fs::remove(wal_segments(d2.path()).front());
  fs::remove(wal_segments(d2.path()).front());
  EXPECT_EQ(Engine::open(o2, err), nullptr);
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
}

// ------------------------------------------------------------------ checkpoint crashes
TEST(Durability, CrashAtEachCheckpointStepRecoversEverything) {
  for (CheckpointStep step :
       {CheckpointStep::kWriting, CheckpointStep::kBeforeRename, CheckpointStep::kBeforeTrim}) {
    TempDir dir;
    Options o = durable(dir.path());
    o.durability.segment_bytes = 200;
    o.durability.faults = std::make_shared<FileFaults>();
    std::map<std::string, KeyValue> before;
    {
      auto e = open_ok(o);
      write_history(*e);
      ASSERT_TRUE(e->checkpoint().ok());  // an older checkpoint to fall back on
      for (int i = 0; i < 10; ++i) ASSERT_TRUE(e->put(cat("x", i), "y").ok());
      ASSERT_TRUE(e->del("k2").ok());
      o.durability.faults->checkpoint_step = [step](CheckpointStep s) { return s != step; };
      Result<Revision> c = e->checkpoint();
      EXPECT_EQ(c.code(), StatusCode::kUnavailable);
      for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->put(cat("z", i), "w").ok());
      before = dump(*e);
    }
    o.durability.faults->checkpoint_step = nullptr;
    // The step's leftovers are on disk as a crash would leave them.
    if (step == CheckpointStep::kBeforeTrim) {
      EXPECT_EQ(checkpoints(dir.path()).size(), 2u);
    }
    {
      auto e = open_ok(o);
      EXPECT_TRUE(same(dump(*e), before)) << static_cast<int>(step);
      ASSERT_TRUE(e->checkpoint().ok());
    }
    auto e = open_ok(o);
    EXPECT_TRUE(same(dump(*e), before)) << static_cast<int>(step);
    EXPECT_EQ(checkpoints(dir.path()).size(), 1u);
  }
}

// A damaged checkpoint is never loaded. Here the WAL was trimmed up to it, so the log no
// longer reaches back to the empty store: recovery refuses, naming the checkpoint's damage.
TEST(Durability, DamagedCheckpointIsNotLoaded) {
  TempDir dir;
  Options o = durable(dir.path());
  o.durability.segment_bytes = 128;
  {
    auto e = open_ok(o);
    write_history(*e);
    ASSERT_TRUE(e->checkpoint().ok());
  }
  const fs::path c = checkpoints(dir.path()).back();
  flip_bit(c, fs::file_size(c) / 2);
  std::string err;
  EXPECT_EQ(Engine::open(o, err), nullptr);
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  EXPECT_NE(err.find(c.filename().string()), std::string::npos) << err;
}

// ------------------------------------------------------------------ lock file
TEST(Durability, LockFileRefusesASecondEngineOnTheSameDirectory) {
  TempDir dir;
  auto a = open_ok(durable(dir.path()));
  std::string err;
  EXPECT_EQ(Engine::open(durable(dir.path()), err), nullptr);
  EXPECT_NE(err.find("in use"), std::string::npos) << err;
  EXPECT_THROW(Engine e(durable(dir.path())), std::runtime_error);
  a.reset();
  EXPECT_NE(Engine::open(durable(dir.path()), err), nullptr) << err;
}

// ------------------------------------------------------------------ storage failures
void failure_refuses_writes_keeps_reads(bool fsync_fault) {
  TempDir dir;
  Options o = durable(dir.path());
  auto faults = std::make_shared<FileFaults>();
  o.durability.faults = faults;
  std::map<std::string, KeyValue> acked;
  {
    auto e = open_ok(o);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(e->put(cat("k", i), "v").ok());
    acked = dump(*e);
    const Revision rev = e->current_revision();
    if (fsync_fault) {
      faults->fail_next_fsync(EIO);
    } else {
      faults->fail_writes(ENOSPC);
    }
    Result<PutResult> p = e->put("lost", "x");
    ASSERT_EQ(p.code(), StatusCode::kStorageFailed);
    EXPECT_NE(p.status().message().find(fsync_fault ? "fsync" : "write"), std::string::npos)
        << p.status().message();
    // Not visible, and later writes are refused with the reason; reads go on.
    EXPECT_EQ(e->get("lost").code(), StatusCode::kNotFound);
    EXPECT_EQ(e->current_revision(), rev);
    faults->fail_writes(0);
    EXPECT_EQ(e->put("k0", "new").code(), StatusCode::kStorageFailed);
    Result<Transaction> t = e->begin();
    ASSERT_TRUE(t.ok());
    ASSERT_TRUE(t->put("a", "b").ok());
    EXPECT_EQ(t->commit().code(), StatusCode::kStorageFailed);
    EXPECT_TRUE(same(dump(*e), acked));
    Result<KeyValue> g = e->get("k3");
    ASSERT_TRUE(g.ok());
    DurabilityStats s = e->durability_stats();
    EXPECT_TRUE(s.write_refused);
    EXPECT_FALSE(s.refusal_reason.empty());
  }
  // Nothing acknowledged is lost; the unacknowledged put may or may not be there.
  auto e = open_ok(o);
  std::map<std::string, KeyValue> now = dump(*e);
  now.erase("lost");
  EXPECT_TRUE(same(now, acked));
  EXPECT_TRUE(e->put("k0", "works again").ok());
}

TEST(Durability, FailedFsyncRefusesLaterWritesReadsGoOnNothingAckedLost) {
  failure_refuses_writes_keeps_reads(true);
}

TEST(Durability, FailedWriteRefusesLaterWritesReadsGoOnNothingAckedLost) {
  failure_refuses_writes_keeps_reads(false);
}

// Every commit of a batch whose fsync fails is refused, and none becomes visible.
TEST(Durability, FailedFsyncFailsEveryCommitOfItsBatch) {
  TempDir dir;
  Options o = durable(dir.path());
  auto faults = std::make_shared<FileFaults>();
  o.durability.faults = faults;
  auto e = open_ok(o);
  constexpr int kThreads = 4;
  std::latch held(1), release(1);
  std::atomic<bool> first{true};
  faults->before_wal_sync = [&] {
    if (first.exchange(false)) {
      held.count_down();
      release.wait();
    }
  };
  faults->fail_next_fsync(EIO);
  std::vector<std::future<StatusCode>> f;
  f.push_back(std::async(std::launch::async, [&] { return e->put("w0", "x").code(); }));
  held.wait();  // w0's batch is written, its fsync held
  for (int i = 1; i < kThreads; ++i) {
    f.push_back(std::async(std::launch::async, [&, i] { return e->put(cat("w", i), "x").code(); }));
  }
  release.count_down();
  for (auto& x : f) EXPECT_EQ(x.get(), StatusCode::kStorageFailed);
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(e->get(cat("w", i)).code(), StatusCode::kNotFound);
  EXPECT_EQ(e->current_revision(), 1u);
}

// ------------------------------------------------------------------ ordering, group commit
// Under kAlways a commit is invisible to readers until its fsync is done.
TEST(Durability, CommitNotVisibleBeforeItsFsync) {
  TempDir dir;
  Options o = durable(dir.path());
  auto faults = std::make_shared<FileFaults>();
  o.durability.faults = faults;
  auto e = open_ok(o);
  ASSERT_TRUE(e->put("k", "old").ok());
  const Revision rev = e->current_revision();
  std::latch held(1), release(1);
  std::atomic<bool> first{true};
  faults->before_wal_sync = [&] {
    if (first.exchange(false)) {
      held.count_down();
      release.wait();
    }
  };
  auto f = std::async(std::launch::async, [&] { return e->put("k", "new"); });
  held.wait();  // written, not yet fsynced
  Result<KeyValue> g = e->get("k");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->value, "old");
  EXPECT_EQ(e->current_revision(), rev);
  release.count_down();
  Result<PutResult> p = f.get();
  ASSERT_TRUE(p.ok());
  Result<KeyValue> now = e->get("k");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->value, "new");
}

TEST(Durability, ConcurrentCommitsShareFsyncs) {
  TempDir dir;
  Options o = durable(dir.path());
  auto faults = std::make_shared<FileFaults>();
  o.durability.faults = faults;
  auto e = open_ok(o);
  constexpr int kThreads = 8, kPuts = 50;
  // Hold the first fsync until every thread has a commit queued behind it: at least one
  // batch then holds several records.
  std::latch all_started(kThreads);
  std::atomic<bool> first{true};
  faults->before_wal_sync = [&] {
    if (first.exchange(false)) all_started.wait();
  };
  std::vector<std::thread> th;
  std::map<std::string, std::string> expect;
  for (int t = 0; t < kThreads; ++t) {
    th.emplace_back([&, t] {
      all_started.count_down();
      for (int i = 0; i < kPuts; ++i) ASSERT_TRUE(e->put(cat(cat("t", t) + "-", i), "v").ok());
    });
  }
  for (auto& x : th) x.join();
  const DurabilityStats s = e->durability_stats();
  EXPECT_EQ(s.wal_records, std::uint64_t{kThreads * kPuts});
  EXPECT_LT(s.fsyncs, s.wal_records);
  EXPECT_GT(s.max_batch_records, 1u);
  e.reset();
  auto r = open_ok(durable(dir.path()));
  EXPECT_EQ(dump(*r).size(), std::size_t{kThreads * kPuts});
}

// Concurrent writers of disjoint and shared keys: the recovered log is the commit order.
TEST(Durability, ConcurrentTransfersRecoverWithTheBankTotal) {
  TempDir dir;
  constexpr int kAccounts = 8, kThreads = 4, kTransfers = 100;
  {
    auto e = open_ok(durable(dir.path()));
    for (int i = 0; i < kAccounts; ++i) ASSERT_TRUE(e->put(cat("acct", i), "100").ok());
    std::vector<std::thread> th;
    for (int t = 0; t < kThreads; ++t) {
      th.emplace_back([&, t] {
        unsigned seed = static_cast<unsigned>(t) * 7919u + 1;
        for (int n = 0; n < kTransfers; ++n) {
          seed = seed * 1103515245u + 12345u;
          const int a = static_cast<int>(seed % kAccounts);
          const int b = static_cast<int>((seed / kAccounts) % kAccounts);
          if (a == b) continue;
          for (;;) {
            Result<Transaction> tx = e->begin();
            ASSERT_TRUE(tx.ok());
            Result<KeyValue> ra = tx->get(cat("acct", a));
            Result<KeyValue> rb = tx->get(cat("acct", b));
            ASSERT_TRUE(ra.ok() && rb.ok());
            const int va = std::stoi(ra->value);
            const int vb = std::stoi(rb->value);
            ASSERT_TRUE(tx->put(cat("acct", a), std::to_string(va - 1)).ok());
            ASSERT_TRUE(tx->put(cat("acct", b), std::to_string(vb + 1)).ok());
            Result<Revision> c = tx->commit();
            if (c.ok()) break;
            ASSERT_EQ(c.code(), StatusCode::kConflict);
          }
        }
      });
    }
    // A snapshot taken while the transfers run is consistent too.
    std::string image;
    Result<Revision> sr = e->write_snapshot([&](std::string_view c) {
      image.append(c);
      return true;
    });
    ASSERT_TRUE(sr.ok());
    for (auto& x : th) x.join();
    const std::string file = dir.sub("../" + fs::path(dir.path()).filename().string() + ".snap");
    std::ofstream(file, std::ios::binary)
        .write(image.data(), static_cast<std::streamsize>(image.size()));
    TempDir rdir;
    Options ro = durable(rdir.path() + "/d");
    ro.durability.restore_from = file;
    auto restored = open_ok(ro);
    EXPECT_EQ(restored->current_revision(), *sr);
    int total = 0;
    for (const auto& [k, kv] : dump(*restored)) total += std::stoi(kv.value);
    EXPECT_EQ(total, kAccounts * 100);
    fs::remove(file);
  }
  auto e = open_ok(durable(dir.path()));
  int total = 0;
  for (const auto& [k, kv] : dump(*e)) total += std::stoi(kv.value);
  EXPECT_EQ(total, kAccounts * 100);
}

// A copy of the data directory taken while writers run is what a process crash leaves (the
// page cache as of some moment, perhaps a torn last record). Opening it recovers a prefix of
// the commit order containing every commit acknowledged before the copy began: per writer,
// its keys form a prefix that reaches at least its acknowledged count.
TEST(Durability, CopyTakenWhileWritingRecoversAPrefixWithEveryAckedCommit) {
  TempDir dir;
  Options o = durable(dir.path());
  o.durability.segment_bytes = 4096;
  constexpr int kThreads = 4, kPuts = 300;
  auto e = open_ok(o);
  std::array<std::atomic<int>, kThreads> acked{};
  std::latch started(kThreads + 1);
  std::vector<std::thread> th;
  for (int t = 0; t < kThreads; ++t) {
    th.emplace_back([&, t] {
      started.arrive_and_wait();
      for (int i = 0; i < kPuts; ++i) {
        ASSERT_TRUE(e->put(cat(cat("w", t) + "-", 100000 + i), "v").ok());
        acked[t].store(i + 1, std::memory_order_release);  // pairs with the loads below
      }
    });
  }
  started.arrive_and_wait();
  // Wait until some commits are acknowledged, then copy while the writers go on.
  while (acked[0].load(std::memory_order_acquire) < kPuts / 4) std::this_thread::yield();
  std::array<int, kThreads> before{};
  for (int t = 0; t < kThreads; ++t) before[t] = acked[t].load(std::memory_order_acquire);
  // Newest segment first: the older ones are closed, complete files by the time they are
  // copied, and a segment created after the listing is a lost tail, as in a crash.
  TempDir copy;
  std::vector<fs::path> segs = wal_segments(dir.path());
  std::reverse(segs.begin(), segs.end());
  for (const fs::path& p : segs) fs::copy_file(p, fs::path(copy.path()) / p.filename());
  for (auto& x : th) x.join();
  auto r = open_ok(durable(copy.path()));
  const std::map<std::string, KeyValue> m = dump(*r);
  for (int t = 0; t < kThreads; ++t) {
    int n = 0;
    while (m.count(cat(cat("w", t) + "-", 100000 + n)) != 0) ++n;
    EXPECT_GE(n, before[t]) << "writer " << t;
    for (int i = n; i < kPuts; ++i) {
      EXPECT_EQ(m.count(cat(cat("w", t) + "-", 100000 + i)), 0u) << "gap at writer " << t;
    }
  }
}

// ------------------------------------------------------------------ snapshots, restore
TEST(Durability, SnapshotOfAnInMemoryEngineRestoresIntoADataDir) {
  Engine mem;
  write_history(mem);
  std::string image;
  int chunks = 0;
  Result<Revision> r = mem.write_snapshot([&](std::string_view c) {
    image.append(c);
    ++chunks;
    return true;
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, mem.current_revision());
  EXPECT_EQ(mem.checkpoint().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(mem.durability_stats().enabled);
  // A sink that refuses aborts the stream.
  EXPECT_EQ(mem.write_snapshot([](std::string_view) { return false; }).code(),
            StatusCode::kUnavailable);
  TempDir dir;
  const std::string file = dir.sub("image.snap");
  std::ofstream(file, std::ios::binary)
      .write(image.data(), static_cast<std::streamsize>(image.size()));
  Options o = durable(dir.sub("data"));
  o.durability.restore_from = file;
  {
    auto e = open_ok(o);
    EXPECT_TRUE(same(dump(*e), dump(mem)));
    EXPECT_EQ(e->current_revision(), mem.current_revision());
    ASSERT_TRUE(e->put("more", "m").ok());
  }
  // Restoring into a directory that holds data is refused; plain reopening works.
  std::string err;
  EXPECT_EQ(Engine::open(o, err), nullptr);
  EXPECT_NE(err.find("already holds data"), std::string::npos) << err;
  auto e = open_ok(durable(dir.sub("data")));
  EXPECT_EQ(dump(*e).size(), dump(mem).size() + 1);
  // A damaged image is refused before anything is written.
  flip_bit(file, image.size() / 2);
  Options bad = durable(dir.sub("data2"));
  bad.durability.restore_from = file;
  EXPECT_EQ(Engine::open(bad, err), nullptr);
  EXPECT_NE(err.find("cannot restore"), std::string::npos) << err;
}

// ------------------------------------------------------------------ checkpoint memory
// While a checkpoint's snapshot is held (the writer paused in its hook), keys written many
// times keep at most two versions each: the one the checkpoint reads and the newest
// (interval GC), not one per write.
TEST(Durability, CheckpointUnderWritesKeepsAboutOneExtraVersionPerKey) {
  TempDir dir;
  Options o = durable(dir.path());
  o.durability.faults = std::make_shared<FileFaults>();
  auto e = open_ok(o);
  constexpr int kKeys = 100, kRounds = 10;
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(e->put(cat("k", i), "0").ok());
  const Revision at = e->current_revision();
  std::latch paused(1), resume(1);
  o.durability.faults->checkpoint_step = [&](CheckpointStep s) {
    if (s == CheckpointStep::kWriting) {
      paused.count_down();
      resume.wait();
    }
    return true;
  };
  auto ck = std::async(std::launch::async, [&] { return e->checkpoint(); });
  paused.wait();
  std::size_t max_versions = 0;
  for (int r = 1; r <= kRounds; ++r) {
    for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(e->put(cat("k", i), std::to_string(r)).ok());
    for (int i = 0; i < kKeys; ++i)
      max_versions = std::max(max_versions, e->version_count(cat("k", i)));
  }
  EXPECT_LE(max_versions, 2u);
  EXPECT_LE(e->stats().live_versions, std::uint64_t{2 * kKeys});
  resume.count_down();
  Result<Revision> c = ck.get();
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(*c, at);
  // The checkpoint holds the state at its revision, not the writes made while it ran.
  TempDir rdir;
  Options ro = durable(rdir.sub("d"));
  ro.durability.restore_from = checkpoints(dir.path()).back().string();
  {
    auto img = open_ok(ro);
    EXPECT_EQ(img->current_revision(), at);
    std::map<std::string, KeyValue> m = dump(*img);
    EXPECT_EQ(m.size(), std::size_t{kKeys});
    for (const auto& [k, kv] : m) EXPECT_EQ(kv.value, "0") << k;
  }
  e.reset();
  auto r = open_ok(durable(dir.path()));
  for (int i = 0; i < kKeys; ++i) {
    Result<KeyValue> g = r->get(cat("k", i));
    ASSERT_TRUE(g.ok()) << i;
    EXPECT_EQ(g->value, std::to_string(kRounds));
  }
}

}  // namespace
}  // namespace kv::storage
