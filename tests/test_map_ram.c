/*
 * test_map_ram.c - kmm_vm_map_ram and kmm_vm_unmap_ram: short mappings of
 * the caller's pages carved from per-CPU vmap blocks. The pages show at
 * the address (live where the world has a live window), each range ends in
 * an unmapped guard page, ranges fill a block and spill into a new one, a
 * block with no range left goes back (or stays as this CPU's current block
 * until a drain or a shrinker), a long range gets an area of its own, a
 * memory shortage at any step leaves nothing behind, kmm_check compares
 * every block's bitmap with its page table, and every bad input is
 * refused, counted and changes nothing. And the raw areas whose page
 * tables a kernel keeps (kmm_kva_populate): maps and unmaps in them never
 * build or free a table, and the tables go with the area. Cross-CPU
 * unmaps: hosted/test_map_ram_cpus.c.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "ktest_levels.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define N(a)  (sizeof(a) / sizeof((a)[0]))
#define MIB   (UINT64_C(1) << 20)
#define PAGE  UINT64_C(4096)
#define BLOCK (2 * MIB)
#define RW    (KMM_PROT_READ | KMM_PROT_WRITE)

static const struct kmm_region map32[] = {
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
    {32 * MIB, 1 * MIB, KMM_MEM_RESERVED}, /* device memory, say */
};

struct fixture {
    struct kt_kmm f;
    struct kmm_aspace *ks;
    uint64_t base, size; /* the window */
    bool live;           /* mappings are usable at their addresses */
};

/* An instance on map32 whose window is `size` bytes: at the start of the
 * live window where the world has one (and it is large enough), else at
 * the default base. */
static bool setup(struct ktest *t, struct fixture *x, uint64_t size, unsigned levels)
{
    x->f.m = kt_machine_create(t, map32, N(map32));
    if (!x->f.m)
        return false;
    uint64_t live_base, live_size;
    kt_machine_live_window(x->f.m, &live_base, &live_size);
    x->live = size <= live_size;
    x->base = x->live ? live_base : KMM_KVA_DEFAULT_BASE;
    x->size = size;
    struct kmm_config cfg = {.port = kt_machine_port(x->f.m),
                             .regions = map32,
                             .region_count = N(map32),
                             .cpu_count = 1,
                             .paging_levels = levels,
                             .kva_base = x->base,
                             .kva_size = size};
    int err = kmm_init(&cfg, &x->f.k);
    if (err) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init: %s", kmm_strerror(err));
        kt_machine_destroy(x->f.m);
        return false;
    }
    kmm_page_drain_cpu(x->f.k);
    x->ks = kmm_kernel_aspace(x->f.k);
    return true;
}

static void teardown(struct fixture *x)
{
    kt_kmm_down(&x->f);
}

static struct kmm_vmalloc_stats vstats(struct fixture *x)
{
    struct kmm_vmalloc_stats s;
    kmm_vmalloc_stats(x->f.k, &s);
    return s;
}

/* The parked areas now (kmm_kva_park_stats). */
static uint64_t parked(struct fixture *x)
{
    struct kmm_kva_park_stats s;
    kmm_kva_park_stats(x->f.k, &s);
    return s.areas;
}

static struct kmm_page_stats pstats(struct fixture *x)
{
    struct kmm_page_stats s;
    kmm_kva_purge(x->f.k); /* parked areas keep tables: what frees gave back is counted after */
    kmm_page_drain_cpu(x->f.k);
    kmm_page_stats(x->f.k, &s);
    return s;
}

