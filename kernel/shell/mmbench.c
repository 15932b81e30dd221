/*
 * mmbench.c - the Linux anchor's workloads over a kmm instance (mmbench.h).
 *
 * Each bench_* function follows the module's function of the same name line
 * for line: the same constants, the same xs64() draws in the same places,
 * the clock read around the same loop, the same fail counting (summed over
 * the repetitions, as the module does). What differs is only the call made:
 *
 *   Linux (module)                     here
 *   alloc_page(GFP_KERNEL)             kmm_page_alloc(k, 0, 0)
 *   __GFP_ZERO                         KMM_GFP_ZERO
 *   alloc_pages(gfp, o) / __free_pages kmm_page_alloc(k, o, 0) / kmm_page_free
 *   kmalloc(n, GFP_KERNEL) / kfree     kmm_malloc(k, n, 0) / kmm_free
 *   vmap / vunmap                      kmm_vmap / kmm_vunmap
 *   vm_map_ram / vm_unmap_ram          kmm_vm_map_ram / kmm_vm_unmap_ram
 *   get_vm_area + populated tables     kmm_kva_alloc + kmm_kva_populate
 *   apply_to_page_range (set_pte)      kmm_vm_map of one page
 *   apply_to_existing_page_range       kmm_vm_unmap (which also invalidates
 *     + flush_tlb_kernel_range           the TLB, as flush_tlb_kernel_range)
 *
 * The bookkeeping arrays (the module's vmalloc'd pg[], blk[], slot[] and
 * m1_pages[]) are blocks of the page allocator used through the direct map,
 * so they are usable in every world (a test machine's vmalloc'd memory is
 * not mapped live in the kernel), and they are taken before the clock starts.
 */
#include "mmbench.h"

#include <kmm/fmt.h>
#include <kmm/heap.h>
#include <kmm/page.h>
#include <kmm/port.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

/* ---------------- PRNG: xorshift64 (Marsaglia 13/7/17), the module's ---------------- */
static inline uint64_t xs64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

#define SEED_P2 UINT64_C(0x9E3779B97F4A7C15)
#define SEED_H2 UINT64_C(0xD1B54A32D192ED03)

/* One run's state: the configuration with its defaults applied. */
struct bench {
    const struct mmbench_config *cfg;
    struct kmm *k;
    unsigned reps, scale_div;
    struct mmbench_summary *sum;
    uint64_t *m1_pages; /* M1's backing pages (physical addresses) */
};

#define LINE_MAX_BYTES 256u

