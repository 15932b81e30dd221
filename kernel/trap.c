/*
 * trap.c - GDT and TSS, the IDT, exception reports and expected faults
 * (contract: trap.h).
 */
#include <kmm/kmm.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "console.h"
#include "kernel.h"
#include "trap.h"
#include "user.h"

/* --- GDT and TSS ------------------------------------------------------------------ */

#define GDT_CODE64     TRAP_KERNEL_CS
#define GDT_DATA       TRAP_KERNEL_SS
#define GDT_TSS        0x18
#define IST_DOUBLE     1 /* the double fault's IST slot */
#define IST_STACK_SIZE ((size_t)16 << 10)

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

_Static_assert(sizeof(struct tss) == 104, "the 64-bit TSS is 104 bytes");

static struct tss tss;

/* Null, code, data (accessed bits preset: the CPU never writes them), the
 * TSS's 16-byte descriptor, filled in by trap_init, then ring 3's data and
 * code (user.c). */
static uint64_t gdt[7] = {
    0,
    0x00AF9B000000FFFF, /* 0x08: 64-bit code, DPL 0 */
    0x00CF93000000FFFF, /* 0x10: data, DPL 0 */
    0,
    0,
    0x00CFF3000000FFFF, /* 0x28: data, DPL 3 (TRAP_USER_SS) */
    0x00AFFB000000FFFF, /* 0x30: 64-bit code, DPL 3 (TRAP_USER_CS) */
};

_Static_assert((TRAP_USER_SS & ~3) == 5 * 8 && (TRAP_USER_CS & ~3) == 6 * 8,
               "the user selectors index the GDT's last two entries");

/* The double fault's stack, with a page below it that the library's tables
 * leave unmapped: an overflow of this stack faults too (and resets the
 * machine: there is no third stack; but it is not silent corruption). */
static struct {
    uint8_t guard[KERNEL_PAGE_SIZE];
    uint8_t stack[IST_STACK_SIZE];
} ist_area __attribute__((aligned(4096)));

const void *trap_ist_guard(void)
{
    return ist_area.guard;
}

uint64_t trap_set_kernel_stack(uint64_t rsp0)
{
    uint64_t old = tss.rsp[0];
    tss.rsp[0] = rsp0;
    return old;
}

static void gdt_init(void)
{
    uint64_t base = (uint64_t)(uintptr_t)&tss;
    uint64_t limit = sizeof(tss) - 1;
    tss.ist[IST_DOUBLE - 1] = (uint64_t)(uintptr_t)(ist_area.stack + IST_STACK_SIZE);
    tss.iomap_base = sizeof(tss); /* no I/O permission bitmap */
    /* Available 64-bit TSS (type 9), present, DPL 0. */
    gdt[3] = (limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | UINT64_C(0x89) << 40 |
             ((limit >> 16) & 0xF) << 48 | ((base >> 24) & 0xFF) << 56;
    gdt[4] = base >> 32;
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) gdtr = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt};
    /* Reload CS with a far return, then the data segments and the TR. */
    __asm__ volatile("lgdt %0\n\t"
                     "pushq %1\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "movw %w2, %%ax\n\t"
                     "movw %%ax, %%ds\n\t"
                     "movw %%ax, %%es\n\t"
                     "movw %%ax, %%ss\n\t"
                     "ltr %w3"
                     :
                     : "m"(gdtr), "i"(GDT_CODE64), "r"(GDT_DATA), "r"(GDT_TSS)
                     : "rax", "memory");
}

/* --- IDT ------------------------------------------------------------------------- */

struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type; /* 0x8E: present, DPL 0, 64-bit interrupt gate */
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct idt_gate) == 16, "an IDT gate is 16 bytes");

#define IDT_VECTORS   256
#define IDT_STUB_SIZE 16 /* isr.S spaces the stubs this far apart */
#define IDT_INTERRUPT 0x8E
#define IDT_USER_GATE 0xEE /* present, DPL 3: ring 3 may raise it with int */

extern const char isr_stubs[]; /* isr.S: IDT_VECTORS stubs */

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));

