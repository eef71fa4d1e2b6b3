#include "FrameFiles.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <regex>
#include <sstream>

#include "numerics/Errors.h"

namespace jko::cli {
namespace fs = std::filesystem;
namespace {

// VTK orders points with x fastest: (n2, n1, n0) in C order.
at::Tensor toVtkOrder(const at::Tensor& field, int dim) {
  std::vector<int64_t> permutation;
  for (int a = dim - 1; a >= 0; --a) permutation.push_back(a);
  return field.to(at::kCPU, at::kDouble).permute(permutation).contiguous();
}

void appendBlock(std::string& blob, const at::Tensor& values) {
  const uint64_t bytes = static_cast<uint64_t>(values.numel()) * sizeof(double);
  blob.append(reinterpret_cast<const char*>(&bytes), sizeof(bytes));
  blob.append(reinterpret_cast<const char*>(values.data_ptr<double>()), bytes);
}

std::string attribute(const std::string& tag, const std::string& name) {
  const std::regex pattern(name + "=\"([^\"]*)\"");
  std::smatch match;
  return std::regex_search(tag, match, pattern) ? match[1].str() : "";
}

std::vector<double> numbers(const std::string& text) {
  std::istringstream in(text);
  std::vector<double> out;
  double v;
  while (in >> v) out.push_back(v);
  return out;
}

at::Tensor readNpy(const std::string& path, const std::string& bytes, Grid& grid) {
  // Format: magic, version (2 bytes), header length, a Python dict header.
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw InvalidDensity(path + " is not a .npy file (bad magic bytes)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t headerLength, offset;
  if (major == 1) {
    headerLength = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else {
    uint32_t length;
    std::memcpy(&length, bytes.data() + 8, 4);
    headerLength = length;
    offset = 12;
  }
  if (bytes.size() < offset + headerLength) throw InvalidDensity(path + " is truncated (header)");
  const std::string header = bytes.substr(offset, headerLength);
  const bool fortran = header.find("'fortran_order': True") != std::string::npos;
  if (fortran) throw InvalidDensity(path + ": Fortran-ordered arrays are not supported; save with C order");
  at::ScalarType type;
  if (header.find("'<f8'") != std::string::npos)
    type = at::kDouble;
  else if (header.find("'<f4'") != std::string::npos)
    type = at::kFloat;
  else
    throw InvalidDensity(path + ": only little-endian float32 or float64 arrays are supported");
  std::smatch match;
  if (!std::regex_search(header, match, std::regex("'shape': \\(([^)]*)\\)")))
    throw InvalidDensity(path + ": no shape in the .npy header");
  std::vector<int64_t> shape;
  for (double v : numbers(std::regex_replace(match[1].str(), std::regex(","), " ")))
    shape.push_back(static_cast<int64_t>(v));
  if (shape.size() != 2 && shape.size() != 3)
    throw InvalidDensity(path + ": a density must be a 2D or 3D array, got " + std::to_string(shape.size()) + "D");
  int64_t count = 1;
  for (int64_t s : shape) count *= s;
  const size_t dataBytes = count * (type == at::kDouble ? 8 : 4);
  if (bytes.size() < offset + headerLength + dataBytes) throw InvalidDensity(path + " is truncated (data)");
  at::Tensor values = at::empty(shape, type);
  std::memcpy(values.data_ptr(), bytes.data() + offset + headerLength, dataBytes);
  std::array<int64_t, 3> cells{1, 1, 1};
  for (size_t a = 0; a < shape.size(); ++a) cells[a] = shape[a];
  grid = Grid::box(static_cast<int>(shape.size()), cells, {0, 0, 0}, {1, 1, 1});
  return values.to(at::kDouble);
}

}  // namespace

void writeFileAtomically(const std::string& path, const std::string& contents) {
  const std::string temporary = path + ".partial";
  // A failed write or rename removes its temporary file: nothing half
  // written is left beside `path`, which keeps its old contents.
  auto fail = [&](const std::string& message) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw Error(message);
  };
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write " + temporary + ": check that the folder exists and is writable");
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    if (!out) fail("writing " + temporary + " failed (disk full?)");
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) fail("cannot rename " + temporary + " to " + path + ": " + error.message());
}

namespace {

// "x0 x1 y0 y1 z0 z1" of planes [first, first + n_0) of `whole` along its
// first axis and every node of the others; origin and spacing of `whole`.
struct ImageGeometry {
  std::string extent, origin, spacing;
};

ImageGeometry geometryOf(const Grid& whole, int64_t first, int64_t planes) {
  const int d = whole.dim;
  std::ostringstream extent, origin, spacing;
  extent << std::setprecision(17);
  origin << std::setprecision(17);
  spacing << std::setprecision(17);
  for (int a = 0; a < 3; ++a) {
    const int64_t lo = a == 0 ? first : 0, hi = a == 0 ? first + planes - 1 : (a < d ? whole.n[a] - 1 : 0);
    extent << (a ? " " : "") << lo << " " << hi;
    origin << (a ? " " : "") << (a < d ? whole.origin[a] : 0.0);
    spacing << (a ? " " : "") << (a < d ? whole.spacing[a] : 1.0);
  }
  return {extent.str(), origin.str(), spacing.str()};
}

}  // namespace

void writeImageFile(const std::string& path, const Grid& grid, const Frame& frame) {
  writeImagePiece(path, grid, 0, frame);
}

void writeImagePiece(const std::string& path, const Grid& whole, int64_t firstPlane, const Frame& frame) {
  const int d = whole.dim;
  const std::vector<int64_t> shape = frame.density.sizes().vec();
  const ImageGeometry geometry = geometryOf(whole, firstPlane, shape[0]);
  std::ostringstream xml;
  xml << std::setprecision(17);
  std::string blob;
  appendBlock(blob, toVtkOrder(frame.density, d));
  const uint64_t velocityOffset = blob.size();
  const bool hasVelocity = frame.velocity.defined();
  if (hasVelocity) {
    // Three components per point, zero beyond the grid's dimension.
    std::vector<at::Tensor> components;
    for (int a = 0; a < 3; ++a)
      components.push_back(a < d ? frame.velocity[a].to(at::kDouble) : at::zeros(shape, at::kDouble));
    std::vector<int64_t> permutation;
    for (int a = d - 1; a >= 0; --a) permutation.push_back(a);
    permutation.push_back(d);
    appendBlock(blob, at::stack(components, -1).permute(permutation).contiguous());
  }
  const uint64_t timeOffset = blob.size();
  appendBlock(blob, at::full({1}, frame.time, at::kDouble));

  xml << "<?xml version=\"1.0\"?>\n"
      << "<VTKFile type=\"ImageData\" version=\"1.0\" byte_order=\"LittleEndian\" header_type=\"UInt64\">\n"
      << "  <ImageData WholeExtent=\"" << geometry.extent << "\" Origin=\"" << geometry.origin << "\" Spacing=\""
      << geometry.spacing << "\" Direction=\"1 0 0 0 1 0 0 0 1\">\n"
      << "    <FieldData>\n"
      << "      <DataArray type=\"Float64\" Name=\"TimeValue\" NumberOfTuples=\"1\" format=\"appended\" offset=\""
      << timeOffset << "\"/>\n"
      << "    </FieldData>\n"
      << "    <Piece Extent=\"" << geometry.extent << "\">\n"
      << "      <PointData Scalars=\"density\"" << (hasVelocity ? " Vectors=\"velocity\"" : "") << ">\n"
      << "        <DataArray type=\"Float64\" Name=\"density\" format=\"appended\" offset=\"0\"/>\n";
  if (hasVelocity)
    xml << "        <DataArray type=\"Float64\" Name=\"velocity\" NumberOfComponents=\"3\" format=\"appended\" "
           "offset=\""
        << velocityOffset << "\"/>\n";
  xml << "      </PointData>\n      <CellData/>\n    </Piece>\n  </ImageData>\n"
      << "  <AppendedData encoding=\"raw\">\n   _";
  std::string contents = xml.str();
  contents += blob;
  contents += "\n  </AppendedData>\n</VTKFile>\n";
  writeFileAtomically(path, contents);
}

void writePieceIndex(const std::string& path, const Grid& whole, const std::vector<ImagePiece>& pieces,
                     bool hasVelocity) {
  const ImageGeometry geometry = geometryOf(whole, 0, whole.n[0]);
  std::ostringstream xml;
  xml << "<?xml version=\"1.0\"?>\n"
      << "<VTKFile type=\"PImageData\" version=\"1.0\" byte_order=\"LittleEndian\" header_type=\"UInt64\">\n"
      << "  <PImageData WholeExtent=\"" << geometry.extent << "\" GhostLevel=\"0\" Origin=\"" << geometry.origin
      << "\" Spacing=\"" << geometry.spacing << "\" Direction=\"1 0 0 0 1 0 0 0 1\">\n"
      << "    <PPointData Scalars=\"density\"" << (hasVelocity ? " Vectors=\"velocity\"" : "") << ">\n"
      << "      <PDataArray type=\"Float64\" Name=\"density\"/>\n";
  if (hasVelocity) xml << "      <PDataArray type=\"Float64\" Name=\"velocity\" NumberOfComponents=\"3\"/>\n";
  xml << "    </PPointData>\n";
  for (const ImagePiece& piece : pieces)
    xml << "    <Piece Extent=\"" << geometryOf(whole, piece.firstPlane, piece.planes).extent << "\" Source=\""
        << piece.file << "\"/>\n";
  xml << "  </PImageData>\n</VTKFile>\n";
  writeFileAtomically(path, xml.str());
}

std::string writeFrames(const std::string& directory, const std::string& prefix, const Grid& grid,
                        const std::vector<Frame>& frames) {
  std::error_code error;
  fs::create_directories(directory, error);
  if (error) throw Error("cannot create the output folder " + directory + ": " + error.message());
  std::ostringstream pvd;
  pvd << std::setprecision(17)
      << "<?xml version=\"1.0\"?>\n<VTKFile type=\"Collection\" version=\"0.1\">\n  <Collection>\n";
  for (size_t k = 0; k < frames.size(); ++k) {
    char name[64];
    std::snprintf(name, sizeof(name), "_%04zu.vti", k);
    const std::string file = prefix + name;
    writeImageFile((fs::path(directory) / file).string(), grid, frames[k]);
    pvd << "    <DataSet timestep=\"" << frames[k].time << "\" file=\"" << file << "\"/>\n";
  }
  pvd << "  </Collection>\n</VTKFile>\n";
  const std::string path = (fs::path(directory) / (prefix + ".pvd")).string();
  writeFileAtomically(path, pvd.str());
  return path;
}

namespace {

// The file's first bytes up to and including `marker` (with `extra` more
// bytes), or all of it when the marker never comes: the XML header of a
// .vti without its appended data.
std::string headOf(std::ifstream& in, const std::string& marker, size_t extra) {
  std::string head;
  char chunk[1 << 16];
  while (in) {
    in.read(chunk, sizeof(chunk));
    head.append(chunk, static_cast<size_t>(in.gcount()));
    const size_t at = head.find(marker);
    if (at != std::string::npos && head.size() >= at + marker.size() + extra) break;
  }
  in.clear();
  return head;
}

}  // namespace

DensityFile::DensityFile(std::string path, const std::string& arrayName) : DensityFile(std::move(path), arrayName, 0) {}

void DensityFile::setGrid(const std::string& image, int pieceOfDim) {
  const std::vector<double> extent = numbers(attribute(image, "WholeExtent"));
  const std::vector<double> origin = numbers(attribute(image, "Origin"));
  const std::vector<double> spacing = numbers(attribute(image, "Spacing"));
  const std::string direction = attribute(image, "Direction");
  if (!direction.empty() && numbers(direction) != std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0, 1})
    throw InvalidDensity(path_ + " has a rotated image (direction matrix " + direction +
                         "); resample it onto an axis-aligned grid first");
  if (extent.size() != 6 || origin.size() != 3 || spacing.size() != 3)
    throw InvalidDensity(path_ + ": cannot read the image extent, origin and spacing");
  std::array<int64_t, 3> n;
  for (int a = 0; a < 3; ++a) {
    extent_[2 * a] = static_cast<int64_t>(extent[2 * a]);
    extent_[2 * a + 1] = static_cast<int64_t>(extent[2 * a + 1]);
    n[a] = extent_[2 * a + 1] - extent_[2 * a] + 1;
  }
  // A piece of a .pvti takes its image's dimension (it may be one plane thick).
  const int dim = pieceOfDim ? pieceOfDim : n[2] > 1 ? 3 : 2;
  if (!pieceOfDim && dim == 2 && (n[0] < 2 || n[1] < 2))
    throw InvalidDensity(path_ +
                         ": a 2D image must span the x-y plane (the CLI reads x-y images; the plugin any plane)");
  grid_.dim = dim;
  for (int a = 0; a < 3; ++a) {
    grid_.n[a] = a < dim ? n[a] : 1;
    grid_.origin[a] = a < dim ? origin[a] + extent[2 * a] * spacing[a] : 0;
    grid_.spacing[a] = a < dim ? spacing[a] : 1;
  }
  if (!pieceOfDim) grid_.validate();
}

