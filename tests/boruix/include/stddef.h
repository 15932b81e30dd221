/* A kernel's own stddef.h (tests/boruix/kernel_style.c). */
#ifndef FAKE_KERNEL_STDDEF_H
#define FAKE_KERNEL_STDDEF_H
typedef unsigned long size_t;
#define NULL                   ((void *)0)
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif
