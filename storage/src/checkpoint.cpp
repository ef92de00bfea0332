// storage/src/checkpoint.cpp — checkpoints and snapshots (docs/PERSISTENCE.md).
//
// An image is read from an MVCC snapshot registered like any reader's (SnapshotRegistry,
// S1), while writers go on: no fork, no stop-the-world. Interval GC keeps, for each key
// written meanwhile, the version that snapshot sees besides the newest (E4): the memory cost
// of a checkpoint is about one extra version per key written during it. The index is walked
// under short guards (re-taken every kSweepChunk nodes, as the sweep does, I1), so the
// checkpoint does not hold back the reclamation of what GC unlinks meanwhile.
//
// A checkpoint file is written to checkpoint.tmp, fsynced, renamed to
// checkpoint-<rev>.ckpt, and the directory fsynced; only then are older checkpoints and
// the WAL segments wholly at or below <rev> deleted.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

constexpr std::size_t kChunkBytes = 1 << 20;  // what write_snapshot hands to its sink at once

std::string checkpoint_name(Revision rev) {
  char b[48];
  std::snprintf(b, sizeof b, "checkpoint-%020llu.ckpt", static_cast<unsigned long long>(rev));
  return b;
}

}  // namespace

Result<Revision> EngineImpl::snapshot_to(const std::function<bool(std::string_view)>& sink,
                                         bool* hook_stopped) {
  if (Status s = check_open(); !s.ok()) return s;
  TxnState t;
  t.track_reads = false;
  if (Status s = open_snapshot(t); !s.ok()) return s;
  SnapshotCloser closer(this, t);
  const Revision rev = t.start_ts;
  auto aborted = [] {
    return Status(StatusCode::kUnavailable, "the snapshot's reader stopped it");
  };

  std::string chunk = file_header(kCheckpointMagic, rev);
  std::string payload;
  std::uint64_t count = 0;
  // Before any entry is read (and outside any guard: a hook that blocks must not hold back
  // reclamation).
  if (!hook(CheckpointStep::kWriting)) {
    if (hook_stopped != nullptr) *hook_stopped = true;
    return Status(StatusCode::kUnavailable, "checkpoint stopped at step kWriting");
  }
  std::string resume;
  bool started = false;
  for (bool more = true; more;) {
    {
      kovan::Guard g = kovan::pin();
      KeyNode* n = started ? index_.lower_bound(resume, g) : index_.first(g);
      started = true;
      for (int budget = kSweepChunk; n != nullptr && budget > 0; --budget, n = index_.next(n, g)) {
        const Version* v = visible_at(n, rev, g);
        if (v == nullptr || v->tombstone) continue;
        payload.clear();
        put_u8(payload, v->lease != 0 ? kRecEntryLease : kRecEntry);
        put_bytes(payload, n->key);
        put_bytes(payload, v->value());
        put_u64(payload, v->create_rev);
        put_u64(payload, v->commit_ts);
        put_u64(payload, static_cast<std::uint64_t>(v->version));
        if (v->lease != 0) put_u64(payload, v->lease);
        append_frame(chunk, payload);
        ++count;
      }
      more = n != nullptr;
      if (more) resume = n->key;
    }
    if (chunk.size() >= kChunkBytes) {
      if (!sink(chunk)) return aborted();
      chunk.clear();
    }
  }
  // The leases, read after the snapshot was taken: every lease granted at or below `rev`
  // and not ended by then is alive now or ended by a log record above `rev`, and one granted
  // above `rev` has its grant record above it too; recovery replays those records over this
  // list (docs/PERSISTENCE.md, "Leases").
  for (const auto& [id, ttl] : lease_list()) {
    payload.clear();
    put_u8(payload, kRecLease);
    put_u64(payload, id);
    put_u64(payload, static_cast<std::uint64_t>(ttl));
    append_frame(chunk, payload);
  }
  payload.clear();
  put_u8(payload, kRecEnd);
  put_u64(payload, count);
  append_frame(chunk, payload);
  if (!sink(chunk)) return aborted();
  return rev;
}

