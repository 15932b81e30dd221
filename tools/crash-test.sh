#!/usr/bin/env bash
# tools/crash-test.sh <image.elf32> - the kernel's trap reports, as TAP.
#
# Boots the image once per fault kind in the crash boot mode (kernel/crash.h:
# "crash fault=KIND") and checks that QEMU exits with "fail" (35) and that
# the report on the serial line says what happened: the exception, for a
# page fault the access, the reason and what the address is, and the
# registers. Each boot's log is <image>.crash-KIND.serial.log.
set -u
cd "$(dirname "$0")/.."

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 <image.elf32>" >&2
    exit 2
fi
image=$1
regs='^  rax 0x[0-9a-f]{16} rbx'

kinds=(null write nx stack ud)
echo "1..${#kinds[@]}"
n=0
for kind in "${kinds[@]}"; do
    n=$((n + 1))
    case $kind in
    null) pats=('exception 14 \(#PF page fault\)' 'page fault: kernel read at 0x0, not-present page'
                'reason: not mapped' 'address: the first page: a NULL pointer dereference') ;;
    write) pats=('exception 14 \(#PF page fault\)' 'page fault: kernel write at 0xffffffff8[0-9a-f]+, present page'
                 'reason: write to a read-only page' 'address: the kernel image') ;;
    nx) pats=('exception 14 \(#PF page fault\)' 'page fault: kernel instruction fetch at 0xffff8[0-9a-f]+, present page'
              'reason: instruction fetch from a no-execute page' 'address: the direct map') ;;
    stack) pats=('exception 8 \(#DF double fault\)'
                 'double fault: cr2 0x[0-9a-f]+, the guard page below the kernel stack: a kernel stack overflow') ;;
    ud) pats=('exception 6 \(#UD invalid opcode\) error 0x0 at rip 0xffffffff8') ;;
    esac
    args=(-x 35 -m 128M -n "crash-$kind" -a "crash fault=$kind" -g "$regs")
    for p in "${pats[@]}"; do args+=(-g "$p"); done
    if out=$(BOOT_TEST_TIMEOUT=${BOOT_TEST_TIMEOUT:-120} tools/boot-test.sh "${args[@]}" "$image" 2>&1); then
        echo "ok $n fault=$kind is reported"
    else
        echo "not ok $n fault=$kind is reported"
        printf '%s\n' "$out" | sed 's/^/# /'
    fi
done
