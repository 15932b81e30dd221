/*
 * buddy.c - the buddy allocator: allocating, freeing and merging blocks.
 *
 * Each zone of each node keeps one doubly linked free list per order,
 * threaded through the frame descriptors by frame number, and a bitmask of
 * the orders whose lists are not empty, so finding a block is one
 * count-trailing-zeros, and allocation is O(KMM_PAGE_MAX_ORDER) splits at
 * most. A freed block merges with its buddy (the block whose frame number
 * differs in bit `order`) for as long as that buddy is a free block of the
 * same order, zone and node.
 *
 * Single pages go through the per-CPU caches first (pcp.c); this file is
 * the zones behind them. A request that the caches cannot serve goes on to
 * the one request engine (zonelist.h: zone-locked path, then slow path),
 * which serves blocks and runs (run.c) alike:
 *
 *   kmm_page_alloc: validate once -> cache of this CPU (order 0) ->
 *                   pmm_request_pfn: zone list, locked -> slow path: grow
 *                   (deferred or added memory), drain the caches, run the
 *                   shrinkers (not for KMM_GFP_ATOMIC), retry
 *   kmm_page_free:  cache of this CPU (order 0, one reference) -> locked path,
 *                   which also judges every misuse exactly
 *
 * Locking: one lock per zone (a leaf). A RAM frame's zone and node never
 * change, so a free finds its zone before it takes the lock. ABSENT and
 * RESERVED frames change state only when kmm_page_add_memory makes them
 * usable (grow.c, under the growth lock and the zone locks), and a page in
 * one of those states was never handed out, so a free rejects both before
 * the lock, whether or not memory is being added meanwhile. Every other
 * state changes under the zone lock, except the moves a CPU makes on its
 * own cache without it (pcp.h; the batch moves between a cache and its
 * zone take the zone lock): ALLOCATED -> PCP by a claim (one
 * compare-exchange, frame.h), PCP -> ALLOCATED when it hands a page out.
 * Counts therefore change by compare-exchange under the lock. Misuse is
 * decided under the lock and reported after it is released. The slow path
 * holds no lock while it grows, drains or reclaims.
 */
#include "internal.h"

#include "pmm/pcp.h"
#include "pmm/pmm.h"
#include "pmm/zonelist.h"

/* --- free lists (zone lock held) -------------------------------------------------- */

void pmm_list_push(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order)
{
    struct kmm_frame *f = pmm_frame(pm, pfn);
    uint32_t head = z->free_head[order];
    f->next = head;
    f->prev = KMM_PFN_NONE;
    frame_set(f, FRAME_FREE, order, 0);
    if (head != KMM_PFN_NONE)
        pmm_frame(pm, head)->prev = (uint32_t)pfn;
    z->free_head[order] = (uint32_t)pfn;
    z->nonempty |= 1u << order;
    z->free_blocks[order]++;
}

void pmm_list_remove(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order)
{
    struct kmm_frame *f = pmm_frame(pm, pfn);
    if (f->prev != KMM_PFN_NONE)
        pmm_frame(pm, f->prev)->next = f->next;
    else
        z->free_head[order] = f->next;
    if (f->next != KMM_PFN_NONE)
        pmm_frame(pm, f->next)->prev = f->prev;
    if (z->free_head[order] == KMM_PFN_NONE)
        z->nonempty &= ~(1u << order);
    z->free_blocks[order]--;
}

