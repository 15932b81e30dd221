/*
 * port.c - the demo kernel's port hooks that are not inline and not shared
 * with the Boruix drop-in (contract: kmm/port.h; the two kinds of context:
 * kmm_port_impl.h; the shared x86_64 code: port/x86_64/).
 */
#include <kmm/port.h>

#include "../console.h"
#include "../kernel.h"

_Static_assert(KPORT_LOG_LEVELS == KMM_LOG_DEBUG + 1, "one counter per KMM_LOG_* level");

void kport_init(struct kmm_port *p, uintptr_t direct_map, bool real)
{
    memset(p, 0, sizeof(*p));
    p->direct_map = direct_map;
    p->real = real;
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

/* acts_on_hardware for a local invalidation, counted (the hardware checks
 * count them: kernel/hwtest.c). */
static bool invalidates(struct kmm_port *p)
{
    if (!acts_on_hardware(p))
        return false;
    p->tlb_flushes++;
    return true;
}

void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va)
{
    if (invalidates(p))
        kmm_x86_flush_page(va);
}

void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len)
{
    if (invalidates(p))
        kmm_x86_flush_range(va, len);
}

void kmm_port_tlb_flush_all(struct kmm_port *p, bool global)
{
    if (invalidates(p))
        kmm_x86_flush_all(global);
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
        kmm_x86_load_cr3(root);
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
