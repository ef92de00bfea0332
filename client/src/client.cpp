#include "client/client.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "connection.hpp"
#include "convert.hpp"
#include "proto/crc32c.hpp"
#include "watch.hpp"

namespace kv::client {

namespace {

using detail::Connection;
namespace pb = detail::pb;

template <class T>
using Decoder = Result<T> (*)(const pb::Response&);

// Submits `request` and completes `done` with the decoded result (on the I/O thread), or
// with the transport failure.
template <class T>
void submit_async(Connection& conn, pb::Request& request, bool mutating, Decoder<T> decode,
                  Callback<T> done) {
  conn.submit(request, mutating,
              [decode, done = std::move(done)](Status transport, pb::Response* response) {
                if (response == nullptr) {
                  done(Result<T>(std::move(transport)));
                } else {
                  done(decode(*response));
                }
              });
}

// Blocks until the response to `request` arrives (or the connection fails).
template <class T>
Result<T> submit_sync(Connection& conn, pb::Request& request, bool mutating, Decoder<T> decode) {
  if (detail::on_io_thread()) {
    return Status(Code::kInvalidArgument,
                  "blocking client call from a completion callback (use the *_async calls)");
  }
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Result<T> result;
  } wait;
  submit_async<T>(conn, request, mutating, decode, [&wait](Result<T> r) {
    std::lock_guard lock(wait.mu);
    wait.result = std::move(r);
    wait.done = true;
    wait.cv.notify_one();
  });
  std::unique_lock lock(wait.mu);
  wait.cv.wait(lock, [&wait] { return wait.done; });
  return std::move(wait.result);
}

Result<Done> decode_ack_authenticate(const pb::Response& r) {
  Status s = detail::decode_empty(r, pb::Response::kAuthenticate);
  if (!s.ok()) return s;
  return Done{};
}

Result<Done> decode_ack_fault(const pb::Response& r) {
  Status s = detail::decode_empty(r, pb::Response::kFault);
  if (!s.ok()) return s;
  return Done{};
}

Result<Done> decode_ack_put(const pb::Response& r) {
  Status s = detail::decode_empty(r, pb::Response::kPut);
  if (!s.ok()) return s;
  return Done{};
}

Result<Done> decode_ack_del(const pb::Response& r) {
  Status s = detail::decode_empty(r, pb::Response::kDel);
  if (!s.ok()) return s;
  return Done{};
}

Result<Done> decode_ack_abort(const pb::Response& r) {
  Status s = detail::decode_empty(r, pb::Response::kAbort);
  if (!s.ok()) return s;
  return Done{};
}

// The jittered backoff of transact(): uniform in [b/2, b].
std::chrono::microseconds jittered(std::chrono::microseconds b) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto half = b.count() / 2;
  std::uniform_int_distribution<std::int64_t> dist(half, std::max<std::int64_t>(half, b.count()));
  return std::chrono::microseconds(dist(rng));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

struct Client::Impl {
  std::string address;
  detail::Endpoint endpoint;
  ClientOptions options;
  mutable std::mutex mu;
  std::shared_ptr<Connection> conn;  // guarded by mu
  std::atomic<std::uint64_t> opened{0};

  // The current connection, opening a new one when there is none or it is no longer
  // usable. Serializes reconnects (one connect at a time).
  // `first`: Client::connect's call, which waits for the AUTHENTICATE answer and fails with
  // it; reconnects pipeline it ahead of the request that needed the connection.
  Result<std::shared_ptr<Connection>> connection(bool first = false) {
    std::shared_ptr<Connection> old;  // released after the lock: its destructor joins its
                                      // I/O thread, whose callbacks may call connection()
    std::lock_guard lock(mu);
    if (conn && conn->usable()) return conn;
    auto fresh = Connection::open(endpoint, options);
    if (!fresh.ok()) return fresh.status();
    if (!options.user.empty()) {
      pb::Request a;
      a.mutable_authenticate()->set_user(options.user);
      a.mutable_authenticate()->set_password(options.password);
      if (first) {
        auto r = submit_sync<Done>(*fresh.value(), a, false, decode_ack_authenticate);
        if (!r.ok()) return r.status();
      } else {
        // A refusal shows as UNAUTHENTICATED on the requests behind it.
        fresh.value()->submit(a, false, [](Status, pb::Response*) {});
      }
    }
    old = std::exchange(conn, std::move(fresh).value());
    opened.fetch_add(1, std::memory_order_relaxed);
    return conn;
  }

