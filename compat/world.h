/*
 * world.h - what the Boruix compat layer (compat/boruix.c) needs from the
 * world it is built for, and what it offers to tests and ports.
 *
 * The compat layer sits on top of kmm's public interface: compat/boruix.c
 * includes only <kmm/...> and <boruix/...> headers and owns the one global
 * instance Boruix's calls work on. Everything that differs between worlds
 * (where physical memory comes from, the port context, the console) is
 * behind the kmm_boruix_world_* functions below, implemented once per world:
 *
 *   compat/hosted.c       user space: a simulated machine backs the regions
 *   port/boruix/world.c   the drop-in for a Limine-booted kernel
 *   kernel/boruix_world.c the demo kernel, which adopts its own instance
 *                         (kmm_boruix_adopt) instead of making one
 */
#ifndef KMM_COMPAT_WORLD_H
#define KMM_COMPAT_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>
#include <kmm/memmap.h>

/* The part of Boruix's heap window (KERNEL_HEAP_START, 256 MiB) left to
 * the kernel's own fixed mappings: its first 32 MiB, where Boruix's page-table
 * test maps 0xFFFFFFFF90000000 and its protection test 0xFFFFFFFF91000000.
 * The library's kernel virtual areas take the rest. */
#define KMM_BORUIX_FIXED_PART (UINT64_C(32) << 20)

/* What a world sets up for one instance. */
struct kmm_boruix_world {
    struct kmm_port *port; /* for kmm_config.port */
    uint64_t kva_base;     /* the library's part of the heap window */
    uint64_t kva_size;
    /* Boruix's heap window as this world has it (a kernel:
     * 0xFFFFFFFF90000000 + 256 MiB; hosted: the machine's mirror window,
     * where mappings are real memory of the process): its first
     * KMM_BORUIX_FIXED_PART bytes are the kernel's fixed mappings'. */
    uint64_t heap_base;
    uint64_t heap_size;
};

/*
 * kmm_boruix_world_up - make the machine the regions map[0..n) describe
 * ready for kmm_init (hhdm: the offset rust_set_hhdm_offset gave, 0 if
 * none): fill *w, and append to extra[*extra_n ..] (room for cap in all)
 * the ranges that must stay out of the allocator besides the caller's
 * (what the boot loader says is not usable RAM). Returns KMM_OK or a
 * negative KMM_E* value with nothing left to undo.
 */
int kmm_boruix_world_up(const struct kmm_region *map, size_t n, uint64_t hhdm,
                        struct kmm_boruix_world *w, struct kmm_region *extra, size_t cap,
                        size_t *extra_n);

/* kmm_boruix_world_ready - the instance k exists: whatever the world does
 * with it before Boruix's calls use it (a kernel: make its kernel space the
 * live one). KMM_OK, or an error after which the instance is torn down. */
int kmm_boruix_world_ready(struct kmm *k);

/* kmm_boruix_world_down - undo kmm_boruix_world_up, after kmm_fini. */
void kmm_boruix_world_down(struct kmm_boruix_world *w);

/* kmm_boruix_world_log - a log line at a KMM_LOG_* level when no instance
 * exists (before init, after a failed one). */
void kmm_boruix_world_log(int level, const char *line);

/* kmm_boruix_world_console - where rust_memory_debug_print writes by
 * default (text, len bytes, lines end in '\n'). */
void kmm_boruix_world_console(void *ctx, const char *text, size_t len);

/*
 * kmm_boruix_limine_reserved - what a Limine memory map (entries[0..count),
 * its response's) says is not usable RAM below end, holes included, as
 * ranges kmm_init must keep out (kmm_config.reserved), appended to
 * extra[*extra_n ..] (room for cap in all). Given with a caller's regions,
 * kmm_init then manages only their intersection with Limine's usable RAM.
 * Returns KMM_OK; KMM_EINVAL for a map kmm_bootmap_limine refuses or with
 * more than KMM_MAX_REGIONS entries; KMM_ENOMEM when extra has no room
 * (*extra_n unchanged). Not reentrant (static scratch).
 */
struct kmm_limine_memmap_entry;
int kmm_boruix_limine_reserved(const struct kmm_limine_memmap_entry *const *entries, uint64_t count,
                               uint64_t end, struct kmm_region *extra, size_t cap, size_t *extra_n);

/* --- the compat layer's own calls, beyond Boruix's (tests, ports) --------------- */

/* The instance Boruix's calls work on; NULL before rust_memory_init (or
 * kmm_boruix_adopt). */
struct kmm *kmm_boruix_instance(void);

/*
 * kmm_boruix_adopt - make k, an instance its caller made and keeps, the one
 * Boruix's calls work on, instead of rust_memory_init making one: a kernel
 * that runs kmm natively (the demo kernel) offers the Boruix interface over
 * the same memory. w describes k's world: w->port is k's port (NULL: taken
 * from k), w->heap_base / heap_size Boruix's heap window, whose first
 * KMM_BORUIX_FIXED_PART bytes must lie outside k's kernel virtual area
 * window (Boruix maps fixed addresses there); kva_* are not read. Debug
 * level 0 is assumed (k's heap modes are left as they are). Returns KMM_OK;
 * KMM_EINVAL for a NULL k or w, another port, or a fixed part the window
 * overlaps; KMM_ESTATE when an instance exists already. A refusal is
 * counted (kmm_boruix_misuse) and logged with the caller.
 */
int kmm_boruix_adopt(struct kmm *k, const struct kmm_boruix_world *w);

/* kmm_boruix_heap_window - Boruix's heap window in this world (see struct
 * kmm_boruix_world), [*base, *base + *size); both 0 without an instance. */
void kmm_boruix_heap_window(uint64_t *base, uint64_t *size);

/* Calls this layer rejected itself (the library's own rejections are in
 * kmm_misuse_stats); never decreases while an instance lives. */
uint64_t kmm_boruix_misuse(void);

/* Where rust_memory_debug_print writes; NULL: the world's console. The sink
 * must outlive its use. */
void kmm_boruix_set_console(const struct kmm_sink *sink);

/*
 * kmm_boruix_fini - tear the instance down (kmm_fini) and the world's
 * machine with it, so that rust_memory_init may run again: for tests. Every
 * pointer and address handed out is gone. An adopted instance is only let
 * go: its owner keeps it, intact, with everything handed out. Returns
 * KMM_OK, or KMM_ESTATE if there is no instance.
 */
int kmm_boruix_fini(void);

/* The hosted world only: the simulated machine behind the instance (NULL
 * before init), for tests (its log counts, its mirror window). */
struct hosted_machine;
struct hosted_machine *kmm_boruix_hosted_machine(void);

#endif /* KMM_COMPAT_WORLD_H */
