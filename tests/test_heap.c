/*
 * test_heap.c - the kernel heap call by call, against what include/kmm/heap.h
 * promises: size classes, whole-page and vmalloc'd blocks, zeroing,
 * aligned blocks, reallocation, object caches, statistics, the cap, and
 * exhaustion with every page coming back. The misuse of each call is in
 * test_heap_misuse.c, the randomised run in test_heap_random.c.
 *
 * Sizes and classes are computed here from the header's words
 * (heap_fixture.c), never read back from the library.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/port.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  ((size_t)1 << 10)
#define MIB  ((size_t)1 << 20)
#define PAGE KT_PAGE

/* 31 MiB of RAM: small enough for the kernel's test arena and to exhaust
 * quickly, large enough for a 4 MiB-aligned block. */
static const struct kmm_region ram32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

static bool up(struct ktest *t, struct kt_heap *h)
{
    return kt_heap_up(t, h, ram32, N(ram32), 1);
}

static struct kmm_page_stats pstats(struct kt_heap *h)
{
    struct kmm_page_stats s;
    kmm_kva_purge(h->f.k); /* parked areas keep tables: what frees gave back is counted after */
    kmm_page_drain_cpu(h->f.k);
    kmm_page_stats(h->f.k, &s);
    return s;
}

static struct kmm_vmalloc_stats vstats(struct kt_heap *h)
{
    struct kmm_vmalloc_stats s;
    kmm_vmalloc_stats(h->f.k, &s);
    return s;
}

static uint64_t addr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* Whether the page at va is unmapped in the kernel space. */
static bool unmapped(struct kt_heap *h, uint64_t va)
{
    struct kmm_vm_translation tr;
    return kmm_vm_translate(kmm_kernel_aspace(h->f.k), va, &tr) == KMM_ENOENT;
}

/* --- size classes ----------------------------------------------------------------- */

KTEST(heap, the_size_classes_are_the_ones_heap_h_lists)
{
    /* The model first: classes ascend, and each is its own class. */
    for (unsigned i = 0; i < KT_HEAP_CLASSES; i++) {
        size_t c = kt_heap_class_at(i);
        KT_EXPECT_EQ(t, kt_heap_class_of(c), c);
        if (i > 0)
            KT_EXPECT(t, kt_heap_class_of(kt_heap_class_at(i - 1) + 1) == c);
    }
    KT_EXPECT_EQ(t, kt_heap_class_at(KT_HEAP_CLASSES - 1), KMM_HEAP_SLAB_MAX);
    KT_EXPECT_EQ(t, kt_heap_class_at(8), 144);
    KT_EXPECT_EQ(t, kt_heap_class_at(16), 288);

    /* heap.h does not say when a class's cache is made: after a block of
     * each, all are live. */
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    for (unsigned i = 0; i < KT_HEAP_CLASSES; i++) {
        struct kmm_cache *c = kmm_heap_cache_at(h.f.k, i);
        KT_ASSERT(t, c != NULL);
        struct kmm_cache_stats s = kt_cache_stats(t, &h, c);
        if (s.object_size != kt_heap_class_at(i))
            ktest_fail_at(t, __FILE__, __LINE__, "class %u is %u bytes, heap.h says %zu", i,
                          s.object_size, kt_heap_class_at(i));
        KT_EXPECT(t, s.name[0] != '\0');
        KT_EXPECT(t, s.objects_per_slab > 0 && s.pages_per_slab > 0);
        KT_EXPECT(t, (uint64_t)s.objects_per_slab * s.object_size <=
                         (uint64_t)s.pages_per_slab * PAGE);
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* kmm_heap_cache_at lists "size classes first, then object caches in
 * creation order", and kmm_heap_stats counts "live caches, the size
 * classes included": nothing else. */
KTEST(heap, only_size_classes_and_object_caches_are_listed_and_counted)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_cache *extra = kmm_heap_cache_at(h.f.k, KT_HEAP_CLASSES);
    if (extra)
        ktest_fail_at(t, __FILE__, __LINE__, "listed after the classes, no object cache made: %s",
                      kt_cache_stats(t, &h, extra).name);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).caches, KT_HEAP_CLASSES);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* With one CPU each size class's structure and stack take less than half
 * a page, and the classes share pages (kmm/heap.h: the heap's held bytes
 * count them): once every class is made and the heap settled, it keeps
 * fewer pages than two for every three classes, where a page each would be
 * more than one per class. Every structure is a live cache all the same. */
KTEST(heap, the_size_classes_structures_share_pages)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    kt_heap_settle(&h);
    uint64_t pages = kt_heap_stats(&h).bytes_held / PAGE;
    ktest_diag(t, "%llu pages kept for %u classes", (unsigned long long)pages, KT_HEAP_CLASSES);
    KT_EXPECT(t, pages * 3 < 2 * (uint64_t)KT_HEAP_CLASSES);
    for (unsigned i = 0; i < KT_HEAP_CLASSES; i++) {
        struct kmm_cache *c = kmm_heap_cache_at(h.f.k, i);
        KT_ASSERT(t, c != NULL);
        KT_EXPECT_EQ(t, kt_cache_stats(t, &h, c).object_size, kt_heap_class_at(i));
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* The position of c in kmm_heap_cache_at's list, or -1. */
static int listed_at(struct kt_heap *h, const struct kmm_cache *c)
{
    struct kmm_cache *x;
    for (unsigned i = 0; (x = kmm_heap_cache_at(h->f.k, i)) != NULL; i++)
        if (x == c)
            return (int)i;
    return -1;
}

/* Object caches are listed in creation order, also when a new one takes
 * the slot of a destroyed one. */
KTEST(heap, object_caches_are_listed_in_slot_order_after_the_classes)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm_cache *a = kmm_cache_create(h.f.k, "kt-a", 32, 0, NULL, 0);
    struct kmm_cache *b = kmm_cache_create(h.f.k, "kt-b", 32, 0, NULL, 0);
    KT_ASSERT(t, a != NULL && b != NULL && a != b);
    KT_EXPECT(t, listed_at(&h, a) >= 0 && listed_at(&h, b) == listed_at(&h, a) + 1);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, a), KMM_OK);
    KT_EXPECT_EQ(t, listed_at(&h, a), -1);
    /* kmm/heap.h: a new cache may take a destroyed one's slot, so kt-c is
     * listed once, where kt-a was or after kt-b, and never after a size
     * class's place. */
    struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-c", 32, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    int at_c = listed_at(&h, c), at_b = listed_at(&h, b);
    KT_EXPECT(t, at_c >= 0 && at_b >= 0 && at_c != at_b);
    struct kmm_heap_stats hs = kt_heap_stats(&h);
    KT_EXPECT(t, at_c < (int)hs.caches && at_b < (int)hs.caches);
    KT_EXPECT(t, kmm_heap_cache_at(h.f.k, hs.caches) == NULL);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, b), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* Every request 1 .. KMM_HEAP_SLAB_MAX: 16-byte aligned, its class's usable
 * size (so at least the request, and above 128 bytes less than 12.5 % more),
 * every usable byte its own. */
