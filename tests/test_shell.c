/*
 * test_shell.c - the demo kernel's shell (kernel/shell/shell.h) driven as a
 * person drives it: a byte stream typed at it, edit keys included, and its
 * answer read back and checked against the library's own figures (numbers
 * equal). Every command, the line editor's keys, and bad input (an unknown
 * command, an overlong line, bad arguments), each followed by kmm_check.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/events.h>
#include <kmm/fmt.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "boruix_cmds.h"
#include "shell.h"
#include "world.h"

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/* The terminal: input from a string, output kept. */
struct term {
    const char *in;
    size_t in_len, at;
    char out[48 * 1024];
    size_t len;
};

static int term_read(void *ctx)
{
    struct term *tm = ctx;
    return tm->at < tm->in_len ? (unsigned char)tm->in[tm->at++] : KSHELL_EOF;
}

static void term_write(void *ctx, const char *text, size_t len)
{
    struct term *tm = ctx;
    for (size_t i = 0; i < len && tm->len + 1 < sizeof(tm->out); i++)
        tm->out[tm->len++] = text[i];
    tm->out[tm->len] = '\0';
}

/* What the fake host saw. */
struct host {
    unsigned selftests, reboots, halts;
    const char *filter;
    uint64_t clock;
};

static uint64_t host_clock(void *ctx)
{
    struct host *h = ctx;
    return h->clock += 1000; /* 1 us per reading: deterministic */
}

static int host_selftest(void *ctx, const char *filter, const struct kmm_sink *out)
{
    struct host *h = ctx;
    h->selftests++;
    h->filter = filter;
    out->write(out->ctx, "ok 1 fake\n", 10);
    return filter && filter[0] == 'x' ? 1 : 0; /* "x...": one failure */
}

static void host_reboot(void *ctx)
{
    ((struct host *)ctx)->reboots++;
}

static void host_halt(void *ctx)
{
    ((struct host *)ctx)->halts++;
}

/* One shell session: the fixture, the terminal, the host. Static: the
 * terminal's buffer is large for a kernel stack. */
static struct session {
    struct kt_heap h;
    struct term tm;
    struct host host;
    struct kshell sh;
} S;

static bool session_up(struct ktest *t)
{
    if (!kt_heap_up(t, &S.h, map64, 1, 1))
        return false;
    S.host = (struct host){0};
    struct kshell_config cfg = {
        .k = S.h.f.k,
        .io = {term_read, term_write, &S.tm},
        .host = &S.host,
        .now_ns = host_clock,
        .live_mappings = S.h.live,
        .selftest = host_selftest,
        .reboot = host_reboot,
        .halt = host_halt,
    };
    kshell_init(&S.sh, &cfg);
    return true;
}

/* Types `input` at the shell and returns everything it answered. */
static const char *type(const char *input, size_t len)
{
    S.tm.in = input;
    S.tm.in_len = len;
    S.tm.at = 0;
    S.tm.len = 0;
    S.tm.out[0] = '\0';
    kshell_run(&S.sh);
    return S.tm.out;
}
#define TYPE(s) type((s), sizeof(s) - 1)

static void session_down(struct ktest *t)
{
    if (ktest_failed(t))
        ktest_diag(t, "the shell answered:\n%s", S.tm.out);
    KT_EXPECT_HEALTHY(t, S.h.f.k);
    kt_heap_down(&S.h);
}

/* How many times needle occurs in hay. */
static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; *p; p++) {
        const char *a = p, *b = needle;
        while (*b && *a == *b)
            a++, b++;
        if (!*b)
            n++;
    }
    return n;
}

/* The number after key in text (the first occurrence, spaces skipped);
 * UINT64_MAX when key is missing or no digit follows. */
static uint64_t number_after(const char *text, const char *key)
{
    for (const char *p = text; *p; p++) {
        const char *a = p, *b = key;
        while (*b && *a == *b)
            a++, b++;
        if (*b)
            continue;
        while (*a == ' ')
            a++;
        if (*a < '0' || *a > '9')
            return UINT64_MAX;
        uint64_t v = 0;
        while (*a >= '0' && *a <= '9')
            v = v * 10 + (uint64_t)(*a++ - '0');
        return v;
    }
    return UINT64_MAX;
}

/* The n-th number (0-based) on the line that starts with key. */
static uint64_t column(const char *text, const char *key, unsigned n)
{
    for (const char *p = text; *p; p++) {
        if (p != text && p[-1] != '\n')
            continue;
        const char *a = p, *b = key;
        while (*b && *a == *b)
            a++, b++;
        if (*b)
            continue;
        for (unsigned i = 0;; i++) {
            while (*a == ' ')
                a++;
            if (*a < '0' || *a > '9')
                return UINT64_MAX;
            uint64_t v = 0;
            while (*a >= '0' && *a <= '9')
                v = v * 10 + (uint64_t)(*a++ - '0');
            if (i == n)
                return v;
        }
    }
    return UINT64_MAX;
}

