#include "report.hpp"

#include <cstdio>
#include <sstream>

namespace kv::bench {

namespace {

std::string us(std::uint64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(ns) / 1000.0);
  return b;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(c));
      out += b;
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

std::string latency_json(const Histogram& h) {
  std::ostringstream o;
  o << "{\"p50\": " << us(h.percentile(0.50)) << ", \"p90\": " << us(h.percentile(0.90))
    << ", \"p99\": " << us(h.percentile(0.99)) << ", \"p99_9\": " << us(h.percentile(0.999))
    << ", \"max\": " << us(h.max()) << ", \"mean\": " << num(h.mean() / 1000.0) << "}";
  return o.str();
}

double throughput(const LoadResult& r) {
  return r.measured_s > 0 ? static_cast<double>(r.ops) / r.measured_s : 0.0;
}

}  // namespace

std::string format_json(const RunOptions& o, const LoadResult& r) {
  std::ostringstream j;
  j << "{\n";
  j << "  \"target\": " << quoted(o.target.to_string()) << ",\n";
  j << "  \"workload\": " << quoted(o.workload) << ",\n";
  j << "  \"distribution\": " << quoted(distribution_name(o.mix.distribution)) << ",\n";
  j << "  \"records\": " << o.records << ",\n";
  j << "  \"value_size\": " << o.value_size << ",\n";
  j << "  \"connections\": " << o.connections << ",\n";
  j << "  \"threads\": " << o.threads << ",\n";
  j << "  \"pipeline\": " << o.pipeline << ",\n";
  j << "  \"rate\": " << num(o.rate) << ",\n";
  j << "  \"duration_s\": " << num(o.duration_s) << ",\n";
  j << "  \"warmup_s\": " << num(o.warmup_s) << ",\n";
  j << "  \"seed\": " << o.seed << ",\n";
  j << "  \"ops\": " << r.ops << ",\n";
  j << "  \"throughput_ops_per_s\": " << num(throughput(r)) << ",\n";
  j << "  \"misses\": " << r.misses << ",\n";
  j << "  \"txn_aborts\": " << r.txn_aborts << ",\n";
  j << "  \"unsent_scheduled\": " << r.unsent_scheduled << ",\n";
  j << "  \"ops_by_kind\": {";
  bool first = true;
  for (int k = 0; k < kOpKinds; ++k) {
    if (r.ops_by_kind[k] == 0) continue;
    j << (first ? "" : ", ") << quoted(op_name(static_cast<OpKind>(k))) << ": " << r.ops_by_kind[k];
    first = false;
  }
  j << "},\n";
  j << "  \"latency_us\": {\n    \"from_intended\": " << latency_json(r.from_intended)
    << ",\n    \"from_send\": " << latency_json(r.from_send) << "\n  },\n";
  j << "  \"errors_total\": " << r.errors_total() << ",\n";
  j << "  \"errors\": {";
  first = true;
  for (int e = 0; e < kErrorKinds; ++e) {
    if (r.errors[e] == 0) continue;
    j << (first ? "" : ", ") << quoted(error_name(e)) << ": " << r.errors[e];
    first = false;
  }
  j << "},\n";
  j << "  \"series\": [";
  for (std::size_t i = 0; i < r.series.size(); ++i) {
    const SecondStats& s = r.series[i];
    j << (i == 0 ? "\n" : ",\n") << "    {\"second\": " << s.second << ", \"ops\": " << s.ops
      << ", \"errors\": " << s.errors << ", \"p50_us\": " << us(s.p50_ns)
      << ", \"p99_us\": " << us(s.p99_ns) << ", \"max_us\": " << us(s.max_ns) << "}";
  }
  j << (r.series.empty() ? "]\n" : "\n  ]\n");
  j << "}\n";
  return j.str();
}

std::string format_table(const RunOptions& o, const LoadResult& r) {
  std::ostringstream t;
  char line[256];
  t << "target " << o.target.to_string() << "  workload " << o.workload << " ("
    << distribution_name(o.mix.distribution) << ")  records " << o.records << "  value "
    << o.value_size << " B\n";
  t << "connections " << o.connections << "  threads " << o.threads << "  pipeline " << o.pipeline
    << "  " << (o.rate > 0 ? "open loop at " + num(o.rate) + " req/s" : "closed loop")
    << "  duration " << num(o.duration_s) << " s (+" << num(o.warmup_s) << " s warm-up)\n";
  std::snprintf(line, sizeof line, "ops %llu  throughput %.0f ops/s  misses %llu  errors %llu\n",
                static_cast<unsigned long long>(r.ops), throughput(r),
                static_cast<unsigned long long>(r.misses),
                static_cast<unsigned long long>(r.errors_total()));
  t << line;
  std::snprintf(line, sizeof line, "%-16s %10s %10s %10s %10s %10s\n", "latency (us)", "p50", "p90",
                "p99", "p99.9", "max");
  t << line;
  auto row = [&](const char* name, const Histogram& h) {
    std::snprintf(line, sizeof line, "%-16s %10s %10s %10s %10s %10s\n", name,
                  us(h.percentile(0.5)).c_str(), us(h.percentile(0.9)).c_str(),
                  us(h.percentile(0.99)).c_str(), us(h.percentile(0.999)).c_str(),
                  us(h.max()).c_str());
    t << line;
  };
  row("from intended", r.from_intended);
  row("from send", r.from_send);
  for (int e = 0; e < kErrorKinds; ++e) {
    if (r.errors[e] != 0) t << "  error " << error_name(e) << ": " << r.errors[e] << "\n";
  }
  if (r.txn_aborts != 0) t << "  txn compares failed (lost races): " << r.txn_aborts << "\n";
  if (r.unsent_scheduled != 0)
    t << "  scheduled but never sent (server too slow for --rate): " << r.unsent_scheduled << "\n";
  return t.str();
}

std::string format_progress(const SecondStats& s) {
  char b[160];
  std::snprintf(b, sizeof b, "[%4u s] %10llu ops/s  p99 %8.1f us  errors %llu", s.second,
                static_cast<unsigned long long>(s.ops), static_cast<double>(s.p99_ns) / 1000.0,
                static_cast<unsigned long long>(s.errors));
  return b;
}

}  // namespace kv::bench
