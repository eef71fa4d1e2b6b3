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
import sys
import tempfile


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import certificate_study as study  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jko", default=os.path.join(ROOT, "build/bin/jko"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks/auto-restart-check.json"))
    args = parser.parse_args()
    runs = study.wild_rollouts(study.OPERATORS)
    records = []
    with tempfile.TemporaryDirectory() as folder:
        for energy, label, density, options in study.out_of_range_densities(folder):
            runs.append(("out of range", f"{energy} {label}", study.OPERATORS[energy],
                         ["--initial", density] + options))
        for family, label, path, source in runs:
            auto = study.auto_rollout(os.path.abspath(args.jko), family, label, path, source, 0.01)
            record = {key: auto[key] for key in ("family", "run", "error_max", "frames_above_1_percent",
                                                 "frames_above_1_percent_lower_objective", "restarted")}
            record["auto_over_reference_time"] = auto["auto_ms"] / auto["reference_ms"]
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
