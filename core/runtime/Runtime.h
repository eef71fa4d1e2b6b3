// Process-wide LibTorch settings measured to matter on these machines
// (ENVIRONMENT.md): thread counts and glibc malloc thresholds.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace jko {

/// Sets the intra-op thread count (0: leave LibTorch's choice) and, once per
/// process, the inter-op thread count and malloc thresholds. Large malloc
/// thresholds keep LibTorch's big temporaries out of mmap/munmap: training
/// ran about 5x faster here with them.
void configureRuntime(int threads);

/// The calling thread's intra-op thread count for a scope, through OpenMP's
/// per-thread setting (omp_set_num_threads on the OpenMP runtime LibTorch
/// loaded). Cheap, unlike at::set_num_threads, which rebuilds thread pools;
/// other threads keep theirs. threads <= 0, or no OpenMP runtime: no change.
class ScopedIntraOpThreads {
 public:
  explicit ScopedIntraOpThreads(int threads);
  ~ScopedIntraOpThreads();
  ScopedIntraOpThreads(const ScopedIntraOpThreads&) = delete;
  ScopedIntraOpThreads& operator=(const ScopedIntraOpThreads&) = delete;

 private:
  int previous_ = 0;
};

/// OpenMP's thread count for the calling thread only, without LibTorch's
/// per-thread set-up (for threads that never run LibTorch operations but
/// call a BLAS that reads it). threads <= 0, or no OpenMP runtime: no change.
void setOpenMpThreadsOfThisThread(int threads);

/// Threads, LibTorch version, the BLAS libblas.so.3 resolves to, CUDA.
nlohmann::json describeRuntime();

/// The BLAS the process loaded (resolved path of libblas.so.3, or "unknown").
std::string loadedBlas();

/// LibTorch version string, e.g. "1.13.1".
std::string libtorchVersion();

/// Whether LibTorch was built with CUDA and sees a device.
bool cudaAvailable();

}  // namespace jko
