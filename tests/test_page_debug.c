/*
 * test_page_debug.c - page poisoning (kmm_page_debug): freed pages hold the
 * pattern, a write to a freed page is found by kmm_check and by the
 * allocation that hands the page out again, the per-CPU caches are
 * bypassed while it is on and used again once it is off, and a bad switch
 * is refused.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>

#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)

static const struct kmm_region map32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

static uint8_t *bytes(struct kt_kmm *f, uint64_t pa)
{
    return kt_machine_phys(f->m, pa);
}

/* Whether the page at pa holds the poison in every byte. */
static bool poisoned(struct kt_kmm *f, uint64_t pa)
{
    const uint8_t *b = bytes(f, pa);
    for (uint64_t i = 0; i < PAGE; i++)
        if (b[i] != KMM_PAGE_POISON_BYTE)
            return false;
    return true;
}

static uint64_t page_misuse(struct kmm *k, unsigned cls)
{
    struct kmm_misuse_stats m;
    kmm_misuse_stats(k, &m);
    return m.count[KMM_LAYER_PAGE][cls];
}

static uint64_t cached_pages(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    uint64_t n = 0;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        n += s.zones[z].pcp_pages;
    return n;
}

KTEST(page_debug, freed_pages_hold_the_poison_and_allocations_are_checked_clean)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map32, 1, 1, 0))
        return;
    /* Allocated before the switch, freed after: poisoned on its free. */
    uint64_t early = kmm_page_alloc(f.k, 0, 0);
    uint64_t freed_before = kmm_page_alloc(f.k, 1, 0);
    KT_ASSERT(t, early && freed_before);
    KT_ASSERT_EQ(t, kmm_pages_free(f.k, freed_before, 2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_debug(f.k, KMM_PAGE_DEBUG_POISON), 0);
    /* The switch filled what was free already. */
    KT_EXPECT(t, poisoned(&f, freed_before) && poisoned(&f, freed_before + PAGE));
    kt_fill(bytes(&f, early), 0x11, PAGE);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, early, 0), KMM_OK);
    KT_EXPECT(t, poisoned(&f, early));
    KT_EXPECT_HEALTHY(t, f.k);
    /* Mixed orders come and go: every allocation finds its pattern. */
    uint64_t held[12];
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 12; i++) {
            held[i] = kmm_page_alloc(f.k, i % 4, i % 3 ? 0 : KMM_GFP_ZERO);
            KT_ASSERT(t, held[i] != 0);
            kt_fill(bytes(&f, held[i]), (uint8_t)i, PAGE << (i % 4));
        }
        for (unsigned i = 0; i < 12; i++)
            KT_EXPECT_EQ(t, kmm_page_free(f.k, held[i], i % 4), KMM_OK);
    }
    uint64_t run = kmm_run_alloc(f.k, 3, 0, 0, 0);
    KT_ASSERT(t, run != 0);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, run, 3), KMM_OK);
    KT_EXPECT_EQ(t, page_misuse(f.k, KMM_MISUSE_USE_AFTER_FREE), 0);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_page_debug(f.k, 0), KMM_PAGE_DEBUG_POISON);
    kt_kmm_down(&f);
}

KTEST(page_debug, a_write_to_a_freed_page_is_found_by_check_and_by_its_next_allocation)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map32, 1, 1, 0))
        return;
    KT_ASSERT_EQ(t, kmm_page_debug(f.k, KMM_PAGE_DEBUG_POISON), 0);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    bytes(&f, pa)[123] = 0x5a; /* the stale pointer's write */
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "written after it was freed"));
    /* Allocate until the page comes back: that allocation reports it. */
    static uint64_t got[8192];
    unsigned n = 0;
    bool found = false;
    while (n < 8192 && !found) {
        got[n] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, got[n] != 0);
        found = got[n++] == pa;
    }
    KT_ASSERT(t, found);
    KT_EXPECT_EQ(t, page_misuse(f.k, KMM_MISUSE_USE_AFTER_FREE), 1);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_page_alloc: page"));
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "offset 0x7b"));
    for (unsigned i = 0; i < n; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, got[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_page_debug(f.k, 0), KMM_PAGE_DEBUG_POISON);
    kt_kmm_down(&f);
}

KTEST(page_debug, the_cpu_caches_are_bypassed_while_on_and_used_again_when_off)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map32, 1, 1, 0))
        return;
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT(t, cached_pages(f.k) > 0); /* the cache path as usual */
    KT_ASSERT_EQ(t, kmm_page_debug(f.k, KMM_PAGE_DEBUG_POISON), 0);
    pa = kmm_page_alloc(f.k, 0, 0); /* this CPU empties its caches first */
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, cached_pages(f.k), 0);
    KT_EXPECT(t, kmm_page_drain_pending(f.k));
    KT_ASSERT_EQ(t, kmm_page_debug(f.k, 0), KMM_PAGE_DEBUG_POISON);
    pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT(t, cached_pages(f.k) > 0);
    KT_EXPECT(t, !kmm_page_drain_pending(f.k));
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page_debug, an_unknown_flag_is_refused_counted_and_harmless)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map32, 1, 1, 0))
        return;
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    kt_expect_misuse(t, &f, kmm_page_debug(f.k, 0x80), KMM_EINVAL, KMM_MISUSE_BAD_FLAGS, &s,
                     "unknown flag", "kmm_page_debug");
    KT_EXPECT_EQ(t, kmm_page_debug(f.k, 0), 0); /* still off */
    kt_kmm_down(&f);
}
