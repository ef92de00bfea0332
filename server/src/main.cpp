// kovan-server: parse flags, start the engine and the server, wait for SIGINT/SIGTERM,
// shut down gracefully, exit 0.
#include <pthread.h>
#include <signal.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

#include "server/config.hpp"
#include "server/server.hpp"
#include "storage/engine.hpp"

int main(int argc, char** argv) {
  using namespace kv::server;
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (parsed.action == ParseOutcome::Action::kExit) {
    std::fputs(parsed.output.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  const ServerConfig& config = parsed.config;

  auto logger = spdlog::stderr_color_mt("kovan");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::flush_on(spdlog::level::info);

  // Block the shutdown signals in every thread (the workers inherit this mask); this thread
  // then receives them synchronously with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client that disappears must not kill the process.
  signal(SIGPIPE, SIG_IGN);

  kv::storage::Engine engine(config.engine_options());
  int rc = 0;
  {
    Server server(config, engine);
    std::string error;
    if (!server.start(error)) {
      spdlog::critical("{}", error);
      return 1;
    }
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.shutdown();
    server.wait();
  }
  engine.shutdown();
  spdlog::info("stopped");
  return rc;
}
