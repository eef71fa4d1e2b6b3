#include "parallel/Communicator.h"

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <utility>

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

void refreshHalo(const Communicator& communicator, const std::vector<int64_t>& firstPlane, int64_t halo,
                 int64_t planeSize, double* window) {
  const int ranks = communicator.size(), rank = communicator.rank();
  if (ranks == 1) return;
  const int64_t total = firstPlane.back();
  auto windowOf = [&](int r) {
    return std::make_pair(std::max<int64_t>(0, firstPlane[r] - halo), std::min(total, firstPlane[r + 1] + halo));
  };
  // What this rank sends to q: its owned planes inside q's window; what it
  // receives from q: q's owned planes inside its own window.
  const auto mine = windowOf(rank);
  std::vector<int64_t> sendCounts(ranks, 0), receiveCounts(ranks, 0);
  std::vector<std::pair<int64_t, int64_t>> sendPlanes(ranks), receivePlanes(ranks);
  int64_t sendTotal = 0, receiveTotal = 0;
  for (int q = 0; q < ranks; ++q) {
    if (q == rank) continue;
    const auto theirs = windowOf(q);
    sendPlanes[q] = {std::max(firstPlane[rank], theirs.first), std::min(firstPlane[rank + 1], theirs.second)};
    receivePlanes[q] = {std::max(firstPlane[q], mine.first), std::min(firstPlane[q + 1], mine.second)};
    sendCounts[q] = std::max<int64_t>(0, sendPlanes[q].second - sendPlanes[q].first) * planeSize;
    receiveCounts[q] = std::max<int64_t>(0, receivePlanes[q].second - receivePlanes[q].first) * planeSize;
    sendTotal += sendCounts[q];
    receiveTotal += receiveCounts[q];
  }
  std::vector<double> send(std::max<int64_t>(1, sendTotal)), receive(std::max<int64_t>(1, receiveTotal));
  int64_t at = 0;
  for (int q = 0; q < ranks; ++q)
    if (sendCounts[q] > 0) {
      std::copy_n(window + (sendPlanes[q].first - mine.first) * planeSize, sendCounts[q], send.data() + at);
      at += sendCounts[q];
    }
  communicator.exchange(send.data(), sendCounts, receive.data(), receiveCounts);
  at = 0;
  for (int q = 0; q < ranks; ++q)
    if (receiveCounts[q] > 0) {
      std::copy_n(receive.data() + at, receiveCounts[q], window + (receivePlanes[q].first - mine.first) * planeSize);
      at += receiveCounts[q];
    }
}

}  // namespace jko
