// Bank transfers with transact(): several threads move money between accounts at random,
// each transfer a serializable transaction that reads both balances and writes both. At the
// end the total is unchanged, whatever conflicts happened on the way.
//
//   bank_transfer [--addr host:port] [--accounts N] [--threads T] [--transfers K]
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"

namespace {

using kv::client::Client;
using kv::client::Status;
using kv::client::Transaction;

std::string account_key(int i) { return "bank/account/" + std::to_string(i); }

// Reads a balance inside the transaction (a missing account holds 0).
Status read_balance(Transaction& t, const std::string& key, long long& out) {
  auto r = t.get(key);
  if (r.status().is_not_found()) {
    out = 0;
    return Status();
  }
  if (!r.ok()) return r.status();
  out = std::stoll(r->value);
  return Status();
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:7379";
  int accounts = 10;
  int threads = 4;
  int transfers = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--addr") {
      addr = argv[i + 1];
    } else if (flag == "--accounts") {
      accounts = std::atoi(argv[i + 1]);
    } else if (flag == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (flag == "--transfers") {
      transfers = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (accounts < 2 || threads < 1 || transfers < 0) {
    std::fprintf(stderr, "need --accounts >= 2, --threads >= 1, --transfers >= 0\n");
    return 2;
  }

  auto connected = Client::connect(addr);
  if (!connected.ok()) {
    std::fprintf(stderr, "connect: %s\n", connected.status().to_string().c_str());
    return 3;
  }
  Client& client = *connected.value();
  const long long initial = 1000;
  (void)client.delete_range(kv::client::Range::with_prefix("bank/account/"));
  for (int i = 0; i < accounts; ++i) {
    if (auto r = client.put(account_key(i), std::to_string(initial)); !r.ok()) {
      std::fprintf(stderr, "put: %s\n", r.status().to_string().c_str());
      return 3;
    }
  }

  std::vector<std::thread> workers;
  std::vector<unsigned> retries(static_cast<std::size_t>(threads), 0);
  std::vector<unsigned> failures(static_cast<std::size_t>(threads), 0);
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w) * 7919u + 1u);
      std::uniform_int_distribution<int> pick(0, accounts - 1);
      std::uniform_int_distribution<int> amount(1, 50);
      for (int k = 0; k < transfers; ++k) {
        const int from = pick(rng);
        int to = pick(rng);
        if (to == from) to = (to + 1) % accounts;
        const int sum = amount(rng);
        // One client shared by all threads: the calls are pipelined on its connection.
        auto r = client.transact([&](Transaction& t) -> Status {
          long long a = 0;
          long long b = 0;
          if (Status s = read_balance(t, account_key(from), a); !s.ok()) return s;
          if (Status s = read_balance(t, account_key(to), b); !s.ok()) return s;
          if (a < sum) return Status();  // insufficient funds: commit nothing
          if (Status s = t.put(account_key(from), std::to_string(a - sum)); !s.ok()) return s;
          return t.put(account_key(to), std::to_string(b + sum));
        });
        retries[static_cast<std::size_t>(w)] += r.attempts > 0 ? r.attempts - 1 : 0;
        if (!r.ok()) ++failures[static_cast<std::size_t>(w)];
      }
    });
  }
  for (auto& t : workers) t.join();

  auto all = client.scan(kv::client::Range::with_prefix("bank/account/"));
  if (!all.ok()) {
    std::fprintf(stderr, "scan: %s\n", all.status().to_string().c_str());
    return 3;
  }
  long long total = 0;
  for (const auto& kv : all->kvs) total += std::stoll(kv.value);
  unsigned total_retries = 0;
  unsigned total_failures = 0;
  for (int w = 0; w < threads; ++w) {
    total_retries += retries[static_cast<std::size_t>(w)];
    total_failures += failures[static_cast<std::size_t>(w)];
  }
  std::printf("accounts %d, transfers %d, retries %u, failed %u, total %lld (expected %lld)\n",
              accounts, threads * transfers, total_retries, total_failures, total,
              initial * accounts);
  return total == initial * accounts ? 0 : 1;
}
