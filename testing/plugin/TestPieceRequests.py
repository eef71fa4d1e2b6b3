"""Piece requests in one process (what ParaView asks of each rank under MPI,
asked here of the filter's own executive): output 0 is the extent
translator's piece of the whole frame, with its values, grown by the ghost
levels asked for (vtkGhostType added); output 1 has its rows in piece 0
only, with the same columns elsewhere; the two ports asked in any order get
their own pieces; piece 0 of 1 is the whole frame, as before."""
import os

import jko_plugin_testing as T
import numpy as np
from paraview import simple
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkInformationVector
from vtkmodules.vtkCommonExecutionModel import vtkExtentTranslator
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP

check = T.Check()
T.load_plugin()
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
source = simple.XMLImageDataReader(FileName=[os.path.join(root, "data", "samples", "porous-bumps.vti")])
flow = simple.JKOGradientFlow(Input=source, NumberOfSteps=2, NumberOfThreads=1)
flow.UpdatePipelineInformation()
t = flow.TimestepValues[2]
whole = T.output(flow, t)
whole_table = T.output(flow, t, port=1)
whole_extent = whole.GetExtent()
algorithm = flow.GetClientSideObject()


def update(port, piece, pieces, ghosts=0):
    """Asks output `port` for a piece at time t, as a consumer on a rank would."""
    requests = vtkInformationVector()
    requests.SetNumberOfInformationObjects(2)
    info = requests.GetInformationObject(port)
    info.Set(SDDP.UPDATE_PIECE_NUMBER(), piece)
    info.Set(SDDP.UPDATE_NUMBER_OF_PIECES(), pieces)
    info.Set(SDDP.UPDATE_NUMBER_OF_GHOST_LEVELS(), ghosts)
    info.Set(SDDP.UPDATE_TIME_STEP(), t)
    algorithm.Update(port, requests)
    return algorithm.GetOutputDataObject(0), algorithm.GetOutputDataObject(1)


def translated(piece, pieces, ghosts=0):
    extent = [0] * 6
    vtkExtentTranslator().PieceToExtentThreadSafe(piece, pieces, ghosts, list(whole_extent), extent,
                                                  vtkExtentTranslator.BLOCK_MODE, 0)
    return tuple(extent)


def values(image, name="density"):
    e = image.GetExtent()
    shape = (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetArray(name)).reshape(shape)


def window(e):
    return (slice(e[4], e[5] + 1), slice(e[2] - whole_extent[2], e[3] + 1 - whole_extent[2]),
            slice(e[0] - whole_extent[0], e[1] + 1 - whole_extent[0]))


full = values(whole)
for pieces in (2, 3, 4):
    covered = np.zeros((whole_extent[3] - whole_extent[2], whole_extent[1] - whole_extent[0]), dtype=int)
    for piece in range(pieces):
        image, table = update(0, piece, pieces)
        e = image.GetExtent()
        check(e == translated(piece, pieces), "piece %d of %d: extent %s" % (piece, pieces, e))
        check(np.array_equal(values(image), full[window(e)]), "piece %d of %d: the whole frame's values" %
              (piece, pieces))
        check(T.field(image, "Time") == t and T.field(image, "Mass") == T.field(whole, "Mass"),
              "piece %d of %d: the frame's field data" % (piece, pieces))
        covered[e[2]:e[3], e[0]:e[1]] += 1
        image, table = update(1, piece, pieces)
        rows = table.GetNumberOfRows()
        check(rows == (whole_table.GetNumberOfRows() if piece == 0 else 0) and
              table.GetNumberOfColumns() == whole_table.GetNumberOfColumns(),
              "piece %d of %d: table with %d rows and all %d columns" % (piece, pieces, rows,
                                                                         table.GetNumberOfColumns()))
    check(covered.min() == 1 and covered.max() == 1, "%d pieces cover every cell once" % pieces)

# Ghost levels: the piece grown by one layer, ghost points marked.
image, _ = update(0, 1, 3, ghosts=1)
ghosts = image.GetPointData().GetArray("vtkGhostType")
check(image.GetExtent() == translated(1, 3, 1) and ghosts is not None and 0 < ghosts.GetRange()[1],
      "ghost level 1: extent %s, vtkGhostType marks the added layer" % (image.GetExtent(),))
check(np.array_equal(values(image), full[window(image.GetExtent())]), "ghost level 1: the whole frame's values")

# The table's port asked first, then the image's (one execution writes both).
update(1, 2, 3)
image, table = update(0, 2, 3)
check(image.GetExtent() == translated(2, 3) and table.GetNumberOfRows() == 0,
      "the table asked first, then the image: piece 2 of 3 on both (%s, %d rows)" %
      (image.GetExtent(), table.GetNumberOfRows()))
image, table = update(1, 0, 1)
check(table.GetNumberOfRows() == whole_table.GetNumberOfRows(), "the table asked for piece 0 of 1 again: all rows")
image, table = update(0, 0, 1)
check(image.GetExtent() == whole_extent and np.array_equal(values(image), full) and
      image.GetPointData().GetArray("vtkGhostType") is None, "piece 0 of 1 again: the whole frame, no ghosts")
flow.UpdatePropertyInformation()
check(flow.GetProperty("RolloutCount").GetData() == 1, "every piece comes from the one rollout")
check.finish()
