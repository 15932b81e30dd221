/*
 * debug.c - the heap's debugging modes (kmm/heap.h, "Debugging"): the
 * switches, the debug layout, and the checking paths an allocation and a
 * free of a debugged cache take (red zones, poison, the quarantine).
 * heap/debug.h draws the layout and says how a cache is routed here.
 *
 * Poison is exact: while a cache has POISON in force, every object on its
 * slabs' free lists holds the pattern. The switch fills every free object
 * in the same hold of the cache's lock that sets the flag; from then on an
 * object reaches a free list only through this file's free (filled before
 * it goes back), a stack or the depot (filled on the way: slab.c's flush
 * and depot drain), or a new slab (filled when it is listed). So an
 * allocation checks exactly the objects that were filled (heap_slab_get
 * says whether the flag was on when it took the object).
 *
 * Lock order (heap/debug.h): the switch flag, a cache's lock, the debug
 * lock (a leaf).
 */
#include "heap/debug.h"

#include <kmm/fmt.h>
#include <kmm/heap.h>

#define PAGE KMM_PAGE_SIZE

/* Bytes a free object keeps out of its poison: the free-list word and tag
 * at its start (the plain layout), then its last free caller if it is at
 * least FREE_CALLER_MIN bytes. */
#define FREE_WORDS      16u
#define FREE_CALLER_MIN 32u
/* The bytes of the trailer the free path's probe may read past it, from
 * the caller's pointer (heap/debug.h). */
#define PROBE_BYTES     16u

/* --- patterns ------------------------------------------------------------------------- */

void heap_debug_fill(uintptr_t at, uint8_t byte, size_t n)
{
    __builtin_memset((void *)at, byte, n);
}

int64_t heap_debug_differs(uintptr_t at, uint8_t byte, size_t n)
{
    const uint8_t *b = (const uint8_t *)at;
    uint64_t word = UINT64_C(0x0101010101010101) * byte;
    size_t i = 0;
    for (; i < n && ((at + i) & 7); i++)
        if (b[i] != byte)
            return (int64_t)i;
    for (; i + 8 <= n; i += 8)
        if (*(const uint64_t *)(at + i) != word)
            break;
    for (; i < n; i++)
        if (b[i] != byte)
            return (int64_t)i;
    return -1;
}

/* --- where things are in a slot --------------------------------------------------------- */

static struct heap_trailer *trailer(const struct kmm_cache *c, uintptr_t obj)
{
    return (struct heap_trailer *)(obj + c->dbg.tail);
}

/* The bytes [*from, *to) of a free object of c that hold the poison; false
 * if it has none (a constructor's objects keep their state). */
static bool poison_span(const struct kmm_cache *c, uint32_t *from, uint32_t *to)
{
    if (c->ctor)
        return false;
    if (c->dbg.tail) { /* the debug layout: the whole object; the trailer keeps the rest */
        *from = c->dbg.left;
        *to = c->dbg.left + c->usable;
    } else {
        *from = FREE_WORDS + (c->usable >= FREE_CALLER_MIN ? sizeof(void *) : 0);
        *to = c->usable;
    }
    return *from < *to;
}

/* Where a free object of c keeps its last free caller, or NULL. */
static const void **free_caller_slot(const struct kmm_cache *c, uintptr_t obj)
{
    if (c->dbg.tail)
        return &trailer(c, obj)->free_caller;
    if (!c->ctor && c->usable >= FREE_CALLER_MIN)
        return (const void **)(obj + FREE_WORDS);
    return NULL;
}

static const void *free_caller_of(const struct kmm_cache *c, uintptr_t obj)
{
    const void **slot = free_caller_slot(c, obj);
    return slot ? *slot : NULL;
}

/* Fills free object obj of c, recording who freed it (NULL: unknown). */
static void poison(const struct kmm_cache *c, uintptr_t obj, const void *caller)
{
    uint32_t from, to;
    if (!poison_span(c, &from, &to))
        return;
    const void **fc = free_caller_slot(c, obj);
    if (fc)
        *fc = caller;
    heap_debug_fill(obj + from, KMM_HEAP_POISON_BYTE, to - from);
}

void heap_debug_poison_locked(const struct kmm_cache *c, uintptr_t obj)
{
    poison(c, obj, NULL);
}

void heap_debug_slab_added_locked(const struct kmm_cache *c, const struct slab *s)
{
    /* A new slab: every object is free. */
    for (uint32_t i = 0; i < c->objects; i++)
        poison(c, s->base + (uintptr_t)i * c->size, NULL);
}

