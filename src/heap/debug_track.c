/*
 * debug_track.c - allocation tracking (KMM_HEAP_DEBUG_TRACK): each tracking
 * cache's live list, generations and the leak report by call site; the
 * ring of recent events; the debugging figures and the report's section.
 *
 * The leak report needs no scan: a tracking cache links its live objects
 * through their trailers in allocation order (heap/debug.h), each stamped
 * with the generation it was allocated in, read under the cache's lock so
 * that the order holds. The report walks each list from the newest back to
 * the first object older than the mark: O(objects since the mark).
 */
#include "heap/debug.h"

#include <kmm/fmt.h>
#include <kmm/heap.h>

/* Call sites a leak report tells apart; the rest are summed. */
#define LEAK_SITES    64u
/* Events the report shows. */
#define REPORT_EVENTS 8u

static struct heap_trailer *trailer(const struct kmm_cache *c, uintptr_t obj)
{
    return (struct heap_trailer *)(obj + c->dbg.tail);
}

/* --- the live lists ------------------------------------------------------------------ */

void heap_track_add_locked(struct kmm_cache *c, uintptr_t obj)
{
    struct heap_cache_debug *d = &c->dbg;
    struct heap_trailer *t = trailer(c, obj);
    t->prev = d->live_tail;
    t->next = 0;
    if (d->live_tail)
        trailer(c, d->live_tail)->next = obj;
    else
        d->live_head = obj;
    d->live_tail = obj;
    t->listed = 1;
    d->live++;
}

void heap_track_del_locked(struct kmm_cache *c, uintptr_t obj)
{
    struct heap_cache_debug *d = &c->dbg;
    struct heap_trailer *t = trailer(c, obj);
    if (!t->listed)
        return;
    if (t->prev)
        trailer(c, t->prev)->next = t->next;
    else
        d->live_head = t->next;
    if (t->next)
        trailer(c, t->next)->prev = t->prev;
    else
        d->live_tail = t->prev;
    t->listed = 0;
    d->live--;
}

uint64_t kmm_heap_mark(struct kmm *k)
{
    return atomic_fetch_add_explicit(&k->heap.debug.generation, 1, memory_order_relaxed) + 1;
}

/* --- leaks by call site ----------------------------------------------------------------- */

struct site_table {
    struct kmm_heap_site site[LEAK_SITES + 1]; /* the last: the sites beyond */
    size_t n;
    bool other;
};

static void site_add(void *ctx, const void *caller, uint64_t size)
{
    struct site_table *st = ctx;
    size_t i = 0;
    while (i < st->n && st->site[i].caller != caller)
        i++;
    if (i == st->n && st->n < LEAK_SITES) {
        st->site[st->n++] = (struct kmm_heap_site){caller, 0, 0};
    } else if (i == st->n) {
        i = LEAK_SITES;
        st->other = true;
    }
    st->site[i].objects++;
    st->site[i].bytes += size;
}

size_t kmm_heap_leak_sites(struct kmm *k, uint64_t since, struct kmm_heap_site *out, size_t max)
{
    struct site_table st;
    __builtin_memset(&st, 0, sizeof(st));
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (!c || !c->dbg.tail)
            continue;
        kmm_irqstate_t s = kmm_lock_irqsave(&c->lock);
        for (uintptr_t obj = c->dbg.live_tail; obj;) {
            const struct heap_trailer *t = trailer(c, obj);
            if (t->gen < since)
                break;
            site_add(&st, t->alloc_caller, t->size);
            obj = t->prev;
        }
        kmm_unlock_irqrestore(&c->lock, s);
    }
    heap_walk_end(k, walk);
    heap_guard_leaks(k, since, site_add, &st);
    if (st.other)
        st.site[st.n++] = st.site[LEAK_SITES];
    /* Most bytes first (insertion sort: a few dozen entries). */
    for (size_t i = 1; i < st.n; i++) {
        struct kmm_heap_site v = st.site[i];
        size_t j = i;
        for (; j > 0 && st.site[j - 1].bytes < v.bytes; j--)
            st.site[j] = st.site[j - 1];
        st.site[j] = v;
    }
    for (size_t i = 0; i < st.n && i < max; i++)
        out[i] = st.site[i];
    return st.n;
}

