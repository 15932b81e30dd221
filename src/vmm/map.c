/*
 * map.c - range operations on an address space: map, unmap, protect,
 * translate, query.
 *
 * Every operation first validates, under the space's lock, everything it
 * will change (arguments, the physical range, that the pages are mapped or
 * not, how many tables it must create or split), then changes entries with
 * code that cannot fail. Table pages it may need are allocated before the
 * change: with KMM_GFP_ATOMIC under the lock, or, if that fails, outside it
 * with reclaim allowed, after which the count is taken again.
 *
 * Leaves come in three sizes: 4 KiB entries of a page table (level 1), and
 * 2 MiB and 1 GiB entries with PS in a directory (level 2) or directory
 * pointer table (level 3). A range is cut into pieces, each one leaf: the
 * largest size the flags allow that va and pa are both aligned to and the
 * range covers whole (piece_level). An unmap or protect whose range cuts
 * through a huge leaf splits that leaf first (split_cut), so the work proper
 * only ever meets leaves entirely inside its range.
 *
 * Invalidations and releases go through a TLB gather (tlb.c) that is
 * finished after the lock is dropped, because a shootdown may wait for
 * other CPUs. An unmap that releases more than a gather holds proceeds in
 * chunks, finishing the gather between them. Operations on overlapping
 * ranges of one space must not run at the same time (a kernel serialises
 * them as it does mmap and munmap); operations on other ranges may.
 *
 * Entry counts: each table page's descriptor counts its present entries
 * (pmm_table_entries), so an unmap frees a table the moment it empties,
 * except the top-level table and, in the kernel half, the tables just below
 * it, which every space shares.
 */
#include "internal.h"

#include <kmm/page.h>

#include "pmm/pmm.h"
#include "vmm/vmm.h"

static inline pte_t *table(struct kmm *k, uint64_t pa)
{
    return (pte_t *)kmm_phys_to_virt(k, pa);
}

static inline unsigned levels(const struct kmm_aspace *as)
{
    return as->k->vm.levels;
}

static inline bool in_kernel_half(const struct kmm_aspace *as, uint64_t va)
{
    return va >= as->k->vm.kernel_half;
}

/* The first address of the level-`level` entry's span that holds va. */
static inline uint64_t level_base(uint64_t va, unsigned level)
{
    return va & ~(pte_level_size(level) - 1);
}

/* The tables on the way from the root to va: path[l] is the level-l table,
 * for l from the top down to the level where the walk stopped. */
struct path {
    uint64_t table[6];
};

/*
 * Walks towards va and stops at the first entry that is not present or is
 * a leaf. Returns that entry's level l: p->table[l] is the table holding it
 * (slot(as, p, l, va)). So l == 1 means the page table exists (its entry
 * may be empty); l > 1 with a present entry means a huge leaf maps va; l >
 * 1 with an empty entry means nothing below level l exists.
 */
static unsigned walk(const struct kmm_aspace *as, uint64_t va, struct path *p)
{
    struct kmm *k = as->k;
    unsigned l = levels(as);
    uint64_t t = as->root;
    p->table[l] = t;
    while (l > 1) {
        pte_t e = table(k, t)[pte_index(va, l)];
        if ((e & (PTE_P | PTE_PS)) != PTE_P) /* empty, or a leaf (PS above level 1) */
            return l;
        t = pte_frame(e);
        p->table[--l] = t;
    }
    return 1;
}

/*
 * walk's answer without the path, for the calls that need only where the
 * walk ends: the entry's address (in *table the table holding it, in
 * *level its level). Kept apart from walk so that translate and the
 * single-page map neither store nor reload a path.
 */
static inline pte_t *find_entry(const struct kmm_aspace *as, uint64_t va, uint64_t *table_pa,
                                unsigned *level)
{
    struct kmm *k = as->k;
    uint64_t t = as->root;
    for (unsigned l = levels(as);; l--) {
        pte_t *e = &table(k, t)[pte_index(va, l)];
        if (l == 1 || (*e & (PTE_P | PTE_PS)) != PTE_P) {
            *table_pa = t;
            *level = l;
            return e;
        }
        t = pte_frame(*e);
    }
}

/* The entry of va in the level-l table of the path. */
static inline pte_t *slot(const struct kmm_aspace *as, const struct path *p, unsigned l,
                          uint64_t va)
{
    return &table(as->k, p->table[l])[pte_index(va, l)];
}

/* A table that must never be freed: the root, and in the kernel half the
 * tables right below it (shared by every space). */
static bool table_is_pinned(const struct kmm_aspace *as, uint64_t va, unsigned level)
{
    return level == levels(as) || (level == levels(as) - 1 && in_kernel_half(as, va));
}

/* Whether the TLB may hold a global translation for a leaf of the space. */
static inline bool leaf_global(const struct kmm_aspace *as, uint64_t va, pte_t e)
{
    return (e & PTE_G) != 0 || in_kernel_half(as, va);
}

/* --- misuse ------------------------------------------------------------------ */

