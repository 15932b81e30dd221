/*
 * kmain.c - the boot stub's C side: COM1 console, a trap handler that
 * reports, the Multiboot1 memory map, the test arena, and the KTAP run that
 * decides QEMU's exit code.
 *
 * The stub does not hand the machine to the library yet: it proves that the
 * library and its tests run freestanding. The tests create their own
 * machines (kernel/test_env.c) inside one arena of real RAM, chosen here.
 */
#include <stdarg.h>
#include <stdbool.h>

#include <kmm/fmt.h>
#include <kmm/kmm.h>
#include <kmm/vm.h>

#include "kernel.h"

/* The test arena starts on a 2 MiB boundary (a large-page boundary). */
#define ARENA_ALIGN (UINT64_C(2) << 20)
#include "ktest.h"

/* --- Port I/O and the serial console --------------------------------------- */

#define COM1           0x3F8
#define UART_DATA      0 /* DLAB 0: transmit holding register */
#define UART_IER       1 /* DLAB 0: interrupt enable */
#define UART_DLL       0 /* DLAB 1: divisor latch, low byte */
#define UART_DLH       1 /* DLAB 1: divisor latch, high byte */
#define UART_FCR       2 /* FIFO control */
#define UART_LCR       3 /* line control */
#define UART_MCR       4 /* modem control */
#define UART_LSR       5 /* line status */
#define UART_LCR_8N1   0x03
#define UART_LCR_DLAB  0x80
#define UART_LSR_THRE  0x20 /* the transmitter can take a byte */
#define UART_BAUD_BASE 115200

#define QEMU_EXIT_PORT 0xF4

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

/* COM1 at 115200 8N1, FIFOs on, no interrupts: the console polls. */
static void serial_init(void)
{
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + UART_DLL, (uint8_t)(UART_BAUD_BASE / 115200));
    outb(COM1 + UART_DLH, 0);
    outb(COM1 + UART_LCR, UART_LCR_8N1);
    outb(COM1 + UART_FCR, 0xC7); /* enable, clear both FIFOs, 14-byte trigger */
    outb(COM1 + UART_MCR, 0x03); /* DTR, RTS; OUT2 off: no IRQ line */
}

void kernel_serial_write(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
            __asm__ volatile("pause");
        outb(COM1 + UART_DATA, (uint8_t)text[i]);
    }
}

void kernel_serial_puts(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    kernel_serial_write(s, n);
}

/* printf to the console; lines longer than 255 bytes are cut. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kernel_serial_write(line, n < sizeof(line) ? n : sizeof(line) - 1);
}

/* The test runner's sink: KTAP goes straight to COM1, which boot-test.sh
 * hands to prove. */
static void serial_sink_write(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    kernel_serial_write(text, len);
}

noreturn void kernel_exit(uint8_t code)
{
    outb(QEMU_EXIT_PORT, code);
    for (;;) /* not under QEMU, or the device is missing: stop here */
        __asm__ volatile("cli; hlt");
}

noreturn void kernel_panic(const char *msg)
{
    __asm__ volatile("cli");
    kernel_serial_puts("kmm boot stub panic: ");
    kernel_serial_puts(msg);
    kernel_serial_puts("\n");
    kernel_exit(KERNEL_EXIT_FAIL);
}

/* --- Exceptions ---------------------------------------------------------------- */

/* An interrupt gate: the handler's address split over three fields. */
struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type; /* 0x8E: present, DPL 0, 64-bit interrupt gate */
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct idt_gate) == 16, "an IDT gate is 16 bytes");

#define IDT_EXCEPTIONS 32
#define IDT_STUB_SIZE  16 /* boot.S spaces the stubs this far apart */
#define GDT_CODE64     0x08

extern const char isr_stubs[]; /* boot.S: IDT_EXCEPTIONS stubs */

static struct idt_gate idt[IDT_EXCEPTIONS] __attribute__((aligned(16)));

/* Points every exception at its boot.S stub, which calls kernel_trap(). No
 * IRQ vectors: the stub never enables interrupts. */