/* The offset of the first damaged poison byte of free object obj, or -1. */
static int64_t poison_damage(const struct kmm_cache *c, uintptr_t obj)
{
    uint32_t from, to;
    if (!poison_span(c, &from, &to))
        return -1;
    int64_t bad = heap_debug_differs(obj + from, KMM_HEAP_POISON_BYTE, to - from);
    return bad < 0 ? -1 : bad + from - c->dbg.left;
}

/* Every free object on c's slabs, filled. Lock held. */
static void poison_free_lists_locked(const struct kmm_cache *c)
{
    for (unsigned l = 0; l < SLAB_LISTS; l++) {
        for (const struct slab *s = c->lists[l]; s; s = s->next) {
            uint32_t n = 0;
            /* The list's links are encoded as slab.c writes them. */
            for (uintptr_t obj = s->free; obj && n < c->objects; n++) {
                const uintptr_t *w = heap_words(c, obj);
                uintptr_t next = w[0] ^ c->secret ^ (uintptr_t)w;
                poison(c, obj, NULL);
                obj = next;
            }
        }
    }
}

/* --- reports ---------------------------------------------------------------------------- */

void heap_debug_found(struct kmm *k, enum kmm_misuse what, uintptr_t addr, const void *caller,
                      const char *fmt, ...)
{
    char text[192];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    struct heap_debug *d = &k->heap.debug;
    atomic_fetch_add_explicit(what == KMM_MISUSE_OVERRUN ? &d->overruns : &d->use_after_free, 1,
                              memory_order_relaxed);
    heap_debug_event(k, NULL, KMM_HEAP_EVENT_BAD, addr, what, caller);
    kmm_misuse(k, KMM_LAYER_HEAP, what, KMM_OK, caller, "%s", text);
}

/* Reports damaged poison in object obj of c (found by `how`). */
static void report_poison(struct kmm *k, const struct kmm_cache *c, uintptr_t obj, int64_t off,
                          const void *freed_by, const char *how, const void *caller)
{
    uintptr_t p = obj + c->dbg.left;
    heap_debug_found(k, KMM_MISUSE_USE_AFTER_FREE, p, caller,
                     "heap: %s: object %p of cache %s was written after it was freed (byte %lld "
                     "is 0x%02x, not the poison); freed by %p",
                     how, (void *)p, c->name, (long long)off, ((const uint8_t *)p)[off], freed_by);
}

/* Checks the red zones of allocated object obj of c (asked size bytes);
 * reports an overrun against fn's caller. */
static void check_redzones(struct kmm *k, const struct kmm_cache *c, uintptr_t obj,
                           const struct heap_trailer *t, const char *fn, const void *caller)
{
    uintptr_t p = obj + c->dbg.left;
    int64_t before = heap_debug_differs(obj, KMM_HEAP_REDZONE_BYTE, c->dbg.left);
    int64_t after =
        heap_debug_differs(p + t->size, KMM_HEAP_REDZONE_BYTE, c->dbg.tail - c->dbg.left - t->size);
    uint64_t ahead = c->dbg.left - (uint64_t)before, at = t->size + (uint64_t)after;
    if (before >= 0)
        heap_debug_found(k, KMM_MISUSE_OVERRUN, p, caller,
                         "%s(%p): cache %s: written %llu bytes before the object (its red zone); "
                         "allocated by %p",
                         fn, (void *)p, c->name, (unsigned long long)ahead, t->alloc_caller);
    if (after >= 0)
        heap_debug_found(k, KMM_MISUSE_OVERRUN, p, caller,
                         "%s(%p): cache %s: written past the end of its %u bytes (offset %llu, "
                         "its red zone); allocated by %p",
                         fn, (void *)p, c->name, t->size, (unsigned long long)at, t->alloc_caller);
}

/* --- the debug layout -------------------------------------------------------------------- */

/* Switches c to the debug layout. c holds no slab; its lock held (or c not
 * published yet). */
static void layout_debug(struct kmm_cache *c)
{
    struct heap_cache_debug *d = &c->dbg;
    d->plain_size = c->size;
    d->plain_fp_off = c->fp_off;
    d->plain_order = c->order;
    uint32_t unit = d->align < KMM_HEAP_MIN_ALIGN ? KMM_HEAP_MIN_ALIGN : d->align;
    uint32_t left = unit; /* the object keeps its alignment */
    uint32_t tail = (uint32_t)kmm_align_up(left + c->usable + KMM_HEAP_REDZONE_MIN, 16);
    uint32_t end =
        left + PROBE_BYTES > KMM_HEAP_DEBUG_TRAILER ? left + PROBE_BYTES : KMM_HEAP_DEBUG_TRAILER;
    uint32_t stride = (uint32_t)kmm_align_up(tail + end, unit);
    c->fp_off = tail + (uint32_t) __builtin_offsetof(struct heap_trailer, words);
    heap_layout_set(c, stride, heap_choose_order(stride, 1));
    d->left = left;
    d->tail = tail;
}

