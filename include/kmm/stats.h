/*
 * kmm/stats.h - every statistic of every layer in one call (SPEC §6).
 *
 * kmm_stats gathers what the layers' own calls give (kmm_page_stats and
 * kmm_page_node_stats, kmm_vm_stats of the kernel space and of every user
 * space, kmm_vmalloc_stats, kmm_heap_stats, kmm_heap_debug_stats,
 * kmm_misuse_stats, kmm_events_stats, kmm_kva_park_stats) into one structure, so that a debug
 * shell, a dump or a test reads the whole instance at once. Each part is
 * exactly what its layer's call fills, taken one layer after the other:
 * figures of different layers may be from slightly different moments
 * (a page the heap takes between the two reads counts in one and not yet in
 * the other); within a layer they agree as its call says.
 *
 * The structure grows at its end only. A caller sets `size` to the
 * sizeof(struct kmm_stats) it was compiled with (KMM_STATS_INIT does), and
 * the library fills that many bytes: an older caller gets the parts it knows
 * of, a newer caller's parts this library does not know stay zero.
 * Per-cache figures (one /proc/slabinfo line per cache) are not in it:
 * kmm_heap_cache_at and kmm_cache_stats list them.
 */
#ifndef KMM_STATS_H
#define KMM_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <kmm/events.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The layout's version: 2 is the one below (1 ended with misuse). */
#define KMM_STATS_VERSION 2u

/* The user spaces' figures summed (the kernel space's are apart: it owns
 * the shared kernel-half tables). */
struct kmm_user_space_stats {
    uint64_t spaces;        /* live user spaces (kmm_aspace_create'd, not destroyed) */
    struct kmm_vm_stats vm; /* their kmm_vm_stats summed, field by field (misuse:
                               the instance's count, as each space reports it) */
};

struct kmm_stats {
    uint32_t size;    /* the caller's: sizeof(struct kmm_stats) as it was compiled */
    uint32_t version; /* kmm_stats writes KMM_STATS_VERSION */
    /* The page allocator: totals, zones (summed over nodes), reclaim. */
    struct kmm_page_stats page;
    /* Each NUMA node's figures: nodes[0 .. node_count); the rest zero. */
    uint32_t node_count;
    uint32_t cpu_count; /* the instance's kmm_config.cpu_count */
    struct kmm_node_stats nodes[KMM_MAX_NODES];
    /* Page tables: the kernel space, and the user spaces summed. */
    struct kmm_vm_stats kernel_space;
    struct kmm_user_space_stats user_spaces;
    /* Kernel virtual areas. */
    struct kmm_vmalloc_stats vmalloc;
    /* The heap and its debugging modes. */
    struct kmm_heap_stats heap;
    struct kmm_heap_debug_stats heap_debug;
    /* The event ring (kmm/events.h). */
    struct kmm_events_stats events;
    /* Every rejected call, by layer and class. */
    struct kmm_misuse_stats misuse;
    /* Version 2: the window's parked areas (kmm/vmalloc.h). */
    struct kmm_kva_park_stats kva_parked;
};

/* A struct kmm_stats ready for kmm_stats: zeroed, with its size set. */
#define KMM_STATS_INIT                                                                             \
    {                                                                                              \
        .size = (uint32_t)sizeof(struct kmm_stats)                                                 \
    }

/* The smallest size kmm_stats accepts: version 1's layout. */
#define KMM_STATS_SIZE_V1                                                                          \
    ((uint32_t)(offsetof(struct kmm_stats, misuse) + sizeof(struct kmm_misuse_stats)))

/*
 * kmm_stats - fill *out with every figure above, out->size bytes of it
 * (which must be at least KMM_STATS_SIZE_V1), and set out->version.
 * Returns KMM_OK, or, with *out untouched:
 *   KMM_EINVAL  out is NULL, or out->size is below KMM_STATS_SIZE_V1
 *               (KMM_MISUSE_BAD_ARG, counted under KMM_LAYER_DIAG and
 *               logged with the caller);
 *   KMM_EINVAL  k is NULL, and KMM_ESTATE  k is not a live instance (torn
 *               down): neither counted nor logged, there being no instance.
 * Takes the locks of the calls it gathers, one at a time (each zone lock,
 * the space list lock and each user space's, the window's lock, each
 * cache's): IRQs on, not from an interrupt handler or the log hook.
 * O(nodes x zones x (orders + CPUs) + user spaces + caches). The structure
 * is about 9 KiB: keep it off a small kernel stack.
 */
int kmm_stats(struct kmm *k, struct kmm_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* KMM_STATS_H */