int vm_misuse(struct kmm *k, int err, const char *fn, uint64_t va, uint64_t size, const char *why,
              const void *caller)
{
    return kmm_misuse(k, KMM_LAYER_VM, kmm_misuse_of_error(err), err, caller,
                      "%s(0x%llx, size 0x%llx): %s", fn, (unsigned long long)va,
                      (unsigned long long)size, why);
}

int vm_misuse_handle(struct kmm *k, const char *fn, uint64_t va, uint64_t size, const char *why,
                     const void *caller)
{
    return kmm_misuse(k, KMM_LAYER_VM, KMM_MISUSE_BAD_HANDLE, KMM_EINVAL, caller,
                      "%s(0x%llx, size 0x%llx): %s", fn, (unsigned long long)va,
                      (unsigned long long)size, why);
}

/* A refused call on as: counted and logged when as is a space (otherwise
 * there is no instance to count it in). Out of line and cold, so that the
 * callers' common path stays short. */
static __attribute__((noinline, cold)) int refuse(const struct kmm_aspace *as, const char *fn,
                                                  uint64_t va, uint64_t size, const char *why,
                                                  const void *caller)
{
    if (!as || as->canary != KMM_ASPACE_CANARY)
        return KMM_EINVAL;
    return vm_misuse(as->k, KMM_EINVAL, fn, va, size, why, caller);
}

/* Checks a range's shape; returns NULL if valid, else why not. */
static const char *bad_range(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    if (!as || as->canary != KMM_ASPACE_CANARY)
        return "not an address space";
    if ((va | size) & (KMM_PAGE_SIZE - 1))
        return "address or size not page aligned";
    if (size == 0)
        return "size 0";
    uint64_t last = va + size - 1;
    if (last < va)
        return "range wraps around";
    if (!pte_canonical(va, levels(as)) || !pte_canonical(last, levels(as)))
        return "address not canonical";
    if (in_kernel_half(as, va) != in_kernel_half(as, last))
        return "range crosses between the halves";
    if (!as->kernel && in_kernel_half(as, va))
        return "a user space cannot change the kernel half";
    return 0;
}

/* Checks the gather of an unmap or protect; returns NULL if valid. A gather
 * names the space whose root its shootdown goes to, and the frames it
 * releases are this space's: one begun on another space would invalidate
 * the wrong TLB entries before this space's tables are freed. */
static const char *bad_gather(const struct kmm_aspace *as, const struct kmm_tlb_gather *g)
{
    if (!g)
        return "no gather (NULL)";
    if (g->as != as)
        return "the gather was begun on another address space";
    return 0;
}

/* Checks a protection for the range; returns NULL if valid. */
static const char *bad_prot(const struct kmm_aspace *as, uint64_t va, unsigned prot)
{
    if ((prot & KMM_PROT_GLOBAL) && (!as->kernel || (prot & KMM_PROT_USER)))
        return "global mappings are for the kernel space only";
    if ((prot & KMM_PROT_USER) && in_kernel_half(as, va))
        return "user access in the kernel half";
    return 0;
}

/* --- table stash -------------------------------------------------------------- */

/* Table pages set aside for one operation, linked through their first word
 * (they are zeroed again when used). */
struct stash {
    uint64_t head;
    unsigned n;
};

static void stash_push(struct kmm *k, struct stash *s, uint64_t pa)
{
    *(uint64_t *)kmm_phys_to_virt(k, pa) = s->head;
    s->head = pa;
    s->n++;
}

static uint64_t stash_pop(struct kmm *k, struct stash *s)
{
    uint64_t pa = s->head;
    KMM_ASSERT(k->port, pa != 0);
    uint64_t *first = kmm_phys_to_virt(k, pa);
    s->head = *first;
    *first = 0;
    s->n--;
    return pa;
}

static void stash_release(struct kmm *k, struct stash *s)
{
    while (s->n)
        pmm_table_free(k, stash_pop(k, s));
}

/* Fills the stash to `need` tables. Under the lock only atomically; returns
 * whether the stash holds enough. */
static bool stash_fill(struct kmm *k, struct stash *s, unsigned need, kmm_gfp_t flags)
{
    while (s->n < need) {
        uint64_t pa = pmm_table_alloc(k, flags);
        if (!pa)
            return false;
        stash_push(k, s, pa);
    }
    return true;
}

/*
 * Takes the space's lock with the stash holding what `count` says the
 * operation needs: count runs under the lock and returns the tables needed,
 * or a negative error that ends the operation (the lock is dropped, the
 * stash emptied). Tables are taken atomically under the lock; if that fails
 * the lock is dropped, the tables allocated with reclaim allowed, and the
 * count taken again, since the tables may have changed meanwhile. Returns
 * KMM_OK with the lock held and *irq set, or the error (lock not held).
 */
typedef int (*count_fn)(const struct kmm_aspace *as, const void *op);

