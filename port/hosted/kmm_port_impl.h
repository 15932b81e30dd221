/*
 * kmm_port_impl.h - the hosted port's glue header (contract: kmm/port.h).
 *
 * User space on Linux pretends to be a machine: simulated physical RAM lives
 * in a memfd mapped at a direct-map base, threads act as CPUs, locks are real
 * spinlocks that yield when a holder was preempted, interrupts are a
 * thread-local flag, and TLB requests are recorded in a log that tests read.
 * port/hosted/hosted.h is the test-facing side.
 */
#ifndef KMM_PORT_IMPL_HOSTED_H
#define KMM_PORT_IMPL_HOSTED_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdnoreturn.h>

struct hosted_machine;
struct kmm_port_mapping;

/* Built with -DKMM_HOSTED_NO_ASSERT, the library runs with its assertions
 * compiled out (the `noassert` test variant): proof that none of them has a
 * side effect the library depends on. */
#ifdef KMM_HOSTED_NO_ASSERT
#define KMM_ASSERT(port, cond) KMM_ASSERT_OFF(port, cond)
#endif

/* The per-instance context: the machine the instance runs on. */
struct kmm_port {
    uintptr_t direct_map; /* where physical address 0 is mapped */
    struct hosted_machine *machine;
    /* Whether the machine plays an MMU that caches only accessed leaves
     * (hosted_machine_config.accessed_rule): false unless a test asks. */
    bool skip_unaccessed;
    /* Whether the mirror window maps fresh anonymous memory for a mapping
     * rather than the frames it names (hosted_machine_config.fresh_mirror). */
    bool fresh_mirror;
};

/* No MMU walks the simulated tables: every removal is invalidated, unless
 * a test sets the accessed flags itself as an MMU would and asks for the
 * rule (kmm/port.h). */
static inline bool kmm_port_tlb_skip_unaccessed(const struct kmm_port *p)
{
    return p->skip_unaccessed;
}

/* The mirror window follows every mapping (kmm_port_mapping_changed). */
static inline bool kmm_port_mirrors_mappings(const struct kmm_port *p)
{
    (void)p;
    return true;
}

/* A fresh mirror shows memory of its own at a mapped range, whatever frames
 * it names: a range of scattered pages is one call, not one per run of
 * contiguous frames. */
#define KMM_PORT_HAS_MIRROR_FRAMES 1
static inline bool kmm_port_mirror_needs_frames(const struct kmm_port *p)
{
    return !p->fresh_mirror;
}

/* A spinlock. Spinning threads yield after a while, because here a "CPU" can
 * be preempted while holding a lock, which a real CPU with IRQs off cannot. */
typedef struct {
    atomic_int locked;
} kmm_lock_t;

/* The simulated interrupt flag as it was before irqsave: 1 = enabled. */
typedef int kmm_irqstate_t;

/* Per thread: the CPU this thread acts as, the simulated IF, and the
 * preemption-disable depth (checked by tests, otherwise informational). */
extern _Thread_local unsigned hosted_cpu;
extern _Thread_local int hosted_irqs_enabled;
extern _Thread_local int hosted_preempt_depth;

static inline uintptr_t kmm_port_direct_map(const struct kmm_port *p)
{
    return p->direct_map;
}

static inline void kmm_lock_init(kmm_lock_t *l)
{
    atomic_init(&l->locked, 0);
}

static inline kmm_irqstate_t kmm_lock_irqsave(kmm_lock_t *l)
{
    kmm_irqstate_t s = hosted_irqs_enabled;
    hosted_irqs_enabled = 0;
    for (unsigned spins = 0;; spins++) {
        if (!atomic_load_explicit(&l->locked, memory_order_relaxed) &&
            !atomic_exchange_explicit(&l->locked, 1, memory_order_acquire))
            return s;
        if (spins < 64)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
}

static inline void kmm_unlock_irqrestore(kmm_lock_t *l, kmm_irqstate_t s)
{
    atomic_store_explicit(&l->locked, 0, memory_order_release);
    hosted_irqs_enabled = s;
}

static inline kmm_irqstate_t kmm_irq_save(void)
{
    kmm_irqstate_t s = hosted_irqs_enabled;
    hosted_irqs_enabled = 0;
    return s;
}

static inline void kmm_irq_restore(kmm_irqstate_t s)
{
    hosted_irqs_enabled = s;
}

static inline void kmm_preempt_disable(void)
{
    hosted_preempt_depth++;
}

static inline void kmm_preempt_enable(void)
{
    hosted_preempt_depth--;
}

static inline unsigned kmm_port_cpu_id(void)
{
    return hosted_cpu;
}

/* The rest is out of line, in port/hosted/machine.c. */
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

static inline uint64_t kmm_port_cycles(void)
{
    return __builtin_ia32_rdtsc();
}

/* CLOCK_MONOTONIC, out of line (machine.c): the figures a person reads
 * (kmm/port.h, kmm_port_clock_ns). */
#define KMM_PORT_HAS_CLOCK 1
uint64_t kmm_port_clock_ns(void);

#endif /* KMM_PORT_IMPL_HOSTED_H */
