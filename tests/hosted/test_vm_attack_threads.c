/*
 * test_vm_attack_threads.c - the newest calls attacked where only a hosted
 * build can: threads acting as CPUs that fault on the two sides of one
 * copy-on-write frame at once, clone a space while its pages are being
 * faulted in, and unmap one kmm_vm_map_ram range twice at once; and a
 * clone that meets a frame already at the most owned mappings a frame can
 * have (set through the library's private headers, as test_page_refs.c
 * does: 2^32 real mappings would take too long). Each ends with every
 * frame back and kmm_check clean; meant to run under ThreadSanitizer too.
 */
#include <pthread.h>

#include "fixture.h"
#include "hosted.h"
#include "ktest.h"
#include "ktest_levels.h"
#include "spin_barrier.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "internal.h"
#include "pmm/pmm.h"

#define MIB    (UINT64_C(1) << 20)
#define PAGE   UINT64_C(4096)
#define USER   UINT64_C(0x0000000040000000)
#define URW    (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER)
#define UWR    (KMM_FAULT_WRITE | KMM_FAULT_USER)
#define ROUNDS 200u

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

struct fx {
    struct hosted_machine *m;
    struct kmm *k;
    uint64_t free0;
};

/* An instance with 3 CPUs (the main thread is CPU 0) and, where the
 * machine has a mirror window, a kernel virtual area window in it. */
/* With accessed, the machine plays an MMU that caches only accessed
 * leaves (hosted_machine_accessed_rule): a leaf nobody reads then needs no
 * invalidation. */
static bool up_with(struct fx *x, unsigned levels, bool accessed)
{
    x->m = hosted_machine_from_map(ram, 1, 16 * MIB);
    if (!x->m)
        return false;
    hosted_machine_accessed_rule(x->m, accessed);
    uint64_t base, mirror;
    hosted_machine_mirror_window(x->m, &base, &mirror);
    struct kmm_config cfg = {.port = hosted_machine_port(x->m),
                             .regions = ram,
                             .region_count = 1,
                             .cpu_count = 3,
                             .paging_levels = levels,
                             .kva_base = mirror ? base : 0,
                             .kva_size = mirror ? 8 * MIB : 0};
    if (kmm_init(&cfg, &x->k) != KMM_OK) {
        hosted_machine_destroy(x->m);
        return false;
    }
    x->free0 = kt_free_pages(x->k);
    return true;
}

static bool up(struct fx *x, unsigned levels)
{
    return up_with(x, levels, false);
}

static void down(struct ktest *t, struct fx *x)
{
    kmm_vm_map_ram_drain(x->k);
    KT_EXPECT_EQ(t, kt_free_pages(x->k), x->free0);
    KT_EXPECT_HEALTHY(t, x->k);
    kmm_fini(x->k);
    hosted_machine_destroy(x->m);
}

/* n owned pages at USER of as, page i filled with fill + i. */
static bool map_owned(struct fx *x, struct kmm_aspace *as, unsigned n, uint8_t fill)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t pa = kmm_page_alloc(x->k, 0, 0);
        if (!pa)
            return false;
        kt_fill(kmm_phys_to_virt(x->k, pa), (uint8_t)(fill + i), PAGE);
        if (kmm_vm_map(as, USER + i * PAGE, pa, PAGE, URW | KMM_MAP_OWNED) != KMM_OK)
            return false;
        kmm_page_free(x->k, pa, 0);
    }
    return true;
}

static struct kmm_vm_translation tr_of(struct kmm_aspace *as, uint64_t va)
{
    struct kmm_vm_translation tr = {0};
    kmm_vm_translate(as, va, &tr);
    return tr;
}

/* --- the two sides of one COW frame ---------------------------------------------------------- */

struct side {
    struct kmm *k;
    struct kmm_aspace *as;
    unsigned cpu;
    struct spin_barrier *go;
    unsigned kinds[KMM_FAULT_SPURIOUS + 1];
    unsigned refused;
};

