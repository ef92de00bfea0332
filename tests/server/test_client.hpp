// Test helpers: a blocking framed-protobuf client over a raw TCP socket (so tests see the
// exact bytes), an in-process server fixture, and a deadline poller.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "proto/codec.hpp"
#include "proto/frame.hpp"
#include "server/server.hpp"
#include "storage/engine.hpp"

namespace kv::test {

namespace pb = proto::pb;
using namespace std::chrono_literals;

// Polls `cond` until it holds or `timeout` passes. For conditions that another thread or
// process makes true at an unknown time; never used to order our own threads.
template <class Cond>
bool eventually(Cond cond, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class Client {
 public:
  // Connects to 127.0.0.1:port. `rcvbuf`: optional SO_RCVBUF set before connecting.
  // `source`: optional local IPv4 address to connect from (another loopback address such
  // as 127.0.0.2 makes a distinct peer).
  explicit Client(std::uint16_t port, int rcvbuf = 0, const char* source = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (source != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &local.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  [[nodiscard]] bool connected() const { return connected_; }
  [[nodiscard]] int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  bool send(const pb::Request& r) {
    std::string out;
    proto::append_message(out, r);
    return send_raw(out);
  }
  bool send_all(const std::vector<pb::Request>& rs) {
    std::string out;
    for (const auto& r : rs) proto::append_message(out, r);
    return send_raw(out);
  }

  // Reads exactly n bytes; false on EOF, error or timeout.
  bool read_exact(char* dst, std::size_t n, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (n > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      const ssize_t got = ::recv(fd_, dst, n, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      dst += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }

  // The next response frame, or nullopt on EOF / timeout / unparsable bytes.
  std::optional<pb::Response> recv(std::chrono::milliseconds timeout = 5s) {
    char header[4];
    if (!read_exact(header, 4, timeout)) return std::nullopt;
    std::string payload(proto::get_frame_header(header), '\0');
    if (!read_exact(payload.data(), payload.size(), timeout)) return std::nullopt;
    pb::Response r;
    if (!r.ParseFromString(payload)) return std::nullopt;
    return r;
  }

  pb::Response call(const pb::Request& r) {
    EXPECT_TRUE(send(r));
    auto resp = recv();
    EXPECT_TRUE(resp.has_value()) << "no response to " << r.ShortDebugString();
    return resp.value_or(pb::Response());
  }

  // True when the server closed the connection (EOF or reset) within `timeout`, after
  // discarding anything still unread.
  bool closed_by_peer(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got <= 0) return true;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Request builders.
inline pb::Request ping(std::uint64_t id, std::string payload = {}) {
  pb::Request r;
  r.set_id(id);
  r.mutable_ping()->set_payload(std::move(payload));
  return r;
}
inline pb::Request get(std::uint64_t id, std::string key, std::uint64_t txn = 0) {
  pb::Request r;
  r.set_id(id);
  r.mutable_get()->set_key(std::move(key));
  r.mutable_get()->set_txn_id(txn);
  return r;
}
inline pb::Request put(std::uint64_t id, std::string key, std::string value, std::uint64_t txn = 0,
                       bool prev_kv = false) {
  pb::Request r;
  r.set_id(id);
  auto* p = r.mutable_put();
  p->set_key(std::move(key));
  p->set_value(std::move(value));
  p->set_txn_id(txn);
  p->set_prev_kv(prev_kv);
  return r;
}
inline pb::Request del(std::uint64_t id, std::string key, std::uint64_t txn = 0) {
  pb::Request r;
  r.set_id(id);
  r.mutable_del()->set_key(std::move(key));
  r.mutable_del()->set_txn_id(txn);
  return r;
}
inline pb::Request begin(std::uint64_t id, pb::Isolation iso = pb::SERIALIZABLE) {
  pb::Request r;
  r.set_id(id);
  r.mutable_begin()->set_isolation(iso);
  return r;
}
inline pb::Request commit(std::uint64_t id, std::uint64_t txn) {
  pb::Request r;
  r.set_id(id);
  r.mutable_commit()->set_txn_id(txn);
  return r;
}
inline pb::Request abort_txn(std::uint64_t id, std::uint64_t txn) {
  pb::Request r;
  r.set_id(id);
  r.mutable_abort()->set_txn_id(txn);
  return r;
}
inline pb::Request stats(std::uint64_t id) {
  pb::Request r;
  r.set_id(id);
  r.mutable_stats();
  return r;
}

// An engine and a server on 127.0.0.1, an ephemeral port, running in this process.
class InProcessServer {
 public:
  static server::ServerConfig small_config() {
    server::ServerConfig c;
    c.listen.host = "127.0.0.1";
    c.listen.port = 0;
    c.threads = 2;
    c.log_level = "warn";
    c.summary_interval = std::chrono::milliseconds(0);
    c.shutdown_grace = std::chrono::milliseconds(500);
    return c;
  }

  explicit InProcessServer(server::ServerConfig config = small_config())
      : config_(config), engine_(config.engine_options()), server_(config_, engine_) {
    spdlog::set_level(spdlog::level::warn);
    std::string error;
    started_ = server_.start(error);
    EXPECT_TRUE(started_) << error;
  }
  ~InProcessServer() {
    server_.shutdown();
    server_.wait();
  }

  [[nodiscard]] std::uint16_t port() const { return server_.port(); }
  server::Server& server() { return server_; }
  storage::Engine& engine() { return engine_; }
  const server::ServerConfig& config() const { return config_; }

 private:
  server::ServerConfig config_;
  storage::Engine engine_;
  server::Server server_;
  bool started_ = false;
};

}  // namespace kv::test
