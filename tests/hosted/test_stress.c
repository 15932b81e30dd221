/*
 * test_stress.c - the page allocator under concurrent load: threads acting
 * as CPUs allocate and free at random on a machine so small that memory is
 * always short, while a shrinker gives back pages the test holds and the
 * main thread keeps unregistering and re-registering it.
 *
 * Hosted only (threads). What it proves:
 *  - no block is ever handed to two owners at once: every owner writes a
 *    signature (its token and the page's address) into each page of each
 *    block and checks it before the block is freed, by itself or by
 *    another thread it handed the block to (cross-CPU frees);
 *  - KMM_GFP_ZERO blocks are zero, whatever their last owner wrote;
 *  - allocations fail (the slow path drains caches and runs the shrinker),
 *    and the library counts exactly the failures the threads saw;
 *  - at every quiet point (all threads parked at a barrier) kmm_check is
 *    clean, and at the end every page is back: the free count and the
 *    buddyinfo are the initial ones.
 * Deterministic enough never to flake: bounded steps, fixed seeds, no
 * sleeps; the interleaving varies, the checked properties do not.
 *
 * The machine: 23 MiB on two nodes (DMA and DMA32 on each), five CPUs:
 * CPU 0 is the main thread, CPUs 1..4 the workers, on nodes 0, 1, 0, 1.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a)    (sizeof(a) / sizeof((a)[0]))
#define MIB     (UINT64_C(1) << 20)
#define PAGE    UINT64_C(4096)
#define WORKERS 4
#define PHASES  3
#define STEPS   15000 /* per worker and phase */
#define SLOTS   1024  /* blocks a worker may hold */
#define QUEUE   256   /* blocks in flight between workers */
#define POOL    512   /* pages the shrinker may give back */

static const struct kmm_region ram[] = {{1 * MIB, 23 * MIB, KMM_MEM_USABLE}};
static const struct hosted_node_range node1[] = {{8 * MIB, 8 * MIB, 1}, {20 * MIB, 4 * MIB, 1}};
static const unsigned cpu_nodes[WORKERS + 1] = {0, 0, 1, 0, 1};

struct block {
    uint64_t pa;
    uint64_t token; /* the owner's mark, in every page of the block */
    unsigned order;
};

/* A locked queue of blocks, for frees on another CPU and for the pool. */
struct queue {
    pthread_mutex_t lock;
    struct block b[POOL];
    size_t n, cap;
};

struct stress {
    struct kmm *k;
    uintptr_t direct_map;
    pthread_barrier_t barrier;
    struct queue exchange; /* blocks handed to whichever worker takes them */
    struct queue pool;     /* pages the shrinker frees when asked */
    struct kmm_shrinker shrinker;
    atomic_ulong shrinker_calls, shrinker_pages;
    atomic_uint workers_done; /* workers through their steps of this phase */
    atomic_ulong bad;         /* signature or zero-fill failures */
    char first_bad[160];      /* under exchange.lock */
};

struct worker {
    struct stress *s;
    unsigned cpu;
    uint64_t rng;
    uint64_t next_token;
    struct block own[SLOTS];
    size_t n;
    unsigned long allocs, failures, frees, handed, taken;
};

static uint64_t next_rand(uint64_t *x)
{
    /* xorshift64* */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * UINT64_C(2685821657736338717);
}

static uint64_t below(uint64_t *x, uint64_t n)
{
    return next_rand(x) % n;
}

/* P2's order distribution (WORKLOADS.md): mostly single pages. */
static unsigned draw_order(uint64_t *x)
{
    uint64_t u = below(x, 100);
    return u < 70 ? 0 : u < 82 ? 1 : u < 90 ? 2 : u < 95 ? 3 : 4 + (unsigned)below(x, 6);
}

static kmm_gfp_t draw_flags(uint64_t *x)
{
    static const kmm_gfp_t choice[] = {
        0,
        0,
        0,
        KMM_GFP_ZERO,
        KMM_GFP_DMA32,
        KMM_GFP_DMA,
        KMM_GFP_ATOMIC,
        KMM_GFP_ATOMIC | KMM_GFP_ZERO,
        KMM_GFP_DMA32 | KMM_GFP_ATOMIC,
        KMM_GFP_DMA | KMM_GFP_ZERO,
    };
    return choice[below(x, N(choice))];
}

static uint64_t *page_words(const struct stress *s, uint64_t pa)
{
    return (uint64_t *)(s->direct_map + (uintptr_t)pa);
}

