/*
 * pt_held.c - held page tables: the page table of a 2 MiB span that stays
 * allocated while its holder lives, whether or not any of its entries is
 * present. The holders are vmap blocks (vmm/vblock.c), whose held table is
 * theirs alone and whose leaves are written here without a walk, and raw
 * areas a kernel populated (kmm_kva_populate), which may share a table
 * with a neighbour: a table may carry several holds.
 *
 * A hold is MMU_TABLE_HOLD added to the table's entry count: the count
 * never falls to 0 while one is there, so no unmap frees the table, and
 * counts.held counts the holds. This is the one exception to "a table is
 * freed the moment it empties" (SPEC §4), bounded by the live holders
 * (kva_check compares the two), as Linux keeps the page tables of its
 * vmalloc space.
 */
#include "vmm/x86_64/pt.h"

_Static_assert(MMU_TABLE_HOLD > PTE_ENTRIES, "a held count is never a count of entries");

int mmu_hold_count_locked(const struct mmu_space *s, uint64_t va)
{
    struct pt_path p;
    unsigned l = pt_walk(s, va, &p);
    if (l != PT_LEVEL_PT && pte_present(*pt_slot(s, &p, l, va)))
        return KMM_EBUSY; /* a huge leaf maps the span */
    if (l == PT_LEVEL_PT && pt_count(s, p.table[pt_ix(PT_LEVEL_PT)]) > UINT32_MAX - MMU_TABLE_HOLD)
        return KMM_EBUSY; /* as many holds as a count takes */
    return (int)(l - PT_LEVEL_PT);
}

uint64_t mmu_hold_table_locked(struct mmu_space *s, uint64_t va, struct vmm_tables *t)
{
    uint64_t table = pt_make_path(s, va, PT_LEVEL_PT, t);
    pt_count_add(s, table, MMU_TABLE_HOLD);
    s->counts.held++;
    return table;
}

uint64_t mmu_held_table_locked(const struct mmu_space *s, uint64_t va)
{
    struct pt_path p;
    if (pt_walk(s, va, &p) != PT_LEVEL_PT)
        return 0;
    uint64_t table = p.table[pt_ix(PT_LEVEL_PT)];
    return pt_count(s, table) >= MMU_TABLE_HOLD ? table : 0;
}

/* The counts of n leaves written (add) or cleared in the held table. */
static inline void held_count(struct mmu_space *s, uint64_t table, uint64_t n, bool add)
{
    if (add) {
        pt_count_add(s, table, (uint32_t)n);
        s->counts.leaves[pt_ix(PT_LEVEL_PT)] += n;
        return;
    }
    uint32_t left = pt_count_sub(s, table, (uint32_t)n);
    KMM_ASSERT(s->k->port, left >= MMU_TABLE_HOLD);
    (void)left;
    s->counts.leaves[pt_ix(PT_LEVEL_PT)] -= n;
}

/* The leaf entry of va in the held table. */
static inline pte_t *held_leaf(const struct mmu_space *s, uint64_t table, uint64_t va, uint64_t n)
{
    KMM_ASSERT(s->k->port, pte_index(va, PT_LEVEL_PT) + n <= PTE_ENTRIES);
    return &pt_table(s, table)[pte_index(va, PT_LEVEL_PT)];
}

/* mmu_held_map_locked of one page: no loop, and no register to save. */
static void held_map_one(struct mmu_space *s, uint64_t table, uint64_t va, uint64_t pa,
                         unsigned prot)
{
    pte_t *e = held_leaf(s, table, va, 1);
    KMM_ASSERT(s->k->port, !pte_used(*e)); /* nor a demand-zero page */
    pte_set(e, pte_make_leaf(pa, prot, 0, PT_LEVEL_PT));
    held_count(s, table, 1, true);
}

static __attribute__((noinline)) void held_map_many(struct mmu_space *s, uint64_t table,
                                                    uint64_t va, const uint64_t *pages, uint64_t n,
                                                    unsigned prot)
{
    const pte_t bits = pte_make_leaf(0, prot, 0, PT_LEVEL_PT);
    pte_t *e = held_leaf(s, table, va, n);
    for (uint64_t i = 0; i < n; i++) {
        KMM_ASSERT(s->k->port, !pte_used(e[i])); /* nor a demand-zero page */
        pte_set(&e[i], pages[i] | bits);
    }
    held_count(s, table, n, true);
}

void mmu_held_map_locked(struct mmu_space *s, uint64_t table, uint64_t va, const uint64_t *pages,
                         uint64_t n, unsigned prot)
{
    if (n == 1)
        held_map_one(s, table, va, pages[0], prot);
    else
        held_map_many(s, table, va, pages, n, prot);
}

unsigned mmu_held_unmap_one_locked(struct mmu_space *s, uint64_t table, uint64_t va)
{
    pte_t old = pt_take_leaf(held_leaf(s, table, va, 1));
    KMM_ASSERT(s->k->port, pte_present(old) && !pte_owned(old));
    held_count(s, table, 1, false);
    if (!pt_leaf_cached(s, old))
        return 0;
    return MMU_HELD_CACHED | (pt_global(s, va, old) ? MMU_HELD_GLOBAL : 0);
}

bool mmu_held_unmap_locked(struct mmu_space *s, uint64_t table, uint64_t va, uint64_t n,
                           struct kmm_tlb_gather *g)
{
    pte_t *e = held_leaf(s, table, va, n);
    bool global = false, cached = false;
    uint64_t run = 0; /* leaves before i that may be cached, in a row */
    for (uint64_t i = 0; i < n; i++) {
        pte_t old = pt_take_leaf(&e[i]);
        KMM_ASSERT(s->k->port, pte_present(old) && !pte_owned(old));
        if (!pt_leaf_cached(s, old)) { /* never in a TLB */
            if (run)
                vmm_gather_run(g, va + (i - run) * KMM_PAGE_SIZE, run, global);
            run = 0;
            continue;
        }
        global |= pt_global(s, va + i * KMM_PAGE_SIZE, old);
        cached = true;
        run++;
    }
    vmm_gather_run(g, va + (n - run) * KMM_PAGE_SIZE, run, global);
    held_count(s, table, n, false);
    return cached;
}
