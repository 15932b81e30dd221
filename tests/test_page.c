/*
 * test_page.c - the buddy page allocator: blocks, zones, flags, misuse,
 * statistics, exhaustion, and a randomised run against a shadow model.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "fuzz_input.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)
#define PAGE UINT64_C(4096)

/* 64 MiB: DMA below 16 MiB, DMA32 above; a firmware hole and a reserved
 * range inside usable RAM. Small enough for the kernel's test arena. */
static const struct kmm_region pc64[] = {
    {0x0, 0x9fc00, KMM_MEM_USABLE},        {0x9fc00, 0x400, KMM_MEM_RESERVED},
    {0xf0000, 0x10000, KMM_MEM_RESERVED},  {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
    {20 * MIB, 1 * MIB, KMM_MEM_RESERVED},
};

KTEST(page, init_hands_every_usable_page_but_the_metadata_to_the_zones)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    /* usable: 0x1000..0x9f000 (158 pages) + 1..64 MiB minus 20..21 MiB (15872 pages) */
    KT_EXPECT_EQ(t, s.usable_pages, 158 + 15872);
    KT_EXPECT_EQ(t, s.managed_pages + s.metadata_pages, s.usable_pages);
    /* Allocated: only the kernel address space's tables. */
    struct kmm_vm_stats vs;
    kmm_vm_stats(kmm_kernel_aspace(f.k), &vs);
    KT_EXPECT_EQ(t, vs.table_bytes / PAGE, 257);
    KT_EXPECT_EQ(t, s.allocated_pages, 257);
    KT_EXPECT_EQ(t, s.free_pages, s.managed_pages - 257);
    KT_EXPECT_EQ(t, s.frame_db_bytes, 512 * 1024); /* one 128 MiB section */
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA].managed_pages, 158 + 15 * 256);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA32].managed_pages + s.metadata_pages, 47 * 256);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].managed_pages, 0);
    KT_EXPECT_EQ(t, s.reserved_bytes[KMM_MEM_RESERVED], 0x400 + 0x10000 + 1 * MIB);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, blocks_are_aligned_to_their_size_and_never_overlap_reserved_memory)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    for (unsigned order = 0; order <= KMM_PAGE_MAX_ORDER; order++) {
        uint64_t pa = kmm_page_alloc(f.k, order, 0);
        KT_ASSERT(t, pa != 0);
        KT_EXPECT_EQ(t, pa % (PAGE << order), 0);
        uint64_t end = pa + (PAGE << order);
        KT_EXPECT(t, end <= 20 * MIB || pa >= 21 * MIB); /* not the reserved MiB */
        KT_EXPECT(t, pa >= PAGE);                        /* never page 0 */
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, order), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, freed_blocks_merge_back_to_the_initial_buddyinfo)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats before, after;
    kmm_page_stats(f.k, &before);
    static uint64_t pages[4096];
    for (unsigned i = 0; i < N(pages); i++) {
        pages[i] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pages[i] != 0);
    }
    KT_EXPECT_HEALTHY(t, f.k);
    /* Free in an interleaved order so merges happen late. */
    for (unsigned i = 0; i < N(pages); i += 2)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    for (unsigned i = 1; i < N(pages); i += 2)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    kmm_page_drain_cpu(f.k); /* the last frees sit in this CPU's cache */
    kmm_page_stats(f.k, &after);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t,
                 after.zones[KMM_ZONE_DMA32].alloc_calls + after.zones[KMM_ZONE_DMA].alloc_calls -
                     before.zones[KMM_ZONE_DMA32].alloc_calls -
                     before.zones[KMM_ZONE_DMA].alloc_calls,
                 4096);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, a_zero_flag_block_is_all_zeroes)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    uint64_t pa = kmm_page_alloc(f.k, 2, 0);
    KT_ASSERT(t, pa != 0);
    kt_fill(kt_machine_phys(f.m, pa), 0xcc, 4 * PAGE);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 2), KMM_OK);
    uint64_t again = kmm_page_alloc(f.k, 2, KMM_GFP_ZERO);
    KT_ASSERT_EQ(t, again, pa); /* LIFO: the same block comes back */
    const uint8_t *p = kt_machine_phys(f.m, again);
    bool zero = true;
    for (uint64_t i = 0; i < 4 * PAGE; i++)
        zero &= p[i] == 0;
    KT_EXPECT(t, zero);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, again, 2), KMM_OK);
    kt_kmm_down(&f);
}