  template <class T>
  Result<T> call(pb::Request& request, bool mutating, Decoder<T> decode) {
    auto c = connection();
    if (!c.ok()) return c.status();
    return submit_sync<T>(*c.value(), request, mutating, decode);
  }

  template <class T>
  void call_async(pb::Request& request, bool mutating, Decoder<T> decode, Callback<T> done) {
    auto c = connection();
    if (!c.ok()) {
      done(Result<T>(c.status()));
      return;
    }
    submit_async<T>(*c.value(), request, mutating, decode, std::move(done));
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::connect(std::string_view address, ClientOptions options) {
  if (detail::strip_scheme(address)) options.tls = true;  // kovans://
  auto ep = detail::parse_address(address);
  if (!ep.ok()) return ep.status();
  auto impl = std::make_unique<Impl>();
  impl->address = std::string(address);
  impl->endpoint = std::move(ep).value();
  impl->options = options;
  auto c = impl->connection(true);
  if (!c.ok()) return c.status();
  return std::make_unique<Client>(std::move(impl));
}

Result<std::string> password_from_env_or_file(const std::string& file, const char* env) {
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return Status(Code::kInvalidArgument, "cannot read the password file " + file);
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty())
      return Status(Code::kInvalidArgument, "the password file " + file + " is empty");
    return line;
  }
  const char* value = env != nullptr ? std::getenv(env) : nullptr;
  if (value == nullptr || *value == '\0') {
    return Status(Code::kInvalidArgument, std::string("no password: give a password file or set ") +
                                              (env != nullptr ? env : "the environment variable"));
  }
  return std::string(value);
}

const std::string& Client::address() const noexcept { return impl_->address; }

std::size_t Client::in_flight() const {
  std::lock_guard lock(impl_->mu);
  return impl_->conn ? impl_->conn->in_flight() : 0;
}

std::uint64_t Client::connections_opened() const noexcept {
  return impl_->opened.load(std::memory_order_relaxed);
}

Result<std::string> Client::ping(std::string_view payload) {
  pb::Request r;
  detail::encode_ping(r, payload);
  return impl_->call<std::string>(r, false, detail::decode_ping);
}

Result<KeyValue> Client::get(std::string_view key) {
  pb::Request r;
  detail::encode_get(r, key, 0);
  return impl_->call<KeyValue>(r, false, detail::decode_get);
}

Result<PutResult> Client::put(std::string_view key, std::string_view value, bool prev_kv) {
  pb::Request r;
  detail::encode_put(r, key, value, prev_kv, 0);
  return impl_->call<PutResult>(r, true, detail::decode_put);
}

Result<DeleteResult> Client::del(std::string_view key, bool prev_kv) {
  pb::Request r;
  detail::encode_del(r, key, prev_kv, 0);
  return impl_->call<DeleteResult>(r, true, detail::decode_del);
}

Result<DeleteRangeResult> Client::delete_range(const Range& range, bool prev_kv) {
  pb::Request r;
  detail::encode_delete_range(r, range, prev_kv);
  return impl_->call<DeleteRangeResult>(r, true, detail::decode_delete_range);
}

Result<ScanResult> Client::scan(const Range& range, const ScanOptions& options) {
  pb::Request r;
  detail::encode_scan(r, range, options, 0);
  return impl_->call<ScanResult>(r, false, detail::decode_scan);
}

Result<TxnResult> Client::txn(const TxnRequest& request) {
  pb::Request r;
  detail::encode_txn(r, request);
  return impl_->call<TxnResult>(r, true, detail::decode_txn);
}

Result<Stats> Client::stats() {
  pb::Request r;
  detail::encode_stats(r);
  return impl_->call<Stats>(r, false, detail::decode_stats);
}

Result<std::uint64_t> Client::checkpoint() {
  pb::Request r;
  detail::encode_checkpoint(r);
  return impl_->call<std::uint64_t>(r, false, detail::decode_checkpoint);
}

Result<SnapshotInfo> Client::save_snapshot(const std::function<bool(std::string_view)>& sink) {
  // Every chunk must come over one connection (a stream belongs to its connection).
  auto c = impl_->connection();
  if (!c.ok()) return c.status();
  std::shared_ptr<detail::Connection> conn = c.value();
  std::uint64_t stream = 0;
  std::uint64_t received = 0;
  std::uint32_t crc = 0;
  for (;;) {
    pb::Request r;
    detail::encode_snapshot(r, stream, received);
    auto chunk = submit_sync<detail::SnapshotChunk>(*conn, r, false, detail::decode_snapshot);
    if (!chunk.ok()) return chunk.status();
    detail::SnapshotChunk& k = chunk.value();
    if ((stream != 0 && k.stream_id != stream) || k.offset != received) {
      return Status(Code::kInternal,
                    "protocol error: snapshot chunk for stream " + std::to_string(k.stream_id) +
                        " at offset " + std::to_string(k.offset) + ", expected stream " +
                        std::to_string(stream) + " at offset " + std::to_string(received));
    }
    stream = k.stream_id;
    if (!k.data.empty()) {
      crc = proto::crc32c_extend(crc, k.data);
      received += k.data.size();
      if (!sink(k.data)) return Status(Code::kInvalidArgument, "snapshot stopped by the sink");
    }
    if (k.done) {
      if (k.total_bytes != received || k.crc32c != crc) {
        return Status(Code::kInternal, "snapshot image damaged in transit: received " +
                                           std::to_string(received) + " bytes with CRC-32C " +
                                           std::to_string(crc) + ", the server sent " +
                                           std::to_string(k.total_bytes) + " bytes with CRC-32C " +
                                           std::to_string(k.crc32c));
      }
      return SnapshotInfo{k.revision, received, crc};
    }
  }
}

Result<PutResult> Client::put(std::string_view key, std::string_view value,
                              const PutOptions& options) {
  pb::Request r;
  detail::encode_put(r, key, value, options);
  return impl_->call<PutResult>(r, true, detail::decode_put);
}

Result<std::unique_ptr<Watch>> Client::watch(const WatchKeys& keys, const WatchOptions& options,
                                             std::function<void(const WatchBatch&)> on_batch) {
  if (detail::on_io_thread()) {
    return Status(Code::kInvalidArgument,
                  "blocking client call from a completion callback (watch)");
  }
  auto c = impl_->connection();
  if (!c.ok()) return c.status();
  auto state = std::make_shared<detail::WatchState>(std::move(c).value(), std::move(on_batch));
  if (Status s = detail::open_watch(state, keys, options); !s.ok()) return s;
  return std::make_unique<Watch>(std::move(state));
}

Result<std::unique_ptr<WatchStream>> Client::watch_stream(const WatchKeys& keys,
                                                          const WatchOptions& options,
                                                          std::size_t max_buffered) {
  if (detail::on_io_thread()) {
    return Status(Code::kInvalidArgument,
                  "blocking client call from a completion callback (watch)");
  }
  auto c = impl_->connection();
  if (!c.ok()) return c.status();
  return detail::open_watch_stream(std::move(c).value(), keys, options, max_buffered);
}

Result<LeaseGrant> Client::lease_grant(std::int64_t ttl_seconds, std::uint64_t id) {
  pb::Request r;
  detail::encode_lease_grant(r, ttl_seconds, id);
  return impl_->call<LeaseGrant>(r, true, detail::decode_lease_grant);
}

Result<LeaseRevokeResult> Client::lease_revoke(std::uint64_t id) {
  pb::Request r;
  detail::encode_lease_revoke(r, id);
  return impl_->call<LeaseRevokeResult>(r, true, detail::decode_lease_revoke);
}

Result<LeaseGrant> Client::lease_keepalive(std::uint64_t id) {
  pb::Request r;
  detail::encode_lease_keepalive(r, id);
  return impl_->call<LeaseGrant>(r, false, detail::decode_lease_keepalive);
}

Result<LeaseInfo> Client::lease_time_to_live(std::uint64_t id, bool keys) {
  pb::Request r;
  detail::encode_lease_time_to_live(r, id, keys);
  return impl_->call<LeaseInfo>(r, false, detail::decode_lease_time_to_live);
}

Status Client::fault(std::uint32_t stall_ms) {
  pb::Request r;
  detail::encode_fault(r, stall_ms);
  return impl_->call<Done>(r, false, decode_ack_fault).status();
}

void Client::ping_async(std::string payload, Callback<std::string> done) {
  pb::Request r;
  detail::encode_ping(r, payload);
  impl_->call_async<std::string>(r, false, detail::decode_ping, std::move(done));
}

void Client::get_async(std::string key, Callback<KeyValue> done) {
  pb::Request r;
  detail::encode_get(r, key, 0);
  impl_->call_async<KeyValue>(r, false, detail::decode_get, std::move(done));
}

void Client::put_async(std::string key, std::string value, Callback<PutResult> done) {
  pb::Request r;
  detail::encode_put(r, key, value, false, 0);
  impl_->call_async<PutResult>(r, true, detail::decode_put, std::move(done));
}

void Client::del_async(std::string key, Callback<DeleteResult> done) {
  pb::Request r;
  detail::encode_del(r, key, false, 0);
  impl_->call_async<DeleteResult>(r, true, detail::decode_del, std::move(done));
}

void Client::delete_range_async(Range range, Callback<DeleteRangeResult> done) {
  pb::Request r;
  detail::encode_delete_range(r, range, false);
  impl_->call_async<DeleteRangeResult>(r, true, detail::decode_delete_range, std::move(done));
}

void Client::scan_async(Range range, ScanOptions options, Callback<ScanResult> done) {
  pb::Request r;
  detail::encode_scan(r, range, options, 0);
  impl_->call_async<ScanResult>(r, false, detail::decode_scan, std::move(done));
}

void Client::txn_async(TxnRequest request, Callback<TxnResult> done) {
  pb::Request r;
  detail::encode_txn(r, request);
  impl_->call_async<TxnResult>(r, true, detail::decode_txn, std::move(done));
}

void Client::stats_async(Callback<Stats> done) {
  pb::Request r;
  detail::encode_stats(r);
  impl_->call_async<Stats>(r, false, detail::decode_stats, std::move(done));
}

void Client::fault_async(std::uint32_t stall_ms, Callback<Done> done) {
  pb::Request r;
  detail::encode_fault(r, stall_ms);
  impl_->call_async<Done>(r, false, decode_ack_fault, std::move(done));
}

Result<Transaction> Client::begin(Isolation isolation) {
  auto c = impl_->connection();
  if (!c.ok()) return c.status();
  pb::Request r;
  detail::encode_begin(r, isolation);
  auto b = submit_sync<std::pair<std::uint64_t, std::uint64_t>>(*c.value(), r, false,
                                                                detail::decode_begin);
  if (!b.ok()) return b.status();
  return Transaction(std::move(c).value(), b->first, b->second, isolation);
}

TransactResult Client::transact(const std::function<Status(Transaction&)>& fn,
                                const TransactOptions& options) {
  TransactResult out;
  auto backoff = options.initial_backoff;
  const std::uint32_t max_attempts = std::max<std::uint32_t>(1, options.max_attempts);
  for (std::uint32_t attempt = 1;; ++attempt) {
    out.attempts = attempt;
    Status s;
    auto t = begin(options.isolation);
    if (!t.ok()) {
      s = t.status();
    } else {
      Transaction& txn = t.value();
      s = fn(txn);
      if (s.ok() && txn.open()) {
        auto c = txn.commit();
        if (c.ok()) {
          out.status = Status();
          out.revision = c.value();
          return out;
        }
        s = c.status();
      } else if (s.ok()) {
        // fn finished the transaction itself (a commit it made succeeded, or an abort).
        out.status = Status();
        return out;
      } else if (txn.open()) {
        (void)txn.abort();
      }
    }
    const bool retry =
        s.is_retryable_txn() ||
        (options.retry_unavailable && s.code() == Code::kUnavailable && !s.outcome_unknown());
    if (!retry || attempt >= max_attempts) {
      out.status = std::move(s);
      return out;
    }
    std::this_thread::sleep_for(jittered(backoff));
    backoff = std::min(backoff * 2, options.max_backoff);
  }
}

// ---------------------------------------------------------------------------------------
// Transaction
// ---------------------------------------------------------------------------------------

Transaction::Transaction(std::shared_ptr<detail::Connection> conn, std::uint64_t id,
                         std::uint64_t snapshot, Isolation isolation)
    : conn_(std::move(conn)), id_(id), snapshot_(snapshot), isolation_(isolation), open_(true) {}

Transaction::Transaction(Transaction&& other) noexcept
    : conn_(std::move(other.conn_)),
      id_(other.id_),
      snapshot_(other.snapshot_),
      isolation_(other.isolation_),
      open_(std::exchange(other.open_, false)) {}

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    if (open_) (void)abort();
    conn_ = std::move(other.conn_);
    id_ = other.id_;
    snapshot_ = other.snapshot_;
    isolation_ = other.isolation_;
    open_ = std::exchange(other.open_, false);
  }
  return *this;
}

