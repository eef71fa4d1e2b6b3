// The true error of a frame's step: the reference solver's step from the
// same density, against the frame. What the step certificate
// (numerics/StepCertificate) estimates; measured by `jko eval|rollout
// --reference-check` and the certificate study (scripts/certificate_study.py).
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "numerics/ReferenceSolver.h"

namespace jko {

class ReferenceCheck {
 public:
  explicit ReferenceCheck(std::shared_ptr<const JkoObjective> objective, ReferenceSolverOptions options = {});

  struct Result {
    double relativeL1 = 0;    ///< sum |next - rho*| / sum rho*, rho* the reference step from rho
    double milliseconds = 0;  ///< the reference step's wall time
    int iterations = 0;
    double objective = 0;  ///< J at the reference step's map: which of two minimisers is lower
    at::Tensor next;       ///< rho*
  };

  /// The reference step from rho (shape of the grid), warm-started from the
  /// previous check's displacement (as a reference rollout would be, and
  /// never from the frame's own map), against `next`.
  Result check(const at::Tensor& rho, const at::Tensor& next);

 private:
  ReferenceSolver solver_;
  at::Tensor warmStart_;
};

}  // namespace jko
