/*
 * shell_util.h - the string helpers the shell's files share (freestanding:
 * no libc, and no compiler builtin that may become a libc call). Private to
 * kernel/shell/.
 */
#ifndef KMM_KSHELL_UTIL_H
#define KMM_KSHELL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static inline bool str_eq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* Copies src into dst (cap bytes, cap > 0), cut to fit, NUL-terminated. */
static inline void str_copy(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

/*
 * parse_u64 - a whole word as a number: decimal, or hexadecimal after 0x.
 * Returns false (and leaves *out) for an empty word, any other character,
 * or a value above UINT64_MAX.
 */
static inline bool parse_u64(const char *s, uint64_t *out)
{
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned)(*s - 'A' + 10);
        else
            return false;
        if (v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

#endif /* KMM_KSHELL_UTIL_H */
