/*
 * limine.c - what a Limine memory map says is not RAM, as reserved ranges
 * for kmm_init (compat/world.h: kmm_boruix_limine_reserved). World-free, so
 * the drop-in port (port/boruix/world.c) uses it and the hosted tests check
 * it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/bootmap.h>
#include <kmm/kmm.h>
#include <kmm/memmap.h>

#include "world.h"

#define LIMINE_MAX ((size_t)KMM_MAX_REGIONS)

/* Appends r (if not empty) to extra; false when there is no room. */
static bool add(struct kmm_region r, struct kmm_region *extra, size_t cap, size_t *n)
{
    if (r.length == 0)
        return true;
    if (*n >= cap)
        return false;
    extra[(*n)++] = r;
    return true;
}

int kmm_boruix_limine_reserved(const struct kmm_limine_memmap_entry *const *entries, uint64_t count,
                               uint64_t end, struct kmm_region *extra, size_t cap, size_t *extra_n)
{
    static struct kmm_region raw[LIMINE_MAX], resolved[2 * LIMINE_MAX];
    long got = kmm_bootmap_limine(entries, count, raw, LIMINE_MAX);
    if (got < 0 || got > (long)LIMINE_MAX)
        return KMM_EINVAL;
    size_t ranges = kmm_memmap_resolve(raw, (size_t)got, resolved, 2 * LIMINE_MAX);
    size_t n0 = *extra_n;
    uint64_t at = 0;
    bool room = true;
    for (size_t i = 0; i < ranges && at < end; i++) {
        const struct kmm_region *r = &resolved[i];
        if (r->base > at) /* a hole: no memory there */
            room = room && add((struct kmm_region){at, r->base - at, KMM_MEM_RESERVED}, extra, cap,
                               extra_n);
        if (r->type != KMM_MEM_USABLE)
            room = room && add(*r, extra, cap, extra_n);
        at = r->base + r->length;
    }
    if (at < end)
        room =
            room && add((struct kmm_region){at, end - at, KMM_MEM_RESERVED}, extra, cap, extra_n);
    if (!room) {
        *extra_n = n0;
        return KMM_ENOMEM;
    }
    return KMM_OK;
}
