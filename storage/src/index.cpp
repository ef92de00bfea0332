// storage/src/index.cpp — the lazy concurrent skip list (invariants and memory-order pairs in
// index.hpp; the safety argument for reclamation in docs/STORAGE.md).
#include "index.hpp"

#include <cstdint>
#include <thread>

namespace kv::storage::detail {

namespace {
bool key_less(std::string_view a, std::string_view b) noexcept { return a.compare(b) < 0; }

// Locks the distinct predecessors preds[0..n) bottom-up. preds[l] has a key <= preds[l-1]'s,
// so every thread takes link locks in decreasing key order (a removal takes its victim, the
// largest key, first): no cycle, no deadlock.
void lock_preds(KeyNode* const* preds, int n) noexcept {
  KeyNode* prev = nullptr;
  for (int l = 0; l < n; ++l) {
    if (preds[l] != prev) preds[l]->lock();
    prev = preds[l];
  }
}
void unlock_preds(KeyNode* const* preds, int n) noexcept {
  KeyNode* prev = nullptr;
  for (int l = 0; l < n; ++l) {
    if (preds[l] != prev) preds[l]->unlock();
    prev = preds[l];
  }
}
// Spin-wait step: pause, and yield now and then (a preempted lock holder needs the CPU).
void cpu_relax(int* spins) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
  if (++*spins % 64 == 0) std::this_thread::yield();
}
}  // namespace

SkipList::SkipList()
    : table_(new Table(kMinHashBuckets)), head_(KeyNode::make("", KeyNode::kMaxHeight)) {
  head_->fully_linked.store(true, std::memory_order_relaxed);  // published with the list
}

SkipList::~SkipList() {
  // Exclusive access: no growth runs (it runs inside find_or_insert), so next_table_ is null.
  delete table_.load_unprotected(std::memory_order_acquire);
  delete next_table_.load_unprotected(std::memory_order_acquire);
  KeyNode* n = head_;
  while (n != nullptr) {
    KeyNode* nx = next_unprotected(n);
    KeyNode::destroy(n);
    n = nx;
  }
}

int SkipList::random_height() noexcept {
  // xorshift64*, one state per thread; p = 1/4 per level.
  thread_local std::uint64_t state =
      0x9E3779B97F4A7C15ULL ^ reinterpret_cast<std::uintptr_t>(&state);
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  std::uint64_t r = state * 0x2545F4914F6CDD1DULL;
  int h = 1;
  while (h < KeyNode::kMaxHeight && (r & 3U) == 0) {
    ++h;
    r >>= 2;
  }
  return h;
}

bool SkipList::step(const KeyNode* x, int level, KeyNode** out, const kovan::Guard& g) noexcept {
  // acquire (kovan load): pairs with the release link store that published or unlinked.
  KeyNode* nx = x->next(level).load(g);
  // acquire: pairs with remove()'s release store of `marked`. Read after the link (I4): if x
  // is still unmarked, nx was linked when it was read, so whatever later retires nx is
  // preceded by a change that this load or the link load was coherence-ordered before.
  if (x->marked.load(std::memory_order_acquire)) return false;
  *out = nx;
  return true;
}

int SkipList::find_preds(std::string_view key, KeyNode** preds, KeyNode** succs,
                         const kovan::Guard& g) const noexcept {
retry:
  int found = -1;
  KeyNode* x = head_;
  const int levels = top();
  // Levels at or above the hint are taken as empty; insert/remove validation under the
  // locks catches a node linked there meanwhile (the link is then not null) and retries.
  for (int level = KeyNode::kMaxHeight - 1; level >= levels; --level) {
    preds[level] = head_;
    succs[level] = nullptr;
  }
  for (int level = levels - 1; level >= 0; --level) {
    KeyNode* nx = nullptr;
    if (!step(x, level, &nx, g)) goto retry;
    while (nx != nullptr && key_less(nx->key, key)) {
      x = nx;
      if (!step(x, level, &nx, g)) goto retry;
    }
    if (found < 0 && nx != nullptr && nx->key == key) found = level;
    preds[level] = x;
    succs[level] = nx;
  }
  return found;
}

