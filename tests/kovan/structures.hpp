// Lock-free structures used by the kovan tests: a Treiber stack, a Michael-Scott queue and
// a copy-on-write hash map. Every read of a node checks its canary.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "kovan/kovan.hpp"
#include "tracked.hpp"

namespace kovan_test {

// Records a canary failure without aborting the thread (gtest assertions are not
// thread-safe to use from every worker).
inline std::atomic<long> g_canary_failures{0};
inline void check(const Tracked* t) {
  if (!t->alive()) g_canary_failures.fetch_add(1, std::memory_order_relaxed);
}

class TreiberStack {
  struct N : Tracked {
    explicit N(std::uint64_t v) : value(v) {}
    std::uint64_t value;
    N* next = nullptr;
  };

 public:
  ~TreiberStack() {
    N* n = top_.load_unprotected();
    while (n != nullptr) {
      N* next = n->next;
      delete n;
      n = next;
    }
  }
  void push(std::uint64_t v) {
    N* n = new N(v);
    kovan::Guard g = kovan::pin();
    N* head = top_.load(g);
    do {
      n->next = head;
    } while (!top_.compare_exchange_weak(head, n, g, std::memory_order_release));
  }
  std::optional<std::uint64_t> pop() {
    kovan::Guard g = kovan::pin();
    N* head = top_.load(g);
    while (head != nullptr) {
      check(head);
      N* next = head->next;
      if (top_.compare_exchange_weak(head, next, g, std::memory_order_acquire)) {
        const std::uint64_t v = head->value;
        kovan::retire(head);
        return v;
      }
    }
    return std::nullopt;
  }

 private:
  kovan::Atomic<N> top_;
};

class MSQueue {
  struct N : Tracked {
    explicit N(std::uint64_t v) : value(v) {}
    std::uint64_t value;
    kovan::Atomic<N> next;
  };

 public:
  MSQueue() {
    N* dummy = new N(0);
    head_.store(dummy);
    tail_.store(dummy);
  }
  ~MSQueue() {
    N* n = head_.load_unprotected();
    while (n != nullptr) {
      N* next = n->next.load_unprotected();
      delete n;
      n = next;
    }
  }
  void enqueue(std::uint64_t v) {
    N* n = new N(v);
    kovan::Guard g = kovan::pin();
    for (;;) {
      N* tail = tail_.load(g);
      check(tail);
      N* next = tail->next.load(g);
      if (tail != tail_.load(g)) continue;
      if (next == nullptr) {
        N* expected = nullptr;
        if (tail->next.compare_exchange_strong(expected, n, g)) {
          tail_.compare_exchange_strong(tail, n, g);
          return;
        }
      } else {
        tail_.compare_exchange_strong(tail, next, g);
      }
    }
  }
  std::optional<std::uint64_t> dequeue() {
    kovan::Guard g = kovan::pin();
    for (;;) {
      N* head = head_.load(g);
      N* tail = tail_.load(g);
      check(head);
      N* next = head->next.load(g);
      if (head != head_.load(g)) continue;
      if (next == nullptr) return std::nullopt;
      if (head == tail) {
        tail_.compare_exchange_strong(tail, next, g);
        continue;
      }
      check(next);
      const std::uint64_t v = next->value;
      if (head_.compare_exchange_strong(head, next, g)) {
        kovan::retire(head);
        return v;
      }
    }
  }

 private:
  kovan::Atomic<N> head_;
  kovan::Atomic<N> tail_;
};

// Each bucket is an immutable sorted vector replaced wholesale by CAS: every update retires
// the bucket it replaced.
class CowHashMap {
  struct Bucket : Tracked {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> items;
  };
  static constexpr std::size_t kBuckets = 64;

 public:
  ~CowHashMap() {
    for (auto& b : buckets_) delete b.load_unprotected();
  }
  std::optional<std::uint64_t> get(std::uint64_t k) const {
    kovan::Guard g = kovan::pin();
    const Bucket* b = buckets_[k % kBuckets].load(g);
    if (b == nullptr) return std::nullopt;
    check(b);
    for (const auto& [key, v] : b->items)
      if (key == k) return v;
    return std::nullopt;
  }
  // Inserts or replaces; returns true if the key was new.
  bool put(std::uint64_t k, std::uint64_t v) {
    return modify(k, [&](std::vector<std::pair<std::uint64_t, std::uint64_t>>& items) {
      for (auto& kv : items)
        if (kv.first == k) {
          kv.second = v;
          return false;
        }
      items.emplace_back(k, v);
      return true;
    });
  }
  bool erase(std::uint64_t k) {
    return modify(k, [&](std::vector<std::pair<std::uint64_t, std::uint64_t>>& items) {
      for (auto it = items.begin(); it != items.end(); ++it)
        if (it->first == k) {
          items.erase(it);
          return true;
        }
      return false;
    });
  }

 private:
  template <class Fn>
  bool modify(std::uint64_t k, Fn&& fn) {
    auto& slot = buckets_[k % kBuckets];
    kovan::Guard g = kovan::pin();
    Bucket* cur = slot.load(g);
    for (;;) {
      Bucket* next = new Bucket();
      if (cur != nullptr) {
        check(cur);
        next->items = cur->items;
      }
      const bool changed = fn(next->items);
      if (slot.compare_exchange_strong(cur, next, g)) {
        if (cur != nullptr) kovan::retire(cur);
        return changed;
      }
      delete next;
    }
  }
  std::array<kovan::Atomic<Bucket>, kBuckets> buckets_;
};

}  // namespace kovan_test
