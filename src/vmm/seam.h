/*
 * seam.h - what the tests may observe inside the vmm that no public call
 * shows, to assert bounds the headers promise without timing anything
 * (o1heap's test seam is the model). Not for kernels; private to src/vmm/
 * and tests/.
 */
#ifndef KMM_VMM_SEAM_H
#define KMM_VMM_SEAM_H

#include <stdint.h>

#include <kmm/vm.h>

/*
 * vmm_query_counted - kmm_vm_query (same arguments, result and refusals),
 * and in *steps the steps its walk took: the table lookups, one per leaf,
 * absent entry or empty table passed (kmm/vm.h bounds them: a whole empty
 * half takes at most 512). *steps is 0 for a refused call.
 */
int vmm_query_counted(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out,
                      uint64_t *steps);

#endif /* KMM_VMM_SEAM_H */
