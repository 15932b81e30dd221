/*
 * grow_map.c - edits of the instance's memory map (k->map) after init:
 * finding ranges, and giving a byte range a new type (a reclaimed range
 * becomes usable, a hot-added one appears) while keeping the map sorted,
 * disjoint and merged (internal.h's invariants). Growth lock held: the map
 * changes only under it after init (kmm_page_add_memory, grow_add.c).
 */
#include "internal.h"

#include "pmm/grow.h"

/* The first range of k->map that ends above byte pa (map_count if none). */
size_t grow_map_find(const struct kmm *k, uint64_t pa)
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

/* The frames of map range r inside [lo, hi): rounded out to whole pages (a
 * usable range is whole pages already). Returns false if there are none. */
bool grow_range_frames(const struct kmm_region *r, uint64_t lo, uint64_t hi, uint64_t *first,
                       uint64_t *end)
{
    *first = r->base >> KMM_PAGE_SHIFT;
    *end = kmm_align_up(r->base + r->length, KMM_PAGE_SIZE) >> KMM_PAGE_SHIFT;
    if (*first < lo)
        *first = lo;
    if (*end > hi)
        *end = hi;
    return *first < *end;
}

static void map_insert(struct kmm *k, size_t at, struct kmm_region r)
{
    __builtin_memmove(&k->map[at + 1], &k->map[at], (k->map_count - at) * sizeof(r));
    k->map[at] = r;
    k->map_count++;
}

static void map_remove(struct kmm *k, size_t at)
{
    __builtin_memmove(&k->map[at], &k->map[at + 1], (k->map_count - at - 1) * sizeof(k->map[0]));
    k->map_count--;
}

/* Adjacent ranges of one type merge, except metadata: each metadata range
 * is one block (the instance's, or the descriptors of one added range). */
static bool map_mergeable(const struct kmm_region *a, const struct kmm_region *b)
{
    return a->type == b->type && a->type != KMM_MEM_KMM_META && a->base + a->length == b->base;
}

/*
 * Gives the page-aligned bytes [lo, hi) type `type` in k->map: they lie
 * inside one range (a reclaim), which is cut around them, or in a hole (a
 * hot-add). Adds at most two ranges; keeps the map sorted, disjoint and
 * merged. Growth lock held; the caller checked there is room.
 */
void grow_map_set(struct kmm *k, uint64_t lo, uint64_t hi, uint32_t type)
{
    size_t i = grow_map_find(k, lo);
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