KTEST(heap, every_small_request_gets_its_class_aligned_and_within_an_eighth)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    enum { KEEP = 7 }; /* blocks kept alive at once, so neighbours overlap if wrong */
    void *keep[KEEP] = {0};
    size_t keep_size[KEEP] = {0};
    unsigned bad = 0;
    for (size_t n = 1; n <= KMM_HEAP_SLAB_MAX; n++) {
        void *p = kmm_malloc(h.f.k, n, 0);
        KT_ASSERT(t, p != NULL);
        size_t u = kmm_usable_size(h.f.k, p);
        bool ok = addr(p) % KMM_HEAP_MIN_ALIGN == 0 && u >= n && u == kt_heap_class_of(n) &&
                  (n <= 128 || (u - n) * 8 < n);
        if (!ok && bad++ < 8)
            ktest_fail_at(t, __FILE__, __LINE__, "request %zu: block %p, usable %zu (class %zu)", n,
                          p, u, kt_heap_class_of(n));
        kt_heap_fill(&h, p, 0, u, (uint32_t)n);
        unsigned slot = (unsigned)(n % KEEP);
        if (keep[slot]) {
            if (!kt_heap_holds(&h, keep[slot], 0, kt_heap_class_of(keep_size[slot]),
                               (uint32_t)keep_size[slot]) &&
                bad++ < 8)
                ktest_fail_at(t, __FILE__, __LINE__, "block of %zu lost its bytes",
                              keep_size[slot]);
            KT_ASSERT_EQ(t, kmm_free(h.f.k, keep[slot]), KMM_OK);
        }
        keep[slot] = p;
        keep_size[slot] = n;
    }
    for (unsigned i = 0; i < KEEP; i++)
        KT_EXPECT_EQ(t, kmm_free(h.f.k, keep[i]), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, a_power_of_two_class_is_aligned_to_its_size_up_to_the_page)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    enum { EACH = 24 };
    static void *p[EACH];
    for (size_t c = 16; c <= KMM_HEAP_SLAB_MAX; c *= 2) {
        size_t align = c < PAGE ? c : PAGE;
        for (unsigned i = 0; i < EACH; i++) {
            p[i] = kmm_malloc(h.f.k, c, 0);
            KT_ASSERT(t, p[i] != NULL);
            if (addr(p[i]) % align != 0)
                ktest_fail_at(t, __FILE__, __LINE__, "a block of class %zu at %p", c, p[i]);
        }
        for (unsigned i = 0; i < EACH; i++)
            KT_ASSERT_EQ(t, kmm_free(h.f.k, p[i]), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, size_zero_gives_a_unique_16_byte_block_that_frees_like_any_other)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    void *a = kmm_malloc(h.f.k, 0, 0), *b = kmm_malloc(h.f.k, 0, 0);
    KT_ASSERT(t, a != NULL && b != NULL);
    KT_EXPECT(t, a != b);
    KT_EXPECT_EQ(t, addr(a) % KMM_HEAP_MIN_ALIGN, 0);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, a), 16);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, b), 16);
    kt_heap_fill(&h, a, 0, 16, 1);
    kt_heap_fill(&h, b, 0, 16, 2);
    KT_EXPECT(t, kt_heap_holds(&h, a, 0, 16, 1));
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, 2);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, a), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free_sized(h.f.k, b, 0), KMM_OK);
    /* NULL: ignored, no misuse. */
    KT_EXPECT_EQ(t, kmm_free(h.f.k, NULL), KMM_OK);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, NULL), 0);
    struct kmm_heap_stats s2 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s2.frees - s0.frees, 2);
    KT_EXPECT_EQ(t, s2.misuse, s0.misuse);
    KT_EXPECT_EQ(t, s2.bytes_used, s0.bytes_used);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- large blocks ------------------------------------------------------------------- */

/* Above KMM_HEAP_SLAB_MAX and up to KMM_HEAP_PAGES_MAX: a power-of-two run
 * of whole pages, taken from the page allocator and given back, nothing
 * else taken. */
KTEST(heap, a_block_up_to_128k_is_a_power_of_two_of_whole_pages)
{
    static const size_t sizes[] = {
        KMM_HEAP_SLAB_MAX + 1, 12 * KIB,  12 * KIB + 1,      16 * KIB + 1, 64 * KIB,
        64 * KIB + 1,          100 * KIB, KMM_HEAP_PAGES_MAX};
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    for (size_t i = 0; i < N(sizes); i++) {
        size_t n = sizes[i], want = kt_heap_pages_of(n);
        struct kmm_page_stats p0 = pstats(&h);
        struct kmm_heap_stats s0 = kt_heap_stats(&h);
        void *p = kmm_malloc(h.f.k, n, 0);
        KT_ASSERT(t, p != NULL);
        KT_EXPECT_EQ(t, addr(p) % PAGE, 0);
        KT_EXPECT(t, addr(p) < h.window_base || addr(p) >= h.window_base + h.window_size);
        KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, p), want);
        struct kmm_page_stats p1 = pstats(&h);
        struct kmm_heap_stats s1 = kt_heap_stats(&h);
        if (p0.free_pages - p1.free_pages != want / PAGE)
            ktest_fail_at(t, __FILE__, __LINE__, "%zu bytes took %llu pages, want %zu", n,
                          (unsigned long long)(p0.free_pages - p1.free_pages), want / PAGE);
        KT_EXPECT_EQ(t, s1.large_blocks - s0.large_blocks, 1);
        KT_EXPECT_EQ(t, s1.large_bytes - s0.large_bytes, want);
        KT_EXPECT_EQ(t, s1.bytes_held - s0.bytes_held, want);
        KT_EXPECT_EQ(t, s1.bytes_used - s0.bytes_used, want);
        kt_heap_fill(&h, p, 0, want, (uint32_t)n);
        KT_EXPECT(t, kt_heap_holds(&h, p, 0, want, (uint32_t)n));
        KT_EXPECT_HEALTHY(t, h.f.k);
        KT_ASSERT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
        struct kmm_page_stats p2 = pstats(&h);
        KT_EXPECT(t, kt_same_buddyinfo(&p0, &p2));
        KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, s0.bytes_held);
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* Beyond KMM_HEAP_PAGES_MAX: a vmalloc'd area of the window, every byte
 * usable, a guard page after it; freed by kmm_free. */
KTEST(heap, a_block_beyond_128k_is_vmalloced_with_a_guard_page)
{
    static const size_t sizes[] = {KMM_HEAP_PAGES_MAX + 1, 200000, 1 * MIB, 3 * MIB + 5};
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    for (size_t i = 0; i < N(sizes); i++) {
        size_t n = sizes[i];
        struct kmm_page_stats p0 = pstats(&h);
        struct kmm_vmalloc_stats v0 = vstats(&h);
        struct kmm_heap_stats s0 = kt_heap_stats(&h);
        void *p = kmm_malloc(h.f.k, n, 0);
        KT_ASSERT(t, p != NULL);
        KT_EXPECT(t, addr(p) >= h.window_base && addr(p) + n <= h.window_base + h.window_size);
        KT_EXPECT_EQ(t, addr(p) % PAGE, 0);
        size_t u = kmm_usable_size(h.f.k, p);
        KT_EXPECT(t, u >= n && u - n < PAGE);
        struct kmm_vmalloc_stats v1 = vstats(&h);
        KT_EXPECT_EQ(t, v1.vmalloc_areas - v0.vmalloc_areas, 1);
        KT_EXPECT_EQ(t, v1.vmalloc_pages - v0.vmalloc_pages, (n + PAGE - 1) / PAGE);
        KT_EXPECT(t, unmapped(&h, (addr(p) + n + PAGE - 1) / PAGE * PAGE)); /* the guard */
        struct kmm_heap_stats s1 = kt_heap_stats(&h);
        KT_EXPECT_EQ(t, s1.large_blocks - s0.large_blocks, 1);
        KT_EXPECT_EQ(t, s1.large_bytes - s0.large_bytes, u);
        KT_EXPECT_EQ(t, s1.bytes_used - s0.bytes_used, u);
        kt_heap_fill(&h, p, 0, u, (uint32_t)n);
        KT_EXPECT(t, kt_heap_holds(&h, p, 0, u, (uint32_t)n));
        KT_EXPECT_HEALTHY(t, h.f.k);
        KT_ASSERT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
        KT_EXPECT_EQ(t, vstats(&h).vmalloc_areas, v0.vmalloc_areas);
        struct kmm_page_stats p2 = pstats(&h);
        KT_EXPECT(t, kt_same_buddyinfo(&p0, &p2));
        KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, s0.bytes_held);
    }
    /* Atomic requests never use vmalloc: one this large fails, and takes
     * nothing. */
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_vmalloc_stats v0 = vstats(&h);
    KT_EXPECT(t, kmm_malloc(h.f.k, KMM_HEAP_PAGES_MAX + 1, KMM_GFP_ATOMIC) == NULL);
    struct kmm_page_stats p1 = pstats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, vstats(&h).areas, v0.areas);
    /* Up to KMM_HEAP_PAGES_MAX an atomic request is served. */
    void *q = kmm_malloc(h.f.k, KMM_HEAP_PAGES_MAX, KMM_GFP_ATOMIC);
    KT_EXPECT(t, q != NULL);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, a_request_beyond_the_size_max_returns_null_and_takes_nothing)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    KT_EXPECT(t, kmm_malloc(h.f.k, KMM_HEAP_SIZE_MAX + 1, 0) == NULL);
    KT_EXPECT(t, kmm_malloc(h.f.k, SIZE_MAX, 0) == NULL);
    KT_EXPECT(t, kmm_zalloc(h.f.k, SIZE_MAX, 0) == NULL);
    KT_EXPECT(t, kmm_aligned_alloc(h.f.k, 64, SIZE_MAX, 0) == NULL);
    /* Within the maximum but far beyond the machine: no memory. */
    KT_EXPECT(t, kmm_malloc(h.f.k, KMM_HEAP_SIZE_MAX, 0) == NULL);
    KT_EXPECT(t, kmm_malloc(h.f.k, 64 * MIB, 0) == NULL);
    kt_heap_settle(&h);
    struct kmm_page_stats p1 = pstats(&h);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, s1.allocs, s0.allocs);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, s1.large_blocks, s0.large_blocks);
    KT_EXPECT_EQ(t, vstats(&h).areas, 0);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- zeroing -------------------------------------------------------------------------- */

