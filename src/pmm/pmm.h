/*
 * pmm.h - the page allocator's state and its internal interface. Private to src/.
 *
 * Lock order inside the pmm: zone locks are leaves; a function that holds
 * more than one (kmm_check) takes them in ascending (node, zone) order.
 * The shrinker list lock (reclaim.c) is a leaf too, never held together
 * with a zone lock, and never while a shrinker runs. The growth lock
 * (grow.c) comes before the zone locks: taken with none held, it takes
 * them inside.
 */
#ifndef KMM_PMM_PMM_H
#define KMM_PMM_PMM_H

#include "lib/lib.h"
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
    uint64_t managed_pages; /* pages handed to the zone; grows (grow.c), never shrinks */
    uint64_t alloc_calls;
    uint64_t free_calls;
    uint32_t pcp_high;     /* a CPU cache holding more than this gives back a batch */
    uint32_t pcp_batch;    /* pages moved between the zone and a cache at a time */
    atomic_bool populated; /* has memory, now or deferred: set once, never cleared */
    uint8_t id;            /* enum kmm_zone_id */
    uint8_t node;
    uint64_t lent_calls; /* of alloc_calls, blocks for CPUs of other nodes (numa.c) */
};

/*
 * One CPU's cache of free single pages of one zone of that CPU's node.
 * Owned by the CPU: only it changes head and the list, with preemption and
 * interrupts off, and no lock. Other CPUs read count and the counters
 * (statistics), which the owner therefore stores with relaxed atomics
 * (single writer: a plain store, no locked instruction).
 */
