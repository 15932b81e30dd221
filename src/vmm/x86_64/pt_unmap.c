/*
 * pt_unmap.c - taking leaves away and changing their rights.
 *
 * Both run on ranges that mmu_cut_locked has cut out of their huge leaves,
 * so every leaf they meet lies entirely inside the range. What the TLB may
 * still hold is recorded in the caller's gather: every removed leaf, and a
 * leaf whose rights shrink (pte_downgrade); frames an owned leaf held and
 * tables that empty are queued there too, released only after the
 * invalidations.
 */
#include "vmm/x86_64/pt.h"

/* How many releases dropping one leaf can queue: its frame and every table
 * above it but the root. */
static inline unsigned drop_frees(const struct mmu_space *s)
{
    return s->levels;
}

/* Frees the tables dropping a leaf at va left empty, bottom up from the
 * level-l table of p, and unlinks each from its parent. */
static inline __attribute__((always_inline)) void
free_empty_tables(struct mmu_space *s, uint64_t va, const struct pt_path *p, unsigned l,
                  struct kmm_tlb_gather *g)
{
    for (unsigned lvl = l; lvl < s->levels; lvl++) {
        uint64_t table = p->table[pt_ix(lvl)];
        if (pt_count_dec(s, table) > 0 || pt_pinned(s, va, lvl))
            return;
        pte_set(pt_slot(s, p, lvl + 1, va), 0);
        s->counts.tables[pt_ix(lvl)]--;
        vmm_gather_table(g, table, va, pt_global(s, va, 0));
        if (lvl + 1 == s->levels) { /* the root keeps its count too */
            pt_count_dec(s, p->table[pt_ix(lvl + 1)]);
            return;
        }
    }
}

/* Drops one hold of the page table of va's span (pt_held.c): if that was
 * the last and no entry is present, the table and the tables above it
 * that empty with it are queued in g, which has room for them (a fresh
 * gather). */
void mmu_unhold_table_locked(struct mmu_space *s, uint64_t va, struct kmm_tlb_gather *g)
{
    struct pt_path p;
    unsigned l = pt_walk(s, va, &p);
    KMM_ASSERT(s->k->port, l == PT_LEVEL_PT && vmm_gather_room(g, drop_frees(s)));
    uint64_t table = p.table[pt_ix(PT_LEVEL_PT)];
    KMM_ASSERT(s->k->port, pt_count(s, table) >= MMU_TABLE_HOLD);
    /* One count left for free_empty_tables to take, as for a last leaf. */
    pt_count_sub(s, table, MMU_TABLE_HOLD - 1);
    s->counts.held--;
    free_empty_tables(s, va, &p, PT_LEVEL_PT, g);
}

/* Removes the leaf of level l at va (its first address, present, or a
 * demand-zero entry, which the TLB cannot hold and which holds no frame)
 * and every table that empties, recording the invalidation (if the leaf
 * may be cached: pt_leaf_cached) and the releases in g. */
static void drop_leaf(struct mmu_space *s, uint64_t va, const struct pt_path *p, unsigned l,
                      struct kmm_tlb_gather *g)
{
    pte_t old = pt_take_leaf(pt_slot(s, p, l, va));
    if (__builtin_expect(pte_demand(old), 0)) {
        s->counts.demand--;
    } else {
        s->counts.leaves[pt_ix(l)]--;
        if (pt_leaf_cached(s, old))
            vmm_gather_range(g, va, pte_level_size(l), pt_global(s, va, old));
        if (pte_owned(old)) {
            s->counts.owned--;
            s->counts.cow -= pte_cow(old);
            vmm_gather_frame(g, pte_frame(old));
        }
    }
    free_empty_tables(s, va, p, l, g);
}

int mmu_unmap_page_locked(struct mmu_space *s, uint64_t va, struct kmm_tlb_gather *g)
{
    if (!vmm_gather_room(g, drop_frees(s)))
        return MMU_SLOW;
    struct pt_path p;
    unsigned l = pt_walk(s, va, &p);
    if (!pte_used(*pt_slot(s, &p, l, va)))
        return KMM_ENOENT;
    if (l != PT_LEVEL_PT)
        return MMU_SLOW;
    drop_leaf(s, va, &p, PT_LEVEL_PT, g);
    return KMM_OK;
}

/* The 4 KiB pages of [at, va + size) in at's page table: up to the
 * table's end or the range's. */
static inline uint64_t table_run(uint64_t va, uint64_t size, uint64_t at)
{
    uint64_t to_table_end = PTE_ENTRIES - pte_index(at, PT_LEVEL_PT);
    uint64_t to_range_end = (size - (at - va)) >> KMM_PAGE_SHIFT;
    return to_table_end < to_range_end ? to_table_end : to_range_end;
}

/*
 * drop_leaf for the run of 4 KiB leaves from at (p reaches its page table)
 * to the table's end or the range's, as long as g has room for the
 * releases: each run of leaves that may be cached is recorded with one
 * vmm_gather_run, the table's count goes down once, and the table is freed
 * if it empties. Entries found empty are added to *missing. Returns where
 * it stopped.
 */
