// An Elle-style checker for list-append histories (after Kingsbury and Alvaro, "Elle",
// VLDB 2020), small enough to read in one sitting.
//
// History format. Every key holds a list of integers. A transaction is a list of micro-ops:
//   append(k, v)   v is unique across the whole history
//   read(k) -> L   the list the transaction saw
// plus its real-time interval [start, end] (a global logical clock read at begin and after
// commit returned). Only committed transactions are given to the checker, with the final
// list of every key (read after all transactions finished), which fixes each key's version
// order. A transaction touches each key at most once (keeps the inference simple).
//
// Checks:
//   * every read is a prefix of the key's final list (else the order is inconsistent);
//   * every value in a final list was appended by a committed transaction (G1a/aborted
//     reads would show values of failed transactions), and every committed append is in
//     its key's final list (lost update);
//   * the dependency graph has no cycle. Edges (T1 -> T2 means T1 precedes T2):
//       ww  T1 appended the element right before T2's element in a key's final list
//       wr  T2 read a list whose last element T1 appended
//       rw  T1 read a list of length n, T2 appended element n+1 (anti-dependency)
//       rt  T1 ended before T2 started (real time; strict serializability)
// A cycle is reported as "T3 -ww(k1)-> T5 -rw(k2)-> T3".
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace kv::storage::elle {

struct MicroOp {
  bool append = false;
  std::string key;
  std::int64_t value = 0;          // append
  std::vector<std::int64_t> read;  // read
};

struct Txn {
  std::vector<MicroOp> ops;
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

struct Report {
  bool ok = true;
  std::string problem;  // empty when ok
};

inline Report check(const std::vector<Txn>& txns,
                    const std::map<std::string, std::vector<std::int64_t>>& final_lists,
                    bool real_time = true) {
  Report rep;
  auto fail = [&](std::string why) {
    rep.ok = false;
    rep.problem = std::move(why);
    return rep;
  };
  const std::size_t n = txns.size();
  std::map<std::int64_t, std::size_t> writer;  // value -> txn index
  for (std::size_t i = 0; i < n; ++i) {
    for (const MicroOp& op : txns[i].ops) {
      if (op.append && !writer.emplace(op.value, i).second) {
        return fail("value " + std::to_string(op.value) + " appended twice");
      }
    }
  }
  for (const auto& [key, list] : final_lists) {
    for (std::int64_t v : list) {
      if (!writer.count(v)) {
        return fail("key " + key + " holds " + std::to_string(v) +
                    ", which no committed transaction appended");
      }
    }
  }
  // Lost updates: every committed append must survive in its key's final list.
  for (const auto& [v, t] : writer) {
    for (const MicroOp& op : txns[t].ops) {
      if (!op.append || op.value != v) continue;
      auto it = final_lists.find(op.key);
      if (it == final_lists.end() ||
          std::find(it->second.begin(), it->second.end(), v) == it->second.end()) {
        return fail("lost update: committed append " + std::to_string(v) + " to " + op.key +
                    " is missing from its final list");
      }
    }
  }
  struct Edge {
    std::size_t to;
    std::string label;
  };
  // Nodes 0..n-1 are transactions. With real time on, nodes n.. are the history's event
  // times in order, chained t_i -> t_{i+1}; T -> time(T.end) and time(T.start) -> T. So a
  // path T1 ~> T2 through time nodes exists iff T1 ended before T2 started: O(n) edges
  // instead of O(n^2) "rt" edges (event times are unique).
  std::vector<std::uint64_t> times;
  if (real_time) {
    for (const Txn& t : txns) {
      times.push_back(t.start);
      times.push_back(t.end);
    }
    std::sort(times.begin(), times.end());
    times.erase(std::unique(times.begin(), times.end()), times.end());
  }
  const std::size_t total = n + times.size();
  std::vector<std::vector<Edge>> g(total);
  auto add = [&](std::size_t from, std::size_t to, std::string label) {
    if (from != to) g[from].push_back(Edge{to, std::move(label)});
  };
  for (const auto& [key, list] : final_lists) {
    for (std::size_t i = 1; i < list.size(); ++i) {
      add(writer[list[i - 1]], writer[list[i]], "ww(" + key + ")");
    }
  }
  for (std::size_t t = 0; t < n; ++t) {
    for (const MicroOp& op : txns[t].ops) {
      if (op.append) continue;
      auto it = final_lists.find(op.key);
      static const std::vector<std::int64_t> kEmpty;
      const std::vector<std::int64_t>& full = it == final_lists.end() ? kEmpty : it->second;
      if (op.read.size() > full.size() ||
          !std::equal(op.read.begin(), op.read.end(), full.begin())) {
        return fail("txn " + std::to_string(t) + " read a list of " + op.key +
                    " that is not a prefix of its final list");
      }
      if (!op.read.empty()) add(writer[op.read.back()], t, "wr(" + op.key + ")");
      if (op.read.size() < full.size()) add(t, writer[full[op.read.size()]], "rw(" + op.key + ")");
    }
  }
  if (real_time) {
    auto time_node = [&](std::uint64_t t) {
      return n + static_cast<std::size_t>(std::lower_bound(times.begin(), times.end(), t) -
                                          times.begin());
    };
    for (std::size_t i = 0; i + 1 < times.size(); ++i) add(n + i, n + i + 1, "rt");
    for (std::size_t t = 0; t < n; ++t) {
      add(t, time_node(txns[t].end), "rt");
      add(time_node(txns[t].start), t, "rt");
    }
  }
  // Iterative DFS; a back edge closes a cycle, reconstructed from the DFS tree. Time nodes
  // are printed as one "-rt->" step.
  std::vector<int> color(total, 0);  // 0 new, 1 on stack, 2 done
  std::vector<std::size_t> parent(total, total);
  std::vector<std::string> via(total);
  for (std::size_t root = 0; root < total; ++root) {
    if (color[root] != 0) continue;
    std::vector<std::pair<std::size_t, std::size_t>> stack{{root, 0}};
    color[root] = 1;
    while (!stack.empty()) {
      auto& [u, next] = stack.back();
      if (next == g[u].size()) {
        color[u] = 2;
        stack.pop_back();
        continue;
      }
      const Edge& e = g[u][next++];
      if (color[e.to] == 0) {
        color[e.to] = 1;
        parent[e.to] = u;
        via[e.to] = e.label;
        stack.emplace_back(e.to, 0);
      } else if (color[e.to] == 1) {
        // Cycle: e.to -> ... -> u -> e.to.
        std::vector<std::size_t> path{u};
        for (std::size_t x = u; x != e.to; x = parent[x]) path.push_back(parent[x]);
        std::reverse(path.begin(), path.end());  // e.to ... u
        path.push_back(e.to);
        std::ostringstream os;
        os << "cycle: T" << path[0];
        bool in_time = false;
        for (std::size_t i = 1; i < path.size(); ++i) {
          const std::string& label = i + 1 < path.size() ? via[path[i]] : e.label;
          if (path[i] >= n) {
            in_time = true;
            continue;
          }
          os << " -" << (in_time ? std::string("rt") : label) << "-> T" << path[i];
          in_time = false;
        }
        return fail(os.str());
      }
    }
  }
  return rep;
}

}  // namespace kv::storage::elle
