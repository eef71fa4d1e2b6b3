// jko bench: the benchmark suite (testing/benchmarks), one JSON file.
#include <fstream>
#include <iostream>
#include <memory>

#include "Commands.h"
#include "FrameFiles.h"
#include "JkoBenchmarks.h"

namespace jko::cli {

void addBenchCommand(CLI::App& app) {
  auto o = std::make_shared<bench::BenchOptions>();
  auto out = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* bench =
      app.add_subcommand("bench", "Measure learned and reference steps, the push-forward, energies, training");
  bench->add_option("--operator", o->operatorFile,
                    "Trained 2D operator (default: an untrained one of the default size)");
  bench->add_option(
      "--operator-3d", o->operatorFile3d,
      "Trained 3D operator for the 3D steps, also at 128^3 (default: an untrained one of the 3D defaults)");
  bench->add_option("--threads", o->threads, "LibTorch threads")->capture_default_str();
  bench->add_option("--repeats", o->repeats, "Runs per figure (medians)")->capture_default_str();
  bench->add_flag("--quick", o->quick, "Small sizes only");
  bench->add_option("--device", o->device, "Where the learned steps and training run: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  bench->add_flag("--json", *json, "Print the JSON object");
  bench->add_option("--out", *out, "Write the JSON to this file");
  bench->callback([o, out, json] {
    const nlohmann::json result = bench::runBenchmarks(*o);
    if (!out->empty()) writeFileAtomically(*out, result.dump(2) + "\n");
    if (*json || out->empty()) std::cout << result.dump(2) << std::endl;
  });
}

}  // namespace jko::cli
