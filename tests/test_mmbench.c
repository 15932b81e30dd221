/*
 * test_mmbench.c - the Linux anchor's workloads over kmm (kernel/shell/mmbench.h),
 * run small (a large scale_div) with a clock that advances one microsecond
 * per reading: the RESULT lines have the module's format, names, op counts
 * and run lists; every page, block and area comes back; kmm_check is clean;
 * bad knobs are refused with a line. No timing is asserted.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/fmt.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vmalloc.h>

#include "mmbench.h"

#define MIB (UINT64_C(1) << 20)

/* P2 keeps 128 MiB live and M1 holds 64 MiB of backing pages (one after
 * the other); 200 MiB fits the kernel's test arena. */
static const struct kmm_region map200[] = {{1 * MIB, 199 * MIB, KMM_MEM_USABLE}};
static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

static struct kt_text out; /* static: large for a kernel stack */

static uint64_t fake_clock(void *ctx)
{
    uint64_t *now = ctx;
    return *now += 1000; /* every reading 1 us later: deterministic figures */
}

/* The library's footprint with the heap's size classes made (they stay
 * once made) and this CPU's caches emptied. */
struct footprint {
    uint64_t pages, heap_used, areas;
};

static struct footprint footprint(struct kmm *k)
{
    for (size_t n = KMM_HEAP_MIN_ALIGN; n <= KMM_HEAP_SLAB_MAX; n += KMM_HEAP_MIN_ALIGN)
        kmm_free(k, kmm_malloc(k, n, 0));
    kmm_heap_drain_cpu(k);
    kmm_heap_shrink(k);
    kmm_page_drain_cpu(k);
    struct kmm_page_stats ps;
    struct kmm_heap_stats hs;
    struct kmm_vmalloc_stats vs;
    kmm_page_stats(k, &ps);
    kmm_heap_stats(k, &hs);
    kmm_vmalloc_stats(k, &vs);
    return (struct footprint){ps.allocated_pages, hs.bytes_used, vs.areas};
}

static bool line_is(const char *text, const char *line)
{
    return ktest_contains(text, line);
}

/* Runs cfg's workloads on h and checks what every run must: KMM_OK, the
 * frame lines, everything given back, kmm_check clean. */
static void run_and_check(struct ktest *t, struct kt_heap *h, struct mmbench_config *cfg,
                          struct mmbench_summary *sum)
{
    static uint64_t now;
    now = 0;
    out.len = 0;
    out.buf[0] = '\0';
    cfg->k = h->f.k;
    cfg->now_ns = fake_clock;
    cfg->clock_ctx = &now;
    cfg->out = (struct kmm_sink){kt_text_write, &out};
    cfg->live_mappings = h->live;
    struct footprint before = footprint(h->f.k);
    KT_EXPECT_EQ(t, mmbench_run(cfg, sum), KMM_OK);
    struct footprint after = footprint(h->f.k);
    KT_EXPECT_EQ(t, after.pages, before.pages);
    KT_EXPECT_EQ(t, after.heap_used, before.heap_used);
    KT_EXPECT_EQ(t, after.areas, before.areas);
    KT_EXPECT(t, ktest_contains(out.buf, "mmbench: START kernel=kmm-"));
    KT_EXPECT(t, ktest_contains(out.buf, "mmbench: DONE cpu=0 total_s=0\n"));
    KT_EXPECT(t, out.len < sizeof(out.buf) - 1); /* nothing cut */
    KT_EXPECT_HEALTHY(t, h->f.k);
}

/* Tears h down, after showing what mmbench printed if the test failed. */
static void done(struct ktest *t, struct kt_heap *h)
{
    if (ktest_failed(t))
        ktest_diag(t, "mmbench printed:\n%s", out.buf);
    kt_heap_down(h);
}