Transaction::~Transaction() {
  if (open_ && conn_) {
    // Fire and forget: the answer is not awaited (a destructor must not block on the
    // network). If the connection is gone, the server has aborted the transaction already.
    pb::Request r;
    detail::encode_abort(r, id_);
    conn_->submit(r, false, [](Status, pb::Response*) {});
  }
}

Status Transaction::check_open() const {
  if (!conn_) return Status(Code::kInvalidArgument, "not a transaction");
  if (!open_) return Status(Code::kInvalidArgument, "the transaction is finished");
  return Status();
}

// Closes the transaction when a status says the server no longer holds it.
void Transaction::note(const Status& s) {
  switch (s.code()) {
    case Code::kTxnExpired:
    case Code::kTxnNotFound:
    case Code::kUnavailable:
    case Code::kConflict:
      open_ = false;
      break;
    default:
      break;
  }
}

Result<KeyValue> Transaction::get(std::string_view key) {
  if (Status s = check_open(); !s.ok()) return s;
  pb::Request r;
  detail::encode_get(r, key, id_);
  auto out = submit_sync<KeyValue>(*conn_, r, false, detail::decode_get);
  note(out.status());
  return out;
}

Status Transaction::put(std::string_view key, std::string_view value) {
  if (Status s = check_open(); !s.ok()) return s;
  pb::Request r;
  detail::encode_put(r, key, value, false, id_);
  // Buffered by the server until commit: losing it changes nothing, so not "mutating".
  Status out = submit_sync<Done>(*conn_, r, false, decode_ack_put).status();
  note(out);
  return out;
}

