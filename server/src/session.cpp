// One client connection: read frames, dispatch them, write the responses in order.
//
// The read side and the write side run concurrently (one read and one write in flight at
// most). Responses to every complete frame of a read are appended to out_pending_ and
// handed to the socket in one write; while a write is in flight, new responses collect in
// out_pending_ and go out in the next write. Reading stops while the unsent output exceeds
// --max-output-bytes and resumes when a write brings it below (backpressure), so a client
// that sends without reading costs at most that much memory plus one frame.
//
// Server-wide budgets (server_impl.hpp): a connection that already has output waiting
// also stops reading while all connections together hold --max-output-bytes-total; its
// own write completions wake it (a connection with nothing waiting may always go on, so a
// well-behaved client is served however many others stall). The receive buffer grows
// only with bytes that arrived (FrameReader), and each growth is reserved in
// --max-input-bytes-total first; when the budget is spent the connection stops reading
// and retries every kInputRetry. Once a frame has begun to arrive it must be complete
// within --frame-timeout (not counting time spent paused for output backpressure), or the
// connection gets an UNAVAILABLE notice and is closed: so neither a stalled sender nor a
// wait for the input budget lasts forever.
//
// TLS (--tls-cert): the session first waits for the client's first byte. A TLS handshake
// record (0x16) starts the handshake; anything else is a plaintext client, which gets an
// id-0 UNAVAILABLE notice in plain text and is closed. The handshake must complete within
// ServerConfig::tls_handshake_timeout (the frame deadline's timer does this), or the
// connection is closed and its slot freed. After it, the session runs as on plain TCP,
// through the TLS stream: the same buffers, budgets, backpressure, linger and drain. Closing
// does not send a TLS close_notify (the response framing tells a client whether it got
// everything; the clients treat an EOF without close_notify as a normal close). With
// --tls-client-cert-login, a verified client certificate whose CN names a user logs the
// connection in as that user right after the handshake (Dispatcher::login_by_certificate).
//
// Fairness (docs/SECURITY.md, "Tenants"): a user over its requests-per-second quota is
// not answered with refusals but slowed down: the request that found the bucket empty is
// held (not dispatched, not refused) and the connection is neither read nor processed
// until the bucket holds a token again (at least kMinRatePause), so the client's unread
// requests back up into its socket buffers and its sends block. And a session does not
// dispatch its frames as they arrive: it asks its worker's TurnScheduler for a turn
// (want_turn) and dispatches in take_turn, at most the budget the scheduler gives it; the
// worker shares its time between tenants, not connections (scheduler.hpp; docs/SECURITY.md,
// "Sharing a worker"). While queued for a turn the session does not read.
#include <spdlog/spdlog.h>

#include "server_impl.hpp"
#include "tls.hpp"