static inline uint64_t va_of(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

static bool unmapped(struct fixture *x, uint64_t va)
{
    struct kmm_vm_translation tr;
    return kmm_vm_translate(x->ks, va, &tr) == KMM_ENOENT;
}

/* n pages of the page allocator, page i filled with byte seed + i. */
static bool alloc_pages(struct fixture *x, uint64_t *pg, unsigned n, uint8_t seed)
{
    for (unsigned i = 0; i < n; i++) {
        pg[i] = kmm_page_alloc(x->f.k, 0, 0);
        if (!pg[i])
            return false;
        kt_fill(kt_machine_phys(x->f.m, pg[i]), (uint8_t)(seed + i), PAGE);
    }
    return true;
}

static void free_pages(struct fixture *x, const uint64_t *pg, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        kmm_page_free(x->f.k, pg[i], 0);
}

/* Whether the n pages at va map pg[0 .. n) unowned with prot, show the
 * pages' bytes (at va itself where mappings are live), and the page after
 * them (the range's guard page) is unmapped. */
static bool shows_pages(struct fixture *x, uint64_t va, const uint64_t *pg, unsigned n,
                        unsigned prot)
{
    for (unsigned i = 0; i < n; i++) {
        struct kmm_vm_translation tr;
        uint64_t at = va + (uint64_t)i * PAGE;
        if (kmm_vm_translate(x->ks, at, &tr) != KMM_OK || tr.pa != pg[i] || tr.owned ||
            tr.prot != prot)
            return false;
        const uint8_t *want = kt_machine_phys(x->f.m, pg[i]);
        if (x->live && (((volatile const uint8_t *)(uintptr_t)at)[0] != want[0] ||
                        ((volatile const uint8_t *)(uintptr_t)at)[PAGE - 1] != want[PAGE - 1]))
            return false;
    }
    return unmapped(x, va + (uint64_t)n * PAGE);
}

/* --- the common path ------------------------------------------------------------------ */

KTEST_LEVELS(map_ram, a_range_shows_the_callers_pages_and_its_unmap_leaves_them_allocated)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    struct kmm_vm_stats vm_before;
    kmm_vm_stats(x.ks, &vm_before);
    uint64_t pg[3];
    KT_ASSERT(t, alloc_pages(&x, pg, 3, 0x40));
    const uint64_t order[3] = {pg[2], pg[0], pg[1]};
    uint8_t *v = kmm_vm_map_ram(x.f.k, order, 3, RW | KMM_PROT_GLOBAL);
    KT_ASSERT(t, v != NULL);
    KT_EXPECT(t, va_of(v) >= x.base && va_of(v) < x.base + x.size);
    KT_EXPECT(t, shows_pages(&x, va_of(v), order, 3, RW | KMM_PROT_GLOBAL));
    if (x.live) { /* and writes through it land in the caller's page */
        v[PAGE + 5] = 0xa5;
        KT_EXPECT_EQ(t, ((uint8_t *)kt_machine_phys(x.f.m, pg[0]))[5], 0xa5);
    }
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.vmap_blocks, 1);
    KT_EXPECT_EQ(t, s.map_ram_ranges, 1);
    KT_EXPECT_EQ(t, s.map_ram_pages, 3);
    KT_EXPECT_EQ(t, s.vmap_block_free, BLOCK / PAGE - 1 - 4);
    KT_EXPECT_EQ(t, s.vmap_areas, 0);
    KT_EXPECT_EQ(t, s.areas, 1); /* the block's */
    struct kmm_kva_area a;
    KT_ASSERT_EQ(t, kmm_kva_lookup(x.f.k, va_of(v) + PAGE, &a), KMM_OK);
    KT_EXPECT_EQ(t, a.kind, KMM_KVA_VMAP_BLOCK);
    KT_EXPECT_EQ(t, a.va & (BLOCK - 1), 0);
    KT_EXPECT_EQ(t, a.size, BLOCK - PAGE);
    static struct kt_text tx; /* the report's vmallocinfo shows the block */
    tx.len = 0;
    kmm_report(x.f.k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT(t,
              ktest_contains(tx.buf, "vmap blocks 1: 1 ranges mapping 3 pages, 507 block pages"));
    KT_EXPECT(t, ktest_contains(tx.buf, "vmap-block pages=511"));
    KT_EXPECT_HEALTHY(t, x.f.k);

    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(x.f.k, v, 3), KMM_OK);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT(t, unmapped(&x, va_of(v) + i * PAGE));
    s = vstats(&x);
    KT_EXPECT_EQ(t, s.map_ram_ranges, 0);
    KT_EXPECT_EQ(t, s.vmap_blocks, 1); /* this CPU's current block stays */
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* The range's pages are free again: the next range starts there. */
    void *w = kmm_vm_map_ram(x.f.k, pg, 1, KMM_PROT_READ);
    KT_EXPECT_EQ(t, va_of(w), va_of(v));
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(x.f.k, w, 1), KMM_OK);

    /* The pages are still the caller's, contents intact. */
    KT_EXPECT_EQ(t, *(uint8_t *)kt_machine_phys(x.f.m, pg[2]), 0x42);
    free_pages(&x, pg, 3);
    /* A drain gives the idle block back: its area, record and page table. */
    KT_EXPECT(t, kmm_vm_map_ram_drain(x.f.k) >= 2);
    s = vstats(&x);
    KT_EXPECT_EQ(t, s.vmap_blocks, 0);
    KT_EXPECT_EQ(t, s.areas, 0);
    KT_EXPECT_EQ(t, kmm_vm_map_ram_drain(x.f.k), 0);
    struct kmm_vm_stats vm_after;
    kmm_vm_stats(x.ks, &vm_after);
    for (unsigned l = 0; l < 6; l++)
        KT_EXPECT_EQ(t, vm_after.tables[l], vm_before.tables[l]);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* 16-page ranges: 30 of them and their guard pages take 510 of a block's
 * 511 pages; the 31st needs a new block. */
