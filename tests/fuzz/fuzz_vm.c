/*
 * fuzz_vm.c - a libFuzzer target for the page-table engine: each input
 * drives one mixed-page-size run of tests/test_vm_random.c (map, unmap,
 * protect, replace with 4 KiB, 2 MiB and 1 GiB pages, owned frames, device
 * memory in every cache mode), checked against its shadow model through the
 * software MMU after every step, then unmapped with every table and frame
 * accounted for and kmm_check clean. Built by `make fuzz-targets`.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_run("vm_random.mixed_page_sizes_driven_by_bytes_match_the_shadow", data, size);
}
