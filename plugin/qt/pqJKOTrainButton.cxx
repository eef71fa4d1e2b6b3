#include "pqJKOTrainButton.h"

#include <QPushButton>
#include <QVBoxLayout>

#include "pqActiveObjects.h"
#include "pqApplicationCore.h"
#include "pqServer.h"
#include "pqTimeKeeper.h"
#include "vtkSMDocumentation.h"
#include "vtkSMProperty.h"
#include "vtkSMSourceProxy.h"
#include "vtkSMTrace.h"

pqJKOTrainButton::pqJKOTrainButton(vtkSMProxy* proxy, vtkSMProperty* property, QWidget* parent)
    : Superclass(proxy, parent), Property(property) {
  auto* layout = new QVBoxLayout(this);
  layout->setSpacing(0);
  layout->setMargin(0);
  auto* button = new QPushButton(property->GetXMLLabel(), this);
  button->setObjectName("TrainButton");
  if (property->GetDocumentation() && property->GetDocumentation()->GetDescription())
    button->setToolTip(QString(property->GetDocumentation()->GetDescription()).simplified());
  this->connect(button, SIGNAL(clicked()), SLOT(train()));
  layout->addWidget(button);
  this->setShowLabel(false);
}

pqJKOTrainButton::~pqJKOTrainButton() = default;

void pqJKOTrainButton::train() {
  vtkSMProxy* proxy = this->proxy();
  const char* name = proxy->GetPropertyName(this->Property);
  {
    SM_SCOPED_TRACE(CallMethod)
        .arg(proxy)
        .arg("InvokeCommand")
        .arg(name)
        .arg("comment", "train an operator (Train); Operator File then names the saved file");
    proxy->InvokeCommand(name);
  }
  // Train now, at the time shown, whether or not a view shows the filter.
  if (auto* source = vtkSMSourceProxy::SafeDownCast(proxy)) {
    pqServer* server = pqActiveObjects::instance().activeServer();
    pqTimeKeeper* time = server ? server->getTimeKeeper() : nullptr;
    if (time)
      source->UpdatePipeline(time->getTime());
    else
      source->UpdatePipeline();
  }
  pqApplicationCore::instance()->render();
}
