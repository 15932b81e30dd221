/*
 * lib/events.h - the ring of recent events (kmm/events.h) as the layers
 * feed it: each layer tests its source's flag and hands an event over.
 * Private to src/.
 *
 * The ring's memory comes from the page allocator at the first switch
 * (diag/events.c) and stays until kmm_fini: once `ev` is set it never
 * changes, so a recorder that saw a source's flag on (set after `ev`,
 * release) finds it. The lock is a leaf: taken alone, with IRQs off, under
 * any other lock of the library (a zone's, a cache's, the heap's debug
 * lock).
 */
#ifndef KMM_LIB_EVENTS_H
#define KMM_LIB_EVENTS_H

#include "lib/lib.h"
#include <stdatomic.h>

#include <kmm/events.h>

struct kmm;

struct kmm_event_ring {
    atomic_uint flags;              /* KMM_EVENTS_* being recorded */
    kmm_lock_t lock;                /* guards seq and the slots */
    _Atomic(struct kmm_event *) ev; /* KMM_EVENTS_MAX slots; NULL before the first switch */
    uint64_t seq; /* events recorded: the last in ev[(seq - 1) % KMM_EVENTS_MAX] */
};

/* Sets up an empty ring with every source off. Init only. */
KMM_INIT void kmm_events_init(struct kmm_event_ring *r);

/* Whether source (KMM_EVENTS_*) is on: one relaxed load. Any context. */
static inline bool kmm_events_on(const struct kmm_event_ring *r, unsigned source)
{
    return atomic_load_explicit(&r->flags, memory_order_relaxed) & source;
}

/*
 * kmm_event_record - append e to k's ring: its seq and cpu are filled here,
 * the other fields are the caller's. Does nothing if the ring does not
 * exist. Any context (the ring's lock, IRQs off); O(1).
 */
void kmm_event_record(struct kmm *k, struct kmm_event *e);

#endif /* KMM_LIB_EVENTS_H */
