/*
 * commands.c - the shell's built-in commands (shell.h): each reads the
 * library's statistics or report sections and says what it shows, with its
 * units, in its first line.
 *
 * Issue 13 adds the Boruix shell's memory commands (memtest, heaptest,
 * pgtest, vmmtest, memprottest): into `builtin` below, in the block marked
 * for them, or through kshell_config.extra.
 */
#include "shell.h"
#include "shell_util.h"

#include "mmbench.h"

#include <kmm/check.h>
#include <kmm/dump.h>
#include <kmm/events.h>
#include <kmm/heap.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/port.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define KIB(pages) ((unsigned long long)((pages) << KMM_PAGE_SHIFT >> 10))

static void term_write(void *ctx, const char *text, size_t len)
{
    struct kshell *sh = ctx;
    sh->cfg.io.write(sh->cfg.io.ctx, text, len);
}

/* A sink that writes to the shell's terminal (reports, leak reports). */
static struct kmm_sink term_sink(struct kshell *sh)
{
    return (struct kmm_sink){term_write, sh};
}

/* "usage: name args" for a command given arguments it does not take. */
static int usage(struct kshell *sh, const char *name, const char *args, const char *what)
{
    kshell_printf(sh, "error: %s: %s\nusage: %s %s\n", name, what, name, args);
    return 1;
}

#define NO_ARGS(sh, argc, argv)                                                                    \
    do {                                                                                           \
        if ((argc) > 1)                                                                            \
            return usage((sh), (argv)[0], "", "takes no arguments");                               \
    } while (0)

static int section(struct kshell *sh, unsigned s)
{
    struct kmm_sink out = term_sink(sh);
    return kmm_report_section(sh->cfg.k, s, &out) == KMM_OK ? 0 : 1;
}

/* --- help ------------------------------------------------------------------------------ */

static int cmd_help(struct kshell *sh, unsigned argc, char **argv)
{
    size_t n;
    const struct kshell_cmd *b = kshell_builtin(&n);
    if (argc > 2)
        return usage(sh, "help", "[command]", "too many arguments");
    for (int pass = 0; pass < 2; pass++) {
        const struct kshell_cmd *t = pass ? sh->cfg.extra : b;
        size_t count = pass ? sh->cfg.extra_count : n;
        for (size_t i = 0; i < count; i++) {
            if (argc == 2 && !str_eq(t[i].name, argv[1]))
                continue;
            if (argc == 2) {
                kshell_printf(sh, "%s %s\n  %s\n", t[i].name, t[i].args, t[i].help);
                return 0;
            }
            if (!i && !pass)
                kshell_printf(sh, "Commands (help <command> for one; Tab completes a name; "
                                  "Up/Down recall earlier lines):\n");
            kshell_printf(sh, "  %-12s %-34s %s\n", t[i].name, t[i].args, t[i].help);
        }
    }
    if (argc == 2) {
        kshell_printf(sh, "error: help: no command '%s'\n", argv[1]);
        return 1;
    }
    return 0;
}

/* --- memory figures --------------------------------------------------------------------- */

static int cmd_meminfo(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    struct kmm *k = sh->cfg.k;
    struct kmm_page_stats ps;
    struct kmm_heap_stats hs;
    struct kmm_vmalloc_stats vs;
    struct kmm_vm_stats ks;
    kmm_page_stats(k, &ps);
    kmm_heap_stats(k, &hs);
    kmm_vmalloc_stats(k, &vs);
    kmm_vm_stats(kmm_kernel_aspace(k), &ks);
    uint64_t pcp = 0;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        pcp += ps.zones[z].pcp_pages;
    kshell_printf(sh, "Memory, as /proc/meminfo (kB = 1024 bytes; pages are 4 KiB)\n");
    kshell_printf(sh, "MemTotal:       %12llu kB  pages the allocator manages\n",
                  KIB(ps.managed_pages));
    kshell_printf(sh, "MemFree:        %12llu kB  free pages, CPU caches included\n",
                  KIB(ps.free_pages));
    kshell_printf(sh, "MemUsed:        %12llu kB  allocated pages\n", KIB(ps.allocated_pages));
    kshell_printf(sh, "PerCPUCached:   %12llu kB  free pages in the CPUs' caches\n", KIB(pcp));
    kshell_printf(sh, "Deferred:       %12llu kB  usable, descriptors not yet written\n",
                  KIB(ps.deferred_pages));
    kshell_printf(sh, "KmmMetadata:    %12llu kB  the instance and the frame database\n",
                  KIB(ps.metadata_pages));
    kshell_printf(sh, "HeapHeld:       %12llu kB  the heap's slabs and large blocks\n",
                  (unsigned long long)(hs.bytes_held >> 10));
    kshell_printf(sh, "HeapUsed:       %12llu kB  in allocated heap blocks\n",
                  (unsigned long long)(hs.bytes_used >> 10));
    kshell_printf(sh, "VmallocTotal:   %12llu kB  the kernel virtual area window\n",
                  (unsigned long long)(vs.window_size >> 10));
    kshell_printf(sh, "VmallocUsed:    %12llu kB  pages vmalloc areas own\n",
                  KIB(vs.vmalloc_pages));
    kshell_printf(sh, "PageTables:     %12llu kB  the kernel space's page tables\n",
                  (unsigned long long)(ks.table_bytes >> 10));
    kshell_printf(sh, "FailedAllocs:   %12llu     page allocations that found no memory\n",
                  (unsigned long long)ps.failed_allocs);
    return 0;
}