KTEST(page, zone_flags_pick_low_memory_and_normal_falls_back_downwards)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    uint64_t dma = kmm_page_alloc(f.k, 0, KMM_GFP_DMA);
    KT_EXPECT(t, dma != 0 && dma < 16 * MIB);
    uint64_t any = kmm_page_alloc(f.k, 0, 0); /* no Normal zone: DMA32 first */
    KT_EXPECT(t, any >= 16 * MIB);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    /* Drain DMA32; further DMA32 requests fall back to DMA, DMA ones stay. */
    uint64_t n32 = s.zones[KMM_ZONE_DMA32].free_pages;
    for (uint64_t i = 0; i < n32; i++)
        KT_ASSERT(t, kmm_page_alloc(f.k, 0, KMM_GFP_DMA32) >= 16 * MIB);
    uint64_t low = kmm_page_alloc(f.k, 0, KMM_GFP_DMA32);
    KT_EXPECT(t, low != 0 && low < 16 * MIB);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, dma_requests_never_climb_to_higher_zones)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    uint64_t n = s.zones[KMM_ZONE_DMA].free_pages;
    for (uint64_t i = 0; i < n; i++)
        KT_ASSERT(t, kmm_page_alloc(f.k, 0, KMM_GFP_DMA) < 16 * MIB);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 0, KMM_GFP_DMA), 0);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.failed_allocs, 1);
    KT_EXPECT(t, s.zones[KMM_ZONE_DMA32].free_pages > 0); /* untouched */
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, counts_round_up_to_a_power_of_two_and_the_free_must_match)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    KT_EXPECT_EQ(t, kmm_order_for_count(1), 0);
    KT_EXPECT_EQ(t, kmm_order_for_count(3), 2);
    KT_EXPECT_EQ(t, kmm_order_for_count(1024), 10);
    KT_EXPECT_EQ(t, kmm_order_for_count(1025), 11);
    uint64_t pa = kmm_pages_alloc(f.k, 3, 0);
    KT_ASSERT(t, pa != 0);
    KT_EXPECT_EQ(t, pa % (4 * PAGE), 0);
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 5), KMM_EINVAL); /* 8 pages, not 4 */
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 4), KMM_OK);     /* 3 and 4 are one size */
    KT_EXPECT_EQ(t, kmm_pages_alloc(f.k, 0, 0), 0);
    KT_EXPECT_EQ(t, kmm_pages_alloc(f.k, 1025, 0), 0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, a_block_with_two_references_is_freed_by_the_second_free)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats s0, s1;
    kmm_page_stats(f.k, &s0);
    uint64_t pa = kmm_page_alloc(f.k, 1, 0);
    KT_ASSERT_EQ(t, kmm_page_get(f.k, pa), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 1), KMM_OK);
    kmm_page_stats(f.k, &s1);
    KT_EXPECT_EQ(t, s1.free_pages, s0.free_pages - 2); /* still held */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 1), KMM_OK);
    kmm_page_stats(f.k, &s1);
    KT_EXPECT_EQ(t, s1.free_pages, s0.free_pages);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_ESTATE); /* free: no references to take */
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* --- misuse: each is an error, counted, logged once, and changes nothing --- */

KTEST(page, every_misuse_is_rejected_counted_logged_and_harmless)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    uint64_t held = kmm_page_alloc(f.k, 2, 0);  /* an allocated order-2 block */
    uint64_t freed = kmm_page_alloc(f.k, 0, 0); /* allocated, then freed */
    KT_ASSERT(t, held && freed);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, freed, 0), KMM_OK);
    struct kmm_page_stats s;
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);

