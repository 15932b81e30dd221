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

#include "pmm/pmm.h"

uint64_t pmm_table_alloc(struct kmm *k, kmm_gfp_t flags)
{
    kmm_gfp_t keep = flags & KMM_GFP_ATOMIC;
    uint64_t pa = kmm_page_alloc(k, 0, keep | KMM_GFP_ZERO);
    if (!pa)
        return 0;
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    f->count = 0;
    frame_state_set(f, FRAME_PAGETABLE);
    return pa;
}

void pmm_table_free(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    KMM_ASSERT(k->port, frame_state_get(f) == FRAME_PAGETABLE && f->count == 0);
    f->count = 1;
    frame_state_set(f, FRAME_ALLOCATED);
    int err = kmm_page_free(k, pa, 0);
    KMM_ASSERT(k->port, err == KMM_OK);
}

bool pmm_is_allocated_page(struct kmm *k, uint64_t pa)
{
    if (pa & (KMM_PAGE_SIZE - 1))
        return false;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
    return f && frame_state_get(f) == FRAME_ALLOCATED && f->order == 0;
}

const char *pmm_table_problem(struct kmm *k, uint64_t pa)
{
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
    if (!f)
        return "outside managed memory";
    return frame_state_get(f) == FRAME_PAGETABLE ? 0 : "not marked a page table";
}
