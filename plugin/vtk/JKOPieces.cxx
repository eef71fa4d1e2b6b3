#include "JKOPieces.h"

#include <vtkAbstractArray.h>
#include <vtkAlgorithm.h>
#include <vtkDataObject.h>
#include <vtkFieldData.h>
#include <vtkImageData.h>
#include <vtkInformation.h>
#include <vtkMultiProcessController.h>
#include <vtkSmartPointer.h>
#include <vtkStreamingDemandDrivenPipeline.h>
#include <vtkTable.h>

#include <algorithm>

#ifdef JKO_PLUGIN_HAVE_VTK_MPI
#include <vtkMPI.h>
#include <vtkMPICommunicator.h>
#include <vtkMPIController.h>

#include "parallel/MpiCommunicator.h"
#endif

namespace jko::plugin {

namespace {

using SDDP = vtkStreamingDemandDrivenPipeline;

struct PieceRequest {
  int piece = 0, pieces = 1, ghostLevels = 0;
};

PieceRequest pieceRequest(vtkInformation* info) {
  PieceRequest request;
  if (info->Has(SDDP::UPDATE_PIECE_NUMBER())) request.piece = info->Get(SDDP::UPDATE_PIECE_NUMBER());
  if (info->Has(SDDP::UPDATE_NUMBER_OF_PIECES())) request.pieces = info->Get(SDDP::UPDATE_NUMBER_OF_PIECES());
  if (info->Has(SDDP::UPDATE_NUMBER_OF_GHOST_LEVELS()))
    request.ghostLevels = info->Get(SDDP::UPDATE_NUMBER_OF_GHOST_LEVELS());
  return request;
}

}  // namespace

ProcessPlace processPlace() {
  ProcessPlace place;
  // ParaView sets a global controller in every process (a dummy one without
  // MPI); plain VTK programs may have none.
  if (vtkMultiProcessController* controller = vtkMultiProcessController::GetGlobalController()) {
    place.rank = controller->GetLocalProcessId();
    place.ranks = controller->GetNumberOfProcesses();
  }
  return place;
}

bool reportsMessages() { return processPlace().rank == 0; }

std::shared_ptr<const Communicator> pipelineCommunicator() {
#ifdef JKO_PLUGIN_HAVE_VTK_MPI
  auto* controller = vtkMPIController::SafeDownCast(vtkMultiProcessController::GetGlobalController());
  if (!controller || controller->GetNumberOfProcesses() < 2 || !mpiAvailable() || !mpiInitialized()) return nullptr;
  auto* communicator = vtkMPICommunicator::SafeDownCast(controller->GetCommunicator());
  if (!communicator || !communicator->GetMPIComm() || !communicator->GetMPIComm()->GetHandle()) return nullptr;
  // The controller's own communicator (MPI_COMM_WORLD in pvbatch and
  // pvserver, a sub-communicator where a host runs ParaView on one).
  return mpiCommunicator(communicator->GetMPIComm()->GetHandle());
#else
  return nullptr;
#endif
}

void declareSubExtents(vtkInformation* imageInfo) { imageInfo->Set(vtkAlgorithm::CAN_PRODUCE_SUB_EXTENT(), 1); }

void requestWholeInput(vtkInformation* inputInfo) {
  // Every step moves mass across the whole box: no piece of a frame can be
  // computed from a piece of the density (unless the ranks compute each
  // step together: requestInputExtent).
  if (inputInfo->Has(SDDP::WHOLE_EXTENT())) {
    requestInputExtent(inputInfo, inputInfo->Get(SDDP::WHOLE_EXTENT()));
    return;
  }
  inputInfo->Set(SDDP::UPDATE_PIECE_NUMBER(), 0);
  inputInfo->Set(SDDP::UPDATE_NUMBER_OF_PIECES(), 1);
  inputInfo->Set(SDDP::UPDATE_NUMBER_OF_GHOST_LEVELS(), 0);
}

void requestInputExtent(vtkInformation* inputInfo, const int extent[6]) {
  inputInfo->Set(SDDP::UPDATE_EXTENT(), extent, 6);
  inputInfo->Set(SDDP::EXACT_EXTENT(), 1);
  inputInfo->Set(SDDP::UPDATE_PIECE_NUMBER(), 0);
  inputInfo->Set(SDDP::UPDATE_NUMBER_OF_PIECES(), 1);
  inputInfo->Set(SDDP::UPDATE_NUMBER_OF_GHOST_LEVELS(), 0);
}

void requestedExtent(vtkInformation* imageInfo, const int wholeExtent[6], int extent[6]) {
  std::copy(wholeExtent, wholeExtent + 6, extent);
  if (!imageInfo->Has(SDDP::UPDATE_EXTENT())) return;
  int asked[6];
  imageInfo->Get(SDDP::UPDATE_EXTENT(), asked);
  // Clamped to the data, as vtkImageData::Crop would.
  for (int a = 0; a < 3; ++a) {
    extent[2 * a] = std::max(asked[2 * a], wholeExtent[2 * a]);
    extent[2 * a + 1] = std::min(asked[2 * a + 1], wholeExtent[2 * a + 1]);
  }
}

void keepRowsInFirstPiece(vtkTable* table, vtkInformation* tableInfo) {
  if (pieceRequest(tableInfo).piece == 0) return;
  // The same columns with no rows, so that the appended tables of all pieces
  // are the one table of the serial run.
  auto empty = vtkSmartPointer<vtkTable>::New();
  for (vtkIdType c = 0; c < table->GetNumberOfColumns(); ++c) {
    vtkAbstractArray* column = table->GetColumn(c);
    vtkSmartPointer<vtkAbstractArray> none = vtkSmartPointer<vtkAbstractArray>::Take(column->NewInstance());
    none->SetName(column->GetName());
    none->SetNumberOfComponents(column->GetNumberOfComponents());
    empty->AddColumn(none);
  }
  empty->GetFieldData()->ShallowCopy(table->GetFieldData());
  table->ShallowCopy(empty);
}

void stampPiece(vtkDataObject* data, vtkInformation* portInfo) {
  const PieceRequest request = pieceRequest(portInfo);
  vtkInformation* dataInfo = data->GetInformation();
  dataInfo->Set(vtkDataObject::DATA_PIECE_NUMBER(), request.piece);
  dataInfo->Set(vtkDataObject::DATA_NUMBER_OF_PIECES(), request.pieces);
  dataInfo->Set(vtkDataObject::DATA_NUMBER_OF_GHOST_LEVELS(), request.ghostLevels);
}

}  // namespace jko::plugin
