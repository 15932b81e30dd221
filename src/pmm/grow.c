/*
 * grow.c - memory that comes online after init: deferred descriptors
 * (kmm_page_init_deferred, the allocation slow path) and added memory
 * (kmm_page_add_memory).
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

#include <kmm/check.h>

#include "pmm/pmm.h"
#include "pmm/zonelist.h"

/* Sections above 4 GiB initialised at init on each node: 8 x 128 MiB. */
#define GROW_EAGER_SECTIONS 8u

#define GROW_NO_SECTION UINT64_MAX

/* Enough zone-lock states for every (node, zone). */
#define GROW_ZONES (KMM_MAX_NODES * KMM_ZONE_COUNT)
_Static_assert(GROW_ZONES <= 64, "a 64-bit mask names the zone locks");

static inline uint64_t section_lo(uint64_t s)
{
    return s << KMM_SECTION_SHIFT;
}

/* The frames a section can describe: its span, clamped to the table's reach. */
static inline uint64_t section_hi(const struct kmm_pmm *pm, uint64_t s)
{
    uint64_t hi = (s + 1) << KMM_SECTION_SHIFT;
    return hi < pm->pfn_end ? hi : pm->pfn_end;
}

/* The node of frame pfn, clamped to the instance's nodes as at init. */
static unsigned node_of_pfn(const struct kmm *k, uint64_t pfn)
{
    if (k->pmm.node_count == 1)
        return 0;
    unsigned node = kmm_port_node_of_phys(k->port, pfn << KMM_PAGE_SHIFT);
    return node < k->pmm.node_count ? node : 0;
}

static inline unsigned zone_of_pfn(uint64_t pfn)
{
    return pmm_zone_of_addr(pfn << KMM_PAGE_SHIFT);
}

/* --- the map ------------------------------------------------------------------------ */

/* The first range of k->map that ends above byte pa (map_count if none). */
static size_t map_find(const struct kmm *k, uint64_t pa)
{
    size_t lo = 0, hi = k->map_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k->map[mid].base + k->map[mid].length <= pa)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The frames of map range r inside [lo, hi): rounded out to whole pages (a
 * usable range is whole pages already). Returns false if there are none. */
static bool range_frames(const struct kmm_region *r, uint64_t lo, uint64_t hi, uint64_t *first,
                         uint64_t *end)
{
    *first = r->base >> KMM_PAGE_SHIFT;
    *end = kmm_align_up(r->base + r->length, KMM_PAGE_SIZE) >> KMM_PAGE_SHIFT;
    if (*first < lo)
        *first = lo;
    if (*end > hi)
        *end = hi;
    return *first < *end;
}

/* Iterates the ranges of the map that touch frames [lo, hi). */
#define FOR_MAP_RANGES(k, i, lo, hi)                                                               \
    for (size_t i = map_find((k), (lo) << KMM_PAGE_SHIFT);                                         \
         i < (k)->map_count && (k)->map[i].base < (hi) << KMM_PAGE_SHIFT; i++)

static void map_insert(struct kmm *k, size_t at, struct kmm_region r)
{
    __builtin_memmove(&k->map[at + 1], &k->map[at], (k->map_count - at) * sizeof(r));
    k->map[at] = r;
    k->map_count++;
}

static void map_remove(struct kmm *k, size_t at)
{
    __builtin_memmove(&k->map[at], &k->map[at + 1], (k->map_count - at - 1) * sizeof(k->map[0]));
    k->map_count--;
}

/* Adjacent ranges of one type merge, except metadata: each metadata range
 * is one block (the instance's, or the descriptors of one added range). */
static bool map_mergeable(const struct kmm_region *a, const struct kmm_region *b)
{
    return a->type == b->type && a->type != KMM_MEM_KMM_META && a->base + a->length == b->base;
}

/*
 * Gives the page-aligned bytes [lo, hi) type `type` in k->map: they lie
 * inside one range (a reclaim), which is cut around them, or in a hole (a
 * hot-add). Adds at most two ranges; keeps the map sorted, disjoint and
 * merged. Growth lock held; the caller checked there is room.
 */
