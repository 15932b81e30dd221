/*
 * test_vm.c - address spaces and range operations: what gets mapped, what
 * every bad input does, tables created and freed, ownership, sharing of the
 * kernel half. Every test runs with 4 and with 5 paging levels.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "ktest_levels.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#include "vmm/seam.h" /* the query's step count */

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  UINT64_C(1024)
#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)
#define HEAP UINT64_C(0xffffffff90000000) /* the Boruix heap window */
#define USER UINT64_C(0x0000000000400000)

static const struct kmm_region map32[] = {
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
    {32 * MIB, 1 * MIB, KMM_MEM_RESERVED}, /* device memory, say */
};

struct fixture {
    struct kt_machine *m;
    struct kmm *k;
    struct kmm_aspace *ks;
};

static bool setup_levels(struct ktest *t, struct fixture *f, unsigned levels)
{
    f->m = kt_machine_create(t, map32, N(map32));
    if (!f->m)
        return false;
    struct kmm_config cfg = {.port = kt_machine_port(f->m),
                             .regions = map32,
                             .region_count = N(map32),
                             .cpu_count = 1,
                             .paging_levels = levels};
    if (kmm_init(&cfg, &f->k) != KMM_OK) {
        kt_machine_destroy(f->m);
        return false;
    }
    f->ks = kmm_kernel_aspace(f->k);
    return true;
}

static bool setup(struct ktest *t, struct fixture *f)
{
    return setup_levels(t, f, 4);
}

static void teardown(struct fixture *f)
{
    kmm_fini(f->k);
    kt_machine_destroy(f->m);
}

/* The first address above the lower half: not canonical. */
static uint64_t noncanonical(unsigned levels)
{
    return levels == 5 ? UINT64_C(0x0100000000000000) : UINT64_C(0x0000800000000000);
}

static uint64_t free_pages(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    return s.free_pages;
}

static uint64_t tables(struct kmm_aspace *as)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(as, &s);
    return s.table_bytes / PAGE;
}

