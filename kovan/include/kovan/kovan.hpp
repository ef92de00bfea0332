// kovan/kovan.hpp — wait-free memory reclamation for lock-free data structures.
//
// WHAT IT IS
// ----------
// Lock-free code unlinks a node from a shared structure while other threads may still be
// reading it. kovan decides when such a node can be deleted. A reader pins its thread
// (`kovan::pin()` returns a Guard) and reads shared pointers through `kovan::Atomic<T>::load`;
// a writer that unlinks a node hands it to `kovan::retire`. The node is deleted once no
// guard can still reach it.
//
// The scheme follows Crystalline (Nikolaev and Ravindran, DISC 2021 / PLDI 2024): every node
// carries its *birth era*; a pinned thread publishes the era it has observed; retired nodes
// are grouped in *batches*, and a batch is attached, with a reference count, to every pinned
// thread whose published era is at least the batch's oldest birth. The last thread to let go
// of a batch deletes it — readers free memory too, and nobody ever scans a global list.
//
// THE GUARANTEES
// --------------
//  * A reservation is always a finite era. A thread that stalls while pinned holds back only
//    the batches that contain a node born no later than its era (bound below), never
//    "everything retired since", as epoch-based reclamation does.
//  * An idle thread (no guard) holds back nothing but its own partial batch and the orphans
//    it adopted; `flush()` hands both over. Nodes it finished beyond its deletion quota
//    (below) are published for other threads, whose ordinary retires delete them. A thread
//    that exits runs its queued deletions and hands over the rest; its leftovers are
//    adopted by other threads on their ordinary retire path (see THREAD LIFECYCLE below).
//  * No locks anywhere, including thread registration. Thread slots are reused.
//  * Node memory: Node-derived objects are allocated through a per-thread cache of small
//    blocks (Node::operator new/delete: 16-byte classes up to 256 bytes, at most
//    kCacheDepth blocks per class and thread, no atomic instruction), so a batch deleted
//    at once is reused by the thread's next allocations. A thread's exit step returns its
//    blocks to ::operator delete. Create nodes with a new-expression and free them with
//    delete or retire(); a node type may declare its own operator new/delete instead.
//
// PROGRESS, PER OPERATION (n threads at once, s <= 2n slots, R = kRetireBatch,
// Q = kFreeQuota, L = batches attached to the calling thread's slot while its guard lived)
//  * pin() (outermost Guard): wait-free, O(1): an era store and a fence. A thread's first
//    use of kovan claims a record: at most kMaxThreads CAS attempts.
//  * unpin (the outermost Guard's destruction or reset()): wait-free: one exchange, L
//    decrements (L is fixed by the exchange, whatever other threads do after it), at most
//    Q node deletions, and, if nodes are left, one exchange and one store to publish them.
//  * Atomic<T>::load: wait-free: kFastPathTries (16) tries, then a slow path that the
//    threads advancing the era finish for the reader (helping); it fails at most about n
//    times. store/exchange/compare_exchange: wait-free: one atomic instruction, plus, when
//    the node they publish (or, for exchange, remove) is younger than the era the guard
//    published, one raise of the guard's era and a fence (a failed CAS reloads through the
//    guard).
//  * ~Atomic: one load when no helper is active. The one exception to wait-freedom in the
//    library: when a helper is reading that very Atomic (a slow-path load on it returned
//    moments ago), the destructor waits until the helper has cleared its announcement, a
//    constant number of the helper's own steps, blocking if the helper is descheduled
//    there (see WHAT A GUARD PROTECTS).
//  * Constructing a Node: O(1), except every kEraFrequency-th allocation of a thread, which
//    advances the era: one help per open slow-path request (each wait-free, as the load)
//    before one increment. It never runs a destructor.
//  * retire(): lock-free: every R-th call scans 2 * (threads ever at once) slots, takes one
//    published stack of finished nodes, adopts at most 2R orphans, splits at most s + 3R
//    nodes into batches and pushes each batch onto its slots (a CAS loop that fails only
//    when another thread changed that slot's list); then at most Q node deletions and one
//    publication of what is left. The first retire of each type T also registers T's
//    deleter (one fetch_add, one store and one CAS; at most kMaxNodeTypes types).
//  * flush() and thread exit: not bounded: they delete everything this thread has queued
//    (flush also adopts every orphan and attaches what is left), repeating while
//    destructors retire more. Thread exit also advances the era once if the allocations
//    carried over from exited threads reach kEraFrequency (as an allocation does).
//
// WHERE DESTRUCTORS RUN
// ---------------------
// A retired node's destructor runs only inside retire(), an unpin, flush(), or the thread's
// exit step (after its thread_local destructors), at most Q per retire or unpin, on the
// thread that released the node's last reference or, for what that thread left beyond its
// quota, on a thread that retires later (or flushes). Never inside a Node constructor (an
// allocation), a load, a store, exchange or compare_exchange, or pin().
// A destructor may itself retire, pin, allocate or flush: such calls do not delete further
// nodes from inside it (the outer call or the next operation does).
//
// THE MEMORY BOUND
// ----------------
// Let B = max(R, s + 1) + s be the largest batch (every batch is cut to it, orphans and
// flush() included), M the number of nodes not yet freed (alive, or retired and waiting)
// when a thread stalls, and F <= (n + 1) * kEraFrequency the number of allocations made
// while the era stays put (each live thread counts up to kEraFrequency, and exited
// threads' counts are carried over, so the era advances however allocations are spread
// over short-lived threads). A thread that stalls while pinned can hold back only batches
// with a node born at or before its era; at most M + F such nodes exist, each in one batch:
//
//        unreclaimed nodes held by one stalled thread  <=  (M + F) * B
//
// independent of how many nodes are retired after the stall. kovan also splits each batch
// by birth at the eras of the slots it is attached to (flush() too), so that an old
// reservation is handed only old nodes plus at most s younger ones per batch: when the
// stalled era is among the 8 oldest eligible ones the bound tightens to (M + F) * (s + 1),
// and in practice stays near M + F. Without a stall, each thread holds its partial batch
// (at most s + 3R nodes) and the orphans it adopted; finished nodes wait at most until
// some thread has retired enough to delete them, Q per retire.
// The bound counts nodes; the blocks of deleted nodes that the node cache keeps for reuse
// (at most kCacheDepth per size class and thread) are memory, not nodes, and come on top.
// docs/RECLAIMER.md derives this; tests/kovan/bound_test.cpp and churn_bound_test.cpp
// check it numerically.
//
// WHEN NOT TO USE IT
// ------------------
//  * For data guarded by a mutex: just delete under the lock.
//  * When readers must hold a reference across blocking calls or for a long time: a long
//    guard keeps its era current as it loads and then holds what is retired meanwhile. Hold
//    guards for one operation (microseconds), as the storage engine does; keep long-lived
//    references as counted handles (`Atom<T>` handles are fine for short scopes only too).
//  * When every node must be freed the instant it is unlinked: reclamation is deferred by
//    design (nodes are freed in batches).
//  * On platforms other than x86-64 (the 16-byte CAS is only written for x86-64, and the
//    node header keeps links in 48 bits: retire() aborts on a node above 2^48).
//
// EXAMPLE
// -------
//   struct Item : kovan::Node { int value; explicit Item(int v) : value(v) {} };
//   kovan::Atomic<Item> cell{new Item(1)};
//
//   // reader, any thread
//   { kovan::Guard g = kovan::pin();
//     Item* it = cell.load(g);          // safe to dereference until g is destroyed
//     use(it->value); }
//
//   // writer, any thread
//   { kovan::Guard g = kovan::pin();
//     Item* old = cell.exchange(new Item(2), g);
//     kovan::retire(old); }             // deleted once no guard can reach it
//
// COMPARED WITH THE USUAL SCHEMES
// -------------------------------
//  * Epoch-based reclamation (crossbeam-epoch, liburcu, xenium's epoch_based): about as fast,
//    but one thread stalled inside a critical section stops every later retirement from
//    being freed, so memory grows without bound until it wakes.
//  * Hazard pointers: bounded memory (a stalled reader pins only what it protects), but each
//    load publishes a pointer and re-validates (a store-load fence per node visited), and the
//    reclaimer scans every hazard pointer. kovan pays for an era change only when the era
//    moved, and never scans on free.
//  * RCU (userspace or kernel): the fastest read side with quiescent states, but a grace
//    period waits for every reader, so one stalled reader blocks all reclamation, as with
//    epochs; synchronize_rcu() also blocks the writer.
//  * kovan: reads as cheap as an era compare when the era has not moved; memory bounded by
//    (M + F) * B per stalled thread; reclamation work spread over readers and writers, at
//    most Q deletions per retire or unpin.
//
// WHAT A GUARD PROTECTS (read this before writing a structure)
// ------------------------------------------------------------
// A guard publishes an era, its *reservation*. A node is kept alive for the guard when its
// birth era is at most the reservation and the reservation was published before the node
// was unlinked. So a guard protects exactly the nodes that the operations below vouch for,
// and each operation that hands a node back (or publishes one) raises the reservation to
// cover it when needed (a fence, only when the era moved since the guard last published):
//
//   pointer                                  protected by g?  until
//   ---------------------------------------  ---------------  ----------------------------
//   returned by cell.load(g)                  yes              g's thread has no guard left
//   `expected` reloaded by a failed CAS(g)    yes              same
//   `desired` after a successful CAS(g)       yes              same
//   `p` after cell.store(p, g)                yes              same
//   `p` and the result of cell.exchange(p, g) yes (*)          same
//   `p` after cell.store(p) (no guard)        no: once published it may be freed at any time
//   cell.load_unprotected()                   no: compare it, do not dereference it
//   your own node, never published            yours: free it with delete, not retire
//
// "Until": guards nest, and an inner guard only counts; every pointer protected through any
// guard of a thread stays valid until the thread's outermost guard is destroyed (or reset).
// Reservations are cumulative: a long guard that keeps loading holds what is retired
// meanwhile, so keep guards to one operation.
// (*) exchange's result is covered on the usual discipline that a node is retired once, by
// the thread that unlinked it, after unlinking it: the reservation is raised right after the
// exchange, before the caller can retire the node. A node that other threads can still reach
// through another link and retire on their own must have been loaded through a guard first.
// Every pointer passed to or stored in an Atomic<T> is null or a real node pointer (no tag
// bits): the covering operations read the node's birth era.
// Atom<T> handles follow the same rules: a handle returned by load, exchange or update keeps
// its value alive while the handle lives.
//
// Helpers and the lifetime of an Atomic. A load that falls to the slow path hands the
// address of its Atomic<T> to helpers, which may read it for a few steps after the load has
// returned. ~Atomic waits for such a helper, so any Atomic<T> may be destroyed once no load
// on it is in progress (a member of a heap object, a vector element, a stack variable, an
// Atom<T>). That wait is the only one in the library: it happens only when a helper was
// reading that very Atomic, and lasts a constant number of the helper's steps (blocking,
// should the helper be descheduled there). Memory that holds an Atomic<T> may be released
// without running its destructor only inside a kovan Node freed through retire().
//
// THREAD SAFETY AND THREAD LIFECYCLE
// ----------------------------------
// Everything here is safe for concurrent use without external synchronization. A Guard
// belongs to the thread that created it and must be destroyed on that thread. Up to
// kMaxThreads threads may use the library at once (slots of exited threads are reused).
// A thread is registered on its first use of kovan and released when it exits, after all of
// its thread_local destructors (a pthread key destructor): kovan may be used from
// thread_local destructors. A guard still alive at that point (held by an object destroyed
// later, or leaked) is let go of at once (the exiting thread holds nothing), and the
// thread's record stays claimed until that guard is destroyed; a guard never destroyed keeps
// one of the kMaxThreads records for good. The main thread's record is not released: it
// ends with the process (key destructors do not run on exit()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "kovan/detail/runtime.hpp"  // ThreadRec and the inlined fast paths

