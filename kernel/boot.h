/*
 * boot.h - what kmain found out at boot, for every boot mode: the loader's
 * information and ACPI's (kernel/kmain.c fills them before any mode runs).
 */
#ifndef KMM_KERNEL_BOOT_H
#define KMM_KERNEL_BOOT_H

#include "acpi.h"
#include "bootinfo.h"

extern struct boot_info kernel_boot;
extern struct acpi_info kernel_acpi;
/* 4, or 5 with LA57 (boot.S chose). */
extern const unsigned boot_paging_levels;

#endif /* KMM_KERNEL_BOOT_H */