struct kmm_pcp {
    uint32_t head;         /* first cached page, linked through frame.next */
    atomic_uint count;     /* pages on the list */
    atomic_ulong refilled; /* pages moved in from the zone; never decreases */
    atomic_ulong returned; /* pages given back to the zone; never decreases */
    atomic_ulong frees;    /* pages freed into the cache; never decreases */
    uint32_t high;         /* copy of the zone's pcp_high, next to count for the free path */
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

/* --- growth state (grow.c): deferred descriptors and added memory ---------------- */

/* What a section's descriptors are. Changes only under the growth lock, and
 * only EMPTY -> DEFERRED -> READY (or EMPTY -> READY). */
enum pmm_section_state {
    PMM_SECTION_EMPTY = 0, /* no frame array: no RAM the instance knows of */
    PMM_SECTION_DEFERRED,  /* a frame array is assigned; its descriptors are not written */
    PMM_SECTION_READY,     /* descriptors written; kmm_pmm.sections[] points at them */
};

/* One section's growth record. A DEFERRED section's usable pages all lie in
 * one zone of one node (a section that would mix is initialised at once). */
struct pmm_section {
    struct kmm_frame *frames; /* the assigned array (NULL iff EMPTY) */
    uint32_t deferred;        /* DEFERRED: its usable pages, all still waiting */
    uint8_t state;            /* enum pmm_section_state */
    uint8_t node, zone;       /* DEFERRED with deferred > 0: where its pages go */
};

/*
 * The growth lock and what it protects: every section's state, the deferred
 * counters, the instance's memory map (kmm.map, kmm.totals) after init, and
 * the figures of kmm_pmm that change after init (total, usable, metadata,
 * managed, frame_db). Taken with no zone lock held; it takes zone locks
 * inside (docs/architecture.md, "Lock order").
 */
struct pmm_grow {
    kmm_lock_t lock;
    struct pmm_section *sections;                     /* [nsections] */
    uint64_t deferred[KMM_MAX_NODES][KMM_ZONE_COUNT]; /* pages in its DEFERRED sections */
    uint64_t hint[KMM_MAX_NODES][KMM_ZONE_COUNT];     /* no DEFERRED section of it lies below */
    uint64_t first_deferred;                          /* no DEFERRED section lies below */
    /* The sum of deferred[][], read without the lock by pmm_grow. */
    atomic_uint_fast64_t deferred_total;
    /* kmm_page_add_memory calls rejected; only grows, without the lock. */
    atomic_uint_fast64_t add_rejected;
};

struct kmm_pmm {
    /* First, so that its 64-byte alignment costs no padding. */
    struct kmm_zone zones[KMM_MAX_NODES][KMM_ZONE_COUNT];
    struct kmm_pcp_cpu pcp[KMM_MAX_CPUS];
    unsigned cpu_count;
    /* [nsections]: a READY section's frames, NULL for any other (grow.c
     * publishes a section when its descriptors are written). */
    struct kmm_frame **sections;
    uint64_t nsections;
    uint64_t pfn_end; /* frames may exist below this frame number (fixed at init) */
    /* Figures set at init that grow with deferred sections and added memory,
     * under grow.lock (managed_pages also under the zone locks it changes in). */
    uint64_t total_pages, usable_pages, metadata_pages, managed_pages, frame_db_bytes;
    struct pmm_grow grow;
    /* Counters that only grow; updated without a lock. */
    atomic_uint_fast64_t failed_allocs;
    unsigned node_count;
    uint8_t zonelist_len[KMM_MAX_NODES][KMM_ZONE_COUNT];
    uint8_t zonelist[KMM_MAX_NODES][KMM_ZONE_COUNT][KMM_ZONELIST_MAX];
    /* Reclaim hooks (reclaim.c): the list and its figures, under
     * shrinker_lock, a leaf never held while a shrinker runs. */
    kmm_lock_t shrinker_lock;
    struct kmm_shrinker *shrinker_head, *shrinker_tail;
    uint64_t shrinker_seq, shrinker_count;
    uint64_t reclaim_calls, shrinker_calls, reclaimed_pages;
    /* NUMA (numa.c): allocations by each node's CPUs that another node
     * served; only grows. */
    atomic_uint_fast64_t node_remote[KMM_MAX_NODES];
};

/* The frame of frame number pfn; pfn must be below pfn_end in a present
 * section (pmm_frame_lookup checks). O(1). */
static inline struct kmm_frame *pmm_frame(const struct kmm_pmm *pm, uint64_t pfn)
{
    return pm->sections[pfn >> KMM_SECTION_SHIFT] + (pfn & KMM_SECTION_MASK);
}

/* The frame of frame number pfn, or NULL if the database has none there
 * (no RAM, or a section whose descriptors are deferred: not managed yet). */
static inline struct kmm_frame *pmm_frame_lookup(const struct kmm_pmm *pm, uint64_t pfn)
{
    if (pfn >= pm->pfn_end || !pm->sections[pfn >> KMM_SECTION_SHIFT])
        return 0;
    return pmm_frame(pm, pfn);
}

static inline struct kmm_zone *pmm_zone_of(struct kmm_pmm *pm, const struct kmm_frame *f)
{
    /* Zone and node never change, but they share the word a CPU may claim
     * without a lock at the same moment (frame.h): one atomic read. */
    union frame_meta m = frame_meta_get(f);
    return &pm->zones[m.node][m.zone];
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
    /* The reach of the section table: the end of usable and reclaimable
     * RAM, or of the hot-add limit if that is higher (kmm_config). */
    uint64_t pfn_end;
    uint64_t usable_pages; /* whole usable pages in the map */
    uint64_t nsections;
    uint64_t present_sections;
    uint64_t bytes; /* section table + growth records + frame arrays */
};

struct kmm_memmap_input;

/* pmm_plan - size the frame database for the map in, with a section table
 * that reaches hotplug_limit (bytes; 0: the map's end). Pure. */
KMM_INIT void pmm_plan(const struct kmm_memmap_input *in, uint64_t hotplug_limit,
                       struct pmm_layout *out);

/* pmm_setup - build the frame database in memory at meta (direct-map
 * address, 16-byte aligned, lay->bytes long) for k->map, and hand the usable
 * pages of the sections initialised at once to the buddy allocator (the
 * rest are deferred, grow.c). Cannot fail. */
KMM_INIT void pmm_setup(struct kmm *k, const struct pmm_layout *lay, void *meta);

/* Sets total_pages and usable_pages from k->map (at init, and after
 * kmm_page_add_memory changed the map, under the growth lock). */
void pmm_count_map(struct kmm *k);

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

/* Takes a block for a caller: an ALLOCATED head of the order with one
 * reference, counted in z->alloc_calls; KMM_PFN_NONE if z has none. Zone
 * lock held. */
static inline uint64_t pmm_take_allocated_locked(struct kmm_pmm *pm, struct kmm_zone *z,
                                                 unsigned order)
{
    uint64_t pfn = pmm_take_block_locked(pm, z, order);
    if (pfn == KMM_PFN_NONE)
        return pfn;
    frame_set(pmm_frame(pm, pfn), FRAME_ALLOCATED, order, 1);
    z->alloc_calls++;
    return pfn;
}

/*
 * pmm_flags_valid - the one validator of allocation flags (single pages,
 * blocks and runs): only bits of `allowed` (a subset of KMM_GFP_VALID), and
 * not both zone flags. kmm_page_alloc's fast path passes the flags it can
 * serve without a call (all but KMM_GFP_ZERO), so it validates once.
 */
static inline bool pmm_flags_valid(kmm_gfp_t flags, kmm_gfp_t allowed)
{
    return !(flags & ~allowed) &&
           (flags & (KMM_GFP_DMA | KMM_GFP_DMA32)) != (KMM_GFP_DMA | KMM_GFP_DMA32);
}

/* Whether the INTERIOR frame pfn lies inside a free block (it was freed and
 * merged into its buddy's block). Zone lock held. O(KMM_PAGE_MAX_ORDER). */
bool pmm_inside_free_block_locked(const struct kmm_pmm *pm, uint64_t pfn);

/* Puts the block at pfn (order, FREE-marked by the caller's accounting) on its
 * zone's free list, merging with free buddies. Zone lock held. */
void pmm_free_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);

