/*
 * test_boruix.c - the Boruix interface (boruix/rust_memory.h, SPEC §8): each
 * function's documented behaviour, and its bad inputs (SPEC §9: the failure
 * value, counted once, logged once with the caller, kmm_check clean).
 * Hosted only: the compat layer owns one global instance on a simulated
 * machine (compat/hosted.c), made and torn down by each test.
 */
#include <stdlib.h>
#include <string.h>

#include "faults_hosted.h"
#include "fixture.h"
#include "hosted.h"
#include "ktest.h"
#include "world.h"

#include <boruix/memory.h>
#include <boruix/rust_memory.h>
#include <kmm/bootmap.h>
#include <kmm/check.h>
#include <kmm/events.h>
#include <kmm/heap.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB         (UINT64_C(1) << 20)
#define PG          UINT64_C(4096)
#define KIB         UINT64_C(1024)
/* Boruix's fixed test addresses (pgtest, memprottest) in its heap window. */
#define PGTEST_VA   UINT64_C(0xFFFFFFFF90000000)
#define PROTTEST_VA UINT64_C(0xFFFFFFFF91000000)
/* The hosted window's part left to the caller (compat/hosted.c). */
#define FIXED_PART  (32 * MIB)

/* The report's example map: usable RAM from 1 MiB to 128 MiB. */
static const rust_memory_region_t report_map[] = {
    {0x100000, 0x7F00000, RUST_MEMORY_TYPE_AVAILABLE},
};

/* An instance on the report's map; false (test failed) if it did not come up. */
static bool up(struct ktest *t)
{
    if (kmm_boruix_instance())
        kmm_boruix_fini();
    if (rust_memory_init(report_map, 1) != 0) {
        ktest_fail_at(t, __FILE__, __LINE__, "rust_memory_init failed");
        return false;
    }
    return true;
}

/* Checks the instance and tears it down. */
static void down(struct ktest *t)
{
    struct kmm *k = kmm_boruix_instance();
    if (k)
        KT_EXPECT_HEALTHY(t, k);
    kmm_boruix_fini();
}

/* The mirror window: where the hosted heap window's memory is real. */
static uint64_t window_base(void)
{
    uint64_t base, size;
    hosted_machine_mirror_window(kmm_boruix_hosted_machine(), &base, &size);
    return base;
}

/* A snapshot of the counts a refused call must move. */
struct counts {
    uint64_t compat, library;
    unsigned long errors;
};

static struct counts counts_now(void)
{
    struct counts c = {kmm_boruix_misuse(), 0, 0};
    struct kmm *k = kmm_boruix_instance();
    if (k) {
        struct kmm_misuse_stats m;
        kmm_misuse_stats(k, &m);
        c.library = m.total;
        c.errors = hosted_log_count(kmm_boruix_hosted_machine(), KMM_LOG_ERR);
    }
    return c;
}

/*
 * Expects the call between `before` and now to have been refused once: by
 * this layer (compat) or by the library, one error line naming needle and
 * the caller, and kmm_check clean.
 */
static void expect_refused_at(struct ktest *t, struct counts before, bool compat,
                              const char *needle, const char *file, int line)
{
    struct counts after = counts_now();
    uint64_t want_compat = before.compat + (compat ? 1 : 0);
    uint64_t want_library = before.library + (compat ? 0 : 1);
    if (after.compat != want_compat || after.library != want_library)
        ktest_fail_at(t, file, line, "counted compat %llu -> %llu, library %llu -> %llu",
                      (unsigned long long)before.compat, (unsigned long long)after.compat,
                      (unsigned long long)before.library, (unsigned long long)after.library);
    struct kmm *k = kmm_boruix_instance();
    if (!k)
        return; /* before init: logged to stderr, nothing to check */
    if (after.errors != before.errors + 1)
        ktest_fail_at(t, file, line, "%lu error lines, want 1", after.errors - before.errors);
    const char *last = hosted_log_last_error(kmm_boruix_hosted_machine());
    if (!ktest_contains(last, needle) || !ktest_contains(last, "caller"))
        ktest_fail_at(t, file, line, "logged \"%s\", want \"%s\" and the caller", last, needle);
    kt_expect_healthy_at(t, k, file, line);
}
#define EXPECT_REFUSED(t, before, compat, needle)                                                  \
    expect_refused_at((t), (before), (compat), (needle), __FILE__, __LINE__)

static uint8_t *hhdm(uint64_t pa)
{
    return (uint8_t *)(uintptr_t)(rust_get_hhdm_offset() + pa);
}

/* --- init and the direct map ---------------------------------------------------------------- */

KTEST(boruix, init_with_the_reports_map_manages_16_to_128_mib)
{
    if (!up(t))
        return;
    rust_memory_stats_t s;
    KT_ASSERT_EQ(t, rust_memory_stats(&s), 0);
    KT_EXPECT_EQ(t, s.physical.total_memory, 112 * MIB);
    KT_EXPECT_EQ(t, s.physical.total_pages, 112 * MIB / PG);
    /* Every page the allocator has lies between 16 MiB and 128 MiB. */
    static uint64_t pages[112 * MIB / PG];
    size_t n = 0;
    bool inside = true;
    for (uint64_t pa; (pa = rust_alloc_page()) != 0; n++) {
        inside = inside && pa >= 16 * MIB && pa < 128 * MIB;
        pages[n] = pa;
    }
    KT_EXPECT(t, inside);
    KT_EXPECT(t, n > 100 * MIB / PG);
    KT_EXPECT_EQ(t, rust_memory_usage_percent(), 100);
    for (size_t i = 0; i < n; i++)
        rust_free_page(pages[i]);
    KT_EXPECT_EQ(t, rust_memory_check(), 0);
    down(t);
}

KTEST(boruix, init_refuses_bad_maps_and_a_second_call)
{
    kmm_boruix_fini();
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_init(NULL, 1), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_init");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_init(report_map, 0), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_init");
    rust_memory_region_t bad_type[] = {{0x100000, 0x7F00000, 6}};
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_init(bad_type, 1), -1);
    EXPECT_REFUSED(t, b, true, "type 6");
    rust_memory_region_t wraps[] = {{UINT64_MAX - PG, 2 * PG, RUST_MEMORY_TYPE_AVAILABLE}};
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_init(wraps, 1), -1);
    EXPECT_REFUSED(t, b, true, "invalid");
    /* Only memory below 16 MiB: nothing left once the image's is kept. */
    rust_memory_region_t low[] = {{0x100000, 15 * MIB, RUST_MEMORY_TYPE_AVAILABLE}};
    KT_EXPECT_EQ(t, rust_memory_init(low, 1), -1);
    KT_EXPECT(t, kmm_boruix_instance() == NULL);
    /* None of that stands in the way of a good init, which is once only. */
    KT_ASSERT_EQ(t, rust_memory_init(report_map, 1), 0);
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_init(report_map, 1), -1);
    EXPECT_REFUSED(t, b, true, "second");
    down(t);
}

KTEST(boruix, reserved_regions_win_over_available_memory)
{
    kmm_boruix_fini();
    rust_memory_region_t map[] = {
        {0x100000, 0x7F00000, RUST_MEMORY_TYPE_AVAILABLE},
        {32 * MIB, 16 * MIB, RUST_MEMORY_TYPE_RESERVED},
        {64 * MIB, 1 * MIB, RUST_MEMORY_TYPE_ACPI_NVS},
    };
    KT_ASSERT_EQ(t, rust_memory_init(map, 3), 0);
    rust_memory_stats_t s;
    KT_ASSERT_EQ(t, rust_memory_stats(&s), 0);
    KT_EXPECT_EQ(t, s.physical.total_memory, (112 - 17) * MIB);
    /* 17 MiB in one run: only 65..128 MiB can hold it. */
    uint64_t pa = rust_alloc_pages(17 * MIB / PG);
    KT_EXPECT(t, pa >= 65 * MIB);
    rust_free_pages(pa, 17 * MIB / PG);
    down(t);
}

