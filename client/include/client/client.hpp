// Kovan KV C++ client.
//
//   auto c = kv::client::Client::connect("127.0.0.1:7379");
//   if (!c.ok()) { /* c.status().to_string() */ }
//   kv::client::Client& client = *c.value();
//   (void)client.put("k", "v");
//   auto got = client.get("k");            // got.value().value == "v"
//   auto r = client.transact([](kv::client::Transaction& t) -> kv::client::Status {
//     auto v = t.get("counter");
//     if (!v.ok() && !v.status().is_not_found()) return v.status();
//     return t.put("counter", std::to_string((v.ok() ? std::stoll(v->value) : 0) + 1));
//   });
//
// Connection model. A Client owns one TCP connection and one I/O thread that reads its
// responses. Every call -- synchronous or asynchronous, from any thread -- is pipelined on
// that connection: requests are written in the order they are submitted (concurrent
// submitters combine their frames into one write) and the I/O thread pairs each response
// with the oldest outstanding request (docs/PROTOCOL.md, section 2). A Client is therefore
// safe for concurrent use without external synchronization, and many threads sharing one
// Client share one connection rather than taking turns on it. Callers that want
// independent connections (for example to spread load over the server's worker threads)
// create several Clients.
//
// Watches (Client::watch, docs/CLIENT.md "Watch and leases") share that connection: the
// server's WatchEvents pushes (Response id 0) come between the answers; the I/O thread
// hands each push to its watch by watch id and goes on pairing answers with requests in
// order.
//
// Failures. A lost connection (the server closed it, a read or write failed, or requests
// were outstanding and nothing arrived for `request_timeout`) fails every call in flight
// on it with UNAVAILABLE; writes among them report Status::outcome_unknown(). The next
// call opens a new connection. The client never resends a request by itself; only
// transact() re-runs a transaction, and only when the failed attempt certainly did not
// commit (see TransactOptions).
//
// Transactions belong to the connection that began them (the server aborts them when it
// closes): after a reconnect, a Transaction begun before it fails with UNAVAILABLE.
//
// Asynchronous calls (the *_async members) return as soon as the request is queued;
// their callback runs exactly once with the result: on the I/O thread, or on the calling
// thread before the call returns when no connection could be had (UNAVAILABLE, the request
// was not sent). Callbacks still pending when the Client is destroyed run (with
// UNAVAILABLE) during its destructor and must not use the Client. A callback must
// not block and must not throw; it may submit further asynchronous calls but must not make
// synchronous ones (those return INVALID_ARGUMENT on the I/O thread, since they would wait
// for a response that only this thread can read). as_future() turns any of them into a
// std::future.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "client/status.hpp"
#include "client/types.hpp"

namespace kv::client {

namespace detail {
class Connection;
class WatchState;
class StreamQueue;
}  // namespace detail

struct ClientOptions {
  // Upper bound on opening a TCP connection (name resolution excluded).
  std::chrono::milliseconds connect_timeout{3000};
  // While requests are outstanding, the longest the server may stay silent before the
  // connection is declared lost (every call in flight then fails with UNAVAILABLE). Also
  // bounds each blocking socket write. Zero disables it.
  std::chrono::milliseconds request_timeout{10000};
  bool tcp_nodelay = true;
  // The server's --max-frame-bytes: the largest response frame accepted, and the largest
  // request frame sent (a larger request fails with RESOURCE_EXHAUSTED, not applied,
  // without being sent, so the server does not close the connection over it).
  std::uint32_t max_frame_bytes = 4u << 20;

  // TLS (docs/CLIENT.md, "TLS"). Also turned on by a "kovans://host:port" address. TLS 1.2
  // or later; the server's certificate chain is always verified, against tls_ca_file (PEM)
  // or, when it is empty, the system's trust store.
  bool tls = false;
  std::string tls_ca_file;
  // A client certificate and its key (PEM), for servers that ask for one (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server's certificate must carry (DNS name or IP address in its subject
  // alternative names), also sent as SNI when it is a name; empty: the address's host.
  std::string tls_server_name;
  // Check that the certificate names tls_server_name (or the host). Turning it off still
  // verifies the chain: any certificate from the CA is then accepted.
  bool tls_verify_hostname = true;
  // Authentication (docs/SECURITY.md): when `user` is set, every connection the client
  // opens sends AUTHENTICATE first (pipelined ahead of the first request after a
  // reconnect). connect() fails with the server's answer (UNAUTHENTICATED, ...) when it is
  // refused. Take the password from a file or the environment (password_from_env_or_file),
  // never from a command-line argument alone.
  std::string user;
  std::string password;
};

// The password for ClientOptions::password: the first line of `file` when it is not
// empty, otherwise the environment variable `env` (default KOVAN_PASSWORD). An error when
// the file cannot be read, or when neither gives a password.
[[nodiscard]] Result<std::string> password_from_env_or_file(const std::string& file,
                                                            const char* env = "KOVAN_PASSWORD");

template <class T>
using Callback = std::function<void(Result<T>)>;

// Result type of calls that return nothing but a status.
struct Done {};

// Adapts an asynchronous call to a future:
//   auto f = as_future<KeyValue>([&](Callback<KeyValue> cb) { client.get_async("k", cb); });
template <class T, class Submit>
[[nodiscard]] std::future<Result<T>> as_future(Submit&& submit) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  std::future<Result<T>> future = promise->get_future();
  submit(Callback<T>([promise](Result<T> r) { promise->set_value(std::move(r)); }));
  return future;
}

