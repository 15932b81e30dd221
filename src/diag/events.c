/*
 * events.c - switching the ring of recent events (kmm/events.h): its
 * memory, the page allocator's source and the heap's.
 *
 * Recording and reading are lib/events.c's; the page allocator's recorder
 * is pmm/events.c, the heap's heap_debug_event (heap/debug_track.c).
 */
#include "internal.h"

#include "pmm/api.h"

#include <kmm/events.h>
#include <kmm/heap.h>
#include <kmm/page.h>

/* The ring's block: KMM_EVENTS_MAX events of 64 bytes. */
#define RING_ORDER 4u
_Static_assert((KMM_PAGE_SIZE << RING_ORDER) == KMM_EVENTS_MAX * sizeof(struct kmm_event),
               "the ring is one block of order RING_ORDER");

/* The ring's memory, made if it is missing: whether it exists. */
static bool ring_get(struct kmm *k)
{
    struct kmm_event_ring *r = &k->events;
    if (atomic_load_explicit(&r->ev, memory_order_acquire))
        return true;
    uint64_t pa = kmm_page_alloc(k, RING_ORDER, KMM_GFP_ZERO);
    if (!pa)
        return false;
    struct kmm_event *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&r->ev, &none, kmm_phys_to_virt(k, pa),
                                                 memory_order_acq_rel, memory_order_acquire))
        KMM_MUST(k->port, kmm_page_free(k, pa, RING_ORDER)); /* another switch made it */
    return true;
}

/* The heap's source: the heap-wide KMM_HEAP_DEBUG_EVENTS mode, the others
 * kept. Returns kmm_heap_debug's failure, or KMM_OK. */
static int heap_events(struct kmm *k, bool on)
{
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    unsigned modes = on ? ds.flags | KMM_HEAP_DEBUG_EVENTS : ds.flags & ~KMM_HEAP_DEBUG_EVENTS;
    if (modes == ds.flags)
        return KMM_OK;
    int kept = kmm_heap_debug(k, modes);
    return kept < 0 ? kept : KMM_OK;
}

int kmm_events_switch(struct kmm *k, unsigned flags)
{
    const void *caller = __builtin_return_address(0);
    if (flags & ~KMM_EVENTS_VALID)
        return kmm_misuse(k, KMM_LAYER_DIAG, KMM_MISUSE_BAD_FLAGS, KMM_EINVAL, caller,
                          "kmm_events_switch(0x%x): unknown flags (valid: 0x%x)", flags,
                          KMM_EVENTS_VALID);
    struct kmm_event_ring *r = &k->events;
    unsigned was = atomic_load_explicit(&r->flags, memory_order_relaxed);
    if (flags && !ring_get(k))
        return KMM_ENOMEM;
    unsigned changed = was ^ flags;
    if (changed & KMM_EVENTS_HEAP) {
        /* The ring's flag before the heap's mode comes on, so that the
         * first heap event is caught; the mode off before the flag. */
        if (flags & KMM_EVENTS_HEAP)
            atomic_fetch_or_explicit(&r->flags, KMM_EVENTS_HEAP, memory_order_release);
        int err = heap_events(k, flags & KMM_EVENTS_HEAP);
        if (err != KMM_OK) {
            atomic_store_explicit(&r->flags, was, memory_order_release);
            return err;
        }
    }
    if (changed & KMM_EVENTS_PAGE)
        pmm_events_switch(k, flags & KMM_EVENTS_PAGE);
    atomic_store_explicit(&r->flags, flags, memory_order_release);
    return (int)was;
}