/* Sizes of every kind of block; the vmalloc'd one only where the test can
 * see the library's writes (hosted: its window is live; in the kernel the
 * library could only zero it through the direct map). */
static const size_t zero_sizes[] = {
    1, 16, 100, 129, 4000, KMM_HEAP_SLAB_MAX, 20000, KMM_HEAP_PAGES_MAX, 200000};

KTEST(heap, zalloc_and_the_zero_flag_clear_every_usable_byte_of_a_reused_block)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    for (size_t i = 0; i < N(zero_sizes); i++) {
        size_t n = zero_sizes[i];
        if (kt_heap_is_vmalloc_size(n) && !h.live)
            continue;
        for (unsigned how = 0; how < 2; how++) {
            /* Dirty a block of this size, free it, and ask again: the same
             * memory (or other memory) must come back zeroed. */
            void *dirty = kmm_malloc(h.f.k, n, 0);
            KT_ASSERT(t, dirty != NULL);
            size_t u = kmm_usable_size(h.f.k, dirty);
            kt_heap_fill(&h, dirty, 0, u, 0xd1);
            KT_ASSERT_EQ(t, kmm_free(h.f.k, dirty), KMM_OK);
            void *p = how ? kmm_malloc(h.f.k, n, KMM_GFP_ZERO) : kmm_zalloc(h.f.k, n, 0);
            KT_ASSERT(t, p != NULL);
            u = kmm_usable_size(h.f.k, p);
            if (!kt_heap_all(&h, p, 0, u, 0))
                ktest_fail_at(t, __FILE__, __LINE__, "%s(%zu): a usable byte is not zero",
                              how ? "kmm_malloc ZERO" : "kmm_zalloc", n);
            KT_ASSERT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
        }
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, calloc_zeroes_the_array_and_an_overflowing_count_allocates_nothing)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    void *dirty = kmm_malloc(h.f.k, 1000, 0);
    KT_ASSERT(t, dirty != NULL);
    kt_heap_fill(&h, dirty, 0, kmm_usable_size(h.f.k, dirty), 7);
    KT_ASSERT_EQ(t, kmm_free(h.f.k, dirty), KMM_OK);
    uint64_t *a = kmm_calloc(h.f.k, 125, sizeof(uint64_t), 0);
    KT_ASSERT(t, a != NULL);
    KT_EXPECT(t, kmm_usable_size(h.f.k, a) >= 1000);
    KT_EXPECT(t, kt_heap_all(&h, a, 0, kmm_usable_size(h.f.k, a), 0));
    KT_EXPECT_EQ(t, kmm_free(h.f.k, a), KMM_OK);
    void *big = kmm_calloc(h.f.k, 3, 10000, 0); /* whole pages */
    KT_ASSERT(t, big != NULL);
    KT_EXPECT(t, kt_heap_all(&h, big, 0, kmm_usable_size(h.f.k, big), 0));
    KT_EXPECT_EQ(t, kmm_free(h.f.k, big), KMM_OK);
    /* n or size 0: a zero-sized array, as kmm_zalloc(0) a unique block. */
    void *z1 = kmm_calloc(h.f.k, 0, 8, 0), *z2 = kmm_calloc(h.f.k, 8, 0, 0);
    KT_EXPECT(t, z1 != NULL && z2 != NULL && z1 != z2);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, z1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, z2), KMM_OK);

    kt_heap_settle(&h);
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    static const size_t over[][2] = {{SIZE_MAX, 2},
                                     {2, SIZE_MAX},
                                     {SIZE_MAX / 2 + 1, 2},
                                     {(size_t)1 << 32, (size_t)1 << 32},
                                     {SIZE_MAX / 16 + 1, 16}};
    for (size_t i = 0; i < N(over); i++)
        if (kmm_calloc(h.f.k, over[i][0], over[i][1], 0) != NULL)
            ktest_fail_at(t, __FILE__, __LINE__, "calloc(%zu, %zu) returned a block", over[i][0],
                          over[i][1]);
    struct kmm_page_stats p1 = pstats(&h);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, s1.allocs, s0.allocs);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, s1.bytes_used, s0.bytes_used);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- aligned blocks ------------------------------------------------------------------- */

/* Every power of two from 1 to 4 MiB, with sizes below, at and above it,
 * one of a class that is no power of two (3/2 of it), and blocks of every
 * kind: aligned as asked. Whole pages serve alignments above the page up
 * to KMM_HEAP_ALIGN_MAX; beyond it a block is vmalloc'd and only
 * page-aligned: an alignment above the page is refused (NULL). */
KTEST(heap, aligned_alloc_honours_every_power_of_two_up_to_4m)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    unsigned bad = 0;
    /* Whole pages are aligned physically: virtually as far as the direct
     * map's base is (a test machine's may be only 2 MiB-aligned). */
    uintptr_t dm = kmm_port_direct_map(kmm_port_of(h.f.k));
    for (size_t align = 1; align <= 4 * MIB; align *= 2) {
        const size_t sizes[] = {
            1,     align / 2 + 1, align,  align + 1,          align + align / 2,
            3000,  5000,          100000, KMM_HEAP_PAGES_MAX, KMM_HEAP_PAGES_MAX + 1,
            300000};
        for (size_t i = 0; i < N(sizes); i++) {
            size_t n = sizes[i];
            void *p = kmm_aligned_alloc(h.f.k, align, n, 0);
            /* kmm/heap.h: whole pages up to KMM_HEAP_ALIGN_MAX; beyond, only
             * vmalloc's page alignment. */
            size_t need = (n > align ? n : align);
            bool refused = align > PAGE && (need > KMM_HEAP_ALIGN_MAX || (dm & (align - 1)));
            if (refused) {
                if (p != NULL && bad++ < 8)
                    ktest_fail_at(t, __FILE__, __LINE__,
                                  "aligned_alloc(%zu, %zu): a vmalloc'd block, not refused", align,
                                  n);
            } else if (!p) {
                if (bad++ < 8)
                    ktest_fail_at(t, __FILE__, __LINE__, "aligned_alloc(%zu, %zu) failed", align,
                                  n);
                continue;
            }
            if (!p)
                continue;
            size_t u = kmm_usable_size(h.f.k, p);
            if ((addr(p) % align != 0 || addr(p) % KMM_HEAP_MIN_ALIGN != 0 || u < n) && bad++ < 8)
                ktest_fail_at(t, __FILE__, __LINE__, "aligned_alloc(%zu, %zu): %p, usable %zu",
                              align, n, p, u);
            if (!kt_heap_is_vmalloc_size(n) || h.live) {
                kt_heap_fill(&h, p, u - 1, 1, 3);
                kt_heap_fill(&h, p, 0, 1, 3);
            }
            KT_ASSERT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
        }
    }
    kt_heap_settle(&h);
    struct kmm_page_stats p1 = pstats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, s0.bytes_held);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- realloc --------------------------------------------------------------------------- */

