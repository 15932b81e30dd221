/*
 * fixture.h - what most test suites start from: an instance of the library
 * on a test machine of its own, plus the checks every suite makes. Written
 * once here so the suites carry only their own questions.
 */
#ifndef KTEST_FIXTURE_H
#define KTEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include <kmm/kmm.h>
#include <kmm/page.h>

#include "env.h"
#include "ktest.h"

/* An instance on its own machine. */
struct kt_kmm {
    struct kt_machine *m;
    struct kmm *k;
};

/*
 * kt_kmm_up - create the machine for map[0..n) and an instance on it with
 * cpus CPUs and `levels` paging levels (0: 4), then empty this CPU's page
 * cache, which kmm_init's own allocations leave non-empty, so a test starts
 * from a quiet allocator. Returns false when this world cannot provide the
 * machine (the test is marked skipped) or kmm_init failed (the test is
 * marked failed); nothing is left to tear down then.
 */
bool kt_kmm_up(struct ktest *t, struct kt_kmm *f, const struct kmm_region *map, size_t n,
               unsigned cpus, unsigned levels);

/* Tear down what kt_kmm_up made. */
void kt_kmm_down(struct kt_kmm *f);

/* The free pages once this CPU's page cache is drained (what frees gave
 * back to the zones). */
uint64_t kt_free_pages(struct kmm *k);

/* Fails the test at file:line unless kmm_check finds nothing wrong. */
void kt_expect_healthy_at(struct ktest *t, struct kmm *k, const char *file, int line);
#define KT_EXPECT_HEALTHY(t, k) kt_expect_healthy_at((t), (k), __FILE__, __LINE__)

/* Whether two statistics have the same free pages and free blocks per
 * order in every zone (the buddyinfo). */
bool kt_same_buddyinfo(const struct kmm_page_stats *a, const struct kmm_page_stats *b);

/*
 * kt_expect_misuse_at - the checks SPEC §9 asks of a rejected call: it
 * returned want_err; misuse counter `kind` went up by one and no other one
 * moved; the free lists and the allocated count are as in *before; the last
 * error line contains log_needle (the call's name); kmm_check is clean.
 */
void kt_expect_misuse_at(struct ktest *t, struct kt_kmm *f, int got, int want_err, int kind,
                         const struct kmm_page_stats *before, const char *what,
                         const char *log_needle, const char *file, int line);
#define kt_expect_misuse(t, f, got, want_err, kind, before, what, needle)                          \
    kt_expect_misuse_at((t), (f), (got), (want_err), (kind), (before), (what), (needle), __FILE__, \
                        __LINE__)

/* splitmix64: the next number of the stream whose state is *state (seed it
 * with any value). The tests' one random generator. */
uint64_t kt_rng(uint64_t *state);

/*
 * Where a randomised test takes its choices from: kt_rng's stream from seed
 * (bytes NULL), or a fuzzer's input, four bytes per choice, until it runs
 * out (ended is then set and further choices are 0). The same test body
 * thus runs from a seed or from fuzz_input.h's bytes.
 */
struct kt_chooser {
    uint64_t seed;
    const uint8_t *bytes;
    size_t len, at;
    bool ended;
};

/* A choice in [0, n), n > 0. */
uint64_t kt_choose(struct kt_chooser *c, uint64_t n);

/*
 * kt_fuzz_chooser - the chooser of a byte-driven test: over the fuzz
 * target's input (fuzz_input.h) when there is one, else over `fixed`, len
 * bytes the function fills from seed, so the byte-driven path runs (and is
 * checked) in every world.
 */
struct kt_chooser kt_fuzz_chooser(uint8_t *fixed, size_t len, uint64_t seed);

/* Text a kmm_sink collected: kt_text_write keeps what is written,
 * NUL-terminated, cut at the buffer's size. Start with len 0. */
struct kt_text {
    char buf[8192];
    size_t len;
};
void kt_text_write(void *ctx, const char *s, size_t n);

#endif /* KTEST_FIXTURE_H */
