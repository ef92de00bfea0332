// storage/src/recovery.cpp — opening a data directory (docs/PERSISTENCE.md, "Recovery"):
// the lock file, an optional restore from a snapshot file, the newest valid checkpoint, then
// the WAL records after it, in order. Runs on one thread before the engine is handed out
// (no other thread exists yet: the sweeper and the log start afterwards), so it may replace
// and free versions directly.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

struct Entry {
  std::string_view key, value;
  Revision create_rev = 0, mod_rev = 0;
  std::int64_t version = 0;
  std::uint64_t lease = 0;
};

// A key entry (kRecEntry, or kRecEntryLease with its lease) of a checkpoint image.
bool parse_entry(std::string_view payload, Entry* e) {
  Reader r(payload);
  const std::uint8_t type = r.u8();
  if (type != kRecEntry && type != kRecEntryLease) return false;
  e->key = r.bytes();
  e->value = r.bytes();
  e->create_rev = r.u64();
  e->mod_rev = r.u64();
  e->version = static_cast<std::int64_t>(r.u64());
  e->lease = type == kRecEntryLease ? r.u64() : 0;
  return r.done() && !e->key.empty() && (type == kRecEntry || e->lease != 0);
}

// A lease of a checkpoint image (kRecLease: u64 id, u64 ttl).
bool parse_lease(std::string_view payload, std::uint64_t* id, std::int64_t* ttl) {
  Reader r(payload);
  if (r.u8() != kRecLease) return false;
  *id = r.u64();
  *ttl = static_cast<std::int64_t>(r.u64());
  return r.done() && *id != 0 && *ttl > 0;
}

bool is_lease_frame(std::string_view payload) {
  return !payload.empty() && static_cast<std::uint8_t>(payload[0]) == kRecLease;
}

// Verifies a whole checkpoint image (header, every frame, the end record and its count);
// on success *rev is its revision.
bool verify_checkpoint(std::string_view data, Revision* rev, std::string* why) {
  if (!parse_file_header(data, kCheckpointMagic, rev, why)) return false;
  std::size_t off = kFileHeader;
  std::uint64_t count = 0;
  for (;;) {
    const Frame f = read_frame(data, off);
    if (f.kind == Frame::Kind::kEnd) {
      *why = "no end record (the file is incomplete)";
      return false;
    }
    if (f.kind == Frame::Kind::kDamaged) {
      *why = f.why + " at offset " + std::to_string(off);
      return false;
    }
    if (!f.payload.empty() && static_cast<std::uint8_t>(f.payload[0]) == kRecEnd) {
      Reader r(f.payload);
      (void)r.u8();
      const std::uint64_t n = r.u64();
      if (!r.done() || n != count) {
        *why = "end record at offset " + std::to_string(off) + " counts " + std::to_string(n) +
               " entries, the file has " + std::to_string(count);
        return false;
      }
      if (f.next != data.size()) {
        *why = "data after the end record at offset " + std::to_string(f.next);
        return false;
      }
      return true;
    }
    if (is_lease_frame(f.payload)) {  // not counted: the end record counts key entries
      std::uint64_t id = 0;
      std::int64_t ttl = 0;
      if (!parse_lease(f.payload, &id, &ttl)) {
        *why = "bad lease at offset " + std::to_string(off);
        return false;
      }
      off = f.next;
      continue;
    }
    Entry e;
    if (!parse_entry(f.payload, &e) || e.mod_rev > *rev) {
      *why = "bad entry at offset " + std::to_string(off);
      return false;
    }
    ++count;
    off = f.next;
  }
}

bool truncate_file(const std::string& path, std::uint64_t size, std::string* err) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0 || ::fsync(fd) != 0) {
    *err = "cannot cut " + path + " at offset " + std::to_string(size) + ": " + errno_text(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  return true;
}

}  // namespace

std::unique_ptr<EngineImpl> EngineImpl::open(Options opts, std::string& error) {
  if (opts.durability.data_dir.empty()) {
    if (!opts.durability.restore_from.empty()) {
      error = "restoring from a snapshot needs a data directory";
      return nullptr;
    }
    return std::make_unique<EngineImpl>(std::move(opts));
  }
  auto e = std::make_unique<EngineImpl>(std::move(opts));
  if (!e->recover(&error) || !e->start_threads(&error)) {
    for (const std::string& n : e->notes_) error += "; before that: " + n;
    return nullptr;
  }
  return e;
}