Status Transaction::del(std::string_view key) {
  if (Status s = check_open(); !s.ok()) return s;
  pb::Request r;
  detail::encode_del(r, key, false, id_);
  Status out = submit_sync<Done>(*conn_, r, false, decode_ack_del).status();
  note(out);
  return out;
}

Result<ScanResult> Transaction::scan(const Range& range, const ScanOptions& options) {
  if (Status s = check_open(); !s.ok()) return s;
  pb::Request r;
  detail::encode_scan(r, range, options, id_);
  auto out = submit_sync<ScanResult>(*conn_, r, false, detail::decode_scan);
  note(out.status());
  return out;
}

Result<std::uint64_t> Transaction::commit() {
  if (Status s = check_open(); !s.ok()) return s;
  open_ = false;  // whatever the answer, the id is finished
  pb::Request r;
  detail::encode_commit(r, id_);
  return submit_sync<std::uint64_t>(*conn_, r, true, detail::decode_commit);
}

void Transaction::commit_async(Callback<std::uint64_t> done) {
  if (Status s = check_open(); !s.ok()) {
    done(Result<std::uint64_t>(std::move(s)));
    return;
  }
  open_ = false;
  pb::Request r;
  detail::encode_commit(r, id_);
  submit_async<std::uint64_t>(*conn_, r, true, detail::decode_commit, std::move(done));
}

Status Transaction::abort() {
  if (Status s = check_open(); !s.ok()) return s;
  open_ = false;
  pb::Request r;
  detail::encode_abort(r, id_);
  return submit_sync<Done>(*conn_, r, false, decode_ack_abort).status();
}

}  // namespace kv::client
