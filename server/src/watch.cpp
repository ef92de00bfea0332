// Watches: creation, cancel, the pump that turns cursors into WatchEvents pushes, and the
// hub that wakes workers after commits. Invariants W1-W4 and the memory orders: watch.hpp.
#include "watch.hpp"

#include <spdlog/spdlog.h>

#include <thread>

#include "proto/codec.hpp"
#include "server_impl.hpp"

namespace kv::server::detail {

namespace pb = proto::pb;

namespace {

// Room kept in a push frame for everything but the events (envelope, header, ids).
constexpr std::size_t kPushEnvelope = 256;

void set_error(pb::Response& r, pb::Status::Code code, std::string message,
               storage::Revision revision) {
  r.mutable_status()->set_code(code);
  r.mutable_status()->set_message(std::move(message));
  r.mutable_header()->set_revision(revision);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// WatchHub
// ---------------------------------------------------------------------------------------

bool WatchHub::acquire() noexcept {
  // Relaxed: a counter against a limit; it orders no other data.
  std::uint64_t cur = open_.load(std::memory_order_relaxed);
  do {
    if (cur >= max_) return false;
  } while (!open_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

void WatchHub::release(std::uint64_t n) noexcept { open_.fetch_sub(n, std::memory_order_relaxed); }

void WatchHub::notify() noexcept {
  // W4: seq_cst increment, then seq_cst load of closed_; pairs with close()'s seq_cst store
  // of closed_ followed by its load of in_notify_.
  in_notify_.fetch_add(1, std::memory_order_seq_cst);
  if (!closed_.load(std::memory_order_seq_cst)) {
    for (Worker* w : workers_) {
      // W2: seq_cst load of the count (pairs with the seq_cst increment of a new watch
      // before its first pump reads W) and seq_cst exchange of the flag (pairs with the
      // wake-up's seq_cst clear before it reads W).
      if (w->watches.load(std::memory_order_seq_cst) == 0) continue;
      if (w->watch_wake.exchange(true, std::memory_order_seq_cst)) continue;
      wakeups.fetch_add(1, std::memory_order_relaxed);
      asio::post(w->ctx, [w] {
        w->watch_wake.store(false, std::memory_order_seq_cst);  // W2: before any pump reads W
        // Copy: a pump may unregister its session (its last watch ended).
        const std::vector<Session*> sessions(w->watch_sessions.begin(), w->watch_sessions.end());
        for (Session* s : sessions) {
          if (w->watch_sessions.count(s) != 0) s->pump_watches();
        }
      });
    }
  }
  // release: the accesses above happen-before close()'s acquire load that sees the drop.
  in_notify_.fetch_sub(1, std::memory_order_release);
}

void WatchHub::close() noexcept {
  closed_.store(true, std::memory_order_seq_cst);  // W4 (see notify)
  // acquire: pairs with notify()'s release decrement.
  while (in_notify_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  std::atomic_thread_fence(std::memory_order_acquire);
}

// ---------------------------------------------------------------------------------------
// ConnectionWatches
// ---------------------------------------------------------------------------------------

void ConnectionWatches::watch(const pb::Request& request, pb::Response& response) {
  const pb::WatchRequest& q = request.watch();
  const storage::Revision now = engine_.current_revision();
  Watch w;
  w.start = q.key();
  if (q.prefix()) {
    if (!q.range_end().empty()) {
      return set_error(response, pb::Status::INVALID_ARGUMENT,
                       "a prefix watch must have an empty range_end", now);
    }
    // The keys starting with `key`: [key, key with its last non-0xFF byte incremented).
    std::string end = q.key();
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
    if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
    w.end = std::move(end);
  } else if (q.range_end().empty()) {
    if (q.key().empty()) {
      return set_error(response, pb::Status::INVALID_ARGUMENT,
                       "watch key must not be empty (use prefix with an empty key for every key)",
                       now);
    }
    w.end = q.key() + '\0';  // the single key
  } else if (q.range_end() == std::string_view("\0", 1)) {
    w.end.clear();  // every key >= key
  } else {
    if (q.range_end() <= q.key()) {
      return set_error(response, pb::Status::INVALID_ARGUMENT,
                       "watch range_end must be greater than key", now);
    }
    w.end = q.range_end();
  }
  w.prev_kv = q.prev_kv();
  w.no_put = q.no_put();
  w.no_delete = q.no_delete();
  if (watches_.size() >= config_.max_watches_per_connection) {
    return set_error(response, pb::Status::RESOURCE_EXHAUSTED,
                     "this connection holds --max-watches-per-connection (" +
                         std::to_string(config_.max_watches_per_connection) + ") watches already",
                     now);
  }
  if (!hub_.acquire()) {
    return set_error(response, pb::Status::RESOURCE_EXHAUSTED,
                     "the server holds --max-watches (" + std::to_string(config_.max_watches) +
                         ") watches already",
                     now);
  }
  w.cursor = q.start_revision() == 0 ? now + 1 : q.start_revision();
  if (w.cursor <= now) {
    const storage::Revision oldest = engine_.oldest_change_revision(w.prev_kv);
    if (w.cursor < oldest) {
      hub_.release(1);
      set_error(response, pb::Status::COMPACTED,
                "start revision " + std::to_string(w.cursor) +
                    " is older than the oldest revision kept" +
                    (w.prev_kv ? " with prev_kv (the change history)" : "") + " (" +
                    std::to_string(oldest) + "); re-read and watch from the read revision + 1",
                now);
      response.mutable_status()->set_compact_revision(oldest);
      return;
    }
  }
  w.id = next_id_++;
  // W2: counted (seq_cst) before the first pump of this connection reads W.
  worker_count_.fetch_add(1, std::memory_order_seq_cst);
  auto* out = response.mutable_watch();
  out->set_watch_id(w.id);
  out->set_start_revision(w.cursor);
  response.mutable_status();
  response.mutable_header()->set_revision(now);
  watches_.emplace(w.id, std::move(w));
}

void ConnectionWatches::cancel(const pb::Request& request, pb::Response& response) {
  const std::uint64_t id = request.cancel_watch().watch_id();
  const storage::Revision now = engine_.current_revision();
  auto it = watches_.find(id);
  if (it == watches_.end()) {
    return set_error(response, pb::Status::NOT_FOUND,
                     "no watch " + std::to_string(id) +
                         " on this connection (never created, canceled, or ended)",
                     now);
  }
  watches_.erase(it);
  drop(1);
  response.mutable_cancel_watch();
  response.mutable_status();
  response.mutable_header()->set_revision(now);
}

void ConnectionWatches::drop(std::uint64_t n) noexcept {
  if (n == 0) return;
  hub_.release(n);
  worker_count_.fetch_sub(n, std::memory_order_seq_cst);
}

void ConnectionWatches::clear() noexcept {
  drop(watches_.size());
  watches_.clear();
}

void ConnectionWatches::append_end(std::string& out, const Watch& w, pb::Status::Code code,
                                   std::string_view reason, storage::Revision compact_revision) {
  push_.Clear();
  push_.set_id(0);
  push_.mutable_status();
  push_.mutable_header()->set_revision(engine_.current_revision());
  auto* ev = push_.mutable_watch_events();
  ev->set_watch_id(w.id);
  ev->set_revision(w.cursor);
  ev->set_canceled(true);
  ev->set_cancel_code(code);
  ev->set_cancel_reason(std::string(reason));
  ev->set_compact_revision(compact_revision);
  ev->set_resume_revision(w.cursor);
  proto::append_message(out, push_);
  hub_.pushes.fetch_add(1, std::memory_order_relaxed);
}

void ConnectionWatches::end_all(std::string& out, pb::Status::Code code, std::string_view reason) {
  for (const auto& [id, w] : watches_) append_end(out, w, code, reason, 0);
  clear();
}

bool ConnectionWatches::append_group(std::string& out, const Watch& w,
                                     const storage::ChangeGroup& g, std::size_t* appended) {
  const std::size_t limit = config_.max_frame_bytes > 2 * kPushEnvelope
                                ? config_.max_frame_bytes - kPushEnvelope
                                : config_.max_frame_bytes / 2;
  push_.Clear();
  pb::WatchEvents* ev = nullptr;
  std::size_t size = 0;
  auto start_push = [&] {
    push_.Clear();
    push_.set_id(0);
    push_.mutable_status();
    push_.mutable_header()->set_revision(g.revision);
    ev = push_.mutable_watch_events();
    ev->set_watch_id(w.id);
    ev->set_revision(g.revision);
    size = 0;
  };
  auto emit = [&](bool fragment) {
    ev->set_fragment(fragment);
    const std::size_t before = out.size();
    proto::append_message(out, push_);
    *appended += out.size() - before;
    hub_.pushes.fetch_add(1, std::memory_order_relaxed);
  };
  start_push();
  for (const storage::ChangeEvent& e : g.events) {
    if (!storage::in_change_range(e.key, w.start, w.end)) continue;
    if (e.is_delete ? w.no_delete : w.no_put) continue;
    pb::Event one;
    one.set_type(e.is_delete ? pb::Event::DELETE : pb::Event::PUT);
    auto* kv = one.mutable_kv();
    kv->set_key(e.key.data(), e.key.size());
    kv->set_mod_revision(g.revision);
    if (!e.is_delete) {
      kv->set_value(e.value.data(), e.value.size());
      kv->set_create_revision(e.create_revision);
      kv->set_version(static_cast<std::uint64_t>(e.version));
      kv->set_lease(e.lease);
    }
    if (w.prev_kv && e.has_prev) {
      auto* p = one.mutable_prev_kv();
      p->set_key(e.key.data(), e.key.size());
      p->set_value(e.prev_value.data(), e.prev_value.size());
      p->set_create_revision(e.prev_create_revision);
      p->set_mod_revision(e.prev_mod_revision);
      p->set_version(static_cast<std::uint64_t>(e.prev_version));
      p->set_lease(e.prev_lease);
    }
    const std::size_t cost = one.ByteSizeLong() + 8;  // + the field tag and length
    if (cost > limit) return false;                   // one event alone exceeds a frame
    if (size + cost > limit && ev->events_size() > 0) {
      emit(true);  // more events of this revision follow
      start_push();
    }
    *ev->add_events() = std::move(one);
    size += cost;
  }
  if (ev->events_size() > 0) emit(false);
  return true;
}

std::size_t ConnectionWatches::pump(std::string& out, std::size_t room) {
  std::size_t appended = 0;
  bool progress = true;
  while (progress && appended < room && !watches_.empty()) {
    progress = false;
    // W1/CL1: the cursor of each watch only moves to what read_changes returns.
    const storage::Revision visible = engine_.current_revision();
    // Round robin: start after the watch served last, so that one busy watch does not
    // starve the others of the connection's output room.
    auto it = watches_.upper_bound(last_served_);
    for (std::size_t n = watches_.size(); n > 0 && appended < room; --n) {
      if (it == watches_.end()) it = watches_.begin();
      Watch& w = it->second;
      if (w.cursor > visible) {
        ++it;
        continue;
      }
      last_served_ = w.id;
      storage::ChangeQuery q;
      q.from = w.cursor;
      q.start = w.start;
      q.end = w.end;
      q.need_prev = w.prev_kv;
      q.max_bytes = room - appended;
      const storage::ChangeBatch b = engine_.read_changes(q);
      if (b.compacted) {
        hub_.ended_compacted.fetch_add(1, std::memory_order_relaxed);
        const std::size_t before = out.size();
        append_end(out, w, pb::Status::COMPACTED,
                   "the watch fell behind the history the server keeps; re-read the range and "
                   "watch again from the read revision + 1",
                   b.compact_revision);
        appended += out.size() - before;
        it = watches_.erase(it);
        drop(1);
        progress = true;
        continue;
      }
      const storage::Revision old_cursor = w.cursor;
      bool ok = true;
      for (const auto& g : b.groups) {
        if (!append_group(out, w, *g, &appended)) {
          w.cursor = g->revision;
          ok = false;
          break;
        }
        w.cursor = g->revision + 1;
      }
      if (!ok) {
        const std::size_t before = out.size();
        append_end(out, w, pb::Status::RESOURCE_EXHAUSTED,
                   "an event of the watched range is larger than --max-frame-bytes", 0);
        appended += out.size() - before;
        it = watches_.erase(it);
        drop(1);
        progress = true;
        continue;
      }
      if (b.next > w.cursor) w.cursor = b.next;
      // Cut by the budget or the scan limit: go round again while the room lasts.
      if (w.cursor != old_cursor && w.cursor <= visible) progress = true;
      ++it;
    }
  }
  return appended;
}

}  // namespace kv::server::detail
