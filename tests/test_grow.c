/*
 * test_grow.c - memory that comes online after init: deferred descriptors
 * (used on demand, kmm_page_init_deferred), reclaimed boot memory and
 * hot-added RAM (kmm_page_add_memory), and every way to get an add wrong.
 *
 * The machines with deferred memory are larger than 4 GiB (kmm_init always
 * initialises everything below 4 GiB and 1 GiB above it per node), so those
 * tests skip in the kernel; the reclaim and hot-add tests fit its arena.
 * A hot-add above the initial map's usable and reclaimable RAM needs
 * kmm_config.hotplug_limit, even inside a section that has frames.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define N(a)            (sizeof(a) / sizeof((a)[0]))
#define KIB             (UINT64_C(1) << 10)
#define MIB             (UINT64_C(1) << 20)
#define GIB             (UINT64_C(1) << 30)
#define PAGE            UINT64_C(4096)
#define SECTION_PAGES   UINT64_C(32768)    /* 128 MiB */
#define SECTION_META    (512 * KIB / PAGE) /* descriptor pages of one section */
#define VMM_TABLE_PAGES 257 /* what kmm_init allocates for the kernel address space */

/* 64 MiB low, 3 GiB above 4 GiB: 1 GiB of it initialised at init, the
 * other 16 sections (less kmm's metadata at the very end) deferred. */
