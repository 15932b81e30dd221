/*
 * test_vmalloc.c - kernel virtual areas: vmalloc memory is usable page by
 * page, areas never overlap and never take a page someone mapped, guard
 * pages stay unmapped, the window fills and refills to the same count,
 * vmap leaves its pages to the caller, every bad input is refused and
 * counted, and nothing leaks.
 *
 * Hosted, the window is the machine's live (mirror) window, so the tests
 * also use areas at their own addresses; in the kernel a test machine's
 * tables are never live, and memory is reached through kmm_vm_translate
 * and the machine's direct map in both worlds.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "fuzz_input.h"
#include "ktest_levels.h"

#include "internal.h" /* the window's park list (vmm/state.h), to corrupt it */

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)

static const struct kmm_region map32[] = {
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
    {32 * MIB, 1 * MIB, KMM_MEM_RESERVED}, /* device memory, say */
};

struct fixture {
    struct kt_kmm f;
    struct kmm_aspace *ks;
    uint64_t base, size; /* the window */
    bool live;           /* areas are usable at their addresses */
};

/*
 * An instance on map32 with `levels` paging levels whose window is `size`
 * bytes (0: the default window): at the start of the live window where the
 * world has one, else at the default base.
 */
static bool setup(struct ktest *t, struct fixture *x, uint64_t size, unsigned levels)
{
    x->f.m = kt_machine_create(t, map32, N(map32));
    if (!x->f.m)
        return false;
    uint64_t live_base, live_size;
    kt_machine_live_window(x->f.m, &live_base, &live_size);
    x->live = size && size <= live_size;
    x->base = x->live ? live_base : size ? KMM_KVA_DEFAULT_BASE : 0;
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
    if (!size) {
        x->base = KMM_KVA_DEFAULT_BASE;
        x->size = KMM_KVA_DEFAULT_SIZE;
    }
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

static struct kmm_kva_park_stats park(struct fixture *x)
{
    struct kmm_kva_park_stats s;
    kmm_kva_park_stats(x->f.k, &s);
    return s;
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

/* Where the test reads and writes the page that va maps (the machine's
 * direct map), or NULL if va is not mapped. */
static uint8_t *backing(struct fixture *x, uint64_t va)
{
    struct kmm_vm_translation tr;
    if (kmm_vm_translate(x->ks, va, &tr) != KMM_OK)
        return 0;
    return kt_machine_phys(x->f.m, tr.pa);
}

/*
 * Writes a pattern into the first and last byte of every page of [va, va +
 * size) (at va itself where areas are live), then reads all of it back
 * through the tables (and at va). True iff every page holds its own
 * pattern: the pages are mapped, and to distinct frames.
 */
static bool pages_hold_their_own_bytes(struct fixture *x, uint64_t va, uint64_t size, uint8_t seed)
{
    for (uint64_t off = 0; off < size; off += PAGE) {
        uint8_t want = (uint8_t)(seed + off / PAGE);
        uint8_t *b = backing(x, va + off);
        if (!b)
            return false;
        volatile uint8_t *p = x->live ? (volatile uint8_t *)(uintptr_t)(va + off) : b;
        p[0] = want;
        p[PAGE - 1] = (uint8_t)~want;
    }
    for (uint64_t off = 0; off < size; off += PAGE) {
        uint8_t want = (uint8_t)(seed + off / PAGE), last = (uint8_t)~want;
        uint8_t *b = backing(x, va + off);
        if (b[0] != want || b[PAGE - 1] != last)
            return false;
        if (x->live && ((volatile uint8_t *)(uintptr_t)(va + off))[0] != want)
            return false;
    }
    return true;
}

/* Whether the page at va is unmapped. */
static bool unmapped(struct fixture *x, uint64_t va)
{
    struct kmm_vm_translation tr;
    return kmm_vm_translate(x->ks, va, &tr) == KMM_ENOENT;
}

/* --- the window ------------------------------------------------------------------- */

KTEST_LEVELS(vmalloc, the_default_window_is_the_boruix_heap_window)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 0, levels));
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.window_base, UINT64_C(0xffffffff90000000));
    KT_EXPECT_EQ(t, s.window_size, 256 * MIB);
    KT_EXPECT_EQ(t, s.largest_free_pages, 256 * MIB / PAGE);
    KT_EXPECT_EQ(t, s.metadata_pages, 0); /* nothing held before the first area */
    void *p = kmm_vmalloc(x.f.k, 3 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, va_of(p), KMM_KVA_DEFAULT_BASE);
    KT_EXPECT(t, pages_hold_their_own_bytes(&x, va_of(p), 3 * PAGE, 1));
    KT_EXPECT(t, unmapped(&x, va_of(p) + 3 * PAGE));
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).areas, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST(vmalloc, kmm_init_refuses_a_window_that_breaks_the_rules)
{
    static const struct {
        uint64_t base, size;
    } bad[] = {
        {KMM_KVA_DEFAULT_BASE + 1, 16 * MIB},                 /* base unaligned */
        {KMM_KVA_DEFAULT_BASE, 16 * MIB + 8},                 /* size unaligned */
        {KMM_KVA_DEFAULT_BASE, PAGE},                         /* no room for a guard page */
        {UINT64_C(0xffff800000000000), KMM_KVA_MAX_SIZE * 2}, /* too large */
        {0, 16 * MIB},                                        /* holds NULL */
        {KMM_KVA_DEFAULT_BASE, 0},                            /* base without a size */
        {UINT64_C(0x0000800000000000), 16 * MIB},             /* not canonical */
        {UINT64_C(0x00007ffffff00000), 2 * MIB},              /* runs off the lower half */
        {UINT64_C(0xfffffffffff00000), 1 * MIB},              /* ends at 2^64 */
        {UINT64_C(0xfffffffffff00000), 2 * MIB},              /* wraps */
    };
    struct kt_machine *m = kt_machine_create(t, map32, N(map32));
    if (!m)
        return;
    for (size_t i = 0; i < N(bad); i++) {
        struct kmm_config cfg = {.port = kt_machine_port(m),
                                 .regions = map32,
                                 .region_count = N(map32),
                                 .cpu_count = 1,
                                 .kva_base = bad[i].base,
                                 .kva_size = bad[i].size};
        struct kmm *k = NULL;
        if (kmm_init(&cfg, &k) != KMM_EINVAL || k != NULL)
            ktest_fail_at(t, __FILE__, __LINE__, "window %zu (0x%llx, 0x%llx) accepted", i,
                          (unsigned long long)bad[i].base, (unsigned long long)bad[i].size);
        KT_EXPECT(t, ktest_contains(kt_machine_last_error(m), "kernel virtual area window"));
    }
    kt_machine_destroy(m);
}

/* --- vmalloc ----------------------------------------------------------------------- */