KTEST(mmbench, a_smoke_run_prints_every_workloads_result_and_gives_everything_back)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map200, 1, 1))
        return;
    struct mmbench_config cfg = {.reps = 3, .scale_div = 256};
    struct mmbench_summary sum;
    run_and_check(t, &h, &cfg, &sum);
    /* The op counts are the module's at this scale: 1,048,576 / 256 pages in
     * batches of 4096; 1,000,000 / 256 steps; 10,000,000 / 256 in batches of
     * 1000; 5,000,000 / 256; 262,144 / 256 pages in maps of N (at least one).
     * The clock moves 1000 ns per reading: P1 reads it 5 times a run with one
     * batch (4000 ns / 4096 pairs = 0.9 ns; each half 1000 ns = 0.2 ns), the
     * others twice (1000 ns / ops). */
    KT_EXPECT(t, line_is(out.buf, "reps=3 scale_div=256 init_on_alloc=0"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT P1_page_lifo_pair 0.9 ns/op runs=0.9,0.9,0.9 "
                                  "ops=4096 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT P1_page_lifo_pair.alloc_only 0.2 ns/op "
                                  "runs=0.2,0.2,0.2 ops=4096 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT P1_page_lifo_pair.free_only 0.2 ns/op "));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT P1z_page_zero_lifo_pair 0.9 ns/op"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT P2_mixed_order_step 0.2 ns/op "
                                  "runs=0.2,0.2,0.2 ops=3906 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: INFO P2 frees_per_step=1."));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT H1_kmalloc64_lifo_pair 0.0 ns/op "
                                  "runs=0.0,0.0,0.0 ops=39000 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT H2_kmalloc_rand_step 0.0 ns/op "
                                  "runs=0.0,0.0,0.0 ops=19531 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: INFO H2 mean_request_bytes="));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT M1a_vmap_vunmap_1_per_page 0.9 ns/op "
                                  "runs=0.9,0.9,0.9 ops=1024 fail=0\n"));
    KT_EXPECT(
        t, line_is(out.buf, " M1a_vmap_vunmap_16_per_page 0.9 ns/op runs=0.9,0.9,0.9 ops=1024 "));
    KT_EXPECT(t, line_is(out.buf, " M1a_vmap_vunmap_512_per_page 0.9 ns/op "
                                  "runs=0.9,0.9,0.9 ops=1024 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, " M1a_vmap_vunmap_16384_per_page 0.0 ns/op "
                                  "runs=0.0,0.0,0.0 ops=16384 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, " M1b_vm_map_ram_1_per_page 0.9 ns/op "));
    KT_EXPECT(t, line_is(out.buf, " M1b_vm_map_ram_16_per_page 0.9 ns/op "));
    KT_EXPECT(t, line_is(out.buf, " M1c_pte_map_unmap_fixedva_pair 0.9 ns/op "
                                  "runs=0.9,0.9,0.9 ops=1024 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, " M1d_pte_map512_then_rangeunmap_per_page 0.9 ns/op "
                                  "runs=0.9,0.9,0.9 ops=1024 fail=0\n"));
    if (h.live) {
        KT_EXPECT(t, line_is(out.buf, " M1c_pte_map_touch_unmap_fixedva_pair 0.9 ns/op "));
        KT_EXPECT_EQ(t, sum.results, 18);
        KT_EXPECT_EQ(t, sum.skipped, 0);
    } else {
        KT_EXPECT(t, line_is(out.buf, "mmbench: SKIP M1c_pte_map_touch_unmap_fixedva_pair: the "
                                      "kernel space's mappings are not live on this machine\n"));
        KT_EXPECT_EQ(t, sum.results, 17);
        KT_EXPECT_EQ(t, sum.skipped, 1);
    }
    KT_EXPECT_EQ(t, sum.fails, 0);
    done(t, &h);
}

KTEST(mmbench, the_tests_mask_selects_workloads_as_the_modules_does)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 1))
        return;
    struct mmbench_config cfg = {.reps = 1, .scale_div = 1000, .tests = MMBENCH_H1 | MMBENCH_H2};
    struct mmbench_summary sum;
    run_and_check(t, &h, &cfg, &sum);
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT H1_kmalloc64_lifo_pair "));
    KT_EXPECT(t, line_is(out.buf, " ops=10000 fail=0\n"));
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT H2_kmalloc_rand_step "));
    KT_EXPECT(t, !line_is(out.buf, "P1_"));
    KT_EXPECT(t, !line_is(out.buf, "M1"));
    KT_EXPECT_EQ(t, sum.results, 2);
    done(t, &h);
}

KTEST(mmbench, a_machine_too_small_for_p2_counts_failures_and_still_gives_everything_back)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 1))
        return;
    /* 64 MiB cannot keep P2's 128 MiB live: the fill gives up after
     * 100,000 failures, and every step's allocation may fail. */
    struct mmbench_config cfg = {.reps = 1, .scale_div = 10000, .tests = MMBENCH_P2};
    struct mmbench_summary sum;
    run_and_check(t, &h, &cfg, &sum);
    KT_EXPECT(t, line_is(out.buf, "mmbench: RESULT P2_mixed_order_step "));
    KT_EXPECT(t, sum.fails > 100000);
    KT_EXPECT_EQ(t, sum.results, 1);
    done(t, &h);
}

KTEST(mmbench, bad_knobs_are_refused_with_a_line_and_nothing_runs)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, map64, 1, 1))
        return;
    static uint64_t now;
    out.len = 0;
    out.buf[0] = '\0';
    struct mmbench_config cfg = {.k = h.f.k,
                                 .now_ns = fake_clock,
                                 .clock_ctx = &now,
                                 .out = {kt_text_write, &out},
                                 .reps = MMBENCH_REPS_MAX + 1};
    struct mmbench_summary sum;
    KT_EXPECT_EQ(t, mmbench_run(&cfg, &sum), KMM_EINVAL);
    KT_EXPECT(t, line_is(out.buf, "mmbench: cannot run: reps 16 (1 .. 15)"));
    cfg.reps = 1;
    cfg.tests = 1u << 5; /* no workload has bit 5 */
    KT_EXPECT_EQ(t, mmbench_run(&cfg, &sum), KMM_EINVAL);
    KT_EXPECT(t, line_is(out.buf, "tests 0x20 (bits of 0x1df)"));
    cfg.tests = 0;
    cfg.now_ns = NULL;
    KT_EXPECT_EQ(t, mmbench_run(&cfg, &sum), KMM_EINVAL);
    KT_EXPECT(t, line_is(out.buf, "mmbench: cannot run: no clock"));
    KT_EXPECT(t, !line_is(out.buf, "START"));
    KT_EXPECT_EQ(t, sum.results, 0);
    KT_EXPECT_EQ(t, mmbench_run(NULL, &sum), KMM_EINVAL);
    KT_EXPECT_HEALTHY(t, h.f.k);
    done(t, &h);
}
