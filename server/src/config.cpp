#include "server/config.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <sstream>
#include <thread>

#include "server/auth.hpp"

namespace kv::server {

namespace {

std::string duration_string(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

const char* gc_policy_name(storage::GcPolicy p) {
  return p == storage::GcPolicy::kWatermark ? "watermark" : "interval";
}

// CLI11 check: empty string when `text` is a duration.
std::string check_duration(const std::string& text) {
  if (parse_duration(text)) return {};
  return "'" + text + "' is not a duration (examples: 250ms, 5s, 2m, 1h; a bare number is seconds)";
}

std::string check_endpoint(const std::string& text) {
  if (parse_endpoint(text)) return {};
  return "'" + text + "' is not HOST:PORT (examples: 127.0.0.1:7379, 0.0.0.0:0, [::1]:7379)";
}

const char* fsync_name(storage::FsyncMode m) {
  switch (m) {
    case storage::FsyncMode::kAlways:
      return "always";
    case storage::FsyncMode::kEverySec:
      return "everysec";
    case storage::FsyncMode::kNo:
      return "no";
  }
  return "always";
}

std::string checkpoint_every_string(std::uint64_t bytes, std::chrono::milliseconds every) {
  std::string out;
  if (bytes != 0) out = std::to_string(bytes);
  if (every.count() != 0) out += (out.empty() ? "" : ",") + duration_string(every);
  return out.empty() ? std::string("off") : out;
}

std::string check_checkpoint_every(const std::string& text) {
  std::uint64_t bytes = 0;
  std::chrono::milliseconds every{0};
  if (parse_checkpoint_every(text, bytes, every)) return {};
  return "'" + text +
         "' is not a WAL size and/or a duration (examples: 64MiB, 10min, \"256MiB,5min\", off)";
}

// A size with an optional unit: b, k/kb/kib, mb/mib, g/gb/gib, t/tb/tib (powers of 1024,
// any case). nullopt when malformed or not a size.
std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t n = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || ptr == first) return std::nullopt;
  std::string unit(ptr, static_cast<std::size_t>(last - ptr));
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  int shift = -1;
  if (unit.empty() || unit == "b") shift = 0;
  if (unit == "k" || unit == "kb" || unit == "kib") shift = 10;
  if (unit == "mb" || unit == "mib") shift = 20;
  if (unit == "g" || unit == "gb" || unit == "gib") shift = 30;
  if (unit == "t" || unit == "tb" || unit == "tib") shift = 40;
  if (shift < 0) return std::nullopt;
  if (n > (std::uint64_t{1} << 50) >> shift) return std::nullopt;
  return n << shift;
}

}  // namespace

bool parse_checkpoint_every(std::string_view text, std::uint64_t& bytes,
                            std::chrono::milliseconds& every) {
  bytes = 0;
  every = std::chrono::milliseconds(0);
  if (text == "off" || text == "0") return true;
  bool have_bytes = false;
  bool have_time = false;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part.empty()) return false;
    // A bare number is a size (bytes) here; a duration needs its unit.
    if (const auto n = parse_size(part)) {
      if (have_bytes || *n == 0) return false;
      bytes = *n;
      have_bytes = true;
    } else if (const auto d = parse_duration(part)) {
      if (have_time || d->count() == 0) return false;
      every = *d;
      have_time = true;
    } else {
      return false;
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) return false;
  }
  return have_bytes || have_time;
}

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t n = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || ptr == first) return std::nullopt;
  const std::string_view unit(ptr, static_cast<std::size_t>(last - ptr));
  std::uint64_t factor = 0;
  if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "m" || unit == "min") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else {
    return std::nullopt;
  }
  constexpr std::uint64_t kMaxMs = 365ull * 24 * 3'600'000;  // a year is plenty
  if (n > kMaxMs / factor) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(n * factor));
}

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  Endpoint e;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    e.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    e.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (e.host.find(':') != std::string::npos) return std::nullopt;  // v6 needs brackets
  }
  if (e.host.empty() || port_text.empty()) return std::nullopt;
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535) {
    return std::nullopt;
  }
  e.port = static_cast<std::uint16_t>(port);
  return e;
}

