// Server metrics: per-worker request counters and latency histograms, process-wide
// connection counters, and their rendering as Prometheus text (docs/OPERATIONS.md).
//
// Concurrency: a WorkerMetrics has exactly one writer, its worker thread, which updates it
// with relaxed load + relaxed store (no read-modify-write needed with a single writer); any
// thread may read it with relaxed loads and sees each counter's value at some recent point.
// Counters are monotonic per writer, so sums over workers are monotonic too, though a
// scrape is not a consistent snapshot across counters. ServerCounters have many writers and
// use relaxed fetch_add: they are statistics that order no other memory.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "proto/codec.hpp"
#include "storage/durability.hpp"
#include "storage/engine.hpp"

namespace kv::server {

// What a request asked for; kInvalid counts frames that did not hold a usable request.
enum class OpKind : std::uint8_t {
  kPing,
  kGet,
  kPut,
  kDel,
  kDeleteRange,
  kScan,
  kTxn,
  kBegin,
  kCommit,
  kAbort,
  kStats,
  kFault,
  kCheckpoint,
  kSnapshot,
  kAuthenticate,
  kWatch,
  kCancelWatch,
  kInvalid,
  kCount,
};
inline constexpr std::size_t kOpKinds = static_cast<std::size_t>(OpKind::kCount);
inline constexpr std::size_t kStatusCodes = 12;  // Status.Code values 0..11

[[nodiscard]] OpKind op_kind(const proto::pb::Request& request) noexcept;
[[nodiscard]] const char* op_name(OpKind op) noexcept;

// Upper bounds of the latency buckets, in microseconds; a last, implicit bucket is +Inf.
inline constexpr std::array<std::uint64_t, 12> kLatencyBucketsUs = {
    5, 10, 25, 50, 100, 250, 500, 1000, 5000, 10'000, 100'000, 1'000'000};
inline constexpr std::size_t kLatencyBuckets = kLatencyBucketsUs.size() + 1;

class WorkerMetrics {
 public:
  // Owner thread only.
  void record(OpKind op, proto::pb::Status::Code code, std::chrono::nanoseconds latency) noexcept;
  void add_bytes_in(std::uint64_t n) noexcept { bump(bytes_in_, n); }
  void add_bytes_out(std::uint64_t n) noexcept { bump(bytes_out_, n); }

  // Any thread.
  [[nodiscard]] std::uint64_t requests(OpKind op) const noexcept {
    return requests_[static_cast<std::size_t>(op)].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t responses(proto::pb::Status::Code code) const noexcept {
    return responses_[static_cast<std::size_t>(code)].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t bucket(OpKind op, std::size_t b) const noexcept {
    return buckets_[static_cast<std::size_t>(op)][b].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t latency_sum_ns(OpKind op) const noexcept {
    return latency_sum_ns_[static_cast<std::size_t>(op)].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t bytes_in() const noexcept {
    return bytes_in_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t bytes_out() const noexcept {
    return bytes_out_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t total_requests() const noexcept;

 private:
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::array<std::atomic<std::uint64_t>, kOpKinds> requests_{};
  std::array<std::atomic<std::uint64_t>, kStatusCodes> responses_{};
  std::array<std::array<std::atomic<std::uint64_t>, kLatencyBuckets>, kOpKinds> buckets_{};
  std::array<std::atomic<std::uint64_t>, kOpKinds> latency_sum_ns_{};
  std::atomic<std::uint64_t> bytes_in_{0};
  std::atomic<std::uint64_t> bytes_out_{0};
};

// Process-wide counters (many writers, relaxed). The two buffer gauges are also the
// server-wide budgets of --max-input-bytes-total and --max-output-bytes-total: each
// connection adds and subtracts its own share with relaxed read-modify-writes (see
// server_impl.hpp for why relaxed is enough).
struct ServerCounters {
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> connections_refused{0};  // over --max-connections
  std::atomic<std::uint64_t> connections_idle_closed{0};
  std::atomic<std::uint64_t> frames_oversized{0};
  std::atomic<std::uint64_t> frames_unparsable{0};
  std::atomic<std::uint64_t> txns_open{0};  // interactive transactions held by connections
  std::atomic<std::uint64_t> txns_disconnect_aborted{0};
  std::atomic<std::uint64_t> txns_refused_per_peer{0};  // over --max-txns-per-peer
  std::atomic<std::uint64_t> frames_timed_out{0};       // over --frame-timeout
  std::atomic<std::uint64_t> input_buffer_bytes{0};     // receive buffers, all connections
  std::atomic<std::uint64_t> output_buffer_bytes{0};    // unsent responses, all connections
  std::atomic<std::uint64_t> input_budget_waits{0};     // reads deferred by the input budget
  std::atomic<std::uint64_t> output_budget_pauses{0};   // reads paused by the output budget
  std::atomic<std::uint64_t> accept_errors{0};          // failed accepts, both listeners
  std::atomic<std::uint64_t> metrics_connections_open{0};
  std::atomic<std::uint64_t> metrics_connections_refused{0};  // over --max-metrics-connections
  // TLS on the client port (--tls-cert): connections that never became TLS sessions.
  std::atomic<std::uint64_t> tls_handshakes_failed{0};     // handshake error (bad cert, ...)
  std::atomic<std::uint64_t> tls_handshakes_timed_out{0};  // no handshake within the deadline
  std::atomic<std::uint64_t> tls_plaintext_refused{0};     // first bytes were not TLS
  std::atomic<std::uint64_t> auth_failures{0};             // AUTHENTICATE answered UNAUTHENTICATED
  std::atomic<std::uint64_t> quota_refusals{0};            // requests refused by a per-user quota
  // Times a connection stopped being read because its user was over its requests-per-second
  // quota (the request waits for a token; nothing is refused).
  std::atomic<std::uint64_t> quota_rate_pauses{0};
  std::atomic<std::uint64_t> metrics_unauthorized{0};  // scrapes without the bearer token
};

// Resident set size of this process in bytes (0 if it cannot be read).
[[nodiscard]] std::uint64_t resident_memory_bytes() noexcept;

// Prometheus text exposition format 0.0.4 of everything above plus the engine statistics.
[[nodiscard]] std::string render_prometheus(std::span<const WorkerMetrics* const> workers,
                                            const ServerCounters& counters,
                                            const storage::EngineStats& engine);
// The durability part of the metrics text (kv_wal_*, kv_checkpoint*, kv_storage_failed);
// empty when the engine is not durable.
[[nodiscard]] std::string render_durability(const storage::DurabilityStats& d);

}  // namespace kv::server
