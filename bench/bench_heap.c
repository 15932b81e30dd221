/*
 * bench_heap.c - H1 and H2 of WORKLOADS.md: the kernel heap (kmm_malloc /
 * kmm_free) on a simulated machine, and glibc malloc, jemalloc and mimalloc
 * measured in the same run, each in a process of its own
 * (peers/heap_peer.c, built as kmm-heap-<peer> beside kmm-bench).
 *
 * kmm's machine: one usable RAM range of 256 MiB at 256 MiB, aligned to its
 * size like WORKLOADS.md's heap arena; kmm's metadata takes the top of it.
 * The RAM is anonymous memory with MADV_HUGEPAGE, pre-faulted with memset
 * before any timing. Each run re-initialises kmm on the same machine
 * (kmm_fini + kmm_init), and after its untimed teardown checks that the
 * heap holds no block and that kmm_check passes.
 *
 * The heap's footprint in H2 is the most bytes it ever held from the page
 * allocator (kmm_heap_stats' bytes_peak, over the fill and every step);
 * mem_ratio is that over the trace's peak live bytes (8,110,618). The
 * system mallocs' footprint is their peak RSS growth in a fresh process
 * (kmm-heap-<peer> H2mem, WORKLOADS.md's extra untimed pass).
 *
 * The floors. H1's: an intrusive LIFO free list threaded through 1,000
 * blocks of 64 bytes, as a slab's free list is, popped and pushed in the
 * same loop. H2's: the least a size-class allocator does, with kmm's classes
 * (kmm/heap.h: multiples of 16 up to 128, then eight per power of two): a
 * LIFO list per class, a bump pointer for a class whose list is empty, and
 * a free told the block's size (sized), so it needs no lookup. Their
 * operations are opaque to the optimiser as kmm's are.
 *
 * Ratios to the peers are kmm / peer by CPU time (1: as fast; below 1:
 * faster), as the floor's ratio is: they hold when other processes share
 * the CPU, where the wall figures do not ("Two modes" in
 * docs/performance.md).
 */
#define _GNU_SOURCE
#include "heap_work.h"

#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>

#include "hosted.h"

#define MIB (UINT64_C(1) << 20)

/* The heap arena: 256 MiB of RAM at 256 MiB. */
#define HEAP_RAM_BASE (256 * MIB)
#define HEAP_RAM_SIZE (256 * MIB)

/* --- the simulated machine and the instance -------------------------------------- */

struct heap_env {
    struct hosted_machine *m;
    struct kmm_region ram;
    struct kmm *k;
    uint64_t held0; /* bytes the heap held right after init */
};

static int env_open(struct heap_env *e, const char *workload, const struct bench_mode *mode)
{
    e->ram = (struct kmm_region){HEAP_RAM_BASE, HEAP_RAM_SIZE, KMM_MEM_USABLE};
    struct hosted_machine_config mc = {.ram = &e->ram, .ram_count = 1, .anonymous = true};
    e->m = hosted_machine_create(&mc);
    if (!e->m) {
        perror("bench: cannot create the simulated machine");
        return -1;
    }
    if (!mode->instr)
        memset((void *)(hosted_machine_direct_map(e->m) + e->ram.base), 0, e->ram.length);
    printf("%s machine: RAM [%#" PRIx64 ", %#" PRIx64 "), anonymous, %s, thp_kb=%ld\n", workload,
           e->ram.base, e->ram.base + e->ram.length,
           mode->instr ? "not pre-faulted" : "pre-faulted", bench_thp_kb());
    return 0;
}

static void env_close(struct heap_env *e)
{
    if (e->k)
        kmm_fini(e->k);
    e->k = NULL;
    hosted_machine_destroy(e->m);
    e->m = NULL;
}

/*
 * The heap's debugging modes for a run (docs/performance.md, "Debugging
 * on"): KMM_BENCH_HEAP_DEBUG, a comma-separated list of redzone, poison,
 * quarantine, track, events or all, switched on for the whole heap right
 * after kmm_init; KMM_BENCH_HEAP_GUARD=N samples every Nth allocation onto
 * a guard page. Unset: the heap as shipped. The figures of such a run are
 * the debugging modes' cost, not kmm's: each run says so on its first line.
 */
