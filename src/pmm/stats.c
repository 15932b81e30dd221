/*
 * stats.c - the page allocator's statistics (kmm_page_stats) and the
 * figures derived from them.
 */
#include "internal.h"

#include "pmm/pmm.h"

const char *kmm_zone_name(unsigned zone)
{
    static const char *const names[KMM_ZONE_COUNT] = {"DMA", "DMA32", "Normal"};
    return zone < KMM_ZONE_COUNT ? names[zone] : "?";
}

uint64_t pmm_zone_stats_add(struct kmm *k, unsigned node, unsigned zone, struct kmm_zone_stats *o)
{
    struct kmm_zone *z = &k->pmm.zones[node][zone];
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    uint64_t cached = pmm_pcp_pages(&k->pmm, node, zone);
    o->managed_pages += z->managed_pages;
    o->free_pages += z->free_pages + cached;
    o->pcp_pages += cached;
    o->alloc_calls += z->alloc_calls;
    o->free_calls += z->free_calls;
    pmm_pcp_calls(&k->pmm, node, zone, &o->alloc_calls, &o->free_calls);
    for (unsigned ord = 0; ord < KMM_PAGE_ORDERS; ord++)
        o->free_blocks[ord] += z->free_blocks[ord];
    uint64_t lent = z->lent_calls;
    kmm_unlock_irqrestore(&z->lock, s);
    return lent;
}

void kmm_page_stats(struct kmm *k, struct kmm_page_stats *out)
{
    const struct kmm_pmm *pm = &k->pmm;
    *out = (struct kmm_page_stats){
        .failed_allocs = atomic_load_explicit(&pm->failed_allocs, memory_order_relaxed),
    };
    for (unsigned i = 0; i < KMM_MISUSE_COUNT; i++)
        out->misuse[i] =
            atomic_load_explicit(&k->misuse.count[KMM_LAYER_PAGE][i], memory_order_relaxed);
    out->shrinker_misuse = kmm_misuse_layer_total(k, KMM_LAYER_RECLAIM);
    /* The map and the figures that grow with it (grow.c, under its lock). */
    pmm_grow_stats(k, out);

    for (unsigned n = 0; n < k->pmm.node_count; n++)
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++)
            pmm_zone_stats_add(k, n, zi, &out->zones[zi]);
    pmm_reclaim_stats(&k->pmm, out);
    /* managed from the zones, each read with its free pages under one lock,
     * so that a zone growing meanwhile cannot make allocated negative. */
    for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
        out->managed_pages += out->zones[zi].managed_pages;
        out->free_pages += out->zones[zi].free_pages;
    }
    out->allocated_pages = out->managed_pages - out->free_pages;
}

unsigned kmm_unusable_index(const struct kmm_zone_stats *z, unsigned order)
{
    if (z->free_pages == 0)
        return 0;
    if (order > KMM_PAGE_MAX_ORDER)
        return 1000;
    uint64_t suitable = 0;
    for (unsigned o = order; o < KMM_PAGE_ORDERS; o++)
        suitable += z->free_blocks[o] << o;
    return (unsigned)((z->free_pages - suitable) * 1000 / z->free_pages);
}
