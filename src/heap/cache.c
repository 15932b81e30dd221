/*
 * cache.c - caches: making them (the size classes on first use, the slab
 * records, kmm_cache_create's), destroying and shrinking them, draining
 * the CPU stacks, the heap's reclaim hook, and the figures.
 *
 * A cache's structure and its CPU stacks share one block of pages from the
 * page allocator, the structure at its start: so a cache pointer is
 * page-aligned in the direct map, which lets the calls that take one check
 * it (heap_cache_live) without reading memory that may not be there.
 */
#include "heap/api.h"
#include "heap/debug.h"
#include "heap/heap.h"

#include <kmm/fmt.h>
#include <kmm/heap.h>

KMM_INIT void heap_init(struct kmm *k)
{
    struct kmm_heap *h = &k->heap;
    kmm_lock_init(&h->lock);
    heap_classes_setup(h);
    /* Per-instance secret for the free lists and tags: the cycle counter
     * and the instance's address, mixed (splitmix64's finaliser). */
    uint64_t z = kmm_port_cycles() ^ (uint64_t)(uintptr_t)k ^ UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    h->secret = (z ^ (z >> 31)) | 1;
    atomic_init(&h->lend, KMM_HEAP_LEND_DEFAULT);
    atomic_init(&h->lend_seen, KMM_HEAP_LEND_DEFAULT);
    heap_debug_init(k);
}

/* --- layout -------------------------------------------------------------------------- */

/* The slab order (0 .. 3) for objects of stride bytes: the smallest that
 * wastes at most 1/16 of the slab, else the one that wastes least. At
 * least min_objects per slab. */
unsigned heap_choose_order(uint32_t stride, uint32_t min_objects)
{
    unsigned best = 3;
    uint64_t best_waste = UINT64_MAX;
    for (unsigned o = 0; o <= 3; o++) {
        uint64_t bytes = (uint64_t)KMM_PAGE_SIZE << o;
        if (bytes / stride < min_objects)
            continue;
        uint64_t waste = bytes % stride;
        if (waste * 16 <= bytes)
            return o;
        /* compare waste / bytes across orders */
        if (best_waste == UINT64_MAX ||
            waste * ((uint64_t)KMM_PAGE_SIZE << best) < best_waste * bytes) {
            best = o;
            best_waste = waste;
        }
    }
    return best;
}

/* The first free id for an object cache. Heap lock held. */
static uint32_t free_id(const struct kmm_heap *h)
{
    for (uint32_t id = HEAP_CLASSES + 1; id < HEAP_ID_RECORDS; id++)
        if (!h->caches[id])
            return id;
    return 0;
}

void heap_layout_set(struct kmm_cache *c, uint32_t stride, unsigned order)
{
    c->size = stride;
    c->order = (uint8_t)order;
    c->objects = (uint32_t)(((uint64_t)KMM_PAGE_SIZE << order) / stride);
    c->recip = (uint32_t)((UINT64_C(1) << 32) / stride + 1);
    c->span = c->objects * stride;
    c->divm = UINT64_MAX / stride + 1;
}

/* The largest structure (with its stacks) of a size class that shares a
 * page with others' (pack_take): with one CPU every class's does. */
#define PACK_MAX (KMM_PAGE_SIZE / 2)

/* Zeroed pages for a cache's structure and stacks, counted in what the
 * heap holds (and against its limit), as its slabs are; 0 without memory.
 * A class may be made by an atomic request: no reclaim then. */
static uint64_t structure_pages(struct kmm *k, size_t pages, kmm_gfp_t flags)
{
    uint64_t bytes = (uint64_t)pages << KMM_PAGE_SHIFT;
    if (!heap_held_add(k, bytes))
        return 0;
    uint64_t pa = kmm_pages_alloc(k, pages, KMM_GFP_ZERO | (flags & KMM_GFP_ATOMIC));
    if (!pa)
        heap_held_sub(k, bytes);
    else
        heap_held_got(k);
    return pa;
}

/* The next colour: a line of the slack, as Bonwick's slabs colour their
 * objects, so that the fast paths' lines of many caches (and their stacks'
 * tops) do not all fall in the same set of a CPU's cache, as they would if
 * every one started at a page boundary. slack: bytes a structure may start
 * at, from 0. */
