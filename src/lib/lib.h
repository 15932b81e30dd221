/*
 * lib/lib.h - what every layer of the library may use: logging and panics
 * through the port, the assertion macros, alignment, init-only marking.
 * The bottom of the layering (docs/architecture.md): it knows no layer.
 * Private to src/.
 */
#ifndef KMM_LIB_LIB_H
#define KMM_LIB_LIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include <kmm/kmm.h>
#include <kmm/port.h>

/*
 * KMM_INIT marks a function that runs only inside kmm_init, before the
 * instance is live (seL4's BOOT_CODE): it may assume that no other CPU
 * uses the instance and that no lock is needed, and nothing after init may
 * call it. Cold, so it stays out of the hot paths' text.
 */
#define KMM_INIT __attribute__((cold))

static inline uint64_t kmm_align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

static inline uint64_t kmm_align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* Formats one log line and hands it to the port. p may be NULL before an
 * instance exists, in which case the line is dropped. */
void kmm_logf(struct kmm_port *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats a message and panics through the port. Never returns. */
noreturn void kmm_panicf(struct kmm_port *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * KMM_ASSERT(port, cond) - a broken internal invariant: panic with the
 * function's name. On by default: the checks guard structure integrity,
 * which is worth a compare. A port may define KMM_ASSERT in its glue header
 * to route or compile them out (kmm/port.h, KMM_ASSERT_OFF), so cond must
 * have no side effect: the library must behave the same without it. Caller
 * mistakes are never asserted: they are rejected (lib/misuse.h).
 */
#ifndef KMM_ASSERT
#define KMM_ASSERT(port, cond)                                                                     \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            kmm_panicf((port), "%s: assertion failed: %s (%s:%d)", __func__, #cond, __FILE__,      \
                       __LINE__);                                                                  \
    } while (0)
#endif

/*
 * KMM_MUST(port, call) - make a call that, by the library's own invariants,
 * cannot fail (releasing what it just took, querying its own window), and
 * panic if it returned anything but KMM_OK. Unlike an assertion the call is
 * always made, exactly once, whatever the port does with KMM_ASSERT.
 */
#define KMM_MUST(port, call)                                                                       \
    do {                                                                                           \
        int kmm_must_err_ = (call);                                                                \
        if (__builtin_expect(kmm_must_err_ != KMM_OK, 0))                                          \
            kmm_panicf((port), "%s: %s failed: %s (%s:%d)", __func__, #call,                       \
                       kmm_strerror(kmm_must_err_), __FILE__, __LINE__);                           \
    } while (0)

struct kmm_check_result;

/* Records one finding of kmm_check: counts it, keeps the first one's text,
 * and raises the verdict to status if it is worse. */
void kmm_check_problem(struct kmm_check_result *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats one line (at most 159 characters; longer ones are cut, and a cut
 * line whose format ends in '\n' still ends in '\n') and hands it to sink:
 * the report's and the leak report's writer. Needs no memory. */
void kmm_sink_printf(const struct kmm_sink *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* KMM_LIB_LIB_H */
