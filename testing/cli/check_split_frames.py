"""The frames of a rollout split over ranks, read as ParaView reads them.

    python check_split_frames.py SERIAL_DIR SPLIT_DIR RANKS

SERIAL_DIR holds one process's frames (prefix frame: frame.pvd, one .vti a
frame); SPLIT_DIR those of `mpirun -np RANKS jko rollout` (a .pvti a frame,
one .vti piece per rank). Checks that the .pvd lists the same times, that
each .pvti has one piece per rank, the pieces covering the planes along x
(sharing their boundary planes) with no file missing, and that VTK's
readers give the serial frames within the reference solver's tolerance
(relative L1 1e-6; the velocity weighted by the density, 1e-5).
Exit code 0 when all hold; the first failure is printed.
"""
import os
import sys
import xml.etree.ElementTree as ET

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkIOXML import vtkXMLImageDataReader, vtkXMLPImageDataReader

serial_dir, split_dir, ranks = sys.argv[1], sys.argv[2], int(sys.argv[3])


def fail(message):
    print("FAIL " + message)
    sys.exit(1)


def collection(folder):
    root = ET.parse(os.path.join(folder, "frame.pvd")).getroot()
    return [(float(d.get("timestep")), d.get("file")) for d in root.iter("DataSet")]


def read(folder, file):
    reader = vtkXMLPImageDataReader() if file.endswith(".pvti") else vtkXMLImageDataReader()
    reader.SetFileName(os.path.join(folder, file))
    reader.Update()
    image = reader.GetOutput()
    data = image.GetPointData()
    if image.GetNumberOfPoints() == 0 or data.GetArray("density") is None:
        fail("%s: no density read" % file)
    return (image.GetExtent(), numpy_support.vtk_to_numpy(data.GetArray("density")).astype(float),
            numpy_support.vtk_to_numpy(data.GetArray("velocity")).astype(float))


serial, split = collection(serial_dir), collection(split_dir)
if [t for t, _ in serial] != [t for t, _ in split] or not serial:
    fail("the .pvd files list different times: %s, %s" % (serial, split))
for (time, serial_file), (_, split_file) in zip(serial, split):
    if not split_file.endswith(".pvti"):
        fail("%s: a split rollout's frame is not a .pvti of pieces" % split_file)
    index = ET.parse(os.path.join(split_dir, split_file)).getroot().find("PImageData")
    whole = [int(v) for v in index.get("WholeExtent").split()]
    pieces = [([int(v) for v in p.get("Extent").split()], p.get("Source")) for p in index.iter("Piece")]
    if len(pieces) != ranks:
        fail("%s has %d pieces for %d ranks" % (split_file, len(pieces), ranks))
    # Consecutive slabs along x, each sharing its last plane with the next.
    x = [(e[0], e[1]) for e, _ in pieces]
    if x[0][0] != whole[0] or x[-1][1] != whole[1] or any(a[1] != b[0] for a, b in zip(x, x[1:])):
        fail("%s: the pieces' x extents %s do not cover %s" % (split_file, x, whole[:2]))
    for extent, source in pieces:
        if extent[2:] != whole[2:] or not os.path.exists(os.path.join(split_dir, source)):
            fail("%s: piece %s %s is not a whole slab, or its file is missing" % (split_file, extent, source))
    (e1, d1, v1), (e2, d2, v2) = read(serial_dir, serial_file), read(split_dir, split_file)
    if list(e1) != list(e2):
        fail("%s: extent %s, serial %s" % (split_file, e2, e1))
    density_error = np.abs(d2 - d1).sum() / np.abs(d1).sum()
    momentum = np.abs(v2 * d2[:, None] - v1 * d1[:, None]).sum() / max(np.abs(v1 * d1[:, None]).sum(), 1e-300)
    if density_error > 1e-6 or momentum > 1e-5:
        fail("%s (t = %g): relative L1 %.2e (density), %.2e (momentum) from the serial frame" %
             (split_file, time, density_error, momentum))
    print("ok   %s (t = %g): %d pieces, density %.1e, momentum %.1e from the serial frame" %
          (split_file, time, len(pieces), density_error, momentum))