static int cmd_buddyinfo(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    kshell_printf(sh, "Free blocks of 2^order pages per zone; unusbl: the unusable free space "
                      "index per order (0 = every free page usable for that order, 1 = none)\n");
    return section(sh, KMM_REPORT_BUDDYINFO);
}

static int cmd_zoneinfo(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    static const char *const range[KMM_ZONE_COUNT] = {"0-16M", "16M-4G", "4G-"};
    struct kmm_page_stats ps;
    kmm_page_stats(sh->cfg.k, &ps);
    kshell_printf(sh, "Zones (figures in pages of 4 KiB; calls since boot)\n");
    kshell_printf(sh, "%-7s %-7s %10s %10s %8s %10s %12s %12s\n", "zone", "range", "managed",
                  "free", "pcp", "deferred", "alloc_calls", "free_calls");
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        const struct kmm_zone_stats *s = &ps.zones[z];
        kshell_printf(sh, "%-7s %-7s %10llu %10llu %8llu %10llu %12llu %12llu\n", kmm_zone_name(z),
                      range[z], (unsigned long long)s->managed_pages,
                      (unsigned long long)s->free_pages, (unsigned long long)s->pcp_pages,
                      (unsigned long long)s->deferred_pages, (unsigned long long)s->alloc_calls,
                      (unsigned long long)s->free_calls);
    }
    return 0;
}

static int cmd_slabinfo(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    kshell_printf(sh, "The heap, then its caches as /proc/slabinfo (objects; objsize in bytes; "
                      "pages per slab; cpu: free objects in CPU stacks and the depot; lent: "
                      "objects lent to smaller classes' requests)\n");
    return section(sh, KMM_REPORT_HEAP);
}

static int cmd_vmallocinfo(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    kshell_printf(sh, "Kernel virtual areas, as /proc/vmallocinfo (start-end, bytes with the "
                      "guard page, kind, pages, caller)\n");
    return section(sh, KMM_REPORT_VMALLOC);
}

static const char *cache_name(unsigned cache)
{
    switch (cache) {
    case KMM_CACHE_WT:
        return "WT";
    case KMM_CACHE_UC:
        return "UC";
    case KMM_CACHE_WC:
        return "WC";
    default:
        return "WB";
    }
}

static int cmd_pagetables(struct kshell *sh, unsigned argc, char **argv)
{
    if (argc == 1) {
        kshell_printf(sh, "Page tables: leaves mapped by size, table pages per level\n");
        return section(sh, KMM_REPORT_PAGETABLES);
    }
    uint64_t va;
    if (argc > 2 || !parse_u64(argv[1], &va))
        return usage(sh, "pagetables", "[virtual-address]", "expected one address (0x...)");
    struct kmm_vm_translation tr;
    int err = kmm_vm_translate(kmm_kernel_aspace(sh->cfg.k), va, &tr);
    if (err == KMM_ENOENT) {
        /* No frame: nothing there, or a demand-zero page not touched yet. */
        struct kmm_vm_run run;
        uint64_t page = va & ~(KMM_PAGE_4K - 1);
        bool demand =
            kmm_vm_query(kmm_kernel_aspace(sh->cfg.k), page, page + KMM_PAGE_4K, &run) == KMM_OK &&
            run.demand;
        kshell_printf(sh, "0x%016llx: %s\n", (unsigned long long)va,
                      demand
                          ? "a demand-zero page of the kernel space, no frame until first touched"
                          : "not mapped in the kernel space");
        return 0;
    }
    if (err) {
        kshell_printf(sh, "error: pagetables: 0x%llx is not a canonical address (%s)\n",
                      (unsigned long long)va, kmm_strerror(err));
        return 1;
    }
    kshell_printf(sh, "0x%016llx -> physical 0x%llx, %s page, %c%c%c%s%s, %s%s%s\n",
                  (unsigned long long)va, (unsigned long long)tr.pa,
                  tr.page_size == KMM_PAGE_1G   ? "1 GiB"
                  : tr.page_size == KMM_PAGE_2M ? "2 MiB"
                                                : "4 KiB",
                  'r', (tr.prot & KMM_PROT_WRITE) ? 'w' : '-',
                  (tr.prot & KMM_PROT_EXEC) ? 'x' : '-', (tr.prot & KMM_PROT_USER) ? " user" : "",
                  (tr.prot & KMM_PROT_GLOBAL) ? " global" : "", cache_name(tr.cache),
                  tr.owned ? ", owns its frame" : "", tr.cow ? ", copy-on-write" : "");
    return 0;
}

