#include "operator/LearnedOperator.h"

#include <ATen/core/grad_mode.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "numerics/Errors.h"
#include "numerics/GridTransfer.h"
#include "numerics/NeumannResolvent.h"
#include "operator/OperatorFile.h"
#include "operator/TrainingRangeCheck.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"
#include "runtime/TaskTeam.h"

namespace jko {
namespace {}  // namespace

// Features: rho, vE, vR, coordinates (dim each) and V where there is one.
int LearnedOperator::inputChannels(const OperatorMetadata& m) {
  return 1 + 3 * m.dim + (m.energy.potential != PotentialKind::None ? 1 : 0) + m.conditioning.channels();
}

// Our networks output two gates and a correction (2 + dim channels; on the
// linearised base one gate and a correction, 1 + dim); a TorchScript module
// outputs the velocity itself (dim channels).
int LearnedOperator::outputChannels(const OperatorMetadata& m) {
  if (m.network.kind == "torchscript") return m.dim;
  if (m.network.base == "linearized") return 1 + (m.network.baseCorrection > 0 ? m.dim : 0);
  return 2 + m.dim;
}

namespace {

std::mutex& cacheMutex() {
  static std::mutex mutex;
  return mutex;
}

bool startsWithZipMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

// A field (B, C..., n...) averaged over blocks of `block` cells per axis and
// interpolated back: its part coarser than the blocks.
at::Tensor blockSmooth(const at::Tensor& field, const Grid& grid, int64_t block, bool scalar);

// v = a1 vE + (1 + a2) vR + scale b from the network output (B, 2 + d, n...):
// gates a1, a2 and correction b. One loop on the CPU (eight tensor
// operations took a tenth of a 128^2 step), tensor operations elsewhere.
at::Tensor gatedVelocity(const at::Tensor& out, const at::Tensor& explicitVelocity, const at::Tensor& smoothedVelocity,
                         double scale) {
  const int64_t d = explicitVelocity.size(1);
  const bool recording = at::GradMode::is_enabled() &&
                         (out.requires_grad() || explicitVelocity.requires_grad() || smoothedVelocity.requires_grad());
  if (recording || !out.is_cpu() || out.scalar_type() != at::kFloat || !explicitVelocity.is_contiguous() ||
      !smoothedVelocity.is_contiguous() || explicitVelocity.scalar_type() != at::kDouble ||
      smoothedVelocity.scalar_type() != at::kDouble) {
    const at::Tensor o = out.to(at::kDouble);
    const at::Tensor a1 = o.narrow(1, 0, 1), a2 = o.narrow(1, 1, 1), b = o.narrow(1, 2, d);
    return a1 * explicitVelocity + (1.0 + a2) * smoothedVelocity + b * scale;
  }
  const at::Tensor o = out.contiguous();
  at::Tensor v = at::empty_like(explicitVelocity);
  const int64_t batch = v.size(0), nodes = v[0][0].numel();
  const float* gates = o.data_ptr<float>();
  const double* vE = explicitVelocity.data_ptr<double>();
  const double* vR = smoothedVelocity.data_ptr<double>();
  double* result = v.data_ptr<double>();
  for (int64_t s = 0; s < batch; ++s) {
    const float* a1 = gates + s * (2 + d) * nodes;
    const float* a2 = a1 + nodes;
    for (int64_t c = 0; c < d; ++c) {
      const float* b = a1 + (2 + c) * nodes;
      const int64_t offset = (s * d + c) * nodes;
      for (int64_t i = 0; i < nodes; ++i)
        result[offset + i] = a1[i] * vE[offset + i] + (1.0 + a2[i]) * vR[offset + i] + scale * b[i];
    }
  }
  return v;
}

// C (m x n, row stride ldc) = op(A) op(B), op(X) = X or X^T, float64.
void dgemm(bool transposeA, bool transposeB, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
           const double* b, int64_t ldb, double* c, int64_t ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), 0.0, c, static_cast<int>(ldc));
}