// An interactive transaction (docs/PROTOCOL.md 3.9). Obtained from Client::begin. Reads see
// the transaction's snapshot plus its own writes; writes are buffered by the server until
// commit(). Destroying an open transaction aborts it (without waiting for the answer).
//
// Thread safety: a Transaction is used by one thread at a time. It keeps its connection
// alive; it does not need its Client to stay alive.
class Transaction {
 public:
  Transaction() = default;
  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  // NOT_FOUND when the key has no value visible to the transaction.
  [[nodiscard]] Result<KeyValue> get(std::string_view key);
  [[nodiscard]] Status put(std::string_view key, std::string_view value);
  [[nodiscard]] Status del(std::string_view key);
  [[nodiscard]] Result<ScanResult> scan(const Range& range, const ScanOptions& options = {});

  // The commit revision. CONFLICT / TXN_EXPIRED: nothing was applied. UNAVAILABLE with
  // outcome_unknown(): the connection was lost after the commit was sent.
  [[nodiscard]] Result<std::uint64_t> commit();
  // As commit(), answered through `done` on the I/O thread.
  void commit_async(Callback<std::uint64_t> done);
  [[nodiscard]] Status abort();

  // False after commit/abort (whatever their outcome), after the server reported the
  // transaction expired or unknown, and after its connection was lost.
  [[nodiscard]] bool open() const noexcept { return open_; }
  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
  [[nodiscard]] std::uint64_t snapshot_revision() const noexcept { return snapshot_; }
  [[nodiscard]] Isolation isolation() const noexcept { return isolation_; }

 private:
  friend class Client;
  Transaction(std::shared_ptr<detail::Connection> conn, std::uint64_t id, std::uint64_t snapshot,
              Isolation isolation);
  Status check_open() const;
  void note(const Status& s);

  std::shared_ptr<detail::Connection> conn_;
  std::uint64_t id_ = 0;
  std::uint64_t snapshot_ = 0;
  Isolation isolation_ = Isolation::kSerializable;
  bool open_ = false;
};

// A watch (docs/CLIENT.md "Watch"), from Client::watch: its callback receives one
// WatchBatch per revision, in revision order, on the client's I/O thread (the rules of
// asynchronous callbacks apply: do not block, make no synchronous call). The last batch
// has `canceled` set (the server ended the watch, or the connection was lost); none
// follows it. Destroying the Watch cancels it.
//
// Thread safety: cancel() may be called from any thread, the callback included. It keeps
// its connection alive; it does not need its Client to stay alive.
class Watch {
 public:
  explicit Watch(std::shared_ptr<detail::WatchState> state);
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  ~Watch();

  [[nodiscard]] std::uint64_t id() const noexcept;
  // Every event of the watch has mod_revision >= this.
  [[nodiscard]] std::uint64_t start_revision() const noexcept;
  // False once the final batch was delivered or cancel() was called.
  [[nodiscard]] bool active() const;
  // The first revision not delivered yet (where a new watch would resume).
  [[nodiscard]] std::uint64_t resume_revision() const;
  // Ends the watch: once it returns, the callback is not running and never runs again
  // (called from the callback itself: after that callback returns). Sends CANCEL_WATCH
  // (waiting for its answer unless called on the I/O thread); a watch that had already
  // ended is not an error.
  Status cancel();

 private:
  std::shared_ptr<detail::WatchState> state_;
};

// A watch read by pulling (Client::watch_stream): next() returns the batches in revision
// order. Up to `max_buffered` batches wait for the reader; a reader that falls further
// behind loses the watch: it is canceled and its final batch says RESOURCE_EXHAUSTED with
// the resume revision (so a stalled reader never makes the client's memory grow without
// bound). Thread safety: one reader at a time; cancel() from any thread.
class WatchStream {
 public:
  WatchStream(std::shared_ptr<detail::WatchState> state,
              std::shared_ptr<detail::StreamQueue> queue);
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;
  ~WatchStream();