static size_t next_colour(struct kmm *k, uint64_t slack)
{
    uint64_t lines = slack / 64 + 1;
    return (size_t)(atomic_fetch_add_explicit(&k->heap.colour, 1, memory_order_relaxed) % lines) *
           64;
}

/* Pages of its own for a structure of need bytes, at a colour (*colour)
 * of their slack. Costs no memory: only the slack moves. */
static uint64_t pages_take(struct kmm *k, size_t pages, uint64_t need, kmm_gfp_t flags,
                           size_t *colour)
{
    *colour = next_colour(k, ((uint64_t)pages << KMM_PAGE_SHIFT) - need);
    return structure_pages(k, pages, flags);
}

/*
 * Room for a size class's structure of need bytes (at most PACK_MAX) in the
 * page the classes share (h->pack_*): the page is filled from a coloured
 * line to its end and then from its start, so the structures of
 * successive pages start at other lines; a structure that does not fit
 * takes a new page (the rest of the old one stays unused). Size classes are
 * never destroyed, so nothing in the page is ever given back. Returns the
 * page, the structure's offset in *colour; 0 without memory.
 */
static uint64_t pack_take(struct kmm *k, uint64_t need, kmm_gfp_t flags, size_t *colour)
{
    struct kmm_heap *h = &k->heap;
    need = kmm_align_up(need, 64);
    for (;;) {
        kmm_irqstate_t s = kmm_lock_irqsave(&h->lock);
        uint64_t pa = h->pack_pa;
        if (pa && h->pack_end == KMM_PAGE_SIZE && h->pack_next + need > KMM_PAGE_SIZE) {
            h->pack_next = 0; /* wrap to the start, up to where the page began */
            h->pack_end = h->pack_start;
        }
        if (pa && h->pack_next + need <= h->pack_end) {
            *colour = (size_t)h->pack_next;
            h->pack_next += need;
            kmm_unlock_irqrestore(&h->lock, s);
            return pa;
        }
        kmm_unlock_irqrestore(&h->lock, s);
        uint64_t fresh = structure_pages(k, 1, flags);
        if (!fresh)
            return 0;
        size_t start = next_colour(k, KMM_PAGE_SIZE - need);
        s = kmm_lock_irqsave(&h->lock);
        /* Another CPU's fresh page may have come first: this one replaces
         * it all the same (the rest of that one stays unused). */
        h->pack_pa = fresh;
        h->pack_start = start;
        h->pack_next = start;
        h->pack_end = KMM_PAGE_SIZE;
        kmm_unlock_irqrestore(&h->lock, s);
    }
}

