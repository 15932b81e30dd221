/*
 * test_map_ram_cpus.c - kmm_vm_map_ram's vmap blocks as real memory and
 * across CPUs: a range is usable at its address, its guard page and an
 * unmapped range fault; a range mapped on one CPU is unmapped on another
 * (its block stays the first CPU's); threads acting as CPUs that map and
 * unmap each other's ranges at once never get overlapping ranges, and
 * leave the blocks exact. Hosted only (real faults, threads).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>

#include "faults_hosted.h"
#include "fixture.h"
#include "hosted.h"
#include "window_hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB     (UINT64_C(1) << 20)
#define PAGE    UINT64_C(4096)
#define THREADS 3u /* CPUs 1 .. 3; the main thread is CPU 0 */

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/* An instance of cpus CPUs on ram whose window is the first `size` bytes
 * of the mirror window (window_hosted.h). */
static bool setup(struct kt_window *f, uint64_t size, unsigned cpus)
{
    return kt_window_up(f, ram, size, cpus);
}

static struct kmm_vmalloc_stats vstats(struct kmm *k)
{
    struct kmm_vmalloc_stats s;
    kmm_vmalloc_stats(k, &s);
    return s;
}

static bool healthy(struct kmm *k)
{
    struct kmm_check_result r;
    return kmm_check(k, &r) == KMM_CHECK_OK;
}

KTEST(map_ram_cpus, a_range_is_real_memory_and_its_guard_page_faults)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 8 * MIB, 1));
    uint64_t pg[2] = {kmm_page_alloc(f.k, 0, 0), kmm_page_alloc(f.k, 0, 0)};
    KT_ASSERT(t, pg[0] && pg[1]);
    uint8_t *p = kmm_vm_map_ram(f.k, pg, 2, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_ASSERT(t, p != NULL);
    memset(p, 0x3c, 2 * PAGE);
    KT_EXPECT(t, !kt_write_faults(p + 2 * PAGE - 1));
    KT_EXPECT(t, kt_write_faults(p + 2 * PAGE)); /* the range's guard page */
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(f.k, p, 2), KMM_OK);
    KT_EXPECT(t, kt_write_faults(p)); /* gone when the unmap returns */
    kmm_vm_map_ram_drain(f.k);
    kmm_page_free(f.k, pg[0], 0);
    kmm_page_free(f.k, pg[1], 0);
    KT_EXPECT(t, healthy(f.k));
    kt_window_down(&f);
}

/* One step run on another thread acting as a CPU. */
struct step {
    struct kmm *k;
    unsigned cpu;
    const uint64_t *pg;
    void *va;
    int err;
    bool unmap; /* unmap va (2 pages) instead of mapping */
};

static void *run_step(void *arg)
{
    struct step *s = arg;
    if (hosted_cpu_enter(s->cpu)) {
        if (s->unmap)
            s->err = kmm_vm_unmap_ram(s->k, s->va, 2);
        else
            s->va = kmm_vm_map_ram(s->k, s->pg, 2, KMM_PROT_READ);
        hosted_cpu_exit();
    }
    return NULL;
}

static void on_cpu(struct step *s)
{
    pthread_t th;
    pthread_create(&th, NULL, run_step, s);
    pthread_join(th, NULL);
}

KTEST(map_ram_cpus, a_range_mapped_on_one_cpu_is_unmapped_on_another)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 8 * MIB, 2));
    uint64_t pg[2] = {kmm_page_alloc(f.k, 0, 0), kmm_page_alloc(f.k, 0, 0)};
    KT_ASSERT(t, pg[0] && pg[1]);
    struct step s1 = {.k = f.k, .cpu = 1, .pg = pg};
    on_cpu(&s1);
    KT_ASSERT(t, s1.va != NULL);
    /* CPU 0 has no block of its own: the range is found in CPU 1's. */
    void *mine = kmm_vm_map_ram(f.k, pg, 2, KMM_PROT_READ);
    KT_ASSERT(t, mine != NULL);
    KT_EXPECT_EQ(t, vstats(f.k).vmap_blocks, 2);
    KT_EXPECT(t, (uintptr_t)mine >> 21 != (uintptr_t)s1.va >> 21);
    KT_EXPECT_EQ(t, ((volatile uint8_t *)s1.va)[0], ((volatile uint8_t *)mine)[0]);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(f.k, s1.va, 2), KMM_OK);
    KT_EXPECT(t, kt_access_faults(s1.va, false));
    KT_EXPECT_EQ(t, vstats(f.k).vmap_blocks, 2); /* CPU 1's current block stays */
    KT_EXPECT(t, healthy(f.k));
    /* And the other way round: CPU 1 unmaps CPU 0's range. */
    struct step s2 = {.k = f.k, .cpu = 1, .va = mine, .unmap = true};
    on_cpu(&s2);
    KT_EXPECT_EQ(t, s2.err, KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(f.k, mine, 2), KMM_ENOENT); /* a double unmap */
    KT_EXPECT(t, healthy(f.k));
    KT_EXPECT(t, kmm_vm_map_ram_drain(f.k) >= 4);
    KT_EXPECT_EQ(t, vstats(f.k).vmap_blocks, 0);
    kmm_page_free(f.k, pg[0], 0);
    kmm_page_free(f.k, pg[1], 0);
    KT_EXPECT(t, healthy(f.k));
    kt_window_down(&f);
}