void DensityFile::openPieces(const std::string& bytes, const std::string& arrayName) {
  const size_t imageTag = bytes.find("<PImageData");
  if (bytes.find("type=\"PImageData\"") == std::string::npos || imageTag == std::string::npos)
    throw InvalidDensity(path_ + " is not a VTK XML parallel image file (.pvti)");
  setGrid(bytes.substr(imageTag, bytes.find('>', imageTag) - imageTag), 0);
  const size_t pointData = bytes.find("<PPointData");
  const std::string wanted =
      !arrayName.empty() || pointData == std::string::npos
          ? arrayName
          : attribute(bytes.substr(pointData, bytes.find('>', pointData) - pointData), "Scalars");
  const std::filesystem::path folder = std::filesystem::path(path_).parent_path();
  for (size_t at = bytes.find("<Piece"); at != std::string::npos; at = bytes.find("<Piece", at + 1)) {
    const std::string tag = bytes.substr(at, bytes.find('>', at) - at);
    Piece piece;
    piece.file = std::shared_ptr<const DensityFile>(
        new DensityFile((folder / attribute(tag, "Source")).string(), wanted, grid_.dim));
    const std::vector<double> extent = numbers(attribute(tag, "Extent"));
    for (int k = 0; k < 6; ++k)
      if (extent.size() != 6 || static_cast<int64_t>(extent[k]) != piece.file->extent_[k])
        throw InvalidDensity(path_ + ": the extent of piece " + attribute(tag, "Source") +
                             " is not the one its own file gives");
    pieces_.push_back(piece);
  }
  if (pieces_.empty()) throw InvalidDensity(path_ + " lists no pieces");
}

