/*
 * test_grow_threads.c - growth with more than one CPU: two CPUs growing
 * deferred memory at once, a hot-add racing allocations, and a CPU growing
 * its own node's memory first. Hosted only (threads act as CPUs, NUMA from
 * the hosted port); the racing tests are what ThreadSanitizer looks at.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "hosted.h"
#include "ktest.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)
#define PAGE UINT64_C(4096)

/* What one CPU took: blocks and their orders (static storage, so that a
 * failing test leaks nothing). */
#define HAUL_MAX 65536
struct haul {
    uint64_t pa[HAUL_MAX];
    uint8_t order[HAUL_MAX];
    size_t n;
    uint64_t pages;
};

static struct haul haul_a, haul_b;

static struct haul *haul_init(struct haul *h)
{
    h->n = 0;
    h->pages = 0;
    return h;
}

/* Takes blocks of the order until one fails or the haul is full. */
static bool take(struct kmm *k, struct haul *h, unsigned order)
{
    if (h->n == HAUL_MAX)
        return false;
    uint64_t pa = kmm_page_alloc(k, order, 0);
    if (!pa)
        return false;
    h->pa[h->n] = pa;
    h->order[h->n++] = (uint8_t)order;
    h->pages += UINT64_C(1) << order;
    return true;
}

static void take_all(struct kmm *k, struct haul *h)
{
    while (take(k, h, KMM_PAGE_MAX_ORDER))
        ;
    while (take(k, h, 0))
        ;
}

static bool give_all(struct kmm *k, struct haul *h)
{
    bool ok = true;
    for (size_t i = h->n; i-- > 0;)
        ok &= kmm_page_free(k, h->pa[i], h->order[i]) == KMM_OK;
    h->n = 0;
    h->pages = 0;
    kmm_page_drain_cpu(k);
    return ok;
}

/* Whether any page is in two blocks of the hauls (sorts them). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool all_disjoint(struct haul *const *hauls, size_t nhauls)
{
    static uint64_t v[2 * HAUL_MAX];
    size_t n = 0;
    for (size_t i = 0; i < nhauls; i++)
        for (size_t j = 0; j < hauls[i]->n; j++)
            v[n++] = hauls[i]->pa[j] | hauls[i]->order[j]; /* order in the low bits */
    qsort(v, n, sizeof(*v), cmp_u64);
    bool ok = true;
    for (size_t i = 1; i < n; i++) {
        uint64_t prev_end = (v[i - 1] & ~(PAGE - 1)) + (PAGE << (v[i - 1] & (PAGE - 1)));
        ok &= prev_end <= (v[i] & ~(PAGE - 1));
    }
    return ok;
}

static bool healthy(struct kmm *k)
{
    struct kmm_check_result r;
    return kmm_check(k, &r) == KMM_CHECK_OK;
}

/* A thread that acts as CPU cpu and runs fn(arg). */
struct cpu_thread {
    pthread_t th;
    unsigned cpu;
    void (*fn)(void *);
    void *arg;
    bool entered;
};

static void *cpu_main(void *p)
{
    struct cpu_thread *c = p;
    c->entered = hosted_cpu_enter(c->cpu);
    if (c->entered) {
        c->fn(c->arg);
        hosted_cpu_exit();
    }
    return NULL;
}

static bool cpu_start(struct cpu_thread *c, unsigned cpu, void (*fn)(void *), void *arg)
{
    *c = (struct cpu_thread){.cpu = cpu, .fn = fn, .arg = arg};
    return pthread_create(&c->th, NULL, cpu_main, c) == 0;
}

#define GROW_ROUNDS 4

/* --- two CPUs growing at once ----------------------------------------------------------- */

struct grower {
    struct kmm *k;
    struct haul *h;
    atomic_int *go;
};

/* Both CPUs start together (go counts the ready ones), then take it all. */
static void grow_by_allocating(void *p)
{
    struct grower *g = p;
    atomic_fetch_add(g->go, 1);
    while (atomic_load(g->go) < 2)
        ;
    take_all(g->k, g->h);
}

