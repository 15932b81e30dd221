/*
 * test_heap_misuse.c - every caller mistake heap.h names, rejected as SPEC
 * §9 asks: the documented error value (NULL or 0 for the calls that return
 * a pointer or a size), counted once in kmm_misuse_stats under
 * KMM_LAYER_HEAP, one error line naming the call and the caller, nothing
 * changed (the blocks involved stay as they were), and kmm_check clean.
 *
 * heap.h gives each mistake's error value but not its misuse class; each
 * check accepts the classes kmm/misuse.h's definitions allow for it:
 *   a pointer the heap never handed out    OUTSIDE or NOT_BLOCK
 *   a pointer inside a block               NOT_BLOCK
 *   a second free of a free block          DOUBLE_FREE
 *   another cache's object                 BAD_HANDLE or NOT_BLOCK
 *   a sized free of another class          WRONG_ORDER
 *   flags                                   BAD_FLAGS
 *   an alignment that is no power of two   BAD_ARG or UNALIGNED
 *   a destroyed or size-class cache        BAD_HANDLE (or BAD_ARG: a class)
 *   a NULL cache                           BAD_ARG (as kmm_aspace_destroy(NULL))
 *   destroying a cache with live objects   BUSY
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  ((size_t)1 << 10)
#define MIB  ((size_t)1 << 20)
#define PAGE KT_PAGE

static const struct kmm_region ram32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

static bool up(struct ktest *t, struct kt_heap *h)
{
    return kt_heap_up(t, h, ram32, N(ram32), 1);
}

#define FOREIGN     (KT_CLASS(KMM_MISUSE_OUTSIDE) | KT_CLASS(KMM_MISUSE_NOT_BLOCK))
#define INTERIOR    KT_CLASS(KMM_MISUSE_NOT_BLOCK)
#define DOUBLE      KT_CLASS(KMM_MISUSE_DOUBLE_FREE)
#define WRONG_CACHE (KT_CLASS(KMM_MISUSE_BAD_HANDLE) | KT_CLASS(KMM_MISUSE_NOT_BLOCK))
#define WRONG_SIZE  KT_CLASS(KMM_MISUSE_WRONG_ORDER)
#define FLAGS       KT_CLASS(KMM_MISUSE_BAD_FLAGS)
#define BAD_ALIGN   (KT_CLASS(KMM_MISUSE_BAD_ARG) | KT_CLASS(KMM_MISUSE_UNALIGNED))
#define DEAD_CACHE  KT_CLASS(KMM_MISUSE_BAD_HANDLE)
/* A pointer that is no live block, to the calls that only read it
 * (kmm_usable_size, kmm_realloc): either kind of free-side class. */
#define NOT_LIVE    (FOREIGN | DOUBLE)

/*
 * The four calls that take a block pointer, each given p, which is no live
 * heap block (of `classes`): kmm_free and kmm_free_sized refuse with
 * KMM_EINVAL, kmm_usable_size gives 0, kmm_realloc NULL; each counted.
 */
static void expect_every_call_refuses_at(struct ktest *t, struct kt_heap *h, const void *p,
                                         unsigned classes, int line)
{
    struct kmm *k = h->f.k;
    struct kt_heap_snap s;
    const struct kt_heap_verdict v = {KMM_EINVAL, classes};
    kt_heap_snap(h, &s);
    kt_expect_heap_misuse_at(t, h, &s, kmm_free(k, p), &v, 1, "kmm_free", "kmm_free", __FILE__,
                             line);
    kt_heap_snap(h, &s);
    kt_expect_heap_misuse_at(t, h, &s, kmm_free_sized(k, p, 64), &v, 1, "kmm_free_sized",
                             "kmm_free_sized", __FILE__, line);
    kt_heap_snap(h, &s);
    int got = kmm_usable_size(k, p) == 0 ? KMM_EINVAL : KMM_OK;
    kt_expect_heap_misuse_at(t, h, &s, got, &v, 1, "kmm_usable_size", "kmm_usable_size", __FILE__,
                             line);
    kt_heap_snap(h, &s);
    got = KT_NULL_AS(kmm_realloc(k, (void *)(uintptr_t)p, 64, 0), KMM_EINVAL);
    kt_expect_heap_misuse_at(t, h, &s, got, &v, 1, "kmm_realloc", "kmm_realloc", __FILE__, line);
}
#define EXPECT_EVERY_CALL_REFUSES(t, h, p, classes)                                                \
    expect_every_call_refuses_at((t), (h), (p), (classes), __LINE__)

