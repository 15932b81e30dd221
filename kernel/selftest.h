/*
 * selftest.h - the self-test boot mode (kernel/selftest.c): the whole
 * shared test suite, then the checks only real hardware can make, in KTAP
 * on the console; QEMU's exit code says whether all passed.
 */
#ifndef KMM_KERNEL_SELFTEST_H
#define KMM_KERNEL_SELFTEST_H

#include <stdnoreturn.h>

struct kmm_sink;

/* Runs the tests whose suite.name starts with filter ("" or NULL: all) in
 * an arena carved from the kernel's instance (given back afterwards), KTAP
 * to out (serial only: the VGA mirror is off meanwhile). Returns the number
 * of failed tests. The shell's `selftest`. */
int selftest_run(const char *filter, const struct kmm_sink *out);

/* Runs the tests and leaves QEMU: 33 if none failed, 35 otherwise. */
noreturn void selftest_main(void);

#endif /* KMM_KERNEL_SELFTEST_H */