namespace kovan {

// Library limits (documented in docs/RECLAIMER.md).
inline constexpr std::size_t kMaxThreads = 512;      // threads using kovan at the same time
inline constexpr std::uint32_t kRetireBatch = 64;    // retires between attach attempts (R)
inline constexpr std::uint32_t kEraFrequency = 128;  // allocations per thread per era step
inline constexpr int kFastPathTries = 16;            // protected-load tries before helping
inline constexpr std::uint32_t kFreeQuota = 128;     // nodes deleted per retire or unpin (Q)
inline constexpr std::size_t kMaxNodeTypes = 1024;   // distinct T passed to retire<T>

struct Node;

namespace detail {
struct Access;  // the runtime's view of Node's private header
// Called by Node's constructor; counts allocations and advances the era when due.
std::uint64_t on_allocate() noexcept;
// A retired node records its type as a 16-bit id in the top bits of its batch link (see
// Node's header below); the id names the function that deletes it. Id 0 is kovan's own
// padding node; retire<T> takes one id per T on its first call (type_id_slow).
void retire_node(Node* n, std::uint16_t type) noexcept;
template <class T>
void delete_node(Node* n) noexcept {
  delete static_cast<T*>(n);
}
// Registers `deleter` under a fresh id and installs it in `id` unless another thread
// installed one first (then that id is returned; ours stays registered, unused). Lock-free:
// one fetch_add, one store, one CAS.
std::uint16_t type_id_slow(std::atomic<std::uint16_t>& id, void (*deleter)(Node*)) noexcept;
// T's id, 0 until its first retire (constant-initialized: no guard, no lock).
template <class T>
inline constinit std::atomic<std::uint16_t> type_id{0};
template <class T>
std::uint16_t type_of() noexcept {
  // acquire: pairs with type_id_slow's release CAS (the deleter is registered before).
  const std::uint16_t t = type_id<T>.load(std::memory_order_acquire);
  return t != 0 ? t : type_id_slow(type_id<T>, &delete_node<T>);
}
}  // namespace detail

// Intrusive header. A type managed by kovan derives publicly from Node; its birth era is
// stamped when it is constructed. The header is 32 bytes: the birth era and three words
// that only a retired node uses, each shared by uses whose lifetimes never overlap (the
// table of who writes and reads each word in which state is at the top of
// kovan/src/kovan.cpp and in docs/RECLAIMER.md, "The node header").
struct Node {
  Node() noexcept : birth_(detail::on_allocate()) {}
  // Copies get a header of their own (the header is not data).
  Node(const Node&) noexcept : Node() {}
  Node& operator=(const Node&) noexcept { return *this; }
  ~Node() = default;

