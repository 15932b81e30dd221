/*
 * check.c - kmm_check: the integrity walker over every layer.
 */
#include "internal.h"

#include <kmm/check.h>
#include <kmm/fmt.h>

#include "heap/api.h"
#include "pmm/api.h"
#include "vmm/kva.h"
#include "vmm/vmm.h"

/* The instance itself: canary, and a map that is sorted, disjoint and holds
 * the instance's own range exactly once. */
static void check_instance(const struct kmm *k, struct kmm_check_result *r)
{
    if (k->canary != KMM_INSTANCE_CANARY) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "instance canary overwritten: 0x%llx",
                          (unsigned long long)k->canary);
        return;
    }
    unsigned meta = 0;
    for (size_t i = 0; i < k->map_count; i++) {
        const struct kmm_region *m = &k->map[i];
        if (i > 0 && m->base < k->map[i - 1].base + k->map[i - 1].length)
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "memory map range %zu overlaps its predecessor",
                              i);
        /* Other metadata ranges (descriptors of added memory) are checked
         * against the pmm's count (pmm_grow_check). */
        if (m->type == KMM_MEM_KMM_META && m->base <= k->meta_base &&
            k->meta_base < m->base + m->length)
            meta += m->base == k->meta_base && m->length == k->meta_size ? 1 : 100;
    }
    if (meta != 1)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "memory map does not hold the instance once");
}

int kmm_check(struct kmm *k, struct kmm_check_result *r)
{
    *r = (struct kmm_check_result){.status = KMM_CHECK_OK};
    check_instance(k, r);
    if (r->status == KMM_CHECK_OK) {
        pmm_check(k, r);
        vmm_check(k, r);
        kva_check(k, r);
        heap_check(k, r);
    }
    return r->status;
}
