#include "server/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "server_impl.hpp"
#include "tls.hpp"

namespace kv::server {

namespace detail {

namespace {

constexpr std::size_t kArenaBlockBytes = 64 * 1024;
constexpr std::uint64_t kMaxRefusing = 256;  // refusal sessions alive at once
constexpr std::size_t kMaxHttpRequestBytes = 8 * 1024;
// Accept errors: the retry delay starts here and doubles up to the maximum; the log line
// appears at most once per kAcceptLogEvery per listener.
constexpr auto kAcceptRetryFirst = std::chrono::milliseconds(10);
constexpr auto kAcceptRetryMax = std::chrono::milliseconds(1000);
constexpr auto kAcceptLogEvery = std::chrono::seconds(10);

// One scrape of the metrics endpoint: (TLS handshake,) read the request head, answer,
// close. The 5 s timer bounds the whole exchange, handshake included.
class MetricsConnection : public std::enable_shared_from_this<MetricsConnection> {
 public:
  // Counts itself in counters.metrics_connections_open while it lives. `tls`: the metrics
  // listener's TLS context, null for plain HTTP.
  MetricsConnection(ServerImpl& server, asio::ip::tcp::socket socket, asio::ssl::context* tls)
      : server_(server),
        socket_(std::move(socket)),
        tls_(tls != nullptr
                 ? std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *tls)
                 : nullptr),
        timer_(socket_.get_executor()) {
    server_.counters.metrics_connections_open.fetch_add(1, std::memory_order_relaxed);
  }
  ~MetricsConnection() {
    server_.counters.metrics_connections_open.fetch_sub(1, std::memory_order_relaxed);
  }
  MetricsConnection(const MetricsConnection&) = delete;
  MetricsConnection& operator=(const MetricsConnection&) = delete;

  void start() {
    timer_.expires_after(std::chrono::seconds(5));
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (!ec) self->socket_.close();
    });
    if (tls_) {
      tls_->async_handshake(
          asio::ssl::stream_base::server, [self = shared_from_this()](const std::error_code& ec) {
            if (ec) {
              spdlog::debug("metrics connection: TLS handshake failed: {}", ec.message());
              return self->finish();
            }
            self->read();
          });
      return;
    }
    read();
  }

 private:
  template <class Buffers, class Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  void read() {
    buf_.resize(request_.size() + 1024);
    async_read_some(asio::buffer(buf_.data() + request_.size(), 1024),
                    [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                      if (ec) return self->finish();
                      self->request_.append(self->buf_.data() + self->request_.size(), n);
                      if (self->request_.find("\r\n\r\n") != std::string::npos ||
                          self->request_.find("\n\n") != std::string::npos) {
                        return self->respond();
                      }
                      if (self->request_.size() > kMaxHttpRequestBytes) return self->finish();
                      self->read();
                    });
  }

  void respond() {
    std::string status = "200 OK";
    std::string body;
    std::string type = "text/plain; version=0.0.4; charset=utf-8";
    const bool get = request_.rfind("GET ", 0) == 0;
    const auto path_end = request_.find(' ', 4);
    const std::string path =
        get && path_end != std::string::npos ? request_.substr(4, path_end - 4) : std::string();
    if (!server_.metrics_token.empty() && !bearer_matches(request_, server_.metrics_token)) {
      // --metrics-token-file: the scrape must carry the token (compared in constant time).
      server_.counters.metrics_unauthorized.fetch_add(1, std::memory_order_relaxed);
      status = "401 Unauthorized\r\nWWW-Authenticate: Bearer";
      body = "a bearer token is required (Authorization: Bearer TOKEN)\n";
    } else if (!get) {
      status = "405 Method Not Allowed";
      body = "only GET is supported\n";
    } else if (path == "/metrics" || path.rfind("/metrics?", 0) == 0) {
      body = server_.metrics_text();
    } else {
      status = "404 Not Found";
      body = "try GET /metrics\n";
    }
    response_ = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                "\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n" + body;
    auto done = [self = shared_from_this()](const std::error_code&, std::size_t) {
      self->finish();
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(response_), done);
    } else {
      asio::async_write(socket_, asio::buffer(response_), done);
    }
  }

  void finish() {
    std::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
  }

  ServerImpl& server_;
  asio::ip::tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;  // over socket_; null: plain
  asio::steady_timer timer_;
  std::string buf_;
  std::string request_;
  std::string response_;
};