static const struct {
    const char *name;
    unsigned flag;
} debug_names[] = {
    {"redzone", KMM_HEAP_DEBUG_REDZONE},       {"poison", KMM_HEAP_DEBUG_POISON},
    {"quarantine", KMM_HEAP_DEBUG_QUARANTINE}, {"track", KMM_HEAP_DEBUG_TRACK},
    {"events", KMM_HEAP_DEBUG_EVENTS},         {"all", KMM_HEAP_DEBUG_ALL},
};

static int debug_up(struct kmm *k)
{
    const char *modes = getenv("KMM_BENCH_HEAP_DEBUG"), *guard = getenv("KMM_BENCH_HEAP_GUARD");
    unsigned flags = 0;
    for (const char *m = modes; m && *m;) {
        size_t len = strcspn(m, ",");
        unsigned i = 0;
        while (i < sizeof(debug_names) / sizeof(debug_names[0]) &&
               (strlen(debug_names[i].name) != len || strncmp(debug_names[i].name, m, len) != 0))
            i++;
        if (i == sizeof(debug_names) / sizeof(debug_names[0])) {
            fprintf(stderr, "bench: KMM_BENCH_HEAP_DEBUG: unknown mode in \"%s\"\n", modes);
            return -1;
        }
        flags |= debug_names[i].flag;
        m += len + (m[len] == ',');
    }
    unsigned every = guard ? (unsigned)strtoul(guard, NULL, 10) : 0;
    if (flags && kmm_heap_debug(k, flags) != 0) {
        fprintf(stderr, "bench: kmm_heap_debug(0x%x) failed\n", flags);
        return -1;
    }
    if (every && kmm_heap_guard_sample(k, every) != KMM_OK) {
        fprintf(stderr, "bench: kmm_heap_guard_sample(%u) failed\n", every);
        return -1;
    }
    static bool said;
    if ((flags || every) && !said) {
        printf("heap debugging on: modes 0x%x, guard pages every %u: not kmm's own figures\n",
               flags, every);
        said = true;
    }
    return 0;
}

/* KMM_BENCH_HEAP_LEND=N: kmm_heap_set_lend(k, N) right after kmm_init
 * (docs/performance.md, "Lending"), said on the run's first line. Unset:
 * the default. */
static int lend_up(struct kmm *k)
{
    const char *lend = getenv("KMM_BENCH_HEAP_LEND");
    if (!lend)
        return 0;
    unsigned n = (unsigned)strtoul(lend, NULL, 10);
    if (kmm_heap_set_lend(k, n) != KMM_OK) {
        fprintf(stderr, "bench: kmm_heap_set_lend(%u) failed\n", n);
        return -1;
    }
    static bool said;
    if (!said)
        printf("heap lending: %u classes (the default is %u)\n", n, KMM_HEAP_LEND_DEFAULT);
    said = true;
    return 0;
}

static int instance_up(struct heap_env *e)
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
    if (debug_up(e->k) != 0 || lend_up(e->k) != 0)
        return -1;
    struct kmm_heap_stats hs;
    kmm_heap_stats(e->k, &hs);
    e->held0 = hs.bytes_held;
    return 0;
}

/* Tears the instance down after checking that the heap holds no block and
 * that every structure is sound. *peak gets the heap's bytes_peak. */
static int instance_down(struct heap_env *e, const char *workload, uint64_t *peak)
{
    struct kmm_heap_stats hs;
    kmm_heap_drain_cpu(e->k);
    kmm_heap_stats(e->k, &hs);
    struct kmm_check_result cr;
    int check = kmm_check(e->k, &cr);
    kmm_fini(e->k);
    e->k = NULL;
    if (peak)
        *peak = hs.bytes_peak;
    if (hs.bytes_used != 0 || hs.allocs != hs.frees || hs.misuse != 0 || check != KMM_CHECK_OK) {
        fprintf(stderr,
                "%s: after teardown the heap has %" PRIu64 " bytes in blocks, %" PRIu64
                " allocations against %" PRIu64 " frees, %" PRIu64
                " rejected calls; kmm_check says %d\n",
                workload, hs.bytes_used, hs.allocs, hs.frees, hs.misuse, check);
        return -1;
    }
    return 0;
}

