#include "parallel/SlabConvolution.h"

#include <algorithm>
#include <sstream>

#include "numerics/Errors.h"

namespace jko {
namespace {

int64_t elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// One all-to-all exchange of complex blocks: send[r] goes to rank r, and the
// block from rank r arrives with the shape receiveShapes[r].
std::vector<at::Tensor> exchangeBlocks(const Communicator& communicator, const std::vector<at::Tensor>& send,
                                       const std::vector<std::vector<int64_t>>& receiveShapes) {
  const int ranks = communicator.size();
  std::vector<int64_t> sendCounts(ranks), receiveCounts(ranks);
  std::vector<at::Tensor> flat(ranks);
  int64_t receiveTotal = 0;
  for (int r = 0; r < ranks; ++r) {
    flat[r] = at::view_as_real(send[r].contiguous()).reshape({-1});
    sendCounts[r] = flat[r].numel();
    receiveCounts[r] = 2 * elements(receiveShapes[r]);
    receiveTotal += receiveCounts[r];
  }
  const at::Tensor sendBuffer = at::cat(flat).contiguous();
  const at::Tensor receiveBuffer = at::empty({receiveTotal}, at::kDouble);
  communicator.exchange(sendBuffer.data_ptr<double>(), sendCounts, receiveBuffer.data_ptr<double>(), receiveCounts);
  std::vector<at::Tensor> received(ranks);
  int64_t at = 0;
  for (int r = 0; r < ranks; ++r) {
    std::vector<int64_t> shape = receiveShapes[r];
    shape.push_back(2);
    received[r] = at::view_as_complex(receiveBuffer.narrow(0, at, receiveCounts[r]).view(shape));
    at += receiveCounts[r];
  }
  return received;
}

}  // namespace

SlabConvolution::SlabConvolution(const EnergySpec& spec, SlabDecomposition slabs) : slabs_(std::move(slabs)) {
  if (spec.kernel == KernelKind::None || spec.kernel == KernelKind::Quadratic)
    throw InvalidParameter("interaction kernel", toString(spec.kernel),
                           "the split convolution is for kernels without a moment form (attractive-repulsive, "
                           "Keller-Segel)");
  const Grid& grid = slabs_.grid();
  const int d = grid.dim;
  for (int a = 1; a < d; ++a) {
    acrossDims_.push_back(a + 1);
    acrossSizes_.push_back(2 * grid.n[a]);
  }
  // Columns: the transform's axis 2, n_1 + 1 frequencies in 2D (real-to-
  // complex along it), 2 n_1 in 3D (the real-to-complex axis is the last).
  const int64_t columns = d == 2 ? grid.n[1] + 1 : 2 * grid.n[1];
  for (int r = 0; r < slabs_.ranks(); ++r)
    columnsOf_.push_back(SlabDecomposition::balancedBlock(columns, slabs_.ranks(), r));

  // The padded kernel's planes [2 lo, 2 hi) on this rank: 2 n_0 in all.
  const SlabDecomposition::Range own = slabs_.owned();
  const at::Tensor kernelPlanes = paddedInteractionKernel(spec, grid, 2 * own.lo, 2 * own.hi).unsqueeze(0);
  std::vector<int64_t> planesOf;
  for (int r = 0; r < slabs_.ranks(); ++r) planesOf.push_back(2 * slabs_.owned(r).planes());
  const at::Tensor columnsOfKernel = toColumns(transformAcross(kernelPlanes), planesOf)[0];
  kernelColumns_ = columnsOfKernel.size(1) > 0 ? (at::fft_fft(columnsOfKernel, 2 * grid.n[0], 0) * grid.cellVolume())
                                               : columnsOfKernel;
}

at::Tensor SlabConvolution::transformAcross(const at::Tensor& planes) const {
  return at::fft_rfftn(planes, at::IntArrayRef(acrossSizes_), at::IntArrayRef(acrossDims_));
}

at::Tensor SlabConvolution::toColumns(const at::Tensor& planes, const std::vector<int64_t>& planesOf) const {
  const int ranks = slabs_.ranks();
  const SlabDecomposition::Range mine = columnsOf_[slabs_.rank()];
  std::vector<at::Tensor> send(ranks);
  std::vector<std::vector<int64_t>> receiveShapes(ranks);
  for (int r = 0; r < ranks; ++r) {
    send[r] = planes.narrow(2, columnsOf_[r].lo, columnsOf_[r].planes());
    std::vector<int64_t> shape = planes.sizes().vec();
    shape[1] = planesOf[r];
    shape[2] = mine.planes();
    receiveShapes[r] = shape;
  }
  return at::cat(exchangeBlocks(slabs_.communicator(), send, receiveShapes), 1);
}

at::Tensor SlabConvolution::toPlanes(const at::Tensor& columns) const {
  const int ranks = slabs_.ranks();
  const SlabDecomposition::Range own = slabs_.owned();
  std::vector<at::Tensor> send(ranks);
  std::vector<std::vector<int64_t>> receiveShapes(ranks);
  for (int r = 0; r < ranks; ++r) {
    const SlabDecomposition::Range theirs = slabs_.owned(r);
    send[r] = columns.narrow(1, theirs.lo, theirs.planes());
    std::vector<int64_t> shape = columns.sizes().vec();
    shape[1] = own.planes();
    shape[2] = columnsOf_[r].planes();
    receiveShapes[r] = shape;
  }
  return at::cat(exchangeBlocks(slabs_.communicator(), send, receiveShapes), 2);
}

at::Tensor SlabConvolution::operator()(const at::Tensor& ownedIn) const {
  const Grid& grid = slabs_.grid();
  const at::Tensor owned = ownedIn.to(at::kDouble).contiguous();
  bool fits = owned.dim() == grid.dim + 1 && owned.size(1) == slabs_.owned().planes();
  for (int a = 1; fits && a < grid.dim; ++a) fits = owned.size(a + 1) == grid.n[a];
  if (!fits) {
    std::ostringstream sizes;
    sizes << owned.sizes();
    throw InvalidDensity("the split convolution was given a slab of shape " + sizes.str() +
                         " that does not fit this rank's " + formatValue(slabs_.owned().planes()) + " planes of the " +
                         grid.describe());
  }
  std::vector<int64_t> planesOf;
  for (int r = 0; r < slabs_.ranks(); ++r) planesOf.push_back(slabs_.owned(r).planes());
  // Along the first axis: zero-padded to 2 n_0 by the transform's length.
  at::Tensor columns = toColumns(transformAcross(owned), planesOf);
  if (columns.size(2) > 0)
    columns =
        at::fft_ifft(at::fft_fft(columns, 2 * grid.n[0], 1) * kernelColumns_, 2 * grid.n[0], 1).narrow(1, 0, grid.n[0]);
  at::Tensor out = at::fft_irfftn(toPlanes(columns), at::IntArrayRef(acrossSizes_), at::IntArrayRef(acrossDims_));
  for (int a = 1; a < grid.dim; ++a) out = out.narrow(a + 1, 0, grid.n[a]);
  return out.contiguous();
}

}  // namespace jko
