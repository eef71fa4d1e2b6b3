#include "numerics/ReferenceSolver.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <deque>

#include "numerics/Errors.h"

namespace jko {
ReferenceSolver::ReferenceSolver(std::shared_ptr<const JkoObjective> objective, ReferenceSolverOptions options)
    : objective_(std::move(objective)), options_(options) {
  validateOptions(options_);
}

void ReferenceSolver::validateOptions(const ReferenceSolverOptions& options) {
  if (options.maxIterations < 1)
    throw InvalidParameter("max iterations", formatValue(options.maxIterations), "must be >= 1");
  if (options.history < 1) throw InvalidParameter("L-BFGS history", formatValue(options.history), "must be >= 1");
  if (!(options.objectiveTolerance >= 0) || !(options.gradientTolerance >= 0))
    throw InvalidParameter("solver tolerance", formatValue(options.objectiveTolerance), "must be >= 0");
}

LbfgsOutcome minimiseWithMetricLbfgs(const LbfgsProblem& problem, at::Tensor x, const ReferenceSolverOptions& options,
                                     const ProgressCallback& progress) {
  const auto& evaluate = problem.evaluate;
  const auto& innerProduct = problem.dot;
  const at::Tensor& H0 = problem.inverseMetric;
  LbfgsOutcome result;
  result.initialObjective = problem.initialObjective;
  LbfgsEvaluation current = evaluate(x);
  result.evaluations = 1;
  if (current.value > result.initialObjective) {  // a warm start worse than staying put
    x.zero_();
    current = evaluate(x);
    ++result.evaluations;
  }

  std::deque<at::Tensor> S, Y;
  std::deque<double> inverseCurvature;
  std::deque<double> history{current.value};
  double gamma = 1;
  int iteration = 0;
  auto measures = [&](double& objectiveChange, double& gradientMeasure) {
    const double decrease = std::max(result.initialObjective - current.value, 1e-300);
    const size_t back = std::min<size_t>(history.size() - 1, options.window);
    objectiveChange = history.size() > static_cast<size_t>(options.window)
                          ? (history[history.size() - 1 - back] - current.value) / decrease
                          : std::numeric_limits<double>::infinity();
    gradientMeasure = innerProduct(current.gradient, H0 * current.gradient) / decrease;
  };

  for (; iteration < options.maxIterations; ++iteration) {
    double objectiveChange, gradientMeasure;
    measures(objectiveChange, gradientMeasure);
    if (objectiveChange <= options.objectiveTolerance && gradientMeasure <= options.gradientTolerance) {
      result.converged = true;
      break;
    }
    if (problem.accept && problem.accept(x, current.gradient)) {
      result.accepted = true;
      break;
    }
    if (progress && options.progressInterval > 0 && iteration % options.progressInterval == 0) {
      ProgressEvent event;
      event.stage = "reference iterations";
      event.fraction = static_cast<double>(iteration) / options.maxIterations;
      event.loss = current.value;
      event.message = "L-BFGS iteration " + std::to_string(iteration);
      reportProgress(progress, event);
    }

    // Two-loop recursion with H0 scaled by gamma.
    at::Tensor q = current.gradient.clone();
    std::vector<double> alpha(S.size());
    for (int i = static_cast<int>(S.size()) - 1; i >= 0; --i) {
      alpha[i] = inverseCurvature[i] * innerProduct(S[i], q);
      q.sub_(Y[i], alpha[i]);
    }
    at::Tensor direction = (gamma * H0) * q;
    for (size_t i = 0; i < S.size(); ++i) {
      const double beta = inverseCurvature[i] * innerProduct(Y[i], direction);
      direction.add_(S[i], alpha[i] - beta);
    }
    direction.neg_();
    double slope = innerProduct(current.gradient, direction);
    if (!(slope < 0)) {  // not a descent direction: restart from the metric
      S.clear(), Y.clear(), inverseCurvature.clear();
      direction = -(gamma * H0) * current.gradient;
      slope = innerProduct(current.gradient, direction);
    }

    // Backtracking Armijo line search; quasi-Newton steps are usually accepted at 1.
    double step = 1;
    LbfgsEvaluation trial;
    bool accepted = false;
    for (int attempt = 0; attempt < 40; ++attempt) {
      trial = evaluate(x + step * direction);
      ++result.evaluations;
      if (std::isfinite(trial.value) && trial.value <= current.value + 1e-4 * step * slope) {
        accepted = true;
        break;
      }
      // Minimiser of the quadratic through f(0), f'(0), f(step), kept in [0.1, 0.5] step.
      const double curvature = trial.value - current.value - step * slope;
      double next = std::isfinite(trial.value) && curvature > 0 ? -slope * step * step / (2 * curvature) : 0.5 * step;
      step = std::min(std::max(next, 0.1 * step), 0.5 * step);
    }
    if (!accepted) break;  // no decrease left at machine precision

    const at::Tensor s = step * direction;
    const at::Tensor y = trial.gradient - current.gradient;
    const double sy = innerProduct(s, y);
    x.add_(s);
    current = std::move(trial);
    history.push_back(current.value);
    if (history.size() > static_cast<size_t>(options.window) + 1) history.pop_front();
    if (sy > 1e-16 * std::sqrt(innerProduct(s, s) * innerProduct(y, y))) {
      S.push_back(s);
      Y.push_back(y);
      inverseCurvature.push_back(1.0 / sy);
      if (static_cast<int>(S.size()) > options.history) S.pop_front(), Y.pop_front(), inverseCurvature.pop_front();
      gamma = sy / innerProduct(y, H0 * y);
    }
  }
  measures(result.objectiveChange, result.gradientMeasure);
  if (!result.converged)
    result.converged =
        result.objectiveChange <= options.objectiveTolerance && result.gradientMeasure <= options.gradientTolerance;
  result.iterations = iteration;

  result.x = x;
  result.value = current.value;
  return result;
}

ReferenceStep ReferenceSolver::step(const at::Tensor& rho, const at::Tensor& initialDisplacement,
                                    const ProgressCallback& progress) const {
  // The solver differentiates J, whatever the caller's grad mode.
  at::AutoGradMode gradMode(true);
  const JkoObjective& J = *objective_;
  const Grid& grid = J.grid();
  const JkoState state = J.prepare(rho);
  std::vector<int64_t> uShape{1, grid.dim};
  for (int a = 0; a < grid.dim; ++a) uShape.push_back(grid.n[a]);

  LbfgsProblem problem;
  problem.evaluate = [&](const at::Tensor& x) {
    at::Tensor u = x.detach().view(uShape).requires_grad_(true);
    const JkoTerms terms = J.evaluate(state, u);
    const at::Tensor total = terms.objective.sum();
    LbfgsEvaluation e;
    e.value = total.item<double>();
    e.gradient = torch::autograd::grad({total}, {u})[0].reshape({-1});
    return e;
  };
  problem.dot = [](const at::Tensor& a, const at::Tensor& b) { return at::dot(a, b).item<double>(); };
  // H0 = diag(tau / (w_i |h|)): the inverse Hessian of the transport term.
  const at::Tensor w = state.weights.reshape({1, 1, -1}).expand({1, grid.dim, grid.numNodes()}).reshape({-1});
  problem.inverseMetric = J.tau() / (grid.cellVolume() * w.clamp_min(1e-12 * w.max().item<double>()));
  if (options_.accept)
    problem.accept = [&](const at::Tensor& x, const at::Tensor& g) {
      return options_.accept(x.view(uShape), g.view(uShape));
    };
  {
    at::NoGradGuard noGrad;
    problem.initialObjective = J.evaluate(state, at::zeros(uShape, at::kDouble)).objective.item<double>();
  }
  // With J(0) = inf no decrease can be measured and every line search fails:
  // say why instead of returning an unmoved density.
  if (!std::isfinite(problem.initialObjective))
    throw InvalidDensity("the energy of the density is " + formatValue(problem.initialObjective) +
                         ": its values are too large for this energy (overflow); rescale the density or the "
                         "energy's parameters");
  const at::Tensor x0 = initialDisplacement.defined() ? initialDisplacement.to(at::kDouble).reshape({-1}).clone()
                                                      : at::zeros({grid.dim * grid.numNodes()}, at::kDouble);
  const LbfgsOutcome outcome = minimiseWithMetricLbfgs(problem, x0, options_, progress);

  ReferenceStep result = outcome.step();
  at::NoGradGuard noGrad;
  const at::Tensor u = outcome.x.view(uShape);
  const JkoTerms terms = J.evaluate(state, u);
  result.objective = terms.objective.item<double>();
  result.energy = terms.energy.item<double>();
  result.transport = terms.transport.item<double>();
  const GridScaleCompletion completion(J.energy().spec(), grid, J.tau());
  FrameFinish finish;
  finish.nextDensity = [&](const at::Tensor& deposited) { return J.nextDensity(state, deposited); };
  finish.energy = [&](const at::Tensor& rho) { return J.energy()(rho).sum().item<double>(); };
  finish.internalEnergy = [&](const at::Tensor& rho) { return J.energy().parts(rho).internal.sum().item<double>(); };
  result.next = completedFrame(terms.deposited, result.initialObjective, options_.completeGridScale, completion,
                               GridScaleCompletion::wholeGrid(), finish, result)[0];
  result.displacement = u[0].clone();
  return result;
}

at::Tensor completedFrame(const at::Tensor& deposited, double initialEnergy, bool complete,
                          const GridScaleCompletion& completion, const GridScaleCompletion::Window& window,
                          const FrameFinish& finish, ReferenceStep& step) {
  const at::Tensor frame = finish.nextDensity(deposited);
  if (!complete || !completion.active()) return frame;
  const GridScaleCompletion::Outcome outcome = completion.complete(frame, window);
  step.completionIterations = outcome.iterations;
  const double size = window.sum(frame.abs().sum().item<double>());
  step.gridScaleDefect = size > 0 ? window.sum((outcome.next - frame).abs().sum().item<double>()) / size : 0.0;
  // A solve that stopped at its iteration cap is not kept either: the frame
  // is then the map-form step's, as with the completion off (and the step
  // says it was not completed).
  if (outcome.iterations == 0 || !outcome.converged) return frame;
  // The limiter spreads what the completion's higher differences pushed
  // below zero at a sharp edge; it is not a monotone scheme, so a
  // completion that raises U, or E above E(rho_k), is not kept.
  const at::Tensor completed = finish.nextDensity(outcome.next);
  if (!(finish.internalEnergy(completed) <= finish.internalEnergy(frame) + 1e-14 * std::abs(initialEnergy)) ||
      !(finish.energy(completed) <= initialEnergy))
    return frame;
  step.completed = true;
  return completed;
}

at::Tensor completeFrame(const JkoObjective& J, const at::Tensor& rho, const at::Tensor& next, double energyOfRho,
                         ReferenceStep& step) {
  at::NoGradGuard noGrad;
  const GridScaleCompletion completion(J.energy().spec(), J.grid(), J.tau());
  if (!completion.active()) return next;
  const JkoState state = J.prepare(rho);
  FrameFinish finish;
  // The frame passed the limiter already: again it changes nothing, and it
  // spreads what the completion pushes below zero.
  finish.nextDensity = [&](const at::Tensor& deposited) { return J.nextDensity(state, deposited); };
  finish.energy = [&](const at::Tensor& x) { return J.energy()(x).sum().item<double>(); };
  finish.internalEnergy = [&](const at::Tensor& x) { return J.energy().parts(x).internal.sum().item<double>(); };
  const double initialEnergy = std::isfinite(energyOfRho) ? energyOfRho : finish.energy(rho.unsqueeze(0));
  const at::Tensor cpu = next.to(at::kCPU, at::kDouble).unsqueeze(0).contiguous();
  return completedFrame(cpu, initialEnergy, true, completion, GridScaleCompletion::wholeGrid(), finish, step)[0].to(
      next.options());
}

FinishedFrame finishedFrame(const ReferenceStep& solved, const std::function<double(const at::Tensor&)>& check) {
  FinishedFrame shown;
  shown.density = solved.next;
  shown.completed = solved.completed;
  shown.completionIterations = solved.completed ? solved.completionIterations : 0;
  shown.gridScaleDefect = std::isfinite(solved.gridScaleDefect) ? solved.gridScaleDefect : check(solved.next);
  return shown;
}

FinishedFrame finishFrame(const StepCertifier& certifier, const ReferenceStep& solved) {
  return finishedFrame(solved, [&](const at::Tensor& frame) { return certifier.gridScaleDefect(frame); });
}

FinishedFrame finishFrame(const StepCertifier& certifier, const at::Tensor& rho, const at::Tensor& next,
                          double energyOfRho, bool complete) {
  ReferenceStep record;
  record.next = complete ? completeFrame(certifier.objective(), rho, next, energyOfRho, record) : next;
  return finishFrame(certifier, record);
}

std::vector<ReferenceStep> warmStartedRollout(
    const std::function<ReferenceStep(const at::Tensor&, const at::Tensor&)>& step, const at::Tensor& rho0, int steps,
    const ProgressCallback& progress) {
  if (steps < 0) throw InvalidParameter("steps", formatValue(steps), "must be >= 0");
  std::vector<ReferenceStep> trajectory;
  at::Tensor rho = rho0, warmStart;
  for (int k = 0; k < steps; ++k) {
    trajectory.push_back(step(rho, warmStart));
    rho = trajectory.back().next;
    warmStart = trajectory.back().displacement;
    ProgressEvent event;
    event.stage = "reference rollout";
    event.step = k + 1;
    event.fraction = static_cast<double>(k + 1) / steps;
    event.message = "reference step " + std::to_string(k + 1) + " of " + std::to_string(steps) + ", " +
                    std::to_string(trajectory.back().iterations) + " L-BFGS iterations";
    reportProgress(progress, event);
  }
  return trajectory;
}

std::vector<ReferenceStep> ReferenceSolver::rollout(const at::Tensor& rho0, int steps,
                                                    const ProgressCallback& progress) const {
  return warmStartedRollout([&](const at::Tensor& rho, const at::Tensor& warm) { return step(rho, warm); }, rho0, steps,
                            progress);
}

}  // namespace jko
