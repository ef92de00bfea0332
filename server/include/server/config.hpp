// Configuration of kovan-server: the flags, their defaults, and the command-line / config
// file parser (docs/OPERATIONS.md lists every key).
//
// Thread safety: ServerConfig is a plain value; parse_command_line is reentrant.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proto/frame.hpp"
#include "storage/durability.hpp"
#include "storage/engine.hpp"

namespace kv::server {

// A host and port as given to --listen / --metrics-listen. `host` is a numeric IPv4 or
// IPv6 address (IPv6 in brackets on the command line: "[::1]:7379") or "localhost".
struct Endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7379;
  [[nodiscard]] std::string to_string() const;
};

struct ServerConfig {
  Endpoint listen;                              // --listen
  unsigned threads = 0;                         // --threads; 0: one per hardware thread
  std::chrono::milliseconds txn_timeout{5000};  // --txn-timeout (engine age limit)
  storage::GcPolicy gc_policy = storage::GcPolicy::kInterval;    // --gc-policy
  std::uint32_t max_connections = 10'000;                        // --max-connections
  std::uint32_t max_frame_bytes = proto::kDefaultMaxFrameBytes;  // --max-frame-bytes
  std::chrono::milliseconds idle_timeout{300'000};               // --idle-timeout; 0 disables
  std::uint32_t max_txns_per_connection = 64;                    // --max-txns-per-connection
  std::string log_level = "info";                                // --log-level
  std::optional<Endpoint> metrics_listen;              // --metrics-listen; unset: no endpoint
  bool enable_fault_injection = false;                 // --enable-fault-injection
  std::chrono::milliseconds shutdown_grace{2000};      // --shutdown-grace
  std::uint64_t max_output_bytes = 8u << 20;           // --max-output-bytes (backpressure)
  std::uint32_t max_key_bytes = 4096;                  // --max-key-bytes
  std::uint32_t max_value_bytes = 1u << 20;            // --max-value-bytes
  std::uint32_t max_active_txns = 4096;                // --max-active-txns (whole server)
  std::uint64_t max_leases = 100'000;                  // --max-leases (whole server; 0: no limit)
  std::chrono::milliseconds summary_interval{60'000};  // --summary-interval; 0 disables
  // Watch (docs/PROTOCOL.md 3.15): --watch-history (0: none in memory), --max-watches (whole
  // server), --max-watches-per-connection.
  std::uint64_t watch_history = std::uint64_t{64} << 20;
  std::uint64_t max_watches = 100'000;
  std::uint32_t max_watches_per_connection = 10'000;
  // Memory limits (docs/OPERATIONS.md, "Memory limit").
  std::uint64_t max_memory = 0;                           // --max-memory; 0: off
  std::uint64_t max_txn_bytes = std::uint64_t{64} << 20;  // --max-txn-bytes; 0: off
  // Budgets over all connections (docs/OPERATIONS.md, "Limits and budgets").
  std::uint64_t max_input_bytes_total = 128u << 20;   // --max-input-bytes-total
  std::uint64_t max_output_bytes_total = 128u << 20;  // --max-output-bytes-total
  std::chrono::milliseconds frame_timeout{30'000};    // --frame-timeout; 0 disables
  std::uint32_t max_txns_per_peer = 0;                // --max-txns-per-peer; 0: a quarter of
                                                      // --max-active-txns
  std::uint32_t max_metrics_connections = 16;         // --max-metrics-connections
  std::chrono::milliseconds max_fault_stall{60'000};  // --max-fault-stall
  std::string config_file;                            // --config; empty: none
  // TLS (docs/SECURITY.md, "TLS"). The client port speaks TLS when tls_cert is set.
  std::string tls_cert;                  // --tls-cert: PEM certificate chain
  std::string tls_key;                   // --tls-key: PEM private key
  std::string tls_ca;                    // --tls-ca: PEM CAs that sign client certificates
  bool tls_require_client_cert = false;  // --tls-require-client-cert (needs --tls-ca)
  // --tls-client-cert-login (needs --tls-ca and --users): a verified client certificate
  // whose CN names a user authenticates the connection as that user.
  bool tls_client_cert_login = false;
  // The metrics listener's own TLS settings (a scraper usually has another certificate);
  // with metrics_tls_ca, scrapers must present a certificate signed by it.
  std::string metrics_tls_cert;  // --metrics-tls-cert
  std::string metrics_tls_key;   // --metrics-tls-key
  std::string metrics_tls_ca;    // --metrics-tls-ca
  // Durability (docs/OPERATIONS.md, "Durability"; docs/PERSISTENCE.md). Off (a pure
  // in-memory server, as without these flags) unless data_dir is set.
  std::string data_dir;                                    // --data-dir; empty: in memory
  storage::FsyncMode fsync = storage::FsyncMode::kAlways;  // --fsync
  std::uint64_t checkpoint_every_bytes = 0;                // --checkpoint-every (WAL bytes)
  std::chrono::milliseconds checkpoint_every_time{0};      // --checkpoint-every (duration)
  storage::WalRecovery wal_recovery = storage::WalRecovery::kStrict;  // --wal-recovery
  std::string restore_from;                                           // --restore FILE
  // TEST ONLY (hidden flag --test-storage-faults): SIGUSR1 makes the next fsync of the log
  // fail with EIO, SIGUSR2 makes every write fail with ENOSPC (a full disk).
  bool test_storage_faults = false;
  // --commit-threads: threads that run durable writes off the workers, so that a worker
  // waiting for an fsync goes on serving its other connections and concurrent commits of
  // one worker share an fsync (docs/PERSISTENCE.md, "Group commit across connections").
  // -1: automatic (64 with --data-dir and --fsync always, none otherwise); 0: none.
  std::int32_t commit_threads = -1;
  static constexpr unsigned kAutoCommitThreads = 64;
  // Security (docs/SECURITY.md).
  std::string users_file;          // --users; empty: no authentication
  std::string metrics_token_file;  // --metrics-token-file; empty: scrapes need no token
  bool insecure_no_auth = false;   // --insecure-no-auth: allow non-loopback without them

  // Transactions one peer address may hold: max_txns_per_peer, or when it is 0 a quarter
  // of max_active_txns (at least 1).
  [[nodiscard]] std::uint32_t effective_txns_per_peer() const noexcept;
  // Worker threads to start: `threads`, or the hardware concurrency when it is 0.
  [[nodiscard]] unsigned effective_threads() const noexcept;
  // How long a connection to a TLS port has to complete its handshake: --frame-timeout, or
  // 30 s when that is 0 (never unbounded), and at most --idle-timeout when that is set.
  [[nodiscard]] std::chrono::milliseconds tls_handshake_timeout() const noexcept;
  // The engine options these settings imply (limits, age limit, GC policy, sweeper
  // period short enough that expiry is enforced within a quarter of the age limit).
  [[nodiscard]] storage::Options engine_options() const;
  [[nodiscard]] bool durable() const noexcept { return !data_dir.empty(); }
  // Commit threads to start: commit_threads, or the automatic choice when it is 0.
  [[nodiscard]] unsigned effective_commit_threads() const noexcept;
  // One line with every effective setting, for the start-up log.
  [[nodiscard]] std::string describe() const;
};

// Result of parsing the command line.
struct ParseOutcome {
  enum class Action : std::uint8_t {
    kRun,   // start the server with `config`
    kExit,  // exit with `exit_code` (after --help/--version, or a bad flag)
  };
  Action action = Action::kRun;
  int exit_code = 0;   // 0 for --help and --version, 2 for any bad flag or config file
  std::string output;  // text to print: help to stdout, errors to stderr (exit_code 2)
  ServerConfig config;
};

// Parses argv (flags and, with --config FILE, the same keys from a TOML/INI file; flags on
// the command line win over the file). Never exits the process and never throws for bad
// input: errors come back as kExit with exit_code 2 and a message naming the flag.
[[nodiscard]] ParseOutcome parse_command_line(int argc, const char* const* argv);

// True for "localhost", 127.0.0.0/8 and ::1 (protected mode, docs/SECURITY.md).
[[nodiscard]] bool is_loopback(std::string_view host) noexcept;

// "250ms", "5s", "2m", "1h", or a bare number of seconds. nullopt when malformed.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// --checkpoint-every: a comma-separated list of a WAL size ("64MiB", "1g", "100000") and/or
// a duration ("10m", "30s"; a unit is required). "0" or "off": no automatic checkpoints.
// False when malformed.
[[nodiscard]] bool parse_checkpoint_every(std::string_view text, std::uint64_t& bytes,
                                          std::chrono::milliseconds& every);
// "host:port" or "[v6]:port". nullopt when malformed.
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view text);

}  // namespace kv::server