/* --- per-CPU caches (pcp.c) ---------------------------------------------------- */

/* Sets each zone's cache bounds and each CPU's node; at init, after the
 * zones are filled. */
void pmm_pcp_setup(struct kmm *k, unsigned cpu_count);

/* Sets z's cache bounds (pcp_batch, pcp_high) from its managed_pages: at
 * init, and when the zone grows (grow.c, zone lock held). Stores a bound
 * only when it changes, with a relaxed atomic store. */
void pmm_pcp_bounds(struct kmm_zone *z, unsigned cpu_count);

/* Recomputes each CPU's first[] after the zone lists changed. */
void pmm_pcp_zonelists_changed(struct kmm_pmm *pm);

/* The full cache path: honours a drain request, then takes a page from the
 * first local zone's cache, refilling caches from their zones. Returns 0 if
 * the local zones have nothing, or one is empty while memory is deferred
 * (the caller goes on to the zone-locked path, which grows zones: a cache
 * never does). */
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

/* Zone z had no block for a request: initialise one of its deferred
 * sections, if it has any, so that the request need not fall back to a
 * lower zone. Returns true if pages were added to z. No kmm lock held; one
 * relaxed load when nothing is deferred. */
bool pmm_grow_zone_slow(struct kmm *k, struct kmm_zone *z);
static inline bool pmm_grow_zone(struct kmm *k, struct kmm_pmm *pm, struct kmm_zone *z)
{
    if (!atomic_load_explicit(&pm->grow.deferred_total, memory_order_relaxed))
        return false;
    return pmm_grow_zone_slow(k, z);
}

/* Growth at init (pmm_setup, single-threaded): every section with a frame
 * array starts DEFERRED; this initialises the budget (grow.c says which)
 * and leaves the rest deferred. */
void pmm_grow_setup(struct kmm *k);

/* Whether a zone has ever had memory. The zone lists hold every zone and
 * never change after init (so no walker races a rebuild); walkers skip the
 * zones this says are empty. */
static inline bool pmm_zone_populated(const struct kmm_zone *z)
{
    return atomic_load_explicit(&z->populated, memory_order_relaxed);
}

static inline bool pmm_zone_present(const struct kmm_pmm *pm, unsigned node, unsigned zone)
{
    return pm->zones[node][zone].managed_pages || pm->grow.deferred[node][zone];
}

/* The changeable figures of *out (kmm_page_stats): total, usable, metadata,
 * frame database, reserved bytes, deferred pages, rejected adds. Takes the
 * growth lock. */
void pmm_grow_stats(struct kmm *k, struct kmm_page_stats *out);

struct kmm_check_result;

/* kmm_check's part for growth: section states against kmm_pmm.sections[],
 * deferred counters recounted from the map, the metadata in the map. The
 * growth lock and every zone lock held. */
void pmm_grow_check(struct kmm *k, struct kmm_check_result *r);

/* Calls the reclaim hooks (shrinkers) for a request that found nothing,
 * with no kmm lock held. Returns the pages they report freed. Never called
 * for KMM_GFP_ATOMIC requests. */
uint64_t pmm_reclaim(struct kmm *k, unsigned order, kmm_gfp_t flags);

/* --- reclaim and NUMA figures (reclaim.c, numa.c, stats.c) ------------------------ */

/* Sets up the shrinker list; at init. */
KMM_INIT void pmm_reclaim_init(struct kmm_pmm *pm);

/* Fills the reclaim fields of *out (kmm_page_stats). */
void pmm_reclaim_stats(struct kmm_pmm *pm, struct kmm_page_stats *out);

/* One registered shrinker as the report shows it. */
struct pmm_shrinker_info {
    uint64_t seq, calls, freed;
    char name[32]; /* truncated; "?" for a NULL name */
};

/* The first registered shrinker with a registration number above after_seq
 * (0 for the first): copies it to *out and returns true, or returns false
 * at the end of the list. Takes the shrinker lock. */
