// One pipelined client connection: a blocking TCP socket, a FIFO of outstanding requests
// and an I/O thread that reads responses and completes requests in order.
//
// Invariants (all under Core::mu):
//   - `pending` holds one entry per request whose frame has been appended to the output,
//     in the order the frames were appended; the server answers in that order, so the
//     front entry is the one the next non-notice response belongs to.
//   - A request's frame is appended to `out` in the same critical section that pushes its
//     pending entry, so the byte order on the socket equals the FIFO order.
//   - At most one thread (`writing` == true) writes to the socket at a time; it drains
//     `out` in batches, releasing the lock while it writes.
//   - Once `broken` is set no entry is added; the I/O thread then completes every entry
//     still pending with a failure, exactly once, and exits.
//   - `queued_bytes` counts the bytes appended to the output since the connection opened
//     and `sent_bytes` those the kernel accepted (sent_bytes <= queued_bytes); each entry
//     records the offset just past its frame. An entry whose offset is above `sent_bytes`
//     when the connection fails was never completely written, so the server cannot have
//     executed it: it fails as not applied. The I/O thread waits for a writer blocked in
//     send() (woken by shutting the socket down) before it reads `sent_bytes`.
//   - After a notice (an id-0 response other than INVALID_ARGUMENT) the server executes no
//     request it has not answered before the notice, so entries still pending when the
//     connection then fails are not applied either.
//   - Watch pushes (docs/PROTOCOL.md 3.15): an id-0 response carrying `watch_events` answers
//     no request and never touches `pending`; it goes to the WatchSink registered under its
//     watch id in `watches` (dropped when none is: a push already in flight when the watch
//     was canceled). A sink is registered by the WATCH request's completion, which runs on
//     the I/O thread before the next frame is read, so no push of a new watch can arrive
//     before its sink. A push with `canceled` unregisters its sink; when the connection
//     fails, every sink still registered gets on_lost exactly once.
// Every completion runs exactly once: with the response, or with a transport failure.
//
// TLS (ClientOptions::tls): the socket is non-blocking and carries one OpenSSL session.
// OpenSSL allows one thread at a time on a session, so every SSL_read / SSL_write runs
// under Core::tls_mu (never held while waiting in poll); the writer and the I/O thread
// take turns, each waiting for readiness outside the lock. The stream offsets above count
// plaintext bytes: SSL_write reports bytes whose records the kernel accepted.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "client/client.hpp"
#include "proto/kv.pb.h"

namespace kv::client::detail {

namespace pb = ::kovan::kv::v1;

struct Endpoint {
  std::string host;
  std::string port;
};

// Removes a leading "kovan://" or "kovans://" from `address`; true for "kovans://" (TLS).
bool strip_scheme(std::string_view& address) noexcept;

// Splits "host:port" / "[v6]:port". INVALID_ARGUMENT when malformed.
[[nodiscard]] Result<Endpoint> parse_address(std::string_view address);

// `status` is OK and `response` non-null when the response arrived; otherwise `status`
// says why it never will (UNAVAILABLE, outcome_unknown for writes) and `response` is null.
using Completion = std::function<void(Status status, pb::Response* response)>;

// True on the I/O thread of any connection (where blocking calls are refused).
[[nodiscard]] bool on_io_thread() noexcept;

// Receives the WatchEvents pushes of one watch. Both members run on the I/O thread.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // One push (a revision split into fragments arrives as several pushes).
  virtual void on_push(const pb::WatchEvents& push) = 0;
  // The connection failed or was closed while the watch was registered: no push follows.
  virtual void on_lost(const Status& why) = 0;
};

class Connection {
 public:
  struct Core;
  // Only open() can make the key.
  class PassKey {
    friend class Connection;
    PassKey() = default;
  };
  Connection(PassKey key, std::shared_ptr<Core> core, std::thread thread);

  [[nodiscard]] static Result<std::shared_ptr<Connection>> open(const Endpoint& endpoint,
                                                                const ClientOptions& options);
  // Stops the I/O thread (joining it, or detaching it when called on that thread) and
  // fails the requests still outstanding with UNAVAILABLE.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Assigns the request id, queues the frame and writes it (or leaves it to the thread
  // already writing). `mutating`: the request may change the store, so its loss makes
  // the outcome unknown. When the connection is already lost, `done` runs before submit
  // returns, with UNAVAILABLE (the request was not sent); so it does, with
  // RESOURCE_EXHAUSTED, when the frame would exceed ClientOptions::max_frame_bytes.
  void submit(pb::Request& request, bool mutating, Completion done);

  // False once the connection is lost or the server announced it will close it: new work
  // should go to a new connection.
  [[nodiscard]] bool usable() const;
  [[nodiscard]] std::size_t in_flight() const;

  // Routes the pushes of `watch_id` to `sink` (see the invariants above). When the
  // connection has already failed, `sink->on_lost` runs before this returns.
  void add_watch(std::uint64_t watch_id, std::shared_ptr<WatchSink> sink);
  // Stops routing pushes to the watch's sink (later pushes for it are dropped).
  void remove_watch(std::uint64_t watch_id);
  // Watches registered; pushes dropped because no sink was registered for them.
  [[nodiscard]] std::size_t watches() const;
  [[nodiscard]] std::uint64_t unrouted_pushes() const;

 private:
  std::shared_ptr<Core> core_;
  std::thread thread_;
};

}  // namespace kv::client::detail