/* kmm's side of the loops. */
static void *kmm_heap_alloc(void *k, size_t size)
{
    return kmm_malloc(k, size, 0);
}

static int kmm_heap_free(void *k, void *p, size_t size)
{
    (void)size;
    return kmm_free(k, p);
}

/* Checks a loop's counts: no allocation may fail in an arena 30 times the
 * peak live bytes, and no free may be refused. */
static int counts_ok(const char *who, const struct heap_counts *c)
{
    if (c->failures || c->bad_frees) {
        fprintf(stderr, "%s: %" PRIu64 " allocations failed, %" PRIu64 " frees were refused\n", who,
                c->failures, c->bad_frees);
        return -1;
    }
    return 0;
}

/* --- the peers' processes ------------------------------------------------------------ */

/* The peers, in the order they run and appear (the fastest first). */
static const char *const peers[] = {"mimalloc", "jemalloc", "glibc"};
#define NPEERS (sizeof(peers) / sizeof(peers[0]))

/* What a peer's process reported on its "result" line. */
struct peer_result {
    double wall, cpu, share; /* ns per op, medians */
    uint64_t failures;
    uint64_t footprint, peak_live; /* H2mem: bytes */
    bool seen;                     /* a result line was read */
};

/* Reads "result <workload> <peer> key=value ..." into *out. */
static void peer_parse(char *line, struct peer_result *out)
{
    char *save = NULL;
    unsigned field = 0;
    for (char *tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        if (field++ < 3)
            continue;
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = 0;
        const char *v = eq + 1;
        if (strcmp(tok, "wall") == 0)
            out->wall = strtod(v, NULL);
        else if (strcmp(tok, "cpu") == 0)
            out->cpu = strtod(v, NULL);
        else if (strcmp(tok, "share") == 0)
            out->share = strtod(v, NULL);
        else if (strcmp(tok, "failures") == 0)
            out->failures = strtoull(v, NULL, 10);
        else if (strcmp(tok, "footprint") == 0)
            out->footprint = strtoull(v, NULL, 10);
        else if (strcmp(tok, "peak_live") == 0)
            out->peak_live = strtoull(v, NULL, 10);
    }
    out->seen = true;
}

/* The peer's executable: kmm-heap-<peer> beside this one. */
static int peer_path(const char *peer, char *path, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash)
        return -1;
    *slash = 0;
    int w = snprintf(path, len, "%s/kmm-heap-%s", self, peer);
    return w > 0 && (size_t)w < len ? 0 : -1;
}

/* Runs `kmm-heap-<peer> <workload>` as a process of its own (it inherits
 * this one's scheduling), copies its output to ours, and reads its result.
 * Returns 0, or -1 with a message if it could not run, failed, or reported
 * nothing. */
static int peer_run(const char *peer, const char *workload, struct peer_result *out)
{
    char path[PATH_MAX];
    *out = (struct peer_result){0};
    int fds[2];
    if (peer_path(peer, path, sizeof(path)) != 0 || pipe(fds) != 0) {
        perror("bench: cannot run a heap peer");
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[] = {path, (char *)workload, NULL};
    pid_t pid;
    fflush(stdout);
    int err = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err) {
        close(fds[0]);
        fprintf(stderr, "bench: cannot run %s: %s (make bench builds it)\n", path, strerror(err));
        return -1;
    }
    FILE *f = fdopen(fds[0], "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        fputs(line, stdout);
        if (strncmp(line, "result ", 7) == 0)
            peer_parse(line, out);
    }
    if (f)
        fclose(f);
    else
        close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        !out->seen) {
        fprintf(stderr, "bench: %s %s failed (status %#x)%s\n", path, workload, status,
                out->seen ? "" : ", no result");
        return -1;
    }
    if (out->failures) {
        fprintf(stderr, "bench: %s %s: %" PRIu64 " allocations failed\n", path, workload,
                out->failures);
        return -1;
    }
    return 0;
}

