#include "vtkSMJKOGradientFlowProxy.h"

#include <vtkObjectFactory.h>
#include <vtkSMPropertyHelper.h>
#include <vtkSMTrace.h>

#include <string>

vtkStandardNewMacro(vtkSMJKOGradientFlowProxy);

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

void vtkSMJKOGradientFlowProxy::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
  os << indent << "TrainingsSeen: " << this->TrainingsSeen << "\n";
}
