/*
 * heap_fixture.c - the heap suites' shared fixture (heap_fixture.h).
 * Freestanding: it runs in the hosted runner and in the kernel.
 */
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/fmt.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "env.h"

bool kt_heap_up(struct ktest *t, struct kt_heap *h, const struct kmm_region *map, size_t n,
                unsigned cpus)
{
    h->f.m = kt_machine_create(t, map, n);
    if (!h->f.m)
        return false;
    uint64_t live_base, live_size;
    kt_machine_live_window(h->f.m, &live_base, &live_size);
    h->live = live_size != 0;
    struct kmm_config cfg = {.port = kt_machine_port(h->f.m),
                             .regions = map,
                             .region_count = n,
                             .cpu_count = cpus,
                             .kva_base = h->live ? live_base : 0,
                             .kva_size = h->live ? live_size : 0};
    int err = kmm_init(&cfg, &h->f.k);
    if (err) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init: %s", kmm_strerror(err));
        kt_machine_destroy(h->f.m);
        return false;
    }
    kmm_page_drain_cpu(h->f.k);
    h->window_base = h->live ? live_base : KMM_KVA_DEFAULT_BASE;
    h->window_size = h->live ? live_size : KMM_KVA_DEFAULT_SIZE;
    return true;
}

void kt_heap_down(struct kt_heap *h)
{
    kt_kmm_down(&h->f);
}

size_t kt_heap_class_of(size_t n)
{
    if (n <= 16)
        return 16;
    if (n <= 128)
        return (n + 15) & ~(size_t)15;
    size_t pow = 128; /* pow < n <= 2 pow: eight classes of pow / 8 */
    while (2 * pow < n)
        pow *= 2;
    size_t step = pow / 8;
    return (n + step - 1) / step * step;
}

size_t kt_heap_class_at(unsigned i)
{
    if (i < 8)
        return 16 * (size_t)(i + 1);
    size_t pow = (size_t)128 << ((i - 8) / 8);
    return pow + (pow / 8) * ((i - 8) % 8 + 1);
}

size_t kt_heap_pages_of(size_t n)
{
    size_t bytes = KT_PAGE;
    while (bytes < n)
        bytes *= 2;
    return bytes;
}

bool kt_heap_is_vmalloc_size(size_t n)
{
    return n > KMM_HEAP_PAGES_MAX;
}

uint8_t *kt_heap_at(struct kt_heap *h, const void *p, size_t off, size_t *run)
{
    uint64_t va = (uint64_t)(uintptr_t)p + off;
    bool in_window = va >= h->window_base && va - h->window_base < h->window_size;
    if (h->live || !in_window) {
        *run = SIZE_MAX;
        return (uint8_t *)(uintptr_t)va;
    }
    struct kmm_vm_translation tr;
    if (kmm_vm_translate(kmm_kernel_aspace(h->f.k), va, &tr) != KMM_OK)
        return NULL;
    *run = KT_PAGE - (size_t)(va % KT_PAGE);
    return kt_machine_phys(h->f.m, tr.pa);
}

void kt_heap_fill(struct kt_heap *h, const void *p, size_t off, size_t len, uint32_t seed)
{
    size_t run = 0;
    uint8_t *b = NULL;
    for (size_t i = off; i < off + len; i++, run--, b++) {
        if (run == 0 && !(b = kt_heap_at(h, p, i, &run)))
            return;
        *b = kt_heap_pattern(seed, i);
    }
}

bool kt_heap_holds(struct kt_heap *h, const void *p, size_t off, size_t len, uint32_t seed)
{
    size_t run = 0;
    const uint8_t *b = NULL;
    for (size_t i = off; i < off + len; i++, run--, b++) {
        if (run == 0 && !(b = kt_heap_at(h, p, i, &run)))
            return false;
        if (*b != kt_heap_pattern(seed, i))
            return false;
    }
    return true;
}