static int cmd_report(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    struct kmm_sink out = term_sink(sh);
    kmm_report(sh->cfg.k, &out);
    return 0;
}

/* The machine-readable dump (kmm/dump.h) between marker lines, so that
 * tools/mempicture.py finds it in a saved serial log (docs/pictures.md). */
static int cmd_dump(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    struct kmm_sink out = term_sink(sh);
    kshell_printf(sh, "--- kmm dump begin ---\n");
    int err = kmm_dump_json(sh->cfg.k, &out);
    kshell_printf(sh, "--- kmm dump end ---\n");
    if (err != KMM_OK)
        kshell_printf(sh, "error: dump: %s\n", kmm_strerror(err));
    return err == KMM_OK ? 0 : 1;
}

static int cmd_misuse(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    kshell_printf(sh, "Calls the library refused as caller mistakes, by layer and class\n");
    return section(sh, KMM_REPORT_MISUSE);
}

/* --- integrity and debugging ------------------------------------------------------------ */

/* Runs kmm_check and prints one line; returns its status. */
static int check_line(struct kshell *sh, const char *who)
{
    struct kmm_check_result r;
    int st = kmm_check(sh->cfg.k, &r);
    if (st == KMM_CHECK_OK)
        kshell_printf(sh, "%s: kmm_check ok (%llu frame descriptors and %llu free blocks walked)\n",
                      who, (unsigned long long)r.frames_walked,
                      (unsigned long long)r.blocks_walked);
    else
        kshell_printf(sh, "%s: kmm_check %s: %lu problems; first: %s\n", who,
                      st == KMM_CHECK_LEAK ? "LEAK" : "CORRUPT", r.problems, r.first);
    return st;
}

static int cmd_check(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    return check_line(sh, "check") == KMM_CHECK_OK ? 0 : 1;
}

static int cmd_leaks(struct kshell *sh, unsigned argc, char **argv)
{
    struct kmm *k = sh->cfg.k;
    if (argc > 2)
        return usage(sh, "leaks", "[on|off|mark]", "too many arguments");
    if (argc == 2 && (str_eq(argv[1], "on") || str_eq(argv[1], "off"))) {
        struct kmm_heap_debug_stats ds;
        kmm_heap_debug_stats(k, &ds);
        unsigned flags = str_eq(argv[1], "on") ? ds.flags | KMM_HEAP_DEBUG_TRACK
                                               : ds.flags & ~KMM_HEAP_DEBUG_TRACK;
        int kept = kmm_heap_debug(k, flags);
        if (kept < 0) {
            kshell_printf(sh, "error: leaks: kmm_heap_debug: %s\n", kmm_strerror(kept));
            return 1;
        }
        kshell_printf(sh,
                      "allocation tracking %s for every cache (%d caches holding objects "
                      "keep their layout until emptied)\n",
                      argv[1], kept);
        return 0;
    }
    if (argc == 2 && str_eq(argv[1], "mark")) {
        sh->leak_mark = kmm_heap_mark(k);
        kshell_printf(sh,
                      "mark: generation %llu; `leaks` now lists what is allocated from "
                      "here on and still live\n",
                      (unsigned long long)sh->leak_mark);
        return 0;
    }
    if (argc == 2)
        return usage(sh, "leaks", "[on|off|mark]", "unknown argument");
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    kshell_printf(sh,
                  "Live tracked heap objects allocated since %s, by call site "
                  "(tracking %s; %llu tracked objects live)\n",
                  sh->leak_mark ? "the mark" : "boot",
                  (ds.flags & KMM_HEAP_DEBUG_TRACK) ? "on" : "off: `leaks on` switches it on",
                  (unsigned long long)ds.tracked);
    struct kmm_sink out = term_sink(sh);
    kmm_heap_leaks(k, sh->leak_mark, &out);
    return 0;
}

