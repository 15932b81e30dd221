/*
 * fixture.c - the shared test fixture (fixture.h). Freestanding: it runs in
 * the hosted runner and in the kernel.
 */
#include "fixture.h"
#include "fuzz_input.h"

#include <kmm/check.h>

bool kt_kmm_up(struct ktest *t, struct kt_kmm *f, const struct kmm_region *map, size_t n,
               unsigned cpus, unsigned levels)
{
    f->m = kt_machine_create(t, map, n);
    if (!f->m)
        return false;
    struct kmm_config cfg = {.port = kt_machine_port(f->m),
                             .regions = map,
                             .region_count = n,
                             .cpu_count = cpus,
                             .paging_levels = levels};
    int err = kmm_init(&cfg, &f->k);
    if (err) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init: %s", kmm_strerror(err));
        kt_machine_destroy(f->m);
        return false;
    }
    kmm_page_drain_cpu(f->k);
    return true;
}

void kt_kmm_down(struct kt_kmm *f)
{
    kmm_fini(f->k);
    kt_machine_destroy(f->m);
}

uint64_t kt_free_pages(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &s);
    return s.free_pages;
}

void kt_expect_healthy_at(struct ktest *t, struct kmm *k, const char *file, int line)
{
    struct kmm_check_result r;
    if (kmm_check(k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, file, line, "kmm_check: status %d, %lu problems, first: %s", r.status,
                      r.problems, r.first);
}

void kt_expect_misuse_at(struct ktest *t, struct kt_kmm *f, int got, int want_err, int kind,
                         const struct kmm_page_stats *before, const char *what,
                         const char *log_needle, const char *file, int line)
{
    struct kmm_page_stats after;
    kmm_page_stats(f->k, &after);
    if (got != want_err)
        ktest_fail_at(t, file, line, "%s: returned %s, want %s", what, kmm_strerror(got),
                      kmm_strerror(want_err));
    for (int i = 0; i < KMM_MISUSE_COUNT; i++)
        if (after.misuse[i] != before->misuse[i] + (i == kind))
            ktest_fail_at(t, file, line, "%s: misuse[%d] went %llu -> %llu", what, i,
                          (unsigned long long)before->misuse[i],
                          (unsigned long long)after.misuse[i]);
    if (!kt_same_buddyinfo(before, &after) || after.allocated_pages != before->allocated_pages)
        ktest_fail_at(t, file, line, "%s: the free lists changed", what);
    if (!ktest_contains(kt_machine_last_error(f->m), log_needle))
        ktest_fail_at(t, file, line, "%s: logged \"%s\"", what, kt_machine_last_error(f->m));
    struct kmm_check_result r;
    if (kmm_check(f->k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, file, line, "%s: kmm_check: %s", what, r.first);
}

uint64_t kt_rng(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* fuzz_input.h: NULL unless a fuzz target set it. */
const uint8_t *kt_fuzz_input;
size_t kt_fuzz_input_len;

uint64_t kt_choose(struct kt_chooser *c, uint64_t n)
{
    if (!c->bytes)
        return kt_rng(&c->seed) % n;
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++) {
        if (c->at == c->len) {
            c->ended = true;
            break;
        }
        v = v << 8 | c->bytes[c->at++];
    }
    return v % n;
}

struct kt_chooser kt_fuzz_chooser(uint8_t *fixed, size_t len, uint64_t seed)
{
    if (kt_fuzz_input)
        return (struct kt_chooser){.bytes = kt_fuzz_input, .len = kt_fuzz_input_len};
    for (size_t i = 0; i < len; i++)
        fixed[i] = (uint8_t)kt_rng(&seed);
    return (struct kt_chooser){.bytes = fixed, .len = len};
}

void kt_text_write(void *ctx, const char *s, size_t n)
{
    struct kt_text *tx = ctx;
    for (size_t i = 0; i < n && tx->len + 1 < sizeof(tx->buf); i++)
        tx->buf[tx->len++] = s[i];
    tx->buf[tx->len] = '\0';
}

bool kt_same_buddyinfo(const struct kmm_page_stats *a, const struct kmm_page_stats *b)
{
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            if (a->zones[z].free_blocks[o] != b->zones[z].free_blocks[o])
                return false;
    return a->free_pages == b->free_pages;
}