static void say(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct bench *b, const char *fmt, ...)
{
    char line[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    b->cfg->out.write(b->cfg->out.ctx, line, n);
}

static uint64_t now(const struct bench *b)
{
    return b->cfg->now_ns(b->cfg->clock_ctx);
}

static uint64_t scaled(const struct bench *b, uint64_t n)
{
    return n / b->scale_div;
}

static uint64_t ps_per_op(uint64_t ns, uint64_t ops)
{
    return ops ? ns * 1000u / ops : 0;
}

/* The module's report(): the median (sorted[n / 2]) and every run, in ns
 * with one decimal (truncated), from picoseconds per op. */
static void report(struct bench *b, const char *name, const uint64_t *ps, uint64_t ops,
                   uint64_t fails)
{
    uint64_t sorted[MMBENCH_REPS_MAX] = {0};
    unsigned n = b->reps;
    for (unsigned i = 0; i < n; i++) { /* insertion sort: n <= 15 */
        uint64_t v = ps[i];
        unsigned j = i;
        for (; j > 0 && sorted[j - 1] > v; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = v;
    }
    uint64_t med = sorted[n / 2];
    char runs[LINE_MAX_BYTES / 2];
    size_t len = 0;
    for (unsigned i = 0; i < n && len < sizeof(runs); i++)
        len += kmm_snprintf(runs + len, sizeof(runs) - len, "%s%llu.%llu", i ? "," : "",
                            (unsigned long long)(ps[i] / 1000),
                            (unsigned long long)(ps[i] % 1000 / 100));
    say(b, "mmbench: RESULT %s %llu.%llu ns/op runs=%s ops=%llu fail=%llu\n", name,
        (unsigned long long)(med / 1000), (unsigned long long)(med % 1000 / 100), runs,
        (unsigned long long)ops, (unsigned long long)fails);
    b->sum->results++;
    b->sum->fails += fails;
}

static void skip(struct bench *b, const char *what, const char *why)
{
    say(b, "mmbench: SKIP %s: %s\n", what, why);
    b->sum->skipped++;
}

/* A bookkeeping array of `bytes` from the page allocator, through the
 * direct map; *pa gets its block for array_free. NULL if there is none. */
static void *array_alloc(struct bench *b, uint64_t bytes, uint64_t *pa)
{
    size_t pages = (size_t)((bytes + KMM_PAGE_SIZE - 1) >> KMM_PAGE_SHIFT);
    *pa = kmm_pages_alloc(b->k, pages, 0);
    if (!*pa)
        return NULL;
    return (void *)(kmm_port_direct_map(kmm_port_of(b->k)) + (uintptr_t)*pa);
}

static void array_free(struct bench *b, uint64_t pa, uint64_t bytes)
{
    kmm_pages_free(b->k, pa, (size_t)((bytes + KMM_PAGE_SIZE - 1) >> KMM_PAGE_SHIFT));
}

/* ======================= P1: page LIFO ======================= */
#define P1_BATCH 4096u
#define P1_TOTAL (UINT64_C(1024) * 1024)

static void bench_p1(struct bench *b, const char *name, kmm_gfp_t gfp)
{
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, ps_a[MMBENCH_REPS_MAX] = {0}, ps_f[MMBENCH_REPS_MAX] = {0};
    uint64_t fails = 0;
    uint64_t total = scaled(b, P1_TOTAL), nbatch = total / P1_BATCH, arr;
    uint64_t *pg = array_alloc(b, P1_BATCH * sizeof(*pg), &arr);
    if (!pg) {
        skip(b, name, "no memory for the page array");
        return;
    }
    for (unsigned r = 0; r < b->reps; r++) {
        uint64_t t0 = now(b), t1, ta = 0, tf = 0;
        for (uint64_t bt = 0; bt < nbatch; bt++) {
            uint64_t tx = now(b);
            for (unsigned i = 0; i < P1_BATCH; i++) {
                pg[i] = kmm_page_alloc(b->k, 0, gfp);
                if (__builtin_expect(!pg[i], 0))
                    fails++;
            }
            t1 = now(b);
            ta += t1 - tx;
            for (unsigned i = P1_BATCH; i-- > 0;)
                if (__builtin_expect(pg[i] != 0, 1))
                    kmm_page_free(b->k, pg[i], 0);
            tf += now(b) - t1;
        }
        t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, nbatch * P1_BATCH);
        ps_a[r] = ps_per_op(ta, nbatch * P1_BATCH);
        ps_f[r] = ps_per_op(tf, nbatch * P1_BATCH);
    }
    char nm[64];
    report(b, name, ps, nbatch * P1_BATCH, fails);
    kmm_snprintf(nm, sizeof(nm), "%s.alloc_only", name);
    report(b, nm, ps_a, nbatch * P1_BATCH, fails);
    kmm_snprintf(nm, sizeof(nm), "%s.free_only", name);
    report(b, nm, ps_f, nbatch * P1_BATCH, fails);
    array_free(b, arr, P1_BATCH * sizeof(*pg));
}

/* ======================= P2: mixed orders ======================= */
#define P2_BUDGET_PAGES ((UINT64_C(256) << 20) >> KMM_PAGE_SHIFT) /* 65536 */
#define P2_TARGET_PAGES (P2_BUDGET_PAGES / 2)                     /* 32768 live */
#define P2_STEPS        (UINT64_C(1000) * 1000)
#define P2_FAILS_MAX    100000u /* the fill gives up after this many failures */

struct p2blk {
    uint64_t pa;
    unsigned order;
};

static inline unsigned p2_order(uint64_t u)
{
    unsigned r = (unsigned)(u % 100);
    if (r < 70)
        return 0;
    if (r < 82)
        return 1;
    if (r < 90)
        return 2;
    if (r < 95)
        return 3;
    return 4 + (unsigned)((u >> 32) % 6); /* uniform 4..9 */
}

static void bench_p2(struct bench *b)
{
    size_t maxblk = P2_TARGET_PAGES + 16;
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, fails = 0, steps = scaled(b, P2_STEPS), nfree_tot = 0, arr;
    struct p2blk *blk = array_alloc(b, maxblk * sizeof(*blk), &arr);
    if (!blk) {
        skip(b, "P2_mixed_order_step", "no memory for the block array");
        return;
    }
    for (unsigned r = 0; r < b->reps; r++) {
        uint64_t s = SEED_P2, live = 0;
        size_t n = 0;
        while (live < P2_TARGET_PAGES) { /* warm-up (untimed): fill to the 50% target */
            unsigned o = p2_order(xs64(&s));
            uint64_t p = kmm_page_alloc(b->k, o, 0);
            if (!p) {
                if (++fails > P2_FAILS_MAX)
                    break;
                continue;
            }
            blk[n].pa = p;
            blk[n].order = o;
            n++;
            live += UINT64_C(1) << o;
        }
        uint64_t t0 = now(b);
        for (uint64_t st = 0; st < steps; st++) {
            while (live >= P2_TARGET_PAGES) {
                size_t j = (size_t)(xs64(&s) % n);
                kmm_page_free(b->k, blk[j].pa, blk[j].order);
                live -= UINT64_C(1) << blk[j].order;
                blk[j] = blk[--n];
                nfree_tot++;
            }
            unsigned o = p2_order(xs64(&s));
            uint64_t p = kmm_page_alloc(b->k, o, 0);
            if (__builtin_expect(!p, 0)) {
                fails++;
                continue;
            }
            blk[n].pa = p;
            blk[n].order = o;
            n++;
            live += UINT64_C(1) << o;
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, steps);
        while (n) { /* teardown (untimed) */
            n--;
            kmm_page_free(b->k, blk[n].pa, blk[n].order);
        }
    }
    report(b, "P2_mixed_order_step", ps, steps, fails);
    uint64_t per = steps * b->reps;
    if (per)
        say(b, "mmbench: INFO P2 frees_per_step=%llu.%03llu\n",
            (unsigned long long)(nfree_tot / per),
            (unsigned long long)(nfree_tot * 1000 / per % 1000));
    array_free(b, arr, maxblk * sizeof(*blk));
}

/* ======================= H1: 64-byte blocks LIFO ======================= */
#define H1_BATCH 1000u
#define H1_TOTAL (UINT64_C(10) * 1000 * 1000)

static void bench_h1(struct bench *b)
{
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, fails = 0, nbatch = scaled(b, H1_TOTAL) / H1_BATCH, arr;
    void **obj = array_alloc(b, H1_BATCH * sizeof(void *), &arr);
    if (!obj) {
        skip(b, "H1_kmalloc64_lifo_pair", "no memory for the object array");
        return;
    }
    for (unsigned r = 0; r < b->reps; r++) {
        uint64_t t0 = now(b);
        for (uint64_t bt = 0; bt < nbatch; bt++) {
            for (unsigned i = 0; i < H1_BATCH; i++) {
                obj[i] = kmm_malloc(b->k, 64, 0);
                if (__builtin_expect(!obj[i], 0))
                    fails++;
            }
            for (unsigned i = H1_BATCH; i-- > 0;)
                kmm_free(b->k, obj[i]);
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, nbatch * H1_BATCH);
    }
    report(b, "H1_kmalloc64_lifo_pair", ps, nbatch * H1_BATCH, fails);
    array_free(b, arr, H1_BATCH * sizeof(void *));
}

/* ======================= H2: random sizes, 10,000 live ======================= */
#define H2_SLOTS 10000u
#define H2_STEPS (UINT64_C(5) * 1000 * 1000)

/* Log-uniform over [16, 4096] at octave granularity, linear inside an
 * octave: x uniform in 0..2048, size = ((256 + (x & 255)) << (x >> 8)) >> 4. */
static inline size_t h2_size(uint64_t u)
{
    unsigned x = (unsigned)((u >> 32) % 2049);
    return ((256u + (x & 255u)) << (x >> 8)) >> 4;
}

static void bench_h2(struct bench *b)
{
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, fails = 0, steps = scaled(b, H2_STEPS), bytes = 0, arr;
    void **slot = array_alloc(b, H2_SLOTS * sizeof(void *), &arr);
    if (!slot) {
        skip(b, "H2_kmalloc_rand_step", "no memory for the slot array");
        return;
    }
    for (unsigned r = 0; r < b->reps; r++) {
        uint64_t s = SEED_H2;
        for (unsigned i = 0; i < H2_SLOTS; i++) { /* untimed fill */
            slot[i] = kmm_malloc(b->k, h2_size(xs64(&s)), 0);
            if (!slot[i])
                fails++;
        }
        uint64_t t0 = now(b);
        for (uint64_t st = 0; st < steps; st++) {
            uint64_t u = xs64(&s);
            unsigned j = (unsigned)((u & 0xffffffffu) % H2_SLOTS);
            size_t sz = h2_size(u);
            kmm_free(b->k, slot[j]);
            slot[j] = kmm_malloc(b->k, sz, 0);
            if (__builtin_expect(!slot[j], 0))
                fails++;
            if (r == 0)
                bytes += sz;
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, steps);
        for (unsigned i = 0; i < H2_SLOTS; i++)
            kmm_free(b->k, slot[i]);
    }
    report(b, "H2_kmalloc_rand_step", ps, steps, fails);
    if (steps)
        say(b, "mmbench: INFO H2 mean_request_bytes=%llu\n", (unsigned long long)(bytes / steps));
    array_free(b, arr, H2_SLOTS * sizeof(void *));
}

/* ======================= M1: page-table map/unmap ======================= */
#define M1_PAGES       16384u                 /* 64 MiB of backing pages */
#define M1_TOTAL_PAGES (UINT64_C(256) * 1024) /* pages mapped and unmapped per rep */
#define M1D_RANGE      512u                   /* 2 MiB of consecutive addresses */
/* PAGE_KERNEL: read-write, no execute, global. */
#define M1_PROT        (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL)

static bool m1_alloc_backing(struct bench *b, uint64_t *arr)
{
    b->m1_pages = array_alloc(b, M1_PAGES * sizeof(uint64_t), arr);
    if (!b->m1_pages)
        return false;
    for (unsigned i = 0; i < M1_PAGES; i++) {
        b->m1_pages[i] = kmm_page_alloc(b->k, 0, 0);
        if (!b->m1_pages[i]) {
            while (i-- > 0)
                kmm_page_free(b->k, b->m1_pages[i], 0);
            array_free(b, *arr, M1_PAGES * sizeof(uint64_t));
            b->m1_pages = NULL;
            return false;
        }
    }
    return true;
}

static void m1_free_backing(struct bench *b, uint64_t arr)
{
    for (unsigned i = 0; i < M1_PAGES; i++)
        kmm_page_free(b->k, b->m1_pages[i], 0);
    array_free(b, arr, M1_PAGES * sizeof(uint64_t));
    b->m1_pages = NULL;
}

/* The module's vm_unmap_aliases(), untimed before every repetition of
 * M1a and M1b and after the last: the parked areas and the idle vmap
 * blocks given back, so each repetition starts from an empty window and
 * the run ends with nothing held. */
static void unmap_aliases(struct bench *b)
{
    kmm_kva_purge(b->k);
    kmm_vm_map_ram_drain(b->k);
}

/* M1a: kmm_vmap of npg pages + kmm_vunmap, ns per page. */
static void bench_m1_vmap(struct bench *b, unsigned npg)
{
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, fails = 0, iters = scaled(b, M1_TOTAL_PAGES) / npg;
    if (!iters)
        iters = 1;
    for (unsigned r = 0; r < b->reps; r++) {
        unsigned off = 0;
        unmap_aliases(b);
        uint64_t t0 = now(b);
        for (uint64_t it = 0; it < iters; it++) {
            void *va = kmm_vmap(b->k, b->m1_pages + off, npg, M1_PROT);
            if (__builtin_expect(!va, 0)) {
                fails++;
                continue;
            }
            kmm_vunmap(b->k, va);
            off += npg;
            if (off + npg > M1_PAGES)
                off = 0;
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, iters * npg);
    }
    unmap_aliases(b);
    char nm[64];
    kmm_snprintf(nm, sizeof(nm), "M1a_vmap_vunmap_%u_per_page", npg);
    report(b, nm, ps, iters * npg, fails);
}

/* Maps npg backing pages from off at va, one kmm_vm_map call each (the
 * module's one apply_to_page_range per page). Returns the failures. */
static uint64_t m1_map_each(struct bench *b, uint64_t va, unsigned off, unsigned npg)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(b->k);
    uint64_t fails = 0;
    for (unsigned i = 0; i < npg; i++)
        if (__builtin_expect(kmm_vm_map(ks, va + (uint64_t)i * KMM_PAGE_SIZE, b->m1_pages[off + i],
                                        KMM_PAGE_SIZE, M1_PROT) != KMM_OK,
                             0))
            fails++;
    return fails;
}

