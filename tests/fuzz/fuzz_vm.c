/*
 * fuzz_vm.c - a libFuzzer target for the page-table engine: each input
 * drives one mixed-page-size run of tests/test_vm_random.c (map, unmap,
 * protect, replace with 4 KiB, 2 MiB and 1 GiB pages, owned frames, device
 * memory in every cache mode), checked against its shadow model through the
 * software MMU after every step, then unmapped with every table and frame
 * accounted for and kmm_check clean. A failed check aborts, so libFuzzer
 * keeps the input; rerun it with `build/fuzz/fuzz-vm <file>`, which prints
 * the test's KTAP diagnostics.
 *
 * Built by `make fuzz` (clang, -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <kmm/kmm.h>

#include "fuzz_input.h"
#include "ktest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    (void)text;
    (void)len;
}

static void to_stderr(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stderr);
}

#define TEST "vm_random.mixed_page_sizes_driven_by_bytes_match_the_shadow"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kt_fuzz_input = data;
    kt_fuzz_input_len = size;
    struct kmm_sink sink = {quiet, NULL};
    if (ktest_run(TEST, &sink) != 0) {
        /* Again, deterministically, with the diagnostics shown. */
        sink.write = to_stderr;
        ktest_run(TEST, &sink);
        abort();
    }
    return 0;
}
