/*
 * run.c - runs: any number of physically contiguous pages, aligned, below a
 * limit (DMA buffers, 1 GiB huge pages). The contracts are in kmm/page.h.
 *
 * A run is not a new kind of object. It is carved out of free buddy blocks
 * and handed out as the ordinary allocated blocks of its maximal aligned
 * decomposition: [s, e) split greedily, from s upwards, into the largest
 * naturally aligned power-of-two blocks (at most KMM_PAGE_MAX_ORDER) that fit.
 * Each is an ALLOCATED head with its order and reference count 1, every
 * other frame INTERIOR, so kmm_check needs nothing new. 5 pages at frame 8:
 *
 *     frame   8    9    10   11   12   13   14   15
 *           +-------------------+----+
 *           | order 2           | 0  |     [8, 13): heads 8 (order 2), 12 (order 0)
 *           +-------------------+----+
 *
 * Implementation subtleties:
 *  - The run's first head carries a tag, so that kmm_run_free knows the
 *    run's exact length and refuses any other count, a block inside a run,
 *    and a plain block of kmm_page_alloc: next = its own frame number (a
 *    self link, which no list ever holds) and prev = the run's last frame.
 *    Every other head of the run has next = prev = KMM_PFN_NONE. ALLOCATED
 *    frames use next and prev for nothing else, and every path that makes a
 *    frame an ALLOCATED head wrote them last (a free-list push, a CPU cache,
 *    or this file), so no other block carries the tag (frame.h's layout
 *    says the same).
 *  - The blocks of a run stay ordinary blocks to the rest of the allocator:
 *    kmm_page_get and kmm_page_free work on each (a run freed block by block
 *    that way is then refused by kmm_run_free, as partly free).
 *  - Finding a run walks the zone's frames in frame-number order through the
 *    present sections, from block head to block head. A block never crosses
 *    a section, a zone or a node, so from a section start, or from a frame
 *    of another zone or node, the next frame of this zone and node is a head
 *    (or ABSENT, RESERVED, PCP, ...). Frames of other zones and nodes are
 *    under other locks and change under us: the walk steps over them one at
 *    a time and reads only their zone and node. Those are written before a
 *    frame joins a zone, and a section is published in sections[] holding
 *    its zone's lock on every node (grow.c), so under this zone's lock the
 *    walk sees this zone's sections whole or not at all. Any state but FREE
 *    is "not free"; a FREE or ALLOCATED head of this zone is stepped over by
 *    its order, any other state by one frame.
 *  - The walk keeps the current stretch of consecutive FREE blocks. The
 *    lowest aligned start in a stretch is fixed by its first frame, and a
 *    stretch only grows, so the first fit is found as soon as the stretch is
 *    long enough: lowest address first, which suits DMA limits.
 *  - Carving: the run's start is always the head of a free block (see
 *    run_carve_locked), so the free blocks from s on leave their lists until
 *    e is covered, [s, e) is marked as the run's blocks, and only then is the
 *    part of the last free block beyond e given back (pmm_free_block_locked):
 *    it may merge with its buddies, never with the run.
 *  - Freeing validates every block of the run under the zone lock before it
 *    changes anything (seL4's decode, then invoke), so a rejected free leaves
 *    everything as it was.
 *  - Counters: a run is one allocation (zone alloc_calls + 1) and its free
 *    one return (free_calls + 1), whatever the number of its blocks.
 *
 * Cost: finding a run is O(frames in the address span of each zone tried),
 * under that zone's lock, so interrupts stay off for up to a walk of the
 * zone. That is fine for what runs are for (boot-time DMA buffers, huge
 * pages), not for a hot path. Marking and freeing cost O(count / 2^10 +
 * KMM_PAGE_MAX_ORDER) blocks; zeroing is O(count) with no lock held.
 *
 * Allocation goes through the one request engine (zonelist.h,
 * pmm_request_pfn) with run_take_locked as the take: the zone-locked path,
 * then the slow path (growth, cache drain, shrinkers), as for blocks.
 *
 * Locking: one zone lock at a time, as in buddy.c; the slow path (growth,
 * cache drain, shrinkers) runs with no lock held.
 */
#include "internal.h"

#include <kmm/fmt.h>

#include "pmm/pmm.h"
#include "pmm/zonelist.h"

/* --- decomposition -------------------------------------------------------------- */

/* The order of the block of the maximal aligned decomposition of [pfn, end)
 * that starts at pfn: as large as pfn's alignment and the room left allow. */