static inline void merge_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn,
                                      unsigned order)
{
    while (order < KMM_PAGE_MAX_ORDER) {
        uint64_t buddy_pfn = pfn ^ (UINT64_C(1) << order);
        struct kmm_frame *buddy = pmm_frame_lookup(pm, buddy_pfn);
        /* The state alone first: a page-table frame's count (the rest of
         * the word) is written by its address space's lock, not ours.
         * Then, for a FREE buddy (ours under the zone lock), the word in
         * one atomic read: a CPU may have claimed it for its cache without
         * the lock a moment ago (frame.h). */
        if (!buddy || frame_state_get(buddy) != FRAME_FREE)
            break;
        union frame_meta m = frame_meta_get(buddy);
        if (m.state != FRAME_FREE || m.order != order || m.zone != z->id || m.node != z->node)
            break;
        pmm_list_remove(pm, z, buddy_pfn, order);
        /* The lower of the two heads the merged block; the other is inside it. */
        if (buddy_pfn < pfn) {
            frame_state_set(pmm_frame(pm, pfn), FRAME_INTERIOR);
            pfn = buddy_pfn;
        } else {
            frame_state_set(buddy, FRAME_INTERIOR);
        }
        order++;
    }
    pmm_list_push(pm, z, pfn, order);
}

void pmm_merge_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order)
{
    merge_block_locked(pm, z, pfn, order);
}

void pmm_free_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, unsigned order)
{
    /* Poisoning (poison.c) fills the block first, on a path of its own:
     * this one stays as it was. */
    if (__builtin_expect(z->poison, 0)) {
        pmm_poison_free_locked(pm, z, pfn, order);
        return;
    }
    merge_block_locked(pm, z, pfn, order);
}

uint64_t pmm_take_block_locked(struct kmm_pmm *pm, struct kmm_zone *z, unsigned order)
{
    uint32_t fits = z->nonempty >> order;
    if (!fits)
        return KMM_PFN_NONE;
    unsigned have = order + (unsigned)__builtin_ctz(fits);
    uint64_t pfn = z->free_head[have];
    pmm_list_remove(pm, z, pfn, have);
    /* Give back the upper halves, largest first. */
    while (have > order) {
        have--;
        pmm_list_push(pm, z, pfn + (UINT64_C(1) << have), have);
    }
    z->free_pages -= UINT64_C(1) << order;
    return pfn;
}

/* --- misuse ---------------------------------------------------------------------- */

static const char *const misuse_text[KMM_MISUSE_COUNT] = {
    [KMM_MISUSE_BAD_ORDER] = "order or count out of range",
    [KMM_MISUSE_BAD_FLAGS] = "unknown or conflicting flags",
    [KMM_MISUSE_UNALIGNED] = "address not page aligned",
    [KMM_MISUSE_OUTSIDE] = "address outside managed memory",
    [KMM_MISUSE_RESERVED] = "a reserved page",
    [KMM_MISUSE_DOUBLE_FREE] = "already free (double free)",
    [KMM_MISUSE_NOT_BLOCK] = "not the start of an allocated block",
    [KMM_MISUSE_WRONG_ORDER] = "wrong size for this block",
    [KMM_MISUSE_BUSY] = "held only by owned mappings (unmap it)",
    [KMM_MISUSE_LIMIT] = "too many references (a reference leak?)",
};

static const int misuse_error[KMM_MISUSE_COUNT] = {
    [KMM_MISUSE_BAD_ORDER] = KMM_EINVAL, [KMM_MISUSE_BAD_FLAGS] = KMM_EINVAL,
    [KMM_MISUSE_UNALIGNED] = KMM_EINVAL, [KMM_MISUSE_OUTSIDE] = KMM_ERANGE,
    [KMM_MISUSE_RESERVED] = KMM_EINVAL,  [KMM_MISUSE_DOUBLE_FREE] = KMM_ESTATE,
    [KMM_MISUSE_NOT_BLOCK] = KMM_EINVAL, [KMM_MISUSE_WRONG_ORDER] = KMM_EINVAL,
    [KMM_MISUSE_BUSY] = KMM_EBUSY,       [KMM_MISUSE_LIMIT] = KMM_EBUSY,
};

