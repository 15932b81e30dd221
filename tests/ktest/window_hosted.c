/*
 * window_hosted.c - the hosted window fixture (window_hosted.h).
 */
#include "window_hosted.h"

#include <kmm/vmalloc.h>

/* The machine's mirror window: what hosted_machine_from_map maps live. */
#define MIRROR (UINT64_C(16) << 20)

bool kt_window_up(struct kt_window *w, const struct kmm_region *ram, uint64_t size, unsigned cpus)
{
    w->m = hosted_machine_from_map(ram, 1, MIRROR);
    if (!w->m)
        return false;
    uint64_t mirror;
    hosted_machine_mirror_window(w->m, &w->base, &mirror);
    struct kmm_config cfg = {.port = hosted_machine_port(w->m),
                             .regions = ram,
                             .region_count = 1,
                             .cpu_count = cpus,
                             .kva_base = w->base,
                             .kva_size = size};
    if (size > mirror || kmm_init(&cfg, &w->k) != KMM_OK) {
        hosted_machine_destroy(w->m);
        return false;
    }
    kmm_page_drain_cpu(w->k);
    return true;
}

void kt_window_down(struct kt_window *w)
{
    kmm_fini(w->k);
    hosted_machine_destroy(w->m);
}

struct kmm_page_stats kt_window_pstats(struct kmm *k)
{
    struct kmm_page_stats s;
    kmm_kva_purge(k);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &s);
    return s;
}
