#!/usr/bin/env bash
# tests/malloc/programs.t - real programs on the heap (TAP, run by `make test`):
# build/hosted/libkmm-malloc.so preloaded under ordinary programs from
# Debian's packages (tools/deps.sh installs them), on generated input; each
# must print exactly what it prints on glibc's malloc, and kmm_check must
# pass at the exit of every process that used the heap (KMM_MALLOC_CHECK).
# Then the tests' own stress program (tests/malloc/stress.c), on glibc and
# on kmm, and what only kmm promises: misuse aborts, memory runs out
# cleanly and comes back, statistics at exit. Then the debugging switches
# (malloc/debug.c) on the tests' program with known bugs
# (tests/malloc/mistakes.c): the leak report's call sites resolved with
# addr2line, an overrun and a write after free caught, bad values ignored.
# Timings are never asserted.
#
#   tests/malloc/programs.t [BUILD_DIR]   (default build/hosted)
# shellcheck disable=SC2016 # the programs' scripts expand their variables in bash -c
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

build=${1:-build/hosted}
lib=$(pwd)/$build/libkmm-malloc.so
stress=$build/malloc-tests/stress
mistakes=$build/malloc-tests/mistakes
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

if [ ! -f "$lib" ] || [ ! -x "$stress" ] || [ ! -x "$mistakes" ]; then
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

echo "1..26"

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

