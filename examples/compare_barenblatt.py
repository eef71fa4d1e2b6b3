"""Learned operator, reference solver and exact solution side by side, with
their errors, on the Barenblatt flow of the porous-medium equation.

    pvpython examples/compare_barenblatt.py [--steps 20] [--out output/compare-barenblatt]

rho_t = Lap rho^2 in 2D has the exact self-similar Barenblatt solution

    rho(t, x) = t^(-1/2) (C - |x - x0|^2 / (16 sqrt(t)))_+,

a paraboloid whose support grows like t^(1/4). The demo starts from it at
t0 = 0.005 (mass 0.02, data/samples/barenblatt.vti) and runs K JKO steps of
tau = 0.005 three ways:

* learned:   the bundled operator data/operators/porous-medium.jko,
* reference: each step minimised by L-BFGS (the ground truth of our
             discretisation),
* exact:     (a) the PDE solution above at t0 + k tau, and (b) the exact JKO
             chain: one JKO step maps a profile (A - q|x - x0|^2)_+ to its
             dilation by lambda > 1 with lambda - 1 = 4 q tau lambda^(-3),
             q <- q lambda^(-4) (DESIGN.md section 5, case 3). The chain and
             the PDE differ by the JKO scheme's own first-order time error.

Errors are relative L1, sum |rho - rho_exact| / sum rho_exact, per frame:
against the chain they measure the solver's own error, against the PDE the
total. Writes comparison.png (densities and signed errors), errors.png,
energy.png and the frames of both solvers (.pvd).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jko_examples as J  # noqa: E402

M = 2.0  # porous-medium exponent of the bundled operator
K_BARENBLATT = (M - 1) * 0.25 / (2 * M)  # k = (m-1) beta / (2m), beta = 1/4 in 2D for m = 2


def node_radius2(rollout, centre=(0.5, 0.5)):
    """|x - x0|^2 at the cell-centred nodes, axis order (x, y)."""
    (ox, oy, _), (hx, hy, _), (nx, ny, _) = rollout.origin, rollout.spacing, rollout.dims
    x, y = np.meshgrid(ox + hx * np.arange(nx), oy + hy * np.arange(ny), indexing="ij")
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2


def with_discrete_mass(profile, mass, cell):
    """Point samples scaled to the grid's mass, as the samples are."""
    return profile * (mass / (profile.sum() * cell))


def barenblatt_pde(t, mass, r2):
    """The exact solution of rho_t = Lap rho^2 (2D) of the given mass at t."""
    C = np.sqrt(2 * K_BARENBLATT * mass / np.pi)  # mass = pi C^2 / (2 k)
    return t ** -0.5 * np.clip(C - K_BARENBLATT * r2 * t ** -0.5, 0, None)


def barenblatt_jko_chain(t0, tau, steps, mass, r2):
    """The exact JKO iterates of the Barenblatt profile at t0: dilations."""
    C = np.sqrt(2 * K_BARENBLATT * mass / np.pi)
    A, q = C * t0 ** -0.5, K_BARENBLATT / t0  # rho = (A - q r^2)_+
    d = 2
    power = d * (M - 1) + 1
    chain = []
    for _ in range(steps + 1):
        chain.append(np.clip(A - q * r2, 0, None))
        c = 2 * M * q * tau / (M - 1)
        lam = 1 + c
        for _ in range(100):  # Newton on lambda - 1 - c lambda^-power = 0 (increasing)
            lam -= (lam - 1 - c * lam**-power) / (1 + c * power * lam ** (-power - 1))
        A, q = A * lam ** (-d * (M - 1)), q * lam ** -(d * (M - 1) + 2)
    return chain


def relative_l1(rho, exact):
    return float(np.abs(rho - exact).sum() / exact.sum())