  // The era at construction. Never changes (the runtime never writes it afterwards), so it
  // may be read while the node is retired, as long as it is protected.
  std::uint64_t birth_era() const noexcept { return birth_; }

  // Node-derived objects are allocated through a per-thread cache of small blocks (see THE
  // NODE CACHE in kovan/detail/runtime.hpp): create them with a new-expression and free them
  // with delete or retire(). A derived class may declare its own operator new/delete.
  static void* operator new(std::size_t size) { return detail::cache_alloc(size); }
  static void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
      return detail::cache_alloc(size);
    } catch (...) {
      return nullptr;
    }
  }
  static void operator delete(void* p, std::size_t size) noexcept { detail::cache_free(p, size); }
  // Called only when a constructor throws after the nothrow form: the block goes back to
  // ::operator delete (any cached or fresh block came from ::operator new).
  static void operator delete(void* p, const std::nothrow_t&) noexcept { ::operator delete(p); }
  // Over-aligned node types bypass the cache.
  static void* operator new(std::size_t size, std::align_val_t al) {
    return ::operator new(size, al);
  }
  static void* operator new(std::size_t size, std::align_val_t al,
                            const std::nothrow_t& nt) noexcept {
    return ::operator new(size, al, nt);
  }
  static void operator delete(void* p, std::size_t size, std::align_val_t al) noexcept {
    ::operator delete(p, size, al);
  }
  static void operator delete(void* p, std::align_val_t al, const std::nothrow_t&) noexcept {
    ::operator delete(p, al);
  }

 private:
  friend struct detail::Access;
  // Written once, by the constructor; read by users and the runtime at any time (I8).
  const std::uint64_t birth_;
  // One word, two uses that never overlap in time (H1 in kovan.cpp):
  //  * a list node (a node of an emitted batch other than its counting node) that is
  //    attached to a reservation slot: the next node in that slot's list; the head of a
  //    ready stack: that stack's last node;
  //  * the counting node of an emitted batch (never attached: H2): the attachments not yet
  //    released, as a 64-bit two's-complement count (it may dip below 0 while the emitter
  //    is still pushing).
  std::atomic<std::uint64_t> slot_or_refs_{0};
  // Retired node: low 48 bits, the batch link (counting node: the batch's first node;
  // other nodes: the counting node); high 16 bits, the node's type id (which deleter runs),
  // set by retire and kept by every later write of the link (H3).
  std::uint64_t link_and_type_ = 0;
  // Next node in the batch (the counting node ends the chain with nullptr); also the link
  // in partial batches, orphan stacks, free queues and ready stacks.
  Node* batch_next_ = nullptr;
};
static_assert(sizeof(Node) == 32, "kovan::Node's header is 4 words (docs/RECLAIMER.md)");

