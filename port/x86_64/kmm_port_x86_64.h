/*
 * kmm_port_x86_64.h - the half of a glue header that every freestanding
 * x86_64 port on one CPU shares: the demo kernel's (kernel/port/) and the
 * Boruix drop-in's (port/boruix/). Their kmm_port_impl.h each define
 * struct kmm_port, with a uintptr_t direct_map field, and then include this;
 * so the two builds differ by their glue header alone (musl's model).
 *
 * What is here: interrupt-disabling spinlocks, IRQ save/restore, the TSC,
 * and the one-CPU answers (CPU 0, pinning is a compiler barrier). The
 * out-of-line x86 work both ports call (the contended lock, INVLPG, CR3 and
 * CR4.PGE flushes) and the hooks a one-node machine answers the same way
 * are in port/x86_64/x86_64.c; the mapping hook, empty, is here. What differs stays in each port:
 * when the hardware is touched, shootdowns, logging, panic, the clock.
 *
 * Only freestanding headers, as everywhere the library is compiled.
 */
#ifndef KMM_PORT_X86_64_H
#define KMM_PORT_X86_64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

struct kmm_port;
struct kmm_port_mapping;

/*
 * A spinlock: 0 free, 1 held. Taken with interrupts off, so that an interrupt
 * handler on this CPU can never spin on a lock its own CPU holds.
 */
typedef struct {
    uint32_t locked;
} kmm_lock_t;

/* RFLAGS as it was before kmm_lock_irqsave or kmm_irq_save (bit 9 is IF). */
typedef uint64_t kmm_irqstate_t;
#define KMM_X86_RFLAGS_IF (UINT64_C(1) << 9)

/* Spins until l is free, then takes it; panics if that takes implausibly
 * long (on one CPU with IRQs off, a held lock is never released: it was
 * taken twice). */
void kmm_x86_lock_contended(kmm_lock_t *l);

static inline uintptr_t kmm_port_direct_map(const struct kmm_port *p)
{
    return p->direct_map;
}

static inline void kmm_lock_init(kmm_lock_t *l)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELAXED);
}

/* Interrupts off on this CPU, with no lock: the per-CPU caches' guard. */
static inline kmm_irqstate_t kmm_irq_save(void)
{
    kmm_irqstate_t flags;
    __asm__ volatile("pushfq\n\tpopq %0\n\tcli" : "=r"(flags) : : "memory");
    return flags;
}

/* Interrupts back on if they were on at kmm_irq_save: since it cleared IF
 * and left every other flag alone, that is all a restore has to do (as
 * Linux's arch_local_irq_restore). Not popfq: it is microcoded on real
 * CPUs, and under QEMU's TCG it ends the translation block and returns to
 * the main loop on every call, which made each heap and page-cache
 * operation in the demo kernel pay for a trip through QEMU. */
static inline void kmm_irq_restore(kmm_irqstate_t s)
{
    if (s & KMM_X86_RFLAGS_IF)
        __asm__ volatile("sti" : : : "memory");
}

static inline kmm_irqstate_t kmm_lock_irqsave(kmm_lock_t *l)
{
    kmm_irqstate_t flags = kmm_irq_save();
    if (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
        kmm_x86_lock_contended(l);
    return flags;
}

static inline void kmm_unlock_irqrestore(kmm_lock_t *l, kmm_irqstate_t s)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
    kmm_irq_restore(s);
}

/* With one CPU and no scheduler the library must know of, nothing moves the
 * caller to another CPU, so pinning is free; the barrier keeps per-CPU
 * accesses inside the pinned section as the contract's callers expect. */
static inline void kmm_preempt_disable(void)
{
    __asm__ volatile("" : : : "memory");
}

static inline void kmm_preempt_enable(void)
{
    __asm__ volatile("" : : : "memory");
}

/* The boot CPU is the only one running. */
static inline unsigned kmm_port_cpu_id(void)
{
    return 0;
}

static inline uint64_t kmm_port_cycles(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

/* The x86 work behind the TLB and root hooks (x86_64.c), for a port's
 * kmm_port_tlb_* and kmm_port_load_root on the live machine. */
void kmm_x86_flush_page(uint64_t va);
/* Every page of [va, va + len): INVLPG each, or one full flush (global
 * entries too) above a few dozen pages. len 0 flushes nothing. */
void kmm_x86_flush_range(uint64_t va, uint64_t len);
/* Every non-global entry (a CR3 reload); with global, every entry. */
void kmm_x86_flush_all(bool global);
void kmm_x86_load_cr3(uint64_t root);

/* The mapping hook: on a live machine the library's tables are used
 * directly, with nothing to mirror. Inline and empty, so that a change of
 * the tables pays nothing for it. */
static inline void kmm_port_mapping_changed(struct kmm_port *p, const struct kmm_port_mapping *m)
{
    (void)p;
    (void)m;
}

static inline bool kmm_port_mirrors_mappings(const struct kmm_port *p)
{
    (void)p;
    return false;
}

/* The other port hooks out of line: the TLB, root and log hooks, panic and
 * the clock in the port's own port.c; the NUMA answers of one node in
 * x86_64.c. */
#define KMM_PORT_HAS_CLOCK 1
uint64_t kmm_port_clock_ns(void);
void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va);
void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len);
void kmm_port_tlb_flush_all(struct kmm_port *p, bool global);
void kmm_port_tlb_shootdown(struct kmm_port *p, uint64_t root, uint64_t va, uint64_t len,
                            bool global);
void kmm_port_load_root(struct kmm_port *p, uint64_t root);
unsigned kmm_port_node_count(const struct kmm_port *p);
unsigned kmm_port_node_of_phys(const struct kmm_port *p, uint64_t pa);
unsigned kmm_port_node_of_cpu(const struct kmm_port *p, unsigned cpu);
void kmm_port_log(struct kmm_port *p, int level, const char *line);
noreturn void kmm_port_panic(struct kmm_port *p, const char *msg);

#endif /* KMM_PORT_X86_64_H */
