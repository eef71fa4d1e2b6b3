"""Bad input: every input the plugin refuses gets one error message that
names the problem and what to do, no crash, and no half-written output (an
empty output on a fresh filter, the last good output after a success).

After each, the same filter, with the property fixed or the input replaced,
gives correct frames: a Gaussian under Fokker-Planck in a quadratic well
(Ornstein-Uhlenbeck) stays exactly a Gaussian over a JKO step
(DESIGN.md §5 case 1, TestOrnsteinUhlenbeckStep.py), so every recovered frame
is checked against the exact chain, for mass, and against the frames of a
filter that never saw a bad input.
"""
import os
import sys
import tempfile

import numpy as np

import jko_plugin_testing as T
from paraview import simple
from vtkmodules.util import numpy_support

T.load_plugin()
check = T.Check()
# Removed when the interpreter exits.
_scratch = tempfile.TemporaryDirectory(prefix="jko-bad-input-")
scratch = _scratch.name
REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(sys.argv[0]), "..", ".."))
# Fokker-Planck, D = 0.1, V = 20 |x - (0.5, 0.5)|^2 / 2, tau = 0.005 (data/README.md).
OPERATOR = os.path.join(REPOSITORY, "data", "operators", "fokker-planck.jko")

# The good problem: unit mass N(MU, diag(SIGMA^2)) on the N x N cell centres
# of the unit square; its JKO steps are the exact Gaussians below.
N, D, A, TAU, STEPS = 32, 0.1, 20.0, 0.005, 1
MU, SIGMA, B = np.array([0.42, 0.56]), np.array([0.08, 0.1]), np.array([0.5, 0.5])
X = (np.arange(N) + 0.5) / N
DIMS, ORIGIN, SPACING = (N, N, 1), (0.5 / N, 0.5 / N, 0), (1 / N, 1 / N, 1)


def gaussian(mean, s):
    """The Gaussian sampled at the nodes, normalised to unit discrete mass."""
    g = np.exp(-0.5 * ((X[:, None] - mean[0]) / s[0]) ** 2 - 0.5 * ((X[None, :] - mean[1]) / s[1]) ** 2)
    return g / (g.sum() / N**2)


def ou_step(mean, s):
    c = 1 + A * TAU
    return B + (mean - B) / c, (s + np.sqrt(s**2 + 4 * c * D * TAU)) / (2 * c)


EXACT = [gaussian(MU, SIGMA)]
mean, s = MU, SIGMA
for _ in range(STEPS):
    mean, s = ou_step(mean, s)
    EXACT.append(gaussian(mean, s))
STEP_CHANGE = [np.abs(rho - EXACT[0]).sum() for rho in EXACT]

GOOD = dict(Density=["POINTS", "density"], Solver="Reference solver", EnergyPreset="Fokker-Planck", Diffusion=D,
            Exponent=2, Attraction=20, Repulsion=1, AttractivePower=2, RepulsivePower=0, Potential="Quadratic",
            PotentialStrength=[A] * 3, PotentialCentredInBox=1, WellDepth=1, WellHalfWidth=0.25, TimeStep=TAU,
            NumberOfSteps=STEPS, InitialTime=0, Device="CPU", NumberOfThreads=2, TrainingDensities=[])
LEARNED = dict(GOOD, Solver="Learned operator", OperatorFile=OPERATOR)


def with_2d(values):
    return values.reshape(N, N, 1)


# The good input, with the arrays the potential cases choose from.
good = T.image({"density": with_2d(EXACT[0]),
                "V": with_2d(0.5 * A * ((X[:, None] - 0.5) ** 2 + (X[None, :] - 0.5) ** 2)),
                "Vnan": with_2d(np.where(np.arange(N * N).reshape(N, N) == 7, np.nan, 1.0))},
               DIMS, ORIGIN, SPACING)


