/*
 * test_heap_threads.c - the heap across CPUs: blocks allocated on one CPU
 * and freed on another, a cache whose objects another CPU still caches,
 * CPUs passing blocks to each other all at once (lending between classes
 * and its setting changing meanwhile), blocks lent on one CPU and freed by
 * size on another, two CPUs freeing one block at the same moment, and
 * CPUs lent one class's objects while another shrinks. Hosted (threads
 * act as CPUs); meant to run under ThreadSanitizer as well (build/tsan).
 *
 * What every test ends with: the CPUs' stacks drained (kmm_heap_drain_cpu
 * on the test's own CPU, kmm_heap_drain_offline_cpu for the threads' CPUs
 * once the threads are gone), no object active in any cache, kmm_check
 * clean, and every page back with the page allocator.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "fixture.h"
#include "heap_fixture.h"
#include "hosted.h"
#include "internal.h" /* the drain requests (heap/state.h) */
#include "ktest.h"
#include "spin_barrier.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  ((size_t)1 << 20)
#define CPUS 5 /* CPU 0: the test's thread; 1 .. 4: workers */

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/* Runs fn(arg) on a thread acting as CPU cpu, and waits for it. */
struct on_cpu_call {
    unsigned cpu;
    void (*fn)(void *arg);
    void *arg;
};

static void *on_cpu_main(void *p)
{
    struct on_cpu_call *c = p;
    if (hosted_cpu_enter(c->cpu)) {
        c->fn(c->arg);
        hosted_cpu_exit();
    }
    return NULL;
}

static void on_cpu(unsigned cpu, void (*fn)(void *arg), void *arg)
{
    struct on_cpu_call c = {cpu, fn, arg};
    pthread_t th;
    pthread_create(&th, NULL, on_cpu_main, &c);
    pthread_join(th, NULL);
}

/* The end of every test: the workers' CPUs drained (heap stacks and page
 * caches), the heap consistent, and after a settle no object active, no
 * slab left, and every page back since *p0. */
static void expect_all_back_but(struct ktest *t, struct kt_heap *h, const struct kmm_page_stats *p0,
                                const struct kmm_heap_stats *s0, uint64_t extra_frees)
{
    for (unsigned cpu = 1; cpu < CPUS; cpu++) {
        KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h->f.k, cpu), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(h->f.k, cpu), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, h->f.k);
    kt_heap_settle(h);
    struct kmm_cache *c;
    for (unsigned i = 0; (c = kmm_heap_cache_at(h->f.k, i)) != NULL; i++) {
        struct kmm_cache_stats cs = kt_cache_stats(t, h, c);
        if (cs.active_objects != 0 || cs.total_slabs != 0)
            ktest_fail_at(t, __FILE__, __LINE__, "cache %s: %llu objects active, %llu slabs",
                          cs.name, (unsigned long long)cs.active_objects,
                          (unsigned long long)cs.total_slabs);
    }
    struct kmm_page_stats p1;
    kmm_page_stats(h->f.k, &p1);
    struct kmm_heap_stats s1 = kt_heap_stats(h);
    KT_EXPECT(t, kt_same_buddyinfo(p0, &p1));
    KT_EXPECT_EQ(t, p1.allocated_pages, p0->allocated_pages);
    KT_EXPECT_EQ(t, s1.bytes_held, s0->bytes_held);
    KT_EXPECT_EQ(t, s1.bytes_used, s0->bytes_used);
    KT_EXPECT_EQ(t, s1.large_blocks, 0);
    KT_EXPECT_EQ(t, s1.allocs - s0->allocs + extra_frees, s1.frees - s0->frees);
    KT_EXPECT_HEALTHY(t, h->f.k);
}

static void expect_all_back(struct ktest *t, struct kt_heap *h, const struct kmm_page_stats *p0,
                            const struct kmm_heap_stats *s0)
{
    expect_all_back_but(t, h, p0, s0, 0);
}

/* --- one CPU allocates, another frees ------------------------------------------------- */

#define HANDED 3000

struct handover {
    struct kt_heap *h;
    void *p[HANDED];
    size_t size[HANDED];
    unsigned bad; /* blocks that failed or lost their pattern */
};

