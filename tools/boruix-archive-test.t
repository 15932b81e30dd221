#!/usr/bin/env bash
# tools/boruix-archive-test.t - the drop-in archive (`make boruix`,
# build/boruix/libkmm-boruix.a) links in place of Boruix's librust_memory.a
# with nothing else (TAP, run by `make test`):
#   - every global symbol it defines is rust_*, kmm_*, or a weak memcpy,
#     memset, memmove, memcmp;
#   - no SSE or MMX register anywhere (Boruix runs with CR4's SSE bits clear);
#   - a fake Boruix kernel (tests/boruix/kernel_style.c, every §8 name) links
#     against it alone with a Limine-style linker script and -gc-sections,
#     nothing undefined, the archive's Limine memory-map request kept in
#     .requests; and again with the kernel's own memset, which wins.
set -uo pipefail
cd "$(dirname "$0")/.."
ar=build/boruix/libkmm-boruix.a
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo 1..6
n=0
result() { # ok?, description, details file
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n $2"; else echo "not ok $n $2"; sed 's/^/# /' "$3"; fi
}

make -s boruix > "$tmp/make.log" 2>&1
result $? "make boruix builds $ar" "$tmp/make.log"

# Defined globals: nm's T, D, B, R (strong) and W, V (weak).
nm -g --defined-only "$ar" 2>/dev/null | awk 'NF == 3 { print $2, $3 }' | sort -u > "$tmp/defined"
grep -Ev '^[TDBR] (rust_|kmm_)|^W (memcpy|memset|memmove|memcmp|kmm_boruix_log)$' "$tmp/defined" > "$tmp/foreign"
[ -s "$tmp/defined" ] && ! [ -s "$tmp/foreign" ]
result $? "every defined global is rust_*, kmm_* or a weak mem*/log hook ($(wc -l < "$tmp/defined") symbols)" "$tmp/foreign"

objdump -d "$ar" 2>/dev/null | grep -E '%(x|y|z)mm[0-9]|%mm[0-7]' | head > "$tmp/sse"
! [ -s "$tmp/sse" ]
result $? "no SSE or MMX register in the archive" "$tmp/sse"

cflags=(-std=c99 -ffreestanding -nostdinc -Itests/boruix/include -Iinclude -O2 -mno-red-zone
        -mcmodel=kernel -mgeneral-regs-only -fno-pic -fno-pie -ffunction-sections -fdata-sections)
gcc "${cflags[@]}" -c tests/boruix/kernel_style.c -o "$tmp/kernel.o" > "$tmp/link.log" 2>&1 &&
    ld -nostdlib -static --gc-sections -T tests/boruix/fake_kernel.ld -o "$tmp/kernel.elf" \
        "$tmp/kernel.o" "$ar" >> "$tmp/link.log" 2>&1
result $? "a fake Boruix kernel links against the archive alone" "$tmp/link.log"

# The request's id (LIMINE_MEMMAP_REQUEST) as the link kept it.
objcopy -O binary --only-section=.requests "$tmp/kernel.elf" "$tmp/requests.bin" > "$tmp/req.log" 2>&1
od -An -tx8 -v "$tmp/requests.bin" 2>/dev/null | tr -s ' ' '\n' > "$tmp/words"
grep -qx 67cf3d9d378a806f "$tmp/words" && grep -qx e304acdfc50c3c62 "$tmp/words"
result $? "the Limine memory-map request is kept in .requests" "$tmp/req.log"

gcc "${cflags[@]}" -c tests/boruix/own_memset.c -o "$tmp/memset.o" > "$tmp/own.log" 2>&1 &&
    ld -nostdlib -static --gc-sections -T tests/boruix/fake_kernel.ld -o "$tmp/own.elf" \
        "$tmp/kernel.o" "$tmp/memset.o" "$ar" >> "$tmp/own.log" 2>&1 &&
    [ "$(nm "$tmp/own.elf" | awk '$3 == "memset" { print $2 }')" = T ] ||
    { echo "memset in the link:"; nm "$tmp/own.elf" | grep ' memset$'; } >> "$tmp/own.log"
result $? "the kernel's own memset wins over the archive's weak one" "$tmp/own.log"