#define KIB(pages) ((pages)*4)

static size_t str_len_for_test(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* --- the commands ------------------------------------------------------------------------ */

KTEST(shell, help_lists_every_command_with_its_line_of_help)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("help\n");
    size_t n;
    const struct kshell_cmd *c = kshell_builtin(&n);
    KT_EXPECT(t, n >= 17);
    for (size_t i = 0; i < n; i++) {
        KT_EXPECT(t, ktest_contains(out, c[i].name));
        KT_EXPECT(t, ktest_contains(out, c[i].help));
    }
    out = TYPE("help stress\n");
    KT_EXPECT(t, ktest_contains(out, "stress [operations] [seed]"));
    KT_EXPECT(t, !ktest_contains(out, "meminfo"));
    session_down(t);
}

KTEST(shell, meminfo_figures_equal_the_statistics)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    uint64_t pa = kmm_page_alloc(k, 3, 0);
    void *blk = kmm_malloc(k, 3000, 0);
    void *area = kmm_vmalloc(k, 5 * KT_PAGE, 0);
    KT_ASSERT(t, pa && blk && area);
    const char *out = TYPE("meminfo\n");
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
    KT_EXPECT(t, ktest_contains(out, "kB = 1024 bytes"));
    KT_EXPECT_EQ(t, number_after(out, "MemTotal:"), KIB(ps.managed_pages));
    KT_EXPECT_EQ(t, number_after(out, "MemFree:"), KIB(ps.free_pages));
    KT_EXPECT_EQ(t, number_after(out, "MemUsed:"), KIB(ps.allocated_pages));
    KT_EXPECT_EQ(t, number_after(out, "PerCPUCached:"), KIB(pcp));
    KT_EXPECT_EQ(t, number_after(out, "KmmMetadata:"), KIB(ps.metadata_pages));
    KT_EXPECT_EQ(t, number_after(out, "HeapHeld:"), hs.bytes_held >> 10);
    KT_EXPECT_EQ(t, number_after(out, "HeapUsed:"), hs.bytes_used >> 10);
    KT_EXPECT(t, hs.bytes_used >= 3000);
    KT_EXPECT_EQ(t, number_after(out, "VmallocTotal:"), vs.window_size >> 10);
    KT_EXPECT_EQ(t, number_after(out, "VmallocUsed:"), KIB(vs.vmalloc_pages));
    KT_EXPECT_EQ(t, number_after(out, "VmallocUsed:"), 20);
    KT_EXPECT_EQ(t, number_after(out, "PageTables:"), ks.table_bytes >> 10);
    KT_EXPECT_EQ(t, number_after(out, "FailedAllocs:"), ps.failed_allocs);
    kmm_vfree(k, area);
    kmm_free(k, blk);
    kmm_page_free(k, pa, 3);
    session_down(t);
}

KTEST(shell, buddyinfo_rows_are_the_free_blocks_per_order)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    uint64_t pa[5];
    for (unsigned i = 0; i < 5; i++) /* some holes in the buddy lists */
        pa[i] = kmm_page_alloc(k, i, 0);
    kmm_page_free(k, pa[1], 1);
    kmm_page_free(k, pa[3], 3);
    const char *out = TYPE("buddyinfo\n");
    struct kmm_page_stats ps;
    kmm_page_stats(k, &ps);
    KT_EXPECT(t, ktest_contains(out, "Free blocks of 2^order pages per zone"));
    unsigned rows = 0;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        if (!ps.zones[z].managed_pages)
            continue;
        char key[16];
        kmm_snprintf(key, sizeof(key), "  %-7s", kmm_zone_name(z));
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            KT_EXPECT_EQ(t, column(out, key, o), ps.zones[z].free_blocks[o]);
        rows++;
    }
    KT_EXPECT(t, rows >= 1);
    kmm_page_free(k, pa[0], 0);
    kmm_page_free(k, pa[2], 2);
    kmm_page_free(k, pa[4], 4);
    session_down(t);
}