/* Back to the plain layout. As layout_debug. */
static void layout_plain(struct kmm_cache *c)
{
    struct heap_cache_debug *d = &c->dbg;
    c->fp_off = d->plain_fp_off;
    heap_layout_set(c, d->plain_size, d->plain_order);
    d->left = 0;
    d->tail = 0;
}

/* --- switching ------------------------------------------------------------------------- */

static void switch_lock(struct kmm *k)
{
    while (atomic_exchange_explicit(&k->heap.debug.switching, true, memory_order_acquire))
        __builtin_ia32_pause();
}

static void switch_unlock(struct kmm *k)
{
    atomic_store_explicit(&k->heap.debug.switching, false, memory_order_release);
}

struct heap_debug_mem *heap_debug_mem_get(struct kmm *k)
{
    struct heap_debug *d = &k->heap.debug;
    struct heap_debug_mem *m = __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    if (m)
        return m;
    size_t pages = (sizeof(*m) + PAGE - 1) / PAGE;
    uint64_t pa = kmm_pages_alloc(k, pages, KMM_GFP_ZERO);
    if (!pa)
        return NULL;
    m = kmm_phys_to_virt(k, pa);
    m->pa = pa;
    m->pages = pages;
    __atomic_store_n(&d->mem, m, __ATOMIC_RELEASE);
    return m;
}

static bool debuggable(const struct kmm_cache *c)
{
    return c->kind == HEAP_KIND_CLASS || c->kind == HEAP_KIND_OBJECT;
}

/* The modes c should have now: its own, the heap's, sampling. */
static unsigned wanted(struct kmm *k, const struct kmm_cache *c)
{
    struct heap_debug *d = &k->heap.debug;
    unsigned w = c->dbg.own | atomic_load_explicit(&d->flags, memory_order_relaxed);
    if (atomic_load_explicit(&d->guard_every, memory_order_relaxed))
        w |= HEAP_DBG_GUARD;
    if (c->ctor)
        w &= ~KMM_HEAP_DEBUG_POISON;
    return w;
}

KMM_INIT void heap_debug_init(struct kmm *k)
{
    k->heap.debug.plain_end = KMM_HEAP_SLAB_MAX + 1;
}

/* Sets plain_end: 0 while the heap's modes or sampling are on, or a size
 * class is debugged. Switch flag held. */
static void update_plain_end(struct kmm *k)
{
    struct heap_debug *d = &k->heap.debug;
    bool on = atomic_load_explicit(&d->flags, memory_order_relaxed) ||
              atomic_load_explicit(&d->guard_every, memory_order_relaxed);
    for (unsigned i = 0; !on && i < HEAP_CLASSES; i++) {
        const struct kmm_cache *c = __atomic_load_n(&k->heap.classes[i], __ATOMIC_ACQUIRE);
        on = c && heap_debugged(c);
    }
    __atomic_store_n(&d->plain_end, on ? 0 : KMM_HEAP_SLAB_MAX + 1, __ATOMIC_RELAXED);
}

/* Takes c's stacks and depot away (bounds 0) or gives them back. */
static void set_stacks(struct kmm_cache *c, bool on)
{
    __atomic_store_n(&c->depot_max, on ? c->dbg.depot_max : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->limit, on ? c->dbg.limit : 0, __ATOMIC_RELAXED);
}

void heap_debug_cache_init(struct kmm *k, struct kmm_cache *c, size_t align)
{
    struct heap_cache_debug *d = &c->dbg;
    /* A size class is aligned to the largest power of two dividing its
     * size, up to the page (kmm/heap.h); an object cache to what it asked. */
    uint32_t lowbit = c->size & (0u - c->size);
    d->align = c->kind == HEAP_KIND_CLASS   ? (lowbit < PAGE ? lowbit : (uint32_t)PAGE)
               : align < KMM_HEAP_MIN_ALIGN ? (uint32_t)KMM_HEAP_MIN_ALIGN
                                            : (uint32_t)align;
    d->limit = c->limit;
    d->depot_max = c->depot_max;
    if (!debuggable(c))
        return;
    unsigned want = wanted(k, c);
    if (!want)
        return;
    /* Nobody sees c yet: it takes everything at once, its layout too. */
    if (want & HEAP_DBG_LAYOUT_MODES) {
        layout_debug(c);
        want |= HEAP_DBG_LAYOUT;
    }
    set_stacks(c, false);
    c->dbg.flags = want;
}