#define MISUSE(call, err, kind, what)                                                              \
    do {                                                                                           \
        kmm_page_stats(f.k, &s);                                                                   \
        int got_ = (call);                                                                         \
        kt_expect_misuse(t, &f, got_, (err), (kind), &s, (what), "kmm_page");                      \
    } while (0)

    MISUSE(kmm_page_free(f.k, freed, 0), KMM_ESTATE, KMM_MISUSE_DOUBLE_FREE, "double free");
    MISUSE(kmm_page_free(f.k, held, 1), KMM_EINVAL, KMM_MISUSE_WRONG_ORDER, "wrong order");
    MISUSE(kmm_page_free(f.k, held + 0x10, 2), KMM_EINVAL, KMM_MISUSE_UNALIGNED, "unaligned");
    MISUSE(kmm_page_free(f.k, held + PAGE, 0), KMM_EINVAL, KMM_MISUSE_NOT_BLOCK, "inside a block");
    MISUSE(kmm_page_free(f.k, 20 * MIB + PAGE, 0), KMM_EINVAL, KMM_MISUSE_RESERVED,
           "reserved page");
    MISUSE(kmm_page_free(f.k, 0, 0), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "page 0 (never managed)");
    MISUSE(kmm_page_free(f.k, 0xa0000, 0), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "hole below 1 MiB");
    MISUSE(kmm_page_free(f.k, 64 * MIB, 0), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "beyond RAM");
    MISUSE(kmm_page_free(f.k, UINT64_C(1) << 51, 0), KMM_ERANGE, KMM_MISUSE_OUTSIDE, "far away");
    MISUSE(kmm_page_free(f.k, held, 11), KMM_EINVAL, KMM_MISUSE_BAD_ORDER, "order 11");
    MISUSE(kmm_pages_free(f.k, held, 0), KMM_EINVAL, KMM_MISUSE_BAD_ORDER, "count 0");
    MISUSE(kmm_page_alloc(f.k, 11, 0) ? 1 : KMM_EINVAL, KMM_EINVAL, KMM_MISUSE_BAD_ORDER,
           "alloc order 11");
    MISUSE(kmm_page_alloc(f.k, 0, 0x100) ? 1 : KMM_EINVAL, KMM_EINVAL, KMM_MISUSE_BAD_FLAGS,
           "unknown flag");
    MISUSE(kmm_page_alloc(f.k, 0, KMM_GFP_DMA | KMM_GFP_DMA32) ? 1 : KMM_EINVAL, KMM_EINVAL,
           KMM_MISUSE_BAD_FLAGS, "two zone flags");
    /* The metadata is reserved too: freeing the frame database is refused. */
    size_t n;
    const struct kmm_region *map = kmm_memory_map(f.k, &n);
    for (size_t i = 0; i < n; i++)
        if (map[i].type == KMM_MEM_KMM_META)
            MISUSE(kmm_page_free(f.k, map[i].base, 0), KMM_EINVAL, KMM_MISUSE_RESERVED,
                   "kmm's own metadata");
#undef MISUSE
    /* One log line per misuse, naming the call. */
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR) - errors, 15);
    KT_EXPECT(t, ktest_streq(kt_machine_last_error(f.m), "") == false);
    /* The held block is still intact and frees normally. */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, held, 2), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, a_double_free_after_the_page_merged_is_still_a_double_free)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    /* A page freed, then given back to its zone with the rest of the CPU
     * cache: it merges, and is no longer a head but inside a free block. */
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    kmm_page_drain_cpu(f.k);
    /* An order-2 block freed: its other pages are inside a free block too. */
    uint64_t block = kmm_page_alloc(f.k, 2, 0);
    KT_ASSERT(t, block != 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, block, 2), KMM_OK);
    struct kmm_page_stats s;
#define DOUBLE_FREE(call, what)                                                                    \
    do {                                                                                           \
        kmm_page_stats(f.k, &s);                                                                   \
        int got_ = (call);                                                                         \
        kt_expect_misuse(t, &f, got_, KMM_ESTATE, KMM_MISUSE_DOUBLE_FREE, &s, (what), "kmm_");     \
    } while (0)
    DOUBLE_FREE(kmm_page_free(f.k, pa, 0), "the merged page again");
    DOUBLE_FREE(kmm_page_free(f.k, block + PAGE, 0), "a page inside the freed block");
    DOUBLE_FREE(kmm_pages_free(f.k, block + 2 * PAGE, 2), "two pages inside it");
    DOUBLE_FREE(kmm_page_get(f.k, block + 3 * PAGE), "a reference to a page inside it");
    DOUBLE_FREE(kmm_run_free(f.k, block + PAGE, 1), "a run inside it");
