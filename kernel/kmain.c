/*
 * kmain.c - the demo kernel's C entry: bring the machine up in order, then
 * run the boot mode the command line names.
 *
 *   console  COM1 and VGA (console.c)
 *   traps    GDT, TSS, IDT: from here on a fault is reported (trap.c)
 *   boot     the loader's information copied (bootinfo.c), ACPI read (acpi.c)
 *   takeover the library manages memory and the page tables (takeover.c)
 *   mode     the first word of the command line that names a mode
 *            (boot_modes below; default: selftest)
 *
 * A mode never returns: it leaves QEMU (isa-debug-exit) or runs forever.
 */
#include <kmm/kmm.h>

#include "boot.h"
#include "console.h"
#include "crash.h"
#include "kernel.h"
#include "selftest.h"
#include "shellmode.h"
#include "takeover.h"
#include "trap.h"

/* QEMU's isa-debug-exit device, where tools/boot-test.sh puts it. */
#define QEMU_EXIT_PORT 0xF4

struct boot_info kernel_boot;
struct acpi_info kernel_acpi;

noreturn void kernel_exit(uint8_t code)
{
    outb(QEMU_EXIT_PORT, code);
    for (;;) /* not under QEMU, or the device is missing: stop here */
        __asm__ volatile("cli; hlt");
}

noreturn void kernel_panic(const char *msg)
{
    __asm__ volatile("cli");
    console_puts("kmm kernel panic: ");
    console_puts(msg);
    console_puts("\n");
    kernel_exit(KERNEL_EXIT_FAIL);
}

/* --- boot modes ------------------------------------------------------------------------ */

struct boot_mode {
    const char *name;  /* the command-line word that selects it */
    void (*run)(void); /* never returns */
    bool terminal;     /* a person's terminal on COM1: '\n' sent as CR LF */
};

/* The first entry is the default. */
static const struct boot_mode boot_modes[] = {
    {"selftest", selftest_main, false},
    {"crash", crash_main, false},
    {"shell", shell_main, true},
    {"bench", bench_main, false},
};

static const struct boot_mode *choose_mode(const struct boot_info *bi)
{
    for (size_t i = 0; i < sizeof(boot_modes) / sizeof(boot_modes[0]); i++)
        if (bootinfo_has_word(bi, boot_modes[i].name))
            return &boot_modes[i];
    return &boot_modes[0];
}

static void print_boot(const struct boot_info *bi, const struct acpi_info *ai)
{
    kprintf("# kmm kernel: Multiboot%u from \"%s\"%s, command line \"%s\", %u-level paging\n",
            bi->protocol, bi->loader, bi->uefi ? " on UEFI" : "", bi->cmdline, boot_paging_levels);
    for (size_t i = 0; i < bi->map_count; i++) {
        uint64_t end = bi->map[i].base + bi->map[i].length;
        kprintf("#   map 0x%016llx - 0x%016llx %s\n", (unsigned long long)bi->map[i].base,
                (unsigned long long)end, kmm_mem_type_name(bi->map[i].type));
    }
    for (size_t i = 0; i < bi->module_count; i++)
        kprintf("#   module 0x%llx - 0x%llx\n", (unsigned long long)bi->modules[i].start,
                (unsigned long long)bi->modules[i].end);
    if (ai->root_pa) {
        kprintf("# acpi: %s at 0x%llx, %zu tables:", ai->root_sig, (unsigned long long)ai->root_pa,
                ai->table_count);
        for (size_t i = 0; i < ai->table_count && i < ACPI_MAX_TABLES; i++)
            kprintf(" %s", ai->sigs[i]);
        kprintf("; %u CPU(s)\n", ai->cpus);
    }
}

/*
 * kmain - called once by boot.S on the boot CPU, in the higher half, IRQs
 * off, on the boot stack, with the loader's EAX (magic) and EBX
 * (information, physical).
 */
noreturn void kmain(uint32_t magic, uint32_t info_phys)
{
    console_init();
    trap_init();
    bootinfo_parse(magic, info_phys, &kernel_boot);
    /* UEFI leaves the display in a graphics mode: there is no text screen
     * at 0xB8000 to mirror to (what was written there so far went to the
     * VGA device's memory, harmlessly). */
    if (kernel_boot.uefi)
        console_vga_enable(false);
    /* Chosen now (it reads only the command line) so that the boot lines
     * already reach a terminal with its line ends. */
    const struct boot_mode *mode = choose_mode(&kernel_boot);
    console_serial_crlf(mode->terminal);
    acpi_scan(&kernel_boot, &kernel_acpi);
    print_boot(&kernel_boot, &kernel_acpi);
    takeover(&kernel_boot, &kernel_acpi);
    kprintf("# kmm kernel: boot mode %s\n", mode->name);
    mode->run();
    kernel_panic("kmain: a boot mode returned");
}
