/*
 * kmm/page.h - the physical page allocator: buddy blocks in zones.
 *
 * Physical memory is handed out in blocks of 2^order pages (order 0 ..
 * KMM_PAGE_MAX_ORDER), naturally aligned: a block of order k starts at a
 * multiple of 4096 << k. Freed blocks merge with their free buddies again.
 *
 * Zones: every page belongs to one zone by its address,
 *     DMA     [0, 16 MiB)      ISA DMA
 *     DMA32   [16 MiB, 4 GiB)  32-bit devices
 *     NORMAL  [4 GiB, ...)     everything else
 * A request may use its highest allowed zone and fall back downwards only:
 * NORMAL -> DMA32 -> DMA (KMM_GFP_DMA32 starts at DMA32, KMM_GFP_DMA takes DMA
 * only). Memory low enough for devices is thus used last.
 *
 * Addresses: the allocator speaks physical addresses. Page 0 is never handed
 * out, so 0 is free to mean "no memory". The direct map (kmm/port.h) gives
 * the virtual address of a page.
 *
 * Per-CPU caches: each CPU keeps a bounded cache of free single pages for
 * each zone of its node. An order-0 allocation or free touches only the
 * current CPU's cache, with interrupts and preemption off and no lock; an
 * allocation uses no atomic instruction, a free one compare-exchange on the
 * page's descriptor, which is what makes two CPUs freeing the same page at
 * the same moment one free and one double free (KMM_ESTATE). A cache
 * refills from its zone, or gives back to it, in batches under the zone
 * lock. A cache holds at most 1/8 of its zone
 * divided among the CPUs (at least four batches, at most 8192 pages).
 * When memory runs short, the allocating CPU empties its own caches at once
 * and raises a flag in every other CPU that holds cached pages; each empties
 * its caches at its next allocator call. A host whose CPUs may stay away
 * from the allocator for long (idle, offline) calls kmm_page_drain_cpu from
 * its IPI, idle or CPU-offline path; kmm_page_drain_pending says when.
 *
 * Context rules:
 *  - Every call here may be made with IRQs off and from an interrupt
 *    handler, provided the allocation flags include KMM_GFP_ATOMIC: such a
 *    request never runs the shrinkers and never waits, and fails instead.
 *  - Without KMM_GFP_ATOMIC an allocation that finds no memory calls the
 *    registered shrinkers (reclaim hooks), with no kmm lock held, before it
 *    fails: call it with IRQs on, from a context where the shrinkers may run.
 *  - An allocation may initialise one deferred 128 MiB section of frame
 *    descriptors (see "memory growth" below): a bound of about 0.1 ms with
 *    IRQs off under the growth lock, taken from the zone-locked path with
 *    IRQs as the caller had them (never from inside a per-CPU cache refill).
 *  - Frees and kmm_page_get never reclaim and are safe in any context.
 *  - Shrinkers (kmm_shrinker_register below) run with no kmm lock held;
 *    kmm_shrinker_unregister may wait for a running one: IRQs on, and never
 *    from inside a shrinker.
 * Locks are taken with IRQs disabled; docs/architecture.md gives the order.
 * Time bounds assume no contention on the zone lock.
 *
 * Misuse (freeing what is not allocated, with the wrong size, or outside
 * managed memory) is rejected with an error value, counted in the misuse
 * table (kmm/misuse.h; kmm_page_stats.misuse[] is its page row), logged once
 * with the caller's address, and leaves every structure as it was.
 * kmm_check() passes afterwards.
 */
#ifndef KMM_PAGE_H
#define KMM_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>
#include <kmm/misuse.h>

/* The largest block: 2^10 pages = 4 MiB. */
#define KMM_PAGE_MAX_ORDER 10
#define KMM_PAGE_ORDERS    (KMM_PAGE_MAX_ORDER + 1)

