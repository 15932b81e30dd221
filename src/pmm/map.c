/*
 * map.c - the instance's resolved memory map (map.h): building it at init,
 * finding ranges, walking the frames of a span, answering what is RAM, and
 * giving a byte range a new type after init (a reclaimed range becomes
 * usable, a hot-added one appears) while keeping the map sorted, disjoint
 * and merged (internal.h's invariants). The only file that touches
 * k->map besides kmm_check's walker.
 */
#include "internal.h"

#include "pmm/api.h"
#include "pmm/map.h"
#include "pmm/pmm.h"

#include <kmm/memmap.h>

/* The first range that ends above byte pa (map_count if none). */
static size_t find(const struct kmm *k, uint64_t pa)
{
    size_t lo = 0, hi = k->map_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k->map[mid].base + k->map[mid].length <= pa)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void map_insert(struct kmm *k, size_t at, struct kmm_region r)
{
    KMM_ASSERT(k->port, map_has_room(k, 1));
    __builtin_memmove(&k->map[at + 1], &k->map[at], (k->map_count - at) * sizeof(r));
    k->map[at] = r;
    k->map_count++;
}

static void map_remove(struct kmm *k, size_t at)
{
    __builtin_memmove(&k->map[at], &k->map[at + 1], (k->map_count - at - 1) * sizeof(k->map[0]));
    k->map_count--;
}

/* --- building -------------------------------------------------------------------------- */

bool map_has_room(const struct kmm *k, size_t ranges)
{
    return k->map_count + ranges <= KMM_MAP_CAP;
}

void map_append(struct kmm *k, struct kmm_region r)
{
    map_insert(k, k->map_count, r);
}

void map_recount(struct kmm *k)
{
    struct kmm_pmm *pm = &k->pmm;
    kmm_memmap_totals(k->map, k->map_count, &k->totals);
    pm->usable_pages = pm->total_pages = 0;
    for (size_t i = 0; i < k->map_count; i++) {
        const struct kmm_region *r = &k->map[i];
        if (r->type == KMM_MEM_USABLE || r->type == KMM_MEM_KMM_META)
            pm->usable_pages += r->length >> KMM_PAGE_SHIFT;
        pm->total_pages += kmm_align_up(r->length, KMM_PAGE_SIZE) >> KMM_PAGE_SHIFT;
    }
}

const struct kmm_region *kmm_memory_map(const struct kmm *k, size_t *count)
{
    *count = k->map_count;
    return k->map;
}

/* --- finding --------------------------------------------------------------------------- */

const struct kmm_region *map_range_at(const struct kmm *k, uint64_t pa)
{
    size_t i = find(k, pa);
    return i < k->map_count ? &k->map[i] : NULL;
}

void map_walk_start(const struct kmm *k, struct map_walk *w, uint64_t lo, uint64_t hi)
{
    *w = (struct map_walk){.next = find(k, lo << KMM_PAGE_SHIFT), .lo = lo, .hi = hi};
}

bool map_walk_next(const struct kmm *k, struct map_walk *w, struct map_frames *out)
{
    for (; w->next < k->map_count; w->next++) {
        const struct kmm_region *r = &k->map[w->next];
        uint64_t first = r->base >> KMM_PAGE_SHIFT;
        if (first >= w->hi)
            return false;
        uint64_t end = kmm_align_up(r->base + r->length, KMM_PAGE_SIZE) >> KMM_PAGE_SHIFT;
        if (first < w->lo)
            first = w->lo;
        if (end > w->hi)
            end = w->hi;
        if (first < end) {
            *out = (struct map_frames){first, end, r->type};
            w->next++;
            return true;
        }
    }
    return false;
}

/* --- what is RAM ----------------------------------------------------------------------- */

/* The types of RAM: memory a mapping may treat as ordinary write-back
 * memory (the direct map covers it), one bit per type. */
_Static_assert(KMM_MEM_TYPE_LIMIT <= 32, "a type is a bit of PMM_RAM_TYPES");

uint64_t pmm_ram_bytes(const struct kmm *k, uint64_t pa, uint64_t size)
{
    uint64_t end = pa + size < pa ? UINT64_MAX : pa + size, n = 0;
    /* The common case first: [pa, end) inside the range the last call
     * found, as a run of maps over the same memory asks again and again
     * (a binary search costs more than the rest of a one-page map's
     * checks). The hint is only a guess, believed after its bounds are
     * checked. It is the one thing this call writes: a cache, not the
     * map's state, so k stays const for the callers. */
    size_t *hint = (size_t *)&k->map_hint;
    size_t h = __atomic_load_n(hint, __ATOMIC_RELAXED);
    if (h < k->map_count) {
        const struct kmm_region *r = &k->map[h];
        if (r->base <= pa && end - r->base <= r->length)
            return pmm_is_ram_type(r->type) ? size : 0;
    }
    /* The map is sorted and without overlaps; the common case, one range
     * holding all of [pa, pa + size), ends the loop at once. */
    size_t first = find(k, pa);
    if (first < k->map_count && first != h) /* a store only when it moves: a shared line */
        __atomic_store_n(hint, first, __ATOMIC_RELAXED);
    for (size_t i = first; i < k->map_count; i++) {
        const struct kmm_region *r = &k->map[i];
        if (r->base >= end)
            break;
        uint64_t lo = r->base > pa ? r->base : pa;
        uint64_t hi = r->base + r->length < end ? r->base + r->length : end;
        if (lo < hi && pmm_is_ram_type(r->type))
            n += hi - lo;
        if (n == size)
            break;
    }
    return n;
}

/* --- editing ------------------------------------------------------------------------- */

/* Adjacent ranges of one type merge, except metadata: each metadata range
 * is one block (the instance's, or the descriptors of one added range). */
static bool map_mergeable(const struct kmm_region *a, const struct kmm_region *b)
{
    return a->type == b->type && a->type != KMM_MEM_KMM_META && a->base + a->length == b->base;
}

/* Growth lock held (map.h). */
void map_set(struct kmm *k, uint64_t lo, uint64_t hi, uint32_t type)
{
    size_t i = find(k, lo);
    if (i < k->map_count && k->map[i].base < hi) {
        struct kmm_region r = k->map[i];
        uint64_t r_end = r.base + r.length;
        if (r.base < lo) {
            map_insert(k, i, (struct kmm_region){r.base, lo - r.base, r.type});
            i++;
        }
        if (r_end > hi)
            map_insert(k, i + 1, (struct kmm_region){hi, r_end - hi, r.type});
        k->map[i] = (struct kmm_region){lo, hi - lo, type};
    } else {
        map_insert(k, i, (struct kmm_region){lo, hi - lo, type});
    }
    if (i + 1 < k->map_count && map_mergeable(&k->map[i], &k->map[i + 1])) {
        k->map[i].length += k->map[i + 1].length;
        map_remove(k, i + 1);
    }
    if (i > 0 && map_mergeable(&k->map[i - 1], &k->map[i])) {
        k->map[i - 1].length += k->map[i].length;
        map_remove(k, i);
    }
}
