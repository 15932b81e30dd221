/*
 * bench.h - the benchmark harness (make bench): the workloads of
 * WORKLOADS.md, the tools they share (splitmix64, FNV-1a-64, clocks,
 * medians, instruction-count markers) and where their figures go (a table
 * on stdout and one JSON file written at the end).
 *
 * A workload is one function in a bench_*.c file, listed in bench.c's
 * workload table. It generates its traces before any timing, runs
 * BENCH_RUNS times, and hands its figures to the results: a table row, and
 * its own object in results.json:
 *
 *     {"P1": {"ns": 7.71, "cpu_ns": 7.70, "share": 1.00, ...}, "P2": {...}, ...}
 *
 * Each timed loop is measured by two clocks: the wall clock (WORKLOADS.md's
 * figure, "ns") and the thread's CPU time ("cpu_ns"). When other processes
 * take the benchmark's CPU they differ, and "share" (CPU time / wall time,
 * the median of the runs) says by how much (docs/performance.md, "Two
 * modes"). The runner asks for SCHED_FIFO so that they cannot.
 *
 * With --instr (tools/bench-instr.sh runs it under callgrind) a workload
 * runs once on a reduced count instead, and marks each measured loop so that
 * callgrind dumps the instructions spent in it alone.
 *
 * Everything here is single-threaded.
 */
#ifndef KMM_BENCH_H
#define KMM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bench_results;

/* A workload's loop, generic over the allocator it calls through constant
 * function pointers, is forced inline into each caller so that the calls
 * it makes are direct calls (WORKLOADS.md's rule). */
#define BENCH_INLINE static inline __attribute__((always_inline))
/* A floor's operations stay out of line and opaque to the optimiser, as
 * kmm's functions are, being in another translation unit without LTO. */
#if defined(__clang__)
#define BENCH_OPAQUE __attribute__((noinline))
#else
#define BENCH_OPAQUE __attribute__((noinline, noipa))
#endif

/* Runs per workload; the reported figure is their median (WORKLOADS.md). */
#define BENCH_RUNS 5u

/* --- splitmix64, exactly as WORKLOADS.md ----------------------------------- */

struct bench_rng {
    uint64_t s; /* starts as the seed */
};

