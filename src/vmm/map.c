/*
 * map.c - the public range calls: kmm_vm_map, kmm_vm_unmap, kmm_vm_protect
 * (and their _g forms), kmm_vm_translate, kmm_vm_query. Each validates its
 * arguments (validate.h), takes the space's lock with what the change needs
 * (range.c), has the arch layer change the tables (vmm/mmu.h), takes or
 * queues the frame references, tells the port, and finishes its gather
 * after the lock is dropped, because a shootdown may wait for other CPUs.
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"):
 *     1 a space's lock  ->  2 window lock
 *             (the kernel space's window check, kva_map_conflict; a replace's hold)
 *     1 a space's lock  ->  4 this CPU's cache  ->  6 zone lock
 *             (table pages, taken with KMM_GFP_ATOMIC: range.c)
 *     1 a space's lock  ->  6 zone lock
 *             (an owned frame's reference, kmm_page_get)
 *     1 a space's lock  ->  7 port
 *             (the mapping hook, vmm_mapping_changed)
 * No lock is held while a gather is finished or while tables are allocated
 * with reclaim allowed.
 *
 * Every operation validates everything it will change before it changes
 * anything, so a call that fails changes nothing. Operations on
 * overlapping ranges of one space must not run at the same time (a kernel
 * serialises them as it does mmap and munmap); operations on other ranges
 * may.
 */
#include "internal.h"

#include <kmm/page.h>

#include "vmm/seam.h"
#include "vmm/validate.h"
#include "vmm/kva.h"
#include "vmm/vmm.h"

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

void vmm_pages_changed(const struct mmu_space *s, uint64_t va, const uint64_t *pages, uint64_t n,
                       unsigned prot)
{
    if (!kmm_port_mirrors_mappings(s->k->port))
        return;
    if (!kmm_port_mirror_needs_frames(s->k->port)) {
        vmm_mapping_changed(s, va, n * KMM_PAGE_SIZE, pages[0], prot);
        return;
    }
    for (uint64_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && pages[j] == pages[i] + (j - i) * KMM_PAGE_SIZE; j++)
            ;
        vmm_mapping_changed(s, va + i * KMM_PAGE_SIZE, (j - i) * KMM_PAGE_SIZE, pages[i], prot);
    }
}

/* --- map ----------------------------------------------------------------------- */

/* Whether a call on [va, va + size) of as must ask the kernel virtual area
 * window whether it keeps a page: a call on the kernel space that meets
 * the window, unless it is the window's own (area). */
static inline bool window_asked(const struct kmm_aspace *as, uint64_t va, uint64_t size, bool area)
{
    if (area)
        return false;
    return size == KMM_PAGE_SIZE ? vmm_window_has_page(as, va) : vmm_window_meets(as, va, size);
}

/* Why the kernel virtual area window keeps a page of [va, va + size) from
 * a call, or NULL. Called with the space's lock held, which makes it exact
 * against reservations (kva_map_conflict); the window's own calls (area)
 * skip it. With hold (a replacing map, which drops the lock between
 * chunks), the range is held against reservations until kva_unhold if
 * hold->end is set. */
static inline const char *window_keeps_locked(const struct kmm_aspace *as, uint64_t va,
                                              uint64_t size, bool area, struct kva_hold *hold)
{
    if (!window_asked(as, va, size, area))
        return 0;
    if (!hold && kva_hint_covers(&as->k->kva, va, va + (size - 1)))
        return 0;
    return kva_map_conflict(as->k, va, size, hold);
}

/* Why an owned mapping's reference on the page at pa was refused: it has
 * the most owned mappings a frame can (mapped, so an allocated single
 * page), or it is no allocated single page (never, or no longer). */
static enum vm_why owned_refused(struct kmm *k, uint64_t pa)
{
    return pmm_page_map_count(k, pa) ? VM_FRAME_MAPS_MAX : VM_OWNED_NOT_PAGE;
}

/* Takes an owned mapping's reference on each of the n pages from pa, all or
 * none: VM_VALID, or why not with every reference taken put back.
 * check_frames looked without a lock: a caller may have freed a frame
 * since, which this finds under the frame's zone lock. Space lock held
 * (zone locks come after it); nothing is mapped yet, so a reference put
 * back needs no invalidation (and frees the page if the caller freed it
 * meanwhile). */
