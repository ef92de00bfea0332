// storage/src/change_log.hpp — the in-memory change log behind the watch feed
// (docs/STORAGE.md section 11; the public types are in storage/watch.hpp).
//
// INVARIANTS (the argument is in docs/STORAGE.md, section 11)
// -----------------------------------------------------------
// CL1. Readers are served only groups with revision <= W (the visible revision). A group is
//      inserted before its commit timestamp is finished, so every group of a revision <= W
//      is in the log (or was evicted, CL3) when a reader looks.
// CL2. Groups are kept ordered by revision (a deque: a group is appended at the back, and
//      one whose commit finished late is inserted in its place, a few entries from the
//      back); each is immutable once inserted, and is returned whole.
// CL3. bytes_ <= limit_ unless the log holds one group only. Eviction removes the oldest
//      group and raises first_kept_ past it; a group inserted below first_kept_ is dropped.
//      Hence every revision in [first_kept_, W] that installed something is in the log.
// CL4. first_kept_ only grows.
// All state is guarded by mu_. The log never calls out while holding it, and frees no group
// under it: evicted groups are released after it is unlocked.
//
// A group is one allocation (ChangeGroupBuilder): the shared_ptr control block, the
// ChangeGroup, its ChangeEvent array, then the key/value/prev bytes the events view.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "storage/watch.hpp"

namespace kv::storage::detail {

class ChangeLog {
 public:
  explicit ChangeLog(std::size_t limit) noexcept : limit_(limit) {}

  // Recovery only: the store is at revision `base` before any replayed record; the log
  // serves revisions after it (from 1 for an empty store).
  void reset(Revision base);

  // CL2/CL3. May throw bad_alloc (nothing inserted then). The groups it evicts are released
  // after mu_ is unlocked.
  void insert(std::shared_ptr<const ChangeGroup> group);

  // The in-memory part of a read: q.from >= first_kept() (else `compacted` is set with
  // compact_revision = first_kept()). Only groups <= visible (CL1).
  ChangeBatch read(const ChangeQuery& q, Revision visible) const;

  Revision first_kept() const;
  ChangeLogStats stats() const;

 private:
  // The groups evicted by one insert, released when it goes out of scope (after mu_).
  struct Evicted {
    static constexpr std::size_t kInline = 4;
    std::shared_ptr<const ChangeGroup> first[kInline];
    std::size_t n = 0;
    std::vector<std::shared_ptr<const ChangeGroup>> more;  // past kInline (rare)
    void add(std::shared_ptr<const ChangeGroup>&& g);
  };
  void evict_locked(Evicted& out);

  // A group and its revision, kept beside it so that finding a revision reads no group.
  struct Entry {
    Revision revision;
    std::shared_ptr<const ChangeGroup> group;
  };

  const std::size_t limit_;
  mutable std::mutex mu_;
  std::deque<Entry> groups_;  // CL2: strictly increasing revisions
  std::size_t bytes_ = 0;
  Revision first_kept_ = 1;
  std::uint64_t evicted_ = 0;
};

inline std::unique_ptr<ChangeLog> make_change_log(std::size_t limit) {
  return limit == 0 ? nullptr : std::make_unique<ChangeLog>(limit);
}

// A put or delete of one WAL commit record, as decoded by recovery (shared so that both
// read the log the same way).
struct WalCommitOp {
  bool put = false;
  std::string_view key;
  std::string_view value;
  Revision create_rev = 0;
  std::int64_t version = 0;
  std::uint64_t lease = 0;
};
// Decodes a kRecCommit payload (recovery.cpp, the decoder recovery itself uses). False when
// malformed.
bool decode_wal_commit(std::string_view payload, Revision* rev, std::vector<WalCommitOp>* ops);

// Builds one group in one allocation. `events` and `data` must be exact: the number of add()
// calls and the sum of the key/value/prev_value sizes of the events added.
class ChangeGroupBuilder {
 public:
  ChangeGroupBuilder(Revision revision, bool has_prev, std::size_t events, std::size_t data);
  // Copies `e` into the group and its strings into the group's bytes (e's views may point
  // anywhere; they are not kept).
  void add(const ChangeEvent& e) noexcept;
  // The group, with its charge against the history limit set. The builder is spent.
  std::shared_ptr<const ChangeGroup> finish() noexcept;

 private:
  std::shared_ptr<ChangeGroup> group_;
  ChangeEvent* events_ = nullptr;
  std::size_t n_ = 0;
  char* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// The charge of one event against the history limit.
inline std::size_t change_event_bytes(const ChangeEvent& e) noexcept {
  return kChangeEventOverhead + e.key.size() + e.value.size() + e.prev_value.size();
}

}  // namespace kv::storage::detail
