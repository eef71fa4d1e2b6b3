/**
 * @class   vtkSMJKOGradientFlowProxy
 * @brief   Proxy of JKO Gradient Flow: Operator File follows a training, and
 *          Solver becomes Auto when an operator file is first set.
 *
 * The filter trains on the server in an update after Train and then uses the
 * saved file; this proxy copies that file's path into its own OperatorFile
 * property after the update (recorded in a Python trace as a property
 * change), so that a saved state or a replayed trace loads the trained
 * operator instead of asking for one. It reads the filter's information
 * properties TrainingCount and OperatorFileInfo: each training counts once.
 *
 * Auto is the default solver whenever an operator is loaded: when Operator
 * File goes from empty to a file (set in the panel, from Python, also as a
 * keyword of JKOGradientFlow(...), or by a training) while Solver is still
 * the Reference solver it was created with, Solver becomes Auto. A solver
 * chosen before (any change of Solver) is kept, and so is a loaded state's.
 * The change is made on the properties, inside whatever trace scope set the
 * file, so a trace records it and replays the same.
 */
#ifndef vtkSMJKOGradientFlowProxy_h
#define vtkSMJKOGradientFlowProxy_h

#include <string>  // for std::string

#include "NeuralJKOFlowServerManagerModule.h"  // for export macro
#include "vtkSMSourceProxy.h"

class NEURALJKOFLOWSERVERMANAGER_EXPORT vtkSMJKOGradientFlowProxy : public vtkSMSourceProxy {
 public:
  static vtkSMJKOGradientFlowProxy* New();
  vtkTypeMacro(vtkSMJKOGradientFlowProxy, vtkSMSourceProxy);
  void PrintSelf(ostream& os, vtkIndent indent) override;

  void PostUpdateData(bool usingCache) override;
  int LoadXMLState(vtkPVXMLElement* element, vtkSMProxyLocator* locator) override;

 protected:
  vtkSMJKOGradientFlowProxy();
  ~vtkSMJKOGradientFlowProxy() override;

 private:
  vtkSMJKOGradientFlowProxy(const vtkSMJKOGradientFlowProxy&) = delete;
  void operator=(const vtkSMJKOGradientFlowProxy&) = delete;

  void SetPropertyModifiedFlag(const char* name, int flag) override;

  int TrainingsSeen = 0;  ///< the filter's TrainingCount when last looked at
  // Auto as the default solver: the values last seen, whether Solver was
  // ever changed, and guards against our own change and a state's load.
  std::string OperatorFileSeen;
  int SolverSeen = 0;  ///< the XML default, the Reference solver
  bool SolverChosen = false;
  bool ChangingSolver = false;
  bool LoadingState = false;
};

#endif
