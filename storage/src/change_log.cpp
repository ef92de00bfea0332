// storage/src/change_log.cpp — the watch feed (docs/STORAGE.md section 11): the in-memory
// change log (change_log.hpp, CL1-CL4), the groups the commit path and recovery build, the
// reads (memory, then the WAL segments on disk), and the listener.
//
// Memory orders: listener_ is stored with release (set_change_listener) and loaded with
// acquire (changed()): the pair publishes the std::function object the pointer names.
// Everything else is guarded by ChangeLog::mu_ or by the WAL's own locks.
#include <algorithm>
#include <cstring>
#include <new>
#include <type_traits>

#include "engine_impl.hpp"

namespace kv::storage::detail {

namespace {

// True when one of the group's events (in key order) is inside [start, end).
bool touches(const ChangeGroup& g, std::string_view start, std::string_view end) {
  auto it = std::lower_bound(g.events.begin(), g.events.end(), start,
                             [](const ChangeEvent& e, std::string_view k) { return e.key < k; });
  return it != g.events.end() && in_change_range(it->key, start, end);
}

// The key-value `old` (the head a change replaces) as the event's prev, when it is live.
void set_prev(ChangeEvent& e, const Version* old) {
  if (old == nullptr || old->tombstone) return;
  e.has_prev = true;
  e.prev_value = old->value();
  e.prev_create_revision = old->create_rev;
  e.prev_mod_revision = old->commit_ts;
  e.prev_version = old->version;
  e.prev_lease = old->lease;
}

// The event of one op of a WAL commit record (no prev: the record does not hold it).
// Its views point into the record.
ChangeEvent event_of(const WalCommitOp& op) {
  ChangeEvent e;
  e.key = op.key;
  e.is_delete = !op.put;
  if (op.put) {
    e.value = op.value;
    e.create_revision = op.create_rev;
    e.version = op.version;
    e.lease = op.lease;
  }
  return e;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// ChangeGroupBuilder: one allocation per group
// ---------------------------------------------------------------------------------------

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t a) noexcept {
  return (n + a - 1) / a * a;
}

// The allocator std::allocate_shared uses for a group: it allocates the control block (which
// holds the ChangeGroup) with `tail` more bytes after it, for the events and their bytes, and
// reports where that tail starts. deallocate() frees the same size (every rebound copy keeps
// `tail`).
template <class T>
struct TailAllocator {
  using value_type = T;
  std::size_t tail;
  char** tail_at;  // allocate() stores the tail's address here (read only by the builder)

  TailAllocator(std::size_t t, char** at) noexcept : tail(t), tail_at(at) {}
  template <class U>
  TailAllocator(const TailAllocator<U>& o) noexcept : tail(o.tail), tail_at(o.tail_at) {}

  static std::size_t head(std::size_t n) noexcept {
    return round_up(n * sizeof(T), alignof(ChangeEvent));
  }
  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    char* p = static_cast<char*>(::operator new(head(n) + tail));
    *tail_at = p + head(n);
    return reinterpret_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept { ::operator delete(p, head(n) + tail); }

