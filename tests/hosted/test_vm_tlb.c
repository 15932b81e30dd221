/*
 * test_vm_tlb.c - TLB correctness of the page-table engine, read from the
 * hosted port's TLB-event log: every unmap and downgrade is followed by the
 * invalidation it needs, no frame or table reaches the page allocator before
 * the invalidation that covers it, huge pages are invalidated as one page
 * each (removed, weakened or split), and mapped memory is usable at its
 * address (the hosted mirror window). Every test runs with 4 and with 5
 * paging levels. Hosted only.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "faults_hosted.h"
#include "fixture.h"
#include "hosted.h"
#include "ktest.h"
#include "ktest_levels.h"
#include "soft_mmu.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)
#define HEAP UINT64_C(0xffffffff90000000)
#define USER UINT64_C(0x0000000000400000)

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

#define MMIO_PAGE (UINT64_C(4) << 30) /* beyond RAM: device memory */

struct fixture {
    struct hosted_machine *m;
    struct kmm *k;
    struct kmm_aspace *ks;
};

/* A machine and an instance on it; with accessed, the machine plays an
 * MMU that caches only accessed leaves (hosted_machine_accessed_rule). */
static bool setup_with(struct fixture *f, unsigned levels, bool accessed)
{
    f->m = hosted_machine_from_map(ram, 1, 16 * MIB);
    if (!f->m)
        return false;
    hosted_machine_accessed_rule(f->m, accessed);
    struct kmm_config cfg = {.port = hosted_machine_port(f->m),
                             .regions = ram,
                             .region_count = 1,
                             .cpu_count = 1,
                             .paging_levels = levels};
    if (kmm_init(&cfg, &f->k) != KMM_OK)
        return false;
    f->ks = kmm_kernel_aspace(f->k);
    return true;
}

static bool setup(struct fixture *f, unsigned levels)
{
    return setup_with(f, levels, false);
}

static void teardown(struct fixture *f)
{
    kmm_fini(f->k);
    hosted_machine_destroy(f->m);
}

static uint64_t free_pages(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    return s.free_pages;
}

/* Whether the log since index from has an invalidation of va on this CPU
 * and a shootdown covering it (both, in that order). */
static bool invalidated(struct hosted_machine *m, size_t from, uint64_t va, bool *global)
{
    bool local = false;
    for (size_t i = from; i < hosted_tlb_log_count(m); i++) {
        struct hosted_tlb_event e = hosted_tlb_log_get(m, i);
        bool covers = e.len == 0 || (va >= e.va && va - e.va < e.len);
        if ((e.op == HOSTED_TLB_FLUSH_PAGE && e.va == va) ||
            (e.op == HOSTED_TLB_FLUSH_RANGE && covers) || e.op == HOSTED_TLB_FLUSH_ALL)
            local = true;
        if (e.op == HOSTED_TLB_SHOOTDOWN && covers && local) {
            if (global)
                *global = e.global;
            return true;
        }
    }
    return false;
}

/* Free pages seen at each TLB event. */
struct watch {
    struct kmm *k;
    unsigned events;
    uint64_t free_at_first;
};

static void on_event(void *ctx, const struct hosted_tlb_event *e)
{
    struct watch *w = ctx;
    (void)e;
    if (w->events++ == 0)
        w->free_at_first = free_pages(w->k);
}

/* An owned page mapped alone, never read, unmapped: its invalidation (with
 * accessed, the MMU rule makes the leaf need none, but its freed tables
 * still do) comes before its frame and tables go back. */
static void expect_owned_unmap_invalidates_first(struct ktest *t, unsigned levels, bool accessed)
{
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, levels, accessed));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK); /* the mapping owns it */
    uint64_t before = free_pages(f.k);
    struct watch w = {.k = f.k};
    hosted_tlb_observe(f.m, on_event, &w);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    hosted_tlb_observe(f.m, NULL, NULL);
    bool global = false;
    KT_EXPECT(t, invalidated(f.m, from, HEAP, &global));
    KT_EXPECT(t, global); /* a kernel-half mapping */
    KT_EXPECT(t, w.events >= 2);
    KT_EXPECT_EQ(t, w.free_at_first, before); /* nothing freed before the flush */
    /* After it: the frame, a PT, a PD (and with 5 levels a PDPT). */
    KT_EXPECT_EQ(t, free_pages(f.k), before + 1 + (levels - 2));
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, an_unmap_invalidates_before_its_frame_and_tables_are_freed)
{
    expect_owned_unmap_invalidates_first(t, levels, false);
}

KTEST_LEVELS(vm_tlb, a_downgrade_invalidates_and_an_upgrade_does_not)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ), KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_EXPECT_EQ(t, from, 0); /* mapping a fresh page needs no invalidation */
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP, PAGE, KMM_PROT_READ | KMM_PROT_WRITE), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from); /* adding a right: nothing */
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP, PAGE, KMM_PROT_READ), KMM_OK);
    KT_EXPECT(t, invalidated(f.m, from, HEAP, NULL)); /* taking write away */
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP, PAGE, KMM_PROT_READ | KMM_PROT_EXEC), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP, PAGE, KMM_PROT_READ), KMM_OK);
    KT_EXPECT(t, invalidated(f.m, from, HEAP, NULL)); /* taking exec away */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    teardown(&f);
}

/* One protection change of the page at va from `from` to `to`: whether it
 * was followed by an invalidation of va (locally and a shootdown). */
