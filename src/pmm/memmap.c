/*
 * memmap.c - resolving the firmware's memory map (rules in kmm/memmap.h).
 *
 * The resolver needs no memory of its own: it walks the address space from
 * boundary to boundary, asking at each one which type wins there. With n
 * regions that is O(n) per boundary and O(n^2) in all, which is nothing at
 * boot time for n <= KMM_MAX_REGIONS and keeps the code free of sorting and
 * scratch arrays.
 *
 * The instance's own resolved map, and the questions asked of it, are
 * map.c's.
 */
#include "internal.h"

#include "pmm/pmm.h"

#include <kmm/memmap.h>

/* Precedence of each type where regions overlap; higher wins. 0: invalid in
 * an input map. */
static const uint8_t precedence[KMM_MEM_TYPE_LIMIT] = {
    [KMM_MEM_USABLE] = 1,
    [KMM_MEM_BOOTLOADER_RECLAIMABLE] = 2,
    [KMM_MEM_ACPI_RECLAIMABLE] = 3,
    [KMM_MEM_ACPI_NVS] = 4,
    [KMM_MEM_KERNEL] = 5,
    [KMM_MEM_RESERVED] = 6,
    [KMM_MEM_BAD] = 7,
};

static const char *const type_names[KMM_MEM_TYPE_LIMIT] = {
    [KMM_MEM_USABLE] = "usable",
    [KMM_MEM_RESERVED] = "reserved",
    [KMM_MEM_ACPI_RECLAIMABLE] = "acpi-reclaimable",
    [KMM_MEM_ACPI_NVS] = "acpi-nvs",
    [KMM_MEM_BAD] = "bad",
    [KMM_MEM_BOOTLOADER_RECLAIMABLE] = "bootloader-reclaimable",
    [KMM_MEM_KERNEL] = "kernel",
    [KMM_MEM_KMM_META] = "kmm-metadata",
};

const char *kmm_mem_type_name(uint32_t type)
{
    return type < KMM_MEM_TYPE_LIMIT && type_names[type] ? type_names[type] : "?";
}

long kmm_memmap_validate(const struct kmm_region *regions, size_t count)
{
    if (count > KMM_MAX_REGIONS)
        return KMM_MAX_REGIONS;
    for (size_t i = 0; i < count; i++) {
        const struct kmm_region *r = &regions[i];
        if (r->type >= KMM_MEM_TYPE_LIMIT || precedence[r->type] == 0)
            return (long)i;
        /* Length 0 describes nothing, wherever it is (memmap.h): ignored. */
        if (r->length && (r->base > KMM_PHYS_LIMIT || r->length > KMM_PHYS_LIMIT - r->base))
            return (long)i;
    }
    return KMM_MEMMAP_VALID;
}

static const struct kmm_region *input_at(const struct kmm_memmap_input *in, size_t i)
{
    return i < in->na ? &in->a[i] : &in->b[i - in->na];
}

/* The winning type at address a, or 0 where no region covers a. */
static uint32_t type_at(const struct kmm_memmap_input *in, uint64_t a)
{
    uint32_t best = 0;
    for (size_t i = 0; i < in->na + in->nb; i++) {
        const struct kmm_region *r = input_at(in, i);
        if (a >= r->base && a - r->base < r->length && precedence[r->type] > precedence[best])
            best = r->type;
    }
    return best;
}

/* The lowest region edge (start or end) above a; KMM_PHYS_LIMIT if none. */
static uint64_t next_edge(const struct kmm_memmap_input *in, uint64_t a)
{
    uint64_t next = KMM_PHYS_LIMIT;
    for (size_t i = 0; i < in->na + in->nb; i++) {
        const struct kmm_region *r = input_at(in, i);
        if (r->length == 0)
            continue;
        uint64_t end = r->base + r->length;
        if (r->base > a && r->base < next)
            next = r->base;
        if (end > a && end < next)
            next = end;
    }
    return next;
}

bool kmm_memmap_next(const struct kmm_memmap_input *in, uint64_t *cursor, struct kmm_region *out)
{
    uint64_t pos = *cursor;
    while (pos < KMM_PHYS_LIMIT) {
        uint32_t type = type_at(in, pos);
        uint64_t end = next_edge(in, pos);
        if (type == 0) { /* a hole: skip to the next edge */
            pos = end;
            continue;
        }
        while (end < KMM_PHYS_LIMIT && type_at(in, end) == type)
            end = next_edge(in, end);
        *cursor = end;
        uint64_t start = pos;
        if (type == KMM_MEM_USABLE) { /* whole pages only, never page 0 */
            start = kmm_align_up(start, KMM_PAGE_SIZE);
            if (start < KMM_PAGE_SIZE)
                start = KMM_PAGE_SIZE;
            uint64_t page_end = kmm_align_down(end, KMM_PAGE_SIZE);
            if (start >= page_end) {
                pos = end;
                continue;
            }
            end = page_end;
        }
        *out = (struct kmm_region){.base = start, .length = end - start, .type = type};
        return true;
    }
    *cursor = KMM_PHYS_LIMIT;
    return false;
}

size_t kmm_memmap_resolve(const struct kmm_region *regions, size_t count, struct kmm_region *out,
                          size_t cap)
{
    struct kmm_memmap_input in = {.a = regions, .na = count};
    uint64_t cursor = 0;
    struct kmm_region r;
    size_t n = 0;
    while (kmm_memmap_next(&in, &cursor, &r)) {
        if (n < cap)
            out[n] = r;
        n++;
    }
    return n;
}

void kmm_memmap_totals(const struct kmm_region *map, size_t count, struct kmm_memmap_totals *out)
{
    *out = (struct kmm_memmap_totals){.ranges = count};
    for (size_t i = 0; i < count; i++) {
        const struct kmm_region *r = &map[i];
        if (r->type < KMM_MEM_TYPE_LIMIT)
            out->bytes[r->type] += r->length;
        if (r->type == KMM_MEM_USABLE)
            out->usable_pages += r->length >> KMM_PAGE_SHIFT;
        if (r->base + r->length > out->phys_end)
            out->phys_end = r->base + r->length;
    }
}