KTEST(boruix, hhdm_offset_is_kept_before_init_and_the_machines_after)
{
    kmm_boruix_fini();
    rust_set_hhdm_offset(UINT64_C(0xFFFF800000000000));
    KT_EXPECT_EQ(t, rust_get_hhdm_offset(), UINT64_C(0xFFFF800000000000));
    struct counts b = counts_now();
    rust_set_hhdm_offset(UINT64_C(0xFFFF800000000123));
    EXPECT_REFUSED(t, b, true, "rust_set_hhdm_offset");
    KT_EXPECT_EQ(t, rust_get_hhdm_offset(), UINT64_C(0xFFFF800000000000));
    if (!up(t))
        return;
    /* Hosted, the simulated machine's direct map is where memory is. */
    KT_EXPECT_EQ(t, rust_get_hhdm_offset(), hosted_machine_direct_map(kmm_boruix_hosted_machine()));
    uint64_t pa = rust_alloc_page();
    KT_ASSERT(t, pa != 0);
    hhdm(pa)[100] = 0x5a;
    KT_EXPECT_EQ(t, hhdm(pa)[100], 0x5a);
    rust_free_page(pa);
    /* After init only the offset in use is accepted. */
    b = counts_now();
    rust_set_hhdm_offset(UINT64_C(0xFFFF800000000000));
    EXPECT_REFUSED(t, b, true, "after init");
    b = counts_now();
    rust_set_hhdm_offset(rust_get_hhdm_offset());
    struct counts a = counts_now();
    KT_EXPECT_EQ(t, a.compat, b.compat);
    rust_set_hhdm_offset(0);
    down(t);
}

/* --- before init ---------------------------------------------------------------------------- */

KTEST(boruix, every_call_before_init_fails_cleanly_and_is_counted)
{
    kmm_boruix_fini();
    uint64_t before = kmm_boruix_misuse();
    rust_memory_stats_t st;
    rust_memory_summary_t su;
    rust_memory_report_t re;
    bool p, w, u, x;
    uint64_t va, used = 1, total = 1;
    size_t a, f, c, ac, fc;
    KT_EXPECT(t, rust_kmalloc(16) == NULL);
    rust_kfree(&st);
    KT_EXPECT_EQ(t, rust_alloc_page(), 0);
    rust_free_page(16 * MIB);
    KT_EXPECT_EQ(t, rust_alloc_pages(2), 0);
    rust_free_pages(16 * MIB, 2);
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA, 16 * MIB, RUST_PAGE_KERNEL_RW), -1);
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), 0);
    KT_EXPECT_EQ(t, rust_virt_to_phys(PGTEST_VA), 0);
    KT_EXPECT_EQ(t, rust_memory_stats(&st), -1);
    KT_EXPECT_EQ(t, rust_memory_summary(&su), -1);
    KT_EXPECT_EQ(t, rust_memory_report(&re), -1);
    KT_EXPECT_EQ(t, rust_memory_check(), -1);
    rust_memory_debug_print();
    rust_memory_set_debug_level(1);
    KT_EXPECT_EQ(t, rust_memory_stress_test(10, 64), -1);
    KT_EXPECT_EQ(t, rust_memory_benchmark(10, 64), 0);
    KT_EXPECT_EQ(t, rust_set_page_readonly(PGTEST_VA), -1);
    KT_EXPECT_EQ(t, rust_set_page_readwrite(PGTEST_VA), -1);
    KT_EXPECT_EQ(t, rust_set_page_no_execute(PGTEST_VA), -1);
    KT_EXPECT_EQ(t, rust_get_page_flags(PGTEST_VA, &p, &w, &u, &x), -1);
    KT_EXPECT_EQ(t, rust_vmm_allocate(PG), 0);
    KT_EXPECT_EQ(t, rust_vmm_map_and_allocate(PG, &va), -1);
    rust_vmm_get_heap_usage(&used, &total);
    rust_heap_stats(&a, &f, &c, &ac, &fc);
    /* One count per call; the two percentages answer 0 quietly. */
    KT_EXPECT_EQ(t, kmm_boruix_misuse() - before, 25);
    KT_EXPECT_EQ(t, used + total, 0);
    KT_EXPECT_EQ(t, rust_memory_usage_percent(), 0);
    KT_EXPECT_EQ(t, rust_heap_usage_percent(), 0);
    KT_EXPECT(t, !p && !w && !u && !x);
    KT_EXPECT_EQ(t, a + f + c + ac + fc, 0);
}

/* --- heap --------------------------------------------------------------------------------------
 */

KTEST(boruix, kmalloc_gives_usable_blocks_of_every_size_and_kfree_takes_them_back)
{
    if (!up(t))
        return;
    static const size_t sizes[] = {1, 16, 100, 1024, 4096, 8193, 100000, 1 << 20};
    uint8_t *blocks[sizeof(sizes) / sizeof(sizes[0])];
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        blocks[i] = rust_kmalloc(sizes[i]);
        KT_ASSERT(t, blocks[i] != NULL);
        KT_EXPECT_EQ(t, (uintptr_t)blocks[i] % 16, 0);
        memset(blocks[i], (int)i + 1, sizes[i]);
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        KT_EXPECT_EQ(t, blocks[i][0], i + 1);
        KT_EXPECT_EQ(t, blocks[i][sizes[i] - 1], i + 1);
        rust_kfree(blocks[i]);
    }
    size_t a, f, c, ac, fc;
    rust_heap_stats(&a, &f, &c, &ac, &fc);
    KT_EXPECT_EQ(t, c, 0);
    KT_EXPECT_EQ(t, ac, fc);
    KT_EXPECT(t, a >= (1 << 20) + 100000);
    /* kmalloc(0) is NULL as it was, and not a mistake; kfree(NULL) nothing. */
    struct counts b = counts_now();
    KT_EXPECT(t, rust_kmalloc(0) == NULL);
    rust_kfree(NULL);
    struct counts n = counts_now();
    KT_EXPECT_EQ(t, n.compat + n.library, b.compat + b.library);
    down(t);
}

KTEST(boruix, kfree_refuses_a_double_free_and_foreign_pointers)
{
    if (!up(t))
        return;
    void *p = rust_kmalloc(64);
    KT_ASSERT(t, p != NULL);
    rust_kfree(p);
    struct counts b = counts_now();
    rust_kfree(p);
    EXPECT_REFUSED(t, b, false, "free");
    int local;
    b = counts_now();
    rust_kfree(&local);
    EXPECT_REFUSED(t, b, false, "free");
    uint64_t pa = rust_alloc_page();
    b = counts_now();
    rust_kfree(hhdm(pa) + 8);
    EXPECT_REFUSED(t, b, false, "free");
    rust_free_page(pa);
    down(t);
}

/* --- pages -------------------------------------------------------------------------------------
 */

KTEST(boruix, alloc_page_gives_zeroed_pages_even_after_a_dirty_free)
{
    if (!up(t))
        return;
    for (int round = 0; round < 4; round++) {
        uint64_t pa = rust_alloc_page();
        KT_ASSERT(t, pa != 0 && pa % PG == 0);
        const uint8_t *p = hhdm(pa);
        bool zero = true;
        for (size_t i = 0; i < PG; i++)
            zero = zero && p[i] == 0;
        KT_EXPECT(t, zero);
        memset(hhdm(pa), 0xff, PG);
        rust_free_page(pa);
    }
    down(t);
}

