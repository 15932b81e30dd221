/* A kernel's own stdint.h, as small as Boruix's: the exact-width types and
 * uintptr_t, no limit macros, no UINT64_C. The Boruix headers must need no
 * more (tests/boruix/kernel_style.c). */
#ifndef FAKE_KERNEL_STDINT_H
#define FAKE_KERNEL_STDINT_H
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
typedef unsigned long uintptr_t;
#endif
