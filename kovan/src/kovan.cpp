// kovan runtime: eras, reservation slots, batches, the helped slow path, orphans.
//
// The design, the argument for each step and the memory bound are in docs/RECLAIMER.md;
// the TLA+ model of this file is tla/Reclaimer.tla.
//
// INVARIANTS (numbered as in docs/RECLAIMER.md)
//  I1. g_era only grows. A record's pub_era is a value its owner wrote into its main slot's
//      era before a seq_cst fence; the slot's era is >= pub_era while the slot is active.
//  I2. A node is deleted only when its batch's count reached 0 and no active helper slot
//      has an era >= the batch's minimum birth (otherwise the batch is orphaned).
//  I3. Each batch has at most one node in any slot list; a node is in at most one list.
//  I4. A pointer returned by protect() under a guard was read after a seq_cst fence that
//      followed a write of an era >= the pointer's birth into the guard's (active) slot.
//  I5. A record's tags only grow (they survive reuse of the record); a result word is
//      written only for the tag it was requested with.
//  I6. A thread with no guard has an INACTIVE main slot.
//  I7. A helper reads a requester's source only while its record's `reading` holds the
//      source's address, announced before its fence X and re-check (wait_for_helpers),
//      and cleared (release) after its last read of the source.
//  I8. A record is released (in_use = false) only with depth 0: never while a guard made on
//      it is alive (release_thread, release_detached). Node birth eras never change: a
//      batch's minimum birth is computed from its nodes (free_batch).
//  I9. Deleters (user destructors) run only in drain(), called from retire_node, traverse
//      (unpin), flush and hand_over (thread exit), at most kFreeQuota nodes per retire or
//      unpin. walk, free_batch, emit, try_attach, help and advance_era never run user code
//      and never allocate (except try_attach's padding, which is no user code), so no era
//      advance starts inside help() and no destructor runs inside a Node constructor.
//      A finished batch is queued for drain() only after free_batch found no active helper
//      slot that covers it (I2); a later deletion from the queue or a ready stack is safe.
//  I10. Only a record's owner pushes onto its orphan and ready stacks; others only take a
//      whole stack (exchange). After a retire or an unpin (not nested in a drain) the
//      owner's free queue is empty: the rest is on its ready stack.
//  I11. Every batch has at most B = max(R, s + 1) + s nodes (emit_chunked); a partial batch
//      has at most s + 3R nodes when an attempt starts (s carried, R retired, 2R adopted).
//
//
// THE NODE HEADER (32 bytes; docs/RECLAIMER.md, "The node header"). A node is ALIVE (built,
// not retired), PARTIAL (in its retirer's partial batch or a Chain of try_attach: owner
// only), EMITTED (in a batch pushed onto slots whose count has not reached 0: its COUNTING
// node is the chain's tail, the others are LIST nodes, the first k of them ATTACHED, one per
// slot), ORPHAN (orphan stack or an adopter's `adopted` chain), FREE (a free queue: owner
// only) or READY (a ready stack). Who writes (W) and reads (R) each word, by state:
//
//   word            ALIVE        PARTIAL           EMITTED                    ORPHAN/FREE/READY
//   birth_          W ctor; R    R (min birth,     R (free_batch's min        R by users while
//                   by users     split by birth)   birth; users)              protected
//   slot_or_refs_   -            -                 counting: refs (W emit     READY head only:
//                                                  store 0 + fetch_add, RMW   the stack's tail
//                                                  by walk); attached list:   (W publish_ready,
//                                                  slot link (W emit before   R take_ready_of)
//                                                  its release CAS, R walk)
//   link_and_type_  -            type W retire;    counting: link to first    type R drain (FREE);
//                                link W append     (R free_batch); list:      link unused
//                                (unused)          link to counting (R walk)
//   batch_next_     -            W/R owner         W emit; R emit, free_batch W/R by the chain's
//                                                                             owner
//  H1. slot_or_refs_ is a count only in the counting node of an EMITTED batch (from emit's
//      store(0) to the RMW that brings it to 0), a slot-list link only in an ATTACHED list
//      node (from emit's push to the walk that releases it) or a READY stack's head.
//  H2. A counting node is never attached: emit attaches at most k nodes of a chain of at
//      least k + 1, from the head, and the counting node is the tail. So while a batch is
//      EMITTED its count and its slot links live in different nodes.
//  H3. The top 16 bits of link_and_type_ hold the node's type id from retire to deletion
//      (every write of the link keeps them; drain picks the deleter by them); the low 48
//      bits hold a node address, below 2^48 (checked by retire).
//  H4. A word changes use only after its last use happened-before: a walk reads the list
//      link before its acq_rel decrement; the RMW that finishes a batch happens-after every
//      other RMW on its count, and the batch's nodes reach any later state (own free queue,
//      orphan push with release, adoption with acquire, a new batch) only after it.
//  The birth is shared with nothing and never written after construction (I8): it may be
//  read (birth_era()) at any time the node is protected.
//
//  C1-C4 (the node cache, runtime.hpp): a cached block belongs to one thread and to no live
//      object; a block of class c has room for (c + 1) * 16 bytes (cache_alloc_slow); a
//      class holds at most kCacheDepth blocks; a thread caches only once its exit step will
//      run (claim_record, on_allocate, cache_free_slow set the key), the exit step empties
//      the cache after its last deletion (empty_cache) and later deletions bypass it.
//
// FENCE PAIRS (named in the comments below)
//  X  — reader side: after publishing an era (pin, raise in protect, raise_reservation
//       covering a node an Atomic operation publishes or removes, helper raising a
//       requester's era, helper publishing its helper slot and announcing `reading`),
//       before reading a pointer (or, for raise_reservation, before the publishing store).
//  Y  — retirer side: in try_attach, before scanning the slots.
//  By the seq_cst fence rule, for a node unlinked before Y: either the scan after Y sees the
//  era written before X, or the pointer read after X sees the unlink (so not the node).
//  F  — finisher side: before a batch whose count reached 0 reads helpers_active and the
//       helper slots; pairs with X of a helper publishing its helper slot (see free_batch).
//  The helper's X also orders its `reading` announcement before its re-check of the
//  request, against the seq_cst loads of ~Atomic's wait_for_helpers (an SC-order argument,
//  given there; I7).
#include "kovan/kovan.hpp"

#include <pthread.h>

#include <algorithm>
#include <bitset>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "kovan/detail/dwcas.hpp"
#include "kovan/detail/test_hooks.hpp"

