// Whole files as bytes, for tests and tools that damage or compare files.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

namespace jko::testsupport {

/// The file's bytes ("" when it cannot be read).
inline std::string readBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Replaces the file with `bytes`.
inline void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace jko::testsupport