void EngineImpl::recover_put(std::string_view key, std::string_view value, Revision create_rev,
                             Revision mod_rev, std::int64_t version, std::uint64_t lease) {
  kovan::Guard g = kovan::pin();
  bool inserted = false;
  KeyNode* n = index_.find_or_insert(key, g, &inserted);
  Version* v = Version::make(mod_rev, create_rev, version, false, value, lease);
  Version* old = n->head.load(g);
  // release: as publish() (no reader exists yet; kept for uniformity).
  n->head.store(v, std::memory_order_release);
  live_versions_.fetch_add(1, std::memory_order_relaxed);
  version_bytes_.fetch_add(v->footprint(), std::memory_order_relaxed);
  if (old == nullptr || old->tombstone) live_keys_.fetch_add(1, std::memory_order_relaxed);
  if (old != nullptr) {
    live_versions_.fetch_sub(1, std::memory_order_relaxed);
    version_bytes_.fetch_sub(old->footprint(), std::memory_order_relaxed);
    delete old;  // recovery keeps one version per key: `old` has no successor
  }
}

void EngineImpl::recover_delete(std::string_view key) {
  kovan::Guard g = kovan::pin();
  KeyNode* n = index_.find(key, g);
  if (n == nullptr) return;
  Version* old = n->head.load(g);
  if (old == nullptr) return;
  n->head.store(nullptr, std::memory_order_release);  // the empty node is swept later (E6)
  live_versions_.fetch_sub(1, std::memory_order_relaxed);
  version_bytes_.fetch_sub(old->footprint(), std::memory_order_relaxed);
  if (!old->tombstone) live_keys_.fetch_sub(1, std::memory_order_relaxed);
  delete old;
}

bool EngineImpl::load_checkpoint(const std::string& path, std::string_view data, Revision* rev,
                                 std::string* err) {
  std::string why;
  if (!verify_checkpoint(data, rev, &why)) {
    *err = "checkpoint " + path + ": " + why;
    return false;
  }
  std::size_t off = kFileHeader;
  for (;;) {
    const Frame f = read_frame(data, off);
    if (static_cast<std::uint8_t>(f.payload[0]) == kRecEnd) break;
    off = f.next;
    if (is_lease_frame(f.payload)) {
      std::uint64_t id = 0;
      std::int64_t ttl = 0;
      (void)parse_lease(f.payload, &id, &ttl);  // verified above
      recover_lease_grant(id, ttl);
      continue;
    }
    Entry e;
    (void)parse_entry(f.payload, &e);  // verified above
    recover_put(e.key, e.value, e.create_rev, e.mod_rev, e.version, e.lease);
  }
  return true;
}

bool EngineImpl::restore(const std::string& from, std::string* err) {
  std::string data;
  if (!read_whole_file(from, &data, err)) return false;
  Revision rev = 0;
  std::string why;
  if (!verify_checkpoint(data, &rev, &why)) {
    *err = "cannot restore from " + from + ": " + why;
    return false;
  }
  const std::string tmp = dir_ + "/checkpoint.tmp";
  const int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    *err = "cannot create " + tmp + ": " + errno_text(errno);
    return false;
  }
  FileFaults* faults = opts_.durability.faults.get();
  const bool ok = write_all(fd, data, faults, tmp, err) && sync_file(fd, false, faults, tmp, err);
  ::close(fd);
  if (!ok) return false;
  char name[48];
  std::snprintf(name, sizeof name, "checkpoint-%020llu.ckpt", static_cast<unsigned long long>(rev));
  const std::string final_path = dir_ + "/" + name;
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    *err = "cannot rename " + tmp + ": " + errno_text(errno);
    return false;
  }
  if (!sync_dir(dir_, err)) return false;
  notes_.push_back("restored revision " + std::to_string(rev) + " from " + from);
  return true;
}

