// Writes a deliberately broken copy of an operator file for the plugin's
// tests (TestAutoSolver.py): every network parameter whose name contains
// MATCH (all of them without it) multiplied by FACTOR. The copy loads like
// any operator file; its steps are what the descent guard and the
// certificate must catch.
//
//   jko_scale_operator IN.jko OUT.jko FACTOR [MATCH]
//   jko_scale_operator --resolvent-base IN.jko OUT.jko FACTOR
//
// The second form keeps IN's problem (energy, tau, grid, ranges) but puts
// the network on the resolvent base, whose gate on the explicit velocity is
// unbounded, with fresh weights (seed 7) times FACTOR and no Gauss-Newton
// corrections: an operator on the linearised base gates a stable step and
// scaling its weights cannot make it raise the step's objective, and the
// corrections would repair the map (they never leave it above staying put).
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "operator/LearnedOperator.h"
#include "operator/VelocityNetwork.h"

int main(int argc, char** argv) {
  const bool resolventBase = argc > 1 && std::string(argv[1]) == "--resolvent-base";
  if (resolventBase) ++argv, --argc;
  if (argc < 4 || argc > 5 || (resolventBase && argc != 4)) {
    std::cerr << "usage: jko_scale_operator IN.jko OUT.jko FACTOR [MATCH]\n"
                 "       jko_scale_operator --resolvent-base IN.jko OUT.jko FACTOR\n";
    return 2;
  }
  try {
    char* end = nullptr;
    const double factor = std::strtod(argv[3], &end);
    if (end == argv[3] || *end) throw std::runtime_error(std::string("FACTOR is not a number: ") + argv[3]);
    const std::string match = argc == 5 ? argv[4] : "";
    auto op = jko::LearnedOperator::load(argv[1]);
    if (resolventBase) {
      jko::OperatorMetadata metadata = op->metadata();
      metadata.network.base = "resolvent";
      metadata.network.gaussNewton = 0;
      op = std::make_shared<jko::LearnedOperator>(
          metadata,
          jko::VelocityNetwork::create(metadata.network, metadata.dim, jko::LearnedOperator::inputChannels(metadata),
                                       jko::LearnedOperator::outputChannels(metadata), 7));
    }
    std::vector<std::pair<std::string, at::Tensor>> values;
    int scaled = 0;
    for (const auto& [name, value] : op->network().namedParameters()) {
      const bool chosen = name.find(match) != std::string::npos;
      values.emplace_back(name, chosen ? value * factor : value.clone());
      scaled += chosen;
    }
    if (scaled == 0) throw std::runtime_error("no parameter name contains '" + match + "'");
    op->network().loadParameters(values);
    op->save(argv[2]);
    std::cout << "scaled " << scaled << " of " << values.size() << " parameters by " << factor << ": " << argv[2]
              << "\n";
  } catch (const std::exception& error) {
    std::cerr << "jko_scale_operator: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
