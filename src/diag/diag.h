/*
 * diag/diag.h - what the diagnostics' files share: the user spaces'
 * figures summed, for kmm_stats and the report. Private to src/diag/.
 */
#ifndef KMM_DIAG_DIAG_H
#define KMM_DIAG_DIAG_H

#include <kmm/stats.h>

struct kmm;

/* Sums kmm_vm_stats of every user space into *out (misuse: the instance's
 * vm count, as each space reports it). Takes the space list lock, then
 * each space's lock under it (lock order 0 -> 1). IRQs on or off. */
void diag_user_spaces(struct kmm *k, struct kmm_user_space_stats *out);

#endif /* KMM_DIAG_DIAG_H */
