/**
 * @class   vtkSMJKOFlowInitializationHelper
 * @brief   Gives a JKO Gradient Flow made from Python a real Density array.
 *
 * paraview.simple creates a filter on a source that has not run yet (e.g.
 * `JKOGradientFlow(Input=XMLImageDataReader(...))`): its arrays are then
 * unknown and the Density property would be left without an array. This
 * helper, named in the proxy's XML hints, updates such an input before the
 * property defaults are chosen and gives Density (and Potential Array) the
 * input's active scalars unless they name an array of the input, as the
 * GUI does (where the input has always run before).
 */
#ifndef vtkSMJKOFlowInitializationHelper_h
#define vtkSMJKOFlowInitializationHelper_h

#include "NeuralJKOFlowServerManagerModule.h"  // for export macro
#include "vtkSMProxyInitializationHelper.h"

class NEURALJKOFLOWSERVERMANAGER_EXPORT vtkSMJKOFlowInitializationHelper : public vtkSMProxyInitializationHelper {
 public:
  static vtkSMJKOFlowInitializationHelper* New();
  vtkTypeMacro(vtkSMJKOFlowInitializationHelper, vtkSMProxyInitializationHelper);
  void PrintSelf(ostream& os, vtkIndent indent) override;

  void PostInitializeProxy(vtkSMProxy* proxy, vtkPVXMLElement* xml, vtkMTimeType initializationTimeStamp) override;

 protected:
  vtkSMJKOFlowInitializationHelper();
  ~vtkSMJKOFlowInitializationHelper() override;

 private:
  vtkSMJKOFlowInitializationHelper(const vtkSMJKOFlowInitializationHelper&) = delete;
  void operator=(const vtkSMJKOFlowInitializationHelper&) = delete;
};

#endif