  template <class U>
  bool operator==(const TailAllocator<U>& o) const noexcept {
    return tail == o.tail;
  }
};

// The events are placed in raw bytes and never destroyed one by one.
static_assert(std::is_trivially_destructible_v<ChangeEvent>);

// Copies `s` to `*at` and returns the view of the copy.
std::string_view place(std::string_view s, char*& at) noexcept {
  if (s.empty()) return {};
  std::memcpy(at, s.data(), s.size());
  const std::string_view v(at, s.size());
  at += s.size();
  return v;
}

}  // namespace

ChangeGroupBuilder::ChangeGroupBuilder(Revision revision, bool has_prev, std::size_t events,
                                       std::size_t data) {
  char* tail = nullptr;
  group_ = std::allocate_shared<ChangeGroup>(
      TailAllocator<ChangeGroup>(events * sizeof(ChangeEvent) + data, &tail));
  group_->revision = revision;
  group_->has_prev = has_prev;
  events_ = reinterpret_cast<ChangeEvent*>(tail);
  data_ = tail + events * sizeof(ChangeEvent);
  bytes_ = kChangeGroupOverhead;
}

void ChangeGroupBuilder::add(const ChangeEvent& e) noexcept {
  ChangeEvent* c = new (events_ + n_) ChangeEvent(e);
  ++n_;
  c->key = place(e.key, data_);
  c->value = place(e.value, data_);
  c->prev_value = place(e.prev_value, data_);
  bytes_ += change_event_bytes(*c);
}

std::shared_ptr<const ChangeGroup> ChangeGroupBuilder::finish() noexcept {
  group_->events = std::span<const ChangeEvent>(events_, n_);
  group_->bytes = bytes_;
  return std::move(group_);
}

// ---------------------------------------------------------------------------------------
// ChangeLog
// ---------------------------------------------------------------------------------------

void ChangeLog::reset(Revision base) {
  std::lock_guard<std::mutex> lock(mu_);
  groups_.clear();
  bytes_ = 0;
  first_kept_ = base <= 1 ? 1 : base + 1;
}

void ChangeLog::Evicted::add(std::shared_ptr<const ChangeGroup>&& g) {
  if (n < kInline) {
    first[n++] = std::move(g);
  } else {
    more.push_back(std::move(g));  // may throw: g is then freed here (already out of the log)
  }
}

void ChangeLog::insert(std::shared_ptr<const ChangeGroup> group) {
  if (!group) return;  // a commit that installed nothing (deletes of absent keys only)
  Evicted dead;        // declared before the lock: destroyed after it is released
  std::lock_guard<std::mutex> lock(mu_);
  if (group->revision < first_kept_) return;  // CL3: a late group below the kept range
  const std::size_t b = group->bytes;
  const Revision rev = group->revision;
  // CL2. Almost every group is the newest; one whose commit finished late goes in its place,
  // near the back (each revision is one commit's: no two groups share one). Both keep the
  // strong guarantee (Entry's moves do not throw).
  if (groups_.empty() || groups_.back().revision < rev) {
    groups_.push_back(Entry{rev, std::move(group)});
  } else {
    const auto at = std::lower_bound(groups_.begin(), groups_.end(), rev,
                                     [](const Entry& e, Revision r) { return e.revision < r; });
    groups_.insert(at, Entry{rev, std::move(group)});
  }
  bytes_ += b;
  evict_locked(dead);
}

void ChangeLog::evict_locked(Evicted& out) {
  while (bytes_ > limit_ && groups_.size() > 1) {
    Entry& oldest = groups_.front();
    bytes_ -= oldest.group->bytes;
    first_kept_ = std::max(first_kept_, oldest.revision + 1);  // CL4
    std::shared_ptr<const ChangeGroup> g = std::move(oldest.group);
    groups_.pop_front();
    ++evicted_;
    out.add(std::move(g));
  }
}

ChangeBatch ChangeLog::read(const ChangeQuery& q, Revision visible) const {
  ChangeBatch b;
  b.next = q.from;
  std::lock_guard<std::mutex> lock(mu_);
  if (q.from < first_kept_) {
    b.compacted = true;
    b.compact_revision = first_kept_;
    return b;
  }
  if (q.from > visible) return b;
  std::size_t bytes = 0;
  std::size_t scanned = 0;
  auto it = std::lower_bound(groups_.begin(), groups_.end(), q.from,
                             [](const Entry& e, Revision r) { return e.revision < r; });
  for (; it != groups_.end() && it->revision <= visible; ++it) {
    const ChangeGroup& g = *it->group;
    if ((q.max_scan != 0 && scanned >= q.max_scan) ||
        (q.max_bytes != 0 && !b.groups.empty() && bytes + g.bytes > q.max_bytes)) {
      b.next = it->revision;
      return b;
    }
    ++scanned;
    if (touches(g, q.start, q.end)) {
      b.groups.push_back(it->group);
      bytes += g.bytes;
    }
  }
  b.next = visible + 1;  // CL1/CL3: every revision in [from, visible] was looked at
  return b;
}

Revision ChangeLog::first_kept() const {
  std::lock_guard<std::mutex> lock(mu_);
  return first_kept_;
}

ChangeLogStats ChangeLog::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ChangeLogStats s;
  s.enabled = true;
  s.first_kept = first_kept_;
  s.bytes = bytes_;
  s.groups = groups_.size();
  s.evicted = evicted_;
  return s;
}

// ---------------------------------------------------------------------------------------
// Building groups: the commit path and recovery
// ---------------------------------------------------------------------------------------