bool is_loopback(std::string_view host) noexcept {
  if (host == "localhost" || host == "::1") return true;
  if (host.substr(0, 4) != "127.") return false;
  return std::all_of(host.begin(), host.end(),
                     [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
}

unsigned ServerConfig::effective_threads() const noexcept {
  if (threads != 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

unsigned ServerConfig::effective_commit_threads() const noexcept {
  if (!durable()) return 0;
  if (commit_threads >= 0) return static_cast<unsigned>(commit_threads);
  return fsync == storage::FsyncMode::kAlways ? kAutoCommitThreads : 0;
}

std::uint32_t ServerConfig::effective_txns_per_peer() const noexcept {
  if (max_txns_per_peer != 0) return max_txns_per_peer;
  return std::max(1u, max_active_txns / 4);
}

std::chrono::milliseconds ServerConfig::tls_handshake_timeout() const noexcept {
  std::chrono::milliseconds t =
      frame_timeout.count() > 0 ? frame_timeout : std::chrono::seconds(30);
  if (idle_timeout.count() > 0) t = std::min(t, idle_timeout);
  return t;
}

storage::Options ServerConfig::engine_options() const {
  storage::Options o;
  o.max_key_bytes = max_key_bytes;
  o.max_value_bytes = max_value_bytes;
  o.txn_timeout = txn_timeout;
  o.gc_policy = gc_policy;
  o.max_active_txns = max_active_txns;
  o.max_memory_bytes = max_memory;
  o.max_txn_bytes = max_txn_bytes;
  o.max_leases = static_cast<std::size_t>(max_leases);
  o.lease_check_period = std::chrono::milliseconds(100);  // expiry within 0.1 s of the TTL
  o.watch_history_bytes = static_cast<std::size_t>(watch_history);
  o.background_sweeper = true;
  // Expired transactions must leave the active set soon after their deadline even when
  // their connection is silent: sweep at least four times per age limit.
  o.sweeper_period =
      std::clamp(txn_timeout / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  if (durable()) {
    o.durability.data_dir = data_dir;
    o.durability.fsync = fsync;
    o.durability.checkpoint_every_bytes = checkpoint_every_bytes;
    o.durability.checkpoint_every = checkpoint_every_time;
    o.durability.recovery = wal_recovery;
    o.durability.restore_from = restore_from;
  }
  return o;
}

std::string ServerConfig::describe() const {
  std::ostringstream s;
  s << "listen=" << listen.to_string() << " threads=" << effective_threads()
    << " txn-timeout=" << duration_string(txn_timeout) << " gc-policy=" << gc_policy_name(gc_policy)
    << " max-connections=" << max_connections << " max-frame-bytes=" << max_frame_bytes
    << " idle-timeout=" << duration_string(idle_timeout)
    << " max-txns-per-connection=" << max_txns_per_connection << " log-level=" << log_level
    << " metrics-listen=" << (metrics_listen ? metrics_listen->to_string() : std::string("off"))
    << " enable-fault-injection=" << (enable_fault_injection ? "true" : "false")
    << " shutdown-grace=" << duration_string(shutdown_grace)
    << " max-output-bytes=" << max_output_bytes << " max-key-bytes=" << max_key_bytes
    << " max-value-bytes=" << max_value_bytes << " max-active-txns=" << max_active_txns
    << " summary-interval=" << duration_string(summary_interval)
    << " max-memory=" << (max_memory == 0 ? std::string("off") : std::to_string(max_memory))
    << " max-txn-bytes=" << max_txn_bytes << " max-input-bytes-total=" << max_input_bytes_total
    << " max-output-bytes-total=" << max_output_bytes_total
    << " frame-timeout=" << duration_string(frame_timeout)
    << " max-txns-per-peer=" << effective_txns_per_peer()
    << " max-metrics-connections=" << max_metrics_connections
    << " max-fault-stall=" << duration_string(max_fault_stall) << " tls="
    << (tls_cert.empty()          ? "off"
        : tls_ca.empty()          ? "on"
        : tls_require_client_cert ? "mutual"
                                  : "on+client-certs")
    << (tls_client_cert_login ? "+cert-login" : "") << " metrics-tls="
    << (metrics_tls_cert.empty() ? "off"
        : metrics_tls_ca.empty() ? "on"
                                 : "mutual")
    << " users=" << (users_file.empty() ? std::string("off") : users_file) << " metrics-token-file="
    << (metrics_token_file.empty() ? std::string("off") : metrics_token_file)
    << " insecure-no-auth=" << (insecure_no_auth ? "true" : "false")
    << " data-dir=" << (data_dir.empty() ? std::string("off") : data_dir)
    << " max-leases=" << max_leases;
  if (durable()) {
    s << " fsync=" << fsync_name(fsync) << " commit-threads=" << effective_commit_threads()
      << " checkpoint-every="
      << checkpoint_every_string(checkpoint_every_bytes, checkpoint_every_time) << " wal-recovery="
      << (wal_recovery == storage::WalRecovery::kTruncate ? "truncate" : "strict");
    if (!restore_from.empty()) s << " restore=" << restore_from;
    if (test_storage_faults) s << " test-storage-faults=true";
  }
  return s.str();
}

ParseOutcome parse_command_line(int argc, const char* const* argv) {
  ParseOutcome out;
  ServerConfig& c = out.config;

  CLI::App app{
      "kovan-server: an in-memory MVCC transactional key-value server.\n"
      "Speaks length-prefixed protobuf over TCP (docs/PROTOCOL.md). Every flag can also be\n"
      "given as `key = value` in the --config file (TOML/INI); flags on the command line win.",
      "kovan-server"};
  app.option_defaults()->always_capture_default();
  CLI::Option* config_option =
      app.set_config("--config", "",
                     "Read settings from this TOML/INI file (keys are the long flag names)")
          ->type_name("FILE");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.set_version_flag("--version", "kovan-server 0.1.0");

  std::string listen = c.listen.to_string();
  std::string metrics_listen;
  std::string txn_timeout = duration_string(c.txn_timeout);
  std::string idle_timeout = duration_string(c.idle_timeout);
  std::string shutdown_grace = duration_string(c.shutdown_grace);
  std::string summary_interval = duration_string(c.summary_interval);
  std::string gc_policy = gc_policy_name(c.gc_policy);
  std::string frame_timeout = duration_string(c.frame_timeout);
  std::string max_fault_stall = duration_string(c.max_fault_stall);
  const auto duration_check = CLI::Validator(check_duration, "");
  const auto endpoint_check = CLI::Validator(check_endpoint, "");
  const auto size = CLI::AsSizeValue(false);

  app.add_option("--listen", listen, "Address and port for clients (port 0: any free port)")
      ->check(endpoint_check)
      ->type_name("HOST:PORT");
  app.add_option("--threads", c.threads,
                 "Worker threads, one io_context each (0: one per hardware thread)")
      ->check(CLI::Range(0u, 1024u))
      ->type_name("N");
  app.add_option("--txn-timeout", txn_timeout,
                 "Age limit of interactive transactions; older ones are aborted (TXN_EXPIRED)")
      ->check(duration_check)
      ->type_name("DURATION");
  app.add_option("--gc-policy", gc_policy,
                 "Version GC: interval (bounded versions per key) or watermark (for comparison)")
      ->check(CLI::IsMember({"interval", "watermark"}))
      ->type_name("POLICY");
  app.add_option("--max-connections", c.max_connections,
                 "Open client connections; more are refused with RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1u, 1'000'000u))
      ->type_name("N");
  app.add_option("--max-frame-bytes", c.max_frame_bytes,
                 "Largest request or response frame payload (accepts units: 4MiB, 64k)")
      ->transform(size)
      ->check(CLI::Range(std::uint32_t{64}, std::uint32_t{1u << 30}))
      ->type_name("SIZE");
  app.add_option("--idle-timeout", idle_timeout,
                 "Close connections that send nothing for this long (0: never)")
      ->check(duration_check)
      ->type_name("DURATION");
  app.add_option("--max-txns-per-connection", c.max_txns_per_connection,
                 "Interactive transactions one connection may hold open")
      ->check(CLI::Range(1u, 1'000'000u))
      ->type_name("N");
  app.add_option("--log-level", c.log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->type_name("LEVEL");
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve Prometheus text at GET /metrics on this HOST:PORT (default: off)")
      ->check(endpoint_check)
      ->type_name("HOST:PORT");
  app.add_flag("--enable-fault-injection", c.enable_fault_injection,
               "Accept FAULT requests that stall a worker thread inside a reclaimer guard");
  app.add_option("--shutdown-grace", shutdown_grace,
                 "On SIGINT/SIGTERM, how long open connections are answered with UNAVAILABLE "
                 "before they are closed")
      ->check(duration_check)
      ->type_name("DURATION");
  app.add_option("--max-output-bytes", c.max_output_bytes,
                 "Unsent response bytes per connection above which the server stops reading it")
      ->transform(size)
      ->check(CLI::Range(std::uint64_t{4096}, std::uint64_t{1} << 34))
      ->type_name("SIZE");
  app.add_option("--watch-history", c.watch_history,
                 "Bytes of recent changes kept in memory for watches from a past revision "
                 "(0: none; with --data-dir the WAL serves what is older)")
      ->transform(size)
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 40))
      ->type_name("SIZE");
  app.add_option("--max-watches", c.max_watches,
                 "Watches open in the whole server; more: RESOURCE_EXHAUSTED")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100'000'000}))
      ->type_name("N");
  app.add_option("--max-watches-per-connection", c.max_watches_per_connection,
                 "Watches one connection may hold; more: RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1u, 10'000'000u))
      ->type_name("N");
  app.add_option("--max-key-bytes", c.max_key_bytes, "Largest key (bytes)")
      ->transform(size)
      ->check(CLI::Range(1u, 1u << 20))
      ->type_name("SIZE");
  app.add_option("--max-value-bytes", c.max_value_bytes, "Largest value (bytes)")
      ->transform(size)
      ->check(CLI::Range(0u, 1u << 30))
      ->type_name("SIZE");
  app.add_option("--max-active-txns", c.max_active_txns,
                 "Interactive transactions open in the whole server; more: RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1u, 10'000'000u))
      ->type_name("N");
  app.add_option("--max-leases", c.max_leases,
                 "Leases alive in the whole server; more grants: RESOURCE_EXHAUSTED (0: no limit)")
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{100'000'000}))
      ->type_name("N");
  app.add_option("--summary-interval", summary_interval,
                 "Period of the summary log line at info level (0: never)")
      ->check(duration_check)
      ->type_name("DURATION");
  // Memory limits.
  app.add_option("--max-memory", c.max_memory,
                 "Data bytes (keys, versions, open transactions' writes) above which puts get "
                 "RESOURCE_EXHAUSTED while reads and deletes are served (0: off; e.g. 4GiB)")
      ->transform(size)
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 50))
      ->type_name("SIZE");
  app.add_option("--max-txn-bytes", c.max_txn_bytes,
                 "Write-set bytes one transaction may buffer; a put past it gets "
                 "RESOURCE_EXHAUSTED (0: no limit)")
      ->transform(size)
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 50))
      ->type_name("SIZE");

  app.add_option("--max-input-bytes-total", c.max_input_bytes_total,
                 "Received bytes buffered over all connections; a connection whose frame needs "
                 "more waits (its --frame-timeout runs on)")
      ->transform(size)
      ->check(CLI::Range(std::uint64_t{1} << 20, std::uint64_t{1} << 40))
      ->type_name("SIZE");
  app.add_option("--max-output-bytes-total", c.max_output_bytes_total,
                 "Unsent response bytes over all connections above which connections that "
                 "already have output waiting stop being read")
      ->transform(size)
      ->check(CLI::Range(std::uint64_t{1} << 20, std::uint64_t{1} << 40))
      ->type_name("SIZE");
  app.add_option("--frame-timeout", frame_timeout,
                 "Once a frame has begun to arrive, close the connection (UNAVAILABLE notice) if "
                 "the frame is not complete within this time (0: never)")
      ->check(duration_check)
      ->type_name("DURATION");
  app.add_option("--max-txns-per-peer", c.max_txns_per_peer,
                 "Interactive transactions all connections from one client IP address may hold "
                 "(0: a quarter of --max-active-txns)")
      ->check(CLI::Range(0u, 10'000'000u))
      ->type_name("N");
  app.add_option("--max-metrics-connections", c.max_metrics_connections,
                 "Open connections to the metrics endpoint; more are closed at once")
      ->check(CLI::Range(1u, 10'000u))
      ->type_name("N");
  app.add_option("--max-fault-stall", max_fault_stall,
                 "Longest stall a FAULT request may ask for (at most 600s); one stall at a time")
      ->check(duration_check)
      ->type_name("DURATION");

  // TLS (docs/SECURITY.md, "TLS").
  app.add_option("--tls-cert", c.tls_cert,
                 "PEM certificate (chain) of the client port; with --tls-key, the port speaks "
                 "TLS 1.2+ only")
      ->type_name("FILE");
  app.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert")->type_name("FILE");
  app.add_option("--tls-ca", c.tls_ca,
                 "PEM CA certificates: clients that present a certificate must be signed by one")
      ->type_name("FILE");
  app.add_flag("--tls-require-client-cert", c.tls_require_client_cert,
               "Refuse TLS clients without a certificate signed by --tls-ca (mutual TLS)");
  app.add_flag("--tls-client-cert-login", c.tls_client_cert_login,
               "A client certificate verified against --tls-ca whose CN names a user of --users "
               "authenticates its connection as that user (no AUTHENTICATE needed)");
  app.add_option("--metrics-tls-cert", c.metrics_tls_cert,
                 "PEM certificate (chain) of the metrics listener; with --metrics-tls-key it "
                 "speaks HTTPS only")
      ->type_name("FILE");
  app.add_option("--metrics-tls-key", c.metrics_tls_key, "PEM private key of --metrics-tls-cert")
      ->type_name("FILE");
  app.add_option("--metrics-tls-ca", c.metrics_tls_ca,
                 "PEM CA certificates: scrapers must present a certificate signed by one")
      ->type_name("FILE");
  // Durability (docs/OPERATIONS.md, "Durability").
  std::string fsync = "always";
  std::string commit_threads = "auto";
  std::string checkpoint_every = "off";
  std::string wal_recovery = "strict";
  app.add_option("--data-dir", c.data_dir,
                 "Keep a write-ahead log and checkpoints in this directory and recover from it "
                 "on start (default: none, a pure in-memory server that loses every key on exit)")
      ->type_name("DIR");
  app.add_option("--fsync", fsync,
                 "With --data-dir: always (acknowledge a commit after the fsync that covers it), "
                 "everysec (fsync once a second; a crash may lose about the last second), or no "
                 "(leave it to the OS)")
      ->check(CLI::IsMember({"always", "everysec", "no"}))
      ->type_name("MODE");
  app.add_option("--commit-threads", commit_threads,
                 "With --data-dir: threads that run writes while they wait for the log, so one "
                 "worker's connections share fsyncs (auto: 64 with --fsync always, else none; "
                 "0: none)")
      ->check(CLI::IsMember({"auto"}) | CLI::Range(0, 1024))
      ->type_name("auto|N");
  app.add_option("--checkpoint-every", checkpoint_every,
                 "With --data-dir: write a checkpoint after this many WAL bytes and/or this long "
                 "(e.g. 64MiB, 10min, \"256MiB,5min\"; off: only on request)")
      ->check(CLI::Validator(check_checkpoint_every, ""))
      ->type_name("SIZE,DURATION");
  app.add_option("--wal-recovery", wal_recovery,
                 "With --data-dir: on a bad record in the middle of the log, strict refuses to "
                 "start (naming the file and offset); truncate drops the log from that record on")
      ->check(CLI::IsMember({"strict", "truncate"}))
      ->type_name("MODE");
  app.add_option("--restore", c.restore_from,
                 "Start from this snapshot file (kovan-cli snapshot save); needs --data-dir naming "
                 "an empty or missing directory")
      ->type_name("FILE");
  // TEST ONLY, hidden from --help (empty group): storage faults on signals, to test the
  // refusal of writes after a storage failure (docs/OPERATIONS.md, "Durability").
  app.add_flag("--test-storage-faults", c.test_storage_faults,
               "TEST ONLY: SIGUSR1 fails the next log fsync (EIO), SIGUSR2 fails every write "
               "(ENOSPC)")
      ->group("");
  app.add_option("--users", c.users_file,
                 "Users file (NAME ROLE HASH [OPTION=VALUE...] per line; docs/SECURITY.md): "
                 "clients must AUTHENTICATE; re-read on SIGHUP")
      ->type_name("FILE");
  app.add_option("--metrics-token-file", c.metrics_token_file,
                 "File holding the bearer token that GET /metrics must present "
                 "(Authorization: Bearer TOKEN)")
      ->type_name("FILE");
  app.add_flag("--insecure-no-auth", c.insecure_no_auth,
               "Allow --listen / --metrics-listen on a non-loopback address without --users / "
               "--metrics-token-file (anyone who reaches the port has full access)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.action = ParseOutcome::Action::kExit;
    out.exit_code = 0;
    out.output = app.help();
    return out;
  } catch (const CLI::CallForAllHelp&) {
    out.action = ParseOutcome::Action::kExit;
    out.exit_code = 0;
    out.output = app.help("", CLI::AppFormatMode::All);
    return out;
  } catch (const CLI::CallForVersion& e) {
    out.action = ParseOutcome::Action::kExit;
    out.exit_code = 0;
    out.output = e.what();
    out.output += "\n";
    return out;
  } catch (const CLI::ParseError& e) {
    out.action = ParseOutcome::Action::kExit;
    out.exit_code = 2;
    out.output =
        std::string("kovan-server: ") + e.what() + "\nRun with --help for the list of flags.\n";
    return out;
  }

  // Every string below passed its check, so the conversions succeed.
  c.listen = *parse_endpoint(listen);
  if (!metrics_listen.empty()) c.metrics_listen = parse_endpoint(metrics_listen);
  c.txn_timeout = *parse_duration(txn_timeout);
  c.idle_timeout = *parse_duration(idle_timeout);
  c.shutdown_grace = *parse_duration(shutdown_grace);
  c.summary_interval = *parse_duration(summary_interval);
  c.frame_timeout = *parse_duration(frame_timeout);
  c.max_fault_stall = *parse_duration(max_fault_stall);
  if (config_option->count() > 0) c.config_file = config_option->as<std::string>();
  c.gc_policy =
      gc_policy == "watermark" ? storage::GcPolicy::kWatermark : storage::GcPolicy::kInterval;

  c.commit_threads = commit_threads == "auto" ? -1 : std::stoi(commit_threads);
  c.fsync = fsync == "everysec" ? storage::FsyncMode::kEverySec
            : fsync == "no"     ? storage::FsyncMode::kNo
                                : storage::FsyncMode::kAlways;
  (void)parse_checkpoint_every(checkpoint_every, c.checkpoint_every_bytes, c.checkpoint_every_time);
  c.wal_recovery =
      wal_recovery == "truncate" ? storage::WalRecovery::kTruncate : storage::WalRecovery::kStrict;

  std::string problem;
  if (c.data_dir.empty()) {
    auto given = [&](const char* name) { return app.get_option(name)->count() > 0; };
    for (const char* name : {"--fsync", "--checkpoint-every", "--wal-recovery", "--restore",
                             "--test-storage-faults", "--commit-threads"}) {
      if (given(name)) problem = std::string(name) + " needs --data-dir (durability is off)";
    }
  }
  if (c.txn_timeout.count() == 0) problem = "--txn-timeout must be above 0";
  if (c.max_output_bytes < c.max_frame_bytes) {
    // A single response may reach max-frame-bytes; it must fit under the backpressure limit
    // or a connection would stop reading after every large response.
    c.max_output_bytes = c.max_frame_bytes;
  }
  if (c.max_key_bytes + 64 > c.max_frame_bytes)
    problem = "--max-key-bytes must be well below --max-frame-bytes";
  if (c.max_input_bytes_total < 2ull * c.max_frame_bytes)
    problem = "--max-input-bytes-total must be at least twice --max-frame-bytes";
  if (c.max_fault_stall > std::chrono::minutes(10))
    problem = "--max-fault-stall must be at most 600s";
  if (c.tls_cert.empty() != c.tls_key.empty())
    problem = "--tls-cert and --tls-key must be given together";
  if (c.tls_cert.empty() && !c.tls_ca.empty()) problem = "--tls-ca needs --tls-cert and --tls-key";
  if (c.tls_require_client_cert && c.tls_ca.empty())
    problem = "--tls-require-client-cert needs --tls-ca (the CA that signs client certificates)";
  if (c.tls_client_cert_login && (c.tls_ca.empty() || c.users_file.empty()))
    problem =
        "--tls-client-cert-login needs --tls-ca (the CA that signs client certificates) and "
        "--users (the users the certificates name)";
  if (c.metrics_tls_cert.empty() != c.metrics_tls_key.empty())
    problem = "--metrics-tls-cert and --metrics-tls-key must be given together";
  if (c.metrics_tls_cert.empty() && !c.metrics_tls_ca.empty())
    problem = "--metrics-tls-ca needs --metrics-tls-cert and --metrics-tls-key";
  if (!c.metrics_tls_cert.empty() && !c.metrics_listen)
    problem = "--metrics-tls-cert needs --metrics-listen";
  if (problem.empty() && !c.users_file.empty()) {
    std::string why;
    if (!load_users_file(c.users_file, why)) problem = "--users: " + why;
  }
  if (problem.empty() && !c.metrics_token_file.empty()) {
    std::string why;
    if (load_token_file(c.metrics_token_file, why).empty())
      problem = "--metrics-token-file: " + why;
  }
  // Protected mode (docs/SECURITY.md): refuse to serve a network without authentication.
  if (problem.empty() && !c.insecure_no_auth) {
    if (!is_loopback(c.listen.host) && c.users_file.empty()) {
      problem = "--listen " + c.listen.to_string() +
                " is not a loopback address and no --users file is given: anyone who can reach "
                "the port could read and write every key. Give --users FILE (docs/SECURITY.md), "
                "or pass --insecure-no-auth to accept that";
    } else if (c.metrics_listen && !is_loopback(c.metrics_listen->host) &&
               c.metrics_token_file.empty()) {
      problem = "--metrics-listen " + c.metrics_listen->to_string() +
                " is not a loopback address and no --metrics-token-file is given. Give "
                "--metrics-token-file FILE, or pass --insecure-no-auth to accept that";
    }
  }
  if (!problem.empty()) {
    out.action = ParseOutcome::Action::kExit;
    out.exit_code = 2;
    out.output = "kovan-server: " + problem + "\n";
  }
  return out;
}

}  // namespace kv::server
