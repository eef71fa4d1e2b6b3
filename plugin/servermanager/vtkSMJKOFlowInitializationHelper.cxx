#include "vtkSMJKOFlowInitializationHelper.h"

#include <vtkObjectFactory.h>
#include <vtkPVDataInformation.h>
#include <vtkSMArrayListDomain.h>
#include <vtkSMInputProperty.h>
#include <vtkSMProxy.h>
#include <vtkSMSourceProxy.h>
#include <vtkSMStringVectorProperty.h>

#include <string>

vtkStandardNewMacro(vtkSMJKOFlowInitializationHelper);

vtkSMJKOFlowInitializationHelper::vtkSMJKOFlowInitializationHelper() = default;
vtkSMJKOFlowInitializationHelper::~vtkSMJKOFlowInitializationHelper() = default;

void vtkSMJKOFlowInitializationHelper::PostInitializeProxy(vtkSMProxy* proxy, vtkPVXMLElement*, vtkMTimeType) {
  auto* input = vtkSMInputProperty::SafeDownCast(proxy ? proxy->GetProperty("Input") : nullptr);
  if (!input) return;
  for (unsigned int i = 0; i < input->GetNumberOfProxies(); ++i) {
    auto* source = vtkSMSourceProxy::SafeDownCast(input->GetProxy(i));
    if (!source) continue;
    // An input that has run (every input in the GUI) is left alone.
    vtkPVDataInformation* information = source->GetDataInformation(input->GetOutputPortForConnection(i));
    if (information && (information->GetNumberOfPoints() > 0 || information->GetNumberOfCells() > 0)) continue;
    // Its UpdateDataEvent makes the array domains read the input's arrays again.
    source->UpdatePipeline();
  }
  // The array properties take their domains' default (the input's active
  // scalars) unless they name an array of the input. Their modification
  // times cannot tell what the script set: the domains' updates touch them.
  // And what they hold is not the script's either: the input array's index
  // ("0", "1") that ParaView leaves when it knows no array, or (seen with a
  // second filter on the same reader) the name of an array of the filter
  // that was active. A name given at creation that the input does not have
  // is replaced too; set after creation, it gets the filter's error.
  for (const char* name : {"Density", "PotentialArray"}) {
    auto* property = vtkSMStringVectorProperty::SafeDownCast(proxy->GetProperty(name));
    auto* domain = property ? property->FindDomain<vtkSMArrayListDomain>() : nullptr;
    if (!domain || property->GetNumberOfElements() < 5 || domain->GetNumberOfStrings() == 0) continue;
    const std::string chosen = property->GetElement(4) ? property->GetElement(4) : "";
    bool known = false;
    for (unsigned int k = 0; k < domain->GetNumberOfStrings(); ++k) known = known || chosen == domain->GetString(k);
    if (!known) property->ResetToDomainDefaults();
  }
  proxy->UpdateVTKObjects();
}

void vtkSMJKOFlowInitializationHelper::PrintSelf(ostream& os, vtkIndent indent) {
  this->Superclass::PrintSelf(os, indent);
}
