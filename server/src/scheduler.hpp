// Turns on one worker: which connection dispatches requests next (docs/SECURITY.md,
// "Sharing a worker").
//
// A worker's connections that have requests ready to dispatch are queued here under their
// tenant (the authenticated user; all unauthenticated connections share one tenant). The
// worker's time goes round the tenants with ready connections, deficit round robin: a
// tenant's turn adds kQuantum requests to its deficit, and its ready connections, taken in
// round-robin order, dispatch from that deficit, each at most kQuantum per visit. So a
// tenant with many connections or deep pipelines gets no more dispatch turns than a tenant
// with one connection, and within a tenant the connections share its turns.
//
// Invariants (checked by tests/server/scheduler_test.cpp):
//   S1 bounded work: one run() dispatches at most 2 * kQuantum requests (one tenant's
//      deficit, carried over at most kQuantum from its previous turn), and one visit of a
//      connection at most kQuantum; the worker runs its other handlers (reads, writes,
//      timers) between two run()s, since each run() is a handler posted behind them.
//   S2 no starvation: with T tenants ready, a ready tenant gets a turn within T - 1 turns
//      of the others; a tenant with C ready connections visits each of them within C of
//      its turns (a connection that still has requests after its visit goes to the back of
//      its tenant's queue).
//   S3 only ready connections take turns: a connection is queued only by ready() and
//      leaves the queue when its visit reports nothing more ready (it is paused for its
//      rate, for output backpressure, waits for a commit or for more input) or when it
//      closes (remove()). A tenant with no queued connection takes no turns and keeps no
//      deficit.
//
// Threads: one scheduler per worker, used only on that worker's thread (no atomics).
// Lifetime: a queued connection is kept alive by the scheduler (shared_ptr); remove()
// hands that reference to the worker's io_context to drop, so a connection closing itself
// from a caller holding only a raw pointer is not destroyed under that caller.
#pragma once

// The standard headers first: Asio picks its handler allocator (aligned_alloc or operator
// new) from the library's configuration macros, which must be defined before <asio.hpp>
// as in every other file of the server (else two instances of the same inline function
// disagree, and memory taken by one is freed by the other).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>

#include <asio.hpp>

namespace kv::server::detail {

class TurnScheduler;

// A connection as the scheduler sees it.
class TurnTaker {
 public:
  struct Result {
    std::size_t dispatched = 0;  // requests dispatched in this visit (<= the budget)
    bool more = false;           // still has requests ready: queue it again
  };
  TurnTaker() = default;
  TurnTaker(const TurnTaker&) = delete;
  TurnTaker& operator=(const TurnTaker&) = delete;
  virtual ~TurnTaker() = default;

  // Dispatches at most `budget` (>= 1) of its ready requests. Called by the scheduler
  // only; the connection must not call ready() for itself meanwhile (its result says).
  virtual Result take_turn(std::size_t budget) = 0;

  // Queued for a turn: the connection must not read (its buffered requests wait for their
  // turn, which reads again when it leaves none).
  [[nodiscard]] bool turn_queued() const noexcept { return state_ == State::kQueued; }

 private:
  friend class TurnScheduler;
  enum class State : std::uint8_t { kIdle, kQueued, kInTurn };
  State state_ = State::kIdle;
  void* flow_ = nullptr;  // the scheduler's Flow it is queued in (kQueued only)
};

class TurnScheduler {
 public:
  using Key = const void*;  // the tenant; nullptr: unauthenticated connections
  // Requests a tenant's turn adds to its deficit, and the most one visit dispatches.
  static constexpr std::size_t kQuantum = 32;

  explicit TurnScheduler(asio::io_context& ctx) noexcept : ctx_(ctx) {}
  ~TurnScheduler();  // drops every queued connection (see clear())
  TurnScheduler(const TurnScheduler&) = delete;
  TurnScheduler& operator=(const TurnScheduler&) = delete;

  // `c` has requests ready: queue it under `tenant` (nothing when it is queued or in its
  // turn already) and post a run() unless one is posted.
  void ready(const std::shared_ptr<TurnTaker>& c, Key tenant);
  // `c` closes: drop it from its queue (nothing when it is not queued).
  void remove(TurnTaker& c);
  // Drops every queued connection now (worker teardown, while its io_context still exists).
  void clear() noexcept;

  // Statistics (worker thread only).
  [[nodiscard]] std::uint64_t turns() const noexcept { return turns_; }    // tenant turns run
  [[nodiscard]] std::uint64_t visits() const noexcept { return visits_; }  // connection visits
  [[nodiscard]] std::size_t ready_tenants() const noexcept { return active_.size(); }

 private:
  struct Flow {
    Key key = nullptr;
    std::deque<std::shared_ptr<TurnTaker>> ready;  // round-robin order
    std::size_t deficit = 0;                       // requests this tenant may still dispatch
  };
  void post_run();
  void run();  // one tenant's turn (S1); posts the next while tenants are ready

  asio::io_context& ctx_;
  std::unordered_map<Key, std::unique_ptr<Flow>> flows_;  // tenants with queued connections
  std::deque<Flow*> active_;                              // those tenants, in turn order
  bool run_posted_ = false;
  std::uint64_t turns_ = 0;
  std::uint64_t visits_ = 0;
};

}  // namespace kv::server::detail