static void idt_init(void)
{
    for (unsigned v = 0; v < IDT_EXCEPTIONS; v++) {
        uint64_t a = (uint64_t)(uintptr_t)isr_stubs + (uint64_t)v * IDT_STUB_SIZE;
        idt[v] = (struct idt_gate){
            .offset_lo = (uint16_t)a,
            .selector = GDT_CODE64,
            .type = 0x8E,
            .offset_mid = (uint16_t)(a >> 16),
            .offset_hi = (uint32_t)(a >> 32),
        };
    }
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* Called by boot.S for any CPU exception: report it and fail the run, so a
 * wild pointer in the library or a test shows up as a message rather than a
 * silent triple fault. */
noreturn void kernel_trap(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2)
{
    say("kmm boot stub: exception %llu error 0x%llx at rip 0x%llx (cr2 0x%llx)\n",
        (unsigned long long)vector, (unsigned long long)error, (unsigned long long)rip,
        (unsigned long long)cr2);
    kernel_exit(KERNEL_EXIT_FAIL);
}

/* --- PAT ---------------------------------------------------------------------------- */

#define MSR_IA32_PAT   0x277u
#define CPUID1_EDX_PAT (1u << 16)

/* Programs IA32_PAT with the library's layout (kmm/vm.h), which a kernel must
 * do on every CPU before mapping anything write-combining. Returns whether
 * the CPU has a PAT (every x86_64 CPU does; QEMU's too). */
static bool pat_init(void)
{
    uint32_t a = 1, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    if (!(d & CPUID1_EDX_PAT))
        return false;
    uint64_t v = KMM_PAT_VALUE;
    __asm__ volatile("wrmsr" : : "c"(MSR_IA32_PAT), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_IA32_PAT));
    return ((uint64_t)hi << 32 | lo) == v;
}

/* --- Multiboot1 information ------------------------------------------------------- */

#define MB_BOOT_MAGIC       0x2BADB002u
#define MB_INFO_CMDLINE     (1u << 2)
#define MB_INFO_MODS        (1u << 3)
#define MB_INFO_MMAP        (1u << 6)
#define MB_INFO_LOADER_NAME (1u << 9)
#define MB_MMAP_USABLE      1u
#define MB_INFO_SIZE        116 /* the whole structure, framebuffer fields included */

/* The fields of the Multiboot1 information structure the stub reads (the
 * structure goes on; all addresses in it are physical). */
struct mb_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr;
    uint32_t config_table;
    uint32_t boot_loader_name;
};

struct mb_module {
    uint32_t mod_start, mod_end;
    uint32_t string, reserved;
};

/* One memory map entry; size counts the bytes after itself. */
struct mb_mmap_entry {
    uint32_t size;
    uint64_t addr;
    uint64_t len;
    uint32_t type;
} __attribute__((packed));

#define MB_MMAP_ENTRY_MIN 20 /* addr, len, type: the smallest valid size */

/* A pointer to len bytes at physical pa, through the higher-half alias of
 * the first GiB (the identity map no longer covers the first 2 MiB, where
 * loaders like to put this information). */
