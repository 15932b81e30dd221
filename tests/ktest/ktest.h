/*
 * ktest.h - the test framework: tests written once, run hosted and in a kernel.
 *
 * A test body uses only this header, tests/ktest/env.h and the library's
 * public headers: no libc. Each test registers itself in the linker section
 * "ktest_cases"; a runner (ktest_run) walks the section in source order and
 * reports in KTAP version 1, which prove reads as TAP:
 *
 *     KTAP version 1
 *     1..2                        one top-level test per suite
 *         KTAP version 1
 *         # Subtest: memmap
 *         1..3
 *         ok 1 unordered_regions_come_out_sorted
 *         # tests/test_memmap.c:40: expected map[0].base == 0x1000 ...
 *         not ok 2 reserved_wins_over_usable
 *         ok 3 huge_machine # SKIP needs 256 GiB
 *     not ok 1 memmap
 *
 * Name tests for the question they answer. A test fails if any check fails;
 * KT_ASSERT* also stop the test (they return from the test function, so use
 * them only in the test function itself, not in helpers).
 */
#ifndef KTEST_H
#define KTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>

struct ktest; /* the running test, opaque */

struct ktest_case {
    const char *suite; /* the file's suite name */
    const char *name;  /* the question the test answers */
    const char *file;
    int line;
    void (*run)(struct ktest *t);
};

/* Define a test: KTEST(suite, name) { ... body using t ... } */
#define KTEST(suite, name)                                                                         \
    static void ktest_fn_##suite##_##name(struct ktest *t);                                        \
    static const struct ktest_case ktest_case_##suite##_##name                                     \
        __attribute__((used, section("ktest_cases"), aligned(8))) = {                              \
            #suite, #name, __FILE__, __LINE__, ktest_fn_##suite##_##name};                         \
    static void ktest_fn_##suite##_##name(struct ktest *t)

/* Record a failure at file:line with a printf-style message. */
void ktest_fail_at(struct ktest *t, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Mark the test skipped with a reason (the test should return after). */
void ktest_skip(struct ktest *t, const char *reason);
/* Print a diagnostic line ("# ...") under the test. */
void ktest_diag(struct ktest *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether the test has failed so far. */
bool ktest_failed(const struct ktest *t);

#define KT_EXPECT(t, cond)                                                                         \
    ((cond) ? (void)0 : ktest_fail_at((t), __FILE__, __LINE__, "expected %s", #cond))

#define KT_ASSERT(t, cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ktest_fail_at((t), __FILE__, __LINE__, "assertion %s", #cond);                         \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Integer equality; both sides are shown on failure. */
#define KT_EXPECT_EQ(t, a, b)                                                                      \
    do {                                                                                           \
        unsigned long long ktest_a_ = (unsigned long long)(a);                                     \
        unsigned long long ktest_b_ = (unsigned long long)(b);                                     \
        if (ktest_a_ != ktest_b_)                                                                  \
            ktest_fail_at((t), __FILE__, __LINE__, "expected %s == %s: 0x%llx != 0x%llx", #a, #b,  \
                          ktest_a_, ktest_b_);                                                     \
    } while (0)

#define KT_ASSERT_EQ(t, a, b)                                                                      \
    do {                                                                                           \
        unsigned long long ktest_a_ = (unsigned long long)(a);                                     \
        unsigned long long ktest_b_ = (unsigned long long)(b);                                     \
        if (ktest_a_ != ktest_b_) {                                                                \
            ktest_fail_at((t), __FILE__, __LINE__, "assertion %s == %s: 0x%llx != 0x%llx", #a, #b, \
                          ktest_a_, ktest_b_);                                                     \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* String equality (NULL equals only NULL). */
#define KT_EXPECT_STREQ(t, a, b)                                                                   \
    do {                                                                                           \
        const char *ktest_a_ = (a), *ktest_b_ = (b);                                               \
        if (!ktest_streq(ktest_a_, ktest_b_))                                                      \
            ktest_fail_at((t), __FILE__, __LINE__, "expected %s == %s: \"%s\" != \"%s\"", #a, #b,  \
                          ktest_a_ ? ktest_a_ : "(null)", ktest_b_ ? ktest_b_ : "(null)");         \
    } while (0)

bool ktest_streq(const char *a, const char *b);
/* Whether needle occurs in hay. */
bool ktest_contains(const char *hay, const char *needle);

/*
 * ktest_run - run every registered test whose "suite" or "suite.name" starts
 * with filter (NULL or "" runs all), writing KTAP to out. Returns the number
 * of failed tests. Not reentrant.
 */
int ktest_run(const char *filter, const struct kmm_sink *out);

/*
 * ktest_run_with - ktest_run, then the selected cases of extra[0 ..
 * extra_count) (in source order) in the same KTAP document: checks a
 * world keeps outside the shared section (the kernel's hardware checks,
 * which must run after the shared suite). extra may be NULL with count 0.
 */
int ktest_run_with(const char *filter, const struct ktest_case *extra, size_t extra_count,
                   const struct kmm_sink *out);

/*
 * ktest_set_failure_sink - where a failure is also said, as one line
 * "suite.test: file:line: message" per failed check (NULL: nowhere, the
 * default). The hosted runner sends it to stderr, which prove passes
 * through: a harness that shows only a summary (CI) then still shows why
 * a test failed, where the KTAP diagnostics are not shown.
 */
void ktest_set_failure_sink(const struct kmm_sink *sink);

#endif /* KTEST_H */
