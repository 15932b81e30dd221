/*
 * lib.c - memcpy, memmove, memset and memcmp for the freestanding kernel.
 *
 * C compilers emit calls to these even under -ffreestanding (struct copies,
 * zeroing large locals), and the library's port contract requires them.
 *
 * They are written in inline asm ("rep movsb", memset's store loop) rather
 * than C loops: at -O2 GCC recognises a byte-copy loop as memcpy and would turn memcpy's own body
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

/* c in each byte of a 64-bit word is c times this. */
#define BYTES_OF_WORD UINT64_C(0x0101010101010101)
#define WORD_MASK     ((uintptr_t)sizeof(uint64_t) - 1)
/* The bytes one iteration of memset's store loop fills: 8 words. */
#define FILL_BLOCK    64u

/* Fill n bytes with (unsigned char)c. Returns dst.
 *
 * From an 8-byte aligned dst, whole 64-byte blocks (a page: GFP_ZERO and
 * every page table) are filled by a loop of eight 8-byte stores, the rest
 * with rep stosb. Under QEMU's TCG, which runs the benchmarks and has no
 * fast path for string instructions, each iteration of a rep instruction
 * costs about one store: zeroing a page took 6.8 us with rep stosb, 2.3 us
 * with rep stosq and 1.6 us with this loop (P1z, docs/performance.md). */
void *memset(void *dst, int c, size_t n)
{
    char *d = dst;
    if (((uintptr_t)d & WORD_MASK) == 0 && n >= FILL_BLOCK) {
        char *end = d + (n & ~(size_t)(FILL_BLOCK - 1));
        uint64_t v = (uint64_t)(unsigned char)c * BYTES_OF_WORD;
        __asm__ volatile("1:\n\t"
                         "movq %2, 0(%0)\n\t"
                         "movq %2, 8(%0)\n\t"
                         "movq %2, 16(%0)\n\t"
                         "movq %2, 24(%0)\n\t"
                         "movq %2, 32(%0)\n\t"
                         "movq %2, 40(%0)\n\t"
                         "movq %2, 48(%0)\n\t"
                         "movq %2, 56(%0)\n\t"
                         "addq $64, %0\n\t"
                         "cmpq %1, %0\n\t"
                         "jb 1b"
                         : "+r"(d)
                         : "r"(end), "r"(v)
                         : "memory", "cc");
        n &= FILL_BLOCK - 1;
    }
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
