/*
 * test_heap_lend.c - lending between size classes, against what
 * include/kmm/heap.h promises (kmm_malloc, kmm_heap_set_lend,
 * kmm_free_sized, kmm_realloc): a class with no free object takes a free
 * one of the next classes that holds memory idle (a slab's worth free in
 * its slabs, or more than half a stack) before it grows, as far as the
 * setting reaches, and never one of a class that is growing;
 * a lent block is freed, sized and reallocated as its request's, its mark
 * lasting until it is back in its slab; lending never breaks an alignment
 * and stops while the heap is debugged; a setting beyond the bound is
 * refused. The randomised run (test_heap_random.c) changes the setting
 * between its steps.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  ((size_t)1 << 20)

static const struct kmm_region ram16[] = {{1 * MIB, 15 * MIB, KMM_MEM_USABLE}};

static bool up(struct ktest *t, struct kt_heap *h)
{
    return kt_heap_up(t, h, ram16, N(ram16), 1);
}

/* Leaves size's class holding memory idle (kmm/heap.h, kmm_malloc: a
 * slab's worth of free objects or more beyond the CPUs' stacks): two slabs'
 * worth of its blocks allocated and filled with 0xa5, freed, and this
 * CPU's stacks drained into the slabs (a cache keeps two empty slabs). */
static void prime(struct ktest *t, struct kt_heap *h, size_t size)
{
    static void *p[2 * 256]; /* two slabs of the smallest class */
    void *first = kmm_malloc(h->f.k, size, 0);
    KT_ASSERT(t, first != NULL);
    struct kmm_cache *c = kt_heap_class_cache(h, kmm_usable_size(h->f.k, first));
    KT_ASSERT(t, c != NULL);
    unsigned n = 2 * kt_cache_stats(t, h, c).objects_per_slab;
    KT_ASSERT(t, n <= N(p));
    p[0] = first;
    for (unsigned i = 1; i < n; i++) {
        p[i] = kmm_malloc(h->f.k, size, 0);
        KT_ASSERT(t, p[i] != NULL);
    }
    for (unsigned i = 0; i < n; i++)
        kt_heap_fill(h, p[i], 0, kmm_usable_size(h->f.k, p[i]), 0xa5);
    for (unsigned i = n; i-- > 0;)
        KT_ASSERT_EQ(t, kmm_free(h->f.k, p[i]), KMM_OK);
    kmm_heap_drain_cpu(h->f.k);
}

/* A fresh heap whose class 160 holds memory idle, and *p a block of 144
 * bytes that class lent (usable 160): true; false, with the heap down, if
 * the test was skipped or failed. */
static bool lent_up(struct ktest *t, struct kt_heap *h, void **p)
{
    if (!up(t, h))
        return false;
    prime(t, h, 160);
    *p = kmm_malloc(h->f.k, 144, 0);
    if (*p && kmm_usable_size(h->f.k, *p) == 160 && !ktest_failed(t))
        return true;
    ktest_fail_at(t, __FILE__, __LINE__, "malloc(144), class 160 idle: %p, no lent block", *p);
    kt_heap_down(h);
    return false;
}

/* Class size's figures; zeroes if it has no cache yet. */
static struct kmm_cache_stats class_stats(struct ktest *t, struct kt_heap *h, size_t size)
{
    struct kmm_cache *c = kt_heap_class_cache(h, size);
    struct kmm_cache_stats s = {0};
    if (c)
        s = kt_cache_stats(t, h, c);
    return s;
}

/* The first request: its class has no cache, the next one holds memory
 * idle. The block is the next class's, counted as lent there (an
 * allocation of its), and the request's class took no slab. */
KTEST(heap_lend, a_class_with_no_free_object_takes_one_of_an_idle_next_class)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160);
    struct kmm_cache_stats before = class_stats(t, &h, 160);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 160);
    struct kmm_cache_stats lender = class_stats(t, &h, 160);
    KT_EXPECT_EQ(t, lender.lent, 1);
    KT_EXPECT_EQ(t, lender.allocs, before.allocs + 1);
    KT_EXPECT_EQ(t, lender.active_objects, 1);
    KT_EXPECT_EQ(t, lender.total_slabs, before.total_slabs);
    KT_EXPECT_EQ(t, class_stats(t, &h, 144).total_slabs, 0);
    KT_EXPECT_HEALTHY(t, k);
    /* Freed, it goes back to the class it came from. */
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).active_objects, 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* A class that is growing holds no memory idle: the free objects of its
 * one slab (on this CPU's stack and in the slab) are not lent, and the
 * smaller request's class grows instead. */
KTEST(heap_lend, a_growing_class_lends_nothing)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    void *q = kmm_malloc(k, 160, 0);
    KT_ASSERT(t, q != NULL);
    KT_EXPECT(t, class_stats(t, &h, 160).cpu_cached > 0);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 144);
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, 0);
    KT_EXPECT_EQ(t, class_stats(t, &h, 144).total_slabs, 1);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* Objects freed faster than taken: more than half a stack of them on this
 * CPU is memory the class does not need now, lent though its slabs hold
 * less than a slab's worth free. */