DensityFile::DensityFile(std::string path, const std::string& arrayName, int pieceOfDim) : path_(std::move(path)) {
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw InvalidDensity("cannot open " + path_ + ": check the path");
  auto endsWith = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return path_.size() > n && path_.compare(path_.size() - n, n, suffix) == 0;
  };
  if (endsWith(".npy")) {
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    whole_ = readNpy(path_, bytes, grid_);
    return;
  }
  if (endsWith(".pvti")) {
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    openPieces(bytes, arrayName);
    return;
  }
  // The header, up to the appended data's first byte (raw data is not read
  // here: a rank reads its planes only).
  const std::string bytes = headOf(in, "<AppendedData", 4096);

  const size_t imageTag = bytes.find("<ImageData");
  if (bytes.find("type=\"ImageData\"") == std::string::npos || imageTag == std::string::npos)
    throw InvalidDensity(path_ + " is not a VTK XML image file (.vti or .pvti) or a .npy array");
  if (bytes.find("compressor=") != std::string::npos)
    throw InvalidDensity(path_ +
                         " is compressed; the jko CLI reads uncompressed .vti files (save with "
                         "compression 'None' in ParaView) or .npy arrays; the ParaView plugin reads any .vti");
  setGrid(bytes.substr(imageTag, bytes.find('>', imageTag) - imageTag), pieceOfDim);
  const int dim = grid_.dim;

  // Find the point-data array.
  const size_t pointData = bytes.find("<PointData");
  const size_t pointDataEnd = bytes.find("</PointData>");
  if (pointData == std::string::npos || pointDataEnd == std::string::npos)
    throw InvalidDensity(path_ + " has no point data; the density must be a point-data scalar");
  const std::string pointTag = bytes.substr(pointData, bytes.find('>', pointData) - pointData);
  const std::string wanted = !arrayName.empty() ? arrayName : attribute(pointTag, "Scalars");
  size_t cursor = pointData;
  std::string tag;
  std::vector<std::string> names;
  while (true) {
    const size_t start = bytes.find("<DataArray", cursor);
    if (start == std::string::npos || start > pointDataEnd) break;
    const size_t end = bytes.find('>', start);
    const std::string candidate = bytes.substr(start, end - start + 1);
    names.push_back(attribute(candidate, "Name"));
    if (tag.empty() && (wanted.empty() || names.back() == wanted) &&
        (attribute(candidate, "NumberOfComponents").empty() || attribute(candidate, "NumberOfComponents") == "1"))
      tag = candidate;
    cursor = end;
  }
  if (tag.empty()) {
    std::string list;
    for (const auto& name : names) list += (list.empty() ? "" : ", ") + name;
    throw InvalidDensity(path_ + ": no point-data scalar named '" + wanted + "' (arrays: " + list + ")");
  }
  const std::string type = attribute(tag, "type");
  if (type != "Float64" && type != "Float32")
    throw InvalidDensity(path_ + ": the density array must be Float32 or Float64, got " + type);
  valueBytes_ = type == "Float64" ? 8 : 4;
  const int64_t count = grid_.numNodes();
  const std::string format = attribute(tag, "format");
  if (format == "ascii") {
    // Text values: the whole file is read (ascii images are small).
    in.seekg(0);
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t begin = all.find('>', all.find(tag)) + 1;
    const std::vector<double> parsed = numbers(all.substr(begin, all.find("</DataArray>", begin) - begin));
    if (static_cast<int64_t>(parsed.size()) != count) throw InvalidDensity(path_ + ": wrong number of values");
    std::vector<int64_t> vtkShape;
    for (int a = dim - 1; a >= 0; --a) vtkShape.push_back(grid_.n[a]);
    whole_ = fromVtkOrder(at::tensor(parsed, at::kDouble).view(vtkShape));
  } else if (format == "appended") {
    const size_t appended = bytes.find("<AppendedData");
    if (appended == std::string::npos || bytes.find("encoding=\"raw\"", appended) == std::string::npos)
      throw InvalidDensity(path_ + ": only raw appended data is supported (not base64)");
    const size_t base = bytes.find('_', appended) + 1;
    const bool header64 = bytes.find("header_type=\"UInt64\"") != std::string::npos;
    dataOffset_ = base + std::stoull(attribute(tag, "offset")) + (header64 ? 8 : 4);
    in.seekg(0, std::ios::end);
    if (dataOffset_ + count * valueBytes_ > static_cast<uint64_t>(in.tellg()))
      throw InvalidDensity(path_ + " is truncated");
  } else {
    throw InvalidDensity(path_ + ": unsupported data format '" + format + "' (use raw appended or ascii)");
  }
}

