/*
 * kernel_style.c - Boruix kernel code as it is written: only the Boruix
 * headers, every name of SPEC §8 used once. tools/boruix-headers-test.t
 * compiles it as C99 freestanding against a kernel's own stdint.h, stddef.h
 * and stdbool.h (tests/boruix/include, -nostdinc), and as C++. The layout
 * checks hold the types to Boruix's field order and sizes (x86_64).
 */
#include <boruix/memory.h>
#include <boruix/rust_memory.h>

#define LAYOUT(name, cond) typedef char layout_##name[(cond) ? 1 : -1]

LAYOUT(region, sizeof(rust_memory_region_t) == 24 && offsetof(rust_memory_region_t, length) == 8 &&
                   offsetof(rust_memory_region_t, memory_type) == 16);
LAYOUT(physical, sizeof(rust_physical_memory_stats_t) == 64 &&
                     offsetof(rust_physical_memory_stats_t, total_pages) == 32 &&
                     offsetof(rust_physical_memory_stats_t, usage_percent) == 56);
LAYOUT(virtual, sizeof(rust_virtual_memory_stats_t) == 32 &&
                    offsetof(rust_virtual_memory_stats_t, page_table_memory) == 24);
LAYOUT(heap, sizeof(rust_heap_stats_t) == 48 && offsetof(rust_heap_stats_t, total_freed) == 40);
LAYOUT(tables, sizeof(rust_page_table_stats_t) == 48 &&
                   offsetof(rust_page_table_stats_t, valid_entries) == 40);
LAYOUT(stats, sizeof(rust_memory_stats_t) == 192 &&
                  offsetof(rust_memory_stats_t, virtual_memory) == 64 &&
                  offsetof(rust_memory_stats_t, heap) == 96 &&
                  offsetof(rust_memory_stats_t, page_tables) == 144);
LAYOUT(summary, sizeof(rust_memory_summary_t) == 56 &&
                    offsetof(rust_memory_summary_t, heap_used_kb) == 24 &&
                    offsetof(rust_memory_summary_t, usage_percent) == 48);
LAYOUT(report, sizeof(rust_memory_report_t) == 88 &&
                   offsetof(rust_memory_report_t, leak_count) == 56 &&
                   offsetof(rust_memory_report_t, fragmentation_percent) == 64 &&
                   offsetof(rust_memory_report_t, region_count) == 72 &&
                   offsetof(rust_memory_report_t, allocation_count) == 80);
LAYOUT(constants, RUST_PAGE_NO_EXECUTE == 0x8000000000000000ULL && PAGE_SIZE == 4096 &&
                      (1ULL << PAGE_SHIFT) == PAGE_SIZE && PAGE_SIZE_FLAG == 0x80 &&
                      KERNEL_HEAP_END - KERNEL_HEAP_START == 0x10000000ULL &&
                      RUST_MEMORY_TYPE_BAD == 5 && MEMORY_TYPE_BAD == 5 &&
                      RUST_MEMORY_FEATURE_DEBUG == 8);

void boruix_kernel_main(void);

void boruix_kernel_main(void)
{
    rust_memory_region_t regions[] = {
        {0x1000000, 0x3F000000, RUST_MEMORY_TYPE_AVAILABLE},
    };
    memory_region_t legacy = {0x100000, 0x7F00000, MEMORY_TYPE_AVAILABLE};
    (void)legacy;
    rust_set_hhdm_offset(0xFFFF800000000000ULL);
    (void)rust_get_hhdm_offset();
    if (rust_memory_init(regions, 1) != 0)
        return;
    void *p = kmalloc(1024);
    kfree(p);
    p = RUST_KMALLOC(64);
    RUST_KFREE(p);
    uint64_t page = alloc_page();
    (void)map_page(KERNEL_HEAP_START, page, PAGE_PRESENT | PAGE_WRITABLE);
    (void)get_physical_addr(KERNEL_HEAP_START);
    (void)unmap_page(KERNEL_HEAP_START);
    free_page(page);
    page = RUST_ALLOC_PAGE();
    (void)RUST_MAP_PAGE(KERNEL_HEAP_START, page, RUST_PAGE_KERNEL_RW);
    (void)RUST_VIRT_TO_PHYS(KERNEL_HEAP_START);
    (void)RUST_UNMAP_PAGE(KERNEL_HEAP_START);
    RUST_FREE_PAGE(page);
    rust_free_pages(rust_alloc_pages(3), 3);
    rust_memory_stats_t stats;
    rust_memory_summary_t summary;
    rust_memory_report_t report;
    (void)rust_memory_stats(&stats);
    (void)rust_memory_summary(&summary);
    (void)rust_memory_report(&report);
    (void)rust_memory_check();
    (void)rust_memory_usage_percent();
    (void)rust_heap_usage_percent();
    rust_memory_debug_print();
    rust_memory_set_debug_level(1);
    (void)rust_memory_stress_test(100, 4096);
    (void)rust_memory_benchmark(100, 64);
    (void)rust_memory_version();
    (void)rust_memory_features();
    (void)rust_set_page_readonly(0xFFFFFFFF91000000ULL);
    (void)rust_set_page_readwrite(0xFFFFFFFF91000000ULL);
    (void)rust_set_page_no_execute(0xFFFFFFFF91000000ULL);
    bool present, writable, user, executable;
    (void)rust_get_page_flags(0xFFFFFFFF91000000ULL, &present, &writable, &user, &executable);
    uint64_t va = rust_vmm_allocate(16384), used, total;
    (void)va;
    (void)rust_vmm_map_and_allocate(4096, &va);
    rust_vmm_get_heap_usage(&used, &total);
    size_t a, f, c, ac, fc;
    rust_heap_stats(&a, &f, &c, &ac, &fc);
    (void)(PML4_INDEX(va) + PDP_INDEX(va) + PD_INDEX(va) + PT_INDEX(va) + (va & PAGE_MASK) +
           KERNEL_VIRTUAL_BASE + USER_VIRTUAL_BASE + USER_VIRTUAL_END + PAGE_USER +
           PAGE_WRITETHROUGH + PAGE_CACHE_DISABLE + PAGE_ACCESSED + PAGE_DIRTY + PAGE_GLOBAL +
           PAGE_NO_EXECUTE + RUST_PAGE_KERNEL_RO + RUST_PAGE_USER_RW + RUST_PAGE_USER_RO +
           RUST_MEMORY_TYPE_RESERVED + RUST_MEMORY_TYPE_ACPI_RECLAIMABLE +
           RUST_MEMORY_TYPE_ACPI_NVS + RUST_MEMORY_FEATURE_PAGING + RUST_MEMORY_FEATURE_HEAP +
           RUST_MEMORY_FEATURE_STATS + MEMORY_TYPE_RESERVED + MEMORY_TYPE_ACPI_RECLAIMABLE +
           MEMORY_TYPE_ACPI_NVS);
}
