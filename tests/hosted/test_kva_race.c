/*
 * test_kva_race.c - kernel virtual areas against calls that drop their
 * locks half-way: two threads acting as CPUs, one of them held inside a TLB
 * invalidation (the hosted port's TLB observer) while the other one works on
 * the window. Hosted only (threads, the TLB observer).
 */
#include <pthread.h>

#include "fixture.h"
#include "hosted.h"
#include "window_hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

struct fixture {
    struct hosted_machine *m;
    struct kmm *k;
    struct kmm_aspace *ks;
    uint64_t base; /* the window's */
};

/* An instance with two CPUs whose window is the first 4 MiB of the mirror
 * window. */
static bool setup(struct fixture *f)
{
    f->m = hosted_machine_from_map(ram, 1, 16 * MIB);
    if (!f->m)
        return false;
    uint64_t mirror;
    hosted_machine_mirror_window(f->m, &f->base, &mirror);
    struct kmm_config cfg = {.port = hosted_machine_port(f->m),
                             .regions = ram,
                             .region_count = 1,
                             .cpu_count = 2,
                             .kva_base = f->base,
                             .kva_size = 4 * MIB};
    if (kmm_init(&cfg, &f->k) != KMM_OK) {
        hosted_machine_destroy(f->m);
        return false;
    }
    f->ks = kmm_kernel_aspace(f->k);
    kmm_page_drain_cpu(f->k);
    return true;
}

static void teardown(struct fixture *f)
{
    kmm_fini(f->k);
    hosted_machine_destroy(f->m);
}

/* --- a second CPU that runs one job inside the first CPU's invalidation ------------ */

enum stage { STAGE_WAIT, STAGE_GO, STAGE_DONE, STAGE_CANCEL };

/*
 * CPU 1 waits until CPU 0's first shootdown (the observer below), then runs
 * job while CPU 0 stays inside the invalidation, between two lock holds of
 * whatever call it is in.
 */
struct gap {
    struct kmm *k;
    void (*job)(struct gap *g);
    void *arg, *result;
    int err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum stage stage;
    bool fired; /* CPU 0's thread only */
};

static void *second_cpu(void *arg)
{
    struct gap *g = arg;
    bool entered = hosted_cpu_enter(1);
    pthread_mutex_lock(&g->mu);
    while (g->stage == STAGE_WAIT)
        pthread_cond_wait(&g->cv, &g->mu);
    bool go = g->stage == STAGE_GO;
    pthread_mutex_unlock(&g->mu);
    if (entered && go)
        g->job(g);
    pthread_mutex_lock(&g->mu);
    g->stage = STAGE_DONE;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (entered) {
        kmm_page_drain_cpu(g->k);
        hosted_cpu_exit();
    }
    return NULL;
}

/* The TLB observer: at CPU 0's first shootdown, CPU 1 runs its job and CPU
 * 0 waits for it there. */