/* --- pointers the heap never handed out ------------------------------------------------ */

KTEST(heap_misuse, a_pointer_the_heap_never_handed_out_is_refused_by_every_call)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    uint64_t local = 0;
    uint64_t pa = kmm_page_alloc(k, 0, 0), freed = kmm_page_alloc(k, 0, 0);
    KT_ASSERT(t, pa != 0 && freed != 0);
    KT_ASSERT_EQ(t, kmm_page_free(k, freed, 0), KMM_OK);
    uint8_t *page = kt_machine_phys(h.f.m, pa);
    void *area = kmm_vmalloc(k, 2 * PAGE, 0);
    KT_ASSERT(t, area != NULL);
    const void *foreign[] = {
        &local,                                                /* the stack */
        page,                                                  /* a page of the page allocator */
        page + 64,                                             /* inside it */
        kt_machine_phys(h.f.m, freed),                         /* a free page */
        area,                                                  /* a kmm_vmalloc area */
        (const void *)(uintptr_t)(h.window_base + 64 * MIB),   /* nothing in the window */
        (const void *)(uintptr_t)16,                           /* low memory */
        (const void *)(uintptr_t)UINT64_C(0x0000800000000000), /* not canonical */
        (const void *)(uintptr_t)UINT64_C(0xfffffffffffff000), /* the top page */
        kt_machine_phys(h.f.m, 64 * MIB),                      /* beyond RAM */
        kt_machine_phys(h.f.m, 0),                             /* below RAM (the first MiB) */
    };
    for (size_t i = 0; i < N(foreign); i++) {
        ktest_diag(t, "foreign pointer %zu: %p", i, foreign[i]);
        EXPECT_EVERY_CALL_REFUSES(t, &h, foreign[i], FOREIGN);
    }
    /* What they pointed at is untouched and still its owner's. */
    KT_EXPECT_EQ(t, kmm_vfree(k, area), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(k, pa, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- pointers inside a block ----------------------------------------------------------------- */

/* An object in a later page of its slab: kmm_free's common path hops from
 * that page's frame to the slab's head (the order the frame carries), and
 * must still refuse a pointer inside the object. */
KTEST(heap_misuse, a_pointer_inside_an_object_in_a_later_slab_page_is_refused)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    enum { OBJS = 16, SIZE = 1792 }; /* a class whose slabs have several pages */
    uint8_t *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, SIZE, 0)) != NULL);
    unsigned later = OBJS;
    for (unsigned i = 0; i < OBJS && later == OBJS; i++)
        if ((uintptr_t)o[i] % (4 * PAGE) >= PAGE) /* its slab: 4 pages, aligned */
            later = i;
    KT_ASSERT(t, later < OBJS);
    kt_heap_fill(&h, o[later], 0, SIZE, 3);
    EXPECT_EVERY_CALL_REFUSES(t, &h, o[later] + 16, INTERIOR);
    EXPECT_EVERY_CALL_REFUSES(t, &h, o[later] + SIZE - 1, INTERIOR);
    KT_EXPECT(t, kt_heap_holds(&h, o[later], 0, SIZE, 3));
    for (unsigned i = 0; i < OBJS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_misuse, a_pointer_inside_a_block_is_refused_and_the_block_stays)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    uint8_t *s = kmm_malloc(k, 64, 0), *n = kmm_malloc(k, 64, 0);
    uint8_t *pg = kmm_malloc(k, 20000, 0), *v = kmm_malloc(k, 300000, 0);
    KT_ASSERT(t, s && n && pg && v);
    kt_heap_fill(&h, s, 0, 64, 1);
    kt_heap_fill(&h, pg, 0, 32 * KIB, 2);
    const void *inside[] = {s + 1,     s + 8,         s + 16, s + 63,   pg + 1,      pg + 16,
                            pg + PAGE, pg + 31 * KIB, v + 16, v + PAGE, v + 64 * KIB};
    for (size_t i = 0; i < N(inside); i++) {
        ktest_diag(t, "interior pointer %zu", i);
        EXPECT_EVERY_CALL_REFUSES(t, &h, inside[i], INTERIOR);
    }
    KT_EXPECT(t, kt_heap_holds(&h, s, 0, 64, 1));
    KT_EXPECT(t, kt_heap_holds(&h, pg, 0, 32 * KIB, 2));
    KT_EXPECT_EQ(t, kmm_usable_size(k, s), 64);
    KT_EXPECT_EQ(t, kmm_free(k, s), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, n), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, pg), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, v), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* A slab whose objects do not fill its pages has a tail past its last
 * object: no object starts there. */