/* events [on|off]: the ring of recent events (kmm/events.h), page and heap
 * sources switched together. */
static int cmd_events(struct kshell *sh, unsigned argc, char **argv)
{
    struct kmm *k = sh->cfg.k;
    if (argc > 2)
        return usage(sh, "events", "[on|off]", "too many arguments");
    if (argc == 2 && (str_eq(argv[1], "on") || str_eq(argv[1], "off"))) {
        int was = kmm_events_switch(k, str_eq(argv[1], "on") ? KMM_EVENTS_VALID : 0);
        if (was < 0) {
            kshell_printf(sh, "error: events: kmm_events_switch: %s\n", kmm_strerror(was));
            return 1;
        }
        kshell_printf(sh, "events %s: page allocator and heap\n", argv[1]);
        return 0;
    }
    if (argc == 2)
        return usage(sh, "events", "[on|off]", "unknown argument");
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    kshell_printf(sh,
                  "Heap debugging: modes 0x%x (heap-wide), %u caches debugged, %llu events "
                  "recorded since boot (kept: the last %u)\n",
                  ds.flags, ds.debug_caches, (unsigned long long)ds.events, KMM_HEAP_EVENTS);
    int err = section(sh, KMM_REPORT_EVENTS);
    struct kmm_events_stats es;
    kmm_events_stats(k, &es);
    if (!es.recorded)
        kshell_printf(sh, "  (none yet: `events on` records the page allocator's and the "
                          "heap's)\n");
    return err;
}

static int cmd_selftest(struct kshell *sh, unsigned argc, char **argv)
{
    if (argc > 2)
        return usage(sh, "selftest", "[filter]", "too many arguments");
    if (!sh->cfg.selftest) {
        kshell_printf(sh, "error: selftest: this host has no test suite to run\n");
        return 1;
    }
    struct kmm_sink out = term_sink(sh);
    int failed = sh->cfg.selftest(sh->cfg.host, argc == 2 ? argv[1] : NULL, &out);
    kshell_printf(sh, "selftest: %s (%d failed)\n", failed ? "FAIL" : "PASS", failed);
    return failed ? 1 : 0;
}

/* --- stress ----------------------------------------------------------------------------- */

#define STRESS_HEAP_SLOTS  256u
#define STRESS_PAGE_SLOTS  48u
#define STRESS_VM_SLOTS    8u
#define STRESS_OPS_DEFAULT 20000u
#define STRESS_OPS_MAX     10000000u
#define STRESS_HEAP_MAX    16384u /* bytes: slab classes and whole-page blocks */
#define STRESS_PAGE_ORDER  4u     /* page blocks of orders 0..4 */
#define STRESS_VM_PAGES    16u    /* vmalloc areas of 1..16 pages */

struct stress_slot {
    void *p;      /* heap block or vmalloc area; NULL: empty */
    uint64_t pa;  /* page block; 0: empty */
    size_t bytes; /* its size (a page block: 4096 << order) */
    uint32_t tag; /* the pattern's seed */
};

struct stress {
    struct kshell *sh;
    struct kmm *k;
    uint64_t rng;
    struct stress_slot heap[STRESS_HEAP_SLOTS], page[STRESS_PAGE_SLOTS], vm[STRESS_VM_SLOTS];
    uint64_t ops[8], failed, verified, mismatches;
};

enum { OP_MALLOC, OP_FREE, OP_REALLOC, OP_PAGE_ALLOC, OP_PAGE_FREE, OP_VMALLOC, OP_VFREE };

