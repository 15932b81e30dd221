/*
 * debug_guard.c - sampled guard pages (kmm_heap_guard_sample), KFENCE's
 * idea: every Nth allocation of a size up to a page gets a page of its
 * own, the object at its end, the next page unmapped.
 *
 * The slots are one raw kernel virtual area (kmm_kva_alloc) of
 * 2 * KMM_HEAP_GUARD_SLOTS - 1 pages, of which the even ones are mapped,
 * each to a page of its own; the odd ones, and the area's own guard page
 * after the last, stay unmapped:
 *
 *   va: | slot 0 | guard | slot 1 | guard | ... | slot 63 | guard (the area's) |
 *
 * Mapping them once, when sampling comes on, lets an allocation and a free
 * of a guarded object run in any context: a slot is taken and given back
 * under the debug lock, and the heap writes its page through the direct
 * map (never through va, which in a test machine may not be live).
 *
 * A live slot's page holds KMM_HEAP_REDZONE_BYTE around the object; a
 * freed one KMM_HEAP_POISON_BYTE until it is used again. Slots are taken
 * in turn (the search starts after the last one taken), so a freed object
 * stays poisoned for as long as possible.
 */
#include "heap/debug.h"

#include <kmm/heap.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define PAGE       KMM_PAGE_SIZE
/* A slot's stride in the area: its page and a guard page. */
#define SLOT_BYTES (2 * PAGE)
/* The area: every slot, the last one's guard page the area's own. */
#define AREA_BYTES ((2 * (uint64_t)KMM_HEAP_GUARD_SLOTS - 1) * PAGE)

/* Slot i's page, through the mapping its object is handed out at (not the
 * direct map: a machine whose kernel virtual areas do not alias the RAM,
 * as the preloadable malloc's, sees the object's bytes only there). */
static uint8_t *page_of(const struct heap_debug_mem *m, uint64_t i)
{
    return (uint8_t *)(uintptr_t)(m->guard_va + i * SLOT_BYTES);
}

bool heap_guard_turn(struct kmm *k, const struct kmm_cache *c, size_t size)
{
    struct heap_debug *d = &k->heap.debug;
    unsigned every = atomic_load_explicit(&d->guard_every, memory_order_relaxed);
    if (!every || c->ctor || size > PAGE || c->dbg.align > PAGE)
        return false;
    uint64_t n = atomic_fetch_add_explicit(&d->guard_count, 1, memory_order_relaxed) + 1;
    return n % every == 0;
}

