#!/usr/bin/env bash
# The convergence table of docs/CONVERGENCE.md: `simulate` on diabetes, wine
# quality, a binary and a 10-class classification CSV, 10 seeds each, without
# and with noise; every run is also appended to convergence-runs.jsonl.
#   scripts/convergence.sh [--seeds N] [--only diabetes] [-- SIMULATE FLAGS]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts/classification-csvs.sh "$work"
cargo build --release -p simulate
python3 scripts/convergence.py --simulate target/release/simulate --data-dir "$work" \
    --out convergence-runs.jsonl "$@"
