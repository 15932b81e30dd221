/*
 * test_vm_threads.c - the page-table engine with threads acting as CPUs:
 * concurrent range operations on one address space (non-overlapping
 * ranges that share their upper tables) keep every mapping exact and every
 * count right, with 4 and with 5 paging levels. Hosted; meant to run under
 * ThreadSanitizer as well.
 */
#include <pthread.h>

#include "fixture.h"
#include "hosted.h"
#include "ktest.h"
#include "ktest_levels.h"
#include "spin_barrier.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define MIB         (UINT64_C(1) << 20)
#define PAGE        UINT64_C(4096)
#define THREADS     4
#define SLICE_PAGES 768 /* 3 MiB per thread: they share page directories */
#define STEPS       3000

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

struct worker {
    struct kmm *k;
    struct kmm_aspace *as;
    unsigned cpu;
    uint64_t base;
    uint64_t seed;
    uint64_t pa[SLICE_PAGES]; /* the shadow: 0 unmapped */
    unsigned prot[SLICE_PAGES];
    unsigned long wrong; /* operations whose result differed from the shadow */
};

static void *work(void *arg)
{
    struct worker *w = arg;
    if (!hosted_cpu_enter(w->cpu)) {
        w->wrong++;
        return NULL;
    }
    for (int step = 0; step < STEPS; step++) {
        unsigned i = (unsigned)(kt_rng(&w->seed) % SLICE_PAGES);
        uint64_t va = w->base + (uint64_t)i * PAGE;
        unsigned prot = KMM_PROT_READ | (unsigned)(kt_rng(&w->seed) % 2) * KMM_PROT_WRITE;
        switch (kt_rng(&w->seed) % 4) {
        case 0: /* map an owned page of our own */
        case 1: {
            uint64_t pa = kmm_page_alloc(w->k, 0, 0);
            if (!pa)
                break;
            int err = kmm_vm_map(w->as, va, pa, PAGE, prot | KMM_MAP_OWNED);
            w->wrong += err != (w->pa[i] ? KMM_EBUSY : KMM_OK);
            kmm_page_free(w->k, pa, 0); /* the mapping holds it, or it goes back */
            if (err == KMM_OK) {
                w->pa[i] = pa;
                w->prot[i] = prot;
            }
            break;
        }
        case 2:
            w->wrong += kmm_vm_unmap(w->as, va, PAGE) != (w->pa[i] ? KMM_OK : KMM_ENOENT);
            w->pa[i] = 0;
            break;
        default:
            w->wrong += kmm_vm_protect(w->as, va, PAGE, prot) != (w->pa[i] ? KMM_OK : KMM_ENOENT);
            if (w->pa[i])
                w->prot[i] = prot;
            break;
        }
        /* Our own pages translate as we left them, whatever the others do. */
        unsigned j = (unsigned)(kt_rng(&w->seed) % SLICE_PAGES);
        struct kmm_vm_translation tr;
        int err = kmm_vm_translate(w->as, w->base + (uint64_t)j * PAGE, &tr);
        if (w->pa[j])
            w->wrong += err != KMM_OK || tr.pa != w->pa[j] || tr.prot != w->prot[j] || !tr.owned;
        else
            w->wrong += err != KMM_ENOENT;
    }
    for (unsigned i = 0; i < SLICE_PAGES; i++)
        if (w->pa[i])
            w->wrong += kmm_vm_unmap(w->as, w->base + (uint64_t)i * PAGE, PAGE) != KMM_OK;
    kmm_page_drain_cpu(w->k);
    hosted_cpu_exit();
    return NULL;
}

static void run(struct ktest *t, bool user_space, unsigned levels)
{
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {.port = hosted_machine_port(m),
                             .regions = ram,
                             .region_count = 1,
                             .cpu_count = THREADS + 1,
                             .paging_levels = levels};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    kmm_page_drain_cpu(k);
    struct kmm_page_stats p0, p1;
    kmm_page_stats(k, &p0); /* before the user space: it is destroyed again */
    struct kmm_aspace *as = kmm_kernel_aspace(k);
    if (user_space)
        KT_ASSERT_EQ(t, kmm_aspace_create(k, &as), KMM_OK);
    struct kmm_vm_stats before, after;
    kmm_vm_stats(as, &before);

    static struct worker w[THREADS];
    pthread_t th[THREADS];
    uint64_t base = user_space ? UINT64_C(0x0000000040000000) : UINT64_C(0xffffffff90000000);
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.k = k,
                               .as = as,
                               .cpu = i + 1,
                               .base = base + (uint64_t)i * SLICE_PAGES * PAGE,
                               .seed = 0x7e57 + i};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < THREADS; i++)
        KT_EXPECT_EQ(t, w[i].wrong, 0);

    kmm_vm_stats(as, &after);
    KT_EXPECT_EQ(t, after.mapped_pages, 0);
    KT_EXPECT_EQ(t, after.table_bytes, before.table_bytes); /* every table freed again */
    if (user_space)
        KT_EXPECT_EQ(t, kmm_aspace_destroy(k, as), KMM_OK);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &p1);
    KT_EXPECT_EQ(t, p1.free_pages, p0.free_pages);
    KT_EXPECT_HEALTHY(t, k);
    kmm_fini(k);
    hosted_machine_destroy(m);
}

