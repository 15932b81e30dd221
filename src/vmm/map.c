/*
 * map.c - range operations on an address space: map, unmap, protect,
 * translate, query. The generic half: the tables are the arch layer's
 * (vmm/mmu.h); this file validates, takes the lock, sets table pages
 * aside, takes and drops frame references, runs the gathers and tells the
 * port.
 *
 * Every operation first validates, under the space's lock, everything it
 * will change (arguments, the physical range, that the pages are mapped or
 * not, how many tables it must create or split), then changes entries with
 * code that cannot fail. Table pages it may need are allocated before the
 * change: with KMM_GFP_ATOMIC under the lock, or, if that fails, outside it
 * with reclaim allowed, after which the count is taken again.
 *
 * Invalidations and releases go through a TLB gather (tlb.c) that is
 * finished after the lock is dropped, because a shootdown may wait for
 * other CPUs. An unmap that releases more than a gather holds proceeds in
 * chunks, finishing the gather between them. Operations on overlapping
 * ranges of one space must not run at the same time (a kernel serialises
 * them as it does mmap and munmap); operations on other ranges may.
 */
#include "internal.h"

#include <kmm/page.h>

#include "pmm/pmm.h"
#include "vmm/vmm.h"

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

static inline bool is_space(const struct kmm_aspace *as)
{
    return as && as->canary == KMM_ASPACE_CANARY;
}

/* A refused call on as: counted and logged when as is a space (otherwise
 * there is no instance to count it in). Out of line and cold, so that the
 * callers' common path stays short. */
static __attribute__((noinline, cold)) int refuse(const struct kmm_aspace *as, const char *fn,
                                                  uint64_t va, uint64_t size, const char *why,
                                                  const void *caller)
{
    if (!is_space(as))
        return KMM_EINVAL;
    return vm_misuse(as->k, KMM_EINVAL, fn, va, size, why, caller);
}

/* --- validation ------------------------------------------------------------------ */

/* Why [va, last] is not canonical in one half (it is not). */
static __attribute__((noinline, cold)) const char *half_problem(const struct kmm_aspace *as,
                                                                uint64_t va, uint64_t last)
{
    if (!mmu_canonical(&as->mmu, va) || !mmu_canonical(&as->mmu, last))
        return "address not canonical";
    return "range crosses between the halves";
}

