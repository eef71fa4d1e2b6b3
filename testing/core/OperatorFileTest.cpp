// Damaged and hostile operator files: each test keeps one input found by
// fuzzing the container and metadata parsers (testing/fuzz) refused with a
// typed error, instead of undefined behaviour, a crash or a huge allocation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "numerics/Errors.h"
#include "operator/LearnedOperator.h"
#include "operator/OperatorFile.h"
#include "operator/OperatorMetadata.h"
#include "operator/VelocityNetwork.h"

namespace jko {
namespace {

OperatorMetadata smallMetadata() {
  OperatorMetadata m;
  m.energy = EnergySpec::porousMedium(2, 1);
  m.network.width = 2;
  m.network.modes = 2;
  m.network.layers = 1;
  m.network.hidden = 2;
  m.network.grid = 8;
  return m;
}

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// A container written field by field, so a test can say what no writer
// would; `tensors` is the raw tensor section after the count.
std::string containerBytes(const std::string& json, uint32_t tensorCount, const std::string& tensors,
                           uint32_t version = kOperatorFormatVersion) {
  std::string out("JKOFLOW\0", 8);
  put<uint32_t>(out, version);
  put<uint64_t>(out, json.size());
  out += json;
  put<uint32_t>(out, tensorCount);
  out += tensors;
  put<uint64_t>(out, operatorArchiveChecksum(out.data(), out.size()));
  return out;
}

std::string tensorHeader(const std::string& name, uint8_t type, const std::vector<int64_t>& shape, uint64_t bytes) {
  std::string out;
  put<uint32_t>(out, static_cast<uint32_t>(name.size()));
  out += name;
  put<uint8_t>(out, type);
  put<uint8_t>(out, static_cast<uint8_t>(shape.size()));
  for (int64_t extent : shape) put<int64_t>(out, extent);
  put<uint64_t>(out, bytes);
  return out;
}

void expectRefusal(const std::string& bytes, const std::string& mention) {
  try {
    parseOperatorArchive(bytes, "test.jko");
    FAIL() << "expected a refusal mentioning '" << mention << "'";
  } catch (const OperatorFileError& e) {
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
}

void expectMetadataRefusal(const nlohmann::json& json, const std::string& mention) {
  try {
    OperatorMetadata::fromJson(json);
    FAIL() << "expected a refusal mentioning '" << mention << "' of " << json.dump();
  } catch (const OperatorFileError& e) {
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
}

// Found by fuzzing: an empty tensor has a null data pointer, and copying its
// zero bytes with memcpy was undefined behaviour.
TEST(OperatorFile, EmptyTensorsRoundTrip) {
  OperatorArchive archive;
  archive.metadata = smallMetadata().toJson();
  archive.tensors.emplace_back("empty", at::empty({0}, at::kFloat));
  archive.tensors.emplace_back("empty.rows", at::empty({0, 3}, at::kDouble));
  archive.tensors.emplace_back("values", at::arange(6, at::kLong).view({2, 3}));
  const OperatorArchive parsed = parseOperatorArchive(serializeOperatorArchive(archive), "test.jko");
  ASSERT_EQ(parsed.tensors.size(), 3u);
  EXPECT_EQ(parsed.tensors[0].second.sizes(), at::IntArrayRef({0}));
  EXPECT_EQ(parsed.tensors[1].second.sizes(), at::IntArrayRef({0, 3}));
  EXPECT_TRUE(at::equal(parsed.tensors[2].second, archive.tensors[2].second));
}

// Found by review, confirmed with the fuzz target: extents whose product
// wraps around 2^64 passed the byte-count check with zero bytes, and the
// tensor allocation then failed with an untyped c10::Error.
TEST(OperatorFile, ShapeWhoseElementCountOverflowsIsRefused) {
  const std::string json = smallMetadata().toJson().dump();
  expectRefusal(containerBytes(json, 1, tensorHeader("x", 0, {int64_t(1) << 32, int64_t(1) << 32}, 0)),
                "invalid shape");
  expectRefusal(containerBytes(json, 1, tensorHeader("x", 1, {0, int64_t(1) << 40, int64_t(1) << 40}, 0)),
                "invalid shape");
  expectRefusal(containerBytes(json, 1, tensorHeader("x", 0, {-1}, 0)), "invalid shape");
  // A declared size beyond the file is refused before anything is allocated.
  expectRefusal(containerBytes(json, 1, tensorHeader("x", 0, {int64_t(1) << 30}, uint64_t(4) << 30)), "past the end");
}

// Found by review, confirmed with the fuzz target and `jko rollout`: metadata
// nested 200000 levels deep parsed, then its recursive copy overflowed the
// stack (a segmentation fault from a 400 KB file).
TEST(OperatorFile, DeeplyNestedMetadataIsRefused) {
  const int depth = 200000;
  const std::string deep = "{\"training\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
  expectRefusal(containerBytes(deep, 0, ""), "nested deeper");
  // What real metadata looks like still parses.
  const std::string shallow = "{\"training\":{\"losses\":[[1,2],[3,4]]}}";
  EXPECT_EQ(parseOperatorArchive(containerBytes(shallow, 0, ""), "test.jko").metadata["training"]["losses"][1][0], 3);
}

TEST(OperatorFile, DuplicateNamesAndVersionZeroAreRefused) {
  const std::string json = smallMetadata().toJson().dump();
  const std::string one = tensorHeader("lift.bias", 0, {1}, 4) + std::string(4, '\0');
  expectRefusal(containerBytes(json, 2, one + one), "appears twice");
  expectRefusal(containerBytes(json, 0, "", 0), "format version 0");
  expectRefusal(containerBytes(json, 0, "", kOperatorFormatVersion + 1), "update Neural JKO Flow");
}

// Found by fuzzing: "dim": 2e44 reached nlohmann's get<int>(), a float to int
// conversion out of range (undefined behaviour); integers out of range wrapped.
TEST(OperatorMetadata, IntegersOutOfRangeAreRefused) {
  const nlohmann::json valid = smallMetadata().toJson();
  EXPECT_EQ(OperatorMetadata::fromJson(valid).network.width, 2);

  nlohmann::json json = valid;
  json["dim"] = 2.11111e44;
  expectMetadataRefusal(json, "dimension");
  json["dim"] = -1e300;
  expectMetadataRefusal(json, "dimension");
  json["dim"] = 2.5;
  expectMetadataRefusal(json, "dimension");
  json["dim"] = "2";
  expectMetadataRefusal(json, "dimension");
  json["dim"] = 2.0;  // an integral float is an integer
  EXPECT_EQ(OperatorMetadata::fromJson(json).dim, 2);

  json = valid;
  json["network"]["width"] = (uint64_t(1) << 32) + 2;  // wrapped to 2 before
  expectMetadataRefusal(json, "network width");
  json = valid;
  json["network"]["modes"] = std::numeric_limits<double>::max();
  expectMetadataRefusal(json, "Fourier modes");
  json = valid;
  json["ranges"]["grid_min"] = 1e300;
  expectMetadataRefusal(json, "training grid minimum");
  json = valid;
  json["network"]["layers"] = 0;  // in range for int, out of range for a network
  expectMetadataRefusal(json, "network layers");
}

TEST(OperatorMetadata, NonFiniteValuesAreRefused) {
  const nlohmann::json valid = smallMetadata().toJson();
  const double inf = std::numeric_limits<double>::infinity();
  for (const char* key : {"density", "velocity", "potential", "diffusivity", "cap_cells"}) {
    nlohmann::json json = valid;
    json["scales"][key] = inf;
    EXPECT_THROW(OperatorMetadata::fromJson(json), OperatorFileError) << key;
  }
  nlohmann::json json = valid;
  json["tau"] = inf;
  expectMetadataRefusal(json, "tau");
}

// parameterCount lets a loader refuse a file declaring a network it cannot
// hold before building that network (a 2 KB file declared 2 TiB of weights).
// It must follow the networks' layers exactly.
TEST(NetworkConfig, ParameterCountMatchesBuiltNetworks) {
  for (const char* kind : {"fno", "unet"}) {
    for (int dim : {2, 3}) {
      NetworkConfig config;
      config.kind = kind;
      config.width = 3;
      config.modes = 2;
      config.layers = 2;
      config.hidden = 5;
      config.unetBase = 2;
      const auto network = VelocityNetwork::create(config, dim, 1 + 3 * dim, 2 + dim, 0);
      EXPECT_EQ(config.parameterCount(dim, 1 + 3 * dim, 2 + dim), network->parameterCount()) << kind << " " << dim;
    }
  }
  NetworkConfig huge;
  huge.width = 512;
  huge.modes = 128;
  huge.layers = 32;
  EXPECT_GT(huge.parameterCount(3, 11, 5), int64_t(1) << 40);  // never built here
  huge.width = 0;
  EXPECT_THROW(huge.parameterCount(2, 8, 4), InvalidParameter);
}

}  // namespace
}  // namespace jko