static size_t handed_size(unsigned i)
{
    static const size_t sizes[] = {16, 40, 64, 100, 128, 200, 512, 1000, 3000, 8192, 20000};
    return i % 500 == 7 ? 200000 : sizes[i % N(sizes)];
}

static void alloc_all(void *arg)
{
    struct handover *ho = arg;
    for (unsigned i = 0; i < HANDED; i++) {
        ho->size[i] = handed_size(i);
        ho->p[i] = kmm_malloc(ho->h->f.k, ho->size[i], 0);
        if (!ho->p[i]) {
            ho->bad++;
            continue;
        }
        kt_heap_fill(ho->h, ho->p[i], 0, ho->size[i], i);
    }
}

static void free_all(void *arg)
{
    struct handover *ho = arg;
    for (unsigned i = 0; i < HANDED; i++) {
        if (!ho->p[i])
            continue;
        if (!kt_heap_holds(ho->h, ho->p[i], 0, ho->size[i], i))
            ho->bad++;
        if (kmm_free(ho->h->f.k, ho->p[i]) != KMM_OK)
            ho->bad++;
        ho->p[i] = NULL;
    }
}

static void drain_this_cpu(void *arg)
{
    struct kt_heap *h = arg;
    kmm_heap_drain_cpu(h->f.k);
}

KTEST(heap_threads, a_block_allocated_on_one_cpu_is_freed_on_another)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0;
    kmm_page_stats(h.f.k, &p0);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    static struct handover ho;
    ho = (struct handover){.h = &h};
    on_cpu(1, alloc_all, &ho);
    on_cpu(2, free_all, &ho);
    KT_EXPECT_EQ(t, ho.bad, 0);
    /* Again: CPU 1's allocations now come partly from what CPU 2 freed
     * into its slabs, and CPU 0 frees them. */
    on_cpu(2, drain_this_cpu, &h);
    on_cpu(1, alloc_all, &ho);
    free_all(&ho);
    KT_EXPECT_EQ(t, ho.bad, 0);
    expect_all_back(t, &h, &p0, &s0);
    kt_heap_down(&h);
}

/* --- a cache whose objects another CPU caches ---------------------------------------- */

#define CACHED 10 /* fewer than KMM_HEAP_MAG_SIZE: they all stay on CPU 1's stack */

struct cache_use {
    struct kt_heap *h;
    struct kmm_cache *c;
    unsigned bad;
};

static void alloc_and_free_here(void *arg)
{
    struct cache_use *u = arg;
    void *o[CACHED];
    for (unsigned i = 0; i < CACHED; i++)
        if (!(o[i] = kmm_cache_alloc(u->h->f.k, u->c, 0)))
            u->bad++;
    for (unsigned i = 0; i < CACHED; i++)
        if (o[i] && kmm_cache_free(u->h->f.k, u->c, o[i]) != KMM_OK)
            u->bad++;
}

/* A heap on CPUS CPUs (its figures then in *p0, *s0) with an object cache
 * `name` in *u whose CACHED objects CPU 1 allocated and freed, so that they
 * wait on CPU 1's stack. False (the test over) if anything failed. */
static bool cached_on_cpu1(struct ktest *t, struct kt_heap *h, const char *name,
                           struct cache_use *u, struct kmm_page_stats *p0,
                           struct kmm_heap_stats *s0)
{
    if (!kt_heap_up(t, h, ram, N(ram), CPUS))
        return false;
    kt_heap_warm(t, h);
    kmm_page_stats(h->f.k, p0);
    *s0 = kt_heap_stats(h);
    *u = (struct cache_use){.h = h, .c = kmm_cache_create(h->f.k, name, 56, 0, NULL, 0)};
    if (!u->c) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_cache_create(%s) failed", name);
        return false;
    }
    on_cpu(1, alloc_and_free_here, u);
    KT_EXPECT_EQ(t, u->bad, 0);
    return u->bad == 0;
}

/* Objects freed on CPU 1 wait in its stack: free, not active, but the
 * cache cannot go until CPU 1 drains (heap.h, kmm_cache_destroy). */
