#!/usr/bin/env bash
# The aggregation rules against Flower 1.41's aggregate.py, side by side on the
# same arrays, as the Markdown table of docs/PERFORMANCE.md: creates a virtual
# environment with flwr 1.41.0 (target/flower-venv, or $VENV), builds the
# timing example of c2ssi-aggregator in release mode and runs
# scripts/flower_compare.py, which prints the table on stdout and its progress
# on stderr. Extra arguments go to the driver, for example
# `--cases 100x1000,1000x1000 --reps 5`. The largest batch (100 x 1,000,000)
# needs about 2 GB of memory; all cases take about ten minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-target/flower-venv}
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("flwr") == "1.41.0"' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet flwr==1.41.0 >&2
fi
cargo build --release -p c2ssi-aggregator --example rules_timing >&2
exec "$venv/bin/python" scripts/flower_compare.py --bin target/release/examples/rules_timing "$@"