KeyNode* SkipList::lower_bound(std::string_view key, const kovan::Guard& g) const noexcept {
retry:
  KeyNode* x = head_;
  KeyNode* nx = nullptr;
  for (int level = top() - 1; level >= 0; --level) {
    if (!step(x, level, &nx, g)) goto retry;
    while (nx != nullptr && key_less(nx->key, key)) {
      x = nx;
      if (!step(x, level, &nx, g)) goto retry;
    }
  }
  return nx;
}

KeyNode* SkipList::upper_bound(std::string_view key, const kovan::Guard& g) const noexcept {
retry:
  KeyNode* x = head_;
  KeyNode* nx = nullptr;
  for (int level = top() - 1; level >= 0; --level) {
    if (!step(x, level, &nx, g)) goto retry;
    while (nx != nullptr && !key_less(key, nx->key)) {
      x = nx;
      if (!step(x, level, &nx, g)) goto retry;
    }
  }
  return nx;
}

KeyNode* SkipList::hash_find(std::string_view key, const kovan::Guard& g) const noexcept {
  const std::uint32_t h = KeyNode::hash_of(key);
  // acquire (kovan load): pairs with the release store that published the table (I8e).
  const Table* t = table_.load(g);
  Bucket* b = &t->at(h);
  KeyNode* n = b->head.load(g);  // acquire: pairs with the release head stores (insert, I8b)
  // acquire: pairs with migrate()'s release store of `moved`: we then see next_table_ = T2
  // (or null and table_ = T2, I8e) and T2's heads for this bucket.
  if (n == nullptr && b->moved.load(std::memory_order_acquire)) {
    t = next_table_.load(g);  // acquire: pairs with grow's release stores (I8a, I8e)
    if (t == nullptr) t = table_.load(g);
    b = &t->at(h);
    n = b->head.load(g);
    // Moved again (a second growth), or still empty: the skip list answers (I8d).
  }
  while (n != nullptr) {
    if (n->hash == h && n->key == key) {
      // acquire on both flags: pair with remove()'s and find_or_insert's release stores.
      if (!n->marked.load(std::memory_order_acquire) &&
          n->fully_linked.load(std::memory_order_acquire)) {
        return n;
      }
      return nullptr;
    }
    KeyNode* nx = n->hash_next.load(g);
    // As step() (I4): n must still be unmarked after its link was read.
    if (n->marked.load(std::memory_order_acquire)) return nullptr;
    n = nx;
  }
  return nullptr;
}

KeyNode* SkipList::find(std::string_view key, const kovan::Guard& g) const noexcept {
  // Fast path: the hash chain (I7). A miss or any doubt falls through to the skip list.
  if (KeyNode* n = hash_find(key, g)) return n;
  KeyNode* f = lower_bound(key, g);
  return (f != nullptr && f->key == key) ? f : nullptr;
}

void SkipList::lock_bucket(Bucket& b) noexcept {
  // acquire: pairs with unlock_bucket's release (writers of one bucket, and the migrator, in
  // turn: each sees the chain the previous one left).
  for (int spins = 0; b.lock.exchange(true, std::memory_order_acquire);) cpu_relax(&spins);
}

void SkipList::unlock_bucket(Bucket& b) noexcept {
  b.lock.store(false, std::memory_order_release);  // pairs with lock_bucket's acquire
}

SkipList::Bucket& SkipList::lock_home(std::uint64_t hash, const kovan::Guard& g) const noexcept {
  const Table* t = table_.load(g);  // acquire: pairs with the release store of the table
  for (;;) {
    Bucket& b = t->at(hash);
    lock_bucket(b);
    // Under the lock: `moved` is set under it too, so relaxed suffices here.
    if (!b.moved.load(std::memory_order_relaxed)) return b;
    unlock_bucket(b);
    // The lock's acquire ordered us after the migrator's store of next_table_ = T2 (I8a),
    // so this load (acquire, pairing with grow's release stores) gives T2, or null once the
    // growth ended, and then table_ is T2 or newer (I8e). Each turn reaches a newer table.
    t = next_table_.load(g);
    if (t == nullptr) t = table_.load(g);
  }
}