KTEST(heap_threads, a_cache_is_busy_while_another_cpu_still_caches_its_objects)
{
    static struct kt_heap h;
    struct kmm_page_stats p0;
    struct kmm_heap_stats s0;
    struct cache_use u;
    if (!cached_on_cpu1(t, &h, "kt-remote", &u, &p0, &s0))
        return;
    struct kmm_cache_stats cs = kt_cache_stats(t, &h, u.c);
    /* CPU 1's stack holds the ten it freed and what its refill took. */
    KT_EXPECT_EQ(t, cs.active_objects, 0);
    KT_EXPECT(t, cs.cpu_cached >= CACHED);
    KT_EXPECT_EQ(t, cs.allocs, CACHED);
    KT_EXPECT_EQ(t, cs.frees, CACHED);
    /* This CPU's shrink leaves CPU 1's objects where they are. */
    kmm_cache_shrink(h.f.k, u.c);
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, u.c).cpu_cached, cs.cpu_cached);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(h.f.k, u.c), KMM_EBUSY,
                          KT_CLASS(KMM_MISUSE_BUSY), "kmm_cache_destroy");
    KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h.f.k, 1), KMM_OK);
    cs = kt_cache_stats(t, &h, u.c);
    KT_EXPECT_EQ(t, cs.cpu_cached, 0);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, u.c), KMM_OK);
    expect_all_back(t, &h, &p0, &s0);
    kt_heap_down(&h);
}

/* On CPU 1: whether a drain is asked of it, then an allocation of a class
 * whose stack is empty there (a refill: the request is honoured), then
 * whether it still is. */
struct asked {
    struct kt_heap *h;
    bool before, after;
    unsigned bad;
};

static void refill_here(void *arg)
{
    struct asked *a = arg;
    struct kmm *k = a->h->f.k;
    a->before = kmm_heap_drain_pending(k);
    void *p = kmm_malloc(k, 3000, 0); /* a class CPU 1 never used */
    a->after = kmm_heap_drain_pending(k);
    if (!p || kmm_free(k, p) != KMM_OK)
        a->bad++;
}

/* A shrink (the reclaim hook) cannot reach CPU 1's stack, but asks CPU 1
 * to drain; CPU 1 does at its next refill, and the cache can go. */
KTEST(heap_threads, a_shrink_asks_the_other_cpus_to_drain_at_their_next_refill)
{
    static struct kt_heap h;
    struct kmm_page_stats p0;
    struct kmm_heap_stats s0;
    struct cache_use u;
    if (!cached_on_cpu1(t, &h, "kt-asked", &u, &p0, &s0))
        return;
    uint64_t cached = kt_cache_stats(t, &h, u.c).cpu_cached;
    KT_EXPECT(t, cached >= CACHED);
    KT_EXPECT(t, !kmm_heap_drain_pending(h.f.k));
    kmm_heap_shrink(h.f.k);
    KT_EXPECT(t, !kmm_heap_drain_pending(h.f.k)); /* asked of the others only */
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, u.c).cpu_cached, cached);
    struct asked a = {.h = &h};
    on_cpu(1, refill_here, &a);
    KT_EXPECT_EQ(t, a.bad, 0);
    KT_EXPECT(t, a.before);
    KT_EXPECT(t, !a.after);
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, u.c).cpu_cached, 0);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, u.c), KMM_OK);
    /* The others were asked too: an offline drain answers for them. */
    for (unsigned cpu = 2; cpu < CPUS; cpu++) {
        KT_EXPECT(t, h.f.k->heap.drain[cpu]);
        KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h.f.k, cpu), KMM_OK);
        KT_EXPECT(t, !h.f.k->heap.drain[cpu]);
    }
    on_cpu(1, drain_this_cpu, &h);
    expect_all_back(t, &h, &p0, &s0);
    kt_heap_down(&h);
}

/* --- CPUs passing blocks around, all at once ------------------------------------------- */

#define WORKERS 4
#define STEPS   8000 /* per worker */
#define RING    128  /* blocks in flight from one worker to the next */