KTEST_LEVELS(vmalloc, every_page_of_an_area_is_its_own_writable_owned_page)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    void *p = kmm_vmalloc(x.f.k, 5 * PAGE + 100, 0); /* six pages */
    KT_ASSERT(t, p != NULL);
    uint64_t va = va_of(p);
    KT_EXPECT(t, va >= x.base && va + 7 * PAGE <= x.base + x.size);
    KT_EXPECT(t, pages_hold_their_own_bytes(&x, va, 6 * PAGE, 0x40));
    for (uint64_t off = 0; off < 6 * PAGE; off += PAGE) {
        struct kmm_vm_translation tr;
        KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, va + off, &tr), KMM_OK);
        KT_EXPECT(t, tr.owned);
        KT_EXPECT_EQ(t, tr.prot, KMM_VMALLOC_PROT);
        KT_EXPECT_EQ(t, tr.page_size, PAGE);
    }
    KT_EXPECT(t, unmapped(&x, va + 6 * PAGE)); /* the guard page */
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.areas, 1);
    KT_EXPECT_EQ(t, s.vmalloc_areas, 1);
    KT_EXPECT_EQ(t, s.vmalloc_pages, 6);
    KT_EXPECT_EQ(t, s.used_pages, 7);
    struct kmm_page_stats during = pstats(&x);
    /* Six pages, the records and the tables of the window; nothing else. */
    KT_EXPECT(t, during.allocated_pages >= before.allocated_pages + 6 + s.metadata_pages);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT(t, unmapped(&x, va));
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_EQ(t, vstats(&x).metadata_pages, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_page_of_an_area_cannot_be_freed_by_its_frame_address)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm_page_stats start = pstats(&x);
    void *p = kmm_vmalloc(x.f.k, PAGE, 0);
    KT_ASSERT(t, p != NULL);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, va_of(p), &tr), KMM_OK);
    struct kmm_page_stats before = pstats(&x);
    int err = kmm_page_free(x.f.k, tr.pa, 0); /* the mapping's reference: refused */
    kt_expect_misuse(t, &x.f, err, KMM_EBUSY, KMM_MISUSE_BUSY, &before, "free of a vmalloc page",
                     "kmm_page_free");
    /* So the page is not handed out again while the area writes to it. */
    uint64_t other = kmm_page_alloc(x.f.k, 0, 0);
    KT_EXPECT(t, other != tr.pa);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, other, 0), KMM_OK);
    KT_EXPECT(t, pages_hold_their_own_bytes(&x, va_of(p), PAGE, 0x5a));
    KT_ASSERT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT_EQ(t, after.allocated_pages, start.allocated_pages); /* the page went back too */
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, vzalloc_hands_out_zeroed_pages_even_after_dirty_ones_were_freed)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    void *dirty = kmm_vmalloc(x.f.k, 8 * PAGE, 0);
    KT_ASSERT(t, dirty != NULL);
    for (uint64_t off = 0; off < 8 * PAGE; off += PAGE)
        kt_fill(backing(&x, va_of(dirty) + off), 0xa5, PAGE);
    KT_ASSERT_EQ(t, kmm_vfree(x.f.k, dirty), KMM_OK);
    uint8_t *z = kmm_vzalloc(x.f.k, 8 * PAGE);
    KT_ASSERT(t, z != NULL);
    static const uint8_t zero[4096];
    bool all_zero = true;
    for (uint64_t off = 0; off < 8 * PAGE; off += PAGE)
        all_zero &= kt_cmp(backing(&x, va_of(z) + off), zero, PAGE) == 0;
    KT_EXPECT(t, all_zero);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, z), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, areas_never_overlap_and_each_ends_in_an_unmapped_guard_page)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    static const uint64_t sizes[] = {1, PAGE, 3 * PAGE, 5000, 17 * PAGE, 2 * PAGE, 1};
    void *p[N(sizes)];
    for (size_t i = 0; i < N(sizes); i++) {
        p[i] = kmm_vmalloc(x.f.k, sizes[i], 0);
        KT_ASSERT(t, p[i] != NULL);
    }
    /* Free one in the middle and allocate into the hole again. */
    KT_ASSERT_EQ(t, kmm_vfree(x.f.k, p[3]), KMM_OK);
    p[3] = kmm_vmalloc(x.f.k, PAGE, 0);
    KT_ASSERT(t, p[3] != NULL);
    uint64_t len[N(sizes)];
    for (size_t i = 0; i < N(sizes); i++)
        len[i] = (i == 3 ? PAGE : (sizes[i] + PAGE - 1) / PAGE * PAGE) + PAGE; /* and guard */
    for (size_t i = 0; i < N(sizes); i++) {
        uint64_t a = va_of(p[i]);
        KT_EXPECT(t, unmapped(&x, a + len[i] - PAGE));
        KT_EXPECT(t, pages_hold_their_own_bytes(&x, a, len[i] - PAGE, (uint8_t)(i * 16)));
        for (size_t j = 0; j < i; j++) {
            uint64_t b = va_of(p[j]);
            if (a < b + len[j] && b < a + len[i])
                ktest_fail_at(t, __FILE__, __LINE__, "areas %zu and %zu overlap", i, j);
        }
    }
    /* The patterns survived all the other writes: no page is shared. */
    bool intact = true;
    for (size_t i = 0; i < N(sizes); i++)
        intact &= backing(&x, va_of(p[i]))[0] == (uint8_t)(i * 16);
    KT_EXPECT(t, intact);
    KT_EXPECT_HEALTHY(t, x.f.k);
    for (size_t i = 0; i < N(sizes); i++)
        KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p[i]), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, areas_step_over_pages_the_kernel_mapped_itself_in_the_window)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 1 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    /* Raw mappings at window pages 1 and 6, as Boruix makes them. */
    uint64_t a = kmm_page_alloc(x.f.k, 0, 0), b = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT(t, a && b);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, x.base + PAGE, a, PAGE, KMM_PROT_READ | KMM_PROT_WRITE),
                 KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, x.base + 6 * PAGE, b, PAGE, KMM_PROT_READ), KMM_OK);
    /* Three pages and a guard fit exactly between them. */
    void *p = kmm_vmalloc(x.f.k, 3 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, va_of(p), x.base + 2 * PAGE);
    KT_EXPECT(t, unmapped(&x, va_of(p) + 3 * PAGE));
    void *q = kmm_vmalloc(x.f.k, 3 * PAGE, 0);
    KT_ASSERT(t, q != NULL);
    KT_EXPECT(t, va_of(q) >= x.base + 7 * PAGE);
    KT_EXPECT_EQ(t, vstats(&x).foreign_pages, 2);
    /* The raw mappings are as the kernel left them. */
    struct kmm_vm_translation tr;
    KT_EXPECT(t, kmm_vm_translate(x.ks, x.base + PAGE, &tr) == KMM_OK && tr.pa == a && !tr.owned);
    KT_EXPECT(t, kmm_vm_translate(x.ks, x.base + 6 * PAGE, &tr) == KMM_OK && tr.pa == b);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Once the kernel unmaps them and the window is idle (its parked areas
     * given back), they are free again. */
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, q), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 2);
    kmm_kva_purge(x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, x.base + PAGE, PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, x.base + 6 * PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).foreign_pages, 0);
    p = kmm_vmalloc(x.f.k, 3 * PAGE, 0);
    KT_EXPECT_EQ(t, va_of(p), x.base);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, a, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, b, 0), KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_window_mapped_by_the_kernel_everywhere_has_no_room)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 64 * PAGE, levels));
    /* Every other page mapped: no two unmapped pages in a row anywhere. */
    uint64_t pa = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    for (uint64_t i = 0; i < 64; i += 2)
        KT_ASSERT_EQ(t, kmm_vm_map(x.ks, x.base + i * PAGE, pa, PAGE, KMM_PROT_READ), KMM_OK);
    uint64_t failed = vstats(&x).failed_allocs, va = 0;
    KT_EXPECT(t, kmm_vmalloc(x.f.k, PAGE, 0) == NULL);
    KT_EXPECT_EQ(t, kmm_kva_alloc(x.f.k, PAGE, &va), KMM_ENOMEM);
    KT_EXPECT_EQ(t, vstats(&x).failed_allocs, failed + 2);
    KT_EXPECT_EQ(t, vstats(&x).metadata_pages, 0); /* the hints went with the failure */
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Half of it unmapped again: room for areas of one page and a guard. */
    for (uint64_t i = 32; i < 64; i += 2)
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, x.base + i * PAGE, PAGE), KMM_OK);
    void *p = kmm_vmalloc(x.f.k, PAGE, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT(t, va_of(p) >= x.base + 31 * PAGE); /* page 31 was never mapped */
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    for (uint64_t i = 0; i < 32; i += 2)
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, x.base + i * PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

#define FILL_WINDOW (1 * MIB) /* 256 pages: 128 one-page areas with their guards */
#define FILL_MAX    128

/* Allocates one-page areas until the window is full; returns how many. */
static size_t fill(struct fixture *x, void **p)
{
    size_t n = 0;
    while (n < FILL_MAX + 1 && (p[n] = kmm_vmalloc(x->f.k, PAGE, 0)) != NULL)
        n++;
    return n;
}

KTEST_LEVELS(vmalloc, a_full_window_fails_cleanly_and_refills_to_the_same_count)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, FILL_WINDOW, levels));
    struct kmm_page_stats before = pstats(&x);
    static void *p[FILL_MAX + 1];
    size_t n = fill(&x, p);
    KT_EXPECT_EQ(t, n, FILL_MAX);
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.failed_allocs, 1);
    KT_EXPECT_EQ(t, s.used_pages, FILL_WINDOW / PAGE);
    KT_EXPECT_EQ(t, s.largest_free_pages, 0);
    KT_EXPECT_EQ(t, s.vmalloc_pages, n);
    /* A full window still refuses cleanly: nothing allocated for the try. */
    struct kmm_page_stats full = pstats(&x);
    KT_EXPECT(t, kmm_vmalloc(x.f.k, PAGE, 0) == NULL);
    struct kmm_page_stats full2 = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&full, &full2));
    KT_EXPECT_HEALTHY(t, x.f.k);
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_vfree(x.f.k, p[i]), KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_EQ(t, fill(&x, p), n);
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_vfree(x.f.k, p[i]), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_vmalloc_that_runs_out_of_pages_leaves_nothing_behind)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 0, levels)); /* 256 MiB of window, 31 MiB of RAM */
    struct kmm_page_stats before = pstats(&x);
    struct kmm_vmalloc_stats vs = vstats(&x);
    KT_EXPECT(t, kmm_vmalloc(x.f.k, 64 * MIB, 0) == NULL);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    struct kmm_vmalloc_stats vs2 = vstats(&x);
    KT_EXPECT_EQ(t, vs2.areas, 0);
    KT_EXPECT_EQ(t, vs2.failed_allocs, vs.failed_allocs); /* the window had room */
    struct kmm_vm_stats ks;
    kmm_vm_stats(x.ks, &ks);
    KT_EXPECT_EQ(t, ks.mapped_pages, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* And the memory it gave back serves the next request. */
    void *p = kmm_vmalloc(x.f.k, 8 * MIB, KMM_GFP_ZERO);
    KT_EXPECT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* --- vmap and raw areas -------------------------------------------------------------- */

KTEST_LEVELS(vmalloc, vmap_maps_the_callers_pages_and_vunmap_leaves_them_allocated)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    uint64_t pg[3];
    for (int i = 0; i < 3; i++) {
        pg[i] = kmm_page_alloc(x.f.k, 0, 0);
        KT_ASSERT(t, pg[i] != 0);
        kt_fill(kt_machine_phys(x.f.m, pg[i]), (uint8_t)(0x10 + i), PAGE);
    }
    const uint64_t order[3] = {pg[2], pg[0], pg[1]};
    uint8_t *v = kmm_vmap(x.f.k, order, 3, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_ASSERT(t, v != NULL);
    for (int i = 0; i < 3; i++) {
        struct kmm_vm_translation tr;
        KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, va_of(v) + (uint64_t)i * PAGE, &tr), KMM_OK);
        KT_EXPECT_EQ(t, tr.pa, order[i]);
        KT_EXPECT(t, !tr.owned);
        KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ | KMM_PROT_WRITE);
        if (x.live)
            KT_EXPECT_EQ(t, v[(uint64_t)i * PAGE + 7],
                         *(uint8_t *)kt_machine_phys(x.f.m, order[i]));
    }
    KT_EXPECT(t, unmapped(&x, va_of(v) + 3 * PAGE));
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.vmap_areas, 1);
    KT_EXPECT_EQ(t, s.vmap_pages, 3);
    KT_EXPECT_EQ(t, s.vmalloc_pages, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vunmap(x.f.k, v), KMM_OK);
    KT_EXPECT(t, unmapped(&x, va_of(v)));
    /* Still the caller's: contents intact, and each frees exactly once. */
    for (int i = 0; i < 3; i++) {
        KT_EXPECT_EQ(t, *(uint8_t *)kt_machine_phys(x.f.m, pg[i]), 0x10 + i);
        KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pg[i], 0), KMM_OK);
    }
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* More pages than a page table holds, in an order the frames do not have:
 * the map writes each table's entries in a row (vmm_map_pages_area) and
 * the unmap clears them in a row (drop_table_run), across the tables'
 * boundaries and in a table an earlier area shares. */
#define VMAP_MANY 700u

