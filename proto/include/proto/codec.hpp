// Protobuf-level codec of the Kovan KV wire protocol: turning frame payloads into Request
// messages, checking a Request's structure, and appending framed Responses to an output
// buffer. Pure (no I/O); see frame.hpp for the byte-level framing.
//
// Thread safety: every function is reentrant; the messages and buffers passed in belong to
// the caller.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proto/kv.pb.h"

namespace kv::proto {

namespace pb = ::kovan::kv::v1;

// Parses one frame payload into `out` (which is cleared first). False when the bytes are
// not a valid encoding of Request; unknown fields are accepted and ignored.
[[nodiscard]] bool parse_request(std::string_view payload, pb::Request& out);

// Appends a frame holding `message` to `out` with a single serialization pass.
void append_message(std::string& out, const google::protobuf::MessageLite& message);

// Structural limits checked before a request reaches the engine.
struct RequestLimits {
  std::uint32_t max_key_bytes = 4096;
  std::uint32_t max_value_bytes = 1u << 20;
  std::uint32_t max_txn_ops = 1024;      // compares, success ops and failure ops each
  std::uint32_t max_stall_ms = 600'000;  // FaultRequest
};

// Outcome of validate_request: `code` is OK when the request is well formed, otherwise
// INVALID_ARGUMENT with a static message naming the problem.
struct Validation {
  pb::Status::Code code = pb::Status::OK;
  std::string_view message;
  [[nodiscard]] bool ok() const noexcept { return code == pb::Status::OK; }
};

// Checks what can be checked without the store: an operation is set, keys are non-empty
// and within limits, values within limits, range selections are consistent (prefix with an
// empty end; start < end when both are given), conditional-transaction ops carry no
// txn_id, prev_kv is not combined with txn_id, lists and stalls are within limits.
[[nodiscard]] Validation validate_request(const pb::Request& request,
                                          const RequestLimits& limits) noexcept;

// Human-readable name of a status code ("NOT_FOUND"), for logs and tests.
[[nodiscard]] std::string_view code_name(pb::Status::Code code) noexcept;

}  // namespace kv::proto
