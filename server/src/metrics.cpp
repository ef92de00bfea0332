#include "server/metrics.hpp"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>

namespace kv::server {

namespace pb = proto::pb;

OpKind op_kind(const pb::Request& request) noexcept {
  switch (request.op_case()) {
    case pb::Request::kPing:
      return OpKind::kPing;
    case pb::Request::kGet:
      return OpKind::kGet;
    case pb::Request::kPut:
      return OpKind::kPut;
    case pb::Request::kDel:
      return OpKind::kDel;
    case pb::Request::kDeleteRange:
      return OpKind::kDeleteRange;
    case pb::Request::kScan:
      return OpKind::kScan;
    case pb::Request::kTxn:
      return OpKind::kTxn;
    case pb::Request::kBegin:
      return OpKind::kBegin;
    case pb::Request::kCommit:
      return OpKind::kCommit;
    case pb::Request::kAbort:
      return OpKind::kAbort;
    case pb::Request::kStats:
      return OpKind::kStats;
    case pb::Request::kFault:
      return OpKind::kFault;
    case pb::Request::kCheckpoint:
      return OpKind::kCheckpoint;
    case pb::Request::kSnapshot:
      return OpKind::kSnapshot;
    case pb::Request::kAuthenticate:
      return OpKind::kAuthenticate;
    case pb::Request::kWatch:
      return OpKind::kWatch;
    case pb::Request::kCancelWatch:
      return OpKind::kCancelWatch;
    case pb::Request::OP_NOT_SET:
      return OpKind::kInvalid;
  }
  return OpKind::kInvalid;
}

const char* op_name(OpKind op) noexcept {
  switch (op) {
    case OpKind::kPing:
      return "ping";
    case OpKind::kGet:
      return "get";
    case OpKind::kPut:
      return "put";
    case OpKind::kDel:
      return "delete";
    case OpKind::kDeleteRange:
      return "delete_range";
    case OpKind::kScan:
      return "scan";
    case OpKind::kTxn:
      return "txn";
    case OpKind::kBegin:
      return "begin";
    case OpKind::kCommit:
      return "commit";
    case OpKind::kAbort:
      return "abort";
    case OpKind::kStats:
      return "stats";
    case OpKind::kFault:
      return "fault";
    case OpKind::kCheckpoint:
      return "checkpoint";
    case OpKind::kSnapshot:
      return "snapshot";
    case OpKind::kAuthenticate:
      return "authenticate";
    case OpKind::kWatch:
      return "watch";
    case OpKind::kCancelWatch:
      return "cancel_watch";
    case OpKind::kInvalid:
      return "invalid";
    case OpKind::kCount:
      break;
  }
  return "unknown";
}

void WorkerMetrics::record(OpKind op, pb::Status::Code code,
                           std::chrono::nanoseconds latency) noexcept {
  const auto o = static_cast<std::size_t>(op);
  bump(requests_[o], 1);
  const auto c = static_cast<std::size_t>(code);
  if (c < kStatusCodes) bump(responses_[c], 1);
  const auto ns = static_cast<std::uint64_t>(latency.count() < 0 ? 0 : latency.count());
  const std::uint64_t us = ns / 1000;
  std::size_t b = 0;
  while (b < kLatencyBucketsUs.size() && us >= kLatencyBucketsUs[b]) ++b;
  bump(buckets_[o][b], 1);
  bump(latency_sum_ns_[o], ns);
}

std::uint64_t WorkerMetrics::total_requests() const noexcept {
  std::uint64_t n = 0;
  for (const auto& r : requests_) n += r.load(std::memory_order_relaxed);
  return n;
}

std::uint64_t resident_memory_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

namespace {

void line(std::string& out, const char* name, const char* labels, double value) {
  char buf[256];
  const int n = labels != nullptr && labels[0] != '\0'
                    ? std::snprintf(buf, sizeof buf, "%s{%s} %.17g\n", name, labels, value)
                    : std::snprintf(buf, sizeof buf, "%s %.17g\n", name, value);
  if (n > 0) out.append(buf, static_cast<std::size_t>(std::min<int>(n, sizeof buf - 1)));
}

void line(std::string& out, const char* name, const char* labels, std::uint64_t value) {
  char buf[256];
  const int n = labels != nullptr && labels[0] != '\0'
                    ? std::snprintf(buf, sizeof buf, "%s{%s} %" PRIu64 "\n", name, labels, value)
                    : std::snprintf(buf, sizeof buf, "%s %" PRIu64 "\n", name, value);
  if (n > 0) out.append(buf, static_cast<std::size_t>(std::min<int>(n, sizeof buf - 1)));
}

void help(std::string& out, const char* name, const char* type, const char* text) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += text;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

}  // namespace

std::string render_prometheus(std::span<const WorkerMetrics* const> workers,
                              const ServerCounters& counters, const storage::EngineStats& engine) {
  std::string out;
  out.reserve(16 * 1024);
  char labels[128];

  help(out, "kv_requests_total", "counter", "Requests served, by operation.");
  for (std::size_t o = 0; o < kOpKinds; ++o) {
    std::uint64_t n = 0;
    for (const auto* w : workers) n += w->requests(static_cast<OpKind>(o));
    std::snprintf(labels, sizeof labels, "op=\"%s\"", op_name(static_cast<OpKind>(o)));
    line(out, "kv_requests_total", labels, n);
  }
  help(out, "kv_responses_total", "counter", "Responses sent, by status code.");
  for (std::size_t c = 0; c < kStatusCodes; ++c) {
    std::uint64_t n = 0;
    const std::string name(proto::code_name(static_cast<pb::Status::Code>(c)));
    if (name == "UNKNOWN") continue;  // a value this build does not define
    for (const auto* w : workers) n += w->responses(static_cast<pb::Status::Code>(c));
    std::snprintf(labels, sizeof labels, "code=\"%s\"", name.c_str());
    line(out, "kv_responses_total", labels, n);
  }
  help(out, "kv_request_duration_seconds", "histogram",
       "Time from parsing a request to its response being queued, by operation.");
  for (std::size_t o = 0; o < kOpKinds; ++o) {
    const auto op = static_cast<OpKind>(o);
    std::uint64_t cumulative = 0;
    std::uint64_t sum_ns = 0;
    for (const auto* w : workers) sum_ns += w->latency_sum_ns(op);
    for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
      for (const auto* w : workers) cumulative += w->bucket(op, b);
      if (b < kLatencyBucketsUs.size()) {
        std::snprintf(labels, sizeof labels, "op=\"%s\",le=\"%.6f\"", op_name(op),
                      static_cast<double>(kLatencyBucketsUs[b]) / 1e6);
      } else {
        std::snprintf(labels, sizeof labels, "op=\"%s\",le=\"+Inf\"", op_name(op));
      }
      line(out, "kv_request_duration_seconds_bucket", labels, cumulative);
    }
    std::snprintf(labels, sizeof labels, "op=\"%s\"", op_name(op));
    line(out, "kv_request_duration_seconds_sum", labels, static_cast<double>(sum_ns) / 1e9);
    line(out, "kv_request_duration_seconds_count", labels, cumulative);
  }
  std::uint64_t in = 0;
  std::uint64_t sent = 0;
  for (const auto* w : workers) {
    in += w->bytes_in();
    sent += w->bytes_out();
  }
  help(out, "kv_received_bytes_total", "counter", "Bytes read from client connections.");
  line(out, "kv_received_bytes_total", nullptr, in);
  help(out, "kv_sent_bytes_total", "counter", "Bytes written to client connections.");
  line(out, "kv_sent_bytes_total", nullptr, sent);