static enum vm_why take_owned_refs(struct kmm *k, uint64_t pa, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (!pmm_page_map_get(k, pa + i * KMM_PAGE_SIZE)) {
            enum vm_why why = owned_refused(k, pa + i * KMM_PAGE_SIZE);
            while (i-- > 0)
                pmm_page_map_put(k, pa + i * KMM_PAGE_SIZE);
            return why;
        }
    }
    return VM_VALID;
}

/* One page whose page table exists, with a flag map_one does not take
 * (owned, or a huge or alias flag that changes nothing for one page):
 * validate and change in one walk. Returns KMM_OK, the refusal, or
 * MMU_SLOW (nothing done: a table is missing). */
static inline __attribute__((always_inline)) int
map_page(struct kmm_aspace *as, const struct mmu_map *m, bool area, const void *caller)
{
    struct kmm *k = as->k;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    const char *kept = window_keeps_locked(as, m->va, m->size, area, 0);
    if (kept) {
        kmm_unlock_irqrestore(&as->lock, irq);
        return vm_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_vm_map", m->va, m->size, kept, caller);
    }
    struct mmu_cursor cur;
    int r = mmu_map_page_locked(&as->mmu, m, m->owned ? &cur : 0);
    if (r == KMM_OK && m->owned) {
        enum vm_why why = take_owned_refs(k, m->pa, 1);
        if (why) { /* nothing committed: nothing changed */
            kmm_unlock_irqrestore(&as->lock, irq);
            return vm_refuse(as, why, "kmm_vm_map", m->va, m->size, caller);
        }
        mmu_map_page_commit_locked(&as->mmu, m, &cur);
    }
    if (r == KMM_OK)
        vmm_mapping_changed(&as->mmu, m->va, m->size, m->pa, m->prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    if (r == KMM_EBUSY)
        return vm_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_vm_map", m->va, m->size,
                         "a page of the range is mapped already", caller);
    return r;
}

/* A range, or a page that needs tables: count, set tables aside, map. A
 * replace that meets the window holds its range there from the check to
 * its end: it drops the lock between chunks, and a reservation must not
 * take the part not replaced yet meanwhile. */
static int map_range(struct kmm_aspace *as, const struct mmu_map *m, bool replace, bool area,
                     const void *caller)
{
    struct kmm *k = as->k;
    struct vmm_tables t = {0, 0};
    kmm_irqstate_t irq;
    int err = vmm_lock_for_map(as, m, replace, &t, &irq);
    if (err == KMM_EBUSY)
        return vm_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_vm_map", m->va, m->size,
                         "a page of the range is mapped already", caller);
    if (err)
        return err;
    struct kva_hold hold = {0, 0, 0};
    const char *kept = window_keeps_locked(as, m->va, m->size, area, replace ? &hold : 0);
    if (kept) {
        kmm_unlock_irqrestore(&as->lock, irq);
        vmm_tables_release(k, &t);
        return vm_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_vm_map", m->va, m->size, kept, caller);
    }

    /* The owned references first, the last step that can fail; nothing
     * below does. */
    enum vm_why why = m->owned ? take_owned_refs(k, m->pa, m->size >> KMM_PAGE_SHIFT) : VM_VALID;
    if (why) {
        kmm_unlock_irqrestore(&as->lock, irq);
        vmm_tables_release(k, &t);
        return vm_refuse(as, why, "kmm_vm_map", m->va, m->size, caller);
    }
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    if (replace)
        vmm_replace_locked(as, m, &t, &g, &irq);
    else
        mmu_map_locked(&as->mmu, m, &t);
    if (!m->demand) /* a demand-zero page shows nothing until touched */
        vmm_mapping_changed(&as->mmu, m->va, m->size, m->pa, m->prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    if (hold.end)
        kva_unhold(k, &hold);
    vmm_tables_release(k, &t);
    kmm_tlb_finish(&g);
    return KMM_OK;
}

/* The largest leaf the flags allow: owned mappings take a reference per
 * single page, so they use 4 KiB pages only (and so do demand-zero ones,
 * which become owned: map_demand). */
static inline uint64_t max_page(unsigned flags)
{
    if (flags & KMM_MAP_OWNED)
        return KMM_PAGE_4K;
    return flags & KMM_MAP_HUGE_1G ? KMM_PAGE_1G : flags & KMM_MAP_HUGE ? KMM_PAGE_2M : KMM_PAGE_4K;
}

