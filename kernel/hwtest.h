/*
 * hwtest.h - the kernel's hardware checks: KTAP tests that only a real
 * (virtual) machine can run, kept out of the shared suite's section so the
 * self-test mode runs them after it (ktest_run_with).
 */
#ifndef KMM_KERNEL_HWTEST_H
#define KMM_KERNEL_HWTEST_H

#include <stddef.h>

#include "ktest.h"

/* KTEST, registered in the kernel's own section "khw_cases" (linker.ld). */
#define KHW_TEST(suite, name)                                                                      \
    static void khw_fn_##suite##_##name(struct ktest *t);                                          \
    static const struct ktest_case khw_case_##suite##_##name                                       \
        __attribute__((used, section("khw_cases"), aligned(8))) = {                                \
            #suite, #name, __FILE__, __LINE__, khw_fn_##suite##_##name};                           \
    static void khw_fn_##suite##_##name(struct ktest *t)

/* The registered checks, for ktest_run_with. */
const struct ktest_case *hwtest_cases(size_t *count);

#endif /* KMM_KERNEL_HWTEST_H */