namespace kovan {
namespace detail {

// The runtime's access to Node's private header (the layout and H1-H4 are at the top).
struct Access {
  static constexpr unsigned kTypeShift = 48;
  static constexpr std::uint64_t kLinkMask = (std::uint64_t{1} << kTypeShift) - 1;

  static std::uint64_t birth(const Node* n) noexcept { return n->birth_; }
  // H1: slot_or_refs_ as a list link (attached list node, ready-stack head). Relaxed: the
  // list's publication (the attacher's release CAS, publish_ready's release store) and its
  // detachment (acquire exchange) order these accesses.
  static Node* slot_next(const Node* n) noexcept {
    return reinterpret_cast<Node*>(n->slot_or_refs_.load(std::memory_order_relaxed));
  }
  static void set_slot_next(Node* n, Node* next) noexcept {
    n->slot_or_refs_.store(reinterpret_cast<std::uint64_t>(next), std::memory_order_relaxed);
  }
  // H1: slot_or_refs_ as the count of an emitted batch's counting node (modulo 2^64).
  static std::atomic<std::uint64_t>& refs(Node* n) noexcept { return n->slot_or_refs_; }
  // H3: the batch link keeps the type id in the top bits.
  static Node* batch_link(const Node* n) noexcept {
    return reinterpret_cast<Node*>(n->link_and_type_ & kLinkMask);
  }
  static void set_batch_link(Node* n, Node* link) noexcept {
    n->link_and_type_ = (n->link_and_type_ & ~kLinkMask) | reinterpret_cast<std::uint64_t>(link);
  }
  static std::uint16_t type(const Node* n) noexcept {
    return static_cast<std::uint16_t>(n->link_and_type_ >> kTypeShift);
  }
  static void set_type(Node* n, std::uint16_t type) noexcept {
    n->link_and_type_ = (std::uint64_t{type} << kTypeShift) | (n->link_and_type_ & kLinkMask);
  }
  static Node*& batch_next(Node* n) noexcept { return n->batch_next_; }
};

namespace {

using A = Access;
constexpr std::uint64_t kPending = ~std::uint64_t{0};  // result.lo while a request is open
constexpr std::uint16_t kPaddingType = 0;              // flush()'s padding nodes (Dummy)

// The deleter of each type id (H3). Ids are handed out once and never reused.
std::atomic<void (*)(Node*)> g_deleters[kMaxNodeTypes];
std::atomic<std::uint32_t> g_deleter_count{kPaddingType + 1};

// H3: a batch link shares its word with the type id, so every retired node (and so every
// batch link) must lie below 2^48. x86-64 user addresses do (below 2^47, or 2^56 with 5-level
// paging only where a mapping asks for it with a hint above 2^47): checked on each retire.
void check_address(const Node* n) noexcept {
  if ((reinterpret_cast<std::uint64_t>(n) >> Access::kTypeShift) != 0) {
    std::fprintf(stderr, "kovan: node %p lies above 2^48; its header cannot hold it\n",
                 static_cast<const void*>(n));
    std::abort();
  }
}

}  // namespace

thread_local constinit NodeCache tl_cache{};

alignas(128) std::atomic<std::uint64_t> g_era{1};
alignas(128) std::atomic<std::uint64_t> g_helpers_active{0};
thread_local constinit ThreadRec* tl_rec = nullptr;

namespace {

alignas(128) std::atomic<std::uint64_t> g_slow_counter{0};
alignas(128) std::atomic<std::size_t> g_hwm{0};
ThreadRec g_recs[kMaxThreads];

thread_local std::uint32_t tl_allocs = 0;
// Allocations that exited threads made since their last era step (see carry_allocs).
alignas(128) std::atomic<std::uint64_t> g_alloc_carry{0};

void release_thread(ThreadRec* me) noexcept;
void carry_allocs() noexcept;

// THREAD EXIT. A thread's record is released by the destructor of a pthread key whose value
// is the record. glibc runs key destructors after every thread_local destructor of the
// thread, and runs them again (up to PTHREAD_DESTRUCTOR_ITERATIONS rounds) for keys set
// anew meanwhile. So kovan used from a thread_local destructor, or from another key's
// destructor (which re-registers the thread and sets the key again), is still released.
// A thread_local object with a destructor would not do: a destructor that runs after it
// and uses kovan would register the thread again, and that record would never be released.
// A thread that allocated nodes without ever registering sets the key to kAllocsOnly, so
// that its allocation count is carried over too (carry_allocs).
char g_allocs_only_tag;
void* const kAllocsOnly = &g_allocs_only_tag;

// The thread's exit step: the node cache's blocks go back to ::operator delete, and later
// frees on this thread bypass the cache (a destructor run by a later key destructor).
void empty_cache() noexcept {
  NodeCache& nc = tl_cache;
  nc.disabled = true;
  nc.hooked = false;
  for (std::size_t c = 0; c < kCacheClasses; ++c) {
    while (nc.head[c] != nullptr) {
      void* p = nc.head[c];
      nc.head[c] = *static_cast<void**>(p);
      ::operator delete(p, (c + 1) * kCacheClassBytes);
#ifdef KOVAN_TEST_HOOKS
      test::cached_blocks.fetch_sub(1, std::memory_order_relaxed);
#endif
    }
    nc.count[c] = 0;
  }
}

void on_thread_exit(void* /*rec or kAllocsOnly*/) noexcept {
  // carry_allocs may register the thread (to help an open slow-path request while it
  // advances the era), and release_thread runs destructors that may allocate: repeat until
  // neither leaves anything, so that the record is released in this very call. (glibc calls
  // us once more for a key set meanwhile; tl_rec is null then and tl_allocs is 0.)
  for (;;) {
    carry_allocs();
    ThreadRec* me = tl_rec;
    if (me == nullptr) break;
    release_thread(me);
  }
  empty_cache();
}

constexpr std::uint64_t kNoKey = ~std::uint64_t{0};
std::atomic<std::uint64_t> g_exit_key{kNoKey};

// Creates the key on first use without a lock: racing creators publish by CAS and the
// losers delete their own key.
pthread_key_t exit_key() noexcept {
  // acquire: pairs with the release CAS below (the key exists before its value is seen).
  std::uint64_t k = g_exit_key.load(std::memory_order_acquire);
  if (k != kNoKey) return static_cast<pthread_key_t>(k);
  pthread_key_t mine;
  if (pthread_key_create(&mine, &on_thread_exit) != 0) {
    std::fprintf(stderr, "kovan: cannot create the thread-exit key (pthread_key_create)\n");
    std::abort();
  }
  // acq_rel: release publishes our key; acquire (also on failure) pairs with the winner's.
  if (g_exit_key.compare_exchange_strong(k, mine, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
    return mine;
  }
  pthread_key_delete(mine);
  return static_cast<pthread_key_t>(k);
}
// Created during static initialisation, so that its destructor runs before those of keys
// that users create later (glibc runs key destructors in key order).
[[maybe_unused]] const pthread_key_t g_exit_key_at_start = exit_key();

ThreadRec* claim_record() noexcept {
  for (std::size_t i = 0; i < kMaxThreads; ++i) {
    ThreadRec& r = g_recs[i];
    bool expected = false;
    // acquire: pairs with the release in release_thread, so the previous owner's owner-only
    // fields (batch emptied, depth 0) are visible to the new owner.
    if (!r.in_use.load(std::memory_order_relaxed) &&
        r.in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      std::size_t hwm = g_hwm.load(std::memory_order_relaxed);
      // release: pairs with the acquire loads of g_hwm in scans, so a scanner that covers
      // index i sees the record's initialised slots.
      while (hwm < i + 1 && !g_hwm.compare_exchange_weak(hwm, i + 1, std::memory_order_release,
                                                         std::memory_order_relaxed)) {
      }
      tl_rec = &r;
      // The destructor runs only for a non-null value; it releases the record at exit.
      if (pthread_setspecific(exit_key(), &r) != 0) {
        std::fprintf(stderr, "kovan: cannot register the thread for exit (pthread_setspecific)\n");
        std::abort();
      }
      tl_cache.hooked = !tl_cache.disabled;
      return &r;
    }
  }
  std::fprintf(stderr, "kovan: more than %zu threads at once; raise kovan::kMaxThreads\n",
               kMaxThreads);
  std::abort();
}

inline ThreadRec* self() noexcept {
  ThreadRec* r = tl_rec;
  return r != nullptr ? r : claim_record();
}

// Raises `era` to at least `target` with a read-modify-write that always writes (even when
// the value is already high enough), so that the caller's next fence X orders a
// modification of its own. Relaxed: the fence that follows every call provides the order.
std::uint64_t raise(std::atomic<std::uint64_t>& era, std::uint64_t target) noexcept {
  std::uint64_t cur = era.load(std::memory_order_relaxed);
  while (!era.compare_exchange_weak(cur, std::max(cur, target), std::memory_order_relaxed,
                                    std::memory_order_relaxed)) {
  }
  return std::max(cur, target);
}

void free_batch(ThreadRec* me, Node* refs) noexcept;
void delete_dummy(Node* n) noexcept;
void push_orphans(ThreadRec* me, Node* first, Node* last) noexcept;

// Walks a detached slot list, releasing one reference per node (I3).
void walk(ThreadRec* me, Node* l) noexcept {
  while (is_list_node(l)) {
    // Read both links before the decrement: once it is done, another thread may free l.
    Node* next = A::slot_next(l);
    Node* refs = A::batch_link(l);
    // acq_rel: release orders this thread's reads of the batch's nodes (made under the
    // guard) before the free; acquire makes the attacher's writes and other releasers'
    // reads happen-before our free if we finish the batch. (l is a list node, refs the
    // counting node: two words of two nodes, H1-H2.)
    if (A::refs(refs).fetch_sub(1, std::memory_order_acq_rel) == 1) free_batch(me, refs);
    l = next;
  }
}

// Queues the nodes of a finished batch (first -> ... -> last, last ending the chain) for
// deletion by this thread. No destructor runs here: walks happen inside help() (that is,
// inside an allocation) and inside try_attach; user code runs only in drain().
void enqueue_free(ThreadRec* me, Node* first, Node* last) noexcept {
  A::batch_next(last) = nullptr;
  if (me->free_tail == nullptr) {
    me->free_head = first;
  } else {
    A::batch_next(me->free_tail) = first;
  }
  me->free_tail = last;
}

// Deletes up to `quota` queued nodes, oldest first; returns how many. Not re-entrant: a
// destructor that retires, pins or flushes does not delete more from inside (its own
// work is queued and done by the outer loop or the next operation).
std::size_t drain(ThreadRec* me, std::size_t quota) noexcept {
  if (me->in_drain) return 0;
  me->in_drain = true;
  std::size_t done = 0;
  while (done < quota && me->free_head != nullptr) {
    Node* n = me->free_head;
    me->free_head = A::batch_next(n);
    if (me->free_head == nullptr) me->free_tail = nullptr;
    const std::uint16_t type = A::type(n);
    void (*del)(Node*) = &delete_dummy;
    if (type != kPaddingType) {
      me->reclaimed.add(1);
      // acquire: pairs with type_id_slow's release store (already ordered before us by the
      // retire of n; kept explicit).
      del = g_deleters[type].load(std::memory_order_acquire);
    }
    del(n);  // user code: may pin, retire, allocate (the queue is consistent here)
    ++done;
  }
  me->in_drain = false;
  return done;
}

void drain_all(ThreadRec* me) noexcept {
  while (me->free_head != nullptr && !me->in_drain) drain(me, ~std::size_t{0});
}

// End of a retire or an unpin that left nodes in the free queue (it finished more than its
// quota): publish them on this record's ready stack, so that an idle thread keeps nothing
// it finished; any thread's retire path takes them. Two steps whatever others do, as in
// push_orphans: only the owner pushes, others take the whole stack. The head's slot_next
// carries the chain's tail, so that chains are joined and taken without walking them.
void publish_ready(ThreadRec* me) noexcept {
  if (me->free_head == nullptr || me->in_drain) return;
  // acquire: pairs with the release store below (ours or the record's earlier owner's).
  Node* old = me->ready.exchange(nullptr, std::memory_order_acquire);
  Node* tail = me->free_tail;
  if (old != nullptr) {
    A::batch_next(tail) = old;
    tail = A::slot_next(old);
  }
  A::set_slot_next(me->free_head, tail);  // H1: finished nodes, no count left
  // release: pairs with the acquire exchange in take_ready(), publishing the links.
  me->ready.store(me->free_head, std::memory_order_release);
  me->free_head = nullptr;
  me->free_tail = nullptr;
}

// Moves record r's ready stack, whole, to the end of this thread's free queue.
bool take_ready_of(ThreadRec* me, ThreadRec& r) noexcept {
  if (r.ready.load(std::memory_order_relaxed) == nullptr) return false;
  // acquire: pairs with publish_ready's release store.
  Node* head = r.ready.exchange(nullptr, std::memory_order_acquire);
  if (head == nullptr) return false;
  Node* tail = A::slot_next(head);
  if (me->free_tail == nullptr) {
    me->free_head = head;
  } else {
    A::batch_next(me->free_tail) = head;
  }
  me->free_tail = tail;
  return true;
}

// Takes one record's ready stack (the next non-empty one after the last taken) when this
// thread's free queue is empty; `all` takes every one (flush).
void take_ready(ThreadRec* me, bool all) noexcept {
  if (!all && me->free_head != nullptr) return;
  const std::size_t hwm = g_hwm.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < hwm; ++i) {
    const std::size_t at = (me->ready_cursor + i) % hwm;
    if (take_ready_of(me, g_recs[at]) && !all) {
      me->ready_cursor = static_cast<std::uint32_t>((at + 1) % hwm);
      return;
    }
  }
}

// A batch whose count reached 0 (I2).
void free_batch(ThreadRec* me, Node* refs) noexcept {
  Node* first = A::batch_link(refs);
  // Fence F. Pairs with X in help(), issued after a helper published its helper slot and
  // before it re-checks the request. Either we see helpers_active and the helper slot here,
  // or the helper's re-check sees the request completed (the completion happens-before the
  // final decrement that brought us here) and it never dereferences src.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (g_helpers_active.load(std::memory_order_acquire) != 0) {
    // The batch's minimum birth, from the nodes themselves: births never change (a node's
    // birth may be read by its users while it is retired, so the runtime never writes it).
    std::uint64_t min_birth = A::birth(refs);
    for (Node* n = first; n != refs; n = A::batch_next(n)) {
      min_birth = std::min(min_birth, A::birth(n));
    }
    const std::size_t hwm = g_hwm.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < hwm; ++i) {
      Slot& h = g_recs[i].helper;
      // acquire: pairs with the helper's release exchange when it leaves, so its reads of
      // src happen-before our deletes if we see it INACTIVE.
      if (h.list.load(std::memory_order_acquire) != nullptr &&
          h.era.load(std::memory_order_relaxed) >= min_birth) {
        push_orphans(me, first, refs);  // retried later, then attached to that helper slot
        return;
      }
    }
  }
  enqueue_free(me, first, refs);
}

// Pushes the chain first -> ... -> last (linked by batch_next) onto this thread's own
// orphan stack, in two steps whatever other threads do: only the record's owner puts
// nodes there, adopters only take the whole stack, so taking it back and putting it back
// extended cannot lose anything (an adopter in between finds it empty and looks elsewhere).
void push_orphans(ThreadRec* me, Node* first, Node* last) noexcept {
  // acquire: pairs with the release store below, made by this record's earlier owner or by
  // us (the record's in_use hand-over orders the owners), so the old chain's links are ours.
  A::batch_next(last) = me->orphans.exchange(nullptr, std::memory_order_acquire);
  // release: pairs with the acquire exchange in adopt(), publishing the chain's links.
  me->orphans.store(first, std::memory_order_release);
}

void append(ThreadRec* me, Node* n) noexcept {
  Batch& b = me->batch;
  if (b.first == nullptr) {
    b.refs = n;
    b.first = n;
    b.min_birth = A::birth(n);
    b.count = 1;
    A::batch_next(n) = nullptr;
    A::set_batch_link(n, n);
  } else {
    A::set_batch_link(n, b.refs);
    A::batch_next(n) = b.first;
    b.first = n;
    b.min_birth = std::min(b.min_birth, A::birth(n));
    ++b.count;
  }
}

// Padding nodes added by flush(); not counted as retired or reclaimed.
struct Dummy final : Node {};
void delete_dummy(Node* n) noexcept { delete static_cast<Dummy*>(n); }

// A chain of nodes linked by batch_next, ending with nullptr.
struct Chain {
  Node* head = nullptr;
  Node* tail = nullptr;
  std::uint32_t count = 0;
  std::uint64_t min_birth = ~std::uint64_t{0};
  void push(Node* n) noexcept {
    A::batch_next(n) = head;
    if (tail == nullptr) tail = n;
    head = n;
    ++count;
    min_birth = std::min(min_birth, A::birth(n));
  }
  // Appends `younger` after this chain's nodes.
  void absorb(Chain& younger) noexcept {
    if (younger.count == 0) return;
    if (count == 0) {
      *this = younger;
    } else {
      A::batch_next(tail) = younger.head;
      tail = younger.tail;
      count += younger.count;
      min_birth = std::min(min_birth, younger.min_birth);
    }
    younger = Chain{};
  }
};

// The slots seen eligible by one attach attempt (after fence Y), with the era each had.
struct Eligible {
  std::uint32_t n = 0;
  std::uint32_t idx[2 * kMaxThreads];  // 2 * record + (0 main, 1 helper)
  std::uint64_t era[2 * kMaxThreads];
  std::uint32_t count_at_least(std::uint64_t min_birth) const noexcept {
    std::uint32_t c = 0;
    for (std::uint32_t i = 0; i < n; ++i) c += era[i] >= min_birth ? 1 : 0;
    return c;
  }
};

Slot& slot_at(std::uint32_t idx) noexcept {
  return (idx % 2 == 0) ? g_recs[idx / 2].main : g_recs[idx / 2].helper;
}

// Turns `chain` into a batch and attaches it to every slot of `el` whose era was >= the
// chain's minimum birth. The caller guarantees chain.count >= that number of slots + 1.
void emit(ThreadRec* me, const Eligible& el, Chain& chain) noexcept {
#ifdef KOVAN_TEST_HOOKS
  {
    std::uint64_t seen = test::largest_batch.load(std::memory_order_relaxed);
    while (seen < chain.count && !test::largest_batch.compare_exchange_weak(
                                     seen, chain.count, std::memory_order_relaxed)) {
    }
  }
#endif
  Node* const refs = chain.tail;  // the counting node ends the chain
  const std::uint64_t min_birth = chain.min_birth;
  for (Node* n = chain.head; n != refs; n = A::batch_next(n)) A::set_batch_link(n, refs);
  A::batch_next(refs) = nullptr;
  A::set_batch_link(refs, chain.head);
  // H1: from here the counting node's shared word is its count (published by the pushes'
  // release; the node is never attached, H2).
  A::refs(refs).store(0, std::memory_order_relaxed);
  chain = Chain{};
  Node* c = A::batch_link(refs);
  std::int64_t attached = 0;
  for (std::uint32_t i = 0; i < el.n; ++i) {
    if (el.era[i] < min_birth) continue;
    Slot& s = slot_at(el.idx[i]);
    Node* prev = s.list.load(std::memory_order_acquire);
    for (;;) {
      // A slot that left (INACTIVE) or re-pinned with a lower era since the scan needs
      // nothing from this batch: its new guard started after fence Y (see the header).
      if (prev == nullptr || s.era.load(std::memory_order_relaxed) < min_birth) break;
      A::set_slot_next(c, prev);  // H1-H2: c != refs (at most k of >= k + 1 nodes)
      // release: pairs with the acquire exchange of the slot's owner (leave/help), which
      // then sees c's links and the counting node's fields.
      if (s.list.compare_exchange_weak(prev, c, std::memory_order_release,
                                       std::memory_order_acquire)) {
        ++attached;
        c = A::batch_next(c);
        break;
      }
    }
  }
  // acq_rel: acquire the releasers' reads if the count reaches 0 here; release our
  // writes to the batch for whoever finishes it.
  // (Modulo 2^64: the count is back at 0 exactly when it was -attached before the add.)
  if (A::refs(refs).fetch_add(static_cast<std::uint64_t>(attached), std::memory_order_acq_rel) ==
      static_cast<std::uint64_t>(-attached)) {
    free_batch(me, refs);
  }
}

// Emits `chain` (count >= k + 1, k = eligible slots with era >= its minimum birth) as
// batches of at most B = max(R, k + 1) + k nodes: leading chunks of c = max(R, k + 1)
// nodes, then the rest (between k + 1 and c + k nodes). A chunk's minimum birth is at
// least the chain's, so it has at most k eligible slots and at least k + 1 nodes, as
// emit() needs. The chain is consumed.
void emit_chunked(ThreadRec* me, const Eligible& el, Chain& chain) noexcept {
  const std::uint32_t k = el.count_at_least(chain.min_birth);
  const std::uint32_t c = std::max<std::uint32_t>(kRetireBatch, k + 1);
  std::uint32_t full = chain.count >= c + k + 1 ? (chain.count - k - 1) / c : 0;
  std::uint32_t left = chain.count;
  Node* n = chain.head;
  chain = Chain{};
  while (full-- > 0) {
    Chain part;
    for (std::uint32_t i = 0; i < c; ++i) {
      Node* next = A::batch_next(n);
      part.push(n);
      n = next;
    }
    left -= c;
    emit(me, el, part);
  }
  Chain rest;
  for (std::uint32_t i = 0; i < left; ++i) {
    Node* next = A::batch_next(n);
    rest.push(n);
    n = next;
  }
  emit(me, el, rest);
}

// Tries to attach the partial batch. The batch is first split by birth at the eras of the
// eligible slots, so that a slot with an old era (a stalled thread) is handed only batches
// made of nodes born at or before its era — plus, at most, a few younger nodes that were too
// few to form a batch of their own. Groups too small to attach are merged into the next
// older group; what is still too small stays as the partial batch, or, with `force`
// (flush), is padded with dummy nodes and attached, so that nothing stays behind. Every
// batch is cut to at most B nodes (emit_chunked).
//
// Work: one scan of 2 * hwm slots, O(nodes) to split, and per batch one push per eligible
// slot (a CAS loop: lock-free). No user code runs here: batches finished here are queued.
void try_attach(ThreadRec* me, bool force) noexcept {
  // Not re-entrant (the eligible set is one per thread); nothing in here retires, but an
  // allocation of padding could in principle reach here through user code.
  if (me->in_attach) return;
  me->in_attach = true;
  static thread_local Eligible el;  // 12 KiB: kept off the stack
  constexpr std::size_t kMaxSplits = 8;
  Batch& b = me->batch;
  if (b.first == nullptr) {
    me->in_attach = false;
    return;
  }
  // Fence Y: pairs with every reader's X (see the header comment).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::size_t hwm = g_hwm.load(std::memory_order_acquire);
  el.n = 0;
  for (std::size_t i = 0; i < hwm; ++i) {
    for (std::uint32_t k = 0; k < 2; ++k) {
      Slot& s = (k == 0) ? g_recs[i].main : g_recs[i].helper;
      // acquire on list: pairs with the release exchange of leave()/help(), so a slot
      // seen INACTIVE had finished reading what it protected before we may free it.
      if (s.list.load(std::memory_order_acquire) == nullptr) continue;
      const std::uint64_t era = s.era.load(std::memory_order_relaxed);
      if (era < b.min_birth) continue;
      el.idx[el.n] = static_cast<std::uint32_t>(2 * i + k);
      el.era[el.n] = era;
      ++el.n;
    }
  }
  // Split points: the smallest distinct eligible eras, ascending.
  std::uint64_t cut[kMaxSplits];
  std::size_t n_cut = 0;
  for (std::uint32_t i = 0; i < el.n; ++i) {
    const std::uint64_t e = el.era[i];
    std::size_t pos = 0;
    while (pos < n_cut && cut[pos] < e) ++pos;
    if (pos < n_cut && cut[pos] == e) continue;
    if (pos == kMaxSplits) continue;
    const std::size_t last = std::min(n_cut, kMaxSplits - 1);
    for (std::size_t q = last; q > pos; --q) cut[q] = cut[q - 1];
    cut[pos] = e;
    n_cut = std::min(n_cut + 1, kMaxSplits);
  }
  // Group g holds births in (cut[g-1], cut[g]]; the last group is younger than every cut
  // and needs no slot at all.
  Chain groups[kMaxSplits + 1];
  for (Node* n = b.first; n != nullptr;) {
    Node* next = A::batch_next(n);
    std::size_t g = 0;
    while (g < n_cut && cut[g] < A::birth(n)) ++g;
    groups[g].push(n);
    n = next;
  }
  me->batch = Batch{};
  Chain carry;
  for (std::size_t g = n_cut + 1; g-- > 0;) {
    groups[g].absorb(carry);  // carry (younger) joins this group
    carry = groups[g];
    groups[g] = Chain{};
    if (carry.count >= el.count_at_least(carry.min_birth) + 1) emit_chunked(me, el, carry);
  }
  if (carry.count != 0 && force) {
    // Too few for its slots (at most s nodes): pad to k + 1 and attach. The padding is
    // allocated after the scan; that is safe, as for any delay between scan and push (a
    // slot that pins after Y cannot reach these nodes; emit re-checks each slot).
    const std::uint32_t need = el.count_at_least(carry.min_birth) + 1;
    while (carry.count < need) {
      Dummy* d = new (std::nothrow) Dummy();
      if (d == nullptr) break;  // out of memory: hand the nodes over below
      check_address(d);
      A::set_type(d, kPaddingType);
      carry.push(d);
    }
    if (carry.count >= need) emit(me, el, carry);
  }
  // Too few for its slots: stays as (part of) the partial batch and grows. After a forced
  // attempt this happens only when padding could not be allocated: hand the nodes over.
  if (carry.count != 0) {
    for (Node* n = carry.head; n != nullptr;) {
      Node* next = A::batch_next(n);
      append(me, n);
      n = next;
    }
    if (force) {
      push_orphans(me, me->batch.first, me->batch.refs);
      me->batch = Batch{};
    }
  }
  me->in_attach = false;
}

// Takes one record's orphan stack (the next non-empty one after the last taken) if this
// thread holds none, then moves at most `max` adopted nodes into the partial batch. So a
// retire adopts a bounded number of nodes however many are orphaned.
void adopt(ThreadRec* me, std::size_t max) noexcept {
  if (me->adopted == nullptr) {
    const std::size_t hwm = g_hwm.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < hwm; ++i) {
      const std::size_t at = (me->adopt_cursor + i) % hwm;
      ThreadRec& r = g_recs[at];
      if (r.orphans.load(std::memory_order_relaxed) == nullptr) continue;
      // acquire: pairs with push_orphans' release store.
      Node* n = r.orphans.exchange(nullptr, std::memory_order_acquire);
      if (n == nullptr) continue;
      me->adopted = n;
      me->adopt_cursor = static_cast<std::uint32_t>((at + 1) % hwm);
      break;
    }
  }
  for (std::size_t k = 0; k < max && me->adopted != nullptr; ++k) {
    Node* n = me->adopted;
    me->adopted = A::batch_next(n);
    append(me, n);
  }
}

