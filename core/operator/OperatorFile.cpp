#include "operator/OperatorFile.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "numerics/Errors.h"

namespace jko {
namespace {

constexpr char kMagic[8] = {'J', 'K', 'O', 'F', 'L', 'O', 'W', '\0'};

// The metadata is a flat record; deeper nesting can only come from a damaged
// or hostile file, and nlohmann::json copies and prints values recursively,
// so a deep enough document would overflow the stack after parsing.
constexpr int kMaxMetadataDepth = 64;

// No tensor in a file can be this large; bounding the product of the extents
// (zero extents counted as one) keeps every element count, byte count and
// stride far from overflowing, empty tensors included.
constexpr uint64_t kMaxTensorSpan = uint64_t(1) << 40;

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// Reads fields in order from the body (the bytes before the checksum),
// refusing any read past its end.
class Reader {
 public:
  Reader(const std::string& source, const std::string& bytes, size_t end) : source_(source), bytes_(bytes), end_(end) {}
  template <typename T>
  T get(const char* what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }
  /// The next `size` bytes, in place.
  const char* take(uint64_t size, const char* what) {
    if (size > end_ - position_)
      throw OperatorFileError(source_ + " is truncated or corrupted (reading " + what + " past the end)");
    const char* out = bytes_.data() + position_;
    position_ += size;
    return out;
  }
  size_t position() const { return position_; }

 private:
  const std::string& source_;
  const std::string& bytes_;
  size_t end_;
  size_t position_ = 0;
};

nlohmann::json parseMetadata(const std::string& source, const char* text, size_t size) {
  const nlohmann::json::parser_callback_t limitDepth = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxMetadataDepth)
      throw OperatorFileError(source + " has metadata nested deeper than " + std::to_string(kMaxMetadataDepth) +
                              " levels (corrupted file)");
    return true;
  };
  try {
    return nlohmann::json::parse(text, text + size, limitDepth);
  } catch (const nlohmann::json::exception& e) {
    throw OperatorFileError(source + " has unreadable metadata: " + e.what());
  }
}

}  // namespace

bool isOperatorArchive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in && std::memcmp(magic, kMagic, 8) == 0;
}

std::string serializeOperatorArchive(const OperatorArchive& archive) {
  std::string out(kMagic, 8);
  put<uint32_t>(out, kOperatorFormatVersion);
  const std::string json = archive.metadata.dump();
  put<uint64_t>(out, json.size());
  out += json;
  put<uint32_t>(out, static_cast<uint32_t>(archive.tensors.size()));
  for (const auto& [name, tensorIn] : archive.tensors) {
    const at::Tensor tensor = tensorIn.detach().to(at::kCPU).contiguous();
    uint8_t type;
    switch (tensor.scalar_type()) {
      case at::kFloat:
        type = 0;
        break;
      case at::kDouble:
        type = 1;
        break;
      case at::kLong:
        type = 2;
        break;
      default:
        throw OperatorFileError("cannot store tensor '" + name + "' of type " +
                                std::string(c10::toString(tensor.scalar_type())));
    }
    put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    out += name;
    put<uint8_t>(out, type);
    put<uint8_t>(out, static_cast<uint8_t>(tensor.dim()));
    for (int64_t s : tensor.sizes()) put<int64_t>(out, s);
    const uint64_t bytes = tensor.numel() * tensor.element_size();
    put<uint64_t>(out, bytes);
    out.append(static_cast<const char*>(tensor.data_ptr()), bytes);
  }
  put<uint64_t>(out, operatorArchiveChecksum(out.data(), out.size()));
  return out;
}

void writeOperatorArchive(const std::string& path, const OperatorArchive& archive) {
  const std::string out = serializeOperatorArchive(archive);

  // Written beside the target and renamed over it: a reader sees the old
  // file or the new one, never half of one. A failure removes the temporary.
  const std::string temporary = path + ".partial";
  auto fail = [&](const std::string& message) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw OperatorFileError(message);
  };
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file) fail("cannot write " + temporary + ": check that the folder exists and is writable");
    file.write(out.data(), static_cast<std::streamsize>(out.size()));
    file.close();
    if (!file) fail("writing " + temporary + " failed (disk full?)");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) fail("cannot rename " + temporary + " to " + path + ": " + error.message());
}

