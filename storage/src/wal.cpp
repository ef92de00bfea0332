// storage/src/wal.cpp — record framing and encoding, file helpers, and the write-ahead log
// (invariants L1-L3 in wal.hpp; formats in docs/PERSISTENCE.md).
#include "wal.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

namespace kv::storage::detail {

// ------------------------------------------------------------------ encoding
void put_u32(std::string& o, std::uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  o.append(b, 4);
}

void put_u64(std::string& o, std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  o.append(b, 8);
}

void put_bytes(std::string& o, std::string_view b) {
  put_u32(o, static_cast<std::uint32_t>(b.size()));
  o.append(b);
}

std::uint8_t Reader::u8() noexcept {
  if (!ok_ || d_.size() - pos_ < 1) {
    ok_ = false;
    return 0;
  }
  return static_cast<std::uint8_t>(d_[pos_++]);
}

std::uint32_t Reader::u32() noexcept {
  if (!ok_ || d_.size() - pos_ < 4) {
    ok_ = false;
    return 0;
  }
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(d_[pos_ + i])) << (8 * i);
  }
  pos_ += 4;
  return v;
}

std::uint64_t Reader::u64() noexcept {
  if (!ok_ || d_.size() - pos_ < 8) {
    ok_ = false;
    return 0;
  }
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(d_[pos_ + i])) << (8 * i);
  }
  pos_ += 8;
  return v;
}

std::string_view Reader::bytes() noexcept {
  const std::uint32_t n = u32();
  if (!ok_ || d_.size() - pos_ < n) {
    ok_ = false;
    return {};
  }
  std::string_view v = d_.substr(pos_, n);
  pos_ += n;
  return v;
}

std::uint32_t crc32_of(std::string_view data) noexcept {
  uLong c = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  while (!data.empty()) {
    const std::size_t n = std::min<std::size_t>(data.size(), std::numeric_limits<uInt>::max());
    c = crc32(c, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(n));
    data.remove_prefix(n);
  }
  return static_cast<std::uint32_t>(c);
}

void append_frame(std::string& out, std::string_view payload) {
  std::string len;
  put_u32(len, static_cast<std::uint32_t>(payload.size()));
  out += len;
  put_u32(out, crc32_of(len));
  put_u32(out, crc32_of(payload));
  out.append(payload);
}

Frame read_frame(std::string_view data, std::size_t off) {
  Frame f;
  if (off == data.size()) return f;  // kEnd
  f.kind = Frame::Kind::kDamaged;
  const std::string_view rest = data.substr(off);
  const bool zeros = rest.find_first_not_of('\0') == std::string_view::npos;
  if (rest.size() < kFrameHeader) {
    f.reaches_eof = true;
    f.why = "incomplete record header";
    return f;
  }
  Reader r(rest);
  const std::uint32_t len = r.u32();
  const std::uint32_t hcrc = r.u32();
  const std::uint32_t crc = r.u32();
  if (crc32_of(rest.substr(0, 4)) != hcrc || len > kMaxFrame) {
    // A header that was never written (zeros to the end) is a torn tail; anything else is
    // damage: a flipped length must not pass for a torn tail and silently cut the log.
    f.reaches_eof = zeros;
    f.why = "bad record header checksum";
    return f;
  }
  if (rest.size() - kFrameHeader < len) {
    f.reaches_eof = true;
    f.why = "incomplete record (" + std::to_string(len) + " bytes announced, " +
            std::to_string(rest.size() - kFrameHeader) + " present)";
    return f;
  }
  const std::string_view payload = rest.substr(kFrameHeader, len);
  if (crc32_of(payload) != crc) {
    f.reaches_eof = kFrameHeader + len == rest.size();
    f.why = "bad record checksum";
    return f;
  }
  f.kind = Frame::Kind::kOk;
  f.payload = payload;
  f.next = off + kFrameHeader + len;
  return f;
}

std::string file_header(std::string_view magic, Revision rev) {
  std::string h(magic);
  put_u32(h, kFormatVersion);
  put_u32(h, 0);
  put_u64(h, rev);
  put_u32(h, crc32_of(h));
  return h;
}

