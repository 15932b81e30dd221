/*
 * table.c - page-table pages: single pages the vmm owns, marked as tables.
 *
 * A table page is an allocated single page in state PAGETABLE whose
 * descriptor's count holds the number of present entries in the table, so
 * the vmm knows in O(1) when a table becomes empty and can be freed. The
 * state also protects tables: kmm_page_free of a table page is rejected as
 * "not the start of an allocated block".
 */
#include "internal.h"

#include "pmm/pcp.h"
#include "pmm/pmm.h"

uint64_t pmm_table_alloc(struct kmm *k, kmm_gfp_t flags)
{
    kmm_gfp_t keep = flags & KMM_GFP_ATOMIC;
    for (;;) {
        /* This CPU's cache first, where the table an unmap freed waits
         * still zeroed (pmm_table_free_zero): a map that comes and goes at
         * one address takes the same page back with nothing to zero. */
        uint64_t pa = pmm_pcp_alloc_zeroed(k, keep | KMM_GFP_ZERO);
        if (!pa)
            pa = kmm_page_alloc(k, 0, keep | KMM_GFP_ZERO);
        if (!pa)
            return 0;
        /* By compare-exchange: until it is a table, a free of pa may claim
         * the page for a CPU cache without the lock (frame.h). Only a stale
         * free can (a caller's double free of an address handed out again
         * to us): the page is then free, and another one is taken. */
        struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
        union frame_meta seen = frame_meta_get(f), table = seen;
        table.state = FRAME_PAGETABLE;
        table.count = 0;
        if (seen.state == FRAME_ALLOCATED && seen.count == 1 && frame_meta_cas(f, &seen, table))
            return pa;
    }
}

void pmm_table_free(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    KMM_ASSERT(k->port, frame_state_get(f) == FRAME_PAGETABLE && f->count == 0);
    frame_set(f, FRAME_ALLOCATED, 0, 1);
    /* A stale free of pa by a caller (a double free of an address that was
     * handed out again as this table) may claim the page first, now that
     * it is an allocated page: it is then free once all the same. */
    int err = kmm_page_free(k, pa, 0);
    KMM_ASSERT(k->port, err == KMM_OK || err == KMM_ESTATE);
}

void pmm_table_free_zero(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    KMM_ASSERT(k->port, frame_state_get(f) == FRAME_PAGETABLE && f->count == 0);
    if (pmm_pcp_free_zeroed(k, f, pa >> KMM_PAGE_SHIFT))
        return;
    /* Not cached (a drain pending, or a page of another node): the common
     * free judges it, zeroes forgotten. */
    frame_set(f, FRAME_ALLOCATED, 0, 1);
    int err = kmm_page_free(k, pa, 0);
    KMM_ASSERT(k->port, err == KMM_OK || err == KMM_ESTATE);
}

bool pmm_is_allocated_page(struct kmm *k, uint64_t pa)
{
    if (pa & (KMM_PAGE_SIZE - 1))
        return false;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
    if (!f)
        return false;
    /* One atomic read: another CPU may claim or free the page meanwhile.
     * (Whether it is a run's tagged head is for pmm_page_map_get to judge,
     * under the zone lock that protects the tag.) */
    union frame_meta m = frame_meta_get(f);
    return m.state == FRAME_ALLOCATED && m.order == 0;
}

const char *pmm_table_problem(struct kmm *k, uint64_t pa)
{
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
    if (!f)
        return "outside managed memory";
    return frame_state_get(f) == FRAME_PAGETABLE ? 0 : "not marked a page table";
}
