/*
 * bootinfo.h - what the boot loader handed over, read once from Multiboot1
 * or Multiboot2 information and copied, so that the loader's memory can be
 * given back (kernel/bootinfo.c).
 *
 * The memory map reaches the library through kmm/bootmap.h's adapters. The
 * reserved list holds what kmm_init must not hand out: memory below 1 MiB
 * (real-mode structures, the EBDA, VGA, the BIOS), the kernel image (its
 * early page tables and stacks are in .bss), the modules, the boot
 * information (as bootloader-reclaimable: nothing reads it after
 * bootinfo_parse) and the ACPI tables (acpi.c adds them, as
 * ACPI-reclaimable; takeover.c hands both kinds back after kmm_init).
 */
#ifndef KMM_KERNEL_BOOTINFO_H
#define KMM_KERNEL_BOOTINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/memmap.h>

#define BOOT_MAX_MAP      128 /* memory map entries kept (QEMU gives < 10) */
#define BOOT_MAX_RESERVED 48
#define BOOT_MAX_MODULES  8
#define BOOT_CMDLINE_MAX  256
#define BOOT_LOADER_MAX   64
#define BOOT_RSDP_MAX     36 /* an ACPI 2.0 RSDP */

#define MB1_BOOT_MAGIC 0x2BADB002u
#define MB2_BOOT_MAGIC 0x36D76289u

struct boot_module {
    uint64_t start, end; /* physical, [start, end) */
};

struct boot_info {
    unsigned protocol;                   /* 1 or 2 (Multiboot) */
    char cmdline[BOOT_CMDLINE_MAX];      /* "" if none; cut if longer */
    char loader[BOOT_LOADER_MAX];        /* the loader's name, "" if not given */
    struct kmm_region map[BOOT_MAX_MAP]; /* the firmware's map, as the adapter wrote it */
    size_t map_count;
    struct kmm_region reserved[BOOT_MAX_RESERVED]; /* kmm_config.reserved */
    size_t reserved_count;
    struct boot_module modules[BOOT_MAX_MODULES];
    size_t module_count;
    uint8_t rsdp[BOOT_RSDP_MAX]; /* a copy of the ACPI RSDP (Multiboot2 tags 14/15) */
    size_t rsdp_len;             /* 0: the loader gave none (acpi.c searches the BIOS area) */
    uint64_t ram_end;            /* the end of the highest RAM the map describes */
    bool uefi;                   /* booted from UEFI firmware (Multiboot2's EFI tags):
                                    no VGA text screen, ACPI tables in reclaimable RAM */
};

/*
 * bootinfo_parse - fill *bi from the loader's registers (EAX magic, EBX the
 * information's physical address), reading through the early direct map.
 * Panics with a message on an unknown magic, information or a memory map
 * the direct map does not reach, or malformed information: without a memory
 * map there is nothing to boot on.
 */
void bootinfo_parse(uint32_t magic, uint32_t info_pa, struct boot_info *bi);

/* Add [base, base + len) of type (not KMM_MEM_USABLE) to bi's reserved list;
 * panics when the list is full. len 0 adds nothing. */
void bootinfo_reserve(struct boot_info *bi, uint64_t base, uint64_t len, uint32_t type);

/*
 * The value of "key=value" in the command line, copied to out (cap bytes,
 * NUL included): true, or false if key= does not occur. A bare word w is
 * found by bootinfo_has_word(bi, w).
 */
bool bootinfo_option(const struct boot_info *bi, const char *key, char *out, size_t cap);
bool bootinfo_has_word(const struct boot_info *bi, const char *word);

#endif /* KMM_KERNEL_BOOTINFO_H */