/* M1b: kmm_vm_map_ram of npg pages (this CPU's vmap block) +
 * kmm_vm_unmap_ram, ns per page. */
static void bench_m1_vmram(struct bench *b, unsigned npg)
{
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, fails = 0, iters = scaled(b, M1_TOTAL_PAGES) / npg;
    for (unsigned r = 0; r < b->reps; r++) {
        unsigned off = 0;
        unmap_aliases(b);
        uint64_t t0 = now(b);
        for (uint64_t it = 0; it < iters; it++) {
            void *va = kmm_vm_map_ram(b->k, b->m1_pages + off, npg, M1_PROT);
            if (__builtin_expect(!va, 0)) {
                fails++;
                continue;
            }
            kmm_vm_unmap_ram(b->k, va, npg);
            off += npg;
            if (off + npg > M1_PAGES)
                off = 0;
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, iters * npg);
    }
    unmap_aliases(b);
    char nm[64];
    kmm_snprintf(nm, sizeof(nm), "M1b_vm_map_ram_%u_per_page", npg);
    report(b, nm, ps, iters * npg, fails);
}

/* M1c: one page mapped and unmapped at the fixed address base, iters times;
 * with touch, one 8-byte read through the mapping in between. */
static void m1c_loop(struct bench *b, uint64_t base, bool touch, uint64_t *ps, uint64_t *fails)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(b->k);
    uint64_t iters = scaled(b, M1_TOTAL_PAGES);
    volatile uint64_t sink = 0;
    for (unsigned r = 0; r < b->reps; r++) {
        uint64_t t0 = now(b);
        for (uint64_t it = 0; it < iters; it++) {
            uint64_t pg = b->m1_pages[it & (M1_PAGES - 1)];
            if (__builtin_expect(kmm_vm_map(ks, base, pg, KMM_PAGE_SIZE, M1_PROT) != KMM_OK, 0))
                (*fails)++;
            else if (touch)
                sink += *(volatile const uint64_t *)(uintptr_t)base;
            kmm_vm_unmap(ks, base, KMM_PAGE_SIZE);
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, iters);
    }
    (void)sink;
}