  [[nodiscard]] std::uint64_t id() const noexcept;
  [[nodiscard]] std::uint64_t start_revision() const noexcept;
  // The next batch, waiting up to `timeout`. nullopt on timeout, after cancel(), and once
  // the final batch (canceled set) has been returned.
  [[nodiscard]] std::optional<WatchBatch> next(
      std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  // The final batch has been returned, or cancel() was called.
  [[nodiscard]] bool ended() const;
  Status cancel();

 private:
  std::shared_ptr<detail::WatchState> state_;
  std::shared_ptr<detail::StreamQueue> queue_;
};

class Client;

// Keeps a lease alive from a background thread (docs/CLIENT.md "Leases"): sends
// LEASE_KEEPALIVE about every ttl/3 (the TTL of the latest answer), and after a failed
// attempt (connection lost) retries every half second. It reports the lease lost -- and
// stops -- when the server says LEASE_NOT_FOUND, or when no renewal succeeded for a whole
// TTL (the server has then expired it). `on_lost` runs once, on the helper's thread.
// Destroying the helper stops the renewals (it does not revoke the lease). `client` must
// outlive the helper.
class LeaseKeepAlive {
 public:
  LeaseKeepAlive(Client& client, std::uint64_t lease_id, std::int64_t ttl_seconds,
                 std::function<void(const Status&)> on_lost = {});
  LeaseKeepAlive(const LeaseKeepAlive&) = delete;
  LeaseKeepAlive& operator=(const LeaseKeepAlive&) = delete;
  ~LeaseKeepAlive();

  [[nodiscard]] std::uint64_t lease_id() const noexcept { return id_; }
  // False once the lease is known (or presumed) lost.
  [[nodiscard]] bool alive() const;
  // Why the lease was lost (OK while alive).
  [[nodiscard]] Status lost_reason() const;
  [[nodiscard]] std::uint64_t renewals() const;
  // Waits until the lease is lost (and on_lost has returned) or `timeout` passes; true
  // when lost.
  [[nodiscard]] bool wait_lost(std::chrono::milliseconds timeout) const;

 private:
  void run();