static void map_set(struct kmm *k, uint64_t lo, uint64_t hi, uint32_t type)
{
    size_t i = map_find(k, lo);
    if (i < k->map_count && k->map[i].base < hi) {
        struct kmm_region r = k->map[i];
        uint64_t r_end = r.base + r.length;
        if (r.base < lo) {
            map_insert(k, i, (struct kmm_region){r.base, lo - r.base, r.type});
            i++;
        }
        if (r_end > hi)
            map_insert(k, i + 1, (struct kmm_region){hi, r_end - hi, r.type});
        k->map[i] = (struct kmm_region){lo, hi - lo, type};
    } else {
        map_insert(k, i, (struct kmm_region){lo, hi - lo, type});
    }
    if (i + 1 < k->map_count && map_mergeable(&k->map[i], &k->map[i + 1])) {
        k->map[i].length += k->map[i + 1].length;
        map_remove(k, i + 1);
    }
    if (i > 0 && map_mergeable(&k->map[i - 1], &k->map[i])) {
        k->map[i - 1].length += k->map[i].length;
        map_remove(k, i);
    }
}

/* --- sections ------------------------------------------------------------------------- */

/* What the map says about the usable pages of a section. */
struct section_scan {
    uint64_t pages;     /* usable pages */
    uint8_t node, zone; /* of the first one */
    bool mixed;         /* they lie in more than one zone or node */
};

/* Looks at the node of the first and last page of each usable range in
 * the section: nodes are ranges of memory, not a page-by-page pattern. */
static void section_scan(const struct kmm *k, uint64_t s, struct section_scan *sc)
{
    uint64_t lo = section_lo(s), hi = section_hi(&k->pmm, s);
    *sc = (struct section_scan){0};
    FOR_MAP_RANGES(k, i, lo, hi)
    {
        uint64_t first, end;
        if (k->map[i].type != KMM_MEM_USABLE || !range_frames(&k->map[i], lo, hi, &first, &end))
            continue;
        unsigned node = node_of_pfn(k, first), zone = zone_of_pfn(first);
        if (!sc->pages) {
            sc->node = (uint8_t)node;
            sc->zone = (uint8_t)zone;
        }
        if (node != sc->node || zone != sc->zone || node_of_pfn(k, end - 1) != sc->node ||
            zone_of_pfn(end - 1) != sc->zone)
            sc->mixed = true;
        sc->pages += end - first;
    }
}

/* Records DEFERRED section s's usable pages from the map in its record and
 * the counters, and what the map says in *out. Growth lock held (or init). */