// resolvent2D of one n0 x n1 field on the CPU with the folded bases: a row
// (column) and its mirror image share the even modes and negate the odd
// ones, so each product with a basis splits into two of half the size, on
// the sum and on the difference of mirrored rows (columns). Half the work
// of the four full products (0.048 ms at 64^2).
void foldedResolvent2D(const double* f, double* out, int64_t n0, int64_t n1, const double* even0, const double* odd0,
                       const double* even1, const double* odd1, const double* gain) {
  const int64_t e0 = (n0 + 1) / 2, o0 = n0 / 2, e1 = (n1 + 1) / 2, o1 = n1 / 2;
  thread_local std::vector<double> sum, difference, a, b;
  sum.resize(n0 * n1);
  difference.resize(n0 * n1);
  a.resize(n0 * n1);
  b.resize(n0 * n1);
  // Along axis 1: mirrored columns summed (with the middle one) and differenced; a = [F+ E1 | F- O1].
  for (int64_t i = 0; i < n0; ++i) {
    const double* row = f + i * n1;
    for (int64_t j = 0; j < o1; ++j) {
      sum[i * e1 + j] = row[j] + row[n1 - 1 - j];
      difference[i * o1 + j] = row[j] - row[n1 - 1 - j];
    }
    if (e1 > o1) sum[i * e1 + o1] = row[o1];
  }
  dgemm(false, false, n0, e1, e1, sum.data(), e1, even1, e1, a.data(), n1);
  dgemm(false, false, n0, o1, o1, difference.data(), o1, odd1, o1, a.data() + e1, n1);
  // Along axis 0 the same with rows: b = [E0^T T+ ; O0^T T-], then the gain.
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < n1; ++j) {
      sum[i * n1 + j] = a[i * n1 + j] + a[(n0 - 1 - i) * n1 + j];
      difference[i * n1 + j] = a[i * n1 + j] - a[(n0 - 1 - i) * n1 + j];
    }
  if (e0 > o0) std::copy_n(a.data() + o0 * n1, n1, sum.data() + o0 * n1);
  dgemm(true, false, e0, n1, e0, even0, e0, sum.data(), n1, b.data(), n1);
  dgemm(true, false, o0, n1, o0, odd0, o0, difference.data(), n1, b.data() + e0 * n1, n1);
  for (int64_t i = 0; i < n0 * n1; ++i) b[i] *= gain[i];
  // Back along axis 0: rows i and n0 - 1 - i are E0 b_even +- O0 b_odd.
  dgemm(false, false, e0, n1, e0, even0, e0, b.data(), n1, sum.data(), n1);
  dgemm(false, false, o0, n1, o0, odd0, o0, b.data() + e0 * n1, n1, difference.data(), n1);
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < n1; ++j) {
      a[i * n1 + j] = sum[i * n1 + j] + difference[i * n1 + j];
      a[(n0 - 1 - i) * n1 + j] = sum[i * n1 + j] - difference[i * n1 + j];
    }
  if (e0 > o0) std::copy_n(sum.data() + o0 * n1, n1, a.data() + o0 * n1);
  // Back along axis 1: columns j and n1 - 1 - j.
  dgemm(false, true, n0, e1, e1, a.data(), n1, even1, e1, sum.data(), e1);
  dgemm(false, true, n0, o1, o1, a.data() + e1, n1, odd1, o1, difference.data(), o1);
  for (int64_t i = 0; i < n0; ++i) {
    double* row = out + i * n1;
    for (int64_t j = 0; j < o1; ++j) {
      row[j] = sum[i * e1 + j] + difference[i * o1 + j];
      row[n1 - 1 - j] = sum[i * e1 + j] - difference[i * o1 + j];
    }
    if (e1 > o1) row[o1] = sum[i * e1 + o1];
  }
}

// One loop for 2D and 3D float64 CPU fields (B, n...), n_a >= 3: v = -grad
// phi (the differences of `gradient`), capped at |v| <= cap (as
// cappedVelocity), for phi = the first variation and, when given, its
// smoothed part. About twenty tensor operations otherwise. Returns false
// where it does not apply.
template <typename Inputs>
bool cappedVelocities(const at::Tensor& variation, const at::Tensor& smoothed, const Grid& grid, double cap,
                      Inputs& in) {
  const int d = grid.dim;
  for (int a = 0; a < d; ++a)
    if (grid.n[a] < 3) return false;
  for (const at::Tensor* phi : {&variation, &smoothed})
    if (phi->defined() && (!loopable(*phi) || phi->dim() != d + 1)) return false;
  const int64_t batch = variation.size(0), nodes = grid.numNodes();
  auto velocity = [&](const at::Tensor& phiTensor) {
    std::vector<int64_t> shape{batch, d};
    for (int a = 0; a < d; ++a) shape.push_back(grid.n[a]);
    at::Tensor v = at::empty(shape, phiTensor.options());
    for (int64_t b = 0; b < batch; ++b) {
      const double* phi = phiTensor.data_ptr<double>() + b * nodes;
      double* vb = v.data_ptr<double>() + b * d * nodes;
      // Central differences inside, one-sided at the walls, along axis a:
      // nodes as (outer, n_a, inner) with inner contiguous.
      int64_t outer = 1;
      for (int a = 0; a < d; ++a) {
        const int64_t n = grid.n[a], inner = nodes / (outer * n);
        double* va = vb + a * nodes;
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t i = 0; i < n; ++i) {
            const int64_t up = std::min(i + 1, n - 1), down = std::max<int64_t>(i - 1, 0);
            const double over = 1.0 / ((up - down) * grid.spacing[a]);
            const double* high = phi + (o * n + up) * inner;
            const double* low = phi + (o * n + down) * inner;
            double* out = va + (o * n + i) * inner;
            for (int64_t k = 0; k < inner; ++k) out[k] = -(high[k] - low[k]) * over;
          }
        outer *= n;
      }
      for (int64_t k = 0; k < nodes; ++k) {
        double speed = 0;
        for (int a = 0; a < d; ++a) speed += vb[a * nodes + k] * vb[a * nodes + k];
        const double factor = std::min(cap / std::max(std::sqrt(speed), 1e-300), 1.0);
        for (int a = 0; a < d; ++a) vb[a * nodes + k] *= factor;
      }
    }
    return v;
  };
  in.explicitVelocity = velocity(variation);
  if (smoothed.defined()) in.smoothedVelocity = velocity(smoothed);
  return true;
}