void *heap_guard_alloc(struct kmm *k, struct kmm_cache *c, size_t size, kmm_gfp_t flags,
                       const void *caller)
{
    struct heap_debug *d = &k->heap.debug;
    struct heap_debug_mem *m = __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    if (!m)
        return NULL;
    /* The object ends where the page ends, rounded down to its alignment. */
    uint64_t span = kmm_align_up(size ? size : 1, c->dbg.align);
    uint32_t off = (uint32_t)(PAGE - span);
    kmm_irqstate_t s = kmm_lock_irqsave(&d->lock);
    unsigned i = 0, j = 0;
    for (; m->guard_va && i < KMM_HEAP_GUARD_SLOTS; i++) {
        j = (m->guard_next + i) % KMM_HEAP_GUARD_SLOTS;
        if (m->slot[j].state == GUARD_UNUSED || m->slot[j].state == GUARD_FREED)
            break;
    }
    if (!m->guard_va || i == KMM_HEAP_GUARD_SLOTS) {
        kmm_unlock_irqrestore(&d->lock, s);
        return NULL; /* every slot taken: served as usual */
    }
    struct heap_guard_slot *sl = &m->slot[j], was = *sl;
    sl->state = GUARD_LIVE;
    sl->cache = c;
    sl->off = off;
    sl->size = (uint32_t)size;
    sl->alloc_caller = caller;
    sl->free_caller = NULL;
    sl->gen = atomic_load_explicit(&d->generation, memory_order_relaxed);
    m->guard_next = (j + 1) % KMM_HEAP_GUARD_SLOTS;
    m->guard_live++;
    m->guard_allocs++;
    uint64_t va = m->guard_va + (uint64_t)j * SLOT_BYTES;
    kmm_unlock_irqrestore(&d->lock, s);

    uint8_t *page = page_of(m, j);
    if (was.state == GUARD_FREED) {
        int64_t bad = heap_debug_differs((uintptr_t)page, KMM_HEAP_POISON_BYTE, PAGE);
        if (bad >= 0)
            heap_debug_found(k, KMM_MISUSE_USE_AFTER_FREE, va + was.off, caller,
                             "heap: allocation: guarded object 0x%llx of cache %s was written "
                             "after it was freed (page offset %lld); freed by %p, allocated by %p",
                             (unsigned long long)(uint64_t)(va + was.off),
                             was.cache ? was.cache->name : "(destroyed)", (long long)bad,
                             was.free_caller, was.alloc_caller);
    }
    heap_debug_fill((uintptr_t)page, KMM_HEAP_REDZONE_BYTE, PAGE);
    if (flags & KMM_GFP_ZERO)
        __builtin_memset(page + off, 0, size);
    atomic_fetch_add_explicit(&c->dbg.guarded, 1, memory_order_relaxed);
    kmm_preempt_disable();
    kmm_irqstate_t irq = kmm_irq_save();
    heap_this_cpu(c)->allocs++;
    kmm_irq_restore(irq);
    kmm_preempt_enable();
    if (__atomic_load_n(&c->dbg.flags, __ATOMIC_RELAXED) & KMM_HEAP_DEBUG_EVENTS)
        heap_debug_event(k, c->name, KMM_HEAP_EVENT_ALLOC, va + off, size, caller);
    return (void *)(uintptr_t)(va + off);
}

/* The slot whose page p lies in, or -1. Debug lock held. */
static int slot_at(const struct heap_debug_mem *m, uintptr_t p)
{
    if (!m->guard_va || p < m->guard_va || p - m->guard_va >= AREA_BYTES)
        return -1;
    uint64_t rel = p - m->guard_va;
    return rel % SLOT_BYTES < PAGE ? (int)(rel / SLOT_BYTES) : -1;
}

bool heap_guard_find(struct kmm *k, uintptr_t p, struct kmm_cache **cache, uint64_t *bytes)
{
    struct heap_debug *d = &k->heap.debug;
    struct heap_debug_mem *m = __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    if (!m || !__atomic_load_n(&m->guard_va, __ATOMIC_RELAXED))
        return false;
    kmm_irqstate_t s = kmm_lock_irqsave(&d->lock);
    int j = slot_at(m, p);
    const struct heap_guard_slot *sl = j >= 0 ? &m->slot[j] : NULL;
    bool found = sl && sl->cache && (sl->state == GUARD_LIVE || sl->state == GUARD_FREED) &&
                 (p & (PAGE - 1)) == sl->off;
    if (found) {
        *cache = sl->cache;
        *bytes = sl->size;
    }
    kmm_unlock_irqrestore(&d->lock, s);
    return found;
}

bool heap_guard_freed(struct kmm *k, uintptr_t p)
{
    struct heap_debug *d = &k->heap.debug;
    struct heap_debug_mem *m = __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    if (!m)
        return false;
    kmm_irqstate_t s = kmm_lock_irqsave(&d->lock);
    int j = slot_at(m, p);
    bool freed = j >= 0 && m->slot[j].state != GUARD_LIVE;
    kmm_unlock_irqrestore(&d->lock, s);
    return freed;
}

