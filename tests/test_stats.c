/*
 * test_stats.c - kmm_stats (kmm/stats.h): after a scenario that touches
 * every layer, each part of the one call equals what the layer's own call
 * says; a caller compiled against a larger structure gets its unknown parts
 * zeroed; bad inputs are refused with a clear error and change nothing.
 */
#include "call_sites.h"
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/events.h>
#include <kmm/fmt.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/stats.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)
#define USER UINT64_C(0x0000000000400000)

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/* What the scenario holds, to give back. */
struct scene {
    uint64_t pages[3];
    struct kmm_aspace *us;
    uint64_t mapped_pa;
    void *area;
    void *blocks[8];
};

/* Something in every layer: pages of three orders, a user space with a
 * mapping, a vmalloc area, heap blocks of three kinds, a rejected call. */
static void scenario(struct ktest *t, struct kmm *k, struct scene *s)
{
    s->pages[0] = kmm_page_alloc(k, 0, 0);
    s->pages[1] = kmm_page_alloc(k, 3, KMM_GFP_DMA32);
    s->pages[2] = kmm_page_alloc(k, 1, KMM_GFP_DMA);
    KT_ASSERT(t, s->pages[0] && s->pages[1] && s->pages[2]);
    KT_ASSERT_EQ(t, kmm_aspace_create(k, &s->us), KMM_OK);
    s->mapped_pa = kmm_page_alloc(k, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, s->mapped_pa != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(s->us, USER, s->mapped_pa, PAGE, KMM_PROT_READ | KMM_PROT_USER),
                 KMM_OK);
    s->area = kmm_vmalloc(k, 3 * PAGE, 0);
    KT_ASSERT(t, s->area != NULL);
    static const size_t sizes[8] = {16, 200, 200, 1000, 5000, 20000, 16, 64};
    for (unsigned i = 0; i < 8; i++) {
        s->blocks[i] = kmm_malloc(k, sizes[i], 0);
        KT_ASSERT(t, s->blocks[i] != NULL);
    }
    KT_EXPECT_EQ(t, kmm_page_free(k, s->pages[0] + 1, 0), KMM_EINVAL); /* a misuse */
}