int pmm_misuse(struct kmm *k, enum kmm_misuse kind, const char *fn, uint64_t pa, unsigned order,
               int actual, const void *caller)
{
    if (actual >= 0)
        return kmm_misuse(k, KMM_LAYER_PAGE, kind, misuse_error[kind], caller,
                          "%s(0x%llx, order %u): %s: allocated as order %d", fn,
                          (unsigned long long)pa, order, misuse_text[kind], actual);
    return kmm_misuse(k, KMM_LAYER_PAGE, kind, misuse_error[kind], caller,
                      "%s(0x%llx, order %u): %s", fn, (unsigned long long)pa, order,
                      misuse_text[kind]);
}

/* --- allocation ---------------------------------------------------------------------- */

/* The full allocation path: validation, the caches, the zones, the slow
 * path. Out of line so that kmm_page_alloc's cache hit stays a short leaf. */
static __attribute__((noinline)) uint64_t page_alloc(struct kmm *k, unsigned order, kmm_gfp_t flags,
                                                     const char *fn, const void *caller)
{
    if (order > KMM_PAGE_MAX_ORDER) {
        pmm_misuse(k, KMM_MISUSE_BAD_ORDER, fn, 0, order, -1, caller);
        return 0;
    }
    if (!pmm_flags_valid(flags, KMM_GFP_VALID)) {
        pmm_misuse(k, KMM_MISUSE_BAD_FLAGS, fn, 0, order, -1, caller);
        return 0;
    }
    if (order == 0 && (flags & KMM_GFP_ZERO)) {
        /* Zeroed, as every page table is: a hit in this CPU's cache first,
         * as kmm_page_alloc's common case (nothing to verify or record:
         * the caches hold nothing while pages are poisoned or page events
         * recorded, pcp.c), and a page a freed table left there
         * (pmm_table_free_zero) needs no zeroing at all. */
        uint64_t pa = pmm_pcp_alloc_zeroed(k, flags);
        if (pa)
            return pa;
    }
    unsigned poison = pmm_poison_begin(&k->pmm); /* before the request: poison.c */
    uint64_t pa = order == 0 ? pmm_pcp_alloc(k, flags) : 0;
    /* Known zeros (pmm_table_free_zero): nothing to zero, and nothing to
     * verify either, since the caches stay empty while pages are poisoned. */
    if (__builtin_expect(pa & PMM_PCP_ZEROED, 0))
        return pa - PMM_PCP_ZEROED;
    if (!pa) {
        struct pmm_request rq = {.order = order, .flags = flags};
        uint64_t pfn = pmm_request_pfn(k, &rq);
        if (pfn == KMM_PFN_NONE)
            return 0;
        pa = pfn << KMM_PAGE_SHIFT;
    }
    pmm_poison_verify(k, poison, pa, UINT64_C(1) << order, fn, caller);
    if (flags & KMM_GFP_ZERO)
        __builtin_memset(kmm_phys_to_virt(k, pa), 0, KMM_PAGE_SIZE << order);
    if (pmm_events_on(&k->pmm)) /* events.c: the inline paths never get here while on */
        pmm_event(k, KMM_EVENT_PAGE_ALLOC, pa, order, UINT64_C(1) << order, caller);
    return pa;
}

uint64_t kmm_page_alloc(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    /* The common case first: one page, valid flags, a hit in this CPU's
     * cache. Anything else takes the full path. The caches hold nothing
     * while pages are poisoned or page events recorded (pcp.c), so a hit
     * has nothing to verify or record. */
    if (order == 0 && pmm_flags_valid(flags, KMM_GFP_VALID & ~KMM_GFP_ZERO)) {
        uint64_t pa = pmm_pcp_alloc_fast(k, flags, false);
        if (pa)
            return pa;
    }
    return page_alloc(k, order, flags, "kmm_page_alloc", __builtin_return_address(0));
}

/* The wrapper's form goes straight to the full path (a CPU cache hit is
 * taken there too), so kmm_page_alloc's inline fast path stays its own. */
uint64_t kmm_page_alloc_caller(struct kmm *k, unsigned order, kmm_gfp_t flags, const void *caller)
{
    return page_alloc(k, order, flags, "kmm_page_alloc", caller);
}

