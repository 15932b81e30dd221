/*
 * boruix/rust_memory.h - the Boruix memory manager interface (SPEC §8), over kmm.
 *
 * Boruix OS called its old Rust memory manager through these names; the
 * names (with their historical rust_ prefix), the types and their field
 * order are Boruix's, so its kernel code compiles unchanged. Every function
 * is a thin wrapper over kmm's native interface (include/kmm/), working on
 * one instance the compat layer owns (compat/boruix.c).
 *
 * This header is C99 and C++: it needs only <stdint.h>, <stddef.h> and
 * <stdbool.h>, which a freestanding kernel provides itself.
 *
 * Conventions (SPEC §8, §9):
 *  - int results: 0 success, -1 failure. Address results: 0 on failure (page
 *    0 is never handed out, so 0 is never a valid answer).
 *  - A caller mistake (NULL where a pointer is needed, an unaligned or
 *    unknown address, a double free, an unknown flag, a call before
 *    rust_memory_init) is rejected with that failure value, changes
 *    nothing, is counted (kmm_boruix_misuse() for the mistakes this layer
 *    finds itself, kmm_misuse_stats() for the ones the library finds) and
 *    logged once with the caller's address. rust_memory_check() still
 *    returns 0 afterwards.
 *  - Context: one CPU, as Boruix runs. Every call may be made with
 *    interrupts on; the library disables them around its own locks. Do not
 *    call from an interrupt handler (allocations may reclaim, mappings may
 *    allocate tables).
 *
 * Layout (Boruix's, the defaults of the drop-in port):
 *   0xFFFFFFFF90000000 .. 0xFFFFFFFFA0000000   kernel heap window (256 MiB)
 *     first 32 MiB: left to the kernel's own fixed mappings (Boruix's
 *                   pgtest maps 0xFFFFFFFF90000000, memprottest
 *                   0xFFFFFFFF91000000): the library never takes them
 *     the rest:     rust_vmm_allocate, rust_vmm_map_and_allocate and heap
 *                   blocks larger than 128 KiB (kmm's kernel virtual areas)
 *   physical [0, 16 MiB): kept for the kernel image, never handed out.
 */
#ifndef BORUIX_RUST_MEMORY_H
#define BORUIX_RUST_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- types ------------------------------------------------------------------ */

/* Region types (kmm's numbering is the same: KMM_MEM_USABLE .. KMM_MEM_BAD). */
#define RUST_MEMORY_TYPE_AVAILABLE        1
#define RUST_MEMORY_TYPE_RESERVED         2
#define RUST_MEMORY_TYPE_ACPI_RECLAIMABLE 3
#define RUST_MEMORY_TYPE_ACPI_NVS         4
#define RUST_MEMORY_TYPE_BAD              5

/* One range of the physical memory map. */
typedef struct {
    uint64_t base_addr;
    uint64_t length;
    uint32_t memory_type; /* RUST_MEMORY_TYPE_* */
} rust_memory_region_t;

/* Physical memory. total = allocated + free, in pages and in bytes; the
 * library's own metadata counts as allocated. */
typedef struct {
    uint64_t total_memory;     /* bytes the manager was given (usable RAM above 16 MiB) */
    uint64_t available_memory; /* bytes free */
    uint64_t allocated_memory; /* bytes allocated, metadata included */
    uint64_t reserved_memory;  /* bytes of the map that are not usable (kept low 16 MiB too) */
    size_t total_pages;
    size_t allocated_pages;
    size_t free_pages;
    uint32_t usage_percent; /* allocated_pages * 100 / total_pages */
} rust_physical_memory_stats_t;

/* The kernel address space. */
typedef struct {
    uint64_t kernel_virtual_size; /* bytes mapped in the kernel space */
    uint64_t user_virtual_size;   /* always 0: this interface makes no user space */
    size_t mapped_pages;          /* of the kernel space, in 4 KiB pages (huge ones counted 512 or
                                     262144 times) */
    size_t page_table_memory;     /* bytes of page tables */
} rust_virtual_memory_stats_t;

