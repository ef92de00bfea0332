// kovan-server: parse flags, start the engine and the server, wait for signals, shut down
// gracefully, exit 0.
//
// Signals (docs/OPERATIONS.md, "Signals and shutdown"): SIGINT, SIGTERM and SIGQUIT shut
// down gracefully; SIGHUP re-reads the configuration and applies the settings that can
// change live (the log level), logging every other setting that changed as needing a
// restart, and re-reads the --users file; SIGPIPE is ignored.
//
// `kovan-server hash-password` prints the hash of a password read from standard input.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "server/auth.hpp"
#include "server/config.hpp"
#include "server/server.hpp"
#include "storage/durability.hpp"
#include "storage/engine.hpp"

namespace {

// "key=value" pairs of ServerConfig::describe().
std::map<std::string, std::string> settings(const kv::server::ServerConfig& c) {
  std::map<std::string, std::string> out;
  std::istringstream in(c.describe());
  std::string item;
  while (in >> item) {
    const auto eq = item.find('=');
    if (eq != std::string::npos) out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

// SIGHUP: parse the command line (and so the --config file) again; apply what can change
// while running, report the rest. The --users file is always re-read.
void reload(int argc, char** argv, kv::server::ServerConfig& running, kv::server::Server& server) {
  using namespace kv::server;
  if (!running.users_file.empty()) {
    std::string error;
    if (server.reload_users(error)) {
      spdlog::info("SIGHUP: re-read the users file {}", running.users_file);
    } else {
      spdlog::warn("SIGHUP: {}; keeping the current users", error);
    }
  }
  if (running.config_file.empty()) {
    spdlog::info("received SIGHUP: no --config file, nothing to re-read");
    return;
  }
  spdlog::info("received SIGHUP: re-reading {}", running.config_file);
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (parsed.action != ParseOutcome::Action::kRun) {
    std::string why = parsed.output;
    while (!why.empty() && why.back() == '\n') why.pop_back();
    for (char& ch : why) {
      if (ch == '\n') ch = ' ';
    }
    spdlog::warn("SIGHUP: the configuration does not parse ({}); keeping the current settings",
                 why);
    return;
  }
  const ServerConfig& fresh = parsed.config;
  if (fresh.log_level != running.log_level) {
    spdlog::set_level(spdlog::level::from_str(fresh.log_level));
    spdlog::info("SIGHUP: log-level is now {}", fresh.log_level);
    running.log_level = fresh.log_level;
  }
  const auto before = settings(running);
  for (const auto& [key, value] : settings(fresh)) {
    const auto it = before.find(key);
    if (it != before.end() && it->second != value) {
      spdlog::warn("SIGHUP: {} changed ({} -> {}); it takes effect after a restart", key,
                   it->second, value);
    }
  }
}

// Raises the soft open-file limit to the hard limit (container engines and login sessions
// often start processes at 1024 soft while --max-connections defaults to 10000) and logs
// the result; warns when the limit stays below --max-connections.
void raise_open_file_limit(std::uint32_t max_connections) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    spdlog::warn("open-file limit: getrlimit failed: {}", std::strerror(errno));
    return;
  }
  rlim_t target = lim.rlim_max;
  if (target == RLIM_INFINITY) {  // the kernel caps RLIMIT_NOFILE at fs.nr_open
    std::ifstream nr_open("/proc/sys/fs/nr_open");
    unsigned long long cap = 0;
    target = (nr_open >> cap) && cap > 0 ? static_cast<rlim_t>(cap) : lim.rlim_cur;
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < target) {
    const rlim_t before = lim.rlim_cur;
    lim.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &lim) == 0) {
      spdlog::info("open-file limit raised from {} to {}", before, target);
    } else {
      spdlog::warn("open-file limit: cannot raise {} to {}: {}", before, target,
                   std::strerror(errno));
      lim.rlim_cur = before;
    }
  } else {
    spdlog::info("open-file limit {} (already the hard limit)", lim.rlim_cur);
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < max_connections) {
    spdlog::warn(
        "open-file limit {} is below --max-connections {}: raise the hard limit (ulimit -Hn, "
        "LimitNOFILE=, --ulimit nofile=) or lower --max-connections",
        lim.rlim_cur, max_connections);
  }
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGQUIT:
      return "SIGQUIT";
    default:
      return "a signal";
  }
}

}  // namespace