KTEST(heap_misuse, a_pointer_past_a_slabs_last_object_is_refused)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h); /* every class's cache made */
    static const size_t classes[] = {144, 176, 208, 240, 288, 3072, 5120, 7168};
    enum { MAX = 512 };
    static uint8_t *o[MAX];
    unsigned tried = 0;
    for (size_t ci = 0; ci < N(classes); ci++) {
        struct kmm_cache *c = kt_heap_class_cache(&h, classes[ci]);
        KT_ASSERT(t, c != NULL);
        struct kmm_cache_stats cs = kt_cache_stats(t, &h, c);
        size_t slab = (size_t)cs.pages_per_slab * PAGE, used = cs.objects_per_slab * classes[ci];
        if (slab - used < KMM_HEAP_MIN_ALIGN || (cs.pages_per_slab & (cs.pages_per_slab - 1)))
            continue; /* no tail to point into, or slabs not aligned to their size */
        /* Two slabs' worth: one of them is whole. */
        unsigned n = 0;
        while (n < MAX && n < 2 * cs.objects_per_slab)
            KT_ASSERT(t, (o[n++] = kmm_malloc(k, classes[ci], 0)) != NULL);
        /* The highest object of a slab (slabs are aligned runs of pages):
         * the one whose end is closest to its slab's end. */
        for (unsigned i = 0; i < n; i++) {
            uintptr_t off = (uintptr_t)o[i] % slab;
            if (off + classes[ci] <= slab && off + 2 * classes[ci] > slab) {
                const uint8_t *tail = o[i] + classes[ci];
                if ((uintptr_t)tail % slab == 0)
                    continue; /* no tail in this one */
                ktest_diag(t, "class %zu: tail at slab offset %zu", classes[ci],
                           (size_t)((uintptr_t)tail % slab));
                EXPECT_EVERY_CALL_REFUSES(t, &h, tail, INTERIOR);
                tried++;
                break;
            }
        }
        for (unsigned i = 0; i < n; i++)
            KT_ASSERT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    }
    KT_EXPECT(t, tried > 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- double frees ---------------------------------------------------------------------------- */

KTEST(heap_misuse, a_second_free_right_away_is_refused_as_a_double_free)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    static const size_t sizes[] = {0, 16, 64, 100, 1000, 4096, 8192};
    for (size_t i = 0; i < N(sizes); i++) {
        /* A neighbour keeps the slab alive. */
        void *keep = kmm_malloc(k, sizes[i], 0), *p = kmm_malloc(k, sizes[i], 0);
        KT_ASSERT(t, keep && p);
        KT_ASSERT_EQ(t, kmm_free(k, p), KMM_OK);
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free(k, p), KMM_ESTATE, DOUBLE, "kmm_free");
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p, sizes[i]), KMM_ESTATE, DOUBLE,
                              "kmm_free_sized");
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_usable_size(k, p) ? KMM_OK : KMM_ESTATE, KMM_ESTATE,
                              NOT_LIVE, "kmm_usable_size");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_realloc(k, p, 32, 0), KMM_ESTATE), KMM_ESTATE,
                              NOT_LIVE, "kmm_realloc");
        /* The heap is sound: the block comes back once, not twice. */
        void *a = kmm_malloc(k, sizes[i], 0), *b = kmm_malloc(k, sizes[i], 0);
        KT_EXPECT(t, a && b && a != b);
        KT_EXPECT_EQ(t, kmm_free(k, a), KMM_OK);
        KT_EXPECT_EQ(t, kmm_free(k, b), KMM_OK);
        KT_EXPECT_EQ(t, kmm_free(k, keep), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* The block is no longer the last one freed: others went to the CPU's
 * stack after it, and then everything went back to the slabs. */
KTEST(heap_misuse, a_double_free_after_other_frees_and_a_drain_is_refused)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    enum { OBJS = 400 };
    static void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 128, 0)) != NULL);
    /* Every other one: each slab keeps live objects, so stays. */
    for (unsigned i = 0; i < OBJS; i += 2)
        KT_ASSERT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free(k, o[0]), KMM_ESTATE, DOUBLE, "kmm_free");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free(k, o[OBJS - 2]), KMM_ESTATE, DOUBLE, "kmm_free");
    kmm_heap_drain_cpu(k);
    for (unsigned i = 0; i < OBJS; i += 50)
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free(k, o[i]), KMM_ESTATE, DOUBLE, "kmm_free");
    /* Taken again, the blocks are distinct and live; their old twins' frees
     * are right, not doubles. */
    for (unsigned i = 0; i < OBJS; i += 2)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 128, 0)) != NULL);
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* Whole-page and vmalloc'd blocks go back to the page allocator and the
 * window when freed, so the heap may no longer know them: a second free
 * is a double free if it can tell, else a pointer it never handed out;
 * refused either way, and nothing is freed twice. */
