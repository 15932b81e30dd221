/*
 * kmm/memmap.h - the physical memory map: what the firmware says, resolved.
 *
 * A boot loader hands the kernel a list of regions in any order, with
 * unaligned edges and overlaps. kmm resolves such a list into a sorted list of
 * disjoint ranges, one type each, by these rules:
 *
 *   1. Where regions overlap, the type with the higher precedence wins:
 *        usable < bootloader-reclaimable < ACPI-reclaimable < ACPI NVS
 *               < kernel/modules < reserved < bad
 *      ("reserved wins": anything that is not plain usable memory beats it).
 *   2. Adjacent ranges of one type merge.
 *   3. Usable ranges shrink to whole pages: a partial page is never usable.
 *      Other types keep their exact byte edges (for the report).
 *   4. Page 0 is never usable.
 *   5. Addresses nobody describes are holes and are not listed.
 *
 *   firmware:   |--usable-------------|          |--usable--|
 *                       |reserved|   |-ACPI-|
 *   resolved:   |usable-|reserved|us-|-ACPI-|    |--usable--|
 */
#ifndef KMM_MEMMAP_H
#define KMM_MEMMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Region types. 1..5 have Boruix's (and Multiboot's) numbering. */
enum kmm_mem_type {
    KMM_MEM_USABLE = 1,
    KMM_MEM_RESERVED = 2,
    KMM_MEM_ACPI_RECLAIMABLE = 3,
    KMM_MEM_ACPI_NVS = 4,
    KMM_MEM_BAD = 5,
    KMM_MEM_BOOTLOADER_RECLAIMABLE = 6,
    KMM_MEM_KERNEL = 7,    /* kernel image and modules */
    KMM_MEM_KMM_META = 8,  /* the library's own metadata (never in an input map) */
    KMM_MEM_TYPE_LIMIT = 9 /* one past the last valid type */
};

/* One range of physical memory. */
struct kmm_region {
    uint64_t base;   /* first byte */
    uint64_t length; /* bytes; 0 is allowed and ignored */
    uint32_t type;   /* enum kmm_mem_type */
};

/* The most regions an input map (regions plus reserved ranges) may hold. */
#define KMM_MAX_REGIONS 256

/* The most ranges an instance's map (kmm_memory_map) holds. Resolving n
 * input regions gives at most 2n - 1 ranges (a range that others cut in
 * the middle splits in two), and the instance's own metadata may split one
 * more; memory added later (kmm_page_add_memory) fills the rest. */
#define KMM_MAX_MAP_RANGES (2 * KMM_MAX_REGIONS)

/* kmm_memmap_validate's answer for a map with no bad entry. */
#define KMM_MEMMAP_VALID (-1L)

/* The highest physical address x86_64 can have (MAXPHYADDR = 52), exclusive. */
#define KMM_PHYS_LIMIT ((uint64_t)1 << 52)

/* A short lower-case name for a type ("usable", "acpi-nvs"); "?" if unknown. */
const char *kmm_mem_type_name(uint32_t type);

/*
 * kmm_memmap_validate - check an input map without changing anything.
 * Returns KMM_MEMMAP_VALID (-1) if the map is valid, else the index of the
 * first bad entry: a type outside 1..7 (KMM_MEM_KMM_META is the library's
 * own), or an entry of non-zero length that ends above KMM_PHYS_LIMIT or
 * wraps around (an entry of length 0 describes nothing and may be
 * anywhere). count above KMM_MAX_REGIONS makes
 * index KMM_MAX_REGIONS bad. Pure; any context; O(n).
 */
long kmm_memmap_validate(const struct kmm_region *regions, size_t count);

/*
 * kmm_memmap_resolve - resolve a valid input map (the rules above) into out,
 * which has room for cap ranges, lowest address first.
 * Returns the number of resolved ranges, at most 2 * count - 1; if that is
 * more than cap, only the first cap were written (call again with more room). Pure; any context;
 * O(n^2) in count, no scratch memory.
 */
size_t kmm_memmap_resolve(const struct kmm_region *regions, size_t count, struct kmm_region *out,
                          size_t cap);

/* Totals over a resolved map. */
struct kmm_memmap_totals {
    uint64_t bytes[KMM_MEM_TYPE_LIMIT]; /* bytes per type (index 0 unused) */
    uint64_t usable_pages;              /* whole usable pages */
    uint64_t phys_end;                  /* end of the highest range, exclusive */
    size_t ranges;                      /* number of ranges */
};

/* kmm_memmap_totals - add up a resolved map. Pure; any context; O(n). */
void kmm_memmap_totals(const struct kmm_region *map, size_t count, struct kmm_memmap_totals *out);

#endif /* KMM_MEMMAP_H */
