/*
 * boot.S - the demo kernel's entry: Multiboot1 and Multiboot2 headers,
 * 32-bit protected mode to 64-bit long mode (4- or 5-level paging), higher
 * half, kmain().
 *
 * Two loaders, one image:
 *   - Multiboot1 (QEMU -kernel, GRUB's "multiboot"): EAX = 0x2BADB002,
 *     EBX = physical address of the multiboot information. The header
 *     carries the a.out kludge (flag bit 16), so the loader places the image
 *     by the header's address fields and needs no ELF parsing: QEMU loads
 *     the ELF64 and the ELF32 copy alike.
 *   - Multiboot2 (GRUB's "multiboot2", the ISO): EAX = 0x36D76289, EBX =
 *     physical address of the boot information. The header's address tag is
 *     Multiboot2's a.out kludge: the same four addresses.
 * Both enter _start in 32-bit protected mode, paging off, interrupts off,
 * and zero [load_end_addr, bss_end_addr), so .bss (page tables and stacks
 * included) starts out zero and nothing here clears it.
 *
 * Physical memory after loading (linker.ld places it):
 *
 *   0x000000 +--------------------+
 *            | BIOS, real mode,   |  reserved (the loaders put boot
 *            | boot information   |  information here or anywhere below 4 GiB)
 *   0x100000 +--------------------+  __kernel_phys_start = load_addr
 *            | .boot: headers,    |  VMA == LMA: runs before paging
 *            | 32-bit code, GDT   |
 *            +--------------------+  4 KiB aligned
 *            | .text .rodata      |  VMA = LMA + 0xFFFFFFFF80000000
 *            | ktest_cases .data  |
 *            +--------------------+  load_end_addr
 *            | .bss: early tables,|  zeroed by the loader
 *            | stacks, ...        |
 *            +--------------------+  __kernel_phys_end = bss_end_addr
 *
 * Virtual memory when kmain() runs (early tables, 2 MiB pages, all RW+X):
 *
 *   0x0000000000000000 - ...                 not mapped (the identity map of
 *                                            the first 4 GiB is dropped once
 *                                            we run in the higher half)
 *   0xFFFF800000000000 - +4 GiB              the early direct map: physical
 *                                            0 - 4 GiB at HHDM_BASE + pa
 *                                            (kernel/early_map.c extends it)
 *   0xFFFFFFFF80000000 - 0xFFFFFFFFBFFFFFFF  physical 0 - 1 GiB: the kernel
 *
 *   4 levels: CR3 -> boot_pml4
 *   5 levels: CR3 -> boot_pml5; boot_pml5[0] and [511] -> boot_pml4
 *   boot_pml4[0]   -> boot_pdpt_low  (identity; dropped in long_mode_high)
 *   boot_pml4[256] -> boot_pdpt_low  [0..3] -> boot_pd + 0..3 (4 x 512 x 2 MiB)
 *   boot_pml4[511] -> boot_pdpt_high [510]  -> boot_pd + 0   (the first GiB)
 *
 * 0xFFFF800000000000 is PML4 index 256 (and PML5 index 511 with LA57);
 * 0xFFFFFFFF80000000 is PML4 index 511, PDPT index 510. With LA57 the
 * lower half's PML5 entry 0 and the kernel half's entry 511 share the one
 * PML4, so everything below it is the same in both modes.
 *
 * Paging levels: 5 (LA57) whenever the CPU offers it (CPUID.7.0:ECX[16]),
 * else 4. CR4.LA57 can only change with paging off, so the choice is made
 * here once; `-cpu max,la57=off` boots the 4-level kernel on a CPU that has
 * it. boot_paging_levels tells the C side.
 */

#include "layout.h"

/* The physical address of a higher-half symbol, for code that runs before
 * paging. The linker computes it modulo 2^64, so it fits a 32-bit field. */
#define PHYS(sym) ((sym) - KERNEL_VMA)

#define MB_MAGIC 0x1BADB002
#define MB_FLAG_PAGE_ALIGN (1 << 0) /* modules on page boundaries */
#define MB_FLAG_MEMINFO (1 << 1)    /* mem_* and the memory map, please */
#define MB_FLAG_AOUT_KLUDGE (1 << 16) /* the address fields below are valid */
#define MB_FLAGS (MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMINFO | MB_FLAG_AOUT_KLUDGE)

#define MB2_MAGIC 0xE85250D6
#define MB2_ARCH_I386 0
#define MB2_TAG_END 0
#define MB2_TAG_ADDRESS 2
#define MB2_TAG_ENTRY 3
#define MB2_TAG_MODULE_ALIGN 6

