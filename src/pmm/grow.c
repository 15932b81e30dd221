/*
 * grow.c - memory that comes online after init: deferred descriptors
 * (kmm_page_init_deferred, the allocation slow path) and added memory
 * (kmm_page_add_memory). This file holds the deferred sections; the map
 * edits are in map.c, adding memory in grow_add.c, the figures and the
 * integrity check in grow_check.c (grow.h: what they share).
 *
 * Deferred initialisation, as Linux defers struct page initialisation.
 * Writing the 16-byte descriptors of the 67 million pages of a 256 GiB
 * machine touches 1 GiB and takes about a second; a kernel wants to
 * allocate within milliseconds of boot. So kmm_init assigns every section
 * (2^15 frames, 128 MiB) that holds usable RAM its frame array, but writes
 * the descriptors of a budget of sections only (pmm_grow_setup):
 *   - every section below 4 GiB: DMA and DMA32 memory serves devices and
 *     zone-flagged requests that cannot fall back anywhere, and is bounded
 *     (at most 32 sections, 16 MiB of descriptors);
 *   - the first GROW_EAGER_SECTIONS (1 GiB) with usable RAM of each node
 *     above 4 GiB: a node's own CPUs find memory there at once, and the
 *     per-CPU cache bounds reach their maximum (pcp.c) on 1 GiB for up to
 *     4 CPUs;
 *   - any section whose usable pages lie in more than one zone or node
 *     (its pages would be owed to several zones).
 * Init then costs O(4 GiB + 1 GiB per node) of descriptors whatever the
 * machine's size. Every other section stays DEFERRED: its array is not
 * touched; kmm_pmm.sections[] has NULL for it, so pmm_frame_lookup finds no
 * frame (a free there is outside managed memory) and kmm_check's walk
 * skips it; its usable pages count as deferred, not managed.
 *
 * A DEFERRED section becomes READY (section_init_locked): its descriptors
 * are written from the memory map while nobody else can see them; then,
 * holding the lock of its zone on every node (run.c and kmm_check walk a
 * zone's address span on every node), it is published in sections[] and
 * its usable pages go to the buddy allocator as the largest aligned blocks.
 * That happens
 *   - on demand: when the zone-locked path (zonelist.c)
 *     finds a zone of its zone list empty, pmm_grow_zone initialises the
 *     zone's lowest deferred section before the request falls back to the
 *     next zone, as Linux's deferred_grow_zone does, so a Normal request
 *     does not eat DMA32 memory while Normal memory waits; and the slow
 *     path (zonelist.c, for blocks and runs) calls pmm_grow, which
 *     initialises the lowest deferred section of the first zone of the
 *     request's zone list that has one (the CPU's node first);
 *   - in the background: kmm_page_init_deferred, from the host's thread;
 *   - when kmm_page_add_memory adds memory to the section.
 *
 * Adding memory (kmm_page_add_memory) checks everything under the growth
 * lock first and changes nothing if anything is wrong (STYLE: decode, then
 * invoke). Then it rewrites the map (a reclaimed range becomes usable; a
 * hot-added one appears), hands the pages of sections already READY to the
 * buddy at once, gives sections without an array one carved from the start
 * of the range (memmap_on_memory), records them DEFERRED, and initialises
 * them one at a time after dropping the lock.
 *
 * Locking: the growth lock (pmm_grow.lock, pmm/state.h says what it protects)
 * makes every section state change happen once: two CPUs growing at the
 * same time initialise two different sections, never one twice. It is
 * taken with no zone lock held, with IRQs off, for one section at a time
 * (writing 2^15 descriptors: about 0.1 ms), and takes zone locks inside:
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"):
 *     5 growth lock  ->  6 zone locks, in ascending (node, zone) order
 */
#include "internal.h"

#include "pmm/grow.h"
#include "pmm/pmm.h"
#include "pmm/zonelist.h"

/* Sections above 4 GiB initialised at init on each node: 8 x 128 MiB. */
#define GROW_EAGER_SECTIONS 8u

#define GROW_NO_SECTION UINT64_MAX

/* --- sections ------------------------------------------------------------------------- */

/* Looks at the node of the first and last page of each usable range in
 * the section: nodes are ranges of memory, not a page-by-page pattern. */