static bool protect_invalidates(struct fixture *f, struct kmm_aspace *as, uint64_t va,
                                unsigned from, unsigned to)
{
    if (kmm_vm_protect(as, va, PAGE, from) != KMM_OK)
        return false;
    size_t at = hosted_tlb_log_count(f->m);
    if (kmm_vm_protect(as, va, PAGE, to) != KMM_OK)
        return false;
    return invalidated(f->m, at, va, NULL);
}

KTEST_LEVELS(vm_tlb, every_right_taken_away_invalidates)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    const unsigned R = KMM_PROT_READ, W = KMM_PROT_WRITE, X = KMM_PROT_EXEC, U = KMM_PROT_USER,
                   G = KMM_PROT_GLOBAL;
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, pa, PAGE, R | W | X | U), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, R | W | X | G), KMM_OK);
    /* A user page: each right alone, and all of them at once. */
    KT_EXPECT(t, protect_invalidates(&f, us, USER, R | U, R)); /* user access */
    KT_EXPECT(t, protect_invalidates(&f, us, USER, R | W | X | U, R | W | X));
    KT_EXPECT(t, protect_invalidates(&f, us, USER, R | W | U, R | U));
    KT_EXPECT(t, protect_invalidates(&f, us, USER, R | X | U, R | U));
    KT_EXPECT(t, protect_invalidates(&f, us, USER, R | W | X | U, R));
    /* A kernel page: global, write, execute. */
    KT_EXPECT(t, protect_invalidates(&f, f.ks, HEAP, R | G, R));
    KT_EXPECT(t, protect_invalidates(&f, f.ks, HEAP, R | W | G, R | G));
    KT_EXPECT(t, protect_invalidates(&f, f.ks, HEAP, R | X | G, R | G));
    /* Adding a right needs nothing. */
    size_t at = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(us, USER, PAGE, R | W | X | U), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), at);
    /* Another cache mode (REPLACE of the same frame) invalidates too. */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP + PAGE, MMIO_PAGE, PAGE, R | KMM_CACHE_UC), KMM_OK);
    at = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t,
                 kmm_vm_map(f.ks, HEAP + PAGE, MMIO_PAGE, PAGE, R | KMM_CACHE_WC | KMM_MAP_REPLACE),
                 KMM_OK);
    KT_EXPECT(t, invalidated(f.m, at, HEAP + PAGE, NULL));
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, 2 * PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, USER, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_large_unmap_flushes_everything_once)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t pa = kmm_pages_alloc(f.k, 64, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, 64 * PAGE, KMM_PROT_READ), KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, 64 * PAGE), KMM_OK);
    size_t flush_all = 0, pages = 0, shoot = 0;
    for (size_t i = from; i < hosted_tlb_log_count(f.m); i++) {
        struct hosted_tlb_event e = hosted_tlb_log_get(f.m, i);
        flush_all += e.op == HOSTED_TLB_FLUSH_ALL && e.global;
        pages += e.op == HOSTED_TLB_FLUSH_PAGE;
        shoot += e.op == HOSTED_TLB_SHOOTDOWN && e.len == 0;
    }
    KT_EXPECT_EQ(t, flush_all, 1);
    KT_EXPECT_EQ(t, pages, 0);
    KT_EXPECT_EQ(t, shoot, 1);
    KT_EXPECT_EQ(t, kmm_pages_free(f.k, pa, 64), KMM_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_user_space_unmap_shoots_down_its_own_root_without_globals)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    kmm_aspace_activate(us);
    struct hosted_tlb_event load = hosted_tlb_log_get(f.m, hosted_tlb_log_count(f.m) - 1);
    KT_EXPECT_EQ(t, load.op, HOSTED_TLB_LOAD_ROOT);
    KT_EXPECT_EQ(t, load.root, kmm_aspace_root(us));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, pa, PAGE, KMM_PROT_READ | KMM_PROT_USER), KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, USER, PAGE), KMM_OK);
    bool global = true;
    KT_EXPECT(t, invalidated(f.m, from, USER, &global));
    KT_EXPECT(t, !global);
    struct hosted_tlb_event last = hosted_tlb_log_get(f.m, hosted_tlb_log_count(f.m) - 1);
    KT_EXPECT_EQ(t, last.root, kmm_aspace_root(us));
    kmm_aspace_activate(f.ks);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_callers_gather_holds_frames_until_it_is_finished)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t a = kmm_page_alloc(f.k, 0, 0), b = kmm_page_alloc(f.k, 0, 0);
    unsigned fl = KMM_PROT_READ | KMM_MAP_OWNED;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, a, PAGE, fl), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP + 8 * PAGE, b, PAGE, fl), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, b, 0), KMM_OK);
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, f.ks);
    size_t from = hosted_tlb_log_count(f.m);
    uint64_t before = free_pages(f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap_g(f.ks, HEAP, PAGE, &g), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap_g(f.ks, HEAP + 8 * PAGE, PAGE, &g), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from); /* nothing yet */
    KT_EXPECT_EQ(t, free_pages(f.k), before);         /* nothing freed yet */
    kmm_tlb_finish(&g);
    KT_EXPECT(t, invalidated(f.m, from, HEAP, NULL));
    KT_EXPECT(t, invalidated(f.m, from, HEAP + 8 * PAGE, NULL));
    KT_EXPECT_EQ(t, free_pages(f.k), before + 2 + (levels - 2));
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