KTEST(heap, realloc_within_the_class_or_the_pages_stays_in_place)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    /* Class 112 holds 97 .. 112. */
    uint8_t *p = kmm_malloc(h.f.k, 100, 0);
    KT_ASSERT(t, p != NULL);
    kt_heap_fill(&h, p, 0, 100, 11);
    KT_EXPECT(t, kmm_realloc(h.f.k, p, 112, 0) == p);
    KT_EXPECT(t, kmm_realloc(h.f.k, p, 97, 0) == p);
    KT_EXPECT(t, kmm_realloc(h.f.k, p, 100, 0) == p);
    KT_EXPECT(t, kt_heap_holds(&h, p, 0, 97, 11));
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, p), 112);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
    /* 20000 bytes: eight pages. Anything from 16 KiB + 1 to 32 KiB fits
     * them and wastes at most half. */
    uint8_t *q = kmm_malloc(h.f.k, 20000, 0);
    KT_ASSERT(t, q != NULL);
    kt_heap_fill(&h, q, 0, 20000, 12);
    KT_EXPECT(t, kmm_realloc(h.f.k, q, 32 * KIB, 0) == q);
    KT_EXPECT(t, kmm_realloc(h.f.k, q, 16 * KIB + 1, 0) == q);
    KT_EXPECT(t, kt_heap_holds(&h, q, 0, 16 * KIB + 1, 12));
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, q), 32 * KIB);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* One step of a chain of reallocations: p (holding `have` bytes of seed's
 * pattern) to n bytes; the kept bytes are checked and the rest refilled. */
static void *realloc_step(struct ktest *t, struct kt_heap *h, void *p, size_t have, size_t n,
                          uint32_t seed, int line)
{
    struct kmm_heap_stats s0 = kt_heap_stats(h);
    void *q = kmm_realloc(h->f.k, p, n, 0);
    if (!q) {
        ktest_fail_at(t, __FILE__, line, "realloc(%zu -> %zu) failed", have, n);
        return p;
    }
    size_t keep = have < n ? have : n;
    if (!kt_heap_holds(h, q, 0, keep, seed))
        ktest_fail_at(t, __FILE__, line, "realloc(%zu -> %zu) lost the contents", have, n);
    size_t u = kmm_usable_size(h->f.k, q);
    if (u < n || addr(q) % KMM_HEAP_MIN_ALIGN)
        ktest_fail_at(t, __FILE__, line, "realloc(%zu -> %zu): %p, usable %zu", have, n, q, u);
    struct kmm_heap_stats s1 = kt_heap_stats(h);
    if (s1.allocs - s1.frees != s0.allocs - s0.frees)
        ktest_fail_at(t, __FILE__, line, "realloc(%zu -> %zu) changed the live count by %lld", have,
                      n, (long long)((s1.allocs - s1.frees) - (s0.allocs - s0.frees)));
    kt_heap_fill(h, q, 0, n, seed);
    return q;
}

KTEST(heap, realloc_across_classes_and_kinds_keeps_the_contents)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    /* Up and down through classes and whole pages; through vmalloc where
     * the library's copy is visible (hosted: the window is live). */
    static const size_t chain[] = {1,     16,     17,     200,  4096,    8192, 8193,   40000,
                                   65536, 300000, 131072, 5000, 1000000, 64,   130000, 2};
    uint32_t seed = 0x5eed;
    void *p = kmm_malloc(h.f.k, chain[0], 0);
    KT_ASSERT(t, p != NULL);
    kt_heap_fill(&h, p, 0, chain[0], seed);
    size_t have = chain[0];
    for (size_t i = 1; i < N(chain); i++) {
        if (kt_heap_is_vmalloc_size(chain[i]) && !h.live)
            continue;
        p = realloc_step(t, &h, p, have, chain[i], seed, __LINE__);
        have = chain[i];
    }
    KT_EXPECT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
    /* Whole pages shrunk to less than half of them: a new, smaller block. */
    uint8_t *big = kmm_malloc(h.f.k, 64 * KIB, 0);
    KT_ASSERT(t, big != NULL);
    kt_heap_fill(&h, big, 0, 64 * KIB, 9);
    uint8_t *small = realloc_step(t, &h, big, 64 * KIB, 20000, 9, __LINE__);
    KT_EXPECT(t, small != big);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, small), 32 * KIB);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, small), KMM_OK);
    kt_heap_settle(&h);
    struct kmm_page_stats p1 = pstats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, s0.bytes_held);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, realloc_of_null_allocates_and_to_size_zero_frees_into_a_unique_block)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    void *p = kmm_realloc(h.f.k, NULL, 300, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, p), kt_heap_class_of(300));
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.allocs - s1.frees, s0.allocs - s0.frees + 1);
    void *z = kmm_realloc(h.f.k, p, 0, 0);
    KT_ASSERT(t, z != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, z), 16);
    struct kmm_heap_stats s2 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s2.allocs - s2.frees, s0.allocs - s0.frees + 1);
    KT_EXPECT_EQ(t, s2.bytes_used - s0.bytes_used, 16);
    void *z2 = kmm_realloc(h.f.k, NULL, 0, 0);
    KT_EXPECT(t, z2 != NULL && z2 != z);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, z), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, z2), KMM_OK);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, s0.bytes_used);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* A reallocation that cannot be served (the cap, a size beyond the
 * maximum): NULL, and the block stays as it was, still allocated. */
