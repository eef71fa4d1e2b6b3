#include "operator/OperatorMetadata.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "numerics/Errors.h"

namespace jko {
namespace {

// nlohmann's get<int>() converts with a plain cast: a float outside int's
// range (1e300) is undefined behaviour, and an integer outside it (2^32 + 16)
// wraps silently. A field read from a file gets neither: it must hold an
// integer (an integral float such as 2.0 is accepted) that fits the type.
template <typename Int>
Int integerField(const nlohmann::json& value, const std::string& name) {
  static_assert(std::is_signed_v<Int>, "the float range test below assumes a signed type");
  constexpr auto lowest = std::numeric_limits<Int>::min();
  constexpr auto highest = std::numeric_limits<Int>::max();
  const std::string allowed =
      "must be an integer between " + std::to_string(lowest) + " and " + std::to_string(highest);
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(highest)) throw InvalidParameter(name, value.dump(), allowed);
    return static_cast<Int>(v);
  }
  if (value.is_number_integer()) {
    const auto v = value.get<int64_t>();
    if (v < static_cast<int64_t>(lowest) || v > static_cast<int64_t>(highest))
      throw InvalidParameter(name, value.dump(), allowed);
    return static_cast<Int>(v);
  }
  if (value.is_number_float()) {
    const double v = value.get<double>();
    // Compared as doubles, and -lowest is a power of two (exact), so the
    // range test itself cannot round an out-of-range value into range.
    if (!(v == std::floor(v) && v >= static_cast<double>(lowest) && v < -static_cast<double>(lowest)))
      throw InvalidParameter(name, value.dump(), allowed);
    return static_cast<Int>(v);
  }
  throw InvalidParameter(name, value.dump(), allowed);
}

template <typename Int>
Int integerField(const nlohmann::json& object, const char* key, const std::string& name, Int fallback) {
  return object.contains(key) ? integerField<Int>(object.at(key), name) : fallback;
}

}  // namespace

nlohmann::json NetworkConfig::toJson() const {
  nlohmann::json json = {{"kind", kind},          {"width", width},   {"modes", modes},
                         {"layers", layers},      {"hidden", hidden}, {"pad_fraction", padFraction},
                         {"unet_base", unetBase}, {"grid", grid},     {"base", base}};
  if (base == "linearized") {
    json["base_iterations"] = baseIterations;
    json["base_stabilisation"] = baseStabilisation;
    json["base_correction"] = baseCorrection;
    json["base_block"] = baseBlock;
    json["base_smoothing"] = baseSmoothing;
    json["base_smooth_inputs"] = baseSmoothInputs;
    if (gateContrast > 0) json["gate_contrast"] = gateContrast;
  }
  if (gaussNewton > 0) json["gauss_newton"] = gaussNewton;
  return json;
}

NetworkConfig NetworkConfig::fromJson(const nlohmann::json& json) {
  NetworkConfig c;
  c.kind = json.at("kind").get<std::string>();
  c.width = integerField(json, "width", "network width", c.width);
  c.modes = integerField(json, "modes", "Fourier modes", c.modes);
  c.layers = integerField(json, "layers", "network layers", c.layers);
  c.hidden = integerField(json, "hidden", "projection width", c.hidden);
  c.padFraction = json.value("pad_fraction", c.padFraction);
  c.unetBase = integerField(json, "unet_base", "U-Net base channels", c.unetBase);
  c.grid = integerField(json, "grid", "network grid", c.grid);
  c.base = json.value("base", std::string("resolvent"));
  c.baseIterations = integerField(json, "base_iterations", "base iterations", c.baseIterations);
  c.baseStabilisation = json.value("base_stabilisation", c.baseStabilisation);
  c.baseCorrection = json.value("base_correction", c.baseCorrection);
  c.baseBlock = integerField(json, "base_block", "base block", c.baseBlock);
  c.baseSmoothing = integerField(json, "base_smoothing", "base smoothing", c.baseSmoothing);
  c.baseSmoothInputs = json.value("base_smooth_inputs", c.baseSmoothInputs);
  c.gateContrast = json.value("gate_contrast", c.gateContrast);
  c.gaussNewton = integerField(json, "gauss_newton", "Gauss-Newton corrections", c.gaussNewton);
  return c;
}