/* The peers' figures for a workload, and the lowest share of them all. */
struct peer_figures {
    struct peer_result timed[NPEERS];
    struct peer_result mem[NPEERS]; /* H2 only */
};

static double min_share(double share, const struct peer_figures *p)
{
    for (size_t i = 0; i < NPEERS; i++)
        share = p->timed[i].share < share ? p->timed[i].share : share;
    return share;
}

/* Writes the table's peers cell: each peer's ns by the wall clock and
 * kmm / peer by CPU time. */
static void peers_cell(char *buf, size_t len, double kmm_cpu, const struct peer_figures *p,
                       double peak_live)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, len - n, "this run, kmm/peer by CPU time:");
    for (size_t i = 0; i < NPEERS && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s %s %.2f (%.2fx)", i ? "," : "", peers[i],
                              p->timed[i].wall, kmm_cpu / p->timed[i].cpu);
    for (size_t i = 0; peak_live > 0 && i < NPEERS && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s %s %.2f", i ? "," : "; memory", peers[i],
                              (double)p->mem[i].footprint / peak_live);
}

/* Adds "<peer>_ns" and "<peer>_cpu_ns" of every peer to object. */
static void peers_fields(struct bench_results *r, const char *object, const struct peer_figures *p)
{
    static char keys[2][NPEERS][32]; /* results.json keeps the pointers */
    for (size_t i = 0; i < NPEERS; i++) {
        snprintf(keys[0][i], sizeof(keys[0][i]), "%s_ns", peers[i]);
        snprintf(keys[1][i], sizeof(keys[1][i]), "%s_cpu_ns", peers[i]);
        bench_add_field(r, object, keys[0][i], p->timed[i].wall);
        bench_add_field(r, object, keys[1][i], p->timed[i].cpu);
    }
}

/* --- H1 -------------------------------------------------------------------------------- */

/* The floor: a LIFO list of free blocks threaded through the blocks. */
struct h1_floor {
    void *head;
};

BENCH_OPAQUE static void *h1_floor_pop(struct h1_floor *l)
{
    void *p = l->head;
    if (p)
        l->head = *(void **)p;
    return p;
}

BENCH_OPAQUE static int h1_floor_push(struct h1_floor *l, void *p)
{
    *(void **)p = l->head;
    l->head = p;
    return 0;
}

static void *h1_floor_alloc(void *l, size_t size)
{
    (void)size;
    return h1_floor_pop(l);
}

static int h1_floor_free(void *l, void *p, size_t size)
{
    (void)size;
    return h1_floor_push(l, p);
}

/* The floor's blocks: H1_BATCH of H1_SIZE bytes. */
static _Alignas(64) unsigned char h1_blocks[H1_BATCH][H1_SIZE];
static void *h1_vec[H1_BATCH];

static void h1_floor_init(struct h1_floor *l)
{
    l->head = NULL;
    for (unsigned i = H1_BATCH; i-- > 0;)
        h1_floor_push(l, h1_blocks[i]);
}

/* --instr: H1_INSTR_ROUNDS rounds of kmm's loop after a warm-up round, with
 * each pair split into the allocation, the free and the loop; then the
 * floor's. */
static int h1_instr(struct heap_env *e)
{
    struct heap_counts kc = {0}, fc = {0};
    if (instance_up(e) != 0)
        return -1;
    h1_loop(e->k, h1_vec, 1, kmm_heap_alloc, kmm_heap_free, &kc);
    char what[160];
    uint64_t pairs = (uint64_t)H1_INSTR_ROUNDS * H1_BATCH;
    snprintf(what, sizeof(what),
             "H1 instr_per_pair %" PRIu64
             " instr_alloc=kmm_malloc instr_free=kmm_free instr_loop=-",
             pairs);
    bench_instr_begin();
    h1_loop(e->k, h1_vec, H1_INSTR_ROUNDS, kmm_heap_alloc, kmm_heap_free, &kc);
    bench_instr_end(what);
    printf("H1 counted %u rounds (%" PRIu64 " pairs)\n", H1_INSTR_ROUNDS, pairs);
    if (instance_down(e, "H1", NULL) != 0)
        return -1;

    struct h1_floor fl;
    h1_floor_init(&fl);
    snprintf(what, sizeof(what), "H1 floor_instr_per_pair %" PRIu64, pairs);
    bench_instr_begin();
    h1_loop(&fl, h1_vec, H1_INSTR_ROUNDS, h1_floor_alloc, h1_floor_free, &fc);
    bench_instr_end(what);
    return counts_ok("H1 kmm", &kc) | counts_ok("H1 floor", &fc);
}