/* A single-producer single-consumer ring of blocks. */
struct ring {
    _Atomic(void *) slot[RING];
    atomic_uint head, tail; /* head: next to take; tail: next to fill */
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

/* A block in flight carries its size and its maker's seed in its first
 * bytes, and the pattern of that seed after them. */
struct tag {
    size_t size;
    uint32_t seed;
};

struct crowd {
    struct kt_heap *h;
    struct ring ring[WORKERS]; /* ring[i]: from worker i to worker i + 1 */
    atomic_uint go;
    atomic_ulong bad;
};

struct crowd_worker {
    struct crowd *c;
    unsigned id;
};

/* Whether block p (a struct tag, then its pattern) is intact; frees it,
 * every other one with its size (a lent block's mark, set on the CPU that
 * was lent it, read on this one). */
static void check_and_free(struct crowd *c, void *p)
{
    struct tag tg = *(struct tag *)p;
    size_t body = tg.size - sizeof(struct tag);
    const uint8_t *b = (const uint8_t *)p + sizeof(struct tag);
    for (size_t i = 0; i < body; i++)
        if (b[i] != kt_heap_pattern(tg.seed, i)) {
            atomic_fetch_add(&c->bad, 1);
            break;
        }
    struct kmm *k = c->h->f.k;
    if (kmm_usable_size(k, p) < tg.size ||
        (tg.seed % 2 ? kmm_free_sized(k, p, tg.size) : kmm_free(k, p)) != KMM_OK)
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
    uint64_t rng = 0xc0de + w->id;
    for (unsigned step = 0; step < STEPS; step++) {
        uint64_t x = kt_rng(&rng);
        size_t size = sizeof(struct tag) + (size_t)(x % 8 == 0 ? x % 30000 : x % 600);
        if (x % 1000 == 0)
            size = 150000 + (size_t)(x % 100000); /* now and then a vmalloc'd one */
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
            check_and_free(c, p); /* the next worker is behind: free it here */
        if (w->id == 0 && step % 500 == 0 &&
            kmm_heap_set_lend(c->h->f.k, step / 500 % (KMM_HEAP_LEND_MAX + 1)) != KMM_OK)
            atomic_fetch_add(&c->bad, 1);
        void *q = ring_take(in);
        if (q)
            check_and_free(c, q);
    }
    hosted_cpu_exit();
    return NULL;
}

KTEST(heap_threads, cpus_passing_blocks_to_each_other_at_once_lose_nothing)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    KT_ASSERT(t, h.live); /* the vmalloc'd blocks are written by the workers */
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0;
    kmm_page_stats(h.f.k, &p0);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    static struct crowd c;
    c = (struct crowd){.h = &h};
    pthread_t th[WORKERS];
    struct crowd_worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] = (struct crowd_worker){&c, i};
        pthread_create(&th[i], NULL, crowd_main, &w[i]);
    }
    atomic_store(&c.go, 1);
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    /* What is still in flight, freed here on CPU 0. */
    for (unsigned i = 0; i < WORKERS; i++)
        for (void *q; (q = ring_take(&c.ring[i])) != NULL;)
            check_and_free(&c, q);
    KT_EXPECT_EQ(t, atomic_load(&c.bad), 0);
    uint64_t lent = 0;
    for (unsigned i = 0; i < KT_HEAP_CLASSES; i++)
        lent += kt_cache_stats(t, &h, kmm_heap_cache_at(h.f.k, i)).lent;
    ktest_diag(t, "%llu blocks lent between classes", (unsigned long long)lent);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, (uint64_t)WORKERS * STEPS);
    KT_EXPECT_EQ(t, s1.frees - s0.frees, (uint64_t)WORKERS * STEPS);
    KT_EXPECT_EQ(t, s1.misuse, 0);
    expect_all_back(t, &h, &p0, &s0);
    kt_heap_down(&h);
}

/* --- lent blocks across CPUs ---------------------------------------------------------- */

#define LEND_BLOCKS 64 /* per worker */

struct lending {
    struct kt_heap *h;
    void *p[WORKERS][LEND_BLOCKS];
    atomic_uint ready, go;
    atomic_ulong bad;
};

struct lending_worker {
    struct lending *l;
    unsigned id;
};

