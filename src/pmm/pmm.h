/*
 * pmm.h - the page allocator's state and its internal interface. Private to src/.
 *
 * Lock order inside the pmm: zone locks are leaves; a function that holds
 * more than one (kmm_check) takes them in ascending (node, zone) order.
 */
#ifndef KMM_PMM_PMM_H
#define KMM_PMM_PMM_H

#include <kmm/page.h>
#include <kmm/port.h>

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pmm/frame.h"

struct kmm;

/*
 * One zone of one node: the buddy free lists.
 * Invariants (kmm_check): free_head[o] heads a list of free_blocks[o] FREE
 * heads of order o; bit o of nonempty is set iff that list is not empty;
 * free_pages = sum of free_blocks[o] << o. All fields under lock.
 */
struct kmm_zone {
    alignas(64) kmm_lock_t lock;
    uint32_t nonempty; /* bit o: free_head[o] is not empty */
    uint32_t free_head[KMM_PAGE_ORDERS];
    uint64_t free_blocks[KMM_PAGE_ORDERS];
    uint64_t free_pages;
    uint64_t managed_pages; /* set at init, never changes */
    uint64_t alloc_calls;
    uint64_t free_calls;
    uint8_t id; /* enum kmm_zone_id */
    uint8_t node;
};

/* Zone lists: for each NUMA node and highest allowed zone, the zones to try
 * in order, as indexes into zones[][] (node * KMM_ZONE_COUNT + zone). */
#define KMM_ZONELIST_MAX (KMM_MAX_NODES * KMM_ZONE_COUNT)

struct kmm_pmm {
    /* First, so that its 64-byte alignment costs no padding. */
    struct kmm_zone zones[KMM_MAX_NODES][KMM_ZONE_COUNT];
    struct kmm_frame **sections; /* [nsections]: a section's frames, or NULL */
    uint64_t nsections;
    uint64_t pfn_end; /* frames exist below this frame number */
    /* Figures fixed at init. */
    uint64_t total_pages, usable_pages, metadata_pages, managed_pages, frame_db_bytes;
    /* Counters that only grow; updated without a lock. */
    atomic_uint_fast64_t failed_allocs;
    atomic_uint_fast64_t misuse[KMM_MISUSE_COUNT];
    unsigned node_count;
    uint8_t zonelist_len[KMM_MAX_NODES][KMM_ZONE_COUNT];
    uint8_t zonelist[KMM_MAX_NODES][KMM_ZONE_COUNT][KMM_ZONELIST_MAX];
};

/* The frame of frame number pfn; pfn must be below pfn_end in a present
 * section (pmm_frame_lookup checks). O(1). */
static inline struct kmm_frame *pmm_frame(const struct kmm_pmm *pm, uint64_t pfn)
{
    return pm->sections[pfn >> KMM_SECTION_SHIFT] + (pfn & KMM_SECTION_MASK);
}

/* The frame of frame number pfn, or NULL if the database has none there. */
static inline struct kmm_frame *pmm_frame_lookup(const struct kmm_pmm *pm, uint64_t pfn)
{
    if (pfn >= pm->pfn_end || !pm->sections[pfn >> KMM_SECTION_SHIFT])
        return 0;
    return pmm_frame(pm, pfn);
}

static inline struct kmm_zone *pmm_zone_of(struct kmm_pmm *pm, const struct kmm_frame *f)
{
    return &pm->zones[f->node][f->zone];
}

/* The zone an address belongs to. */
static inline unsigned pmm_zone_of_addr(uint64_t pa)
{
    return pa < KMM_ZONE_DMA_END     ? KMM_ZONE_DMA
           : pa < KMM_ZONE_DMA32_END ? KMM_ZONE_DMA32
                                     : KMM_ZONE_NORMAL;
}

/* --- init (frame.c) ------------------------------------------------------- */

/* What the frame database needs, computed from the resolved map before any
 * memory is touched. */
struct pmm_layout {
    bool clamped; /* usable memory above KMM_PAGE_PFN_LIMIT was left out */
    uint64_t pfn_end;
    uint64_t nsections;
    uint64_t present_sections;
    uint64_t bytes; /* section table + frame arrays */
};

struct kmm_memmap_input;

/* pmm_plan - size the frame database for the map in. Pure. */
void pmm_plan(const struct kmm_memmap_input *in, struct pmm_layout *out);

/* pmm_setup - build the frame database in memory at meta (direct-map
 * address, 16-byte aligned, lay->bytes long) for k->map, and hand every usable
 * page to the buddy allocator. Cannot fail. */
void pmm_setup(struct kmm *k, const struct pmm_layout *lay, void *meta);

/* --- buddy (buddy.c) ---------------------------------------------------------- */

/* Free-list primitives (zone lock held). push marks the frame a FREE head of
 * the order and puts it first on its list; remove takes a FREE head off its
 * list and leaves its state for the caller to set. Neither merges. */
void pmm_list_push(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);
void pmm_list_remove(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);

/* Puts the block at pfn (order, FREE-marked by the caller's accounting) on its
 * zone's free list, merging with free buddies. Zone lock held. */
void pmm_free_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);

/* --- integrity (check.c) ------------------------------------------------------ */

struct kmm_check_result;
void pmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_PMM_PMM_H */