at::Tensor DensityFile::fromVtkOrder(const at::Tensor& values) const {
  std::vector<int64_t> permutation;
  for (int a = grid_.dim - 1; a >= 0; --a) permutation.push_back(a);
  return values.permute(permutation).contiguous();
}

at::Tensor DensityFile::read() const { return readPlanes(0, grid_.n[0]); }

at::Tensor DensityFile::readPlanes(int64_t lo, int64_t hi) const {
  if (lo < 0 || hi > grid_.n[0] || lo >= hi)
    throw InvalidParameter("planes", formatValue(lo) + "-" + formatValue(hi),
                           "a part of the " + formatValue(grid_.n[0]) + " planes along x of " + path_);
  if (whole_.defined()) return whole_.narrow(0, lo, hi - lo).contiguous();
  if (!pieces_.empty()) {
    // Each piece's part of planes [lo, hi), put in place; pieces may share
    // their boundary planes (the same values), and must cover every node.
    std::vector<int64_t> shape{hi - lo};
    for (int a = 1; a < grid_.dim; ++a) shape.push_back(grid_.n[a]);
    at::Tensor values = at::zeros(shape, at::kDouble), covered = at::zeros(shape, at::kBool);
    for (const Piece& piece : pieces_) {
      const std::array<int64_t, 6>& e = piece.file->extent_;
      const int64_t first = e[0] - extent_[0];
      const int64_t a = std::max(lo, first), b = std::min(hi, first + piece.file->grid_.n[0]);
      if (a >= b) continue;
      at::Tensor target = values.narrow(0, a - lo, b - a), mask = covered.narrow(0, a - lo, b - a);
      for (int axis = 1; axis < grid_.dim; ++axis) {
        target = target.narrow(axis, e[2 * axis] - extent_[2 * axis], piece.file->grid_.n[axis]);
        mask = mask.narrow(axis, e[2 * axis] - extent_[2 * axis], piece.file->grid_.n[axis]);
      }
      target.copy_(piece.file->readPlanes(a - first, b - first));
      mask.fill_(true);
    }
    if (!covered.all().item<bool>())
      throw InvalidDensity(path_ + ": its pieces do not cover planes " + formatValue(lo) + "-" + formatValue(hi - 1) +
                           " along x; a piece file is missing from the list");
    return values;
  }
  // VTK orders the values with x fastest: planes [lo, hi) along x are a
  // run of hi - lo values in each row of x, one row per (y, z).
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw InvalidDensity("cannot open " + path_ + ": check the path");
  const int64_t rows = grid_.numNodes() / grid_.n[0], run = hi - lo;
  const at::ScalarType scalar = valueBytes_ == 8 ? at::kDouble : at::kFloat;
  std::vector<int64_t> shape;
  for (int a = grid_.dim - 1; a >= 1; --a) shape.push_back(grid_.n[a]);
  shape.push_back(run);
  at::Tensor values = at::empty(shape, scalar);
  char* out = static_cast<char*>(values.data_ptr());
  if (run == grid_.n[0]) {  // whole rows: the values in one read
    in.seekg(static_cast<std::streamoff>(dataOffset_));
    in.read(out, static_cast<std::streamsize>(rows * run * valueBytes_));
    if (!in) throw InvalidDensity(path_ + ": reading its values failed (truncated?)");
    return fromVtkOrder(values.to(at::kDouble));
  }
  for (int64_t row = 0; row < rows; ++row) {
    in.seekg(static_cast<std::streamoff>(dataOffset_ + (row * grid_.n[0] + lo) * valueBytes_));
    in.read(out + row * run * valueBytes_, static_cast<std::streamsize>(run * valueBytes_));
    if (!in) throw InvalidDensity(path_ + ": reading its values failed (truncated?)");
  }
  return fromVtkOrder(values.to(at::kDouble));
}