bool bind_listener(asio::io_context& ctx, const Endpoint& where,
                   std::optional<asio::ip::tcp::acceptor>& out, std::string& error) {
  std::error_code ec;
  asio::ip::tcp::resolver resolver(ctx);
  auto results = resolver.resolve(where.host, std::to_string(where.port),
                                  asio::ip::tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    error = "cannot resolve " + where.to_string() + ": " + ec.message();
    return false;
  }
  const asio::ip::tcp::endpoint endpoint = results.begin()->endpoint();
  asio::ip::tcp::acceptor acceptor(ctx);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error = "cannot listen on " + where.to_string() + ": " + ec.message();
    return false;
  }
  out.emplace(std::move(acceptor));
  return true;
}

}  // namespace

Worker::Worker(std::size_t i) : index(i), arena_block(std::make_unique<char[]>(kArenaBlockBytes)) {
  google::protobuf::ArenaOptions options;
  options.initial_block = arena_block.get();
  options.initial_block_size = kArenaBlockBytes;
  arena = std::make_unique<google::protobuf::Arena>(options);
}

Worker::~Worker() { scheduler.clear(); }

ServerImpl::ServerImpl(const ServerConfig& cfg, storage::Engine& eng)
    : config(cfg),
      engine(eng),
      dispatcher(
          eng, cfg, [this](proto::pb::StatsResponse& out) { fill_server_stats(out); }, &counters),
      peer_txns(cfg.effective_txns_per_peer()),
      watch_hub(std::make_shared<WatchHub>(cfg.max_watches)) {}

