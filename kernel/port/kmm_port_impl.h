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
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

struct kmm_port_mapping;

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
    uint64_t last_root;         /* root of the last load_root request (0: none) */
};

/* Set up p for the real machine (real) or a test machine; counters zeroed. */
void kport_init(struct kmm_port *p, uintptr_t direct_map, bool real);

/*
 * A spinlock: 0 free, 1 held. Taken with interrupts off, so that an interrupt
 * handler on this CPU can never spin on a lock its own CPU holds.
 */
typedef struct {
    uint32_t locked;
} kmm_lock_t;

/* RFLAGS as it was before kmm_lock_irqsave (bit 9 is IF). */
typedef uint64_t kmm_irqstate_t;

/* Spins until l is free, then takes it; panics if that takes implausibly
 * long (on one CPU with IRQs off, a held lock is never released). */
void kport_lock_contended(kmm_lock_t *l);

static inline uintptr_t kmm_port_direct_map(const struct kmm_port *p)
{
    return p->direct_map;
}

static inline void kmm_lock_init(kmm_lock_t *l)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELAXED);
}

static inline kmm_irqstate_t kmm_lock_irqsave(kmm_lock_t *l)
{
    kmm_irqstate_t flags;
    __asm__ volatile("pushfq\n\tpopq %0\n\tcli" : "=r"(flags) : : "memory");
    if (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
        kport_lock_contended(l);
    return flags;
}

static inline void kmm_unlock_irqrestore(kmm_lock_t *l, kmm_irqstate_t s)
{
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
    __asm__ volatile("pushq %0\n\tpopfq" : : "r"(s) : "memory", "cc");
}

/* Interrupts off on this CPU, with no lock: the per-CPU caches' guard. */
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

/* With no scheduler nothing can move the caller to another CPU, so pinning is
 * free; the barrier keeps per-CPU accesses inside the pinned section as the
 * contract's callers expect. */
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

/* The TSC in nanoseconds, once a boot mode that keeps time (shell, bench:
 * kernel/shellmode.c) has measured its frequency against the PIT; 0 ("no
 * clock", kmm/port.h) before that. */
#define KMM_PORT_HAS_CLOCK 1
uint64_t kmm_port_clock_ns(void);

/* The rest is out of line, in kernel/port/port.c. */
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

#endif /* KMM_PORT_IMPL_KERNEL_H */
