/*
 * kernel.h - what the demo kernel's files share: port I/O, leaving QEMU,
 * panics, the direct map and the freestanding string functions. Private to
 * kernel/. The layout of memory is in layout.h.
 */
#ifndef KMM_KERNEL_H
#define KMM_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include "layout.h"

struct kmm;

/* isa-debug-exit values; QEMU exits with (value << 1) | 1, i.e. 33 and 35. */
#define KERNEL_EXIT_PASS 0x10
#define KERNEL_EXIT_FAIL 0x11

#define KERNEL_PAGE_SIZE UINT64_C(4096)

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* The direct-map address of physical pa (valid for RAM and the first MiB
 * from kmain's first line on: layout.h). */
static inline void *phys_to_virt(uint64_t pa)
{
    return (void *)(uintptr_t)(HHDM_BASE + pa);
}

/* The physical address of a kernel image symbol (linked at KERNEL_VMA + pa). */
static inline uint64_t kernel_image_phys(const void *p)
{
    return (uint64_t)(uintptr_t)p - KERNEL_VMA;
}

/* The library's instance managing this machine (takeover.c); NULL until
 * the takeover. */
extern struct kmm *kernel_kmm;

/* Leave QEMU through isa-debug-exit with code (KERNEL_EXIT_*); on a machine
 * without that device, halt forever. Any context. */
noreturn void kernel_exit(uint8_t code);

/* Print "kmm kernel panic: msg" and exit QEMU with KERNEL_EXIT_FAIL. Any
 * context. */
noreturn void kernel_panic(const char *msg);

/* Entry point called from boot.S (kernel/kmain.c). */
noreturn void kmain(uint32_t magic, uint32_t info_phys);

/* kernel/lib.c: what C compilers may call even in freestanding code. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
/* And two the kernel uses itself. */
size_t kstrlen(const char *s);
bool kstreq(const char *a, const char *b);

#endif /* KMM_KERNEL_H */