KTEST(heap_lend, a_stack_more_than_half_full_lends_from_its_top)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    /* kmm/heap.h: a stack holds KMM_HEAP_STACK_BYTES of objects, at most
     * KMM_HEAP_MAG_SIZE; half of it is what a refill brings. */
    size_t limit = KMM_HEAP_STACK_BYTES / 160;
    if (limit > KMM_HEAP_MAG_SIZE)
        limit = KMM_HEAP_MAG_SIZE;
    static void *q[KMM_HEAP_MAG_SIZE];
    size_t n = limit / 2 + 2;
    for (size_t i = 0; i < n; i++)
        KT_ASSERT(t, (q[i] = kmm_malloc(k, 160, 0)) != NULL);
    for (size_t i = n; i-- > 0;)
        KT_ASSERT_EQ(t, kmm_free(k, q[i]), KMM_OK);
    struct kmm_cache_stats cs = class_stats(t, &h, 160);
    KT_ASSERT(t, cs.cpu_cached > limit / 2);
    KT_ASSERT(t, cs.total_objects - cs.active_objects - cs.cpu_cached < cs.objects_per_slab);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 160);
    KT_EXPECT(t, p == q[0]); /* the top of the stack: the last freed */
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, 1);
    KT_EXPECT_EQ(t, kmm_free_sized(k, p, 144), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* A request of 100 bytes (class 112, the sixth): an idle class d classes
 * above it lends iff d is at most the setting; otherwise the request's
 * class grows. */
KTEST(heap_lend, lending_reaches_as_many_classes_as_the_setting)
{
    static const unsigned lends[] = {0, 1, KMM_HEAP_LEND_DEFAULT, KMM_HEAP_LEND_MAX};
    static const unsigned ds[] = {1,
                                  2,
                                  KMM_HEAP_LEND_DEFAULT,
                                  KMM_HEAP_LEND_DEFAULT + 1,
                                  KMM_HEAP_LEND_MAX,
                                  KMM_HEAP_LEND_MAX + 1};
    for (size_t a = 0; a < N(lends); a++)
        for (size_t b = 0; b < N(ds); b++) {
            unsigned lend = lends[a], d = ds[b];
            struct kt_heap h;
            if (!up(t, &h))
                return;
            struct kmm *k = h.f.k;
            KT_ASSERT_EQ(t, kmm_heap_set_lend(k, lend), KMM_OK);
            size_t lender = kt_heap_class_at(6 + d);
            prime(t, &h, lender);
            void *p = kmm_malloc(k, 100, 0);
            KT_ASSERT(t, p != NULL);
            size_t want = d <= lend ? lender : 112;
            if (kmm_usable_size(k, p) != want)
                ktest_fail_at(t, __FILE__, __LINE__,
                              "lend %u, class %zu idle: malloc(100) holds %zu, want %zu", lend,
                              lender, kmm_usable_size(k, p), want);
            KT_EXPECT_EQ(t, class_stats(t, &h, lender).lent, d <= lend ? 1 : 0);
            KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
            KT_EXPECT_HEALTHY(t, k);
            kt_heap_down(&h);
        }
}

/* kmm_free_sized takes a lent block's request size (a smaller class's), a
 * size of any class the lender may lend to, and refuses one further away;
 * a block of the class's own request refuses the smaller sizes. */
KTEST(heap_lend, a_lent_blocks_sized_free_takes_its_requests_size)
{
    struct kt_heap h;
    void *p;
    if (!lent_up(t, &h, &p))
        return;
    struct kmm *k = h.f.k;
    /* 16 bytes: nine classes below 160, beyond the default eight. */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p, 16), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_WRONG_ORDER), "kmm_free_sized");
    KT_EXPECT_EQ(t, kmm_free_sized(k, p, 144), KMM_OK);
    /* The object is on this CPU's stack, its mark still set; a drain
     * takes it back to its slab and the mark away. */
    kmm_heap_drain_cpu(k);
    void *q = kmm_malloc(k, 160, 0);
    KT_ASSERT(t, q != NULL && kmm_usable_size(k, q) == 160);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, q, 144), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_WRONG_ORDER), "kmm_free_sized");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, q, 129), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_WRONG_ORDER), "kmm_free_sized");
    KT_EXPECT_EQ(t, kmm_free_sized(k, q, 145), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* A lent block freed without a size keeps its mark while its object
 * waits on the CPU's stack: the lender's own next request, which takes
 * it, is then sized-freed as leniently (kmm/heap.h: "or lent earlier and
 * not back in its slab since"). */
KTEST(heap_lend, a_lent_mark_lasts_until_the_object_is_back_in_its_slab)
{
    struct kt_heap h;
    void *p;
    if (!lent_up(t, &h, &p))
        return;
    struct kmm *k = h.f.k;
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    void *q = kmm_malloc(k, 160, 0);
    KT_ASSERT(t, q == p); /* the stack is LIFO */
    KT_EXPECT_EQ(t, kmm_free_sized(k, q, 144), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* An aligned request takes a lent block only from a class whose objects
 * its alignment divides: 32-byte alignment from 96-byte objects, never
 * 64-byte alignment from 80 or 96. */
KTEST(heap_lend, an_aligned_request_is_lent_only_blocks_it_aligns)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 80);
    prime(t, &h, 96);
    void *p = kmm_aligned_alloc(k, 32, 64, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, (uintptr_t)p % 32, 0);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 96);
    void *q = kmm_aligned_alloc(k, 64, 64, 0);
    KT_ASSERT(t, q != NULL);
    KT_EXPECT_EQ(t, (uintptr_t)q % 64, 0);
    KT_EXPECT_EQ(t, kmm_usable_size(k, q), 64);
    KT_EXPECT_EQ(t, class_stats(t, &h, 80).lent, 0);
    KT_EXPECT_EQ(t, class_stats(t, &h, 96).lent, 1);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* While a class is debugged every request takes the checking paths, which
 * lend nothing; once it is off, lending resumes. */
KTEST(heap_lend, nothing_is_lent_while_the_heap_is_debugged)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160);
    struct kmm_cache *c = kt_heap_class_cache(&h, 160);
    KT_ASSERT(t, c != NULL);
    KT_ASSERT_EQ(t, kmm_cache_debug(k, c, KMM_HEAP_DEBUG_POISON), KMM_OK);
    prime(t, &h, 160); /* free objects through the checking path */
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 144);
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, 0);
    KT_ASSERT_EQ(t, kmm_cache_debug(k, c, 0), KMM_OK);
    prime(t, &h, 160);
    /* Class 128 has no cache yet; 144 (p's) and 160 have free objects.
     * 120 bytes: a request of 128, a power of two, takes only a block
     * aligned to 128, which neither has. */
    void *q = kmm_malloc(k, 120, 0);
    KT_ASSERT(t, q != NULL);
    KT_EXPECT(t, kmm_usable_size(k, q) == 144 || kmm_usable_size(k, q) == 160);
    KT_EXPECT_EQ(t, class_stats(t, &h, 144).lent + class_stats(t, &h, 160).lent, 1);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* The zero flag clears every usable byte of a lent block, not only the
 * request's (its object was dirty when it was freed). */
