/*
 * boruix_world.c - the Boruix compat layer's world in the demo kernel
 * (compat/world.h), and the adoption of the kernel's own instance
 * (contract: boruix_world.h).
 *
 * The demo kernel does not let rust_memory_init make a second instance: it
 * already runs kmm natively (takeover.c) and the Boruix interface is meant
 * to exercise that same memory the way Boruix does. So the kernel adopts
 * kernel_kmm (kmm_boruix_adopt), and Boruix's calls (the shell's memtest
 * ... memprottest) act on the instance every other command shows. The
 * world's functions below therefore only serve logging and the console;
 * kmm_boruix_world_up refuses, so a stray rust_memory_init cannot make a
 * second manager of the same RAM.
 *
 * Boruix's heap window is where Boruix has it, 0xFFFFFFFF90000000 + 256
 * MiB; its first 32 MiB are left to fixed mappings (pgtest's and
 * memprottest's pages) and the kernel's kernel virtual areas take the rest
 * (layout.h, takeover.c), as the Boruix drop-in splits it.
 */
#include <kmm/kmm.h>

#include "boruix_world.h"
#include "console.h"
#include "kernel.h"
#include "world.h"

int kmm_boruix_world_up(const struct kmm_region *map, size_t n, uint64_t hhdm,
                        struct kmm_boruix_world *w, struct kmm_region *extra, size_t cap,
                        size_t *extra_n)
{
    (void)map, (void)n, (void)hhdm, (void)w, (void)extra, (void)cap, (void)extra_n;
    kmm_boruix_world_log(KMM_LOG_ERR, "rust_memory_init: the demo kernel's own instance is "
                                      "Boruix's (kernel_boruix_adopt); no second one");
    return KMM_ESTATE;
}

int kmm_boruix_world_ready(struct kmm *k)
{
    (void)k;
    return KMM_OK;
}

void kmm_boruix_world_down(struct kmm_boruix_world *w)
{
    (void)w;
}

void kmm_boruix_world_log(int level, const char *line)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    const char *name = level >= 0 && level <= KMM_LOG_DEBUG ? names[level] : "?";
    kprintf("kmm-boruix: %s: %s\n", name, line);
}

void kmm_boruix_world_console(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    console_write(text, len);
}

int kernel_boruix_adopt(void)
{
    struct kmm_boruix_world w = {
        .port = NULL, /* kernel_kmm's */
        .heap_base = BORUIX_HEAP_BASE,
        .heap_size = BORUIX_HEAP_SIZE,
    };
    return kmm_boruix_adopt(kernel_kmm, &w);
}