/* A demand-zero map (KMM_MAP_DEMAND): no frame to check, always the range
 * path (whose map counts demand-zero entries apart from leaves). Out of
 * line, so that the common map pays one test for it. */
static __attribute__((noinline)) int map_demand(struct kmm_aspace *as, uint64_t va, uint64_t pa,
                                                uint64_t size, unsigned flags, bool area,
                                                const void *caller)
{
    enum vm_why why = bad_map(as, va, pa, size, flags);
    if (!why && (pa || (flags & DEMAND_REFUSES) || (flags & KMM_CACHE_MASK & ~KMM_CACHE_WB)))
        why = VM_DEMAND_FLAGS;
    if (why)
        return vm_refuse(as, why, "kmm_vm_map", va, size, caller);
    struct mmu_map m = {.va = va,
                        .size = size,
                        .max_page = KMM_PAGE_4K,
                        .prot = flags & KMM_PROT_MASK,
                        .demand = true};
    return map_range(as, &m, false, area, caller);
}

/* The flags a single page takes the shortcut with: rights and a cache
 * mode. Anything else (owned, replace, huge, alias, demand, unknown bits)
 * goes the whole way. */
#define ONE_PAGE_FLAGS (KMM_PROT_MASK | KMM_CACHE_MASK)

/* The common map, one page with ONE_PAGE_FLAGS: the same checks as any map
 * (bad_map, bad_frames), which fold with the size known, then one walk
 * under the lock if the page table exists. */
static __attribute__((noinline)) int map_one(struct kmm_aspace *as, uint64_t va, uint64_t pa,
                                             unsigned flags, bool area, const void *caller)
{
    enum vm_why why = bad_map(as, va, pa, KMM_PAGE_SIZE, flags);
    if (!why)
        why = bad_frames(as, pa, KMM_PAGE_SIZE, flags);
    if (why)
        return vm_refuse(as, why, "kmm_vm_map", va, KMM_PAGE_SIZE, caller);
    unsigned prot = flags & KMM_PROT_MASK, cache = flags & KMM_CACHE_MASK;
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    const char *kept = window_keeps_locked(as, va, KMM_PAGE_SIZE, area, 0);
    int r = kept ? KMM_EBUSY : mmu_map_one_locked(&as->mmu, va, pa, prot, cache);
    if (r == KMM_OK)
        vmm_mapping_changed(&as->mmu, va, KMM_PAGE_SIZE, pa, prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    if (r == KMM_OK)
        return KMM_OK;
    if (r == KMM_EBUSY)
        return vm_misuse(as->k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_vm_map", va, KMM_PAGE_SIZE,
                         kept ? kept : "a page of the range is mapped already", caller);
    /* MMU_SLOW: the page table is missing. */
    struct mmu_map m = {.va = va,
                        .pa = pa,
                        .size = KMM_PAGE_SIZE,
                        .max_page = KMM_PAGE_4K,
                        .prot = prot,
                        .cache = cache};
    return map_range(as, &m, false, area, caller);
}

/* Any other map: a range, huge pages, an owned page, a replace, demand
 * zero, or flags to refuse. */
static __attribute__((noinline)) int map_any(struct kmm_aspace *as, uint64_t va, uint64_t pa,
                                             uint64_t size, unsigned flags, bool area,
                                             const void *caller)
{
    if (__builtin_expect((flags & KMM_MAP_DEMAND) != 0, 0))
        return map_demand(as, va, pa, size, flags, area, caller);
    enum vm_why why = bad_map(as, va, pa, size, flags);
    if (!why)
        why = bad_frames(as, pa, size, flags);
    if (why)
        return vm_refuse(as, why, "kmm_vm_map", va, size, caller);
    struct mmu_map m = {.va = va,
                        .pa = pa,
                        .size = size,
                        .max_page = max_page(flags),
                        .prot = flags & KMM_PROT_MASK,
                        .cache = flags & KMM_CACHE_MASK,
                        .owned = (flags & KMM_MAP_OWNED) != 0};
    bool replace = (flags & KMM_MAP_REPLACE) != 0;
    if (size == KMM_PAGE_SIZE && !replace) { /* one page map_one did not take */
        int err = map_page(as, &m, area, caller);
        if (err != MMU_SLOW)
            return err;
    }
    return map_range(as, &m, replace, area, caller);
}

/* Both end in a tail call, so that the common page saves no register
 * here. */
static inline __attribute__((always_inline)) int vm_map(struct kmm_aspace *as, uint64_t va,
                                                        uint64_t pa, uint64_t size, unsigned flags,
                                                        bool area, const void *caller)
{
    if (size == KMM_PAGE_SIZE && !(flags & ~ONE_PAGE_FLAGS))
        return map_one(as, va, pa, flags, area, caller);
    return map_any(as, va, pa, size, flags, area, caller);
}

int kmm_vm_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags)
{
    return vm_map(as, va, pa, size, flags, false, __builtin_return_address(0));
}

