/*
 * lib.c - memcpy, memmove, memset and memcmp for the freestanding kernel.
 *
 * C compilers emit calls to these even under -ffreestanding (struct copies,
 * zeroing large locals), and the library's port contract requires them.
 *
 * They are written with "rep movsb" / "rep stosb" rather than loops: at -O2
 * GCC recognises a byte-copy loop as memcpy and would turn memcpy's own body
 * into a call to memcpy. Inline asm cannot be rewritten that way, under either
 * compiler, and on CPUs with ERMSB (-cpu max has it) rep movsb is also fast.
 * Every function may be called in any context.
 */
#include "kernel.h"

/* Copy n bytes, lowest address first: safe for overlap when dst <= src. */
static void copy_forward(void *dst, const void *src, size_t n)
{
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* Copy n bytes; the ranges must not overlap. Returns dst. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    copy_forward(dst, src, n);
    return dst;
}

/* Copy n bytes; the ranges may overlap. Returns dst. Copies backwards (with
 * the direction flag set for the length of one instruction) only when dst
 * starts inside src, where a forward copy would overwrite bytes not yet read. */
void *memmove(void *dst, const void *src, size_t n)
{
    uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (d - s >= n) { /* d below s, or at or past its end: forward is safe */
        copy_forward(dst, src, n);
        return dst;
    }
    void *dl = (char *)dst + n - 1;
    const void *sl = (const char *)src + n - 1;
    __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(dl), "+S"(sl), "+c"(n) : : "memory");
    return dst;
}

/* Fill n bytes with (unsigned char)c. Returns dst. */
void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

/* Compare n bytes as unsigned char: <0, 0 or >0 like the C library's. A plain
 * loop: neither compiler turns a compare loop into a call to memcmp. */
int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;
    for (size_t i = 0; i < n; i++)
        if (p[i] != q[i])
            return p[i] < q[i] ? -1 : 1;
    return 0;
}

/* The length of the NUL-terminated s. */
size_t kstrlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* Whether a and b hold the same string. */
bool kstreq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}