#undef DOUBLE_FREE
    /* Inside an allocated block it stays a pointer into a block. */
    uint64_t held = kmm_page_alloc(f.k, 2, 0);
    kmm_page_stats(f.k, &s);
    kt_expect_misuse(t, &f, kmm_page_free(f.k, held + PAGE, 0), KMM_EINVAL, KMM_MISUSE_NOT_BLOCK,
                     &s, "inside an allocated block", "kmm_page_free");
    KT_EXPECT_EQ(t, kmm_page_free(f.k, held, 2), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, exhaustion_fails_cleanly_and_freeing_everything_restores_every_counter)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    struct kmm_page_stats before, after;
    kmm_page_stats(f.k, &before);
    /* Take everything in order-2 blocks, then the rest as single pages. */
    static uint64_t got[16384];
    static unsigned order_of[16384];
    size_t n = 0;
    for (unsigned order = 2;; order = 0) {
        uint64_t pa;
        while (n < N(got) && (pa = kmm_page_alloc(f.k, order, 0)) != 0) {
            order_of[n] = order;
            got[n++] = pa;
        }
        if (order == 0)
            break;
    }
    kmm_page_stats(f.k, &after);
    KT_EXPECT_EQ(t, after.free_pages, 0);
    KT_EXPECT_EQ(t, after.allocated_pages, before.managed_pages);
    KT_EXPECT_EQ(t, after.failed_allocs, 2);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 0, KMM_GFP_DMA), 0);
    KT_EXPECT_HEALTHY(t, f.k);
    for (size_t i = n; i-- > 0;)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, got[i], order_of[i]), KMM_OK);
    kmm_page_drain_cpu(f.k);
    kmm_page_stats(f.k, &after);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, unusable_index_counts_free_memory_in_too_small_blocks)
{
    struct kmm_zone_stats z = {.free_pages = 0};
    KT_EXPECT_EQ(t, kmm_unusable_index(&z, 3), 0);
    z.free_pages = 16;
    z.free_blocks[0] = 8; /* 8 single pages */
    z.free_blocks[3] = 1; /* one block of 8 */
    KT_EXPECT_EQ(t, kmm_unusable_index(&z, 0), 0);
    KT_EXPECT_EQ(t, kmm_unusable_index(&z, 1), 500);
    KT_EXPECT_EQ(t, kmm_unusable_index(&z, 3), 500);
    KT_EXPECT_EQ(t, kmm_unusable_index(&z, 4), 1000);
    KT_EXPECT_EQ(t, kmm_unusable_index(&z, 11), 1000);
}

KTEST(page, fragmentation_shows_in_the_unusable_index)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    static uint64_t pages[2048];
    for (unsigned i = 0; i < N(pages); i++)
        pages[i] = kmm_page_alloc(f.k, 0, KMM_GFP_DMA);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    unsigned full = kmm_unusable_index(&s.zones[KMM_ZONE_DMA], 1);
    for (unsigned i = 0; i < N(pages); i += 2) /* every other page: no pairs */
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    kmm_page_drain_cpu(f.k); /* to the buddy lists, where fragmentation is seen */
    kmm_page_stats(f.k, &s);
    unsigned holes = kmm_unusable_index(&s.zones[KMM_ZONE_DMA], 1);
    KT_EXPECT(t, holes > full);
    for (unsigned i = 1; i < N(pages); i += 2)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* --- sparse and large machines (hosted; the kernel's arena is too small) --- */

KTEST(page, a_sparse_machine_pays_descriptors_only_where_ram_is)
{
    static const struct kmm_region sparse[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {64 * GIB, 256 * MIB, KMM_MEM_USABLE},
    };
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, sparse, N(sparse), 1, 0))
        return;
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.frame_db_bytes, 3 * 512 * 1024); /* 1 low + 2 high sections */
    KT_EXPECT(t, s.zones[KMM_ZONE_NORMAL].managed_pages > 0);
    uint64_t pa = kmm_page_alloc(f.k, 10, 0);
    KT_EXPECT(t, pa >= 64 * GIB); /* Normal first */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 10), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, 32 * GIB, 0), KMM_ERANGE); /* the hole */
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

/* --- randomised against a shadow model --- */

#define SHADOW_PAGES (64 * MIB / PAGE)
static uint8_t shadow[SHADOW_PAGES]; /* 1: the page is allocated */

/* Whether every page of the block is marked `want` in the shadow. */
static bool shadow_is(uint64_t pa, unsigned order, uint8_t want)
{
    for (uint64_t p = pa / PAGE; p < pa / PAGE + (UINT64_C(1) << order); p++)
        if (shadow[p] != want)
            return false;
    return true;
}

static void shadow_set(uint64_t pa, unsigned order, uint8_t v)
{
    for (uint64_t p = pa / PAGE; p < pa / PAGE + (UINT64_C(1) << order); p++)
        shadow[p] = v;
}

/*
 * Allocations of orders 0-9 from any zone (some zeroed, checked), frees,
 * and frees that are wrong (the wrong order, a block freed already), whose
 * choices come from c; after every step the allocated count must match
 * the shadow and kmm_check must pass. At most `steps` steps, fewer if c's
 * bytes run out. Then everything is freed and the buddyinfo must be back.
 */
