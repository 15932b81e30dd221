/*
 * heap/state.h - the kernel heap's state as the instance (internal.h)
 * embeds it: types only. The caches themselves live in memory the heap
 * takes from the page allocator (heap.h draws them).
 */
#ifndef KMM_HEAP_STATE_H
#define KMM_HEAP_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/port.h>

#include "heap/debug_state.h"

/* Size classes: 16 .. 128 in steps of 16, then eight per power of two up
 * to KMM_HEAP_SLAB_MAX (heap/class.c). */
#define HEAP_CLASSES    KMM_HEAP_CLASSES
/* kmm_malloc's tables cover every size a class serves: one entry per 16
 * bytes (every class is a multiple of 16, so rounding a size up to 16
 * never crosses a class). */
#define HEAP_SMALL_MAX  KMM_HEAP_SLAB_MAX
/* The heap's own caches take the last two ids, so that one comparison
 * tells a caller's cache from them and from whole-page blocks (heap.h,
 * heap_find_in). */
#define HEAP_ID_RECORDS (KMM_HEAP_CACHES - 2u)
#define HEAP_ID_MAGS    (KMM_HEAP_CACHES - 1u)

struct kmm_cache;

/*
 * The heap of an instance.
 * Invariants (kmm_check, heap/check.c):
 *   - caches[id] is the live cache whose id is id, or NULL; ids 1 ..
 *     HEAP_CLASSES are the size classes, HEAP_ID_RECORDS the slab records,
 *     HEAP_ID_MAGS the magazines, the ids between them object caches;
 *   - held is the bytes of every slab, large block and cache structure
 *     (with its CPU stacks) the heap holds, and
 *     peak >= held.
 * lock (order 4 in docs/architecture.md, after a cache's lock is never
 * taken under it) protects creating and destroying caches.
 */
struct kmm_heap {
    bool ready;                                   /* kmm_heap_setup ran */
    uint8_t small_class[HEAP_SMALL_MAX / 16 + 1]; /* (size + 15) / 16 -> class index */
    struct kmm_cache *classes[HEAP_CLASSES];
    /* (size + 15) / 16 -> its class's cache once made: kmm_malloc's common
     * case in one load (classes[small_class[i]] takes two). */
    struct kmm_cache *small[HEAP_SMALL_MAX / 16 + 1];
    struct kmm_cache *records; /* the slab records' own cache */
    struct kmm_cache *mags;    /* the depots' magazines */
    struct kmm_cache *caches[KMM_HEAP_CACHES];
    atomic_uint colour; /* counts the caches made: the next one's colour (cache.c) */
    /* The page the size classes' structures share (cache.c, pack_take),
     * under lock: filled from pack_start to its end, then from 0 to
     * pack_start; pack_next is the next free byte, pack_end where the part
     * being filled ends. */
    uint64_t pack_pa;
    uint64_t pack_start, pack_next, pack_end;
    kmm_lock_t lock;
    atomic_ulong held, peak, limit;
    atomic_ulong large_blocks, large_bytes, large_allocs, large_frees, large_alloc_bytes,
        large_free_bytes;
    atomic_ulong failed;
    /* How many larger classes lend to a class with no free object
     * (kmm_heap_set_lend), and the most it ever was: a sized free accepts
     * the sizes of as many classes below a block's (kmalloc.c). */
    atomic_uint lend, lend_seen;
    /* The bytes of the objects in every cache's depot (the sum of their
     * depot_objs * size): at most HEAP_DEPOT_TOTAL (heap/slab.c). */
    atomic_ulong depot_bytes;
    atomic_ulong retired_allocs, retired_frees, retired_alloc_bytes, retired_free_bytes;
    /* Walks of caches[] in progress, by the epoch they began in (heap/cache.c,
     * heap_walk_begin): a destroyed cache's memory waits for them. */
    atomic_uint walk_epoch;
    atomic_ulong walkers[2];
    uint64_t secret;          /* mixed into each cache's secret */
    const void *vmalloc_site; /* the call site of the heap's vmalloc'd blocks (kmalloc.c) */
    struct kmm_shrinker shrinker;
    /* drain[cpu]: another CPU's kmm_heap_shrink asks cpu to empty its
     * stacks (heap_drain_asked). */
    atomic_uchar drain[KMM_MAX_CPUS];
    struct heap_debug debug; /* the debugging modes (heap/debug.h) */
};

#endif /* KMM_HEAP_STATE_H */
