/*
 * test_heap_attack.c - the heap as a careless or hostile caller finds it:
 * handles that point where no memory is, memory running out inside the
 * heap's own bookkeeping, and the figures that must stay true through it.
 * Each test is a question a review asked of heap.h; black-box, so they run
 * hosted and in the kernel (the white-box ones are in tests/hosted/).
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

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define KIB  ((size_t)1 << 10)
#define MIB  ((size_t)1 << 20)
#define PAGE KT_PAGE

/* Two ranges of RAM in one 128 MiB section of the frame database, with a
 * hole between them and below the first: addresses the database has
 * descriptors for (ABSENT ones) but that are no RAM. */
static const struct kmm_region holed[] = {{1 * MIB, 15 * MIB, KMM_MEM_USABLE},
                                          {24 * MIB, 8 * MIB, KMM_MEM_USABLE}};

#define BAD_HANDLE KT_CLASS(KMM_MISUSE_BAD_HANDLE)

/* --- handles where no memory is ------------------------------------------------------ */

/*
 * A cache handle is checked before it is read: a page-aligned address in
 * the direct map where the frame database knows the frame but there is no
 * RAM (below the first range, in the hole between two) is refused as a
 * handle, never dereferenced (hosted, those pages are not mapped at all).
 */
KTEST(heap_attack, a_cache_handle_where_no_ram_is_is_refused_unread)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, holed, N(holed), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    static const uint64_t nowhere[] = {0, 64 * KIB, 16 * MIB, 20 * MIB, 24 * MIB - PAGE};
    for (size_t i = 0; i < N(nowhere); i++) {
        struct kmm_cache *c = kt_machine_phys(h.f.m, nowhere[i]);
        ktest_diag(t, "a handle at physical 0x%llx", (unsigned long long)nowhere[i]);
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, c, 0), KMM_EINVAL), KMM_EINVAL,
                              BAD_HANDLE, "kmm_cache_alloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(k, c), KMM_EINVAL, BAD_HANDLE,
                              "kmm_cache_destroy");
        struct kmm_cache_stats cs;
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_stats(k, c, &cs), KMM_EINVAL, BAD_HANDLE,
                              "kmm_cache_stats");
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_shrink(k, c) == 0 ? KMM_EINVAL : KMM_OK, KMM_EINVAL,
                              BAD_HANDLE, "kmm_cache_shrink");
    }
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- memory running out inside the heap's bookkeeping ----------------------------------- */

static const struct kmm_region ram32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

/*
 * kmm_heap_stats.failed counts allocations that returned NULL for want of
 * memory: one per such call, however deep inside the heap memory ran out.
 * Here a new slab of a class fits under the cap but the slab record it
 * needs (a new slab of the heap's own record cache) does not.
 */
KTEST(heap_attack, an_allocation_failing_for_want_of_a_slab_record_counts_one_failure)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h); /* settled: no slab of any cache, the records' included */
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    /* Room for one page: a slab of the 64-byte class, not its record. */
    kmm_heap_set_limit(k, s0.bytes_held + PAGE);
    KT_EXPECT(t, kmm_malloc(k, 64, 0) == NULL);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.failed, s0.failed + 1);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, s1.allocs, s0.allocs);
    kmm_heap_set_limit(k, 0);
    void *p = kmm_malloc(k, 64, 0);
    KT_EXPECT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/*
 * A free never fails for want of memory: when the CPU's stack is full and
 * no magazine can be had for the depot (the cap), the batch goes straight
 * back to its slabs. No allocation failed, so none is counted.
 */
KTEST(heap_attack, frees_that_find_no_magazine_succeed_and_count_no_failure)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h); /* settled: no magazine, no slab of the magazines' cache */
    enum { OBJS = 1000 };
    static void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 64, 0)) != NULL);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    kmm_heap_set_limit(k, s0.bytes_held); /* no page more: no magazine */
    for (unsigned i = 0; i < OBJS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.failed, s0.failed);
    KT_EXPECT_EQ(t, s1.frees, s0.frees + OBJS);
    KT_EXPECT_EQ(t, s1.bytes_used, s0.bytes_used - (uint64_t)OBJS * 64);
    KT_EXPECT_HEALTHY(t, k);
    kmm_heap_set_limit(k, 0);
    kt_heap_down(&h);
}
