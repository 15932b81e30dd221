/*
 * numa.c - per-node figures (kmm_page_node_stats).
 *
 * Placement itself lives elsewhere: every frame carries its node (frame.c
 * asks the port at init), each (node, zone) has its own free lists and
 * lock, and a request walks the zone list of its CPU's node (zonelist.c builds
 * them: each zone from the highest allowed one down, the CPU's node first,
 * then the others in ascending order after it). Here the figures are
 * gathered:
 *
 *   alloc_lent    per zone, under its lock, on the locked path (the zone-list
 *                 walk of zonelist.h, for blocks and runs alike, through
 *                 pmm_numa_count_locked): blocks of the zone handed to a CPU
 *                 of another node;
 *   alloc_remote  per requesting node, a relaxed atomic bumped at the same
 *                 moment: that node's requests another node served;
 *   alloc_local   the rest of the node's allocations: its zones' alloc_calls
 *                 (CPU cache hits included, which are always local) minus
 *                 alloc_lent, both read under the same zone lock.
 */
#include "internal.h"

#include "pmm/pmm.h"

unsigned kmm_page_node_count(const struct kmm *k)
{
    return k->pmm.node_count;
}

int kmm_page_node_stats(struct kmm *k, unsigned node, struct kmm_node_stats *out)
{
    struct kmm_pmm *pm = &k->pmm;
    if (node >= pm->node_count)
        return KMM_ENOENT;
    *out = (struct kmm_node_stats){0};
    uint64_t lent = 0, calls = 0;
    for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
        struct kmm_zone_stats *z = &out->zones[zi];
        lent += pmm_zone_stats_add(k, node, zi, z);
        calls += z->alloc_calls;
        out->managed_pages += z->managed_pages;
        out->free_pages += z->free_pages;
        out->pcp_pages += z->pcp_pages;
    }
    out->alloc_lent = lent;
    out->alloc_local = calls - lent;
    out->alloc_remote = atomic_load_explicit(&pm->node_remote[node], memory_order_relaxed);
    for (unsigned c = 0; c < pm->cpu_count; c++)
        out->cpus += pm->pcp[c].node == node;
    return KMM_OK;
}