static unsigned run_block_order(uint64_t pfn, uint64_t end)
{
    unsigned order = KMM_PAGE_MAX_ORDER;
    if (pfn) {
        unsigned align = (unsigned)__builtin_ctzll(pfn);
        if (align < order)
            order = align;
    }
    unsigned room = 63u - (unsigned)__builtin_clzll(end - pfn); /* end > pfn */
    return room < order ? room : order;
}

/* Gives [pfn, end) back to z as the blocks of its decomposition, merging
 * with free buddies. The frames are INTERIOR and counted in z->free_pages.
 * Zone lock held. */
static void run_give_back_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, uint64_t end)
{
    while (pfn < end) {
        unsigned order = run_block_order(pfn, end);
        pmm_free_block_locked(pm, z, pfn, order);
        pfn += UINT64_C(1) << order;
    }
}

/* --- finding --------------------------------------------------------------------- */

/* A request in frames. */
struct run_request {
    uint64_t count;
    uint64_t align; /* a power of two */
    uint64_t limit; /* the run must end at or below this frame */
};

/* The frames a zone can hold: its address range, in frame numbers. */
static void run_zone_span(const struct kmm_pmm *pm, unsigned zone, uint64_t *lo, uint64_t *hi)
{
    static const uint64_t bound[KMM_ZONE_COUNT + 1] = {
        0, KMM_ZONE_DMA_END >> KMM_PAGE_SHIFT, KMM_ZONE_DMA32_END >> KMM_PAGE_SHIFT, UINT64_MAX};
    *lo = bound[zone];
    *hi = bound[zone + 1] < pm->pfn_end ? bound[zone + 1] : pm->pfn_end;
}

/* The lowest first frame in z for the request, or KMM_PFN_NONE. Zone lock
 * held. */
static uint64_t run_find_locked(const struct kmm_pmm *pm, const struct kmm_zone *z,
                                const struct run_request *req)
{
    uint64_t pfn, hi;
    run_zone_span(pm, z->id, &pfn, &hi);
    if (hi > req->limit)
        hi = req->limit; /* a block starting below the limit may still hold a run */
    uint64_t stretch = KMM_PFN_NONE;
    while (pfn < hi) {
        uint64_t section = pfn >> KMM_SECTION_SHIFT;
        if (!pm->sections[section]) {
            stretch = KMM_PFN_NONE;
            pfn = (section + 1) << KMM_SECTION_SHIFT;
            continue;
        }
        /* One atomic read: a CPU may claim or hand out a single page of
         * this zone without the lock meanwhile (frame.h). */
        union frame_meta f = frame_meta_get(pmm_frame(pm, pfn));
        uint64_t step = 1;
        bool free = false;
        if (f.zone == z->id && f.node == z->node) {
            if ((f.state == FRAME_FREE || f.state == FRAME_ALLOCATED) &&
                f.order <= KMM_PAGE_MAX_ORDER)
                step = UINT64_C(1) << f.order;
            free = f.state == FRAME_FREE;
        }
        if (!free) {
            stretch = KMM_PFN_NONE;
            pfn += step;
            continue;
        }
        if (stretch == KMM_PFN_NONE)
            stretch = pfn;
        uint64_t end = pfn + step;
        uint64_t start = kmm_align_up(stretch, req->align);
        uint64_t top = end < req->limit ? end : req->limit;
        if (start < top && req->count <= top - start)
            return start;
        pfn = end;
    }
    return KMM_PFN_NONE;
}

/* --- carving --------------------------------------------------------------------- */

/* Marks [s, e) as the run's blocks, the first one tagged. The frames are
 * INTERIOR and off every list. Zone lock held. Each block's links are
 * written before it becomes ALLOCATED: from then on a CPU may claim an
 * order-0 block for its cache without the lock (frame.h) and write `next`. */
static void run_mark_locked(struct kmm_pmm *pm, uint64_t s, uint64_t e)
{
    for (uint64_t pfn = s; pfn < e;) {
        unsigned order = run_block_order(pfn, e);
        struct kmm_frame *f = pmm_frame(pm, pfn);
        f->next = pfn == s ? (uint32_t)s : KMM_PFN_NONE;
        f->prev = pfn == s ? (uint32_t)(e - 1) : KMM_PFN_NONE;
        frame_set(f, FRAME_ALLOCATED, order, 1);
        pfn += UINT64_C(1) << order;
    }
}

/* Takes [s, e) out of z's free blocks and hands it out as one run. s is
 * the head of a free block: s is the lowest multiple of the alignment in its
 * stretch, so a free block holding s and starting below it would start at
 * an even larger alignment, inside the stretch and below s, which cannot
 * be. Only the last block may reach beyond e; that part is given back. */
