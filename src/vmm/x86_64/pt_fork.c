/*
 * pt_fork.c - the entries behind faults and clones: what a faulting access
 * needs, resolving a demand-zero or copy-on-write entry, and copying a user
 * space's lower half for fork.
 *
 * The software bits involved (pte.h): a demand-zero page is an entry that
 * is not present, with PTE_SW_DEMAND and the rights it will map; a COW leaf
 * is a present owned leaf with PTE_SW_COW, RW clear, and its write right in
 * PTE_SW_WRITE. A clone copies the tables, and every owned leaf becomes
 * COW in both spaces, the child's taking a frame reference of its own.
 */
#include "vmm/x86_64/pt.h"

/* --- faults -------------------------------------------------------------------------- */

/* Whether entry e (present or demand-zero) of the address va lets an
 * access of kind access through, ignoring a COW leaf's write right. The
 * tables above a kernel-half leaf never grant user access (pte_table). */
static bool fault_allowed(const struct mmu_space *s, uint64_t va, pte_t e, unsigned access)
{
    if ((access & KMM_FAULT_USER) && (!(e & PTE_US) || mmu_in_kernel_half(s, va)))
        return false;
    if ((access & KMM_FAULT_EXEC) && (e & PTE_XD))
        return false;
    return !(access & KMM_FAULT_WRITE) || (e & PTE_RW);
}

void mmu_fault_look_locked(const struct mmu_space *s, uint64_t va, unsigned access,
                           struct mmu_fault *f)
{
    uint64_t t;
    unsigned l;
    pte_t *e = pt_find(s, va, &t, &l);
    pte_t v = *e;
    *f = (struct mmu_fault){.need = MMU_FAULT_UNMAPPED, .cur = {e, t}};
    if (!pte_used(v))
        return;
    if (fault_allowed(s, va, v, access)) {
        f->need = pte_demand(v) ? MMU_FAULT_DEMAND : MMU_FAULT_ALLOWED;
        return;
    }
    /* A write the leaf's RW refuses: a COW leaf that may be written, or a
     * plain violation. The other rights must hold for the write too. */
    bool cow_write = pte_cow(v) && (v & PTE_SW_WRITE) && fault_allowed(s, va, v | PTE_RW, access);
    f->need = cow_write ? MMU_FAULT_COW : MMU_FAULT_DENIED;
    f->frame = cow_write ? pte_frame(v) : 0;
}

void mmu_fault_fill_locked(struct mmu_space *s, uint64_t va, const struct mmu_fault *f, uint64_t pa)
{
    pte_t *e = f->cur.entry;
    KMM_ASSERT(s->k->port, f->need == MMU_FAULT_DEMAND && pte_demand(*e));
    pte_t v = pte_demand_filled(*e, pa);
    pte_set(e, v);
    s->counts.demand--;
    s->counts.leaves[pt_ix(PT_LEVEL_PT)]++;
    s->counts.owned++;
    vmm_mapping_changed(s, va, KMM_PAGE_SIZE, pa, pte_hw_prot(v));
}

void mmu_fault_cow_locked(struct mmu_space *s, uint64_t va, const struct mmu_fault *f, uint64_t pa,
                          struct kmm_tlb_gather *g)
{
    pte_t *e = f->cur.entry;
    pte_t old = *e;
    KMM_ASSERT(s->k->port, f->need == MMU_FAULT_COW && pte_cow(old) && pte_frame(old) == f->frame);
    pte_t v = pte_cow_resolved(old, pa ? pa : f->frame);
    pte_set(e, pt_cached_leaf(v));
    s->counts.cow--;
    if (pa) { /* another frame: the old translation must go before the frame does */
        vmm_gather_range(g, va, KMM_PAGE_SIZE, pt_global(s, va, old));
        vmm_gather_frame(g, f->frame);
    }
    vmm_mapping_changed(s, va, KMM_PAGE_SIZE, pte_frame(v), pte_hw_prot(v));
}

/* --- clones -------------------------------------------------------------------------- */

unsigned mmu_clone_tables(const struct mmu_space *s)
{
    uint64_t n = 0;
    for (unsigned l = PT_LEVEL_PT; l < s->levels; l++)
        n += s->counts.tables[pt_ix(l)];
    return (unsigned)n;
}

/* The entries of a level-`level` table a clone copies: the lower half's of
 * the top-level table, every one below it. */
static unsigned clone_entries(const struct mmu_space *s, unsigned level)
{
    return level == s->levels ? KERNEL_HALF_FIRST : PTE_ENTRIES;
}

/* Copies s's table `from` (level `level`) into child's empty table `to`,
 * and everything below it. Returns false when a reference could not be
 * taken (what was copied so far stays, consistent). */
static bool copy_table(const struct mmu_space *s, struct mmu_space *child, uint64_t from,
                       uint64_t to, unsigned level, struct vmm_tables *t)
{
    const pte_t *src = pt_table(s, from);
    pte_t *dst = pt_table(child, to);
    for (unsigned i = 0; i < clone_entries(s, level); i++) {
        pte_t e = src[i];
        if (!pte_used(e))
            continue;
        if (level > PT_LEVEL_PT && pte_links_table(e)) {
            uint64_t nt = vmm_tables_take(child->k, t);
            pte_publish(&dst[i], pte_table(nt, true));
            pt_count_inc(child, to);
            child->counts.tables[pt_ix(level - 1)]++;
            if (!copy_table(s, child, pte_frame(e), nt, level - 1, t))
                return false;
            continue;
        }
        if (pte_present(e) && pte_owned(e)) {
            if (!vmm_share_owned(child->k, pte_frame(e)))
                return false;
            e = pte_make_cow(e);
            child->counts.cow++;
        }
        if (pte_demand(e))
            pt_add_demand(child, to, &dst[i], e);
        else
            pt_add_leaf(child, to, &dst[i], e, level);
    }
    return true;
}

bool mmu_clone_copy_locked(const struct mmu_space *s, struct mmu_space *child, struct vmm_tables *t)
{
    return copy_table(s, child, s->root, child->root, s->levels, t);
}

/* Marks the owned leaves of s's table t (level `level`, mapping from va)
 * and below COW. */
static void mark_table(struct mmu_space *s, uint64_t t, unsigned level, uint64_t va,
                       struct kmm_tlb_gather *g)
{
    pte_t *e = pt_table(s, t);
    for (unsigned i = 0; i < clone_entries(s, level); i++) {
        pte_t v = e[i];
        if (!pte_present(v))
            continue;
        uint64_t at = va | ((uint64_t)i << pte_level_shift(level));
        if (level > PT_LEVEL_PT && pte_links_table(v)) {
            mark_table(s, pte_frame(v), level - 1, at, g);
            continue;
        }
        if (!pte_owned(v) || pte_cow(v))
            continue;
        pte_t cow = pte_make_cow(v);
        pte_set(&e[i], pt_cached_leaf(cow));
        s->counts.cow++;
        if (v & PTE_RW) { /* the write right goes: a TLB may still hold it */
            vmm_gather_range(g, at, KMM_PAGE_SIZE, pt_global(s, at, v));
            vmm_mapping_changed(s, at, KMM_PAGE_SIZE, pte_frame(v), pte_hw_prot(cow));
        }
    }
}

void mmu_clone_mark_locked(struct mmu_space *s, struct kmm_tlb_gather *g)
{
    mark_table(s, s->root, s->levels, 0, g);
}
