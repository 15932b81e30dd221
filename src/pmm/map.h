/*
 * map.h - the instance's resolved memory map (struct kmm's map[0 ..
 * map_count), internal.h states its invariants) and the one small interface
 * through which everything reaches it: find a range, walk the frames of a
 * span, ask what is RAM (pmm_ram_bytes, pmm/api.h, for the vmm), and edit
 * it. Only map.c touches the array; kmm_check (src/diag) reads it whole.
 *
 * Locks: init builds the map before anything else can see the instance;
 * after init only kmm_page_add_memory edits it, under the growth lock, so
 * the growth code may read it there without more. pmm_ram_bytes reads it
 * without the lock (pmm/api.h says what that costs).
 */
#ifndef KMM_PMM_MAP_H
#define KMM_PMM_MAP_H

#include "internal.h"

/* --- building it (init) ---------------------------------------------------------------- */

/* map_append - adds r after the last range (init only: the resolver hands
 * out ranges sorted). The caller checked map_has_room. */
void map_append(struct kmm *k, struct kmm_region r);

/* map_has_room - whether `ranges` more ranges fit. */
bool map_has_room(const struct kmm *k, size_t ranges);

/* map_recount - recomputes the figures that come from the map: k->totals
 * and the pmm's total and usable page counts. After each edit. */
void map_recount(struct kmm *k);

/* --- finding --------------------------------------------------------------------------- */

/* map_range_at - the range that holds byte pa, or if none the first one
 * above it; NULL if there is none above. O(log ranges). */
const struct kmm_region *map_range_at(const struct kmm *k, uint64_t pa);

/* Walks the frames of the ranges that touch frames [lo, hi): each step
 * gives one range's frames clipped to the span (rounded out to whole pages:
 * a usable range is whole pages already) and its type. */
struct map_walk {
    size_t next; /* the range the next step looks at */
    uint64_t lo, hi;
};

struct map_frames {
    uint64_t first, end; /* frames [first, end), never empty */
    uint32_t type;       /* KMM_MEM_* */
};

/* map_walk_start - a walk over frames [lo, hi). */
void map_walk_start(const struct kmm *k, struct map_walk *w, uint64_t lo, uint64_t hi);

/* map_walk_next - the next range's frames into *out; false when done. */
bool map_walk_next(const struct kmm *k, struct map_walk *w, struct map_frames *out);

/* --- editing (growth lock held) --------------------------------------------------------- */

/* map_set - gives the page-aligned bytes [lo, hi) type `type`: they lie
 * inside one range (a reclaim), which is cut around them, or in a hole (a
 * hot-add). Adds at most two ranges (the caller checked map_has_room);
 * keeps the map sorted, disjoint and merged. Cannot fail. */
void map_set(struct kmm *k, uint64_t lo, uint64_t hi, uint32_t type);

#endif /* KMM_PMM_MAP_H */