/* The heap (rust_kmalloc). */
typedef struct {
    size_t total_size;      /* bytes the heap holds from the page allocator now */
    size_t allocated;       /* of those, in allocated blocks */
    size_t free;            /* held, not allocated */
    size_t peak_usage;      /* the most ever held */
    size_t total_allocated; /* block bytes ever allocated; never decreases */
    size_t total_freed;     /* block bytes ever freed; never decreases */
} rust_heap_stats_t;

/* The kernel space's page tables. */
typedef struct {
    size_t pml4_tables;
    size_t pdp_tables;
    size_t pd_tables;
    size_t pt_tables;
    size_t total_entries; /* 512 per table */
    size_t valid_entries; /* present entries: leaves and links to tables */
} rust_page_table_stats_t;

typedef struct {
    rust_physical_memory_stats_t physical;
    rust_virtual_memory_stats_t virtual_memory;
    rust_heap_stats_t heap;
    rust_page_table_stats_t page_tables;
} rust_memory_stats_t;

typedef struct {
    uint64_t total_physical_mb;
    uint64_t used_physical_mb;
    uint64_t free_physical_mb;
    size_t heap_used_kb;
    size_t heap_free_kb;
    size_t page_tables_count;
    uint32_t usage_percent;
} rust_memory_summary_t;

typedef struct {
    rust_memory_summary_t summary;
    size_t leak_count;              /* live tracked heap blocks (debug level 3), else 0 */
    uint32_t fragmentation_percent; /* free memory not in 4 MiB blocks, in % */
    size_t region_count;            /* ranges of the resolved memory map */
    size_t allocation_count;        /* live heap blocks */
} rust_memory_report_t;

/* rust_memory_features() bits. */
#define RUST_MEMORY_FEATURE_PAGING (1u << 0)
#define RUST_MEMORY_FEATURE_HEAP   (1u << 1)
#define RUST_MEMORY_FEATURE_STATS  (1u << 2)
#define RUST_MEMORY_FEATURE_DEBUG  (1u << 3)

/* Page flags: the x86_64 entry bits. */
#define RUST_PAGE_PRESENT       0x1ULL
#define RUST_PAGE_WRITABLE      0x2ULL
#define RUST_PAGE_USER          0x4ULL
#define RUST_PAGE_WRITE_THROUGH 0x8ULL
#define RUST_PAGE_CACHE_DISABLE 0x10ULL
#define RUST_PAGE_ACCESSED      0x20ULL
#define RUST_PAGE_DIRTY         0x40ULL
#define RUST_PAGE_SIZE_FLAG     0x80ULL /* refused by rust_map_page: PAT in a 4 KiB entry */
#define RUST_PAGE_GLOBAL        0x100ULL
#define RUST_PAGE_NO_EXECUTE    (1ULL << 63)

#define RUST_PAGE_KERNEL_RW (RUST_PAGE_PRESENT | RUST_PAGE_WRITABLE | RUST_PAGE_NO_EXECUTE)
#define RUST_PAGE_KERNEL_RO (RUST_PAGE_PRESENT | RUST_PAGE_NO_EXECUTE)
#define RUST_PAGE_USER_RW                                                                          \
    (RUST_PAGE_PRESENT | RUST_PAGE_WRITABLE | RUST_PAGE_USER | RUST_PAGE_NO_EXECUTE)
#define RUST_PAGE_USER_RO (RUST_PAGE_PRESENT | RUST_PAGE_USER | RUST_PAGE_NO_EXECUTE)

/* --- set-up ------------------------------------------------------------------- */

/*
 * rust_set_hhdm_offset - where physical memory is mapped (Limine's higher
 * half direct map): physical address pa is at virtual offset + pa. Call
 * before rust_memory_init; read by it. offset must be page aligned; after
 * init only the offset in use is accepted (the library read it once).
 * Hosted, the simulated machine's direct map is used and reported instead.
 */
void rust_set_hhdm_offset(uint64_t offset);

/* rust_get_hhdm_offset - the direct map's offset: the one in use after
 * init, the one set (0 if none) before. */
uint64_t rust_get_hhdm_offset(void);

