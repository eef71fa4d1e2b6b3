/**
 * @class   vtkSMJKOGradientFlowProxy
 * @brief   Proxy of JKO Gradient Flow: Operator File follows a training.
 *
 * The filter trains on the server in an update after Train and then uses the
 * saved file; this proxy copies that file's path into its own OperatorFile
 * property after the update (recorded in a Python trace as a property
 * change), so that a saved state or a replayed trace loads the trained
 * operator instead of asking for one. It reads the filter's information
 * properties TrainingCount and OperatorFileInfo: each training counts once.
 */
#ifndef vtkSMJKOGradientFlowProxy_h
#define vtkSMJKOGradientFlowProxy_h

#include "NeuralJKOFlowServerManagerModule.h"  // for export macro
#include "vtkSMSourceProxy.h"

class NEURALJKOFLOWSERVERMANAGER_EXPORT vtkSMJKOGradientFlowProxy : public vtkSMSourceProxy {
 public:
  static vtkSMJKOGradientFlowProxy* New();
  vtkTypeMacro(vtkSMJKOGradientFlowProxy, vtkSMSourceProxy);
  void PrintSelf(ostream& os, vtkIndent indent) override;

  void PostUpdateData(bool usingCache) override;

 protected:
  vtkSMJKOGradientFlowProxy();
  ~vtkSMJKOGradientFlowProxy() override;

 private:
  vtkSMJKOGradientFlowProxy(const vtkSMJKOGradientFlowProxy&) = delete;
  void operator=(const vtkSMJKOGradientFlowProxy&) = delete;

  int TrainingsSeen = 0;  ///< the filter's TrainingCount when last looked at
};

#endif