static void idt_init(void)
{
    for (unsigned v = 0; v < IDT_VECTORS; v++) {
        uint64_t a = (uint64_t)(uintptr_t)isr_stubs + (uint64_t)v * IDT_STUB_SIZE;
        idt[v] = (struct idt_gate){
            .offset_lo = (uint16_t)a,
            .selector = GDT_CODE64,
            .ist = v == TRAP_DF ? IST_DOUBLE : 0,
            .type = v == TRAP_SYSCALL ? IDT_USER_GATE : IDT_INTERRUPT,
            .offset_mid = (uint16_t)(a >> 16),
            .offset_hi = (uint32_t)(a >> 32),
        };
    }
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* --- SMEP and SMAP ---------------------------------------------------------------- */

#define CPUID_EXT_FEATURES 7u
#define CPUID7_EBX_SMEP    (1u << 7)
#define CPUID7_EBX_SMAP    (1u << 20)
#define CR4_SMEP           (UINT64_C(1) << 20)
#define CR4_SMAP           (UINT64_C(1) << 21)
#define USER_HALF_END      UINT64_C(0x0100000000000000) /* 5-level's; 4-level's is within it */

static bool smep_on, smap_on;
/* isr.S clears RFLAGS.AC on every entry while this is 1 (SMAP on). */
uint8_t trap_smap_clac;

/* The kernel's own guard against user memory: with SMEP a jump into a user
 * page faults instead of running the program's bytes with the kernel's
 * rights; with SMAP a stray kernel read or write of a user address faults
 * instead of trusting what the program put there. The user-access paths
 * (user.c) read user memory through the direct map after checking the
 * program's tables, so they need no window. */
static void protect_init(void)
{
    uint32_t a = 0, b = 0, c = 0, d = 0;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    if (a < CPUID_EXT_FEATURES)
        return;
    a = CPUID_EXT_FEATURES;
    c = 0;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    uint64_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    smep_on = (b & CPUID7_EBX_SMEP) != 0;
    smap_on = (b & CPUID7_EBX_SMAP) != 0;
    cr4 |= (smep_on ? CR4_SMEP : 0) | (smap_on ? CR4_SMAP : 0);
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
    trap_smap_clac = smap_on;
}

bool trap_smep_on(void)
{
    return smep_on;
}

bool trap_smap_on(void)
{
    return smap_on;
}

void trap_user_access_begin(void)
{
    if (smap_on)
        __asm__ volatile("stac" : : : "memory");
}

void trap_user_access_end(void)
{
    if (smap_on)
        __asm__ volatile("clac" : : : "memory");
}

#define PIC1_DATA    0x21
#define PIC2_DATA    0xA1
#define PIC_MASK_ALL 0xFF

void trap_init(void)
{
    gdt_init();
    idt_init();
    protect_init();
    /* The legacy PICs still deliver IRQs 0-15 at vectors 8-15 and 0x70-0x77
     * as the BIOS left them: masked, so that interrupts turned on one day
     * cannot arrive disguised as a double fault or a general protection. */
    outb(PIC1_DATA, PIC_MASK_ALL);
    outb(PIC2_DATA, PIC_MASK_ALL);
}

/* --- reports --------------------------------------------------------------------- */

static const char *const exception_names[TRAP_EXCEPTIONS] = {
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved 31",
};

#define PTE_P         (UINT64_C(1) << 0)
#define PTE_W         (UINT64_C(1) << 1)
#define PTE_U         (UINT64_C(1) << 2)
#define PTE_PS        (UINT64_C(1) << 7)
#define PTE_NX        (UINT64_C(1) << 63)
#define PTE_ADDR      UINT64_C(0x000FFFFFFFFFF000)
#define CR4_LA57      (UINT64_C(1) << 12)
#define PAGE_LOW_MASK UINT64_C(0xFFF)

static uint64_t read_cr(int n)
{
    uint64_t v = 0;
    switch (n) {
    case 0:
        __asm__ volatile("mov %%cr0, %0" : "=r"(v));
        break;
    case 2:
        __asm__ volatile("mov %%cr2, %0" : "=r"(v));
        break;
    case 3:
        __asm__ volatile("mov %%cr3, %0" : "=r"(v));
        break;
    default:
        __asm__ volatile("mov %%cr4, %0" : "=r"(v));
        break;
    }
    return v;
}

/*
 * Walks the live tables (CR3) for va through the direct map, printing each
 * level's entry, and returns the reason a page fault at va with error code
 * err happened, as the tables say it. Reads only: safe whatever lock the
 * faulting code held.
 */
static const char *walk_reason(uint64_t va, uint64_t err)
{
    static const char *const level_names[] = {"", "pt", "pd", "pdpt", "pml4", "pml5"};
    unsigned levels = (read_cr(4) & CR4_LA57) ? 5 : 4;
    uint64_t table = read_cr(3) & PTE_ADDR;
    bool writable = true, executable = true, user = true;
    kprintf("  walk:");
    for (unsigned level = levels; level >= 1; level--) {
        unsigned shift = 12 + 9 * (level - 1);
        unsigned index = (unsigned)((va >> shift) & 511);
        uint64_t e = ((const volatile uint64_t *)phys_to_virt(table))[index];
        kprintf(" %s[%u]=0x%llx", level_names[level], index, (unsigned long long)e);
        if (!(e & PTE_P)) {
            kprintf("\n");
            return "not mapped (no present entry)";
        }
        writable = writable && (e & PTE_W);
        executable = executable && !(e & PTE_NX);
        user = user && (e & PTE_U);
        if (level == 1 || (e & PTE_PS)) {
            kprintf(" (%s page)\n", level == 1 ? "4 KiB" : level == 2 ? "2 MiB" : "1 GiB");
            if (err & PF_RSVD)
                return "a reserved bit is set in a paging entry";
            if ((err & PF_FETCH) && !executable)
                return "instruction fetch from a no-execute page";
            if ((err & PF_WRITE) && !writable)
                return "write to a read-only page";
            if ((err & PF_USER) && !user)
                return "user access to a kernel page";
            if (!(err & PF_USER) && user && (err & PF_FETCH) && smep_on)
                return "kernel instruction fetch from a user page (SMEP)";
            if (!(err & PF_USER) && user && smap_on)
                return "kernel access to a user page outside trap_user_access_begin (SMAP)";
            return "the tables allow this access now (a stale TLB entry?)";
        }
        table = e & PTE_ADDR;
    }
    kprintf("\n");
    return "?";
}

extern const char boot_stack_guard[], boot_stack[]; /* boot.S */

/* What else is known about va: the guard pages and the kernel's areas. */
static const char *address_note(uint64_t va)
{
    uint64_t sg = (uint64_t)(uintptr_t)boot_stack_guard;
    uint64_t ig = (uint64_t)(uintptr_t)ist_area.guard;
    if (va - sg < KERNEL_PAGE_SIZE)
        return "the guard page below the kernel stack: a kernel stack overflow";
    if (va - ig < KERNEL_PAGE_SIZE)
        return "the guard page below the double-fault stack";
    if (va < KERNEL_PAGE_SIZE)
        return "the first page: a NULL pointer dereference";
    if (va >= BORUIX_HEAP_BASE && va < KVA_WINDOW_BASE)
        return "Boruix's fixed mappings in its heap window (the shell's pgtest, memprottest)";
    if (va >= KVA_WINDOW_BASE && va - KVA_WINDOW_BASE < KVA_WINDOW_SIZE) {
        /* The one call into the library from a report. It takes the
         * window's lock: a fault inside the window's own code, holding it,
         * would spin here until the port's lock panic says so. */
        struct kmm_kva_area a;
        if (kernel_kmm && kmm_kva_lookup(kernel_kmm, va, &a) == KMM_OK)
            return va >= a.va + a.size ? "the guard page after a kernel virtual area"
                                       : "inside a kernel virtual area";
        return "the kernel virtual area window, outside every area";
    }
    if (va >= HHDM_BASE && va < KERNEL_VMA)
        return "the direct map";
    if (va >= KERNEL_VMA)
        return "the kernel image";
    return NULL;
}

const char *trap_name(uint64_t vector)
{
    return vector < TRAP_EXCEPTIONS ? exception_names[vector] : "interrupt";
}

void trap_report_page_fault(uint64_t addr, uint64_t err)
{
    kprintf("  page fault: %s %s at 0x%llx, %s page\n", (err & PF_USER) ? "user" : "kernel",
            (err & PF_FETCH)   ? "instruction fetch"
            : (err & PF_WRITE) ? "write"
                               : "read",
            (unsigned long long)addr, (err & PF_PRESENT) ? "present" : "not-present");
    const char *reason = walk_reason(addr, err);
    kprintf("  reason: %s\n", reason);
    const char *note = address_note(addr);
    if (note)
        kprintf("  address: %s\n", note);
}

static void report_registers(const struct trap_frame *f, uint64_t cr2)
{
    kprintf("  rax 0x%016llx rbx 0x%016llx rcx 0x%016llx rdx 0x%016llx\n",
            (unsigned long long)f->rax, (unsigned long long)f->rbx, (unsigned long long)f->rcx,
            (unsigned long long)f->rdx);
    kprintf("  rsi 0x%016llx rdi 0x%016llx rbp 0x%016llx rsp 0x%016llx\n",
            (unsigned long long)f->rsi, (unsigned long long)f->rdi, (unsigned long long)f->rbp,
            (unsigned long long)f->rsp);
    kprintf("  r8  0x%016llx r9  0x%016llx r10 0x%016llx r11 0x%016llx\n",
            (unsigned long long)f->r8, (unsigned long long)f->r9, (unsigned long long)f->r10,
            (unsigned long long)f->r11);
    kprintf("  r12 0x%016llx r13 0x%016llx r14 0x%016llx r15 0x%016llx\n",
            (unsigned long long)f->r12, (unsigned long long)f->r13, (unsigned long long)f->r14,
            (unsigned long long)f->r15);
    kprintf("  rip 0x%016llx rflags 0x%llx cs 0x%llx ss 0x%llx\n", (unsigned long long)f->rip,
            (unsigned long long)f->rflags, (unsigned long long)f->cs, (unsigned long long)f->ss);
    kprintf("  cr0 0x%llx cr2 0x%llx cr3 0x%llx cr4 0x%llx\n", (unsigned long long)read_cr(0),
            (unsigned long long)cr2, (unsigned long long)read_cr(3),
            (unsigned long long)read_cr(4));
}

struct trap_catch *trap_armed; /* isr.S's trap_catch_arm sets it */
static unsigned trap_depth;    /* reports in progress: a fault inside one */

/* --- the page-fault entry ----------------------------------------------------------- */

_Static_assert(PF_WRITE == KMM_FAULT_WRITE && PF_USER == KMM_FAULT_USER &&
                   PF_FETCH == KMM_FAULT_EXEC,
               "the error code's access bits are the library's KMM_FAULT_* bits");

static struct kmm_aspace *fault_space; /* NULL: the kernel space */
static uint64_t faults_resolved;

void trap_activate_space(struct kmm_aspace *as)
{
    kmm_aspace_activate(as ? as : kmm_kernel_aspace(kernel_kmm));
    fault_space = as;
}

uint64_t trap_faults_resolved(void)
{
    return faults_resolved;
}

/* Whether a kernel-mode fault at a user address is SMEP's or SMAP's: a
 * fetch from a user page, or a data access to one with RFLAGS.AC clear
 * (outside trap_user_access_begin). The tables allow it; the CPU does not,
 * and no mapping change will: the library must not be asked, or it would
 * call the fault spurious and the instruction would fault again forever. */
static bool smep_smap_fault(uint64_t addr, uint64_t err, uint64_t rflags)
{
    if ((err & PF_USER) || addr >= USER_HALF_END)
        return false;
    if (err & PF_FETCH)
        return smep_on;
    return smap_on && !(rflags & TRAP_RFLAGS_AC);
}

/* Whether the library resolved the page fault at addr with error code err
 * (a demand-zero page got its frame, a copy-on-write page its copy): the
 * faulting instruction can run again. The error code's W, U/S and I/D bits
 * are the library's KMM_FAULT_* bits. Not while a report is running (a
 * fault inside the library would meet its own locks), nor for a reserved
 * bit, which no mapping change repairs, nor for SMEP's and SMAP's faults
 * (rflags: the faulting code's). */
static bool resolve_page_fault(uint64_t addr, uint64_t err, uint64_t rflags)
{
    if (!kernel_kmm || trap_depth > 0 || (err & PF_RSVD) || smep_smap_fault(addr, err, rflags))
        return false;
    struct kmm_aspace *as = fault_space ? fault_space : kmm_kernel_aspace(kernel_kmm);
    if (kmm_vm_fault(as, addr, (unsigned)err & KMM_FAULT_MASK, NULL) != KMM_OK)
        return false;
    faults_resolved++;
    return true;
}

/* --- dispatch -------------------------------------------------------------------- */

void trap_catch_disarm(void)
{
    __atomic_store_n(&trap_armed, NULL, __ATOMIC_RELAXED);
    __asm__ volatile("" : : : "memory");
}

/* Resume at c's recovery point: trap_catch_arm returns 1 there. */
static void resume(struct trap_frame *f, struct trap_catch *c)
{
    f->rbx = c->rbx;
    f->rbp = c->rbp;
    f->r12 = c->r12;
    f->r13 = c->r13;
    f->r14 = c->r14;
    f->r15 = c->r15;
    f->rsp = c->rsp;
    f->rip = c->rip;
    f->rax = 1;
}

void trap_dispatch(struct trap_frame *f)
{
    uint64_t cr2 = read_cr(2); /* first: nothing may fault before it is read */
    if ((f->cs & 3) == 3) {
        /* Ring 3: its own handler (a program's fault never ends the run,
         * nor reaches a recovery point the kernel armed for itself). */
        user_trap(f, cr2);
        return;
    }
    if (f->vector == TRAP_PF && resolve_page_fault(cr2, f->error, f->rflags))
        return; /* mapped now: the instruction runs again */
    struct trap_catch *c = trap_armed;
    if (c && f->vector < TRAP_EXCEPTIONS && f->vector != 2 /* NMI */) {
        trap_armed = NULL;
        c->fault = (struct trap_fault){f->vector, f->error, cr2, f->rip};
        resume(f, c);
        return;
    }
    if (trap_depth++ > 0) {
        console_puts("kmm kernel: exception while reporting an exception\n");
        kernel_exit(KERNEL_EXIT_FAIL);
    }
    if (f->vector < TRAP_EXCEPTIONS)
        kprintf("kmm kernel: exception %llu (%s) error 0x%llx at rip 0x%llx\n",
                (unsigned long long)f->vector, exception_names[f->vector],
                (unsigned long long)f->error, (unsigned long long)f->rip);
    else
        kprintf("kmm kernel: unexpected interrupt, vector %llu at rip 0x%llx\n",
                (unsigned long long)f->vector, (unsigned long long)f->rip);
    if (f->vector == TRAP_PF)
        trap_report_page_fault(cr2, f->error);
    if (f->vector == TRAP_DF) {
        /* A double fault's own frame says little; CR2 still holds the
         * address of the page fault that could not be delivered. */
        const char *note = address_note(cr2);
        kprintf("  double fault: cr2 0x%llx%s%s\n", (unsigned long long)cr2, note ? ", " : "",
                note ? note : "");
    }
    report_registers(f, cr2);
    kernel_exit(KERNEL_EXIT_FAIL);
}

/* --- probes ---------------------------------------------------------------------- */

bool trap_probe_read(const void *p, struct trap_fault *f)
{
    struct trap_catch c;
    if (trap_catch_arm(&c) == 0) {
        (void)*(const volatile uint8_t *)p;
        trap_catch_disarm();
        return false;
    }
    *f = c.fault;
    return true;
}

bool trap_probe_write(void *p, struct trap_fault *f)
{
    struct trap_catch c;
    if (trap_catch_arm(&c) == 0) {
        volatile uint8_t *b = p;
        __asm__ volatile("movb (%0), %%al\n\tmovb %%al, (%0)" : : "r"(b) : "rax", "memory");
        trap_catch_disarm();
        return false;
    }
    *f = c.fault;
    return true;
}

bool trap_probe_exec(const void *p, struct trap_fault *f)
{
    struct trap_catch c;
    if (trap_catch_arm(&c) == 0) {
        __asm__ volatile("call *%0"
                         :
                         : "r"(p)
                         : "memory", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
        trap_catch_disarm();
        return false;
    }
    *f = c.fault;
    return true;
}

bool trap_probe_stack_overflow(struct trap_fault *f)
{
    struct trap_catch c;
    if (trap_catch_arm(&c) == 0) {
        /* Never ends by itself: only the fault at the guard page leaves. */
        __asm__ volatile("1: pushq $0\n\tjmp 1b" : : : "memory");
    }
    *f = c.fault;
    return true;
}
