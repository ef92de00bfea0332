#include "connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "proto/codec.hpp"
#include "proto/frame.hpp"

namespace kv::client::detail {

namespace {

thread_local bool t_on_io_thread = false;

std::string errno_text(int err) { return std::strerror(err); }

Status unavailable(std::string message, bool unknown = false) {
  return Status(Code::kUnavailable, std::move(message), unknown);
}

// Non-blocking connect bounded by `timeout`, then back to blocking mode.
int connect_one(const addrinfo* ai, std::chrono::milliseconds timeout, std::string& error) {
  const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    error = "socket: " + errno_text(errno);
    return -1;
  }
  const int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    const int ms = timeout.count() > 0 ? static_cast<int>(timeout.count()) : -1;
    do {
      rc = ::poll(&p, 1, ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
      error = "connect timed out";
      ::close(fd);
      return -1;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (rc < 0 || soerr != 0) {
      error = "connect: " + errno_text(rc < 0 ? errno : soerr);
      ::close(fd);
      return -1;
    }
  } else if (rc != 0) {
    error = "connect: " + errno_text(errno);
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, flags);
  return fd;
}

// The reason of the last OpenSSL error on this thread (and clears the queue).
std::string openssl_reason() {
  std::string text;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    text = buf;
  }
  return text.empty() ? std::string("unknown error") : text;
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Waits until `fd` is ready for `events` or `deadline` passes; false on timeout / error.
bool wait_ready(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

}  // namespace

// One TLS session over a connected socket: its OpenSSL context and SSL object.
struct TlsSession {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  TlsSession() = default;
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  ~TlsSession() {
    if (ssl != nullptr) SSL_free(ssl);
    if (ctx != nullptr) SSL_CTX_free(ctx);
  }

  // Configures the context from `options`, then handshakes on `fd` (made non-blocking)
  // within `timeout`. The empty string on success, else why it failed.
  std::string handshake(int fd, const std::string& host, const ClientOptions& options) {
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) return "cannot create a TLS context: " + openssl_reason();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // The server closes without close_notify (the framing shows whether a response is
    // whole), so an EOF is a normal close, not a truncation attack.
    SSL_CTX_set_options(
        ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (options.tls_ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return "cannot load the system trust store: " + openssl_reason();
      }
    } else if (SSL_CTX_load_verify_locations(ctx, options.tls_ca_file.c_str(), nullptr) != 1) {
      return "cannot load the TLS CA file " + options.tls_ca_file + ": " + openssl_reason();
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
      if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
        return "a TLS client certificate needs both a certificate and a key file";
      }
      if (SSL_CTX_use_certificate_chain_file(ctx, options.tls_cert_file.c_str()) != 1) {
        return "cannot load the TLS certificate " + options.tls_cert_file + ": " + openssl_reason();
      }
      if (SSL_CTX_use_PrivateKey_file(ctx, options.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(ctx) != 1) {
        return "cannot load the TLS key " + options.tls_key_file + ": " + openssl_reason();
      }
    }
    ssl = SSL_new(ctx);
    if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) return "cannot start TLS: " + openssl_reason();
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const std::string name = options.tls_server_name.empty() ? host : options.tls_server_name;
    const bool ip = is_ip_literal(name);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"  // inside OpenSSL's macro
    if (!ip) SSL_set_tlsext_host_name(ssl, name.c_str());
#pragma GCC diagnostic pop
    if (options.tls_verify_hostname) {
      const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str())
                        : SSL_set1_host(ssl, name.c_str());
      if (ok != 1) return "cannot check the server name '" + name + "': " + openssl_reason();
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    const auto deadline =
        std::chrono::steady_clock::now() +
        (options.connect_timeout.count() > 0 ? options.connect_timeout : std::chrono::hours(24));
    for (;;) {
      const int rc = SSL_connect(ssl);
      if (rc == 1) return {};
      const int err = SSL_get_error(ssl, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (!wait_ready(fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
          return "TLS handshake timed out";
        }
        continue;
      }
      const long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        return std::string("TLS certificate verify failed: ") +
               X509_verify_cert_error_string(verify);
      }
      const std::string why = openssl_reason();
      return "TLS handshake failed: " +
             (why == "unknown error" ? std::string("the server closed the connection") : why);
    }
  }
};