static const struct kmm_region big[] = {
    {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
    {4 * GIB, 3 * GIB, KMM_MEM_USABLE},
};

/* Reclaimable memory: bootloader data with ragged edges, ACPI tables in a
 * section with usable RAM, and ACPI tables in a section with none. */
static const struct kmm_region boot[] = {
    {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
    {20 * MIB, 1 * MIB, KMM_MEM_RESERVED},
    {40 * MIB + 0x800, 4 * MIB - 0xc00, KMM_MEM_BOOTLOADER_RECLAIMABLE},
    {48 * MIB, 1 * MIB, KMM_MEM_ACPI_RECLAIMABLE},
    {160 * MIB, 4 * MIB, KMM_MEM_ACPI_RECLAIMABLE},
};

struct fixture {
    struct kt_machine *m;
    struct kmm *k;
};

/* An instance managing map init on a machine whose RAM is map machine
 * (which may hold more: RAM to hot-add later). */
static bool setup_with(struct ktest *t, struct fixture *f, const struct kmm_region *machine,
                       size_t nmachine, const struct kmm_region *init, size_t ninit,
                       uint64_t hotplug_limit)
{
    f->m = kt_machine_create(t, machine, nmachine);
    if (!f->m)
        return false;
    struct kmm_config cfg = {.port = kt_machine_port(f->m),
                             .regions = init,
                             .region_count = ninit,
                             .cpu_count = 1,
                             .hotplug_limit = hotplug_limit};
    int err = kmm_init(&cfg, &f->k);
    if (err) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init: %s", kmm_strerror(err));
        kt_machine_destroy(f->m);
        return false;
    }
    return true;
}

static bool setup(struct ktest *t, struct fixture *f, const struct kmm_region *map, size_t n)
{
    return setup_with(t, f, map, n, map, n, 0);
}

static void teardown(struct fixture *f)
{
    kmm_fini(f->k);
    kt_machine_destroy(f->m);
}

static struct kmm_page_stats stats(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    return s;
}

/* The type the instance's map gives byte pa, 0 for a hole. */
static uint32_t map_type_at(struct kmm *k, uint64_t pa)
{
    size_t n;
    const struct kmm_region *map = kmm_memory_map(k, &n);
    for (size_t i = 0; i < n; i++)
        if (pa >= map[i].base && pa - map[i].base < map[i].length)
            return map[i].type;
    return 0;
}

/* --- every page handed out once ---------------------------------------------------- */

/* One bit per page of the largest machine here (8 GiB). */
#define SEEN_PAGES (8 * GIB / PAGE)
static uint8_t seen[SEEN_PAGES / 8];

/* Marks the block; false if a page of it was handed out already. */
static bool mark_new(uint64_t pa, unsigned order)
{
    bool fresh = true;
    for (uint64_t p = pa / PAGE; p < pa / PAGE + (UINT64_C(1) << order); p++) {
        fresh &= p < SEEN_PAGES && !(seen[p / 8] & (1u << (p % 8)));
        if (p < SEEN_PAGES)
            seen[p / 8] |= (uint8_t)(1u << (p % 8));
    }
    return fresh;
}

/* Everything allocated by take_all, to give back. */
#define HELD_MAX 24576
static uint64_t held[HELD_MAX];
static uint8_t held_order[HELD_MAX];
static size_t nheld;

/*
 * Takes every page the instance will give: order-10 blocks while there are
 * any, then single pages. Fails the test if a page comes twice or the list
 * overflows. Returns the pages taken; *normal_after_low is set if a block
 * above 4 GiB came after one of the same size below it (Normal memory,
 * deferred or not, must be used first).
 */
static uint64_t take_all(struct ktest *t, struct kmm *k, bool *normal_after_low)
{
    kt_fill(seen, 0, sizeof(seen));
    nheld = 0;
    uint64_t pages = 0;
    *normal_after_low = false;
    for (unsigned order = KMM_PAGE_MAX_ORDER;; order = 0) {
        uint64_t pa;
        bool low = false; /* per size: small leftovers of Normal come after large DMA32 blocks */
        while (nheld < HELD_MAX && (pa = kmm_page_alloc(k, order, 0)) != 0) {
            if (!mark_new(pa, order))
                ktest_fail_at(t, __FILE__, __LINE__, "page 0x%llx handed out twice",
                              (unsigned long long)pa);
            low |= pa < 4 * GIB;
            *normal_after_low |= low && pa >= 4 * GIB;
            held[nheld] = pa;
            held_order[nheld++] = (uint8_t)order;
            pages += UINT64_C(1) << order;
        }
        if (nheld == HELD_MAX)
            ktest_fail_at(t, __FILE__, __LINE__, "more than %d blocks", HELD_MAX);
        if (order == 0)
            return pages;
    }
}

/* Gives back everything take_all took. Returns false if a free failed. */
static bool give_all(struct kmm *k)
{
    bool ok = true;
    while (nheld > 0) {
        nheld--;
        ok &= kmm_page_free(k, held[nheld], held_order[nheld]) == KMM_OK;
    }
    kmm_page_drain_cpu(k);
    return ok;
}

/* Of the pages take_all holds, how many lie in [lo, hi). */
static uint64_t held_in(uint64_t lo, uint64_t hi)
{
    uint64_t n = 0;
    for (size_t i = 0; i < nheld; i++)
        for (uint64_t p = 0; p < (UINT64_C(1) << held_order[i]); p++)
            n += held[i] + p * PAGE >= lo && held[i] + p * PAGE < hi;
    return n;
}

/* --- deferred initialisation --------------------------------------------------------- */

KTEST(grow, init_writes_low_memory_and_1_gib_per_node_and_defers_the_rest)
{
    struct fixture f;
    if (!setup(t, &f, big, N(big)))
        return;
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].managed_pages, 8 * SECTION_PAGES);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_DMA].deferred_pages + s.zones[KMM_ZONE_DMA32].deferred_pages,
                 0);
    /* 16 sections deferred; the last holds kmm's metadata. */
    KT_EXPECT_EQ(t, s.deferred_pages, 16 * SECTION_PAGES - s.metadata_pages);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].deferred_pages, s.deferred_pages);
    KT_EXPECT_EQ(t, s.managed_pages + s.deferred_pages + s.metadata_pages, s.usable_pages);
    KT_EXPECT_EQ(t, s.frame_db_bytes, UINT64_C(25) * 512 * KIB); /* assigned to every section */
    KT_EXPECT_EQ(t, s.free_pages, s.managed_pages - VMM_TABLE_PAGES);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, deferred_memory_is_used_on_demand_when_the_initialised_part_runs_out)
{
    static const struct kmm_region two[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {4 * GIB, 2 * GIB, KMM_MEM_USABLE},
    };
    struct fixture f;
    if (!setup(t, &f, two, N(two)))
        return;
    struct kmm_page_stats before = stats(f.k);
    KT_ASSERT(t, before.deferred_pages > 0);
    bool normal_after_low;
    uint64_t taken = take_all(t, f.k, &normal_after_low);
    struct kmm_page_stats after = stats(f.k);
    /* Every page: the initialised ones and every deferred one, exactly once. */
    KT_EXPECT_EQ(t, after.deferred_pages, 0);
    KT_EXPECT_EQ(t, after.free_pages, 0);
    KT_EXPECT_EQ(t, after.managed_pages, before.managed_pages + before.deferred_pages);
    KT_EXPECT_EQ(t, taken, after.managed_pages - before.allocated_pages);
    /* Normal grew before a request fell back to DMA32. */
    KT_EXPECT(t, !normal_after_low);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT(t, give_all(f.k));
    after = stats(f.k);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* Holds a block for give_all. */
static void hold(uint64_t pa, unsigned order)
{
    held[nheld] = pa;
    held_order[nheld++] = (uint8_t)order;
}

/* Writing a section's descriptors (about 0.1 ms) is the zone-locked path's
 * job, with IRQs as the caller had them: a per-CPU cache refill, which runs
 * with IRQs and preemption off, leaves an empty zone with deferred memory
 * to it. So the single page that grows Normal comes from the zone, and no
 * batch is moved into the cache by that call. */
KTEST(grow, a_single_page_grows_an_empty_zone_on_the_locked_path_not_in_the_cache_refill)
{
    struct fixture f;
    if (!setup(t, &f, big, N(big)))
        return;
    nheld = 0;
    kmm_page_drain_cpu(f.k);
    /* Empty Normal's initialised part: large blocks, then single pages
     * (through the cache) until nothing of Normal is free, cached or not. */
    uint64_t pa;
    while (nheld < HELD_MAX && stats(f.k).zones[KMM_ZONE_NORMAL].free_pages >= 1024 &&
           (pa = kmm_page_alloc(f.k, KMM_PAGE_MAX_ORDER, 0)) != 0)
        hold(pa, KMM_PAGE_MAX_ORDER);
    while (nheld < HELD_MAX && stats(f.k).zones[KMM_ZONE_NORMAL].free_pages > 0 &&
           (pa = kmm_page_alloc(f.k, 0, 0)) != 0)
        hold(pa, 0);
    struct kmm_page_stats before = stats(f.k);
    KT_ASSERT_EQ(t, before.zones[KMM_ZONE_NORMAL].free_pages, 0);
    KT_ASSERT(t, before.zones[KMM_ZONE_NORMAL].deferred_pages > 0);

    pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    hold(pa, 0);
    struct kmm_page_stats after = stats(f.k);
    KT_EXPECT(t, pa >= 4 * GIB); /* Normal grew; the request did not fall back to DMA32 */
    KT_EXPECT_EQ(t, after.zones[KMM_ZONE_NORMAL].deferred_pages,
                 before.zones[KMM_ZONE_NORMAL].deferred_pages - SECTION_PAGES);
    KT_EXPECT_EQ(t, after.zones[KMM_ZONE_NORMAL].pcp_pages, 0); /* no refill after growing */
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT(t, give_all(f.k));
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, init_deferred_works_in_whole_sections_in_steps_and_all_at_once)
{
    struct fixture f;
    if (!setup(t, &f, big, N(big)))
        return;
    struct kmm_page_stats s0 = stats(f.k);
    /* Less than a section still initialises one (progress is guaranteed). */
    KT_EXPECT_EQ(t, kmm_page_init_deferred(f.k, 1), SECTION_PAGES);
    KT_EXPECT_HEALTHY(t, f.k);
    /* A budget between one and two sections takes one. */
    KT_EXPECT_EQ(t, kmm_page_init_deferred(f.k, SECTION_PAGES + SECTION_PAGES / 4), SECTION_PAGES);
    KT_EXPECT_EQ(t, kmm_page_init_deferred(f.k, 3 * SECTION_PAGES), 3 * SECTION_PAGES);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.deferred_pages, s0.deferred_pages - 5 * SECTION_PAGES);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_page_init_deferred(f.k, 0), s0.deferred_pages - 5 * SECTION_PAGES);
    KT_EXPECT_EQ(t, kmm_page_init_deferred(f.k, 0), 0);
    s = stats(f.k);
    KT_EXPECT_EQ(t, s.deferred_pages, 0);
    KT_EXPECT_EQ(t, s.managed_pages + s.metadata_pages, s.usable_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, a_free_into_a_deferred_section_is_rejected_as_outside_managed_memory)
{
    struct fixture f;
    if (!setup(t, &f, big, N(big)))
        return;
    uint64_t pa = 6 * GIB; /* in the 17th section above 4 GiB: deferred */
    struct kmm_page_stats s0 = stats(f.k);
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_ERANGE);
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 4), KMM_ERANGE);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_ERANGE);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.misuse[KMM_MISUSE_OUTSIDE], s0.misuse[KMM_MISUSE_OUTSIDE] + 3);
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR) - errors, 3);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages);
    KT_EXPECT_EQ(t, s.deferred_pages, s0.deferred_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    /* Once initialised, the page is free: freeing it is a double free. */
    kmm_page_init_deferred(f.k, 0);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_ESTATE);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, the_walker_checks_initialised_sections_and_skips_deferred_ones)
{
    struct fixture f;
    if (!setup(t, &f, big, N(big)))
        return;
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    KT_EXPECT_EQ(t, r.frames_walked, 9 * SECTION_PAGES); /* 1 low + 8 above 4 GiB */
    kmm_page_init_deferred(f.k, 2 * SECTION_PAGES);
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    KT_EXPECT_EQ(t, r.frames_walked, 11 * SECTION_PAGES);
    kmm_page_init_deferred(f.k, 0);
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    KT_EXPECT_EQ(t, r.frames_walked, 25 * SECTION_PAGES);
    teardown(&f);
}

