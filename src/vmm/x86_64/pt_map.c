/*
 * pt_map.c - writing leaves: mapping a free range, replacing what is
 * there, and the single-page shortcut.
 *
 * A range is cut into pieces, each one leaf: the largest size the request
 * allows that va and pa are both aligned to and the range covers whole
 * (piece_level). Tables on the way to a piece are built from the caller's
 * vmm_tables; a map of a free range counts them first (mmu_map_count_locked),
 * a replace sets aside an upper bound (mmu_replace_tables), because it may
 * drop the lock between chunks, where other operations change the tables.
 */
#include "vmm/x86_64/pt.h"

/* The level of the largest leaf the request allows. */
static unsigned top_level(const struct mmu_map *m)
{
    return m->max_page == KMM_PAGE_1G   ? PT_LEVEL_PDPT
           : m->max_page == KMM_PAGE_2M ? PT_LEVEL_PD
                                        : PT_LEVEL_PT;
}

/* The level of the leaf that maps the piece at `at` (physical address
 * phys, rem bytes left in the range): the largest up to top whose size
 * both addresses are aligned to and the range covers. */
static unsigned piece_level(uint64_t at, uint64_t phys, uint64_t rem, unsigned top)
{
    for (unsigned l = top; l > 1; l--) {
        uint64_t size = pte_level_size(l);
        if (!((at | phys) & (size - 1)) && rem >= size)
            return l;
    }
    return 1;
}

/* The level of m's piece at `at`. */
static inline unsigned piece_at(const struct mmu_map *m, uint64_t at, unsigned top)
{
    return piece_level(at, m->pa + (at - m->va), m->size - (at - m->va), top);
}

/* The address after the page table's span that holds at, or end if that
 * comes first (end is exclusive and may be 0: the top of the space). */
static inline uint64_t table_stop(uint64_t at, uint64_t va, uint64_t end)
{
    uint64_t next = pt_end(at, PT_LEVEL_PT + 1); /* a page table spans one level-2 entry */
    return next - va < end - va ? next : end;
}

/* The leaf of level l for m's piece at `at`. */
static inline pte_t piece_leaf(const struct mmu_map *m, uint64_t at, unsigned l)
{
    return pte_make_leaf(m->pa + (at - m->va), m->prot, m->cache, l) |
           (m->owned ? PTE_SW_OWNED : 0);
}

uint64_t pt_make_path(struct mmu_space *s, uint64_t va, unsigned level, struct vmm_tables *tables)
{
    uint64_t t = s->root;
    bool user_half = !mmu_in_kernel_half(s, va);
    for (unsigned l = s->levels; l > level; l--) {
        pte_t *e = &pt_table(s, t)[pte_index(va, l)];
        if (!pte_present(*e)) {
            uint64_t nt = vmm_tables_take(s->k, tables);
            pte_publish(e, pte_table(nt, user_half));
            pt_count_inc(s, t);
            s->counts.tables[pt_ix(l - 1)]++;
        }
        KMM_ASSERT(s->k->port, pte_links_table(*e));
        t = pte_frame(*e);
    }
    return t;
}

/* --- the single-page shortcut ------------------------------------------------------- */

int mmu_map_page_locked(struct mmu_space *s, const struct mmu_map *m, struct mmu_cursor *cur)
{
    if (!cur) { /* a plain page: the owned ones take the cursor */
        KMM_ASSERT(s->k->port, !m->owned);
        return mmu_map_one_locked(s, m->va, m->pa, m->prot, m->cache);
    }
    uint64_t t;
    unsigned l;
    pte_t *e = pt_find(s, m->va, &t, &l);
    if (pte_used(*e))
        return KMM_EBUSY;
    if (l != PT_LEVEL_PT)
        return MMU_SLOW;
    *cur = (struct mmu_cursor){e, t};
    return KMM_OK;
}