static void h1_report(struct bench_results *r, const struct bench_figure *kmm,
                      const struct bench_figure *floor, const struct peer_figures *p)
{
    static char cell[512];
    double kmm_cpu = bench_figure_cpu(kmm), floor_cpu = bench_figure_cpu(floor);
    double share = bench_figure_share(kmm);
    share = bench_figure_share(floor) < share ? bench_figure_share(floor) : share;
    share = min_share(share, p);
    bench_figure_print("H1 kmm   ns/pair", kmm);
    bench_figure_print("H1 floor ns/pair", floor);
    for (size_t i = 0; i < NPEERS; i++)
        printf("H1 kmm/%s %.2f (CPU time), %.2f (wall)\n", peers[i], kmm_cpu / p->timed[i].cpu,
               bench_figure_wall(kmm) / p->timed[i].wall);
    printf("H1 pairs=%" PRIu64 " thp_kb=%ld floor ratio=%.2f (CPU time)\n", H1_PAIRS,
           bench_thp_kb(), kmm_cpu / floor_cpu);
    bench_print_mode("H1", share);
    peers_cell(cell, sizeof(cell), kmm_cpu, p, 0);
    bench_add_row(r, &(struct bench_row){.workload = "H1",
                                         .unit = "ns/pair",
                                         .ns = bench_figure_wall(kmm),
                                         .cpu_ns = kmm_cpu,
                                         .share = share,
                                         .floor_ns = floor_cpu,
                                         .peers = cell});
    bench_add_field(r, "H1", "ns", bench_figure_wall(kmm));
    bench_add_field(r, "H1", "cpu_ns", kmm_cpu);
    bench_add_field(r, "H1", "share", share);
    bench_add_field(r, "H1", "floor_ns", bench_figure_wall(floor));
    bench_add_field(r, "H1", "floor_cpu_ns", floor_cpu);
    peers_fields(r, "H1", p);
}

int bench_heap_h1(struct bench_results *r, const struct bench_mode *mode)
{
    struct heap_env e = {0};
    int ret = -1;
    if (env_open(&e, "H1", mode) != 0)
        goto out;
    if (mode->instr) {
        ret = h1_instr(&e);
        goto out;
    }
    struct bench_figure kmm = {0}, floor = {0};
    struct heap_counts kc = {0}, fc = {0};
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        if (instance_up(&e) != 0)
            goto out;
        struct bench_clock clk;
        bench_clock_start(&clk);
        h1_loop(e.k, h1_vec, H1_ROUNDS, kmm_heap_alloc, kmm_heap_free, &kc);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&kmm, &el, (double)H1_PAIRS);
        if (instance_down(&e, "H1", NULL) != 0)
            goto out;

        struct h1_floor fl;
        h1_floor_init(&fl);
        bench_clock_start(&clk);
        h1_loop(&fl, h1_vec, H1_ROUNDS, h1_floor_alloc, h1_floor_free, &fc);
        el = bench_clock_stop(&clk);
        bench_figure_add(&floor, &el, (double)H1_PAIRS);
    }
    if (counts_ok("H1 kmm", &kc) != 0 || counts_ok("H1 floor", &fc) != 0)
        goto out;
    struct peer_figures p;
    for (size_t i = 0; i < NPEERS; i++)
        if (peer_run(peers[i], "H1", &p.timed[i]) != 0)
            goto out;
    h1_report(r, &kmm, &floor, &p);
    ret = 0;