/* --- huge pages ------------------------------------------------------------ */

#define M2   (UINT64_C(1) << 21)
#define G1   (UINT64_C(1) << 30)
#define KVA  UINT64_C(0xffffc00000000000) /* kernel half, 1 GiB aligned, both modes */
#define MMIO (UINT64_C(4) << 30)          /* beyond RAM: device memory */

/* What the log says since index from about the page [base, base + size). */
struct huge_log {
    unsigned flush_pages; /* FLUSH_PAGE events, anywhere */
    unsigned inside;      /* ... at an address inside the page */
    unsigned flush_other; /* FLUSH_RANGE and FLUSH_ALL events */
    unsigned shootdowns;  /* SHOOTDOWN events */
    bool covered;         /* a shootdown covering the whole page, after a local
                           * invalidation inside it (or of everything) */
    bool global;          /* that shootdown includes global entries */
};

static struct huge_log huge_log(struct hosted_machine *m, size_t from, uint64_t base, uint64_t size)
{
    struct huge_log l = {0};
    bool local = false;
    for (size_t i = from; i < hosted_tlb_log_count(m); i++) {
        struct hosted_tlb_event e = hosted_tlb_log_get(m, i);
        bool inside = e.va >= base && e.va - base < size;
        switch (e.op) {
        case HOSTED_TLB_FLUSH_PAGE:
            l.flush_pages++;
            l.inside += inside;
            local |= inside;
            break;
        case HOSTED_TLB_FLUSH_RANGE:
        case HOSTED_TLB_FLUSH_ALL:
            l.flush_other++;
            local |= e.op == HOSTED_TLB_FLUSH_ALL || (e.va <= base && e.va + e.len >= base + size);
            break;
        case HOSTED_TLB_SHOOTDOWN:
            l.shootdowns++;
            if (local &&
                (e.len == 0 || (e.va <= base && e.va + (e.len - 1) >= base + (size - 1)))) {
                l.covered = true;
                l.global |= e.global;
            }
            break;
        default:
            break;
        }
    }
    return l;
}

/* Exactly one per-page invalidation, inside the huge page, and a shootdown
 * over all of it. */
static void one_invalidation_at(struct ktest *t, struct hosted_machine *m, size_t from,
                                uint64_t base, uint64_t size, int line)
{
    struct huge_log l = huge_log(m, from, base, size);
    if (l.flush_pages != 1 || l.inside != 1 || l.flush_other || l.shootdowns != 1 || !l.covered)
        ktest_fail_at(t, __FILE__, line,
                      "page 0x%llx size 0x%llx: %u page flushes (%u inside), %u other flushes, "
                      "%u shootdowns, covered %d; want one inside and a shootdown of all of it",
                      (unsigned long long)base, (unsigned long long)size, l.flush_pages, l.inside,
                      l.flush_other, l.shootdowns, (int)l.covered);
}
#define ONE_INVALIDATION(t, m, from, base, size)                                                   \
    one_invalidation_at((t), (m), (from), (base), (size), __LINE__)

/* An invalidation inside the huge page that was split, and a shootdown over
 * all of it (other pages may be invalidated too). */
static void split_invalidated_at(struct ktest *t, struct hosted_machine *m, size_t from,
                                 uint64_t base, uint64_t size, int line)
{
    struct huge_log l = huge_log(m, from, base, size);
    if (!l.covered)
        ktest_fail_at(t, __FILE__, line,
                      "split page 0x%llx size 0x%llx: %u page flushes (%u inside), %u other, %u "
                      "shootdowns; no invalidation of all of it",
                      (unsigned long long)base, (unsigned long long)size, l.flush_pages, l.inside,
                      l.flush_other, l.shootdowns);
}
#define SPLIT_INVALIDATED(t, m, from, base, size)                                                  \
    split_invalidated_at((t), (m), (from), (base), (size), __LINE__)