def add_array(producer, name, values, components=1, cell_data=False):
    """Adds a raw array (any length, any components) to a producer's image."""
    data = producer.GetClientSideObject().GetOutputDataObject(0)
    array = numpy_support.numpy_to_vtk(np.asarray(values, dtype=np.float64).reshape(-1, components), deep=True)
    array.SetName(name)
    (data.GetCellData() if cell_data else data.GetPointData()).AddArray(array)
    producer.MarkModified(producer)


add_array(good, "vec", np.ones((N * N, 3)), 3)
add_array(good, "tensor", np.ones((N * N, 4)), 4)
add_array(good, "short", np.ones(10))
add_array(good, "Vcell", np.ones((N - 1) ** 2), cell_data=True)


def configure(proxy, settings):
    for name, value in settings.items():
        setattr(proxy, name, value)


def frames(flow):
    flow.UpdatePipelineInformation()
    times = list(flow.TimestepValues)
    return times, [T.output(flow, t) for t in times]


def densities(outputs):
    return [T.point_array(out, "density", DIMS)[:, :, 0].copy() for out in outputs]


def check_exact(label, flow, messages, known):
    """The frames of `flow` are the exact Ornstein-Uhlenbeck chain (no more
    than 10% of each frame's change from rho_0 wrong: both solvers are about
    2% wrong on this grid, a step that does nothing is 100% wrong), keep the
    mass, and equal the frames `known` of a filter that never failed (to
    1e-6: L-BFGS turns rounding differences of the input into 1e-9, a stale
    or wrong frame differs by 1e-3 or more)."""
    times, outputs = frames(flow)
    ok = not messages.errors and np.allclose(times, TAU * np.arange(STEPS + 1), rtol=0, atol=1e-15)
    if ok:
        ok = all(out.GetPointData().GetArray("density") is not None for out in outputs)
    if not check(ok, "%s: the same filter recovers (%d frames, errors: %s)" % (label, len(outputs), messages.errors)):
        return None
    rhos = densities(outputs)
    wrong = max(np.abs(rhos[k] - EXACT[k]).sum() / STEP_CHANGE[k] for k in range(1, STEPS + 1))
    drift = max(max(abs(T.field(out, "Mass") - 1), abs(rho.sum() / N**2 - 1)) for out, rho in zip(outputs, rhos))
    check(np.abs(rhos[0] - EXACT[0]).max() < 1e-12 * EXACT[0].max() and wrong < 0.1,
          "%s: recovered frames are the exact Ornstein-Uhlenbeck steps (%.1f%% of the change wrong)"
          % (label, 100 * wrong))
    check(drift < 1e-12, "%s: recovered frames keep the mass (drift %.1e)" % (label, drift))
    if known is not None:
        difference = max(np.abs(rho - k).max() for rho, k in zip(rhos, known)) / EXACT[0].max()
        check(difference < 1e-6, "%s: recovered frames equal a fresh filter's (relative difference %.1e)"
              % (label, difference))
    return rhos


# Frames of filters that never saw a bad input, checked against the exact chain.
KNOWN = {}
for name, settings in (("reference", GOOD), ("learned", LEARNED)):
    flow = simple.JKOGradientFlow(Input=good)
    configure(flow, settings)
    messages = T.Messages(flow)
    KNOWN[name] = check_exact("fresh %s filter" % name, flow, messages, None)
    messages.close()
    simple.Delete(flow)


