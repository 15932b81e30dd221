/*
 * tlb.c - the TLB gather: invalidations and releases done together.
 *
 * An operation that removes or weakens mappings records, in a gather, each
 * page whose translation must go and each frame or table page it releases.
 * kmm_tlb_finish then (1) invalidates: page by page up to
 * KMM_TLB_PAGE_LIMIT pages, or the whole TLB beyond (with global entries
 * when kernel mappings changed), first on this CPU and then, through the
 * port's shootdown, on every other CPU, which completes before it returns;
 * and only then (2) gives the frames and tables back to the page allocator.
 * A CPU that still holds a stale translation can thus never reach memory
 * that has been handed to someone else (Linux's mmu_gather rule).
 *
 * INVLPG also drops the paging-structure caches, so the per-page
 * invalidations of an unmap cover the tables it frees as well.
 *
 * kmm_tlb_finish may wait for other CPUs: call it with no lock held and
 * IRQs on (the range operations do so after dropping the space's lock).
 */
#include "internal.h"

#include "pmm/pmm.h"
#include "vmm/vmm.h"

void kmm_tlb_gather_init(struct kmm_tlb_gather *g, struct kmm_aspace *as)
{
    g->as = as;
    g->npages = 0;
    g->all = false;
    g->global = false;
    g->start = UINT64_MAX;
    g->last = 0;
    g->nfree = 0;
}

/* Records the invalidation of one leaf: [va, va + size) is a 4 KiB, 2 MiB
 * or 1 GiB page. One INVLPG of its first address drops it whatever its size
 * (the TLB holds a huge page as one entry), so it takes one slot. */
void vmm_gather_range(struct kmm_tlb_gather *g, uint64_t va, uint64_t size, bool global)
{
    if (g->npages < KMM_TLB_PAGE_LIMIT)
        g->pages[g->npages++] = va;
    else
        g->all = true;
    if (va < g->start)
        g->start = va;
    if (va + (size - 1) > g->last)
        g->last = va + (size - 1); /* inclusive: the top page's end wraps to 0 */
    g->global |= global;
}

bool vmm_gather_room(const struct kmm_tlb_gather *g, unsigned frees)
{
    return g->nfree + frees <= KMM_TLB_GATHER_FREES;
}

/* A queued release: a page address, bit 0 set for a table page (page
 * addresses have their low 12 bits clear). */
#define GATHER_TABLE UINT64_C(1)

void vmm_gather_frame(struct kmm_tlb_gather *g, uint64_t pa)
{
    g->free[g->nfree++] = pa;
}

void vmm_gather_table(struct kmm_tlb_gather *g, uint64_t pa)
{
    g->free[g->nfree++] = pa | GATHER_TABLE;
}

void kmm_tlb_finish(struct kmm_tlb_gather *g)
{
    struct kmm_aspace *as = g->as;
    struct kmm_port *p = as->k->port;
    if (g->all) {
        kmm_port_tlb_flush_all(p, g->global);
        kmm_port_tlb_shootdown(p, mmu_root(&as->mmu), 0, 0, g->global);
    } else if (g->npages) {
        for (unsigned i = 0; i < g->npages; i++)
            kmm_port_tlb_flush_page(p, g->pages[i]);
        kmm_port_tlb_shootdown(p, mmu_root(&as->mmu), g->start, g->last - g->start + 1, g->global);
    }
    /* Only now may the memory go back. */
    for (unsigned i = 0; i < g->nfree; i++) {
        uint64_t pa = g->free[i] & ~GATHER_TABLE;
        if (g->free[i] & GATHER_TABLE) {
            pmm_table_free(as->k, pa);
        } else {
            int err = kmm_page_free(as->k, pa, 0);
            KMM_ASSERT(p, err == KMM_OK);
        }
    }
    kmm_tlb_gather_init(g, as);
}