/* Each worker allocates its blocks of 144 bytes at once with the others
 * (the first of them lent by class 160, which is idle, the rest of class
 * 144 once 160 no longer is), fills them, and once all have, checks and
 * frees the next worker's with their size: lent marks set on one CPU, read
 * on another, while other CPUs set and clear marks in the same slabs. */
static void *lending_main(void *arg)
{
    struct lending_worker *w = arg;
    struct lending *l = w->l;
    struct kmm *k = l->h->f.k;
    if (!hosted_cpu_enter(1 + w->id)) {
        atomic_fetch_add(&l->bad, 1);
        atomic_fetch_add(&l->ready, 1);
        return NULL;
    }
    while (!atomic_load(&l->go))
        sched_yield();
    for (unsigned i = 0; i < LEND_BLOCKS; i++) {
        uint8_t *p = kmm_malloc(k, 144, 0);
        if (!p) {
            atomic_fetch_add(&l->bad, 1);
            continue;
        }
        for (unsigned b = 0; b < 144; b++)
            p[b] = kt_heap_pattern(w->id << 8 | i, b);
        l->p[w->id][i] = p;
    }
    atomic_fetch_add(&l->ready, 1);
    while (atomic_load(&l->ready) < WORKERS)
        sched_yield();
    unsigned from = (w->id + 1) % WORKERS;
    for (unsigned i = 0; i < LEND_BLOCKS; i++) {
        uint8_t *p = l->p[from][i];
        if (!p)
            continue;
        for (unsigned b = 0; b < 144; b++)
            if (p[b] != kt_heap_pattern(from << 8 | i, b)) {
                atomic_fetch_add(&l->bad, 1);
                break;
            }
        if (kmm_free_sized(k, p, 144) != KMM_OK)
            atomic_fetch_add(&l->bad, 1);
    }
    hosted_cpu_exit();
    return NULL;
}

KTEST(heap_threads, blocks_lent_on_one_cpu_are_sized_freed_on_another)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0;
    kmm_page_stats(k, &p0);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    /* Class 160 idle: two slabs' worth allocated, freed, drained back. */
    static void *idle[64];
    for (unsigned i = 0; i < N(idle); i++)
        KT_ASSERT(t, (idle[i] = kmm_malloc(k, 160, 0)) != NULL);
    for (unsigned i = 0; i < N(idle); i++)
        KT_ASSERT_EQ(t, kmm_free(k, idle[i]), KMM_OK);
    kmm_heap_drain_cpu(k);
    static struct lending l;
    l = (struct lending){.h = &h};
    pthread_t th[WORKERS];
    struct lending_worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] = (struct lending_worker){&l, i};
        pthread_create(&th[i], NULL, lending_main, &w[i]);
    }
    atomic_store(&l.go, 1);
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, atomic_load(&l.bad), 0);
    struct kmm_cache_stats lender = kt_cache_stats(t, &h, kt_heap_class_cache(&h, 160));
    ktest_diag(t, "%llu of %u blocks lent", (unsigned long long)lender.lent, WORKERS * LEND_BLOCKS);
    KT_EXPECT(t, lender.lent > 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 0);
    expect_all_back(t, &h, &p0, &s0);
    kt_heap_down(&h);
}

/* --- two CPUs freeing one block at once ------------------------------------------------- */

#define ROUNDS      4000
#define RACE_JITTER 512 /* the most loop steps a racer waits after the barrier */

struct race {
    struct kmm *k;
    struct spin_barrier start, end;
    _Atomic(void *) p;
    int result[2];
    unsigned long wrong; /* rounds whose results were not one OK and one KMM_ESTATE, or two OK */
    unsigned long both;  /* rounds in which both frees returned OK */
    int bad[2];
};

struct racer {
    struct race *r;
    unsigned who;
};

