// Status values of the Kovan KV client.
//
// Every client call returns a Status (or a Result<T>, which carries one). Codes are the
// server's wire codes (docs/PROTOCOL.md, section 4) with their meaning unchanged, plus the
// client's own reasons expressed with the same codes:
//   - UNAVAILABLE: the connection could not be opened, was lost, or stopped answering
//     within the request timeout. The next call opens a new connection.
//   - INVALID_ARGUMENT: a call the client refuses before sending (bad address, a finished
//     transaction, a blocking call from a completion callback).
//   - RESOURCE_EXHAUSTED: a request whose frame would exceed ClientOptions::max_frame_bytes
//     (refused before sending); also the request a server's frame-size notice is about.
//   - INTERNAL: the server sent something the protocol does not allow (a response that
//     does not pair with the request, an unparsable frame).
//
// outcome_unknown(): set when a request that may change the store (put, del, delete_range,
// txn, commit) had been written completely to the connection and the connection was lost
// before its answer arrived. The write may or may not have been applied; the client never
// retries such a request by itself. It is not set, and the message says "not applied",
// when the client knows the server did not execute the request: its frame was never
// completely written, or the server announced the close with a notice first (the server
// executes nothing it has not answered before its notice; docs/PROTOCOL.md 5).
//
// Thread safety: Status and Result are plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace kv::client {

// The wire codes of kovan.kv.v1.Status.Code, same values.
enum class Code : std::uint8_t {
  kOk = 0,
  kNotFound = 1,
  kConflict = 2,
  kTxnExpired = 3,
  kTxnNotFound = 4,
  kInvalidArgument = 5,
  kResourceExhausted = 6,
  kUnavailable = 7,
  kInternal = 8,
  kUnauthenticated = 9,    // no (successful) authentication on the connection
  kPermissionDenied = 10,  // outside the user's role or key prefix
  // A durable server refuses writes after a storage failure (its log could not be written
  // or fsynced, e.g. a full disk): the write was not acknowledged. Reads keep working.
  kStorageFailed = 11,
  // WATCH from a start revision older than anything the server still keeps; also the code
  // of a watch the server ended because the watcher fell behind its history
  // (WatchBatch::compact_revision: the oldest revision a watch can start from now).
  kCompacted = 12,
  // A lease id that was never granted, was revoked, or expired.
  kLeaseNotFound = 13,
};

// "OK", "NOT_FOUND", ... (the names of docs/PROTOCOL.md).
[[nodiscard]] std::string_view code_name(Code code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message, bool outcome_unknown = false)
      : code_(code), outcome_unknown_(outcome_unknown), message_(std::move(message)) {}

  [[nodiscard]] static Status Ok() { return {}; }

  [[nodiscard]] bool ok() const noexcept { return code_ == Code::kOk; }
  [[nodiscard]] Code code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  // With COMPACTED: the oldest revision a watch can start from now (0 otherwise).
  [[nodiscard]] std::uint64_t compact_revision() const noexcept { return compact_revision_; }
  Status& set_compact_revision(std::uint64_t revision) noexcept {
    compact_revision_ = revision;
    return *this;
  }
  // True only for a write whose connection was lost while it was in flight.
  [[nodiscard]] bool outcome_unknown() const noexcept { return outcome_unknown_; }

  [[nodiscard]] bool is_not_found() const noexcept { return code_ == Code::kNotFound; }
  // CONFLICT or TXN_EXPIRED: the transaction did not take effect; run it again from begin.
  [[nodiscard]] bool is_retryable_txn() const noexcept {
    return code_ == Code::kConflict || code_ == Code::kTxnExpired;
  }

  // "NOT_FOUND: message" (plus a note when the outcome is unknown); "OK" when ok.
  [[nodiscard]] std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  bool outcome_unknown_ = false;
  std::string message_;
  std::uint64_t compact_revision_ = 0;
};

// A value or the Status explaining why there is none. The value is default-constructed
// when the status is not OK (a NOT_FOUND get carries an empty KeyValue).
template <class T>
class [[nodiscard]] Result {
 public:
  Result() = default;
  Result(Status status) : status_(std::move(status)) {}  // NOLINT(google-explicit-constructor)
  Result(T value) : value_(std::move(value)) {}          // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const noexcept { return status_.ok(); }
  [[nodiscard]] const Status& status() const noexcept { return status_; }
  [[nodiscard]] Code code() const noexcept { return status_.code(); }

  // Meaningful when ok().
  [[nodiscard]] const T& value() const& noexcept { return value_; }
  [[nodiscard]] T& value() & noexcept { return value_; }
  [[nodiscard]] T&& value() && noexcept { return std::move(value_); }
  const T* operator->() const noexcept { return &value_; }
  T* operator->() noexcept { return &value_; }
  const T& operator*() const noexcept { return value_; }

 private:
  Status status_;
  T value_{};
};

}  // namespace kv::client