static void run_carve_locked(struct kmm *k, struct kmm_zone *z, uint64_t s, uint64_t e)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t pfn = s;
    while (pfn < e) {
        struct kmm_frame *f = pmm_frame(pm, pfn);
        KMM_ASSERT(k->port, frame_state_get(f) == FRAME_FREE && f->zone == z->id);
        unsigned order = f->order;
        pmm_list_remove(pm, z, pfn, order);
        frame_state_set(f, FRAME_INTERIOR);
        pfn += UINT64_C(1) << order;
    }
    run_mark_locked(pm, s, e);
    run_give_back_locked(pm, z, e, pfn);
    z->free_pages -= e - s;
    z->alloc_calls++;
}

/* --- allocation ------------------------------------------------------------------- */

/* A zone worth locking: some of it lies below the request's limit. */
static bool run_zone_wanted(const struct kmm_pmm *pm, const struct kmm_zone *z, const void *ctx)
{
    const struct run_request *req = ctx;
    uint64_t lo, hi;
    run_zone_span(pm, z->id, &lo, &hi);
    return lo < req->limit;
}

/* Finds and carves the run in z (zone lock held). */
static uint64_t run_take_locked(struct kmm *k, struct kmm_zone *z, const void *ctx)
{
    const struct run_request *req = ctx;
    uint64_t pfn = run_find_locked(&k->pmm, z, req);
    if (pfn != KMM_PFN_NONE)
        run_carve_locked(k, z, pfn, pfn + req->count);
    return pfn;
}

/* --- misuse ------------------------------------------------------------------------- */

/* Rejected run calls are counted in the page layer's row and logged in
 * buddy.c's shape, "call(arguments): what, caller". A run speaks in page
 * counts rather than orders, hence texts of its own. */

static const char *run_plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

static void run_alloc_misuse(struct kmm *k, enum kmm_misuse kind, const char *what, size_t count,
                             uint64_t align, uint64_t limit, kmm_gfp_t flags, const void *caller)
{
    kmm_misuse(k, KMM_LAYER_PAGE, kind, KMM_EINVAL, caller,
               "kmm_run_alloc(%llu page%s, align 0x%llx, limit 0x%llx, flags 0x%x): %s",
               (unsigned long long)count, run_plural(count), (unsigned long long)align,
               (unsigned long long)limit, flags, what);
}

/* Why a free is refused: the kind counted, the error returned, what the log
 * says, where (the frame concerned) and, for a wrong count, the real one. */
struct run_verdict {
    enum kmm_misuse kind; /* KMM_MISUSE_COUNT: none */
    int err;
    const char *what;
    uint64_t at;
    uint64_t actual; /* pages the run has; 0: not known */
};

static int run_free_misuse(struct kmm *k, const struct run_verdict *v, uint64_t pa, size_t count,
                           const void *caller)
{
    char detail[48] = "";
    if (v->actual)
        kmm_snprintf(detail, sizeof(detail), ": allocated as %llu page%s",
                     (unsigned long long)v->actual, run_plural(v->actual));
    else if (v->at != pa >> KMM_PAGE_SHIFT)
        kmm_snprintf(detail, sizeof(detail), " at 0x%llx",
                     (unsigned long long)v->at << KMM_PAGE_SHIFT);
    return kmm_misuse(k, KMM_LAYER_PAGE, v->kind, v->err, caller,
                      "kmm_run_free(0x%llx, %llu page%s): %s%s", (unsigned long long)pa,
                      (unsigned long long)count, run_plural(count), v->what, detail);
}

uint64_t kmm_run_alloc(struct kmm *k, size_t count, uint64_t align, uint64_t limit, kmm_gfp_t flags)
{
    return kmm_run_alloc_caller(k, count, align, limit, flags, __builtin_return_address(0));
}

