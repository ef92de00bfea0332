// kovan-server's network front end: an Asio TCP server speaking the framed protobuf
// protocol of docs/PROTOCOL.md on top of a storage::Engine.
//
// Threading: one asio::io_context per worker thread ("io_context per CPU"); connections are
// assigned round-robin at accept and are served entirely by their worker thread, which
// calls the engine directly (the engine is safe for concurrent use). The accept loop, the
// metrics endpoint and the summary log timer run on worker 0.
//
// Lifecycle: construct -> start() -> [serve] -> shutdown() -> wait() -> destroy. The
// Engine must outlive the Server. shutdown() is graceful: it stops accepting, tells every
// connection that the server is going away (an id-0 UNAVAILABLE notice), answers further
// requests with UNAVAILABLE, and closes every connection when its client closes or after
// --shutdown-grace, whichever comes first. Destroying a started Server that was not shut
// down performs shutdown() with no grace and wait().
//
// Thread safety: start() and wait() must be called from one controlling thread;
// shutdown() and the observers may be called from any thread (not from a signal handler).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "server/config.hpp"
#include "server/metrics.hpp"
#include "storage/engine.hpp"

namespace kv::server {

namespace detail {
class ServerImpl;
}

class Server {
 public:
  Server(const ServerConfig& config, storage::Engine& engine);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the client listener (and the metrics listener when configured) and starts the
  // worker threads. On failure returns false and describes the problem in `error`.
  [[nodiscard]] bool start(std::string& error);

  // Re-reads the --users file (SIGHUP); false with `error` set when it does not load (the
  // users in force stay). True without --users.
  bool reload_users(std::string& error);

  // The bound ports (useful with port 0); 0 before start() or when not configured.
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] std::uint16_t metrics_port() const noexcept;

  // Begins the graceful shutdown described above; returns at once. Idempotent.
  void shutdown();
  // Blocks until every worker thread has stopped (only ever after shutdown()).
  void wait();

  // Observers, from any thread.
  [[nodiscard]] const ServerCounters& counters() const noexcept;
  [[nodiscard]] std::uint64_t total_requests() const noexcept;
  [[nodiscard]] std::string metrics_text() const;
  // Bytes all client connections hold in receive buffers and unsent responses (the sum of
  // the --max-input-bytes-total and --max-output-bytes-total accounts).
  [[nodiscard]] std::uint64_t connection_buffer_bytes() const noexcept;

 private:
  std::unique_ptr<detail::ServerImpl> impl_;
};

}  // namespace kv::server
