/*
 * slab.c - blocks of pages the heap owns: allocated blocks whose head is
 * marked SLAB, with the heap's owner tag in count and the address of its
 * record in next/prev (frame.h), so that the heap finds the cache of any
 * pointer in O(1) (pmm_slab_find, api.h). The state also protects them:
 * kmm_page_free of a heap block is rejected as "not the start of an
 * allocated block", as for page tables (table.c).
 */
#include "internal.h"

#include "pmm/api.h"
#include "pmm/pmm.h"

/*
 * Writes the block's order into each INTERIOR frame of the block of 2^order
 * frames at head, so that pmm_slab_find goes from any of them to the head
 * in one hop (pmm_slab_find_head). The block is ours: no other CPU writes
 * its interior frames until it is freed (a stale kmm_page_free of an
 * interior address is refused without a write). What stays behind after
 * the block is freed is harmless: the hop is believed only if it lands on
 * a SLAB head of that order, and blocks never overlap.
 */
static void mark_interior(struct kmm_frame *head, unsigned order)
{
    for (uint64_t i = 1; i < UINT64_C(1) << order; i++) {
        struct kmm_frame *in = head + i;
        union frame_meta m = frame_meta_get(in);
        frame_set(in, FRAME_INTERIOR, order, m.count);
    }
}

uint64_t pmm_slab_alloc(struct kmm *k, unsigned order, kmm_gfp_t flags, uint32_t owner,
                        void *record)
{
    KMM_ASSERT(k->port, order <= KMM_PAGE_MAX_ORDER && owner != 0);
    kmm_gfp_t keep = flags & (KMM_GFP_ATOMIC | KMM_GFP_ZERO);
    uint64_t rec = (uint64_t)(uintptr_t)record;
    for (;;) {
        uint64_t pa = kmm_page_alloc(k, order, keep);
        if (!pa)
            return 0;
        /* The state by compare-exchange: until it changes, a stale free of
         * pa by a caller (a double free of an address handed out again to
         * us) may claim a single page for a CPU cache without the lock
         * (frame.h); the page is then free, and we take another. The list
         * fields after: a claimer writes `next` once its claim succeeded,
         * so before ours they are not ours to write. */
        struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
        union frame_meta seen = frame_meta_get(f), slab = seen;
        slab.state = FRAME_SLAB;
        slab.count = owner;
        if (seen.state == FRAME_ALLOCATED && seen.count == 1 && seen.order == order &&
            frame_meta_cas(f, &seen, slab)) {
            __atomic_store_n(&f->next, (uint32_t)rec, __ATOMIC_RELAXED);
            __atomic_store_n(&f->prev, (uint32_t)(rec >> 32), __ATOMIC_RELAXED);
            mark_interior(f, order);
            return pa;
        }
    }
}

bool pmm_slab_free(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    /* Claimed first by compare-exchange, its owner cleared (0 is never an
     * owner): of two CPUs freeing the block at once, one wins and the
     * other finds no heap block, as does any lookup from now on. */
    union frame_meta m = frame_meta_get(f), dying = m;
    dying.count = 0;
    if (m.state != FRAME_SLAB || m.count == 0 || !frame_meta_cas(f, &m, dying))
        return false;
    __atomic_store_n(&f->next, KMM_PFN_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&f->prev, KMM_PFN_NONE, __ATOMIC_RELAXED);
    frame_set(f, FRAME_ALLOCATED, m.order, 1);
    /* As for a table page (table.c): a stale free by a caller may claim it
     * first, now that it is an allocated block; it is then free all the
     * same. */
    int err = kmm_page_free(k, pa, m.order);
    KMM_ASSERT(k->port, err == KMM_OK || err == KMM_ESTATE);
    return true;
}

bool pmm_slab_find_head(struct kmm *k, uint64_t pfn, const struct kmm_frame *f,
                        struct pmm_slab_ref *out)
{
    (void)k;
    /* Blocks are aligned to their size, and a heap block's interior frames
     * carry its order (mark_interior): its head is pfn rounded down to
     * 2^order frames, believed only if it is a SLAB head of that order. */
    unsigned o = frame_meta_get(f).order;
    if (o == 0 || o > PMM_SLAB_MAX_ORDER)
        return false;
    uint64_t head = pfn & ~((UINT64_C(1) << o) - 1);
    const struct kmm_frame *h = f - (pfn - head);
    union frame_meta m = frame_meta_get(h);
    if (m.state != FRAME_SLAB || m.order != o)
        return false;
    *out = (struct pmm_slab_ref){head << KMM_PAGE_SHIFT, m.order, m.count, h};
    return true;
}
