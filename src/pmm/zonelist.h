/*
 * zonelist.h - the zone lists and the page-request engine (zonelist.c).
 * Private to src/pmm/.
 *
 * One request path serves single pages, blocks and runs:
 *   1. per-CPU cache (single pages only; pcp.h, pcp.c), then
 *   2. the zone-locked path: the request's zone list, zone by zone under
 *      each zone's lock (pmm_zonelist_zone, the one walk), growing a zone
 *      that is empty but has deferred memory before falling back, then
 *   3. the slow path: grow, drain the CPU caches, reclaim; retry 2.
 * pmm_request_pfn is steps 2 and 3; the callers (buddy.c, run.c) do
 * validation and step 1.
 */
#ifndef KMM_PMM_ZONELIST_H
#define KMM_PMM_ZONELIST_H

#include "pmm/pmm.h"

/* pmm_zonelists_build - the zone lists of every node (init, single-threaded).
 * They never change afterwards: memory added later only marks its zone
 * populated (pmm_mark_populated). */
KMM_INIT void pmm_zonelists_build(struct kmm_pmm *pm);

/* Marks every zone that has memory now as populated, and refreshes the
 * CPUs' first cache choices. Init, and the growth lock held afterwards. */
void pmm_mark_populated(struct kmm_pmm *pm);

/*
 * pmm_zonelist_zone - the one zone-list walk: the next populated zone of
 * the list of (node, top) at or after position *pos, which it advances past
 * the zone returned; NULL at the end. Start with *pos = 0. Lock-free: the
 * lists never change after init and populated is only ever set. Inline:
 * the locked path runs it for every block a cache cannot serve.
 */
static inline struct kmm_zone *pmm_zonelist_zone(struct kmm_pmm *pm, unsigned node, unsigned top,
                                                 unsigned *pos)
{
    const uint8_t *list = pm->zonelist[node][top];
    while (*pos < pm->zonelist_len[node][top]) {
        struct kmm_zone *z = &pm->zones[0][0] + list[(*pos)++];
        if (pmm_zone_populated(z))
            return z;
    }
    return NULL;
}

/* The node whose zone list a request starts from: the current CPU's. */
static inline unsigned pmm_request_node(const struct kmm_pmm *pm)
{
    if (pm->node_count == 1)
        return 0;
    kmm_preempt_disable();
    unsigned cpu = kmm_port_cpu_id();
    kmm_preempt_enable();
    return cpu < pm->cpu_count ? pm->pcp[cpu].node : 0;
}

/* The highest zone a request may use (flags validated: DMA and DMA32 are
 * not both set). */
static inline unsigned pmm_top_zone(kmm_gfp_t flags)
{
    if (flags & KMM_GFP_DMA)
        return KMM_ZONE_DMA;
    if (flags & KMM_GFP_DMA32)
        return KMM_ZONE_DMA32;
    return KMM_ZONE_NORMAL;
}

/* How many passes the slow path makes before it gives up: enough for
 * growth, a drain and a few rounds of shrinkers. */
#define KMM_SLOW_PASSES 8

/*
 * A request for the zone-locked and slow paths. take == NULL: a block of
 * `order`, handed out as an ALLOCATED head with one reference
 * (pmm_take_allocated_locked). Otherwise take() runs under each zone's lock
 * that wanted() accepts (NULL: every zone) and returns a frame number or
 * KMM_PFN_NONE (runs, run.c); `order` then only tells growth and the
 * shrinkers the size wanted.
 */
struct pmm_request {
    unsigned order;
    kmm_gfp_t flags; /* validated (pmm_flags_valid) */
    uint64_t (*take)(struct kmm *k, struct kmm_zone *z, const void *ctx);
    bool (*wanted)(const struct kmm_pmm *pm, const struct kmm_zone *z, const void *ctx);
    const void *ctx;
};

/* The zone-locked path (step 2): the first zone of the request's list that has what
 * it asks for. A zone where nothing is found grows first, if it has
 * deferred memory, before the walk falls back to the next zone (as Linux's
 * deferred_grow_zone), so a Normal request does not eat DMA32 memory while
 * Normal memory waits. Allocations are counted for the NUMA statistics.
 * Inline, so that a constant request (a block) folds its take. */
static inline uint64_t pmm_request_locked(struct kmm *k, const struct pmm_request *rq)
{
    struct kmm_pmm *pm = &k->pmm;
    unsigned node = pmm_request_node(pm), top = pmm_top_zone(rq->flags), pos = 0;
    struct kmm_zone *z;
    while ((z = pmm_zonelist_zone(pm, node, top, &pos))) {
        if (rq->wanted && !rq->wanted(pm, z, rq->ctx))
            continue;
        uint64_t pfn;
        do {
            kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
            pfn = rq->take ? rq->take(k, z, rq->ctx) : pmm_take_allocated_locked(pm, z, rq->order);
            pmm_numa_count_locked(pm, z, node, pfn);
            kmm_unlock_irqrestore(&z->lock, s);
        } while (pfn == KMM_PFN_NONE && pmm_grow_zone(k, pm, z));
        if (pfn != KMM_PFN_NONE)
            return pfn;
    }
    return KMM_PFN_NONE;
}

/* The slow path (step 3): passes of grow, drain, reclaim (not for
 * KMM_GFP_ATOMIC), each followed by the locked path again, while a pass
 * makes progress. Returns the frame number found or KMM_PFN_NONE, counted
 * in failed_allocs. No kmm lock held. Out of line: what a request pays
 * only when the zones had nothing. */
__attribute__((cold)) uint64_t pmm_request_slow(struct kmm *k, const struct pmm_request *rq);

/*
 * pmm_request_pfn - steps 2 and 3 of the request path (above): returns the
 * first frame number found, or KMM_PFN_NONE after the slow path gave up
 * (counted in failed_allocs). No kmm lock held on entry; the slow path runs
 * with none held (shrinkers only without KMM_GFP_ATOMIC). Growth of a zone
 * (one 128 MiB section, about 0.1 ms under the growth lock, IRQs off) may
 * happen on either step, with IRQs as the caller had them otherwise.
 */
static inline uint64_t pmm_request_pfn(struct kmm *k, const struct pmm_request *rq)
{
    uint64_t pfn = pmm_request_locked(k, rq);
    return pfn != KMM_PFN_NONE ? pfn : pmm_request_slow(k, rq);
}

#endif /* KMM_PMM_ZONELIST_H */
