/*
 * malloc.c - the malloc family, exported from libkmm-malloc.so, over the
 * heap of kmm/heap.h, behaving as programs expect of a system malloc:
 *
 *   - failure returns NULL with errno ENOMEM (EINVAL for a bad alignment),
 *     and nothing changed: realloc keeps the old block;
 *   - calloc and reallocarray check n * size for overflow (ENOMEM);
 *   - posix_memalign returns EINVAL or ENOMEM without touching *memptr or
 *     errno; any power-of-two alignment (over KMM_HEAP_PAGES_MAX: big.c);
 *   - malloc(0) and realloc(p, 0) return a unique block (the heap's 16-byte
 *     one); malloc_usable_size(NULL) is 0;
 *   - free keeps errno;
 *   - every block is aligned to 16 bytes at least (KMM_HEAP_MIN_ALIGN).
 *
 * A pointer the heap rejects (a double free, a pointer it never handed out,
 * one inside a block) ends the process with a message naming the call and
 * its caller, as glibc's checks do; the heap counts and logs it first. So
 * does damage the debugging modes find (KMM_MALLOC_DEBUG: a write past a
 * block or after its free): debug.c has the switches, the reports at exit
 * (KMM_MALLOC_REPORT) and the reasons.
 *
 * Each exported call passes its return address down as the caller: the
 * heap tracks a block at it (the leak report's call sites) and names it in
 * a rejection.
 */
#define _GNU_SOURCE
#include "pm.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define PM_EXPORT __attribute__((visibility("default")))

/* --- the calls ----------------------------------------------------------------------- */

static void *fail(int err)
{
    errno = err;
    return NULL;
}

/* A block of the heap, named to it as allocated by caller while
 * debugging (the leak report's call sites). */
static void *heap_alloc(size_t size, kmm_gfp_t flags, const void *caller)
{
    if (__builtin_expect(pm_debugging, 0))
        return kmm_malloc_caller(pm_k, size, flags, caller);
    return flags ? kmm_zalloc(pm_k, size, 0) : kmm_malloc(pm_k, size, 0);
}

static void *pm_malloc(size_t size, const void *caller)
{
    enum pm_how how = pm_enter();
    void *p = how == PM_BOOT ? pm_boot_alloc(size, 0) : heap_alloc(size, 0, caller);
    pm_leave(how);
    pm_found("malloc", p, caller);
    return p ? p : fail(ENOMEM);
}

static void *pm_calloc(size_t n, size_t size, const void *caller)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return fail(ENOMEM);
    enum pm_how how = pm_enter();
    /* The bootstrap arena is zeroed static memory, never reused. */
    void *p = how == PM_BOOT ? pm_boot_alloc(bytes, 0) : heap_alloc(bytes, KMM_GFP_ZERO, caller);
    pm_leave(how);
    pm_found("calloc", p, caller);
    return p ? p : fail(ENOMEM);
}

/* Any alignment: align a power of two. */
static void *pm_memalign(size_t align, size_t size, const void *caller)
{
    if (align <= KMM_HEAP_MIN_ALIGN)
        return pm_malloc(size, caller);
    void *p;
    if (pm_big_needed(align, size)) {
        p = pm_big_alloc(align, size);
    } else {
        enum pm_how how = pm_enter();
        p = how == PM_BOOT ? pm_boot_alloc(size, align)
                           : kmm_aligned_alloc_caller(pm_k, align, size, 0, caller);
        pm_leave(how);
        pm_found("memalign", p, caller);
    }
    return p ? p : fail(ENOMEM);
}

static void pm_free(void *p, const void *caller)
{
    if (!p || pm_boot_owns(p))
        return; /* bootstrap blocks are never reused */
    int saved = errno;
    if (!pm_big_maybe(p) || !pm_big_free(p)) {
        enum pm_how how = pm_enter();
        int err = how == PM_BOOT ? KMM_EINVAL : kmm_free_caller(pm_k, p, caller);
        pm_leave(how);
        if (__builtin_expect(err != KMM_OK, 0))
            pm_reject("free", p, err, caller);
        pm_found("free", p, caller);
    }
    errno = saved;
}

/* Whether p is a live heap block: then true and its usable bytes in *n.
 * kmm_usable_size's 0 alone does not tell: with red zones it is the size
 * asked for, 0 for malloc(0); a refusal is logged (pm_log_hook). */