bool parse_file_header(std::string_view data, std::string_view magic, Revision* rev,
                       std::string* why) {
  if (data.size() < kFileHeader) {
    *why = "file shorter than its header";
    return false;
  }
  if (data.substr(0, magic.size()) != magic) {
    *why = "not a " + std::string(magic) + " file (bad magic)";
    return false;
  }
  Reader r(data.substr(magic.size(), kFileHeader - magic.size()));
  const std::uint32_t version = r.u32();
  (void)r.u32();
  const Revision rv = r.u64();
  const std::uint32_t crc = r.u32();
  if (crc != crc32_of(data.substr(0, kFileHeader - 4))) {
    *why = "bad header checksum";
    return false;
  }
  if (version < kOldestFormatVersion || version > kFormatVersion) {
    *why = "format version " + std::to_string(version) + " (this build reads " +
           std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) + ")";
    return false;
  }
  *rev = rv;
  return true;
}

Decoded decode_wal_record(std::string_view payload, WalRecord* out) {
  Reader r(payload);
  out->kind = r.u8();
  out->revision = r.u64();
  out->ops.clear();
  out->lease_id = 0;
  out->lease_ttl = 0;
  if (!r.ok()) return Decoded::kMalformed;
  switch (out->kind) {
    case kRecCommit: {
      const std::uint32_t n = r.u32();
      for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
        WalOp op;
        const std::uint8_t type = r.u8();
        op.key = r.bytes();
        if (type == kOpPut || type == kOpPutLease) {
          op.put = true;
          op.value = r.bytes();
          op.create_rev = r.u64();
          op.version = static_cast<std::int64_t>(r.u64());
          if (type == kOpPutLease) {
            op.lease = r.u64();
            if (op.lease == 0) return Decoded::kMalformed;
          }
        } else if (type != kOpDelete) {
          return Decoded::kMalformed;
        }
        out->ops.push_back(op);
      }
      return r.done() ? Decoded::kOk : Decoded::kMalformed;
    }
    case kRecLeaseGrant:
      out->lease_id = r.u64();
      out->lease_ttl = static_cast<std::int64_t>(r.u64());
      return r.done() && out->lease_id != 0 && out->lease_ttl > 0 ? Decoded::kOk
                                                                  : Decoded::kMalformed;
    case kRecLeaseEnd:
      out->lease_id = r.u64();
      return r.done() && out->lease_id != 0 ? Decoded::kOk : Decoded::kMalformed;
    default:
      return Decoded::kUnknown;
  }
}

std::string encode_lease_record(std::uint8_t kind, Revision rev, std::uint64_t id,
                                std::int64_t ttl) {
  std::string payload;
  put_u8(payload, kind);
  put_u64(payload, rev);
  put_u64(payload, id);
  if (kind == kRecLeaseGrant) put_u64(payload, static_cast<std::uint64_t>(ttl));
  std::string record;
  append_frame(record, payload);
  return record;
}

// ------------------------------------------------------------------ files
std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message (maybe not in buf).
  const char* m = strerror_r(err, buf, sizeof buf);
  return std::string(m) + " (errno " + std::to_string(err) + ")";
}

bool write_all(int fd, std::string_view data, FileFaults* faults, const std::string& path,
               std::string* err) {
  while (!data.empty()) {
    ssize_t n = 0;
    if (int fe = faults != nullptr ? faults->take_write_error() : 0; fe != 0) {
      errno = fe;
      n = -1;
    } else {
      n = ::write(fd, data.data(), data.size());
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = "write to " + path + " failed: " + errno_text(errno);
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool sync_file(int fd, bool data_only, FileFaults* faults, const std::string& path,
               std::string* err) {
  int rc = 0;
  if (int fe = faults != nullptr ? faults->take_fsync_error() : 0; fe != 0) {
    errno = fe;
    rc = -1;
  } else {
    rc = data_only ? ::fdatasync(fd) : ::fsync(fd);
  }
  if (rc != 0) {
    // Never retried: after a failed fsync the kernel may have dropped the dirty pages, and
    // a second fsync could "succeed" with the data lost (L3).
    *err = "fsync of " + path + " failed: " + errno_text(errno);
    return false;
  }
  return true;
}

bool sync_dir(const std::string& dir, std::string* err) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *err = "open of directory " + dir + " failed: " + errno_text(errno);
    return false;
  }
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) {
    *err = "fsync of directory " + dir + " failed: " + errno_text(e);
    return false;
  }
  return true;
}

bool read_whole_file(const std::string& path, std::string* out, std::string* err) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = "cannot open " + path + ": " + errno_text(errno);
    return false;
  }
  out->clear();
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = "cannot read " + path + ": " + errno_text(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return true;
}

std::string segment_name(std::uint64_t seq) {
  char b[40];
  std::snprintf(b, sizeof b, "wal-%016llx.log", static_cast<unsigned long long>(seq));
  return b;
}

