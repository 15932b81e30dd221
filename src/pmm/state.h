/*
 * state.h - the page allocator's data, as the instance (struct kmm,
 * internal.h) embeds it: zones, per-CPU caches, growth records and the
 * frame database's table (the descriptors are drawn in frame.h). Types
 * only: the functions are in pmm/api.h (for the layers above) and
 * pmm/pmm.h (inside src/pmm/).
 */
#ifndef KMM_PMM_STATE_H
#define KMM_PMM_STATE_H

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
    bool poison; /* page poisoning (poison.c): every page of a free block holds the pattern */
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
    /* Page poisoning (poison.c): odd while it is on; bumped at every switch,
     * under the growth lock, so an allocation that reads one value before
     * and after its request knows every zone poisoned throughout. */
    atomic_uint poison_seq;
    /* Page events (KMM_EVENTS_PAGE, events.c): non-zero while they are
     * recorded; the CPU caches are bypassed meanwhile, as while poisoning. */
    atomic_uint events;
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

#endif /* KMM_PMM_STATE_H */
