// A minimal RESP (Redis serialization protocol, version 2) encoder and reply parser, enough
// for kovan-bench to drive a Redis server with GET and SET.
//
// The parser is pure and incremental: it looks at the front of a byte buffer and reports
// a complete reply (with the bytes it occupies), "need more bytes", or a protocol error. It
// never reads past the buffer and keeps no state between calls, so a reply split at any
// byte boundary parses once the rest has arrived.
//
// Thread safety: reentrant free functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kv::bench::resp {

// Appends "*2\r\n$3\r\nGET\r\n$<n>\r\n<key>\r\n".
void append_get(std::string& out, std::string_view key);
// Appends "*3\r\n$3\r\nSET\r\n$<n>\r\n<key>\r\n$<m>\r\n<value>\r\n".
void append_set(std::string& out, std::string_view key, std::string_view value);
// Appends an arbitrary command as an array of bulk strings.
void append_command(std::string& out, std::initializer_list<std::string_view> args);

enum class ParseStatus : std::uint8_t { kComplete, kNeedMore, kBad };

enum class ReplyType : std::uint8_t {
  kSimpleString,  // +OK
  kError,         // -ERR ...
  kInteger,       // :1
  kBulk,          // $3 foo
  kNull,          // $-1 or *-1
  kArray,         // *N followed by N replies (elements are skipped, not returned)
};

struct Reply {
  ParseStatus status = ParseStatus::kNeedMore;
  ReplyType type = ReplyType::kNull;
  std::size_t consumed = 0;  // bytes of the whole reply when kComplete
  // kSimpleString / kError: the line without the type byte and CRLF; kBulk: the payload.
  // Points into the input.
  std::string_view text;
  std::int64_t integer = 0;  // kInteger: the value; kArray: the element count
};

// Limits that make a hostile or corrupt stream fail fast instead of buffering forever.
inline constexpr std::int64_t kMaxBulkBytes = 512ll << 20;
inline constexpr int kMaxDepth = 8;

// Parses the first reply in `input`.
[[nodiscard]] Reply parse_reply(std::string_view input);

}  // namespace kv::bench::resp
