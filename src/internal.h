/*
 * internal.h - the instance structure and helpers shared by every layer.
 * Private to src/: nothing here is part of the public interface.
 */
#ifndef KMM_INTERNAL_H
#define KMM_INTERNAL_H

#include <kmm/kmm.h>
#include <kmm/port.h>

#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include "lib/events.h"
#include "lib/lib.h"
#include "lib/misuse.h"
#include "heap/state.h"
#include "pmm/state.h"
#include "vmm/state.h"

/* "kmm-inst": a live instance starts with this; kmm_fini() clears it. */
#define KMM_INSTANCE_CANARY UINT64_C(0x6b6d6d2d696e7374)

/* Room in the instance for its map (kmm/memmap.h says why this much). */
#define KMM_MAP_CAP ((size_t)KMM_MAX_MAP_RANGES)

/* Where the instance is placed: never below this physical address, so that
 * low memory stays free for real-mode trampolines and legacy DMA. */
#define KMM_META_MIN_ADDR (UINT64_C(1) << 20)

/*
 * The instance. Lives in usable memory it manages (kmm_init carves it out).
 *
 * Invariants (kmm_report and the tests rely on them):
 *   - canary == KMM_INSTANCE_CANARY while the instance is alive;
 *   - map[0 .. map_count) is sorted, disjoint and merged (adjacent ranges
 *     of one type are one range, except KMM_MEM_KMM_META ranges: each is one
 *     block); exactly one range is [meta_base, meta_base + meta_size), of type
 *     KMM_MEM_KMM_META; the others of that type hold the frame arrays of
 *     added memory (src/pmm/grow.c). After init the map changes only under
 *     the growth lock (kmm_page_add_memory);
 *   - totals is kmm_memmap_totals() of that map;
 *   - pmm's invariants (src/pmm/state.h, src/pmm/frame.h).
 */
struct kmm {
    uint64_t canary;
    struct kmm_port *port;
    uintptr_t direct_map; /* kmm_port_direct_map(), read once */
    unsigned cpu_count;
    uint64_t meta_base; /* physical address of this structure */
    uint64_t meta_size; /* bytes reserved for it, page multiple */
    size_t map_count;
    struct kmm_region map[KMM_MAP_CAP];
    /* The range pmm_ram_bytes found last: a guess it checks before it
     * believes (pmm/map.c), written by any CPU with relaxed stores. */
    size_t map_hint;
    struct kmm_memmap_totals totals;
    struct kmm_pmm pmm;
    struct kmm_vm vm;
    struct kmm_kva kva;             /* kernel virtual areas (src/vmm/kva.h) */
    struct kmm_heap heap;           /* the kernel heap (src/heap/heap.h) */
    struct kmm_misuse_table misuse; /* rejected calls by layer and class (lib/misuse.h) */
    struct kmm_event_ring events;   /* recent events across layers (lib/events.h) */
};

/* The direct-map address of physical address pa. */
static inline void *kmm_phys_to_virt(const struct kmm *k, uint64_t pa)
{
    return (void *)(k->direct_map + (uintptr_t)pa);
}

/* Input of the map resolver: the firmware list and the host's reservations,
 * read as one list. */
struct kmm_memmap_input {
    const struct kmm_region *a;
    size_t na;
    const struct kmm_region *b;
    size_t nb;
};

/*
 * kmm_memmap_next - the resolver as an iterator. *cursor starts at 0; each
 * call stores the next resolved range in *out and returns true, or returns
 * false at the end. The input must be valid (kmm_memmap_validate).
 */
bool kmm_memmap_next(const struct kmm_memmap_input *in, uint64_t *cursor, struct kmm_region *out);

#endif /* KMM_INTERNAL_H */
