/*
 * heap_trace.c - the H2 trace of WORKLOADS.md (heap_work.h), shared by
 * kmm-bench and the heap peers' processes.
 *
 * One splitmix64 stream (seed 0x4832) in the order WORKLOADS.md writes the
 * draws: the 10,000 fill sizes, then per step the slot and then the size. A
 * size is e = 4 + below(8), 2^e + below(2^e): [16, 4095], each octave
 * equally likely. The hash is FNV-1a-64 over the fill sizes as uint16, then
 * each step as uint32 (slot << 16 | size), little-endian.
 */
#define _GNU_SOURCE
#include "heap_work.h"

#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

/* The smallest octave's exponent and the octaves drawn from. */
#define H2_MIN_EXP 4u
#define H2_OCTAVES 8u

static uint16_t h2_draw_size(struct bench_rng *rng)
{
    unsigned e = H2_MIN_EXP + (unsigned)bench_rng_below(rng, H2_OCTAVES);
    return (uint16_t)((1u << e) + bench_rng_below(rng, UINT64_C(1) << e));
}

int h2_trace_make(struct h2_trace *t, unsigned nsteps)
{
    size_t bytes = (size_t)nsteps * sizeof(*t->steps);
    void *steps =
        mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (steps == MAP_FAILED) {
        perror("H2: cannot map the trace");
        return -1;
    }
    t->steps = steps;
    t->nsteps = nsteps;

    static uint16_t live[H2_SLOTS]; /* each slot's requested size now */
    struct bench_rng rng = {H2_SEED};
    uint64_t h = BENCH_FNV_BASIS, bytes_live = 0, peak = 0;
    for (unsigned s = 0; s < H2_SLOTS; s++) {
        t->fill[s] = live[s] = h2_draw_size(&rng);
        h = bench_fnv_le(h, t->fill[s], sizeof(t->fill[s]));
        bytes_live += live[s];
        peak = bytes_live > peak ? bytes_live : peak;
    }
    for (unsigned j = 0; j < nsteps; j++) {
        uint32_t s = (uint32_t)bench_rng_below(&rng, H2_SLOTS);
        uint16_t size = h2_draw_size(&rng);
        t->steps[j] = s << H2_STEP_SHIFT | size;
        h = bench_fnv_le(h, t->steps[j], sizeof(t->steps[j]));
        bytes_live = bytes_live - live[s] + size;
        live[s] = size;
        peak = bytes_live > peak ? bytes_live : peak;
    }
    t->peak_live_bytes = peak;
    t->hash = h;
    return 0;
}

void h2_trace_free(struct h2_trace *t)
{
    size_t bytes = (size_t)t->nsteps * sizeof(*t->steps);
    if (t->steps)
        munmap(t->steps, bytes ? bytes : 1);
    t->steps = NULL;
}

int h2_trace_check(const struct h2_trace *t, const char *who)
{
    char line[128];
    snprintf(line, sizeof(line), "H2 nsteps=%u peak_live_bytes=%" PRIu64 " hash=%016" PRIx64,
             t->nsteps, t->peak_live_bytes, t->hash);
    printf("%s\n", line);
    if (t->nsteps != H2_STEPS || strcmp(line, H2_EXPECTED) == 0)
        return 0;
    fprintf(stderr, "%s: the H2 trace differs from WORKLOADS.md's:\n  want %s\n  got  %s\n", who,
            H2_EXPECTED, line);
    return -1;
}