// RAII pin of the calling thread. While a Guard lives, nodes loaded through Atomic<T>::load
// with it stay allocated. Guards nest (an inner guard is a counter increment); they are
// movable, not copyable, and must be destroyed on the thread that made them.
class Guard {
 public:
  Guard() noexcept : rec_(detail::enter()) {}
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  Guard(Guard&& other) noexcept : rec_(std::exchange(other.rec_, nullptr)) {}
  Guard& operator=(Guard&& other) noexcept {
    if (this != &other) {
      reset();
      rec_ = std::exchange(other.rec_, nullptr);
    }
    return *this;
  }
  ~Guard() { reset(); }

  // Unpins early; the guard is empty afterwards.
  void reset() noexcept {
    if (rec_ != nullptr) detail::leave(std::exchange(rec_, nullptr));
  }
  bool active() const noexcept { return rec_ != nullptr; }

 private:
  template <class T>
  friend class Atomic;
  detail::ThreadRec* rec_;
};

inline Guard pin() noexcept { return Guard(); }

// A shared pointer slot. Every operation that takes a Guard leaves the pointers it hands
// back (and the node it publishes) protected by that guard: see "WHAT A GUARD PROTECTS"
// at the top of this file. Not copyable or movable (helpers may hold its address).
template <class T>
class Atomic {
  // (T may be incomplete here: a node type usually holds Atomic<itself>. The base-class
  // checks are in the member functions, where T is complete.)
 public:
  Atomic() noexcept : p_(nullptr) {}
  explicit Atomic(T* p) noexcept : p_(p) {}
  Atomic(const Atomic&) = delete;
  Atomic& operator=(const Atomic&) = delete;
  // A slow-path load hands this object's address to helpers, which may still be reading it
  // for a few steps after the load returned. The destructor waits for such a helper (it is
  // rare, bounded by the helper's own steps, and costs one load when no helper is active).
  // Storage released without running this destructor is safe only inside a kovan Node that
  // is freed through retire(): kovan then keeps the node alive for its helpers itself.
  ~Atomic() { detail::before_destroy(&p_); }

