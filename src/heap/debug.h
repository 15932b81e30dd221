/*
 * heap/debug.h - the heap's debugging modes (kmm/heap.h, "Debugging"):
 * their private types and the hooks the rest of src/heap/ calls. Private
 * to src/heap/ (and diag/, which reads every layer).
 *
 * How a cache is debugged. While any mode is in force its CPU stack bound
 * and its depot's are 0 (its stack and depot emptied), so kmm_malloc's and
 * kmm_free's inline paths always fall through to kmalloc.c's full paths,
 * which hand it to debug.c (heap_debug_alloc, heap_debug_free) where an
 * allocation would have refilled a stack and a free flushed one: objects
 * come straight off the slabs and go straight back, through the checks,
 * under the cache's lock (slab.c: heap_slab_get, heap_slab_put). For
 * kmm_malloc's sizes the test rides on a comparison the plain path makes
 * anyway (heap_debug.plain_end), so the plain path pays nothing.
 *
 * The debug layout (REDZONE, TRACK), one slot of `size` bytes:
 *
 *   slot                 slot + left          + usable               tail      size
 *   +--------------------+--------------------+------------+---------+---------+
 *   | left red zone      | the object         | slack      | red     | trailer |
 *   | (the alignment,    | (size asked for)   | (to usable)| zone    | 64 B    |
 *   |  at least 16 B)    |                    |            | >= 16 B | (more)  |
 *   +--------------------+--------------------+------------+---------+---------+
 *                        ^ the caller's pointer
 *
 * Allocated: both red zones (the right one from the size asked for to the
 * trailer) hold KMM_HEAP_REDZONE_BYTE. The trailer holds the free-list word
 * and the free tag (fp_off = tail), the live list's links, the callers, the
 * size and the generation; padding follows it where the left zone is
 * longer than 48 bytes, so that the tag read at the caller's pointer plus
 * fp_off (heap_push's probe, before a full path routes the free here) stays
 * inside the slot. heap_find names the slot (its start is the object start
 * of the slab's arithmetic), so a caller's pointer, left bytes further, is
 * interior to it: the full paths resolve it with heap_debug_find. The left
 * zone keeps the object's alignment, so it is as long as that (a
 * power-of-two size class takes twice its size or more).
 *
 * Lock order: the switch flag (heap_debug.switching) first, with IRQs on;
 * then a cache's lock; the debug lock (heap_debug.lock) is a leaf, taken
 * alone or under a cache's lock, never the other way round.
 */
#ifndef KMM_HEAP_DEBUG_H
#define KMM_HEAP_DEBUG_H

#include "heap/heap.h"

#include <kmm/check.h>

/* Bits of heap_cache_debug.flags beside KMM_HEAP_DEBUG_*. */
#define HEAP_DBG_GUARD        0x10000u /* sampled guard pages are on */
#define HEAP_DBG_LAYOUT       0x20000u /* the cache has the debug layout */
#define HEAP_DBG_LAYOUT_MODES (KMM_HEAP_DEBUG_REDZONE | KMM_HEAP_DEBUG_TRACK)

/* The trailer of a slot in the debug layout. The links come last: the
 * free path's probe from the caller's pointer (left bytes on: 24 or 40
 * into the trailer, or past it) reads only fields the freeing CPU owns. */
struct heap_trailer {
    uintptr_t words[2];       /* the free-list word and the free tag (fp_off) */
    const void *alloc_caller; /* who allocated it last */
    const void *free_caller;  /* who freed it last (NULL: never freed) */
    uint32_t size;            /* as asked for */
    uint32_t listed;          /* on its cache's live list */
    uint64_t gen;             /* the generation it was allocated in */
    uintptr_t prev, next;     /* TRACK: neighbours on the live list (slots; 0 at the ends) */
};

_Static_assert(sizeof(struct heap_trailer) == KMM_HEAP_DEBUG_TRAILER,
               "the trailer is KMM_HEAP_DEBUG_TRAILER bytes");

/* An object in the quarantine. */
struct heap_qentry {
    uintptr_t obj; /* its slot */
    struct kmm_cache *cache;
    const void *caller; /* who freed it */
    uint32_t bytes;     /* the cache's object size, for the byte bound */
    uint32_t poisoned;  /* filled when it was freed: checked when it leaves */
};

