/*
 * frame.h - the page frame database: one 16-byte descriptor per 4 KiB frame.
 *
 *    0               4               8       9       10      11      12              16
 *    +---------------+---------------+-------+-------+-------+-------+---------------+
 *    | next          | prev          | state | order | zone  | node  | count         |
 *    +---------------+---------------+-------+-------+-------+-------+---------------+
 *
 *  next, prev  Frame numbers of the neighbours on a list, KMM_PFN_NONE at the
 *              ends. FREE: the buddy free list of (zone, node, order). Later
 *              layers reuse them while they own the frame (PCP: the per-CPU
 *              cache's list; SLAB: the cache's slab lists). ALLOCATED head
 *              of a contiguous run's first block (run.c): next = its own
 *              frame number and prev = the run's last frame, the tag that
 *              lets kmm_run_free reject any count but the right one.
 *  state       enum frame_state below.
 *  order       FREE and ALLOCATED heads: the block's order (0..10).
 *  zone, node  Fixed at init for every RAM frame: enum kmm_zone_id and the
 *              NUMA node. Two buddies merge only if both match.
 *  count       ALLOCATED: the reference count. SLAB: the owning cache's id.
 *              PAGETABLE: the number of present entries in the table.
 *
 * Invariants (kmm_check verifies every one):
 *  - every frame of a block other than its head is INTERIOR; a block of
 *    order k is aligned to 2^k frames and never crosses a section, zone or
 *    node boundary;
 *  - a FREE head is on exactly the free list of its zone, node and order;
 *  - ABSENT (no RAM) and RESERVED (RAM the allocator never hands out) frames
 *    change state only when kmm_page_add_memory makes them usable (grow.c,
 *    under the growth lock and their zone's lock on every node);
 *  - a PCP frame is on exactly one CPU's cache list for its zone.
 *
 * `state` is read by other CPUs without the owner's lock (a buddy merge looks
 * at its neighbour, which a CPU may be moving into its cache), so it is
 * accessed with relaxed atomics where that can happen (frame_state_get/set).
 *
 * Frames are grouped in sections of 2^15 frames (128 MiB). The frames of a
 * section are one array; a section with no usable RAM has none (NULL), so a
 * sparse physical address space costs descriptors only where RAM is. A
 * section whose descriptors are deferred (grow.c) has an array assigned but
 * not written, and is NULL in the table until it is initialised.
 */
#ifndef KMM_PMM_FRAME_H
#define KMM_PMM_FRAME_H

#include <stdint.h>

enum frame_state {
    FRAME_ABSENT = 0, /* not RAM (a hole inside a section): all-zero descriptor */
    FRAME_RESERVED,   /* RAM the allocator never hands out */
    FRAME_FREE,       /* the head of a free block */
    FRAME_INTERIOR,   /* inside a block, not its head */
    FRAME_ALLOCATED,  /* the head of an allocated block */
    FRAME_PCP,        /* a free single page in a CPU's cache (order 0) */
    FRAME_PAGETABLE,  /* a page table (order 0): count = its present entries */
};

struct kmm_frame {
    uint32_t next;
    uint32_t prev;
    uint8_t state;
    uint8_t order;
    uint8_t zone;
    uint8_t node;
    uint32_t count;
};

_Static_assert(sizeof(struct kmm_frame) == 16, "a frame descriptor is 16 bytes");
_Static_assert(_Alignof(struct kmm_frame) == 4, "frame arrays need only 4-byte alignment");

static inline uint8_t frame_state_get(const struct kmm_frame *f)
{
    return __atomic_load_n(&f->state, __ATOMIC_RELAXED);
}

static inline void frame_state_set(struct kmm_frame *f, enum frame_state s)
{
    __atomic_store_n(&f->state, (uint8_t)s, __ATOMIC_RELAXED);
}

/* The end of a list. Frame numbers stop below it (KMM_PAGE_PFN_LIMIT). */
#define KMM_PFN_NONE UINT32_MAX

#define KMM_SECTION_SHIFT  15 /* frames per section: 2^15 = 128 MiB */
#define KMM_SECTION_FRAMES (UINT64_C(1) << KMM_SECTION_SHIFT)
#define KMM_SECTION_MASK   (KMM_SECTION_FRAMES - 1)
#define KMM_SECTION_BYTES  (KMM_SECTION_FRAMES * sizeof(struct kmm_frame))

#endif /* KMM_PMM_FRAME_H */