// Every orphan there is now: what this thread holds and every record's stack (flush).
void adopt_all(ThreadRec* me) noexcept {
  const std::size_t hwm = g_hwm.load(std::memory_order_acquire);
  for (std::size_t i = 0; i <= hwm; ++i) adopt(me, ~std::size_t{0});
}

// Orphans moved into the partial batch per attach attempt (every R retires): twice the
// retire rate, so that adoption outpaces orphaning by threads that retire and exit.
constexpr std::size_t kAdoptPerAttempt = 2 * kRetireBatch;

void maybe_attach(ThreadRec* me) noexcept {
  if (++me->since_try >= kRetireBatch) {
    me->since_try = 0;
    take_ready(me, /*all=*/false);  // before the attempt, which may queue a batch
    adopt(me, kAdoptPerAttempt);
    try_attach(me, false);
  }
}

// Thread exit: runs the deletions still queued (here, so that nothing leaks), then hands
// the partial batch and any adopted orphans to this record's orphan stack.
void hand_over(ThreadRec* me) noexcept {
  (void)take_ready_of(me, *me);  // what we published and nobody took yet
  drain_all(me);
  while (me->adopted != nullptr) {
    Node* n = me->adopted;
    me->adopted = A::batch_next(n);
    append(me, n);
  }
  Batch& b = me->batch;
  if (b.first != nullptr) {
    push_orphans(me, b.first, b.refs);  // adopted by the next thread that retires or flushes
    b = Batch{};
  }
}