KTEST(shell, zoneinfo_rows_are_each_zones_figures)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    uint64_t pa = kmm_page_alloc(k, 2, 0);
    const char *out = TYPE("zoneinfo\n");
    struct kmm_page_stats ps;
    kmm_page_stats(k, &ps);
    KT_EXPECT(t, ktest_contains(out, "pages of 4 KiB"));
    KT_EXPECT(t, ktest_contains(out, "alloc_calls"));
    static const char *const keys[KMM_ZONE_COUNT] = {"DMA     0-16M", "DMA32   16M-4G",
                                                     "Normal  4G-"};
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        const struct kmm_zone_stats *s = &ps.zones[z];
        KT_EXPECT_EQ(t, column(out, keys[z], 0), s->managed_pages);
        KT_EXPECT_EQ(t, column(out, keys[z], 1), s->free_pages);
        KT_EXPECT_EQ(t, column(out, keys[z], 2), s->pcp_pages);
        KT_EXPECT_EQ(t, column(out, keys[z], 3), s->deferred_pages);
        KT_EXPECT_EQ(t, column(out, keys[z], 4), s->alloc_calls);
        KT_EXPECT_EQ(t, column(out, keys[z], 5), s->free_calls);
    }
    kmm_page_free(k, pa, 2);
    session_down(t);
}

KTEST(shell, slabinfo_has_each_caches_active_objects)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    enum { N = 100 };
    static void *blk[N];
    for (unsigned i = 0; i < N; i++)
        blk[i] = kmm_malloc(k, 64, 0);
    const char *out = TYPE("slabinfo\n");
    KT_EXPECT(t, ktest_contains(out, "Slab caches (slabinfo)"));
    KT_EXPECT(t, ktest_contains(out, "objsize"));
    struct kmm_heap_stats hs;
    kmm_heap_stats(k, &hs);
    KT_EXPECT_EQ(t, number_after(out, "allocs, "), hs.frees); /* "N allocs, M frees" */
    struct kmm_cache *c;
    bool found = false;
    for (unsigned i = 0; (c = kmm_heap_cache_at(k, i)) != NULL; i++) {
        struct kmm_cache_stats cs;
        KT_ASSERT_EQ(t, kmm_cache_stats(k, c, &cs), KMM_OK);
        if (cs.object_size != 64)
            continue;
        char key[40];
        kmm_snprintf(key, sizeof(key), "  %-23s", cs.name);
        KT_EXPECT_EQ(t, column(out, key, 0), cs.active_objects);
        KT_EXPECT_EQ(t, column(out, key, 1), cs.total_objects);
        KT_EXPECT(t, cs.active_objects >= N);
        found = true;
    }
    KT_EXPECT(t, found);
    for (unsigned i = 0; i < N; i++)
        kmm_free(k, blk[i]);
    session_down(t);
}

/* The lent column: a class holding memory idle lends to a request of the
 * class below it that has nothing free, and slabinfo's line of the lender
 * shows it as kmm_cache_stats does. */
KTEST(shell, slabinfo_shows_the_objects_a_class_lent)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    enum { N = 16 }; /* more than two slabs of 3072 bytes (five to a slab) */
    static void *blk[N];
    for (unsigned i = 0; i < N; i++)
        KT_ASSERT(t, (blk[i] = kmm_malloc(k, 3072, 0)) != NULL);
    for (unsigned i = 0; i < N; i++)
        kmm_free(k, blk[i]);
    kmm_heap_drain_cpu(k);
    void *p = kmm_malloc(k, 2700, 0); /* class 2816, below 3072: none free */
    KT_ASSERT(t, p != NULL);
    const char *out = TYPE("slabinfo\n");
    struct kmm_cache_stats cs;
    KT_ASSERT_EQ(t, kmm_cache_stats(k, kt_heap_class_cache(&S.h, 3072), &cs), KMM_OK);
    KT_EXPECT(t, cs.lent >= 1);
    char key[40];
    kmm_snprintf(key, sizeof(key), "  %-23s", cs.name);
    KT_EXPECT_EQ(t, column(out, key, 8), cs.lent);
    kmm_free(k, p);
    session_down(t);
}

KTEST(shell, vmallocinfo_lists_each_area_with_its_pages)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    void *area = kmm_vmalloc(k, 3 * KT_PAGE, 0);
    KT_ASSERT(t, area != NULL);
    const char *out = TYPE("vmallocinfo\n");
    char start[24];
    kmm_snprintf(start, sizeof(start), "0x%016llx-", (unsigned long long)(uintptr_t)area);
    KT_EXPECT(t, ktest_contains(out, start));
    struct kmm_kva_area a;
    KT_ASSERT_EQ(t, kmm_kva_lookup(k, (uint64_t)(uintptr_t)area, &a), KMM_OK);
    char line[64];
    kmm_snprintf(line, sizeof(line), " %10llu vmalloc pages=%llu ", (unsigned long long)a.size,
                 (unsigned long long)(a.size >> 12));
    KT_EXPECT(t, ktest_contains(out, line));
    KT_EXPECT(t, a.size >= 3 * KT_PAGE);
    KT_EXPECT_EQ(t, number_after(out, "  areas"), 1);
    KT_EXPECT_EQ(t, number_after(out, "vmalloc pages"), 3);
    kmm_vfree(k, area);
    out = TYPE("vmallocinfo\n");
    KT_EXPECT_EQ(t, number_after(out, "  areas"), 0);
    session_down(t);
}

