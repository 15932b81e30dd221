#!/usr/bin/env bash
# tools/bench-instr.sh [KMM_BENCH [OUT]] - instructions per operation of the
# benchmark workloads P1, P2, H1, H2 and M1, counted by valgrind's callgrind.
#
# Runs KMM_BENCH (build/hosted/kmm-bench) with --instr under callgrind: each
# workload once (P1 50 rounds after a warm-up one, P2 the first 200,000
# steps, H1 100 rounds after a warm-up one, H2 the fill and then the first
# 200,000 steps, M1 whole), then the heap's peers' processes (kmm-heap-<peer>
# --instr H1 and H2, the same counts), each measured loop between a zeroing
# and a dump of callgrind's counters. An instruction count does not depend on
# what else the machine is doing, so it shows the effect of a hot-path change
# where timings cannot (docs/performance.md, "Instructions per operation").
# Takes a few seconds.
#
# Writes OUT (build/bench/instr.txt), one "<object> <key> <value>" line per
# figure, which `kmm-bench -i OUT` adds to results.json, and prints it.
# A dump is described by the harness as "<object> <key> <ops> [<subkey>=<fn>
# ...]": key gets the dump's instructions / ops, each subkey the inclusive
# instructions of the calls to fn / ops, and the fn "-" whatever is left.
# Exit status: non-zero if the run fails or leaves no dumps; no figure is
# ever judged.
set -euo pipefail

bench=${1:-build/hosted/kmm-bench}
out=${2:-build/bench/instr.txt}

command -v valgrind >/dev/null ||
    { echo "bench-instr: valgrind is not installed (tools/deps.sh installs it)" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/kmm-instr.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# Runs one program under callgrind, its dumps named "$dir/<name>.out.<n>";
# adds them to dumps in order (callgrind writes one file per dump).
dumps=()
count_run() {
    local name=$1
    shift
    if ! valgrind --tool=callgrind --callgrind-out-file="$dir/$name.out" "$@" \
            > "$dir/$name.log" 2>&1; then
        cat "$dir/$name.log" >&2
        echo "bench-instr: $* failed under callgrind" >&2
        exit 1
    fi
    local i
    for ((i = 1; ; i++)); do
        [ -f "$dir/$name.out.$i" ] || break
        dumps+=("$dir/$name.out.$i")
    done
    if [ "$i" -eq 1 ]; then
        cat "$dir/$name.log" >&2
        echo "bench-instr: no dumps from $1 (built without valgrind/callgrind.h?)" >&2
        exit 1
    fi
}

count_run kmm "$bench" --instr P1 P2 H1 H2 M1
# The heap's peers (kmm-heap-<peer> beside kmm-bench), each workload in a
# process of its own as in the timed runs.
for peer in glibc jemalloc mimalloc; do
    for w in H1 H2; do
        count_run "$peer-$w" "$(dirname "$bench")/kmm-heap-$peer" --instr "$w"
    done
done

# One dump's figures. Function names are compressed: "fn=(id) name" the first
# time, "fn=(id)" after; fn and cfn share the ids. A call is "cfn=" naming the
# callee, "calls=" and a line whose second field is the call's inclusive cost.
count_dump() {
    awk '
    function name_of(s,   id, rest) {
        id = s; sub(/^\(/, "", id); sub(/\).*/, "", id)
        rest = s; sub(/^\([0-9]+\) ?/, "", rest)
        if (rest != "") names[id] = rest
        return names[id]
    }
    /^desc: Trigger: Client Request: / {
        sub(/^desc: Trigger: Client Request: /, "")
        nwhat = split($0, what, " ")
        next
    }
    /^summary: / { total = $2; next }
    /^fn=/ { caller = name_of(substr($0, 4)); next }
    /^cfn=/ { callee = name_of(substr($0, 5)); next }
    /^calls=/ { want_cost = 1; next }
    want_cost { if (callee != caller) inclusive[callee] += $2; want_cost = 0 }
    END {
        if (nwhat < 3 || what[3] + 0 <= 0) exit 1
        object = what[1]; ops = what[3]
        printf "%s %s %.2f\n", object, what[2], total / ops
        rest = total; restkey = ""
        for (i = 4; i <= nwhat; i++) {
            split(what[i], kv, "=")
            if (kv[2] == "-") { restkey = kv[1]; continue }
            printf "%s %s %.2f\n", object, kv[1], inclusive[kv[2]] / ops
            rest -= inclusive[kv[2]]
        }
        if (restkey != "") printf "%s %s %.2f\n", object, restkey, rest / ops
    }' "$1"
}

mkdir -p "$(dirname "$out")"
{
    echo "# instructions per op, callgrind, $(valgrind --version), $bench --instr"
    for d in "${dumps[@]}"; do count_dump "$d"; done
} > "$out"
cat "$out"