static void scene_down(struct ktest *t, struct kmm *k, struct scene *s)
{
    for (unsigned i = 0; i < 8; i++)
        KT_EXPECT_EQ(t, kmm_free(k, s->blocks[i]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vfree(k, s->area), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(s->us, USER, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, s->mapped_pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(k, s->us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, s->pages[0], 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, s->pages[1], 3), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, s->pages[2], 1), KMM_OK);
}

/* Structures of uint64_t alone (no padding) compare whole. */
#define SAME_WORDS(t, a, b) KT_EXPECT(t, __builtin_memcmp(&(a), &(b), sizeof(a)) == 0)

static void expect_same_heap(struct ktest *t, const struct kmm_heap_stats *a,
                             const struct kmm_heap_stats *b)
{
    KT_EXPECT_EQ(t, a->bytes_held, b->bytes_held);
    KT_EXPECT_EQ(t, a->bytes_peak, b->bytes_peak);
    KT_EXPECT_EQ(t, a->bytes_used, b->bytes_used);
    KT_EXPECT_EQ(t, a->bytes_free, b->bytes_free);
    KT_EXPECT_EQ(t, a->limit, b->limit);
    KT_EXPECT_EQ(t, a->allocs, b->allocs);
    KT_EXPECT_EQ(t, a->frees, b->frees);
    KT_EXPECT_EQ(t, a->alloc_bytes, b->alloc_bytes);
    KT_EXPECT_EQ(t, a->free_bytes, b->free_bytes);
    KT_EXPECT_EQ(t, a->failed, b->failed);
    KT_EXPECT_EQ(t, a->large_blocks, b->large_blocks);
    KT_EXPECT_EQ(t, a->large_bytes, b->large_bytes);
    KT_EXPECT_EQ(t, a->misuse, b->misuse);
    KT_EXPECT_EQ(t, a->caches, b->caches);
}

static void expect_same_heap_debug(struct ktest *t, const struct kmm_heap_debug_stats *a,
                                   const struct kmm_heap_debug_stats *b)
{
    KT_EXPECT_EQ(t, a->flags, b->flags);
    KT_EXPECT_EQ(t, a->guard_every, b->guard_every);
    KT_EXPECT_EQ(t, a->debug_caches, b->debug_caches);
    KT_EXPECT_EQ(t, a->generation, b->generation);
    KT_EXPECT_EQ(t, a->tracked, b->tracked);
    KT_EXPECT_EQ(t, a->quarantined, b->quarantined);
    KT_EXPECT_EQ(t, a->quarantine_bytes, b->quarantine_bytes);
    KT_EXPECT_EQ(t, a->guarded_live, b->guarded_live);
    KT_EXPECT_EQ(t, a->guarded_allocs, b->guarded_allocs);
    KT_EXPECT_EQ(t, a->guard_slots, b->guard_slots);
    KT_EXPECT_EQ(t, a->events, b->events);
    KT_EXPECT_EQ(t, a->overruns, b->overruns);
    KT_EXPECT_EQ(t, a->use_after_free, b->use_after_free);
}

KTEST(stats, one_call_gives_every_layers_figures_as_the_layers_own_calls_do)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 2))
        return;
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_TRACK), 0);
    KT_ASSERT_EQ(t, kmm_events_switch(k, KMM_EVENTS_PAGE), 0);
    struct scene sc;
    scenario(t, k, &sc);
    KT_ASSERT(t, !ktest_failed(t));

    static struct kmm_stats all = KMM_STATS_INIT;
    all.size = (uint32_t)sizeof(all);
    KT_ASSERT_EQ(t, kmm_stats(k, &all), KMM_OK);
    KT_EXPECT_EQ(t, all.version, KMM_STATS_VERSION);
    KT_EXPECT_EQ(t, all.size, sizeof(all));

    static struct kmm_page_stats ps;
    kmm_page_stats(k, &ps);
    SAME_WORDS(t, all.page, ps);
    KT_EXPECT(t, all.page.allocated_pages > 0);
    KT_EXPECT(t, all.page.zones[KMM_ZONE_DMA].alloc_calls > 0);
    KT_EXPECT_EQ(t, all.node_count, kmm_page_node_count(k));
    KT_EXPECT_EQ(t, all.cpu_count, 2);
    for (unsigned n = 0; n < KMM_MAX_NODES; n++) {
        static struct kmm_node_stats ns;
        __builtin_memset(&ns, 0, sizeof(ns)); /* beyond node_count: zero */
        if (n < all.node_count)
            KT_EXPECT_EQ(t, kmm_page_node_stats(k, n, &ns), KMM_OK);
        SAME_WORDS(t, all.nodes[n], ns);
    }
    struct kmm_vm_stats ks;
    kmm_vm_stats(kmm_kernel_aspace(k), &ks);
    SAME_WORDS(t, all.kernel_space, ks);
    struct kmm_vm_stats us;
    kmm_vm_stats(sc.us, &us); /* the only user space */
    KT_EXPECT_EQ(t, all.user_spaces.spaces, 1);
    SAME_WORDS(t, all.user_spaces.vm, us);
    KT_EXPECT_EQ(t, all.user_spaces.vm.mapped_pages, 1);
    struct kmm_vmalloc_stats vs;
    kmm_vmalloc_stats(k, &vs);
    SAME_WORDS(t, all.vmalloc, vs);
    KT_EXPECT(t, all.vmalloc.vmalloc_areas >= 1);
    struct kmm_heap_stats hs;
    kmm_heap_stats(k, &hs);
    expect_same_heap(t, &all.heap, &hs);
    KT_EXPECT(t, all.heap.allocs >= 8);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    expect_same_heap_debug(t, &all.heap_debug, &ds);
    KT_EXPECT(t, all.heap_debug.tracked >= 6); /* the slab-class blocks */
    struct kmm_events_stats es;
    kmm_events_stats(k, &es);
    KT_EXPECT_EQ(t, all.events.flags, es.flags);
    KT_EXPECT_EQ(t, all.events.recorded, es.recorded);
    KT_EXPECT_EQ(t, all.events.kept, es.kept);
    KT_EXPECT(t, all.events.recorded > 0);
    static struct kmm_misuse_stats ms;
    kmm_misuse_stats(k, &ms);
    SAME_WORDS(t, all.misuse, ms);
    KT_EXPECT_EQ(t, all.misuse.count[KMM_LAYER_PAGE][KMM_MISUSE_UNALIGNED], 1);

    KT_EXPECT_EQ(t, kmm_events_switch(k, 0), KMM_EVENTS_PAGE);
    scene_down(t, k, &sc);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* Version 2 added the parked areas at the end: a caller compiled against
 * version 1 gets version 1's parts and nothing written beyond them. */
