/*
 * slab.c - a cache's slabs and the moves between them and the CPU stacks:
 * refill (alloc slow path), flush (free slow path), drain, growth and
 * shrinking. heap.h draws the levels and the words of a free object.
 *
 * Lock order (docs/architecture.md): a cache's lock is taken alone. Pages
 * are never allocated under it: growth drops it, allocates the slab (the
 * page allocator may run the shrinkers, the heap's among them, which take
 * cache locks), and takes it again. The records cache's lock is taken
 * while no other cache lock is held, for the same reason.
 */
#include "heap/debug.h"
#include "heap/heap.h"

/* --- lists -------------------------------------------------------------------------- */

/* Sets a count of slabs, full magazines or objects out, which the lock's
 * holder changes and heap_spare, heap_idle and the figures read without
 * the lock: one store, so that such a reader sees a value the count had. */
#define COUNT_SET(count, v) __atomic_store_n(&(count), (v), __ATOMIC_RELAXED)

static enum slab_list list_for(const struct kmm_cache *c, const struct slab *s)
{
    if (s->inuse == s->self)
        return SLAB_EMPTY;
    return s->inuse == c->objects ? SLAB_FULL : SLAB_PARTIAL;
}

static void list_del(struct kmm_cache *c, struct slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->lists[s->list] = s->next;
    if (s->next)
        s->next->prev = s->prev;
    COUNT_SET(c->nslabs[s->list], c->nslabs[s->list] - 1);
}

static void list_add(struct kmm_cache *c, struct slab *s, enum slab_list l)
{
    s->list = (uint8_t)l;
    s->prev = NULL;
    s->next = c->lists[l];
    if (s->next)
        s->next->prev = s;
    c->lists[l] = s;
    COUNT_SET(c->nslabs[l], c->nslabs[l] + 1);
}

/* Puts s on the list its inuse says, if it is not there. Cache lock held. */
static void list_fix(struct kmm_cache *c, struct slab *s)
{
    enum slab_list l = list_for(c, s);
    if (l != s->list) {
        list_del(c, s);
        list_add(c, s, l);
    }
}

/* --- one slab's free list ------------------------------------------------------------- */

/* The index of object obj of slab s (an object start of it). */
static uint32_t slab_index(const struct kmm_cache *c, const struct slab *s, uintptr_t obj)
{
    return (uint32_t)(((uint64_t)(obj - s->base) * c->recip) >> 32);
}

static bool out_test(const struct slab *s, uint32_t i)
{
    return (s->out[i / 64] >> (i % 64)) & 1u;
}

static void out_flip(struct slab *s, uint32_t i)
{
    s->out[i / 64] ^= UINT64_C(1) << (i % 64);
}

/* Whether obj is an object start of slab s of c. */
static bool slab_holds(const struct kmm_cache *c, const struct slab *s, uintptr_t obj)
{
    if (obj < s->base)
        return false;
    return heap_object_start(c, obj - s->base);
}

/* Pushes free object obj on s's list: encoded link, free tag. Lock held. */
static void slab_put(struct kmm_cache *c, struct slab *s, uintptr_t obj)
{
    uintptr_t *w = heap_words(c, obj);
    w[0] = s->free ^ c->secret ^ (uintptr_t)w;
    heap_tag_set(c, obj, heap_tag(c, obj));
    s->free = obj;
    s->inuse--;
}

/*
 * Takes the first object of s's list (which is not empty). Its tag stays:
 * it is still free, on its way to a CPU stack. A link or tag that does not
 * decode to a free object of s means a write after free reached the list:
 * the rest of the list is abandoned (the slab counts as full and is never
 * freed), logged, and the object is refused. Lock held.
 */