/* Allocation flags (Linux's GFP in spirit). Zone flags are exclusive. */
typedef unsigned kmm_gfp_t;
#define KMM_GFP_ZERO   0x1u /* fill the block with zeroes before returning it */
#define KMM_GFP_DMA    0x2u /* from zone DMA only */
#define KMM_GFP_DMA32  0x4u /* from DMA32, falling back to DMA */
#define KMM_GFP_ATOMIC 0x8u /* never reclaim or wait: safe with IRQs off, fails sooner */
#define KMM_GFP_VALID  (KMM_GFP_ZERO | KMM_GFP_DMA | KMM_GFP_DMA32 | KMM_GFP_ATOMIC)

enum kmm_zone_id { KMM_ZONE_DMA, KMM_ZONE_DMA32, KMM_ZONE_NORMAL, KMM_ZONE_COUNT };

/* Zone limits (exclusive end addresses). */
#define KMM_ZONE_DMA_END   (UINT64_C(16) << 20)
#define KMM_ZONE_DMA32_END (UINT64_C(4) << 30)

/* The most physical memory a frame number can name: 2^32 pages = 16 TiB.
 * Usable memory above it is left unmanaged (kmm_init logs a warning). */
#define KMM_PAGE_PFN_LIMIT (UINT64_C(1) << 32)

/*
 * kmm_page_alloc - allocate a block of 2^order pages.
 * Returns its physical address (aligned to 4096 << order), or 0 iff no
 * allowed zone has a free block that large, or the request is malformed
 * (order > KMM_PAGE_MAX_ORDER, unknown flags, both zone flags), which is
 * also counted and logged as misuse. The block has reference count 1.
 * With KMM_GFP_ZERO it is zeroed (O(size)); otherwise O(KMM_PAGE_MAX_ORDER).
 */
uint64_t kmm_page_alloc(struct kmm *k, unsigned order, kmm_gfp_t flags);

/*
 * kmm_page_free - drop one reference to the block at pa, allocated with this
 * order; the block goes back to its zone (and merges with free buddies)
 * when the last reference goes. O(KMM_PAGE_MAX_ORDER).
 * The references dropped here are the caller's: kmm_page_alloc's and
 * kmm_page_get's. An owned mapping (kmm/vm.h, KMM_MAP_OWNED; vmalloc) holds
 * a reference of its own, which goes when the page is unmapped and the
 * TLBs are clean, never through this call: a page that only mappings hold
 * cannot be freed under them.
 * Returns KMM_OK, or, with nothing changed, counted in
 * kmm_page_stats.misuse[] by kind and logged once with the caller:
 *   KMM_EINVAL  pa not page aligned (UNALIGNED); order above the maximum
 *               (BAD_ORDER) or not the order the block was allocated with
 *               (WRONG_ORDER); pa inside an allocated block rather than at
 *               its start, or never allocated (NOT_BLOCK); pa a reserved
 *               page (RESERVED);
 *   KMM_ERANGE  pa outside the memory the instance manages (OUTSIDE);
 *   KMM_ESTATE  the block is free already (DOUBLE_FREE), also when it has
 *               merged into a larger free block since (pa inside a free
 *               block); of two CPUs freeing the same last reference at the
 *               same moment, one gets KMM_OK and the other this;
 *   KMM_EBUSY   every reference left belongs to an owned mapping (BUSY):
 *               unmap it instead.
 */
int kmm_page_free(struct kmm *k, uint64_t pa, unsigned order);

/* kmm_page_alloc_caller, kmm_page_free_caller - kmm_page_alloc and
 * kmm_page_free for a wrapper (a compatibility layer): a rejection is logged
 * with caller, the wrapper's own caller, instead of the wrapper. Same fast
 * paths, bounds and contexts. */
uint64_t kmm_page_alloc_caller(struct kmm *k, unsigned order, kmm_gfp_t flags, const void *caller);
int kmm_page_free_caller(struct kmm *k, uint64_t pa, unsigned order, const void *caller);