struct kmm_cache *heap_cache_make(struct kmm *k, const char *name, size_t size, size_t align,
                                  kmm_ctor_t ctor, enum heap_kind kind, kmm_gfp_t flags)
{
    struct kmm_heap *h = &k->heap;
    if (align < KMM_HEAP_MIN_ALIGN)
        align = KMM_HEAP_MIN_ALIGN;
    uint64_t obj = kmm_align_up(size, align);
    /* A constructed object keeps its state while free: its free-list word
     * and tag go after it. */
    uint32_t fp_off = ctor ? (uint32_t)obj : 0;
    uint32_t stride = (uint32_t)kmm_align_up(ctor ? obj + 16 : obj, align);
    unsigned ncpu = k->cpu_count;
    uint32_t limit = HEAP_STACK_BYTES / stride;
    limit = limit < HEAP_STACK_MIN   ? HEAP_STACK_MIN
            : limit > HEAP_STACK_MAX ? HEAP_STACK_MAX
                                     : limit;
    uint32_t cpu_stride =
        (uint32_t)kmm_align_up(sizeof(struct heap_cpu) + limit * sizeof(void *), 64);
    uint64_t head = kmm_align_up(sizeof(struct kmm_cache) + ncpu * sizeof(struct heap_cpu *), 64);
    uint64_t need = head + (uint64_t)ncpu * cpu_stride;
    size_t pages, colour;
    bool packed = kind == HEAP_KIND_CLASS && need <= PACK_MAX;
    uint64_t pa = packed ? pack_take(k, need, flags, &colour) : 0;
    pages = packed ? 1 : (size_t)((need + KMM_PAGE_SIZE - 1) >> KMM_PAGE_SHIFT);
    if (!packed)
        pa = pages_take(k, pages, need, flags, &colour);
    if (!pa)
        return NULL;
    struct kmm_cache *c = (struct kmm_cache *)((uintptr_t)kmm_phys_to_virt(k, pa) + colour);
    *c = (struct kmm_cache){
        .size = stride,
        .usable = (uint32_t)(ctor ? size : obj),
        .fp_off = fp_off,
        .kind = (uint8_t)kind,
        .limit = (uint16_t)limit,
        .batch = (uint16_t)(limit / 2 ? limit / 2 : 1),
        .ctor = ctor,
        .k = k,
        .ncpu = ncpu,
        .mem_pa = pa,
        .mem_pages = pages,
        .colour = colour,
    };
    for (unsigned cpu = 0; cpu < ncpu; cpu++)
        c->stack[cpu] = (struct heap_cpu *)((uintptr_t)c + head + (uintptr_t)cpu * cpu_stride);
    heap_layout_set(c, stride, heap_choose_order(stride, kind == HEAP_KIND_RECORDS ? 2 : 1));
    KMM_ASSERT(k->port, c->objects <= HEAP_SLAB_OBJECTS_MAX);
    /* The heap's own caches have no depot: a magazine cache that needed
     * magazines would recurse. */
    if (kind == HEAP_KIND_CLASS || kind == HEAP_KIND_OBJECT) {
        uint64_t per_mag = (uint64_t)c->batch * stride;
        c->depot_max = (uint32_t)(HEAP_DEPOT_BYTES / per_mag < 2 ? 2 : HEAP_DEPOT_BYTES / per_mag);
    }
    kmm_lock_init(&c->lock);
    size_t i = 0;
    for (; name && name[i] && i + 1 < KMM_CACHE_NAME_MAX; i++)
        c->name[i] = name[i];
    c->name[i] = 0;
    heap_debug_cache_init(k, c, align); /* the heap's debugging modes, before anyone sees c */

    kmm_irqstate_t s = kmm_lock_irqsave(&h->lock);
    uint32_t id = 0;
    if (kind == HEAP_KIND_RECORDS)
        id = h->records ? 0 : HEAP_ID_RECORDS;
    else if (kind == HEAP_KIND_MAGS)
        id = h->mags ? 0 : HEAP_ID_MAGS;
    else if (kind == HEAP_KIND_CLASS)
        id = heap_class_of(h, size) + 1;
    else
        id = free_id(h);
    if (id && !h->caches[id]) {
        c->id = id;
        c->secret = (uintptr_t)(h->secret * (2 * (uint64_t)id + 1)) ^ (uintptr_t)c;
        c->magic = HEAP_CACHE_MAGIC ^ (uintptr_t)c;
        __atomic_store_n(&h->caches[id], c, __ATOMIC_RELEASE);
        if (kind == HEAP_KIND_CLASS) {
            __atomic_store_n(&h->classes[id - 1], c, __ATOMIC_RELEASE);
            for (size_t u = 0; u <= HEAP_SMALL_MAX / 16; u++)
                if (h->small_class[u] == id - 1)
                    __atomic_store_n(&h->small[u], c, __ATOMIC_RELEASE);
        }
        if (kind == HEAP_KIND_RECORDS)
            __atomic_store_n(&h->records, c, __ATOMIC_RELEASE);
        if (kind == HEAP_KIND_MAGS)
            __atomic_store_n(&h->mags, c, __ATOMIC_RELEASE);
    } else {
        id = 0;
    }
    kmm_unlock_irqrestore(&h->lock, s);
    if (!id) {         /* no slot, or another CPU made this class first */
        if (!packed) { /* a packed structure's room stays unused: a rare race */
            KMM_MUST(k->port, kmm_pages_free(k, pa, pages));
            heap_held_sub(k, (uint64_t)pages << KMM_PAGE_SHIFT);
        }
        if (kind == HEAP_KIND_OBJECT)
            return NULL;
        struct kmm_cache **made = kind == HEAP_KIND_CLASS  ? &h->classes[heap_class_of(h, size)]
                                  : kind == HEAP_KIND_MAGS ? &h->mags
                                                           : &h->records;
        return __atomic_load_n(made, __ATOMIC_ACQUIRE);
    }
    return c;
}

_Static_assert(__builtin_offsetof(struct kmm_cache, id) + sizeof(uint32_t) <= 64,
               "heap_cache_live reads a cache's magic and id from its first line");