// The features (B, C, n...) float32 in one pass: density / s_rho, vE / s_v,
// vR / s_v, then the fixed channels (the cat of the general form below).
template <typename Inputs>
at::Tensor assembleFeatures(const Inputs& in, const at::Tensor& fixedChannels, const FeatureScales& s) {
  const int64_t batch = in.density.size(0), nodes = in.density[0].numel(), fixed = fixedChannels.size(1),
                d = in.explicitVelocity.size(1);
  const at::Tensor density = in.density.contiguous(), constants = fixedChannels.contiguous();
  std::vector<int64_t> shape{batch, 1 + 2 * d + fixed};
  shape.insert(shape.end(), in.density.sizes().begin() + 1, in.density.sizes().end());
  at::Tensor features = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  float* f = features.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    float* out = f + b * (1 + 2 * d + fixed) * nodes;
    const double* rho = density.data_ptr<double>() + b * nodes;
    const double* vE = in.explicitVelocity.template data_ptr<double>() + b * d * nodes;
    const double* vR = in.smoothedVelocity.template data_ptr<double>() + b * d * nodes;
    for (int64_t k = 0; k < nodes; ++k) out[k] = static_cast<float>(rho[k] / s.density);
    for (int64_t k = 0; k < d * nodes; ++k) out[nodes + k] = static_cast<float>(vE[k] / s.velocity);
    for (int64_t k = 0; k < d * nodes; ++k) out[(1 + d) * nodes + k] = static_cast<float>(vR[k] / s.velocity);
    const double* c = constants.data_ptr<double>();
    for (int64_t k = 0; k < fixed * nodes; ++k) out[(1 + 2 * d) * nodes + k] = static_cast<float>(c[k]);
  }
  return features;
}

at::Tensor cappedVelocity(const at::Tensor& v, double cap) {
  const at::Tensor speed = v.pow(2).sum(1, true).sqrt();
  return v * (cap / speed.clamp_min(1e-300)).clamp_max(1.0);
}

// d phi / d x_a by central differences, one-sided at the walls.
at::Tensor partialDerivative(const at::Tensor& phi, int axis, double h) {
  const int dim = axis + 1;
  const int64_t n = phi.size(dim);
  const at::Tensor interior = (phi.narrow(dim, 2, n - 2) - phi.narrow(dim, 0, n - 2)) / (2 * h);
  const at::Tensor first = (phi.narrow(dim, 1, 1) - phi.narrow(dim, 0, 1)) / h;
  const at::Tensor last = (phi.narrow(dim, n - 1, 1) - phi.narrow(dim, n - 2, 1)) / h;
  return at::cat({first, interior, last}, dim);
}

at::Tensor gradient(const at::Tensor& phi, const Grid& grid) {
  std::vector<at::Tensor> components;
  for (int a = 0; a < grid.dim; ++a) components.push_back(partialDerivative(phi, a, grid.spacing[a]));
  return at::stack(components, 1);
}

}  // namespace

LearnedOperator::LearnedOperator(OperatorMetadata metadata, std::shared_ptr<VelocityNetwork> network)
    : metadata_(std::move(metadata)), network_(std::move(network)) {
  if (!network_) throw OperatorFileError("an operator needs a network");
  if (network_->inputChannels() != inputChannels(metadata_) || network_->outputChannels() != outputChannels(metadata_))
    throw OperatorFileError("the network's channels (" + std::to_string(network_->inputChannels()) + " in, " +
                            std::to_string(network_->outputChannels()) + " out) do not fit the operator metadata (" +
                            std::to_string(inputChannels(metadata_)) + " in, " +
                            std::to_string(outputChannels(metadata_)) + " out)");
  if (metadata_.libtorchVersion.empty()) metadata_.libtorchVersion = libtorchVersion();
}

LearnedOperator::~LearnedOperator() = default;

std::shared_ptr<LearnedOperator> LearnedOperator::load(const std::string& path, const at::Device& device) {
  std::shared_ptr<LearnedOperator> op;
  if (isOperatorArchive(path)) {
    const OperatorArchive archive = readOperatorArchive(path);
    OperatorMetadata metadata = OperatorMetadata::fromJson(archive.metadata);
    if (metadata.network.kind == "torchscript")
      throw OperatorFileError(path + " says it holds a TorchScript network; load the .pt file instead");
    // A few bytes of metadata can declare a network of many gigabytes:
    // refuse one larger than the weights the file holds before building it.
    int64_t stored = 0;
    for (const auto& entry : archive.tensors) stored += entry.second.numel();
    if (metadata.network.parameterCount(metadata.dim, inputChannels(metadata), outputChannels(metadata)) > stored)
      throw OperatorFileError(path + " declares a larger network than the weights it holds (corrupted file)");
    std::shared_ptr<VelocityNetwork> network;
    try {
      network =
          VelocityNetwork::create(metadata.network, metadata.dim, inputChannels(metadata), outputChannels(metadata), 0);
    } catch (const InvalidParameter& e) {
      throw OperatorFileError(path + " describes an invalid network: " + e.what());
    }
    network->loadParameters(archive.tensors);
    if (metadata.energy.potential == PotentialKind::Values) {
      for (const auto& [name, tensor] : archive.tensors)
        if (name == "potential.values") metadata.energy.potentialValues = tensor.to(at::kDouble);
      if (!metadata.energy.potentialValues.defined())
        throw OperatorFileError(path + " lacks the potential values its energy refers to");
      if (metadata.energy.potentialHash() != archive.metadata.value("potential_hash", std::string()))
        throw OperatorFileError(path + ": the stored potential does not match its hash (corrupted file)");
    }
    op = std::make_shared<LearnedOperator>(std::move(metadata), std::move(network));
  } else if (startsWithZipMagic(path)) {
    OperatorMetadata metadata;
    auto network = loadTorchScriptNetwork(path, [&](const std::string& json) {
      try {
        metadata = OperatorMetadata::fromJson(nlohmann::json::parse(json));
      } catch (const nlohmann::json::exception& e) {
        throw OperatorFileError(path + ": jko_metadata.json is not valid JSON: " + e.what());
      }
      metadata.network.kind = "torchscript";
      return std::make_tuple(metadata.dim, inputChannels(metadata), outputChannels(metadata));
    });
    op = std::make_shared<LearnedOperator>(std::move(metadata), std::move(network));
  } else {
    std::ifstream probe(path);
    if (!probe) throw OperatorFileError("cannot open the operator file " + path + ": check the path");
    throw OperatorFileError(path + " is neither a JKO operator file (.jko) nor a TorchScript module (.pt)");
  }
  op->to(device);
  return op;
}

