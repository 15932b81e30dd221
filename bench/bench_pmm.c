/*
 * bench_pmm.c - P1 and P2 of WORKLOADS.md: the page allocator
 * (kmm_page_alloc / kmm_page_free) on a simulated machine.
 *
 * The machine: one usable RAM range [1 GiB, 2 GiB + meta), 1 GiB aligned
 * like the peers' pools. kmm puts its metadata (instance and frame database)
 * at the end of the range, so the range is sized for kmm to manage exactly
 * 1 GiB = 262,144 pages, the peers' pool: a probe instance on a larger
 * machine tells how many pages the metadata takes. The RAM is anonymous
 * memory with MADV_HUGEPAGE (hosted_machine_config.anonymous), pre-faulted
 * with memset before any timing, as WORKLOADS.md's arenas are.
 *
 * Each run re-initialises the allocator on the same machine (kmm_fini +
 * kmm_init) and, after its untimed teardown, checks that every page came
 * back (free == managed): a benchmark of an allocator that loses pages
 * would measure nothing.
 *
 * The floor of P1 is the bare operation a page allocator cannot do without:
 * popping and pushing pages on an intrusive LIFO free list threaded through
 * 4096 page nodes, in the same loop. Its two functions are kept out of line
 * and opaque to the optimiser, as kmm's are, being in another translation
 * unit without LTO.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <kmm/kmm.h>
#include <kmm/page.h>

#include "hosted.h"

#define GIB (UINT64_C(1) << 30)
#define MIB (UINT64_C(1) << 20)

/* The pool of P1 and P2: 1 GiB of 4 KiB pages. */
#define POOL_BASE   GIB
#define POOL_PAGES  (GIB >> KMM_PAGE_SHIFT) /* 262,144 */
/* Room for kmm's metadata on the probe machine. */
#define PROBE_SLACK (32 * MIB)

/* --- the simulated machine --------------------------------------------------- */

struct pmm_env {
    struct hosted_machine *m;
    struct kmm_region ram;
    struct kmm *k;
    uint64_t free0; /* free pages right after init (the kernel space holds some) */
};

static struct hosted_machine *machine_create(const struct kmm_region *ram)
{
    struct hosted_machine_config mc = {.ram = ram, .ram_count = 1, .anonymous = true};
    return hosted_machine_create(&mc);
}

static int instance_up(struct pmm_env *e)
{
    struct kmm_config cfg = {
        .port = hosted_machine_port(e->m),
        .regions = &e->ram,
        .region_count = 1,
        .cpu_count = 1, /* the benchmarks run on one thread: CPU 0 */
    };
    int err = kmm_init(&cfg, &e->k);
    if (err) {
        fprintf(stderr, "bench: kmm_init failed: %s\n", kmm_strerror(err));
        e->k = NULL;
        return -1;
    }
    kmm_page_drain_cpu(e->k);
    struct kmm_page_stats st;
    kmm_page_stats(e->k, &st);
    e->free0 = st.free_pages;
    return 0;
}

/* Tears the instance down after checking that every page is free again. */
static int instance_down(struct pmm_env *e, const char *workload)
{
    struct kmm_page_stats st;
    kmm_page_drain_cpu(e->k);
    kmm_page_stats(e->k, &st);
    kmm_fini(e->k);
    e->k = NULL;
    if (st.free_pages != e->free0) {
        fprintf(stderr, "%s: after teardown %" PRIu64 " of %" PRIu64 " managed pages are free\n",
                workload, st.free_pages, st.managed_pages);
        return -1;
    }
    return 0;
}

/* Creates the machine with a pool of exactly POOL_PAGES managed pages (if
 * kmm's metadata allows), pre-faults its RAM unless the workload only counts
 * instructions, and prints what it got. */