namespace kv::server::detail {

namespace pb = proto::pb;

namespace {

// How long a closing connection keeps reading (and discarding) after its last response,
// so that unread input does not turn the close into a reset that destroys that response.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr std::size_t kDiscardBytes = 4096;
// Arena and buffer sizes above which memory is given back after a batch / write.
constexpr std::size_t kArenaResetBytes = 512 * 1024;
constexpr std::size_t kKeepOutputCapacity = 1 << 20;
// How often a connection waiting for the input budget tries again.
constexpr auto kInputRetry = std::chrono::milliseconds(50);
// Shortest rate-quota pause: one wake-up per paused connection per this period at most,
// whatever the rate (a connection woken per token would cost as much as a refusal).
constexpr auto kMinRatePause = std::chrono::milliseconds(5);

// The peer closed: TCP EOF, or over TLS an EOF without close_notify.
bool is_eof(const std::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

bool quiet_error(const std::error_code& ec) {
  return is_eof(ec) || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

// The first byte of a TLS connection: the record type of a handshake message.
constexpr unsigned char kTlsHandshakeRecord = 0x16;

}  // namespace

Session::Session(ServerImpl& server, Worker& worker, asio::ip::tcp::socket socket, bool counted,
                 asio::ssl::context* tls)
    : server_(server),
      worker_(worker),
      socket_(std::move(socket)),
      tls_(tls != nullptr
               ? std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *tls)
               : nullptr),
      timer_(worker.ctx),
      reader_(server.config.max_frame_bytes),
      txns_(server.counters),
      counted_(counted),
      watches_(std::make_unique<ConnectionWatches>(server.engine, *server.watch_hub, worker.watches,
                                                   server.config)) {
  txns_.watches = watches_.get();
  // The initial receive buffer is always granted (--max-connections bounds it), but it is
  // counted so that the total reports what connections hold.
  input_accounted_ = reader_.capacity();
  server_.add_input(input_accounted_);
}

Session::~Session() { close(); }

void Session::start() {
  worker_.sessions.insert(this);
  registered_ = true;
  std::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  const auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    std::string address = ep.address().to_string();
    peer_ = address + ":" + std::to_string(ep.port());
    txns_.set_peer(&server_.peer_txns, std::move(address));
  }
  spdlog::debug("connection {} opened on worker {}", peer_, worker_.index);
  last_activity_ = Clock::now();
  if (tls_) {
    if (server_.draining()) {
      close();  // not a TLS session yet: nothing to tell it
      return;
    }
    begin_handshake();
    return;
  }
  if (server_.draining()) begin_drain();
  arm_timer();
  do_read();
}

void Session::refuse(std::string_view message) {
  if (tls_ && !handshaking_ && refusal_.empty()) {
    // The notice must go out over TLS: handshake first (bounded by the same deadline).
    refusal_ = std::string(message);
    std::error_code ignored;
    const auto ep = socket_.remote_endpoint(ignored);
    if (!ignored) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    last_activity_ = Clock::now();
    begin_handshake();
    return;
  }
  notice(pb::Status::RESOURCE_EXHAUSTED, message);
  close_after_flush();
}

// ---------------------------------------------------------------------------------------
// TLS handshake
// ---------------------------------------------------------------------------------------

void Session::begin_handshake() {
  handshaking_ = true;
  frame_deadline_ = Clock::now() + server_.config.tls_handshake_timeout();
  arm_timer();
  reading_ = true;
  socket_.async_wait(
      asio::ip::tcp::socket::wait_read,
      [self = shared_from_this()](const std::error_code& ec) { self->on_first_bytes(ec); });
}

void Session::on_first_bytes(const std::error_code& ec) {
  reading_ = false;
  if (closed_) return;
  unsigned char first = 0;
  std::error_code peek_ec = ec;
  std::size_t n = 0;
  if (!peek_ec)
    n = socket_.receive(asio::buffer(&first, 1), asio::socket_base::message_peek, peek_ec);
  if (peek_ec || n == 0) {
    spdlog::debug("connection {}: closed before the TLS handshake{}", peer_,
                  peek_ec && !quiet_error(peek_ec) ? ": " + peek_ec.message() : std::string());
    close();
    return;
  }
  if (first != kTlsHandshakeRecord) {
    // A plaintext client (or anything else) on a TLS port: say so in plain text, so that a
    // Kovan client reports a readable reason, then close.
    server_.counters.tls_plaintext_refused.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("connection {}: not a TLS handshake (first byte 0x{:02x}); refusing", peer_,
                  first);
    tls_.reset();
    handshaking_ = false;
    frame_deadline_ = Clock::time_point::max();
    notice(pb::Status::UNAVAILABLE,
           "this port requires TLS (connect with kovans://HOST:PORT or --tls); closing");
    close_after_flush();
    return;
  }
  reading_ = true;
  tls_->async_handshake(
      asio::ssl::stream_base::server,
      [self = shared_from_this()](const std::error_code& e) { self->on_handshake(e); });
}

void Session::on_handshake(const std::error_code& ec) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    server_.counters.tls_handshakes_failed.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("connection {}: TLS handshake failed: {}", peer_, ec.message());
    close();
    return;
  }
  handshaking_ = false;
  frame_deadline_ = Clock::time_point::max();
  last_activity_ = Clock::now();
  txns_.tls_client_cn = verified_peer_common_name(tls_->native_handle());
  if (counted_ && server_.config.tls_client_cert_login) {
    server_.dispatcher.login_by_certificate(txns_);
  }
  // Read back from the connection's context, which is what the dispatcher sees.
  spdlog::debug("connection {}: TLS established ({}), client certificate CN '{}'", peer_,
                describe_tls_session(tls_->native_handle()), txns_.tls_client_cn);
  if (!counted_) {
    notice(pb::Status::RESOURCE_EXHAUSTED, refusal_);
    close_after_flush();
    return;
  }
  if (server_.draining()) begin_drain();
  arm_timer();
  do_read();
}