OperatorArchive parseOperatorArchive(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw OperatorFileError(source + " is not a JKO operator file (wrong magic bytes)");
  if (bytes.size() < 8 + 4 + 8)
    throw OperatorFileError(source + " is truncated (only " + std::to_string(bytes.size()) + " bytes)");
  const size_t body = bytes.size() - sizeof(uint64_t);
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body, sizeof(stored));
  Reader reader(source, bytes, body);
  reader.take(8, "magic");
  const uint32_t version = reader.get<uint32_t>("format version");
  if (version > kOperatorFormatVersion)
    throw OperatorFileError(source + " has format version " + std::to_string(version) + "; this build reads up to " +
                            std::to_string(kOperatorFormatVersion) + ": update Neural JKO Flow");
  if (stored != operatorArchiveChecksum(bytes.data(), body))
    throw OperatorFileError(source + " is corrupted or truncated (checksum mismatch)");
  if (version == 0) throw OperatorFileError(source + " has format version 0, which was never written (corrupted file)");

  OperatorArchive archive;
  const uint64_t jsonLength = reader.get<uint64_t>("metadata length");
  archive.metadata = parseMetadata(source, reader.take(jsonLength, "metadata"), jsonLength);
  const uint32_t count = reader.get<uint32_t>("tensor count");
  std::set<std::string> names;
  for (uint32_t t = 0; t < count; ++t) {
    const uint32_t nameLength = reader.get<uint32_t>("tensor name length");
    const std::string name(reader.take(nameLength, "tensor name"), nameLength);
    // The loader takes parameters by name: a second copy would make which one
    // it gets a detail of its search order.
    if (!names.insert(name).second) throw OperatorFileError(source + ": tensor '" + name + "' appears twice");
    const uint8_t type = reader.get<uint8_t>("tensor type");
    const uint8_t rank = reader.get<uint8_t>("tensor rank");
    if (type > 2 || rank > 8) throw OperatorFileError(source + ": tensor '" + name + "' has an invalid type or rank");
    std::vector<int64_t> shape;
    uint64_t span = 1, elements = 1;
    for (int r = 0; r < rank; ++r) {
      const int64_t extent = reader.get<int64_t>("tensor shape");
      // Tested by division, so the test itself cannot overflow; elements <=
      // span then holds throughout.
      if (extent < 0 || std::max<uint64_t>(extent, 1) > kMaxTensorSpan / span)
        throw OperatorFileError(source + ": tensor '" + name + "' has an invalid shape");
      span *= std::max<uint64_t>(extent, 1);
      elements *= static_cast<uint64_t>(extent);
      shape.push_back(extent);
    }
    const at::ScalarType scalar = type == 0 ? at::kFloat : type == 1 ? at::kDouble : at::kLong;
    const uint64_t byteCount = reader.get<uint64_t>("tensor byte count");
    if (byteCount != elements * c10::elementSize(scalar))
      throw OperatorFileError(source + ": tensor '" + name + "' has a byte count that does not match its shape");
    // Checked against the bytes left before anything is allocated for it.
    const char* data = reader.take(byteCount, "tensor data");
    at::Tensor tensor = at::empty(shape, scalar);
    // An empty tensor has no storage: its data pointer is null, which memcpy
    // must not be given even for zero bytes.
    if (byteCount > 0) std::memcpy(tensor.data_ptr(), data, byteCount);
    archive.tensors.emplace_back(name, tensor);
  }
  if (reader.position() != body) throw OperatorFileError(source + " has trailing bytes after its tensors");
  return archive;
}

OperatorArchive readOperatorArchive(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw OperatorFileError("cannot open the operator file " + path + ": check the path");
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) throw OperatorFileError("cannot read the operator file " + path);
  return parseOperatorArchive(bytes, path);
}

uint64_t operatorArchiveChecksum(const char* data, size_t size) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace jko
