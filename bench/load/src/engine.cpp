// Invariants of one sender thread (Worker), which owns its connections exclusively:
//   - conn.fifo holds one entry per request written to conn.out (or already sent) whose
//     response has not arrived, in the order the requests were appended; the server answers
//     in that order (docs/PROTOCOL.md section 2; Redis likewise), so each response belongs
//     to fifo.front().
//   - Every active slot has exactly one fifo entry (a two-step operation enqueues its second
//     request only after the first one's response), so in-flight operations per connection
//     never exceed `pipeline`.
//   - A connection that failed is closed once; each of its in-flight operations is
//     finished exactly once, as a transport error.
// Cross-thread state: `Shared` counters (relaxed: they only pick keys, no data is published
// through them) and the per-second hand-off in Worker (release/acquire, documented there).
#include "engine.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>

#include "proto/codec.hpp"
#include "proto/frame.hpp"
#include "resp.hpp"

namespace kv::bench {

namespace {

namespace pb = ::kovan::kv::v1;
using kv::proto::FrameReader;
using kv::proto::FrameStatus;

constexpr std::uint64_t kSecond = 1'000'000'000ull;
constexpr std::uint64_t kDrainNs = 2 * kSecond;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

struct Shared {
  const LoadConfig& cfg;
  // Next record number an insert creates.
  std::atomic<std::uint64_t> next_insert;
  // Records that reads and updates choose among (grows as inserts are acknowledged).
  std::atomic<std::uint64_t> record_count;
  std::uint64_t start_ns = 0;
  std::uint64_t measure_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint32_t seconds = 0;      // measured seconds in the series
  std::uint64_t interval_ns = 0;  // open loop: time between sends on one connection
};

struct Slot {
  OpKind kind = OpKind::kRead;
  std::uint8_t step = 0;
  std::uint64_t intended_ns = 0;
  std::uint64_t sent_ns = 0;
  std::uint64_t key = 0;
  std::vector<std::uint64_t> keys;  // txn
  std::vector<std::uint64_t> revs;  // txn: mod_revision of each key read
};

struct Pending {
  std::uint32_t slot;
  std::uint64_t id;  // Kovan KV request id (0 for Redis)
};

// A connected socket and, for TLS targets, its session (handshake done; fd non-blocking).
struct Link {
  int fd = -1;
  SSL* ssl = nullptr;
};

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;  // TLS targets: every byte goes through SSL_read / SSL_write
  bool dead = false;
  bool want_write = false;
  std::uint64_t next_id = 1;
  std::uint64_t next_intended = 0;
  std::string out;
  std::size_t out_off = 0;
  FrameReader frames{kv::proto::kDefaultMaxFrameBytes, 64 * 1024};
  std::string in;  // Redis
  std::deque<Pending> fifo;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> free_slots;
};

// A completed second handed from a worker to the calling thread.
struct SecondSlot {
  std::unique_ptr<Histogram> hist;
  std::uint64_t ops = 0;
  std::uint64_t errors = 0;
};

struct Outcome {
  int error = -1;  // an ErrorKind or status code >= 2, or -1
  bool miss = false;
  bool txn_succeeded = true;
};

// send / recv on a connection, through TLS when it has a session, with the socket calls'
// conventions: -1 with errno EAGAIN when it would block (either direction: epoll then
// waits for input or room), -1 with another errno on failure, 0 for an orderly close.
ssize_t conn_send(Conn& c, const char* data, std::size_t n) {
  if (c.ssl == nullptr) return ::send(c.fd, data, n, MSG_NOSIGNAL);
  ERR_clear_error();
  const int r = SSL_write(c.ssl, data, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
  if (r > 0) return r;
  const int err = SSL_get_error(c.ssl, r);
  errno = err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
  return -1;
}

ssize_t conn_recv(Conn& c, char* data, std::size_t n) {
  if (c.ssl == nullptr) return ::recv(c.fd, data, n, 0);
  ERR_clear_error();
  const int r = SSL_read(c.ssl, data, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
  if (r > 0) return r;
  const int err = SSL_get_error(c.ssl, r);
  if (err == SSL_ERROR_ZERO_RETURN) return 0;
  errno = err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
  return -1;
}

class Worker {
 public:
  Worker(Shared& shared, std::uint32_t index, std::vector<Link> fds, std::uint32_t first_conn_index)
      : sh_(shared),
        cfg_(shared.cfg),
        rng_(shared.cfg.seed * 0x9E3779B97F4A7C15ull + index + 1),
        chooser_(shared.cfg.mix.distribution, std::max<std::uint64_t>(shared.cfg.records, 1)),
        seconds_(shared.seconds) {
    value_.resize(cfg_.value_size);
    for (auto& c : value_) c = static_cast<char>('a' + rng_.below(26));
    conns_.resize(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) {
      Conn& c = conns_[i];
      c.fd = fds[i].fd;
      c.ssl = fds[i].ssl;
      c.slots.resize(cfg_.pipeline);
      for (std::uint32_t s = cfg_.pipeline; s > 0; --s) c.free_slots.push_back(s - 1);
      // Stagger the connections' schedules evenly over one interval.
      const auto global = first_conn_index + i;
      c.next_intended = sh_.start_ns + (sh_.interval_ns * global) / cfg_.connections;
    }
    cur_hist_ = std::make_unique<Histogram>();
  }

  void run();

  // Per-second hand-off. The worker fills seconds_[s] completely and then stores
  // published_ = s + 1 with release ordering; the calling thread loads published_ with
  // acquire ordering (pairs with that store) and only then reads, and takes ownership of,
  // seconds_[0 .. published_). The worker never touches a published slot again.
  [[nodiscard]] std::uint32_t published() const noexcept {
    return published_.load(std::memory_order_acquire);  // pairs with the release in publish
  }
  SecondSlot& second(std::uint32_t s) { return seconds_[s]; }

  // Totals, read by the calling thread after join() (join orders them).
  LoadResult totals;

 private:
  void issue(Conn& c, std::uint64_t now);
  void start_op(Conn& c, std::uint32_t idx, OpKind kind, std::uint64_t intended, std::uint64_t now);
  void send_step(Conn& c, std::uint32_t idx);
  void flush(Conn& c);
  void on_readable(Conn& c);
  void read_kovan(Conn& c);
  void read_redis(Conn& c);
  void on_response(Conn& c, const Outcome& o, std::uint64_t now);
  void finish(Conn& c, std::uint32_t idx, const Outcome& o, std::uint64_t now);
  void fail(Conn& c, int kind);
  void set_write_interest(Conn& c, bool on);
  void advance_seconds(std::uint32_t upto);
  [[nodiscard]] std::uint64_t choose_key() {
    return chooser_.next(rng_, sh_.record_count.load(std::memory_order_relaxed));
  }
  [[nodiscard]] bool kovan() const { return cfg_.target.protocol == Target::Protocol::kKovan; }

  Shared& sh_;
  const LoadConfig& cfg_;
  Rng rng_;
  KeyChooser chooser_;
  std::string value_;
  std::string key_buf_;
  std::vector<Conn> conns_;
  int epfd_ = -1;
  bool load_exhausted_ = false;
  pb::Request req_;
  pb::Response resp_;

  std::vector<SecondSlot> seconds_;
  std::atomic<std::uint32_t> published_{0};
  std::uint32_t cur_second_ = 0;
  std::unique_ptr<Histogram> cur_hist_;
  std::uint64_t cur_ops_ = 0;
  std::uint64_t cur_errors_ = 0;
};

void Worker::advance_seconds(std::uint32_t upto) {
  upto = std::min(upto, sh_.seconds);
  while (cur_second_ < upto) {
    SecondSlot& s = seconds_[cur_second_];
    s.hist = std::move(cur_hist_);
    s.ops = cur_ops_;
    s.errors = cur_errors_;
    cur_hist_ = std::make_unique<Histogram>();
    cur_ops_ = 0;
    cur_errors_ = 0;
    ++cur_second_;
    published_.store(cur_second_, std::memory_order_release);  // pairs with published()
  }
}

void Worker::set_write_interest(Conn& c, bool on) {
  if (c.want_write == on || c.dead) return;
  c.want_write = on;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.u32 = static_cast<std::uint32_t>(&c - conns_.data());
  (void)epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Worker::fail(Conn& c, int kind) {
  if (c.dead) return;
  c.dead = true;
  (void)epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
  if (c.ssl != nullptr) SSL_free(c.ssl);
  c.ssl = nullptr;
  ::close(c.fd);
  c.fd = -1;
  const std::uint64_t now = now_ns();
  Outcome o;
  o.error = kind;
  while (!c.fifo.empty()) {
    const std::uint32_t idx = c.fifo.front().slot;
    c.fifo.pop_front();
    finish(c, idx, o, now);
  }
  c.out.clear();
  c.out_off = 0;
}

void Worker::flush(Conn& c) {
  while (!c.dead && c.out_off < c.out.size()) {
    const ssize_t n = conn_send(c, c.out.data() + c.out_off, c.out.size() - c.out_off);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_write_interest(c, true);
      return;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      fail(c, kErrTransport);
      return;
    }
  }
  if (c.dead) return;
  c.out.clear();
  c.out_off = 0;
  set_write_interest(c, false);
}

void Worker::send_step(Conn& c, std::uint32_t idx) {
  Slot& s = c.slots[idx];
  Pending p{idx, 0};
  if (!kovan()) {
    record_key(s.key, key_buf_);
    const bool write = s.kind == OpKind::kUpdate || s.kind == OpKind::kInsert ||
                       (s.kind == OpKind::kRmw && s.step == 1);
    if (write) {
      resp::append_set(c.out, key_buf_, value_);
    } else {
      resp::append_get(c.out, key_buf_);
    }
    c.fifo.push_back(p);
    return;
  }
  req_.Clear();
  p.id = c.next_id++;
  req_.set_id(p.id);
  switch (s.kind) {
    case OpKind::kRead:
      record_key(s.key, *req_.mutable_get()->mutable_key());
      break;
    case OpKind::kUpdate:
    case OpKind::kInsert: {
      auto* put = req_.mutable_put();
      record_key(s.key, *put->mutable_key());
      put->set_value(value_);
      break;
    }
    case OpKind::kScan: {
      auto* scan = req_.mutable_scan();
      record_key(s.key, *scan->mutable_start());
      scan->set_limit(1 + rng_.below(std::max<std::uint32_t>(cfg_.mix.max_scan_length, 1)));
      break;
    }
    case OpKind::kRmw:
      if (s.step == 0) {
        record_key(s.key, *req_.mutable_get()->mutable_key());
      } else {
        auto* put = req_.mutable_put();
        record_key(s.key, *put->mutable_key());
        put->set_value(value_);
      }
      break;
    case OpKind::kTxn: {
      auto* txn = req_.mutable_txn();
      for (std::size_t i = 0; i < s.keys.size(); ++i) {
        if (s.step == 0) {
          record_key(s.keys[i], *txn->add_success()->mutable_get()->mutable_key());
        } else {
          auto* cmp = txn->add_compare();
          record_key(s.keys[i], *cmp->mutable_key());
          cmp->set_op(pb::Compare::EQUAL);
          cmp->set_mod_revision(s.revs[i]);
          auto* put = txn->add_success()->mutable_put();
          record_key(s.keys[i], *put->mutable_key());
          put->set_value(value_);
        }
      }
      break;
    }
  }
  kv::proto::append_message(c.out, req_);
  c.fifo.push_back(p);
}

void Worker::start_op(Conn& c, std::uint32_t idx, OpKind kind, std::uint64_t intended,
                      std::uint64_t now) {
  Slot& s = c.slots[idx];
  s.kind = kind;
  s.step = 0;
  s.intended_ns = intended;
  s.sent_ns = now;
  switch (kind) {
    case OpKind::kInsert:
      s.key = sh_.next_insert.fetch_add(1, std::memory_order_relaxed);
      break;
    case OpKind::kTxn:
      s.keys.resize(cfg_.txn_keys);
      for (auto& k : s.keys) k = choose_key();
      s.revs.assign(cfg_.txn_keys, 0);
      break;
    default:
      s.key = choose_key();
      break;
  }
  send_step(c, idx);
}

void Worker::issue(Conn& c, std::uint64_t now) {
  while (!c.dead && !c.free_slots.empty() && !load_exhausted_) {
    std::uint64_t intended = now;
    if (cfg_.load_mode) {
      const std::uint64_t k = sh_.next_insert.fetch_add(1, std::memory_order_relaxed);
      if (k >= cfg_.records) {
        load_exhausted_ = true;
        break;
      }
      const std::uint32_t idx = c.free_slots.back();
      c.free_slots.pop_back();
      Slot& s = c.slots[idx];
      s.kind = OpKind::kInsert;
      s.step = 0;
      s.intended_ns = now;
      s.sent_ns = now;
      s.key = k;
      send_step(c, idx);
      continue;
    }
    if (cfg_.rate > 0) {
      if (c.next_intended > now) break;
      intended = c.next_intended;
      c.next_intended += sh_.interval_ns;
    }
    const std::uint32_t idx = c.free_slots.back();
    c.free_slots.pop_back();
    start_op(c, idx, choose_op(cfg_.mix, rng_), intended, now);
  }
}

void Worker::finish(Conn& c, std::uint32_t idx, const Outcome& o, std::uint64_t now) {
  Slot& s = c.slots[idx];
  c.free_slots.push_back(idx);
  if (cfg_.load_mode) {
    if (o.error >= 0)
      ++totals.errors[static_cast<std::size_t>(o.error)];
    else
      ++totals.ops;
    return;
  }
  if (s.intended_ns < sh_.measure_ns || s.intended_ns >= sh_.end_ns) return;
  const std::uint64_t lat = now > s.intended_ns ? now - s.intended_ns : 0;
  const std::uint64_t lat_send = now > s.sent_ns ? now - s.sent_ns : 0;
  ++totals.ops;
  ++totals.ops_by_kind[static_cast<std::size_t>(s.kind)];
  totals.from_intended.record(lat);
  totals.from_send.record(lat_send);
  const auto sec = static_cast<std::uint32_t>(
      std::min<std::uint64_t>((now - sh_.measure_ns) / kSecond, sh_.seconds - 1));
  advance_seconds(sec);
  cur_hist_->record(lat);
  ++cur_ops_;
  if (o.error >= 0) {
    ++totals.errors[static_cast<std::size_t>(o.error)];
    ++cur_errors_;
  } else {
    if (o.miss) ++totals.misses;
    if (!o.txn_succeeded) ++totals.txn_aborts;
  }
}

void Worker::on_response(Conn& c, const Outcome& o, std::uint64_t now) {
  const std::uint32_t idx = c.fifo.front().slot;
  c.fifo.pop_front();
  Slot& s = c.slots[idx];
  if (o.error < 0) {
    if (s.kind == OpKind::kInsert)
      sh_.record_count.fetch_add(1, std::memory_order_relaxed);  // counter only
    if ((s.kind == OpKind::kRmw || s.kind == OpKind::kTxn) && s.step == 0) {
      s.step = 1;
      send_step(c, idx);
      return;
    }
  }
  finish(c, idx, o, now);
}

void Worker::read_kovan(Conn& c) {
  for (;;) {
    std::span<char> space = c.frames.prepare();
    const ssize_t n = conn_recv(c, space.data(), space.size());
    if (n == 0) {
      fail(c, kErrTransport);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(c, kErrTransport);
      return;
    }
    c.frames.commit(static_cast<std::size_t>(n));
    const std::uint64_t now = now_ns();
    for (;;) {
      const auto f = c.frames.next();
      if (f.status == FrameStatus::kNeedMore) break;
      if (f.status == FrameStatus::kOversized ||
          !resp_.ParseFromArray(f.payload.data(), static_cast<int>(f.payload.size()))) {
        fail(c, kErrProtocol);
        return;
      }
      const auto code = static_cast<int>(resp_.status().code());
      if (resp_.id() == 0 && code != 0) {  // a connection notice (PROTOCOL.md section 5)
        ++totals.errors[kErrNotice];
        continue;
      }
      if (c.fifo.empty() || c.fifo.front().id != resp_.id()) {
        fail(c, kErrProtocol);
        return;
      }
      Outcome o;
      if (code == pb::Status::NOT_FOUND) {
        o.miss = true;
      } else if (code != pb::Status::OK) {
        o.error = code <= pb::Status::INTERNAL            ? code
                  : code == pb::Status::UNAUTHENTICATED   ? kErrUnauthenticated
                  : code == pb::Status::PERMISSION_DENIED ? kErrPermissionDenied
                                                          : kErrUnknownCode;
      } else {
        Slot& s = c.slots[c.fifo.front().slot];
        if (s.kind == OpKind::kTxn) {
          const auto& txn = resp_.txn();
          if (s.step == 0) {
            for (int i = 0; i < txn.results_size() && i < static_cast<int>(s.revs.size()); ++i)
              s.revs[static_cast<std::size_t>(i)] = txn.results(i).get().kv().mod_revision();
          } else {
            o.txn_succeeded = txn.succeeded();
          }
        }
      }
      on_response(c, o, now);
      if (c.dead) return;
    }
    // A short read drained the socket (over TLS, read on until SSL_read would block: it
    // may hold decrypted bytes that epoll cannot see).
    if (c.ssl == nullptr && static_cast<std::size_t>(n) < space.size()) return;
  }
}

void Worker::read_redis(Conn& c) {
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = conn_recv(c, buf, sizeof buf);
    if (n == 0) {
      fail(c, kErrTransport);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(c, kErrTransport);
      return;
    }
    c.in.append(buf, static_cast<std::size_t>(n));
    const std::uint64_t now = now_ns();
    std::size_t off = 0;
    for (;;) {
      const resp::Reply r = resp::parse_reply(std::string_view(c.in).substr(off));
      if (r.status == resp::ParseStatus::kNeedMore) break;
      if (r.status == resp::ParseStatus::kBad || c.fifo.empty()) {
        fail(c, kErrProtocol);
        return;
      }
      off += r.consumed;
      Outcome o;
      if (r.type == resp::ReplyType::kError) o.error = kErrRedis;
      if (r.type == resp::ReplyType::kNull) o.miss = true;
      on_response(c, o, now);
      if (c.dead) return;
    }
    c.in.erase(0, off);
    if (c.ssl == nullptr && static_cast<std::size_t>(n) < sizeof buf) return;
  }
}

void Worker::on_readable(Conn& c) {
  if (kovan()) {
    read_kovan(c);
  } else {
    read_redis(c);
  }
}

void Worker::run() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    (void)epoll_ctl(epfd_, EPOLL_CTL_ADD, conns_[i].fd, &ev);
  }
  bool stopping = false;
  std::uint64_t drain_deadline = 0;
  epoll_event events[64];
  for (;;) {
    std::uint64_t now = now_ns();
    if (!stopping && (now >= sh_.end_ns || load_exhausted_)) {
      stopping = true;
      drain_deadline = now + kDrainNs;
      if (cfg_.rate > 0 && !cfg_.load_mode) {
        for (const Conn& c : conns_) {
          const std::uint64_t from = std::max(c.next_intended, sh_.measure_ns);
          if (from < sh_.end_ns)
            totals.unsent_scheduled += (sh_.end_ns - from + sh_.interval_ns - 1) / sh_.interval_ns;
        }
      }
    }
    bool in_flight = false;
    for (const Conn& c : conns_) in_flight = in_flight || (!c.dead && !c.fifo.empty());
    if (stopping && (!in_flight || now >= drain_deadline)) break;
    if (!in_flight &&
        std::all_of(conns_.begin(), conns_.end(), [](const Conn& c) { return c.dead; }))
      break;
    if (!stopping) {
      for (Conn& c : conns_) issue(c, now);
      // Issuing found the load finished (possibly with nothing left in flight, so no
      // event would wake us): re-evaluate the stop condition before sleeping.
      if (load_exhausted_) continue;
    }
    for (Conn& c : conns_) {
      if (!c.want_write) flush(c);
    }
    // Sleep until a response arrives, the next scheduled send, the next second boundary
    // (so the series and the progress line stay current) or the end.
    std::uint64_t wake = stopping ? drain_deadline : sh_.end_ns;
    if (!stopping && cfg_.rate > 0) {
      for (const Conn& c : conns_) {
        if (!c.dead && !c.free_slots.empty()) wake = std::min(wake, c.next_intended);
      }
    }
    if (!cfg_.load_mode && now >= sh_.measure_ns) {
      const std::uint64_t next_sec =
          sh_.measure_ns + ((now - sh_.measure_ns) / kSecond + 1) * kSecond;
      wake = std::min(wake, next_sec);
      advance_seconds(static_cast<std::uint32_t>((now - sh_.measure_ns) / kSecond));
    }
    now = now_ns();
    const std::uint64_t wait = wake > now ? wake - now : 0;
    timespec ts{static_cast<time_t>(wait / kSecond), static_cast<long>(wait % kSecond)};
    const int n = epoll_pwait2(epfd_, events, 64, &ts, nullptr);
    for (int i = 0; i < n; ++i) {
      Conn& c = conns_[events[i].data.u32];
      if (c.dead) continue;
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
      if (!c.dead && (events[i].events & EPOLLOUT)) flush(c);
    }
  }
  for (Conn& c : conns_) {
    if (!c.dead) {
      // Operations still unanswered after the drain count as transport errors if measured.
      fail(c, kErrTransport);
    }
  }
  if (!cfg_.load_mode) advance_seconds(sh_.seconds);
  ::close(epfd_);
}

