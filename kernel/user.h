/*
 * user.h - small programs in ring 3, each in an address space of its own
 * that the library builds (kernel/user.c, the programs in user_progs.S).
 *
 * There is no scheduler: user_run enters the program and returns when it
 * ends, by its exit call or killed by an exception. A trap from ring 3
 * (trap.c hands every one to user_trap) is a system call (int $0x80), or a
 * fault: a page fault the library's fault entry resolves goes back to the
 * program, anything else kills it with a one-line report, and the kernel
 * goes on. fork runs the child to its end inside the call (vfork's order,
 * fork's copy), so a parent's `wait` always finds it finished.
 *
 * A program's space (every page owned by its mapping, so destroying the
 * space frees them all):
 *
 *   USER_CODE_VA   the program's bytes, read-execute
 *   USER_DATA_VA   one zeroed page, read-write
 *   USER_HEAP_VA   USER_HEAP_PAGES of demand-zero memory, read-write: a
 *                  page gets a zeroed frame at its first touch (the
 *                  library's fault entry, kmm_vm_fault)
 *   USER_STACK_TOP USER_STACK_PAGES below it, read-write; RSP starts here
 *
 * System calls: RAX the number, RDI, RSI the arguments, the result in RAX
 * (a negative errno on failure):
 *
 *   USER_SYS_EXIT   exit(status): the program ends; user_run reports status
 *   USER_SYS_WRITE  write(buf, len): at most USER_WRITE_MAX bytes of the
 *                   program's memory to the console; -EFAULT if any byte is
 *                   not readable by ring 3
 *   USER_SYS_FORK   fork(): 0 in the child, the child's id in the parent
 *   USER_SYS_WAIT   wait(): the last child's exit status (killed: -1), or
 *                   -ECHILD
 */
#ifndef KMM_KERNEL_USER_H
#define KMM_KERNEL_USER_H

#include <stdint.h>

#include "trap.h"

#define USER_CODE_VA     UINT64_C(0x400000)
#define USER_DATA_VA     UINT64_C(0x600000)
#define USER_HEAP_VA     UINT64_C(0x10000000)
#define USER_HEAP_PAGES  64u
#define USER_STACK_TOP   UINT64_C(0x7FFF0000)
#define USER_STACK_PAGES 4u
#define USER_CODE_MAX    8192u /* the largest program: two pages */
#define USER_WRITE_MAX   256u
#define USER_FORK_DEPTH  4u /* children of children, at most */

#define USER_SYS_EXIT  0
#define USER_SYS_WRITE 1
#define USER_SYS_FORK  2
#define USER_SYS_WAIT  3

#define USER_EFAULT 14
#define USER_ECHILD 10
#define USER_ENOMEM 12
#define USER_EAGAIN 11
#define USER_ENOSYS 38

/* A program: its name, what it shows, and its bytes (user_progs.S). */
struct user_prog {
    const char *name;
    const char *what;
    const uint8_t *start, *end;
};

/* The programs; *count gets how many. */
const struct user_prog *user_progs(unsigned *count);
/* The program called name, or NULL. */
const struct user_prog *user_prog_find(const char *name);

/* How a program ended. */
struct user_result {
    bool killed;              /* by an exception (fault says which), else exited */
    int64_t status;           /* exit's argument; -1 when killed */
    struct trap_fault fault;  /* the exception that killed it */
    uint64_t syscalls;        /* system calls made, its children's included */
    uint64_t faults_resolved; /* page faults the library's fault entry resolved */
    uint64_t forks;           /* children run */
    uint64_t kernel_ac;       /* traps the kernel handled with RFLAGS.AC set, SMAP's
                                 window open: 0 wherever the CPU has SMAP (isr.S) */
};

struct kmm;

/*
 * user_run - build a space for prog on k (code, data, stack; the heap as
 * above), run it in ring 3 until it ends, destroy the space. Returns
 * KMM_OK with *out filled, or KMM_ENOMEM / KMM_EINVAL (nothing ran, nothing
 * left allocated). Every frame the program's spaces held is free again
 * when it returns. Kernel context, IRQs as the kernel runs (off); not
 * reentrant (one program at a time, a fork's child inside its parent).
 */
int user_run(struct kmm *k, const struct user_prog *prog, struct user_result *out);

/* A trap from ring 3 (trap.c): a system call, a fault resolved, or the end
 * of the program. Rewrites f to say where to go back to. */
void user_trap(struct trap_frame *f, uint64_t cr2);

#endif /* KMM_KERNEL_USER_H */