KTEST(grow, statistics_move_deferred_pages_to_managed_and_free_as_they_come_online)
{
    struct fixture f;
    if (!setup(t, &f, big, N(big)))
        return;
    struct kmm_page_stats s0 = stats(f.k);
    uint64_t got = kmm_page_init_deferred(f.k, 0);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, got, s0.deferred_pages);
    KT_EXPECT_EQ(t, s.managed_pages, s0.managed_pages + got);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages + got);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].managed_pages,
                 s0.zones[KMM_ZONE_NORMAL].managed_pages + got);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].deferred_pages, 0);
    KT_EXPECT_EQ(t, s.allocated_pages, s0.allocated_pages);
    KT_EXPECT_EQ(t, s.usable_pages, s0.usable_pages);
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages);
    KT_EXPECT_EQ(t, s.frame_db_bytes, s0.frame_db_bytes);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* --- reclaiming boot memory ---------------------------------------------------------- */

KTEST(grow, bootloader_reclaimable_memory_becomes_allocatable_and_usable_in_the_map)
{
    struct fixture f;
    if (!setup(t, &f, boot, N(boot)))
        return;
    struct kmm_page_stats s0 = stats(f.k);
    /* The ragged edges stay: only whole pages inside are reclaimed. */
    uint64_t lo = 40 * MIB + PAGE, hi = 44 * MIB - PAGE;
    KT_ASSERT_EQ(
        t,
        kmm_page_add_memory(f.k, 40 * MIB + 0x800, 4 * MIB - 0xc00, KMM_MEM_BOOTLOADER_RECLAIMABLE),
        KMM_OK);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages + (hi - lo) / PAGE);
    KT_EXPECT_EQ(t, s.managed_pages, s0.managed_pages + (hi - lo) / PAGE);
    KT_EXPECT_EQ(t, s.usable_pages, s0.usable_pages + (hi - lo) / PAGE);
    KT_EXPECT_EQ(t, s.reserved_bytes[KMM_MEM_BOOTLOADER_RECLAIMABLE], 0x800 + 0xc00);
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages);
    KT_EXPECT_EQ(t, map_type_at(f.k, lo), KMM_MEM_USABLE);
    KT_EXPECT_EQ(t, map_type_at(f.k, hi - 1), KMM_MEM_USABLE);
    KT_EXPECT_EQ(t, map_type_at(f.k, lo - 1), KMM_MEM_BOOTLOADER_RECLAIMABLE);
    KT_EXPECT_EQ(t, map_type_at(f.k, hi), KMM_MEM_BOOTLOADER_RECLAIMABLE);
    KT_EXPECT_HEALTHY(t, f.k);
    /* Its pages are handed out like any others. */
    bool unused;
    take_all(t, f.k, &unused);
    KT_EXPECT_EQ(t, held_in(lo, hi), (hi - lo) / PAGE);
    KT_EXPECT(t, give_all(f.k));
    /* It is usable now: a second reclaim is refused. */
    KT_EXPECT_EQ(t, kmm_page_add_memory(f.k, lo, hi - lo, KMM_MEM_BOOTLOADER_RECLAIMABLE),
                 KMM_EINVAL);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, acpi_reclaimable_memory_is_reclaimed_next_to_ram_and_in_a_section_of_its_own)
{
    struct fixture f;
    if (!setup(t, &f, boot, N(boot)))
        return;
    struct kmm_page_stats s0 = stats(f.k);
    size_t n0;
    kmm_memory_map(f.k, &n0);
    /* Next to usable RAM: the ranges merge into one. */
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 48 * MIB, 1 * MIB, KMM_MEM_ACPI_RECLAIMABLE), KMM_OK);
    size_t n1;
    kmm_memory_map(f.k, &n1);
    KT_EXPECT_EQ(t, n1, n0 - 2);
    KT_EXPECT_EQ(t, map_type_at(f.k, 48 * MIB), KMM_MEM_USABLE);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages + 256);
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    /* In a section with no frame array yet: its descriptors come from the
     * start of the range. */
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 160 * MIB, 4 * MIB, KMM_MEM_ACPI_RECLAIMABLE), KMM_OK);
    s = stats(f.k);
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages + SECTION_META);
    KT_EXPECT_EQ(t, s.frame_db_bytes, s0.frame_db_bytes + 512 * KIB);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages + 256 + 1024 - SECTION_META);
    KT_EXPECT_EQ(t, s.reserved_bytes[KMM_MEM_ACPI_RECLAIMABLE], 0);
    KT_EXPECT_EQ(t, map_type_at(f.k, 160 * MIB), KMM_MEM_KMM_META);
    KT_EXPECT_EQ(t, map_type_at(f.k, 160 * MIB + 512 * KIB), KMM_MEM_USABLE);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, 160 * MIB, 0), KMM_EINVAL); /* the descriptors: reserved */
    KT_EXPECT_HEALTHY(t, f.k);
    bool unused;
    take_all(t, f.k, &unused);
    KT_EXPECT_EQ(t, held_in(160 * MIB, 164 * MIB), 1024 - SECTION_META);
    KT_EXPECT(t, give_all(f.k));
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* --- hot-add --------------------------------------------------------------------------- */