#define SPILL_PAGES  16u
#define SPILL_RANGES 31u

KTEST_LEVELS(map_ram, ranges_fill_a_block_spill_into_a_new_one_and_an_emptied_block_goes_back)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    uint64_t pg[SPILL_PAGES];
    KT_ASSERT(t, alloc_pages(&x, pg, SPILL_PAGES, 1));
    void *r[SPILL_RANGES];
    for (unsigned i = 0; i < SPILL_RANGES; i++) {
        r[i] = kmm_vm_map_ram(x.f.k, pg, SPILL_PAGES, KMM_PROT_READ);
        KT_ASSERT(t, r[i] != NULL);
        KT_EXPECT(t, shows_pages(&x, va_of(r[i]), pg, SPILL_PAGES, KMM_PROT_READ));
        KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, i + 1 < SPILL_RANGES ? 1u : 2u);
    }
    /* Within the first block each range follows the last one's guard page;
     * the last one starts the second block. */
    for (unsigned i = 1; i + 1 < SPILL_RANGES; i++)
        KT_EXPECT_EQ(t, va_of(r[i]), va_of(r[i - 1]) + (SPILL_PAGES + 1) * PAGE);
    KT_EXPECT_EQ(t, va_of(r[SPILL_RANGES - 1]) & (BLOCK - 1), 0);
    KT_EXPECT(t, va_of(r[SPILL_RANGES - 1]) >> 21 != va_of(r[0]) >> 21);
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.map_ram_ranges, SPILL_RANGES);
    KT_EXPECT_EQ(t, s.map_ram_pages, SPILL_RANGES * SPILL_PAGES);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Unmapped out of order: the first block, no CPU's current block any
     * more, goes back with its last range. */
    for (unsigned i = 0; i + 1 < SPILL_RANGES; i += 2)
        KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, r[i], SPILL_PAGES), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 2);
    KT_EXPECT_HEALTHY(t, x.f.k);
    for (unsigned i = 1; i + 1 < SPILL_RANGES; i += 2)
        KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, r[i], SPILL_PAGES), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 1);
    KT_EXPECT(t, unmapped(&x, va_of(r[0])));
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, r[SPILL_RANGES - 1], SPILL_PAGES), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 1); /* the current one stays */
    kmm_vm_map_ram_drain(x.f.k);
    free_pages(&x, pg, SPILL_PAGES);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(map_ram, a_range_longer_than_a_block_serves_gets_an_area_of_its_own)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    static uint64_t pg[KMM_MAP_RAM_MAX + 1];
    KT_ASSERT(t, alloc_pages(&x, pg, KMM_MAP_RAM_MAX + 1, 7));
    void *v = kmm_vm_map_ram(x.f.k, pg, KMM_MAP_RAM_MAX + 1, RW);
    KT_ASSERT(t, v != NULL);
    KT_EXPECT(t, shows_pages(&x, va_of(v), pg, KMM_MAP_RAM_MAX + 1, RW));
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.vmap_blocks, 0);
    KT_EXPECT_EQ(t, s.vmap_areas, 1);
    KT_EXPECT_EQ(t, s.vmap_pages, KMM_MAP_RAM_MAX + 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, v, KMM_MAP_RAM_MAX + 1), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).areas, 0);
    KT_EXPECT(t, unmapped(&x, va_of(v)));
    free_pages(&x, pg, KMM_MAP_RAM_MAX + 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* A window too small for an aligned 2 MiB block: every range gets an area. */
KTEST_LEVELS(map_ram, a_window_without_room_for_a_block_serves_ranges_from_areas)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 1 * MIB, levels));
    uint64_t pg;
    KT_ASSERT(t, alloc_pages(&x, &pg, 1, 3));
    void *v = kmm_vm_map_ram(x.f.k, &pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, v != NULL);
    KT_EXPECT(t, shows_pages(&x, va_of(v), &pg, 1, KMM_PROT_READ));
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 0);
    KT_EXPECT_EQ(t, vstats(&x).vmap_areas, 1);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, v, 1), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).areas, 0);
    free_pages(&x, &pg, 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* --- memory shortage and teardown ---------------------------------------------------------- */

/* Takes every free page but `leave` into held (single pages); returns how
 * many it holds. */
static size_t hold_all_but(struct fixture *x, uint64_t *held, size_t cap, size_t leave)
{
    size_t n = 0;
    while (n < cap && (held[n] = kmm_page_alloc(x->f.k, 0, 0)) != 0)
        n++;
    for (size_t i = 0; i < leave && n > 0; i++)
        kmm_page_free(x->f.k, held[--n], 0);
    kmm_page_drain_cpu(x->f.k);
    return n;
}

/* With 0, 1, 2, ... pages left, a map_ram either works or fails leaving
 * nothing behind: a block needs its area's records, its own record and a
 * page table (and its path), the fallback area its records and tables. */
KTEST_LEVELS(map_ram, a_shortage_at_every_step_leaves_nothing_behind)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    static uint64_t held[32 * MIB / PAGE];
    uint64_t pg;
    KT_ASSERT(t, alloc_pages(&x, &pg, 1, 9));
    bool worked = false;
    for (size_t leave = 0; leave < 12 && !worked; leave++) {
        size_t n = hold_all_but(&x, held, N(held), leave);
        struct kmm_page_stats before = pstats(&x);
        struct kmm_vmalloc_stats vbefore = vstats(&x);
        void *v = kmm_vm_map_ram(x.f.k, &pg, 1, KMM_PROT_READ);
        if (v) {
            worked = true;
            KT_EXPECT(t, shows_pages(&x, va_of(v), &pg, 1, KMM_PROT_READ));
            KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, v, 1), KMM_OK);
            kmm_vm_map_ram_drain(x.f.k);
        } else {
            KT_EXPECT(t, leave < 8); /* records, a block's record, its tables */
        }
        struct kmm_page_stats after = pstats(&x);
        struct kmm_vmalloc_stats vafter = vstats(&x);
        KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
        KT_EXPECT_EQ(t, vafter.areas, vbefore.areas);
        KT_EXPECT_EQ(t, vafter.vmap_blocks, 0);
        KT_EXPECT_HEALTHY(t, x.f.k);
        free_pages(&x, held, (unsigned)n);
    }
    KT_EXPECT(t, worked);
    free_pages(&x, &pg, 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(map_ram, the_shrinker_gives_back_an_idle_current_block_when_memory_runs_out)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    static uint64_t held[32 * MIB / PAGE];
    uint64_t pg;
    KT_ASSERT(t, alloc_pages(&x, &pg, 1, 9));
    void *v = kmm_vm_map_ram(x.f.k, &pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, v != NULL);
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(x.f.k, v, 1), KMM_OK);
    KT_ASSERT_EQ(t, vstats(&x).vmap_blocks, 1);
    /* Taking every page runs the shrinkers before the allocator gives up. */
    size_t n = hold_all_but(&x, held, N(held), 0);
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 0);
    struct kmm_page_stats ps = pstats(&x);
    KT_EXPECT(t, ps.reclaimed_pages >= 2);
    free_pages(&x, held, (unsigned)n);
    free_pages(&x, &pg, 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(map_ram, a_drain_keeps_blocks_with_live_ranges_and_teardown_copes_with_them)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    uint64_t pg[2];
    KT_ASSERT(t, alloc_pages(&x, pg, 2, 5));
    void *a = kmm_vm_map_ram(x.f.k, pg, 2, KMM_PROT_READ);
    void *b = kmm_vm_map_ram(x.f.k, pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, a != NULL && b != NULL);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, a, 2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map_ram_drain(x.f.k), 0);
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 1);
    KT_EXPECT(t, shows_pages(&x, va_of(b), pg, 1, KMM_PROT_READ));
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* The instance goes with a live range in a live block. */
    teardown(&x);
}

