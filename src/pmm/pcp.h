/*
 * pcp.h - the per-CPU caches' common paths, inline so that the allocator's
 * entry points (buddy.c) run them without a call. Private to src/pmm/.
 * The batch paths and the rules are in pcp.c.
 */
#ifndef KMM_PMM_PCP_H
#define KMM_PMM_PCP_H

#include "internal.h"

#include "pmm/pmm.h"
#include "pmm/zonelist.h"

/* Single-writer counters: the owner adds with a plain load and store. */
static inline void pcp_own_add(atomic_uint *v, unsigned d)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void pcp_own_addl(atomic_ulong *v, unsigned long d)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void pcp_own_inc(atomic_ulong *v)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline unsigned pcp_count(const struct kmm_pcp *p)
{
    return atomic_load_explicit(&p->count, memory_order_relaxed);
}

/* The current CPU's caches. Preemption off. */
static inline struct kmm_pcp_cpu *pcp_this_cpu(struct kmm *k)
{
    unsigned cpu = kmm_port_cpu_id();
    KMM_ASSERT(k->port, cpu < k->pmm.cpu_count);
    return &k->pmm.pcp[cpu];
}

/* Takes the first page of cache p. The owner, IRQs off, p not empty. */
static inline uint64_t pcp_pop(struct kmm_pmm *pm, struct kmm_pcp *p)
{
    uint32_t pfn = p->head;
    struct kmm_frame *f = pmm_frame(pm, pfn);
    p->head = f->next;
    pcp_own_add(&p->count, -1u); /* no counter here: allocations are derived (pcp.c) */
    frame_set(f, FRAME_ALLOCATED, 0, 1);
    return (uint64_t)pfn << KMM_PAGE_SHIFT;
}

/* The fast functions below are leaves: they call nothing, so a cache hit
 * costs no register saves. Whatever needs a batch move (an empty cache, a
 * cache over its bound, a drain request) is left to the full functions. */

/* The count of a cached page known to hold zeros: the table page
 * pmm_pcp_free_zeroed cached. Every other cached page's count is 0, and
 * whatever takes a page out of a cache rewrites its count (pcp_pop, a
 * batch back to the zone), so the mark never outlives the zeros. */
#define PCP_ZEROED 1u

/* A page off this CPU's cache of the first zone flags allow, or 0. With
 * zero (a constant at each call), PMM_PCP_ZEROED is set in the answer when
 * the page is known to hold zeros: the mark is read before the pop
 * rewrites the count. */
static inline __attribute__((always_inline)) uint64_t pmm_pcp_alloc_fast(struct kmm *k,
                                                                         kmm_gfp_t flags, bool zero)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t pa = 0;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *pc = pcp_this_cpu(k);
    unsigned first = atomic_load_explicit(&pc->first[pmm_top_zone(flags)], memory_order_relaxed);
    if (__builtin_expect(first != PCP_NO_ZONE && pcp_count(&pc->zone[first]) != 0 &&
                             !atomic_load_explicit(&pc->drain, memory_order_relaxed),
                         1)) {
        struct kmm_pcp *p = &pc->zone[first];
        uint64_t tag = zero && pmm_frame(pm, p->head)->count == PCP_ZEROED ? PMM_PCP_ZEROED : 0;
        pa = pcp_pop(pm, p) | tag;
    }
    kmm_irq_restore(s);
    kmm_preempt_enable();
    return pa;
}

/* A zeroed single page off this CPU's cache (as pmm_pcp_alloc_fast), or 0.
 * A page known to hold zeros (a freed page table, pmm_table_free_zero) is
 * not zeroed again. */
static inline __attribute__((always_inline)) uint64_t pmm_pcp_alloc_zeroed(struct kmm *k,
                                                                           kmm_gfp_t flags)
{
    uint64_t pa = pmm_pcp_alloc_fast(k, flags, true);
    if (pa & PMM_PCP_ZEROED)
        return pa - PMM_PCP_ZEROED;
    if (pa)
        __builtin_memset(kmm_phys_to_virt(k, pa), 0, KMM_PAGE_SIZE);
    return pa;
}

/* Puts f (at pfn) on this CPU's cache if it may go there; returns true if
 * it did. *over is set when the cache now holds more than its bound. */
static inline bool pcp_cache_page(struct kmm_pcp_cpu *pc, struct kmm_frame *f, uint64_t pfn,
                                  bool *over)
{
    /* Only a page the caller owns outright goes to the cache: allocated, a
     * single page of this CPU's node, one reference and no mapping. The
     * claim takes it from that state to PCP in one compare-exchange, so of
     * two CPUs freeing it at once only one gets it (frame.h); anything else
     * (shared, mapped, larger, remote, not allocated, or lost to another
     * CPU's claim) is judged on the locked path. */
    union frame_meta seen = frame_meta_get(f);
    if (seen.node != pc->node || seen.state != FRAME_ALLOCATED || seen.order != 0 ||
        seen.count != 1)
        return false;
    union frame_meta cached = seen;
    cached.state = FRAME_PCP;
    cached.count = 0;
    if (!frame_meta_replace(f, seen, cached))
        return false;
    struct kmm_pcp *p = &pc->zone[cached.zone];
    __atomic_store_n(&f->next, p->head, __ATOMIC_RELAXED);
    p->head = (uint32_t)pfn;
    pcp_own_add(&p->count, 1);
    pcp_own_inc(&p->frees);
    *over = pcp_count(p) > __atomic_load_n(&p->high, __ATOMIC_RELAXED);
    return true;
}

/* What pmm_pcp_free_fast did with a page. */
enum pmm_pcp_put {
    PMM_PCP_REFUSED = 0, /* not cached, nothing changed: the caller takes the locked path */
    PMM_PCP_CACHED,      /* in this CPU's cache */
    PMM_PCP_CACHED_OVER, /* in the cache, which is now over its bound: trim (pmm_pcp_trim) */
};

/* Caches f (at pfn) on this CPU if it is a page the CPU may take without a
 * lock (pcp_cache_page) and no drain is pending. A leaf: trimming a cache
 * over its bound is the caller's, through pmm_pcp_trim. */
static inline enum pmm_pcp_put pmm_pcp_free_fast(struct kmm *k, struct kmm_frame *f, uint64_t pfn)
{
    enum pmm_pcp_put result = PMM_PCP_REFUSED;
    bool over = false;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct kmm_pcp_cpu *pc = pcp_this_cpu(k);
    if (!atomic_load_explicit(&pc->drain, memory_order_relaxed) &&
        pcp_cache_page(pc, f, pfn, &over))
        result = over ? PMM_PCP_CACHED_OVER : PMM_PCP_CACHED;
    kmm_irq_restore(s);
    kmm_preempt_enable();
    return result;
}

#endif /* KMM_PMM_PCP_H */