#define sink_printf kmm_sink_printf

uint64_t kmm_heap_leaks(struct kmm *k, uint64_t since, const struct kmm_sink *sink)
{
    struct kmm_heap_site site[LEAK_SITES + 1];
    size_t n = kmm_heap_leak_sites(k, since, site, LEAK_SITES + 1);
    uint64_t objects = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        objects += site[i].objects;
        bytes += site[i].bytes;
    }
    sink_printf(
        sink, "Heap leaks since generation %llu: %llu objects, %llu bytes, %zu call sites\n",
        (unsigned long long)since, (unsigned long long)objects, (unsigned long long)bytes, n);
    for (size_t i = 0; i < n; i++) {
        if (site[i].caller)
            sink_printf(sink, "  %p %10llu objects %12llu bytes\n", site[i].caller,
                        (unsigned long long)site[i].objects, (unsigned long long)site[i].bytes);
        else
            sink_printf(sink, "  (other sites) %10llu objects %12llu bytes\n",
                        (unsigned long long)site[i].objects, (unsigned long long)site[i].bytes);
    }
    return objects;
}

/* --- the event ring ---------------------------------------------------------------------- */

/* The instance ring's op for a heap event's. */
static const uint16_t ring_op[] = {
    [KMM_HEAP_EVENT_ALLOC] = KMM_EVENT_HEAP_ALLOC,
    [KMM_HEAP_EVENT_FREE] = KMM_EVENT_HEAP_FREE,
    [KMM_HEAP_EVENT_BAD] = KMM_EVENT_HEAP_BAD,
};

/* The event in the instance's ring (lib/events.h). */
static void ring_event(struct kmm *k, const char *cache, unsigned op, uintptr_t addr, uint64_t size,
                       const void *caller)
{
    struct kmm_event e = {
        .addr = (uint64_t)addr,
        .size = size,
        .caller = caller,
        .op = op < sizeof(ring_op) / sizeof(ring_op[0]) ? ring_op[op] : 0,
        .order = KMM_EVENT_NONE,
        .zone = KMM_EVENT_NONE,
    };
    for (size_t i = 0; cache && cache[i] && i + 1 < sizeof(e.cache); i++)
        e.cache[i] = cache[i];
    kmm_event_record(k, &e);
}

void heap_debug_event(struct kmm *k, const char *cache, unsigned op, uintptr_t addr, uint64_t size,
                      const void *caller)
{
    if (kmm_events_on(&k->events, KMM_EVENTS_HEAP))
        ring_event(k, cache, op, addr, size, caller);
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    if (!m)
        return;
    kmm_preempt_disable();
    unsigned cpu = kmm_port_cpu_id();
    kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
    uint64_t seq = ++m->ev_seq;
    m->ev[(seq - 1) % KMM_HEAP_EVENTS] =
        (struct kmm_heap_event){seq, (uint64_t)addr, size, caller, op, cpu};
    kmm_unlock_irqrestore(&k->heap.debug.lock, s);
    kmm_preempt_enable();
}

size_t kmm_heap_events(struct kmm *k, struct kmm_heap_event *out, size_t max)
{
    struct heap_debug_mem *m = __atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE);
    if (!m || !out)
        return 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&k->heap.debug.lock);
    uint64_t seq = m->ev_seq;
    size_t n = 0;
    while (n < max && n < KMM_HEAP_EVENTS && n < seq)
        n++;
    for (size_t i = 0; i < n; i++)
        out[i] = m->ev[(seq - n + i) % KMM_HEAP_EVENTS];
    kmm_unlock_irqrestore(&k->heap.debug.lock, s);
    return n;
}

/* --- figures ----------------------------------------------------------------------------- */