KTEST(heap_misuse, a_second_free_of_a_large_block_is_refused)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    static const size_t sizes[] = {20000, KMM_HEAP_PAGES_MAX, 300000};
    const struct kt_heap_verdict either[] = {{KMM_ESTATE, DOUBLE}, {KMM_EINVAL, FOREIGN}};
    for (size_t i = 0; i < N(sizes); i++) {
        void *p = kmm_malloc(k, sizes[i], 0);
        KT_ASSERT(t, p != NULL);
        KT_ASSERT_EQ(t, kmm_free(k, p), KMM_OK);
        struct kt_heap_snap s;
        kt_heap_snap(&h, &s);
        kt_expect_heap_misuse_at(t, &h, &s, kmm_free(k, p), either, N(either), "a second free",
                                 "kmm_free", __FILE__, __LINE__);
    }
    KT_EXPECT_EQ(t, kt_heap_stats(&h).large_blocks, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- caches ------------------------------------------------------------------------------------
 */

KTEST(heap_misuse, an_object_of_another_cache_is_refused_by_kmm_cache_free)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    /* Two caches of one layout: only the owner tells them apart. */
    struct kmm_cache *a = kmm_cache_create(k, "kt-a", 64, 0, NULL, 0);
    struct kmm_cache *b = kmm_cache_create(k, "kt-b", 64, 0, NULL, 0);
    KT_ASSERT(t, a && b);
    void *oa = kmm_cache_alloc(k, a, 0), *ob = kmm_cache_alloc(k, b, 0);
    void *m = kmm_malloc(k, 64, 0);
    KT_ASSERT(t, oa && ob && m);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_free(k, a, ob), KMM_EINVAL, WRONG_CACHE,
                          "kmm_cache_free");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_free(k, b, oa), KMM_EINVAL, WRONG_CACHE,
                          "kmm_cache_free");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_free(k, a, m), KMM_EINVAL, WRONG_CACHE,
                          "kmm_cache_free");
    struct kmm_cache *c64 = kt_heap_class_cache(&h, 64);
    KT_ASSERT(t, c64 != NULL);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_free(k, c64, oa), KMM_EINVAL, WRONG_CACHE,
                          "kmm_cache_free");
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, a).active_objects, 1);
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, b).active_objects, 1);
    /* Freed by their own cache, or by kmm_free, they go. */
    KT_EXPECT_EQ(t, kmm_cache_free(k, a, oa), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, ob), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, m), KMM_OK);
    /* A second free through the cache: a double free. */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_free(k, a, oa), KMM_ESTATE, DOUBLE, "kmm_cache_free");
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, a), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, b), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* A sized free whose size could not have produced the block: larger than
 * its usable size, or of a smaller class (nothing freed). */