KTEST_LEVELS(vm, the_kernel_space_starts_with_its_shared_kernel_half)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_vm_stats s;
    kmm_vm_stats(f.ks, &s);
    for (unsigned l = 1; l <= 5; l++) /* the root, and the kernel half's tables below it */
        KT_EXPECT_EQ(t, s.tables[l], l == levels ? 1 : l == levels - 1 ? 256 : 0);
    KT_EXPECT_EQ(t, s.table_bytes, 257 * PAGE);
    KT_EXPECT_EQ(t, s.mapped_pages + s.mapped_2m + s.mapped_1g, 0);
    KT_EXPECT(t, kmm_aspace_root(f.ks) != 0);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, a_mapped_page_translates_and_its_tables_go_when_it_is_unmapped)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t base_tables = tables(f.ks), before = free_pages(f.k);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ | KMM_PROT_WRITE), KMM_OK);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP + 0x123, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa + 0x123);
    KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_EXPECT_EQ(t, tr.page_size, PAGE);
    KT_EXPECT(t, !tr.owned);
    KT_EXPECT_EQ(t, tables(f.ks), base_tables + levels - 2); /* a PD and a PT (and a PDPT) */
    KT_EXPECT_HEALTHY(t, f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_ENOENT);
    KT_EXPECT_EQ(t, tables(f.ks), base_tables);
    /* Not owned: the frame is still the caller's. */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    kmm_page_drain_cpu(f.k);
    KT_EXPECT_EQ(t, free_pages(f.k), before);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, a_range_across_table_boundaries_maps_every_page_in_order)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t va = HEAP + 2 * MIB - 8 * PAGE, size = 2 * MIB + 16 * PAGE; /* spans 3 PTs */
    uint64_t pa = kmm_pages_alloc(f.k, 1024, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, va, pa, size, KMM_PROT_READ), KMM_OK);
    uint64_t full = tables(f.ks); /* three page tables and their directories */
    bool ok = true;
    for (uint64_t off = 0; off < size; off += PAGE) {
        struct kmm_vm_translation tr;
        ok &= kmm_vm_translate(f.ks, va + off, &tr) == KMM_OK && tr.pa == pa + off;
    }
    KT_EXPECT(t, ok);
    struct kmm_vm_run run;
    KT_ASSERT_EQ(t, kmm_vm_query(f.ks, va, va + 4 * MIB, &run), KMM_OK);
    KT_EXPECT(t, run.mapped);
    KT_EXPECT_EQ(t, run.size, size);
    KT_EXPECT_EQ(t, run.pa, pa);
    KT_ASSERT_EQ(t, kmm_vm_query(f.ks, va + size, va + 4 * MIB, &run), KMM_OK);
    KT_EXPECT(t, !run.mapped);
    KT_EXPECT_EQ(t, run.size, 4 * MIB - size);
    /* A hole in the middle splits the run. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, va + 100 * PAGE, PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_query(f.ks, va, va + size, &run), KMM_OK);
    KT_EXPECT_EQ(t, run.size, 100 * PAGE);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, va, 100 * PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, va + 101 * PAGE, size - 101 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, tables(f.ks), 257);
    /* A page in the middle table makes a map of the range, plain or
     * demand-zero, busy (found in the walk of that table), changing
     * nothing; a demand-zero map of all of it fills every table. */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, va + 300 * PAGE, pa, PAGE, KMM_PROT_READ), KMM_OK);
    uint64_t t1 = tables(f.ks);
    KT_EXPECT_EQ(t, kmm_vm_map(f.ks, va, pa, size, KMM_PROT_READ), KMM_EBUSY);
    KT_EXPECT_EQ(t, kmm_vm_map(f.ks, va, 0, size, KMM_PROT_READ | KMM_MAP_DEMAND), KMM_EBUSY);
    KT_EXPECT_EQ(t, tables(f.ks), t1);
    struct kmm_vm_fault_stats fs;
    KT_ASSERT_EQ(t, kmm_vm_fault_stats(f.ks, &fs), KMM_OK);
    KT_EXPECT_EQ(t, fs.demand_pages, 0);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, va + 300 * PAGE, PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, va, 0, size, KMM_PROT_READ | KMM_MAP_DEMAND), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_fault_stats(f.ks, &fs), KMM_OK);
    KT_EXPECT_EQ(t, fs.demand_pages, size / PAGE);
    KT_EXPECT_EQ(t, tables(f.ks), full);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, va, size), KMM_OK);
    KT_EXPECT_EQ(t, tables(f.ks), 257);
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 1024), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, protect_changes_rights_and_keeps_frames)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t pa = kmm_pages_alloc(f.k, 4, 0);
    unsigned rw = KMM_PROT_READ | KMM_PROT_WRITE;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, 4 * PAGE, rw | KMM_PROT_EXEC), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP + PAGE, 2 * PAGE, KMM_PROT_READ), KMM_OK);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP + PAGE, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ);
    KT_EXPECT_EQ(t, tr.pa, pa + PAGE);
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, rw | KMM_PROT_EXEC);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP, 4 * PAGE, rw | KMM_PROT_GLOBAL), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP + 3 * PAGE, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, rw | KMM_PROT_GLOBAL);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, 4 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 4), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, an_owned_mapping_keeps_its_frame_until_unmapped)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK); /* our reference */
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_OK);
    KT_EXPECT(t, tr.owned);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_OK); /* still allocated: the mapping holds it */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK); /* drops the last reference */
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_ESTATE);      /* free now */
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* Misuse counted of one kind. */
static uint64_t page_misuse(struct kmm *k, unsigned kind)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    return s.misuse[kind];
}