KTEST(boruix, free_page_refuses_what_is_not_an_allocated_page)
{
    if (!up(t))
        return;
    uint64_t pa = rust_alloc_page();
    KT_ASSERT(t, pa != 0);
    struct counts b = counts_now();
    rust_free_page(pa + 8);
    EXPECT_REFUSED(t, b, false, "kmm_page_free");
    rust_free_page(pa);
    b = counts_now();
    rust_free_page(pa);
    EXPECT_REFUSED(t, b, false, "kmm_page_free");
    b = counts_now();
    rust_free_page(4 * MIB); /* the kept low memory */
    EXPECT_REFUSED(t, b, false, "kmm_page_free");
    b = counts_now();
    rust_free_page(UINT64_C(1) << 40); /* beyond the machine */
    EXPECT_REFUSED(t, b, false, "kmm_page_free");
    b = counts_now();
    rust_free_page(0);
    struct counts n = counts_now();
    KT_EXPECT_EQ(t, n.compat + n.library, b.compat + b.library);
    down(t);
}

KTEST(boruix, alloc_pages_gives_exactly_count_contiguous_zeroed_pages)
{
    if (!up(t))
        return;
    uint64_t pa = rust_alloc_pages(3);
    KT_ASSERT(t, pa != 0 && pa % PG == 0);
    bool zero = true;
    for (size_t i = 0; i < 3 * PG; i++)
        zero = zero && hhdm(pa)[i] == 0;
    KT_EXPECT(t, zero);
    memset(hhdm(pa), 0x77, 3 * PG);
    rust_memory_stats_t s;
    rust_memory_stats(&s);
    size_t allocated = s.physical.allocated_pages;
    /* A wrong count is refused, nothing freed. */
    struct counts b = counts_now();
    rust_free_pages(pa, 4);
    EXPECT_REFUSED(t, b, false, "kmm_run_free");
    rust_free_pages(pa, 3);
    rust_memory_stats(&s);
    KT_EXPECT_EQ(t, s.physical.allocated_pages, allocated - 3);
    b = counts_now();
    KT_EXPECT_EQ(t, rust_alloc_pages(0), 0);
    EXPECT_REFUSED(t, b, true, "count 0");
    /* More than the machine has: 0, an answer. */
    KT_EXPECT_EQ(t, rust_alloc_pages(200 * MIB / PG), 0);
    down(t);
}

/* --- page tables ---------------------------------------------------------------------------------
 */

KTEST(boruix, map_translate_and_unmap_a_page_as_the_report_shows)
{
    if (!up(t))
        return;
    uint64_t page = alloc_page();
    KT_ASSERT(t, page != 0);
    KT_EXPECT_EQ(t, map_page(PGTEST_VA, page, PAGE_PRESENT | PAGE_WRITABLE), 0);
    KT_EXPECT_EQ(t, get_physical_addr(PGTEST_VA + 0x123), page + 0x123);
    bool p, w, u, x;
    KT_EXPECT_EQ(t, rust_get_page_flags(PGTEST_VA, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && w && !u && x);
    rust_memory_stats_t s;
    rust_memory_stats(&s);
    KT_EXPECT(t, s.virtual_memory.mapped_pages >= 1);
    KT_EXPECT_EQ(t, s.page_tables.total_entries,
                 512 * (s.page_tables.pml4_tables + s.page_tables.pdp_tables +
                        s.page_tables.pd_tables + s.page_tables.pt_tables));
    KT_EXPECT_EQ(t, unmap_page(PGTEST_VA), page);
    KT_EXPECT_EQ(t, get_physical_addr(PGTEST_VA), 0);
    KT_EXPECT_EQ(t, rust_get_page_flags(PGTEST_VA, &p, &w, &u, &x), -1);
    KT_EXPECT(t, !p && !w && !u && !x);
    free_page(page);
    down(t);
}

KTEST(boruix, map_page_flags_become_the_entrys_protection_and_cache_mode)
{
    if (!up(t))
        return;
    uint64_t page = rust_alloc_page();
    struct kmm_aspace *ks = kmm_kernel_aspace(kmm_boruix_instance());
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, rust_map_page(PGTEST_VA, page, RUST_PAGE_KERNEL_RO | RUST_PAGE_GLOBAL), 0);
    KT_ASSERT_EQ(t, kmm_vm_translate(ks, PGTEST_VA, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ | KMM_PROT_GLOBAL);
    KT_EXPECT_EQ(t, tr.cache, KMM_CACHE_WB);
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), page);
    /* User pages live in the lower half (USER_VIRTUAL_BASE up). */
    KT_ASSERT_EQ(
        t, rust_map_page(USER_VIRTUAL_BASE, page, RUST_PAGE_USER_RW | RUST_PAGE_CACHE_DISABLE), 0);
    KT_ASSERT_EQ(t, kmm_vm_translate(ks, USER_VIRTUAL_BASE, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER);
    KT_EXPECT_EQ(t, tr.cache, KMM_CACHE_UC);
    bool p, w, u, x;
    KT_EXPECT_EQ(t, rust_get_page_flags(USER_VIRTUAL_BASE, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && w && u && !x);
    KT_EXPECT_EQ(t, rust_unmap_page(USER_VIRTUAL_BASE), page);
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA, page, RUST_PAGE_USER_RW), -1);
    EXPECT_REFUSED(t, b, false, "user access in the kernel half");
    KT_ASSERT_EQ(t,
                 rust_map_page(PGTEST_VA, page,
                               RUST_PAGE_PRESENT | RUST_PAGE_WRITE_THROUGH | RUST_PAGE_ACCESSED |
                                   RUST_PAGE_DIRTY),
                 0);
    KT_ASSERT_EQ(t, kmm_vm_translate(ks, PGTEST_VA, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ | KMM_PROT_EXEC);
    KT_EXPECT_EQ(t, tr.cache, KMM_CACHE_WT);
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), page);
    rust_free_page(page);
    down(t);
}

KTEST(boruix, map_page_refuses_bit_7_unknown_bits_and_bad_addresses)
{
    if (!up(t))
        return;
    uint64_t page = rust_alloc_page();
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA, page, PAGE_PRESENT | PAGE_SIZE_FLAG), -1);
    EXPECT_REFUSED(t, b, true, "bit 7");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA, page, PAGE_PRESENT | 0x200), -1);
    EXPECT_REFUSED(t, b, true, "unknown flags");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA + 8, page, PAGE_PRESENT), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vm_map");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA, page + 8, PAGE_PRESENT), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vm_map");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(UINT64_C(0x0000900000000000), page, PAGE_PRESENT), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vm_map");
    KT_EXPECT_EQ(t, rust_virt_to_phys(PGTEST_VA), 0);
    /* A page mapped already stays as it was. */
    KT_ASSERT_EQ(t, rust_map_page(PGTEST_VA, page, PAGE_PRESENT), 0);
    b = counts_now();
    KT_EXPECT_EQ(t, rust_map_page(PGTEST_VA, page + PG, PAGE_PRESENT), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vm_map");
    KT_EXPECT_EQ(t, rust_virt_to_phys(PGTEST_VA), page);
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), page);
    rust_free_page(page);
    down(t);
}

KTEST(boruix, unmap_page_refuses_an_unmapped_or_unaligned_page)
{
    if (!up(t))
        return;
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), 0);
    EXPECT_REFUSED(t, b, false, "kmm_vm_unmap");
    uint64_t page = rust_alloc_page();
    KT_ASSERT_EQ(t, rust_map_page(PGTEST_VA, page, PAGE_PRESENT), 0);
    b = counts_now();
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA + 0x10), 0);
    EXPECT_REFUSED(t, b, false, "kmm_vm_unmap");
    KT_EXPECT_EQ(t, rust_virt_to_phys(PGTEST_VA), page);
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), page);
    rust_free_page(page);
    down(t);
}