int kmm_vm_map_caller(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size,
                      unsigned flags, const void *caller)
{
    return vm_map(as, va, pa, size, flags, false, caller);
}

/* take_owned_refs for an array of single pages. */
static enum vm_why take_page_refs(struct kmm *k, const uint64_t *pages, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (!pmm_page_map_get(k, pages[i])) {
            enum vm_why why = owned_refused(k, pages[i]);
            while (i-- > 0)
                pmm_page_map_put(k, pages[i]);
            return why;
        }
    }
    return VM_VALID;
}

/* The tables a map of an array of pages needs (vmm_lock_with_tables). */
static int count_pages(const struct mmu_space *s, const void *op)
{
    return mmu_map_pages_count_locked(s, op);
}

int vmm_map_pages_area(struct kmm *k, uint64_t va, const uint64_t *pages, uint64_t n,
                       unsigned flags)
{
    const void *caller = __builtin_return_address(0);
    struct kmm_aspace *as = &k->vm.kernel;
    uint64_t size = n * KMM_PAGE_SIZE;
    KMM_ASSERT(k->port, !(flags & ~(KMM_PROT_MASK | KMM_CACHE_MASK | KMM_MAP_OWNED)));
    enum vm_why why = bad_map(as, va, 0, size, flags);
    if (why)
        return vm_refuse(as, why, "kmm_vm_map", va, size, caller);
    struct mmu_pages m = {.va = va,
                          .pages = pages,
                          .n = n,
                          .prot = flags & KMM_PROT_MASK,
                          .cache = flags & KMM_CACHE_MASK,
                          .owned = (flags & KMM_MAP_OWNED) != 0};
    /* Most areas lie in one page table that exists (a parked range's is
     * held): one walk checks and finds it. Else count, then map. */
    struct vmm_tables t = {0, 0};
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    bool busy;
    uint64_t table = mmu_map_pages_table_locked(&as->mmu, &m, &busy);
    int err = KMM_OK;
    if (!table) {
        kmm_unlock_irqrestore(&as->lock, irq);
        err = busy ? KMM_EBUSY : vmm_lock_with_tables(as, &t, count_pages, &m, &irq);
    }
    if (err) /* KMM_EBUSY too: the window's own call, no caller's mistake (vmalloc.c warns) */
        return err;
    why = m.owned ? take_page_refs(k, pages, n) : VM_VALID;
    if (why) { /* nothing changed yet */
        kmm_unlock_irqrestore(&as->lock, irq);
        vmm_tables_release(k, &t);
        return vm_refuse(as, why, "kmm_vm_map", va, size, caller);
    }
    if (table)
        mmu_map_pages_in_locked(&as->mmu, table, &m);
    else
        mmu_map_pages_locked(&as->mmu, &m, &t);
    vmm_pages_changed(&as->mmu, va, pages, n, m.prot | KMM_PROT_READ);
    kmm_unlock_irqrestore(&as->lock, irq);
    vmm_tables_release(k, &t);
    return KMM_OK;
}

/* --- unmap and protect -------------------------------------------------------- */

/* Takes the lock with the range validated for unmap or protect (the
 * window asked first where it must be) and its ends cut out of their huge
 * leaves (vmm_lock_and_cut). Returns KMM_OK (lock held), or the refusal
 * (a page the window keeps, a page that is not mapped), or KMM_ENOMEM.
 * The window's own calls (area) are not asked about and not refused:
 * KMM_ENOENT comes back as it is. */
static int lock_and_cut(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                        const char *fn, bool area, const void *caller, kmm_irqstate_t *irq)
{
    const char *kept = 0;
    int err = vmm_lock_and_cut(as, va, size, window_asked(as, va, size, area), &kept, g, irq);
    if (err == KMM_EBUSY)
        return vm_misuse(as->k, KMM_EBUSY, KMM_MISUSE_BUSY, fn, va, size, kept, caller);
    if (err == KMM_ENOENT && !area)
        return vm_misuse(as->k, KMM_ENOENT, KMM_MISUSE_ABSENT, fn, va, size,
                         "a page of the range is not mapped", caller);
    return err;
}

