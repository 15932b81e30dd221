/*
 * fault.c - kmm_vm_fault: the page-fault entry that resolves demand-zero
 * pages and writes to copy-on-write pages (kmm/vm.h).
 *
 * A fault may need a page (a zeroed one, or one for the copy). It is
 * allocated with no lock held (reclaim allowed), then the entry is looked
 * at again under the space's lock, since another CPU may have resolved the
 * same fault or changed the mapping meanwhile; what the entry says then is
 * what is done, and a page not needed goes back. So two CPUs faulting on
 * one page at once both see it handled, one of them as SPURIOUS.
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"):
 *     1 a space's lock  ->  6 zone lock
 *             (the mapcount of a COW frame, the new frame's mapping reference)
 *     1 a space's lock  ->  7 port
 *             (the mapping hook, this CPU's invalidation)
 * The page is allocated, the caller's reference on it dropped, and a
 * copy's gather finished with no lock held.
 */
#include "internal.h"

#include <kmm/page.h>

#include "pmm/api.h"
#include "vmm/validate.h"
#include "vmm/vmm.h"

/* Why a fault call is refused before anything is looked at, or VM_VALID. */
static enum vm_why bad_fault(const struct kmm_aspace *as, uint64_t va, unsigned access)
{
    if (!vm_is_space(as))
        return VM_NOT_A_SPACE;
    if (!mmu_canonical(&as->mmu, va))
        return VM_NOT_CANONICAL;
    if (access & ~KMM_FAULT_MASK)
        return VM_UNKNOWN_ACCESS;
    return VM_VALID;
}

/* What one pass under the lock decided. */
struct fault_pass {
    int err;                     /* KMM_OK: handled; else why not */
    enum kmm_vm_fault_kind kind; /* when handled */
    bool need_page;              /* not decided: a page is needed first */
    bool zero;                   /* ... a zeroed one */
};

/* Takes the owned mapping's reference on the fault's page, which it
 * allocated: an allocated single page, so this cannot fail. */
static void take_page(struct kmm *k, uint64_t page)
{
    bool got = pmm_page_map_get(k, page);
    KMM_ASSERT(k->port, got);
    (void)got;
}

/* One look at va's entry under the lock, and what can be done with the
 * page the fault holds (page, 0 for none; zeroed or not). Lock held. */
static struct fault_pass fault_locked(struct kmm_aspace *as, uint64_t va, unsigned access,
                                      uint64_t page, bool zeroed, struct kmm_tlb_gather *g)
{
    struct kmm *k = as->k;
    struct mmu_fault f;
    mmu_fault_look_locked(&as->mmu, va, access, &f);
    switch (f.need) {
    case MMU_FAULT_UNMAPPED:
        return (struct fault_pass){.err = KMM_ENOENT};
    case MMU_FAULT_DENIED:
        return (struct fault_pass){.err = KMM_EACCES};
    case MMU_FAULT_ALLOWED:
        /* Resolved already, or a stale entry in this CPU's TLB (one that
         * allowed less): drop it so the access sees the tables. */
        kmm_port_tlb_flush_page(k->port, va);
        return (struct fault_pass){.kind = KMM_FAULT_SPURIOUS};
    case MMU_FAULT_DEMAND:
        if (!page || !zeroed)
            return (struct fault_pass){.need_page = true, .zero = true};
        take_page(k, page);
        mmu_fault_fill_locked(&as->mmu, va, &f, page);
        return (struct fault_pass){.kind = KMM_FAULT_DEMAND_ZERO};
    case MMU_FAULT_COW:
        /* The space's lock keeps this mapping, so the count cannot fall to
         * 0 meanwhile: 1 is this mapping alone, and no other space can
         * read the frame any more. */
        if (pmm_page_map_count(k, f.frame) == 1) {
            mmu_fault_cow_locked(&as->mmu, va, &f, 0, g);
            kmm_port_tlb_flush_page(k->port, va); /* this CPU's read-only entry */
            return (struct fault_pass){.kind = KMM_FAULT_COW_REUSE};
        }
        if (!page)
            return (struct fault_pass){.need_page = true};
        __builtin_memcpy(kmm_phys_to_virt(k, page), kmm_phys_to_virt(k, f.frame), KMM_PAGE_SIZE);
        take_page(k, page);
        mmu_fault_cow_locked(&as->mmu, va, &f, page, g);
        return (struct fault_pass){.kind = KMM_FAULT_COW_COPY};
    }
    KMM_ASSERT(k->port, false); /* every need is handled above */
    return (struct fault_pass){.err = KMM_EINVAL};
}

/* Counts a pass's outcome in the space's figures. Lock held. */
static void fault_count_locked(struct kmm_aspace *as, const struct fault_pass *p)
{
    if (p->err) {
        as->faults.refused++;
        return;
    }
    switch (p->kind) {
    case KMM_FAULT_DEMAND_ZERO:
        as->faults.demand_zero++;
        break;
    case KMM_FAULT_COW_COPY:
        as->faults.cow_copy++;
        break;
    case KMM_FAULT_COW_REUSE:
        as->faults.cow_reuse++;
        break;
    default:
        as->faults.spurious++;
        break;
    }
}

int kmm_vm_fault(struct kmm_aspace *as, uint64_t va, unsigned access, enum kmm_vm_fault_kind *how)
{
    if (how)
        *how = KMM_FAULT_NONE;
    enum vm_why why = bad_fault(as, va, access);
    if (why)
        return vm_refuse(as, why, "kmm_vm_fault", va, KMM_PAGE_SIZE, __builtin_return_address(0));
    struct kmm *k = as->k;
    if (mmu_in_kernel_half(&as->mmu, va))
        as = &k->vm.kernel; /* the half every space shares is the kernel space's */
    va &= ~(uint64_t)(KMM_PAGE_SIZE - 1);
    uint64_t page = 0; /* allocated for this fault, the caller's reference held */
    bool zeroed = false;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    struct fault_pass p;
    for (;;) {
        kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
        p = fault_locked(as, va, access, page, zeroed, &g);
        if (!p.need_page)
            fault_count_locked(as, &p);
        kmm_unlock_irqrestore(&as->lock, irq);
        if (!p.need_page)
            break;
        /* A demand-zero page needs zeros; a copy overwrites every byte. */
        if (page) { /* a page taken for a copy, and the entry wants zeros now */
            __builtin_memset(kmm_phys_to_virt(k, page), 0, KMM_PAGE_SIZE);
            zeroed = true;
            continue;
        }
        page = kmm_page_alloc(k, 0, p.zero ? KMM_GFP_ZERO : 0);
        if (!page) {
            irq = kmm_lock_irqsave(&as->lock);
            as->faults.refused++;
            kmm_unlock_irqrestore(&as->lock, irq);
            return KMM_ENOMEM;
        }
        zeroed = p.zero;
    }
    /* The caller's reference on the page: the mapping holds its own now,
     * or nobody needs the page. */
    if (page)
        KMM_MUST(k->port, kmm_page_free(k, page, 0));
    kmm_tlb_finish(&g); /* a copy's: the shared frame goes after the invalidations */
    if (p.err)
        return p.err;
    if (how)
        *how = p.kind;
    return KMM_OK;
}
