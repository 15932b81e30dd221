#!/usr/bin/env bash
# tools/install-test.t - `make install PREFIX=...` serves both worlds with
# pkg-config alone (TAP, run by `make test`):
#   1. it installs the headers, libkmm.a, libkmm-boruix.a, kmm.pc and
#      kmm-freestanding.pc under a fresh prefix;
#   2. the Boruix usage example builds with `pkg-config --cflags --libs kmm`
#      and runs;
#   3. a fake Boruix kernel compiles with `pkg-config --cflags
#      kmm-freestanding` (C99, freestanding, its own stdint.h) and links with
#      `pkg-config --libs kmm-freestanding` and nothing else.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo 1..3
n=0
result() { # status, description, log
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n $2"; else echo "not ok $n $2"; sed 's/^/# /' "$3"; fi
}

p="$tmp/prefix"
make -s install PREFIX="$p" > "$tmp/install.log" 2>&1 &&
    for f in include/kmm/kmm.h include/boruix/rust_memory.h include/boruix/memory.h \
             lib/libkmm.a lib/libkmm-boruix.a lib/pkgconfig/kmm.pc lib/pkgconfig/kmm-freestanding.pc; do
        [ -f "$p/$f" ] || { echo "missing $f" >> "$tmp/install.log"; false; } || exit 1
    done
result $? "make install PREFIX=... installs both worlds" "$tmp/install.log"

export PKG_CONFIG_PATH="$p/lib/pkgconfig"
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc -std=c11 -Wall -Wextra -Werror examples/boruix_usage.c -o "$tmp/usage" \
    $(pkg-config --cflags --libs kmm) > "$tmp/usage.log" 2>&1 && "$tmp/usage" >> "$tmp/usage.log" 2>&1
result $? "the Boruix usage example builds with pkg-config kmm and runs" "$tmp/usage.log"

# shellcheck disable=SC2046
gcc -std=c99 -ffreestanding -nostdinc -Itests/boruix/include $(pkg-config --cflags kmm-freestanding) \
    -mno-red-zone -mcmodel=kernel -mgeneral-regs-only -fno-pic -fno-pie -Wall -Wextra -Werror \
    -c tests/boruix/kernel_style.c -o "$tmp/kernel.o" > "$tmp/kernel.log" 2>&1 &&
    ld -nostdlib -static --gc-sections -T tests/boruix/fake_kernel.ld -o "$tmp/kernel.elf" \
        "$tmp/kernel.o" $(pkg-config --libs kmm-freestanding) >> "$tmp/kernel.log" 2>&1
result $? "a fake Boruix kernel builds and links with pkg-config kmm-freestanding alone" "$tmp/kernel.log"