/* The vmm asks the map what is RAM (pmm_ram_bytes), starting from the range
 * it found last: that hint must never outlive a change of the map. A map
 * of the low RAM sets it; the add inserts a range and moves indexes; then
 * the new RAM maps, the hole between refuses, the low RAM still maps. */
KTEST(grow, the_mappable_ram_follows_the_map_as_memory_is_added)
{
    static const struct kmm_region machine[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {128 * MIB, 64 * MIB, KMM_MEM_USABLE},
    };
    static const uint64_t va = UINT64_C(0xffffffff90000000);
    const unsigned rw = KMM_PROT_READ | KMM_PROT_WRITE;
    struct fixture f;
    if (!setup_with(t, &f, machine, N(machine), machine, 1, 192 * MIB))
        return;
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    KT_EXPECT_EQ(t, kmm_vm_map(ks, va, 2 * MIB, PAGE, rw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, va, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(ks, va, 160 * MIB, PAGE, rw), KMM_ERANGE); /* not RAM yet */
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 128 * MIB, 64 * MIB, KMM_MEM_USABLE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(ks, va, 160 * MIB, PAGE, rw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, va, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(ks, va, 100 * MIB, PAGE, rw), KMM_ERANGE);    /* the hole */
    KT_EXPECT_EQ(t, kmm_vm_map(ks, va, 127 * MIB, 2 * MIB, rw), KMM_ERANGE); /* half in it */
    KT_EXPECT_EQ(t, kmm_vm_map(ks, va, 2 * MIB, PAGE, rw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, va, PAGE), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, hot_add_in_a_new_section_takes_its_descriptors_from_the_range_itself)
{
    static const struct kmm_region machine[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {128 * MIB, 64 * MIB, KMM_MEM_USABLE},
    };
    struct fixture f;
    if (!setup_with(t, &f, machine, N(machine), machine, 1, 192 * MIB))
        return;
    struct kmm_page_stats s0 = stats(f.k);
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 128 * MIB, 64 * MIB, KMM_MEM_USABLE), KMM_OK);
    struct kmm_page_stats s = stats(f.k);
    uint64_t added = 64 * MIB / PAGE;
    KT_EXPECT_EQ(t, s.usable_pages, s0.usable_pages + added);
    KT_EXPECT_EQ(t, s.total_pages, s0.total_pages + added);
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages + SECTION_META);
    KT_EXPECT_EQ(t, s.frame_db_bytes, s0.frame_db_bytes + 512 * KIB);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages + added - SECTION_META);
    KT_EXPECT_EQ(t, s.managed_pages + s.metadata_pages + s.deferred_pages, s.usable_pages);
    KT_EXPECT_EQ(t, map_type_at(f.k, 128 * MIB), KMM_MEM_KMM_META);
    KT_EXPECT_EQ(t, map_type_at(f.k, 192 * MIB - 1), KMM_MEM_USABLE);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, 128 * MIB, 0), KMM_EINVAL);
    KT_EXPECT_HEALTHY(t, f.k);
    bool unused;
    take_all(t, f.k, &unused);
    KT_EXPECT_EQ(t, held_in(128 * MIB, 192 * MIB), added - SECTION_META);
    KT_EXPECT(t, give_all(f.k));
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, hot_add_into_a_hole_of_an_initialised_section_needs_no_new_descriptors)
{
    static const struct kmm_region machine[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};
    static const struct kmm_region holed[] = {
        {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
        {48 * MIB, 16 * MIB, KMM_MEM_USABLE},
    };
    struct fixture f;
    if (!setup_with(t, &f, machine, N(machine), holed, N(holed), 0))
        return;
    struct kmm_page_stats s0 = stats(f.k);
    size_t n0;
    kmm_memory_map(f.k, &n0);
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 32 * MIB, 16 * MIB, KMM_MEM_USABLE), KMM_OK);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.free_pages, s0.free_pages + 4096);
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages);
    KT_EXPECT_EQ(t, s.frame_db_bytes, s0.frame_db_bytes);
    size_t n;
    const struct kmm_region *map = kmm_memory_map(f.k, &n);
    KT_EXPECT_EQ(t, n, n0 - 1); /* the two usable ranges are one now */
    KT_EXPECT_EQ(t, map[0].base, 1 * MIB);
    KT_EXPECT_EQ(t, map[0].type, KMM_MEM_USABLE);
    KT_EXPECT(t, map[0].base + map[0].length > 48 * MIB);
    bool unused;
    take_all(t, f.k, &unused);
    KT_EXPECT_EQ(t, held_in(32 * MIB, 48 * MIB), 4096);
    KT_EXPECT(t, give_all(f.k));
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, hot_added_normal_memory_on_a_machine_without_it_joins_the_zone_lists)
{
    static const struct kmm_region machine[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {4 * GIB, 256 * MIB, KMM_MEM_USABLE},
    };
    struct fixture f;
    if (!setup_with(t, &f, machine, N(machine), machine, 1, 4 * GIB + 256 * MIB))
        return;
    uint64_t pa = kmm_page_alloc(f.k, 3, 0);
    KT_EXPECT(t, pa != 0 && pa < 4 * GIB);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 3), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 4 * GIB, 256 * MIB, KMM_MEM_USABLE), KMM_OK);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].managed_pages, 2 * SECTION_PAGES - 2 * SECTION_META);
    pa = kmm_page_alloc(f.k, 3, 0); /* Normal first now */
    KT_EXPECT(t, pa >= 4 * GIB + 2 * SECTION_META * PAGE);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 3), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(grow, kmm_init_refuses_a_hotplug_limit_beyond_what_a_frame_number_can_name)
{
    static const struct kmm_region small[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};
    struct kt_machine *m = kt_machine_create(t, small, N(small));
    if (!m)
        return;
    struct kmm_config cfg = {.port = kt_machine_port(m),
                             .regions = small,
                             .region_count = N(small),
                             .cpu_count = 1,
                             .hotplug_limit = (KMM_PAGE_PFN_LIMIT + 1) << 12};
    struct kmm *k;
    unsigned long errors = kt_machine_log_count(m, KMM_LOG_ERR);
    KT_EXPECT_EQ(t, kmm_init(&cfg, &k), KMM_EINVAL);
    KT_EXPECT_EQ(t, kt_machine_log_count(m, KMM_LOG_ERR), errors + 1);
    /* The largest allowed limit costs only the section table (3 MiB). */
    cfg.hotplug_limit = KMM_PAGE_PFN_LIMIT << 12;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    KT_EXPECT_EQ(t, stats(k).frame_db_bytes, 512 * KIB);
    KT_EXPECT_HEALTHY(t, k);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(grow, a_zone_that_grows_raises_its_cpu_cache_bound)
{
    static const struct kmm_region machine[] = {{1 * MIB, 119 * MIB, KMM_MEM_USABLE}};
    static const struct kmm_region small[] = {{1 * MIB, 23 * MIB, KMM_MEM_USABLE}};
    struct fixture f;
    if (!setup_with(t, &f, machine, N(machine), small, N(small), 120 * MIB))
        return;
    static uint64_t p[4096];
    size_t n = 0;
    while (n < N(p) && (p[n] = kmm_page_alloc(f.k, 0, KMM_GFP_DMA32)) != 0)
        n++;
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, p[i], 0), KMM_OK);
    uint64_t small_bound = stats(f.k).zones[KMM_ZONE_DMA32].pcp_pages;
    kmm_page_drain_cpu(f.k);
    KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, 24 * MIB, 96 * MIB, KMM_MEM_USABLE), KMM_OK);
    for (n = 0; n < N(p); n++)
        KT_ASSERT((t), (p[n] = kmm_page_alloc(f.k, 0, KMM_GFP_DMA32)) != 0);
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, p[i], 0), KMM_OK);
    struct kmm_page_stats s = stats(f.k);
    KT_EXPECT(t, s.zones[KMM_ZONE_DMA32].pcp_pages > small_bound);
    KT_EXPECT(t, s.zones[KMM_ZONE_DMA32].pcp_pages <= s.zones[KMM_ZONE_DMA32].managed_pages / 8);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* --- every bad add: an error, counted, logged once, nothing changed ------------------ */

