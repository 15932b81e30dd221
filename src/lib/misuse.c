/*
 * misuse.c - counting and logging rejected calls: one table, one reporter.
 */
#include "lib/misuse.h"

#include <kmm/fmt.h>

#include "internal.h"

KMM_INIT void kmm_misuse_init(struct kmm_misuse_table *t)
{
    for (unsigned l = 0; l < KMM_LAYER_COUNT; l++)
        for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++)
            atomic_init(&t->count[l][m], 0);
}

/* The text ahead of ", caller ...": a log line is at most KMM_LOG_LINE
 * (log.c) long, so the same bound cuts nothing the line could show. */
#define MISUSE_TEXT 224

int kmm_misuse(struct kmm *k, enum kmm_layer layer, enum kmm_misuse what, int err,
               const void *caller, const char *fmt, ...)
{
    KMM_ASSERT(k->port, (unsigned)layer < KMM_LAYER_COUNT && (unsigned)what < KMM_MISUSE_COUNT);
    atomic_fetch_add_explicit(&k->misuse.count[layer][what], 1, memory_order_relaxed);
    char text[MISUSE_TEXT];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    kmm_logf(k->port, KMM_LOG_ERR, "%s, caller %p", text, caller);
    return err;
}

uint64_t kmm_misuse_layer_total(struct kmm *k, enum kmm_layer layer)
{
    uint64_t sum = 0;
    for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++)
        sum += atomic_load_explicit(&k->misuse.count[layer][m], memory_order_relaxed);
    return sum;
}

void kmm_misuse_stats(struct kmm *k, struct kmm_misuse_stats *out)
{
    *out = (struct kmm_misuse_stats){0};
    for (unsigned l = 0; l < KMM_LAYER_COUNT; l++)
        for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++) {
            uint64_t n = atomic_load_explicit(&k->misuse.count[l][m], memory_order_relaxed);
            out->count[l][m] = n;
            out->layer_total[l] += n;
            out->total += n;
        }
}

static const char *const layer_names[KMM_LAYER_COUNT] = {
    [KMM_LAYER_PAGE] = "page", [KMM_LAYER_GROW] = "grow", [KMM_LAYER_RECLAIM] = "reclaim",
    [KMM_LAYER_VM] = "vm",     [KMM_LAYER_KVA] = "kva",   [KMM_LAYER_HEAP] = "heap",
    [KMM_LAYER_DIAG] = "diag",
};

static const char *const misuse_names[KMM_MISUSE_COUNT] = {
    [KMM_MISUSE_BAD_ORDER] = "bad-order",
    [KMM_MISUSE_BAD_FLAGS] = "bad-flags",
    [KMM_MISUSE_UNALIGNED] = "unaligned",
    [KMM_MISUSE_OUTSIDE] = "outside",
    [KMM_MISUSE_RESERVED] = "reserved",
    [KMM_MISUSE_DOUBLE_FREE] = "double-free",
    [KMM_MISUSE_NOT_BLOCK] = "not-block",
    [KMM_MISUSE_WRONG_ORDER] = "wrong-order",
    [KMM_MISUSE_BAD_ARG] = "bad-arg",
    [KMM_MISUSE_BAD_HANDLE] = "bad-handle",
    [KMM_MISUSE_ABSENT] = "absent",
    [KMM_MISUSE_BUSY] = "busy",
    [KMM_MISUSE_LIMIT] = "limit",
    [KMM_MISUSE_OVERRUN] = "overrun",
    [KMM_MISUSE_USE_AFTER_FREE] = "use-after-free",
};

const char *kmm_layer_name(unsigned layer)
{
    return layer < KMM_LAYER_COUNT ? layer_names[layer] : "?";
}

const char *kmm_misuse_name(unsigned misuse)
{
    return misuse < KMM_MISUSE_COUNT ? misuse_names[misuse] : "?";
}