/* Empties c's objects that are not allocated back into its slabs: this
 * CPU's stack, the depot, and (all: true) its objects in the quarantine.
 * No lock held. */
static void quarantine_flush(struct kmm *k, struct kmm_cache *c);
static void empty_cache(struct kmm *k, struct kmm_cache *c, bool all)
{
    kmm_preempt_disable();
    heap_drain(k, c, heap_this_cpu(c));
    kmm_preempt_enable();
    heap_depot_drain(k, c);
    if (all)
        quarantine_flush(k, c);
}

/* Whether c holds nothing at all: no object out, no slab. Lock held. */
static bool cache_empty_locked(const struct kmm_cache *c)
{
    return c->total_inuse == 0 && !c->lists[SLAB_PARTIAL] && !c->lists[SLAB_FULL] &&
           !c->lists[SLAB_EMPTY];
}

/*
 * Gives c the modes it should have (wanted). Its layout changes only if it
 * is empty; otherwise, strict: KMM_EBUSY with its modes as they were;
 * not strict: it keeps its layout and takes the rest. Returns KMM_OK, or
 * KMM_EBUSY (strict), or 1 (not strict: the layout kept). Switch flag held.
 */
static int apply(struct kmm *k, struct kmm_cache *c, bool strict)
{
    struct heap_cache_debug *d = &c->dbg;
    unsigned want = wanted(k, c), old = d->flags;
    if (!want && !old)
        return KMM_OK;
    bool have = d->tail != 0, need = (want & HEAP_DBG_LAYOUT_MODES) != 0;
    bool relayout = have != need;
    /* No stack from now on: every object goes through the slabs. */
    set_stacks(c, false);
    empty_cache(k, c, relayout || !(want & KMM_HEAP_DEBUG_QUARANTINE));
    if (relayout)
        heap_release_empty(k, c);
    int result = KMM_OK;
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    if (relayout && cache_empty_locked(c)) {
        if (need)
            layout_debug(c);
        else
            layout_plain(c);
        have = need;
    } else if (relayout) {
        result = strict ? KMM_EBUSY : 1;
    }
    if (result == KMM_EBUSY) {
        kmm_unlock_irqrestore(&c->lock, s);
        if (!old)
            set_stacks(c, true);
        return result;
    }
    unsigned eff = want & ~HEAP_DBG_LAYOUT_MODES;
    if (have)
        eff |= HEAP_DBG_LAYOUT | (want & HEAP_DBG_LAYOUT_MODES);
    if ((eff & KMM_HEAP_DEBUG_POISON) && !(old & KMM_HEAP_DEBUG_POISON))
        poison_free_lists_locked(c);
    __atomic_store_n(&d->flags, eff, __ATOMIC_RELAXED);
    kmm_unlock_irqrestore(&c->lock, s);
    if (!eff)
        set_stacks(c, true);
    return result;
}

/* Re-applies the heap's modes to every cache; returns how many kept their
 * layout. Switch flag held. */
static int apply_all(struct kmm *k)
{
    int kept = 0;
    unsigned walk = heap_walk_begin(k); /* no cache is freed under the walk */
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (c && debuggable(c))
            kept += apply(k, c, false) != KMM_OK;
    }
    heap_walk_end(k, walk);
    update_plain_end(k);
    return kept;
}

/* The modes that need the debugging memory: the quarantine, the ring. */
#define MEM_MODES (KMM_HEAP_DEBUG_QUARANTINE | KMM_HEAP_DEBUG_EVENTS)

int heap_debug_cache_own(struct kmm *k, struct kmm_cache *c, unsigned flags)
{
    switch_lock(k);
    int err = KMM_OK;
    if ((flags & MEM_MODES) && !heap_debug_mem_get(k)) {
        err = KMM_ENOMEM;
    } else {
        unsigned old = c->dbg.own;
        c->dbg.own = flags;
        err = apply(k, c, true);
        if (err)
            c->dbg.own = old;
        update_plain_end(k);
    }
    switch_unlock(k);
    return err;
}

