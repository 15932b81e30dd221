/*
 * events.c - the ring of recent events (kmm/events.h): recording and
 * reading. Switching sources on and off is diag/events.c's, which also
 * gives the ring its memory.
 */
#include "lib/events.h"

#include "internal.h"

_Static_assert(sizeof(struct kmm_event) == 64, "an event is 64 bytes");

KMM_INIT void kmm_events_init(struct kmm_event_ring *r)
{
    atomic_init(&r->flags, 0);
    atomic_init(&r->ev, NULL);
    kmm_lock_init(&r->lock);
    r->seq = 0;
}

void kmm_event_record(struct kmm *k, struct kmm_event *e)
{
    struct kmm_event_ring *r = &k->events;
    struct kmm_event *ev = atomic_load_explicit(&r->ev, memory_order_acquire);
    if (!ev)
        return;
    /* With IRQs off under the lock the CPU cannot change: the id read
     * there is the CPU the event happened on. */
    kmm_irqstate_t s = kmm_lock_irqsave(&r->lock);
    e->cpu = (uint16_t)kmm_port_cpu_id();
    e->seq = r->seq + 1;
    __atomic_store_n(&r->seq, e->seq, __ATOMIC_RELAXED); /* kmm_events_stats reads it unlocked */
    ev[(e->seq - 1) % KMM_EVENTS_MAX] = *e;
    kmm_unlock_irqrestore(&r->lock, s);
}

size_t kmm_events(struct kmm *k, struct kmm_event *out, size_t max)
{
    struct kmm_event_ring *r = &k->events;
    struct kmm_event *ev = atomic_load_explicit(&r->ev, memory_order_acquire);
    if (!ev || !out)
        return 0;
    kmm_irqstate_t s = kmm_lock_irqsave(&r->lock);
    uint64_t seq = r->seq;
    size_t n = max;
    if (n > KMM_EVENTS_MAX)
        n = KMM_EVENTS_MAX;
    if (n > seq)
        n = (size_t)seq;
    for (size_t i = 0; i < n; i++)
        out[i] = ev[(seq - n + i) % KMM_EVENTS_MAX];
    kmm_unlock_irqrestore(&r->lock, s);
    return n;
}

void kmm_events_stats(struct kmm *k, struct kmm_events_stats *out)
{
    struct kmm_event_ring *r = &k->events;
    /* seq is written under the lock; a torn read is impossible for an
     * aligned word, and a stale one is as good as a moment earlier. */
    uint64_t seq = __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
    *out = (struct kmm_events_stats){
        .flags = atomic_load_explicit(&r->flags, memory_order_relaxed),
        .recorded = seq,
        .kept = seq < KMM_EVENTS_MAX ? seq : KMM_EVENTS_MAX,
    };
}

static const char *const op_names[KMM_EVENT_OPS] = {
    [KMM_EVENT_PAGE_ALLOC] = "page-alloc", [KMM_EVENT_PAGE_FREE] = "page-free",
    [KMM_EVENT_RUN_ALLOC] = "run-alloc",   [KMM_EVENT_RUN_FREE] = "run-free",
    [KMM_EVENT_HEAP_ALLOC] = "alloc",      [KMM_EVENT_HEAP_FREE] = "free",
    [KMM_EVENT_HEAP_BAD] = "BAD",
};

const char *kmm_event_op_name(unsigned op)
{
    return op < KMM_EVENT_OPS && op_names[op] ? op_names[op] : "?";
}
