// Baseline (b): libcds's lock-free skip-list map (cds::container::SkipListMap) with hazard
// pointers. Values are immutable strings behind an atomic shared_ptr, so an update
// replaces the whole value and a reader never sees a half-written one.
//
// libcds keeps process-wide state: cds::Initialize() and one cds::gc::HP object must exist
// before any thread attaches, so at most one CdsStore may exist at a time.
#include <cds/container/skip_list_map_hp.h>
#include <cds/gc/hp.h>
#include <cds/init.h>
#include <cds/threading/model.h>

#include <atomic>
#include <optional>

#include "store.hpp"

namespace kv::bench {
namespace {

struct Value {
  Value() = default;
  Value(const Value& other) : ptr(other.ptr.load(std::memory_order_acquire)) {}
  // Release store pairs with the acquire load in read(): the string is fully built before a
  // reader can reach it.
  std::atomic<std::shared_ptr<const std::string>> ptr;
};

struct KeyLess {
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a < b; }
};

struct MapTraits : public cds::container::skip_list::traits {
  using less = KeyLess;
};

using Map = cds::container::SkipListMap<cds::gc::HP, std::string, Value, MapTraits>;

class CdsStore final : public Store {
 public:
  CdsStore() {
    cds::Initialize();
    // Enough hazard pointers for the skip list's searches (2 per level plus 3).
    hp_.emplace(Map::c_nHazardPtrCount + 8);
    cds::threading::Manager::attachThread();
    map_.emplace();
  }
  ~CdsStore() override {
    map_.reset();
    cds::threading::Manager::detachThread();
    hp_.reset();
    cds::Terminate();
  }
  CdsStore(const CdsStore&) = delete;
  CdsStore& operator=(const CdsStore&) = delete;

  std::string_view name() const noexcept override { return "libcds-skiplist"; }
  void thread_enter() override { cds::threading::Manager::attachThread(); }
  void thread_exit() override { cds::threading::Manager::detachThread(); }

  bool read(std::string_view key, std::string& out) override {
    return map_->find_with(key, KeyLess{}, [&](Map::value_type& item) {
      // Acquire pairs with the release store in write().
      auto v = item.second.ptr.load(std::memory_order_acquire);
      if (v) out = *v;
    });
  }

  void write(std::string_view key, std::string_view value) override {
    auto v = std::make_shared<const std::string>(value);
    auto r = map_->update(
        std::string(key),
        [&](bool, Map::value_type& item) {
          // Release pairs with the acquire loads in read() and Value's copy.
          item.second.ptr.store(v, std::memory_order_release);
        },
        true);
    static_cast<void>(r);
  }

  bool supports_scan() const noexcept override { return false; }

  // libcds's skip list offers no ordered seek (no lower_bound), so YCSB E cannot run on it.
  std::size_t scan(std::string_view, std::string_view, std::size_t) override { return 0; }

  double bytes_per_key() const override { return 0.0; }

 private:
  std::optional<cds::gc::HP> hp_;
  std::optional<Map> map_;
};

}  // namespace

std::unique_ptr<Store> make_cds_store() { return std::make_unique<CdsStore>(); }

}  // namespace kv::bench