KTEST_LEVELS(vm_threads, four_cpus_changing_the_kernel_half_at_once_stay_exact)
{
    run(t, false, levels);
}

KTEST_LEVELS(vm_threads, four_cpus_changing_one_user_space_at_once_stay_exact)
{
    run(t, true, levels);
}

/* --- two CPUs faulting on one page ----------------------------------------------------- */

#define FAULT_ROUNDS 200

struct faulter {
    struct kmm *k;
    struct kmm_aspace *as;
    unsigned cpu;
    uint64_t va;
    struct spin_barrier *go;
    unsigned kinds[KMM_FAULT_SPURIOUS + 1]; /* what each round's fault did */
    unsigned refused;
};

static void *fault_rounds(void *arg)
{
    struct faulter *w = arg;
    if (!hosted_cpu_enter(w->cpu)) {
        w->refused++;
        return NULL;
    }
    for (unsigned r = 0; r < FAULT_ROUNDS; r++) {
        spin_wait(w->go); /* the main thread set round r's page up */
        enum kmm_vm_fault_kind how;
        uint64_t va = w->va + (uint64_t)r * PAGE;
        if (kmm_vm_fault(w->as, va, KMM_FAULT_WRITE | KMM_FAULT_USER, &how) == KMM_OK)
            w->kinds[how]++;
        else
            w->refused++;
    }
    kmm_page_drain_cpu(w->k);
    hosted_cpu_exit();
    return NULL;
}

/*
 * Round by round, two CPUs take a write fault on the same page at once:
 * demand-zero pages, and copy-on-write pages of a clone. Each fault is
 * handled; exactly one of the two resolves the page (the other finds it
 * resolved: SPURIOUS), no page is mapped twice or leaked, and kmm_check
 * is clean.
 */
static void race_faults(struct ktest *t, unsigned levels, bool cow)
{
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {.port = hosted_machine_port(m),
                             .regions = ram,
                             .region_count = 1,
                             .cpu_count = 3,
                             .paging_levels = levels};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    kmm_page_drain_cpu(k);
    struct kmm_page_stats p0, p1;
    kmm_page_stats(k, &p0);
    const uint64_t va = UINT64_C(0x0000000040000000);
    const unsigned urw = KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER;
    struct kmm_aspace *parent, *as;
    KT_ASSERT_EQ(t, kmm_aspace_create(k, &parent), KMM_OK);
    if (cow) { /* every page owned by the parent, then shared with the child */
        for (unsigned r = 0; r < FAULT_ROUNDS; r++) {
            uint64_t pa = kmm_page_alloc(k, 0, KMM_GFP_ZERO);
            KT_ASSERT(t, pa != 0);
            KT_ASSERT_EQ(t, kmm_vm_map(parent, va + r * PAGE, pa, PAGE, urw | KMM_MAP_OWNED),
                         KMM_OK);
            KT_ASSERT_EQ(t, kmm_page_free(k, pa, 0), KMM_OK);
        }
        KT_ASSERT_EQ(t, kmm_aspace_clone(parent, &as), KMM_OK);
    } else {
        as = parent;
        KT_ASSERT_EQ(t, kmm_vm_map(as, va, 0, FAULT_ROUNDS * PAGE, urw | KMM_MAP_DEMAND), KMM_OK);
    }
    static struct spin_barrier go;
    static struct faulter w[2];
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++) {
        w[i] = (struct faulter){.k = k, .as = as, .cpu = i + 1, .va = va, .go = &go};
        pthread_create(&th[i], NULL, fault_rounds, &w[i]);
    }
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    enum kmm_vm_fault_kind resolved = cow ? KMM_FAULT_COW_COPY : KMM_FAULT_DEMAND_ZERO;
    KT_EXPECT_EQ(t, w[0].refused + w[1].refused, 0);
    KT_EXPECT_EQ(t, w[0].kinds[resolved] + w[1].kinds[resolved], FAULT_ROUNDS);
    KT_EXPECT_EQ(t, w[0].kinds[KMM_FAULT_SPURIOUS] + w[1].kinds[KMM_FAULT_SPURIOUS], FAULT_ROUNDS);
    struct kmm_vm_fault_stats fs;
    kmm_vm_fault_stats(as, &fs);
    KT_EXPECT_EQ(t, fs.cow_pages + fs.demand_pages, 0);
    KT_EXPECT_HEALTHY(t, k);
    if (cow)
        KT_EXPECT_EQ(t, kmm_aspace_destroy(k, as), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(k, parent), KMM_OK);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &p1);
    KT_EXPECT_EQ(t, p1.free_pages, p0.free_pages);
    KT_EXPECT_HEALTHY(t, k);
    kmm_fini(k);
    hosted_machine_destroy(m);
}

KTEST_LEVELS(vm_threads, two_cpus_faulting_on_one_demand_zero_page_map_it_once)
{
    race_faults(t, levels, false);
}

KTEST_LEVELS(vm_threads, two_cpus_writing_to_one_copy_on_write_page_copy_it_once)
{
    race_faults(t, levels, true);
}