at::Tensor readDensity(const std::string& path, const std::string& arrayName, Grid& grid) {
  const DensityFile file(path, arrayName);
  grid = file.grid();
  return file.read();
}

FrameSeries::FrameSeries(std::string directory, std::string prefix, const Grid& grid)
    : directory_(std::move(directory)), prefix_(std::move(prefix)), grid_(grid) {
  std::error_code error;
  std::filesystem::create_directories(directory_, error);
  if (error) throw Error("cannot create the output folder " + directory_ + ": " + error.message());
  pvd_ << std::setprecision(17)
       << "<?xml version=\"1.0\"?>\n<VTKFile type=\"Collection\" version=\"0.1\">\n  <Collection>\n";
}

std::string frameStem(const std::string& prefix, int index) {
  char name[64];
  std::snprintf(name, sizeof(name), "_%04d", index);
  return prefix + name;
}

void FrameSeries::add(int index, const Frame& frame) {
  const std::string file = frameStem(prefix_, index) + ".vti";
  writeImageFile((std::filesystem::path(directory_) / file).string(), grid_, frame);
  addFile(frame.time, file);
}

void FrameSeries::addFile(double time, const std::string& file) {
  pvd_ << "    <DataSet timestep=\"" << time << "\" file=\"" << file << "\"/>\n";
  ++count_;
}

std::string FrameSeries::finish() {
  pvd_ << "  </Collection>\n</VTKFile>\n";
  const std::string path = (std::filesystem::path(directory_) / (prefix_ + ".pvd")).string();
  writeFileAtomically(path, pvd_.str());
  return path;
}

}  // namespace jko::cli
