// storage/src/index.hpp — the ordered index (a concurrent skip list of KeyNodes whose removed
// nodes are reclaimed through kovan) and the per-key version chains hanging off it. Internal
// to the storage engine.
//
// The skip list is an optimistic "lazy" skip list (Herlihy, Lev, Luchangco and Shavit, 2007):
// readers take no locks; inserts and removals lock the few predecessor nodes they change
// (short spin locks, ordered by key, never held across anything but pointer stores); a node
// is first *marked* (logically removed) and then unlinked at every level under those locks.
//
// INVARIANTS
// ----------
// I1. Every dereference of a KeyNode happens under a kovan::Guard, and every KeyNode pointer
//     is obtained by a protected load (kovan::Atomic<KeyNode>::load) of a link — or, for a
//     node the caller just inserted, is covered by a protected load made after its birth. A KeyNode
//     is retired exactly once, by the thread that removed it (remove()), after it is unlinked at
//     every level. KeyNode* never outlives the guard it was loaded under (transactions keep
//     keys, not nodes, in their read sets).
// I2. Every level-l list is sorted by key (byte-wise, unsigned) with no duplicates, and is a
//     sublist of level l-1. A node is linked bottom-up, all levels under its predecessors'
//     link locks, then flagged `fully_linked`. At most one node per key is linked at a time:
//     an insert that meets a marked node of its key waits until that node is unlinked.
// I3. `marked` is set once, under the node's own link lock, by the node's single remover,
//     and only on a fully linked node. A marked node's links never change again (changing a
//     node's links requires its lock and that it is unmarked), and an unmarked linked node
//     points at every level to a node that is linked at that level (or null): unlinking a
//     node rewrites its predecessor's link under the predecessor's lock.
// I4. Readers step from x to x.next[l] only if x is unmarked after the load of the link
//     (`step`); otherwise they restart from the head. So a node a reader reaches was linked
//     when its pointer was read, and its retirement is preceded (happens-before) by a change
//     the reader's read was coherence-ordered before — which, with kovan's fences, makes the
//     retiring thread see the reader's era (docs/STORAGE.md, "Why readers are safe").
// I5. A chain is ordered newest first by commit_ts, strictly decreasing. Only the holder of
//     the key's commit lock (KeyNode::owner) changes the chain: installers replace `head`,
//     pruners rewrite `next` links below the head (and may empty a chain whose head is a
//     tombstone, engine_impl.hpp E8).
//     Every version's fields are immutable once published, except `next`. A version's
//     `next` always points to an older (earlier-born) version.
// I6. A node is removed only by the holder of its commit lock, when its chain is empty and
//     the node is fully linked; the remover then sets `owner` to kDeadOwner for good (so no
//     transaction can lock it again) before marking it. The engine's owner protocol is in
//     engine_impl.hpp (E6).
// I7. The hash table (find()'s fast path) holds exactly the nodes that are inserted and not
//     yet removed: a node joins its bucket's chain before it is flagged fully_linked (so
//     before anyone can remove it) and leaves it in remove(), after it is marked and before
//     it is retired. A node's hash_next changes only while it is in a chain, under its
//     bucket's lock (and, during a growth, the locks the migrator holds, I8). Readers walk a
//     chain like a level of the skip list (I4): they step from n to n.hash_next only if n is
//     unmarked after the load, else they fall back to the skip list; and they return a node
//     only if it is unmarked and fully linked. So the table is a hint: a miss or a doubt is
//     answered by the skip list, and a hit is the node the skip list would have returned at
//     that moment. A hash_next always points to a node that entered the table earlier than
//     the node holding it (inserts push at a chain's head; erase and migration only splice
//     out or keep relative order), so every walk ends.
// I8. Growth (docs/STORAGE.md, "The hash hint grows"). The table starts at kMinHashBuckets
//     buckets and doubles when the nodes outnumber kMaxLoad x buckets. A growth is run by one
//     thread at a time (the inserter that wins `resizing_`), bucket by bucket, while readers
//     and writers go on:
//      a. The new table T2 (2N buckets, all empty and unmoved) is published in `next_table_`
//         before any bucket moves; `table_` still names the old table T1.
//      b. Old bucket i moves under three locks: T1[i], then T2[i] and T2[i+N]. The migrator
//         splits the chain by hash bit N keeping relative order, stores the two halves in
//         T2[i] and T2[i+N], empties T1[i], then sets T1[i].moved (never cleared).
//      c. Writers (hash_insert, hash_erase) lock the bucket of their hash in `table_`; if it
//         is moved, they unlock and retry in `next_table_` (or `table_` again, once the
//         growth is over). So a node is always in exactly one chain: T1[i] until that bucket
//         moves, T2's after; and T2[j] gets nodes only after its source bucket moved.
//      d. A reader that finds T1[i] empty and moved looks in T2 once; otherwise it falls
//         back to the skip list. A reader that was walking T1[i]'s chain when it moved just
//         walks on (into a T2 chain): a miss there is a fall-back, never a wrong answer.
//      e. When every bucket has moved: `table_` = T2, then `next_table_` = null, then T1 is
//         retired through kovan. Tables are only ever loaded through a guard from `table_`
//         or `next_table_` (never through another table), so kovan's rule holds: T1 is
//         retired after it is unlinked from both. T2 is never retired while reachable.
//      f. Safety of a reader standing on a node whose hash_next the migrator rewrote: the
//         reader read the old link, which is coherence-ordered before the migrator's store;
//         that store happens-before any later erase of the old successor (the eraser takes
//         a lock the migrator released after it), hence before its retirement: the I4
//         argument holds unchanged (docs/STORAGE.md).
//
// Memory orders (pairs):
//  * link stores that publish a node or unlink one: release; every link load: acquire
//    (kovan::Atomic::load), pairing with them, so a reader that reaches a node sees its key,
//    its tower and its flags' initial values.
//  * `marked` store: release; loads in `step` and in the insert/remove validation: acquire,
//    pairing with it (validation under a predecessor's lock also gets it from the lock).
//  * `fully_linked` store: release after the last link store; load: acquire, pairing with
//    it, so a node found fully linked is linked at every level.
//  * link lock, bucket lock, `resizing_`: acquire on taking, release on giving back.
//  * bucket head / hash_next stores (insert, erase, migration): release; loads by readers:
//    acquire (kovan::Atomic::load), pairing with them (a reader sees the node's fields).
//  * `next_table_` store of T2 (I8a): release; pairs with the acquire load made by readers
//    and writers after they saw a moved bucket (so they get T2, never an older value).
//  * `moved` store (I8b): release after the bucket's head and T2's heads are written; load:
//    acquire, pairing with it: a reader that sees `moved` sees `next_table_` = T2 (or what
//    replaced it, I8e) and T2's heads of that bucket.
//  * `table_` store of T2 then `next_table_` store of null (I8e): both release; a thread
//    that loads `next_table_` (acquire) and gets null after seeing a moved bucket loads
//    `table_` next and gets T2 or newer (the null was stored after T2, release/acquire).
#pragma once

