/*
 * grow_add.c - kmm_page_add_memory: reclaimed boot memory and hot-added
 * memory. Everything is checked under the growth lock first and nothing
 * changes if anything is wrong (STYLE: decode, then invoke); then the map
 * is rewritten (map.c), the pages of sections already READY go to the
 * buddy allocator at once, sections without a frame array get one carved
 * from the start of the range (memmap_on_memory) and are recorded
 * DEFERRED, and they are initialised one at a time after the lock is
 * dropped (grow.c). grow.c's top comment tells the whole story.
 *
 * Lock order (docs/architecture.md, "Lock order"):
 *     5 growth lock  ->  6 zone locks, in ascending (node, zone) order
 */
#include "internal.h"

#include "pmm/grow.h"
#include "pmm/pmm.h"
#include "pmm/zonelist.h"

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
    const struct kmm_region *r = map_range_at(k, lo);
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
    if (!map_has_room(k, ADD_MAP_RANGES))
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
    uint64_t mask = grow_section_locks(pm, s);
    kmm_irqstate_t saved[GROW_ZONES];
    grow_lock_zones(pm, mask, saved);
    for (uint64_t pfn = first; pfn < end; pfn++) {
        struct kmm_frame *f = pmm_frame(pm, pfn);
        uint8_t state = frame_state_get(f);
        KMM_ASSERT(k->port, state == FRAME_ABSENT || state == FRAME_RESERVED);
        if (state == FRAME_ABSENT)
            grow_write_frames(k, pm->sections[s], grow_section_lo(s), pfn, pfn + 1,
                              KMM_MEM_KMM_META);
        frame_state_set(f, pfn < meta_end ? FRAME_RESERVED : FRAME_INTERIOR);
    }
    if (meta_end < end) {
        grow_free_range_locked(pm, meta_end > first ? meta_end : first, end);
        grow_refresh_bounds_locked(pm, mask);
    }
    grow_unlock_zones(pm, mask, saved);
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
    map_recount(k);
    pm->metadata_pages += p->meta_pages;
    pm->frame_db_bytes += p->arrays * KMM_SECTION_BYTES;

    struct kmm_frame *arrays = kmm_phys_to_virt(k, lo);
    for (uint64_t s = p->first >> KMM_SECTION_SHIFT; s <= (p->end - 1) >> KMM_SECTION_SHIFT; s++) {
        struct pmm_section *ps = &pm->grow.sections[s];
        if (ps->state == PMM_SECTION_READY) {
            uint64_t a = grow_section_lo(s) > p->first ? grow_section_lo(s) : p->first;
            uint64_t b = grow_section_hi(pm, s) < p->end ? grow_section_hi(pm, s) : p->end;
            section_add_locked(k, s, a, b, meta_end);
            continue;
        }
        if (ps->state == PMM_SECTION_EMPTY) {
            ps->frames = arrays;
            ps->state = PMM_SECTION_DEFERRED;
            arrays += KMM_SECTION_FRAMES;
        } else {
            grow_section_undefer(&pm->grow, ps);
        }
        struct grow_section_scan sc;
        grow_section_defer(k, s, &sc); /* initialised after the lock is dropped */
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
            grow_section_init_locked(k, sec);
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
