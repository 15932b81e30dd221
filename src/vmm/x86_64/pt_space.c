/*
 * pt_space.c - a space's tables as a whole: the kernel space's shared
 * kernel half, a user space's tables, tearing them down, and kmm_check's
 * recount.
 *
 * The kernel half is shared by construction: at init the kernel space gets
 * every table of the level below the top for the kernel half (256 tables,
 * 1 MiB), and a user space's top-level table links to the same tables. A
 * kernel mapping made later changes only those shared tables and below, so
 * it appears in every space at once, and nothing ever has to be copied.
 */
#include "vmm/x86_64/pt.h"

#include <kmm/check.h>

unsigned mmu_kernel_tables(void)
{
    return 1 + KERNEL_HALF_TABLES; /* the root and the shared kernel-half tables */
}

static void space_init(struct mmu_space *s, struct kmm *k, unsigned levels, uint64_t root,
                       bool kernel)
{
    *s = (struct mmu_space){.k = k,
                            .root = root,
                            .lower_end = mmu_half_size(levels),
                            .kernel_half = mmu_kernel_half_for(levels),
                            .levels = levels,
                            .kernel = kernel,
                            .skip_unaccessed = kmm_port_tlb_skip_unaccessed(k->port)};
    s->counts.tables[pt_ix(levels)] = 1;
}

void mmu_init_kernel(struct mmu_space *s, struct kmm *k, unsigned levels, struct vmm_tables *t)
{
    space_init(s, k, levels, vmm_tables_take(k, t), true);
    pte_t *top = pt_table(s, s->root);
    for (unsigned i = KERNEL_HALF_FIRST; i < PTE_ENTRIES; i++)
        pte_set(&top[i], pte_table(vmm_tables_take(k, t), false));
    pt_count_set(s, s->root, KERNEL_HALF_TABLES);
    s->counts.tables[pt_ix(levels - 1)] = KERNEL_HALF_TABLES;
}

void mmu_init_user(struct mmu_space *s, const struct mmu_space *kernel, struct vmm_tables *t)
{
    space_init(s, kernel->k, kernel->levels, vmm_tables_take(kernel->k, t), false);
    /* Link the shared kernel half: the kernel space's top-level entries
     * never change after init, so a plain copy stays right. */
    const pte_t *kernel_top = pt_table(kernel, kernel->root);
    pte_t *top = pt_table(s, s->root);
    for (unsigned i = KERNEL_HALF_FIRST; i < PTE_ENTRIES; i++)
        pte_set(&top[i], kernel_top[i]);
    pt_count_set(s, s->root, KERNEL_HALF_TABLES);
}

/* --- tearing down ----------------------------------------------------------------------- */

/* Empties table t of level `level` and frees every table below it; owned
 * frames' references are dropped. Nothing is invalidated: no CPU may use
 * the space any more. */
static void free_below(struct mmu_space *s, uint64_t t, unsigned level)
{
    pte_t *e = pt_table(s, t);
    for (unsigned i = 0; i < PTE_ENTRIES; i++) {
        if (!pte_used(e[i]))
            continue;
        if (level > 1 && pte_links_table(e[i])) {
            uint64_t sub = pte_frame(e[i]);
            free_below(s, sub, level - 1);
            pt_count_set(s, sub, 0);
            vmm_free_table(s->k, sub);
        } else if (pte_owned(e[i])) {
            vmm_drop_owned(s->k, pte_frame(e[i]));
        }
        pte_set(&e[i], 0);
    }
}

void mmu_destroy(struct mmu_space *s)
{
    pte_t *top = pt_table(s, s->root);
    for (unsigned i = 0; i < KERNEL_HALF_FIRST; i++) {
        if (!pte_present(top[i]))
            continue;
        uint64_t sub = pte_frame(top[i]);
        free_below(s, sub, s->levels - 1);
        pt_count_set(s, sub, 0);
        vmm_free_table(s->k, sub);
        pte_set(&top[i], 0);
    }
    pt_count_set(s, s->root, 0);
    vmm_free_table(s->k, s->root);
    s->root = 0;
}

/* --- kmm_check's recount ------------------------------------------------------------------- */

struct recount {
    const void *tag;          /* the space, as reports name it */
    struct mmu_counts counts; /* what the tables hold */
    struct kmm_check_result *r;
};

/* Whether leaf e of the level is malformed: too high a level; a huge leaf
 * with a software bit or frame bits below its size (bit 12 is its PAT); a
 * COW leaf that is not owned or is writable; a write right outside a COW
 * leaf; a demand-zero entry above level 1 or with a frame or another
 * software bit. */
static bool leaf_malformed(pte_t e, unsigned level)
{
    const pte_t sw = PTE_SW_OWNED | PTE_SW_COW | PTE_SW_WRITE;
    if (level > PTE_MAX_LEAF_LEVEL)
        return true;
    if (pte_demand(e))
        return level != 1 || (e & (PTE_FRAME | sw)) != 0;
    if (level > 1) {
        pte_t below_size = PTE_FRAME & (pte_level_size(level) - 1) & ~PTE_PATPS;
        return (e & (sw | PTE_SW_DEMAND | below_size)) != 0;
    }
    if (e & PTE_SW_DEMAND)
        return true;
    if (pte_cow(e))
        return !pte_owned(e) || (e & PTE_RW) != 0;
    return (e & PTE_SW_WRITE) != 0;
}