/*
 * kmm_pages_alloc / kmm_pages_free - kmm_page_alloc and kmm_page_free by
 * page count. count is rounded up to a power of two: 3 pages take an
 * order-2 block, whose fourth page is the caller's too and goes back with
 * the block. The free must give a count that rounds to the block's order
 * (3 or 4 for that block; anything else is KMM_EINVAL, wrong order).
 * count 0 or above 2^KMM_PAGE_MAX_ORDER is malformed: kmm_pages_alloc
 * returns 0 and kmm_pages_free KMM_EINVAL, both counted and logged as
 * misuse (KMM_MISUSE_BAD_ORDER). Otherwise each returns exactly what
 * kmm_page_alloc / kmm_page_free return for that order, in the same
 * contexts and time (KMM_EBUSY included, for a single page only owned
 * mappings hold). kmm_run_alloc (below) takes exactly count pages.
 */
uint64_t kmm_pages_alloc(struct kmm *k, size_t count, kmm_gfp_t flags);
int kmm_pages_free(struct kmm *k, uint64_t pa, size_t count);

/* The order of the smallest block holding count pages; count must be >= 1. */
unsigned kmm_order_for_count(size_t count);

/* The most references callers can hold on one block at a time
 * (kmm_page_get refuses more): 2^31 - 1. */
#define KMM_PAGE_REFS_MAX 0x7fffffffu

/*
 * kmm_page_get - take one more reference to the allocated block at pa, for
 * the caller (who drops it with kmm_page_free); a page that only owned
 * mappings hold may be taken too. Returns KMM_OK, or, with nothing changed,
 * counted and logged: as kmm_page_free for a pa that is not the start of
 * an allocated block (KMM_EINVAL, KMM_ERANGE, KMM_ESTATE), or
 *   KMM_EBUSY   callers hold KMM_PAGE_REFS_MAX references already
 *               (LIMIT): a reference leak, most likely.
 * O(1); takes the block's zone lock. Any context.
 */
int kmm_page_get(struct kmm *k, uint64_t pa);

/*
 * kmm_page_drain_cpu - give every page in the current CPU's caches back to
 * the zones (and clear a pending drain request). Any context; O(cached pages).
 */
void kmm_page_drain_cpu(struct kmm *k);

/* Whether another CPU has asked the current CPU to drain its caches. Any
 * context; O(1). Always true while pages are poisoned (kmm_page_debug). */
bool kmm_page_drain_pending(struct kmm *k);

/* kmm_page_debug's flags, and the byte freed pages hold while poisoned
 * (Linux's PAGE_POISON). */
#define KMM_PAGE_DEBUG_POISON 0x1u
#define KMM_PAGE_POISON_BYTE  0xaa

/*
 * kmm_page_debug - switch the page allocator's debugging at run time:
 * flags 0 (off) or KMM_PAGE_DEBUG_POISON. Returns the flags in force
 * before the call, or KMM_EINVAL (a misuse, counted; nothing changed) for
 * an unknown flag.
 *
 * Poisoning, as xv6 fills freed pages with junk and Linux poisons them:
 * every block that becomes free is filled with KMM_PAGE_POISON_BYTE, and a
 * block kmm_page_alloc, kmm_pages_alloc or kmm_run_alloc hands out is
 * checked for it first. A byte that differs was written after its page was
 * freed: the allocation logs it (KMM_LOG_ERR: the page, the offset, the
 * allocating call's caller; who wrote it is not known) and counts it as
 * KMM_MISUSE_USE_AFTER_FREE in the page row of kmm_misuse_stats, then
 * hands the block out all the same. kmm_check verifies the pattern of
 * every free block (KMM_CHECK_CORRUPT when damaged). Blocks allocated while
 * poisoning was switched are not checked.
 *
 * Switching on fills every free page at once (O(free memory), each zone
 * under its lock with IRQs off). While it is on, the per-CPU page caches
 * are bypassed: each CPU empties them at its next call and every single
 * page then takes its zone's lock, both ways. Off (the default), the only
 * cost is one predictable branch on the paths that take a zone lock or
 * refill a cache; the inline cache paths are unchanged. IRQs on; may take
 * long: not from an interrupt handler.
 */
int kmm_page_debug(struct kmm *k, unsigned flags);

/*
 * kmm_page_drain_offline_cpu - drain the caches of CPU cpu, which must not
 * be running kmm code now or until this returns (it is offline, or parked
 * by the caller). For CPU hot-unplug. Returns KMM_OK, or KMM_EINVAL for a
 * cpu not below the instance's cpu_count (misuse: counted and logged).
 */
