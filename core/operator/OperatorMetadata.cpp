#include "operator/OperatorMetadata.h"

#include "numerics/Errors.h"

namespace jko {

nlohmann::json NetworkConfig::toJson() const {
  return {{"kind", kind},          {"width", width},   {"modes", modes},
          {"layers", layers},      {"hidden", hidden}, {"pad_fraction", padFraction},
          {"unet_base", unetBase}, {"grid", grid}};
}

NetworkConfig NetworkConfig::fromJson(const nlohmann::json& json) {
  NetworkConfig c;
  c.kind = json.at("kind").get<std::string>();
  c.width = json.value("width", c.width);
  c.modes = json.value("modes", c.modes);
  c.layers = json.value("layers", c.layers);
  c.hidden = json.value("hidden", c.hidden);
  c.padFraction = json.value("pad_fraction", c.padFraction);
  c.unetBase = json.value("unet_base", c.unetBase);
  c.grid = json.value("grid", c.grid);
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
  if (!(padFraction >= 0 && padFraction <= 1))
    throw InvalidParameter("pad fraction", formatValue(padFraction), "must be in [0, 1]");
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
  r.gridMin = json.at("grid_min").get<int64_t>();
  r.gridMax = json.at("grid_max").get<int64_t>();
  r.massMin = json.at("mass_min").get<double>();
  r.massMax = json.at("mass_max").get<double>();
  r.peakMin = json.at("peak_min").get<double>();
  r.peakMax = json.at("peak_max").get<double>();
  return r;
}

nlohmann::json OperatorMetadata::toJson() const {
  return {{"dim", dim},
          {"energy", energy.toJson()},
          {"tau", tau},
          {"network", network.toJson()},
          {"scales", scales.toJson()},
          {"ranges", ranges.toJson()},
          {"potential_hash", energy.potentialHash()},
          {"training", training},
          {"libtorch", libtorchVersion}};
}

OperatorMetadata OperatorMetadata::fromJson(const nlohmann::json& json) {
  OperatorMetadata m;
  try {
    m.dim = json.at("dim").get<int>();
    m.energy = EnergySpec::fromJson(json.at("energy"));
    m.tau = json.at("tau").get<double>();
    m.network = NetworkConfig::fromJson(json.at("network"));
    m.scales = FeatureScales::fromJson(json.at("scales"));
    m.ranges = json.contains("ranges") ? TrainingRanges::fromJson(json.at("ranges")) : TrainingRanges{};
    m.training = json.value("training", nlohmann::json::object());
    m.libtorchVersion = json.value("libtorch", std::string());
  } catch (const nlohmann::json::exception& e) {
    throw OperatorFileError(std::string("the operator metadata is incomplete or malformed: ") + e.what());
  } catch (const InvalidParameter& e) {
    throw OperatorFileError(std::string("the operator metadata is invalid: ") + e.what());
  }
  if (m.dim != 2 && m.dim != 3) throw OperatorFileError("the operator metadata has dimension " + std::to_string(m.dim));
  if (!(m.tau > 0)) throw OperatorFileError("the operator metadata has tau = " + formatValue(m.tau));
  if (!(m.scales.density > 0) || !(m.scales.velocity > 0) || !(m.scales.potential > 0))
    throw OperatorFileError("the operator metadata has non-positive feature scales");
  return m;
}

}  // namespace jko