KTEST_LEVELS(vm, a_frame_only_owned_mappings_hold_cannot_be_freed_under_them)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    unsigned owned = KMM_PROT_READ | KMM_MAP_OWNED;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, owned), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP + PAGE, pa, PAGE, owned), KMM_OK); /* shared */
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);                      /* our reference */
    /* The mappings' references are not the caller's to drop. */
    uint64_t misuse = page_misuse(f.k, KMM_MISUSE_BUSY);
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_EBUSY);
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 1), KMM_EBUSY);
    KT_EXPECT_EQ(t, page_misuse(f.k, KMM_MISUSE_BUSY), misuse + 2);
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR), errors + 2);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_pages_free"));
    KT_EXPECT_HEALTHY(t, f.k);
    /* Still allocated, and never handed out again while mapped. */
    uint64_t other = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, other != pa);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, other, 0), KMM_OK);
    /* A reference the caller takes is the caller's again. */
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    /* The first unmap leaves the frame to the other mapping, the last frees it. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_EBUSY);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP + PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_ESTATE); /* free now */
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, a_runs_first_page_is_not_mapped_owned)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    /* Its descriptor's spare field holds the run's tag, so an owned
     * mapping, which needs it for its count, is refused. */
    uint64_t run = kmm_run_alloc(f.k, 3, 0, 0, 0);
    KT_ASSERT(t, run != 0);
    uint64_t single = run + 2 * PAGE; /* the run's last block: an order-0 page */
    KT_EXPECT_EQ(t, kmm_vm_map(f.ks, HEAP, run, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_ESTATE);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, single, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, run, 3), KMM_EBUSY); /* mapped: not the run's alone */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, run, 3), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, replace_swaps_frames_and_releases_owned_ones)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t a = kmm_page_alloc(f.k, 0, 0), b = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, a, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_map(f.ks, HEAP, b, PAGE, KMM_PROT_READ), KMM_EBUSY);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, b, PAGE, KMM_PROT_READ | KMM_MAP_REPLACE), KMM_OK);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, b);
    KT_EXPECT(t, !tr.owned);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, a), KMM_ESTATE); /* a went back */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, b, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* One bad call: the error, one log line, nothing changed, check clean. */
static void expect_rejected(struct ktest *t, struct fixture *f, int got, int want, const char *what,
                            uint64_t tables_before, unsigned long errors, uint64_t misuse_before)
{
    if (got != want)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: %s, want %s", what, kmm_strerror(got),
                      kmm_strerror(want));
    if (kt_machine_log_count(f->m, KMM_LOG_ERR) != errors + 1)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: %lu error lines", what,
                      kt_machine_log_count(f->m, KMM_LOG_ERR) - errors);
    if (tables(f->ks) != tables_before)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: tables changed", what);
    struct kmm_vm_stats vs;
    kmm_vm_stats(f->ks, &vs);
    if (vs.misuse != misuse_before + 1)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: misuse counted %llu times", what,
                      (unsigned long long)(vs.misuse - misuse_before));
    struct kmm_check_result r;
    if (kmm_check(f->k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, __LINE__, "%s: kmm_check: %s", what, r.first);
}

/* Runs call (a bad one) on fixture f and checks it with expect_rejected. */
#define REJECT(call, want, what)                                                                   \
    do {                                                                                           \
        uint64_t tb_ = tables(f.ks);                                                               \
        unsigned long e_ = kt_machine_log_count(f.m, KMM_LOG_ERR);                                 \
        struct kmm_vm_stats vs_;                                                                   \
        kmm_vm_stats(f.ks, &vs_);                                                                  \
        int got_ = (call);                                                                         \
        expect_rejected(t, &f, got_, (want), (what), tb_, e_, vs_.misuse);                         \
    } while (0)