struct snapshot {
    struct kmm_page_stats s;
    size_t n;
    struct kmm_region map[64];
};

static void take_snapshot(struct kmm *k, struct snapshot *sn)
{
    sn->s = stats(k);
    const struct kmm_region *map = kmm_memory_map(k, &sn->n);
    for (size_t i = 0; i < sn->n && i < N(sn->map); i++)
        sn->map[i] = map[i];
}

static void expect_error(struct ktest *t, int got, int want, int line, const char *what)
{
    if (got != want)
        ktest_fail_at(t, __FILE__, line, "%s: returned %s, want %s", what, kmm_strerror(got),
                      kmm_strerror(want));
}

/* Makes the call between two snapshots: only add_rejected may differ. */
#define EXPECT_REJECTED(t, f, call, want, what)                                                    \
    do {                                                                                           \
        static struct snapshot b_, a_;                                                             \
        take_snapshot((f)->k, &b_);                                                                \
        unsigned long errs_ = kt_machine_log_count((f)->m, KMM_LOG_ERR);                           \
        int got_ = (call);                                                                         \
        take_snapshot((f)->k, &a_);                                                                \
        expect_error((t), got_, (want), __LINE__, (what));                                         \
        if (a_.s.add_rejected != b_.s.add_rejected + 1)                                            \
            ktest_fail_at((t), __FILE__, __LINE__, "%s: not counted", (what));                     \
        if (kt_machine_log_count((f)->m, KMM_LOG_ERR) != errs_ + 1)                                \
            ktest_fail_at((t), __FILE__, __LINE__, "%s: not logged once", (what));                 \
        a_.s.add_rejected = b_.s.add_rejected;                                                     \
        if (a_.n != b_.n || kt_cmp(a_.map, b_.map, sizeof(a_.map)) != 0 ||                         \
            kt_cmp(&a_.s, &b_.s, sizeof(a_.s)) != 0)                                               \
            ktest_fail_at((t), __FILE__, __LINE__, "%s: something changed", (what));               \
        KT_EXPECT_HEALTHY((t), (f)->k);                                                            \
    } while (0)

