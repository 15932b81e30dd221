/*
 * api.h - what the layers above the page allocator (the vmm, diag) and
 * init.c may call: frame lookup, the memory map's RAM test, page-table
 * pages, owned-mapping references, the integrity check, the report's
 * shrinker list, and the init calls. Everything else of the pmm is private
 * to src/pmm/ (pmm/pmm.h).
 */
#ifndef KMM_PMM_API_H
#define KMM_PMM_API_H

#include "lib/lib.h"
#include <kmm/page.h>

#include <stdbool.h>
#include <stdint.h>

#include "pmm/state.h"

struct kmm;

/* --- frames ---------------------------------------------------------------------- */

/* The frame of frame number pfn; pfn must be below pfn_end in a present
 * section (pmm_frame_lookup checks). O(1). */
static inline struct kmm_frame *pmm_frame(const struct kmm_pmm *pm, uint64_t pfn)
{
    return pm->sections[pfn >> KMM_SECTION_SHIFT] + (pfn & KMM_SECTION_MASK);
}

/* The frame of frame number pfn, or NULL if the database has none there
 * (no RAM, or a section whose descriptors are deferred: not managed yet). */
static inline struct kmm_frame *pmm_frame_lookup(const struct kmm_pmm *pm, uint64_t pfn)
{
    if (pfn >= pm->pfn_end || !pm->sections[pfn >> KMM_SECTION_SHIFT])
        return 0;
    return pmm_frame(pm, pfn);
}

/* --- init (frame.c, reclaim.c), for init.c ----------------------------------------- */

/* What the frame database needs, computed from the resolved map before any
 * memory is touched. */
struct pmm_layout {
    bool clamped; /* usable memory above KMM_PAGE_PFN_LIMIT was left out */
    /* The reach of the section table: the end of usable and reclaimable
     * RAM, or of the hot-add limit if that is higher (kmm_config). */
    uint64_t pfn_end;
    uint64_t usable_pages; /* whole usable pages in the map */
    uint64_t nsections;
    uint64_t present_sections;
    uint64_t bytes; /* section table + growth records + frame arrays */
};

struct kmm_memmap_input;

/* pmm_plan - size the frame database for the map in, with a section table
 * that reaches hotplug_limit (bytes; 0: the map's end). Pure. */
KMM_INIT void pmm_plan(const struct kmm_memmap_input *in, uint64_t hotplug_limit,
                       struct pmm_layout *out);

/* pmm_setup - build the frame database in memory at meta (direct-map
 * address, 16-byte aligned, lay->bytes long) for the instance's map (built
 * through pmm/map.h), and hand the usable
 * pages of the sections initialised at once to the buddy allocator (the
 * rest are deferred, grow.c). Cannot fail. */
KMM_INIT void pmm_setup(struct kmm *k, const struct pmm_layout *lay, void *meta);

/* Sets up the shrinker list; at init. */
KMM_INIT void pmm_reclaim_init(struct kmm_pmm *pm);

/* --- the report's shrinker list (reclaim.c), for diag --------------------------- */

/* One registered shrinker as the report shows it. */
struct pmm_shrinker_info {
    uint64_t seq, calls, freed;
    char name[32]; /* truncated; "?" for a NULL name */
};

/* The first registered shrinker with a registration number above after_seq
 * (0 for the first): copies it to *out and returns true, or returns false
 * at the end of the list. Takes the shrinker lock. */
bool pmm_shrinker_info(struct kmm_pmm *pm, uint64_t after_seq, struct pmm_shrinker_info *out);

/* --- the instance's memory map (map.c), for the layers above ---------------------- */

/*
 * pmm_ram_bytes - how many bytes of [pa, pa + size) the instance's resolved
 * map says are RAM (usable, kernel, kmm metadata, ACPI and boot-loader
 * memory): what the vmm may map without a cache mode. The layers above ask
 * this instead of reading the map (pmm/map.h). Any context; no lock: the
 * map changes only when memory is added (kmm_page_add_memory), and an
 * answer about the very range being added at that moment may be stale.
 * O(log ranges + ranges in [pa, pa + size)).
 */
uint64_t pmm_ram_bytes(const struct kmm *k, uint64_t pa, uint64_t size);

