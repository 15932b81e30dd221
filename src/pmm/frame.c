/*
 * frame.c - building the frame database at init and handing usable memory
 * to the buddy allocator.
 *
 * The database lives in the metadata block kmm_init carves out of usable
 * memory, right after the instance:
 *
 *   meta_base                                                  meta_base + meta_size
 *   | struct kmm | section table (nsections pointers) | frames of section a | ... |
 *
 * Only sections that hold usable RAM get frames (128 MiB of address space
 * costs 512 KiB of descriptors), so holes in the physical address space are
 * nearly free. Everything here runs once, single-threaded, and cannot fail:
 * kmm_init has checked beforehand that the block fits.
 */
#include "internal.h"

#include "pmm/pmm.h"

#define SECTION_TABLE_ALIGN 64

/* Usable page frame numbers of a resolved range, clamped to what a frame
 * number can name. Returns false if none remain. */
static bool usable_pfns(const struct kmm_region *r, uint64_t *first, uint64_t *end)
{
    if (r->type != KMM_MEM_USABLE && r->type != KMM_MEM_KMM_META)
        return false;
    *first = r->base >> KMM_PAGE_SHIFT;
    *end = (r->base + r->length) >> KMM_PAGE_SHIFT;
    if (*end > KMM_PAGE_PFN_LIMIT)
        *end = KMM_PAGE_PFN_LIMIT;
    return *first < *end;
}

void pmm_plan(const struct kmm_memmap_input *in, struct pmm_layout *out)
{
    *out = (struct pmm_layout){0};
    uint64_t cursor = 0, last_section = UINT64_MAX;
    struct kmm_region r;
    while (kmm_memmap_next(in, &cursor, &r)) {
        uint64_t first, end;
        if (r.type == KMM_MEM_USABLE && (r.base + r.length) >> KMM_PAGE_SHIFT > KMM_PAGE_PFN_LIMIT)
            out->clamped = true;
        if (!usable_pfns(&r, &first, &end))
            continue;
        out->pfn_end = end;
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
    out->bytes = kmm_align_up(out->nsections * sizeof(struct kmm_frame *), SECTION_TABLE_ALIGN) +
                 out->present_sections * KMM_SECTION_BYTES;
}

/* Gives every section that holds usable RAM its frame array (all ABSENT). */
static void assign_sections(struct kmm *k, struct kmm_frame *frames)
{
    struct kmm_pmm *pm = &k->pmm;
    for (size_t i = 0; i < k->map_count; i++) {
        uint64_t first, end;
        if (!usable_pfns(&k->map[i], &first, &end))
            continue;
        for (uint64_t s = first >> KMM_SECTION_SHIFT; s <= (end - 1) >> KMM_SECTION_SHIFT; s++) {
            if (pm->sections[s])
                continue;
            pm->sections[s] = frames;
            __builtin_memset(frames, 0, KMM_SECTION_BYTES);
            frames += KMM_SECTION_FRAMES;
        }
    }
}

/* Marks the frames of [first, end) that have descriptors with state,
 * setting their zone and node. */
static void mark_frames(struct kmm *k, uint64_t first, uint64_t end, enum frame_state state)
{
    struct kmm_pmm *pm = &k->pmm;
    if (end > pm->pfn_end)
        end = pm->pfn_end;
    for (uint64_t pfn = first; pfn < end; pfn++) {
        struct kmm_frame *f = pmm_frame_lookup(pm, pfn);
        if (!f)
            continue;
        uint64_t pa = pfn << KMM_PAGE_SHIFT;
        unsigned node = kmm_port_node_of_phys(k->port, pa);
        *f = (struct kmm_frame){.next = KMM_PFN_NONE,
                                .prev = KMM_PFN_NONE,
                                .state = (uint8_t)state,
                                .zone = (uint8_t)pmm_zone_of_addr(pa),
                                .node = (uint8_t)(node < pm->node_count ? node : 0)};
    }
}

/* Hands [first, end) to the buddy allocator as the largest aligned blocks
 * that stay inside one zone and one node. The frames are INTERIOR already. */
static void free_range(struct kmm_pmm *pm, uint64_t first, uint64_t end)
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
}

/* Zone lists: for a CPU on node n and a request whose highest zone is top,
 * try each zone from top down to DMA, on node n first and then on the
 * others in ascending order (n+1, n+2, ...). Zones without memory are left
 * out. Falling back across nodes before falling to a lower zone keeps DMA
 * memory for the devices that need it. */
static void build_zonelists(struct kmm_pmm *pm)
{
    for (unsigned n = 0; n < pm->node_count; n++) {
        for (unsigned top = 0; top < KMM_ZONE_COUNT; top++) {
            uint8_t len = 0;
            for (unsigned z = top + 1; z-- > 0;) {
                for (unsigned i = 0; i < pm->node_count; i++) {
                    unsigned node = (n + i) % pm->node_count;
                    if (pm->zones[node][z].managed_pages)
                        pm->zonelist[n][top][len++] = (uint8_t)(node * KMM_ZONE_COUNT + z);
                }
            }
            pm->zonelist_len[n][top] = len;
        }
    }
    pmm_pcp_zonelists_changed(pm);
}

static void init_zones(struct kmm_pmm *pm)
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

void pmm_setup(struct kmm *k, const struct pmm_layout *lay, void *meta)
{
    struct kmm_pmm *pm = &k->pmm;
    unsigned nodes = kmm_port_node_count(k->port);
    pm->node_count = nodes < 1 ? 1 : nodes > KMM_MAX_NODES ? KMM_MAX_NODES : nodes;
    pm->pfn_end = lay->pfn_end;
    pm->nsections = lay->nsections;
    pm->sections = meta;
    __builtin_memset(pm->sections, 0, lay->nsections * sizeof(struct kmm_frame *));
    uintptr_t frames =
        (uintptr_t)meta +
        (uintptr_t)kmm_align_up(lay->nsections * sizeof(struct kmm_frame *), SECTION_TABLE_ALIGN);
    init_zones(pm);
    assign_sections(k, (struct kmm_frame *)frames);

    /* Non-usable ranges first (rounded out to whole pages), then usable RAM. */
    for (size_t i = 0; i < k->map_count; i++) {
        const struct kmm_region *r = &k->map[i];
        uint64_t first = r->base >> KMM_PAGE_SHIFT;
        uint64_t end = kmm_align_up(r->base + r->length, KMM_PAGE_SIZE) >> KMM_PAGE_SHIFT;
        if (r->type != KMM_MEM_USABLE)
            mark_frames(k, first, end, FRAME_RESERVED);
    }
    for (size_t i = 0; i < k->map_count; i++) {
        uint64_t first, end;
        if (k->map[i].type != KMM_MEM_USABLE || !usable_pfns(&k->map[i], &first, &end))
            continue;
        mark_frames(k, first, end, FRAME_INTERIOR);
        free_range(pm, first, end);
        pm->managed_pages += end - first;
    }
    build_zonelists(pm);
    pmm_pcp_setup(k, k->cpu_count);

    for (size_t i = 0; i < k->map_count; i++) {
        const struct kmm_region *r = &k->map[i];
        if (r->type == KMM_MEM_USABLE || r->type == KMM_MEM_KMM_META)
            pm->usable_pages += r->length >> KMM_PAGE_SHIFT;
        pm->total_pages += kmm_align_up(r->length, KMM_PAGE_SIZE) >> KMM_PAGE_SHIFT;
    }
    pm->metadata_pages = k->meta_size >> KMM_PAGE_SHIFT;
    pm->frame_db_bytes = lay->present_sections * KMM_SECTION_BYTES;
}
