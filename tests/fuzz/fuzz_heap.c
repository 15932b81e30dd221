/*
 * fuzz_heap.c - a libFuzzer target for the kernel heap: each input drives
 * the random mix of tests/test_heap_random.c (every allocation and free
 * call, reallocations, two object caches, drains, shrinks and the lending
 * setting, over 64 slots), which checks every block's alignment, usable
 * size and fill pattern against its shadow model, the statistics against
 * the model after every step and kmm_check every few, and that every page
 * comes back at the end.
 * Built by `make fuzz-targets`.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_run("heap_random.a_random_mix_driven_by_bytes_matches_the_shadow_model", data,
                    size);
}
