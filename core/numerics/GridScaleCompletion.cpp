#include "numerics/GridScaleCompletion.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <array>
#include <cmath>
#include <vector>

namespace jko {
namespace {

// alpha s^2 + beta s^3 = theta^2 - sin^2(theta) at theta = pi / 2 (s = 1/2)
// and theta = pi (s = 1).
const double kAlpha = M_PI * M_PI - 8.0;
const double kBeta = 8.0;

// One line of nodes along an axis (n values `stride` apart), walls at both
// ends: y += scheme * C^T D C x + missing * (alpha/16 (d^2)^T D d^2 x +
// beta/64 (B d^2)^T D_face (B d^2) x), with B the forward difference onto
// the n - 1 inner faces (zero flux through the walls), d^2 = -B^T B (so
// d^2 x_i = f_i - f_{i-1}, f the face differences, 0 beyond the walls), C =
// P B the central difference (P: the mean of a node's two faces) and C^T =
// B^T P^T. `work` holds 5 n doubles.
void lineResponse(const double* x, const double* D, double* y, int64_t n, int64_t stride, double scheme, double missing,
                  double* work) {
  double* f = work;          // faces, n - 1
  double* s = work + n;      // d^2 x, n
  double* t = work + 2 * n;  // D * (C x) then D * d^2 x, n
  double* k = work + 3 * n;  // D_face * B d^2 x, n - 1
  double* v = work + 4 * n;  // B^T k, n
  for (int64_t j = 0; j + 1 < n; ++j) f[j] = x[(j + 1) * stride] - x[j * stride];
  const auto face = [&](const double* a, int64_t j) { return j >= 0 && j + 1 < n ? a[j] : 0.0; };
  if (scheme != 0) {
    for (int64_t i = 0; i < n; ++i) t[i] = D[i * stride] * 0.5 * (face(f, i - 1) + face(f, i));
    // B^T P^T t: P^T t at face j is (t_j + t_{j+1}) / 2; B^T h at node i is h_{i-1} - h_i.
    for (int64_t i = 0; i < n; ++i) {
      const double left = i >= 1 ? 0.5 * (t[i - 1] + t[i]) : 0.0;
      const double right = i + 1 < n ? 0.5 * (t[i] + t[i + 1]) : 0.0;
      y[i * stride] += scheme * (left - right);
    }
  }
  if (missing != 0) {
    for (int64_t i = 0; i < n; ++i) s[i] = face(f, i) - face(f, i - 1);
    for (int64_t i = 0; i < n; ++i) t[i] = D[i * stride] * s[i];
    for (int64_t j = 0; j + 1 < n; ++j) k[j] = 0.5 * (D[j * stride] + D[(j + 1) * stride]) * (s[j + 1] - s[j]);
    for (int64_t i = 0; i < n; ++i) v[i] = face(k, i - 1) - face(k, i);
    // d^2 of t and of v, through their face differences.
    const double a = missing * kAlpha / 16.0, b = missing * kBeta / 64.0;
    for (int64_t i = 0; i < n; ++i) {
      const double tRight = i + 1 < n ? t[i + 1] - t[i] : 0.0, tLeft = i >= 1 ? t[i] - t[i - 1] : 0.0;
      const double vRight = i + 1 < n ? v[i + 1] - v[i] : 0.0, vLeft = i >= 1 ? v[i] - v[i - 1] : 0.0;
      y[i * stride] += a * (tRight - tLeft) + b * (vRight - vLeft);
    }
  }
}

// The mean of neighbouring nodes along tensor dimension d (n - 1 faces).
at::Tensor faceAverage(const at::Tensor& x, int64_t d) {
  const int64_t n = x.size(d);
  return 0.5 * (x.narrow(d, 0, n - 1) + x.narrow(d, 1, n - 1));
}

// sum over the axes of lineResponse / h_a^2 on a window (B, n0, n1[, n2]).
at::Tensor response(const at::Tensor& xIn, const at::Tensor& DIn, const Grid& grid, double scheme, double missing) {
  const at::Tensor x = xIn.to(at::kDouble).contiguous(), D = DIn.to(at::kDouble).expand_as(x).contiguous();
  at::Tensor y = at::zeros_like(x);
  const int dim = grid.dim;
  std::array<int64_t, 3> n{1, 1, 1}, stride{1, 1, 1};
  for (int a = 0; a < dim; ++a) n[a] = x.size(a + 1);
  for (int a = dim - 2; a >= 0; --a) stride[a] = stride[a + 1] * n[a + 1];
  const int64_t perSample = n[0] * n[1] * n[2];
  const double* xp = x.data_ptr<double>();
  const double* Dp = D.data_ptr<double>();
  double* yp = y.data_ptr<double>();
  for (int a = 0; a < dim; ++a) {
    const double h2 = grid.spacing[a] * grid.spacing[a];
    const int64_t lines = x.size(0) * perSample / n[a];
    // Lines along axis a: every node with index 0 along a, in each sample.
    at::parallel_for(0, lines, 64, [&](int64_t begin, int64_t end) {
      std::vector<double> work(5 * n[a]);
      for (int64_t line = begin; line < end; ++line) {
        const int64_t sample = line / (perSample / n[a]), rest = line % (perSample / n[a]);
        // rest enumerates the other axes' indices; strides of a left out.
        const int64_t inner = stride[a], outer = rest / inner, within = rest % inner;
        const int64_t offset = sample * perSample + outer * inner * n[a] + within;
        lineResponse(xp + offset, Dp + offset, yp + offset, n[a], inner, scheme / h2, missing / h2, work.data());
      }
    });
  }
  return y;
}
}  // namespace

GridScaleCompletion::GridScaleCompletion(const EnergySpec& spec, const Grid& grid, double tau)
    : spec_(spec), grid_(grid), tau_(tau) {
  active_ = spec_.internal != InternalKind::None && spec_.diffusion > 0 && tau_ > 0;
}

at::Tensor GridScaleCompletion::effectiveDiffusivity(const at::Tensor& rho) const {
  if (spec_.internal == InternalKind::Entropy) return at::full_like(rho, spec_.diffusion);
  if (spec_.internal == InternalKind::PorousMedium)
    return spec_.diffusion * spec_.exponent * rho.clamp_min(0).pow(spec_.exponent - 1);
  return at::zeros_like(rho);
}

at::Tensor GridScaleCompletion::schemeResponse(const at::Tensor& x, const at::Tensor& diffusivity) const {
  return response(x, diffusivity, grid_, 1.0, 0.0);
}

at::Tensor GridScaleCompletion::missingResponse(const at::Tensor& x, const at::Tensor& diffusivity) const {
  return response(x, diffusivity, grid_, 0.0, 1.0);
}

GridScaleCompletion::Window GridScaleCompletion::wholeGrid() {
  Window w;
  w.withHalo = [](const at::Tensor& owned) { return owned; };
  w.owned = [](const at::Tensor& window) { return window; };
  w.sum = [](double value) { return value; };
  return w;
}

GridScaleCompletion::Outcome GridScaleCompletion::complete(const at::Tensor& rho, const Window& window,
                                                           double tolerance, int maxIterations) const {
  at::NoGradGuard noGrad;
  Outcome outcome;
  outcome.next = rho;
  if (!active_) {
    outcome.converged = true;
    return outcome;
  }
  const at::Tensor rhoWindow = window.withHalo(rho);
  const at::Tensor diffusivityWindow = effectiveDiffusivity(rhoWindow);
  const at::Tensor diffusivity = window.owned(diffusivityWindow);
  // (I + tau (A_s + M)) e = -tau M rho*, e = rho_{k+1} - rho*.
  const auto system = [&](const at::Tensor& p) {
    const at::Tensor pWindow = window.withHalo(p);
    return p + tau_ * window.owned(response(pWindow, diffusivityWindow, grid_, 1.0, 1.0));
  };
  // The preconditioner: a V-cycle of I - tau div(D_face grad) for one
  // sample; Jacobi (the constant-coefficient diagonal of each stencil, C^T C:
  // 1/2, d^4: 6, (-d^2)^3: 20, at the node's D_eff) for a batch.
  std::unique_ptr<Multigrid> multigrid;
  at::Tensor diagonal;
  if (rho.size(0) == 1) {
    std::array<int64_t, 3> n{1, 1, 1};
    std::array<double, 3> h{1, 1, 1};
    for (int a = 0; a < grid_.dim; ++a) n[a] = rho.size(a + 1), h[a] = grid_.spacing[a];
    if (window.slabs.communicator) {
      n[0] = window.slabs.firstPlane.back();
      multigrid = std::make_unique<Multigrid>(grid_.dim, n, h, 2, 2, window.slabs);
    } else {
      multigrid = std::make_unique<Multigrid>(grid_.dim, n, h, 2, 2);
    }
    // k on the face towards each node's + neighbour (the last node's is
    // ignored): tau times the mean D_eff of the two nodes, from the window.
    std::array<at::Tensor, 3> faces;
    std::array<const double*, 3> facePointers{nullptr, nullptr, nullptr};
    for (int a = 0; a < grid_.dim; ++a) {
      const int64_t d = a + 1, m = diffusivityWindow.size(d);
      at::Tensor face = at::zeros_like(diffusivityWindow);
      face.narrow(d, 0, m - 1).copy_(faceAverage(diffusivityWindow, d) * tau_);
      faces[a] = window.owned(face)[0].contiguous();
      facePointers[a] = faces[a].data_ptr<double>();
    }
    const at::Tensor ones = at::ones_like(rho[0]).contiguous();
    multigrid->setCoefficients(ones.data_ptr<double>(), facePointers);
  } else {
    double inverseSpacing = 0;
    for (int a = 0; a < grid_.dim; ++a) inverseSpacing += 1.0 / (grid_.spacing[a] * grid_.spacing[a]);
    diagonal = 1.0 + tau_ * (0.5 + 6.0 * kAlpha / 16.0 + 20.0 * kBeta / 64.0) * inverseSpacing * diffusivity;
  }
  const auto precondition = [&](const at::Tensor& residual) {
    if (!multigrid) return residual / diagonal;
    const at::Tensor f = residual[0].contiguous();
    at::Tensor z = at::zeros_like(f);
    multigrid->cycle(f.data_ptr<double>(), z.data_ptr<double>());
    return z.unsqueeze(0);
  };

  const double bound = tolerance * tolerance * window.sum((rho * rho).sum().item<double>());
  at::Tensor e = at::zeros_like(rho);
  at::Tensor r = -tau_ * window.owned(missingResponse(rhoWindow, diffusivityWindow));
  double rr = window.sum((r * r).sum().item<double>());
  at::Tensor z = precondition(r);
  at::Tensor p = z.clone();
  double rz = window.sum((r * z).sum().item<double>());
  int iteration = 0;
  while (iteration < maxIterations && rr > bound) {
    const at::Tensor q = system(p);
    const double pq = window.sum((p * q).sum().item<double>());
    if (!(pq > 0)) break;
    const double step = rz / pq;
    e.add_(p, step);
    r.sub_(q, step);
    rr = window.sum((r * r).sum().item<double>());
    // No V-cycle for a direction that will not be taken: a third of
    // defect()'s.
    if (++iteration == maxIterations || rr <= bound) break;
    z = precondition(r);
    const double rzNext = window.sum((r * z).sum().item<double>());
    p = z + (rzNext / rz) * p;
    rz = rzNext;
  }
  outcome.iterations = iteration;
  outcome.converged = rr <= bound;
  const double norm = std::sqrt(window.sum((rho * rho).sum().item<double>()));
  outcome.residual = norm > 0 ? std::sqrt(rr) / norm : 0.0;
  // The exact e has no mass (every operator is zero on constants); the
  // iterates keep what the preconditioned directions carry, up to the
  // tolerance. It goes back where D_eff is, never into a porous medium's
  // vacuum.
  const double drift = window.sum(e.sum().item<double>()), weight = window.sum(diffusivity.sum().item<double>());
  if (weight > 0) e.sub_(diffusivity * (drift / weight));
  outcome.next = rho + e;
  return outcome;
}

double GridScaleCompletion::defect(const at::Tensor& rho, const Window& window) const {
  if (!active_) return 0.0;
  at::NoGradGuard noGrad;
  // A deposit may carry small negative masses (the limiter spreads them
  // later); D_eff is taken of the non-negative part.
  const at::Tensor frame = rho.clamp_min(0);
  const Outcome outcome = complete(frame, window, 0.0, kDefectIterations);
  const double moved = window.sum((outcome.next - frame).abs().sum().item<double>());
  const double size = window.sum(frame.sum().item<double>());
  return size > 0 ? moved / size : 0.0;
}

}  // namespace jko