bool kt_heap_all(struct kt_heap *h, const void *p, size_t off, size_t len, uint8_t byte)
{
    size_t run = 0;
    const uint8_t *b = NULL;
    for (size_t i = off; i < off + len; i++, run--, b++) {
        if (run == 0 && !(b = kt_heap_at(h, p, i, &run)))
            return false;
        if (*b != byte)
            return false;
    }
    return true;
}

struct kmm_heap_stats kt_heap_stats(struct kt_heap *h)
{
    struct kmm_heap_stats s;
    kmm_heap_stats(h->f.k, &s);
    return s;
}

struct kmm_cache_stats kt_cache_stats(struct ktest *t, struct kt_heap *h, const struct kmm_cache *c)
{
    struct kmm_cache_stats s;
    int err = kmm_cache_stats(h->f.k, c, &s);
    if (err != KMM_OK) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_cache_stats: %s", kmm_strerror(err));
        kt_fill(&s, 0, sizeof(s));
    }
    return s;
}

struct kmm_cache *kt_heap_class_cache(struct kt_heap *h, size_t size)
{
    for (unsigned i = 0; i < KT_HEAP_CLASSES; i++) {
        struct kmm_cache *c = kmm_heap_cache_at(h->f.k, i);
        struct kmm_cache_stats s;
        if (c && kmm_cache_stats(h->f.k, c, &s) == KMM_OK && s.object_size == size)
            return c;
    }
    return NULL;
}

size_t kt_heap_settle(struct kt_heap *h)
{
    /* kmm_heap_shrink empties every cache, the heap's own last; pass again
     * until the page allocator's free count stops moving, to show that one
     * pass was enough (or find what was not). */
    size_t pages = 0;
    uint64_t free_before = UINT64_MAX;
    for (unsigned pass = 0; pass < KT_HEAP_SETTLE_PASSES; pass++) {
        pages += kmm_heap_shrink(h->f.k);
        pages += kmm_kva_purge(h->f.k); /* large blocks' parked areas keep tables */
        kmm_page_drain_cpu(h->f.k);
        struct kmm_page_stats ps;
        kmm_page_stats(h->f.k, &ps);
        if (ps.free_pages == free_before)
            break;
        free_before = ps.free_pages;
    }
    return pages;
}

void kt_heap_warm(struct ktest *t, struct kt_heap *h)
{
    static const size_t large[] = {KMM_HEAP_SLAB_MAX + 1, KMM_HEAP_PAGES_MAX,
                                   KMM_HEAP_PAGES_MAX + 1};
    for (unsigned i = 0; i < KT_HEAP_CLASSES; i++) {
        void *p = kmm_malloc(h->f.k, kt_heap_class_at(i), 0);
        if (!p || kmm_free(h->f.k, p) != KMM_OK)
            ktest_fail_at(t, __FILE__, __LINE__, "warming class %zu", kt_heap_class_at(i));
    }
    for (unsigned i = 0; i < sizeof(large) / sizeof(large[0]); i++) {
        void *p = kmm_malloc(h->f.k, large[i], 0);
        if (!p || kmm_free(h->f.k, p) != KMM_OK)
            ktest_fail_at(t, __FILE__, __LINE__, "warming a block of %zu bytes", large[i]);
    }
    kt_heap_settle(h);
}

void kt_heap_snap(struct kt_heap *h, struct kt_heap_snap *s)
{
    kmm_page_stats(h->f.k, &s->page);
    kmm_heap_stats(h->f.k, &s->heap);
    kmm_misuse_stats(h->f.k, &s->misuse);
    s->err_lines = kt_machine_log_count(h->f.m, KMM_LOG_ERR);
}

/* The one cell of the misuse table that moved from a to b, by exactly one,
 * as layer * KMM_MISUSE_COUNT + class; -1 if none or more than one did. */
static int moved_cell(const struct kmm_misuse_stats *a, const struct kmm_misuse_stats *b)
{
    int cell = -1;
    for (unsigned l = 0; l < KMM_LAYER_COUNT; l++)
        for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++) {
            uint64_t d = b->count[l][m] - a->count[l][m];
            if (d == 0)
                continue;
            if (d != 1 || cell != -1)
                return -1;
            cell = (int)(l * KMM_MISUSE_COUNT + m);
        }
    return cell;
}

