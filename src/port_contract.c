/*
 * port_contract.c - proof at compile time that the glue header provides
 * every hook of kmm/port.h with the documented types.
 *
 * Nothing calls kmm_port_contract(); it exists so that a port that misses a
 * hook, or gives one the wrong shape, fails to build here rather than in
 * whichever layer first uses the hook.
 */
#include "internal.h"

noreturn void kmm_port_contract(struct kmm_port *p);

noreturn void kmm_port_contract(struct kmm_port *p)
{
    const struct kmm_port *cp = p;
    uintptr_t dm = kmm_port_direct_map(cp);
    (void)dm;

    kmm_lock_t lock;
    kmm_lock_init(&lock);
    kmm_irqstate_t s = kmm_lock_irqsave(&lock);
    kmm_unlock_irqrestore(&lock, s);
    kmm_irqstate_t irq = kmm_irq_save();
    kmm_irq_restore(irq);
    kmm_preempt_disable();
    unsigned cpu = kmm_port_cpu_id();
    kmm_preempt_enable();

    kmm_port_tlb_flush_page(p, (uint64_t)0);
    kmm_port_tlb_flush_range(p, (uint64_t)0, (uint64_t)KMM_PAGE_SIZE);
    kmm_port_tlb_flush_all(p, (bool)true);
    kmm_port_tlb_shootdown(p, (uint64_t)0, (uint64_t)0, (uint64_t)0, (bool)false);
    kmm_port_load_root(p, (uint64_t)0);
    const struct kmm_port_mapping m = {0};
    kmm_port_mapping_changed(p, &m);

    unsigned nodes = kmm_port_node_count(cp);
    unsigned node = kmm_port_node_of_phys(cp, (uint64_t)0) + kmm_port_node_of_cpu(cp, cpu);
    (void)nodes;
    (void)node;

    kmm_port_log(p, KMM_LOG_DEBUG, "contract");
    uint64_t t = kmm_port_cycles() + kmm_port_clock_ns();
    (void)t;
    kmm_port_panic(p, "contract");
}
