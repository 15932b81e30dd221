/*
 * grow_check.c - the figures of growth (kmm_page_stats: total, usable,
 * metadata, frame database, deferred pages, rejected adds) and its part of
 * kmm_check: each section's state against kmm_pmm.sections[], the deferred
 * counters recounted from the map, the metadata ranges of the map.
 */
#include "internal.h"

#include <kmm/check.h>

#include "pmm/grow.h"
#include "pmm/pmm.h"

/* --- statistics and the integrity check ----------------------------------------------- */

void pmm_grow_stats(struct kmm *k, struct kmm_page_stats *out)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
    out->total_pages = pm->total_pages;
    out->usable_pages = pm->usable_pages;
    out->metadata_pages = pm->metadata_pages;
    out->frame_db_bytes = pm->frame_db_bytes;
    for (uint32_t t = 1; t < KMM_MEM_TYPE_LIMIT; t++)
        if (t != KMM_MEM_USABLE && t != KMM_MEM_KMM_META)
            out->reserved_bytes[t] = k->totals.bytes[t];
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            out->zones[z].deferred_pages += pm->grow.deferred[n][z];
            out->deferred_pages += pm->grow.deferred[n][z];
        }
    }
    kmm_unlock_irqrestore(&pm->grow.lock, s);
    out->add_rejected = atomic_load_explicit(&pm->grow.add_rejected, memory_order_relaxed);
}

/* Each section's state agrees with sections[], and a DEFERRED one's record
 * with the map. Adds the deferred pages per zone to deferred[][]. */
static void check_sections(struct kmm *k, uint64_t deferred[KMM_MAX_NODES][KMM_ZONE_COUNT],
                           struct kmm_check_result *r)
{
    const struct kmm_pmm *pm = &k->pmm;
    for (uint64_t s = 0; s < pm->nsections; s++) {
        const struct pmm_section *ps = &pm->grow.sections[s];
        const struct kmm_frame *published = pm->sections[s];
        bool agrees = ps->state == PMM_SECTION_EMPTY      ? !ps->frames && !published
                      : ps->state == PMM_SECTION_DEFERRED ? ps->frames && !published
                      : ps->state == PMM_SECTION_READY    ? ps->frames && published == ps->frames
                                                          : false;
        if (!agrees) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "section %llu: state %u, frames %s, %s",
                              (unsigned long long)s, ps->state, ps->frames ? "assigned" : "none",
                              published ? "published" : "not published");
            continue;
        }
        if (ps->state != PMM_SECTION_DEFERRED)
            continue;
        struct grow_section_scan sc;
        grow_section_scan(k, s, &sc);
        if (sc.pages != ps->deferred || (sc.pages && (sc.node != ps->node || sc.zone != ps->zone)))
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "section %llu: deferred %u pages of zone %u node %u, the map says "
                              "%llu of zone %u node %u",
                              (unsigned long long)s, ps->deferred, ps->zone, ps->node,
                              (unsigned long long)sc.pages, sc.zone, sc.node);
        else if (ps->node < KMM_MAX_NODES && ps->zone < KMM_ZONE_COUNT)
            deferred[ps->node][ps->zone] += ps->deferred;
    }
}

void pmm_grow_check(struct kmm *k, struct kmm_check_result *r)
{
    const struct kmm_pmm *pm = &k->pmm;
    uint64_t deferred[KMM_MAX_NODES][KMM_ZONE_COUNT] = {{0}};
    check_sections(k, deferred, r);
    uint64_t total = 0;
    for (unsigned n = 0; n < KMM_MAX_NODES; n++) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            total += deferred[n][z];
            if (deferred[n][z] != pm->grow.deferred[n][z])
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "zone %s node %u: sections defer %llu pages, the counter says "
                                  "%llu",
                                  kmm_zone_name(z), n, (unsigned long long)deferred[n][z],
                                  (unsigned long long)pm->grow.deferred[n][z]);
        }
    }
    if (total != atomic_load_explicit(&pm->grow.deferred_total, memory_order_relaxed))
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "%llu pages deferred, the total says %llu",
                          (unsigned long long)total,
                          (unsigned long long)atomic_load_explicit(&pm->grow.deferred_total,
                                                                   memory_order_relaxed));
    /* Every metadata range of the map is kmm's: the instance's and the
     * descriptors of added memory. */
    uint64_t meta = 0;
    struct map_walk w;
    struct map_frames f;
    map_walk_start(k, &w, 0, KMM_PAGE_PFN_LIMIT);
    while (map_walk_next(k, &w, &f))
        if (f.type == KMM_MEM_KMM_META)
            meta += f.end - f.first;
    if (meta != pm->metadata_pages)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "the map holds %llu metadata pages, the count %llu",
                          (unsigned long long)meta, (unsigned long long)pm->metadata_pages);
}
