// lock_demo: takes a distributed mutex (client/recipes/concurrency.hpp) and holds it.
//
//   lock_demo ADDRESS PREFIX TTL_SECONDS
//
// Prints "acquired KEY REVISION" once it holds the mutex, then holds it until its standard
// input ends (or it is killed: the server then frees the mutex when the session's lease
// expires, TTL_SECONDS later), unlocks, prints "released" and exits.
#include <iostream>
#include <string>

#include "concurrency.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: lock_demo ADDRESS PREFIX TTL_SECONDS\n";
    return 2;
  }
  auto c = kv::client::Client::connect(argv[1]);
  if (!c.ok()) {
    std::cerr << "lock_demo: " << c.status().to_string() << '\n';
    return 3;
  }
  auto session = kv::recipes::Session::create(*c.value(), std::stoll(argv[3]));
  if (!session.ok()) {
    std::cerr << "lock_demo: " << session.status().to_string() << '\n';
    return 3;
  }
  kv::recipes::Mutex mutex(*session.value(), argv[2]);
  if (kv::client::Status s = mutex.lock(); !s.ok()) {
    std::cerr << "lock_demo: " << s.to_string() << '\n';
    return 3;
  }
  std::cout << "acquired " << mutex.key() << ' ' << mutex.revision() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  (void)mutex.unlock();
  std::cout << "released" << std::endl;
  return 0;
}
