"""Runs inside the ParaView GUI's Python shell for TestTrainTraceState.py
(played by TrainTraceState.xml), in two stages:

setup:  starts a trace, creates JKO Initial Density and JKO Gradient Flow with
        a tiny training's settings, applied the way the Properties panel
        applies them (inside the panel's PropertiesModified trace scope), shows
        the filter and makes it active so that the panel shows its Train button;
finish: writes the trace, saves the state and the learned frame at
        t = 3 tau, and what the proxy's Operator File says.

Everything goes to $JKO_TRACE_STATE_DIR; a line "stage done" in gui.log
says each stage finished.
"""
import os
import sys

import numpy as np
from paraview import simple, smtrace
from vtkmodules.util import numpy_support

folder = os.environ["JKO_TRACE_STATE_DIR"]
stage = sys.argv[1]
log = open(os.path.join(folder, "gui.log"), "a")


def apply_panel(proxy, **values):
    item = smtrace.PropertiesModified(proxy)
    for name, value in values.items():
        prop = proxy.SMProxy.GetProperty(name)
        for i, element in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            prop.SetElement(i, element)
    proxy.SMProxy.UpdateVTKObjects()
    item.finalize()


try:
    if stage == "setup":
        smtrace.start_trace()
        source = simple.JKOInitialDensity()
        apply_panel(source, GridSize=[16, 16, 16])
        simple.Show(source)
        flow = simple.JKOGradientFlow(Input=source)
        apply_panel(flow, NumberOfSteps=3, NumberOfThreads=2, TrainingRounds=2, TrainingEpochs=2,
                    TrainingBatchSize=4, TrainingHorizon=2, GeneratedDensities=3, ValidationDensities=1,
                    MaximumTrainingSeconds=120, TrainedOperatorFile=os.path.join(folder, "trained.jko"))
        simple.Show(flow)
        simple.SetActiveSource(flow)
        simple.Render()
    else:
        flow = simple.FindSource("JKOGradientFlow1")
        log.write("OperatorFile %s\n" % flow.OperatorFile)
        log.write("Solver %s\n" % flow.Solver)
        with open(os.path.join(folder, "trace.py"), "w") as f:
            f.write(smtrace.stop_trace())
        simple.SaveState(os.path.join(folder, "state.pvsm"))
        flow.UpdatePipeline(0.015)
        data = flow.GetClientSideObject().GetOutputDataObject(0)
        np.save(os.path.join(folder, "gui-frame3.npy"),
                numpy_support.vtk_to_numpy(data.GetPointData().GetArray("density")))
    log.write("%s done\n" % stage)
except Exception as error:  # the test reads the log: say what failed
    log.write("%s failed: %r\n" % (stage, error))
log.close()