bool ServerImpl::reserve_input(std::size_t n) noexcept {
  // Never passes the limit: the total is re-read and re-checked until the exchange wins.
  // Relaxed: see the top of server_impl.hpp.
  std::uint64_t cur = counters.input_buffer_bytes.load(std::memory_order_relaxed);
  do {
    if (cur + n > config.max_input_bytes_total) return false;
  } while (
      !counters.input_buffer_bytes.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

ServerImpl::~ServerImpl() {
  watch_hub->close();  // W4: the engine's listener touches no worker from here on
  if (started_) {
    if (!finished_.load(std::memory_order_relaxed)) {
      draining_.store(true, std::memory_order_relaxed);
      finish();
    }
    wait();
  }
  // The acceptors and timers belong to worker 0's io_context: destroy them first. Then the
  // workers (and with their io_contexts, the last session handlers) while the rest of this
  // object is still alive: sessions report to it as they go.
  grace_timer_.reset();
  summary_timer_.reset();
  accept_retry_timer_.reset();
  metrics_retry_timer_.reset();
  metrics_acceptor_.reset();
  acceptor_.reset();
  commit_pool_.reset();  // joined by wait(): before the io_contexts its jobs post to go
  workers_.clear();
}

bool ServerImpl::start(std::string& error) {
  if (!dispatcher.load_users(error)) return false;
  if (!config.metrics_token_file.empty()) {
    metrics_token = load_token_file(config.metrics_token_file, error);
    if (metrics_token.empty()) return false;
  }
  const unsigned n = config.effective_threads();
  workers_.reserve(n);
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(i));
  Worker& w0 = *workers_.front();
  {
    std::vector<Worker*> ws;
    for (auto& w : workers_) ws.push_back(w.get());
    watch_hub->attach(std::move(ws));
    engine.set_change_listener([hub = watch_hub](storage::Revision) { hub->notify(); });
  }
  if (!config.tls_cert.empty()) {
    tls_ = make_server_tls_context(config.tls_cert, config.tls_key, config.tls_ca,
                                   config.tls_require_client_cert, "tls", error);
    if (!tls_) return false;
  }
  if (!config.metrics_tls_cert.empty()) {
    metrics_tls_ = make_server_tls_context(config.metrics_tls_cert, config.metrics_tls_key,
                                           config.metrics_tls_ca, !config.metrics_tls_ca.empty(),
                                           "metrics-tls", error);
    if (!metrics_tls_) return false;
  }
  if (!bind_listener(w0.ctx, config.listen, acceptor_, error)) return false;
  port = acceptor_->local_endpoint().port();
  if (config.metrics_listen) {
    if (!bind_listener(w0.ctx, *config.metrics_listen, metrics_acceptor_, error)) return false;
    metrics_port = metrics_acceptor_->local_endpoint().port();
  }
  accept_retry_timer_.emplace(w0.ctx);
  metrics_retry_timer_.emplace(w0.ctx);
  summary_timer_.emplace(w0.ctx);
  grace_timer_.emplace(w0.ctx);
  last_summary_at_ = Clock::now();

  do_accept();
  if (metrics_acceptor_) do_accept_metrics();
  arm_summary();
  if (const unsigned n = config.effective_commit_threads(); n > 0) {
    commit_pool_ = std::make_unique<asio::thread_pool>(n);
  }
  for (auto& w : workers_) {
    w->work.emplace(w->ctx.get_executor());
    Worker* worker = w.get();
    w->thread = std::thread([worker] {
      for (;;) {
        try {
          worker->ctx.run();
          return;
        } catch (const std::exception& e) {
          // A handler threw (allocation failure): log, keep serving the other sessions.
          spdlog::error("worker {}: unexpected exception: {}", worker->index, e.what());
        }
      }
    });
  }
  started_ = true;
  spdlog::info("kovan-server listening on {}{}{} ({})",
               Endpoint{config.listen.host, port}.to_string(), tls_ ? " (TLS)" : "",
               metrics_acceptor_ ? ", metrics on port " + std::to_string(metrics_port) : "",
               config.describe());
  return true;
}

void ServerImpl::do_accept() {
  Worker& target = *workers_[next_worker_];
  acceptor_->async_accept(target.ctx, [this, &target](const std::error_code& ec,
                                                      asio::ip::tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
      accept_failed(accept_backoff_, "client", ec, *accept_retry_timer_, &ServerImpl::do_accept);
      return;
    }
    accept_backoff_.delay = std::chrono::milliseconds(0);
    next_worker_ = (next_worker_ + 1) % workers_.size();
    if (draining()) {
      std::error_code ignored;
      socket.close(ignored);
    } else if (counters.connections_open.load(std::memory_order_relaxed) >=
               config.max_connections) {
      counters.connections_refused.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("connection refused: {} connections open", config.max_connections);
      if (refusing_.load(std::memory_order_relaxed) >= kMaxRefusing) {
        std::error_code ignored;
        socket.close(ignored);
      } else {
        refusing_.fetch_add(1, std::memory_order_relaxed);
        auto s = std::make_shared<Session>(*this, target, std::move(socket), false,
                                           tls_ ? &*tls_ : nullptr);
        asio::post(target.ctx, [s] { s->refuse("too many connections (--max-connections)"); });
      }
    } else {
      // Only this handler increments, so the check above cannot be overtaken.
      counters.connections_open.fetch_add(1, std::memory_order_relaxed);
      counters.connections_accepted.fetch_add(1, std::memory_order_relaxed);
      auto s = std::make_shared<Session>(*this, target, std::move(socket), true,
                                         tls_ ? &*tls_ : nullptr);
      asio::post(target.ctx, [s] { s->start(); });
    }
    do_accept();
  });
}

void ServerImpl::do_accept_metrics() {
  metrics_acceptor_->async_accept([this](const std::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !metrics_acceptor_->is_open()) return;
      accept_failed(metrics_backoff_, "metrics", ec, *metrics_retry_timer_,
                    &ServerImpl::do_accept_metrics);
      return;
    }
    metrics_backoff_.delay = std::chrono::milliseconds(0);
    if (counters.metrics_connections_open.load(std::memory_order_relaxed) >=
        config.max_metrics_connections) {
      // Over the limit: close at once, so that idle scrapers cannot hold descriptors.
      counters.metrics_connections_refused.fetch_add(1, std::memory_order_relaxed);
      std::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<MetricsConnection>(*this, std::move(socket),
                                          metrics_tls_ ? &*metrics_tls_ : nullptr)
          ->start();
    }
    do_accept_metrics();
  });
}