static bool heap_usable_size(const void *p, size_t *n)
{
    enum pm_how how = pm_enter();
    pm_self.found = false;
    *n = how == PM_BOOT ? 0 : kmm_usable_size(pm_k, p);
    bool refused = how == PM_BOOT || pm_self.found;
    pm_leave(how);
    return !refused;
}

static size_t pm_usable_size(const void *p, const void *caller)
{
    if (!p)
        return 0;
    if (pm_boot_owns(p))
        return pm_boot_size(p);
    size_t n = pm_big_maybe(p) ? pm_big_size(p) : 0;
    if (!n && !heap_usable_size(p, &n))
        pm_reject("malloc_usable_size", p, KMM_EINVAL, caller);
    return n;
}

/* realloc by moving: a new block, old_size bytes of p copied, p freed. */
static void *move_block(void *p, size_t old_size, size_t size, const void *caller)
{
    void *q = pm_malloc(size, caller);
    if (!q)
        return NULL;
    memcpy(q, p, old_size < size ? old_size : size);
    pm_free(p, caller);
    return q;
}

static void *pm_realloc(void *p, size_t size, const void *caller)
{
    if (!p)
        return pm_malloc(size, caller);
    if (pm_boot_owns(p))
        return move_block(p, pm_boot_size(p), size, caller);
    size_t big = pm_big_maybe(p) ? pm_big_size(p) : 0;
    if (big)
        return move_block(p, big, size, caller);
    enum pm_how how = pm_enter();
    void *q = how == PM_BOOT ? NULL : kmm_realloc_caller(pm_k, p, size, 0, caller);
    pm_leave(how);
    if (q) {
        pm_found("realloc", p, caller);
        return q;
    }
    /* Out of memory, or p is no block: the heap says which. */
    size_t n;
    if (size <= KMM_HEAP_SIZE_MAX && !heap_usable_size(p, &n))
        pm_reject("realloc", p, KMM_EINVAL, caller);
    return fail(ENOMEM);
}

/* --- exported ---------------------------------------------------------------------------- */

PM_EXPORT void *malloc(size_t size)
{
    return pm_malloc(size, __builtin_return_address(0));
}

PM_EXPORT void free(void *p)
{
    pm_free(p, __builtin_return_address(0));
}

PM_EXPORT void *calloc(size_t n, size_t size)
{
    return pm_calloc(n, size, __builtin_return_address(0));
}

PM_EXPORT void *realloc(void *p, size_t size)
{
    return pm_realloc(p, size, __builtin_return_address(0));
}

PM_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return fail(ENOMEM);
    return pm_realloc(p, bytes, __builtin_return_address(0));
}

static bool is_power_of_two(size_t v)
{
    return v && !(v & (v - 1));
}

PM_EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
    if (align < sizeof(void *) || !is_power_of_two(align))
        return EINVAL;
    int saved = errno;
    void *p = pm_memalign(align, size, __builtin_return_address(0));
    errno = saved;
    if (!p)
        return ENOMEM;
    *memptr = p;
    return 0;
}

/* C17 lets aligned_alloc fail for an alignment it does not support; as
 * glibc 2.38 does, anything but a power of two is EINVAL. */
PM_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (!is_power_of_two(align))
        return fail(EINVAL);
    return pm_memalign(align, size, __builtin_return_address(0));
}

/* glibc's memalign rounds an alignment that is no power of two up to one. */
PM_EXPORT void *memalign(size_t align, size_t size)
{
    if (align > (SIZE_MAX >> 1) + 1)
        return fail(EINVAL);
    size_t a = KMM_HEAP_MIN_ALIGN;
    while (a < align)
        a <<= 1;
    return pm_memalign(a, size, __builtin_return_address(0));
}

PM_EXPORT void *valloc(size_t size)
{
    return pm_memalign(PM_PAGE, size, __builtin_return_address(0));
}

/* valloc of size rounded up to whole pages (at least one). */
PM_EXPORT void *pvalloc(size_t size)
{
    if (size > SIZE_MAX - PM_PAGE)
        return fail(ENOMEM);
    size_t pages = size ? (size + PM_PAGE - 1) / PM_PAGE : 1;
    return pm_memalign(PM_PAGE, pages * PM_PAGE, __builtin_return_address(0));
}

PM_EXPORT size_t malloc_usable_size(void *p)
{
    return pm_usable_size(p, __builtin_return_address(0));
}
