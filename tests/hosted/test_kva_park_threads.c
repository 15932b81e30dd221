/*
 * test_kva_park_threads.c - parked kernel virtual areas (kva.c, "parked
 * areas") under threads acting as CPUs: several CPUs park, unpark and
 * evict the same few sizes while others purge, run the shrinkers by
 * taking every page, and read the figures, the report and lookups; two CPUs free
 * one area at once while a third maps its size; frees race a reservation
 * that finds no room and purges. Afterwards every page and page table is
 * back and kmm_check is clean. Hosted only (threads); meant for TSan too.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "fixture.h"
#include "hosted.h"
#include "window_hosted.h"
#include "ktest.h"
#include "spin_barrier.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)

static const struct kmm_region ram[] = {{1 * MIB, 15 * MIB, KMM_MEM_USABLE}};

/* An instance of cpus CPUs on ram whose window is the first `size` bytes
 * of the mirror window (window_hosted.h). */
static bool setup(struct kt_window *f, uint64_t size, unsigned cpus)
{
    return kt_window_up(f, ram, size, cpus);
}

static uint64_t kernel_tables(struct kmm *k)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(kmm_kernel_aspace(k), &s);
    return s.tables[KMM_VM_PT] + s.tables[KMM_VM_PD] + s.tables[KMM_VM_PDPT];
}

/* The end of a thread's turn as a CPU: its page caches go back first, so
 * that the figures the test compares see every page in the zones. */
static void drain_and_exit(struct kmm *k)
{
    kmm_page_drain_cpu(k);
    hosted_cpu_exit();
}

static bool healthy(struct kmm *k)
{
    struct kmm_check_result r;
    return kmm_check(k, &r) == KMM_CHECK_OK;
}

/* --- many CPUs on the same few sizes ------------------------------------------------- */

#define SLOTS   24u
#define ROUNDS  1500u
#define MAPPERS 3u /* CPUs 1 .. 3 map and free; 4 purges; 5 takes every page; 6 reads */

/* Live areas any mapper may free, its own or another CPU's. */
struct pool {
    pthread_mutex_t lock;
    void *va[SLOTS];
    unsigned n[SLOTS];
    bool vmalloc[SLOTS];
    uint64_t pg[4]; /* what vmap areas map */
    atomic_bool stop;
    atomic_ulong made; /* areas the mappers made */
};

struct cpu {
    struct kmm *k;
    struct pool *pool;
    unsigned id;
    unsigned bad; /* wrong answers: a failed free, an area that does not show its pages */
    unsigned long done;
};

/* Whether the n pages at va are mapped (to pg[i] for a vmap area) and the
 * page after them is not. */
static bool shows(struct kmm *k, uint64_t va, unsigned n, const uint64_t *pg)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    struct kmm_vm_translation tr;
    for (unsigned i = 0; i < n; i++)
        if (kmm_vm_translate(ks, va + i * PAGE, &tr) != KMM_OK || (pg && tr.pa != pg[i]))
            return false;
    return kmm_vm_translate(ks, va + n * PAGE, &tr) == KMM_ENOENT;
}

static int free_one(struct kmm *k, void *va, bool vmalloc)
{
    return vmalloc ? kmm_vfree(k, va) : kmm_vunmap(k, va);
}

static void *mapper(void *arg)
{
    struct cpu *c = arg;
    struct pool *p = c->pool;
    if (!hosted_cpu_enter(c->id)) {
        c->bad++;
        return NULL;
    }
    uint64_t rng = c->id * UINT64_C(0x9e3779b97f4a7c15);
    for (unsigned r = 0; r < ROUNDS; r++) {
        unsigned slot = (unsigned)(kt_rng(&rng) % SLOTS);
        pthread_mutex_lock(&p->lock);
        void *va = p->va[slot];
        bool vm = p->vmalloc[slot];
        p->va[slot] = NULL;
        pthread_mutex_unlock(&p->lock);
        if (va) {
            c->bad += free_one(c->k, va, vm) != KMM_OK;
            continue;
        }
        unsigned n = 1 + (unsigned)(kt_rng(&rng) % 4); /* the same few sizes: parked, taken */
        vm = kt_rng(&rng) & 1;
        va = vm ? kmm_vmalloc(c->k, n * PAGE, 0) : kmm_vmap(c->k, p->pg, n, KMM_PROT_READ);
        if (!va) /* memory taken by CPU 5: allowed, nothing left behind (checked at the end) */
            continue;
        c->done++;
        atomic_fetch_add(&p->made, 1);
        if (!shows(c->k, (uint64_t)(uintptr_t)va, n, vm ? NULL : p->pg))
            c->bad++;
        pthread_mutex_lock(&p->lock);
        if (p->va[slot]) {
            pthread_mutex_unlock(&p->lock);
            c->bad += free_one(c->k, va, vm) != KMM_OK;
            continue;
        }
        p->va[slot] = va;
        p->n[slot] = n;
        p->vmalloc[slot] = vm;
        pthread_mutex_unlock(&p->lock);
    }
    drain_and_exit(c->k);
    return NULL;
}