// Runs at thread exit (on_thread_exit), on the exiting thread, with tl_rec == me.
void release_thread(ThreadRec* me) noexcept {
  // Guards still alive (held by an object destroyed after this point, or leaked): the slot
  // lets go of its batches now, so that an exiting thread holds nothing. While hand_over
  // runs destructors (which may pin and unpin on this record), depth reads 0. A guard that
  // such a destructor leaves alive is let go of in the same way (the loop).
  std::uint32_t stale_guards = 0;
  for (;;) {
    if (me->depth != 0) {
      stale_guards += me->depth;
      me->depth = 0;
      walk(me, me->main.list.exchange(nullptr, std::memory_order_acq_rel));  // queues only
    }
    hand_over(me);  // runs the queued deletions (user code), then hands the rest over
    if (me->depth == 0) break;
  }
  me->since_try = 0;
  tl_rec = nullptr;  // a later use of kovan on this thread claims a record anew
  if (stale_guards != 0) {
    // Keep the record claimed until those guards are destroyed (leave() then calls
    // release_detached), so that their decrements never reach another owner's depth.
    me->depth = stale_guards;
    me->detached = true;
    return;
  }
  // release: pairs with the acquire CAS in claim_record.
  me->in_use.store(false, std::memory_order_release);
}

void help(ThreadRec* me, ThreadRec& r) noexcept {
  const DWord req = dwload(&r.request);
  const std::uint64_t tag = req.hi;
  const DWord pending{kPending, tag};
  if (!(dwload(&r.result) == pending)) return;
  const auto* src = reinterpret_cast<const std::atomic<Node*>*>(req.lo);
  me->helps.add(1);
  me->in_help = true;
  g_helpers_active.fetch_add(1, std::memory_order_seq_cst);
  // Publish the helper slot with the requester's era, which covers the node holding src
  // (the requester loaded it under that era). The dwload above ordered this read after the
  // requester's request write, hence after its raise for that node.
  me->helper.era.store(r.main.era.load(std::memory_order_relaxed), std::memory_order_relaxed);
  me->helper.list.store(empty_list(), std::memory_order_relaxed);
  // Announce the source we may read; ordered before the re-check by the fence below.
  me->reading.store(src, std::memory_order_relaxed);
  // Fence X (helper slot): pairs with Y in try_attach and F in free_batch; also orders the
  // announcement above before the re-check, for wait_for_helpers.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (dwload(&r.result) == pending) {  // re-check: src's node is covered from here on
#ifdef KOVAN_TEST_HOOKS
    if (auto* hook = test::on_helper_reading.load(std::memory_order_acquire)) hook();
#endif
    for (;;) {
      const std::uint64_t e = g_era.load(std::memory_order_acquire);
      raise(r.main.era, e);  // the requester's slot is active for the whole request
      // Fence X (requester's slot): pairs with Y.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      Node* p = src->load(std::memory_order_acquire);
      const std::uint64_t g = g_era.load(std::memory_order_acquire);
      if (g == e) {
        DWord expected = pending;
        (void)dwcas(&r.result, expected, DWord{reinterpret_cast<std::uint64_t>(p), tag});
        break;
      }
      if (!(dwload(&r.result) == pending)) break;
    }
  }
  // release: pairs with the loads in wait_for_helpers; our reads of src happen-before the
  // destruction of the Atomic that holds it. After the last read of src (I7).
  me->reading.store(nullptr, std::memory_order_release);