#include <kovan/kovan.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

#include "storage/engine.hpp"

namespace kv::storage::detail {

// One committed version of one key, in one allocation: the fields below, then the value's
// bytes (Version::make copies them once, straight from the caller's buffer). Created with
// make(), freed with delete (kovan::retire, std::unique_ptr, or directly when no other thread
// can reach it): the class's operator delete frees the whole block.
//
// Layout (x86-64): the 32-byte kovan header, five 8-byte words (commit timestamp, create
// revision, version, lease, next), the 4-byte value length and the tombstone flag: sizeof 80;
// with a 100-byte value one 180-byte block, which glibc serves from its 192-byte class
// (before: a 120-byte Version plus a separate 101-byte std::string buffer, 128 + 112 bytes of
// chunks). docs/BENCHMARKS.md, "Memory per key".
struct Version final : kovan::Node {
  // Allocates and constructs a version holding a copy of `val`. Throws std::bad_alloc when
  // out of memory or for a value of 4 GiB or more (its length has 32 bits): a commit treats
  // both alike, nothing applied (commit.cpp, E7). Nothing stays allocated then.
  static Version* make(Revision ts, Revision create, std::int64_t ver, bool tomb,
                       std::string_view val, std::uint64_t lease_id = 0) {
    if (val.size() > UINT32_MAX) throw std::bad_alloc();
    return new (val.size()) Version(ts, create, ver, tomb, val, lease_id);
  }
  static void operator delete(void* p) noexcept { ::operator delete(p); }
  static void operator delete(void* p, std::size_t /*value_bytes*/) noexcept {
    ::operator delete(p);  // the placement form: a constructor threw (it cannot; kept paired)
  }