static void *purger(void *arg)
{
    struct cpu *c = arg;
    if (!hosted_cpu_enter(c->id))
        return NULL;
    while (!atomic_load(&c->pool->stop)) {
        kmm_kva_purge(c->k);
        c->done++;
    }
    drain_and_exit(c->k);
    return NULL;
}

/* Takes every page (the last allocations run the shrinkers, the
 * "kva-parked" one among them), then gives them back, again and again.
 * It starts once the mappers have made an area: on a loaded machine it
 * could otherwise hold every page through all of their rounds. */
static void *hog(void *arg)
{
    struct cpu *c = arg;
    static uint64_t held[16 * MIB / PAGE];
    if (!hosted_cpu_enter(c->id))
        return NULL;
    while (!atomic_load(&c->pool->made) && !atomic_load(&c->pool->stop))
        sched_yield();
    while (!atomic_load(&c->pool->stop)) {
        size_t n = 0;
        while (n < sizeof(held) / sizeof(held[0]) && (held[n] = kmm_page_alloc(c->k, 0, 0)) != 0)
            n++;
        while (n > 0)
            c->bad += kmm_page_free(c->k, held[--n], 0) != KMM_OK;
        c->done++;
    }
    drain_and_exit(c->k);
    return NULL;
}

static void sink_nothing(void *ctx, const char *s, size_t n)
{
    (void)s;
    *(size_t *)ctx += n;
}

/* The figures, the report (the window's areas as /proc/vmallocinfo shows
 * them) and lookups, while the others work. Not kmm_check: it reads the
 * other CPUs' page caches without a lock (kmm/check.h: exact only at a
 * quiet point), which is a race by design; the test runs it once the
 * others are done. */
static void *reader(void *arg)
{
    struct cpu *c = arg;
    if (!hosted_cpu_enter(c->id))
        return NULL;
    size_t bytes = 0;
    struct kmm_sink sink = {sink_nothing, &bytes};
    while (!atomic_load(&c->pool->stop)) {
        struct kmm_vmalloc_stats s;
        struct kmm_kva_area a;
        struct kmm_kva_park_stats ps;
        kmm_vmalloc_stats(c->k, &s);
        kmm_kva_park_stats(c->k, &ps);
        for (uint64_t at = s.window_base; at < s.window_base + 64 * PAGE; at += PAGE)
            if (kmm_kva_lookup(c->k, at, &a) == KMM_OK)
                c->bad += a.va > at || at > a.va + a.size; /* its pages or guard page */
        c->bad += ps.areas > KMM_KVA_PARKED;
        if (c->done % 8 == 0)
            kmm_report(c->k, &sink);
        c->done++;
    }
    drain_and_exit(c->k);
    return NULL;
}

KTEST(kva_park_threads, cpus_parking_unparking_purging_and_shrinking_conserve_every_page)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 8 * MIB, MAPPERS + 4));
    struct kmm_page_stats before = kt_window_pstats(f.k);
    uint64_t tables0 = kernel_tables(f.k);
    static struct pool pool;
    pool = (struct pool){0};
    pthread_mutex_init(&pool.lock, NULL);
    for (unsigned i = 0; i < 4; i++)
        KT_ASSERT(t, (pool.pg[i] = kmm_page_alloc(f.k, 0, 0)) != 0);
    struct cpu c[MAPPERS + 3];
    pthread_t th[MAPPERS + 3];
    void *(*role[MAPPERS + 3])(void *) = {mapper, mapper, mapper, purger, hog, reader};
    for (unsigned i = 0; i < MAPPERS + 3; i++) {
        c[i] = (struct cpu){.k = f.k, .pool = &pool, .id = i + 1};
        pthread_create(&th[i], NULL, role[i], &c[i]);
    }
    for (unsigned i = 0; i < MAPPERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&pool.stop, true);
    for (unsigned i = MAPPERS; i < MAPPERS + 3; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < MAPPERS + 3; i++)
        KT_EXPECT_EQ(t, c[i].bad, 0);
    KT_EXPECT(t, c[0].done + c[1].done + c[2].done > 0);
    ktest_diag(t, "areas made %lu, purges %lu, rounds taking every page %lu, reads %lu",
               c[0].done + c[1].done + c[2].done, c[3].done, c[4].done, c[5].done);
    KT_EXPECT(t, healthy(f.k));
    for (unsigned i = 0; i < SLOTS; i++)
        if (pool.va[i])
            KT_EXPECT_EQ(t, free_one(f.k, pool.va[i], pool.vmalloc[i]), KMM_OK);
    for (unsigned i = 0; i < 4; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, pool.pg[i], 0), KMM_OK);
    KT_EXPECT(t, healthy(f.k));
    struct kmm_page_stats after = kt_window_pstats(f.k);
    struct kmm_vmalloc_stats s;
    kmm_vmalloc_stats(f.k, &s);
    struct kmm_kva_park_stats ps;
    kmm_kva_park_stats(f.k, &ps);
    KT_EXPECT_EQ(t, s.areas + ps.areas + s.used_pages + s.metadata_pages, 0);
    KT_EXPECT_EQ(t, kernel_tables(f.k), tables0);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT(t, healthy(f.k));
    pthread_mutex_destroy(&pool.lock);
    kt_window_down(&f);
}