KTEST_LEVELS(vm_tlb, a_huge_unmap_invalidates_one_address_and_shoots_down_the_whole_page)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t p = kmm_run_alloc(f.k, M2 / PAGE, M2, 0, 0);
    KT_ASSERT(t, p != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2, p, M2, KMM_PROT_READ | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(
        t, kmm_vm_map(f.ks, KVA + G1, MMIO, G1, KMM_PROT_READ | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
        KMM_OK);
    /* The 2 MiB page: its directory (and with 5 levels its PDPT) empties. */
    kmm_page_drain_cpu(f.k);
    uint64_t before = free_pages(f.k);
    struct watch w = {.k = f.k};
    hosted_tlb_observe(f.m, on_event, &w);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2, M2), KMM_OK);
    hosted_tlb_observe(f.m, NULL, NULL);
    ONE_INVALIDATION(t, f.m, from, KVA + M2, M2);
    KT_EXPECT(t, huge_log(f.m, from, KVA + M2, M2).global); /* a kernel-half page */
    KT_EXPECT_EQ(t, w.free_at_first, before); /* nothing released before the invalidation */
    kmm_page_drain_cpu(f.k);
    KT_EXPECT_EQ(t, free_pages(f.k), before + 1);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, p), KMM_OK); /* not owned: the frames stay allocated */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, p, 9), KMM_OK);
    /* The 1 GiB page, through a caller's gather: nothing before the finish. */
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, f.ks);
    from = hosted_tlb_log_count(f.m);
    before = free_pages(f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap_g(f.ks, KVA + G1, G1, &g), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from);
    KT_EXPECT_EQ(t, free_pages(f.k), before);
    kmm_tlb_finish(&g);
    ONE_INVALIDATION(t, f.m, from, KVA + G1, G1);
    KT_EXPECT_EQ(t, free_pages(f.k), before + (levels == 5)); /* the PDPT, with 5 levels */
    KT_EXPECT_EQ(t, kmm_run_free(f.k, p, M2 / PAGE), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_huge_downgrade_invalidates_one_address_and_an_upgrade_nothing)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t p = kmm_run_alloc(f.k, M2 / PAGE, M2, 0, 0);
    KT_ASSERT(t, p != 0);
    unsigned rw = KMM_PROT_READ | KMM_PROT_WRITE, rx = KMM_PROT_READ | KMM_PROT_EXEC;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2, p, M2, rw | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + G1, MMIO, G1, rx | KMM_CACHE_WC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, KVA + M2, M2, KMM_PROT_READ), KMM_OK); /* no write */
    ONE_INVALIDATION(t, f.m, from, KVA + M2, M2);
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, KVA + G1, G1, KMM_PROT_READ), KMM_OK); /* no exec */
    ONE_INVALIDATION(t, f.m, from, KVA + G1, G1);
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, KVA + M2, M2, rw), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, KVA + G1, G1, rx), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from); /* adding rights needs nothing */
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, KVA + G1, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.page_size, G1); /* protected as a unit: still one page */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2, M2), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + G1, G1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, p, M2 / PAGE), KMM_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_split_invalidates_the_huge_page_even_when_rights_only_grow)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t p = kmm_run_alloc(f.k, 2 * M2 / PAGE, M2, 0, 0);
    KT_ASSERT(t, p != 0);
    unsigned r = KMM_PROT_READ, rw = KMM_PROT_READ | KMM_PROT_WRITE;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2, p, 2 * M2, r | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + G1, MMIO, G1, r | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    /* Unmapping one page inside a 2 MiB page. */
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2 + 5 * PAGE, PAGE), KMM_OK);
    SPLIT_INVALIDATED(t, f.m, from, KVA + M2, M2);
    KT_EXPECT(t, invalidated(f.m, from, KVA + M2 + 5 * PAGE, NULL));
    /* Write added to one page of the other: only the split needs the flush. */
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, KVA + 2 * M2 + 9 * PAGE, PAGE, rw), KMM_OK);
    SPLIT_INVALIDATED(t, f.m, from, KVA + 2 * M2, M2);
    /* One page of the 1 GiB page: split to 2 MiB, that one to 4 KiB. */
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, KVA + G1 + 7 * M2, PAGE, rw), KMM_OK);
    SPLIT_INVALIDATED(t, f.m, from, KVA + G1, G1);
    /* A 2 MiB-aligned unmap inside it: split to 2 MiB only. */
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + G1 + 20 * M2, M2), KMM_OK);
    ONE_INVALIDATION(t, f.m, from, KVA + G1 + 20 * M2, M2); /* the split flushed before */
    struct kmm_check_result cr;
    KT_EXPECT_EQ(t, kmm_check(f.k, &cr), KMM_CHECK_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2, 5 * PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2 + 6 * PAGE, 2 * M2 - 6 * PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + G1, 20 * M2), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + G1 + 21 * M2, G1 - 21 * M2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, p, 2 * M2 / PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_check(f.k, &cr), KMM_CHECK_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_split_unmap_releases_frames_and_tables_only_after_the_invalidation)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t p = kmm_run_alloc(f.k, M2 / PAGE, M2, 0, 0), a = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, p && a);
    /* An owned page alone in its page table, right before a 2 MiB page. */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2 - PAGE, a, PAGE, KMM_PROT_READ | KMM_MAP_OWNED),
                 KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2, p, M2, KMM_PROT_READ | KMM_MAP_HUGE), KMM_OK);
    kmm_page_drain_cpu(f.k);
    uint64_t before = free_pages(f.k);
    struct watch w = {.k = f.k};
    hosted_tlb_observe(f.m, on_event, &w);
    size_t from = hosted_tlb_log_count(f.m);
    /* Cuts the 2 MiB page (a new page table) and frees the owned page and its table. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2 - PAGE, 2 * PAGE), KMM_OK);
    hosted_tlb_observe(f.m, NULL, NULL);
    SPLIT_INVALIDATED(t, f.m, from, KVA + M2, M2);
    KT_EXPECT(t, invalidated(f.m, from, KVA + M2 - PAGE, NULL));
    KT_EXPECT(t, w.events >= 2);
    KT_EXPECT_EQ(t, w.free_at_first, before - 1); /* only the split's table taken */
    kmm_page_drain_cpu(f.k);
    KT_EXPECT_EQ(t, free_pages(f.k), before - 1 + 2); /* then the frame and the old table */
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(f.ks, KVA + M2 + PAGE, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.page_size, PAGE);
    KT_EXPECT_EQ(t, tr.pa, p + PAGE);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2 + PAGE, M2 - PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, p, M2 / PAGE), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, replacing_a_huge_page_invalidates_the_old_one_first)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t p = kmm_run_alloc(f.k, 2 * M2 / PAGE, M2, 0, 0);
    KT_ASSERT(t, p != 0);
    unsigned rw = KMM_PROT_READ | KMM_PROT_WRITE;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2, p, M2, rw | KMM_MAP_HUGE), KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2, p + M2, M2, rw | KMM_MAP_HUGE | KMM_MAP_REPLACE),
                 KMM_OK);
    ONE_INVALIDATION(t, f.m, from, KVA + M2, M2);
    /* A replacing map of a few pages inside it splits it. */
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, KVA + M2 + 8 * PAGE, p, 2 * PAGE, rw | KMM_MAP_REPLACE),
                 KMM_OK);
    SPLIT_INVALIDATED(t, f.m, from, KVA + M2, M2);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, KVA + M2, M2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, p, 2 * M2 / PAGE), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_huge_page_at_the_top_of_the_address_space_is_invalidated_whole)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    const uint64_t top = UINT64_C(0xffffffffc0000000);
    unsigned fl = KMM_PROT_READ | KMM_PROT_WRITE | KMM_CACHE_UC | KMM_MAP_HUGE_1G;
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, top, MMIO, G1, fl), KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, top, G1, KMM_PROT_READ), KMM_OK);
    ONE_INVALIDATION(t, f.m, from, top, G1);
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, top + G1 - PAGE, PAGE), KMM_OK);
    SPLIT_INVALIDATED(t, f.m, from, top, G1);
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, top + G1 - M2, M2 - PAGE), KMM_OK);
    KT_EXPECT(t, huge_log(f.m, from, top + G1 - M2, M2 - PAGE).covered);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, top, G1 - M2), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