static void section_defer(struct kmm *k, uint64_t s, struct section_scan *out)
{
    struct pmm_grow *g = &k->pmm.grow;
    struct pmm_section *ps = &g->sections[s];
    struct section_scan sc;
    section_scan(k, s, &sc);
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
static void section_undefer(struct pmm_grow *g, struct pmm_section *ps)
{
    g->deferred[ps->node][ps->zone] -= ps->deferred;
    atomic_fetch_sub_explicit(&g->deferred_total, ps->deferred, memory_order_relaxed);
    ps->deferred = 0;
}

/* Writes the descriptors of frames [first, end) of map range r: RESERVED
 * for anything but usable RAM, INTERIOR (not yet free) for usable RAM. */
static void write_frames(const struct kmm *k, struct kmm_frame *frames, uint64_t lo, uint64_t first,
                         uint64_t end, uint32_t type)
{
    uint8_t state = type == KMM_MEM_USABLE ? FRAME_INTERIOR : FRAME_RESERVED;
    for (uint64_t pfn = first; pfn < end; pfn++)
        frames[pfn - lo] = (struct kmm_frame){.next = KMM_PFN_NONE,
                                              .prev = KMM_PFN_NONE,
                                              .state = state,
                                              .zone = (uint8_t)zone_of_pfn(pfn),
                                              .node = (uint8_t)node_of_pfn(k, pfn)};
}

/* Writes every descriptor of section s into frames from the map: ABSENT
 * where the map has nothing. Nobody else looks at frames meanwhile. */
static void section_write(const struct kmm *k, uint64_t s, struct kmm_frame *frames)
{
    uint64_t lo = section_lo(s), hi = section_hi(&k->pmm, s);
    __builtin_memset(frames, 0, KMM_SECTION_BYTES);
    FOR_MAP_RANGES(k, i, lo, hi)
    {
        uint64_t first, end;
        if (range_frames(&k->map[i], lo, hi, &first, &end))
            write_frames(k, frames, lo, first, end, k->map[i].type);
    }
}

/* The zone locks a change to section s's frames takes: those of its zones
 * on every node, as a mask of node * KMM_ZONE_COUNT + zone. */
static uint64_t section_locks(const struct kmm_pmm *pm, uint64_t s)
{
    unsigned z0 = zone_of_pfn(section_lo(s)), z1 = zone_of_pfn(section_lo(s + 1) - 1);
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
static void lock_zones(struct kmm_pmm *pm, uint64_t mask, kmm_irqstate_t *saved)
{
    for (unsigned i = 0; i < GROW_ZONES; i++)
        if (mask & (UINT64_C(1) << i))
            saved[i] = kmm_lock_irqsave(&zone_at(pm, i)->lock);
}

static void unlock_zones(struct kmm_pmm *pm, uint64_t mask, const kmm_irqstate_t *saved)
{
    for (unsigned i = GROW_ZONES; i-- > 0;)
        if (mask & (UINT64_C(1) << i))
            kmm_unlock_irqrestore(&zone_at(pm, i)->lock, saved[i]);
}

/* Hands [first, end) to the buddy allocator as the largest aligned blocks
 * that stay inside one node (zone boundaries are aligned to the largest
 * block). The frames are INTERIOR; their zones' locks held. */
static void free_range_locked(struct kmm_pmm *pm, uint64_t first, uint64_t end)
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
static void refresh_bounds_locked(struct kmm_pmm *pm, uint64_t mask)
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
static uint64_t section_init_locked(struct kmm *k, uint64_t s)
{
    struct kmm_pmm *pm = &k->pmm;
    struct pmm_section *ps = &pm->grow.sections[s];
    KMM_ASSERT(k->port, ps->state == PMM_SECTION_DEFERRED && ps->frames);
    section_write(k, s, ps->frames);

    uint64_t mask = section_locks(pm, s), pages = 0;
    uint64_t lo = section_lo(s), hi = section_hi(pm, s);
    kmm_irqstate_t saved[GROW_ZONES];
    lock_zones(pm, mask, saved);
    __atomic_store_n(&pm->sections[s], ps->frames, __ATOMIC_RELEASE);
    FOR_MAP_RANGES(k, i, lo, hi)
    {
        uint64_t first, end;
        if (k->map[i].type == KMM_MEM_USABLE && range_frames(&k->map[i], lo, hi, &first, &end)) {
            free_range_locked(pm, first, end);
            pages += end - first;
        }
    }
    refresh_bounds_locked(pm, mask);
    unlock_zones(pm, mask, saved);

    KMM_ASSERT(k->port, pages == ps->deferred);
    section_undefer(&pm->grow, ps);
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
        struct section_scan sc;
        section_defer(k, s, &sc);
        bool now = section_lo(s) < (KMM_ZONE_DMA32_END >> KMM_PAGE_SHIFT) || sc.mixed ||
                   (sc.pages && eager[sc.node]++ < GROW_EAGER_SECTIONS);
        if (now)
            section_init_locked(k, s);
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
            pages = section_init_locked(k, find_deferred(k, z->node, z->id));
    kmm_unlock_irqrestore(&pm->grow.lock, s);
    return pages > 0;
}

bool pmm_grow_zone_slow(struct kmm *k, struct kmm_zone *z)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t pages = 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
    if (pm->grow.deferred[z->node][z->id])
        pages = section_init_locked(k, find_deferred(k, z->node, z->id));
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
            done += section_init_locked(k, sec);
        kmm_unlock_irqrestore(&pm->grow.lock, s);
        if (stop || (max_pages && done >= max_pages))
            return done;
    }
}

/* --- adding memory ------------------------------------------------------------------ */

/* What an add will do, decided before anything changes. */
struct add_plan {
    int err;             /* the error value, when rejected */
    enum kmm_misuse cls; /* and the misuse class (unless ENOMEM: no misuse) */
    uint64_t first, end; /* the frames of the range, rounded inward */
    uint64_t meta_pages; /* descriptor pages taken from its start */
    uint64_t arrays;     /* sections of the range that get a frame array */
};

/* The most ranges one add puts into the map: a reclaim in the middle of a
 * range splits it around a metadata range and a usable one. */
#define ADD_MAP_RANGES 3

static bool add_type_valid(uint32_t type)
{
    return type == KMM_MEM_USABLE || type == KMM_MEM_BOOTLOADER_RECLAIMABLE ||
           type == KMM_MEM_ACPI_RECLAIMABLE;
}

/* Checks an add against the map and the sections and fills *p. Returns
 * NULL if it can go ahead, else why not (p->err says the error). Changes
 * nothing. Growth lock held. */