static void hold_the_gap(void *ctx, const struct hosted_tlb_event *e)
{
    struct gap *g = ctx;
    if (e->cpu != 0 || e->op != HOSTED_TLB_SHOOTDOWN || g->fired)
        return;
    g->fired = true;
    pthread_mutex_lock(&g->mu);
    g->stage = STAGE_GO;
    pthread_cond_broadcast(&g->cv);
    while (g->stage != STAGE_DONE)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gap_start(struct fixture *f, struct gap *g, void (*job)(struct gap *), void *arg,
                      pthread_t *th)
{
    *g = (struct gap){.k = f->k, .job = job, .arg = arg, .stage = STAGE_WAIT};
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    pthread_create(th, NULL, second_cpu, g);
    hosted_tlb_observe(f->m, hold_the_gap, g);
}

/* Ends the observation; CPU 1 gives up if the gap never came. Returns
 * whether it came. */
static bool gap_end(struct fixture *f, struct gap *g, pthread_t th)
{
    hosted_tlb_observe(f->m, NULL, NULL);
    pthread_mutex_lock(&g->mu);
    if (g->stage == STAGE_WAIT)
        g->stage = STAGE_CANCEL;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    return g->fired;
}

static void vmalloc_one_page(struct gap *g)
{
    g->result = kmm_vmalloc(g->k, PAGE, 0);
}

static void vfree_arg(struct gap *g)
{
    g->err = kmm_vfree(g->k, g->arg);
}

/* --- a replacing map of the window ------------------------------------------------ */

/* Owned pages a replacing map goes over: one more than its gather holds, so
 * it finishes the gather once, with its lock dropped, half-way. */
#define REPLACED_OWNED (KMM_TLB_GATHER_FREES + 1)
/* The replaced range: those pages, then an unmapped tail with room for a
 * one-page area and its guard page. */
#define REPLACED_PAGES (REPLACED_OWNED + 2)

KTEST(kva_race, a_replace_keeps_its_window_range_from_areas_set_up_while_it_drops_its_lock)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
    struct kmm_page_stats before = kt_window_pstats(f.k);
    unsigned rw = KMM_PROT_READ | KMM_PROT_WRITE;
    /* The kernel's own owned pages at the window's start (outside any area:
     * anybody's to map), then a replacing map over them and the free tail. */
    for (uint64_t i = 0; i < REPLACED_OWNED; i++) {
        uint64_t pa = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pa != 0);
        KT_ASSERT_EQ(t, kmm_vm_map(f.ks, f.base + i * PAGE, pa, PAGE, rw | KMM_MAP_OWNED), KMM_OK);
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK); /* the mapping holds it */
    }
    uint64_t run = kmm_run_alloc(f.k, REPLACED_PAGES, 0, 0, 0);
    KT_ASSERT(t, run != 0);

    /* CPU 1 allocates an area while the replace has its lock dropped. */
    struct gap g;
    pthread_t th;
    gap_start(&f, &g, vmalloc_one_page, NULL, &th);
    int err = kmm_vm_map(f.ks, f.base, run, REPLACED_PAGES * PAGE, rw | KMM_MAP_REPLACE);
    bool came = gap_end(&f, &g, th);
    KT_EXPECT(t, came);
    KT_EXPECT_EQ(t, err, KMM_OK);
    uint64_t area = (uint64_t)(uintptr_t)g.result;
    KT_ASSERT(t, area != 0);

    /* The area and its guard page lie beyond the replaced range, which the
     * replace maps whole; the area's page is still its own. */
    KT_EXPECT(t, area >= f.base + REPLACED_PAGES * PAGE);
    struct kmm_vm_translation tr;
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, area, &tr), KMM_OK);
    KT_EXPECT(t, tr.owned && tr.prot == KMM_VMALLOC_PROT);
    KT_EXPECT_EQ(t, kmm_vm_translate(f.ks, f.base + (REPLACED_PAGES - 1) * PAGE, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, run + (REPLACED_PAGES - 1) * PAGE);
    KT_EXPECT_HEALTHY(t, f.k);

    KT_EXPECT_EQ(t, kmm_vfree(f.k, g.result), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(f.ks, f.base, REPLACED_PAGES * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, run, REPLACED_PAGES), KMM_OK);
    struct kmm_page_stats after = kt_window_pstats(f.k);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* --- a free racing with a free ----------------------------------------------------- */

KTEST(kva_race, a_second_vfree_while_the_first_one_unmaps_is_counted_as_a_double_free)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
    struct kmm_page_stats before = kt_window_pstats(f.k);
    void *p = kmm_vmalloc(f.k, 2 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    struct kmm_misuse_stats m0, m1;
    kmm_misuse_stats(f.k, &m0);
    /* CPU 1 frees the area again while CPU 0's free invalidates its pages. */
    struct gap g;
    pthread_t th;
    gap_start(&f, &g, vfree_arg, p, &th);
    int err = kmm_vfree(f.k, p);
    KT_EXPECT(t, gap_end(&f, &g, th));
    KT_EXPECT_EQ(t, err, KMM_OK);
    KT_EXPECT_EQ(t, g.err, KMM_ESTATE);
    kmm_misuse_stats(f.k, &m1);
    KT_EXPECT_EQ(t, m1.total, m0.total + 1);
    KT_EXPECT_EQ(t, m1.count[KMM_LAYER_KVA][KMM_MISUSE_DOUBLE_FREE],
                 m0.count[KMM_LAYER_KVA][KMM_MISUSE_DOUBLE_FREE] + 1);
    KT_EXPECT(t, ktest_contains(hosted_log_last_error(f.m), "double free"));
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(f.k, &vs);
    KT_EXPECT_EQ(t, vs.areas, 0);
    struct kmm_page_stats after = kt_window_pstats(f.k);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* --- the raw-area answer against a window that changes ------------------------------ */

#define HINT_ROUNDS   3000
#define HINT_RAW_PAGE 8 /* the mapping CPU's raw area */

struct hint_cpu {
    struct fixture *f;
    unsigned cpu;
    uint64_t raw, pa;
    unsigned long wrong; /* calls whose answer was not the one the window gives */
};

/* CPU 0: each page of its raw area mapped and unmapped, one call each,
 * over and over; the window's answer is its own every time. */
static void *map_own_area(void *arg)
{
    struct hint_cpu *c = arg;
    if (!hosted_cpu_enter(c->cpu)) {
        c->wrong++;
        return NULL;
    }
    for (unsigned r = 0; r < HINT_ROUNDS; r++)
        for (uint64_t i = 0; i < HINT_RAW_PAGE; i++) {
            uint64_t va = c->raw + i * PAGE;
            c->wrong += kmm_vm_map(c->f->ks, va, c->pa, PAGE, KMM_PROT_READ) != KMM_OK;
            c->wrong += kmm_vm_unmap(c->f->ks, va, PAGE) != KMM_OK;
        }
    kmm_page_drain_cpu(c->f->k);
    hosted_cpu_exit();
    return NULL;
}

/* CPU 1: areas come and go beside it; a map onto a new area's guard page
 * is refused every time. */
static void *change_the_window(void *arg)
{
    struct hint_cpu *c = arg;
    if (!hosted_cpu_enter(c->cpu)) {
        c->wrong++;
        return NULL;
    }
    for (unsigned r = 0; r < HINT_ROUNDS; r++) {
        void *p = kmm_vmalloc(c->f->k, PAGE, 0);
        uint64_t raw = 0;
        if (!p || kmm_kva_alloc(c->f->k, PAGE, &raw) != KMM_OK) {
            c->wrong++;
            kmm_vfree(c->f->k, p);
            break;
        }
        uint64_t guard = (uint64_t)(uintptr_t)p + PAGE;
        c->wrong += kmm_vm_map(c->f->ks, guard, c->pa, PAGE, KMM_PROT_READ) != KMM_EBUSY;
        c->wrong += kmm_vm_map(c->f->ks, raw, c->pa, PAGE, KMM_PROT_READ) != KMM_OK;
        c->wrong += kmm_vm_unmap(c->f->ks, raw, PAGE) != KMM_OK;
        c->wrong += kmm_kva_free(c->f->k, raw) != KMM_OK;
        c->wrong += kmm_vfree(c->f->k, p) != KMM_OK;
    }
    kmm_page_drain_cpu(c->f->k);
    hosted_cpu_exit();
    return NULL;
}

KTEST(kva_race, a_raw_areas_answer_holds_while_another_cpu_changes_the_window)
{
    struct fixture f;
    KT_ASSERT(t, setup(&f));
    struct kmm_page_stats before = kt_window_pstats(f.k);
    uint64_t raw = 0, pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_kva_alloc(f.k, HINT_RAW_PAGE * PAGE, &raw), KMM_OK);
    struct hint_cpu c[2] = {{.f = &f, .cpu = 0, .raw = raw, .pa = pa},
                            {.f = &f, .cpu = 1, .pa = pa}};
    pthread_t th[2];
    pthread_create(&th[0], NULL, map_own_area, &c[0]);
    pthread_create(&th[1], NULL, change_the_window, &c[1]);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    KT_EXPECT_EQ(t, c[0].wrong, 0);
    KT_EXPECT_EQ(t, c[1].wrong, 0);
    struct kmm_vm_stats vs;
    kmm_vm_stats(f.ks, &vs);
    KT_EXPECT_EQ(t, vs.misuse, HINT_ROUNDS); /* the guard-page maps, each counted */
    KT_EXPECT_EQ(t, kmm_kva_free(f.k, raw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    KT_EXPECT_EQ(t, kt_window_pstats(f.k).free_pages, before.free_pages);
    teardown(&f);
}
