/*
 * test_env.h - the test arena of kernel/test_env.c: real RAM the test
 * machines use as their simulated physical memory. [kernel_arena_base,
 * + kernel_arena_size) is mapped (the direct map), 2 MiB aligned, and
 * belongs to no one else. Set by the self-test mode before the tests run;
 * size 0 means none.
 */
#ifndef KMM_KERNEL_TEST_ENV_H
#define KMM_KERNEL_TEST_ENV_H

#include <stdint.h>

extern uintptr_t kernel_arena_base;
extern uint64_t kernel_arena_size;

#endif /* KMM_KERNEL_TEST_ENV_H */
