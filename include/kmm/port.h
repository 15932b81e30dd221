/*
 * kmm/port.h - the port: everything the library needs from its host.
 *
 * The core of kmm is freestanding C11. It reaches the machine it runs on only
 * through the hooks below. A host provides them in one glue header named
 * <kmm_port_impl.h>, found through the include path of the library build:
 *
 *     port/hosted/kmm_port_impl.h    user space over simulated RAM (tests, benchmarks)
 *     kernel/port/kmm_port_impl.h    the demo kernel
 *
 * Two builds differ by that one header (and the .c file behind it), never by
 * #ifdefs in src/. A hook may be a static inline function, a macro or an extern
 * function, as the host likes; src/port_contract.c calls every hook with the
 * documented types so that a port missing one fails to compile.
 *
 * Context vocabulary used by the contracts below and in every public header:
 *   "any context"      may be called from an interrupt handler or with IRQs off;
 *   "IRQs on"          the caller must not hold a spinlock or run with IRQs off;
 *   "preempt off"      the caller has called kmm_preempt_disable().
 *
 * What the glue header must define
 * --------------------------------
 * Types
 *   struct kmm_port      The host's per-instance context. Complete type. The
 *                        library only stores a pointer to it (kmm_config.port)
 *                        and passes it back to the hooks that take one.
 *   kmm_lock_t           A spinlock. Zero bytes are NOT assumed to be unlocked:
 *                        every lock goes through kmm_lock_init().
 *   kmm_irqstate_t       What kmm_lock_irqsave() saved (the IRQ flag).
 *
 * Memory
 *   uintptr_t kmm_port_direct_map(const struct kmm_port *p)
 *       The direct-map ("HHDM") offset: physical address pa is accessible at
 *       virtual address offset + pa for every page the library manages. Read
 *       once at kmm_init() and never again. Any context.
 *
 * Locking and CPUs
 *   void kmm_lock_init(kmm_lock_t *l)
 *   kmm_irqstate_t kmm_lock_irqsave(kmm_lock_t *l)
 *   void kmm_unlock_irqrestore(kmm_lock_t *l, kmm_irqstate_t s)
 *       Take the lock with local interrupts disabled; release it and restore
 *       the interrupt state saved by the matching irqsave. Not recursive. Any
 *       context. The library never sleeps while holding one.
 *   kmm_irqstate_t kmm_irq_save(void), void kmm_irq_restore(kmm_irqstate_t s)
 *       Disable local interrupts and return the previous state; restore it.
 *       No lock: this is what the per-CPU page caches use, so that their
 *       common path costs no lock (a free's one compare-exchange aside).
 *       With IRQs off the caller is not preempted either: it stays on its
 *       CPU (the heap's CPU stacks rely on this and call nothing else).
 *       Nests. Any context.
 *   void kmm_preempt_disable(void), void kmm_preempt_enable(void)
 *       Pin the caller to its CPU; nests. Any context.
 *   unsigned kmm_port_cpu_id(void)
 *       The current CPU, 0 <= id < the cpu_count given to kmm_init(). Stable
 *       only with preemption or IRQs off. Any context.
 *
 * TLB and address spaces (used from the page-table layer on)
 *   void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va)
 *       Invalidate the local TLB entry for one page (INVLPG). Any context.
 *   void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len)
 *       Invalidate the local entries for [va, va + len). Any context.
 *   void kmm_port_tlb_flush_all(struct kmm_port *p, bool global)
 *       Invalidate the whole local TLB; with global, global entries too
 *       (CR4.PGE toggle). Any context.
 *   void kmm_port_tlb_shootdown(struct kmm_port *p, uint64_t root, uint64_t va,
 *                               uint64_t len, bool global)
 *       Make every other CPU that may cache translations of the address space
 *       whose top-level table is at physical address root invalidate
 *       [va, va + len) (len == 0: everything; global: global entries too).
 *       Returns only when every such CPU has done so. IRQs on (it may wait for
 *       other CPUs' acknowledgements).
 *   void kmm_port_load_root(struct kmm_port *p, uint64_t root)
 *       Make the address space at root current on this CPU (write CR3).
 *   bool kmm_port_tlb_skip_unaccessed(const struct kmm_port *p)
 *       Whether the tables are the MMU's and the MMU caches a translation
 *       only after setting the accessed flag of every entry it used (x86:
 *       Intel SDM Vol. 3A §4.10.2.3, "Details of TLB Use"; AMD's manual
 *       describes the same accessed flag). Then a leaf that is cleared with
 *       its accessed flag still clear was never in any TLB, and its removal
 *       needs no invalidation, here or on another CPU (illumos' x86 HAT
 *       relies on the same rule). With several CPUs it also takes that a
 *       CPU's locked update of the flag does not land on an entry changed
 *       since its walk, which the manuals imply but do not state, and which
 *       some parts break as an erratum (Knights Landing sets A/D bits in
 *       entries already cleared): a port for such a CPU answers false. Every
 *       TLB entry the port inherits from tables the library did not build
 *       (a boot loader's global pages) must be gone before the library's
 *       tables are used. Read once, at kmm_init. A port whose tables no MMU
 *       walks (a simulation) answers false, so that every removal is
 *       invalidated. Any context.
 *   void kmm_port_mapping_changed(struct kmm_port *p, const struct kmm_port_mapping *m)
 *       Optional (may do nothing): called after the entries covering
 *       [m->va, m->va + m->len) changed, with what they map now. The hosted
 *       port mirrors such mappings into the test process so that memory the
 *       library hands out through mappings is usable at its address (docs/porting.md).
 *   bool kmm_port_mirrors_mappings(const struct kmm_port *p)
 *       Whether kmm_port_mapping_changed does anything: false lets the
 *       library skip describing a change of many scattered pages (a pass
 *       over their frames to find the runs). Any context.
 *   bool kmm_port_mirror_needs_frames(const struct kmm_port *p)
 *       Optional: a port header that has it defines it and
 *       KMM_PORT_HAS_MIRROR_FRAMES; without, this header supplies one that
 *       answers true. Whether kmm_port_mapping_changed needs the frames a
 *       mapping names: true, and a mapping of scattered pages is described
 *       run by run of contiguous frames; false (a mirror that shows memory
 *       of its own at a mapped range, not the frames, and zeros where a
 *       range is mapped anew), and it is described once, its pa the first
 *       page's, and the library does not zero the frames of a zeroed
 *       vmalloc (nothing shows them). Any context.
 *
 * NUMA topology (optional: a host without it reports one node)
 *   unsigned kmm_port_node_count(const struct kmm_port *p)       1 <= n <= KMM_MAX_NODES
 *   unsigned kmm_port_node_of_phys(const struct kmm_port *p, uint64_t pa)
 *   unsigned kmm_port_node_of_cpu(const struct kmm_port *p, unsigned cpu)
 *
 * Diagnostics
 *   void kmm_port_log(struct kmm_port *p, int level, const char *line)
 *       Write one formatted line (no trailing newline) at a KMM_LOG_* level.
 *       Any context; it must not call back into the library.
 *   noreturn void kmm_port_panic(struct kmm_port *p, const char *msg)
 *       The library found one of its own invariants broken. Must not return.
 *       p may be NULL when no instance exists yet.
 *   uint64_t kmm_port_cycles(void)
 *       A monotonic cycle counter (RDTSC). Any context.
 *   uint64_t kmm_port_clock_ns(void)                             (optional)
 *       Monotonic time in nanoseconds from an arbitrary start, for figures
 *       a person reads in seconds (the Boruix interface's benchmark reports
 *       microseconds). 0 means "no clock". The core never calls it. A glue
 *       header that has a clock defines it and KMM_PORT_HAS_CLOCK; without
 *       KMM_PORT_HAS_CLOCK this header supplies one that returns 0. Any
 *       context.
 *   KMM_ASSERT(port, cond)                                       (optional)
 *       The library's internal invariant checks. Left undefined, a failed
 *       one panics through kmm_port_panic with the function's name. A glue
 *       header may define it to route the checks elsewhere, or as
 *       KMM_ASSERT_OFF(port, cond) (below) to compile them out: no check
 *       has a side effect, so the library behaves the same without them.
 *       Caller mistakes are never assertions; they are rejected with errors.
 *
 * Besides the hooks, the host links memcpy, memmove, memset and memcmp, which
 * C compilers may call even in freestanding code.
 */
