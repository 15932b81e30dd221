/*
 * kmm/linux.h - the Linux names of the heap (kmalloc, kfree, krealloc,
 * kzalloc, kcalloc, ksize, kmem_cache_*) as inline wrappers over one
 * instance, for code written against Linux's slab API. Optional: nothing
 * in kmm includes it.
 *
 * The kernel names its instance once, before including this header:
 *
 *     extern struct kmm *my_kmm;
 *     #define KMM_LINUX_INSTANCE my_kmm
 *     #include <kmm/linux.h>
 *
 * GFP flags: GFP_KERNEL (may reclaim), GFP_ATOMIC (any context, no
 * reclaim, no vmalloc), GFP_NOWAIT (as GFP_ATOMIC) and __GFP_ZERO.
 * Semantics are kmm/heap.h's; the differences from Linux: kfree and
 * kmem_cache_free of a bad pointer are refused (counted and logged)
 * instead of corrupting the heap, and kmem_cache_destroy of a cache with
 * live objects refuses rather than leaks.
 */
#ifndef KMM_LINUX_H
#define KMM_LINUX_H

#include <kmm/heap.h>

#ifndef KMM_LINUX_INSTANCE
#error "define KMM_LINUX_INSTANCE (an expression naming the struct kmm *) before <kmm/linux.h>"
#endif

typedef kmm_gfp_t gfp_t;

#define GFP_KERNEL ((gfp_t)0)
#define GFP_ATOMIC ((gfp_t)KMM_GFP_ATOMIC)
#define GFP_NOWAIT ((gfp_t)KMM_GFP_ATOMIC)
#define __GFP_ZERO ((gfp_t)KMM_GFP_ZERO)

#define SLAB_HWCACHE_ALIGN 0x1u /* kmem_cache_create: align objects to 64 bytes */

static inline void *kmalloc(size_t size, gfp_t flags)
{
    return kmm_malloc(KMM_LINUX_INSTANCE, size, flags);
}

static inline void *kzalloc(size_t size, gfp_t flags)
{
    return kmm_zalloc(KMM_LINUX_INSTANCE, size, flags);
}

static inline void *kcalloc(size_t n, size_t size, gfp_t flags)
{
    return kmm_calloc(KMM_LINUX_INSTANCE, n, size, flags);
}

static inline void *kmalloc_array(size_t n, size_t size, gfp_t flags)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        return (void *)0;
    return kmm_malloc(KMM_LINUX_INSTANCE, bytes, flags);
}

static inline void *krealloc(const void *p, size_t size, gfp_t flags)
{
    return kmm_realloc(KMM_LINUX_INSTANCE, (void *)(uintptr_t)p, size, flags);
}

static inline void kfree(const void *p)
{
    (void)kmm_free(KMM_LINUX_INSTANCE, p);
}

static inline size_t ksize(const void *p)
{
    return kmm_usable_size(KMM_LINUX_INSTANCE, p);
}

struct kmem_cache; /* is a struct kmm_cache */

static inline struct kmem_cache *kmem_cache_create(const char *name, unsigned int size,
                                                   unsigned int align, unsigned long flags,
                                                   void (*ctor)(void *))
{
    if (flags & SLAB_HWCACHE_ALIGN && align < 64)
        align = 64;
    return (struct kmem_cache *)(void *)kmm_cache_create(KMM_LINUX_INSTANCE, name, size, align,
                                                         ctor, 0);
}

static inline void *kmem_cache_alloc(struct kmem_cache *c, gfp_t flags)
{
    return kmm_cache_alloc(KMM_LINUX_INSTANCE, (struct kmm_cache *)(void *)c, flags);
}

static inline void *kmem_cache_zalloc(struct kmem_cache *c, gfp_t flags)
{
    return kmm_cache_alloc(KMM_LINUX_INSTANCE, (struct kmm_cache *)(void *)c, flags | __GFP_ZERO);
}

static inline void kmem_cache_free(struct kmem_cache *c, void *p)
{
    (void)kmm_cache_free(KMM_LINUX_INSTANCE, (struct kmm_cache *)(void *)c, p);
}

static inline int kmem_cache_shrink(struct kmem_cache *c)
{
    (void)kmm_cache_shrink(KMM_LINUX_INSTANCE, (struct kmm_cache *)(void *)c);
    return 0;
}

static inline void kmem_cache_destroy(struct kmem_cache *c)
{
    if (c)
        (void)kmm_cache_destroy(KMM_LINUX_INSTANCE, (struct kmm_cache *)(void *)c);
}

#endif /* KMM_LINUX_H */