int kmm_cache_debug(struct kmm *k, struct kmm_cache *c, unsigned flags)
{
    const void *caller = __builtin_return_address(0);
    bool live = heap_cache_live(k, c);
    if (!live || !debuggable(c) || (flags & ~KMM_HEAP_DEBUG_ALL))
        return heap_misuse(k,
                           !c                        ? KMM_MISUSE_BAD_ARG
                           : !live || !debuggable(c) ? KMM_MISUSE_BAD_HANDLE
                                                     : KMM_MISUSE_BAD_FLAGS,
                           KMM_EINVAL, caller, "kmm_cache_debug(%p, 0x%x): %s", (const void *)c,
                           flags,
                           !c               ? "NULL cache"
                           : !live          ? "not a live cache"
                           : !debuggable(c) ? "a cache of the heap's own"
                                            : "unknown flags");
    int err = heap_debug_cache_own(k, c, flags);
    if (err == KMM_EBUSY)
        return heap_misuse(k, KMM_MISUSE_BUSY, KMM_EBUSY, caller,
                           "kmm_cache_debug(%s, 0x%x): red zones or tracking change the layout, "
                           "and the cache holds objects",
                           c->name, flags);
    return err;
}

int kmm_heap_debug(struct kmm *k, unsigned flags)
{
    if (flags & ~KMM_HEAP_DEBUG_ALL)
        return heap_misuse(k, KMM_MISUSE_BAD_FLAGS, KMM_EINVAL, __builtin_return_address(0),
                           "kmm_heap_debug(0x%x): unknown flags", flags);
    switch_lock(k);
    int kept = KMM_ENOMEM;
    if (!(flags & MEM_MODES) || heap_debug_mem_get(k)) {
        atomic_store_explicit(&k->heap.debug.flags, flags, memory_order_relaxed);
        kept = apply_all(k);
    }
    switch_unlock(k);
    return kept;
}

int kmm_heap_guard_sample(struct kmm *k, unsigned every)
{
    struct heap_debug *d = &k->heap.debug;
    switch_lock(k);
    int err = KMM_OK;
    struct heap_debug_mem *m =
        every ? heap_debug_mem_get(k) : __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    if (every && (!m || heap_guard_map(k, m) != KMM_OK)) {
        err = KMM_ENOMEM;
    } else {
        atomic_store_explicit(&d->guard_every, every, memory_order_relaxed);
        apply_all(k);
        if (!every && m)
            heap_guard_unmap(k, m);
    }
    switch_unlock(k);
    return err;
}

/* --- the quarantine ----------------------------------------------------------------------- */

/* Objects taken out of the quarantine at one lock hold, at most. */
#define QUARANTINE_BATCH 16u

/* Takes entry i (0: the oldest) out of the ring, keeping the order of the
 * rest. Debug lock held. */
static struct heap_qentry q_take_locked(struct heap_debug_mem *m, uint32_t i)
{
    uint32_t n = KMM_HEAP_QUARANTINE_OBJECTS;
    struct heap_qentry e = m->q[(m->q_head + i) % n];
    for (uint32_t j = i; j > 0; j--) /* the older ones move up one */
        m->q[(m->q_head + j) % n] = m->q[(m->q_head + j - 1) % n];
    m->q_head = (m->q_head + 1) % n;
    m->q_count--;
    m->q_bytes -= e.bytes;
    atomic_fetch_sub_explicit(&e.cache->dbg.quarantined, 1, memory_order_relaxed);
    return e;
}

/* An object leaving the quarantine: its poison checked, back to its slab. */
static void q_leave(struct kmm *k, const struct heap_qentry *e)
{
    int64_t bad = e->poisoned ? poison_damage(e->cache, e->obj) : -1;
    if (bad >= 0)
        report_poison(k, e->cache, e->obj, bad, e->caller, "leaving the quarantine", e->caller);
    heap_slab_put(k, e->cache, e->obj);
}

static void quarantine_push(struct kmm *k, struct kmm_cache *c, uintptr_t obj, const void *caller,
                            bool poisoned)
{
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    struct heap_qentry out[QUARANTINE_BATCH];
    struct heap_qentry in = {obj, c, caller, c->usable, poisoned};
    bool pushed = false;
    while (!pushed) {
        unsigned n = 0;
        kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
        /* The oldest leave while the newcomer would not fit. */
        while (n < QUARANTINE_BATCH && m->q_count &&
               (m->q_count == KMM_HEAP_QUARANTINE_OBJECTS ||
                m->q_bytes + in.bytes > KMM_HEAP_QUARANTINE_BYTES))
            out[n++] = q_take_locked(m, 0);
        if (m->q_count < KMM_HEAP_QUARANTINE_OBJECTS &&
            (m->q_bytes + in.bytes <= KMM_HEAP_QUARANTINE_BYTES || !m->q_count)) {
            m->q[(m->q_head + m->q_count) % KMM_HEAP_QUARANTINE_OBJECTS] = in;
            m->q_count++;
            m->q_bytes += in.bytes;
            atomic_fetch_add_explicit(&c->dbg.quarantined, 1, memory_order_relaxed);
            pushed = true;
        }
        kmm_unlock_irqrestore(&k->heap.debug.lock, s);
        for (unsigned i = 0; i < n; i++)
            q_leave(k, &out[i]);
    }
}

