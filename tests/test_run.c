/*
 * test_run.c - runs of any number of contiguous pages (kmm_run_alloc,
 * kmm_run_free): alignment, counts, limits, zones, zeroing, first fit in a
 * fragmented zone, exhaustion, misuse, and a randomised run mixed with
 * single blocks against a shadow model that predicts every address.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/fmt.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  UINT64_C(1024)
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)
#define PAGE UINT64_C(4096)

/* The machine of test_page.c: 64 MiB, DMA below 16 MiB, DMA32 above, a
 * firmware hole below 1 MiB and a reserved MiB at 20 MiB. Free at init:
 *   DMA    [0x1000, 0x9f000) (158 pages), [1 MiB, 16 MiB) (3840 pages)
 *   DMA32  [16 MiB, 20 MiB) (1024 pages), [21 MiB, the metadata)
 * The metadata (instance and frame database) sits at the top of 64 MiB. */
static const struct kmm_region pc64[] = {
    {0x0, 0x9fc00, KMM_MEM_USABLE},        {0x9fc00, 0x400, KMM_MEM_RESERVED},
    {0xf0000, 0x10000, KMM_MEM_RESERVED},  {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
    {20 * MIB, 1 * MIB, KMM_MEM_RESERVED},
};

/* The statistics with this CPU's page cache emptied into the zones, so
 * that the free lists alone say what is free. */
static void snapshot(struct kmm *k, struct kmm_page_stats *s)
{
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, s);
}

static void expect_buddyinfo(struct ktest *t, struct kmm *k, const struct kmm_page_stats *want,
                             int line)
{
    struct kmm_page_stats now;
    snapshot(k, &now);
    if (!kt_same_buddyinfo(want, &now))
        ktest_fail_at(t, __FILE__, line, "buddyinfo differs: %llu free pages, want %llu",
                      (unsigned long long)now.free_pages, (unsigned long long)want->free_pages);
}
#define EXPECT_BUDDYINFO(t, k, want) expect_buddyinfo((t), (k), (want), __LINE__)

