#!/usr/bin/python3
"""Does the step certificate tell the truth? (docs/design.md, "Certificates")

For the bundled operators (or any in --operators), per learned frame: the
certificate (`jko ... --json`, key "certificate") and the true error of the
frame's step, the relative L1 distance to the reference solver's step from
the same density (`--reference-check`, key "reference_rel_l1"), on

  * the exact cases of `jko eval` that have a bundled operator, 64^2 and 128^2;
  * held-out rollouts from generated densities (`jko rollout --generate`,
    seeds never used in training), 64^2;
  * rollouts from the wild suite's families (`--generate wild:FAMILY`:
    photographs, terrain, scans, cells, strokes, stripes; generators that
    training never used), 64^2, at a peak of 0.2 (porous medium) or a
    mass of 1 (the others), inside the wild suite's own ranges;
  * rollouts from densities far outside the training ranges.

Then the Spearman correlation of each candidate certificate with the error,
the threshold interval that flags every frame above 3% error while flagging
at most a quarter of the frames below 1%, the Auto solver at the chosen
threshold on the same rollouts (its frames' error, its cost against the
reference solver's), and the scatter plot.

    /usr/bin/python3 scripts/certificate_study.py [--jko build/bin/jko] [--quick]

writes docs/benchmarks/certificate-study.json and
docs/images/certificate-vs-error.png. Runs with --threads 1, about 10 min
on two cores (--quick: a few runs only, for a smoke test).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPERATORS = {
    "porous-medium": "data/operators/porous-medium.jko",
    "fokker-planck": "data/operators/fokker-planck.jko",
    "aggregation-diffusion": "data/operators/aggregation-diffusion.jko",
    "aggregation": "data/operators/aggregation.jko",
}
# Exact cases of `jko eval` and the bundled operator of their energy.
EXACT_CASES = [
    ("ou-step", "fokker-planck", 1),
    ("ou-steady", "fokker-planck", 20),
    ("interaction-step", "aggregation-diffusion", 1),
    ("barenblatt-step", "porous-medium", 1),
    ("barenblatt-flow", "porous-medium", 20),
]
HELD_OUT_KINDS = ["gaussian-mixture", "smooth-field", "ring", "bumps"]
HELD_OUT_SEEDS = [1001, 1002]
WILD_FAMILIES = ["photo", "terrain", "scan", "cells", "strokes", "stripes"]
WILD_SEED = 7
# Candidate certificates (keys of StepCertificate::toJson).
CANDIDATES = ["l1_error_estimate", "relative_gap", "w2_relative", "displacement_error_cells", "gap_estimate"]
PRIMARY = "l1_error_estimate"
BAD, GOOD = 0.03, 0.01


def run(jko, args):
    cmd = [jko] + args + ["--json", "--threads", "1"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("failed: " + " ".join(cmd) + "\n" + out.stderr)
    return json.loads(out.stdout), out.stderr


def auto_rollout(jko, family, label, path, source, threshold):
    """The Auto solver's 20 frames from `source` against the reference step
    from each frame's input: the largest error, the frames above 1% (and how
    many of those have the lower objective: the better of two local
    minimisers, not a miss), refinements, restarts from u = 0, times."""
    common = ["rollout", "--operator", path, "--steps", "20", "--write-every", "0", "--reference-check",
              "--solver", "auto", "--threshold", repr(threshold)]
    result, line = run(jko, common + source)
    errors = result["reference_rel_l1"]
    lower = [e > 0.01 and c["objective"] <= j
             for e, c, j in zip(errors, result["certificate"], result["reference_objective"])]
    return {"family": family, "run": label, "error_max": max(errors), "frames": len(errors),
            "frames_above_1_percent": sum(x > 0.01 for x in errors),
            "frames_above_1_percent_lower_objective": sum(lower),
            "refined": result["refinement"]["refined"], "iterations": result["refinement"]["iterations"],
            "restarted": result["refinement"]["restarted"],
            "auto_ms": float(np.sum(result["step_ms"])), "reference_ms": float(np.sum(result["reference_ms"])),
            "summary": line.strip().splitlines()[-1]}


def wild_rollouts(operators, families=WILD_FAMILIES):
    """(family, label, operator file, jko arguments) of the wild suite's
    rollouts: one seed, 64^2, peak 0.2 (porous medium) or mass 1."""
    rollouts = []
    for energy, path in operators.items():
        scale = ["--peak", "0.2"] if energy == "porous-medium" else ["--mass", "1"]
        for family in families:
            rollouts.append(("wild", f"{energy} wild:{family} seed {WILD_SEED}", path,
                             ["--generate", "wild:" + family, "--seed", str(WILD_SEED), "--grid", "64"] + scale))
    return rollouts


def frames_of(result, family, label):
    """Per-frame records of one jko result."""
    records = []
    for k, (c, e) in enumerate(zip(result["certificate"], result["reference_rel_l1"])):
        r = {"family": family, "run": label, "frame": k + 1, "error": e, "descent": c["descent"]}
        for key in CANDIDATES + ["gradient_measure", "step_l1"]:
            r[key] = c[key] if c[key] is not None else float("inf")
        records.append(r)
    return records


def smooth_density(n, mass, blobs, width, seed, floor=0.05):
    """A sum of Gaussian blobs plus a floor, of the given mass on the unit box."""
    rng = np.random.default_rng(seed)
    x = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    f = np.full((n, n), floor)
    for _ in range(blobs):
        cx, cy = rng.uniform(0.25, 0.75, 2)
        s = rng.uniform(*width)
        f += rng.uniform(0.3, 1.0) * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s * s))
    return f * (mass / (f.sum() / n / n))


def out_of_range_densities(folder):
    """Densities far outside the training ranges, one per operator (64^2)."""
    cases = [
        # Porous medium conditioned on D in [0.1, 10], trained on masses
        # 0.0009-0.84 and peaks 0.03-1: it steps c rho with c M = 0.84 and
        # D c^-(m-1), so mass 10 is served at D = 0.5 (D 6 at its scale),
        # with a peak far above the trained ones (D 1 would be D 12: refused).
        ("porous-medium", "mass 10, D 0.5 (trained masses 0.0009-0.84)", smooth_density(64, 10.0, 6, (0.05, 0.15), 3),
         ["--D", "0.5"]),
        # Aggregation-diffusion trained on masses 0.5-1.5.
        ("aggregation-diffusion", "mass 4 (trained 0.5-1.5)", smooth_density(64, 4.0, 3, (0.06, 0.1), 5, 0.0), []),
        # Fokker-Planck trained on peaks 1.1-54: narrow blobs, peak ~600.
        ("fokker-planck", "peak ~600 (trained 1.1-54)", smooth_density(64, 1.0, 3, (0.015, 0.02), 7, 0.0), []),
        # Aggregation trained on masses 0.5-1.5.
        ("aggregation", "mass 3 (trained 0.5-1.5)", smooth_density(64, 3.0, 4, (0.05, 0.1), 9, 0.0), []),
    ]
    out = []
    for energy, label, rho, options in cases:
        path = os.path.join(folder, energy + ".npy")
        np.save(path, rho)
        out.append((energy, label, path, options))
    return out


def spearman(x, y):
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        v_sorted = np.asarray(v)[order]
        i = 0
        while i < len(v):  # average the ranks of ties
            j = i
            while j + 1 < len(v) and v_sorted[j + 1] == v_sorted[i]:
                j += 1
            r[order[i : j + 1]] = 0.5 * (i + j)
            i = j + 1
        return r

    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    return float(np.corrcoef(rx, ry)[0, 1])


def score(records, key):
    """The certificate as the Auto solver sees it: a failed descent guard counts as +inf."""
    return np.array([r[key] if r["descent"] else np.inf for r in records], float)


def threshold_interval(records, key):
    """Thresholds t (flag: score > t) that flag every frame above 3% error and
    at most a quarter of those below 1%: [q75 of the good frames, min of the bad)."""
    s = score(records, key)
    e = np.array([r["error"] for r in records])
    bad, good = s[e > BAD], s[e < GOOD]
    low = float(np.quantile(good, 0.75)) if len(good) else 0.0
    high = float(np.min(bad)) if len(bad) else float("inf")
    return low, high


def statistics(records, threshold):
    """Spearman correlations of each candidate with the error (all frames, and
    the frames whose descent guard holds), the feasible threshold interval,
    and what `threshold` flags."""
    errors = [r["error"] for r in records]
    summary = {"frames": len(records), "bad_frames": int(sum(e > BAD for e in errors)),
               "good_frames": int(sum(e < GOOD for e in errors)),
               "descent_failures": int(sum(not r["descent"] for r in records)), "candidates": {}}
    holds = [r for r in records if r["descent"]]
    for key in CANDIDATES:
        low, high = threshold_interval(records, key)
        per_family = {f: spearman(score([r for r in records if r["family"] == f], key),
                                  [r["error"] for r in records if r["family"] == f])
                      for f in sorted({r["family"] for r in records})}
        summary["candidates"][key] = {"spearman": spearman(score(records, key), errors),
                                      "spearman_per_family": per_family,
                                      "spearman_descent_holds": spearman(score(holds, key),
                                                                         [r["error"] for r in holds]),
                                      "threshold_interval": [low, high], "feasible": low < high}
    s, e = score(records, PRIMARY), np.array(errors)
    ok = np.isfinite(s) & (s > 0)
    summary["error_over_certificate_quantiles"] = {
        q: float(np.quantile(e[ok] / s[ok], q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95, 1.0)}
    summary["threshold"] = threshold
    summary["flagged_bad"] = [int(np.sum((s > threshold) & (e > BAD))), int(np.sum(e > BAD))]
    summary["flagged_good"] = [int(np.sum((s > threshold) & (e < GOOD))), int(np.sum(e < GOOD))]
    summary["flagged_all"] = [int(np.sum(s > threshold)), len(records)]
    summary["flagged_by_descent_guard"] = int(np.sum(~np.array([r["descent"] for r in records])))
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jko", default=os.path.join(ROOT, "build/bin/jko"))
    parser.add_argument("--quick", action="store_true", help="a few runs only (smoke test)")
    parser.add_argument("--threshold", type=float, default=0.004,
                        help="the Auto threshold to measure (default: the Auto solver's, 0.004)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks/certificate-study.json"))
    parser.add_argument("--figure", default=os.path.join(ROOT, "docs/images/certificate-vs-error.png"))
    parser.add_argument("--learned-from", metavar="JSON",
                        help="take the learned frames from an earlier run (a binary whose learned solver is the "
                             "same) and run the Auto solver's part only")
    parser.add_argument("--analyse", metavar="JSON",
                        help="only recompute the statistics and the figure from the frames of an earlier run")
    args = parser.parse_args()
    if args.analyse:
        with open(args.analyse) as f:
            old = json.load(f)
        records = [{k: (float("inf") if v is None else v) for k, v in r.items()} for r in old["frames"]]
        summary = statistics(records, old["summary"].get("threshold", args.threshold))
        for key in ("auto", "auto_error_max", "auto_frames_above_1_percent", "auto_frames"):
            if key in old["summary"]:
                summary[key] = old["summary"][key]
        save(args.out, summary, old["runs"], records)
        plot(records, summary["threshold"], args.figure)
        print(json.dumps(finite(summary), indent=1))
        return
    jko = os.path.abspath(args.jko)
    records, runs = [], []
    earlier = None
    if args.learned_from:
        with open(args.learned_from) as f:
            earlier = json.load(f)
        records = [{k: (float("inf") if v is None else v) for k, v in r.items()} for r in earlier["frames"]]
        runs = earlier["runs"]
    exact = EXACT_CASES[:2] if args.quick else EXACT_CASES
    grids = [64] if args.quick else [64, 128]
    kinds = HELD_OUT_KINDS[:1] if args.quick else HELD_OUT_KINDS
    seeds = HELD_OUT_SEEDS[:1] if args.quick else HELD_OUT_SEEDS
    operators = dict(list(OPERATORS.items())[:1]) if args.quick else OPERATORS

    # 1. Learned frames: certificate and true error.
    for case, energy, steps in ([] if earlier else exact):
        for n in grids:
            label = f"{case} {n}^2"
            result, _ = run(jko, ["eval", "--case", case, "--solver", "learned", "--operator", OPERATORS[energy],
                                  "--grid", str(n), "--steps", str(steps), "--reference-check"])
            records += frames_of(result, "exact cases", label)
            print(label, "done", file=sys.stderr)
    rollouts = []
    for energy, path in operators.items():
        for kind in kinds:
            for seed in seeds:
                rollouts.append(("held-out", f"{energy} {kind} seed {seed}", path,
                                 ["--generate", kind, "--seed", str(seed), "--grid", "64"]))
    rollouts += wild_rollouts(operators, WILD_FAMILIES[:1] if args.quick else WILD_FAMILIES)
    with tempfile.TemporaryDirectory() as folder:
        for energy, label, density, options in out_of_range_densities(folder):
            if energy in operators:
                rollouts.append(("out of range", f"{energy} {label}", OPERATORS[energy],
                                 ["--initial", density] + options))
        for family, label, path, source in ([] if earlier else rollouts):
            common = ["rollout", "--operator", path, "--steps", "20", "--write-every", "0", "--reference-check"]
            result, _ = run(jko, common + source + ["--solver", "learned"])
            records += frames_of(result, family, label)
            runs.append({"family": family, "run": label, "command": common + source})
            print(label, "done", file=sys.stderr)

        # 2. Correlations and the threshold.
        summary = statistics(records, args.threshold)
        threshold = summary["threshold"]
        save(args.out, summary, runs, records)

        # 3. The Auto solver at that threshold on the same rollouts: its
        # frames' error against the reference step, and its cost.
        auto = []
        for family, label, path, source in ([] if args.quick else rollouts):
            auto.append(auto_rollout(jko, family, label, path, source, threshold))
            print(label, "auto done", file=sys.stderr)
    summary["auto"] = auto
    if auto:
        summary["auto_error_max"] = max(a["error_max"] for a in auto)
        summary["auto_frames_above_1_percent"] = sum(a["frames_above_1_percent"] for a in auto)
        summary["auto_frames_above_1_percent_lower_objective"] = sum(
            a["frames_above_1_percent_lower_objective"] for a in auto)
        summary["auto_frames"] = sum(a["frames"] for a in auto)
    save(args.out, summary, runs, records)
    plot(records, threshold, args.figure)
    print(json.dumps(summary, indent=1, default=str))


def finite(value):
    """The value with non-finite numbers as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save(path, summary, runs, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(finite({"summary": summary, "runs": runs, "frames": records}), f, indent=1)


def plot(records, threshold, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    styles = {"exact cases": ("tab:blue", "o"), "held-out": ("tab:green", "."), "wild": ("tab:purple", "s"),
              "out of range": ("tab:red", "^")}
    for ax, key, title, label in [
            (axes[0], PRIMARY, "certificate: L1 change of the metric Newton step",
             "certificate (estimated relative L1 error of the frame)"),
            (axes[1], "relative_gap", "relative gap: estimated share of the step's decrease missing",
             "g . H0 g / (2 mu) / (J(0) - J(u) + g . H0 g / (2 mu))")]:
        finite = [score([r], key)[0] for r in records if np.isfinite(score([r], key)[0])]
        top = max(finite) * 3 if finite else 1.0
        for family, (colour, marker) in styles.items():
            rs = [r for r in records if r["family"] == family]
            if not rs:
                continue
            s = score(rs, key)
            e = np.array([r["error"] for r in rs])
            ok = np.isfinite(s)
            ax.scatter(s[ok], e[ok], s=14, c=colour, marker=marker, label=family, alpha=0.7)
            if np.any(~ok):
                ax.scatter(np.full(np.sum(~ok), top), e[~ok], s=24, c=colour, marker="x",
                           label=family + ": descent guard failed")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(BAD, color="k", lw=0.8, ls="--")
        ax.axhline(GOOD, color="k", lw=0.8, ls=":")
        if key == PRIMARY:
            ax.axvline(threshold, color="tab:purple", lw=1.2, label=f"Auto threshold {threshold:.3g}")
        rho = spearman(score(records, key), [r["error"] for r in records])
        ax.set_title(f"{title}\nSpearman {rho:.2f} (x at the right: descent guard failed)", fontsize=10)
        ax.set_xlabel(label)
        ax.set_ylabel("relative L1 error of the step against the reference solver")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