/* Every object of c in the quarantine back to its slab. No lock held. */
static void quarantine_flush(struct kmm *k, struct kmm_cache *c)
{
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    if (!m || !heap_debug_quarantined(c))
        return;
    for (;;) {
        struct heap_qentry out[QUARANTINE_BATCH];
        unsigned n = 0;
        kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
        for (uint32_t i = 0; i < m->q_count && n < QUARANTINE_BATCH;) {
            if (m->q[(m->q_head + i) % KMM_HEAP_QUARANTINE_OBJECTS].cache == c)
                out[n++] = q_take_locked(m, i);
            else
                i++;
        }
        kmm_unlock_irqrestore(&k->heap.debug.lock, s);
        for (unsigned i = 0; i < n; i++)
            q_leave(k, &out[i]);
        if (n < QUARANTINE_BATCH)
            return;
    }
}

size_t heap_debug_quarantine_empty(struct kmm *k)
{
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    size_t left = 0;
    if (!m)
        return 0;
    for (;;) {
        struct heap_qentry out[QUARANTINE_BATCH];
        unsigned n = 0;
        kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
        while (n < QUARANTINE_BATCH && m->q_count)
            out[n++] = q_take_locked(m, 0);
        kmm_unlock_irqrestore(&k->heap.debug.lock, s);
        for (unsigned i = 0; i < n; i++)
            q_leave(k, &out[i]);
        left += n;
        if (n < QUARANTINE_BATCH)
            return left;
    }
}

uint64_t heap_debug_quiesce(struct kmm *k, struct kmm_cache *c)
{
    quarantine_flush(k, c);
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    if (m) { /* freed guarded objects forget c (it may be destroyed) */
        kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
        for (unsigned i = 0; i < KMM_HEAP_GUARD_SLOTS; i++)
            if (m->slot[i].state != GUARD_LIVE && m->slot[i].cache == c)
                m->slot[i].cache = NULL;
        kmm_unlock_irqrestore(&k->heap.debug.lock, s);
    }
    return atomic_load_explicit(&c->dbg.guarded, memory_order_relaxed);
}

/* --- the checking paths ------------------------------------------------------------------ */

/* Counts an allocation or a free of c on this CPU, as its stack would. */
static void count_call(struct kmm_cache *c, bool alloc)
{
    kmm_preempt_disable();
    kmm_irqstate_t s = kmm_irq_save();
    struct heap_cpu *hc = heap_this_cpu(c);
    if (alloc)
        hc->allocs++;
    else
        hc->frees++;
    kmm_irq_restore(s);
    kmm_preempt_enable();
}

void *heap_debug_alloc(struct kmm *k, struct kmm_cache *c, size_t size, kmm_gfp_t flags,
                       const void *caller)
{
    struct heap_cache_debug *d = &c->dbg;
    unsigned f = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
    if ((f & HEAP_DBG_GUARD) && heap_guard_turn(k, c, size)) {
        void *p = heap_guard_alloc(k, c, size, flags, caller);
        if (p)
            return p;
    }
    bool poisoned = false;
    uintptr_t obj = heap_slab_get(k, c, flags, &poisoned);
    if (!obj)
        return NULL;
    uintptr_t p = obj + d->left;
    int64_t bad = poisoned ? poison_damage(c, obj) : -1;
    if (bad >= 0)
        report_poison(k, c, obj, bad, free_caller_of(c, obj), "allocation", caller);
    size_t bytes = c->usable;
    if (d->tail) {
        struct heap_trailer *t = trailer(c, obj);
        bytes = size < c->usable ? size : c->usable;
        heap_debug_fill(obj, KMM_HEAP_REDZONE_BYTE, d->left);
        heap_debug_fill(p + bytes, KMM_HEAP_REDZONE_BYTE, d->tail - d->left - bytes);
        t->alloc_caller = caller;
        t->size = (uint32_t)bytes;
        t->listed = 0;
        if (f & KMM_HEAP_DEBUG_TRACK) {
            kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
            t->gen = atomic_load_explicit(&k->heap.debug.generation, memory_order_relaxed);
            heap_track_add_locked(c, obj);
            kmm_unlock_irqrestore(&c->lock, s);
        }
    }
    if (flags & KMM_GFP_ZERO)
        __builtin_memset((void *)p, 0, bytes);
    count_call(c, true);
    if (f & KMM_HEAP_DEBUG_EVENTS)
        heap_debug_event(k, c->name, KMM_HEAP_EVENT_ALLOC, p, size, caller);
    return (void *)p;
}