void ServerImpl::accept_failed(AcceptBackoff& backoff, const char* listener,
                               const std::error_code& ec, asio::steady_timer& timer,
                               void (ServerImpl::*retry)()) {
  counters.accept_errors.fetch_add(1, std::memory_order_relaxed);
  // Out of descriptors or similar: the condition lasts until connections close, so retry
  // after a delay that doubles while it lasts instead of spinning.
  backoff.delay =
      backoff.delay.count() == 0 ? kAcceptRetryFirst : std::min(backoff.delay * 2, kAcceptRetryMax);
  const auto now = Clock::now();
  if (backoff.last_log == Clock::time_point{} || now - backoff.last_log >= kAcceptLogEvery) {
    spdlog::warn(
        "accept failed on the {} listener: {} ({} more since the last report); "
        "retrying in {} ms",
        listener, ec.message(), backoff.unlogged, backoff.delay.count());
    backoff.last_log = now;
    backoff.unlogged = 0;
  } else {
    ++backoff.unlogged;
  }
  timer.expires_after(backoff.delay);
  timer.async_wait([this, retry](const std::error_code& e) {
    if (e || finished_.load(std::memory_order_relaxed) || draining()) return;
    (this->*retry)();
  });
}

void ServerImpl::arm_summary() {
  if (config.summary_interval.count() <= 0) return;
  summary_timer_->expires_after(config.summary_interval);
  summary_timer_->async_wait([this](const std::error_code& ec) {
    if (ec) return;
    log_summary();
    arm_summary();
  });
}

void ServerImpl::log_summary() {
  const auto now = Clock::now();
  const std::uint64_t requests = total_requests();
  const double secs = std::chrono::duration<double>(now - last_summary_at_).count();
  const double rate = secs > 0 ? static_cast<double>(requests - last_summary_requests_) / secs : 0;
  last_summary_requests_ = requests;
  last_summary_at_ = now;
  const storage::EngineStats e = engine.stats();
  const auto relaxed = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  spdlog::info(
      "summary: connections={} requests={} ({:.0f}/s) txns={} keys={} versions={} "
      "revision={} unreclaimed={} rss={}MiB refused={} idle_closed={} bad_frames={}",
      relaxed(counters.connections_open), requests, rate, e.active_txns, e.keys, e.live_versions,
      e.revision, e.kovan_retired >= e.kovan_reclaimed ? e.kovan_retired - e.kovan_reclaimed : 0,
      resident_memory_bytes() >> 20, relaxed(counters.connections_refused),
      relaxed(counters.connections_idle_closed),
      relaxed(counters.frames_oversized) + relaxed(counters.frames_unparsable));
}

std::uint64_t ServerImpl::total_requests() const noexcept {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->metrics.total_requests();
  return n;
}

std::string ServerImpl::metrics_text() const {
  std::vector<const WorkerMetrics*> ws;
  ws.reserve(workers_.size());
  for (const auto& w : workers_) ws.push_back(&w->metrics);
  return render_prometheus(ws, counters, engine.stats()) +
         render_durability(engine.durability_stats()) + render_watch_metrics();
}

std::string ServerImpl::render_watch_metrics() const {
  const storage::ChangeLogStats s = engine.change_log_stats();
  const WatchHub& h = *watch_hub;
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  metric("kv_watches_open", "gauge", "Watches open on all connections.", h.open());
  metric("kv_watch_pushes_total", "counter", "WatchEvents pushes sent (fragments included).",
         h.pushes.load(std::memory_order_relaxed));
  metric("kv_watches_ended_compacted_total", "counter",
         "Watches ended because they fell behind the history (COMPACTED).",
         h.ended_compacted.load(std::memory_order_relaxed));
  metric("kv_watch_wakeups_total", "counter", "Worker wake-ups for watch delivery.",
         h.wakeups.load(std::memory_order_relaxed));
  metric("kv_watch_history_bytes", "gauge", "Bytes held by the watch change history.", s.bytes);
  metric("kv_watch_history_first_revision", "gauge",
         "Oldest revision the in-memory watch history serves.", s.first_kept);
  return out;
}