/*
 * rust_memory_init - create the memory manager for regions[0..count) (any
 * order, overlaps allowed: reserved types win over available memory). The
 * low 16 MiB are kept for the kernel image, as the original did; the
 * library's metadata (16 bytes per page) is taken from the regions'
 * available memory. Only once: a second call fails. -1 for NULL regions, a
 * count of 0 or above 255, a type outside 1..5, a map kmm refuses, or no
 * memory left for the metadata. The drop-in port also keeps out whatever
 * the boot loader's memory map says is not usable RAM (SPEC §8).
 */
int rust_memory_init(const rust_memory_region_t *regions, size_t count);

/* --- heap ----------------------------------------------------------------------- */

/* rust_kmalloc - a block of size bytes, 16-byte aligned; NULL for size 0 (as
 * the original), when memory runs out, or before init. O(1) usually. */
void *rust_kmalloc(size_t size);

/* rust_kfree - free a block of rust_kmalloc; NULL does nothing. A pointer
 * that is not a live block is refused (counted, logged), nothing freed. */
void rust_kfree(void *ptr);

/* --- physical pages --------------------------------------------------------------- */

/* rust_alloc_page - one zeroed 4 KiB page: its physical address, 0 if none. */
uint64_t rust_alloc_page(void);

/* rust_free_page - free a page of rust_alloc_page; 0 does nothing. Anything
 * else that is not an allocated page is refused (counted, logged). */
void rust_free_page(uint64_t page_addr);

/* rust_alloc_pages - count physically contiguous zeroed pages (exactly
 * count, not rounded): the first one's address, 0 if none or count is 0. */
uint64_t rust_alloc_pages(size_t count);

/* rust_free_pages - free the run of rust_alloc_pages; count must be the
 * one allocated. 0 does nothing; a mismatch is refused (counted, logged). */
void rust_free_pages(uint64_t start_addr, size_t count);

/* --- page tables (the kernel space) --------------------------------------------------- */

/*
 * rust_map_page - map the 4 KiB page at virtual_addr to physical_addr with
 * flags (RUST_PAGE_*; PRESENT is implied, ACCESSED and DIRTY are ignored).
 * WRITE_THROUGH / CACHE_DISABLE select the cache mode as the CPU reads them
 * (RAM mapped so is an alias the caller answers for). Returns 0, or -1 with
 * nothing changed: either address unaligned or non-canonical, the page
 * mapped already, a page of one of the library's own areas, bit 7
 * (RUST_PAGE_SIZE_FLAG: in a 4 KiB entry it is PAT, not a page size) or
 * bits 9..62, no memory for a table.
 */
int rust_map_page(uint64_t virtual_addr, uint64_t physical_addr, uint64_t flags);

/* rust_unmap_page - unmap the page at virtual_addr (page aligned): the
 * physical address it mapped, 0 on failure (not mapped: refused, counted).
 * The frame stays the caller's. */
uint64_t rust_unmap_page(uint64_t virtual_addr);

/* rust_virt_to_phys - the physical address of virtual_addr (its offset
 * kept), 0 when it is not mapped. */
uint64_t rust_virt_to_phys(uint64_t virtual_addr);

/* --- statistics and diagnostics ------------------------------------------------------- */

/* Fill *stats / *summary / *report. -1 for NULL or before init. */
int rust_memory_stats(rust_memory_stats_t *stats);
int rust_memory_summary(rust_memory_summary_t *summary);
int rust_memory_report(rust_memory_report_t *report);

/* rust_memory_check - walk every structure of the library: 0 healthy, 1
 * leaks (consistent, but memory held that should not be), 2 corruption, -1
 * could not check (before init). O(frames): for debugging, not hot paths. */
int rust_memory_check(void);

/* Physical memory in use, and the heap's allocated share of what it holds,
 * in percent; 0 before init. */
uint32_t rust_memory_usage_percent(void);
uint32_t rust_heap_usage_percent(void);

/* rust_memory_debug_print - write the library's full report (memory map,
 * zones, free blocks per order, page tables, kernel virtual areas, heap
 * caches, rejected calls) to the console: the log hook in a kernel,
 * stdout hosted. */
void rust_memory_debug_print(void);

