#!/usr/bin/env bash
# The privacy audit of every algorithm and attacking component, under the
# example manifest's terms and under a hundredth of its noise (epsilon 200
# per job), as the Markdown tables of docs/PRIVACY.md. Takes a minute after
# the build.
#   scripts/audit-table.sh > audit.md
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p collective -p test-guests >&2
bin=target/release/collective
guests=target/release/wasm-guests/wasm32-wasip2/release
manifest=examples/diabetes-collective.json
low=$(mktemp --suffix=.json)
trap 'rm -f "$low"' EXIT
python3 - "$manifest" "$low" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["privacy"]["epsilon"] = 200.0
json.dump(m, open(sys.argv[2], "w"), indent=2)
PY

table() {
    echo "| component | flagged | records at the clip norm | median norm before clipping | empirical epsilon per release | accountant's epsilon per release |"
    echo "|---|---|---|---|---|---|"
    for wasm in "$guests"/linear_regression.wasm "$guests"/examples/attack_*.wasm; do
        name=$(basename "$wasm" .wasm)
        [[ $name == *-* ]] && continue # cargo's hashed copies
        # A flagged component exits non-zero; its report is what is wanted.
        json=$("$bin" algorithm audit "$wasm" --manifest "$1" --params label=progression --json 2>/dev/null || true)
        echo "$json" | python3 -c "
import json, sys
d = json.load(sys.stdin); s = d['summary']
print('| $name | %s | %.0f%% | %.3g | %.3f | %.3f |' % ('yes' if s['flagged_encoding'] else 'no',
      100 * s['at_clip_bound'], d['influence']['median'], s['empirical_epsilon'], s['accountant_epsilon']))"
    done
}

echo "### Under the example manifest's terms (epsilon 2 per job)"
echo
table "$manifest"
echo
echo "### With a hundredth of the noise (epsilon 200 per job)"
echo
table "$low"