/* --- two frees of one area while a third CPU maps its size --------------------------- */

#define DOUBLE_ROUNDS 300u

struct racer {
    struct kmm *k;
    struct spin_barrier *start;
    unsigned id;
    void *va; /* the area both free (in); the third CPU's area (out) */
    const uint64_t *pg;
    int err;
    bool mapper; /* maps 2 pages instead of freeing va */
};

static void *race_once(void *arg)
{
    struct racer *r = arg;
    if (!hosted_cpu_enter(r->id))
        return NULL;
    spin_wait(r->start);
    if (r->mapper)
        r->va = kmm_vmap(r->k, r->pg, 2, KMM_PROT_READ);
    else
        r->err = kmm_vunmap(r->k, r->va);
    drain_and_exit(r->k);
    return NULL;
}

KTEST(kva_park_threads, a_double_vunmap_from_two_cpus_while_a_third_maps_its_size)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 4 * MIB, 4));
    struct kmm_page_stats before = kt_window_pstats(f.k);
    uint64_t pg[2] = {kmm_page_alloc(f.k, 0, 0), kmm_page_alloc(f.k, 0, 0)};
    KT_ASSERT(t, pg[0] && pg[1]);
    unsigned both_ok = 0;
    for (unsigned round = 0; round < DOUBLE_ROUNDS; round++) {
        void *v = kmm_vmap(f.k, pg, 2, KMM_PROT_READ);
        KT_ASSERT(t, v != NULL);
        /* Three racers, released together by a barrier of two twice over:
         * the two frees meet, and the map meets the first free. */
        struct spin_barrier b1 = {0}, b2 = {0};
        struct racer r[3] = {
            {.k = f.k, .start = &b1, .id = 1, .va = v},
            {.k = f.k, .start = &b1, .id = 2, .va = v},
            {.k = f.k, .start = &b2, .id = 3, .pg = pg, .mapper = true},
        };
        pthread_t th[3];
        for (unsigned i = 0; i < 3; i++)
            pthread_create(&th[i], NULL, race_once, &r[i]);
        spin_wait(&b2); /* this thread lets the mapper go now */
        for (unsigned i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        /* One free wins; the other is a double free (being freed, or freed
         * already) unless the mapper took the parked range in between, in
         * which case that free ended the mapper's area (the address was
         * live again: not a misuse the window could see). */
        unsigned ok = (r[0].err == KMM_OK) + (r[1].err == KMM_OK);
        for (unsigned i = 0; i < 2; i++)
            KT_EXPECT(t, r[i].err == KMM_OK || r[i].err == KMM_ESTATE || r[i].err == KMM_ENOENT);
        KT_EXPECT(t, ok >= 1);
        if (ok == 2) {
            both_ok++;
            KT_EXPECT(t, r[2].va == v);
            KT_EXPECT_EQ(t, kmm_vunmap(f.k, r[2].va), KMM_ENOENT);
        } else if (r[2].va) {
            KT_EXPECT(t, shows(f.k, (uint64_t)(uintptr_t)r[2].va, 2, pg));
            KT_EXPECT_EQ(t, kmm_vunmap(f.k, r[2].va), KMM_OK);
        }
        if (round % 32 == 0)
            KT_EXPECT(t, healthy(f.k));
    }
    ktest_diag(t, "both frees worked %u times of %u (the mapper took the range between)", both_ok,
               DOUBLE_ROUNDS);
    KT_EXPECT(t, healthy(f.k));
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pg[0], 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pg[1], 0), KMM_OK);
    struct kmm_page_stats after = kt_window_pstats(f.k);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT(t, healthy(f.k));
    kt_window_down(&f);
}

/* --- frees against a reservation that finds no room ----------------------------------- */

#define FULL_ROUNDS 2000u