bool heap_cache_live(struct kmm *k, const struct kmm_cache *c)
{
    uintptr_t a = (uintptr_t)c, dm = k->direct_map;
    /* Read c only once it is known to be in the first page of an
     * allocated block, as every cache is (heap_cache_make: its colour is
     * a line of its first page), and only its first line (magic and id)
     * until those say it is a cache: the frame database also has
     * descriptors for holes and reserved ranges, where the direct map may
     * have nothing to read. */
    if (!c || (a & 63) || a < dm || a - dm >= k->totals.phys_end)
        return false;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, (a - dm) >> KMM_PAGE_SHIFT);
    if (!f || frame_meta_get(f).state != FRAME_ALLOCATED)
        return false;
    uint32_t id = c->id;
    return id < KMM_HEAP_CACHES && __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE) == c &&
           __atomic_load_n(&c->magic, __ATOMIC_RELAXED) == (HEAP_CACHE_MAGIC ^ a);
}

/* --- walks of caches[] ------------------------------------------------------------------ */

/*
 * A walk counts itself in walkers[] of the epoch it began in, then reads
 * caches[]; kmm_cache_destroy takes a cache out of caches[], then sees each
 * counter at zero once before freeing the cache's memory. Both sides read
 * the counter with a read-modify-write (acquire and release): of a walk's
 * and the destroyer's, the later one reads the earlier's value, so either
 * the destroyer counts the walk and waits for it, or the walk's acquire
 * sees the cache gone from caches[]. The epoch flips between the two
 * waits, so walks begun meanwhile count in the counter not waited for:
 * they cannot starve the destroyer (as SRCU's two counters).
 *
 * A walk runs with preemption off (it never waits), as an RCU-sched
 * reader: the destroyer spins, and on a CPU whose walk had been preempted
 * by the destroyer's thread it would spin for ever (on one CPU, always).
 * A walk in an interrupt handler that interrupts the destroyer ends before
 * the destroyer runs again.
 */
unsigned heap_walk_begin(struct kmm *k)
{
    struct kmm_heap *h = &k->heap;
    kmm_preempt_disable();
    unsigned e = atomic_load_explicit(&h->walk_epoch, memory_order_acquire) & 1u;
    atomic_fetch_add_explicit(&h->walkers[e], 1, memory_order_acq_rel);
    return e;
}

void heap_walk_end(struct kmm *k, unsigned epoch)
{
    atomic_fetch_sub_explicit(&k->heap.walkers[epoch], 1, memory_order_release);
    kmm_preempt_enable();
}

/* Waits until counter n has been zero once since this call. */
static void walkers_wait_zero(atomic_ulong *n)
{
    if (!atomic_fetch_add_explicit(n, 0, memory_order_acq_rel))
        return;
    while (atomic_load_explicit(n, memory_order_acquire))
        for (unsigned i = 0; i < 64; i++)
            __builtin_ia32_pause();
}

/* Returns once no walk that may have found a cache taken out of caches[]
 * before this call is still in it. No lock held (it spins). */
static void heap_walks_wait(struct kmm *k)
{
    struct kmm_heap *h = &k->heap;
    unsigned e = atomic_load_explicit(&h->walk_epoch, memory_order_relaxed) & 1u;
    walkers_wait_zero(&h->walkers[e ^ 1u]);
    atomic_store_explicit(&h->walk_epoch, e ^ 1u, memory_order_release);
    walkers_wait_zero(&h->walkers[e]);
}

/* --- the heap's reclaim hook ----------------------------------------------------------- */

size_t kmm_heap_shrink(struct kmm *k)
{
    /* The heap's own caches last, and the records' after the magazines':
     * slabs given back free their records and magazines into them. */
    static const unsigned last[] = {HEAP_ID_MAGS, HEAP_ID_RECORDS};
    size_t pages = 0;
    heap_debug_quarantine_empty(k); /* its objects' slabs may then go too */
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (c && id != last[0] && id != last[1])
            pages += heap_shrink_cache(k, c);
    }
    for (unsigned i = 0; i < 2; i++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[last[i]], __ATOMIC_ACQUIRE);
        if (c)
            pages += heap_shrink_cache(k, c);
    }
    heap_walk_end(k, walk);
    /* Other CPUs' stacks are theirs alone: ask, as the page caches do. */
    unsigned self = kmm_port_cpu_id(); /* under the walk's preemption-off, or any CPU */
    for (unsigned cpu = 0; cpu < k->cpu_count; cpu++)
        if (cpu != self)
            atomic_store_explicit(&k->heap.drain[cpu], 1, memory_order_relaxed);
    return pages;
}

