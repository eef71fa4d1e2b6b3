#include "numerics/JkoObjective.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "numerics/Errors.h"

namespace jko {

void validateDensity(const at::Tensor& rho, const Grid& grid) {
  std::ostringstream sizes;
  sizes << rho.sizes();
  if (rho.dim() != grid.dim + 1)
    throw InvalidDensity("density of shape " + sizes.str() + " does not fit the " + std::to_string(grid.dim) + "D " +
                         grid.describe() + "; give one value per grid node");
  for (int a = 0; a < grid.dim; ++a)
    if (rho.size(a + 1) != grid.n[a])
      throw InvalidDensity("density of shape " + sizes.str() + " does not fit the " + grid.describe());
  if (rho.numel() == 0) throw InvalidDensity("the density is empty");
  bool finite = true, massPositive = true, massFinite = true;
  double minimum = 0;
  if (rho.is_cpu() && rho.scalar_type() == at::kDouble && rho.is_contiguous()) {
    // One pass instead of ~10 tensor operations (a twentieth of a 64^2 step).
    const double* values = rho.data_ptr<double>();
    const int64_t samples = rho.size(0), nodes = rho.numel() / samples;
    minimum = values[0];
    for (int64_t b = 0; b < samples; ++b) {
      double total = 0;
      bool bad = false;
      for (int64_t i = 0; i < nodes; ++i) {
        const double v = values[b * nodes + i];
        bad |= !(v - v == 0);  // inf - inf and NaN - NaN are NaN
        minimum = std::min(minimum, v);
        total += v;
      }
      finite = finite && !bad;
      massPositive = massPositive && total > 0;
      massFinite = massFinite && std::isfinite(total);
    }
  } else {
    finite = at::isfinite(rho).all().item<bool>();
    if (finite) {
      minimum = rho.min().item<double>();
      const at::Tensor total = rho.to(at::kDouble).flatten(1).sum(1);
      massPositive = (total > 0).all().item<bool>();
      massFinite = at::isfinite(total).all().item<bool>();
    }
  }
  if (!finite) throw InvalidDensity("the density has NaN or infinite values; every value must be a finite number >= 0");
  if (minimum < 0)
    throw InvalidDensity("the density has negative values (minimum " + formatValue(minimum) +
                         "); a density must be >= 0 everywhere");
  if (!massPositive) throw InvalidDensity("the density has zero mass; give a density with some positive values");
  // Finite values can still sum to infinity (values near 1e308): the mass,
  // the limiter's rescaling and every energy would be inf or NaN.
  if (!massFinite)
    throw InvalidDensity("the density's values are too large: its total mass overflows; rescale the density");
}

JkoObjective::JkoObjective(std::shared_ptr<const Energy> energy, double tau)
    : energy_(std::move(energy)), pushForward_(energy_->grid()), tau_(tau) {
  if (!(tau > 0) || !std::isfinite(tau))
    throw InvalidParameter("tau", formatValue(tau), "the time step must be a positive finite number");
}

JkoState JkoObjective::prepare(const at::Tensor& rhoIn) const {
  at::Tensor rho = rhoIn.dim() == grid().dim ? rhoIn.unsqueeze(0) : rhoIn;
  validateDensity(rho, grid());
  JkoState state;
  state.density = rho.to(at::kDouble).contiguous();
  state.masses = pushForward_.prefilter(state.density);
  // max(rho, |m|): weighting by rho alone lets vacuum cells with slightly
  // negative m move for free (DESIGN.md §2.2, pf step 3).
  state.weights = at::maximum(state.density, state.masses.abs());
  state.mass = pushForward_.mass(state.density);
  return state;
}

JkoTerms JkoObjective::evaluate(const JkoState& state, const at::Tensor& displacement) const {
  JkoTerms terms;
  terms.deposited = pushForward_.deposit(state.masses, displacement);
  terms.energy = (*energy_)(terms.deposited);
  const at::Tensor u = displacement.to(at::kDouble);
  terms.transport = (0.5 / tau_) * grid().cellVolume() * (state.weights.unsqueeze(1) * u * u).flatten(1).sum(1);
  terms.objective = terms.energy + terms.transport;
  return terms;
}

namespace {

// Sum over the 3^d box around each node, zero outside the grid; (B, n...).
at::Tensor boxSum(const at::Tensor& x, int dim) {
  const at::Tensor channels = x.unsqueeze(1);
  const at::Tensor mean =
      dim == 2 ? at::avg_pool2d(channels, 3, 1, 1, false, true) : at::avg_pool3d(channels, 3, 1, 1, false, true);
  return mean.squeeze(1) * (dim == 2 ? 9.0 : 27.0);
}

}  // namespace

bool JkoObjective::keepsMaximum() const {
  const EnergySpec& spec = energy_->spec();
  return spec.potential == PotentialKind::None && spec.kernel == KernelKind::None;
}

at::Tensor JkoObjective::nextDensity(const JkoState& state, const at::Tensor& deposited) const {
  at::Tensor next = pushForward_.limit(deposited.detach(), state.mass);
  if (!keepsMaximum()) return next;
  // Maximum principle (DESIGN.md §5 case 6 for U(rho) alone): the exact step
  // never exceeds the largest value of rho_k. The pre-filtered deposit is a
  // high-order, non-monotone interpolation: moved by a fraction of a cell,
  // the masses S^-1 rho of a sharp edge ring above it (0-255 pictures: up
  // to +0.8% after 10 steps, in the minimiser itself, not in the stopping
  // rule).
  const std::vector<int64_t> perSample{next.size(0), 1, 1, 1};
  const at::Tensor bound =
      std::get<0>(state.density.flatten(1).max(1)).view(at::IntArrayRef(perSample).slice(0, grid().dim + 1));
  return clipAtBound(next, 0, 0, bound, [](const at::Tensor& perSampleValues) { return perSampleValues; });
}

at::Tensor clipAtBound(const at::Tensor& window, int64_t before, int64_t after, const at::Tensor& bound,
                       const std::function<at::Tensor(const at::Tensor&)>& sumAll) {
  // Clip at the bound and give the excess to the nodes of the same 3^d box
  // that have room below it, the rest in proportion to the room left
  // anywhere: mass exact, non-negative, and a mean-preserving contraction,
  // so no convex U(rho) rises. A node's value depends on the window up to
  // two nodes away, and on two sums over the whole grid.
  const int dim = static_cast<int>(window.dim()) - 1;
  const int64_t planes = window.size(1) - before - after;
  const auto owned = [&](const at::Tensor& t) { return t.narrow(1, before, planes); };
  const at::Tensor excess = (window - bound).clamp_min(0);
  const at::Tensor anyExcess = sumAll(std::get<0>(owned(excess).flatten(1).max(1)));
  if (!(anyExcess.max().item<double>() > 0)) return owned(window);
  const at::Tensor clipped = at::minimum(window, bound);
  const at::Tensor room = bound - clipped;
  const at::Tensor roomNearby = boxSum(room, dim);
  const at::Tensor share = at::where(roomNearby > 0, excess / roomNearby, at::zeros_like(excess));
  at::Tensor limited = owned(at::minimum(clipped + room * boxSum(share, dim), bound));
  // What did not fit nearby (a node between several clipped ones, or none
  // with room): spread over all the room left.
  const at::Tensor missing = sumAll((owned(window) - limited).flatten(1).sum(1));
  const at::Tensor roomLeft = bound - limited;
  const at::Tensor totalRoom = sumAll(roomLeft.flatten(1).sum(1));
  const at::Tensor scale = at::where(totalRoom > 0, missing / totalRoom, at::zeros_like(totalRoom));
  std::vector<int64_t> perSample(dim + 1, 1);
  perSample[0] = window.size(0);
  limited = limited + roomLeft * scale.view(perSample);
  // Rounding (1e-17) must not leave a negative value for validateDensity.
  return limited.clamp_min(0);
}

}  // namespace jko