KTEST(heap_lend, a_lent_block_zeroed_on_request_is_zero_in_every_usable_byte)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160); /* filled with 0xa5 before its free */
    void *p = kmm_zalloc(k, 144, 0);
    KT_ASSERT(t, p != NULL && kmm_usable_size(k, p) == 160);
    KT_EXPECT(t, kt_heap_all(&h, p, 0, 160, 0));
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* kmm_realloc keeps a lent block in place for any size kmm_free_sized
 * would take for it, and moves it (contents kept) for a smaller one. */
KTEST(heap_lend, realloc_keeps_a_lent_block_in_place_for_its_requests_sizes)
{
    struct kt_heap h;
    void *p;
    if (!lent_up(t, &h, &p))
        return;
    struct kmm *k = h.f.k;
    kt_heap_fill(&h, p, 0, 160, 7);
    KT_EXPECT(t, kmm_realloc(k, p, 150, 0) == p);
    KT_EXPECT(t, kmm_realloc(k, p, 130, 0) == p);
    KT_EXPECT(t, kmm_realloc(k, p, 17, 0) == p); /* class 32: eight below 160 */
    void *q = kmm_realloc(k, p, 16, 0);          /* nine below: a block of its own */
    KT_ASSERT(t, q != NULL && q != p);
    KT_EXPECT_EQ(t, kmm_usable_size(k, q), 16);
    KT_EXPECT(t, kt_heap_holds(&h, q, 0, 16, 7));
    KT_EXPECT_EQ(t, kmm_free(k, q), KMM_OK);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* A setting beyond KMM_HEAP_LEND_MAX is a misuse that changes nothing:
 * lending goes on as before. */
KTEST(heap_lend, a_setting_beyond_the_bound_is_refused_and_changes_nothing)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_set_lend(k, 1), KMM_OK);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_heap_set_lend(k, KMM_HEAP_LEND_MAX + 1), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_ARG), "kmm_heap_set_lend");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_heap_set_lend(k, ~0u), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_ARG), "kmm_heap_set_lend");
    prime(t, &h, 160);
    void *p = kmm_malloc(k, 128, 0); /* class 160 is two on: beyond the setting of 1 */
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 128);
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, 0);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* kmm/heap.h: a block for a request of a power-of-two size is aligned to
 * that size up to the page (as Linux promises of kmalloc). With every
 * class above it holding memory idle, its class growing none, each such
 * request's blocks (plain, zeroed) are still aligned, and free with their
 * size. */
