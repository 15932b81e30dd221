/*
 * kmalloc.c - kmm_malloc and its family: size classes through the CPU
 * stacks (heap.h), whole-page blocks, and vmalloc'd blocks; one free that
 * finds which a pointer is. Contracts: kmm/heap.h.
 */
#include "heap/debug.h"
#include "heap/heap.h"

#include <kmm/heap.h>
#include <kmm/vmalloc.h>

#define PAGE KMM_PAGE_SIZE

/* --- large blocks ------------------------------------------------------------------------ */

/* The order of the whole-page block for size bytes. */
static unsigned pages_order(size_t size)
{
    return kmm_order_for_count((size + PAGE - 1) / PAGE);
}

/* Whole pages: a block of 2^order pages from the page allocator, marked as
 * the heap's (owner HEAP_OWNER_LARGE) so that kmm_free knows it. */
static void *pages_alloc(struct kmm *k, unsigned order, kmm_gfp_t flags)
{
    uint64_t bytes = (uint64_t)PAGE << order;
    if (!heap_held_add(k, bytes))
        return NULL;
    uint64_t pa = pmm_slab_alloc(k, order, flags, HEAP_OWNER_LARGE, NULL);
    if (!pa) {
        heap_held_sub(k, bytes);
        return NULL;
    }
    heap_held_got(k);
    return kmm_phys_to_virt(k, pa);
}

/*
 * vmalloc'd blocks are told from the caller's own kmm_vmalloc areas by the
 * call site the window records for each area: every heap block is made by
 * the one kmm_vmalloc call in vmalloc_block, whose return address the
 * first block teaches (vmalloc_site).
 */
static __attribute__((noinline)) void *vmalloc_block(struct kmm *k, size_t size, kmm_gfp_t flags)
{
    uint64_t bytes = kmm_align_up(size, PAGE);
    if (!heap_held_add(k, bytes))
        return NULL;
    void *p = kmm_vmalloc(k, size, flags & KMM_GFP_ZERO);
    if (!p) {
        heap_held_sub(k, bytes);
        return NULL;
    }
    heap_held_got(k);
    struct kmm_kva_area a;
    KMM_MUST(k->port, kmm_kva_lookup(k, (uint64_t)(uintptr_t)p, &a));
    __atomic_store_n(&k->heap.vmalloc_site, a.caller, __ATOMIC_RELAXED);
    return p;
}

/* Where p lies among the vmalloc'd heap blocks: HEAP_FOUND at one's start
 * (its bytes into *bytes), HEAP_INTERIOR inside one, else HEAP_FOREIGN
 * (a guard page included). */
static enum heap_bad vmalloc_block_of(struct kmm *k, const void *p, uint64_t *bytes)
{
    struct kmm_kva_area a;
    uint64_t va = (uint64_t)(uintptr_t)p;
    const void *site = __atomic_load_n(&k->heap.vmalloc_site, __ATOMIC_RELAXED);
    if (!site || kmm_kva_lookup(k, va, &a) != KMM_OK || a.kind != KMM_KVA_VMALLOC ||
        a.caller != site || va - a.va >= a.size)
        return HEAP_FOREIGN;
    *bytes = a.size;
    return va == a.va ? HEAP_FOUND : HEAP_INTERIOR;
}

