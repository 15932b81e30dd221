/*
 * lib/misuse.h - the one way a public entry point rejects a caller mistake.
 * Private to src/.
 */
#ifndef KMM_LIB_MISUSE_H
#define KMM_LIB_MISUSE_H

#include "lib/lib.h"
#include <stdatomic.h>

#include <kmm/kmm.h>
#include <kmm/misuse.h>

struct kmm;

/* The counters behind kmm_misuse_stats, one per layer and class. */
struct kmm_misuse_table {
    atomic_uint_fast64_t count[KMM_LAYER_COUNT][KMM_MISUSE_COUNT];
};

/* Zeroes the table. Init only. */
KMM_INIT void kmm_misuse_init(struct kmm_misuse_table *t);

/*
 * kmm_misuse - reject a call (SPEC §9): counts it once in k's table under
 * (layer, what), logs one KMM_LOG_ERR line, the formatted text followed by
 * ", caller <caller>", and returns err, so that an entry point ends with
 * `return kmm_misuse(...)`. The text names the call and its arguments and
 * says what was wrong: "kmm_vm_map(0x1000, size 0x2000): not page aligned".
 * Changes nothing else; any context (IRQs off, locks held: the log hook is
 * the port's and must be callable there, kmm/port.h).
 */
int kmm_misuse(struct kmm *k, enum kmm_layer layer, enum kmm_misuse what, int err,
               const void *caller, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The sum of one layer's row: the per-layer `misuse` figures. */
uint64_t kmm_misuse_layer_total(struct kmm *k, enum kmm_layer layer);

#endif /* KMM_LIB_MISUSE_H */