static int lock_with_tables(struct kmm_aspace *as, struct stash *s, count_fn count, const void *op,
                            kmm_irqstate_t *irq)
{
    for (;;) {
        *irq = kmm_lock_irqsave(&as->lock);
        int need = count(as, op);
        if (need < 0) {
            kmm_unlock_irqrestore(&as->lock, *irq);
            stash_release(as->k, s);
            return need;
        }
        if (stash_fill(as->k, s, (unsigned)need, KMM_GFP_ATOMIC))
            return KMM_OK;
        kmm_unlock_irqrestore(&as->lock, *irq);
        if (!stash_fill(as->k, s, (unsigned)need, 0)) {
            stash_release(as->k, s);
            return KMM_ENOMEM;
        }
    }
}

/* Creates the missing tables on the way to va's level-`level` entry, from
 * the stash, and returns the level-`level` table. Nothing on the way is a
 * leaf (the caller split or checked). */
static uint64_t make_path(struct kmm_aspace *as, uint64_t va, unsigned level, struct stash *s)
{
    struct kmm *k = as->k;
    uint64_t t = as->root;
    bool user_half = !in_kernel_half(as, va);
    for (unsigned l = levels(as); l > level; l--) {
        pte_t *e = &table(k, t)[pte_index(va, l)];
        if (!pte_present(*e)) {
            uint64_t nt = stash_pop(k, s);
            pte_publish(e, pte_table(nt, user_half));
            (*pmm_table_entries(&k->pmm, t))++;
            as->tables[l - 1]++;
        }
        KMM_ASSERT(k->port, !pte_is_leaf(*e, l));
        t = pte_frame(*e);
    }
    return t;
}

/* --- splitting ------------------------------------------------------------------ */

/*
 * Replaces the huge leaf at level l of p (the one holding va) by a table of
 * 512 leaves one level down that map the same bytes with the same rights
 * and cache mode. The new table is filled before it is linked, so a walker
 * sees either the huge leaf or the complete table. The TLB may still hold
 * the huge translation, and a later change to one small leaf must not be
 * shadowed by it: the huge page's invalidation is recorded in g.
 */
static void split_leaf(struct kmm_aspace *as, const struct path *p, unsigned l, uint64_t va,
                       struct stash *s, struct kmm_tlb_gather *g)
{
    struct kmm *k = as->k;
    pte_t *e = slot(as, p, l, va);
    pte_t old = *e;
    uint64_t nt = stash_pop(k, s);
    pte_t *child = table(k, nt);
    pte_t first = pte_split_first(old, l);
    uint64_t step = pte_level_size(l - 1);
    for (unsigned i = 0; i < PTE_ENTRIES; i++)
        pte_set(&child[i], first + i * step);
    *pmm_table_entries(&k->pmm, nt) = PTE_ENTRIES;
    pte_publish(e, pte_table(nt, !in_kernel_half(as, va)));
    as->tables[l - 1]++;
    as->leaves[l]--;
    as->leaves[l - 1] += PTE_ENTRIES;
    vmm_gather_range(g, level_base(va, l), pte_level_size(l), leaf_global(as, va, old));
}

/* The splits that make a leaf boundary fall at address c: the huge leaf
 * holding c, then the smaller leaf holding c in what it splits into, as
 * long as c is not aligned to it. Stores the first address of each leaf to
 * split and returns how many there are (0 .. PTE_MAX_LEAF_LEVEL - 1). */
static unsigned cut_splits(const struct kmm_aspace *as, uint64_t c, uint64_t base[])
{
    struct path p;
    unsigned l = walk(as, c, &p), n = 0;
    if (l == 1 || !pte_present(*slot(as, &p, l, c)))
        return 0;
    for (unsigned j = l; j > 1 && level_base(c, j) != c; j--)
        base[n++] = level_base(c, j) | j; /* the level in the low bits */
    return n;
}

/* Splits huge leaves until a leaf boundary falls at c (tables from s). */
static void split_cut(struct kmm_aspace *as, uint64_t c, struct stash *s, struct kmm_tlb_gather *g)
{
    for (;;) {
        struct path p;
        unsigned l = walk(as, c, &p);
        if (l == 1 || !pte_present(*slot(as, &p, l, c)) || level_base(c, l) == c)
            return;
        split_leaf(as, &p, l, c, s, g);
    }
}

/* The tables that cutting [va, va + size) out of its huge leaves needs: one
 * per split, and the two ends may share one (a range inside a 1 GiB page).
 * The end is no cut when the range reaches the top of the address space. */
static unsigned range_cut_tables(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    uint64_t first[PTE_MAX_LEAF_LEVEL], last[PTE_MAX_LEAF_LEVEL];
    unsigned nf = cut_splits(as, va, first);
    unsigned nl = va + size != 0 ? cut_splits(as, va + size, last) : 0, n = nf;
    for (unsigned i = 0; i < nl; i++) {
        bool shared = false;
        for (unsigned j = 0; j < nf; j++)
            shared |= last[i] == first[j];
        n += !shared;
    }
    return n;
}

static void split_range_ends(struct kmm_aspace *as, uint64_t va, uint64_t size, struct stash *s,
                             struct kmm_tlb_gather *g)
{
    split_cut(as, va, s, g);
    if (va + size != 0)
        split_cut(as, va + size, s, g);
}

/* Removes the leaf of level l at va (its first address, present) and every
 * table that empties, recording the invalidation and the releases in g. */