KTEST(heap, a_failed_realloc_leaves_the_block_allocated_and_intact)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    uint8_t *p = kmm_malloc(h.f.k, 100, 0);
    uint8_t *q = kmm_malloc(h.f.k, 20000, 0);
    KT_ASSERT(t, p != NULL && q != NULL);
    kt_heap_fill(&h, p, 0, 100, 21);
    kt_heap_fill(&h, q, 0, 20000, 22);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, kmm_heap_set_limit(h.f.k, s0.bytes_held), 0);
    static const size_t grow[] = {60000, KMM_HEAP_PAGES_MAX, 200000};
    for (size_t i = 0; i < N(grow); i++) {
        KT_EXPECT(t, kmm_realloc(h.f.k, p, grow[i], 0) == NULL);
        KT_EXPECT(t, kmm_realloc(h.f.k, q, grow[i], 0) == NULL);
    }
    KT_EXPECT(t, kmm_realloc(h.f.k, p, KMM_HEAP_SIZE_MAX + 1, 0) == NULL);
    KT_EXPECT(t, kmm_realloc(h.f.k, q, SIZE_MAX, 0) == NULL);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT(t, s1.failed > s0.failed);
    KT_EXPECT_EQ(t, s1.allocs - s1.frees, s0.allocs - s0.frees);
    KT_EXPECT(t, s1.bytes_held <= s0.bytes_held);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, p), 112);
    KT_EXPECT_EQ(t, kmm_usable_size(h.f.k, q), 32 * KIB);
    KT_EXPECT(t, kt_heap_holds(&h, p, 0, 100, 21));
    KT_EXPECT(t, kt_heap_holds(&h, q, 0, 20000, 22));
    KT_EXPECT_HEALTHY(t, h.f.k);
    KT_EXPECT_EQ(t, kmm_heap_set_limit(h.f.k, 0), s0.bytes_held);
    /* Without the cap the same growth works. */
    p = kmm_realloc(h.f.k, p, 60000, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT(t, kt_heap_holds(&h, p, 0, 100, 21));
    KT_EXPECT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, realloc_with_the_zero_flag_zeroes_beyond_the_old_usable_size)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    /* Dirty the memory the grown blocks will likely reuse. */
    static const size_t to[] = {4000, 50000};
    for (size_t i = 0; i < N(to); i++) {
        void *d = kmm_malloc(h.f.k, to[i], 0);
        KT_ASSERT(t, d != NULL);
        kt_heap_fill(&h, d, 0, kmm_usable_size(h.f.k, d), 0xee);
        KT_ASSERT_EQ(t, kmm_free(h.f.k, d), KMM_OK);
    }
    uint8_t *p = kmm_malloc(h.f.k, 100, 0); /* usable 112 */
    KT_ASSERT(t, p != NULL);
    kt_heap_fill(&h, p, 0, 112, 31);
    for (size_t i = 0; i < N(to); i++) {
        size_t old = kmm_usable_size(h.f.k, p);
        p = kmm_realloc(h.f.k, p, to[i], KMM_GFP_ZERO);
        KT_ASSERT(t, p != NULL);
        size_t u = kmm_usable_size(h.f.k, p);
        KT_EXPECT(t, kt_heap_holds(&h, p, 0, 100, 31));
        if (!kt_heap_all(&h, p, old, u - old, 0))
            ktest_fail_at(t, __FILE__, __LINE__,
                          "realloc(%zu -> %zu, ZERO): a byte beyond %zu is "
                          "not zero",
                          old, to[i], old);
    }
    KT_EXPECT_EQ(t, kmm_free(h.f.k, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- sized frees ------------------------------------------------------------------------ */

/* Every size that could have produced the block is accepted: any size of
 * its class, or of its page count. */
KTEST(heap, a_sized_free_accepts_every_size_of_the_blocks_class)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    static const size_t cases[][3] = {/* request, smallest and largest size accepted */
                                      {100, 97, 112},     {16, 1, 16},
                                      {129, 129, 144},    {5000, 4609, 5120},
                                      {8192, 7681, 8192}, {20000, 16 * KIB + 1, 32 * KIB}};
    for (size_t i = 0; i < N(cases); i++) {
        size_t accepted[] = {cases[i][0], cases[i][1], cases[i][2]};
        for (size_t j = 0; j < N(accepted); j++) {
            void *p = kmm_malloc(h.f.k, cases[i][0], 0);
            KT_ASSERT(t, p != NULL);
            int err = kmm_free_sized(h.f.k, p, accepted[j]);
            if (err != KMM_OK)
                ktest_fail_at(t, __FILE__, __LINE__, "malloc(%zu) freed with size %zu: %s",
                              cases[i][0], accepted[j], kmm_strerror(err));
        }
    }
    KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 0);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- object caches ----------------------------------------------------------------------- */

#define CTOR_SIZE 200
#define CTOR_BYTE 0xc7
static unsigned long ctor_calls;

static void ctor_fill(void *obj)
{
    ctor_calls++;
    kt_fill(obj, CTOR_BYTE, CTOR_SIZE);
}

/* Whether every byte of obj is in its constructed state. */
static bool constructed(const void *obj)
{
    const uint8_t *b = obj;
    for (size_t i = 0; i < CTOR_SIZE; i++)
        if (b[i] != CTOR_BYTE)
            return false;
    return true;
}

/* The constructor runs once for each object of each slab made, never on an
 * allocation; objects are handed out in their constructed state, also
 * after a free and through the slab's free list. */
KTEST(heap, a_constructor_runs_once_per_object_of_each_new_slab)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    ctor_calls = 0;
    struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-ctor", CTOR_SIZE, 0, ctor_fill, 0);
    KT_ASSERT(t, c != NULL);
    void *first = kmm_cache_alloc(h.f.k, c, 0);
    KT_ASSERT(t, first != NULL);
    struct kmm_cache_stats s = kt_cache_stats(t, &h, c);
    KT_EXPECT(t, s.total_objects > 0);
    KT_EXPECT_EQ(t, ctor_calls, s.total_objects);
    KT_EXPECT_EQ(t, s.total_objects, (uint64_t)s.objects_per_slab * s.total_slabs);
    KT_EXPECT(t, constructed(first));
    KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, first), KMM_OK);
    void *again = kmm_cache_alloc(h.f.k, c, 0);
    KT_ASSERT(t, again != NULL);
    KT_EXPECT(t, constructed(again));
    KT_EXPECT_EQ(t, ctor_calls, s.total_objects); /* no constructor on reuse */
    KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, again), KMM_OK);

    /* Three slabs' worth and more, twice: the second round reuses them,
     * through the CPU's stack and (after a drain) the slabs' free lists. */
    enum { MAX_OBJS = 512 };
    static void *o[MAX_OBJS];
    unsigned n = 3 * s.objects_per_slab + 1;
    KT_ASSERT(t, n <= MAX_OBJS);
    for (unsigned round = 0; round < 2; round++) {
        /* The drain of the last round may have given slabs back: only the
         * slabs made from here on run the constructor. */
        unsigned long calls0 = ctor_calls;
        uint64_t objects0 = kt_cache_stats(t, &h, c).total_objects;
        for (unsigned i = 0; i < n; i++) {
            o[i] = kmm_cache_alloc(h.f.k, c, 0);
            KT_ASSERT(t, o[i] != NULL);
            if (!constructed(o[i]))
                ktest_fail_at(t, __FILE__, __LINE__, "round %u: object %u at %p not constructed",
                              round, i, o[i]);
        }
        s = kt_cache_stats(t, &h, c);
        KT_EXPECT_EQ(t, ctor_calls - calls0, s.total_objects - objects0);
        KT_EXPECT(t, s.total_objects >= n);
        for (unsigned i = 0; i < n; i++)
            KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, o[i]), KMM_OK);
        kmm_heap_drain_cpu(h.f.k);
    }
    unsigned long before_shrink = ctor_calls;
    KT_EXPECT(t, kmm_cache_shrink(h.f.k, c) > 0);
    /* A slab made after the shrink constructs its objects anew. */
    void *fresh = kmm_cache_alloc(h.f.k, c, 0);
    KT_ASSERT(t, fresh != NULL);
    KT_EXPECT(t, ctor_calls > before_shrink);
    KT_EXPECT(t, constructed(fresh));
    KT_EXPECT_EQ(t, kmm_cache_free(h.f.k, c, fresh), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, cache_objects_are_aligned_as_asked_and_never_overlap)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    enum { EACH = 40 };
    static void *o[EACH];
    static const size_t sizes[] = {1, 24, 100, 3000};
    for (size_t si = 0; si < N(sizes); si++)
        for (size_t align = 0; align <= PAGE; align = align ? 2 * align : 1) {
            size_t size = sizes[si], want = align ? align : KMM_HEAP_MIN_ALIGN;
            struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-align", size, align, NULL, 0);
            KT_ASSERT(t, c != NULL);
            struct kmm_cache_stats s = kt_cache_stats(t, &h, c);
            KT_EXPECT(t, s.object_size >= size);
            for (unsigned i = 0; i < EACH; i++) {
                o[i] = kmm_cache_alloc(h.f.k, c, 0);
                KT_ASSERT(t, o[i] != NULL);
                if (addr(o[i]) % want != 0)
                    ktest_fail_at(t, __FILE__, __LINE__, "size %zu align %zu: object at %p", size,
                                  align, o[i]);
                kt_heap_fill(&h, o[i], 0, size, i);
            }
            for (unsigned i = 0; i < EACH; i++) {
                KT_EXPECT(t, kt_heap_holds(&h, o[i], 0, size, i));
                KT_EXPECT(t, kmm_usable_size(h.f.k, o[i]) >= size);
                KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, o[i]), KMM_OK);
            }
            KT_ASSERT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
        }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

