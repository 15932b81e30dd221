/*
 * user_progs.S - the ring-3 programs of user.c (contract: user.h).
 *
 * Each is position-independent code between user_prog_<name>_start and
 * _end, copied to USER_CODE_VA of its own space: it reaches its own bytes
 * RIP-relative and the rest of its space at the fixed addresses user.h
 * gives. They live in .rodata: the kernel never runs them, it copies them.
 * System calls: int $0x80 with the number in RAX (user.h).
 */

#define SYS_EXIT  0
#define SYS_WRITE 1
#define SYS_FORK  2
#define SYS_WAIT  3
#define EFAULT    14

#define PROGRAM(name) \
    .globl user_prog_##name##_start; \
    .globl user_prog_##name##_end; \
user_prog_##name##_start:

#define END(name) \
user_prog_##name##_end:

/* exit(status in %edi) */
#define EXIT \
    movl $SYS_EXIT, %eax; \
    int $0x80; \
    ud2

    .section .rodata
    .balign 16

/* hello: one line through write, exit 0. */
PROGRAM(hello)
    leaq 1f(%rip), %rdi
    movl $(2f - 1f), %esi
    movl $SYS_WRITE, %eax
    int $0x80
    xorl %edi, %edi
    EXIT
1:  .ascii "hello from ring 3\n"
2:
END(hello)

/* stack: push 1..1024 (8 KiB of the stack), pop and sum; exit 0 if the
 * sum is 1024 * 1025 / 2, else 1. */
PROGRAM(stack)
    movl $1, %ecx
1:  pushq %rcx
    incq %rcx
    cmpq $1024, %rcx
    jbe 1b
    xorl %eax, %eax
    movl $1024, %ecx
2:  popq %rdx
    addq %rdx, %rax
    loop 2b
    xorl %edi, %edi
    cmpq $524800, %rax
    setne %dil
    EXIT
END(stack)

/* kread: read a word of the kernel's text (RDI at the start), present but
 * not for ring 3: a page fault kills it before the exit. */
PROGRAM(kread)
    movq (%rdi), %rax
    movl $2, %edi
    EXIT
END(kread)

/* priv: cli at CPL 3 with IOPL 0 is a general protection fault. */
PROGRAM(priv)
    cli
    movl $2, %edi
    EXIT
END(priv)

/* badwrite: write must refuse with -EFAULT the kernel's text (RDI at the
 * start), a non-canonical address, and a buffer running off the end of the
 * data page into nothing: exit 0 if it refused all three, else the number
 * of the first it did not. */
PROGRAM(badwrite)
    movl $16, %esi
    movl $SYS_WRITE, %eax
    int $0x80
    movl $1, %edi
    cmpq $-EFAULT, %rax
    jne 1f
    movabsq $0x8000000000000000, %rdi
    movl $16, %esi
    movl $SYS_WRITE, %eax
    int $0x80
    movl $2, %edi
    cmpq $-EFAULT, %rax
    jne 1f
    movl $0x600ff8, %edi
    movl $16, %esi
    movl $SYS_WRITE, %eax
    int $0x80
    movl $3, %edi
    cmpq $-EFAULT, %rax
    jne 1f
    xorl %edi, %edi
1:  EXIT
END(badwrite)

    .section .note.GNU-stack, "", @progbits