/* Validates an unmap or protect with its gather; returns KMM_OK or the
 * refusal (counted and logged). */
static int check_range_op(struct kmm_aspace *as, uint64_t va, uint64_t size, enum vm_why why,
                          const struct kmm_tlb_gather *g, const char *fn, const void *caller)
{
    if (!why)
        why = bad_gather(as, g);
    return why ? vm_refuse(as, why, fn, va, size, caller) : KMM_OK;
}

/* One 4 KiB page: the window asked, validated and changed in one walk.
 * Returns KMM_OK, the refusal, or MMU_SLOW (nothing done: a huge page to
 * cut, or g full). */
static inline __attribute__((always_inline)) int unmap_page(struct kmm_aspace *as, uint64_t va,
                                                            struct kmm_tlb_gather *g,
                                                            const char *fn, bool area,
                                                            const void *caller)
{
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    const char *kept = window_keeps_locked(as, va, KMM_PAGE_SIZE, area, 0);
    if (kept) {
        kmm_unlock_irqrestore(&as->lock, irq);
        return vm_misuse(as->k, KMM_EBUSY, KMM_MISUSE_BUSY, fn, va, KMM_PAGE_SIZE, kept, caller);
    }
    int err = mmu_unmap_page_locked(&as->mmu, va, g);
    if (err == KMM_OK)
        vmm_mapping_changed(&as->mmu, va, KMM_PAGE_SIZE, 0, 0);
    kmm_unlock_irqrestore(&as->lock, irq);
    if (err == KMM_ENOENT && !area)
        return vm_misuse(as->k, KMM_ENOENT, KMM_MISUSE_ABSENT, fn, va, KMM_PAGE_SIZE,
                         "a page of the range is not mapped", caller);
    return err;
}

/* Inline in each public call, so that area is a constant there. */
static inline __attribute__((always_inline)) int unmap(struct kmm_aspace *as, uint64_t va,
                                                       uint64_t size, struct kmm_tlb_gather *g,
                                                       const char *fn, bool area,
                                                       const void *caller)
{
    int err = check_range_op(as, va, size, bad_range(as, va, size), g, fn, caller);
    if (err)
        return err;
    if (size == KMM_PAGE_SIZE) {
        err = unmap_page(as, va, g, fn, area, caller);
        if (err != MMU_SLOW)
            return err;
    }
    kmm_irqstate_t irq;
    err = lock_and_cut(as, va, size, g, fn, area, caller, &irq); /* a huge page to cut, or many */
    if (err)
        return err;
    vmm_unmap_locked(as, va, size, g, &irq);
    vmm_mapping_changed(&as->mmu, va, size, 0, 0);
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}

int kmm_vm_unmap_g(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g)
{
    int err = unmap(as, va, size, g, "kmm_vm_unmap_g", false, __builtin_return_address(0));
    if (err == KMM_OK)
        vmm_gather_note_pending(g);
    return err;
}

int kmm_vm_unmap(struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    return kmm_vm_unmap_caller(as, va, size, __builtin_return_address(0));
}

int kmm_vm_unmap_caller(struct kmm_aspace *as, uint64_t va, uint64_t size, const void *caller)
{
    if (!vm_is_space(as))
        return KMM_EINVAL;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    int err = unmap(as, va, size, &g, "kmm_vm_unmap", false, caller);
    kmm_tlb_finish(&g);
    return err;
}

/* An area of several pages is unmapped in one pass, with no count of its
 * entries first (vmm_unmap_area_locked): the window maps an area's pages
 * itself, and one found missing, or a huge leaf, only comes from entries
 * a kernel wrote behind the library's back. From such a leaf on, the
 * general path (unmap: cut, check, unmap) does the rest. */
