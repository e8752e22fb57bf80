#!/usr/bin/env python3
"""Convergence over seeds: runs `simulate --json` for each dataset, seed and
privacy setting, and prints the mean and spread of the federated model's gap
to the centralized fit, and how much the held-out curve still moves over the
last 20 rounds. Standard library only; `scripts/convergence.sh` prepares the
classification CSVs and calls it.

    python3 scripts/convergence.py --simulate target/release/simulate \
        --data-dir DIR --seeds 10 --out results.jsonl [--only diabetes] [-- EXTRA FLAGS]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name, simulate flags, whether the metric is an accuracy (gap in points)
DATASETS = [
    ("diabetes", ["--data", "diabetes"], False),
    ("winequality", ["--data", "winequality"], False),
    (
        "breast-cancer (binary, logistic)",
        ["--data", "{dir}/breast_cancer.csv", "--label", "malignant",
         "--algorithm", "logistic-regression"],
        True,
    ),
    (
        "digits (10 classes, softmax)",
        ["--data", "{dir}/digits.csv", "--label", "digit",
         "--algorithm", "softmax-regression"],
        True,
    ),
]


def run(simulate, flags):
    started = time.time()
    out = subprocess.run([simulate, *flags, "--json", "--no-chart"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"simulate {' '.join(flags)} failed:\n{out.stderr}")
    text = out.stdout
    summary = json.loads(text[text.index("{"):text.rindex("}") + 1])
    summary["wall_seconds"] = time.time() - started
    return summary


def gap(summary, accuracy):
    """Federated against centralized: relative (regression) or in points."""
    fed, cen = summary["federated"], summary["centralized"]
    return 100.0 * (fed - cen) if accuracy else 100.0 * (fed / cen - 1.0)


def late_spread(summary, accuracy):
    """Max minus min of the held-out metric over the last 20 rounds, in the
    same unit as the gap (points, or percent of the centralized value)."""
    tail = [p["held_out"] for p in summary["points"][-20:]]
    spread = max(tail) - min(tail)
    return 100.0 * spread if accuracy else 100.0 * spread / summary["centralized"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", required=True, help="JSON lines, one per run (appended)")
    ap.add_argument("--only", action="append", default=[],
                    help="datasets whose name starts with this (repeatable)")
    ap.add_argument("--dp", action="append", default=[], choices=["off", "on"])
    ap.add_argument("extra", nargs="*", help="flags given to every run")
    args = ap.parse_args()
    dps = args.dp or ["off", "on"]
    rows = []
    with open(args.out, "a") as log:
        for name, flags, accuracy in DATASETS:
            if args.only and not any(name.startswith(o) for o in args.only):
                continue
            flags = [f.replace("{dir}", args.data_dir) for f in flags]
            for dp in dps:
                gaps, spreads, finals, centr = [], [], [], []
                for seed in range(1, args.seeds + 1):
                    s = run(args.simulate,
                            [*flags, "--dp", dp, "--seed", str(seed), *args.extra])
                    g, sp = gap(s, accuracy), late_spread(s, accuracy)
                    gaps.append(g)
                    spreads.append(sp)
                    finals.append(s["federated"])
                    centr.append(s["centralized"])
                    record = {"dataset": name, "dp": dp, "seed": seed, "extra": args.extra,
                              "federated": s["federated"], "centralized": s["centralized"],
                              "gap": g, "late_spread": sp, "epsilon": s["epsilon"],
                              "seconds": s["wall_seconds"]}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    print(f"{name} dp={dp} seed={seed}: federated {s['federated']:.4f} "
                          f"centralized {s['centralized']:.4f} gap {g:+.2f} "
                          f"late spread {sp:.2f} ({s['wall_seconds']:.0f} s)",
                          file=sys.stderr)
                rows.append((name, dp, accuracy, gaps, spreads, finals, centr))
    unit = lambda acc: "points" if acc else "%"
    print("| dataset | noise | federated (mean) | centralized (mean) | gap, mean ± sd | gap range "
          "| last-20 spread, mean (max) |")
    print("|---|---|---|---|---|---|---|")
    for name, dp, accuracy, gaps, spreads, finals, centr in rows:
        sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        print(f"| {name} | {dp} | {statistics.mean(finals):.4f} | {statistics.mean(centr):.4f} "
              f"| {statistics.mean(gaps):+.2f} ± {sd:.2f} {unit(accuracy)} "
              f"| {min(gaps):+.2f} to {max(gaps):+.2f} "
              f"| {statistics.mean(spreads):.2f} ({max(spreads):.2f}) {unit(accuracy)} |")


if __name__ == "__main__":
    main()
