// The operator file container (not torch::save, whose archives do not load
// across LibTorch versions and whose parser is not ours):
//
//   8 bytes   magic "JKOFLOW\0"
//   u32       format version
//   u64       metadata length, then the metadata as UTF-8 JSON
//   u32       tensor count, then per tensor:
//               u32 name length, name, u8 dtype (0 float32, 1 float64, 2 int64),
//               u8 rank, rank x i64 shape, u64 byte count, raw little-endian data
//   u64       FNV-1a 64 checksum of every byte before it
#pragma once

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace jko {

struct OperatorArchive {
  nlohmann::json metadata;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
};

constexpr uint32_t kOperatorFormatVersion = 1;

/// Whether the file starts with the container's magic bytes.
bool isOperatorArchive(const std::string& path);

/// The container's bytes for `archive`, checksum included.
std::string serializeOperatorArchive(const OperatorArchive& archive);

/// Writes through a temporary file and a rename; never leaves half a file.
void writeOperatorArchive(const std::string& path, const OperatorArchive& archive);

/// Parses a container held in memory: checks magic, version, sizes and
/// checksum and throws OperatorFileError saying what is wrong (truncated,
/// corrupted, newer format). `source` names the bytes in the messages (a
/// path). Memory use is bounded by the size of `bytes`: no declared length
/// is trusted before the bytes behind it are known to exist.
OperatorArchive parseOperatorArchive(const std::string& bytes, const std::string& source);

/// Reads the file and parses it as parseOperatorArchive does; a missing or
/// unreadable file is an OperatorFileError too.
OperatorArchive readOperatorArchive(const std::string& path);

/// The FNV-1a 64 checksum the container stores after its body.
uint64_t operatorArchiveChecksum(const char* data, size_t size);

}  // namespace jko