// The client context for a TLS target: TLS 1.2+, the server verified against the target's
// CA (or the system store) and its name (the target host); null with `error` on failure.
SSL_CTX* make_client_tls(const Target& t, std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    error = "cannot create a TLS context";
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  const bool ca_ok = t.tls_ca.empty()
                         ? SSL_CTX_set_default_verify_paths(ctx) == 1
                         : SSL_CTX_load_verify_locations(ctx, t.tls_ca.c_str(), nullptr) == 1;
  if (!ca_ok) error = "cannot load the TLS CA file '" + t.tls_ca + "'";
  if (error.empty() && !t.tls_cert.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx, t.tls_cert.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, t.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)) {
    error = "cannot load the TLS client certificate '" + t.tls_cert + "' / key '" + t.tls_key + "'";
  }
  if (!error.empty()) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// Handshakes on the connected non-blocking `fd` (3 s); the session, or null with `error`.
SSL* handshake(SSL_CTX* ctx, const Target& t, int fd, std::string& error) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    error = "cannot start TLS";
    if (ssl != nullptr) SSL_free(ssl);
    return nullptr;
  }
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t.host.c_str());  // 127.0.0.1
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    ERR_clear_error();
    const int rc = SSL_connect(ssl);
    if (rc == 1) return ssl;
    const int err = SSL_get_error(ssl, rc);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) && left.count() > 0) {
      pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
      (void)::poll(&p, 1, static_cast<int>(left.count()));
      continue;
    }
    const long verify = SSL_get_verify_result(ssl);
    char buf[256] = "handshake failed or timed out";
    if (const unsigned long e = ERR_peek_last_error(); e != 0)
      ERR_error_string_n(e, buf, sizeof buf);
    error = "TLS handshake with " + t.to_string() + ": " +
            (verify != X509_V_OK ? std::string("certificate verify failed: ") +
                                       X509_verify_cert_error_string(verify)
                                 : std::string(buf));
    SSL_free(ssl);
    return nullptr;
  }
}

