#include "SplitRollout.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <tuple>

#include "FrameFiles.h"
#include "numerics/Errors.h"
#include "numerics/StepCertificate.h"
#include "operator/AutoSolver.h"
#include "parallel/DistributedLinearizedStep.h"
#include "parallel/DistributedOperatorSolver.h"
#include "parallel/DistributedReferenceSolver.h"

namespace jko::cli {
namespace {

double peakResidentMegabytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return std::nan("");
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Every rank throws when `work` failed on any (agreeOnFailure).
void agreed(const Communicator& communicator, const std::string& what, const std::function<void()>& work) {
  agreeOnFailure(communicator, work, [&](int rank) {
    return "rank " + std::to_string(rank) + " could not " + what + " (its message says why)";
  });
}

}  // namespace

void runSplitRollout(SplitRolloutRequest request, std::shared_ptr<const Communicator> communicator) {
  const Grid grid = request.grid;
  const SlabDecomposition slabs(grid, communicator);
  const bool root = slabs.rank() == 0;
  ReferenceSolverOptions options;
  options.maxIterations = request.maxIterations;
  options.completeGridScale = request.completeGridScale;
  const auto split = std::make_shared<const DistributedJkoObjective>(request.energy, request.tau, slabs);
  const DistributedReferenceSolver solver(split, options);
  const DistributedJkoObjective& objective = *split;
  const bool reference = request.solver == "reference";
  std::unique_ptr<DistributedLinearizedStep> linearized;
  std::unique_ptr<DistributedOperatorSolver> learned;  // learned, refine, auto
  if (request.solver == "linearized")
    linearized = std::make_unique<DistributedLinearizedStep>(split, request.linearized);
  if (request.learned) {
    // Learned and refine solve the operator's problem or one the step's
    // symmetries relate to it (anything else is refused, as on one
    // process); Auto uses the operator as a first guess.
    const bool automatic = request.solver == "auto";
    const std::vector<std::string> warnings =
        request.learned->checkCompatible(grid, automatic ? nullptr : &request.energy, automatic ? 0 : request.tau);
    AutoSolverOptions autoOptions;
    autoOptions.threshold = request.threshold;
    autoOptions.reference.maxIterations = request.maxIterations;
    ReferenceSolverOptions refine;
    refine.maxIterations = request.refineIterations;
    learned = std::make_unique<DistributedOperatorSolver>(
        request.learned, split, OperatorSolver::modeFromString(request.solver), autoOptions, refine);
    if (root)
      for (const std::string& warning : warnings) std::cerr << "jko: warning: " << warning << "\n";
  }

  // This rank's planes: read from the file alone, or cut from the density
  // every rank generated; then the checks and the rescaling over the ranks
  // (the first step's prepare() refuses a bad density on every rank alike).
  const SlabDecomposition::Range own = slabs.owned();
  at::Tensor rho = request.file ? request.file->readPlanes(own.lo, own.hi)
                                : slabs.own(request.initial.to(at::kDouble).unsqueeze(0))[0];
  rho = rho.to(at::kDouble).contiguous();
  request.initial = at::Tensor();  // each rank keeps its slab only
  request.file.reset();
  if (request.mass > 0) {
    const double mass = communicator->sum(rho.sum().item<double>()) * grid.cellVolume();
    if (mass > 0 && std::isfinite(mass)) rho = rho * (request.mass / mass);
  }
  if (request.peak > 0) {
    const double peak = communicator->max(rho.max().item<double>());
    if (peak > 0 && std::isfinite(peak)) rho = rho * (request.peak / peak);
  }
  auto wholeEnergy = [&](const at::Tensor& owned) { return objective.energy(owned); };
  auto wholeMass = [&](const at::Tensor& owned) {
    return slabs.communicator().sum(owned.sum().item<double>()) * grid.cellVolume();
  };
  // Frames are written by pieces: each rank its planes and the next rank's
  // first (the pieces share their boundary planes, as ParaView's parallel
  // writers write them) into prefix_0007/prefix_0007_RANK.vti, rank 0 the
  // .pvti that puts them together and the .pvd. No frame is gathered.
  std::unique_ptr<FrameSeries> series;
  if (request.writeEvery > 0)
    agreed(*communicator, "create the output folder", [&] {
      if (root) series = std::make_unique<FrameSeries>(request.out, request.prefix, grid);
    });
  const int64_t n0 = grid.n[0];
  auto pieceOf = [&](int r) {
    const SlabDecomposition::Range own = slabs.owned(r);
    return SlabDecomposition::Range{own.lo, std::min(own.hi + 1, n0)};
  };
  auto write = [&](int index, const at::Tensor& density, const at::Tensor& displacement) {
    if (request.writeEvery <= 0) return;
    const SlabDecomposition::Range piece = pieceOf(slabs.rank()), window = slabs.window(1);
    const int64_t skip = piece.lo - window.lo;
    const Frame frame{index * request.tau, slabs.withHalo(density.unsqueeze(0), 1).narrow(1, skip, piece.planes())[0],
                      slabs.withHalo(displacement.unsqueeze(0), 1, 2).narrow(2, skip, piece.planes())[0] / request.tau};
    const std::string stem = frameStem(request.prefix, index);
    auto pieceFile = [&](int r) { return stem + "/" + stem + "_" + std::to_string(r) + ".vti"; };
    agreed(*communicator, "write its piece of frame " + std::to_string(index), [&] {
      std::filesystem::create_directories(std::filesystem::path(request.out) / stem);
      writeImagePiece((std::filesystem::path(request.out) / pieceFile(slabs.rank())).string(), grid, piece.lo, frame);
    });
    agreed(*communicator, "write the index of frame " + std::to_string(index), [&] {
      if (!series) return;
      std::vector<ImagePiece> pieces;
      for (int r = 0; r < slabs.ranks(); ++r) pieces.push_back({pieceOf(r).lo, pieceOf(r).planes(), pieceFile(r)});
      writePieceIndex((std::filesystem::path(request.out) / (stem + ".pvti")).string(), grid, pieces, true);
      series->addFile(frame.time, stem + ".pvti");
    });
  };

  const double mass0 = wholeMass(rho);
  std::vector<double> energies{wholeEnergy(rho)}, stepMs, certificateMs;
  std::vector<int> iterations, unconverged, underResolved, completionIterations, gridScaleFrames;
  double defectMax = 0;
  nlohmann::json certificates = nlohmann::json::array(), learnedCertificates = nlohmann::json::array();
  std::vector<int> refineIterations;
  std::vector<bool> refinedFrames;
  std::vector<std::string> refineReasons;
  RefinementTally tally;
  double largestCertificate = 0, spreadMax = 0;
  double massDrift = 0, minimum = slabs.communicator().max(-rho.min().item<double>());
  minimum = -minimum;
  at::Tensor warm, previous = rho;
  const int K = request.steps;
  const auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < K; ++k) {
    const auto stepStart = std::chrono::steady_clock::now();
    const DistributedJkoObjective::State state = objective.prepare(rho);
    ReferenceStep step;
    if (reference) {
      step = solver.step(state, warm);
      iterations.push_back(step.iterations);
    } else if (linearized) {
      std::tie(step.next, step.displacement) = linearized->step(state);
      step.converged = true;
    }
    // The step's certificate, as the serial rollout gives it: a step stopped
    // at the iteration cap, or one that spreads mass apart, is reported.
    // Timed with the step, as the serial rollout times it, and apart (the
    // operator's solvers certify their own steps).
    const auto certificateStart = std::chrono::steady_clock::now();
    StepCertificate certificate;
    double learnedCertificateMs = -1;
    if (learned) {
      const CertifiedStep certified = learned->step(state, {}, energies.back());
      step.next = certified.next;
      step.displacement = certified.displacement;
      // Auto's steps from u = 0 stopped at the iteration cap are named by
      // the tally below, as one process names them.
      step.converged = true;
      certificate = certified.certificate;
      learnedCertificateMs = certified.certificateMs;
      // A frame that fails its descent guard or its certificate is named
      // (learned), or refined and counted (refine, auto), as the serial
      // rollout does.
      tally.add(certified);
      refinedFrames.push_back(certified.refined);
      refineIterations.push_back(certified.iterations);
      refineReasons.push_back(toString(certified.reason));
      learnedCertificates.push_back(certified.refined ? certified.learned.toJson() : nlohmann::json());
    } else {
      certificate = objective.certify(state, step.displacement, energies.back());
    }
    // The frame as it is shown, as on one process: the other solvers'
    // frames are completed after their steps (the reference solver completes
    // its own), else checked.
    const FinishedFrame shown =
        reference ? finishFrame(objective, step)
                  : finishFrame(objective, state, step.next, energies.back(), request.completeGridScale);
    step.next = shown.density;
    certificate.gridScaleDefect = shown.gridScaleDefect;
    if (request.completeGridScale) completionIterations.push_back(shown.completionIterations);
    if (shown.keepsGridScaleDetail()) {
      gridScaleFrames.push_back(k + 1);
      defectMax = std::max(defectMax, certificate.gridScaleDefect);
    }
    const auto stepEnd = std::chrono::steady_clock::now();
    stepMs.push_back(std::chrono::duration<double, std::milli>(stepEnd - stepStart).count());
    certificateMs.push_back(learnedCertificateMs >= 0
                                ? learnedCertificateMs
                                : std::chrono::duration<double, std::milli>(stepEnd - certificateStart).count());
    certificates.push_back(certificate.toJson());
    if (!step.converged) {
      unconverged.push_back(k + 1);
      if (std::isfinite(certificate.l1ErrorEstimate))
        largestCertificate = std::max(largestCertificate, certificate.l1ErrorEstimate);
    }
    if (certificate.underResolved()) underResolved.push_back(k + 1);
    if (std::isfinite(certificate.spreadMassFraction)) spreadMax = std::max(spreadMax, certificate.spreadMassFraction);
    if (k % std::max(1, request.writeEvery) == 0) write(k, rho, step.displacement);
    warm = step.displacement;
    rho = step.next;
    energies.push_back(wholeEnergy(rho));
    massDrift = std::max(massDrift, std::abs(wholeMass(rho) - mass0) / mass0);
    minimum = std::min(minimum, -slabs.communicator().max(-rho.min().item<double>()));
    if (root && !request.json) std::cerr << "\rstep " << k + 1 << " of " << K << "        " << std::flush;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (K > 0) write(K, rho, warm);
  std::string pvd;
  if (request.writeEvery > 0)
    agreed(*communicator, "write the frames' collection", [&] {
      if (series) pvd = series->finish();
    });

  // Each rank's planes and peak memory, in rank order.
  const int ranks = slabs.ranks();
  std::vector<double> peaks(ranks, 0.0), planes(ranks, 0.0);
  peaks[slabs.rank()] = peakResidentMegabytes();
  planes[slabs.rank()] = static_cast<double>(slabs.owned().planes());
  slabs.communicator().sum(peaks.data(), ranks);
  slabs.communicator().sum(planes.data(), ranks);
  if (!root) return;
  if (!request.json) std::cerr << "\n";
  std::vector<std::string> warnings;
  if (!underResolved.empty()) warnings.push_back(underResolvedWarning(underResolved, K, spreadMax));
  if (!gridScaleFrames.empty()) warnings.push_back(gridScaleWarning(gridScaleFrames, K, defectMax));
  if (!unconverged.empty())
    warnings.push_back(cappedReferenceWarning(unconverged, K, request.maxIterations, largestCertificate));
  for (const std::string& warning : warnings) std::cerr << "jko: warning: " << warning << "\n";
  if (learned)
    std::cerr << "jko: " << request.solver << ": " << tally.describe(request.threshold, request.solver != "learned")
              << "\n";
  std::vector<double> sorted = stepMs;
  std::sort(sorted.begin(), sorted.end());
  nlohmann::json result = {{"solver", request.solver},
                           {"ranks", ranks},
                           {"split_axis", 0},
                           {"planes_per_rank", planes},
                           {"peak_rss_mb_per_rank", peaks},
                           {"energy", request.energy.describe()},
                           {"grid", std::vector<int64_t>(grid.n.begin(), grid.n.begin() + grid.dim)},
                           {"tau", request.tau},
                           {"steps", K},
                           {"steps_done", K},
                           {"seconds", seconds},
                           {"ms_per_step", K ? 1000 * seconds / K : 0.0},
                           {"step_ms", stepMs},
                           {"step_ms_median", sorted.empty() ? 0.0 : sorted[sorted.size() / 2]},
                           {"certificate_ms", certificateMs},
                           {"iterations", iterations},
                           {"unconverged_frames", unconverged},
                           {"certificate", certificates},
                           {"under_resolved_frames", underResolved},
                           {"spread_mass_fraction_max", spreadMax},
                           {"grid_scale_frames", gridScaleFrames},
                           {"warnings", warnings},
                           {"min_density", minimum},
                           {"mass_initial", mass0},
                           {"mass_drift_max", massDrift},
                           {"energy_per_frame", energies},
                           {"frames_written", series ? series->count() : 0},
                           {"pvd", pvd}};
  if (request.completeGridScale) result["grid_scale_completion_iterations"] = completionIterations;
  if (learned) {
    result["gauss_newton"] = request.learned->gaussNewton();
    result["further_newton"] = request.learned->furtherNewton();
    result["certificate_threshold"] = request.threshold;
    result["refinement"] = tally.toJson();
    result["refined"] = refinedFrames;
    result["refine_iterations"] = refineIterations;
    result["refine_reason"] = refineReasons;
    if (request.solver != "learned") result["learned_certificate"] = learnedCertificates;
  }
  if (linearized) result["gauss_newton"] = request.linearized.corrections;
  if (request.json) {
    std::cout << result.dump() << std::endl;
    return;
  }
  if (series)
    std::cout << "wrote " << series->count() << " frames of " << request.energy.describe() << " (" << request.solver
              << ", " << ranks << " ranks) on a " << grid.describe() << " to " << pvd << "\n";
  std::cout << std::setprecision(3) << K << " steps on " << ranks << " ranks, " << result["ms_per_step"].get<double>()
            << " ms per step, mass drift " << massDrift << ", energy " << energies.front() << " -> " << energies.back()
            << "\n";
}

}  // namespace jko::cli
