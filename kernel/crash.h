/*
 * crash.h - the crash boot mode (kernel/crash.c): "crash fault=KIND" on
 * the command line makes the kernel fault on purpose after the takeover, so
 * that a test (tools/crash-test.sh) can check the report the trap handler
 * prints and that QEMU exits with "fail":
 *   null   read address 0               (#PF, not present, NULL pointer)
 *   write  write to the kernel's text   (#PF, protection, read-only page)
 *   nx     call into the direct map     (#PF, instruction fetch, no-execute)
 *   stack  overflow the kernel stack    (#DF on its own stack, guard page)
 *   ud     an undefined instruction     (#UD)
 */
#ifndef KMM_KERNEL_CRASH_H
#define KMM_KERNEL_CRASH_H

void crash_main(void);

#endif /* KMM_KERNEL_CRASH_H */
