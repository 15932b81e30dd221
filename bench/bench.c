/*
 * bench.c - the benchmark runner (make bench): the workload table, the
 * machine, and the results (table and JSON). The measuring tools are in
 * measure.c.
 *
 *   kmm-bench [-o results.json] [-i instr.txt] [--instr] [--no-rt] [workload ...]
 *
 * Runs the workloads named (all of them by default) in the order of the
 * table below, prints a table of their figures, and writes results.json
 * once at the end. It runs as SCHED_FIFO if it may (--no-rt: it does not
 * ask). -i adds the instruction counts tools/bench-instr.sh wrote. --instr
 * runs each workload once on a reduced count with its loops marked for
 * callgrind, instead of timing it (tools/bench-instr.sh).
 * Exits non-zero if any workload failed: a trace that does not hash as
 * WORKLOADS.md says, or an allocator that lost memory.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The workloads, in the order they run. Later layers add theirs here. */
static const struct {
    const char *name;
    int (*run)(struct bench_results *r, const struct bench_mode *mode);
    bool counts; /* has an --instr form */
} workloads[] = {
    {"P1", bench_pmm_p1, true},  {"P2", bench_pmm_p2, true},  {"H1", bench_heap_h1, true},
    {"H2", bench_heap_h2, true}, {"init", bench_init, false}, {"M1", bench_vm_m1, true},
};

#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

/* The real-time priority the runner asks for: the lowest, above every
 * normal process. */
#define BENCH_RT_PRIORITY 1

/* Asks for SCHED_FIFO, so that no normal process takes this CPU while a loop
 * runs (nice does not do that here: with autogroups it only weighs the
 * processes of one session against each other). The kernel's RT throttling
 * (by default 50 ms of every second) still gives the CPU away, rarely
 * within a loop; each run's share shows it. Returns whether it was given. */
static bool run_realtime(void)
{
    struct sched_param sp = {.sched_priority = BENCH_RT_PRIORITY};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0) {
        printf("scheduling: SCHED_FIFO priority %d, other processes cannot take this CPU\n",
               BENCH_RT_PRIORITY);
        return true;
    }
    printf("scheduling: normal (SCHED_FIFO refused: %s), other processes may share the CPU\n",
           strerror(errno));
    return false;
}

/* Multiplies per clock probe: about a millisecond. A chain of dependent
 * 64-bit multiplies takes 3 cycles each on every x86_64 core since 2011. */
#define CLOCK_PROBE_MULS  1000000u
#define CLOCK_MUL_CYCLES  3.0
#define CLOCK_PROBE_TRIES 5

/* The core clock in GHz: the fastest of a few probes (a slower one was
 * preempted). */
static double core_ghz(void)
{
    double best = 0;
    for (unsigned t = 0; t < CLOCK_PROBE_TRIES; t++) {
        uint64_t x = 3;
        uint64_t t0 = bench_now_ns();
        for (unsigned i = 0; i < CLOCK_PROBE_MULS / 4; i++)
            __asm__ volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0" : "+r"(x));
        double ghz = CLOCK_PROBE_MULS * CLOCK_MUL_CYCLES / (double)(bench_now_ns() - t0);
        best = ghz > best ? ghz : best;
    }
    return best;
}

void bench_machine(struct bench_results *r, bool realtime)
{
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            if (colon)
                snprintf(model, sizeof(model), "%s", colon + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    double ghz = core_ghz();
    printf("machine: %s, %ld CPUs, core clock about %.2f GHz\n", model, cpus, ghz);
    bench_add_field(r, "machine", "ghz", ghz);
    bench_add_field(r, "machine", "cpus", (double)cpus);
    bench_add_field(r, "machine", "realtime", realtime);
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

/* Which row shows which instruction count. */
static const struct {
    const char *object, *key, *row;
} instr_rows[] = {
    {"P1", "instr_per_pair", "P1"},        {"P2", "instr_per_step", "P2"},
    {"M1", "instr_per_map", "M1 map"},     {"M1", "instr_per_translate", "M1 transl"},
    {"M1", "instr_per_unmap", "M1 unmap"}, {"H1", "instr_per_pair", "H1"},
    {"H2", "instr_per_step", "H2"},
};

/* The names bench_read_instr stores: results.json keeps pointers to them. */
#define INSTR_MAX_NAMES 64
#define INSTR_NAME_LEN  48
static char instr_names[INSTR_MAX_NAMES][INSTR_NAME_LEN];
static size_t instr_nnames;

static const char *instr_name(const char *s)
{
    for (size_t i = 0; i < instr_nnames; i++)
        if (strcmp(instr_names[i], s) == 0)
            return instr_names[i];
    if (instr_nnames == INSTR_MAX_NAMES || strlen(s) >= INSTR_NAME_LEN)
        return NULL;
    strcpy(instr_names[instr_nnames], s);
    return instr_names[instr_nnames++];
}

bool bench_read_instr(struct bench_results *r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return false;
    }
    char line[256], object[INSTR_NAME_LEN], key[INSTR_NAME_LEN];
    double value;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        const char *o, *k;
        ok = sscanf(line, "%47s %47s %lf", object, key, &value) == 3 && (o = instr_name(object)) &&
             (k = instr_name(key)) && bench_add_field(r, o, k, value);
        for (size_t i = 0; ok && i < sizeof(instr_rows) / sizeof(instr_rows[0]); i++)
            if (strcmp(instr_rows[i].object, object) == 0 && strcmp(instr_rows[i].key, key) == 0)
                for (size_t j = 0; j < r->nrows; j++)
                    if (strcmp(r->rows[j].workload, instr_rows[i].row) == 0)
                        r->rows[j].instr = value;
        if (!ok)
            fprintf(stderr, "%s: cannot use the line: %s", path, line);
    }
    fclose(f);
    return ok;
}

