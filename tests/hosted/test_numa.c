/*
 * test_numa.c - NUMA placement and the per-node figures, on a simulated
 * two-node machine. Hosted only: it needs the hosted port's NUMA topology
 * and threads bound to CPUs of either node (the test thread itself enters
 * the CPU it wants; everything runs on one thread, so every step is
 * deterministic).
 *
 * The machine (node boundaries deliberately not 4 MiB aligned, so an
 * order-10 buddy pair could straddle them):
 *
 *   DMA     [1 MiB, 12 MiB) node 0        [12 MiB, 16 MiB) node 1
 *   DMA32   [16 MiB, 34 MiB) node 0       [34 MiB, 64 MiB) node 1
 *   Normal  [4 GiB, 4 GiB + 18 MiB) node 0  [4 GiB + 18 MiB, 4 GiB + 32 MiB) node 1
 *
 * CPU 0 is on node 0, CPU 1 on node 1.
 */
#include "hosted.h"
#include "fixture.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)
#define PAGE UINT64_C(4096)

static const struct kmm_region ram[] = {
    {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
    {4 * GIB, 32 * MIB, KMM_MEM_USABLE},
};

static const struct hosted_node_range node1_ranges[] = {
    {12 * MIB, 4 * MIB, 1},
    {34 * MIB, 30 * MIB, 1},
    {4 * GIB + 18 * MIB, 14 * MIB, 1},
};

static const unsigned cpu_nodes[] = {0, 1};

static unsigned node_of(uint64_t pa)
{
    for (size_t i = 0; i < N(node1_ranges); i++)
        if (pa >= node1_ranges[i].base && pa - node1_ranges[i].base < node1_ranges[i].length)
            return 1;
    return 0;
}

static unsigned zone_of(uint64_t pa)
{
    return pa < KMM_ZONE_DMA_END     ? KMM_ZONE_DMA
           : pa < KMM_ZONE_DMA32_END ? KMM_ZONE_DMA32
                                     : KMM_ZONE_NORMAL;
}

/* A fallback class: zone * 2 + node, so the zone list of a node-1 CPU is
 * Normal/1, Normal/0, DMA32/1, DMA32/0, DMA/1, DMA/0. */
static unsigned class_of(uint64_t pa)
{
    return zone_of(pa) * 2 + node_of(pa);
}

struct fixture {
    struct hosted_machine *m;
    struct kmm *k;
    struct kmm_page_stats initial;
};

static bool setup(struct ktest *t, struct fixture *f)
{
    struct hosted_machine_config mc = {
        .ram = ram,
        .ram_count = N(ram),
        .node_count = 2,
        .node_ranges = node1_ranges,
        .node_range_count = N(node1_ranges),
        .cpu_node = cpu_nodes,
        .cpu_node_count = N(cpu_nodes),
    };
    f->m = hosted_machine_create(&mc);
    if (!f->m) {
        ktest_fail_at(t, __FILE__, __LINE__, "hosted_machine_create failed");
        return false;
    }
    struct kmm_config cfg = {.port = hosted_machine_port(f->m),
                             .regions = ram,
                             .region_count = N(ram),
                             .cpu_count = N(cpu_nodes)};
    if (kmm_init(&cfg, &f->k) != KMM_OK) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init failed");
        hosted_machine_destroy(f->m);
        return false;
    }
    kmm_page_drain_cpu(f->k); /* the baseline: nothing cached on CPU 0 */
    kmm_page_stats(f->k, &f->initial);
    return true;
}

static void teardown(struct fixture *f)
{
    hosted_cpu_exit(); /* back to CPU 0 */
    kmm_fini(f->k);
    hosted_machine_destroy(f->m);
}

static void expect_healthy(struct ktest *t, struct kmm *k, int line)
{
    struct kmm_check_result r;
    if (kmm_check(k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, line, "kmm_check: %s", r.first);
}
#define EXPECT_HEALTHY(t, k) expect_healthy((t), (k), __LINE__)

/* Frees what the list holds, on the current CPU, and drains its cache. */
static void free_all(struct kmm *k, const uint64_t *pa, const unsigned *order, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kmm_page_free(k, pa[i], order ? order[i] : 0);
    kmm_page_drain_cpu(k);
}

static bool same_buddyinfo(const struct kmm_page_stats *a, const struct kmm_page_stats *b)
{
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++)
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            if (a->zones[z].free_blocks[o] != b->zones[z].free_blocks[o])
                return false;
    return a->free_pages == b->free_pages;
}

static struct kmm_node_stats node_stats(struct kmm *k, unsigned node)
{
    struct kmm_node_stats s = {0};
    kmm_page_node_stats(k, node, &s);
    return s;
}