void SkipList::hash_insert(KeyNode* n, const kovan::Guard& g) noexcept {
  Bucket& b = lock_home(n->hash, g);
  n->hash_next.store(b.head.load_unprotected(std::memory_order_relaxed), std::memory_order_relaxed);
  // release: publishes n's fields to readers that load the bucket head (acquire).
  b.head.store(n, std::memory_order_release);
  unlock_bucket(b);
}

void SkipList::hash_erase(KeyNode* n, const kovan::Guard& g) noexcept {
  Bucket& b = lock_home(n->hash, g);
  kovan::Atomic<KeyNode>* link = &b.head;
  for (KeyNode* x = link->load_unprotected(std::memory_order_relaxed); x != n;
       x = link->load_unprotected(std::memory_order_relaxed)) {
    link = &x->hash_next;  // n is in this chain (I7, I8c); the lock keeps the chain still
  }
  // release: the successor was published before; readers that load this link (acquire)
  // see it. n's own hash_next is left as it is, for readers standing on n.
  link->store(n->hash_next.load_unprotected(std::memory_order_relaxed), std::memory_order_release);
  unlock_bucket(b);
}

void SkipList::migrate(Table* from, Table* to) noexcept {
  const std::size_t n = from->size();
  for (std::size_t i = 0; i < n; ++i) {
    Bucket& src = from->buckets[i];
    Bucket& lo = to->buckets[i];
    Bucket& hi = to->buckets[i + n];
    // Order: old bucket, then its two new ones. Writers hold one bucket lock at a time, so
    // no cycle. The new buckets are still empty: only writers that saw src moved use them.
    lock_bucket(src);
    lock_bucket(lo);
    lock_bucket(hi);
    // Split the chain by hash bit n, keeping relative order (I7: hash_next points to an
    // older node). Under src's lock no node of the chain can be erased: plain pointers.
    KeyNode* heads[2] = {nullptr, nullptr};  // [0]: goes to lo, [1]: to hi
    KeyNode* tails[2] = {nullptr, nullptr};
    for (KeyNode* x = src.head.load_unprotected(std::memory_order_relaxed); x != nullptr;) {
      KeyNode* nx = x->hash_next.load_unprotected(std::memory_order_relaxed);
      const int side = (x->hash & n) != 0 ? 1 : 0;
      // release: x was published long ago; a reader standing on the tail (acquire load of
      // its hash_next) may step to x, still in a chain (I8f).
      if (tails[side] != nullptr) {
        tails[side]->hash_next.store(x, std::memory_order_release);
      } else {
        heads[side] = x;
      }
      tails[side] = x;
      x = nx;
    }
    // End both halves. release: pairs with the readers' acquire load (a null: a miss there).
    for (KeyNode* tail : tails) {
      if (tail != nullptr) tail->hash_next.store(nullptr, std::memory_order_release);
    }
    KeyNode* const lo_head = heads[0];
    KeyNode* const hi_head = heads[1];
    // release: pairs with the readers' acquire loads of the new heads.
    lo.head.store(lo_head, std::memory_order_release);
    hi.head.store(hi_head, std::memory_order_release);
    // The old chain is gone from T1: new readers of src see it empty and moved (I8d).
    src.head.store(nullptr, std::memory_order_release);
    // release: pairs with hash_find's acquire load of `moved` (after the heads above).
    src.moved.store(true, std::memory_order_release);
    unlock_bucket(hi);
    unlock_bucket(lo);
    unlock_bucket(src);
  }
}

void SkipList::maybe_grow(const kovan::Guard& g) {
  // The common case, on every insert: one relaxed load of a hint (a stale one only delays
  // or repeats the check below, which is made again under `resizing_`).
  if (size() <= grow_at_.load(std::memory_order_relaxed)) return;
  // acquire: pairs with the release below (one growth at a time, each sees the last's end).
  if (resizing_.exchange(true, std::memory_order_acquire)) return;
  Table* t = table_.load(g);
  if (size() > kMaxLoad * t->size()) {
    Table* t2 = new Table(2 * t->size());
    // release: publishes T2's empty buckets before any bucket moves (I8a); pairs with the
    // acquire loads of next_table_ (made after a moved bucket was seen).
    next_table_.store(t2, std::memory_order_release);
    migrate(t, t2);
    // release (both): the table_ store comes first (I8e); pairs with the acquire loads.
    table_.store(t2, std::memory_order_release);
    next_table_.store(nullptr, std::memory_order_release);
    growths_.fetch_add(1, std::memory_order_relaxed);
    grow_at_.store(kMaxLoad * t2->size(), std::memory_order_relaxed);
    // Unlinked from table_ and next_table_, and tables are loaded from nowhere else (I8e).
    kovan::retire(t);
  }
  resizing_.store(false, std::memory_order_release);
}

