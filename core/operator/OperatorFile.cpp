#include "operator/OperatorFile.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "numerics/Errors.h"

namespace jko {
namespace {

constexpr char kMagic[8] = {'J', 'K', 'O', 'F', 'L', 'O', 'W', '\0'};

uint64_t fnv1a(const char* data, size_t size) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

class Reader {
 public:
  Reader(const std::string& path, const std::string& bytes, size_t end) : path_(path), bytes_(bytes), end_(end) {}
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }
  std::string take(size_t size, const char* what) {
    need(size, what);
    std::string out = bytes_.substr(position_, size);
    position_ += size;
    return out;
  }
  size_t position() const { return position_; }

 private:
  void need(size_t size, const char* what) {
    if (size > end_ || position_ > end_ - size)
      throw OperatorFileError(path_ + " is truncated or corrupted (reading " + what + " past the end)");
  }
  const std::string& path_;
  const std::string& bytes_;
  size_t end_;
  size_t position_ = 0;
};

}  // namespace

bool isOperatorArchive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in && std::memcmp(magic, kMagic, 8) == 0;
}

void writeOperatorArchive(const std::string& path, const OperatorArchive& archive) {
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
  put<uint64_t>(out, fnv1a(out.data(), out.size()));

  const std::string temporary = path + ".partial";
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file) throw OperatorFileError("cannot write " + temporary + ": check that the folder exists and is writable");
    file.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!file) throw OperatorFileError("writing " + temporary + " failed (disk full?)");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) throw OperatorFileError("cannot rename " + temporary + " to " + path + ": " + error.message());
}

OperatorArchive readOperatorArchive(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw OperatorFileError("cannot open the operator file " + path + ": check the path");
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw OperatorFileError(path + " is not a JKO operator file (wrong magic bytes)");
  if (bytes.size() < 8 + 4 + 8)
    throw OperatorFileError(path + " is truncated (only " + std::to_string(bytes.size()) + " bytes)");
  const size_t body = bytes.size() - sizeof(uint64_t);
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body, sizeof(stored));
  Reader reader(path, bytes, body);
  reader.take(8, "magic");
  const uint32_t version = reader.get<uint32_t>("format version");
  if (version > kOperatorFormatVersion)
    throw OperatorFileError(path + " has format version " + std::to_string(version) + "; this build reads up to " +
                            std::to_string(kOperatorFormatVersion) + ": update Neural JKO Flow");
  if (stored != fnv1a(bytes.data(), body))
    throw OperatorFileError(path + " is corrupted or truncated (checksum mismatch)");

  OperatorArchive archive;
  const uint64_t jsonLength = reader.get<uint64_t>("metadata length");
  const std::string json = reader.take(jsonLength, "metadata");
  try {
    archive.metadata = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw OperatorFileError(path + " has unreadable metadata: " + e.what());
  }
  const uint32_t count = reader.get<uint32_t>("tensor count");
  for (uint32_t t = 0; t < count; ++t) {
    const uint32_t nameLength = reader.get<uint32_t>("tensor name length");
    const std::string name = reader.take(nameLength, "tensor name");
    const uint8_t type = reader.get<uint8_t>("tensor type");
    const uint8_t rank = reader.get<uint8_t>("tensor rank");
    if (type > 2 || rank > 8) throw OperatorFileError(path + ": tensor '" + name + "' has an invalid type or rank");
    std::vector<int64_t> shape;
    uint64_t count = 1;
    for (int r = 0; r < rank; ++r) {
      shape.push_back(reader.get<int64_t>("tensor shape"));
      if (shape.back() < 0 || shape.back() > (int64_t(1) << 40))
        throw OperatorFileError(path + ": tensor '" + name + "' has an invalid shape");
      count *= static_cast<uint64_t>(shape.back());
    }
    const at::ScalarType scalar = type == 0 ? at::kFloat : type == 1 ? at::kDouble : at::kLong;
    const uint64_t byteCount = reader.get<uint64_t>("tensor byte count");
    if (byteCount != count * c10::elementSize(scalar))
      throw OperatorFileError(path + ": tensor '" + name + "' has a byte count that does not match its shape");
    const std::string data = reader.take(byteCount, "tensor data");
    at::Tensor tensor = at::empty(shape, scalar);
    std::memcpy(tensor.data_ptr(), data.data(), byteCount);
    archive.tensors.emplace_back(name, tensor);
  }
  if (reader.position() != body) throw OperatorFileError(path + " has trailing bytes after its tensors");
  return archive;
}

}  // namespace jko