def expect_error(label, phrases, bad=None, producer=None, settings=GOOD, fix=None, files=None):
    """A filter with `settings` on `producer` (the good input by default), made
    bad by `bad(flow)`: one error containing every phrase, no half-written
    output. Then `fix(flow)` (default: the good input and settings again) on
    the same filter gives the exact frames. `files`: a folder whose listing
    the failure must leave as it was."""
    flow = simple.JKOGradientFlow(Input=producer or good)
    configure(flow, settings)
    if bad:
        bad(flow)
    listing = sorted(os.listdir(files)) if files else None
    messages = T.Messages(flow)
    out = T.output(flow, 0.0)
    table = flow.GetClientSideObject().GetOutputDataObject(1)
    text = " | ".join(messages.errors)
    check(len(messages.errors) == 1, "%s: one error (%d)" % (label, len(messages.errors)))
    found = all(p.lower() in text.lower() for p in phrases)
    check(found, "%s: message names the problem %s: %s" % (label, phrases, text.strip()))
    check(out.GetNumberOfPoints() == 0 and out.GetPointData().GetNumberOfArrays() == 0 and table.GetNumberOfRows() == 0,
          "%s: no half-written output (%d points, %d rows)" % (label, out.GetNumberOfPoints(), table.GetNumberOfRows()))
    if files:
        check(sorted(os.listdir(files)) == listing, "%s: no file written: %s" % (label, os.listdir(files)))
    messages.clear()
    if fix:
        fix(flow)
    else:
        flow.Input = good
        configure(flow, settings)
    check_exact(label, flow, messages, KNOWN["learned" if settings is LEARNED else "reference"])
    messages.close()
    simple.Delete(flow)


def setting(**values):
    return lambda flow: configure(flow, values)


def bad_image(values, dims=DIMS, origin=ORIGIN, spacing=SPACING):
    return T.image({"density": values}, dims, origin, spacing)


# The input data.
expect_error("no scalar array", ["no point-data scalar", "choose one"], setting(Density=["POINTS", ""]),
             T.image({}, DIMS, ORIGIN, SPACING))
expect_error("density array not on the input", ["no point-data array named 'nothere'", "choose an existing"],
             setting(Density=["POINTS", "nothere"]))
# Colour and 2-3 component arrays become densities (TestYourOwnImage.py);
# wider ones are refused.
expect_error("four-component density", ["'tensor' has 4 components", "scalar array as the density", "Calculator"],
             setting(Density=["POINTS", "tensor"]))
expect_error("density array of the wrong size", ["'short' has 10 values", "1024 points", "one value per point"],
             setting(Density=["POINTS", "short"]))
negative = with_2d(EXACT[0].copy())
negative[3, 4, 0] = -0.5
expect_error("negative values", ["'density'", "1 negative values", "clip"], producer=bad_image(negative))
nan = with_2d(EXACT[0].copy())
nan[5, 5, 0] = np.nan
nan[6, 5, 0] = np.inf
expect_error("NaN values", ["2 NaN or infinite", "replace them"], producer=bad_image(nan))
expect_error("zero mass", ["zero mass", "choose another"], producer=bad_image(0 * with_2d(EXACT[0])))
expect_error("infinite mass", ["infinite mass", "rescale"], producer=bad_image(1e306 * with_2d(EXACT[0])))
expect_error("energy that overflows", ["energy of the input density is inf", "rescale the density"],
             setting(EnergyPreset="Porous medium"), bad_image(1e200 * with_2d(EXACT[0])))
expect_error("a line is not an image to flow on", ["only one axis", "2D or 3D image"],
             producer=bad_image(np.ones((16, 1, 1)), (16, 1, 1)))
expect_error("a single point", ["no axis with two or more samples"], producer=bad_image(np.ones((1, 1, 1)), (1, 1, 1)))
expect_error("empty image", ["image is empty"], producer=bad_image(np.zeros((0, 0, 0)), (0, 0, 0)))
expect_error("negative spacing", ["spacing -0.03125 along x", "positive spacing"],
             producer=bad_image(with_2d(EXACT[0]), spacing=(-1 / N, 1 / N, 1)))
expect_error("NaN origin", ["origin nan along y", "finite origin"],
             producer=bad_image(with_2d(EXACT[0]), origin=(0, np.nan, 0)))
expect_error("non-image input", ["vtkPolyData", "not image data", "Resample To Image"], producer=simple.Sphere())
rotated = bad_image(with_2d(EXACT[0]))
rotated.GetClientSideObject().GetOutputDataObject(0).SetDirectionMatrix(0, -1, 0, 1, 0, 0, 0, 0, 1)
rotated.MarkModified(rotated)
expect_error("rotated image", ["rotated", "direction matrix", "Resample To Image"], producer=rotated)
cube = T.image({"density": np.ones((8, 8, 8))}, (8, 8, 8), (0, 0, 0), (0.125,) * 3)