static uint64_t stress_rand(struct stress *s)
{
    uint64_t z = (s->rng += UINT64_C(0x9e3779b97f4a7c15)); /* splitmix64 */
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint8_t pattern(uint32_t tag, size_t off)
{
    uint32_t v = tag * 0x9e3779b1u + (uint32_t)off * 0x85ebca6bu;
    return (uint8_t)(v ^ (v >> 13) ^ (uint32_t)(off >> 8));
}

/* Where byte off of the slot's memory is: a heap block (at most
 * KMM_HEAP_PAGES_MAX, so in the direct map) at its address, a page block
 * through the direct map, a vmalloc area through the kernel space's
 * translation, page by page (a test machine's mappings are not live in the
 * kernel). NULL if a vmalloc'd page is not mapped (counted as a mismatch). */
static uint8_t *stress_at(struct stress *s, const struct stress_slot *sl, bool vm, size_t off)
{
    uintptr_t dm = kmm_port_direct_map(kmm_port_of(s->k));
    if (sl->pa)
        return (uint8_t *)(dm + (uintptr_t)sl->pa + off);
    if (!vm)
        return (uint8_t *)sl->p + off;
    struct kmm_vm_translation tr;
    if (kmm_vm_translate(kmm_kernel_aspace(s->k), (uint64_t)(uintptr_t)sl->p + off, &tr))
        return NULL;
    return (uint8_t *)(dm + (uintptr_t)tr.pa);
}

/* Bytes [from, to) of the slot's memory that are contiguous at stress_at:
 * everything for heap and page blocks, up to a page end in a vmalloc area. */
static size_t stress_run(bool vm, size_t off, size_t to)
{
    if (!vm)
        return to - off;
    uint64_t page_end = ((uint64_t)off | (KMM_PAGE_SIZE - 1)) + 1;
    return page_end < to ? (size_t)(page_end - off) : to - off;
}

static void stress_fill(struct stress *s, struct stress_slot *sl, bool vm, size_t from)
{
    for (size_t off = from; off < sl->bytes;) {
        size_t run = stress_run(vm, off, sl->bytes);
        uint8_t *p = stress_at(s, sl, vm, off);
        if (!p) {
            s->mismatches++;
            return;
        }
        for (size_t i = 0; i < run; i++)
            p[i] = pattern(sl->tag, off + i);
        off += run;
    }
}

/* Checks the slot's first n bytes against its pattern. */
static void stress_verify(struct stress *s, const struct stress_slot *sl, bool vm, size_t n)
{
    for (size_t off = 0; off < n;) {
        size_t run = stress_run(vm, off, n);
        const uint8_t *p = stress_at(s, sl, vm, off);
        if (!p) {
            s->mismatches++;
            return;
        }
        for (size_t i = 0; i < run; i++)
            if (p[i] != pattern(sl->tag, off + i)) {
                if (!s->mismatches)
                    kshell_printf(s->sh,
                                  "stress: byte %zu of a %zu-byte block is 0x%02x, "
                                  "expected 0x%02x\n",
                                  off + i, sl->bytes, p[i], pattern(sl->tag, off + i));
                s->mismatches++;
                return;
            }
        s->verified += run;
        off += run;
    }
}

/* A size of 1 .. STRESS_HEAP_MAX bytes, log-uniform by octave (most
 * blocks small, some of whole pages). */
static size_t stress_size(struct stress *s)
{
    uint64_t u = stress_rand(s);
    size_t base = (size_t)1 << (u % 14); /* 1 .. 8192 */
    size_t n = base + (size_t)((u >> 8) % base);
    return n > STRESS_HEAP_MAX ? STRESS_HEAP_MAX : n;
}

static void stress_op(struct stress *s)
{
    uint64_t u = stress_rand(s);
    unsigned pick = (unsigned)(u % 100);
    struct stress_slot *sl;
    if (pick < 60) { /* heap: allocate into an empty slot, else free or reallocate it */
        sl = &s->heap[(u >> 8) % STRESS_HEAP_SLOTS];
        if (!sl->p) {
            sl->bytes = stress_size(s);
            sl->p = kmm_malloc(s->k, sl->bytes, 0);
            s->ops[OP_MALLOC]++;
            if (!sl->p) {
                s->failed++;
                return;
            }
            sl->tag = (uint32_t)stress_rand(s);
            stress_fill(s, sl, false, 0);
        } else if ((u >> 40) & 1) {
            size_t n = stress_size(s), keep = n < sl->bytes ? n : sl->bytes;
            void *q = kmm_realloc(s->k, sl->p, n, 0);
            s->ops[OP_REALLOC]++;
            if (!q) { /* the old block is untouched and still the slot's */
                s->failed++;
                return;
            }
            sl->p = q;
            size_t old = sl->bytes;
            sl->bytes = n;
            stress_verify(s, sl, false, keep); /* the prefix moved with it */
            if (n > old)
                stress_fill(s, sl, false, old);
        } else {
            stress_verify(s, sl, false, sl->bytes);
            kmm_free(s->k, sl->p);
            sl->p = NULL;
            s->ops[OP_FREE]++;
        }
    } else if (pick < 90) { /* page blocks of orders 0..4 */
        sl = &s->page[(u >> 8) % STRESS_PAGE_SLOTS];
        if (!sl->pa) {
            unsigned order = (unsigned)((u >> 32) % (STRESS_PAGE_ORDER + 1));
            sl->pa = kmm_page_alloc(s->k, order, 0);
            s->ops[OP_PAGE_ALLOC]++;
            if (!sl->pa) {
                s->failed++;
                return;
            }
            sl->bytes = (size_t)KMM_PAGE_SIZE << order;
            sl->tag = (uint32_t)stress_rand(s);
            stress_fill(s, sl, false, 0);
        } else {
            stress_verify(s, sl, false, sl->bytes);
            kmm_page_free(s->k, sl->pa, kmm_order_for_count(sl->bytes >> KMM_PAGE_SHIFT));
            sl->pa = 0;
            s->ops[OP_PAGE_FREE]++;
        }
    } else { /* vmalloc areas of 1..16 pages */
        sl = &s->vm[(u >> 8) % STRESS_VM_SLOTS];
        if (!sl->p) {
            sl->bytes = (size_t)(1 + (u >> 32) % STRESS_VM_PAGES) << KMM_PAGE_SHIFT;
            sl->p = kmm_vmalloc(s->k, sl->bytes, 0);
            s->ops[OP_VMALLOC]++;
            if (!sl->p) {
                s->failed++;
                return;
            }
            sl->tag = (uint32_t)stress_rand(s);
            stress_fill(s, sl, true, 0);
        } else {
            stress_verify(s, sl, true, sl->bytes);
            kmm_vfree(s->k, sl->p);
            sl->p = NULL;
            s->ops[OP_VFREE]++;
        }
    }
}

/* Verifies and frees every slot still holding memory. */
static void stress_release(struct stress *s)
{
    for (unsigned i = 0; i < STRESS_HEAP_SLOTS; i++)
        if (s->heap[i].p) {
            stress_verify(s, &s->heap[i], false, s->heap[i].bytes);
            kmm_free(s->k, s->heap[i].p);
            s->ops[OP_FREE]++;
        }
    for (unsigned i = 0; i < STRESS_PAGE_SLOTS; i++)
        if (s->page[i].pa) {
            stress_verify(s, &s->page[i], false, s->page[i].bytes);
            kmm_page_free(s->k, s->page[i].pa,
                          kmm_order_for_count(s->page[i].bytes >> KMM_PAGE_SHIFT));
            s->ops[OP_PAGE_FREE]++;
        }
    for (unsigned i = 0; i < STRESS_VM_SLOTS; i++)
        if (s->vm[i].p) {
            stress_verify(s, &s->vm[i], true, s->vm[i].bytes);
            kmm_vfree(s->k, s->vm[i].p);
            s->ops[OP_VFREE]++;
        }
}

/* What must be the same before and after a workload that gives everything
 * back: pages allocated, heap bytes in use, kernel virtual areas. */
struct footprint {
    uint64_t pages, heap_used, heap_large, areas;
};

/* The heap makes each size class on its first use, and the class's
 * structure (its CPU stacks) stays for good: one block of every class,
 * allocated and freed before a footprint is taken, makes them all, so the
 * comparison sees only what a workload leaves behind. */
static void heap_warm_up(struct kmm *k)
{
    for (size_t n = KMM_HEAP_MIN_ALIGN; n <= KMM_HEAP_SLAB_MAX; n += KMM_HEAP_MIN_ALIGN)
        kmm_free(k, kmm_malloc(k, n, 0));
}

static struct footprint footprint(struct kmm *k)
{
    struct kmm_page_stats ps;
    struct kmm_heap_stats hs;
    struct kmm_vmalloc_stats vs;
    kmm_heap_drain_cpu(k); /* this CPU's cached objects and pages go home first */
    kmm_heap_shrink(k);
    kmm_kva_purge(k); /* freed areas the window parked, with their page tables */
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &ps);
    kmm_heap_stats(k, &hs);
    kmm_vmalloc_stats(k, &vs);
    return (struct footprint){ps.allocated_pages, hs.bytes_used, hs.large_blocks, vs.areas};
}

