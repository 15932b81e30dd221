/*
 * map.c - range operations on an address space: map, unmap, protect,
 * translate, query.
 *
 * Every operation first validates, under the space's lock, everything it
 * will change (arguments, the physical range, that the pages are mapped or
 * not, how many tables it must create), then changes entries with code that
 * cannot fail. Table pages it may need are allocated before the change:
 * with KMM_GFP_ATOMIC under the lock, or, if that fails, outside it with
 * reclaim allowed, after which the count is taken again.
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

/* The tables on the way from the root to va: path[l] is the level-l table,
 * for l from the top down to the lowest level that exists. */
struct path {
    uint64_t table[6];
};

/* Walks towards va. Returns the lowest level whose table exists (1 when the
 * page table is there). */
static unsigned walk(const struct kmm_aspace *as, uint64_t va, struct path *p)
{
    struct kmm *k = as->k;
    unsigned l = levels(as);
    uint64_t t = as->root;
    p->table[l] = t;
    while (l > 1) {
        pte_t e = table(k, t)[pte_index(va, l)];
        if (!pte_present(e))
            return l;
        t = pte_frame(e);
        p->table[--l] = t;
    }
    return 1;
}

/* The leaf entry of va, or NULL when its page table does not exist. */
static pte_t *leaf_of(const struct kmm_aspace *as, uint64_t va)
{
    struct path p;
    if (walk(as, va, &p) != 1)
        return 0;
    return &table(as->k, p.table[1])[pte_index(va, 1)];
}

/* A table that must never be freed: the root, and in the kernel half the
 * tables right below it (shared by every space). */
static bool table_is_pinned(const struct kmm_aspace *as, uint64_t va, unsigned level)
{
    return level == levels(as) || (level == levels(as) - 1 && in_kernel_half(as, va));
}

/* --- misuse ------------------------------------------------------------------ */