static void *write_each_page(void *arg)
{
    struct side *s = arg;
    if (!hosted_cpu_enter(s->cpu)) {
        s->refused = ROUNDS;
        return NULL;
    }
    for (unsigned r = 0; r < ROUNDS; r++) {
        spin_wait(s->go);
        enum kmm_vm_fault_kind how;
        if (kmm_vm_fault(s->as, USER + r * PAGE, UWR, &how) == KMM_OK)
            s->kinds[how]++;
        else
            s->refused++;
    }
    kmm_page_drain_cpu(s->k);
    hosted_cpu_exit();
    return NULL;
}

/*
 * A parent and its child write the same COW page at once, round after
 * round, each on its own CPU (two spaces, two locks, one frame). Each
 * fault is handled; a page ends up private on both sides with the bytes
 * it had; the frame is reused by at most one side (a copy by the other),
 * and every frame comes back.
 */
KTEST_LEVELS(vm_attack_threads, parent_and_child_writing_one_cow_frame_at_once_each_get_their_own)
{
    struct fx x;
    KT_ASSERT(t, up(&x, levels));
    struct kmm_aspace *p, *c;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &p), KMM_OK);
    KT_ASSERT(t, map_owned(&x, p, ROUNDS, 'a'));
    KT_ASSERT_EQ(t, kmm_aspace_clone(p, &c), KMM_OK);
    static struct spin_barrier go;
    static struct side s[2];
    struct kmm_aspace *as[2] = {p, c};
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++) {
        s[i] = (struct side){.k = x.k, .as = as[i], .cpu = i + 1, .go = &go};
        pthread_create(&th[i], NULL, write_each_page, &s[i]);
    }
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, s[0].refused + s[1].refused, 0);
    unsigned reuse = s[0].kinds[KMM_FAULT_COW_REUSE] + s[1].kinds[KMM_FAULT_COW_REUSE];
    unsigned copy = s[0].kinds[KMM_FAULT_COW_COPY] + s[1].kinds[KMM_FAULT_COW_COPY];
    KT_EXPECT_EQ(t, reuse + copy, 2 * ROUNDS);
    KT_EXPECT(t, copy >= ROUNDS);
    for (unsigned r = 0; r < ROUNDS; r++) {
        uint64_t va = USER + r * PAGE;
        struct kmm_vm_translation a = tr_of(p, va), b = tr_of(c, va);
        KT_EXPECT(t, !a.cow && !b.cow && a.owned && b.owned && a.pa != b.pa);
        const uint8_t *pa = kmm_phys_to_virt(x.k, a.pa), *pb = kmm_phys_to_virt(x.k, b.pa);
        KT_EXPECT(t, pa[0] == (uint8_t)('a' + r) && pb[PAGE - 1] == (uint8_t)('a' + r));
    }
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, c), KMM_OK);
    down(t, &x);
}

/* --- a clone while the parent's pages are faulted in ------------------------------------- */

struct cloner {
    struct kmm *k;
    struct kmm_aspace *p;
    unsigned cpu;
    atomic_bool *stop;
    unsigned clones, failed;
};

static void *clone_again_and_again(void *arg)
{
    struct cloner *w = arg;
    if (!hosted_cpu_enter(w->cpu)) {
        w->failed++;
        return NULL;
    }
    while (!atomic_load(w->stop)) {
        struct kmm_aspace *c;
        if (kmm_aspace_clone(w->p, &c) != KMM_OK || kmm_aspace_destroy(w->k, c) != KMM_OK)
            w->failed++;
        w->clones++;
    }
    kmm_page_drain_cpu(w->k);
    hosted_cpu_exit();
    return NULL;
}

struct toucher {
    struct kmm *k;
    struct kmm_aspace *p;
    unsigned cpu;
    atomic_bool *stop;
    unsigned kinds[KMM_FAULT_SPURIOUS + 1];
    unsigned refused;
};

/* Faults each demand-zero page of the parent in for a write twice: the
 * first maps it, the second finds it writable (SPURIOUS) or, if a clone
 * came in between, COW (a copy while the child lives, else the frame
 * back). */
static void *touch_each_page(void *arg)
{
    struct toucher *w = arg;
    if (hosted_cpu_enter(w->cpu)) {
        for (unsigned r = 0; r < 2 * ROUNDS; r++) {
            enum kmm_vm_fault_kind how;
            if (kmm_vm_fault(w->p, USER + (r / 2) * PAGE, UWR, &how) == KMM_OK)
                w->kinds[how]++;
            else
                w->refused++;
        }
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    } else {
        w->refused++;
    }
    atomic_store(w->stop, true);
    return NULL;
}

