/*
 * mmbench.h - the Linux anchor's benchmarks (../shared/linux-anchor/README.md
 * and mmbench.c, the normative definitions) over a kmm instance, so that the
 * demo kernel measures the same workloads as Linux under the same QEMU line.
 *
 * Freestanding: built into the kernel image (kernel/kernel.mk) and into the
 * hosted programs (build/hosted/kmm-shell, the tests), and needs from its
 * host only an instance, a nanosecond clock and a sink for its lines. The
 * shell's `bench` runs it; a kernel's boot mode can call mmbench_run too.
 *
 * Workloads (bit of mmbench_config.tests, as the module's `tests`):
 *   bit 0  P1   kmm_page_alloc(0) x 4096, freed in reverse; ns per pair
 *   bit 1  P1z  the same with KMM_GFP_ZERO
 *   bit 2  P2   mixed orders 0-9, 32,768 pages live, random frees; ns per step
 *   bit 3  H1   kmm_malloc(64) x 1000, freed in reverse; ns per pair
 *   bit 4  H2   kmm_malloc of 16..4096 bytes in 10,000 slots replaced at random
 *   bit 6  M1a  kmm_vmap of N = 1, 16, 512, 16384 pages + kmm_vunmap; ns per page
 *   bit 7  M1b  a bare range (kmm_kva_alloc), N = 1, 16 pages mapped one call
 *               each (kmm_vm_map) and unmapped in one call, range freed
 *   bit 8  M1c  one page mapped and unmapped at one fixed address (the unmap
 *               invalidates the TLB); M1c-touch reads through it in between;
 *          M1d  512 pages mapped one call each at consecutive addresses,
 *               then one unmap of the 2 MiB
 * with the module's constants, PRNG (xorshift64), seeds and draw order,
 * each timed around its whole loop, `reps` runs, the median printed as
 *   mmbench: RESULT <name> <median> ns/op runs=<r1>,...,<rN> ops=<ops> fail=<F>
 * framed by START and DONE lines, and INFO lines as the module prints them.
 * docs/performance.md ("The Linux anchor's workloads in the kernel") maps
 * each to Linux's calls.
 */
#ifndef KMM_MMBENCH_H
#define KMM_MMBENCH_H

#include <stdbool.h>
#include <stdint.h>

#include <kmm/kmm.h>

/* The module's knobs: its defaults and bounds. */
#define MMBENCH_REPS_DEFAULT 5u
#define MMBENCH_REPS_MAX     15u
#define MMBENCH_TESTS_ALL    0x1dfu /* bits 0-4 and 6-8 */

/* Workload bits of mmbench_config.tests. */
#define MMBENCH_P1  (1u << 0)
#define MMBENCH_P1Z (1u << 1)
#define MMBENCH_P2  (1u << 2)
#define MMBENCH_H1  (1u << 3)
#define MMBENCH_H2  (1u << 4)
#define MMBENCH_M1A (1u << 6)
#define MMBENCH_M1B (1u << 7)
#define MMBENCH_M1C (1u << 8) /* M1c, M1c-touch and M1d, as the module's bit 8 */

struct mmbench_config {
    struct kmm *k;
    /* Nanoseconds from any fixed origin, never going back (the kernel: the
     * TSC scaled by its frequency; hosted: CLOCK_MONOTONIC). */
    uint64_t (*now_ns)(void *ctx);
    void *clock_ctx;
    /* Where the START, RESULT, INFO, SKIP and DONE lines go. */
    struct kmm_sink out;
    unsigned reps;         /* 1 .. MMBENCH_REPS_MAX; 0: MMBENCH_REPS_DEFAULT */
    unsigned scale_div;    /* every op count divided by it (smoke runs); 0: 1 */
    unsigned tests;        /* MMBENCH_* bits; 0: MMBENCH_TESTS_ALL */
    bool live_mappings;    /* what the kernel space maps is usable at its address:
                            * M1c-touch reads through its mapping (else SKIP) */
    const char *kernel;    /* the START line's kernel= ("kmm" when NULL) */
    unsigned long tsc_khz; /* the START line's tsc_khz= (0: unknown) */
};

/* What a run did, for its caller's verdict. */
struct mmbench_summary {
    unsigned results;  /* RESULT lines printed */
    unsigned skipped;  /* SKIP lines printed (a workload that could not run) */
    uint64_t fails;    /* failed allocations and maps over all RESULT lines */
    uint64_t total_ns; /* the whole run */
};

/*
 * mmbench_run - run the workloads cfg->tests selects and print their lines.
 * Every page, block and area a workload takes is given back before it
 * returns (kmm_check is as clean afterwards as before). Returns KMM_OK, or
 * KMM_EINVAL (with one line saying why, nothing run) when k, now_ns or the
 * sink's write is missing, reps is above MMBENCH_REPS_MAX or tests has a
 * bit that names no workload. A workload that cannot get its bookkeeping
 * arrays or backing pages prints a SKIP line and the others still run.
 * IRQs on; the full size takes minutes under TCG.
 */
int mmbench_run(const struct mmbench_config *cfg, struct mmbench_summary *out);

#endif /* KMM_MMBENCH_H */