static unsigned zone_of(uint64_t pa)
{
    return pa < 16 * MIB ? KMM_ZONE_DMA : pa < 4 * GIB ? KMM_ZONE_DMA32 : KMM_ZONE_NORMAL;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* --- the model: which pages are free, and where a run must go -------------- */

/* kmm_init may itself allocate (the kernel address space's tables, say),
 * so the tests learn which pages are free at the start instead of assuming
 * it: they take every free page once, one at a time, and give it back. */
#define MODEL_PAGES (64 * MIB / PAGE)
static uint8_t start_free[MODEL_PAGES]; /* 1: free when the test began */
static uint8_t shadow[MODEL_PAGES];     /* 1: allocated by the test since */
static uint64_t learned[MODEL_PAGES];

/* Learns the free pages of a machine of at most 64 MiB; clears the shadow.
 * Leaves the free lists as they were, with this CPU's cache drained. */
static bool model_learn(struct ktest *t, struct kmm *k)
{
    kt_fill(start_free, 0, sizeof(start_free));
    kt_fill(shadow, 0, sizeof(shadow));
    size_t n = 0;
    uint64_t pa;
    while (n < N(learned) && (pa = kmm_page_alloc(k, 0, 0)) != 0) {
        if (pa / PAGE >= MODEL_PAGES) {
            ktest_fail_at(t, __FILE__, __LINE__, "page 0x%llx beyond the model",
                          (unsigned long long)pa);
            return false;
        }
        start_free[pa / PAGE] = 1;
        learned[n++] = pa;
    }
    for (size_t i = n; i-- > 0;) {
        if (kmm_page_free(k, learned[i], 0) != KMM_OK) {
            ktest_fail_at(t, __FILE__, __LINE__, "giving back 0x%llx failed",
                          (unsigned long long)learned[i]);
            return false;
        }
    }
    kmm_page_drain_cpu(k);
    return true;
}

static bool model_is_free(uint64_t pfn)
{
    return pfn < MODEL_PAGES && start_free[pfn] && !shadow[pfn];
}

static void model_mark(uint64_t pa, uint64_t count, uint8_t allocated)
{
    for (uint64_t p = pa / PAGE; p < pa / PAGE + count && p < MODEL_PAGES; p++)
        shadow[p] = allocated;
}

/* The lowest start in frames [lo, hi) of count free pages aligned to align
 * frames and ending at or below frame limit; 0 if there is none. */
static uint64_t model_first_fit(uint64_t lo, uint64_t hi, uint64_t count, uint64_t align,
                                uint64_t limit)
{
    if (hi > limit)
        hi = limit;
    if (hi > MODEL_PAGES)
        hi = MODEL_PAGES;
    uint64_t stretch = lo;
    for (uint64_t p = lo; p < hi; p++) {
        if (!model_is_free(p)) {
            stretch = p + 1;
            continue;
        }
        uint64_t s = align_up(stretch, align);
        if (s + count == p + 1)
            return s;
    }
    return 0;
}

/* Where kmm_run_alloc must put a run on a machine below 4 GiB: the first fit
 * in DMA32, else in DMA (kmm_page_alloc's zone order), or DMA only. align
 * in pages, limit a physical address (0: none). */
static uint64_t model_run(uint64_t count, uint64_t align, uint64_t limit, bool dma_only)
{
    uint64_t lim = limit ? limit / PAGE : UINT64_MAX, dma_end = 16 * MIB / PAGE;
    uint64_t pfn = dma_only ? 0 : model_first_fit(dma_end, MODEL_PAGES, count, align, lim);
    if (!pfn)
        pfn = model_first_fit(0, dma_end, count, align, lim);
    return pfn * PAGE;
}

/* The longest stretch of free pages in the frames [lo, hi). */
static uint64_t model_longest(uint64_t lo, uint64_t hi)
{
    uint64_t best = 0, len = 0;
    for (uint64_t p = lo; p < hi && p < MODEL_PAGES; p++) {
        len = model_is_free(p) ? len + 1 : 0;
        if (len > best)
            best = len;
    }
    return best;
}

#define DMA_PAGES (16 * MIB / PAGE)

/* --- where a run goes ------------------------------------------------------ */

KTEST(run, every_alignment_from_4k_to_4m_gives_the_lowest_aligned_place_that_fits)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    /* One page at the bottom of DMA32 (16 MiB), so that alignment matters. */
    uint64_t first = kmm_run_alloc(f.k, 1, 0, 0, 0);
    KT_ASSERT(t, first != 0);
    KT_ASSERT_EQ(t, first, model_run(1, 1, 0, false));
    model_mark(first, 1, 1);
    struct kmm_page_stats s0;
    snapshot(f.k, &s0);
    static const size_t counts[] = {1, 3, 5};
    for (unsigned shift = 12; shift <= 22; shift++) {
        uint64_t align = UINT64_C(1) << shift;
        for (unsigned c = 0; c < N(counts); c++) {
            /* 16 MiB + 4 KiB aligned up, unless that runs into the reserved
             * MiB at 20 MiB (4 MiB alignment): then above it. */
            uint64_t want = model_run(counts[c], align / PAGE, 0, false);
            uint64_t pa = kmm_run_alloc(f.k, counts[c], align, 0, 0);
            KT_EXPECT_EQ(t, pa, want);
            KT_EXPECT_EQ(t, pa % align, 0);
            KT_ASSERT_EQ(t, kmm_run_free(f.k, pa, counts[c]), KMM_OK);
            EXPECT_BUDDYINFO(t, f.k, &s0);
        }
    }
    /* Alignment 0 means one page. */
    uint64_t two = kmm_run_alloc(f.k, 2, 0, 0, 0);
    KT_EXPECT_EQ(t, two, model_run(2, 1, 0, false));
    KT_EXPECT_EQ(t, kmm_run_free(f.k, two, 2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, first, 1), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* 3 GiB of RAM from 1 MiB: the second GiB is free and 1 GiB aligned. Too
 * large for the kernel's test arena, where it skips. */
KTEST(run, a_1gib_run_aligned_to_1gib_is_exactly_the_second_gib_and_frees_back)
{
    static const struct kmm_region big[] = {{1 * MIB, 3 * GIB - 1 * MIB, KMM_MEM_USABLE}};
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, big, N(big), 1, 0))
        return;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    uint64_t pa = kmm_run_alloc(f.k, 262144, GIB, 0, 0);
    KT_ASSERT_EQ(t, pa, 0x40000000);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.allocated_pages, s0.allocated_pages + 262144);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA32].alloc_calls, s0.zones[KMM_ZONE_DMA32].alloc_calls + 1);
    /* The third GiB holds the metadata at its top: no second one. */
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, 262144, GIB, 0, 0), 0);
    KT_EXPECT_HEALTHY(t, f.k);
    /* The run spans eight sections; its ends are usable memory. */
    kt_fill(kt_machine_phys(f.m, pa), 0x5a, PAGE);
    kt_fill(kt_machine_phys(f.m, pa + GIB - PAGE), 0x5a, PAGE);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, pa, 262144), KMM_OK);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA32].free_calls, s0.zones[KMM_ZONE_DMA32].free_calls + 1);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(run, odd_counts_take_exactly_that_many_pages_in_one_zone)
{
    static const size_t counts[] = {1, 3, 5, 7, 1000, 1025, 4097};
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    uint64_t pa[N(counts)];
    uint64_t taken = 0;
    for (unsigned i = 0; i < N(counts); i++) {
        uint64_t want = model_run(counts[i], 1, 0, false);
        pa[i] = kmm_run_alloc(f.k, counts[i], 0, 0, 0);
        KT_ASSERT(t, pa[i] != 0);
        KT_EXPECT_EQ(t, pa[i], want);
        model_mark(pa[i], counts[i], 1);
        uint64_t end = pa[i] + counts[i] * PAGE;
        KT_EXPECT_EQ(t, zone_of(pa[i]), zone_of(end - 1));
        KT_EXPECT(t, end <= 20 * MIB || pa[i] >= 21 * MIB); /* not the reserved MiB */
        for (unsigned j = 0; j < i; j++)                    /* no overlap with the earlier runs */
            KT_EXPECT(t, end <= pa[j] || pa[j] + counts[j] * PAGE <= pa[i]);
        kt_fill(kt_machine_phys(f.m, pa[i]), 0xa5, counts[i] * PAGE);
        taken += counts[i];
        kmm_page_stats(f.k, &s);
        KT_EXPECT_EQ(t, s.allocated_pages, s0.allocated_pages + taken);
        KT_EXPECT_HEALTHY(t, f.k);
    }
    /* Free from the middle outwards: merges happen in a new order. */
    static const unsigned order[] = {3, 2, 4, 1, 5, 0, 6};
    for (unsigned i = 0; i < N(order); i++)
        KT_ASSERT_EQ(t, kmm_run_free(f.k, pa[order[i]], counts[order[i]]), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(run, a_run_is_its_largest_aligned_blocks_each_an_ordinary_block)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats s0;
    snapshot(f.k, &s0);
    /* 1031 pages at a 4 MiB boundary: blocks of 1024, 4, 2 and 1 pages. */
    static const struct {
        uint64_t page;
        unsigned order;
    } blocks[] = {{0, 10}, {1024, 2}, {1028, 1}, {1030, 0}};
    uint64_t pa = kmm_run_alloc(f.k, 1031, 4 * MIB, 0, 0);
    KT_ASSERT(t, pa != 0);
    /* Each block takes and drops a reference as any block of its order. */
    for (unsigned i = 0; i < N(blocks); i++) {
        uint64_t b = pa + blocks[i].page * PAGE;
        KT_EXPECT_EQ(t, kmm_page_get(f.k, b), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_free(f.k, b, blocks[i].order), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, pa, 1031), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    /* A run may also go back block by block, as plain blocks. */
    pa = kmm_run_alloc(f.k, 1031, 4 * MIB, 0, 0);
    KT_ASSERT(t, pa != 0);
    for (unsigned i = 0; i < N(blocks); i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pa + blocks[i].page * PAGE, blocks[i].order), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* Allocates a run, checks it is where the model says and below its limit,
 * and records it in the model. Returns its address (0: none, as predicted). */
static uint64_t run_as_modelled(struct ktest *t, struct kmm *k, uint64_t count, uint64_t align,
                                uint64_t limit, kmm_gfp_t flags, int line)
{
    uint64_t want = model_run(count, align ? align / PAGE : 1, limit, flags & KMM_GFP_DMA);
    uint64_t pa = kmm_run_alloc(k, (size_t)count, align, limit, flags);
    if (pa != want)
        ktest_fail_at(t, __FILE__, line, "run of %llu pages: at 0x%llx, the model says 0x%llx",
                      (unsigned long long)count, (unsigned long long)pa, (unsigned long long)want);
    if (pa && limit && pa + count * PAGE > limit)
        ktest_fail_at(t, __FILE__, line, "run at 0x%llx ends above the limit 0x%llx",
                      (unsigned long long)pa, (unsigned long long)limit);
    if (pa)
        model_mark(pa, count, 1);
    return pa;
}
#define RUN(t, k, count, align, limit, flags)                                                      \
    run_as_modelled((t), (k), (count), (align), (limit), (flags), __LINE__)

KTEST(run, a_run_ends_at_or_below_its_limit_and_a_limit_too_low_fails_cleanly)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    /* Only pages 1 and 2 lie below 0x3000 (page 0 is never managed). */
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, 3, 0, 0x3000, 0), 0);
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, 3, 0, 0x3fff, 0), 0); /* the end rounds no higher */
    snapshot(f.k, &s);
    KT_EXPECT(t, kt_same_buddyinfo(&s0, &s));
    KT_EXPECT_EQ(t, s.failed_allocs, s0.failed_allocs + 2);
    for (unsigned i = 0; i < KMM_MISUSE_COUNT; i++)
        KT_EXPECT_EQ(t, s.misuse[i], s0.misuse[i]);
    /* The limit is exclusive: a run may end exactly at it (0x1000). */
    uint64_t low = RUN(t, f.k, 3, 0, 0x4000, 0);
    KT_EXPECT(t, low != 0);
    /* A limit inside DMA32: 1000 pages at 16 MiB, ending below 20 MiB. */
    uint64_t a = RUN(t, f.k, 1000, 0, 20 * MIB, KMM_GFP_DMA32);
    KT_EXPECT(t, a != 0 && zone_of(a) == KMM_ZONE_DMA32);
    /* Then 24 pages of DMA32 are left below 20 MiB: the next 1000 fall back
     * to DMA ([1 MiB, 16 MiB), the first stretch long enough there), and a
     * run of 24 takes exactly what is left. */
    uint64_t b = RUN(t, f.k, 1000, 0, 20 * MIB, KMM_GFP_DMA32);
    KT_EXPECT(t, b != 0 && zone_of(b) == KMM_ZONE_DMA);
    uint64_t c = RUN(t, f.k, 24, 0, 20 * MIB, 0);
    KT_EXPECT(t, c != 0);
    /* A limit beyond all memory is no limit. */
    uint64_t d = RUN(t, f.k, 5, 0, UINT64_C(1) << 40, 0);
    KT_EXPECT(t, d != 0);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, low, 3), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, a, 1000), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, b, 1000), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, c, 24), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, d, 5), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(run, zone_flags_choose_the_zone_and_a_run_never_crosses_a_zone_boundary)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    struct kmm_page_stats s0;
    snapshot(f.k, &s0);
    uint64_t dma = RUN(t, f.k, 5, 0, 0, KMM_GFP_DMA);
    KT_EXPECT(t, dma != 0 && zone_of(dma) == KMM_ZONE_DMA);
    uint64_t d32 = RUN(t, f.k, 5, 0, 0, KMM_GFP_DMA32);
    KT_EXPECT(t, d32 != 0 && zone_of(d32) == KMM_ZONE_DMA32);
    uint64_t any = RUN(t, f.k, 5, 0, 0, 0); /* no Normal zone: DMA32 first */
    KT_EXPECT(t, any != 0 && zone_of(any) == KMM_ZONE_DMA32);
    /* DMA never climbs: its longest free stretch (3840 pages at 1 MiB) is
     * all a DMA run can have. */
    uint64_t longest = model_longest(0, DMA_PAGES);
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, (size_t)longest + 1, 0, 0, KMM_GFP_DMA), 0);
    uint64_t all = RUN(t, f.k, longest, 0, 0, KMM_GFP_DMA | KMM_GFP_ATOMIC);
    KT_EXPECT(t, all != 0);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, all, (size_t)longest), KMM_OK);
    model_mark(all, longest, 0);
    /* [1 MiB, 20 MiB) is free RAM without a gap, but DMA ends at 16 MiB and
     * DMA32 has fewer than 3841 pages below 20 MiB. */
    KT_EXPECT_EQ(t, model_run(longest + 1, 1, 20 * MIB, false), 0);
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, (size_t)longest + 1, 0, 20 * MIB, 0), 0);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, dma, 5), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, d32, 5), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, any, 5), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(run, a_zero_flag_run_is_all_zeroes)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    static const size_t counts[] = {5, 1025};
    for (unsigned i = 0; i < N(counts); i++) {
        uint64_t bytes = counts[i] * PAGE;
        uint64_t pa = kmm_run_alloc(f.k, counts[i], 2 * MIB, 0, 0);
        KT_ASSERT(t, pa != 0);
        kt_fill(kt_machine_phys(f.m, pa), 0xcc, bytes);
        KT_ASSERT_EQ(t, kmm_run_free(f.k, pa, counts[i]), KMM_OK);
        uint64_t again = kmm_run_alloc(f.k, counts[i], 2 * MIB, 0, KMM_GFP_ZERO);
        KT_ASSERT_EQ(t, again, pa); /* first fit: the same place */
        const uint8_t *p = kt_machine_phys(f.m, again);
        bool zero = true;
        for (uint64_t b = 0; b < bytes; b++)
            zero &= p[b] == 0;
        KT_EXPECT(t, zero);
        KT_EXPECT_EQ(t, kmm_run_free(f.k, again, counts[i]), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* --- fragmentation and exhaustion ---------------------------------------- */

/* Every DMA page, taken one at a time. */
static uint64_t dma_pages[DMA_PAGES];

/* Takes all of DMA as single pages into dma_pages; returns how many. */
static size_t take_all_of_dma(struct kmm *k)
{
    size_t n = 0;
    uint64_t pa;
    while (n < N(dma_pages) && (pa = kmm_page_alloc(k, 0, KMM_GFP_DMA)) != 0)
        dma_pages[n++] = pa;
    return n;
}

/* Frees the taken DMA page at pa (if it is one) and forgets it. */
static bool free_dma_page(struct kmm *k, size_t n, uint64_t pa)
{
    for (size_t i = 0; i < n; i++) {
        if (dma_pages[i] == pa) {
            dma_pages[i] = 0;
            return kmm_page_free(k, pa, 0) == KMM_OK;
        }
    }
    return false;
}

KTEST(run, in_a_fragmented_zone_a_run_lands_in_the_first_gap_that_fits)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    size_t n = take_all_of_dma(f.k);
    KT_ASSERT(t, n > 0);
    /* Gaps, as frame ranges [first, last]:
     *   A 0x200..0x202  3 pages
     *   B 0x301..0x306  6 pages, no 4-page run aligned to 16 KiB
     *   C 0x402..0x406  5 pages, no 4-page run aligned to 16 KiB
     *   D 0x503..0x50a  8 pages, 16 KiB aligned 4 pages at 0x504 */
    static const uint64_t gaps[][2] = {
        {0x200, 0x202}, {0x301, 0x306}, {0x402, 0x406}, {0x503, 0x50a}};
    for (unsigned g = 0; g < N(gaps); g++)
        for (uint64_t pfn = gaps[g][0]; pfn <= gaps[g][1]; pfn++)
            KT_ASSERT(t, free_dma_page(f.k, n, pfn * PAGE));
    kmm_page_drain_cpu(f.k);
    snapshot(f.k, &s);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA].free_pages, 3 + 6 + 5 + 8);

    /* Nothing holds 9: fails, and nothing changes. */
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, 9, 0, 0, KMM_GFP_DMA), 0);
    EXPECT_BUDDYINFO(t, f.k, &s);
    uint64_t aligned4 = kmm_run_alloc(f.k, 4, 16 * KIB, 0, KMM_GFP_DMA);
    KT_EXPECT_EQ(t, aligned4, 0x504 * PAGE); /* only D has one */
    uint64_t five = kmm_run_alloc(f.k, 5, 0, 0, KMM_GFP_DMA);
    KT_EXPECT_EQ(t, five, 0x301 * PAGE); /* B: A is too short */
    uint64_t three = kmm_run_alloc(f.k, 3, 0, 0, KMM_GFP_DMA);
    KT_EXPECT_EQ(t, three, 0x200 * PAGE); /* A exactly */
    uint64_t five_more = kmm_run_alloc(f.k, 5, 0, 0, KMM_GFP_DMA);
    KT_EXPECT_EQ(t, five_more, 0x402 * PAGE); /* C exactly */
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA].free_pages, 1 + 4); /* 0x306 and D's rest */
    KT_EXPECT_HEALTHY(t, f.k);

    KT_EXPECT_EQ(t, kmm_run_free(f.k, aligned4, 4), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, five, 5), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, three, 3), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, five_more, 5), KMM_OK);
    for (size_t i = 0; i < n; i++)
        if (dma_pages[i])
            KT_ASSERT_EQ(t, kmm_page_free(f.k, dma_pages[i], 0), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(run, pages_waiting_in_this_cpus_cache_do_not_make_a_run_fail)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    size_t n = take_all_of_dma(f.k);
    KT_ASSERT(t, n > 0);
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, dma_pages[i], 0), KMM_OK);
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, s.zones[KMM_ZONE_DMA].pcp_pages > 0);
    /* The longest stretch of DMA ([1 MiB, 16 MiB)), cached pages included. */
    uint64_t longest = model_longest(0, DMA_PAGES);
    uint64_t pa = RUN(t, f.k, longest, 0, 0, KMM_GFP_DMA);
    KT_EXPECT(t, pa != 0);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, pa, (size_t)longest), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(run, a_run_larger_than_any_free_stretch_fails_and_changes_nothing)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    uint64_t dma = model_longest(0, DMA_PAGES), dma32 = model_longest(DMA_PAGES, MODEL_PAGES);
    size_t longest = (size_t)(dma > dma32 ? dma : dma32);
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, longest + 1, 0, 0, 0), 0);
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, (size_t)s0.managed_pages, 0, 0, 0), 0);
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, (size_t)-1, 0, 0, 0), 0);        /* no overflow */
    KT_EXPECT_EQ(t, kmm_run_alloc(f.k, 1, UINT64_C(1) << 63, 0, 0), 0); /* only 0 is aligned */
    snapshot(f.k, &s);
    KT_EXPECT(t, kt_same_buddyinfo(&s0, &s));
    KT_EXPECT_EQ(t, s.allocated_pages, s0.allocated_pages);
    KT_EXPECT_EQ(t, s.failed_allocs, s0.failed_allocs + 4);
    for (unsigned i = 0; i < KMM_MISUSE_COUNT; i++)
        KT_EXPECT_EQ(t, s.misuse[i], s0.misuse[i]);
    KT_EXPECT_HEALTHY(t, f.k);
    /* The longest one fits, exactly where the model says. */
    uint64_t pa = RUN(t, f.k, longest, 0, 0, 0);
    KT_EXPECT(t, pa != 0);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, pa, longest), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* --- misuse: each is an error, counted, logged once, and changes nothing --- */