/* --- the check ---------------------------------------------------------------------------- */

/* The 4 KiB entry that maps va in the kernel space, whose page table must
 * exist, read through the machine's direct map as a CPU walks it. */
static uint64_t *pte_of(struct fixture *x, uint64_t va, unsigned levels)
{
    const uint64_t frame = UINT64_C(0x000ffffffffff000);
    uint64_t table = kmm_aspace_root(x->ks);
    for (unsigned l = levels; l > 1; l--) {
        const uint64_t *e = kt_machine_phys(x->f.m, table);
        table = e[(va >> (12 + 9 * (l - 1))) & 511] & frame;
    }
    return &((uint64_t *)kt_machine_phys(x->f.m, table))[(va >> 12) & 511];
}

KTEST_LEVELS(map_ram, kmm_check_compares_each_blocks_bitmap_with_its_page_table)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    uint64_t pg[2];
    KT_ASSERT(t, alloc_pages(&x, pg, 2, 5));
    void *v = kmm_vm_map_ram(x.f.k, pg, 2, KMM_PROT_READ);
    KT_ASSERT(t, v != NULL);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* A kernel writing the block's table behind the library's back: the
     * range's last page moves into its guard page's entry (the table's
     * count stays right), and the check names the block. */
    uint64_t *last = pte_of(&x, va_of(v) + PAGE, levels),
             *guard = pte_of(&x, va_of(v) + 2 * PAGE, levels);
    KT_ASSERT(t, *last != 0 && *guard == 0);
    *guard = *last;
    *last = 0;
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(x.f.k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "vmap block"));
    *last = *guard;
    *guard = 0;
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.f.k, v, 2), KMM_OK);
    kmm_vm_map_ram_drain(x.f.k);
    free_pages(&x, pg, 2);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* --- bad input (SPEC §9) -------------------------------------------------------------------- */