#define PTE_P (1 << 0)
#define PTE_W (1 << 1)
#define PTE_PS (1 << 7)

#define CR0_PE (1 << 0)
#define CR0_WP (1 << 16)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define CR4_PGE (1 << 7)
#define CR4_LA57 (1 << 12)
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)

#define CPUID_1_EDX_PGE (1 << 13)
#define CPUID_7_ECX_LA57 (1 << 16)
#define CPUID_EXT_EDX_NX (1 << 20)
#define CPUID_EXT_EDX_LM (1 << 29)

#define GDT_CODE64 0x08
#define GDT_DATA 0x10

#define COM1 0x3F8
#define QEMU_EXIT_PORT 0xF4
#define QEMU_EXIT_FAIL 0x11

#define EARLY_DIRECT_GIB 4 /* boot_pd holds this many PDs */
#define HHDM_PML4_INDEX 256
#define KERNEL_PDPT_INDEX 510

/* ------------------------------------------------------------------------ */
/* The headers: first in .boot, so in the first 8 KiB of the file
 * (Multiboot1's limit; Multiboot2's is 32 KiB, 8-byte aligned). */

    .section .multiboot, "a"
    .balign 8
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long (0x100000000 - MB_MAGIC - MB_FLAGS) /* magic + flags + this == 0 */
    .long mb_header           /* header_addr: .boot has VMA == LMA */
    .long __kernel_phys_start /* load_addr */
    .long __kernel_load_end   /* load_end_addr: end of .data, physical */
    .long __kernel_phys_end   /* bss_end_addr: end of .bss, physical */
    .long _start              /* entry_addr */

    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long (0x100000000 - MB2_MAGIC - MB2_ARCH_I386 - (mb2_header_end - mb2_header))
    /* The address tag: where the image goes, as Multiboot1's fields. */
    .balign 8
    .word MB2_TAG_ADDRESS, 0
    .long 24
    .long mb2_header
    .long __kernel_phys_start
    .long __kernel_load_end
    .long __kernel_phys_end
    .balign 8
    .word MB2_TAG_ENTRY, 0
    .long 12
    .long _start
    /* Modules on page boundaries (no fields). */
    .balign 8
    .word MB2_TAG_MODULE_ALIGN, 0
    .long 8
    .balign 8
    .word MB2_TAG_END, 0
    .long 8
mb2_header_end:

/* ------------------------------------------------------------------------ */
/* 32-bit entry. No stack: nothing here calls. EDI/ESI carry the loader's
 * EAX/EBX through to kmain(magic, info_phys), whose first two arguments
 * arrive in RDI and RSI. */

    .section .boot.text, "ax"
    .code32
    .globl _start
    .type _start, @function
_start:
    cli
    cld
    movl %eax, %edi
    movl %ebx, %esi

    /* Long mode needs CPUID leaf 0x80000001 and its LM bit. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $CPUID_EXT_EDX_LM, %edx
    jz no_long_mode
    /* EFER: long mode; no-execute where supported (the library's tables
     * set NX bits, which fault as reserved bits without NXE). Set now,
     * while this leaf's answer is at hand: it only takes effect with CR0.PG. */
    movl %edx, %ebx
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    testl $CPUID_EXT_EDX_NX, %ebx
    jz 1f
    orl $EFER_NXE, %eax
1:  wrmsr

    /* boot_pd: entry i maps physical i * 2 MiB, for the first 4 GiB. The
     * high half of each entry stays 0: physical addresses below 4 GiB. */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $(PTE_P | PTE_W | PTE_PS), %eax
    movl %eax, PHYS(boot_pd)(, %ecx, 8)
    incl %ecx
    cmpl $(EARLY_DIRECT_GIB * 512), %ecx
    jne 1b

    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $(PHYS(boot_pd) + PTE_P + PTE_W), %eax
    movl %eax, PHYS(boot_pdpt_low)(, %ecx, 8)
    incl %ecx
    cmpl $EARLY_DIRECT_GIB, %ecx
    jne 1b

    movl $(PHYS(boot_pdpt_low) + PTE_P + PTE_W), PHYS(boot_pml4)
    movl $(PHYS(boot_pdpt_low) + PTE_P + PTE_W), PHYS(boot_pml4) + HHDM_PML4_INDEX * 8
    movl $(PHYS(boot_pdpt_high) + PTE_P + PTE_W), PHYS(boot_pml4) + 511 * 8
    movl $(PHYS(boot_pd) + PTE_P + PTE_W), PHYS(boot_pdpt_high) + KERNEL_PDPT_INDEX * 8

    /* CR4 is built in EBP (CPUID leaves clobber the other four): PAE
     * always; PGE where the CPU has it, so that the port's global flush (a
     * PGE toggle) means what it says. */
    movl $1, %eax
    cpuid
    movl %cr4, %ebp
    orl $CR4_PAE, %ebp
    testl $CPUID_1_EDX_PGE, %edx
    jz 1f
    orl $CR4_PGE, %ebp