KTEST(boruix, a_page_mapped_in_the_window_is_real_memory_hosted)
{
    if (!up(t))
        return;
    uint64_t page = rust_alloc_page();
    uint64_t va = window_base(); /* the hosted analogue of 0xFFFFFFFF90000000 */
    KT_ASSERT_EQ(t, rust_map_page(va, page, RUST_PAGE_KERNEL_RW), 0);
    uint8_t *p = (uint8_t *)(uintptr_t)va;
    p[5] = 0x42;
    KT_EXPECT_EQ(t, hhdm(page)[5], 0x42);
    KT_EXPECT_EQ(t, rust_unmap_page(va), page);
    KT_EXPECT(t, kt_write_faults(p));
    rust_free_page(page);
    down(t);
}

/* --- the heap window
 * ------------------------------------------------------------------------------ */

KTEST(boruix, the_fixed_test_addresses_stay_free_after_heavy_heap_use)
{
    if (!up(t))
        return;
    /* Large blocks (vmalloc'd), raw ranges and mapped ranges: the library's
     * own uses of the window. */
    void *big[16];
    for (int i = 0; i < 16; i++) {
        big[i] = rust_kmalloc(1 * MIB);
        KT_ASSERT(t, big[i] != NULL);
    }
    uint64_t raw = rust_vmm_allocate(16 * KIB), mapped = 0;
    KT_ASSERT(t, raw != 0);
    KT_ASSERT_EQ(t, rust_vmm_map_and_allocate(64 * KIB, &mapped), 0);
    uint64_t lo = window_base() + FIXED_PART;
    KT_EXPECT(t, raw >= lo && mapped >= lo && (uint64_t)(uintptr_t)big[0] >= lo);
    /* Boruix's pgtest and memprottest addresses, and their hosted twins. */
    uint64_t page = rust_alloc_page();
    uint64_t vas[] = {PGTEST_VA, PROTTEST_VA, window_base(), window_base() + 16 * MIB};
    for (size_t i = 0; i < 4; i++) {
        KT_EXPECT_EQ(t, rust_map_page(vas[i], page, RUST_PAGE_KERNEL_RW), 0);
        KT_EXPECT_EQ(t, rust_set_page_readonly(vas[i]), 0);
        KT_EXPECT_EQ(t, rust_unmap_page(vas[i]), page);
    }
    rust_free_page(page);
    for (int i = 0; i < 16; i++)
        rust_kfree(big[i]);
    down(t);
}

KTEST(boruix, vmm_allocate_never_hands_out_a_mapped_page)
{
    if (!up(t))
        return;
    uint64_t a = rust_vmm_allocate(PG);
    KT_ASSERT(t, a != 0 && a % PG == 0);
    /* First fit: the next range would follow a's guard page. Map that page
     * first; the allocation must step over it. */
    uint64_t page = rust_alloc_page();
    uint64_t next = a + 2 * PG;
    KT_ASSERT_EQ(t, rust_map_page(next, page, RUST_PAGE_KERNEL_RW), 0);
    for (int i = 0; i < 8; i++) {
        uint64_t b = rust_vmm_allocate(4 * PG);
        KT_ASSERT(t, b != 0);
        KT_EXPECT(t, next < b || next >= b + 5 * PG);
        KT_EXPECT_EQ(t, rust_virt_to_phys(b), 0);
    }
    uint64_t m;
    KT_ASSERT_EQ(t, rust_vmm_map_and_allocate(8 * PG, &m), 0);
    KT_EXPECT(t, next < m || next >= m + 9 * PG);
    KT_EXPECT_EQ(t, rust_unmap_page(next), page);
    rust_free_page(page);
    down(t);
}

KTEST(boruix, vmm_allocate_gives_an_unmapped_range_the_caller_maps)
{
    if (!up(t))
        return;
    uint64_t used0, total;
    rust_vmm_get_heap_usage(&used0, &total);
    KT_EXPECT_EQ(t, total, KMM_KVA_DEFAULT_SIZE - FIXED_PART);
    uint64_t va = rust_vmm_allocate(16 * KIB);
    KT_ASSERT(t, va != 0);
    uint64_t used;
    rust_vmm_get_heap_usage(&used, &total);
    KT_EXPECT_EQ(t, used, used0 + 5 * PG); /* four pages and the guard */
    for (uint64_t off = 0; off < 16 * KIB; off += PG)
        KT_EXPECT_EQ(t, rust_virt_to_phys(va + off), 0);
    uint64_t page = rust_alloc_page();
    KT_EXPECT_EQ(t, rust_map_page(va, page, RUST_PAGE_KERNEL_RW), 0);
    *(volatile uint32_t *)(uintptr_t)va = 0x12345678;
    KT_EXPECT_EQ(t, *(uint32_t *)(void *)hhdm(page), 0x12345678);
    KT_EXPECT_EQ(t, rust_unmap_page(va), page);
    rust_free_page(page);
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_vmm_allocate(0), 0);
    EXPECT_REFUSED(t, b, false, "kmm_kva_alloc");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_vmm_allocate(UINT64_C(1) << 40), 0);
    EXPECT_REFUSED(t, b, false, "kmm_kva_alloc");
    down(t);
}

KTEST(boruix, vmm_map_and_allocate_gives_zeroed_writable_memory_as_vmmtest_uses_it)
{
    if (!up(t))
        return;
    uint64_t va = 0;
    KT_ASSERT_EQ(t, rust_vmm_map_and_allocate(4096, &va), 0);
    volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)va;
    KT_EXPECT_EQ(t, p[0] + p[1] + p[1023], 0);
    p[0] = 0x12345678;
    p[1] = 0xABCDEF00;
    p[2] = 0xDEADBEEF;
    p[3] = 0xCAFEBABE;
    KT_EXPECT_EQ(t, p[0], 0x12345678);
    KT_EXPECT_EQ(t, p[3], 0xCAFEBABE);
    bool pr, w, u, x;
    KT_EXPECT_EQ(t, rust_get_page_flags(va, &pr, &w, &u, &x), 0);
    KT_EXPECT(t, pr && w && !u && !x);
    KT_EXPECT(t, kt_write_faults((volatile uint8_t *)(uintptr_t)(va + PG))); /* the guard */
    uint64_t large = 0;
    KT_ASSERT_EQ(t, rust_vmm_map_and_allocate(64 * KIB, &large), 0);
    memset((void *)(uintptr_t)large, 0x33, 64 * KIB);
    /* The library's own areas are not the caller's to unmap or protect. */
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_unmap_page(large), 0);
    EXPECT_REFUSED(t, b, false, "kmm_vm_unmap");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_vmm_map_and_allocate(PG, NULL), -1);
    EXPECT_REFUSED(t, b, true, "out_virt_addr");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_vmm_map_and_allocate(0, &va), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vmalloc");
    b = counts_now();
    uint64_t total;
    rust_vmm_get_heap_usage(NULL, &total);
    EXPECT_REFUSED(t, b, true, "rust_vmm_get_heap_usage");
    down(t);
}

/* --- protection
 * ------------------------------------------------------------------------------------ */

