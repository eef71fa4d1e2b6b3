"""Client side of TestClientServer.py: connects to the pvserver on
127.0.0.1:<port>, loads the plugin on both sides, computes a flow on the
server, scrubs it from the client and fetches its frames and table."""
import sys

import jko_plugin_testing as T
from paraview import servermanager, simple

check = T.Check()
port = int(sys.argv[1])
connection = simple.Connect("127.0.0.1", port)
check(connection is not None and servermanager.ActiveConnection.IsRemote(), "connected to pvserver on %d" % port)
T.load_plugin(remote=True)

source = simple.JKOInitialDensity()
source.GridSize = [20, 20, 20]
source.UpdatePipeline()
flow = simple.JKOGradientFlow(Input=source)
flow.NumberOfSteps = 3
flow.NumberOfThreads = 2
flow.UpdatePipelineInformation()
times = list(flow.TimestepValues)
check(len(times) == 4, "the client sees the frames' time steps %s" % times)

masses = []
for t in times:
    flow.UpdatePipeline(t)
    data = servermanager.Fetch(flow)
    check(data.IsA("vtkImageData") and data.GetPointData().GetArray("density") is not None,
          "frame at t = %g fetched to the client" % t)
    check(abs(T.field(data, "Time") - t) < 1e-15, "fetched frame has time %g" % T.field(data, "Time"))
    masses.append(T.field(data, "Mass"))
check(max(masses) - min(masses) < 1e-12 * masses[0], "mass kept on the server: %s" % masses)
for t in reversed(times):
    flow.UpdatePipeline(t)
flow.UpdatePropertyInformation()
rollouts = flow.GetProperty("RolloutCount").GetData()
check(rollouts == 1, "scrubbing from the client reuses the server's cache (%d rollout)" % rollouts)
table = servermanager.Fetch(flow, idx=1)
check(table.IsA("vtkTable") and table.GetNumberOfRows() == 4, "the per-frame table reaches the client")

# A training on the server: the client's proxy then names the saved file as
# Operator File (read back through the information properties), and the
# learned frames come from it.
import os
import tempfile

with tempfile.TemporaryDirectory(prefix="jko-client-server-") as folder:
    operator = os.path.join(folder, "trained.jko")
    for name, value in dict(TrainingRounds=1, TrainingEpochs=1, TrainingBatchSize=2, TrainingHorizon=1,
                            GeneratedDensities=1, ValidationDensities=1, TrainedOperatorFile=operator).items():
        setattr(flow, name, value)
    flow.InvokeCommand("Train")
    flow.UpdatePipeline(times[0])
    check(flow.OperatorFile == operator and os.path.exists(operator),
          "after Train the client's Operator File names the server's saved file: %s" % flow.OperatorFile)
    flow.Solver = "Learned operator"
    flow.UpdatePipeline(times[1])
    data = servermanager.Fetch(flow)
    check(T.field(data, "OperatorFile") == operator and T.field(data, "Solver") == "Learned operator",
          "the learned frames come from it")
check.finish()