# --- debugging switches and reports (malloc/debug.c) -------------------------------------
# site NAME: the line of tests/malloc/mistakes.c marked "site: NAME".
site() { grep -n "site: $1 \*/" tests/malloc/mistakes.c | cut -d: -f1; }
# resolves FILE: each "(path+0xoff)" of FILE through addr2line, as
# "path+0xoff -> file:line" lines.
resolve() {
    grep -o '([^ ()]*+0x[0-9a-f]*)' "$1" | tr -d '()' | sort -u | while IFS= read -r at; do
        echo "$at -> $(addr2line -e "${at%+0x*}" "0x${at##*+0x}" | sed 's/ (discriminator.*//')"
    done
}
# line_of FILE PATTERN: the source line addr2line gives for the first
# "(path+0xoff)" on FILE's first line matching PATTERN.
line_of() {
    local at
    at=$(grep -m1 -e "$2" "$1" | grep -o '([^ ()]*+0x[0-9a-f]*)' | head -n 1 | tr -d '()')
    [ -n "$at" ] && addr2line -e "${at%+0x*}" "0x${at##*+0x}" | sed 's/ (discriminator.*//; s/.*://'
}

# (timeout outside: only sort reports to the file)
timeout "$limit" env LD_PRELOAD="$lib" KMM_MALLOC_REPORT=all KMM_MALLOC_REPORT_FILE="$tmp/sort-report" \
    sort "$IN" 2> "$tmp/sort-err" | md5sum > "$tmp/sort-md5"
{
    sort "$IN" | md5sum | cmp -s - "$tmp/sort-md5" || echo "sort's output differs"
    [ -s "$tmp/sort-err" ] && { echo "stderr:"; cat "$tmp/sort-err"; }
    grep -q '^kmm-malloc: report at exit of process [0-9]* (.*/sort)$' "$tmp/sort-report" ||
        echo "no header"
    grep -q '^Slab caches (slabinfo)' "$tmp/sort-report" || echo "no slabinfo"
    grep -q '^  name  *active  *total  *objsize' "$tmp/sort-report" || echo "no slabinfo header"
    awk '/^kmm-malloc: [0-9]+ allocations/ { a = $2; f = $6 }
         /^kmm-malloc: heap at exit: / { live = $5 }
         /^kmm-malloc: leaks: / { leaked = $3 }
         END {
             if (a == "" || f == "" || live == "" || leaked == "") { print "figures missing"; exit }
             if (a + 0 < f + 0) print "allocations " a " < frees " f
             if (a - f != live) print "live " live " != allocations - frees " a - f
             if (leaked + 0 > live + 0) print "leaked " leaked " > live " live
         }' "$tmp/sort-report"
    awk '/^kmm-malloc: leak: / { n += $3 } /^kmm-malloc: leaks: / { want = $3 }
         END { if (n != want) print "the sites sum to " n " blocks, not " want }' "$tmp/sort-report"
} > "$tmp/sort-log"
[ ! -s "$tmp/sort-log" ]
ok $? "sort under KMM_MALLOC_REPORT=all: the report in its file, figures consistent, slabinfo, leaks by site" "$tmp/sort-log"

LD_PRELOAD=$lib KMM_MALLOC_REPORT=leaks timeout "$limit" "$mistakes" leaks > "$tmp/leaks-out" 2> "$tmp/leaks"
resolve "$tmp/leaks" > "$tmp/leaks-resolved"
{
    [ "$(cat "$tmp/leaks-out")" = done ] || echo "the program did not finish"
    for s in "leak_a 3 300" "leak_b 2 2000"; do
        set -- $s
        # The report's line for this site: the one whose address resolves to it.
        at=$(grep -e "mistakes.c:$(site "$1")\$" "$tmp/leaks-resolved" | cut -d' ' -f1)
        [ -n "$at" ] || { echo "no call site resolves to $1's line $(site "$1")"; continue; }
        grep -qF "kmm-malloc: leak: $2 blocks, $3 bytes, from " "$tmp/leaks" &&
            grep -F "($at)" "$tmp/leaks" | grep -qF "leak: $2 blocks, $3 bytes," ||
            echo "$1: not $2 blocks of $3 bytes in all"
    done
    # The blocks an atexit handler frees are no leak: the report ran after it.
    grep -q ' 505 bytes' "$tmp/leaks" && echo "the atexit handler's frees came after the report"
} > "$tmp/leaks-log"
[ ! -s "$tmp/leaks-log" ] || cat "$tmp/leaks" "$tmp/leaks-resolved" >> "$tmp/leaks-log"
[ ! -s "$tmp/leaks-log" ]
ok $? "KMM_MALLOC_REPORT=leaks names both call sites with their blocks and bytes; addr2line resolves them" "$tmp/leaks-log"

# check_caught NAME STATUS ERR CALL_SITE [ALLOC_OR_FREE_SITE]: the run ended
# with SIGABRT (134), its report names the call that found the damage at
# CALL_SITE's line (and the allocation or free at the other's).
check_caught() {
    local err=$3
    {
        [ "$2" = 134 ] || echo "exit status $2, not SIGABRT"
        [ "$(line_of "$err" 'called from')" = "$(site "$4")" ] || echo "the caller is not line $(site "$4")"
        [ -z "${5:-}" ] || [ "$(line_of "$err" "^kmm-malloc:   $6 by ")" = "$(site "$5")" ] ||
            echo "$6 by: not line $(site "$5")"
    } > "$err.log"
    [ -s "$err.log" ] && cat "$err" >> "$err.log"
    [ ! -s "$err.log" ]
}
LD_PRELOAD=$lib KMM_MALLOC_DEBUG=redzone timeout "$limit" "$mistakes" overrun > /dev/null 2> "$tmp/overrun"
check_caught overrun $? "$tmp/overrun" overrun_free overrun_malloc allocated &&
    grep -q 'written past the end of its 24 bytes' "$tmp/overrun"
ok $? "KMM_MALLOC_DEBUG=redzone: one byte past a block, found by its free: SIGABRT, the free's and malloc's lines named" "$tmp/overrun.log"
LD_PRELOAD=$lib KMM_MALLOC_DEBUG=guard:1 timeout "$limit" "$mistakes" overrun > /dev/null 2> "$tmp/guard"
check_caught guard $? "$tmp/guard" overrun_free overrun_malloc allocated &&
    grep -q 'guarded object' "$tmp/guard"
ok $? "KMM_MALLOC_DEBUG=guard:1: the same on a guard page" "$tmp/guard.log"
LD_PRELOAD=$lib KMM_MALLOC_DEBUG=poison,events timeout "$limit" "$mistakes" afterfree > /dev/null 2> "$tmp/uaf"
check_caught uaf $? "$tmp/uaf" afterfree_malloc afterfree_free freed &&
    grep -q 'written after it was freed' "$tmp/uaf" && grep -q "the heap's last [0-9]* events" "$tmp/uaf"
ok $? "KMM_MALLOC_DEBUG=poison,events: a write after free, found by the next malloc: SIGABRT, the free named, recent events" "$tmp/uaf.log"
LD_PRELOAD=$lib KMM_MALLOC_DEBUG=redzone timeout "$limit" "$mistakes" clean > "$tmp/clean" 2>&1
[ "$(cat "$tmp/clean")" = done ]
ok $? "KMM_MALLOC_DEBUG=redzone: a program without the bug runs quietly" "$tmp/clean"

LD_PRELOAD=$lib KMM_MALLOC_DEBUG=redzone,bogus,guard:x KMM_MALLOC_REPORT=nope \
    timeout "$limit" "$mistakes" overrun > "$tmp/bad-out" 2> "$tmp/bad"
status=$?
{
    [ "$status" = 134 ] || echo "exit status $status: redzone was not kept"
    grep -qx "kmm-malloc: KMM_MALLOC_DEBUG=redzone,bogus,guard:x: 'bogus' is no mode .*; ignored" "$tmp/bad" || echo "bogus not said"
    grep -qx "kmm-malloc: KMM_MALLOC_DEBUG=redzone,bogus,guard:x: 'guard:x' is no mode .*; ignored" "$tmp/bad" || echo "guard:x not said"
    grep -qx 'kmm-malloc: KMM_MALLOC_REPORT=nope: not stats, leaks or all; ignored' "$tmp/bad" || echo "nope not said"
} > "$tmp/bad-log"
LD_PRELOAD=$lib KMM_MALLOC_REPORT=leaks KMM_MALLOC_REPORT_FILE=/nonexistent/dir/r \
    timeout "$limit" "$mistakes" clean > "$tmp/bad-out" 2> "$tmp/bad2"
{
    [ "$?" = 0 ] && [ "$(cat "$tmp/bad-out")" = done ] || echo "the program did not run"
    grep -q '^kmm-malloc: KMM_MALLOC_REPORT_FILE=/nonexistent/dir/r: .*; ignored$' "$tmp/bad2" || echo "the file not said"
    grep -q '^kmm-malloc: leaks: ' "$tmp/bad2" || echo "no report on stderr instead"
} >> "$tmp/bad-log"
[ -s "$tmp/bad-log" ] && cat "$tmp/bad" "$tmp/bad2" >> "$tmp/bad-log"
[ ! -s "$tmp/bad-log" ]
ok $? "bad switch values: one line each on stderr, ignored, the rest in force" "$tmp/bad-log"

KMM_MALLOC_DEBUG=all,guard:7 on_kmm "$tmp/stress-debug-check" "$stress" --kmm > "$tmp/stress-debug" 2>&1 &&
    grep -q 'kmm_check: ok' "$tmp/stress-debug-check"
ok $? "stress on kmm with every debugging mode and guard pages: calloc zeroes, usable sizes hold, kmm_check ok" "$tmp/stress-debug"
KMM_MALLOC_DEBUG=all,guard:50 compare python3-debug '/usr/bin/python3 -c "
import json, sys
doc = json.load(open(sys.argv[1]))
print(len(json.dumps([dict(d, n=str(d[\"v\"]) * 3) for d in doc])))
" "$JSON"'