static void run_page_random(struct ktest *t, struct kt_chooser *c, int steps)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    kt_fill(shadow, 0, sizeof(shadow));
    static uint64_t live_pa[512];
    static unsigned live_order[512];
    size_t live = 0;
    uint64_t shadow_used = 0, gone_pa = 0;
    unsigned gone_order = 0;
    struct kmm_page_stats s0, s;
    kmm_page_stats(f.k, &s0);
    for (int step = 0; step < steps && !ktest_failed(t) && !c->ended; step++) {
        unsigned op = (unsigned)kt_choose(c, 100);
        if (live == 0 || (live < N(live_pa) && op < 55)) {
            unsigned order = (unsigned)kt_choose(c, 10);
            static const kmm_gfp_t zone[4] = {0, 0, KMM_GFP_DMA, KMM_GFP_DMA32};
            kmm_gfp_t gfp = zone[kt_choose(c, 4)] | (kt_choose(c, 8) == 0 ? KMM_GFP_ZERO : 0);
            uint64_t pa = kmm_page_alloc(f.k, order, gfp);
            if (!pa)
                continue;
            KT_ASSERT(t, pa % (PAGE << order) == 0 && pa + (PAGE << order) <= 64 * MIB);
            KT_ASSERT(t, shadow_is(pa, order, 0)); /* never hand out a page twice */
            if (gfp & KMM_GFP_ZERO) {
                const uint8_t *b = kt_machine_phys(f.m, pa);
                KT_ASSERT(t, b[0] == 0 && b[(PAGE << order) - 1] == 0);
            }
            shadow_set(pa, order, 1);
            shadow_used += UINT64_C(1) << order;
            live_pa[live] = pa;
            live_order[live++] = order;
        } else if (op < 95) {
            size_t i = (size_t)kt_choose(c, live);
            KT_ASSERT_EQ(t, kmm_page_free(f.k, live_pa[i], live_order[i]), KMM_OK);
            shadow_set(live_pa[i], live_order[i], 0);
            shadow_used -= UINT64_C(1) << live_order[i];
            gone_pa = live_pa[i];
            gone_order = live_order[i];
            live_pa[i] = live_pa[--live];
            live_order[i] = live_order[live];
        } else if (op < 98) { /* the wrong order: refused, nothing changes */
            size_t i = (size_t)kt_choose(c, live);
            unsigned wrong = live_order[i] ? live_order[i] - 1 : 1;
            KT_ASSERT(t, kmm_page_free(f.k, live_pa[i], wrong) != KMM_OK);
        } else if (gone_pa && shadow_is(gone_pa, gone_order, 0)) { /* a double free */
            KT_ASSERT(t, kmm_page_free(f.k, gone_pa, gone_order) != KMM_OK);
        }
        kmm_page_stats(f.k, &s);
        KT_ASSERT_EQ(t, s.allocated_pages, s0.allocated_pages + shadow_used);
        struct kmm_check_result r;
        if (kmm_check(f.k, &r) != KMM_CHECK_OK) {
            ktest_fail_at(t, __FILE__, __LINE__, "step %d: %s", step, r.first);
            break;
        }
    }
    while (live > 0) {
        live--;
        KT_ASSERT_EQ(t, kmm_page_free(f.k, live_pa[live], live_order[live]), KMM_OK);
    }
    kmm_page_drain_cpu(f.k);
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, kt_same_buddyinfo(&s0, &s));
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page, random_allocs_and_frees_match_a_shadow_model_at_every_step)
{
    struct kt_chooser c = {.seed = 0x5eed};
    run_page_random(t, &c, 3000);
}

/* The same driven by bytes: a fuzzer's input (tests/fuzz/fuzz_page.c), or
 * a fixed one, so the byte-driven path is tested in every world. */
KTEST(page, random_allocs_and_frees_driven_by_bytes_match_a_shadow_model)
{
    static uint8_t fixed[2048];
    struct kt_chooser c = kt_fuzz_chooser(fixed, sizeof(fixed), 0xb17e6);
    run_page_random(t, &c, 3000);
}

KTEST(page, the_check_finds_a_corrupted_free_list)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, pc64, N(pc64), 1, 0))
        return;
    /* Overwrite a free page's descriptor through the direct map, as a stray
     * write would: find it from the metadata range. The descriptor of frame
     * pfn is in the section array after the instance; rather than compute it,
     * corrupt the instance canary, which the walker must report. */
    size_t n;
    const struct kmm_region *map = kmm_memory_map(f.k, &n);
    uint64_t meta = 0;
    for (size_t i = 0; i < n; i++)
        if (map[i].type == KMM_MEM_KMM_META)
            meta = map[i].base;
    uint64_t *canary = kt_machine_phys(f.m, meta);
    uint64_t saved = *canary;
    *canary ^= 1;
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, r.problems >= 1);
    *canary = saved;
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