int kmm_page_drain_offline_cpu(struct kmm *k, unsigned cpu);

/* Misuse kinds: enum kmm_misuse (kmm/misuse.h) indexes kmm_page_stats.misuse[]. */

/* One zone's figures, summed over NUMA nodes. */
struct kmm_zone_stats {
    uint64_t managed_pages;  /* pages in the zone now; grows as deferred and added memory arrives */
    uint64_t deferred_pages; /* usable pages whose descriptors are not initialised yet */
    uint64_t free_pages;     /* free now, including pages in CPU caches */
    uint64_t pcp_pages;      /* of those, pages in the CPUs' caches */
    uint64_t free_blocks[KMM_PAGE_ORDERS]; /* free blocks per order, like /proc/buddyinfo */
    uint64_t alloc_calls; /* successful allocations here (CPU caches included); never decreases */
    uint64_t free_calls;  /* blocks returned here (CPU caches included); never decreases */
};

/* The page allocator's figures. Pages are 4 KiB. */
struct kmm_page_stats {
    uint64_t total_pages;     /* pages described by the map as RAM of any kind */
    uint64_t usable_pages;    /* pages the map calls usable (before kmm's own) */
    uint64_t metadata_pages;  /* taken by kmm itself: instance and frame database */
    uint64_t managed_pages;   /* in the zones now: usable - metadata - deferred */
    uint64_t deferred_pages;  /* usable, descriptors not initialised yet (kmm_page_init_deferred) */
    uint64_t add_rejected;    /* kmm_page_add_memory calls rejected; never decreases */
    uint64_t free_pages;      /* free now, in every zone */
    uint64_t allocated_pages; /* managed - free */
    uint64_t reserved_bytes[KMM_MEM_TYPE_LIMIT]; /* non-usable memory by type (the reason) */
    uint64_t frame_db_bytes;                     /* the frame database alone (16 bytes per page) */
    uint64_t failed_allocs;            /* allocations that found no memory; never decreases */
    uint64_t misuse[KMM_MISUSE_COUNT]; /* rejected calls by class (the table's page row) */
    struct kmm_zone_stats zones[KMM_ZONE_COUNT];
    /* Reclaim (kmm_shrinker_register; src/pmm/reclaim.c). */
    uint64_t reclaim_calls;   /* times an allocation ran the shrinker list; never decreases */
    uint64_t shrinker_calls;  /* scan calls made; never decreases */
    uint64_t reclaimed_pages; /* pages the shrinkers reported freed; never decreases */
    uint64_t shrinker_misuse; /* rejected register/unregister calls; never decreases */
    uint64_t shrinkers;       /* registered now */
};

/*
 * kmm_page_stats - fill *out with the figures above. Takes each zone lock
 * in turn, then the growth and shrinker locks, one at a time and each with
 * IRQs off: any context, shrinkers included (they run with no kmm lock
 * held), but not from the port's log hook. The figures
 * of different zones may be from slightly different moments; within a zone
 * they agree. Counters marked "never decreases" are read without a lock.
 * O(nodes x zones x (orders + CPUs)).
 */
void kmm_page_stats(struct kmm *k, struct kmm_page_stats *out);

/*
 * kmm_unusable_index - Linux's unusable free space index of a zone for
 * order: the share of its free memory, in thousandths (0..1000), that lies
 * in blocks too small for an order-sized request. 0 when nothing is free.
 */
unsigned kmm_unusable_index(const struct kmm_zone_stats *z, unsigned order);

/* "DMA", "DMA32", "Normal". */
const char *kmm_zone_name(unsigned zone);

/* --- reclaim hooks (shrinkers, src/pmm/reclaim.c) and NUMA figures (numa.c) --- */

