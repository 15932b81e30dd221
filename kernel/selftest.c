/*
 * selftest.c - the self-test boot mode (contract: selftest.h).
 *
 * The shared tests (tests/test_*.c) create their own machines
 * (kernel/test_env.c) inside one arena of real RAM carved out of the real
 * instance here, reached through the direct map.
 */
#include <kmm/kmm.h>
#include <kmm/page.h>

#include "boot.h"
#include "console.h"
#include "hwtest.h"
#include "kernel.h"
#include "ktest.h"
#include "selftest.h"
#include "test_env.h"

/* The test arena starts on a 2 MiB boundary (a large-page boundary). */
#define ARENA_ALIGN  (UINT64_C(2) << 20)
/* What the arena leaves to the kernel's own heap, page tables and the
 * hardware checks. */
#define ARENA_SPARE  (UINT64_C(48) << 20)
/* Below this there is no point in an arena: the tests that need memory skip. */
#define ARENA_MIN    (UINT64_C(8) << 20)
#define ARENA_SHRINK 8 /* each failed try asks for 1/8 less */

uintptr_t kernel_arena_base;
uint64_t kernel_arena_size;

/*
 * The test arena: one physically contiguous run from the real instance (the
 * largest it finds, leaving ARENA_SPARE), reached through the direct map.
 * The tests' machines treat it as their own physical memory; the instance
 * knows it only as allocated pages. Returns its physical address and size
 * (0 if none).
 */
static uint64_t carve_arena(uint64_t *size)
{
    struct kmm_page_stats ps;
    kmm_page_stats(kernel_kmm, &ps);
    uint64_t free = ps.free_pages * KMM_PAGE_SIZE;
    uint64_t want = free > ARENA_SPARE ? (free - ARENA_SPARE) & ~(ARENA_ALIGN - 1) : 0;
    while (want >= ARENA_MIN) {
        uint64_t pa = kmm_run_alloc(kernel_kmm, want / KMM_PAGE_SIZE, ARENA_ALIGN, 0, 0);
        if (pa) {
            *size = want;
            return pa;
        }
        want = (want - want / ARENA_SHRINK) & ~(ARENA_ALIGN - 1);
    }
    *size = 0;
    return 0;
}

int selftest_run(const char *filter, const struct kmm_sink *out)
{
    uint64_t size;
    uint64_t base = carve_arena(&size);
    kernel_arena_base = (uintptr_t)phys_to_virt(base);
    kernel_arena_size = size;

    bool vga = console_vga_enable(false); /* the KTAP stream: serial only */
    size_t hw_count;
    const struct ktest_case *hw = hwtest_cases(&hw_count);
    int failed = ktest_run_with(filter, hw, hw_count, out);
    console_vga_enable(vga);

    uint64_t end = base + size;
    kprintf("# kmm kernel: test arena 0x%llx - 0x%llx (%llu MiB)\n", (unsigned long long)base,
            (unsigned long long)end, (unsigned long long)(size >> 20));
    /* Given back so that the shell's instance has its memory again after a
     * `selftest`; the tests' machines are gone by now. */
    if (size)
        kmm_run_free(kernel_kmm, base, size / KMM_PAGE_SIZE);
    kernel_arena_base = 0;
    kernel_arena_size = 0;
    return failed;
}

noreturn void selftest_main(void)
{
    struct kmm_sink sink = {console_sink_write, NULL};
    char filter[64] = "";
    bootinfo_option(&kernel_boot, "test", filter, sizeof(filter));
    int failed = selftest_run(filter, &sink);
    kprintf("# kmm kernel: %d test(s) failed\n", failed);
    kernel_exit(failed ? KERNEL_EXIT_FAIL : KERNEL_EXIT_PASS);
}
