// storage/src/wal.hpp — the write-ahead log: record framing and encoding (shared with the
// checkpoint format), file helpers with fault injection, and the Wal class (a sequencer
// that puts records in revision order, and a flusher thread that writes them in batches,
// one write and at most one fsync per batch: group commit). Formats: docs/PERSISTENCE.md.
//
// INVARIANTS
// ----------
// L1. Records reach the log in revision order. Every commit timestamp handed out by the
//     CommitClock is given to the Wal exactly once: submit() (a record) or skip() (an
//     abandoned timestamp). The sequencer moves slots to the write buffer only while the slot
//     of `next_` is filled, so the buffer always holds the records of a contiguous range of
//     timestamps, in order. A crash therefore leaves a log that is a prefix of the commit
//     order.
// L2. A ring slot ts % kRing is reused only by ts + kRing, which the clock hands out only once
//     W > ts (CommitClock::acquire); W > ts means every timestamp <= ts was finished, and
//     each was submitted or skipped before it finished, so the last of them drained the ring
//     past ts (the drain runs under `mu_` on every submit/skip).
// L3. `done_` (the newest revision written, and with kAlways fsynced) only grows, and only
//     over batches whose write (and fsync) succeeded. After the first failed write or fsync
//     `failed_` is set for good: every waiter whose revision is above `done_` is told the
//     commit failed, and nothing is retried (a failed fsync is never followed by a "good"
//     one that would hide lost pages).
// All shared state is guarded by `mu_` (or `seg_mu_` for the segment list); the counters
// read by stats without the lock are relaxed atomics (standalone statistics).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "snapshots.hpp"
#include "storage/durability.hpp"
#include "storage/engine.hpp"

namespace kv::storage::detail {

// ------------------------------------------------------------------ encoding
inline void put_u8(std::string& o, std::uint8_t v) { o.push_back(static_cast<char>(v)); }
void put_u32(std::string& o, std::uint32_t v);
void put_u64(std::string& o, std::uint64_t v);
void put_bytes(std::string& o, std::string_view b);  // u32 length, then the bytes

// Reads what put_* wrote; any read past the end sets ok() false and returns zeros/empty.
class Reader {
 public:
  explicit Reader(std::string_view d) noexcept : d_(d) {}
  std::uint8_t u8() noexcept;
  std::uint32_t u32() noexcept;
  std::uint64_t u64() noexcept;
  std::string_view bytes() noexcept;
  bool ok() const noexcept { return ok_; }
  bool done() const noexcept { return ok_ && pos_ == d_.size(); }

 private:
  std::string_view d_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

std::uint32_t crc32_of(std::string_view data) noexcept;

// A frame: [u32 length][u32 crc32 of the length field][u32 crc32 of the payload][payload].
inline constexpr std::size_t kFrameHeader = 12;
inline constexpr std::uint32_t kMaxFrame = 1u << 30;
void append_frame(std::string& out, std::string_view payload);

struct Frame {
  enum class Kind : std::uint8_t { kOk, kEnd, kDamaged };
  Kind kind = Kind::kEnd;
  std::string_view payload;
  std::size_t next = 0;      // offset after the frame (kOk)
  bool reaches_eof = false;  // kDamaged: the damage runs to the end of the data (a torn tail)
  std::string why;           // kDamaged
};
// The frame at `off` of `data`.
Frame read_frame(std::string_view data, std::size_t off);

// Payload types. Every WAL record starts with u8 kind, u64 revision (so a reader can order
// and skip a kind it does not know); docs/PERSISTENCE.md, section 2.
inline constexpr std::uint8_t kRecCommit = 1;  // WAL: one committed revision
inline constexpr std::uint8_t kRecEntry = 2;   // checkpoint: one key-value
inline constexpr std::uint8_t kRecEnd = 3;     // checkpoint: the end, with the entry count
// Leases (format version 2).
inline constexpr std::uint8_t kRecLeaseGrant = 16;  // WAL: a lease granted (id, ttl)
inline constexpr std::uint8_t kRecLeaseEnd = 17;    // WAL: a lease revoked or expired (id)
inline constexpr std::uint8_t kRecEntryLease = 18;  // checkpoint: a key-value with its lease
inline constexpr std::uint8_t kRecLease = 19;       // checkpoint: a lease alive (id, ttl)
inline constexpr std::uint8_t kOpPut = 1;
inline constexpr std::uint8_t kOpDelete = 2;
inline constexpr std::uint8_t kOpPutLease = 3;  // a put attaching the key to a lease (v2)

// A decoded WAL record: the one decoder every reader of the log uses. The views point into
// the payload.
struct WalOp {
  bool put = false;  // else a delete
  std::string_view key, value;
  Revision create_rev = 0;
  std::int64_t version = 0;
  std::uint64_t lease = 0;
};
struct WalRecord {
  std::uint8_t kind = 0;
  Revision revision = 0;
  std::vector<WalOp> ops;      // kRecCommit
  std::uint64_t lease_id = 0;  // kRecLeaseGrant, kRecLeaseEnd
  std::int64_t lease_ttl = 0;  // kRecLeaseGrant
};
enum class Decoded : std::uint8_t {
  kOk,         // a kind this build knows, fully decoded
  kUnknown,    // a well-formed kind/revision prefix of a kind this build does not know:
               // `kind` and `revision` are set; readers skip it
  kMalformed,  // its checksum held but it does not parse: damage
};
Decoded decode_wal_record(std::string_view payload, WalRecord* out);
// The payload of a lease record (kRecLeaseGrant with ttl, or kRecLeaseEnd).
std::string encode_lease_record(std::uint8_t kind, Revision rev, std::uint64_t id,
                                std::int64_t ttl);

// File headers: 8-byte magic, u32 format version, u32 reserved (0), u64 revision, u32 crc32
// of the 24 bytes before it. The revision is, for a WAL segment, the revision of the last
// record written before the segment's first one; for a checkpoint, its revision.
inline constexpr std::size_t kFileHeader = 28;
inline constexpr std::uint32_t kFormatVersion = 2;        // written
inline constexpr std::uint32_t kOldestFormatVersion = 1;  // still read (no lease records)
inline constexpr std::string_view kWalMagic = "KOVANWAL";
inline constexpr std::string_view kCheckpointMagic = "KOVANCKP";
std::string file_header(std::string_view magic, Revision rev);
// OK and *rev set, or a reason.
bool parse_file_header(std::string_view data, std::string_view magic, Revision* rev,
                       std::string* why);

// ------------------------------------------------------------------ files
std::string errno_text(int err);
// Write/fsync with the test faults applied. On failure false and *err = "<what> <path>: <errno>".
bool write_all(int fd, std::string_view data, FileFaults* faults, const std::string& path,
               std::string* err);
bool sync_file(int fd, bool data_only, FileFaults* faults, const std::string& path,
               std::string* err);
bool sync_dir(const std::string& dir, std::string* err);
bool read_whole_file(const std::string& path, std::string* out, std::string* err);

// ------------------------------------------------------------------ the log
struct WalSegment {
  std::string path;
  std::uint64_t seq = 0;  // from the name: wal-<seq>.log
  Revision prev_rev = 0;  // from the header
  std::uint64_t bytes = 0;
};

std::string segment_name(std::uint64_t seq);

class Wal {
 public:
  static constexpr std::size_t kRing = CommitClock::kRing;