/*
 * A shrinker gives memory back when the page allocator runs out: a cache
 * that can drop what it holds (a slab cache's empty slabs, clean cached
 * pages) registers one, and an allocation without KMM_GFP_ATOMIC that finds
 * no memory, after draining the CPU caches, calls every registered shrinker
 * in registration order, then tries again (kmm_page_alloc, kmm_run_alloc).
 *
 * scan(k, ctx, want_pages, flags) frees what it can back to k, aiming at
 * want_pages pages (at least 2^order of the failing request, and at least
 * KMM_SHRINK_BATCH), and returns how many pages it freed (0: nothing to
 * give). It runs on the CPU (thread) whose allocation failed, with no kmm
 * lock held and IRQs as the allocation was called (on); flags are that
 * request's, never with KMM_GFP_ATOMIC. It may free pages and take its own
 * locks. If it allocates, it should pass KMM_GFP_ATOMIC. It must not call
 * kmm_shrinker_unregister (that would wait for itself).
 *
 * Calls of one shrinker never overlap: a reclaim that finds it running (on
 * another CPU, or further up its own call chain, because it allocated
 * without KMM_GFP_ATOMIC) skips it. So scan need not be reentrant, and
 * reclaim nests at most as deep as the list is long.
 *
 * The caller sets scan, ctx and name; `state` belongs to kmm from register
 * until unregister returns (the caller neither reads nor writes it), and the
 * structure must stay valid (and be registered with one instance at a time)
 * until then. The figures it keeps are read through the report.
 */
struct kmm_shrinker_state {
    struct kmm_shrinker *next;
    uint64_t seq;   /* registration number; the list is in ascending order */
    uint64_t calls; /* scan calls made */
    uint64_t freed; /* pages scan reported freed */
    bool linked;    /* on the list */
    bool running;   /* a reclaim is inside scan */
};

struct kmm_shrinker {
    /* The caller's. */
    uint64_t (*scan)(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags);
    void *ctx;
    const char *name; /* shown in the report and log lines; may be NULL */
    /* kmm's, under the instance's shrinker lock: private. */
    struct kmm_shrinker_state state;
};

/* The least a shrinker is asked for: reclaim frees pages in batches, so that
 * a run of single-page allocations does not take the slow path each time. */
#define KMM_SHRINK_BATCH 32

/*
 * kmm_shrinker_register - append s to k's shrinker list. s->scan must be
 * set. Returns KMM_OK, or, with nothing changed, counted in
 * kmm_page_stats.shrinker_misuse and logged once with the caller:
 *   KMM_EINVAL  s or s->scan is NULL;
 *   KMM_ESTATE  s is registered with k already.
 * Any context (takes the shrinker lock, IRQs off); O(registered shrinkers).
 */
int kmm_shrinker_register(struct kmm *k, struct kmm_shrinker *s);

/*
 * kmm_shrinker_unregister - take s off k's list. If a reclaim is inside
 * s->scan, waits (spinning) until it returns; afterwards kmm never touches
 * s again and the caller may free it. A reclaim running meanwhile still
 * calls every other shrinker once. IRQs on, never from inside a shrinker.
 * O(registered shrinkers) plus the wait. Returns KMM_OK, or, with nothing
 * changed, counted and logged as for register:
 *   KMM_EINVAL  s is NULL;
 *   KMM_ENOENT  s is not registered with k.
 */
int kmm_shrinker_unregister(struct kmm *k, struct kmm_shrinker *s);

/*
 * One NUMA node's figures. Allocations are counted by the node whose CPU
 * asked (the allocating CPU's node, kmm_port_node_of_cpu) and the node whose
 * memory served it; the per-CPU caches hold only their node's pages, so
 * every cache hit is local. Across nodes, sum(alloc_remote) ==
 * sum(alloc_lent), and each node's alloc_local + alloc_lent is the sum of
 * its zones' alloc_calls.
 */
struct kmm_node_stats {
    uint64_t managed_pages; /* pages of this node the zones hand out */
    uint64_t free_pages;    /* free now, including pages in CPU caches */
    uint64_t pcp_pages;     /* of those, pages in the caches of this node's CPUs */
    uint64_t cpus;          /* CPUs (below cpu_count) on this node */
    uint64_t alloc_local;  /* blocks of this node's memory allocated by its CPUs; never decreases */
    uint64_t alloc_remote; /* allocations by its CPUs served by another node; never decreases */
    uint64_t alloc_lent;   /* blocks of this node's memory allocated by other nodes' CPUs */
    struct kmm_zone_stats zones[KMM_ZONE_COUNT]; /* this node's part of each zone */
};