static int env_open(struct pmm_env *e, const char *workload, const struct bench_mode *mode)
{
    /* The probe: how many pages does kmm keep for itself on such a machine? */
    e->ram = (struct kmm_region){POOL_BASE, GIB + PROBE_SLACK, KMM_MEM_USABLE};
    e->m = machine_create(&e->ram);
    if (!e->m) {
        perror("bench: cannot create the simulated machine");
        return -1;
    }
    if (instance_up(e) != 0)
        return -1;
    struct kmm_page_stats st;
    kmm_page_stats(e->k, &st);
    kmm_fini(e->k);
    e->k = NULL;
    hosted_machine_destroy(e->m);

    e->ram.length = GIB + (st.metadata_pages << KMM_PAGE_SHIFT);
    e->m = machine_create(&e->ram);
    if (!e->m) {
        perror("bench: cannot create the simulated machine");
        return -1;
    }
    if (!mode->instr)
        memset((void *)(hosted_machine_direct_map(e->m) + e->ram.base), 0, e->ram.length);
    if (instance_up(e) != 0)
        return -1;
    kmm_page_stats(e->k, &st);
    kmm_fini(e->k);
    e->k = NULL;
    uint64_t end = e->ram.base + e->ram.length;
    printf("%s machine: RAM [%#" PRIx64 ", %#" PRIx64 "), anonymous, %s, thp_kb=%ld\n", workload,
           e->ram.base, end, mode->instr ? "not pre-faulted" : "pre-faulted", bench_thp_kb());
    printf("%s managed_pages=%" PRIu64 " metadata_pages=%" PRIu64 " (WORKLOADS.md's pool: %" PRIu64
           ")\n",
           workload, st.managed_pages, st.metadata_pages, POOL_PAGES);
    if (st.managed_pages < POOL_PAGES)
        printf("%s WARNING: kmm manages fewer pages than WORKLOADS.md's pool\n", workload);
    return 0;
}

static void env_close(struct pmm_env *e)
{
    if (e->k)
        kmm_fini(e->k);
    hosted_machine_destroy(e->m);
    e->m = NULL;
}

/* --- P1: page LIFO ----------------------------------------------------------- */

#define P1_ROUNDS 2442u
#define P1_BATCH  4096u
#define P1_PAIRS  ((uint64_t)P1_ROUNDS * P1_BATCH) /* 10,002,432 */
/* WORKLOADS.md's figures (2026-12-06): ns, and instructions where counted. */
#define P1_PEERS                                                                                   \
    "lla 11.5 (176 instr), o1heap 13.7 (188 instr), bsa_frame 38, mimalloc 41.8; bare list "       \
    "30 instr"
/* --instr: rounds counted, after one uncounted round that fills the CPU's
 * cache as the first of P1_ROUNDS does (a reduced count must not weigh the
 * refills of an empty cache 49 times more than the full run does). */
#define P1_INSTR_ROUNDS 50u

/* What a P1 loop counts besides time. */
struct p1_counts {
    uint64_t failures;  /* allocations that returned nothing */
    uint64_t bad_frees; /* frees that returned an error */
};

/* The P1 loop, specialised per allocator (constant function pointers, so
 * the calls it makes are direct calls): rounds batches of P1_BATCH
 * allocations, then their frees in reverse order. */
BENCH_INLINE void p1_loop(void *ctx, uint64_t *vec, unsigned rounds, uint64_t (*alloc)(void *),
                          int (*release)(void *, uint64_t), struct p1_counts *c)
{
    uint64_t failures = 0, bad = 0;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < P1_BATCH; i++) {
            uint64_t b = alloc(ctx);
            failures += b == 0;
            vec[i] = b;
        }
        for (unsigned i = P1_BATCH; i-- > 0;)
            if (vec[i])
                bad += release(ctx, vec[i]) != 0;
    }
    c->failures += failures;
    c->bad_frees += bad;
}

/* kmm: a 4096-byte, 4096-aligned request is one order-0 block. */
static uint64_t kmm_alloc_page(void *k)
{
    return kmm_page_alloc(k, 0, 0);
}

static int kmm_free_page(void *k, uint64_t pa)
{
    return kmm_page_free(k, pa, 0);
}

/*
 * The floor: an intrusive singly linked LIFO list of pages. Each page has a
 * node (the link and room for the rest of a 16-byte frame descriptor), the
 * nodes in one array, as Linux threads its free lists through struct page.
 * For comparison the harness also runs the same list with each node in its
 * page (xv6's kalloc): 4096 links 4 KiB apart all fall in one L1 set.
 */
struct floor_node {
    struct floor_node *next;
    uint64_t rest;
};

struct floor_list {
    struct floor_node *head;
};

BENCH_OPAQUE static struct floor_node *floor_pop(struct floor_list *l)
{
    struct floor_node *p = l->head;
    if (p)
        l->head = p->next;
    return p;
}

