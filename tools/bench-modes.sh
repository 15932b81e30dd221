#!/usr/bin/env bash
# tools/bench-modes.sh [-n PROCESSES] [-w WRAPPER] [-r] [KMM_BENCH] - P1 measured
# in many processes, one line each, with what could put a process in a "mode":
#
#   wall, cpu   P1's median ns/pair by the wall clock and by the thread's CPU time
#   share       the lowest CPU time / wall time of its timed loops (1: never off its CPU)
#   floor       the floor's median ns/pair, wall and CPU time
#   cpus        the CPU each of the five runs ended on
#   thp_kb      AnonHugePages of the process (the pool's transparent huge pages)
#   vec tls stack code   the low 20 bits of where ASLR put the loop's array,
#               the port's thread-local data, the stack and kmm_page_alloc
#               (the pool, frame database and per-CPU data sit at fixed
#               offsets from the 1 GiB aligned direct map)
#
# WRAPPER runs each process, e.g. -w "taskset -c 1" or -w "setarch -R". The
# processes run with kmm-bench --no-rt, as other processes' work may share
# their CPU; -r lets them run as SCHED_FIFO, as make bench does. The last
# lines give the lowest, median and highest wall and CPU figures.
# This is how docs/performance.md's "Two modes" was measured.
set -euo pipefail

n=20
wrapper=
rt=--no-rt
while getopts n:w:r opt; do
    case $opt in
    n) n=$OPTARG ;;
    w) wrapper=$OPTARG ;;
    r) rt= ;;
    *) echo "usage: $0 [-n PROCESSES] [-w WRAPPER] [-r] [KMM_BENCH]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
bench=${1:-build/hosted/kmm-bench}

rows=$(mktemp "${TMPDIR:-/tmp}/kmm-modes.XXXXXX")
trap 'rm -f "$rows"' EXIT
printf '%4s %6s %6s %5s %6s %6s %-10s %8s %5s %5s %5s %5s\n' \
    proc wall cpu share floor fcpu cpus thp_kb vec tls stack code
for ((i = 1; i <= n; i++)); do
    # shellcheck disable=SC2086 # the wrapper and $rt are words
    $wrapper "$bench" $rt P1 | awk -v proc="$i" '
        function low20(hex) { return substr(hex, length(hex) - 4) } # 5 hex digits
        /^P1 kmm +ns\/pair runs:/ { wall = $NF }
        /^P1 kmm +ns\/pair cpu:/ { cpu = $NF }
        /^P1 kmm +ns\/pair share:/ {
            share = 1; cpus = ""
            for (f = 5; f <= NF && $f != "on"; f++) if ($f < share) share = $f
            for (f += 2; f <= NF; f++) cpus = cpus $f
        }
        /^P1 floor ns\/pair runs:/ { floor = $NF }
        /^P1 floor ns\/pair cpu:/ { fcpu = $NF }
        /^P1 pairs=/ { for (f = 1; f <= NF; f++) if ($f ~ /^thp_kb=/) thp = substr($f, 8) }
        /^P1 placement:/ {
            for (f = 3; f <= NF; f++) { split($f, kv, "="); at[kv[1]] = kv[2] }
        }
        END {
            printf "%4d %6.2f %6.2f %5.2f %6.2f %6.2f %-10s %8s %5s %5s %5s %5s\n", proc, wall,
                cpu, share, floor, fcpu, cpus, thp, low20(at["vec"]), low20(at["tls"]),
                low20(at["stack"]), low20(at["code"])
        }' | tee -a "$rows"
done
for col in 2 3; do
    sort -n -k$col "$rows" | awk -v col=$col -v n="$n" '
        { v[NR] = $col }
        END { printf "%s: lowest %.2f, median %.2f, highest %.2f\n", col == 2 ? "wall" : "cpu ",
              v[1], v[int((NR + 1) / 2)], v[NR] }'
done