KTEST_LEVELS(vmalloc,
             a_vmap_across_page_tables_maps_each_page_and_its_vunmap_takes_every_table_back)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    static uint64_t pg[VMAP_MANY];
    for (unsigned i = 0; i < VMAP_MANY; i++) {
        pg[i] = kmm_page_alloc(x.f.k, 0, 0);
        KT_ASSERT(t, pg[i] != 0);
    }
    for (unsigned i = 0; i + 1 < VMAP_MANY; i += 2) { /* pairs swapped: no run of frames */
        uint64_t tmp = pg[i];
        pg[i] = pg[i + 1];
        pg[i + 1] = tmp;
    }
    struct kmm_vm_stats before;
    kmm_vm_stats(x.ks, &before);
    void *small = kmm_vmap(x.f.k, pg, 3, KMM_PROT_READ); /* shares a table with the next */
    uint8_t *v = kmm_vmap(x.f.k, pg, VMAP_MANY, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_ASSERT(t, small != NULL && v != NULL);
    struct kmm_vm_stats during;
    kmm_vm_stats(x.ks, &during);
    KT_EXPECT_EQ(t, during.mapped_pages, before.mapped_pages + VMAP_MANY + 3);
    for (unsigned i = 0; i < VMAP_MANY; i++) {
        struct kmm_vm_translation tr;
        KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, va_of(v) + (uint64_t)i * PAGE, &tr), KMM_OK);
        KT_EXPECT_EQ(t, tr.pa, pg[i]);
        KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ | KMM_PROT_WRITE);
    }
    KT_EXPECT(t, unmapped(&x, va_of(v) + (uint64_t)VMAP_MANY * PAGE));
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vunmap(x.f.k, small), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vunmap(x.f.k, v), KMM_OK);
    for (unsigned i = 0; i < VMAP_MANY; i += VMAP_MANY / 7)
        KT_EXPECT(t, unmapped(&x, va_of(v) + (uint64_t)i * PAGE));
    /* The small area is parked with the table it shared (the large one is
     * too large to park); given back, that table goes too. */
    struct kmm_vm_stats after;
    kmm_vm_stats(x.ks, &after);
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    KT_EXPECT_EQ(t, after.tables[KMM_VM_PT], before.tables[KMM_VM_PT] + 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT(t, kmm_kva_purge(x.f.k) >= 1);
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    kmm_vm_stats(x.ks, &after);
    KT_EXPECT_EQ(t, after.mapped_pages, before.mapped_pages);
    for (unsigned l = 0; l < 6; l++)
        KT_EXPECT_EQ(t, after.tables[l], before.tables[l]);
    KT_EXPECT_HEALTHY(t, x.f.k);
    for (unsigned i = 0; i < VMAP_MANY; i++)
        KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pg[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* Whether the page at pa reads as zeros. */
static bool page_is_zero(struct fixture *x, uint64_t pa)
{
    const uint8_t *b = kt_machine_phys(x->f.m, pa);
    for (uint64_t i = 0; i < PAGE; i++)
        if (b[i])
            return false;
    return true;
}

/* The page tables a vunmap frees are known to hold zeros while they sit in
 * the CPU's cache (pmm_table_free_zero), so the next KMM_GFP_ZERO request
 * does not zero them again; a page taken from the cache without
 * KMM_GFP_ZERO and written loses that, and comes back zeroed. */
KTEST_LEVELS(vmalloc, a_freed_page_table_serves_a_zeroed_request_only_while_it_still_holds_zeros)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    for (int round = 0; round < 2; round++) {
        uint64_t pg = kmm_page_alloc(x.f.k, 0, 0);
        KT_ASSERT(t, pg != 0);
        void *v = kmm_vmap(x.f.k, &pg, 1, KMM_PROT_READ); /* takes a page table ... */
        KT_ASSERT(t, v != NULL);
        KT_ASSERT_EQ(t, kmm_vunmap(x.f.k, v), KMM_OK); /* ... and frees it, all zeros */
        KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pg, 0), KMM_OK);
        /* The first round takes the freed tables back unzeroed and writes
         * them; the second asks for zeros straight away. */
        uint64_t dirty[4] = {0, 0, 0, 0};
        for (int i = 0; round == 0 && i < 4; i++) {
            dirty[i] = kmm_page_alloc(x.f.k, 0, 0);
            KT_ASSERT(t, dirty[i] != 0);
            kt_fill(kt_machine_phys(x.f.m, dirty[i]), 0xa5, PAGE);
        }
        for (int i = 3; round == 0 && i >= 0; i--)
            KT_EXPECT_EQ(t, kmm_page_free(x.f.k, dirty[i], 0), KMM_OK);
        uint64_t z[4];
        for (int i = 0; i < 4; i++) {
            z[i] = kmm_page_alloc(x.f.k, 0, KMM_GFP_ZERO);
            KT_ASSERT(t, z[i] != 0);
            KT_EXPECT(t, page_is_zero(&x, z[i]));
        }
        for (int i = 3; i >= 0; i--)
            KT_EXPECT_EQ(t, kmm_page_free(x.f.k, z[i], 0), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_raw_area_is_unmapped_and_must_be_unmapped_again_before_it_is_freed)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    uint64_t va = 0;
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, 3 * PAGE - 5, &va), KMM_OK);
    KT_EXPECT(t, unmapped(&x, va) && unmapped(&x, va + 2 * PAGE) && unmapped(&x, va + 3 * PAGE));
    struct kmm_kva_area area;
    KT_ASSERT_EQ(t, kmm_kva_lookup(x.f.k, va + PAGE + 12, &area), KMM_OK);
    KT_EXPECT_EQ(t, area.va, va);
    KT_EXPECT_EQ(t, area.size, 3 * PAGE);
    KT_EXPECT_EQ(t, area.kind, KMM_KVA_RAW);
    uint64_t pa = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va + PAGE, pa, PAGE, KMM_PROT_READ | KMM_PROT_WRITE), KMM_OK);
    KT_EXPECT(t, pages_hold_their_own_bytes(&x, va + PAGE, PAGE, 9));
    KT_EXPECT_HEALTHY(t, x.f.k);
    uint64_t misuse = vstats(&x).misuse;
    KT_EXPECT_EQ(t, kmm_kva_free(x.f.k, va), KMM_EBUSY);
    KT_EXPECT_EQ(t, vstats(&x).misuse, misuse + 1);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(x.f.m), "still mapped"));
    KT_EXPECT_EQ(t, vstats(&x).raw_areas, 1);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, va + PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(x.f.k, va), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_lookup(x.f.k, va, &area), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, kva_lookup_names_the_area_and_its_guard_page)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    void *p = kmm_vmalloc(x.f.k, 2 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    struct kmm_kva_area a;
    KT_ASSERT_EQ(t, kmm_kva_lookup(x.f.k, va_of(p) + 2 * PAGE + 5, &a), KMM_OK);
    KT_EXPECT_EQ(t, a.va, va_of(p));
    KT_EXPECT_EQ(t, a.size, 2 * PAGE); /* so the address is in its guard page */
    KT_EXPECT_EQ(t, a.kind, KMM_KVA_VMALLOC);
    KT_EXPECT(t, a.caller != NULL);
    KT_EXPECT_EQ(t, kmm_kva_lookup(x.f.k, va_of(p) + 3 * PAGE, &a), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_kva_lookup(x.f.k, x.base - PAGE, &a), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_lookup(x.f.k, va_of(p), &a), KMM_ENOENT);
    teardown(&x);
}

/* --- bad input (SPEC §9) -------------------------------------------------------------- */

/* The checks of a refused call: the error, one more kva misuse, no change
 * to the areas or the page allocator (kt_expect_misuse: no page misuse,
 * same free lists, the log line, kmm_check clean). */
static void expect_refused_at(struct ktest *t, struct fixture *x, int got, int want,
                              const struct kmm_page_stats *before,
                              const struct kmm_vmalloc_stats *vbefore, const char *what,
                              const char *needle, int line)
{
    kt_expect_misuse_at(t, &x->f, got, want, -1, before, what, needle, __FILE__, line);
    struct kmm_vmalloc_stats v = vstats(x);
    if (v.misuse != vbefore->misuse + 1 || v.areas != vbefore->areas ||
        v.used_pages != vbefore->used_pages || v.vmalloc_pages != vbefore->vmalloc_pages)
        ktest_fail_at(t, __FILE__, line, "%s: misuse %llu -> %llu, areas %llu -> %llu", what,
                      (unsigned long long)vbefore->misuse, (unsigned long long)v.misuse,
                      (unsigned long long)vbefore->areas, (unsigned long long)v.areas);
}

/* Runs call (an int expression) and checks it was refused with want. */
#define REFUSED(t, x, call, want, needle)                                                          \
    do {                                                                                           \
        struct kmm_page_stats b_ = pstats(x);                                                      \
        struct kmm_vmalloc_stats vb_ = vstats(x);                                                  \
        int got_ = (call);                                                                         \
        expect_refused_at((t), (x), got_, (want), &b_, &vb_, #call, (needle), __LINE__);           \
    } while (0)

/* A pointer-returning call as an int: KMM_OK if it returned an area. */
#define PTR_ERR(p, err) ((p) ? KMM_OK : (err))

KTEST_LEVELS(vmalloc, every_bad_input_is_refused_counted_logged_and_changes_nothing)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 1 * MIB, levels));
    struct kmm *k = x.f.k;
    uint8_t *p = kmm_vmalloc(k, 2 * PAGE, 0);
    uint64_t pg = kmm_page_alloc(k, 0, 0);
    void *v = kmm_vmap(k, &pg, 1, KMM_PROT_READ);
    uint64_t raw = 0;
    KT_ASSERT(t, p && pg && v && kmm_kva_alloc(k, PAGE, &raw) == KMM_OK);
    const uint64_t unaligned = pg + 8, device = 32 * MIB, big[2] = {pg, pg};

    REFUSED(t, &x, PTR_ERR(kmm_vmalloc(k, 0, 0), KMM_EINVAL), KMM_EINVAL, "size 0");
    REFUSED(t, &x, PTR_ERR(kmm_vmalloc(k, 1 * MIB, 0), KMM_EINVAL), KMM_EINVAL, "larger");
    REFUSED(t, &x, PTR_ERR(kmm_vmalloc(k, (size_t)-1, 0), KMM_EINVAL), KMM_EINVAL, "larger");
    REFUSED(t, &x, PTR_ERR(kmm_vmalloc(k, PAGE, KMM_GFP_ATOMIC), KMM_EINVAL), KMM_EINVAL, "ATOMIC");
    REFUSED(t, &x, PTR_ERR(kmm_vmalloc(k, PAGE, 0x100), KMM_EINVAL), KMM_EINVAL, "unknown flags");
    REFUSED(t, &x, PTR_ERR(kmm_vmalloc(k, PAGE, KMM_GFP_DMA | KMM_GFP_DMA32), KMM_EINVAL),
            KMM_EINVAL, "zone flags");

    REFUSED(t, &x, kmm_vfree(k, p + PAGE), KMM_EINVAL, "inside an area");
    REFUSED(t, &x, kmm_vfree(k, p + 2 * PAGE), KMM_EINVAL, "guard page");
    REFUSED(t, &x, kmm_vfree(k, p + 1), KMM_EINVAL, "not page aligned");
    REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)(x.base + x.size)), KMM_ERANGE, "window");
    REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)(x.base + x.size - PAGE)), KMM_ENOENT,
            "no area starts here");
    REFUSED(t, &x, kmm_vfree(k, v), KMM_EINVAL, "kmm_vunmap");
    REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)raw), KMM_EINVAL, "kmm_kva_free");
    REFUSED(t, &x, kmm_vunmap(k, p), KMM_EINVAL, "kmm_vfree");
    REFUSED(t, &x, kmm_kva_free(k, va_of(p)), KMM_EINVAL, "kmm_vfree");

    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, NULL, 1, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL, "NULL");
    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, &pg, 0, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL, "count 0");
    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, big, (size_t)-1, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL,
            "more pages");
    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, &pg, 1, 0), KMM_EINVAL), KMM_EINVAL, "protection");
    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, &pg, 1, KMM_PROT_READ | KMM_PROT_USER), KMM_EINVAL),
            KMM_EINVAL, "protection");
    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, &unaligned, 1, KMM_PROT_READ), KMM_EINVAL), KMM_EINVAL,
            "aligned");
    REFUSED(t, &x, PTR_ERR(kmm_vmap(k, &device, 1, KMM_PROT_READ), KMM_ERANGE), KMM_ERANGE,
            "not RAM");

    uint64_t out = 0;
    REFUSED(t, &x, kmm_kva_alloc(k, PAGE, NULL), KMM_EINVAL, "NULL");
    REFUSED(t, &x, kmm_kva_alloc(k, 0, &out), KMM_EINVAL, "size 0");
    REFUSED(t, &x, kmm_kva_alloc(k, UINT64_MAX, &out), KMM_EINVAL, "larger");
    KT_EXPECT_EQ(t, out, 0);

    /* Double frees, once the areas are gone. */
    KT_ASSERT_EQ(t, kmm_vfree(k, p), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vunmap(k, v), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_free(k, raw), KMM_OK);
    REFUSED(t, &x, kmm_vfree(k, p), KMM_ENOENT, "freed already");
    REFUSED(t, &x, kmm_vunmap(k, v), KMM_ENOENT, "freed already");
    REFUSED(t, &x, kmm_kva_free(k, raw), KMM_ENOENT, "freed already");
    /* NULL is no area and no mistake. */
    KT_EXPECT_EQ(t, kmm_vfree(k, NULL), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vunmap(k, NULL), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pg, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* --- accounting, the check and the report --------------------------------------------- */

/* One slot of the random mix: an area and what it needs to be freed. */
struct mix_slot {
    void *p;
    uint64_t va, pg; /* raw: va; vmap: its one page */
    uint64_t span;   /* bytes of the area with its guard page */
    int kind;        /* 0 empty, 1 vmalloc, 2 vmap, 3 raw */
};

/* Whether the live slots' areas, guard pages included, are all disjoint. */
static bool mix_disjoint(const struct mix_slot *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = i + 1; j < n; j++)
            if (s[i].kind && s[j].kind && s[i].va < s[j].va + s[j].span &&
                s[j].va < s[i].va + s[i].span)
                return false;
    return true;
}

/* The test's model of the window's park list: freed vmalloc and vmap
 * areas, oldest first, at most KMM_KVA_PARKED. */
struct mix_park {
    uint64_t va[KMM_KVA_PARKED], pages[KMM_KVA_PARKED];
    unsigned n;
};

static void mix_park(struct mix_park *m, uint64_t va, uint64_t pages)
{
    if (m->n == KMM_KVA_PARKED) { /* the oldest goes */
        for (unsigned i = 1; i < m->n; i++) {
            m->va[i - 1] = m->va[i];
            m->pages[i - 1] = m->pages[i];
        }
        m->n--;
    }
    m->va[m->n] = va;
    m->pages[m->n++] = pages;
}

/* The range a new vmalloc or vmap area of pages must take (the newest
 * parked one of its size, out of the model now), or 0: any free gap. */
static uint64_t mix_unpark(struct mix_park *m, uint64_t pages)
{
    for (unsigned i = m->n; i-- > 0;) {
        if (m->pages[i] != pages)
            continue;
        uint64_t va = m->va[i];
        for (unsigned j = i + 1; j < m->n; j++) {
            m->va[j - 1] = m->va[j];
            m->pages[j - 1] = m->pages[j];
        }
        m->n--;
        return va;
    }
    return 0;
}