KTEST(numa, pages_come_from_the_allocating_cpus_node)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    for (unsigned cpu = 0; cpu < 2; cpu++) {
        KT_ASSERT(t, hosted_cpu_enter(cpu));
        struct kmm_node_stats before = node_stats(f.k, cpu);
        uint64_t one = kmm_page_alloc(f.k, 0, 0);
        uint64_t big = kmm_page_alloc(f.k, 4, 0);
        uint64_t low = kmm_page_alloc(f.k, 2, KMM_GFP_DMA32);
        KT_EXPECT(t, one != 0 && big != 0 && low != 0);
        KT_EXPECT_EQ(t, class_of(one), KMM_ZONE_NORMAL * 2 + cpu);
        KT_EXPECT_EQ(t, class_of(big), KMM_ZONE_NORMAL * 2 + cpu);
        KT_EXPECT_EQ(t, class_of(low), KMM_ZONE_DMA32 * 2 + cpu);
        struct kmm_node_stats after = node_stats(f.k, cpu);
        KT_EXPECT_EQ(t, after.alloc_local, before.alloc_local + 3);
        KT_EXPECT_EQ(t, after.alloc_remote, 0);
        KT_EXPECT_EQ(t, after.alloc_lent, 0);
        KT_EXPECT_EQ(t, kmm_page_free(f.k, one, 0), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_free(f.k, big, 4), KMM_OK);
        KT_EXPECT_EQ(t, kmm_page_free(f.k, low, 2), KMM_OK);
        kmm_page_drain_cpu(f.k);
    }
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, same_buddyinfo(&s, &f.initial));
    EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

/* Allocates single pages on the current CPU until none is left, checking
 * that the fallback classes come in the order of want[] (each once, never
 * back to an earlier one). Returns the number of pages, or 0 on a breach. */
static size_t exhaust_in_order(struct ktest *t, struct kmm *k, kmm_gfp_t flags,
                               const unsigned *want, size_t nwant, uint64_t *pages, size_t cap,
                               uint64_t *per_class)
{
    size_t n = 0, at = 0;
    uint64_t pa;
    while (n < cap && (pa = kmm_page_alloc(k, 0, flags)) != 0) {
        pages[n++] = pa;
        unsigned c = class_of(pa);
        while (at < nwant && want[at] != c)
            at++;
        if (at == nwant) {
            ktest_fail_at(t, __FILE__, __LINE__, "page 0x%llx (zone %u node %u) out of order",
                          (unsigned long long)pa, zone_of(pa), node_of(pa));
            return n;
        }
        per_class[c]++;
    }
    KT_EXPECT(t, n < cap);
    return n;
}

