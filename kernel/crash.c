/*
 * crash.c - faults on purpose, for the trap reports' tests (contract:
 * crash.h).
 */
#include "boot.h"
#include "console.h"
#include "crash.h"
#include "kernel.h"

/* Through a volatile address and asm: the compilers may not see what is
 * coming (a NULL dereference in C is theirs to remove). */
static volatile uintptr_t target;

void crash_main(void)
{
    char kind[16] = "";
    bootinfo_option(&kernel_boot, "fault", kind, sizeof(kind));
    kprintf("# kmm kernel: crashing on purpose: fault=%s\n", kind);
    if (kstreq(kind, "null")) {
        target = 0;
        __asm__ volatile("movb (%0), %%al" : : "r"(target) : "rax", "memory");
    } else if (kstreq(kind, "write")) {
        target = (uintptr_t)crash_main;
        __asm__ volatile("movb $0, (%0)" : : "r"(target) : "memory");
    } else if (kstreq(kind, "nx")) {
        target = (uintptr_t)phys_to_virt(kernel_image_phys((const void *)(uintptr_t)crash_main));
        ((void (*)(void))target)();
    } else if (kstreq(kind, "stack")) {
        __asm__ volatile("1: pushq $0\n\tjmp 1b" : : : "memory");
    } else if (kstreq(kind, "ud")) {
        __asm__ volatile("ud2");
    }
    kernel_panic("crash: no fault= given, an unknown kind, or it did not fault");
}
