/*
 * layout.h - the demo kernel's virtual memory layout, shared by boot.S and
 * the C files (plain constants: the assembler reads this too).
 *
 *   0x0000000000000000 - 0x00007FFFFFFFFFFF  user half (4 levels; 2^56 with 5): unused
 *   0xFFFF800000000000 - ...                 the direct map: physical pa at
 *                                            HHDM_BASE + pa (RAM, and the
 *                                            first MiB for VGA and the BIOS)
 *   0xFFFFC00000000000 - +512 GiB            scratch for the hardware checks
 *                                            (kernel/hwtest.c): mapped only
 *                                            while a check runs
 *   0xFFFFFFFF80000000 - 0xFFFFFFFF8FFFFFFF  the kernel image at KERNEL_VMA +
 *                                            its physical address (1 MiB on)
 *   0xFFFFFFFF90000000 - 0xFFFFFFFF91FFFFFF  Boruix's fixed mappings: the
 *                                            shell's pgtest maps 0xFFFFFFFF90000000,
 *                                            memprottest 0xFFFFFFFF91000000
 *                                            (kernel/boruix_world.c)
 *   0xFFFFFFFF92000000 - 0xFFFFFFFF9FFFFFFF  the library's kernel virtual
 *                                            area window (vmalloc; kmm/vmalloc.h)
 *
 * The last two together are Boruix's heap window (KERNEL_HEAP_START, 256
 * MiB), split as the Boruix drop-in splits it (port/boruix/world.c).
 *
 * The direct map's base is the same with 4 and 5 levels (PML4 index 256,
 * and PML5 index 511 with LA57), so early code and the library agree on it
 * whichever mode boot.S chose.
 */
#ifndef KMM_KERNEL_LAYOUT_H
#define KMM_KERNEL_LAYOUT_H

#ifdef __ASSEMBLER__
#define LAYOUT_U64(x) x
#else
#include <stdint.h>
#define LAYOUT_U64(x) UINT64_C(x)
#endif

/* Where the higher half starts: the kernel image's physical pa is at
 * KERNEL_VMA + pa. */
#define KERNEL_VMA         LAYOUT_U64(0xFFFFFFFF80000000)
/* The direct map of all physical memory. */
#define HHDM_BASE          LAYOUT_U64(0xFFFF800000000000)
/* The hardware checks' scratch mappings (PML4 index 384: away from both). */
#define SCRATCH_BASE       LAYOUT_U64(0xFFFFC00000000000)
/* Boruix's heap window, and the library's kernel virtual area window in it
 * after the part left to fixed mappings (compat/world.h,
 * KMM_BORUIX_FIXED_PART: 32 MiB). */
#define BORUIX_HEAP_BASE   LAYOUT_U64(0xFFFFFFFF90000000)
#define BORUIX_HEAP_SIZE   LAYOUT_U64(0x10000000)
#define KVA_WINDOW_BASE    LAYOUT_U64(0xFFFFFFFF92000000)
#define KVA_WINDOW_SIZE    LAYOUT_U64(0x0E000000)
/* How much the early tables of boot.S map at HHDM_BASE (2 MiB pages). */
#define EARLY_DIRECT_BYTES LAYOUT_U64(0x100000000)

/* The boot stack (boot.S), the kernel's only stack; a guard page below. */
#define BOOT_STACK_SIZE (64 * 1024)

#endif /* KMM_KERNEL_LAYOUT_H */