  // Returns the current pointer, safe to dereference while `g` lives. Wait-free.
  // `o` must be acquire or seq_cst (relaxed and consume are strengthened to acquire).
  T* load(const Guard& g, std::memory_order o = std::memory_order_acquire) const noexcept {
    static_assert(std::is_base_of_v<Node, T>, "kovan::Atomic<T>: T must derive from kovan::Node");
    return static_cast<T*>(detail::protect(g.rec_, p_, o));
  }
  // An unprotected read, for code that owns the structure exclusively (construction,
  // destruction) or only compares the value.
  T* load_unprotected(std::memory_order o = std::memory_order_acquire) const noexcept {
    return static_cast<T*>(p_.load(o));
  }
  // Publishes `p` without a guard: once stored, `p` may be unlinked, retired and freed by
  // other threads at any time, so do not dereference it afterwards (use the overload below).
  void store(T* p, std::memory_order o = std::memory_order_release) noexcept { p_.store(p, o); }
  // Publishes `p` (a node the caller may access: its own, or protected) and keeps it
  // protected by `g` afterwards.
  void store(T* p, const Guard& g, std::memory_order o = std::memory_order_release) noexcept {
    cover(g, p);
    p_.store(p, o);
  }
  // Installs `p` (as store(p, g) does) and returns the previous pointer, which the caller
  // unlinked and may retire; both stay protected by `g`. For the returned node this holds
  // because the caller is the one who retires it (a node is retired once, by the thread that
  // unlinked it), after this call: see "WHAT A GUARD PROTECTS".
  T* exchange(T* p, const Guard& g, std::memory_order o = std::memory_order_acq_rel) noexcept {
    cover(g, p);
    T* old = static_cast<T*>(p_.exchange(p, o));
    if (old != nullptr) detail::cover_removed(g.rec_);
    return old;
  }
  // On success `desired` is installed and stays protected by `g` (covered before the CAS
  // publishes it); `expected` keeps the protection it had. On failure `expected` is
  // reloaded through the guard, so it is safe to dereference.
  bool compare_exchange_strong(T*& expected, T* desired, const Guard& g,
                               std::memory_order o = std::memory_order_acq_rel) noexcept {
    cover(g, desired);
    Node* e = expected;
    if (p_.compare_exchange_strong(e, desired, o, failure_order(o))) return true;
    expected = load(g);
    return false;
  }
  bool compare_exchange_weak(T*& expected, T* desired, const Guard& g,
                             std::memory_order o = std::memory_order_acq_rel) noexcept {
    cover(g, desired);
    Node* e = expected;
    if (p_.compare_exchange_weak(e, desired, o, failure_order(o))) return true;
    expected = load(g);
    return false;
  }