KTEST_LEVELS(vm, every_bad_input_is_rejected_and_changes_nothing)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0), other = kmm_page_alloc(f.k, 0, 0);
    uint64_t freed = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, freed, 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ), KMM_OK);
    unsigned r = KMM_PROT_READ;
    REJECT(kmm_vm_map(f.ks, HEAP + 1, other, PAGE, r), KMM_EINVAL, "unaligned va");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, other + 8, PAGE, r), KMM_EINVAL, "unaligned pa");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, other, 100, r), KMM_EINVAL, "unaligned size");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, other, 0, r), KMM_EINVAL, "size 0");
    REJECT(kmm_vm_map(f.ks, noncanonical(levels), other, PAGE, r), KMM_EINVAL, "non-canonical");
    REJECT(kmm_vm_map(f.ks, UINT64_C(0xfffffffffffff000), other, 2 * PAGE, r), KMM_EINVAL, "wraps");
    REJECT(kmm_vm_map(f.ks, noncanonical(levels) - PAGE, other, 2 * PAGE, r), KMM_EINVAL,
           "crosses the halves");
    REJECT(kmm_vm_map(us, HEAP + PAGE, other, PAGE, r), KMM_EINVAL, "user space, kernel half");
    REJECT(kmm_vm_map(us, USER, other, PAGE, r | KMM_PROT_GLOBAL), KMM_EINVAL,
           "global in a user space");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, other, PAGE, r | KMM_PROT_USER), KMM_EINVAL,
           "user access in the kernel half");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, other, PAGE, r | 0x8000), KMM_EINVAL, "unknown flag");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, 32 * MIB, PAGE, r), KMM_ERANGE, "reserved (device)");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, 64 * MIB, PAGE, r), KMM_ERANGE, "beyond RAM");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, 0, PAGE, r), KMM_ERANGE, "page 0 (a hole)");
    REJECT(kmm_vm_map(f.ks, HEAP + PAGE, freed, PAGE, r | KMM_MAP_OWNED), KMM_ESTATE,
           "owned frame not allocated");
    REJECT(kmm_vm_map(f.ks, HEAP, other, PAGE, r), KMM_EBUSY, "already mapped");
    REJECT(kmm_vm_map(f.ks, HEAP - PAGE, other, 2 * PAGE, r), KMM_EBUSY,
           "range covering a mapping");
    REJECT(kmm_vm_unmap(f.ks, HEAP, 2 * PAGE), KMM_ENOENT, "unmap beyond the mapping");
    REJECT(kmm_vm_unmap(f.ks, HEAP + 3, PAGE), KMM_EINVAL, "unmap unaligned");
    REJECT(kmm_vm_protect(f.ks, HEAP + PAGE, PAGE, r), KMM_ENOENT, "protect unmapped");
    REJECT(kmm_vm_protect(f.ks, HEAP, PAGE, r | KMM_PROT_USER), KMM_EINVAL,
           "protect to user in the kernel half");
    struct kmm_vm_translation tr;
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, noncanonical(levels), &tr), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, f.ks), KMM_EINVAL); /* the kernel space stays */
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, other, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, a_gather_begun_on_another_space_or_no_gather_is_refused)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    unsigned r = KMM_PROT_READ, rw = KMM_PROT_READ | KMM_PROT_WRITE;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, rw), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, pa, PAGE, rw | KMM_PROT_USER), KMM_OK);
    /* A gather names the space whose root its shootdown goes to: one begun
     * on us must not collect the kernel space's invalidations. */
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, us);
    struct kmm_misuse_stats ms0, ms1;
    kmm_misuse_stats(f.k, &ms0);
    REJECT(kmm_vm_unmap_g(f.ks, HEAP, PAGE, &g), KMM_EINVAL, "unmap with another space's gather");
    kmm_misuse_stats(f.k, &ms1);
    KT_EXPECT_EQ(t, ms1.count[KMM_LAYER_VM][KMM_MISUSE_BAD_HANDLE],
                 ms0.count[KMM_LAYER_VM][KMM_MISUSE_BAD_HANDLE] + 1);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_vm_unmap"));
    REJECT(kmm_vm_protect_g(f.ks, HEAP, PAGE, r, &g), KMM_EINVAL,
           "protect with another space's gather");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_vm_protect"));
    REJECT(kmm_vm_unmap_g(f.ks, HEAP, PAGE, NULL), KMM_EINVAL, "unmap without a gather");
    REJECT(kmm_vm_protect_g(f.ks, HEAP, PAGE, r, NULL), KMM_EINVAL, "protect without a gather");
    kmm_tlb_finish(&g); /* holds nothing */
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, rw); /* untouched */
    /* The gather serves its own space. */
    KT_EXPECT_EQ(t, kmm_vm_protect_g(us, USER, PAGE, r | KMM_PROT_USER, &g), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap_g(us, USER, PAGE, &g), KMM_OK);
    kmm_tlb_finish(&g);
    KT_EXPECT_EQ(t, kmm_vm_translate(us, USER, &tr), KMM_ENOENT);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* The first address of the kernel half. */
static uint64_t kernel_half(unsigned levels)
{
    return levels == 5 ? UINT64_C(0xff00000000000000) : UINT64_C(0xffff800000000000);
}