  const Revision commit_ts;
  const Revision create_rev;   // 0 for a tombstone
  const std::int64_t version;  // 0 for a tombstone
  // The lease the key is attached to (0: none; always 0 for a tombstone).
  const std::uint64_t lease;
  kovan::Atomic<Version> next;  // the next older version (or null)
  const std::uint32_t value_size;
  const bool tombstone;

  // The value's bytes, right after the fields (immutable, as the fields: I5).
  std::string_view value() const noexcept {
    return {reinterpret_cast<const char*>(this) + sizeof(Version), value_size};
  }
  std::size_t footprint() const noexcept { return sizeof(Version) + value_size; }

 private:
  static void* operator new(std::size_t size, std::size_t value_bytes) {
    return ::operator new(size + value_bytes);
  }
  Version(Revision ts, Revision create, std::int64_t ver, bool tomb, std::string_view val,
          std::uint64_t lease_id)
      : commit_ts(ts),
        create_rev(create),
        version(ver),
        lease(lease_id),
        value_size(static_cast<std::uint32_t>(val.size())),
        tombstone(tomb) {
    if (!val.empty())
      std::memcpy(reinterpret_cast<char*>(this) + sizeof(Version), val.data(), val.size());
  }
};

// A key in the index. Allocated with its tower of `height` links right after it; created
// with make(), freed by kovan (retire) or, when no other thread can reach it, by destroy().
class KeyNode final : public kovan::Node {
 public:
  static constexpr int kMaxHeight = 20;
  using Link = kovan::Atomic<KeyNode>;

  static KeyNode* make(std::string_view key, int height) {
    return new (height, key.size()) KeyNode(key, height);
  }
  // Only when no other thread can reach the node (engine destruction).
  static void destroy(KeyNode* n) noexcept { delete n; }

  // The tower's links are destroyed with the node (~Atomic may wait for a kovan helper that
  // is still reading one, kovan.hpp) and freed with it.
  ~KeyNode() {
    for (int i = 0; i < height; ++i) tower()[i].~Link();
  }
  static void operator delete(void* p) noexcept { ::operator delete(p); }
  static void operator delete(void* p, int /*height*/, std::size_t /*key_bytes*/) noexcept {
    ::operator delete(p);
  }

  Link& next(int level) noexcept { return tower()[level]; }
  const Link& next(int level) const noexcept { return tower()[level]; }

  std::size_t footprint() const noexcept {
    return sizeof(KeyNode) + static_cast<std::size_t>(height) * sizeof(Link) + key.size();
  }

  void lock() noexcept {
    // acquire: pairs with unlock()'s release (we see the links written under the lock).
    for (int spins = 1; link_lock_.exchange(true, std::memory_order_acquire); ++spins) {
      // Held for a few link stores; yield now and then in case the holder was preempted.
      if (spins % 64 == 0) std::this_thread::yield();
    }
  }
  void unlock() noexcept { link_lock_.store(false, std::memory_order_release); }