int heap_guard_free(struct kmm *k, uintptr_t p, const char *fn, const void *caller)
{
    struct heap_debug *d = &k->heap.debug;
    struct heap_debug_mem *m = __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    kmm_irqstate_t s = kmm_lock_irqsave(&d->lock);
    int j = slot_at(m, p);
    struct heap_guard_slot *sl = j >= 0 ? &m->slot[j] : NULL;
    if (!sl || (p & (PAGE - 1)) != sl->off || sl->state != GUARD_LIVE) {
        bool again = sl && sl->state == GUARD_FREED && (p & (PAGE - 1)) == sl->off;
        const void *before = again ? sl->free_caller : NULL;
        kmm_unlock_irqrestore(&d->lock, s);
        if (again) {
            heap_debug_event(k, NULL, KMM_HEAP_EVENT_BAD, p, KMM_MISUSE_DOUBLE_FREE, caller);
            return heap_misuse(k, KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE, caller,
                               "%s(%p): already free (a guarded object), freed before by %p", fn,
                               (void *)p, before);
        }
        return heap_misuse(k, KMM_MISUSE_NOT_BLOCK, KMM_EINVAL, caller,
                           "%s(%p): inside a guarded heap block, not at its start", fn, (void *)p);
    }
    /* Ours from now on: no allocation takes a slot being freed. */
    sl->state = GUARD_FREEING;
    sl->free_caller = caller;
    m->guard_live--;
    struct heap_guard_slot mine = *sl;
    uint8_t *page = page_of(m, (uint64_t)j);
    kmm_unlock_irqrestore(&d->lock, s);

    struct kmm_cache *c = mine.cache;
    int64_t before = heap_debug_differs((uintptr_t)page, KMM_HEAP_REDZONE_BYTE, mine.off);
    int64_t after = heap_debug_differs((uintptr_t)page + mine.off + mine.size,
                                       KMM_HEAP_REDZONE_BYTE, PAGE - mine.off - mine.size);
    uint64_t ahead = mine.off - (uint64_t)before, at = mine.size + (uint64_t)after;
    if (before >= 0)
        heap_debug_found(k, KMM_MISUSE_OVERRUN, p, caller,
                         "%s(%p): guarded object of cache %s: written %llu bytes before it; "
                         "allocated by %p",
                         fn, (void *)p, c->name, (unsigned long long)ahead, mine.alloc_caller);
    if (after >= 0)
        heap_debug_found(k, KMM_MISUSE_OVERRUN, p, caller,
                         "%s(%p): guarded object of cache %s: written past the end of its %u "
                         "bytes (offset %llu); allocated by %p",
                         fn, (void *)p, c->name, mine.size, (unsigned long long)at,
                         mine.alloc_caller);
    heap_debug_fill((uintptr_t)page, KMM_HEAP_POISON_BYTE, PAGE);
    s = kmm_lock_irqsave(&d->lock);
    sl->state = GUARD_FREED;
    kmm_unlock_irqrestore(&d->lock, s);
    atomic_fetch_sub_explicit(&c->dbg.guarded, 1, memory_order_relaxed);
    kmm_preempt_disable();
    kmm_irqstate_t irq = kmm_irq_save();
    heap_this_cpu(c)->frees++;
    kmm_irq_restore(irq);
    kmm_preempt_enable();
    if (__atomic_load_n(&c->dbg.flags, __ATOMIC_RELAXED) & KMM_HEAP_DEBUG_EVENTS)
        heap_debug_event(k, c->name, KMM_HEAP_EVENT_FREE, p, mine.size, caller);
    return KMM_OK;
}

