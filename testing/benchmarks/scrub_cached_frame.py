"""Re-showing a cached frame of JKO Gradient Flow in pvpython: the median time
of UpdatePipeline(t) on frames that are already computed, at 256^2.

    pvpython testing/benchmarks/scrub_cached_frame.py PLUGIN OPERATOR [OUT.json]

PLUGIN is NeuralJKOFlow.so, OPERATOR a 2D porous-medium operator file. The
frames are computed once (learned operator); every later request only copies
a cached frame into the output.
"""
import json
import statistics
import sys
import time

from paraview import simple


def main():
    plugin, operator = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else None
    simple.LoadPlugin(plugin, remote=False, ns=vars(simple))
    density = simple.JKOInitialDensity(GridSize=[256, 256, 1])
    flow = simple.JKOGradientFlow(Input=density)
    flow.Solver = "Learned operator"
    flow.OperatorFile = operator
    flow.NumberOfSteps = 10
    start = time.perf_counter()
    flow.UpdatePipeline(0.0)
    first = time.perf_counter() - start
    times = list(flow.TimestepValues)
    samples = []
    for repeat in range(5):
        for t in times:
            start = time.perf_counter()
            flow.UpdatePipeline(t)
            samples.append(1000 * (time.perf_counter() - start))
    result = {
        "grid": 256,
        "frames": len(times),
        "first_update_s": first,
        "cached_frame_ms_median": statistics.median(samples),
        "cached_frame_ms_max": max(samples),
        "requests": len(samples),
    }
    print(json.dumps(result))
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