KTEST(grow_threads, two_cpus_growing_at_once_never_initialise_a_section_twice)
{
    /* 1 GiB above 4 GiB initialised at init, 3 GiB deferred. */
    static const struct kmm_region ram[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {4 * GIB, 4 * GIB, KMM_MEM_USABLE},
    };
    struct hosted_machine *m = hosted_machine_from_map(ram, N(ram), 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = ram, .region_count = N(ram), .cpu_count = 2};
    struct grower a = {.h = haul_init(&haul_a)}, b = {.h = haul_init(&haul_b)};
    /* Several fresh instances: how the two CPUs interleave is up to the
     * host's scheduler, so one round may see little overlap. */
    unsigned both = 0;
    for (unsigned round = 0; round < GROW_ROUNDS && !ktest_failed(t); round++) {
        struct kmm *k;
        KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
        struct kmm_page_stats s0, s;
        kmm_page_stats(k, &s0);
        KT_ASSERT(t, s0.deferred_pages > 0);
        atomic_int go = 0;
        a.k = b.k = k;
        a.go = b.go = &go;
        struct cpu_thread other;
        KT_ASSERT(t, cpu_start(&other, 1, grow_by_allocating, &b));
        grow_by_allocating(&a); /* this thread is CPU 0 */
        pthread_join(other.th, NULL);
        KT_ASSERT(t, other.entered);

        kmm_page_stats(k, &s);
        struct haul *hauls[] = {a.h, b.h};
        KT_EXPECT(t, all_disjoint(hauls, N(hauls)));
        KT_EXPECT_EQ(t, s.deferred_pages, 0);
        KT_EXPECT_EQ(t, s.managed_pages, s0.managed_pages + s0.deferred_pages);
        KT_EXPECT_EQ(t, a.h->pages + b.h->pages, s.managed_pages - s0.allocated_pages);
        both += a.h->n > 0 && b.h->n > 0;
        KT_EXPECT(t, healthy(k));
        KT_EXPECT(t, give_all(k, a.h) && give_all(k, b.h));
        KT_EXPECT(t, healthy(k));
        kmm_fini(k);
    }
    ktest_diag(t, "both CPUs allocated in %u of %u rounds", both, GROW_ROUNDS);
    hosted_machine_destroy(m);
}

/* --- a hot-add racing allocations ---------------------------------------------------- */

struct adder {
    struct kmm *k;
    atomic_int *go, *done;
    int err[4];
};

/* Adds [8 GiB, 9 GiB) in four pieces of two sections each. */
static void add_pieces(void *p)
{
    struct adder *a = p;
    while (!atomic_load(a->go))
        ;
    for (unsigned i = 0; i < 4; i++)
        a->err[i] =
            kmm_page_add_memory(a->k, 8 * GIB + (uint64_t)i * 256 * MIB, 256 * MIB, KMM_MEM_USABLE);
    atomic_store(a->done, 1);
}