static void bench_m1_pte(struct bench *b)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(b->k);
    uint64_t ps[MMBENCH_REPS_MAX] = {0}, fails = 0, base;
    uint64_t iters = scaled(b, M1_TOTAL_PAGES), nrng = scaled(b, M1_TOTAL_PAGES) / M1D_RANGE;
    if (kmm_kva_alloc(b->k, (uint64_t)M1D_RANGE * KMM_PAGE_SIZE, &base) != KMM_OK) {
        skip(b, "M1c/M1d", "no room for a 2 MiB range in the kernel virtual area window");
        return;
    }
    /* Populate the range's page tables once (untimed), as the module does:
     * they stay until the range is freed (kmm_kva_populate). A map and an
     * unmap first, so a failing map is seen here. */
    uint64_t populate = m1_map_each(b, base, 0, M1D_RANGE);
    kmm_vm_unmap(ks, base, (uint64_t)M1D_RANGE * KMM_PAGE_SIZE);
    if (!populate && kmm_kva_populate(b->k, base) != KMM_OK)
        populate = 1;
    if (populate) {
        skip(b, "M1c/M1d", "mapping the range failed");
        kmm_kva_free(b->k, base);
        return;
    }

    m1c_loop(b, base, false, ps, &fails);
    report(b, "M1c_pte_map_unmap_fixedva_pair", ps, iters, fails);

    if (b->cfg->live_mappings) {
        m1c_loop(b, base, true, ps, &fails);
        report(b, "M1c_pte_map_touch_unmap_fixedva_pair", ps, iters, fails);
    } else {
        skip(b, "M1c_pte_map_touch_unmap_fixedva_pair",
             "the kernel space's mappings are not live on this machine");
    }

    /* M1d: 512 pages mapped one call each at consecutive addresses, then
     * the 2 MiB unmapped in one call (one TLB invalidation); ns per page. */
    for (unsigned r = 0; r < b->reps; r++) {
        unsigned off = 0;
        uint64_t t0 = now(b);
        for (uint64_t it = 0; it < nrng; it++) {
            fails += m1_map_each(b, base, off, M1D_RANGE);
            kmm_vm_unmap(ks, base, (uint64_t)M1D_RANGE * KMM_PAGE_SIZE);
            off = (off + M1D_RANGE) & (M1_PAGES - 1);
        }
        uint64_t t1 = now(b);
        ps[r] = ps_per_op(t1 - t0, nrng * M1D_RANGE);
    }
    report(b, "M1d_pte_map512_then_rangeunmap_per_page", ps, nrng * M1D_RANGE, fails);
    kmm_kva_free(b->k, base);
}

