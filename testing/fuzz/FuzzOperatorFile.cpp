// libFuzzer target: everything a damaged or hostile operator file (.jko) can
// reach when a user loads it: the container parser, the metadata parser, the
// loader that builds the declared network and copies the stored tensors into
// it, and the compatibility check; with JKO_FUZZ_STEP=1 in the environment,
// also one step on a small grid.
//
// Every bad input must end in one of the engine's typed errors (jko::Error
// and its subclasses). Anything else escaping (c10::Error, std::bad_alloc,
// a JSON exception), a sanitizer report, a hang or a large allocation is a
// finding: libFuzzer stops and writes the input as crash-*, timeout-* or oom-*.
//
// An input is the file's bytes exactly, so every finding is a file that
// reproduces with `jko rollout --operator`. The custom mutator keeps the
// trailing checksum right most of the time, or almost every mutation would
// stop at the checksum check.
#include <ATen/Parallel.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "numerics/Errors.h"
#include "numerics/Grid.h"
#include "operator/LearnedOperator.h"
#include "operator/OperatorFile.h"
#include "operator/OperatorMetadata.h"

// libFuzzer's own mutator, for the custom mutator below to call.
extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

namespace {

// Offsets of the container's header (OperatorFile.h).
constexpr size_t kMetadataLengthOffset = 12;
constexpr size_t kMetadataOffset = 20;
constexpr size_t kChecksumSize = 8;

std::string& scratchPath() {
  static std::string path;
  return path;
}

void removeScratch() { std::remove(scratchPath().c_str()); }

// A step runs the numerics behind the operator (energies, push-forward) on
// whatever the file's weights produce. It is opt-in because weights that
// make the velocity non-finite (a few of 1e29 do) currently reach undefined
// behaviour in the deposit (a NaN position cast to an index in
// PushForwardKernels.cpp), which stops a run within seconds, before the
// parsers get any attention.
bool stepEnabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("JKO_FUZZ_STEP");
    return value && std::string(value) == "1";
  }();
  return enabled;
}

// LearnedOperator::load reads a path; the input goes through a file in
// memory-backed storage so the real loader runs, not a copy of its steps.
std::shared_ptr<jko::LearnedOperator> loadThroughFile(const std::string& bytes) {
  {
    std::ofstream out(scratchPath(), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  return jko::LearnedOperator::load(scratchPath());
}

void fixChecksum(uint8_t* data, size_t size) {
  if (size < kMetadataOffset + kChecksumSize) return;
  const size_t body = size - kChecksumSize;
  const uint64_t checksum = jko::operatorArchiveChecksum(reinterpret_cast<const char*>(data), body);
  std::memcpy(data + body, &checksum, sizeof(checksum));
}

// Mutates only the metadata JSON and rewrites its length field, so a JSON
// mutation that changes the length still yields a well-framed file. Returns
// 0 when the header does not frame a metadata block.
size_t mutateMetadata(uint8_t* data, size_t size, size_t maxSize) {
  if (size < kMetadataOffset + kChecksumSize || maxSize < size) return 0;
  uint64_t length;
  std::memcpy(&length, data + kMetadataLengthOffset, sizeof(length));
  if (length > size - kMetadataOffset - kChecksumSize) return 0;
  const size_t tail = size - kMetadataOffset - length;
  std::vector<uint8_t> json(data + kMetadataOffset, data + kMetadataOffset + length);
  json.resize(length + (maxSize - size));
  const size_t newLength = LLVMFuzzerMutate(json.data(), length, json.size());
  std::vector<uint8_t> rest(data + kMetadataOffset + length, data + size);
  const uint64_t stored = newLength;
  std::memcpy(data + kMetadataLengthOffset, &stored, sizeof(stored));
  std::memcpy(data + kMetadataOffset, json.data(), newLength);
  std::memcpy(data + kMetadataOffset + newLength, rest.data(), tail);
  return kMetadataOffset + newLength + tail;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One thread: deterministic runs, and LibTorch's pool would only add
  // sanitizer overhead for the tiny tensors here.
  at::set_num_threads(1);
  const std::filesystem::path folder =
      std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  scratchPath() = (folder / ("jko_fuzz_" + std::to_string(::getpid()) + ".jko")).string();
  std::atexit(removeScratch);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize, unsigned int seed) {
  std::minstd_rand random(seed);
  size_t newSize = random() % 2 ? mutateMetadata(data, size, maxSize) : 0;
  if (newSize == 0) newSize = LLVMFuzzerMutate(data, size, maxSize);
  // One mutant in eight keeps whatever checksum it has (the checksum check
  // itself is under test too).
  if (random() % 8 != 0) fixChecksum(data, newSize);
  return newSize;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    // The parsers alone first: most inputs end here, without file I/O.
    const jko::OperatorArchive archive = jko::parseOperatorArchive(bytes, "fuzz input");
    const jko::OperatorMetadata metadata = jko::OperatorMetadata::fromJson(archive.metadata);
    (void)metadata.energy.describe();

    // A file declaring a bigger network than the weights it holds is
    // refused by LearnedOperator::load before the network is allocated.
    const auto op = loadThroughFile(bytes);
    const jko::Grid grid = jko::Grid::unitBox(op->metadata().dim, 8);
    (void)op->checkCompatible(grid);
    if (stepEnabled()) (void)op->step(at::ones(grid.shape(), at::kDouble), grid);
  } catch (const jko::Error&) {
    // A typed refusal with a message: what a bad file must end in.
  }
  return 0;
}