/* The memory types pmm_ram_bytes counts as RAM, a bit each. */
#define PMM_RAM_TYPES                                                                              \
    (1u << KMM_MEM_USABLE | 1u << KMM_MEM_KMM_META | 1u << KMM_MEM_KERNEL |                        \
     1u << KMM_MEM_ACPI_RECLAIMABLE | 1u << KMM_MEM_ACPI_NVS |                                     \
     1u << KMM_MEM_BOOTLOADER_RECLAIMABLE)

static inline bool pmm_is_ram_type(uint32_t type)
{
    return type < KMM_MEM_TYPE_LIMIT && ((PMM_RAM_TYPES >> type) & 1u);
}

/* pmm_ram_bytes of the one page at pa (page aligned, below 2^52): the
 * range the last answer came from is tried here, inline, as a run of maps
 * over the same memory asks again and again. */
static inline uint64_t pmm_ram_page(const struct kmm *k, uint64_t pa)
{
    size_t h = __atomic_load_n(&k->map_hint, __ATOMIC_RELAXED);
    if (h < k->map_count) {
        const struct kmm_region *r = &k->map[h];
        if (pa - r->base < r->length && r->length - (pa - r->base) >= KMM_PAGE_SIZE)
            return pmm_is_ram_type(r->type) ? KMM_PAGE_SIZE : 0;
    }
    return pmm_ram_bytes(k, pa, KMM_PAGE_SIZE);
}

/* --- page-table pages (table.c), for the vmm ----------------------------------- */

/* A zeroed single page for a page table: state PAGETABLE, entry count 0.
 * Returns its physical address or 0. flags as kmm_page_alloc (zone flags
 * ignored). */
uint64_t pmm_table_alloc(struct kmm *k, kmm_gfp_t flags);

/* Returns a table page (entry count 0) to the page allocator. */
void pmm_table_free(struct kmm *k, uint64_t pa);

/* pmm_table_free for a table whose every entry is 0 (emptied by unmaps,
 * each entry cleared, or never used): while it sits in this CPU's cache the
 * page allocator knows it holds zeros, and the KMM_GFP_ZERO request that
 * takes it from there (the next table, usually) does not zero it again. */
void pmm_table_free_zero(struct kmm *k, uint64_t pa);

/* The present-entry count of the table page at pa (its descriptor's count). */
static inline uint32_t *pmm_table_entries(struct kmm_pmm *pm, uint64_t pa)
{
    return &pmm_frame(pm, pa >> KMM_PAGE_SHIFT)->count;
}

/* Why the page at pa is no table page (NULL if it is one), for kmm_check. */
const char *pmm_table_problem(struct kmm *k, uint64_t pa);

/* --- page events (events.c), for diag ------------------------------------------------ */

/* Starts (on) or stops recording page events in the instance's ring
 * (lib/events.h), which must exist. On: every CPU empties its caches at its
 * next call and bypasses them while events are recorded (kmm/events.h). */
void pmm_events_switch(struct kmm *k, bool on);

/* --- heap blocks (slab.c), for the heap ---------------------------------------------- */

/* The largest block the heap takes from the page allocator (slabs, and
 * whole-page blocks up to KMM_HEAP_ALIGN_MAX): the page allocator's
 * largest. Lookups of an interior frame take one hop whatever the order:
 * a heap block's interior frames carry it (slab.c). */
#define PMM_SLAB_MAX_ORDER KMM_PAGE_MAX_ORDER

/*
 * pmm_slab_alloc - a block of 2^order pages (order <= PMM_SLAB_MAX_ORDER)
 * for the heap: its head marked SLAB with owner (non-zero) and record, so
 * that pmm_slab_find can name them for any byte of it and kmm_page_free
 * refuses it. flags: KMM_GFP_ATOMIC and KMM_GFP_ZERO are honoured, the
 * rest ignored. Returns its physical address, or 0 with nothing changed.
 * Context as kmm_page_alloc.
 */
uint64_t pmm_slab_alloc(struct kmm *k, unsigned order, kmm_gfp_t flags, uint32_t owner,
                        void *record);

/* pmm_slab_free - gives the heap block at pa (a SLAB head the heap owns)
 * back to the page allocator. Returns false, with nothing changed, if pa
 * is no longer a heap block's head: another CPU freed it first (two CPUs
 * freeing one block at once). Any context. */
bool pmm_slab_free(struct kmm *k, uint64_t pa);

