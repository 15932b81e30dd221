/*
 * heap_peer.c - H1 and H2 of WORKLOADS.md on a system malloc, each in a
 * process of its own: kmm-bench (bench_heap.c) runs it once per (peer,
 * workload) and reads its figures from its standard output.
 *
 *   kmm-heap-<peer> [--instr] H1 | H2 | H2mem
 *
 * mk/variant.mk builds this file three times, one executable per peer:
 *   kmm-heap-glibc     glibc's malloc and free;
 *   kmm-heap-jemalloc  linked with Debian's libjemalloc, which exports
 *                      malloc and free unprefixed: they replace glibc's in
 *                      this process (and only in it);
 *   kmm-heap-mimalloc  linked with Debian's libmimalloc: mi_malloc, mi_free.
 * A process per peer keeps the allocators' symbols apart, and each starts
 * fresh. The process names the library its malloc came from (dladdr) and
 * refuses to run on another. Without a BENCH_PEER_* macro it is the glibc
 * one (what the linters see).
 *
 * H1, H2: the loops of heap_work.h, BENCH_RUNS runs. A system malloc is not
 * re-initialised between runs (WORKLOADS.md): its state carries over, and
 * run 1 includes its first-touch page faults. H2 checks its trace's hash
 * first. The last line is the result:
 *
 *   result <H1|H2> <peer> wall=<ns> cpu=<ns> share=<share> failures=<n>
 *
 * (medians per op; failures over all runs, allocations that returned NULL).
 *
 * --instr H1, --instr H2 (tools/bench-instr.sh runs them under callgrind):
 * once, on the counts kmm-bench --instr uses (heap_work.h), the counted loop
 * marked as "<H1|H2> <peer>_instr_per_<pair|step> <ops>".
 *
 * H2mem: WORKLOADS.md's footprint pass, untimed, in a fresh process: the fill
 * and every step, writing the first and last byte of every block so that
 * untouched blocks cannot hide; the footprint is the peak RSS growth (VmHWM
 * after, reset through /proc/self/clear_refs, minus VmRSS before):
 *
 *   result H2mem <peer> footprint=<bytes> peak_live=<bytes> failures=<n>
 *
 * Every buffer of the harness is static or mmap'd, never from the allocator
 * under test. Exit status: 0, or 1 with a message on stderr (a wrong trace,
 * the wrong library, /proc unreadable).
 */
#define _GNU_SOURCE
#include "../heap_work.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(BENCH_PEER_mimalloc)
#include <mimalloc.h>
#define PEER_NAME "mimalloc"
#define PEER_LIB  "libmimalloc"

static void *peer_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return mi_malloc(size);
}

static int peer_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    (void)size;
    mi_free(p);
    return 0;
}

static void peer_version(char *buf, size_t len)
{
    snprintf(buf, len, "mimalloc %d", mi_version());
}

static void *(*const peer_entry)(size_t) = mi_malloc;

#elif defined(BENCH_PEER_jemalloc)
#include <jemalloc/jemalloc.h>
#define PEER_NAME "jemalloc"
#define PEER_LIB  "libjemalloc"

static void *peer_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static int peer_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    (void)size;
    free(p);
    return 0;
}

static void peer_version(char *buf, size_t len)
{
    const char *v = "unknown";
    size_t vlen = sizeof(v);
    if (mallctl("version", (void *)&v, &vlen, NULL, 0) != 0)
        v = "unknown (mallctl refused)";
    snprintf(buf, len, "jemalloc %s", v);
}

static void *(*const peer_entry)(size_t) = malloc;

#else /* BENCH_PEER_glibc */
#include <gnu/libc-version.h>
#define PEER_NAME "glibc"
#define PEER_LIB  "libc.so"

static void *peer_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static int peer_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    (void)size;
    free(p);
    return 0;
}

static void peer_version(char *buf, size_t len)
{
    snprintf(buf, len, "glibc %s", gnu_get_libc_version());
}