static const char *add_check_locked(struct kmm *k, uint64_t base, uint64_t length, uint32_t type,
                                    struct add_plan *p)
{
    const struct kmm_pmm *pm = &k->pmm;
    *p = (struct add_plan){.err = KMM_EINVAL, .cls = KMM_MISUSE_BAD_ARG};
    if (!add_type_valid(type))
        return "only usable, bootloader- or ACPI-reclaimable memory can be added";
    if (length == 0)
        return "empty range";
    if (base > KMM_PHYS_LIMIT || length > KMM_PHYS_LIMIT - base) {
        p->err = KMM_ERANGE;
        p->cls = KMM_MISUSE_OUTSIDE;
        return "range beyond the physical address limit";
    }
    uint64_t lo = kmm_align_up(base, KMM_PAGE_SIZE),
             hi = kmm_align_down(base + length, KMM_PAGE_SIZE);
    if (lo < KMM_PAGE_SIZE)
        lo = KMM_PAGE_SIZE; /* page 0 is never usable */
    if (lo >= hi)
        return "no whole page in the range";
    p->first = lo >> KMM_PAGE_SHIFT;
    p->end = hi >> KMM_PAGE_SHIFT;
    size_t i = map_find(k, lo);
    const struct kmm_region *r = i < k->map_count ? &k->map[i] : NULL;
    if (type == KMM_MEM_USABLE && r && r->base < hi) {
        p->err = KMM_EBUSY;
        p->cls = KMM_MISUSE_BUSY;
        return "hot-add overlaps memory the map describes";
    }
    if (type != KMM_MEM_USABLE &&
        (!r || r->type != type || r->base > lo || r->base + r->length < hi))
        return "the map does not have the whole range with this type";
    if (p->end > pm->pfn_end) {
        p->err = KMM_ERANGE;
        p->cls = KMM_MISUSE_OUTSIDE;
        return "beyond the frame database's reach (kmm_config.hotplug_limit)";
    }
    for (uint64_t s = p->first >> KMM_SECTION_SHIFT; s <= (p->end - 1) >> KMM_SECTION_SHIFT; s++)
        p->arrays += pm->grow.sections[s].state == PMM_SECTION_EMPTY;
    p->meta_pages = p->arrays * (KMM_SECTION_BYTES >> KMM_PAGE_SHIFT);
    p->err = KMM_ENOMEM;
    if (p->meta_pages >= p->end - p->first)
        return "range too small to hold its own descriptors (512 KiB per new section)";
    if (k->map_count + ADD_MAP_RANGES > KMM_MAP_CAP)
        return "the memory map has no room for more ranges";
    return NULL;
}

/* Which zones have or will have pages, as a mask. Growth lock held. */
static uint64_t present_zones(const struct kmm_pmm *pm)
{
    uint64_t mask = 0;
    for (unsigned n = 0; n < pm->node_count; n++)
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
            if (pmm_zone_present(pm, n, z))
                mask |= UINT64_C(1) << (n * KMM_ZONE_COUNT + z);
    return mask;
}

/* Frames [first, end) of READY section s become usable, except those below
 * meta_end, which become kmm metadata: they were ABSENT (hot-add) or
 * RESERVED (reclaim). Growth lock held. */
static void section_add_locked(struct kmm *k, uint64_t s, uint64_t first, uint64_t end,
                               uint64_t meta_end)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t mask = section_locks(pm, s);
    kmm_irqstate_t saved[GROW_ZONES];
    lock_zones(pm, mask, saved);
    for (uint64_t pfn = first; pfn < end; pfn++) {
        struct kmm_frame *f = pmm_frame(pm, pfn);
        uint8_t state = frame_state_get(f);
        KMM_ASSERT(k->port, state == FRAME_ABSENT || state == FRAME_RESERVED);
        if (state == FRAME_ABSENT)
            write_frames(k, pm->sections[s], section_lo(s), pfn, pfn + 1, KMM_MEM_KMM_META);
        frame_state_set(f, pfn < meta_end ? FRAME_RESERVED : FRAME_INTERIOR);
    }
    if (meta_end < end) {
        free_range_locked(pm, meta_end > first ? meta_end : first, end);
        refresh_bounds_locked(pm, mask);
    }
    unlock_zones(pm, mask, saved);
}

/* Carries out a checked add: map, figures, sections. Cannot fail. Growth
 * lock held. */
