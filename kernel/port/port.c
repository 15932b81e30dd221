/*
 * port.c - the demo kernel's port hooks that are not inline (contract:
 * kmm/port.h; the two kinds of context: kmm_port_impl.h).
 */
#include <kmm/port.h>

#include "../console.h"
#include "../kernel.h"

_Static_assert(KPORT_LOG_LEVELS == KMM_LOG_DEBUG + 1, "one counter per KMM_LOG_* level");

#define PAGE_SIZE             UINT64_C(4096)
/* Above this many pages one full flush is cheaper than INVLPG per page. */
#define FLUSH_RANGE_MAX_PAGES 32
/* Spins before a contended lock is declared a deadlock: seconds under TCG. */
#define LOCK_SPIN_LIMIT       (UINT64_C(1) << 28)
#define CR4_PGE               (UINT64_C(1) << 7)

void kport_init(struct kmm_port *p, uintptr_t direct_map, bool real)
{
    memset(p, 0, sizeof(*p));
    p->direct_map = direct_map;
    p->real = real;
}

/* Test-and-test-and-set with PAUSE. With one CPU and IRQs off the holder can
 * never run again, so a lock still held after LOCK_SPIN_LIMIT spins is a
 * recursive acquisition: panic with a message instead of hanging until the
 * boot test's timeout. */
void kport_lock_contended(kmm_lock_t *l)
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

static uint64_t read_cr3(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

static void write_cr3(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}

static uint64_t read_cr4(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

static void write_cr4(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}

static void invlpg(uint64_t va)
{
    __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

/* A test port's page tables are never live: count the request, touch nothing.
 * Returns whether the request is for the real machine. */
static bool acts_on_hardware(struct kmm_port *p)
{
    if (p->real)
        return true;
    p->tlb_requests++;
    return false;
}

void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va)
{
    if (acts_on_hardware(p))
        invlpg(va);
}

/* INVLPG on any address inside a 2 MiB or 1 GiB page drops that page's entry,
 * so stepping by 4 KiB covers every page size. */
void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len)
{
    if (!acts_on_hardware(p) || len == 0)
        return;
    uint64_t first = va & ~(PAGE_SIZE - 1);
    uint64_t last = (va + len - 1) & ~(PAGE_SIZE - 1); /* wraps only for a bad len */
    uint64_t pages = last >= first ? (last - first) / PAGE_SIZE + 1 : UINT64_MAX;
    if (pages > FLUSH_RANGE_MAX_PAGES) {
        kmm_port_tlb_flush_all(p, true); /* the range may hold global pages */
        return;
    }
    for (uint64_t i = 0; i < pages; i++)
        invlpg(first + i * PAGE_SIZE);
}

/* A CR3 write drops every non-global entry; toggling CR4.PGE drops all of
 * them. Without PGE enabled there are no global entries to drop. */
void kmm_port_tlb_flush_all(struct kmm_port *p, bool global)
{
    if (!acts_on_hardware(p))
        return;
    uint64_t cr4 = read_cr4();
    if (global && (cr4 & CR4_PGE)) {
        write_cr4(cr4 & ~CR4_PGE);
        write_cr4(cr4);
    } else {
        write_cr3(read_cr3());
    }
}

/* Only the boot CPU runs, so there is no other CPU to interrupt: returning at
 * once satisfies "every other CPU has invalidated". Needs IPIs and an
 * acknowledgement count once the APs are started. */
void kmm_port_tlb_shootdown(struct kmm_port *p, uint64_t root, uint64_t va, uint64_t len,
                            bool global)
{
    (void)root;
    (void)va;
    (void)len;
    (void)global;
    (void)acts_on_hardware(p);
}

void kmm_port_load_root(struct kmm_port *p, uint64_t root)
{
    p->last_root = root;
    if (acts_on_hardware(p))
        write_cr3(root);
}

/* The kernel uses the library's mappings directly; nothing to mirror. */
void kmm_port_mapping_changed(struct kmm_port *p, const struct kmm_port_mapping *m)
{
    (void)p;
    (void)m;
}

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

/* "# kmm: <line>" keeps library logs TAP comments in the KTAP stream. */
void kmm_port_log(struct kmm_port *p, int level, const char *line)
{
    if (p && level >= 0 && level < KPORT_LOG_LEVELS)
        p->log_count[level]++;
    if (p && level == KMM_LOG_ERR) {
        size_t i = 0;
        for (; line[i] && i + 1 < sizeof(p->last_error); i++)
            p->last_error[i] = line[i];
        p->last_error[i] = '\0';
    }
    /* Every level is counted (tests read the counts); only errors and
     * warnings are printed, so a test run's serial log stays readable. */
    if (level > KMM_LOG_WARN)
        return;
    console_puts("# kmm: ");
    console_puts(line);
    console_puts("\n");
}

noreturn void kmm_port_panic(struct kmm_port *p, const char *msg)
{
    (void)p;
    __asm__ volatile("cli");
    console_puts("kmm panic: ");
    console_puts(msg);
    console_puts("\n");
    kernel_exit(KERNEL_EXIT_FAIL);
}
