"""Training faults from the panel (the Train button is InvokeCommand('Train')).

A cancelled training, a training whose save fails and a training refused for
its settings leave the previous operator file byte-identical and no temporary
file beside it; after each, the same filter still loads that operator and
gives the exact Ornstein-Uhlenbeck steps. A training stopped by Maximum
Training Seconds is no failure: it saves the best operator so far, says so,
and the filter uses it.
"""
import hashlib
import os
import resource
import signal
import sys
import tempfile

import numpy as np

import jko_plugin_testing as T
from paraview import simple
from vtkmodules.vtkCommonCore import vtkCommand

T.load_plugin()
check = T.Check()
# Removed when the interpreter exits.
_scratch = tempfile.TemporaryDirectory(prefix="jko-training-faults-")
scratch = _scratch.name
REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(sys.argv[0]), "..", ".."))
# Fokker-Planck, D = 0.1, V = 20 |x - (0.5, 0.5)|^2 / 2, tau = 0.005 (data/README.md).
BUNDLED = os.path.join(REPOSITORY, "data", "operators", "fokker-planck.jko")

# Unit mass N(MU, diag(SIGMA^2)) on 32^2 cell centres of the unit square; one
# JKO step of it is exactly a Gaussian (DESIGN.md §5 case 1).
N, D, A, TAU = 32, 0.1, 20.0, 0.005
MU, SIGMA, B = np.array([0.42, 0.56]), np.array([0.08, 0.1]), np.array([0.5, 0.5])
X = (np.arange(N) + 0.5) / N


def gaussian(mean, s):
    g = np.exp(-0.5 * ((X[:, None] - mean[0]) / s[0]) ** 2 - 0.5 * ((X[None, :] - mean[1]) / s[1]) ** 2)
    return g / (g.sum() / N**2)


c = 1 + A * TAU
EXACT = [gaussian(MU, SIGMA), gaussian(B + (MU - B) / c, (SIGMA + np.sqrt(SIGMA**2 + 4 * c * D * TAU)) / (2 * c))]

# The previous operator: a copy of the bundled one, where Train saves.
operator = os.path.join(scratch, "operator.jko")
with open(BUNDLED, "rb") as f:
    previous = f.read()
with open(operator, "wb") as f:
    f.write(previous)

source = simple.JKOInitialDensity(Kind="Gaussian", GridSize=[N, N, N], Mass=1, Centre=[MU[0], MU[1], 0.5],
                                  Sigma=[SIGMA[0], SIGMA[1], 0.1])
flow = simple.JKOGradientFlow(Input=source)
settings = dict(Solver="Learned operator", OperatorFile=operator, EnergyPreset="Fokker-Planck", Diffusion=D,
                Potential="Quadratic", PotentialStrength=[A] * 3, TimeStep=TAU, NumberOfSteps=1, NumberOfThreads=2,
                # A training of about a second, always trained anew.
                TrainingRounds=1, TrainingEpochs=1, TrainingBatchSize=2, TrainingHorizon=1, GeneratedDensities=1,
                ValidationDensities=1, MaximumTrainingSeconds=60, ReuseTrainedOperator=0,
                TrainedOperatorFile=operator)
for name, value in settings.items():
    setattr(flow, name, value)
algorithm = flow.GetClientSideObject()
messages = T.Messages(flow)


def check_previous_operator(label):
    """The operator file is the previous one, alone in its folder, and the
    filter's learned step from it is the exact step (the bundled operator is
    2% wrong on this grid; a step that does nothing is 100% wrong)."""
    with open(operator, "rb") as f:
        intact = f.read() == previous
    check(intact, "%s: the previous operator file is byte-identical" % label)
    check(os.listdir(scratch) == ["operator.jko"], "%s: no temporary file left: %s" % (label, os.listdir(scratch)))
    messages.clear()
    out = T.output(flow, TAU)
    if not check(not messages.errors and out.GetPointData().GetArray("density") is not None,
                 "%s: the filter keeps working (%s)" % (label, messages.errors)):
        return
    rho = T.point_array(out, "density", (N, N, 1))[:, :, 0]
    wrong = np.abs(rho - EXACT[1]).sum() / np.abs(EXACT[1] - EXACT[0]).sum()
    check(wrong < 0.1 and T.field(out, "OperatorFile") == operator,
          "%s: the previous operator gives the exact step (%.1f%% of it wrong)" % (label, 100 * wrong))
    check(abs(T.field(out, "Mass") - 1) < 1e-12, "%s: mass %.15f" % (label, T.field(out, "Mass")))


def train(label, phrases):
    """Train; one error containing every phrase."""
    messages.clear()
    flow.InvokeCommand("Train")
    T.output(flow, 0.0)
    text = " | ".join(messages.errors)
    check(len(messages.errors) == 1 and all(p.lower() in text.lower() for p in phrases),
          "%s: one error naming it %s: %s" % (label, phrases, text.strip()))


check_previous_operator("before any training")

# Cancelled while training: the abort flag, set from a progress observer as a
# script (or a later ParaView's Abort button) does, stops it at its next report.


def cancel_training(caller, event):
    if (caller.GetProgressText() or "").startswith("Training"):
        caller.SetAbortExecute(1)


tag = algorithm.AddObserver(vtkCommand.ProgressEvent, cancel_training)
train("cancelled training", ["cancelled", "last complete output is kept"])
algorithm.RemoveObserver(tag)
# The flag is the caller's to clear (VTK's abort protocol).
algorithm.SetAbortExecute(0)
check_previous_operator("cancelled training")

# A bad training setting is refused before training.
flow.TrainingEpochs = 0
train("bad training setting", ["invalid epochs = 0", "Change Training Epochs"])
flow.TrainingEpochs = 1
check_previous_operator("bad training setting")

# The save fails half-way (a file size limit stands in for a full disk).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limits = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
try:
    train("save that fails half-way", ["could not be saved", operator, "failed", "press Train again"])
finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
check_previous_operator("save that fails half-way")

# A time cap that ends the training after its first optimiser step: the best
# operator so far is saved (replacing the previous one) with a warning.
flow.TrainingRounds = 3
flow.MaximumTrainingSeconds = 1e-3
messages.clear()
flow.InvokeCommand("Train")
out = T.output(flow, TAU)
warnings = " | ".join(messages.warnings)
check(not messages.errors and "stopped at Maximum Training Seconds" in warnings and "round 1 of 3" in warnings,
      "time cap: a warning, no error: %s" % (warnings.strip() or messages.errors))
with open(operator, "rb") as f:
    replaced = f.read() != previous
check(replaced and os.listdir(scratch) == ["operator.jko"], "time cap: the operator is saved, no temporary left")
metadata = T.field(out, "OperatorMetadata") if out.GetNumberOfPoints() else ""
check('"stopped_at_time_cap":true' in metadata, "time cap: the saved operator records it")
rho = T.point_array(out, "density", (N, N, 1)) if out.GetNumberOfPoints() else np.array([np.nan])
check(np.isfinite(rho).all() and rho.min() >= 0 and abs(T.field(out, "Mass") - 1) < 1e-12,
      "time cap: the filter uses the new operator (mass %.15f)" % (T.field(out, "Mass") if out.GetNumberOfPoints()
                                                                    else np.nan))

messages.close()
check.finish()
