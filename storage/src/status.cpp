// storage/src/status.cpp — Status names and formatting, ManualClock.
#include <string>

#include "storage/engine.hpp"

namespace kv::storage {

std::string_view to_string(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kConflict:
      return "CONFLICT";
    case StatusCode::kTxnExpired:
      return "TXN_EXPIRED";
    case StatusCode::kTxnNotFound:
      return "TXN_NOT_FOUND";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kStorageFailed:
      return "STORAGE_FAILED";
    case StatusCode::kLeaseNotFound:
      return "LEASE_NOT_FOUND";
  }
  return "UNKNOWN";
}

std::string Status::to_string() const {
  std::string s(storage::to_string(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

std::chrono::steady_clock::time_point ManualClock::now() const noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(ns_.load(std::memory_order_relaxed)));
}

void ManualClock::advance(std::chrono::nanoseconds d) noexcept {
  ns_.fetch_add(d.count(), std::memory_order_relaxed);
}

}  // namespace kv::storage
