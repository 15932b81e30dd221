/*
 * measure.c - the harness's measuring tools (bench.h): clocks, figures and
 * their medians, the mode a workload ran in, the instruction-count markers.
 * Shared by kmm-bench and the heap peers' processes (bench/peers/), which
 * link it without the runner.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#else
#define BENCH_HAVE_CALLGRIND 0
#endif

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static uint64_t timespec_ns(const struct timespec *ts)
{
    return (uint64_t)ts->tv_sec * UINT64_C(1000000000) + (uint64_t)ts->tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return timespec_ns(&ts);
}

static long involuntary_switches(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_nivcsw : 0;
}

void bench_clock_start(struct bench_clock *c)
{
    c->cpu = sched_getcpu();
    c->nivcsw = involuntary_switches();
    c->cpu_ns = thread_cpu_ns();
    c->wall_ns = bench_now_ns();
}

struct bench_elapsed bench_clock_stop(const struct bench_clock *c)
{
    uint64_t wall = bench_now_ns();
    uint64_t cpu = thread_cpu_ns();
    return (struct bench_elapsed){
        .wall_ns = wall - c->wall_ns,
        .cpu_ns = cpu - c->cpu_ns,
        .preemptions = involuntary_switches() - c->nivcsw,
        .cpu_begin = c->cpu,
        .cpu_end = sched_getcpu(),
    };
}

void bench_figure_add(struct bench_figure *f, const struct bench_elapsed *e, double ops)
{
    if (f->n == BENCH_RUNS)
        abort();
    f->wall[f->n] = (double)e->wall_ns / ops;
    f->cpu[f->n] = (double)e->cpu_ns / ops;
    /* CPU time is read after the wall clock stops, so it can exceed it by
     * the read's own cost: a share is at most 1. */
    double share = e->wall_ns ? (double)e->cpu_ns / (double)e->wall_ns : 1;
    f->share[f->n] = share < 1 ? share : 1;
    f->cpu_id[f->n] = e->cpu_end;
    f->n++;
}

double bench_figure_wall(const struct bench_figure *f)
{
    return bench_median(f->wall, f->n);
}

double bench_figure_cpu(const struct bench_figure *f)
{
    return bench_median(f->cpu, f->n);
}

double bench_figure_share(const struct bench_figure *f)
{
    return bench_median(f->share, f->n);
}

void bench_figure_print(const char *name, const struct bench_figure *f)
{
    printf("%s runs:", name);
    for (unsigned i = 0; i < f->n; i++)
        printf(" %.2f", f->wall[i]);
    printf("  median %.2f\n%s cpu: ", bench_figure_wall(f), name);
    for (unsigned i = 0; i < f->n; i++)
        printf(" %.2f", f->cpu[i]);
    printf("  median %.2f\n%s share:", bench_figure_cpu(f), name);
    for (unsigned i = 0; i < f->n; i++)
        printf(" %.2f", f->share[i]);
    printf("  on CPU");
    for (unsigned i = 0; i < f->n; i++)
        printf(" %d", f->cpu_id[i]);
    printf("\n");
}

void bench_print_mode(const char *workload, double share)
{
    if (share >= BENCH_QUIET_SHARE)
        printf("%s mode: quiet (the median run had its CPU %.0f%% of its wall time)\n", workload,
               100 * share);
    else
        printf("%s mode: SHARED CPU: the median run had its CPU only %.0f%% of its wall time, "
               "other processes ran there; compare cpu_ns, not ns\n",
               workload, 100 * share);
}

bool bench_instr_available(void)
{
    return BENCH_HAVE_CALLGRIND;
}

void bench_instr_begin(void)
{
#if BENCH_HAVE_CALLGRIND
    CALLGRIND_ZERO_STATS;
#endif
}

void bench_instr_end(const char *what)
{
#if BENCH_HAVE_CALLGRIND
    CALLGRIND_DUMP_STATS_AT(what);
#else
    (void)what;
#endif
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *v, size_t n)
{
    double s[BENCH_MEDIAN_MAX];
    if (n == 0 || n > BENCH_MEDIAN_MAX)
        abort();
    memcpy(s, v, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

long bench_thp_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "AnonHugePages:", 14) == 0) {
            kb = strtol(line + 14, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

void bench_print_runs(const char *name, const double *runs, size_t n, double median)
{
    printf("%s runs:", name);
    for (size_t i = 0; i < n; i++)
        printf(" %.2f", runs[i]);
    printf("  median %.2f\n", median);
}