KTEST(stats, a_version_1_caller_gets_nothing_beyond_version_1s_parts)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    void *p = kmm_vmalloc(f.k, 2 * KMM_PAGE_SIZE, 0);
    KT_ASSERT(t, p != NULL);
    KT_ASSERT_EQ(t, kmm_vfree(f.k, p), KMM_OK); /* parked */
    static struct kmm_stats s;
    __builtin_memset(&s, 0x5a, sizeof(s));
    s.size = KMM_STATS_SIZE_V1;
    KT_ASSERT_EQ(t, kmm_stats(f.k, &s), KMM_OK);
    KT_EXPECT_EQ(t, s.version, KMM_STATS_VERSION);
    KT_EXPECT_EQ(t, s.kva_parked.areas, UINT64_C(0x5a5a5a5a5a5a5a5a));
    KT_EXPECT_EQ(t, s.misuse.total, 0);
    s.size = (uint32_t)sizeof(s);
    KT_ASSERT_EQ(t, kmm_stats(f.k, &s), KMM_OK);
    struct kmm_kva_park_stats ps;
    kmm_kva_park_stats(f.k, &ps);
    KT_EXPECT(t, s.kva_parked.areas == 1 && ps.areas == 1);
    KT_EXPECT(t, s.kva_parked.pages == 2 && ps.pages == 2);
    KT_EXPECT(t, kmm_kva_purge(f.k) > 0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(stats, a_caller_with_a_larger_structure_gets_its_unknown_parts_zeroed)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    /* A caller compiled against a later version: more fields at the end. */
    static struct {
        struct kmm_stats s;
        uint64_t later[4];
    } newer;
    __builtin_memset(&newer, 0xa5, sizeof(newer));
    newer.s.size = (uint32_t)sizeof(newer);
    KT_ASSERT_EQ(t, kmm_stats(f.k, &newer.s), KMM_OK);
    KT_EXPECT_EQ(t, newer.s.size, sizeof(newer));
    KT_EXPECT_EQ(t, newer.s.version, KMM_STATS_VERSION);
    for (unsigned i = 0; i < 4; i++)
        KT_EXPECT_EQ(t, newer.later[i], 0);
    struct kmm_page_stats ps;
    kmm_page_stats(f.k, &ps);
    KT_EXPECT_EQ(t, newer.s.page.free_pages, ps.free_pages);
    KT_EXPECT_EQ(t, newer.s.user_spaces.spaces, 0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(stats, a_null_or_too_small_structure_is_refused_counted_and_logged)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    struct kmm_misuse_stats before, after;
    kmm_misuse_stats(f.k, &before);
    unsigned long lines = kt_machine_log_count(f.m, KMM_LOG_ERR);
    KT_EXPECT_EQ(t, kmm_stats(f.k, NULL), KMM_EINVAL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_stats(NULL)"));
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), ", caller "));
    static struct kmm_stats s;
    __builtin_memset(&s, 0x5a, sizeof(s));
    s.size = KMM_STATS_SIZE_V1 - 1; /* an older, smaller layout than any there was */
    KT_EXPECT_EQ(t, kmm_stats(f.k, &s), KMM_EINVAL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "below version 1's"));
    KT_EXPECT_EQ(t, s.size, KMM_STATS_SIZE_V1 - 1); /* untouched */
    KT_EXPECT_EQ(t, s.version, 0x5a5a5a5au);
    KT_EXPECT_EQ(t, s.page.free_pages, UINT64_C(0x5a5a5a5a5a5a5a5a));
    s.size = 0;
    KT_EXPECT_EQ(t, kmm_stats(f.k, &s), KMM_EINVAL);
    kmm_misuse_stats(f.k, &after);
    KT_EXPECT_EQ(t,
                 after.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_ARG] -
                     before.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_ARG],
                 3);
    KT_EXPECT_EQ(t, after.total - before.total, 3);
    KT_EXPECT_EQ(t, kt_machine_log_count(f.m, KMM_LOG_ERR) - lines, 3);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(stats, an_instance_that_is_gone_or_null_is_refused_and_nothing_is_written)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    static struct kmm_stats s = KMM_STATS_INIT;
    KT_EXPECT_EQ(t, kmm_stats(NULL, &s), KMM_EINVAL);
    KT_EXPECT_EQ(t, s.version, 0);
    struct kmm *k = f.k;
    KT_ASSERT_EQ(t, kmm_fini(k), KMM_OK);
    KT_EXPECT_EQ(t, kmm_stats(k, &s), KMM_ESTATE);
    KT_EXPECT_EQ(t, s.version, 0); /* nothing read, nothing written */
    KT_EXPECT_EQ(t, s.page.total_pages, 0);
    /* kt_kmm_down tears down the machine; the instance is gone already. */
    f.k = NULL;
    kt_kmm_down(&f);
}

