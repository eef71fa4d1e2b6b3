// Fork-join over a few threads for short phases of work (tens of
// microseconds each): the fused network pass and the loops of a single
// density's step.
//
// LibTorch's OpenMP regions were measured to be slower than one thread for a
// single density, and up to 100x slower when another process holds a core:
// every region waits for every thread. Here each phase has one part per
// thread; thread i starts with part i (so that a part's data stays in one
// core's cache from phase to phase) and then takes any part nobody has
// started. The calling thread thus never waits for a helper that has not
// started, only for a part a helper is running: a descheduled helper costs
// at most one part, not a time slice per phase. Helpers spin 1 ms for the
// next phase, then sleep.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <functional>

namespace jko {

/// Threads the team uses (the calling thread included): set by
/// configureRuntime, else the machine's hardware threads; at most 4.
int taskTeamThreads();
void setTaskTeamThreads(int threads);

/// Wakes sleeping helpers ahead of work: they take ~0.1 ms to wake, so a
/// caller that knows parts are coming within a millisecond calls this first.
void wakeTaskTeam();

/// Runs part(i) for every i in [0, parts) and returns when all are done.
/// With parts == taskTeamThreads() > 1, the parts run on the team; otherwise
/// (one thread, a call from inside a part, or another thread using the team)
/// all run on the calling thread, in order. Parts must not throw.
void runInParts(int parts, const std::function<void(int)>& part);

/// Whether parallel work goes to LibTorch's threads: it has more than one,
/// or the caller is inside one of its regions.
inline bool onLibTorchThreads() { return at::get_num_threads() > 1 || at::in_parallel_region(); }

/// body(i) for every i in [0, count), in parallel: on LibTorch's threads
/// when it has more than one (or inside one of its regions), else on the
/// team (LearnedOperator::step runs LibTorch on one thread for a single
/// density). Thread p of the team takes p, p + threads, ...
template <typename Body>
void parallelFor(int64_t count, const Body& body) {
  if (onLibTorchThreads()) {
    at::parallel_for(0, count, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) body(i);
    });
    return;
  }
  const int parts = taskTeamThreads();
  runInParts(parts, [&](int part) {
    for (int64_t i = part; i < count; i += parts) body(i);
  });
}

/// The threads parallelFor runs on.
inline int parallelWorkers() { return onLibTorchThreads() ? at::get_num_threads() : taskTeamThreads(); }

}  // namespace jko
