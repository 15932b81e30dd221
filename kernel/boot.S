/*
 * boot.S - the demo kernel's entry: Multiboot1 header, 32-bit protected mode
 * to 64-bit long mode, higher half, kmain().
 *
 * A Multiboot1 loader (QEMU -kernel, GRUB's "multiboot") enters _start in
 * 32-bit protected mode: paging off, interrupts off, EAX = 0x2BADB002, EBX =
 * physical address of the multiboot information. The header below carries the
 * a.out kludge (flag bit 16), so a loader places the image by the header's
 * address fields and needs no ELF parsing: QEMU loads the ELF64 and the ELF32
 * copy alike. The loader zeroes [load_end_addr, bss_end_addr), so .bss (page
 * tables and stack included) starts out zero and nothing here clears it.
 *
 * Physical memory after loading (linker.ld places it):
 *
 *   0x000000 +--------------------+
 *            | BIOS, real mode,   |  untouched (multiboot info lives somewhere
 *            | multiboot info     |  here or right after the image)
 *   0x100000 +--------------------+  __kernel_phys_start = load_addr
 *            | .boot: this header,|  VMA == LMA: runs before paging
 *            | 32-bit code, GDT   |
 *            +--------------------+  4 KiB aligned
 *            | .text .rodata      |  VMA = LMA + 0xFFFFFFFF80000000
 *            | ktest_cases .data  |
 *            +--------------------+  load_end_addr
 *            | .bss: page tables, |  zeroed by the loader
 *            | 64 KiB stack, ...  |
 *            +--------------------+  __kernel_phys_end = bss_end_addr
 *
 * Virtual memory when kmain() runs (early tables, 2 MiB pages, all RW+X):
 *
 *   0x0000000000000000 - 0x00000000001FFFFF  not mapped (NULL guard; unmapped
 *                                            once we run in the higher half)
 *   0x0000000000200000 - 0x000000003FFFFFFF  identity: virtual == physical
 *   0xFFFFFFFF80000000 - 0xFFFFFFFFBFFFFFFF  physical 0 - 1 GiB (the kernel
 *                                            image, and every low physical
 *                                            address at KERNEL_VMA + pa)
 *
 *   boot_pml4[0]   -> boot_pdpt_low[0]    -> boot_pd_low  (512 x 2 MiB)
 *   boot_pml4[511] -> boot_pdpt_high[510] -> boot_pd_high (512 x 2 MiB)
 *
 * 0xFFFFFFFF80000000 splits as PML4 index 511, PDPT index 510, PD index 0.
 * The two PDs are separate so that the identity side can lose its first
 * entry without taking the kernel's own first 2 MiB with it.
 */

#define KERNEL_VMA 0xFFFFFFFF80000000
/* The physical address of a higher-half symbol, for code that runs before
 * paging. The linker computes it modulo 2^64, so it fits a 32-bit field. */
#define PHYS(sym) ((sym) - KERNEL_VMA)

#define MB_MAGIC 0x1BADB002
#define MB_FLAG_PAGE_ALIGN (1 << 0) /* modules on page boundaries */
#define MB_FLAG_MEMINFO (1 << 1)    /* mem_* and the memory map, please */
#define MB_FLAG_AOUT_KLUDGE (1 << 16) /* the address fields below are valid */
#define MB_FLAGS (MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMINFO | MB_FLAG_AOUT_KLUDGE)

#define PTE_P (1 << 0)
#define PTE_W (1 << 1)
#define PTE_PS (1 << 7)

#define CR0_PE (1 << 0)
#define CR0_WP (1 << 16)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define CR4_PGE (1 << 7)
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)

#define CPUID_1_EDX_PGE (1 << 13)
#define CPUID_EXT_EDX_NX (1 << 20)
#define CPUID_EXT_EDX_LM (1 << 29)

#define GDT_CODE64 0x08
#define GDT_DATA 0x10

#define COM1 0x3F8
#define QEMU_EXIT_PORT 0xF4
#define QEMU_EXIT_FAIL 0x11

#define BOOT_STACK_SIZE (64 * 1024)