// Sends AUTHENTICATE on a fresh (non-blocking) connection and waits for its answer, before
// any load: false with `error` set when it is refused or the server does not answer.
bool authenticate(int fd, const Target& t, std::string& error) {
  pb::Request req;
  req.set_id(1);
  req.mutable_authenticate()->set_user(t.user);
  req.mutable_authenticate()->set_password(t.password);
  std::string out;
  kv::proto::append_message(out, req);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto wait = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, events, 0};
    return left.count() > 0 && ::poll(&p, 1, static_cast<int>(left.count())) == 1;
  };
  std::size_t sent = 0;
  while (sent < out.size()) {
    if (!wait(POLLOUT)) break;
    const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0)
      sent += static_cast<std::size_t>(n);
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
      break;
  }
  std::string in;
  while (sent == out.size()) {
    if (in.size() >= kv::proto::kFrameHeaderBytes) {
      const std::size_t len = kv::proto::get_frame_header(in.data());
      if (in.size() >= kv::proto::kFrameHeaderBytes + len) {
        pb::Response resp;
        if (!resp.ParseFromArray(in.data() + kv::proto::kFrameHeaderBytes, static_cast<int>(len))) {
          break;
        }
        if (resp.status().code() == 0) return true;
        error = "authenticate as " + t.user + ": " +
                std::string(kv::proto::code_name(resp.status().code())) + ": " +
                resp.status().message();
        return false;
      }
    }
    if (!wait(POLLIN)) break;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0)
      in.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
      break;
  }
  error = "authenticate as " + t.user + ": no answer from " + t.to_string();
  return false;
}