KTEST_LEVELS(vm, a_query_that_leaves_its_half_is_refused)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    /* A kernel page whose table indexes match the first non-canonical
     * addresses above the lower half: a walk that strays there finds it. */
    uint64_t pa = kmm_page_alloc(f.k, 0, 0), kpage = kernel_half(levels) + MIB;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, kpage, pa, PAGE, KMM_PROT_READ), KMM_OK);
    uint64_t lower_end = noncanonical(levels);
    struct kmm_vm_run run;
    REJECT(kmm_vm_query(us, lower_end - 16 * PAGE, kpage + MIB, &run), KMM_EINVAL,
           "query from the lower half into the kernel half");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_vm_query"));
    REJECT(kmm_vm_query(us, UINT64_C(0x7fff00000000), UINT64_MAX, &run), KMM_EINVAL,
           "query from the lower half to the top");
    REJECT(kmm_vm_query(f.ks, lower_end - PAGE, kernel_half(levels) + PAGE, &run), KMM_EINVAL,
           "kernel space, across the hole");
    /* Each half up to its very end is fine. */
    KT_ASSERT_EQ(t, kmm_vm_query(us, lower_end - 16 * PAGE, lower_end, &run), KMM_OK);
    KT_EXPECT(t, !run.mapped);
    KT_EXPECT_EQ(t, run.size, 16 * PAGE);
    KT_ASSERT_EQ(t, kmm_vm_query(us, kernel_half(levels), UINT64_MAX, &run), KMM_OK);
    KT_EXPECT(t, !run.mapped);
    KT_EXPECT_EQ(t, run.size, MIB);
    KT_ASSERT_EQ(t, kmm_vm_query(us, kpage + PAGE, UINT64_MAX, &run), KMM_OK);
    KT_EXPECT(t, !run.mapped);
    KT_EXPECT_EQ(t, run.size, UINT64_MAX - (kpage + PAGE));
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, kpage, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* kmm/vm.h: a query over a whole empty half takes at most this many
 * steps (one per empty shared table, never one per entry or page). */
#define QUERY_EMPTY_HALF_STEPS 512

