/*
 * fuzz_vmalloc.c - a libFuzzer target for kernel virtual areas: each input
 * drives the random mix of tests/test_vmalloc.c (vmalloc, vmap and raw
 * areas of any size allocated and freed in 24 slots, and kmm_kva_purge),
 * which checks that each new vmalloc or vmap area takes the parked range a
 * model of the park list names, kmm_check after every step, and that
 * every area lies in the window and never overlaps another area or its
 * guard page, and that every page, table and record comes back at the end.
 * Built by `make fuzz-targets`.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_run("vmalloc.a_random_mix_driven_by_bytes_stays_disjoint_and_exact", data, size);
}
