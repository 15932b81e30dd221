/*
 * test_heap_guard.c - the heap's debugging modes as real memory and real
 * CPUs: a write one byte past a sampled object's page is a real SIGSEGV on
 * its guard page (the window is the port's live mirror window), and four
 * CPUs passing blocks to each other with every mode and sampling on keep
 * every block whole, report nothing and leave the heap sound. Hosted only
 * (faults, threads); meant for ThreadSanitizer as well.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "faults_hosted.h"
#include "fixture.h"
#include "heap_fixture.h"
#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>

#define MIB  ((size_t)1 << 20)
#define CPUS 5 /* CPU 0: the test's thread; 1 .. 4: workers */

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

static uint64_t heap_misuse(struct kmm *k, unsigned cls)
{
    struct kmm_misuse_stats m;
    kmm_misuse_stats(k, &m);
    return m.count[KMM_LAYER_HEAP][cls];
}

KTEST(heap_guard, a_write_past_a_sampled_objects_page_faults)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, 1, 1))
        return;
    KT_ASSERT(t, h.live);
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_guard_sample(k, 1), KMM_OK);
    uint8_t *p = kmm_malloc(k, 100, 0);
    KT_ASSERT(t, p != NULL);
    for (size_t i = 0; i < 100; i++) /* the object is real memory */
        p[i] = (uint8_t)i;
    KT_EXPECT(t, !kt_access_faults(p + 111, false)); /* its page's last byte */
    KT_EXPECT(t, kt_write_faults(p + 112));          /* the guard page */
    KT_EXPECT_EQ(t, kt_last_fault_addr(), (uintptr_t)(p + 112));
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 0);
    /* An object cache's too, aligned as its cache asks. */
    struct kmm_cache *c = kmm_cache_create(k, "kt-guard", 200, 64, NULL, 0);
    KT_ASSERT(t, c != NULL);
    uint8_t *o = kmm_cache_alloc(k, c, 0);
    KT_ASSERT(t, o != NULL);
    KT_EXPECT_EQ(t, (uintptr_t)o % 64, 0);
    KT_EXPECT(t, kt_write_faults(o + 256));
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, o), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_heap_guard_sample(k, 0), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kt_heap_down(&h);
}

/* --- four CPUs with every mode on ------------------------------------------------------- */

#define WORKERS 4
#define STEPS   3000 /* per worker */
#define RING    64   /* blocks in flight from one worker to the next */

struct ring {
    _Atomic(void *) slot[RING];
    atomic_uint head, tail;
};

static bool ring_put(struct ring *r, void *p)
{
    unsigned tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (tail - atomic_load_explicit(&r->head, memory_order_acquire) == RING)
        return false;
    atomic_store_explicit(&r->slot[tail % RING], p, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    return true;
}

static void *ring_take(struct ring *r)
{
    unsigned head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head == atomic_load_explicit(&r->tail, memory_order_acquire))
        return NULL;
    void *p = atomic_load_explicit(&r->slot[head % RING], memory_order_relaxed);
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return p;
}

struct crowd {
    struct kt_heap *h;
    struct ring ring[WORKERS];
    atomic_uint go;
    atomic_ulong bad;
};

struct crowd_worker {
    struct crowd *c;
    unsigned id;
};

/* A block carries its size and seed first, then the seed's pattern. */
struct tag {
    size_t size;
    uint32_t seed;
};

static void check_and_free(struct crowd *c, void *p)
{
    struct tag tg = *(struct tag *)p;
    const uint8_t *b = (const uint8_t *)p + sizeof(struct tag);
    for (size_t i = 0; i < tg.size - sizeof(struct tag); i++)
        if (b[i] != kt_heap_pattern(tg.seed, i)) {
            atomic_fetch_add(&c->bad, 1);
            break;
        }
    if (kmm_usable_size(c->h->f.k, p) < tg.size || kmm_free(c->h->f.k, p) != KMM_OK)
        atomic_fetch_add(&c->bad, 1);
}

static void *crowd_main(void *arg)
{
    struct crowd_worker *w = arg;
    struct crowd *c = w->c;
    if (!hosted_cpu_enter(1 + w->id)) {
        atomic_fetch_add(&c->bad, 1);
        return NULL;
    }
    while (!atomic_load(&c->go))
        sched_yield();
    struct ring *out = &c->ring[w->id], *in = &c->ring[(w->id + WORKERS - 1) % WORKERS];
    uint64_t rng = 0xdeb6 + w->id;
    for (unsigned step = 0; step < STEPS; step++) {
        uint64_t x = kt_rng(&rng);
        size_t size = sizeof(struct tag) + (size_t)(x % 8 == 0 ? x % 6000 : x % 400);
        uint8_t *p = kmm_malloc(c->h->f.k, size, x % 16 == 0 ? KMM_GFP_ZERO : 0);
        if (!p) {
            atomic_fetch_add(&c->bad, 1);
            break;
        }
        struct tag tg = {size, (uint32_t)(w->id << 24 | step)};
        *(struct tag *)(void *)p = tg;
        for (size_t i = 0; i < size - sizeof(struct tag); i++)
            p[sizeof(struct tag) + i] = kt_heap_pattern(tg.seed, i);
        if (!ring_put(out, p))
            check_and_free(c, p);
        void *q = ring_take(in);
        if (q)
            check_and_free(c, q);
    }
    hosted_cpu_exit();
    return NULL;
}

KTEST(heap_guard, four_cpus_pass_blocks_around_with_every_mode_on)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, 1, CPUS))
        return;
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_ALL), 0);
    KT_ASSERT_EQ(t, kmm_heap_guard_sample(k, 7), KMM_OK);
    /* Every class made before the threads start (kmm_malloc's inline path
     * reads the class table without an acquire: heap_threads does the same). */
    kt_heap_warm(t, &h);
    uint64_t mark = kmm_heap_mark(k);
    static struct crowd c;
    c = (struct crowd){.h = &h};
    static struct crowd_worker w[WORKERS];
    pthread_t th[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] = (struct crowd_worker){&c, i};
        pthread_create(&th[i], NULL, crowd_main, &w[i]);
    }
    atomic_store(&c.go, 1);
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    /* What is still in flight comes back on this CPU. */
    for (unsigned i = 0; i < WORKERS; i++)
        for (void *q; (q = ring_take(&c.ring[i])) != NULL;)
            check_and_free(&c, q);
    KT_EXPECT_EQ(t, atomic_load(&c.bad), 0);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 0);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_USE_AFTER_FREE), 0);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_DOUBLE_FREE), 0);
    KT_EXPECT_EQ(t, kmm_heap_leak_sites(k, mark, NULL, 0), 0);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT(t, ds.guarded_allocs > 0);
    KT_EXPECT_EQ(t, ds.guarded_live, 0);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    KT_EXPECT_EQ(t, kmm_heap_guard_sample(k, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_heap_debug(k, 0), 0);
    kt_heap_settle(&h);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kt_heap_down(&h);
}
