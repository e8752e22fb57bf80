#!/usr/bin/env bash
# One wallet holding about 100 MB: how long `wallet import`, `tables`, `add`,
# `show` and `run` take and how much memory they need, with declared types
# (streamed) and with inferred ones (held whole). Writes a table to stdout;
# docs/PERFORMANCE.md ("One wallet at 100 MB") has the figures and the
# machine. Needs GNU time (/usr/bin/time) and python3. SIZE_MB=100 by default.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p wallet-host --bin wallet >&2
size_mb=${SIZE_MB:-100}
work=${WORK_DIR:-target/wallet-scale}
rm -rf "$work"
mkdir -p "$work"

# Deterministic rows shaped like the diabetes data: 11 columns, a category.
python3 - "$work/big.csv" "$size_mb" <<'EOF'
import random, sys
random.seed(1)
path, limit = sys.argv[1], int(sys.argv[2]) << 20
with open(path, "w") as f:
    f.write("age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,progression\n")
    size = 0
    while size < limit:
        row = "%d,%s,%.4f,%.3f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%d\n" % (
            random.randint(18, 90), random.choice(["female", "male"]),
            random.uniform(15, 45), random.uniform(60, 140),
            *[random.uniform(-1, 1) for _ in range(6)], random.randint(25, 350))
        f.write(row)
        size += len(row)
EOF
cat > "$work/schema.json" <<'EOF'
{"columns": [
  {"name": "age", "type": "integer", "min": 0, "max": 120},
  {"name": "sex", "type": "category", "levels": ["female", "male"]},
  {"name": "bmi", "type": "real", "min": 10, "max": 60},
  {"name": "bp", "type": "real", "min": 40, "max": 200},
  {"name": "s1", "type": "real", "min": -1, "max": 1},
  {"name": "s2", "type": "real", "min": -1, "max": 1},
  {"name": "s3", "type": "real", "min": -1, "max": 1},
  {"name": "s4", "type": "real", "min": -1, "max": 1},
  {"name": "s5", "type": "real", "min": -1, "max": 1},
  {"name": "s6", "type": "real", "min": -1, "max": 1},
  {"name": "progression", "type": "integer", "min": 0, "max": 400}
]}
EOF
# The same rows as a JSON array of objects, up to the same size.
python3 - "$work/big.csv" "$work/big.json" "$size_mb" <<'PY'
import csv, json, sys
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20
ints = {"age", "progression"}
with open(src) as f, open(dst, "w") as out:
    out.write("[")
    size, first = 1, True
    for row in csv.DictReader(f):
        obj = {k: (v if k == "sex" else int(v) if k in ints else float(v)) for k, v in row.items()}
        text = ("" if first else ",\n") + json.dumps(obj)
        if size + len(text) + 1 > limit:
            break
        out.write(text)
        size += len(text)
        first = False
    out.write("]")
PY
bytes=$(stat -c %s "$work/big.csv")
rows=$(($(wc -l < "$work/big.csv") - 1))
echo "file: $bytes bytes, $rows rows"

wallet() { target/release/wallet --wallet "$work/wallet" --identity "$work/identity.txt" "$@"; }
# Runs a wallet command under GNU time, three times (an import with
# --replace after the first), and prints "what | median seconds (CPU seconds)
# | peak MiB": wall-clock time on a shared machine varies with its disk.
measure() {
    local what=$1
    shift
    local runs=()
    for i in 1 2 3; do
        local args=("$@")
        if [ "$i" -gt 1 ] && [ "$1" = import ]; then args+=(--replace); fi
        /usr/bin/time -f "%e %U %S %M" -o "$work/time" target/release/wallet \
            --wallet "$work/wallet" --identity "$work/identity.txt" "${args[@]}" > "$work/out" 2>&1 ||
            { cat "$work/out" >&2; exit 1; }
        runs+=("$(cat "$work/time")")
        [ "$1" = add ] && break # an add is not repeated: it would add rows
    done
    printf '%s\n' "${runs[@]}" | sort -n | awk -v what="$what" '
        { e[NR] = $1; c[NR] = $2 + $3; m[NR] = $4 }
        END { k = int((NR + 1) / 2); printf "| %s | %.2f s (%.2f s CPU) | %d MiB |\n", what, e[k], c[k], m[k] / 1024 }'
}

wallet init > /dev/null
echo "| command | median time of 3 (CPU) | peak memory |"
echo "|---|---|---|"
measure "import --schema (streamed)" import --table big --schema "$work/schema.json" "$work/big.csv"
measure "tables" tables
measure "add one row" add --table big age=50 sex=male bmi=25 bp=90 s1=0 s2=0 s3=0 s4=0 s5=0 s6=0 progression=100
measure "tables, after the add" tables
measure "show --limit 5" show big --limit 5
measure "import, types inferred (two streamed passes)" import --table inferred --yes "$work/big.csv"
json_bytes=$(stat -c %s "$work/big.json")
measure "import --schema, JSON ($json_bytes bytes)" import --table json --schema "$work/schema.json" "$work/big.json"
measure "import, JSON, types inferred" import --table json2 --yes "$work/big.json"
echo
du -sh "$work/wallet" | sed 's/^/wallet on disk: /'