KTEST_LEVELS(vm, a_query_over_an_empty_kernel_half_takes_one_step_per_shared_table)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    uint64_t half = kernel_half(levels), steps = 0;
    struct kmm_vm_run run;
    /* The kernel half through the kernel space and through a user space
     * (the same shared tables, all empty). */
    KT_ASSERT_EQ(t, vmm_query_counted(f.ks, half, UINT64_MAX, &run, &steps), KMM_OK);
    KT_EXPECT(t, !run.mapped && run.size == UINT64_MAX - half);
    KT_EXPECT(t, steps > 0 && steps <= QUERY_EMPTY_HALF_STEPS);
    KT_ASSERT_EQ(t, vmm_query_counted(us, half, UINT64_MAX, &run, &steps), KMM_OK);
    KT_EXPECT(t, !run.mapped && run.size == UINT64_MAX - half);
    KT_EXPECT(t, steps > 0 && steps <= QUERY_EMPTY_HALF_STEPS);
    /* The user half, where the tables below the top do not exist. */
    KT_ASSERT_EQ(t, vmm_query_counted(us, 0, noncanonical(levels), &run, &steps), KMM_OK);
    KT_EXPECT(t, !run.mapped && run.size == noncanonical(levels));
    KT_EXPECT(t, steps > 0 && steps <= QUERY_EMPTY_HALF_STEPS);
    /* One page near the top: the empty stretch before it costs a step per
     * empty shared table, then one per absent entry of each table on the
     * way down to the page. */
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ), KMM_OK);
    KT_ASSERT_EQ(t, vmm_query_counted(f.ks, half, UINT64_MAX, &run, &steps), KMM_OK);
    KT_EXPECT(t, !run.mapped && run.size == HEAP - half);
    KT_EXPECT(t, steps > 0 && steps <= QUERY_EMPTY_HALF_STEPS + 512 * (levels - 1));
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, translate_and_query_count_and_log_what_they_refuse)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ), KMM_OK);
    struct kmm_vm_translation tr;
    struct kmm_vm_run run;
    REJECT(kmm_vm_translate(f.ks, noncanonical(levels), &tr), KMM_EINVAL,
           "translate, not canonical");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_vm_translate"));
    REJECT(kmm_vm_translate(f.ks, HEAP, NULL), KMM_EINVAL, "translate, no result");
    REJECT(kmm_vm_query(f.ks, HEAP + 8, HEAP + MIB, &run), KMM_EINVAL, "query, unaligned");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_vm_query"));
    REJECT(kmm_vm_query(f.ks, HEAP, HEAP, &run), KMM_EINVAL, "query, empty range");
    REJECT(kmm_vm_query(f.ks, HEAP, HEAP - PAGE, &run), KMM_EINVAL, "query, limit below va");
    REJECT(kmm_vm_query(f.ks, noncanonical(levels), noncanonical(levels) + MIB, &run), KMM_EINVAL,
           "query, not canonical");
    REJECT(kmm_vm_query(f.ks, HEAP, HEAP + MIB, NULL), KMM_EINVAL, "query, no result");
    /* Probing an unmapped page is an answer, not a mistake. */
    struct kmm_vm_stats before, after;
    kmm_vm_stats(f.ks, &before);
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, HEAP + PAGE, &tr), KMM_ENOENT);
    kmm_vm_stats(f.ks, &after);
    KT_EXPECT_EQ(t, after.misuse, before.misuse);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, destroying_the_kernel_space_or_what_is_no_space_is_refused_counted_and_logged)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    REJECT(kmm_aspace_destroy(f.k, f.ks), KMM_EINVAL, "destroy the kernel space");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_aspace_destroy"));
    REJECT(kmm_aspace_destroy(f.k, NULL), KMM_EINVAL, "destroy NULL");
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    KT_ASSERT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    struct kmm_misuse_stats ms0, ms1;
    kmm_misuse_stats(f.k, &ms0);
    REJECT(kmm_aspace_destroy(f.k, us), KMM_EINVAL, "destroy a destroyed space");
    kmm_misuse_stats(f.k, &ms1);
    KT_EXPECT_EQ(t, ms1.count[KMM_LAYER_VM][KMM_MISUSE_BAD_HANDLE],
                 ms0.count[KMM_LAYER_VM][KMM_MISUSE_BAD_HANDLE] + 1);
    static uint64_t junk[64]; /* not a space at all, never read */
    REJECT(kmm_aspace_destroy(f.k, (struct kmm_aspace *)junk), KMM_EINVAL, "destroy junk");
    /* A space of another instance is that instance's to destroy. */
    static const struct kmm_region small[] = {{1 * MIB, 7 * MIB, KMM_MEM_USABLE}};
    struct kt_kmm other;
    if (kt_kmm_up(t, &other, small, N(small), 1, levels)) {
        KT_ASSERT_EQ(t, kmm_aspace_create(other.k, &us), KMM_OK);
        REJECT(kmm_aspace_destroy(f.k, us), KMM_EINVAL, "destroy another instance's space");
        KT_EXPECT_EQ(t, kmm_aspace_destroy(other.k, us), KMM_OK);
        KT_EXPECT_HEALTHY(t, other.k);
        kt_kmm_down(&other);
    }
    KT_EXPECT_EQ(t, kmm_aspace_destroy(NULL, NULL), KMM_EINVAL); /* no instance to count in */
    teardown(&f);
}