void LearnedOperator::save(const std::string& path) const {
  if (metadata_.network.kind == "torchscript")
    throw OperatorFileError("a TorchScript operator is saved from PyTorch, not from here");
  // Never write NaN weights over a good operator file: refuse before writing.
  for (const auto& [name, tensor] : network_->namedParameters())
    if (!at::isfinite(tensor).all().item<bool>())
      throw OperatorFileError("the operator's parameter '" + name +
                              "' has NaN or infinite values; nothing was saved to " + path +
                              " (a file there is left as it was): retrain, or resume from a finite checkpoint");
  OperatorArchive archive;
  OperatorMetadata metadata = metadata_;
  metadata.libtorchVersion = libtorchVersion();
  archive.metadata = metadata.toJson();
  for (const auto& [name, tensor] : network_->namedParameters())
    archive.tensors.emplace_back(name, tensor.to(at::kCPU));
  if (metadata_.energy.potential == PotentialKind::Values)
    archive.tensors.emplace_back("potential.values", metadata_.energy.potentialValues.to(at::kCPU, at::kDouble));
  writeOperatorArchive(path, archive);
}

void LearnedOperator::to(const at::Device& device) {
  if (device.is_cuda() && !cudaAvailable())
    throw InvalidParameter("device", device.str(), "this LibTorch has no CUDA device; use cpu");
  network_->to(device);
  device_ = device;
}

std::vector<std::string> LearnedOperator::checkCompatible(const Grid& grid, const EnergySpec* energy, double tau,
                                                          const at::Tensor& rho) const {
  const OperatorMetadata& m = metadata_;
  if (grid.dim != m.dim)
    throw OperatorFileError("this operator was trained on " + std::to_string(m.dim) + "D densities; the data is " +
                            std::to_string(grid.dim) + "D: train or load a " + std::to_string(grid.dim) + "D operator");
  // The learned modes serve the operator's problem and every problem the
  // step's symmetries relate to it (StepSymmetry.h); the operator then steps c rho.
  StepSymmetry related;  // c = 1 where the energy is not given
  if (energy || tau > 0) {
    const EnergySpec& spec = energy ? *energy : m.energy;
    const double mass = rho.defined() ? rho.to(at::kDouble).sum().item<double>() * grid.cellVolume() : 0;
    const double problemTau = tau > 0 ? tau : m.tau;
    const StepSymmetry symmetry = relateToOperator(m, spec, problemTau, grid.dim, mass);
    if (!symmetry.exact)
      throw OperatorFileError("this operator was trained for " + m.energy.describe() + ", tau = " + formatValue(m.tau) +
                              ", not for " + spec.describe() + ", tau = " + formatValue(problemTau) + " (" +
                              symmetry.difference + "); it " + describeCoverage(m) +
                              ": choose such values, the Auto solver, or train a new operator");
    related = symmetry;
  }
  if (m.energy.potential == PotentialKind::Values && m.energy.potentialValues.defined() &&
      m.energy.potentialValues.sizes() != at::IntArrayRef(grid.shape()))
    throw OperatorFileError("this operator's potential is an array on another grid; it runs on that grid only");

  std::vector<RangeWarning> warnings = checkGridAgainstTraining(m, grid);
  if (rho.defined())
    for (RangeWarning& w : checkDensityAgainstTraining(m, grid, rho, related)) warnings.push_back(std::move(w));
  return messagesOf(warnings);
}

LearnedOperator::Use LearnedOperator::checkUse(const Grid& grid, const EnergySpec& energy, double tau,
                                               const at::Tensor& rho0, bool firstGuess) const {
  Use use;
  const double mass = rho0.to(at::kDouble).sum().item<double>() * grid.cellVolume();
  use.symmetry = relateToOperator(metadata_, energy, tau, grid.dim, mass);
  if (!use.symmetry.exact) use.symmetry = StepSymmetry();  // Auto: the operator's step as a first guess
  if (!use.symmetry.note.empty()) use.notes.push_back(use.symmetry.note);
  use.warnings =
      checkCompatible(grid, firstGuess ? nullptr : &energy, firstGuess ? 0 : tau, firstGuess ? at::Tensor() : rho0);
  if (firstGuess) {
    for (RangeWarning& w : checkDensityAgainstTraining(metadata_, grid, rho0, use.symmetry))
      use.warnings.push_back(std::move(w.message));
    for (RangeWarning& w : checkProblemAgainstTraining(metadata_, energy, tau, grid.dim, mass))
      use.warnings.push_back(std::move(w.message));
  }
  return use;
}

bool LearnedOperator::sameEnergy(const EnergySpec& a, const EnergySpec& b) const {
  // An operator of one energy is only ever asked for that energy.
  return !metadata_.conditioning.any() || a.sameAs(b, nullptr, metadata_.dim);
}

std::shared_ptr<const JkoObjective> LearnedOperator::objectiveOn(const Grid& grid, const EnergySpec* energy) const {
  const EnergySpec& spec = energy ? *energy : metadata_.energy;
  std::lock_guard<std::mutex> lock(cacheMutex());
  if (!cachedObjective_ || !cachedObjective_->grid().sameAs(grid) ||
      !sameEnergy(cachedObjective_->energy().spec(), spec)) {
    auto bound = std::make_shared<const Energy>(spec, grid);
    cachedObjective_ = std::make_shared<const JkoObjective>(bound, metadata_.tau);
  }
  return cachedObjective_;
}

