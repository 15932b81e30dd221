/*
 * pcp.c - per-CPU caches of free single pages.
 *
 * The common case of the page allocator is one page allocated and soon
 * freed on the same CPU. Each CPU therefore keeps, for each zone of its
 * node, a LIFO list of free pages it alone touches: taking or putting a page
 * costs a few loads and stores with interrupts and preemption off and no
 * lock; taking uses no atomic read-modify-write, and putting one
 * compare-exchange, the claim of the page's descriptor that settles two
 * CPUs freeing the same page at once (frame.h). A cache refills from its
 * zone, and gives back to it, in batches under the zone lock, so the
 * lock's cost is shared by a batch of pages.
 *
 * Bounds (set at init, per zone): batch = min(64, max(1, managed / 1024));
 * high = managed / (8 * CPUs), at least 4 * batch, at most 8192. So all the
 * caches together hold at most about 1/8 of a zone, and a CPU that frees
 * more than high pages gives back a batch at a time.
 *
 * Draining: a CPU short of memory empties its own caches at once and sets
 * the drain flag of every other CPU with cached pages; a CPU checks its flag
 * (one relaxed load) on every cache operation and empties its caches when it
 * is set. kmm_page_drain_cpu lets a host do it from an IPI or idle path.
 *
 * A page in a cache is in state PCP: to the zone it is allocated, to callers
 * it is free (a free of it is a double free, judged on the locked path).
 *
 * Lock order (docs/architecture.md, "Lock order"): 4 this CPU's caches (not
 * a lock: IRQs and preemption off) -> 6 the zone lock of a batch move. A
 * cache never grows a zone (takes the growth lock): a refill that finds its
 * zone empty while memory is deferred leaves the request to the
 * zone-locked path (alloc_refill).
 */
#include "internal.h"

#include "pmm/pcp.h"
#include "pmm/pmm.h"
#include "pmm/zonelist.h"

#define PCP_BATCH_MAX 64
#define PCP_HIGH_MAX  8192

void pmm_pcp_bounds(struct kmm_zone *z, unsigned cpu_count)
{
    uint64_t batch = z->managed_pages / 1024;
    batch = batch < 1 ? 1 : batch > PCP_BATCH_MAX ? PCP_BATCH_MAX : batch;
    uint64_t high = z->managed_pages / (8 * (uint64_t)cpu_count);
    high = high < 4 * batch ? 4 * batch : high > PCP_HIGH_MAX ? PCP_HIGH_MAX : high;
    /* A zone that grows changes its bounds while CPUs read them: store only
     * a changed value, atomically. */
    if (z->pcp_batch != batch)
        __atomic_store_n(&z->pcp_batch, (uint32_t)batch, __ATOMIC_RELAXED);
    if (z->pcp_high != high)
        __atomic_store_n(&z->pcp_high, (uint32_t)high, __ATOMIC_RELAXED);
}

void pmm_pcp_setup(struct kmm *k, unsigned cpu_count)
{
    struct kmm_pmm *pm = &k->pmm;
    pm->cpu_count = cpu_count;
    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++)
            pmm_pcp_bounds(&pm->zones[n][zi], cpu_count);
    for (unsigned c = 0; c < cpu_count; c++) {
        struct kmm_pcp_cpu *pc = &pm->pcp[c];
        unsigned node = kmm_port_node_of_cpu(k->port, c);
        pc->node = (uint8_t)(node < pm->node_count ? node : 0);
        atomic_init(&pc->drain, 0);
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
            pc->zone[zi].head = KMM_PFN_NONE;
            atomic_init(&pc->zone[zi].count, 0);
            atomic_init(&pc->zone[zi].refilled, 0);
            atomic_init(&pc->zone[zi].returned, 0);
            atomic_init(&pc->zone[zi].frees, 0);
            pc->zone[zi].high = pm->zones[pc->node][zi].pcp_high;
        }
    }
    pmm_pcp_zonelists_changed(pm);
}

