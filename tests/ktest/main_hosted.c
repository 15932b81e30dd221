/*
 * main_hosted.c - the hosted test runner: runs the tests linked into this
 * executable and writes KTAP to stdout for prove.
 *
 *     usage: <suite>.t [filter]     filter: "suite" or "suite.test" prefix
 * Exit status 0 iff no test failed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ktest.h"

static void write_stdout(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

/* A failure, on stderr too (ktest_set_failure_sink), named by the test
 * program. */
static void write_failure(void *ctx, const char *text, size_t len)
{
    fprintf(stderr, "%s: %.*s", (const char *)ctx, (int)len, text);
    fflush(stderr);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : getenv("KTEST_FILTER");
    struct kmm_sink out = {write_stdout, NULL};
    struct kmm_sink failures = {write_failure, argv[0]};
    ktest_set_failure_sink(&failures);
    return ktest_run(filter, &out) ? EXIT_FAILURE : EXIT_SUCCESS;
}