std::shared_ptr<const Energy> LearnedOperator::energyOn(const Grid& grid) const {
  return objectiveOn(grid)->energyPointer();
}

Grid LearnedOperator::networkGrid(const Grid& grid) const {
  std::array<int64_t, 3> cells{1, 1, 1};
  std::array<double, 3> lower{0, 0, 0}, upper{1, 1, 1};
  for (int a = 0; a < grid.dim; ++a) {
    cells[a] = std::min<int64_t>(grid.n[a], metadata_.network.grid);
    lower[a] = grid.boxLower(a);
    upper[a] = grid.boxUpper(a);
  }
  return Grid::box(grid.dim, cells, lower, upper);
}

std::shared_ptr<const Energy> LearnedOperator::networkEnergy(const Energy& energy) const {
  const EnergySpec& spec = energy.spec();
  if (spec.potential != PotentialKind::Values) return networkEnergy(spec, energy.grid(), at::Tensor());
  const Grid coarse = networkGrid(energy.grid());
  return networkEnergy(spec, energy.grid(), averageOnto(energy.potentialOnGrid().unsqueeze(0), coarse)[0]);
}

std::shared_ptr<const Energy> LearnedOperator::networkEnergy(const EnergySpec& fineSpec, const Grid& grid,
                                                             const at::Tensor& averagedPotential) const {
  const Grid coarse = networkGrid(grid);
  std::lock_guard<std::mutex> lock(cacheMutex());
  if (!cachedNetworkEnergy_ || !cachedNetworkEnergy_->grid().sameAs(coarse) ||
      !sameEnergy(cachedNetworkEnergy_->spec(), fineSpec)) {
    EnergySpec spec = fineSpec;
    if (spec.potential == PotentialKind::Values) spec.potentialValues = averagedPotential;
    cachedNetworkEnergy_ = std::make_shared<const Energy>(spec, coarse);
  }
  return cachedNetworkEnergy_;
}

std::shared_ptr<const LearnedOperator::FeatureConstants> LearnedOperator::featureConstants(
    const Energy& energy, const at::Device& device) const {
  const Grid& grid = energy.grid();
  {
    std::lock_guard<std::mutex> lock(cacheMutex());
    if (cachedFeatureConstants_ && cachedFeatureConstants_->grid.sameAs(grid) &&
        cachedFeatureConstants_->device == device && sameEnergy(cachedFeatureConstants_->energy, energy.spec()))
      return cachedFeatureConstants_;
  }
  auto constants = std::make_shared<FeatureConstants>();
  constants->grid = grid;
  constants->energy = energy.spec();
  constants->device = device;
  const auto options = at::TensorOptions().dtype(at::kDouble).device(device);
  const FeatureScales& s = metadata_.scales;
  // kappa of the resolvent: the trained diffusivity, scaled with D for an
  // operator conditioned on D (the linearised implicit step of the energy it steps).
  const Conditioning& conditioning = metadata_.conditioning;
  const double kappa = s.diffusivity * (conditioning.onDiffusion() && metadata_.energy.diffusion > 0
                                            ? energy.spec().diffusion / metadata_.energy.diffusion
                                            : 1.0);
  constants->resolventGain = resolventGain(grid, metadata_.tau * kappa, options);
  for (int a = 0; a < grid.dim; ++a) constants->cosines[a] = cosineBasis(grid.n[a], options);
  if (grid.dim == 2) {
    if (device.is_cpu()) {
      auto modes = [&](int64_t n, int64_t first) { return at::arange(first, n, 2, options.dtype(at::kLong)); };
      auto fold = [&](const at::Tensor& q, int64_t first) {
        const int64_t n = q.size(0), rows = first == 0 ? (n + 1) / 2 : n / 2;
        return q.narrow(0, 0, rows).index_select(1, modes(n, first)).contiguous();
      };
      constants->evenCosines0 = fold(constants->cosines[0], 0);
      constants->oddCosines0 = fold(constants->cosines[0], 1);
      constants->evenCosines1 = fold(constants->cosines[1], 0);
      constants->oddCosines1 = fold(constants->cosines[1], 1);
      const at::Tensor order0 = at::cat({modes(grid.n[0], 0), modes(grid.n[0], 1)});
      const at::Tensor order1 = at::cat({modes(grid.n[1], 0), modes(grid.n[1], 1)});
      constants->foldedGain = constants->resolventGain.index_select(0, order0).index_select(1, order1).contiguous();
    }
  }
  std::vector<at::Tensor> channels;
  for (int a = 0; a < grid.dim; ++a)
    channels.push_back((grid.coordinate(a, options) - grid.boxLower(a)) / grid.boxLength(a));
  if (metadata_.energy.potential != PotentialKind::None)
    channels.push_back(energy.potentialOnGrid(device) / s.potential);
  // A conditioned operator: its parameters as constant channels.
  for (double value : metadata_.conditioning.channelValues(energy.spec()))
    channels.push_back(at::full(grid.shape(), value, options));
  constants->fixedChannels = at::stack(channels, 0).unsqueeze(0);
  std::lock_guard<std::mutex> lock(cacheMutex());
  cachedFeatureConstants_ = constants;
  return constants;
}

