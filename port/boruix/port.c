/*
 * port.c - the drop-in port's hooks that are not inline and not shared with
 * the demo kernel (contract: kmm/port.h; the machine: kmm_port_impl.h; the
 * shared x86_64 code: port/x86_64/), the weak log hook, and the
 * weak memcpy/memset/memmove/memcmp a kernel without its own links.
 */
#include <kmm/port.h>

#define COM1                0x3f8
#define COM1_LSR            (COM1 + 5)
#define LSR_THR_EMPTY       0x20
/* The PIT: channel 2 counts at 1.193182 MHz, gated by port 0x61. */
#define PIT_HZ              UINT64_C(1193182)
#define PIT_CH2             0x42
#define PIT_CMD             0x43
#define PIT_GATE            0x61
#define PIT_CALIBRATE_TICKS UINT64_C(11932) /* 10 ms */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* The TLB and root hooks act on the one machine there is. */
void kmm_port_tlb_flush_page(struct kmm_port *p, uint64_t va)
{
    (void)p;
    kmm_x86_flush_page(va);
}

void kmm_port_tlb_flush_range(struct kmm_port *p, uint64_t va, uint64_t len)
{
    (void)p;
    kmm_x86_flush_range(va, len);
}

void kmm_port_tlb_flush_all(struct kmm_port *p, bool global)
{
    (void)p;
    kmm_x86_flush_all(global);
}

/* One CPU: no other CPU caches anything. */
void kmm_port_tlb_shootdown(struct kmm_port *p, uint64_t root, uint64_t va, uint64_t len,
                            bool global)
{
    (void)p;
    (void)root;
    (void)va;
    (void)len;
    (void)global;
}

void kmm_port_load_root(struct kmm_port *p, uint64_t root)
{
    (void)p;
    kmm_x86_load_cr3(root);
}

static void serial_puts(const char *s)
{
    for (; *s; s++) {
        for (unsigned spins = 0; spins < 100000 && !(inb(COM1_LSR) & LSR_THR_EMPTY); spins++)
            __asm__ volatile("pause");
        outb(COM1, (uint8_t)*s);
    }
}

__attribute__((weak)) void kmm_boruix_log(int level, const char *line)
{
    (void)level;
    serial_puts("[kmm] ");
    serial_puts(line);
    serial_puts("\n");
}

void kmm_port_log(struct kmm_port *p, int level, const char *line)
{
    (void)p;
    kmm_boruix_log(level, line);
}

noreturn void kmm_port_panic(struct kmm_port *p, const char *msg)
{
    (void)p;
    __asm__ volatile("cli");
    kmm_boruix_log(KMM_LOG_ERR, "panic:");
    kmm_boruix_log(KMM_LOG_ERR, msg);
    for (;;)
        __asm__ volatile("hlt");
}

/* TSC ticks per millisecond, measured once against 10 ms of the PIT's
 * channel 2 (its gate, not its interrupt: the kernel's timer on channel 0
 * is left alone). */
static uint64_t tsc_khz;

static uint64_t calibrate_tsc(void)
{
    kmm_irqstate_t s = kmm_irq_save();
    outb(PIT_GATE, (uint8_t)((inb(PIT_GATE) & 0xfd) | 0x01)); /* gate on, speaker off */
    outb(PIT_CMD, 0xb0);                                      /* ch 2, lo/hi, mode 0 */
    outb(PIT_CH2, (uint8_t)(PIT_CALIBRATE_TICKS & 0xff));
    outb(PIT_CH2, (uint8_t)(PIT_CALIBRATE_TICKS >> 8));
    uint64_t t0 = kmm_port_cycles();
    while (!(inb(PIT_GATE) & 0x20)) /* OUT2 goes high at terminal count */
        __asm__ volatile("pause");
    uint64_t t1 = kmm_port_cycles();
    kmm_irq_restore(s);
    uint64_t us = PIT_CALIBRATE_TICKS * UINT64_C(1000000) / PIT_HZ;
    return (t1 - t0) * UINT64_C(1000) / us;
}

/* No 128-bit arithmetic: nothing but this archive is linked (no libgcc). */
uint64_t kmm_port_clock_ns(void)
{
    if (!tsc_khz)
        tsc_khz = calibrate_tsc();
    if (!tsc_khz)
        return 0;
    uint64_t c = kmm_port_cycles();
    return c / tsc_khz * UINT64_C(1000000) + c % tsc_khz * UINT64_C(1000000) / tsc_khz;
}

/* The C compilers may call these even in freestanding code; Boruix's old
 * library supplied memcpy and memset. Weak: a kernel's own win. Byte loops
 * (no SSE: Boruix runs with CR4's SSE bits clear), built with
 * -fno-tree-loop-distribute-patterns so they do not become calls to
 * themselves. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

__attribute__((weak)) void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

__attribute__((weak)) void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

__attribute__((weak)) int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n--; x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}
