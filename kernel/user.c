/*
 * user.c - programs in ring 3 (contract: user.h).
 *
 * Entering ring 3 is an iretq to a frame built from a struct trap_frame
 * (isr.S: user_enter), after saving the kernel's callee-saved registers
 * and return point in the process's user_ctx. Leaving is the other half:
 * the trap that ends the program rewrites its trap frame to "return" from
 * user_enter into the kernel, on the kernel's own stack. The TSS's RSP0
 * points just below user_run's frames while a program runs, so a trap from
 * ring 3 lands on the stack in use, below everything live; a fork's child,
 * run from inside its parent's system call, gets an RSP0 below that call's
 * frames in turn.
 */
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#include "console.h"
#include "kernel.h"
#include "trap.h"
#include "user.h"

#define PAGE               KMM_PAGE_4K
#define USER_RSP0_GAP      256u          /* below the RSP at entry: user_enter's own pushes */
#define USER_RFLAGS        UINT64_C(0x2) /* bit 1 is always set; IF off: this kernel never takes IRQs */
#define USER_PROT_CODE     (KMM_PROT_READ | KMM_PROT_EXEC | KMM_PROT_USER)
#define USER_PROT_DATA     (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER)
#define USER_STATUS_KILLED (-1)
#define USER_HALF_END      UINT64_C(0x0000800000000000) /* 4-level; 5-level's is higher */

/* isr.S: what user_enter saves, in this order. */
struct user_ctx {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags;
};

void user_enter(struct user_ctx *ctx, const struct trap_frame *regs);

/* A running program (the parent of a running child too). */
struct user_proc {
    struct user_ctx ctx; /* where its end resumes the kernel */
    struct kmm *k;
    struct kmm_aspace *as;
    const struct user_prog *prog;
    struct user_result *res; /* the whole run's: the first program's */
    unsigned depth;          /* 0 for the program user_run started */
    bool ended;              /* exited or killed: its trap frame resumes the kernel */
    bool killed;
    int64_t status;
    bool child_done; /* a child ended: wait has its status */
    int64_t child_status;
};

/* The program in ring 3 now, or NULL. Only this CPU runs programs. */
static struct user_proc *current;

/* --- the address space ------------------------------------------------------- */

/* Maps one fresh page of k at va in as, owned by the mapping (its frame is
 * freed with the space), copying len bytes of src into it (the rest zero). */
static int map_page(struct user_proc *p, uint64_t va, unsigned prot, const uint8_t *src, size_t len)
{
    uint64_t pa = kmm_page_alloc(p->k, 0, KMM_GFP_ZERO);
    if (!pa)
        return KMM_ENOMEM;
    if (len)
        memcpy(phys_to_virt(pa), src, len);
    int err = kmm_vm_map(p->as, va, pa, PAGE, prot | KMM_MAP_OWNED);
    /* The mapping holds its own reference now: drop the allocation's. On
     * failure this frees the page. */
    int ferr = kmm_page_free(p->k, pa, 0);
    if (!err && ferr)
        err = ferr;
    return err;
}

/* The program's space: code, data, stack (user.h). */
static int space_build(struct user_proc *p)
{
    size_t size = (size_t)(p->prog->end - p->prog->start);
    if (size == 0 || size > USER_CODE_MAX)
        return KMM_EINVAL;
    int err = kmm_aspace_create(p->k, &p->as);
    if (err)
        return err;
    for (size_t off = 0; !err && off < size; off += PAGE) {
        size_t len = size - off < PAGE ? size - off : PAGE;
        err = map_page(p, USER_CODE_VA + off, USER_PROT_CODE, p->prog->start + off, len);
    }
    if (!err)
        err = map_page(p, USER_DATA_VA, USER_PROT_DATA, NULL, 0);
    if (!err) /* the heap: no frame until the program touches a page */
        err = kmm_vm_map(p->as, USER_HEAP_VA, 0, (uint64_t)USER_HEAP_PAGES * PAGE,
                         USER_PROT_DATA | KMM_MAP_DEMAND);
    for (unsigned i = 1; !err && i <= USER_STACK_PAGES; i++)
        err = map_page(p, USER_STACK_TOP - i * PAGE, USER_PROT_DATA, NULL, 0);
    if (err) {
        kmm_aspace_destroy(p->k, p->as);
        p->as = NULL;
    }
    return err;
}

/* --- entering and leaving ring 3 ----------------------------------------------------- */

/* Runs p from regs until it ends; the space in force before comes back. */
static void proc_run(struct user_proc *p, const struct trap_frame *regs)
{
    uint64_t sp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    uint64_t old_rsp0 = trap_set_kernel_stack((sp - USER_RSP0_GAP) & ~UINT64_C(15));
    struct user_proc *prev = current;
    current = p;
    kmm_aspace_activate(p->as);
    user_enter(&p->ctx, regs);
    /* Back from ring 3 for good: p ended. */
    current = prev;
    kmm_aspace_activate(prev ? prev->as : kmm_kernel_aspace(p->k));
    trap_set_kernel_stack(old_rsp0);
}

