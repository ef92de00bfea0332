// storage/src/index.hpp — the ordered index (an insert-only lock-free skip list) and the
// per-key version chains hanging off it. Internal to the storage engine.
//
// INVARIANTS
// ----------
// I1. Index nodes are never removed while the engine lives: a KeyNode*, once found, stays
//     valid until the engine is destroyed (so transactions may keep KeyNode* in their read
//     sets, and index traversal needs no reclaimer guard). A deleted key keeps its node; its
//     chain shrinks to nothing once no snapshot can see it (see prune in engine.cpp).
// I2. Every level-l list is sorted by key (byte-wise, unsigned) with no duplicates, and is a
//     sublist of level l-1. A node becomes reachable at level 0 first (the linearization
//     point of insertion), then at higher levels.
// I3. A chain is ordered newest first by commit_ts, strictly decreasing. Only the holder of
//     the key's commit lock (KeyNode::owner != 0) changes the chain: installers replace
//     `head`, pruners rewrite `next` links below the head (and may clear a lone tombstone
//     head). Every version's fields are immutable once published, except `next`.
// I4. A version is reachable by readers only through `head`/`next` loads made with a kovan
//     guard; unlinked versions are handed to kovan::retire after the link that reached them
//     was overwritten, so a reader that already holds one can still follow its (intact)
//     `next` links to the versions that remained.
#pragma once

#include <kovan/kovan.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>

#include "storage/engine.hpp"

namespace kv::storage::detail {

// One committed version of one key.
struct Version final : kovan::Node {
  Version(Revision ts, Revision create, std::int64_t ver, bool tomb, std::string_view val)
      : commit_ts(ts), create_rev(create), version(ver), tombstone(tomb), value(val) {}

  const Revision commit_ts;
  const Revision create_rev;   // 0 for a tombstone
  const std::int64_t version;  // 0 for a tombstone
  const bool tombstone;
  const std::string value;
  kovan::Atomic<Version> next;  // the next older version (or null)

  std::size_t footprint() const noexcept { return sizeof(Version) + value.size(); }
};

// A key in the index. Allocated with its tower of `height` next-pointers right after it.
class KeyNode {
 public:
  static constexpr int kMaxHeight = 20;

  static KeyNode* make(std::string_view key, int height) {
    void* mem = ::operator new(sizeof(KeyNode) + static_cast<std::size_t>(height) * sizeof(Link));
    KeyNode* n = ::new (mem) KeyNode(key, height);
    for (int i = 0; i < height; ++i) ::new (n->tower() + i) Link(nullptr);
    return n;
  }
  // Only when no other thread can reach the node (engine destruction, or a node that lost
  // the insertion race and was never published).
  static void destroy(KeyNode* n) noexcept {
    for (int i = 0; i < n->height; ++i) n->tower()[i].~Link();
    n->~KeyNode();
    ::operator delete(n);
  }

  std::atomic<KeyNode*>& next(int level) noexcept { return tower()[level]; }
  const std::atomic<KeyNode*>& next(int level) const noexcept { return tower()[level]; }

  std::size_t footprint() const noexcept {
    return sizeof(KeyNode) + static_cast<std::size_t>(height) * sizeof(Link) + key.size();
  }

  const std::string key;
  const int height;
  kovan::Atomic<Version> head;          // newest installed version (or null)
  std::atomic<std::uint64_t> owner{0};  // commit lock: 0 free, else the owner's id

 private:
  using Link = std::atomic<KeyNode*>;
  KeyNode(std::string_view k, int h) : key(k), height(h) {}
  Link* tower() noexcept {
    return std::launder(reinterpret_cast<Link*>(reinterpret_cast<char*>(this) + sizeof(KeyNode)));
  }
  const Link* tower() const noexcept {
    return std::launder(
        reinterpret_cast<const Link*>(reinterpret_cast<const char*>(this) + sizeof(KeyNode)));
  }
};
static_assert(sizeof(KeyNode) % alignof(std::atomic<KeyNode*>) == 0);

// Insert-only concurrent skip list of KeyNodes. Lookups and traversals are lock-free and
// wait-free apart from retries caused by concurrent inserts at the same position.
class SkipList {
 public:
  SkipList();
  ~SkipList();  // destroys every node (not their chains: the engine does that first)
  SkipList(const SkipList&) = delete;
  SkipList& operator=(const SkipList&) = delete;

  KeyNode* find(std::string_view key) const noexcept;         // exact match or null
  KeyNode* lower_bound(std::string_view key) const noexcept;  // first key >= key
  KeyNode* last_less(std::string_view key) const noexcept;    // last key < key, or null
  KeyNode* last() const noexcept;
  KeyNode* first() const noexcept { return next(head_); }
  static KeyNode* next(const KeyNode* n) noexcept {
    // acquire: pairs with the release CAS that linked the successor (its key and tower
    // are initialized before it is published).
    return n->next(0).load(std::memory_order_acquire);
  }
  // Returns the node for `key`, inserting it if absent. `inserted` tells which.
  KeyNode* find_or_insert(std::string_view key, bool* inserted);
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

 private:
  // Fills preds/succs at every level: preds[l]->key < key <= succs[l]->key.
  void find_preds(std::string_view key, KeyNode** preds, KeyNode** succs) const noexcept;
  static int random_height() noexcept;

  KeyNode* head_;                   // sentinel, key "" ordered before every key
  std::atomic<int> max_height_{1};  // a hint: levels above it are empty
  std::atomic<std::size_t> size_{0};
  std::atomic<std::size_t> bytes_{0};
};

}  // namespace kv::storage::detail
