#include "watch.hpp"

#include <condition_variable>
#include <deque>
#include <utility>

#include "convert.hpp"

namespace kv::client {
namespace detail {

// The batches of a WatchStream waiting for its reader (see WatchStream in client.hpp).
class StreamQueue {
 public:
  explicit StreamQueue(std::size_t max_buffered) : max_(max_buffered == 0 ? 1 : max_buffered) {}

  // On the I/O thread. False when the batch did not fit: the caller ends the watch.
  bool push(const WatchBatch& batch) {
    std::lock_guard lock(mu_);
    if (closed_) return true;
    if (!batch.canceled && queue_.size() >= max_) {
      WatchBatch last;
      last.watch_id = batch.watch_id;
      last.revision = batch.revision;
      last.canceled = true;
      last.status =
          Status(Code::kResourceExhausted, "the watch reader fell behind (" + std::to_string(max_) +
                                               " batches buffered); resume from revision " +
                                               std::to_string(batch.revision));
      last.resume_revision = batch.revision;
      queue_.push_back(std::move(last));
      closed_ = true;
      cv_.notify_all();
      return false;
    }
    queue_.push_back(batch);
    if (batch.canceled) closed_ = true;
    cv_.notify_all();
    return true;
  }

  std::optional<WatchBatch> next(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    auto ready = [this] { return !queue_.empty() || ended_; };
    if (timeout == std::chrono::milliseconds::max()) {
      cv_.wait(lock, ready);
    } else if (!cv_.wait_for(lock, timeout, ready)) {
      return std::nullopt;
    }
    if (queue_.empty()) return std::nullopt;
    WatchBatch b = std::move(queue_.front());
    queue_.pop_front();
    if (b.canceled) ended_ = true;
    return b;
  }

  void end() {
    std::lock_guard lock(mu_);
    ended_ = true;
    closed_ = true;
    queue_.clear();
    cv_.notify_all();
  }

  bool ended() const {
    std::lock_guard lock(mu_);
    return ended_;
  }