static void *(*const peer_entry)(size_t) = malloc;
#endif

/* Checks that the allocation function this process calls comes from
 * PEER_LIB, and prints which library and version it is. */
static int peer_identify(void)
{
    Dl_info info;
    void *addr;
    memcpy(&addr, &peer_entry, sizeof(addr));
    char version[64];
    peer_version(version, sizeof(version));
    if (!dladdr(addr, &info) || !info.dli_fname || !strstr(info.dli_fname, PEER_LIB)) {
        fprintf(stderr, "kmm-heap-%s: its allocation function is not from %s but from %s\n",
                PEER_NAME, PEER_LIB, info.dli_fname ? info.dli_fname : "(unknown)");
        return -1;
    }
    printf("peer %s: %s from %s\n", PEER_NAME, version, info.dli_fname);
    return 0;
}

/* The harness's arrays: static, so that none comes from the allocator. */
static void *vec[H1_BATCH];
static void *slots[H2_SLOTS];
static struct h2_trace trace;

/* Prints the figure and the result line. */
static void peer_result(const char *workload, const char *unit, const struct bench_figure *f,
                        uint64_t failures)
{
    char name[64];
    snprintf(name, sizeof(name), "%s %s %s", workload, PEER_NAME, unit);
    bench_figure_print(name, f);
    printf("result %s %s wall=%.4f cpu=%.4f share=%.4f failures=%" PRIu64 "\n", workload, PEER_NAME,
           bench_figure_wall(f), bench_figure_cpu(f), bench_figure_share(f), failures);
}

/* --instr H1: a warm-up round, then H1_INSTR_ROUNDS rounds counted. */
static int peer_h1_instr(void)
{
    struct heap_counts c = {0};
    uint64_t pairs = (uint64_t)H1_INSTR_ROUNDS * H1_BATCH;
    char what[64];
    snprintf(what, sizeof(what), "H1 %s_instr_per_pair %" PRIu64, PEER_NAME, pairs);
    h1_loop(NULL, vec, 1, peer_alloc, peer_free, &c);
    bench_instr_begin();
    h1_loop(NULL, vec, H1_INSTR_ROUNDS, peer_alloc, peer_free, &c);
    bench_instr_end(what);
    printf("H1 %s counted %" PRIu64 " pairs, failures=%" PRIu64 "\n", PEER_NAME, pairs, c.failures);
    return 0;
}

/* --instr H2: the fill, then the first H2_INSTR_STEPS steps counted. */
static int peer_h2_instr(void)
{
    if (h2_trace_make(&trace, H2_INSTR_STEPS) != 0)
        return -1;
    struct heap_counts c = {0};
    char what[64];
    snprintf(what, sizeof(what), "H2 %s_instr_per_step %u", PEER_NAME, trace.nsteps);
    h2_fill(NULL, &trace, slots, NULL, peer_alloc, &c);
    bench_instr_begin();
    h2_steps(NULL, trace.steps, trace.nsteps, slots, NULL, peer_alloc, peer_free, &c);
    bench_instr_end(what);
    h2_teardown(NULL, slots, NULL, peer_free, &c);
    printf("H2 %s counted %u steps, failures=%" PRIu64 "\n", PEER_NAME, trace.nsteps, c.failures);
    return 0;
}

static int peer_h1(void)
{
    struct bench_figure f = {0};
    struct heap_counts c = {0};
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        struct bench_clock clk;
        bench_clock_start(&clk);
        h1_loop(NULL, vec, H1_ROUNDS, peer_alloc, peer_free, &c);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&f, &el, (double)H1_PAIRS);
    }
    peer_result("H1", "ns/pair", &f, c.failures);
    return 0;
}

