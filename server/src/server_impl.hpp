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
//
// Connection memory budgets: counters.input_buffer_bytes and counters.output_buffer_bytes
// are the bytes all sessions hold in receive buffers (their capacity) and unsent output.
// Each session adds and subtracts exactly what it holds (Session::input_accounted_ and
// output_accounted_), so the totals are exact whenever no session is between an
// allocation and its accounting. Relaxed is enough: the totals publish no data (the
// buffers themselves stay on their session's thread); read-modify-writes never lose an
// update whatever the order, and a budget check that reads a slightly stale total only
// makes the limit soft by what the other threads are changing at that instant. Invariants:
//   * input_buffer_bytes <= --max-input-bytes-total + (initial receive buffers of the
//     connections that did not grow), since growth is reserved with a compare-exchange
//     loop that never passes the limit;
//   * output_buffer_bytes <= --max-output-bytes-total + one response per connection, since
//     a connection with output waiting stops reading while the total is at the limit.
#pragma once

#include <google/protobuf/arena.h>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <asio/thread_pool.hpp>

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
#include "scheduler.hpp"
#include "server/config.hpp"
#include "server/dispatcher.hpp"
#include "server/metrics.hpp"
#include "server/server.hpp"
#include "watch.hpp"

namespace kv::server::detail {

class Session;
class ServerImpl;

using Clock = std::chrono::steady_clock;

struct Worker {
  explicit Worker(std::size_t index);
  ~Worker();  // drops the scheduler's queued sessions while ctx still exists
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  std::size_t index;
  WorkerMetrics metrics;
  std::unordered_set<Session*> sessions;  // live sessions of this worker (its thread only)
  // Watch delivery (watch.hpp): sessions of this worker holding watches (its thread only),
  // the number of watches they hold, and the coalesced wake-up flag the commit path sets.
  std::unordered_set<Session*> watch_sessions;
  std::atomic<std::uint64_t> watches{0};
  std::atomic<bool> watch_wake{false};
  // Arena for the Request/Response messages of one batch; reset after each batch. Its
  // first block is ours, so a reset returns to it without freeing or allocating.
  std::unique_ptr<char[]> arena_block;
  std::unique_ptr<google::protobuf::Arena> arena;
  // Messages were created in `arena` since its last reset (plain requests create none, and
  // a reset of an unused arena still costs its re-initialisation).
  bool arena_used = false;
  std::thread thread;
  // Which of this worker's connections dispatches next (scheduler.hpp; its thread only).
  // It posts to ctx, which is destroyed first; the destructor clears it before that.
  TurnScheduler scheduler{ctx};
  // Declared last: destroyed first, while the members above (which pending handlers and
  // sessions touch as they are destroyed) still exist.
  asio::io_context ctx{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
};

class Session : public std::enable_shared_from_this<Session>, public TurnTaker {
 public:
  // `counted`: the connection counts against --max-connections (false for the short-lived
  // sessions that only deliver a refusal). `tls`: the listener's TLS context (null: plain
  // TCP); the session then handshakes before it reads its first frame.
  Session(ServerImpl& server, Worker& worker, asio::ip::tcp::socket socket, bool counted,
          asio::ssl::context* tls = nullptr);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Worker thread only.
  void start();
  void refuse(std::string_view message);  // send one id-0 RESOURCE_EXHAUSTED and close
  void begin_drain();                     // shutdown began: notify, answer UNAVAILABLE
  void close();                           // close now (aborts this connection's txns)
  // Adds the pushes its watches have room for (--max-output-bytes) and writes them.
  void pump_watches();
  // The scheduler's visit (scheduler.hpp): dispatches at most `budget` buffered requests.
  Result take_turn(std::size_t budget) override;

