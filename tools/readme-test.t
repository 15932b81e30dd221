#!/usr/bin/env bash
# tools/readme-test.t - the README keeps working (TAP, run by `make test`):
#   1. `make install` puts the hosted library, the public headers, the hosted
#      port's headers and kmm.pc under a fresh prefix;
#   2. every ```c block of README.md compiles as written against that install
#      (pkg-config, warnings as errors) and runs to exit status 0.
set -uo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The C blocks, one file each.
awk -v dir="$tmp" '
    /^```c$/ { n++; f = sprintf("%s/readme-%d.c", dir, n); inblock = 1; next }
    /^```$/ && inblock { inblock = 0; close(f); next }
    inblock { print > f }
' README.md
blocks=("$tmp"/readme-*.c)
[ -e "${blocks[0]}" ] || blocks=()
echo "1..$((1 + ${#blocks[@]}))"

if make -s install PREFIX="$tmp/prefix" > "$tmp/install.log" 2>&1 &&
   [ -f "$tmp/prefix/lib/pkgconfig/kmm.pc" ]; then
    echo "ok 1 make install PREFIX=... installs the library, headers and kmm.pc"
else
    echo "not ok 1 make install PREFIX=... installs the library, headers and kmm.pc"
    sed 's/^/# /' "$tmp/install.log"
fi

export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
i=1
for src in "${blocks[@]}"; do
    i=$((i + 1))
    exe="${src%.c}"
    # shellcheck disable=SC2046 # pkg-config's words are meant to split
    if cc -std=c11 -Wall -Wextra -Werror "$src" -o "$exe" $(pkg-config --cflags --libs kmm) \
           > "$tmp/out" 2>&1 && "$exe" > "$tmp/out" 2>&1; then
        echo "ok $i README C block $((i - 1)) compiles as written and runs"
    else
        echo "not ok $i README C block $((i - 1)) compiles as written and runs"
        sed 's/^/# /' "$tmp/out"
    fi
done