/*
 * vmalloc, vmap and raw areas of random sizes allocated and freed in 24
 * slots, choices from c (a seed or a fuzzer's bytes), for at most `steps`
 * steps: every area lands in the window, never overlaps another one or its
 * guard page, and its first page holds its own bytes; a raw area's pages
 * are mapped one call each (the window's answer without its lock) and
 * unmapped in one before it goes; after each step a plain map of some
 * area's guard page, or of a vmalloc or vmap area's page, is refused; at
 * the end every page, table and record is back. Some steps are a
 * kmm_kva_purge instead; a shadow park list (struct mix_park) says which
 * range each new vmalloc or vmap area must take, and kmm_check runs after
 * every step.
 */
static void run_vmalloc_random(struct ktest *t, unsigned levels, struct kt_chooser *c, int steps)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm_page_stats before = pstats(&x);
    struct kmm_vm_stats kbefore;
    kmm_vm_stats(x.ks, &kbefore);
    enum { SLOTS = 24 };
    struct mix_slot s[SLOTS] = {{0}};
    uint64_t frame = kmm_page_alloc(x.f.k, 0, 0); /* what raw areas map */
    KT_ASSERT(t, frame != 0);
    uint64_t frame_free = pstats(&x).free_pages;
    struct mix_park model = {{0}, {0}, 0};
    for (int step = 0; step < steps && !c->ended; step++) {
        KT_EXPECT_HEALTHY(t, x.f.k);
        KT_ASSERT_EQ(t, park(&x).areas, model.n);
        if (kt_choose(c, 10) == 9) { /* not 0: a fixed input of zeros parks and unparks */
            kmm_kva_purge(x.f.k);
            model.n = 0;
            continue;
        }
        unsigned i = (unsigned)kt_choose(c, SLOTS);
        if (s[i].kind == 1 || s[i].kind == 2)
            mix_park(&model, s[i].va, s[i].span / PAGE - 1);
        if (s[i].kind == 1)
            KT_ASSERT_EQ(t, kmm_vfree(x.f.k, s[i].p), KMM_OK);
        else if (s[i].kind == 2)
            KT_ASSERT(t, kmm_vunmap(x.f.k, s[i].p) == KMM_OK &&
                             kmm_page_free(x.f.k, s[i].pg, 0) == KMM_OK);
        else if (s[i].kind == 3)
            KT_ASSERT(t, kmm_vm_unmap(x.ks, s[i].va, s[i].span - PAGE) == KMM_OK &&
                             kmm_kva_free(x.f.k, s[i].va) == KMM_OK);
        if (s[i].kind) {
            s[i].kind = 0;
            continue;
        }
        unsigned kind = 1 + (unsigned)kt_choose(c, 3);
        uint64_t size = 1 + kt_choose(c, 12 * PAGE);
        uint64_t pages = (size + PAGE - 1) / PAGE;
        if (kind == 1) {
            s[i].p = kmm_vmalloc(x.f.k, size, 0);
            KT_ASSERT(t, s[i].p != NULL);
            s[i].va = va_of(s[i].p);
            KT_ASSERT(t, pages_hold_their_own_bytes(&x, s[i].va, PAGE, (uint8_t)step));
        } else if (kind == 2) {
            s[i].pg = kmm_page_alloc(x.f.k, 0, 0);
            KT_ASSERT(t, s[i].pg != 0);
            s[i].p = kmm_vmap(x.f.k, &s[i].pg, 1, KMM_PROT_READ);
            KT_ASSERT(t, s[i].p != NULL);
            s[i].va = va_of(s[i].p);
            pages = 1;
        } else {
            KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, size, &s[i].va), KMM_OK);
            for (uint64_t p = 0; p < pages; p++)
                KT_ASSERT_EQ(t, kmm_vm_map(x.ks, s[i].va + p * PAGE, frame, PAGE, KMM_PROT_READ),
                             KMM_OK);
        }
        if (kind != 3) {
            uint64_t want = mix_unpark(&model, pages);
            if (want)
                KT_ASSERT_EQ(t, s[i].va, want);
        }
        s[i].span = (pages + 1) * PAGE;
        s[i].kind = (int)kind;
        KT_ASSERT(t, s[i].va >= x.base && s[i].va + s[i].span <= x.base + x.size);
        KT_ASSERT(t, mix_disjoint(s, SLOTS));
        unsigned j = (unsigned)kt_choose(c, SLOTS);
        if (s[j].kind) { /* the guard page, or the first page of an area that is not raw */
            uint64_t kept =
                s[j].kind == 3 || kt_choose(c, 2) ? s[j].va + s[j].span - PAGE : s[j].va;
            KT_ASSERT_EQ(t, kmm_vm_map(x.ks, kept, frame, PAGE, KMM_PROT_READ), KMM_EBUSY);
        }
        if (model.n) { /* and a page of a parked range, or its guard page */
            unsigned pk = (unsigned)kt_choose(c, model.n);
            uint64_t at = model.va[pk] + kt_choose(c, model.pages[pk] + 1) * PAGE;
            KT_ASSERT_EQ(t, kmm_vm_map(x.ks, at, frame, PAGE, KMM_PROT_READ), KMM_EBUSY);
        }
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (s[i].kind == 1)
            KT_EXPECT_EQ(t, kmm_vfree(x.f.k, s[i].p), KMM_OK);
        if (s[i].kind == 2)
            KT_EXPECT(t, kmm_vunmap(x.f.k, s[i].p) == KMM_OK &&
                             kmm_page_free(x.f.k, s[i].pg, 0) == KMM_OK);
        if (s[i].kind == 3)
            KT_EXPECT(t, kmm_vm_unmap(x.ks, s[i].va, s[i].span - PAGE) == KMM_OK &&
                             kmm_kva_free(x.f.k, s[i].va) == KMM_OK);
    }
    KT_EXPECT_EQ(t, pstats(&x).free_pages, frame_free); /* every table back, the frame held */
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, frame, 0), KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    struct kmm_vm_stats kafter;
    kmm_vm_stats(x.ks, &kafter);
    KT_EXPECT_EQ(t, kafter.mapped_pages, kbefore.mapped_pages);
    KT_EXPECT_EQ(t, kafter.owned_pages, kbefore.owned_pages);
    KT_EXPECT_EQ(t, kafter.table_bytes, kbefore.table_bytes);
    struct kmm_vmalloc_stats v = vstats(&x);
    KT_EXPECT_EQ(t, v.areas + v.used_pages + v.vmalloc_pages + v.vmap_pages + v.metadata_pages, 0);
    KT_EXPECT_EQ(t, v.misuse, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, page_accounting_is_exact_after_a_random_mix_is_freed)
{
    struct kt_chooser c = {.seed = 0x5eed};
    run_vmalloc_random(t, levels, &c, 600);
}

/* The same driven by bytes: a fuzzer's input (tests/fuzz/fuzz_vmalloc.c;
 * its first choice picks the paging mode), or a fixed one. */
KTEST(vmalloc, a_random_mix_driven_by_bytes_stays_disjoint_and_exact)
{
    static uint8_t fixed[1024];
    struct kt_chooser c = kt_fuzz_chooser(fixed, sizeof(fixed), 0xb17e7);
    unsigned levels = kt_choose(&c, 2) ? 5 : 4;
    run_vmalloc_random(t, levels, &c, 600);
}

static uint64_t vm_misuse(struct fixture *x)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(x->ks, &s);
    return s.misuse;
}

/* A plain kmm_vm_map into pages the window keeps: refused with KMM_EBUSY,
 * counted, logged, and nothing mapped. */
static void expect_map_refused_at(struct ktest *t, struct fixture *x, uint64_t va, uint64_t pa,
                                  uint64_t size, unsigned flags, int line)
{
    uint64_t misuse = vm_misuse(x);
    struct kmm_vm_run before, after;
    KT_ASSERT_EQ(t, kmm_vm_query(x->ks, va, va + size, &before), KMM_OK);
    int err = kmm_vm_map(x->ks, va, pa, size, flags);
    KT_ASSERT_EQ(t, kmm_vm_query(x->ks, va, va + size, &after), KMM_OK);
    if (err != KMM_EBUSY || vm_misuse(x) != misuse + 1 ||
        !ktest_contains(kt_machine_last_error(x->f.m), "kmm_vm_map") ||
        before.mapped != after.mapped || before.size != after.size || before.pa != after.pa)
        ktest_fail_at(t, __FILE__, line,
                      "map at 0x%llx, 0x%llx bytes: %s (want EBUSY), misuse +%llu, "
                      "last error \"%s\"",
                      (unsigned long long)va, (unsigned long long)size, kmm_strerror(err),
                      (unsigned long long)(vm_misuse(x) - misuse), kt_machine_last_error(x->f.m));
    KT_EXPECT_HEALTHY(t, x->f.k);
}
#define EXPECT_MAP_REFUSED(t, x, va, pa, size, flags)                                              \
    expect_map_refused_at((t), (x), (va), (pa), (size), (flags), __LINE__)

KTEST_LEVELS(vmalloc, a_plain_map_over_an_areas_pages_or_guard_page_is_refused)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    void *p = kmm_vmalloc(x.f.k, 2 * PAGE, 0);
    uint64_t pg = kmm_page_alloc(x.f.k, 0, 0), pa = kmm_page_alloc(x.f.k, 0, 0), raw = 0;
    void *v = kmm_vmap(x.f.k, &pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, p && v && pa);
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.f.k, 2 * PAGE, &raw), KMM_OK);
    unsigned r = KMM_PROT_READ;
    /* Guard pages are the window's to keep, whatever kind of area. */
    EXPECT_MAP_REFUSED(t, &x, va_of(p) + 2 * PAGE, pa, PAGE, r);
    EXPECT_MAP_REFUSED(t, &x, va_of(v) + PAGE, pa, PAGE, r);
    EXPECT_MAP_REFUSED(t, &x, raw + 2 * PAGE, pa, PAGE, r);
    EXPECT_MAP_REFUSED(t, &x, raw + 2 * PAGE, pa, PAGE, r | KMM_MAP_REPLACE);
    EXPECT_MAP_REFUSED(t, &x, raw + PAGE, pa, 2 * PAGE, r); /* a raw page and its guard */
    /* So are the pages vmalloc and vmap mapped, even with REPLACE. */
    EXPECT_MAP_REFUSED(t, &x, va_of(p), pa, PAGE, r | KMM_MAP_REPLACE);
    EXPECT_MAP_REFUSED(t, &x, va_of(v), pa, PAGE, r | KMM_MAP_REPLACE);
    /* A raw area's own pages are its caller's to map. */
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw, pa, PAGE, r), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw + PAGE, pa, PAGE, r), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, raw, 2 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(x.f.k, raw), KMM_OK);
    /* Once the area is gone, its range is anybody's again. */
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw + 2 * PAGE, pa, PAGE, r), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, raw + 2 * PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vunmap(x.f.k, v), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pg, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

/* kmm_vm_map answers a page of a raw area from the last look while no area
 * changed (kva_map_conflict's hint): every change of the window must end
 * that answer. Each step maps into a raw area first, so the answer is
 * there, then changes the window, then maps what the window now keeps. */
