"""Opens the ready-made layout examples/jko_layout.pvsm from any folder.

In the ParaView GUI:

    cd /path/to/repo && paraview --script=examples/open_layout.py

(from another folder set JKO_ROOT=/path/to/repo), or View > Python Shell >
Run Script, or in pvpython. Loads the
NeuralJKOFlow plugin when it is not loaded yet, then the state with its
data files (the sample density and the operator, stored as paths relative
to the repository root) searched for under the repository root.
"""
import os
import sys


def examples_folder():
    """This script's folder. The GUI runs --script files without __file__:
    then $JKO_ROOT/examples, else ./examples (start paraview in the
    repository root)."""
    try:
        return os.path.dirname(os.path.abspath(__file__))
    except NameError:
        return os.path.join(os.path.abspath(os.environ.get("JKO_ROOT", os.getcwd())), "examples")


sys.path.insert(0, examples_folder())
import jko_examples as J  # noqa: E402
from paraview import servermanager, simple  # noqa: E402


def plugin_loaded():
    """True when the JKO Gradient Flow proxy is known to the session."""
    return servermanager.ProxyManager().GetPrototypeProxy("filters", "JKOGradientFlow") is not None


if not plugin_loaded():
    J.load_plugin()
simple.LoadState(os.path.join(J.HERE, "jko_layout.pvsm"), data_directory=J.ROOT)
flow = simple.FindSource("JKO Gradient Flow")
simple.SetActiveSource(flow)
simple.GetAnimationScene().UpdateAnimationUsingDataTimeSteps()
