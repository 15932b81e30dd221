/*
 * check.c - the page allocator's part of kmm_check: every free list walked
 * link by link, every frame descriptor recounted against the zone counters.
 *
 * Lock order (docs/architecture.md, "Lock order"): 5 growth lock -> 6 every
 * zone lock, in ascending (node, zone) order, all held for the walk.
 */
#include "internal.h"

#include <kmm/check.h>

#include "pmm/pmm.h"

/* Figures recounted from the frames, per node and zone. */
struct recount {
    uint64_t free_heads[KMM_MAX_NODES][KMM_ZONE_COUNT];
    uint64_t free_pages[KMM_MAX_NODES][KMM_ZONE_COUNT];
    uint64_t cached[KMM_MAX_NODES][KMM_ZONE_COUNT]; /* frames in state PCP */
};

/* Follows one free list; every entry must be a FREE head of this order,
 * zone and node, aligned, and linked back to its predecessor. */
static void check_list(struct kmm_pmm *pm, struct kmm_zone *z, unsigned order,
                       struct kmm_check_result *r)
{
    uint64_t count = 0;
    uint32_t prev = KMM_PFN_NONE;
    for (uint32_t pfn = z->free_head[order]; pfn != KMM_PFN_NONE; pfn = pmm_frame(pm, pfn)->next) {
        const struct kmm_frame *f = pmm_frame_lookup(pm, pfn);
        if (!f || count > z->free_blocks[order]) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "zone %s node %u order %u: list %s at frame 0x%x",
                              kmm_zone_name(z->id), z->node, order,
                              f ? "longer than its count (a cycle?)" : "leaves the database", pfn);
            return;
        }
        r->blocks_walked++;
        if (f->state != FRAME_FREE || f->order != order || f->zone != z->id || f->node != z->node ||
            (pfn & ((UINT32_C(1) << order) - 1)) || f->prev != prev)
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "zone %s node %u order %u: bad entry frame 0x%x (state %u order %u "
                              "zone %u node %u prev 0x%x, expected prev 0x%x)",
                              kmm_zone_name(z->id), z->node, order, pfn, f->state, f->order,
                              f->zone, f->node, f->prev, prev);
        prev = pfn;
        count++;
    }
    if (count != z->free_blocks[order] ||
        ((z->nonempty >> order) & 1u) != (z->free_head[order] != KMM_PFN_NONE))
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "zone %s node %u order %u: list holds %llu blocks, counter says %llu",
                          kmm_zone_name(z->id), z->node, order, (unsigned long long)count,
                          (unsigned long long)z->free_blocks[order]);
}

/* Follows one CPU's cache of one zone: every entry a PCP frame of that zone
 * and of the CPU's node, as many as the cache counts. */
static void check_cache(const struct kmm_pmm *pm, unsigned cpu, unsigned zone,
                        struct kmm_check_result *r)
{
    const struct kmm_pcp_cpu *pc = &pm->pcp[cpu];
    const struct kmm_pcp *p = &pc->zone[zone];
    uint64_t want = atomic_load_explicit(&p->count, memory_order_relaxed), n = 0;
    for (uint32_t pfn = p->head; pfn != KMM_PFN_NONE; pfn = pmm_frame(pm, pfn)->next) {
        const struct kmm_frame *f = pmm_frame_lookup(pm, pfn);
        if (!f || n >= want || f->state != FRAME_PCP || f->zone != zone || f->node != pc->node) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "cpu %u zone %s cache: %s at frame 0x%x", cpu,
                              kmm_zone_name(zone),
                              !f          ? "leaves the database"
                              : n >= want ? "longer than its count"
                                          : "bad entry",
                              pfn);
            return;
        }
        r->blocks_walked++;
        n++;
    }
    if (n != want)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "cpu %u zone %s cache: %llu pages, count %llu", cpu,
                          kmm_zone_name(zone), (unsigned long long)n, (unsigned long long)want);
}

