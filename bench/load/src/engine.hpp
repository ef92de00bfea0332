// The load engine of kovan-bench: sender threads, each running one epoll loop over its
// share of the connections, speaking either the Kovan KV protocol (length-prefixed
// protobuf, docs/PROTOCOL.md) or RESP (Redis) with the same scheduling, so that both
// servers are measured by identical machinery.
//
// Scheduling. Each connection keeps up to `pipeline` operations in flight.
//   - Closed loop (rate == 0): a new operation starts as soon as one finishes; its intended
//     time is the moment it is issued.
//   - Open loop (rate > 0): connection c of C sends at intended times
//     start + (c + k*C) / rate, k = 0, 1, ... The schedule never slips: an operation that
//     cannot be sent at its intended time (pipeline full) keeps its intended time, so the
//     latency "from intended" includes the time it waited (the coordinated-omission
//     correction); "from send" starts when the request was queued on its connection,
//     which writes it to the socket in the same loop iteration (later only when the
//     socket's send buffer is full).
// Operations of two steps (ycsb-f read-modify-write, txn) are one operation from the first
// step's intended time to the last step's response.
//
// Measurement. Operations intended before start + warmup are not recorded. Sending stops
// at start + warmup + duration; responses still outstanding are awaited for up to 2 s, and
// operations still unanswered then count as TRANSPORT errors. Every operation intended
// inside the window is counted, including those answered during that drain (at most
// connections x pipeline of them), and throughput is that count over the duration.
// Each thread hands every completed second of its per-second statistics to the caller's
// thread through a slot array published with a release store (see engine.cpp).
//
// Thread safety: run_load() is called from one thread and blocks until the run ends; the
// on_second callback runs on that calling thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "generators.hpp"
#include "histogram.hpp"
#include "options.hpp"

namespace kv::bench {

// Error kinds counted by a run. 0..8 are the Kovan KV status codes (OK and NOT_FOUND are
// never counted as errors; NOT_FOUND is a miss).
enum ErrorKind : int {
  kErrUnknownCode = 9,        // a status code this generator does not know
  kErrRedis = 10,             // a RESP error reply
  kErrTransport = 11,         // connection lost with the operation in flight, or connect failed
  kErrProtocol = 12,          // an unparsable response or an oversized frame
  kErrNotice = 13,            // an unsolicited id-0 notice from the Kovan KV server
  kErrUnauthenticated = 14,   // UNAUTHENTICATED (code 9): docs/SECURITY.md
  kErrPermissionDenied = 15,  // PERMISSION_DENIED (code 10)
  kErrorKinds = 16,
};
[[nodiscard]] std::string_view error_name(int kind);

struct LoadConfig {
  Target target;
  Mix mix;
  std::uint64_t records = 100000;
  std::uint32_t value_size = 100;
  std::uint32_t connections = 1;
  std::uint32_t threads = 1;
  std::uint32_t pipeline = 1;
  double rate = 0;
  double duration_s = 1;
  double warmup_s = 0;
  std::uint64_t seed = 1;
  std::uint32_t txn_keys = 4;
  // Load mode: insert records 0 .. records-1 once each (closed loop), then stop; ignores
  // mix, rate and warmup; duration_s bounds it.
  bool load_mode = false;
};

struct SecondStats {
  std::uint32_t second = 0;  // 1-based index of the measured second
  std::uint64_t ops = 0;
  std::uint64_t errors = 0;
  std::uint64_t p50_ns = 0;
  std::uint64_t p99_ns = 0;
  std::uint64_t max_ns = 0;
};

struct LoadResult {
  bool connected = false;  // every connection was opened
  std::string error;       // why not, or another fatal problem
  double measured_s = 0;
  std::uint64_t ops = 0;  // operations completed (successfully or not) in the window
  std::uint64_t misses = 0;
  std::uint64_t txn_aborts = 0;        // txn operations whose compares failed (lost a race)
  std::uint64_t unsent_scheduled = 0;  // open loop: intended in the window, never sent
  std::array<std::uint64_t, kOpKinds> ops_by_kind{};
  std::array<std::uint64_t, kErrorKinds> errors{};
  Histogram from_intended;
  Histogram from_send;
  std::vector<SecondStats> series;
  [[nodiscard]] std::uint64_t errors_total() const;
};

// Runs the load described by `config`; `on_second` (optional) sees each measured second
// as soon as every thread has finished it.
[[nodiscard]] LoadResult run_load(const LoadConfig& config,
                                  const std::function<void(const SecondStats&)>& on_second = {});

}  // namespace kv::bench
