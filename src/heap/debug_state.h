/*
 * heap/debug_state.h - the debugging modes' state (kmm/heap.h, "Debugging")
 * as the heap (struct kmm_heap) and each cache (struct kmm_cache) embed it:
 * types only. The functions are in heap/debug.h, the code in debug*.c.
 */
#ifndef KMM_HEAP_DEBUG_STATE_H
#define KMM_HEAP_DEBUG_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <kmm/port.h>

/*
 * One cache's debugging. `flags` (the modes in force, with the internal
 * bits of heap/debug.h) is read without a lock by the paths that route an
 * allocation or free to debug.c, and written under the cache's lock by the
 * switches (which the heap's switch lock serialises); the rest is written
 * by the switches alone, except `live_*` and `live`, under the cache's
 * lock, and the atomic counters.
 */
struct heap_cache_debug {
    uint32_t flags;     /* in force: KMM_HEAP_DEBUG_* and HEAP_DBG_* (debug.h) */
    uint32_t own;       /* the cache's own modes (kmm_cache_debug, creation) */
    uint32_t align;     /* the objects' alignment (for the layout, guard pages) */
    uint32_t left;      /* debug layout: bytes before the object (the left red zone) */
    uint16_t limit;     /* the CPU stack bound while no mode is on, restored after */
    uint32_t depot_max; /* the depot's bound, likewise */
    uint32_t tail;      /* debug layout: offset of the trailer in the slot; 0: no layout */
    /* The plain layout, restored when the debug layout goes. */
    uint32_t plain_size, plain_fp_off;
    uint8_t plain_order;
    uintptr_t live_head, live_tail; /* TRACK: live slots, oldest first (the trailers link them) */
    uint64_t live;                  /* slots on that list */
    atomic_ulong quarantined;       /* of c's objects, in the heap's quarantine */
    atomic_ulong guarded;           /* of c's objects, live on guard pages */
};

struct heap_debug_mem; /* the rings and the guard slots (debug.h) */

/*
 * The heap's debugging. `lock` is a leaf (nothing is taken under it) that
 * guards the event ring, the quarantine and the guard slots. `switching`
 * serialises the switches (kmm_heap_debug, kmm_cache_debug,
 * kmm_heap_guard_sample): a spin flag held with IRQs on across page
 * allocation and cache locks, taken before any of them.
 */
struct heap_debug {
    kmm_lock_t lock;
    atomic_bool switching;
    atomic_uint flags;        /* the heap-wide modes (kmm_heap_debug) */
    atomic_uint guard_every;  /* kmm_heap_guard_sample's N; 0: off */
    atomic_ulong guard_count; /* allocations the sampler has seen */
    atomic_ulong generation;  /* marks made (kmm_heap_mark); 0 at first */
    atomic_ulong overruns, use_after_free;
    /* kmm_malloc's sizes from this one up leave its plain path (kmalloc.c's
     * alloc_checked): KMM_HEAP_SLAB_MAX + 1, or 0 while a size class is
     * being debugged, so that the test costs the plain path nothing. */
    uint64_t plain_end;
    struct heap_debug_mem *mem; /* made by the first switch; published with release */
};

#endif /* KMM_HEAP_DEBUG_STATE_H */
