/*
 * test_vmalloc_guard.c - kernel virtual areas as real memory: with the
 * window inside the hosted port's mirror window, running off the end of a
 * vmalloc area into its guard page, or touching it after kmm_vfree, is a
 * real SIGSEGV; and threads acting as CPUs that allocate and free areas at
 * once never get overlapping areas. Hosted only (real faults, threads).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "faults_hosted.h"
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
#define THREADS 4

static const struct kmm_region ram[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/* An instance of cpus CPUs on ram whose window is the first `size` bytes
 * of the mirror window (window_hosted.h). */
static bool setup(struct kt_window *f, uint64_t size, unsigned cpus)
{
    return kt_window_up(f, ram, size, cpus);
}

KTEST(vmalloc_guard, writing_one_byte_past_a_vmalloc_area_faults)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 4 * MIB, 1));
    uint8_t *p = kmm_vmalloc(f.k, 2 * PAGE, 0);
    KT_ASSERT(t, p != NULL);
    memset(p, 0x5a, 2 * PAGE); /* the whole area is real memory */
    KT_EXPECT_EQ(t, p[2 * PAGE - 1], 0x5a);
    KT_EXPECT(t, !kt_write_faults(p + 2 * PAGE - 1));
    KT_EXPECT(t, kt_write_faults(p + 2 * PAGE)); /* the guard page */
    /* The next area starts after the guard: an overrun never reaches it. */
    uint8_t *q = kmm_vmalloc(f.k, PAGE, 0);
    KT_ASSERT(t, q != NULL);
    KT_EXPECT(t, q >= p + 3 * PAGE);
    KT_EXPECT(t, kt_write_faults(q + PAGE));
    struct kmm_kva_area a;
    KT_ASSERT_EQ(t, kmm_kva_lookup(f.k, (uint64_t)(uintptr_t)(p + 2 * PAGE), &a), KMM_OK);
    KT_EXPECT_EQ(t, a.va, (uint64_t)(uintptr_t)p);
    KT_EXPECT_EQ(t, kmm_vfree(f.k, q), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vfree(f.k, p), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    kt_window_down(&f);
}

KTEST(vmalloc_guard, an_area_faults_after_it_is_freed)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 4 * MIB, 1));
    uint8_t *p = kmm_vzalloc(f.k, 3 * PAGE);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT(t, !kt_write_faults(p + PAGE));
    KT_ASSERT_EQ(t, kmm_vfree(f.k, p), KMM_OK);
    KT_EXPECT(t, kt_write_faults(p));
    KT_EXPECT(t, kt_write_faults(p + 2 * PAGE));
    kt_window_down(&f);
}

/* --- threads as CPUs ----------------------------------------------------------------- */

#define SLOTS 16
#define STEPS 1500

struct worker {
    struct kmm *k;
    unsigned cpu;
    uint64_t seed;
    uint8_t *p[SLOTS];
    size_t len[SLOTS];
    unsigned long wrong; /* areas whose bytes another thread changed, failed calls */
};

/* Whether the area p of len bytes still holds its fill byte everywhere. */
static bool intact(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i += 512)
        if (p[i] != p[0])
            return false;
    return p[len - 1] == p[0];
}

static void *work(void *arg)
{
    struct worker *w = arg;
    if (!hosted_cpu_enter(w->cpu)) {
        w->wrong++;
        return NULL;
    }
    for (int step = 0; step < STEPS; step++) {
        unsigned i = (unsigned)(kt_rng(&w->seed) % SLOTS);
        if (w->p[i]) {
            w->wrong += !intact(w->p[i], w->len[i]);
            w->wrong += kmm_vfree(w->k, w->p[i]) != KMM_OK;
            w->p[i] = NULL;
            continue;
        }
        w->len[i] = 1 + (size_t)(kt_rng(&w->seed) % (6 * PAGE));
        w->p[i] = kmm_vmalloc(w->k, w->len[i], 0);
        if (!w->p[i]) {
            w->wrong++;
            continue;
        }
        memset(w->p[i], (int)(w->cpu * 16 + i), w->len[i]);
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        if (w->p[i]) {
            w->wrong += !intact(w->p[i], w->len[i]);
            w->wrong += kmm_vfree(w->k, w->p[i]) != KMM_OK;
        }
    }
    kmm_page_drain_cpu(w->k);
    hosted_cpu_exit();
    return NULL;
}

KTEST(vmalloc_guard, threads_allocating_at_once_never_share_a_page)
{
    struct kt_window f;
    KT_ASSERT(t, setup(&f, 16 * MIB, THREADS + 1));
    kmm_page_drain_cpu(f.k);
    struct kmm_page_stats before, after;
    kmm_page_stats(f.k, &before);
    static struct worker w[THREADS];
    pthread_t th[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.k = f.k, .cpu = i + 1, .seed = 0xa7ea + i};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        KT_EXPECT_EQ(t, w[i].wrong, 0);
    }
    kmm_kva_purge(f.k); /* parked areas keep tables */
    kmm_page_drain_cpu(f.k);
    kmm_page_stats(f.k, &after);
    KT_EXPECT(t, kt_same_buddyinfo(&before, &after));
    KT_EXPECT_EQ(t, after.allocated_pages, before.allocated_pages);
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(f.k, &vs);
    KT_EXPECT_EQ(t, vs.areas, 0);
    KT_EXPECT_EQ(t, vs.misuse, 0);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(f.k, &r), KMM_CHECK_OK);
    kt_window_down(&f);
}