KTEST_LEVELS(vmalloc, a_raw_areas_answer_ends_when_the_window_changes)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    unsigned r = KMM_PROT_READ;
    uint64_t pa = kmm_page_alloc(k, 0, 0), raw = 0, other = 0;
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_kva_alloc(k, 4 * PAGE, &raw), KMM_OK);
    for (uint64_t i = 0; i < 4; i++) /* every page of it, one call each */
        KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw + i * PAGE, pa, PAGE, r), KMM_OK);
    /* Its guard page lies beyond the answer. */
    EXPECT_MAP_REFUSED(t, &x, raw + 4 * PAGE, pa, PAGE, r);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, raw, 4 * PAGE), KMM_OK);

    /* The area freed and its start a two-page vmalloc area's now: the
     * area's guard page, unmapped and inside the old answer, is refused. */
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw, pa, PAGE, r), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, raw, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(k, raw), KMM_OK);
    void *p = kmm_vmalloc(k, 2 * PAGE, 0);
    KT_ASSERT(t, p != 0);
    KT_EXPECT_EQ(t, va_of(p), raw); /* first fit: the same range */
    EXPECT_MAP_REFUSED(t, &x, va_of(p) + 2 * PAGE, pa, PAGE, r);
    KT_EXPECT_EQ(t, kmm_vfree(k, p), KMM_OK);

    /* A raw area again, answered, then one more area: still the caller's
     * (an answer found again under the lock), and the new one's guard page
     * is kept. */
    KT_ASSERT_EQ(t, kmm_kva_alloc(k, 2 * PAGE, &raw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw, pa, PAGE, r), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_alloc(k, PAGE, &other), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw + PAGE, pa, PAGE, r), KMM_OK);
    EXPECT_MAP_REFUSED(t, &x, other + PAGE, pa, PAGE, r);
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, other, pa, PAGE, r), KMM_OK);
    /* A range across both areas meets a guard page. */
    EXPECT_MAP_REFUSED(t, &x, raw + PAGE, pa, 2 * PAGE, r | KMM_MAP_REPLACE);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, raw, 2 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, other, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(k, other), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(k, raw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* A call (an unmap or protect) on pages the window keeps: refused with
 * KMM_EBUSY, counted, logged with the call's name, and the range mapped
 * exactly as before. */
static void expect_kept_at(struct ktest *t, struct fixture *x, int got, uint64_t va, uint64_t size,
                           const struct kmm_vm_run *before, uint64_t misuse, const char *fn,
                           int line)
{
    struct kmm_vm_run after;
    KT_ASSERT_EQ(t, kmm_vm_query(x->ks, va, va + size, &after), KMM_OK);
    if (got != KMM_EBUSY || vm_misuse(x) != misuse + 1 ||
        !ktest_contains(kt_machine_last_error(x->f.m), fn) || before->mapped != after.mapped ||
        before->size != after.size || before->pa != after.pa || before->prot != after.prot)
        ktest_fail_at(t, __FILE__, line,
                      "%s at 0x%llx, 0x%llx bytes: %s (want EBUSY), misuse +%llu, "
                      "last error \"%s\"",
                      fn, (unsigned long long)va, (unsigned long long)size, kmm_strerror(got),
                      (unsigned long long)(vm_misuse(x) - misuse), kt_machine_last_error(x->f.m));
    kt_expect_healthy_at(t, x->f.k, __FILE__, line);
}
#define EXPECT_KEPT(t, x, call, va, size, fn)                                                      \
    do {                                                                                           \
        struct kmm_vm_run b_;                                                                      \
        KT_ASSERT_EQ((t), kmm_vm_query((x)->ks, (va), (va) + (size), &b_), KMM_OK);                \
        uint64_t m_ = vm_misuse(x);                                                                \
        int got_ = (call);                                                                         \
        expect_kept_at((t), (x), got_, (va), (size), &b_, m_, (fn), __LINE__);                     \
    } while (0)

KTEST_LEVELS(vmalloc, a_plain_unmap_or_protect_of_the_windows_pages_is_refused)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    void *p = kmm_vmalloc(k, 2 * PAGE, 0);
    uint64_t pg = kmm_page_alloc(k, 0, 0), pa = kmm_page_alloc(k, 0, 0), raw = 0;
    void *v = kmm_vmap(k, &pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, p && v && pa);
    KT_ASSERT_EQ(t, kmm_kva_alloc(k, 2 * PAGE, &raw), KMM_OK);
    uint64_t vp = va_of(p), vv = va_of(v);
    unsigned r = KMM_PROT_READ;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, x.ks);
    /* A vmalloc or vmap area's pages are its allocator's to unmap, ... */
    EXPECT_KEPT(t, &x, kmm_vm_unmap(x.ks, vp, PAGE), vp, PAGE, "kmm_vm_unmap");
    EXPECT_KEPT(t, &x, kmm_vm_unmap(x.ks, vp, 2 * PAGE), vp, 2 * PAGE, "kmm_vm_unmap");
    EXPECT_KEPT(t, &x, kmm_vm_unmap(x.ks, vv, PAGE), vv, PAGE, "kmm_vm_unmap");
    EXPECT_KEPT(t, &x, kmm_vm_unmap_g(x.ks, vp + PAGE, PAGE, &g), vp + PAGE, PAGE, "kmm_vm_unmap");
    /* ... and to protect, ... */
    EXPECT_KEPT(t, &x, kmm_vm_protect(x.ks, vp, 2 * PAGE, r), vp, 2 * PAGE, "kmm_vm_protect");
    EXPECT_KEPT(t, &x, kmm_vm_protect(x.ks, vv, PAGE, r | KMM_PROT_WRITE), vv, PAGE,
                "kmm_vm_protect");
    EXPECT_KEPT(t, &x, kmm_vm_protect_g(x.ks, vp, PAGE, r, &g), vp, PAGE, "kmm_vm_protect");
    /* ... and guard pages stay out of every call but the window's own. */
    EXPECT_KEPT(t, &x, kmm_vm_unmap(x.ks, vp + 2 * PAGE, PAGE), vp + 2 * PAGE, PAGE,
                "kmm_vm_unmap");
    EXPECT_KEPT(t, &x, kmm_vm_unmap(x.ks, raw + PAGE, 2 * PAGE), raw + PAGE, 2 * PAGE,
                "kmm_vm_unmap");
    EXPECT_KEPT(t, &x, kmm_vm_protect(x.ks, raw + 2 * PAGE, PAGE, r), raw + 2 * PAGE, PAGE,
                "kmm_vm_protect");
    kmm_tlb_finish(&g);
    /* A ready raw area's own pages are its caller's to map, protect and unmap. */
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, raw, pa, PAGE, r | KMM_PROT_WRITE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_protect(x.ks, raw, PAGE, r), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, raw, PAGE), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    /* The areas go as they came: no error or warning line, no misuse. */
    uint64_t misuse = vm_misuse(&x);
    unsigned long errs = kt_machine_log_count(x.f.m, KMM_LOG_ERR);
    unsigned long warns = kt_machine_log_count(x.f.m, KMM_LOG_WARN);
    KT_EXPECT_EQ(t, kmm_vfree(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vunmap(k, v), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(k, raw), KMM_OK);
    KT_EXPECT_EQ(t, vm_misuse(&x), misuse);
    KT_EXPECT_EQ(t, vstats(&x).misuse, 0);
    KT_EXPECT_EQ(t, kt_machine_log_count(x.f.m, KMM_LOG_ERR), errs);
    KT_EXPECT_EQ(t, kt_machine_log_count(x.f.m, KMM_LOG_WARN), warns);
    KT_EXPECT_EQ(t, kmm_page_free(k, pg, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* The 4 KiB entry that maps va in the kernel space, whose page table must
 * exist: the tables read through the machine's direct map, as a CPU walks
 * them (the x86_64 format, independent of the library's code). */
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

KTEST_LEVELS(vmalloc, kmm_check_reports_a_guard_page_someone_mapped)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    void *p = kmm_vmalloc(x.f.k, 2 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    uint64_t pa = kmm_page_alloc(x.f.k, 0, 0);
    /* kmm_vm_map refuses a guard page, so this is a kernel writing its
     * tables behind the library's back: a page mapped in the free part of
     * the window moves into the guard page's entry of the same page table
     * (every count stays right). */
    uint64_t guard = va_of(p) + 2 * PAGE, spare = va_of(p) + 8 * PAGE;
    KT_ASSERT_EQ(t, guard >> 21, spare >> 21);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, spare, pa, PAGE, KMM_PROT_READ), KMM_OK);
    uint64_t *g = pte_of(&x, guard, levels), *s = pte_of(&x, spare, levels);
    KT_ASSERT(t, *g == 0 && *s != 0);
    *g = *s;
    *s = 0;
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(x.f.k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "guard page"));
    *s = *g;
    *g = 0;
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, spare, PAGE), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* So is a vmalloc page someone unmapped behind the allocator's back
     * (kmm_vm_unmap refuses it): its entry moves out to the spare page. */
    uint64_t *v = pte_of(&x, va_of(p) + PAGE, levels);
    KT_ASSERT(t, *v != 0 && *s == 0);
    *s = *v;
    *v = 0;
    KT_EXPECT_EQ(t, kmm_check(x.f.k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "not mapped"));
    /* vfree copes: it unmaps what is left, warns, and releases the area;
     * the moved page, outside every area now, is anybody's to unmap (and
     * its unmap frees it: it is still owned). */
    unsigned long warns = kt_machine_log_count(x.f.m, KMM_LOG_WARN);
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kt_machine_log_count(x.f.m, KMM_LOG_WARN), warns + 1);
    KT_EXPECT_EQ(t, vstats(&x).areas, 0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, spare, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, the_report_lists_the_window_and_its_areas)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    void *p = kmm_vmalloc(x.f.k, 3 * PAGE, 0);
    uint64_t pg = kmm_page_alloc(x.f.k, 0, 0);
    void *v = kmm_vmap(x.f.k, &pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, p && v);
    static struct kt_text tx;
    tx.len = 0;
    kmm_report(x.f.k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT(t, ktest_contains(tx.buf, "Kernel virtual areas: window"));
    KT_EXPECT(t, ktest_contains(tx.buf, "areas 2 (vmalloc 1, vmap 1, raw 0)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "vmalloc pages 3"));
    KT_EXPECT(t, ktest_contains(tx.buf, "vmalloc pages=3"));
    KT_EXPECT(t, ktest_contains(tx.buf, "vmap    pages=1"));
    KT_EXPECT(t, !ktest_contains(tx.buf, "parked"));
    KT_EXPECT_EQ(t, kmm_vfree(x.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vunmap(x.f.k, v), KMM_OK);
    tx.len = 0;
    kmm_report(x.f.k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT(t, ktest_contains(tx.buf, "areas 0 (vmalloc 0, vmap 0, raw 0)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "parked (freed, kept for reuse) 2 areas, 4 pages"));
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pg, 0), KMM_OK);
    teardown(&x);
}

/* --- parked areas --------------------------------------------------------------------------- */

static uint64_t page_tables(struct fixture *x)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(x->ks, &s);
    return s.tables[KMM_VM_PT];
}

/* Free pages now, without giving the parked areas back (pstats would). */
static uint64_t free_now(struct fixture *x)
{
    struct kmm_page_stats s;
    kmm_page_drain_cpu(x->f.k);
    kmm_page_stats(x->f.k, &s);
    return s.free_pages;
}

KTEST_LEVELS(vmalloc, a_freed_area_is_parked_with_its_table_and_the_next_of_its_size_takes_it)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    struct kmm_page_stats before = pstats(&x);
    uint64_t tables0 = page_tables(&x), pg[3];
    for (unsigned i = 0; i < 3; i++)
        KT_ASSERT(t, (pg[i] = kmm_page_alloc(k, 0, 0)) != 0);
    void *v = kmm_vmap(k, pg, 3, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_ASSERT(t, v != NULL);
    uint64_t tables = page_tables(&x);
    KT_ASSERT_EQ(t, kmm_vunmap(k, v), KMM_OK);
    /* Unmapped at once; its range and its page table stay. */
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT(t, unmapped(&x, va_of(v) + i * PAGE));
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT_EQ(t, s.areas + s.vmap_areas + s.used_pages, 0);
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    KT_EXPECT_EQ(t, park(&x).pages, 3);
    KT_EXPECT_EQ(t, page_tables(&x), tables);
    struct kmm_kva_area a;
    KT_EXPECT_EQ(t, kmm_kva_lookup(k, va_of(v), &a), KMM_ENOENT);
    KT_EXPECT_HEALTHY(t, k);
    /* It is no area to free again, and no range for the caller to map. */
    KT_EXPECT_EQ(t, kmm_vunmap(k, v), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_vfree(k, v), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(k, v, 3), KMM_ENOENT);
    KT_EXPECT_EQ(t, vstats(&x).misuse, s.misuse + 3);
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, va_of(v) + PAGE, pg[0], PAGE, KMM_PROT_READ), KMM_EBUSY);
    KT_EXPECT(t, unmapped(&x, va_of(v) + PAGE));
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    KT_EXPECT_HEALTHY(t, k);
    /* A vmap of another size goes elsewhere; one of its size takes it, with
     * its table, and so does a vmalloc. */
    void *w = kmm_vmap(k, pg, 2, KMM_PROT_READ);
    KT_ASSERT(t, w != NULL);
    KT_EXPECT(t, va_of(w) >= va_of(v) + 4 * PAGE);
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    tables = page_tables(&x);
    void *u = kmm_vmap(k, pg, 3, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_EXPECT_EQ(t, va_of(u), va_of(v));
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    KT_EXPECT_EQ(t, vstats(&x).vmap_areas, 2);
    KT_EXPECT_EQ(t, page_tables(&x), tables);
    for (unsigned i = 0; i < 3; i++) {
        struct kmm_vm_translation tr;
        KT_EXPECT(t, kmm_vm_translate(x.ks, va_of(u) + i * PAGE, &tr) == KMM_OK && tr.pa == pg[i] &&
                         !tr.owned);
    }
    KT_EXPECT_HEALTHY(t, k);
    KT_ASSERT_EQ(t, kmm_vunmap(k, u), KMM_OK);
    void *m = kmm_vmalloc(k, 3 * PAGE, 0);
    KT_EXPECT_EQ(t, va_of(m), va_of(v));
    KT_EXPECT_EQ(t, vstats(&x).vmalloc_areas, 1);
    KT_EXPECT(t, pages_hold_their_own_bytes(&x, va_of(m), 3 * PAGE, 0x31));
    KT_EXPECT_HEALTHY(t, k);
    KT_ASSERT_EQ(t, kmm_vfree(k, m), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vunmap(k, w), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 2);
    KT_EXPECT_HEALTHY(t, k);
    /* Given back: the ranges, every table, and the records. */
    KT_EXPECT(t, kmm_kva_purge(k) >= 2);
    s = vstats(&x);
    KT_EXPECT_EQ(t, park(&x).areas + park(&x).pages + s.metadata_pages, 0);
    KT_EXPECT_EQ(t, page_tables(&x), tables0);
    KT_EXPECT_EQ(t, kmm_kva_purge(k), 0);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT_EQ(t, kmm_page_free(k, pg[i], 0), KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, at_most_sixteen_areas_are_parked_and_the_oldest_goes_first)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    struct kmm_page_stats before = pstats(&x);
    void *p[KMM_KVA_PARKED + 1];
    for (unsigned i = 0; i < N(p); i++)
        KT_ASSERT(t, (p[i] = kmm_vmalloc(k, (i + 1) * PAGE, 0)) != NULL);
    for (unsigned i = 0; i < N(p); i++)
        KT_ASSERT_EQ(t, kmm_vfree(k, p[i]), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).areas, 0);
    KT_EXPECT_EQ(t, park(&x).areas, KMM_KVA_PARKED);
    KT_EXPECT_EQ(t, park(&x).pages, (N(p) * (N(p) + 1)) / 2 - 1); /* all but the 1-page one */
    KT_EXPECT_HEALTHY(t, k);
    /* Each size is taken by its own; the oldest one's range is a free gap
     * again, which a 1-page area finds first. */
    void *q = kmm_vmalloc(k, N(p) * PAGE, 0), *r = kmm_vmalloc(k, 2 * PAGE, 0);
    void *o = kmm_vmalloc(k, PAGE, 0);
    KT_EXPECT(t, va_of(q) == va_of(p[N(p) - 1]) && va_of(r) == va_of(p[1]));
    KT_EXPECT_EQ(t, va_of(o), va_of(p[0]));
    KT_EXPECT_EQ(t, park(&x).areas, KMM_KVA_PARKED - 2);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT(t,
              kmm_vfree(k, q) == KMM_OK && kmm_vfree(k, r) == KMM_OK && kmm_vfree(k, o) == KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, only_areas_up_to_the_park_size_unmapped_cleanly_are_parked)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm *k = x.f.k;
    uint64_t tables0 = page_tables(&x);
    void *big = kmm_vmalloc(k, (KMM_KVA_PARK_PAGES + 1) * PAGE, 0);
    void *most = kmm_vmalloc(k, KMM_KVA_PARK_PAGES * PAGE, 0);
    KT_ASSERT(t, big && most);
    KT_ASSERT_EQ(t, kmm_vfree(k, big), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    KT_ASSERT_EQ(t, kmm_vfree(k, most), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).pages, KMM_KVA_PARK_PAGES);
    KT_EXPECT_HEALTHY(t, k);
    kmm_kva_purge(k);
    KT_EXPECT_EQ(t, page_tables(&x), tables0);
    /* An area whose pages someone unmapped behind the allocator's back is
     * unmapped run by run with a warning, and released, not parked. */
    void *p = kmm_vmalloc(k, 2 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    uint64_t spare = va_of(p) + 8 * PAGE; /* in the same page table */
    uint64_t *v = pte_of(&x, va_of(p) + PAGE, levels), *sp = pte_of(&x, spare, levels);
    KT_ASSERT(t, *v != 0 && *sp == 0);
    *sp = *v; /* the area's second page moves out to the spare page */
    *v = 0;
    unsigned long warns = kt_machine_log_count(x.f.m, KMM_LOG_WARN);
    KT_EXPECT_EQ(t, kmm_vfree(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kt_machine_log_count(x.f.m, KMM_LOG_WARN), warns + 1);
    KT_EXPECT_EQ(t, park(&x).areas + vstats(&x).areas, 0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, spare, PAGE), KMM_OK); /* owned: frees the area's page */
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_window_without_room_gives_its_parked_areas_back_first)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 1 * MIB, levels)); /* 256 pages */
    struct kmm *k = x.f.k;
    struct kmm_page_stats before = pstats(&x);
    void *p = kmm_vmalloc(k, 100 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    KT_ASSERT_EQ(t, kmm_vfree(k, p), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    uint64_t failed = vstats(&x).failed_allocs;
    void *q = kmm_vmalloc(k, 200 * PAGE, 0); /* only fits where p was */
    KT_ASSERT(t, q != NULL);
    KT_EXPECT_EQ(t, va_of(q), x.base);
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_EXPECT(t, park(&x).areas == 0 && s.failed_allocs == failed);
    KT_EXPECT_HEALTHY(t, k);
    /* With no room even then, it fails as before, counted. */
    KT_EXPECT(t, kmm_vmalloc(k, 100 * PAGE, 0) == NULL);
    KT_EXPECT_EQ(t, vstats(&x).failed_allocs, failed + 1);
    KT_ASSERT_EQ(t, kmm_vfree(k, q), KMM_OK);
    struct kmm_page_stats after = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, parked_areas_go_when_memory_runs_out_and_a_failed_reuse_parks_again)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    static uint64_t held[32 * MIB / PAGE];
    void *p = kmm_vmalloc(k, 3 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    KT_ASSERT_EQ(t, kmm_vfree(k, p), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    /* Taking every page runs the "kva-parked" shrinker first. */
    size_t n = 0;
    while (n < N(held) && (held[n] = kmm_page_alloc(k, 0, 0)) != 0)
        n++;
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    for (unsigned i = 0; i < 16 && n > 0; i++) /* room for an area of 3 pages */
        KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);
    p = kmm_vmalloc(k, 3 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    KT_ASSERT_EQ(t, kmm_vfree(k, p), KMM_OK);
    KT_ASSERT_EQ(t, park(&x).areas, 1);
    /* One page left: taking the parked area again, the vmalloc cannot back
     * it, and parks it again, nothing else changed. */
    for (uint64_t left = free_now(&x); left > 1; left--)
        KT_ASSERT(t, n < N(held) && (held[n++] = kmm_page_alloc(k, 0, 0)) != 0);
    KT_EXPECT(t, kmm_vmalloc(k, 3 * PAGE, 0) == NULL);
    KT_EXPECT_EQ(t, park(&x).areas, 1);
    KT_EXPECT_EQ(t, vstats(&x).areas, 0);
    KT_EXPECT_EQ(t, free_now(&x), 1);
    KT_EXPECT_HEALTHY(t, k);
    while (n > 0)
        KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);
    void *q = kmm_vmalloc(k, 3 * PAGE, 0);
    KT_EXPECT_EQ(t, va_of(q), va_of(p));
    KT_EXPECT_EQ(t, kmm_vfree(k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_map_ram_area_is_parked_and_taken_again_by_the_next_of_its_count)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm *k = x.f.k;
    enum { COUNT = KMM_MAP_RAM_MAX + 1 }; /* beyond a block: an area */
    static uint64_t pg[COUNT];
    uint64_t one = kmm_page_alloc(k, 0, 0);
    KT_ASSERT(t, one != 0);
    for (unsigned i = 0; i < COUNT; i++)
        pg[i] = one; /* repeats allowed */
    void *v = kmm_vm_map_ram(k, pg, COUNT, KMM_PROT_READ);
    KT_ASSERT(t, v != NULL);
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(k, v, COUNT), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).pages, COUNT);
    void *w = kmm_vm_map_ram(k, pg, COUNT, KMM_PROT_READ);
    KT_EXPECT_EQ(t, va_of(w), va_of(v));
    KT_EXPECT_HEALTHY(t, k);
    /* A wrong count is refused, and the area stays live. */
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(k, w, COUNT - 1), KMM_EINVAL);
    KT_EXPECT_EQ(t, vstats(&x).vmap_areas, 1);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(k, w, COUNT), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, one, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* A kernel writing its tables behind the library's back puts a page into
 * a parked range at page `at` of it (its guard page: 2), moved from the
 * free part of the window: kmm_check reports it, and the vmap that takes
 * the range finds it in its walk, warns, releases the range and reserves
 * again, which looks the range up and steps over the page. Nothing is
 * counted as a misuse: the vmap's caller made no mistake. */
