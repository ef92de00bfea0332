// Baseline (a): std::map<std::string, std::string> under one std::shared_mutex (readers
// share it, writers take it exclusively).
#include <map>
#include <mutex>
#include <shared_mutex>

#include "store.hpp"

namespace kv::bench {
namespace {

// Heap bytes of a std::string of `n` characters with libstdc++ (15 characters fit inline)
// under glibc malloc (8-byte header, 16-byte granules, 32-byte minimum chunk).
double string_heap_bytes(std::size_t n) {
  if (n <= 15) return 0.0;
  std::size_t chunk = (n + 1 + 8 + 15) / 16 * 16;
  return static_cast<double>(chunk < 32 ? 32 : chunk);
}

class MapStore final : public Store {
 public:
  std::string_view name() const noexcept override { return "shared_mutex+std::map"; }

  bool read(std::string_view key, std::string& out) override {
    std::shared_lock lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    out = it->second;
    return true;
  }

  void write(std::string_view key, std::string_view value) override {
    std::unique_lock lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      it->second.assign(value);
    } else {
      map_.emplace(std::string(key), std::string(value));
    }
  }

  std::size_t scan(std::string_view start, std::string_view end, std::size_t limit) override {
    std::shared_lock lock(mu_);
    std::size_t n = 0;
    std::string sink;
    for (auto it = map_.lower_bound(start); it != map_.end() && n < limit; ++it) {
      if (!end.empty() && it->first >= end) break;
      sink = it->second;
      ++n;
    }
    return n;
  }

  double bytes_per_key() const override {
    std::shared_lock lock(mu_);
    if (map_.empty()) return 0.0;
    // Red-black node: 32 bytes of links and colour plus the pair, in one malloc chunk.
    const std::size_t node = 32 + sizeof(std::pair<const std::string, std::string>);
    double total = 0.0;
    for (const auto& [k, v] : map_) {
      total += static_cast<double>((node + 8 + 15) / 16 * 16);
      total += string_heap_bytes(k.size()) + string_heap_bytes(v.size());
    }
    return total / static_cast<double>(map_.size());
  }

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::string, std::less<>> map_;
};

}  // namespace

std::unique_ptr<Store> make_map_store() { return std::make_unique<MapStore>(); }

}  // namespace kv::bench