void ServerImpl::fill_server_stats(proto::pb::StatsResponse& out) const {
  out.set_connections(counters.connections_open.load(std::memory_order_relaxed));
  out.set_connections_total(counters.connections_accepted.load(std::memory_order_relaxed));
  out.set_requests_total(total_requests());
  out.set_server_txns(counters.txns_open.load(std::memory_order_relaxed));
}

void ServerImpl::shutdown() {
  if (!started_ || draining_.exchange(true, std::memory_order_relaxed)) return;
  Worker& w0 = *workers_.front();
  spdlog::info("shutting down: answering UNAVAILABLE for up to {} ms",
               config.shutdown_grace.count());
  asio::post(w0.ctx, [this] {
    std::error_code ignored;
    acceptor_->close(ignored);
    if (metrics_acceptor_) metrics_acceptor_->close(ignored);
    accept_retry_timer_->cancel();
    metrics_retry_timer_->cancel();
    summary_timer_->cancel();
    grace_timer_->expires_after(config.shutdown_grace);
    grace_timer_->async_wait([this](const std::error_code& ec) {
      if (!ec) finish();
    });
    // Sessions accepted before the acceptor closed have been posted to their workers
    // already; the drain posts below run after them.
    for (auto& w : workers_) {
      Worker* worker = w.get();
      asio::post(worker->ctx, [worker] {
        // Copy: a session may close (and unregister) while being told.
        const std::vector<Session*> sessions(worker->sessions.begin(), worker->sessions.end());
        for (Session* s : sessions) s->begin_drain();
      });
    }
    if (counters.connections_open.load(std::memory_order_relaxed) == 0) finish();
  });
}

void ServerImpl::session_closed(bool counted) {
  if (!counted) {
    refusing_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  const auto left = counters.connections_open.fetch_sub(1, std::memory_order_relaxed) - 1;
  if (left == 0 && draining()) finish();
}

void ServerImpl::finish() {
  if (finished_.exchange(true, std::memory_order_relaxed)) return;
  // Close every session on its own thread, then stop the worker. Worker 0 also owns the
  // acceptors and timers: close them there first.
  for (auto& w : workers_) {
    Worker* worker = w.get();
    asio::post(worker->ctx, [this, worker] {
      if (worker->index == 0) {
        std::error_code ignored;
        if (acceptor_) acceptor_->close(ignored);
        if (metrics_acceptor_) metrics_acceptor_->close(ignored);
        if (accept_retry_timer_) accept_retry_timer_->cancel();
        if (metrics_retry_timer_) metrics_retry_timer_->cancel();
        if (summary_timer_) summary_timer_->cancel();
        if (grace_timer_) grace_timer_->cancel();
      }
      const std::vector<Session*> sessions(worker->sessions.begin(), worker->sessions.end());
      for (Session* s : sessions) s->close();
      worker->ctx.stop();
    });
  }
}

void ServerImpl::wait() {
  if (joined_) return;
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  // Commits still running finish (they post their answers to stopped workers, whose
  // io_contexts drop them): nothing uses the engine after wait() returns.
  if (commit_pool_) commit_pool_->join();
  joined_ = true;
}

}  // namespace detail

Server::Server(const ServerConfig& config, storage::Engine& engine)
    : impl_(std::make_unique<detail::ServerImpl>(config, engine)) {}

Server::~Server() = default;

bool Server::start(std::string& error) { return impl_->start(error); }
bool Server::reload_users(std::string& error) { return impl_->dispatcher.load_users(error); }
std::uint16_t Server::port() const noexcept { return impl_->port; }
std::uint16_t Server::metrics_port() const noexcept { return impl_->metrics_port; }
void Server::shutdown() { impl_->shutdown(); }
void Server::wait() { impl_->wait(); }
const ServerCounters& Server::counters() const noexcept { return impl_->counters; }
std::uint64_t Server::total_requests() const noexcept { return impl_->total_requests(); }
std::string Server::metrics_text() const { return impl_->metrics_text(); }
std::uint64_t Server::connection_buffer_bytes() const noexcept {
  return impl_->connection_buffer_bytes();
}

}  // namespace kv::server
