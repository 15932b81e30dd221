#!/usr/bin/env bash
# tests/malloc/programs.t - real programs on the heap (TAP, run by `make test`):
# build/hosted/libkmm-malloc.so preloaded under ordinary programs from
# Debian's packages (tools/deps.sh installs them), on generated input; each
# must print exactly what it prints on glibc's malloc, and kmm_check must
# pass at the exit of every process that used the heap (KMM_MALLOC_CHECK).
# Then the tests' own stress program (tests/malloc/stress.c), on glibc and
# on kmm, and what only kmm promises: misuse aborts, memory runs out
# cleanly and comes back, statistics at exit. Timings are never asserted.
#
#   tests/malloc/programs.t [BUILD_DIR]   (default build/hosted)
# shellcheck disable=SC2016 # the programs' scripts expand their variables in bash -c
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

build=${1:-build/hosted}
lib=$(pwd)/$build/libkmm-malloc.so
stress=$build/malloc-tests/stress
# A bound on each run: a heap left locked by a fork hangs rather than fails.
limit=300
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0

ok() { # ok STATUS DESCRIPTION [LOG]: one TAP line, the log as comments on failure
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n $2"
    else
        echo "not ok $n $2"
        [ -n "${3:-}" ] && [ -f "$3" ] && head -n 40 "$3" | sed 's/^/# /'
    fi
}

on_kmm() { # on_kmm CHECK_FILE COMMAND...: COMMAND with the heap under it, checked at exit
    local check=$1
    shift
    LD_PRELOAD=$lib KMM_MALLOC_CHECK=$check timeout "$limit" "$@"
}

# compare NAME SCRIPT: runs the bash SCRIPT (every process in it on the
# heap, bash included) and on glibc; stdout and exit status must match, at
# least one process must have used the heap, and every check must be ok.
compare() {
    local name=$1 script=$2 d=$tmp/$1
    mkdir -p "$d"
    (cd "$d" && timeout "$limit" bash -c "$script") > "$d/want" 2> "$d/want.err"
    local want=$?
    rm -rf "${d:?}"/work
    (cd "$d" && on_kmm "$d/check" bash -c "$script") > "$d/got" 2> "$d/got.err"
    local got=$?
    local status=0
    {
        [ "$want" = "$got" ] || echo "exit status $got on kmm, $want on glibc"
        cmp -s "$d/want" "$d/got" || { echo "output differs:"; diff "$d/want" "$d/got" | head -n 10; }
        grep -q 'kmm_check: ok' "$d/check" 2>/dev/null || echo "no process checked the heap"
        grep -v 'kmm_check: ok' "$d/check" 2>/dev/null
        grep 'kmm-malloc' "$d/got.err"
        [ "$got" = 0 ] || cat "$d/got.err"
    } > "$d/log"
    [ -s "$d/log" ] && status=1
    ok $status "$name: same output on kmm as on glibc, kmm_check ok ($(grep -c 'kmm_check: ok' "$d/check" 2>/dev/null) processes)" "$d/log"
}

if [ ! -f "$lib" ] || [ ! -x "$stress" ]; then
    echo "1..1"
    ok 1 "$lib and $stress are built (make malloc)"
    exit 0
fi

# --- generated input ---------------------------------------------------------------
in=$tmp/input.txt
awk 'BEGIN {
    srand(11);
    split("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", w, " ");
    for (i = 0; i < 120000; i++)
        printf "%d %s-%d %s %.3f\n", int(rand() * 1000000), w[int(rand() * 12) + 1],
               int(rand() * 5000), w[int(rand() * 12) + 1], rand() * 100;
}' > "$in"
awk 'BEGIN { printf "["; for (i = 0; i < 50000; i++) printf "%s{\"id\":%d,\"tags\":[\"t%d\",\"u%d\"],\"v\":%d}", i ? "," : "", i, i % 97, i % 13, i * 7 % 1000; print "]" }' > "$tmp/input.json"
awk '{ print $1 "," $2 "," $4 "," $5 }' "$in" > "$tmp/input.csv"
export IN=$in JSON=$tmp/input.json CSV=$tmp/input.csv
export GIT_AUTHOR_NAME=kmm GIT_AUTHOR_EMAIL=kmm@example.org GIT_COMMITTER_NAME=kmm
export GIT_COMMITTER_EMAIL=kmm@example.org GIT_AUTHOR_DATE='2024-01-01T00:00:00Z'
export GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME=$tmp

echo "1..17"

# --- the library ---------------------------------------------------------------------
exports=$(nm -D --defined-only "$lib" | awk '{ print $3 }' | sort | tr '\n' ' ')
want_exports='aligned_alloc calloc free malloc malloc_usable_size memalign posix_memalign pvalloc realloc reallocarray valloc '
[ "$exports" = "$want_exports" ]
ok $? "the library exports the malloc family and nothing else (got: $exports)"