KTEST(shell, pagetables_shows_the_figures_and_translates_an_address)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    const char *out = TYPE("pagetables\n");
    struct kmm_vm_stats ks;
    kmm_vm_stats(kmm_kernel_aspace(k), &ks);
    KT_EXPECT(t, ktest_contains(out, "Page tables (4 levels)"));
    KT_EXPECT_EQ(t, number_after(out, "mapped 4K"), ks.mapped_pages);
    KT_EXPECT_EQ(t, number_after(out, "L4"), ks.tables[4]);
    void *area = kmm_vmalloc(k, 2 * KT_PAGE, 0);
    KT_ASSERT(t, area != NULL);
    struct kmm_vm_translation tr;
    uint64_t va = (uint64_t)(uintptr_t)area + KT_PAGE + 0x10;
    KT_ASSERT_EQ(t, kmm_vm_translate(kmm_kernel_aspace(k), va, &tr), KMM_OK);
    char line[128], want[96];
    kmm_snprintf(line, sizeof(line), "pagetables 0x%llx\n", (unsigned long long)va);
    out = type(line, str_len_for_test(line));
    kmm_snprintf(want, sizeof(want), "0x%016llx -> physical 0x%llx, 4 KiB page, rw-",
                 (unsigned long long)va, (unsigned long long)tr.pa);
    KT_EXPECT(t, ktest_contains(out, want));
    kmm_vfree(k, area);
    out = type(line, str_len_for_test(line));
    KT_EXPECT(t, ktest_contains(out, "not mapped in the kernel space"));
    /* A demand-zero page has no frame yet, and says so. */
    const uint64_t demand = UINT64_C(0xffffffffc0000000);
    KT_ASSERT_EQ(t,
                 kmm_vm_map(kmm_kernel_aspace(k), demand, 0, KT_PAGE,
                            KMM_PROT_READ | KMM_PROT_WRITE | KMM_MAP_DEMAND),
                 KMM_OK);
    out = TYPE("pagetables 0xffffffffc0000010\n");
    KT_EXPECT(t, ktest_contains(out, "0xffffffffc0000010: a demand-zero page of the kernel "
                                     "space, no frame until first touched"));
    KT_EXPECT_EQ(t, kmm_vm_unmap(kmm_kernel_aspace(k), demand, KT_PAGE), KMM_OK);
    out = TYPE("pagetables 0x800000000000\n");
    KT_EXPECT(t, ktest_contains(out, "error: pagetables: 0x800000000000 is not a canonical"));
    out = TYPE("pagetables banana\n");
    KT_EXPECT(t, ktest_contains(out, "usage: pagetables [virtual-address]"));
    session_down(t);
}

KTEST(shell, report_and_misuse_show_the_library_report)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("report\n");
    KT_EXPECT(t, ktest_contains(out, "Physical memory map"));
    KT_EXPECT(t, ktest_contains(out, "Rejected calls (misuse): 0"));
    kmm_free(S.h.f.k, (void *)(uintptr_t)0x1234); /* a refused call */
    out = TYPE("misuse\n");
    KT_EXPECT(t, ktest_contains(out, "Rejected calls (misuse): 1"));
    KT_EXPECT(t, ktest_contains(out, "heap     1:"));
    session_down(t);
}

KTEST(shell, check_says_ok_with_what_it_walked)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("check\n");
    struct kmm_check_result r;
    KT_ASSERT_EQ(t, kmm_check(S.h.f.k, &r), KMM_CHECK_OK);
    KT_EXPECT(t, ktest_contains(out, "check: kmm_check ok ("));
    KT_EXPECT_EQ(t, number_after(out, "ok ("), r.frames_walked);
    KT_EXPECT_EQ(t, S.sh.last_status, 0);
    session_down(t);
}

