/*
 * heap/api.h - what the instance's other parts (init.c, diag/) need of the
 * heap. Contracts of the public calls: kmm/heap.h.
 */
#ifndef KMM_HEAP_API_H
#define KMM_HEAP_API_H

#include "internal.h"

/* heap_init - kmm_init's part: the lock, the class table, the secret.
 * Allocates nothing: the caches are made on first use. */
KMM_INIT void heap_init(struct kmm *k);

/* heap_check - kmm_check's part: every cache's slab lists, free lists,
 * tags and counters, and the CPU stacks. Takes each cache's lock. */
void heap_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_HEAP_API_H */
