#include "runtime/Runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <torch/version.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>

#include "numerics/Errors.h"
#include "runtime/TaskTeam.h"

namespace jko {

void configureRuntime(int threads) {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 1 << 30);
    if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, INT_MAX);
    if (!std::getenv("MALLOC_TOP_PAD_")) mallopt(M_TOP_PAD, 256 << 20);
    try {
      at::set_num_interop_threads(1);  // throws when already set: only once per process
    } catch (const std::exception&) {
    }
  });
  if (threads < 0) throw InvalidParameter("threads", formatValue(threads), "must be >= 0 (0: LibTorch's default)");
  if (threads > 0) {
    at::set_num_threads(threads);
    setTaskTeamThreads(threads);
  }
}

namespace {

// OpenMP's thread-count functions from the runtime already loaded with
// LibTorch (libgomp from Debian, its own copy in pip wheels): linking one
// here could load a second runtime.
struct OpenMpThreads {
  int (*getMaxThreads)() = nullptr;
  void (*setNumThreads)(int) = nullptr;
};

const OpenMpThreads& openMpThreads() {
  static const OpenMpThreads functions = [] {
    OpenMpThreads f;
    f.getMaxThreads = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    f.setNumThreads = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    if (!f.getMaxThreads || !f.setNumThreads) f = OpenMpThreads{};
    return f;
  }();
  return functions;
}

}  // namespace

ScopedIntraOpThreads::ScopedIntraOpThreads(int threads) {
  const OpenMpThreads& omp = openMpThreads();
  if (threads <= 0 || !omp.setNumThreads) return;
  at::get_num_threads();  // LibTorch's lazy per-thread set-up first, so that it cannot undo ours
  previous_ = omp.getMaxThreads();
  if (previous_ != threads) omp.setNumThreads(threads);
}

void setOpenMpThreadsOfThisThread(int threads) {
  const OpenMpThreads& omp = openMpThreads();
  if (threads > 0 && omp.setNumThreads) omp.setNumThreads(threads);
}

ScopedIntraOpThreads::~ScopedIntraOpThreads() {
  if (previous_ > 0) openMpThreads().setNumThreads(previous_);
}

std::string loadedBlas() {
  std::string found = "unknown";
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libblas.so") != std::string::npos || name.find("openblas") != std::string::npos ||
            name.find("mkl") != std::string::npos) {
          char resolved[PATH_MAX];
          *static_cast<std::string*>(data) = realpath(name.c_str(), resolved) ? resolved : name;
          return 1;
        }
        return 0;
      },
      &found);
  return found;
}

std::string libtorchVersion() { return TORCH_VERSION; }

bool cudaAvailable() { return at::hasCUDA(); }

nlohmann::json describeRuntime() {
  return {{"threads", at::get_num_threads()},
          {"libtorch", libtorchVersion()},
          {"blas", loadedBlas()},
          {"cuda", cudaAvailable()}};
}

}  // namespace jko