/* Ends the current program: f resumes the kernel where proc_run entered. */
static void proc_end(struct user_proc *p, struct trap_frame *f, bool killed, int64_t status)
{
    p->ended = true;
    p->killed = killed;
    p->status = status;
    f->rbx = p->ctx.rbx;
    f->rbp = p->ctx.rbp;
    f->r12 = p->ctx.r12;
    f->r13 = p->ctx.r13;
    f->r14 = p->ctx.r14;
    f->r15 = p->ctx.r15;
    f->rsp = p->ctx.rsp;
    f->rip = p->ctx.rip;
    f->rflags = p->ctx.rflags;
    f->cs = TRAP_KERNEL_CS;
    f->ss = TRAP_KERNEL_SS;
    f->rax = 0;
}

/* --- system calls ------------------------------------------------------------------ */

/* write(buf, len): each page of the buffer looked up in the program's own
 * tables, readable by ring 3, and read through the direct map, so a
 * pointer into the kernel (or nowhere) gets -EFAULT, never the kernel's
 * bytes. */
static int64_t sys_write(struct user_proc *p, uint64_t buf, uint64_t len)
{
    if (len > USER_WRITE_MAX)
        len = USER_WRITE_MAX;
    char text[USER_WRITE_MAX];
    for (uint64_t done = 0; done < len;) {
        struct kmm_vm_translation tr;
        uint64_t va = buf + done;
        /* The lower half only: the library would count a non-canonical
         * address as the kernel's own mistake (and log it), and the upper
         * half is never the program's. */
        if (va < buf || va >= USER_HALF_END || kmm_vm_translate(p->as, va, &tr) != KMM_OK ||
            (tr.prot & (KMM_PROT_USER | KMM_PROT_READ)) != (KMM_PROT_USER | KMM_PROT_READ))
            return -USER_EFAULT;
        uint64_t in_page = PAGE - (va & (PAGE - 1));
        uint64_t n = len - done < in_page ? len - done : in_page;
        memcpy(text + done, phys_to_virt(tr.pa), n);
        done += n;
    }
    console_write(text, (size_t)len);
    return (int64_t)len;
}

static int64_t sys_fork(struct user_proc *p, const struct trap_frame *f);

static void syscall(struct user_proc *p, struct trap_frame *f)
{
    p->res->syscalls++;
    switch (f->rax) {
    case USER_SYS_EXIT:
        proc_end(p, f, false, (int64_t)f->rdi);
        return;
    case USER_SYS_WRITE:
        f->rax = (uint64_t)sys_write(p, f->rdi, f->rsi);
        return;
    case USER_SYS_FORK:
        f->rax = (uint64_t)sys_fork(p, f);
        return;
    case USER_SYS_WAIT:
        f->rax = p->child_done ? (uint64_t)p->child_status : (uint64_t)-USER_ECHILD;
        p->child_done = false;
        return;
    default:
        f->rax = (uint64_t)-USER_ENOSYS;
        return;
    }
}

/* fork(): the library copies the space (copy-on-write), the child runs to
 * its end from the same point with RAX 0, and the parent goes on with the
 * child's id. */
static int64_t sys_fork(struct user_proc *p, const struct trap_frame *f)
{
    if (p->depth + 1 >= USER_FORK_DEPTH)
        return -USER_EAGAIN;
    struct user_proc child = {.k = p->k, .prog = p->prog, .res = p->res, .depth = p->depth + 1};
    if (kmm_aspace_clone(p->as, &child.as) != KMM_OK)
        return -USER_ENOMEM;
    struct trap_frame regs = *f; /* the child returns from the same call, with 0 */
    regs.rax = 0;
    p->res->forks++;
    proc_run(&child, &regs); /* back in p's space when the child ends */
    p->child_done = true;
    p->child_status = child.killed ? USER_STATUS_KILLED : child.status;
    int err = kmm_aspace_destroy(p->k, child.as);
    if (err)
        kernel_panic("user: a child's space could not be destroyed");
    return (int64_t)child.depth; /* the child's id: its depth (one child at a time) */
}

/* --- traps ---------------------------------------------------------------------------- */

/* Whether the library's fault entry resolves the page fault in p's space
 * (a demand-zero heap page, a copy-on-write page after a fork); the error
 * code's W, U/S and I/D bits are its KMM_FAULT_* bits. A fault it leaves
 * (nothing mapped, a right the mapping does not give) kills p. */
static bool fault_resolved(struct user_proc *p, uint64_t addr, uint64_t err)
{
    if (err & PF_RSVD)
        return false;
    return kmm_vm_fault(p->as, addr, (unsigned)err & KMM_FAULT_MASK, NULL) == KMM_OK;
}

