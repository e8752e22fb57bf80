#!/usr/bin/env bash
# Writes two classification CSVs into DIR, as a user would bring them:
# breast_cancer.csv (569 people, 30 features, label `malignant`, binary) and
# digits.csv (1,797 people, 64 pixels, label `digit`, 10 classes), from
# scikit-learn's copies of the UCI data, installed in a virtual environment
# inside DIR.
#   scripts/classification-csvs.sh DIR
set -euo pipefail
out=${1:?usage: classification-csvs.sh DIR}
mkdir -p "$out"
python3 -m venv "$out/venv"
"$out/venv/bin/pip" install --quiet scikit-learn
"$out/venv/bin/python" - "$out" <<'PY'
import csv, sys
from sklearn.datasets import load_breast_cancer, load_digits
out = sys.argv[1]
b = load_breast_cancer()
with open(f"{out}/breast_cancer.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([n.replace(" ", "_") for n in b.feature_names] + ["malignant"])
    for x, y in zip(b.data, b.target):
        w.writerow([repr(float(v)) for v in x] + ["true" if y == 0 else "false"])
d = load_digits()
with open(f"{out}/digits.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([f"p{i}" for i in range(64)] + ["digit"])
    for x, y in zip(d.data, d.target):
        w.writerow([int(v) for v in x] + [int(y)])
PY
