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
#define EAGAIN    11
#define ENOSYS    38

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

/* heap: reads the first word of each of the 64 demand-zero heap pages at
 * 0x10000000 (each read is the page's first touch: it must see 0) and
 * writes the page's countdown number after it, then reads those back: exit
 * 0 if every read saw 0 and the numbers sum to 64 * 65 / 2, 1 if a read did
 * not see 0, 2 if the sum is wrong. */
PROGRAM(heap)
    movl $0x10000000, %ebx
    movl $64, %ecx
    xorl %eax, %eax
1:  addq (%rbx), %rax
    movq %rcx, 8(%rbx)
    addq $4096, %rbx
    loop 1b
    movl $1, %edi
    testq %rax, %rax
    jnz 2f
    movl $0x10000000, %ebx
    movl $64, %ecx
3:  addq 8(%rbx), %rax
    addq $4096, %rbx
    loop 3b
    movl $2, %edi
    cmpq $2080, %rax
    jne 2f
    xorl %edi, %edi
2:  EXIT
END(heap)

/* fork: stores 0x1111 in its data page (0x600000) and forks. The child
 * finds 0x1111, stores 0x2222 (a write to a copy-on-write page: its own
 * copy), pushes and pops on its stack (copy-on-write too) and exits 7 (6
 * if it did not find 0x1111). The parent waits: exit 0 if the child's
 * status is 7, its own word still 0x1111, and a store of 0x3333 to it
 * (its frame's last mapping now) reads back; else 1, 2 or 3 for the first
 * check that failed, 4 if fork failed. */
PROGRAM(fork)
    movl $0x600000, %ebx
    movq $0x1111, (%rbx)
    movl $SYS_FORK, %eax
    int $0x80
    testq %rax, %rax
    js 9f
    jnz 1f
    movl $6, %edi
    cmpq $0x1111, (%rbx)
    jne 8f
    movq $0x2222, (%rbx)
    pushq $7
    popq %rdi
    cmpq $0x2222, (%rbx)
    je 8f
    movl $6, %edi
8:  EXIT
1:  movl $SYS_WAIT, %eax
    int $0x80
    movl $1, %edi
    cmpq $7, %rax
    jne 2f
    movl $2, %edi
    cmpq $0x1111, (%rbx)
    jne 2f
    movq $0x3333, (%rbx)
    movl $3, %edi
    cmpq $0x3333, (%rbx)
    jne 2f
    xorl %edi, %edi
2:  EXIT
9:  movl $4, %edi
    EXIT
END(fork)

/* acflag: RFLAGS.AC set in ring 3 (allowed: popfq at CPL 3 sets it), then
 * a write; AC must still be set after the call (the kernel's iretq gives
 * the flags back): exit 0, or 1 if it was lost. Whether the kernel ran the
 * call with it clear is user.c's to see (user_result.kernel_ac). */
#define RFLAGS_AC 0x40000
PROGRAM(acflag)
    pushfq
    orq $RFLAGS_AC, (%rsp)
    popfq
    leaq 1f(%rip), %rdi
    movl $(2f - 1f), %esi
    movl $SYS_WRITE, %eax
    int $0x80
    pushfq
    popq %rax
    xorl %edi, %edi
    testl $RFLAGS_AC, %eax
    setz %dil
    EXIT
1:  .ascii "RFLAGS.AC set in ring 3\n"
2:
END(acflag)

/* badcall: a system call number the kernel does not have must come back
 * -ENOSYS, and the program goes on: exit 0 if it did, 1 if not. */
PROGRAM(badcall)
    movl $99, %eax
    int $0x80
    xorl %edi, %edi
    cmpq $-ENOSYS, %rax
    setne %dil
    EXIT
END(badcall)

/* deep: each child forks again until the kernel refuses (-EAGAIN at
 * USER_FORK_DEPTH); the deepest exits 0 if the refusal was -EAGAIN, 1 if
 * not, and every parent exits with its child's status. */
PROGRAM(deep)
1:  movl $SYS_FORK, %eax
    int $0x80
    testq %rax, %rax
    jz 1b
    js 2f
    movl $SYS_WAIT, %eax
    int $0x80
    movq %rax, %rdi
    EXIT
2:  xorl %edi, %edi
    cmpq $-EAGAIN, %rax
    setne %dil
    EXIT
END(deep)

    .section .note.GNU-stack, "", @progbits
