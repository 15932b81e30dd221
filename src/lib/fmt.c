/*
 * fmt.c - kmm_vsnprintf: printf-style formatting with no libc.
 *
 * One pass over the format. Output goes through emit(), which counts every
 * character but stores only those that fit, so the return value is the full
 * length as C's snprintf defines it.
 */
#include <kmm/fmt.h>

#include <stdbool.h>
#include <stdint.h>

struct out {
    char *buf;
    size_t size; /* room in buf, including the NUL */
    size_t len;  /* characters produced so far (stored or not) */
};

static void emit(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void emit_repeat(struct out *o, char c, int n)
{
    for (int i = 0; i < n; i++)
        emit(o, c);
}

/* One conversion's flags, width and precision. */
struct spec {
    bool left;     /* '-' */
    bool zero;     /* '0' */
    bool plus;     /* '+' */
    bool space;    /* ' ' */
    bool alt;      /* '#' */
    int width;     /* -1: none */
    int precision; /* -1: none */
};

/* Pads a body of len characters (after a prefix of plen) to the field width. */
static void emit_padded(struct out *o, const struct spec *sp, const char *prefix, int plen,
                        const char *body, int len, int zeros)
{
    int total = plen + zeros + len;
    int pad = sp->width > total ? sp->width - total : 0;
    if (!sp->left && !(sp->zero && sp->precision < 0))
        emit_repeat(o, ' ', pad);
    for (int i = 0; i < plen; i++)
        emit(o, prefix[i]);
    if (!sp->left && sp->zero && sp->precision < 0)
        emit_repeat(o, '0', pad);
    emit_repeat(o, '0', zeros);
    for (int i = 0; i < len; i++)
        emit(o, body[i]);
    if (sp->left)
        emit_repeat(o, ' ', pad);
}

static void emit_number(struct out *o, const struct spec *sp, uint64_t v, bool negative,
                        unsigned base, bool upper, const char *alt_prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int len = 0;
    /* C: precision 0 with value 0 prints no digits. */
    if (!(v == 0 && sp->precision == 0)) {
        do {
            tmp[sizeof(tmp) - 1 - (size_t)len++] = digits[v % base];
            v /= base;
        } while (v != 0);
    }
    char prefix[3];
    int plen = 0;
    if (negative)
        prefix[plen++] = '-';
    else if (sp->plus)
        prefix[plen++] = '+';
    else if (sp->space)
        prefix[plen++] = ' ';
    for (; alt_prefix && *alt_prefix; alt_prefix++)
        prefix[plen++] = *alt_prefix;
    int zeros = sp->precision > len ? sp->precision - len : 0;
    emit_padded(o, sp, prefix, plen, tmp + sizeof(tmp) - len, len, zeros);
}

/* Reads a decimal number or '*' (taken from ap) at *fmt. */
static int parse_count(const char **fmt, va_list *ap)
{
    if (**fmt == '*') {
        (*fmt)++;
        return va_arg(*ap, int);
    }
    int n = 0;
    while (**fmt >= '0' && **fmt <= '9') {
        if (n < 100000)
            n = n * 10 + (**fmt - '0');
        (*fmt)++;
    }
    return n;
}

enum length { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_LLONG, LEN_SIZE, LEN_MAX, LEN_PTRDIFF };

static enum length parse_length(const char **fmt)
{
    switch (**fmt) {
    case 'h':
        (*fmt)++;
        if (**fmt == 'h') {
            (*fmt)++;
            return LEN_CHAR;
        }
        return LEN_SHORT;
    case 'l':
        (*fmt)++;
        if (**fmt == 'l') {
            (*fmt)++;
            return LEN_LLONG;
        }
        return LEN_LONG;
    case 'z':
        (*fmt)++;
        return LEN_SIZE;
    case 'j':
        (*fmt)++;
        return LEN_MAX;
    case 't':
        (*fmt)++;
        return LEN_PTRDIFF;
    default:
        return LEN_INT;
    }
}

/* long, long long, ptrdiff_t and intmax_t are distinct C types that happen to
 * be alike on LP64: clang-tidy sees clones where C sees different va_args. */
// NOLINTBEGIN(bugprone-branch-clone)
static int64_t signed_arg(enum length len, va_list *ap)
{
    switch (len) {
    case LEN_CHAR:
        return (signed char)va_arg(*ap, int);
    case LEN_SHORT:
        return (short)va_arg(*ap, int);
    case LEN_LONG:
        return va_arg(*ap, long);
    case LEN_LLONG:
        return va_arg(*ap, long long);
    case LEN_SIZE:
    case LEN_PTRDIFF:
        return va_arg(*ap, ptrdiff_t);
    case LEN_MAX:
        return va_arg(*ap, intmax_t);
    case LEN_INT:
    default:
        return va_arg(*ap, int);
    }
}

static uint64_t unsigned_arg(enum length len, va_list *ap)
{
    switch (len) {
    case LEN_CHAR:
        return (unsigned char)va_arg(*ap, unsigned int);
    case LEN_SHORT:
        return (unsigned short)va_arg(*ap, unsigned int);
    case LEN_LONG:
        return va_arg(*ap, unsigned long);
    case LEN_LLONG:
        return va_arg(*ap, unsigned long long);
    case LEN_SIZE:
    case LEN_PTRDIFF:
        return va_arg(*ap, size_t);
    case LEN_MAX:
        return va_arg(*ap, uintmax_t);
    case LEN_INT:
    default:
        return va_arg(*ap, unsigned int);
    }
}

// NOLINTEND(bugprone-branch-clone)

static void parse_flags(const char **fmt, struct spec *sp)
{
    for (;; (*fmt)++) {
        switch (**fmt) {
        case '-':
            sp->left = true;
            break;
        case '0':
            sp->zero = true;
            break;
        case '+':
            sp->plus = true;
            break;
        case ' ':
            sp->space = true;
            break;
        case '#':
            sp->alt = true;
            break;
        default:
            return;
        }
    }
}

/* Formats one conversion starting after its '%'; returns where the format
 * continues. */
static const char *convert(struct out *o, const char *fmt, va_list *ap)
{
    const char *start = fmt - 1;
    struct spec sp = {.width = -1, .precision = -1};
    parse_flags(&fmt, &sp);
    if (*fmt == '*' || (*fmt >= '0' && *fmt <= '9')) {
        sp.width = parse_count(&fmt, ap);
        if (sp.width < 0) { /* a negative '*' width means '-' */
            sp.left = true;
            sp.width = -sp.width;
        }
    }
    if (*fmt == '.') {
        fmt++;
        sp.precision = parse_count(&fmt, ap);
        if (sp.precision < 0)
            sp.precision = -1;
    }
    enum length len = parse_length(&fmt);
    char c = *fmt;
    switch (c) {
    case 'd':
    case 'i': {
        int64_t v = signed_arg(len, ap);
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        emit_number(o, &sp, mag, v < 0, 10, false, NULL);
        break;
    }
    case 'u':
        emit_number(o, &sp, unsigned_arg(len, ap), false, 10, false, NULL);
        break;
    case 'x':
    case 'X': {
        uint64_t v = unsigned_arg(len, ap);
        emit_number(o, &sp, v, false, 16, c == 'X', sp.alt && v ? (c == 'X' ? "0X" : "0x") : NULL);
        break;
    }
    case 'o': {
        uint64_t v = unsigned_arg(len, ap);
        emit_number(o, &sp, v, false, 8, false, sp.alt && v ? "0" : NULL);
        break;
    }
    case 'p': {
        struct spec ps = {.width = sp.width, .precision = 16, .left = sp.left};
        emit_number(o, &ps, (uint64_t)(uintptr_t)va_arg(*ap, void *), false, 16, false, "0x");
        break;
    }
    case 'c': {
        char ch = (char)va_arg(*ap, int);
        emit_padded(o, &sp, "", 0, &ch, 1, 0);
        break;
    }
    case 's': {
        const char *s = va_arg(*ap, const char *);
        if (!s)
            s = "(null)";
        int n = 0;
        while (s[n] && (sp.precision < 0 || n < sp.precision))
            n++;
        sp.zero = false;
        emit_padded(o, &sp, "", 0, s, n, 0);
        break;
    }
    case '%':
        emit(o, '%');
        break;
    default:
        /* Unknown or truncated: copy the conversion text as it stands. */
        for (; start < fmt; start++)
            emit(o, *start);
        if (c == '\0')
            return fmt;
        emit(o, c);
        break;
    }
    return fmt + 1;
}

size_t kmm_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = {.buf = buf, .size = size, .len = 0};
    va_list args;
    va_copy(args, ap);
    while (*fmt) {
        if (*fmt != '%') {
            emit(&o, *fmt++);
            continue;
        }
        fmt = convert(&o, fmt + 1, &args);
    }
    va_end(args);
    if (size > 0)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return o.len;
}

size_t kmm_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