# The potential from an array; the fix chooses V, the quadratic well on the nodes.
from_array = dict(Potential="From array")
fixed_potential = setting(Potential="From array", PotentialArray=["POINTS", "V"])
expect_error("no potential array", ["Potential is 'From array'", "no Potential Array is chosen", "choose a scalar"],
             setting(PotentialArray=["POINTS", ""], **from_array), fix=fixed_potential)
expect_error("potential array not on the input", ["'nothere' is not on the input"],
             setting(PotentialArray=["POINTS", "nothere"], **from_array), fix=fixed_potential)
expect_error("cell-data potential for a point-data density", ["'Vcell' is cell data", "Point Data To Cell Data"],
             setting(PotentialArray=["CELLS", "Vcell"], **from_array), fix=fixed_potential)
expect_error("potential array with NaN", ["'Vnan' has NaN or infinite values", "choose another Potential Array"],
             setting(PotentialArray=["POINTS", "Vnan"], **from_array), fix=fixed_potential)
expect_error("potential array of the wrong size", ["'short' has 10 values", "one value per point"],
             setting(PotentialArray=["POINTS", "short"], **from_array), fix=fixed_potential)
expect_error("vector potential array", ["'vec' has 3 components", "as the Potential Array"],
             setting(PotentialArray=["POINTS", "vec"], **from_array), fix=fixed_potential)

# Energy parameters: each names the parameter and the panel property to change.
expect_error("negative D", ["invalid D = -1", ">= 0", "Change Diffusion"], setting(Diffusion=-1))
expect_error("NaN D", ["invalid D = nan", "finite", "Change Diffusion"], setting(Diffusion=float("nan")))
expect_error("porous medium m = 1", ["invalid m = 1", "> 1", "Change Exponent"],
             setting(EnergyPreset="Porous medium", Exponent=1))
expect_error("porous medium m = NaN", ["invalid m = nan", "Change Exponent"],
             setting(EnergyPreset="Porous medium", Exponent=float("nan")))
expect_error("negative attraction", ["invalid attraction = -1", "Change Attraction"],
             setting(EnergyPreset="Aggregation-diffusion", Attraction=-1))
expect_error("negative repulsion", ["invalid repulsion = -1", "Change Repulsion"],
             setting(EnergyPreset="Aggregation", Repulsion=-1))
expect_error("attractive power below the repulsive", ["invalid attractive power = -1", "Change Attractive Power"],
             setting(EnergyPreset="Aggregation", AttractivePower=-1))
expect_error("non-integrable repulsive power", ["invalid repulsive power = -3", "integrable", "Change Repulsive Power"],
             setting(EnergyPreset="Aggregation", RepulsivePower=-3))
expect_error("infinite potential strength", ["invalid potential strength = inf", "Change Potential Strength"],
             setting(PotentialStrength=[A, float("inf"), A]))
expect_error("infinite potential centre", ["invalid potential centre = inf", "Change Potential Centre"],
             setting(PotentialCentredInBox=0, PotentialCentre=[float("inf"), 0.5, 0.5]))
expect_error("NaN potential centre", ["Potential Centre is nan along y", "Potential Centred In Box"],
             setting(PotentialCentredInBox=0, PotentialCentre=[0.5, float("nan"), 0.5]))
expect_error("zero well half-width", ["invalid well half-width = 0", "Change Well Half Width"],
             setting(Potential="Double well", WellHalfWidth=0))
expect_error("NaN well depth", ["invalid well depth = nan", "Change Well Depth"],
             setting(Potential="Double well", WellDepth=float("nan")))
expect_error("Keller-Segel in 3D", ["Energy", "keller-segel", "2D only", "Energy Preset"],
             setting(EnergyPreset="Keller-Segel"), cube)

