/*
 * test_page_races.c - two CPUs misusing one page at the same moment: every
 * racing call is judged as it would be one after the other, and nothing is
 * corrupted. Hosted (threads act as CPUs, released together by a spinning
 * barrier round after round); meant to run under ThreadSanitizer as well.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <stdatomic.h>

#include "fixture.h"
#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define MIB         (UINT64_C(1) << 20)
#define ROUNDS      20000
/* The most loop steps (about a cycle each) a racer waits after the barrier. */
#define RACE_JITTER 512

static const struct kmm_region ram[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

/* A barrier for two threads that spins (a sleeping barrier would wake them
 * at different times and the race would rarely happen). */
struct spin_barrier {
    atomic_uint arrived;
    atomic_uint generation;
};

static void spin_wait(struct spin_barrier *b)
{
    unsigned gen = atomic_load(&b->generation);
    if (atomic_fetch_add(&b->arrived, 1) == 1) {
        atomic_store(&b->arrived, 0);
        atomic_store(&b->generation, gen + 1);
        return;
    }
    for (unsigned spins = 0; atomic_load(&b->generation) == gen; spins++)
        if (spins > 1000)
            sched_yield(); /* the other thread may not be running: let it */
}

/* Two CPUs; in each round the first allocates a page (an action) and both
 * then race a call on it (racer). */
struct race {
    struct kmm *k;
    struct spin_barrier start, end;
    _Atomic uint64_t pa;
    void (*setup)(struct race *r); /* the first CPU, before the race */
    int (*racer)(struct race *r, unsigned who);
    int result[2];
    unsigned long wrong; /* 1 if a round's two results were not what they must be */
    unsigned long rounds;
    int (*judge)(const int result[2]); /* 1 if the pair of results is right */
};

struct racer_arg {
    struct race *r;
    unsigned who;
};

static void *racer_main(void *arg)
{
    struct racer_arg *a = arg;
    struct race *r = a->r;
    if (!hosted_cpu_enter(1 + a->who))
        return NULL;
    /* On two host CPUs of their own, or the scheduler may keep both racers
     * on one, where they never meet. */
    long host_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (host_cpus > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)(a->who % (unsigned long)host_cpus), &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    uint64_t seed = 0x7ace + a->who;
    for (unsigned long i = 0; i < r->rounds; i++) {
        if (a->who == 0)
            r->setup(r);
        spin_wait(&r->start);
        /* The barrier lets one thread go a little before the other: a
         * varying delay of either makes some rounds meet exactly. */
        for (uint64_t d = kt_rng(&seed) % RACE_JITTER; d > 0; d--)
            __asm__ volatile("" ::: "memory");
        r->result[a->who] = r->racer(r, a->who);
        spin_wait(&r->end);
        /* Both judge (the barrier ordered the results before), so both
         * stop at the first wrong round: after it the allocator may be
         * corrupt, and another round could loop forever. */
        if (!r->judge(r->result)) {
            if (a->who == 0)
                r->wrong++;
            break;
        }
    }
    hosted_cpu_exit();
    return NULL;
}

/* Runs the race on CPUs 1 and 2 (the test's own thread, CPU 0, waits). */
static void run_race(struct race *r)
{
    pthread_t th[2];
    struct racer_arg args[2] = {{r, 0}, {r, 1}};
    for (unsigned i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, racer_main, &args[i]);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
}

static bool up(struct ktest *t, struct kt_kmm *f)
{
    return kt_kmm_up(t, f, ram, sizeof(ram) / sizeof(ram[0]), 3, 0);
}

/* Both CPUs' caches back to the zones, then the check: the threads are gone. */
static void expect_healthy_after(struct ktest *t, struct kt_kmm *f)
{
    KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(f->k, 1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(f->k, 2), KMM_OK);
    KT_EXPECT_HEALTHY(t, f->k);
}

/* --- two frees of one page ---------------------------------------------------- */

static void alloc_page(struct race *r)
{
    atomic_store(&r->pa, kmm_page_alloc(r->k, 0, 0));
}

static int free_page(struct race *r, unsigned who)
{
    (void)who;
    return kmm_page_free(r->k, atomic_load(&r->pa), 0);
}

static int one_ok_one_double_free(const int result[2])
{
    return (result[0] == KMM_OK && result[1] == KMM_ESTATE) ||
           (result[0] == KMM_ESTATE && result[1] == KMM_OK);
}

KTEST(page_races, two_cpus_freeing_one_page_at_once_are_one_free_and_one_double_free)
{
    struct kt_kmm f;
    if (!up(t, &f))
        return;
    struct kmm_page_stats before, after;
    kmm_page_stats(f.k, &before);
    struct race r = {.k = f.k,
                     .setup = alloc_page,
                     .racer = free_page,
                     .judge = one_ok_one_double_free,
                     .rounds = ROUNDS};
    run_race(&r);
    KT_ASSERT_EQ(t, r.wrong, 0); /* else the caches may hold a cycle: no drain */
    kmm_page_stats(f.k, &after);
    KT_EXPECT_EQ(t, after.misuse[KMM_MISUSE_DOUBLE_FREE] - before.misuse[KMM_MISUSE_DOUBLE_FREE],
                 ROUNDS);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    expect_healthy_after(t, &f);
    kt_kmm_down(&f);
}