  // The key's bytes live in the same allocation, after the tower: a comparison while
  // searching touches the node's own memory, not a separate string buffer.
  //
  // Layout (x86-64): the 32-byte kovan header, the key's view, three 8-byte words, then the
  // 32-bit hash, the height and the three flags in one more word: sizeof 80 (before: 112).
  // With its tower and a 16-byte key, a node of height 1 or 2 (15 of 16 nodes) is one
  // 104- or 112-byte block (glibc's 112- and 128-byte classes; before 128 and 144).
  const std::string_view key;
  // Point-lookup hash chain (SkipList's hash table, I7).
  kovan::Atomic<KeyNode> hash_next;
  kovan::Atomic<Version> head;          // newest installed version (or null)
  std::atomic<std::uint64_t> owner{0};  // commit lock: 0 free, else the owner's id
  // hash_of(key): the low 32 bits of the key's hash. The table (I8) uses bit log2(buckets)
  // when it splits a bucket, so it spreads keys up to 2^32 buckets (8 G keys at kMaxLoad 2);
  // past that a split keeps every node in its lower half, which only lengthens chains.
  const std::uint32_t hash;
  const std::uint8_t height;              // links in the tower, 1..kMaxHeight
  std::atomic<bool> marked{false};        // logically removed (I3)
  std::atomic<bool> fully_linked{false};  // linked at every level (I2)

  static std::uint32_t hash_of(std::string_view k) noexcept {
    return static_cast<std::uint32_t>(std::hash<std::string_view>{}(k));
  }

 private:
  static void* operator new(std::size_t size, int height, std::size_t key_bytes) {
    return ::operator new(size + static_cast<std::size_t>(height) * sizeof(Link) + key_bytes);
  }
  KeyNode(std::string_view k, int h)
      : key(copy_key(k, h)), hash(hash_of(k)), height(static_cast<std::uint8_t>(h)) {
    for (int i = 0; i < h; ++i) ::new (tower() + i) Link();
  }
  // Copies the key's bytes behind the tower of height h and returns a view of them.
  std::string_view copy_key(std::string_view k, int h) noexcept {
    char* dst = reinterpret_cast<char*>(this) + sizeof(KeyNode) +
                static_cast<std::size_t>(h) * sizeof(Link);
    if (!k.empty()) std::memcpy(dst, k.data(), k.size());
    return {dst, k.size()};
  }
  Link* tower() noexcept {
    return std::launder(reinterpret_cast<Link*>(reinterpret_cast<char*>(this) + sizeof(KeyNode)));
  }
  const Link* tower() const noexcept {
    return std::launder(
        reinterpret_cast<const Link*>(reinterpret_cast<const char*>(this) + sizeof(KeyNode)));
  }

  std::atomic<bool> link_lock_{false};
};
static_assert(sizeof(KeyNode) % alignof(KeyNode::Link) == 0);
static_assert(KeyNode::kMaxHeight <= UINT8_MAX);

// Concurrent skip list of KeyNodes. Every call that returns or takes a KeyNode* takes the
// caller's guard; the pointer is valid while that guard lives. Reads are lock-free (a read
// restarts from the head only when it stands on a node that a concurrent remove marked);
// find_or_insert and remove take short per-node link locks.
class SkipList {
 public:
  SkipList();
  ~SkipList();  // destroys every linked node (not their chains: the engine does that first)
  SkipList(const SkipList&) = delete;
  SkipList& operator=(const SkipList&) = delete;

  KeyNode* find(std::string_view key, const kovan::Guard& g) const noexcept;  // exact or null
  KeyNode* lower_bound(std::string_view key, const kovan::Guard& g) const noexcept;  // >= key
  KeyNode* upper_bound(std::string_view key, const kovan::Guard& g) const noexcept;  // > key
  KeyNode* last_less(std::string_view key, const kovan::Guard& g) const noexcept;    // < key
  KeyNode* last(const kovan::Guard& g) const noexcept;
  KeyNode* first(const kovan::Guard& g) const noexcept;
  // The node after n at level 0 (n reached under g). If n was removed meanwhile, the first
  // node with a key greater than n's.
  KeyNode* next(const KeyNode* n, const kovan::Guard& g) const noexcept;

  // Returns the node for `key`, inserting it if absent. `inserted` tells which. The node may
  // be removed by its commit-lock holder at any time after this returns (I6).
  KeyNode* find_or_insert(std::string_view key, const kovan::Guard& g, bool* inserted);
  // Unlinks n at every level and retires it. Precondition (I6): the caller holds n's
  // commit lock, set it to the dead owner, n is fully linked and its chain is empty.
  void remove(KeyNode* n, const kovan::Guard& g) noexcept;

  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