KTEST(boruix, protection_calls_change_one_bit_as_memprottest_expects)
{
    if (!up(t))
        return;
    uint64_t page = rust_alloc_page();
    uint64_t va = window_base() + 16 * MIB; /* PROTTEST_VA's twin, real memory */
    KT_ASSERT_EQ(t, rust_map_page(va, page, PAGE_PRESENT | PAGE_WRITABLE), 0);
    bool p, w, u, x;
    KT_EXPECT_EQ(t, rust_set_page_readonly(va), 0);
    KT_EXPECT_EQ(t, rust_get_page_flags(va, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && !w && !u && x);
    KT_EXPECT(t, kt_write_faults((volatile uint8_t *)(uintptr_t)va));
    KT_EXPECT_EQ(t, rust_set_page_readwrite(va), 0);
    KT_EXPECT_EQ(t, rust_get_page_flags(va, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && w && !u && x);
    KT_EXPECT(t, !kt_write_faults((volatile uint8_t *)(uintptr_t)va));
    KT_EXPECT_EQ(t, rust_set_page_no_execute(va), 0);
    KT_EXPECT_EQ(t, rust_get_page_flags(va, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && w && !u && !x);
    /* The same on Boruix's own address (page tables only, hosted). */
    KT_ASSERT_EQ(t, rust_map_page(PROTTEST_VA, page, PAGE_PRESENT | PAGE_WRITABLE), 0);
    KT_EXPECT_EQ(t, rust_set_page_readonly(PROTTEST_VA), 0);
    KT_EXPECT_EQ(t, rust_get_page_flags(PROTTEST_VA, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && !w);
    KT_EXPECT_EQ(t, rust_unmap_page(PROTTEST_VA), page);
    KT_EXPECT_EQ(t, rust_unmap_page(va), page);
    rust_free_page(page);
    down(t);
}

KTEST(boruix, protection_calls_refuse_unmapped_and_unaligned_pages)
{
    if (!up(t))
        return;
    int (*calls[])(uint64_t) = {rust_set_page_readonly, rust_set_page_readwrite,
                                rust_set_page_no_execute};
    uint64_t page = rust_alloc_page();
    KT_ASSERT_EQ(t, rust_map_page(PGTEST_VA + PG, page, PAGE_PRESENT), 0);
    for (size_t i = 0; i < 3; i++) {
        struct counts b = counts_now();
        KT_EXPECT_EQ(t, calls[i](PGTEST_VA), -1);
        EXPECT_REFUSED(t, b, false, "kmm_vm_protect");
        b = counts_now();
        KT_EXPECT_EQ(t, calls[i](PGTEST_VA + PG + 1), -1);
        EXPECT_REFUSED(t, b, false, "kmm_vm_protect");
    }
    bool p, w, u, x;
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_get_page_flags(PGTEST_VA + PG, &p, NULL, &u, &x), -1);
    EXPECT_REFUSED(t, b, true, "rust_get_page_flags");
    KT_EXPECT_EQ(t, rust_get_page_flags(PGTEST_VA + PG, &p, &w, &u, &x), 0);
    KT_EXPECT(t, p && !w && x); /* untouched by the refusals */
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA + PG), page);
    rust_free_page(page);
    down(t);
}

/* --- statistics
 * ---------------------------------------------------------------------------------------- */

KTEST(boruix, stats_add_up_and_follow_allocations)
{
    if (!up(t))
        return;
    rust_memory_stats_t s0, s1;
    KT_ASSERT_EQ(t, rust_memory_stats(&s0), 0);
    const rust_physical_memory_stats_t *p = &s0.physical;
    KT_EXPECT_EQ(t, p->total_pages, p->allocated_pages + p->free_pages);
    KT_EXPECT_EQ(t, p->total_memory, p->total_pages * PG);
    KT_EXPECT_EQ(t, p->available_memory, p->free_pages * PG);
    KT_EXPECT_EQ(t, p->allocated_memory, p->allocated_pages * PG);
    KT_EXPECT_EQ(t, p->reserved_memory, 16 * MIB); /* the memory kept for the image */
    KT_EXPECT_EQ(t, p->usage_percent, p->allocated_pages * 100 / p->total_pages);
    KT_EXPECT_EQ(t, s0.page_tables.pml4_tables, 1);
    KT_EXPECT_EQ(t, s0.page_tables.pdp_tables, 256); /* the shared kernel half */
    KT_EXPECT_EQ(t, s0.virtual_memory.user_virtual_size, 0);
    uint64_t page = rust_alloc_page();
    void *b = rust_kmalloc(1000);
    KT_ASSERT(t, page && b);
    KT_ASSERT_EQ(t, rust_map_page(PGTEST_VA, page, PAGE_PRESENT), 0);
    KT_ASSERT_EQ(t, rust_memory_stats(&s1), 0);
    KT_EXPECT(t, s1.physical.allocated_pages > s0.physical.allocated_pages);
    KT_EXPECT_EQ(t, s1.virtual_memory.mapped_pages, s0.virtual_memory.mapped_pages + 1);
    KT_EXPECT_EQ(t, s1.virtual_memory.kernel_virtual_size, s1.virtual_memory.mapped_pages * PG);
    KT_EXPECT_EQ(t, s1.page_tables.pt_tables, s0.page_tables.pt_tables + 1);
    KT_EXPECT_EQ(t, s1.page_tables.valid_entries, s0.page_tables.valid_entries + 3);
    KT_EXPECT_EQ(t, s1.virtual_memory.page_table_memory,
                 PG * (s1.page_tables.pml4_tables + s1.page_tables.pdp_tables +
                       s1.page_tables.pd_tables + s1.page_tables.pt_tables));
    KT_EXPECT(t, s1.heap.allocated >= 1000);
    KT_EXPECT_EQ(t, s1.heap.total_size, s1.heap.allocated + s1.heap.free);
    KT_EXPECT(t, s1.heap.peak_usage >= s1.heap.total_size);
    size_t ta, tf, cur, ac, fc;
    rust_heap_stats(&ta, &tf, &cur, &ac, &fc);
    KT_EXPECT_EQ(t, cur, s1.heap.allocated);
    KT_EXPECT_EQ(t, ta, s1.heap.total_allocated);
    KT_EXPECT_EQ(t, ac, fc + 1);
    KT_EXPECT_EQ(t, rust_heap_usage_percent(), s1.heap.allocated * 100 / s1.heap.total_size);
    KT_EXPECT_EQ(t, rust_memory_usage_percent(), s1.physical.usage_percent);
    rust_memory_summary_t su;
    KT_ASSERT_EQ(t, rust_memory_summary(&su), 0);
    KT_EXPECT_EQ(t, su.total_physical_mb, 112);
    KT_EXPECT_EQ(t, su.used_physical_mb, s1.physical.allocated_memory / MIB);
    KT_EXPECT_EQ(t, su.free_physical_mb, s1.physical.available_memory / MIB);
    KT_EXPECT_EQ(t, su.heap_used_kb, s1.heap.allocated / 1024);
    KT_EXPECT_EQ(t, su.page_tables_count, s1.virtual_memory.page_table_memory / PG);
    KT_EXPECT_EQ(t, su.usage_percent, s1.physical.usage_percent);
    rust_memory_report_t r;
    KT_ASSERT_EQ(t, rust_memory_report(&r), 0);
    KT_EXPECT_EQ(t, r.summary.total_physical_mb, 112);
    KT_EXPECT_EQ(t, r.allocation_count, 1);
    KT_EXPECT_EQ(t, r.leak_count, 0);
    KT_EXPECT(t, r.fragmentation_percent <= 100);
    size_t ranges;
    kmm_memory_map(kmm_boruix_instance(), &ranges);
    KT_EXPECT_EQ(t, r.region_count, ranges);
    KT_EXPECT_EQ(t, rust_unmap_page(PGTEST_VA), page);
    rust_free_page(page);
    rust_kfree(b);
    down(t);
}

KTEST(boruix, stats_calls_refuse_null)
{
    if (!up(t))
        return;
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_stats(NULL), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_stats");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_summary(NULL), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_summary");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_report(NULL), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_report");
    size_t x;
    b = counts_now();
    rust_heap_stats(&x, &x, NULL, &x, &x);
    EXPECT_REFUSED(t, b, true, "rust_heap_stats");
    down(t);
}

KTEST(boruix, check_says_healthy_and_finds_a_write_to_a_freed_page)
{
    if (!up(t))
        return;
    KT_EXPECT_EQ(t, rust_memory_check(), 0);
    rust_memory_set_debug_level(2); /* freed pages poisoned */
    uint64_t pa = rust_alloc_page();
    rust_free_page(pa);
    uint8_t *p = hhdm(pa);
    uint8_t old = p[40];
    p[40] = 0x11; /* a use after free */
    KT_EXPECT_EQ(t, rust_memory_check(), 2);
    p[40] = old;
    KT_EXPECT_EQ(t, rust_memory_check(), 0);
    rust_memory_set_debug_level(0);
    down(t);
}

