/*
 * test_vm_tlb.c - TLB correctness of the page-table engine, read from the
 * hosted port's TLB-event log: every unmap and downgrade is followed by the
 * invalidation it needs, no frame or table reaches the page allocator before
 * the invalidation that covers it, and mapped memory is usable at its
 * address (the hosted mirror window). Hosted only.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)
#define HEAP UINT64_C(0xffffffff90000000)
#define USER UINT64_C(0x0000000000400000)

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

struct fixture {
    struct hosted_machine *m;
    struct kmm *k;
    struct kmm_aspace *ks;
};

static bool setup(struct fixture *f)
{
    f->m = hosted_machine_from_map(ram, 1, 16 * MIB);
    if (!f->m)
        return false;
    struct kmm_config cfg = {
        .port = hosted_machine_port(f->m), .regions = ram, .region_count = 1, .cpu_count = 1};
    if (kmm_init(&cfg, &f->k) != KMM_OK)
        return false;
    f->ks = kmm_kernel_aspace(f->k);
    return true;
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

KTEST(vm_tlb, an_unmap_invalidates_before_its_frame_and_tables_are_freed)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
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
    KT_EXPECT_EQ(t, w.free_at_first, before);         /* nothing freed before the flush */
    KT_EXPECT_EQ(t, free_pages(f.k), before + 1 + 2); /* the frame, a PT and a PD after */
    teardown(&f);
}

KTEST(vm_tlb, a_downgrade_invalidates_and_an_upgrade_does_not)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
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

KTEST(vm_tlb, a_large_unmap_flushes_everything_once)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
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

KTEST(vm_tlb, a_user_space_unmap_shoots_down_its_own_root_without_globals)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
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
    KT_EXPECT_EQ(t, kmm_aspace_destroy(us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    teardown(&f);
}

KTEST(vm_tlb, a_callers_gather_holds_frames_until_it_is_finished)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
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
    KT_EXPECT_EQ(t, free_pages(f.k), before + 2 + 2);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    teardown(&f);
}

/* --- the mirror window: what the library maps is usable at its address ---- */

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t armed;

static void on_fault(int sig)
{
    (void)sig;
    if (!armed)
        abort();
    siglongjmp(fault_jmp, 1);
}

static bool write_faults(volatile uint8_t *p)
{
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_fault;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, &old);
    bool faulted = true;
    armed = 1;
    if (sigsetjmp(fault_jmp, 1) == 0) {
        *p = 1;
        faulted = false;
    }
    armed = 0;
    sigaction(SIGSEGV, &old, NULL);
    return faulted;
}

KTEST(vm_tlb, kernel_mappings_in_the_mirror_window_are_real_memory)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
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
    KT_EXPECT(t, write_faults(va));
    KT_EXPECT(t, !write_faults(va + PAGE));
    KT_ASSERT_EQ(t, kmm_vm_unmap(f.ks, win, 2 * PAGE), KMM_OK);
    KT_EXPECT(t, write_faults(va + PAGE));
    KT_EXPECT_EQ(t, kmm_page_free(f.k, a, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, b, 0), KMM_OK);
    teardown(&f);
}
