// The flow filter in a parallel ParaView (mpirun pvbatch / pvserver): every
// rank reads the whole input and computes the same frames, and the pipeline's
// piece requests split only the outputs. Port 0 gives each rank its own
// sub-extent (the piece the executive translated into UPDATE_EXTENT, with
// the ghost levels asked for); port 1, the per-frame table, holds its rows in
// piece 0 only, because ParaView appends the tables of all ranks (spreadsheet,
// servermanager.Fetch). Messages are said by the first rank only, since the
// others would repeat them word for word.
//
// Not wrapped; free of torch, so that any translation unit may include it.
#pragma once

class vtkAlgorithm;
class vtkDataObject;
class vtkImageData;
class vtkInformation;
class vtkTable;

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

/// Declares on the image port's information that the filter can produce any
/// sub-extent: the executive then translates piece requests into
/// UPDATE_EXTENT (and adds the ghost array for ghost levels) around
/// RequestData.
void declareSubExtents(vtkInformation* imageInfo);

/// The input request of the flow: the whole extent, in one piece, without
/// ghost levels, whatever piece of the output was asked for.
void requestWholeInput(vtkInformation* inputInfo);

/// Crops `image` (a frame on the whole extent) to the UPDATE_EXTENT of
/// `imageInfo`, point and cell arrays alike; field data is kept. A frame that
/// already has that extent (one rank) is left as it is.
void cropToRequest(vtkImageData* image, vtkInformation* imageInfo);

/// Empties the rows of `table` (its columns stay, with zero rows) unless the
/// request on its port is for piece 0.
void keepRowsInFirstPiece(vtkTable* table, vtkInformation* tableInfo);

/// Records on `data` the piece its own port asked for. Both ports are
/// written by one execution; without this the executive stamps the data of
/// the port that did not make the request with the other port's piece, and a
/// later request for the right piece would not execute again.
void stampPiece(vtkDataObject* data, vtkInformation* portInfo);

}  // namespace jko::plugin