void bench_print_table(const struct bench_results *r, FILE *out)
{
    fprintf(out, "| workload | unit    |   kmm ns |   cpu ns | share | floor cpu ns |  ratio | "
                 "instr/op | peers: H1, H2 measured in this run; the others WORKLOADS.md's |\n");
    fprintf(out, "|----------|---------|---------:|---------:|------:|-------------:|-------:|"
                 "---------:|---|\n");
    for (size_t i = 0; i < r->nrows; i++) {
        const struct bench_row *w = &r->rows[i];
        char cpu_ns[32] = "-", share[32] = "-", floor_ns[32] = "-", ratio[32] = "-",
             instr[32] = "-";
        if (w->cpu_ns >= 0)
            snprintf(cpu_ns, sizeof(cpu_ns), "%.2f", w->cpu_ns);
        if (w->share >= 0)
            snprintf(share, sizeof(share), "%.2f", w->share);
        if (w->floor_ns > 0) {
            snprintf(floor_ns, sizeof(floor_ns), "%.2f", w->floor_ns);
            snprintf(ratio, sizeof(ratio), "%.2fx", w->cpu_ns / w->floor_ns);
        }
        if (w->instr > 0)
            snprintf(instr, sizeof(instr), "%.1f", w->instr);
        fprintf(out, "| %-8s | %-7s | %8.2f | %8s | %5s | %12s | %6s | %8s | %s |\n", w->workload,
                w->unit, w->ns, cpu_ns, share, floor_ns, ratio, instr, w->peers);
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

static int usage(const char *why)
{
    fprintf(stderr,
            "usage: kmm-bench [-o results.json] [-i instr.txt] [--instr] [--no-rt] [workload "
            "...]\n%s\n",
            why);
    return 2;
}

int main(int argc, char **argv)
{
    const char *json = NULL, *instr = NULL;
    bool no_rt = false;
    struct bench_mode mode = {.instr = false};
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--instr") == 0)
            mode.instr = true;
        else if (strcmp(argv[first], "--no-rt") == 0)
            no_rt = true;
        else if (strcmp(argv[first], "-o") == 0 && first + 1 < argc)
            json = argv[++first];
        else if (strcmp(argv[first], "-i") == 0 && first + 1 < argc)
            instr = argv[++first];
        else
            return usage("unknown option");
    }
    for (int i = first; i < argc; i++) {
        bool known = false;
        for (size_t w = 0; w < NWORKLOADS; w++)
            known |= strcmp(argv[i], workloads[w].name) == 0;
        if (!known)
            return usage("unknown workload");
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mode.instr && !bench_instr_available())
        printf("kmm-bench: built without valgrind/callgrind.h: --instr marks nothing\n");

    static struct bench_results results;
    int failed = 0;
    if (!mode.instr) {
        bool realtime = false;
        if (no_rt)
            printf("scheduling: normal (--no-rt), other processes may share the CPU\n");
        else
            realtime = run_realtime();
        bench_machine(&results, realtime);
    }
    for (size_t w = 0; w < NWORKLOADS; w++) {
        if (!wanted(workloads[w].name, argv + first, argc - first))
            continue;
        if (mode.instr && !workloads[w].counts) {
            printf("%s: no instruction count, skipped\n", workloads[w].name);
            continue;
        }
        if (workloads[w].run(&results, &mode) != 0) {
            fprintf(stderr, "kmm-bench: %s FAILED\n", workloads[w].name);
            failed = 1;
        }
    }
    if (mode.instr)
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
    if (instr && !bench_read_instr(&results, instr))
        failed = 1;
    printf("\n");
    bench_print_table(&results, stdout);
    if (json && !bench_write_json(&results, json))
        failed = 1;
    else if (json)
        printf("\nwrote %s\n", json);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