/*
 * One CPU clones a space (and destroys the child) over and over while
 * another faults the space's demand-zero pages in for writes: every
 * fault is handled, the parent ends with every page its own and zeroed,
 * and every frame comes back.
 */
KTEST_LEVELS(vm_attack_threads, a_space_cloned_over_and_over_while_it_faults_keeps_every_page)
{
    struct fx x;
    KT_ASSERT(t, up(&x, levels));
    struct kmm_aspace *p;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &p), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(p, USER, 0, ROUNDS * PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    static atomic_bool stop;
    atomic_store(&stop, false);
    static struct cloner cl;
    static struct toucher to;
    cl = (struct cloner){.k = x.k, .p = p, .cpu = 1, .stop = &stop};
    to = (struct toucher){.k = x.k, .p = p, .cpu = 2, .stop = &stop};
    pthread_t th[2];
    pthread_create(&th[0], NULL, clone_again_and_again, &cl);
    pthread_create(&th[1], NULL, touch_each_page, &to);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, cl.failed, 0);
    KT_EXPECT_EQ(t, to.refused, 0);
    KT_EXPECT_EQ(t, to.kinds[KMM_FAULT_DEMAND_ZERO], ROUNDS);
    ktest_diag(t, "%u clones; second writes: %u spurious, %u reuses, %u copies", cl.clones,
               to.kinds[KMM_FAULT_SPURIOUS], to.kinds[KMM_FAULT_COW_REUSE],
               to.kinds[KMM_FAULT_COW_COPY]);
    KT_EXPECT_EQ(t,
                 to.kinds[KMM_FAULT_SPURIOUS] + to.kinds[KMM_FAULT_COW_REUSE] +
                     to.kinds[KMM_FAULT_COW_COPY],
                 ROUNDS);
    /* Every child is gone: each page is its frame's only mapping, owned,
     * zero but for nothing written. */
    for (unsigned r = 0; r < ROUNDS; r++) {
        struct kmm_vm_translation tr = tr_of(p, USER + r * PAGE);
        const uint8_t *b = kmm_phys_to_virt(x.k, tr.pa);
        KT_EXPECT(t, tr.owned && b[0] == 0 && b[PAGE - 1] == 0);
        if (tr.cow) /* a clone after its last write: its next write takes it back */
            KT_EXPECT_EQ(t, kmm_vm_fault(p, USER + r * PAGE, UWR, NULL), KMM_OK);
        KT_EXPECT(t, !tr_of(p, USER + r * PAGE).cow);
    }
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, p), KMM_OK);
    down(t, &x);
}

/* --- one range unmapped twice at once ------------------------------------------------------ */

struct unmapper {
    struct kmm *k;
    unsigned cpu, count;
    const uint64_t *pages; /* the first one maps each round's range (NULL: the other) */
    struct spin_barrier *go;
    void **range; /* the round's range */
    unsigned ok, absent, busy, other;
};

static void *unmap_each_round(void *arg)
{
    struct unmapper *w = arg;
    bool in = hosted_cpu_enter(w->cpu);
    for (unsigned r = 0; r < ROUNDS; r++) {
        if (w->pages)
            *w->range = in ? kmm_vm_map_ram(w->k, w->pages, w->count, KMM_PROT_READ) : 0;
        spin_wait(w->go); /* the range is mapped */
        int err = *w->range ? kmm_vm_unmap_ram(w->k, *w->range, w->count) : KMM_EINVAL;
        if (err == KMM_OK)
            w->ok++;
        else if (err == KMM_ENOENT)
            w->absent++;
        else if (err == KMM_ESTATE)
            w->busy++;
        else
            w->other++;
        spin_wait(w->go); /* both are done with it */
    }
    if (in) {
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    }
    return NULL;
}

/* Two CPUs unmap the same range of count pages at once, round after round
 * (the first maps it each time); with accessed, the machine plays an MMU
 * that caches only accessed leaves. Returns the unmappers' tallies. */
