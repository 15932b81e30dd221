/*
 * kmm/events.h - the ring of recent allocation events, across layers
 * (SPEC §6): what was allocated and freed, where, how large, by whom and on
 * which CPU, for a debug shell or a report after something went wrong.
 *
 * One ring per instance, KMM_EVENTS_MAX events (the oldest overwritten),
 * switched at run time by source:
 *   KMM_EVENTS_PAGE  the page allocator: every block kmm_page_alloc or
 *       kmm_pages_alloc hands out and every reference kmm_page_free or
 *       kmm_pages_free drops (order and zone), every run of kmm_run_alloc
 *       and kmm_run_free. The layers above allocate through these calls too
 *       (page tables, vmalloc's pages, the heap's slabs and large blocks):
 *       their events name the library's function that called.
 *   KMM_EVENTS_HEAP  the heap: the events kmm_heap_events records (kmm/heap.h:
 *       allocations and frees of caches with KMM_HEAP_DEBUG_EVENTS, reports
 *       of damage), with the cache's name. Switching it on switches the
 *       heap-wide KMM_HEAP_DEBUG_EVENTS mode on (kmm_heap_debug, the other
 *       heap-wide modes kept), and off with it.
 * kmm_heap_events keeps its own ring as before; this one holds both layers
 * in one order.
 *
 * Cost. Off, the page allocator's inline paths (a page from or to this
 * CPU's cache) are unchanged and its full paths test one flag
 * (docs/diagnostics.md gives the instruction counts). On, the per-CPU page
 * caches are bypassed, as while pages are poisoned (kmm/page.h,
 * kmm_page_debug): every single page takes its zone's lock, and each event
 * takes the ring's lock (IRQs off) for a copy of 64 bytes. The heap's cost
 * is its debugging mode's (kmm/heap.h, "Debugging"). The ring itself, 64 KiB
 * from the page allocator, is taken at the first switch and kept until
 * kmm_fini.
 *
 * Callers. Each event names its call's caller as the library logs a misuse:
 * the return address of the public call, or the caller a wrapper passed
 * (kmm_malloc_caller and friends). docs/diagnostics.md says how addr2line
 * turns it into a file and line, hosted and in a kernel.
 */
#ifndef KMM_EVENTS_H
#define KMM_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <kmm/heap.h>
#include <kmm/kmm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sources (kmm_events_switch's flags). */
#define KMM_EVENTS_PAGE  0x1u
#define KMM_EVENTS_HEAP  0x2u
#define KMM_EVENTS_VALID (KMM_EVENTS_PAGE | KMM_EVENTS_HEAP)

/* Events the ring keeps. */
#define KMM_EVENTS_MAX 1024u

/* What an event was. */
enum kmm_event_op {
    KMM_EVENT_PAGE_ALLOC = 1, /* a block of 2^order pages handed out */
    KMM_EVENT_PAGE_FREE,  /* a reference to a block dropped (the block freed if it was the last) */
    KMM_EVENT_RUN_ALLOC,  /* a run of contiguous pages handed out (kmm_run_alloc) */
    KMM_EVENT_RUN_FREE,   /* a run freed (kmm_run_free) */
    KMM_EVENT_HEAP_ALLOC, /* a heap block or object handed out */
    KMM_EVENT_HEAP_FREE,  /* a heap block or object freed */
    KMM_EVENT_HEAP_BAD,   /* the heap found damage or a double free (kmm/heap.h) */
    KMM_EVENT_OPS
};

/* An event's order or zone where it has none. */
#define KMM_EVENT_NONE 0xffu

/* One event. 64 bytes. */
struct kmm_event {
    uint64_t seq;       /* 1 for the first event recorded; one more for each */
    uint64_t addr;      /* page and run events: the physical address; heap: the pointer */
    uint64_t size;      /* bytes: the block's, the run's, or as asked for (heap);
                           KMM_EVENT_HEAP_BAD: the misuse class (enum kmm_misuse) */
    const void *caller; /* the call's caller */
    uint16_t op;        /* enum kmm_event_op */
    uint16_t cpu;       /* the CPU it happened on (kmm_port_cpu_id) */
    uint8_t order;      /* page events: the block's order; KMM_EVENT_NONE otherwise */
    uint8_t zone;       /* page and run events: enum kmm_zone_id; KMM_EVENT_NONE otherwise */
    char cache[KMM_CACHE_NAME_MAX]; /* heap events: the cache's name ("" where the event
                                       knows none); "" for page and run events */
};

/* The ring's figures. */
struct kmm_events_stats {
    unsigned flags;    /* the sources switched on (KMM_EVENTS_*) */
    uint64_t recorded; /* events recorded since the instance began; never decreases */
    uint64_t kept;     /* of those, in the ring now: min(recorded, KMM_EVENTS_MAX) */
};

/*
 * kmm_events_switch - record the sources in flags from now on, and no
 * others (0: none). Returns the flags in force before the call, or, with
 * nothing changed:
 *   KMM_EINVAL  an unknown flag (KMM_MISUSE_BAD_FLAGS, counted under
 *               KMM_LAYER_DIAG and logged with the caller);
 *   KMM_ENOMEM  no memory for the ring (its first switch), or for the
 *               heap's debugging state (kmm_heap_debug's).
 * A call already under way on another CPU when a source comes on may go
 * unrecorded. IRQs on, may block (kmm_heap_debug's rules); one switch at
 * a time (the heap's modes are read, then set: a kmm_heap_debug on another
 * CPU meanwhile may be undone).
 */
int kmm_events_switch(struct kmm *k, unsigned flags);

/*
 * kmm_events - copy the most recent events, at most max, oldest first, into
 * out; returns how many (0 for a NULL out). Events keep their sequence
 * numbers, so a gap between two reads shows what was overwritten. Takes the
 * ring's lock (IRQs off): any context but the port's log hook; O(max).
 */
size_t kmm_events(struct kmm *k, struct kmm_event *out, size_t max);

/* kmm_events_stats - fill *out. Any context; lock-free. */
void kmm_events_stats(struct kmm *k, struct kmm_events_stats *out);

/* "page-alloc", "page-free", "run-alloc", "run-free", "alloc", "free",
 * "BAD"; "?" for a value out of range. */
const char *kmm_event_op_name(unsigned op);

#ifdef __cplusplus
}
#endif

#endif /* KMM_EVENTS_H */
