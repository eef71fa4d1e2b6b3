// Writes the fuzzer's seed corpus: small valid operator files (FNO and U-Net,
// 2D and 3D, each energy part and a potential stored as values) written by
// the real LearnedOperator::save, plus truncated and bit-flipped copies.
//
//   make_operator_seeds <folder>
#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "../support/FileBytes.h"
#include "operator/LearnedOperator.h"
#include "operator/OperatorFile.h"
#include "operator/VelocityNetwork.h"

namespace {

using namespace jko;

using jko::testsupport::readBytes;
using jko::testsupport::writeBytes;

// The smallest networks the metadata allows keep the seeds a few KB.
OperatorMetadata tiny(int dim, const EnergySpec& energy, const std::string& kind) {
  OperatorMetadata m;
  m.dim = dim;
  m.energy = energy;
  m.network.kind = kind;
  m.network.width = 2;
  m.network.modes = 2;
  m.network.layers = 1;
  m.network.hidden = 2;
  m.network.unetBase = 1;
  m.network.grid = 8;
  m.ranges.gridMin = 8;
  m.ranges.gridMax = 16;
  m.ranges.massMin = 0.5;
  m.ranges.massMax = 2;
  m.ranges.peakMin = 1;
  m.ranges.peakMax = 10;
  m.training = {{"mode", "learn-to-evolve"}, {"rounds", 1}, {"losses", {1.5, 0.5}}};
  return m;
}

void save(const std::string& folder, const std::string& name, const OperatorMetadata& metadata) {
  auto network = VelocityNetwork::create(metadata.network, metadata.dim, LearnedOperator::inputChannels(metadata),
                                         LearnedOperator::outputChannels(metadata), 1);
  LearnedOperator(metadata, network).save(folder + "/" + name + ".jko");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_operator_seeds <folder>\n";
    return 2;
  }
  const std::string folder = argv[1];
  std::filesystem::create_directories(folder);

  save(folder, "fno-2d-porous", tiny(2, EnergySpec::porousMedium(2, 1), "fno"));
  save(folder, "unet-2d-fokker-planck", tiny(2, EnergySpec::fokkerPlanck(), "unet"));
  save(folder, "fno-2d-keller-segel", tiny(2, EnergySpec::kellerSegel(), "fno"));
  save(folder, "fno-3d-aggregation-diffusion", tiny(3, EnergySpec::aggregationDiffusion(), "fno"));
  EnergySpec values = EnergySpec::heat(0.1);
  values.preset = "custom";
  values.potential = PotentialKind::Values;
  values.potentialValues = at::linspace(0, 1, 64, at::kDouble).view({8, 8});
  save(folder, "fno-2d-potential-values", tiny(2, values, "fno"));

  // Damaged copies of one file: cut at several places, and single bit flips
  // with and without a checksum that matches the damage.
  const std::string valid = readBytes(folder + "/fno-2d-porous.jko");
  for (size_t cut : {size_t(7), size_t(20), valid.size() / 3, valid.size() - 9})
    writeBytes(folder + "/truncated-" + std::to_string(cut) + ".jko", valid.substr(0, cut));
  for (size_t at : {size_t(9), size_t(14), size_t(40), valid.size() / 2, valid.size() - 20}) {
    std::string flipped = valid;
    flipped[at] ^= 0x10;
    writeBytes(folder + "/flipped-" + std::to_string(at) + ".jko", flipped);
    const uint64_t checksum = operatorArchiveChecksum(flipped.data(), flipped.size() - 8);
    std::memcpy(&flipped[flipped.size() - 8], &checksum, sizeof(checksum));
    writeBytes(folder + "/flipped-rechecked-" + std::to_string(at) + ".jko", flipped);
  }
  std::cout << "wrote the seed corpus to " << folder << "\n";
  return 0;
}
