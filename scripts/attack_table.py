#!/usr/bin/env python3
"""The attack table: every aggregation rule against every attack, on several
datasets, at 20% and 30% attackers, over several seeds. Each cell is the
held-out metric's mean over the seeds, as a ratio to the same rule's clean
of the plain mean (regression: MSE ratio, 1.00 is as good as the clean mean;
classification: accuracy ratio). The clean column shows each rule's own
clean run on the same scale. Robust rules cannot be wrapped in noise, so the runs are without
noise (`--dp off`, research only). Standard library only.

    python3 scripts/attack_table.py --simulate target/release/simulate \
        --data-dir DIR [--seeds 3] [--fractions 0.2 0.3] [--only diabetes] \
        [--rules mean median ...] [--attacks sign-flip alie ...] --out runs.jsonl

DIR holds breast_cancer.csv (`scripts/classification-csvs.sh` writes it;
`scripts/attack-table.sh` does all of it).
"""

import argparse
import json
import statistics
import subprocess
import sys

DATASETS = {
    "diabetes": ["--data", "diabetes"],
    "winequality": ["--data", "winequality"],
    "breast-cancer": ["--data", "{dir}/breast_cancer.csv", "--label", "malignant",
                      "--algorithm", "logistic-regression"],
}
RULES = ["mean", "median", "trimmed-mean:0.3", "multi-krum", "centered-clipping:0.05:30",
         "bucketing:2:median", "bucketing:2:centered-clipping:0.05:30",
         "bucketing:2:multi-krum", "centered-clipping-momentum:0.005:0.9",
         "bucketing:2:centered-clipping-momentum:0.005:0.9"]
# A rule that keeps the job's momentum takes none from the server optimizer;
# its momentum (1 - beta) scaled, the server rate that matches FedAvgM 0.9 at
# rate 1 (the other rules' defaults) is 1 / (1 - beta) = 10.
MOMENTUM_RULE_FLAGS = ["--momentum", "0", "--server-lr", "10"]
ATTACKS = ["sign-flip", "scale", "noise", "alie", "ipm", "min-max", "min-sum"]


def held_out(simulate, flags, log, meta):
    out = subprocess.run([simulate, *flags, "--dp", "off", "--json", "--no-chart"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"simulate {' '.join(flags)} failed:\n{out.stderr}")
    s = json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1])
    log.write(json.dumps({**meta, "federated": s["federated"],
                          "centralized": s["centralized"], "metric": s["metric"]}) + "\n")
    log.flush()
    print(f"{meta}: {s['metric']} {s['federated']:.4f}", file=sys.stderr)
    return s["federated"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", required=True)
    ap.add_argument("--data-dir", default=".")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.3])
    ap.add_argument("--only", nargs="+", default=list(DATASETS))
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--attacks", nargs="+", default=ATTACKS)
    ap.add_argument("--out", required=True, help="JSON lines, one per run (appended)")
    ap.add_argument("extra", nargs="*", help="flags given to every run")
    args = ap.parse_args()
    seeds = range(1, args.seeds + 1)
    with open(args.out, "a") as log:
        for name in args.only:
            base = [f.replace("{dir}", args.data_dir) for f in DATASETS[name]] + args.extra
            print(f"\n### {name}\n")
            print("Mean over seeds " + ", ".join(map(str, seeds)) +
                  " of the held-out metric, as a ratio to the clean plain mean.\n")
            header = "| rule | clean |" + "".join(
                f" {int(100 * f)}% {a} |" for f in args.fractions for a in args.attacks)
            print(header)
            print("|---" * (2 + len(args.fractions) * len(args.attacks)) + "|")
            reference = None
            for rule in args.rules:
                own = MOMENTUM_RULE_FLAGS if "momentum" in rule else []

                def mean_over_seeds(extra, attack, fraction):
                    return statistics.mean(
                        held_out(args.simulate,
                                 [*base, "--filter", rule, "--seed", str(s), *own, *extra],
                                 log,
                                 {"dataset": name, "rule": rule, "attack": attack,
                                  "fraction": fraction, "seed": s})
                        for s in seeds)
                clean = mean_over_seeds([], None, 0.0)
                if reference is None:
                    reference = clean
                    print(f"(clean `{rule}`: {clean:.4g})\n", file=sys.stderr)
                cells = [f"| `{rule}` | {clean / reference:.2f}x |"]
                for f in args.fractions:
                    for a in args.attacks:
                        v = mean_over_seeds(["--attackers", str(f), "--attack", a], a, f)
                        cells.append(f" {v / reference:.2f}x |")
                print("".join(cells), flush=True)


if __name__ == "__main__":
    main()