static void parked_range_someone_mapped(struct ktest *t, unsigned levels, unsigned at)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    uint64_t pg[2] = {kmm_page_alloc(k, 0, 0), kmm_page_alloc(k, 0, 0)};
    KT_ASSERT(t, pg[0] && pg[1]);
    void *v = kmm_vmap(k, pg, 2, KMM_PROT_READ);
    KT_ASSERT(t, v != NULL);
    KT_ASSERT_EQ(t, kmm_vunmap(k, v), KMM_OK);
    uint64_t spare = va_of(v) + 8 * PAGE, stray = va_of(v) + at * PAGE;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, spare, pg[1], PAGE, KMM_PROT_READ), KMM_OK);
    uint64_t *e = pte_of(&x, stray, levels), *s = pte_of(&x, spare, levels);
    KT_ASSERT(t, *e == 0 && *s != 0);
    *e = *s;
    *s = 0;
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "parked area"));
    unsigned long warns = kt_machine_log_count(x.f.m, KMM_LOG_WARN);
    uint64_t misuse = vstats(&x).misuse;
    struct kmm_vm_stats vm0;
    kmm_vm_stats(x.ks, &vm0);
    void *w = kmm_vmap(k, pg, 2, KMM_PROT_READ);
    KT_ASSERT(t, w != NULL);
    KT_EXPECT(t, va_of(w) > stray);
    KT_EXPECT_EQ(t, kt_machine_log_count(x.f.m, KMM_LOG_WARN), warns + 1);
    struct kmm_vm_stats vm1;
    kmm_vm_stats(x.ks, &vm1);
    KT_EXPECT(t, vstats(&x).misuse == misuse && vm1.misuse == vm0.misuse);
    struct kmm_vmalloc_stats st = vstats(&x);
    KT_EXPECT(t, park(&x).areas == 0 && st.vmap_areas == 1 && st.foreign_pages == 1);
    struct kmm_vm_translation tr;
    KT_EXPECT(t, kmm_vm_translate(x.ks, stray, &tr) == KMM_OK && tr.pa == pg[1]);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_vunmap(k, w), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, stray, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pg[0], 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pg[1], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