KTEST(numa, an_exhausted_node_falls_back_to_the_other_node_before_a_lower_zone)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    struct kmm_node_stats n0 = node_stats(f.k, 0), n1 = node_stats(f.k, 1);
    KT_ASSERT(t, hosted_cpu_enter(1));
    static uint64_t pages[32768];
    uint64_t per_class[KMM_ZONE_COUNT * 2] = {0};
    const unsigned order[] = {
        KMM_ZONE_NORMAL * 2 + 1, KMM_ZONE_NORMAL * 2 + 0, KMM_ZONE_DMA32 * 2 + 1,
        KMM_ZONE_DMA32 * 2 + 0,  KMM_ZONE_DMA * 2 + 1,    KMM_ZONE_DMA * 2 + 0,
    };
    size_t n = exhaust_in_order(t, f.k, 0, order, N(order), pages, N(pages), per_class);
    /* Every free page of every (zone, node) was reached. */
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        KT_EXPECT_EQ(t, per_class[z * 2 + 0], n0.zones[z].free_pages);
        KT_EXPECT_EQ(t, per_class[z * 2 + 1], n1.zones[z].free_pages);
    }
    /* Node 1 asked for all of them; node 0 lent its own. */
    uint64_t from0 = per_class[0] + per_class[2] + per_class[4];
    struct kmm_node_stats a0 = node_stats(f.k, 0), a1 = node_stats(f.k, 1);
    KT_EXPECT_EQ(t, a1.alloc_remote - n1.alloc_remote, from0);
    KT_EXPECT_EQ(t, a0.alloc_lent - n0.alloc_lent, from0);
    KT_EXPECT_EQ(t, a1.alloc_local - n1.alloc_local, n - from0);
    KT_EXPECT_EQ(t, a0.alloc_remote, n0.alloc_remote);
    KT_EXPECT_EQ(t, a1.free_pages + a0.free_pages, 0);
    EXPECT_HEALTHY(t, f.k);
    free_all(f.k, pages, NULL, n);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, same_buddyinfo(&s, &f.initial));
    EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(numa, a_dma32_request_never_gets_normal_memory_and_dma_only_dma)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    KT_ASSERT(t, hosted_cpu_enter(1));
    static uint64_t pages[32768];
    uint64_t per_class[KMM_ZONE_COUNT * 2] = {0};
    const unsigned dma_order[] = {KMM_ZONE_DMA * 2 + 1, KMM_ZONE_DMA * 2 + 0};
    size_t nd =
        exhaust_in_order(t, f.k, KMM_GFP_DMA, dma_order, N(dma_order), pages, N(pages), per_class);
    KT_EXPECT_EQ(t, nd, f.initial.zones[KMM_ZONE_DMA].free_pages);
    const unsigned dma32_order[] = {KMM_ZONE_DMA32 * 2 + 1, KMM_ZONE_DMA32 * 2 + 0};
    size_t n32 = exhaust_in_order(t, f.k, KMM_GFP_DMA32, dma32_order, N(dma32_order), pages + nd,
                                  N(pages) - nd, per_class);
    KT_EXPECT_EQ(t, n32, f.initial.zones[KMM_ZONE_DMA32].free_pages);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.zones[KMM_ZONE_NORMAL].free_pages,
                 f.initial.zones[KMM_ZONE_NORMAL].free_pages);
    KT_EXPECT_EQ(t, kmm_page_alloc(f.k, 0, KMM_GFP_DMA32), 0);
    EXPECT_HEALTHY(t, f.k);
    free_all(f.k, pages, NULL, nd + n32);
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, same_buddyinfo(&s, &f.initial));
    EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(numa, blocks_never_merge_across_nodes)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    static uint64_t pa[8192];
    static unsigned ord[8192];
    size_t n = 0;
    /* Both CPUs take everything, largest blocks first; every block must lie
     * in one node, and each node's figures must show no straddler. */
    for (unsigned cpu = 0; cpu < 2; cpu++) {
        KT_ASSERT(t, hosted_cpu_enter(cpu));
        for (unsigned o = KMM_PAGE_MAX_ORDER + 1; o-- > 0;) {
            uint64_t p;
            while (n < N(pa) && (p = kmm_page_alloc(f.k, o, KMM_GFP_ATOMIC)) != 0) {
                uint64_t last = p + (PAGE << o) - PAGE;
                KT_EXPECT_EQ(t, node_of(p), node_of(last));
                pa[n] = p;
                ord[n++] = o;
            }
        }
    }
    KT_ASSERT(t, n < N(pa));
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    KT_EXPECT_EQ(t, s.free_pages, 0);
    /* Free everything in an interleaved order, then check that the blocks
     * merged back exactly to the initial ones (a merge across 34 MiB or
     * 4 GiB + 18 MiB would make an order-10 block that was not there). */
    for (size_t i = 0; i < n; i += 2)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pa[i], ord[i]), KMM_OK);
    for (size_t i = 1; i < n; i += 2)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, pa[i], ord[i]), KMM_OK);
    kmm_page_drain_cpu(f.k);
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, same_buddyinfo(&s, &f.initial));
    /* The DMA32 boundary at 34 MiB splits [32, 36) MiB: node 0 keeps an
     * order-9 block there, node 1 one of order 9 too. */
    struct kmm_node_stats n0 = node_stats(f.k, 0), n1 = node_stats(f.k, 1);
    KT_EXPECT(t, n0.zones[KMM_ZONE_DMA32].free_blocks[9] >= 1);
    KT_EXPECT(t, n1.zones[KMM_ZONE_DMA32].free_blocks[9] >= 1);
    KT_EXPECT_EQ(t, n0.zones[KMM_ZONE_DMA32].free_pages, 18 * MIB / PAGE);
    KT_EXPECT_EQ(t, n1.zones[KMM_ZONE_DMA32].free_pages, 30 * MIB / PAGE);
    EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(numa, per_node_statistics_add_up_to_the_totals)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    KT_EXPECT_EQ(t, kmm_page_node_count(f.k), 2);
    struct kmm_node_stats none;
    KT_EXPECT_EQ(t, kmm_page_node_stats(f.k, 2, &none), KMM_ENOENT);

    /* A mix: each CPU takes some of its own node and, with node 1's
     * Normal memory used up, some of node 0's. */
    static uint64_t p0[64], p1[8192];
    KT_ASSERT(t, hosted_cpu_enter(0));
    for (unsigned i = 0; i < N(p0); i++)
        KT_ASSERT(t, (p0[i] = kmm_page_alloc(f.k, i % 3, 0)) != 0);
    KT_ASSERT(t, hosted_cpu_enter(1));
    struct kmm_node_stats n1 = node_stats(f.k, 1);
    size_t n = 0;
    uint64_t want = n1.zones[KMM_ZONE_NORMAL].free_pages + 100;
    while (n < want && n < N(p1))
        KT_ASSERT(t, (p1[n++] = kmm_page_alloc(f.k, 0, 0)) != 0);

    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    struct kmm_node_stats ns[2] = {node_stats(f.k, 0), node_stats(f.k, 1)};
    KT_EXPECT_EQ(t, ns[0].cpus, 1);
    KT_EXPECT_EQ(t, ns[1].cpus, 1);
    KT_EXPECT_EQ(t, ns[0].managed_pages + ns[1].managed_pages, s.managed_pages);
    KT_EXPECT_EQ(t, ns[0].free_pages + ns[1].free_pages, s.free_pages);
    KT_EXPECT_EQ(t, ns[0].pcp_pages + ns[1].pcp_pages,
                 s.zones[0].pcp_pages + s.zones[1].pcp_pages + s.zones[2].pcp_pages);
    uint64_t calls = 0;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        KT_EXPECT_EQ(t, ns[0].zones[z].managed_pages + ns[1].zones[z].managed_pages,
                     s.zones[z].managed_pages);
        KT_EXPECT_EQ(t, ns[0].zones[z].free_pages + ns[1].zones[z].free_pages,
                     s.zones[z].free_pages);
        KT_EXPECT_EQ(t, ns[0].zones[z].alloc_calls + ns[1].zones[z].alloc_calls,
                     s.zones[z].alloc_calls);
        for (unsigned o = 0; o < KMM_PAGE_ORDERS; o++)
            KT_EXPECT_EQ(t, ns[0].zones[z].free_blocks[o] + ns[1].zones[z].free_blocks[o],
                         s.zones[z].free_blocks[o]);
        calls += s.zones[z].alloc_calls;
    }
    KT_EXPECT_EQ(t, ns[0].alloc_local + ns[0].alloc_lent + ns[1].alloc_local + ns[1].alloc_lent,
                 calls);
    KT_EXPECT_EQ(t, ns[0].alloc_remote + ns[1].alloc_remote, ns[0].alloc_lent + ns[1].alloc_lent);
    KT_EXPECT_EQ(t, ns[1].alloc_remote, 100); /* the hundred beyond node 1's Normal */
    KT_EXPECT_EQ(t, ns[0].alloc_remote, 0);

    free_all(f.k, p1, NULL, n);
    KT_ASSERT(t, hosted_cpu_enter(0));
    for (unsigned i = 0; i < N(p0); i++)
        KT_EXPECT_EQ(t, kmm_page_free(f.k, p0[i], i % 3), KMM_OK);
    kmm_page_drain_cpu(f.k);
    kmm_page_stats(f.k, &s);
    KT_EXPECT(t, same_buddyinfo(&s, &f.initial));
    EXPECT_HEALTHY(t, f.k);
    teardown(&f);
}