/* The threads' shared pool of live ranges: each thread maps ranges into
 * it and unmaps whichever it finds there, its own or another CPU's. */
#define POOL   64u
#define ROUNDS 3000u

struct pool {
    pthread_mutex_t lock;
    void *va[POOL];
    unsigned n[POOL];
    uint64_t *pg; /* the pages every range maps: pg[0 .. n) */
};

struct worker {
    struct kmm *k;
    struct pool *pool;
    unsigned cpu;
    unsigned bad; /* ranges that did not show their pages, or failed calls */
};

/* Whether the n pages at va map pg[0 .. n) and read as them, and the page
 * after them is unmapped. */
static bool shows(struct kmm *k, const uint8_t *va, const uint64_t *pg, unsigned n)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    for (unsigned i = 0; i < n; i++) {
        struct kmm_vm_translation tr;
        if (kmm_vm_translate(ks, (uint64_t)(uintptr_t)(va + i * PAGE), &tr) != KMM_OK ||
            tr.pa != pg[i] || va[i * PAGE] != (uint8_t)i)
            return false;
    }
    struct kmm_vm_translation tr;
    return kmm_vm_translate(ks, (uint64_t)(uintptr_t)(va + n * PAGE), &tr) == KMM_ENOENT;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    if (!hosted_cpu_enter(w->cpu)) {
        w->bad++;
        return NULL;
    }
    uint64_t rng = w->cpu * UINT64_C(0x9e3779b97f4a7c15);
    for (unsigned r = 0; r < ROUNDS; r++) {
        unsigned slot = (unsigned)(kt_rng(&rng) % POOL);
        pthread_mutex_lock(&w->pool->lock);
        void *va = w->pool->va[slot];
        unsigned n = w->pool->n[slot];
        w->pool->va[slot] = NULL;
        pthread_mutex_unlock(&w->pool->lock);
        if (va) {
            if (kmm_vm_unmap_ram(w->k, va, n) != KMM_OK)
                w->bad++;
            continue;
        }
        n = 1 + (unsigned)(kt_rng(&rng) % 8);
        va = kmm_vm_map_ram(w->k, w->pool->pg, n, KMM_PROT_READ);
        if (!va || !shows(w->k, va, w->pool->pg, n)) {
            w->bad++;
            continue;
        }
        pthread_mutex_lock(&w->pool->lock);
        if (w->pool->va[slot]) { /* taken meanwhile: unmap ours */
            pthread_mutex_unlock(&w->pool->lock);
            if (kmm_vm_unmap_ram(w->k, va, n) != KMM_OK)
                w->bad++;
            continue;
        }
        w->pool->va[slot] = va;
        w->pool->n[slot] = n;
        pthread_mutex_unlock(&w->pool->lock);
    }
    hosted_cpu_exit();
    return NULL;
}

KTEST(map_ram_cpus, cpus_mapping_and_unmapping_each_others_ranges_keep_the_blocks_exact)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 16 * MIB, THREADS + 1));
    uint64_t pg[8];
    for (unsigned i = 0; i < 8; i++) {
        pg[i] = kmm_page_alloc(f.k, 0, 0);
        KT_ASSERT(t, pg[i] != 0);
    }
    /* Each page reads as its index (through a first range, unmapped again). */
    uint8_t *v = kmm_vm_map_ram(f.k, pg, 8, KMM_PROT_READ | KMM_PROT_WRITE);
    KT_ASSERT(t, v != NULL);
    for (unsigned i = 0; i < 8; i++)
        v[i * PAGE] = (uint8_t)i;
    KT_ASSERT_EQ(t, kmm_vm_unmap_ram(f.k, v, 8), KMM_OK);
    struct pool pool = {.pg = pg};
    pthread_mutex_init(&pool.lock, NULL);
    struct worker w[THREADS];
    pthread_t th[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.k = f.k, .pool = &pool, .cpu = i + 1};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        KT_EXPECT_EQ(t, w[i].bad, 0);
    }
    KT_EXPECT(t, healthy(f.k));
    for (unsigned i = 0; i < POOL; i++)
        if (pool.va[i])
            KT_EXPECT_EQ(t, kmm_vm_unmap_ram(f.k, pool.va[i], pool.n[i]), KMM_OK);
    KT_EXPECT_EQ(t, vstats(f.k).map_ram_ranges, 0);
    kmm_vm_map_ram_drain(f.k);
    KT_EXPECT_EQ(t, vstats(f.k).vmap_blocks, 0);
    KT_EXPECT_EQ(t, vstats(f.k).areas, 0);
    for (unsigned i = 0; i < 8; i++)
        kmm_page_free(f.k, pg[i], 0);
    KT_EXPECT(t, healthy(f.k));
    pthread_mutex_destroy(&pool.lock);
    kt_window_down(&f);
}