KTEST_LEVELS(vm, destroying_a_space_whose_gather_holds_work_is_refused_until_it_is_finished)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    const unsigned rw = KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER;
    uint64_t pa = kmm_page_alloc(f.k, 0, 0), pb = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa && pb);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, pa, PAGE, rw | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER + PAGE, pb, PAGE, rw), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK); /* the owned mapping holds it */
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, us);
    /* An unmap's invalidation and release wait in g: us must not go. */
    KT_ASSERT_EQ(t, kmm_vm_unmap_g(us, USER, PAGE, &g), KMM_OK);
    struct kmm_misuse_stats ms0, ms1;
    kmm_misuse_stats(f.k, &ms0);
    REJECT(kmm_aspace_destroy(f.k, us), KMM_EBUSY, "destroy with an unfinished gather");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_aspace_destroy"));
    kmm_misuse_stats(f.k, &ms1);
    KT_EXPECT_EQ(t, ms1.count[KMM_LAYER_VM][KMM_MISUSE_BUSY],
                 ms0.count[KMM_LAYER_VM][KMM_MISUSE_BUSY] + 1);
    kmm_tlb_finish(&g);
    /* A protect that takes a right away waits in g too. */
    KT_ASSERT_EQ(t, kmm_vm_protect_g(us, USER + PAGE, PAGE, KMM_PROT_READ | KMM_PROT_USER, &g),
                 KMM_OK);
    REJECT(kmm_aspace_destroy(f.k, us), KMM_EBUSY, "destroy with an unfinished protect");
    kmm_tlb_finish(&g);
    /* A finished gather, or one that never held work, holds nothing back. */
    KT_ASSERT_EQ(t, kmm_vm_protect_g(us, USER + PAGE, PAGE, rw, &g), KMM_OK); /* adds a right */
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pb, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, a_kernel_mapping_made_later_appears_in_every_user_space)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    struct kmm_aspace *a, *b;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &a), KMM_OK);
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &b), KMM_OK);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ | KMM_PROT_GLOBAL), KMM_OK);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(a, HEAP, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa);
    KT_ASSERT_EQ(t, kmm_vm_translate(b, HEAP, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa);
    /* User mappings stay private. */
    KT_ASSERT_EQ(t, kmm_vm_map(a, USER, pa, PAGE, KMM_PROT_READ | KMM_PROT_USER), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_translate(b, USER, &tr), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, USER, &tr), KMM_ENOENT);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, a), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, b), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_OK); /* the kernel half lives on */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm, destroying_a_user_space_frees_its_tables_and_owned_frames)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    kmm_page_drain_cpu(f.k);
    uint64_t before = free_pages(f.k);
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    for (unsigned i = 0; i < 40; i++) {
        uint64_t pa = kmm_page_alloc(f.k, 0, 0);
        uint64_t va = USER + (uint64_t)i * 3 * MIB; /* scattered: many tables */
        KT_ASSERT_EQ(t,
                     kmm_vm_map(us, va, pa, PAGE,
                                KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER | KMM_MAP_OWNED),
                     KMM_OK);
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK); /* the space owns it now */
    }
    struct kmm_vm_stats s;
    kmm_vm_stats(us, &s);
    KT_EXPECT_EQ(t, s.mapped_pages, 40);
    KT_EXPECT_EQ(t, s.owned_pages, 40);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    kmm_page_drain_cpu(f.k);
    KT_EXPECT_EQ(t, free_pages(f.k), before);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(vm, five_level_paging_maps_57_bit_addresses)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, 5));
    struct kmm_vm_stats s;
    kmm_vm_stats(f.ks, &s);
    KT_EXPECT_EQ(t, s.tables[5], 1);
    KT_EXPECT_EQ(t, s.tables[4], 256);
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    uint64_t high = UINT64_C(0x00fe000000000000); /* above 2^48: 5-level only */
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(us, high, pa, PAGE, KMM_PROT_READ | KMM_PROT_USER), KMM_OK);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(us, high, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa);
    uint64_t khigh = UINT64_C(0xff10000000000000); /* kernel half of 5-level */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, khigh, pa, PAGE, KMM_PROT_READ), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_translate(us, khigh, &tr), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, khigh, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);

    /* The same address is not canonical with 4 levels. */
    KT_ASSERT(t, setup(t, &f));
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT_EQ(t, kmm_vm_map(us, high, pa, PAGE, KMM_PROT_READ), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    teardown(&f);
}

KTEST_LEVELS(vm, a_map_that_cannot_get_its_tables_changes_nothing)
{
    struct fixture f;
    KT_ASSERT(t, setup_levels(t, &f, levels));
    /* Take every page, so no table can be allocated. */
    static uint64_t p[8192];
    size_t n = 0;
    while (n < N(p) && (p[n] = kmm_page_alloc(f.k, 0, 0)) != 0)
        n++;
    KT_ASSERT(t, n < N(p) && n > 0);
    uint64_t before = tables(f.ks);
    KT_EXPECT_EQ(t, kmm_vm_map(f.ks, HEAP, p[0], PAGE, KMM_PROT_READ), KMM_ENOMEM);
    KT_EXPECT_EQ(t, tables(f.ks), before);
    struct kmm_vm_translation tr;
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, HEAP, &tr), KMM_ENOENT);
    KT_EXPECT_HEALTHY(t, f.k);
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, p[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}