// ------------------------------------------------------------------ Wal
Wal::Wal(std::string dir, const DurabilityOptions& opts, std::vector<WalSegment> segments,
         Revision last_rev)
    : dir_(std::move(dir)),
      mode_(opts.fsync),
      segment_bytes_(opts.segment_bytes),
      ckpt_bytes_(opts.checkpoint_every_bytes),
      faults_(opts.faults),
      ring_(kRing),
      next_(last_rev + 1),
      buf_last_(last_rev),
      done_(last_rev),
      segments_(std::move(segments)),
      written_(last_rev),
      synced_(last_rev) {
  done_stat_.store(last_rev, std::memory_order_relaxed);
}

Wal::~Wal() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (fd_ >= 0) ::close(fd_);
}

bool Wal::start(std::string* err) {
  if (!open_segment(written_, err)) return false;
  flusher_ = std::thread([this] { flusher_loop(); });
  return true;
}

bool Wal::open_segment(Revision prev_rev, std::string* err) {
  std::uint64_t seq = 1;
  {
    std::lock_guard lk(seg_mu_);
    if (!segments_.empty()) seq = segments_.back().seq + 1;
  }
  const std::string path = dir_ + "/" + segment_name(seq);
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    *err = "cannot create WAL segment " + path + ": " + errno_text(errno);
    return false;
  }
  const std::string header = file_header(kWalMagic, prev_rev);
  if (!write_all(fd, header, faults_.get(), path, err) ||
      !sync_file(fd, false, faults_.get(), path, err) || !sync_dir(dir_, err)) {
    ::close(fd);
    return false;
  }
  if (fd_ >= 0) {
    // The old segment's records are fsynced with kAlways already; in the other modes this
    // is the fsync the background would do, so that a closed segment is complete on disk.
    if (mode_ != FsyncMode::kAlways) {
      if (!sync_file(fd_, true, faults_.get(), cur_path_, err)) {
        ::close(fd);
        return false;
      }
      fsyncs_.fetch_add(1, std::memory_order_relaxed);
    }
    ::close(fd_);
  }
  fd_ = fd;
  cur_path_ = path;
  cur_bytes_ = header.size();
  std::lock_guard lk(seg_mu_);
  segments_.push_back(WalSegment{path, seq, prev_rev, header.size()});
  return true;
}

void Wal::submit(Revision ts, std::string&& record) noexcept {
  std::lock_guard lk(mu_);
  Slot& s = ring_[ts % kRing];
  s.rev = ts;
  s.skip = false;
  s.data = std::move(record);  // noexcept move
  drain_locked();
}

void Wal::skip(Revision ts) noexcept {
  std::lock_guard lk(mu_);
  Slot& s = ring_[ts % kRing];
  s.rev = ts;
  s.skip = true;
  drain_locked();
}

// L1, L2: moves the filled slots from next_ on into the write buffer, in order.
void Wal::drain_locked() {
  bool any = false;
  try {
    for (;;) {
      Slot& s = ring_[next_ % kRing];
      if (s.rev != next_) break;
      if (!s.skip) {
        buf_ += s.data;
        ++buf_records_;
        buf_last_ = next_;
        any = true;
      }
      std::string().swap(s.data);
      ++next_;
    }
  } catch (const std::bad_alloc&) {
    // The record cannot be queued; it was published but is not yet visible. Refuse it and
    // every later write, as for a failed write (L3).
    fail_locked("out of memory while queueing a WAL record");
  }
  if (any) work_cv_.notify_one();
}

void Wal::fail_locked(std::string reason) {
  if (failed_) return;
  failed_ = true;
  reason_ = std::move(reason) + "; writes are refused until the server restarts";
  // release: pairs with the acquire load in failed() (reason_ is read under mu_ anyway).
  failed_flag_.store(true, std::memory_order_release);
  done_cv_.notify_all();
}

Status Wal::failure() const {
  std::lock_guard lk(mu_);
  return Status(StatusCode::kStorageFailed, reason_);
}

Status Wal::wait(Revision ts) {
  std::unique_lock lk(mu_);
  done_cv_.wait(lk, [&] { return done_ >= ts || failed_; });
  if (done_ >= ts) return Status::Ok();
  return Status(StatusCode::kStorageFailed, "the commit was not made durable: " + reason_);
}

