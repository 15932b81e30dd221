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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

struct kmm_port_mapping;

/* The port context: the direct map the instance was made with. */
struct kmm_port {
    uintptr_t direct_map;
};

/* A spinlock: 0 free, 1 held, taken with interrupts off. */
typedef struct {
    uint32_t locked;
} kmm_lock_t;

/* RFLAGS before the lock or irq_save (bit 9 is IF). */
typedef uint64_t kmm_irqstate_t;

/* Spins until l is free; panics when that cannot happen (one CPU, IRQs
 * off: the holder is this CPU, a lock taken twice). */
void kmm_boruix_lock_contended(kmm_lock_t *l);

static inline uintptr_t kmm_port_direct_map(const struct kmm_port *p)
{
    return p->direct_map;
}

static inline void kmm_lock_init(kmm_lock_t *l)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELAXED);
}

static inline kmm_irqstate_t kmm_irq_save(void)
{
    kmm_irqstate_t flags;
    __asm__ volatile("pushfq\n\tpopq %0\n\tcli" : "=r"(flags) : : "memory");
    return flags;
}

static inline void kmm_irq_restore(kmm_irqstate_t s)
{
    __asm__ volatile("pushq %0\n\tpopfq" : : "r"(s) : "memory", "cc");
}

static inline kmm_irqstate_t kmm_lock_irqsave(kmm_lock_t *l)
{
    kmm_irqstate_t flags = kmm_irq_save();
    if (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
        kmm_boruix_lock_contended(l);
    return flags;
}

static inline void kmm_unlock_irqrestore(kmm_lock_t *l, kmm_irqstate_t s)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
    kmm_irq_restore(s);
}

/* One CPU: pinning is free; the barrier keeps per-CPU accesses inside. */
static inline void kmm_preempt_disable(void)
{
    __asm__ volatile("" : : : "memory");
}

static inline void kmm_preempt_enable(void)
{
    __asm__ volatile("" : : : "memory");
}

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

/* The TSC, calibrated once against the PIT's channel 2 (port.c). */
#define KMM_PORT_HAS_CLOCK 1
uint64_t kmm_port_clock_ns(void);

/* The rest is out of line, in port.c. */
void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va);
void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len);
void kmm_port_tlb_flush_all(struct kmm_port *p, bool global);
void kmm_port_tlb_shootdown(struct kmm_port *p, uint64_t root, uint64_t va, uint64_t len,
                            bool global);
void kmm_port_load_root(struct kmm_port *p, uint64_t root);
void kmm_port_mapping_changed(struct kmm_port *p, const struct kmm_port_mapping *m);
unsigned kmm_port_node_count(const struct kmm_port *p);
unsigned kmm_port_node_of_phys(const struct kmm_port *p, uint64_t pa);
unsigned kmm_port_node_of_cpu(const struct kmm_port *p, unsigned cpu);
void kmm_port_log(struct kmm_port *p, int level, const char *line);
noreturn void kmm_port_panic(struct kmm_port *p, const char *msg);

/* The log hook: one line (no newline) at a KMM_LOG_* level. Weak: the
 * kernel overrides it with its own (Boruix: serial_puts); the default
 * writes "[kmm] <line>\n" to COM1 (I/O port 0x3f8). Any context; must not
 * call back into the library. */
void kmm_boruix_log(int level, const char *line);

#endif /* KMM_PORT_IMPL_BORUIX_H */