int mmu_map_one_locked(struct mmu_space *s, uint64_t va, uint64_t pa, unsigned prot, unsigned cache)
{
    uint64_t t;
    unsigned l;
    pte_t *e = pt_find(s, va, &t, &l);
    if (pte_used(*e))
        return KMM_EBUSY;
    if (l != PT_LEVEL_PT)
        return MMU_SLOW;
    pte_set(e, pte_make_leaf(pa, prot, cache, PT_LEVEL_PT));
    pt_count_inc(s, t);
    s->counts.leaves[pt_ix(PT_LEVEL_PT)]++;
    return KMM_OK;
}

void mmu_map_page_commit_locked(struct mmu_space *s, const struct mmu_map *m,
                                const struct mmu_cursor *cur)
{
    pt_add_leaf(s, cur->table, cur->entry, piece_leaf(m, m->va, PT_LEVEL_PT), PT_LEVEL_PT);
}

/* --- a free range ------------------------------------------------------------------------ */

/* The address prefixes of the last table counted per level, so that pieces
 * sharing a table count it once (pieces go up in address). */
struct seen_tables {
    uint64_t prefix[MMU_LEVELS];
};

static void seen_init(struct seen_tables *seen)
{
    for (unsigned i = 0; i < MMU_LEVELS; i++)
        seen->prefix[i] = UINT64_MAX;
}

/* Counts the tables of levels [from, to) on the way to at that the pieces
 * before it did not count already. */
static unsigned new_tables(struct seen_tables *seen, uint64_t at, unsigned from, unsigned to)
{
    unsigned n = 0;
    for (unsigned m = from; m < to && m < MMU_LEVELS; m++) { /* tables below the top: 1 .. 4 */
        uint64_t prefix = at >> pte_level_shift(m + 1);
        if (prefix != seen->prefix[pt_ix(m)]) {
            seen->prefix[pt_ix(m)] = prefix;
            n++;
        }
    }
    return n;
}

/* A table below a piece's entry shrinks the piece to the level where the
 * walk ends, as a replace does: tables do not stay empty, so one with
 * something mapped in the piece makes the range busy a few pieces on, and
 * an empty one is a held page table (pt_held.c: a populated raw area's),
 * which 4 KiB leaves fill (mmu_map_locked does the same). */
int mmu_map_count_locked(const struct mmu_space *s, const struct mmu_map *m)
{
    struct seen_tables seen;
    seen_init(&seen);
    unsigned missing = 0, top = top_level(m);
    for (uint64_t at = m->va; at - m->va < m->size;) {
        unsigned piece = piece_at(m, at, top);
        struct pt_path p;
        unsigned l = pt_walk(s, at, &p);
        if (l < piece)
            piece = l;
        if (pte_used(*pt_slot(s, &p, l, at)))
            return KMM_EBUSY;
        missing += new_tables(&seen, at, piece, l); /* levels piece .. l-1 are missing */
        if (piece == PT_LEVEL_PT) {                 /* 4 KiB pieces to the table's end: one walk */
            uint64_t stop = table_stop(at, m->va, m->va + m->size);
            if (l == PT_LEVEL_PT) /* the table exists: each entry must be free */
                for (const pte_t *e = pt_slot(s, &p, l, at) + 1; (at += KMM_PAGE_SIZE) != stop; e++)
                    if (pte_used(*e))
                        return KMM_EBUSY;
            at = stop;
            continue;
        }
        at += pte_level_size(piece);
    }
    return (int)missing;
}

/* mmu_map_locked for a demand-zero map: 4 KiB entries, none present; one
 * walk per page table. */
static void map_demand_locked(struct mmu_space *s, const struct mmu_map *m, struct vmm_tables *t)
{
    const pte_t v = pte_make_demand(m->prot, m->cache);
    for (uint64_t at = m->va; at - m->va < m->size;) {
        uint64_t stop = table_stop(at, m->va, m->va + m->size);
        uint64_t table = pt_make_path(s, at, PT_LEVEL_PT, t);
        for (pte_t *e = &pt_table(s, table)[pte_index(at, PT_LEVEL_PT)]; at != stop;
             at += KMM_PAGE_SIZE, e++)
            pt_add_demand(s, table, e, v);
    }
}