static void drop_leaf(struct kmm_aspace *as, uint64_t va, const struct path *p, unsigned l,
                      struct kmm_tlb_gather *g)
{
    struct kmm *k = as->k;
    pte_t *e = slot(as, p, l, va);
    pte_t old = *e;
    pte_set(e, 0);
    as->leaves[l]--;
    vmm_gather_range(g, va, pte_level_size(l), leaf_global(as, va, old));
    if (old & PTE_SW_OWNED) {
        as->owned--;
        vmm_gather_free(g, pte_frame(old), false);
    }
    /* Free the tables this leaves empty, bottom up. */
    for (unsigned lvl = l; lvl < levels(as); lvl++) {
        uint32_t *count = pmm_table_entries(&k->pmm, p->table[lvl]);
        KMM_ASSERT(k->port, *count > 0);
        if (--*count > 0 || table_is_pinned(as, va, lvl))
            break;
        pte_set(slot(as, p, lvl + 1, va), 0);
        as->tables[lvl]--;
        vmm_gather_free(g, p->table[lvl], true);
        if (lvl + 1 == levels(as)) { /* the root keeps its count too */
            (*pmm_table_entries(&k->pmm, p->table[lvl + 1]))--;
            break;
        }
    }
}

static void mirror(struct kmm_aspace *as, uint64_t va, uint64_t size, uint64_t pa, unsigned prot)
{
    unsigned port_prot = 0;
    if (prot) {
        port_prot = KMM_PORT_PROT_READ;
        if (prot & KMM_PROT_WRITE)
            port_prot |= KMM_PORT_PROT_WRITE;
        if (prot & KMM_PROT_EXEC)
            port_prot |= KMM_PORT_PROT_EXEC;
    }
    struct kmm_port_mapping m = {
        .root = as->root, .va = va, .len = size, .pa = pa, .prot = port_prot};
    kmm_port_mapping_changed(as->k->port, &m);
}

/* --- map ----------------------------------------------------------------------- */

#define MAP_FLAGS                                                                                  \
    (KMM_PROT_MASK | KMM_MAP_OWNED | KMM_MAP_REPLACE | KMM_MAP_HUGE | KMM_MAP_HUGE_1G |            \
     KMM_MAP_ALIAS | KMM_CACHE_MASK)

/* The largest physical address an entry can hold (MAXPHYADDR at most 52). */
#define PHYS_LIMIT (UINT64_C(1) << 52)

/* Checks everything about a map that does not depend on the tables. */
static inline __attribute__((always_inline)) int check_map(struct kmm_aspace *as, uint64_t va,
                                                           uint64_t pa, uint64_t size,
                                                           unsigned flags, const void *caller)
{
    unsigned cache = flags & KMM_CACHE_MASK;
    const char *why = bad_range(as, va, size);
    if (!why && (pa & (KMM_PAGE_SIZE - 1)))
        why = "physical address not page aligned";
    if (!why && (pa >= PHYS_LIMIT || size > PHYS_LIMIT - pa))
        why = "physical range beyond 52 bits";
    if (!why && (flags & ~MAP_FLAGS))
        why = "unknown flags";
    if (!why && cache > KMM_CACHE_WC)
        why = "unknown cache mode";
    if (!why)
        why = bad_prot(as, va, flags & KMM_PROT_MASK);
    struct kmm *k = as && as->canary == KMM_ASPACE_CANARY ? as->k : 0;
    if (why) {
        if (!k)
            return KMM_EINVAL;
        return vm_misuse(k, KMM_EINVAL, "kmm_vm_map", va, size, why, caller);
    }
    uint64_t ram = pmm_ram_bytes(k, pa, size);
    if (!cache && ram != size)
        return vm_misuse(k, KMM_ERANGE, "kmm_vm_map", va, size,
                         "physical range is not RAM (device memory needs a cache mode)", caller);
    if ((flags & KMM_MAP_OWNED) && ram != size)
        return vm_misuse(k, KMM_ERANGE, "kmm_vm_map", va, size, "owned frames must be RAM", caller);
    if (cache && cache != KMM_CACHE_WB && ram && !(flags & KMM_MAP_ALIAS))
        return vm_misuse(k, KMM_EINVAL, "kmm_vm_map", va, size,
                         "RAM in a cache mode other than write-back aliases the direct map "
                         "(KMM_MAP_ALIAS accepts that)",
                         caller);
    if (flags & KMM_MAP_OWNED) {
        for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE)
            if (!pmm_is_allocated_page(k, pa + off))
                return vm_misuse(k, KMM_ESTATE, "kmm_vm_map", va, size,
                                 "an owned frame is not an allocated single page", caller);
    }
    return KMM_OK;
}

struct map_op {
    uint64_t va, pa, size;
    unsigned top;   /* the largest leaf level the flags allow */
    unsigned prot;  /* KMM_PROT_* */
    unsigned cache; /* KMM_CACHE_*, 0 for write-back */
    pte_t owned;    /* PTE_SW_OWNED or 0 */
    bool area;      /* the kernel virtual area allocator maps its own area */
};