KTEST(boruix, debug_print_writes_the_full_report)
{
    if (!up(t))
        return;
    static struct kt_text out;
    out.len = 0;
    struct kmm_sink sink = {kt_text_write, &out};
    kmm_boruix_set_console(&sink);
    void *b = rust_kmalloc(200);
    rust_memory_debug_print();
    kmm_boruix_set_console(NULL);
    KT_EXPECT(t, out.len > 500);
    KT_EXPECT(t, ktest_contains(out.buf, "usable"));
    KT_EXPECT(t, ktest_contains(out.buf, "DMA32"));
    rust_kfree(b);
    down(t);
}

/* --- debug levels
 * ----------------------------------------------------------------------------------------- */

KTEST(boruix, debug_levels_switch_the_heaps_modes)
{
    if (!up(t))
        return;
    struct kmm *k = kmm_boruix_instance();
    struct kmm_heap_debug_stats d;
    static const unsigned want[] = {0, KMM_HEAP_DEBUG_EVENTS,
                                    KMM_HEAP_DEBUG_EVENTS | KMM_HEAP_DEBUG_POISON |
                                        KMM_HEAP_DEBUG_QUARANTINE,
                                    KMM_HEAP_DEBUG_ALL};
    /* Level 3 first, while the size classes are empty: tracking for all. */
    for (int level = 3; level >= 0; level--) {
        rust_memory_set_debug_level((uint32_t)level);
        kmm_heap_debug_stats(k, &d);
        KT_EXPECT_EQ(t, d.flags, want[level]);
        KT_EXPECT_EQ(t, kmm_page_debug(k, 0), level >= 2 ? KMM_PAGE_DEBUG_POISON : 0);
        rust_memory_set_debug_level((uint32_t)level); /* kmm_page_debug changed it back */
        /* From level 1 the library's ring records the page allocator too. */
        struct kmm_events_stats es0, es1;
        kmm_events_stats(k, &es0);
        uint64_t pa = rust_alloc_page();
        KT_EXPECT(t, pa != 0);
        rust_free_page(pa);
        kmm_events_stats(k, &es1);
        KT_EXPECT_EQ(t, es1.recorded - es0.recorded, (uint64_t)(level ? 2 : 0));
        if (level == 3) {
            void *a = rust_kmalloc(48), *b = rust_kmalloc(48);
            rust_memory_report_t r;
            rust_memory_report(&r);
            KT_EXPECT_EQ(t, r.leak_count, 2);
            rust_kfree(a);
            rust_kfree(b);
            rust_memory_report(&r);
            KT_EXPECT_EQ(t, r.leak_count, 0);
        }
        KT_EXPECT_EQ(t, rust_memory_stress_test(300, 2000), 0);
    }
    struct counts b = counts_now();
    rust_memory_set_debug_level(4);
    EXPECT_REFUSED(t, b, true, "level 4");
    kmm_heap_debug_stats(k, &d);
    KT_EXPECT_EQ(t, d.flags, 0);
    down(t);
}

/* --- workloads
 * --------------------------------------------------------------------------------------------- */

KTEST(boruix, stress_test_passes_and_leaves_the_heap_as_it_found_it)
{
    if (!up(t))
        return;
    size_t ta, tf, cur0, cur1, ac0, ac1, fc;
    rust_heap_stats(&ta, &tf, &cur0, &ac0, &fc);
    KT_EXPECT_EQ(t, rust_memory_stress_test(2000, 4096), 0);
    KT_EXPECT_EQ(t, rust_memory_stress_test(200, 1 * MIB), 0);
    rust_heap_stats(&ta, &tf, &cur1, &ac1, &fc);
    KT_EXPECT_EQ(t, cur1, cur0);
    KT_EXPECT(t, ac1 > ac0 + 500);
    /* Sizes beyond the machine: allocations fail, the test still passes. */
    KT_EXPECT_EQ(t, rust_memory_stress_test(50, 512 * MIB), 0);
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_stress_test(0, 64), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_stress_test");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_stress_test(10, 0), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_stress_test");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_stress_test(10, KMM_HEAP_SIZE_MAX + 1), -1);
    EXPECT_REFUSED(t, b, true, "rust_memory_stress_test");
    down(t);
}

KTEST(boruix, stress_test_fails_when_a_block_is_overwritten)
{
    if (!up(t))
        return;
    /* Level 3's red zones: the stress test's own blocks are checked by the
     * heap on free; an overrun found there makes the test fail. The hook:
     * corrupt the heap behind the test's back through a block it cannot
     * see, here one we allocate and overrun before it runs. */
    rust_memory_set_debug_level(3);
    uint8_t *p = rust_kmalloc(40);
    KT_ASSERT(t, p != NULL);
    p[40] = 0xee;                                           /* into the red zone */
    KT_EXPECT_EQ(t, rust_memory_stress_test(100, 256), -1); /* its check sees the damage */
    KT_EXPECT_EQ(t, rust_memory_check(), 2);
    p[40] = KMM_HEAP_REDZONE_BYTE;
    rust_kfree(p);
    KT_EXPECT_EQ(t, rust_memory_check(), 0);
    rust_memory_set_debug_level(0);
    down(t);
}

KTEST(boruix, benchmark_returns_microseconds_and_frees_everything)
{
    if (!up(t))
        return;
    size_t ta, tf, cur0, cur1, ac0, ac1, fc;
    rust_heap_stats(&ta, &tf, &cur0, &ac0, &fc);
    uint64_t us = rust_memory_benchmark(1000, 64);
    KT_EXPECT(t, us >= 1);
    rust_heap_stats(&ta, &tf, &cur1, &ac1, &fc);
    KT_EXPECT_EQ(t, cur1, cur0);
    KT_EXPECT_EQ(t, ac1, ac0 + 1001); /* the blocks and the table of pointers */
    /* More than the machine holds: 0, everything given back. */
    KT_EXPECT_EQ(t, rust_memory_benchmark(200, 1 * MIB), 0);
    rust_heap_stats(&ta, &tf, &cur1, &ac1, &fc);
    KT_EXPECT_EQ(t, cur1, cur0);
    struct counts b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_benchmark(0, 64), 0);
    EXPECT_REFUSED(t, b, true, "rust_memory_benchmark");
    b = counts_now();
    KT_EXPECT_EQ(t, rust_memory_benchmark(10, 0), 0);
    EXPECT_REFUSED(t, b, true, "rust_memory_benchmark");
    down(t);
}

KTEST(boruix, version_and_features)
{
    KT_EXPECT_STREQ(t, rust_memory_version(), kmm_version());
    KT_EXPECT_EQ(t, rust_memory_features(),
                 RUST_MEMORY_FEATURE_PAGING | RUST_MEMORY_FEATURE_HEAP | RUST_MEMORY_FEATURE_STATS |
                     RUST_MEMORY_FEATURE_DEBUG);
}

KTEST(boruix, the_convenience_macros_are_the_functions)
{
    if (!up(t))
        return;
    void *p = RUST_KMALLOC(32);
    KT_ASSERT(t, p != NULL);
    RUST_KFREE(p);
    uint64_t pa = RUST_ALLOC_PAGE();
    KT_ASSERT(t, pa != 0);
    KT_EXPECT_EQ(t, RUST_MAP_PAGE(PGTEST_VA, pa, RUST_PAGE_KERNEL_RW), 0);
    KT_EXPECT_EQ(t, RUST_VIRT_TO_PHYS(PGTEST_VA), pa);
    KT_EXPECT_EQ(t, RUST_UNMAP_PAGE(PGTEST_VA), pa);
    RUST_FREE_PAGE(pa);
    KT_EXPECT_EQ(t, PML4_INDEX(KERNEL_HEAP_START), 511);
    KT_EXPECT_EQ(t, PDP_INDEX(KERNEL_HEAP_START), 510);
    KT_EXPECT_EQ(t, PD_INDEX(KERNEL_HEAP_START), 128);
    KT_EXPECT_EQ(t, PT_INDEX(KERNEL_HEAP_START + 5 * PG), 5);
    KT_EXPECT_EQ(t, (KERNEL_HEAP_START + 0x123) & PAGE_MASK, KERNEL_HEAP_START);
    down(t);
}

