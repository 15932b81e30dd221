/* A kernel's own memset (tests/boruix/fake_kernel.ld's link): it must win
 * over the archive's weak one, with no duplicate definition. */
#include <stddef.h>

void *memset(void *dst, int c, size_t n);

void *memset(void *dst, int c, size_t n)
{
    volatile unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}
