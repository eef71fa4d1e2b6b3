#!/usr/bin/python3
"""The Auto solver on the rollouts where its refinements used to fall short
(docs/design.md, "Refining far-off steps from u = 0"): the wild suite's six
families for each bundled operator and the four densities far outside the
training ranges, the same rollouts as scripts/certificate_study.py (64^2,
20 frames, seed 7). Per rollout: the largest error of an Auto frame against
the reference step from the same density, the frames above 1% and how many
of them have the lower objective (the better of two local minimisers),
the refinements restarted from u = 0, and Auto's time over the reference
solver's.

    /usr/bin/python3 scripts/auto_restart_check.py [--jko build/bin/jko] [--out FILE]

writes docs/benchmarks/auto-restart-check.json (about 10 minutes here).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import certificate_study as study  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jko", default=os.path.join(ROOT, "build/bin/jko"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks/auto-restart-check.json"))
    args = parser.parse_args()
    runs = []
    for energy, path in study.OPERATORS.items():
        scale = ["--peak", "0.2"] if energy == "porous-medium" else ["--mass", "1"]
        for family in study.WILD_FAMILIES:
            runs.append(("wild", f"{energy} wild:{family}", path,
                         ["--generate", "wild:" + family, "--seed", str(study.WILD_SEED), "--grid", "64"] + scale))
    records = []
    with tempfile.TemporaryDirectory() as folder:
        for energy, label, density in study.out_of_range_densities(folder):
            runs.append(("out of range", f"{energy} {label}", study.OPERATORS[energy], ["--initial", density]))
        for family, label, path, source in runs:
            result, _ = study.run(os.path.abspath(args.jko), ["rollout", "--operator", path, "--steps", "20",
                                                              "--write-every", "0", "--reference-check", "--solver",
                                                              "auto"] + source)
            errors = result["reference_rel_l1"]
            lower = sum(e > 0.01 and c["objective"] <= j
                        for e, c, j in zip(errors, result["certificate"], result["reference_objective"]))
            record = {"family": family, "run": label, "error_max": max(errors),
                      "frames_above_1_percent": sum(e > 0.01 for e in errors),
                      "frames_above_1_percent_lower_objective": lower,
                      "restarted": result["refinement"]["restarted"],
                      "auto_over_reference_time": float(np.sum(result["step_ms"]) / np.sum(result["reference_ms"]))}
            records.append(record)
            print(json.dumps(record), file=sys.stderr)
    summary = {"frames": 20 * len(records),
               "frames_above_1_percent": sum(r["frames_above_1_percent"] for r in records),
               "lower_objective": sum(r["frames_above_1_percent_lower_objective"] for r in records),
               "error_max": max(r["error_max"] for r in records), "runs": records}
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))


if __name__ == "__main__":
    main()
