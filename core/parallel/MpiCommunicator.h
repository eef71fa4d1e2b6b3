// Communicator over MPI (built when CMake finds MPI; JKO_HAVE_MPI is then
// defined for the users of jko_core). The header does not include mpi.h: the
// communicator handle is passed by address.
#pragma once

#include <memory>

#include "parallel/Communicator.h"

namespace jko {

/// Whether this build has MPI, and whether MPI is initialised in this process.
bool mpiAvailable();
bool mpiInitialized();

/// The communicator of all processes (MPI_COMM_WORLD), or of the MPI_Comm
/// at `commHandle` (a pointer to an MPI_Comm, e.g. the one a host
/// application runs on). MPI must be initialised (MpiSession, or the host).
/// Throws std::runtime_error in a build without MPI.
std::shared_ptr<const Communicator> mpiWorldCommunicator();
std::shared_ptr<const Communicator> mpiCommunicator(const void* commHandle);

/// The number of ranks on this machine (1 without MPI): the cores are
/// theirs to share.
int ranksOnThisMachine();

/// Whether this process was started by mpirun/mpiexec (its environment).
bool launchedByMpirun();

/// Initialises MPI for a program's lifetime when it was started by mpirun
/// and MPI is not initialised yet (by a host application), and finalises
/// what it initialised. Otherwise, and without MPI in the build, it does
/// nothing.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool initialisedHere_ = false;
};

}  // namespace jko
