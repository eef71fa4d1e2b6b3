#include "parallel/DistributedReferenceSolver.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <sstream>

#include "numerics/Errors.h"
#include "numerics/JkoObjective.h"
#include "parallel/SlabConvolution.h"

namespace jko {
namespace {

// Planes of halo for the pre-filter: S^-1 of tridiag(1/8, 3/4, 1/8) decays
// like |3 - 2 sqrt 2|^k = 0.1716^k, 4e-19 at k = 24.
constexpr int64_t kFilterHalo = 24;
// Planes of halo for the limiter and the clip: each is two 3^d box sums.
constexpr int64_t kBoxHalo = 2;

// Pads dimension `axis` of t with zeros: `before` planes ahead, `after` behind.
at::Tensor padPlanes(const at::Tensor& t, int axis, int64_t before, int64_t after) {
  if (before == 0 && after == 0) return t;
  std::vector<int64_t> pad(2 * (t.dim() - axis), 0);
  pad[pad.size() - 2] = before;
  pad[pad.size() - 1] = after;
  return at::constant_pad_nd(t, pad, 0.0);
}

// The local part of the energy on the owned planes: the whole grid's
// internal energy and potential restricted to them (the potential's centre
// fixed to the whole box's, given values sliced). The interaction is added
// over all ranks: the quadratic one from the density's moments, the others
// by the split convolution.
EnergySpec ownedSpec(EnergySpec spec, const SlabDecomposition& slabs) {
  const Grid& grid = slabs.grid();
  if (spec.potential == PotentialKind::Values) {
    // Given whole (every rank cuts its planes) or as this rank's planes
    // already (a reader of slabs); one plane per rank never fits both.
    const at::Tensor values = spec.potentialValues.to(at::kDouble);
    const bool owned =
        values.dim() == grid.dim && values.size(0) == slabs.owned().planes() && values.size(0) != grid.n[0];
    spec.potentialValues = owned ? values.contiguous() : slabs.own(values.unsqueeze(0))[0];
  } else {
    for (int a = 0; a < grid.dim; ++a)
      if (std::isnan(spec.potentialCentre[a])) spec.potentialCentre[a] = 0.5 * (grid.boxLower(a) + grid.boxUpper(a));
  }
  return spec;
}

}  // namespace

DistributedJkoObjective::DistributedJkoObjective(const EnergySpec& spec, double tau, SlabDecomposition slabs)
    : slabs_(std::move(slabs)), spec_(spec), tau_(tau) {
  if (!(tau > 0) || !std::isfinite(tau))
    throw InvalidParameter("tau", formatValue(tau), "the time step must be a positive finite number");
  spec_.validate(slabs_.grid().dim);
  const EnergySpec owned = ownedSpec(spec_, slabs_);
  const Grid slab = slabs_.slab(slabs_.owned());
  // A potential given by values has its lambda from its second differences:
  // the least over the slabs, exact only if every slab's is.
  EnergySpec local = owned;
  local.kernel = KernelKind::None;
  ownedEnergy_ = std::make_unique<Energy>(local, slab);
  convexity_ = energyConvexity(owned, slab, ownedEnergy_->potentialOnGrid());
  if (spec_.kernel != KernelKind::None && spec_.kernel != KernelKind::Quadratic)
    convolution_ = std::make_unique<SlabConvolution>(spec_, slabs_);
  if (spec_.kernel == KernelKind::Quadratic) {
    // Rows 1, x_a, |x|^2 (times |h|) over the owned nodes: the moments M, m_1,
    // m_2 of the density are their products with it.
    std::vector<at::Tensor> rows{at::ones(slab.shape(), at::kDouble)};
    at::Tensor square = at::zeros(slab.shape(), at::kDouble);
    for (int a = 0; a < slab.dim; ++a) {
      const at::Tensor x = slab.coordinate(a).expand(slab.shape());
      rows.push_back(x);
      square = square + x * x;
    }
    rows.push_back(square);
    momentRows_ = (at::stack(rows) * slab.cellVolume()).reshape({slab.dim + 2, -1}).contiguous();
  }
  double least[2] = {-convexity_.lambda, convexity_.exact ? 0.0 : 1.0};
  slabs_.communicator().max(least, 2);
  convexity_.lambda = -least[0];
  convexity_.exact = least[1] == 0;
}

bool DistributedJkoObjective::keepsMaximum() const {
  return spec_.potential == PotentialKind::None && spec_.kernel == KernelKind::None;
}

const PushForward& DistributedJkoObjective::pushForwardOn(SlabDecomposition::Range window) const {
  std::lock_guard<std::mutex> lock(cacheMutex_);
  auto& slot = pushForwards_[{window.lo, window.hi}];
  if (!slot) slot = std::make_unique<PushForward>(slabs_.slab(window));
  return *slot;
}

DistributedJkoObjective::State DistributedJkoObjective::prepare(const at::Tensor& ownedIn) const {
  const Grid& grid = slabs_.grid();
  const Grid owned = slabs_.slab(slabs_.owned());
  const at::Tensor rho = (ownedIn.dim() == grid.dim ? ownedIn.unsqueeze(0) : ownedIn).to(at::kDouble).contiguous();
  bool shapeOk = rho.dim() == grid.dim + 1 && rho.size(0) == 1;
  for (int a = 0; shapeOk && a < grid.dim; ++a) shapeOk = rho.size(a + 1) == owned.n[a];
  // Every rank must reach the same verdict, or the others wait forever in
  // the next collective call: the checks are reduced first.
  double flags[3] = {shapeOk ? 0.0 : 1.0, 0, 0};  // bad shape, not finite, negative
  double mass = 0;
  if (shapeOk) {
    const double total = rho.sum().item<double>();
    flags[1] = std::isfinite(total) ? 0.0 : 1.0;
    flags[2] = std::max(0.0, -rho.min().item<double>());
    mass = total * grid.cellVolume();
  }
  slabs_.communicator().max(flags, 3);
  mass = slabs_.communicator().sum(mass);
  if (flags[0] > 0) {
    std::ostringstream sizes;
    sizes << ownedIn.sizes();
    throw InvalidDensity("a rank's slab of shape " + sizes.str() + " does not fit its planes of the " +
                         grid.describe() + " (" + owned.describe() + " on rank " + formatValue(slabs_.rank()) + ")");
  }
  if (flags[1] > 0)
    throw InvalidDensity("the density has NaN or infinite values; every value must be a finite number >= 0");
  if (flags[2] > 0)
    throw InvalidDensity("the density has negative values (minimum " + formatValue(-flags[2]) +
                         "); a density must be >= 0 everywhere");
  if (!(mass > 0)) throw InvalidDensity("the density has zero mass; give a density with some positive values");

  State state;
  state.density = rho;
  const SlabDecomposition::Range window = slabs_.window(kFilterHalo);
  const SlabDecomposition::Range own = slabs_.owned();
  state.masses = pushForwardOn(window)
                     .prefilter(slabs_.withHalo(rho, kFilterHalo))
                     .narrow(1, own.lo - window.lo, own.planes())
                     .contiguous();
  state.weights = at::maximum(state.density, state.masses.abs());
  state.mass = at::full({1}, mass, at::kDouble);
  std::vector<int64_t> perSample(grid.dim + 1, 1);
  state.maximum = slabs_.max(std::get<0>(rho.flatten(1).max(1))).view(perSample);
  return state;
}

DistributedJkoObjective::Terms DistributedJkoObjective::evaluate(const State& state, const at::Tensor& displacement,
                                                                 bool withGradient) const {
  at::AutoGradMode gradMode(withGradient);
  const Grid& grid = slabs_.grid();
  at::Tensor u = displacement.detach().to(at::kDouble).contiguous();
  if (withGradient) u.requires_grad_(true);
  const WindowDeposit window = depositOnWindow(state, u);
  const at::Tensor& depositedWindow = window.deposited;
  const int64_t halo = window.halo;

  Terms terms;
  at::Tensor deposited = slabs_.sumOntoOwners(depositedWindow.detach(), halo);
  if (withGradient) deposited.requires_grad_(true);
  const at::Tensor transport = (0.5 / tau_) * grid.cellVolume() * (state.weights.unsqueeze(1) * u * u).sum();
  const WholeEnergy whole = wholeEnergy(deposited, transport.detach());
  const at::Tensor& energy = whole.differentiable;
  terms.energy = whole.value;
  terms.transport = whole.other;
  terms.objective = terms.energy + terms.transport;
  if (withGradient) {
    // dE/drho' on the owned planes, sent to every window that deposited
    // there (the adjoint of the sum onto owners), then through the deposit.
    const at::Tensor energyGradient = torch::autograd::grad({energy}, {deposited})[0];
    const at::Tensor adjoint = slabs_.withHalo(energyGradient, halo);
    const at::Tensor local = (depositedWindow * adjoint).sum() + transport;
    terms.gradient = torch::autograd::grad({local}, {u})[0];
  }
  terms.deposited = deposited.detach();
  return terms;
}

DistributedJkoObjective::WindowDeposit DistributedJkoObjective::depositOnWindow(const State& state,
                                                                                const at::Tensor& u) const {
  const Grid& grid = slabs_.grid();
  const SlabDecomposition::Range own = slabs_.owned();
  // Halo: the planes a particle of this slab can reach along the split axis
  // (the deposit's nearest node moves by at most |u| / h + 1/2, its stencil
  // one more), the same on every rank.
  const double reach = slabs_.communicator().max(u.detach().select(1, 0).abs().max().item<double>() / grid.spacing[0]);
  if (!std::isfinite(reach)) throw InvalidDensity("the displacement is not finite; the step cannot be evaluated");
  WindowDeposit out;
  out.halo = std::min<int64_t>(grid.n[0], static_cast<int64_t>(std::ceil(reach)) + 2);
  const SlabDecomposition::Range window = slabs_.window(out.halo);
  const int64_t before = own.lo - window.lo, after = window.hi - own.hi;
  out.deposited =
      pushForwardOn(window).deposit(padPlanes(state.masses, 1, before, after), padPlanes(u, 2, before, after));
  return out;
}

at::Tensor DistributedJkoObjective::deposit(const State& state, const at::Tensor& displacement) const {
  at::NoGradGuard noGrad;
  const at::Tensor u = displacement.to(at::kDouble).contiguous();
  const WindowDeposit window = depositOnWindow(state, u);
  return slabs_.sumOntoOwners(window.deposited, window.halo);
}

at::Tensor DistributedJkoObjective::inverseMetric(const State& state) const {
  const at::Tensor& w = state.weights;
  const double wMax = slabs_.communicator().max(w.max().item<double>());
  return tau_ / (slabs_.grid().cellVolume() * w.clamp_min(1e-12 * wMax));
}

double DistributedJkoObjective::modulus() const { return std::max(1 + convexity_.lambda * tau_, 0.1); }

double DistributedJkoObjective::l1ErrorEstimate(const State& state, const at::Tensor& displacement,
                                                const at::Tensor& gradient, const at::Tensor& deposited) const {
  at::NoGradGuard noGrad;
  const at::Tensor newton = deposit(state, displacement - inverseMetric(state).unsqueeze(1) * gradient / modulus());
  double sums[2] = {(newton - deposited).abs().sum().item<double>(), state.density.abs().sum().item<double>()};
  slabs_.communicator().sum(sums, 2);
  return sums[0] / sums[1];
}

DistributedJkoObjective::WholeEnergy DistributedJkoObjective::wholeEnergy(const at::Tensor& owned,
                                                                          const at::Tensor& other) const {
  // One sum over the ranks: the local energy, `other`, and the moments.
  at::Tensor local = ownedEnergy_->operator()(owned).sum();
  double localValue = local.item<double>();
  if (convolution_) {
    // E_W = (1/2) sum_j rho_j (W * rho)_j |h|, whose gradient is
    // (W * rho)_j |h| (W even): carried by rho . (W * rho) held fixed.
    const double volume = slabs_.grid().cellVolume();
    const at::Tensor convolved = (*convolution_)(owned.detach());
    localValue += 0.5 * volume * (owned.detach() * convolved).sum().item<double>();
    local = local + volume * (owned * convolved).sum();
  }
  const at::Tensor moments = momentRows_.defined() ? at::mv(momentRows_, owned.reshape({-1})) : at::Tensor();
  std::vector<double> values{localValue, other.defined() ? other.item<double>() : 0.0};
  if (moments.defined())
    for (int64_t k = 0; k < moments.numel(); ++k) values.push_back(moments[k].item<double>());
  slabs_.communicator().sum(values.data(), static_cast<int64_t>(values.size()));
  WholeEnergy whole;
  whole.value = values[0];
  whole.other = values[1];
  whole.differentiable = local;
  if (moments.defined()) {
    // W(z) = c |z|^2 / 2: E_W = (1/2) sum_j rho_j (W * rho)_j |h| = (c/2)(M m_2 - |m_1|^2),
    // the same sum as the serial energy's (numerics/Energy, convolve).
    const int d = slabs_.grid().dim;
    const double c = spec_.attraction, M = values[2], m2 = values[3 + d];
    double m1Squared = 0;
    for (int a = 0; a < d; ++a) m1Squared += values[3 + a] * values[3 + a];
    whole.value += 0.5 * c * (M * m2 - m1Squared);
    // Its gradient through this rank's moments: dE_W/dM = c m_2 / 2,
    // dE_W/dm_1 = -c m_1, dE_W/dm_2 = c M / 2.
    std::vector<double> slope(d + 2);
    slope[0] = 0.5 * c * m2;
    for (int a = 0; a < d; ++a) slope[1 + a] = -c * values[3 + a];
    slope[d + 1] = 0.5 * c * M;
    whole.differentiable = local + at::dot(at::tensor(slope, at::kDouble), moments);
  }
  return whole;
}

double DistributedJkoObjective::internalEnergy(const at::Tensor& owned) const {
  at::NoGradGuard noGrad;
  const at::Tensor rho = owned.dim() == slabs_.grid().dim ? owned.unsqueeze(0) : owned;
  return slabs_.communicator().sum(ownedEnergy_->parts(rho.to(at::kDouble)).internal.sum().item<double>());
}

double DistributedJkoObjective::energy(const at::Tensor& owned) const {
  at::NoGradGuard noGrad;
  const at::Tensor rho = owned.dim() == slabs_.grid().dim ? owned.unsqueeze(0) : owned;
  return wholeEnergy(rho.to(at::kDouble).contiguous(), at::Tensor()).value;
}

at::Tensor DistributedJkoObjective::externalVariation(const at::Tensor& owned) const {
  at::NoGradGuard noGrad;
  const at::Tensor rho = (owned.dim() == slabs_.grid().dim ? owned.unsqueeze(0) : owned).to(at::kDouble).contiguous();
  // V + W * rho directly (not the energy's gradient less U'(rho): at vacuum
  // the entropy's clamped log has another derivative than U', and the
  // difference polluted Phi there).
  at::Tensor phi = at::zeros_like(rho);
  const at::Tensor V = ownedEnergy_->potentialOnGrid();
  if (V.defined()) phi = phi + V.to(at::kDouble);
  if (convolution_) phi = phi + (*convolution_)(rho);
  if (momentRows_.defined()) {
    // W(z) = c |z|^2 / 2: (W * rho)(x) = (c/2)(M |x|^2 - 2 x . m_1 + m_2),
    // the gradient of wholeEnergy's moment term per unit cell volume.
    const int d = slabs_.grid().dim;
    const double c = spec_.attraction;
    at::Tensor moments = at::mv(momentRows_, rho.reshape({-1})).contiguous();
    slabs_.communicator().sum(moments.data_ptr<double>(), moments.numel());
    std::vector<double> slope(d + 2);
    slope[0] = 0.5 * c * moments[d + 1].item<double>();
    for (int a = 0; a < d; ++a) slope[1 + a] = -c * moments[1 + a].item<double>();
    slope[d + 1] = 0.5 * c * moments[0].item<double>();
    const at::Tensor field = at::mv(momentRows_.t(), at::tensor(slope, at::kDouble)) / slabs_.grid().cellVolume();
    phi = phi + field.view_as(rho);
  }
  return phi;
}

at::Tensor DistributedJkoObjective::internalVariation(const at::Tensor& owned) const {
  const at::Tensor rho = (owned.dim() == slabs_.grid().dim ? owned.unsqueeze(0) : owned).to(at::kDouble);
  return ownedEnergy_->internalVariation(rho);
}

at::Tensor DistributedJkoObjective::potentialOnOwned() const { return ownedEnergy_->potentialOnGrid(); }

at::Tensor DistributedJkoObjective::limit(const State& state, const at::Tensor& deposited) const {
  const Grid& grid = slabs_.grid();
  if (!std::isfinite(slabs_.communicator().sum(deposited.sum().item<double>())))
    throw InvalidDensity("the step produced NaN or infinite values; the density was left as it was");
  const SlabDecomposition::Range own = slabs_.owned(), window = slabs_.window(kBoxHalo);
  const int64_t before = own.lo - window.lo;
  // Negative mass onto the positive nodes of its 3^d box, then the whole
  // density rescaled to the exact mass.
  const at::Tensor spread =
      pushForwardOn(window).spreadNegativeMass(slabs_.withHalo(deposited, kBoxHalo)).narrow(1, before, own.planes());
  const double current = slabs_.communicator().sum(spread.sum().item<double>()) * grid.cellVolume();
  return (spread * (state.mass.item<double>() / std::max(current, 1e-300))).contiguous();
}

at::Tensor DistributedJkoObjective::nextDensity(const State& state, const at::Tensor& deposited) const {
  const at::Tensor next = limit(state, deposited);
  if (!keepsMaximum()) return next;
  const SlabDecomposition::Range own = slabs_.owned(), window = slabs_.window(kBoxHalo);
  const int64_t before = own.lo - window.lo, after = window.hi - own.hi;
  return clipAtBound(slabs_.withHalo(next, kBoxHalo), before, after, state.maximum,
                     [&](const at::Tensor& perSample) { return slabs_.sum(perSample); })
      .contiguous();
}

StepCertificate DistributedJkoObjective::certify(const State& state, const at::Tensor& displacement,
                                                 double initialObjective) const {
  const Grid& grid = slabs_.grid();
  const Communicator& communicator = slabs_.communicator();
  at::Tensor u = displacement.to(at::kDouble).contiguous();
  if (u.dim() == grid.dim + 1) u = u.unsqueeze(0);
  const Terms terms = evaluate(state, u, true);
  StepCertificate c;
  c.mass = state.mass.item<double>();
  c.initialObjective = initialObjective;
  c.energy = terms.energy;
  c.transport = terms.transport;
  const at::Tensor H0 = inverseMetric(state);
  const at::Tensor g = terms.gradient;
  const at::Tensor newton = deposit(state, u - H0.unsqueeze(1) * g / modulus());
  // The certificate's sums over the whole grid: g . H0 g, |rho_k|_1, the
  // step's L1 change, the Newton step's L1 change, and the mass on particles
  // spread apart (det(I + grad u) > 2^(d/2), central differences: one plane
  // of halo).
  const at::Tensor uWindow = slabs_.withHalo(u, 1, 2);
  const SlabDecomposition::Range own = slabs_.owned(), window = slabs_.window(1);
  const at::Tensor determinant =
      pushForwardOn(window).jacobianDeterminant(uWindow).narrow(1, own.lo - window.lo, own.planes());
  const at::Tensor rho = state.density.clamp_min(0);
  double sums[6] = {(g * g * H0.unsqueeze(1)).sum().item<double>(),
                    state.density.abs().sum().item<double>(),
                    (terms.deposited - state.density).abs().sum().item<double>(),
                    (newton - terms.deposited).abs().sum().item<double>(),
                    (rho * (determinant > std::pow(StepCertificate::kSpreadStretch, grid.dim))).sum().item<double>(),
                    rho.sum().item<double>()};
  communicator.sum(sums, 6);
  c.metricGradientNorm = sums[0];
  completeCertificate(c, convexity_, tau_, grid.smallestSpacing());
  c.stepL1 = sums[2] / sums[1];
  c.l1ErrorEstimate = sums[3] / sums[1];
  c.spreadMassFraction = sums[5] > 0 ? sums[4] / sums[5] : 0.0;
  return c;
}

DistributedReferenceSolver::DistributedReferenceSolver(std::shared_ptr<const DistributedJkoObjective> objective,
                                                       ReferenceSolverOptions options)
    : objective_(std::move(objective)), options_(std::move(options)) {
  // The same checks as the serial solver (it throws on bad options).
  ReferenceSolver::validateOptions(options_);
}

ReferenceStep DistributedReferenceSolver::step(const at::Tensor& ownedDensity, const at::Tensor& initialDisplacement,
                                               const ProgressCallback& progress) const {
  return step(objective_->prepare(ownedDensity), initialDisplacement, progress);
}

ReferenceStep DistributedReferenceSolver::step(const DistributedJkoObjective::State& state,
                                               const at::Tensor& initialDisplacement,
                                               const ProgressCallback& progress) const {
  const DistributedJkoObjective& J = *objective_;
  const SlabDecomposition& slabs = J.slabs();
  const Grid& grid = slabs.grid();
  std::vector<int64_t> uShape{1, grid.dim};
  for (int64_t n : state.density.sizes().slice(1)) uShape.push_back(n);
  int64_t ownedNodes = state.density.numel();

  LbfgsProblem problem;
  problem.evaluate = [&](const at::Tensor& x) {
    const DistributedJkoObjective::Terms terms = J.evaluate(state, x.view(uShape), true);
    LbfgsEvaluation e;
    e.value = terms.objective;
    e.gradient = terms.gradient.reshape({-1});
    return e;
  };
  problem.dot = [&](const at::Tensor& a, const at::Tensor& b) {
    return slabs.communicator().sum(at::dot(a, b).item<double>());
  };
  const at::Tensor w = state.weights.reshape({1, 1, -1}).expand({1, grid.dim, ownedNodes}).reshape({-1});
  const double wMax = slabs.communicator().max(w.max().item<double>());
  problem.inverseMetric = J.tau() / (grid.cellVolume() * w.clamp_min(1e-12 * wMax));
  if (options_.accept)
    problem.accept = [&](const at::Tensor& x, const at::Tensor& g) {
      return options_.accept(x.view(uShape), g.view(uShape));
    };
  problem.initialObjective = J.evaluate(state, at::zeros(uShape, at::kDouble), false).objective;
  if (!std::isfinite(problem.initialObjective))
    throw InvalidDensity("the energy of the density is " + formatValue(problem.initialObjective) +
                         ": its values are too large for this energy (overflow); rescale the density or the "
                         "energy's parameters");
  const at::Tensor x0 = initialDisplacement.defined() ? initialDisplacement.to(at::kDouble).reshape({-1}).clone()
                                                      : at::zeros({grid.dim * ownedNodes}, at::kDouble);
  const LbfgsOutcome outcome = minimiseWithMetricLbfgs(problem, x0, options_, progress);

  ReferenceStep result = outcome.step();
  const at::Tensor u = outcome.x.view(uShape);
  const DistributedJkoObjective::Terms terms = J.evaluate(state, u, false);
  result.objective = terms.objective;
  result.energy = terms.energy;
  result.transport = terms.transport;
  const GridScaleCompletion completion(J.spec(), grid, J.tau());
  FrameFinish finish;
  finish.nextDensity = [&](const at::Tensor& deposited) { return J.nextDensity(state, deposited); };
  finish.energy = [&](const at::Tensor& rho) { return J.energy(rho); };
  finish.internalEnergy = [&](const at::Tensor& rho) { return J.internalEnergy(rho); };
  result.next = completedFrame(terms.deposited, result.initialObjective, options_.completeGridScale, completion,
                               completionWindow(slabs), finish, result)[0];
  result.displacement = u[0].clone();
  return result;
}

double DistributedJkoObjective::gridScaleDefect(const at::Tensor& frame) const {
  const at::Tensor rho = frame.dim() == slabs_.grid().dim ? frame.unsqueeze(0) : frame;
  return GridScaleCompletion(spec_, slabs_.grid(), tau_)
      .defect(rho.to(at::kDouble).contiguous(), completionWindow(slabs_));
}

GridScaleCompletion::Window completionWindow(const SlabDecomposition& slabs) {
  GridScaleCompletion::Window window;
  const SlabDecomposition::Range own = slabs.owned(), halo = slabs.window(GridScaleCompletion::kHalo);
  window.withHalo = [&slabs](const at::Tensor& owned) { return slabs.withHalo(owned, GridScaleCompletion::kHalo); };
  window.owned = [own, halo](const at::Tensor& t) { return t.narrow(1, own.lo - halo.lo, own.planes()); };
  window.sum = [&slabs](double value) { return slabs.communicator().sum(value); };
  window.slabs = slabs.multigridSlabs();
  return window;
}

at::Tensor completeFrame(const DistributedJkoObjective& J, const DistributedJkoObjective::State& state,
                         const at::Tensor& next, double energyOfRho, ReferenceStep& step) {
  at::NoGradGuard noGrad;
  const GridScaleCompletion completion(J.spec(), J.slabs().grid(), J.tau());
  if (!completion.active()) return next;
  FrameFinish finish;
  finish.nextDensity = [&](const at::Tensor& deposited) { return J.nextDensity(state, deposited); };
  finish.energy = [&](const at::Tensor& rho) { return J.energy(rho); };
  finish.internalEnergy = [&](const at::Tensor& rho) { return J.internalEnergy(rho); };
  const double initialEnergy = std::isfinite(energyOfRho) ? energyOfRho : J.energy(state.density);
  return completedFrame(next.to(at::kDouble).unsqueeze(0).contiguous(), initialEnergy, true, completion,
                        completionWindow(J.slabs()), finish, step)[0];
}

FinishedFrame finishFrame(const DistributedJkoObjective& J, const ReferenceStep& solved) {
  return finishedFrame(solved, [&](const at::Tensor& frame) { return J.gridScaleDefect(frame); });
}

FinishedFrame finishFrame(const DistributedJkoObjective& J, const DistributedJkoObjective::State& state,
                          const at::Tensor& next, double energyOfRho, bool complete) {
  ReferenceStep record;
  record.next = complete ? completeFrame(J, state, next, energyOfRho, record) : next;
  return finishFrame(J, record);
}

std::vector<ReferenceStep> DistributedReferenceSolver::rollout(const at::Tensor& ownedDensity, int steps,
                                                               const ProgressCallback& progress) const {
  return warmStartedRollout([&](const at::Tensor& rho, const at::Tensor& warm) { return step(rho, warm); },
                            ownedDensity, steps, progress);
}

}  // namespace jko