KTEST(shell, leaks_lists_what_was_allocated_since_the_mark_by_call_site)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    const char *out = TYPE("leaks on\nleaks mark\n");
    KT_EXPECT(t, ktest_contains(out, "allocation tracking on"));
    KT_EXPECT(t, ktest_contains(out, "mark: generation"));
    void *a = kmm_malloc(k, 40, 0), *b = kmm_malloc(k, 40, 0), *c = kmm_malloc(k, 200, 0);
    KT_ASSERT(t, a && b && c);
    out = TYPE("leaks\n");
    struct kmm_heap_site site[4];
    size_t n = kmm_heap_leak_sites(k, S.sh.leak_mark, site, 4);
    uint64_t objects = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        objects += site[i].objects;
    KT_EXPECT_EQ(t, objects, 3);
    KT_EXPECT(t, ktest_contains(out, "since the mark"));
    KT_EXPECT(t, ktest_contains(out, "tracking on"));
    KT_EXPECT_EQ(t, number_after(out, ": "), 3); /* "...since generation N: 3 objects" */
    kmm_free(k, a);
    kmm_free(k, b);
    kmm_free(k, c);
    out = TYPE("leaks\nleaks off\n");
    KT_EXPECT_EQ(t, number_after(out, ": "), 0);
    KT_EXPECT(t, ktest_contains(out, "allocation tracking off"));
    out = TYPE("leaks sideways\n");
    KT_EXPECT(t, ktest_contains(out, "usage: leaks [on|off|mark]"));
    session_down(t);
}

KTEST(shell, events_shows_the_debugging_modes_and_the_event_count)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("events\n");
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(S.h.f.k, &ds);
    KT_EXPECT(t, ktest_contains(out, "Heap debugging: modes 0x0"));
    KT_EXPECT_EQ(t, number_after(out, "debugged, "), ds.events);
    session_down(t);
}

KTEST(shell, events_on_records_page_and_heap_events_and_events_lists_the_latest)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    const char *out = TYPE("events on\n");
    KT_EXPECT(t, ktest_contains(out, "events on: page allocator and heap"));
    uint64_t pa = kmm_page_alloc(k, 1, 0);
    KT_ASSERT(t, pa != 0);
    KT_EXPECT_EQ(t, kmm_page_free(k, pa, 1), KMM_OK);
    out = TYPE("events\n");
    struct kmm_events_stats es;
    kmm_events_stats(k, &es);
    KT_EXPECT_EQ(t, number_after(out, "Recent events ("), es.recorded);
    KT_EXPECT(t, es.recorded >= 2);
    KT_EXPECT(t, ktest_contains(out, "sources page,heap"));
    KT_EXPECT(t, ktest_contains(out, "page-free"));
    out = TYPE("events off\nevents sideways\n");
    KT_EXPECT(t, ktest_contains(out, "events off"));
    KT_EXPECT(t, ktest_contains(out, "usage: events [on|off]"));
    kmm_events_stats(k, &es);
    KT_EXPECT_EQ(t, es.flags, 0);
    session_down(t);
}

KTEST(shell, selftest_runs_the_hosts_suite_and_says_pass_or_fail)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("selftest\n");
    KT_EXPECT_EQ(t, S.host.selftests, 1);
    KT_EXPECT(t, S.host.filter == NULL);
    KT_EXPECT(t, ktest_contains(out, "ok 1 fake"));
    KT_EXPECT(t, ktest_contains(out, "selftest: PASS (0 failed)"));
    out = TYPE("selftest xyz\n");
    KT_EXPECT(t, ktest_contains(out, "selftest: FAIL (1 failed)"));
    KT_EXPECT_EQ(t, S.sh.last_status, 1);
    S.sh.cfg.selftest = NULL;
    out = TYPE("selftest\n");
    KT_EXPECT(t, ktest_contains(out, "error: selftest: this host has no test suite"));
    session_down(t);
}

KTEST(shell, stress_verifies_contents_and_gives_everything_back)
{
    KT_ASSERT(t, session_up(t));
    struct kmm *k = S.h.f.k;
    const char *out = TYPE("stress 3000 7\n");
    KT_EXPECT(t, ktest_contains(out, "stress: 3000 random operations (seed 7)"));
    KT_EXPECT(t, ktest_contains(out, " 0 mismatches"));
    KT_EXPECT(t, ktest_contains(out, "stress: everything given back"));
    KT_EXPECT(t, ktest_contains(out, "stress: kmm_check ok"));
    KT_EXPECT(t, ktest_contains(out, "stress: PASS"));
    KT_EXPECT(t, number_after(out, "bytes verified") == UINT64_MAX); /* the number comes first */
    KT_EXPECT(t, number_after(out, "page allocs") > 0);
    KT_EXPECT(t, number_after(out, "vmalloc") > 0);
    /* The figures it printed are the library's: nothing left allocated. */
    uint64_t before = number_after(out, "pages allocated");
    struct kmm_page_stats ps;
    kmm_heap_drain_cpu(k);
    kmm_heap_shrink(k);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &ps);
    KT_EXPECT_EQ(t, ps.allocated_pages, before);
    struct kmm_heap_stats hs;
    kmm_heap_stats(k, &hs);
    KT_EXPECT_EQ(t, hs.bytes_used, 0);
    out = TYPE("stress 0\n");
    KT_EXPECT(t, ktest_contains(out, "usage: stress [operations] [seed]"));
    out = TYPE("stress 10 seven\n");
    KT_EXPECT(t, ktest_contains(out, "usage: stress [operations] [seed]"));
    session_down(t);
}