void Session::begin_drain() {
  if (closed_ || drain_noticed_) return;
  if (handshaking_) {
    close();  // not a TLS session yet: nothing can be told to it
    return;
  }
  drain_noticed_ = true;
  if (watches_->size() > 0) {  // each watch's final push, then the notice
    watches_->end_all(out_pending_, pb::Status::UNAVAILABLE, "server shutting down");
    sync_watch_registration();
  }
  notice(pb::Status::UNAVAILABLE, "server shutting down");
  flush();
}

void Session::notice(pb::Status::Code code, std::string_view message) {
  pb::Response r;
  r.set_id(0);
  r.mutable_status()->set_code(code);
  r.mutable_status()->set_message(std::string(message));
  r.mutable_header()->set_revision(server_.engine.current_revision());
  proto::append_message(out_pending_, r);
  account_output();
}

void Session::account_output() noexcept {
  if (closed_) return;
  const std::size_t now = backlog();
  if (now > output_accounted_) {
    server_.add_output(now - output_accounted_);
  } else if (now < output_accounted_) {
    server_.release_output(output_accounted_ - now);
  }
  output_accounted_ = now;
}

void Session::release_buffers() noexcept {
  server_.release_input(input_accounted_);
  server_.release_output(output_accounted_);
  input_accounted_ = 0;
  output_accounted_ = 0;
}

void Session::close_after_flush() {
  close_after_write_ = true;
  if (!writing_ && out_pending_.empty()) {
    begin_linger();
  } else {
    flush();
  }
}

// ---------------------------------------------------------------------------------------
// Reading and processing
// ---------------------------------------------------------------------------------------

void Session::do_read() {
  if (closed_ || reading_ || read_paused_ || rate_paused_ || turn_queued() || input_waiting_ ||
      close_after_write_ || !held_.empty() || in_flight_) {
    return;
  }
  // Growth of the receive buffer is reserved in the input budget before it happens.
  const std::size_t cap = reader_.capacity();
  const std::size_t want = reader_.wanted_capacity();
  const bool grow = want <= cap || server_.reserve_input(want - cap);
  std::span<char> space = reader_.prepare(grow);
  if (grow && want > cap) input_accounted_ += want - cap;  // prepare grew it to `want`
  if (space.empty()) {
    if (reader_.failed()) return;  // the session is closing
    // The frame needs more room than the budget has left: try again shortly (the frame
    // deadline keeps running, so this ends).
    input_waiting_ = true;
    server_.counters.input_budget_waits.fetch_add(1, std::memory_order_relaxed);
    input_retry_at_ = Clock::now() + kInputRetry;
    arm_timer();
    return;
  }
  reading_ = true;
  async_read_some(asio::buffer(space.data(), space.size()),
                  [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                    self->on_read(ec, n);
                  });
}

void Session::on_read(const std::error_code& ec, std::size_t n) {
  reading_ = false;
  if (closed_) return;
  if (lingering_) {  // input after our last response is read and dropped
    if (ec) {
      close();
    } else {
      do_discard();
    }
    return;
  }
  if (is_eof(ec) && (writing_ || !out_pending_.empty())) {
    // The client half-closed after its last request: deliver the responses, then close.
    spdlog::debug("connection {} half-closed by peer; flushing responses", peer_);
    close_after_flush();
    return;
  }
  if (ec) {
    if (!quiet_error(ec)) spdlog::debug("connection {}: read failed: {}", peer_, ec.message());
    if (ec != asio::error::operation_aborted) {
      spdlog::debug("connection {} closed by peer ({} bytes unframed)", peer_, reader_.buffered());
    }
    close();
    return;
  }
  reader_.commit(n);
  worker_.metrics.add_bytes_in(n);
  last_activity_ = Clock::now();
  want_turn();
}

void Session::want_turn() {
  // Not while a request runs on a commit thread (on_committed asks), which owns txns_.
  if (closed_ || in_flight_) return;
  worker_.scheduler.ready(shared_from_this(), txns_.auth().tenant.get());
}

