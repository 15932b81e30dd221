/*
 * class.c - kmm_malloc's size classes: 16 .. 128 bytes in steps of 16,
 * then eight classes per power of two (144, 160, ..., 256, 288, ..., 8192).
 * A request above 128 bytes lands in a class less than 1/8 larger, so it
 * loses less than 12.5 % to rounding; every class is a multiple of 16, so
 * every block is 16-byte aligned, and a power-of-two class is aligned to
 * its size (slabs start on a page, objects are laid out from there).
 */
#include "heap/heap.h"

/* Classes 0 .. 7: 16 .. 128. Then for each power of two 2^e (e = 7 .. 12)
 * eight classes 2^e + j * 2^(e - 3), j = 1 .. 8. */
#define LINEAR_CLASSES 8u

_Static_assert(LINEAR_CLASSES + 8 * (13 - 7) == HEAP_CLASSES, "56 classes up to 8 KiB");

uint32_t heap_class_size(unsigned i)
{
    if (i < LINEAR_CLASSES)
        return 16 * (i + 1);
    unsigned e = 7 + (i - LINEAR_CLASSES) / 8, j = (i - LINEAR_CLASSES) % 8 + 1;
    return (UINT32_C(1) << e) + j * (UINT32_C(1) << (e - 3));
}

/* The class by arithmetic: for 128 < size <= 8192, with 2^e < size <=
 * 2^(e + 1), j = ceil((size - 2^e) / 2^(e - 3)). */
static unsigned class_by_log(size_t size)
{
    if (size <= 128)
        return size ? (unsigned)((size - 1) / 16) : 0;
    unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    size_t step = (size_t)1 << (e - 3);
    unsigned j = (unsigned)((size - ((size_t)1 << e) + step - 1) / step);
    return LINEAR_CLASSES + (e - 7) * 8 + j - 1;
}

unsigned heap_class_of(const struct kmm_heap *h, size_t size)
{
    if (size <= HEAP_SMALL_MAX)
        return h->small_class[(size + 15) / 16];
    return class_by_log(size);
}

void heap_classes_setup(struct kmm_heap *h)
{
    for (size_t i = 0; i <= HEAP_SMALL_MAX / 16; i++)
        h->small_class[i] = (uint8_t)class_by_log(i * 16);
}