KTEST(shell, bench_prints_result_lines_and_gives_everything_back)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("bench scale=4096 reps=3 tests=0x19\n");
    KT_EXPECT(t, ktest_contains(out, "mmbench: START kernel=kmm-"));
    KT_EXPECT(t, ktest_contains(out, "reps=3 scale_div=4096"));
    /* P1: 256 pairs cannot make one batch of 4096 at this scale. */
    KT_EXPECT(t, ktest_contains(out, "mmbench: RESULT P1_page_lifo_pair 0.0 ns/op runs=0.0,0.0,0.0 "
                                     "ops=0 fail=0"));
    KT_EXPECT(t, ktest_contains(out, "mmbench: RESULT H1_kmalloc64_lifo_pair "));
    KT_EXPECT(t,
              ktest_contains(out, " ops=2000 fail=0")); /* 10,000,000 / 4096 in batches of 1000 */
    KT_EXPECT(t, ktest_contains(out, "mmbench: RESULT H2_kmalloc_rand_step "));
    KT_EXPECT(t, ktest_contains(out, " ops=1220 fail=0"));
    KT_EXPECT(t, !ktest_contains(out, "P2_mixed_order_step"));
    KT_EXPECT(t, ktest_contains(out, "mmbench: DONE cpu=0 total_s="));
    KT_EXPECT(t, ktest_contains(out, "bench: everything given back"));
    KT_EXPECT(t, ktest_contains(out, "bench: 5 results, 0 skipped, 0 failed allocations: PASS"));
    out = TYPE("bench reps=16\n");
    KT_EXPECT(t, ktest_contains(out, "usage: bench [scale=N] [reps=1..15] [tests=MASK]"));
    out = TYPE("bench tests=0x20\n");
    KT_EXPECT(t, ktest_contains(out, "usage: bench"));
    out = TYPE("bench fast\n");
    KT_EXPECT(t, ktest_contains(out, "usage: bench"));
    KT_EXPECT(t, !ktest_contains(out, "mmbench: START"));
    S.sh.cfg.now_ns = NULL;
    out = TYPE("bench\n");
    KT_EXPECT(t, ktest_contains(out, "error: bench: this host gave the shell no clock"));
    session_down(t);
}

KTEST(shell, reboot_and_halt_call_the_host_and_stop_the_shell)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("halt\ncheck\n");
    KT_EXPECT_EQ(t, S.host.halts, 1);
    KT_EXPECT(t, ktest_contains(out, "halting"));
    KT_EXPECT(t, !ktest_contains(out, "kmm_check")); /* nothing after halt runs */
    KT_EXPECT(t, !kshell_feed(&S.sh, 'x'));
    S.sh.stop = false;
    out = TYPE("reboot now\nreboot\n");
    KT_EXPECT(t, ktest_contains(out, "error: reboot: takes no arguments"));
    KT_EXPECT_EQ(t, S.host.reboots, 1);
    KT_EXPECT(t, ktest_contains(out, "rebooting"));
    session_down(t);
}

/* --- the line editor --------------------------------------------------------------------- */

KTEST(shell, backspace_and_delete_erase_the_byte_before_the_cursor)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("chex\bck\n" /* Backspace */ "checkk\x7f\n" /* Delete */);
    KT_EXPECT_EQ(t, count(out, "check: kmm_check ok"), 2);
    KT_EXPECT(t, !ktest_contains(out, "unknown command"));
    KT_EXPECT(t, ktest_contains(out, "\b \b")); /* erased on the screen too */
    session_down(t);
}

KTEST(shell, ctrl_u_erases_the_line_and_ctrl_c_abandons_it)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("garbage words\x15"
                           "check\n"
                           "halt\x03"
                           "check\n");
    KT_EXPECT_EQ(t, count(out, "check: kmm_check ok"), 2);
    KT_EXPECT(t, !ktest_contains(out, "unknown command"));
    KT_EXPECT(t, ktest_contains(out, "^C\n"));
    KT_EXPECT_EQ(t, S.host.halts, 0);
    session_down(t);
}