/* Checks the block whose head is f at pfn: aligned, inside its section and
 * the database, and every other frame INTERIOR in the same zone and node.
 * Returns the number of frames to skip. */
static uint64_t check_block(const struct kmm_pmm *pm, uint64_t pfn, const struct kmm_frame *f,
                            struct kmm_check_result *r)
{
    uint64_t size = UINT64_C(1) << (f->order <= KMM_PAGE_MAX_ORDER ? f->order : 0);
    if (f->order > KMM_PAGE_MAX_ORDER || (pfn & (size - 1)) ||
        (pfn & KMM_SECTION_MASK) + size > KMM_SECTION_FRAMES || pfn + size > pm->pfn_end) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "frame 0x%llx: block of order %u misplaced",
                          (unsigned long long)pfn, f->order);
        return 1;
    }
    if ((f->state == FRAME_ALLOCATED || f->state == FRAME_SLAB) && f->count == 0)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "frame 0x%llx: allocated with no %s",
                          (unsigned long long)pfn, f->state == FRAME_SLAB ? "owner" : "reference");
    /* Owned mappings hold only single pages, never a run's tagged head
     * (whose prev is the tag, not a mapcount), and at least one of them. */
    if (f->state == FRAME_ALLOCATED && (f->count & FRAME_MAPPED) &&
        (f->order != 0 || f->next == pfn || f->prev == 0))
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "frame 0x%llx: mapped owned with order %u, next 0x%x, mapcount %u",
                          (unsigned long long)pfn, f->order, f->next, f->prev);
    for (uint64_t i = 1; i < size; i++) {
        const struct kmm_frame *in = pmm_frame(pm, pfn + i);
        if (in->state != FRAME_INTERIOR || in->zone != f->zone || in->node != f->node) {
            uint64_t at = pfn + i;
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "frame 0x%llx: inside the block at 0x%llx but state %u",
                              (unsigned long long)at, (unsigned long long)pfn, in->state);
            return i;
        }
        /* The heap's lookups hop from an interior frame to its head by
         * the order it carries (slab.c). */
        if (f->state == FRAME_SLAB && in->order != f->order) {
            uint64_t at = pfn + i;
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "frame 0x%llx: inside the heap block at 0x%llx (order %u) but "
                              "carries order %u",
                              (unsigned long long)at, (unsigned long long)pfn, f->order, in->order);
            return i;
        }
    }
    r->frames_walked += size - 1;
    return size;
}

/* Walks every frame of every present section. */
static void recount_frames(const struct kmm_pmm *pm, struct recount *c, struct kmm_check_result *r)
{
    for (uint64_t s = 0; s < pm->nsections; s++) {
        if (!pm->sections[s])
            continue;
        uint64_t base = s << KMM_SECTION_SHIFT;
        for (uint64_t i = 0; i < KMM_SECTION_FRAMES;) {
            uint64_t pfn = base + i;
            const struct kmm_frame *f = pmm_frame(pm, pfn);
            r->frames_walked++;
            if (f->state == FRAME_ABSENT || f->state == FRAME_RESERVED) {
                i++;
                continue;
            }
            if (f->state == FRAME_PAGETABLE) { /* a single page the vmm owns */
                i++;
                continue;
            }
            if (f->state == FRAME_PCP) {
                if (f->order != 0 || f->node >= KMM_MAX_NODES || f->zone >= KMM_ZONE_COUNT)
                    kmm_check_problem(r, KMM_CHECK_CORRUPT, "frame 0x%llx: cached with order %u",
                                      (unsigned long long)pfn, f->order);
                else
                    c->cached[f->node][f->zone]++;
                i++;
                continue;
            }
            if (f->state == FRAME_FREE || f->state == FRAME_ALLOCATED || f->state == FRAME_SLAB) {
                if (f->node >= KMM_MAX_NODES || f->zone >= KMM_ZONE_COUNT) {
                    kmm_check_problem(r, KMM_CHECK_CORRUPT, "frame 0x%llx: zone %u node %u",
                                      (unsigned long long)pfn, f->zone, f->node);
                    i++;
                    continue;
                }
                uint64_t step = check_block(pm, pfn, f, r);
                if (f->state == FRAME_FREE && step == (UINT64_C(1) << f->order)) {
                    c->free_heads[f->node][f->zone]++;
                    c->free_pages[f->node][f->zone] += step;
                }
                i += step;
                continue;
            }
            kmm_check_problem(
                r, KMM_CHECK_CORRUPT, "frame 0x%llx: %s (state %u)", (unsigned long long)pfn,
                f->state == FRAME_INTERIOR ? "interior frame outside any block" : "unknown state",
                f->state);
            i++;
        }
    }
}