/* A zone's cache bounds change while CPUs read them (when it grows). */
static inline uint32_t zone_batch(const struct kmm_zone *z)
{
    return __atomic_load_n(&z->pcp_batch, __ATOMIC_RELAXED);
}

static inline uint32_t zone_high(const struct kmm_zone *z)
{
    return __atomic_load_n(&z->pcp_high, __ATOMIC_RELAXED);
}

/* The batch paths below are out of line and cold, so that the common path
 * (a page taken from or put on a non-empty cache) stays a short leaf. */
#define PCP_SLOW __attribute__((noinline, cold))

/* PCP_ZEROED (pcp.h) marks a cached page known to hold zeros. */

/* Gives up to n pages of cache p (of zone z) back to the zone. Returns how
 * many. The cache's owner, interrupts off. */
static PCP_SLOW unsigned give_back(struct kmm_pmm *pm, struct kmm_zone *z, struct kmm_pcp *p,
                                   unsigned n)
{
    unsigned moved = 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    while (moved < n && p->head != KMM_PFN_NONE) {
        uint32_t pfn = p->head;
        p->head = pmm_frame(pm, pfn)->next;
        z->free_pages++;
        pmm_free_block_locked(pm, z, pfn, 0);
        moved++;
    }
    kmm_unlock_irqrestore(&z->lock, s);
    pcp_own_add(&p->count, -moved);
    pcp_own_addl(&p->returned, moved);
    return moved;
}

/* Empties every cache of CPU pc. Its owner (or nobody runs on it). */
static PCP_SLOW unsigned drain_cpu(struct kmm_pmm *pm, struct kmm_pcp_cpu *pc)
{
    unsigned moved = 0;
    /* While pages are poisoned or page events recorded the caches stay
     * empty: the flag stays up, so that the inline paths keep refusing
     * (poison.c, events.c). */
    atomic_store_explicit(&pc->drain, pmm_pcp_bypassed(pm), memory_order_relaxed);
    for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++)
        if (pcp_count(&pc->zone[zi]))
            moved += give_back(pm, &pm->zones[pc->node][zi], &pc->zone[zi], UINT32_MAX);
    return moved;
}

/* Another CPU's drain request honoured; whether the caches may be used (not while
 * they are bypassed: poison.c and events.c keep the flag raised meanwhile). */
static PCP_SLOW bool drain_then_usable(struct kmm_pmm *pm, struct kmm_pcp_cpu *pc)
{
    drain_cpu(pm, pc);
    return !pmm_pcp_bypassed(pm);
}

/* Honours another CPU's drain request (cheap when there is none), and
 * says whether the caches may be used. */
static inline bool drain_usable(struct kmm_pmm *pm, struct kmm_pcp_cpu *pc)
{
    return __builtin_expect(atomic_load_explicit(&pc->drain, memory_order_relaxed) == 0, 1) ||
           drain_then_usable(pm, pc);
}

/* Fills cache p from zone z with up to one batch. Returns pages moved. */
static PCP_SLOW unsigned refill(struct kmm_pmm *pm, struct kmm_zone *z, struct kmm_pcp *p)
{
    unsigned moved = 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    uint32_t batch = zone_batch(z);
    while (moved < batch) {
        uint64_t pfn = pmm_take_block_locked(pm, z, 0);
        if (pfn == KMM_PFN_NONE)
            break;
        struct kmm_frame *f = pmm_frame(pm, pfn);
        frame_set(f, FRAME_PCP, 0, 0);
        f->next = p->head;
        p->head = (uint32_t)pfn;
        moved++;
    }
    kmm_unlock_irqrestore(&z->lock, s);
    pcp_own_add(&p->count, moved);
    pcp_own_addl(&p->refilled, moved);
    return moved;
}

