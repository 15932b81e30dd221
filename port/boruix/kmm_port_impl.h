/*
 * kmm_port_impl.h - the drop-in port for a Limine-booted, single-CPU kernel
 * like Boruix (contract: kmm/port.h). Built into build/boruix/libkmm-boruix.a
 * with the library and the Boruix interface (compat/boruix.c); the kernel
 * links that archive and nothing else of ours.
 *
 * The machine: one CPU (the boot CPU), no scheduler the library must know
 * of, interrupts that may be on: every lock disables them while held, so an
 * interrupt handler never spins on a lock its own CPU holds. The direct map
 * is the offset Limine reports (rust_set_hhdm_offset). TLB hooks execute
 * INVLPG, reload CR3 or toggle CR4.PGE; load_root writes CR3. Logging goes
 * through a weak hook the kernel may override (kmm_boruix_log; by default
 * the first serial port).
 *
 * Only freestanding headers, as everywhere the library is compiled.
 */
#ifndef KMM_PORT_IMPL_BORUIX_H
#define KMM_PORT_IMPL_BORUIX_H

#include <stdint.h>

/* The port context: the direct map the instance was made with. */
struct kmm_port {
    uintptr_t direct_map;
};

/* The tables are the MMU's, which caches only accessed leaves (kmm/port.h). */
static inline bool kmm_port_tlb_skip_unaccessed(const struct kmm_port *p)
{
    (void)p;
    return true;
}

/* Locks, IRQs, the TSC, one CPU; the x86 work behind the TLB hooks. The
 * clock is the TSC, calibrated once against the PIT's channel 2 (port.c),
 * where the other out-of-line hooks are too. */
#include "kmm_port_x86_64.h"

/* The log hook: one line (no newline) at a KMM_LOG_* level. Weak: the
 * kernel overrides it with its own (Boruix: serial_puts); the default
 * writes "[kmm] <line>\n" to COM1 (I/O port 0x3f8). Any context; must not
 * call back into the library. */
void kmm_boruix_log(int level, const char *line);

#endif /* KMM_PORT_IMPL_BORUIX_H */