/* Why the kernel virtual area window keeps a page of the map from it, or
 * NULL. Called with the space's lock held, which makes it exact against
 * reservations (kva_map_conflict); the window's own maps skip it. */
static inline const char *window_keeps_locked(const struct kmm_aspace *as, const struct map_op *op)
{
    if (op->area || !as->kernel || !kva_window_meets(&as->k->kva, op->va, op->size))
        return 0;
    return kva_map_conflict(as->k, op->va, op->size);
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

/* The leaf of level l for the piece at `at`. */
static inline pte_t piece_leaf(const struct map_op *op, uint64_t at, unsigned l)
{
    return pte_make_leaf(op->pa + (at - op->va), op->prot, op->cache, l) | op->owned;
}

/* Counts the tables of levels [from, to) on the way to at that the pieces
 * before it (lower addresses: pieces go up) did not count already:
 * last_prefix[m] is the address prefix of the last level-m table counted. */
static unsigned new_tables(uint64_t last_prefix[6], uint64_t at, unsigned from, unsigned to)
{
    unsigned n = 0;
    for (unsigned m = from; m < to && m < 5; m++) { /* tables are of levels 1 .. 4 */
        uint64_t prefix = at >> pte_level_shift(m + 1);
        if (prefix != last_prefix[m]) {
            last_prefix[m] = prefix;
            n++;
        }
    }
    return n;
}

/* For a replacing map: the most tables it can create, whatever is mapped
 * now (it may drop the lock between chunks, where other operations change
 * the tables). Each piece needs at most the tables on its path down to its
 * leaf's level; a huge leaf split on the way becomes one of those; and no
 * table is freed during the replacement, so each is counted once. */
static unsigned replace_bound(const struct kmm_aspace *as, const struct map_op *op)
{
    uint64_t last_prefix[6] = {UINT64_MAX, UINT64_MAX, UINT64_MAX,
                               UINT64_MAX, UINT64_MAX, UINT64_MAX};
    /* In the kernel half the tables below the top always exist. */
    unsigned below_top = in_kernel_half(as, op->va) ? levels(as) - 2 : levels(as) - 1, n = 0;
    for (uint64_t at = op->va; at - op->va < op->size;) {
        unsigned piece = piece_level(at, op->pa + (at - op->va), op->size - (at - op->va), op->top);
        n += new_tables(last_prefix, at, piece, below_top + 1);
        at += pte_level_size(piece);
    }
    return n;
}

/* For a map without REPLACE (count_fn): KMM_EBUSY if any page of the range
 * is mapped, else the tables its pieces need. A table below a piece's entry
 * would hold something mapped inside the piece: tables do not stay empty. */
static int count_map(const struct kmm_aspace *as, const void *opv)
{
    const struct map_op *op = opv;
    uint64_t last_prefix[6] = {UINT64_MAX, UINT64_MAX, UINT64_MAX,
                               UINT64_MAX, UINT64_MAX, UINT64_MAX};
    unsigned missing = 0;
    for (uint64_t at = op->va; at - op->va < op->size;) {
        unsigned piece = piece_level(at, op->pa + (at - op->va), op->size - (at - op->va), op->top);
        struct path p;
        unsigned l = walk(as, at, &p);
        if (l < piece || pte_present(*slot(as, &p, l, at)))
            return KMM_EBUSY;
        missing += new_tables(last_prefix, at, piece, l); /* levels piece .. l-1 are missing */
        at += pte_level_size(piece);
    }
    return (int)missing;
}

/* Maps the pieces of a range that count_map found free. Cannot fail. */
static void map_free_range(struct kmm_aspace *as, const struct map_op *op, struct stash *s)
{
    struct kmm *k = as->k;
    for (uint64_t at = op->va; at - op->va < op->size;) {
        unsigned piece = piece_level(at, op->pa + (at - op->va), op->size - (at - op->va), op->top);
        uint64_t t = make_path(as, at, piece, s);
        pte_set(&table(k, t)[pte_index(at, piece)], piece_leaf(op, at, piece));
        (*pmm_table_entries(&k->pmm, t))++;
        as->leaves[piece]++;
        as->owned += op->owned != 0; /* owned pieces are single pages */
        at += pte_level_size(piece);
    }
}

/*
 * Maps a range over whatever is there (REPLACE). Huge leaves larger than a
 * piece are split (only those cut by the range's ends stay split: the
 * others are overwritten piece by piece), a piece shrinks to the level
 * where tables already exist, and replaced leaves are invalidated and, if
 * owned, released through g. No table is freed, so the stash's upper bound
 * holds. Drops the lock between chunks when g fills; cannot fail.
 */
static void map_over_range(struct kmm_aspace *as, const struct map_op *op, struct stash *s,
                           struct kmm_tlb_gather *g, kmm_irqstate_t *irq)
{
    struct kmm *k = as->k;
    for (uint64_t at = op->va; at - op->va < op->size;) {
        if (!vmm_gather_room(g, 1)) {
            kmm_unlock_irqrestore(&as->lock, *irq);
            kmm_tlb_finish(g);
            *irq = kmm_lock_irqsave(&as->lock);
        }
        unsigned piece = piece_level(at, op->pa + (at - op->va), op->size - (at - op->va), op->top);
        struct path p;
        unsigned l = walk(as, at, &p);
        while (l > piece && pte_present(*slot(as, &p, l, at))) {
            split_leaf(as, &p, l, at, s, g);
            l = walk(as, at, &p);
        }
        if (l < piece)
            piece = l; /* tables below: fill them instead */
        uint64_t t = l > piece ? make_path(as, at, piece, s) : p.table[piece];
        pte_t *e = &table(k, t)[pte_index(at, piece)];
        pte_t old = *e;
        if (pte_present(old)) {
            vmm_gather_range(g, at, pte_level_size(piece), leaf_global(as, at, old));
            if (old & PTE_SW_OWNED) {
                as->owned--;
                vmm_gather_free(g, pte_frame(old), false);
            }
        } else {
            (*pmm_table_entries(&k->pmm, t))++;
            as->leaves[piece]++;
        }
        pte_set(e, piece_leaf(op, at, piece));
        as->owned += op->owned != 0; /* kept exact: the lock may drop between chunks */
        at += pte_level_size(piece);
    }
}

static inline __attribute__((always_inline)) int vm_map(struct kmm_aspace *as, uint64_t va,
                                                        uint64_t pa, uint64_t size, unsigned flags,
                                                        bool area, const void *caller)
{
    int err = check_map(as, va, pa, size, flags, caller);
    if (err)
        return err;
    struct kmm *k = as->k;
    bool replace = (flags & KMM_MAP_REPLACE) != 0, owned = (flags & KMM_MAP_OWNED) != 0;
    unsigned prot = flags & KMM_PROT_MASK;
    struct map_op op = {.va = va,
                        .pa = pa,
                        .size = size,
                        .top = owned                     ? 1
                               : flags & KMM_MAP_HUGE_1G ? 3
                               : flags & KMM_MAP_HUGE    ? 2
                                                         : 1,
                        .prot = prot,
                        .cache = flags & KMM_CACHE_MASK,
                        .owned = owned ? PTE_SW_OWNED : 0,
                        .area = area};
    kmm_irqstate_t irq;
    const char *kept;
    if (size == KMM_PAGE_SIZE && !replace) {
        /* One page whose page table exists: validate and change in one walk. */
        irq = kmm_lock_irqsave(&as->lock);
        if ((kept = window_keeps_locked(as, &op)) != 0) {
            kmm_unlock_irqrestore(&as->lock, irq);
            return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", va, size, kept, caller);
        }
        uint64_t pt;
        unsigned l;
        pte_t *e = find_entry(as, va, &pt, &l);
        if (pte_present(*e)) {
            kmm_unlock_irqrestore(&as->lock, irq);
            return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", va, size,
                             "a page of the range is mapped already", caller);
        }
        if (l == 1) {
            if (owned)
                KMM_ASSERT(k->port, kmm_page_get(k, pa) == KMM_OK);
            pte_set(e, piece_leaf(&op, va, 1));
            (*pmm_table_entries(&k->pmm, pt))++;
            as->leaves[1]++;
            as->owned += owned;
            mirror(as, va, size, pa, prot | KMM_PROT_READ);
            kmm_unlock_irqrestore(&as->lock, irq);
            return KMM_OK;
        }
        kmm_unlock_irqrestore(&as->lock, irq);
    }

    struct stash s = {0};
    if (replace) {
        /* A replacing map may drop the lock between chunks, where another
         * operation could free a table it counted on: it sets aside the
         * most it could need. */
        if (!stash_fill(k, &s, replace_bound(as, &op), 0)) {
            stash_release(k, &s);
            return KMM_ENOMEM;
        }
        irq = kmm_lock_irqsave(&as->lock);
    } else {
        err = lock_with_tables(as, &s, count_map, &op, &irq);
        if (err == KMM_EBUSY)
            return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", va, size,
                             "a page of the range is mapped already", caller);
        if (err)
            return err;
    }
    if ((kept = window_keeps_locked(as, &op)) != 0) {
        kmm_unlock_irqrestore(&as->lock, irq);
        stash_release(k, &s);
        return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", va, size, kept, caller);
    }

    /* Nothing below fails. */
    if (owned)
        for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE)
            KMM_ASSERT(k->port, kmm_page_get(k, pa + off) == KMM_OK);
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    if (replace)
        map_over_range(as, &op, &s, &g, &irq);
    else
        map_free_range(as, &op, &s);
    mirror(as, va, size, pa, prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    stash_release(k, &s);
    kmm_tlb_finish(&g);
    return KMM_OK;
}