/* A heap block as the frame database names it. */
struct pmm_slab_ref {
    uint64_t pa;                  /* its first byte */
    unsigned order;               /* 2^order pages */
    uint32_t owner;               /* pmm_slab_alloc's owner */
    const struct kmm_frame *head; /* its head frame: pmm_slab_record(head) is the record */
};

/* pmm_slab_find's hop from an INTERIOR frame f at pfn to the head of its
 * heap block, by the order the frame carries (slab.c). */
bool pmm_slab_find_head(struct kmm *k, uint64_t pfn, const struct kmm_frame *f,
                        struct pmm_slab_ref *out);

/* The record stored in a SLAB head's list fields. */
static inline void *pmm_slab_record(const struct kmm_frame *f)
{
    uint64_t v = (uint64_t)__atomic_load_n(&f->prev, __ATOMIC_RELAXED) << 32 |
                 __atomic_load_n(&f->next, __ATOMIC_RELAXED);
    return (void *)(uintptr_t)v;
}

/*
 * pmm_slab_find - the heap block that holds byte pa, into *out; false if
 * pa is in none (not RAM the database covers, or any other kind of page).
 * At most two frames read: pa's, and for an interior frame its block's
 * head. O(1). Any context; lock-free. The answer is exact for a
 * block the caller has a right to (one it allocated and has not freed);
 * for any other address it may be stale by the time it returns, which the
 * heap's own checks under its locks absorb.
 */
static inline __attribute__((always_inline)) bool pmm_slab_find(struct kmm *k, uint64_t pa,
                                                                struct pmm_slab_ref *out)
{
    uint64_t pfn = pa >> KMM_PAGE_SHIFT;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pfn);
    if (!f)
        return false;
    /* The common case inline: pa in a slab's first page. */
    union frame_meta m = frame_meta_get(f);
    if (__builtin_expect(m.state == FRAME_SLAB, 1)) {
        *out = (struct pmm_slab_ref){pfn << KMM_PAGE_SHIFT, m.order, m.count, f};
        return true;
    }
    return m.state == FRAME_INTERIOR && pmm_slab_find_head(k, pfn, f, out);
}

/* Whether pa is the start of an allocated single page (what an owned
 * mapping may reference, unless it is a run's first page). Racy by nature:
 * for validation before pmm_page_map_get. */
bool pmm_is_allocated_page(struct kmm *k, uint64_t pa);

/* --- owned mappings' references (buddy.c), for the vmm ----------------------- */

/*
 * pmm_page_map_get - take a reference for an owned mapping of the single
 * page at pa (frame.h: FRAME_MAPPED, the mapcount). Returns true, or false
 * with nothing changed if pa is not an allocated single page now (never
 * allocated, freed meanwhile by a racing caller, a run's first page), or
 * already has FRAME_MAPS_MAX mappings. Logs nothing: the caller reports.
 * Takes the page's zone lock (a leaf). Any context.
 */
bool pmm_page_map_get(struct kmm *k, uint64_t pa);

/*
 * pmm_page_map_put - drop a reference pmm_page_map_get took; the page is
 * freed (to its zone, merging) if no caller and no other mapping holds it.
 * Cannot fail: kmm_page_free never drops a mapping's reference, so the
 * reference is there (a missing one is a broken invariant: panic). Call it
 * only once no CPU can reach the page through the mapping (after the TLB
 * invalidations). Takes the page's zone lock. Any context.
 */
void pmm_page_map_put(struct kmm *k, uint64_t pa);

/* pmm_page_map_count - how many owned mappings hold the page at pa (its
 * mapcount; 0 if none, or if pa is no allocated single page), read under
 * its zone lock. Exact for as long as the caller keeps every mapping it
 * counts from changing (kmm_vm_fault: its space's lock over its own
 * mapping, which keeps the count from reaching 0; a count of 1 is then that
 * mapping alone). Takes the page's zone lock (a leaf). Any context. */
uint32_t pmm_page_map_count(struct kmm *k, uint64_t pa);

/* Whether the page at pa holds an owned mapping's reference (kmm_check).
 * Racy by nature. */
bool pmm_page_mapped(struct kmm *k, uint64_t pa);

/* --- integrity (check.c) ---------------------------------------------------------- */

struct kmm_check_result;
void pmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_PMM_API_H */