static inline uint64_t bench_rng_next(struct bench_rng *r)
{
    r->s += UINT64_C(0x9e3779b97f4a7c15);
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A draw in [0, n): (next() * n) >> 64 with the full 128-bit product, no
 * rejection. */
static inline uint64_t bench_rng_below(struct bench_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

/* --- FNV-1a-64 over little-endian bytes ------------------------------------ */

#define BENCH_FNV_BASIS UINT64_C(0xcbf29ce484222325)
#define BENCH_FNV_PRIME UINT64_C(0x100000001b3)

/* Hashes the low `bytes` bytes of v, least significant first, into h. */
static inline uint64_t bench_fnv_le(uint64_t h, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= BENCH_FNV_PRIME;
    }
    return h;
}

static inline uint64_t bench_fnv_i32(uint64_t h, int32_t v)
{
    return bench_fnv_le(h, (uint32_t)v, 4);
}

/* --- time and statistics ----------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* Where a timed loop began: both clocks, and what the scheduler had done. */
struct bench_clock {
    uint64_t wall_ns, cpu_ns; /* CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID */
    long nivcsw;              /* involuntary context switches so far */
    int cpu;                  /* sched_getcpu() */
};

/* What a timed loop took. */
struct bench_elapsed {
    uint64_t wall_ns; /* what WORKLOADS.md measures */
    uint64_t cpu_ns;  /* the part of it this thread was running */
    long preemptions; /* involuntary context switches meanwhile */
    int cpu_begin, cpu_end;
};

void bench_clock_start(struct bench_clock *c);
struct bench_elapsed bench_clock_stop(const struct bench_clock *c);

/* A figure: one workload's per-op time in each of its runs, by both clocks. */
struct bench_figure {
    unsigned n;
    double wall[BENCH_RUNS], cpu[BENCH_RUNS], share[BENCH_RUNS];
    int cpu_id[BENCH_RUNS]; /* the CPU the run ended on */
};

/* Adds a run of ops operations. */
void bench_figure_add(struct bench_figure *f, const struct bench_elapsed *e, double ops);
double bench_figure_wall(const struct bench_figure *f); /* median of the runs */
double bench_figure_cpu(const struct bench_figure *f);  /* median of the runs */
/* The median of the runs' CPU time / wall time: at least BENCH_QUIET_SHARE
 * when most runs, and so the median wall figure, were not slowed by other
 * processes (a slowed run is slower than the quiet ones). */
double bench_figure_share(const struct bench_figure *f);
/* Prints "name runs: ... median m" for the wall clock, then the CPU-time
 * figures, the shares and the CPUs. */
void bench_figure_print(const char *name, const struct bench_figure *f);

/* A loop whose thread ran less than this share of its wall time was slowed
 * by other processes on its CPU: its wall figure does not compare. */
#define BENCH_QUIET_SHARE 0.97

/* Prints the mode the workload was measured in (quiet or shared CPU). */
void bench_print_mode(const char *workload, double share);

/* Prints the machine (CPU model, CPUs, core clock) and records the clock,
 * the CPU count and whether the runner is real-time in results.json's
 * "machine" object: ns figures compare only between machines of one kind. */
void bench_machine(struct bench_results *r, bool realtime);

/* The median of v[0..n) (1 <= n <= BENCH_MEDIAN_MAX; the mean of the middle
 * two if n is even). v is left as it is. */
#define BENCH_MEDIAN_MAX 64
double bench_median(const double *v, size_t n);

/* AnonHugePages of this process in KiB (/proc/self/smaps_rollup), or -1 if
 * it cannot be read: shows whether the arenas got transparent huge pages. */
long bench_thp_kb(void);

/* Prints "name runs: a b c d e  median m" (ns per op, two decimals). */
void bench_print_runs(const char *name, const double *runs, size_t n, double median);

/* --- instruction counts (--instr, under callgrind) --------------------------- */

/* Whether the markers below reach callgrind (kmm-bench was built with
 * valgrind/callgrind.h). */
bool bench_instr_available(void);
/* Zeroes callgrind's counters (nothing when not under callgrind). */
void bench_instr_begin(void);
/* Dumps callgrind's counters since bench_instr_begin, described as
 * "<object> <key> <ops>[ <subkey>=<function>...]": tools/bench-instr.sh
 * divides the dump's instructions by ops and stores them as object.key, and
 * each named function's inclusive instructions per op as object.subkey
 * (the function "-": whatever the others leave). */
void bench_instr_end(const char *what);

/* --- results --------------------------------------------------------------- */

#define BENCH_MAX_ROWS    16
#define BENCH_MAX_OBJECTS 16
#define BENCH_MAX_FIELDS  32

/* One line of the table. floor_ns < 0: the workload has no floor. */
struct bench_row {
    const char *workload; /* "P1" */
    const char *unit;     /* what one op is: "ns/pair", "ns/step" */
    double ns;            /* kmm's median, wall clock */
    double cpu_ns;        /* kmm's median, CPU time, or < 0 if not measured */
    double share;         /* bench_figure_share (the lowest of the row's figures), or < 0 */
    double floor_ns;      /* the bare data-structure operation's median CPU time, or < 0 */
    const char *peers;    /* WORKLOADS.md's figures for the same trace, or the peers
                           * measured in this run (H1, H2) */
    double instr;         /* instructions per op (set by bench_read_instr), 0 if not counted */
};

struct bench_field {
    const char *key;
    double value;
};

/* A workload's object in results.json. */
struct bench_object {
    const char *name;
    size_t nfields;
    struct bench_field fields[BENCH_MAX_FIELDS];
};

struct bench_results {
    size_t nrows;
    struct bench_row rows[BENCH_MAX_ROWS];
    size_t nobjects;
    struct bench_object objects[BENCH_MAX_OBJECTS];
};

/* Adds a table row. Returns false if the table is full. */
bool bench_add_row(struct bench_results *r, const struct bench_row *row);

/* Sets object.key = value in results.json (the object is created on first
 * use, fields keep their order). Returns false if there is no room. */
bool bench_add_field(struct bench_results *r, const char *object, const char *key, double value);

/* Reads "<object> <key> <value>" lines written by tools/bench-instr.sh
 * into the objects, and each row's instructions per op. Returns false (with
 * a message on stderr) if path cannot be read or a line is malformed. */
bool bench_read_instr(struct bench_results *r, const char *path);

/* Prints the table of every row added so far. */
void bench_print_table(const struct bench_results *r, FILE *out);

/* Writes every object as one JSON document to path (numbers with two
 * decimals). Returns false (with a message on stderr) if it cannot. */
bool bench_write_json(const struct bench_results *r, const char *path);

/* --- the workloads ------------------------------------------------------------ */

/* How a workload runs. */
struct bench_mode {
    bool instr; /* once, on a reduced count, each measured loop marked for callgrind */
};

/* Each runs one workload and adds its figures to r. Returns 0, or non-zero
 * if the workload could not run or its trace or results are wrong (the
 * message is on stderr). */
int bench_pmm_p1(struct bench_results *r, const struct bench_mode *mode);
int bench_pmm_p2(struct bench_results *r, const struct bench_mode *mode);
/* The init workload (bench_init.c): ready and full init time of 1, 16 and
 * 256 GiB machines; results.json's "init" object. It has no --instr form. */
int bench_init(struct bench_results *r, const struct bench_mode *mode);
int bench_vm_m1(struct bench_results *r, const struct bench_mode *mode);
/* The heap workloads (bench_heap.c): kmm, its floor, and the system mallocs
 * glibc, jemalloc and mimalloc, each run in a process of its own
 * (kmm-heap-<peer>, built beside kmm-bench); --instr counts kmm's alone. */
int bench_heap_h1(struct bench_results *r, const struct bench_mode *mode);
int bench_heap_h2(struct bench_results *r, const struct bench_mode *mode);

#endif /* KMM_BENCH_H */