# Time and computation.
expect_error("negative tau", ["Time Step", "-0.01", "positive"], setting(TimeStep=-0.01))
expect_error("NaN tau", ["Time Step", "nan", "positive"], setting(TimeStep=float("nan")))
expect_error("no steps", ["Number Of Steps is 0", "between 1 and"], setting(NumberOfSteps=0))
expect_error("infinite initial time", ["Initial Time is inf", "give a finite number"], setting(InitialTime=float("inf")))
expect_error("negative threads", ["Number Of Threads is -1", "between 0 (all cores) and 256"],
             setting(NumberOfThreads=-1))
expect_error("too many threads", ["Number Of Threads is 100000", "between 0 (all cores) and 256"],
             setting(NumberOfThreads=100000))
expect_error("CUDA where there is none", ["CUDA", "set Device to CPU"], setting(Device="CUDA"))
# Frames that would not fit in memory are refused before anything is allocated.
big = simple.JKOInitialDensity()
big.Dimension = "3D"
big.GridSize = [64, 64, 64]
big.UpdatePipeline()
expect_error("frames that do not fit in memory", ["100001 frames", "memory", "reduce Number Of Steps"],
             setting(NumberOfSteps=100000), big)

# Operators (the bundled Fokker-Planck one) that are missing or do not fit.
corrupt = os.path.join(scratch, "corrupt.jko")
with open(corrupt, "wb") as f:
    f.write(b"JKOOPERATOR\x00garbage that is not an operator file" * 10)
expect_error("missing operator file", ["does not exist", "Train"],
             setting(OperatorFile=os.path.join(scratch, "missing.jko")), settings=LEARNED)
expect_error("corrupt operator file", ["cannot be read", "valid operator"], setting(OperatorFile=corrupt),
             settings=LEARNED)
expect_error("learned mode without an operator", ["no operator is chosen", "Operator File", "Train"],
             setting(Solver="Learned + refine", OperatorFile=""), settings=LEARNED)
# A mismatch names every differing setting at once, as the panel names it.
expect_error("operator for another energy",
             ["trained for fokker-planck", "Energy Preset: operator fokker-planck", "panel porous-medium",
              "Operator Description", "Train"],
             setting(EnergyPreset="Porous medium"), settings=LEARNED)
# The operator is conditioned on D in [0.05, 0.5] and the potential's
# strength in [10, 100] (data/README.md): values outside are refused with
# the ranges it serves.
expect_error("operator for another D", ["differs in 1 setting", "Diffusion: operator 0.1, panel 1",
                                        "tau D in [0.00025, 0.0025]"],
             setting(Diffusion=1), settings=LEARNED)
expect_error("operator for another potential", ["differs in 2 settings", "Potential Strength along x: operator 20",
                                                "Potential Strength along y: operator 20, panel 200",
                                                "tau a in [0.05, 0.5]"],
             setting(PotentialStrength=[200, 200, 200]), settings=LEARNED)
expect_error("operator for another D, potential and tau",
             ["differs in 3 settings", "Diffusion: operator 0.1, panel 1", "Potential: operator quadratic, panel none",
              "Time Step: operator 0.005, panel 0.01"],
             setting(Diffusion=1, Potential="None", TimeStep=0.01, Attraction=5), settings=LEARNED)
expect_error("operator for another tau", ["Time Step: operator 0.005, panel 0.1"],
             setting(TimeStep=0.1), settings=LEARNED)
# Inside those ranges the panel's values are served, no retraining: the
# learned frame of D 0.2 and strength 40 is the reference solver's within 1%.
served = {}
for solver in ("Learned operator", "Reference solver"):
    flow = simple.JKOGradientFlow(Input=good)
    configure(flow, dict(LEARNED, Solver=solver, Diffusion=0.2, PotentialStrength=[40, 40, 40]))
    messages = T.Messages(flow)
    times, outputs = frames(flow)
    served[solver] = (messages.errors, densities(outputs))
    messages.close()
    simple.Delete(flow)
errors, learned = served["Learned operator"]
_, reference = served["Reference solver"]
gap = np.abs(learned[-1] - reference[-1]).sum() / np.abs(reference[-1]).sum()
check(not errors and len(learned) == STEPS + 1 and gap < 0.01,
      "the operator serves D 0.2, strength 40 within its ranges (%.2g%% from the reference solver; errors %s)"
      % (100 * gap, errors))
