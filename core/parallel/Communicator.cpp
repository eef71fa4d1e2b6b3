#include "parallel/Communicator.h"

#include <algorithm>
#include <exception>
#include <stdexcept>

#include "numerics/Errors.h"

namespace jko {

void SerialCommunicator::exchange(const double* send, const std::vector<int64_t>& sendCounts, double* receive,
                                  const std::vector<int64_t>& receiveCounts) const {
  if (sendCounts.size() != 1 || receiveCounts.size() != 1 || sendCounts[0] != receiveCounts[0])
    throw std::logic_error("a serial exchange sends to itself exactly what it receives");
  std::copy(send, send + sendCounts[0], receive);
}

void agreeOnFailure(const Communicator& communicator, const std::function<void()>& work,
                    const std::function<std::string(int rank)>& elsewhere) {
  std::exception_ptr failure;
  try {
    work();
  } catch (...) {
    failure = std::current_exception();
  }
  const double failedOn = communicator.max(failure ? static_cast<double>(communicator.rank()) : -1.0);
  if (failedOn < 0) return;
  if (failure) std::rethrow_exception(failure);
  throw Error(elsewhere(static_cast<int>(failedOn)));
}

}  // namespace jko
