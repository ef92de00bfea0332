#include "snapshot_stream.hpp"

#include <spdlog/spdlog.h>

#include "proto/crc32c.hpp"

namespace kv::server {

SnapshotStream::SnapshotStream(storage::Engine& engine, std::uint64_t id, std::size_t max_buffered,
                               std::atomic<std::uint32_t>* live)
    : id_(id), max_buffered_(max_buffered), live_(live) {
  if (live_ != nullptr) live_->fetch_add(1, std::memory_order_relaxed);
  producer_ = std::thread([this, &engine] { produce(engine); });
}

SnapshotStream::~SnapshotStream() {
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
  }
  cv_room_.notify_all();
  if (producer_.joinable()) producer_.join();
  if (live_ != nullptr) live_->fetch_sub(1, std::memory_order_relaxed);
}

void SnapshotStream::produce(storage::Engine& engine) {
  storage::Status error;
  std::uint64_t revision = 0;
  try {
    auto r = engine.write_snapshot([this](std::string_view chunk) {
      std::unique_lock lock(mu_);
      cv_room_.wait(lock, [&] { return cancelled_ || buffer_.size() < max_buffered_; });
      if (cancelled_) return false;
      buffer_.append(chunk);
      produced_ += chunk.size();
      crc_ = proto::crc32c_extend(crc_, chunk);
      lock.unlock();
      cv_data_.notify_one();
      return true;
    });
    if (r.ok()) {
      revision = *r;
    } else {
      error = r.status();
    }
  } catch (const std::exception& e) {
    error = storage::Status(storage::StatusCode::kInternal,
                            std::string("snapshot failed: ") + e.what());
  }
  {
    std::lock_guard lock(mu_);
    finished_ = true;
    error_ = std::move(error);
    revision_ = revision;
    if (!cancelled_ && error_.ok()) {
      spdlog::info("snapshot stream {}: image of revision {} produced ({} bytes)", id_, revision_,
                   produced_);
    }
  }
  cv_data_.notify_one();
}

SnapshotStream::Chunk SnapshotStream::take(std::size_t max_bytes, std::chrono::milliseconds wait) {
  Chunk c;
  c.offset = position_;
  std::unique_lock lock(mu_);
  cv_data_.wait_for(lock, wait, [&] { return finished_ || !buffer_.empty(); });
  if (finished_ && !error_.ok()) {
    c.status = error_;
    return c;
  }
  const std::size_t n = std::min(max_bytes, buffer_.size());
  c.data.assign(buffer_, 0, n);
  buffer_.erase(0, n);
  position_ += n;
  if (finished_ && buffer_.empty()) {
    c.done = true;
    c.total_bytes = produced_;
    c.crc32c = crc_;
    c.revision = revision_;
  }
  lock.unlock();
  cv_room_.notify_one();
  return c;
}

}  // namespace kv::server
