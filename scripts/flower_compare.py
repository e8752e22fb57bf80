#!/usr/bin/env python3
"""The aggregation rules side by side with Flower's aggregate.py on the same arrays.

Run through scripts/flower-compare.sh, which creates the virtual environment
(flwr==1.41.0) and builds the Rust side (the rules_timing example of
c2ssi-aggregator). For each batch size, random float32 updates are drawn once
and written once to a file; then, rule by rule, Flower's function on the
loaded arrays and our binary on the same file are timed alternately, several
times, and the median times, their ratio (Flower / ours) and the agreement of
the results are printed as a Markdown table. Our binary times the rule alone,
not the loading of the file; Flower's function is timed on arrays already in
memory. A first call of each side that takes less than a second is a warm-up
and is not counted.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from flwr.server.strategy import aggregate as flower

TRIM = 0.2
ITERATIONS = 10


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def write_batch(path, x):
    with open(path, "wb") as f:
        np.array(x.shape, dtype="<u8").tofile(f)
        np.ascontiguousarray(x, dtype="<f4").tofile(f)


def ours(binary, batch, rule, reps, out):
    """Runs our binary once; its median time over `reps` runs, and the result."""
    run = subprocess.run(
        [binary, batch, rule, "--reps", str(reps), "--out", out],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(run.stdout)
    return report["median_seconds"], np.fromfile(out, dtype="<f4")


def flower_call(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def compare(name, flower_fn, rule, x, binary, batch, reps, inner, out):
    """Alternately times Flower and ours; medians and the results."""
    flower_times, our_times = [], []
    # Warm-up (counted when it is long anyway).
    first, flower_result = flower_call(flower_fn) if flower_fn else (None, None)
    if first is not None and first >= 1.0:
        flower_times.append(first)
    for _ in range(reps):
        if flower_fn and len(flower_times) < reps:
            t, flower_result = flower_call(flower_fn)
            flower_times.append(t)
        t, our_result = ours(binary, batch, rule, inner, out)
        our_times.append(t)
        log(f"  {name}: flower {flower_times[-1] if flower_times else '-'} s, ours {t:.6f} s")
    flower_median = statistics.median(flower_times) if flower_times else None
    return flower_median, statistics.median(our_times), flower_result, our_result


def agreement(name, flower_result, our_result, x):
    if flower_result is None:
        return ""
    theirs = np.asarray(flower_result[0], dtype=np.float32).ravel()
    diff = float(np.max(np.abs(theirs.astype(np.float64) - our_result.astype(np.float64))))
    if name == "Krum":
        matches = np.flatnonzero(np.all(x == our_result, axis=1))
        same = np.array_equal(theirs, our_result)
        return f"{'same' if same else 'DIFFERENT'} update (#{matches[0] if len(matches) else '?'})"
    return f"max abs diff {diff:.1e}"


def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="our rules_timing binary")
    parser.add_argument(
        "--cases",
        default="100x1000,100x100000,100x1000000,1000x1000,1000x10000",
        help="comma-separated NxD batch sizes",
    )
    parser.add_argument("--reps", type=int, default=3, help="timed calls per side and rule")
    parser.add_argument("--inner", type=int, default=3, help="runs inside each call of ours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", default="mean,median,trimmed,krum,multikrum,cc,ccm")
    parser.add_argument("--dir", default=None, help="where to write the batches (a temporary directory)")
    args = parser.parse_args()

    wanted = set(args.rules.split(","))
    rng = np.random.default_rng(args.seed)
    rows = []
    print(
        f"flwr {importlib.metadata.version('flwr')}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{args.reps} timed calls per side, ours {args.inner} runs per call (median)"
    )
    print()
    print("| n | d | rule | Flower | ours | Flower / ours | results |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        batch = os.path.join(scratch, "batch.bin")
        out = os.path.join(scratch, "result.bin")
        for case in args.cases.split(","):
            n, d = (int(v) for v in case.split("x"))
            log(f"n = {n}, d = {d}")
            x = rng.standard_normal((n, d), dtype=np.float32)
            write_batch(batch, x)
            results = [([x[i]], 1) for i in range(n)]
            f = (3 * n) // 10  # Krum's assumed attackers, told to both sides
            radius = float(np.sqrt(d))
            rules = [
                ("mean", "mean", lambda: flower.aggregate(results), "mean"),
                ("median", "median", lambda: flower.aggregate_median(results), "median"),
                (
                    "trimmed",
                    f"trimmed mean ({TRIM:g})",
                    lambda: flower.aggregate_trimmed_avg(results, TRIM),
                    f"trimmed-mean:{TRIM}",
                ),
                ("krum", "Krum", lambda: flower.aggregate_krum(results, f, 0), f"krum:{f}"),
                (
                    "multikrum",
                    "Multi-Krum",
                    lambda: flower.aggregate_krum(results, f, n - f),
                    f"multi-krum:{f}",
                ),
                (
                    "cc",
                    f"centered clipping ({ITERATIONS} it.)",
                    None,
                    f"centered-clipping:{radius}:{ITERATIONS}",
                ),
                (
                    "ccm",
                    "centered clipping with momentum (one step)",
                    None,
                    f"centered-clipping-momentum:{radius}:0.9",
                ),
            ]
            times = {}
            for key, name, flower_fn, rule in rules:
                if key not in wanted:
                    continue
                theirs, mine, flower_result, our_result = compare(
                    name, flower_fn, rule, x, args.bin, batch, args.reps, args.inner, out
                )
                times[key] = (theirs, mine)
                if theirs is not None:
                    ratio = f"{theirs / mine:.1f}x"
                    check = agreement(name, flower_result, our_result, x)
                else:
                    parts = []
                    if "mean" in times:
                        parts.append(f"{mine / times['mean'][1]:.1f}x our mean")
                        parts.append(f"{mine / times['mean'][0]:.2f}x Flower's mean")
                    ratio, check = "-", "; ".join(parts)
                row = f"| {n:,} | {d:,} | {name} | {fmt_time(theirs)} | {fmt_time(mine)} | {ratio} | {check} |"
                print(row, flush=True)
                rows.append(row)
            del results, x
    return 0


if __name__ == "__main__":
    sys.exit(main())
