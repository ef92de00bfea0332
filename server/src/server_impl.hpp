// Internals of kv::server::Server: workers, sessions and the shared server state.
//
// Ownership and threads:
//   * ServerImpl owns the workers; each Worker owns its io_context, thread, metrics, and a
//     protobuf arena that its sessions use for one batch of requests at a time.
//   * A Session is owned by the handlers it has pending (shared_from_this); it runs only on
//     its worker's thread. Its worker keeps a non-owning registry of live sessions (touched
//     only on that thread) so that shutdown can reach them.
//   * ServerImpl outlives every Session: its destructor stops the workers and destroys their
//     io_contexts (and with them the last session handlers) before anything else.
//
// Atomics: draining_, finished_, refusing_ and the ServerCounters are flags and statistics
// that publish no other data (everything a session needs from another thread travels
// through asio::post, which synchronizes), so every access is relaxed.
#pragma once

#include <google/protobuf/arena.h>
#include <asio.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "proto/frame.hpp"
#include "server/config.hpp"
#include "server/dispatcher.hpp"
#include "server/metrics.hpp"
#include "server/server.hpp"

namespace kv::server::detail {

class Session;
class ServerImpl;

using Clock = std::chrono::steady_clock;

struct Worker {
  explicit Worker(std::size_t index);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  std::size_t index;
  WorkerMetrics metrics;
  std::unordered_set<Session*> sessions;  // live sessions of this worker (its thread only)
  // Arena for the Request/Response messages of one batch; reset after each batch. Its
  // first block is ours, so a reset returns to it without freeing or allocating.
  std::unique_ptr<char[]> arena_block;
  std::unique_ptr<google::protobuf::Arena> arena;
  std::thread thread;
  // Declared last: destroyed first, while the members above (which pending handlers and
  // sessions touch as they are destroyed) still exist.
  asio::io_context ctx{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `counted`: the connection counts against --max-connections (false for the short-lived
  // sessions that only deliver a refusal).
  Session(ServerImpl& server, Worker& worker, asio::ip::tcp::socket socket, bool counted);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Worker thread only.
  void start();
  void refuse(std::string_view message);  // send one id-0 RESOURCE_EXHAUSTED and close
  void begin_drain();                     // shutdown began: notify, answer UNAVAILABLE
  void close();                           // close now (aborts this connection's txns)

 private:
  void do_read();
  void on_read(const std::error_code& ec, std::size_t n);
  void process();
  void handle_frame(std::string_view payload);
  void flush();
  void on_write(const std::error_code& ec, std::size_t n);
  void notice(proto::pb::Status::Code code, std::string_view message);
  void close_after_flush();
  void begin_linger();
  void do_discard();
  void arm_timer();
  void on_timer(const std::error_code& ec);
  [[nodiscard]] std::size_t backlog() const noexcept {
    return out_pending_.size() + out_writing_.size();
  }

  ServerImpl& server_;
  Worker& worker_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  proto::FrameReader reader_;
  ConnectionTxns txns_;
  std::string out_pending_;          // framed responses not yet handed to the socket
  std::string out_writing_;          // the buffer of the write in flight
  std::unique_ptr<char[]> discard_;  // read target while lingering
  Clock::time_point last_activity_;
  Clock::time_point linger_deadline_ = Clock::time_point::max();
  std::string peer_;  // for debug logs
  bool counted_;
  bool registered_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool read_paused_ = false;        // backpressure: output backlog over the limit
  bool close_after_write_ = false;  // stream no longer framed / refusal / idle notice sent
  bool lingering_ = false;          // send side shut; draining input until EOF or deadline
  bool drain_noticed_ = false;
  bool closed_ = false;
};

class ServerImpl {
 public:
  ServerImpl(const ServerConfig& config, storage::Engine& engine);
  ~ServerImpl();

  bool start(std::string& error);
  void shutdown();
  void wait();
  std::string metrics_text() const;
  std::uint64_t total_requests() const noexcept;

  // Called by sessions.
  void session_closed(bool counted);
  [[nodiscard]] bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }

  const ServerConfig config;
  storage::Engine& engine;
  ServerCounters counters;
  Dispatcher dispatcher;
  std::uint16_t port = 0;
  std::uint16_t metrics_port = 0;

 private:
  void do_accept();
  void do_accept_metrics();
  void arm_summary();
  void log_summary();
  void finish();
  void stop_workers();
  void fill_server_stats(proto::pb::StatsResponse& out) const;

  std::vector<std::unique_ptr<Worker>> workers_;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::optional<asio::ip::tcp::acceptor> metrics_acceptor_;
  std::optional<asio::steady_timer> accept_retry_timer_;
  std::optional<asio::steady_timer> summary_timer_;
  std::optional<asio::steady_timer> grace_timer_;
  std::size_t next_worker_ = 0;
  std::atomic<std::uint64_t> refusing_{0};  // refusal sessions alive
  std::uint64_t last_summary_requests_ = 0;
  Clock::time_point last_summary_at_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> finished_{false};
  bool started_ = false;
  bool joined_ = false;
};

}  // namespace kv::server::detail