void Wal::flusher_loop() {
  using Clock = std::chrono::steady_clock;
  auto last_sync = Clock::now();
  std::unique_lock lk(mu_);
  for (;;) {
    auto ready = [&] { return stop_ || !buf_.empty(); };
    if (mode_ == FsyncMode::kEverySec) {
      work_cv_.wait_until(lk, last_sync + std::chrono::seconds(1), ready);
    } else {
      work_cv_.wait(lk, ready);
    }
    if (failed_) {
      buf_.clear();  // nothing more reaches the log (L3)
      buf_records_ = 0;
      if (stop_) return;
      work_cv_.wait(lk, [&] { return stop_; });
      return;
    }
    const bool stopping = stop_ && buf_.empty();
    std::string batch;
    batch.swap(buf_);
    const Revision last = buf_last_;
    const std::uint64_t nrec = buf_records_;
    buf_records_ = 0;
    lk.unlock();

    std::string err;
    bool ok = true;
    if (!batch.empty()) {
      if (cur_bytes_ >= segment_bytes_) ok = open_segment(written_, &err);
      ok = ok && write_all(fd_, batch, faults_.get(), cur_path_, &err);
      if (ok) {
        written_ = last;
        cur_bytes_ += batch.size();
        {
          std::lock_guard sl(seg_mu_);
          segments_.back().bytes = cur_bytes_;
        }
        records_.fetch_add(nrec, std::memory_order_relaxed);
        batches_.fetch_add(1, std::memory_order_relaxed);
        if (nrec > max_batch_.load(std::memory_order_relaxed)) {
          max_batch_.store(nrec, std::memory_order_relaxed);  // the flusher is the only writer
        }
      }
    }
    const bool want_sync = written_ > synced_ &&
                           (mode_ == FsyncMode::kAlways ||
                            (mode_ == FsyncMode::kEverySec &&
                             (stopping || Clock::now() - last_sync >= std::chrono::seconds(1))) ||
                            stopping);
    if (ok && want_sync) {
      if (faults_ && faults_->before_wal_sync) faults_->before_wal_sync();
      ok = sync_file(fd_, true, faults_.get(), cur_path_, &err);
      fsyncs_.fetch_add(1, std::memory_order_relaxed);
      if (ok) synced_ = written_;
      last_sync = Clock::now();
    } else if (!want_sync && mode_ == FsyncMode::kEverySec &&
               Clock::now() - last_sync >= std::chrono::seconds(1)) {
      last_sync = Clock::now();
    }
    bool trigger = false;
    if (ok && !batch.empty() && ckpt_bytes_ != 0) {
      trigger = since_ckpt_.fetch_add(batch.size(), std::memory_order_relaxed) + batch.size() >=
                ckpt_bytes_;
    }
    if (trigger && trigger_) trigger_();

    lk.lock();
    if (!ok) {
      fail_locked(err);
      continue;
    }
    const Revision d = mode_ == FsyncMode::kAlways ? synced_ : written_;
    if (d > done_) {
      done_ = d;
      done_stat_.store(d, std::memory_order_relaxed);
      done_cv_.notify_all();
    }
    if (stopping) return;
  }
}

void Wal::trim(Revision rev) {
  std::vector<std::string> doomed;
  {
    std::lock_guard lk(seg_mu_);
    // Segment i holds revisions <= the prev_rev of segment i+1; never the last segment.
    std::size_t k = 0;
    while (k + 1 < segments_.size() && segments_[k + 1].prev_rev <= rev) {
      doomed.push_back(segments_[k].path);
      ++k;
    }
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(k));
  }
  for (const std::string& p : doomed) ::unlink(p.c_str());
  if (!doomed.empty()) {
    std::string err;
    (void)sync_dir(dir_, &err);  // best effort: a segment that comes back is only skipped
  }
}

std::vector<WalSegment> Wal::segments() const {
  std::lock_guard<std::mutex> lock(seg_mu_);
  return segments_;
}

void Wal::fill_stats(DurabilityStats* s) const {
  {
    std::lock_guard lk(seg_mu_);
    s->wal_segments = segments_.size();
    for (const WalSegment& g : segments_) s->wal_bytes += g.bytes;
  }
  s->wal_bytes_since_checkpoint = since_ckpt_.load(std::memory_order_relaxed);
  s->wal_records = records_.load(std::memory_order_relaxed);
  s->durable_revision = done_stat_.load(std::memory_order_relaxed);
  s->fsyncs = fsyncs_.load(std::memory_order_relaxed);
  s->group_commits = batches_.load(std::memory_order_relaxed);
  s->max_batch_records = max_batch_.load(std::memory_order_relaxed);
  std::lock_guard lk(mu_);
  s->write_refused = failed_;
  s->refusal_reason = reason_;
}

}  // namespace kv::storage::detail
