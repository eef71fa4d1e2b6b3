// Geometric multigrid for the variable-coefficient elliptic problem
//
//   a_i x_i + sum over the faces f of node i: k_f (x_i - x_neighbour) / h_f^2 = f_i
//
// on a cell-centred grid with Neumann walls (the discrete form of
// a x - div(k grad x) = f), with a >= 0 at the nodes and k >= 0 on the
// faces. It is the preconditioner of the linearised JKO step
// (LinearizedStep.h), whose operator has this form with a = 1 / U''(rho) and
// k = tau rho. Coarse levels halve every axis with more than two nodes
// (odd counts too: the last coarse cell then has one child); their
// coefficients are rediscretised: a is averaged over the children, a coarse
// face takes the mean of the fine faces across it, spacing doubles. Coarse
// corrections are interpolated (multi)linearly between cell centres,
// residuals restricted by the normalised transpose of that interpolation;
// red-black Gauss-Seidel smooths (red then black before the coarse
// correction, black then red after it). Plain loops on float64, one field
// at a time.
//
// Split over ranks (MultigridSlabs): each rank holds its planes of the
// grid's first axis on every level, with two planes of halo. A colour pass
// updates a node from the other colour only, so with the halo refreshed
// before each pass the split smoothing is the serial one node for node;
// residuals, restrictions (summed in the serial order) and interpolations
// read within the halo. Once a level is small (MultigridSlabs::gatherNodes)
// or a rank's slab would thin below two planes, it is gathered onto every
// rank and cycled there whole, by the serial levels: every rank's cycle
// equals the serial one to rounding, bit for bit on any number of ranks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace jko {

class Communicator;

/// How a Multigrid's grid is split over ranks: rank r owns the planes
/// [firstPlane[r], firstPlane[r + 1]) of the grid's first axis, and every
/// field passed to the Multigrid is the rank's owned planes.
struct MultigridSlabs {
  std::shared_ptr<const Communicator> communicator;
  std::vector<int64_t> firstPlane;  ///< ranks + 1 entries, 0 first, the axis's length last
  /// A level of at most this many nodes is gathered and cycled whole on
  /// every rank (the coarse levels replicated: at 32^3, 1/8 of a 64^3
  /// level's work on each rank).
  int64_t gatherNodes = 32768;
};

class Multigrid {
 public:
  /// A grid of n[0] x n[1] (x n[2]) nodes (dim 2 or 3), spacing h per axis.
  Multigrid(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h, int preSmoothing = 2,
            int postSmoothing = 2);
  /// The same grid split over ranks (collective calls below: every rank
  /// calls setCoefficients, cycle, residual and apply together).
  Multigrid(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h, int preSmoothing,
            int postSmoothing, MultigridSlabs slabs);
  ~Multigrid();

  /// Coefficients on the finest level: a (one per node) and, per axis, the
  /// face coefficient between node i and its + neighbour along that axis
  /// (one per node; the last node's entry along the axis is ignored).
  /// Rebuilds the coarse levels' coefficients.
  void setCoefficients(const double* a, const std::array<const double*, 3>& faces);

  /// One V-cycle on A x = f starting from x (updated in place).
  void cycle(const double* f, double* x) const;
  /// r = f - A x on the finest level.
  void residual(const double* f, const double* x, double* r) const;
  /// y = A x on the finest level.
  void apply(const double* x, double* y) const;

  /// The nodes of a field passed in: the grid's (split: the rank's planes').
  int64_t nodes() const;
  /// The levels of the whole hierarchy (split: the split ones and the
  /// gathered ones together).
  int levels() const;
  /// Split: the levels cycled apart on the ranks before the gathered ones.
  int splitLevels() const { return gathered_ ? static_cast<int>(levels_.size()) - 1 : 0; }

 private:
  // Shapes are stored with three axes, the grid's last axis innermost (a 2D
  // grid gets a leading axis of length 1), so that every loop runs along the
  // longest contiguous line. The split axis is the grid's first, slot
  // 3 - dim; a split level stores the rank's planes of it and a halo.
  struct Level {
    std::array<int64_t, 3> n{1, 1, 1};       ///< stored nodes per slot
    std::array<int64_t, 3> global{1, 1, 1};  ///< the level's nodes per slot
    std::array<int64_t, 3> offset{0, 0, 0};  ///< global index of the first stored node per slot
    std::array<double, 3> h{1, 1, 1};
    int64_t nodes = 1;  ///< stored
    /// Owned planes of the split slot, stored indices [ownedFirst, ownedLast),
    /// and every rank's, global (split levels only).
    int64_t ownedFirst = 0, ownedLast = 1;
    std::vector<int64_t> firstPlane;
    std::vector<double> a, diagonal, inverseDiagonal;
    std::array<std::vector<double>, 3> face;             ///< k_f / h^2 towards the + neighbour
    std::array<std::vector<double>, 3> weight;           ///< raw k_f (before / h^2), kept for coarsening
    mutable std::vector<double> x, f, r;                 ///< work fields (coarse levels)
    std::array<bool, 3> coarsened{false, false, false};  ///< axis halved going to the next level
    /// Interpolation from the next level per axis: for each node of this
    /// level along the axis, the two coarse nodes and the weight of the first;
    /// the column sums of that interpolation (the restriction's normalisation).
    std::array<std::vector<int64_t>, 3> tapLow, tapHigh;
    std::array<std::vector<double>, 3> tapWeight, columnSum;
    mutable std::vector<double> buffer0, buffer1;  ///< transfer work fields
  };
  struct Hierarchy;
  static Hierarchy plan(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h);
  void build(size_t count);
  int splitSlot() const { return 3 - dim_; }
  /// The owned rows (i0, i1) of a level, in row order.
  std::pair<int64_t, int64_t> ownedRows(const Level& level) const;
  int64_t planeSize(const Level& level) const { return level.nodes / level.n[splitSlot()]; }
  /// Split levels: fills the halo planes of `field` from their owners.
  void exchangeHalo(const Level& level, double* field) const;
  /// Split levels: the whole level's field on every rank from the owned planes.
  void gatherWhole(const Level& level, const double* field, double* whole) const;
  /// Split: the finest level's stored window from owned planes, and back.
  void toWindow(const double* owned, std::vector<double>& window) const;
  void fromWindow(const std::vector<double>& window, double* owned) const;
  void smooth(const Level& level, const double* f, double* x, bool redFirst) const;
  void residualOn(const Level& level, const double* f, const double* x, double* r) const;
  void restrictTo(const Level& fine, const Level& coarse, const double* r, double* out) const;
  void prolongAdd(const Level& coarse, const Level& fine, const double* x, double* out) const;
  void cycleOn(size_t level, const double* f, double* x) const;
  void coarsenCoefficients(const Level& fine, Level& coarse) const;
  void finishLevel(Level& level) const;

  std::vector<Level> levels_;
  int dim_, pre_, post_;
  /// Split: the ranks, and the serial levels from the gathered one down
  /// (levels_.back() is the split form of its first level).
  MultigridSlabs slabs_;
  std::unique_ptr<Multigrid> gathered_;
  mutable std::vector<double> fineF_, fineX_, fineR_, gatherF_, gatherX_, sendBuffer_;
};

}  // namespace jko
