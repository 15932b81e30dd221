/*
 * kmm/fmt.h - a small freestanding formatter, so that reports, logs and the
 * test framework need no libc.
 *
 * Conversions: %d %i %u %x %X %o %c %s %p %%, with the length modifiers hh h l
 * ll z j t, the flags '-' '0' '+' ' ' '#', a field width and a precision
 * (both may be '*'). No floating point. An unknown conversion is copied out
 * as it stands. %s of NULL prints "(null)"; %p prints 0x and 16 hex digits.
 */
#ifndef KMM_FMT_H
#define KMM_FMT_H

#include <stdarg.h>
#include <stddef.h>

/*
 * kmm_vsnprintf - format into buf, which has room for size bytes. Writes at
 * most size - 1 characters and a terminating NUL (nothing if size is 0).
 * Returns the length the whole output would have, like C's vsnprintf, so a
 * return value >= size means the output was cut. Any context; O(output).
 */
size_t kmm_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/* kmm_snprintf - kmm_vsnprintf with variadic arguments. */
size_t kmm_snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* KMM_FMT_H */