/* Checks a range's shape; returns NULL if valid, else why not. */
static inline const char *bad_range(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    if (!is_space(as))
        return "not an address space";
    if ((va | size) & (KMM_PAGE_SIZE - 1))
        return "address or size not page aligned";
    if (size == 0)
        return "size 0";
    uint64_t last = va + size - 1;
    if (last < va)
        return "range wraps around";
    if (!mmu_one_half(&as->mmu, va, last))
        return half_problem(as, va, last);
    if (!as->mmu.kernel && mmu_in_kernel_half(&as->mmu, va))
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
static inline const char *bad_prot(const struct kmm_aspace *as, uint64_t va, unsigned prot)
{
    if ((prot & KMM_PROT_GLOBAL) && (!as->mmu.kernel || (prot & KMM_PROT_USER)))
        return "global mappings are for the kernel space only";
    if ((prot & KMM_PROT_USER) && mmu_in_kernel_half(&as->mmu, va))
        return "user access in the kernel half";
    return 0;
}

#define MAP_FLAGS                                                                                  \
    (KMM_PROT_MASK | KMM_MAP_OWNED | KMM_MAP_REPLACE | KMM_MAP_HUGE | KMM_MAP_HUGE_1G |            \
     KMM_MAP_ALIAS | KMM_CACHE_MASK)

/* The largest physical address an entry can hold (MAXPHYADDR at most 52). */
#define PHYS_LIMIT (UINT64_C(1) << 52)

/* Checks the shape of a map: everything that depends neither on the
 * tables nor on the memory map; returns NULL if valid. */
static inline const char *bad_map(const struct kmm_aspace *as, uint64_t va, uint64_t pa,
                                  uint64_t size, unsigned flags)
{
    const char *why = bad_range(as, va, size);
    if (!why && (pa & (KMM_PAGE_SIZE - 1)))
        why = "physical address not page aligned";
    if (!why && (pa >= PHYS_LIMIT || size > PHYS_LIMIT - pa))
        why = "physical range beyond 52 bits";
    if (!why && (flags & ~MAP_FLAGS))
        why = "unknown flags";
    if (!why && (flags & KMM_CACHE_MASK) > KMM_CACHE_WC)
        why = "unknown cache mode";
    if (!why)
        why = bad_prot(as, va, flags & KMM_PROT_MASK);
    return why;
}

/* Checks the frames of a map against the memory map and, when owned, the
 * page allocator. Returns KMM_OK or the refusal (counted and logged). */
static inline __attribute__((always_inline)) int check_frames(struct kmm *k, uint64_t va,
                                                              uint64_t pa, uint64_t size,
                                                              unsigned flags, const void *caller)
{
    unsigned cache = flags & KMM_CACHE_MASK;
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

/* --- table pages set aside: the arch layer's table-page allocator --------------------- */

/* The pages are linked through their first word; it is zeroed again when a
 * page is taken. */
static void tables_push(struct kmm *k, struct vmm_tables *t, uint64_t pa)
{
    *(uint64_t *)kmm_phys_to_virt(k, pa) = t->head;
    t->head = pa;
    t->n++;
}

uint64_t vmm_tables_take(struct kmm *k, struct vmm_tables *t)
{
    uint64_t pa = t->head;
    KMM_ASSERT(k->port, pa != 0);
    uint64_t *first = kmm_phys_to_virt(k, pa);
    t->head = *first;
    *first = 0;
    t->n--;
    return pa;
}

void vmm_tables_release(struct kmm *k, struct vmm_tables *t)
{
    while (t->n)
        pmm_table_free(k, vmm_tables_take(k, t));
}

bool vmm_tables_fill(struct kmm *k, struct vmm_tables *t, unsigned need, kmm_gfp_t flags)
{
    while (t->n < need) {
        uint64_t pa = pmm_table_alloc(k, flags);
        if (!pa)
            return false;
        tables_push(k, t, pa);
    }
    return true;
}

/*
 * Takes the space's lock with t holding what `count` says the operation
 * needs: count runs under the lock and returns the tables needed, or a
 * negative error that ends the operation (the lock is dropped, t emptied).
 * Tables are taken atomically under the lock; if that fails the lock is
 * dropped, the tables allocated with reclaim allowed, and the count taken
 * again, since the tables may have changed meanwhile. Returns KMM_OK with
 * the lock held and *irq set, or the error (lock not held).
 */
typedef int (*count_fn)(const struct mmu_space *s, const void *op);

static int lock_with_tables(struct kmm_aspace *as, struct vmm_tables *t, count_fn count,
                            const void *op, kmm_irqstate_t *irq)
{
    for (;;) {
        *irq = kmm_lock_irqsave(&as->lock);
        int need = count(&as->mmu, op);
        if (need < 0) {
            kmm_unlock_irqrestore(&as->lock, *irq);
            vmm_tables_release(as->k, t);
            return need;
        }
        if (vmm_tables_fill(as->k, t, (unsigned)need, KMM_GFP_ATOMIC))
            return KMM_OK;
        kmm_unlock_irqrestore(&as->lock, *irq);
        if (!vmm_tables_fill(as->k, t, (unsigned)need, 0)) {
            vmm_tables_release(as->k, t);
            return KMM_ENOMEM;
        }
    }
}

/* --- the port's mapping hook ------------------------------------------------------------ */

void vmm_mapping_changed(const struct mmu_space *s, uint64_t va, uint64_t size, uint64_t pa,
                         unsigned prot)
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
        .root = mmu_root(s), .va = va, .len = size, .pa = pa, .prot = port_prot};
    kmm_port_mapping_changed(s->k->port, &m);
}

/* --- map ----------------------------------------------------------------------- */

/* Why the kernel virtual area window keeps a page of the map from it, or
 * NULL. Called with the space's lock held, which makes it exact against
 * reservations (kva_map_conflict); the window's own maps (area) skip it. */
static inline const char *window_keeps_locked(const struct kmm_aspace *as, const struct mmu_map *m,
                                              bool area)
{
    if (area || !as->mmu.kernel || !kva_window_meets(&as->k->kva, m->va, m->size))
        return 0;
    return kva_map_conflict(as->k, m->va, m->size);
}

static int count_map(const struct mmu_space *s, const void *op)
{
    return mmu_map_count_locked(s, op);
}

/* One page whose page table exists: validate and change in one walk.
 * Returns KMM_OK, the refusal, or MMU_SLOW (nothing done: a table is
 * missing). */
static inline __attribute__((always_inline)) int
map_page(struct kmm_aspace *as, const struct mmu_map *m, bool area, const void *caller)
{
    struct kmm *k = as->k;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    const char *kept = window_keeps_locked(as, m, area);
    if (kept) {
        kmm_unlock_irqrestore(&as->lock, irq);
        return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", m->va, m->size, kept, caller);
    }
    struct mmu_cursor cur;
    int r = mmu_map_page_locked(&as->mmu, m, m->owned ? &cur : 0);
    if (r == KMM_OK && m->owned) {
        KMM_ASSERT(k->port, kmm_page_get(k, m->pa) == KMM_OK);
        mmu_map_page_commit_locked(&as->mmu, m, &cur);
    }
    if (r == KMM_OK)
        vmm_mapping_changed(&as->mmu, m->va, m->size, m->pa, m->prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    if (r == KMM_EBUSY)
        return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", m->va, m->size,
                         "a page of the range is mapped already", caller);
    return r;
}

