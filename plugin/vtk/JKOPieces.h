// The flow filter in a parallel ParaView (mpirun pvbatch / pvserver): every
// rank reads the whole input. Every solver's steps are split over the
// ranks (each rank computes and keeps a slab of every frame:
// JKOSlabPieces.h); on CUDA every rank computes the same whole frames. Port 0 gives each rank its own sub-extent (the
// piece the executive translated into UPDATE_EXTENT, with the ghost levels asked for); port 1, the per-frame table,
// holds its rows in piece 0 only, because ParaView appends the tables of all ranks (spreadsheet, servermanager.Fetch).
// Messages are said by the first rank only, since the others would repeat them word for word.
//
// Not wrapped; free of torch, so that any translation unit may include it.
#pragma once

#include <memory>

class vtkAlgorithm;
class vtkDataObject;
class vtkImageData;
class vtkInformation;
class vtkTable;

namespace jko {
class Communicator;
}

namespace jko::plugin {

/// The rank of this process and the number of ranks running the pipeline
/// together (VTK's global controller; 0 of 1 without MPI).
struct ProcessPlace {
  int rank = 0;
  int ranks = 1;
};
ProcessPlace processPlace();

/// Whether this process reports the filter's warnings and text messages.
bool reportsMessages();

/// Core's communicator over the MPI communicator of VTK's global controller,
/// when the pipeline runs on several MPI ranks and core was built with MPI;
/// null otherwise (one process, or no MPI in ParaView or in core).
std::shared_ptr<const Communicator> pipelineCommunicator();

/// Declares on the image port's information that the filter can produce any
/// sub-extent: the executive then translates piece requests into
/// UPDATE_EXTENT (and adds the ghost array for ghost levels) around
/// RequestData.
void declareSubExtents(vtkInformation* imageInfo);

/// The input request of the flow: the whole extent, in one piece, without
/// ghost levels, whatever piece of the output was asked for.
void requestWholeInput(vtkInformation* inputInfo);
/// The same for `extent` only (a split rollout's slab), exactly.
void requestInputExtent(vtkInformation* inputInfo, const int extent[6]);

/// The extent asked of the image port (UPDATE_EXTENT, the ghost levels
/// included) within `wholeExtent`, or the whole extent when none was asked.
/// May be empty (more pieces than the extent translator can cut).
void requestedExtent(vtkInformation* imageInfo, const int wholeExtent[6], int extent[6]);

/// Empties the rows of `table` (its columns stay, with zero rows) unless the
/// request on its port is for piece 0.
void keepRowsInFirstPiece(vtkTable* table, vtkInformation* tableInfo);

/// Records on `data` the piece its own port asked for. Both ports are
/// written by one execution; without this the executive stamps the data of
/// the port that did not make the request with the other port's piece, and a
/// later request for the right piece would not execute again.
void stampPiece(vtkDataObject* data, vtkInformation* portInfo);

}  // namespace jko::plugin
