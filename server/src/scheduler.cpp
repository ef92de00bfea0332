// Deficit round robin over the tenants of one worker (invariants: scheduler.hpp).
#include "scheduler.hpp"

#include <algorithm>
#include <utility>

namespace kv::server::detail {

// Structure: a Flow is in flows_ exactly when it is in active_ (once) or is the flow whose
// turn run() is running; it may be empty for a while (its connections closed), and is
// erased at the end of its next turn.

TurnScheduler::~TurnScheduler() { clear(); }

void TurnScheduler::ready(const std::shared_ptr<TurnTaker>& c, Key tenant) {
  if (c->state_ != TurnTaker::State::kIdle) return;  // queued, or its visit decides
  auto [it, added] = flows_.try_emplace(tenant);
  if (added) {
    it->second = std::make_unique<Flow>();
    it->second->key = tenant;
    active_.push_back(it->second.get());
  }
  Flow* f = it->second.get();
  c->state_ = TurnTaker::State::kQueued;
  c->flow_ = f;
  f->ready.push_back(c);
  post_run();
}

void TurnScheduler::remove(TurnTaker& c) {
  if (c.state_ == TurnTaker::State::kInTurn) {
    c.state_ = TurnTaker::State::kIdle;  // run() holds it and will not queue it again
    return;
  }
  if (c.state_ != TurnTaker::State::kQueued) return;
  auto* f = static_cast<Flow*>(c.flow_);
  c.state_ = TurnTaker::State::kIdle;
  c.flow_ = nullptr;
  const auto at = std::find_if(f->ready.begin(), f->ready.end(),
                               [&c](const std::shared_ptr<TurnTaker>& p) { return p.get() == &c; });
  if (at == f->ready.end()) return;
  std::shared_ptr<TurnTaker> held = std::move(*at);
  f->ready.erase(at);
  // The caller may hold `c` by a raw pointer only: the last reference goes later, on this
  // worker's thread, not under the caller.
  asio::post(ctx_, [held = std::move(held)] {});
}

void TurnScheduler::clear() noexcept {
  auto flows = std::move(flows_);
  flows_.clear();
  active_.clear();
  for (auto& [key, f] : flows) {
    for (auto& c : f->ready) {
      c->state_ = TurnTaker::State::kIdle;
      c->flow_ = nullptr;
    }
  }
  // `flows` goes here: a connection destroyed now finds itself idle in remove().
}

void TurnScheduler::post_run() {
  if (run_posted_) return;
  run_posted_ = true;
  // Behind the handlers already queued on the worker (reads, writes, timers): S1.
  asio::post(ctx_, [this] { run(); });
}

void TurnScheduler::run() {
  run_posted_ = false;
  if (active_.empty()) return;
  Flow* f = active_.front();
  active_.pop_front();
  ++turns_;
  f->deficit += kQuantum;  // the carry is at most kQuantum (below): S1
  // Each connection queued at the start is visited at most once in this turn (S2: the
  // others of the tenant go first next turn).
  std::size_t visits_left = f->ready.size();
  while (f->deficit > 0 && visits_left > 0 && !f->ready.empty()) {
    --visits_left;
    std::shared_ptr<TurnTaker> c = std::move(f->ready.front());
    f->ready.pop_front();
    c->state_ = TurnTaker::State::kInTurn;
    c->flow_ = nullptr;
    const std::size_t budget = std::min(f->deficit, kQuantum);
    ++visits_;
    const TurnTaker::Result r = c->take_turn(budget);
    f->deficit -= std::min(r.dispatched, budget);
    if (c->state_ != TurnTaker::State::kInTurn) continue;  // closed during its visit
    if (r.more) {
      c->state_ = TurnTaker::State::kQueued;
      c->flow_ = f;
      f->ready.push_back(std::move(c));
    } else {
      c->state_ = TurnTaker::State::kIdle;  // S3: paused or waiting; ready() brings it back
    }
  }
  if (f->ready.empty()) {
    const Key key = f->key;  // a copy: erasing destroys f
    flows_.erase(key);       // S3: no deficit kept without ready connections
  } else {
    f->deficit = std::min(f->deficit, kQuantum);
    active_.push_back(f);
  }
  if (!active_.empty()) post_run();
}

}  // namespace kv::server::detail