BENCH_OPAQUE static int floor_push(struct floor_list *l, struct floor_node *p)
{
    p->next = l->head;
    l->head = p;
    return 0;
}

static uint64_t floor_alloc_page(void *l)
{
    return (uint64_t)(uintptr_t)floor_pop(l);
}

static int floor_free_page(void *l, uint64_t p)
{
    return floor_push(l, (struct floor_node *)(uintptr_t)p);
}

/* Memory for the floor's nodes: 2 MiB aligned with MADV_HUGEPAGE like the
 * pool, pre-faulted. Freed with free(). */
static void *buffer_create(size_t len)
{
    len = (len + 2 * MIB - 1) & ~(2 * MIB - 1);
    void *p = aligned_alloc(2 * MIB, len);
    if (!p)
        return NULL;
    (void)madvise(p, len, MADV_HUGEPAGE);
    memset(p, 0, len);
    return p;
}

/* Runs the floor loop over P1_BATCH nodes stride bytes apart from base and
 * adds its time per pair to f. */
static void floor_run(char *base, size_t stride, uint64_t *vec, struct p1_counts *c,
                      struct bench_figure *f)
{
    struct floor_list fl = {NULL};
    for (unsigned i = 0; i < P1_BATCH; i++)
        floor_push(&fl, (struct floor_node *)(base + (size_t)i * stride));
    struct bench_clock clk;
    bench_clock_start(&clk);
    p1_loop(&fl, vec, P1_ROUNDS, floor_alloc_page, floor_free_page, c);
    struct bench_elapsed el = bench_clock_stop(&clk);
    bench_figure_add(f, &el, (double)P1_PAIRS);
}

#define P1_PAGES_BYTES ((size_t)P1_BATCH << KMM_PAGE_SHIFT)
#define P1_NODES_BYTES ((size_t)P1_BATCH * sizeof(struct floor_node))

/* Checks a loop's counts: no frees refused (allocations may fail only
 * where WORKLOADS.md allows, and there are none here). */
static int p1_counts_ok(const struct p1_counts *kc, const struct p1_counts *fc)
{
    if (kc->bad_frees || fc->bad_frees) {
        fprintf(stderr, "P1: %" PRIu64 " frees were refused\n", kc->bad_frees + fc->bad_frees);
        return -1;
    }
    return 0;
}

/* --instr: P1_INSTR_ROUNDS rounds of kmm's loop, after a warm-up round,
 * marked for callgrind with the split of each pair into the allocation, the
 * free and the rest (the loop); then as many of the floor's. */
static int p1_instr(struct pmm_env *e, uint64_t *vec, char *nodes)
{
    struct p1_counts kc = {0}, fc = {0};
    if (instance_up(e) != 0)
        return -1;
    p1_loop(e->k, vec, 1, kmm_alloc_page, kmm_free_page, &kc);
    char what[160];
    snprintf(what, sizeof(what),
             "P1 instr_per_pair %" PRIu64
             " instr_alloc=kmm_page_alloc instr_free=kmm_page_free instr_loop=-",
             (uint64_t)P1_INSTR_ROUNDS * P1_BATCH);
    bench_instr_begin();
    p1_loop(e->k, vec, P1_INSTR_ROUNDS, kmm_alloc_page, kmm_free_page, &kc);
    bench_instr_end(what);
    printf("P1 counted %u rounds (%" PRIu64 " pairs) failures=%" PRIu64 "\n", P1_INSTR_ROUNDS,
           (uint64_t)P1_INSTR_ROUNDS * P1_BATCH, kc.failures);
    if (instance_down(e, "P1") != 0)
        return -1;

    struct floor_list fl = {NULL};
    for (unsigned i = 0; i < P1_BATCH; i++)
        floor_push(&fl, (struct floor_node *)(nodes + i * sizeof(struct floor_node)));
    snprintf(what, sizeof(what), "P1 floor_instr_per_pair %" PRIu64,
             (uint64_t)P1_INSTR_ROUNDS * P1_BATCH);
    bench_instr_begin();
    p1_loop(&fl, vec, P1_INSTR_ROUNDS, floor_alloc_page, floor_free_page, &fc);
    bench_instr_end(what);
    return p1_counts_ok(&kc, &fc);
}

/* Prints where the arenas are in this process (tools/bench-modes.sh reads
 * it): the pool, frame database and per-CPU data are at fixed offsets from
 * the 1 GiB aligned direct map; the rest moves with ASLR. */