/* --- the report's sections against the figures -------------------------------------------- */

/* Where needle starts in hay, or NULL. */
static const char *find(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        size_t i = 0;
        while (needle[i] && hay[i] == needle[i])
            i++;
        if (!needle[i])
            return hay;
    }
    return NULL;
}

/* A sink that looks for one line in a report too long to keep whole (each
 * write is at most one line). */
struct needle {
    const char *text;
    bool found;
};

static void needle_write(void *ctx, const char *s, size_t n)
{
    struct needle *nd = ctx;
    char line[256];
    size_t len = 0;
    for (; len < n && len + 1 < sizeof(line); len++)
        line[len] = s[len];
    line[len] = 0;
    nd->found |= find(line, nd->text) != NULL;
}

/* Section `section` of k's report, alone, into tx. */
static void section_text(struct ktest *t, struct kmm *k, unsigned section, struct kt_text *tx)
{
    tx->len = 0;
    tx->buf[0] = '\0';
    KT_EXPECT_EQ(t, kmm_report_section(k, section, &(struct kmm_sink){kt_text_write, tx}), KMM_OK);
    KT_EXPECT(t, tx->len < sizeof(tx->buf) - 1); /* nothing cut */
}

/* Fails unless text holds line (as kmm_snprintf formats it). */
#define EXPECT_LINE(t, text, ...)                                                                  \
    do {                                                                                           \
        char want_[256];                                                                           \
        kmm_snprintf(want_, sizeof(want_), __VA_ARGS__);                                           \
        if (!ktest_contains((text), want_))                                                        \
            ktest_fail_at((t), __FILE__, __LINE__, "no line \"%s\" in:\n%s", want_, (text));       \
    } while (0)

