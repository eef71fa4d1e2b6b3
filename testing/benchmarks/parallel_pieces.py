"""JKO Gradient Flow under mpirun pvbatch: the wall time of a small run on N
ranks, and numbers that show the frames are the same on any N.

    mpirun -np N pvbatch testing/benchmarks/parallel_pieces.py PLUGIN [SOLVER] [STEPS]

SOLVER is "Reference solver" (default) or "Auto" (with the bundled
porous-medium operator); the density is data/samples/porous-bumps.vti
(64^2), one LibTorch thread per rank. Either solver's steps are split
over the ranks (each computes a slab of every frame). Prints the time to compute all frames, and for the last frame the
integrals of rho and rho^2 over the pieces of all ranks (Integrate
Variables).
"""
import os
import sys
import time

from paraview import servermanager, simple
from vtkmodules.vtkParallelCore import vtkMultiProcessController

plugin = sys.argv[1]
solver = sys.argv[2] if len(sys.argv) > 2 else "Reference solver"
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
simple.LoadPlugin(plugin, remote=False, ns=vars(simple))
ranks = vtkMultiProcessController.GetGlobalController().GetNumberOfProcesses()

density = simple.XMLImageDataReader(FileName=[os.path.join(root, "data", "samples", "porous-bumps.vti")])
flow = simple.JKOGradientFlow(Input=density, NumberOfSteps=steps, NumberOfThreads=1)
if solver != "Reference solver":
    flow.OperatorFile = os.path.join(root, "data", "operators", "porous-medium.jko")
    flow.Solver = solver
flow.UpdatePipelineInformation()
times = list(flow.TimestepValues)
start = time.perf_counter()
flow.UpdatePipeline(times[-1])
seconds = time.perf_counter() - start

square = simple.Calculator(Input=flow, ResultArrayName="rho2", Function="density*density")
integrals = simple.IntegrateVariables(Input=square)
integrals.UpdatePipeline(times[-1])
data = servermanager.Fetch(integrals)
mass = data.GetPointData().GetArray("density").GetValue(0)
rho2 = data.GetPointData().GetArray("rho2").GetValue(0)
print("%d rank(s), %s, %d steps on 64^2: %.2f s; last frame: int rho = %.17g, int rho^2 = %.17g" %
      (ranks, solver, steps, seconds, mass, rho2))