/* The heap's reclaim hook: kmm_heap_shrink. */
static uint64_t heap_scan(struct kmm *k, void *ctx, uint64_t want_pages, kmm_gfp_t flags)
{
    (void)ctx;
    (void)want_pages;
    (void)flags;
    return kmm_heap_shrink(k);
}

/*
 * heap_ready - makes sure the slab records' cache exists and the heap's
 * reclaim hook is registered: the first thing a slow path does. Returns
 * false if there is no memory for it.
 */
bool heap_ready(struct kmm *k, kmm_gfp_t flags)
{
    struct kmm_heap *h = &k->heap;
    if (__atomic_load_n(&h->ready, __ATOMIC_ACQUIRE))
        return true;
    if (!__atomic_load_n(&h->records, __ATOMIC_ACQUIRE) &&
        !heap_cache_make(k, "kmm-slab", sizeof(struct slab), 16, NULL, HEAP_KIND_RECORDS, flags))
        return false;
    if (!__atomic_load_n(&h->mags, __ATOMIC_ACQUIRE) &&
        !heap_cache_make(k, "kmm-magazine", sizeof(struct heap_mag), 16, NULL, HEAP_KIND_MAGS,
                         flags))
        return false;
    kmm_irqstate_t s = kmm_lock_irqsave(&h->lock);
    bool first = !h->ready;
    if (first) {
        h->shrinker.scan = heap_scan;
        h->shrinker.name = "heap";
        __atomic_store_n(&h->ready, true, __ATOMIC_RELEASE);
    }
    kmm_unlock_irqrestore(&h->lock, s);
    if (first)
        KMM_MUST(k->port, kmm_shrinker_register(k, &h->shrinker));
    return true;
}

/* The size class cache of class i, made on first use; NULL without
 * memory. */
struct kmm_cache *heap_class_cache(struct kmm *k, unsigned i, kmm_gfp_t flags)
{
    struct kmm_cache *c = __atomic_load_n(&k->heap.classes[i], __ATOMIC_ACQUIRE);
    if (c)
        return c;
    if (!heap_ready(k, flags))
        return NULL;
    char name[KMM_CACHE_NAME_MAX];
    kmm_snprintf(name, sizeof(name), "kmalloc-%u", (unsigned)heap_class_size(i));
    return heap_cache_make(k, name, heap_class_size(i), KMM_HEAP_MIN_ALIGN, NULL, HEAP_KIND_CLASS,
                           flags);
}

/* --- object caches ---------------------------------------------------------------------- */

struct kmm_cache *kmm_cache_create(struct kmm *k, const char *name, size_t size, size_t align,
                                   kmm_ctor_t ctor, unsigned flags)
{
    const void *caller = __builtin_return_address(0);
    if (!name || size == 0 || size > KMM_HEAP_SLAB_MAX || (align & (align - 1)) ||
        align > KMM_PAGE_SIZE || (flags & ~KMM_HEAP_DEBUG_ALL)) {
        heap_misuse(k, (flags & ~KMM_HEAP_DEBUG_ALL) ? KMM_MISUSE_BAD_FLAGS : KMM_MISUSE_BAD_ARG,
                    KMM_EINVAL, caller, "kmm_cache_create(%s, size %zu, align %zu, flags 0x%x): %s",
                    name ? name : "NULL", size, align, flags,
                    !name                           ? "NULL name"
                    : (flags & ~KMM_HEAP_DEBUG_ALL) ? "unknown flags"
                    : size == 0                     ? "size 0"
                    : size > KMM_HEAP_SLAB_MAX
                        ? "size above KMM_HEAP_SLAB_MAX"
                        : "alignment not a power of two up to the page size");
        return NULL;
    }
    if (!heap_ready(k, 0))
        return NULL;
    struct kmm_cache *c = heap_cache_make(k, name, size, align, ctor, HEAP_KIND_OBJECT, 0);
    if (c && flags && heap_debug_cache_own(k, c, flags) != KMM_OK) {
        KMM_MUST(k->port, kmm_cache_destroy(k, c));
        return NULL;
    }
    return c;
}