SkipList::HashStats SkipList::hash_stats() const {
  kovan::Guard g = kovan::pin();
  HashStats st;
  // acquire: pairs with maybe_grow's release. A growth may run meanwhile: then the counts
  // are of the table as this walk saw it (moved buckets count empty).
  const Table* t = table_.load(g);
  st.buckets = t->size();
  st.growths = growths_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < t->size(); ++i) {
    Bucket& b = t->buckets[i];
    lock_bucket(b);
    std::size_t len = 0;
    // Under the bucket's lock its chain stands still and its nodes cannot be erased.
    for (KeyNode* x = b.head.load_unprotected(std::memory_order_relaxed); x != nullptr;
         x = x->hash_next.load_unprotected(std::memory_order_relaxed)) {
      ++len;
    }
    unlock_bucket(b);
    st.nodes += len;
    if (len > st.longest_chain) st.longest_chain = len;
  }
  return st;
}

bool SkipList::hash_has(std::string_view key) const noexcept {
  kovan::Guard g = kovan::pin();
  return hash_find(key, g) != nullptr;
}

KeyNode* SkipList::last_less(std::string_view key, const kovan::Guard& g) const noexcept {
retry:
  KeyNode* x = head_;
  for (int level = top() - 1; level >= 0; --level) {
    KeyNode* nx = nullptr;
    if (!step(x, level, &nx, g)) goto retry;
    while (nx != nullptr && key_less(nx->key, key)) {
      x = nx;
      if (!step(x, level, &nx, g)) goto retry;
    }
  }
  return x == head_ ? nullptr : x;
}

KeyNode* SkipList::last(const kovan::Guard& g) const noexcept {
retry:
  KeyNode* x = head_;
  for (int level = top() - 1; level >= 0; --level) {
    KeyNode* nx = nullptr;
    if (!step(x, level, &nx, g)) goto retry;
    while (nx != nullptr) {
      x = nx;
      if (!step(x, level, &nx, g)) goto retry;
    }
  }
  return x == head_ ? nullptr : x;
}

KeyNode* SkipList::first(const kovan::Guard& g) const noexcept {
  KeyNode* nx = nullptr;
  (void)step(head_, 0, &nx, g);  // the head is never marked
  return nx;
}

KeyNode* SkipList::next(const KeyNode* n, const kovan::Guard& g) const noexcept {
  KeyNode* nx = nullptr;
  if (step(n, 0, &nx, g)) return nx;
  return upper_bound(n->key, g);  // n was removed: search again from the head
}

