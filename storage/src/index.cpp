// storage/src/index.cpp — insert-only lock-free skip list (invariants in index.hpp).
//
// Memory orders: a node is initialized (key, tower) and then published by a release CAS
// on its predecessor's link; every traversal loads links with acquire, pairing with that
// CAS, so a reader that reaches a node sees its key and its lower links.
#include "index.hpp"

#include <cstdint>

namespace kv::storage::detail {

namespace {
bool key_less(std::string_view a, std::string_view b) noexcept { return a.compare(b) < 0; }
}  // namespace

SkipList::SkipList() : head_(KeyNode::make("", KeyNode::kMaxHeight)) {}

SkipList::~SkipList() {
  KeyNode* n = head_;
  while (n != nullptr) {
    KeyNode* nx = n->next(0).load(std::memory_order_relaxed);
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

void SkipList::find_preds(std::string_view key, KeyNode** preds, KeyNode** succs) const noexcept {
  KeyNode* x = head_;
  for (int level = KeyNode::kMaxHeight - 1; level >= 0; --level) {
    // acquire: pairs with the release CAS that published each node (file comment).
    KeyNode* nx = x->next(level).load(std::memory_order_acquire);
    while (nx != nullptr && key_less(nx->key, key)) {
      x = nx;
      nx = x->next(level).load(std::memory_order_acquire);
    }
    preds[level] = x;
    succs[level] = nx;
  }
}

KeyNode* SkipList::lower_bound(std::string_view key) const noexcept {
  KeyNode* x = head_;
  KeyNode* nx = nullptr;
  for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level) {
    nx = x->next(level).load(std::memory_order_acquire);  // pairs: publishing CAS
    while (nx != nullptr && key_less(nx->key, key)) {
      x = nx;
      nx = x->next(level).load(std::memory_order_acquire);  // pairs: publishing CAS
    }
  }
  return nx;
}

KeyNode* SkipList::find(std::string_view key) const noexcept {
  KeyNode* n = lower_bound(key);
  return (n != nullptr && n->key == key) ? n : nullptr;
}

KeyNode* SkipList::last_less(std::string_view key) const noexcept {
  KeyNode* x = head_;
  for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level) {
    KeyNode* nx = x->next(level).load(std::memory_order_acquire);  // pairs: publishing CAS
    while (nx != nullptr && key_less(nx->key, key)) {
      x = nx;
      nx = x->next(level).load(std::memory_order_acquire);  // pairs: publishing CAS
    }
  }
  return x == head_ ? nullptr : x;
}

KeyNode* SkipList::last() const noexcept {
  KeyNode* x = head_;
  for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level) {
    KeyNode* nx = x->next(level).load(std::memory_order_acquire);  // pairs: publishing CAS
    while (nx != nullptr) {
      x = nx;
      nx = x->next(level).load(std::memory_order_acquire);  // pairs: publishing CAS
    }
  }
  return x == head_ ? nullptr : x;
}

KeyNode* SkipList::find_or_insert(std::string_view key, bool* inserted) {
  KeyNode* preds[KeyNode::kMaxHeight];
  KeyNode* succs[KeyNode::kMaxHeight];
  KeyNode* node = nullptr;
  int height = 0;
  for (;;) {
    find_preds(key, preds, succs);
    if (succs[0] != nullptr && succs[0]->key == key) {
      if (node != nullptr) KeyNode::destroy(node);  // never published
      *inserted = false;
      return succs[0];
    }
    if (node == nullptr) {
      height = random_height();
      node = KeyNode::make(key, height);
    }
    for (int l = 0; l < height; ++l) node->next(l).store(succs[l], std::memory_order_relaxed);
    KeyNode* expected = succs[0];
    // release: publishes the node's key and tower (paired with the acquire loads of
    // traversals); acquire on failure is not needed, we search again.
    if (preds[0]->next(0).compare_exchange_strong(expected, node, std::memory_order_release,
                                                  std::memory_order_relaxed)) {
      break;
    }
  }
  // Linked at level 0: the key is in the index. Raise the hint, then link the upper levels.
  int mh = max_height_.load(std::memory_order_relaxed);
  while (mh < height && !max_height_.compare_exchange_weak(mh, height, std::memory_order_relaxed)) {
  }
  for (int l = 1; l < height; ++l) {
    for (;;) {
      KeyNode* expected = succs[l];
      // release: as above, the node's link at this level is set before it is reachable here.
      if (preds[l]->next(l).compare_exchange_strong(expected, node, std::memory_order_release,
                                                    std::memory_order_relaxed)) {
        break;
      }
      find_preds(key, preds, succs);  // the node is not at level l yet: succs[l]->key > key
      node->next(l).store(succs[l], std::memory_order_relaxed);
    }
  }
  size_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(node->footprint(), std::memory_order_relaxed);
  *inserted = true;
  return node;
}

}  // namespace kv::storage::detail