KTEST(grow, every_invalid_add_is_rejected_counted_logged_and_changes_nothing)
{
    struct fixture f;
    if (!setup(t, &f, boot, N(boot)))
        return;
    struct kmm *k = f.k;
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 40 * MIB + 0x800, PAGE, KMM_MEM_RESERVED),
                    KMM_EINVAL, "reserved is not a type to add");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 128 * MIB, 8 * MIB, 99), KMM_EINVAL,
                    "an unknown type");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 128 * MIB, 0, KMM_MEM_USABLE), KMM_EINVAL,
                    "length 0");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, UINT64_MAX - 0xfff, 0x2000, KMM_MEM_USABLE),
                    KMM_ERANGE, "a range that wraps");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, KMM_PHYS_LIMIT, PAGE, KMM_MEM_USABLE), KMM_ERANGE,
                    "above the physical address limit");
    EXPECT_REJECTED(t, &f,
                    kmm_page_add_memory(k, 40 * MIB + 0x800, 0x800, KMM_MEM_BOOTLOADER_RECLAIMABLE),
                    KMM_EINVAL, "no whole page");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 0, PAGE, KMM_MEM_USABLE), KMM_EINVAL,
                    "page 0 alone");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 8 * MIB, MIB, KMM_MEM_BOOTLOADER_RECLAIMABLE),
                    KMM_EINVAL, "reclaim of usable memory");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 48 * MIB, MIB, KMM_MEM_BOOTLOADER_RECLAIMABLE),
                    KMM_EINVAL, "reclaim with the wrong type");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 48 * MIB, 2 * MIB, KMM_MEM_ACPI_RECLAIMABLE),
                    KMM_EINVAL, "reclaim of more than the reclaimable range");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 100 * MIB, MIB, KMM_MEM_ACPI_RECLAIMABLE),
                    KMM_EINVAL, "reclaim of a hole");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 8 * MIB, MIB, KMM_MEM_USABLE), KMM_EBUSY,
                    "hot-add over usable memory");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 20 * MIB, MIB, KMM_MEM_USABLE), KMM_EBUSY,
                    "hot-add over reserved memory");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 40 * MIB, PAGE, KMM_MEM_USABLE), KMM_EBUSY,
                    "hot-add of a page the bootloader range shares");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 200 * MIB, 8 * MIB, KMM_MEM_USABLE), KMM_ERANGE,
                    "hot-add beyond the table's reach without hotplug_limit");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 130 * MIB, 256 * KIB, KMM_MEM_USABLE), KMM_ENOMEM,
                    "hot-add too small for its own descriptors");
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(k, 130 * MIB, 512 * KIB, KMM_MEM_USABLE), KMM_ENOMEM,
                    "hot-add that would be all descriptors");
    /* After all that, a valid add still works. */
    KT_EXPECT_EQ(t, kmm_page_add_memory(k, 48 * MIB, MIB, KMM_MEM_ACPI_RECLAIMABLE), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&f);
}

