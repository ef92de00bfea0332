// kovan/detail/runtime.hpp — the per-thread record and the fast paths of pin, unpin and
// the protected load, inlined into callers. Everything else is in kovan/src/kovan.cpp,
// whose header comment states the invariants (I1-I11) and the fence pairs (X, Y, F) that
// the comments below refer to. Not part of the public API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "kovan/detail/dwcas.hpp"
#include "kovan/detail/test_hooks.hpp"

namespace kovan {
struct Node;
}  // namespace kovan

namespace kovan::detail {

// Slot list values: nullptr (the zero value, so static records start inactive) means
// INACTIVE; empty_list() ends an active list.
inline Node* empty_list() noexcept { return reinterpret_cast<Node*>(std::uintptr_t{1}); }
inline bool is_list_node(Node* l) noexcept { return l != nullptr && l != empty_list(); }

struct Slot {
  std::atomic<Node*> list{nullptr};  // nullptr = INACTIVE
  std::atomic<std::uint64_t> era{0};
};

struct Batch {
  Node* first = nullptr;  // newest node; the chain runs first -> ... -> refs via batch_next
  Node* refs = nullptr;   // counting node (the oldest)
  std::uint64_t min_birth = 0;
  std::uint32_t count = 0;
};

// A counter written only by its record's owner: relaxed load + store, no locked instruction.
struct OwnerCounter {
  std::atomic<std::uint64_t> v{0};
  void add(std::uint64_t d) noexcept {
    v.store(v.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

struct alignas(128) ThreadRec {
  // Shared: read by every retirer, written by the owner, by attachers (list) and helpers (era).
  Slot main;
  Slot helper;
  // Slow path words, on their own line: {src, tag} and {pointer or kPending, tag}.
  alignas(64) DWord request{0, 0};
  DWord result{0, 0};
  // While this thread, helping, may read a requester's source: that source's address.
  // ~Atomic of that source waits until it changes (wait_for_helpers in kovan.cpp).
  std::atomic<const void*> reading{nullptr};
  std::atomic<bool> in_use{false};
  // Orphaned nodes (linked by batch_next): pushed only by this record's owner (one exchange
  // and one store), taken whole by any adopter (one exchange).
  std::atomic<Node*> orphans{nullptr};
  // Finished nodes this record's owner left undeleted after its quota (linked by
  // batch_next; the head's slot_next holds the tail): pushed only by the owner, taken
  // whole by any thread, which deletes them kFreeQuota per operation.
  std::atomic<Node*> ready{nullptr};
  // Counters (owner-written; summed by stats()).
  OwnerCounter retired, reclaimed, slow_loads, helps;
  // Owner-only state.
  alignas(64) std::uint32_t depth = 0;
  // The thread exited while guards on this record were still alive: the record stays
  // claimed until the last of them is destroyed (release_detached), so it is never reused
  // with a nesting depth that belongs to guards of the previous owner.
  bool detached = false;
  std::uint64_t pub_era = 0;  // the era this thread last published itself (I1)
  std::uint64_t tag = 0;      // last request tag (I5)
  std::uint32_t since_try = 0;
  bool in_help = false;
  bool in_attach = false;
  Batch batch;
  // Nodes of finished batches waiting to be deleted, oldest first, linked by batch_next:
  // deleted at most kFreeQuota per retire or unpin, and all by flush() and thread exit.
  Node* free_head = nullptr;
  Node* free_tail = nullptr;
  bool in_drain = false;
  // Orphans taken from some record and not yet moved into the partial batch.
  Node* adopted = nullptr;
  std::uint32_t adopt_cursor = 0;
  std::uint32_t ready_cursor = 0;
};

// THE NODE CACHE. Memory for Node-derived objects (Node::operator new/delete) goes through a
// per-thread cache: one LIFO list per 16-byte size class up to kCacheMaxBytes, at most
// kCacheDepth blocks each. A batch of nodes finished at once lands there and the thread's
// next allocations take it back without glibc (whose own per-thread cache holds only 7
// blocks per size, so a batch of 64 went through its shared bins). Owner-only: no atomics.
// A block in class c has room for (c + 1) * 16 bytes (it was allocated at that size).
// Emptied (blocks back to ::operator delete) and disabled by the thread's exit step, so
// nothing is kept after a thread exits; a thread that frees nodes without otherwise using
// kovan is given the exit step too. Bypassed in AddressSanitizer builds (KOVAN_NODE_CACHE 0)
// so that ASan's quarantine keeps catching use-after-free of nodes.
#ifndef KOVAN_NODE_CACHE
#if defined(__SANITIZE_ADDRESS__)
#define KOVAN_NODE_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KOVAN_NODE_CACHE 0
#endif
#endif
#endif
#ifndef KOVAN_NODE_CACHE
#define KOVAN_NODE_CACHE 1
#endif

inline constexpr std::size_t kCacheClassBytes = 16;
inline constexpr std::size_t kCacheClasses = 16;  // blocks of 16 .. 256 bytes
inline constexpr std::size_t kCacheMaxBytes = kCacheClassBytes * kCacheClasses;
inline constexpr std::uint32_t kCacheDepth = 128;  // blocks per class (2 * kRetireBatch)

struct NodeCache {
  void* head[kCacheClasses];  // each block's first word links to the next
  std::uint32_t count[kCacheClasses];
  bool hooked;    // the thread's exit step will run (pthread key set)
  bool disabled;  // the exit step emptied the cache: frees go to ::operator delete
};
extern thread_local constinit NodeCache tl_cache;

void* cache_alloc_slow(std::size_t size);
void cache_free_slow(void* p, std::size_t size) noexcept;

inline void* cache_alloc(std::size_t size) {
#if KOVAN_NODE_CACHE
  const std::size_t c = (size - 1) / kCacheClassBytes;
  if (c < kCacheClasses) {
    NodeCache& nc = tl_cache;
    void* p = nc.head[c];
    if (p != nullptr) {
      nc.head[c] = *static_cast<void**>(p);
      --nc.count[c];
#ifdef KOVAN_TEST_HOOKS
      test::cached_blocks.fetch_sub(1, std::memory_order_relaxed);
#endif
      return p;
    }
  }
#endif
  return cache_alloc_slow(size);
}

inline void cache_free(void* p, std::size_t size) noexcept {
#if KOVAN_NODE_CACHE
  const std::size_t c = (size - 1) / kCacheClassBytes;
  NodeCache& nc = tl_cache;
  if (c < kCacheClasses && nc.count[c] < kCacheDepth && nc.hooked) {
    *static_cast<void**>(p) = nc.head[c];
    nc.head[c] = p;
    ++nc.count[c];
#ifdef KOVAN_TEST_HOOKS
    test::cached_blocks.fetch_add(1, std::memory_order_relaxed);
#endif
    return;
  }
#endif
  cache_free_slow(p, size);
}

extern std::atomic<std::uint64_t> g_era;
// Helpers inside help() (kovan.cpp); read by ~Atomic.
extern std::atomic<std::uint64_t> g_helpers_active;
// The calling thread's record, or null before its first use of kovan. constinit: no
// dynamic initialisation, so reading it needs no TLS wrapper call.
extern thread_local constinit ThreadRec* tl_rec;

ThreadRec* register_thread() noexcept;
void traverse(ThreadRec* me, Node* l) noexcept;
void release_detached(ThreadRec* me) noexcept;
void raise_reservation(ThreadRec* me, std::uint64_t era) noexcept;
void wait_for_helpers(const void* src) noexcept;
Node* protect_slow(ThreadRec* me, const std::atomic<Node*>& src, std::memory_order order,
                   std::uint64_t s) noexcept;

inline ThreadRec* enter() noexcept {
  ThreadRec* me = tl_rec;
  if (me == nullptr) me = register_thread();
  if (me->depth++ == 0) {
    const std::uint64_t e = g_era.load(std::memory_order_acquire);
    me->main.era.store(e, std::memory_order_relaxed);
    me->pub_era = e;
    me->main.list.store(empty_list(), std::memory_order_relaxed);
    // Fence X (pin): pairs with Y; the era and the activation above are ordered before
    // every pointer read under this guard.
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  return me;
}

inline void leave(ThreadRec* me) noexcept {
  if (--me->depth == 0) {
    // acq_rel: acquire pairs with attachers' release CAS (we walk their nodes); release
    // orders our reads under the guard before a retirer that sees the slot INACTIVE.
    Node* l = me->main.list.exchange(nullptr, std::memory_order_acq_rel);
    // Releases the detached list and deletes at most kFreeQuota queued nodes.
    if (is_list_node(l) || me->free_head != nullptr) traverse(me, l);
    if (me->detached) release_detached(me);  // the last guard of an exited thread
  }
}

// Makes the calling thread's reservation cover a node born at `birth`, which the caller
// can still access (its own, or protected) and is about to publish or has just unlinked.
// Only when the published era is older than the birth: then a raise and fence X.
inline void cover_birth(ThreadRec* me, std::uint64_t birth) noexcept {
  if (birth > me->pub_era) raise_reservation(me, birth);
}

// After an exchange or CAS that removed a node from a location (under a guard that was
// active before it): the node was born at or before every later reading of the clock, so if
// the clock is still within the published era the node is covered already; otherwise the
// reservation is raised to the clock (see Atomic::exchange for when that is enough).
inline void cover_removed(ThreadRec* me) noexcept {
  // acquire: as in protect(); coherence orders this read after the node's birth stamp.
  const std::uint64_t g = g_era.load(std::memory_order_acquire);
  if (g > me->pub_era) raise_reservation(me, g);
}

// Called by ~Atomic: waits while a helper may still read this source (kovan.cpp).
inline void before_destroy(const void* src) noexcept {
  // seq_cst: pairs with the helper's seq_cst increment and its fence X before it re-checks
  // the request (see wait_for_helpers). On x86-64 a seq_cst load is a plain load.
  if (g_helpers_active.load(std::memory_order_seq_cst) != 0) wait_for_helpers(src);
}

// The first try of a protected load, inlined; the rest of the fast path and the helped
// slow path are in protect_slow.
inline Node* protect(ThreadRec* me, const std::atomic<Node*>& src,
                     std::memory_order order) noexcept {
  if (order == std::memory_order_relaxed || order == std::memory_order_consume) {
    order = std::memory_order_acquire;
  }
  const std::uint64_t s = me->pub_era;
#ifdef KOVAN_TEST_HOOKS
  if (test::fast_path_tries.load(std::memory_order_relaxed) == 0) {
    return protect_slow(me, src, order, s);
  }
#endif
  Node* p = src.load(order);
  // p was built before it was published to src, so its birth <= g (clock coherence).
  const std::uint64_t g = g_era.load(std::memory_order_acquire);
  if (g <= s) return p;
  return protect_slow(me, src, order, s);
}

}  // namespace kovan::detail
