#include "vtkSMJKOFlowInitializationHelper.h"

#include <vtkObjectFactory.h>
#include <vtkPVDataInformation.h>
#include <vtkSMInputProperty.h>
#include <vtkSMProxy.h>
#include <vtkSMSourceProxy.h>
#include <vtkSMStringVectorProperty.h>

#include <cstring>

vtkStandardNewMacro(vtkSMJKOFlowInitializationHelper);

vtkSMJKOFlowInitializationHelper::vtkSMJKOFlowInitializationHelper() = default;
vtkSMJKOFlowInitializationHelper::~vtkSMJKOFlowInitializationHelper() = default;

void vtkSMJKOFlowInitializationHelper::PostInitializeProxy(vtkSMProxy* proxy, vtkPVXMLElement*, vtkMTimeType) {
  auto* input = vtkSMInputProperty::SafeDownCast(proxy ? proxy->GetProperty("Input") : nullptr);
  if (!input) return;
  bool updated = false;
  for (unsigned int i = 0; i < input->GetNumberOfProxies(); ++i) {
    auto* source = vtkSMSourceProxy::SafeDownCast(input->GetProxy(i));
    if (!source) continue;
    // An input that has run (every input in the GUI) is left alone.
    vtkPVDataInformation* information = source->GetDataInformation(input->GetOutputPortForConnection(i));
    if (information && (information->GetNumberOfPoints() > 0 || information->GetNumberOfCells() > 0)) continue;
    // Its UpdateDataEvent makes the array domains read the input's arrays again.
    source->UpdatePipeline();
    updated = true;
  }
  if (!updated) return;
  // The array properties take their domains' defaults (the active scalars)
  // unless the script named an array.
  // (Their modification times cannot tell: the domains' update touches them.)
  for (const char* name : {"Density", "PotentialArray"}) {
    auto* property = vtkSMStringVectorProperty::SafeDownCast(proxy->GetProperty(name));
    if (!property || property->GetNumberOfElements() < 5) continue;
    // ParaView leaves the input array's index ("0", "1") as the name when it
    // knows no array.
    const char* chosen = property->GetElement(4);
    const char* index = property->GetElement(0);
    if (!chosen || !chosen[0] || (index && std::strcmp(chosen, index) == 0)) property->ResetToDomainDefaults();
  }
  proxy->UpdateVTKObjects();
}

void vtkSMJKOFlowInitializationHelper::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
}