// `kovan-server hash-password [--iterations N]`: one password line from standard input,
// its hash (for the --users file) on standard output.
int hash_password_command(int argc, char** argv) {
  std::uint32_t iterations = kv::server::kDefaultPbkdf2Iterations;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--iterations" && i + 1 < argc) {
      try {
        iterations = static_cast<std::uint32_t>(std::stoul(argv[++i]));
      } catch (...) {
        iterations = 0;
      }
      if (iterations < 1000) {
        std::fputs("kovan-server hash-password: --iterations must be a number >= 1000\n", stderr);
        return 2;
      }
    } else {
      std::fputs(
          "usage: kovan-server hash-password [--iterations N] < password\n"
          "Reads one password line from standard input and prints its salted PBKDF2 hash for "
          "the --users file.\n",
          arg == "--help" || arg == "-h" ? stdout : stderr);
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  std::string password;
  if (!std::getline(std::cin, password) && password.empty()) {
    std::fputs("kovan-server hash-password: no password on standard input\n", stderr);
    return 2;
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) {
    std::fputs("kovan-server hash-password: the password is empty\n", stderr);
    return 2;
  }
  try {
    std::printf("%s\n", kv::server::hash_password(password, iterations).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kovan-server hash-password: %s\n", e.what());
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  using namespace kv::server;
  if (argc >= 2 && std::string_view(argv[1]) == "hash-password") {
    return hash_password_command(argc, argv);
  }
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (parsed.action == ParseOutcome::Action::kExit) {
    std::fputs(parsed.output.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  ServerConfig& config = parsed.config;

  auto logger = spdlog::stderr_color_mt("kovan");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::flush_on(spdlog::level::info);
  raise_open_file_limit(config.max_connections);

  // Block the handled signals in every thread (the workers inherit this mask); this thread
  // then receives them synchronously with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGQUIT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client that disappears must not kill the process.
  signal(SIGPIPE, SIG_IGN);

  // --max-memory counts the connections' buffers too: the engine asks the server for them
  // on each put while the limit is set. The server exists only inside the block below;
  // outside it (no worker runs, so no put is in flight) the hook counts nothing.
  // acquire/release: the Server is fully constructed before a worker can see its address.
  std::atomic<const Server*> running{nullptr};
  kv::storage::Options engine_options = config.engine_options();
  engine_options.external_memory_bytes = [&running]() -> std::uint64_t {
    const Server* s = running.load(std::memory_order_acquire);
    return s != nullptr ? s->connection_buffer_bytes() : 0;
  };
  std::shared_ptr<kv::storage::FileFaults> faults;
  if (config.test_storage_faults) {
    faults = std::make_shared<kv::storage::FileFaults>();
    engine_options.durability.faults = faults;
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    spdlog::warn(
        "TEST ONLY: --test-storage-faults: SIGUSR1 fails the next log fsync, SIGUSR2 "
        "fails every write");
  }
  // Durable (--data-dir): open takes the directory's lock and recovers (or restores) before
  // anything is served; any failure ends the process with a clear message.
  std::unique_ptr<kv::storage::Engine> engine_holder;
  if (config.durable()) {
    spdlog::info("opening data directory {}{}", config.data_dir,
                 config.restore_from.empty() ? std::string()
                                             : " (restoring from " + config.restore_from + ")");
    std::string error;
    engine_holder = kv::storage::Engine::open(std::move(engine_options), error);
    if (!engine_holder) {
      spdlog::critical("cannot open data directory {}: {}", config.data_dir, error);
      return 1;
    }
    for (const std::string& note : engine_holder->recovery_notes()) {
      spdlog::warn("recovery: {}", note);
    }
    const kv::storage::DurabilityStats d = engine_holder->durability_stats();
    spdlog::info("data directory {} ready at revision {} (checkpoint at revision {})",
                 config.data_dir, engine_holder->current_revision(), d.last_checkpoint_revision);
  } else {
    engine_holder = std::make_unique<kv::storage::Engine>(std::move(engine_options));
    spdlog::info("no --data-dir: in-memory only, nothing survives a restart");
  }
  kv::storage::Engine& engine = *engine_holder;
  int rc = 0;
  {
    Server server(config, engine);
    running.store(&server, std::memory_order_release);
    std::string error;
    if (!server.start(error)) {
      spdlog::critical("{}", error);
      return 1;
    }
    int sig = 0;
    for (;;) {
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGUSR1 && faults) {
        faults->fail_next_fsync(EIO);
        spdlog::warn("TEST ONLY: the next log fsync fails with EIO");
        continue;
      }
      if (sig == SIGUSR2 && faults) {
        faults->fail_writes(ENOSPC);
        spdlog::warn("TEST ONLY: every write fails with ENOSPC from now on");
        continue;
      }
      if (sig != SIGHUP) break;
      reload(argc, argv, config, server);
    }
    spdlog::info("received {}", signal_name(sig));
    server.shutdown();
    server.wait();
    running.store(nullptr, std::memory_order_release);
  }
  engine.shutdown();
  spdlog::info("stopped");
  return rc;
}
