/*
 * test_fmt.c - the freestanding formatter behaves as C's snprintf does.
 */
#include "ktest.h"

#include <stdarg.h>

#include <kmm/fmt.h>

/* Formats into a 64-byte buffer and compares with want. */
#define CHECK_FMT(t, want, ...)                                                                    \
    do {                                                                                           \
        char buf_[64];                                                                             \
        size_t n_ = kmm_snprintf(buf_, sizeof(buf_), __VA_ARGS__);                                 \
        KT_EXPECT_STREQ(t, buf_, want);                                                            \
        KT_EXPECT_EQ(t, n_, sizeof(want) - 1);                                                     \
    } while (0)

KTEST(fmt, integers_print_in_every_base_and_length)
{
    CHECK_FMT(t, "0 -1 42", "%d %i %u", 0, -1, 42u);
    CHECK_FMT(t, "-9223372036854775808", "%lld", (long long)(-9223372036854775807LL - 1));
    CHECK_FMT(t, "18446744073709551615", "%llu", 18446744073709551615ULL);
    CHECK_FMT(t, "ff FF 0xff 777 0777", "%x %X %#x %o %#o", 255u, 255u, 255u, 0777u, 0777u);
    CHECK_FMT(t, "-1 255 65535", "%hhd %hhu %hu", (signed char)-1, (unsigned char)255,
              (unsigned short)65535);
    CHECK_FMT(t, "4096 -4096 ffffffffffffffff", "%zu %zd %jx", (size_t)4096, (ptrdiff_t)-4096,
              (uintmax_t)-1);
}

KTEST(fmt, width_precision_and_flags_pad_as_c_does)
{
    CHECK_FMT(t, "   42|42   |00042", "%5d|%-5d|%05d", 42, 42, 42);
    CHECK_FMT(t, "+42  42 -0042", "%+d % d %05d", 42, 42, -42);
    CHECK_FMT(t, "  007|", "%5.3d|", 7);
    CHECK_FMT(t, "|", "%.0d|", 0);
    CHECK_FMT(t, "0x0000000000001000", "%#018llx", 0x1000ULL);
    CHECK_FMT(t, "   ab|ab   |a", "%5s|%-5s|%.1s", "ab", "ab", "abc");
    CHECK_FMT(t, "    x|7", "%*c|%.*d", 5, 'x', 1, 7);
}

/* The formatter without the compiler's format checking, for formats that
 * are wrong on purpose. */
static size_t unchecked(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

KTEST(fmt, pointers_null_strings_and_percent)
{
    CHECK_FMT(t, "0x0000000000001234", "%p", (void *)0x1234);
    char buf[32];
    KT_EXPECT_EQ(t, unchecked(buf, sizeof(buf), "%s 100%%", (const char *)0), 11);
    KT_EXPECT_STREQ(t, buf, "(null) 100%");
}

KTEST(fmt, unknown_conversions_are_copied_out)
{
    char buf[32];
    KT_EXPECT_EQ(t, unchecked(buf, sizeof(buf), "a%qb"), 4);
    KT_EXPECT_STREQ(t, buf, "a%qb");
    KT_EXPECT_EQ(t, unchecked(buf, sizeof(buf), "end%"), 4);
    KT_EXPECT_STREQ(t, buf, "end%");
}

KTEST(fmt, output_is_cut_but_the_full_length_is_returned)
{
    char buf[8];
    size_t n = kmm_snprintf(buf, sizeof(buf), "%s", "0123456789");
    KT_EXPECT_EQ(t, n, 10);
    KT_EXPECT_STREQ(t, buf, "0123456");
    char none[1] = {'z'};
    KT_EXPECT_EQ(t, kmm_snprintf(none, 0, "abc"), 3);
    KT_EXPECT_EQ(t, none[0], 'z'); /* size 0 writes nothing, not even a NUL */
}