 private:
  const std::size_t max_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WatchBatch> queue_;  // guarded by mu_
  bool closed_ = false;           // guarded by mu_: the final batch is queued (or cancel)
  bool ended_ = false;            // guarded by mu_: the final batch was taken (or cancel)
};

void WatchState::started(std::uint64_t id, std::uint64_t start_revision) {
  std::lock_guard lock(mu_);
  id_ = id;
  start_ = start_revision;
  next_revision_ = start_revision;
}

void WatchState::finish(WatchBatch& batch) {
  batch.canceled = true;
  if (batch.resume_revision == 0) batch.resume_revision = next_revision_;
  done_ = true;
  deliver_(batch);
}

void WatchState::on_push(const pb::WatchEvents& push) {
  std::lock_guard lock(mu_);
  if (done_) return;
  if (!partial_.events.empty() && push.revision() != 0 && push.revision() != partial_.revision) {
    // A new revision before the last fragment of the previous one: the server broke the
    // protocol. Deliver what came rather than merging two revisions.
    WatchBatch broken = std::move(partial_);
    partial_ = WatchBatch{};
    deliver_(broken);
  }
  append_watch_events(push, partial_);
  if (push.fragment() && !push.canceled()) return;  // the rest of the revision follows
  WatchBatch batch = std::move(partial_);
  partial_ = WatchBatch{};
  if (batch.canceled) {
    // Events of a revision that came with the final push were delivered whole.
    if (!batch.events.empty()) next_revision_ = batch.revision + 1;
    finish(batch);
    return;
  }
  next_revision_ = batch.revision + 1;
  deliver_(batch);
}

void WatchState::on_lost(const Status& why) {
  std::lock_guard lock(mu_);
  if (done_) return;
  WatchBatch batch;
  batch.watch_id = id_;
  batch.status = Status(Code::kUnavailable, "watch lost: " + why.message());
  // A revision received in part is delivered again from its start by a new watch.
  batch.resume_revision = next_revision_;
  partial_ = WatchBatch{};
  finish(batch);
}

Status WatchState::cancel(bool wait) {
  {
    std::lock_guard lock(mu_);  // waits for a delivery running on the I/O thread
    if (done_) return Status();
    done_ = true;
  }
  conn_->remove_watch(id_);
  pb::Request r;
  encode_cancel_watch(r, id_);
  if (!wait || on_io_thread()) {
    conn_->submit(r, false, [](Status, pb::Response*) {});
    return Status();
  }
  std::mutex m;
  std::condition_variable cv;
  bool answered = false;
  Status result;
  conn_->submit(r, false, [&](Status transport, pb::Response* resp) {
    Status s =
        resp == nullptr ? std::move(transport) : decode_empty(*resp, pb::Response::kCancelWatch);
    std::lock_guard lock(m);
    result = std::move(s);
    answered = true;
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return answered; });
  // NOT_FOUND: the server had ended the watch already (its final push was in flight);
  // UNAVAILABLE: the connection is gone, and the watch with it.
  if (result.is_not_found() || result.code() == Code::kUnavailable) return Status();
  return result;
}

bool WatchState::active() const {
  std::lock_guard lock(mu_);
  return !done_;
}

std::uint64_t WatchState::resume_revision() const {
  std::lock_guard lock(mu_);
  return next_revision_;
}

Status open_watch(const std::shared_ptr<WatchState>& state, const WatchKeys& keys,
                  const WatchOptions& options) {
  if (on_io_thread()) {
    return Status(Code::kInvalidArgument,
                  "blocking client call from a completion callback (watch)");
  }
  pb::Request r;
  encode_watch(r, keys, options);
  std::mutex m;
  std::condition_variable cv;
  bool answered = false;
  Status result;
  Connection* raw = &state->connection();
  raw->submit(r, false, [&, raw](Status transport, pb::Response* resp) {
    Status s;
    if (resp == nullptr) {
      s = std::move(transport);
    } else {
      auto created = decode_watch(*resp);
      s = created.status();
      if (created.ok()) {
        // On the I/O thread, before the next frame is read: no push can miss the sink.
        state->started(created->watch_id, created->start_revision);
        raw->add_watch(created->watch_id, state);
      }
    }
    std::lock_guard lock(m);
    result = std::move(s);
    answered = true;
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return answered; });
  return result;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Watch, WatchStream
// ---------------------------------------------------------------------------------------

Watch::Watch(std::shared_ptr<detail::WatchState> state) : state_(std::move(state)) {}
Watch::~Watch() {
  if (state_) (void)state_->cancel(false);
}
std::uint64_t Watch::id() const noexcept { return state_->id(); }
std::uint64_t Watch::start_revision() const noexcept { return state_->start_revision(); }
bool Watch::active() const { return state_->active(); }
std::uint64_t Watch::resume_revision() const { return state_->resume_revision(); }
Status Watch::cancel() { return state_->cancel(true); }

WatchStream::WatchStream(std::shared_ptr<detail::WatchState> state,
                         std::shared_ptr<detail::StreamQueue> queue)
    : state_(std::move(state)), queue_(std::move(queue)) {}
WatchStream::~WatchStream() {
  if (state_) (void)state_->cancel(false);
  if (queue_) queue_->end();
}
std::uint64_t WatchStream::id() const noexcept { return state_->id(); }
std::uint64_t WatchStream::start_revision() const noexcept { return state_->start_revision(); }
std::optional<WatchBatch> WatchStream::next(std::chrono::milliseconds timeout) {
  return queue_->next(timeout);
}
bool WatchStream::ended() const { return queue_->ended(); }
Status WatchStream::cancel() {
  Status s = state_->cancel(true);
  queue_->end();
  return s;
}

// Used by Client::watch_stream (client.cpp).
namespace detail {
Result<std::unique_ptr<WatchStream>> open_watch_stream(std::shared_ptr<Connection> conn,
                                                       const WatchKeys& keys,
                                                       const WatchOptions& options,
                                                       std::size_t max_buffered) {
  auto queue = std::make_shared<StreamQueue>(max_buffered);
  // The deliver callback reaches the state through a weak pointer (the state owns the
  // callback), set before the watch is created and so before any push can arrive.
  auto self = std::make_shared<std::weak_ptr<WatchState>>();
  auto state = std::make_shared<WatchState>(std::move(conn), [queue, self](const WatchBatch& b) {
    if (!queue->push(b)) {
      // The reader fell behind: end the watch (on the I/O thread: without waiting).
      if (auto s = self->lock()) (void)s->cancel(false);
    }
  });
  *self = state;
  if (Status s = open_watch(state, keys, options); !s.ok()) return s;
  return std::make_unique<WatchStream>(std::move(state), std::move(queue));
}
}  // namespace detail

// ---------------------------------------------------------------------------------------
// LeaseKeepAlive
// ---------------------------------------------------------------------------------------

LeaseKeepAlive::LeaseKeepAlive(Client& client, std::uint64_t lease_id, std::int64_t ttl_seconds,
                               std::function<void(const Status&)> on_lost)
    : client_(client),
      id_(lease_id),
      ttl_(ttl_seconds < 1 ? 1 : ttl_seconds),
      on_lost_(std::move(on_lost)) {
  thread_ = std::thread([this] { run(); });
}

LeaseKeepAlive::~LeaseKeepAlive() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LeaseKeepAlive::alive() const {
  std::lock_guard lock(mu_);
  return !lost_;
}

Status LeaseKeepAlive::lost_reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

std::uint64_t LeaseKeepAlive::renewals() const {
  std::lock_guard lock(mu_);
  return renewals_;
}

bool LeaseKeepAlive::wait_lost(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return reported_; });
}

void LeaseKeepAlive::run() {
  using clock = std::chrono::steady_clock;
  // The lease was granted or renewed just before the helper started: it lives at least
  // until `expires`.
  auto expires = clock::now() + std::chrono::seconds(ttl_);
  auto period = [this] { return std::chrono::milliseconds(ttl_ * 1000 / 3); };
  auto next = clock::now() + period();
  std::unique_lock lock(mu_);
  for (;;) {
    if (cv_.wait_until(lock, next, [this] { return stop_; })) return;
    lock.unlock();
    const auto sent = clock::now();
    auto r = client_.lease_keepalive(id_);
    Status lost;
    if (r.ok()) {
      if (r->ttl_seconds > 0) ttl_ = r->ttl_seconds;
      expires = sent + std::chrono::seconds(ttl_);
      next = clock::now() + period();
    } else if (r.code() == Code::kLeaseNotFound) {
      lost = r.status();
    } else if (clock::now() >= expires) {
      lost = Status(Code::kLeaseNotFound,
                    "lease " + std::to_string(id_) +
                        " not renewed within its TTL: " + r.status().to_string());
    } else {
      next = std::min(expires, clock::now() + std::chrono::milliseconds(500));
    }
    lock.lock();
    if (r.ok()) ++renewals_;
    if (!lost.ok()) {
      lost_ = true;
      reason_ = lost;
      lock.unlock();
      if (on_lost_) on_lost_(lost);
      lock.lock();
      reported_ = true;  // wait_lost() returns once on_lost has run
      cv_.notify_all();
      return;
    }
  }
}

}  // namespace kv::client
