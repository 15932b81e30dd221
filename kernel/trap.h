/*
 * trap.h - CPU exceptions: the GDT with its TSS, the IDT, the reports, and
 * expected faults for the hardware self-tests (kernel/trap.c, isr.S).
 *
 * Every vector has a stub (isr.S) that saves all general registers into a
 * struct trap_frame and calls trap_dispatch(). An exception nobody expects
 * is reported on the console (vector, error code, every register, and for
 * a page fault the address, the access and the reason from a walk of the
 * live tables) and ends the run: QEMU exits with "fail". The double fault
 * runs on a stack of its own (IST1), so a kernel stack overflow, which
 * faults again while the CPU pushes the page fault's frame onto the guard
 * page, is reported too instead of resetting the machine.
 */
#ifndef KMM_KERNEL_TRAP_H
#define KMM_KERNEL_TRAP_H

#include <stdbool.h>
#include <stdint.h>

/* What isr.S saves, lowest address first: the general registers, the
 * vector, the error code (0 where the CPU pushes none), then the CPU's own
 * frame. trap_dispatch may change it: the stub restores from it. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};

#define TRAP_DE         0  /* divide error */
#define TRAP_UD         6  /* invalid opcode */
#define TRAP_DF         8  /* double fault */
#define TRAP_GP         13 /* general protection */
#define TRAP_PF         14 /* page fault */
#define TRAP_EXCEPTIONS 32
#define TRAP_SYSCALL    0x80 /* int $0x80: the only gate ring 3 may use (user.h) */

/* RFLAGS.AC: alignment check; with SMAP on, kernel access to user pages
 * allowed (stac sets it, clac clears it). */
#define TRAP_RFLAGS_AC (UINT64_C(1) << 18)

/* Segment selectors (trap.c's GDT). The user ones carry RPL 3. */
#define TRAP_KERNEL_CS 0x08
#define TRAP_KERNEL_SS 0x10
#define TRAP_USER_SS   0x2B
#define TRAP_USER_CS   0x33

/* Page-fault error code bits. */
#define PF_PRESENT (1u << 0) /* a protection violation (else: not present) */
#define PF_WRITE   (1u << 1)
#define PF_USER    (1u << 2)
#define PF_RSVD    (1u << 3) /* a reserved bit set in a paging entry */
#define PF_FETCH   (1u << 4) /* an instruction fetch */

/* Load the kernel's GDT (code, data, TSS with the double fault's stack),
 * the TSS and a full IDT, turn SMEP and SMAP on where the CPU has them, and
 * mask the legacy PICs' IRQs. Once, early in kmain, before anything can
 * fault usefully; the GDT and IDT live in .data, so the library's tables map them. */
void trap_init(void);

/* The first byte of the page below the double-fault stack: never mapped in
 * the library's tables (takeover.c). */
const void *trap_ist_guard(void);

/* Whether the CPU enforces SMEP (the kernel never executes a user page)
 * and SMAP (the kernel never reads or writes one unless it says so):
 * trap_init turns both on where CPUID offers them (-cpu max does). */
bool trap_smep_on(void);
bool trap_smap_on(void);

/* A deliberate kernel access to user pages: between these, SMAP lets it
 * through (stac / clac; nothing without SMAP). Keep the window short. */
void trap_user_access_begin(void);
void trap_user_access_end(void);

/* Sets the stack the CPU switches to when ring 3 traps (the TSS's RSP0) and
 * returns the previous one (user.c: each program's traps land below the
 * kernel frames that started it). */
uint64_t trap_set_kernel_stack(uint64_t rsp0);

/* The exception's name ("#PF page fault"), or "interrupt" for vectors from
 * TRAP_EXCEPTIONS up. */
const char *trap_name(uint64_t vector);

/* Prints what a page fault at addr with error code err was: the access,
 * each level of the live tables' walk and the reason, and what is known of
 * the address. */
void trap_report_page_fault(uint64_t addr, uint64_t err);

/* --- expected faults -------------------------------------------------------------- */

/* What the trap handler saw. */
struct trap_fault {
    uint64_t vector; /* TRAP_* */
    uint64_t error;  /* the error code */
    uint64_t addr;   /* CR2: the faulting address for a page fault */
    uint64_t rip;    /* where it happened */
};

/* A recovery point: trap_catch_arm saves the callee-saved registers, the
 * stack pointer and its own return address here (isr.S reads the layout). */
struct trap_catch {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
    struct trap_fault fault;
};

/*
 * trap_catch_arm - arm c as the recovery point and return 0. If an
 * exception (vectors 0-31; a double fault included) happens before
 * trap_catch_disarm(), the handler records it in c->fault, disarms, and
 * resumes as if this call returned again, with 1 (setjmp-style: locals the
 * caller changed since are indeterminate unless volatile). One at a time;
 * the arming function must not return before the fault or the disarm.
 */
int trap_catch_arm(struct trap_catch *c) __attribute__((returns_twice));
void trap_catch_disarm(void);

/* Probes: whether reading, writing (the byte at p, written back with its
 * own value) or executing (a call to p; the byte there should be a RET)
 * faults. On a fault, *f says how, and true is returned. */
bool trap_probe_read(const void *p, struct trap_fault *f);
bool trap_probe_write(void *p, struct trap_fault *f);
bool trap_probe_exec(const void *p, struct trap_fault *f);
/* Push onto the stack until something faults (the guard page below it):
 * true, with *f, if the run survived that. */
bool trap_probe_stack_overflow(struct trap_fault *f);

/* --- the page-fault entry ---------------------------------------------------------- */

struct kmm_aspace;

/*
 * trap_activate_space - make as the space active on this CPU (its root in
 * CR3: kmm_aspace_activate) and the one whose faults the page-fault handler
 * resolves; NULL for the kernel space. A page fault goes to the library's
 * fault entry first (kmm_vm_fault on that space, which resolves demand-zero
 * and copy-on-write faults; one in the kernel half is the kernel space's);
 * when it is handled, the handler returns to the faulting instruction, and
 * only a fault it does not handle reaches an armed recovery point or the
 * report. The demo kernel runs on one CPU with IRQs off in the handler: a
 * kernel with more CPUs turns IRQs back on first (kmm_vm_fault may wait for
 * a TLB shootdown).
 */
void trap_activate_space(struct kmm_aspace *as);

/* How many page faults the library's fault entry has resolved. */
uint64_t trap_faults_resolved(void);

/* Called by isr.S for every vector. A trap from ring 3 goes to user_trap
 * (user.h); one from the kernel to an armed recovery point, else to the
 * report that ends the run. */
void trap_dispatch(struct trap_frame *f);

#endif /* KMM_KERNEL_TRAP_H */