KTEST(grow, a_hot_add_the_memory_map_has_no_room_for_is_rejected_and_changes_nothing)
{
    /* One page at a time into a hole, every other page, so each add is a
     * range of its own, until the map cannot take another. */
    static const struct kmm_region machine[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};
    static const struct kmm_region init[] = {{1 * MIB, 7 * MIB, KMM_MEM_USABLE}};
    struct fixture f;
    if (!setup_with(t, &f, machine, N(machine), init, N(init), 64 * MIB))
        return;
    uint64_t at = 16 * MIB, added = 0;
    for (;;) {
        size_t n;
        kmm_memory_map(f.k, &n);
        if (n + 3 > (size_t)2 * KMM_MAX_REGIONS)
            break; /* the next add may need up to three ranges */
        KT_ASSERT_EQ(t, kmm_page_add_memory(f.k, at, PAGE, KMM_MEM_USABLE), KMM_OK);
        at += 2 * PAGE;
        added++;
    }
    KT_EXPECT(t, added > KMM_MAX_REGIONS);
    EXPECT_REJECTED(t, &f, kmm_page_add_memory(f.k, at, PAGE, KMM_MEM_USABLE), KMM_ENOMEM,
                    "a hot-add with the memory map full");
    /* Memory already added stays usable: every added page can be taken. */
    struct kmm_page_stats s = stats(f.k);
    bool unused;
    take_all(t, f.k, &unused);
    KT_EXPECT_EQ(t, held_in(16 * MIB, at), added);
    KT_EXPECT(t, give_all(f.k));
    KT_EXPECT_EQ(t, stats(f.k).free_pages, s.free_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}