static void p1_print_placement(const struct pmm_env *e, const uint64_t *vec, const char *nodes)
{
    static _Thread_local int tls_probe;
    int stack_probe;
    printf("P1 placement: direct_map=%#" PRIxPTR " vec=%p nodes=%p tls=%p stack=%p code=%p\n",
           hosted_machine_direct_map(e->m), (const void *)vec, (const void *)nodes,
           (void *)&tls_probe, (void *)&stack_probe, (void *)(uintptr_t)kmm_page_alloc);
}

int bench_pmm_p1(struct bench_results *r, const struct bench_mode *mode)
{
    struct pmm_env e = {0};
    uint64_t *vec = calloc(P1_BATCH, sizeof(*vec));
    char *nodes = buffer_create(P1_NODES_BYTES);
    char *pages = buffer_create(P1_PAGES_BYTES);
    int ret = -1;
    if (!vec || !nodes || !pages) {
        fprintf(stderr, "P1: out of memory for the harness\n");
        goto out;
    }
    if (env_open(&e, "P1", mode) != 0)
        goto out;
    if (mode->instr) {
        ret = p1_instr(&e, vec, nodes);
        goto out;
    }
    p1_print_placement(&e, vec, nodes);

    struct bench_figure kmm = {0}, floor = {0}, inpage = {0};
    struct p1_counts kc = {0}, fc = {0};
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        if (instance_up(&e) != 0)
            goto out;
        struct bench_clock clk;
        bench_clock_start(&clk);
        p1_loop(e.k, vec, P1_ROUNDS, kmm_alloc_page, kmm_free_page, &kc);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&kmm, &el, (double)P1_PAIRS);
        if (instance_down(&e, "P1") != 0)
            goto out;
        floor_run(nodes, sizeof(struct floor_node), vec, &fc, &floor);
        floor_run(pages, KMM_PAGE_SIZE, vec, &fc, &inpage);
    }
    double kmm_cpu = bench_figure_cpu(&kmm), floor_cpu = bench_figure_cpu(&floor);
    double share = bench_figure_share(&kmm);
    share = bench_figure_share(&floor) < share ? bench_figure_share(&floor) : share;
    bench_figure_print("P1 kmm   ns/pair", &kmm);
    bench_figure_print("P1 floor ns/pair", &floor);
    bench_print_runs("P1 links-in-pages list cpu ns/pair", inpage.cpu, inpage.n,
                     bench_figure_cpu(&inpage));
    printf("P1 pairs=%" PRIu64 " failures=%" PRIu64 " floor_failures=%" PRIu64
           " thp_kb=%ld ratio=%.2f (CPU time)\n",
           P1_PAIRS, kc.failures, fc.failures, bench_thp_kb(), kmm_cpu / floor_cpu);
    bench_print_mode("P1", share);
    if (p1_counts_ok(&kc, &fc) != 0)
        goto out;
    bench_add_row(r, &(struct bench_row){.workload = "P1",
                                         .unit = "ns/pair",
                                         .ns = bench_figure_wall(&kmm),
                                         .cpu_ns = kmm_cpu,
                                         .share = share,
                                         .floor_ns = floor_cpu,
                                         .peers = P1_PEERS});
    bench_add_field(r, "P1", "ns", bench_figure_wall(&kmm));
    bench_add_field(r, "P1", "cpu_ns", kmm_cpu);
    bench_add_field(r, "P1", "share", share);
    bench_add_field(r, "P1", "floor_ns", bench_figure_wall(&floor));
    bench_add_field(r, "P1", "floor_cpu_ns", floor_cpu);
    ret = 0;
out:
    env_close(&e);
    free(pages);
    free(nodes);
    free(vec);
    return ret;
}

/* --- P2: page mixed orders, ~50 % full ---------------------------------------- */

#define P2_SEED        UINT64_C(0x5032)
#define P2_TARGET      (POOL_PAGES / 2) /* 131,072 live pages */
#define P2_STEPS       5000000u
/* --instr: the steps counted, the first of the same trace (the trace is
 * generated step by step, so its prefix is the same). */
#define P2_INSTR_STEPS 200000u
/* Live blocks never exceed live pages, which stay below TARGET + 2^9. */
#define P2_LIVE_MAX    (P2_TARGET + 512)
#define P2_EXPECTED    "P2 nfill=14092 nsteps=5000000 peak_live_pages=131583 hash=780951897b21b5f3"