LearnedOperator::NetworkInputs LearnedOperator::networkInputs(const Energy& energy, const at::Tensor& rho) const {
  const bool coarsen = !networkGrid(energy.grid()).sameAs(energy.grid());
  const std::shared_ptr<const Energy> coarseEnergy = coarsen ? networkEnergy(energy) : nullptr;
  return networkInputs(coarsen ? *coarseEnergy : energy, rho, wholeGridWork(energy));
}

LearnedOperator::FineGridWork LearnedOperator::wholeGridWork(const Energy& energy) const {
  FineGridWork fine;
  fine.grid = energy.grid();
  fine.average = [grid = energy.grid()](const at::Tensor& field, const Grid& coarse) {
    return coarse.sameAs(grid) ? field : averageOnto(field, coarse);
  };
  fine.interpolate = [grid = energy.grid()](const at::Tensor& field) { return interpolateOnto(field, grid); };
  fine.baseVelocity = [this, &energy](JkoState& state) {
    const auto objective = objectiveOn(energy.grid(), &energy.spec());
    state = objective->prepare(state.density);
    return linearizedOn(objective)->displacement(state) / metadata_.tau;
  };
  return fine;
}

LearnedOperator::NetworkInputs LearnedOperator::networkInputs(const Energy& E, const at::Tensor& rho,
                                                              const FineGridWork& fine) const {
  const FeatureScales& s = metadata_.scales;
  NetworkInputs in;
  in.grid = E.grid();
  const at::Tensor r = rho.to(at::kDouble);
  in.density = fine.average(r, in.grid);

  // vE = -grad(dE/drho); vR smooths the internal part with the resolvent of
  // the linearised implicit step, (1 - tau kappa Lap)^-1, Neumann walls.
  const at::Tensor variation = E.firstVariation(in.density);
  const std::shared_ptr<const FeatureConstants> constants = featureConstants(E, r.device());
  // On the linearised base the network's third input group is the base
  // averaged onto its grid (below), not the resolvent's velocity: skip the
  // resolvent's transforms.
  const bool linearizedBase = metadata_.network.base == "linearized";
  const double c = linearizedBase ? 0.0 : metadata_.tau * s.diffusivity;
  const at::Tensor internal = c > 0 ? E.internalVariation(in.density) : at::Tensor();
  at::Tensor smoothedInternal = internal;
  if (c > 0 && in.grid.dim == 2 && constants->foldedGain.defined() && internal.scalar_type() == at::kDouble &&
      !(at::GradMode::is_enabled() && internal.requires_grad())) {
    const at::Tensor field = internal.contiguous();
    smoothedInternal = at::empty_like(field);
    const int64_t n0 = in.grid.n[0], n1 = in.grid.n[1];
    for (int64_t b = 0; b < field.size(0); ++b)
      foldedResolvent2D(field.data_ptr<double>() + b * n0 * n1, smoothedInternal.data_ptr<double>() + b * n0 * n1, n0,
                        n1, constants->evenCosines0.data_ptr<double>(), constants->oddCosines0.data_ptr<double>(),
                        constants->evenCosines1.data_ptr<double>(), constants->oddCosines1.data_ptr<double>(),
                        constants->foldedGain.data_ptr<double>());
  } else if (c > 0) {
    smoothedInternal = resolventByCosines(internal, constants->cosines, constants->resolventGain);
  }
  const at::Tensor smoothed = c > 0 ? variation - internal + smoothedInternal : variation;
  const double hMin = in.grid.smallestSpacing();
  // Cap |tau v| at capCells cells: the entropy's clamped log makes v
  // unbounded at vacuum fronts, where almost no mass moves anyway.
  const double cap = s.capCells * hMin / metadata_.tau;
  if (linearizedBase) {
    // The linearised implicit step on the density's own grid, and its
    // average on the network grid as the network's third input group.
    in.state.density = r;
    in.baseVelocity = fine.baseVelocity(in.state);
  }
  // The network's inputs without the modes finer than the gate's blocks
  // (base_smooth_inputs): the gate cannot react to them.
  const NetworkConfig& net = metadata_.network;
  const int64_t inputBlock =
      linearizedBase && net.baseSmoothInputs && net.baseBlock > 1
          ? std::max<int64_t>(1, (net.baseBlock * in.grid.n[0] + fine.grid.n[0] / 2) / fine.grid.n[0])
          : 1;
  auto smoothInputs = [&] {
    if (inputBlock <= 1) return;
    in.density = blockSmooth(in.density, in.grid, inputBlock, true);
    in.explicitVelocity = blockSmooth(in.explicitVelocity, in.grid, inputBlock, false);
    in.smoothedVelocity = blockSmooth(in.smoothedVelocity, in.grid, inputBlock, false);
  };
  const bool looped = cappedVelocities(variation, linearizedBase ? at::Tensor() : smoothed, in.grid, cap, in);
  if (!looped) in.explicitVelocity = cappedVelocity(gradient(variation, in.grid).neg(), cap);
  if (linearizedBase)
    in.smoothedVelocity = fine.average(in.baseVelocity, in.grid);
  else if (!looped)
    in.smoothedVelocity = cappedVelocity(gradient(smoothed, in.grid).neg(), cap);
  smoothInputs();
  auto loopable = [](const at::Tensor& t) { return t.is_contiguous() && t.scalar_type() == at::kDouble; };
  if (looped && loopable(in.explicitVelocity) && loopable(in.smoothedVelocity)) {
    in.features = assembleFeatures(in, constants->fixedChannels, s);
    return in;
  }

  std::vector<at::Tensor> channels{(in.density / s.density).unsqueeze(1), in.explicitVelocity / s.velocity,
                                   in.smoothedVelocity / s.velocity};
  std::vector<int64_t> expanded = constants->fixedChannels.sizes().vec();
  expanded[0] = r.size(0);
  channels.push_back(constants->fixedChannels.expand(expanded));
  in.features = at::cat(channels, 1).to(at::kFloat);
  return in;
}

