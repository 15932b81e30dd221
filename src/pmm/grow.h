/*
 * grow.h - what the files of memory growth share (private to them):
 *   grow.c        deferred sections: initialising them, on demand and in
 *                 the background (the top comment there says how growth works)
 *   grow_add.c    kmm_page_add_memory: reclaimed and hot-added memory
 *   grow_check.c  the figures of growth and its part of kmm_check
 * Every function here runs with the growth lock held, or at init.
 */
#ifndef KMM_PMM_GROW_H
#define KMM_PMM_GROW_H

#include "internal.h"

#include "pmm/map.h"
#include "pmm/pmm.h"

/* Enough zone-lock states for every (node, zone). */
#define GROW_ZONES (KMM_MAX_NODES * KMM_ZONE_COUNT)
_Static_assert(GROW_ZONES <= 64, "a 64-bit mask names the zone locks");

/* The first frame of section s. */
static inline uint64_t grow_section_lo(uint64_t s)
{
    return s << KMM_SECTION_SHIFT;
}

/* The frames a section can describe: its span, clamped to the table's reach. */
static inline uint64_t grow_section_hi(const struct kmm_pmm *pm, uint64_t s)
{
    uint64_t hi = (s + 1) << KMM_SECTION_SHIFT;
    return hi < pm->pfn_end ? hi : pm->pfn_end;
}

/* The node of frame pfn, clamped to the instance's nodes as at init. */
static inline unsigned grow_node_of_pfn(const struct kmm *k, uint64_t pfn)
{
    if (k->pmm.node_count == 1)
        return 0;
    unsigned node = kmm_port_node_of_phys(k->port, pfn << KMM_PAGE_SHIFT);
    return node < k->pmm.node_count ? node : 0;
}

/* The zone of frame pfn. */
static inline unsigned grow_zone_of_pfn(uint64_t pfn)
{
    return pmm_zone_of_addr(pfn << KMM_PAGE_SHIFT);
}

/* --- sections (grow.c) ------------------------------------------------------------------ */

/* What the map says about the usable pages of a section. */
struct grow_section_scan {
    uint64_t pages;     /* usable pages */
    uint8_t node, zone; /* of the first one */
    bool mixed;         /* they lie in more than one zone or node */
};

/* What the map says about section s's usable pages, into *sc. */
void grow_section_scan(const struct kmm *k, uint64_t s, struct grow_section_scan *sc);

/* Records DEFERRED section s's usable pages from the map in its record and
 * the deferred counters; what the map says in *out. */
void grow_section_defer(struct kmm *k, uint64_t s, struct grow_section_scan *out);

/* Takes DEFERRED section ps's pages out of the deferred counters. */
void grow_section_undefer(struct pmm_grow *g, struct pmm_section *ps);

/* Writes the descriptors of frames [first, end) of a map range of this
 * type into frames (the section's array, starting at frame lo). */
void grow_write_frames(const struct kmm *k, struct kmm_frame *frames, uint64_t lo, uint64_t first,
                       uint64_t end, uint32_t type);

/* The zone locks a change to section s's frames takes, as a mask of
 * node * KMM_ZONE_COUNT + zone. */
uint64_t grow_section_locks(const struct kmm_pmm *pm, uint64_t s);

/* Take and drop the zone locks of mask, in ascending (node, zone) order;
 * saved[] holds each lock's IRQ state. */
void grow_lock_zones(struct kmm_pmm *pm, uint64_t mask, kmm_irqstate_t *saved);
void grow_unlock_zones(struct kmm_pmm *pm, uint64_t mask, const kmm_irqstate_t *saved);

/* Hands the INTERIOR frames [first, end) to their zones as the largest
 * aligned blocks. The zone locks of their section held. */
void grow_free_range_locked(struct kmm_pmm *pm, uint64_t first, uint64_t end);

/* Recomputes the CPU cache bounds of the zones of mask. Their locks held. */
void grow_refresh_bounds_locked(struct kmm_pmm *pm, uint64_t mask);

/* Initialises DEFERRED section s: writes its descriptors, publishes it and
 * hands its usable pages to the zones. Returns the pages added. */
uint64_t grow_section_init_locked(struct kmm *k, uint64_t s);

#endif /* KMM_PMM_GROW_H */
