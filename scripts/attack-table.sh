#!/usr/bin/env bash
# The attack table of docs/ROBUSTNESS.md: every rule against every attack on
# diabetes, wine quality and a binary classification CSV, at 20% and 30%
# attackers, over several seeds; every run is also appended to
# attack-runs.jsonl.
#   scripts/attack-table.sh [--seeds N] [--only diabetes] [--rules ...] [--attacks ...]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts/classification-csvs.sh "$work"
cargo build --release -p simulate
python3 scripts/attack_table.py --simulate target/release/simulate --data-dir "$work" \
    --out attack-runs.jsonl "$@"