struct filler {
    struct kmm *k;
    unsigned id;
    unsigned pages; /* each area's */
    unsigned got, failed, bad;
};

static void *fill_and_free(void *arg)
{
    struct filler *w = arg;
    if (!hosted_cpu_enter(w->id))
        return NULL;
    for (unsigned r = 0; r < FULL_ROUNDS; r++) {
        void *p = kmm_vmalloc(w->k, w->pages * PAGE, 0);
        if (!p) {
            w->failed++;
            continue;
        }
        w->got++;
        w->bad += kmm_vfree(w->k, p) != KMM_OK; /* parks it */
    }
    drain_and_exit(w->k);
    return NULL;
}

KTEST(kva_park_threads, frees_racing_a_reservation_that_purges_a_full_window)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 64 * PAGE, 4)); /* 64 pages */
    struct kmm_page_stats before = kt_window_pstats(f.k);
    /* Three CPUs each need a third of the window and park what they free:
     * most reservations find no room among the others' parked areas and
     * purge them, while the others free and park again. */
    struct filler w[3];
    pthread_t th[3];
    for (unsigned i = 0; i < 3; i++) {
        w[i] = (struct filler){.k = f.k, .id = i + 1, .pages = 17 + 2 * i};
        pthread_create(&th[i], NULL, fill_and_free, &w[i]);
    }
    for (unsigned i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        KT_EXPECT_EQ(t, w[i].bad, 0);
        KT_EXPECT(t, w[i].got > 0);
    }
    KT_EXPECT(t, healthy(f.k));
    struct kmm_vmalloc_stats s;
    kmm_vmalloc_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.areas, 0);
    struct kmm_kva_park_stats ps;
    kmm_kva_park_stats(f.k, &ps);
    KT_EXPECT(t, ps.areas <= 3);
    /* Each size fits beside the other two: with the window quiet, none fails. */
    void *p[3];
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT(t, (p[i] = kmm_vmalloc(f.k, w[i].pages * PAGE, 0)) != NULL);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT_EQ(t, kmm_vfree(f.k, p[i]), KMM_OK);
    struct kmm_page_stats after = kt_window_pstats(f.k);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    kmm_vmalloc_stats(f.k, &s);
    kmm_kva_park_stats(f.k, &ps);
    KT_EXPECT_EQ(t, ps.areas + s.metadata_pages, 0);
    KT_EXPECT(t, healthy(f.k));
    kt_window_down(&f);
}

/* --- purges racing the array of an empty window ----------------------------------------- */

#define ARRAY_ROUNDS 20000u

struct raw_cpu {
    struct kmm *k;
    atomic_bool *stop;
    unsigned id;
    unsigned bad;
};

/* Reserves and frees a raw area, again and again: in an empty window each
 * reservation makes the record array (grow) before it puts its record in,
 * and each free gives the array back. */
static void *raw_cycle(void *arg)
{
    struct raw_cpu *r = arg;
    if (!hosted_cpu_enter(r->id))
        return NULL;
    for (unsigned i = 0; i < ARRAY_ROUNDS; i++) {
        uint64_t va;
        if (kmm_kva_alloc(r->k, PAGE, &va) != KMM_OK) {
            r->bad++;
            continue;
        }
        r->bad += kmm_kva_free(r->k, va) != KMM_OK;
    }
    atomic_store(r->stop, true);
    drain_and_exit(r->k);
    return NULL;
}

static void *purge_until_stopped(void *arg)
{
    struct raw_cpu *r = arg;
    if (!hosted_cpu_enter(r->id))
        return NULL;
    while (!atomic_load(r->stop))
        kmm_kva_purge(r->k);
    drain_and_exit(r->k);
    return NULL;
}

/* A purge with nothing parked that finds the window empty between a
 * reservation's new record array and its record takes the array out: it
 * must free it (it once returned early and leaked the page). */
KTEST(kva_park_threads, purges_between_a_reservations_array_and_its_record_free_the_array)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 4 * MIB, 3));
    struct kmm_page_stats before = kt_window_pstats(f.k);
    atomic_bool stop = false;
    struct raw_cpu r[2] = {{.k = f.k, .stop = &stop, .id = 1}, {.k = f.k, .stop = &stop, .id = 2}};
    pthread_t th[2];
    pthread_create(&th[0], NULL, raw_cycle, &r[0]);
    pthread_create(&th[1], NULL, purge_until_stopped, &r[1]);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, r[0].bad, 0);
    struct kmm_vmalloc_stats s;
    kmm_vmalloc_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.areas + s.metadata_pages, 0);
    struct kmm_page_stats after = kt_window_pstats(f.k);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    KT_EXPECT(t, healthy(f.k));
    kt_window_down(&f);
}