expect_error("operator for another dimension", ["is for 2D densities", "input is 3D"], producer=cube, settings=LEARNED)

# Training settings: refused before any training, nothing written; the fix
# does not train again (one request, one training).
def train(**values):
    def bad(flow):
        configure(flow, dict(dict(TrainingRounds=1, TrainingEpochs=1, TrainingBatchSize=2, TrainingHorizon=1,
                                  GeneratedDensities=1, ValidationDensities=1, MaximumTrainingSeconds=60,
                                  ReuseTrainedOperator=0, TrainedOperatorFile=os.path.join(scratch, "op.jko")),
                             **values))
        flow.InvokeCommand("Train")
    return bad


expect_error("no Trained Operator File", ["Trained Operator File is empty", "choose where"],
             train(TrainedOperatorFile=""), files=scratch)
expect_error("Trained Operator File in a missing folder", ["folder", "does not exist", "create it"],
             train(TrainedOperatorFile=os.path.join(scratch, "missing", "op.jko")), files=scratch)
expect_error("Trained Operator File is a folder", ["is a folder", "choose a file in it"],
             train(TrainedOperatorFile=scratch), files=scratch)
expect_error("no training rounds", ["invalid rounds = 0", "Change Training Rounds"], train(TrainingRounds=0),
             files=scratch)
expect_error("infinite learning rate", ["Training Learning Rate is inf", "positive finite"],
             train(TrainingLearningRate=float("inf")), files=scratch)
expect_error("negative time cap", ["invalid maximum seconds = -1", "Change Maximum Training Seconds"],
             train(MaximumTrainingSeconds=-1), files=scratch)
expect_error("NaN time cap", ["Maximum Training Seconds is nan"], train(MaximumTrainingSeconds=float("nan")),
             files=scratch)
small = T.image({"density": np.ones((6, 6, 1))}, (6, 6, 1), (1 / 12, 1 / 12, 0), (1 / 6, 1 / 6, 1))
expect_error("training grid too small", ["invalid training grid = 6", "Resample To Image"], train(), small,
             files=scratch)
sphere = simple.Sphere()
expect_error("training density that is not an image", ["Training density 1", "vtkPolyData", "not image data"],
             lambda flow: (setattr(flow, "TrainingDensities", [sphere]), train()(flow)), files=scratch)
expect_error("training density with negative values", ["Training density 1", "1 negative values"],
             lambda flow: (setattr(flow, "TrainingDensities", [bad_image(negative)]), train()(flow)), files=scratch)

# JKO Initial Density: each bad parameter, then the same source with it fixed
# samples the Gaussian exactly (and the flow on it is the exact chain).
GAUSSIAN = dict(Kind="Gaussian", Dimension="2D", GridSize=[N, N, N], BoxLower=[0, 0, 0], BoxUpper=[1, 1, 1], Mass=1,
                Centre=[MU[0], MU[1], 0.5], Sigma=[SIGMA[0], SIGMA[1], 0.1], BarenblattTime=0.005,
                BarenblattExponent=2)


def expect_source_error(label, phrases, values, flow_after=False):
    source = simple.JKOInitialDensity()
    configure(source, dict(GAUSSIAN, **values))
    messages = T.Messages(source)
    out = T.output(source)
    text = " | ".join(messages.errors)
    check(len(messages.errors) == 1 and all(p.lower() in text.lower() for p in phrases),
          "%s: one error naming the problem %s: %s" % (label, phrases, text.strip()))
    check(out.GetNumberOfPoints() == 0 and out.GetPointData().GetNumberOfArrays() == 0,
          "%s: no half-written output (%d points)" % (label, out.GetNumberOfPoints()))
    messages.clear()
    configure(source, GAUSSIAN)
    out = T.output(source)
    rho = T.point_array(out, "density", DIMS)[:, :, 0] if out.GetNumberOfPoints() == N * N else None
    check(not messages.errors and rho is not None and np.abs(rho - EXACT[0]).max() < 1e-12 * EXACT[0].max(),
          "%s: the same source, fixed, samples the Gaussian exactly" % label)
    messages.close()
    if flow_after:
        flow = simple.JKOGradientFlow(Input=source)
        configure(flow, GOOD)
        flow_messages = T.Messages(flow)
        check_exact(label + ", flow on the fixed source", flow, flow_messages, KNOWN["reference"])
        flow_messages.close()
        simple.Delete(flow)
    simple.Delete(source)