KTEST(numa, the_report_has_a_line_per_node)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    KT_ASSERT(t, hosted_cpu_enter(1));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    KT_EXPECT(t, pa != 0);
    static struct kt_text tx;
    tx.len = 0;
    struct kmm_sink sink = {kt_text_write, &tx};
    kmm_report(f.k, &sink);
    KT_EXPECT(t, ktest_contains(tx.buf, "NUMA nodes (2)"));
    KT_EXPECT(t, ktest_contains(tx.buf, "node 0: 1 CPUs, managed 47.0 MiB"));
    KT_EXPECT(t, ktest_contains(tx.buf, "node 1: 1 CPUs"));
    KT_EXPECT(t, ktest_contains(tx.buf, "local 1, remote 0, lent 0"));
    if (ktest_failed(t))
        ktest_diag(t, "report was:\n%s", tx.buf);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    teardown(&f);
}

KTEST(numa, one_node_machines_report_one_node_that_is_everything)
{
    const struct kmm_region small[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(small, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = small, .region_count = 1, .cpu_count = 1};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    uint64_t pa = kmm_page_alloc(k, 1, 0);
    KT_EXPECT(t, pa != 0);
    struct kmm_page_stats s;
    struct kmm_node_stats n;
    kmm_page_stats(k, &s);
    KT_EXPECT_EQ(t, kmm_page_node_count(k), 1);
    KT_EXPECT_EQ(t, kmm_page_node_stats(k, 0, &n), KMM_OK);
    KT_EXPECT_EQ(t, n.managed_pages, s.managed_pages);
    KT_EXPECT_EQ(t, n.free_pages, s.free_pages);
    KT_EXPECT_EQ(t, n.cpus, 1);
    KT_EXPECT_EQ(t, n.alloc_remote + n.alloc_lent, 0);
    KT_EXPECT_EQ(t, n.alloc_local, s.zones[0].alloc_calls + s.zones[1].alloc_calls);
    KT_EXPECT_EQ(t, kmm_page_free(k, pa, 1), KMM_OK);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kmm_fini(k);
    hosted_machine_destroy(m);
}
