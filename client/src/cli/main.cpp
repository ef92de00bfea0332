// kovan-cli: one-shot commands and an interactive shell over the Kovan KV client.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <iostream>

#include "cli.hpp"

namespace {
// Set by SIGINT / SIGTERM: `watch` and `lease keepalive` stop and exit 0.
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int /*signal*/) { g_stop.store(true, std::memory_order_relaxed); }
}  // namespace

int main(int argc, char** argv) {
  using namespace kv::cli;
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (parsed.exit) {
    (parsed.code == kExitOk ? std::cout : std::cerr) << parsed.output;
    return parsed.code;
  }
  const Options& o = parsed.options;
  kv::client::ClientOptions copts;
  copts.connect_timeout = std::chrono::milliseconds(o.timeout_ms);
  copts.request_timeout = std::chrono::milliseconds(o.timeout_ms);
  copts.tls = o.tls;
  copts.tls_ca_file = o.tls_ca;
  copts.tls_cert_file = o.tls_cert;
  copts.tls_key_file = o.tls_key;
  copts.tls_server_name = o.tls_server_name;
  // A checkpoint answers when it is written, and a snapshot chunk may wait for the server to
  // produce it: give those admin commands at least ten minutes.
  if (o.command.kind == Command::Kind::kCheckpoint ||
      o.command.kind == Command::Kind::kSnapshotSave) {
    copts.request_timeout = std::max(copts.request_timeout, std::chrono::milliseconds(600'000));
  }
  if (!o.user.empty()) {
    auto password = kv::client::password_from_env_or_file(o.password_file);
    if (!password.ok()) {
      std::cerr << "kovan-cli: --user " << o.user << ": " << password.status().message() << '\n';
      return kExitUsage;
    }
    copts.user = o.user;
    copts.password = std::move(password).value();
  }
  auto connected = kv::client::Client::connect(o.addr, copts);
  if (!connected.ok()) {
    if (o.json) {
      std::cout << "{\"ok\":false,\"error\":\"" << kv::client::code_name(connected.code())
                << "\",\"message\":\"cannot connect to the server\"}\n";
    }
    std::cerr << "kovan-cli: " << connected.status().to_string() << '\n';
    return connected.code() == kv::client::Code::kInvalidArgument ? kExitUsage : kExitError;
  }
  kv::client::Client& client = *connected.value();
  if (o.command.kind == Command::Kind::kNone) {
    const bool interactive = ::isatty(STDIN_FILENO) != 0;
    if (interactive) {
      std::cout << "kovan-cli connected to " << o.addr << " (type help)\n";
    }
    ShellOptions shell;
    shell.interactive = interactive;
    shell.stop_on_error = o.stop_on_error;
    shell.format = Format{o.json, o.raw};
    return run_shell(client, std::cin, std::cout, std::cerr, shell);
  }
  const bool long_running = o.command.kind == Command::Kind::kWatch ||
                            (o.command.kind == Command::Kind::kLeaseKeepAlive && !o.command.once);
  if (long_running) {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    if (o.command.kind == Command::Kind::kWatch) {
      return run_watch(client, o.command, Format{o.json, o.raw}, std::cout, std::cerr, g_stop);
    }
    return run_lease_keepalive(client, o.command, Format{o.json, o.raw}, std::cout, std::cerr,
                               g_stop);
  }
  return execute(client, o.command, Format{o.json, o.raw}, nullptr, std::cout, std::cerr);
}
