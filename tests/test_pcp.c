/*
 * test_pcp.c - the per-CPU page caches: what they hold, their bounds, how
 * they drain, and that misuse of a cached page is still caught.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)

/* 32 MiB: DMA below 16 MiB, DMA32 above. */
static const struct kmm_region pc32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

static uint64_t cached(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    uint64_t n = 0;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        n += s.zones[z].pcp_pages;
    return n;
}

KTEST(pcp, a_freed_page_is_the_next_page_handed_out_on_this_cpu)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    uint64_t a = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, a != 0);
    KT_EXPECT(t, cached(f.k) > 0); /* the first allocation refilled a batch */
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 0, 0), a); /* LIFO: still warm */
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(pcp, cached_pages_count_as_free_and_drain_back_to_the_buddy)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    struct kmm_page_stats before, s;
    kmm_page_stats(f.k, &before);
    uint64_t p[10];
    for (unsigned i = 0; i < N(p); i++)
        p[i] = kmm_page_alloc(f.k, 0, 0);
    for (unsigned i = 0; i < N(p); i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, p[i], 0), KMM_OK);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.free_pages, before.free_pages); /* cached pages are free */
    KT_EXPECT(t, cached(f.k) >= N(p));
    kmm_page_drain_cpu(f.k);
    KT_EXPECT_EQ(t, cached(f.k), 0);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.free_pages, before.free_pages);
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            KT_EXPECT_EQ(t, s.zones[z].free_blocks[o], before.zones[z].free_blocks[o]);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(pcp, a_cache_never_grows_beyond_its_bound)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    static uint64_t p[4096];
    for (unsigned i = 0; i < N(p); i++)
        KT_ASSERT(t, (p[i] = kmm_page_alloc(f.k, 0, KMM_GFP_DMA32)) != 0);
    for (unsigned i = 0; i < N(p); i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, p[i], 0), KMM_OK);
    /* DMA32 here has about 4000 pages: a bound of 1/8, one CPU. */
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, s.zones[KMM_ZONE_DMA32].pcp_pages <= s.zones[KMM_ZONE_DMA32].managed_pages / 8);
    KT_EXPECT(t, s.zones[KMM_ZONE_DMA32].pcp_pages > 0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

static uint64_t dma32_cached(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    return s.zones[KMM_ZONE_DMA32].pcp_pages;
}

/*
 * Frees high + 1 single pages of DMA32 into an empty cache with free_one,
 * checking the cache after each: it grows to exactly its bound, and only
 * the free that takes it above gives one batch back. The bounds are
 * pcp.c's (and kmm/page.h's): batch = min(64, max(1, managed / 1024)),
 * high = managed / (8 * CPUs) between 4 * batch and 8192.
 */
static void cache_fills_to_its_bound(struct ktest *t, int (*free_one)(struct kmm *k, uint64_t pa))
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    uint64_t managed = s.zones[KMM_ZONE_DMA32].managed_pages;
    uint64_t batch = managed / 1024 < 1 ? 1 : managed / 1024 > 64 ? 64 : managed / 1024;
    uint64_t high = managed / 8;
    high = high < 4 * batch ? 4 * batch : high > 8192 ? 8192 : high;
    static uint64_t p[8193];
    KT_ASSERT(t, high + 1 <= N(p) && high + 1 < managed);
    for (uint64_t i = 0; i <= high; i++) {
        p[i] = kmm_page_alloc(f.k, 0, KMM_GFP_DMA32);
        KT_ASSERT(t, p[i] >= 16 * MIB); /* from DMA32 */
    }
    kmm_page_drain_cpu(f.k);
    KT_ASSERT_EQ(t, dma32_cached(f.k), 0);
    for (uint64_t i = 0; i < high; i++) {
        KT_ASSERT_EQ(t, free_one(f.k, p[i]), KMM_OK);
        uint64_t frees = i + 1, held = dma32_cached(f.k);
        if (held != frees) {
            ktest_fail_at(
                t, __FILE__, __LINE__, "after %llu frees the cache holds %llu (high %llu)",
                (unsigned long long)frees, (unsigned long long)held, (unsigned long long)high);
            break;
        }
    }
    KT_ASSERT_EQ(t, free_one(f.k, p[high]), KMM_OK); /* one above the bound: a batch goes */
    KT_EXPECT_EQ(t, dma32_cached(f.k), high + 1 - batch);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

static int page_free_0(struct kmm *k, uint64_t pa)
{
    return kmm_page_free(k, pa, 0);
}

static int pages_free_1(struct kmm *k, uint64_t pa)
{
    return kmm_pages_free(k, pa, 1);
}

KTEST(pcp, a_cache_holds_exactly_its_bound_and_gives_a_batch_back_above_it)
{
    cache_fills_to_its_bound(t, page_free_0);
}

KTEST(pcp, a_cache_filled_by_kmm_pages_free_holds_exactly_its_bound_too)
{
    cache_fills_to_its_bound(t, pages_free_1);
}

KTEST(pcp, memory_short_drains_this_cpus_cache_before_failing)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    /* Take every page as order-0, then free a pair of buddies: they sit in
     * the cache, where an order-1 request cannot see them until the slow
     * path drains it and they merge. */
    static uint64_t p[8192];
    size_t n = 0;
    while (n < N(p) && (p[n] = kmm_page_alloc(f.k, 0, 0)) != 0)
        n++;
    KT_ASSERT(t, n < N(p) && n > 2);
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n && !b; i++)
        for (size_t j = 0; j < n; j++)
            if (!(p[i] & 0x1000) && p[j] == p[i] + 0x1000) {
                a = i;
                b = j;
                break;
            }
    KT_ASSERT(t, b != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, p[a], 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, p[b], 0), KMM_OK);
    uint64_t pair = kmm_page_alloc(f.k, 1, 0);
    KT_EXPECT_EQ(t, pair, p[a]);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pair, 1), KMM_OK);
    p[a] = p[b] = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i])
            KT_ASSERT_EQ(t, kmm_page_free(f.k, p[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(pcp, misuse_of_a_cached_page_is_still_caught)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    uint64_t a = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK); /* now in the cache */
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, a, 0), KMM_ESTATE);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, a), KMM_ESTATE);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, a, 1), KMM_ESTATE); /* cached: free whatever the size */
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR), errors + 3);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.misuse[KMM_MISUSE_DOUBLE_FREE], 3);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(pcp, a_shared_page_skips_the_cache_until_its_last_reference)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 1, 0));
    uint64_t a = kmm_page_alloc(f.k, 0, 0);
    uint64_t before = cached(f.k);
    KT_ASSERT_EQ(t, kmm_page_get(f.k, a), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK); /* one reference left */
    KT_EXPECT_EQ(t, cached(f.k), before);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, a), KMM_OK); /* still allocated */
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK); /* the last one: cached now */
    KT_EXPECT_EQ(t, cached(f.k), before + 1);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(pcp, atomic_requests_are_served_and_an_offline_cpu_can_be_drained)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, pc32, N(pc32), 4, 0));
    uint64_t a = kmm_page_alloc(f.k, 0, KMM_GFP_ATOMIC | KMM_GFP_ZERO);
    KT_EXPECT(t, a != 0);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_EXPECT(t, !kmm_page_drain_pending(f.k));
    KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(f.k, 3), KMM_OK); /* never ran: nothing */
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);
    KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(f.k, 4), KMM_EINVAL);
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR), errors + 1);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
