/*
 * ktest_levels.h - one page-table test, run in both paging modes.
 *
 *     KTEST_LEVELS(vm, a_mapped_page_translates)
 *     {
 *         ... body using t and levels (4 or 5) ...
 *     }
 *
 * registers two tests, a_mapped_page_translates_4_levels and
 * a_mapped_page_translates_5_levels, each calling the body with its number
 * of levels. KT_ASSERT* return from the body, as they do from a KTEST.
 */
#ifndef KTEST_LEVELS_H
#define KTEST_LEVELS_H

#include "ktest.h"

#define KTEST_LEVELS(suite, name)                                                                  \
    static void ktest_lv_##suite##_##name(struct ktest *t, unsigned levels);                       \
    KTEST(suite, name##_4_levels)                                                                  \
    {                                                                                              \
        ktest_lv_##suite##_##name(t, 4);                                                           \
    }                                                                                              \
    KTEST(suite, name##_5_levels)                                                                  \
    {                                                                                              \
        ktest_lv_##suite##_##name(t, 5);                                                           \
    }                                                                                              \
    static void ktest_lv_##suite##_##name(struct ktest *t, unsigned levels)

#endif /* KTEST_LEVELS_H */