static uint64_t drop_table_run(struct mmu_space *s, uint64_t va, uint64_t size, uint64_t at,
                               const struct pt_path *p, struct kmm_tlb_gather *g, uint64_t *missing)
{
    uint64_t n = table_run(va, size, at), i, run = 0;
    pte_t *e = pt_slot(s, p, PT_LEVEL_PT, at);
    uint32_t cleared = 0, demand = 0;
    bool global = false;
    for (i = 0; i < n; i++) {
        pte_t old = e[i];
        if (!pte_present(old)) { /* nothing for the TLB: the run of invalidations ends */
            vmm_gather_run(g, at + (i - run) * KMM_PAGE_SIZE, run, global);
            run = 0;
            if (pte_demand(old)) { /* a demand-zero page: no frame either */
                pte_set(&e[i], 0);
                demand++;
            } else { /* a caller racing on the range, or an area changed behind its back */
                (*missing)++;
            }
            continue;
        }
        if (pte_owned(old)) { /* its frame, and the tables that may empty above it */
            if (!vmm_gather_room(g, drop_frees(s)))
                break;
            s->counts.owned--;
            s->counts.cow -= pte_cow(old);
            vmm_gather_frame(g, pte_frame(old));
        }
        old = pt_take_leaf(&e[i]);
        cleared++;
        if (!pt_leaf_cached(s, old)) { /* never in a TLB: the run ends here too */
            if (run)
                vmm_gather_run(g, at + (i - run) * KMM_PAGE_SIZE, run, global);
            run = 0;
            continue;
        }
        global |= pt_global(s, at + i * KMM_PAGE_SIZE, old);
        run++;
    }
    vmm_gather_run(g, at + (i - run) * KMM_PAGE_SIZE, run, global);
    if (cleared + demand) {
        s->counts.leaves[pt_ix(PT_LEVEL_PT)] -= cleared;
        s->counts.demand -= demand;
        pt_count_sub(s, p->table[pt_ix(PT_LEVEL_PT)], cleared + demand - 1);
        free_empty_tables(s, at, p, PT_LEVEL_PT, g); /* the last one, and the frees */
    }
    return at + i * KMM_PAGE_SIZE;
}

/* mmu_unmap_locked's loop; with area (mmu_unmap_area_locked), missing
 * pages are counted and a huge leaf stops it. Returns the bytes done. */
static inline __attribute__((always_inline)) uint64_t
unmap_from(struct mmu_space *s, uint64_t va, uint64_t size, uint64_t done, struct kmm_tlb_gather *g,
           uint64_t *missing, bool area, bool *huge)
{
    uint64_t at = va + done;
    while (at - va < size) { /* at wraps to 0 at the top of the address space */
        if (!vmm_gather_room(g, drop_frees(s)))
            break;
        struct pt_path p;
        unsigned l = pt_walk(s, at, &p);
        if (l == PT_LEVEL_PT) {
            at = drop_table_run(s, va, size, at, &p, g, missing);
            continue;
        }
        if (!pte_present(*pt_slot(s, &p, l, at))) {
            at = pt_end(at, PT_LEVEL_PT);
            (*missing)++;
            continue;
        }
        if (area) {
            *huge = true;
            break;
        }
        KMM_ASSERT(s->k->port, pt_base(at, l) == at);
        drop_leaf(s, at, &p, l, g);
        at += pte_level_size(l);
    }
    return at - va;
}

uint64_t mmu_unmap_locked(struct mmu_space *s, uint64_t va, uint64_t size, uint64_t done,
                          struct kmm_tlb_gather *g)
{
    uint64_t missing = 0; /* the caller's check said every page was mapped */
    return unmap_from(s, va, size, done, g, &missing, false, 0);
}

bool mmu_unmap_area_locked(struct mmu_space *s, uint64_t va, uint64_t size, uint64_t *done,
                           struct kmm_tlb_gather *g, uint64_t *missing)
{
    bool huge = false;
    *done = unmap_from(s, va, size, *done, g, missing, true, &huge);
    return huge;
}

void mmu_protect_locked(struct mmu_space *s, uint64_t va, uint64_t size, unsigned prot,
                        struct kmm_tlb_gather *g)
{
    for (uint64_t at = va; at - va < size;) {
        struct pt_path p;
        unsigned l = pt_walk(s, at, &p);
        pte_t *e = pt_slot(s, &p, l, at);
        pte_t new = pte_with_prot(*e, prot);
        if (pte_downgrade(*e, new))
            vmm_gather_range(g, at, pte_level_size(l), pt_global(s, at, *e));
        pte_set(e, pte_present(new) ? pt_cached_leaf(new) : new);
        if (pte_present(new)) /* a demand-zero page shows nothing until touched */
            vmm_mapping_changed(s, at, pte_level_size(l), pte_leaf_frame(new, l), pte_hw_prot(new));
        at += pte_level_size(l);
    }
}
