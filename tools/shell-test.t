#!/usr/bin/env bash
# tools/shell-test.t - drive build/hosted/kmm-shell (the demo kernel's shell
# over a simulated PC, tools/hosted_shell.c) through a pipe, as a person at
# the serial console would, and check each command's answer. TAP.
#
# KMM_SHELL names the binary (default build/hosted/kmm-shell; `make check`
# passes its ASan build). The tests that check figures against the library's
# statistics, byte by byte and key by key, are tests/test_shell.c.
set -u
cd "$(dirname "$0")/.."
shell=${KMM_SHELL:-build/hosted/kmm-shell}
if [ ! -x "$shell" ]; then
    echo "1..0 # SKIP $shell is not built (make shell)"
    exit 0
fi

n=0
fails=0
ok() { # ok <condition-status> <description>
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        fails=$((fails + 1))
    fi
}
has() { grep -qF -- "$1" <<<"$out"; }
run() { # run <input>: the shell's answer in $out, its exit status in $rc
    out=$(printf '%b' "$1" | KMM_SHELL_RAM_MIB=${RAM:-512} "$shell" 2>&1)
    rc=$?
}

run 'help\nhalt\n'
missing=""
for c in help meminfo buddyinfo zoneinfo slabinfo vmallocinfo pagetables report misuse check \
         leaks events selftest stress bench reboot halt memtest heaptest pgtest vmmtest memprottest; do
    grep -qE "^  $c " <<<"$out" || missing="$missing $c"
done
ok "$([ -z "$missing" ]; echo $?)" "help lists every command${missing:+ (missing:$missing)}"
ok "$rc" "halt ends the shell with status 0"

run 'meminfo\nzoneinfo\n'
total=$(awk '/^MemTotal:/ {print $2}' <<<"$out")
zones=$(awk '/^(DMA|DMA32|Normal) / {s += $3} END {print s * 4}' <<<"$out")
ok "$([ -n "$total" ] && [ "$total" = "$zones" ]; echo $?)" \
   "meminfo's MemTotal ($total kB) is the zones' managed pages ($zones kB)"
has 'kB = 1024 bytes' && has 'VmallocTotal:' && has 'PageTables:'
ok $? "meminfo names its units and its rows"

run 'buddyinfo\n'
has 'Free blocks of 2^order pages per zone' && grep -qE '^  DMA32 +[0-9]+' <<<"$out"
ok $? "buddyinfo shows free blocks per order with its header"

run 'stress 500\nslabinfo\n'
has 'Slab caches (slabinfo)' || has 'Heap: held'
ok $? "slabinfo shows the heap and its caches"

run 'vmallocinfo\npagetables\npagetables 0x1000\n'
has 'Kernel virtual areas: window [' && has 'Page tables (4 levels)' &&
    has '0x0000000000001000: not mapped in the kernel space'
ok $? "vmallocinfo and pagetables show the window and the tables, and a lookup"

run 'check\n'
grep -qE '^check: kmm_check ok \([0-9]+ frame descriptors' <<<"$out"
ok $? "check says ok with what it walked"

run 'leaks on\nleaks mark\nleaks\nevents\nmisuse\nreport\n'
has 'allocation tracking on' && has 'mark: generation' && has 'Heap leaks since generation' &&
    has 'Heap debugging: modes' && has 'Rejected calls (misuse): 0' && has 'Physical memory map'
ok $? "leaks, events, misuse and report answer"

run 'selftest\n'
has 'error: selftest: this host has no test suite to run'
ok $? "selftest says the hosted shell has no suite"
ok "$([ "$rc" -ne 0 ]; echo $?)" "a failed last command makes the exit status nonzero"

run 'stress 4000 3\n'
has 'stress: 4000 random operations (seed 3)' && has ' 0 mismatches' &&
    has 'stress: everything given back' && has 'stress: PASS'
ok $? "stress verifies contents, gives everything back and passes"

