// The collective operations a step distributed over processes needs (sums,
// maxima, and an all-to-all exchange of planes), behind an interface so that
// core stays free of any one message-passing library: the serial
// communicator below, MPI (MpiCommunicator.h, when built with MPI), or an
// adapter over a host application's own controller.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace jko {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// In place: values[i] becomes the sum (max) of values[i] over all ranks.
  virtual void sum(double* values, int64_t count) const = 0;
  virtual void max(double* values, int64_t count) const = 0;
  /// All-to-all exchange: `send` holds sendCounts[r] values for rank r, one
  /// block after another in rank order; `receive` gets receiveCounts[r]
  /// values from rank r in the same layout. Every rank calls it.
  virtual void exchange(const double* send, const std::vector<int64_t>& sendCounts, double* receive,
                        const std::vector<int64_t>& receiveCounts) const = 0;

  double sum(double value) const {
    sum(&value, 1);
    return value;
  }
  double max(double value) const {
    max(&value, 1);
    return value;
  }
};

/// Runs `work` on this rank and agrees over the ranks whether it threw
/// anywhere, so that every rank throws (none waits for the others in the
/// next collective call): the rank that failed rethrows its own exception,
/// the others throw Error with `elsewhere(rank)`, naming a rank that failed.
/// Collective.
void agreeOnFailure(const Communicator& communicator, const std::function<void()>& work,
                    const std::function<std::string(int rank)>& elsewhere);

/// Fills the halo of a rank's window of a field split into slabs of whole
/// planes: rank r owns planes [firstPlane[r], firstPlane[r + 1]) (ranks + 1
/// entries) and holds the window [max(0, lo - halo), min(total, hi + halo))
/// of `planeSize` values a plane, contiguous at `window`; the planes outside
/// its own come from their owners. Collective.
void refreshHalo(const Communicator& communicator, const std::vector<int64_t>& firstPlane, int64_t halo,
                 int64_t planeSize, double* window);

/// One process: sums and maxima are the values themselves.
class SerialCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void sum(double*, int64_t) const override {}
  void max(double*, int64_t) const override {}
  void exchange(const double* send, const std::vector<int64_t>& sendCounts, double* receive,
                const std::vector<int64_t>& receiveCounts) const override;
  using Communicator::max;
  using Communicator::sum;
};

}  // namespace jko
