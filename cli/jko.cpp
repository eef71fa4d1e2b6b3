// jko: the command-line face of the engine (evaluation against exact
// solutions, training, rollouts, benchmarks), usable without ParaView.
#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "Commands.h"
#include "numerics/Errors.h"
#include "parallel/MpiCommunicator.h"

int main(int argc, char** argv) {
  // Under mpirun, MPI for the whole run (`jko rollout --solver reference`
  // splits its steps over the ranks); otherwise nothing.
  jko::MpiSession mpi(&argc, &argv);
  CLI::App app{"Neural JKO Flow: Wasserstein gradient flows with a learned JKO operator"};
  app.require_subcommand(1);
  jko::cli::addEvalCommand(app);
  jko::cli::addCompareCommand(app);
  jko::cli::addRolloutCommand(app);
  jko::cli::addTrainCommand(app);
  jko::cli::addConfigureCommand(app);
#ifdef JKO_WITH_BENCHMARKS
  jko::cli::addBenchCommand(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const jko::Error& e) {
    std::cerr << "jko: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "jko: LibTorch error: " << e.what_without_backtrace() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "jko: error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