/* The checks of a refused call: the error, one more kva misuse, the areas
 * and ranges as they were (kt_expect_misuse: no page misuse, same free
 * lists, the log line, kmm_check clean). */
static void expect_refused_at(struct ktest *t, struct fixture *x, int got, int want,
                              const struct kmm_page_stats *before,
                              const struct kmm_vmalloc_stats *vbefore, const char *what,
                              const char *needle, int line)
{
    kt_expect_misuse_at(t, &x->f, got, want, -1, before, what, needle, __FILE__, line);
    struct kmm_vmalloc_stats v = vstats(x);
    if (v.misuse != vbefore->misuse + 1 || v.areas != vbefore->areas ||
        v.map_ram_ranges != vbefore->map_ram_ranges || v.map_ram_pages != vbefore->map_ram_pages ||
        v.vmap_block_free != vbefore->vmap_block_free)
        ktest_fail_at(t, __FILE__, line, "%s: misuse %llu -> %llu, ranges %llu -> %llu", what,
                      (unsigned long long)vbefore->misuse, (unsigned long long)v.misuse,
                      (unsigned long long)vbefore->map_ram_ranges,
                      (unsigned long long)v.map_ram_ranges);
}

#define REFUSED(t, x, call, want, needle)                                                          \
    do {                                                                                           \
        struct kmm_page_stats b_ = pstats(x);                                                      \
        struct kmm_vmalloc_stats vb_ = vstats(x);                                                  \
        int got_ = (call);                                                                         \
        expect_refused_at((t), (x), got_, (want), &b_, &vb_, #call, (needle), __LINE__);           \
    } while (0)

#define PTR_ERR(p, err) ((p) ? KMM_OK : (err))

KTEST_LEVELS(map_ram, every_bad_input_is_refused_counted_logged_and_changes_nothing)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm *k = x.f.k;
    uint64_t pg[2];
    KT_ASSERT(t, alloc_pages(&x, pg, 2, 5));
    uint8_t *v = kmm_vm_map_ram(k, pg, 2, KMM_PROT_READ);
    void *area = kmm_vmalloc(k, PAGE, 0);
    KT_ASSERT(t, v != NULL && area != NULL);
    const uint64_t unaligned = pg[0] + 8, device = 32 * MIB, big[2] = {pg[0], pg[1]};

    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, NULL, 1, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL,
            "NULL");
    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, pg, 0, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL,
            "count 0");
    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, big, (size_t)-1, KMM_PROT_READ), KMM_EINVAL),
            KMM_EINVAL, "more pages");
    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, pg, 1, 0), KMM_EINVAL), KMM_EINVAL, "protection");
    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, pg, 1, KMM_PROT_READ | KMM_PROT_USER), KMM_EINVAL),
            KMM_EINVAL, "protection");
    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, &unaligned, 1, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL,
            "aligned");
    REFUSED(t, &x, PTR_ERR(kmm_vm_map_ram(k, &device, 1, KMM_PROT_READ), KMM_ERANGE), KMM_ERANGE,
            "not RAM");

    REFUSED(t, &x, kmm_vm_unmap_ram(k, NULL, 1), KMM_EINVAL, "NULL");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v, 0), KMM_EINVAL, "count 0");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v + 8, 2), KMM_EINVAL, "not page aligned");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, (void *)(uintptr_t)(x.base + x.size), 1), KMM_ERANGE,
            "window");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v, 1), KMM_EINVAL, "page count");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v, 3), KMM_EINVAL, "page count");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v + PAGE, 1), KMM_EINVAL, "inside a range");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v + 2 * PAGE, 1), KMM_EINVAL, "guard page");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v + 5 * PAGE, 1), KMM_ENOENT, "no range starts here");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, area, 1), KMM_EINVAL, "kmm_vfree");
    REFUSED(t, &x, kmm_vm_unmap_ram(k, (void *)(uintptr_t)(x.base + x.size - PAGE), 1), KMM_ENOENT,
            "no area starts here");
    /* The block is the window's own: neither vfree nor a plain map touch it. */
    struct kmm_kva_area a;
    KT_ASSERT_EQ(t, kmm_kva_lookup(k, va_of(v), &a), KMM_OK);
    REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)a.va), KMM_EINVAL, "kmm_vm_unmap_ram");
    REFUSED(t, &x, kmm_vunmap(k, (void *)(uintptr_t)a.va), KMM_EINVAL, "kmm_vm_unmap_ram");
    {
        struct kmm_page_stats b_ = pstats(&x);
        KT_EXPECT_EQ(t, kmm_vm_map(x.ks, va_of(v) + 5 * PAGE, pg[0], PAGE, KMM_PROT_READ),
                     KMM_EBUSY);
        KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, va_of(v), PAGE), KMM_EBUSY);
        struct kmm_page_stats a_ = pstats(&x);
        KT_EXPECT(t, kt_same_buddyinfo(&b_, &a_));
        KT_EXPECT_HEALTHY(t, k);
    }

    /* A double unmap, once the range is gone. */
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(k, v, 2), KMM_OK);
    REFUSED(t, &x, kmm_vm_unmap_ram(k, v, 2), KMM_ENOENT, "unmapped already");
    KT_EXPECT_EQ(t, kmm_vfree(k, area), KMM_OK);
    kmm_vm_map_ram_drain(k);
    free_pages(&x, pg, 2);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* --- populated raw areas (kmm_kva_populate) ------------------------------------------------ */