/* The trace: ops[0 .. nfill) fill, ops[nfill .. nfill + P2_STEPS) timed. An
 * op k >= 0 allocates a block of order k (appended to the live set); -(i)-1
 * frees live[i] (swap-remove). */
struct p2_trace {
    int32_t *ops;
    size_t nfill;
    uint64_t peak_live_pages;
    uint64_t hash;
};

static unsigned p2_draw_order(struct bench_rng *rng)
{
    uint64_t u = bench_rng_below(rng, 100);
    if (u < 70)
        return 0;
    if (u < 82)
        return 1;
    if (u < 90)
        return 2;
    if (u < 95)
        return 3;
    return 4 + (unsigned)bench_rng_below(rng, 6);
}

/* Generates the fill and the first nsteps steps of the trace, as if every
 * allocation succeeded. Returns -1 if out of memory. */
static int p2_generate(struct p2_trace *t, unsigned nsteps)
{
    t->ops = malloc((P2_TARGET + nsteps) * sizeof(*t->ops));
    uint8_t *live = malloc(P2_LIVE_MAX);
    if (!t->ops || !live) {
        free(live);
        return -1;
    }
    struct bench_rng rng = {P2_SEED};
    size_t nops = 0, n = 0;
    uint64_t pages = 0, peak = 0;
    while (pages < P2_TARGET) {
        unsigned k = p2_draw_order(&rng);
        t->ops[nops++] = (int32_t)k;
        live[n++] = (uint8_t)k;
        pages += UINT64_C(1) << k;
        peak = pages > peak ? pages : peak;
    }
    t->nfill = nops;
    for (unsigned s = 0; s < nsteps; s++) {
        if (pages < P2_TARGET) {
            unsigned k = p2_draw_order(&rng);
            t->ops[nops++] = (int32_t)k;
            live[n++] = (uint8_t)k;
            pages += UINT64_C(1) << k;
            peak = pages > peak ? pages : peak;
        } else {
            size_t i = (size_t)bench_rng_below(&rng, n);
            t->ops[nops++] = -(int32_t)i - 1;
            pages -= UINT64_C(1) << live[i];
            live[i] = live[--n];
        }
    }
    free(live);
    t->peak_live_pages = peak;
    t->hash = BENCH_FNV_BASIS;
    for (size_t i = 0; i < nops; i++)
        t->hash = bench_fnv_i32(t->hash, t->ops[i]);
    return 0;
}

/* A live block: its address with its order in the low bits (addresses are
 * page aligned); the address is 0 if the allocation failed. */
#define P2_ORDER_MASK (KMM_PAGE_SIZE - 1)

struct p2_counts {
    uint64_t failures;
    uint64_t bad_frees;
};

/* Replays ops[0 .. nops) on k with the live set live[0 .. *n). */
static void p2_replay(struct kmm *k, const int32_t *ops, size_t nops, uint64_t *live, size_t *n,
                      struct p2_counts *c)
{
    size_t nlive = *n;
    uint64_t failures = 0, bad = 0;
    for (size_t j = 0; j < nops; j++) {
        int32_t op = ops[j];
        if (op >= 0) {
            uint64_t pa = kmm_page_alloc(k, (unsigned)op, 0);
            failures += pa == 0;
            live[nlive++] = pa | (uint64_t)op;
        } else {
            size_t i = (size_t)(-(int64_t)op - 1);
            uint64_t b = live[i];
            live[i] = live[--nlive];
            if (b & ~P2_ORDER_MASK)
                bad += kmm_page_free(k, b & ~P2_ORDER_MASK, (unsigned)(b & P2_ORDER_MASK)) != 0;
        }
    }
    *n = nlive;
    c->failures += failures;
    c->bad_frees += bad;
}

/* Frees the whole live set (teardown). */
static void p2_teardown(struct kmm *k, const uint64_t *live, size_t *n, struct p2_counts *c)
{
    for (size_t i = 0; i < *n; i++)
        if (live[i] & ~P2_ORDER_MASK)
            c->bad_frees += kmm_page_free(k, live[i] & ~P2_ORDER_MASK,
                                          (unsigned)(live[i] & P2_ORDER_MASK)) != 0;
    *n = 0;
}

