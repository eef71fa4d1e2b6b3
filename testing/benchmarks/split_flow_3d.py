"""JKO Gradient Flow's reference steps split over MPI ranks: a 3D porous-medium
flow from a Barenblatt profile (the JKO Initial Density source), timed per
step in pvbatch, with each rank's peak memory.

    mpirun -np N pvbatch --symmetric testing/benchmarks/split_flow_3d.py PLUGIN GRID STEPS THREADS OUT.json [FRAME.npy]
    pvbatch testing/benchmarks/split_flow_3d.py PLUGIN GRID 0 1 - VOLUME.vti   # writes the profile to VOLUME.vti
    mpirun -np N pvbatch --symmetric testing/benchmarks/split_flow_3d.py PLUGIN VOLUME.vti STEPS THREADS OUT.json
    ... OUT.json FRAME.npy|- Property=Value ...   # other panel settings, e.g.
        EnergyPreset=Aggregation, or Solver="Learned operator" OperatorFile=data/operators/porous-medium-3d.jko

GRID N starts from the source's profile on N^3 nodes, which every rank
computes whole; a .vti file (written by the second form) is read by the
XML reader, which reads each rank's slab only.

Every rank runs the script (--symmetric) and measures itself; rank 0 writes
OUT.json: the grid, ranks, threads per rank, each step's wall time (the
update that computes it, its piece put together included) and L-BFGS
iterations, the frames' mass and energy, and every rank's peak resident
memory. With FRAME.npy rank 0 also saves the last frame's density whole
(the ranks' pieces fetched, indexed z, y, x), to compare runs on different
numbers of ranks.
"""
import json
import os
import resource
import sys
import time

import numpy as np
from paraview import servermanager, simple
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkDoubleArray
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline
from vtkmodules.vtkParallelCore import vtkMultiProcessController

plugin, volume, steps, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
frame_path = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "-" else None
settings = dict(Solver="Reference solver")
for pair in sys.argv[7:]:
    name, value = pair.split("=", 1)
    try:
        settings[name] = float(value) if "." in value or "e" in value.lower() else int(value)
    except ValueError:
        settings[name] = value
simple.LoadPlugin(plugin, remote=False, ns=vars(simple))
controller = vtkMultiProcessController.GetGlobalController()
rank, ranks = controller.GetLocalProcessId(), controller.GetNumberOfProcesses()

# The source's Barenblatt profile (m = 2) on the unit cube, as `jko rollout
# --case barenblatt-flow --dim 3` starts from.
if volume.endswith(".vti"):
    density = simple.XMLImageDataReader(FileName=[volume])
    density.UpdatePipelineInformation()  # the whole extent, without reading the data
    extent = density.GetClientSideObject().GetOutputInformation(0).Get(vtkStreamingDemandDrivenPipeline.WHOLE_EXTENT())
    grid = extent[1] - extent[0] + 1
else:
    grid = int(volume)
    extent = [0, grid - 1] * 3
    density = simple.JKOInitialDensity(Dimension=3, GridSize=[grid, grid, grid], Kind="Barenblatt profile")
if steps == 0:  # write the profile for the runs that read it
    simple.SaveData(sys.argv[6], proxy=density)
    sys.exit(0)
flow = simple.JKOGradientFlow(Input=density, NumberOfSteps=steps, NumberOfThreads=threads, **settings)
flow.UpdatePipelineInformation()
times = list(flow.TimestepValues)
flow.UpdatePipeline(times[0])
seconds = []
for k in range(1, steps + 1):
    start = time.perf_counter()
    flow.UpdatePipeline(times[k])
    seconds.append(time.perf_counter() - start)

table = flow.GetClientSideObject().GetOutputDataObject(1)
column = lambda name: [table.GetValueByName(k, name).ToDouble() for k in range(table.GetNumberOfRows())]
split_ranks = int(flow.GetClientSideObject().GetOutputDataObject(0).GetFieldData().GetArray("SplitRanks").GetValue(0))
# Peak resident memory of every rank, in rank order (each fills its own entry of a sum).
peaks = [0.0] * ranks
peaks[rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
summed = [0.0] * ranks
send, receive = vtkDoubleArray(), vtkDoubleArray()
for values, array in ((peaks, send), (summed, receive)):
    array.SetNumberOfTuples(ranks)
    for r, v in enumerate(values):
        array.SetValue(r, v)
controller.AllReduce(send, receive, 2)  # vtkCommunicator::SUM_OP
peaks = [receive.GetValue(r) for r in range(ranks)]

if frame_path:
    pieces = [servermanager.Fetch(flow, r) for r in range(ranks)]
if rank == 0:
    report = {"grid": [grid] * 3, "input": volume, "settings": settings, "ranks": ranks, "split_ranks": split_ranks, "threads_per_rank": threads,
              "steps": steps, "step_seconds": seconds, "iterations": column("Iterations")[1:],
              "mass": column("Mass"), "energy": column("Energy"), "peak_rss_mb_per_rank": peaks}
    with open(out, "w") as f:
        json.dump(report, f)
    print(json.dumps(report))
    if frame_path:
        whole = np.zeros([extent[2 * a + 1] - extent[2 * a] + 1 for a in (2, 1, 0)])
        for piece in pieces:
            e = piece.GetExtent()
            values = numpy_support.vtk_to_numpy(piece.GetPointData().GetArray("density"))
            whole[e[4]:e[5] + 1, e[2]:e[3] + 1, e[0]:e[1] + 1] = values.reshape(
                e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
        np.save(frame_path, whole)
