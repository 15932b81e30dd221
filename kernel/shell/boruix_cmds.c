/*
 * boruix_cmds.c - the Boruix shell's memory commands (contract:
 * boruix_cmds.h): memtest, heaptest, pgtest, vmmtest, memprottest.
 *
 * Each follows the steps of Boruix's command of the same name, through the
 * rust_* calls only, and checks what Boruix's prints and leaves to the eye
 * (a translation that matches, a flag that changed, data intact). Where
 * Boruix's tests leave something behind, ours differ on purpose:
 *   - heaptest's leak check compares the heap's bytes in use with what they
 *     were before the test, not with 0: the instance is the kernel's, whose
 *     own blocks stay live;
 *   - vmmtest's heap-window ranges have no call in the Boruix interface that
 *     gives them back (Boruix's test leaks them); the command returns them
 *     with the native calls (kmm_kva_free, kmm_vfree) as its last step, so
 *     it can run again and the window's usage comes back to where it was.
 * Every command ends with rust_memory_check, which must say 0 (healthy).
 *
 * Memory is written where the test says, through its mapping, when the
 * host's mappings are live (kshell_config.live_mappings: the kernel, the
 * hosted shell); on a test machine, through the direct map at the address
 * the mapping translates to.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <boruix/rust_memory.h>
#include <kmm/fmt.h>
#include <kmm/kmm.h>
#include <kmm/vmalloc.h>

#include "boruix_cmds.h"
#include "shell.h"
#include "world.h"

#define PAGE          UINT64_C(4096)
#define KIB           UINT64_C(1024)
#define MIB           (KIB * KIB)
#define LINE_MAX      200u
/* memprottest's page: 16 MiB into the heap window (0xFFFFFFFF91000000). */
#define PROT_OFFSET   (16 * MIB)
/* memtest's blocks and pages. */
#define MEMTEST_PAGES 4u
#define MEMTEST_RUN   4u
/* heaptest: Boruix's ten 32-byte blocks and its 8 KiB block. */
#define HEAP_BLOCKS   10u
#define HEAP_SMALL    32u
#define HEAP_LARGE    (8 * KIB)
/* vmmtest: Boruix's 16 KiB range, 4 KiB and 64 KiB mapped blocks. */
#define VMM_RANGE     (16 * KIB)
#define VMM_SMALL     (4 * KIB)
#define VMM_LARGE     (64 * KIB)

/* One command's run: its steps and how many failed. */
struct run {
    struct kshell *sh;
    const char *name;
    unsigned steps, failed;
};

