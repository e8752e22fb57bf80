#!/usr/bin/env bash
# Regenerates the robustness table of docs/ROBUSTNESS.md: `simulate` on
# diabetes (one wallet per person, 50 a round) for each aggregation rule,
# clean and with 30% of the wallets attacking. Robust rules cannot be wrapped
# in noise, so these runs are without noise (`--dp off`, research only).
# Prints a Markdown table on stdout.
#   scripts/robustness.sh [SIMULATE_BINARY] > table.md
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/simulate}
if [[ ! -x $bin ]]; then
    cargo build --release -p simulate
    bin=target/release/simulate
fi
rules=(mean median trimmed-mean:0.3 multi-krum:15 centered-clipping:0.05:30)
attacks=(sign-flip scale noise alie)
mse() {
    "$bin" --no-chart --json --dp off --wallets-per-round 50 "$@" 2>/dev/null |
        python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["federated"])'
}
central=$("$bin" --no-chart --json --dp off --rounds 1 2>/dev/null |
    python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["centralized"])')
echo "Held-out MSE after 60 rounds of 50 wallets; centralized linfa fit: $central."
echo "In brackets: the ratio to the clean plain mean."
echo
printf '| rule | clean |'
for a in "${attacks[@]}"; do printf ' 30%% %s |' "$a"; done
echo
printf '|---|---|'
for _ in "${attacks[@]}"; do printf -- '---|'; done
echo
clean_mean=""
for r in "${rules[@]}"; do
    clean=$(mse --filter "$r")
    [[ -z $clean_mean ]] && clean_mean=$clean
    ratio() { python3 -c "v=float('$1'); print('%.4g (%.2fx)' % (v, v/float('$clean_mean')))"; }
    printf '| `%s` | %s |' "$r" "$(ratio "$clean")"
    for a in "${attacks[@]}"; do
        printf ' %s |' "$(ratio "$(mse --filter "$r" --attackers 0.3 --attack "$a")")"
    done
    echo
done