namespace {
// The event of one installed version v of `key`; `prev` is the head it replaces. Its views
// point into the versions and `key` (copied by ChangeGroupBuilder::add).
ChangeEvent change_event(std::string_view key, const Version* v, const Version* prev) {
  ChangeEvent e;
  e.key = key;
  e.is_delete = v->tombstone;
  if (!v->tombstone) {
    e.value = v->value();
    e.create_revision = v->create_rev;
    e.version = v->version;
    e.lease = v->lease;
  }
  set_prev(e, prev);
  return e;
}

// The bytes an event's strings take in its group's block.
std::size_t event_data(const ChangeEvent& e) noexcept {
  return e.key.size() + e.value.size() + e.prev_value.size();
}

// A group of `events` (views pointing anywhere), copied into one block; null when empty.
std::shared_ptr<const ChangeGroup> build_group(Revision rev, bool has_prev,
                                               const std::vector<ChangeEvent>& events) {
  if (events.empty()) return nullptr;
  std::size_t data = 0;
  for (const ChangeEvent& e : events) data += event_data(e);
  ChangeGroupBuilder b(rev, has_prev, events.size(), data);
  for (const ChangeEvent& e : events) b.add(e);
  return b.finish();
}
}  // namespace

std::shared_ptr<const ChangeGroup> EngineImpl::change_group(
    Revision ts, const std::map<std::string, std::optional<std::string>, std::less<>>& writes,
    const std::vector<std::unique_ptr<Version>>& fresh, const std::vector<KeyNode*>& nodes,
    const kovan::Guard& g) const {
  // Two passes over the writes (the count and the bytes, then the copies) so that the group
  // is one allocation. Not yet published: each head is the version this commit replaces,
  // stable under the key's lock (E1), so the previous key-value is exact and the same in
  // both passes.
  std::size_t count = 0;
  std::size_t data = 0;
  std::size_t i = 0;
  for (const auto& entry : writes) {
    const Version* v = fresh[i].get();
    const KeyNode* n = nodes[i];
    ++i;
    if (v == nullptr) continue;  // a delete of an absent key installs nothing
    ++count;
    data += event_data(change_event(entry.first, v, n->head.load(g)));
  }
  if (count == 0) return nullptr;
  ChangeGroupBuilder b(ts, true, count, data);
  i = 0;
  for (const auto& entry : writes) {
    const Version* v = fresh[i].get();
    const KeyNode* n = nodes[i];
    ++i;
    if (v != nullptr) b.add(change_event(entry.first, v, n->head.load(g)));
  }
  return b.finish();
}

std::shared_ptr<const ChangeGroup> EngineImpl::change_group_one(Revision ts, std::string_view key,
                                                                const Version* v, const KeyNode* n,
                                                                const kovan::Guard& g) const {
  // As change_group(): the head is the version v replaces (stable under the key's lock).
  const ChangeEvent e = change_event(key, v, n->head.load(g));
  ChangeGroupBuilder b(ts, true, 1, event_data(e));
  b.add(e);
  return b.finish();
}

void EngineImpl::changed(Revision ts) const noexcept {
  // acquire: pairs with the release store of set_change_listener (the function object).
  const std::function<void(Revision)>* l = listener_.load(std::memory_order_acquire);
  if (l != nullptr) (*l)(ts);
}

void EngineImpl::set_change_listener(std::function<void(Revision)> listener) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  if (!listener) {
    listener_.store(nullptr, std::memory_order_release);
    return;
  }
  listeners_.push_back(std::make_unique<std::function<void(Revision)>>(std::move(listener)));
  // release: publishes the function object to changed()'s acquire load. The old ones are
  // kept until the engine is destroyed: a committer may still be calling one.
  listener_.store(listeners_.back().get(), std::memory_order_release);
}

