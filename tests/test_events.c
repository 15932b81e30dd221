/*
 * test_events.c - the ring of recent events (kmm/events.h): page, run and
 * heap events in the order they happened with their fields right (address,
 * size, order, zone, cache, caller, CPU); nothing recorded while a source
 * is off; the ring keeping the latest KMM_EVENTS_MAX; the heap's own ring
 * (kmm_heap_events) going on as before; a bad switch refused.
 */
#include "call_sites.h"
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/events.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

static uint64_t recorded(struct kmm *k)
{
    struct kmm_events_stats es;
    kmm_events_stats(k, &es);
    return es.recorded;
}

/* The ring's whole content (static: 64 KiB). */
static struct kmm_event ring[KMM_EVENTS_MAX + 1];

KTEST(events, page_and_run_events_appear_in_order_with_their_fields)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 2, 0))
        return;
    struct kmm *k = f.k;
    KT_ASSERT_EQ(t, kmm_events_switch(k, KMM_EVENTS_PAGE), 0);
    uint64_t one = kt_page_at_a(k, 0, 0);
    uint64_t four = kt_page_at_a(k, 2, KMM_GFP_DMA);
    uint64_t run = kmm_run_alloc(k, 3, 0, 0, KMM_GFP_DMA32);
    KT_ASSERT(t, one && four && run);
    KT_EXPECT_EQ(t, kt_page_free_at_b(k, four, 2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(k, run, 3), KMM_OK);
    KT_EXPECT_EQ(t, kt_page_free_at_b(k, one, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, one, 0), KMM_ESTATE); /* refused: no event */
    size_t n = kmm_events(k, ring, KMM_EVENTS_MAX);
    KT_ASSERT_EQ(t, n, 6);
    static const uint16_t ops[6] = {KMM_EVENT_PAGE_ALLOC, KMM_EVENT_PAGE_ALLOC,
                                    KMM_EVENT_RUN_ALLOC,  KMM_EVENT_PAGE_FREE,
                                    KMM_EVENT_RUN_FREE,   KMM_EVENT_PAGE_FREE};
    const uint64_t addr[6] = {one, four, run, four, run, one};
    const uint64_t size[6] = {4096, 16384, 12288, 16384, 12288, 4096}; /* bytes */
    const uint8_t order[6] = {0, 2, KMM_EVENT_NONE, 2, KMM_EVENT_NONE, 0};
    for (unsigned i = 0; i < 6; i++) {
        KT_EXPECT_EQ(t, ring[i].seq, i + 1);
        KT_EXPECT_EQ(t, ring[i].op, ops[i]);
        KT_EXPECT_EQ(t, ring[i].addr, addr[i]);
        KT_EXPECT_EQ(t, ring[i].size, size[i]);
        KT_EXPECT_EQ(t, ring[i].order, order[i]);
        KT_EXPECT(t, ring[i].cpu < 2);
        KT_EXPECT_EQ(t, ring[i].cache[0], '\0');
    }
    /* Every address of the 63 MiB machine lies in DMA or DMA32. */
    KT_EXPECT_EQ(t, ring[0].zone, one < KMM_ZONE_DMA_END ? KMM_ZONE_DMA : KMM_ZONE_DMA32);
    KT_EXPECT_EQ(t, ring[1].zone, KMM_ZONE_DMA);
    KT_EXPECT_EQ(t, ring[2].zone, KMM_ZONE_DMA32);
    KT_EXPECT(t, kt_inside(ring[0].caller, (const void *)kt_page_at_a));
    KT_EXPECT(t, kt_inside(ring[1].caller, (const void *)kt_page_at_a));
    KT_EXPECT(t, kt_inside(ring[3].caller, (const void *)kt_page_free_at_b));
    KT_EXPECT(t, kt_inside(ring[5].caller, (const void *)kt_page_free_at_b));
    KT_EXPECT(t, ktest_streq(kmm_event_op_name(ring[0].op), "page-alloc"));
    KT_EXPECT(t, ktest_streq(kmm_event_op_name(0), "?"));
    /* A read of fewer gives the newest, oldest first. */
    KT_ASSERT_EQ(t, kmm_events(k, ring, 2), 2);
    KT_EXPECT_EQ(t, ring[0].seq, 5);
    KT_EXPECT_EQ(t, ring[1].seq, 6);
    KT_EXPECT_EQ(t, kmm_events(k, NULL, 4), 0);
    KT_EXPECT_EQ(t, kmm_events_switch(k, 0), KMM_EVENTS_PAGE);
    KT_EXPECT_HEALTHY(t, k);
    kt_kmm_down(&f);
}

