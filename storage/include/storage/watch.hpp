// storage/watch.hpp — the engine's change feed: what a watcher reads (docs/STORAGE.md,
// section 11; the server protocol is docs/PROTOCOL.md 3.15).
//
// Every committed revision that installed at least one version is one ChangeGroup: the
// revision and one ChangeEvent per key it changed, in key order. Groups are kept in a
// bytes-bounded in-memory log (Options::watch_history_bytes) and, with a data directory,
// can also be read back from the WAL segments still on disk (without the replaced values).
//
// A reader holds a cursor (the next revision it wants) and calls Engine::read_changes; it
// gets the groups with revision >= the cursor that touch its range, never one that a read
// cannot see yet (revision <= the visible revision), each whole, in revision order, and the
// cursor to continue from. A cursor older than everything kept gets `compacted` with the
// oldest revision available.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kv::storage {

using Revision = std::uint64_t;

// One key changed by a revision. `mod_revision` of the new key-value is the group's revision.
// The strings are views into the block of the group that holds the event: valid while the
// group is (a reader keeps the std::shared_ptr as long as it uses them).
struct ChangeEvent {
  std::string_view key;
  bool is_delete = false;
  std::string_view value;        // a put's new value (empty for a delete)
  Revision create_revision = 0;  // a put's; 0 for a delete
  std::int64_t version = 0;      // a put's; 0 for a delete
  std::uint64_t lease = 0;       // a put's lease (0: none)
  // The key-value the change replaced, when the key was live before it (and the group
  // knows it: see ChangeGroup::has_prev).
  bool has_prev = false;
  std::string_view prev_value;
  Revision prev_create_revision = 0;
  Revision prev_mod_revision = 0;
  std::int64_t prev_version = 0;
  std::uint64_t prev_lease = 0;
};

// Built in one allocation (the shared_ptr's control block, this header, the events, then all
// their keys and values: docs/STORAGE.md section 11) and immutable once built. Not copyable:
// a copy's views would point into the original's block.
struct ChangeGroup {
  ChangeGroup() = default;
  ChangeGroup(const ChangeGroup&) = delete;
  ChangeGroup& operator=(const ChangeGroup&) = delete;

  Revision revision = 0;
  // False for a group read from the WAL: its events' has_prev is false because the replaced
  // values are not known, not because the keys were absent.
  bool has_prev = true;
  std::span<const ChangeEvent> events;  // in key order, one per key (in the group's block)
  std::size_t bytes = 0;                // what the group is charged against the history limit
};

// Bytes one event is charged besides its keys and values (strings, vector slot, headers).
inline constexpr std::size_t kChangeEventOverhead = 96;
// Bytes one group is charged besides its events (its log entry, the shared_ptr block and
// the group header): an upper bound.
inline constexpr std::size_t kChangeGroupOverhead = 128;

struct ChangeQuery {
  Revision from = 0;  // the cursor: the first revision wanted
  std::string start;  // the range [start, end); empty end: no upper bound
  std::string end;
  // Events must carry the replaced key-value: never served from the WAL (which does not
  // record it); a cursor older than the in-memory log is then `compacted`.
  bool need_prev = false;
  // Stop after the groups returned reach this many bytes (ChangeGroup::bytes); at least one
  // group is returned when one is due. 0: no byte limit.
  std::size_t max_bytes = 0;
  // Stop after examining this many groups (in range or not); 0: no limit. Bounds the time
  // one call holds the log.
  std::size_t max_scan = 4096;
};

struct ChangeBatch {
  // The groups in revision order that have at least one event in the range (each whole:
  // the caller filters the events by the range).
  std::vector<std::shared_ptr<const ChangeGroup>> groups;
  // Where to continue: every revision in [from, next) was either returned or has no event
  // in the range. next > the visible revision when the reader has caught up.
  Revision next = 0;
  // `from` is older than everything kept (the log, and the WAL when allowed): nothing was
  // returned; `compact_revision` is the oldest revision a reader can start from now.
  bool compacted = false;
  Revision compact_revision = 0;
};

struct ChangeLogStats {
  bool enabled = false;       // watch_history_bytes > 0
  Revision first_kept = 0;    // the oldest revision the in-memory log serves
  std::uint64_t bytes = 0;    // bytes held (ChangeGroup::bytes)
  std::uint64_t groups = 0;   // groups held
  std::uint64_t evicted = 0;  // groups dropped to stay under the limit
};

// True when `key` is inside [start, end) (end empty: no upper bound).
inline bool in_change_range(std::string_view key, std::string_view start,
                            std::string_view end) noexcept {
  return key >= start && (end.empty() || key < end);
}

}  // namespace kv::storage
