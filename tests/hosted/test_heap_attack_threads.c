/*
 * test_heap_attack_threads.c - the heap attacked by CPUs at once: one large
 * block freed on two CPUs at the same moment, and caches destroyed while
 * other CPUs shrink the heap. Hosted (threads act as CPUs); meant to run
 * under ThreadSanitizer as well (build/tsan).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "fixture.h"
#include "heap_fixture.h"
#include "hosted.h"
#include "ktest.h"
#include "spin_barrier.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  ((size_t)1 << 10)
#define MIB  ((size_t)1 << 20)
#define CPUS 3 /* CPU 0: the test's thread; 1, 2: the racers */

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/* Pins the calling thread to a host CPU of its own where there are two. */
static void pin(unsigned who)
{
    long host_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (host_cpus > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)(who % (unsigned long)host_cpus), &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
}

/* --- one large block freed on two CPUs at once -------------------------------------------- */

#define ROUNDS      4000
#define RACE_JITTER 256 /* the most loop steps a racer waits after the barrier */

struct race {
    struct kmm *k;
    size_t size;
    struct spin_barrier start, end;
    _Atomic(void *) p;
    int result[2];
    unsigned long ok;    /* frees that returned KMM_OK */
    unsigned long wrong; /* rounds whose results were not one OK and one error */
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
    pin(a->who);
    uint64_t seed = 0x1a7e + a->who;
    for (unsigned long round = 0; round < ROUNDS; round++) {
        if (a->who == 0)
            atomic_store(&r->p, kmm_malloc(r->k, r->size, 0));
        spin_wait(&r->start);
        for (uint64_t d = kt_rng(&seed) % RACE_JITTER; d > 0; d--)
            __asm__ volatile("" ::: "memory");
        r->result[a->who] = kmm_free(r->k, atomic_load(&r->p));
        spin_wait(&r->end);
        /* A block of whole pages has no CPU stack to hide a second copy
         * in: exactly one free is KMM_OK, the other is refused (a double
         * free, or no block any more). */
        int ok = (r->result[0] == KMM_OK) + (r->result[1] == KMM_OK);
        if (a->who == 0)
            r->ok += (unsigned long)ok;
        if (ok != 1) {
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

/* Races two CPUs freeing blocks of size bytes, ROUNDS times; checks one
 * free of each round won and the other was refused, counted once (in the
 * heap's row of the misuse table if heap_row). */
static void race_frees(struct ktest *t, size_t size, bool heap_row)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    kt_heap_warm(t, &h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    struct kmm_misuse_stats m0;
    kmm_misuse_stats(h.f.k, &m0);
    static struct race r;
    r = (struct race){.k = h.f.k, .size = size};
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
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    struct kmm_misuse_stats m1;
    kmm_misuse_stats(h.f.k, &m1);
    KT_EXPECT_EQ(t, r.ok, ROUNDS);
    if (heap_row)
        KT_EXPECT_EQ(t, s1.misuse - s0.misuse, ROUNDS);
    KT_EXPECT_EQ(t, m1.total - m0.total, ROUNDS);
    KT_EXPECT_EQ(t, s1.large_blocks, 0);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, s1.frees - s0.frees, ROUNDS);
    for (unsigned cpu = 1; cpu < CPUS; cpu++) {
        KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h.f.k, cpu), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(h.f.k, cpu), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap_attack_threads, a_block_of_whole_pages_freed_on_two_cpus_at_once_is_freed_once)
{
    race_frees(t, 16 * KIB, true);
}

/* The window judges the second free of a vmalloc'd block (kmm/vmalloc.h:
 * the area is being freed, or gone), and counts it in its own row. */
KTEST(heap_attack_threads, a_vmalloced_block_freed_on_two_cpus_at_once_is_freed_once)
{
    race_frees(t, 300 * KIB, false);
}

/* --- a cache destroyed while another CPU shrinks the heap ---------------------------------- */

#define DESTROY_ROUNDS 300
#define DESTROY_OBJS   1200 /* 64-byte objects: a full stack and a depot of magazines */

struct shrinker_cpu {
    struct kmm *k;
    atomic_bool stop;
    atomic_ulong passes;
};

static void *shrinker_main(void *arg)
{
    struct shrinker_cpu *s = arg;
    if (!hosted_cpu_enter(1))
        return NULL;
    pin(1);
    while (!atomic_load(&s->stop)) {
        kmm_heap_shrink(s->k);
        atomic_fetch_add(&s->passes, 1);
    }
    hosted_cpu_exit();
    return NULL;
}

/*
 * kmm_heap_shrink (what the reclaim hook runs, on whichever CPU allocates)
 * walks every cache; a cache destroyed meanwhile must not be freed under
 * the walk. Each round fills a cache's depot, destroys the cache while
 * another CPU shrinks the heap, and takes the destroyed cache's page back
 * at once (zeroed): a walk still inside the cache would find no CPUs there
 * (a panic) or scribble over the page's new owner.
 */
/* What the destroying CPU saw over the rounds. */
struct destroy_tally {
    unsigned destroyed, reused, scribbled;
};

/* One round: a cache made, its depot filled, the cache destroyed, and its
 * page taken back at once. Returns at the first failure (the caller stops
 * the shrinking CPU either way). */
static void destroy_round(struct ktest *t, struct kt_heap *h, struct shrinker_cpu *s,
                          struct destroy_tally *n)
{
    static void *o[DESTROY_OBJS];
    struct kmm *k = h->f.k;
    struct kmm_cache *c = kmm_cache_create(k, "kt-doomed", 64, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    for (unsigned i = 0; i < DESTROY_OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_cache_alloc(k, c, 0)) != NULL);
    for (unsigned i = 0; i < DESTROY_OBJS; i++)
        KT_ASSERT_EQ(t, kmm_cache_free(k, c, o[i]), KMM_OK);
    /* The page the cache's structure starts in (it starts at a line of
     * it: heap/cache.c's colouring). */
    uintptr_t first = (uintptr_t)c & ~(uintptr_t)(KT_PAGE - 1);
    if (kmm_cache_destroy(k, c) != KMM_OK)
        return;
    n->destroyed++;
    /* The cache's page, if the page allocator hands it out again. */
    uint64_t pa = kmm_page_alloc(k, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, pa != 0);
    uint8_t *page = kt_machine_phys(h->f.m, pa);
    if ((uintptr_t)page == first) {
        n->reused++;
        unsigned long seen = atomic_load(&s->passes);
        while (atomic_load(&s->passes) < seen + 2) /* a whole walk since */
            sched_yield();
        n->scribbled += !kt_heap_all(h, page, 0, KT_PAGE, 0);
    }
    KT_ASSERT_EQ(t, kmm_page_free(k, pa, 0), KMM_OK);
}

KTEST(heap_attack_threads,
      a_cache_destroyed_while_another_cpu_shrinks_the_heap_is_not_freed_under_it)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), 2))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    static struct shrinker_cpu s;
    s = (struct shrinker_cpu){.k = k};
    pthread_t th;
    pthread_create(&th, NULL, shrinker_main, &s);
    pin(0);
    struct destroy_tally n = {0};
    for (unsigned round = 0; round < DESTROY_ROUNDS && !ktest_failed(t); round++)
        destroy_round(t, &h, &s, &n);
    /* Stopped on a failure too: a shrinker left running would hold CPU 1
     * and hang the next test. */
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    ktest_diag(t, "%u rounds, %u caches destroyed, %u pages reused at once", DESTROY_ROUNDS,
               n.destroyed, n.reused);
    KT_EXPECT_EQ(t, n.destroyed, DESTROY_ROUNDS);
    KT_EXPECT_EQ(t, n.scribbled, 0);
    KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(k, 1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(k, 1), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- a block reallocated on one CPU while another frees it ------------------------------- */

struct realloc_race {
    struct kmm *k;
    struct spin_barrier start, end;
    _Atomic(void *) p;
    void *q;          /* what kmm_realloc returned */
    int freed;        /* what kmm_free returned */
    unsigned long ok; /* rounds in which exactly one of the two took the block */
    unsigned long wrong;
};

struct realloc_racer {
    struct realloc_race *r;
    unsigned who;
};

static void *realloc_racer_main(void *arg)
{
    struct realloc_racer *a = arg;
    struct realloc_race *r = a->r;
    if (!hosted_cpu_enter(1 + a->who))
        return NULL;
    pin(a->who);
    uint64_t seed = 0x4ea1 + a->who;
    for (unsigned long round = 0; round < ROUNDS; round++) {
        if (a->who == 0)
            atomic_store(&r->p, kmm_malloc(r->k, 16 * KIB, 0));
        spin_wait(&r->start);
        for (uint64_t d = kt_rng(&seed) % RACE_JITTER; d > 0; d--)
            __asm__ volatile("" ::: "memory");
        if (a->who == 0)
            r->q = kmm_realloc(r->k, atomic_load(&r->p), 64 * KIB, 0);
        else
            r->freed = kmm_free(r->k, atomic_load(&r->p));
        spin_wait(&r->end);
        /* The block is the realloc's (moved: q) or the free's, never both,
         * and a realloc that lost returns NULL with nothing left behind. */
        if (a->who == 0) {
            bool realloc_won = r->q != NULL, free_won = r->freed == KMM_OK;
            if (realloc_won != free_won)
                r->ok++;
            else
                r->wrong++;
            if (r->q)
                kmm_free(r->k, r->q);
        }
        spin_wait(&r->start);
    }
    hosted_cpu_exit();
    return NULL;
}

/* A caller's race (kmm_realloc and kmm_free of one block at once) is a
 * double free like any other: refused and counted, never a panic. */
KTEST(heap_attack_threads, a_block_reallocated_while_another_cpu_frees_it_is_taken_once)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    kt_heap_warm(t, &h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    static struct realloc_race r;
    r = (struct realloc_race){.k = h.f.k};
    pthread_t th[2];
    struct realloc_racer a[2] = {{&r, 0}, {&r, 1}};
    for (unsigned i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, realloc_racer_main, &a[i]);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, r.wrong, 0);
    KT_EXPECT_EQ(t, r.ok, ROUNDS);
    KT_EXPECT_EQ(t, s1.large_blocks, 0);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    for (unsigned cpu = 1; cpu < CPUS; cpu++) {
        KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h.f.k, cpu), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(h.f.k, cpu), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- one cache destroyed on two CPUs at once -------------------------------------------- */

#define DESTROY_TWICE_ROUNDS 2000

struct destroy_race {
    struct kmm *k;
    struct spin_barrier start, end;
    _Atomic(struct kmm_cache *) c;
    int result[2];
    unsigned long ok, wrong;
    int bad[2];
};

struct destroy_racer {
    struct destroy_race *r;
    unsigned who;
};

static void *destroy_racer_main(void *arg)
{
    struct destroy_racer *a = arg;
    struct destroy_race *r = a->r;
    if (!hosted_cpu_enter(1 + a->who))
        return NULL;
    pin(a->who);
    uint64_t seed = 0xde57 + a->who;
    for (unsigned long round = 0; round < DESTROY_TWICE_ROUNDS; round++) {
        if (a->who == 0) {
            struct kmm_cache *c = kmm_cache_create(r->k, "kt-twice", 96, 0, NULL, 0);
            void *o = c ? kmm_cache_alloc(r->k, c, 0) : NULL;
            if (o)
                kmm_cache_free(r->k, c, o);
            kmm_heap_drain_cpu(r->k); /* no object cached: either destroy may win */
            atomic_store(&r->c, c);
        }
        spin_wait(&r->start);
        for (uint64_t d = kt_rng(&seed) % RACE_JITTER; d > 0; d--)
            __asm__ volatile("" ::: "memory");
        r->result[a->who] = kmm_cache_destroy(r->k, atomic_load(&r->c));
        spin_wait(&r->end);
        /* One destroy is KMM_OK; the other finds no live cache. */
        int ok = (r->result[0] == KMM_OK) + (r->result[1] == KMM_OK);
        int einval = (r->result[0] == KMM_EINVAL) + (r->result[1] == KMM_EINVAL);
        if (a->who == 0) {
            if (ok == 1 && einval == 1) {
                r->ok++;
            } else {
                r->wrong++;
                r->bad[0] = r->result[0];
                r->bad[1] = r->result[1];
            }
        }
        if (ok != 1 || einval != 1)
            break;
        spin_wait(&r->start);
    }
    hosted_cpu_exit();
    return NULL;
}

/* A caller's race (the same cache destroyed on two CPUs at once): one
 * destroy wins, the other is refused as a dead handle; never a panic, and
 * no other cache loses its slot. */
KTEST(heap_attack_threads, a_cache_destroyed_on_two_cpus_at_once_is_destroyed_once)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram, N(ram), CPUS))
        return;
    kt_heap_warm(t, &h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    struct kmm_cache *other = kmm_cache_create(h.f.k, "kt-bystander", 40, 0, NULL, 0);
    KT_ASSERT(t, other != NULL);
    static struct destroy_race r;
    r = (struct destroy_race){.k = h.f.k};
    pthread_t th[2];
    struct destroy_racer a[2] = {{&r, 0}, {&r, 1}};
    for (unsigned i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, destroy_racer_main, &a[i]);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    if (r.wrong) {
        ktest_fail_at(t, __FILE__, __LINE__, "a round returned %s and %s", kmm_strerror(r.bad[0]),
                      kmm_strerror(r.bad[1]));
        return;
    }
    KT_EXPECT_EQ(t, r.ok, DESTROY_TWICE_ROUNDS);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.caches, s0.caches + 1);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, DESTROY_TWICE_ROUNDS);
    KT_EXPECT_EQ(t, s1.frees - s0.frees, DESTROY_TWICE_ROUNDS);
    void *o = kmm_cache_alloc(h.f.k, other, 0);
    KT_EXPECT(t, o != NULL);
    KT_EXPECT_EQ(t, kmm_cache_free(h.f.k, other, o), KMM_OK);
    for (unsigned cpu = 1; cpu < CPUS; cpu++) {
        KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h.f.k, cpu), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(h.f.k, cpu), KMM_OK);
    }
    kmm_heap_drain_cpu(h.f.k);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, other), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}