static int vm_misuse(struct kmm *k, int err, const char *fn, uint64_t va, uint64_t size,
                     const char *why, const void *caller)
{
    atomic_fetch_add_explicit(&k->vm.misuse, 1, memory_order_relaxed);
    kmm_logf(k->port, KMM_LOG_ERR, "%s(0x%llx, size 0x%llx): %s, caller %p", fn,
             (unsigned long long)va, (unsigned long long)size, why, caller);
    return err;
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

/* Checks a protection for the range; returns NULL if valid. */
static const char *bad_prot(const struct kmm_aspace *as, uint64_t va, unsigned prot)
{
    if ((prot & KMM_PROT_GLOBAL) && (!as->kernel || (prot & KMM_PROT_USER)))
        return "global mappings are for the kernel space only";
    if ((prot & KMM_PROT_USER) && in_kernel_half(as, va))
        return "user access in the kernel half";
    return 0;
}

static bool is_ram_type(uint32_t type)
{
    return type == KMM_MEM_USABLE || type == KMM_MEM_KMM_META || type == KMM_MEM_KERNEL ||
           type == KMM_MEM_ACPI_RECLAIMABLE || type == KMM_MEM_ACPI_NVS ||
           type == KMM_MEM_BOOTLOADER_RECLAIMABLE;
}

/* Whether [pa, pa + size) is RAM by the memory map, without gaps. */
static bool range_is_ram(const struct kmm *k, uint64_t pa, uint64_t size)
{
    uint64_t at = pa, end = pa + size;
    if (end < pa)
        return false;
    for (size_t i = 0; i < k->map_count && at < end; i++) {
        const struct kmm_region *r = &k->map[i];
        uint64_t r_end = r->base + r->length;
        if (r_end <= at)
            continue;
        if (r->base > at || !is_ram_type(r->type))
            return false;
        at = r_end;
    }
    return at >= end;
}

/* --- tables ------------------------------------------------------------------- */

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

/* Counts the tables mapping [va, va + size) would create, and whether any
 * page of it is mapped already. */
static unsigned count_missing(const struct kmm_aspace *as, uint64_t va, uint64_t size, bool *busy)
{
    uint64_t last_prefix[6] = {UINT64_MAX, UINT64_MAX, UINT64_MAX,
                               UINT64_MAX, UINT64_MAX, UINT64_MAX};
    unsigned missing = 0;
    *busy = false;
    for (uint64_t at = va; at - va < size;) {
        struct path p;
        unsigned l = walk(as, at, &p);
        uint64_t chunk_end = (at | (pte_level_size(2) - 1)) + 1; /* the PT's end */
        if (l == 1) {
            const pte_t *pt = table(as->k, p.table[1]);
            for (uint64_t a = at; a < chunk_end && a - va < size; a += KMM_PAGE_SIZE)
                *busy |= pte_present(pt[pte_index(a, 1)]);
        } else {
            /* Tables of levels l-1 .. 1 are missing for this address. */
            for (unsigned m = 1; m < l; m++) {
                uint64_t prefix = at >> pte_level_shift(m + 1);
                if (prefix != last_prefix[m]) {
                    last_prefix[m] = prefix;
                    missing++;
                }
            }
        }
        at = chunk_end;
    }
    return missing;
}

/* The leaf entry for va, creating missing tables from the stash. */
static pte_t *make_leaf(struct kmm_aspace *as, uint64_t va, struct stash *s, uint64_t *pt_pa)
{
    struct kmm *k = as->k;
    uint64_t t = as->root;
    bool user_half = !in_kernel_half(as, va);
    for (unsigned l = levels(as); l > 1; l--) {
        pte_t *e = &table(k, t)[pte_index(va, l)];
        if (!pte_present(*e)) {
            uint64_t nt = stash_pop(k, s);
            pte_set(e, pte_table(nt, user_half));
            (*pmm_table_entries(&k->pmm, t))++;
            as->tables[l - 1]++;
        }
        t = pte_frame(*e);
    }
    *pt_pa = t;
    return &table(k, t)[pte_index(va, 1)];
}

/* Removes the leaf of va (present) and every table that empties, recording
 * the invalidation and the releases in g. */
static void drop_leaf_at(struct kmm_aspace *as, uint64_t va, const struct path *pp,
                         struct kmm_tlb_gather *g);

static void drop_leaf(struct kmm_aspace *as, uint64_t va, struct kmm_tlb_gather *g)
{
    struct path p;
    unsigned l = walk(as, va, &p);
    KMM_ASSERT(as->k->port, l == 1);
    drop_leaf_at(as, va, &p, g);
}

/* drop_leaf with the walk to va done already (p reaches the page table). */
static void drop_leaf_at(struct kmm_aspace *as, uint64_t va, const struct path *pp,
                         struct kmm_tlb_gather *g)
{
    /* Read through pp, not a copy: the walk just stored it, and a copy's wider
     * loads would stall on store forwarding. */
    struct kmm *k = as->k;
    const struct path *p = pp;
    pte_t *e = &table(k, p->table[1])[pte_index(va, 1)];
    pte_t old = *e;
    pte_set(e, 0);
    as->mapped--;
    vmm_gather_page(g, va, (old & PTE_G) != 0 || in_kernel_half(as, va));
    if (old & PTE_SW_OWNED) {
        as->owned--;
        vmm_gather_free(g, pte_frame(old), false);
    }
    /* Free the tables this leaves empty, bottom up. */
    for (unsigned lvl = 1; lvl < levels(as); lvl++) {
        uint32_t *count = pmm_table_entries(&k->pmm, p->table[lvl]);
        KMM_ASSERT(k->port, *count > 0);
        if (--*count > 0 || table_is_pinned(as, va, lvl))
            break;
        pte_set(&table(k, p->table[lvl + 1])[pte_index(va, lvl + 1)], 0);
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

#define MAP_FLAGS (KMM_PROT_MASK | KMM_MAP_OWNED | KMM_MAP_REPLACE)

/* Checks everything about a map that does not depend on the tables. */
static int check_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags,
                     const void *caller)
{
    const char *why = bad_range(as, va, size);
    if (!why && (pa & (KMM_PAGE_SIZE - 1)))
        why = "physical address not page aligned";
    if (!why && (flags & ~MAP_FLAGS))
        why = "unknown flags";
    if (!why)
        why = bad_prot(as, va, flags & KMM_PROT_MASK);
    struct kmm *k = as && as->canary == KMM_ASPACE_CANARY ? as->k : 0;
    if (why) {
        if (!k)
            return KMM_EINVAL;
        return vm_misuse(k, KMM_EINVAL, "kmm_vm_map", va, size, why, caller);
    }
    if (!range_is_ram(k, pa, size))
        return vm_misuse(k, KMM_ERANGE, "kmm_vm_map", va, size,
                         "physical range is not RAM (device memory needs a cache mode)", caller);
    if (flags & KMM_MAP_OWNED) {
        for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE)
            if (!pmm_is_allocated_page(k, pa + off))
                return vm_misuse(k, KMM_ESTATE, "kmm_vm_map", va, size,
                                 "an owned frame is not an allocated single page", caller);
    }
    return KMM_OK;
}

/* The upper bound of tables a range can need: every table of every level
 * below the top that it touches. */
static unsigned tables_bound(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    unsigned n = 0;
    for (unsigned l = 1; l < levels(as); l++) {
        unsigned shift = pte_level_shift(l + 1);
        n += (unsigned)(((va + size - 1) >> shift) - (va >> shift) + 1);
    }
    return n;
}

int kmm_vm_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags)
{
    const void *caller = __builtin_return_address(0);
    int err = check_map(as, va, pa, size, flags, caller);
    if (err)
        return err;
    struct kmm *k = as->k;
    bool replace = (flags & KMM_MAP_REPLACE) != 0, owned = (flags & KMM_MAP_OWNED) != 0;
    unsigned prot = flags & KMM_PROT_MASK;
    struct stash s = {0};
    kmm_irqstate_t irq;
    /* A replacing map may drop the lock between chunks, where another
     * operation could free a table it counted on: it sets aside the most
     * it could need. */
    if (replace && !stash_fill(k, &s, tables_bound(as, va, size), 0)) {
        stash_release(k, &s);
        return KMM_ENOMEM;
    }
    if (size == KMM_PAGE_SIZE && !replace) {
        /* One page whose page table exists: validate and change in one walk. */
        irq = kmm_lock_irqsave(&as->lock);
        struct path p;
        if (walk(as, va, &p) == 1) {
            pte_t *e = &table(k, p.table[1])[pte_index(va, 1)];
            if (pte_present(*e)) {
                kmm_unlock_irqrestore(&as->lock, irq);
                return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", va, size,
                                 "a page of the range is mapped already", caller);
            }
            if (owned)
                KMM_ASSERT(k->port, kmm_page_get(k, pa) == KMM_OK);
            pte_set(e, pte_leaf(pa, prot) | (owned ? PTE_SW_OWNED : 0));
            (*pmm_table_entries(&k->pmm, p.table[1]))++;
            as->mapped++;
            as->owned += owned;
            mirror(as, va, size, pa, prot | KMM_PROT_READ);
            kmm_unlock_irqrestore(&as->lock, irq);
            return KMM_OK;
        }
        kmm_unlock_irqrestore(&as->lock, irq);
    }
    for (;;) {
        irq = kmm_lock_irqsave(&as->lock);
        bool busy;
        unsigned need = count_missing(as, va, size, &busy);
        if (busy && !replace) {
            kmm_unlock_irqrestore(&as->lock, irq);
            stash_release(k, &s);
            return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", va, size,
                             "a page of the range is mapped already", caller);
        }
        if (stash_fill(k, &s, need, KMM_GFP_ATOMIC))
            break;
        kmm_unlock_irqrestore(&as->lock, irq);
        if (!stash_fill(k, &s, need, 0)) {
            stash_release(k, &s);
            return KMM_ENOMEM;
        }
    }

    /* Nothing below fails. */
    if (owned)
        for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE)
            KMM_ASSERT(k->port, kmm_page_get(k, pa + off) == KMM_OK);
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    pte_t bits = pte_leaf(0, prot) | (owned ? PTE_SW_OWNED : 0);
    for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE) {
        if (replace && !vmm_gather_room(&g, levels(as))) {
            /* Chunk: finish what the gather holds with the lock dropped. */
            kmm_unlock_irqrestore(&as->lock, irq);
            kmm_tlb_finish(&g);
            irq = kmm_lock_irqsave(&as->lock);
        }
        uint64_t pt;
        pte_t *e = make_leaf(as, va + off, &s, &pt);
        pte_t old = *e;
        if (pte_present(old)) {
            vmm_gather_page(&g, va + off, (old & PTE_G) || in_kernel_half(as, va));
            if (old & PTE_SW_OWNED) {
                as->owned--;
                vmm_gather_free(&g, pte_frame(old), false);
            }
        } else {
            (*pmm_table_entries(&k->pmm, pt))++;
            as->mapped++;
        }
        pte_set(e, bits | ((pa + off) & PTE_FRAME));
        as->owned += owned;
    }
    mirror(as, va, size, pa, prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    stash_release(k, &s);
    kmm_tlb_finish(&g);
    return KMM_OK;
}