static void large_count(struct kmm *k, uint64_t bytes, bool alloc)
{
    struct kmm_heap *h = &k->heap;
    if (alloc) {
        atomic_fetch_add_explicit(&h->large_blocks, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->large_bytes, bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->large_allocs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->large_alloc_bytes, bytes, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(&h->large_blocks, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&h->large_bytes, bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->large_frees, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->large_free_bytes, bytes, memory_order_relaxed);
    }
}

/* A block above KMM_HEAP_SLAB_MAX: whole pages up to pages_max bytes
 * (KMM_HEAP_PAGES_MAX, or more for an aligned request), else vmalloc. */
static void *large_alloc(struct kmm *k, size_t size, size_t pages_max, kmm_gfp_t flags)
{
    void *p = NULL;
    uint64_t bytes;
    if (size <= pages_max) {
        p = pages_alloc(k, pages_order(size), flags);
        bytes = (uint64_t)PAGE << pages_order(size);
    } else {
        if (!(flags & KMM_GFP_ATOMIC))
            p = vmalloc_block(k, size, flags);
        bytes = kmm_align_up(size, PAGE);
    }
    if (!p) {
        atomic_fetch_add_explicit(&k->heap.failed, 1, memory_order_relaxed);
        return NULL;
    }
    large_count(k, bytes, true);
    return p;
}

/* --- allocation ----------------------------------------------------------------------------- */

/* Refuses flags the heap does not know (a misuse of fn): true if bad. */
static bool bad_flags(struct kmm *k, kmm_gfp_t flags, const char *fn, size_t size,
                      const void *caller)
{
    if (!(flags & ~KMM_HEAP_GFP_VALID))
        return false;
    heap_misuse(k, KMM_MISUSE_BAD_FLAGS, KMM_EINVAL, caller, "%s(%zu, flags 0x%x): unknown flags",
                fn, size, flags);
    return true;
}

/* A request that cannot be met for want of memory: NULL, counted. */
static void *no_memory(struct kmm *k)
{
    atomic_fetch_add_explicit(&k->heap.failed, 1, memory_order_relaxed);
    return NULL;
}

/* alloc_checked's sizes above its plain path's. */
static void *alloc_other(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller)
{
    if (size > KMM_HEAP_SIZE_MAX)
        return no_memory(k);
    if (size > KMM_HEAP_SLAB_MAX)
        return large_alloc(k, size, KMM_HEAP_PAGES_MAX, flags);
    return heap_debug_alloc_size(k, size, flags, caller);
}

/* Whether cache l, a larger size class, may lend an object to a request
 * that needs align at all: it has its stacks (no debugging: a debugged
 * cache's objects take the checking paths, and their layout is another),
 * and align divides its objects' starts. */
static bool lends(const struct kmm_cache *l, size_t align)
{
    return !heap_debugged(l) && (l->size & (align - 1)) == 0;
}

/* The alignment a request of size bytes that asked for align needs of a
 * lent block: a plain request (align KMM_HEAP_MIN_ALIGN) of a power of two
 * needs its size up to the page, which kmm/heap.h promises it (as Linux
 * does of kmalloc); any other request what it asked. Only a power of two's
 * own size: every request of a power-of-two class would keep that class
 * from borrowing, and so its neighbours below borrowing from it one object
 * at a time through this slow path (13 % more instructions a step on H2
 * under lending's first version; by size, none, and 0.5 % more memory). */
static size_t lend_align(size_t size, size_t align)
{
    if (align != KMM_HEAP_MIN_ALIGN || (size & (size - 1)) || size <= align)
        return align;
    return size < PAGE ? size : PAGE;
}

/*
 * An object for a request of size class i (cache *cp, or NULL if the
 * class's cache could not be made) whose CPU stack was empty. First c's
 * own free objects (depot, slabs: not looked for under the lock when
 * heap_spare says there are none); then, before c grows, a free object of
 * one of the next kmm_heap_set_lend classes that exist and hold memory
 * idle (from their stack on this CPU, else one straight from their slabs:
 * never a new slab, never a stack refilled), and *cp becomes that class's
 * cache, whose object the block is. Lending lets memory one class no
 * longer needs serve its neighbours, where each class would otherwise peak
 * on its own (docs/performance.md, "Lending"). Then c grows (if it exists:
 * at the heap's limit, or for an atomic request short of pages, a class
 * not made yet may still be lent). 0 if memory runs out.
 */
static inline __attribute__((always_inline)) uintptr_t
class_alloc_slow(struct kmm *k, struct kmm_cache **cp, unsigned i, size_t align, kmm_gfp_t flags)
{
    struct kmm_cache *c = *cp;
    uintptr_t p = c && heap_spare(c) ? heap_alloc_cached(k, c) : 0;
    unsigned lend = atomic_load_explicit(&k->heap.lend, memory_order_acquire);
    for (unsigned j = 1; !p && j <= lend && i + j < HEAP_CLASSES; j++) {
        struct kmm_cache *l = __atomic_load_n(&k->heap.classes[i + j], __ATOMIC_ACQUIRE);
        if (!l || !lends(l, align))
            continue;
        /* Only memory l does not need: a slab's worth free in its slabs
         * (heap_idle), or more than half a stack here, objects freed
         * faster than taken. A class that is growing has neither, and
         * lending to it would only make it grow sooner while the
         * borrower's block is larger than it asked. */
        bool idle = heap_idle(l);
        if (heap_take_counted(l, &p, true, idle ? 0 : l->batch) ||
            (idle && (p = heap_lend_one(k, l)))) {
            heap_lent_set(k, l, p);
            *cp = l;
        }
    }
    return p || !c ? p : heap_alloc_slow(k, c, flags);
}

/* Every allocation after its flags were checked: a class object whose
 * start align (a power of two, at least KMM_HEAP_MIN_ALIGN) divides, whole
 * pages, or vmalloc. */
static void *alloc_checked(struct kmm *k, size_t size, size_t align, kmm_gfp_t flags,
                           const void *caller)
{
    /* plain_end is KMM_HEAP_SLAB_MAX + 1, or 0 while a size class is
     * being debugged: then every size leaves here (heap/debug.h). */
    if (size >= k->heap.debug.plain_end)
        return alloc_other(k, size, flags, caller);
    unsigned i = heap_class_of(&k->heap, size);
    struct kmm_cache *c = heap_class_cache(k, i, flags);
    uintptr_t p = c ? heap_pop(c) : 0;
    if (!p && !(p = class_alloc_slow(k, &c, i, lend_align(size, align), flags)))
        return no_memory(k);
    if (flags & KMM_GFP_ZERO)
        __builtin_memset((void *)p, 0, c->usable);
    return (void *)p;
}

/* Every allocation but kmm_malloc's common case. Out of line: kmm_malloc
 * tail-calls it, so that its common case saves no register. */
static __attribute__((noinline)) void *malloc_slow(struct kmm *k, size_t size, kmm_gfp_t flags,
                                                   const char *fn, const void *caller)
{
    if (bad_flags(k, flags, fn, size, caller))
        return NULL;
    return alloc_checked(k, size, KMM_HEAP_MIN_ALIGN, flags, caller);
}

/* kmm_malloc's plain small request whose CPU stack of c (NULL: its class
 * has no cache yet) was empty: few arguments, so that the common case
 * before it keeps every value in a scratch register. */
static __attribute__((noinline)) void *malloc_small_slow(struct kmm *k, size_t size,
                                                         struct kmm_cache *c, const void *caller)
{
    if (!c || size >= k->heap.debug.plain_end)
        return alloc_checked(k, size, KMM_HEAP_MIN_ALIGN, 0, caller);
    uintptr_t p = class_alloc_slow(k, &c, c->id - 1, lend_align(size, KMM_HEAP_MIN_ALIGN), 0);
    return p ? (void *)p : no_memory(k);
}

void *kmm_malloc(struct kmm *k, size_t size, kmm_gfp_t flags)
{
    if (__builtin_expect(size <= HEAP_SMALL_MAX && flags == 0, 1)) {
        /* The common case inline: an object on this CPU's stack. Acquire:
         * a class published by another CPU is seen whole. */
        struct kmm_cache *c = __atomic_load_n(&k->heap.small[(size + 15) / 16], __ATOMIC_ACQUIRE);
        uintptr_t p;
        if (__builtin_expect(c != NULL, 1) && __builtin_expect(heap_take(c, &p), 1))
            return (void *)p;
        return malloc_small_slow(k, size, c, __builtin_return_address(0));
    }
    return malloc_slow(k, size, flags, "kmm_malloc", __builtin_return_address(0));
}

void *kmm_zalloc(struct kmm *k, size_t size, kmm_gfp_t flags)
{
    const void *caller = __builtin_return_address(0);
    if (bad_flags(k, flags, "kmm_zalloc", size, caller))
        return NULL;
    return alloc_checked(k, size, KMM_HEAP_MIN_ALIGN, flags | KMM_GFP_ZERO, caller);
}

void *kmm_calloc(struct kmm *k, size_t n, size_t size, kmm_gfp_t flags)
{
    size_t bytes;
    const void *caller = __builtin_return_address(0);
    if (bad_flags(k, flags, "kmm_calloc", size, caller))
        return NULL;
    if (__builtin_mul_overflow(n, size, &bytes))
        return no_memory(k);
    return alloc_checked(k, bytes, KMM_HEAP_MIN_ALIGN, flags | KMM_GFP_ZERO, caller);
}

void *kmm_malloc_caller(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller)
{
    return malloc_slow(k, size, flags, "kmm_malloc", caller);
}

void *kmm_aligned_alloc(struct kmm *k, size_t align, size_t size, kmm_gfp_t flags)
{
    return kmm_aligned_alloc_caller(k, align, size, flags, __builtin_return_address(0));
}

void *kmm_aligned_alloc_caller(struct kmm *k, size_t align, size_t size, kmm_gfp_t flags,
                               const void *caller)
{
    if (bad_flags(k, flags, "kmm_aligned_alloc", size, caller))
        return NULL;
    if (align == 0 || (align & (align - 1)) || align > KMM_HEAP_ALIGN_MAX) {
        heap_misuse(k, KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                    "kmm_aligned_alloc(align %zu, size %zu): alignment not a power of two up "
                    "to KMM_HEAP_ALIGN_MAX",
                    align, size);
        return NULL;
    }
    if (size > KMM_HEAP_SIZE_MAX)
        return no_memory(k);
    size_t need = kmm_align_up(size > align ? size : align, align);
    if (align <= PAGE && need <= KMM_HEAP_SLAB_MAX) {
        /* A class holds objects aligned to the largest power of two that
         * divides its size (slabs start on a page): the first class of at
         * least need bytes that align divides. */
        unsigned i = heap_class_of(&k->heap, need);
        while (heap_class_size(i) % align)
            i++;
        return alloc_checked(k, heap_class_size(i), align, flags, caller);
    }
    /* Whole pages, physically aligned to their size: virtually too as far
     * as the direct map's base is aligned (a kernel's is to 1 GiB or more;
     * a test machine's may be less). */
    if (need <= KMM_HEAP_ALIGN_MAX && align > PAGE && (k->direct_map & (align - 1))) {
        heap_misuse(k, KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                    "kmm_aligned_alloc(align %zu, size %zu): alignment above the direct map's "
                    "own (base 0x%llx)",
                    align, size, (unsigned long long)k->direct_map);
        return NULL;
    }
    if (need <= KMM_HEAP_ALIGN_MAX)
        return large_alloc(k, need, KMM_HEAP_ALIGN_MAX, flags);
    if (align <= PAGE) /* vmalloc: page-aligned */
        return alloc_checked(k, need, align, flags, caller);
    heap_misuse(k, KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                "kmm_aligned_alloc(align %zu, size %zu): alignment above the page size for a "
                "block above KMM_HEAP_ALIGN_MAX",
                align, size);
    return NULL;
}

/* --- freeing ------------------------------------------------------------------------------- */

/* What a pointer is, for the calls that take one. */
struct heap_block {
    enum { BLOCK_OBJECT, BLOCK_PAGES, BLOCK_VMALLOC, BLOCK_GUARDED, BLOCK_BAD } kind;
    struct heap_ref ref;
    enum heap_bad bad;
    uint64_t bytes; /* usable bytes */
};

static struct heap_block block_of(struct kmm *k, const void *p)
{
    struct heap_block b = {.kind = BLOCK_BAD};
    b.bad = heap_find(k, (uintptr_t)p, &b.ref);
    if (b.bad == HEAP_FOUND) {
        b.kind = b.ref.cache ? BLOCK_OBJECT : BLOCK_PAGES;
        b.bytes = b.ref.cache ? b.ref.cache->usable : (uint64_t)PAGE << b.ref.order;
    } else if (__builtin_expect(b.bad == HEAP_INTERIOR, 0) &&
               heap_debug_find(k, (uintptr_t)p, &b.ref, &b.bytes) == HEAP_FOUND) {
        /* The caller's pointer to an object in the debug layout (heap/debug.h). */
        b.bad = HEAP_FOUND;
        b.kind = BLOCK_OBJECT;
    } else if (b.bad == HEAP_FOREIGN && heap_guard_find(k, (uintptr_t)p, &b.ref.cache, &b.bytes)) {
        b.kind = BLOCK_GUARDED; /* a sampled object on a guard page (heap/debug.h) */
    } else if (b.bad == HEAP_FOREIGN && (b.bad = vmalloc_block_of(k, p, &b.bytes)) == HEAP_FOUND) {
        b.kind = BLOCK_VMALLOC;
    }
    return b;
}

/* Whether block b at p, an object, is free (a guarded one: freed). */
static bool block_free(struct kmm *k, const struct heap_block *b, const void *p)
{
    if (b->kind == BLOCK_GUARDED)
        return heap_guard_freed(k, (uintptr_t)p);
    /* Its slot: p, or before it in the debug layout (heap/debug.h). */
    uintptr_t obj = (uintptr_t)p - (b->kind == BLOCK_OBJECT ? b->ref.cache->dbg.left : 0);
    return b->kind == BLOCK_OBJECT &&
           heap_tag_get(b->ref.cache, obj) == heap_tag(b->ref.cache, obj);
}

static int bad_pointer(struct kmm *k, const char *fn, const void *p, enum heap_bad bad,
                       const void *caller)
{
    return heap_misuse(k, KMM_MISUSE_NOT_BLOCK, KMM_EINVAL, caller, "%s(%p): %s", fn, p,
                       bad == HEAP_INTERIOR ? "inside a heap block, not at its start"
                                            : "not a block of this heap");
}

/* Frees object p of c (found by heap_find): the CPU stack, or a flush. */
static int object_free(struct kmm *k, struct kmm_cache *c, const void *p, const char *fn,
                       const void *caller)
{
    enum heap_push r = heap_push(c, (uintptr_t)p);
    int err = KMM_OK;
    /* A cache being debugged has no stack (heap/debug.h): every free comes
     * here, and a second one gets the report naming the first. */
    if (r == HEAP_STACK_FULL && __builtin_expect(heap_debugged(c), 0))
        return heap_debug_free(k, c, (uintptr_t)p, fn, caller);
    if (r == HEAP_STACK_FULL)
        err = heap_free_slow(k, c, (uintptr_t)p);
    if (r == HEAP_ALREADY_FREE && heap_debugged(c))
        return heap_debug_free(k, c, (uintptr_t)p, fn, caller);
    if (r == HEAP_ALREADY_FREE || err)
        return heap_misuse(k, KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE, caller,
                           "%s(%p): already free (cache %s)", fn, p, c->name);
    return KMM_OK;
}

/* Frees a block other than a cache object. */
static int large_free(struct kmm *k, const struct heap_block *b, const void *p, const char *fn,
                      const void *caller)
{
    if (b->kind == BLOCK_PAGES) {
        if (!pmm_slab_free(k, b->ref.pa))
            return heap_misuse(k, KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE, caller,
                               "%s(%p): already free (freed on another CPU at the same moment)", fn,
                               p);
    } else {
        /* Another CPU freeing it at this moment, or just now: the window
         * refuses the second free, counted and logged there. */
        int err = kmm_vfree(k, p);
        if (err)
            return err == KMM_ESTATE ? KMM_ESTATE : KMM_EINVAL;
    }
    heap_held_sub(k, b->bytes);
    large_count(k, b->bytes, false);
    return KMM_OK;
}

static int free_from(struct kmm *k, const void *p, const char *fn, const void *caller)
{
    if (!p)
        return KMM_OK;
    struct heap_block b = block_of(k, p);
    switch (b.kind) {
    case BLOCK_OBJECT:
        return object_free(k, b.ref.cache, p, fn, caller);
    case BLOCK_PAGES:
    case BLOCK_VMALLOC:
        return large_free(k, &b, p, fn, caller);
    default:
        if (b.kind == BLOCK_GUARDED)
            return heap_guard_free(k, (uintptr_t)p, fn, caller);
        return bad_pointer(k, fn, p, b.bad, caller);
    }
}

/* kmm_free's every case but the common one: free_from out of line, which
 * kmm_free tail-calls with few arguments, so that its common case keeps
 * every value in a scratch register. */
static __attribute__((noinline)) int free_slow(struct kmm *k, const void *p, const void *caller)
{
    /* Still common: an object in a later page of its slab (the larger
     * classes' slabs have several), which heap_find's probe finds. */
    struct heap_ref ref;
    if (p && heap_find(k, (uintptr_t)p, &ref) == HEAP_FOUND && ref.cache)
        return object_free(k, ref.cache, p, "kmm_free", caller);
    return free_from(k, p, "kmm_free", caller);
}

/*
 * kmm_free's body, called from caller. The common case inline: an
 * object start in a slab's first page (heap_cache_of), room on this CPU's
 * stack. Everything else, NULL and an object in a later page of its slab
 * included, takes free_slow, which checks every hop again.
 */
static inline __attribute__((always_inline)) int free_inline(struct kmm *k, const void *p,
                                                             const void *caller)
{
    struct kmm_cache *c = heap_cache_of(k, (uintptr_t)p);
    if (__builtin_expect(c != NULL, 1) &&
        __builtin_expect(heap_push(c, (uintptr_t)p) == HEAP_PUSHED, 1))
        return KMM_OK;
    return free_slow(k, p, caller);
}

int kmm_free(struct kmm *k, const void *p)
{
    return free_inline(k, p, __builtin_return_address(0));
}

int kmm_free_caller(struct kmm *k, const void *p, const void *caller)
{
    return free_inline(k, p, caller);
}

/* Whether a block of size bytes would have been b (at p): at most its
 * usable bytes and of its size class, or of a smaller one if b was lent to
 * it (class_alloc_slow; as many classes below as kmm_heap_set_lend ever
 * allowed); the same power of two of whole pages; the same vmalloc'd
 * pages; for a cache object, at most its size. kmm_realloc keeps such a
 * size in place, and kmm_free_sized accepts only such a size. */
static bool same_class(struct kmm *k, const struct heap_block *b, const void *p, size_t size)
{
    if (size > b->bytes)
        return false;
    switch (b->kind) {
    case BLOCK_GUARDED:
    case BLOCK_OBJECT: {
        struct kmm_cache *c = b->ref.cache;
        if (c->kind != HEAP_KIND_CLASS)
            return true;
        unsigned id = heap_class_of(&k->heap, size) + 1;
        /* A smaller class's size: only for an object lent to it (never a
         * guarded one: a debugged heap lends nothing). */
        return id == c->id ||
               (b->kind == BLOCK_OBJECT &&
                id + atomic_load_explicit(&k->heap.lend_seen, memory_order_relaxed) >= c->id &&
                heap_lent_test(k, c, (uintptr_t)p));
    }
    case BLOCK_PAGES:
        return size > KMM_HEAP_SLAB_MAX && pages_order(size) == b->ref.order;
    case BLOCK_VMALLOC:
        return kmm_align_up(size, PAGE) == b->bytes;
    default:
        return false;
    }
}

int kmm_free_sized(struct kmm *k, const void *p, size_t size)
{
    const void *caller = __builtin_return_address(0);
    if (!p)
        return KMM_OK;
    struct heap_block b = block_of(k, p);
    if (b.kind == BLOCK_BAD)
        return bad_pointer(k, "kmm_free_sized", p, b.bad, caller);
    /* A free block goes on to free_from's double-free report: a lent one's
     * mark went when it came back to its slab, so its request's size no
     * longer matches, but the mistake is the second free, not the size. */
    if (!same_class(k, &b, p, size) && !block_free(k, &b, p))
        return heap_misuse(k, KMM_MISUSE_WRONG_ORDER, KMM_EINVAL, caller,
                           "kmm_free_sized(%p, %zu): the block holds %llu bytes, of another "
                           "size class",
                           p, size, (unsigned long long)b.bytes);
    return free_from(k, p, "kmm_free_sized", caller);
}

/* kmm_cache_free of a pointer heap_find did not find: an object in the
 * debug layout or on a guard page (heap/debug.h), or a bad pointer. */
static int cache_free_other(struct kmm *k, struct kmm_cache *c, const void *p, const void *caller)
{
    struct heap_block b = block_of(k, p);
    if (b.kind != BLOCK_OBJECT && b.kind != BLOCK_GUARDED)
        return bad_pointer(k, "kmm_cache_free", p, b.kind == BLOCK_BAD ? b.bad : HEAP_FOREIGN,
                           caller);
    if (b.ref.cache != c)
        return heap_misuse(k, KMM_MISUSE_BAD_HANDLE, KMM_EINVAL, caller,
                           "kmm_cache_free(%p, %p): an object of cache %s, not of this one",
                           (const void *)c, p, b.ref.cache->name);
    if (b.kind == BLOCK_GUARDED)
        return heap_guard_free(k, (uintptr_t)p, "kmm_cache_free", caller);
    return object_free(k, c, p, "kmm_cache_free", caller);
}

int kmm_cache_free(struct kmm *k, struct kmm_cache *c, const void *p)
{
    const void *caller = __builtin_return_address(0);
    if (!p)
        return KMM_OK;
    struct heap_ref ref;
    enum heap_bad bad = heap_find(k, (uintptr_t)p, &ref);
    if (!c)
        return heap_misuse(k, KMM_MISUSE_BAD_ARG, KMM_EINVAL, caller,
                           "kmm_cache_free(NULL, %p): NULL cache", p);
    if (__builtin_expect(bad != HEAP_FOUND, 0))
        return cache_free_other(k, c, p, caller);
    if (!ref.cache)
        return bad_pointer(k, "kmm_cache_free", p, HEAP_FOREIGN, caller);
    if (ref.cache != c)
        return heap_misuse(k, KMM_MISUSE_BAD_HANDLE, KMM_EINVAL, caller,
                           "kmm_cache_free(%p, %p): an object of cache %s, not of this one",
                           (const void *)c, p, ref.cache->name);
    return object_free(k, c, p, "kmm_cache_free", caller);
}

void *kmm_cache_alloc(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags)
{
    const void *caller = __builtin_return_address(0);
    if (!heap_cache_live(k, c) || (flags & ~KMM_HEAP_GFP_VALID) ||
        ((flags & KMM_GFP_ZERO) && c->ctor)) {
        heap_misuse(k,
                    !c                      ? KMM_MISUSE_BAD_ARG
                    : heap_cache_live(k, c) ? KMM_MISUSE_BAD_FLAGS
                                            : KMM_MISUSE_BAD_HANDLE,
                    KMM_EINVAL, caller, "kmm_cache_alloc(%p, flags 0x%x): %s", (const void *)c,
                    flags,
                    !heap_cache_live(k, c)          ? "not a live cache"
                    : (flags & ~KMM_HEAP_GFP_VALID) ? "unknown flags"
                                                    : "KMM_GFP_ZERO on a cache with a constructor");
        return NULL;
    }
    uintptr_t p = heap_pop(c);
    if (!p) {
        /* A cache being debugged has no stack (heap/debug.h): every
         * allocation comes here. */
        if (__builtin_expect(heap_debugged(c), 0))
            return heap_debug_alloc(k, c, c->usable, flags, caller);
        if (!(p = heap_alloc_slow(k, c, flags)))
            return no_memory(k);
    }
    if (flags & KMM_GFP_ZERO)
        __builtin_memset((void *)p, 0, c->usable);
    return (void *)p;
}

/* --- size and realloc ---------------------------------------------------------------------- */

size_t kmm_usable_size(struct kmm *k, const void *p)
{
    if (!p)
        return 0;
    struct heap_block b = block_of(k, p);
    if (b.kind == BLOCK_BAD) {
        bad_pointer(k, "kmm_usable_size", p, b.bad, __builtin_return_address(0));
        return 0;
    }
    if (block_free(k, &b, p)) {
        heap_misuse(k, KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE, __builtin_return_address(0),
                    "kmm_usable_size(%p): the block is free", p);
        return 0;
    }
    return (size_t)b.bytes;
}

void *kmm_realloc(struct kmm *k, void *p, size_t size, kmm_gfp_t flags)
{
    return kmm_realloc_caller(k, p, size, flags, __builtin_return_address(0));
}

void *kmm_realloc_caller(struct kmm *k, void *p, size_t size, kmm_gfp_t flags, const void *caller)
{
    if (!p)
        return malloc_slow(k, size, flags, "kmm_realloc", caller);
    struct heap_block b = block_of(k, p);
    if (b.kind == BLOCK_BAD) {
        bad_pointer(k, "kmm_realloc", p, b.bad, caller);
        return NULL;
    }
    if (block_free(k, &b, p)) {
        heap_misuse(k, KMM_MISUSE_DOUBLE_FREE, KMM_ESTATE, caller,
                    "kmm_realloc(%p): the block is free", p);
        return NULL;
    }
    if (flags & ~KMM_HEAP_GFP_VALID) {
        heap_misuse(k, KMM_MISUSE_BAD_FLAGS, KMM_EINVAL, caller,
                    "kmm_realloc(%p, %zu, flags 0x%x): unknown flags", p, size, flags);
        return NULL;
    }
    if (size && same_class(k, &b, p, size))
        return p;
    /* Moving a vmalloc'd block frees it through the window, which takes
     * the kernel space's locks: not for an atomic caller. */
    if (b.kind == BLOCK_VMALLOC && (flags & KMM_GFP_ATOMIC))
        return no_memory(k);
    void *n = alloc_checked(k, size, KMM_HEAP_MIN_ALIGN, flags & ~KMM_GFP_ZERO, caller);
    if (!n)
        return NULL;
    size_t keep = size < b.bytes ? size : (size_t)b.bytes;
    __builtin_memcpy(n, p, keep);
    if (flags & KMM_GFP_ZERO) {
        size_t now = kmm_usable_size(k, n);
        if (now > keep)
            __builtin_memset((char *)n + keep, 0, now - keep);
    }
    if (free_from(k, p, "kmm_realloc", caller) != KMM_OK) {
        /* Another CPU freed p meanwhile (the caller's race, refused and
         * counted by free_from): the copy goes too. */
        KMM_MUST(k->port, free_from(k, n, "kmm_realloc", caller));
        return NULL;
    }
    return n;
}