__attribute__((format(printf, 2, 3))) static void step(struct run *r, const char *fmt, ...)
{
    char line[LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kshell_printf(r->sh, "[TEST %u] %s\n", ++r->steps, line);
}

/* "[OK] what" or "[FAIL] what"; returns ok. */
__attribute__((format(printf, 3, 4))) static bool verdict(struct run *r, bool ok, const char *fmt,
                                                          ...)
{
    char line[LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kshell_printf(r->sh, "%s %s\n", ok ? "[OK]" : "[FAIL]", line);
    if (!ok)
        r->failed++;
    return ok;
}

/* The last step (rust_memory_check) and the verdict line; the command's status. */
static int finish(struct run *r)
{
    step(r, "rust_memory_check");
    int st = rust_memory_check();
    verdict(r, st == 0, "rust_memory_check: %d (%s)", st,
            st == 0   ? "healthy"
            : st == 1 ? "leaks"
            : st == 2 ? "corruption"
                      : "could not check");
    if (r->failed)
        kshell_printf(r->sh, "%s: FAIL (%u of %u steps failed)\n", r->name, r->failed, r->steps);
    else
        kshell_printf(r->sh, "%s: PASS (%u steps)\n", r->name, r->steps);
    return r->failed ? 1 : 0;
}

/* Whether the Boruix interface works on the shell's instance; says why not. */
static bool start(struct run *r, struct kshell *sh, unsigned argc, char **argv)
{
    *r = (struct run){sh, argv[0], 0, 0};
    if (argc > 1) {
        kshell_printf(sh, "error: %s: takes no arguments\nusage: %s\n", argv[0], argv[0]);
        return false;
    }
    if (kmm_boruix_instance() != sh->cfg.k) {
        kshell_printf(sh,
                      "error: %s: the Boruix interface does not work on this shell's "
                      "instance (the host did not adopt it: kmm_boruix_adopt)\n",
                      argv[0]);
        return false;
    }
    return true;
}

/* Where the bytes at virtual address va are for this host (see the top). */
static volatile uint32_t *words_at(const struct kshell *sh, uint64_t va)
{
    if (sh->cfg.live_mappings)
        return (volatile uint32_t *)(uintptr_t)va;
    uint64_t pa = rust_virt_to_phys(va);
    return pa ? (volatile uint32_t *)(uintptr_t)(rust_get_hhdm_offset() + pa) : NULL;
}

static volatile uint32_t *phys_words(uint64_t pa)
{
    return (volatile uint32_t *)(uintptr_t)(rust_get_hhdm_offset() + pa);
}

/* The word of block `tag` at index i: differs between blocks and along each. */
static uint32_t pattern(uint32_t tag, uint64_t i)
{
    return tag * UINT32_C(0x9e3779b1) ^ (uint32_t)i * UINT32_C(0x85ebca6b);
}

static void fill(volatile uint32_t *p, uint64_t words, uint32_t tag)
{
    for (uint64_t i = 0; i < words; i++)
        p[i] = pattern(tag, i);
}

static bool intact(const volatile uint32_t *p, uint64_t words, uint32_t tag)
{
    for (uint64_t i = 0; i < words; i++)
        if (p[i] != pattern(tag, i))
            return false;
    return true;
}

static bool all_zero(const volatile uint32_t *p, uint64_t words)
{
    for (uint64_t i = 0; i < words; i++)
        if (p[i])
            return false;
    return true;
}

/* --- memtest -------------------------------------------------------------------------------- */

static void show_stats(struct run *r, const char *when, const rust_memory_stats_t *s)
{
    kshell_printf(r->sh,
                  "  %s: physical %llu pages, %llu allocated, %llu free (%u%% used); heap "
                  "%llu bytes allocated of %llu held\n",
                  when, (unsigned long long)s->physical.total_pages,
                  (unsigned long long)s->physical.allocated_pages,
                  (unsigned long long)s->physical.free_pages, (unsigned)s->physical.usage_percent,
                  (unsigned long long)s->heap.allocated, (unsigned long long)s->heap.total_size);
}

static int cmd_memtest(struct kshell *sh, unsigned argc, char **argv)
{
    struct run r;
    if (!start(&r, sh, argc, argv))
        return 1;
    static const size_t sizes[] = {512, 1024, 2048, 8192};
    enum { BLOCKS = sizeof(sizes) / sizeof(sizes[0]) };
    void *blocks[BLOCKS] = {0};
    uint64_t pages[MEMTEST_PAGES] = {0}, run = 0;
    uint64_t held = MEMTEST_PAGES + MEMTEST_RUN, bytes = 0;
    for (unsigned i = 0; i < BLOCKS; i++)
        bytes += sizes[i];
    kshell_printf(sh, "memtest: kernel heap blocks and physical pages through the Boruix "
                      "interface: allocate, write, verify, free, statistics before and after\n");

    step(&r, "statistics before (rust_memory_stats)");
    rust_memory_stats_t before, during, after;
    verdict(&r, rust_memory_stats(&before) == 0, "statistics read");
    show_stats(&r, "before", &before);

    step(&r,
         "allocate heap blocks of 512, 1024, 2048 and 8192 bytes (rust_kmalloc), %u pages "
         "(rust_alloc_page) and a run of %u (rust_alloc_pages)",
         MEMTEST_PAGES, MEMTEST_RUN);
    bool got = true;
    for (unsigned i = 0; i < BLOCKS; i++)
        got = (blocks[i] = rust_kmalloc(sizes[i])) != NULL && got;
    for (unsigned i = 0; i < MEMTEST_PAGES; i++)
        got = (pages[i] = rust_alloc_page()) != 0 && got;
    run = rust_alloc_pages(MEMTEST_RUN);
    got = run != 0 && got;
    if (!verdict(&r, got, "every allocation succeeded")) {
        kshell_printf(sh, "  (out of memory: the rest is skipped)\n");
        goto free_all;
    }
    for (unsigned i = 0; i < BLOCKS; i++)
        kshell_printf(sh, "  block %u: %5llu bytes at %p\n", i, (unsigned long long)sizes[i],
                      blocks[i]);
    for (unsigned i = 0; i < MEMTEST_PAGES; i++)
        kshell_printf(sh, "  page %u: physical 0x%llx\n", i, (unsigned long long)pages[i]);
    kshell_printf(sh, "  run: %u pages at physical 0x%llx\n", MEMTEST_RUN, (unsigned long long)run);

    step(&r, "pages arrive zeroed; write a pattern into every byte of every block and page");
    bool zero = all_zero(phys_words(run), MEMTEST_RUN * PAGE / 4);
    for (unsigned i = 0; i < MEMTEST_PAGES; i++)
        zero = all_zero(phys_words(pages[i]), PAGE / 4) && zero;
    verdict(&r, zero, "the pages read as zeros before the write");
    for (unsigned i = 0; i < BLOCKS; i++)
        fill(blocks[i], sizes[i] / 4, i + 1);
    for (unsigned i = 0; i < MEMTEST_PAGES; i++)
        fill(phys_words(pages[i]), PAGE / 4, 100 + i);
    fill(phys_words(run), MEMTEST_RUN * PAGE / 4, 200);

    step(&r, "verify what was written");
    bool same = intact(phys_words(run), MEMTEST_RUN * PAGE / 4, 200);
    for (unsigned i = 0; i < BLOCKS; i++)
        same = intact(blocks[i], sizes[i] / 4, i + 1) && same;
    for (unsigned i = 0; i < MEMTEST_PAGES; i++)
        same = intact(phys_words(pages[i]), PAGE / 4, 100 + i) && same;
    verdict(&r, same, "every block and page holds its own pattern");

    step(&r, "statistics while allocated");
    verdict(&r, rust_memory_stats(&during) == 0, "statistics read");
    show_stats(&r, "during", &during);
    verdict(&r,
            during.physical.allocated_pages >= before.physical.allocated_pages + held &&
                during.heap.allocated >= before.heap.allocated + bytes,
            "at least %llu more pages and %llu more heap bytes allocated", (unsigned long long)held,
            (unsigned long long)bytes);

free_all:
    step(&r, "free everything (rust_kfree, rust_free_page, rust_free_pages)");
    for (unsigned i = 0; i < BLOCKS; i++)
        rust_kfree(blocks[i]);
    for (unsigned i = 0; i < MEMTEST_PAGES; i++)
        rust_free_page(pages[i]);
    if (run)
        rust_free_pages(run, MEMTEST_RUN);
    verdict(&r, true, "freed");

    step(&r, "statistics after");
    verdict(&r, rust_memory_stats(&after) == 0, "statistics read");
    show_stats(&r, "after", &after);
    if (got)
        verdict(&r,
                after.heap.allocated == before.heap.allocated &&
                    after.physical.allocated_pages + held <= during.physical.allocated_pages,
                "heap bytes allocated back to %llu, the %llu pages back among the free ones",
                (unsigned long long)before.heap.allocated, (unsigned long long)held);
    return finish(&r);
}

/* --- heaptest ------------------------------------------------------------------------------- */

static void show_heap(struct run *r, size_t v[5])
{
    rust_heap_stats(&v[0], &v[1], &v[2], &v[3], &v[4]);
    kshell_printf(r->sh,
                  "  total allocated %zu KiB, total freed %zu KiB, current %zu bytes, %zu "
                  "allocations, %zu frees\n",
                  v[0] / 1024, v[1] / 1024, v[2], v[3], v[4]);
}

static int cmd_heaptest(struct kshell *sh, unsigned argc, char **argv)
{
    struct run r;
    if (!start(&r, sh, argc, argv))
        return 1;
    kshell_printf(sh, "heaptest: the kernel heap through the Boruix interface (rust_kmalloc, "
                      "rust_kfree, rust_heap_stats)\n");
    size_t base[5], mid[5], end[5];
    rust_heap_stats(&base[0], &base[1], &base[2], &base[3], &base[4]);
    uint32_t *p[HEAP_BLOCKS] = {0};
    uint32_t *large = NULL;

    step(&r, "allocate %u blocks of %u bytes, two words written in each", HEAP_BLOCKS, HEAP_SMALL);
    bool got = true;
    for (unsigned i = 0; i < HEAP_BLOCKS; i++) {
        p[i] = rust_kmalloc(HEAP_SMALL);
        if (!p[i]) {
            got = false;
            continue;
        }
        p[i][0] = 0xDEAD0000u + i;
        p[i][1] = 0xBEEF0000u + i;
    }
    if (!verdict(&r, got, "%u blocks allocated", HEAP_BLOCKS))
        goto free_all;

    step(&r, "verify the written data");
    bool ok = true;
    for (unsigned i = 0; i < HEAP_BLOCKS; i++)
        ok = ok && p[i][0] == 0xDEAD0000u + i && p[i][1] == 0xBEEF0000u + i;
    verdict(&r, ok, "every block holds its two words");

    step(&r, "free every other block (0, 2, 4, 6, 8)");
    for (unsigned i = 0; i < HEAP_BLOCKS; i += 2) {
        rust_kfree(p[i]);
        p[i] = NULL;
    }
    verdict(&r, true, "%u blocks freed", HEAP_BLOCKS / 2);

    step(&r, "allocate them again and write new data; the others are untouched");
    for (unsigned i = 0; i < HEAP_BLOCKS; i += 2) {
        p[i] = rust_kmalloc(HEAP_SMALL);
        if (!p[i]) {
            got = false;
            continue;
        }
        p[i][0] = 0xCAFE0000u + i;
    }
    ok = got;
    for (unsigned i = 0; ok && i < HEAP_BLOCKS; i++)
        ok = i % 2 ? p[i][0] == 0xDEAD0000u + i && p[i][1] == 0xBEEF0000u + i
                   : p[i][0] == 0xCAFE0000u + i;
    if (!verdict(&r, ok, "reallocated; the odd blocks still hold their words"))
        goto free_all;

    step(&r, "allocate an %llu-byte block, fill and verify its %llu words",
         (unsigned long long)HEAP_LARGE, (unsigned long long)(HEAP_LARGE / 4));
    large = rust_kmalloc(HEAP_LARGE);
    if (!verdict(&r, large != NULL, "large block at %p", (void *)large))
        goto free_all;
    for (uint32_t i = 0; i < HEAP_LARGE / 4; i++)
        large[i] = 0x12340000u + i;
    ok = true;
    for (uint32_t i = 0; ok && i < HEAP_LARGE / 4; i++)
        ok = large[i] == 0x12340000u + i;
    verdict(&r, ok, "large block verified");

    step(&r, "heap statistics (rust_heap_stats)");
    show_heap(&r, mid);
    size_t want_bytes = (size_t)HEAP_BLOCKS * HEAP_SMALL + HEAP_LARGE;
    verdict(&r,
            mid[2] >= base[2] + want_bytes && mid[3] - base[3] == HEAP_BLOCKS * 3 / 2 + 1 &&
                mid[4] - base[4] == HEAP_BLOCKS / 2,
            "current up by at least %zu bytes, %u allocations and %u frees since the start",
            want_bytes, HEAP_BLOCKS * 3 / 2 + 1, HEAP_BLOCKS / 2);

free_all:
    step(&r, "free every allocation");
    for (unsigned i = 0; i < HEAP_BLOCKS; i++)
        rust_kfree(p[i]);
    rust_kfree(large);
    verdict(&r, true, "freed");

    step(&r, "final statistics: the leak check");
    show_heap(&r, end);
    verdict(&r, end[2] == base[2] && end[3] - base[3] == end[4] - base[4],
            "no memory leaked: current back to %zu bytes (before the test), as many frees as "
            "allocations (%zu)",
            base[2], end[3] - base[3]);
    return finish(&r);
}

/* --- pgtest --------------------------------------------------------------------------------- */

static int cmd_pgtest(struct kshell *sh, unsigned argc, char **argv)
{
    struct run r;
    if (!start(&r, sh, argc, argv))
        return 1;
    uint64_t va, size;
    kmm_boruix_heap_window(&va, &size);
    kshell_printf(sh,
                  "pgtest: a page mapped at the heap window's first address 0x%llx through the "
                  "Boruix interface\n",
                  (unsigned long long)va);

    step(&r, "allocate a physical page (rust_alloc_page)");
    uint64_t pa = rust_alloc_page();
    if (!verdict(&r, pa != 0, "physical page at 0x%llx", (unsigned long long)pa))
        return finish(&r);

    step(&r, "map 0x%llx -> 0x%llx (rust_map_page, PRESENT | WRITABLE)", (unsigned long long)va,
         (unsigned long long)pa);
    bool was_free = rust_virt_to_phys(va) == 0;
    int rc = rust_map_page(va, pa, RUST_PAGE_PRESENT | RUST_PAGE_WRITABLE);
    if (!verdict(&r, was_free && rc == 0, "mapped (%s, rust_map_page %d)",
                 was_free ? "the address was free" : "the address WAS ALREADY MAPPED", rc)) {
        rust_free_page(pa);
        return finish(&r);
    }

    step(&r, "translate the virtual address (rust_virt_to_phys)");
    uint64_t tr = rust_virt_to_phys(va);
    verdict(&r, tr == pa, "0x%llx translates to 0x%llx, the page mapped", (unsigned long long)va,
            (unsigned long long)tr);

    step(&r, "write 0xDEADBEEF through the mapping, read it back, and through the direct map");
    volatile uint32_t *w = words_at(sh, va);
    uint32_t got = 0, direct = 0;
    if (w) {
        *w = 0xDEADBEEFu;
        got = *w;
        direct = *phys_words(pa);
    }
    verdict(&r, got == 0xDEADBEEFu && direct == 0xDEADBEEFu,
            "read 0x%08x through the mapping, 0x%08x from the physical page", got, direct);

    step(&r, "unmap the page (rust_unmap_page)");
    uint64_t back = rust_unmap_page(va);
    verdict(&r, back == pa, "unmapped; it returned physical 0x%llx", (unsigned long long)back);

    step(&r, "the address is unmapped now (rust_virt_to_phys)");
    tr = rust_virt_to_phys(va);
    verdict(&r, tr == 0, "translation returns 0x%llx", (unsigned long long)tr);

    step(&r, "free the physical page (rust_free_page)");
    rust_free_page(pa);
    verdict(&r, true, "freed");
    return finish(&r);
}

/* --- vmmtest -------------------------------------------------------------------------------- */

static void show_usage(struct run *r, uint64_t used, uint64_t total)
{
    kshell_printf(r->sh, "  total %llu MiB, used %llu KiB, available %llu MiB\n",
                  (unsigned long long)(total / MIB), (unsigned long long)(used / KIB),
                  (unsigned long long)((total - used) / MIB));
}

static int cmd_vmmtest(struct kshell *sh, unsigned argc, char **argv)
{
    struct run r;
    if (!start(&r, sh, argc, argv))
        return 1;
    uint64_t hbase, hsize;
    kmm_boruix_heap_window(&hbase, &hsize);
    uint64_t hend = hbase + hsize;
    kshell_printf(sh, "vmmtest: the kernel heap window through the Boruix interface "
                      "(rust_vmm_get_heap_usage, rust_vmm_allocate, rust_vmm_map_and_allocate)\n");
    uint64_t range = 0, small = 0, large = 0;

    step(&r, "heap window usage (rust_vmm_get_heap_usage)");
    uint64_t used0 = 0, total = 0, used = 0;
    rust_vmm_get_heap_usage(&used0, &total);
    kshell_printf(sh,
                  "  heap window 0x%llx - 0x%llx; the library's areas past its first %llu MiB\n",
                  (unsigned long long)hbase, (unsigned long long)hend,
                  (unsigned long long)(KMM_BORUIX_FIXED_PART / MIB));
    show_usage(&r, used0, total);
    verdict(&r, total > 0 && used0 <= total, "usage read");

    step(&r, "allocate %llu KiB of window, not mapped (rust_vmm_allocate)",
         (unsigned long long)(VMM_RANGE / KIB));
    range = rust_vmm_allocate(VMM_RANGE);
    bool inside = range >= hbase + KMM_BORUIX_FIXED_PART && range + VMM_RANGE <= hbase + hsize;
    verdict(&r, range && inside && rust_virt_to_phys(range) == 0,
            "range at 0x%llx: in the window past the fixed part, nothing mapped",
            (unsigned long long)range);

    step(&r, "allocate and map %llu KiB (rust_vmm_map_and_allocate)",
         (unsigned long long)(VMM_SMALL / KIB));
    int rc = rust_vmm_map_and_allocate(VMM_SMALL, &small);
    if (!verdict(&r, rc == 0 && small != 0, "mapped at 0x%llx", (unsigned long long)small))
        goto give_back;

    step(&r, "write four words to it and verify them");
    static const uint32_t words[] = {0x12345678u, 0xABCDEF00u, 0xDEADBEEFu, 0xCAFEBABEu};
    volatile uint32_t *w = words_at(sh, small);
    bool ok = w != NULL;
    for (unsigned i = 0; ok && i < 4; i++)
        w[i] = words[i];
    for (unsigned i = 0; ok && i < 4; i++) {
        kshell_printf(sh, "  [%u]: 0x%08x\n", i, w[i]);
        ok = w[i] == words[i];
    }
    verdict(&r, ok, "all four words read back");

    step(&r, "allocate and map a larger block of %llu KiB; fill every page and verify",
         (unsigned long long)(VMM_LARGE / KIB));
    rc = rust_vmm_map_and_allocate(VMM_LARGE, &large);
    ok = rc == 0 && large != 0;
    for (uint64_t off = 0; ok && off < VMM_LARGE; off += PAGE) {
        volatile uint32_t *pg = words_at(sh, large + off);
        ok = pg && all_zero(pg, PAGE / 4);
        if (ok)
            fill(pg, PAGE / 4, (uint32_t)(off / PAGE) + 1);
    }
    for (uint64_t off = 0; ok && off < VMM_LARGE; off += PAGE)
        ok = intact(words_at(sh, large + off), PAGE / 4, (uint32_t)(off / PAGE) + 1);
    verdict(&r, ok, "large block at 0x%llx: zeroed when it came, every page holds its pattern",
            (unsigned long long)large);

    step(&r, "heap window usage again");
    rust_vmm_get_heap_usage(&used, &total);
    show_usage(&r, used, total);
    uint64_t grew = VMM_RANGE + VMM_SMALL + VMM_LARGE;
    verdict(&r, used >= used0 + grew, "used grew by %llu KiB (at least %llu: the three blocks)",
            (unsigned long long)((used - used0) / KIB), (unsigned long long)(grew / KIB));

give_back:
    /* Not Boruix's: its interface cannot give window ranges back. */
    step(&r, "give the window back (kmm_vfree, kmm_kva_free: no Boruix call does)");
    struct kmm *k = sh->cfg.k;
    ok = (!large || kmm_vfree(k, (const void *)(uintptr_t)large) == KMM_OK) &&
         (!small || kmm_vfree(k, (const void *)(uintptr_t)small) == KMM_OK) &&
         (!range || kmm_kva_free(k, range) == KMM_OK);
    rust_vmm_get_heap_usage(&used, &total);
    verdict(&r, ok && used == used0, "given back; used %llu KiB as before",
            (unsigned long long)(used / KIB));
    return finish(&r);
}

/* --- memprottest ---------------------------------------------------------------------------- */

/* Reads the flags and checks them against what is wanted (-1: either). */
static bool flags_are(struct run *r, uint64_t va, int writable, int executable)
{
    bool p = false, w = false, u = false, x = false;
    int rc = rust_get_page_flags(va, &p, &w, &u, &x);
    kshell_printf(r->sh, "  present %s, writable %s, user %s, executable %s\n", p ? "yes" : "no",
                  w ? "yes" : "no", u ? "yes" : "no", x ? "yes" : "no");
    return rc == 0 && p && !u && (writable < 0 || w == (writable != 0)) &&
           (executable < 0 || x == (executable != 0));
}

static int cmd_memprottest(struct kshell *sh, unsigned argc, char **argv)
{
    struct run r;
    if (!start(&r, sh, argc, argv))
        return 1;
    uint64_t base, size;
    kmm_boruix_heap_window(&base, &size);
    uint64_t va = base + PROT_OFFSET;
    kshell_printf(sh,
                  "memprottest: page protection at 0x%llx through the Boruix interface "
                  "(rust_set_page_readonly, _readwrite, _no_execute, rust_get_page_flags)\n",
                  (unsigned long long)va);

    step(&r, "allocate a page and map it read-write (rust_map_page, WRITABLE as Boruix's)");
    uint64_t pa = rust_alloc_page();
    bool was_free = rust_virt_to_phys(va) == 0;
    int rc = pa && was_free ? rust_map_page(va, pa, RUST_PAGE_WRITABLE) : -1;
    if (!verdict(&r, pa && was_free && rc == 0, "page 0x%llx mapped at 0x%llx%s",
                 (unsigned long long)pa, (unsigned long long)va,
                 was_free ? "" : " (the address WAS ALREADY MAPPED)")) {
        rust_free_page(pa);
        return finish(&r);
    }
    volatile uint32_t *w = words_at(sh, va);

    step(&r, "write two words (read-write)");
    w[0] = 0x12345678u;
    w[1] = 0xABCDEF00u;
    verdict(&r, w[0] == 0x12345678u && w[1] == 0xABCDEF00u, "data[0] 0x%08x, data[1] 0x%08x", w[0],
            w[1]);

    step(&r, "the page's flags (rust_get_page_flags)");
    verdict(&r, flags_are(&r, va, 1, 1), "present, writable, kernel-only, executable");

    step(&r, "make it read-only (rust_set_page_readonly)");
    rc = rust_set_page_readonly(va);
    verdict(&r, rc == 0 && flags_are(&r, va, 0, 1), "read-only: writable no");

    step(&r, "read it while read-only");
    verdict(&r, w[0] == 0x12345678u && w[1] == 0xABCDEF00u, "data intact: 0x%08x 0x%08x", w[0],
            w[1]);

    step(&r, "make it read-write again (rust_set_page_readwrite)");
    rc = rust_set_page_readwrite(va);
    verdict(&r, rc == 0 && flags_are(&r, va, 1, 1), "read-write: writable yes");

    step(&r, "write new data after restoring read-write");
    w[0] = 0xDEADBEEFu;
    w[1] = 0xCAFEBABEu;
    verdict(&r, w[0] == 0xDEADBEEFu && w[1] == 0xCAFEBABEu, "data[0] 0x%08x, data[1] 0x%08x", w[0],
            w[1]);

    step(&r, "make it no-execute (rust_set_page_no_execute)");
    rc = rust_set_page_no_execute(va);
    verdict(&r, rc == 0 && flags_are(&r, va, 1, 0), "no-execute: executable no, still writable");

    step(&r, "the final state, through the physical page too");
    verdict(&r, flags_are(&r, va, 1, 0) && phys_words(pa)[0] == 0xDEADBEEFu,
            "present, writable, kernel-only, no-execute; the page holds the last write");

    step(&r, "unmap and free (rust_unmap_page, rust_free_page)");
    uint64_t back = rust_unmap_page(va);
    bool p = true, wr, u, x;
    rc = rust_get_page_flags(va, &p, &wr, &u, &x);
    rust_free_page(pa);
    verdict(&r, back == pa && rc == -1 && !p, "unmapped (it returned 0x%llx), no longer present",
            (unsigned long long)back);
    return finish(&r);
}

static const struct kshell_cmd boruix_cmds[] = {
    {"memtest", "", "Boruix: heap blocks and pages allocated, written, verified, freed; stats",
     cmd_memtest},
    {"heaptest", "", "Boruix: small blocks, every other freed and reallocated, 8 KiB, leak check",
     cmd_heaptest},
    {"pgtest", "", "Boruix: a page mapped at the heap window's start, translated, unmapped",
     cmd_pgtest},
    {"vmmtest", "", "Boruix: heap window usage, blocks allocated and mapped, patterns verified",
     cmd_vmmtest},
    {"memprottest", "", "Boruix: a page made read-only, read-write, no-execute; flags checked",
     cmd_memprottest},
};

const struct kshell_cmd *kshell_boruix_commands(size_t *count)
{
    *count = sizeof(boruix_cmds) / sizeof(boruix_cmds[0]);
    return boruix_cmds;
}