unsigned kmm_order_for_count(size_t count)
{
    unsigned order = 0;
    while (order < 63 && (UINT64_C(1) << order) < count)
        order++;
    return order;
}

uint64_t kmm_pages_alloc(struct kmm *k, size_t count, kmm_gfp_t flags)
{
    /* count 0 gets an impossible order, so it is rejected as malformed. */
    unsigned order = count ? kmm_order_for_count(count) : KMM_PAGE_MAX_ORDER + 1;
    return page_alloc(k, order, flags, "kmm_pages_alloc", __builtin_return_address(0));
}

/* --- freeing ------------------------------------------------------------------------ */

/* What the allocated block at pa must look like for a free or a get. Checks
 * the states that never change without the lock; returns the frame, or NULL
 * after reporting the misuse in *err. */
static struct kmm_frame *find_block(struct kmm *k, uint64_t pa, unsigned order, const char *fn,
                                    const void *caller, int *err)
{
    enum kmm_misuse kind;
    struct kmm_frame *f = NULL;
    if (order > KMM_PAGE_MAX_ORDER)
        kind = KMM_MISUSE_BAD_ORDER;
    else if (pa & (KMM_PAGE_SIZE - 1))
        kind = KMM_MISUSE_UNALIGNED;
    else if (!(f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT)) ||
             frame_state_get(f) == FRAME_ABSENT)
        kind = KMM_MISUSE_OUTSIDE;
    else if (frame_state_get(f) == FRAME_RESERVED)
        kind = KMM_MISUSE_RESERVED;
    else
        return f;
    *err = pmm_misuse(k, kind, fn, pa, order, -1, caller);
    return NULL;
}

bool pmm_inside_free_block_locked(const struct kmm_pmm *pm, uint64_t pfn)
{
    /* The block holding pfn starts at pfn rounded down to its order: the
     * first head met rounding down ever further. (Blocks never cross a
     * section, so every frame looked at exists.) */
    for (unsigned o = 1; o <= KMM_PAGE_MAX_ORDER; o++) {
        uint64_t head = pfn & ~((UINT64_C(1) << o) - 1);
        union frame_meta m = frame_meta_get(pmm_frame(pm, head));
        if (m.state == FRAME_FREE || m.state == FRAME_ALLOCATED)
            return m.state == FRAME_FREE && m.order >= o;
        if (m.state != FRAME_INTERIOR)
            return false;
    }
    return false;
}

/* The misuse a free or get of the block at pfn whose descriptor reads m
 * would be, with this order; KMM_MISUSE_COUNT if none. A frame inside a
 * free block was freed already, and merged since: a double free like any
 * other. Zone lock held. */
static enum kmm_misuse judge_locked(const struct kmm_pmm *pm, uint64_t pfn, union frame_meta m,
                                    unsigned order, bool check_order)
{
    if (m.state == FRAME_FREE || m.state == FRAME_PCP)
        return KMM_MISUSE_DOUBLE_FREE;
    if (m.state == FRAME_INTERIOR && pmm_inside_free_block_locked(pm, pfn))
        return KMM_MISUSE_DOUBLE_FREE;
    if (m.state != FRAME_ALLOCATED)
        return KMM_MISUSE_NOT_BLOCK;
    if (check_order && m.order != order)
        return KMM_MISUSE_WRONG_ORDER;
    return KMM_MISUSE_COUNT;
}

/* Drops one of the callers' references to the block at f (pfn, this order)
 * and frees it when no reference is left; or returns the misuse it would be
 * (*actual: the block's order). A block only owned mappings hold is not the
 * caller's to free. Zone lock held. The count changes by compare-exchange:
 * a CPU may claim a single page with one reference for its cache meanwhile
 * without the lock (pcp.h), and then this judges it again, as cached. */