# --- real programs --------------------------------------------------------------------
compare sort 'sort "$IN" | md5sum; sort -n -r "$IN" | head -n 5; sort -k2,2 -u "$IN" | wc -l'
compare gzip 'gzip -9c "$IN" > z && md5sum < z && gunzip -c z | cmp - "$IN" && echo round trip'
compare xz 'xz -T2 -1c "$IN" > z && xz -dc z | cmp - "$IN" && echo round trip'
compare python3 '/usr/bin/python3 -c "
import json, sys, hashlib, threading, collections
rows = [line.split() for line in open(sys.argv[1])]
by_word = collections.defaultdict(list)
for r in rows: by_word[r[1].split(\"-\")[0]].append(int(r[0]))
print(sorted((w, len(v), sum(v) % 1000003) for w, v in by_word.items())[:3])
doc = json.load(open(sys.argv[2]))
s = json.dumps([dict(d, sq=[x * x for x in range(d[\"v\"] % 50)]) for d in doc])
print(len(s), hashlib.sha1(s.encode()).hexdigest())
out = [None] * 4
def work(i):
    d = {}
    for j in range(60000): d[str(j * (i + 1))] = [j] * (j % 7)
    out[i] = sum(len(v) for v in d.values())
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(out)
" "$IN" "$JSON"'
compare perl 'perl -ne '\''my @f = split; $c{$f[1]}++; $s{$f[3]} .= $f[0]; END { print scalar(keys %c), "\n"; print "$_ ", length($s{$_}), "\n" for sort keys %s }'\'' "$IN"'
compare awk 'awk '\''{ n[$2]++; t[$4] += $5 } END { for (k in t) printf "%s %.3f\n", k, t[k] | "sort"; close("sort"); print length(n) }'\'' "$IN"'
compare sed 'sed -E "s/([a-z]+)-([0-9]+)/\2:\1/; s/ ([0-9]+)\.([0-9]+)$/ \2.\1/; /kappa/d" "$IN" | md5sum'
compare sqlite3 'sqlite3 :memory: ".mode csv" ".import $CSV t" "create index i on t(2);" "select count(*) from t;" "select substr(\"2\", 1, 4), count(*), round(avg(\"4\"), 3) from t group by 1 order by 1;" "select * from t order by \"1\" desc, \"2\" limit 3;"'
compare jq 'jq -c "map(select(.v % 3 == 0) | {id, t: .tags[0], w: (.v * 2)}) | group_by(.t) | map({t: .[0].t, n: length, s: (map(.w) | add)})" "$JSON" | md5sum'
compare git 'mkdir work && cd work && git init -q -b main . && split -l 20000 "$IN" part- && git add . && git commit -q -m one && sed -i "s/alpha/ALPHA/" part-aa && git commit -qam two && git gc -q --aggressive && git fsck --no-progress && git rev-parse HEAD && git log --stat --format=%s | md5sum && git count-objects -v | grep -c pack'

# --- the stress program -----------------------------------------------------------------
timeout "$limit" "$stress" > "$tmp/stress-glibc" 2>&1
ok $? "stress on glibc: the test itself holds for a system malloc" "$tmp/stress-glibc"
on_kmm "$tmp/stress-check" "$stress" --kmm > "$tmp/stress-kmm" 2>&1 &&
    grep -q 'kmm_check: ok' "$tmp/stress-check"
ok $? "stress on kmm: edges, threads, fork, exits, a crowd, misuse; kmm_check ok" "$tmp/stress-kmm"
KMM_MALLOC_MIB=64 on_kmm "$tmp/exhaust-check" "$stress" --exhaust > "$tmp/exhaust" 2>&1 &&
    grep -q 'kmm_check: ok' "$tmp/exhaust-check"
ok $? "a 64 MiB machine runs out cleanly (ENOMEM) and every block fits again after the frees" "$tmp/exhaust"
KMM_MALLOC_MIB=64 LD_PRELOAD=$lib timeout "$limit" /usr/bin/python3 -c '
try:
    b = bytearray(200 << 20)
except MemoryError:
    print("MemoryError")
print(len([str(i) for i in range(100000)]))' > "$tmp/py-oom" 2>&1 &&
    [ "$(cat "$tmp/py-oom")" = "$(printf 'MemoryError\n100000')" ]
ok $? "python3 on a 64 MiB machine: MemoryError for 200 MiB, then carries on" "$tmp/py-oom"

# --- statistics at exit -------------------------------------------------------------------
# ls closes its stderr before exit: the report goes where stderr was.
LD_PRELOAD=$lib KMM_MALLOC_STATS=1 ls / 2> "$tmp/stats" > /dev/null &&
    grep -q '^kmm-malloc: heap at exit: ' "$tmp/stats" && grep -q '^kmm ' "$tmp/stats"
ok $? "KMM_MALLOC_STATS=1 prints the heap's figures and kmm_report at exit" "$tmp/stats"
LD_PRELOAD=$lib KMM_MALLOC_STATS=$tmp/stats-file sort "$IN" > /dev/null 2> "$tmp/stats-err" &&
    grep -q '^kmm-malloc: [0-9]* allocations' "$tmp/stats-file" && [ ! -s "$tmp/stats-err" ]
ok $? "KMM_MALLOC_STATS=/path appends them to that file instead" "$tmp/stats-err"