void grow_section_scan(const struct kmm *k, uint64_t s, struct grow_section_scan *sc)
{
    uint64_t lo = grow_section_lo(s), hi = grow_section_hi(&k->pmm, s);
    *sc = (struct grow_section_scan){0};
    struct map_walk w;
    struct map_frames f;
    map_walk_start(k, &w, lo, hi);
    while (map_walk_next(k, &w, &f)) {
        if (f.type != KMM_MEM_USABLE)
            continue;
        uint64_t first = f.first, end = f.end;
        unsigned node = grow_node_of_pfn(k, first), zone = grow_zone_of_pfn(first);
        if (!sc->pages) {
            sc->node = (uint8_t)node;
            sc->zone = (uint8_t)zone;
        }
        if (node != sc->node || zone != sc->zone || grow_node_of_pfn(k, end - 1) != sc->node ||
            grow_zone_of_pfn(end - 1) != sc->zone)
            sc->mixed = true;
        sc->pages += end - first;
    }
}

/* Records DEFERRED section s's usable pages from the map in its record and
 * the counters, and what the map says in *out. Growth lock held (or init). */
void grow_section_defer(struct kmm *k, uint64_t s, struct grow_section_scan *out)
{
    struct pmm_grow *g = &k->pmm.grow;
    struct pmm_section *ps = &g->sections[s];
    struct grow_section_scan sc;
    grow_section_scan(k, s, &sc);
    *out = sc;
    ps->deferred = (uint32_t)sc.pages;
    ps->node = sc.node;
    ps->zone = sc.zone;
    g->deferred[sc.node][sc.zone] += sc.pages;
    atomic_fetch_add_explicit(&g->deferred_total, sc.pages, memory_order_relaxed);
    if (g->hint[sc.node][sc.zone] > s)
        g->hint[sc.node][sc.zone] = s;
    if (g->first_deferred > s)
        g->first_deferred = s;
}

/* Takes DEFERRED section s's pages out of the counters. */
void grow_section_undefer(struct pmm_grow *g, struct pmm_section *ps)
{
    g->deferred[ps->node][ps->zone] -= ps->deferred;
    atomic_fetch_sub_explicit(&g->deferred_total, ps->deferred, memory_order_relaxed);
    ps->deferred = 0;
}

/* Writes the descriptors of frames [first, end) of map range r: RESERVED
 * for anything but usable RAM, INTERIOR (not yet free) for usable RAM. */
void grow_write_frames(const struct kmm *k, struct kmm_frame *frames, uint64_t lo, uint64_t first,
                       uint64_t end, uint32_t type)
{
    uint8_t state = type == KMM_MEM_USABLE ? FRAME_INTERIOR : FRAME_RESERVED;
    for (uint64_t pfn = first; pfn < end; pfn++)
        frames[pfn - lo] = (struct kmm_frame){.next = KMM_PFN_NONE,
                                              .prev = KMM_PFN_NONE,
                                              .state = state,
                                              .zone = (uint8_t)grow_zone_of_pfn(pfn),
                                              .node = (uint8_t)grow_node_of_pfn(k, pfn)};
}

/* Writes every descriptor of section s into frames from the map: ABSENT
 * where the map has nothing. Nobody else looks at frames meanwhile. */
static void section_write(const struct kmm *k, uint64_t s, struct kmm_frame *frames)
{
    uint64_t lo = grow_section_lo(s), hi = grow_section_hi(&k->pmm, s);
    __builtin_memset(frames, 0, KMM_SECTION_BYTES);
    struct map_walk w;
    struct map_frames f;
    map_walk_start(k, &w, lo, hi);
    while (map_walk_next(k, &w, &f))
        grow_write_frames(k, frames, lo, f.first, f.end, f.type);
}

/* The zone locks a change to section s's frames takes: those of its zones
 * on every node, as a mask of node * KMM_ZONE_COUNT + zone. */
uint64_t grow_section_locks(const struct kmm_pmm *pm, uint64_t s)
{
    unsigned z0 = grow_zone_of_pfn(grow_section_lo(s)),
             z1 = grow_zone_of_pfn(grow_section_lo(s + 1) - 1);
    uint64_t mask = 0;
    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned z = z0; z <= z1; z++)
            mask |= UINT64_C(1) << (n * KMM_ZONE_COUNT + z);
    return mask;
}

