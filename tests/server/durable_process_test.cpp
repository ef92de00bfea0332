// kovan-server with --data-dir as a child process: restarts keep the data, revisions and key
// metadata; start-up failures (directory locked, damaged log) exit non-zero with a clear
// message; storage failures refuse writes with STORAGE_FAILED and lose nothing
// acknowledged; CHECKPOINT under write load; SNAPSHOT save with kovan-cli and --restore.
#include <sys/mount.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>
#include <tuple>

#include "durable_harness.hpp"
#include "proto/crc32c.hpp"

namespace kv::test {
namespace {

std::uint64_t stat_of(std::uint16_t port, const std::string& name) {
  Client c(port);
  auto r = try_call(c, stats(1));
  if (!r || r->status().code() != pb::Status::OK) return ~std::uint64_t{0};
  const auto& m = r->stats();
  const auto* d = m.GetDescriptor()->FindFieldByName(name);
  if (d == nullptr) return ~std::uint64_t{0};
  if (d->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL) {
    return m.GetReflection()->GetBool(m, d) ? 1 : 0;
  }
  return m.GetReflection()->GetUInt64(m, d);
}

pb::Response must(Client& c, const pb::Request& r) {
  auto resp = try_call(c, r);
  EXPECT_TRUE(resp.has_value()) << r.ShortDebugString();
  return resp.value_or(pb::Response());
}

pb::Request checkpoint_request(std::uint64_t id) {
  pb::Request r;
  r.set_id(id);
  r.mutable_checkpoint();
  return r;
}

// key -> (value, create_revision, mod_revision, version) of every live key.
std::map<std::string, std::tuple<std::string, std::uint64_t, std::uint64_t, std::uint64_t>> dump(
    std::uint16_t port) {
  std::map<std::string, std::tuple<std::string, std::uint64_t, std::uint64_t, std::uint64_t>> out;
  for (const auto& kv : scan_prefix(port, "")) {
    out[kv.key()] = {kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()};
  }
  return out;
}

TEST(Durable, RestartKeepsKeysRevisionsAndKeyMetadata) {
  TempDir dir("restart");
  std::map<std::string, std::tuple<std::string, std::uint64_t, std::uint64_t, std::uint64_t>>
      before;
  std::uint64_t revision = 0;
  {
    DurableServer s(dir.str(), {}, "restart1");
    ASSERT_NE(s.port(), 0) << s.output();
    Client c(s.port());
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(must(c, put(1, "a", "v" + std::to_string(i))).status().code(), pb::Status::OK);
    }
    ASSERT_EQ(must(c, put(2, "b", "x")).status().code(), pb::Status::OK);
    ASSERT_EQ(must(c, put(3, "gone", "x")).status().code(), pb::Status::OK);
    ASSERT_EQ(must(c, del(4, "gone")).status().code(), pb::Status::OK);
    // A deleted then re-created key starts a new incarnation (version 1 again).
    ASSERT_EQ(must(c, put(5, "re", "1")).status().code(), pb::Status::OK);
    ASSERT_EQ(must(c, del(6, "re")).status().code(), pb::Status::OK);
    ASSERT_EQ(must(c, put(7, "re", "2")).status().code(), pb::Status::OK);
    EXPECT_EQ(stat_of(s.port(), "durable"), 1u);
    before = dump(s.port());
    revision = current_revision(s.port());
    EXPECT_GE(revision, 9u);  // nine writes
    s.crash();                // kill -9: with --fsync always every acknowledged write is on disk
  }
  DurableServer s(dir.str(), {}, "restart2");
  ASSERT_NE(s.port(), 0) << s.output();
  EXPECT_EQ(current_revision(s.port()), revision);
  EXPECT_EQ(dump(s.port()), before);
  EXPECT_EQ(std::get<3>(before["a"]), 3u);
  EXPECT_EQ(std::get<3>(before["re"]), 1u);
  Client c(s.port());
  EXPECT_EQ(must(c, get(1, "gone")).status().code(), pb::Status::NOT_FOUND);
  // Revisions keep counting; the version of an old key goes on from where it was.
  auto p = must(c, put(2, "a", "v3"));
  EXPECT_EQ(p.header().revision(), revision + 1);
  auto g = must(c, get(3, "a"));
  EXPECT_EQ(g.get().kv().version(), 4u);
  EXPECT_EQ(g.get().kv().create_revision(), std::get<1>(before["a"]));
  // A graceful stop keeps it too.
  EXPECT_EQ(s.stop(), 0);
  DurableServer s3(dir.str(), {}, "restart3");
  ASSERT_NE(s3.port(), 0) << s3.output();
  EXPECT_EQ(current_revision(s3.port()), revision + 1);
}

TEST(Durable, ASecondServerOnTheSameDirectoryIsRefused) {
  TempDir dir("lock");
  DurableServer first(dir.str(), {}, "lock1");
  ASSERT_NE(first.port(), 0) << first.output();
  ServerProcess second({"--listen", "127.0.0.1:0", "--data-dir", dir.str()}, "lock2");
  EXPECT_EQ(second.wait_exit(30s), 1);
  const std::string out = second.output();
  EXPECT_NE(out.find("cannot open data directory " + dir.str()), std::string::npos) << out;
  EXPECT_EQ(out.find("listening on"), std::string::npos) << out;
  // The first one still serves.
  Client c(first.port());
  EXPECT_EQ(must(c, put(1, "k", "v")).status().code(), pb::Status::OK);
}

TEST(Durable, DamagedLogRefusesToStartUnlessTruncateIsAsked) {
  TempDir dir("badcrc");
  std::uint64_t first_rev = 0;
  {
    DurableServer s(dir.str(), {}, "badcrc1");
    ASSERT_NE(s.port(), 0) << s.output();
    first_rev = current_revision(s.port()) + 1;  // the revision of the first put
    Client c(s.port());
    for (int i = 0; i < 300; ++i) {
      ASSERT_EQ(
          must(c, put(1, "key" + std::to_string(1000 + i), std::string(40, 'v'))).status().code(),
          pb::Status::OK);
    }
    s.crash();
  }
  std::vector<fs::path> segments;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().filename().string().rfind("wal-", 0) == 0) segments.push_back(e.path());
  }
  ASSERT_FALSE(segments.empty());
  std::sort(segments.begin(), segments.end());
  {
    // A flipped byte well inside the first segment's records (300 records of > 50 bytes).
    std::fstream f(segments.front(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(4000);
    char b = 0;
    f.read(&b, 1);
    b = static_cast<char>(b ^ 0x20);
    f.seekp(4000);
    f.write(&b, 1);
  }
  {
    ServerProcess strict({"--listen", "127.0.0.1:0", "--data-dir", dir.str()}, "badcrc2");
    EXPECT_EQ(strict.wait_exit(30s), 1);
    const std::string out = strict.output();
    EXPECT_NE(out.find(segments.front().filename().string()), std::string::npos)
        << "the message names the damaged file: " << out;
    EXPECT_EQ(out.find("listening on"), std::string::npos) << out;
  }
  DurableServer lenient(dir.str(), {"--wal-recovery", "truncate"}, "badcrc3");
  ASSERT_NE(lenient.port(), 0) << lenient.output();
  const std::uint64_t rev = current_revision(lenient.port());
  EXPECT_GE(rev + 1, first_rev);
  EXPECT_LT(rev, first_rev + 299);
  // The keys before the damage are there: exactly the puts up to the recovered revision.
  const auto kept = scan_prefix(lenient.port(), "key");
  ASSERT_EQ(kept.size(), rev + 1 - first_rev) << (kept.empty() ? std::string() : kept.back().key());
  for (std::size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(kept[i].key(), "key" + std::to_string(1000 + i));
    EXPECT_EQ(kept[i].mod_revision(), first_rev + i);
  }
}

// Writes after a storage failure get STORAGE_FAILED; reads go on; nothing acknowledged is
// lost; after a restart (the fault gone) writes are served again.
void storage_failure(int sig, const std::string& armed_log, const std::string& tag) {
  TempDir dir(tag);
  {
    DurableServer s(dir.str(), {"--test-storage-faults"}, tag + "1");
    ASSERT_NE(s.port(), 0) << s.output();
    Client c(s.port());
    for (int i = 0; i < 20; ++i) {
      ASSERT_EQ(must(c, put(1, "k" + std::to_string(i), "v")).status().code(), pb::Status::OK);
    }
    s.proc().signal(sig);
    ASSERT_TRUE(s.proc().wait_for_log(armed_log)) << s.output();
    auto failed = must(c, put(2, "after", "x"));
    EXPECT_EQ(failed.status().code(), pb::Status::STORAGE_FAILED) << failed.ShortDebugString();
    EXPECT_FALSE(failed.status().message().empty());
    // Every later write is refused too, one-shot or transactional, with the reason.
    auto again = must(c, put(3, "after2", "x"));
    EXPECT_EQ(again.status().code(), pb::Status::STORAGE_FAILED);
    auto b = must(c, begin(4));
    ASSERT_EQ(b.status().code(), pb::Status::OK);
    ASSERT_EQ(must(c, put(5, "t", "x", b.begin().txn_id())).status().code(), pb::Status::OK);
    EXPECT_EQ(must(c, commit(6, b.begin().txn_id())).status().code(), pb::Status::STORAGE_FAILED);
    // Reads are served.
    auto g = must(c, get(7, "k7"));
    EXPECT_EQ(g.status().code(), pb::Status::OK);
    EXPECT_EQ(stat_of(s.port(), "storage_failed"), 1u);
    EXPECT_TRUE(s.proc().wait_for_log("storage failure: ")) << s.output();
    EXPECT_EQ(count_of(s.output(), "storage failure: "), 1u) << "logged once";
    auto st = must(c, stats(8));
    EXPECT_FALSE(st.stats().storage_error().empty());
    // The CLI names the code.
    std::string out;
    EXPECT_EQ(run_cli({"--addr", "127.0.0.1:" + std::to_string(s.port()), "put", "x", "y"}, out),
              3);
    EXPECT_NE(out.find("STORAGE_FAILED"), std::string::npos) << out;
    s.crash();
  }
  DurableServer s(dir.str(), {}, tag + "2");
  ASSERT_NE(s.port(), 0) << s.output();
  Client c(s.port());
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(must(c, get(1, "k" + std::to_string(i))).status().code(), pb::Status::OK) << i;
  }
  EXPECT_EQ(must(c, get(2, "after2")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(must(c, get(3, "t")).status().code(), pb::Status::NOT_FOUND);
  EXPECT_EQ(must(c, put(4, "later", "v")).status().code(), pb::Status::OK);
  EXPECT_EQ(stat_of(s.port(), "storage_failed"), 0u);
}

TEST(Durable, FailedFsyncRefusesWritesAndKeepsServingReads) {
  storage_failure(SIGUSR1, "the next log fsync fails", "fsyncfail");
}

TEST(Durable, FullDiskRefusesWritesAndKeepsServingReads) {
  storage_failure(SIGUSR2, "every write fails with ENOSPC", "diskfull");
}

// A real full disk: the data directory on a 2 MiB tmpfs (needs root to mount; skipped
// otherwise). Writes fill it until they get STORAGE_FAILED; reads go on; after a restart
// with space back, every acknowledged write is there and writes are served again.
TEST(Durable, RealFullDiskOnASmallTmpfs) {
  TempDir dir("tmpfs");
  if (::mount("tmpfs", dir.str().c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << std::strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{dir.str()};
  const std::string data = dir.str() + "/data";
  std::vector<std::string> acked;
  {
    DurableServer s(data, {}, "tmpfs1");
    ASSERT_NE(s.port(), 0) << s.output();
    Client c(s.port());
    pb::Response last;
    for (int i = 0; i < 10000; ++i) {
      const std::string key = "full" + std::to_string(i);
      last = must(c, put(1, key, std::string(1000, 'f')));
      if (last.status().code() != pb::Status::OK) break;
      acked.push_back(key);
    }
    EXPECT_EQ(last.status().code(), pb::Status::STORAGE_FAILED) << last.ShortDebugString();
    EXPECT_NE(last.status().message().find("No space left"), std::string::npos)
        << last.status().message();
    EXPECT_GT(acked.size(), 100u);
    EXPECT_LT(acked.size(), 2100u);
    EXPECT_EQ(must(c, get(2, acked.front())).status().code(), pb::Status::OK);
    EXPECT_EQ(must(c, put(3, "more", "x")).status().code(), pb::Status::STORAGE_FAILED);
    EXPECT_NE(s.output().find("No space left"), std::string::npos) << "logged: " << s.output();
    EXPECT_EQ(s.stop(), 0);
  }
  ASSERT_EQ(::mount("tmpfs", dir.str().c_str(), "tmpfs", MS_REMOUNT, "size=64m"), 0)
      << std::strerror(errno);
  DurableServer s(data, {}, "tmpfs2");
  ASSERT_NE(s.port(), 0) << s.output();
  Client c(s.port());
  for (const auto& key : acked) {
    ASSERT_EQ(must(c, get(1, key)).status().code(), pb::Status::OK) << key;
  }
  EXPECT_EQ(must(c, put(2, "more", "x")).status().code(), pb::Status::OK);
}

TEST(Durable, CheckpointUnderWriteLoadAndRecoveryFromIt) {
  TempDir dir("ckpt");
  std::atomic<std::uint64_t> acked_max{0};
  std::uint64_t ckpt_rev = 0;
  {
    DurableServer s(dir.str(), {}, "ckpt1");
    ASSERT_NE(s.port(), 0) << s.output();
    {
      Client c(s.port());
      for (int i = 0; i < 2000; ++i) {
        ASSERT_EQ(
            must(c, put(1, "base" + std::to_string(i), std::string(100, 'b'))).status().code(),
            pb::Status::OK);
      }
    }
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 2; ++w) {
      writers.emplace_back([&, w] {
        Client c(s.port());
        for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
          auto r = try_call(c, put(1, "load" + std::to_string(w) + "/" + std::to_string(i), "x"));
          if (!r || r->status().code() != pb::Status::OK) return;
          std::uint64_t cur = acked_max.load();
          while (cur < r->header().revision() &&
                 !acked_max.compare_exchange_weak(cur, r->header().revision())) {
          }
          written.fetch_add(1);
        }
      });
    }
    ASSERT_TRUE(eventually([&] { return written.load() > 100; }, 30s));
    std::string out;
    EXPECT_EQ(
        run_cli({"--addr", "127.0.0.1:" + std::to_string(s.port()), "--json", "checkpoint"}, out),
        0)
        << out;
    const auto at = out.find("\"revision\":");
    ASSERT_NE(at, std::string::npos) << out;
    ckpt_rev = std::strtoull(out.c_str() + at + 11, nullptr, 10);
    EXPECT_GT(ckpt_rev, 2000u);
    const int before = written.load();
    ASSERT_TRUE(eventually([&] { return written.load() > before + 50; }, 30s))
        << "writes go on after the checkpoint";
    EXPECT_GE(stat_of(s.port(), "checkpoints"), 1u);
    EXPECT_EQ(stat_of(s.port(), "last_checkpoint_revision"), ckpt_rev);
    s.crash();
    stop.store(true);
    for (auto& t : writers) t.join();
  }
  bool has_checkpoint = false;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    has_checkpoint |= e.path().filename().string().rfind("checkpoint-", 0) == 0;
  }
  EXPECT_TRUE(has_checkpoint);
  DurableServer s(dir.str(), {}, "ckpt2");
  ASSERT_NE(s.port(), 0) << s.output();
  EXPECT_GE(current_revision(s.port()), acked_max.load());
  EXPECT_EQ(scan_prefix(s.port(), "base").size(), 2000u);
  EXPECT_EQ(stat_of(s.port(), "last_checkpoint_revision"), ckpt_rev);
}

// The memory a checkpoint-format image costs while writers go on: a snapshot stream that
// the client stops reading holds its MVCC snapshot (as a slow checkpoint would). While every
// key is overwritten three times, interval GC keeps at most one extra version per key (the
// one the snapshot sees), not a copy per write: versions stay <= 2 per key and RSS grows by
// about one version per key, not three. $KOVAN_TEST_GC_POLICY=watermark shows the test fail.
TEST(Durable, HeldSnapshotCostsAtMostOneExtraVersionPerKey) {
  constexpr int kKeys = 50000;
  const std::string value(100, 'v');
  TempDir dir("heldsnap");
  const char* policy = std::getenv("KOVAN_TEST_GC_POLICY");
  // No watch history: its memory (up to --watch-history, bounded by its own tests in
  // server_watch_test) would hide the versions' cost this test measures.
  DurableServer s(dir.str(),
                  {"--fsync", "no", "--gc-policy", policy != nullptr ? policy : "interval",
                   "--watch-history", "0"},
                  "heldsnap");
  ASSERT_NE(s.port(), 0) << s.output();
  Client c(s.port());
  auto write_all = [&](int round) {
    for (int base = 0; base < kKeys; base += 1000) {
      std::vector<pb::Request> batch;
      for (int i = base; i < base + 1000; ++i) {
        batch.push_back(put(i, "h" + std::to_string(i), value + std::to_string(round)));
      }
      ASSERT_TRUE(c.send_all(batch));
      for (int i = 0; i < 1000; ++i) {
        auto r = c.recv(60s);
        ASSERT_TRUE(r && r->status().code() == pb::Status::OK);
      }
    }
  };
  write_all(0);
  const std::uint64_t rss0 = s.proc().rss_kib();
  Client holder(s.port());
  pb::Request start;
  start.set_id(1);
  start.mutable_snapshot();
  auto first = try_call(holder, start);
  ASSERT_TRUE(first && first->status().code() == pb::Status::OK);
  ASSERT_FALSE(first->snapshot().done());
  for (int round = 1; round <= 3; ++round) write_all(round);
  Client admin(s.port());
  auto st = try_call(admin, stats(1));
  ASSERT_TRUE(st.has_value());
  const std::uint64_t versions = st->stats().live_versions();
  EXPECT_LE(versions, 2u * kKeys + 1000) << "more than one extra version per key";
  const std::uint64_t grown_kib = s.proc().rss_kib() - std::min(rss0, s.proc().rss_kib());
  // Measured on the development machine: +19 MiB with interval GC (one extra version per
  // key, allocator slack and the stream's 4 MiB buffer), +46 MiB with watermark GC (three).
  if (kRssIsMeaningful) {
    EXPECT_LT(grown_kib, 30u * 1024) << "RSS grew by " << grown_kib << " KiB";
  }
  std::printf("held snapshot: %llu versions for %d keys, RSS +%llu KiB\n",
              static_cast<unsigned long long>(versions), kKeys,
              static_cast<unsigned long long>(grown_kib));
  // Finish the stream: the image is the state before the overwrites.
  std::string image = first->snapshot().data();
  const std::uint64_t stream = first->snapshot().stream_id();
  for (std::uint64_t id = 2;; ++id) {
    pb::Request next;
    next.set_id(id);
    next.mutable_snapshot()->set_stream_id(stream);
    next.mutable_snapshot()->set_offset(image.size());
    auto r = try_call(holder, next);
    ASSERT_TRUE(r && r->status().code() == pb::Status::OK);
    image += r->snapshot().data();
    if (r->snapshot().done()) {
      EXPECT_EQ(r->snapshot().crc32c(), proto::crc32c(image));
      break;
    }
  }
  EXPECT_NE(image.find(value + "0"), std::string::npos);
  EXPECT_EQ(image.find(value + "3"), std::string::npos);
}

TEST(Durable, CheckpointNeedsADataDir) {
  ServerProcess p({"--listen", "127.0.0.1:0", "--threads", "1"}, "ckpt-mem");
  const auto port = p.wait_for_port();
  ASSERT_NE(port, 0) << p.output();
  Client c(port);
  auto r = must(c, checkpoint_request(1));
  EXPECT_EQ(r.status().code(), pb::Status::INVALID_ARGUMENT);
  EXPECT_NE(r.status().message().find("--data-dir"), std::string::npos);
}

TEST(Durable, SnapshotSaveAndRestoreRoundTrip) {
  TempDir src("snap-src");
  TempDir dst("snap-dst");
  TempDir files("snap-files");
  const std::string file = (files.path() / "backup.kvs").string();
  std::map<std::string, std::tuple<std::string, std::uint64_t, std::uint64_t, std::uint64_t>>
      before;
  std::uint64_t revision = 0;
  {
    DurableServer s(src.str(), {}, "snap1");
    ASSERT_NE(s.port(), 0) << s.output();
    Client c(s.port());
    // More than a few chunks of 1 MiB, several versions of some keys, deletes.
    for (int i = 0; i < 4000; ++i) {
      ASSERT_EQ(
          must(c, put(1, "k" + std::to_string(i), std::string(1000, 'a' + i % 26))).status().code(),
          pb::Status::OK);
    }
    for (int i = 0; i < 4000; i += 7) {
      ASSERT_EQ(must(c, put(2, "k" + std::to_string(i), "again")).status().code(), pb::Status::OK);
    }
    for (int i = 3; i < 4000; i += 11) {
      ASSERT_EQ(must(c, del(3, "k" + std::to_string(i))).status().code(), pb::Status::OK);
    }
    before = dump(s.port());
    revision = current_revision(s.port());
    std::string out;
    ASSERT_EQ(
        run_cli({"--addr", "127.0.0.1:" + std::to_string(s.port()), "snapshot", "save", file}, out),
        0)
        << out;
    EXPECT_NE(out.find("revision " + std::to_string(revision)), std::string::npos) << out;
    EXPECT_GT(fs::file_size(file), 4000u * 1000u / 2);
    // No temporary file left next to it.
    std::size_t entries = 0;
    for (const auto& e : fs::directory_iterator(files.path())) {
      (void)e;
      ++entries;
    }
    EXPECT_EQ(entries, 1u);
  }
  {
    DurableServer r(dst.str(), {"--restore", file}, "snap2");
    ASSERT_NE(r.port(), 0) << r.output();
    EXPECT_EQ(current_revision(r.port()), revision);
    EXPECT_EQ(dump(r.port()), before);
    Client c(r.port());
    EXPECT_EQ(must(c, put(1, "new", "v")).header().revision(), revision + 1);
    r.crash();
  }
  // The restored directory is an ordinary data directory now.
  {
    DurableServer r(dst.str(), {}, "snap3");
    ASSERT_NE(r.port(), 0) << r.output();
    EXPECT_EQ(current_revision(r.port()), revision + 1);
  }
  // --restore into a directory that holds data is refused.
  ServerProcess again({"--listen", "127.0.0.1:0", "--data-dir", dst.str(), "--restore", file},
                      "snap4");
  EXPECT_NE(again.wait_exit(30s), 0);
  EXPECT_EQ(again.output().find("listening on"), std::string::npos) << again.output();
}

TEST(Durable, SnapshotOfAnInMemoryServerRestoresIntoADurableOne) {
  TempDir dst("snapmem-dst");
  TempDir files("snapmem-files");
  const std::string file = (files.path() / "mem.kvs").string();
  std::map<std::string, std::tuple<std::string, std::uint64_t, std::uint64_t, std::uint64_t>>
      before;
  {
    ServerProcess p({"--listen", "127.0.0.1:0", "--threads", "1"}, "snapmem");
    const auto port = p.wait_for_port();
    ASSERT_NE(port, 0) << p.output();
    Client c(port);
    for (int i = 0; i < 100; ++i) {
      ASSERT_EQ(must(c, put(1, "m" + std::to_string(i), std::to_string(i))).status().code(),
                pb::Status::OK);
    }
    before = dump(port);
    std::string out;
    ASSERT_EQ(
        run_cli({"--addr", "127.0.0.1:" + std::to_string(port), "snapshot", "save", file}, out), 0)
        << out;
  }
  DurableServer r(dst.str(), {"--restore", file}, "snapmem2");
  ASSERT_NE(r.port(), 0) << r.output();
  EXPECT_EQ(dump(r.port()), before);
}

TEST(Durable, SnapshotStreamRulesOnTheWire) {
  ServerProcess p({"--listen", "127.0.0.1:0", "--threads", "1"}, "snapwire");
  const auto port = p.wait_for_port();
  ASSERT_NE(port, 0) << p.output();
  Client c(port);
  // About 3 MiB: a stream of several chunks.
  std::vector<pb::Request> puts;
  for (int i = 0; i < 3000; ++i)
    puts.push_back(put(10 + i, "k" + std::to_string(i), std::string(1000, 'x')));
  ASSERT_TRUE(c.send_all(puts));
  for (int i = 0; i < 3000; ++i) {
    auto r = c.recv(30s);
    ASSERT_TRUE(r && r->status().code() == pb::Status::OK);
  }
  const auto written = must(c, put(1, "k", "v"));
  ASSERT_EQ(written.status().code(), pb::Status::OK);
  auto snap = [](std::uint64_t id, std::uint64_t stream, std::uint64_t offset) {
    pb::Request r;
    r.set_id(id);
    r.mutable_snapshot()->set_stream_id(stream);
    r.mutable_snapshot()->set_offset(offset);
    return r;
  };
  // A stream starts at offset 0.
  EXPECT_EQ(must(c, snap(2, 0, 5)).status().code(), pb::Status::INVALID_ARGUMENT);
  // An unknown stream.
  EXPECT_EQ(must(c, snap(3, 12345, 0)).status().code(), pb::Status::INVALID_ARGUMENT);
  auto first = must(c, snap(4, 0, 0));
  ASSERT_EQ(first.status().code(), pb::Status::OK) << first.ShortDebugString();
  const std::uint64_t stream = first.snapshot().stream_id();
  EXPECT_NE(stream, 0u);
  EXPECT_EQ(first.snapshot().offset(), 0u);
  std::string image = first.snapshot().data();
  bool done = first.snapshot().done();
  pb::Response last = first;
  EXPECT_FALSE(done) << "a 3 MiB image takes several chunks";
  EXPECT_LE(image.size(), std::size_t{1} << 20);
  if (!done) {
    // A wrong offset is refused and does not end the stream.
    auto wrong = must(c, snap(5, stream, image.size() + 1));
    EXPECT_EQ(wrong.status().code(), pb::Status::INVALID_ARGUMENT);
  }
  int chunks = 1;
  for (std::uint64_t id = 6; !done && id < 100000; ++id, ++chunks) {
    last = must(c, snap(id, stream, image.size()));
    EXPECT_LE(last.snapshot().data().size(), std::size_t{1} << 20);
    ASSERT_EQ(last.status().code(), pb::Status::OK) << last.ShortDebugString();
    EXPECT_EQ(last.snapshot().offset(), image.size());
    image += last.snapshot().data();
    done = last.snapshot().done();
  }
  ASSERT_TRUE(done);
  EXPECT_GE(chunks, 3);
  EXPECT_GT(image.size(), 3000u * 1000u);
  EXPECT_EQ(last.snapshot().total_bytes(), image.size());
  EXPECT_EQ(last.snapshot().crc32c(), proto::crc32c(image));
  EXPECT_EQ(last.snapshot().revision(), written.header().revision());
  // The finished stream is gone.
  EXPECT_EQ(must(c, snap(100001, stream, image.size())).status().code(),
            pb::Status::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace kv::test
