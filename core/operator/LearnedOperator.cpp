#include "operator/LearnedOperator.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>

#include "numerics/Errors.h"
#include "operator/OperatorFile.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {}  // namespace

// Features: rho, vE, vR, coordinates (dim each) and V where there is one.
int LearnedOperator::inputChannels(const OperatorMetadata& m) {
  return 1 + 3 * m.dim + (m.energy.potential != PotentialKind::None ? 1 : 0);
}

// Our networks output two gates and a correction (2 + dim channels); a
// TorchScript module outputs the velocity itself (dim channels).
int LearnedOperator::outputChannels(const OperatorMetadata& m) {
  return m.network.kind == "torchscript" ? m.dim : 2 + m.dim;
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

// Cell averages of a batch of fields (B, C..., n...) onto a coarser grid over the same box.
at::Tensor averageOnto(const at::Tensor& field, const Grid& coarse) {
  const bool scalar = field.dim() == coarse.dim + 1;
  const at::Tensor x = scalar ? field.unsqueeze(1) : field;
  const at::Tensor y = coarse.dim == 2 ? at::adaptive_avg_pool2d(x, {coarse.n[0], coarse.n[1]})
                                       : at::adaptive_avg_pool3d(x, {coarse.n[0], coarse.n[1], coarse.n[2]});
  return scalar ? y.squeeze(1) : y;
}

// Linear interpolation of (B, C, n_c...) onto the nodes of `fine` (cell
// centres to cell centres: align_corners = false).
at::Tensor interpolateOnto(const at::Tensor& field, const Grid& fine) {
  bool same = true;
  for (int a = 0; a < fine.dim; ++a) same = same && field.size(2 + a) == fine.n[a];
  if (same) return field;
  return fine.dim == 2 ? at::upsample_bilinear2d(field, {fine.n[0], fine.n[1]}, false)
                       : at::upsample_trilinear3d(field, {fine.n[0], fine.n[1], fine.n[2]}, false);
}

// (1 - c Lap)^-1 f with Neumann walls, by the FFT of the even extension
// (cell-centred nodes): eigenvalues (2 - 2 cos(pi j / n)) / h^2 per axis.
at::Tensor resolventDenominator(const Grid& grid, double c, const at::TensorOptions& options) {
  const int d = grid.dim;
  at::Tensor eigenvalue = at::zeros({1}, options);
  for (int a = 0; a < d; ++a) {
    const int64_t count = a + 1 < d ? 2 * grid.n[a] : grid.n[a] + 1;
    const at::Tensor j = at::arange(count, options);
    std::vector<int64_t> view(d + 1, 1);
    view[a + 1] = count;
    eigenvalue =
        eigenvalue + ((2.0 - 2.0 * at::cos(M_PI * j / grid.n[a])) / (grid.spacing[a] * grid.spacing[a])).view(view);
  }
  return 1.0 + c * eigenvalue;
}

at::Tensor resolvent(const at::Tensor& f, const Grid& grid, const at::Tensor& denominator) {
  const int d = grid.dim;
  at::Tensor x = f;
  std::vector<int64_t> dims, sizes;
  for (int a = 0; a < d; ++a) {
    x = at::cat({x, x.flip(a + 1)}, a + 1);
    dims.push_back(a + 1);
    sizes.push_back(2 * grid.n[a]);
  }
  const at::Tensor spectrum = at::fft_rfftn(x, c10::nullopt, at::IntArrayRef(dims));
  at::Tensor y = at::fft_irfftn(spectrum / denominator, at::IntArrayRef(sizes), at::IntArrayRef(dims));
  for (int a = 0; a < d; ++a) y = y.narrow(a + 1, 0, grid.n[a]);
  return y;
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

std::vector<std::string> LearnedOperator::checkCompatible(const Grid& grid, const EnergySpec* energy,
                                                          double tau) const {
  const OperatorMetadata& m = metadata_;
  if (grid.dim != m.dim)
    throw OperatorFileError("this operator was trained on " + std::to_string(m.dim) + "D densities; the data is " +
                            std::to_string(grid.dim) + "D: train or load a " + std::to_string(grid.dim) + "D operator");
  std::string difference;
  if (energy && !m.energy.sameAs(*energy, &difference, grid.dim))
    throw OperatorFileError("this operator was trained for " + m.energy.describe() + ", not for " + energy->describe() +
                            " (" + difference + "): choose the operator's energy or train a new operator");
  if (tau > 0 && std::abs(tau - m.tau) > 1e-9 * m.tau)
    throw OperatorFileError("this operator was trained for tau = " + formatValue(m.tau) +
                            ", not tau = " + formatValue(tau) + ": use its tau or train a new operator");
  if (m.energy.potential == PotentialKind::Values && m.energy.potentialValues.defined() &&
      m.energy.potentialValues.sizes() != at::IntArrayRef(grid.shape()))
    throw OperatorFileError("this operator's potential is an array on another grid; it runs on that grid only");

  std::vector<std::string> warnings;
  const TrainingRanges& r = m.ranges;
  for (int a = 0; a < grid.dim; ++a)
    if (std::abs(grid.boxLength(a) - r.boxLength[a]) > 0.01 * r.boxLength[a])
      warnings.push_back("box length " + formatValue(grid.boxLength(a)) + " along axis " + std::to_string(a) +
                         " differs from the training box (" + formatValue(r.boxLength[a]) +
                         "): porous-medium and interaction dynamics depend on it");
  for (int a = 0; a < grid.dim; ++a)
    if (r.gridMax > 0 && (grid.n[a] < r.gridMin / 2 || grid.n[a] > 4 * r.gridMax))
      warnings.push_back("grid size " + std::to_string(grid.n[a]) + " is far from the training grids (" +
                         std::to_string(r.gridMin) + "-" + std::to_string(r.gridMax) + ")");
  return warnings;
}

std::shared_ptr<const JkoObjective> LearnedOperator::objectiveOn(const Grid& grid) const {
  std::lock_guard<std::mutex> lock(cacheMutex());
  if (!cachedObjective_ || !cachedObjective_->grid().sameAs(grid)) {
    auto energy = std::make_shared<const Energy>(metadata_.energy, grid);
    cachedObjective_ = std::make_shared<const JkoObjective>(energy, metadata_.tau);
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
  const Grid coarse = networkGrid(energy.grid());
  std::lock_guard<std::mutex> lock(cacheMutex());
  if (!cachedNetworkEnergy_ || !cachedNetworkEnergy_->grid().sameAs(coarse)) {
    EnergySpec spec = energy.spec();
    if (spec.potential == PotentialKind::Values)
      spec.potentialValues = averageOnto(energy.potentialOnGrid().unsqueeze(0), coarse)[0];
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
        cachedFeatureConstants_->device == device)
      return cachedFeatureConstants_;
  }
  auto constants = std::make_shared<FeatureConstants>();
  constants->grid = grid;
  constants->device = device;
  const auto options = at::TensorOptions().dtype(at::kDouble).device(device);
  const FeatureScales& s = metadata_.scales;
  constants->resolventDenominator = resolventDenominator(grid, metadata_.tau * s.diffusivity, options);
  std::vector<at::Tensor> channels;
  for (int a = 0; a < grid.dim; ++a)
    channels.push_back((grid.coordinate(a, options) - grid.boxLower(a)) / grid.boxLength(a));
  if (metadata_.energy.potential != PotentialKind::None)
    channels.push_back(energy.potentialOnGrid(device) / s.potential);
  constants->fixedChannels = at::stack(channels, 0).unsqueeze(0);
  std::lock_guard<std::mutex> lock(cacheMutex());
  cachedFeatureConstants_ = constants;
  return constants;
}

LearnedOperator::NetworkInputs LearnedOperator::networkInputs(const Energy& energy, const at::Tensor& rho) const {
  const FeatureScales& s = metadata_.scales;
  NetworkInputs in;
  const bool coarsen = !networkGrid(energy.grid()).sameAs(energy.grid());
  const std::shared_ptr<const Energy> coarseEnergy = coarsen ? networkEnergy(energy) : nullptr;
  const Energy& E = coarsen ? *coarseEnergy : energy;
  in.grid = E.grid();
  const at::Tensor r = rho.to(at::kDouble);
  in.density = coarsen ? averageOnto(r, in.grid) : r;

  // vE = -grad(dE/drho); vR smooths the internal part with the resolvent of
  // the linearised implicit step, (1 - tau kappa Lap)^-1, Neumann walls.
  const at::Tensor variation = E.firstVariation(in.density);
  const at::Tensor internal = E.internalVariation(in.density);
  const std::shared_ptr<const FeatureConstants> constants = featureConstants(E, r.device());
  const double c = metadata_.tau * s.diffusivity;
  const at::Tensor smoothed =
      variation - internal + (c > 0 ? resolvent(internal, in.grid, constants->resolventDenominator) : internal);
  double hMin = 1e300;
  for (int a = 0; a < in.grid.dim; ++a) hMin = std::min(hMin, in.grid.spacing[a]);
  // Cap |tau v| at capCells cells: the entropy's clamped log makes v
  // unbounded at vacuum fronts, where almost no mass moves anyway.
  const double cap = s.capCells * hMin / metadata_.tau;
  in.explicitVelocity = cappedVelocity(gradient(variation, in.grid).neg(), cap);
  in.smoothedVelocity = cappedVelocity(gradient(smoothed, in.grid).neg(), cap);

  std::vector<at::Tensor> channels{(in.density / s.density).unsqueeze(1), in.explicitVelocity / s.velocity,
                                   in.smoothedVelocity / s.velocity};
  std::vector<int64_t> expanded = constants->fixedChannels.sizes().vec();
  expanded[0] = r.size(0);
  channels.push_back(constants->fixedChannels.expand(expanded));
  in.features = at::cat(channels, 1).to(at::kFloat);
  return in;
}

at::Tensor LearnedOperator::baseVelocity(const Energy& energy, const at::Tensor& rho) const {
  return interpolateOnto(networkInputs(energy, rho).smoothedVelocity, energy.grid());
}

at::Tensor LearnedOperator::velocity(const Energy& energy, const at::Tensor& rho) const {
  const NetworkInputs in = networkInputs(energy, rho.to(device_));
  const at::Tensor out = network_->forward(in.features).to(at::kDouble);
  const double scale = metadata_.scales.velocity;
  at::Tensor v;
  if (metadata_.network.kind == "torchscript") {
    v = out * scale;
  } else {
    // v = a1 vE + (1 + a2) vR + b v_ref: gates and a correction of the base velocities.
    const at::Tensor a1 = out.narrow(1, 0, 1), a2 = out.narrow(1, 1, 1), b = out.narrow(1, 2, metadata_.dim);
    v = a1 * in.explicitVelocity + (1.0 + a2) * in.smoothedVelocity + b * scale;
  }
  return interpolateOnto(v, energy.grid());
}

LearnedStep LearnedOperator::step(const at::Tensor& rho, const Grid& grid) const {
  at::NoGradGuard noGrad;
  const bool batched = rho.dim() == grid.dim + 1;
  const at::Tensor r = (batched ? rho : rho.unsqueeze(0)).to(device_, at::kDouble);
  // One density on up to 2^16 nodes runs on one thread: a step is ~300 small
  // operations, and on two threads each one waits for the other thread
  // (slower here by a quarter when idle, and up to 100x when another process
  // holds a core). Larger grids and batches use every thread.
  const bool serial = device_.is_cpu() && r.size(0) == 1 && grid.numNodes() <= kSerialStepNodes;
  const ScopedIntraOpThreads threads(serial ? 1 : 0);
  validateDensity(r, grid);
  const auto objective = objectiveOn(grid);
  const PushForward& push = objective->pushForward();
  const at::Tensor v = velocity(objective->energy(), r);
  const at::Tensor next = push.limit(push.deposit(push.prefilter(r), metadata_.tau * v), push.mass(r));
  LearnedStep out;
  out.next = (batched ? next : next[0]).to(rho.device());
  out.velocity = (batched ? v : v[0]).to(rho.device());
  return out;
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