/* --- the drop-in's Limine intersection (compat/limine.c) ------------------------------------ */

KTEST(boruix, the_limine_map_keeps_init_to_usable_ram_the_machine_has)
{
    /* A 512 MiB machine as Limine describes it: the kernel image at 2 MiB,
     * its page tables and stack in bootloader-reclaimable memory at 64 MiB,
     * a framebuffer beyond RAM, nothing above 512 MiB. */
    static const struct kmm_limine_memmap_entry e[] = {
        {0x1000, 0x9e000, KMM_LIMINE_MEMMAP_USABLE},
        {0x100000, 0x100000, KMM_LIMINE_MEMMAP_USABLE},
        {2 * MIB, 2 * MIB, KMM_LIMINE_MEMMAP_EXECUTABLE_AND_MODULES},
        {4 * MIB, 60 * MIB, KMM_LIMINE_MEMMAP_USABLE},
        {64 * MIB, 1 * MIB, KMM_LIMINE_MEMMAP_BOOTLOADER_RECLAIMABLE},
        {65 * MIB, 447 * MIB, KMM_LIMINE_MEMMAP_USABLE},
        {0xfd000000, 8 * MIB, KMM_LIMINE_MEMMAP_FRAMEBUFFER},
    };
    const struct kmm_limine_memmap_entry *entries[7];
    for (size_t i = 0; i < 7; i++)
        entries[i] = &e[i];
    /* Boruix's hard-coded region: 16 MiB + 1008 MiB. */
    struct kmm_region in[64] = {{16 * MIB, 1008 * MIB, KMM_MEM_USABLE}};
    size_t n = 1;
    KT_ASSERT_EQ(t, kmm_boruix_limine_reserved(entries, 7, 1024 * MIB, in, 64, &n), KMM_OK);
    struct kmm_region out[128];
    size_t ranges = kmm_memmap_resolve(in, n, out, 128);
    uint64_t usable = 0;
    bool only_inside = true;
    for (size_t i = 0; i < ranges; i++) {
        if (out[i].type != KMM_MEM_USABLE)
            continue;
        usable += out[i].length;
        bool ok = (out[i].base >= 16 * MIB && out[i].base + out[i].length <= 64 * MIB) ||
                  (out[i].base >= 65 * MIB && out[i].base + out[i].length <= 512 * MIB);
        only_inside = only_inside && ok;
    }
    KT_EXPECT(t, only_inside);
    KT_EXPECT_EQ(t, usable, (64 - 16) * MIB + (512 - 65) * MIB);
    /* No room for the ranges: nothing appended. */
    size_t m = 1;
    KT_EXPECT_EQ(t, kmm_boruix_limine_reserved(entries, 7, 1024 * MIB, in, 2, &m), KMM_ENOMEM);
    KT_EXPECT_EQ(t, m, 1);
    /* A NULL entry is refused. */
    entries[3] = NULL;
    m = 1;
    KT_EXPECT_EQ(t, kmm_boruix_limine_reserved(entries, 7, 1024 * MIB, in, 64, &m), KMM_EINVAL);
}

/* --- an adopted instance (kmm_boruix_adopt: the demo kernel's way) -------------------------- */

/* A caller's own machine and instance, as the demo kernel and kmm-shell
 * have them: the kernel virtual areas in the mirror window past its fixed
 * part when fixed_free, over the whole mirror window otherwise. */
struct own {
    struct hosted_machine *m;
    struct kmm *k;
    struct kmm_boruix_world w;
};

static bool own_up(struct ktest *t, struct own *o, bool fixed_free)
{
    if (kmm_boruix_instance())
        kmm_boruix_fini();
    static const struct kmm_region map[] = {{MIB, 127 * MIB, KMM_MEM_USABLE}};
    o->m = hosted_machine_from_map(map, 1, KMM_KVA_DEFAULT_SIZE);
    if (!o->m) {
        ktest_fail_at(t, __FILE__, __LINE__, "no machine");
        return false;
    }
    uint64_t base, size;
    hosted_machine_mirror_window(o->m, &base, &size);
    uint64_t skip = fixed_free ? FIXED_PART : 0;
    struct kmm_config cfg = {.port = hosted_machine_port(o->m),
                             .regions = map,
                             .region_count = 1,
                             .cpu_count = 1,
                             .kva_base = base + skip,
                             .kva_size = size - skip};
    o->k = NULL;
    if (kmm_init(&cfg, &o->k) != KMM_OK) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init failed");
        hosted_machine_destroy(o->m);
        return false;
    }
    o->w = (struct kmm_boruix_world){.heap_base = base, .heap_size = size};
    return true;
}

static void own_down(struct ktest *t, struct own *o)
{
    KT_EXPECT_HEALTHY(t, o->k);
    kmm_fini(o->k);
    hosted_machine_destroy(o->m);
}