KTEST(grow_threads, hot_add_racing_allocations_hands_out_every_page_once)
{
    static const struct kmm_region ram[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {4 * GIB, 1 * GIB, KMM_MEM_USABLE},
        {8 * GIB, 1 * GIB, KMM_MEM_USABLE}, /* not in the initial map: hot-added */
    };
    struct hosted_machine *m = hosted_machine_from_map(ram, N(ram), 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {.port = hosted_machine_port(m),
                             .regions = ram,
                             .region_count = 2,
                             .cpu_count = 2,
                             .hotplug_limit = 9 * GIB};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    struct kmm_page_stats s0;
    kmm_page_stats(k, &s0);

    atomic_int go = 0, done = 0;
    struct adder add = {.k = k, .go = &go, .done = &done};
    struct haul *h = haul_init(&haul_a);
    struct cpu_thread other;
    KT_ASSERT(t, cpu_start(&other, 1, add_pieces, &add));
    atomic_store(&go, 1);
    /* Allocate while the memory arrives, blocks and single pages (the CPU
     * cache path) mixed; a failure before the adder is done only means the
     * next piece is not there yet. */
    for (;;) {
        bool was_done = atomic_load(&done), got = take(k, h, KMM_PAGE_MAX_ORDER);
        for (unsigned i = 0; i < 8; i++)
            got |= take(k, h, 0);
        if (!got && was_done)
            break;
    }
    pthread_join(other.th, NULL);
    KT_ASSERT(t, other.entered);
    take_all(k, h);

    for (unsigned i = 0; i < 4; i++)
        KT_EXPECT_EQ(t, add.err[i], KMM_OK);
    struct kmm_page_stats s;
    kmm_page_stats(k, &s);
    struct haul *hauls[] = {h};
    KT_EXPECT(t, all_disjoint(hauls, 1));
    KT_EXPECT_EQ(t, s.metadata_pages, s0.metadata_pages + UINT64_C(4) * 2 * 128);
    KT_EXPECT_EQ(t, s.managed_pages, s0.managed_pages + UINT64_C(4) * (65536 - 2 * 128));
    KT_EXPECT_EQ(t, h->pages, s.managed_pages - s0.allocated_pages);
    KT_EXPECT_EQ(t, s.free_pages, 0);
    KT_EXPECT(t, healthy(k));
    KT_EXPECT(t, give_all(k, h));
    KT_EXPECT(t, healthy(k));
    kmm_fini(k);
    hosted_machine_destroy(m);
}

/* --- growth is node-local first ---------------------------------------------------------- */

struct local {
    struct kmm *k;
    struct haul *h;
    uint64_t next; /* the first block after the node's initialised Normal memory ran out */
};

static void take_node1(void *p)
{
    struct local *l = p;
    while (l->h->n < 256 && take(l->k, l->h, KMM_PAGE_MAX_ORDER))
        ;
    l->next = kmm_page_alloc(l->k, KMM_PAGE_MAX_ORDER, 0);
}

KTEST(grow_threads, a_cpu_grows_its_own_nodes_deferred_memory_before_using_another_node)
{
    static const struct kmm_region ram[] = {
        {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
        {4 * GIB, 4 * GIB, KMM_MEM_USABLE},
    };
    static const struct hosted_node_range node1[] = {{6 * GIB, 2 * GIB, 1}};
    static const unsigned cpu_nodes[] = {0, 1};
    struct hosted_machine_config mc = {.ram = ram,
                                       .ram_count = N(ram),
                                       .node_count = 2,
                                       .node_ranges = node1,
                                       .node_range_count = N(node1),
                                       .cpu_node = cpu_nodes,
                                       .cpu_node_count = N(cpu_nodes)};
    struct hosted_machine *m = hosted_machine_create(&mc);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = ram, .region_count = N(ram), .cpu_count = 2};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);

    /* Node 1's initialised Normal memory is [6 GiB, 7 GiB): 256 blocks of
     * order 10. The next block comes from node 1's deferred memory, not
     * from node 0, which has plenty free. */
    struct local l = {.k = k, .h = haul_init(&haul_a)};
    struct cpu_thread c1;
    KT_ASSERT(t, cpu_start(&c1, 1, take_node1, &l));
    pthread_join(c1.th, NULL);
    KT_ASSERT(t, c1.entered);
    KT_EXPECT_EQ(t, l.h->n, 256);
    bool node1_first = true;
    for (size_t i = 0; i < l.h->n; i++)
        node1_first &= l.h->pa[i] >= 6 * GIB && l.h->pa[i] < 7 * GIB;
    KT_EXPECT(t, node1_first);
    KT_EXPECT(t, l.next >= 7 * GIB && l.next < 8 * GIB);
    if (l.next)
        KT_EXPECT_EQ(t, kmm_page_free(k, l.next, KMM_PAGE_MAX_ORDER), KMM_OK);
    KT_EXPECT(t, give_all(k, l.h));
    KT_EXPECT(t, healthy(k));
    kmm_fini(k);
    hosted_machine_destroy(m);
}
