// storage/durability.hpp — optional durability for the engine: a write-ahead log (WAL) with
// group commit, checkpoints written from an MVCC snapshot while writers go on, and recovery.
// File formats, the guarantees of each fsync mode and the recovery steps: docs/PERSISTENCE.md.
//
// An engine is durable when DurabilityOptions::data_dir is set; it is then created with
// Engine::open (which takes the directory's lock file and recovers). With an empty data_dir
// the engine is purely in memory, as before, and pays nothing for any of this.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kv::storage {

enum class FsyncMode : std::uint8_t {
  kAlways,    // a commit returns (and becomes visible) only after an fsync that covers it
  kEverySec,  // a commit returns after its record is written; a background fsync each second
  kNo,        // a commit returns after its record is written; the OS decides when it reaches disk
};

enum class WalRecovery : std::uint8_t {
  kStrict,    // a damaged record that is not the torn tail of the log refuses to open
  kTruncate,  // the log is cut at the first damaged record, wherever it is (data may be lost)
};

// The steps of a checkpoint, for CheckpointHook.
enum class CheckpointStep : std::uint8_t {
  kWriting,       // the snapshot is taken and the temporary file created; no entry read yet
  kBeforeRename,  // the temporary file is complete and fsynced, not yet renamed
  kBeforeTrim,    // renamed and the directory fsynced; old WAL segments not yet deleted
};

// Test hook: file faults and checkpoint crash points. The fault setters are thread-safe at
// any time; the std::function hooks must be set while no commit or checkpoint runs (before
// open, or between calls), and are called on the engine's threads.
struct FileFaults {
  // The next write (of the WAL or a checkpoint) fails with this errno (consumed once).
  void fail_next_write(int err) noexcept { next_write_.store(err, std::memory_order_relaxed); }
  // Every write fails with this errno until cleared (0 clears): a full disk.
  void fail_writes(int err) noexcept { all_writes_.store(err, std::memory_order_relaxed); }
  // The next fsync/fdatasync fails with this errno (consumed once).
  void fail_next_fsync(int err) noexcept { next_fsync_.store(err, std::memory_order_relaxed); }

  // Called at each step of a checkpoint; returning false stops the checkpoint right there,
  // leaving the files as a crash at that point would (the checkpoint returns UNAVAILABLE).
  // It may also block (to hold a checkpoint's snapshot open while a test writes).
  std::function<bool(CheckpointStep)> checkpoint_step;
  // Called by the WAL's flusher after a batch is written and before its fsync (kAlways);
  // may block, to hold commits between write and fsync.
  std::function<void()> before_wal_sync;

  // Used by the engine: the errno a write/fsync must fail with now, or 0.
  int take_write_error() noexcept {
    if (int e = all_writes_.load(std::memory_order_relaxed); e != 0) return e;
    return next_write_.exchange(0, std::memory_order_relaxed);
  }
  int take_fsync_error() noexcept { return next_fsync_.exchange(0, std::memory_order_relaxed); }

 private:
  // Relaxed: each is a standalone flag; the tests order the setting by their own latches.
  std::atomic<int> next_write_{0};
  std::atomic<int> all_writes_{0};
  std::atomic<int> next_fsync_{0};
};

struct DurabilityOptions {
  std::string data_dir;  // empty: in-memory only (the default)
  FsyncMode fsync = FsyncMode::kAlways;
  std::uint64_t checkpoint_every_bytes = 0;       // WAL bytes since the last checkpoint; 0: off
  std::chrono::milliseconds checkpoint_every{0};  // 0: off
  WalRecovery recovery = WalRecovery::kStrict;
  std::uint64_t segment_bytes = std::uint64_t{64} << 20;  // a new WAL segment past this size
  std::string restore_from;  // a snapshot file to start from (data_dir must hold no data yet)
  std::shared_ptr<FileFaults> faults;  // null: none (tests only)
};

struct DurabilityStats {
  bool enabled = false;         // a data_dir is in use
  std::uint64_t wal_bytes = 0;  // bytes in the WAL segments now on disk
  std::uint64_t wal_bytes_since_checkpoint = 0;
  std::uint64_t wal_segments = 0;      // segment files now on disk
  std::uint64_t wal_records = 0;       // records appended since open
  std::uint64_t durable_revision = 0;  // the newest revision written (and, with kAlways, fsynced)
  std::uint64_t last_checkpoint_revision = 0;  // 0: none yet
  std::uint64_t checkpoints = 0;               // checkpoints written since open
  std::uint64_t fsyncs = 0;                    // WAL fsyncs since open
  std::uint64_t group_commits = 0;      // WAL batches written (each one write + at most one fsync)
  std::uint64_t max_batch_records = 0;  // the largest batch: records sharing one write/fsync
  bool write_refused = false;           // a storage failure: writes are refused until restart
  std::string refusal_reason;           // why (file, operation, errno text)
};

}  // namespace kv::storage