KTEST_LEVELS(vmalloc, a_page_mapped_behind_its_back_in_a_parked_range_is_stepped_over)
{
    parked_range_someone_mapped(t, levels, 1);
}

KTEST_LEVELS(vmalloc, a_parked_ranges_guard_page_mapped_behind_its_back_is_stepped_over)
{
    parked_range_someone_mapped(t, levels, 2);
}

KTEST_LEVELS(vmalloc, a_full_record_array_with_no_memory_finds_room_the_park_shrinker_made)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    enum { RECS = PAGE / 24, PARKED = 16 }; /* one page of 24-byte records */
    static uint64_t raw[RECS], held[32 * MIB / PAGE];
    void *p[PARKED];
    for (unsigned i = 0; i < RECS - PARKED; i++)
        KT_ASSERT_EQ(t, kmm_kva_alloc(k, PAGE, &raw[i]), KMM_OK);
    /* The first raw area holds the page table the parked ones will use, so
     * giving them back frees no page that a larger array could take. */
    KT_ASSERT_EQ(t, kmm_kva_populate(k, raw[0]), KMM_OK);
    for (unsigned i = 0; i < PARKED; i++)
        KT_ASSERT(t, (p[i] = kmm_vmalloc(k, PAGE, 0)) != NULL);
    KT_ASSERT_EQ(t, va_of(p[PARKED - 1]) >> 21, raw[0] >> 21);
    for (unsigned i = 0; i < PARKED; i++)
        KT_ASSERT_EQ(t, kmm_vfree(k, p[i]), KMM_OK);
    struct kmm_vmalloc_stats s = vstats(&x);
    KT_ASSERT(t, park(&x).areas == PARKED && s.metadata_pages == 1);
    /* Every free page taken without running the shrinkers. */
    size_t n = 0;
    for (uint64_t left = free_now(&x); left > 0; left--)
        KT_ASSERT(t, n < N(held) && (held[n++] = kmm_page_alloc(k, 0, 0)) != 0);
    /* The array is full and cannot grow; the allocation's reclaim gives
     * the parked areas back, which makes room in the array itself. */
    uint64_t va;
    KT_EXPECT_EQ(t, kmm_kva_alloc(k, PAGE, &va), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_kva_free(k, va), KMM_OK);
    while (n > 0)
        KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);
    for (unsigned i = 0; i < RECS - PARKED; i++)
        KT_EXPECT_EQ(t, kmm_kva_free(k, raw[i]), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* kmm_check against a park list and parked records written behind the
 * library's back: each corruption is reported, and the check is clean
 * again once it is undone. */
KTEST_LEVELS(vmalloc, kmm_check_reports_a_corrupt_park_list_or_parked_record)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    struct kmm_kva *v = &k->kva;
    void *a = kmm_vmalloc(k, 2 * PAGE, 0), *b = kmm_vmalloc(k, 2 * PAGE, 0);
    KT_ASSERT(t, a && b);
    KT_ASSERT(t, kmm_vfree(k, a) == KMM_OK && kmm_vfree(k, b) == KMM_OK);
    KT_ASSERT_EQ(t, v->nparked, 2);
    KT_EXPECT_HEALTHY(t, k);
    struct kmm_check_result r;
    /* The list names one parked area twice and the other not at all: as
     * many entries as parked records, each a parked record of its size. */
    struct kva_park saved = v->parked[1];
    v->parked[1] = v->parked[0];
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "park list"));
    v->parked[1] = saved;
    KT_EXPECT_HEALTHY(t, k);
    /* An entry whose size is not its record's. */
    v->parked[0].pages++;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "park list"));
    v->parked[0].pages--;
    /* One entry missing. */
    v->nparked--;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "park list"));
    v->nparked++;
    KT_EXPECT_HEALTHY(t, k);
    /* A parked record that says it holds no table, or is being set up. */
    struct kva_rec *rec = &v->recs[0];
    KT_ASSERT(t, rec->kind == KVA_PARKED && rec->held);
    rec->held = 0;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "malformed"));
    rec->held = 1;
    rec->state = KVA_SETUP;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "malformed"));
    rec->state = KVA_READY;
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT(t, kmm_kva_purge(k) >= 1);
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* The figures a refusal on a parked area must leave alone. */
struct park_state {
    struct kmm_vmalloc_stats v;
    struct kmm_kva_park_stats park;
    uint64_t misuse, free_pages;
};

static struct park_state park_state(struct fixture *x)
{
    struct kmm_misuse_stats m;
    kmm_misuse_stats(x->f.k, &m);
    return (struct park_state){vstats(x), park(x), m.total, free_now(x)};
}

/* A call on a parked area (or its guard page) refused with want: counted
 * once, logged with needle, and nothing changed (the parked areas, the
 * live ones, the free pages); kmm_check clean. */
static void expect_park_refused_at(struct ktest *t, struct fixture *x, int got, int want,
                                   const struct park_state *b, const char *what, const char *needle,
                                   int line)
{
    struct park_state a = park_state(x);
    const char *log = kt_machine_last_error(x->f.m);
    if (got != want || a.misuse != b->misuse + 1 || a.free_pages != b->free_pages ||
        a.park.areas != b->park.areas || a.park.pages != b->park.pages || a.v.areas != b->v.areas ||
        a.v.used_pages != b->v.used_pages || a.v.foreign_pages != b->v.foreign_pages || !log ||
        !ktest_contains(log, needle))
        ktest_fail_at(t, __FILE__, line,
                      "%s: got %d (want %d), misuse %llu -> %llu, parked %llu -> %llu, free "
                      "%llu -> %llu, log \"%s\"",
                      what, got, want, (unsigned long long)b->misuse, (unsigned long long)a.misuse,
                      (unsigned long long)b->park.areas, (unsigned long long)a.park.areas,
                      (unsigned long long)b->free_pages, (unsigned long long)a.free_pages,
                      log ? log : "");
    kt_expect_healthy_at(t, x->f.k, __FILE__, line);
}

#define PARK_REFUSED(t, x, call, want, needle)                                                     \
    do {                                                                                           \
        struct park_state b_ = park_state(x);                                                      \
        int got_ = (call);                                                                         \
        expect_park_refused_at((t), (x), got_, (want), &b_, #call, (needle), __LINE__);            \
    } while (0)

/* Whether none of the n pages at va is mapped. */
static bool none_mapped(struct fixture *x, uint64_t va, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (!unmapped(x, va + i * PAGE))
            return false;
    return true;
}

KTEST_LEVELS(vmalloc, every_call_on_a_parked_area_or_its_guard_page_is_refused_and_changes_nothing)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 4 * MIB, levels));
    struct kmm *k = x.f.k;
    uint64_t pg = kmm_page_alloc(k, 0, 0), pgs[2];
    KT_ASSERT(t, pg != 0);
    pgs[0] = pgs[1] = pg;
    void *a = kmm_vmalloc(k, 3 * PAGE, 0), *b = kmm_vmap(k, pgs, 2, KMM_PROT_READ);
    KT_ASSERT(t, a && b);
    KT_ASSERT(t, kmm_vfree(k, a) == KMM_OK && kmm_vunmap(k, b) == KMM_OK);
    KT_ASSERT_EQ(t, park(&x).areas, 2);
    uint64_t va = va_of(a), guard = va + 3 * PAGE, bva = va_of(b);
    /* Frees of its start, inside it, its guard page, with every call. */
    PARK_REFUSED(t, &x, kmm_vfree(k, a), KMM_ENOENT, "kmm_vfree");
    PARK_REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)(va + PAGE)), KMM_ENOENT, "kmm_vfree");
    PARK_REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)guard), KMM_ENOENT, "kmm_vfree");
    PARK_REFUSED(t, &x, kmm_vfree(k, (void *)(uintptr_t)(va + 1)), KMM_EINVAL, "kmm_vfree");
    PARK_REFUSED(t, &x, kmm_vunmap(k, a), KMM_ENOENT, "kmm_vunmap");
    PARK_REFUSED(t, &x, kmm_vunmap(k, b), KMM_ENOENT, "kmm_vunmap");
    PARK_REFUSED(t, &x, kmm_vunmap(k, (void *)(uintptr_t)(bva + 2 * PAGE)), KMM_ENOENT,
                 "kmm_vunmap");
    PARK_REFUSED(t, &x, kmm_kva_free(k, va), KMM_ENOENT, "kmm_kva_free");
    PARK_REFUSED(t, &x, kmm_kva_free(k, guard), KMM_ENOENT, "kmm_kva_free");
    PARK_REFUSED(t, &x, kmm_kva_populate(k, va), KMM_ENOENT, "kmm_kva_populate");
    PARK_REFUSED(t, &x, kmm_kva_populate(k, bva), KMM_ENOENT, "kmm_kva_populate");
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, a, 3), KMM_ENOENT, "kmm_vm_unmap_ram");
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, b, 2), KMM_ENOENT, "kmm_vm_unmap_ram");
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, b, KMM_MAP_RAM_MAX + 1), KMM_ENOENT,
                 "kmm_vm_unmap_ram");
    /* Plain maps, unmaps and protections of its pages, its guard page, or a
     * range of the free window that reaches into either. */
    PARK_REFUSED(t, &x, kmm_vm_map(x.ks, va, pg, PAGE, KMM_PROT_READ), KMM_EBUSY, "kmm_vm_map");
    PARK_REFUSED(t, &x, kmm_vm_map(x.ks, va + 2 * PAGE, pg, PAGE, KMM_PROT_READ), KMM_EBUSY,
                 "kmm_vm_map");
    PARK_REFUSED(t, &x, kmm_vm_map(x.ks, guard, pg, PAGE, KMM_PROT_READ), KMM_EBUSY, "kmm_vm_map");
    PARK_REFUSED(t, &x, kmm_vm_map(x.ks, va, pg, PAGE, KMM_PROT_READ | KMM_MAP_REPLACE), KMM_EBUSY,
                 "kmm_vm_map");
    PARK_REFUSED(t, &x, kmm_vm_unmap(x.ks, va, 3 * PAGE), KMM_EBUSY, "kmm_vm_unmap");
    PARK_REFUSED(t, &x, kmm_vm_unmap(x.ks, guard, PAGE), KMM_EBUSY, "kmm_vm_unmap");
    PARK_REFUSED(t, &x, kmm_vm_unmap(x.ks, x.base + x.size - 64 * PAGE, 0), KMM_EINVAL,
                 "kmm_vm_unmap");
    PARK_REFUSED(t, &x, kmm_vm_protect(x.ks, bva, PAGE, KMM_PROT_READ), KMM_EBUSY,
                 "kmm_vm_protect");
    PARK_REFUSED(t, &x, kmm_vm_protect(x.ks, bva + 2 * PAGE, PAGE, KMM_PROT_READ), KMM_EBUSY,
                 "kmm_vm_protect");
    uint64_t tail = x.base + x.size - 4 * PAGE; /* free window: a range reaching into b */
    KT_ASSERT(t, bva + 3 * PAGE < tail);
    PARK_REFUSED(t, &x, kmm_vm_unmap(x.ks, bva + 2 * PAGE, tail - bva - 2 * PAGE), KMM_EBUSY,
                 "kmm_vm_unmap");
    PARK_REFUSED(t, &x, kmm_vm_map(x.ks, bva + PAGE, pg, PAGE, KMM_PROT_READ), KMM_EBUSY,
                 "kmm_vm_map");
    KT_EXPECT(t, none_mapped(&x, va, 4) && none_mapped(&x, bva, 3));
    /* A lookup finds nothing and is no misuse. */
    struct kmm_kva_area ar;
    uint64_t misuse = vstats(&x).misuse;
    KT_EXPECT_EQ(t, kmm_kva_lookup(k, va, &ar), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_kva_lookup(k, va + 2 * PAGE, &ar), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_kva_lookup(k, guard, &ar), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_kva_lookup(k, bva + PAGE, &ar), KMM_ENOENT);
    KT_EXPECT_EQ(t, vstats(&x).misuse, misuse);
    /* The page after b's guard page is anybody's. */
    KT_ASSERT_EQ(t, bva, guard + PAGE);
    KT_EXPECT_EQ(t, kmm_vm_map(x.ks, bva + 3 * PAGE, pg, PAGE, KMM_PROT_READ), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, bva + 3 * PAGE, PAGE), KMM_OK);
    /* Nothing changed: each size still takes its own parked range. */
    KT_EXPECT_EQ(t, park(&x).areas, 2);
    void *a2 = kmm_vmap(k, pgs, 3 - 1, KMM_PROT_READ), *b2 = kmm_vmalloc(k, 3 * PAGE, 0);
    KT_EXPECT(t, va_of(a2) == bva && va_of(b2) == va);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT(t, kmm_vunmap(k, a2) == KMM_OK && kmm_vfree(k, b2) == KMM_OK);
    kmm_kva_purge(k);
    KT_EXPECT_EQ(t, kmm_page_free(k, pg, 0), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).metadata_pages, 0);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* kmm_vm_map_ram of counts around KMM_MAP_RAM_MAX + 1: beyond a block an
 * area, parked when unmapped and taken again by kmm_vmap or kmm_vm_map_ram
 * of its count, never by a count a block serves; its unmaps by the wrong
 * count or twice are refused. */
