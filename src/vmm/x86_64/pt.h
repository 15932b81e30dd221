/*
 * pt.h - what the x86_64 page-table files share (private to this folder):
 * reaching a table and its entry count, walking towards an address,
 * building the tables on the way, and splitting a huge leaf.
 *
 * Entry counts: each table page's frame descriptor counts the table's
 * present entries, so an unmap frees a table the moment it empties, except
 * the top-level table and, in the kernel half, the tables right below it,
 * which every space shares (pt_pinned). The pt_count_* functions below are
 * the only code that reaches those counts.
 *
 * Levels are numbered up from the leaf: 1 (PT, 4 KiB leaves), 2 (PD, 2 MiB
 * leaves with PS), 3 (PDPT, 1 GiB leaves with PS), 4 (PML4), 5 (PML5). The
 * per-level figures of struct mmu_counts and a walk's path are 0-based
 * arrays: level l at index pt_ix(l).
 */
#ifndef KMM_VMM_X86_64_PT_H
#define KMM_VMM_X86_64_PT_H

#include "internal.h"

#include "pmm/api.h"
#include "vmm/mmu.h"
#include "vmm/x86_64/pte.h"

enum { PT_LEVEL_PT = 1, PT_LEVEL_PD = 2, PT_LEVEL_PDPT = 3 };

#define KERNEL_HALF_FIRST  (PTE_ENTRIES / 2) /* the top-level index of the kernel half */
#define KERNEL_HALF_TABLES (PTE_ENTRIES - KERNEL_HALF_FIRST)

/* The array index of level l's figures (enum mmu_table_ix, mmu_page_ix). */
static inline unsigned pt_ix(unsigned level)
{
    return level - 1;
}

/* The table at physical address pa, through the direct map. */
static inline pte_t *pt_table(const struct mmu_space *s, uint64_t pa)
{
    return (pte_t *)kmm_phys_to_virt(s->k, pa);
}

/* --- entry counts: the one owner --------------------------------------------------- */

static inline uint32_t pt_count(const struct mmu_space *s, uint64_t table)
{
    return *pmm_table_entries(&s->k->pmm, table);
}

static inline void pt_count_set(const struct mmu_space *s, uint64_t table, uint32_t n)
{
    *pmm_table_entries(&s->k->pmm, table) = n;
}

/* One more present entry in table. */
static inline void pt_count_inc(const struct mmu_space *s, uint64_t table)
{
    (*pmm_table_entries(&s->k->pmm, table))++;
}

/* n more present entries in table (a run written in one go). */
static inline void pt_count_add(const struct mmu_space *s, uint64_t table, uint32_t n)
{
    *pmm_table_entries(&s->k->pmm, table) += n;
}

/* n present entries less in table (a run cleared in one go); returns how
 * many are left. */
static inline uint32_t pt_count_sub(const struct mmu_space *s, uint64_t table, uint32_t n)
{
    uint32_t *count = pmm_table_entries(&s->k->pmm, table);
    KMM_ASSERT(s->k->port, *count >= n);
    return *count -= n;
}

/* One present entry less in table; returns how many are left. */
static inline uint32_t pt_count_dec(const struct mmu_space *s, uint64_t table)
{
    uint32_t *count = pmm_table_entries(&s->k->pmm, table);
    KMM_ASSERT(s->k->port, *count > 0);
    return --*count;
}

/* --- addresses and levels ------------------------------------------------------------ */

/* The first address of the level-l entry's span that holds va. */
static inline uint64_t pt_base(uint64_t va, unsigned level)
{
    return va & ~(pte_level_size(level) - 1);
}

/* The address after the level-l entry's span that holds va; 0 past the top. */
static inline uint64_t pt_end(uint64_t va, unsigned level)
{
    return pt_base(va, level) + pte_level_size(level);
}

/* A table that is never freed: the root, and in the kernel half the tables
 * right below it (shared by every space). */
static inline bool pt_pinned(const struct mmu_space *s, uint64_t va, unsigned level)
{
    return level == s->levels || (level == s->levels - 1 && mmu_in_kernel_half(s, va));
}

/* Whether the TLB may hold a global translation of leaf e at va. */
static inline bool pt_global(const struct mmu_space *s, uint64_t va, pte_t e)
{
    return (e & PTE_G) != 0 || mmu_in_kernel_half(s, va);
}

/* Clears the present leaf e and returns what it held, in one atomic
 * exchange: an accessed flag an MMU sets up to that instant is in the
 * answer. One set after it would land on a cleared entry, which x86 CPUs
 * do not do but as an erratum (kmm/port.h, kmm_port_tlb_skip_unaccessed:
 * the walk's locked update of the flag finds the entry changed and walks
 * again). */
static inline pte_t pt_take_leaf(pte_t *e)
{
    return __atomic_exchange_n(e, 0, __ATOMIC_RELAXED);
}