/* Counts leaf e of the level at va, and checks its form and its frame. */
static void recount_leaf(const struct mmu_space *s, pte_t e, unsigned level, uint64_t va,
                         struct recount *c)
{
    if (pte_demand(e))
        c->counts.demand++;
    else if (level <= PTE_MAX_LEAF_LEVEL)
        c->counts.leaves[pt_ix(level)]++;
    if (leaf_malformed(e, level))
        kmm_check_problem(c->r, KMM_CHECK_CORRUPT,
                          "space %p: level-%u leaf at 0x%llx is malformed (0x%llx)", c->tag, level,
                          (unsigned long long)va, (unsigned long long)e);
    if (!pte_present(e) || !pte_owned(e))
        return;
    c->counts.owned++;
    c->counts.cow += pte_cow(e);
    if (!pmm_page_mapped(s->k, pte_frame(e)))
        kmm_check_problem(c->r, KMM_CHECK_CORRUPT,
                          "space %p: page 0x%llx owns frame 0x%llx, which holds no mapping "
                          "reference",
                          c->tag, (unsigned long long)va, (unsigned long long)pte_frame(e));
}

/* Recounts the table at t (level `level`, mapping from va) and below. */
static void recount_table(const struct mmu_space *s, uint64_t t, unsigned level, uint64_t va,
                          struct recount *c)
{
    const char *why = pmm_table_problem(s->k, t);
    if (why) {
        kmm_check_problem(c->r, KMM_CHECK_CORRUPT, "space %p: level-%u table at 0x%llx is %s",
                          c->tag, level, (unsigned long long)t, why);
        return;
    }
    c->counts.tables[pt_ix(level)]++;
    const pte_t *e = pt_table(s, t);
    uint32_t present = 0; /* entries in use: present or demand-zero */
    for (unsigned i = 0; i < PTE_ENTRIES; i++) {
        if (!pte_used(e[i]))
            continue;
        present++;
        uint64_t sub = va | ((uint64_t)i << pte_level_shift(level));
        if (level > 1 && pte_links_table(e[i]))
            recount_table(s, pte_frame(e[i]), level - 1, sub, c);
        else
            recount_leaf(s, e[i], level, sub, c);
    }
    uint32_t count = pt_count(s, t);
    if (level == PT_LEVEL_PT) { /* holds (pt_held.c) */
        c->counts.held += count / MMU_TABLE_HOLD;
        count %= MMU_TABLE_HOLD;
    }
    if (count != present)
        kmm_check_problem(c->r, KMM_CHECK_CORRUPT,
                          "space %p: level-%u table at 0x%llx counts %u entries, holds %u", c->tag,
                          level, (unsigned long long)t, pt_count(s, t), present);
}

static bool same_counts(const struct mmu_counts *a, const struct mmu_counts *b)
{
    bool same =
        a->owned == b->owned && a->held == b->held && a->cow == b->cow && a->demand == b->demand;
    for (unsigned i = 0; i < MMU_PAGE_SIZES; i++)
        same &= a->leaves[i] == b->leaves[i];
    for (unsigned i = 0; i < MMU_LEVELS; i++)
        same &= a->tables[i] == b->tables[i];
    return same;
}

/* The top level: the kernel space's all of it; a user space's lower half,
 * and that its kernel-half entries are the kernel's. Returns the present
 * entries. */
static uint32_t recount_top(const struct mmu_space *s, const struct mmu_space *kernel,
                            struct recount *c)
{
    const pte_t *top = pt_table(s, s->root), *kernel_top = pt_table(kernel, kernel->root);
    uint32_t present = 0;
    for (unsigned i = 0; i < PTE_ENTRIES; i++) {
        if (!pte_present(top[i]))
            continue;
        present++;
        bool kernel_half = i >= KERNEL_HALF_FIRST;
        if (kernel_half && !s->kernel) {
            if (top[i] != kernel_top[i])
                kmm_check_problem(c->r, KMM_CHECK_CORRUPT,
                                  "space %p: kernel-half entry %u differs from the kernel's",
                                  c->tag, i);
            continue;
        }
        uint64_t va = (uint64_t)i << pte_level_shift(s->levels);
        if (kernel_half)
            va |= s->kernel_half;
        recount_table(s, pte_frame(top[i]), s->levels - 1, va, c);
    }
    return present;
}

void mmu_check_locked(const struct mmu_space *s, const struct mmu_space *kernel, const void *tag,
                      struct kmm_check_result *r)
{
    struct recount c = {.tag = tag, .r = r};
    c.counts.tables[pt_ix(s->levels)] = 1;
    uint32_t present = recount_top(s, kernel, &c);
    if (pmm_table_problem(s->k, s->root) || pt_count(s, s->root) != present)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "space %p: root counts wrong", tag);
    if (same_counts(&c.counts, &s->counts))
        return;
    const struct mmu_counts *a = &c.counts, *b = &s->counts;
    kmm_check_problem(
        r, KMM_CHECK_CORRUPT,
        "space %p: tables hold %llu/%llu/%llu leaves of 4K/2M/1G (%llu owned, %llu cow, "
        "%llu demand-zero), counters say %llu/%llu/%llu (%llu, %llu, %llu)",
        tag, (unsigned long long)a->leaves[MMU_PAGE_4K], (unsigned long long)a->leaves[MMU_PAGE_2M],
        (unsigned long long)a->leaves[MMU_PAGE_1G], (unsigned long long)a->owned,
        (unsigned long long)a->cow, (unsigned long long)a->demand,
        (unsigned long long)b->leaves[MMU_PAGE_4K], (unsigned long long)b->leaves[MMU_PAGE_2M],
        (unsigned long long)b->leaves[MMU_PAGE_1G], (unsigned long long)b->owned,
        (unsigned long long)b->cow, (unsigned long long)b->demand);
}
