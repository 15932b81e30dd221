/*
 * grow.c - bringing memory online after init. (Deferred descriptor
 * initialisation and added memory arrive here; until then there is nothing
 * beyond the zones and this finds nothing to add.)
 */
#include "internal.h"

#include "pmm/pmm.h"

bool pmm_grow(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    (void)k;
    (void)order;
    (void)flags;
    return false;
}
