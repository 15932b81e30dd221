#!/usr/bin/env bash
# tools/fuzz-test.sh FUZZ_BINARY SECONDS - run one libFuzzer target for a
# time box and report it as TAP for prove: ok if the fuzzer found nothing.
# The corpus grows in build/fuzz/corpus-<name> between runs on one machine;
# a crashing input is kept as build/fuzz/crash-* (rerun: FUZZ_BINARY file).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$1
seconds=$2
name=$(basename "$bin")
dir=$(dirname "$bin")
corpus="$dir/corpus-${name#fuzz-}"
log="$dir/$name.log"
mkdir -p "$corpus"
echo "1..1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Long inputs from the start (-len_control=0): each input is a sequence of
# operations, and the interesting states are several operations deep.
if "$bin" -max_total_time="$seconds" -len_control=0 -max_len=2048 -timeout=60 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$dir/" "$corpus" > "$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "ok 1 - $name: ${runs:-?} inputs in ${seconds} s, no failure (corpus $corpus)"
else
    echo "not ok 1 - $name found a failing input (log: $log)"
    tail -40 "$log" | sed 's/^/# /'
fi