int heap_debug_free(struct kmm *k, struct kmm_cache *c, uintptr_t p, const char *fn,
                    const void *caller)
{
    struct heap_cache_debug *d = &c->dbg;
    uintptr_t obj = p;
    if (d->tail) { /* the caller's pointer is left bytes into the slot */
        struct heap_ref ref;
        uint64_t bytes;
        if (heap_debug_find(k, p, &ref, &bytes) != HEAP_FOUND || ref.cache != c)
            return heap_misuse(k, KMM_MISUSE_NOT_BLOCK, KMM_EINVAL, caller,
                               "%s(%p): inside a heap block, not at its start (cache %s, in "
                               "the debug layout)",
                               fn, (void *)p, c->name);
        obj = p - d->left;
    }
    unsigned f = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
    /* Judged and marked free in one hold of the lock: of two frees, one
     * wins. */
    kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
    bool again = heap_tag_get(c, obj) == heap_tag(c, obj);
    struct heap_trailer *t = d->tail ? trailer(c, obj) : NULL;
    if (!again) {
        heap_tag_set(c, obj, heap_tag(c, obj));
        if (t && t->listed)
            heap_track_del_locked(c, obj);
    }
    kmm_unlock_irqrestore(&c->lock, s);
    if (again) {
        heap_debug_event(k, c->name, KMM_HEAP_EVENT_BAD, p, KMM_MISUSE_DOUBLE_FREE, caller);
        return heap_misuse(k, KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE, caller,
                           "%s(%p): already free (cache %s), freed before by %p", fn, (void *)p,
                           c->name, free_caller_of(c, obj));
    }
    if (t && (f & KMM_HEAP_DEBUG_REDZONE))
        check_redzones(k, c, obj, t, fn, caller);
    uint64_t size = t ? t->size : c->usable;
    if (t)
        t->free_caller = caller;
    bool poisoned = f & KMM_HEAP_DEBUG_POISON;
    if (poisoned)
        poison(c, obj, caller);
    count_call(c, false);
    if (f & KMM_HEAP_DEBUG_EVENTS)
        heap_debug_event(k, c->name, KMM_HEAP_EVENT_FREE, p, size, caller);
    if (f & KMM_HEAP_DEBUG_QUARANTINE)
        quarantine_push(k, c, obj, caller, poisoned);
    else
        heap_slab_put(k, c, obj);
    return KMM_OK;
}

enum heap_bad heap_debug_find(struct kmm *k, uintptr_t p, struct heap_ref *ref, uint64_t *bytes)
{
    uint64_t pa = (uint64_t)(p - k->direct_map);
    struct pmm_slab_ref sr;
    if (!pmm_slab_find(k, pa, &sr) || sr.owner >= HEAP_ID_RECORDS) /* not a caller's cache */
        return HEAP_FOREIGN;
    struct kmm_cache *c = __atomic_load_n(&k->heap.caches[sr.owner], __ATOMIC_ACQUIRE);
    if (!c)
        return HEAP_FOREIGN;
    /* c has a slab here, so its layout is not changing (it is not empty). */
    uint64_t off = pa - sr.pa, left = c->dbg.left;
    if (!c->dbg.tail || off < left || (off - left) % c->size ||
        (off - left) / c->size >= c->objects)
        return HEAP_INTERIOR;
    uintptr_t obj = p - (uintptr_t)left;
    *ref = (struct heap_ref){c, sr.pa, sr.order};
    bool free = heap_tag_get(c, obj) == heap_tag(c, obj);
    *bytes = free ? c->usable : trailer(c, obj)->size;
    return HEAP_FOUND;
}