#ifdef KOVAN_TEST_HOOKS
  if (auto* hook = test::on_help_walk.load(std::memory_order_acquire)) hook();
#endif
  walk(me, me->helper.list.exchange(nullptr, std::memory_order_acq_rel));
  // release: our reads of src happen-before a finisher that reads helpers_active == 0.
  g_helpers_active.fetch_sub(1, std::memory_order_release);
  me->in_help = false;
}

void advance_era() noexcept {
  ThreadRec* me = tl_rec;
#ifdef KOVAN_TEST_HOOKS
  if (me != nullptr && me->in_help) test::nested_advances.fetch_add(1, std::memory_order_relaxed);
#endif
  // seq_cst: pairs with the requester's seq_cst increment of g_slow_counter; an advancer
  // that misses it started before the request and is one of at most n such increments.
  if (g_slow_counter.load(std::memory_order_seq_cst) != 0) {
    if (me == nullptr) me = self();
    // help() runs no user code and allocates nothing (its walk only queues finished
    // batches), so no era advance starts inside it; the check only keeps a thread from
    // helping from inside its own help if that ever changed (counted by the test hook).
    if (!me->in_help) {
      const std::size_t hwm = g_hwm.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < hwm; ++i) {
        if (&g_recs[i] != me && g_recs[i].in_use.load(std::memory_order_relaxed)) {
          help(me, g_recs[i]);
        }
      }
    }
  }
  g_era.fetch_add(1, std::memory_order_seq_cst);
}