void kmm_heap_debug_stats(struct kmm *k, struct kmm_heap_debug_stats *out)
{
    struct heap_debug *d = &k->heap.debug;
    *out = (struct kmm_heap_debug_stats){
        .flags = atomic_load_explicit(&d->flags, memory_order_relaxed),
        .guard_every = atomic_load_explicit(&d->guard_every, memory_order_relaxed),
        .generation = atomic_load_explicit(&d->generation, memory_order_relaxed),
        .overruns = atomic_load_explicit(&d->overruns, memory_order_relaxed),
        .use_after_free = atomic_load_explicit(&d->use_after_free, memory_order_relaxed),
    };
    unsigned walk = heap_walk_begin(k);
    for (unsigned id = 1; id < KMM_HEAP_CACHES; id++) {
        const struct kmm_cache *c = __atomic_load_n(&k->heap.caches[id], __ATOMIC_ACQUIRE);
        if (!c || !__atomic_load_n(&c->dbg.flags, __ATOMIC_RELAXED))
            continue;
        out->debug_caches++;
        out->tracked += __atomic_load_n(&c->dbg.live, __ATOMIC_RELAXED);
    }
    heap_walk_end(k, walk);
    struct heap_debug_mem *m = __atomic_load_n(&d->mem, __ATOMIC_ACQUIRE);
    if (!m)
        return;
    kmm_irqstate_t s = kmm_lock_irqsave(&d->lock);
    out->quarantined = m->q_count;
    out->quarantine_bytes = m->q_bytes;
    out->guarded_live = m->guard_live;
    out->guarded_allocs = m->guard_allocs;
    out->guard_slots = m->guard_va ? KMM_HEAP_GUARD_SLOTS : 0;
    out->events = m->ev_seq;
    kmm_unlock_irqrestore(&d->lock, s);
}

static const char *const op_names[] = {"?", "alloc", "free", "BAD"};

void heap_debug_report_section(struct kmm *k, const struct kmm_sink *s)
{
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    if (!__atomic_load_n(&k->heap.debug.mem, __ATOMIC_ACQUIRE) && !ds.debug_caches && !ds.flags)
        return; /* never switched on */
    static const char *const mode_names[] = {"redzone", "poison", "quarantine", "track", "events"};
    char modes[64] = "none";
    size_t at = 0;
    for (unsigned i = 0; i < 5; i++)
        if (ds.flags & (KMM_HEAP_DEBUG_REDZONE << i))
            at +=
                kmm_snprintf(modes + at, sizeof(modes) - at, "%s%s", at ? "," : "", mode_names[i]);
    sink_printf(s,
                "Heap debugging: heap-wide modes %s, %u caches debugged, guard pages every %u "
                "(%llu live in %llu slots, %llu sampled), quarantine %llu objects (%llu bytes), "
                "%llu tracked, %llu overruns, %llu writes after free\n",
                modes, ds.debug_caches, ds.guard_every, (unsigned long long)ds.guarded_live,
                (unsigned long long)ds.guard_slots, (unsigned long long)ds.guarded_allocs,
                (unsigned long long)ds.quarantined, (unsigned long long)ds.quarantine_bytes,
                (unsigned long long)ds.tracked, (unsigned long long)ds.overruns,
                (unsigned long long)ds.use_after_free);
    struct kmm_heap_event ev[REPORT_EVENTS];
    size_t n = kmm_heap_events(k, ev, REPORT_EVENTS);
    if (n)
        sink_printf(s, "Recent heap events (%llu recorded)\n", (unsigned long long)ds.events);
    for (size_t i = 0; i < n; i++)
        sink_printf(s, "  %8llu %-5s 0x%016llx %10llu caller %p cpu %u\n",
                    (unsigned long long)ev[i].seq, op_names[ev[i].op < 4 ? ev[i].op : 0],
                    (unsigned long long)ev[i].addr, (unsigned long long)ev[i].size, ev[i].caller,
                    ev[i].cpu);
}
