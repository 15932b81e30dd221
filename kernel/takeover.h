/*
 * takeover.h - the library takes over the machine (kernel/takeover.c).
 *
 *   1. the early direct map grows to all RAM (1 GiB pages above 4 GiB);
 *   2. kmm_init gets the firmware map and the reserved ranges (bootinfo.h);
 *   3. the library builds the final kernel tables in its kernel space:
 *        direct map      HHDM_BASE + pa, read-write, no-execute, global,
 *                        1 GiB / 2 MiB pages where aligned; the first MiB
 *                        write-back but VGA memory (0xA0000-0xBFFFF) uncached
 *        .text           read-execute      .rodata (and the test tables) read-only
 *        .data .bss      read-write, no-execute, except the stacks' guard pages
 *      and nothing else: the low identity map and .boot are gone;
 *   4. the CPU switches to them (CR3); IA32_PAT was programmed before;
 *   5. the boot loader's information and the ACPI tables, read already, go
 *      back to the page allocator (kmm_page_add_memory).
 * From then on kernel_kmm is the instance and kalloc/kfree its heap.
 */
#ifndef KMM_KERNEL_TAKEOVER_H
#define KMM_KERNEL_TAKEOVER_H

#include <stddef.h>
#include <stdint.h>

#include "acpi.h"
#include "bootinfo.h"

/* The kernel image's sections, as mapped (virtual, page aligned). */
struct kernel_section {
    const char *name;
    uint64_t start, end; /* [start, end) */
    unsigned prot;       /* KMM_PROT_* it is mapped with */
};
#define KERNEL_SECTIONS 3

/* Does it all; panics with the library's error if a step fails. Once, on the
 * boot CPU, before any boot mode runs. */
void takeover(const struct boot_info *bi, const struct acpi_info *ai);

/* The sections as takeover() mapped them (for the W^X check). */
const struct kernel_section *kernel_sections(void);

/* The local TLB invalidations the library has had the machine do so far
 * (kernel/port: tlb_flushes). */
unsigned long kernel_tlb_flushes(void);

/* The kernel's heap: kmm_malloc / kmm_free on kernel_kmm (kmm/heap.h);
 * kalloc returns NULL when out of memory. IRQs on. */
void *kalloc(size_t size);
void kfree(void *p);

#endif /* KMM_KERNEL_TAKEOVER_H */