static int peer_h2(void)
{
    if (h2_trace_make(&trace, H2_STEPS) != 0 || h2_trace_check(&trace, "kmm-heap-" PEER_NAME))
        return -1;
    struct bench_figure f = {0};
    struct heap_counts c = {0};
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        h2_fill(NULL, &trace, slots, NULL, peer_alloc, &c);
        struct bench_clock clk;
        bench_clock_start(&clk);
        h2_steps(NULL, trace.steps, trace.nsteps, slots, NULL, peer_alloc, peer_free, &c);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&f, &el, H2_STEPS);
        h2_teardown(NULL, slots, NULL, peer_free, &c);
    }
    peer_result("H2", "ns/step", &f, c.failures);
    return 0;
}

/* --- H2mem: the footprint pass ---------------------------------------------------- */

/* A figure of /proc/self/status in KiB ("VmRSS:", "VmHWM:"), or -1. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    size_t klen = strlen(key);
    while (kb < 0 && fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0)
            kb = strtol(line + klen, NULL, 10);
    fclose(f);
    return kb;
}

/* Resets VmHWM to the current RSS (clear_refs "5", Linux 4.0). */
static int reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, "5", 1);
    close(fd);
    return n == 1 ? 0 : -1;
}

/* Allocates size bytes and writes its first and last byte. */
static void *alloc_touched(size_t size, uint64_t *failures)
{
    unsigned char *p = peer_alloc(NULL, size);
    if (!p) {
        (*failures)++;
        return NULL;
    }
    p[0] = 1;
    p[size - 1] = 1;
    return p;
}

static int peer_h2mem(void)
{
    if (h2_trace_make(&trace, H2_STEPS) != 0 || h2_trace_check(&trace, "kmm-heap-" PEER_NAME))
        return -1;
    memset(slots, 0, sizeof(slots)); /* fault the slots in before the "before" */
    uint64_t failures = 0;
    long before = status_kb("VmRSS:");
    if (before < 0 || reset_peak_rss() != 0) {
        perror("H2mem: /proc/self/status or /proc/self/clear_refs");
        return -1;
    }
    for (unsigned s = 0; s < H2_SLOTS; s++)
        slots[s] = alloc_touched(trace.fill[s], &failures);
    for (unsigned j = 0; j < trace.nsteps; j++) {
        uint32_t s = trace.steps[j] >> H2_STEP_SHIFT;
        peer_free(NULL, slots[s], 0);
        slots[s] = alloc_touched(trace.steps[j] & H2_STEP_SIZE_MASK, &failures);
    }
    long peak = status_kb("VmHWM:");
    for (unsigned s = 0; s < H2_SLOTS; s++)
        peer_free(NULL, slots[s], 0);
    if (peak < 0) {
        perror("H2mem: /proc/self/status");
        return -1;
    }
    uint64_t footprint = peak > before ? (uint64_t)(peak - before) * 1024 : 0;
    printf("H2mem %s: VmRSS before %ld KiB, VmHWM after %ld KiB: footprint %" PRIu64
           " bytes, %.3f x peak live\n",
           PEER_NAME, before, peak, footprint, (double)footprint / (double)trace.peak_live_bytes);
    printf("result H2mem %s footprint=%" PRIu64 " peak_live=%" PRIu64 " failures=%" PRIu64 "\n",
           PEER_NAME, footprint, trace.peak_live_bytes, failures);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool instr = argc == 3 && strcmp(argv[1], "--instr") == 0;
    const char *w = argc == 2 || instr ? argv[argc - 1] : "";
    int ret = 2;
    if (peer_identify() != 0)
        return 1;
    if (strcmp(w, "H1") == 0)
        ret = instr ? peer_h1_instr() : peer_h1();
    else if (strcmp(w, "H2") == 0)
        ret = instr ? peer_h2_instr() : peer_h2();
    else if (strcmp(w, "H2mem") == 0 && !instr)
        ret = peer_h2mem();
    else
        fprintf(stderr, "usage: kmm-heap-%s [--instr] H1 | H2 | H2mem (H1 or H2 with --instr)\n",
                PEER_NAME);
    h2_trace_free(&trace);
    return ret == 0 ? 0 : ret == 2 ? 2 : 1;
}
