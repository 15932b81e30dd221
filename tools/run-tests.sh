#!/usr/bin/env bash
# tools/run-tests.sh [SCRIPT.t | VARIANT_DIR]... [--kernel KERNEL_DIR...] [--fuzz FUZZ_DIR]
#
# Runs, under one prove, every hosted test executable (VARIANT_DIR/tests/*.t),
# a boot of each kernel variant's test image under QEMU (its serial output
# is KTAP, read by prove like the hosted tests), and each fuzz target in
# FUZZ_DIR (fuzz-*) for FUZZ_SECONDS (default 30) through tools/fuzz-test.sh.
# A SCRIPT.t (a file, e.g. tools/readme-test.t) is a TAP script run as it is.
# Exit status: prove's.
set -euo pipefail
cd "$(dirname "$0")/.."

files=()
kernel=0
for arg in "$@"; do
    if [ "$arg" = --kernel ]; then
        kernel=1
        continue
    fi
    if [ "$arg" = --fuzz ]; then
        kernel=2
        continue
    fi
    if [ "$kernel" = 2 ]; then
        for bin in "$arg"/fuzz-*; do
            [ -x "$bin" ] && [ "${bin%.t}" = "$bin" ] && [ "${bin%.log}" = "$bin" ] || continue
            printf '#!/bin/sh\nexec tools/fuzz-test.sh %s %s\n' "$bin" "${FUZZ_SECONDS:-30}" > "$bin.t"
            chmod +x "$bin.t"
            files+=("$bin.t")
        done
    elif [ "$kernel" = 0 ] && [ -f "$arg" ]; then
        files+=("$arg")
    elif [ "$kernel" = 0 ]; then
        files+=("$arg"/tests/*.t)
    else
        wrapper="$arg/boot.t"
        printf '#!/bin/sh\nexec tools/boot-test.sh %s/kmm-test.elf32\n' "$arg" > "$wrapper"
        chmod +x "$wrapper"
        files+=("$wrapper")
    fi
done

# ASan: leaks are real failures; TSan: fail the test on the first report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
exec prove --exec '' --jobs "$(nproc)" "${files[@]}"
