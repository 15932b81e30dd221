/*
 * env.h - what a test needs from the world it runs in, implemented once
 * hosted (tests/ktest/env_hosted.c, over port/hosted) and once in the kernel
 * (kernel/test_env.c, over a carved-out arena of real RAM).
 *
 * A test machine is simulated physical memory described by a memory map plus
 * a port context for kmm_init(). Memory exists (reads and writes work through
 * the direct map) where the map has types usable, bootloader-reclaimable and
 * ACPI-reclaimable; elsewhere it may not, and the library must not touch it.
 */
#ifndef KTEST_ENV_H
#define KTEST_ENV_H

#include <stddef.h>
#include <stdint.h>

#include <kmm/memmap.h>

#include "ktest.h"

struct kt_machine;
struct kmm_port;

/*
 * kt_machine_create - a machine with the physical memory map map[0..n).
 * Returns NULL when this world cannot provide it (too large for the kernel's
 * test arena, say), after marking the test skipped with the reason; the test
 * should then return. Fails the test (and returns NULL) on a host error.
 */
struct kt_machine *kt_machine_create(struct ktest *t, const struct kmm_region *map, size_t n);

/* The port context to put in kmm_config.port. */
struct kmm_port *kt_machine_port(struct kt_machine *m);

/* Where the test can read and write physical address pa of the machine (its
 * direct map). pa must lie in RAM. */
void *kt_machine_phys(struct kt_machine *m, uint64_t pa);

/*
 * kt_machine_live_window - the virtual range [*base, *base + *size) where
 * the test program can use memory the library maps in the machine's
 * kernel space at the same addresses (hosted: the port's mirror window, in
 * the lower half). *size is 0 where a test machine's mappings are never
 * live (the kernel's test machines): read and write through
 * kmm_vm_translate and kt_machine_phys there.
 */
void kt_machine_live_window(struct kt_machine *m, uint64_t *base, uint64_t *size);

/* How many lines the library logged through this machine's port at a level. */
unsigned long kt_machine_log_count(struct kt_machine *m, int level);

/* The last line logged at KMM_LOG_ERR ("" if none). */
const char *kt_machine_last_error(struct kt_machine *m);

/* Release the machine and its memory. NULL is ignored. */
void kt_machine_destroy(struct kt_machine *m);

/* Fill / compare memory without libc (the test bodies' memset/memcmp). */
void kt_fill(void *p, uint8_t byte, size_t n);
int kt_cmp(const void *a, const void *b, size_t n);

#endif /* KTEST_ENV_H */