void kt_expect_heap_misuse_at(struct ktest *t, struct kt_heap *h, const struct kt_heap_snap *before,
                              int got, const struct kt_heap_verdict *v, size_t n, const char *what,
                              const char *needle, const char *file, int line)
{
    struct kt_heap_snap after;
    kt_heap_snap(h, &after);
    int cell = moved_cell(&before->misuse, &after.misuse);
    int layer = cell < 0 ? -1 : cell / KMM_MISUSE_COUNT,
        cls = cell < 0 ? -1 : cell % KMM_MISUSE_COUNT;
    bool matched = false;
    char want[160];
    size_t w = 0;
    want[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        matched |= got == v[i].err && layer == KMM_LAYER_HEAP && (v[i].classes >> cls & 1u);
        w += (size_t)kmm_snprintf(want + w, sizeof(want) - w, "%s%s in heap/", i ? " or " : "",
                                  kmm_strerror(v[i].err));
        for (unsigned m = 0, first = 1; m < KMM_MISUSE_COUNT && w < sizeof(want); m++)
            if (v[i].classes >> m & 1u) {
                w += (size_t)kmm_snprintf(want + w, sizeof(want) - w, "%s%s", first ? "" : "|",
                                          kmm_misuse_name(m));
                first = 0;
            }
        if (w >= sizeof(want))
            break;
    }
    if (!matched)
        ktest_fail_at(t, file, line, "%s: returned %s, counted in %s/%s (want %s)", what,
                      kmm_strerror(got),
                      cell < 0 ? "no single cell" : kmm_layer_name((unsigned)layer),
                      cell < 0 ? "-" : kmm_misuse_name((unsigned)cls), want);
    const struct kmm_heap_stats *a = &before->heap, *b = &after.heap;
    if (b->misuse != a->misuse + 1)
        ktest_fail_at(t, file, line, "%s: kmm_heap_stats.misuse went %llu -> %llu", what,
                      (unsigned long long)a->misuse, (unsigned long long)b->misuse);
    if (b->allocs != a->allocs || b->frees != a->frees || b->bytes_used != a->bytes_used ||
        b->bytes_held != a->bytes_held || b->large_blocks != a->large_blocks ||
        b->alloc_bytes != a->alloc_bytes || b->free_bytes != a->free_bytes ||
        b->failed != a->failed || b->caches != a->caches)
        ktest_fail_at(t, file, line,
                      "%s: the heap changed: allocs %llu -> %llu, frees %llu -> %llu, used %llu "
                      "-> %llu, held %llu -> %llu, failed %llu -> %llu",
                      what, (unsigned long long)a->allocs, (unsigned long long)b->allocs,
                      (unsigned long long)a->frees, (unsigned long long)b->frees,
                      (unsigned long long)a->bytes_used, (unsigned long long)b->bytes_used,
                      (unsigned long long)a->bytes_held, (unsigned long long)b->bytes_held,
                      (unsigned long long)a->failed, (unsigned long long)b->failed);
    if (!kt_same_buddyinfo(&before->page, &after.page) ||
        after.page.allocated_pages != before->page.allocated_pages)
        ktest_fail_at(t, file, line, "%s: the page allocator's free lists changed", what);
    unsigned long lines = after.err_lines - before->err_lines;
    const char *last = kt_machine_last_error(h->f.m);
    if (lines != 1 || !ktest_contains(last, needle) || !ktest_contains(last, ", caller "))
        ktest_fail_at(t, file, line, "%s: %lu error lines, the last \"%s\" (want one with \"%s\")",
                      what, lines, last, needle);
    struct kmm_check_result r;
    if (kmm_check(h->f.k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, file, line, "%s: kmm_check: status %d, %s", what, r.status, r.first);
}