void NetworkConfig::validate() const {
  if (kind != "fno" && kind != "unet" && kind != "torchscript")
    throw InvalidParameter("network", kind, "allowed: fno, unet");
  auto positive = [](const std::string& name, int value, int maximum) {
    if (value < 1 || value > maximum)
      throw InvalidParameter(name, formatValue(value), "must be between 1 and " + std::to_string(maximum));
  };
  positive("network width", width, 512);
  positive("Fourier modes", modes, 128);
  positive("network layers", layers, 32);
  positive("projection width", hidden, 1024);
  positive("U-Net base channels", unetBase, 256);
  if (grid < 8 || grid > 1024) throw InvalidParameter("network grid", formatValue(grid), "must be between 8 and 1024");
  if (base != "resolvent" && base != "linearized")
    throw InvalidParameter("network base", base, "allowed: resolvent, linearized");
  if (baseIterations < 1 || baseIterations > 100)
    throw InvalidParameter("base iterations", formatValue(baseIterations), "must be between 1 and 100");
  if (baseSmoothing < 1 || baseSmoothing > 8)
    throw InvalidParameter("base smoothing", formatValue(baseSmoothing), "must be 1 to 8");
  if (baseBlock < 1 || baseBlock > 64) throw InvalidParameter("base block", formatValue(baseBlock), "must be 1 to 64");
  if (!(baseCorrection >= 0 && baseCorrection <= 100))
    throw InvalidParameter("base correction", formatValue(baseCorrection), "must be in [0, 100]");
  if (!(baseStabilisation >= 0 && baseStabilisation <= 1e6))
    throw InvalidParameter("base stabilisation", formatValue(baseStabilisation), "must be in [0, 1e6]");
  if (gaussNewton < 0 || gaussNewton > 20)
    throw InvalidParameter("Gauss-Newton corrections", formatValue(gaussNewton), "must be 0 to 20");
  if (!(gateContrast >= 0 && gateContrast <= 1))
    throw InvalidParameter("gate contrast", formatValue(gateContrast), "must be in [0, 1] (0: no scaling)");
  if (!(padFraction >= 0 && padFraction <= 1))
    throw InvalidParameter("pad fraction", formatValue(padFraction), "must be in [0, 1]");
}

int64_t NetworkConfig::parameterCount(int dim, int inputChannels, int outputChannels) const {
  validate();
  if (dim != 2 && dim != 3) throw InvalidParameter("dimension", std::to_string(dim), "must be 2 or 3");
  // Must follow the layers of FourierNeuralOperator.cpp and UNet.cpp
  // (testing/core/OperatorFileTest.cpp checks it against built networks).
  // Within validate()'s ranges every product stays below 2^48.
  const int64_t in = inputChannels, out = outputChannels;
  if (kind == "fno") {
    int64_t spectral = int64_t(width) * width * 2;  // real and imaginary parts
    for (int a = 0; a < dim; ++a) spectral *= modes;
    const int64_t blocks = int64_t(1) << (dim - 1);
    const int64_t layer = blocks * spectral + int64_t(width) * width + width;
    return int64_t(width) * in + width + layers * layer + int64_t(hidden) * width + hidden + out * hidden + out;
  }
  if (kind == "unet") {
    const int64_t c = unetBase, taps = dim == 2 ? 9 : 27;
    auto convolution = [&](int64_t outChannels, int64_t inChannels) {
      return outChannels * inChannels * taps + outChannels;
    };
    return convolution(c, in) + convolution(c, c) + convolution(2 * c, c) + convolution(2 * c, 2 * c) +
           convolution(4 * c, 2 * c) + convolution(4 * c, 4 * c) + convolution(2 * c, 6 * c) +
           convolution(2 * c, 2 * c) + convolution(c, 3 * c) + convolution(c, c) + out * c + out;
  }
  return 0;
}

nlohmann::json FeatureScales::toJson() const {
  return {{"density", density},
          {"velocity", velocity},
          {"potential", potential},
          {"diffusivity", diffusivity},
          {"cap_cells", capCells}};
}

FeatureScales FeatureScales::fromJson(const nlohmann::json& json) {
  FeatureScales s;
  s.density = json.at("density").get<double>();
  s.velocity = json.at("velocity").get<double>();
  s.potential = json.value("potential", 1.0);
  s.capCells = json.value("cap_cells", s.capCells);
  s.diffusivity = json.value("diffusivity", 0.0);
  return s;
}

nlohmann::json TrainingRanges::toJson() const {
  return {{"box_length", std::vector<double>(boxLength.begin(), boxLength.end())},
          {"grid_min", gridMin},
          {"grid_max", gridMax},
          {"mass_min", massMin},
          {"mass_max", massMax},
          {"peak_min", peakMin},
          {"peak_max", peakMax}};
}

TrainingRanges TrainingRanges::fromJson(const nlohmann::json& json) {
  TrainingRanges r;
  const auto lengths = json.at("box_length").get<std::vector<double>>();
  for (size_t a = 0; a < 3 && a < lengths.size(); ++a) r.boxLength[a] = lengths[a];
  r.gridMin = integerField<int64_t>(json.at("grid_min"), "training grid minimum");
  r.gridMax = integerField<int64_t>(json.at("grid_max"), "training grid maximum");
  r.massMin = json.at("mass_min").get<double>();
  r.massMax = json.at("mass_max").get<double>();
  r.peakMin = json.at("peak_min").get<double>();
  r.peakMax = json.at("peak_max").get<double>();
  return r;
}

namespace {
double channelValue(double value, const std::array<double, 2>& range) {
  const double middle = std::sqrt(range[0] * range[1]), width = std::log(range[1] / range[0]);
  return width > 0 ? std::log(value / middle) / width : 0.0;
}
}  // namespace