  const auto relaxed = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  help(out, "kv_connections", "gauge", "Open client connections.");
  line(out, "kv_connections", nullptr, relaxed(counters.connections_open));
  help(out, "kv_connections_accepted_total", "counter", "Client connections accepted.");
  line(out, "kv_connections_accepted_total", nullptr, relaxed(counters.connections_accepted));
  help(out, "kv_connections_refused_total", "counter",
       "Connections refused over --max-connections.");
  line(out, "kv_connections_refused_total", nullptr, relaxed(counters.connections_refused));
  help(out, "kv_connections_idle_closed_total", "counter", "Connections closed by --idle-timeout.");
  line(out, "kv_connections_idle_closed_total", nullptr, relaxed(counters.connections_idle_closed));
  help(out, "kv_frames_rejected_total", "counter", "Frames rejected, by reason.");
  line(out, "kv_frames_rejected_total", "reason=\"oversized\"", relaxed(counters.frames_oversized));
  line(out, "kv_frames_rejected_total", "reason=\"unparsable\"",
       relaxed(counters.frames_unparsable));
  line(out, "kv_frames_rejected_total", "reason=\"timeout\"", relaxed(counters.frames_timed_out));
  help(out, "kv_connection_buffer_bytes", "gauge",
       "Bytes held in connection buffers: receive buffers (in) and unsent responses (out).");
  line(out, "kv_connection_buffer_bytes", "direction=\"in\"", relaxed(counters.input_buffer_bytes));
  line(out, "kv_connection_buffer_bytes", "direction=\"out\"",
       relaxed(counters.output_buffer_bytes));
  help(out, "kv_buffer_budget_waits_total", "counter",
       "Times a connection stopped reading because a server-wide buffer budget was spent.");
  line(out, "kv_buffer_budget_waits_total", "direction=\"in\"",
       relaxed(counters.input_budget_waits));
  line(out, "kv_buffer_budget_waits_total", "direction=\"out\"",
       relaxed(counters.output_budget_pauses));
  help(out, "kv_accept_errors_total", "counter",
       "Failed accepts on the client and metrics listeners (e.g. out of descriptors).");
  line(out, "kv_accept_errors_total", nullptr, relaxed(counters.accept_errors));
  help(out, "kv_metrics_connections", "gauge", "Open connections to the metrics endpoint.");
  line(out, "kv_metrics_connections", nullptr, relaxed(counters.metrics_connections_open));
  help(out, "kv_metrics_connections_refused_total", "counter",
       "Metrics connections closed at once over --max-metrics-connections.");
  line(out, "kv_metrics_connections_refused_total", nullptr,
       relaxed(counters.metrics_connections_refused));
  help(out, "kv_tls_handshakes_rejected_total", "counter",
       "Connections to a TLS client port that never completed a TLS handshake, by reason.");
  line(out, "kv_tls_handshakes_rejected_total", "reason=\"failed\"",
       relaxed(counters.tls_handshakes_failed));
  line(out, "kv_tls_handshakes_rejected_total", "reason=\"timeout\"",
       relaxed(counters.tls_handshakes_timed_out));
  line(out, "kv_tls_handshakes_rejected_total", "reason=\"plaintext\"",
       relaxed(counters.tls_plaintext_refused));
  help(out, "kv_auth_failures_total", "counter", "AUTHENTICATE requests that failed.");
  line(out, "kv_auth_failures_total", nullptr, relaxed(counters.auth_failures));
  help(out, "kv_quota_refusals_total", "counter",
       "Requests refused by a per-user quota (connections, transactions, bytes).");
  line(out, "kv_quota_refusals_total", nullptr, relaxed(counters.quota_refusals));
  help(out, "kv_quota_rate_pauses_total", "counter",
       "Times a connection stopped being read because its user was over its rate quota.");
  line(out, "kv_quota_rate_pauses_total", nullptr, relaxed(counters.quota_rate_pauses));
  help(out, "kv_metrics_unauthorized_total", "counter",
       "Scrapes refused for a missing or wrong bearer token (--metrics-token-file).");
  line(out, "kv_metrics_unauthorized_total", nullptr, relaxed(counters.metrics_unauthorized));
  help(out, "kv_connection_txns", "gauge", "Interactive transactions held open by connections.");
  line(out, "kv_connection_txns", nullptr, relaxed(counters.txns_open));
  help(out, "kv_txns_aborted_by_disconnect_total", "counter",
       "Interactive transactions aborted because their connection closed.");
  line(out, "kv_txns_aborted_by_disconnect_total", nullptr,
       relaxed(counters.txns_disconnect_aborted));
  help(out, "kv_txns_refused_per_peer_total", "counter",
       "Begin requests refused because their client address holds --max-txns-per-peer.");
  line(out, "kv_txns_refused_per_peer_total", nullptr, relaxed(counters.txns_refused_per_peer));

