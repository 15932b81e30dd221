/*
 * test_reclaim.c - the reclaim hooks (shrinkers): when they are called,
 * with what, in which order, what unregister and misuse do, and that the
 * allocation that needed them then succeeds.
 *
 * Each test takes all memory first with KMM_GFP_ATOMIC requests (which
 * never reclaim), so the shrinkers meet exactly the allocations the test
 * makes afterwards. A shrinker here frees blocks from a pool the test
 * allocated before memory ran out.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)

/* 16 MiB: about 3800 pages once kmm has its metadata. */
static const struct kmm_region pc16[] = {{1 * MIB, 15 * MIB, KMM_MEM_USABLE}};

struct block {
    uint64_t pa;
    unsigned order;
};

struct fixture {
    struct kt_machine *m;
    struct kmm *k;
    struct kmm_page_stats initial;
    struct block held[512]; /* what exhaust() took */
    size_t nheld;
};

static bool setup(struct ktest *t, struct fixture *f)
{
    f->m = kt_machine_create(t, pc16, N(pc16));
    if (!f->m)
        return false;
    struct kmm_config cfg = {
        .port = kt_machine_port(f->m), .regions = pc16, .region_count = N(pc16), .cpu_count = 1};
    if (kmm_init(&cfg, &f->k) != KMM_OK) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init failed");
        kt_machine_destroy(f->m);
        return false;
    }
    kmm_page_drain_cpu(f->k); /* the baseline: nothing cached */
    kmm_page_stats(f->k, &f->initial);
    f->nheld = 0;
    return true;
}

static void teardown(struct fixture *f)
{
    kmm_fini(f->k);
    kt_machine_destroy(f->m);
}

/* Takes every free page, largest blocks first, without reclaim. */
static void exhaust(struct fixture *f)
{
    for (unsigned o = KMM_PAGE_MAX_ORDER + 1; o-- > 0;) {
        uint64_t pa;
        while (f->nheld < N(f->held) && (pa = kmm_page_alloc(f->k, o, KMM_GFP_ATOMIC)) != 0)
            f->held[f->nheld++] = (struct block){pa, o};
    }
}

/* Gives back what exhaust() took. */
static void release(struct fixture *f)
{
    while (f->nheld) {
        f->nheld--;
        kmm_page_free(f->k, f->held[f->nheld].pa, f->held[f->nheld].order);
    }
}

/* Every page back where it was at init: nothing leaked, everything merged. */
static void expect_all_back(struct ktest *t, struct fixture *f, int line)
{
    struct kmm_page_stats s;
    kmm_page_drain_cpu(f->k);
    kmm_page_stats(f->k, &s);
    bool same = s.free_pages == f->initial.free_pages;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            same &= s.zones[z].free_blocks[o] == f->initial.zones[z].free_blocks[o];
    if (!same)
        ktest_fail_at(t, __FILE__, line, "free pages %llu, at init %llu (or buddyinfo differs)",
                      (unsigned long long)s.free_pages, (unsigned long long)f->initial.free_pages);
}
#define EXPECT_ALL_BACK(t, f) expect_all_back((t), (f), __LINE__)

/* --- a shrinker over a pool of blocks ------------------------------------------------- */

struct pool {
    struct kmm_shrinker shrinker;
    struct block blocks[64];
    size_t n;
    unsigned calls;
    uint64_t last_want;
    kmm_gfp_t last_flags;
    bool give_nothing;
    /* For the order test: the shared call log. */
    unsigned id;
    unsigned *log;
    size_t *log_len;
    /* For the recursion test: allocate (without KMM_GFP_ATOMIC) inside scan. */
    bool allocate_inside;
    unsigned depth, max_depth;
    uint64_t inner_pa;
};

/* Frees blocks from the pool until want_pages pages are free or it is empty. */
static uint64_t pool_scan(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags)
{
    struct pool *p = ctx;
    p->calls++;
    p->last_want = want_pages;
    p->last_flags = flags;
    if (p->log)
        p->log[(*p->log_len)++] = p->id;
    if (++p->depth > p->max_depth)
        p->max_depth = p->depth;
    if (p->allocate_inside)
        p->inner_pa = kmm_page_alloc(k, 0, 0);
    uint64_t freed = 0;
    while (!p->give_nothing && p->n && freed < want_pages) {
        struct block b = p->blocks[--p->n];
        if (kmm_page_free(k, b.pa, b.order) == KMM_OK)
            freed += UINT64_C(1) << b.order;
    }
    p->depth--;
    return freed;
}

