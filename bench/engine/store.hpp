// bench/engine/store.hpp — the key-value stores that the in-process benchmark drives side by
// side: the Kovan KV storage engine and two baselines. Every store is safe for concurrent
// use by any number of threads, provided each thread calls thread_enter() before its first
// operation and thread_exit() after its last (libcds needs its threads attached).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kv::bench {

class Store {
 public:
  virtual ~Store() = default;
  virtual std::string_view name() const noexcept = 0;
  virtual void thread_enter() {}
  virtual void thread_exit() {}
  // Copies the value of `key` into `out`; false if absent.
  virtual bool read(std::string_view key, std::string& out) = 0;
  // Inserts or overwrites.
  virtual void write(std::string_view key, std::string_view value) = 0;
  // Reads up to `limit` keys of [start, end) in key order, copying the values; returns how
  // many were read.
  virtual std::size_t scan(std::string_view start, std::string_view end, std::size_t limit) = 0;
  // Bytes held per key by the store's own accounting or, where it has none, an estimate
  // from the sizes of its nodes and strings (0 when unknown).
  virtual double bytes_per_key() const = 0;
  // False where the store has no ordered seek (YCSB E is then skipped for it).
  virtual bool supports_scan() const noexcept { return true; }
};

// watch_history_bytes: the engine's Options::watch_history_bytes (< 0: its default).
std::unique_ptr<Store> make_engine_store(long long watch_history_bytes = -1);
std::unique_ptr<Store> make_map_store();
// Null when the benchmark was built without libcds.
std::unique_ptr<Store> make_cds_store();

// Resident set size of this process in bytes (/proc/self/statm), 0 if unreadable.
std::uint64_t rss_bytes();

int run_ycsb(const std::vector<std::string>& args);
int run_stall(const std::vector<std::string>& args);

}  // namespace kv::bench
