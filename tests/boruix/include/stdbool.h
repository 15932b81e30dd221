/* A kernel's own stdbool.h (tests/boruix/kernel_style.c). */
#ifndef FAKE_KERNEL_STDBOOL_H
#define FAKE_KERNEL_STDBOOL_H
#ifndef __cplusplus
#define bool _Bool
#define true 1
#define false 0
#endif
#endif
