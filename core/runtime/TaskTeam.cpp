#include "runtime/TaskTeam.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/Runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define JKO_CPU_RELAX() _mm_pause()
#else
#define JKO_CPU_RELAX() std::this_thread::yield()
#endif

namespace jko {
namespace {

constexpr int kMaxThreads = 4;
// How long a helper spins for the next phase before it sleeps: a sleeping
// helper took ~0.1 ms to wake, a tenth of a 128^2 step.
constexpr int kSpinMicroseconds = 1000;
thread_local bool tInTeam = false;

class Team {
 public:
  explicit Team(int threads) : threads_(threads) {
    for (auto& claim : claimed_) claim.store(0);
    for (int i = 1; i < threads; ++i) helpers_.emplace_back([this, i] { helperLoop(i); });
  }
  ~Team() {
    {
      std::lock_guard<std::mutex> lock(sleepMutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : helpers_) t.join();
  }
  int threads() const { return threads_; }

  void wake() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    {
      std::lock_guard<std::mutex> lock(sleepMutex_);
      alarm_ = true;
    }
    wake_.notify_all();
  }

  // Every phase has exactly threads_ parts.
  void run(const std::function<void(int)>& part) {
    task_ = &part;
    done_.store(0, std::memory_order_relaxed);
    const uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
    generation_.store(generation, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleepMutex_);
      wake_.notify_all();
    }
    tInTeam = true;
    claimParts(0, generation);
    tInTeam = false;
    for (int spins = 0; done_.load(std::memory_order_acquire) < threads_; ++spins) {
      if (spins < (1 << 14))
        JKO_CPU_RELAX();
      else
        std::this_thread::yield();
    }
  }

 private:
  // Part p of a phase is claimed by raising claimed_[p] to the phase's
  // generation: a thread still holding an older generation cannot claim a
  // part of a newer phase, and every part of a phase is claimed once.
  bool claim(int p, uint64_t generation) {
    uint64_t seen = claimed_[p].load(std::memory_order_acquire);
    while (seen < generation)
      if (claimed_[p].compare_exchange_weak(seen, generation, std::memory_order_acq_rel)) return true;
    return false;
  }

  void claimParts(int first, uint64_t generation) {
    for (int k = 0; k < threads_; ++k) {
      const int p = (first + k) % threads_;
      if (!claim(p, generation)) continue;
      (*task_)(p);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void helperLoop(int index) {
    tInTeam = true;
    // BLAS inside parts stays on this thread. No LibTorch call here: its
    // per-thread set-up from a helper raced with the process's exit.
    setOpenMpThreadsOfThisThread(1);
    uint64_t seen = 0;
    auto newPhase = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    while (true) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
      bool found = newPhase();
      for (int spins = 1; !found; ++spins) {
        JKO_CPU_RELAX();
        found = newPhase();
        if (!found && spins % 64 == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (!found) {
        std::unique_lock<std::mutex> lock(sleepMutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return stop_ || alarm_ || newPhase(); });
        sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        if (stop_) return;
        if (alarm_ && !newPhase()) {  // woken ahead of work: spin again
          alarm_ = false;
          continue;
        }
      }
      seen = generation_.load(std::memory_order_acquire);
      claimParts(index, seen);
    }
  }

  const int threads_;
  std::vector<std::thread> helpers_;
  const std::function<void(int)>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::array<std::atomic<uint64_t>, kMaxThreads> claimed_;
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::mutex sleepMutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool alarm_ = false;  // wakeTaskTeam: work is coming
};

std::mutex gTeamMutex;  // one caller uses the team at a time
// Never destroyed: at exit the helpers sleep, and joining them from a static
// destructor would run after the libraries they use are torn down.
Team* gTeam = nullptr;
std::atomic<int> gThreads{0};

}  // namespace

int taskTeamThreads() {
  const int set = gThreads.load();
  if (set > 0) return set;
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads);
}

void setTaskTeamThreads(int threads) { gThreads.store(std::clamp(threads, 1, kMaxThreads)); }

void wakeTaskTeam() {
  std::unique_lock<std::mutex> lock(gTeamMutex, std::try_to_lock);
  if (lock.owns_lock() && gTeam) gTeam->wake();
}

void runInParts(int parts, const std::function<void(int)>& part) {
  std::unique_lock<std::mutex> lock(gTeamMutex, std::defer_lock);
  if (parts < 2 || parts != taskTeamThreads() || tInTeam || !lock.try_lock()) {
    for (int i = 0; i < parts; ++i) part(i);
    return;
  }
  if (!gTeam || gTeam->threads() != parts) {
    delete gTeam;
    gTeam = new Team(parts);
  }
  gTeam->run(part);
}

}  // namespace jko