static void add_commit_locked(struct kmm *k, const struct add_plan *p)
{
    struct kmm_pmm *pm = &k->pmm;
    uint64_t present = present_zones(pm);
    uint64_t lo = p->first << KMM_PAGE_SHIFT, hi = p->end << KMM_PAGE_SHIFT;
    uint64_t meta_end = p->first + p->meta_pages;
    if (p->meta_pages)
        map_set(k, lo, meta_end << KMM_PAGE_SHIFT, KMM_MEM_KMM_META);
    map_set(k, meta_end << KMM_PAGE_SHIFT, hi, KMM_MEM_USABLE);
    kmm_memmap_totals(k->map, k->map_count, &k->totals);
    pmm_count_map(k);
    pm->metadata_pages += p->meta_pages;
    pm->frame_db_bytes += p->arrays * KMM_SECTION_BYTES;

    struct kmm_frame *arrays = kmm_phys_to_virt(k, lo);
    for (uint64_t s = p->first >> KMM_SECTION_SHIFT; s <= (p->end - 1) >> KMM_SECTION_SHIFT; s++) {
        struct pmm_section *ps = &pm->grow.sections[s];
        if (ps->state == PMM_SECTION_READY) {
            uint64_t a = section_lo(s) > p->first ? section_lo(s) : p->first;
            uint64_t b = section_hi(pm, s) < p->end ? section_hi(pm, s) : p->end;
            section_add_locked(k, s, a, b, meta_end);
            continue;
        }
        if (ps->state == PMM_SECTION_EMPTY) {
            ps->frames = arrays;
            ps->state = PMM_SECTION_DEFERRED;
            arrays += KMM_SECTION_FRAMES;
        } else {
            section_undefer(&pm->grow, ps);
        }
        struct section_scan sc;
        section_defer(k, s, &sc); /* initialised after the lock is dropped */
    }
    if (present_zones(pm) != present)
        pmm_mark_populated(pm);
}

/*
 * A rejected add: counted in add_rejected, logged once with the caller. A
 * malformed or conflicting range is the caller's mistake and goes through
 * the misuse table too; a map with no room left (ENOMEM) is not.
 */
static int add_reject(struct kmm *k, const struct add_plan *p, const char *why, uint64_t base,
                      uint64_t length, uint32_t type, const void *caller)
{
    atomic_fetch_add_explicit(&k->pmm.grow.add_rejected, 1, memory_order_relaxed);
    if (p->err != KMM_ENOMEM)
        return kmm_misuse(k, KMM_LAYER_GROW, p->cls, p->err, caller,
                          "kmm_page_add_memory(0x%llx, 0x%llx, %s): %s", (unsigned long long)base,
                          (unsigned long long)length, kmm_mem_type_name(type), why);
    kmm_logf(k->port, KMM_LOG_ERR, "kmm_page_add_memory(0x%llx, 0x%llx, %s): %s, caller %p",
             (unsigned long long)base, (unsigned long long)length, kmm_mem_type_name(type), why,
             caller);
    return p->err;
}

int kmm_page_add_memory(struct kmm *k, uint64_t base, uint64_t length, uint32_t type)
{
    const void *caller = __builtin_return_address(0);
    struct kmm_pmm *pm = &k->pmm;
    struct add_plan p;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
    const char *why = add_check_locked(k, base, length, type, &p);
    if (!why)
        add_commit_locked(k, &p);
    kmm_unlock_irqrestore(&pm->grow.lock, s);
    if (why)
        return add_reject(k, &p, why, base, length, type, caller);

    /* The sections that got the range, one at a time (pmm_grow may take
     * some of them first). */
    for (uint64_t sec = p.first >> KMM_SECTION_SHIFT; sec <= (p.end - 1) >> KMM_SECTION_SHIFT;
         sec++) {
        s = kmm_lock_irqsave(&pm->grow.lock);
        if (pm->grow.sections[sec].state == PMM_SECTION_DEFERRED)
            section_init_locked(k, sec);
        kmm_unlock_irqrestore(&pm->grow.lock, s);
    }
    uint64_t lo = p.first << KMM_PAGE_SHIFT, hi = p.end << KMM_PAGE_SHIFT;
    kmm_logf(k->port, KMM_LOG_INFO,
             "kmm_page_add_memory: [0x%llx, 0x%llx) %s is usable: %llu pages, %llu KiB of "
             "descriptors from it",
             (unsigned long long)lo, (unsigned long long)hi, kmm_mem_type_name(type),
             (unsigned long long)(p.end - p.first - p.meta_pages),
             (unsigned long long)p.meta_pages * (KMM_PAGE_SIZE >> 10));
    return KMM_OK;
}