/* A replacing map takes the lock with the most tables it could need set
 * aside: it may drop the lock between chunks, where another operation
 * could free a table it counted on. */
static int lock_for_replace(struct kmm_aspace *as, const struct mmu_map *m, struct vmm_tables *t,
                            kmm_irqstate_t *irq)
{
    if (!vmm_tables_fill(as->k, t, mmu_replace_tables(&as->mmu, m), 0)) {
        vmm_tables_release(as->k, t);
        return KMM_ENOMEM;
    }
    *irq = kmm_lock_irqsave(&as->lock);
    return KMM_OK;
}

/* Runs a replace in chunks, finishing g between them with the lock
 * dropped. Cannot fail. */
static void replace_range(struct kmm_aspace *as, const struct mmu_map *m, struct vmm_tables *t,
                          struct kmm_tlb_gather *g, kmm_irqstate_t *irq)
{
    for (uint64_t done = mmu_replace_locked(&as->mmu, m, 0, t, g); done != m->size;
         done = mmu_replace_locked(&as->mmu, m, done, t, g)) {
        kmm_unlock_irqrestore(&as->lock, *irq);
        kmm_tlb_finish(g);
        *irq = kmm_lock_irqsave(&as->lock);
    }
}

/* A range, or a page that needs tables: count, set tables aside, map. */
static int map_range(struct kmm_aspace *as, const struct mmu_map *m, bool replace, bool area,
                     const void *caller)
{
    struct kmm *k = as->k;
    struct vmm_tables t = {0, 0};
    kmm_irqstate_t irq;
    int err =
        replace ? lock_for_replace(as, m, &t, &irq) : lock_with_tables(as, &t, count_map, m, &irq);
    if (err == KMM_EBUSY)
        return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", m->va, m->size,
                         "a page of the range is mapped already", caller);
    if (err)
        return err;
    const char *kept = window_keeps_locked(as, m, area);
    if (kept) {
        kmm_unlock_irqrestore(&as->lock, irq);
        vmm_tables_release(k, &t);
        return vm_misuse(k, KMM_EBUSY, "kmm_vm_map", m->va, m->size, kept, caller);
    }

    /* Nothing below fails. */
    if (m->owned)
        for (uint64_t off = 0; off < m->size; off += KMM_PAGE_SIZE)
            KMM_ASSERT(k->port, kmm_page_get(k, m->pa + off) == KMM_OK);
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    if (replace)
        replace_range(as, m, &t, &g, &irq);
    else
        mmu_map_locked(&as->mmu, m, &t);
    vmm_mapping_changed(&as->mmu, m->va, m->size, m->pa, m->prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    vmm_tables_release(k, &t);
    kmm_tlb_finish(&g);
    return KMM_OK;
}

/* The largest leaf the flags allow: owned mappings take a reference per
 * single page, so they use 4 KiB pages only. */
static inline uint64_t max_page(unsigned flags)
{
    if (flags & KMM_MAP_OWNED)
        return KMM_PAGE_4K;
    return flags & KMM_MAP_HUGE_1G ? KMM_PAGE_1G : flags & KMM_MAP_HUGE ? KMM_PAGE_2M : KMM_PAGE_4K;
}