#ifndef KMM_PORT_H
#define KMM_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h> /* KMM_LOG_* levels */

/* Protection bits in kmm_port_mapping.prot (the library's own, not x86 bits). */
#define KMM_PORT_PROT_READ  0x1u
#define KMM_PORT_PROT_WRITE 0x2u
#define KMM_PORT_PROT_EXEC  0x4u

/* What a range of virtual addresses maps after a change (kmm_port_mapping_changed). */
struct kmm_port_mapping {
    uint64_t root; /* physical address of the address space's top-level table */
    uint64_t va;   /* first virtual address, page aligned */
    uint64_t len;  /* bytes, a multiple of the page size */
    uint64_t pa;   /* first physical address, valid when prot != 0 */
    unsigned prot; /* KMM_PORT_PROT_* ; 0 means "no longer mapped" */
};

/* An assertion compiled out: evaluates nothing, yet names its operands so
 * that a variable only an assertion reads does not become "unused". */
#define KMM_ASSERT_OFF(port, cond) ((void)sizeof(port), (void)sizeof((cond) ? 1 : 0))

#include <kmm_port_impl.h>

#ifndef KMM_PORT_HAS_MIRROR_FRAMES
/* A port that does not say (kmm_port_mirror_needs_frames above): the
 * frames of each run. */
static inline bool kmm_port_mirror_needs_frames(const struct kmm_port *p)
{
    (void)p;
    return true;
}
#endif

#ifndef KMM_PORT_HAS_CLOCK
/* A port without a clock (kmm_port_clock_ns above): "no clock". */
static inline uint64_t kmm_port_clock_ns(void)
{
    return 0;
}
#endif

#endif /* KMM_PORT_H */
