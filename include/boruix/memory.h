/*
 * boruix/memory.h - Boruix's kernel-facing memory header (SPEC §8), over
 * boruix/rust_memory.h.
 *
 * Upstream, map_page, alloc_page and free_page here were stubs; ours do
 * the real work, and map_page returns rust_map_page's int (0 or -1). The
 * names are macros, as Boruix's were, so they cost nothing and can be
 * #undef'd by a file that has names of its own.
 *
 * C99 and C++, with <stdint.h>, <stddef.h> and <stdbool.h> only.
 */
#ifndef BORUIX_MEMORY_H
#define BORUIX_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <boruix/rust_memory.h>

#define PAGE_SIZE  4096
#define PAGE_SHIFT 12
#define PAGE_MASK  (~(4096ULL - 1)) /* clears the offset within a page */

/* Page flags: the x86_64 entry bits (as RUST_PAGE_*). */
#define PAGE_PRESENT       RUST_PAGE_PRESENT
#define PAGE_WRITABLE      RUST_PAGE_WRITABLE
#define PAGE_USER          RUST_PAGE_USER
#define PAGE_WRITETHROUGH  RUST_PAGE_WRITE_THROUGH
#define PAGE_CACHE_DISABLE RUST_PAGE_CACHE_DISABLE
#define PAGE_ACCESSED      RUST_PAGE_ACCESSED
#define PAGE_DIRTY         RUST_PAGE_DIRTY
#define PAGE_SIZE_FLAG     RUST_PAGE_SIZE_FLAG
#define PAGE_GLOBAL        RUST_PAGE_GLOBAL
#define PAGE_NO_EXECUTE    RUST_PAGE_NO_EXECUTE

typedef enum {
    MEMORY_TYPE_AVAILABLE = RUST_MEMORY_TYPE_AVAILABLE,
    MEMORY_TYPE_RESERVED = RUST_MEMORY_TYPE_RESERVED,
    MEMORY_TYPE_ACPI_RECLAIMABLE = RUST_MEMORY_TYPE_ACPI_RECLAIMABLE,
    MEMORY_TYPE_ACPI_NVS = RUST_MEMORY_TYPE_ACPI_NVS,
    MEMORY_TYPE_BAD = RUST_MEMORY_TYPE_BAD
} memory_type_t;

typedef struct {
    uint64_t base_addr;
    uint64_t length;
    memory_type_t type;
} memory_region_t;

/* The table indexes of a virtual address (x86_64, 4 levels):
 *   63..48 sign | 47..39 PML4 | 38..30 PDP | 29..21 PD | 20..12 PT | 11..0 offset */
#define PML4_INDEX(addr) (((uint64_t)(addr) >> 39) & 0x1FF)
#define PDP_INDEX(addr)  (((uint64_t)(addr) >> 30) & 0x1FF)
#define PD_INDEX(addr)   (((uint64_t)(addr) >> 21) & 0x1FF)
#define PT_INDEX(addr)   (((uint64_t)(addr) >> 12) & 0x1FF)

/* The layout (boruix/rust_memory.h draws it). */
#define KERNEL_VIRTUAL_BASE 0xFFFFFFFF80000000ULL
#define USER_VIRTUAL_BASE   0x400000ULL
#define USER_VIRTUAL_END    0x00007FFFFFFFFFFFULL
#define KERNEL_HEAP_START   0xFFFFFFFF90000000ULL
#define KERNEL_HEAP_END     0xFFFFFFFFA0000000ULL

#define kmalloc(size)               rust_kmalloc(size)
#define kfree(ptr)                  rust_kfree(ptr)
#define alloc_page()                rust_alloc_page()
#define free_page(addr)             rust_free_page(addr)
#define map_page(virt, phys, flags) rust_map_page((virt), (phys), (flags))
#define unmap_page(virt)            rust_unmap_page(virt)
#define get_physical_addr(virt)     rust_virt_to_phys(virt)

#endif /* BORUIX_MEMORY_H */
