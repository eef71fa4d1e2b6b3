#include "parallel/MpiCommunicator.h"

#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>

#ifdef JKO_HAVE_MPI
#include <mpi.h>
#endif

namespace jko {

#ifdef JKO_HAVE_MPI
namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string(what) + " failed: " + std::string(text, length));
}

// MPI counts are int: a larger exchange would wrap around.
int countOf(int64_t count) {
  if (count < 0 || count > INT_MAX)
    throw std::runtime_error("an MPI exchange of " + std::to_string(count) +
                             " values exceeds MPI's int counts; run on more ranks");
  return static_cast<int>(count);
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void sum(double* values, int64_t count) const override {
    check(MPI_Allreduce(MPI_IN_PLACE, values, countOf(count), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  }
  void max(double* values, int64_t count) const override {
    check(MPI_Allreduce(MPI_IN_PLACE, values, countOf(count), MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  }
  void exchange(const double* send, const std::vector<int64_t>& sendCounts, double* receive,
                const std::vector<int64_t>& receiveCounts) const override {
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    int64_t sendOffset = 0, receiveOffset = 0;
    for (int r = 0; r < size_; ++r) {
      sc[r] = countOf(sendCounts.at(r));
      rc[r] = countOf(receiveCounts.at(r));
      sd[r] = countOf(sendOffset);
      rd[r] = countOf(receiveOffset);
      sendOffset += sendCounts[r];
      receiveOffset += receiveCounts[r];
    }
    check(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_DOUBLE, receive, rc.data(), rd.data(), MPI_DOUBLE, comm_),
          "MPI_Alltoallv");
  }
  using Communicator::max;
  using Communicator::sum;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpiAvailable() { return true; }

bool mpiInitialized() {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  return initialised && !finalised;
}

std::shared_ptr<const Communicator> mpiWorldCommunicator() {
  if (!mpiInitialized()) throw std::runtime_error("MPI is not initialised");
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD);
}

std::shared_ptr<const Communicator> mpiCommunicator(const void* commHandle) {
  if (!mpiInitialized()) throw std::runtime_error("MPI is not initialised");
  return std::make_shared<MpiCommunicator>(*static_cast<const MPI_Comm*>(commHandle));
}

int ranksOnThisMachine() {
  if (!mpiInitialized()) return 1;
  MPI_Comm local;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
  int size = 1;
  MPI_Comm_size(local, &size);
  MPI_Comm_free(&local);
  return size;
}

bool launchedByMpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(name)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  // Not under mpirun: one process, and no MPI start-up (a singleton
  // MPI_Init costs time and may warn about the network).
  if (mpiInitialized() || !launchedByMpirun()) return;
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  initialisedHere_ = true;
}

MpiSession::~MpiSession() {
  if (initialisedHere_ && mpiInitialized()) MPI_Finalize();
}

#else

bool mpiAvailable() { return false; }
bool mpiInitialized() { return false; }

std::shared_ptr<const Communicator> mpiWorldCommunicator() {
  throw std::runtime_error("this build has no MPI (configure with MPI installed, Debian's mpi-default-dev)");
}
std::shared_ptr<const Communicator> mpiCommunicator(const void*) { return mpiWorldCommunicator(); }

int ranksOnThisMachine() { return 1; }
bool launchedByMpirun() { return false; }
MpiSession::MpiSession(int*, char***) {}
MpiSession::~MpiSession() = default;

#endif

}  // namespace jko