static uintptr_t slab_take(struct kmm *k, struct kmm_cache *c, struct slab *s)
{
    uintptr_t obj = s->free, *w = heap_words(c, obj);
    uintptr_t next = w[0] ^ c->secret ^ (uintptr_t)w;
    bool ok = heap_tag_get(c, obj) == heap_tag(c, obj) && (next == 0 || slab_holds(c, s, next));
    if (__builtin_expect(!ok, 0)) {
        kmm_logf(k->port, KMM_LOG_ERR,
                 "heap: cache %s: the free list of slab 0x%llx is corrupt at object 0x%llx "
                 "(written after it was freed); the slab's free objects are abandoned",
                 c->name, (unsigned long long)s->base, (unsigned long long)obj);
        s->free = 0;
        COUNT_SET(c->total_inuse, c->total_inuse + (c->objects - s->inuse));
        s->inuse = c->objects;
        for (uint32_t i = 0; i < c->objects; i++)
            if (!out_test(s, i))
                out_flip(s, i);
        return 0;
    }
    s->free = next;
    s->inuse++;
    out_flip(s, slab_index(c, s, obj));
    return obj;
}

/* --- growth and release ----------------------------------------------------------------- */

bool heap_held_add(struct kmm *k, uint64_t bytes)
{
    struct kmm_heap *h = &k->heap;
    uint64_t limit = atomic_load_explicit(&h->limit, memory_order_relaxed);
    uint64_t held = atomic_load_explicit(&h->held, memory_order_relaxed);
    do {
        if (limit && held + bytes > limit)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&h->held, &held, held + bytes,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void heap_held_got(struct kmm *k)
{
    struct kmm_heap *h = &k->heap;
    uint64_t held = atomic_load_explicit(&h->held, memory_order_relaxed);
    uint64_t peak = atomic_load_explicit(&h->peak, memory_order_relaxed);
    while (peak < held && !atomic_compare_exchange_weak_explicit(
                              &h->peak, &peak, held, memory_order_relaxed, memory_order_relaxed))
        ;
}

void heap_held_sub(struct kmm *k, uint64_t bytes)
{
    atomic_fetch_sub_explicit(&k->heap.held, bytes, memory_order_relaxed);
}

/* The slab record of a block the frame database names. */
static struct slab *slab_of(struct kmm *k, const struct pmm_slab_ref *ref)
{
    void *record = pmm_slab_record(ref->head);
    return record ? (struct slab *)record : (struct slab *)(k->direct_map + (uintptr_t)ref->pa);
}

/* A record for a new slab of c (not the records cache). */
static struct slab *record_alloc(struct kmm *k, kmm_gfp_t flags)
{
    struct kmm_cache *r = k->heap.records;
    uintptr_t obj = heap_pop(r);
    return (struct slab *)(obj ? obj : heap_alloc_slow(k, r, flags));
}

static void record_free(struct kmm *k, struct slab *s)
{
    struct kmm_cache *r = k->heap.records;
    if (heap_push(r, (uintptr_t)s) == HEAP_STACK_FULL)
        heap_free_slow(k, r, (uintptr_t)s);
}

/* A magazine for a depot, or NULL. Any context: frees take magazines. */
static struct heap_mag *mag_alloc(struct kmm *k)
{
    struct kmm_cache *m = k->heap.mags;
    uintptr_t obj = heap_pop(m);
    return (struct heap_mag *)(obj ? obj : heap_alloc_slow(k, m, KMM_GFP_ATOMIC));
}

static void mag_free(struct kmm *k, struct heap_mag *mag)
{
    struct kmm_cache *m = k->heap.mags;
    if (heap_push(m, (uintptr_t)mag) == HEAP_STACK_FULL)
        heap_free_slow(k, m, (uintptr_t)mag);
}

/* Frees a chain of magazines linked by next. No lock held. */
static void mag_free_chain(struct kmm *k, struct heap_mag *chain)
{
    while (chain) {
        struct heap_mag *next = chain->next;
        mag_free(k, chain);
        chain = next;
    }
}

/*
 * A new slab of c, off every list, or NULL (no memory, or the heap's
 * limit). Its objects are constructed and on its free list. No lock held:
 * the page allocator may run the shrinkers.
 */
static struct slab *slab_grow(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags)
{
    uint64_t bytes = (uint64_t)KMM_PAGE_SIZE << c->order;
    if (!heap_held_add(k, bytes))
        return NULL;
    bool self = c->kind == HEAP_KIND_RECORDS;
    struct slab *s = self ? NULL : record_alloc(k, flags);
    uint64_t pa = 0;
    if (self || s)
        pa = pmm_slab_alloc(k, c->order, flags & KMM_GFP_ATOMIC, c->id, s);
    if (!pa) {
        if (s)
            record_free(k, s);
        heap_held_sub(k, bytes);
        return NULL;
    }
    heap_held_got(k);
    uintptr_t base = k->direct_map + (uintptr_t)pa;
    if (self)
        s = (struct slab *)base;
    *s = (struct slab){.base = base, .inuse = c->objects, .self = self};
    if (self)
        out_flip(s, 0);
    uint32_t first = self ? 1 : 0;
    for (uint32_t i = c->objects; i-- > first;) {
        uintptr_t obj = base + (uintptr_t)i * c->size;
        if (c->ctor) /* the object starts after its red zone in the debug layout */
            c->ctor((void *)(obj + c->dbg.left));
        slab_put(c, s, obj);
    }
    return s;
}

/* Gives slab s (off every list, empty) back to the page allocator. No lock
 * held. */
static void slab_release(struct kmm *k, struct kmm_cache *c, struct slab *s)
{
    uint64_t pa = s->base - k->direct_map;
    bool self = s->self;
    if (!pmm_slab_free(k, pa)) /* an empty slab is the heap's alone */
        kmm_panicf(k->port, "heap: cache %s: slab 0x%llx was freed under it", c->name,
                   (unsigned long long)s->base);
    if (!self)
        record_free(k, s);
    heap_held_sub(k, (uint64_t)KMM_PAGE_SIZE << c->order);
}

/* Releases a chain of slabs linked by next. */
static size_t release_chain(struct kmm *k, struct kmm_cache *c, struct slab *chain)
{
    size_t pages = 0;
    while (chain) {
        struct slab *next = chain->next;
        slab_release(k, c, chain);
        pages += (size_t)1 << c->order;
        chain = next;
    }
    return pages;
}

/* Takes empty slabs beyond keep off c's lists onto *chain. Lock held. */
static void trim_empty(struct kmm_cache *c, uint64_t keep, struct slab **chain)
{
    while (c->nslabs[SLAB_EMPTY] > keep) {
        struct slab *s = c->lists[SLAB_EMPTY];
        list_del(c, s);
        c->shrunk++;
        s->next = *chain;
        *chain = s;
    }
}

/* --- refill and flush --------------------------------------------------------------------- */

/* Moves up to c->batch objects from the slabs to stack hc; returns how
 * many. Lock held. */
static unsigned refill_locked(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc)
{
    unsigned moved = 0;
    /* A cache being debugged has no stack (limit 0): one object at a time
     * then, for a CPU that came here before it saw the switch. */
    unsigned room = c->limit ? c->limit : 1;
    while (moved < c->batch && hc->n < room) {
        struct slab *s = c->lists[SLAB_PARTIAL] ? c->lists[SLAB_PARTIAL] : c->lists[SLAB_EMPTY];
        if (!s)
            break;
        uintptr_t obj = slab_take(k, c, s);
        if (obj) {
            hc->objs[hc->n++] = (void *)obj;
            COUNT_SET(c->total_inuse, c->total_inuse + 1);
            moved++;
        }
        list_fix(c, s);
    }
    return moved;
}

/* --- lent objects ------------------------------------------------------------------ */

/* An object of c that is out has no slab of c: a broken invariant. */
static __attribute__((cold, noinline)) void no_slab(struct kmm *k, const struct kmm_cache *c,
                                                    uintptr_t obj)
{
    kmm_panicf(k->port, "heap: cache %s: object 0x%llx has no slab of its own", c->name,
               (unsigned long long)obj);
}

/* The slab of obj, an object of c that is out (allocated or on a stack,
 * so its slab stays), and obj's index in it: pmm_slab_find's hops inline
 * (the frame, its head by the order an interior frame carries, a SLAB head
 * of c's order and id, its record), for the lending path and a stack's
 * objects going back to their slabs. */
static inline __attribute__((always_inline)) struct slab *
slab_holding(struct kmm *k, struct kmm_cache *c, uintptr_t obj, uint32_t *i)
{
    uint64_t pfn = (uint64_t)(obj - k->direct_map) >> KMM_PAGE_SHIFT;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pfn);
    if (__builtin_expect(!f, 0))
        no_slab(k, c, obj);
    union frame_meta m = frame_meta_get(f);
    uint64_t in = 0;
    if (m.state == FRAME_INTERIOR && m.order <= PMM_SLAB_MAX_ORDER) {
        in = pfn & ((UINT64_C(1) << m.order) - 1);
        m = frame_meta_get(f - in);
    }
    if (__builtin_expect(m.state != FRAME_SLAB || m.order != c->order || m.count != c->id, 0))
        no_slab(k, c, obj);
    struct pmm_slab_ref ref = {(pfn - in) << KMM_PAGE_SHIFT, m.order, m.count, f - in};
    struct slab *s = slab_of(k, &ref);
    *i = slab_index(c, s, obj);
    return s;
}

void heap_lent_set(struct kmm *k, struct kmm_cache *c, uintptr_t obj)
{
    uint32_t i;
    struct slab *s = slab_holding(k, c, obj, &i);
    __atomic_fetch_or(&s->lent[i / 64], UINT64_C(1) << (i % 64), __ATOMIC_RELAXED);
}

bool heap_lent_test(struct kmm *k, struct kmm_cache *c, uintptr_t obj)
{
    uint32_t i;
    struct slab *s = slab_holding(k, c, obj, &i);
    return (__atomic_load_n(&s->lent[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1u;
}

/* Clears object i's lent mark, if set, as it comes back to slab s. */
static void lent_clear(struct slab *s, uint32_t i)
{
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (__atomic_load_n(&s->lent[i / 64], __ATOMIC_RELAXED) & bit)
        __atomic_fetch_and(&s->lent[i / 64], ~bit, __ATOMIC_RELAXED);
}

/* Returns object obj (free, tagged, found in c) to its slab. Lock held. */
static void return_locked(struct kmm *k, struct kmm_cache *c, uintptr_t obj)
{
    /* Every object on a stack was found in c when it was freed, and a slab
     * with objects out is never given back: the frame database still
     * names it. */
    uint32_t i;
    struct slab *s = slab_holding(k, c, obj, &i);
    if (!out_test(s, i)) {
        /* Already back: the object was freed on two CPUs at once. */
        kmm_logf(k->port, KMM_LOG_ERR,
                 "heap: cache %s: object 0x%llx came back to its slab twice (freed on two CPUs "
                 "at once); the second copy is dropped",
                 c->name, (unsigned long long)obj);
        return;
    }
    if (heap_tag_get(c, obj) != heap_tag(c, obj)) {
        /* Its tag is gone: another copy of it (freed on two CPUs at once)
         * was allocated and is live, or it was written after it was freed.
         * Either way it is not free: it stays out (as drop_bad_top). */
        kmm_logf(k->port, KMM_LOG_ERR,
                 "heap: cache %s: free object 0x%llx lost its free tag on its way back to its "
                 "slab (written after it was freed, or freed twice at once and allocated "
                 "again); it is left out of use",
                 c->name, (unsigned long long)obj);
        return;
    }
    out_flip(s, i);
    lent_clear(s, i);
    slab_put(c, s, obj);
    COUNT_SET(c->total_inuse, c->total_inuse - 1);
    list_fix(c, s);
}

/* Moves the top n objects of stack hc back to the slabs. Lock held. */
static void flush_locked(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc, unsigned n)
{
    while (n-- && hc->n) {
        uintptr_t obj = (uintptr_t)hc->objs[--hc->n];
        if (__builtin_expect(c->dbg.flags & KMM_HEAP_DEBUG_POISON, 0))
            heap_debug_poison_locked(c, obj); /* freed by a path that did not */
        return_locked(k, c, obj);
    }
}

/* Reports and drops the top object of hc, whose free tag is gone: it was
 * written after it was freed, or handed out twice (two CPUs freeing it at
 * once). Never handed out again; it stays counted as in use (leaked). */
static void drop_bad_top(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc)
{
    uintptr_t obj = (uintptr_t)hc->objs[--hc->n];
    kmm_logf(k->port, KMM_LOG_ERR,
             "heap: cache %s: free object 0x%llx lost its free tag (written after it was "
             "freed, or freed twice at once); it is left out of use",
             c->name, (unsigned long long)obj);
}

/* Whether the heap's depot budget (HEAP_DEPOT_TOTAL) has room for a
 * magazine of c's on top of `held` bytes. */
static bool depot_budget_fits(const struct kmm_cache *c, uint64_t held)
{
    return held + (uint64_t)c->batch * c->size <= HEAP_DEPOT_TOTAL;
}

/* Takes room for a magazine of c's in the heap's depot budget: true if
 * there was room. Any lock. */
static bool depot_budget_take(struct kmm *k, const struct kmm_cache *c)
{
    uint64_t bytes = (uint64_t)c->batch * c->size;
    unsigned long seen = atomic_load_explicit(&k->heap.depot_bytes, memory_order_relaxed);
    do {
        if (!depot_budget_fits(c, seen))
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&k->heap.depot_bytes, &seen, seen + bytes,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* Gives back the budget of objs objects of c leaving its depot. */
static void depot_budget_give(struct kmm *k, const struct kmm_cache *c, uint64_t objs)
{
    atomic_fetch_sub_explicit(&k->heap.depot_bytes, (unsigned long)(objs * c->size),
                              memory_order_relaxed);
}

/* Loads a full magazine from c's depot onto empty stack hc; its
 * magazine goes to the empty list, or onto *spare beyond depot_max empty
 * ones. Returns whether the depot had one. Lock held. */
static bool depot_load_locked(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc,
                              struct heap_mag **spare)
{
    struct heap_mag *m = c->full;
    if (!m || hc->n + m->n > c->limit)
        return false;
    c->full = m->next;
    COUNT_SET(c->nfull, c->nfull - 1);
    c->depot_objs -= m->n;
    depot_budget_give(k, c, m->n);
    __builtin_memcpy(&hc->objs[hc->n], m->objs, m->n * sizeof(void *));
    hc->n += m->n;
    m->n = 0;
    if (c->nempty < c->depot_max) {
        m->next = c->empty;
        c->empty = m;
        c->nempty++;
    } else {
        m->next = *spare;
        *spare = m;
    }
    return true;
}

/* Whether c's slow paths honour a drain request: a caller's cache (the
 * heap's own are reached from inside a drain). */
static bool drains_here(const struct kmm_cache *c)
{
    return c->kind == HEAP_KIND_CLASS || c->kind == HEAP_KIND_OBJECT;
}

/* An object of c from this CPU's stack, c's depot or its slabs, its tag
 * checked and cleared; 0 if they have none. Never grows c. No lock held. */
static uintptr_t take_cached(struct kmm *k, struct kmm_cache *c)
{
    struct heap_mag *spare = NULL;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    struct heap_cpu *hc = heap_this_cpu(c);
    uintptr_t obj = 0;
    while (!obj && (hc->n || depot_load_locked(k, c, hc, &spare) || refill_locked(k, c, hc))) {
        uintptr_t top = (uintptr_t)hc->objs[hc->n - 1];
        if (heap_tag_get(c, top) != heap_tag(c, top)) {
            drop_bad_top(k, c, hc);
            continue;
        }
        heap_tag_set(c, top, 0);
        hc->n--;
        hc->allocs++;
        obj = top;
    }
    kmm_unlock_irqrestore(&c->lock, s);
    kmm_preempt_enable();
    mag_free_chain(k, spare);
    return obj;
}

uintptr_t heap_alloc_cached(struct kmm *k, struct kmm_cache *c)
{
    if (drains_here(c))
        heap_drain_asked(k);
    return take_cached(k, c);
}

uintptr_t heap_lend_one(struct kmm *k, struct kmm_cache *c)
{
    uintptr_t obj = 0;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    for (;;) {
        struct slab *sl = c->lists[SLAB_PARTIAL] ? c->lists[SLAB_PARTIAL] : c->lists[SLAB_EMPTY];
        if (!sl)
            break;
        obj = slab_take(k, c, sl); /* 0: a corrupt free list, the slab abandoned */
        list_fix(c, sl);
        if (obj)
            break;
    }
    if (obj) {
        COUNT_SET(c->total_inuse, c->total_inuse + 1);
        heap_tag_set(c, obj, 0);
        struct heap_cpu *hc = heap_this_cpu(c);
        hc->allocs++;
        hc->lent++;
    }
    kmm_unlock_irqrestore(&c->lock, s);
    kmm_preempt_enable();
    return obj;
}

uintptr_t heap_alloc_slow(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags)
{
    if (drains_here(c))
        heap_drain_asked(k);
    for (;;) {
        uintptr_t obj = take_cached(k, c);
        if (obj)
            return obj;
        struct slab *fresh = slab_grow(k, c, flags);
        if (!fresh)
            return 0;
        kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
        c->grown++;
        fresh->list = SLAB_EMPTY;
        list_add(c, fresh, list_for(c, fresh));
        if (__builtin_expect(c->dbg.flags & KMM_HEAP_DEBUG_POISON, 0))
            heap_debug_slab_added_locked(c, fresh); /* its objects join the poisoned */
        kmm_unlock_irqrestore(&c->lock, s);
    }
}

/*
 * Moves the top batch of full stack hc into magazine m (from the empty
 * list or just allocated) on c's depot, if the depot has room; otherwise
 * the batch goes back to the slabs object by object and m, if any, is
 * kept as an empty one or handed back through *spare. Lock held.
 */
static void depot_unload_locked(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc,
                                struct heap_mag *m, struct heap_mag **spare)
{
    if (m && c->nfull < c->depot_max && depot_budget_take(k, c)) {
        m->n = c->batch;
        hc->n -= c->batch;
        __builtin_memcpy(m->objs, &hc->objs[hc->n], m->n * sizeof(void *));
        m->next = c->full;
        c->full = m;
        COUNT_SET(c->nfull, c->nfull + 1);
        c->depot_objs += m->n;
        return;
    }
    if (m) {
        m->next = *spare;
        *spare = m;
    }
    flush_locked(k, c, hc, c->batch);
}

int heap_free_slow(struct kmm *k, struct kmm_cache *c, uintptr_t obj)
{
    if (drains_here(c))
        heap_drain_asked(k);
    struct slab *chain = NULL;
    struct heap_mag *spare = NULL, *fresh = NULL;
    bool tried = false;
    int err = KMM_OK;
    for (;;) {
        kmm_preempt_disable();
        kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
        struct heap_cpu *hc = heap_this_cpu(c);
        if (heap_tag_get(c, obj) == heap_tag(c, obj)) {
            err = KMM_ESTATE;
        } else if (hc->n >= c->limit) {
            struct heap_mag *m = NULL;
            if (c->empty) {
                m = c->empty;
                c->empty = m->next;
                c->nempty--;
            } else if (fresh) {
                m = fresh;
                fresh = NULL;
            } else if (!tried && c->nfull < c->depot_max &&
                       depot_budget_fits(
                           c, atomic_load_explicit(&k->heap.depot_bytes, memory_order_relaxed))) {
                /* A magazine comes from the magazine cache, which takes
                 * its own lock: get it with this one dropped. */
                kmm_unlock_irqrestore(&c->lock, s);
                kmm_preempt_enable();
                fresh = mag_alloc(k);
                tried = true;
                continue;
            }
            depot_unload_locked(k, c, hc, m, &spare);
        }
        if (!err) {
            heap_tag_set(c, obj, heap_tag(c, obj));
            hc->objs[hc->n++] = (void *)obj;
            hc->frees++;
            trim_empty(c, HEAP_KEEP_EMPTY, &chain);
        }
        kmm_unlock_irqrestore(&c->lock, s);
        kmm_preempt_enable();
        break;
    }
    if (fresh) {
        fresh->next = spare;
        spare = fresh;
    }
    mag_free_chain(k, spare);
    release_chain(k, c, chain);
    return err;
}

size_t heap_depot_drain(struct kmm *k, struct kmm_cache *c)
{
    struct slab *chain = NULL;
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    struct heap_mag *mags = c->empty;
    c->empty = NULL;
    c->nempty = 0;
    while (c->full) {
        struct heap_mag *m = c->full;
        c->full = m->next;
        while (m->n) {
            uintptr_t obj = (uintptr_t)m->objs[--m->n];
            if (__builtin_expect(c->dbg.flags & KMM_HEAP_DEBUG_POISON, 0))
                heap_debug_poison_locked(c, obj);
            return_locked(k, c, obj);
        }
        m->next = mags;
        mags = m;
    }
    COUNT_SET(c->nfull, 0);
    depot_budget_give(k, c, c->depot_objs);
    c->depot_objs = 0;
    trim_empty(c, HEAP_KEEP_EMPTY, &chain);
    kmm_unlock_irqrestore(&c->lock, s);
    mag_free_chain(k, mags);
    return release_chain(k, c, chain);
}

void heap_drain(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc)
{
    struct slab *chain = NULL;
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    flush_locked(k, c, hc, hc->n);
    trim_empty(c, HEAP_KEEP_EMPTY, &chain);
    kmm_unlock_irqrestore(&c->lock, s);
    release_chain(k, c, chain);
}

size_t heap_release_empty(struct kmm *k, struct kmm_cache *c)
{
    struct slab *chain = NULL;
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    trim_empty(c, 0, &chain);
    kmm_unlock_irqrestore(&c->lock, s);
    return release_chain(k, c, chain);
}

size_t heap_shrink_cache(struct kmm *k, struct kmm_cache *c)
{
    size_t pages = heap_depot_drain(k, c);
    struct slab *chain = NULL;
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    struct heap_cpu *hc = heap_this_cpu(c);
    flush_locked(k, c, hc, hc->n);
    trim_empty(c, 0, &chain);
    kmm_unlock_irqrestore(&c->lock, s);
    kmm_preempt_enable();
    return pages + release_chain(k, c, chain);
}

/* --- the debugging paths' own (debug.c) ------------------------------------------------ */

uintptr_t heap_slab_get(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags, bool *poisoned)
{
    /* A stack of its own, whatever this CPU's holds: refill_locked moves
     * one object there while the cache's bound is 0, and at most a batch
     * if the bound came back meanwhile (the rest go straight back). */
    union {
        struct heap_cpu hc;
        unsigned char room[sizeof(struct heap_cpu) + HEAP_MAG_OBJS * sizeof(void *)];
    } one;
    for (;;) {
        one.hc.n = 0;
        kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
        refill_locked(k, c, &one.hc);
        KMM_ASSERT(k->port,
                   one.hc.n <= (sizeof(one.room) - sizeof(struct heap_cpu)) / sizeof(void *));
        if (one.hc.n > 1)
            flush_locked(k, c, &one.hc, one.hc.n - 1);
        if (one.hc.n)
            *poisoned = c->dbg.flags & KMM_HEAP_DEBUG_POISON;
        kmm_unlock_irqrestore(&c->lock, s);
        if (one.hc.n) {
            heap_tag_set(c, (uintptr_t)one.hc.objs[0], 0);
            return (uintptr_t)one.hc.objs[0];
        }
        struct slab *fresh = slab_grow(k, c, flags);
        if (!fresh) {
            atomic_fetch_add_explicit(&k->heap.failed, 1, memory_order_relaxed);
            return 0;
        }
        s = kmm_lock_irqsave(&c->lock);
        c->grown++;
        fresh->list = SLAB_EMPTY;
        list_add(c, fresh, list_for(c, fresh));
        if (c->dbg.flags & KMM_HEAP_DEBUG_POISON)
            heap_debug_slab_added_locked(c, fresh);
        kmm_unlock_irqrestore(&c->lock, s);
    }
}

void heap_slab_put(struct kmm *k, struct kmm_cache *c, uintptr_t obj)
{
    struct slab *chain = NULL;
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    return_locked(k, c, obj);
    trim_empty(c, HEAP_KEEP_EMPTY, &chain);
    kmm_unlock_irqrestore(&c->lock, s);
    release_chain(k, c, chain);
}
