#!/usr/bin/env bash
# Measures every compile bomb (and the honest algorithms) against the
# sandbox's compile budget, one process per bomb, and prints a Markdown table:
# what it is, its size, how long until it was refused or compiled, the compile
# child's peak resident memory, and the outcome. See docs/ROBUSTNESS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p c2ssi-sandbox --example compile_bombs
bin=target/debug/examples/compile_bombs
echo "| bomb | what | size | time | child peak RSS | outcome |"
echo "|---|---|---|---|---|---|"
"$bin" | awk '{print $1}' | while read -r name; do
    "$bin" "$name" 2>/dev/null
done
