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
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace jko {

class Multigrid {
 public:
  /// A grid of n[0] x n[1] (x n[2]) nodes (dim 2 or 3), spacing h per axis.
  Multigrid(int dim, const std::array<int64_t, 3>& n, const std::array<double, 3>& h, int preSmoothing = 2,
            int postSmoothing = 2);

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

  int64_t nodes() const { return levels_.front().nodes; }
  int levels() const { return static_cast<int>(levels_.size()); }

 private:
  // Shapes are stored with three axes, the grid's last axis innermost (a 2D
  // grid gets a leading axis of length 1), so that every loop runs along the
  // longest contiguous line.
  struct Level {
    std::array<int64_t, 3> n{1, 1, 1};
    std::array<double, 3> h{1, 1, 1};
    int64_t nodes = 1;
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
  void smooth(const Level& level, const double* f, double* x, bool redFirst) const;
  void residualOn(const Level& level, const double* f, const double* x, double* r) const;
  void restrictTo(const Level& fine, const Level& coarse, const double* r, double* out) const;
  void prolongAdd(const Level& coarse, const Level& fine, const double* x, double* out) const;
  void cycleOn(size_t level, const double* f, double* x) const;
  void coarsenCoefficients(const Level& fine, Level& coarse) const;
  void finishLevel(Level& level) const;

  std::vector<Level> levels_;
  int dim_, pre_, post_;
};

}  // namespace jko