run 'bench scale=256 reps=3\n'
names="P1_page_lifo_pair P1_page_lifo_pair.alloc_only P1_page_lifo_pair.free_only
P1z_page_zero_lifo_pair P1z_page_zero_lifo_pair.alloc_only P1z_page_zero_lifo_pair.free_only
P2_mixed_order_step H1_kmalloc64_lifo_pair H2_kmalloc_rand_step M1a_vmap_vunmap_1_per_page
M1a_vmap_vunmap_16_per_page M1a_vmap_vunmap_512_per_page M1a_vmap_vunmap_16384_per_page
M1b_vm_map_ram_1_per_page M1b_vm_map_ram_16_per_page M1c_pte_map_unmap_fixedva_pair
M1c_pte_map_touch_unmap_fixedva_pair M1d_pte_map512_then_rangeunmap_per_page"
bad=""
for nm in $names; do
    grep -qE "^mmbench: RESULT $(sed 's/\./\\./g' <<<"$nm") [0-9]+\.[0-9] ns/op runs=[0-9]+\.[0-9],[0-9]+\.[0-9],[0-9]+\.[0-9] ops=[0-9]+ fail=0$" <<<"$out" ||
        bad="$bad $nm"
done
ok "$([ -z "$bad" ]; echo $?)" "bench prints every RESULT line in the module's format${bad:+ (bad:$bad)}"
grep -qE '^mmbench: START kernel=kmm-[0-9.]+ .*reps=3 scale_div=256 ' <<<"$out" &&
    grep -qE '^mmbench: DONE cpu=0 total_s=[0-9]+$' <<<"$out" &&
    has 'mmbench: INFO P2 frees_per_step=' && has 'mmbench: INFO H2 mean_request_bytes='
ok $? "bench frames them with START, INFO and DONE lines"
has 'bench: everything given back' && has 'bench: 18 results, 0 skipped, 0 failed allocations: PASS'
ok $? "bench gives every page back and passes"

# The Boruix commands: the interface adopted the shell's instance (the
# simulated machine's mirror window plays Boruix's heap window).
run 'memtest\nheaptest\npgtest\nvmmtest\nmemprottest\ncheck\n'
passes=$(grep -cE '^(memtest|heaptest|pgtest|vmmtest|memprottest): PASS \([0-9]+ steps\)$' <<<"$out")
ok "$([ "$passes" = 5 ] && ! has '[FAIL]' && [ "$rc" -eq 0 ]; echo $?)" \
   "memtest, heaptest, pgtest, vmmtest and memprottest each PASS through the Boruix interface ($passes of 5)"
pa=$(sed -n 's/^\[OK\] physical page at \(0x[0-9a-f]*\)$/\1/p' <<<"$out")
[ -n "$pa" ] && grep -qE "^\[OK\] 0x[0-9a-f]+ translates to $pa, the page mapped$" <<<"$out" &&
    has "[OK] unmapped; it returned physical $pa" && has '[OK] translation returns 0x0' &&
    has '[OK] no memory leaked' && has '[OK] given back; used 0 KiB as before' &&
    has '  present yes, writable no, user no, executable yes' &&
    has '  present yes, writable yes, user no, executable no' &&
    grep -qE '^check: kmm_check ok' <<<"$out"
ok $? "the Boruix commands show their steps: pgtest's translation, heaptest's leak check, vmmtest giving back, memprottest's flags; check ok after"

run 'memtest now\n'
has 'error: memtest: takes no arguments' && ! has '[TEST'
ok $? "a Boruix command given an argument refuses and runs nothing"

long=$(printf 'check %0200d' 0)
run "frobnicate\n$long\nbench reps=99\nstress -1\nmeminfo x\n"
has "error: unknown command 'frobnicate'" && has 'error: line too long (more than 120 bytes)' &&
    has 'usage: bench' && has 'usage: stress' && has 'usage: meminfo' && ! has 'kmm_check'
ok $? "bad input gets a clear message and runs nothing"

run 'chex\bck\nx y\025junk\003zonei\t\n\033[A\n'
[ "$(grep -c 'kmm_check ok' <<<"$out")" = 1 ] && [ "$(grep -c '^Zones (figures' <<<"$out")" = 2 ] &&
    ! has 'unknown command'
ok $? "edit keys through the pipe: backspace, Ctrl-U, Ctrl-C, Tab, history"

run 'halt\ncheck\n'
! has 'kmm_check'
ok $? "nothing runs after halt"

echo "1..$n"
[ "$fails" -eq 0 ]
