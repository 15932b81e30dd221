/*
 * kernel.h - what the boot stub's files share: the serial console, leaving
 * QEMU, the test arena and the freestanding string functions. Private to
 * kernel/.
 */
#ifndef KMM_KERNEL_H
#define KMM_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

/* Where the higher half starts: physical pa < 1 GiB is at KERNEL_VMA + pa. */
#define KERNEL_VMA         UINT64_C(0xFFFFFFFF80000000)
/* How much physical memory boot.S maps (identity and higher half). */
#define KERNEL_MAPPED_PHYS (UINT64_C(1) << 30)

/* isa-debug-exit values; QEMU exits with (value << 1) | 1, i.e. 33 and 35. */
#define KERNEL_EXIT_PASS 0x10
#define KERNEL_EXIT_FAIL 0x11

/*
 * The test arena: real RAM the test machines (kernel/test_env.c) use as their
 * simulated physical memory. [kernel_arena_base, + kernel_arena_size) is
 * identity-mapped (virtual == physical), 2 MiB aligned, and belongs to no
 * one else. Set once by kmain() before the tests run; size 0 means none.
 */
extern uintptr_t kernel_arena_base;
extern uint64_t kernel_arena_size;

/* Write len bytes to COM1, as they are (no "\n" translation). Any context;
 * busy-waits on the UART. */
void kernel_serial_write(const char *text, size_t len);
/* Write a NUL-terminated string to COM1. Any context. */
void kernel_serial_puts(const char *s);

/* Leave QEMU through isa-debug-exit with code (KERNEL_EXIT_*); on a machine
 * without that device, halt forever. Any context. */
noreturn void kernel_exit(uint8_t code);

/* Print "kmm boot stub panic: msg" and exit QEMU with KERNEL_EXIT_FAIL. */
noreturn void kernel_panic(const char *msg);

/* Entry points called from boot.S (kernel/kmain.c). */
noreturn void kmain(uint32_t magic, uint32_t info_phys);
noreturn void kernel_trap(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2);

/* kernel/lib.c: what C compilers may call even in freestanding code. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif /* KMM_KERNEL_H */