KeyNode* SkipList::find_or_insert(std::string_view key, const kovan::Guard& g, bool* inserted) {
  KeyNode* preds[KeyNode::kMaxHeight];
  KeyNode* succs[KeyNode::kMaxHeight];
  const int height = random_height();
  // An existing key (the common case for updates) is found through the hash table (I7),
  // exactly as the search below would find it: unmarked and fully linked.
  if (KeyNode* f = hash_find(key, g)) {
    *inserted = false;
    return f;
  }
  KeyNode* node = nullptr;  // allocated outside the locks, once; published below
  int spins = 0;
  for (;;) {
    const int found = find_preds(key, preds, succs, g);
    if (found >= 0) {
      KeyNode* f = succs[found];
      // acquire: pairs with remove()'s release store of `marked`.
      if (!f->marked.load(std::memory_order_acquire)) {
        // acquire: pairs with the inserter's release store; it holds its locks for a few
        // stores only.
        while (!f->fully_linked.load(std::memory_order_acquire)) cpu_relax(&spins);
        if (node != nullptr) KeyNode::destroy(node);  // never published
        *inserted = false;
        return f;
      }
      cpu_relax(&spins);  // being removed (I2): wait until it is unlinked, then insert afresh
      continue;
    }
    if (node == nullptr) node = KeyNode::make(key, height);
    lock_preds(preds, height);
    bool valid = true;
    for (int l = 0; valid && l < height; ++l) {
      // Under preds[l]'s lock: its links and its mark are stable. acquire on `marked`
      // pairs with remove()'s release store (the lock already orders it for preds).
      valid = !preds[l]->marked.load(std::memory_order_acquire) &&
              (succs[l] == nullptr || !succs[l]->marked.load(std::memory_order_acquire)) &&
              preds[l]->next(l).load_unprotected(std::memory_order_relaxed) == succs[l];
    }
    if (!valid) {
      unlock_preds(preds, height);
      continue;
    }
    for (int l = 0; l < height; ++l) node->next(l).store(succs[l], std::memory_order_relaxed);
    int mh = max_height_.load(std::memory_order_relaxed);
    while (mh < height &&
           !max_height_.compare_exchange_weak(mh, height, std::memory_order_relaxed)) {
    }
    // Bottom-up: level 0 is the linearization point of the insertion. release: publishes the
    // node's key, tower and flags (paired with the acquire link loads of traversals).
    for (int l = 0; l < height; ++l) preds[l]->next(l).store(node, std::memory_order_release);
    // Into the hash table before fully_linked: nobody removes a node that is not fully
    // linked, so remove()'s hash_erase always finds it there (I7).
    hash_insert(node, g);
    // release: pairs with the acquire loads in find_or_insert and in the engine's remover.
    node->fully_linked.store(true, std::memory_order_release);
    // The caller keeps `node`, which it did not get from a protected load: load a link
    // through the guard now, which publishes an era at least the node's birth (I1). This
    // happens before the node can be unlinked (that needs the locks released below and the
    // commit lock the caller takes next), so the node's eventual retirer sees that era.
    (void)preds[0]->next(0).load(g);
    unlock_preds(preds, height);
    size_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(node->footprint(), std::memory_order_relaxed);
    maybe_grow(g);  // after the locks: the growth holds only bucket locks (I8)
    *inserted = true;
    return node;
  }
}

void SkipList::remove(KeyNode* n, const kovan::Guard& g) noexcept {
  KeyNode* preds[KeyNode::kMaxHeight];
  KeyNode* succs[KeyNode::kMaxHeight];
  const int height = n->height;
  n->lock();  // the victim first: it has the largest key of the locks taken here
  // release: pairs with the acquire loads in step() and in insert validation (I3, I4).
  n->marked.store(true, std::memory_order_release);
  int spins = 0;
  for (;;) {
    (void)find_preds(n->key, preds, succs, g);
    lock_preds(preds, height);
    bool valid = true;
    for (int l = 0; valid && l < height; ++l) {
      // acquire on `marked`: see find_or_insert (the lock orders it too).
      valid = !preds[l]->marked.load(std::memory_order_acquire) &&
              preds[l]->next(l).load_unprotected(std::memory_order_relaxed) == n;
    }
    if (valid) {
      for (int l = height - 1; l >= 0; --l) {
        // n's links are frozen (it is marked and locked); release: the successor was
        // published before, this keeps the link stores ordered for readers (I4).
        preds[l]->next(l).store(n->next(l).load_unprotected(std::memory_order_relaxed),
                                std::memory_order_release);
      }
      unlock_preds(preds, height);
      break;
    }
    unlock_preds(preds, height);
    cpu_relax(&spins);  // a predecessor changed or is being removed itself: search again
  }
  n->unlock();
  hash_erase(n, g);  // marked, so readers of the table no longer return it (I7)
  size_.fetch_sub(1, std::memory_order_relaxed);
  bytes_.fetch_sub(n->footprint(), std::memory_order_relaxed);
  kovan::retire(n);  // unlinked at every level: no new reader can reach it (I1)
}

}  // namespace kv::storage::detail