TurnTaker::Result Session::take_turn(std::size_t budget) {
  if (closed_) return {};
  return process(budget);
}

TurnTaker::Result Session::process(std::size_t budget) {
  google::protobuf::Arena& arena = *worker_.arena;
  const std::size_t max_output = server_.config.max_output_bytes;
  std::size_t since_reset = 0;
  std::size_t frames = 0;
  bool more = false;
  while (!closed_ && !close_after_write_ && held_.empty() && !rate_paused_ && !in_flight_) {
    const std::size_t pending = backlog();
    if (pending >= max_output) {
      read_paused_ = true;
      break;
    }
    if (pending > 0 && server_.output_budget_spent()) {
      // All connections together hold the output budget: wait for this one's writes.
      server_.counters.output_budget_pauses.fetch_add(1, std::memory_order_relaxed);
      read_paused_ = true;
      break;
    }
    if (frames == budget) {
      more = reader_.buffered() > 0 || rate_frame_.has_value();  // the next turn goes on
      break;
    }
    std::string_view payload;
    if (rate_frame_) {  // the request that waited for a token
      payload = *rate_frame_;
      rate_frame_.reset();
    } else {
      const proto::FrameResult f = reader_.next();
      if (f.status == proto::FrameStatus::kNeedMore) break;
      if (f.status == proto::FrameStatus::kOversized) {
        server_.counters.frames_oversized.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("connection {}: frame of {} bytes over --max-frame-bytes; closing", peer_,
                      f.length);
        worker_.metrics.record(OpKind::kInvalid, pb::Status::RESOURCE_EXHAUSTED,
                               std::chrono::nanoseconds(0));
        notice(pb::Status::RESOURCE_EXHAUSTED,
               "frame length " + std::to_string(f.length) + " exceeds the limit of " +
                   std::to_string(server_.config.max_frame_bytes) + " bytes; closing");
        close_after_flush();
        break;
      }
      payload = f.payload;
      frame_deadline_ = Clock::time_point::max();  // a whole frame arrived
    }
    if (!server_.draining()) {
      if (const auto wait = server_.dispatcher.take_rate_token(txns_); wait.count() > 0) {
        pause_for_rate(payload, wait);
        break;
      }
    }
    ++frames;
    handle_frame(payload);
    if (!worker_.arena_used) continue;
    since_reset += payload.size();
    if (since_reset > kArenaResetBytes) {
      arena.Reset();
      worker_.arena_used = false;
      since_reset = 0;
    }
  }
  if (worker_.arena_used) {
    arena.Reset();
    worker_.arena_used = false;
  }
  // After an unusually large frame, give the receive buffer back once it is empty.
  if (reader_.buffered() == 0 && !rate_frame_ &&
      reader_.capacity() > proto::FrameReader::kMaxReadWindow) {
    reader_.shrink();
    server_.release_input(input_accounted_ - reader_.capacity());
    input_accounted_ = reader_.capacity();
  }
  note_frame_progress();
  pump_watches();
  flush();
  if (!read_paused_ && !more) do_read();
  return {frames, more && !closed_};
}

// ---------------------------------------------------------------------------------------
// Watches (watch.hpp): pushes fill the output up to --max-output-bytes, no further
// ---------------------------------------------------------------------------------------

void Session::pump_watches() {
  if (!closed_ && !close_after_write_ && !lingering_ && !handshaking_ && !drain_noticed_ &&
      watches_->size() > 0) {
    const std::size_t max_output = server_.config.max_output_bytes;
    const std::size_t pending = backlog();
    if (pending < max_output && (pending == 0 || !server_.output_budget_spent()) &&
        watches_->pump(out_pending_, max_output - pending) > 0) {
      account_output();
      flush();
    }
  }
  sync_watch_registration();
}

void Session::sync_watch_registration() {
  const bool want = !closed_ && watches_->size() > 0;
  if (want == watch_registered_) return;
  if (want) {
    worker_.watch_sessions.insert(this);
  } else {
    worker_.watch_sessions.erase(this);
  }
  watch_registered_ = want;
}