/* Prints the before / after comparison; returns whether they agree. */
static bool footprint_same(struct kshell *sh, const char *who, const struct footprint *a,
                           const struct footprint *b)
{
    bool same = a->pages == b->pages && a->heap_used == b->heap_used &&
                a->heap_large == b->heap_large && a->areas == b->areas;
    kshell_printf(sh,
                  "%s: %s: pages allocated %llu -> %llu, heap bytes in use %llu -> %llu, "
                  "large heap blocks %llu -> %llu, kernel virtual areas %llu -> %llu\n",
                  who, same ? "everything given back" : "NOT everything given back",
                  (unsigned long long)a->pages, (unsigned long long)b->pages,
                  (unsigned long long)a->heap_used, (unsigned long long)b->heap_used,
                  (unsigned long long)a->heap_large, (unsigned long long)b->heap_large,
                  (unsigned long long)a->areas, (unsigned long long)b->areas);
    return same;
}

static int cmd_stress(struct kshell *sh, unsigned argc, char **argv)
{
    uint64_t ops = STRESS_OPS_DEFAULT, seed = sh->stress_seed;
    if (argc > 3 || (argc > 1 && (!parse_u64(argv[1], &ops) || !ops || ops > STRESS_OPS_MAX)) ||
        (argc > 2 && !parse_u64(argv[2], &seed)))
        return usage(sh, "stress", "[operations] [seed]",
                     "operations is a number from 1 to 10000000, seed a number");
    struct kmm *k = sh->cfg.k;
    heap_warm_up(k);
    struct footprint before = footprint(k);
    /* The workload's state (about 6 KiB) from the heap itself: not on the
     * kernel's stack; freed before the footprint is compared. */
    struct stress *s = kmm_zalloc(k, sizeof(*s), 0);
    if (!s) {
        kshell_printf(sh, "error: stress: no memory for the workload's state\n");
        return 1;
    }
    s->sh = sh;
    s->k = k;
    s->rng = seed;
    sh->stress_seed = seed + 1; /* the next run without a seed differs */
    kshell_printf(sh,
                  "stress: %llu random operations (seed %llu): heap blocks of 1-%u bytes "
                  "with kmm_realloc, page blocks of orders 0-%u, vmalloc areas of 1-%u "
                  "pages; every byte written with a pattern and verified before it is "
                  "freed\n",
                  (unsigned long long)ops, (unsigned long long)seed, STRESS_HEAP_MAX,
                  STRESS_PAGE_ORDER, STRESS_VM_PAGES);
    for (uint64_t i = 0; i < ops; i++)
        stress_op(s);
    stress_release(s);
    kshell_printf(sh,
                  "stress: kmm_malloc %llu, kmm_realloc %llu, kmm_free %llu, page allocs %llu, "
                  "page frees %llu, vmalloc %llu, vfree %llu; failed %llu; %llu bytes "
                  "verified, %llu mismatches\n",
                  (unsigned long long)s->ops[OP_MALLOC], (unsigned long long)s->ops[OP_REALLOC],
                  (unsigned long long)s->ops[OP_FREE], (unsigned long long)s->ops[OP_PAGE_ALLOC],
                  (unsigned long long)s->ops[OP_PAGE_FREE], (unsigned long long)s->ops[OP_VMALLOC],
                  (unsigned long long)s->ops[OP_VFREE], (unsigned long long)s->failed,
                  (unsigned long long)s->verified, (unsigned long long)s->mismatches);
    uint64_t mismatches = s->mismatches;
    kmm_free(k, s);
    struct footprint after = footprint(k);
    bool same = footprint_same(sh, "stress", &before, &after);
    int st = check_line(sh, "stress");
    bool pass = same && !mismatches && st == KMM_CHECK_OK;
    kshell_printf(sh, "stress: %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}

/* --- bench ------------------------------------------------------------------------------ */

/* Whether word is key followed by a number; the number in *v. */
static bool key_value(const char *word, const char *key, uint64_t *v)
{
    size_t n = str_len(key);
    for (size_t i = 0; i < n; i++)
        if (word[i] != key[i])
            return false;
    return parse_u64(word + n, v);
}

static int cmd_bench(struct kshell *sh, unsigned argc, char **argv)
{
    struct mmbench_config cfg = {
        .k = sh->cfg.k,
        .now_ns = sh->cfg.now_ns,
        .clock_ctx = sh->cfg.host,
        .out = term_sink(sh),
        .live_mappings = sh->cfg.live_mappings,
        .tsc_khz = sh->cfg.tsc_khz,
    };
    for (unsigned i = 1; i < argc; i++) {
        uint64_t v;
        bool ok;
        if (key_value(argv[i], "scale=", &v)) {
            ok = v >= 1 && v <= UINT32_MAX;
            cfg.scale_div = (unsigned)v;
        } else if (key_value(argv[i], "reps=", &v)) {
            ok = v >= 1 && v <= MMBENCH_REPS_MAX;
            cfg.reps = (unsigned)v;
        } else if (key_value(argv[i], "tests=", &v)) {
            ok = v && !(v & ~(uint64_t)MMBENCH_TESTS_ALL);
            cfg.tests = (unsigned)v;
        } else {
            ok = false;
        }
        if (!ok)
            return usage(sh, "bench", "[scale=N] [reps=1..15] [tests=MASK]",
                         "scale divides every op count (1: full size), reps is 1..15, tests a "
                         "mask of 0x1df (P1 0x1, P1z 0x2, P2 0x4, H1 0x8, H2 0x10, M1a 0x40, "
                         "M1b 0x80, M1c/M1d 0x100)");
    }
    if (!cfg.now_ns) {
        kshell_printf(sh, "error: bench: this host gave the shell no clock\n");
        return 1;
    }
    kshell_printf(sh, "bench: the Linux anchor's workloads (docs/performance.md), ns per op, "
                      "median of the runs\n");
    struct kmm *k = sh->cfg.k;
    heap_warm_up(k);
    struct footprint before = footprint(k);
    struct mmbench_summary sum;
    int err = mmbench_run(&cfg, &sum);
    if (err)
        return 1;
    struct footprint after = footprint(k);
    bool same = footprint_same(sh, "bench", &before, &after);
    int st = check_line(sh, "bench");
    bool pass = same && st == KMM_CHECK_OK && !sum.fails;
    kshell_printf(sh, "bench: %u results, %u skipped, %llu failed allocations: %s\n", sum.results,
                  sum.skipped, (unsigned long long)sum.fails, pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}

/* --- leaving ---------------------------------------------------------------------------- */

static int cmd_reboot(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    kshell_printf(sh, "rebooting\n");
    if (sh->cfg.reboot)
        sh->cfg.reboot(sh->cfg.host);
    sh->stop = true;
    return 0;
}

static int cmd_halt(struct kshell *sh, unsigned argc, char **argv)
{
    NO_ARGS(sh, argc, argv);
    kshell_printf(sh, "halting\n");
    if (sh->cfg.halt)
        sh->cfg.halt(sh->cfg.host);
    sh->stop = true;
    return 0;
}

static const struct kshell_cmd builtin[] = {
    {"help", "[command]", "list the commands, or explain one", cmd_help},
    {"meminfo", "", "memory in kB as /proc/meminfo: pages, heap, vmalloc, page tables",
     cmd_meminfo},
    {"buddyinfo", "", "free blocks per order and zone, and the unusable free space index",
     cmd_buddyinfo},
    {"zoneinfo", "", "each zone's range, managed, free and cached pages, calls", cmd_zoneinfo},
    {"slabinfo", "", "the heap's totals and one line per cache as /proc/slabinfo", cmd_slabinfo},
    {"vmallocinfo", "", "the kernel virtual area window and its areas", cmd_vmallocinfo},
    {"pagetables", "[virtual-address]",
     "the page tables' figures, or what one kernel address maps to", cmd_pagetables},
    {"report", "", "the library's whole report (every section above and more)", cmd_report},
    {"dump", "", "the JSON dump for tools/mempicture.py, between marker lines", cmd_dump},
    {"misuse", "", "the calls refused as caller mistakes, by layer and class", cmd_misuse},
    {"check", "", "kmm_check: walk every structure, ok / LEAK / CORRUPT", cmd_check},
    {"leaks", "[on|off|mark]", "live tracked heap objects since the mark, by call site", cmd_leaks},
    {"events", "[on|off]", "the recent page and heap events (on/off: record them)", cmd_events},
    {"selftest", "[filter]", "run the test suite (the host's), PASS or FAIL", cmd_selftest},
    {"stress", "[operations] [seed]",
     "random heap, page and vmalloc work, contents verified, all freed, then kmm_check",
     cmd_stress},
    {"bench", "[scale=N] [reps=N] [tests=MASK]",
     "the Linux anchor's benchmarks (P1 P1z P2 H1 H2 M1): RESULT lines", cmd_bench},
    /* Issue 13: the Boruix shell's memory commands go here (memtest,
     * heaptest, pgtest, vmmtest, memprottest), each ending in PASS / FAIL. */
    {"reboot", "", "restart the machine", cmd_reboot},
    {"halt", "", "stop the machine (hosted: leave the shell)", cmd_halt},
};

const struct kshell_cmd *kshell_builtin(size_t *count)
{
    *count = sizeof(builtin) / sizeof(builtin[0]);
    return builtin;
}