int vmm_unmap_area(struct kmm *k, uint64_t va, uint64_t size)
{
    const void *caller = __builtin_return_address(0);
    struct kmm_aspace *ks = &k->vm.kernel;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, ks);
    int err;
    if (size == KMM_PAGE_SIZE) {
        err = unmap(ks, va, size, &g, "kmm_vm_unmap", true, caller);
    } else {
        uint64_t done = 0;
        bool missed;
        kmm_irqstate_t irq = kmm_lock_irqsave(&ks->lock);
        err = vmm_unmap_area_locked(ks, va, size, &done, &missed, &g, &irq);
        if (done)
            vmm_mapping_changed(&ks->mmu, va, done, 0, 0);
        kmm_unlock_irqrestore(&ks->lock, irq);
        if (err == MMU_SLOW) { /* pages missing before the huge leaf count too */
            err = unmap(ks, va + done, size - done, &g, "kmm_vm_unmap", true, caller);
            if (err == KMM_OK && missed)
                err = KMM_ENOENT;
        }
    }
    kmm_tlb_finish(&g);
    return err;
}

static int protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                   struct kmm_tlb_gather *g, const char *fn, const void *caller)
{
    enum vm_why why = bad_range(as, va, size);
    if (!why && (prot & ~KMM_PROT_MASK))
        why = VM_UNKNOWN_PROT;
    if (!why)
        why = bad_prot(as, va, prot);
    int err = check_range_op(as, va, size, why, g, fn, caller);
    if (err)
        return err;
    kmm_irqstate_t irq;
    err = lock_and_cut(as, va, size, g, fn, false, caller, &irq);
    if (err)
        return err;
    mmu_protect_locked(&as->mmu, va, size, prot, g);
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}

int kmm_vm_protect_g(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                     struct kmm_tlb_gather *g)
{
    int err = protect(as, va, size, prot, g, "kmm_vm_protect_g", __builtin_return_address(0));
    if (err == KMM_OK)
        vmm_gather_note_pending(g);
    return err;
}

int kmm_vm_protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot)
{
    return kmm_vm_protect_caller(as, va, size, prot, __builtin_return_address(0));
}

int kmm_vm_protect_caller(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                          const void *caller)
{
    if (!vm_is_space(as))
        return KMM_EINVAL;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, as);
    int err = protect(as, va, size, prot, &g, "kmm_vm_protect", caller);
    kmm_tlb_finish(&g);
    return err;
}

/* --- translate and query -------------------------------------------------------- */

/* kmm_vm_translate's refusal (a bad space, a NULL out, a non-canonical va),
 * out of the callers' fast path. */
static int translate_refuse(struct kmm_aspace *as, uint64_t va,
                            const struct kmm_vm_translation *out, const void *caller)
{
    return vm_refuse(as,
                     !vm_is_space(as) ? VM_NOT_A_SPACE
                     : !out           ? VM_NULL_RESULT
                                      : VM_NOT_CANONICAL,
                     "kmm_vm_translate", va, KMM_PAGE_SIZE, caller);
}

int kmm_vm_translate(struct kmm_aspace *as, uint64_t va, struct kmm_vm_translation *out)
{
    if (!vm_is_space(as) || !out || !mmu_canonical(&as->mmu, va))
        return translate_refuse(as, va, out, __builtin_return_address(0));
    return mmu_translate(&as->mmu, &as->lock, va, out);
}

int kmm_vm_translate_caller(struct kmm_aspace *as, uint64_t va, struct kmm_vm_translation *out,
                            const void *caller)
{
    if (!vm_is_space(as) || !out || !mmu_canonical(&as->mmu, va))
        return translate_refuse(as, va, out, caller);
    return mmu_translate(&as->mmu, &as->lock, va, out);
}

/* kmm_vm_query, with its walk's steps in *steps (vmm/seam.h). */
static inline __attribute__((always_inline)) int query(struct kmm_aspace *as, uint64_t va,
                                                       uint64_t limit, struct kmm_vm_run *out,
                                                       uint64_t *steps, const void *caller)
{
    *steps = 0;
    enum vm_why why = bad_query(as, va, limit, out);
    if (why)
        return vm_refuse(as, why, "kmm_vm_query", va, limit - va, caller);
    kmm_irqstate_t irq = kmm_lock_irqsave(&as->lock);
    *steps = mmu_query_locked(&as->mmu, va, limit, out);
    kmm_unlock_irqrestore(&as->lock, irq);
    return KMM_OK;
}

int kmm_vm_query(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out)
{
    uint64_t steps;
    return query(as, va, limit, out, &steps, __builtin_return_address(0));
}

int vmm_query_counted(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out,
                      uint64_t *steps)
{
    return query(as, va, limit, out, steps, __builtin_return_address(0));
}