void pmm_pcp_zonelists_changed(struct kmm_pmm *pm)
{
    for (unsigned c = 0; c < pm->cpu_count; c++) {
        struct kmm_pcp_cpu *pc = &pm->pcp[c];
        for (unsigned top = 0; top < KMM_ZONE_COUNT; top++) {
            /* The first populated zone of the list, if it is this node's. */
            unsigned pos = 0;
            const struct kmm_zone *z = pmm_zonelist_zone(pm, pc->node, top, &pos);
            uint8_t first = z && z->node == pc->node ? z->id : PCP_NO_ZONE;
            atomic_store_explicit(&pc->first[top], first, memory_order_relaxed);
        }
    }
}

/* The first cache was empty: walk the local zones of the zone list,
 * refilling caches from their zones. Returns 0 if they are all empty, and
 * also at the first empty one while any memory is deferred: growing a zone
 * writes a section's descriptors (about 0.1 ms), which is the zone-locked
 * path's to do (zonelist.c), with IRQs as the caller had them, not this
 * one's with IRQs and preemption off; it grows that zone before falling
 * back to a lower one, as this walk would. */
static PCP_SLOW uint64_t alloc_refill(struct kmm *k, struct kmm_pcp_cpu *pc, unsigned top,
                                      bool zero)
{
    struct kmm_pmm *pm = &k->pmm;
    unsigned pos = 0;
    struct kmm_zone *z;
    while ((z = pmm_zonelist_zone(pm, pc->node, top, &pos))) {
        if (z->node != pc->node)
            break; /* remote zones come next: the locked path takes them in order */
        struct kmm_pcp *p = &pc->zone[z->id];
        if (pcp_count(p) || refill(pm, z, p)) {
            /* The mark is read before the pop rewrites the count. */
            uint64_t tag = zero && pmm_frame(pm, p->head)->count == PCP_ZEROED ? PMM_PCP_ZEROED : 0;
            return pcp_pop(pm, p) | tag;
        }
        if (atomic_load_explicit(&pm->grow.deferred_total, memory_order_relaxed))
            break; /* z may grow: the locked path decides */
    }
    return 0;
}

uint64_t pmm_pcp_alloc(struct kmm *k, kmm_gfp_t flags)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *pc = pcp_this_cpu(k);
    uint64_t pa = drain_usable(pm, pc)
                      ? alloc_refill(k, pc, pmm_top_zone(flags), (flags & KMM_GFP_ZERO) != 0)
                      : 0;
    kmm_irq_restore(s);
    kmm_preempt_enable();
    return pa;
}

bool pmm_pcp_free_zeroed(struct kmm *k, struct kmm_frame *f, uint64_t pfn)
{
    bool cached = false, over = false;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *pc = pcp_this_cpu(k);
    union frame_meta m = frame_meta_get(f);
    if (!atomic_load_explicit(&pc->drain, memory_order_relaxed) && m.node == pc->node) {
        /* A table page goes from PAGETABLE to the cache with plain stores:
         * no other CPU writes its word (a stale kmm_page_free claims only
         * an allocated page, and is refused a table), so there is no claim
         * to race, and IRQs off keep this CPU's cache to itself. */
        struct kmm_pcp *p = &pc->zone[m.zone];
        m.state = FRAME_PCP;
        m.order = 0;
        m.count = PCP_ZEROED;
        __atomic_store_n(&f->next, p->head, __ATOMIC_RELAXED);
        __atomic_store_n(&f->meta, m.word, __ATOMIC_RELAXED);
        p->head = (uint32_t)pfn;
        pcp_own_add(&p->count, 1);
        pcp_own_inc(&p->frees);
        over = pcp_count(p) > __atomic_load_n(&p->high, __ATOMIC_RELAXED);
        cached = true;
    }
    kmm_irq_restore(s);
    kmm_preempt_enable();
    if (over)
        pmm_pcp_trim(k);
    return cached;
}