  Client& client_;
  const std::uint64_t id_;
  std::int64_t ttl_;
  std::function<void(const Status&)> on_lost_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stop_ = false;           // guarded by mu_
  bool lost_ = false;           // guarded by mu_
  bool reported_ = false;       // guarded by mu_: lost_, and on_lost has returned
  Status reason_;               // guarded by mu_
  std::uint64_t renewals_ = 0;  // guarded by mu_
  std::thread thread_;
};

struct TransactOptions {
  std::uint32_t max_attempts = 10;
  Isolation isolation = Isolation::kSerializable;
  // Exponential backoff between attempts, each wait drawn uniformly from
  // [backoff/2, backoff]; backoff doubles from `initial_backoff` up to `max_backoff`.
  std::chrono::microseconds initial_backoff{2000};
  std::chrono::microseconds max_backoff{200000};
  // Also re-run after UNAVAILABLE when the attempt certainly did not commit (the connection
  // failed before the commit was sent). A commit whose outcome is unknown is never re-run.
  bool retry_unavailable = true;
};

struct TransactResult {
  Status status;               // OK, or the last attempt's failure
  std::uint64_t revision = 0;  // commit revision when OK
  std::uint32_t attempts = 0;  // attempts made (1 when the first one committed)
  [[nodiscard]] bool ok() const noexcept { return status.ok(); }
};

class Client {
 public:
  // Opens a connection to "host:port" (host may be a name or an IPv4/IPv6 literal; IPv6 in
  // brackets: "[::1]:7379"). The address may carry a scheme: "kovan://host:port" (plain
  // TCP, or TLS when options.tls is set) or "kovans://host:port" (TLS).
  [[nodiscard]] static Result<std::unique_ptr<Client>> connect(std::string_view address,
                                                               ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  [[nodiscard]] const std::string& address() const noexcept;

  // --- Synchronous one-shot operations (each its own atomic operation) -----------------
  [[nodiscard]] Result<std::string> ping(std::string_view payload = {});
  // NOT_FOUND when the key has no live value.
  [[nodiscard]] Result<KeyValue> get(std::string_view key);
  [[nodiscard]] Result<PutResult> put(std::string_view key, std::string_view value,
                                      bool prev_kv = false);
  // put with a lease (PutOptions::lease) or a new one-key lease (PutOptions::ttl_seconds).
  [[nodiscard]] Result<PutResult> put(std::string_view key, std::string_view value,
                                      const PutOptions& options);
  // Deleting a missing key is OK with deleted == 0.
  [[nodiscard]] Result<DeleteResult> del(std::string_view key, bool prev_kv = false);
  [[nodiscard]] Result<DeleteRangeResult> delete_range(const Range& range, bool prev_kv = false);
  [[nodiscard]] Result<ScanResult> scan(const Range& range, const ScanOptions& options = {});
  // Conditional transaction: compares, then the success or the failure branch, atomically.
  [[nodiscard]] Result<TxnResult> txn(const TxnRequest& request);
  [[nodiscard]] Result<Stats> stats();
  // Demonstration only (the server must run with --enable-fault-injection): parks the
  // server thread serving this connection for `stall_ms`.
  [[nodiscard]] Status fault(std::uint32_t stall_ms);
  // Durable servers (--data-dir) only: writes a checkpoint now and returns its revision
  // (INVALID_ARGUMENT from a server without --data-dir). Takes as long as the checkpoint.
  [[nodiscard]] Result<std::uint64_t> checkpoint();
  // Streams a consistent image of the store (the input of `kovan-server --restore`) to
  // `sink`, chunk by chunk in order (docs/PROTOCOL.md 3.13). OK only when the image is
  // complete and its size and CRC-32C match what the server announced; on any failure the
  // bytes already given to `sink` must be discarded. `sink` returning false stops the
  // transfer (INVALID_ARGUMENT "stopped by the sink"). A lost connection fails the save
  // (UNAVAILABLE); start again.
  [[nodiscard]] Result<SnapshotInfo> save_snapshot(
      const std::function<bool(std::string_view chunk)>& sink);

  // --- Watch (docs/CLIENT.md "Watch") ------------------------------------------------
  // Creates a watch on the current connection and returns once the server accepted it
  // (COMPACTED when options.start_revision is older than the server keeps:
  // status().compact_revision() is the oldest revision a watch can start from). `on_batch` then
  // receives every revision's events (see Watch). Many watches share the connection with
  // ordinary calls, whose answers keep their request order.
  [[nodiscard]] Result<std::unique_ptr<Watch>> watch(
      const WatchKeys& keys, const WatchOptions& options,
      std::function<void(const WatchBatch&)> on_batch);
  // The same, read by pulling (see WatchStream).
  [[nodiscard]] Result<std::unique_ptr<WatchStream>> watch_stream(const WatchKeys& keys,
                                                                  const WatchOptions& options = {},
                                                                  std::size_t max_buffered = 65536);

  // --- Leases (docs/CLIENT.md "Leases") ------------------------------------------------
  // Grants a lease of `ttl_seconds` (>= 1); `id` 0 lets the server choose the id.
  [[nodiscard]] Result<LeaseGrant> lease_grant(std::int64_t ttl_seconds, std::uint64_t id = 0);
  // Revokes the lease and deletes its keys in one transaction. LEASE_NOT_FOUND when it is
  // not alive.
  [[nodiscard]] Result<LeaseRevokeResult> lease_revoke(std::uint64_t id);
  // Renews the lease once (for a background helper, see LeaseKeepAlive).
  [[nodiscard]] Result<LeaseGrant> lease_keepalive(std::uint64_t id);
  [[nodiscard]] Result<LeaseInfo> lease_time_to_live(std::uint64_t id, bool keys = false);

  // --- Interactive transactions --------------------------------------------------------
  [[nodiscard]] Result<Transaction> begin(Isolation isolation = Isolation::kSerializable);
  // Runs fn in a fresh transaction and commits it (unless fn already committed or aborted
  // it), re-running everything after CONFLICT or TXN_EXPIRED (and see
  // TransactOptions::retry_unavailable) with jittered exponential backoff, at most
  // max_attempts times. A non-OK status from fn aborts the attempt and, unless it is one
  // of those retryable codes, is returned. fn may run several times: it must not have
  // effects outside the transaction that cannot be repeated.
  [[nodiscard]] TransactResult transact(const std::function<Status(Transaction&)>& fn,
                                        const TransactOptions& options = {});

  // --- Asynchronous, pipelined operations (see the file comment) -----------------------
  void ping_async(std::string payload, Callback<std::string> done);
  void get_async(std::string key, Callback<KeyValue> done);
  void put_async(std::string key, std::string value, Callback<PutResult> done);
  void del_async(std::string key, Callback<DeleteResult> done);
  void delete_range_async(Range range, Callback<DeleteRangeResult> done);
  void scan_async(Range range, ScanOptions options, Callback<ScanResult> done);
  void txn_async(TxnRequest request, Callback<TxnResult> done);
  void stats_async(Callback<Stats> done);
  void fault_async(std::uint32_t stall_ms, Callback<Done> done);

  // Requests sent on the current connection whose responses have not arrived yet.
  [[nodiscard]] std::size_t in_flight() const;
  // Connections opened so far (1 after connect; grows with each reconnect).
  [[nodiscard]] std::uint64_t connections_opened() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;

 public:
  // Used by connect() (Impl is private, so no one else can call it).
  explicit Client(std::unique_ptr<Impl> impl);
};

}  // namespace kv::client