KTEST(heap_lend, a_power_of_two_request_is_aligned_to_its_size_with_neighbours_idle)
{
    enum { EACH = 16 };
    for (size_t size = 16; size < KMM_HEAP_SLAB_MAX; size *= 2) {
        struct kt_heap h;
        if (!up(t, &h))
            return;
        struct kmm *k = h.f.k;
        KT_ASSERT_EQ(t, kmm_heap_set_lend(k, KMM_HEAP_LEND_MAX), KMM_OK);
        unsigned i = 0;
        while (kt_heap_class_at(i) != size)
            i++;
        for (unsigned d = 1; d <= KMM_HEAP_LEND_MAX && i + d < KT_HEAP_CLASSES; d++)
            prime(t, &h, kt_heap_class_at(i + d));
        size_t align = size < KMM_PAGE_SIZE ? size : KMM_PAGE_SIZE;
        void *p[EACH];
        unsigned off = 0;
        for (unsigned j = 0; j < EACH; j++) {
            p[j] = j % 2 ? kmm_zalloc(k, size, 0) : kmm_malloc(k, size, 0);
            KT_ASSERT(t, p[j] != NULL);
            off += (uintptr_t)p[j] % align != 0;
        }
        if (off)
            ktest_fail_at(t, __FILE__, __LINE__, "%u of %u blocks for %zu bytes off alignment %zu",
                          off, (unsigned)EACH, size, align);
        for (unsigned j = 0; j < EACH; j++)
            KT_EXPECT_EQ(t, kmm_free_sized(k, p[j], size), KMM_OK);
        KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 0);
        KT_EXPECT_HEALTHY(t, k);
        kt_heap_down(&h);
    }
}

/* A lent block sized-freed twice with its request's size: the second is
 * a double free (KMM_ESTATE), as for any other block, also once the first
 * free took its object back to its slab and the lent mark away; not a
 * size of another class. */
KTEST(heap_lend, a_lent_blocks_second_sized_free_is_a_double_free)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    for (unsigned drain = 0; drain < 2; drain++) {
        prime(t, &h, 160);
        void *p = kmm_malloc(k, 144, 0);
        KT_ASSERT(t, p != NULL && kmm_usable_size(k, p) == 160);
        KT_EXPECT_EQ(t, kmm_free_sized(k, p, 144), KMM_OK);
        if (drain)
            kmm_heap_drain_cpu(k);
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p, 144), KMM_ESTATE,
                              KT_CLASS(KMM_MISUSE_DOUBLE_FREE), "kmm_free_sized");
        KT_EXPECT_HEALTHY(t, k);
    }
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    kt_heap_down(&h);
}

/* At the heap's limit a class can neither grow nor be made: a request of
 * it is still lent an idle class's free objects, atomic or not, whether
 * its class has a cache yet or not; then it fails cleanly, counted, and
 * every figure adds up after the frees. */