static struct kmm_zone *zone_at(struct kmm_pmm *pm, unsigned i)
{
    return &pm->zones[0][0] + i;
}

/* Takes the zone locks of mask in ascending (node, zone) order. */
void grow_lock_zones(struct kmm_pmm *pm, uint64_t mask, kmm_irqstate_t *saved)
{
    for (unsigned i = 0; i < GROW_ZONES; i++)
        if (mask & (UINT64_C(1) << i))
            saved[i] = kmm_lock_irqsave(&zone_at(pm, i)->lock);
}

void grow_unlock_zones(struct kmm_pmm *pm, uint64_t mask, const kmm_irqstate_t *saved)
{
    for (unsigned i = GROW_ZONES; i-- > 0;)
        if (mask & (UINT64_C(1) << i))
            kmm_unlock_irqrestore(&zone_at(pm, i)->lock, saved[i]);
}

/* Hands [first, end) to the buddy allocator as the largest aligned blocks
 * that stay inside one node (zone boundaries are aligned to the largest
 * block). The frames are INTERIOR; their zones' locks held. */
void grow_free_range_locked(struct kmm_pmm *pm, uint64_t first, uint64_t end)
{
    uint64_t pfn = first;
    while (pfn < end) {
        unsigned order = KMM_PAGE_MAX_ORDER;
        while (order > 0 &&
               ((pfn & ((UINT64_C(1) << order) - 1)) != 0 || pfn + (UINT64_C(1) << order) > end))
            order--;
        const struct kmm_frame *head = pmm_frame(pm, pfn);
        while (order > 0 && pmm_frame(pm, pfn + (UINT64_C(1) << order) - 1)->node != head->node)
            order--;
        struct kmm_zone *z = pmm_zone_of(pm, head);
        z->managed_pages += UINT64_C(1) << order;
        z->free_pages += UINT64_C(1) << order;
        pmm_free_block_locked(pm, z, pfn, order);
        pfn += UINT64_C(1) << order;
    }
    pm->managed_pages += end - first;
}

/* The zones of mask grew: their CPU cache bounds follow (pcp.c's formula),
 * and so do the copies of pcp_high in the caches of their nodes' CPUs.
 * Zone locks held. Not at init: pmm_pcp_setup sets them later. */
void grow_refresh_bounds_locked(struct kmm_pmm *pm, uint64_t mask)
{
    if (!pm->cpu_count)
        return;
    for (unsigned i = 0; i < GROW_ZONES; i++) {
        if (!(mask & (UINT64_C(1) << i)))
            continue;
        struct kmm_zone *z = zone_at(pm, i);
        pmm_pcp_bounds(z, pm->cpu_count);
        for (unsigned c = 0; c < pm->cpu_count; c++) {
            struct kmm_pcp *p = &pm->pcp[c].zone[z->id];
            if (pm->pcp[c].node == z->node && p->high != z->pcp_high)
                __atomic_store_n(&p->high, z->pcp_high, __ATOMIC_RELAXED);
        }
    }
}

/*
 * Initialises DEFERRED section s: writes its descriptors, publishes it and
 * hands its usable pages to the zones. Returns how many. Growth lock held
 * (or init), no zone lock.
 */
uint64_t grow_section_init_locked(struct kmm *k, uint64_t s)
{
    struct kmm_pmm *pm = &k->pmm;
    struct pmm_section *ps = &pm->grow.sections[s];
    KMM_ASSERT(k->port, ps->state == PMM_SECTION_DEFERRED && ps->frames);
    section_write(k, s, ps->frames);

    uint64_t mask = grow_section_locks(pm, s), pages = 0;
    uint64_t lo = grow_section_lo(s), hi = grow_section_hi(pm, s);
    kmm_irqstate_t saved[GROW_ZONES];
    grow_lock_zones(pm, mask, saved);
    __atomic_store_n(&pm->sections[s], ps->frames, __ATOMIC_RELEASE);
    struct map_walk w;
    struct map_frames f;
    map_walk_start(k, &w, lo, hi);
    while (map_walk_next(k, &w, &f)) {
        if (f.type == KMM_MEM_USABLE) {
            grow_free_range_locked(pm, f.first, f.end);
            pages += f.end - f.first;
        }
    }
    grow_refresh_bounds_locked(pm, mask);
    grow_unlock_zones(pm, mask, saved);

    KMM_ASSERT(k->port, pages == ps->deferred);
    grow_section_undefer(&pm->grow, ps);
    ps->state = PMM_SECTION_READY;
    return pages;
}