static void *racer_main(void *arg)
{
    struct racer *a = arg;
    struct race *r = a->r;
    if (!hosted_cpu_enter(1 + a->who))
        return NULL;
    long host_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (host_cpus > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)(a->who % (unsigned long)host_cpus), &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    uint64_t seed = 0xf7ee + a->who;
    for (unsigned long round = 0; round < ROUNDS; round++) {
        if (a->who == 0)
            atomic_store(&r->p, kmm_malloc(r->k, 64, 0));
        spin_wait(&r->start);
        for (uint64_t d = kt_rng(&seed) % RACE_JITTER; d > 0; d--)
            __asm__ volatile("" ::: "memory");
        r->result[a->who] = kmm_free(r->k, atomic_load(&r->p));
        spin_wait(&r->end);
        /* Both stop at the first wrong round: the heap may be corrupt
         * after it (one object on two CPUs' stacks). */
        /* kmm/heap.h: one OK and one KMM_ESTATE, or, when the two frees
         * meet at the same instant, two OKs (the tag is not taken with an
         * atomic read-modify-write); never two errors. */
        bool both = r->result[0] == KMM_OK && r->result[1] == KMM_OK;
        bool right = both || (r->result[0] == KMM_OK && r->result[1] == KMM_ESTATE) ||
                     (r->result[0] == KMM_ESTATE && r->result[1] == KMM_OK);
        if (both && a->who == 0)
            r->both++;
        if (!right) {
            if (a->who == 0) {
                r->wrong++;
                r->bad[0] = r->result[0];
                r->bad[1] = r->result[1];
            }
            break;
        }
        spin_wait(&r->start); /* the judging is done before the next round's results */
    }
    hosted_cpu_exit();
    return NULL;
}

KTEST(heap_threads, two_cpus_freeing_one_block_at_once_never_corrupt_the_heap)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0;
    kmm_page_stats(h.f.k, &p0);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    void *neighbour = kmm_malloc(h.f.k, 64, 0); /* keeps a slab of the class alive */
    KT_ASSERT(t, neighbour != NULL);
    static struct race r;
    r = (struct race){.k = h.f.k};
    pthread_t th[2];
    struct racer a[2] = {{&r, 0}, {&r, 1}};
    for (unsigned i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, racer_main, &a[i]);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    if (r.wrong) {
        /* The heap may be corrupt: tear nothing down. */
        ktest_fail_at(t, __FILE__, __LINE__, "a round returned %s and %s", kmm_strerror(r.bad[0]),
                      kmm_strerror(r.bad[1]));
        return;
    }
    struct kmm_misuse_stats ms;
    kmm_misuse_stats(h.f.k, &ms);
    ktest_diag(t, "%lu of %u rounds: both frees returned OK", r.both, (unsigned)ROUNDS);
    KT_EXPECT_EQ(t, ms.count[KMM_LAYER_HEAP][KMM_MISUSE_DOUBLE_FREE], ROUNDS - r.both);
    KT_EXPECT_EQ(t, ms.total, ROUNDS - r.both);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, neighbour), KMM_OK);
    /* A round with two OKs counted two frees of one block. */
    expect_all_back_but(t, &h, &p0, &s0, r.both);
    kt_heap_down(&h);
}

/* --- lending while another CPU shrinks ---------------------------------------------------- */

#define LENDERS    3    /* CPUs 1 .. 3 allocate and free; CPU 4 shrinks */
#define LEND_BIG   96   /* blocks of 160 per round, three in four freed at once */
#define LEND_ROUND 32   /* blocks of 144 per round */
#define LEND_STEPS 1000 /* rounds per CPU */

struct shrink_lending {
    struct kt_heap *h;
    struct kmm_cache *lender; /* class 160's, which lends to 144 */
    atomic_uint running;      /* CPUs still allocating */
    atomic_ulong bad, shrinks;
};

/* One CPU's rounds: blocks of 160 allocated and three in four freed (more
 * than half a stack: idle; the rest stay out in the same slabs, so marks
 * are set and cleared in words other objects share), then blocks of 144
 * (lent the 160s' free objects when 144 has none), each checked and freed,
 * half with its size. */
