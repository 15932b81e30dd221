/*
 * reclaim.c - the reclaim hooks (shrinkers). (Registration arrives here;
 * until then no hook is registered and reclaim frees nothing.)
 */
#include "internal.h"

#include "pmm/pmm.h"

uint64_t pmm_reclaim(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    (void)k;
    (void)order;
    (void)flags;
    return 0;
}
