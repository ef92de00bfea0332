// Watches (docs/PROTOCOL.md 3.15): the server side of the engine's change feed
// (storage/watch.hpp).
//
// Shape: each watch is a cursor (the next revision it owes its client) into the engine's
// change log, not a queue of events. A connection turns cursors into WatchEvents pushes
// only while its unsent output is below --max-output-bytes (and the server-wide output
// budget allows), on its own worker thread, so a client that does not read costs one
// cursor per watch. The commit path does no work per watcher: after each visible commit
// the engine calls WatchHub::notify, which wakes each worker that has watches at most once
// until that worker has run its wake-up (a flag), and the worker pumps its sessions.
//
// INVARIANTS
// ----------
// W1. A watch's pushes follow its WatchResponse (the response is appended to the output
//     before any pump of that connection runs; both on the worker thread) and have strictly
//     increasing revisions; the fragments of one revision are consecutive. Its cursor only
//     moves past revisions whose pushes were appended (or that had no event for it).
// W2. No lost wake-up: a commit that becomes visible after a worker's pump read W finds the
//     worker's wake flag clear (the pump clears it before reading W) or a wake-up pending;
//     and a watch created after the commit's notify read the worker's watch count reads
//     a W that includes the commit (its first pump runs after it is counted). Both are
//     store-then-load pairs across threads: all four accesses are seq_cst.
// W3. Bounded memory: a connection holds at most --max-output-bytes + one pump's overshoot
//     (one change group, split into frames) of pushes; the change log is bounded by
//     --watch-history. A watch whose cursor falls out of what the engine keeps ends with
//     one final canceled push (COMPACTED).
// W4. The listener never runs after the server closed the hub: notify() enters (seq_cst
//     increment), then checks `closed_`; close() sets `closed_`, then waits for the count to
//     drop to 0 (Dekker: one of the two sees the other).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proto/kv.pb.h"
#include "server/config.hpp"
#include "server/dispatcher.hpp"
#include "storage/engine.hpp"

namespace kv::server::detail {

struct Worker;

// Server-wide: the watch count against --max-watches and the engine's change listener.
class WatchHub {
 public:
  explicit WatchHub(std::uint64_t max_watches) noexcept : max_(max_watches) {}

  // Takes one of the --max-watches slots; false when all are taken.
  [[nodiscard]] bool acquire() noexcept;
  void release(std::uint64_t n) noexcept;
  [[nodiscard]] std::uint64_t open() const noexcept {
    return open_.load(std::memory_order_relaxed);
  }

  // The workers to wake (before the listener is installed; never changed after).
  void attach(std::vector<Worker*> workers) { workers_ = std::move(workers); }
  // The engine's change listener: wakes each worker that holds watches, at most once until
  // it ran (W2). Called on committing threads.
  void notify() noexcept;
  // W4: after it returns, notify() touches no worker.
  void close() noexcept;

  // Statistics (relaxed: standalone counters).
  std::atomic<std::uint64_t> pushes{0};
  std::atomic<std::uint64_t> ended_compacted{0};
  std::atomic<std::uint64_t> wakeups{0};

 private:
  const std::uint64_t max_;
  std::atomic<std::uint64_t> open_{0};
  std::atomic<std::uint32_t> in_notify_{0};
  std::atomic<bool> closed_{false};
  std::vector<Worker*> workers_;
};

// The watches of one connection. Worker thread only.
class ConnectionWatches final : public WatchHandler {
 public:
  ConnectionWatches(storage::Engine& engine, WatchHub& hub,
                    std::atomic<std::uint64_t>& worker_count, const ServerConfig& config) noexcept
      : engine_(engine), hub_(hub), worker_count_(worker_count), config_(config) {}
  ~ConnectionWatches() override { clear(); }
  ConnectionWatches(const ConnectionWatches&) = delete;
  ConnectionWatches& operator=(const ConnectionWatches&) = delete;

  void watch(const proto::pb::Request& request, proto::pb::Response& response) override;
  void cancel(const proto::pb::Request& request, proto::pb::Response& response) override;

  [[nodiscard]] std::size_t size() const noexcept { return watches_.size(); }
  // Appends framed pushes to `out` until about `room` bytes were appended or no watch has
  // anything visible left; ends watches that fell out of the history. Returns the bytes
  // appended.
  std::size_t pump(std::string& out, std::size_t room);
  // A final canceled push (code) for every watch; then it holds none.
  void end_all(std::string& out, proto::pb::Status::Code code, std::string_view reason);
  // Drops every watch (connection closed).
  void clear() noexcept;

 private:
  struct Watch {
    std::uint64_t id = 0;
    std::string start;
    std::string end;  // empty: no upper bound
    bool prev_kv = false;
    bool no_put = false;
    bool no_delete = false;
    storage::Revision cursor = 0;  // the first revision not yet delivered
  };
  // Appends the pushes of one group (split by the frame limit); false when an event alone
  // does not fit a frame (the watch must end).
  bool append_group(std::string& out, const Watch& w, const storage::ChangeGroup& g,
                    std::size_t* appended);
  void append_end(std::string& out, const Watch& w, proto::pb::Status::Code code,
                  std::string_view reason, storage::Revision compact_revision);
  void drop(std::uint64_t n) noexcept;

  storage::Engine& engine_;
  WatchHub& hub_;
  std::atomic<std::uint64_t>& worker_count_;
  const ServerConfig& config_;
  std::map<std::uint64_t, Watch> watches_;
  std::uint64_t next_id_ = 1;
  std::uint64_t last_served_ = 0;  // round robin: the pump starts after this id
  proto::pb::Response push_;       // reused for every push (keeps its allocations)
};

}  // namespace kv::server::detail