/*
 * rust_memory_set_debug_level - the heap's and page allocator's debugging,
 * by level (each includes the ones below; docs/porting.md has the costs):
 *   0  off (the default): the always-on checks only (every free validated,
 *      double frees caught, encoded free lists). No cost.
 *   1  a ring of the recent heap events (the report lists them).
 *   2  freed heap blocks poisoned and checked on reuse, a quarantine that
 *      delays their reuse, freed pages poisoned and checked.
 *   3  red zones around blocks and allocation tracking by caller (leak
 *      counts), for the size classes still empty when it is set: set it
 *      right after init for the full effect.
 * Levels 1-3 route every heap call through the locked checking path.
 * A level above 3 is refused (counted, logged), nothing changed.
 */
void rust_memory_set_debug_level(uint32_t level);

/* rust_memory_stress_test - allocate and free iterations times, random
 * sizes from 1 to max_alloc_size (at most 1 TiB) mixed with single pages,
 * every block filled and checked, everything freed, then the integrity
 * check. 0 passed, -1 failed (a mismatch, a leak, corruption) or refused. */
int rust_memory_stress_test(uint32_t iterations, size_t max_alloc_size);

/* rust_memory_benchmark - alloc_count blocks of alloc_size bytes allocated,
 * touched and freed: the microseconds it took by the port's clock (at
 * least 1), 0 on failure (a count or size of 0, no memory, no clock). */
uint64_t rust_memory_benchmark(uint32_t alloc_count, size_t alloc_size);

/* The library's version ("MAJOR.MINOR.PATCH") and RUST_MEMORY_FEATURE_* bits. */
const char *rust_memory_version(void);
uint32_t rust_memory_features(void);

/* --- protection and the heap window --------------------------------------------------- */

/* Make the mapped page at virt_addr (page aligned) read-only, writable or
 * not executable; the other bits stay. 0, or -1 (not mapped, unaligned, a
 * page of the library's own areas): nothing changed. */
int rust_set_page_readonly(uint64_t virt_addr);
int rust_set_page_readwrite(uint64_t virt_addr);
int rust_set_page_no_execute(uint64_t virt_addr);

/* rust_get_page_flags - the page at virt_addr: 0 and the four answers, or
 * -1 with all four false when it is not mapped (or a pointer is NULL:
 * refused, counted). */
int rust_get_page_flags(uint64_t virt_addr, bool *present, bool *writable, bool *user,
                        bool *executable);

/* rust_vmm_allocate - reserve size bytes (rounded up to pages) of the heap
 * window, unmapped, for the caller to map: the first address, 0 on failure.
 * Never a page that is mapped already. There is no call to give it back. */
uint64_t rust_vmm_allocate(uint64_t size);

/* rust_vmm_map_and_allocate - size bytes of the heap window, backed by
 * zeroed pages mapped read/write, no execute; the address in *out_virt_addr.
 * 0, or -1 (size 0, NULL, no memory). */
int rust_vmm_map_and_allocate(uint64_t size, uint64_t *out_virt_addr);

/* rust_vmm_get_heap_usage - bytes of the library's part of the heap window
 * in use (areas and their guard pages), and its size. Both 0 before init or
 * with a NULL pointer. */
void rust_vmm_get_heap_usage(uint64_t *used, uint64_t *total);

/* rust_heap_stats - the heap's bytes allocated and freed (never
 * decreasing), bytes in use now, and the calls that allocated and freed. */
void rust_heap_stats(size_t *total_alloc, size_t *total_freed, size_t *current, size_t *alloc_count,
                     size_t *free_count);

/* --- convenience macros (Boruix's) ------------------------------------------------------- */

#define RUST_KMALLOC(size)               rust_kmalloc(size)
#define RUST_KFREE(ptr)                  rust_kfree(ptr)
#define RUST_ALLOC_PAGE()                rust_alloc_page()
#define RUST_FREE_PAGE(addr)             rust_free_page(addr)
#define RUST_MAP_PAGE(virt, phys, flags) rust_map_page((virt), (phys), (flags))
#define RUST_UNMAP_PAGE(virt)            rust_unmap_page(virt)
#define RUST_VIRT_TO_PHYS(virt)          rust_virt_to_phys(virt)

#ifdef __cplusplus
}
#endif

#endif /* BORUIX_RUST_MEMORY_H */