static void unmap_at_once(struct ktest *t, struct fx *x, unsigned count, struct unmapper *w)
{
    uint64_t pg[2] = {kmm_page_alloc(x->k, 0, 0), kmm_page_alloc(x->k, 0, 0)};
    KT_ASSERT(t, pg[0] && pg[1] && count <= 2);
    struct kmm_vmalloc_stats v0, v1;
    kmm_vmalloc_stats(x->k, &v0);
    static struct spin_barrier go;
    static void *range;
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++) {
        w[i] = (struct unmapper){.k = x->k,
                                 .cpu = i + 1,
                                 .count = count,
                                 .pages = i ? 0 : pg,
                                 .go = &go,
                                 .range = &range};
        pthread_create(&th[i], NULL, unmap_each_round, &w[i]);
    }
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, w[0].ok + w[1].ok, ROUNDS);
    KT_EXPECT_EQ(t, w[0].absent + w[1].absent + w[0].busy + w[1].busy, ROUNDS);
    KT_EXPECT_EQ(t, w[0].other + w[1].other, 0);
    ktest_diag(t, "double unmaps: %u while the first was at work, %u after", w[0].busy + w[1].busy,
               w[0].absent + w[1].absent);
    kmm_vmalloc_stats(x->k, &v1);
    KT_EXPECT_EQ(t, v1.misuse - v0.misuse, ROUNDS);
    KT_EXPECT_EQ(t, v1.map_ram_ranges, 0);
    KT_EXPECT_HEALTHY(t, x->k);
    kmm_page_free(x->k, pg[0], 0);
    kmm_page_free(x->k, pg[1], 0);
}

/*
 * Two CPUs unmap the same two-page range at once, round after round (the
 * first maps it each time): one of them unmaps it, the other is refused
 * as a double unmap (KMM_ESTATE while the first is at work, KMM_ENOENT
 * after), counted once in the window's misuse; the blocks stay exact.
 */
KTEST_LEVELS(vm_attack_threads, two_cpus_unmapping_one_map_ram_range_at_once_unmap_it_once)
{
    struct fx x;
    KT_ASSERT(t, up(&x, levels));
    static struct unmapper w[2];
    unmap_at_once(t, &x, 2, w);
    down(t, &x);
}

/*
 * The same where no TLB may hold the range (an MMU that caches only
 * accessed leaves, and nobody reads it), one page and two: the unmap that
 * wins gives the range back in the same lock hold that judged it, so the
 * other always finds no range there (KMM_ENOENT), never one at work.
 */
KTEST_LEVELS(vm_attack_threads, two_cpus_unmapping_one_unread_map_ram_range_at_once_unmap_it_once)
{
    for (unsigned count = 1; count <= 2; count++) {
        struct fx x;
        KT_ASSERT(t, up_with(&x, levels, true));
        static struct unmapper w[2];
        unmap_at_once(t, &x, count, w);
        KT_EXPECT_EQ(t, w[0].busy + w[1].busy, 0);
        down(t, &x);
    }
}

/* --- a clone at the mapping limit --------------------------------------------------------------
 */

/* A mapped frame's mapcount, set under the zone lock as the library would. */
static void set_mapcount(struct kmm *k, uint64_t pa, uint32_t n)
{
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    f->prev = n;
    kmm_unlock_irqrestore(&z->lock, s);
}

/*
 * The parent's second owned page has the most owned mappings a frame can:
 * the clone is refused (KMM_ESTATE, counted as a limit and logged) after
 * it took the first page's reference, which goes back with the half-built
 * child; the parent is left as it was (nothing COW), and with the count
 * back, a clone works.
 */
