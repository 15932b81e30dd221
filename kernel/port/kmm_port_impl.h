/*
 * kmm_port_impl.h - the demo kernel's glue header (contract: kmm/port.h).
 *
 * One kernel, two kinds of port context:
 *
 *   real == true    the machine the kernel runs on. TLB hooks execute INVLPG,
 *                   reload CR3 or toggle CR4.PGE; load_root writes CR3.
 *   real == false   a test machine (kernel/test_env.c): fake physical
 *                   addresses backed by the kernel's test arena. Its page
 *                   tables are never live, so TLB and CR3 requests are only
 *                   counted; touching hardware for them would invalidate or,
 *                   worse, load tables that describe nothing real.
 *
 * The kernel runs on one CPU (the APs are not started), has no scheduler and
 * takes no interrupts while the library runs. Hence: the CPU id is always 0,
 * disabling preemption is a compiler barrier, a shootdown has no other CPU
 * to reach, and NUMA is one node. Each of these changes when APs come up.
 *
 * Only freestanding headers, as everywhere the library is compiled.
 */
#ifndef KMM_PORT_IMPL_KERNEL_H
#define KMM_PORT_IMPL_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

/* Log levels counted per port (KMM_LOG_ERR .. KMM_LOG_DEBUG). */
#define KPORT_LOG_LEVELS 4
/* Longest error line kept for kt_machine_last_error(), NUL included. */
#define KPORT_LAST_ERROR 256

/* The per-instance context. kport_init() sets every field. */
struct kmm_port {
    uintptr_t direct_map; /* physical address pa is at virtual direct_map + pa */
    bool real;            /* describes the real machine: TLB/CR3 hooks act */
    unsigned long log_count[KPORT_LOG_LEVELS]; /* lines logged, per level; never decreases */
    char last_error[KPORT_LAST_ERROR];         /* the last KMM_LOG_ERR line, "" if none */
    unsigned long tlb_requests; /* TLB/CR3 requests a test port ignored; never decreases */
    unsigned long tlb_flushes;  /* local invalidations the real machine did; never decreases */
    uint64_t last_root;         /* root of the last load_root request (0: none) */
};

/* Set up p for the real machine (real) or a test machine; counters zeroed. */
void kport_init(struct kmm_port *p, uintptr_t direct_map, bool real);

/* The real machine's tables are the MMU's, which caches only accessed
 * leaves (kmm/port.h); a test machine's are never walked by it. */
static inline bool kmm_port_tlb_skip_unaccessed(const struct kmm_port *p)
{
    return p->real;
}

/* Locks, IRQs, the TSC, one CPU; the x86 work behind the TLB hooks. The
 * clock is the TSC in nanoseconds, once a boot mode that keeps time (shell,
 * bench: kernel/shellmode.c) has measured its frequency against the PIT; 0
 * ("no clock", kmm/port.h) before that. The other out-of-line hooks are in
 * kernel/port/port.c. */
#include "kmm_port_x86_64.h"

#endif /* KMM_PORT_IMPL_KERNEL_H */