size_t kmm_cache_shrink(struct kmm *k, struct kmm_cache *c)
{
    if (!heap_cache_live(k, c)) {
        heap_misuse(k, c ? KMM_MISUSE_BAD_HANDLE : KMM_MISUSE_BAD_ARG, KMM_EINVAL,
                    __builtin_return_address(0), "kmm_cache_shrink(%p): %s", (const void *)c,
                    c ? "not a live cache" : "NULL cache");
        return 0;
    }
    return heap_shrink_cache(k, c);
}

static void cache_stats(const struct kmm_cache *c, struct kmm_cache_stats *out);

/* Objects of c allocated and not freed: out of the slabs, not on a stack. */
static uint64_t active_objects(const struct kmm_cache *c, uint64_t *cached)
{
    uint64_t on_stacks = 0;
    for (unsigned cpu = 0; cpu < c->ncpu; cpu++)
        on_stacks += __atomic_load_n(&heap_cpu_at(c, cpu)->n, __ATOMIC_RELAXED);
    on_stacks += __atomic_load_n(&c->depot_objs, __ATOMIC_RELAXED);
    if (cached)
        *cached = on_stacks;
    uint64_t out = __atomic_load_n(&c->total_inuse, __ATOMIC_RELAXED);
    uint64_t idle = on_stacks + heap_debug_quarantined(c); /* quarantined: free */
    return out > idle ? out - idle : 0;
}

/* kmm_cache_destroy's judgement: c emptied and taken out of caches[]
 * (KMM_OK), or the refusal, counted. Inside a walk. */
static int destroy_take(struct kmm *k, struct kmm_cache *c, const void *caller)
{
    bool live = heap_cache_live(k, c);
    if (!live || c->kind != HEAP_KIND_OBJECT)
        return heap_misuse(k, c ? KMM_MISUSE_BAD_HANDLE : KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                           "kmm_cache_destroy(%p): %s", (const void *)c,
                           !c      ? "NULL cache"
                           : !live ? "not a live cache"
                                   : "a cache of the heap's own (a size class), not of "
                                     "kmm_cache_create");
    /* This CPU's stack and the depot go back; other CPUs' stacks are
     * theirs alone, so what they hold counts as live until they drain. */
    kmm_preempt_disable();
    heap_drain(k, c, heap_this_cpu(c));
    kmm_preempt_enable();
    heap_depot_drain(k, c);
    uint64_t guarded = heap_debug_quiesce(k, c); /* the quarantine emptied of c */
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    uint64_t out = c->total_inuse - c->depot_objs + guarded;
    kmm_unlock_irqrestore(&c->lock, s);
    if (out)
        return heap_misuse(k, KMM_MISUSE_BUSY, KMM_EBUSY, caller,
                           "kmm_cache_destroy(%s): %llu objects still allocated (or held by "
                           "other CPUs' stacks until they drain)",
                           c->name, (unsigned long long)out);
    struct kmm_heap *h = &k->heap;
    s = kmm_lock_irqsave(&h->lock);
    bool mine = __atomic_load_n(&h->caches[c->id], __ATOMIC_ACQUIRE) == c;
    if (mine) {
        __atomic_store_n(&h->caches[c->id], NULL, __ATOMIC_RELEASE);
        __atomic_store_n(&c->magic, 0, __ATOMIC_RELAXED);
    }
    kmm_unlock_irqrestore(&h->lock, s);
    if (!mine)
        return heap_misuse(k, KMM_MISUSE_BAD_HANDLE, KMM_EINVAL, caller,
                           "kmm_cache_destroy(%p): not a live cache (destroyed on another CPU "
                           "meanwhile)",
                           (const void *)c);
    return KMM_OK;
}