KTEST(stats, the_reports_zoneinfo_shows_kmm_stats_zone_figures)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    uint64_t dma = kmm_page_alloc(f.k, 2, KMM_GFP_DMA), any = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, dma && any);
    static struct kmm_stats s = KMM_STATS_INIT;
    KT_ASSERT_EQ(t, kmm_stats(f.k, &s), KMM_OK);
    static struct kt_text tx;
    section_text(t, f.k, KMM_REPORT_ZONEINFO, &tx);
    static const char *const range[KMM_ZONE_COUNT] = {"0-16M", "16M-4G", "4G-"};
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        const struct kmm_zone_stats *zs = &s.page.zones[z];
        EXPECT_LINE(t, tx.buf, "  %-7s %-7s %10llu %10llu %8llu %10llu %12llu %12llu\n",
                    kmm_zone_name(z), range[z], (unsigned long long)zs->managed_pages,
                    (unsigned long long)zs->free_pages, (unsigned long long)zs->pcp_pages,
                    (unsigned long long)zs->deferred_pages, (unsigned long long)zs->alloc_calls,
                    (unsigned long long)zs->free_calls);
    }
    KT_EXPECT(t, s.page.zones[KMM_ZONE_DMA].alloc_calls >= 1);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, dma, 2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, any, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(stats, the_reports_events_are_the_rings_latest_with_their_figures)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    static struct kt_text tx;
    section_text(t, f.k, KMM_REPORT_EVENTS, &tx);
    KT_EXPECT_STREQ(t, tx.buf, "Recent events (0 recorded, 0 kept; sources off)\n");
    KT_ASSERT_EQ(t, kmm_events_switch(f.k, KMM_EVENTS_PAGE), 0);
    for (unsigned i = 0; i < 20; i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, kmm_page_alloc(f.k, i % 4, KMM_GFP_DMA), i % 4), KMM_OK);
    static struct kmm_stats s = KMM_STATS_INIT;
    KT_ASSERT_EQ(t, kmm_stats(f.k, &s), KMM_OK);
    KT_EXPECT_EQ(t, s.events.recorded, 40);
    section_text(t, f.k, KMM_REPORT_EVENTS, &tx);
    EXPECT_LINE(t, tx.buf, "Recent events (%llu recorded, %llu kept; sources page)\n",
                (unsigned long long)s.events.recorded, (unsigned long long)s.events.kept);
    static struct kmm_event ev[16];
    KT_ASSERT_EQ(t, kmm_events(f.k, ev, 16), 16); /* the report lists the latest 16 */
    KT_EXPECT_EQ(t, ev[15].seq, 40);
    for (unsigned i = 0; i < 16; i++) {
        char where[40];
        kmm_snprintf(where, sizeof(where), "order %u DMA", ev[i].order);
        EXPECT_LINE(t, tx.buf, "  %8llu %-10s 0x%016llx %10llu %-22s cpu %u caller %p\n",
                    (unsigned long long)ev[i].seq, kmm_event_op_name(ev[i].op),
                    (unsigned long long)ev[i].addr, (unsigned long long)ev[i].size, where,
                    ev[i].cpu, ev[i].caller);
    }
    KT_EXPECT(t, !ktest_contains(tx.buf, "\n        24 ")); /* older than the latest 16 */
    KT_EXPECT_EQ(t, kmm_events_switch(f.k, 0), KMM_EVENTS_PAGE);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(stats, the_reports_top_allocation_sites_group_live_objects_by_caller_largest_first)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 1))
        return;
    struct kmm *k = h.f.k;
    static struct kt_text tx;
    section_text(t, k, KMM_REPORT_SITES, &tx);
    KT_EXPECT(t, ktest_contains(tx.buf, "0 sites, 0 objects tracked (tracking is off"));
    KT_ASSERT_EQ(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_TRACK), 0);
    void *a[3], *b;
    for (unsigned i = 0; i < 3; i++)
        a[i] = kt_malloc_at_a(k, 300); /* 900 bytes at a */
    b = kt_malloc_at_b(k, 1000);       /* 1000 bytes at b: first */
    KT_ASSERT(t, a[0] && a[1] && a[2] && b);
    struct kmm_heap_site site[4];
    KT_ASSERT_EQ(t, kmm_heap_leak_sites(k, 0, site, 4), 2);
    KT_EXPECT(t, kt_inside(site[0].caller, (const void *)kt_malloc_at_b));
    KT_EXPECT(t, kt_inside(site[1].caller, (const void *)kt_malloc_at_a));
    static struct kmm_stats s = KMM_STATS_INIT;
    KT_ASSERT_EQ(t, kmm_stats(k, &s), KMM_OK);
    KT_EXPECT_EQ(t, s.heap_debug.tracked, 4);
    section_text(t, k, KMM_REPORT_SITES, &tx);
    EXPECT_LINE(t, tx.buf, "most bytes first): 2 sites, %llu objects tracked\n",
                (unsigned long long)s.heap_debug.tracked);
    char first[128], second[128];
    kmm_snprintf(first, sizeof(first), "  %-18p %10llu objects %12llu bytes\n", site[0].caller,
                 1ull, 1000ull);
    kmm_snprintf(second, sizeof(second), "  %-18p %10llu objects %12llu bytes\n", site[1].caller,
                 3ull, 900ull);
    const char *p1 = find(tx.buf, first), *p2 = find(tx.buf, second);
    KT_EXPECT(t, p1 && p2 && p1 < p2);
    /* The whole report has the section too. */
    struct needle nd = {"Top allocation sites (live tracked heap objects", false};
    kmm_report(k, &(struct kmm_sink){needle_write, &nd});
    KT_EXPECT(t, nd.found);
    for (unsigned i = 0; i < 3; i++)
        KT_EXPECT_EQ(t, kmm_free(k, a[i]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, b), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}
