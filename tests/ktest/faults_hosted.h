/*
 * faults_hosted.h - catching a memory fault in a hosted test: whether an
 * access raises SIGSEGV or SIGBUS, for tests that show a mapping is gone,
 * read-only, a guard page or a hole of the simulated machine. Hosted only:
 * in the kernel a fault ends the run.
 */
#ifndef KTEST_FAULTS_HOSTED_H
#define KTEST_FAULTS_HOSTED_H

#include <stdbool.h>
#include <stdint.h>

/* Writes (write true) or reads one byte at p; returns whether that faulted.
 * Not thread-safe: one test thread at a time may probe. */
bool kt_access_faults(volatile uint8_t *p, bool write);

/* kt_access_faults(p, true). */
bool kt_write_faults(volatile uint8_t *p);

/* The address the last fault a probe caught was reported at. */
uintptr_t kt_last_fault_addr(void);

#endif /* KTEST_FAULTS_HOSTED_H */