/* Where kmm put its metadata (reserved to callers). */
static uint64_t meta_base(struct kmm *k)
{
    size_t n;
    const struct kmm_region *map = kmm_memory_map(k, &n);
    for (size_t i = 0; i < n; i++)
        if (map[i].type == KMM_MEM_KMM_META)
            return map[i].base;
    return 0;
}

KTEST(run, every_misuse_is_rejected_counted_logged_and_harmless)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats s0;
    snapshot(f.k, &s0);
    /* held: 5 pages aligned to 32 KiB, a block of 4 pages and one of 1. */
    uint64_t held = kmm_run_alloc(f.k, 5, 32 * KIB, 0, 0);
    KT_ASSERT(t, held != 0);
    /* part: the same, its last page since freed on its own (kmm_page_free). */
    uint64_t part = kmm_run_alloc(f.k, 5, 32 * KIB, 0, 0);
    KT_ASSERT(t, part != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, part + 4 * PAGE, 0), KMM_OK);
    /* gone: a 4 MiB run, freed; its first frame heads a free order-10 block. */
    uint64_t gone = kmm_run_alloc(f.k, 1024, 4 * MIB, 0, 0);
    KT_ASSERT(t, gone != 0);
    KT_ASSERT_EQ(t, kmm_run_free(f.k, gone, 1024), KMM_OK);
    uint64_t plain = kmm_page_alloc(f.k, 2, 0);
    KT_ASSERT(t, plain != 0);
    uint64_t meta = meta_base(f.k);
    struct kmm_page_stats s;
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);
    unsigned calls = 0;

