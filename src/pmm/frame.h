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
 *              cache's list, `next` only). SLAB head: the heap's record of
 *              the block (its address, low half in next, high in prev).
 *              ALLOCATED head of a contiguous run's first block (run.c):
 *              next = its own frame number and prev = the run's last frame,
 *              the tag that lets kmm_run_free reject any count but the right
 *              one. ALLOCATED single page with FRAME_MAPPED in count: prev =
 *              the number of owned mappings holding it (its mapcount, >= 1;
 *              meaningless while FRAME_MAPPED is clear). A run's tagged head
 *              is never mapped owned, so the two never meet.
 *  state       enum frame_state below.
 *  order       FREE and ALLOCATED heads: the block's order (0..10).
 *  zone, node  Fixed at init for every RAM frame: enum kmm_zone_id and the
 *              NUMA node. Two buddies merge only if both match.
 *  count       ALLOCATED: the references callers hold (kmm_page_alloc's and
 *              kmm_page_get's; at most FRAME_REFS_MAX), plus FRAME_MAPPED
 *              while owned mappings hold it too. FREE, PCP: 0. SLAB: the
 *              heap's owner tag (a cache's id, or the large-block tag;
 *              never 0). PAGETABLE: the number of present entries.
 *
 *        count (ALLOCATED)   31  30                                0
 *                           +---+-----------------------------------+
 *                           | M | references callers hold           |
 *                           +---+-----------------------------------+
 *                            M = FRAME_MAPPED: owned mappings hold it too,
 *                                as many as prev says
 *
 *              A block is freed when count reaches 0: no caller and no
 *              mapping holds it. kmm_page_free drops a caller's reference
 *              only, so a frame that only mappings hold cannot be freed
 *              under them (KMM_MISUSE_BUSY); their references go with
 *              the mappings (pmm_page_map_get/put, for the vmm).
 *
 * Invariants (kmm_check verifies every one):
 *  - every frame of a block other than its head is INTERIOR; a block of
 *    order k is aligned to 2^k frames and never crosses a section, zone or
 *    node boundary;
 *  - a FREE head is on exactly the free list of its zone, node and order;
 *  - ABSENT (no RAM) and RESERVED (RAM the allocator never hands out) frames
 *    change state only when kmm_page_add_memory makes them usable (grow.c,
 *    under the growth lock and their zone's lock on every node);
 *  - a PCP frame is on exactly one CPU's cache list for its zone;
 *  - an ALLOCATED head has a reference (count != 0): a caller's or a
 *    mapping's. One with FRAME_MAPPED is a single page, not a run's tagged
 *    head, with a mapcount of at least 1; each owned leaf of a page table
 *    names such a frame.
 *
 * Concurrency. A CPU frees a single page to its cache without a lock
 * (pcp.h), so the second half of the descriptor (state, order, zone, node,
 * count: `meta`) is one 8-byte word that such a free claims with one
 * compare-exchange, from "ALLOCATED, order 0, this node, one reference"
 * straight to "PCP, no reference". Of two CPUs freeing the same page at
 * once exactly one wins; the other finds the word changed and goes to the
 * locked path, which judges a double free. Hence:
 *  - every write of a field of `meta` that a CPU without the zone lock may
 *    read is atomic: frame_state_set, frame_set, or a compare-exchange;
 *  - a change of count that must not be lost against a claim (a get, a
 *    locked free, a mapping's reference) is a compare-exchange on the word,
 *    made under the zone lock; the only writers without that lock are a
 *    claim and a CPU taking a PCP page off its own cache, which no other
 *    CPU writes. A frame with FRAME_MAPPED cannot be claimed, so its
 *    mapcount (prev) changes under the zone lock alone;
 *  - `next` of an ALLOCATED frame is written by a claiming CPU, after its
 *    claim, with a relaxed store, and read the same way by the locked paths
 *    that look for a run's tag.
 *
 * Frames are grouped in sections of 2^15 frames (128 MiB). The frames of a
 * section are one array; a section with no usable RAM has none (NULL), so a
 * sparse physical address space costs descriptors only where RAM is. A
 * section whose descriptors are deferred (grow.c) has an array assigned but
 * not written, and is NULL in the table until it is initialised.
 */
#ifndef KMM_PMM_FRAME_H
#define KMM_PMM_FRAME_H

#include <kmm/page.h>

#include <stdbool.h>
#include <stdint.h>

enum frame_state {
    FRAME_ABSENT = 0, /* not RAM (a hole inside a section): all-zero descriptor */
    FRAME_RESERVED,   /* RAM the allocator never hands out */
    FRAME_FREE,       /* the head of a free block */
    FRAME_INTERIOR,   /* inside a block, not its head (a heap block's carry its order) */
    FRAME_ALLOCATED,  /* the head of an allocated block */
    FRAME_PCP,        /* a free single page in a CPU's cache (order 0) */
    FRAME_PAGETABLE,  /* a page table (order 0): count = its present entries */
    FRAME_SLAB,       /* the head of a block the heap owns: count = owner, next/prev = record */
};

struct kmm_frame {
    uint32_t next;
    uint32_t prev;
    union {
        struct {
            uint8_t state;
            uint8_t order;
            uint8_t zone;
            uint8_t node;
            uint32_t count;
        };
        uint64_t meta; /* the five fields above as one word, for atomic claims */
    };
};

_Static_assert(sizeof(struct kmm_frame) == 16, "a frame descriptor is 16 bytes");
_Static_assert(_Alignof(struct kmm_frame) == 8, "frame arrays are 8-byte aligned (meta)");

/* count of an ALLOCATED frame: owned mappings hold it too (prev counts them). */
#define FRAME_MAPPED   (UINT32_C(1) << 31)
/* The most references callers can hold on a frame (kmm_page_get refuses more). */
#define FRAME_REFS_MAX (FRAME_MAPPED - 1)
_Static_assert(FRAME_REFS_MAX == KMM_PAGE_REFS_MAX, "the limit kmm/page.h promises");
/* The most owned mappings of one frame (pmm_page_map_get refuses more). */
#define FRAME_MAPS_MAX (UINT32_MAX - 1)

/* The word `meta` taken apart: a value to inspect or build, never shared. */
union frame_meta {
    struct {
        uint8_t state;
        uint8_t order;
        uint8_t zone;
        uint8_t node;
        uint32_t count;
    };
    uint64_t word;
};

_Static_assert(sizeof(union frame_meta) == 8, "meta is one word");

static inline uint8_t frame_state_get(const struct kmm_frame *f)
{
    return __atomic_load_n(&f->state, __ATOMIC_RELAXED);
}

static inline void frame_state_set(struct kmm_frame *f, enum frame_state s)
{
    __atomic_store_n(&f->state, (uint8_t)s, __ATOMIC_RELAXED);
}

static inline union frame_meta frame_meta_get(const struct kmm_frame *f)
{
    return (union frame_meta){.word = __atomic_load_n(&f->meta, __ATOMIC_RELAXED)};
}

/* Replaces f's meta with want if it still equals seen; returns whether it
 * did. */
static inline bool frame_meta_replace(struct kmm_frame *f, union frame_meta seen,
                                      union frame_meta want)
{
    uint64_t expected = seen.word; /* stays in a register: the value on failure is not needed */
    return __atomic_compare_exchange_n(&f->meta, &expected, want.word, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

/* As frame_meta_replace, and on failure loads the current value into *seen
 * (for a retry loop). */
static inline bool frame_meta_cas(struct kmm_frame *f, union frame_meta *seen,
                                  union frame_meta want)
{
    return __atomic_compare_exchange_n(&f->meta, &seen->word, want.word, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

/* Sets state, order and count in one store, keeping zone and node. Only for
 * a writer no other CPU can race: the frame's zone lock held and the frame
 * not claimable (not ALLOCATED with one reference), or its CPU cache's owner. */
static inline void frame_set(struct kmm_frame *f, enum frame_state s, unsigned order,
                             uint32_t count)
{
    union frame_meta m = frame_meta_get(f);
    m.state = (uint8_t)s;
    m.order = (uint8_t)order;
    m.count = count;
    __atomic_store_n(&f->meta, m.word, __ATOMIC_RELAXED);
}

/* The end of a list. Frame numbers stop below it (KMM_PAGE_PFN_LIMIT). */
#define KMM_PFN_NONE UINT32_MAX

#define KMM_SECTION_SHIFT  15 /* frames per section: 2^15 = 128 MiB */
#define KMM_SECTION_FRAMES (UINT64_C(1) << KMM_SECTION_SHIFT)
#define KMM_SECTION_MASK   (KMM_SECTION_FRAMES - 1)
#define KMM_SECTION_BYTES  (KMM_SECTION_FRAMES * sizeof(struct kmm_frame))

#endif /* KMM_PMM_FRAME_H */