namespace {
at::Tensor blockSmooth(const at::Tensor& field, const Grid& grid, int64_t block, bool scalar) {
  if (block <= 1) return field;
  std::array<int64_t, 3> cells{1, 1, 1};
  std::array<double, 3> lower{0, 0, 0}, upper{1, 1, 1};
  for (int a = 0; a < grid.dim; ++a) {
    cells[a] = std::max<int64_t>(2, grid.n[a] / block);
    lower[a] = grid.boxLower(a);
    upper[a] = grid.boxUpper(a);
  }
  const Grid blocks = Grid::box(grid.dim, cells, lower, upper);
  const at::Tensor x = scalar ? field.unsqueeze(1) : field;
  const at::Tensor y = interpolateOnto(averageOnto(x.contiguous(), blocks), grid);
  return scalar ? y.squeeze(1) : y;
}
}  // namespace

// Separable sliding windows on the CPU: LibTorch's max pooling took
// 0.39 ms on 64^2, these loops a few microseconds.
at::Tensor localContrast(const at::Tensor& rho, int dim, int64_t radius) {
  const at::Tensor x = rho.detach().to(at::kCPU, at::kDouble).contiguous();
  at::Tensor hi = x.clone(), lo = x.clone();
  for (int a = 0; a < dim; ++a) {
    const int64_t n = x.size(1 + a), stride = x.stride(1 + a);
    const int64_t lines = x.numel() / n;
    std::vector<double> upper(n), lower(n);
    double* const h = hi.data_ptr<double>();
    double* const l = lo.data_ptr<double>();
    for (int64_t i = 0; i < lines; ++i) {
      // The i-th line along axis a (x is (B, n...), contiguous): its first node.
      const int64_t base = (i / stride) * stride * n + i % stride;
      for (int64_t k = 0; k < n; ++k) {
        double mx = h[base + k * stride], mn = l[base + k * stride];
        for (int64_t j = std::max<int64_t>(0, k - radius); j <= std::min(n - 1, k + radius); ++j) {
          mx = std::max(mx, h[base + j * stride]);
          mn = std::min(mn, l[base + j * stride]);
        }
        upper[k] = mx;
        lower[k] = mn;
      }
      for (int64_t k = 0; k < n; ++k) {
        h[base + k * stride] = upper[k];
        l[base + k * stride] = lower[k];
      }
    }
  }
  return ((hi - lo) / (hi + lo).clamp_min(1e-300)).to(rho.device());
}

at::Tensor LearnedOperator::baseVelocity(const Energy& energy, const at::Tensor& rho) const {
  const NetworkInputs in = networkInputs(energy, rho);
  return in.baseVelocity.defined() ? in.baseVelocity : interpolateOnto(in.smoothedVelocity, energy.grid());
}

LinearizedStepOptions LearnedOperator::baseOptions() const {
  LinearizedStepOptions options;
  options.iterations = metadata_.network.baseIterations;
  options.stabilisation = metadata_.network.baseStabilisation;
  options.smoothing = metadata_.network.baseSmoothing;
  options.furtherNewtonIterations = furtherNewton_;
  return options;
}

std::shared_ptr<const LinearizedStep> LearnedOperator::linearizedOn(
    const std::shared_ptr<const JkoObjective>& objective) const {
  std::lock_guard<std::mutex> lock(cacheMutex());
  if (!cachedLinearized_ || &cachedLinearized_->objective() != objective.get()) {
    cachedLinearized_ = std::make_shared<const LinearizedStep>(objective, baseOptions());
  }
  return cachedLinearized_;
}

at::Tensor LearnedOperator::velocity(const Energy& energy, const at::Tensor& rho) const {
  return velocity(energy, networkInputs(energy, rho.to(device_)));
}

at::Tensor LearnedOperator::velocity(const Energy& energy, const NetworkInputs& in) const {
  return velocity(in, wholeGridWork(energy));
}