static inline __attribute__((always_inline)) int vm_map(struct kmm_aspace *as, uint64_t va,
                                                        uint64_t pa, uint64_t size, unsigned flags,
                                                        bool area, const void *caller)
{
    const char *why = bad_map(as, va, pa, size, flags);
    if (why)
        return refuse(as, "kmm_vm_map", va, size, why, caller);
    int err = check_frames(as->k, va, pa, size, flags, caller);
    if (err)
        return err;
    struct mmu_map m = {.va = va,
                        .pa = pa,
                        .size = size,
                        .max_page = max_page(flags),
                        .prot = flags & KMM_PROT_MASK,
                        .cache = flags & KMM_CACHE_MASK,
                        .owned = (flags & KMM_MAP_OWNED) != 0};
    bool replace = (flags & KMM_MAP_REPLACE) != 0;
    if (size == KMM_PAGE_SIZE && !replace) {
        err = map_page(as, &m, area, caller);
        if (err != MMU_SLOW)
            return err;
    }
    return map_range(as, &m, replace, area, caller);
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

struct cut_op {
    uint64_t va, size;
};

static int count_cuts(const struct mmu_space *s, const void *op)
{
    const struct cut_op *c = op;
    return mmu_cut_count_locked(s, c->va, c->size);
}

/* Takes the lock with the range validated for unmap or protect and its
 * ends cut out of their huge leaves. Returns KMM_OK (lock held), KMM_ENOENT
 * (reported as misuse) or KMM_ENOMEM. */
static int lock_and_cut(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                        const char *fn, const void *caller, kmm_irqstate_t *irq)
{
    struct vmm_tables t = {0, 0};
    struct cut_op op = {va, size};
    int err = lock_with_tables(as, &t, count_cuts, &op, irq);
    if (err == KMM_ENOENT)
        return vm_misuse(as->k, KMM_ENOENT, fn, va, size, "a page of the range is not mapped",
                         caller);
    if (err)
        return err;
    mmu_cut_locked(&as->mmu, va, size, &t, g);
    vmm_tables_release(as->k, &t); /* more than needed if the count fell on a retry */
    return KMM_OK;
}

/* Validates an unmap or protect with its gather; returns KMM_OK or the
 * refusal (counted and logged). */
static int check_range_op(struct kmm_aspace *as, uint64_t va, uint64_t size, const char *why,
                          const struct kmm_tlb_gather *g, const char *fn, const void *caller)
{
    if (!why && (why = bad_gather(as, g)) != 0 && g)
        return vm_misuse_handle(as->k, fn, va, size, why, caller);
    return why ? refuse(as, fn, va, size, why, caller) : KMM_OK;
}

static int unmap(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                 const char *fn, const void *caller)
{
    int err = check_range_op(as, va, size, bad_range(as, va, size), g, fn, caller);
    if (err)
        return err;
    kmm_irqstate_t irq;
    if (size == KMM_PAGE_SIZE) { /* one 4 KiB page: validate and change in one walk */
        irq = kmm_lock_irqsave(&as->lock);
        err = mmu_unmap_page_locked(&as->mmu, va, g);
        if (err == KMM_OK)
            vmm_mapping_changed(&as->mmu, va, size, 0, 0);
        kmm_unlock_irqrestore(&as->lock, irq);
        if (err == KMM_ENOENT)
            return vm_misuse(as->k, KMM_ENOENT, fn, va, size, "a page of the range is not mapped",
                             caller);
        if (err == KMM_OK)
            return KMM_OK;
    }
    err = lock_and_cut(as, va, size, g, fn, caller, &irq); /* a huge page to cut, or many pages */
    if (err)
        return err;
    for (uint64_t done = mmu_unmap_locked(&as->mmu, va, size, 0, g); done != size;
         done = mmu_unmap_locked(&as->mmu, va, size, done, g)) {
        kmm_unlock_irqrestore(&as->lock, irq);
        kmm_tlb_finish(g);
        irq = kmm_lock_irqsave(&as->lock);
    }
    vmm_mapping_changed(&as->mmu, va, size, 0, 0);
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}

int kmm_vm_unmap_g(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g)
{
    return unmap(as, va, size, g, "kmm_vm_unmap", __builtin_return_address(0));
}

int kmm_vm_unmap(struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    if (!is_space(as))
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
    int err = check_range_op(as, va, size, why, g, "kmm_vm_protect", caller);
    if (err)
        return err;
    kmm_irqstate_t irq;
    err = lock_and_cut(as, va, size, g, "kmm_vm_protect", caller, &irq);
    if (err)
        return err;
    mmu_protect_locked(&as->mmu, va, size, prot, g);
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
    if (!is_space(as))
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
    if (!is_space(as) || !out || !mmu_canonical(&as->mmu, va))
        return refuse(as, "kmm_vm_translate", va, KMM_PAGE_SIZE,
                      !is_space(as) ? "not an address space"
                      : !out        ? "NULL result pointer"
                                    : "address not canonical",
                      __builtin_return_address(0));
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    int err = mmu_translate_locked(&as->mmu, va, out);
    kmm_unlock_irqrestore(&as->lock, irq);
    return err;
}

/* Checks a query's arguments; returns NULL if valid, else why not. Both
 * ends in one canonical half: a walk across the hole between the halves
 * would index the other half's tables with non-canonical addresses. */
static const char *bad_query(const struct kmm_aspace *as, uint64_t va, uint64_t limit,
                             const struct kmm_vm_run *out)
{
    if (!is_space(as))
        return "not an address space";
    if (!out)
        return "NULL result pointer";
    if (va & (KMM_PAGE_SIZE - 1))
        return "address not page aligned";
    if (limit <= va)
        return "limit not above the address";
    if (!mmu_one_half(&as->mmu, va, limit - 1))
        return half_problem(as, va, limit - 1);
    return 0;
}

int kmm_vm_query(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out)
{
    const char *why = bad_query(as, va, limit, out);
    if (why)
        return refuse(as, "kmm_vm_query", va, limit - va, why, __builtin_return_address(0));
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    mmu_query_locked(&as->mmu, va, limit, out);
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}