/* --- the mirror window: what the library maps is usable at its address ---- */

KTEST_LEVELS(vm_tlb, kernel_mappings_in_the_mirror_window_are_real_memory)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t win, size;
    hosted_machine_mirror_window(f.m, &win, &size);
    KT_ASSERT(t, size > 0);
    uint64_t a = kmm_page_alloc(f.k, 0, 0), b = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, win, a, PAGE, KMM_PROT_READ | KMM_PROT_WRITE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, win + PAGE, b, PAGE, KMM_PROT_READ | KMM_PROT_WRITE), KMM_OK);
    uint8_t *va = (uint8_t *)(uintptr_t)win;
    memset(va, 0x77, 2 * PAGE); /* two scattered frames, one contiguous range */
    uint8_t *da = (uint8_t *)(hosted_machine_direct_map(f.m) + a);
    uint8_t *db = (uint8_t *)(hosted_machine_direct_map(f.m) + b);
    KT_EXPECT_EQ(t, da[0], 0x77);
    KT_EXPECT_EQ(t, db[PAGE - 1], 0x77);
    KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, win, PAGE, KMM_PROT_READ), KMM_OK);
    KT_EXPECT(t, kt_write_faults(va));
    KT_EXPECT(t, !kt_write_faults(va + PAGE));
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, win, 2 * PAGE), KMM_OK);
    KT_EXPECT(t, kt_write_faults(va + PAGE));
    KT_EXPECT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, b, 0), KMM_OK);
    teardown(&f);
}

/* --- clones and faults ------------------------------------------------------------------ */

KTEST_LEVELS(vm_tlb, a_clone_invalidates_the_parents_pages_that_lose_their_write_right)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    uint64_t win, size;
    hosted_machine_mirror_window(f.m, &win, &size);
    KT_ASSERT(t, size >= 4 * PAGE);
    struct kmm_aspace *parent, *child;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &parent), KMM_OK);
    kmm_aspace_activate(parent);
    unsigned urw = KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER;
    uint64_t a = kmm_page_alloc(f.k, 0, 0), b = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(parent, win, a, PAGE, urw | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t,
                 kmm_vm_map(parent, win + PAGE, b, PAGE, (urw & ~KMM_PROT_WRITE) | KMM_MAP_OWNED),
                 KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, b, 0), KMM_OK);
    volatile uint8_t *va = (volatile uint8_t *)(uintptr_t)win;
    KT_EXPECT(t, !kt_write_faults(va)); /* writable before */
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_aspace_clone(parent, &child), KMM_OK);
    bool global = true;
    KT_EXPECT(t, invalidated(f.m, from, win, &global));
    KT_EXPECT(t, !global);
    struct hosted_tlb_event last = hosted_tlb_log_get(f.m, hosted_tlb_log_count(f.m) - 1);
    KT_EXPECT_EQ(t, last.root, kmm_aspace_root(parent));
    /* The read-only page kept its rights: nothing to invalidate for it. */
    for (size_t i = from; i < hosted_tlb_log_count(f.m); i++) {
        struct hosted_tlb_event e = hosted_tlb_log_get(f.m, i);
        KT_EXPECT(t, !(e.op == HOSTED_TLB_FLUSH_PAGE && e.va == win + PAGE));
    }
    /* The mirror holds the parent to it: a write faults now; the fault
     * entry takes the frame back (its last mapping once the child is
     * gone) and the write goes through. */
    KT_EXPECT(t, kt_write_faults(va));
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, child), KMM_OK);
    enum kmm_vm_fault_kind how;
    KT_EXPECT_EQ(t, kmm_vm_fault(parent, win, KMM_FAULT_WRITE | KMM_FAULT_USER, &how), KMM_OK);
    KT_EXPECT_EQ(t, how, KMM_FAULT_COW_REUSE);
    KT_EXPECT(t, !kt_write_faults(va));
    kmm_aspace_activate(f.ks);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, parent), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, a_copy_on_write_copy_invalidates_the_old_entry_here_and_on_other_cpus)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f, levels));
    struct kmm_aspace *parent, *child;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &parent), KMM_OK);
    unsigned urw = KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER;
    uint64_t a = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(parent, USER, a, PAGE, urw | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT(t, a != 0);
    KT_ASSERT_EQ(t, kmm_aspace_clone(parent, &child), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK); /* the mappings hold it now */
    /* The child's copy: its read-only entry of the shared frame is
     * invalidated here and on the other CPUs (its own root, no global
     * entry), and the frame stays, held by the parent's mapping. */
    size_t from = hosted_tlb_log_count(f.m);
    KT_EXPECT_EQ(t, kmm_vm_fault(child, USER, KMM_FAULT_WRITE, 0), KMM_OK);
    bool global = true;
    KT_EXPECT(t, invalidated(f.m, from, USER, &global));
    KT_EXPECT(t, !global);
    struct hosted_tlb_event last = hosted_tlb_log_get(f.m, hosted_tlb_log_count(f.m) - 1);
    KT_EXPECT_EQ(t, last.root, kmm_aspace_root(child));
    KT_EXPECT_EQ(t, kmm_page_free(f.k, a, 0), KMM_EBUSY); /* a mapping's, not ours */
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(child, USER, &tr), KMM_OK);
    KT_EXPECT(t, tr.pa != a && !tr.cow);
    /* A reuse only grows rights: nothing to invalidate elsewhere. */
    from = hosted_tlb_log_count(f.m);
    KT_EXPECT_EQ(t, kmm_vm_fault(parent, USER, KMM_FAULT_WRITE, 0), KMM_OK);
    for (size_t i = from; i < hosted_tlb_log_count(f.m); i++)
        KT_EXPECT(t, hosted_tlb_log_get(f.m, i).op != HOSTED_TLB_SHOOTDOWN);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, child), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, parent), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

