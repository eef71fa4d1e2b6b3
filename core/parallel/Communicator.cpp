#include "parallel/Communicator.h"

#include <algorithm>
#include <stdexcept>

namespace jko {

void SerialCommunicator::exchange(const double* send, const std::vector<int64_t>& sendCounts, double* receive,
                                  const std::vector<int64_t>& receiveCounts) const {
  if (sendCounts.size() != 1 || receiveCounts.size() != 1 || sendCounts[0] != receiveCounts[0])
    throw std::logic_error("a serial exchange sends to itself exactly what it receives");
  std::copy(send, send + sendCounts[0], receive);
}

}  // namespace jko