#define MISUSE(call, err, kind, what)                                                              \
    do {                                                                                           \
        kmm_page_stats(f.k, &s);                                                                   \
        int got_ = (call);                                                                         \
        kt_expect_misuse(t, &f, got_, (err), (kind), &s, (what), "kmm_run_");                      \
        calls++;                                                                                   \
    } while (0)
#define ALLOC(call) ((call) ? 1 : KMM_EINVAL)

    MISUSE(ALLOC(kmm_run_alloc(f.k, 0, 0, 0, 0)), KMM_EINVAL, KMM_MISUSE_BAD_ORDER, "count 0");
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 0x3000, 0, 0)), KMM_EINVAL, KMM_MISUSE_BAD_ORDER,
           "align 12 KiB");
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 2048, 0, 0)), KMM_EINVAL, KMM_MISUSE_BAD_ORDER,
           "align 2 KiB");
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 1, 0, 0)), KMM_EINVAL, KMM_MISUSE_BAD_ORDER, "align 1");
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 0, 0xfff, 0)), KMM_EINVAL, KMM_MISUSE_BAD_ORDER,
           "limit 0xfff");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "limit below 4096"));
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 0, 1, 0)), KMM_EINVAL, KMM_MISUSE_BAD_ORDER, "limit 1");
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 0, 0, 0x100)), KMM_EINVAL, KMM_MISUSE_BAD_FLAGS,
           "unknown flag");
    MISUSE(ALLOC(kmm_run_alloc(f.k, 1, 0, 0, KMM_GFP_DMA | KMM_GFP_DMA32)), KMM_EINVAL,
           KMM_MISUSE_BAD_FLAGS, "two zone flags");

    MISUSE(kmm_run_free(f.k, held, 0), KMM_EINVAL, KMM_MISUSE_BAD_ORDER, "free count 0");
    MISUSE(kmm_run_free(f.k, held + 0x10, 5), KMM_EINVAL, KMM_MISUSE_UNALIGNED, "unaligned");
    MISUSE(kmm_run_free(f.k, 0, 1), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "page 0");
    MISUSE(kmm_run_free(f.k, 0xa0000, 1), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "hole below 1 MiB");
    MISUSE(kmm_run_free(f.k, 64 * MIB, 1), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "beyond RAM");
    MISUSE(kmm_run_free(f.k, UINT64_C(1) << 51, 1), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "far away");
    MISUSE(kmm_run_free(f.k, 20 * MIB + PAGE, 1), KMM_EINVAL, KMM_MISUSE_RESERVED, "reserved");
    MISUSE(kmm_run_free(f.k, meta, 1), KMM_EINVAL, KMM_MISUSE_RESERVED, "kmm's metadata");
    MISUSE(kmm_run_free(f.k, held, 4), KMM_EINVAL, KMM_MISUSE_WRONG_ORDER, "4 of 5");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "allocated as 5 pages, caller"));
    MISUSE(kmm_run_free(f.k, held, 6), KMM_EINVAL, KMM_MISUSE_WRONG_ORDER, "6 of 5");
    MISUSE(kmm_run_free(f.k, held, 3), KMM_EINVAL, KMM_MISUSE_WRONG_ORDER, "3 of 5");
    MISUSE(kmm_run_free(f.k, held, 1), KMM_EINVAL, KMM_MISUSE_WRONG_ORDER, "1 of 5");
    MISUSE(kmm_run_free(f.k, held + PAGE, 4), KMM_EINVAL, KMM_MISUSE_NOT_BLOCK, "inside a block");
    MISUSE(kmm_run_free(f.k, held + 4 * PAGE, 1), KMM_EINVAL, KMM_MISUSE_NOT_BLOCK,
           "the run's second block");
    MISUSE(kmm_run_free(f.k, plain, 4), KMM_EINVAL, KMM_MISUSE_NOT_BLOCK, "a kmm_page_alloc block");
    MISUSE(kmm_run_free(f.k, gone, 1024), KMM_ESTATE, KMM_MISUSE_DOUBLE_FREE, "double free");
    MISUSE(kmm_run_free(f.k, part, 5), KMM_ESTATE, KMM_MISUSE_DOUBLE_FREE, "partly freed");
    char where[32];
    uint64_t freed = part + 4 * PAGE;
    kmm_snprintf(where, sizeof(where), "at 0x%llx", (unsigned long long)freed);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), where));
    KT_ASSERT_EQ(t, kmm_page_get(f.k, held), KMM_OK); /* a second reference */
    MISUSE(kmm_run_free(f.k, held, 5), KMM_EBUSY, KMM_MISUSE_NOT_BLOCK, "shared");