void EngineImpl::refill_changes(std::string_view payload) {
  Revision rev = 0;
  std::vector<WalCommitOp> ops;
  if (!decode_wal_commit(payload, &rev, &ops)) return;  // recovery reports the damage
  std::vector<ChangeEvent> events;
  events.reserve(ops.size());
  kovan::Guard g = kovan::pin();
  for (const WalCommitOp& op : ops) {
    ChangeEvent e = event_of(op);
    // CL4: before the record is applied, the head is what it replaces (its value stays
    // readable under the guard until the group has copied it).
    if (const KeyNode* n = index_.find(op.key, g); n != nullptr) set_prev(e, n->head.load(g));
    events.push_back(e);
  }
  if (auto group = build_group(rev, true, events)) changes_->insert(std::move(group));
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

ChangeBatch EngineImpl::read_changes(const ChangeQuery& q) const {
  // CL1: W is read before the log is searched; every group <= W is in it by then.
  const Revision w = clock_.visible();
  Revision mem_first = w + 1;
  if (changes_) {
    ChangeBatch b = changes_->read(q, w);
    if (!b.compacted) return b;
    mem_first = b.compact_revision;
  } else if (q.from > w) {
    ChangeBatch b;
    b.next = q.from;
    return b;
  }
  if (wal_ && !q.need_prev) return read_wal_changes(q, w, mem_first);
  ChangeBatch b;
  b.next = q.from;
  b.compacted = true;
  b.compact_revision = mem_first;
  return b;
}

ChangeBatch EngineImpl::read_wal_changes(const ChangeQuery& q, Revision visible,
                                         Revision mem_first) const {
  // The WAL serves the revisions below the in-memory log, up to the visible one. Every
  // record <= visible was written to a segment listed now (the segment is listed before
  // anything is written to it, and the record was written before W passed it), so a read
  // of the files listed after reading W sees all of them.
  const Revision limit = std::min(visible, mem_first - 1);
  std::vector<WalCommitOp> ops;
  std::vector<ChangeEvent> events;  // views into `data`, copied by build_group
  std::string data;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::vector<WalSegment> segs = wal_->segments();
    ChangeBatch b;
    b.next = q.from;
    if (segs.empty() || q.from <= segs.front().prev_rev) {
      b.compacted = true;
      b.compact_revision =
          segs.empty() ? mem_first : std::min(segs.front().prev_rev + 1, mem_first);
      return b;
    }
    std::size_t k = 0;
    while (k + 1 < segs.size() && segs[k + 1].prev_rev < q.from) ++k;
    std::size_t bytes = 0;
    std::size_t scanned = 0;
    bool vanished = false;
    for (; k < segs.size(); ++k) {
      std::string why;
      Revision prev = 0;
      if (!read_whole_file(segs[k].path, &data, &why) ||
          !parse_file_header(data, kWalMagic, &prev, &why)) {
        vanished = true;  // trimmed meanwhile (a checkpoint): look again
        break;
      }
      for (std::size_t off = kFileHeader;;) {
        const Frame f = read_frame(data, off);
        if (f.kind != Frame::Kind::kOk) break;  // the end (or a tail being written)
        off = f.next;
        // Records of kinds this reader does not know (other features' records) are skipped.
        if (f.payload.empty() || static_cast<std::uint8_t>(f.payload[0]) != kRecCommit) continue;
        Revision rev = 0;
        if (!decode_wal_commit(f.payload, &rev, &ops) || rev < q.from) continue;
        if (rev > limit) {
          b.next = limit + 1;
          return b;
        }
        if ((q.max_scan != 0 && scanned >= q.max_scan)) {
          b.next = rev;
          return b;
        }
        ++scanned;
        const bool any = std::any_of(ops.begin(), ops.end(), [&](const WalCommitOp& op) {
          return in_change_range(op.key, q.start, q.end);
        });
        if (!any) continue;
        events.clear();
        for (const WalCommitOp& op : ops) events.push_back(event_of(op));
        // has_prev false: the WAL does not hold the replaced values.
        std::shared_ptr<const ChangeGroup> group = build_group(rev, false, events);
        const std::size_t gb = group->bytes;
        if (q.max_bytes != 0 && !b.groups.empty() && bytes + gb > q.max_bytes) {
          b.next = rev;
          return b;
        }
        bytes += gb;
        b.groups.push_back(std::move(group));
      }
    }
    if (vanished) continue;
    b.next = limit + 1;  // every record <= limit was in the files read
    return b;
  }
  ChangeBatch b;
  b.next = q.from;
  b.compacted = true;
  b.compact_revision = oldest_change_revision(false);
  return b;
}

Revision EngineImpl::oldest_change_revision(bool need_prev) const {
  const Revision mem_first = changes_ ? changes_->first_kept() : clock_.visible() + 1;
  if (need_prev || !wal_) return mem_first;
  const std::vector<WalSegment> segs = wal_->segments();
  if (segs.empty()) return mem_first;
  return std::min(segs.front().prev_rev + 1, mem_first);
}

ChangeLogStats EngineImpl::change_log_stats() const {
  return changes_ ? changes_->stats() : ChangeLogStats{};
}

}  // namespace kv::storage::detail

namespace kv::storage {

ChangeBatch Engine::read_changes(const ChangeQuery& q) const { return impl_->read_changes(q); }
Revision Engine::oldest_change_revision(bool need_prev) const {
  return impl_->oldest_change_revision(need_prev);
}
ChangeLogStats Engine::change_log_stats() const { return impl_->change_log_stats(); }
void Engine::set_change_listener(std::function<void(Revision)> listener) {
  impl_->set_change_listener(std::move(listener));
}

}  // namespace kv::storage