bool on_io_thread() noexcept { return t_on_io_thread; }

bool strip_scheme(std::string_view& address) noexcept {
  constexpr std::string_view kPlain = "kovan://";
  constexpr std::string_view kTls = "kovans://";
  if (address.substr(0, kTls.size()) == kTls) {
    address.remove_prefix(kTls.size());
    return true;
  }
  if (address.substr(0, kPlain.size()) == kPlain) address.remove_prefix(kPlain.size());
  return false;
}

Result<Endpoint> parse_address(std::string_view address) {
  Endpoint ep;
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return Status(Code::kInvalidArgument, "address must be host:port or [v6]:port");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      return Status(Code::kInvalidArgument, "address must be host:port");
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(std::string(port)) > 65535) {
    return Status(Code::kInvalidArgument, "address must be host:port with a port 0-65535");
  }
  ep.host = std::string(host);
  ep.port = std::string(port);
  return ep;
}

struct Connection::Core {
  struct Pending {
    std::uint64_t id;
    bool mutating;
    Completion done;
    std::uint64_t frame_end;  // stream offset just past this request's frame
  };

  Core(int socket_fd, const ClientOptions& opts, std::unique_ptr<TlsSession> tls_session)
      : fd(socket_fd), options(opts), tls(std::move(tls_session)), reader(opts.max_frame_bytes) {}
  ~Core() { ::close(fd); }  // then `tls` is freed (SSL_free does not touch the fd)

  const int fd;
  const ClientOptions options;
  const std::unique_ptr<TlsSession> tls;  // null: plain TCP
  std::mutex tls_mu;                      // serializes every call on tls->ssl
  proto::FrameReader reader;              // I/O thread only

  mutable std::mutex mu;
  std::condition_variable write_done;  // signalled (under mu) when `writing` turns false
  std::deque<Pending> pending;         // guarded by mu
  std::string out;                     // guarded by mu: frames not yet handed to write
  bool writing = false;                // guarded by mu
  bool broken = false;                 // guarded by mu
  std::uint64_t next_id = 1;           // guarded by mu
  std::uint64_t queued_bytes = 0;      // guarded by mu: stream bytes appended to `out` so far
  std::uint64_t sent_bytes = 0;        // guarded by mu: stream bytes the kernel accepted
  Status notice;                       // guarded by mu: the server's id-0 notice, if any
  std::uint64_t notice_front = 0;      // guarded by mu: the oldest request when it came
  std::chrono::steady_clock::time_point last_progress;  // guarded by mu
  // guarded by mu: the sinks of this connection's watches, by watch id
  std::unordered_map<std::uint64_t, std::shared_ptr<WatchSink>> watches;
  bool watches_closed = false;        // guarded by mu: fail_all has taken `watches`
  std::uint64_t unrouted = 0;         // guarded by mu: pushes for no registered watch
  std::atomic<bool> draining{false};  // the server announced a close
  std::atomic<bool> stopping{false};  // the owner is going away

  void submit(pb::Request& request, bool mutating, Completion done) {
    std::unique_lock lock(mu);
    if (broken) {
      lock.unlock();
      done(unavailable(notice.ok() ? "connection lost (request not sent: not applied)"
                                   : "connection closed by the server: " + notice.message() +
                                         " (request not sent: not applied)"),
           nullptr);
      return;
    }
    request.set_id(next_id++);
    const std::size_t size = request.ByteSizeLong();
    if (size > options.max_frame_bytes) {
      // The server would refuse the frame from its header and close the connection (and
      // every transaction on it); refuse it here instead, before anything is sent.
      lock.unlock();
      done(Status(Code::kResourceExhausted,
                  "request of " + std::to_string(size) + " bytes exceeds the frame limit of " +
                      std::to_string(options.max_frame_bytes) +
                      " bytes (ClientOptions::max_frame_bytes); not sent: not applied"),
           nullptr);
      return;
    }
    if (pending.empty()) last_progress = std::chrono::steady_clock::now();
    const std::size_t before = out.size();
    proto::append_message(out, request);
    queued_bytes += out.size() - before;
    pending.push_back(Pending{request.id(), mutating, std::move(done), queued_bytes});
    if (writing) return;  // the thread already writing sends this frame with its batch
    writing = true;
    std::string batch;
    while (!out.empty() && !broken) {
      batch.swap(out);
      lock.unlock();
      const std::size_t written = write_all(batch);
      lock.lock();
      sent_bytes += written;
      if (written != batch.size()) {
        broken = true;
        // Wake the I/O thread, which fails everything pending (this request included).
        ::shutdown(fd, SHUT_RDWR);
      }
      batch.clear();
    }
    out.clear();  // frames never written: their requests fail as not applied
    writing = false;
    write_done.notify_all();
  }