KTEST(boruix, adopt_makes_a_callers_instance_boruixs_and_fini_only_lets_it_go)
{
    struct own o;
    if (!own_up(t, &o, true))
        return;
    KT_ASSERT_EQ(t, kmm_boruix_adopt(o.k, &o.w), KMM_OK);
    KT_EXPECT(t, kmm_boruix_instance() == o.k);
    uint64_t base, size;
    kmm_boruix_heap_window(&base, &size);
    KT_EXPECT_EQ(t, base, o.w.heap_base);
    KT_EXPECT_EQ(t, size, o.w.heap_size);
    /* Boruix's calls act on the adopted instance. */
    struct kmm_heap_stats h0, h1;
    kmm_heap_stats(o.k, &h0);
    void *p = rust_kmalloc(100);
    KT_ASSERT(t, p != NULL);
    kmm_heap_stats(o.k, &h1);
    KT_EXPECT_EQ(t, h1.allocs, h0.allocs + 1);
    /* pgtest's page at the window's first address, written through it. */
    uint64_t pa = rust_alloc_page();
    KT_ASSERT(t, pa != 0);
    KT_EXPECT_EQ(t, rust_map_page(base, pa, RUST_PAGE_KERNEL_RW), 0);
    struct kmm_vm_translation tr;
    KT_EXPECT_EQ(t, kmm_vm_translate(kmm_kernel_aspace(o.k), base, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa);
    *(volatile uint32_t *)(uintptr_t)base = 0xDEADBEEFu;
    KT_EXPECT_EQ(t, *(volatile uint32_t *)(uintptr_t)(kmm_port_direct_map(kmm_port_of(o.k)) + pa),
                 0xDEADBEEFu);
    KT_EXPECT_EQ(t, rust_unmap_page(base), pa);
    rust_free_page(pa);
    /* It is not Boruix's to make again. */
    uint64_t before = kmm_boruix_misuse();
    KT_EXPECT_EQ(t, rust_memory_init(report_map, 1), -1);
    KT_EXPECT_EQ(t, kmm_boruix_misuse(), before + 1);
    /* Letting go keeps the instance and what it handed out. */
    KT_EXPECT_EQ(t, kmm_boruix_fini(), KMM_OK);
    KT_EXPECT(t, kmm_boruix_instance() == NULL);
    kmm_boruix_heap_window(&base, &size);
    KT_EXPECT_EQ(t, base, 0);
    KT_EXPECT_EQ(t, kmm_free(o.k, p), KMM_OK);
    own_down(t, &o);
}

KTEST(boruix, adopt_refuses_null_a_second_instance_and_a_window_over_the_fixed_part)
{
    struct own o;
    if (!own_up(t, &o, false))
        return;
    uint64_t before = kmm_boruix_misuse();
    KT_EXPECT_EQ(t, kmm_boruix_adopt(NULL, &o.w), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_boruix_adopt(o.k, NULL), KMM_EINVAL);
    /* The instance's areas cover the fixed part: Boruix's fixed pages could
     * land on them. */
    KT_EXPECT_EQ(t, kmm_boruix_adopt(o.k, &o.w), KMM_EINVAL);
    /* Another port than the instance's. */
    static const struct kmm_region small[] = {{MIB, 15 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *other = hosted_machine_from_map(small, 1, 0);
    KT_ASSERT(t, other != NULL);
    struct kmm_boruix_world w = o.w;
    w.heap_base = 0xFFFFFFFF90000000ull;
    w.port = hosted_machine_port(other);
    KT_EXPECT_EQ(t, kmm_boruix_adopt(o.k, &w), KMM_EINVAL);
    hosted_machine_destroy(other);
    KT_EXPECT_EQ(t, kmm_boruix_misuse(), before + 4);
    KT_EXPECT(t, kmm_boruix_instance() == NULL);
    /* A window elsewhere is fine; a second adopt, and an adopt over an
     * instance rust_memory_init made, are not. */
    w.port = NULL;
    KT_ASSERT_EQ(t, kmm_boruix_adopt(o.k, &w), KMM_OK);
    KT_EXPECT_EQ(t, kmm_boruix_adopt(o.k, &w), KMM_ESTATE);
    KT_EXPECT_EQ(t, kmm_boruix_fini(), KMM_OK);
    KT_ASSERT_EQ(t, rust_memory_init(report_map, 1), 0);
    KT_EXPECT_EQ(t, kmm_boruix_adopt(o.k, &w), KMM_ESTATE);
    KT_EXPECT_EQ(t, kmm_boruix_misuse(), 1); /* counted since rust_memory_init */
    down(t);
    own_down(t, &o);
}

/* --- refusals name Boruix's code ------------------------------------------------------------ */

/* The caller address the last error line names ("..., caller 0x..."), or 0. */
static uintptr_t logged_caller(void)
{
    const char *last = hosted_log_last_error(kmm_boruix_hosted_machine());
    const char *at = NULL;
    for (const char *s = strstr(last, "caller 0x"); s; s = strstr(s + 1, "caller 0x"))
        at = s;
    return at ? (uintptr_t)strtoull(at + strlen("caller "), NULL, 16) : 0;
}

/*
 * The sites: each makes one Boruix call from code of its own. noinline, and
 * the barrier after the call keeps it from being a tail call (whose return
 * address would be the site's caller), so the call returns inside the site:
 * within SITE_MAX_BYTES of its start. The interface is in another object
 * (compat/boruix.c in libkmm.a), far from here.
 */
#define SITE_MAX_BYTES 256u
#define SITE_END()     __asm__ volatile("" : : : "memory")
/* A site, name(params), that returns what call (of type type) returns. */
#define SITE(type, name, params, call)                                                             \
    static __attribute__((noinline)) type name params                                              \
    {                                                                                              \
        type r = call;                                                                             \
        SITE_END();                                                                                \
        return r;                                                                                  \
    }
/* The same for a call with no result (the sites return 0). */
#define VOID_SITE(name, params, call)                                                              \
    static __attribute__((noinline)) int name params                                               \
    {                                                                                              \
        call;                                                                                      \
        SITE_END();                                                                                \
        return 0;                                                                                  \
    }

VOID_SITE(kfree_site, (void *p), rust_kfree(p))
VOID_SITE(free_page_site, (uint64_t pa), rust_free_page(pa))
VOID_SITE(free_pages_site, (uint64_t pa, size_t count), rust_free_pages(pa, count))
SITE(int, map_page_site, (uint64_t va, uint64_t pa, uint64_t flags), rust_map_page(va, pa, flags))
SITE(uint64_t, unmap_page_site, (uint64_t va), rust_unmap_page(va))
SITE(uint64_t, virt_to_phys_site, (uint64_t va), rust_virt_to_phys(va))
SITE(int, set_page_readonly_site, (uint64_t va), rust_set_page_readonly(va))
SITE(uint64_t, vmm_allocate_site, (uint64_t size), rust_vmm_allocate(size))
SITE(int, vmm_map_and_allocate_site, (uint64_t size, uint64_t *va),
     rust_vmm_map_and_allocate(size, va))

/* Expects the last error line to name a return address inside site. */
static void expect_site_at(struct ktest *t, const void *site, const char *file, int line)
{
    uintptr_t caller = logged_caller(), start = (uintptr_t)site;
    if (caller <= start || caller - start > SITE_MAX_BYTES)
        ktest_fail_at(t, file, line, "logged caller %#lx, want one in the site at %#lx: \"%s\"",
                      (unsigned long)caller, (unsigned long)start,
                      hosted_log_last_error(kmm_boruix_hosted_machine()));
}
#define EXPECT_SITE(t, site)                                                                       \
    expect_site_at((t), (const void *)(uintptr_t)(site), __FILE__, __LINE__)

KTEST(boruix, a_refusal_by_the_library_names_boruixs_caller_not_the_interface)
{
    if (!up(t))
        return;
    void *p = rust_kmalloc(64);
    uint64_t pa = rust_alloc_page(), run = rust_alloc_pages(3);
    KT_ASSERT(t, p && pa && run);
    rust_kfree(p);
    struct counts b = counts_now();
    kfree_site(p);
    EXPECT_REFUSED(t, b, false, "free");
    EXPECT_SITE(t, kfree_site);
    b = counts_now();
    free_page_site(pa + 8);
    EXPECT_REFUSED(t, b, false, "kmm_page_free");
    EXPECT_SITE(t, free_page_site);
    b = counts_now();
    free_pages_site(run, 2);
    EXPECT_REFUSED(t, b, false, "kmm_run_free");
    EXPECT_SITE(t, free_pages_site);
    b = counts_now();
    KT_EXPECT_EQ(t, map_page_site(PGTEST_VA + 1, pa, PAGE_PRESENT), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vm_map");
    EXPECT_SITE(t, map_page_site);
    b = counts_now();
    KT_EXPECT_EQ(t, unmap_page_site(PGTEST_VA), 0);
    EXPECT_REFUSED(t, b, false, "kmm_vm_unmap");
    EXPECT_SITE(t, unmap_page_site);
    b = counts_now();
    KT_EXPECT_EQ(t, virt_to_phys_site(UINT64_C(0x0000800000000000)), 0); /* not canonical */
    EXPECT_REFUSED(t, b, false, "kmm_vm_translate");
    EXPECT_SITE(t, virt_to_phys_site);
    b = counts_now();
    KT_EXPECT_EQ(t, set_page_readonly_site(PGTEST_VA), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vm_protect");
    EXPECT_SITE(t, set_page_readonly_site);
    b = counts_now();
    KT_EXPECT_EQ(t, vmm_allocate_site(0), 0);
    EXPECT_REFUSED(t, b, false, "kmm_kva_alloc");
    EXPECT_SITE(t, vmm_allocate_site);
    uint64_t va = 0;
    b = counts_now();
    KT_EXPECT_EQ(t, vmm_map_and_allocate_site(0, &va), -1);
    EXPECT_REFUSED(t, b, false, "kmm_vmalloc");
    EXPECT_SITE(t, vmm_map_and_allocate_site);
    /* A refusal of the interface's own names the same site. */
    b = counts_now();
    KT_EXPECT_EQ(t, map_page_site(PGTEST_VA, pa, PAGE_PRESENT | (UINT64_C(1) << 7)), -1);
    EXPECT_REFUSED(t, b, true, "rust_map_page");
    EXPECT_SITE(t, map_page_site);
    rust_free_page(pa);
    rust_free_pages(run, 3);
    down(t);
}