/* Whether the leaf old, just taken away, may sit in a TLB: unless the MMU
 * caches only accessed leaves (mmu_space.skip_unaccessed) and old was never
 * accessed, it may, and its removal needs an invalidation. The rule holds
 * only while a leaf's accessed flag is never cleared behind a TLB that
 * holds it: every store that rewrites a present leaf in place, or writes
 * one whose predecessor a TLB may still hold (a replace, a split's
 * children, a copy-on-write copy), marks it accessed (pt_cached_leaf). */
static inline bool pt_leaf_cached(const struct mmu_space *s, pte_t old)
{
    return (old & PTE_A) || !s->skip_unaccessed;
}

/* v, the new value of a leaf some TLB may hold (or hold its predecessor)
 * until a gather is finished: marked accessed, so that its removal is
 * invalidated whatever happens meanwhile. A plain read then store of a
 * live leaf would also lose an accessed flag an MMU set in between. */
static inline pte_t pt_cached_leaf(pte_t v)
{
    return v | PTE_A;
}

/* --- walking ---------------------------------------------------------------------------- */

/* The tables on the way from the root to an address: table[pt_ix(l)] is the
 * level-l table, from the top down to where the walk stopped. */
struct pt_path {
    uint64_t table[MMU_LEVELS];
};

/*
 * Walks towards va and stops at the first entry that is not present or is
 * a leaf. Returns that entry's level l: p's level-l table holds it
 * (pt_slot). So l == 1 means the page table exists (its entry may be
 * empty); l > 1 with a present entry means a huge leaf maps va; l > 1 with
 * an empty entry means nothing below level l exists. O(levels).
 */
static inline unsigned pt_walk(const struct mmu_space *s, uint64_t va, struct pt_path *p)
{
    unsigned l = s->levels;
    uint64_t t = s->root;
    p->table[pt_ix(l)] = t;
    while (l > 1) {
        pte_t e = pt_table(s, t)[pte_index(va, l)];
        if (!pte_links_table(e))
            return l;
        t = pte_frame(e);
        p->table[pt_ix(--l)] = t;
    }
    return 1;
}

/* The entry of va in the level-l table of the path. */
static inline pte_t *pt_slot(const struct mmu_space *s, const struct pt_path *p, unsigned l,
                             uint64_t va)
{
    return &pt_table(s, p->table[pt_ix(l)])[pte_index(va, l)];
}

/*
 * pt_walk's answer without the path, for the calls that need only where
 * the walk ends: the entry's address (in *table the table holding it, in
 * *level its level). Kept apart so that translate and the single-page
 * shortcuts neither store nor reload a path.
 */
static inline pte_t *pt_find(const struct mmu_space *s, uint64_t va, uint64_t *table,
                             unsigned *level)
{
    uint64_t t = s->root;
    for (unsigned l = s->levels;; l--) {
        pte_t *e = &pt_table(s, t)[pte_index(va, l)];
        if (l == 1 || !pte_links_table(*e)) {
            *table = t;
            *level = l;
            return e;
        }
        t = pte_frame(*e);
    }
}

/* --- changing ---------------------------------------------------------------------------- */

/* Writes the empty entry e of table t (level l) as leaf v (present): the
 * count of t and of the space's leaves of that size go up. */
static inline void pt_add_leaf(struct mmu_space *s, uint64_t t, pte_t *e, pte_t v, unsigned l)
{
    pte_set(e, v);
    pt_count_inc(s, t);
    s->counts.leaves[pt_ix(l)]++;
    s->counts.owned += pte_owned(v); /* owned leaves are single pages */
}

/* Writes the empty entry e of page table t as the demand-zero entry v. */
static inline void pt_add_demand(struct mmu_space *s, uint64_t t, pte_t *e, pte_t v)
{
    pte_set(e, v);
    pt_count_inc(s, t);
    s->counts.demand++;
}

/* The space's counts for a used entry e that goes away (or is replaced):
 * a leaf of level l, or a demand-zero entry. The table's count is the
 * caller's. */
static inline void pt_forget_entry(struct mmu_space *s, pte_t e, unsigned l)
{
    if (pte_demand(e)) {
        s->counts.demand--;
        return;
    }
    s->counts.leaves[pt_ix(l)]--;
    if (pte_owned(e)) {
        s->counts.owned--;
        s->counts.cow -= pte_cow(e);
    }
}

/* Creates the missing tables on the way to va's level-`level` entry, from
 * tables, and returns the level-`level` table. Nothing on the way is a leaf
 * (the caller cut or checked). pt_map.c. */
uint64_t pt_make_path(struct mmu_space *s, uint64_t va, unsigned level, struct vmm_tables *tables);

/* Replaces the huge leaf at level l of p (the one holding va) by a table of
 * 512 leaves one level down, recording the huge page's invalidation in g.
 * pt_split.c. */
void pt_split_leaf(struct mmu_space *s, const struct pt_path *p, unsigned l, uint64_t va,
                   struct vmm_tables *tables, struct kmm_tlb_gather *g);

#endif /* KMM_VMM_X86_64_PT_H */
