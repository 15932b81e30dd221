/*
 * boruix_usage.c - the usage section ("使用说明") of Boruix's memory manager
 * report, as a program: initialise with the report's map, allocate from the
 * heap, allocate, map, unmap and free a page, then the summary and the
 * integrity check. Only the Boruix headers are used; hosted, the map is
 * backed by a simulated machine (compat/hosted.c), so it runs as it would
 * in the kernel. tools/example-test.sh runs it and checks what it prints.
 */
#include <stdio.h>
#include <string.h>

#include <boruix/memory.h>
#include <boruix/rust_memory.h>

/* Where the page is mapped: the start of Boruix's heap window. */
#define VIRT_ADDR KERNEL_HEAP_START

int main(void)
{
    /* 初始化 (initialisation): at system start-up */
    rust_memory_region_t regions[] = {
        {0x100000, 0x7F00000, RUST_MEMORY_TYPE_AVAILABLE},
    };
    int init = rust_memory_init(regions, 1);
    printf("init: %d\n", init);

    /* 内存分配 (allocation) */
    void *ptr = kmalloc(1024);
    if (ptr) {
        memset(ptr, 0, 1024);
    }
    printf("kmalloc(1024): %s\n", ptr ? "ok" : "NULL");
    kfree(ptr);

    /* 页面管理 (pages) */
    uint64_t virt_addr = VIRT_ADDR;
    uint64_t page = alloc_page();
    printf("alloc_page: %#llx\n", (unsigned long long)page);
    int mapped = map_page(virt_addr, page, PAGE_PRESENT | PAGE_WRITABLE);
    printf("map_page: %d\n", mapped);
    printf("translated: %s\n", get_physical_addr(virt_addr) == page ? "same page" : "OTHER");
    uint64_t unmapped = unmap_page(virt_addr);
    printf("unmap_page: %s\n", unmapped == page ? "same page" : "OTHER");
    free_page(page);

    /* 统计查询 (statistics) */
    rust_memory_summary_t summary;
    int got = rust_memory_summary(&summary);
    printf("summary: %d: %llu MiB total, %llu MiB used, %llu MiB free, heap %zu KiB used, "
           "%zu page tables, %u%% used\n",
           got, (unsigned long long)summary.total_physical_mb,
           (unsigned long long)summary.used_physical_mb,
           (unsigned long long)summary.free_physical_mb, summary.heap_used_kb,
           summary.page_tables_count, summary.usage_percent);

    int result = rust_memory_check();
    printf("check: %d\n", result);
    return init == 0 && ptr && page && mapped == 0 && unmapped == page && got == 0 && result == 0
               ? 0
               : 1;
}
