#!/usr/bin/env bash
# tools/example-test.sh EXE - run an example program (examples/*.c) and
# check what it prints (TAP, one test per expectation). The expectations of
# each example are below, by its name; an example without any fails.
set -uo pipefail
exe=$1
name=$(basename "$exe")
out=$("$exe" 2>&1)
status=$?

checks=()
case "$name" in
boruix_usage)
    # The report's map: usable RAM 1 MiB .. 128 MiB, of which the low 16 MiB
    # are kept for the kernel image: 112 MiB managed.
    checks=('^init: 0$' '^kmalloc\(1024\): ok$' '^alloc_page: 0x[0-9a-f]+$' '^map_page: 0$'
            '^translated: same page$' '^unmap_page: same page$'
            '^summary: 0: 112 MiB total, [0-9]+ MiB used, [0-9]+ MiB free, heap [0-9]+ KiB used'
            '^check: 0$')
    ;;
esac

echo "1..$((2 + ${#checks[@]}))"
if [ "$status" -eq 0 ]; then echo "ok 1 $name exits 0"; else echo "not ok 1 $name exits $status"; fi
if [ ${#checks[@]} -gt 0 ]; then echo "ok 2 $name has expectations"; else echo "not ok 2 $name has no expectations in $0"; fi
i=2
for re in "${checks[@]}"; do
    i=$((i + 1))
    if grep -Eq -- "$re" <<< "$out"; then
        echo "ok $i $name prints /$re/"
    else
        echo "not ok $i $name prints /$re/"
    fi
done
sed 's/^/# /' <<< "$out"