KTEST(events, nothing_is_recorded_while_a_source_is_off)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 1))
        return;
    struct kmm *k = h.f.k;
    /* Never switched on: no ring at all. */
    KT_EXPECT_EQ(t, kmm_page_free(k, kt_page_at_a(k, 0, 0), 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, kt_malloc_at_c(k, 100)), KMM_OK);
    KT_EXPECT_EQ(t, recorded(k), 0);
    KT_EXPECT_EQ(t, kmm_events(k, ring, KMM_EVENTS_MAX), 0);
    /* On, then off: what follows is not recorded. */
    KT_ASSERT_EQ(t, kmm_events_switch(k, KMM_EVENTS_PAGE | KMM_EVENTS_HEAP), 0);
    KT_EXPECT_EQ(t, kmm_page_free(k, kt_page_at_a(k, 0, 0), 0), KMM_OK);
    uint64_t on = recorded(k);
    KT_EXPECT_EQ(t, on, 2);
    KT_EXPECT_EQ(t, kmm_events_switch(k, 0), (int)(KMM_EVENTS_PAGE | KMM_EVENTS_HEAP));
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.flags & KMM_HEAP_DEBUG_EVENTS, 0); /* the heap's mode went with it */
    for (unsigned i = 0; i < 100; i++) {
        KT_EXPECT_EQ(t, kmm_page_free(k, kt_page_at_a(k, i % 3, 0), i % 3), KMM_OK);
        KT_EXPECT_EQ(t, kmm_free(k, kt_malloc_at_c(k, 16 + i)), KMM_OK);
    }
    KT_EXPECT_EQ(t, recorded(k), on);
    KT_EXPECT_EQ(t, kmm_events(k, ring, KMM_EVENTS_MAX), on);
    /* One source on: the other's calls stay out. */
    KT_ASSERT_EQ(t, kmm_events_switch(k, KMM_EVENTS_HEAP), 0);
    KT_EXPECT_EQ(t, kmm_page_free(k, kt_page_at_a(k, 0, 0), 0), KMM_OK);
    KT_EXPECT_EQ(t, recorded(k), on);
    KT_EXPECT_EQ(t, kmm_events_switch(k, 0), KMM_EVENTS_HEAP);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(events, the_ring_keeps_the_latest_events_and_wraps)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    struct kmm *k = f.k;
    KT_ASSERT_EQ(t, kmm_events_switch(k, KMM_EVENTS_PAGE), 0);
    const unsigned extra = 10, pairs = (KMM_EVENTS_MAX + extra) / 2;
    uint64_t last = 0;
    for (unsigned i = 0; i < pairs; i++) {
        last = kt_page_at_a(k, 0, 0);
        KT_ASSERT(t, last != 0);
        KT_ASSERT_EQ(t, kt_page_free_at_b(k, last, 0), KMM_OK);
    }
    struct kmm_events_stats es;
    kmm_events_stats(k, &es);
    KT_EXPECT_EQ(t, es.recorded, 2 * pairs);
    KT_EXPECT_EQ(t, es.kept, KMM_EVENTS_MAX);
    KT_EXPECT_EQ(t, es.flags, KMM_EVENTS_PAGE);
    KT_ASSERT_EQ(t, kmm_events(k, ring, KMM_EVENTS_MAX + 1), KMM_EVENTS_MAX);
    KT_EXPECT_EQ(t, ring[0].seq, 2 * pairs - KMM_EVENTS_MAX + 1);
    for (unsigned i = 1; i < KMM_EVENTS_MAX; i++)
        if (ring[i].seq != ring[i - 1].seq + 1) {
            KT_EXPECT_EQ(t, ring[i].seq, ring[i - 1].seq + 1);
            break;
        }
    KT_EXPECT_EQ(t, ring[KMM_EVENTS_MAX - 1].seq, 2 * pairs);
    KT_EXPECT_EQ(t, ring[KMM_EVENTS_MAX - 1].op, KMM_EVENT_PAGE_FREE);
    KT_EXPECT_EQ(t, ring[KMM_EVENTS_MAX - 1].addr, last);
    KT_EXPECT_EQ(t, ring[KMM_EVENTS_MAX - 2].op, KMM_EVENT_PAGE_ALLOC);
    KT_EXPECT_EQ(t, kmm_events_switch(k, 0), KMM_EVENTS_PAGE);
    KT_EXPECT_HEALTHY(t, k);
    kt_kmm_down(&f);
}