  help(out, "kv_revision", "gauge", "Current visible store revision.");
  line(out, "kv_revision", nullptr, engine.revision);
  help(out, "kv_keys", "gauge", "Live keys.");
  line(out, "kv_keys", nullptr, engine.keys);
  help(out, "kv_index_nodes", "gauge",
       "Keys in the ordered index, live keys plus deleted keys a snapshot still needs.");
  line(out, "kv_index_nodes", nullptr, engine.index_nodes);
  help(out, "kv_versions", "gauge", "Versions reachable from the index.");
  line(out, "kv_versions", nullptr, engine.live_versions);
  help(out, "kv_store_bytes", "gauge", "Approximate bytes held by the index and versions.");
  line(out, "kv_store_bytes", nullptr, engine.bytes);
  help(out, "kv_active_txns", "gauge", "Interactive transactions open in the engine.");
  line(out, "kv_active_txns", nullptr, engine.active_txns);
  help(out, "kv_active_snapshots", "gauge", "Snapshots registered in the engine.");
  line(out, "kv_active_snapshots", nullptr, engine.active_snapshots);
  help(out, "kv_oldest_snapshot_age_seconds", "gauge", "Age of the oldest open transaction.");
  line(out, "kv_oldest_snapshot_age_seconds", nullptr,
       std::chrono::duration<double>(engine.oldest_snapshot_age).count());
  help(out, "kv_versions_pruned_total", "counter", "Versions removed by GC.");
  line(out, "kv_versions_pruned_total", nullptr, engine.versions_pruned);
  help(out, "kv_commits_total", "counter", "Committed transactions, one-shot writes included.");
  line(out, "kv_commits_total", nullptr, engine.commits);
  help(out, "kv_aborts_total", "counter", "Aborted transactions, by cause.");
  line(out, "kv_aborts_total", "cause=\"conflict\"", engine.aborts_conflict);
  line(out, "kv_aborts_total", "cause=\"expired\"", engine.aborts_expired);
  line(out, "kv_aborts_total", "cause=\"user\"", engine.aborts_user);
  help(out, "kv_one_shot_retries_total", "counter",
       "One-shot write attempts that lost a validation and ran again (no abort seen).");
  line(out, "kv_one_shot_retries_total", nullptr, engine.one_shot_retries);
  help(out, "kv_leases", "gauge", "Leases alive.");
  line(out, "kv_leases", nullptr, engine.leases);
  help(out, "kv_leases_ended_total", "counter", "Leases ended, by cause.");
  line(out, "kv_leases_ended_total", "cause=\"expired\"", engine.leases_expired);
  line(out, "kv_leases_ended_total", "cause=\"revoked\"", engine.leases_revoked);
  help(out, "kv_gc_sweeps_total", "counter", "Completed GC sweeps.");
  line(out, "kv_gc_sweeps_total", nullptr, engine.gc_sweeps);
  help(out, "kovan_retired_total", "counter", "Objects handed to the reclaimer.");
  line(out, "kovan_retired_total", nullptr, engine.kovan_retired);
  help(out, "kovan_reclaimed_total", "counter", "Objects freed by the reclaimer.");
  line(out, "kovan_reclaimed_total", nullptr, engine.kovan_reclaimed);
  help(out, "kovan_unreclaimed", "gauge", "Objects retired and not yet freed.");
  line(out, "kovan_unreclaimed", nullptr,
       engine.kovan_retired >= engine.kovan_reclaimed
           ? engine.kovan_retired - engine.kovan_reclaimed
           : 0);
  help(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  line(out, "process_resident_memory_bytes", nullptr, resident_memory_bytes());
  return out;
}

std::string render_durability(const storage::DurabilityStats& d) {
  std::string out;
  if (!d.enabled) return out;
  help(out, "kv_wal_bytes", "gauge", "Bytes in the write-ahead log segments on disk.");
  line(out, "kv_wal_bytes", nullptr, d.wal_bytes);
  help(out, "kv_wal_bytes_since_checkpoint", "gauge",
       "Write-ahead log bytes appended since the last checkpoint.");
  line(out, "kv_wal_bytes_since_checkpoint", nullptr, d.wal_bytes_since_checkpoint);
  help(out, "kv_wal_segments", "gauge", "Write-ahead log segment files on disk.");
  line(out, "kv_wal_segments", nullptr, d.wal_segments);
  help(out, "kv_wal_records_total", "counter", "Write-ahead log records appended since start.");
  line(out, "kv_wal_records_total", nullptr, d.wal_records);
  help(out, "kv_wal_fsyncs_total", "counter", "Write-ahead log fsyncs since start.");
  line(out, "kv_wal_fsyncs_total", nullptr, d.fsyncs);
  help(out, "kv_wal_group_commits_total", "counter",
       "Write-ahead log batches written (one write and at most one fsync each).");
  line(out, "kv_wal_group_commits_total", nullptr, d.group_commits);
  help(out, "kv_wal_max_batch_records", "gauge", "The most records one batch has carried.");
  line(out, "kv_wal_max_batch_records", nullptr, d.max_batch_records);
  help(out, "kv_durable_revision", "gauge", "Newest revision written to the log.");
  line(out, "kv_durable_revision", nullptr, d.durable_revision);
  help(out, "kv_checkpoints_total", "counter", "Checkpoints written since start.");
  line(out, "kv_checkpoints_total", nullptr, d.checkpoints);
  help(out, "kv_last_checkpoint_revision", "gauge", "Revision of the newest checkpoint (0: none).");
  line(out, "kv_last_checkpoint_revision", nullptr, d.last_checkpoint_revision);
  help(out, "kv_storage_failed", "gauge",
       "1 when writes are refused after a storage failure (STORAGE_FAILED), else 0.");
  line(out, "kv_storage_failed", nullptr, std::uint64_t{d.write_refused ? 1u : 0u});
  return out;
}

}  // namespace kv::server