out:
    if (e.m)
        env_close(&e);
    return ret;
}

/* --- H2 -------------------------------------------------------------------------------- */

/* The floor's size classes, kmm/heap.h's: multiples of 16 up to 128 (8
 * classes), then eight per power of two; H2's largest size, 4095, is in
 * class 47. */
#define FLOOR_SMALL_MAX   128u
#define FLOOR_SMALL_STEP  16u
#define FLOOR_SMALL_SHIFT 7u /* log2(FLOOR_SMALL_MAX) */
#define FLOOR_PER_OCTAVE  8u
#define FLOOR_OCTAVE_BITS 3u /* log2(FLOOR_PER_OCTAVE) */
#define FLOOR_CLASSES     48u
/* The floor's arena: it bumps through it and never gives back; far more
 * than H2 needs. */
#define FLOOR_ARENA       (64 * MIB)

/* The class of a request of size bytes (16 .. 4095) and its block size. */
static inline unsigned floor_class(size_t size, size_t *block)
{
    if (size <= FLOOR_SMALL_MAX) {
        unsigned c = (unsigned)((size + FLOOR_SMALL_STEP - 1) / FLOOR_SMALL_STEP) - 1;
        *block = (size_t)(c + 1) * FLOOR_SMALL_STEP;
        return c;
    }
    /* size in (2^e, 2^(e+1)]: eight classes of 2^(e-3) bytes each. */
    unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    unsigned shift = e - FLOOR_OCTAVE_BITS;
    size_t k = (size - 1) >> shift; /* 8 .. 15 */
    *block = (k + 1) << shift;
    return FLOOR_PER_OCTAVE + (e - FLOOR_SMALL_SHIFT) * FLOOR_PER_OCTAVE +
           (unsigned)(k - FLOOR_PER_OCTAVE);
}

struct h2_floor {
    void *head[FLOOR_CLASSES];
    unsigned char *bump, *end, *base;
};

BENCH_OPAQUE static void *h2_floor_alloc(void *ctx, size_t size)
{
    struct h2_floor *h = ctx;
    size_t block;
    unsigned c = floor_class(size, &block);
    void *p = h->head[c];
    if (p) {
        h->head[c] = *(void **)p;
        return p;
    }
    if ((size_t)(h->end - h->bump) < block)
        return NULL;
    p = h->bump;
    h->bump += block;
    return p;
}

BENCH_OPAQUE static int h2_floor_free(void *ctx, void *p, size_t size)
{
    struct h2_floor *h = ctx;
    size_t block;
    unsigned c = floor_class(size, &block);
    *(void **)p = h->head[c];
    h->head[c] = p;
    return 0;
}

static void h2_floor_init(struct h2_floor *h, unsigned char *arena)
{
    memset(h->head, 0, sizeof(h->head));
    h->base = h->bump = arena;
    h->end = arena + FLOOR_ARENA;
}

/* The floor's arena: anonymous, MADV_HUGEPAGE; pre-faulted unless counting. */
static unsigned char *floor_arena(const struct bench_mode *mode)
{
    void *p = mmap(NULL, FLOOR_ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, FLOOR_ARENA, MADV_HUGEPAGE);
    if (!mode->instr)
        memset(p, 0, FLOOR_ARENA);
    return p;
}

static void *h2_slots[H2_SLOTS];
static uint16_t h2_sizes[H2_SLOTS]; /* the floor's sized free */

/* --instr: the fill, then the first H2_INSTR_STEPS steps marked for
 * callgrind, split into the allocation, the free and the loop; then the
 * floor's. */