int kmm_vm_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags)
{
    return vm_map(as, va, pa, size, flags, false, __builtin_return_address(0));
}

int vmm_map_area(struct kmm *k, uint64_t va, uint64_t pa, uint64_t size, unsigned flags)
{
    return vm_map(&k->vm.kernel, va, pa, size, flags, true, __builtin_return_address(0));
}

/* --- unmap and protect -------------------------------------------------------- */

struct range_op {
    uint64_t va, size;
};

/* The address after the leaf of level l that holds at; 0 past the top. */
static inline uint64_t leaf_end(uint64_t at, unsigned l)
{
    return level_base(at, l) + pte_level_size(l);
}

/* For unmap and protect (count_fn): KMM_ENOENT if a page of the range is
 * not mapped, else the tables that splitting the huge leaves cut by its
 * ends needs. */
static int count_cuts(const struct kmm_aspace *as, const void *opv)
{
    const struct range_op *op = opv;
    for (uint64_t at = op->va; at - op->va < op->size;) {
        struct path p;
        unsigned l = walk(as, at, &p);
        if (!pte_present(*slot(as, &p, l, at)))
            return KMM_ENOENT;
        at = leaf_end(at, l);
        if (at == 0)
            break; /* the top of the address space */
    }
    return (int)range_cut_tables(as, op->va, op->size);
}