int connect_loopback(const Target& t, std::string& error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(t.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc < 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    rc = ::poll(&p, 1, 3000);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0) {
      rc = 0;
    } else {
      errno = rc == 0 ? ETIMEDOUT : (soerr != 0 ? soerr : errno);
      rc = -1;
    }
  }
  if (rc < 0) {
    error = "connect to " + t.to_string() + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!t.user.empty() && !authenticate(fd, t, error)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string_view error_name(int kind) {
  static constexpr std::string_view kNames[kErrorKinds] = {"OK",
                                                           "NOT_FOUND",
                                                           "CONFLICT",
                                                           "TXN_EXPIRED",
                                                           "TXN_NOT_FOUND",
                                                           "INVALID_ARGUMENT",
                                                           "RESOURCE_EXHAUSTED",
                                                           "UNAVAILABLE",
                                                           "INTERNAL",
                                                           "UNKNOWN_CODE",
                                                           "REDIS_ERROR",
                                                           "TRANSPORT",
                                                           "PROTOCOL",
                                                           "NOTICE",
                                                           "UNAUTHENTICATED",
                                                           "PERMISSION_DENIED"};
  return kind >= 0 && kind < kErrorKinds ? kNames[kind] : "?";
}

std::uint64_t LoadResult::errors_total() const {
  std::uint64_t sum = 0;
  for (auto e : errors) sum += e;
  return sum;
}

LoadResult run_load(const LoadConfig& cfg,
                    const std::function<void(const SecondStats&)>& on_second) {
  LoadResult result;
  // Connect everything first, so that the clock starts with every connection open.
  SSL_CTX* tls = nullptr;
  if (cfg.target.tls) {
    tls = make_client_tls(cfg.target, result.error);
    if (tls == nullptr) {
      result.errors[kErrTransport] = 1;
      return result;
    }
  }
  std::vector<Link> fds;
  for (std::uint32_t i = 0; i < cfg.connections; ++i) {
    Link link;
    link.fd = connect_loopback(cfg.target, result.error);
    if (link.fd >= 0 && tls != nullptr) {
      link.ssl = handshake(tls, cfg.target, link.fd, result.error);
      if (link.ssl == nullptr) {
        ::close(link.fd);
        link.fd = -1;
      }
    }
    if (link.fd < 0) {
      for (const Link& l : fds) {
        if (l.ssl != nullptr) SSL_free(l.ssl);
        ::close(l.fd);
      }
      if (tls != nullptr) SSL_CTX_free(tls);
      result.errors[kErrTransport] = 1;
      return result;
    }
    fds.push_back(link);
  }
  // Each SSL holds a reference to the context: it lives until the last session is freed.
  if (tls != nullptr) SSL_CTX_free(tls);
  result.connected = true;

  Shared sh{cfg, {}, {}};
  sh.next_insert.store(cfg.load_mode ? 0 : cfg.records, std::memory_order_relaxed);
  sh.record_count.store(cfg.records, std::memory_order_relaxed);
  sh.start_ns = now_ns();
  const auto warmup = cfg.load_mode ? 0 : static_cast<std::uint64_t>(cfg.warmup_s * 1e9);
  const auto duration = static_cast<std::uint64_t>(cfg.duration_s * 1e9);
  sh.measure_ns = sh.start_ns + warmup;
  sh.end_ns = sh.measure_ns + duration;
  sh.seconds = cfg.load_mode ? 0 : static_cast<std::uint32_t>(std::ceil(cfg.duration_s));
  if (sh.seconds == 0 && !cfg.load_mode) sh.seconds = 1;
  sh.interval_ns =
      cfg.rate > 0
          ? std::max<std::uint64_t>(1, static_cast<std::uint64_t>(1e9 * cfg.connections / cfg.rate))
          : 1;

  // Thread t gets a contiguous share of the connections.
  std::vector<std::unique_ptr<Worker>> workers;
  std::uint32_t given = 0;
  for (std::uint32_t t = 0; t < cfg.threads; ++t) {
    const std::uint32_t share =
        cfg.connections / cfg.threads + (t < cfg.connections % cfg.threads ? 1 : 0);
    std::vector<Link> mine(fds.begin() + given, fds.begin() + given + share);
    workers.push_back(std::make_unique<Worker>(sh, t, std::move(mine), given));
    given += share;
  }
  std::vector<std::thread> threads;
  std::atomic<std::uint32_t> running{cfg.threads};
  for (auto& w : workers) {
    threads.emplace_back([&w, &running] {
      w->run();
      running.fetch_sub(1, std::memory_order_release);  // pairs with the acquire below
    });
  }

  // Merge each second as soon as every worker has published it.
  std::uint32_t merged = 0;
  auto merge_ready = [&] {
    std::uint32_t ready = sh.seconds;
    for (auto& w : workers) ready = std::min(ready, w->published());
    for (; merged < ready; ++merged) {
      Histogram h;
      SecondStats st;
      st.second = merged + 1;
      for (auto& w : workers) {
        SecondSlot& s = w->second(merged);
        if (s.hist) h.merge(*s.hist);
        s.hist.reset();
        st.ops += s.ops;
        st.errors += s.errors;
      }
      st.p50_ns = h.percentile(0.50);
      st.p99_ns = h.percentile(0.99);
      st.max_ns = h.max();
      result.series.push_back(st);
      if (on_second) on_second(st);
    }
  };
  while (running.load(std::memory_order_acquire) > 0) {
    merge_ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (auto& t : threads) t.join();
  merge_ready();

  for (auto& w : workers) {
    const LoadResult& t = w->totals;
    result.ops += t.ops;
    result.misses += t.misses;
    result.txn_aborts += t.txn_aborts;
    result.unsent_scheduled += t.unsent_scheduled;
    for (int k = 0; k < kOpKinds; ++k) result.ops_by_kind[k] += t.ops_by_kind[k];
    for (int e = 0; e < kErrorKinds; ++e) result.errors[e] += t.errors[e];
    result.from_intended.merge(t.from_intended);
    result.from_send.merge(t.from_send);
  }
  result.measured_s = cfg.duration_s;
  return result;
}

}  // namespace kv::bench