/* --- the accessed rule (kmm_port_tlb_skip_unaccessed) -------------------------------- */

static const void *machine_phys(void *ctx, uint64_t pa)
{
    struct hosted_machine *m = ctx;
    if (pa >= hosted_machine_phys_end(m))
        return 0;
    return (const void *)(hosted_machine_direct_map(m) + (uintptr_t)pa);
}

/* The CPU reading va through space as: the accessed flags on its walk. */
static bool touch(struct fixture *f, struct kmm_aspace *as, uint64_t va, unsigned levels)
{
    struct smmu mmu = {.phys = machine_phys, .ctx = f->m, .la57 = levels == 5, .nxe = true};
    return smmu_touch(&mmu, kmm_aspace_root(as), va);
}

/* How many local invalidations since index from reach va (a page flush
 * of it, a range flush covering it, or a full flush). A shootdown names
 * one range from the lowest page to the highest, so it may cover pages
 * between them that needed nothing. */
static unsigned events_for(struct hosted_machine *m, size_t from, uint64_t va)
{
    unsigned n = 0;
    for (size_t i = from; i < hosted_tlb_log_count(m); i++) {
        struct hosted_tlb_event e = hosted_tlb_log_get(m, i);
        bool covers = e.len == 0 || (va >= e.va && va - e.va < e.len);
        if ((e.op == HOSTED_TLB_FLUSH_PAGE && e.va == va) ||
            (e.op == HOSTED_TLB_FLUSH_RANGE && covers) || e.op == HOSTED_TLB_FLUSH_ALL)
            n++;
    }
    return n;
}