KTEST(events, heap_events_share_the_ring_with_their_cache_and_the_heaps_own_ring_goes_on)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 1))
        return;
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_events_switch(k, KMM_EVENTS_PAGE | KMM_EVENTS_HEAP), 0);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT(t, ds.flags & KMM_HEAP_DEBUG_EVENTS);
    void *p = kt_malloc_at_c(k, 200);
    KT_ASSERT(t, p != NULL);
    uint64_t pa = kt_page_at_a(k, 1, 0);
    KT_ASSERT(t, pa != 0);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pa, 1), KMM_OK);
    size_t n = kmm_events(k, ring, KMM_EVENTS_MAX);
    /* The heap's allocation may have taken a slab's pages first: find the
     * four events of the calls above, in their order. */
    KT_ASSERT(t, n >= 4);
    const struct kmm_event *e = &ring[n - 4];
    KT_EXPECT_EQ(t, e[0].op, KMM_EVENT_HEAP_ALLOC);
    KT_EXPECT_EQ(t, e[0].addr, (uintptr_t)p);
    KT_EXPECT_EQ(t, e[0].size, 200);
    KT_EXPECT(t, ktest_streq(e[0].cache, "kmalloc-208"));
    KT_EXPECT_EQ(t, e[0].order, KMM_EVENT_NONE);
    KT_EXPECT_EQ(t, e[0].zone, KMM_EVENT_NONE);
    KT_EXPECT(t, kt_inside(e[0].caller, (const void *)kt_malloc_at_c));
    KT_EXPECT_EQ(t, e[1].op, KMM_EVENT_PAGE_ALLOC);
    KT_EXPECT_EQ(t, e[1].addr, pa);
    KT_EXPECT_EQ(t, e[1].order, 1);
    KT_EXPECT_EQ(t, e[2].op, KMM_EVENT_HEAP_FREE);
    KT_EXPECT_EQ(t, e[2].addr, (uintptr_t)p);
    KT_EXPECT(t, ktest_streq(e[2].cache, "kmalloc-208"));
    KT_EXPECT_EQ(t, e[3].op, KMM_EVENT_PAGE_FREE);
    for (unsigned i = 1; i < 4; i++)
        KT_EXPECT_EQ(t, e[i].seq, e[i - 1].seq + 1);
    /* The heap's own ring has the heap's two, as ever. */
    struct kmm_heap_event hev[4];
    KT_ASSERT_EQ(t, kmm_heap_events(k, hev, 4), 2);
    KT_EXPECT_EQ(t, hev[0].op, KMM_HEAP_EVENT_ALLOC);
    KT_EXPECT_EQ(t, hev[0].addr, (uintptr_t)p);
    KT_EXPECT_EQ(t, hev[1].op, KMM_HEAP_EVENT_FREE);
    KT_EXPECT_EQ(t, kmm_events_switch(k, 0), (int)(KMM_EVENTS_PAGE | KMM_EVENTS_HEAP));
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(events, an_unknown_source_is_refused_counted_and_logged)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    struct kmm_misuse_stats before, after;
    kmm_misuse_stats(f.k, &before);
    KT_EXPECT_EQ(t, kmm_events_switch(f.k, 0x80), KMM_EINVAL);
    KT_EXPECT_EQ(t, kmm_events_switch(f.k, KMM_EVENTS_PAGE | 0x4), KMM_EINVAL);
    kmm_misuse_stats(f.k, &after);
    KT_EXPECT_EQ(t,
                 after.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_FLAGS] -
                     before.count[KMM_LAYER_DIAG][KMM_MISUSE_BAD_FLAGS],
                 2);
    KT_EXPECT_EQ(t, after.total - before.total, 2);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), "kmm_events_switch(0x5)"));
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(f.m), ", caller "));
    struct kmm_events_stats es;
    kmm_events_stats(f.k, &es);
    KT_EXPECT_EQ(t, es.flags, 0); /* nothing switched */
    KT_EXPECT_EQ(t, kmm_page_free(f.k, kt_page_at_a(f.k, 0, 0), 0), KMM_OK);
    KT_EXPECT_EQ(t, recorded(f.k), 0);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
