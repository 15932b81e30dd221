/*
 * selftest.h - the self-test boot mode (kernel/selftest.c): the whole
 * shared test suite, then the checks only real hardware can make, in KTAP
 * on the console; QEMU's exit code says whether all passed.
 */
#ifndef KMM_KERNEL_SELFTEST_H
#define KMM_KERNEL_SELFTEST_H

#include <stdnoreturn.h>

/* Runs the tests and leaves QEMU: 33 if none failed, 35 otherwise. */
noreturn void selftest_main(void);

#endif /* KMM_KERNEL_SELFTEST_H */