KTEST(heap, a_cache_without_constructor_zeroes_on_request_and_frees_through_kmm_free)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-zero", 72, 8, NULL, 0);
    KT_ASSERT(t, c != NULL);
    void *d = kmm_cache_alloc(h.f.k, c, 0);
    KT_ASSERT(t, d != NULL);
    kt_fill(d, 0x3c, 72);
    KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, d), KMM_OK);
    void *z = kmm_cache_alloc(h.f.k, c, KMM_GFP_ZERO);
    KT_ASSERT(t, z != NULL);
    KT_EXPECT(t, kt_heap_all(&h, z, 0, 72, 0));
    void *a = kmm_cache_alloc(h.f.k, c, KMM_GFP_ATOMIC);
    KT_EXPECT(t, a != NULL);
    /* kmm_free takes an object of any cache, and kmm_free_sized one of at
     * most its size. */
    KT_EXPECT_EQ(t, kmm_free(h.f.k, z), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free_sized(h.f.k, a, 72), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_free(h.f.k, c, NULL), KMM_OK);
    struct kmm_cache_stats s = kt_cache_stats(t, &h, c);
    KT_EXPECT_EQ(t, s.active_objects, 0);
    KT_EXPECT_EQ(t, s.allocs, 3);
    KT_EXPECT_EQ(t, s.frees, 3);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* Destroy refuses while objects are live (KMM_EBUSY, counted, the count
 * logged), leaves the cache working, and succeeds once they are freed;
 * every page comes back. */
KTEST(heap, destroy_refuses_while_objects_are_live_and_succeeds_after)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-busy", 96, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).caches, s0.caches + 1);
    enum { LIVE = 37 };
    static void *o[LIVE];
    for (unsigned i = 0; i < LIVE; i++)
        KT_ASSERT(t, (o[i] = kmm_cache_alloc(h.f.k, c, 0)) != NULL);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(h.f.k, c), KMM_EBUSY, KT_CLASS(KMM_MISUSE_BUSY),
                          "kmm_cache_destroy");
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(h.f.m), "37"));
    /* Still a cache: it allocates, frees, and counts. */
    void *more = kmm_cache_alloc(h.f.k, c, 0);
    KT_ASSERT(t, more != NULL);
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, c).active_objects, LIVE + 1);
    KT_EXPECT_EQ(t, kmm_cache_free(h.f.k, c, more), KMM_OK);
    for (unsigned i = 1; i < LIVE; i++)
        KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, o[i]), KMM_OK);
    /* One live object is enough to refuse. */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(h.f.k, c), KMM_EBUSY, KT_CLASS(KMM_MISUSE_BUSY),
                          "kmm_cache_destroy");
    KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, o[0]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
    kt_heap_settle(&h);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.caches, s0.caches);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    struct kmm_page_stats p1 = pstats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, p1.allocated_pages, p0.allocated_pages);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* Shrink gives back every empty slab (after taking back this CPU's cached
 * objects) and says how many pages. */
KTEST(heap, shrink_gives_every_empty_slab_back_and_counts_its_pages)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-shrink", 500, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    struct kmm_page_stats p0 = pstats(&h);
    KT_EXPECT_EQ(t, kmm_cache_shrink(h.f.k, c), 0); /* nothing to give */
    enum { OBJS = 100 };
    static void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_cache_alloc(h.f.k, c, 0)) != NULL);
    struct kmm_cache_stats s = kt_cache_stats(t, &h, c);
    KT_EXPECT_EQ(t, s.active_objects, OBJS);
    KT_EXPECT(t, s.total_objects >= OBJS);
    for (unsigned i = 0; i < OBJS; i++)
        kt_heap_fill(&h, o[i], 0, 500, i);
    /* With objects live, a shrink keeps every slab that holds one. */
    kmm_cache_shrink(h.f.k, c);
    s = kt_cache_stats(t, &h, c);
    KT_EXPECT_EQ(t, s.active_objects, OBJS);
    KT_EXPECT(t, s.total_objects >= OBJS);
    for (unsigned i = 0; i < OBJS; i++)
        KT_EXPECT(t, kt_heap_holds(&h, o[i], 0, 500, i));
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT_EQ(t, kmm_cache_free(h.f.k, c, o[i]), KMM_OK);
    /* The frees may have given some empty slabs back already (beyond the
     * few a cache keeps); the shrink gives back all that are left. */
    s = kt_cache_stats(t, &h, c);
    uint64_t slab_pages = s.total_slabs * s.pages_per_slab;
    KT_EXPECT(t, slab_pages > 0);
    size_t back = kmm_cache_shrink(h.f.k, c);
    KT_EXPECT_EQ(t, back, slab_pages);
    s = kt_cache_stats(t, &h, c);
    KT_EXPECT_EQ(t, s.total_slabs, 0);
    KT_EXPECT_EQ(t, s.total_objects, 0);
    KT_EXPECT_EQ(t, s.active_objects, 0);
    KT_EXPECT_EQ(t, s.cpu_cached, 0);
    /* The heap's own bookkeeping for those slabs goes with a settle. */
    kt_heap_settle(&h);
    struct kmm_page_stats p1 = pstats(&h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, kmm_cache_shrink(h.f.k, c), 0);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* Names are truncated to KMM_CACHE_NAME_MAX - 1 characters. */
KTEST(heap, a_cache_name_is_kept_up_to_the_limit)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    static const char long_name[] = "a-cache-name-far-longer-than-the-limit";
    struct kmm_cache *a = kmm_cache_create(h.f.k, long_name, 32, 0, NULL, 0);
    struct kmm_cache *b = kmm_cache_create(h.f.k, "kt-b", 32, 0, NULL, 0);
    KT_ASSERT(t, a != NULL && b != NULL);
    char want[KMM_CACHE_NAME_MAX];
    for (size_t i = 0; i < KMM_CACHE_NAME_MAX - 1; i++)
        want[i] = long_name[i];
    want[KMM_CACHE_NAME_MAX - 1] = '\0';
    KT_EXPECT_STREQ(t, kt_cache_stats(t, &h, a).name, want);
    KT_EXPECT_STREQ(t, kt_cache_stats(t, &h, b).name, "kt-b");
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, a), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, b), KMM_OK);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* At most KMM_HEAP_OBJECT_CACHES object caches live at once: with every
 * class made, creates succeed up to that many, the next one fails with
 * nothing changed, and a destroyed cache frees its slot. */
KTEST(heap, caches_can_be_made_up_to_the_limit_and_slots_come_back)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    static struct kmm_cache *c[KMM_HEAP_CACHES];
    unsigned n = 0;
    while (n < KMM_HEAP_CACHES - 1 && (c[n] = kmm_cache_create(h.f.k, "kt-fill", 48, 0, NULL, 0)))
        n++;
    struct kmm_heap_stats s = kt_heap_stats(&h);
    ktest_diag(t, "%u object caches made, %u caches live", n, s.caches);
    KT_EXPECT_EQ(t, n, KMM_HEAP_OBJECT_CACHES);
    KT_EXPECT_EQ(t, s.caches, KMM_HEAP_CLASSES + KMM_HEAP_OBJECT_CACHES);
    KT_EXPECT_EQ(t, s.misuse, 0);
    KT_EXPECT_HEALTHY(t, h.f.k);
    KT_ASSERT(t, n > 0);
    KT_ASSERT_EQ(t, kmm_cache_destroy(h.f.k, c[n / 2]), KMM_OK);
    c[n / 2] = kmm_cache_create(h.f.k, "kt-again", 48, 0, NULL, 0);
    KT_EXPECT(t, c[n / 2] != NULL);
    for (unsigned i = 0; i < n; i++)
        if (c[i])
            KT_ASSERT_EQ(t, kmm_cache_destroy(h.f.k, c[i]), KMM_OK);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).caches, s.caches - n);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- statistics ---------------------------------------------------------------------------- */