KTEST_LEVELS(vm_attack_threads, a_clone_meeting_a_frame_at_the_mapping_limit_changes_nothing)
{
    struct fx x;
    KT_ASSERT(t, up(&x, levels));
    struct kmm_aspace *p, *c = 0;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &p), KMM_OK);
    KT_ASSERT(t, map_owned(&x, p, 3, 'a'));
    uint64_t a = tr_of(p, USER).pa, b = tr_of(p, USER + PAGE).pa;
    set_mapcount(x.k, b, UINT32_MAX - 1);
    struct kmm_misuse_stats m0, m1;
    kmm_misuse_stats(x.k, &m0);
    uint64_t free0 = kt_free_pages(x.k);
    KT_EXPECT_EQ(t, kmm_aspace_clone(p, &c), KMM_ESTATE);
    kmm_misuse_stats(x.k, &m1);
    KT_EXPECT(t, c == 0);
    KT_EXPECT_EQ(
        t, m1.count[KMM_LAYER_VM][KMM_MISUSE_LIMIT] - m0.count[KMM_LAYER_VM][KMM_MISUSE_LIMIT], 1);
    KT_EXPECT_EQ(t, m1.total - m0.total, 1);
    KT_EXPECT_EQ(t, kt_free_pages(x.k), free0);
    struct kmm_vm_fault_stats fs;
    kmm_vm_fault_stats(p, &fs);
    KT_EXPECT(t, fs.cow_pages == 0 && fs.clones == 0);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT(t, !tr_of(p, USER + i * PAGE).cow);
    /* Nor can another owned mapping of it be made, by either path (a
     * single page, a replacing map), each refusal counted as a limit too. */
    struct kmm_aspace *ks = kmm_kernel_aspace(x.k);
    const uint64_t kva = UINT64_C(0xffffc00000000000);
    KT_EXPECT_EQ(t, kmm_vm_map(ks, kva, b, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_ESTATE);
    KT_EXPECT_EQ(t, kmm_vm_map(p, USER + 8 * PAGE, b, PAGE, URW | KMM_MAP_OWNED | KMM_MAP_REPLACE),
                 KMM_ESTATE);
    kmm_misuse_stats(x.k, &m0);
    KT_EXPECT_EQ(
        t, m0.count[KMM_LAYER_VM][KMM_MISUSE_LIMIT] - m1.count[KMM_LAYER_VM][KMM_MISUSE_LIMIT], 2);
    KT_EXPECT_EQ(t, tr_of(p, USER + 8 * PAGE).pa, 0);
    set_mapcount(x.k, b, 1);
    KT_EXPECT_HEALTHY(t, x.k);
    KT_ASSERT_EQ(t, kmm_aspace_clone(p, &c), KMM_OK);
    KT_EXPECT(t, tr_of(c, USER).pa == a && tr_of(c, USER + PAGE).cow);
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, p), KMM_OK);
    down(t, &x);
}

/* --- a populate and a free of one area at once, a drain among maps ------------------------- */

struct racer {
    struct kmm *k;
    unsigned cpu;
    struct spin_barrier *go;
    uint64_t *area; /* the round's raw area, made by the first racer */
    int results[ROUNDS];
};

static void *populate_each_round(void *arg)
{
    struct racer *w = arg;
    bool in = hosted_cpu_enter(w->cpu);
    for (unsigned r = 0; r < ROUNDS; r++) {
        if (kmm_kva_alloc(w->k, 3 * MIB, w->area) != KMM_OK)
            *w->area = 0;
        spin_wait(w->go); /* the area is there */
        w->results[r] = *w->area ? kmm_kva_populate(w->k, *w->area) : KMM_EINVAL;
        spin_wait(w->go); /* the other has tried to free it */
    }
    if (in) {
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    }
    return NULL;
}

static void *free_each_round(void *arg)
{
    struct racer *w = arg;
    bool in = hosted_cpu_enter(w->cpu);
    for (unsigned r = 0; r < ROUNDS; r++) {
        spin_wait(w->go);
        int err = *w->area ? kmm_kva_free(w->k, *w->area) : KMM_EINVAL;
        /* Refused while the populate ran: free it once it is done. */
        while (err == KMM_ESTATE)
            err = kmm_kva_free(w->k, *w->area);
        w->results[r] = err;
        spin_wait(w->go);
    }
    if (in) {
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    }
    return NULL;
}

/*
 * Round after round, one CPU makes a 3 MiB raw area and populates it while
 * another frees it: the free comes after the populate (and gives its
 * tables back), or meets it at work and is refused KMM_ESTATE until it is
 * done; the populate meets the free at work (KMM_ESTATE) or comes after it
 * (KMM_ENOENT). Every area is freed, every table comes back, and
 * kmm_check is clean.
 */