int heap_guard_map(struct kmm *k, struct heap_debug_mem *m)
{
    if (m->guard_va)
        return KMM_OK;
    uint64_t va;
    if (kmm_kva_alloc(k, AREA_BYTES, &va) != KMM_OK)
        return KMM_ENOMEM;
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    unsigned i = 0;
    for (; i < KMM_HEAP_GUARD_SLOTS; i++) {
        uint64_t pa = kmm_page_alloc(k, 0, 0);
        if (!pa)
            break;
        if (kmm_vm_map(ks, va + i * SLOT_BYTES, pa, PAGE,
                       KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL) != KMM_OK) {
            KMM_MUST(k->port, kmm_page_free(k, pa, 0));
            break;
        }
        m->slot[i] = (struct heap_guard_slot){.pa = pa};
    }
    if (i < KMM_HEAP_GUARD_SLOTS) { /* no memory: everything back */
        while (i-- > 0) {
            KMM_MUST(k->port, kmm_vm_unmap(ks, va + i * SLOT_BYTES, PAGE));
            KMM_MUST(k->port, kmm_page_free(k, m->slot[i].pa, 0));
            m->slot[i] = (struct heap_guard_slot){0};
        }
        KMM_MUST(k->port, kmm_kva_free(k, va));
        return KMM_ENOMEM;
    }
    kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
    m->guard_next = 0;
    __atomic_store_n(&m->guard_va, va, __ATOMIC_RELEASE);
    kmm_unlock_irqrestore(&k->heap.debug.lock, s);
    return KMM_OK;
}

void heap_guard_unmap(struct kmm *k, struct heap_debug_mem *m)
{
    kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
    uint64_t va = m->guard_va;
    bool idle = va && m->guard_live == 0;
    for (unsigned i = 0; idle && i < KMM_HEAP_GUARD_SLOTS; i++)
        idle = m->slot[i].state != GUARD_FREEING;
    if (idle)
        __atomic_store_n(&m->guard_va, 0, __ATOMIC_RELAXED);
    kmm_unlock_irqrestore(&k->heap.debug.lock, s);
    if (!idle)
        return;
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    for (unsigned i = 0; i < KMM_HEAP_GUARD_SLOTS; i++) {
        KMM_MUST(k->port, kmm_vm_unmap(ks, va + i * SLOT_BYTES, PAGE));
        KMM_MUST(k->port, kmm_page_free(k, m->slot[i].pa, 0));
        m->slot[i] = (struct heap_guard_slot){0};
    }
    KMM_MUST(k->port, kmm_kva_free(k, va));
}

void heap_guard_check_locked(struct kmm *k, struct heap_debug_mem *m, struct kmm_check_result *r)
{
    (void)k;
    for (unsigned i = 0; m->guard_va && i < KMM_HEAP_GUARD_SLOTS; i++) {
        const struct heap_guard_slot *sl = &m->slot[i];
        uintptr_t page = (uintptr_t)page_of(m, i);
        uint64_t va = m->guard_va + i * SLOT_BYTES + sl->off;
        if (sl->state == GUARD_LIVE &&
            (heap_debug_differs(page, KMM_HEAP_REDZONE_BYTE, sl->off) >= 0 ||
             heap_debug_differs(page + sl->off + sl->size, KMM_HEAP_REDZONE_BYTE,
                                PAGE - sl->off - sl->size) >= 0))
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: guarded object 0x%llx (%u bytes, allocated by %p): the bytes "
                              "around it on its page are overwritten",
                              (unsigned long long)va, sl->size, sl->alloc_caller);
        if (sl->state == GUARD_FREED && heap_debug_differs(page, KMM_HEAP_POISON_BYTE, PAGE) >= 0)
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "heap: guarded object 0x%llx was written after it was freed; freed "
                              "by %p",
                              (unsigned long long)va, sl->free_caller);
    }
}

void heap_guard_leaks(struct kmm *k, uint64_t since,
                      void (*add)(void *ctx, const void *caller, uint64_t size), void *ctx)
{
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    if (!m)
        return;
    kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
    for (unsigned i = 0; m->guard_va && i < KMM_HEAP_GUARD_SLOTS; i++)
        if (m->slot[i].state == GUARD_LIVE && m->slot[i].gen >= since)
            add(ctx, m->slot[i].alloc_caller, m->slot[i].size);
    kmm_unlock_irqrestore(&k->heap.debug.lock, s);
}
