// One SNAPSHOT stream of a connection (docs/PROTOCOL.md 3.13): a producer thread runs
// Engine::write_snapshot and hands its bytes over a bounded buffer to the requests of the
// connection, which take them chunk by chunk in order.
//
// Memory: the buffer holds at most `max_buffered` bytes (plus the chunk the engine is
// handing over); the producer waits while it is full, holding its MVCC snapshot (interval GC
// bounds what that costs: docs/PERSISTENCE.md). A stream ends when its last byte has been
// taken, when the connection starts another stream, or when the connection closes; ending
// it early makes the sink refuse further bytes, so the engine stops, and joins the thread.
//
// Thread safety: take() is called by the connection's worker thread only; the producer
// thread shares the fields marked (mu_) with it under mu_, and the condition variables
// carry the waits both ways (cv_data_: bytes or the end arrived; cv_room_: bytes were taken
// or the stream is cancelled).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "storage/engine.hpp"

namespace kv::server {

class SnapshotStream {
 public:
  struct Chunk {
    storage::Status status;  // not OK: the snapshot failed (the stream is over)
    std::uint64_t offset = 0;
    std::string data;
    bool done = false;
    std::uint64_t total_bytes = 0;  // with done
    std::uint32_t crc32c = 0;       // with done
    std::uint64_t revision = 0;     // with done
  };

  // Starts the producer. `engine` must outlive the stream. `live` (may be null) counts the
  // streams in the server: incremented here, decremented by the destructor (relaxed: a
  // count that publishes nothing).
  SnapshotStream(storage::Engine& engine, std::uint64_t id, std::size_t max_buffered,
                 std::atomic<std::uint32_t>* live);
  ~SnapshotStream();  // cancels and joins the producer
  SnapshotStream(const SnapshotStream&) = delete;
  SnapshotStream& operator=(const SnapshotStream&) = delete;

  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
  // The bytes taken so far (what the next request's offset must be).
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
  // Takes up to `max_bytes` from the position on, waiting up to `wait` for at least one
  // byte or the end. May return an empty, not-done chunk when the wait ran out.
  [[nodiscard]] Chunk take(std::size_t max_bytes, std::chrono::milliseconds wait);

 private:
  void produce(storage::Engine& engine);

  const std::uint64_t id_;
  const std::size_t max_buffered_;
  std::atomic<std::uint32_t>* live_;
  std::uint64_t position_ = 0;  // worker thread only

  std::mutex mu_;
  std::condition_variable cv_data_;
  std::condition_variable cv_room_;
  std::string buffer_;          // (mu_) produced, not yet taken
  bool finished_ = false;       // (mu_) write_snapshot returned
  bool cancelled_ = false;      // (mu_) the stream is being destroyed
  storage::Status error_;       // (mu_) with finished_
  std::uint64_t produced_ = 0;  // (mu_)
  std::uint32_t crc_ = 0;       // (mu_) CRC-32C of everything produced
  std::uint64_t revision_ = 0;  // (mu_) with finished_
  std::thread producer_;        // last: starts once every field above exists
};

}  // namespace kv::server