  // `segments`: the ones recovery kept, oldest first; `last_rev`: the newest revision in
  // them (or in the checkpoint). Call start() before use.
  Wal(std::string dir, const DurabilityOptions& opts, std::vector<WalSegment> segments,
      Revision last_rev);
  ~Wal();  // writes what is buffered, fsyncs (all modes), stops the flusher
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Opens a fresh segment and starts the flusher thread.
  bool start(std::string* err);

  // L1. `record` is a framed kRecCommit record for revision ts.
  void submit(Revision ts, std::string&& record) noexcept;
  void skip(Revision ts) noexcept;
  // Returns once ts is written (kAlways: and fsynced): OK; or STORAGE_FAILED if the write
  // or fsync of its batch (or an earlier one) failed.
  Status wait(Revision ts);

  bool failed() const noexcept { return failed_flag_.load(std::memory_order_acquire); }
  Status failure() const;

  // Deletes the segments wholly at or below `rev` (never the one being written).
  void trim(Revision rev);
  // Called (from the flusher, without locks) when the bytes since the last checkpoint pass
  // DurabilityOptions::checkpoint_every_bytes.
  void set_checkpoint_trigger(std::function<void()> f) { trigger_ = std::move(f); }
  void checkpoint_done() noexcept { since_ckpt_.store(0, std::memory_order_relaxed); }

  void fill_stats(DurabilityStats* s) const;
  // The segments on disk now, oldest first (the watch feed reads them).
  std::vector<WalSegment> segments() const;

 private:
  struct Slot {
    Revision rev = 0;
    bool skip = false;
    std::string data;
  };
  void drain_locked();
  void fail_locked(std::string reason);
  void flusher_loop();
  // Flusher only: a new segment after `prev_rev` (the current one is fsynced and closed).
  bool open_segment(Revision prev_rev, std::string* err);

  const std::string dir_;
  const FsyncMode mode_;
  const std::uint64_t segment_bytes_;
  const std::uint64_t ckpt_bytes_;
  const std::shared_ptr<FileFaults> faults_;
  std::function<void()> trigger_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the flusher waits: buffer not empty, or stop
  std::condition_variable done_cv_;  // committers wait: done_ >= ts, or failed
  std::vector<Slot> ring_;
  Revision next_;          // the next revision the sequencer expects (L1)
  std::string buf_;        // records of a contiguous range, waiting for the flusher
  Revision buf_last_ = 0;  // the newest revision in buf_ (or skipped after it)
  std::uint64_t buf_records_ = 0;
  Revision done_;  // L3
  bool failed_ = false;
  std::string reason_;
  bool stop_ = false;
  std::atomic<bool> failed_flag_{false};  // = failed_, for a lock-free check at commit start

  // The segments (guarded by seg_mu_; the flusher appends, trim() deletes all but the last).
  mutable std::mutex seg_mu_;
  std::vector<WalSegment> segments_;
  int fd_ = -1;                  // the last segment, open for appends (flusher only after start())
  std::string cur_path_;         // its path (flusher only)
  std::uint64_t cur_bytes_ = 0;  // its size (flusher only)
  Revision written_ = 0;         // flusher only: the newest revision in a write that succeeded
  Revision synced_ = 0;          // flusher only: ... in an fsync that succeeded

  // Statistics (relaxed: standalone counters).
  std::atomic<std::uint64_t> records_{0};
  std::atomic<std::uint64_t> fsyncs_{0};
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<std::uint64_t> max_batch_{0};
  std::atomic<std::uint64_t> since_ckpt_{0};
  std::atomic<Revision> done_stat_{0};

  std::thread flusher_;  // last: started by start()
};

}  // namespace kv::storage::detail
