/*
 * events.c - the page allocator's events (kmm/events.h, KMM_EVENTS_PAGE):
 * the switch and the recorder the full paths call.
 *
 * Why the caches are bypassed while events are recorded: the inline paths
 * of kmm_page_alloc and kmm_page_free (a page from or to this CPU's cache)
 * are the allocator's hot path, and a test there would cost every call. So
 * they stay as they are, and the switch raises every CPU's drain flag and
 * keeps it raised (pcp.c, as page poisoning does): the inline paths refuse,
 * every call reaches page_alloc or page_free (buddy.c), and only those test
 * the flag.
 */
#include "internal.h"

#include "pmm/pmm.h"

void pmm_events_switch(struct kmm *k, bool on)
{
    struct kmm_pmm *pm = &k->pmm;
    atomic_store_explicit(&pm->events, on, memory_order_relaxed);
    /* Every CPU empties its caches at its next call, and keeps its flag
     * raised while events are recorded (pcp.c). Off: a CPU lowers it at its
     * next call. */
    if (on)
        for (unsigned c = 0; c < pm->cpu_count; c++)
            atomic_store_explicit(&pm->pcp[c].drain, 1, memory_order_relaxed);
}

__attribute__((cold)) void pmm_event(struct kmm *k, unsigned op, uint64_t pa, unsigned order,
                                     uint64_t pages, const void *caller)
{
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pa >> KMM_PAGE_SHIFT);
    struct kmm_event e = {
        .addr = pa,
        .size = pages << KMM_PAGE_SHIFT,
        .caller = caller,
        .op = (uint16_t)op,
        .order = (uint8_t)order,
        .zone = f ? frame_meta_get(f).zone : KMM_EVENT_NONE, /* fixed for a frame's life */
    };
    kmm_event_record(k, &e);
}