void mmu_map_locked(struct mmu_space *s, const struct mmu_map *m, struct vmm_tables *t)
{
    if (m->demand) {
        map_demand_locked(s, m, t);
        return;
    }
    unsigned top = top_level(m);
    for (uint64_t at = m->va; at - m->va < m->size;) {
        unsigned piece = piece_at(m, at, top);
        uint64_t table = pt_make_path(s, at, piece, t);
        pte_t *e = &pt_table(s, table)[pte_index(at, piece)];
        while (piece > PT_LEVEL_PT && pte_links_table(*e)) { /* a held table below */
            table = pte_frame(*e);
            e = &pt_table(s, table)[pte_index(at, --piece)];
        }
        if (piece == PT_LEVEL_PT) { /* and 4 KiB pieces to the table's end: one walk */
            for (uint64_t stop = table_stop(at, m->va, m->va + m->size); at != stop;
                 at += KMM_PAGE_SIZE, e++)
                pt_add_leaf(s, table, e, piece_leaf(m, at, PT_LEVEL_PT), PT_LEVEL_PT);
            continue;
        }
        pt_add_leaf(s, table, e, piece_leaf(m, at, piece), piece);
        at += pte_level_size(piece);
    }
}

/* --- an array of single pages ----------------------------------------------------------- */

int mmu_map_pages_count_locked(const struct mmu_space *s, const struct mmu_pages *m)
{
    struct seen_tables seen;
    seen_init(&seen);
    unsigned missing = 0;
    uint64_t end = m->va + m->n * KMM_PAGE_SIZE;
    for (uint64_t at = m->va; at != end;) {
        uint64_t stop = table_stop(at, m->va, end);
        struct pt_path p;
        unsigned l = pt_walk(s, at, &p);
        if (l == PT_LEVEL_PT) { /* the table exists: each entry must be free */
            for (const pte_t *e = pt_slot(s, &p, l, at); at != stop; at += KMM_PAGE_SIZE, e++)
                if (pte_used(*e))
                    return KMM_EBUSY;
            continue;
        }
        if (pte_present(*pt_slot(s, &p, l, at))) /* a huge leaf */
            return KMM_EBUSY;
        missing += new_tables(&seen, at, PT_LEVEL_PT, l); /* levels 1 .. l-1 */
        at = stop;
    }
    return (int)missing;
}

/* Writes n of m's leaves from pa, at at's entries of table (free ones). */
static void write_run(struct mmu_space *s, const struct mmu_pages *m, uint64_t table, uint64_t at,
                      const uint64_t *pa, uint32_t n)
{
    const pte_t bits =
        pte_make_leaf(0, m->prot, m->cache, PT_LEVEL_PT) | (m->owned ? PTE_SW_OWNED : 0);
    pte_t *e = &pt_table(s, table)[pte_index(at, PT_LEVEL_PT)];
    for (uint32_t i = 0; i < n; i++)
        pte_set(&e[i], pa[i] | bits);
    pt_count_add(s, table, n);
    s->counts.leaves[pt_ix(PT_LEVEL_PT)] += n;
    s->counts.owned += m->owned ? n : 0;
}

void mmu_map_pages_locked(struct mmu_space *s, const struct mmu_pages *m, struct vmm_tables *t)
{
    const uint64_t *pa = m->pages;
    uint64_t end = m->va + m->n * KMM_PAGE_SIZE;
    for (uint64_t at = m->va; at != end;) {
        uint64_t stop = table_stop(at, m->va, end);
        uint32_t n = (uint32_t)((stop - at) >> KMM_PAGE_SHIFT);
        write_run(s, m, pt_make_path(s, at, PT_LEVEL_PT, t), at, pa, n);
        pa += n;
        at = stop;
    }
}