/* The totals and a class's line follow exactly what the test did. */
KTEST(heap, the_statistics_count_what_was_done)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_cache *c64 = kt_heap_class_cache(&h, 64);
    KT_ASSERT(t, c64 != NULL);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    struct kmm_cache_stats c0 = kt_cache_stats(t, &h, c64);
    enum { SMALL = 10, PAGES = 3 };
    void *small[SMALL], *pages[PAGES];
    for (unsigned i = 0; i < SMALL; i++)
        KT_ASSERT(t, (small[i] = kmm_malloc(h.f.k, 50 + i, 0)) != NULL); /* class 64 */
    for (unsigned i = 0; i < PAGES; i++)
        KT_ASSERT(t, (pages[i] = kmm_malloc(h.f.k, 20000, 0)) != NULL); /* 32 KiB */
    void *v = kmm_malloc(h.f.k, 200000, 0);
    KT_ASSERT(t, v != NULL);
    size_t vu = kmm_usable_size(h.f.k, v);
    uint64_t large = (uint64_t)PAGES * 32 * KIB + vu, bytes = (uint64_t)SMALL * 64 + large;

    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, SMALL + PAGES + 1);
    KT_EXPECT_EQ(t, s1.frees, s0.frees);
    KT_EXPECT_EQ(t, s1.alloc_bytes - s0.alloc_bytes, bytes);
    KT_EXPECT_EQ(t, s1.bytes_used - s0.bytes_used, bytes);
    KT_EXPECT_EQ(t, s1.large_blocks - s0.large_blocks, PAGES + 1);
    KT_EXPECT_EQ(t, s1.large_bytes - s0.large_bytes, large);
    KT_EXPECT_EQ(t, s1.bytes_held, s1.bytes_used + s1.bytes_free);
    KT_EXPECT(t, s1.bytes_peak >= s1.bytes_held);
    KT_EXPECT(t, s1.bytes_held >= s0.bytes_held + large);
    KT_EXPECT_EQ(t, s1.misuse, s0.misuse);
    KT_EXPECT_EQ(t, s1.failed, s0.failed);
    struct kmm_cache_stats c1 = kt_cache_stats(t, &h, c64);
    KT_EXPECT_EQ(t, c1.allocs - c0.allocs, SMALL);
    KT_EXPECT_EQ(t, c1.active_objects - c0.active_objects, SMALL);
    KT_EXPECT_EQ(t, c1.total_objects, (uint64_t)c1.objects_per_slab * c1.total_slabs);
    KT_EXPECT(t, c1.total_objects >= c1.active_objects + c1.cpu_cached);
    KT_EXPECT(t, c1.active_slabs <= c1.total_slabs && c1.active_slabs > 0);

    for (unsigned i = 0; i < SMALL; i++)
        KT_ASSERT_EQ(t, kmm_free(h.f.k, small[i]), KMM_OK);
    for (unsigned i = 0; i < PAGES; i++)
        KT_ASSERT_EQ(t, kmm_free(h.f.k, pages[i]), KMM_OK);
    KT_ASSERT_EQ(t, kmm_free(h.f.k, v), KMM_OK);
    struct kmm_heap_stats s2 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s2.frees - s0.frees, SMALL + PAGES + 1);
    KT_EXPECT_EQ(t, s2.free_bytes - s0.free_bytes, bytes);
    KT_EXPECT_EQ(t, s2.bytes_used, s0.bytes_used);
    KT_EXPECT_EQ(t, s2.large_blocks, s0.large_blocks);
    KT_EXPECT_EQ(t, s2.large_bytes, s0.large_bytes);
    KT_EXPECT_EQ(t, s2.bytes_held, s2.bytes_used + s2.bytes_free);
    KT_EXPECT(t, s2.bytes_peak >= s1.bytes_held); /* the peak stays */
    struct kmm_cache_stats c2 = kt_cache_stats(t, &h, c64);
    KT_EXPECT_EQ(t, c2.frees - c0.frees, SMALL);
    KT_EXPECT_EQ(t, c2.active_objects, c0.active_objects);
    /* Freed objects in this CPU's stack count as free, and go back to the
     * slabs on a drain. */
    kmm_heap_drain_cpu(h.f.k);
    struct kmm_cache_stats c3 = kt_cache_stats(t, &h, c64);
    KT_EXPECT_EQ(t, c3.cpu_cached, 0);
    KT_EXPECT_EQ(t, c3.active_objects, c0.active_objects);
    kt_heap_settle(&h);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, s0.bytes_held);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* "The whole heap": an object cache's allocations are in the totals. */
KTEST(heap, the_totals_include_object_caches)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm_cache *c = kmm_cache_create(h.f.k, "kt-total", 40, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    void *o = kmm_cache_alloc(h.f.k, c, 0);
    KT_ASSERT(t, o != NULL);
    uint32_t size = kt_cache_stats(t, &h, c).object_size;
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, 1);
    KT_EXPECT_EQ(t, s1.bytes_used - s0.bytes_used, size);
    KT_EXPECT_EQ(t, kmm_cache_free(h.f.k, c, o), KMM_OK);
    struct kmm_heap_stats s2 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s2.frees - s0.frees, 1);
    KT_EXPECT_EQ(t, s2.bytes_used, s0.bytes_used);
    KT_EXPECT_EQ(t, kmm_cache_destroy(h.f.k, c), KMM_OK);
    kt_heap_down(&h);
}

/* "A CPU's stacks are bounded (KMM_HEAP_MAG_SIZE objects per cache)": a
 * CPU that frees one more than that many objects of a cache in a row holds
 * at most that many on its stack. What the stack holds is what
 * kmm_heap_drain_cpu takes out of cpu_cached (the rest of which is the
 * cache's depot, shared by the CPUs). */
KTEST(heap, a_cpu_caches_at_most_the_magazine_size_of_each_cache)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    enum { OBJS = KMM_HEAP_MAG_SIZE + 1 };
    static void *o[OBJS];
    static const size_t sizes[] = {16, 64, 128, 1024, KMM_HEAP_SLAB_MAX};
    for (size_t si = 0; si < N(sizes); si++) {
        for (unsigned i = 0; i < OBJS; i++)
            KT_ASSERT(t, (o[i] = kmm_malloc(h.f.k, sizes[si], 0)) != NULL);
        struct kmm_cache *c = kt_heap_class_cache(&h, sizes[si]);
        KT_ASSERT(t, c != NULL);
        kmm_heap_drain_cpu(h.f.k); /* an empty stack to start from */
        for (unsigned i = 0; i < OBJS; i++)
            KT_ASSERT_EQ(t, kmm_free(h.f.k, o[i]), KMM_OK);
        uint64_t cached = kt_cache_stats(t, &h, c).cpu_cached;
        kmm_heap_drain_cpu(h.f.k);
        uint64_t stack = cached - kt_cache_stats(t, &h, c).cpu_cached;
        if (stack > KMM_HEAP_MAG_SIZE)
            ktest_fail_at(t, __FILE__, __LINE__,
                          "class %zu: %u frees in a row left %llu objects on this CPU's stack",
                          sizes[si], (unsigned)OBJS, (unsigned long long)stack);
    }
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* A burst of frees in many classes at once fills their depots only up to
 * the heap-wide budget: the rest goes back to the slabs, where any class
 * can have it once a slab empties. */
KTEST(heap, the_depots_of_all_classes_together_keep_at_most_the_depot_max)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    enum { CLASSES = 16, BYTES = 96 * 1024 };
    static void *o[BYTES / 512 + 1];
    uint64_t cached = 0, stacks = 0;
    for (unsigned ci = 0; ci < CLASSES; ci++) {
        size_t size = 512 + ci * 512; /* 512 .. 8 KiB: one class each */
        unsigned n = (unsigned)(BYTES / size);
        for (unsigned i = 0; i < n; i++)
            KT_ASSERT(t, (o[i] = kmm_malloc(h.f.k, size, 0)) != NULL);
        for (unsigned i = 0; i < n; i++)
            KT_ASSERT_EQ(t, kmm_free(h.f.k, o[i]), KMM_OK);
        struct kmm_cache_stats cs = kt_cache_stats(t, &h, kt_heap_class_cache(&h, size));
        cached += cs.cpu_cached * cs.object_size;
        /* This CPU's stack holds at most the magazine size, and at most
         * KMM_HEAP_STACK_BYTES of objects but for the 4 a stack always may. */
        uint64_t stack_objs = KMM_HEAP_STACK_BYTES / cs.object_size;
        stack_objs = stack_objs < 4                   ? 4
                     : stack_objs > KMM_HEAP_MAG_SIZE ? KMM_HEAP_MAG_SIZE
                                                      : stack_objs;
        stacks += stack_objs * cs.object_size;
    }
    ktest_diag(t, "%u classes: %llu bytes cached, %llu of them on stacks at most", CLASSES,
               (unsigned long long)cached, (unsigned long long)stacks);
    KT_EXPECT(t, cached <= KMM_HEAP_DEPOT_MAX + stacks);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- the cap ------------------------------------------------------------------------------ */