/* A pool of n blocks of the order, registered as a shrinker named name. */
static bool pool_fill(struct fixture *f, struct pool *p, size_t n, unsigned order, const char *name)
{
    *p = (struct pool){.shrinker = {.scan = pool_scan, .ctx = p, .name = name}};
    for (size_t i = 0; i < n && i < N(p->blocks); i++) {
        uint64_t pa = kmm_page_alloc(f->k, order, 0);
        if (!pa)
            return false;
        p->blocks[p->n++] = (struct block){pa, order};
    }
    return true;
}

static void pool_empty(struct fixture *f, struct pool *p)
{
    while (p->n) {
        p->n--;
        kmm_page_free(f->k, p->blocks[p->n].pa, p->blocks[p->n].order);
    }
}

/* --- tests ------------------------------------------------------------------------------- */

KTEST(reclaim, a_shrinker_is_called_only_once_memory_is_exhausted_and_the_allocation_succeeds)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 64, 0, "pool"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);

    /* Plenty free: no reclaim. */
    uint64_t a = kmm_page_alloc(f.k, 3, 0);
    KT_ASSERT(t, a != 0);
    KT_EXPECT_EQ(t, p.calls, 0);
    KT_ASSERT_EQ(t, kmm_page_free(f.k, a, 3), KMM_OK);

    exhaust(&f);
    KT_EXPECT_EQ(t, p.calls, 0); /* atomic requests never reclaim */
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.free_pages, 0);

    uint64_t pa = kmm_page_alloc(f.k, 0, KMM_GFP_ZERO);
    KT_EXPECT(t, pa != 0);
    KT_EXPECT_EQ(t, p.calls, 1);
    KT_EXPECT(t, p.last_want >= 1);
    KT_EXPECT_EQ(t, p.last_flags, KMM_GFP_ZERO);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.shrinker_calls, 1);
    KT_EXPECT_EQ(t, s.reclaimed_pages, 64 - p.n);
    KT_EXPECT(t, s.reclaim_calls >= 1);
    KT_EXPECT_EQ(t, s.shrinkers, 1);
    KT_EXPECT_HEALTHY(t, f.k);

    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, a_shrinker_is_asked_for_at_least_the_size_of_the_request)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 4, 6, "big"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    exhaust(&f);
    uint64_t pa = kmm_page_alloc(f.k, 6, KMM_GFP_DMA);
    KT_EXPECT(t, pa != 0);
    KT_EXPECT_EQ(t, p.calls, 1);
    KT_EXPECT(t, p.last_want >= 64);
    KT_EXPECT_EQ(t, p.last_flags, KMM_GFP_DMA);
    KT_EXPECT_EQ(t, p.n, 3); /* one order-6 block was enough */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 6), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, an_atomic_allocation_never_calls_a_shrinker_and_fails)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 8, 0, "pool"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    exhaust(&f);
    struct kmm_page_stats before, s;
    kmm_page_stats(f.k, &before);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 0, KMM_GFP_ATOMIC), 0);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 2, KMM_GFP_ATOMIC | KMM_GFP_DMA32), 0);
    KT_EXPECT_EQ(t, p.calls, 0);
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.failed_allocs, before.failed_allocs + 2);
    KT_EXPECT_EQ(t, s.reclaim_calls, before.reclaim_calls);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, shrinkers_run_in_registration_order_each_once)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p[3];
    static unsigned log[16];
    size_t len = 0;
    const char *names[3] = {"first", "second", "third"};
    for (unsigned i = 0; i < 3; i++) {
        KT_ASSERT(t, pool_fill(&f, &p[i], 8, 0, names[i]));
        p[i].id = i + 1;
        p[i].log = log;
        p[i].log_len = &len;
        p[i].give_nothing = i < 2; /* only the last one frees anything */
        KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p[i].shrinker), KMM_OK);
    }
    exhaust(&f);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, pa != 0);
    KT_ASSERT_EQ(t, len, 3);
    KT_EXPECT_EQ(t, log[0], 1);
    KT_EXPECT_EQ(t, log[1], 2);
    KT_EXPECT_EQ(t, log[2], 3);

    /* Re-registering puts a shrinker at the end. */
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p[0].shrinker), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_register(f.k, &p[0].shrinker), KMM_OK);
    p[2].give_nothing = true;
    p[0].give_nothing = false;
    exhaust(&f); /* what the third one freed beyond the page taken */
    len = 0;
    uint64_t pb = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, pb != 0);
    KT_ASSERT_EQ(t, len, 3);
    KT_EXPECT_EQ(t, log[0], 2);
    KT_EXPECT_EQ(t, log[1], 3);
    KT_EXPECT_EQ(t, log[2], 1);
    KT_EXPECT_HEALTHY(t, f.k);

    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pb, 0), KMM_OK);
    for (unsigned i = 0; i < 3; i++) {
        KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p[i].shrinker), KMM_OK);
        pool_empty(&f, &p[i]);
    }
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, an_unregistered_shrinker_is_never_called_again)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 8, 0, "gone"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    KT_ASSERT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    exhaust(&f);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 0, 0), 0);
    KT_EXPECT_EQ(t, p.calls, 0);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.shrinkers, 0);
    KT_EXPECT(t, s.reclaim_calls >= 1); /* reclaim ran, with an empty list */
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, a_shrinker_with_nothing_to_give_is_called_once_and_the_allocation_fails)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 0, 0, "empty"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    exhaust(&f);
    struct kmm_page_stats before, s;
    kmm_page_stats(f.k, &before);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 1, 0), 0);
    KT_EXPECT_EQ(t, p.calls, 1); /* no progress: the slow path stops */
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.failed_allocs, before.failed_allocs + 1);
    KT_EXPECT_EQ(t, s.reclaimed_pages, 0);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, a_shrinker_that_allocates_without_atomic_is_not_reentered)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 8, 0, "greedy"));
    p.allocate_inside = true;
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    exhaust(&f);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, pa != 0);
    KT_EXPECT_EQ(t, p.calls, 1);     /* the nested reclaim skipped it */
    KT_EXPECT_EQ(t, p.max_depth, 1); /* never inside itself */
    KT_EXPECT_EQ(t, p.inner_pa, 0);  /* nothing free while it ran */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, misuse_is_rejected_counted_logged_and_changes_nothing)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p, stranger;
    KT_ASSERT(t, pool_fill(&f, &p, 8, 0, "kept"));
    KT_ASSERT(t, pool_fill(&f, &stranger, 0, 0, "stranger"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    unsigned long errors = kt_machine_log_count(f.m, KMM_LOG_ERR);

    struct kmm_shrinker no_scan = {.name = "no scan"};
    KT_EXPECT_EQ(t, kmm_shrinker_register(f.k, NULL), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_shrinker_register(f.k, &no_scan), KMM_EINVAL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "no scan function"));
    KT_EXPECT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_ESTATE);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "registered already"));
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kept"));
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, NULL), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &stranger.shrinker), KMM_ENOENT);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "not registered"));

    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.shrinker_misuse, 5);
    KT_EXPECT_EQ(t, s.shrinkers, 1);
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR), errors + 5);

    /* The list still holds exactly the one shrinker, and it works. */
    exhaust(&f);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, pa != 0);
    KT_EXPECT_EQ(t, p.calls, 1);
    KT_EXPECT_EQ(t, stranger.calls, 0);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_ENOENT); /* twice */
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(reclaim, the_report_lists_each_shrinker_and_what_it_gave_back)
{
    static struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static struct pool p;
    KT_ASSERT(t, pool_fill(&f, &p, 40, 0, "slab-empties"));
    KT_ASSERT_EQ(t, kmm_shrinker_register(f.k, &p.shrinker), KMM_OK);
    exhaust(&f);
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, pa != 0);
    static struct kt_text tx;
    tx.len = 0;
    struct kmm_sink sink = {kt_text_write, &tx};
    kmm_report(f.k, &sink);
    KT_EXPECT(t, ktest_contains(tx.buf, "Reclaim: 1 shrinkers"));
    KT_EXPECT(t, ktest_contains(tx.buf, "shrinker \"slab-empties\": 1 calls, 32 pages"));
    if (ktest_failed(t))
        ktest_diag(t, "report was:\n%s", tx.buf);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_shrinker_unregister(f.k, &p.shrinker), KMM_OK);
    pool_empty(&f, &p);
    release(&f);
    EXPECT_ALL_BACK(t, &f);
    KT_EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}