KTEST(heap_lend, at_the_heaps_limit_a_request_is_lent_what_its_class_cannot_grow)
{
    static const kmm_gfp_t how[] = {0, KMM_GFP_ATOMIC};
    static void *p[512];
    for (unsigned made = 0; made < 2; made++)
        for (unsigned w = 0; w < N(how); w++) {
            struct kt_heap h;
            if (!up(t, &h))
                return;
            struct kmm *k = h.f.k;
            if (made) { /* class 144 has a cache, and no object */
                void *own = kmm_malloc(k, 144, 0);
                KT_ASSERT(t, own != NULL);
                KT_EXPECT_EQ(t, kmm_free(k, own), KMM_OK);
                kt_heap_settle(&h);
                KT_ASSERT(t, kt_heap_class_cache(&h, 144) != NULL);
                KT_ASSERT_EQ(t, class_stats(t, &h, 144).total_objects, 0);
            }
            prime(t, &h, 160);
            struct kmm_cache_stats l0 = class_stats(t, &h, 160);
            struct kmm_heap_stats s0 = kt_heap_stats(&h);
            kmm_heap_set_limit(k, s0.bytes_held);
            unsigned n = 0;
            while (n < N(p) && (p[n] = kmm_malloc(k, 144, how[w])) != NULL) {
                KT_EXPECT_EQ(t, kmm_usable_size(k, p[n]), 160);
                n++;
            }
            if (n == 0 || n == N(p))
                ktest_fail_at(t, __FILE__, __LINE__,
                              "class 144 %s, flags 0x%x: %u blocks lent at the limit",
                              made ? "made" : "not made", how[w], n);
            struct kmm_heap_stats s1 = kt_heap_stats(&h);
            KT_EXPECT_EQ(t, s1.failed, s0.failed + 1);
            KT_EXPECT_EQ(t, s1.misuse, s0.misuse);
            KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
            KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, l0.lent + n);
            for (unsigned i = 0; i < n; i++)
                KT_EXPECT_EQ(t, kmm_free_sized(k, p[i], 144), KMM_OK);
            kmm_heap_set_limit(k, 0);
            struct kmm_heap_stats s2 = kt_heap_stats(&h);
            KT_EXPECT_EQ(t, s2.bytes_used, s0.bytes_used);
            KT_EXPECT_EQ(t, s2.allocs - s0.allocs, s2.frees - s0.frees);
            KT_EXPECT_EQ(t, s2.misuse, 0);
            KT_EXPECT_HEALTHY(t, k);
            kt_heap_down(&h);
        }
}

/* Debugging switched on for the whole heap while lent blocks are live:
 * their lender keeps its layout (it holds them), and each is then
 * sized-freed with its request's size, reallocated in place for it or
 * moved for a smaller one, freed, or freed twice (caught), through the
 * checking paths, every mark gone with its object; the check passes at
 * every step and after the switch back. */
KTEST(heap_lend, lent_blocks_live_across_a_switch_of_the_heaps_debugging)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160);
    void *p[4];
    for (unsigned i = 0; i < N(p); i++) {
        p[i] = kmm_malloc(k, 144, 0);
        KT_ASSERT(t, p[i] != NULL && kmm_usable_size(k, p[i]) == 160);
        kt_heap_fill(&h, p[i], 0, 144, (uint8_t)(i + 1));
    }
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, N(p));
    KT_ASSERT(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_ALL) >= 1);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_free_sized(k, p[0], 144), KMM_OK);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p[0], 144), KMM_ESTATE,
                          KT_CLASS(KMM_MISUSE_DOUBLE_FREE), "kmm_free_sized");
    KT_EXPECT(t, kmm_realloc(k, p[1], 150, 0) == p[1]);
    KT_EXPECT(t, kmm_realloc(k, p[1], 130, 0) == p[1]);
    KT_EXPECT_EQ(t, kmm_free_sized(k, p[1], 130), KMM_OK);
    /* 16 bytes: beyond the classes 160 may lend to (eight down, 32). */
    void *q = kmm_realloc(k, p[2], 16, 0);
    KT_ASSERT(t, q != NULL && q != p[2]);
    KT_EXPECT(t, kt_heap_holds(&h, q, 0, 16, 3));
    KT_EXPECT_EQ(t, kmm_free(k, p[3]), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    /* q's class keeps its debug layout while it holds q. */
    KT_ASSERT_EQ(t, kmm_heap_debug(k, 0), 1);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_free_sized(k, q, 16), KMM_OK);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 1);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* In the debug layout (red zones: the caller's pointer lies past the
 * object's start, in any page of a slab of several) a sized free with the
 * class below's size looks for a lent mark, finds none (a debugged heap
 * lends nothing) and is refused; the right size frees. */