bool pmm_shrinker_info(struct kmm_pmm *pm, uint64_t after_seq, struct pmm_shrinker_info *out);

/* Counts a block that a request of a CPU on node `node` took from zone z
 * (zone lock held; pfn KMM_PFN_NONE: nothing taken, nothing counted). */
static inline void pmm_numa_count_locked(struct kmm_pmm *pm, struct kmm_zone *z, unsigned node,
                                         uint64_t pfn)
{
    if (pfn != KMM_PFN_NONE && z->node != node) {
        z->lent_calls++;
        atomic_fetch_add_explicit(&pm->node_remote[node], 1, memory_order_relaxed);
    }
}

/* Adds zone (node, zone)'s figures to *o, under its lock, CPU caches
 * included. Returns how many of its allocations went to other nodes' CPUs
 * (lent_calls), read under the same lock. */
uint64_t pmm_zone_stats_add(struct kmm *k, unsigned node, unsigned zone, struct kmm_zone_stats *o);

/* --- misuse (buddy.c) ----------------------------------------------------------- */

/* A rejected call: counts it, logs one line naming the call, the address,
 * the order and the caller, and returns the error value for the kind.
 * actual >= 0 is the order the block really has (KMM_MISUSE_WRONG_ORDER). */
int pmm_misuse(struct kmm *k, enum kmm_misuse kind, const char *fn, uint64_t pa, unsigned order,
               int actual, const void *caller);

/* --- the instance's memory map (memmap.c), for the layers above ---------------------- */

/*
 * pmm_ram_bytes - how many bytes of [pa, pa + size) the instance's resolved
 * map says are RAM (usable, kernel, kmm metadata, ACPI and boot-loader
 * memory): what the vmm may map without a cache mode. The layers above ask
 * this instead of reading k->map. Any context; no lock (the map changes
 * only when memory is added, kmm_page_add_memory). O(ranges before pa).
 */
uint64_t pmm_ram_bytes(const struct kmm *k, uint64_t pa, uint64_t size);

/* --- page-table pages (table.c), for the vmm ----------------------------------- */

/* A zeroed single page for a page table: state PAGETABLE, entry count 0.
 * Returns its physical address or 0. flags as kmm_page_alloc (zone flags
 * ignored). */
uint64_t pmm_table_alloc(struct kmm *k, kmm_gfp_t flags);

/* Returns a table page (entry count 0) to the page allocator. */
void pmm_table_free(struct kmm *k, uint64_t pa);

/* The present-entry count of the table page at pa (its descriptor's count). */
static inline uint32_t *pmm_table_entries(struct kmm_pmm *pm, uint64_t pa)
{
    return &pmm_frame(pm, pa >> KMM_PAGE_SHIFT)->count;
}

/* Why the page at pa is no table page (NULL if it is one), for kmm_check. */
const char *pmm_table_problem(struct kmm *k, uint64_t pa);

/* Whether pa is the start of an allocated single page (what an owned
 * mapping may reference, unless it is a run's first page). Racy by nature:
 * for validation before pmm_page_map_get. */
bool pmm_is_allocated_page(struct kmm *k, uint64_t pa);

/* --- owned mappings' references (buddy.c), for the vmm ----------------------- */

/*
 * pmm_page_map_get - take a reference for an owned mapping of the single
 * page at pa (frame.h: FRAME_MAPPED, the mapcount). Returns true, or false
 * with nothing changed if pa is not an allocated single page now (never
 * allocated, freed meanwhile by a racing caller, a run's first page), or
 * already has FRAME_MAPS_MAX mappings. Logs nothing: the caller reports.
 * Takes the page's zone lock (a leaf). Any context.
 */
bool pmm_page_map_get(struct kmm *k, uint64_t pa);

/*
 * pmm_page_map_put - drop a reference pmm_page_map_get took; the page is
 * freed (to its zone, merging) if no caller and no other mapping holds it.
 * Cannot fail: kmm_page_free never drops a mapping's reference, so the
 * reference is there (a missing one is a broken invariant: panic). Call it
 * only once no CPU can reach the page through the mapping (after the TLB
 * invalidations). Takes the page's zone lock. Any context.
 */
void pmm_page_map_put(struct kmm *k, uint64_t pa);

/* Whether the page at pa holds an owned mapping's reference (kmm_check).
 * Racy by nature. */
bool pmm_page_mapped(struct kmm *k, uint64_t pa);

/* --- integrity (check.c) ---------------------------------------------------------- */

struct kmm_check_result;
void pmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_PMM_PMM_H */