static uint64_t tables_now(struct fixture *x)
{
    struct kmm_vm_stats s;
    kmm_kva_purge(x->f.k); /* the tables parked areas keep */
    kmm_vm_stats(x->ks, &s);
    uint64_t n = 0;
    for (unsigned l = 0; l < 6; l++)
        n += s.tables[l];
    return n;
}

KTEST_LEVELS(map_ram, a_populated_raw_area_keeps_its_page_tables_until_it_is_freed)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    uint64_t tables0 = tables_now(&x), raw;
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, 3 * MIB, &raw), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_populate(x.f.k, raw), KMM_OK);
    uint64_t spans = ((raw + 3 * MIB - 1) >> 21) - (raw >> 21) + 1;
    uint64_t tables1 = tables_now(&x);
    KT_EXPECT(t, tables1 >= tables0 + spans); /* every page table, and maybe a table above */
    KT_EXPECT_HEALTHY(t, x.f.k);
    uint64_t pg;
    KT_ASSERT(t, alloc_pages(&x, &pg, 1, 1));
    /* A map and unmap in each span: no table comes or goes. */
    for (uint64_t at = raw; at < raw + 3 * MIB; at += MIB) {
        KT_ASSERT_EQ(t, kmm_vm_map(x.ks, at, pg, PAGE, KMM_PROT_READ), KMM_OK);
        KT_EXPECT_EQ(t, tables_now(&x), tables1);
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, at, PAGE), KMM_OK);
        KT_EXPECT(t, unmapped(&x, at));
        KT_EXPECT_EQ(t, tables_now(&x), tables1);
    }
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Still the rule of kmm_kva_free: mapped pages keep it. */
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, raw, pg, PAGE, KMM_PROT_READ), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(x.f.k, raw), KMM_EBUSY);
    KT_EXPECT_EQ(t, tables_now(&x), tables1);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, raw, PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_free(x.f.k, raw), KMM_OK);
    KT_EXPECT_EQ(t, tables_now(&x), tables0);
    free_pages(&x, &pg, 1);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(map_ram, two_populated_areas_sharing_a_page_table_each_hold_it)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    uint64_t tables0 = tables_now(&x), a, b;
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, 2 * PAGE, &a), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, 2 * PAGE, &b), KMM_OK);
    KT_ASSERT_EQ(t, a >> 21, b >> 21);
    KT_ASSERT_EQ(t, kmm_kva_populate(x.f.k, a), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_populate(x.f.k, b), KMM_OK);
    uint64_t tables1 = tables_now(&x);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_kva_free(x.f.k, a), KMM_OK);
    KT_EXPECT_EQ(t, tables_now(&x), tables1); /* b holds it still */
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_kva_free(x.f.k, b), KMM_OK);
    KT_EXPECT_EQ(t, tables_now(&x), tables0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(map_ram, a_populate_without_memory_or_over_a_huge_page_changes_nothing)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 16 * MIB, levels));
    struct kmm *k = x.f.k;
    uint64_t raw;
    KT_ASSERT_EQ(t, kmm_kva_alloc(k, 6 * MIB, &raw), KMM_OK);
    uint64_t tables0 = tables_now(&x);
    /* No memory at all: nothing is built, nothing is held. */
    static uint64_t held[32 * MIB / PAGE];
    size_t n = hold_all_but(&x, held, N(held), 0);
    struct kmm_page_stats before = pstats(&x);
    KT_EXPECT_EQ(t, kmm_kva_populate(k, raw), KMM_ENOMEM);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, tables_now(&x), tables0);
    KT_EXPECT_HEALTHY(t, k);
    free_pages(&x, held, (unsigned)n);
    /* A 2 MiB page the kernel mapped in the area's middle span: refused,
     * and the spans before it are let go again. */
    uint64_t huge_va = ((raw >> 21) + 1) << 21;
    KT_ASSERT(t, huge_va + 2 * MIB <= raw + 6 * MIB && huge_va > raw);
    uint64_t huge_pa = kmm_page_alloc(k, 9, 0);
    KT_ASSERT(t, huge_pa != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, huge_va, huge_pa, 2 * MIB, KMM_PROT_READ | KMM_MAP_HUGE),
                 KMM_OK);
    uint64_t tables1 = tables_now(&x);
    REFUSED(t, &x, kmm_kva_populate(k, raw), KMM_EBUSY, "huge page");
    KT_EXPECT_EQ(t, tables_now(&x), tables1);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, huge_va, 2 * MIB), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, huge_pa, 9), KMM_OK);
    /* Bad handles, and a second populate. */
    void *area = kmm_vmalloc(k, PAGE, 0);
    KT_ASSERT(t, area != NULL);
    REFUSED(t, &x, kmm_kva_populate(k, va_of(area)), KMM_EINVAL, "kmm_vfree");
    REFUSED(t, &x, kmm_kva_populate(k, raw + PAGE), KMM_EINVAL, "inside an area");
    REFUSED(t, &x, kmm_kva_populate(k, raw + 1), KMM_EINVAL, "not page aligned");
    REFUSED(t, &x, kmm_kva_populate(k, x.base + x.size), KMM_ERANGE, "window");
    REFUSED(t, &x, kmm_kva_populate(k, x.base + x.size - PAGE), KMM_ENOENT, "no area starts");
    KT_ASSERT_EQ(t, kmm_kva_populate(k, raw), KMM_OK);
    REFUSED(t, &x, kmm_kva_populate(k, raw), KMM_ESTATE, "populated already");
    KT_EXPECT_EQ(t, kmm_vfree(k, area), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(k, raw), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* --- a random mix ----------------------------------------------------------------------------- */

/* One slot of the mix: a map_ram range, a vmalloc area or a populated raw area. */
struct slot {
    int kind;          /* 0 empty, 1 map_ram, 2 vmalloc, 3 populated raw */
    uint64_t va, span; /* the range with its guard page */
    unsigned n;        /* map_ram's page count */
    void *p;
};

static bool slots_disjoint(const struct slot *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = i + 1; j < n; j++)
            if (s[i].kind && s[j].kind && s[i].va < s[j].va + s[j].span &&
                s[j].va < s[i].va + s[i].span)
                return false;
    return true;
}