KTEST(heap_lend, a_sized_free_in_the_debug_layout_finds_no_lent_mark)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_REDZONE), 0);
    static const size_t sizes[] = {144, 3072, 5120, 8192};
    enum { EACH = 12 };
    void *p[EACH];
    for (unsigned s = 0; s < N(sizes); s++) {
        unsigned i = 0;
        while (kt_heap_class_at(i) != sizes[s])
            i++;
        size_t below = kt_heap_class_at(i - 1);
        for (unsigned j = 0; j < EACH; j++) {
            p[j] = kmm_malloc(k, sizes[s], 0);
            KT_ASSERT(t, p[j] != NULL);
        }
        for (unsigned j = 0; j < EACH; j++) {
            KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p[j], below), KMM_EINVAL,
                                  KT_CLASS(KMM_MISUSE_WRONG_ORDER), "kmm_free_sized");
            KT_EXPECT_EQ(t, kmm_free_sized(k, p[j], sizes[s]), KMM_OK);
        }
    }
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_heap_debug(k, 0), 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* Blocks lent three classes down stay freeable with their request's size
 * after the setting was lowered to 0 (the sized free accepts as many
 * classes as the setting ever allowed), and reallocate in place for it;
 * new requests are then of their own class, and their sized frees exact. */
KTEST(heap_lend, lent_blocks_keep_their_sizes_after_the_setting_is_lowered)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_set_lend(k, 3), KMM_OK);
    prime(t, &h, 192); /* three classes above 140's, 144 */
    void *p = kmm_malloc(k, 140, 0), *q = kmm_malloc(k, 140, 0);
    KT_ASSERT(t, p != NULL && q != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 192);
    KT_EXPECT_EQ(t, kmm_usable_size(k, q), 192);
    KT_ASSERT_EQ(t, kmm_heap_set_lend(k, 0), KMM_OK);
    KT_EXPECT(t, kmm_realloc(k, q, 130, 0) == q);
    KT_EXPECT_EQ(t, kmm_free_sized(k, p, 140), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free_sized(k, q, 130), KMM_OK);
    void *r = kmm_malloc(k, 140, 0);
    KT_ASSERT(t, r != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, r), 144);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, r, 128), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_WRONG_ORDER), "kmm_free_sized");
    KT_EXPECT_EQ(t, kmm_free_sized(k, r, 140), KMM_OK);
    KT_EXPECT_EQ(t, class_stats(t, &h, 192).lent, 2);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* kmm_aligned_alloc for every power of two up to the page and every class
 * size, on a heap where the request's class has no object and the next
 * three classes hold memory idle: every block is aligned and holds the
 * size. */
KTEST(heap_lend, aligned_requests_stay_aligned_with_every_class_lending)
{
    enum { NEXT = 3 };
    uint64_t lent = 0;
    for (size_t align = 16; align <= KMM_PAGE_SIZE; align *= 2)
        for (unsigned i = 0; i < KT_HEAP_CLASSES; i++) {
            size_t size = kt_heap_class_at(i) - (i % 2 ? 1 : 0);
            unsigned at = i; /* the class the request lands in */
            while (kt_heap_class_at(at) < align || kt_heap_class_at(at) % align)
                at++;
            struct kt_heap h;
            if (!up(t, &h))
                return;
            struct kmm *k = h.f.k;
            for (unsigned d = 1; d <= NEXT && at + d < KT_HEAP_CLASSES; d++)
                prime(t, &h, kt_heap_class_at(at + d));
            void *p = kmm_aligned_alloc(k, align, size, 0);
            KT_ASSERT(t, p != NULL);
            if ((uintptr_t)p % align || kmm_usable_size(k, p) < size)
                ktest_fail_at(t, __FILE__, __LINE__,
                              "aligned_alloc(%zu, %zu) at %p holds %zu bytes", align, size, p,
                              kmm_usable_size(k, p));
            lent += kmm_usable_size(k, p) != kt_heap_class_at(at);
            KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
            KT_EXPECT_EQ(t, kt_heap_stats(&h).misuse, 0);
            KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
            KT_EXPECT_HEALTHY(t, k);
            kt_heap_down(&h);
        }
    ktest_diag(t, "%llu aligned requests lent a larger class's block", (unsigned long long)lent);
    KT_EXPECT(t, lent > 0);
}