KTEST(shell, left_and_right_arrows_move_the_cursor_for_an_insert)
{
    KT_ASSERT(t, session_up(t));
    /* "chck", three lefts, one right (cursor after "c"... then "h"), insert. */
    const char *out = TYPE("chck\x1b[D\x1b[D\x1b[D\x1b[C"
                           "e\n");
    KT_EXPECT_EQ(t, count(out, "check: kmm_check ok"), 1);
    KT_EXPECT(t, ktest_contains(out, "\x1b[K")); /* the line was redrawn */
    /* Home and End (Ctrl-A, Ctrl-E) */
    out = TYPE("heck\x01"
               "c\x05\n");
    KT_EXPECT_EQ(t, count(out, "check: kmm_check ok"), 1);
    session_down(t);
}

KTEST(shell, up_and_down_recall_earlier_lines)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("check\nzoneinfo\n\x1b[A\x1b[A\n");
    KT_EXPECT_EQ(t, count(out, "check: kmm_check ok"), 2);
    KT_EXPECT_EQ(t, count(out, "Zones (figures"), 1);
    /* The history: check, zoneinfo, check. Up three times, down once. */
    out = TYPE("\x1b[A\x1b[A\x1b[A\x1b[B\n");
    KT_EXPECT_EQ(t, count(out, "Zones (figures"), 1);
    KT_EXPECT_EQ(t, count(out, "kmm_check ok"), 0);
    out = TYPE("chec\x1b[A\x1b[B\n"); /* down again gives back what was typed */
    KT_EXPECT(t, ktest_contains(out, "unknown command 'chec'"));
    session_down(t);
}

KTEST(shell, the_history_ring_keeps_the_last_lines_only)
{
    KT_ASSERT(t, session_up(t));
    /* Ten different lines (help of ten commands), then as far up as it goes. */
    TYPE("help help\nhelp meminfo\nhelp buddyinfo\nhelp zoneinfo\nhelp slabinfo\n"
         "help vmallocinfo\nhelp pagetables\nhelp report\nhelp misuse\nhelp check\n");
    const char *out = TYPE("\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\n");
    /* KSHELL_HISTORY (8) back from "help check" is "help buddyinfo". */
    KT_EXPECT_EQ(t, KSHELL_HISTORY, 8);
    KT_EXPECT(t, ktest_contains(out, "free blocks per order and zone"));
    KT_EXPECT(t, !ktest_contains(out, "list the commands, or explain one"));
    session_down(t);
}

KTEST(shell, tab_completes_a_command_name_or_lists_the_candidates)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("zonei\t\n");
    KT_EXPECT_EQ(t, count(out, "Zones (figures"), 1);
    out = TYPE("s\t\x15\n"); /* slabinfo, selftest, stress: listed */
    KT_EXPECT(t, ktest_contains(out, "slabinfo  selftest  stress"));
    out = TYPE("che\tx\n"); /* "check " then an argument */
    KT_EXPECT(t, ktest_contains(out, "error: check: takes no arguments"));
    session_down(t);
}

KTEST(shell, cr_lf_ends_one_line_and_cr_alone_ends_one)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("check\r\ncheck\rcheck\n");
    KT_EXPECT_EQ(t, count(out, "kmm_check ok"), 3);
    KT_EXPECT_EQ(t, count(out, "kmm> "), 4); /* one prompt per line, and the first */
    session_down(t);
}

/* --- bad input ---------------------------------------------------------------------------- */

KTEST(shell, an_unknown_command_is_named_in_the_answer)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("frobnicate the heap\n");
    KT_EXPECT(t, ktest_contains(out, "error: unknown command 'frobnicate' (help lists"));
    KT_EXPECT_EQ(t, S.sh.last_status, 1);
    out = TYPE("help frobnicate\n");
    KT_EXPECT(t, ktest_contains(out, "error: help: no command 'frobnicate'"));
    session_down(t);
}

KTEST(shell, an_overlong_line_is_refused_and_nothing_runs)
{
    KT_ASSERT(t, session_up(t));
    static char line[KSHELL_LINE_MAX + 40];
    size_t n = 0;
    const char *cmd = "check ";
    while (*cmd)
        line[n++] = *cmd++;
    while (n < KSHELL_LINE_MAX + 20)
        line[n++] = 'x';
    line[n++] = '\n';
    const char *out = type(line, n);
    KT_EXPECT(t, ktest_contains(out, "error: line too long (more than 120 bytes); nothing run"));
    KT_EXPECT(t, !ktest_contains(out, "kmm_check"));
    KT_EXPECT_EQ(t, kshell_exec(&S.sh, line), 1); /* kshell_exec refuses it too */
    out = TYPE("check\n");                        /* the next line is fine */
    KT_EXPECT(t, ktest_contains(out, "kmm_check ok"));
    session_down(t);
}