Node* slow_path(ThreadRec* me, const std::atomic<Node*>& src, std::memory_order order) noexcept {
  me->slow_loads.add(1);
  const std::uint64_t tag = ++me->tag;
  const DWord pending{kPending, tag};
  dwstore(&me->request, DWord{reinterpret_cast<std::uint64_t>(&src), tag});
  dwstore(&me->result, pending);
  // seq_cst: pairs with advance_era's load (see there).
  g_slow_counter.fetch_add(1, std::memory_order_seq_cst);
#ifdef KOVAN_TEST_HOOKS
  if (auto* hook = test::on_request_published.load(std::memory_order_acquire)) hook();
#endif
  for (;;) {
    const std::uint64_t s = me->pub_era;
    Node* p = src.load(order);
    const std::uint64_t g = g_era.load(std::memory_order_acquire);
    if (g <= s) {
      DWord expected = pending;
      (void)dwcas(&me->result, expected, DWord{reinterpret_cast<std::uint64_t>(p), tag});
      break;  // ours, or a helper's if the CAS failed
    }
    me->pub_era = raise(me->main.era, g);
    // Fence X: pairs with Y.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!(dwload(&me->result) == pending)) break;  // a helper finished it
  }
  const DWord res = dwload(&me->result);
  g_slow_counter.fetch_sub(1, std::memory_order_seq_cst);
  return reinterpret_cast<Node*>(res.lo);
}

