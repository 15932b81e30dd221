#!/usr/bin/env bash
# tools/run-tests.sh [SCRIPT.t | VARIANT_DIR]... [--kernel KERNEL_DIR[:BOOTS]...] [--fuzz FUZZ_DIR]
#
# Runs, under one prove, every hosted test executable (VARIANT_DIR/tests/*.t),
# boots of each kernel variant's self-test under QEMU (the serial output is
# KTAP, read by prove like the hosted tests), and each fuzz target in
# FUZZ_DIR (fuzz-*) for FUZZ_SECONDS (default 30) through tools/fuzz-test.sh.
# A SCRIPT.t (a file, e.g. tools/readme-test.t) is a TAP script run as it is.
#
# BOOTS is a comma-separated list of PATH-LEVELS-MEM boots (default
# elf-4-128M,iso-5-4G): PATH elf boots KERNEL_DIR/kmm-test.elf32 through
# QEMU's -kernel (Multiboot1), iso boots KERNEL_DIR/kmm-selftest.iso through
# GRUB (Multiboot2), efi the same ISO through GRUB on UEFI firmware (OVMF); LEVELS is 4 or 5 paging levels; MEM the guest's RAM
# (tools/boot-test.sh); every boot carries one Multiboot module (the ELF64
# image: QEMU's -initrd, the ISO's module2). Each boot is one prove test, KERNEL_DIR/boot-BOOT.t;
# KERNEL_DIR/crash.t checks the trap reports (tools/crash-test.sh).
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
        dir=${arg%%:*}
        boots=elf-4-128M,iso-5-4G
        [ "$dir" != "$arg" ] && boots=${arg#*:}
        IFS=, read -ra list <<< "$boots"
        for b in "${list[@]}"; do
            IFS=- read -r path levels mem <<< "$b"
            module=
            case $path in
            elf) image=$dir/kmm-test.elf32 module="-i $dir/kmm-test.elf" ;;
            iso) image=$dir/kmm-selftest.iso ;;
            efi) image=$dir/kmm-selftest.iso module=-u ;;
            *) echo "run-tests.sh: unknown boot path in $b (elf, iso or efi)" >&2; exit 2 ;;
            esac
            wrapper="$dir/boot-$b.t"
            printf '#!/bin/sh\nexec tools/boot-test.sh -n %s -l %s -m %s %s %s\n' \
                "$b" "$levels" "$mem" "$module" "$image" > "$wrapper"
            chmod +x "$wrapper"
            files+=("$wrapper")
        done
        # The trap reports (crash boot mode), on the -kernel image.
        printf '#!/bin/sh\nexec tools/crash-test.sh %s\n' "$dir/kmm-test.elf32" > "$dir/crash.t"
        chmod +x "$dir/crash.t"
        files+=("$dir/crash.t")
    fi
done

# ASan: leaks are real failures; TSan: fail the test on the first report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
exec prove --exec '' --jobs "$(nproc)" "${files[@]}"