static void report_bad(struct stress *s, const char *what, const struct block *b, uint64_t at)
{
    if (atomic_fetch_add(&s->bad, 1) == 0) {
        pthread_mutex_lock(&s->exchange.lock);
        snprintf(s->first_bad, sizeof(s->first_bad),
                 "%s: block 0x%llx order %u token 0x%llx, page 0x%llx", what,
                 (unsigned long long)b->pa, b->order, (unsigned long long)b->token,
                 (unsigned long long)at);
        pthread_mutex_unlock(&s->exchange.lock);
    }
}

/* Marks every page of a block its owner just got. */
static void sign(struct stress *s, const struct block *b, bool zeroed)
{
    for (uint64_t i = 0; i < (UINT64_C(1) << b->order); i++) {
        uint64_t pa = b->pa + i * PAGE;
        uint64_t *w = page_words(s, pa);
        if (zeroed && (w[0] | w[1] | w[511]))
            report_bad(s, "KMM_GFP_ZERO block not zero", b, pa);
        w[0] = b->token;
        w[1] = pa;
    }
}

/* Checks the marks, then frees the block. */
static void check_and_free(struct stress *s, const struct block *b)
{
    for (uint64_t i = 0; i < (UINT64_C(1) << b->order); i++) {
        uint64_t pa = b->pa + i * PAGE;
        const uint64_t *w = page_words(s, pa);
        if (w[0] != b->token || w[1] != pa) {
            report_bad(s, "signature overwritten (handed out twice?)", b, pa);
            break;
        }
    }
    int err = kmm_page_free(s->k, b->pa, b->order);
    if (err != KMM_OK)
        report_bad(s, "kmm_page_free refused a block it handed out", b, b->pa);
}

static bool queue_push(struct queue *q, const struct block *b)
{
    pthread_mutex_lock(&q->lock);
    bool ok = q->n < q->cap;
    if (ok)
        q->b[q->n++] = *b;
    pthread_mutex_unlock(&q->lock);
    return ok;
}

/* Takes up to max blocks, or blocks worth at least `pages` pages if that
 * comes first. Returns how many. */