// Thread exit: the allocations this thread made since its last era step join those of
// other exited threads; every kEraFrequency of them advance the era once (helping first,
// as any advance). So the era moves with allocations however they are spread over
// threads: at most (n + 1) * kEraFrequency allocations happen without an advance.
void carry_allocs() noexcept {
  const std::uint32_t r = tl_allocs % kEraFrequency;
  tl_allocs = 0;
  if (r == 0) return;
  // relaxed: a plain count; the advance itself is ordered by g_era's seq_cst increment.
  const std::uint64_t before = g_alloc_carry.fetch_add(r, std::memory_order_relaxed);
  if (before % kEraFrequency + r >= kEraFrequency) advance_era();
}

}  // namespace

std::uint64_t on_allocate() noexcept {
  const std::uint32_t a = ++tl_allocs;
  // A thread's first allocation makes sure the exit hook runs (it carries the count over),
  // even if the thread never registers: a registered thread's key already holds its record.
  // Should the key not be set (out of memory), only this thread's count is not carried.
  if (a == 1 && tl_rec == nullptr && pthread_setspecific(exit_key(), kAllocsOnly) == 0) {
    tl_cache.hooked = !tl_cache.disabled;
  }
  if (a % kEraFrequency == 0) advance_era();
  // acquire: a node's birth is read from the clock when it is built; protect() compares
  // it against later reads of the same clock (coherence keeps them ordered).
  return g_era.load(std::memory_order_acquire);
}

ThreadRec* register_thread() noexcept { return claim_record(); }

std::uint16_t type_id_slow(std::atomic<std::uint16_t>& id, void (*deleter)(Node*)) noexcept {
  // relaxed: only uniqueness matters; the deleter is published by the store below.
  const std::uint32_t fresh = g_deleter_count.fetch_add(1, std::memory_order_relaxed);
  if (fresh >= kMaxNodeTypes || fresh > UINT16_MAX) {
    std::fprintf(stderr, "kovan: more than %zu node types retired; raise kovan::kMaxNodeTypes\n",
                 kMaxNodeTypes - 1);
    std::abort();
  }
  // release: pairs with drain()'s acquire load (also ordered before it through the retire
  // of a node of this type, which read the id published below).
  g_deleters[fresh].store(deleter, std::memory_order_release);
  std::uint16_t expected = 0;
  // release: pairs with type_of<T>'s acquire load: the deleter is registered before its id
  // is seen. acquire on failure: the winner's registration is visible to us.
  if (id.compare_exchange_strong(expected, static_cast<std::uint16_t>(fresh),
                                 std::memory_order_acq_rel, std::memory_order_acquire)) {
    return static_cast<std::uint16_t>(fresh);
  }
  return expected;  // a racing first retire of the same type won; our id stays unused
}

// A cache miss (or a block too large for the cache): allocate at the class size, so that
// the block can later serve any size of its class.
void* cache_alloc_slow(std::size_t size) {
  const std::size_t c = (size - 1) / kCacheClassBytes;
  return ::operator new(c < kCacheClasses ? (c + 1) * kCacheClassBytes : size);
}