/* ------------------------------------------------------------------------ */
/* The Multiboot1 header: first in .boot, so in the first 8 KiB of the file. */

    .section .multiboot, "a"
    .balign 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long (0x100000000 - MB_MAGIC - MB_FLAGS) /* magic + flags + this == 0 */
    .long mb_header           /* header_addr: .boot has VMA == LMA */
    .long __kernel_phys_start /* load_addr */
    .long __kernel_load_end   /* load_end_addr: end of .data, physical */
    .long __kernel_phys_end   /* bss_end_addr: end of .bss, physical */
    .long _start              /* entry_addr */

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
    movl %edx, %ebp /* remember NX support for EFER below */

    /* Both PDs: entry i maps physical i * 2 MiB. */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $(PTE_P | PTE_W | PTE_PS), %eax
    movl %eax, PHYS(boot_pd_low)(, %ecx, 8)
    movl %eax, PHYS(boot_pd_high)(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl $(PHYS(boot_pdpt_low) + PTE_P + PTE_W), PHYS(boot_pml4)
    movl $(PHYS(boot_pdpt_high) + PTE_P + PTE_W), PHYS(boot_pml4) + 511 * 8
    movl $(PHYS(boot_pd_low) + PTE_P + PTE_W), PHYS(boot_pdpt_low)
    movl $(PHYS(boot_pd_high) + PTE_P + PTE_W), PHYS(boot_pdpt_high) + 510 * 8

    /* CR4: PAE always; PGE where the CPU has it, so that the port's global
     * flush (a PGE toggle) means what it says. */
    movl $1, %eax
    cpuid
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    testl $CPUID_1_EDX_PGE, %edx
    jz 1f
    orl $CR4_PGE, %eax
1:  movl %eax, %cr4

    movl $PHYS(boot_pml4), %eax
    movl %eax, %cr3

    /* EFER: long mode; no-execute where supported (the library's tables
     * will set NX bits, which fault as reserved bits without NXE). */
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    testl $CPUID_EXT_EDX_NX, %ebp
    jz 1f
    orl $EFER_NXE, %eax
1:  wrmsr

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
/* Flat GDT. The accessed bits are preset so the CPU never writes here. */
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF93000000FFFF /* 0x10: data, DPL 0 */
boot_gdt_end:

boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

msg_no_long_mode:
    .asciz "kmm boot stub: this CPU has no long mode\n"

/* ------------------------------------------------------------------------ */
/* The higher half. */

    .section .rodata
    .balign 16
/* The same GDT through its higher-half alias: the identity map of the first
 * 2 MiB, where the GDT is, goes away below. */
boot_gdt_ptr_high:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt + KERNEL_VMA

    .text
long_mode_high:
    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    lgdt boot_gdt_ptr_high(%rip)

    /* Unmap virtual 0 - 2 MiB so that a NULL dereference faults. Nothing
     * uses low addresses any more: kmain reads boot information through
     * the higher-half alias. */
    movq $0, boot_pd_low(%rip)
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
/* Exception stubs: 32 of them, 16 bytes apart from isr_stubs, so kmain.c
 * can build the IDT from the address alone. Each leaves the same frame:
 * vector, error code (0 where the CPU pushes none), then the CPU's frame. */

#define HAS_ERROR_CODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || \
                           (v) == 21 || (v) == 29 || (v) == 30)

    .balign 16
    .globl isr_stubs
isr_stubs:
    .set vec, 0
    .rept 32
    .balign 16
    .if !HAS_ERROR_CODE(vec)
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

/* kernel_trap(vector, error, rip, cr2) reports and exits QEMU; it does not
 * return. RSP is realigned because a fault may hit at any alignment. */
isr_common:
    movq 0(%rsp), %rdi
    movq 8(%rsp), %rsi
    movq 16(%rsp), %rdx
    movq %cr2, %rcx
    andq $-16, %rsp
    call kernel_trap
1:  cli
    hlt
    jmp 1b

/* ------------------------------------------------------------------------ */
/* Early page tables and the boot stack: zero when the loader is done. */

    .section .bss
    .balign 4096
    .globl boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt_low:
    .skip 4096
boot_pdpt_high:
    .skip 4096
    .globl boot_pd_low
boot_pd_low:
    .skip 4096
boot_pd_high:
    .skip 4096

    .balign 16
boot_stack:
    .skip BOOT_STACK_SIZE
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