KTEST(shell, too_many_words_and_bad_arguments_are_refused_with_the_usage)
{
    KT_ASSERT(t, session_up(t));
    const char *out = TYPE("help a b c d e f g h i\n");
    KT_EXPECT(t, ktest_contains(out, "error: too many words (at most 8)"));
    out = TYPE("meminfo please\n");
    KT_EXPECT(t, ktest_contains(out, "error: meminfo: takes no arguments\nusage: meminfo"));
    out = TYPE("help a b\n");
    KT_EXPECT(t, ktest_contains(out, "usage: help [command]"));
    out = TYPE("stress 99999999999999999999999\n"); /* above UINT64_MAX */
    KT_EXPECT(t, ktest_contains(out, "usage: stress"));
    out = TYPE("\x01\x02\x7f\x1b[3~\x1b[Z\xff\n"); /* keys that do nothing */
    KT_EXPECT(t, !ktest_contains(out, "error"));
    KT_EXPECT(t, ktest_contains(out, "kmm> "));
    session_down(t);
}

/* --- the Boruix commands (boruix_cmds.h) ----------------------------------------------------- */

/* Whether every Boruix command's answer ends in its PASS line. */
static bool boruix_all_pass(const char *out)
{
    static const char *const pass[] = {"memtest: PASS (", "heaptest: PASS (", "pgtest: PASS (",
                                       "vmmtest: PASS (", "memprottest: PASS ("};
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
        if (!ktest_contains(out, pass[i]))
            return false;
    return !ktest_contains(out, "[FAIL]");
}

KTEST(shell, boruix_commands_refuse_without_the_interface_and_pass_over_an_adopted_instance)
{
    if (kmm_boruix_instance()) {
        ktest_skip(t, "the host's own instance is the Boruix interface's (the kernel shell)");
        return;
    }
    KT_ASSERT(t, session_up(t));
    size_t n;
    const struct kshell_cmd *cmds = kshell_boruix_commands(&n);
    KT_EXPECT_EQ(t, n, 5);
    /* Through the direct map: a test machine's mappings are not live, and
     * hosted the heap window below lies outside the mirror window. */
    struct kshell_config cfg = S.sh.cfg;
    cfg.extra = cmds;
    cfg.extra_count = n;
    cfg.live_mappings = false;
    kshell_init(&S.sh, &cfg);
    const char *out = TYPE("help\n");
    KT_EXPECT(t, ktest_contains(out, "\n  memtest ") && ktest_contains(out, "\n  memprottest "));
    /* No instance behind the interface: refused, nothing run. */
    out = TYPE("pgtest\n");
    KT_EXPECT(t, ktest_contains(out, "error: pgtest: the Boruix interface does not work on this "
                                     "shell's instance"));
    KT_EXPECT(t, !ktest_contains(out, "[TEST"));
    /* Adopted, with the heap window's fixed part just below the instance's
     * kernel virtual areas, as in the kernel. */
    struct kmm_boruix_world w = {.heap_base = S.h.window_base - KMM_BORUIX_FIXED_PART,
                                 .heap_size = S.h.window_size + KMM_BORUIX_FIXED_PART};
    KT_ASSERT_EQ(t, kmm_boruix_adopt(S.h.f.k, &w), KMM_OK);
    out = TYPE("memtest\nheaptest\npgtest\nvmmtest\nmemprottest\n");
    KT_EXPECT(t, boruix_all_pass(out));
    KT_EXPECT_EQ(t, S.sh.last_status, 0);
    KT_EXPECT(t, ktest_contains(out, "[OK] translation returns 0x0"));
    KT_EXPECT(t, ktest_contains(out, "[OK] given back; used 0 KiB as before"));
    /* Nothing is left mapped at the fixed addresses. */
    struct kmm_vm_translation tr;
    struct kmm_aspace *ks = kmm_kernel_aspace(S.h.f.k);
    KT_EXPECT_EQ(t, kmm_vm_translate(ks, w.heap_base, &tr), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_vm_translate(ks, w.heap_base + 16 * MIB, &tr), KMM_ENOENT);
    out = TYPE("vmmtest extra\n");
    KT_EXPECT(t, ktest_contains(out, "error: vmmtest: takes no arguments"));
    KT_EXPECT_EQ(t, kmm_boruix_fini(), KMM_OK); /* lets the instance go, intact */
    session_down(t);
}