void *heap_debug_alloc_size(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller)
{
    struct kmm_cache *c = heap_class_cache(k, heap_class_of(&k->heap, size), flags);
    if (!c) {
        atomic_fetch_add_explicit(&k->heap.failed, 1, memory_order_relaxed);
        return NULL;
    }
    if (heap_debugged(c))
        return heap_debug_alloc(k, c, size, flags, caller);
    /* Another class is debugged, not this one: the plain way. */
    uintptr_t p = heap_pop(c);
    if (!p && !(p = heap_alloc_slow(k, c, flags))) {
        atomic_fetch_add_explicit(&k->heap.failed, 1, memory_order_relaxed);
        return NULL;
    }
    if (flags & KMM_GFP_ZERO)
        __builtin_memset((void *)p, 0, c->usable);
    return (void *)p;
}

/* --- kmm_check ---------------------------------------------------------------------------- */

void heap_debug_check_cache_locked(struct kmm *k, const struct kmm_cache *c,
                                   struct kmm_check_result *r)
{
    (void)k;
    const struct heap_cache_debug *d = &c->dbg;
    uint64_t listed = 0;
    for (unsigned l = 0; l < SLAB_LISTS; l++) {
        for (const struct slab *s = c->lists[l]; s; s = s->next) {
            /* Free objects on the list: their poison. */
            uint32_t n = 0;
            for (uintptr_t obj = s->free;
                 (d->flags & KMM_HEAP_DEBUG_POISON) && obj && n < c->objects; n++) {
                const uintptr_t *w = heap_words(c, obj);
                int64_t bad = poison_damage(c, obj);
                uint64_t p = obj + d->left;
                if (bad >= 0)
                    kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                      "heap: cache %s: free object 0x%llx was written after it "
                                      "was freed (byte %lld); freed by %p",
                                      c->name, (unsigned long long)p, (long long)bad,
                                      free_caller_of(c, obj));
                obj = w[0] ^ c->secret ^ (uintptr_t)w;
            }
            /* Allocated objects (no free tag): their red zones. */
            for (uint32_t i = 0; d->tail && (d->flags & KMM_HEAP_DEBUG_REDZONE) && i < c->objects;
                 i++) {
                uintptr_t obj = s->base + (uintptr_t)i * c->size;
                const struct heap_trailer *t = trailer(c, obj);
                if (heap_tag_get(c, obj) == heap_tag(c, obj) || t->size > c->usable)
                    continue;
                uintptr_t p = obj + d->left;
                if (heap_debug_differs(obj, KMM_HEAP_REDZONE_BYTE, d->left) >= 0 ||
                    heap_debug_differs(p + t->size, KMM_HEAP_REDZONE_BYTE,
                                       d->tail - d->left - t->size) >= 0)
                    kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                      "heap: cache %s: object 0x%llx (%u bytes, allocated by "
                                      "%p): a red zone is overwritten",
                                      c->name, (unsigned long long)p, t->size, t->alloc_caller);
            }
        }
    }
    /* The live list: allocated objects of c, in generation order. */
    uint64_t gen = 0;
    for (uintptr_t obj = d->live_head; obj && listed <= d->live; listed++) {
        const struct heap_trailer *t = trailer(c, obj);
        if (!t->listed || t->gen < gen || heap_tag_get(c, obj) == heap_tag(c, obj)) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: cache %s: live list entry 0x%llx is no live object", c->name,
                              (unsigned long long)obj);
            return;
        }
        gen = t->gen;
        obj = t->next;
    }
    if (listed != d->live)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: cache %s: the live list holds %llu objects, the count %llu",
                          c->name, (unsigned long long)listed, (unsigned long long)d->live);
}

void heap_debug_check(struct kmm *k, struct kmm_check_result *r)
{
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    if (!m)
        return;
    kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < m->q_count; i++) {
        const struct heap_qentry *e = &m->q[(m->q_head + i) % KMM_HEAP_QUARANTINE_OBJECTS];
        bytes += e->bytes;
        int64_t bad = e->poisoned ? poison_damage(e->cache, e->obj) : -1;
        if (heap_tag_get(e->cache, e->obj) != heap_tag(e->cache, e->obj))
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: quarantined object 0x%llx of cache %s lost its free tag",
                              (unsigned long long)e->obj, e->cache->name);
        else if (bad >= 0)
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: quarantined object 0x%llx of cache %s was written after it "
                              "was freed (byte %lld); freed by %p",
                              (unsigned long long)(uint64_t)(e->obj + e->cache->dbg.left),
                              e->cache->name, (long long)bad, e->caller);
    }
    if (bytes != m->q_bytes)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "heap: the quarantine holds %llu bytes, the count %llu",
                          (unsigned long long)bytes, (unsigned long long)m->q_bytes);
    heap_guard_check_locked(k, m, r);
    kmm_unlock_irqrestore(&k->heap.debug.lock, s);
}