 private:
  void do_read();
  // TLS: wait for the first byte, refuse a plaintext client with a notice, handshake.
  void begin_handshake();
  void on_first_bytes(const std::error_code& ec);
  void on_handshake(const std::error_code& ec);
  // Reads / writes through TLS when the session has it, else on the socket. A branch on a
  // pointer (not a virtual call), so plain TCP pays one predictable test per operation.
  template <class Buffers, class Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket_, buffers, std::forward<Handler>(handler));
    }
  }
  void account_output() noexcept;  // output_accounted_ := backlog(), in the server total
  void release_buffers() noexcept;
  void on_read(const std::error_code& ec, std::size_t n);
  // Dispatches at most `budget` buffered frames, flushes, and reads again unless frames
  // are left (`more`: the session stays queued for its next turn). Only from take_turn().
  Result process(std::size_t budget);
  // Queue this session for a turn of its worker (its frames are dispatched there).
  void want_turn();
  void handle_frame(std::string_view payload);
  void flush();
  void on_write(const std::error_code& ec, std::size_t n);
  void notice(proto::pb::Status::Code code, std::string_view message);
  void close_after_flush();
  void begin_linger();
  void do_discard();
  void arm_timer();
  void on_timer(const std::error_code& ec);
  void note_frame_progress();  // starts / clears the --frame-timeout deadline
  void release_held();         // a failed AUTHENTICATE's delay passed: answer, go on
  // A durable write goes to the commit threads (ServerImpl::commit_pool); the session
  // processes nothing more until its answer is back (on_committed, on this thread).
  [[nodiscard]] bool offload(const proto::pb::Request& request, Clock::time_point t0);
  void on_committed(std::unique_ptr<proto::pb::Response> response, OpKind op, Clock::time_point t0);
  void append_response(proto::pb::Response& response);
  // The response framed at out_pending_[at..] is over --max-frame-bytes: replaced by a
  // RESOURCE_EXHAUSTED error for request `id`.
  void limit_response(std::size_t at, std::uint64_t id);
  // In worker_.watch_sessions iff it holds watches.
  void sync_watch_registration();
  // Rate quota: the user is over its requests per second; hold `payload` (the next
  // request) and stop reading for `wait` (at least kMinRatePause).
  void pause_for_rate(std::string_view payload, std::chrono::milliseconds wait);
  void resume_after_rate();  // the pause is over: process the held request, read again
  [[nodiscard]] std::size_t backlog() const noexcept {
    return out_pending_.size() + out_writing_.size();
  }

  ServerImpl& server_;
  Worker& worker_;
  asio::ip::tcp::socket socket_;
  // TLS over socket_ (which stays the owner of the descriptor: shutdown and close act on
  // it directly). Null on plain TCP, and after a plaintext client was detected on a TLS
  // port (its refusal notice goes out in plain text).
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
  asio::steady_timer timer_;
  proto::FrameReader reader_;
  ConnectionTxns txns_;
  std::string out_pending_;          // framed responses not yet handed to the socket
  std::string out_writing_;          // the buffer of the write in flight
  std::unique_ptr<char[]> discard_;  // read target while lingering
  Clock::time_point last_activity_;
  Clock::time_point linger_deadline_ = Clock::time_point::max();
  // --frame-timeout: when the frame under assembly must be complete (max: none pending).
  Clock::time_point frame_deadline_ = Clock::time_point::max();
  Clock::time_point input_retry_at_ = Clock::time_point::max();  // input budget wait
  Clock::time_point timer_at_ = Clock::time_point::max();        // when timer_ fires
  // A failed AUTHENTICATE's answer is held until held_until_ (docs/SECURITY.md): while
  // held_ has output, no further frame is processed, so answers stay in request order.
  Clock::time_point held_until_ = Clock::time_point::max();
  std::string held_;
  // A request runs on a commit thread: no frame is processed, nothing read, and txns_ is
  // touched only by that thread until on_committed runs here (the asio posts order it).
  bool in_flight_ = false;
  // Rate quota (docs/SECURITY.md, "Tenants"): while rate_paused_, nothing is read or
  // processed until rate_resume_at_, and rate_frame_ is the request that waits for a token
  // (a view into reader_'s buffer, which stays valid because nothing is read into it and
  // it is not shrunk while the view is set).
  std::optional<std::string_view> rate_frame_;
  Clock::time_point rate_resume_at_ = Clock::time_point::max();
  std::size_t input_accounted_ = 0;   // reader_ capacity counted in the server total
  std::size_t output_accounted_ = 0;  // backlog() counted in the server total
  std::string peer_;                  // for debug logs
  bool counted_;
  bool registered_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool read_paused_ = false;        // backpressure: output backlog over the limit
  bool rate_paused_ = false;        // the user is over its rate: see rate_frame_
  bool input_waiting_ = false;      // the receive buffer must grow; the budget is spent
  bool close_after_write_ = false;  // stream no longer framed / refusal / idle notice sent
  bool lingering_ = false;          // send side shut; draining input until EOF or deadline
  bool drain_noticed_ = false;
  bool closed_ = false;
  // TLS handshake under way (frame_deadline_ is its deadline): nothing is read as frames
  // and nothing written until it completes.
  bool handshaking_ = false;
  std::string refusal_;  // TLS refusal session: the notice to send after the handshake
  std::unique_ptr<ConnectionWatches> watches_;  // this connection's watches (watch.hpp)
  bool watch_registered_ = false;               // in worker_.watch_sessions
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
  // Connection buffer budgets (see the top of this file).
  void add_input(std::size_t n) noexcept {
    counters.input_buffer_bytes.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] bool reserve_input(std::size_t n) noexcept;
  void release_input(std::size_t n) noexcept {
    counters.input_buffer_bytes.fetch_sub(n, std::memory_order_relaxed);
  }
  void add_output(std::size_t n) noexcept {
    counters.output_buffer_bytes.fetch_add(n, std::memory_order_relaxed);
  }
  void release_output(std::size_t n) noexcept {
    counters.output_buffer_bytes.fetch_sub(n, std::memory_order_relaxed);
  }
  [[nodiscard]] bool output_budget_spent() const noexcept {
    return counters.output_buffer_bytes.load(std::memory_order_relaxed) >=
           config.max_output_bytes_total;
  }
  // Bytes held in all connections' receive buffers and unsent output.
  [[nodiscard]] std::uint64_t connection_buffer_bytes() const noexcept {
    return counters.input_buffer_bytes.load(std::memory_order_relaxed) +
           counters.output_buffer_bytes.load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }
  // Threads that run durable writes (config.effective_commit_threads(); null: none).
  // Joined after the workers and before they are destroyed: a commit that ends posts its
  // answer to a worker's io_context.
  [[nodiscard]] asio::thread_pool* commit_pool() noexcept { return commit_pool_.get(); }

  const ServerConfig config;
  storage::Engine& engine;
  ServerCounters counters;
  Dispatcher dispatcher;
  PeerTxnSlots peer_txns;
  // Watches of all connections and the engine's change listener (watch.hpp). Shared with
  // the listener, which the engine may call after this object is gone (it is closed first).
  std::shared_ptr<WatchHub> watch_hub;
  std::uint16_t port = 0;
  std::uint16_t metrics_port = 0;
  std::string metrics_token;  // --metrics-token-file's token; empty: none required

 private:
  // Retry state of one listener after accept errors (worker 0 only).
  struct AcceptBackoff {
    std::chrono::milliseconds delay{0};
    Clock::time_point last_log{};
    std::uint64_t unlogged = 0;
  };
  void do_accept();
  void do_accept_metrics();
  // Logs (rate-limited) and schedules `retry` on `timer` after a growing delay.
  void accept_failed(AcceptBackoff& backoff, const char* listener, const std::error_code& ec,
                     asio::steady_timer& timer, void (ServerImpl::*retry)());
  void arm_summary();
  void log_summary();
  void finish();
  void stop_workers();
  void fill_server_stats(proto::pb::StatsResponse& out) const;
  std::string render_watch_metrics() const;  // kv_watch* lines of the metrics text

  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<asio::thread_pool> commit_pool_;
  // TLS contexts of the client and metrics listeners (empty: plain TCP). Built before the
  // workers start and read-only after.
  std::optional<asio::ssl::context> tls_;
  std::optional<asio::ssl::context> metrics_tls_;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::optional<asio::ip::tcp::acceptor> metrics_acceptor_;
  std::optional<asio::steady_timer> accept_retry_timer_;
  std::optional<asio::steady_timer> metrics_retry_timer_;
  AcceptBackoff accept_backoff_;
  AcceptBackoff metrics_backoff_;
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
