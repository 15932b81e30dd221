/*
 * fuzz_page.c - a libFuzzer target for the page allocator: each input
 * drives the randomised run of tests/test_page.c (allocations of orders
 * 0-9 from every zone, zeroed ones, frees, frees of the wrong order and
 * double frees), checked against its shadow model and kmm_check after
 * every step, then freed back to the initial buddyinfo. Built by
 * `make fuzz-targets`.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_run("page.random_allocs_and_frees_driven_by_bytes_match_a_shadow_model", data,
                    size);
}
