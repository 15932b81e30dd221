/*
 * call_sites.h - small functions that call the library from a place a test
 * can recognise: a test that checks which caller a log line, an event or a
 * leak report names calls the library through one of these and then asks
 * kt_inside whether the address named lies in that function's code.
 * Each function is noinline (so the library sees it as its caller) and
 * ends in an empty asm (so its call is not a tail call, whose return
 * address would be the test's). Each test file gets its own copies.
 */
#ifndef KT_CALL_SITES_H
#define KT_CALL_SITES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/heap.h>
#include <kmm/page.h>

#define KT_SITE       __attribute__((noinline, unused)) static
#define KT_SITE_BYTES 256u /* a site's code is shorter than this */

KT_SITE void *kt_malloc_at_a(struct kmm *k, size_t n)
{
    void *p = kmm_malloc(k, n, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

KT_SITE void *kt_malloc_at_b(struct kmm *k, size_t n)
{
    void *p = kmm_malloc(k, n, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

KT_SITE void *kt_malloc_at_c(struct kmm *k, size_t n)
{
    void *p = kmm_malloc(k, n, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

KT_SITE int kt_free_at_c(struct kmm *k, void *p)
{
    int err = kmm_free(k, p);
    __asm__ volatile("" ::: "memory");
    return err;
}

KT_SITE uint64_t kt_page_at_a(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    uint64_t pa = kmm_page_alloc(k, order, flags);
    __asm__ volatile("" ::: "memory");
    return pa;
}

KT_SITE int kt_page_free_at_b(struct kmm *k, uint64_t pa, unsigned order)
{
    int err = kmm_page_free(k, pa, order);
    __asm__ volatile("" ::: "memory");
    return err;
}

/* Whether caller lies inside the code of site fn. */
__attribute__((unused)) static bool kt_inside(const void *caller, const void *fn)
{
    uintptr_t c = (uintptr_t)caller, f = (uintptr_t)fn;
    return c > f && c < f + KT_SITE_BYTES;
}

#endif /* KT_CALL_SITES_H */