void Session::note_frame_progress() {
  // A rate pause is ours, like an output pause: the client's frame clock does not run.
  if (closed_ || rate_paused_ || reader_.buffered() == 0 ||
      server_.config.frame_timeout.count() == 0) {
    frame_deadline_ = Clock::time_point::max();
    return;
  }
  if (frame_deadline_ != Clock::time_point::max()) return;  // the same frame goes on
  frame_deadline_ = Clock::now() + server_.config.frame_timeout;
  if (frame_deadline_ < timer_at_) arm_timer();
}

void Session::release_held() {
  held_until_ = Clock::time_point::max();
  out_pending_ += held_;
  held_.clear();
  account_output();
  want_turn();  // frames that arrived meanwhile; reads again when done
}

void Session::pause_for_rate(std::string_view payload, std::chrono::milliseconds wait) {
  rate_frame_ = payload;
  rate_paused_ = true;
  rate_resume_at_ = Clock::now() + std::max<Clock::duration>(wait, kMinRatePause);
  frame_deadline_ = Clock::time_point::max();
  arm_timer();
}

void Session::resume_after_rate() {
  rate_paused_ = false;
  rate_resume_at_ = Clock::time_point::max();
  last_activity_ = Clock::now();  // the wait was ours, not the client's idleness
  want_turn();  // the held request first (it may pause again); reads again when done
}

void Session::handle_frame(std::string_view payload) {
  const auto t0 = Clock::now();
  if (!server_.draining()) {
    // A plain GET or PUT: answered from its bytes, no messages built (dispatcher.hpp).
    // Writes that go to the commit threads take the general path (offload).
    const std::size_t at = out_pending_.size();
    if (const auto a = server_.dispatcher.answer_plain(payload, server_.commit_pool() == nullptr,
                                                       out_pending_)) {
      limit_response(at, a->id);
      account_output();
      worker_.metrics.record(a->op, a->code, Clock::now() - t0);
      return;
    }
  }
  google::protobuf::Arena& arena = *worker_.arena;
  worker_.arena_used = true;
  auto* request = google::protobuf::Arena::CreateMessage<pb::Request>(&arena);
  auto* response = google::protobuf::Arena::CreateMessage<pb::Response>(&arena);
  OpKind op = OpKind::kInvalid;
  if (!proto::parse_request(payload, *request)) {
    server_.counters.frames_unparsable.fetch_add(1, std::memory_order_relaxed);
    server_.dispatcher.error(0, pb::Status::INVALID_ARGUMENT,
                             "frame payload is not a valid Request message", *response);
  } else if (server_.draining()) {
    op = op_kind(*request);
    server_.dispatcher.error(request->id(), pb::Status::UNAVAILABLE, "server shutting down",
                             *response);
  } else {
    op = op_kind(*request);
    if (offload(*request, t0)) return;
    server_.dispatcher.dispatch(*request, txns_, *response);
  }
  if (const auto hold = txns_.take_hold()) {
    // A failed AUTHENTICATE: its answer waits on the timer, not on this thread.
    proto::append_message(held_, *response);
    held_until_ = *hold;
    worker_.metrics.record(op, response->status().code(), Clock::now() - t0);
    arm_timer();
    return;
  }
  append_response(*response);
  worker_.metrics.record(op, response->status().code(), Clock::now() - t0);
}

void Session::append_response(pb::Response& response) {
  const std::size_t at = out_pending_.size();
  proto::append_message(out_pending_, response);
  limit_response(at, response.id());
  account_output();
}

void Session::limit_response(std::size_t at, std::uint64_t id) {
  if (out_pending_.size() - at - proto::kFrameHeaderBytes > server_.config.max_frame_bytes) {
    // Never send a frame the client may not accept: replace it with an error.
    out_pending_.resize(at);
    pb::Response response;
    server_.dispatcher.error(id, pb::Status::RESOURCE_EXHAUSTED,
                             "response would exceed --max-frame-bytes", response);
    proto::append_message(out_pending_, response);
  }
}