/* The number of NUMA nodes the instance uses (1 .. KMM_MAX_NODES). Any context. */
unsigned kmm_page_node_count(const struct kmm *k);

/*
 * kmm_page_node_stats - fill *out with node's figures. Returns KMM_OK, or
 * KMM_ENOENT (not logged: probing is fine) if node is not below
 * kmm_page_node_count. Takes the node's zone locks in turn. IRQs on or off.
 */
int kmm_page_node_stats(struct kmm *k, unsigned node, struct kmm_node_stats *out);

/* --- runs: any number of contiguous pages (src/pmm/run.c) --------------------- */

/*
 * kmm_run_alloc - allocate count physically contiguous pages (any count
 * >= 1, not only a power of two) starting at a multiple of align bytes (a
 * power of two >= 4096; 0 means 4096), with the whole run below limit (an
 * exclusive physical address; 0: no limit): for DMA buffers and 1 GiB huge
 * pages. The run lies in one zone of one node; the zones are tried in
 * kmm_page_alloc's order for the zone flags, and in each the lowest address
 * that fits wins. KMM_GFP_ZERO zeroes the run.
 * Returns its physical address, or 0 iff
 *   - no allowed zone has count free contiguous pages at such an address
 *     (counted in failed_allocs), even after the slow path of
 *     kmm_page_alloc (growth, draining the CPU caches, shrinkers unless
 *     KMM_GFP_ATOMIC); nothing is left allocated; or
 *   - the request is malformed, which is also counted and logged as misuse:
 *     count 0, align not a power of two or below 4096, limit in [1, 4096)
 *     (KMM_MISUSE_BAD_ORDER); unknown flags or both zone flags
 *     (KMM_MISUSE_BAD_FLAGS).
 * The run is handed out as the ordinary allocated blocks of its maximal
 * aligned decomposition (3 pages at a multiple of 4: one block of 2 pages,
 * then one of 1), each with reference count 1; free it with kmm_run_free.
 * Time: O(frames in the address span of each zone tried), walked under
 * that zone's lock (IRQs off meanwhile), plus O(count) with KMM_GFP_ZERO:
 * for rare, large requests, not a hot path. Context: as kmm_page_alloc
 * (any context with KMM_GFP_ATOMIC; without it the shrinkers may run).
 * Never sleeps itself.
 */
uint64_t kmm_run_alloc(struct kmm *k, size_t count, uint64_t align, uint64_t limit,
                       kmm_gfp_t flags);

/*
 * kmm_run_free - free the run of count pages at pa that kmm_run_alloc
 * returned. Returns KMM_OK, or, with nothing changed, counted and logged:
 *   KMM_EINVAL  count 0 (KMM_MISUSE_BAD_ORDER); pa not page aligned
 *               (UNALIGNED); pa a reserved page (RESERVED); pa not the start
 *               of an allocated run: inside one, or a block of
 *               kmm_page_alloc (NOT_BLOCK); count not the run's page count
 *               (WRONG_ORDER); a block of the run freed with kmm_page_free
 *               and reallocated since (NOT_BLOCK);
 *   KMM_ERANGE  pa outside the memory the instance manages (OUTSIDE);
 *   KMM_ESTATE  the run, or a block of it, is free already (DOUBLE_FREE);
 *   KMM_EBUSY   a block of the run holds more than one reference
 *               (kmm_page_get; counted as NOT_BLOCK): drop them first.
 * Time: O(count / 2^KMM_PAGE_MAX_ORDER + KMM_PAGE_MAX_ORDER) blocks, each
 * O(KMM_PAGE_MAX_ORDER) to merge, under one zone lock. Any context.
 */
int kmm_run_free(struct kmm *k, uint64_t pa, size_t count);

