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

#include "pmm/api.h"
#include "vmm/vmm.h"

_Static_assert(KMM_TLB_GATHER_FREES <= 64, "table_mask has a bit per release");
_Static_assert(KMM_TLB_PAGE_LIMIT <= UINT16_MAX && KMM_TLB_GATHER_FREES <= UINT16_MAX,
               "the counts fit their fields");
_Static_assert(sizeof(struct kmm_tlb_gather) == KMM_TLB_GATHER_BYTES,
               "kmm/vm.h states a gather's size");

/* The fields are set one by one: clearing the whole gather would write its
 * 808 bytes on every operation. */
void kmm_tlb_gather_init(struct kmm_tlb_gather *g, struct kmm_aspace *as)
{
    struct kmm_tlb_gather_private *p = &g->priv;
    p->as = as;
    p->start = UINT64_MAX;
    p->last = 0;
    p->table_mask = 0;
    p->npages = 0;
    p->nfree = 0;
    p->all = false;
    p->global = false;
    p->pending = false;
}

void vmm_gather_note_pending(struct kmm_tlb_gather *g)
{
    struct kmm_tlb_gather_private *p = &g->priv;
    if (p->pending || (!p->npages && !p->nfree && !p->all))
        return;
    p->pending = true;
    atomic_fetch_add_explicit(&p->as->pending_gathers, 1, memory_order_relaxed);
}

/* Records the invalidation of one leaf: [va, va + size) is a 4 KiB, 2 MiB
 * or 1 GiB page. One INVLPG of its first address drops it whatever its size
 * (the TLB holds a huge page as one entry), so it takes one slot. */
void vmm_gather_range(struct kmm_tlb_gather *g, uint64_t va, uint64_t size, bool global)
{
    struct kmm_tlb_gather_private *p = &g->priv;
    if (p->npages < KMM_TLB_PAGE_LIMIT)
        p->pages[p->npages++] = va;
    else
        p->all = true;
    if (va < p->start)
        p->start = va;
    if (va + (size - 1) > p->last)
        p->last = va + (size - 1); /* inclusive: the top page's end wraps to 0 */
    p->global |= global;
}

/* The page list either takes the whole run or gives way to a full flush,
 * as the run's pages one by one would have, with one bound update. */
void vmm_gather_run(struct kmm_tlb_gather *g, uint64_t va, uint64_t n, bool global)
{
    struct kmm_tlb_gather_private *p = &g->priv;
    if (!n)
        return;
    if (p->npages + n <= KMM_TLB_PAGE_LIMIT) {
        for (uint64_t i = 0; i < n; i++)
            p->pages[p->npages++] = va + i * KMM_PAGE_SIZE;
    } else {
        p->all = true;
    }
    uint64_t last = va + (n * KMM_PAGE_SIZE - 1); /* inclusive, as in vmm_gather_range */
    if (va < p->start)
        p->start = va;
    if (last > p->last)
        p->last = last;
    p->global |= global;
}

bool vmm_gather_room(const struct kmm_tlb_gather *g, unsigned frees)
{
    return g->priv.nfree + frees <= KMM_TLB_GATHER_FREES;
}

void vmm_gather_frame(struct kmm_tlb_gather *g, uint64_t pa)
{
    g->priv.free[g->priv.nfree++] = pa;
}

void vmm_gather_table(struct kmm_tlb_gather *g, uint64_t pa, uint64_t va, bool global)
{
    struct kmm_tlb_gather_private *p = &g->priv;
    if (!p->npages && !p->all) /* its leaves were never cached (pt_leaf_cached) */
        vmm_gather_range(g, va, KMM_PAGE_SIZE, global);
    p->table_mask |= UINT64_C(1) << p->nfree;
    p->free[p->nfree++] = pa;
}

/* The invalidations: on this CPU, then through the port on the others. */
static void invalidate(const struct kmm_tlb_gather_private *g, struct kmm_port *p, uint64_t root)
{
    if (g->all) {
        kmm_port_tlb_flush_all(p, g->global);
        kmm_port_tlb_shootdown(p, root, 0, 0, g->global);
    } else if (g->npages) {
        for (unsigned i = 0; i < g->npages; i++)
            kmm_port_tlb_flush_page(p, g->pages[i]);
        kmm_port_tlb_shootdown(p, root, g->start, g->last - g->start + 1, g->global);
    }
}

void kmm_tlb_finish(struct kmm_tlb_gather *g)
{
    const struct kmm_tlb_gather_private *gp = &g->priv;
    struct kmm_aspace *as = gp->as;
    struct kmm_port *p = as->k->port;
    invalidate(gp, p, mmu_root(&as->mmu));
    /* Only now may the memory go back. An owned frame's reference is the
     * mapping's own, which no caller can drop (kmm_page_free refuses it), so
     * putting it cannot fail, whatever the caller did with the frame. */
    for (unsigned i = 0; i < gp->nfree; i++) {
        uint64_t pa = gp->free[i];
        if ((gp->table_mask >> i) & 1u)
            pmm_table_free_zero(as->k, pa); /* emptied: each entry cleared */
        else
            pmm_page_map_put(as->k, pa);
    }
    if (gp->pending) /* done with the space: it may be destroyed now */
        atomic_fetch_sub_explicit(&as->pending_gathers, 1, memory_order_release);
    kmm_tlb_gather_init(g, as);
}
