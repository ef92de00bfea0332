// parse(): kovan-server's command-line parser, run on `args` as if they followed the
// program name. Shared by the config unit tests.
#pragma once

#include <vector>

#include "server/config.hpp"

namespace kv::server::test {

inline ParseOutcome parse(const std::vector<const char*>& args) {
  std::vector<const char*> argv;
  argv.reserve(args.size() + 1);
  argv.push_back("kovan-server");
  for (const char* a : args) argv.push_back(a);
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

}  // namespace kv::server::test