bool EngineImpl::recover(std::string* err) {
  const DurabilityOptions& d = opts_.durability;
  dir_ = d.data_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    *err = "cannot create data directory " + dir_ + ": " + ec.message();
    return false;
  }
  const std::string lock_path = dir_ + "/LOCK";
  const int lfd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lfd < 0) {
    *err = "cannot open lock file " + lock_path + ": " + errno_text(errno);
    return false;
  }
  if (::flock(lfd, LOCK_EX | LOCK_NB) != 0) {
    *err = "data directory " + dir_ + " is in use by another engine (lock file " + lock_path +
           " is held)";
    ::close(lfd);
    return false;
  }
  lock_fd_ = lfd;

  // What the directory holds.
  std::vector<std::pair<Revision, std::string>> ckpts;
  std::vector<WalSegment> segs;
  auto scan = [&] {
    ckpts.clear();
    segs.clear();
    for (const auto& ent : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string name = ent.path().filename().string();
      const std::string path = ent.path().string();
      if (name == "checkpoint.tmp") {
        std::filesystem::remove(ent.path(), ec);
        notes_.push_back("removed " + path + ", left by an interrupted checkpoint");
      } else if (name.rfind("checkpoint-", 0) == 0 && name.size() == 11 + 20 + 5 &&
                 name.compare(31, 5, ".ckpt") == 0) {
        ckpts.emplace_back(std::strtoull(name.c_str() + 11, nullptr, 10), path);
      } else if (name.rfind("wal-", 0) == 0 && name.size() == 4 + 16 + 4 &&
                 name.compare(20, 4, ".log") == 0) {
        WalSegment s;
        s.path = path;
        s.seq = std::strtoull(name.c_str() + 4, nullptr, 16);
        segs.push_back(s);
      }
    }
  };
  scan();
  if (ec) {
    *err = "cannot list data directory " + dir_ + ": " + ec.message();
    return false;
  }
  if (!d.restore_from.empty()) {
    if (!ckpts.empty() || !segs.empty()) {
      *err = "cannot restore into " + dir_ + ": it already holds data (checkpoints or WAL)";
      return false;
    }
    if (!restore(d.restore_from, err)) return false;
    scan();
  }
  std::sort(ckpts.begin(), ckpts.end(), [](const auto& a, const auto& b) { return a > b; });
  std::sort(segs.begin(), segs.end(),
            [](const WalSegment& a, const WalSegment& b) { return a.seq < b.seq; });

  // 1. The newest checkpoint that verifies.
  Revision base = 1;  // the empty store
  std::string data;
  for (const auto& [rev, path] : ckpts) {
    std::string why;
    Revision r = 0;
    if (read_whole_file(path, &data, &why) && load_checkpoint(path, data, &r, &why)) {
      base = r;
      last_ckpt_.store(r, std::memory_order_relaxed);
      break;
    }
    notes_.push_back(why + "; trying an older checkpoint");
  }

  if (changes_) changes_->reset(base);  // the watch feed serves what is replayed (CL4)

  // 2. The WAL after it, segment by segment, record by record, in revision order.
  Revision log_last = 0;  // the newest revision the log holds so far
  WalRecord rec;
  const bool truncate_mode = d.recovery == WalRecovery::kTruncate;
  auto set_aside = [&](std::size_t from) {  // kTruncate: segments after the cut
    for (std::size_t k = from; k < segs.size(); ++k) {
      std::filesystem::rename(segs[k].path, segs[k].path + ".damaged", ec);
    }
    const std::size_t n = segs.size() - from;
    segs.resize(from);
    return n;
  };
  for (std::size_t i = 0; i < segs.size(); ++i) {
    WalSegment& seg = segs[i];
    const bool last_seg = i + 1 == segs.size();
    if (!read_whole_file(seg.path, &data, err)) return false;
    std::string why;
    if (!parse_file_header(data, kWalMagic, &seg.prev_rev, &why)) {
      if (last_seg && data.size() < kFileHeader) {
        // Created, but a crash came before its header was durable: nothing was in it.
        notes_.push_back("removed WAL segment " + seg.path + " with an incomplete header");
        std::filesystem::remove(seg.path, ec);
        segs.pop_back();
        break;
      }
      if (truncate_mode) {
        const std::size_t n = set_aside(i);
        notes_.push_back("WAL segment " + seg.path + " is damaged at offset 0 (" + why +
                         "); the log was cut there and " + std::to_string(n) +
                         " segment(s) set aside as *.damaged");
        break;
      }
      *err = "damaged WAL segment " + seg.path + " at offset 0: " + why;
      return false;
    }
    if (i == 0 ? seg.prev_rev > base : seg.prev_rev != log_last) {
      const std::string gap = "WAL segment " + seg.path + " follows revision " +
                              std::to_string(seg.prev_rev) + " but the log before it ends at " +
                              std::to_string(i == 0 ? base : log_last) + ": a segment is missing";
      if (!truncate_mode || i == 0) {
        *err = gap;
        return false;
      }
      const std::size_t n = set_aside(i);
      notes_.push_back(gap + "; the log was cut there and " + std::to_string(n) +
                       " segment(s) set aside as *.damaged");
      break;
    }
    log_last = seg.prev_rev;
    std::size_t off = kFileHeader;
    bool cut = false;
    for (;;) {
      Frame f = read_frame(data, off);
      if (f.kind == Frame::Kind::kEnd) break;
      Revision rev = 0;
      Decoded dec = Decoded::kMalformed;
      if (f.kind == Frame::Kind::kOk) {
        dec = decode_wal_record(f.payload, &rec);
        rev = rec.revision;
        if (dec == Decoded::kMalformed) {
          f.kind = Frame::Kind::kDamaged;
          f.why = "malformed record";
        } else if (rev <= log_last) {
          f.kind = Frame::Kind::kDamaged;
          f.why =
              "revision " + std::to_string(rev) + " does not follow " + std::to_string(log_last);
        }
      }
      if (f.kind == Frame::Kind::kDamaged) {
        const std::string where = seg.path + " at offset " + std::to_string(off);
        if (f.reaches_eof && last_seg) {
          notes_.push_back("cut a torn record at the end of the WAL: " + where + " (" + f.why +
                           ")");
        } else if (truncate_mode) {
          const std::size_t n = set_aside(i + 1);
          notes_.push_back("damaged WAL record in " + where + " (" + f.why +
                           "); the log was cut there and " + std::to_string(n) +
                           " later segment(s) set aside as *.damaged");
        } else {
          *err = "damaged WAL record in " + where + ": " + f.why +
                 " (WAL recovery 'truncate' cuts the log there, losing what follows)";
          return false;
        }
        if (!truncate_file(seg.path, off, err)) return false;
        data.resize(off);
        cut = true;
        break;
      }
      if (rev > base && dec == Decoded::kOk) {  // kUnknown: a kind this build skips
        if (rec.kind == kRecCommit) {
          if (changes_) refill_changes(f.payload);  // before the record is applied (CL4)
          for (const WalOp& op : rec.ops) {
            if (op.put) {
              recover_put(op.key, op.value, op.create_rev, rev, op.version, op.lease);
            } else {
              recover_delete(op.key);
            }
          }
        } else if (rec.kind == kRecLeaseGrant) {
          recover_lease_grant(rec.lease_id, rec.lease_ttl);
        } else if (rec.kind == kRecLeaseEnd) {
          recover_lease_end(rec.lease_id);
        }
      }
      log_last = rev;
      off = f.next;
    }
    seg.bytes = data.size();
    if (cut) break;
  }
  const Revision now = std::max(base, log_last);
  clock_.reset(now);
  recover_lease_keys();
  kovan::flush();
  wal_ = std::make_unique<Wal>(dir_, d, std::move(segs), now);
  return true;
}

// The commit-record decoder recovery uses (decode_wal_record), for the watch feed's reads of
// the WAL. False for a malformed record and for a record that is not a commit.
bool decode_wal_commit(std::string_view payload, Revision* rev, std::vector<WalCommitOp>* ops) {
  WalRecord rec;
  if (decode_wal_record(payload, &rec) != Decoded::kOk || rec.kind != kRecCommit) return false;
  *rev = rec.revision;
  ops->clear();
  for (const WalOp& op : rec.ops) {
    ops->push_back(WalCommitOp{op.put, op.key, op.value, op.create_rev, op.version, op.lease});
  }
  return true;
}

}  // namespace kv::storage::detail
