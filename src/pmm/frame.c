/*
 * frame.c - building the frame database at init and handing usable memory
 * to the buddy allocator.
 *
 * The database lives in the metadata block kmm_init carves out of usable
 * memory, right after the instance:
 *
 *   meta_base                                                          meta_base + meta_size
 *   | struct kmm | section table | growth records | frames of section a | ... |
 *                  (nsections pointers, then nsections struct pmm_section)
 *
 * Only sections that hold usable RAM get frames (128 MiB of address space
 * costs 512 KiB of descriptors), so holes in the physical address space are
 * nearly free. A frame array is assigned here but written only when its
 * section is initialised (grow.c): at init for a budget of sections, later
 * on demand. Everything here runs once, single-threaded, and cannot fail:
 * kmm_init has checked beforehand that the block fits.
 */
#include "internal.h"

#include "pmm/map.h"

#include "pmm/pmm.h"
#include "pmm/zonelist.h"

#define SECTION_TABLE_ALIGN 64

/* The section table and the growth records, before the frame arrays. */
KMM_INIT static uint64_t table_bytes(uint64_t nsections)
{
    return kmm_align_up(nsections * sizeof(struct kmm_frame *), SECTION_TABLE_ALIGN) +
           kmm_align_up(nsections * sizeof(struct pmm_section), SECTION_TABLE_ALIGN);
}

/* Usable page frame numbers of a resolved range, clamped to what a frame
 * number can name. Returns false if none remain. */
KMM_INIT static bool usable_pfns(const struct kmm_region *r, uint64_t *first, uint64_t *end)
{
    if (r->type != KMM_MEM_USABLE && r->type != KMM_MEM_KMM_META)
        return false;
    *first = r->base >> KMM_PAGE_SHIFT;
    *end = (r->base + r->length) >> KMM_PAGE_SHIFT;
    if (*end > KMM_PAGE_PFN_LIMIT)
        *end = KMM_PAGE_PFN_LIMIT;
    return *first < *end;
}

/* The end of the memory a section table must reach: usable and reclaimable
 * RAM (kmm_page_add_memory may reclaim the latter), and the hot-add limit. */
KMM_INIT static uint64_t plan_reach(const struct kmm_region *r, uint64_t reach)
{
    if (r->type == KMM_MEM_USABLE || r->type == KMM_MEM_BOOTLOADER_RECLAIMABLE ||
        r->type == KMM_MEM_ACPI_RECLAIMABLE) {
        uint64_t end = (r->base + r->length) >> KMM_PAGE_SHIFT;
        if (end > reach)
            reach = end < KMM_PAGE_PFN_LIMIT ? end : KMM_PAGE_PFN_LIMIT;
    }
    return reach;
}

KMM_INIT void pmm_plan(const struct kmm_memmap_input *in, uint64_t hotplug_limit,
                       struct pmm_layout *out)
{
    *out = (struct pmm_layout){0};
    uint64_t cursor = 0, last_section = UINT64_MAX;
    struct kmm_region r;
    out->pfn_end = hotplug_limit >> KMM_PAGE_SHIFT; /* kmm_init checked the limit */
    while (kmm_memmap_next(in, &cursor, &r)) {
        uint64_t first, end;
        if (r.type == KMM_MEM_USABLE && (r.base + r.length) >> KMM_PAGE_SHIFT > KMM_PAGE_PFN_LIMIT)
            out->clamped = true;
        out->pfn_end = plan_reach(&r, out->pfn_end);
        if (!usable_pfns(&r, &first, &end))
            continue;
        out->usable_pages += end - first;
        /* Ranges come sorted, so a section shared with the previous range
         * is the last one counted. */
        uint64_t s = first >> KMM_SECTION_SHIFT;
        if (s == last_section)
            s++;
        uint64_t s_end = ((end - 1) >> KMM_SECTION_SHIFT) + 1;
        if (s < s_end) {
            out->present_sections += s_end - s;
            last_section = s_end - 1;
        }
    }
    out->nsections = (out->pfn_end + KMM_SECTION_MASK) >> KMM_SECTION_SHIFT;
    out->bytes = table_bytes(out->nsections) + out->present_sections * KMM_SECTION_BYTES;
}

/* Gives every section that holds usable RAM its frame array, and records it
 * DEFERRED: nothing is written to the array here (pmm_grow_setup decides
 * which sections are initialised now). */
KMM_INIT static void assign_sections(struct kmm *k, struct kmm_frame *frames)
{
    struct kmm_pmm *pm = &k->pmm;
    struct map_walk w;
    struct map_frames f;
    map_walk_start(k, &w, 0, KMM_PAGE_PFN_LIMIT);
    while (map_walk_next(k, &w, &f)) {
        if (f.type != KMM_MEM_USABLE && f.type != KMM_MEM_KMM_META)
            continue;
        for (uint64_t s = f.first >> KMM_SECTION_SHIFT; s <= (f.end - 1) >> KMM_SECTION_SHIFT;
             s++) {
            struct pmm_section *ps = &pm->grow.sections[s];
            if (ps->frames)
                continue;
            ps->frames = frames;
            ps->state = PMM_SECTION_DEFERRED;
            frames += KMM_SECTION_FRAMES;
        }
    }
}

KMM_INIT static void init_zones(struct kmm_pmm *pm)
{
    for (unsigned n = 0; n < KMM_MAX_NODES; n++) {
        for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
            struct kmm_zone *zone = &pm->zones[n][z];
            kmm_lock_init(&zone->lock);
            zone->id = (uint8_t)z;
            zone->node = (uint8_t)n;
            for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
                zone->free_head[o] = KMM_PFN_NONE;
        }
    }
}

KMM_INIT void pmm_setup(struct kmm *k, const struct pmm_layout *lay, void *meta)
{
    struct kmm_pmm *pm = &k->pmm;
    unsigned nodes = kmm_port_node_count(k->port);
    pm->node_count = nodes < 1 ? 1 : nodes > KMM_MAX_NODES ? KMM_MAX_NODES : nodes;
    pm->pfn_end = lay->pfn_end;
    pm->nsections = lay->nsections;
    /* Only the table and the growth records are cleared here: a frame
     * array is written when its section is initialised (grow.c). */
    pm->sections = meta;
    __builtin_memset(pm->sections, 0, lay->nsections * sizeof(struct kmm_frame *));
    uintptr_t records =
        (uintptr_t)meta +
        (uintptr_t)kmm_align_up(lay->nsections * sizeof(struct kmm_frame *), SECTION_TABLE_ALIGN);
    pm->grow.sections = (struct pmm_section *)records;
    __builtin_memset(pm->grow.sections, 0, lay->nsections * sizeof(struct pmm_section));
    init_zones(pm);
    assign_sections(k, (struct kmm_frame *)((uintptr_t)meta + table_bytes(lay->nsections)));
    pmm_grow_setup(k);
    pmm_zonelists_build(pm);
    pmm_pcp_setup(k, k->cpu_count);

    map_recount(k);
    pm->metadata_pages = k->meta_size >> KMM_PAGE_SHIFT;
    pm->frame_db_bytes = lay->present_sections * KMM_SECTION_BYTES;
}