/* --instr: the fill, then P2_INSTR_STEPS steps marked for callgrind. */
static int p2_instr(struct pmm_env *e, const struct p2_trace *t, uint64_t *live)
{
    struct p2_counts fill = {0}, counted = {0}, down = {0};
    size_t n = 0;
    if (instance_up(e) != 0)
        return -1;
    p2_replay(e->k, t->ops, t->nfill, live, &n, &fill);
    char what[64];
    snprintf(what, sizeof(what), "P2 instr_per_step %u", P2_INSTR_STEPS);
    bench_instr_begin();
    p2_replay(e->k, t->ops + t->nfill, P2_INSTR_STEPS, live, &n, &counted);
    bench_instr_end(what);
    p2_teardown(e->k, live, &n, &down);
    printf("P2 counted %u steps failures=%" PRIu64 "\n", P2_INSTR_STEPS, counted.failures);
    if (instance_down(e, "P2") != 0)
        return -1;
    if (fill.bad_frees || counted.bad_frees || down.bad_frees) {
        fprintf(stderr, "P2: frees were refused\n");
        return -1;
    }
    return 0;
}

int bench_pmm_p2(struct bench_results *r, const struct bench_mode *mode)
{
    struct p2_trace t = {0};
    struct pmm_env e = {0};
    uint64_t *live = calloc(P2_LIVE_MAX, sizeof(*live));
    int ret = -1;
    if (!live || p2_generate(&t, mode->instr ? P2_INSTR_STEPS : P2_STEPS) != 0) {
        fprintf(stderr, "P2: out of memory for the trace\n");
        goto out;
    }
    if (mode->instr) {
        /* A prefix of the trace: its hash is checked by the timed run. */
        if (env_open(&e, "P2", mode) == 0)
            ret = p2_instr(&e, &t, live);
        goto out;
    }
    char line[128];
    snprintf(line, sizeof(line),
             "P2 nfill=%zu nsteps=%u peak_live_pages=%" PRIu64 " hash=%016" PRIx64, t.nfill,
             P2_STEPS, t.peak_live_pages, t.hash);
    printf("%s\n", line);
    if (strcmp(line, P2_EXPECTED) != 0) {
        fprintf(stderr, "P2: the trace differs from WORKLOADS.md's:\n  want %s\n  got  %s\n",
                P2_EXPECTED, line);
        goto out;
    }
    if (env_open(&e, "P2", mode) != 0)
        goto out;

    struct bench_figure fig = {0};
    struct p2_counts fill = {0}, timed = {0}, down = {0};
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        size_t n = 0;
        if (instance_up(&e) != 0)
            goto out;
        p2_replay(e.k, t.ops, t.nfill, live, &n, &fill);
        struct bench_clock clk;
        bench_clock_start(&clk);
        p2_replay(e.k, t.ops + t.nfill, P2_STEPS, live, &n, &timed);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&fig, &el, P2_STEPS);
        p2_teardown(e.k, live, &n, &down);
        if (instance_down(&e, "P2") != 0)
            goto out;
    }
    bench_figure_print("P2 kmm   ns/step", &fig);
    printf("P2 failures: fill=%" PRIu64 " timed=%" PRIu64 " (over %u runs) thp_kb=%ld\n",
           fill.failures, timed.failures, BENCH_RUNS, bench_thp_kb());
    bench_print_mode("P2", bench_figure_share(&fig));
    if (fill.bad_frees || timed.bad_frees || down.bad_frees) {
        fprintf(stderr, "P2: %" PRIu64 " frees were refused\n",
                fill.bad_frees + timed.bad_frees + down.bad_frees);
        goto out;
    }
    bench_add_row(r, &(struct bench_row){.workload = "P2",
                                         .unit = "ns/step",
                                         .ns = bench_figure_wall(&fig),
                                         .cpu_ns = bench_figure_cpu(&fig),
                                         .share = bench_figure_share(&fig),
                                         .floor_ns = -1,
                                         .peers = "o1heap 56 (failing allocations), bsa_frame "
                                                  "57, mimalloc 81"});
    bench_add_field(r, "P2", "ns", bench_figure_wall(&fig));
    bench_add_field(r, "P2", "cpu_ns", bench_figure_cpu(&fig));
    bench_add_field(r, "P2", "share", bench_figure_share(&fig));
    ret = 0;
out:
    if (e.m)
        env_close(&e);
    free(t.ops);
    free(live);
    return ret;
}
