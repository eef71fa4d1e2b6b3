"""One JKO step of the anisotropic Ornstein-Uhlenbeck flow through the plugin.

E = int sum_k a_k (x_k - b_k)^2 / 2 rho + D int rho log rho from a Gaussian
N(mu, diag(sigma_k^2)) is exactly a Gaussian (DESIGN.md §5 case 1, per axis):
    mu'_k = b_k + (mu_k - b_k) / (1 + a_k tau),
    s_k = (sigma_k + sqrt(sigma_k^2 + 4 (1 + a_k tau) D tau)) / (2 (1 + a_k tau)).
Every axis has its own a_k, box length, node count and spacing, and the 2D
images lie in the x-y, x-z and y-z planes (point and cell data), so a swapped
axis, a transposed array, a wrong spacing or a velocity component in the wrong
slot fails the comparison.
"""
import numpy as np

import jko_plugin_testing as T
from paraview import simple

T.load_plugin()
check = T.Check()

D, tau = 0.1, 0.01
a = np.array([20.0, 5.0, 12.0])      # per image axis x, y, z
length = np.array([1.0, 0.8, 0.9])   # box lengths
mu = np.array([0.45, 0.37, 0.47])
sigma = np.array([0.056, 0.096, 0.08])
b = length / 2                       # the box centre (box from 0)


def exact_step(axes):
    c = 1 + a[axes] * tau
    mean = b[axes] + (mu[axes] - b[axes]) / c
    s = (sigma[axes] + np.sqrt(sigma[axes] ** 2 + 4 * c * D * tau)) / (2 * c)
    return mean, s


def gaussian(coords, mean, s):
    """Product of 1D Gaussians on the grid, normalised to unit discrete mass."""
    g = np.ones([len(x) for x in coords])
    for k, x in enumerate(coords):
        shape = [1] * len(coords)
        shape[k] = len(x)
        g = g * np.exp(-0.5 * ((x - mean[k]) / s[k]) ** 2).reshape(shape)
    return g / g.sum()


def moments(rho, coords):
    w = rho / rho.sum()
    means, variances = [], []
    for k, x in enumerate(coords):
        shape = [1] * len(coords)
        shape[k] = len(x)
        xk = x.reshape(shape)
        m = (w * xk).sum()
        means.append(m)
        variances.append((w * (xk - m) ** 2).sum())
    return np.array(means), np.array(variances)


def run(label, axes, cells, cell_data):
    """axes: the image axes the density varies along; cells: samples per axis."""
    axes = list(axes)
    h = length[axes] / np.array(cells)
    coords = [(np.arange(n) + 0.5) * hk for n, hk in zip(cells, h)]
    rho0 = gaussian(coords, mu[axes], sigma[axes]) / np.prod(h)  # unit mass density
    mean1, s1 = exact_step(axes)
    exact1 = gaussian(coords, mean1, s1) / np.prod(h)

    # Image with samples along `axes` only; the other axes have one sample.
    samples, spacing, origin = [1, 1, 1], [1.0, 1.0, 1.0], [0.0, 0.3, -0.2]
    for k, axis in enumerate(axes):
        samples[axis] = cells[k]
        spacing[axis] = h[k]
        # Point samples sit at the nodes; cell samples at cell centres.
        origin[axis] = 0.5 * h[k] if not cell_data else 0.0
    dims = [n + 1 for n in samples] if cell_data else samples
    if cell_data:
        dims = [d if samples[i] > 1 else 1 for i, d in enumerate(dims)]
    full = rho0.reshape([samples[i] for i in range(3)])
    producer = T.image({"rho": full}, dims, origin, spacing, cell_data=cell_data)

    flow = simple.JKOGradientFlow(Input=producer)
    flow.Density = ["CELLS" if cell_data else "POINTS", "rho"]
    flow.EnergyPreset = "Fokker-Planck"
    flow.Diffusion = D
    flow.Potential = "Quadratic"
    flow.PotentialStrength = list(a)
    flow.TimeStep = tau
    flow.NumberOfSteps = 1
    flow.NumberOfThreads = 2
    out = T.output(flow, tau)
    rho1 = T.point_array(out, "density", samples, cell_data).reshape(cells)
    velocity = T.point_array(out, "velocity", samples, cell_data).reshape(list(cells) + [3])

    step = np.abs(exact1 - rho0).sum() / exact1.sum()
    error = np.abs(rho1 - exact1).sum() / exact1.sum()
    check(error < 0.1 * step, "%s: rel L1 error %.2e of one step against the exact Gaussian "
          "(the step itself changes %.2e)" % (label, error, step))
    m1, v1 = moments(rho1, coords)
    for k, axis in enumerate(axes):
        name = "xyz"[axis]
        check(abs(m1[k] - mean1[k]) < 0.05 * abs(mean1[k] - mu[axis]) + 1e-4,
              "%s: mean along %s %.5f, exact %.5f (from %.5f)" % (label, name, m1[k], mean1[k], mu[axis]))
        check(abs(v1[k] / s1[k] ** 2 - 1) < 0.03,
              "%s: variance along %s %.3e, exact %.3e" % (label, name, v1[k], s1[k] ** 2))
        # The mass-weighted mean velocity is the mean's displacement / tau.
        w = rho0 / rho0.sum()
        mean_velocity = (w * velocity[..., axis]).sum()
        exact_velocity = (mean1[k] - mu[axis]) / tau
        check(abs(mean_velocity - exact_velocity) < 0.05 * abs(exact_velocity),
              "%s: mean velocity along %s %.4f, exact %.4f" % (label, name, mean_velocity, exact_velocity))
    for axis in set(range(3)) - set(axes):
        check(np.abs(velocity[..., axis]).max() == 0,
              "%s: velocity component %s normal to the image is zero" % (label, "xyz"[axis]))
    check(abs(T.field(out, "Mass") - 1) < 1e-12, "%s: mass %.15f" % (label, T.field(out, "Mass")))
    simple.Delete(flow)
    simple.Delete(producer)


run("x-y plane, point data", (0, 1), (40, 26), False)
run("x-z plane, point data", (0, 2), (40, 33), False)
run("y-z plane, cell data", (1, 2), (26, 33), True)
run("3D, point data", (0, 1, 2), (24, 16, 20), False)
check.finish()
