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

bool sameExtent(const int* a, const int* b) {
  for (int i = 0; i < 6; ++i)
    if (a[i] != b[i]) return false;
  return true;
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

void declareSubExtents(vtkInformation* imageInfo) { imageInfo->Set(vtkAlgorithm::CAN_PRODUCE_SUB_EXTENT(), 1); }

void requestWholeInput(vtkInformation* inputInfo) {
  // Every step moves mass across the whole box: no piece of a frame can be
  // computed from a piece of the density.
  if (inputInfo->Has(SDDP::WHOLE_EXTENT())) {
    inputInfo->Set(SDDP::UPDATE_EXTENT(), inputInfo->Get(SDDP::WHOLE_EXTENT()), 6);
    inputInfo->Set(SDDP::EXACT_EXTENT(), 1);
  }
  inputInfo->Set(SDDP::UPDATE_PIECE_NUMBER(), 0);
  inputInfo->Set(SDDP::UPDATE_NUMBER_OF_PIECES(), 1);
  inputInfo->Set(SDDP::UPDATE_NUMBER_OF_GHOST_LEVELS(), 0);
}

void cropToRequest(vtkImageData* image, vtkInformation* imageInfo) {
  if (!imageInfo->Has(SDDP::UPDATE_EXTENT())) return;
  int extent[6];
  imageInfo->Get(SDDP::UPDATE_EXTENT(), extent);
  if (sameExtent(extent, image->GetExtent())) return;
  // vtkImageData::Crop clamps the extent to the data's and keeps field data;
  // an empty extent (more pieces than the extent translator can cut) leaves
  // no points.
  image->Crop(extent);
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