static int h2_instr(struct heap_env *e, const struct h2_trace *t, unsigned char *arena)
{
    struct heap_counts kc = {0}, fc = {0};
    if (instance_up(e) != 0)
        return -1;
    h2_fill(e->k, t, h2_slots, NULL, kmm_heap_alloc, &kc);
    char what[160];
    snprintf(what, sizeof(what),
             "H2 instr_per_step %u instr_alloc=kmm_malloc instr_free=kmm_free instr_loop=-",
             t->nsteps);
    bench_instr_begin();
    h2_steps(e->k, t->steps, t->nsteps, h2_slots, NULL, kmm_heap_alloc, kmm_heap_free, &kc);
    bench_instr_end(what);
    h2_teardown(e->k, h2_slots, NULL, kmm_heap_free, &kc);
    printf("H2 counted %u steps\n", t->nsteps);
    if (instance_down(e, "H2", NULL) != 0)
        return -1;

    struct h2_floor fl;
    h2_floor_init(&fl, arena);
    h2_fill(&fl, t, h2_slots, h2_sizes, h2_floor_alloc, &fc);
    snprintf(what, sizeof(what), "H2 floor_instr_per_step %u", t->nsteps);
    bench_instr_begin();
    h2_steps(&fl, t->steps, t->nsteps, h2_slots, h2_sizes, h2_floor_alloc, h2_floor_free, &fc);
    bench_instr_end(what);
    h2_teardown(&fl, h2_slots, h2_sizes, h2_floor_free, &fc);
    return counts_ok("H2 kmm", &kc) | counts_ok("H2 floor", &fc);
}

/* kmm's and the floor's H2 figures. */
struct h2_figures {
    struct bench_figure kmm, floor;
    double peak[BENCH_RUNS]; /* kmm's bytes_peak per run */
    uint64_t held0;          /* bytes the heap held right after init */
    uint64_t floor_span;     /* the floor's bump high-water mark */
};

static void h2_report(struct bench_results *r, const struct h2_figures *f,
                      const struct peer_figures *p, const struct h2_trace *t)
{
    static char cell[512];
    double live = (double)t->peak_live_bytes;
    double kmm_cpu = bench_figure_cpu(&f->kmm), floor_cpu = bench_figure_cpu(&f->floor);
    double share = bench_figure_share(&f->kmm);
    share = bench_figure_share(&f->floor) < share ? bench_figure_share(&f->floor) : share;
    share = min_share(share, p);
    double peak = bench_median(f->peak, BENCH_RUNS);
    bench_figure_print("H2 kmm   ns/step", &f->kmm);
    bench_figure_print("H2 floor ns/step", &f->floor);
    for (size_t i = 0; i < NPEERS; i++)
        printf("H2 kmm/%s %.2f (CPU time), %.2f (wall)\n", peers[i], kmm_cpu / p->timed[i].cpu,
               bench_figure_wall(&f->kmm) / p->timed[i].wall);
    bench_print_runs("H2 kmm bytes_peak", f->peak, BENCH_RUNS, peak);
    printf("H2 memory / peak live (%" PRIu64 " B): kmm %.3f (bytes_peak %.0f, %" PRIu64
           " held after init), floor %.3f (%" PRIu64 " B bumped)",
           t->peak_live_bytes, peak / live, peak, f->held0, (double)f->floor_span / live,
           f->floor_span);
    for (size_t i = 0; i < NPEERS; i++)
        printf(", %s %.3f (RSS growth %" PRIu64 " B)", peers[i], (double)p->mem[i].footprint / live,
               p->mem[i].footprint);
    printf("\nH2 steps=%u thp_kb=%ld floor ratio=%.2f (CPU time)\n", H2_STEPS, bench_thp_kb(),
           kmm_cpu / floor_cpu);
    bench_print_mode("H2", share);
    peers_cell(cell, sizeof(cell), kmm_cpu, p, live);
    size_t n = strlen(cell);
    snprintf(cell + n, sizeof(cell) - n, "; kmm memory %.2f", peak / live);
    bench_add_row(r, &(struct bench_row){.workload = "H2",
                                         .unit = "ns/step",
                                         .ns = bench_figure_wall(&f->kmm),
                                         .cpu_ns = kmm_cpu,
                                         .share = share,
                                         .floor_ns = floor_cpu,
                                         .peers = cell});
    bench_add_field(r, "H2", "ns", bench_figure_wall(&f->kmm));
    bench_add_field(r, "H2", "cpu_ns", kmm_cpu);
    bench_add_field(r, "H2", "share", share);
    bench_add_field(r, "H2", "floor_ns", bench_figure_wall(&f->floor));
    bench_add_field(r, "H2", "floor_cpu_ns", floor_cpu);
    peers_fields(r, "H2", p);
    bench_add_field(r, "H2", "mem_ratio", peak / live);
    static char keys[NPEERS][32];
    for (size_t i = 0; i < NPEERS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%s_mem_ratio", peers[i]);
        bench_add_field(r, "H2", keys[i], (double)p->mem[i].footprint / live);
    }
    bench_add_field(r, "H2", "floor_mem_ratio", (double)f->floor_span / live);
    bench_add_field(r, "H2", "peak_bytes", peak);
    bench_add_field(r, "H2", "peak_live_bytes", live);
}