static void bench_m1(struct bench *b, unsigned tests)
{
    uint64_t arr;
    if (!m1_alloc_backing(b, &arr)) {
        skip(b, "M1", "cannot allocate backing pages");
        return;
    }
    if (tests & MMBENCH_M1A) {
        bench_m1_vmap(b, 1);
        bench_m1_vmap(b, 16);
        bench_m1_vmap(b, 512);
        bench_m1_vmap(b, 16384);
    }
    if (tests & MMBENCH_M1B) {
        bench_m1_vmram(b, 1);
        bench_m1_vmram(b, 16);
    }
    if (tests & MMBENCH_M1C)
        bench_m1_pte(b);
    m1_free_backing(b, arr);
}

int mmbench_run(const struct mmbench_config *cfg, struct mmbench_summary *out)
{
    struct mmbench_summary ignored;
    if (!out)
        out = &ignored;
    *out = (struct mmbench_summary){0};
    if (!cfg || !cfg->out.write)
        return KMM_EINVAL;
    struct bench b = {
        .cfg = cfg,
        .k = cfg->k,
        .reps = cfg->reps ? cfg->reps : MMBENCH_REPS_DEFAULT,
        .scale_div = cfg->scale_div ? cfg->scale_div : 1,
        .sum = out,
    };
    unsigned tests = cfg->tests ? cfg->tests : MMBENCH_TESTS_ALL;
    if (!cfg->k || !cfg->now_ns) {
        say(&b, "mmbench: cannot run: %s\n", cfg->k ? "no clock" : "no instance");
        return KMM_EINVAL;
    }
    if (b.reps > MMBENCH_REPS_MAX || (tests & ~MMBENCH_TESTS_ALL)) {
        say(&b, "mmbench: cannot run: reps %u (1 .. %u), tests 0x%x (bits of 0x%x)\n", b.reps,
            MMBENCH_REPS_MAX, tests, MMBENCH_TESTS_ALL);
        return KMM_EINVAL;
    }
    struct kmm_page_stats ps;
    kmm_page_stats(b.k, &ps);
    uint64_t t0 = now(&b);
    say(&b,
        "mmbench: START kernel=%s-%s online_cpus=1 cpu=%u reps=%u scale_div=%u init_on_alloc=0 "
        "init_on_free=0 totalram_pages=%llu tsc_khz=%lu HZ=0\n",
        cfg->kernel ? cfg->kernel : "kmm", kmm_version(), kmm_port_cpu_id(), b.reps, b.scale_div,
        (unsigned long long)ps.managed_pages, cfg->tsc_khz);
    if (tests & MMBENCH_P1)
        bench_p1(&b, "P1_page_lifo_pair", 0);
    if (tests & MMBENCH_P1Z)
        bench_p1(&b, "P1z_page_zero_lifo_pair", KMM_GFP_ZERO);
    if (tests & MMBENCH_P2)
        bench_p2(&b);
    if (tests & MMBENCH_H1)
        bench_h1(&b);
    if (tests & MMBENCH_H2)
        bench_h2(&b);
    if (tests & (MMBENCH_M1A | MMBENCH_M1B | MMBENCH_M1C))
        bench_m1(&b, tests);
    out->total_ns = now(&b) - t0;
    say(&b, "mmbench: DONE cpu=%u total_s=%llu\n", kmm_port_cpu_id(),
        (unsigned long long)(out->total_ns / 1000000000u));
    return KMM_OK;
}
