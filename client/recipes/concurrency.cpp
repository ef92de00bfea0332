#include "concurrency.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <optional>

namespace kv::recipes {

using client::Code;
using client::Compare;
using client::KeyValue;
using client::TxnOp;
using client::TxnRequest;

namespace {

Status timed_out(const std::string& what) {
  return Status(Code::kUnavailable, "timed out waiting for " + what);
}

std::string hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

// --- Session ----------------------------------------------------------------------------

Session::Session(Client& client, std::uint64_t lease, std::int64_t ttl)
    : client_(client),
      lease_(lease),
      ttl_(ttl),
      keepalive_(std::make_unique<client::LeaseKeepAlive>(client, lease, ttl)) {}

Result<std::unique_ptr<Session>> Session::create(Client& client, std::int64_t ttl_seconds) {
  auto g = client.lease_grant(ttl_seconds);
  if (!g.ok()) return g.status();
  return std::unique_ptr<Session>(new Session(client, g->id, g->ttl_seconds));
}

Session::~Session() { (void)close(); }

bool Session::alive() const { return !closed_ && keepalive_ && keepalive_->alive(); }

Status Session::close() {
  if (closed_) return Status();
  closed_ = true;
  keepalive_.reset();  // stop renewing first
  auto r = client_.lease_revoke(lease_);
  if (!r.ok() && r.code() != Code::kLeaseNotFound) return r.status();
  return Status();
}

// --- Contender --------------------------------------------------------------------------

Contender::Contender(Session& session, std::string prefix)
    : session_(session), prefix_(std::move(prefix)), key_(prefix_ + hex16(session.lease())) {}

Result<bool> Contender::enqueue(const std::string& value) {
  TxnRequest t;
  t.compare = {Compare::create_revision(key_, Compare::Op::kEqual, 0)};
  t.success = {TxnOp::put(key_, value, session_.lease())};
  t.failure = {TxnOp::get(key_)};
  auto r = session_.client().txn(t);
  if (!r.ok()) return r.status();
  if (r->succeeded) {
    revision_ = r->revision;
  } else {
    // The session queued already (a second lock() of a held mutex): keep that place.
    revision_ = r->results.at(0).kv.create_revision;
  }
  return r->succeeded;
}

Status Contender::wait_turn(std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  Client& client = session_.client();
  for (;;) {
    auto scan = client.scan(client::Range::with_prefix(prefix_));
    if (!scan.ok()) return scan.status();
    bool mine = false;
    std::optional<KeyValue> ahead;  // the greatest create_revision below ours
    for (const KeyValue& kv : scan->kvs) {
      if (kv.key == key_) {
        mine = kv.create_revision == revision_;
      } else if (kv.create_revision < revision_ &&
                 (!ahead || kv.create_revision > ahead->create_revision)) {
        ahead = kv;
      }
    }
    if (!mine) {
      return Status(Code::kLeaseNotFound,
                    "the session's key " + key_ + " is gone (its lease was lost)");
    }
    if (!ahead) return Status();  // first in the queue
    // Wait for that one key to be deleted, from just after the scan's revision, so a
    // deletion between the scan and the watch is not missed.
    client::WatchOptions wo;
    wo.start_revision = scan->revision + 1;
    wo.no_put = true;
    auto w = client.watch_stream(client::WatchKeys::single(ahead->key), wo, 16);
    if (!w.ok() && w.code() != Code::kCompacted) return w.status();
    bool deleted = !w.ok();  // COMPACTED: the history moved on; look again
    while (!deleted) {
      const auto now = clock::now();
      if (now >= deadline) return timed_out("the key " + ahead->key);
      if (!session_.alive()) {
        return Status(Code::kLeaseNotFound, "the session's lease was lost while waiting");
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
      // Bounded waits so that the deadline and the session are looked at again.
      auto b = w.value()->next(std::min(left, std::chrono::milliseconds(200)));
      if (!b) continue;
      // Any delete of the key, or the watch ending (then look again), ends the wait.
      deleted = b->canceled || !b->events.empty();
    }
  }
}

Status Contender::leave() {
  auto r = session_.client().del(key_);
  revision_ = 0;
  return r.status();
}

// --- Mutex ------------------------------------------------------------------------------

Status Mutex::lock(std::chrono::milliseconds timeout) {
  if (auto q = c_.enqueue(""); !q.ok()) return q.status();
  Status s = c_.wait_turn(timeout);
  if (!s.ok()) (void)c_.leave();
  return s;
}

Status Mutex::unlock() { return c_.leave(); }

// --- Election ---------------------------------------------------------------------------

Status Election::campaign(const std::string& value, std::chrono::milliseconds timeout) {
  auto q = c_.enqueue(value);
  if (!q.ok()) return q.status();
  // Already a candidate from before: make the value current.
  if (!q.value()) {
    if (Status s = proclaim(value); !s.ok()) return s;
  }
  Status s = c_.wait_turn(timeout);
  if (!s.ok()) (void)c_.leave();
  return s;
}

Status Election::proclaim(const std::string& value) {
  if (c_.revision() == 0) return Status(Code::kInvalidArgument, "not a candidate");
  TxnRequest t;
  t.compare = {Compare::create_revision(c_.key(), Compare::Op::kEqual, c_.revision())};
  t.success = {TxnOp::put(c_.key(), value, c_.session().lease())};
  auto r = c_.session().client().txn(t);
  if (!r.ok()) return r.status();
  if (!r->succeeded) return Status(Code::kInvalidArgument, "no longer a candidate");
  return Status();
}

Status Election::resign() {
  if (c_.revision() == 0) return Status();
  return c_.leave();
}

Result<KeyValue> Election::leader() const {
  auto scan = c_.session().client().scan(client::Range::with_prefix(c_.prefix()));
  if (!scan.ok()) return scan.status();
  const KeyValue* best = nullptr;
  for (const KeyValue& kv : scan->kvs) {
    if (best == nullptr || kv.create_revision < best->create_revision) best = &kv;
  }
  if (best == nullptr) return Status(Code::kNotFound, "no leader");
  return *best;
}

}  // namespace kv::recipes
