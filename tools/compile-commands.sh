#!/usr/bin/env bash
# tools/compile-commands.sh - print compile_commands.json for every C file in
# the tree: kernel/ and port/x86_64/ with the freestanding flags,
# port/boruix/ with the drop-in's, everything else hosted, as
# mk/variant.mk builds them (clang-tidy and editors read it).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(pwd)
hosted=$(make -s -f mk/variant.mk WORLD=hosted CC=clang --eval 'print-cflags: ; @echo $(CFLAGS)' print-cflags)
kernel=$(make -s -f mk/variant.mk WORLD=kernel CC=clang --eval 'print-cflags: ; @echo $(CFLAGS)' print-cflags)
boruix=$(make -s -f mk/variant.mk WORLD=boruix CC=clang --eval 'print-cflags: ; @echo $(CFLAGS)' print-cflags)
first=1
echo "["
for f in $(git ls-files -co --exclude-standard '*.c'); do
    case "$f" in kernel/* | port/x86_64/*) flags=$kernel ;; port/boruix/*) flags=$boruix ;; *) flags=$hosted ;; esac
    flags=${flags//-MMD -MP/}
    [ $first = 1 ] || echo ","
    first=0
    printf '  {"directory": "%s", "file": "%s", "command": "clang %s -c %s"}' "$dir" "$f" "$flags" "$f"
done
echo
echo "]"
