/*
 * bench.c - the benchmark runner (make bench) and the harness's shared tools.
 *
 *   kmm-bench [-o results.json] [workload ...]
 *
 * Runs the workloads named (all of them by default) in the order of the
 * table below, prints a table of their figures, and writes results.json
 * once at the end. Exits non-zero if any workload failed: a trace that does
 * not hash as WORKLOADS.md says, or an allocator that lost memory.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The workloads, in the order they run. Later layers add theirs here. */
static const struct {
    const char *name;
    int (*run)(struct bench_results *r);
} workloads[] = {
    {"P1", bench_pmm_p1},
    {"P2", bench_pmm_p2},
    {"init", bench_init},
    {"M1", bench_vm_m1},
};

#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
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

bool bench_add_row(struct bench_results *r, const struct bench_row *row)
{
    if (r->nrows == BENCH_MAX_ROWS)
        return false;
    r->rows[r->nrows++] = *row;
    return true;
}

bool bench_add_field(struct bench_results *r, const char *object, const char *key, double value)
{
    struct bench_object *o = NULL;
    for (size_t i = 0; i < r->nobjects && !o; i++)
        if (strcmp(r->objects[i].name, object) == 0)
            o = &r->objects[i];
    if (!o) {
        if (r->nobjects == BENCH_MAX_OBJECTS)
            return false;
        o = &r->objects[r->nobjects++];
        o->name = object;
        o->nfields = 0;
    }
    for (size_t i = 0; i < o->nfields; i++)
        if (strcmp(o->fields[i].key, key) == 0) {
            o->fields[i].value = value;
            return true;
        }
    if (o->nfields == BENCH_MAX_FIELDS)
        return false;
    o->fields[o->nfields++] = (struct bench_field){key, value};
    return true;
}

void bench_print_table(const struct bench_results *r, FILE *out)
{
    fprintf(out,
            "| workload | unit    |   kmm ns | floor ns |  ratio | peers, measured elsewhere on "
            "this machine type (WORKLOADS.md) |\n");
    fprintf(out, "|----------|---------|---------:|---------:|-------:|---|\n");
    for (size_t i = 0; i < r->nrows; i++) {
        const struct bench_row *w = &r->rows[i];
        char floor_ns[32] = "-", ratio[32] = "-";
        if (w->floor_ns > 0) {
            snprintf(floor_ns, sizeof(floor_ns), "%.2f", w->floor_ns);
            snprintf(ratio, sizeof(ratio), "%.2fx", w->ns / w->floor_ns);
        }
        fprintf(out, "| %-8s | %-7s | %8.2f | %8s | %6s | %s |\n", w->workload, w->unit, w->ns,
                floor_ns, ratio, w->peers);
    }
}

bool bench_write_json(const struct bench_results *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return false;
    }
    fputc('{', f);
    for (size_t i = 0; i < r->nobjects; i++) {
        const struct bench_object *o = &r->objects[i];
        fprintf(f, "%s\"%s\": {", i ? ", " : "", o->name);
        for (size_t j = 0; j < o->nfields; j++) {
            double v = o->fields[j].value;
            /* JSON has no NaN or infinity: a figure that is not one is null. */
            if (isfinite(v))
                fprintf(f, "%s\"%s\": %.2f", j ? ", " : "", o->fields[j].key, v);
            else
                fprintf(f, "%s\"%s\": null", j ? ", " : "", o->fields[j].key);
        }
        fputc('}', f);
    }
    fputs("}\n", f);
    if (ferror(f) | fclose(f)) {
        perror(path);
        return false;
    }
    return true;
}

static bool wanted(const char *name, char **names, int count)
{
    if (count == 0)
        return true;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-o") == 0) {
        json = argv[2];
        first = 3;
    }
    for (int i = first; i < argc; i++) {
        bool known = false;
        for (size_t w = 0; w < NWORKLOADS; w++)
            known |= strcmp(argv[i], workloads[w].name) == 0;
        if (!known) {
            fprintf(stderr,
                    "usage: kmm-bench [-o results.json] [workload ...]\n"
                    "unknown workload %s\n",
                    argv[i]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    static struct bench_results results;
    int failed = 0;
    for (size_t w = 0; w < NWORKLOADS; w++) {
        if (!wanted(workloads[w].name, argv + first, argc - first))
            continue;
        if (workloads[w].run(&results) != 0) {
            fprintf(stderr, "kmm-bench: %s FAILED\n", workloads[w].name);
            failed = 1;
        }
    }
    printf("\n");
    bench_print_table(&results, stdout);
    if (json && !bench_write_json(&results, json))
        failed = 1;
    else if (json)
        printf("\nwrote %s\n", json);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
