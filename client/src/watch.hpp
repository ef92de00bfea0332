// The client side of watches: the per-watch state that the connection's I/O thread feeds
// with WatchEvents pushes (fragments of one revision are joined into one WatchBatch), and
// the creation of a watch on a connection.
//
// Invariants:
//   - on_push and on_lost run on the I/O thread only, so pushes are handled in the order
//     they arrived; the state's mutex is held while a batch is delivered, and cancel()
//     takes it, so once cancel() returns no delivery is running or will start (a cancel
//     from inside the delivery, on the same thread, re-enters the recursive mutex).
//   - `done` turns true exactly once: with the final batch (canceled set), or by cancel();
//     nothing is delivered after it.
//   - `next_revision` is the first revision not delivered whole: the resume point.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "client/client.hpp"
#include "connection.hpp"

namespace kv::client::detail {

class WatchState final : public WatchSink {
 public:
  using Deliver = std::function<void(const WatchBatch&)>;
  WatchState(std::shared_ptr<Connection> conn, Deliver deliver)
      : conn_(std::move(conn)), deliver_(std::move(deliver)) {}

  // The server accepted the watch (called before it is registered on the connection).
  void started(std::uint64_t id, std::uint64_t start_revision);

  void on_push(const pb::WatchEvents& push) override;
  void on_lost(const Status& why) override;

  // Ends the watch (see Watch::cancel). `wait`: wait for the server's answer.
  Status cancel(bool wait);

  [[nodiscard]] Connection& connection() const noexcept { return *conn_; }
  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
  [[nodiscard]] std::uint64_t start_revision() const noexcept { return start_; }
  [[nodiscard]] bool active() const;
  [[nodiscard]] std::uint64_t resume_revision() const;

 private:
  void finish(WatchBatch& batch);  // delivers the final batch (mu_ held)

  const std::shared_ptr<Connection> conn_;
  const Deliver deliver_;
  std::uint64_t id_ = 0;
  std::uint64_t start_ = 0;
  mutable std::recursive_mutex mu_;
  bool done_ = false;                // guarded by mu_
  std::uint64_t next_revision_ = 0;  // guarded by mu_
  WatchBatch partial_;               // guarded by mu_: fragments of a revision so far
};

// Sends WATCH on the state's connection and waits for the answer; on success `state` is
// registered for the watch's pushes. INVALID_ARGUMENT on the I/O thread.
[[nodiscard]] Status open_watch(const std::shared_ptr<WatchState>& state, const WatchKeys& keys,
                                const WatchOptions& options);

// Client::watch_stream's work on `conn`.
[[nodiscard]] Result<std::unique_ptr<WatchStream>> open_watch_stream(
    std::shared_ptr<Connection> conn, const WatchKeys& keys, const WatchOptions& options,
    std::size_t max_buffered);

}  // namespace kv::client::detail
