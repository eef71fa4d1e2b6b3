/**
 * @class   pqJKOTrainButton
 * @brief   The Train button of JKO Gradient Flow's panel.
 *
 * Like ParaView's command button, but traced so that the trace replays:
 * ParaView 5.11's command button hands the tracer the proxy as a keyword
 * argument, which its CallMethod item does not accept (TypeError in
 * smtrace.py, and no line in the trace); this one passes it positionally and
 * records `flow.InvokeCommand('Train')`. It also updates the filter at once
 * (training with the progress bar), after which the proxy points Operator
 * File at the saved operator (vtkSMJKOGradientFlowProxy).
 */
#ifndef pqJKOTrainButton_h
#define pqJKOTrainButton_h

#include "pqPropertyWidget.h"

class vtkSMProperty;

class pqJKOTrainButton : public pqPropertyWidget {
  Q_OBJECT
  typedef pqPropertyWidget Superclass;

 public:
  pqJKOTrainButton(vtkSMProxy* proxy, vtkSMProperty* property, QWidget* parent = nullptr);
  ~pqJKOTrainButton() override;

 private Q_SLOTS:
  void train();

 private:
  Q_DISABLE_COPY(pqJKOTrainButton)
  vtkSMProperty* Property;
};

#endif
