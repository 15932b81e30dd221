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
    uint32_t pcp_high;  /* a CPU cache holding more than this gives back a batch */
    uint32_t pcp_batch; /* pages moved between the zone and a cache at a time */
    uint8_t id;         /* enum kmm_zone_id */
    uint8_t node;
};

/*
 * One CPU's cache of free single pages of one zone of that CPU's node.
 * Owned by the CPU: only it changes head and the list, with preemption and
 * interrupts off, and no lock. Other CPUs read count and the counters
 * (statistics), which the owner therefore stores with relaxed atomics
 * (single writer: a plain store, no locked instruction).
 */
struct kmm_pcp {
    uint32_t head;       /* first cached page, linked through frame.next */
    atomic_uint count;   /* pages on the list */
    atomic_ulong allocs; /* pages handed out from the cache; never decreases */
    atomic_ulong frees;  /* pages freed into the cache; never decreases */
    uint32_t high;       /* copy of the zone's pcp_high, next to count for the free path */
};

/* A CPU's caches, one cache line apart from the next CPU's. */
struct kmm_pcp_cpu {
    alignas(64) struct kmm_pcp zone[KMM_ZONE_COUNT];
    atomic_uint drain; /* set by another CPU short of memory: empty your caches */
    uint8_t node;      /* the CPU's node (kmm_port_node_of_cpu at init) */
    /* For each highest allowed zone, the zone whose cache serves the request
     * first: the first entry of the zone list if it is on this node, else
     * PCP_NO_ZONE. Derived from the zone lists (pmm_pcp_zonelists_changed). */
    _Atomic uint8_t first[KMM_ZONE_COUNT];
};

#define PCP_NO_ZONE 0xffu

/* Zone lists: for each NUMA node and highest allowed zone, the zones to try
 * in order, as indexes into zones[][] (node * KMM_ZONE_COUNT + zone). */
#define KMM_ZONELIST_MAX (KMM_MAX_NODES * KMM_ZONE_COUNT)

struct kmm_pmm {
    /* First, so that its 64-byte alignment costs no padding. */
    struct kmm_zone zones[KMM_MAX_NODES][KMM_ZONE_COUNT];
    struct kmm_pcp_cpu pcp[KMM_MAX_CPUS];
    unsigned cpu_count;
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

/* Takes a block of the order off z's lists, splitting a larger one if
 * needed, and subtracts it from z->free_pages. Returns its frame number, or
 * KMM_PFN_NONE if z has none. The caller sets the frame's state. */
uint64_t pmm_take_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, unsigned order);

/* Puts the block at pfn (order, FREE-marked by the caller's accounting) on its
 * zone's free list, merging with free buddies. Zone lock held. */
void pmm_free_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);

/* --- per-CPU caches (pcp.c) ---------------------------------------------------- */

/* Sets each zone's cache bounds and each CPU's node; at init, after the
 * zones are filled. */
void pmm_pcp_setup(struct kmm *k, unsigned cpu_count);

/* Recomputes each CPU's first[] after the zone lists changed. */
void pmm_pcp_zonelists_changed(struct kmm_pmm *pm);

/* The full cache path: honours a drain request, then takes a page from the
 * first local zone's cache, refilling caches from their zones. Returns 0 if
 * the local zones have nothing (the caller goes on to the zone lists). */
uint64_t pmm_pcp_alloc(struct kmm *k, kmm_gfp_t flags);

/* The common path of a single-page free: if f (at pfn) is an allocated
 * order-0 page of this CPU's node with one reference, put it in this CPU's
 * cache and return true. Otherwise return false and change nothing: the
 * caller takes the locked path, which judges misuse exactly. */
bool pmm_pcp_free(struct kmm *k, struct kmm_frame *f, uint64_t pfn);

/* (The common paths, pmm_pcp_alloc_fast and pmm_pcp_free_fast, are inline
 * in pmm/pcp.h.) Gives back a batch from each of this CPU's caches that is
 * over its bound. */
void pmm_pcp_trim(struct kmm *k);

/* Memory is short: empty this CPU's caches into the zones now and ask every
 * other CPU with cached pages to do the same at its next allocator call.
 * Returns true if this CPU gave any pages back. */
bool pmm_pcp_drain_for_shortage(struct kmm *k);

/* Adds the pages every CPU's cache of one zone handed out and took back. */
void pmm_pcp_calls(const struct kmm_pmm *pm, unsigned node, unsigned zone, uint64_t *allocs,
                   uint64_t *frees);

/* Pages in every CPU's caches for one zone (statistics, racy by nature). */
uint64_t pmm_pcp_pages(const struct kmm_pmm *pm, unsigned node, unsigned zone);

/* --- growth and reclaim (grow.c, reclaim.c) --------------------------------------- */

/* Brings memory that is not in the zones yet (deferred descriptors, added
 * ranges) online for a request of this order and flags. Returns true if any
 * page was added to a zone the request may use. No kmm lock held. */
bool pmm_grow(struct kmm *k, unsigned order, kmm_gfp_t flags);

/* Calls the reclaim hooks (shrinkers) for a request that found nothing,
 * with no kmm lock held. Returns the pages they report freed. Never called
 * for KMM_GFP_ATOMIC requests. */
uint64_t pmm_reclaim(struct kmm *k, unsigned order, kmm_gfp_t flags);

/* --- misuse (buddy.c) ----------------------------------------------------------- */

/* A rejected call: counts it, logs one line naming the call, the address,
 * the order and the caller, and returns the error value for the kind.
 * actual >= 0 is the order the block really has (KMM_MISUSE_WRONG_ORDER). */
int pmm_misuse(struct kmm *k, enum kmm_page_misuse kind, const char *fn, uint64_t pa,
               unsigned order, int actual, const void *caller);

/* The highest zone the flags allow. */
static inline unsigned pmm_top_zone(kmm_gfp_t flags)
{
    if (flags & KMM_GFP_DMA)
        return KMM_ZONE_DMA;
    if (flags & KMM_GFP_DMA32)
        return KMM_ZONE_DMA32;
    return KMM_ZONE_NORMAL;
}

/* --- integrity (check.c) ---------------------------------------------------------- */

struct kmm_check_result;
void pmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_PMM_PMM_H */