/* --- statistics and the integrity check ----------------------------------------------- */

void pmm_grow_stats(struct kmm *k, struct kmm_page_stats *out)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_irqstate_t s = kmm_lock_irqsave(&pm->grow.lock);
    out->total_pages = pm->total_pages;
    out->usable_pages = pm->usable_pages;
    out->metadata_pages = pm->metadata_pages;
    out->frame_db_bytes = pm->frame_db_bytes;
    for (uint32_t t = 1; t < KMM_MEM_TYPE_LIMIT; t++)
        if (t != KMM_MEM_USABLE && t != KMM_MEM_KMM_META)
            out->reserved_bytes[t] = k->totals.bytes[t];
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            out->zones[z].deferred_pages += pm->grow.deferred[n][z];
            out->deferred_pages += pm->grow.deferred[n][z];
        }
    }
    kmm_unlock_irqrestore(&pm->grow.lock, s);
    out->add_rejected = atomic_load_explicit(&pm->grow.add_rejected, memory_order_relaxed);
}

/* Each section's state agrees with sections[], and a DEFERRED one's record
 * with the map. Adds the deferred pages per zone to deferred[][]. */
static void check_sections(struct kmm *k, uint64_t deferred[KMM_MAX_NODES][KMM_ZONE_COUNT],
                           struct kmm_check_result *r)
{
    const struct kmm_pmm *pm = &k->pmm;
    for (uint64_t s = 0; s < pm->nsections; s++) {
        const struct pmm_section *ps = &pm->grow.sections[s];
        const struct kmm_frame *published = pm->sections[s];
        bool agrees = ps->state == PMM_SECTION_EMPTY      ? !ps->frames && !published
                      : ps->state == PMM_SECTION_DEFERRED ? ps->frames && !published
                      : ps->state == PMM_SECTION_READY    ? ps->frames && published == ps->frames
                                                          : false;
        if (!agrees) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "section %llu: state %u, frames %s, %s",
                              (unsigned long long)s, ps->state, ps->frames ? "assigned" : "none",
                              published ? "published" : "not published");
            continue;
        }
        if (ps->state != PMM_SECTION_DEFERRED)
            continue;
        struct section_scan sc;
        section_scan(k, s, &sc);
        if (sc.pages != ps->deferred || (sc.pages && (sc.node != ps->node || sc.zone != ps->zone)))
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "section %llu: deferred %u pages of zone %u node %u, the map says "
                              "%llu of zone %u node %u",
                              (unsigned long long)s, ps->deferred, ps->zone, ps->node,
                              (unsigned long long)sc.pages, sc.zone, sc.node);
        else if (ps->node < KMM_MAX_NODES && ps->zone < KMM_ZONE_COUNT)
            deferred[ps->node][ps->zone] += ps->deferred;
    }
}

void pmm_grow_check(struct kmm *k, struct kmm_check_result *r)
{
    const struct kmm_pmm *pm = &k->pmm;
    uint64_t deferred[KMM_MAX_NODES][KMM_ZONE_COUNT] = {{0}};
    check_sections(k, deferred, r);
    uint64_t total = 0;
    for (unsigned n = 0; n < KMM_MAX_NODES; n++) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            total += deferred[n][z];
            if (deferred[n][z] != pm->grow.deferred[n][z])
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "zone %s node %u: sections defer %llu pages, the counter says "
                                  "%llu",
                                  kmm_zone_name(z), n, (unsigned long long)deferred[n][z],
                                  (unsigned long long)pm->grow.deferred[n][z]);
        }
    }
    if (total != atomic_load_explicit(&pm->grow.deferred_total, memory_order_relaxed))
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "%llu pages deferred, the total says %llu",
                          (unsigned long long)total,
                          (unsigned long long)atomic_load_explicit(&pm->grow.deferred_total,
                                                                   memory_order_relaxed));
    /* Every metadata range of the map is kmm's: the instance's and the
     * descriptors of added memory. */
    uint64_t meta = 0;
    for (size_t i = 0; i < k->map_count; i++)
        if (k->map[i].type == KMM_MEM_KMM_META)
            meta += k->map[i].length >> KMM_PAGE_SHIFT;
    if (meta != pm->metadata_pages)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "the map holds %llu metadata pages, the count %llu",
                          (unsigned long long)meta, (unsigned long long)pm->metadata_pages);
}
