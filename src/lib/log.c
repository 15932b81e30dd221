/*
 * log.c - formatted logging and panics through the port, the findings of
 * the integrity walkers, error names.
 */
#include "internal.h"

#include <kmm/check.h>
#include <kmm/fmt.h>

/* Longest log line; longer ones are cut (the formatter never overflows). */
#define KMM_LOG_LINE 256

void kmm_logf(struct kmm_port *p, int level, const char *fmt, ...)
{
    if (!p)
        return;
    char line[KMM_LOG_LINE];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kmm_port_log(p, level, line);
}

noreturn void kmm_panicf(struct kmm_port *p, const char *fmt, ...)
{
    char msg[KMM_LOG_LINE];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kmm_port_panic(p, msg);
}

void kmm_check_problem(struct kmm_check_result *r, int status, const char *fmt, ...)
{
    if (r->problems++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        kmm_vsnprintf(r->first, sizeof(r->first), fmt, ap);
        va_end(ap);
    }
    if (status > r->status)
        r->status = status;
}

const char *kmm_strerror(int err)
{
    switch (err) {
    case KMM_OK:
        return "OK";
    case KMM_ENOMEM:
        return "ENOMEM";
    case KMM_EINVAL:
        return "EINVAL";
    case KMM_ERANGE:
        return "ERANGE";
    case KMM_EBUSY:
        return "EBUSY";
    case KMM_ENOENT:
        return "ENOENT";
    case KMM_ESTATE:
        return "ESTATE";
    case KMM_EACCES:
        return "EACCES";
    default:
        return "E?";
    }
}

const char *kmm_version(void)
{
    return "0.1.0";
}

void kmm_sink_printf(const struct kmm_sink *s, const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    size_t n = kmm_vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= sizeof(line)) {
        /* Cut: a line that was to end keeps its end, so the next one does
         * not run on after the cut. */
        n = sizeof(line) - 1;
        size_t f = 0;
        while (fmt[f])
            f++;
        if (f && fmt[f - 1] == '\n')
            line[n - 1] = '\n';
    }
    s->write(s->ctx, line, n);
}
