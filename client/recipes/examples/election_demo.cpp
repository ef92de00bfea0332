// election_demo: campaigns in a leader election (client/recipes/concurrency.hpp).
//
//   election_demo ADDRESS PREFIX TTL_SECONDS VALUE
//
// Prints "leader VALUE" once this process leads, then leads until its standard input ends,
// resigns, prints "resigned" and exits. Killed, it loses the leadership when its session's
// lease expires; the next candidate (in campaign order) then leads.
#include <iostream>
#include <string>

#include "concurrency.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: election_demo ADDRESS PREFIX TTL_SECONDS VALUE\n";
    return 2;
  }
  auto c = kv::client::Client::connect(argv[1]);
  if (!c.ok()) {
    std::cerr << "election_demo: " << c.status().to_string() << '\n';
    return 3;
  }
  auto session = kv::recipes::Session::create(*c.value(), std::stoll(argv[3]));
  if (!session.ok()) {
    std::cerr << "election_demo: " << session.status().to_string() << '\n';
    return 3;
  }
  kv::recipes::Election election(*session.value(), argv[2]);
  if (kv::client::Status s = election.campaign(argv[4]); !s.ok()) {
    std::cerr << "election_demo: " << s.to_string() << '\n';
    return 3;
  }
  std::cout << "leader " << argv[4] << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  (void)election.resign();
  std::cout << "resigned" << std::endl;
  return 0;
}
