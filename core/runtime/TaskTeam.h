// Fork-join over a few threads for short phases of work (tens of
// microseconds each), for the fused network pass.
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

}  // namespace jko
