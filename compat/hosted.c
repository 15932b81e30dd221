/*
 * hosted.c - the Boruix compat layer's hosted world (compat/world.h): the
 * regions rust_memory_init is given are backed by a simulated machine of
 * the hosted port (port/hosted/hosted.h), so a Boruix snippet runs as a
 * user-space program.
 *
 * The heap window: a kernel's is 0xFFFFFFFF90000000 + 256 MiB, which a
 * process cannot use. Hosted, the machine's mirror window (256 MiB, where
 * what the library maps is real memory of the process) plays its part, with
 * the same split: its first 32 MiB left to the caller's own mappings, the
 * rest the library's kernel virtual areas. Mappings elsewhere (Boruix's
 * fixed kernel addresses included) exist in the page tables only.
 */
#include <stdio.h>
#include <stdlib.h>

#include <kmm/kmm.h>
#include <kmm/vmalloc.h>

#include "hosted.h"
#include "world.h"

static struct hosted_machine *machine;

int kmm_boruix_world_up(const struct kmm_region *map, size_t n, uint64_t hhdm,
                        struct kmm_boruix_world *w, struct kmm_region *extra, size_t cap,
                        size_t *extra_n)
{
    (void)hhdm; /* the machine's direct map is where the process can reach it */
    (void)extra;
    (void)cap;
    (void)extra_n;
    machine = hosted_machine_from_map(map, n, KMM_KVA_DEFAULT_SIZE);
    if (!machine)
        return KMM_ENOMEM;
    uint64_t base, size;
    hosted_machine_mirror_window(machine, &base, &size);
    w->port = hosted_machine_port(machine);
    w->kva_base = base + KMM_BORUIX_FIXED_PART;
    w->kva_size = size - KMM_BORUIX_FIXED_PART;
    w->heap_base = base;
    w->heap_size = size;
    return KMM_OK;
}

/* Hosted, nothing is live: the tests read the tables themselves. */
int kmm_boruix_world_ready(struct kmm *k)
{
    (void)k;
    return KMM_OK;
}

void kmm_boruix_world_down(struct kmm_boruix_world *w)
{
    (void)w;
    hosted_machine_destroy(machine);
    machine = NULL;
}

void kmm_boruix_world_log(int level, const char *line)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    const char *name = level >= 0 && level <= KMM_LOG_DEBUG ? names[level] : "?";
    fprintf(stderr, "kmm-boruix: %s: %s\n", name, line);
}

void kmm_boruix_world_console(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
}

struct hosted_machine *kmm_boruix_hosted_machine(void)
{
    return machine;
}
