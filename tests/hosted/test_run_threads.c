/*
 * test_run_threads.c - contiguous runs taken and freed while other CPUs
 * allocate and free single pages and blocks: no page is handed out twice,
 * every run is contiguous and whole, and everything comes back. Hosted;
 * meant to run under ThreadSanitizer too.
 */
#include <pthread.h>
#include <string.h>

#include "fixture.h"
#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define MIB   (UINT64_C(1) << 20)
#define PAGE  UINT64_C(4096)
#define STEPS 4000
#define HELD  64

static const struct kmm_region ram[] = {{1 * MIB, 47 * MIB, KMM_MEM_USABLE}};

struct worker {
    struct kmm *k;
    struct hosted_machine *m;
    unsigned cpu;
    bool runs; /* this CPU takes runs; the others take pages and blocks */
    uint64_t seed;
    unsigned long wrong;
};

/* Marks every page of [pa, pa + n pages) with tag, first checking that no
 * other holder's tag is there (0 means free). */
static bool claim(struct hosted_machine *m, uint64_t pa, uint64_t n, uint64_t tag)
{
    bool ok = true;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t *w = (uint64_t *)(hosted_machine_direct_map(m) + pa + i * PAGE);
        ok &= *w == 0;
        *w = tag;
    }
    return ok;
}

static bool release(struct hosted_machine *m, uint64_t pa, uint64_t n, uint64_t tag)
{
    bool ok = true;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t *w = (uint64_t *)(hosted_machine_direct_map(m) + pa + i * PAGE);
        ok &= *w == tag;
        *w = 0;
    }
    return ok;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t held_pa[HELD] = {0}, held_n[HELD] = {0};
    if (!hosted_cpu_enter(w->cpu)) {
        w->wrong++;
        return NULL;
    }
    uint64_t tag = UINT64_C(0x5100000000) + w->cpu;
    for (int step = 0; step < STEPS; step++) {
        unsigned slot = (unsigned)(kt_rng(&w->seed) % HELD);
        if (held_pa[slot]) {
            w->wrong += !release(w->m, held_pa[slot], held_n[slot], tag);
            int err = w->runs ? kmm_run_free(w->k, held_pa[slot], held_n[slot])
                              : kmm_pages_free(w->k, held_pa[slot], held_n[slot]);
            w->wrong += err != KMM_OK;
            held_pa[slot] = 0;
            continue;
        }
        uint64_t n, pa;
        if (w->runs) {
            n = 1 + kt_rng(&w->seed) % 300;
            uint64_t align = PAGE << (kt_rng(&w->seed) % 6);
            pa = kmm_run_alloc(w->k, n, align, 0, KMM_GFP_ATOMIC);
            w->wrong += pa && (pa % align) != 0;
        } else {
            n = UINT64_C(1) << (kt_rng(&w->seed) % 4); /* 1, 2, 4 or 8 pages */
            pa = kmm_pages_alloc(w->k, n, KMM_GFP_ATOMIC);
        }
        if (!pa)
            continue; /* memory is short now and then: that is the point */
        w->wrong += !claim(w->m, pa, n, tag);
        held_pa[slot] = pa;
        held_n[slot] = n;
    }
    for (unsigned slot = 0; slot < HELD; slot++) {
        if (!held_pa[slot])
            continue;
        w->wrong += !release(w->m, held_pa[slot], held_n[slot], tag);
        int err = w->runs ? kmm_run_free(w->k, held_pa[slot], held_n[slot])
                          : kmm_pages_free(w->k, held_pa[slot], held_n[slot]);
        w->wrong += err != KMM_OK;
    }
    kmm_page_drain_cpu(w->k);
    hosted_cpu_exit();
    return NULL;
}

KTEST(run_threads, runs_and_blocks_taken_on_three_cpus_never_overlap)
{
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = ram, .region_count = 1, .cpu_count = 4};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    kmm_page_drain_cpu(k);
    struct kmm_page_stats before, after;
    kmm_page_stats(k, &before);
    /* A page's first word holds its holder's tag while it is held and 0
     * otherwise: the machine's memory starts zeroed, and kmm never writes
     * into free pages. */
    static struct worker w[3];
    pthread_t th[3];
    for (unsigned i = 0; i < 3; i++) {
        w[i] = (struct worker){.k = k, .m = m, .cpu = i + 1, .runs = i == 0, .seed = 0x12 + i};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT_EQ(t, w[i].wrong, 0);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &after);
    KT_EXPECT_EQ(t, after.free_pages, before.free_pages);
    KT_EXPECT_EQ(t, after.zones[KMM_ZONE_DMA32].pcp_pages + after.zones[KMM_ZONE_DMA].pcp_pages, 0);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kmm_fini(k);
    hosted_machine_destroy(m);
}
