/*
 * check.c - the heap's part of kmm_check: every cache's slabs (on the
 * list their counts say, free lists decoding to tagged object starts of
 * their own slab, of the right length), its counters, and the CPU stacks
 * (each entry a tagged object of the cache). Only reads.
 */
#include "heap/api.h"
#include "heap/debug.h"
#include "heap/heap.h"

#include <kmm/check.h>

/* Whether object i of slab s is marked out of its free list. */
static bool marked_out(const struct slab *s, uint64_t i)
{
    return (s->out[i / 64] >> (i % 64)) & 1u;
}

/* Checks slab s of c; returns its free objects. Lock held. */
static uint64_t check_slab(struct kmm *k, const struct kmm_cache *c, const struct slab *s,
                           unsigned list, struct kmm_check_result *r)
{
    struct pmm_slab_ref ref;
    uintptr_t dm = k->direct_map;
    if (!pmm_slab_find(k, s->base - dm, &ref) || ref.pa != s->base - dm || ref.owner != c->id ||
        ref.order != c->order) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s: slab 0x%llx is not its in the "
                          "frame database",
                          c->name, (unsigned long long)s->base);
        return 0;
    }
    if (s->list != list)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "heap: cache %s: slab 0x%llx on list %u says %u",
                          c->name, (unsigned long long)s->base, list, s->list);
    uint64_t n = 0;
    for (uintptr_t obj = s->free; obj; n++) {
        const uintptr_t *w = heap_words(c, obj);
        uint64_t off = obj - s->base;
        if (obj < s->base || off % c->size || off / c->size >= c->objects || n >= c->objects ||
            heap_tag_get(c, obj) != heap_tag(c, obj) || marked_out(s, off / c->size)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: cache %s: slab 0x%llx: free list entry 0x%llx is no free "
                              "object of the slab",
                              c->name, (unsigned long long)s->base, (unsigned long long)obj);
            return n;
        }
        r->blocks_walked++;
        obj = w[0] ^ c->secret ^ (uintptr_t)w;
    }
    /* Each free object's mark is clear (above); with no mark past the last
     * object and the count right, the marks are exactly the objects out.
     * Bits counted by hand: the kernel links no libgcc for popcount. */
    uint32_t out = 0, past = 0;
    for (unsigned w = 0; w < HEAP_SLAB_OBJECTS_MAX / 64; w++) {
        /* Read once: a CPU lending an object out of this slab sets its bit
         * without the lock. */
        uint64_t stray = __atomic_load_n(&s->lent[w], __ATOMIC_RELAXED) & ~s->out[w];
        if (stray)
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: cache %s: slab 0x%llx marks objects lent that are not out "
                              "(0x%llx in word %u)",
                              c->name, (unsigned long long)s->base, (unsigned long long)stray, w);
    }
    for (unsigned w = 0; w < HEAP_SLAB_OBJECTS_MAX / 64; w++)
        for (uint64_t bits = s->out[w]; bits; bits &= bits - 1) {
            if (w * 64 + (unsigned)__builtin_ctzll(bits) < c->objects)
                out++;
            else
                past++;
        }
    if (out != s->inuse || past)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s: slab 0x%llx marks %u objects out (and %u past its "
                          "last), %u in use",
                          c->name, (unsigned long long)s->base, out, past, s->inuse);
    if (n + s->inuse != c->objects)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s: slab 0x%llx has %llu free and %u in use of %u", c->name,
                          (unsigned long long)s->base, (unsigned long long)n, s->inuse, c->objects);
    return n;
}

/* Whether p is an object of the heap's own cache id (a slab record, a
 * magazine), so that the walk may read it: a link to anything else is
 * reported and followed no further. */
static bool own_object(struct kmm *k, const void *p, uint32_t id)
{
    struct heap_ref ref;
    return heap_find_in(k, (uintptr_t)p, &ref, true) == HEAP_FOUND && ref.cache &&
           ref.cache->id == id;
}