static void free_slot(struct ktest *t, struct fixture *x, struct slot *s)
{
    if (s->kind == 1)
        KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x->f.k, s->p, s->n), KMM_OK);
    else if (s->kind == 2)
        KT_EXPECT_EQ(t, kmm_vfree(x->f.k, s->p), KMM_OK);
    else if (s->kind == 3)
        KT_EXPECT_EQ(t, kmm_kva_free(x->f.k, s->va), KMM_OK);
    s->kind = 0;
}

#define MIX_SLOTS 32u
#define MIX_PAGES (KMM_MAP_RAM_MAX + 6) /* a few longer than a block serves */

KTEST_LEVELS(map_ram, a_random_mix_with_areas_stays_disjoint_and_exact)
{
    struct fixture x;
    /* Room for every slot at its largest: 32 raw areas of 101 pages, or
     * blocks, each 2 MiB and aligned. */
    KT_ASSERT(t, setup(t, &x, 32 * MIB, levels));
    static uint64_t pg[MIX_PAGES];
    KT_ASSERT(t, alloc_pages(&x, pg, MIX_PAGES, 0x20));
    struct kmm_page_stats before = pstats(&x);
    uint64_t tables0 = tables_now(&x);
    struct slot s[MIX_SLOTS] = {{0}};
    struct kt_chooser c = {.seed = 0x3a9};
    for (int step = 0; step < 500; step++) {
        KT_EXPECT_HEALTHY(t, x.f.k);
        KT_ASSERT(t, parked(&x) <= KMM_KVA_PARKED);
        if (kt_choose(&c, 10) == 9) { /* the parked areas (of map_ram and vmalloc) go */
            kmm_kva_purge(x.f.k);
            KT_ASSERT_EQ(t, parked(&x), 0);
            continue;
        }
        struct slot *sl = &s[kt_choose(&c, MIX_SLOTS)];
        if (sl->kind) {
            free_slot(t, &x, sl);
            continue;
        }
        int kind = 1 + (int)kt_choose(&c, 3);
        if (kind == 1) {
            unsigned n = 1 + (unsigned)kt_choose(&c, MIX_PAGES);
            unsigned first = (unsigned)kt_choose(&c, MIX_PAGES - n + 1);
            sl->p = kmm_vm_map_ram(x.f.k, pg + first, n, KMM_PROT_READ);
            KT_ASSERT(t, sl->p != NULL);
            KT_ASSERT(t, shows_pages(&x, va_of(sl->p), pg + first, n, KMM_PROT_READ));
            sl->n = n;
            sl->va = va_of(sl->p);
            sl->span = (uint64_t)(n + 1) * PAGE;
        } else if (kind == 2) {
            uint64_t pages = 1 + kt_choose(&c, 12);
            sl->p = kmm_vmalloc(x.f.k, pages * PAGE, 0);
            KT_ASSERT(t, sl->p != NULL);
            sl->va = va_of(sl->p);
            sl->span = (pages + 1) * PAGE;
        } else {
            uint64_t pages = 1 + kt_choose(&c, 100);
            KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, pages * PAGE, &sl->va), KMM_OK);
            KT_ASSERT_EQ(t, kmm_kva_populate(x.f.k, sl->va), KMM_OK);
            sl->span = (pages + 1) * PAGE;
        }
        sl->kind = kind;
        KT_ASSERT(t, sl->va >= x.base && sl->va + sl->span <= x.base + x.size);
        KT_ASSERT(t, slots_disjoint(s, MIX_SLOTS));
    }
    KT_EXPECT_HEALTHY(t, x.f.k);
    for (unsigned i = 0; i < MIX_SLOTS; i++)
        free_slot(t, &x, &s[i]);
    kmm_vm_map_ram_drain(x.f.k);
    kmm_kva_purge(x.f.k);
    struct kmm_vmalloc_stats v = vstats(&x);
    KT_EXPECT_EQ(t, v.areas + v.used_pages + v.vmap_blocks + v.metadata_pages, 0);
    KT_EXPECT_EQ(t, v.misuse, 0);
    KT_EXPECT_EQ(t, tables_now(&x), tables0);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    free_pages(&x, pg, MIX_PAGES);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}
