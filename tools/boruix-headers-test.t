#!/usr/bin/env bash
# tools/boruix-headers-test.t - the Boruix headers compile as Boruix's kernel
# compiles them (TAP, run by `make test`): tests/boruix/kernel_style.c, which
# includes only <boruix/memory.h> and <boruix/rust_memory.h>, as C99
# freestanding with -nostdinc against a kernel's own stdint.h, stddef.h and
# stdbool.h (tests/boruix/include), with gcc and clang; and as C++.
set -uo pipefail
cd "$(dirname "$0")/.."
src=tests/boruix/kernel_style.c
flags=(-std=c99 -ffreestanding -nostdinc -Itests/boruix/include -Iinclude -Wall -Wextra -Werror
       -pedantic -Wstrict-prototypes -Wmissing-prototypes -mno-red-zone -mcmodel=kernel
       -mgeneral-regs-only -fno-pic -fno-pie -fsyntax-only)
echo 1..4
n=0
run() { # description, command...
    n=$((n + 1))
    local what=$1
    shift
    if out=$("$@" 2>&1); then echo "ok $n $what"; else echo "not ok $n $what"; sed 's/^/# /' <<< "$out"; fi
}
run "gcc: C99 freestanding, the kernel's own headers only" gcc "${flags[@]}" "$src"
run "clang: C99 freestanding, the kernel's own headers only" clang "${flags[@]}" "$src"
run "g++: C++11" g++ -std=c++11 -Wall -Wextra -Werror -Iinclude -fsyntax-only -x c++ "$src"
run "clang++: C++17" clang++ -std=c++17 -Wall -Wextra -Werror -Iinclude -fsyntax-only -x c++ "$src"