/* Gives back a batch from every cache of this CPU that is over its bound. */
void pmm_pcp_trim(struct kmm *k)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *pc = pcp_this_cpu(k);
    for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
        struct kmm_zone *z = &pm->zones[pc->node][zi];
        if (pcp_count(&pc->zone[zi]) > zone_high(z))
            give_back(pm, z, &pc->zone[zi], zone_batch(z));
    }
    kmm_irq_restore(s);
    kmm_preempt_enable();
}

bool pmm_pcp_free(struct kmm *k, struct kmm_frame *f, uint64_t pfn)
{
    struct kmm_pmm *pm = &k->pmm;
    bool over = false;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *pc = pcp_this_cpu(k);
    bool cached = drain_usable(pm, pc) && pcp_cache_page(pc, f, pfn, &over);
    if (over) {
        unsigned zone = frame_meta_get(f).zone; /* the word other CPUs may try to claim */
        struct kmm_zone *z = &pm->zones[pc->node][zone];
        give_back(pm, z, &pc->zone[zone], zone_batch(z));
    }
    kmm_irq_restore(s);
    kmm_preempt_enable();
    return cached;
}

bool pmm_pcp_drain_for_shortage(struct kmm *k)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *self = pcp_this_cpu(k);
    unsigned moved = drain_cpu(pm, self);
    kmm_irq_restore(s);
    kmm_preempt_enable();
    for (unsigned c = 0; c < pm->cpu_count; c++) {
        struct kmm_pcp_cpu *pc = &pm->pcp[c];
        if (pc == self)
            continue;
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
            if (pcp_count(&pc->zone[zi])) {
                atomic_store_explicit(&pc->drain, 1, memory_order_relaxed);
                break;
            }
        }
    }
    return moved > 0;
}

/* A cache's allocations are not counted on the fast path: every page that
 * left a cache either was handed out or was given back, so
 *     handed out = refilled + freed in - given back - still cached.
 * Exact when the owner is quiet; a racing read may be a little off. */
void pmm_pcp_calls(const struct kmm_pmm *pm, unsigned node, unsigned zone, uint64_t *allocs,
                   uint64_t *frees)
{
    for (unsigned c = 0; c < pm->cpu_count; c++) {
        if (pm->pcp[c].node != node)
            continue;
        const struct kmm_pcp *p = &pm->pcp[c].zone[zone];
        uint64_t in = atomic_load_explicit(&p->refilled, memory_order_relaxed) +
                      atomic_load_explicit(&p->frees, memory_order_relaxed);
        uint64_t out = atomic_load_explicit(&p->returned, memory_order_relaxed) + pcp_count(p);
        *allocs += in > out ? in - out : 0;
        *frees += atomic_load_explicit(&p->frees, memory_order_relaxed);
    }
}

uint64_t pmm_pcp_pages(const struct kmm_pmm *pm, unsigned node, unsigned zone)
{
    uint64_t n = 0;
    for (unsigned c = 0; c < pm->cpu_count; c++)
        if (pm->pcp[c].node == node)
            n += pcp_count(&pm->pcp[c].zone[zone]);
    return n;
}

void kmm_page_drain_cpu(struct kmm *k)
{
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    drain_cpu(&k->pmm, pcp_this_cpu(k));
    kmm_irq_restore(s);
    kmm_preempt_enable();
}

bool kmm_page_drain_pending(struct kmm *k)
{
    kmm_preempt_disable();
    bool pending = atomic_load_explicit(&pcp_this_cpu(k)->drain, memory_order_relaxed) != 0;
    kmm_preempt_enable();
    return pending;
}

int kmm_page_drain_offline_cpu(struct kmm *k, unsigned cpu)
{
    if (cpu >= k->pmm.cpu_count)
        return kmm_misuse(
            k, KMM_LAYER_PAGE, KMM_MISUSE_ABSENT, KMM_EINVAL, __builtin_return_address(0),
            "kmm_page_drain_offline_cpu(%u): no such CPU (%u)", cpu, k->pmm.cpu_count);
    drain_cpu(&k->pmm, &k->pmm.pcp[cpu]);
    return KMM_OK;
}
