/*
 * kmm/check.h - the integrity check: one walker over every structure.
 *
 * kmm_check recounts everything the library keeps against its counters and
 * links, layer by layer. Tests call it after every scenario; a kernel can
 * call it from a debug shell. It only reads.
 */
#ifndef KMM_CHECK_H
#define KMM_CHECK_H

#include <stdint.h>

#include <kmm/kmm.h>

/* Verdicts, worst last (the Boruix interface returns the same numbers). */
#define KMM_CHECK_OK      0 /* everything adds up */
#define KMM_CHECK_LEAK    1 /* consistent, but memory is held that should not be */
#define KMM_CHECK_CORRUPT 2 /* a structure contradicts itself */

struct kmm_check_result {
    int status;             /* KMM_CHECK_*, the worst finding */
    unsigned long problems; /* number of findings */
    char first[192];        /* the first finding in words ("" when none) */
    uint64_t frames_walked; /* frame descriptors looked at */
    uint64_t blocks_walked; /* free-list entries followed */
};

/*
 * kmm_check - walk every structure of k and fill *r. Returns r->status.
 * Takes every zone lock (in the documented order) for the walk, so other
 * CPUs' allocations wait: O(frames), for tests and debugging, not hot paths.
 * The per-CPU page caches belong to their CPUs and take no lock: the walk
 * is exact when no other CPU allocates or frees single pages meanwhile (a
 * test's quiet point, a debug shell); otherwise it may report a cache
 * mismatch that is only a race. IRQs on.
 */
int kmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_CHECK_H */
