/*
 * test_pcp_cpus.c - the per-CPU caches across CPUs: another CPU's cached
 * pages come back when memory runs short. Hosted (threads act as CPUs); the
 * threads run one at a time, so every step is deterministic.
 */
#include <pthread.h>

#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region ram[] = {{1 * MIB, 15 * MIB, KMM_MEM_USABLE}};

/* One step run on another thread acting as a CPU. */
struct step {
    struct kmm *k;
    unsigned cpu;
    void (*fn)(struct step *);
    uint64_t pages[64];
    bool pending;
    uint64_t got;
};

static void *run_step(void *arg)
{
    struct step *s = arg;
    if (hosted_cpu_enter(s->cpu)) {
        s->fn(s);
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

static void fill_cache(struct step *s)
{
    for (unsigned i = 0; i < 64; i++)
        s->pages[i] = kmm_page_alloc(s->k, 0, 0);
    for (unsigned i = 0; i < 64; i++)
        kmm_page_free(s->k, s->pages[i], 0);
}

static void look_and_drain(struct step *s)
{
    s->pending = kmm_page_drain_pending(s->k);
    kmm_page_drain_cpu(s->k);
}

static void alloc_one(struct step *s)
{
    s->got = kmm_page_alloc(s->k, 0, 0);
    s->pending = kmm_page_drain_pending(s->k);
}

static uint64_t cached_pages(struct kmm *k)
{
    struct kmm_page_stats st;
    kmm_page_stats(k, &st);
    return st.zones[KMM_ZONE_DMA].pcp_pages + st.zones[KMM_ZONE_DMA32].pcp_pages;
}

/* Takes every free page as single pages on the calling CPU (CPU 0). */
static size_t exhaust(struct kmm *k, uint64_t *p, size_t cap)
{
    size_t n = 0;
    while (n < cap && (p[n] = kmm_page_alloc(k, 0, 0)) != 0)
        n++;
    return n;
}

KTEST(pcp_cpus, a_cpu_short_of_memory_asks_the_others_to_drain)
{
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = ram, .region_count = 1, .cpu_count = 2};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    kmm_page_drain_cpu(k); /* init's own allocations left pages in CPU 0's cache */

    struct step s1 = {.k = k, .cpu = 1, .fn = fill_cache};
    on_cpu(&s1);
    uint64_t held_by_cpu1 = cached_pages(k);
    KT_ASSERT(t, held_by_cpu1 >= 64);

    /* CPU 0 takes everything it can reach: CPU 1's cache is out of reach,
     * so the last request fails, and leaves CPU 1 a drain request. */
    static uint64_t p[4096];
    size_t n = exhaust(k, p, 4096);
    KT_ASSERT(t, n < 4096);
    KT_EXPECT_EQ(t, cached_pages(k), held_by_cpu1);

    struct step s2 = {.k = k, .cpu = 1, .fn = look_and_drain};
    on_cpu(&s2);
    KT_EXPECT(t, s2.pending);
    KT_EXPECT_EQ(t, cached_pages(k), 0);

    /* The memory is back within reach of CPU 0. */
    size_t more = exhaust(k, p + n, 4096 - n);
    KT_EXPECT_EQ(t, more, held_by_cpu1);

    for (size_t i = 0; i < n + more; i++)
        KT_ASSERT_EQ(t, kmm_page_free(k, p[i], 0), KMM_OK);
    kmm_page_drain_cpu(k);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kmm_fini(k);
    hosted_machine_destroy(m);
}

KTEST(pcp_cpus, a_drain_request_is_honoured_at_the_next_allocation)
{
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = ram, .region_count = 1, .cpu_count = 2};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    kmm_page_drain_cpu(k); /* init's own allocations left pages in CPU 0's cache */
    struct step s1 = {.k = k, .cpu = 1, .fn = fill_cache};
    on_cpu(&s1);
    static uint64_t p[4096];
    size_t n = exhaust(k, p, 4096); /* leaves CPU 1 a request */
    for (size_t i = 0; i < n; i++)
        KT_ASSERT_EQ(t, kmm_page_free(k, p[i], 0), KMM_OK);

    struct step s2 = {.k = k, .cpu = 1, .fn = alloc_one};
    on_cpu(&s2);
    KT_EXPECT(t, s2.got != 0);
    KT_EXPECT(t, !s2.pending); /* honoured on the way */
    KT_EXPECT_EQ(t, kmm_page_free(k, s2.got, 0), KMM_OK);
    kmm_page_drain_cpu(k);
    KT_EXPECT_EQ(t, kmm_page_drain_offline_cpu(k, 1), KMM_OK);
    KT_EXPECT_EQ(t, cached_pages(k), 0);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kmm_fini(k);
    hosted_machine_destroy(m);
}
