"""Helpers shared by the pvpython tests of the NeuralJKOFlow plugin.

The tests run in pvpython's built-in session: images are handed to the
pipeline through a TrivialProducer, outputs are read back from the
algorithms' own output objects, and error messages are caught with an
ErrorEvent observer on the filter, or, as ParaView's Output Messages shows
them, from VTK's output window (OutputMessages).
"""
import os
import sys

import numpy as np
from paraview import servermanager
from paraview import simple
from vtkmodules.util import numpy_support
from vtkmodules.util.misc import calldata_type
from vtkmodules.util.vtkConstants import VTK_STRING
from vtkmodules.vtkCommonCore import vtkCommand, vtkOutputWindow, vtkStringOutputWindow
from vtkmodules.vtkCommonDataModel import vtkImageData

PLUGIN = os.environ.get("JKO_PLUGIN", "")


def load_plugin(remote=False):
    if not PLUGIN or not os.path.exists(PLUGIN):
        sys.exit("set JKO_PLUGIN to the plugin library (NeuralJKOFlow.so)")
    # The new proxies become functions of paraview.simple.
    simple.LoadPlugin(PLUGIN, remote=remote, ns=vars(simple))
    if remote:
        simple.LoadPlugin(PLUGIN, remote=False, ns=vars(simple))


def image(arrays, dims, origin=(0, 0, 0), spacing=(1, 1, 1), cell_data=False):
    """A TrivialProducer holding a vtkImageData with the given numpy arrays.

    `arrays` maps names to arrays of shape (nx, ny, nz) in axis order (x, y,
    z): samples per point (cell_data False) or per cell. `dims` are the
    point dimensions of the image.
    """
    data = vtkImageData()
    data.SetDimensions(*dims)
    data.SetOrigin(*origin)
    data.SetSpacing(*spacing)
    attributes = data.GetCellData() if cell_data else data.GetPointData()
    for name, values in arrays.items():
        flat = np.ascontiguousarray(np.asarray(values, dtype=np.float64).transpose(2, 1, 0)).ravel()
        array = numpy_support.numpy_to_vtk(flat, deep=True)
        array.SetName(name)
        attributes.AddArray(array)
    if arrays:
        attributes.SetActiveScalars(next(iter(arrays)))
    producer = simple.TrivialProducer()
    producer.GetClientSideObject().SetOutput(data)
    producer.UpdatePipeline()
    return producer


def output(proxy, time=None, port=0):
    """A copy of the VTK output of `proxy` after updating it at `time` (the
    algorithm reuses its output object on the next update)."""
    if time is None:
        proxy.UpdatePipeline()
    else:
        proxy.UpdatePipeline(time)
    data = proxy.GetClientSideObject().GetOutputDataObject(port)
    copy = data.NewInstance()
    copy.DeepCopy(data)
    copy.GetInformation().Set(data.DATA_TIME_STEP(), data.GetInformation().Get(data.DATA_TIME_STEP()))
    return copy


def field(data, name):
    array = data.GetFieldData().GetAbstractArray(name)
    if array is None:
        raise KeyError(name)
    value = array.GetValue(0) if array.IsA("vtkStringArray") else array.GetTuple1(0)
    return value


def point_array(data, name, shape, cell_data=False):
    """An image array as numpy, in axis order (x, y, z) of `shape`."""
    attributes = data.GetCellData() if cell_data else data.GetPointData()
    array = attributes.GetArray(name)
    if array is None:
        raise KeyError(name)
    values = numpy_support.vtk_to_numpy(array)
    components = array.GetNumberOfComponents()
    nx, ny, nz = shape
    if components == 1:
        return values.reshape(nz, ny, nx).transpose(2, 1, 0)
    return values.reshape(nz, ny, nx, components).transpose(2, 1, 0, 3)


class Messages:
    """Collects the error and warning messages one VTK algorithm reports."""

    def __init__(self, proxy):
        self.algorithm = proxy.GetClientSideObject()
        self.errors, self.warnings = [], []
        self.tags = [
            self.algorithm.AddObserver(vtkCommand.ErrorEvent, self._error),
            self.algorithm.AddObserver(vtkCommand.WarningEvent, self._warning),
        ]

    @calldata_type(VTK_STRING)
    def _error(self, caller, event, message=None):
        self.errors.append(str(message))

    @calldata_type(VTK_STRING)
    def _warning(self, caller, event, message=None):
        self.warnings.append(str(message))

    def clear(self):
        self.errors, self.warnings = [], []

    def close(self):
        for tag in self.tags:
            self.algorithm.RemoveObserver(tag)


class OutputMessages:
    """What reaches VTK's output window (ParaView's Output Messages: errors,
    warnings and plain text) while the `with` block runs.

    No observer may be on the algorithm meanwhile (an observer takes its
    warnings). pvpython prints through the output window too: print after
    the block.
    """

    def __enter__(self):
        self.previous = vtkOutputWindow.GetInstance()
        self.window = vtkStringOutputWindow()
        vtkOutputWindow.SetInstance(self.window)
        return self

    def __exit__(self, *exception):
        vtkOutputWindow.SetInstance(self.previous)
        self.text = self.window.GetOutput()
        # A warning is "Warning: In FILE, line N\nCLASS (0x...): TEXT\n\n" (an error the same
        # with "ERROR"); plain text lines come between them as they are.
        def entries(header):
            return [m.split("\n\n")[0] for m in self.text.split(header)[1:]]

        self.warnings = entries("Warning: In ")
        self.errors = entries("ERROR: In ") + entries("Error: In ")
        return False

    def count(self, phrase):
        return self.text.count(phrase)


class Check:
    """Counts failed checks and prints each with its numbers."""

    def __init__(self):
        self.failures = 0

    def __call__(self, condition, what):
        print(("ok    " if condition else "FAIL  ") + what, flush=True)
        if not condition:
            self.failures += 1
        return condition

    def finish(self):
        if self.failures:
            print("%d check(s) failed" % self.failures)
            sys.exit(1)
        print("all checks passed")