/* --- unmap and protect -------------------------------------------------------- */

/* Checks that every page of [va, va + size) is mapped (lock held). */
static bool all_mapped(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    for (uint64_t at = va; at - va < size; at += KMM_PAGE_SIZE) {
        const pte_t *e = leaf_of(as, at);
        if (!e || !pte_present(*e))
            return false;
    }
    return true;
}

static int unmap(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                 const char *fn, const void *caller)
{
    const char *why = bad_range(as, va, size);
    if (why)
        return as && as->canary == KMM_ASPACE_CANARY
                   ? vm_misuse(as->k, KMM_EINVAL, fn, va, size, why, caller)
                   : KMM_EINVAL;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    if (size == KMM_PAGE_SIZE && vmm_gather_room(g, levels(as))) {
        /* One page: validate and change in one walk. */
        struct path p;
        const pte_t *e = walk(as, va, &p) == 1 ? &table(as->k, p.table[1])[pte_index(va, 1)] : 0;
        if (!e || !pte_present(*e)) {
            kmm_unlock_irqrestore(&as->lock, irq);
            return vm_misuse(as->k, KMM_ENOENT, fn, va, size, "a page of the range is not mapped",
                             caller);
        }
        drop_leaf_at(as, va, &p, g);
        mirror(as, va, size, 0, 0);
        kmm_unlock_irqrestore(&as->lock, irq);
        return KMM_OK;
    }
    if (!all_mapped(as, va, size)) {
        kmm_unlock_irqrestore(&as->lock, irq);
        return vm_misuse(as->k, KMM_ENOENT, fn, va, size, "a page of the range is not mapped",
                         caller);
    }
    for (uint64_t at = va; at - va < size; at += KMM_PAGE_SIZE) {
        if (!vmm_gather_room(g, levels(as))) {
            kmm_unlock_irqrestore(&as->lock, irq);
            kmm_tlb_finish(g);
            irq = kmm_lock_irqsave(&as->lock);
        }
        const pte_t *e = leaf_of(as, at);
        if (e && pte_present(*e)) /* gone only if someone broke the rule above */
            drop_leaf(as, at, g);
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
    if (why)
        return as && as->canary == KMM_ASPACE_CANARY
                   ? vm_misuse(as->k, KMM_EINVAL, "kmm_vm_protect", va, size, why, caller)
                   : KMM_EINVAL;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    if (!all_mapped(as, va, size)) {
        kmm_unlock_irqrestore(&as->lock, irq);
        return vm_misuse(as->k, KMM_ENOENT, "kmm_vm_protect", va, size,
                         "a page of the range is not mapped", caller);
    }
    pte_t bits = pte_leaf(0, prot);
    for (uint64_t at = va; at - va < size; at += KMM_PAGE_SIZE) {
        pte_t *e = leaf_of(as, at);
        pte_t new = bits | (*e & (PTE_FRAME | PTE_SW_OWNED));
        if (pte_downgrade(*e, new))
            vmm_gather_page(g, at, (*e & PTE_G) || in_kernel_half(as, at));
        pte_set(e, new);
        mirror(as, at, KMM_PAGE_SIZE, pte_frame(new), prot | KMM_PROT_READ);
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
    if (!as || as->canary != KMM_ASPACE_CANARY || !pte_canonical(va, levels(as)))
        return KMM_EINVAL;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    const pte_t *e = leaf_of(as, va & ~(KMM_PAGE_SIZE - 1));
    pte_t v = e ? *e : 0;
    kmm_unlock_irqrestore(&as->lock, irq);
    if (!pte_present(v))
        return KMM_ENOENT;
    out->pa = pte_frame(v) | (va & (KMM_PAGE_SIZE - 1));
    out->prot = pte_prot(v);
    out->page_size = KMM_PAGE_SIZE;
    out->owned = (v & PTE_SW_OWNED) != 0;
    return KMM_OK;
}

int kmm_vm_query(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out)
{
    if (!as || as->canary != KMM_ASPACE_CANARY || (va & (KMM_PAGE_SIZE - 1)) || limit <= va ||
        !pte_canonical(va, levels(as)) || !pte_canonical(limit - 1, levels(as)))
        return KMM_EINVAL;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    *out = (struct kmm_vm_run){.va = va};
    uint64_t at = va;
    while (at < limit) {
        struct path p;
        unsigned l = walk(as, at, &p);
        pte_t e = l == 1 ? table(as->k, p.table[1])[pte_index(at, 1)] : 0;
        bool mapped = pte_present(e);
        if (at == va) {
            out->mapped = mapped;
            out->pa = pte_frame(e);
            out->prot = mapped ? pte_prot(e) : 0;
            out->owned = (e & PTE_SW_OWNED) != 0;
        } else if (mapped != out->mapped ||
                   (mapped && (pte_frame(e) != out->pa + (at - va) || pte_prot(e) != out->prot ||
                               ((e & PTE_SW_OWNED) != 0) != out->owned))) {
            break;
        }
        /* An unmapped run skips whole missing tables at once. */
        uint64_t step = mapped || l == 1 ? KMM_PAGE_SIZE : pte_level_size(l);
        uint64_t next = (at & ~(step - 1)) + step;
        at = next < at ? limit : next; /* the top of the address space */
    }
    out->size = (at < limit ? at : limit) - va;
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}
