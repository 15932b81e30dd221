#!/usr/bin/env bash
# tools/malloc-ab.sh [RUNS] - allocation-heavy programs timed on three mallocs:
# glibc's (no preload), Debian's mimalloc and kmm's (build/hosted/libkmm-malloc.so,
# `make malloc`), each LD_PRELOADed. Every workload runs RUNS times (default 5)
# per malloc, the three taking turns (A B C A B C ...) so that a drift of the
# machine's speed hits all three alike. The figure is the median CPU time
# (user + system, of the process and its children): unlike wall time it
# holds when other work shares the CPUs. Prints a table, each workload's
# ratios kmm/mimalloc and kmm/glibc, and their geometric means. Measures
# only: no verdict, no threshold (docs/performance.md, "Whole programs").
# shellcheck disable=SC2016 # the workloads' scripts expand their variables in bash -c
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
kmm=$(pwd)/build/hosted/libkmm-malloc.so
mimalloc=$(find /usr/lib/x86_64-linux-gnu -maxdepth 1 -name 'libmimalloc.so.2*' | sort | head -n 1)
[ -f "$kmm" ] || { echo "malloc-ab: $kmm is missing: make malloc" >&2; exit 1; }
[ -n "$mimalloc" ] || { echo "malloc-ab: no libmimalloc.so.2 (libmimalloc-dev, tools/deps.sh)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk 'BEGIN {
    srand(7);
    split("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", w, " ");
    for (i = 0; i < 300000; i++)
        printf "%d,%s-%d,%s,%.3f\n", int(rand() * 1000000), w[int(rand() * 12) + 1],
               int(rand() * 50000), w[int(rand() * 12) + 1], rand() * 100;
}' > "$tmp/in.csv"
awk 'BEGIN { printf "["; for (i = 0; i < 200000; i++) printf "%s{\"id\":%d,\"tags\":[\"t%d\",\"u%d\"],\"v\":%d}", i ? "," : "", i, i % 97, i % 13, i * 7 % 1000; print "]" }' > "$tmp/in.json"
export IN=$tmp/in.csv JSON=$tmp/in.json

# name and command (run by bash -c, on the malloc under test).
workloads=(
    python3 '/usr/bin/python3 -c "
import json, sys
d = {}
for line in open(sys.argv[1]):
    f = line.split(\",\")
    d.setdefault(f[1], []).append((int(f[0]), f[3]))
s = json.dumps(json.load(open(sys.argv[2])))
print(len(d), len(s), sum(len(v) for v in d.values()))
" "$IN" "$JSON"'
    perl 'perl -ne '\''chomp; my @f = split /,/; push @{$h{$f[1]}}, [@f]; END { my $n = 0; $n += @$_ for values %h; print scalar(keys %h), " $n\n" }'\'' "$IN"'
    sqlite3 'sqlite3 :memory: ".mode csv" ".import $IN t" "create index i on t(2, 1);" "select count(*), count(distinct \"2\") from t;"'
    jq 'jq -c "map(select(.v % 3 == 0) | {id, t: .tags[0], w: (.v * 2)}) | group_by(.t) | map({t: .[0].t, n: length})" "$JSON" | wc -c'
    awk 'awk -F, '\''{ n[$2]++; s[$2] = s[$2] $1 } END { for (k in n) t += length(s[k]); print length(n), t }'\'' "$IN"'
)

# One run's CPU milliseconds (user + system) on the malloc at path pre ("" for glibc's).
time_once() {
    local pre=$1 cmd=$2 TIMEFORMAT='%3U %3S'
    { time LD_PRELOAD=$pre bash -c "$cmd" > "$tmp/out" 2>&1; } 2> "$tmp/time"
    awk '{ printf "%.0f\n", ($1 + $2) * 1000 }' "$tmp/time"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-10s %12s %12s %12s %14s %12s\n' workload glibc_cpu_ms mimalloc kmm kmm/mimalloc kmm/glibc
: > "$tmp/ratios"
for ((i = 0; i < ${#workloads[@]}; i += 2)); do
    name=${workloads[i]} cmd=${workloads[i + 1]}
    : > "$tmp/g"; : > "$tmp/m"; : > "$tmp/k"
    for pre in "" "$mimalloc" "$kmm"; do time_once "$pre" "$cmd" > /dev/null; done # warm-up
    for ((r = 0; r < runs; r++)); do
        time_once "" "$cmd" >> "$tmp/g"
        time_once "$mimalloc" "$cmd" >> "$tmp/m"
        time_once "$kmm" "$cmd" >> "$tmp/k"
    done
    g=$(median < "$tmp/g") m=$(median < "$tmp/m") k=$(median < "$tmp/k")
    awk -v n="$name" -v g="$g" -v m="$m" -v k="$k" 'BEGIN {
        printf "%-10s %12d %12d %12d %14.3f %12.3f\n", n, g, m, k, k / m, k / g
    }'
    echo "$k $m $g" >> "$tmp/ratios"
done
awk '{ lm += log($1 / $2); lg += log($1 / $3); n++ }
     END { printf "geometric mean over %d workloads: kmm/mimalloc %.3f, kmm/glibc %.3f\n", n, exp(lm / n), exp(lg / n) }' "$tmp/ratios"