/* A guard-page slot's state. */
enum heap_guard_state { GUARD_UNUSED = 0, GUARD_LIVE, GUARD_FREEING, GUARD_FREED };

/* A guard-page slot: one page of its own, mapped at pool va + 2 * i pages,
 * the next page unmapped. */
struct heap_guard_slot {
    uint64_t pa;             /* the page */
    struct kmm_cache *cache; /* live or freed: the object's cache */
    uint32_t off;            /* the object's offset in the page */
    uint32_t size;           /* as asked for */
    const void *alloc_caller, *free_caller;
    uint64_t gen;
    uint32_t state; /* enum heap_guard_state */
    uint32_t pad;
};

/* The heap's debugging memory, from the page allocator at the first switch
 * that needs it, kept until kmm_fini. Under heap_debug.lock. */
struct heap_debug_mem {
    uint64_t pa;
    size_t pages;
    /* the event ring: ev_seq events recorded, the last at ev[(ev_seq - 1) % KMM_HEAP_EVENTS] */
    uint64_t ev_seq;
    struct kmm_heap_event ev[KMM_HEAP_EVENTS];
    /* the quarantine: q_count entries from q[q_head], oldest first */
    uint32_t q_head, q_count;
    uint64_t q_bytes;
    struct heap_qentry q[KMM_HEAP_QUARANTINE_OBJECTS];
    /* the guard slots: mapped iff guard_va != 0 */
    uint64_t guard_va;
    uint32_t guard_next; /* where the search for a slot starts: the oldest freed */
    uint32_t guard_live;
    uint64_t guard_allocs;
    struct heap_guard_slot slot[KMM_HEAP_GUARD_SLOTS];
};

/* --- debug.c: switching, the checking paths ------------------------------------------ */

/* The debugging memory, made if it is missing; NULL without memory.
 * Switch flag held. */
struct heap_debug_mem *heap_debug_mem_get(struct kmm *k);

/* heap_cache_make's part, before c is published: c's alignment, its stack
 * bound, and the heap's modes (its layout too: c is empty). Any context. */
void heap_debug_cache_init(struct kmm *k, struct kmm_cache *c, size_t align);

/* heap_init's part. */
KMM_INIT void heap_debug_init(struct kmm *k);

/* Whether cache c takes the checking paths: its stack bound is 0 (never
 * otherwise). Any context, no lock. */
static inline bool heap_debugged(const struct kmm_cache *c)
{
    return __atomic_load_n(&c->limit, __ATOMIC_RELAXED) == 0;
}

/* kmm_malloc's full path for a size class while some class is debugged
 * (heap_debug.plain_end): the checking path for a debugged class, the
 * plain one for the others. */
void *heap_debug_alloc_size(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller);

/* An object of c for a caller asking size bytes, through the checks (or a
 * guard page); NULL without memory. kmm_malloc's and kmm_cache_alloc's full
 * paths, for a cache heap_debugged says. */
void *heap_debug_alloc(struct kmm *k, struct kmm_cache *c, size_t size, kmm_gfp_t flags,
                       const void *caller);

/* Frees p, the caller's pointer to an object of c (heap_find or
 * heap_debug_find named it), through the checks; a bad pointer or a double
 * free is refused and reported as fn's misuse. */
int heap_debug_free(struct kmm *k, struct kmm_cache *c, uintptr_t p, const char *fn,
                    const void *caller);

/* Resolves p, which heap_find called interior: HEAP_FOUND if it is the
 * caller's pointer to an object in the debug layout (free or not), its
 * cache, slab and block into *ref and its usable bytes (the size asked
 * for, while allocated) into *bytes. */
enum heap_bad heap_debug_find(struct kmm *k, uintptr_t p, struct heap_ref *ref, uint64_t *bytes);

/* slab.c's hooks, under c's lock: an object going back to its slab is
 * filled if c poisons; a new slab's objects are filled if c poisons. */
void heap_debug_poison_locked(const struct kmm_cache *c, uintptr_t obj);
void heap_debug_slab_added_locked(const struct kmm_cache *c, const struct slab *s);

/* kmm_heap_shrink's part: every object in the quarantine leaves it (its
 * poison checked) for its slab, oldest first; returns how many. Memory
 * short outweighs the delay the quarantine buys (KASAN's quarantine
 * shrinks too). No lock held. */
size_t heap_debug_quarantine_empty(struct kmm *k);

