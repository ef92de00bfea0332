#include "resp.hpp"

#include <charconv>

namespace kv::bench::resp {

namespace {

void append_bulk(std::string& out, std::string_view s) {
  char len[24];
  auto [end, ec] = std::to_chars(len, len + sizeof len, s.size());
  (void)ec;
  out.push_back('$');
  out.append(len, end);
  out.append("\r\n");
  out.append(s);
  out.append("\r\n");
}

// Finds the CRLF-terminated line starting at `pos`. Returns npos when incomplete.
std::size_t line_end(std::string_view in, std::size_t pos) {
  const std::size_t cr = in.find('\r', pos);
  if (cr == std::string_view::npos || cr + 1 >= in.size()) return std::string_view::npos;
  return cr;
}

bool parse_int(std::string_view s, std::int64_t& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size();
}

Reply parse_at(std::string_view in, std::size_t pos, int depth) {
  Reply r;
  if (pos >= in.size()) return r;  // kNeedMore
  if (depth > kMaxDepth) {
    r.status = ParseStatus::kBad;
    return r;
  }
  const char type = in[pos];
  const std::size_t cr = line_end(in, pos + 1);
  if (cr == std::string_view::npos) {
    // A header line without its CRLF yet; refuse absurdly long ones.
    if (in.size() - pos > 64 * 1024) r.status = ParseStatus::kBad;
    if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*')
      r.status = ParseStatus::kBad;
    return r;
  }
  if (in[cr + 1] != '\n') {
    r.status = ParseStatus::kBad;
    return r;
  }
  const std::string_view line = in.substr(pos + 1, cr - pos - 1);
  const std::size_t after = cr + 2;
  switch (type) {
    case '+':
    case '-':
      r.status = ParseStatus::kComplete;
      r.type = type == '+' ? ReplyType::kSimpleString : ReplyType::kError;
      r.text = line;
      r.consumed = after;
      return r;
    case ':':
      if (!parse_int(line, r.integer)) {
        r.status = ParseStatus::kBad;
        return r;
      }
      r.status = ParseStatus::kComplete;
      r.type = ReplyType::kInteger;
      r.consumed = after;
      return r;
    case '$': {
      std::int64_t n = 0;
      if (!parse_int(line, n) || n < -1 || n > kMaxBulkBytes) {
        r.status = ParseStatus::kBad;
        return r;
      }
      if (n == -1) {
        r.status = ParseStatus::kComplete;
        r.type = ReplyType::kNull;
        r.consumed = after;
        return r;
      }
      const auto len = static_cast<std::size_t>(n);
      if (in.size() < after + len + 2) return r;  // kNeedMore
      if (in[after + len] != '\r' || in[after + len + 1] != '\n') {
        r.status = ParseStatus::kBad;
        return r;
      }
      r.status = ParseStatus::kComplete;
      r.type = ReplyType::kBulk;
      r.text = in.substr(after, len);
      r.consumed = after + len + 2;
      return r;
    }
    case '*': {
      std::int64_t n = 0;
      if (!parse_int(line, n) || n < -1) {
        r.status = ParseStatus::kBad;
        return r;
      }
      if (n == -1) {
        r.status = ParseStatus::kComplete;
        r.type = ReplyType::kNull;
        r.consumed = after;
        return r;
      }
      std::size_t p = after;
      for (std::int64_t i = 0; i < n; ++i) {
        const Reply e = parse_at(in, p, depth + 1);
        if (e.status != ParseStatus::kComplete) {
          r.status = e.status;
          return r;
        }
        p = e.consumed;
      }
      r.status = ParseStatus::kComplete;
      r.type = ReplyType::kArray;
      r.integer = n;
      r.consumed = p;
      return r;
    }
    default:
      r.status = ParseStatus::kBad;
      return r;
  }
}

}  // namespace

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  char len[24];
  auto [end, ec] = std::to_chars(len, len + sizeof len, args.size());
  (void)ec;
  out.push_back('*');
  out.append(len, end);
  out.append("\r\n");
  for (std::string_view a : args) append_bulk(out, a);
}

void append_get(std::string& out, std::string_view key) { append_command(out, {"GET", key}); }

void append_set(std::string& out, std::string_view key, std::string_view value) {
  append_command(out, {"SET", key, value});
}

Reply parse_reply(std::string_view input) {
  Reply r = parse_at(input, 0, 0);
  // consumed from parse_at is an absolute offset, which equals the length from 0.
  return r;
}

}  // namespace kv::bench::resp
