// The Kovan KV storage engine behind the benchmark's Store interface (one-shot operations).
#include <storage/engine.hpp>

#include "store.hpp"

namespace kv::bench {
namespace {

class EngineStore final : public Store {
 public:
  explicit EngineStore(const storage::Options& o) : engine_(o) {}

  std::string_view name() const noexcept override { return "kovan-engine"; }

  bool read(std::string_view key, std::string& out) override {
    // In place (Engine::get_with): the value is copied once, into the caller's buffer.
    return engine_.get_with(key, [&](const storage::KeyValueView& kv) { out.assign(kv.value); })
        .ok();
  }

  void write(std::string_view key, std::string_view value) override {
    auto r = engine_.put(key, value);
    static_cast<void>(r);  // a one-shot put retries internally; a failure is counted as an op
  }

  std::size_t scan(std::string_view start, std::string_view end, std::size_t limit) override {
    storage::ScanOptions opts;
    opts.limit = limit;
    auto r = engine_.scan(start, end, opts);
    return r.ok() ? r->kvs.size() : 0;
  }

  double bytes_per_key() const override {
    const auto s = engine_.stats();
    return s.keys == 0 ? 0.0 : static_cast<double>(s.bytes) / static_cast<double>(s.keys);
  }

 private:
  storage::Engine engine_;
};

}  // namespace

std::unique_ptr<Store> make_engine_store(long long watch_history_bytes) {
  storage::Options o;
  if (watch_history_bytes >= 0)
    o.watch_history_bytes = static_cast<std::size_t>(watch_history_bytes);
  return std::make_unique<EngineStore>(o);
}

}  // namespace kv::bench