int kmm_cache_destroy(struct kmm *k, struct kmm_cache *c)
{
    /* Judged inside a walk: a destroy of c on another CPU at the same
     * moment (the caller's race) frees c only once this one is done
     * reading it, and then finds it gone. */
    unsigned walk = heap_walk_begin(k);
    int err = destroy_take(k, c, __builtin_return_address(0));
    heap_walk_end(k, walk);
    if (err)
        return err;
    /* A shrink (the reclaim hook, on any CPU), a drain or the figures may
     * be inside c: its memory goes once they are out. */
    struct kmm_heap *h = &k->heap;
    heap_walks_wait(k);
    struct kmm_cache_stats cs;
    cache_stats(c, &cs);
    atomic_fetch_add_explicit(&h->retired_allocs, cs.allocs, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->retired_frees, cs.frees, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->retired_alloc_bytes, cs.allocs * c->size, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->retired_free_bytes, cs.frees * c->size, memory_order_relaxed);
    heap_release_empty(k, c);
    uint64_t bytes = (uint64_t)c->mem_pages << KMM_PAGE_SHIFT;
    KMM_MUST(k->port, kmm_pages_free(k, c->mem_pa, c->mem_pages));
    heap_held_sub(k, bytes);
    return KMM_OK;
}

/* --- CPUs and limits --------------------------------------------------------------------- */

void kmm_heap_drain_cpu(struct kmm *k)
{
    kmm_preempt_disable();
    atomic_store_explicit(&k->heap.drain[kmm_port_cpu_id()], 0, memory_order_relaxed);
    kmm_preempt_enable();
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (!c)
            continue;
        kmm_preempt_disable();
        heap_drain(k, c, heap_this_cpu(c));
        kmm_preempt_enable();
    }
    heap_walk_end(k, walk);
}

bool kmm_heap_drain_pending(struct kmm *k)
{
    kmm_preempt_disable();
    bool pending =
        atomic_load_explicit(&k->heap.drain[kmm_port_cpu_id()], memory_order_relaxed) != 0;
    kmm_preempt_enable();
    return pending;
}

void heap_drain_asked(struct kmm *k)
{
    /* The flag is cleared before the drain: a slow path inside the drain
     * (a slab record freed into its cache) does not start another. */
    kmm_preempt_disable();
    atomic_uchar *flag = &k->heap.drain[kmm_port_cpu_id()];
    bool asked = atomic_load_explicit(flag, memory_order_relaxed) &&
                 atomic_exchange_explicit(flag, 0, memory_order_relaxed);
    if (asked)
        kmm_heap_drain_cpu(k);
    kmm_preempt_enable();
}

int kmm_heap_drain_offline_cpu(struct kmm *k, unsigned cpu)
{
    if (cpu >= k->cpu_count)
        return heap_misuse(k, KMM_MISUSE_ABSENT, KMM_EINVAL, __builtin_return_address(0),
                           "kmm_heap_drain_offline_cpu(%u): only %u CPUs", cpu, k->cpu_count);
    atomic_store_explicit(&k->heap.drain[cpu], 0, memory_order_relaxed);
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (c)
            heap_drain(k, c, heap_cpu_at(c, cpu));
    }
    heap_walk_end(k, walk);
    return KMM_OK;
}

uint64_t kmm_heap_set_limit(struct kmm *k, uint64_t bytes)
{
    return atomic_exchange_explicit(&k->heap.limit, bytes, memory_order_relaxed);
}