static enum kmm_misuse put_locked(struct kmm *k, struct kmm_zone *z, struct kmm_frame *f,
                                  uint64_t pfn, unsigned order, int *actual)
{
    union frame_meta seen = frame_meta_get(f), want;
    do {
        enum kmm_misuse kind = judge_locked(&k->pmm, pfn, seen, order, true);
        *actual = seen.order;
        if (kind != KMM_MISUSE_COUNT)
            return kind;
        if ((seen.count & ~FRAME_MAPPED) == 0) {
            /* An allocated block has a reference: here, only mappings'. */
            KMM_ASSERT(k->port, seen.count == FRAME_MAPPED);
            return KMM_MISUSE_BUSY;
        }
        want = seen;
        want.count--;
    } while (!frame_meta_cas(f, &seen, want));
    if (want.count == 0) {
        z->free_pages += UINT64_C(1) << order;
        z->free_calls++;
        pmm_free_block_locked(&k->pmm, z, pfn, order);
    }
    return KMM_MISUSE_COUNT;
}

/* The full free path: validation, the caches, the zone under its lock,
 * exact misuse judgement. Out of line, like page_alloc. */
static __attribute__((noinline)) int page_free(struct kmm *k, uint64_t pa, unsigned order,
                                               const char *fn, const void *caller)
{
    int err;
    struct kmm_frame *f = find_block(k, pa, order, fn, caller, &err);
    if (!f)
        return err;
    if (!(order == 0 && pmm_pcp_free(k, f, pa >> KMM_PAGE_SHIFT))) {
        struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
        int actual;
        kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
        enum kmm_misuse kind = put_locked(k, z, f, pa >> KMM_PAGE_SHIFT, order, &actual);
        kmm_unlock_irqrestore(&z->lock, s);
        if (kind != KMM_MISUSE_COUNT)
            return pmm_misuse(k, kind, fn, pa, order, kind == KMM_MISUSE_WRONG_ORDER ? actual : -1,
                              caller);
    }
    if (pmm_events_on(&k->pmm))
        pmm_event(k, KMM_EVENT_PAGE_FREE, pa, order, UINT64_C(1) << order, caller);
    return KMM_OK;
}

int kmm_page_free(struct kmm *k, uint64_t pa, unsigned order)
{
    /* The common case first: a page this CPU can cache (pmm_pcp_free checks
     * it is an allocated single page with one reference). Anything else,
     * misuse included, takes the full path, which judges it exactly. */
    if (order == 0 && !(pa & (KMM_PAGE_SIZE - 1))) {
        struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
        enum pmm_pcp_put put = f ? pmm_pcp_free_fast(k, f, pa >> KMM_PAGE_SHIFT) : PMM_PCP_REFUSED;
        if (put != PMM_PCP_REFUSED) {
            if (put == PMM_PCP_CACHED_OVER)
                pmm_pcp_trim(k);
            return KMM_OK;
        }
    }
    return page_free(k, pa, order, "kmm_page_free", __builtin_return_address(0));
}

/* As kmm_page_alloc_caller: the full path, which judges every free. */
int kmm_page_free_caller(struct kmm *k, uint64_t pa, unsigned order, const void *caller)
{
    return page_free(k, pa, order, "kmm_page_free", caller);
}

int kmm_pages_free(struct kmm *k, uint64_t pa, size_t count)
{
    unsigned order = count ? kmm_order_for_count(count) : KMM_PAGE_MAX_ORDER + 1;
    return page_free(k, pa, order, "kmm_pages_free", __builtin_return_address(0));
}