// A full class, a block too large, a thread whose exit step will not run yet (the first
// free of a thread that never used kovan otherwise: give it one, then cache), or a thread
// past its exit step.
void cache_free_slow(void* p, std::size_t size) noexcept {
  const std::size_t c = (size - 1) / kCacheClassBytes;
  NodeCache& nc = tl_cache;
#if KOVAN_NODE_CACHE
  if (c < kCacheClasses && !nc.disabled && !nc.hooked && tl_rec == nullptr && tl_allocs == 0 &&
      pthread_setspecific(exit_key(), kAllocsOnly) == 0) {
    nc.hooked = true;
  }
  if (c < kCacheClasses && nc.hooked && nc.count[c] < kCacheDepth) {
    cache_free(p, size);
    return;
  }
#else
  (void)nc;
#endif
  ::operator delete(p, c < kCacheClasses ? (c + 1) * kCacheClassBytes : size);
}
// Unpin (outermost guard): release the detached list (one decrement per batch attached
// while the guard lived; no user code), then delete at most kFreeQuota queued nodes.
void traverse(ThreadRec* me, Node* l) noexcept {
  walk(me, l);
  (void)drain(me, kFreeQuota);
  publish_ready(me);
}

// The last guard of an exited thread was destroyed (see release_thread); its slot is
// INACTIVE again (leave() detached the list).
void release_detached(ThreadRec* me) noexcept {
  me->detached = false;
  // release: pairs with the acquire CAS in claim_record.
  me->in_use.store(false, std::memory_order_release);
}

// See cover_birth and cover_removed in runtime.hpp; the caller's guard is active.
void raise_reservation(ThreadRec* me, std::uint64_t era) noexcept {
  // acquire: as in protect(). Raising to the clock, not only to `era`, saves later loads
  // under this guard a slow try.
  const std::uint64_t g = g_era.load(std::memory_order_acquire);
  me->pub_era = raise(me->main.era, std::max(era, g));
  // Fence X: pairs with Y, like every publication of an era.
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// THE HELPER'S SOURCE. A helper reads a requester's source (an Atomic<T>) on its behalf. It
// announces the address in `reading`, issues fence X and only then re-checks that the
// request is pending; it clears `reading` (release) after its last read. The requester may
// complete and return meanwhile, and its source may then be destroyed; ~Atomic calls this
// when some helper is active. SC argument: the completion C of the request is a seq_cst RMW
// that happens-before this call; our loads of g_hwm and of each `reading` are seq_cst. If a
// load misses a helper's announcement (or its record), it precedes the helper's fence X in
// S, which precedes the helper's re-check, so C precedes the re-check in S and the re-check
// sees the request completed: that helper never reads the source. Otherwise we see the
// announcement and wait until it is cleared. The wait is bounded by the helper's own steps
// (its loop ends once the request is completed) but is blocking if that helper is
// descheduled: the price of never making the load itself wait.
void wait_for_helpers(const void* src) noexcept {
  const std::size_t hwm = g_hwm.load(std::memory_order_seq_cst);
  for (std::size_t i = 0; i < hwm; ++i) {
    std::atomic<const void*>& reading = g_recs[i].reading;
    if (reading.load(std::memory_order_seq_cst) != src) continue;
#ifdef KOVAN_TEST_HOOKS
    if (auto* hook = test::on_destroy_wait.load(std::memory_order_acquire)) hook();
#endif
    // acquire: pairs with the helper's release store of nullptr.
    while (reading.load(std::memory_order_acquire) == src) std::this_thread::yield();
  }
}

Node* protect_slow(ThreadRec* me, const std::atomic<Node*>& src, std::memory_order order,
                   std::uint64_t s) noexcept {
#ifdef KOVAN_TEST_HOOKS
  const int tries = test::fast_path_tries.load(std::memory_order_relaxed);
  if (tries == 0) return slow_path(me, src, order);
#else
  constexpr int tries = kFastPathTries;
#endif
  // The inlined first try (detail::protect) failed: the era moved since we published.
  for (int i = 1; i < tries; ++i) {
    s = raise(me->main.era, g_era.load(std::memory_order_acquire));
    me->pub_era = s;
    // Fence X: pairs with Y.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    Node* p = src.load(order);
    // p was built before it was published to src, so its birth <= g (clock coherence).
    const std::uint64_t g = g_era.load(std::memory_order_acquire);
    if (g <= s) return p;
  }
  return slow_path(me, src, order);
}

void retire_node(Node* n, std::uint16_t type) noexcept {
  ThreadRec* me = self();
  check_address(n);
  A::set_type(n, type);  // H3: kept by every later write of the batch link
  me->retired.add(1);
  append(me, n);
  maybe_attach(me);
  // What this thread published after an earlier quota comes back here (one relaxed load
  // when there is none).
  if (me->free_head == nullptr) (void)take_ready_of(me, *me);
  if (me->free_head != nullptr) {
    (void)drain(me, kFreeQuota);
    publish_ready(me);
  }
}

#ifdef KOVAN_TEST_HOOKS
namespace test {
std::atomic<int> fast_path_tries{kFastPathTries};
std::atomic<void (*)()> on_request_published{nullptr};
std::atomic<void (*)()> on_helper_reading{nullptr};
std::atomic<void (*)()> on_destroy_wait{nullptr};
std::atomic<void (*)()> on_help_walk{nullptr};
std::atomic<std::uint64_t> nested_advances{0};
std::atomic<std::uint64_t> largest_batch{0};
std::atomic<std::int64_t> cached_blocks{0};
std::uint64_t slot_era_of_current_thread() noexcept {
  return self()->main.era.load(std::memory_order_relaxed);
}
std::uint64_t global_era() noexcept { return g_era.load(std::memory_order_relaxed); }
}  // namespace test
#endif

}  // namespace detail

void flush() noexcept {
  detail::ThreadRec* me = detail::self();
  // Destructors run by the drain may retire more: repeat until nothing is left. Called
  // from such a destructor, flush only hands over (the outer drain finishes the work).
  do {
    detail::adopt_all(me);
    detail::try_attach(me, /*force=*/true);
    if (me->in_drain) return;
    detail::take_ready(me, /*all=*/true);
    detail::drain_all(me);
  } while (me->batch.first != nullptr || me->free_head != nullptr || me->adopted != nullptr);
}

Stats stats() noexcept {
  Stats s{};
  const std::size_t hwm = detail::g_hwm.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < hwm; ++i) {
    const detail::ThreadRec& r = detail::g_recs[i];
    s.retired += r.retired.get();
    s.reclaimed += r.reclaimed.get();
    s.slow_loads += r.slow_loads.get();
    s.helps += r.helps.get();
  }
  s.era = detail::g_era.load(std::memory_order_relaxed);
  s.threads = hwm;
  return s;
}

}  // namespace kovan