static const void *boot_ptr(uint64_t pa, uint64_t len)
{
    if (pa >= KERNEL_MAPPED_PHYS || len > KERNEL_MAPPED_PHYS - pa)
        kernel_panic("boot_ptr: multiboot information above 1 GiB");
    return (const void *)(uintptr_t)(KERNEL_VMA + pa);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static uint64_t align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

/* Physical end of the string at pa, its NUL included. */
static uint64_t string_end(uint64_t pa)
{
    const char *s = boot_ptr(pa, 1);
    uint64_t n = 0;
    while (s[n])
        n++;
    return pa + n + 1;
}

/* The end of everything the loader handed over (this structure, the command
 * line, modules, the memory map, the loader's name). QEMU puts some of it
 * right after the kernel image; the arena starts above it. */
static uint64_t boot_data_end(uint32_t info_phys, const struct mb_info *mbi)
{
    uint64_t end = (uint64_t)info_phys + MB_INFO_SIZE;
    if (mbi->flags & MB_INFO_CMDLINE)
        end = max_u64(end, string_end(mbi->cmdline));
    if (mbi->flags & MB_INFO_LOADER_NAME)
        end = max_u64(end, string_end(mbi->boot_loader_name));
    if (mbi->flags & MB_INFO_MMAP)
        end = max_u64(end, (uint64_t)mbi->mmap_addr + mbi->mmap_length);
    if (mbi->flags & MB_INFO_MODS) {
        uint64_t bytes = (uint64_t)mbi->mods_count * sizeof(struct mb_module);
        const struct mb_module *mod = boot_ptr(mbi->mods_addr, bytes);
        end = max_u64(end, mbi->mods_addr + bytes);
        for (uint32_t i = 0; i < mbi->mods_count; i++)
            end = max_u64(end, mod[i].mod_end);
    }
    return end;
}

/* Steps through the memory map: prev NULL gives the first entry; NULL at the
 * end or at a malformed entry. */
static const struct mb_mmap_entry *mmap_next(const struct mb_info *mbi,
                                             const struct mb_mmap_entry *prev)
{
    uintptr_t base = (uintptr_t)boot_ptr(mbi->mmap_addr, mbi->mmap_length);
    uintptr_t end = base + mbi->mmap_length;
    uintptr_t next = prev ? (uintptr_t)prev + sizeof(prev->size) + prev->size : base;
    if (next > end || end - next < sizeof(struct mb_mmap_entry))
        return NULL;
    const struct mb_mmap_entry *e = (const struct mb_mmap_entry *)next;
    return e->size >= MB_MMAP_ENTRY_MIN ? e : NULL;
}

struct span {
    uint64_t start, end; /* [start, end); empty when end <= start */
};

static uint64_t span_size(struct span s)
{
    return s.end > s.start ? s.end - s.start : 0;
}

/* Cuts everything the firmware calls not usable out of s, keeping the larger
 * side at each overlap (greedy, which is fine for one arena). */
static struct span clip_unusable(const struct mb_info *mbi, struct span s)
{
    for (const struct mb_mmap_entry *e = mmap_next(mbi, NULL); e; e = mmap_next(mbi, e)) {
        uint64_t rs = e->addr, re = e->addr + min_u64(e->len, UINT64_MAX - e->addr);
        if (e->type == MB_MMAP_USABLE || re <= s.start || rs >= s.end)
            continue;
        struct span below = {s.start, align_down(rs, KMM_PAGE_SIZE)};
        struct span above = {align_up(re, ARENA_ALIGN), s.end};
        s = span_size(below) >= span_size(above) ? below : above;
    }
    return s;
}

/*
 * The test arena: the largest usable piece of the first GiB (what boot.S
 * identity-maps) at or above floor, 2 MiB aligned at its start. Returns an
 * empty span if there is none.
 */
static struct span find_arena(const struct mb_info *mbi, uint64_t floor)
{
    struct span best = {0, 0};
    for (const struct mb_mmap_entry *e = mmap_next(mbi, NULL); e; e = mmap_next(mbi, e)) {
        if (e->type != MB_MMAP_USABLE)
            continue;
        uint64_t end = e->addr + min_u64(e->len, UINT64_MAX - e->addr);
        struct span s = {
            align_up(max_u64(e->addr, floor), ARENA_ALIGN),
            align_down(min_u64(end, KERNEL_MAPPED_PHYS), KMM_PAGE_SIZE),
        };
        s = clip_unusable(mbi, s);
        if (span_size(s) > span_size(best))
            best = s;
    }
    return best;
}

/* --- The run ----------------------------------------------------------------------- */

uintptr_t kernel_arena_base;
uint64_t kernel_arena_size;

extern const char __kernel_phys_start[], __kernel_phys_end[]; /* linker.ld, physical */

/*
 * kmain - called once by boot.S on the boot CPU, in the higher half, IRQs
 * off, with the loader's EAX (magic) and EBX (information, physical). Runs
 * every test and leaves QEMU: exit code 33 if none failed, 35 otherwise.
 */
noreturn void kmain(uint32_t magic, uint32_t info_phys)
{
    serial_init();
    idt_init();
    if (!pat_init())
        kernel_panic("kmain: IA32_PAT missing or not taking KMM_PAT_VALUE");
    if (magic != MB_BOOT_MAGIC)
        kernel_panic("kmain: not started by a Multiboot1 loader");
    const struct mb_info *mbi = boot_ptr(info_phys, sizeof(*mbi));
    if (!(mbi->flags & MB_INFO_MMAP))
        kernel_panic("kmain: the loader passed no memory map");

    uint64_t kernel_end = (uint64_t)(uintptr_t)__kernel_phys_end;
    uint64_t floor = max_u64(kernel_end, boot_data_end(info_phys, mbi));
    struct span arena = find_arena(mbi, floor);
    kernel_arena_base = (uintptr_t)arena.start; /* identity-mapped: virtual == physical */
    kernel_arena_size = span_size(arena);

    struct kmm_sink sink = {serial_sink_write, NULL};
    int failed = ktest_run(NULL, &sink);

    say("# kmm boot stub: kernel 0x%llx - 0x%llx, boot data up to 0x%llx\n",
        (unsigned long long)(uintptr_t)__kernel_phys_start, (unsigned long long)kernel_end,
        (unsigned long long)floor);
    uint64_t arena_end = arena.start + kernel_arena_size;
    say("# kmm boot stub: arena 0x%llx - 0x%llx (%llu MiB)\n", (unsigned long long)arena.start,
        (unsigned long long)arena_end, (unsigned long long)(kernel_arena_size >> 20));
    say("# kmm boot stub: %d test(s) failed\n", failed);
    kernel_exit(failed ? KERNEL_EXIT_FAIL : KERNEL_EXIT_PASS);
}
