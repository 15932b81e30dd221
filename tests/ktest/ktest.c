/*
 * ktest.c - the KTAP runner. Freestanding: the same object runs hosted and in
 * the kernel. Output goes through a kmm_sink; formatting through kmm_fmt.
 */
#include "ktest.h"

#include <stdarg.h>

#include <kmm/fmt.h>

/* The section the KTEST macro fills; the linker defines its bounds (the
 * demo kernel's linker script does so explicitly). */
extern const struct ktest_case __start_ktest_cases[];
extern const struct ktest_case __stop_ktest_cases[];

#define KTEST_MAX_CASES 4096

struct ktest {
    const struct kmm_sink *out;
    const struct ktest_case *c; /* the case running */
    bool failed;
    bool skipped;
    char skip_reason[96];
};

/* ktest_set_failure_sink's sink, or NULL. */
static const struct kmm_sink *failure_sink;

static void put(const struct kmm_sink *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(const struct kmm_sink *out, const char *fmt, ...)
{
    char line[320];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    out->write(out->ctx, line, n < sizeof(line) ? n : sizeof(line) - 1);
}

bool ktest_streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

bool ktest_contains(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        const char *h = hay, *n = needle;
        while (*n && *h == *n) {
            h++;
            n++;
        }
        if (!*n)
            return true;
    }
    return !*needle;
}

static int str_cmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static bool starts_with(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return false;
    return true;
}

void ktest_fail_at(struct ktest *t, const char *file, int line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    put(t->out, "    # %s:%d: %s\n", file, line, msg);
    if (failure_sink)
        put(failure_sink, "%s.%s: %s:%d: %s\n", t->c->suite, t->c->name, file, line, msg);
    t->failed = true;
}

void ktest_set_failure_sink(const struct kmm_sink *sink)
{
    failure_sink = sink;
}

void ktest_skip(struct ktest *t, const char *reason)
{
    t->skipped = true;
    kmm_snprintf(t->skip_reason, sizeof(t->skip_reason), "%s", reason);
}

void ktest_diag(struct ktest *t, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    put(t->out, "    # %s\n", msg);
}

bool ktest_failed(const struct ktest *t)
{
    return t->failed;
}

/* Source order: by file name, then line. */
static bool before(const struct ktest_case *a, const struct ktest_case *b)
{
    int c = str_cmp(a->file, b->file);
    return c < 0 || (c == 0 && a->line < b->line);
}

static bool selected(const struct ktest_case *c, const char *filter)
{
    if (!filter || !*filter)
        return true;
    char full[160];
    kmm_snprintf(full, sizeof(full), "%s.%s", c->suite, c->name);
    return starts_with(full, filter) || starts_with(filter, full);
}

/* Inserts the selected cases of [first, first + total) into order[from, n)
 * in source order; returns the new n. */
static size_t insert_cases(const struct ktest_case **order, size_t from, size_t n,
                           const struct ktest_case *first, size_t total, const char *filter)
{
    for (size_t k = 0; k < total; k++) {
        const struct ktest_case *c = &first[k];
        if (!selected(c, filter) || n == KTEST_MAX_CASES)
            continue;
        size_t i = n++;
        while (i > from && before(c, order[i - 1])) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = c;
    }
    return n;
}

/* Sorts the selected registered cases into order[], then the selected
 * extra ones after them; returns how many. */
static size_t collect(const struct ktest_case **order, const char *filter,
                      const struct ktest_case *extra, size_t extra_count)
{
    /* The bounds are two linker symbols around one section: count the entries
     * by address rather than compare pointers to what C sees as two objects. */
    size_t total = ((uintptr_t)__stop_ktest_cases - (uintptr_t)__start_ktest_cases) /
                   sizeof(struct ktest_case);
    size_t n = insert_cases(order, 0, 0, __start_ktest_cases, total, filter);
    return insert_cases(order, n, n, extra, extra_count, filter);
}

static size_t suite_length(const struct ktest_case **order, size_t from, size_t n)
{
    size_t i = from;
    while (i < n && ktest_streq(order[i]->suite, order[from]->suite))
        i++;
    return i - from;
}

int ktest_run(const char *filter, const struct kmm_sink *out)
{
    return ktest_run_with(filter, NULL, 0, out);
}

int ktest_run_with(const char *filter, const struct ktest_case *extra, size_t extra_count,
                   const struct kmm_sink *out)
{
    static const struct ktest_case *order[KTEST_MAX_CASES];
    size_t n = collect(order, filter, extra, extra_count);
    size_t suites = 0;
    for (size_t i = 0; i < n; i += suite_length(order, i, n))
        suites++;

    put(out, "KTAP version 1\n1..%zu\n", suites);
    int failed = 0;
    size_t suite_no = 0;
    for (size_t i = 0; i < n;) {
        size_t len = suite_length(order, i, n);
        const char *suite = order[i]->suite;
        put(out, "    KTAP version 1\n    # Subtest: %s\n    1..%zu\n", suite, len);
        int suite_failed = 0;
        for (size_t j = 0; j < len; j++) {
            const struct ktest_case *c = order[i + j];
            struct ktest t = {.out = out, .c = c};
            c->run(&t);
            if (t.failed) {
                suite_failed++;
                put(out, "    not ok %zu %s\n", j + 1, c->name);
            } else if (t.skipped) {
                put(out, "    ok %zu %s # SKIP %s\n", j + 1, c->name, t.skip_reason);
            } else {
                put(out, "    ok %zu %s\n", j + 1, c->name);
            }
        }
        failed += suite_failed;
        put(out, "%s %zu %s\n", suite_failed ? "not ok" : "ok", ++suite_no, suite);
        i += len;
    }
    if (n == 0)
        put(out, "# no tests matched\n");
    return failed;
}
