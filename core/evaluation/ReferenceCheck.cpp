#include "evaluation/ReferenceCheck.h"

#include <chrono>

namespace jko {

ReferenceCheck::ReferenceCheck(std::shared_ptr<const JkoObjective> objective, ReferenceSolverOptions options)
    : solver_(std::move(objective), options) {}

ReferenceCheck::Result ReferenceCheck::check(const at::Tensor& rho, const at::Tensor& next) {
  const auto start = std::chrono::steady_clock::now();
  const ReferenceStep step = solver_.step(rho, warmStart_);
  Result r;
  r.milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  warmStart_ = step.displacement;
  r.iterations = step.iterations;
  r.objective = step.objective;
  r.next = step.next;
  const at::Tensor frame = next.to(at::kDouble);
  r.relativeL1 = ((frame - step.next).abs().sum() / step.next.abs().sum()).item<double>();
  return r;
}

}  // namespace jko
