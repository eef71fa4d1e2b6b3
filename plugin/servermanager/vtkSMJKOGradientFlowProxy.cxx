#include "vtkSMJKOGradientFlowProxy.h"

#include <vtkObjectFactory.h>
#include <vtkSMPropertyHelper.h>
#include <vtkSMTrace.h>

#include <cstring>
#include <string>

vtkStandardNewMacro(vtkSMJKOGradientFlowProxy);

namespace {
// vtkJKOGradientFlow::Solvers (the filter's header is not visible here).
constexpr int kReferenceSolver = 0;
constexpr int kAutoSolver = 3;

// The property's first value, or `fallback` while the proxy is still being
// built (its properties get their XML defaults with the observers attached).
int solverOf(vtkSMProxy* proxy, int fallback) {
  vtkSMProperty* property = proxy->GetProperty("Solver");
  if (!property || vtkSMPropertyHelper(property).GetNumberOfElements() == 0) return fallback;
  return vtkSMPropertyHelper(property).GetAsInt();
}

std::string operatorFileOf(vtkSMProxy* proxy) {
  vtkSMProperty* property = proxy->GetProperty("OperatorFile");
  if (!property || vtkSMPropertyHelper(property).GetNumberOfElements() == 0) return "";
  const char* value = vtkSMPropertyHelper(property).GetAsString();
  return value ? value : "";
}
}  // namespace

vtkSMJKOGradientFlowProxy::vtkSMJKOGradientFlowProxy() = default;
vtkSMJKOGradientFlowProxy::~vtkSMJKOGradientFlowProxy() = default;

void vtkSMJKOGradientFlowProxy::PostUpdateData(bool usingCache) {
  this->Superclass::PostUpdateData(usingCache);
  vtkSMProperty* count = this->GetProperty("TrainingCount");
  vtkSMProperty* trained = this->GetProperty("OperatorFileInfo");
  if (!count || !trained || !this->GetProperty("OperatorFile")) return;
  this->UpdatePropertyInformation(count);
  const int trainings = vtkSMPropertyHelper(count).GetAsInt();
  if (trainings == this->TrainingsSeen) return;
  this->TrainingsSeen = trainings;
  this->UpdatePropertyInformation(trained);
  const char* path = vtkSMPropertyHelper(trained).GetAsString();
  const char* current = vtkSMPropertyHelper(this, "OperatorFile").GetAsString();
  if (!path || !path[0] || (current && std::string(current) == path)) return;
  // Traced like an edit in the panel, so that the trace's replay loads the file.
  SM_SCOPED_TRACE(PropertiesModified)
      .arg("proxy", this)
      .arg("comment", " Operator File names the operator Train saved");
  vtkSMPropertyHelper(this, "OperatorFile").Set(path);
  this->UpdateVTKObjects();
}

void vtkSMJKOGradientFlowProxy::SetPropertyModifiedFlag(const char* name, int flag) {
  this->Superclass::SetPropertyModifiedFlag(name, flag);
  // Called for every modification of a property (ParaView's observer on it).
  if (!flag || !name || this->ChangingSolver || this->LoadingState) return;
  if (std::strcmp(name, "Solver") == 0) {
    // A value that changed is a choice; a property marked modified again
    // without a new value (MarkAllPropertiesAsModified) is not.
    const int solver = solverOf(this, this->SolverSeen);
    this->SolverChosen = this->SolverChosen || solver != this->SolverSeen;
    this->SolverSeen = solver;
    return;
  }
  if (std::strcmp(name, "OperatorFile") != 0) return;
  const std::string file = operatorFileOf(this);
  const bool first = this->OperatorFileSeen.empty() && !file.empty();
  this->OperatorFileSeen = file;
  if (!first || this->SolverChosen || solverOf(this, -1) != kReferenceSolver) return;
  this->ChangingSolver = true;
  vtkSMPropertyHelper(this, "Solver").Set(kAutoSolver);
  this->ChangingSolver = false;
  this->SolverSeen = kAutoSolver;
}

int vtkSMJKOGradientFlowProxy::LoadXMLState(vtkPVXMLElement* element, vtkSMProxyLocator* locator) {
  // A state's solver is what it was saved with, operator file or not.
  this->LoadingState = true;
  const int result = this->Superclass::LoadXMLState(element, locator);
  this->LoadingState = false;
  this->OperatorFileSeen = operatorFileOf(this);
  this->SolverSeen = solverOf(this, this->SolverSeen);
  return result;
}

void vtkSMJKOGradientFlowProxy::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
  os << indent << "TrainingsSeen: " << this->TrainingsSeen << "\n";
  os << indent << "OperatorFileSeen: " << this->OperatorFileSeen << "\n";
  os << indent << "SolverChosen: " << this->SolverChosen << "\n";
}