/* Takes the lock with the range validated for unmap or protect and its
 * ends split. Returns KMM_OK (lock held), KMM_ENOENT (reported as misuse)
 * or KMM_ENOMEM. */
static int lock_and_cut(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                        const char *fn, const void *caller, kmm_irqstate_t *irq)
{
    struct stash s = {0};
    struct range_op op = {va, size};
    int err = lock_with_tables(as, &s, count_cuts, &op, irq);
    if (err == KMM_ENOENT)
        return vm_misuse(as->k, KMM_ENOENT, fn, va, size, "a page of the range is not mapped",
                         caller);
    if (err)
        return err;
    split_range_ends(as, va, size, &s, g);
    stash_release(as->k, &s); /* more than needed if the count fell on a retry */
    return KMM_OK;
}

static int unmap(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                 const char *fn, const void *caller)
{
    const char *why = bad_range(as, va, size);
    if (!why && (why = bad_gather(as, g)) != 0 && g)
        return vm_misuse_handle(as->k, fn, va, size, why, caller);
    if (why)
        return as && as->canary == KMM_ASPACE_CANARY
                   ? vm_misuse(as->k, KMM_EINVAL, fn, va, size, why, caller)
                   : KMM_EINVAL;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    if (size == KMM_PAGE_SIZE && vmm_gather_room(g, levels(as))) {
        /* One page: validate and change in one walk. */
        struct path p;
        unsigned l = walk(as, va, &p);
        if (!pte_present(*slot(as, &p, l, va))) {
            kmm_unlock_irqrestore(&as->lock, irq);
            return vm_misuse(as->k, KMM_ENOENT, fn, va, size, "a page of the range is not mapped",
                             caller);
        }
        if (l == 1) {
            drop_leaf(as, va, &p, 1, g);
            mirror(as, va, size, 0, 0);
            kmm_unlock_irqrestore(&as->lock, irq);
            return KMM_OK;
        }
    }
    kmm_unlock_irqrestore(&as->lock, irq); /* a huge page to split, or many pages */
    int err = lock_and_cut(as, va, size, g, fn, caller, &irq);
    if (err)
        return err;
    for (uint64_t at = va; at - va < size;) {
        if (!vmm_gather_room(g, levels(as))) {
            kmm_unlock_irqrestore(&as->lock, irq);
            kmm_tlb_finish(g);
            irq = kmm_lock_irqsave(&as->lock);
        }
        struct path p;
        unsigned l = walk(as, at, &p);
        if (!pte_present(*slot(as, &p, l, at))) { /* only if someone broke the rule above */
            at = leaf_end(at, 1);
            continue;
        }
        KMM_ASSERT(as->k->port, level_base(at, l) == at);
        drop_leaf(as, at, &p, l, g);
        at += pte_level_size(l);
        if (at == 0)
            break;
    }
    mirror(as, va, size, 0, 0);
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}

int kmm_vm_unmap_g(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g)
{
    return unmap(as, va, size, g, "kmm_vm_unmap", __builtin_return_address(0));
}

int kmm_vm_unmap(struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    if (!as || as->canary != KMM_ASPACE_CANARY)
        return KMM_EINVAL;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    int err = unmap(as, va, size, &g, "kmm_vm_unmap", __builtin_return_address(0));
    kmm_tlb_finish(&g);
    return err;
}

static int protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                   struct kmm_tlb_gather *g, const void *caller)
{
    const char *why = bad_range(as, va, size);
    if (!why && (prot & ~KMM_PROT_MASK))
        why = "unknown protection bits";
    if (!why)
        why = bad_prot(as, va, prot);
    if (!why && (why = bad_gather(as, g)) != 0 && g)
        return vm_misuse_handle(as->k, "kmm_vm_protect", va, size, why, caller);
    if (why)
        return as && as->canary == KMM_ASPACE_CANARY
                   ? vm_misuse(as->k, KMM_EINVAL, "kmm_vm_protect", va, size, why, caller)
                   : KMM_EINVAL;
    kmm_irqstate_t irq;
    int err = lock_and_cut(as, va, size, g, "kmm_vm_protect", caller, &irq);
    if (err)
        return err;
    for (uint64_t at = va; at - va < size;) {
        struct path p;
        unsigned l = walk(as, at, &p);
        pte_t *e = slot(as, &p, l, at);
        pte_t new = pte_with_prot(*e, prot);
        if (pte_downgrade(*e, new))
            vmm_gather_range(g, at, pte_level_size(l), leaf_global(as, at, *e));
        pte_set(e, new);
        mirror(as, at, pte_level_size(l), pte_leaf_frame(new, l), prot | KMM_PROT_READ);
        at += pte_level_size(l);
        if (at == 0)
            break;
    }
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}