int kmm_heap_set_lend(struct kmm *k, unsigned classes)
{
    struct kmm_heap *h = &k->heap;
    if (classes > KMM_HEAP_LEND_MAX)
        return heap_misuse(k, KMM_MISUSE_BAD_ARG, KMM_EINVAL, __builtin_return_address(0),
                           "kmm_heap_set_lend(%u): more than KMM_HEAP_LEND_MAX (%u) classes",
                           classes, KMM_HEAP_LEND_MAX);
    /* lend_seen first: a block lent under the new setting must find a
     * sized free that accepts its size. */
    unsigned seen = atomic_load_explicit(&h->lend_seen, memory_order_relaxed);
    while (seen < classes &&
           !atomic_compare_exchange_weak_explicit(&h->lend_seen, &seen, classes,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    atomic_store_explicit(&h->lend, classes, memory_order_release);
    return KMM_OK;
}

/* --- figures ------------------------------------------------------------------------------ */

static void cache_stats(const struct kmm_cache *c, struct kmm_cache_stats *out)
{
    *out = (struct kmm_cache_stats){0};
    __builtin_memcpy(out->name, c->name, sizeof(out->name));
    out->object_size = c->size;
    out->objects_per_slab = c->objects;
    out->pages_per_slab = 1u << c->order;
    out->debug_modes = __atomic_load_n(&c->dbg.flags, __ATOMIC_RELAXED) & KMM_HEAP_DEBUG_ALL;
    uint64_t slabs = 0;
    for (unsigned l = 0; l < SLAB_LISTS; l++)
        slabs += __atomic_load_n(&c->nslabs[l], __ATOMIC_RELAXED);
    out->total_slabs = slabs;
    out->active_slabs = slabs - __atomic_load_n(&c->nslabs[SLAB_EMPTY], __ATOMIC_RELAXED);
    out->total_objects = slabs * c->objects;
    out->active_objects = active_objects(c, &out->cpu_cached);
    for (unsigned cpu = 0; cpu < c->ncpu; cpu++) {
        const struct heap_cpu *hc = heap_cpu_at(c, cpu);
        out->allocs += __atomic_load_n(&hc->allocs, __ATOMIC_RELAXED);
        out->frees += __atomic_load_n(&hc->frees, __ATOMIC_RELAXED);
        out->lent += __atomic_load_n(&hc->lent, __ATOMIC_RELAXED);
    }
}

int kmm_cache_stats(struct kmm *k, const struct kmm_cache *c, struct kmm_cache_stats *out)
{
    if (!heap_cache_live(k, c) || !out)
        return heap_misuse(k, c && out ? KMM_MISUSE_BAD_HANDLE : KMM_MISUSE_BAD_ARG, KMM_EINVAL,
                           __builtin_return_address(0), "kmm_cache_stats(%p): %s", (const void *)c,
                           !c    ? "NULL cache"
                           : out ? "not a live cache"
                                 : "NULL out");
    cache_stats(c, out);
    return KMM_OK;
}

struct kmm_cache *kmm_heap_cache_at(struct kmm *k, unsigned i)
{
    struct kmm_cache *found = NULL;
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES && !found; id++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (c && (c->kind == HEAP_KIND_CLASS || c->kind == HEAP_KIND_OBJECT) && i-- == 0)
            found = c;
    }
    heap_walk_end(k, walk);
    return found;
}

void kmm_heap_stats(struct kmm *k, struct kmm_heap_stats *out)
{
    struct kmm_heap *h = &k->heap;
    *out = (struct kmm_heap_stats){0};
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&h->caches[id], __ATOMIC_ACQUIRE);
        if (!c)
            continue;
        if (c->kind == HEAP_KIND_RECORDS || c->kind == HEAP_KIND_MAGS)
            continue; /* the heap's own bookkeeping: held, not used */
        struct kmm_cache_stats cs;
        cache_stats(c, &cs);
        out->caches++;
        out->bytes_used += cs.active_objects * c->size;
        out->allocs += cs.allocs;
        out->frees += cs.frees;
        out->alloc_bytes += cs.allocs * c->size;
        out->free_bytes += cs.frees * c->size;
    }
    heap_walk_end(k, walk);
    out->large_blocks = atomic_load_explicit(&h->large_blocks, memory_order_relaxed);
    out->large_bytes = atomic_load_explicit(&h->large_bytes, memory_order_relaxed);
    out->bytes_used += out->large_bytes;
    out->allocs += atomic_load_explicit(&h->large_allocs, memory_order_relaxed) +
                   atomic_load_explicit(&h->retired_allocs, memory_order_relaxed);
    out->frees += atomic_load_explicit(&h->large_frees, memory_order_relaxed) +
                  atomic_load_explicit(&h->retired_frees, memory_order_relaxed);
    out->alloc_bytes += atomic_load_explicit(&h->large_alloc_bytes, memory_order_relaxed) +
                        atomic_load_explicit(&h->retired_alloc_bytes, memory_order_relaxed);
    out->free_bytes += atomic_load_explicit(&h->large_free_bytes, memory_order_relaxed) +
                       atomic_load_explicit(&h->retired_free_bytes, memory_order_relaxed);
    out->bytes_held = atomic_load_explicit(&h->held, memory_order_relaxed);
    out->bytes_peak = atomic_load_explicit(&h->peak, memory_order_relaxed);
    out->bytes_free = out->bytes_held > out->bytes_used ? out->bytes_held - out->bytes_used : 0;
    out->limit = atomic_load_explicit(&h->limit, memory_order_relaxed);
    out->failed = atomic_load_explicit(&h->failed, memory_order_relaxed);
    out->misuse = kmm_misuse_layer_total(k, KMM_LAYER_HEAP);
}
