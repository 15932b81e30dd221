/*
 * window_hosted.h - an instance on a hosted machine whose kernel virtual
 * area window is live memory (the start of the port's mirror window), for
 * the hosted thread tests of the window: vmalloc'd pages are real memory of
 * the test process and a guard page a real SIGSEGV. Hosted only.
 */
#ifndef KTEST_WINDOW_HOSTED_H
#define KTEST_WINDOW_HOSTED_H

#include <stdbool.h>
#include <stdint.h>

#include "hosted.h"

#include <kmm/kmm.h>
#include <kmm/page.h>

struct kt_window {
    struct hosted_machine *m;
    struct kmm *k;
    uint64_t base; /* the window's first address */
};

/* kt_window_up - a machine with the one RAM range *ram and an instance of
 * cpus CPUs on it whose window is the first size bytes of the mirror
 * window, this CPU's page cache drained. Returns true, or false with
 * nothing left (no machine, a window larger than the mirror, kmm_init
 * failed). */
bool kt_window_up(struct kt_window *w, const struct kmm_region *ram, uint64_t size, unsigned cpus);

/* kt_window_down - the instance and the machine gone. */
void kt_window_down(struct kt_window *w);

/* kt_window_pstats - the page figures once the parked areas (which keep
 * page tables) and this CPU's cached pages went back: what frees gave
 * back. */
struct kmm_page_stats kt_window_pstats(struct kmm *k);

#endif /* KTEST_WINDOW_HOSTED_H */
