/*
 * heap_work.h - H1 and H2 of WORKLOADS.md, shared by kmm's side
 * (bench_heap.c) and the peers' processes (peers/heap_peer.c), so that every
 * allocator runs the same loops over the same trace: the constants, the H2
 * trace (heap_trace.c), and the loops, generic over the allocator.
 *
 * An allocator is two functions with a context, passed as constant function
 * pointers to the BENCH_INLINE loops below, so that each caller's copy of a
 * loop calls the allocator directly (WORKLOADS.md's rule):
 *
 *     void *alloc(void *ctx, size_t size);          NULL if it failed
 *     int release(void *ctx, void *p, size_t size); 0, or the allocator's error
 *
 * release gets the block's size only from loops given a size array (the
 * floor's sized free); the others pass 0. The timed loops never touch the
 * blocks: the cost is the allocator's own. A failed allocation keeps NULL in
 * its slot and its later free is skipped; both loops count failures.
 */
#ifndef KMM_BENCH_HEAP_WORK_H
#define KMM_BENCH_HEAP_WORK_H

#include "bench.h"

/* --- H1: fixed 64 B LIFO ------------------------------------------------------ */

#define H1_ROUNDS       10000u
#define H1_BATCH        1000u
#define H1_SIZE         64u
#define H1_PAIRS        ((uint64_t)H1_ROUNDS * H1_BATCH) /* 10,000,000 */
/* --instr: rounds counted, after one uncounted round that fills the
 * allocator's caches as the first of H1_ROUNDS does. */
#define H1_INSTR_ROUNDS 100u

/* --- H2: random sizes, 10,000 live slots --------------------------------------- */

#define H2_SEED        UINT64_C(0x4832)
#define H2_SLOTS       10000u
#define H2_STEPS       10000000u
/* --instr: the steps counted after the fill, the first of the trace. */
#define H2_INSTR_STEPS 200000u
/* The identity of the full trace (h2_trace_line). */
#define H2_EXPECTED    "H2 nsteps=10000000 peak_live_bytes=8110618 hash=bb00bfd2ee270616"

/* A step as the trace stores and hashes it: slot << 16 | size. */
#define H2_STEP_SHIFT     16u
#define H2_STEP_SIZE_MASK 0xffffu

/* The trace, generated before any timing: the fill's sizes (slot s gets
 * fill[s]), then each timed step (free the slot, allocate the size into it). */
struct h2_trace {
    uint16_t fill[H2_SLOTS];
    uint32_t *steps; /* nsteps of them, mmap'd: no allocator under test holds them */
    unsigned nsteps;
    uint64_t peak_live_bytes; /* the most requested bytes live at once */
    uint64_t hash;            /* FNV-1a-64 over fill (uint16) then steps (uint32) */
};

/* Generates the fill and the first nsteps steps of the trace (the trace is
 * drawn step by step, so a shorter one is a prefix of the full one).
 * Returns 0, or -1 with a message on stderr if out of memory. */
int h2_trace_make(struct h2_trace *t, unsigned nsteps);

/* Unmaps the trace's steps. */
void h2_trace_free(struct h2_trace *t);

/* Prints the trace's identity line ("H2 nsteps=... peak_live_bytes=...
 * hash=...") and, if the trace is the full one, compares it with
 * WORKLOADS.md's. Returns 0, or -1 with both lines on stderr, naming who,
 * if they differ: the work would not be the work the peers did. */
int h2_trace_check(const struct h2_trace *t, const char *who);

/* --- the loops ------------------------------------------------------------------- */

/* What a loop counts besides time. */
struct heap_counts {
    uint64_t failures;  /* allocations that returned NULL */
    uint64_t bad_frees; /* frees the allocator refused */
};

/* H1: rounds of H1_BATCH allocations of H1_SIZE bytes into vec, then their
 * frees in reverse order. */
BENCH_INLINE void h1_loop(void *ctx, void **vec, unsigned rounds, void *(*alloc)(void *, size_t),
                          int (*release)(void *, void *, size_t), struct heap_counts *c)
{
    uint64_t failures = 0, bad = 0;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < H1_BATCH; i++) {
            void *p = alloc(ctx, H1_SIZE);
            failures += p == NULL;
            vec[i] = p;
        }
        for (unsigned i = H1_BATCH; i-- > 0;)
            if (vec[i])
                bad += release(ctx, vec[i], H1_SIZE) != 0;
    }
    c->failures += failures;
    c->bad_frees += bad;
}

/* H2's fill: slot s gets an allocation of t->fill[s] bytes. sizes (NULL, or
 * H2_SLOTS entries) keeps each slot's size for a sized free. */
BENCH_INLINE void h2_fill(void *ctx, const struct h2_trace *t, void **slots, uint16_t *sizes,
                          void *(*alloc)(void *, size_t), struct heap_counts *c)
{
    for (unsigned s = 0; s < H2_SLOTS; s++) {
        void *p = alloc(ctx, t->fill[s]);
        c->failures += p == NULL;
        slots[s] = p;
        if (sizes)
            sizes[s] = t->fill[s];
    }
}

/* H2's steps[0 .. n): free the step's slot, allocate its size into it. */
BENCH_INLINE void h2_steps(void *ctx, const uint32_t *steps, unsigned n, void **slots,
                           uint16_t *sizes, void *(*alloc)(void *, size_t),
                           int (*release)(void *, void *, size_t), struct heap_counts *c)
{
    uint64_t failures = 0, bad = 0;
    for (unsigned j = 0; j < n; j++) {
        uint32_t op = steps[j];
        uint32_t s = op >> H2_STEP_SHIFT;
        uint16_t size = (uint16_t)(op & H2_STEP_SIZE_MASK);
        if (slots[s])
            bad += release(ctx, slots[s], sizes ? sizes[s] : 0) != 0;
        void *p = alloc(ctx, size);
        failures += p == NULL;
        slots[s] = p;
        if (sizes)
            sizes[s] = size;
    }
    c->failures += failures;
    c->bad_frees += bad;
}

/* H2's teardown: frees every slot. */
BENCH_INLINE void h2_teardown(void *ctx, void **slots, const uint16_t *sizes,
                              int (*release)(void *, void *, size_t), struct heap_counts *c)
{
    for (unsigned s = 0; s < H2_SLOTS; s++) {
        if (slots[s])
            c->bad_frees += release(ctx, slots[s], sizes ? sizes[s] : 0) != 0;
        slots[s] = NULL;
    }
}

#endif /* KMM_BENCH_HEAP_WORK_H */