/* kmm_run_alloc_caller, kmm_run_free_caller - kmm_run_alloc and
 * kmm_run_free for a wrapper: a rejection is logged with caller, the
 * wrapper's own caller, instead of the wrapper. */
uint64_t kmm_run_alloc_caller(struct kmm *k, size_t count, uint64_t align, uint64_t limit,
                              kmm_gfp_t flags, const void *caller);
int kmm_run_free_caller(struct kmm *k, uint64_t pa, size_t count, const void *caller);

/* --- memory growth: deferred descriptors, added memory (src/pmm/grow.c) ------- */

/*
 * Deferred initialisation: kmm_init writes the frame descriptors of all
 * memory below 4 GiB and of the first 1 GiB of each node's memory above it;
 * the descriptors of the rest are written later, a 128 MiB section at a
 * time: when an allocation finds nothing free (its slow path initialises
 * the next deferred section of the first zone of its zone list that has
 * one), when memory is added to a section, or when the host calls
 * kmm_page_init_deferred. Until then the section's pages are not managed:
 * they count as kmm_page_stats.deferred_pages, a free of one of them is
 * rejected as outside managed memory (KMM_ERANGE), and kmm_check skips them.
 * An allocation that initialises a section (any context, KMM_GFP_ATOMIC
 * included: it neither sleeps nor reclaims) spends about 0.1 ms on it with
 * IRQs off; a kernel that cannot afford that calls kmm_page_init_deferred
 * early.
 */

/*
 * kmm_page_init_deferred - initialise deferred sections, lowest address
 * first, and hand their pages to the zones: up to max_pages pages (0: all),
 * in whole sections, at least one section if any is left (so the count may
 * exceed max_pages by less than one section, 32768 pages). Returns the
 * pages it handed to the zones (0 once nothing is deferred). For a kernel
 * thread or idle loop after boot. IRQs on (each section is written with
 * IRQs off under the growth lock: about 0.1 ms); O(pages initialised).
 */
uint64_t kmm_page_init_deferred(struct kmm *k, uint64_t max_pages);

/*
 * kmm_page_add_memory - add the physical range [base, base + length) to
 * the page allocator, rounded inward to whole pages (page 0 never counts):
 *   type KMM_MEM_BOOTLOADER_RECLAIMABLE or KMM_MEM_ACPI_RECLAIMABLE:
 *       reclaim memory the resolved map has with that type (the kernel no
 *       longer needs the boot loader's data or the ACPI tables); every
 *       page of the rounded range must be of that type in the map;
 *   type KMM_MEM_USABLE: hot-add RAM; the rounded range must lie in a
 *       hole of the map (no page of it described by any range) and below
 *       the section table's reach: the end of the initial map's usable and
 *       reclaimable RAM, or kmm_config.hotplug_limit if that is higher.
 * A section (128 MiB) of the range that has no frame array gets one from
 * the start of the range itself (512 KiB per section, like Linux's
 * memmap_on_memory), accounted as metadata and shown in the map as
 * KMM_MEM_KMM_META. The map (kmm_memory_map) then shows the rest of the
 * range as usable, and its pages are free in their zones when this returns.
 * Returns KMM_OK, or, with nothing changed, counted in
 * kmm_page_stats.add_rejected and logged once with the caller:
 *   KMM_EINVAL  another type; length 0 or no whole page in the range; a
 *               reclaim of memory the map does not have with that type;
 *   KMM_ERANGE  the range ends above KMM_PHYS_LIMIT or the table's reach;
 *   KMM_EBUSY   a hot-add overlapping memory the map describes;
 *   KMM_ENOMEM  the range cannot hold its own descriptors, or the map has
 *               no room for more ranges (KMM_MAX_MAP_RANGES).
 * IRQs on; O(map ranges + sections + pages added): the pages of sections
 * initialised before are handed over under the growth lock (IRQs off),
 * the new sections one at a time as kmm_page_init_deferred does. Do not
 * read kmm_memory_map or call kmm_report while an add may run.
 */
int kmm_page_add_memory(struct kmm *k, uint64_t base, uint64_t length, uint32_t type);

#endif /* KMM_PAGE_H */
