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
#include "spin_barrier.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define MIB         (UINT64_C(1) << 20)
#define ROUNDS      20000
/* The most loop steps (about a cycle each) a racer waits after the barrier. */
#define RACE_JITTER 512

static const struct kmm_region ram[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

/* Two CPUs; in each round the first prepares a page (setup), both then
 * race a call on it (racer), and the first puts things back (cleanup). */
struct race {
    struct kmm *k;
    struct kmm_aspace *as; /* the kernel space, for the mapping races */
    struct spin_barrier start, end;
    _Atomic uint64_t pa;
    unsigned long round;
    void (*setup)(struct race *r); /* the first CPU, before the race */
    int (*racer)(struct race *r, unsigned who);
    int (*judge)(const int result[2]);                    /* 1 if the pair of results is right */
    void (*cleanup)(struct race *r, const int result[2]); /* the first CPU; may be NULL */
    int result[2];
    unsigned long rounds;
    unsigned long wrong; /* 1 if a round's two results were not what they must be */
    int bad[2];          /* then those results */
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
        if (a->who == 0) {
            r->round = i;
            r->setup(r);
        }
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
            if (a->who == 0) {
                r->wrong++;
                r->bad[0] = r->result[0];
                r->bad[1] = r->result[1];
            }
            break;
        }
        if (a->who == 0 && r->cleanup)
            r->cleanup(r, r->result);
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

/* Fails the test (and returns false) if a round went wrong. After a wrong
 * round the allocator may be corrupt (a cache list with a cycle): the
 * caller then tears nothing down. */
static bool expect_right_at(struct ktest *t, const struct race *r, int line)
{
    if (!r->wrong)
        return true;
    ktest_fail_at(t, __FILE__, line, "a round returned %s and %s", kmm_strerror(r->bad[0]),
                  kmm_strerror(r->bad[1]));
    return false;
}
#define expect_right(t, r)                                                                         \
    do {                                                                                           \
        if (!expect_right_at((t), (r), __LINE__))                                                  \
            return;                                                                                \
    } while (0)

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
    expect_right(t, &r);
    kmm_page_stats(f.k, &after);
    KT_EXPECT_EQ(t, after.misuse[KMM_MISUSE_DOUBLE_FREE] - before.misuse[KMM_MISUSE_DOUBLE_FREE],
                 ROUNDS);
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    expect_healthy_after(t, &f);
    kt_kmm_down(&f);
}

/* --- a free racing an owned map, or the unmap, of the page ------------------------- */

#define PAGE     UINT64_C(4096)
#define RACE_VA  UINT64_C(0xffffc00000000000) /* kernel half, outside every window */
#define OTHER_PT (2 * MIB)                    /* from RACE_VA: under a page table of its own */

/* Where a round maps: even rounds next to a page that stays mapped (the
 * page table exists: kmm_vm_map's one-page path), odd ones where no page
 * table is (its range path, which makes the table first). */
static uint64_t round_va(const struct race *r)
{
    return RACE_VA + (r->round % 2 ? OTHER_PT : 0);
}

static int map_owned_or_free(struct race *r, unsigned who)
{
    uint64_t pa = atomic_load(&r->pa);
    if (who == 0)
        return kmm_vm_map(r->as, round_va(r), pa, PAGE, KMM_PROT_READ | KMM_MAP_OWNED);
    return kmm_page_free(r->k, pa, 0); /* the caller's own reference, while it is mapped */
}

/* The free always succeeds: it drops the reference the caller holds. The
 * map either took its reference first, or finds the frame freed. */
static int mapped_or_refused(const int result[2])
{
    return result[1] == KMM_OK && (result[0] == KMM_OK || result[0] == KMM_ESTATE);
}

static void unmap_if_mapped(struct race *r, const int result[2])
{
    if (result[0] == KMM_OK) /* the mapping holds the last reference: the unmap frees it */
        (void)kmm_vm_unmap(r->as, round_va(r), PAGE);
}

/* A page mapped next to RACE_VA for the whole test, so that RACE_VA's page
 * table stays. Returns its frame, 0 on failure. */