/* Checks cache c; returns the bytes of the objects in its depot. */
static uint64_t check_cache(struct kmm *k, struct kmm_cache *c, struct kmm_check_result *r)
{
    kmm_irqstate_t st = kmm_lock_irqsave(&c->lock);
    uint64_t inuse = 0;
    for (unsigned l = 0; l < SLAB_LISTS; l++) {
        uint64_t n = 0;
        for (const struct slab *s = c->lists[l]; s && n <= c->nslabs[l]; s = s->next, n++) {
            if (!own_object(k, s, HEAP_ID_RECORDS)) {
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "heap: cache %s: list %u leads to 0x%llx, no slab record",
                                  c->name, l, (unsigned long long)(uintptr_t)s);
                break;
            }
            check_slab(k, c, s, l, r);
            inuse += s->inuse - s->self;
            unsigned want = s->inuse == s->self      ? SLAB_EMPTY
                            : s->inuse == c->objects ? SLAB_FULL
                                                     : SLAB_PARTIAL;
            if (want != l)
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "heap: cache %s: slab 0x%llx with %u in use is on list %u",
                                  c->name, (unsigned long long)s->base, s->inuse, l);
        }
        if (n != c->nslabs[l])
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: cache %s: list %u holds %llu slabs, the count %llu", c->name,
                              l, (unsigned long long)n, (unsigned long long)c->nslabs[l]);
    }
    uint64_t in_depot = 0, nfull = 0, nempty = 0;
    for (const struct heap_mag *m = c->full; m && nfull <= c->nfull; m = m->next, nfull++) {
        if (!own_object(k, m, HEAP_ID_MAGS)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: cache %s: the depot's full list leads to 0x%llx, no magazine",
                              c->name, (unsigned long long)(uintptr_t)m);
            break;
        }
        in_depot += m->n;
        for (unsigned i = 0; i < m->n && i < HEAP_MAG_OBJS; i++) {
            uintptr_t obj = (uintptr_t)m->objs[i];
            struct heap_ref ref;
            if (heap_find(k, obj, &ref) != HEAP_FOUND || ref.cache != c ||
                heap_tag_get(c, obj) != heap_tag(c, obj))
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "heap: cache %s: the depot holds 0x%llx, no free object of it",
                                  c->name, (unsigned long long)obj);
        }
    }
    for (const struct heap_mag *m = c->empty; m && nempty <= c->nempty; m = m->next) {
        if (!own_object(k, m, HEAP_ID_MAGS)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: cache %s: the depot's empty list leads to 0x%llx, no magazine",
                              c->name, (unsigned long long)(uintptr_t)m);
            break;
        }
        nempty++;
    }
    if (nfull != c->nfull || nempty != c->nempty || in_depot != c->depot_objs ||
        nfull > c->depot_max)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s: depot of %llu full (%llu objects) and %llu empty "
                          "magazines, the counts %u, %llu and %u",
                          c->name, (unsigned long long)nfull, (unsigned long long)in_depot,
                          (unsigned long long)nempty, c->nfull, (unsigned long long)c->depot_objs,
                          c->nempty);
    if (inuse != c->total_inuse)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s: %llu objects out of the slabs, the count %llu", c->name,
                          (unsigned long long)inuse, (unsigned long long)c->total_inuse);
    uintptr_t stacks = kmm_align_up((uintptr_t)&c->stack[c->ncpu], 64);
    uintptr_t mem = (uintptr_t)kmm_phys_to_virt(k, c->mem_pa);
    uintptr_t mem_end = mem + c->mem_pages * KMM_PAGE_SIZE;
    if ((uintptr_t)c != mem + c->colour || c->colour >= KMM_PAGE_SIZE)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s at %p, not at colour %zu of its pages at 0x%llx", c->name,
                          (const void *)c, c->colour, (unsigned long long)c->mem_pa);
    for (unsigned cpu = 0; cpu < c->ncpu; cpu++) {
        const struct heap_cpu *hc = heap_cpu_at(c, cpu);
        /* The stacks lie after the structure in its own pages, in CPU order. */
        if ((uintptr_t)hc < stacks || (uintptr_t)hc >= mem_end ||
            (cpu && (uintptr_t)hc <= (uintptr_t)heap_cpu_at(c, cpu - 1))) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "heap: cache %s: CPU %u's stack at %p", c->name,
                              cpu, (const void *)hc);
            continue;
        }
        /* While c is debugged its bound is 0; what CPUs held stays until
         * they hand it out. */
        uint32_t bound = c->limit ? c->limit : c->dbg.limit;
        if (hc->n > bound) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "heap: cache %s: CPU %u holds %u of %u",
                              c->name, cpu, hc->n, bound);
            continue;
        }
        for (unsigned i = 0; i < hc->n; i++) {
            uintptr_t obj = (uintptr_t)hc->objs[i];
            struct heap_ref ref;
            if (heap_find_in(k, obj, &ref, true) != HEAP_FOUND || ref.cache != c ||
                heap_tag_get(c, obj) != heap_tag(c, obj))
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "heap: cache %s: CPU %u caches 0x%llx, no free object of it",
                                  c->name, cpu, (unsigned long long)obj);
        }
    }
    if (c->dbg.flags)
        heap_debug_check_cache_locked(k, c, r);
    uint64_t depot_bytes = c->depot_objs * c->size;
    kmm_unlock_irqrestore(&c->lock, st);
    return depot_bytes;
}

void heap_check(struct kmm *k, struct kmm_check_result *r)
{
    struct kmm_heap *h = &k->heap;
    unsigned walk = heap_walk_begin(k);
    uint64_t depots = 0;
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&h->caches[id], __ATOMIC_ACQUIRE);
        if (!c)
            continue;
        if (c->id != id ||
            __atomic_load_n(&c->magic, __ATOMIC_RELAXED) != (HEAP_CACHE_MAGIC ^ (uintptr_t)c)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "heap: cache slot %u holds a dead cache", id);
            continue;
        }
        depots += check_cache(k, c, r);
    }
    heap_walk_end(k, walk);
    /* Exact at a quiet point; a CPU filling or emptying a depot during the
     * walk may show as a mismatch (kmm/check.h). */
    uint64_t budget = atomic_load_explicit(&h->depot_bytes, memory_order_relaxed);
    if (depots != budget || budget > HEAP_DEPOT_TOTAL)
        kmm_check_problem(
            r, KMM_CHECK_CORRUPT,
            "heap: the depots hold %llu bytes of objects, the count %llu (at most %u)",
            (unsigned long long)depots, (unsigned long long)budget, HEAP_DEPOT_TOTAL);
    for (size_t i = 0; i <= HEAP_SMALL_MAX / 16; i++) {
        const struct kmm_cache *c = __atomic_load_n(&h->small[i], __ATOMIC_ACQUIRE);
        if (c && c != __atomic_load_n(&h->classes[h->small_class[i]], __ATOMIC_ACQUIRE))
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: kmm_malloc's table sends %zu bytes to cache %s, not its class",
                              i * 16, c->name);
    }
    uint64_t held = atomic_load_explicit(&h->held, memory_order_relaxed);
    if (atomic_load_explicit(&h->peak, memory_order_relaxed) < held)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "heap: peak below the bytes held");
    heap_debug_check(k, r);
}