// Durable writes (docs/PERSISTENCE.md, "Group commit across connections"). With commit
// threads, a request that may write runs on one of them: it blocks there, not here, while
// the log makes it durable, so this worker serves its other connections meanwhile and their
// commits join the same fsync. The session stops processing its own frames until the answer
// is back (in_flight_), so its answers stay in request order and its later requests see the
// write. Everything the commit thread touches is its own copy of the request, its own
// response, and txns_, which this thread leaves alone while in_flight_ (the posts to and
// from the pool order the accesses).
bool Session::offload(const pb::Request& request, Clock::time_point t0) {
  asio::thread_pool* pool = server_.commit_pool();
  if (pool == nullptr) return false;
  switch (request.op_case()) {
    case pb::Request::kPut:
    case pb::Request::kDel:
    case pb::Request::kDeleteRange:
    case pb::Request::kTxn:
    case pb::Request::kCommit:
    case pb::Request::kLeaseGrant:   // a log record of its own
    case pb::Request::kLeaseRevoke:  // deletes the attached keys in one commit
      break;
    default:
      return false;  // reads, and requests that never wait for the log
  }
  if (request.op_case() != pb::Request::kCommit && request.op_case() != pb::Request::kTxn) {
    // A write inside an interactive transaction is only buffered: no log wait to avoid.
    const std::uint64_t txn_id = request.op_case() == pb::Request::kPut   ? request.put().txn_id()
                                 : request.op_case() == pb::Request::kDel ? request.del().txn_id()
                                                                          : 0;
    if (txn_id != 0) return false;
  }
  auto copy = std::make_shared<pb::Request>(request);  // the arena is reset after this batch
  const OpKind op = op_kind(request);
  in_flight_ = true;
  asio::post(*pool, [self = shared_from_this(), copy, op, t0] {
    auto response = std::make_unique<pb::Response>();
    self->server_.dispatcher.dispatch(*copy, self->txns_, *response);
    Worker& worker = self->worker_;
    asio::post(worker.ctx, [self = std::move(self), response = std::move(response), op,
                            t0]() mutable { self->on_committed(std::move(response), op, t0); });
  });
  return true;
}

void Session::on_committed(std::unique_ptr<pb::Response> response, OpKind op,
                           Clock::time_point t0) {
  in_flight_ = false;
  worker_.metrics.record(op, response->status().code(), Clock::now() - t0);
  if (closed_) {
    txns_.clear();  // close() left them to this thread's turn (see close())
    return;
  }
  append_response(*response);
  frame_deadline_ = Clock::time_point::max();  // the wait was ours: the clock restarts
  want_turn();  // the frames behind it; flushes, and reads again when done
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

void Session::flush() {
  if (closed_ || writing_ || handshaking_ || out_pending_.empty()) return;
  out_writing_.swap(out_pending_);  // out_pending_ takes the (empty) spent buffer
  writing_ = true;
  async_write(asio::buffer(out_writing_),
              [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                self->on_write(ec, n);
              });
}

void Session::on_write(const std::error_code& ec, std::size_t n) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    if (!quiet_error(ec)) spdlog::debug("connection {}: write failed: {}", peer_, ec.message());
    close();
    return;
  }
  worker_.metrics.add_bytes_out(n);
  last_activity_ = Clock::now();
  out_writing_.clear();
  if (out_writing_.capacity() > kKeepOutputCapacity) std::string().swap(out_writing_);
  account_output();
  pump_watches();  // the client read: room for more pushes
  if (!out_pending_.empty()) {
    flush();
  } else if (close_after_write_) {
    begin_linger();
    return;
  }
  if (read_paused_ && backlog() < server_.config.max_output_bytes &&
      (backlog() == 0 || !server_.output_budget_spent())) {
    read_paused_ = false;
    frame_deadline_ = Clock::time_point::max();  // the pause was ours: the clock restarts
    want_turn();  // frames may be waiting in the buffer already; reads again when done
  }
}

// ---------------------------------------------------------------------------------------
// Closing, timers
// ---------------------------------------------------------------------------------------

void Session::begin_linger() {
  if (closed_ || lingering_) return;
  lingering_ = true;
  std::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  linger_deadline_ = Clock::now() + kLingerTime;
  arm_timer();
  do_discard();  // a read already in flight continues as a discarding read (on_read)
}

