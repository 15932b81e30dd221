/*
 * faults_hosted.c - see faults_hosted.h. The handler jumps back to the
 * probe; a fault while no probe is armed is a real crash and aborts.
 */
#define _GNU_SOURCE
#include "faults_hosted.h"

#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>

static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed;
static volatile uintptr_t fault_addr;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (!fault_armed)
        abort();
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(fault_jmp, 1);
}

bool kt_access_faults(volatile uint8_t *p, bool write)
{
    struct sigaction sa = {0}, old_segv, old_bus;
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    bool faulted = true;
    fault_armed = 1;
    if (sigsetjmp(fault_jmp, 1) == 0) {
        if (write)
            *p = 0x5a;
        else
            (void)*p;
        faulted = false;
    }
    fault_armed = 0;
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    return faulted;
}

bool kt_write_faults(volatile uint8_t *p)
{
    return kt_access_faults(p, true);
}

uintptr_t kt_last_fault_addr(void)
{
    return fault_addr;
}