uint64_t kmm_run_alloc_caller(struct kmm *k, size_t count, uint64_t align, uint64_t limit,
                              kmm_gfp_t flags, const void *caller)
{
    uint64_t a = align ? align : KMM_PAGE_SIZE;
    const char *bad = count == 0 ? "count 0"
                      : (a & (a - 1)) != 0 || a < KMM_PAGE_SIZE
                          ? "alignment not a power of two >= 4096"
                      : limit != 0 && limit < KMM_PAGE_SIZE ? "limit below 4096"
                                                            : NULL;
    if (bad) {
        run_alloc_misuse(k, KMM_MISUSE_BAD_ORDER, bad, count, align, limit, flags, caller);
        return 0;
    }
    if (!pmm_flags_valid(flags, KMM_GFP_VALID)) {
        run_alloc_misuse(k, KMM_MISUSE_BAD_FLAGS, "unknown or conflicting flags", count, align,
                         limit, flags, caller);
        return 0;
    }
    struct run_request req = {.count = count,
                              .align = a >> KMM_PAGE_SHIFT,
                              .limit = limit ? limit >> KMM_PAGE_SHIFT : UINT64_MAX};
    /* Growth and the shrinkers are asked for the order that covers the
     * run, at most the largest block. */
    unsigned order = kmm_order_for_count(count);
    struct pmm_request rq = {.order = order < KMM_PAGE_MAX_ORDER ? order : KMM_PAGE_MAX_ORDER,
                             .flags = flags,
                             .take = run_take_locked,
                             .wanted = run_zone_wanted,
                             .ctx = &req};
    unsigned poison = pmm_poison_begin(&k->pmm);
    uint64_t pfn = pmm_request_pfn(k, &rq);
    if (pfn == KMM_PFN_NONE)
        return 0;
    uint64_t pa = pfn << KMM_PAGE_SHIFT;
    pmm_poison_verify(k, poison, pa, count, "kmm_run_alloc", caller);
    if (flags & KMM_GFP_ZERO)
        __builtin_memset(kmm_phys_to_virt(k, pa), 0, (size_t)count << KMM_PAGE_SHIFT);
    if (pmm_events_on(&k->pmm))
        pmm_event(k, KMM_EVENT_RUN_ALLOC, pa, KMM_EVENT_NONE, count, caller);
    return pa;
}

/* --- freeing ------------------------------------------------------------------------ */

/* Judges the free of count pages at pfn, whose first frame f is of zone z,
 * without changing anything. Zone lock held. */
static struct run_verdict run_judge_locked(const struct kmm_pmm *pm, const struct kmm_zone *z,
                                           const struct kmm_frame *f, uint64_t pfn, uint64_t count)
{
    struct run_verdict v = {.kind = KMM_MISUSE_COUNT, .err = KMM_OK, .at = pfn};
    uint8_t state = frame_state_get(f);
    if (state == FRAME_FREE || state == FRAME_PCP ||
        (state == FRAME_INTERIOR && pmm_inside_free_block_locked(pm, pfn)))
        return (struct run_verdict){KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE,
                                    "already free (double free)", pfn, 0};
    /* A CPU that claims a single page for its cache writes its `next`
     * without the lock (frame.h): read it the same way. */
    uint32_t next = __atomic_load_n(&f->next, __ATOMIC_RELAXED);
    if (state != FRAME_ALLOCATED || next != pfn || f->prev < pfn)
        return (struct run_verdict){KMM_MISUSE_NOT_BLOCK, KMM_EINVAL,
                                    "not the start of an allocated run", pfn, 0};
    uint64_t length = (uint64_t)f->prev - pfn + 1; /* from the tag */
    if (length != count)
        return (struct run_verdict){KMM_MISUSE_WRONG_ORDER, KMM_EINVAL,
                                    "wrong page count for this run", pfn, length};
    /* Every block of the decomposition must still be the run's. */
    uint64_t end = pfn + count;
    for (uint64_t p = pfn; p < end;) {
        unsigned order = run_block_order(p, end);
        const struct kmm_frame *b = pmm_frame_lookup(pm, p);
        union frame_meta bm = {.word = 0}; /* FRAME_ABSENT */
        if (b)
            bm = frame_meta_get(b); /* one atomic read, as in run_find_locked */
        uint8_t bs = bm.state;
        if (!b || bm.zone != z->id || bm.node != z->node ||
            (bs != FRAME_FREE && bs != FRAME_PCP && (bs != FRAME_ALLOCATED || bm.order != order)))
            return (struct run_verdict){KMM_MISUSE_NOT_BLOCK, KMM_EINVAL,
                                        "part of the run is no longer allocated as such", p, 0};
        if (bs != FRAME_ALLOCATED)
            return (struct run_verdict){KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE,
                                        "part of the run is free already", p, 0};
        if (bm.count != 1)
            return (struct run_verdict){KMM_MISUSE_NOT_BLOCK, KMM_EBUSY,
                                        "a block of the run has other references", p, 0};
        p += UINT64_C(1) << order;
    }
    return v;
}

/* Sets the count of each order-0 block of the run [pfn, end) below stop
 * from `from` to `to` by compare-exchange. Returns the first block whose
 * count was not `from` (it changed nothing there or after), or
 * KMM_PFN_NONE. Zone lock held. */