uint64_t mmu_map_pages_table_locked(const struct mmu_space *s, const struct mmu_pages *m,
                                    bool *busy)
{
    uint64_t end = m->va + m->n * KMM_PAGE_SIZE;
    *busy = false;
    if (table_stop(m->va, m->va, end) != end)
        return 0; /* more than one table */
    struct pt_path p;
    unsigned l = pt_walk(s, m->va, &p);
    if (l != PT_LEVEL_PT) {
        *busy = pte_present(*pt_slot(s, &p, l, m->va)); /* a huge leaf */
        return 0;
    }
    /* The entry after the range too, when this table holds it: an area's
     * next page or its guard page, unmapped either way; a parked range is
     * taken without a lookup, and this is where its guard page is seen. */
    const pte_t *e = pt_slot(s, &p, l, m->va);
    uint64_t look = m->n + (pte_index(m->va, PT_LEVEL_PT) + m->n < PTE_ENTRIES);
    for (uint64_t i = 0; i < look; i++)
        if (pte_used(e[i])) {
            *busy = true;
            return 0;
        }
    return p.table[pt_ix(PT_LEVEL_PT)];
}

void mmu_map_pages_in_locked(struct mmu_space *s, uint64_t table, const struct mmu_pages *m)
{
    write_run(s, m, table, m->va, m->pages, (uint32_t)m->n);
}

/* --- replacing ---------------------------------------------------------------------------- */

/* Each piece needs at most the tables on its path down to its leaf's level;
 * a huge leaf split on the way becomes one of those; and no table is freed
 * during the replacement, so each is counted once. */
unsigned mmu_replace_tables(const struct mmu_space *s, const struct mmu_map *m)
{
    struct seen_tables seen;
    seen_init(&seen);
    /* In the kernel half the tables below the top always exist. */
    unsigned below_top = mmu_in_kernel_half(s, m->va) ? s->levels - 2 : s->levels - 1;
    unsigned n = 0, top = top_level(m);
    for (uint64_t at = m->va; at - m->va < m->size;) {
        unsigned piece = piece_at(m, at, top);
        n += new_tables(&seen, at, piece, below_top + 1);
        at += pte_level_size(piece);
    }
    return n;
}

/* Replaces whatever maps the piece at `at` (level piece at most) by m's
 * leaf. Huge leaves larger than the piece are split (only those cut by the
 * range's ends stay split: the others are overwritten piece by piece), and
 * the piece shrinks to the level where tables already exist. Returns the
 * bytes the piece covered. */
static uint64_t replace_piece(struct mmu_space *s, const struct mmu_map *m, uint64_t at,
                              unsigned piece, struct vmm_tables *t, struct kmm_tlb_gather *g)
{
    struct pt_path p;
    unsigned l = pt_walk(s, at, &p);
    while (l > piece && pte_present(*pt_slot(s, &p, l, at))) {
        pt_split_leaf(s, &p, l, at, t, g);
        l = pt_walk(s, at, &p);
    }
    if (l < piece)
        piece = l; /* tables below: fill them instead */
    uint64_t table = l > piece ? pt_make_path(s, at, piece, t) : p.table[pt_ix(piece)];
    pte_t *e = &pt_table(s, table)[pte_index(at, piece)];
    pte_t old = *e;
    if (pte_used(old)) {
        /* Counts kept exact: the lock may drop between chunks. A
         * demand-zero entry has nothing to invalidate or release. */
        pt_forget_entry(s, old, piece);
        if (pte_present(old))
            vmm_gather_range(g, at, pte_level_size(piece), pt_global(s, at, old));
        if (pte_owned(old))
            vmm_gather_frame(g, pte_frame(old));
        pte_t v = piece_leaf(m, at, piece);
        pte_set(e, pte_present(old) ? pt_cached_leaf(v) : v); /* until g is finished */
        s->counts.leaves[pt_ix(piece)]++;
        s->counts.owned += m->owned;
    } else {
        pt_add_leaf(s, table, e, piece_leaf(m, at, piece), piece);
    }
    return pte_level_size(piece);
}

uint64_t mmu_replace_locked(struct mmu_space *s, const struct mmu_map *m, uint64_t done,
                            struct vmm_tables *t, struct kmm_tlb_gather *g)
{
    unsigned top = top_level(m);
    uint64_t at = m->va + done;
    while (at - m->va < m->size && vmm_gather_room(g, 1))
        at += replace_piece(s, m, at, piece_at(m, at, top), t, g);
    return at - m->va;
}
