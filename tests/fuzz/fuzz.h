/*
 * fuzz.h - the one thing every fuzz target does: hand its input to the
 * test it drives (fuzz_input.h) and run that test alone through ktest_run;
 * a failed check aborts, so libFuzzer keeps the input. Rerunning a kept
 * input (`build/fuzz/fuzz-<name> <file>`) prints the test's diagnostics.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <kmm/kmm.h>

#include "fuzz_input.h"
#include "ktest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    (void)text;
    (void)len;
}

static void fuzz_to_stderr(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stderr);
}

/* Runs the test named test ("suite.name") on data. */
static inline int fuzz_run(const char *test, const uint8_t *data, size_t size)
{
    kt_fuzz_input = data;
    kt_fuzz_input_len = size;
    struct kmm_sink sink = {fuzz_quiet, NULL};
    if (ktest_run(test, &sink) != 0) {
        /* Again, deterministically, with the diagnostics shown. */
        sink.write = fuzz_to_stderr;
        ktest_run(test, &sink);
        abort();
    }
    return 0;
}

#endif /* FUZZ_H */