int kmm_vm_protect_g(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                     struct kmm_tlb_gather *g)
{
    return protect(as, va, size, prot, g, __builtin_return_address(0));
}

int kmm_vm_protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot)
{
    if (!as || as->canary != KMM_ASPACE_CANARY)
        return KMM_EINVAL;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    int err = protect(as, va, size, prot, &g, __builtin_return_address(0));
    kmm_tlb_finish(&g);
    return err;
}

/* --- translate and query -------------------------------------------------------- */

int kmm_vm_translate(struct kmm_aspace *as, uint64_t va, struct kmm_vm_translation *out)
{
    if (!as || as->canary != KMM_ASPACE_CANARY || !out || !pte_canonical(va, levels(as)))
        return refuse(as, "kmm_vm_translate", va, KMM_PAGE_SIZE,
                      !as || as->canary != KMM_ASPACE_CANARY ? "not an address space"
                      : !out                                 ? "NULL result pointer"
                                                             : "address not canonical",
                      __builtin_return_address(0));
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    uint64_t t;
    unsigned l;
    pte_t e = *find_entry(as, va, &t, &l);
    kmm_unlock_irqrestore(&as->lock, irq);
    if (!pte_present(e))
        return KMM_ENOENT;
    if (l == 1) { /* the common case, with the level a constant */
        out->pa = pte_leaf_frame(e, 1) | (va & (KMM_PAGE_SIZE - 1));
        out->cache = pte_cache(e, 1);
        out->page_size = KMM_PAGE_SIZE;
    } else {
        uint64_t size = pte_level_size(l);
        out->pa = pte_leaf_frame(e, l) | (va & (size - 1));
        out->cache = pte_cache(e, l);
        out->page_size = size;
    }
    out->prot = pte_prot(e);
    out->owned = (e & PTE_SW_OWNED) != 0;
    return KMM_OK;
}

/* Checks a query's arguments; returns NULL if valid, else why not. Both
 * ends in one canonical half: a walk across the hole between the halves
 * would index the other half's tables with non-canonical addresses. */
static const char *bad_query(const struct kmm_aspace *as, uint64_t va, uint64_t limit,
                             const struct kmm_vm_run *out)
{
    if (!as || as->canary != KMM_ASPACE_CANARY)
        return "not an address space";
    if (!out)
        return "NULL result pointer";
    if (va & (KMM_PAGE_SIZE - 1))
        return "address not page aligned";
    if (limit <= va)
        return "limit not above the address";
    if (!pte_canonical(va, levels(as)) || !pte_canonical(limit - 1, levels(as)))
        return "address not canonical";
    if (in_kernel_half(as, va) != in_kernel_half(as, limit - 1))
        return "range crosses between the halves";
    return 0;
}

/* The address after the part of the address space that the walk's stop at
 * `at` (level l, p) says nothing about beyond one entry: the leaf or empty
 * entry's span, or an empty table's whole span. Only the shared kernel-half
 * tables stay when empty (the others are freed), so a query over nothing
 * takes one step per such table, never one per entry or page. */
static uint64_t query_step_end(const struct kmm_aspace *as, const struct path *p, unsigned l,
                               uint64_t at, bool mapped)
{
    if (!mapped && l < levels(as) && *pmm_table_entries(&as->k->pmm, p->table[l]) == 0)
        l++;
    return leaf_end(at, l);
}

int kmm_vm_query(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out)
{
    const char *why = bad_query(as, va, limit, out);
    if (why)
        return refuse(as, "kmm_vm_query", va, limit - va, why, __builtin_return_address(0));
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    *out = (struct kmm_vm_run){.va = va};
    uint64_t at = va;
    while (at < limit) {
        struct path p;
        unsigned l = walk(as, at, &p);
        pte_t e = *slot(as, &p, l, at);
        struct kmm_vm_run here = {.mapped = pte_present(e)};
        if (here.mapped) {
            here.pa = pte_leaf_frame(e, l) + (at - level_base(at, l));
            here.prot = pte_prot(e);
            here.cache = pte_cache(e, l);
            here.owned = (e & PTE_SW_OWNED) != 0;
        }
        if (at == va) {
            here.va = va;
            *out = here;
        } else if (here.mapped != out->mapped ||
                   (here.mapped && (here.pa != out->pa + (at - va) || here.prot != out->prot ||
                                    here.cache != out->cache || here.owned != out->owned))) {
            break;
        }
        uint64_t next = query_step_end(as, &p, l, at, here.mapped);
        at = next < at ? limit : next; /* the top of the address space */
    }
    out->size = (at < limit ? at : limit) - va;
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}
