"""The JKO Initial Density source: every kind in 2D and 3D has the requested
mass, is non-negative and finite, sits on the requested cell-centred grid,
and the random kinds depend only on the seed."""
import numpy as np

import jko_plugin_testing as T
from paraview import simple

T.load_plugin()
check = T.Check()

kinds = ["Barenblatt profile", "Gaussian", "Gaussian mixture", "Compact bumps", "Ring", "Smooth random field",
         "Uniform disk"]
for dimension, size, lower, upper in [("2D", [24, 18, 1], [0, -1, 0], [1, 0.5, 1]),
                                      ("3D", [12, 10, 14], [0, 0, 0], [1, 1, 2])]:
    source = simple.JKOInitialDensity(Dimension=dimension, GridSize=size, BoxLower=lower, BoxUpper=upper, Mass=0.5)
    source.Centre = [0.5 * (l + u) for l, u in zip(lower, upper)]
    for kind in kinds:
        source.Kind = kind
        data = T.output(source)
        n = size if dimension == "3D" else [size[0], size[1], 1]
        rho = T.point_array(data, "density", n)
        h = [(u - l) / s for l, u, s in zip(lower, upper, size)]
        cell = h[0] * h[1] * (h[2] if dimension == "3D" else 1)
        label = "%s %s" % (dimension, kind)
        check(list(data.GetDimensions()) == n, "%s: dimensions %s" % (label, list(data.GetDimensions())))
        check(np.allclose(data.GetOrigin()[:2], [lower[0] + h[0] / 2, lower[1] + h[1] / 2]) and
              np.allclose(data.GetSpacing()[:2], h[:2]), "%s: cell-centred nodes" % label)
        check(np.isfinite(rho).all() and rho.min() >= 0, "%s: finite and non-negative" % label)
        check(abs(rho.sum() * cell - 0.5) < 1e-12, "%s: mass %.15f" % (label, rho.sum() * cell))
    source.Kind = "Ring"
    first = T.point_array(T.output(source), "density", n).copy()
    source.Seed = 2
    second = T.point_array(T.output(source), "density", n).copy()
    source.Seed = 1
    again = T.point_array(T.output(source), "density", n)
    check(np.array_equal(first, again) and not np.array_equal(first, second), "%s: the seed decides" % dimension)
    simple.Delete(source)

check.finish()
