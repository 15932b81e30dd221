/*
 * zonelist.c - the zone lists, the one walk over them, and the page-request
 * engine's zone-locked and slow paths (zonelist.h draws the whole path).
 *
 * Zone lists: for a CPU on node n and a request whose highest zone is top,
 * try each zone from top down to DMA, on node n first and then on the
 * others in ascending order (n+1, n+2, ...). Falling back across nodes
 * before falling to a lower zone keeps DMA memory for the devices that need
 * it. Every zone is listed, with memory or not, and the lists never change
 * after init: memory added later only marks its zone populated
 * (pmm_mark_populated), which the walk checks, so no walker races a
 * rebuild. Every walker goes through pmm_zonelist_zone: the locked path
 * here, the CPU caches' refill and first choice (pcp.c) and growth
 * (grow.c pmm_grow).
 *
 * Locking: the walk takes nothing. The locked path takes one zone lock at a
 * time (a leaf) and grows a zone (growth lock, then zone locks, grow.c)
 * with no zone lock held; the slow path runs with no kmm lock held.
 */
#include "internal.h"

#include "pmm/pmm.h"
#include "pmm/zonelist.h"

KMM_INIT void pmm_zonelists_build(struct kmm_pmm *pm)
{
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned top = 0; top < KMM_ZONE_COUNT; top++) {
            uint8_t len = 0;
            for (unsigned z = top + 1; z-- > 0;) {
                for (unsigned i = 0; i < pm->node_count; i++) {
                    unsigned node = (n + i) % pm->node_count;
                    pm->zonelist[n][top][len++] = (uint8_t)(node * KMM_ZONE_COUNT + z);
                }
            }
            pm->zonelist_len[n][top] = len;
        }
    }
    pmm_mark_populated(pm);
}

void pmm_mark_populated(struct kmm_pmm *pm)
{
    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
            if (pmm_zone_present(pm, n, z))
                atomic_store_explicit(&pm->zones[n][z].populated, true, memory_order_relaxed);
    pmm_pcp_zonelists_changed(pm);
}

/* One pass of the slow path, with no lock held: grow the zones (deferred or
 * added memory), drain this CPU's caches (asking the others to drain
 * theirs), and unless the request is atomic run the shrinkers. Returns
 * whether any of it made memory available. */
static bool slow_pass(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    bool progress = pmm_grow(k, order, flags);
    progress |= pmm_pcp_drain_for_shortage(k);
    if (!(flags & KMM_GFP_ATOMIC))
        progress |= pmm_reclaim(k, order, flags) > 0;
    return progress;
}

uint64_t pmm_request_slow(struct kmm *k, const struct pmm_request *rq)
{
    for (unsigned pass = 0; pass < KMM_SLOW_PASSES && slow_pass(k, rq->order, rq->flags); pass++) {
        uint64_t pfn = pmm_request_locked(k, rq);
        if (pfn != KMM_PFN_NONE)
            return pfn;
    }
    atomic_fetch_add_explicit(&k->pmm.failed_allocs, 1, memory_order_relaxed);
    return KMM_PFN_NONE;
}