/* A chain of blocks kept in the blocks themselves (each at least 16 bytes
 * and in the direct map), so exhausting the machine needs no array. */
struct link {
    struct link *next;
    size_t size;
};

/* Allocates blocks of size onto *chain until one fails or max are taken;
 * returns how many. */
static unsigned take(struct kt_heap *h, struct link **chain, size_t size, unsigned max)
{
    unsigned n = 0;
    for (; n < max; n++) {
        struct link *l = kmm_malloc(h->f.k, size, 0);
        if (!l)
            break;
        l->next = *chain;
        l->size = size;
        *chain = l;
    }
    return n;
}

/* Frees every block of the chain; returns how many frees failed. */
static unsigned give_back(struct kt_heap *h, struct link **chain)
{
    unsigned bad = 0;
    while (*chain) {
        struct link *l = *chain;
        *chain = l->next;
        bad += kmm_free(h->f.k, l) != KMM_OK;
    }
    return bad;
}

KTEST(heap, growth_stops_cleanly_at_the_cap_and_resumes_when_raised)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s0.limit, 0);
    uint64_t cap = s0.bytes_held + 256 * KIB;
    KT_EXPECT_EQ(t, kmm_heap_set_limit(h.f.k, cap), 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).limit, cap);
    struct link *chain = NULL;
    /* Whole pages: 16 KiB each, at most 256 KiB / 16 KiB of them. */
    unsigned n = take(&h, &chain, 16 * KIB, 1000);
    KT_EXPECT(t, n > 0 && n <= 16);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT(t, s1.bytes_held <= cap);
    KT_EXPECT(t, s1.failed > s0.failed);
    /* Neither a vmalloc'd block nor a new slab passes it either. */
    KT_EXPECT(t, kmm_malloc(h.f.k, 1 * MIB, 0) == NULL);
    unsigned smalls = take(&h, &chain, 64, 100000);
    KT_EXPECT(t, smalls < 100000);
    KT_EXPECT(t, kt_heap_stats(&h).bytes_held <= cap);
    KT_EXPECT_HEALTHY(t, h.f.k);
    /* Raised: growth works again. */
    KT_EXPECT_EQ(t, kmm_heap_set_limit(h.f.k, cap + 1 * MIB), cap);
    void *v = kmm_malloc(h.f.k, 512 * KIB, 0);
    KT_EXPECT(t, v != NULL);
    KT_EXPECT(t, take(&h, &chain, 16 * KIB, 4) == 4);
    KT_EXPECT_EQ(t, kmm_free(h.f.k, v), KMM_OK);
    /* Lowered below what is held: the blocks stay until freed. (A cap of 0
     * is no cap: 1 byte at least.) */
    uint64_t low = s0.bytes_held ? s0.bytes_held : 1;
    KT_EXPECT_EQ(t, kmm_heap_set_limit(h.f.k, low), cap + 1 * MIB);
    KT_EXPECT(t, kmm_malloc(h.f.k, 16 * KIB, 0) == NULL);
    KT_EXPECT(t, kt_heap_stats(&h).bytes_held > low);
    KT_EXPECT_EQ(t, give_back(&h, &chain), 0);
    kt_heap_settle(&h);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, kmm_heap_set_limit(h.f.k, 0), low);
    KT_EXPECT(t, take(&h, &chain, 16 * KIB, 32) == 32);
    KT_EXPECT_EQ(t, give_back(&h, &chain), 0);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* --- exhaustion --------------------------------------------------------------------------- */

/* Takes every block the machine can give, sizes in turn, until each size
 * (the smallest last) fails; returns how many. vmalloc'd blocks (which the
 * test cannot link through when the window is not live) go to *big. */
static unsigned exhaust(struct kt_heap *h, struct link **chain, void **big, unsigned *nbig,
                        unsigned big_max)
{
    static const size_t sizes[] = {30000, 5000, 1000, 8192, 100, 128 * KIB, 300, 16};
    bool done[N(sizes)] = {false};
    unsigned n = 0, left = N(sizes);
    while (*nbig < big_max) {
        void *v = kmm_malloc(h->f.k, 200000, 0);
        if (!v)
            break;
        big[(*nbig)++] = v;
    }
    while (left > 0)
        for (size_t i = 0; i < N(sizes); i++) {
            if (done[i])
                continue;
            unsigned got = take(h, chain, sizes[i], 64);
            n += got;
            if (got < 64) {
                done[i] = true;
                left--;
            }
        }
    return n + *nbig;
}

KTEST(heap, exhaustion_fails_cleanly_and_every_page_comes_back)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0 = pstats(&h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    unsigned counts[2];
    for (unsigned round = 0; round < 2; round++) {
        struct link *chain = NULL;
        enum { BIG = 32 };
        static void *big[BIG];
        unsigned nbig = 0;
        counts[round] = exhaust(&h, &chain, big, &nbig, BIG);
        KT_EXPECT(t, counts[round] > 1000);
        struct kmm_heap_stats sx = kt_heap_stats(&h);
        KT_EXPECT(t, sx.failed > s0.failed);
        KT_EXPECT_EQ(t, sx.bytes_held, sx.bytes_used + sx.bytes_free);
        KT_EXPECT_HEALTHY(t, h.f.k); /* sound while exhausted */
        KT_EXPECT_EQ(t, give_back(&h, &chain), 0);
        for (unsigned i = 0; i < nbig; i++)
            KT_EXPECT_EQ(t, kmm_free(h.f.k, big[i]), KMM_OK);
        kt_heap_settle(&h);
        struct kmm_page_stats p1 = pstats(&h);
        struct kmm_heap_stats s1 = kt_heap_stats(&h);
        if (!kt_same_buddyinfo(&p0, &p1) || p1.allocated_pages != p0.allocated_pages)
            ktest_fail_at(t, __FILE__, __LINE__,
                          "round %u: %llu pages free after, %llu before (%llu allocated, %llu)",
                          round, (unsigned long long)p1.free_pages,
                          (unsigned long long)p0.free_pages, (unsigned long long)p1.allocated_pages,
                          (unsigned long long)p0.allocated_pages);
        KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
        KT_EXPECT_EQ(t, s1.bytes_used, s0.bytes_used);
        KT_EXPECT_EQ(t, s1.large_blocks, s0.large_blocks);
        /* Counters conserved: as many frees as allocations, byte for byte. */
        KT_EXPECT_EQ(t, s1.allocs - s0.allocs, s1.frees - s0.frees);
        KT_EXPECT_EQ(t, s1.alloc_bytes - s0.alloc_bytes, s1.free_bytes - s0.free_bytes);
        KT_EXPECT_EQ(t, s1.allocs - s0.allocs, (uint64_t)counts[0] + (round ? counts[1] : 0));
        KT_EXPECT_EQ(t, s1.misuse, 0);
        KT_EXPECT_EQ(t, vstats(&h).areas, 0);
        KT_EXPECT_HEALTHY(t, h.f.k);
    }
    /* The same machine, the same requests: the same number of blocks. */
    KT_EXPECT_EQ(t, counts[1], counts[0]);
    kt_heap_down(&h);
}

/* --- CPUs --------------------------------------------------------------------------------- */

KTEST(heap, draining_an_offline_cpu_in_range_is_fine)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 2))
        return;
    KT_EXPECT_EQ(t, kmm_heap_drain_offline_cpu(h.f.k, 1), KMM_OK);
    kmm_heap_drain_cpu(h.f.k);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 0);
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}