 private:
  static constexpr std::memory_order failure_order(std::memory_order o) noexcept {
    return o == std::memory_order_seq_cst ? std::memory_order_seq_cst : std::memory_order_acquire;
  }
  // Raises g's reservation to cover p's birth era (when the reservation is older) before p
  // is published. A thread that later unlinks p reads our publication (or a later value), so
  // the raise, which fence X orders before the publication, happens-before its fence Y and
  // attach scan (seq_cst fences synchronize through that read, whatever `o` is): the scan
  // sees an era >= p's birth and hands p's batch to g's slot.
  static void cover(const Guard& g, T* p) noexcept {
    static_assert(std::is_base_of_v<Node, T>, "kovan::Atomic<T>: T must derive from kovan::Node");
    if (p != nullptr) detail::cover_birth(g.rec_, static_cast<const Node*>(p)->birth_era());
  }
  std::atomic<Node*> p_;
};

// Hands `p` (which came from `new T`) to the reclaimer; it is deleted once no guard can
// reach it. Call it after unlinking p, so that no new reader can find it.
template <class T>
void retire(T* p) noexcept {
  static_assert(std::is_base_of_v<Node, T>, "kovan::retire: T must derive from kovan::Node");
  if (p == nullptr) return;
  detail::retire_node(static_cast<Node*>(p), detail::type_of<T>());
}