KTEST_LEVELS(vm_attack_threads, a_populate_and_a_free_of_one_area_at_once_leave_no_table_behind)
{
    struct fx x;
    KT_ASSERT(t, up(&x, levels));
    struct kmm_vm_stats s0, s1;
    kmm_vm_stats(kmm_kernel_aspace(x.k), &s0);
    static struct spin_barrier go;
    static uint64_t area;
    static struct racer w[2];
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++) {
        w[i] = (struct racer){.k = x.k, .cpu = i + 1, .go = &go, .area = &area};
        pthread_create(&th[i], NULL, i ? free_each_round : populate_each_round, &w[i]);
    }
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    unsigned populated = 0, absent = 0, busy = 0;
    for (unsigned r = 0; r < ROUNDS; r++) {
        KT_EXPECT_EQ(t, w[1].results[r], KMM_OK);
        populated += w[0].results[r] == KMM_OK;
        absent += w[0].results[r] == KMM_ENOENT;
        busy += w[0].results[r] == KMM_ESTATE;
    }
    KT_EXPECT_EQ(t, populated + absent + busy, ROUNDS);
    ktest_diag(t, "%u populated before the free, %u met the free at work, %u after it", populated,
               busy, absent);
    kmm_vm_stats(kmm_kernel_aspace(x.k), &s1);
    KT_EXPECT_EQ(t, s1.table_bytes, s0.table_bytes);
    KT_EXPECT_HEALTHY(t, x.k);
    down(t, &x);
}

struct churner {
    struct kmm *k;
    unsigned cpu;
    struct spin_barrier *go;
    atomic_bool *mapped; /* the round's map and unmap are done */
    const uint64_t *pages;
    unsigned failed;
    uint64_t drained;
};

/* Each round maps a range (making a block: the last round's drain took
 * this CPU's) and unmaps it. */
static void *map_and_unmap(void *arg)
{
    struct churner *w = arg;
    bool in = hosted_cpu_enter(w->cpu);
    for (unsigned r = 0; r < ROUNDS; r++) {
        spin_wait(w->go);
        size_t n = 1 + r % 5;
        void *v = in ? kmm_vm_map_ram(w->k, w->pages, n, KMM_PROT_READ) : 0;
        if (!v || kmm_vm_unmap_ram(w->k, v, n) != KMM_OK)
            w->failed++;
        atomic_store(w->mapped, true);
        spin_wait(w->go);
    }
    if (in) {
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    }
    return NULL;
}

/* Each round drains over and over while the other CPU maps, and once
 * more after it, so that it starts the next round without a block. */
static void *drain_again_and_again(void *arg)
{
    struct churner *w = arg;
    bool in = hosted_cpu_enter(w->cpu);
    for (unsigned r = 0; r < ROUNDS; r++) {
        spin_wait(w->go);
        while (in && !atomic_load(w->mapped))
            w->drained += kmm_vm_map_ram_drain(w->k);
        w->drained += in ? kmm_vm_map_ram_drain(w->k) : 0;
        atomic_store(w->mapped, false);
        spin_wait(w->go);
    }
    if (in) {
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    } else {
        w->failed++;
    }
    return NULL;
}

/*
 * Round after round, one CPU maps and unmaps a short range, making a new
 * vmap block each time, while another drains the blocks over and over:
 * the drain never takes a block from under the map that makes it (it used
 * to, when a new block was listed before its first range was taken),
 * nothing fails, and no block is left behind.
 */
KTEST(vm_attack_threads, a_drain_over_and_over_among_maps_and_unmaps_on_another_cpu)
{
    struct fx x;
    KT_ASSERT(t, up(&x, 4));
    uint64_t pg[5];
    for (unsigned i = 0; i < 5; i++)
        KT_ASSERT((t), (pg[i] = kmm_page_alloc(x.k, 0, 0)) != 0);
    static struct spin_barrier go;
    static atomic_bool mapped;
    atomic_store(&mapped, false);
    static struct churner w[2];
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++) {
        w[i] = (struct churner){.k = x.k, .cpu = i + 1, .go = &go, .mapped = &mapped, .pages = pg};
        pthread_create(&th[i], NULL, i ? drain_again_and_again : map_and_unmap, &w[i]);
    }
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, w[0].failed + w[1].failed, 0);
    ktest_diag(t, "%llu pages drained", (unsigned long long)w[1].drained);
    KT_EXPECT_HEALTHY(t, x.k);
    for (unsigned i = 0; i < 5; i++)
        kmm_page_free(x.k, pg[i], 0);
    down(t, &x);
}