1:
    /* LA57 where leaf 7 exists and has it: then CR3 holds the PML5. */
    movl $4, PHYS(boot_paging_levels)
    xorl %eax, %eax
    cpuid
    cmpl $7, %eax
    jb 1f
    movl $7, %eax
    xorl %ecx, %ecx
    cpuid
    testl $CPUID_7_ECX_LA57, %ecx
    jz 1f
    orl $CR4_LA57, %ebp
    movl $(PHYS(boot_pml4) + PTE_P + PTE_W), PHYS(boot_pml5)
    movl $(PHYS(boot_pml4) + PTE_P + PTE_W), PHYS(boot_pml5) + 511 * 8
    movl $5, PHYS(boot_paging_levels)
1:  movl $PHYS(boot_pml4), %eax
    cmpl $5, PHYS(boot_paging_levels)
    jne 1f
    movl $PHYS(boot_pml5), %eax
1:  movl %ebp, %cr4
    movl %eax, %cr3

    lgdt boot_gdt_ptr
    movl %cr0, %eax
    orl $(CR0_PE | CR0_WP | CR0_PG), %eax
    movl %eax, %cr0
    ljmp $GDT_CODE64, $long_mode_low

/* Print the message at ESI on COM1 (QEMU needs no UART setup for that),
 * exit QEMU with "fail" and stop. */
no_long_mode:
    movl $msg_no_long_mode, %esi
1:  movb (%esi), %al
    testb %al, %al
    jz 2f
    movw $COM1, %dx
    outb %al, %dx
    incl %esi
    jmp 1b
2:  movb $QEMU_EXIT_FAIL, %al
    movw $QEMU_EXIT_PORT, %dx
    outb %al, %dx
3:  hlt
    jmp 3b

/* 64-bit, still at the identity-mapped low address: leave for the higher
 * half, where the rest of the kernel is linked. */
    .code64
long_mode_low:
    movw $GDT_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $long_mode_high, %rax
    jmp *%rax

    .section .boot.rodata, "a"
    .balign 16
/* Flat GDT. The accessed bits are preset so the CPU never writes here.
 * kernel/trap.c replaces it (with a TSS) before the library's tables,
 * which do not map .boot, are loaded. */
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF93000000FFFF /* 0x10: data, DPL 0 */
boot_gdt_end:

boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

msg_no_long_mode:
    .asciz "kmm kernel: this CPU has no long mode\n"

/* ------------------------------------------------------------------------ */
/* The higher half. */

    .section .rodata
    .balign 16
/* The same GDT through its higher-half alias: the identity map goes away
 * below. */
boot_gdt_ptr_high:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt + KERNEL_VMA

    .text
long_mode_high:
    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    lgdt boot_gdt_ptr_high(%rip)

    /* Drop the identity map (PML4 entry 0; with LA57 also PML5 entry 0) so
     * that a NULL dereference faults. Nothing uses low addresses any more:
     * kmain reads boot information through the direct map. */
    movq $0, boot_pml4(%rip)
    movq $0, boot_pml5(%rip)
    movq %cr3, %rax
    movq %rax, %cr3

    /* kmain(uint32_t magic, uint32_t info_phys): zero-extend both. */
    movl %edi, %edi
    movl %esi, %esi
    call kmain
1:  cli
    hlt
    jmp 1b

/* ------------------------------------------------------------------------ */
/* Early page tables and the boot stack: zero when the loader is done.
 * boot_stack_guard is never mapped in the library's tables (takeover.c), so
 * running off the bottom of the stack faults (a double fault on its own
 * stack, trap.c) instead of overwriting the tables below. */

    .section .bss
    .balign 4096
    .globl boot_pml5, boot_pml4, boot_pdpt_low, boot_pd
boot_pml5:
    .skip 4096
boot_pml4:
    .skip 4096
boot_pdpt_low:
    .skip 4096
boot_pdpt_high:
    .skip 4096
boot_pd:
    .skip 4096 * EARLY_DIRECT_GIB

    .globl boot_stack_guard, boot_stack, boot_stack_top
boot_stack_guard:
    .skip 4096
boot_stack:
    .skip BOOT_STACK_SIZE
boot_stack_top:

    .balign 4
    .globl boot_paging_levels
boot_paging_levels:
    .skip 4

    .section .note.GNU-stack, "", @progbits
