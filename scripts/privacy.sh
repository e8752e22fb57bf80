#!/usr/bin/env bash
# Regenerates the measurements of docs/PRIVACY.md: the price of privacy on
# diabetes (held-out MSE against epsilon), the utility target on a synthetic
# population of 10,000 wallets (logistic regression, 20 features), and the
# consumer's attacks at scale. Prints Markdown on stdout; takes about an hour
# on 2 cores.
#   scripts/privacy.sh > privacy.md
# SEEDS="7" scripts/privacy.sh runs the diabetes sweep with fewer seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p simulate --examples --bins >&2
bin=target/release/simulate
run() { "$bin" --no-chart --json "$@" 2>/dev/null; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); v=d['$1']; print('%.4f' % v if isinstance(v, float) else v)"; }

echo "### Diabetes: held-out MSE against epsilon"
echo
echo "Linear regression, 353 wallets, 60 rounds of every wallet, updates clipped to 0.1,"
echo "server momentum 0.9. Each seed draws its own held-out split; the last row is the"
echo "centralized linfa least squares on that seed's split."
echo
read -r -a seeds <<< "${SEEDS:-7 8 9}"
header="| epsilon per job | noise multiplier |"
rule="|---|---|"
for seed in "${seeds[@]}"; do header="$header held-out MSE, seed $seed |"; rule="$rule---|"; done
echo "$header"
echo "$rule"
for eps in 0.5 1 2 4 8 off; do
    if [[ $eps == off ]]; then args=(--dp off); else args=(--epsilon "$eps"); fi
    row="| $eps |"
    first=1
    for seed in "${seeds[@]}"; do
        json=$(run "${args[@]}" --seed "$seed")
        if [[ $first == 1 ]]; then
            row="$row $(echo "$json" | field noise_multiplier) |"
            first=0
        fi
        row="$row $(echo "$json" | field federated) |"
    done
    echo "$row"
done
row="| centralized | - |"
for seed in "${seeds[@]}"; do
    row="$row $(run --dp off --rounds 1 --seed "$seed" | field centralized) |"
done
echo "$row"
echo
echo "### 10,000 wallets of a known logistic model"
echo
common=(--data synthetic-logistic:12500 --algorithm logistic-regression --rounds 20
    --wallets-per-round 1000 --rounds-per-wallet 3 --clip-norm 1 --k 10)
noisy=$(run "${common[@]}" --epsilon 2)
exact=$(run "${common[@]}" --dp off)
echo "| run | held-out accuracy | epsilon | centralized linfa |"
echo "|---|---|---|---|"
echo "| epsilon 2 | $(echo "$noisy" | field federated) | $(echo "$noisy" | field epsilon) | $(echo "$noisy" | field centralized) |"
echo "| no noise | $(echo "$exact" | field federated) | - | $(echo "$exact" | field centralized) |"
echo
echo "### The consumer's attacks, 353 wallets"
echo
target/release/examples/privacy_attacks
