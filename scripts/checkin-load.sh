#!/usr/bin/env bash
# The check-in load benchmark (broker/examples/checkin_load.rs), on SQLite
# and on a scratch PostgreSQL server, in one run: 1,000 simulated wallets,
# each on its own connection, check in every 0.5 s for 30 s against a real
# broker built in release mode. Extra arguments go to every run (for example
# `--wallets 2000` or `--interval-ms 250`). See docs/ROBUSTNESS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p c2ssi-broker --bins --examples -p c2ssi-aggregator -p collective
log=$(mktemp)
for store in sqlite postgres; do
    if ! target/release/examples/checkin_load --store "$store" "$@" 2>"$log"; then
        cat "$log" >&2
        exit 1
    fi
done
rm -f "$log"