static uint64_t keep_page_table(struct kt_kmm *f)
{
    uint64_t pa = kmm_page_alloc(f->k, 0, 0);
    if (pa && kmm_vm_map(kmm_kernel_aspace(f->k), RACE_VA + PAGE, pa, PAGE, KMM_PROT_READ))
        pa = 0;
    return pa;
}

static void drop_page_table(struct ktest *t, struct kt_kmm *f, uint64_t pa)
{
    KT_EXPECT_EQ(t, kmm_vm_unmap(kmm_kernel_aspace(f->k), RACE_VA + PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f->k, pa, 0), KMM_OK);
}

/* Runs race r with the page table of its addresses kept alive throughout
 * (so that no round frees or allocates one), judging every round; fills
 * *before and *after with the page figures around it and expects every
 * frame back. Returns false, the test failed, if the table could not be
 * made or a round went wrong; the caller then tears nothing down, as after
 * expect_right. */
static bool race_beside_a_table(struct ktest *t, struct kt_kmm *f, struct race *r,
                                struct kmm_page_stats *before, struct kmm_page_stats *after)
{
    kmm_page_stats(f->k, before);
    uint64_t kept = keep_page_table(f);
    if (!kept) {
        ktest_fail_at(t, __FILE__, __LINE__, "no page table for the race's addresses");
        return false;
    }
    run_race(r);
    if (!expect_right_at(t, r, __LINE__))
        return false;
    drop_page_table(t, f, kept);
    kmm_page_stats(f->k, after);
    KT_EXPECT_EQ(t, after->allocated_pages, before->allocated_pages); /* every frame went back */
    return true;
}

KTEST(page_races, a_frame_freed_while_it_is_mapped_owned_is_mapped_or_refused_cleanly)
{
    struct kt_kmm f;
    if (!up(t, &f))
        return;
    struct kmm_page_stats before, after;
    struct race r = {.k = f.k,
                     .as = kmm_kernel_aspace(f.k),
                     .setup = alloc_page,
                     .racer = map_owned_or_free,
                     .judge = mapped_or_refused,
                     .cleanup = unmap_if_mapped,
                     .rounds = ROUNDS};
    if (!race_beside_a_table(t, &f, &r, &before, &after))
        return;
    expect_healthy_after(t, &f);
    kt_kmm_down(&f);
}

/* Maps a fresh page owned and drops the caller's reference: only the
 * mapping holds it, as with vmalloc. */
static void map_owned_page(struct race *r)
{
    uint64_t pa = kmm_page_alloc(r->k, 0, 0);
    if (pa && kmm_vm_map(r->as, round_va(r), pa, PAGE, KMM_PROT_READ | KMM_MAP_OWNED) == KMM_OK)
        (void)kmm_page_free(r->k, pa, 0);
    atomic_store(&r->pa, pa);
}

static int unmap_or_free(struct race *r, unsigned who)
{
    if (who == 0)
        return kmm_vm_unmap(r->as, round_va(r), PAGE);
    return kmm_page_free(r->k, atomic_load(&r->pa), 0); /* not the caller's to free */
}

/* The unmap always succeeds. The free is refused: the mapping's reference
 * is not the caller's (KMM_EBUSY), or, once the unmap let the frame go, it
 * is a double free (KMM_ESTATE, also when the frame merged into a free
 * block since). */
static int unmapped_and_refused(const int result[2])
{
    return result[0] == KMM_OK && (result[1] == KMM_EBUSY || result[1] == KMM_ESTATE);
}

KTEST(page_races, an_owned_frame_freed_by_the_caller_while_mapped_is_refused)
{
    struct kt_kmm f;
    if (!up(t, &f))
        return;
    struct kmm_page_stats before, after;
    struct race r = {.k = f.k,
                     .as = kmm_kernel_aspace(f.k),
                     .setup = map_owned_page,
                     .racer = unmap_or_free,
                     .judge = unmapped_and_refused,
                     .rounds = ROUNDS};
    if (!race_beside_a_table(t, &f, &r, &before, &after))
        return;
    uint64_t refused = 0;
    for (unsigned i = 0; i < KMM_MISUSE_COUNT; i++)
        refused += after.misuse[i] - before.misuse[i];
    KT_EXPECT_EQ(t, refused, ROUNDS);
    expect_healthy_after(t, &f);
    kt_kmm_down(&f);
}
