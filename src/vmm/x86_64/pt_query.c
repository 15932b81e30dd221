/*
 * pt_query.c - reading the tables: translating one address, and describing
 * a range as runs of pages mapped alike.
 */
#include "vmm/x86_64/pt.h"

int mmu_translate(const struct mmu_space *s, kmm_lock_t *lock, uint64_t va,
                  struct kmm_vm_translation *out)
{
    uint64_t t;
    unsigned l;
    kmm_irqstate_t irq = kmm_lock_irqsave(lock);
    pte_t e = *pt_find(s, va, &t, &l);
    kmm_unlock_irqrestore(lock, irq);
    if (!pte_present(e))
        return KMM_ENOENT;
    if (l == PT_LEVEL_PT) { /* the common case, with the level a constant */
        out->pa = pte_leaf_frame(e, PT_LEVEL_PT) | (va & (KMM_PAGE_SIZE - 1));
        out->cache = pte_cache(e, PT_LEVEL_PT);
        out->page_size = KMM_PAGE_SIZE;
    } else {
        uint64_t size = pte_level_size(l);
        out->pa = pte_leaf_frame(e, l) | (va & (size - 1));
        out->cache = pte_cache(e, l);
        out->page_size = size;
    }
    out->prot = pte_prot(e);
    out->owned = pte_owned(e);
    out->cow = pte_cow(e);
    return KMM_OK;
}

/* What the walk's stop at `at` (level l, entry e) says about the page
 * there; an unmapped one is all zeros but its size; a demand-zero one is
 * mapped with its protection and cache mode, pa 0. */
static struct kmm_vm_run run_at(uint64_t at, unsigned l, pte_t e)
{
    struct kmm_vm_run here = {.mapped = pte_used(e), .demand = pte_demand(e)};
    if (here.mapped) {
        here.pa = here.demand ? 0 : pte_leaf_frame(e, l) + (at - pt_base(at, l));
        here.prot = pte_prot(e);
        here.cache = pte_cache(e, l);
        here.owned = pte_owned(e);
        here.cow = pte_cow(e);
    }
    return here;
}

/* Whether the page at `at`, described by here, continues the run *out that
 * started at va. */
static bool continues(const struct kmm_vm_run *out, const struct kmm_vm_run *here, uint64_t va,
                      uint64_t at)
{
    if (here->mapped != out->mapped || here->demand != out->demand)
        return false;
    if (!here->mapped)
        return true;
    bool frames = here->demand || here->pa == out->pa + (at - va); /* demand-zero: no frames */
    return frames && here->prot == out->prot && here->cache == out->cache &&
           here->owned == out->owned && here->cow == out->cow;
}

/* The address after the part of the address space that the walk's stop at
 * `at` (level l, p) speaks for: the leaf or empty entry's span, or, when
 * the table holding an empty entry is empty, the table's whole span. Only
 * the shared kernel-half tables stay when empty (the others are freed), so
 * a query over nothing takes one step per such table, never one per entry
 * or page. */
static uint64_t step_end(const struct mmu_space *s, const struct pt_path *p, unsigned l,
                         uint64_t at, bool mapped)
{
    if (!mapped && l < s->levels && pt_count(s, p->table[pt_ix(l)]) == 0)
        l++;
    return pt_end(at, l);
}

uint64_t mmu_query_locked(const struct mmu_space *s, uint64_t va, uint64_t limit,
                          struct kmm_vm_run *out)
{
    uint64_t at = va, steps = 0;
    while (at < limit) {
        steps++;
        struct pt_path p;
        unsigned l = pt_walk(s, at, &p);
        struct kmm_vm_run here = run_at(at, l, *pt_slot(s, &p, l, at));
        if (at == va) {
            *out = here;
            out->va = va;
        } else if (!continues(out, &here, va, at)) {
            break;
        }
        uint64_t next = step_end(s, &p, l, at, here.mapped);
        at = next < at ? limit : next; /* the top of the address space */
    }
    out->size = (at < limit ? at : limit) - va;
    return steps;
}