static void lend_rounds(void *arg)
{
    struct shrink_lending *l = arg;
    struct kmm *k = l->h->f.k;
    void *big[LEND_BIG], *small[LEND_ROUND];
    for (unsigned step = 0; step < LEND_STEPS; step++) {
        for (unsigned i = 0; i < LEND_BIG; i++)
            if (!(big[i] = kmm_malloc(k, 160, 0)))
                atomic_fetch_add(&l->bad, 1);
        for (unsigned i = 0; i < LEND_BIG; i++)
            if (i % 4 && kmm_free_sized(k, big[i], 160) != KMM_OK)
                atomic_fetch_add(&l->bad, 1);
        for (unsigned i = 0; i < LEND_ROUND; i++) {
            small[i] = kmm_malloc(k, 144, 0);
            if (!small[i] || kmm_usable_size(k, small[i]) < 144) {
                atomic_fetch_add(&l->bad, 1);
                continue;
            }
            kt_heap_fill(l->h, small[i], 0, 144, step + i);
        }
        for (unsigned i = 0; i < LEND_ROUND; i++) {
            if (!small[i])
                continue;
            if (!kt_heap_holds(l->h, small[i], 0, 144, step + i) ||
                (i % 2 ? kmm_free_sized(k, small[i], 144) : kmm_free(k, small[i])) != KMM_OK)
                atomic_fetch_add(&l->bad, 1);
        }
        for (unsigned i = 0; i < LEND_BIG; i += 4)
            if (kmm_free_sized(k, big[i], 160) != KMM_OK)
                atomic_fetch_add(&l->bad, 1);
        if (step % 64 == 0)
            kmm_heap_drain_cpu(k); /* this CPU's objects back to their slabs, marks away */
    }
    atomic_fetch_sub(&l->running, 1);
}

/* CPU 4 meanwhile: shrinks the heap (its drain requests reach the other
 * CPUs at their next refill) and the lender, giving back the slabs whose
 * objects the others are lent. (No kmm_check here: it reads the other
 * CPUs' stacks without their owners' leave, a race by design.) */
static void shrink_all(void *arg)
{
    struct shrink_lending *l = arg;
    struct kmm *k = l->h->f.k;
    while (atomic_load(&l->running)) {
        kmm_heap_shrink(k);
        kmm_cache_shrink(k, l->lender);
        atomic_fetch_add(&l->shrinks, 1);
    }
}

struct lend_thread {
    struct shrink_lending *l;
    unsigned cpu;
};

static void *lend_thread_main(void *arg)
{
    struct lend_thread *lt = arg;
    if (!hosted_cpu_enter(lt->cpu)) {
        atomic_fetch_add(&lt->l->bad, 1);
        if (lt->cpu <= LENDERS)
            atomic_fetch_sub(&lt->l->running, 1);
        return NULL;
    }
    (lt->cpu <= LENDERS ? lend_rounds : shrink_all)(lt->l);
    hosted_cpu_exit();
    return NULL;
}

KTEST(heap_threads, cpus_lending_between_classes_while_another_shrinks_lose_nothing)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0;
    kmm_page_stats(h.f.k, &p0);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    static struct shrink_lending l;
    l = (struct shrink_lending){.h = &h, .lender = kt_heap_class_cache(&h, 160)};
    KT_ASSERT(t, l.lender != NULL);
    uint64_t lent0 = kt_cache_stats(t, &h, l.lender).lent;
    atomic_store(&l.running, LENDERS);
    pthread_t th[LENDERS + 1];
    struct lend_thread lt[LENDERS + 1];
    for (unsigned i = 0; i <= LENDERS; i++) {
        lt[i] = (struct lend_thread){&l, 1 + i};
        pthread_create(&th[i], NULL, lend_thread_main, &lt[i]);
    }
    for (unsigned i = 0; i <= LENDERS; i++)
        pthread_join(th[i], NULL);
    KT_EXPECT_EQ(t, atomic_load(&l.bad), 0);
    uint64_t lent = kt_cache_stats(t, &h, l.lender).lent - lent0;
    ktest_diag(t, "%llu blocks lent, %lu shrinks meanwhile", (unsigned long long)lent,
               atomic_load(&l.shrinks));
    KT_EXPECT(t, lent > 0);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.misuse, 0);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, s1.frees - s0.frees);
    expect_all_back(t, &h, &p0, &s0);
    kt_heap_down(&h);
}