  // Bytes of `bytes` the kernel accepted: all of them, or fewer when a send failed.
  std::size_t write_all(std::string_view bytes) {
    if (tls) return tls_write_all(bytes);
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return done;  // includes EAGAIN: SO_SNDTIMEO (request_timeout) elapsed
      }
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  // write_all over TLS: the socket is non-blocking; waits for room outside tls_mu, bounded
  // by request_timeout as SO_SNDTIMEO bounds a plain send.
  std::size_t tls_write_all(std::string_view bytes) {
    std::size_t done = 0;
    auto deadline = std::chrono::steady_clock::time_point::max();
    if (options.request_timeout.count() > 0) {
      deadline = std::chrono::steady_clock::now() + options.request_timeout;
    }
    while (done < bytes.size()) {
      int n = 0;
      int err = SSL_ERROR_NONE;
      {
        std::lock_guard lock(tls_mu);
        ERR_clear_error();
        const std::size_t chunk = std::min<std::size_t>(bytes.size() - done, 1 << 30);
        n = SSL_write(tls->ssl, bytes.data() + done, static_cast<int>(chunk));
        if (n <= 0) err = SSL_get_error(tls->ssl, n);
      }
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        if (options.request_timeout.count() > 0) {
          deadline = std::chrono::steady_clock::now() + options.request_timeout;
        }
        continue;
      }
      if (err == SSL_ERROR_WANT_WRITE) {
        if (!wait_ready(fd, POLLOUT, deadline)) return done;
      } else if (err == SSL_ERROR_WANT_READ) {
        // The session needs input first (the I/O thread reads it): wait briefly, retry.
        if (std::chrono::steady_clock::now() >= deadline) return done;
        wait_ready(fd, POLLIN, std::chrono::steady_clock::now() + std::chrono::milliseconds(5));
      } else {
        return done;
      }
    }
    return done;
  }

  // One read from the connection into `space`: >0 bytes, 0 for an orderly close, -1 for
  // "nothing yet" (poll again), -2 for an error (`reason` says which).
  ssize_t read_some(std::span<char> space, std::string& reason) {
    if (!tls) {
      const ssize_t n = ::recv(fd, space.data(), space.size(), 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) return -1;
      if (n < 0) {
        reason = "connection lost: " + errno_text(errno);
        return -2;
      }
      return n;
    }
    std::lock_guard lock(tls_mu);
    ERR_clear_error();
    const int n = SSL_read(tls->ssl, space.data(),
                           static_cast<int>(std::min<std::size_t>(space.size(), 1 << 30)));
    if (n > 0) return n;
    const int err = SSL_get_error(tls->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return -1;
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_SYSCALL && errno != 0 && errno != EAGAIN) {
      reason = "connection lost: " + errno_text(errno);
      return -2;
    }
    const std::string why = openssl_reason();
    if (why == "unknown error") return 0;  // EOF
    reason = "TLS error: " + why;
    return -2;
  }

  // True when TLS holds decrypted bytes not read yet (poll would not see them).
  bool tls_buffered() {
    if (!tls) return false;
    std::lock_guard lock(tls_mu);
    return SSL_pending(tls->ssl) > 0;
  }

  // Completes every pending request with a failure and refuses new ones. What each
  // failure says about the request:
  //   - after a notice, the server executes nothing that it has not answered before the
  //     notice (PROTOCOL.md 5): not applied. The oldest request when the notice came is
  //     the one the notice is about (a frame over the limit) and takes its code;
  //   - a frame not completely written cannot have been executed: not applied;
  //   - a write sent completely whose answer never came: outcome unknown.
  void fail_all(const std::string& reason) {
    std::deque<Pending> lost;
    std::unordered_map<std::uint64_t, std::shared_ptr<WatchSink>> lost_watches;
    std::uint64_t sent = 0;
    Status why;
    std::uint64_t blamed = 0;
    {
      std::unique_lock lock(mu);
      broken = true;
      // A writer blocked in send() returns once the socket is shut down; wait for it, so
      // that sent_bytes counts every byte the kernel accepted.
      ::shutdown(fd, SHUT_RDWR);
      write_done.wait(lock, [this] { return !writing; });
      lost.swap(pending);
      sent = sent_bytes;
      why = notice;
      blamed = notice_front;
      lost_watches.swap(watches);
      watches_closed = true;
    }
    for (auto& p : lost) {
      Status s;
      if (!why.ok()) {
        s = Status(p.id == blamed ? why.code() : Code::kUnavailable,
                   "connection closed by the server: " + why.message() +
                       " (request not executed: not applied)");
      } else if (p.frame_end > sent) {
        s = unavailable(reason + " (request not sent completely: not applied)");
      } else {
        s = unavailable(
            reason + (p.mutating ? " (the write may or may not have been applied)" : ""),
            p.mutating);
      }
      p.done(std::move(s), nullptr);
    }
    const Status watch_loss =
        unavailable(why.ok() ? reason : "connection closed by the server: " + why.message());
    for (auto& [id, sink] : lost_watches) sink->on_lost(watch_loss);
  }

  // Handles one response frame; false when the stream broke the protocol.
  bool deliver(std::string_view payload, std::string& error) {
    pb::Response response;
    if (!response.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      error = "protocol error: unparsable response frame";
      return false;
    }
    if (response.id() == 0 && response.result_case() == pb::Response::kWatchEvents) {
      // A watch push: no request owns it (see the invariants in connection.hpp).
      std::shared_ptr<WatchSink> sink;
      {
        std::lock_guard lock(mu);
        last_progress = std::chrono::steady_clock::now();
        const auto it = watches.find(response.watch_events().watch_id());
        if (it == watches.end()) {
          ++unrouted;
          return true;
        }
        sink = it->second;
        if (response.watch_events().canceled()) watches.erase(it);
      }
      sink->on_push(response.watch_events());
      return true;
    }
    Completion done;
    {
      std::lock_guard lock(mu);
      last_progress = std::chrono::steady_clock::now();
      // An id-0 INVALID_ARGUMENT answers an unparsable frame in its place in the order
      // (PROTOCOL.md 5; this client never sends one, but the pairing stays right); any
      // other id-0 response is a connection notice, which no request owns.
      const bool unparsable_answer =
          response.id() == 0 && response.status().code() == pb::Status::INVALID_ARGUMENT;
      if (response.id() == 0 && !unparsable_answer) {
        notice = Status(static_cast<Code>(std::min<int>(response.status().code(), 8)),
                        response.status().message());
        // Every request answered before the notice has been delivered: the oldest one
        // still waiting is the one a frame-size notice is about.
        notice_front = pending.empty() ? 0 : pending.front().id;
        draining.store(true, std::memory_order_relaxed);
        return true;
      }
      if (pending.empty() || (!unparsable_answer && pending.front().id != response.id())) {
        error = "protocol error: response id " + std::to_string(response.id()) +
                " does not match the oldest request";
        return false;
      }
      done = std::move(pending.front().done);
      pending.pop_front();
    }
    done(Status(), &response);
    return true;
  }

  // The I/O thread's loop: read, split frames, complete requests; on any failure, fail
  // what is pending and exit.
  void run() {
    t_on_io_thread = true;
    const auto timeout = options.request_timeout;
    std::string reason = "connection closed by the server";
    for (;;) {
      int wait_ms = 200;
      if (timeout.count() > 0) {
        std::lock_guard lock(mu);
        if (!pending.empty()) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
              last_progress + timeout - std::chrono::steady_clock::now());
          if (left.count() <= 0) {
            reason = "no response within the request timeout (" + std::to_string(timeout.count()) +
                     " ms)";
            break;
          }
          wait_ms = static_cast<int>(std::min<std::int64_t>(left.count() + 1, wait_ms));
        }
      }
      if (stopping.load(std::memory_order_relaxed)) {
        reason = "client closed";
        break;
      }
      if (!tls_buffered()) {
        pollfd p{fd, POLLIN, 0};
        const int rc = ::poll(&p, 1, wait_ms);
        if (rc < 0 && errno != EINTR) {
          reason = "poll: " + errno_text(errno);
          break;
        }
        if (rc <= 0) continue;
      }
      const std::span<char> space = reader.prepare();
      const ssize_t n = read_some(space, reason);
      if (n == -1) continue;
      if (n <= 0) break;
      reader.commit(static_cast<std::size_t>(n));
      bool ok = true;
      for (;;) {
        const proto::FrameResult f = reader.next();
        if (f.status == proto::FrameStatus::kComplete) {
          if (!deliver(f.payload, reason)) {
            ok = false;
            break;
          }
          continue;
        }
        if (f.status == proto::FrameStatus::kOversized) {
          reason = "protocol error: response frame of " + std::to_string(f.length) +
                   " bytes exceeds the limit";
          ok = false;
        }
        break;
      }
      if (!ok) break;
    }
    {
      std::lock_guard lock(mu);
      if (!notice.ok() && reason == "connection closed by the server") {
        reason = "connection closed by the server: " + notice.message();
      }
    }
    if (stopping.load(std::memory_order_relaxed)) reason = "client closed";
    fail_all(reason);
  }
};

