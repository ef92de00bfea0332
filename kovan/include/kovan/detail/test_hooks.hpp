// kovan/detail/test_hooks.hpp — hooks compiled only into the `kovan_testhooks` library
// (KOVAN_TEST_HOOKS), which tests link to drive the slow path deterministically. The
// release library `kovan` has none of them.
#pragma once

#include <atomic>
#include <cstdint>

namespace kovan::detail::test {
#ifdef KOVAN_TEST_HOOKS
// Fast-path tries of a protected load (0 sends every load to the helped slow path).
extern std::atomic<int> fast_path_tries;
// Called by a slow-path load right after it published its request.
extern std::atomic<void (*)()> on_request_published;
// Called by a helper that has re-checked a request and is about to read its source.
extern std::atomic<void (*)()> on_helper_reading;
// Called by ~Atomic when it finds a helper reading it, before it waits for that helper.
extern std::atomic<void (*)()> on_destroy_wait;
// Blocks held by every thread's node cache (pushes minus pops; see runtime.hpp).
extern std::atomic<std::int64_t> cached_blocks;
// The calling thread's main reservation era, and the global era.
std::uint64_t slot_era_of_current_thread() noexcept;
std::uint64_t global_era() noexcept;
// Called by a helper right before it walks its helper slot's list.
extern std::atomic<void (*)()> on_help_walk;
// Era advances entered while the thread was inside help() (must stay 0).
extern std::atomic<std::uint64_t> nested_advances;
// The largest batch (nodes, padding included) attached since the last reset to 0.
extern std::atomic<std::uint64_t> largest_batch;
#endif
}  // namespace kovan::detail::test
