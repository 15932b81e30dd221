/*
 * isr.S - the trap entry stubs and the recovery point of expected faults
 * (contract: trap.h).
 *
 * 256 stubs, ISR_STUB_SIZE bytes apart from isr_stubs, so trap.c builds
 * the IDT from the address alone. Each leaves the same frame: vector,
 * error code (0 where the CPU pushes none), then the CPU's frame; then
 * isr_common pushes the general registers (struct trap_frame), calls
 * trap_dispatch(frame) and returns through whatever the frame says then.
 */

#define ISR_VECTORS 256
#define ISR_STUB_SIZE 16

#define HAS_ERROR_CODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || \
                           (v) == 21 || (v) == 29 || (v) == 30)

    .text
    .balign ISR_STUB_SIZE
    .globl isr_stubs
isr_stubs:
    .set vec, 0
    .rept ISR_VECTORS
    .balign ISR_STUB_SIZE
    .if !HAS_ERROR_CODE(vec)
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

/* The CPU aligned RSP to 16 before its 5-word frame; with the error code,
 * the vector and 15 registers the frame is 22 words, so RSP is aligned
 * again at the call. */
isr_common:
    /* SMAP's guard must hold in the kernel whatever the interrupted code
     * left in RFLAGS.AC: ring 3 may set it (popfq), and an exception does
     * not clear it (Linux's entry code clears it the same way). clac
     * exists only with SMAP (trap.c sets trap_smap_clac then); the frame
     * keeps the interrupted code's flags for iretq. */
    testb $1, trap_smap_clac(%rip)
    jz 1f
    clac
1:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp /* vector, error code */
    iretq

/* What a later "return" from the calling function needs, into the eight
 * words at RDI: the callee-saved registers, RSP after the return, and the
 * return address (struct trap_catch's and struct user_ctx's first words).
 * Clobbers RAX. */
.macro SAVE_RETURN_POINT
    movq %rbx, 0(%rdi)
    movq %rbp, 8(%rdi)
    movq %r12, 16(%rdi)
    movq %r13, 24(%rdi)
    movq %r14, 32(%rdi)
    movq %r15, 40(%rdi)
    leaq 8(%rsp), %rax /* RSP after the return */
    movq %rax, 48(%rdi)
    movq (%rsp), %rax  /* the return address */
    movq %rax, 56(%rdi)
.endm

/* int trap_catch_arm(struct trap_catch *c): save what a return needs
 * (struct trap_catch's first eight words), arm c, return 0. trap.c resumes
 * a fault here by loading these into the frame with RAX = 1. */
    .globl trap_catch_arm
    .type trap_catch_arm, @function
trap_catch_arm:
    SAVE_RETURN_POINT
    movq %rdi, trap_armed(%rip)
    xorl %eax, %eax
    ret


/* void user_enter(struct user_ctx *ctx, const struct trap_frame *regs):
 * save what a return needs in ctx (struct user_ctx: the callee-saved
 * registers, RSP and the return address as trap_catch_arm does, then
 * RFLAGS), load every general register from regs and iretq to regs' RIP,
 * CS, RFLAGS, RSP and SS: ring 3. It "returns" when user.c rewrites a trap
 * frame to resume at the saved point (with RAX as the return value). */
    .globl user_enter
    .type user_enter, @function
user_enter:
    SAVE_RETURN_POINT
    pushfq
    popq %rax
    movq %rax, 64(%rdi)
    movq %rsi, %rax
    pushq 168(%rax) /* ss */
    pushq 160(%rax) /* rsp */
    pushq 152(%rax) /* rflags */
    pushq 144(%rax) /* cs */
    pushq 136(%rax) /* rip */
    movq 0(%rax), %r15
    movq 8(%rax), %r14
    movq 16(%rax), %r13
    movq 24(%rax), %r12
    movq 32(%rax), %r11
    movq 40(%rax), %r10
    movq 48(%rax), %r9
    movq 56(%rax), %r8
    movq 64(%rax), %rbp
    movq 72(%rax), %rdi
    movq 80(%rax), %rsi
    movq 88(%rax), %rdx
    movq 96(%rax), %rcx
    movq 104(%rax), %rbx
    movq 112(%rax), %rax
    iretq

    .section .note.GNU-stack, "", @progbits