int kmm_page_get(struct kmm *k, uint64_t pa)
{
    const void *caller = __builtin_return_address(0);
    int err;
    struct kmm_frame *f = find_block(k, pa, 0, "kmm_page_get", caller, &err);
    if (!f)
        return err;
    struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    /* A compare-exchange, as in put_locked: a CPU may claim the page for
     * its cache meanwhile, and then this is a get of a free page. */
    union frame_meta seen = frame_meta_get(f), want;
    enum kmm_misuse kind;
    do {
        kind = judge_locked(&k->pmm, pa >> KMM_PAGE_SHIFT, seen, 0, false);
        if (kind == KMM_MISUSE_COUNT && (seen.count & ~FRAME_MAPPED) == FRAME_REFS_MAX)
            kind = KMM_MISUSE_LIMIT;
        if (kind != KMM_MISUSE_COUNT)
            break;
        KMM_ASSERT(k->port, seen.count != 0); /* an allocated block has a reference */
        want = seen;
        want.count++;
    } while (!frame_meta_cas(f, &seen, want));
    kmm_unlock_irqrestore(&z->lock, s);
    if (kind != KMM_MISUSE_COUNT)
        return pmm_misuse(k, kind, "kmm_page_get", pa, 0, -1, caller);
    return KMM_OK;
}

/* --- owned mappings' references (for the vmm) ------------------------------------ */

/* The frame of the single page at pa an owned mapping may reference, or
 * NULL. Racy by nature; the caller judges the frame again under its lock. */
static struct kmm_frame *mappable_frame(struct kmm *k, uint64_t pa)
{
    if (pa & (KMM_PAGE_SIZE - 1))
        return NULL;
    struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
    return f && frame_state_get(f) == FRAME_ALLOCATED ? f : NULL;
}

bool pmm_page_map_get(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = mappable_frame(k, pa);
    if (!f)
        return false;
    uint64_t pfn = pa >> KMM_PAGE_SHIFT;
    struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    union frame_meta seen = frame_meta_get(f), want;
    bool ok;
    do {
        /* An allocated single page, not a run's tagged head (its prev is
         * the tag). With FRAME_MAPPED set nothing changes the word without
         * this lock, and a run's tag is never added to an allocated page,
         * so next is read once it is known to be allocated. */
        ok = seen.state == FRAME_ALLOCATED && seen.order == 0 &&
             __atomic_load_n(&f->next, __ATOMIC_RELAXED) != pfn &&
             (!(seen.count & FRAME_MAPPED) || f->prev < FRAME_MAPS_MAX);
        if (!ok)
            break;
        KMM_ASSERT(k->port, seen.count != 0);
        want = seen;
        want.count |= FRAME_MAPPED;
    } while (!frame_meta_cas(f, &seen, want));
    if (ok)
        f->prev = (seen.count & FRAME_MAPPED) ? f->prev + 1 : 1;
    kmm_unlock_irqrestore(&z->lock, s);
    return ok;
}

void pmm_page_map_put(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = mappable_frame(k, pa);
    KMM_ASSERT(k->port, f != NULL);
    struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    /* With FRAME_MAPPED set, no CPU can claim the page (its count is not
     * 1): the word and the mapcount change under this lock only. */
    union frame_meta m = frame_meta_get(f);
    KMM_ASSERT(k->port, m.state == FRAME_ALLOCATED && m.order == 0 && (m.count & FRAME_MAPPED) &&
                            f->prev >= 1);
    if (--f->prev == 0) {
        m.count &= ~FRAME_MAPPED;
        __atomic_store_n(&f->meta, m.word, __ATOMIC_RELAXED);
        if (m.count == 0) {
            z->free_pages++;
            z->free_calls++;
            pmm_free_block_locked(&k->pmm, z, pa >> KMM_PAGE_SHIFT, 0);
        }
    }
    kmm_unlock_irqrestore(&z->lock, s);
}

uint32_t pmm_page_map_count(struct kmm *k, uint64_t pa)
{
    struct kmm_frame *f = mappable_frame(k, pa);
    if (!f)
        return 0;
    struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    uint32_t n = (__atomic_load_n(&f->count, __ATOMIC_RELAXED) & FRAME_MAPPED) ? f->prev : 0;
    kmm_unlock_irqrestore(&z->lock, s);
    return n;
}

bool pmm_page_mapped(struct kmm *k, uint64_t pa)
{
    const struct kmm_frame *f = mappable_frame(k, pa);
    return f && (__atomic_load_n(&f->count, __ATOMIC_RELAXED) & FRAME_MAPPED);
}
