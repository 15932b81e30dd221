/*
 * test_heap_lend.c - lending between size classes, against what
 * include/kmm/heap.h promises (kmm_malloc, kmm_heap_set_lend,
 * kmm_free_sized, kmm_realloc): a class with no free object takes a free
 * one of the next classes before it grows, as far as the setting reaches;
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

/* Leaves n free objects of size's class on this CPU's stack: n blocks of
 * size allocated, then freed. */
static void prime(struct ktest *t, struct kt_heap *h, size_t size, unsigned n)
{
    void *p[8];
    KT_ASSERT(t, n <= N(p));
    for (unsigned i = 0; i < n; i++) {
        p[i] = kmm_malloc(h->f.k, size, 0);
        KT_ASSERT(t, p[i] != NULL);
        kt_heap_fill(h, p[i], 0, kmm_usable_size(h->f.k, p[i]), 0xa5);
    }
    for (unsigned i = n; i-- > 0;)
        KT_ASSERT_EQ(t, kmm_free(h->f.k, p[i]), KMM_OK);
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

/* The first request: its class has no cache, the next one has free
 * objects. The block is the next class's, counted as lent there, and the
 * request's class took no slab. */
KTEST(heap_lend, a_class_with_no_free_object_takes_one_of_the_next_class)
{
    struct kt_heap h;
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160, 2);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 160);
    struct kmm_cache_stats lender = class_stats(t, &h, 160);
    KT_EXPECT_EQ(t, lender.lent, 1);
    KT_EXPECT_EQ(t, lender.allocs, 3);
    KT_EXPECT_EQ(t, lender.active_objects, 1);
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

/* A request of 100 bytes (class 112): the class d steps above it lends iff
 * d is at most the setting; otherwise the request's class grows. */
KTEST(heap_lend, lending_reaches_as_many_classes_as_the_setting)
{
    for (unsigned lend = 0; lend <= KMM_HEAP_LEND_MAX; lend++)
        for (unsigned d = 1; d <= KMM_HEAP_LEND_MAX; d++) {
            struct kt_heap h;
            if (!up(t, &h))
                return;
            struct kmm *k = h.f.k;
            KT_ASSERT_EQ(t, kmm_heap_set_lend(k, lend), KMM_OK);
            size_t lender = kt_heap_class_at(6 + d); /* 112 is class 6 */
            prime(t, &h, lender, 1);
            void *p = kmm_malloc(k, 100, 0);
            KT_ASSERT(t, p != NULL);
            size_t want = d <= lend ? lender : 112;
            if (kmm_usable_size(k, p) != want)
                ktest_fail_at(t, __FILE__, __LINE__,
                              "lend %u, free objects in class %zu: malloc(100) holds %zu, want %zu",
                              lend, lender, kmm_usable_size(k, p), want);
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
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160, 1);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL && kmm_usable_size(k, p) == 160);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free_sized(k, p, 112), KMM_EINVAL,
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
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160, 1);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL && kmm_usable_size(k, p) == 160);
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
    prime(t, &h, 80, 2);
    prime(t, &h, 96, 2);
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
    prime(t, &h, 160, 2);
    struct kmm_cache *c = kt_heap_class_cache(&h, 160);
    KT_ASSERT(t, c != NULL);
    KT_ASSERT_EQ(t, kmm_cache_debug(k, c, KMM_HEAP_DEBUG_POISON), KMM_OK);
    prime(t, &h, 160, 2); /* free objects through the checking path */
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 144);
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, 0);
    KT_ASSERT_EQ(t, kmm_cache_debug(k, c, 0), KMM_OK);
    prime(t, &h, 160, 2);
    /* Class 128 has no cache yet; 144 (p's) and 160 have free objects. */
    void *q = kmm_malloc(k, 128, 0);
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
    prime(t, &h, 160, 1); /* filled with 0xa5 before its free */
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
    if (!up(t, &h))
        return;
    struct kmm *k = h.f.k;
    prime(t, &h, 160, 1);
    void *p = kmm_malloc(k, 144, 0);
    KT_ASSERT(t, p != NULL && kmm_usable_size(k, p) == 160);
    kt_heap_fill(&h, p, 0, 160, 7);
    KT_EXPECT(t, kmm_realloc(k, p, 150, 0) == p);
    KT_EXPECT(t, kmm_realloc(k, p, 130, 0) == p);
    void *q = kmm_realloc(k, p, 100, 0);
    KT_ASSERT(t, q != NULL && q != p);
    KT_EXPECT_EQ(t, kmm_usable_size(k, q), 112);
    KT_EXPECT(t, kt_heap_holds(&h, q, 0, 100, 7));
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
    prime(t, &h, 160, 1);
    void *p = kmm_malloc(k, 128, 0); /* class 160 is two on: beyond the setting of 1 */
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 128);
    KT_EXPECT_EQ(t, class_stats(t, &h, 160).lent, 0);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}
