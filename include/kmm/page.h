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
 * current CPU's cache, with interrupts and preemption off and no lock (no
 * atomic instruction); a cache refills from its zone, or gives back to it,
 * in batches under the zone lock. A cache holds at most 1/8 of its zone
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
 *  - Frees and kmm_page_get never reclaim and are safe in any context.
 * Locks are taken with IRQs disabled; docs/architecture.md gives the order.
 * Time bounds assume no contention on the zone lock.
 *
 * Misuse (freeing what is not allocated, with the wrong size, or outside
 * managed memory) is rejected with an error value, counted in
 * kmm_page_stats.misuse[], logged once with the caller's address, and leaves
 * every structure as it was. kmm_check() passes afterwards.
 */
#ifndef KMM_PAGE_H
#define KMM_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>

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
 * Returns KMM_OK, or, with nothing changed:
 *   KMM_EINVAL  pa not page aligned; order above the maximum or not the
 *               order the block was allocated with; pa inside a block
 *               rather than at its start; pa a reserved page;
 *   KMM_ERANGE  pa outside the memory the instance manages;
 *   KMM_ESTATE  the block is free already (double free).
 */
int kmm_page_free(struct kmm *k, uint64_t pa, unsigned order);

/*
 * kmm_pages_alloc / kmm_pages_free - the same by page count: count is
 * rounded up to a power of two (so 3 pages take an order-2 block) and the
 * free must give the same count. count 0 or above 2^KMM_PAGE_MAX_ORDER is
 * malformed (0 returned / KMM_EINVAL).
 */
uint64_t kmm_pages_alloc(struct kmm *k, size_t count, kmm_gfp_t flags);
int kmm_pages_free(struct kmm *k, uint64_t pa, size_t count);

/* The order of the smallest block holding count pages; count must be >= 1. */
unsigned kmm_order_for_count(size_t count);

/*
 * kmm_page_get - take one more reference to the allocated block at pa (as a
 * mapping that shares the frame does). Returns KMM_OK, or as kmm_page_free
 * for a pa that is not the start of an allocated block.
 */
int kmm_page_get(struct kmm *k, uint64_t pa);

/*
 * kmm_page_drain_cpu - give every page in the current CPU's caches back to
 * the zones (and clear a pending drain request). Any context; O(cached pages).
 */
void kmm_page_drain_cpu(struct kmm *k);

/* Whether another CPU has asked the current CPU to drain its caches. Any
 * context; O(1). */
bool kmm_page_drain_pending(struct kmm *k);

/*
 * kmm_page_drain_offline_cpu - drain the caches of CPU cpu, which must not
 * be running kmm code now or until this returns (it is offline, or parked
 * by the caller). For CPU hot-unplug. Returns KMM_OK, or KMM_EINVAL for a
 * cpu not below the instance's cpu_count.
 */
int kmm_page_drain_offline_cpu(struct kmm *k, unsigned cpu);

/* Misuse kinds, the index of kmm_page_stats.misuse[]. */
enum kmm_page_misuse {
    KMM_MISUSE_BAD_ORDER,   /* order above the maximum, or count 0 / too large */
    KMM_MISUSE_BAD_FLAGS,   /* unknown flags or two zone flags */
    KMM_MISUSE_UNALIGNED,   /* address not page aligned */
    KMM_MISUSE_OUTSIDE,     /* address outside managed memory */
    KMM_MISUSE_RESERVED,    /* a reserved page (firmware, kernel, kmm metadata) */
    KMM_MISUSE_DOUBLE_FREE, /* the block is already free */
    KMM_MISUSE_NOT_BLOCK,   /* inside a block, not at its start (or never allocated) */
    KMM_MISUSE_WRONG_ORDER, /* freed with another size than allocated */
    KMM_MISUSE_COUNT
};

/* One zone's figures, summed over NUMA nodes. */
struct kmm_zone_stats {
    uint64_t managed_pages;                /* pages the zone hands out; fixed after init */
    uint64_t free_pages;                   /* free now, including pages in CPU caches */
    uint64_t pcp_pages;                    /* of those, pages in the CPUs' caches */
    uint64_t free_blocks[KMM_PAGE_ORDERS]; /* free blocks per order, like /proc/buddyinfo */
    uint64_t alloc_calls; /* successful allocations here (CPU caches included); never decreases */
    uint64_t free_calls;  /* blocks returned here (CPU caches included); never decreases */
};

/* The page allocator's figures. Pages are 4 KiB. */
struct kmm_page_stats {
    uint64_t total_pages;     /* pages described by the map as RAM of any kind */
    uint64_t usable_pages;    /* pages the map calls usable (before kmm's own) */
    uint64_t metadata_pages;  /* taken by kmm itself: instance and frame database */
    uint64_t managed_pages;   /* handed to the buddy allocator: usable - metadata */
    uint64_t free_pages;      /* free now, in every zone */
    uint64_t allocated_pages; /* managed - free */
    uint64_t reserved_bytes[KMM_MEM_TYPE_LIMIT]; /* non-usable memory by type (the reason) */
    uint64_t frame_db_bytes;                     /* the frame database alone (16 bytes per page) */
    uint64_t failed_allocs;            /* allocations that found no memory; never decreases */
    uint64_t misuse[KMM_MISUSE_COUNT]; /* rejected calls by kind; never decreases */
    struct kmm_zone_stats zones[KMM_ZONE_COUNT];
};

/* kmm_page_stats - fill *out. Takes each zone lock in turn; the figures of
 * different zones may be from slightly different moments. */
void kmm_page_stats(struct kmm *k, struct kmm_page_stats *out);

/*
 * kmm_unusable_index - Linux's unusable free space index of a zone for
 * order: the share of its free memory, in thousandths (0..1000), that lies
 * in blocks too small for an order-sized request. 0 when nothing is free.
 */
unsigned kmm_unusable_index(const struct kmm_zone_stats *z, unsigned order);

/* "DMA", "DMA32", "Normal". */
const char *kmm_zone_name(unsigned zone);

#endif /* KMM_PAGE_H */
