/*
 * stats.c - every layer's statistics in one call (kmm/stats.h).
 *
 * Nothing here counts anything of its own: each part is the layer's own
 * call, so kmm_stats and the per-layer calls can never disagree about what
 * a figure means. Lock order: as each gathered call takes its locks, one
 * call at a time; diag_user_spaces takes the space list lock, then each
 * space's (docs/architecture.md, "Lock order": 0 -> 1).
 */
#include "internal.h"

#include "diag/diag.h"

#include <kmm/stats.h>
#include <kmm/vm.h>

void diag_user_spaces(struct kmm *k, struct kmm_user_space_stats *out)
{
    *out = (struct kmm_user_space_stats){0};
    out->vm.misuse = kmm_misuse_layer_total(k, KMM_LAYER_VM);
    kmm_irqstate_t irq = kmm_lock_irqsave(&k->vm.list_lock);
    for (struct kmm_aspace *as = k->vm.spaces; as; as = as->next) {
        struct kmm_vm_stats us;
        kmm_vm_stats(as, &us);
        out->spaces++;
        for (unsigned l = 0; l < sizeof(us.tables) / sizeof(us.tables[0]); l++)
            out->vm.tables[l] += us.tables[l];
        out->vm.mapped_pages += us.mapped_pages;
        out->vm.mapped_2m += us.mapped_2m;
        out->vm.mapped_1g += us.mapped_1g;
        out->vm.owned_pages += us.owned_pages;
        out->vm.table_bytes += us.table_bytes;
    }
    kmm_unlock_irqrestore(&k->vm.list_lock, irq);
}

/* Fills every part of version 1. */
static void gather(struct kmm *k, struct kmm_stats *s)
{
    kmm_page_stats(k, &s->page);
    s->node_count = kmm_page_node_count(k);
    s->cpu_count = k->cpu_count;
    for (unsigned n = 0; n < s->node_count; n++)
        kmm_page_node_stats(k, n, &s->nodes[n]);
    kmm_vm_stats(kmm_kernel_aspace(k), &s->kernel_space);
    diag_user_spaces(k, &s->user_spaces);
    kmm_vmalloc_stats(k, &s->vmalloc);
    kmm_heap_stats(k, &s->heap);
    kmm_heap_debug_stats(k, &s->heap_debug);
    kmm_events_stats(k, &s->events);
    kmm_misuse_stats(k, &s->misuse);
}

int kmm_stats(struct kmm *k, struct kmm_stats *out)
{
    const void *caller = __builtin_return_address(0);
    if (!k)
        return KMM_EINVAL;
    if (k->canary != KMM_INSTANCE_CANARY)
        return KMM_ESTATE;
    if (!out)
        return kmm_misuse(k, KMM_LAYER_DIAG, KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                          "kmm_stats(NULL): no structure to fill");
    uint32_t size = out->size;
    if (size < KMM_STATS_SIZE_V1)
        return kmm_misuse(k, KMM_LAYER_DIAG, KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                          "kmm_stats(%p): size %u below version 1's %u (set it to "
                          "sizeof(struct kmm_stats), KMM_STATS_INIT)",
                          (void *)out, size, KMM_STATS_SIZE_V1);
    /* Version 1's parts are all within size: filled in place (no copy of
     * 9 KiB on the stack); a later version's parts only if the caller's
     * layout has them, and a newer caller's parts beyond them stay zero. */
    __builtin_memset((char *)out + sizeof(out->size), 0, size - sizeof(out->size));
    gather(k, out);
    if (size >= offsetof(struct kmm_stats, kva_parked) + sizeof(out->kva_parked))
        kmm_kva_park_stats(k, &out->kva_parked);
    out->version = KMM_STATS_VERSION;
    return KMM_OK;
}