Result<Revision> EngineImpl::write_snapshot(const std::function<bool(std::string_view)>& sink) {
  return snapshot_to(sink, nullptr);
}

Result<Revision> EngineImpl::checkpoint() {
  if (!wal_) {
    return Status(StatusCode::kInvalidArgument, "the engine is in memory only (no data_dir)");
  }
  std::lock_guard lk(ckpt_mu_);
  FileFaults* faults = opts_.durability.faults.get();
  const std::string tmp = dir_ + "/checkpoint.tmp";
  const int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status(StatusCode::kUnavailable, "cannot create " + tmp + ": " + errno_text(errno));
  }
  std::string err;
  bool hook_stopped = false;
  Result<Revision> r = snapshot_to(
      [&](std::string_view c) { return write_all(fd, c, faults, tmp, &err); }, &hook_stopped);
  if (r.ok() && !sync_file(fd, false, faults, tmp, &err)) r = Status(StatusCode::kUnavailable, err);
  ::close(fd);
  if (!r.ok()) {
    if (!err.empty()) r = Status(StatusCode::kUnavailable, "checkpoint failed: " + err);
    if (!hook_stopped) ::unlink(tmp.c_str());  // a stop by the hook leaves it, as a crash would
    return r;
  }
  const Revision rev = r.value();
  if (!hook(CheckpointStep::kBeforeRename)) {
    return Status(StatusCode::kUnavailable, "checkpoint stopped at step kBeforeRename");
  }
  const std::string final_path = dir_ + "/" + checkpoint_name(rev);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const std::string e = errno_text(errno);
    ::unlink(tmp.c_str());
    return Status(StatusCode::kUnavailable, "cannot rename " + tmp + ": " + e);
  }
  if (!sync_dir(dir_, &err)) return Status(StatusCode::kUnavailable, "checkpoint failed: " + err);
  if (!hook(CheckpointStep::kBeforeTrim)) {
    return Status(StatusCode::kUnavailable, "checkpoint stopped at step kBeforeTrim");
  }
  last_ckpt_.store(rev, std::memory_order_relaxed);
  checkpoints_.fetch_add(1, std::memory_order_relaxed);
  wal_->checkpoint_done();
  // Older checkpoints, then the log they no longer need.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name.size() > 5 &&
        name.compare(name.size() - 5, 5, ".ckpt") == 0 && e.path().string() != final_path) {
      std::filesystem::remove(e.path(), ec);
    }
  }
  wal_->trim(rev);
  return rev;
}

void EngineImpl::request_checkpoint() {
  {
    std::lock_guard lk(cp_mu_);
    cp_request_ = true;
  }
  cp_cv_.notify_one();
}

void EngineImpl::checkpointer_loop() {
  const auto every = opts_.durability.checkpoint_every;
  std::unique_lock lk(cp_mu_);
  for (;;) {
    auto ready = [&] { return cp_stop_ || cp_request_; };
    if (every.count() > 0) {
      cp_cv_.wait_for(lk, every, ready);
    } else {
      cp_cv_.wait(lk, ready);
    }
    if (cp_stop_) break;
    cp_request_ = false;
    if (current_revision() == last_ckpt_.load(std::memory_order_relaxed)) continue;  // no change
    lk.unlock();
    // A failure leaves the previous checkpoint and the whole log: the next try may succeed.
    (void)checkpoint();
    lk.lock();
  }
  kovan::flush();
}

DurabilityStats EngineImpl::durability_stats() const {
  DurabilityStats s;
  if (!wal_) return s;
  s.enabled = true;
  wal_->fill_stats(&s);
  s.last_checkpoint_revision = last_ckpt_.load(std::memory_order_relaxed);
  s.checkpoints = checkpoints_.load(std::memory_order_relaxed);
  return s;
}

std::vector<std::string> EngineImpl::recovery_notes() const { return notes_; }

}  // namespace kv::storage::detail