KTEST(heap_misuse, a_sized_free_with_a_size_of_another_class_is_refused)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    static const size_t cases[][2] = {/* request, a wrong size */
                                      {100, 96},
                                      {100, 113},
                                      {100, 1},
                                      {100, 4096},
                                      {16, 17},
                                      {129, 128},
                                      {5000, 4608},
                                      {5000, 5121},
                                      {8192, 7680},
                                      {8192, 8193},
                                      {20000, 16384},
                                      {20000, 5000},
                                      {20000, 32 * KIB + 1},
                                      {20000, 0}};
    for (size_t i = 0; i < N(cases); i++) {
        void *p = kmm_malloc(k, cases[i][0], 0);
        KT_ASSERT(t, p != NULL);
        ktest_diag(t, "malloc(%zu) freed as %zu", cases[i][0], cases[i][1]);
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p, cases[i][1]), KMM_EINVAL, WRONG_SIZE,
                              "kmm_free_sized");
        KT_EXPECT_EQ(t, kmm_free_sized(k, p, cases[i][0]), KMM_OK); /* still there */
    }
    /* A cache object: at most its size. */
    struct kmm_cache *c = kmm_cache_create(k, "kt-sized", 40, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    void *o = kmm_cache_alloc(k, c, 0);
    KT_ASSERT(t, o != NULL);
    uint32_t size = kt_cache_stats(t, &h, c).object_size;
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, o, (size_t)size + 1), KMM_EINVAL, WRONG_SIZE,
                          "kmm_free_sized");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, o, 4096), KMM_EINVAL, WRONG_SIZE,
                          "kmm_free_sized");
    KT_EXPECT_EQ(t, kmm_free_sized(k, o, 40), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

static void noop_ctor(void *obj)
{
    (void)obj;
}

KTEST(heap_misuse, bad_flags_are_refused_by_every_allocation_call)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    static const kmm_gfp_t bad[] = {KMM_GFP_DMA, KMM_GFP_DMA32, 0x100u, 0x80000000u,
                                    KMM_GFP_ZERO | KMM_GFP_DMA};
    struct kmm_cache *plain = kmm_cache_create(k, "kt-plain", 32, 0, NULL, 0);
    KT_ASSERT(t, plain != NULL);
    uint8_t *p = kmm_malloc(k, 100, 0);
    KT_ASSERT(t, p != NULL);
    kt_heap_fill(&h, p, 0, 100, 5);
    for (size_t i = 0; i < N(bad); i++) {
        kmm_gfp_t f = bad[i];
        ktest_diag(t, "flags 0x%x", f);
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_malloc(k, 64, f), KMM_EINVAL), KMM_EINVAL,
                              FLAGS, "kmm_malloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_malloc(k, 50000, f), KMM_EINVAL), KMM_EINVAL,
                              FLAGS, "kmm_malloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_zalloc(k, 64, f), KMM_EINVAL), KMM_EINVAL,
                              FLAGS, "kmm_zalloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_calloc(k, 4, 16, f), KMM_EINVAL), KMM_EINVAL,
                              FLAGS, "kmm_calloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_aligned_alloc(k, 64, 64, f), KMM_EINVAL),
                              KMM_EINVAL, FLAGS, "kmm_aligned_alloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_realloc(k, p, 1000, f), KMM_EINVAL), KMM_EINVAL,
                              FLAGS, "kmm_realloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, plain, f), KMM_EINVAL),
                              KMM_EINVAL, FLAGS, "kmm_cache_alloc");
    }
    /* A cache with a constructor refuses KMM_GFP_ZERO: zeroing would undo
     * the construction. */
    struct kmm_cache *built = kmm_cache_create(k, "kt-built", 32, 0, noop_ctor, 0);
    KT_ASSERT(t, built != NULL);
    KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, built, KMM_GFP_ZERO), KMM_EINVAL),
                          KMM_EINVAL, FLAGS, "kmm_cache_alloc");
    /* The block given to the refused realloc is as it was. */
    KT_EXPECT(t, kt_heap_holds(&h, p, 0, 100, 5));
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 112);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, plain), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, built), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_misuse, an_alignment_that_is_no_power_of_two_is_refused)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    static const size_t bad[] = {0, 3, 24, 48, 4095, 4097, 3 * MIB, SIZE_MAX};
    for (size_t i = 0; i < N(bad); i++) {
        ktest_diag(t, "alignment %zu", bad[i]);
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_aligned_alloc(k, bad[i], 64, 0), KMM_EINVAL),
                              KMM_EINVAL, BAD_ALIGN, "kmm_aligned_alloc");
    }
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_misuse, a_cache_with_a_bad_size_alignment_or_flags_is_not_created)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    const unsigned size_cls = KT_CLASS(KMM_MISUSE_BAD_ARG) | KT_CLASS(KMM_MISUSE_BAD_ORDER);
    KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_create(k, "kt", 0, 0, NULL, 0), KMM_EINVAL),
                          KMM_EINVAL, size_cls, "kmm_cache_create");
    KT_EXPECT_HEAP_MISUSE(
        t, &h, KT_NULL_AS(kmm_cache_create(k, "kt", KMM_HEAP_SLAB_MAX + 1, 0, NULL, 0), KMM_EINVAL),
        KMM_EINVAL, size_cls, "kmm_cache_create");
    static const size_t bad_align[] = {3, 24, 2 * PAGE, 3 * PAGE};
    for (size_t i = 0; i < N(bad_align); i++)
        KT_EXPECT_HEAP_MISUSE(
            t, &h, KT_NULL_AS(kmm_cache_create(k, "kt", 64, bad_align[i], NULL, 0), KMM_EINVAL),
            KMM_EINVAL, BAD_ALIGN, "kmm_cache_create");
    KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_create(k, "kt", 64, 0, NULL, 1), KMM_EINVAL),
                          KMM_EINVAL, FLAGS, "kmm_cache_create");
    KT_EXPECT(t, kmm_heap_cache_at(k, KT_HEAP_CLASSES) == NULL);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_misuse, destroy_refuses_null_a_size_class_and_a_destroyed_cache)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h); /* every class's cache made */
    unsigned caches = kt_heap_stats(&h).caches;
    /* NULL is a malformed argument, as kmm_aspace_destroy(NULL) is. */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(k, NULL), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_ARG), "kmm_cache_destroy");
    struct kmm_cache *c64 = kt_heap_class_cache(&h, 64);
    KT_ASSERT(t, c64 != NULL);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(k, c64), KMM_EINVAL,
                          DEAD_CACHE | KT_CLASS(KMM_MISUSE_BAD_ARG), "kmm_cache_destroy");
    /* The class still serves. */
    void *p = kmm_malloc(k, 64, 0);
    KT_EXPECT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    /* A handle that is no cache at all. */
    uint64_t junk[8] = {0};
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(k, (struct kmm_cache *)(void *)junk), KMM_EINVAL,
                          DEAD_CACHE, "kmm_cache_destroy");
    struct kmm_cache *c = kmm_cache_create(k, "kt-dead", 64, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    /* A cache starts at a line of its page (its colour), so a handle a
     * line or a byte away from a live one lies in the same allocated page:
     * refused all the same, and the cache untouched. */
    static const intptr_t off[] = {64, -64, 8, 1};
    for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        struct kmm_cache *near = (struct kmm_cache *)((uintptr_t)c + (uintptr_t)off[i]);
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, near, 0), KMM_EINVAL),
                              KMM_EINVAL, DEAD_CACHE, "kmm_cache_alloc");
    }
    void *o = kmm_cache_alloc(k, c, 0);
    KT_ASSERT(t, o != NULL);
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, o), KMM_OK);
    KT_ASSERT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    /* Destroyed (and nothing created since, so no new cache has its slot). */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(k, c), KMM_EINVAL, DEAD_CACHE,
                          "kmm_cache_destroy");
    KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, c, 0), KMM_EINVAL), KMM_EINVAL,
                          DEAD_CACHE, "kmm_cache_alloc");
    KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, NULL, 0), KMM_EINVAL), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_ARG), "kmm_cache_alloc");
    struct kmm_cache_stats cs;
    KT_EXPECT_EQ(t, kmm_cache_stats(k, c, &cs), KMM_EINVAL);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).caches, caches);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_misuse, draining_a_cpu_out_of_range_is_refused)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 2))
        return;
    const unsigned absent = KT_CLASS(KMM_MISUSE_ABSENT) | KT_CLASS(KMM_MISUSE_BAD_ARG);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_heap_drain_offline_cpu(h.f.k, 2), KMM_EINVAL, absent,
                          "kmm_heap_drain_offline_cpu");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_heap_drain_offline_cpu(h.f.k, KMM_MAX_CPUS), KMM_EINVAL,
                          absent, "kmm_heap_drain_offline_cpu");
    kt_heap_down(&h);
}

/* Rejections are counted in the heap's own figure as in the table's row. */
KTEST(heap_misuse, the_heap_misuse_figure_is_the_tables_heap_row)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    uint64_t local = 0;
    void *p = kmm_malloc(k, 64, 0);
    KT_ASSERT(t, p != NULL);
    kmm_free(k, &local);
    kmm_free(k, (uint8_t *)p + 8);
    KT_ASSERT_EQ(t, kmm_free(k, p), KMM_OK);
    kmm_free(k, p);
    kmm_malloc(k, 8, 0x100u);
    struct kmm_misuse_stats ms;
    kmm_misuse_stats(k, &ms);
    KT_EXPECT_EQ(t, ms.layer_total[KMM_LAYER_HEAP], 4);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 4);
    KT_EXPECT_EQ(t, ms.total, 4);
    KT_EXPECT_EQ(t, ms.count[KMM_LAYER_HEAP][KMM_MISUSE_DOUBLE_FREE], 1);
    KT_EXPECT_EQ(t, ms.count[KMM_LAYER_HEAP][KMM_MISUSE_BAD_FLAGS], 1);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}