std::vector<double> Conditioning::channelValues(const EnergySpec& energy) const {
  std::vector<double> values;
  if (onDiffusion()) values.push_back(channelValue(energy.diffusion, diffusion));
  if (onPotentialStrength()) values.push_back(channelValue(energy.potentialStrength[0], potentialStrength));
  if (onExponent()) values.push_back(channelValue(energy.exponent, exponent));
  if (onAttraction()) values.push_back(channelValue(energy.attraction, attraction));
  return values;
}

void Conditioning::validate() const {
  auto check = [](const std::array<double, 2>& range, const char* name) {
    if (range[0] == 0 && range[1] == 0) return;
    if (!(range[0] > 0) || !(range[1] >= range[0]) || !std::isfinite(range[1]))
      throw InvalidParameter(name, formatValue(range[0]) + " to " + formatValue(range[1]),
                             "a conditioned range must be 0 < min <= max");
  };
  check(diffusion, "conditioned D range");
  check(potentialStrength, "conditioned potential strength range");
  check(exponent, "conditioned exponent m range");
  check(attraction, "conditioned attraction range");
  if (onExponent() && !(exponent[0] > 1))
    throw InvalidParameter("conditioned exponent m range", formatValue(exponent[0]) + " to " + formatValue(exponent[1]),
                           "the porous medium's m must be > 1");
}

nlohmann::json Conditioning::toJson() const {
  nlohmann::json json = nlohmann::json::object();
  if (onDiffusion()) json["D"] = {diffusion[0], diffusion[1]};
  if (onPotentialStrength()) json["potential_strength"] = {potentialStrength[0], potentialStrength[1]};
  if (onExponent()) json["m"] = {exponent[0], exponent[1]};
  if (onAttraction()) json["attraction"] = {attraction[0], attraction[1]};
  return json;
}

Conditioning Conditioning::fromJson(const nlohmann::json& json) {
  Conditioning c;
  if (json.contains("D")) c.diffusion = {json.at("D").at(0).get<double>(), json.at("D").at(1).get<double>()};
  if (json.contains("potential_strength"))
    c.potentialStrength = {json.at("potential_strength").at(0).get<double>(),
                           json.at("potential_strength").at(1).get<double>()};
  if (json.contains("m")) c.exponent = {json.at("m").at(0).get<double>(), json.at("m").at(1).get<double>()};
  if (json.contains("attraction"))
    c.attraction = {json.at("attraction").at(0).get<double>(), json.at("attraction").at(1).get<double>()};
  c.validate();
  return c;
}

nlohmann::json OperatorMetadata::toJson() const {
  nlohmann::json json = {{"dim", dim},
                         {"energy", energy.toJson()},
                         {"tau", tau},
                         {"network", network.toJson()},
                         {"scales", scales.toJson()},
                         {"ranges", ranges.toJson()},
                         {"potential_hash", energy.potentialHash()},
                         {"training", training},
                         {"libtorch", libtorchVersion}};
  if (conditioning.any()) json["conditioning"] = conditioning.toJson();
  return json;
}

OperatorMetadata OperatorMetadata::fromJson(const nlohmann::json& json) {
  OperatorMetadata m;
  try {
    m.dim = integerField<int>(json.at("dim"), "dimension");
    m.energy = EnergySpec::fromJson(json.at("energy"));
    m.tau = json.at("tau").get<double>();
    m.network = NetworkConfig::fromJson(json.at("network"));
    m.scales = FeatureScales::fromJson(json.at("scales"));
    m.ranges = json.contains("ranges") ? TrainingRanges::fromJson(json.at("ranges")) : TrainingRanges{};
    if (json.contains("conditioning")) m.conditioning = Conditioning::fromJson(json.at("conditioning"));
    m.training = json.value("training", nlohmann::json::object());
    m.libtorchVersion = json.value("libtorch", std::string());
    // Out-of-range sizes are refused here, before anything is built from them.
    m.network.validate();
  } catch (const nlohmann::json::exception& e) {
    throw OperatorFileError(std::string("the operator metadata is incomplete or malformed: ") + e.what());
  } catch (const InvalidParameter& e) {
    throw OperatorFileError(std::string("the operator metadata is invalid: ") + e.what());
  }
  if (m.dim != 2 && m.dim != 3) throw OperatorFileError("the operator metadata has dimension " + std::to_string(m.dim));
  // Infinite values pass "> 0" and become NaN features and displacements in
  // the first step. JSON text cannot hold them (the parser refuses 1e999),
  // but fromJson also reads documents built in code.
  if (!(m.tau > 0) || !std::isfinite(m.tau))
    throw OperatorFileError("the operator metadata has tau = " + formatValue(m.tau));
  const FeatureScales& s = m.scales;
  for (double scale : {s.density, s.velocity, s.potential})
    if (!(scale > 0) || !std::isfinite(scale))
      throw OperatorFileError("the operator metadata has a feature scale of " + formatValue(scale) +
                              ": scales must be positive and finite");
  if (!(s.diffusivity >= 0) || !std::isfinite(s.diffusivity) || !(s.capCells >= 0) || !std::isfinite(s.capCells))
    throw OperatorFileError("the operator metadata has diffusivity " + formatValue(s.diffusivity) + " and cap " +
                            formatValue(s.capCells) + " cells: both must be finite and non-negative");
  return m;
}

}  // namespace jko