KTEST_LEVELS(vmalloc, map_ram_areas_around_the_block_limit_reuse_parked_ranges_exactly)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm *k = x.f.k;
    enum { MAX = KMM_MAP_RAM_MAX };
    static uint64_t pg[MAX + 2];
    uint64_t one = kmm_page_alloc(k, 0, 0);
    KT_ASSERT(t, one != 0);
    for (unsigned i = 0; i < N(pg); i++)
        pg[i] = one;
    void *v1 = kmm_vm_map_ram(k, pg, MAX + 1, KMM_PROT_READ);
    void *v2 = kmm_vm_map_ram(k, pg, MAX + 2, KMM_PROT_READ);
    KT_ASSERT(t, v1 && v2);
    KT_EXPECT_EQ(t, vstats(&x).vmap_areas, 2);
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(k, v1, MAX + 1), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(k, v2, MAX + 2), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, 2);
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, v1, MAX + 1), KMM_ENOENT, "kmm_vm_unmap_ram");
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, v1, MAX), KMM_ENOENT, "kmm_vm_unmap_ram");
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, v2, MAX + 1), KMM_ENOENT, "kmm_vm_unmap_ram");
    /* MAX pages go to a block; MAX + 2 and MAX + 1 take their own ranges. */
    void *b = kmm_vm_map_ram(k, pg, MAX, KMM_PROT_READ);
    KT_ASSERT(t, b != NULL);
    KT_EXPECT_EQ(t, park(&x).areas, 2);
    void *w2 = kmm_vmap(k, pg, MAX + 2, KMM_PROT_READ);
    void *w1 = kmm_vm_map_ram(k, pg, MAX + 1, KMM_PROT_READ);
    KT_EXPECT(t, va_of(w2) == va_of(v2) && va_of(w1) == va_of(v1));
    KT_EXPECT_EQ(t, park(&x).areas, 0);
    KT_EXPECT_HEALTHY(t, k);
    /* Wrong counts are refused and leave them live; a vmap area goes with
     * either call. */
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, w1, MAX), KMM_EINVAL, "kmm_vm_unmap_ram");
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, w2, MAX + 1), KMM_EINVAL, "kmm_vm_unmap_ram");
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(k, w2, MAX + 2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vunmap(k, w1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(k, b, MAX), KMM_OK);
    kmm_vm_map_ram_drain(k);
    KT_EXPECT_EQ(t, park(&x).areas, 2);
    KT_EXPECT_HEALTHY(t, k);
    kmm_kva_purge(k);
    KT_EXPECT_EQ(t, kmm_page_free(k, one, 0), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).metadata_pages, 0);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* Takes free pages until `leave` are left (none of the allocations needs
 * reclaim, so no shrinker runs: parked areas stay). Returns how many the
 * array holds now. */
static size_t take_until(struct fixture *x, uint64_t *held, size_t n, size_t cap, uint64_t leave)
{
    for (uint64_t left = free_now(x); left > leave && n < cap; left--)
        if ((held[n] = kmm_page_alloc(x->f.k, 0, 0)) != 0)
            n++;
    return n;
}

/* With 0 .. a few pages left, a vmalloc that takes a parked range either
 * works or fails and parks the range again (the shrinker giving the other
 * parked areas back meanwhile); a vmap of a parked size needs no page at
 * all; a free parks with no page left, and the 17th evicts the oldest.
 * Afterwards every page is back. */
KTEST_LEVELS(vmalloc, a_shortage_at_every_step_of_parking_and_reuse_leaves_nothing_behind)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 8 * MIB, levels));
    struct kmm *k = x.f.k;
    static uint64_t held[32 * MIB / PAGE];
    struct kmm_page_stats start = pstats(&x);
    enum { BIG = 40, SMALL = 5 };
    uint64_t pg[SMALL];
    for (unsigned i = 0; i < SMALL; i++)
        KT_ASSERT(t, (pg[i] = kmm_page_alloc(k, 0, 0)) != 0);
    for (uint64_t leave = 0; leave <= BIG + 1; leave += leave < 4 ? 1 : 12) {
        void *big = kmm_vmalloc(k, BIG * PAGE, 0), *small = kmm_vmap(k, pg, SMALL, KMM_PROT_READ);
        KT_ASSERT(t, big && small);
        size_t n = take_until(&x, held, 0, N(held), 0);
        /* No page left: both frees park (their tables are there already). */
        KT_EXPECT_EQ(t, kmm_vunmap(k, small), KMM_OK);
        KT_EXPECT_EQ(t, kmm_vfree(k, big), KMM_OK);
        KT_EXPECT_EQ(t, park(&x).areas, 2);
        n = take_until(&x, held, n, N(held), 0);
        KT_EXPECT_EQ(t, free_now(&x), 0);
        /* A vmap of the parked size takes its range and tables: no page. */
        void *again = kmm_vmap(k, pg, SMALL, KMM_PROT_READ);
        KT_EXPECT_EQ(t, va_of(again), va_of(small));
        KT_EXPECT_EQ(t, kmm_vunmap(k, again), KMM_OK);
        KT_EXPECT_HEALTHY(t, k);
        n = take_until(&x, held, n, N(held), 0); /* what the held table's path freed, if any */
        while (free_now(&x) < leave && n > 0)
            KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);
        void *p = kmm_vmalloc(k, BIG * PAGE, 0);
        if (leave < BIG) {
            KT_EXPECT(t, p == NULL);
            /* The range went back to the park (the shrinker, run by the
             * shortage, may have given the other one back). */
            struct kmm_kva_park_stats s = park(&x);
            KT_EXPECT(t, s.areas >= 1 && s.pages >= BIG && vstats(&x).areas == 0);
            KT_EXPECT(t, free_now(&x) <= leave);
        } else {
            KT_EXPECT_EQ(t, va_of(p), va_of(big));
        }
        KT_EXPECT_HEALTHY(t, k);
        while (n > 0)
            KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);
        if (!p)
            p = kmm_vmalloc(k, BIG * PAGE, 0);
        KT_EXPECT_EQ(t, va_of(p), va_of(big)); /* it had gone back to the park */
        KT_EXPECT_EQ(t, kmm_vfree(k, p), KMM_OK);
        KT_EXPECT_HEALTHY(t, k);
    }
    /* Sixteen parked, then a 17th free with no page left evicts the
     * oldest, which frees (never needs) pages. */
    void *a[KMM_KVA_PARKED + 1];
    for (unsigned i = 0; i < N(a); i++)
        KT_ASSERT(t, (a[i] = kmm_vmalloc(k, (i + 1) * PAGE, 0)) != NULL);
    for (unsigned i = 0; i < KMM_KVA_PARKED; i++)
        KT_EXPECT_EQ(t, kmm_vfree(k, a[i]), KMM_OK);
    size_t n = take_until(&x, held, 0, N(held), 0);
    KT_EXPECT_EQ(t, kmm_vfree(k, a[KMM_KVA_PARKED]), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).areas, KMM_KVA_PARKED);
    KT_EXPECT_HEALTHY(t, k);
    while (n > 0)
        KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);
    for (unsigned i = 0; i < SMALL; i++)
        KT_EXPECT_EQ(t, kmm_page_free(k, pg[i], 0), KMM_OK);
    struct kmm_page_stats end = pstats(&x);
    KT_EXPECT(t, kt_same_buddyinfo(&start, &end));
    KT_EXPECT_EQ(t, end.allocated_pages, start.allocated_pages);
    KT_EXPECT_EQ(t, vstats(&x).metadata_pages, 0);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}

/* In a window too small for a vmap block (1 MiB: no aligned 2 MiB), every
 * kmm_vm_map_ram is an area: a count of at most KMM_MAP_RAM_MAX is parked
 * when unmapped and taken again by the next map_ram of its count, and its
 * unmaps by another count or twice are refused. */
KTEST_LEVELS(vmalloc, map_ram_areas_of_a_window_without_blocks_are_parked_and_reused)
{
    struct fixture x;
    KT_ASSERT(t, setup(t, &x, 1 * MIB, levels));
    struct kmm *k = x.f.k;
    uint64_t pg[3];
    for (unsigned i = 0; i < 3; i++)
        KT_ASSERT(t, (pg[i] = kmm_page_alloc(k, 0, 0)) != 0);
    void *v = kmm_vm_map_ram(k, pg, 3, KMM_PROT_READ);
    KT_ASSERT(t, v != NULL);
    KT_EXPECT_EQ(t, vstats(&x).vmap_areas, 1);
    KT_EXPECT_EQ(t, vstats(&x).vmap_blocks, 0);
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(k, v, 3), KMM_OK);
    KT_EXPECT_EQ(t, park(&x).pages, 3);
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, v, 3), KMM_ENOENT, "kmm_vm_unmap_ram");
    void *w = kmm_vm_map_ram(k, pg, 3, KMM_PROT_READ);
    KT_EXPECT_EQ(t, va_of(w), va_of(v));
    for (unsigned i = 0; i < 3; i++) {
        struct kmm_vm_translation tr;
        KT_EXPECT(t, kmm_vm_translate(x.ks, va_of(w) + i * PAGE, &tr) == KMM_OK && tr.pa == pg[i]);
    }
    PARK_REFUSED(t, &x, kmm_vm_unmap_ram(k, w, 2), KMM_EINVAL, "kmm_vm_unmap_ram");
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(k, w, 3), KMM_OK);
    KT_EXPECT(t, none_mapped(&x, va_of(w), 4));
    KT_EXPECT_HEALTHY(t, k);
    kmm_kva_purge(k);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT_EQ(t, kmm_page_free(k, pg[i], 0), KMM_OK);
    KT_EXPECT_EQ(t, vstats(&x).metadata_pages, 0);
    KT_EXPECT_HEALTHY(t, k);
    teardown(&x);
}