/* Compares the recount with each zone's counters. */
static void compare_zones(const struct kmm_pmm *pm, const struct recount *c,
                          struct kmm_check_result *r)
{
    uint64_t managed = 0;
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++) {
            const struct kmm_zone *z = &pm->zones[n][zi];
            uint64_t listed = 0, listed_pages = 0;
            for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++) {
                listed += z->free_blocks[o];
                listed_pages += z->free_blocks[o] << o;
            }
            if (c->free_heads[n][zi] != listed || c->free_pages[n][zi] != z->free_pages ||
                listed_pages != z->free_pages || z->free_pages > z->managed_pages)
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "zone %s node %u: frames hold %llu free blocks / %llu pages, "
                                  "lists %llu / %llu, counter %llu of %llu managed",
                                  kmm_zone_name(zi), n, (unsigned long long)c->free_heads[n][zi],
                                  (unsigned long long)c->free_pages[n][zi],
                                  (unsigned long long)listed, (unsigned long long)listed_pages,
                                  (unsigned long long)z->free_pages,
                                  (unsigned long long)z->managed_pages);
            uint64_t cached = pmm_pcp_pages(pm, n, zi);
            if (c->cached[n][zi] != cached)
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "zone %s node %u: %llu frames cached, the CPU caches count %llu",
                                  kmm_zone_name(zi), n, (unsigned long long)c->cached[n][zi],
                                  (unsigned long long)cached);
            managed += z->managed_pages;
        }
    }
    if (managed != pm->managed_pages)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "zones manage %llu pages, the total says %llu",
                          (unsigned long long)managed, (unsigned long long)pm->managed_pages);
}

void pmm_check(struct kmm *k, struct kmm_check_result *r)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_irqstate_t saved[KMM_MAX_NODES][KMM_ZONE_COUNT];
    /* The growth lock first (no section changes state), then all zone
     * locks, in ascending (node, zone) order: the documented order. */
    kmm_irqstate_t grow = kmm_lock_irqsave(&pm->grow.lock);
    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++)
            saved[n][zi] = kmm_lock_irqsave(&pm->zones[n][zi].lock);

    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++)
            for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
                check_list(pm, &pm->zones[n][zi], o, r);
    /* The CPU caches are read without their owners' cooperation: the walk
     * is exact only while no other CPU allocates or frees single pages. */
    for (unsigned cpu = 0; cpu < pm->cpu_count; cpu++)
        for (unsigned zi = 0; zi < KMM_ZONE_COUNT; zi++)
            check_cache(pm, cpu, zi, r);
    struct recount c;
    __builtin_memset(&c, 0, sizeof(c));
    recount_frames(pm, &c, r);
    compare_zones(pm, &c, r);
    pmm_grow_check(k, r); /* deferred sections, which the recount skips */
    pmm_poison_check(k, r);

    for (unsigned n = pm->node_count; n-- > 0;)
        for (unsigned zi = KMM_ZONE_COUNT; zi-- > 0;)
            kmm_unlock_irqrestore(&pm->zones[n][zi].lock, saved[n][zi]);
    kmm_unlock_irqrestore(&pm->grow.lock, grow);
}
