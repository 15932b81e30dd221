/*
 * acpi.h - the little the kernel reads from ACPI before the library takes
 * over: where the tables are (so that they are reserved, then handed back)
 * and how many CPUs the MADT lists (kmm_config.cpu_count).
 */
#ifndef KMM_KERNEL_ACPI_H
#define KMM_KERNEL_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "bootinfo.h"

#define ACPI_MAX_TABLES 32

struct acpi_info {
    uint64_t rsdp_pa;   /* where the RSDP was found (0: the loader's copy) */
    uint64_t root_pa;   /* the XSDT or RSDT; 0: no ACPI */
    char root_sig[5];   /* "XSDT" or "RSDT" */
    size_t table_count; /* tables the root lists (at most ACPI_MAX_TABLES kept) */
    char sigs[ACPI_MAX_TABLES][5];
    unsigned cpus; /* enabled processors in the MADT; 0: no MADT */
};

/*
 * acpi_scan - find the RSDP (bi's copy from a Multiboot2 loader, else the
 * EBDA and the BIOS area), walk the root table and every table it lists,
 * reserve each (ACPI-reclaimable) in bi, and count the MADT's processors.
 * A machine without ACPI, or a table that fails its checksum or lies
 * beyond the early direct map, is reported and skipped: never a panic.
 * Before the library takes over (the early direct map).
 */
void acpi_scan(struct boot_info *bi, struct acpi_info *out);

#endif /* KMM_KERNEL_ACPI_H */