at::Tensor LearnedOperator::velocity(const NetworkInputs& in, const FineGridWork& fine) const {
  const at::Tensor out = network_->forward(in.features);
  const double scale = metadata_.scales.velocity;
  if (metadata_.network.kind == "torchscript") return fine.interpolate(out.to(at::kDouble) * scale);
  if (metadata_.network.base == "linearized") {
    // v = vL + c tanh(a) P(vL) + s_v beta tanh(b / beta): a gate in (0, 2) on
    // the smooth part P(vL) of the linearised step (its averages over blocks
    // of `baseBlock` cells, interpolated back), the rest of vL ungated, and a
    // correction bounded by beta velocity scales, the network's outputs
    // interpolated from its grid. A mode's factor f becomes
    // 1 - (1 + c tanh(a) p)(1 - f), p in [0, 1] the mode's share in P: never
    // growing, and the deposit's own for modes finer than the blocks.
    // c = min(1, contrast / gateContrast) on the network grid: the gate
    // corrects what the linearisation misses, nothing on a near-constant
    // state (docs/design.md, "The gate and the density's contrast").
    const double beta = metadata_.network.baseCorrection;
    const at::Tensor o = out.to(at::kDouble);
    const int64_t d = in.baseVelocity.size(1);
    at::Tensor coarseGate = o.narrow(1, 0, 1).tanh();
    if (metadata_.network.gateContrast > 0)
      coarseGate = coarseGate * localContrast(in.density, in.grid.dim, kGateContrastRadius)
                                    .div(metadata_.network.gateContrast)
                                    .clamp_max(1)
                                    .unsqueeze(1)
                                    .to(coarseGate.scalar_type());
    const at::Tensor gate = fine.interpolate(coarseGate);
    at::Tensor smooth = in.baseVelocity;
    if (metadata_.network.baseBlock > 1) {
      const Grid& grid = fine.grid;
      std::array<int64_t, 3> cells{1, 1, 1};
      std::array<double, 3> lower{0, 0, 0}, upper{1, 1, 1};
      for (int a = 0; a < grid.dim; ++a) {
        cells[a] = std::max<int64_t>(2, grid.n[a] / metadata_.network.baseBlock);
        lower[a] = grid.boxLower(a);
        upper[a] = grid.boxUpper(a);
      }
      smooth = fine.interpolate(fine.average(in.baseVelocity, Grid::box(grid.dim, cells, lower, upper)));
    }
    at::Tensor v = in.baseVelocity + gate * smooth;
    if (beta > 0) v = v + fine.interpolate((o.narrow(1, 1, d) / beta).tanh() * (beta * scale));
    return v;
  }
  // v = a1 vE + (1 + a2) vR + b v_ref: gates and a correction of the base velocities.
  return fine.interpolate(gatedVelocity(out, in.explicitVelocity, in.smoothedVelocity, scale));
}

LearnedStep LearnedOperator::step(const at::Tensor& rho, const Grid& grid, const EnergySpec* energy,
                                  double correctionTolerance) const {
  at::NoGradGuard noGrad;
  const bool batched = rho.dim() == grid.dim + 1;
  const at::Tensor r = (batched ? rho : rho.unsqueeze(0)).to(device_, at::kDouble);
  // One density on up to 2^16 nodes runs on one thread: a step is ~300 small
  // operations, and on two threads each one waits for the other thread
  // (slower here by a quarter when idle, and up to 100x when another process
  // holds a core). Larger grids and batches use every thread.
  const bool serial = device_.is_cpu() && r.size(0) == 1 && grid.numNodes() <= kSerialStepNodes;
  const ScopedIntraOpThreads threads(serial ? 1 : 0);
  if (device_.is_cpu()) wakeTaskTeam();  // its helpers run the network once the features are ready
  validateDensity(r, grid);
  if (energy && !metadata_.conditioning.any() && !energy->sameAs(metadata_.energy, nullptr, grid.dim))
    throw InvalidParameter(
        "energy", energy->describe(),
        "this operator is not conditioned on energy parameters: it steps " + metadata_.energy.describe() + " only");
  const auto objective = objectiveOn(grid, energy);
  const PushForward& push = objective->pushForward();
  const NetworkInputs in = networkInputs(objective->energy(), r);
  at::Tensor v = velocity(objective->energy(), in);
  // Gauss-Newton corrections of the learned map (docs/design.md, "Gauss-Newton
  // corrections of the learned map"), from the deposit they computed; the
  // linearised base has prepared the step's state already.
  const int corrections = gaussNewton();
  at::Tensor deposited;
  if (corrections > 0) {
    const RefinedDisplacement refined =
        linearizedOn(objective)->refine(in.state.density.defined() ? in.state : objective->prepare(r),
                                        metadata_.tau * v, corrections, std::max(0.0, correctionTolerance));
    v = refined.displacement / metadata_.tau;
    deposited = refined.deposited;
  } else {
    deposited = push.deposit(push.prefilter(r), metadata_.tau * v);
  }
  const at::Tensor next = push.limit(deposited, push.mass(r));
  LearnedStep out;
  out.next = (batched ? next : next[0]).to(rho.device());
  out.velocity = (batched ? v : v[0]).to(rho.device());
  return out;
}

int LearnedOperator::gaussNewton() const {
  if (metadata_.network.kind == "torchscript") return 0;
  return gaussNewtonOverride_ >= 0 ? gaussNewtonOverride_ : metadata_.network.gaussNewton;
}

void LearnedOperator::setFurtherNewton(int iterations) {
  if (iterations < 0 || iterations > 50)
    throw InvalidParameter("Gauss-Newton iterations of the further corrections", formatValue(iterations),
                           "must be 0 (quasi-Newton) to 50");
  std::lock_guard<std::mutex> lock(cacheMutex());
  furtherNewton_ = iterations;
  cachedLinearized_.reset();
}

void LearnedOperator::setGaussNewton(int corrections) {
  if (corrections < 0 || corrections > 20)
    throw InvalidParameter("Gauss-Newton corrections", formatValue(corrections), "must be 0 to 20");
  gaussNewtonOverride_ = corrections;
}

std::vector<LearnedStep> LearnedOperator::rollout(const at::Tensor& rho0, const Grid& grid, int steps,
                                                  const ProgressCallback& progress) const {
  if (steps < 0) throw InvalidParameter("steps", formatValue(steps), "must be >= 0");
  std::vector<LearnedStep> frames;
  at::Tensor rho = rho0;
  for (int k = 0; k < steps; ++k) {
    frames.push_back(step(rho, grid));
    rho = frames.back().next;
    ProgressEvent event;
    event.stage = "learned rollout";
    event.step = k + 1;
    event.fraction = static_cast<double>(k + 1) / steps;
    event.message = "learned step " + std::to_string(k + 1) + " of " + std::to_string(steps);
    reportProgress(progress, event);
  }
  return frames;
}

}  // namespace jko
