/*
 * shellmode.h - the shell and bench boot modes (kernel/shellmode.c): the
 * debug shell (kernel/shell/) on COM1 over the kernel's own instance, and
 * the Linux anchor's benchmarks (mmbench) with the module's defaults.
 */
#ifndef KMM_KERNEL_SHELLMODE_H
#define KMM_KERNEL_SHELLMODE_H

#include <stdnoreturn.h>

/* Runs the shell on the console until `halt` (QEMU exits 33) or `reboot`. */
noreturn void shell_main(void);

/* Runs every mmbench workload with the module's defaults, prints its lines
 * and leaves QEMU: 33 if every workload ran without a failure, 35 otherwise. */
noreturn void bench_main(void);

#endif /* KMM_KERNEL_SHELLMODE_H */
