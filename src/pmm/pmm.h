/*
 * pmm.h - the page allocator's private interface: what the files of
 * src/pmm/ call each other through. Nothing outside src/pmm/ includes it
 * (diag may: it reads every layer); the layers above use pmm/api.h, and
 * the instance embeds the types of pmm/state.h.
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

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pmm/api.h"
#include "pmm/frame.h"
#include "pmm/state.h"

/* The zone of a RAM frame. */
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

/* --- init (frame.c; pmm_plan and pmm_setup are in pmm/api.h) ------------------ */

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
/* pmm_free_block_locked's merge and push alone (poison.c fills first). */
void pmm_merge_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);

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
 * never does). With KMM_GFP_ZERO in flags, PMM_PCP_ZEROED is set in the
 * answer if the page is known to hold zeros (pmm_pcp_free_zeroed). */
uint64_t pmm_pcp_alloc(struct kmm *k, kmm_gfp_t flags);

/* Set in pmm_pcp_alloc's answer (a page address: bit 0 is free) when
 * flags ask for KMM_GFP_ZERO and the page is known to hold zeros already. */
#define PMM_PCP_ZEROED UINT64_C(1)

/* Caches the emptied page table f (at pfn: state PAGETABLE, every entry
 * clear; pmm_table_free_zero) on this CPU, marked as holding zeros (its
 * count PCP_ZEROED, pcp.h) until it leaves the cache; pmm_pcp_alloc and
 * pmm_pcp_alloc_fast say so (PMM_PCP_ZEROED) when they hand it out.
 * Returns whether it cached the page (nothing changed otherwise: a drain
 * pending, or a page of another node); trims the cache if that put it
 * over its bound. */
bool pmm_pcp_free_zeroed(struct kmm *k, struct kmm_frame *f, uint64_t pfn);

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

/* Fills the reclaim fields of *out (kmm_page_stats). */
void pmm_reclaim_stats(struct kmm_pmm *pm, struct kmm_page_stats *out);

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

/* --- page poisoning (poison.c) ----------------------------------------------------- */

/* Fills the 2^order pages at pfn with KMM_PAGE_POISON_BYTE. */
void pmm_poison_fill(struct kmm_pmm *pm, uint64_t pfn, unsigned order);

/* pmm_free_block_locked in a poisoning zone: fills, then merges. */
void pmm_poison_free_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order);

/* Whether poisoning is on: the CPU caches are bypassed meanwhile. */
static inline bool pmm_poisoning(struct kmm_pmm *pm)
{
    return atomic_load_explicit(&pm->poison_seq, memory_order_relaxed) & 1;
}

/* Whether the CPU caches are bypassed: while pages are poisoned (every
 * free block must hold the pattern) or page events are recorded (every
 * call must reach the full paths, events.c). */
static inline bool pmm_pcp_bypassed(struct kmm_pmm *pm)
{
    return pmm_poisoning(pm) || atomic_load_explicit(&pm->events, memory_order_relaxed);
}

/* --- page events (events.c) ------------------------------------------------------ */

/* The one test the full paths make: whether page events are recorded. */
static inline bool pmm_events_on(struct kmm_pmm *pm)
{
    return __builtin_expect(atomic_load_explicit(&pm->events, memory_order_relaxed) != 0, 0);
}

/* Records a page or run event (enum kmm_event_op) of the pages at pa: a
 * block of that order, or a run of `pages` pages (order KMM_EVENT_NONE).
 * Out of line and cold: called only when pmm_events_on said so. */
void pmm_event(struct kmm *k, unsigned op, uint64_t pa, unsigned order, uint64_t pages,
               const void *caller);

/* An allocation's snapshot of the poisoning state, taken before its
 * request; pmm_poison_verify checks the block it got if poisoning was on
 * throughout, and reports a damaged pattern (a use after free) against fn
 * and caller. */
static inline unsigned pmm_poison_begin(struct kmm_pmm *pm)
{
    return atomic_load_explicit(&pm->poison_seq, memory_order_acquire);
}

void pmm_poison_verify_slow(struct kmm *k, unsigned seq, uint64_t pa, uint64_t pages,
                            const char *fn, const void *caller);
static inline void pmm_poison_verify(struct kmm *k, unsigned seq, uint64_t pa, uint64_t pages,
                                     const char *fn, const void *caller)
{
    if (__builtin_expect(seq & 1, 0))
        pmm_poison_verify_slow(k, seq, pa, pages, fn, caller);
}

/* kmm_check's part: every free block of a poisoning zone holds the
 * pattern. Every zone lock held. */
void pmm_poison_check(struct kmm *k, struct kmm_check_result *r);

/* --- misuse (buddy.c) ----------------------------------------------------------- */

/* A rejected call: counts it, logs one line naming the call, the address,
 * the order and the caller, and returns the error value for the kind.
 * actual >= 0 is the order the block really has (KMM_MISUSE_WRONG_ORDER). */
int pmm_misuse(struct kmm *k, enum kmm_misuse kind, const char *fn, uint64_t pa, unsigned order,
               int actual, const void *caller);

#endif /* KMM_PMM_PMM_H */
