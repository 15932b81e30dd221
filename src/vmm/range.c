/*
 * range.c - the range engine: what every range call does around the arch
 * layer's work on the tables.
 *
 *   1. count, under the space's lock, what the change needs (the arch's
 *      count functions), and set that many table pages aside: atomically
 *      under the lock, or, failing that, with the lock dropped and reclaim
 *      allowed, then count again (the tables may have changed meanwhile);
 *   2. change the tables with code that cannot fail, the pages set aside
 *      serving as the arch layer's table-page allocator (struct vmm_tables);
 *   3. run changes that release more than a gather holds in chunks,
 *      finishing the gather between them with the lock dropped (a
 *      shootdown may wait for other CPUs);
 *   4. give back the table pages left over.
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"):
 *     1 a space's lock  ->  4 this CPU's cache  ->  6 zone lock
 *                                    (table pages taken with KMM_GFP_ATOMIC)
 *     1 the kernel space's lock  ->  2 window lock
 *                                    (count_cuts: the window check of unmap and protect)
 * The lock is dropped before the allocator may reclaim (vmm_lock_with_tables)
 * and before a gather is finished (finish_between).
 */
#include "internal.h"

#include <kmm/page.h>

#include "pmm/api.h"
#include "vmm/kva.h"
#include "vmm/vmm.h"

/* --- table pages set aside: the arch layer's table-page allocator --------------------- */

/* The pages are linked through their first word; it is zeroed again when a
 * page is taken. */
static void tables_push(struct kmm *k, struct vmm_tables *t, uint64_t pa)
{
    *(uint64_t *)kmm_phys_to_virt(k, pa) = t->head;
    t->head = pa;
    t->n++;
}

uint64_t vmm_tables_take(struct kmm *k, struct vmm_tables *t)
{
    uint64_t pa = t->head;
    KMM_ASSERT(k->port, pa != 0);
    uint64_t *first = kmm_phys_to_virt(k, pa);
    t->head = *first;
    *first = 0;
    t->n--;
    return pa;
}

void vmm_tables_release(struct kmm *k, struct vmm_tables *t)
{
    while (t->n)
        pmm_table_free_zero(k, vmm_tables_take(k, t)); /* unused: zeroed, link cleared */
}

bool vmm_tables_fill(struct kmm *k, struct vmm_tables *t, unsigned need, kmm_gfp_t flags)
{
    while (t->n < need) {
        uint64_t pa = pmm_table_alloc(k, flags);
        if (!pa)
            return false;
        tables_push(k, t, pa);
    }
    return true;
}

/* --- taking the lock with what a change needs ------------------------------------------- */

int vmm_lock_with_tables(struct kmm_aspace *as, struct vmm_tables *t, vmm_count_fn count,
                         const void *op, kmm_irqstate_t *irq)
{
    for (;;) {
        *irq = kmm_lock_irqsave(&as->lock);
        int need = count(&as->mmu, op);
        if (need < 0) {
            kmm_unlock_irqrestore(&as->lock, *irq);
            vmm_tables_release(as->k, t);
            return need;
        }
        if (vmm_tables_fill(as->k, t, (unsigned)need, KMM_GFP_ATOMIC))
            return KMM_OK;
        kmm_unlock_irqrestore(&as->lock, *irq);
        if (!vmm_tables_fill(as->k, t, (unsigned)need, 0)) {
            vmm_tables_release(as->k, t);
            return KMM_ENOMEM;
        }
    }
}

static int count_map(const struct mmu_space *s, const void *op)
{
    return mmu_map_count_locked(s, op);
}

int vmm_lock_for_map(struct kmm_aspace *as, const struct mmu_map *m, bool replace,
                     struct vmm_tables *t, kmm_irqstate_t *irq)
{
    if (!replace)
        return vmm_lock_with_tables(as, t, count_map, m, irq);
    /* A replacing map may drop the lock between chunks, where another
     * operation could free a table it counted on: it sets aside the most it
     * could need, before it takes the lock. */
    if (!vmm_tables_fill(as->k, t, mmu_replace_tables(&as->mmu, m), 0)) {
        vmm_tables_release(as->k, t);
        return KMM_ENOMEM;
    }
    *irq = kmm_lock_irqsave(&as->lock);
    return KMM_OK;
}

struct cut_op {
    uint64_t va, size;
    bool window;       /* ask the window first (kva_map_conflict) */
    const char **kept; /* why the window keeps a page, when it does */
};

/* The window's refusal comes first: it holds whether the pages are mapped
 * or not (a guard page never is). */
static int count_cuts(const struct mmu_space *s, const void *op)
{
    const struct cut_op *c = op;
    if (c->window && (*c->kept = kva_map_conflict(s->k, c->va, c->size, 0)) != 0)
        return KMM_EBUSY;
    return mmu_cut_count_locked(s, c->va, c->size);
}

int vmm_lock_and_cut(struct kmm_aspace *as, uint64_t va, uint64_t size, bool window,
                     const char **kept, struct kmm_tlb_gather *g, kmm_irqstate_t *irq)
{
    struct vmm_tables t = {0, 0};
    struct cut_op op = {va, size, window, kept};
    int err = vmm_lock_with_tables(as, &t, count_cuts, &op, irq);
    if (err)
        return err;
    if (t.n) { /* none set aside: the count under the lock found no cut */
        mmu_cut_locked(&as->mmu, va, size, &t, g);
        vmm_tables_release(as->k, &t); /* more than needed if the count fell on a retry */
    }
    return KMM_OK;
}

/* --- changes in chunks ------------------------------------------------------------------- */

/* Finishes g between two chunks of a change: the lock is dropped for it
 * (a shootdown may wait for other CPUs) and taken again. */
static void finish_between(struct kmm_aspace *as, struct kmm_tlb_gather *g, kmm_irqstate_t *irq)
{
    kmm_unlock_irqrestore(&as->lock, *irq);
    kmm_tlb_finish(g);
    *irq = kmm_lock_irqsave(&as->lock);
}

void vmm_replace_locked(struct kmm_aspace *as, const struct mmu_map *m, struct vmm_tables *t,
                        struct kmm_tlb_gather *g, kmm_irqstate_t *irq)
{
    uint64_t done = mmu_replace_locked(&as->mmu, m, 0, t, g);
    while (done != m->size) {
        finish_between(as, g, irq);
        done = mmu_replace_locked(&as->mmu, m, done, t, g);
    }
}

int vmm_unmap_area_locked(struct kmm_aspace *as, uint64_t va, uint64_t size, uint64_t *done,
                          bool *missed, struct kmm_tlb_gather *g, kmm_irqstate_t *irq)
{
    uint64_t missing = 0;
    for (;;) {
        bool huge = mmu_unmap_area_locked(&as->mmu, va, size, done, g, &missing);
        *missed = missing != 0;
        if (huge)
            return MMU_SLOW;
        if (*done == size)
            return missing ? KMM_ENOENT : KMM_OK;
        finish_between(as, g, irq);
    }
}

void vmm_unmap_locked(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                      kmm_irqstate_t *irq)
{
    uint64_t done = mmu_unmap_locked(&as->mmu, va, size, 0, g);
    while (done != size) {
        finish_between(as, g, irq);
        done = mmu_unmap_locked(&as->mmu, va, size, done, g);
    }
}