void Session::do_discard() {
  if (closed_ || reading_) return;
  if (!discard_) discard_ = std::make_unique<char[]>(kDiscardBytes);
  reading_ = true;
  async_read_some(asio::buffer(discard_.get(), kDiscardBytes),
                  [self = shared_from_this()](const std::error_code& ec, std::size_t n) {
                    self->on_read(ec, n);
                  });
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  // Aborts this connection's transactions now; with a request on a commit thread, when it
  // is back (on_committed): txns_ is that thread's until then.
  if (!in_flight_) txns_.clear();
  watches_->clear();  // cancels this connection's watches
  sync_watch_registration();
  worker_.scheduler.remove(*this);
  release_buffers();
  if (registered_) {
    worker_.sessions.erase(this);
    registered_ = false;
  }
  spdlog::debug("connection {} closed", peer_);
  server_.session_closed(counted_);
}

void Session::arm_timer() {
  if (closed_) return;
  Clock::time_point at = linger_deadline_;
  const auto idle = server_.config.idle_timeout;
  if (!lingering_) {
    // Not while rate-paused: the pause is ours, and the idle clock restarts when it ends.
    if (idle.count() > 0 && !rate_paused_) at = std::min(at, last_activity_ + idle);
    if (!read_paused_ && !in_flight_) at = std::min(at, frame_deadline_);
    if (input_waiting_) at = std::min(at, input_retry_at_);
    if (!held_.empty()) at = std::min(at, held_until_);
    if (rate_paused_) at = std::min(at, rate_resume_at_);
  }
  if (at == Clock::time_point::max()) return;
  timer_at_ = at;
  timer_.expires_at(at);
  timer_.async_wait([self = shared_from_this()](const std::error_code& ec) { self->on_timer(ec); });
}

void Session::on_timer(const std::error_code& ec) {
  if (ec == asio::error::operation_aborted || closed_) return;
  timer_at_ = Clock::time_point::max();
  const auto now = Clock::now();
  if (handshaking_) {
    if (now >= frame_deadline_) {
      // Connected but never handshook (or too slowly): free the slot.
      server_.counters.tls_handshakes_timed_out.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("connection {}: no TLS handshake within {} ms; closing", peer_,
                    server_.config.tls_handshake_timeout().count());
      close();
      return;
    }
    arm_timer();
    return;
  }
  if (lingering_) {
    if (now >= linger_deadline_) {
      close();
      return;
    }
  } else if (!held_.empty() && now >= held_until_) {
    release_held();
  } else if (rate_paused_ && now >= rate_resume_at_) {
    resume_after_rate();
  } else if (!read_paused_ && !rate_paused_ && !in_flight_ && now >= frame_deadline_) {
    server_.counters.frames_timed_out.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("connection {}: frame incomplete after {} ms ({} bytes buffered); closing", peer_,
                  server_.config.frame_timeout.count(), reader_.buffered());
    input_waiting_ = false;
    notice(pb::Status::UNAVAILABLE, "frame not completed within --frame-timeout (" +
                                        std::to_string(server_.config.frame_timeout.count()) +
                                        " ms); closing");
    close_after_flush();
    return;
  } else if (input_waiting_ && now >= input_retry_at_) {
    input_waiting_ = false;
    input_retry_at_ = Clock::time_point::max();
    do_read();  // waits again (and re-arms) if the budget is still spent
  } else if (server_.config.idle_timeout.count() > 0 &&
             now - last_activity_ >= server_.config.idle_timeout && !writing_ &&
             watches_->size() > 0) {
    last_activity_ = now;  // holds watches, no write stuck: waiting for events, not idle
  } else if (!rate_paused_ && server_.config.idle_timeout.count() > 0 &&
             now - last_activity_ >= server_.config.idle_timeout) {
    server_.counters.connections_idle_closed.fetch_add(1, std::memory_order_relaxed);
    if (writing_) {
      // Nothing read or written for the whole period: the client stopped reading. Its
      // output cannot be delivered, so there is no notice to send.
      spdlog::debug("connection {}: no write progress for {} ms; closing", peer_,
                    server_.config.idle_timeout.count());
      close();
      return;
    }
    spdlog::debug("connection {}: idle for {} ms; closing", peer_,
                  server_.config.idle_timeout.count());
    notice(pb::Status::UNAVAILABLE, "idle timeout");
    close_after_flush();
    return;
  }
  arm_timer();
}

}  // namespace kv::server::detail
