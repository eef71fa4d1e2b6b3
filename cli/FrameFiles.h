// Gradient-flow frames on disk, readable by ParaView without this project:
// one VTK XML image file (.vti, raw appended float64) per frame, or a .pvti
// of one .vti piece per rank for a rollout split over ranks, and a .pvd
// collection carrying the frame times. Every file is written to a temporary
// name and renamed, so an interrupted run never leaves half a file.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "numerics/Grid.h"

namespace jko::cli {

struct Frame {
  double time = 0;
  at::Tensor density;   ///< shape of the grid
  at::Tensor velocity;  ///< (dim, n...) or undefined
};

/// Writes `prefix`_0000.vti ... and `prefix`.pvd into `directory` (created
/// when missing). Returns the path of the .pvd file.
std::string writeFrames(const std::string& directory, const std::string& prefix, const Grid& grid,
                        const std::vector<Frame>& frames);

/// Writes one frame as a .vti file.
void writeImageFile(const std::string& path, const Grid& grid, const Frame& frame);
/// Writes planes [firstPlane, firstPlane + n) along the first axis of a
/// frame on `whole` (n: the first size of frame.density) as a .vti whose
/// extent is that part of the whole image's: a piece of a .pvti.
void writeImagePiece(const std::string& path, const Grid& whole, int64_t firstPlane, const Frame& frame);

/// A piece of a .pvti: its planes along the first axis and its file,
/// relative to the .pvti's folder.
struct ImagePiece {
  int64_t firstPlane = 0, planes = 0;
  std::string file;
};
/// Writes the .pvti that puts `pieces` together into an image on `whole`
/// (point arrays density, and velocity when `hasVelocity`).
void writePieceIndex(const std::string& path, const Grid& whole, const std::vector<ImagePiece>& pieces,
                     bool hasVelocity);

/// Reads a density from a .vti (uncompressed: ascii, or raw appended as
/// written by writeImageFile) or a .npy file (float32/float64, C order, axes
/// x, y[, z]). `arrayName` picks a point-data array (empty: the active
/// scalars or the first array). Fills `grid` from the file (.npy: unit box).
at::Tensor readDensity(const std::string& path, const std::string& arrayName, Grid& grid);

/// The same, by parts: the constructor reads the grid and where the values
/// are (a .vti's header only), `readPlanes` the planes [lo, hi) along the
/// first axis (x) alone, so that a rank of a split rollout reads its slab
/// and nothing more (raw appended data: one run of values per row; ascii
/// and .npy files are read whole). A .pvti (ParaView's parallel writers,
/// or a split `jko rollout`) is read through its pieces' .vti files: those
/// that hold some of the planes asked for.
class DensityFile {
 public:
  DensityFile(std::string path, const std::string& arrayName);
  const Grid& grid() const { return grid_; }
  at::Tensor read() const;
  at::Tensor readPlanes(int64_t lo, int64_t hi) const;

 private:
  /// A piece of a .pvti, a 2D or 3D image as its whole one is (`pieceOfDim`).
  DensityFile(std::string path, const std::string& arrayName, int pieceOfDim);
  void setGrid(const std::string& imageTag, int pieceOfDim);
  void openPieces(const std::string& bytes, const std::string& arrayName);
  at::Tensor fromVtkOrder(const at::Tensor& values) const;

  struct Piece {
    std::shared_ptr<const DensityFile> file;
  };
  std::string path_;
  Grid grid_;
  std::array<int64_t, 6> extent_{};  ///< the image's extent, as the file gives it
  at::Tensor whole_;                 ///< ascii and .npy: read at once
  uint64_t dataOffset_ = 0, valueBytes_ = 8;
  std::vector<Piece> pieces_;  ///< .pvti
};

/// Writes `contents` to `path` through a temporary file and a rename.
void writeFileAtomically(const std::string& path, const std::string& contents);

/// `prefix`_0007 for frame 7: the name of its file, without the extension.
std::string frameStem(const std::string& prefix, int index);

/// Writes frames as they are computed (and a .pvd collection of them), so a
/// long run keeps no frame in memory.
class FrameSeries {
 public:
  FrameSeries(std::string directory, std::string prefix, const Grid& grid);
  void add(int index, const Frame& frame);
  /// Lists a frame written otherwise (a .pvti of pieces), relative to the folder.
  void addFile(double time, const std::string& file);
  /// Writes the .pvd and returns its path.
  std::string finish();
  int count() const { return count_; }

 private:
  std::string directory_, prefix_;
  Grid grid_;
  std::ostringstream pvd_;
  int count_ = 0;
};

}  // namespace jko::cli
