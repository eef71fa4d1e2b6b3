// The benchmark suite behind `jko bench --json`: learned and reference steps,
// the push-forward and each energy alone, training throughput, peak memory,
// and an estimate of the machine's floor for the learned step. Every figure
// is the median of repeated runs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace jko::bench {

struct BenchOptions {
  std::string operatorFile;  ///< trained 2D operator (empty: an untrained default-size one, same cost)
  /// trained 3D operator for the 3D steps (empty: an untrained one of the 3D defaults)
  std::string operatorFile3d;
  int threads = 2;
  int repeats = 15;    ///< runs per figure (medians)
  bool quick = false;  ///< small sizes only (for a smoke test)
  std::string device = "cpu";
};

nlohmann::json runBenchmarks(const BenchOptions& options);

}  // namespace jko::bench