  // The hash table's shape (I8). Safe at any time (takes one bucket lock at a time), exact
  // only when no insert or removal runs.
  struct HashStats {
    std::size_t buckets = 0;        // of the current table
    std::size_t nodes = 0;          // in its chains
    std::size_t longest_chain = 0;  // nodes in the longest chain
    std::uint64_t growths = 0;      // completed doublings since construction
  };
  HashStats hash_stats() const;
  // Whether find()'s fast path alone has `key` (a diagnostic for tests: when quiescent, it
  // has every key of the skip list).
  bool hash_has(std::string_view key) const noexcept;
  static constexpr std::size_t kMinHashBuckets = std::size_t{1} << 10;
  static constexpr std::size_t kMaxLoad = 2;  // nodes per bucket that trigger a doubling

  // Exclusive access only (engine destruction): level-0 walk without guards.
  KeyNode* first_unprotected() const noexcept {
    return head_->next(0).load_unprotected(std::memory_order_acquire);
  }
  static KeyNode* next_unprotected(const KeyNode* n) noexcept {
    return n->next(0).load_unprotected(std::memory_order_acquire);
  }

 private:
  // preds[l]->key < key <= succs[l]->key at every level below `top`; returns the highest
  // level at which succs[l] has exactly `key`, or -1.
  int find_preds(std::string_view key, KeyNode** preds, KeyNode** succs,
                 const kovan::Guard& g) const noexcept;
  // Loads x.next[level] into *out; false if x was marked (the caller restarts): I4.
  static bool step(const KeyNode* x, int level, KeyNode** out, const kovan::Guard& g) noexcept;
  int top() const noexcept { return max_height_.load(std::memory_order_relaxed); }
  static int random_height() noexcept;

  // The hash table that speeds up find() (I7, I8): a bucket's chain links KeyNodes through
  // hash_next; writers of a bucket take its lock, readers take none.
  struct Bucket {
    kovan::Atomic<KeyNode> head;
    std::atomic<bool> lock{false};
    std::atomic<bool> moved{false};  // its chain went to the next table (I8b); never cleared
  };
  // One bucket array; retired through kovan after a growth replaced it (I8e).
  struct Table final : kovan::Node {
    explicit Table(std::size_t n) : mask(n - 1), buckets(std::make_unique<Bucket[]>(n)) {}
    std::size_t size() const noexcept { return mask + 1; }
    Bucket& at(std::uint64_t hash) const noexcept { return buckets[hash & mask]; }
    const std::size_t mask;  // size - 1; the size is a power of two
    const std::unique_ptr<Bucket[]> buckets;
  };
  // The node of `key` if the hash table has it unmarked and fully linked; else null.
  KeyNode* hash_find(std::string_view key, const kovan::Guard& g) const noexcept;
  void hash_insert(KeyNode* n, const kovan::Guard& g) noexcept;
  void hash_erase(KeyNode* n, const kovan::Guard& g) noexcept;
  // Locks and returns the bucket that holds (or will hold) the nodes of `hash` (I8c).
  Bucket& lock_home(std::uint64_t hash, const kovan::Guard& g) const noexcept;
  // Grows the table if the nodes outnumber kMaxLoad x buckets and no growth is running.
  void maybe_grow(const kovan::Guard& g);
  // Moves every bucket of `from` into `to` (2x its size), I8b.
  static void migrate(Table* from, Table* to) noexcept;
  static void lock_bucket(Bucket& b) noexcept;
  static void unlock_bucket(Bucket& b) noexcept;

  kovan::Atomic<Table> table_;         // the current table (I8)
  kovan::Atomic<Table> next_table_;    // the table a growth moves buckets into, or null
  std::atomic<bool> resizing_{false};  // one growth at a time (I8)
  // Keys above which the next growth is due (kMaxLoad x buckets): a hint read on each insert.
  std::atomic<std::size_t> grow_at_{kMaxLoad * kMinHashBuckets};

  KeyNode* head_;                   // sentinel, key "" ordered before every key; never marked
  std::atomic<int> max_height_{1};  // a hint: levels at or above it are empty
  std::atomic<std::size_t> size_{0};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::uint64_t> growths_{0};
};

}  // namespace kv::storage::detail
