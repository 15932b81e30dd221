#!/usr/bin/env bash
# tools/boot-test.sh [options] <image.elf32 | image.iso> - boot the kmm demo
# kernel under QEMU (TCG) and report its verdict.
#
#   -m MEM     guest RAM (QEMU -m; default 256M)
#   -l 4|5     paging levels: 4 boots `-cpu max,la57=off`, 5 boots `-cpu max`
#              and fails unless the kernel says it runs with 5 levels
#              (default: 4)
#   -a ARGS    the kernel command line (-kernel only: an ISO's is in its
#              grub.cfg; default "selftest")
#   -i FILE    a Multiboot module (-kernel only: QEMU's -initrd; an ISO's
#              modules are in its grub.cfg)
#   -x CODE    the QEMU exit code that means success (default 33)
#   -g REGEX   a line the serial output must match (grep -E, carriage
#              returns dropped: firmware and GRUB leave a CR before the
#              kernel's first line); repeatable
#   -n NAME    the serial log goes to <image>.<NAME>.serial.log (default:
#              <image>.serial.log)
#   -u         boot an .iso on UEFI firmware (OVMF, Debian's ovmf package:
#              its GRUB is the ISO's x86_64-efi one) instead of the BIOS;
#              the kernel must say so, and must hand its ACPI tables'
#              reclaimable memory back once it has read them
#
# An .iso boots from CD through GRUB (Multiboot2), anything else through
# QEMU's -kernel (Multiboot1). In the self-test mode the kernel runs every
# test, prints KTAP on COM1 and leaves QEMU through isa-debug-exit: exit code
# 33 ((0x10 << 1) | 1) means every test passed, 35 ((0x11 << 1) | 1) that a
# test failed or the kernel panicked or trapped. The serial output goes to
# stdout as it is produced (prove reads it as TAP) and to the log. Exits 0
# iff QEMU exited with the expected code and every -g pattern matched.
#
# Needs no terminal: QEMU's stdin is /dev/null, so CI without one cannot hang
# it, and a run is cut off after BOOT_TEST_TIMEOUT seconds (default 300).
set -u

mem=256M levels=4 append=selftest want=33 name= module= uefi= patterns=()
OVMF=${OVMF:-/usr/share/ovmf/OVMF.fd}
while getopts "m:l:a:i:x:g:n:u" opt; do
    case $opt in
    m) mem=$OPTARG ;;
    l) levels=$OPTARG ;;
    a) append=$OPTARG ;;
    i) module=$OPTARG ;;
    x) want=$OPTARG ;;
    g) patterns+=("$OPTARG") ;;
    n) name=$OPTARG ;;
    u) uefi=1 ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -ne 1 ] || [ ! -f "$1" ] || { [ "$levels" != 4 ] && [ "$levels" != 5 ]; }; then
    echo "usage: $0 [-m MEM] [-l 4|5] [-a ARGS] [-i MODULE] [-x CODE] [-g REGEX]... [-n NAME] [-u] <image.elf32|image.iso>" >&2
    exit 2
fi
image=$1
log=$image${name:+.$name}.serial.log
timeout_s=${BOOT_TEST_TIMEOUT:-300}

cpu=max
[ "$levels" = 4 ] && cpu=max,la57=off
[ "$levels" = 5 ] && patterns+=("^# kmm kernel: .*, 5-level paging")
case $image in
*.iso) boot=(-cdrom "$image") ;;
*) boot=(-kernel "$image" -append "$append" ${module:+-initrd "$module"}) ;;
esac
if [ -n "$uefi" ]; then
    case $image in
    *.iso) ;;
    *) echo "boot-test: -u boots an ISO only" >&2; exit 2 ;;
    esac
    [ -f "$OVMF" ] || { echo "boot-test: no UEFI firmware at $OVMF (the ovmf package; tools/deps.sh)" >&2; exit 2; }
    boot=(-bios "$OVMF" "${boot[@]}")
    patterns+=('^# kmm kernel: Multiboot2 from "GRUB[^"]*" on UEFI,')
    patterns+=('^# kmm kernel: reclaimed 0x[0-9a-f]+ - 0x[0-9a-f]+ \(acpi-reclaimable\)')
fi

timeout "$timeout_s" qemu-system-x86_64 \
    -machine pc -accel tcg -cpu "$cpu" -m "$mem" \
    "${boot[@]}" \
    -display none -monitor none -no-reboot \
    -serial stdio \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    </dev/null 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

status=0
if [ "$rc" != "$want" ]; then
    case $rc in
    33) echo "# boot-test: qemu exited with 33 (passed), expected $want" ;;
    35) echo "# boot-test: qemu exited with 35 (a test failed, or the kernel panicked or trapped)" ;;
    124) echo "# boot-test: qemu exited with 124 (timed out after ${timeout_s}s)" ;;
    *) echo "# boot-test: qemu exited with $rc" ;;
    esac
    status=1
fi
for p in "${patterns[@]}"; do
    if ! tr -d '\r' < "$log" | grep -Eq -- "$p"; then
        echo "# boot-test: no line of the serial output matches: $p"
        status=1
    fi
done
exit $status