/* Runs kmm's and the floor's BENCH_RUNS runs of H2. */
static int h2_measure(struct heap_env *e, const struct h2_trace *t, unsigned char *arena,
                      struct h2_figures *f)
{
    struct heap_counts kc = {0}, fc = {0};
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        if (instance_up(e) != 0)
            return -1;
        f->held0 = e->held0;
        h2_fill(e->k, t, h2_slots, NULL, kmm_heap_alloc, &kc);
        struct bench_clock clk;
        bench_clock_start(&clk);
        h2_steps(e->k, t->steps, t->nsteps, h2_slots, NULL, kmm_heap_alloc, kmm_heap_free, &kc);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&f->kmm, &el, H2_STEPS);
        h2_teardown(e->k, h2_slots, NULL, kmm_heap_free, &kc);
        uint64_t peak;
        if (instance_down(e, "H2", &peak) != 0)
            return -1;
        f->peak[run] = (double)peak;

        struct h2_floor fl;
        h2_floor_init(&fl, arena);
        h2_fill(&fl, t, h2_slots, h2_sizes, h2_floor_alloc, &fc);
        bench_clock_start(&clk);
        h2_steps(&fl, t->steps, t->nsteps, h2_slots, h2_sizes, h2_floor_alloc, h2_floor_free, &fc);
        el = bench_clock_stop(&clk);
        bench_figure_add(&f->floor, &el, H2_STEPS);
        h2_teardown(&fl, h2_slots, h2_sizes, h2_floor_free, &fc);
        f->floor_span = (uint64_t)(fl.bump - fl.base);
    }
    return counts_ok("H2 kmm", &kc) | counts_ok("H2 floor", &fc);
}

int bench_heap_h2(struct bench_results *r, const struct bench_mode *mode)
{
    static struct h2_trace t;
    static struct h2_figures f;
    struct heap_env e = {0};
    unsigned char *arena = NULL;
    int ret = -1;
    f = (struct h2_figures){0};
    if (h2_trace_make(&t, mode->instr ? H2_INSTR_STEPS : H2_STEPS) != 0)
        goto out;
    /* --instr runs a prefix of the trace: its hash is checked by the timed
     * run. */
    if (!mode->instr && h2_trace_check(&t, "kmm-bench") != 0)
        goto out;
    arena = floor_arena(mode);
    if (!arena) {
        perror("H2: the floor's arena");
        goto out;
    }
    if (env_open(&e, "H2", mode) != 0)
        goto out;
    if (mode->instr) {
        ret = h2_instr(&e, &t, arena);
        goto out;
    }
    struct peer_figures p;
    /* WORKLOADS.md: the footprint pass of a system malloc runs first, in a
     * fresh process; then the timed runs, in another. */
    for (size_t i = 0; i < NPEERS; i++)
        if (peer_run(peers[i], "H2mem", &p.mem[i]) != 0)
            goto out;
    if (h2_measure(&e, &t, arena, &f) != 0)
        goto out;
    for (size_t i = 0; i < NPEERS; i++)
        if (peer_run(peers[i], "H2", &p.timed[i]) != 0)
            goto out;
    h2_report(r, &f, &p, &t);
    ret = 0;
out:
    if (e.m)
        env_close(&e);
    if (arena)
        munmap(arena, FLOOR_ARENA);
    h2_trace_free(&t);
    return ret;
}
