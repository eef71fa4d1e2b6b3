// A grid split into slabs of whole planes along its first axis, one slab per
// rank, and the exchanges a distributed step needs: a rank's slab with a
// halo of neighbouring planes (from their owners), and a windowed field summed
// back onto the owners of its planes (a deposit whose particles moved across
// slabs). Fields are contiguous tensors whose dimension `axis` runs over the
// planes: a density (B, planes, ...) has axis 1, a displacement
// (B, dim, planes, ...) axis 2.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "numerics/Grid.h"
#include "numerics/Multigrid.h"
#include "parallel/Communicator.h"

namespace jko {

class SlabDecomposition {
 public:
  /// Planes [lo, hi) of the first axis.
  struct Range {
    int64_t lo = 0, hi = 0;
    int64_t planes() const { return hi - lo; }
  };

  /// Throws InvalidParameter when the grid has fewer than 2 planes per rank.
  SlabDecomposition(const Grid& grid, std::shared_ptr<const Communicator> communicator);

  const Grid& grid() const { return grid_; }
  const Communicator& communicator() const { return *communicator_; }
  std::shared_ptr<const Communicator> communicatorPointer() const { return communicator_; }
  int rank() const { return communicator_->rank(); }
  int ranks() const { return communicator_->size(); }

  /// [lo, hi) of `total` items cut into `parts` balanced blocks in order,
  /// the first total % parts one longer: block `part`.
  static Range balancedBlock(int64_t total, int parts, int part);
  /// The planes rank r owns (balanced, in rank order), and this rank's.
  Range owned(int rank) const;
  Range owned() const { return owned(rank()); }
  /// The owned planes and `halo` more on each side, within the grid.
  Range window(int64_t halo, int rank) const;
  Range window(int64_t halo) const { return window(halo, rank()); }
  /// The ranks' planes as a split multigrid takes them.
  MultigridSlabs multigridSlabs(int64_t gatherNodes = MultigridSlabs{}.gatherNodes) const;
  /// Planes [lo, hi) as a grid of their own (the origin moved to plane lo).
  Grid slab(Range planes) const;

  /// This rank's planes of a field given whole.
  at::Tensor own(const at::Tensor& whole, int axis = 1) const;
  /// This rank's window (owned planes and `halo` on each side) of a field
  /// of which every rank holds its owned planes. Every rank calls it with
  /// the same halo.
  at::Tensor withHalo(const at::Tensor& owned, int64_t halo, int axis = 1) const;
  /// The owned planes of the sum of every rank's window of a field (each
  /// rank holding window(halo) of its contribution): the adjoint of
  /// withHalo. Every rank calls it with the same halo.
  at::Tensor sumOntoOwners(const at::Tensor& window, int64_t halo, int axis = 1) const;
  /// The whole field on every rank (output, tests).
  at::Tensor gather(const at::Tensor& owned, int axis = 1) const;

  /// Sums over all ranks, per sample: `local` (B,) -> (B,).
  at::Tensor sum(const at::Tensor& local) const;
  at::Tensor max(const at::Tensor& local) const;

 private:
  /// Moves planes: this rank holds `held` of the field and every rank r
  /// wants wanted(r); planes that arrive from several ranks are summed.
  template <typename Held, typename Wanted>
  at::Tensor transfer(const at::Tensor& field, int axis, Held held, Wanted wanted, bool accumulate) const;

  Grid grid_;
  std::shared_ptr<const Communicator> communicator_;
};

}  // namespace jko