// Hands over this thread's partial batch (padding it so that it can be attached now),
// adopts every orphaned node, and deletes everything in this thread's free queue (running
// destructors, without the per-call quota). Call before a thread goes idle for long.
void flush() noexcept;

struct Stats {
  std::uint64_t retired;     // nodes passed to retire()
  std::uint64_t reclaimed;   // nodes deleted
  std::uint64_t era;         // the global era
  std::uint64_t slow_loads;  // loads that took the helped slow path
  std::uint64_t helps;       // help attempts made by era advancers
  std::uint64_t threads;     // thread slots ever used (high-water mark)
  std::uint64_t unreclaimed() const noexcept { return retired - reclaimed; }
};
// Process-wide counters. Exact once every thread has joined or flushed; a snapshot otherwise.
Stats stats() noexcept;

// ---------------------------------------------------------------------------------------
// Atom<T>: a safe value cell for code that does not want to think about nodes.
//   kovan::Atom<Config> cfg{Config{...}};
//   auto h = cfg.load();  h->field;        // h keeps the value alive while it lives
//   cfg.store(Config{...});
//   cfg.update([](const Config& c) { Config d = c; d.x++; return d; });
// A handle pins its thread (it holds a Guard) and keeps its value alive while it lives,
// including the values handed back by exchange and update: keep handles short-lived, on
// one thread.
// ---------------------------------------------------------------------------------------
template <class T>
class Atom {
  struct Box : Node {
    template <class... Args>
    explicit Box(Args&&... args) : value(std::forward<Args>(args)...) {}
    T value;
  };

 public:
  class Handle {
   public:
    const T& operator*() const noexcept { return box_->value; }
    const T* operator->() const noexcept { return &box_->value; }
    const T* get() const noexcept { return &box_->value; }

   private:
    friend class Atom;
    Handle(Guard g, const Box* b) noexcept : guard_(std::move(g)), box_(b) {}
    Guard guard_;
    const Box* box_;
  };

  template <class... Args>
  explicit Atom(Args&&... args) : cell_(new Box(std::forward<Args>(args)...)) {}
  Atom(const Atom&) = delete;
  Atom& operator=(const Atom&) = delete;
  ~Atom() { delete cell_.load_unprotected(std::memory_order_acquire); }

  Handle load() const noexcept {
    Guard g = pin();
    const Box* b = cell_.load(g);
    return Handle(std::move(g), b);
  }
  void store(T value) { (void)exchange(std::move(value)); }
  // Installs `value` and returns a handle to the previous one (retired, alive while the
  // handle lives: Atomic::exchange covers it with the handle's guard).
  Handle exchange(T value) {
    Box* fresh = new Box(std::move(value));
    Guard g = pin();
    Box* old = cell_.exchange(fresh, g);
    retire(old);
    return Handle(std::move(g), old);
  }
  // Installs `desired` if the cell still holds the value `expected` refers to.
  bool compare_exchange(const Handle& expected, T desired) {
    Box* fresh = new Box(std::move(desired));
    Guard g = pin();
    Box* e = const_cast<Box*>(expected.box_);
    if (cell_.compare_exchange_strong(e, fresh, g)) {
      retire(const_cast<Box*>(expected.box_));
      return true;
    }
    delete fresh;
    return false;
  }
  // Replaces the value with fn(current) atomically (retrying if another writer got there
  // first) and returns a handle to the value it installed (alive while the handle lives:
  // the CAS covers the new node with the handle's guard before publishing it).
  template <class Fn>
  Handle update(Fn&& fn) {
    Guard g = pin();
    Box* cur = cell_.load(g);
    for (;;) {
      Box* fresh = new Box(fn(static_cast<const T&>(cur->value)));
      if (cell_.compare_exchange_strong(cur, fresh, g)) {
        retire(cur);
        return Handle(std::move(g), fresh);
      }
      delete fresh;
    }
  }

 private:
  Atomic<Box> cell_;
};

}  // namespace kovan
