/*
 * x86_64.c - the out-of-line x86_64 code both freestanding ports link (the
 * demo kernel's, kernel/port/, and the Boruix drop-in's, port/boruix/):
 * the contended spinlock, the TLB and CR3 work behind their hooks, and the
 * hooks a one-node machine answers the same way in both. Built once per
 * port, against that port's glue header (kmm_port_x86_64.h's contract).
 */
#include <kmm/port.h>

#define PAGE_SIZE             UINT64_C(4096)
/* Above this many pages one full flush is cheaper than INVLPG per page. */
#define FLUSH_RANGE_MAX_PAGES 32
/* Spins before a contended lock is declared taken twice: seconds under TCG. */
#define LOCK_SPIN_LIMIT       (UINT64_C(1) << 28)
#define CR4_PGE               (UINT64_C(1) << 7)

/* Test-and-test-and-set with PAUSE. With one CPU and IRQs off the holder can
 * never run again, so a lock still held after LOCK_SPIN_LIMIT spins is a
 * recursive acquisition: panic with a message instead of hanging. */
void kmm_x86_lock_contended(kmm_lock_t *l)
{
    for (uint64_t spins = 0;; spins++) {
        if (!__atomic_load_n(&l->locked, __ATOMIC_RELAXED) &&
            !__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
            return;
        if (spins == LOCK_SPIN_LIMIT)
            kmm_port_panic(NULL, "kmm_lock_irqsave: lock held too long (taken twice?)");
        __asm__ volatile("pause" : : : "memory");
    }
}

void kmm_x86_flush_page(uint64_t va)
{
    __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

/* INVLPG on any address inside a 2 MiB or 1 GiB page drops that page's entry,
 * so stepping by 4 KiB covers every page size. */
void kmm_x86_flush_range(uint64_t va, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = va & ~(PAGE_SIZE - 1);
    uint64_t last = (va + len - 1) & ~(PAGE_SIZE - 1); /* wraps only for a bad len */
    uint64_t pages = last >= first ? (last - first) / PAGE_SIZE + 1 : UINT64_MAX;
    if (pages > FLUSH_RANGE_MAX_PAGES) {
        kmm_x86_flush_all(true); /* the range may hold global pages */
        return;
    }
    for (uint64_t i = 0; i < pages; i++)
        kmm_x86_flush_page(first + i * PAGE_SIZE);
}

/* A CR3 write drops every non-global entry; toggling CR4.PGE drops all of
 * them. Without PGE enabled there are no global entries to drop. */
void kmm_x86_flush_all(bool global)
{
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    if (global && (cr4 & CR4_PGE)) {
        __asm__ volatile("mov %0, %%cr4\n\tmov %1, %%cr4"
                         :
                         : "r"(cr4 & ~CR4_PGE), "r"(cr4)
                         : "memory");
    } else {
        uint64_t cr3;
        __asm__ volatile("mov %%cr3, %0\n\tmov %0, %%cr3" : "=&r"(cr3) : : "memory");
    }
}

void kmm_x86_load_cr3(uint64_t root)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(root) : "memory");
}

/* One node: every frame and the one CPU are on node 0. */
unsigned kmm_port_node_count(const struct kmm_port *p)
{
    (void)p;
    return 1;
}

unsigned kmm_port_node_of_phys(const struct kmm_port *p, uint64_t pa)
{
    (void)p;
    (void)pa;
    return 0;
}

unsigned kmm_port_node_of_cpu(const struct kmm_port *p, unsigned cpu)
{
    (void)p;
    (void)cpu;
    return 0;
}