#undef ALLOC
#undef MISUSE
    /* One log line per misuse. */
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR) - errors, calls);
    /* Everything held is intact and frees normally. */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, held, 2), KMM_OK); /* the extra reference */
    KT_EXPECT_EQ(t, kmm_run_free(f.k, held, 5), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, part, 2), KMM_OK); /* the rest of part, as a block */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, plain, 2), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* --- randomised against the model ------------------------------------------ */

struct live {
    uint64_t pa;
    uint64_t pages;
    bool run; /* kmm_run_alloc, or kmm_page_alloc of log2(pages) */
};

static unsigned log2_of(uint64_t v)
{
    unsigned o = 0;
    while ((UINT64_C(1) << o) < v)
        o++;
    return o;
}

static int free_live(struct kmm *k, const struct live *l)
{
    return l->run ? kmm_run_free(k, l->pa, (size_t)l->pages)
                  : kmm_page_free(k, l->pa, log2_of(l->pages));
}

KTEST(run, random_runs_and_blocks_match_a_shadow_model_at_every_step)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    if (!model_learn(t, f.k))
        return;
    static struct live live[512];
    size_t nlive = 0;
    uint64_t seed = 0x7a11, used = 0;
    unsigned runs = 0, exact = 0, failed = 0;
    struct kmm_page_stats s0, s;
    snapshot(f.k, &s0);
    for (int step = 0; step < 2000 && !ktest_failed(t); step++) {
        unsigned op = (unsigned)(kt_rng(&seed) % 100);
        if (nlive == 0 || (nlive < N(live) && op < 35)) {
            /* A run: mostly small, some large, assorted alignment and limits. */
            unsigned size_class = (unsigned)(kt_rng(&seed) % 20);
            uint64_t count = 1 + kt_rng(&seed) % (size_class < 12   ? 8
                                                  : size_class < 18 ? 300
                                                                    : 1500);
            uint64_t align = kt_rng(&seed) % 2 ? 1 : UINT64_C(1) << (kt_rng(&seed) % 11);
            uint64_t limit = kt_rng(&seed) % 4 ? 0 : PAGE + kt_rng(&seed) % (64 * MIB);
            unsigned pick = (unsigned)(kt_rng(&seed) % 8);
            kmm_gfp_t flags = pick < 2 ? KMM_GFP_DMA : pick < 3 ? KMM_GFP_DMA32 : 0;
            if (kt_rng(&seed) % 16 == 0)
                flags |= KMM_GFP_ZERO;
            /* With this CPU's cache empty the model is exact. Otherwise cached
             * pages may push the first search higher; the slow path (which
             * drains) must still find a run wherever the model has one. */
            bool drained = kt_rng(&seed) % 2;
            if (drained)
                kmm_page_drain_cpu(f.k);
            uint64_t want = model_run(count, align, limit, flags & KMM_GFP_DMA);
            uint64_t pa = kmm_run_alloc(f.k, (size_t)count, align * PAGE, limit, flags);
            runs++;
            if (drained || !want) {
                KT_ASSERT_EQ(t, pa, want);
                exact++;
            } else {
                KT_ASSERT(t, pa != 0);
            }
            if (!pa) {
                failed++;
                continue;
            }
            uint64_t end = pa + count * PAGE;
            KT_ASSERT(t, pa % (align * PAGE) == 0);
            KT_ASSERT(t, !limit || end <= limit);
            KT_ASSERT(t, zone_of(pa) == zone_of(end - 1));
            KT_ASSERT(t, !(flags & KMM_GFP_DMA) || end <= 16 * MIB);
            for (uint64_t p = pa / PAGE; p < end / PAGE; p++)
                KT_ASSERT(t, model_is_free(p)); /* never hand out a page twice */
            model_mark(pa, count, 1);
            if (flags & KMM_GFP_ZERO) {
                const uint8_t *b = kt_machine_phys(f.m, pa);
                bool zero = true;
                for (uint64_t i = 0; i < count * PAGE; i++)
                    zero &= b[i] == 0;
                KT_ASSERT(t, zero);
            }
            kt_fill(kt_machine_phys(f.m, pa), 0xee, 16); /* dirty it for a later ZERO */
            live[nlive++] = (struct live){pa, count, true};
            used += count;
        } else if (nlive < N(live) && op < 60) {
            unsigned order = (unsigned)(kt_rng(&seed) % 6);
            uint64_t pa = kmm_page_alloc(f.k, order, kt_rng(&seed) % 4 == 0 ? KMM_GFP_DMA : 0);
            if (!pa)
                continue;
            uint64_t pages = UINT64_C(1) << order;
            for (uint64_t p = pa / PAGE; p < pa / PAGE + pages; p++)
                KT_ASSERT(t, model_is_free(p));
            model_mark(pa, pages, 1);
            live[nlive++] = (struct live){pa, pages, false};
            used += pages;
        } else {
            size_t i = (size_t)(kt_rng(&seed) % nlive);
            struct live l = live[i];
            if (l.run && l.pages > 1 && kt_rng(&seed) % 32 == 0) /* a wrong count first */
                KT_ASSERT_EQ(t, kmm_run_free(f.k, l.pa, (size_t)l.pages - 1), KMM_EINVAL);
            KT_ASSERT_EQ(t, free_live(f.k, &l), KMM_OK);
            model_mark(l.pa, l.pages, 0);
            used -= l.pages;
            live[i] = live[--nlive];
        }
        kmm_page_stats(f.k, &s);
        KT_ASSERT_EQ(t, s.allocated_pages, s0.allocated_pages + used);
        struct kmm_check_result r;
        if (kmm_check(f.k, &r) != KMM_CHECK_OK) {
            ktest_fail_at(t, __FILE__, __LINE__, "step %d: %s", step, r.first);
            break;
        }
    }
    ktest_diag(t, "%u runs, %u at the model's exact address, %u found no room", runs, exact,
               failed);
    KT_EXPECT(t, failed > 0 && failed < runs);
    while (nlive > 0)
        KT_ASSERT_EQ(t, free_live(f.k, &live[--nlive]), KMM_OK);
    EXPECT_BUDDYINFO(t, f.k, &s0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