Result<std::shared_ptr<Connection>> Connection::open(const Endpoint& endpoint,
                                                     const ClientOptions& options) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const int gai = ::getaddrinfo(endpoint.host.c_str(), endpoint.port.c_str(), &hints, &list);
  if (gai != 0) {
    return unavailable("cannot resolve " + endpoint.host + ": " + ::gai_strerror(gai));
  }
  std::string error = "no address";
  int fd = -1;
  for (const addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = connect_one(ai, options.connect_timeout, error);
  }
  ::freeaddrinfo(list);
  if (fd < 0) {
    return unavailable("cannot connect to " + endpoint.host + ":" + endpoint.port + ": " + error);
  }
  if (options.tcp_nodelay) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (options.request_timeout.count() > 0) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(options.request_timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((options.request_timeout.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  std::unique_ptr<TlsSession> tls;
  if (options.tls) {
    tls = std::make_unique<TlsSession>();
    const std::string why = tls->handshake(fd, endpoint.host, options);
    if (!why.empty()) {
      tls.reset();
      ::close(fd);
      return unavailable("cannot connect to " + endpoint.host + ":" + endpoint.port + ": " + why);
    }
  }
  auto core = std::make_shared<Core>(fd, options, std::move(tls));
  // The thread shares ownership of the core, so that a Connection destroyed on its own
  // I/O thread (by a callback dropping the last reference) can detach it safely.
  std::thread thread([core] { core->run(); });
  return std::make_shared<Connection>(PassKey{}, std::move(core), std::move(thread));
}

Connection::Connection(PassKey /*key*/, std::shared_ptr<Core> core, std::thread thread)
    : core_(std::move(core)), thread_(std::move(thread)) {}

Connection::~Connection() {
  core_->stopping.store(true, std::memory_order_relaxed);
  ::shutdown(core_->fd, SHUT_RDWR);
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();
  } else if (thread_.joinable()) {
    thread_.join();
  }
}

void Connection::submit(pb::Request& request, bool mutating, Completion done) {
  core_->submit(request, mutating, std::move(done));
}

bool Connection::usable() const {
  if (core_->draining.load(std::memory_order_relaxed)) return false;
  std::lock_guard lock(core_->mu);
  return !core_->broken;
}

std::size_t Connection::in_flight() const {
  std::lock_guard lock(core_->mu);
  return core_->pending.size();
}

void Connection::add_watch(std::uint64_t watch_id, std::shared_ptr<WatchSink> sink) {
  {
    std::lock_guard lock(core_->mu);
    if (!core_->watches_closed) {
      core_->watches[watch_id] = std::move(sink);
      return;
    }
  }
  sink->on_lost(unavailable("connection lost"));
}

void Connection::remove_watch(std::uint64_t watch_id) {
  std::lock_guard lock(core_->mu);
  core_->watches.erase(watch_id);
}

std::size_t Connection::watches() const {
  std::lock_guard lock(core_->mu);
  return core_->watches.size();
}

std::uint64_t Connection::unrouted_pushes() const {
  std::lock_guard lock(core_->mu);
  return core_->unrouted;
}

}  // namespace kv::client::detail
