#!/usr/bin/env bash
# tools/boot-test.sh <image.elf32> - boot the kmm test kernel under QEMU (TCG)
# and report its verdict.
#
# The kernel runs every test, prints KTAP on COM1 and leaves QEMU through
# isa-debug-exit: exit code 33 ((0x10 << 1) | 1) means every test passed,
# 35 ((0x11 << 1) | 1) that a test failed or the kernel panicked or trapped.
# The serial output goes to stdout as it is produced (prove reads it as TAP)
# and to <image>.serial.log. Exits 0 iff QEMU exited with 33.
#
# Needs no terminal: QEMU's stdin is /dev/null, so CI without one cannot hang
# it, and a run is cut off after BOOT_TEST_TIMEOUT seconds (default 300).
set -u

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 <image.elf32>" >&2
    exit 2
fi
image=$1
log=$image.serial.log
timeout_s=${BOOT_TEST_TIMEOUT:-300}

timeout "$timeout_s" qemu-system-x86_64 \
    -machine pc -accel tcg -cpu max -m 256M \
    -kernel "$image" \
    -display none -monitor none -no-reboot \
    -serial stdio \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    </dev/null 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

case $rc in
33) exit 0 ;;
35) echo "# boot-test: qemu exited with 35 (a test failed, or the kernel panicked or trapped)" ;;
124) echo "# boot-test: qemu exited with 124 (timed out after ${timeout_s}s)" ;;
*) echo "# boot-test: qemu exited with $rc" ;;
esac
exit 1