expect_source_error("grid of one node", ["Grid Size along axis 0 is 1", "at least 2"], dict(GridSize=[1, N, N]),
                    True)
expect_source_error("grid that does not fit in memory", ["Grid Size 1000000 x 1000000", "memory",
                                                         "smaller Grid Size"], dict(GridSize=[1000000, 1000000, 1]))
expect_source_error("inverted box", ["[1, 0]", "Box Upper must exceed Box Lower"],
                    dict(BoxLower=[1, 0, 0], BoxUpper=[0, 1, 1]))
expect_source_error("zero mass", ["Mass is 0", "positive finite mass"], dict(Mass=0))
expect_source_error("mass that overflows", ["Mass 1e+308", "overflow", "smaller Mass"], dict(Mass=1e308))
expect_source_error("zero sigma", ["Sigma must be a positive finite number"], dict(Sigma=[0, 0.1, 0.1]))
expect_source_error("infinite sigma", ["Sigma must be a positive finite number"], dict(Sigma=[0.1, np.inf, 0.1]))
expect_source_error("NaN centre", ["Centre must be finite"], dict(Centre=[np.nan, 0.5, 0.5]))
expect_source_error("centre far outside the box", ["no mass on this grid", "move its centre into the box"],
                    dict(Centre=[50, 0.5, 0.5]))
expect_source_error("Barenblatt time 0", ["Barenblatt Time must be a positive finite number"],
                    dict(Kind="Barenblatt profile", BarenblattTime=0))
expect_source_error("Barenblatt exponent 1", ["Barenblatt Exponent m must be > 1"],
                    dict(Kind="Barenblatt profile", BarenblattExponent=1))

# After a good rollout, an error keeps the last good output, and fixing the
# property recomputes the exact frames.
flow = simple.JKOGradientFlow(Input=good)
configure(flow, GOOD)
messages = T.Messages(flow)
out = T.output(flow, TAU)
good_density = T.point_array(out, "density", DIMS).copy()
flow.TimeStep = 0
out = T.output(flow, TAU)
check(len(messages.errors) == 1 and "Time Step" in messages.errors[0], "bad tau after a good run: one error")
messages.clear()
kept = T.point_array(out, "density", DIMS)
check(np.array_equal(kept, good_density) and T.field(out, "RolloutCount") == 1,
      "the last good output is kept after an error")
# The time controls keep the last good frames' times (no time steps at all
# was what a bad Time Step left), and asked for another time the failing
# filter still shows that frame with its own time (frame 1, t = tau).
flow.UpdatePipelineInformation()
kept_times = list(flow.TimestepValues)
check(len(kept_times) == STEPS + 1 and np.allclose(kept_times, TAU * np.arange(STEPS + 1)),
      "the time steps of the last good frames stay: %s" % kept_times)
out = T.output(flow, 0.0)
check(np.array_equal(T.point_array(out, "density", DIMS), good_density)
      and abs(out.GetInformation().Get(out.DATA_TIME_STEP()) - TAU) < 1e-15 and T.field(out, "Time") == TAU,
      "the kept frame keeps its time (%g)" % out.GetInformation().Get(out.DATA_TIME_STEP()))
flow.TimeStep = TAU
messages.clear()
check_exact("fixing tau after a good run", flow, messages, KNOWN["reference"])
# The frames computed for these settings before the error are still cached.
check(T.field(T.output(flow, TAU), "RolloutCount") == 1, "fixing the property gives the frames cached for it")
messages.close()

check.finish()