/* The lowest DEFERRED section with pages for zone (node, zone), which has
 * some. Growth lock held. */
static uint64_t find_deferred(struct kmm *k, unsigned node, unsigned zone)
{
    struct pmm_grow *g = &k->pmm.grow;
    for (uint64_t s = g->hint[node][zone]; s < k->pmm.nsections; s++) {
        const struct pmm_section *ps = &g->sections[s];
        if (ps->state == PMM_SECTION_DEFERRED && ps->deferred && ps->node == node &&
            ps->zone == zone) {
            g->hint[node][zone] = s + 1;
            return s;
        }
    }
    kmm_panicf(k->port, "find_deferred: zone %s node %u counts %llu deferred pages in no section",
               kmm_zone_name(zone), node, (unsigned long long)g->deferred[node][zone]);
}

/* The lowest DEFERRED section, or GROW_NO_SECTION. Growth lock held. */
static uint64_t first_deferred(struct kmm_pmm *pm)
{
    struct pmm_grow *g = &pm->grow;
    for (; g->first_deferred < pm->nsections; g->first_deferred++)
        if (g->sections[g->first_deferred].state == PMM_SECTION_DEFERRED)
            return g->first_deferred;
    return GROW_NO_SECTION;
}

void pmm_grow_setup(struct kmm *k)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_lock_init(&pm->grow.lock);
    atomic_init(&pm->grow.deferred_total, 0);
    atomic_init(&pm->grow.add_rejected, 0);
    pm->grow.first_deferred = pm->nsections;
    unsigned eager[KMM_MAX_NODES] = {0};
    for (uint64_t s = 0; s < pm->nsections; s++) {
        if (pm->grow.sections[s].state != PMM_SECTION_DEFERRED)
            continue;
        struct grow_section_scan sc;
        grow_section_defer(k, s, &sc);
        bool now = grow_section_lo(s) < (KMM_ZONE_DMA32_END >> KMM_PAGE_SHIFT) || sc.mixed ||
                   (sc.pages && eager[sc.node]++ < GROW_EAGER_SECTIONS);
        if (now)
            grow_section_init_locked(k, s);
    }
}

/* --- growth on demand and in the background --------------------------------------- */

bool pmm_grow(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    (void)order; /* a section's memory comes in blocks of the largest order */
    struct kmm_pmm *pm = &k->pmm;
    if (atomic_load_explicit(&pm->grow.deferred_total, memory_order_relaxed) == 0)
        return false;
    unsigned node = pmm_request_node(pm), top = pmm_top_zone(flags);
    uint64_t pages = 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
    unsigned pos = 0;
    const struct kmm_zone *z;
    while (!pages && (z = pmm_zonelist_zone(pm, node, top, &pos)))
        if (pm->grow.deferred[z->node][z->id])
            pages = grow_section_init_locked(k, find_deferred(k, z->node, z->id));
    kmm_unlock_irqrestore(&pm->grow.lock, s);
    return pages > 0;
}

bool pmm_grow_zone_slow(struct kmm *k, struct kmm_zone *z)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t pages = 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
    if (pm->grow.deferred[z->node][z->id])
        pages = grow_section_init_locked(k, find_deferred(k, z->node, z->id));
    kmm_unlock_irqrestore(&pm->grow.lock, s);
    return pages > 0;
}

uint64_t kmm_page_init_deferred(struct kmm *k, uint64_t max_pages)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t done = 0;
    for (;;) {
        kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
        uint64_t sec = first_deferred(pm);
        bool stop = sec == GROW_NO_SECTION ||
                    (max_pages && done && done + pm->grow.sections[sec].deferred > max_pages);
        if (!stop)
            done += grow_section_init_locked(k, sec);
        kmm_unlock_irqrestore(&pm->grow.lock, s);
        if (stop || (max_pages && done >= max_pages))
            return done;
    }
}