/* --- a clone while a replacing map drops the parent's lock between chunks ----------------------
 */

#define REPLACE_PAGES                                                                              \
    200u /* over KMM_TLB_GATHER_FREES: the replace drops its lock between chunks */

struct replacer {
    struct kmm *k;
    struct kmm_aspace *p;
    unsigned cpu;
    atomic_bool *stop;
    uint64_t run; /* the caller's 256 pages, mapped unowned over the owned ones */
    unsigned rounds, failed;
};

static void *replace_again_and_again(void *arg)
{
    struct replacer *w = arg;
    if (hosted_cpu_enter(w->cpu)) {
        for (unsigned r = 0; r < 30; r++) {
            /* A fresh owned frame for each page, written with the round. */
            bool ok = true;
            for (unsigned i = 0; i < REPLACE_PAGES && ok; i++) {
                uint64_t pa = kmm_page_alloc(w->k, 0, 0);
                ok = pa != 0;
                if (!ok)
                    break;
                kt_fill(kmm_phys_to_virt(w->k, pa), (uint8_t)r, PAGE);
                ok = kmm_vm_map(w->p, USER + i * PAGE, pa, PAGE,
                                URW | KMM_MAP_OWNED | KMM_MAP_REPLACE) == KMM_OK;
                kmm_page_free(w->k, pa, 0);
            }
            /* Then the whole range at once by the caller's run: its 200
             * owned frames go in chunks, the lock dropped in between; then
             * back to demand-zero pages (DEMAND takes no REPLACE). */
            ok = ok &&
                 kmm_vm_map(w->p, USER, w->run, REPLACE_PAGES * PAGE, URW | KMM_MAP_REPLACE) ==
                     KMM_OK &&
                 kmm_vm_unmap(w->p, USER, REPLACE_PAGES * PAGE) == KMM_OK &&
                 kmm_vm_map(w->p, USER, 0, REPLACE_PAGES * PAGE, URW | KMM_MAP_DEMAND) == KMM_OK;
            w->failed += !ok;
            w->rounds++;
        }
        kmm_page_drain_cpu(w->k);
        hosted_cpu_exit();
    } else {
        w->failed++;
    }
    atomic_store(w->stop, true);
    return NULL;
}

/*
 * One CPU replaces a space's pages by fresh owned ones, then all of them
 * at once by a run of its own (a replace that drops the space's lock
 * between chunks), unmaps and remaps them demand-zero, over and over,
 * while another clones the space (and destroys the child): nothing
 * fails, no frame is lost or freed twice, and kmm_check stays clean.
 */
KTEST_LEVELS(vm_attack_threads, a_space_cloned_while_its_pages_are_replaced_loses_no_frame)
{
    struct fx x;
    KT_ASSERT(t, up(&x, levels));
    struct kmm_aspace *p;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &p), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(p, USER, 0, REPLACE_PAGES * PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    static atomic_bool stop;
    atomic_store(&stop, false);
    static struct cloner cl;
    static struct replacer rp;
    cl = (struct cloner){.k = x.k, .p = p, .cpu = 1, .stop = &stop};
    uint64_t run = kmm_pages_alloc(x.k, 256, 0);
    KT_ASSERT(t, run != 0);
    rp = (struct replacer){.k = x.k, .p = p, .cpu = 2, .stop = &stop, .run = run};
    pthread_t th[2];
    pthread_create(&th[0], NULL, clone_again_and_again, &cl);
    pthread_create(&th[1], NULL, replace_again_and_again, &rp);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, cl.failed + rp.failed, 0);
    ktest_diag(t, "%u clones during %u rounds of replaces", cl.clones, rp.rounds);
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_pages_free(x.k, run, 256), KMM_OK);
    down(t, &x);
}