static void kill(struct user_proc *p, struct trap_frame *f, uint64_t cr2)
{
    p->res->fault = (struct trap_fault){f->vector, f->error, cr2, f->rip};
    kprintf("user: %s killed: %s, error 0x%llx at rip 0x%llx\n", p->prog->name,
            trap_name(f->vector), (unsigned long long)f->error, (unsigned long long)f->rip);
    if (f->vector == TRAP_PF)
        trap_report_page_fault(cr2, f->error);
    proc_end(p, f, true, USER_STATUS_KILLED);
}

void user_trap(struct trap_frame *f, uint64_t cr2)
{
    struct user_proc *p = current;
    if (!p)
        kernel_panic("a trap from ring 3 with no program running");
    uint64_t flags;
    __asm__ volatile("pushfq\n\tpopq %0" : "=r"(flags));
    if (flags & TRAP_RFLAGS_AC)
        p->res->kernel_ac++;
    if (f->vector == TRAP_SYSCALL) {
        syscall(p, f);
        return;
    }
    if (f->vector == TRAP_PF && fault_resolved(p, cr2, f->error)) {
        p->res->faults_resolved++;
        return;
    }
    kill(p, f, cr2);
}

/* --- running a program ----------------------------------------------------------------- */

int user_run(struct kmm *k, const struct user_prog *prog, struct user_result *out)
{
    if (!k || !prog || !out || current)
        return KMM_EINVAL;
    *out = (struct user_result){0};
    struct user_proc p = {.k = k, .prog = prog, .res = out};
    int err = space_build(&p);
    if (err)
        return err;
    /* RDI: an address in the kernel's text, present and supervisor-only,
     * for the programs that try to reach the kernel (user.h). */
    struct trap_frame regs = {
        .rdi = (uint64_t)(uintptr_t)&user_run,
        .rip = USER_CODE_VA,
        .cs = TRAP_USER_CS,
        .rflags = USER_RFLAGS,
        .rsp = USER_STACK_TOP,
        .ss = TRAP_USER_SS,
    };
    proc_run(&p, &regs);
    out->killed = p.killed;
    out->status = p.status;
    err = kmm_aspace_destroy(k, p.as);
    return err;
}

/* --- the programs ----------------------------------------------------------------------- */

/* user_progs.S: each program's bytes between its two symbols. */
#define USER_PROG_BYTES(name)                                                                      \
    extern const uint8_t user_prog_##name##_start[], user_prog_##name##_end[]
USER_PROG_BYTES(hello);
USER_PROG_BYTES(stack);
USER_PROG_BYTES(kread);
USER_PROG_BYTES(priv);
USER_PROG_BYTES(badwrite);
USER_PROG_BYTES(heap);
USER_PROG_BYTES(fork);
USER_PROG_BYTES(acflag);
USER_PROG_BYTES(badcall);
USER_PROG_BYTES(deep);
#undef USER_PROG_BYTES

#define USER_PROG(name, what)                                                                      \
    {                                                                                              \
#name, what, user_prog_##name##_start, user_prog_##name##_end                              \
    }
static const struct user_prog progs[] = {
    USER_PROG(hello, "writes a line through the write call and exits 0"),
    USER_PROG(stack, "pushes 1..1024 on its stack, pops and sums them: exits 0 if 524800"),
    USER_PROG(kread, "reads the kernel image: killed by a page fault (user access, present)"),
    USER_PROG(priv, "executes cli: killed by a general protection fault"),
    USER_PROG(badwrite, "asks write for kernel memory, a non-canonical address and a buffer "
                        "off its data page: exits 0 if each is refused with -EFAULT"),
    USER_PROG(heap, "reads and writes each page of its demand-zero heap: exits 0 if each read "
                    "zeros first and what it wrote back"),
    USER_PROG(fork, "forks; the child writes its copy-on-write data and stack pages and exits 7; "
                    "the parent exits 0 if wait says 7 and its own data is unchanged"),
    USER_PROG(acflag, "sets RFLAGS.AC (SMAP's window) and writes a line: the kernel must run "
                      "with it clear, the program get it back; exits 0 if it did"),
    USER_PROG(badcall, "makes a system call the kernel does not have: exits 0 if it gets "
                       "-ENOSYS back"),
    USER_PROG(deep, "forks from each child until the kernel refuses: exits 0 if the deepest "
                    "gets -EAGAIN"),
};
#undef USER_PROG

const struct user_prog *user_progs(unsigned *count)
{
    *count = (unsigned)(sizeof(progs) / sizeof(progs[0]));
    return progs;
}

const struct user_prog *user_prog_find(const char *name)
{
    for (unsigned i = 0; i < sizeof(progs) / sizeof(progs[0]); i++)
        if (kstreq(progs[i].name, name))
            return &progs[i];
    return NULL;
}
