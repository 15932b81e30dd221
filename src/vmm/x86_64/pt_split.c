/*
 * pt_split.c - splitting huge leaves, and cutting a range out of them.
 *
 * An unmap or protect (or a replacing map) whose range cuts through a huge
 * leaf splits that leaf first, into a table of 512 leaves one level down
 * with the same frame, rights and cache mode, so that the work proper only
 * ever meets leaves entirely inside its range. A 1 GiB leaf that an end
 * falls in at a 4 KiB boundary is split twice: into 2 MiB leaves, then the
 * one holding the end into 4 KiB leaves. The tables a cut needs are counted
 * first (mmu_cut_count_locked) and taken from the caller's vmm_tables, so a
 * cut never fails half-way.
 */
#include "vmm/x86_64/pt.h"

/*
 * The new table is filled before it is linked (with a release store), so a
 * walker sees either the huge leaf or the complete table. The TLB may still
 * hold the huge translation, and a later change to one small leaf must not
 * be shadowed by it: the huge page's invalidation goes into g.
 */
void pt_split_leaf(struct mmu_space *s, const struct pt_path *p, unsigned l, uint64_t va,
                   struct vmm_tables *tables, struct kmm_tlb_gather *g)
{
    pte_t *e = pt_slot(s, p, l, va);
    pte_t old = *e;
    uint64_t nt = vmm_tables_take(s->k, tables);
    pte_t *child = pt_table(s, nt);
    pte_t first = pt_cached_leaf(pte_split_first(old, l)); /* the huge one may be cached */
    uint64_t step = pte_level_size(l - 1);
    for (unsigned i = 0; i < PTE_ENTRIES; i++)
        pte_set(&child[i], first + i * step);
    pt_count_set(s, nt, PTE_ENTRIES);
    pte_publish(e, pte_table(nt, !mmu_in_kernel_half(s, va)));
    s->counts.tables[pt_ix(l - 1)]++;
    s->counts.leaves[pt_ix(l)]--;
    s->counts.leaves[pt_ix(l - 1)] += PTE_ENTRIES;
    vmm_gather_range(g, pt_base(va, l), pte_level_size(l), pt_global(s, va, old));
}

/* A leaf to split: its first address and level. */
struct pt_cut {
    uint64_t base;
    unsigned level;
};

/* The splits that make a leaf boundary fall at address c: the huge leaf
 * holding c, then the smaller leaf holding c in what it splits into, as
 * long as c is not aligned to it. Stores them in cut[] and returns how
 * many there are (0 .. PTE_MAX_LEAF_LEVEL - 1). */
static unsigned cuts_at(const struct mmu_space *s, uint64_t c, struct pt_cut cut[])
{
    struct pt_path p;
    unsigned l = pt_walk(s, c, &p), n = 0;
    if (l == 1 || !pte_present(*pt_slot(s, &p, l, c)))
        return 0;
    for (unsigned j = l; j > 1 && pt_base(c, j) != c; j--)
        cut[n++] = (struct pt_cut){pt_base(c, j), j};
    return n;
}

/* The tables that cutting [va, va + size) out of its huge leaves needs: one
 * per split, and the two ends may share one (a range inside a 1 GiB page).
 * The end is no cut when the range reaches the top of the address space. */
static unsigned cut_tables(const struct mmu_space *s, uint64_t va, uint64_t size)
{
    struct pt_cut first[PTE_MAX_LEAF_LEVEL], last[PTE_MAX_LEAF_LEVEL];
    unsigned nf = cuts_at(s, va, first);
    unsigned nl = va + size != 0 ? cuts_at(s, va + size, last) : 0, n = nf;
    for (unsigned i = 0; i < nl; i++) {
        bool shared = false;
        for (unsigned j = 0; j < nf; j++)
            shared |= last[i].base == first[j].base && last[i].level == first[j].level;
        n += !shared;
    }
    return n;
}

int mmu_cut_count_locked(const struct mmu_space *s, uint64_t va, uint64_t size)
{
    bool small = true; /* every walk so far ended in a page table */
    for (uint64_t at = va; at - va < size;) {
        struct pt_path p;
        unsigned l = pt_walk(s, at, &p);
        small &= l == PT_LEVEL_PT;
        if (l == PT_LEVEL_PT) { /* the table's entries in the range, in a row */
            uint64_t left = (size - (at - va)) >> KMM_PAGE_SHIFT;
            const pte_t *e = pt_slot(s, &p, l, at);
            for (uint64_t i = pte_index(at, l); i < PTE_ENTRIES && left; i++, left--, e++) {
                if (!pte_used(*e)) /* a demand-zero page counts as mapped */
                    return KMM_ENOENT;
                at += KMM_PAGE_SIZE;
            }
            if (at == 0)
                break; /* the top of the address space */
            continue;
        }
        if (!pte_present(*pt_slot(s, &p, l, at)))
            return KMM_ENOENT;
        at = pt_end(at, l);
        if (at == 0)
            break; /* the top of the address space */
    }
    /* Both ends in page tables: no huge leaf to cut. The end address is
     * then in that same table, or starts a new table, 2 MiB leaf or 1 GiB
     * leaf (a page table below covers the address before it, so the
     * larger entries above are tables too), and a leaf starting there is
     * no cut. */
    if (small)
        return 0;
    return (int)cut_tables(s, va, size);
}

/* Splits huge leaves until a leaf boundary falls at c. */
static void cut_at(struct mmu_space *s, uint64_t c, struct vmm_tables *tables,
                   struct kmm_tlb_gather *g)
{
    for (;;) {
        struct pt_path p;
        unsigned l = pt_walk(s, c, &p);
        if (l == 1 || !pte_present(*pt_slot(s, &p, l, c)) || pt_base(c, l) == c)
            return;
        pt_split_leaf(s, &p, l, c, tables, g);
    }
}

void mmu_cut_locked(struct mmu_space *s, uint64_t va, uint64_t size, struct vmm_tables *t,
                    struct kmm_tlb_gather *g)
{
    cut_at(s, va, t, g);
    if (va + size != 0)
        cut_at(s, va + size, t, g);
}