def plot_comparison(rows, errors, times, box, path, title):
    """Densities (one colour scale) above signed errors against the exact
    JKO chain (one symmetric scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = J.strip_frames(len(times) - 1, 5)
    names = list(rows) + list(errors)
    fig, axes = plt.subplots(len(names), len(frames), figsize=(2.2 * len(frames) + 1.4, 2.1 * len(names) + 0.6),
                             squeeze=False, constrained_layout=True)
    vmax = max(float(np.max(rows[name][k])) for name in rows for k in frames)
    emax = max(float(np.max(np.abs(errors[name][k]))) for name in errors for k in frames)
    for r, name in enumerate(names):
        is_error = name in errors
        for c, k in enumerate(frames):
            ax = axes[r, c]
            values = (errors if is_error else rows)[name][k]
            image = ax.imshow(values.T, origin="lower", extent=box, interpolation="nearest",
                              cmap="RdBu_r" if is_error else "magma",
                              vmin=-emax if is_error else 0, vmax=emax if is_error else vmax)
            if r == 0:
                ax.set_title("t = %.3f  (k = %d)" % (times[k], k), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
        if r == 0 or r == len(rows):
            span = slice(0, len(rows)) if not is_error else slice(len(rows), len(names))
            bar = fig.colorbar(image, ax=list(axes[span, :].ravel()), shrink=0.9, pad=0.01)
            bar.set_label("signed error" if is_error else "density $\\rho$", fontsize=8)
            bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="JKO steps K")
    parser.add_argument("--threads", type=int, default=2, help="LibTorch threads")
    parser.add_argument("--out", default=os.path.join(J.ROOT, "output", "compare-barenblatt"), help="output folder")
    args = parser.parse_args()

    J.load_plugin()
    os.makedirs(args.out, exist_ok=True)
    density = J.read_density(J.sample_path("barenblatt.vti"))
    learned_flow = J.gradient_flow(density, "porous-medium", "Learned operator", steps=args.steps, threads=args.threads)
    reference_flow = J.gradient_flow(density, "porous-medium", "Reference solver", steps=args.steps,
                                     threads=args.threads)
    learned = J.Rollout(learned_flow, "the learned rollout")
    reference = J.Rollout(reference_flow, "the reference rollout")

    t0, tau = 0.005, J.TIME_STEP  # the sample is the Barenblatt solution at t0
    times = learned.times + t0
    cell = learned.spacing[0] * learned.spacing[1]
    mass = float(learned.table["Mass"][0])
    r2 = node_radius2(learned)
    pde = [with_discrete_mass(barenblatt_pde(t, mass, r2), mass, cell) for t in times]
    chain = [with_discrete_mass(rho, mass, cell) for rho in barenblatt_jko_chain(t0, tau, args.steps, mass, r2)]
    print("sample vs exact profile at t0: relative L1 %.1e" % relative_l1(learned.density[0], pde[0]))

    errors = {}
    for name, rollout in (("learned", learned), ("reference", reference)):
        errors[name] = {
            "jko": [relative_l1(rho, exact) for rho, exact in zip(rollout.density, chain)],
            "pde": [relative_l1(rho, exact) for rho, exact in zip(rollout.density, pde)],
        }
    print("%-10s %12s %18s %16s" % ("solver", "time (s)", "rel L1 vs chain", "rel L1 vs PDE"))
    for name, rollout in (("learned", learned), ("reference", reference)):
        print("%-10s %12.2f %17.2f%% %15.2f%%" % (name, rollout.seconds, 100 * errors[name]["jko"][-1],
                                                  100 * errors[name]["pde"][-1]))
    print("(errors at the last frame, t = %.3f; the JKO scheme itself lags the PDE by a first-order time error)"
          % times[-1])

    box = learned.box()
    outputs = [
        ("learned frames", J.write_frames(learned_flow, os.path.join(args.out, "learned", "frames.pvd"))),
        ("reference frames", J.write_frames(reference_flow, os.path.join(args.out, "reference", "frames.pvd"))),
    ]
    outputs.append(("comparison", plot_comparison(
        {"learned": learned.density, "reference": reference.density, "exact (PDE)": pde},
        {"learned - chain": [a - b for a, b in zip(learned.density, chain)],
         "reference - chain": [a - b for a, b in zip(reference.density, chain)]},
        times, box, os.path.join(args.out, "comparison.png"),
        "Barenblatt flow of $\\rho_t = \\Delta\\rho^2$: learned, reference, exact; errors against the exact JKO chain")))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), constrained_layout=True)
    for name, colour in (("learned", "C0"), ("reference", "C1")):
        ax.plot(times, 100 * np.array(errors[name]["jko"]), "o-", color=colour, markersize=3,
                label="%s vs exact JKO chain" % name)
        ax.plot(times, 100 * np.array(errors[name]["pde"]), "--", color=colour, label="%s vs PDE solution" % name)
    ax.set_xlabel("time t")
    ax.set_ylabel("relative L1 error (%)")
    ax.set_title("Barenblatt flow, 64x64, tau = %g" % tau, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    errors_path = os.path.join(args.out, "errors.png")
    fig.savefig(errors_path, dpi=100)
    plt.close(fig)
    outputs.append(("error curves", errors_path))
    outputs.append(("energy plot", J.plot_energy(
        {"learned": (times, learned.table["Energy"], "o-"), "reference": (times, reference.table["Energy"], "s--"),
         "exact (PDE)": (times, [np.sum(rho**2) * cell for rho in pde], "k:")},
        os.path.join(args.out, "energy.png"), "Barenblatt flow: energy $\\int \\rho^2$")))
    J.report(outputs)


if __name__ == "__main__":
    main()
