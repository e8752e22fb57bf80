#!/usr/bin/env bash
# The wallet on its own: build an algorithm, create an encrypted wallet with
# sample data (the diabetes data of linfa-datasets, one row per person), and
# run the algorithm on it locally to see exactly what would leave the wallet.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
cargo build --release -p wallet-host --bin wallet
cargo build --release --target wasm32-wasip2 -p linear-regression

demo=${DEMO_DIR:-target/wallet-demo}
rm -rf "$demo"
mkdir -p "$demo"
# An identity file unlocks the wallet without a prompt; leave out --identity
# to be asked for a passphrase instead.
wallet() { target/release/wallet --wallet "$demo/wallet" --identity "$demo/identity.txt" "$@"; }

wallet init
wallet import --table diabetes --schema examples/diabetes.schema.json examples/diabetes.csv
wallet show diabetes --limit 5
wallet run target/wasm32-wasip2/release/linear_regression.wasm \
    --table diabetes --params label=progression epochs=5
echo
echo "wallet files (all records encrypted):"
ls -l "$demo/wallet"