static size_t queue_pop(struct queue *q, struct block *out, size_t max, uint64_t pages)
{
    size_t n = 0;
    uint64_t got = 0;
    pthread_mutex_lock(&q->lock);
    while (n < max && q->n && got < pages) {
        out[n] = q->b[--q->n];
        got += UINT64_C(1) << out[n].order;
        n++;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* The shrinker: frees pool pages until want_pages are free. Runs on the
 * CPU whose allocation failed. */
static uint64_t pool_scan(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags)
{
    (void)k;
    (void)flags;
    struct stress *s = ctx;
    struct block got[64];
    size_t n = queue_pop(&s->pool, got, N(got), want_pages);
    uint64_t pages = 0;
    for (size_t i = 0; i < n; i++) {
        check_and_free(s, &got[i]);
        pages += UINT64_C(1) << got[i].order;
    }
    atomic_fetch_add(&s->shrinker_calls, 1);
    atomic_fetch_add(&s->shrinker_pages, pages);
    return pages;
}

static void drop_own(struct worker *w, size_t i)
{
    w->own[i] = w->own[--w->n];
}

static void step(struct worker *w)
{
    struct stress *s = w->s;
    uint64_t r = below(&w->rng, 100);
    if (r < 55 && w->n < SLOTS) {
        unsigned order = draw_order(&w->rng);
        kmm_gfp_t flags = draw_flags(&w->rng);
        uint64_t pa = kmm_page_alloc(s->k, order, flags);
        if (!pa) {
            w->failures++;
            return;
        }
        w->allocs++;
        struct block b = {pa, (uint64_t)w->cpu << 48 | ++w->next_token, order};
        if (pa % (PAGE << order) || ((flags & KMM_GFP_DMA) && pa >= 16 * MIB))
            report_bad(s, "misplaced block", &b, pa);
        sign(s, &b, flags & KMM_GFP_ZERO);
        w->own[w->n++] = b;
    } else if (r < 80 && w->n) {
        size_t i = (size_t)below(&w->rng, w->n);
        check_and_free(s, &w->own[i]);
        drop_own(w, i);
        w->frees++;
    } else if (r < 90 && w->n) {
        /* Hand a block to another CPU; if the queue is full, free it here. */
        size_t i = (size_t)below(&w->rng, w->n);
        if (queue_push(&s->exchange, &w->own[i]))
            w->handed++;
        else
            check_and_free(s, &w->own[i]);
        drop_own(w, i);
    } else if (r < 95 && w->n) {
        /* Give a page to the shrinker's pool (the test holds it). */
        size_t i = (size_t)below(&w->rng, w->n);
        if (w->own[i].order != 0 || !queue_push(&s->pool, &w->own[i]))
            check_and_free(s, &w->own[i]);
        drop_own(w, i);
    } else {
        struct block got[8];
        size_t n = queue_pop(&s->exchange, got, N(got), UINT64_MAX);
        for (size_t i = 0; i < n; i++)
            check_and_free(s, &got[i]);
        w->taken += n;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct stress *s = w->s;
    if (!hosted_cpu_enter(w->cpu)) {
        atomic_fetch_add(&s->bad, 1);
        return NULL;
    }
    for (unsigned phase = 0; phase < PHASES; phase++) {
        for (unsigned i = 0; i < STEPS; i++)
            step(w);
        atomic_fetch_add(&s->workers_done, 1);
        pthread_barrier_wait(&s->barrier); /* park: the main thread checks */
        pthread_barrier_wait(&s->barrier); /* resume */
    }
    /* Clean up: everything this CPU holds or finds in the exchange goes
     * back, then this CPU's caches. Nobody allocates any more. */
    while (w->n) {
        check_and_free(s, &w->own[w->n - 1]);
        w->n--;
    }
    struct block got[8];
    size_t n;
    while ((n = queue_pop(&s->exchange, got, N(got), UINT64_MAX)) != 0)
        for (size_t i = 0; i < n; i++)
            check_and_free(s, &got[i]);
    kmm_page_drain_cpu(s->k);
    hosted_cpu_exit();
    return NULL;
}

static uint64_t queue_pages(struct queue *q)
{
    uint64_t pages = 0;
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < q->n; i++)
        pages += UINT64_C(1) << q->b[i].order;
    pthread_mutex_unlock(&q->lock);
    return pages;
}

/* Pages the test holds: the workers', the exchange's and the pool's. Only
 * while every worker is parked. */
static uint64_t live_pages(struct stress *s, const struct worker *w)
{
    uint64_t pages = queue_pages(&s->exchange) + queue_pages(&s->pool);
    for (unsigned i = 0; i < WORKERS; i++)
        for (size_t j = 0; j < w[i].n; j++)
            pages += UINT64_C(1) << w[i].own[j].order;
    return pages;
}

static void expect_healthy(struct ktest *t, struct kmm *k, int line)
{
    struct kmm_check_result r;
    if (kmm_check(k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, line, "kmm_check: %s", r.first);
}

static bool same_buddyinfo(const struct kmm_page_stats *a, const struct kmm_page_stats *b)
{
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            if (a->zones[z].free_blocks[o] != b->zones[z].free_blocks[o])
                return false;
    return a->free_pages == b->free_pages;
}

KTEST(stress, cpus_allocating_and_freeing_under_pressure_never_share_a_block)
{
    struct hosted_machine_config mc = {
        .ram = ram,
        .ram_count = N(ram),
        .node_count = 2,
        .node_ranges = node1,
        .node_range_count = N(node1),
        .cpu_node = cpu_nodes,
        .cpu_node_count = N(cpu_nodes),
    };
    struct hosted_machine *m = hosted_machine_create(&mc);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {.port = hosted_machine_port(m),
                             .regions = ram,
                             .region_count = N(ram),
                             .cpu_count = N(cpu_nodes)};
    static struct stress s;
    static struct worker w[WORKERS];
    memset(&s, 0, sizeof(s));
    KT_ASSERT_EQ(t, kmm_init(&cfg, &s.k), KMM_OK);
    s.direct_map = hosted_machine_direct_map(m);
    pthread_mutex_init(&s.exchange.lock, NULL);
    pthread_mutex_init(&s.pool.lock, NULL);
    s.exchange.cap = QUEUE;
    s.pool.cap = POOL;
    pthread_barrier_init(&s.barrier, NULL, WORKERS + 1);
    kmm_page_drain_cpu(s.k);
    struct kmm_page_stats initial, st;
    kmm_page_stats(s.k, &initial);

    /* The pool starts with 256 pages; the workers add to it as they go. */
    for (unsigned i = 0; i < 256; i++) {
        struct block b = {kmm_page_alloc(s.k, 0, 0), UINT64_C(0xfeed) << 48 | i, 0};
        KT_ASSERT(t, b.pa != 0);
        sign(&s, &b, false);
        queue_push(&s.pool, &b);
    }
    s.shrinker = (struct kmm_shrinker){.scan = pool_scan, .ctx = &s, .name = "test-pool"};
    KT_ASSERT_EQ(t, kmm_shrinker_register(s.k, &s.shrinker), KMM_OK);

    pthread_t th[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] =
            (struct worker){.s = &s, .cpu = i + 1, .rng = UINT64_C(0x9e3779b97f4a7c15) * (i + 1)};
        KT_ASSERT(t, pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
    }
    unsigned long churn = 0;
    for (unsigned phase = 0; phase < PHASES; phase++) {
        /* From the second phase on, unregister and re-register the shrinker
         * while the workers run: unregister must wait out a running scan. */
        while (phase > 0 && atomic_load(&s.workers_done) < WORKERS * (phase + 1)) {
            KT_EXPECT_EQ(t, kmm_shrinker_unregister(s.k, &s.shrinker), KMM_OK);
            sched_yield();
            KT_EXPECT_EQ(t, kmm_shrinker_register(s.k, &s.shrinker), KMM_OK);
            sched_yield();
            churn++;
        }
        pthread_barrier_wait(&s.barrier); /* every worker parked */
        expect_healthy(t, s.k, __LINE__);
        kmm_page_stats(s.k, &st);
        KT_EXPECT_EQ(t, st.allocated_pages - initial.allocated_pages, live_pages(&s, w));
        pthread_barrier_wait(&s.barrier);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);

    /* What the threads saw is what the library counted. */
    unsigned long failures = 0, allocs = 0, handed = 0, taken = 0;
    for (unsigned i = 0; i < WORKERS; i++) {
        failures += w[i].failures;
        allocs += w[i].allocs;
        handed += w[i].handed;
        taken += w[i].taken;
    }
    kmm_page_stats(s.k, &st);
    KT_EXPECT_EQ(t, st.failed_allocs - initial.failed_allocs, failures);
    KT_EXPECT(t, failures > 0);
    KT_EXPECT(t, st.shrinker_calls > 0 && st.shrinker_calls == atomic_load(&s.shrinker_calls));
    KT_EXPECT_EQ(t, st.reclaimed_pages, atomic_load(&s.shrinker_pages));
    KT_EXPECT(t, st.reclaimed_pages > 0);
    KT_EXPECT(t, st.reclaim_calls >= st.shrinker_calls);
    KT_EXPECT_EQ(t, st.shrinkers, 1);
    KT_EXPECT_EQ(t, atomic_load(&s.bad), 0);
    if (atomic_load(&s.bad))
        ktest_diag(t, "first problem: %s", s.first_bad);
    ktest_diag(t,
               "%lu allocations, %lu failed, %lu handed over (%lu taken), %llu shrinker calls "
               "freed %llu pages, %lu re-registrations",
               allocs, failures, handed, taken, (unsigned long long)st.shrinker_calls,
               (unsigned long long)st.reclaimed_pages, churn);

    /* Every page back: the pool's, then this CPU's cache. */
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(s.k, &s.shrinker), KMM_OK);
    struct block b;
    while (queue_pop(&s.pool, &b, 1, UINT64_MAX))
        check_and_free(&s, &b);
    kmm_page_drain_cpu(s.k);
    kmm_page_stats(s.k, &st);
    KT_EXPECT_EQ(t, st.free_pages, initial.free_pages);
    KT_EXPECT(t, same_buddyinfo(&st, &initial));
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        KT_EXPECT_EQ(t, st.zones[z].pcp_pages, 0);
    struct kmm_node_stats n0, n1;
    kmm_page_node_stats(s.k, 0, &n0);
    kmm_page_node_stats(s.k, 1, &n1);
    KT_EXPECT_EQ(t, n0.alloc_remote + n1.alloc_remote, n0.alloc_lent + n1.alloc_lent);
    KT_EXPECT_EQ(t, n0.free_pages + n1.free_pages, st.free_pages);
    expect_healthy(t, s.k, __LINE__);

    pthread_barrier_destroy(&s.barrier);
    pthread_mutex_destroy(&s.exchange.lock);
    pthread_mutex_destroy(&s.pool.lock);
    kmm_fini(s.k);
    hosted_machine_destroy(m);
}