KTEST_LEVELS(vm_tlb, with_the_accessed_rule_only_accessed_leaves_are_invalidated)
{
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, levels, true));
    enum { N = 8 };
    uint64_t pa[N + 1];
    for (unsigned i = 0; i <= N; i++) {
        pa[i] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pa[i] != 0);
        KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP + i * PAGE, pa[i], PAGE, KMM_PROT_READ), KMM_OK);
    }
    /* Pages 1, 4 and 5 were read; page N keeps the page table alive. */
    KT_ASSERT(t, touch(&f, f.ks, HEAP + 1 * PAGE, levels));
    KT_ASSERT(t, touch(&f, f.ks, HEAP + 4 * PAGE, levels));
    KT_ASSERT(t, touch(&f, f.ks, HEAP + 5 * PAGE, levels));
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, N * PAGE), KMM_OK);
    for (unsigned i = 0; i < N; i++) {
        bool accessed = i == 1 || i == 4 || i == 5;
        KT_EXPECT(t, invalidated(f.m, from, HEAP + i * PAGE, NULL) == accessed);
        if (!accessed)
            KT_EXPECT_EQ(t, events_for(f.m, from, HEAP + i * PAGE), 0);
    }
    /* One page, never read, alone: nothing to invalidate at all. */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa[0], PAGE, KMM_PROT_READ), KMM_OK);
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from);
    /* Read, it is invalidated as ever. */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa[0], PAGE, KMM_PROT_READ), KMM_OK);
    KT_ASSERT(t, touch(&f, f.ks, HEAP, levels));
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
    KT_EXPECT(t, invalidated(f.m, from, HEAP, NULL));
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP + N * PAGE, PAGE), KMM_OK);
    for (unsigned i = 0; i <= N; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pa[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, with_the_accessed_rule_a_freed_table_is_still_invalidated_first)
{
    expect_owned_unmap_invalidates_first(t, levels, true);
    /* A user space's page never read: its page table is freed too. */
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, levels, true));
    struct kmm_aspace *us = 0;
    KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &us), KMM_OK);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, pa, PAGE, KMM_PROT_READ | KMM_PROT_USER), KMM_OK);
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, USER, PAGE), KMM_OK);
    KT_EXPECT(t, invalidated(f.m, from, USER, NULL));
    KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST_LEVELS(vm_tlb, with_the_accessed_rule_map_ram_invalidates_only_what_was_read)
{
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, levels, true));
    enum { N = 6 };
    uint64_t pages[N];
    for (unsigned i = 0; i < N; i++) {
        pages[i] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pages[i] != 0);
    }
    void *p = kmm_vm_map_ram(f.k, pages, N, KMM_PROT_READ);
    KT_ASSERT(t, p != 0);
    uint64_t va = (uint64_t)(uintptr_t)p;
    KT_ASSERT(t, touch(&f, f.ks, va + 2 * PAGE, levels));
    size_t from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(f.k, p, N), KMM_OK);
    for (unsigned i = 0; i < N; i++) {
        KT_EXPECT(t, invalidated(f.m, from, va + i * PAGE, NULL) == (i == 2));
        if (i != 2)
            KT_EXPECT_EQ(t, events_for(f.m, from, va + i * PAGE), 0);
    }
    /* And vmap, whose pages and tables go back with the area. */
    p = kmm_vmap(f.k, pages, N, KMM_PROT_READ);
    KT_ASSERT(t, p != 0);
    va = (uint64_t)(uintptr_t)p;
    KT_ASSERT(t, touch(&f, f.ks, va + 5 * PAGE, levels));
    from = hosted_tlb_log_count(f.m);
    KT_ASSERT_EQ(t, kmm_vunmap(f.k, p), KMM_OK);
    KT_EXPECT(t, invalidated(f.m, from, va + 5 * PAGE, NULL));
    kmm_vm_map_ram_drain(f.k);
    for (unsigned i = 0; i < N; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* A map_ram range whose pages were never read is in no TLB: its unmap
 * records no TLB event and gives the range back to its block at once, so
 * the next map of as many pages gets it again; one page (the path with the
 * count folded) and several. */
KTEST_LEVELS(vm_tlb, with_the_accessed_rule_a_map_ram_range_never_read_goes_back_at_once)
{
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, levels, true));
    enum { N = 3 };
    uint64_t pages[N];
    for (unsigned i = 0; i < N; i++) {
        pages[i] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pages[i] != 0);
    }
    for (unsigned n = 1; n <= N; n += N - 1) {
        void *p = kmm_vm_map_ram(f.k, pages, n, KMM_PROT_READ);
        KT_ASSERT(t, p != 0);
        size_t from = hosted_tlb_log_count(f.m);
        KT_ASSERT_EQ(t, kmm_vm_unmap_ram(f.k, p, n), KMM_OK);
        KT_EXPECT_EQ(t, hosted_tlb_log_count(f.m), from);
        struct kmm_vmalloc_stats v;
        kmm_vmalloc_stats(f.k, &v);
        KT_EXPECT_EQ(t, v.map_ram_ranges, 0);
        void *q = kmm_vm_map_ram(f.k, pages, n, KMM_PROT_READ);
        KT_EXPECT(t, q == p);
        KT_EXPECT_EQ(t, kmm_vm_unmap_ram(f.k, q, n), KMM_OK);
        KT_EXPECT_HEALTHY(t, f.k);
    }
    kmm_vm_map_ram_drain(f.k);
    for (unsigned i = 0; i < N; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* What a map_ram range's first TLB event saw: the range still taken, and
 * a map made then given other addresses. */
struct reuse_watch {
    struct kmm *k;
    const uint64_t *pages;
    unsigned n;
    unsigned events;
    uint64_t ranges_at_first; /* map_ram_ranges */
    void *mapped_at_first;    /* what a map of n pages got then */
};

static void on_range_event(void *ctx, const struct hosted_tlb_event *e)
{
    struct reuse_watch *w = ctx;
    (void)e;
    if (w->events++)
        return;
    struct kmm_vmalloc_stats v;
    kmm_vmalloc_stats(w->k, &v);
    w->ranges_at_first = v.map_ram_ranges;
    /* No lock is held while a gather is finished: a map may run here. */
    w->mapped_at_first = kmm_vm_map_ram(w->k, w->pages, w->n, KMM_PROT_READ);
    if (w->mapped_at_first)
        kmm_vm_unmap_ram(w->k, w->mapped_at_first, w->n); /* never read: no event */
}

/* A map_ram range with a page read may be in a TLB: its unmap invalidates
 * it before the range goes back, so a map made during the invalidation
 * gets other addresses, and only a map after the unmap gets the range
 * again. One page and several (the last one read). */
KTEST_LEVELS(vm_tlb, with_the_accessed_rule_a_map_ram_range_read_is_invalidated_before_reuse)
{
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, levels, true));
    enum { N = 3 };
    uint64_t pages[N];
    for (unsigned i = 0; i < N; i++) {
        pages[i] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pages[i] != 0);
    }
    for (unsigned n = 1; n <= N; n += N - 1) {
        void *p = kmm_vm_map_ram(f.k, pages, n, KMM_PROT_READ);
        KT_ASSERT(t, p != 0);
        uint64_t va = (uint64_t)(uintptr_t)p;
        KT_ASSERT(t, touch(&f, f.ks, va + (n - 1) * PAGE, levels));
        struct reuse_watch w = {.k = f.k, .pages = pages, .n = n};
        hosted_tlb_observe(f.m, on_range_event, &w);
        size_t from = hosted_tlb_log_count(f.m);
        KT_ASSERT_EQ(t, kmm_vm_unmap_ram(f.k, p, n), KMM_OK);
        hosted_tlb_observe(f.m, NULL, NULL);
        KT_EXPECT(t, invalidated(f.m, from, va + (n - 1) * PAGE, NULL));
        KT_EXPECT(t, w.events > 0);
        KT_EXPECT_EQ(t, w.ranges_at_first, 1);
        KT_EXPECT(t, w.mapped_at_first != 0 && w.mapped_at_first != p);
        void *q = kmm_vm_map_ram(f.k, pages, n, KMM_PROT_READ);
        KT_EXPECT(t, q == p);
        KT_EXPECT_EQ(t, kmm_vm_unmap_ram(f.k, q, n), KMM_OK);
        KT_EXPECT_HEALTHY(t, f.k);
    }
    kmm_vm_map_ram_drain(f.k);
    for (unsigned i = 0; i < N; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pages[i], 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* --- an accessed flag set while the library rewrites the leaf ------------------------- */

#define RACE_ROUNDS 20000

/* The leaf of va (4 KiB) in as, read through the machine's memory as an
 * MMU walks it. */
static uint64_t *leaf_of(struct fixture *f, struct kmm_aspace *as, uint64_t va, unsigned levels)
{
    uintptr_t dm = hosted_machine_direct_map(f->m);
    uint64_t table = kmm_aspace_root(as) & UINT64_C(0x000ffffffffff000);
    for (unsigned l = levels;; l--) {
        uint64_t *e = (uint64_t *)(dm + (uintptr_t)table) + ((va >> (12 + 9 * (l - 1))) & 511);
        if (l == 1)
            return e;
        table = *e & UINT64_C(0x000ffffffffff000);
    }
}

/* Another CPU's MMU: each round, after a varying delay, it sets the leaf's
 * accessed flag with a locked update, as a walk that then caches the
 * translation does. */
struct racing_mmu {
    uint64_t *leaf;
    atomic_uint round, done;
    atomic_bool quit;
};

static void *racing_mmu(void *arg)
{
    struct racing_mmu *x = arg;
    unsigned seen = 0, seed = 1;
    while (!atomic_load(&x->quit)) {
        unsigned r = atomic_load(&x->round);
        if (r == seen)
            continue;
        seen = r;
        seed = seed * 1103515245u + 12345u;
        for (volatile unsigned d = (seed >> 16) % 4000; d; d--)
            ;
        __atomic_fetch_or(x->leaf, UINT64_C(0x20), __ATOMIC_SEQ_CST);
        atomic_store(&x->done, r);
    }
    return 0;
}

/* A protect that changes nothing for the TLB reads the leaf and writes it
 * back: an accessed flag the MMU set in between must not be lost, or the
 * next unmap would skip the invalidation of a page a TLB holds. (With a
 * thread playing the MMU on entries the library reads without atomics:
 * ThreadSanitizer would report the hardware's part as a race.) */
KTEST(vm_tlb, with_the_accessed_rule_a_flag_set_during_a_protect_is_kept)
{
#if defined(__SANITIZE_THREAD__)
    ktest_skip(t, "a thread plays the MMU on the tables, which ThreadSanitizer cannot tell apart");
    return;
#endif
    struct fixture f;
    KT_ASSERT(t, setup_with(&f, 4, true));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0), keep = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa && keep);
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP + PAGE, keep, PAGE, KMM_PROT_READ), KMM_OK); /* table */
    KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ), KMM_OK);
    struct racing_mmu x = {.leaf = leaf_of(&f, f.ks, HEAP, 4)};
    pthread_t th;
    KT_ASSERT_EQ(t, pthread_create(&th, 0, racing_mmu, &x), 0);
    unsigned lost = 0, missed = 0;
    for (unsigned r = 1; r <= RACE_ROUNDS; r++) {
        atomic_store(&x.round, r);
        KT_ASSERT_EQ(t, kmm_vm_protect(f.ks, HEAP, PAGE, KMM_PROT_READ), KMM_OK); /* same rights */
        while (atomic_load(&x.done) != r)
            ;
        size_t from = hosted_tlb_log_count(f.m);
        bool accessed = (__atomic_load_n(x.leaf, __ATOMIC_SEQ_CST) & 0x20) != 0;
        KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, HEAP, PAGE), KMM_OK);
        lost += !accessed;
        missed += !invalidated(f.m, from, HEAP, NULL);
        KT_ASSERT_EQ(t, kmm_vm_map(f.ks, HEAP, pa, PAGE, KMM_PROT_READ), KMM_OK); /* fresh */
        if (lost || missed)
            break;
    }
    atomic_store(&x.quit, true);
    pthread_join(th, 0);
    KT_EXPECT_EQ(t, lost, 0);
    KT_EXPECT_EQ(t, missed, 0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(f.ks, HEAP, 2 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, keep, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}