/* kmm_cache_destroy's part: empties c's objects out of the quarantine;
 * returns c's objects live on guard pages (which keep c busy). */
uint64_t heap_debug_quiesce(struct kmm *k, struct kmm_cache *c);

/* The objects of c waiting in the quarantine (not active). */
static inline uint64_t heap_debug_quarantined(const struct kmm_cache *c)
{
    return atomic_load_explicit(&c->dbg.quarantined, memory_order_relaxed);
}

/* Reports damage found after the fact (an overrun, a write after free):
 * counted in the misuse table (against caller, the call that found it),
 * logged, recorded in the event ring. */
void heap_debug_found(struct kmm *k, enum kmm_misuse what, uintptr_t addr, const void *caller,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* kmm_cache_debug's work, and kmm_cache_create's for its flags (validated):
 * sets c's own modes; KMM_EBUSY or KMM_ENOMEM with nothing changed. */
int heap_debug_cache_own(struct kmm *k, struct kmm_cache *c, unsigned flags);

/* kmm_check's parts: c's red zones, poison and live list (c's lock held);
 * the quarantine and the guard slots. */
void heap_debug_check_cache_locked(struct kmm *k, const struct kmm_cache *c,
                                   struct kmm_check_result *r);
void heap_debug_check(struct kmm *k, struct kmm_check_result *r);

/* Pattern helpers (debug.c): fill, and the offset of the first byte that
 * differs (-1: none). */
void heap_debug_fill(uintptr_t at, uint8_t byte, size_t n);
int64_t heap_debug_differs(uintptr_t at, uint8_t byte, size_t n);

/* --- debug_track.c: tracking, leaks, events ------------------------------------------ */

/* Puts slot obj (a just allocated object of c, its trailer written) last
 * on c's live list. c's lock held. */
void heap_track_add_locked(struct kmm_cache *c, uintptr_t obj);

/* Takes slot obj off c's live list if it is on it. c's lock held. */
void heap_track_del_locked(struct kmm_cache *c, uintptr_t obj);

/* Records an event in the heap's ring if it exists, and in the
 * instance's ring (lib/events.h) while KMM_EVENTS_HEAP is on; cache names
 * the object's cache there (NULL: unknown). Any context. */
void heap_debug_event(struct kmm *k, const char *cache, unsigned op, uintptr_t addr, uint64_t size,
                      const void *caller);

/* The report's section (diag/report.c): the modes, the figures and the
 * latest events. */
void heap_debug_report_section(struct kmm *k, const struct kmm_sink *s);

/* --- debug_guard.c: sampled guard pages ---------------------------------------------- */

/* Whether this allocation of c (size bytes) is sampled: guard pages on and
 * its turn. */
bool heap_guard_turn(struct kmm *k, const struct kmm_cache *c, size_t size);

/* An object of c on a guard page, or NULL (every slot taken). */
void *heap_guard_alloc(struct kmm *k, struct kmm_cache *c, size_t size, kmm_gfp_t flags,
                       const void *caller);

/* Whether p is the object of a guard slot, live or freed: its cache and
 * size into *cache and *bytes. heap_guard_freed: whether it is freed. */
bool heap_guard_find(struct kmm *k, uintptr_t p, struct kmm_cache **cache, uint64_t *bytes);
bool heap_guard_freed(struct kmm *k, uintptr_t p);

/* Frees the guarded object p (heap_guard_find named it) for fn's caller:
 * its page checked and poisoned, the slot freed. KMM_ESTATE (reported) if
 * it was freed already. */
int heap_guard_free(struct kmm *k, uintptr_t p, const char *fn, const void *caller);

/* Maps the guard slots (if unmapped) / unmaps them (if no object is
 * live). Switch flag held, IRQs on. */
int heap_guard_map(struct kmm *k, struct heap_debug_mem *m);
void heap_guard_unmap(struct kmm *k, struct heap_debug_mem *m);

/* kmm_check's part for the guard slots; debug lock held. */
void heap_guard_check_locked(struct kmm *k, struct heap_debug_mem *m, struct kmm_check_result *r);

/* The tracked guarded objects of generation since or later, for the leak
 * report: calls add(ctx, caller, size) for each. Debug lock taken. */
void heap_guard_leaks(struct kmm *k, uint64_t since,
                      void (*add)(void *ctx, const void *caller, uint64_t size), void *ctx);

#endif /* KMM_HEAP_DEBUG_H */
