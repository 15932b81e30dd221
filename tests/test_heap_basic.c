/*
 * test_heap_basic.c - the heap's first line of tests: every size class and
 * the large blocks round-trip with their contents, a double free and a
 * foreign pointer are refused with nothing corrupted, object caches
 * construct and refuse to die while in use, and everything given back
 * leaves the page allocator as it was. (test_heap.c goes through the
 * contract call by call.)
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/port.h>

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

static void *dm(struct kmm *k, uint64_t pa)
{
    return (void *)(kmm_port_direct_map(kmm_port_of(k)) + (uintptr_t)pa);
}

static uint64_t pa_of(struct kmm *k, const void *p)
{
    return (uint64_t)((uintptr_t)p - kmm_port_direct_map(kmm_port_of(k)));
}

static uint64_t free_pages(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_heap_drain_cpu(k);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &s);
    return s.free_pages;
}

static uint64_t heap_misuse(struct kmm *k, unsigned cls)
{
    struct kmm_misuse_stats m;
    kmm_misuse_stats(k, &m);
    return m.count[KMM_LAYER_HEAP][cls];
}

KTEST(heap_basic, every_size_round_trips_with_its_contents)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    static unsigned char *blocks[600];
    size_t n = 0;
    for (size_t size = 1; size <= (size_t)300 * 1024; size += size < 512 ? 7 : size / 3, n++) {
        blocks[n] = kmm_malloc(f.k, size, 0);
        KT_ASSERT(t, blocks[n] != NULL);
        KT_EXPECT_EQ(t, (uintptr_t)blocks[n] % KMM_HEAP_MIN_ALIGN, 0);
        KT_EXPECT(t, kmm_usable_size(f.k, blocks[n]) >= size);
        if (size > 128 && size <= KMM_HEAP_SLAB_MAX)
            KT_EXPECT(t, (kmm_usable_size(f.k, blocks[n]) - size) * 8 < size);
        /* vmalloc'd blocks are in the kernel window, which only some
         * worlds can touch (test_vmalloc.c): their contents go unchecked. */
        for (size_t i = 0; i < size && size <= KMM_HEAP_PAGES_MAX; i += 61)
            blocks[n][i] = (unsigned char)(i ^ n);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    for (size_t b = 0, size = 1; b < n; b++, size += size < 512 ? 7 : size / 3) {
        for (size_t i = 0; i < size && size <= KMM_HEAP_PAGES_MAX; i += 61)
            KT_ASSERT_EQ(t, blocks[b][i], (unsigned char)(i ^ b));
        KT_EXPECT_EQ(t, kmm_free(f.k, blocks[b]), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    struct kmm_heap_stats hs;
    kmm_heap_stats(f.k, &hs);
    KT_EXPECT_EQ(t, hs.allocs, hs.frees);
    KT_EXPECT_EQ(t, hs.large_blocks, 0);
    kt_kmm_down(&f);
}

KTEST(heap_basic, double_and_foreign_frees_are_refused)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    char *p = kmm_malloc(f.k, 40, 0), *q = kmm_malloc(f.k, 40, 0);
    KT_ASSERT(t, p && q);
    KT_EXPECT_EQ(t, kmm_free(f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(f.k, p), KMM_ESTATE);
    KT_EXPECT_EQ(t, heap_misuse(f.k, KMM_MISUSE_DOUBLE_FREE), 1);
    KT_EXPECT_EQ(t, kmm_free(f.k, q + 8), KMM_EINVAL);
    int local;
    KT_EXPECT_EQ(t, kmm_free(f.k, &local), KMM_EINVAL);
    KT_EXPECT_EQ(t, heap_misuse(f.k, KMM_MISUSE_NOT_BLOCK), 2);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT_EQ(t, kmm_free(f.k, dm(f.k, pa)), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    /* A heap page is not the page allocator's to free. */
    char *big = kmm_malloc(f.k, 20000, 0);
    KT_ASSERT(t, big != NULL);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa_of(f.k, big), 3), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_free(f.k, big), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(f.k, big), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_free(f.k, q), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free_sized(f.k, kmm_malloc(f.k, 300, 0), 40), KMM_EINVAL);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

static unsigned ctor_runs;
static void ctor(void *obj)
{
    ctor_runs++;
    *(uint32_t *)obj = 0xc0ffee;
}

KTEST(heap_basic, object_caches_construct_and_refuse_to_die_in_use)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    uint64_t before = free_pages(f.k);
    struct kmm_cache *c = kmm_cache_create(f.k, "test-obj", 100, 64, ctor, 0);
    struct kmm_cache *d = kmm_cache_create(f.k, "other", 100, 0, NULL, 0);
    KT_ASSERT(t, c && d);
    ctor_runs = 0;
    uint32_t *o[50];
    for (unsigned i = 0; i < 50; i++) {
        o[i] = kmm_cache_alloc(f.k, c, 0);
        KT_ASSERT(t, o[i] != NULL);
        KT_EXPECT_EQ(t, (uintptr_t)o[i] % 64, 0);
        KT_EXPECT_EQ(t, *o[i], 0xc0ffee);
    }
    unsigned runs = ctor_runs;
    KT_EXPECT(t, runs >= 50);
    KT_EXPECT_EQ(t, kmm_cache_free(f.k, d, o[0]), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_cache_destroy(f.k, c), KMM_EBUSY);
    for (unsigned i = 0; i < 50; i++)
        KT_EXPECT_EQ(t, kmm_cache_free(f.k, c, o[i]), KMM_OK);
    o[0] = kmm_cache_alloc(f.k, c, 0);
    KT_EXPECT_EQ(t, *o[0], 0xc0ffee); /* constructed state kept across free */
    KT_EXPECT_EQ(t, ctor_runs, runs);
    KT_EXPECT_EQ(t, kmm_free(f.k, o[0]), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_cache_destroy(f.k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(f.k, d), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(f.k, d), KMM_EINVAL);
    KT_EXPECT_HEALTHY(t, f.k);
    /* The heap's own caches (slab records, magazines) and its reclaim hook
     * stay; kmm_heap_shrink gives every other page back. */
    KT_EXPECT(t, kmm_heap_shrink(f.k) > 0);
    struct kmm_heap_stats hs;
    kmm_heap_stats(f.k, &hs);
    /* What it still holds is the two caches' structures, counted as the
     * page allocator counts them. */
    KT_EXPECT_EQ(t, hs.bytes_held, 2 * (uint64_t)KMM_PAGE_SIZE);
    KT_EXPECT_EQ(t, hs.caches, 0); /* the heap's own are not listed */
    KT_EXPECT_EQ(t, free_pages(f.k) + 2, before);
    kt_kmm_down(&f);
}

KTEST(heap_basic, realloc_keeps_contents_and_a_cap_fails_cleanly)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    char *p = kmm_malloc(f.k, 10, 0);
    KT_ASSERT(t, p != NULL);
    for (int i = 0; i < 10; i++)
        p[i] = (char)i;
    p = kmm_realloc(f.k, p, 5000, 0);
    KT_ASSERT(t, p != NULL);
    for (int i = 0; i < 10; i++)
        KT_EXPECT_EQ(t, p[i], (char)i);
    char *same = kmm_realloc(f.k, p, 4700, 0); /* class 5120 still */
    KT_EXPECT(t, same == p);
    KT_EXPECT_EQ(t, kmm_free(f.k, same), KMM_OK);
    kmm_heap_set_limit(f.k, 1 * MIB);
    unsigned n = 0;
    static void *v[400];
    while (n < 400 && (v[n] = kmm_malloc(f.k, 8000, 0)) != NULL)
        n++;
    KT_EXPECT(t, n > 0 && n < 400);
    KT_EXPECT(t, kmm_malloc(f.k, 300000, 0) == NULL);
    KT_EXPECT_HEALTHY(t, f.k);
    for (unsigned i = 0; i < n; i++)
        KT_EXPECT_EQ(t, kmm_free(f.k, v[i]), KMM_OK);
    kmm_heap_set_limit(f.k, 0);
    void *big = kmm_malloc(f.k, 300000, 0);
    KT_EXPECT(t, big != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(f.k, big), 300000 + 4096 - 300000 % 4096);
    KT_EXPECT_EQ(t, kmm_free(f.k, big), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(heap_basic, the_report_has_a_slabinfo_section)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    void *p = kmm_malloc(f.k, 64, 0);
    struct kmm_cache *c = kmm_cache_create(f.k, "report-me", 200, 0, NULL, 0);
    KT_ASSERT(t, p && c);
    void *o = kmm_cache_alloc(f.k, c, 0);
    static struct kt_text tx;
    tx.len = 0;
    kmm_report(f.k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT(t, ktest_contains(tx.buf, "Slab caches (slabinfo)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "kmalloc-64"));
    KT_EXPECT(t, ktest_contains(tx.buf, "report-me"));
    KT_EXPECT(t, ktest_contains(tx.buf, "Heap: held"));
    KT_EXPECT_EQ(t, kmm_cache_free(f.k, c, o), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(f.k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(f.k, p), KMM_OK);
    kt_kmm_down(&f);
}

KTEST(heap_basic, a_wrapper_names_its_own_caller)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    int local;
    KT_EXPECT_EQ(t, kmm_free_caller(f.k, &local, (const void *)(uintptr_t)0x1234abcd), KMM_EINVAL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "1234abcd"));
    void *p = kmm_malloc(f.k, 32, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_free_caller(f.k, p, (const void *)(uintptr_t)0x1234abcd), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free_caller(f.k, NULL, NULL), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(heap_basic, an_atomic_realloc_never_moves_a_vmalloc_block)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map64, 1, 1, 0));
    void *big = kmm_malloc(f.k, 300000, 0);
    KT_ASSERT(t, big != NULL);
    /* Shrinking would free the vmalloc'd block: refused for an atomic
     * caller, the block untouched and still live. */
    KT_EXPECT(t, kmm_realloc(f.k, big, 100, KMM_GFP_ATOMIC) == NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(f.k, big), 300000 + 4096 - 300000 % 4096);
    KT_EXPECT_EQ(t, kmm_free(f.k, big), KMM_OK); /* (a move copies through the window) */
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