static uint64_t run_swap_single_pages(struct kmm_pmm *pm, uint64_t pfn, uint64_t end, uint64_t stop,
                                      uint32_t from, uint32_t to)
{
    for (uint64_t p = pfn; p < stop;) {
        unsigned order = run_block_order(p, end);
        struct kmm_frame *b = pmm_frame(pm, p);
        union frame_meta seen = frame_meta_get(b), want = seen;
        want.count = to;
        if (order == 0 && (seen.count != from || !frame_meta_cas(b, &seen, want)))
            return p;
        p += UINT64_C(1) << order;
    }
    return KMM_PFN_NONE;
}

/* The run's single pages are the only blocks a CPU can claim for its cache
 * without the lock (frame.h). Takes their last reference by
 * compare-exchange, so that none can be claimed any more (no other path
 * changes an allocated frame without the lock). If one was claimed after
 * the judgement, puts the others back and returns it (the caller reports a
 * double free); else KMM_PFN_NONE. Zone lock held. */
static uint64_t run_hold_single_pages(struct kmm_pmm *pm, uint64_t pfn, uint64_t end)
{
    uint64_t claimed = run_swap_single_pages(pm, pfn, end, end, 1, 0);
    if (claimed != KMM_PFN_NONE)
        run_swap_single_pages(pm, pfn, end, claimed, 0, 1);
    return claimed;
}

/* Returns every block of the judged run at [pfn, pfn + count) to z, merging
 * with free buddies. Zone lock held; no block can be claimed any more
 * (run_hold_single_pages). */
static void run_release_locked(struct kmm_pmm *pm, struct kmm_zone *z, uint64_t pfn, uint64_t count)
{
    struct kmm_frame *first = pmm_frame(pm, pfn);
    first->next = KMM_PFN_NONE; /* the tag goes */
    first->prev = KMM_PFN_NONE;
    uint64_t end = pfn + count;
    for (uint64_t p = pfn; p < end;) {
        unsigned order = run_block_order(p, end);
        frame_set(pmm_frame(pm, p), FRAME_ALLOCATED, order, 0);
        pmm_free_block_locked(pm, z, p, order);
        p += UINT64_C(1) << order;
    }
    z->free_pages += count;
    z->free_calls++;
}

int kmm_run_free(struct kmm *k, uint64_t pa, size_t count)
{
    return kmm_run_free_caller(k, pa, count, __builtin_return_address(0));
}

int kmm_run_free_caller(struct kmm *k, uint64_t pa, size_t count, const void *caller)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t pfn = pa >> KMM_PAGE_SHIFT;
    struct run_verdict v = {.kind = KMM_MISUSE_COUNT, .at = pfn};
    const struct kmm_frame *f = NULL;
    if (count == 0)
        v = (struct run_verdict){KMM_MISUSE_BAD_ORDER, KMM_EINVAL, "count 0", pfn, 0};
    else if (pa & (KMM_PAGE_SIZE - 1))
        v = (struct run_verdict){KMM_MISUSE_UNALIGNED, KMM_EINVAL, "address not page aligned", pfn,
                                 0};
    else if (!(f = pmm_frame_lookup(pm, pfn)) || frame_state_get(f) == FRAME_ABSENT)
        v = (struct run_verdict){KMM_MISUSE_OUTSIDE, KMM_ERANGE, "address outside managed memory",
                                 pfn, 0};
    else if (frame_state_get(f) == FRAME_RESERVED)
        v = (struct run_verdict){KMM_MISUSE_RESERVED, KMM_EINVAL, "a reserved page", pfn, 0};
    if (v.kind != KMM_MISUSE_COUNT)
        return run_free_misuse(k, &v, pa, count, caller);

    struct kmm_zone *z = pmm_zone_of(pm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    v = run_judge_locked(pm, z, f, pfn, count);
    if (v.kind == KMM_MISUSE_COUNT) {
        uint64_t claimed = run_hold_single_pages(pm, pfn, pfn + count);
        if (claimed == KMM_PFN_NONE)
            run_release_locked(pm, z, pfn, count);
        else /* freed to a CPU cache since it was judged: a racing free */
            v = (struct run_verdict){KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE,
                                     "part of the run is free already", claimed, 0};
    }
    kmm_unlock_irqrestore(&z->lock, s);
    if (v.kind != KMM_MISUSE_COUNT)
        return run_free_misuse(k, &v, pa, count, caller);
    if (pmm_events_on(pm))
        pmm_event(k, KMM_EVENT_RUN_FREE, pa, KMM_EVENT_NONE, count, caller);
    return KMM_OK;
}
