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

#define FOREIGN (KT_CLASS(KMM_MISUSE_OUTSIDE) | KT_CLASS(KMM_MISUSE_NOT_BLOCK))

/* The calls that take a block, given p, which is no block of the heap:
 * each refused, counted once, nothing changed. */
static void expect_foreign_refused_at(struct ktest *t, struct kt_heap *h, const void *p, int line)
{
    struct kmm *k = h->f.k;
    struct kt_heap_snap s;
    const struct kt_heap_verdict v = {KMM_EINVAL, FOREIGN};
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
#define EXPECT_FOREIGN_REFUSED(t, h, p) expect_foreign_refused_at((t), (h), (p), __LINE__)

/*
 * Memory the heap never hands out as a block: where no RAM is (the frame
 * database's holes), the instance, a cache's own structure (its handle,
 * and its CPU stacks inside it), and a block used as a cache handle.
 */
KTEST(heap_attack, the_instance_a_cache_structure_and_holes_are_no_blocks)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, holed, N(holed), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    struct kmm_cache *c = kmm_cache_create(k, "kt-handle", 48, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    void *o = kmm_cache_alloc(k, c, 0);
    KT_ASSERT(t, o != NULL);
    const void *none[] = {
        kt_machine_phys(h.f.m, 0),        /* below RAM */
        kt_machine_phys(h.f.m, 20 * MIB), /* the hole */
        k,                                /* the instance */
        c,                                /* a cache */
        (const uint8_t *)c + 256,         /* inside it: its CPU stacks */
    };
    for (size_t i = 0; i < N(none); i++) {
        ktest_diag(t, "pointer %zu", i);
        EXPECT_FOREIGN_REFUSED(t, &h, none[i]);
    }
    /* A page-aligned block of the heap's is no cache handle. */
    void *b = kmm_malloc(k, 4096, 0), *pg = kmm_malloc(k, 20 * KIB, 0);
    KT_ASSERT(t, b != NULL && pg != NULL);
    const void *handles[] = {k, b, pg, o};
    for (size_t i = 0; i < N(handles); i++) {
        struct kmm_cache *bad = (struct kmm_cache *)(uintptr_t)handles[i];
        ktest_diag(t, "handle %zu", i);
        KT_EXPECT_HEAP_MISUSE(t, &h, KT_NULL_AS(kmm_cache_alloc(k, bad, 0), KMM_EINVAL), KMM_EINVAL,
                              BAD_HANDLE, "kmm_cache_alloc");
        KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_destroy(k, bad), KMM_EINVAL, BAD_HANDLE,
                              "kmm_cache_destroy");
    }
    KT_EXPECT_EQ(t, kmm_free(k, b), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, pg), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, o), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
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

/* --- memory running out at every step ------------------------------------------------------ */

/* One step of a script of calls: what it allocated (to free later), and
 * whether it was an allocation that could fail. */
struct step_result {
    void *p;
    struct kmm_cache *cache; /* p is an object of this cache */
    bool allocation;
};

static void ctor_fill(void *obj)
{
    kt_fill(obj, 0x5c, 40);
}

/* Step i of the script: allocation calls of every kind, against whatever
 * the cap leaves. */
static struct step_result script_step(struct kmm *k, unsigned i, struct kmm_cache **own)
{
    struct step_result r = {.allocation = true};
    switch (i % 10) {
    case 0:
        r.p = kmm_malloc(k, 64, 0);
        break;
    case 1:
        r.p = kmm_malloc(k, 700, KMM_GFP_ATOMIC);
        break;
    case 2:
        r.p = kmm_zalloc(k, 20 * KIB, 0);
        break;
    case 3:
        r.p = kmm_calloc(k, 3, 1000, 0);
        break;
    case 4:
        r.p = kmm_aligned_alloc(k, 512, 300, 0);
        break;
    case 5:
        r.p = kmm_aligned_alloc(k, 8 * KIB, 8 * KIB, 0);
        break;
    case 6:
        r.p = kmm_malloc(k, 200 * KIB, 0);
        break;
    case 7:
        if (!*own) {
            r.allocation = false; /* kmm_cache_create is no block: not in failed */
            *own = kmm_cache_create(k, "kt-script", 72, 0, ctor_fill, 0);
            return r;
        }
        r.cache = *own;
        r.p = kmm_cache_alloc(k, *own, 0);
        break;
    case 8:
        r.p = kmm_malloc(k, 4000, 0);
        break;
    default:
        r.p = kmm_malloc(k, 16, KMM_GFP_ATOMIC);
        break;
    }
    return r;
}

/*
 * The script under a cap raised a page at a time from what the heap holds
 * when settled: every allocation that returns NULL counts one failure and
 * changes nothing else, every one that succeeds counts none, the cap is
 * never passed, and once everything is freed the heap holds what it held.
 */
KTEST(heap_attack, under_every_cap_each_failed_allocation_counts_once_and_nothing_leaks)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    enum { STEPS = 60, CAPS = 80 };
    static struct step_result done[STEPS];
    uint64_t base = kt_heap_stats(&h).bytes_held;
    unsigned failures = 0;
    for (unsigned cap = 1; cap <= CAPS; cap++) {
        uint64_t limit = base + (uint64_t)cap * PAGE;
        kmm_heap_set_limit(k, limit);
        struct kmm_cache *own = NULL;
        for (unsigned i = 0; i < STEPS; i++) {
            struct kmm_heap_stats s0 = kt_heap_stats(&h);
            done[i] = script_step(k, i, &own);
            struct kmm_heap_stats s1 = kt_heap_stats(&h);
            if (s1.bytes_held > limit)
                ktest_fail_at(t, __FILE__, __LINE__, "cap %u step %u: %llu bytes held over %llu",
                              cap, i, (unsigned long long)s1.bytes_held, (unsigned long long)limit);
            if (!done[i].allocation)
                continue;
            uint64_t want = done[i].p ? 0 : 1;
            failures += !done[i].p;
            if (s1.failed - s0.failed != want || s1.allocs - s0.allocs != 1 - want)
                ktest_fail_at(
                    t, __FILE__, __LINE__, "cap %u step %u (%s): failed +%llu, allocs +%llu", cap,
                    i, done[i].p ? "served" : "NULL", (unsigned long long)(s1.failed - s0.failed),
                    (unsigned long long)(s1.allocs - s0.allocs));
        }
        KT_EXPECT_HEALTHY(t, k);
        for (unsigned i = STEPS; i-- > 0;)
            if (done[i].p)
                KT_EXPECT_EQ(t,
                             done[i].cache ? kmm_cache_free(k, done[i].cache, done[i].p)
                                           : kmm_free(k, done[i].p),
                             KMM_OK);
        if (own)
            KT_EXPECT_EQ(t, kmm_cache_destroy(k, own), KMM_OK);
        kmm_heap_set_limit(k, 0);
        kt_heap_settle(&h);
        KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, base);
        KT_EXPECT_HEALTHY(t, k);
        if (ktest_failed(t))
            break;
    }
    ktest_diag(t, "%u allocations failed under the caps", failures);
    KT_EXPECT(t, failures > 0);
    kt_heap_down(&h);
}

/* A machine small enough to run out: the page allocator's reclaim hooks
 * (the heap's shrinker among them) run inside the heap's own allocations. */
static const struct kmm_region ram4[] = {{1 * MIB, 4 * MIB, KMM_MEM_USABLE}};

/*
 * The same script, nothing freed, until the machine runs out: each NULL
 * counts one failure, the heap stays sound while the reclaim hooks run
 * inside its allocations, and after everything is freed every page comes
 * back to the page allocator.
 */
KTEST(heap_attack, on_a_machine_running_out_each_failed_allocation_counts_once_and_all_comes_back)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram4, N(ram4), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    struct kmm_page_stats p0;
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &p0);
    uint64_t base = kt_heap_stats(&h).bytes_held;
    enum { STEPS = 4000 };
    static struct step_result done[STEPS];
    struct kmm_cache *own = NULL;
    unsigned failures = 0, run = 0;
    for (unsigned i = 0; i < STEPS && run < 40; i++) {
        struct kmm_heap_stats s0 = kt_heap_stats(&h);
        done[i] = script_step(k, i, &own);
        struct kmm_heap_stats s1 = kt_heap_stats(&h);
        if (!done[i].allocation)
            continue;
        uint64_t want = done[i].p ? 0 : 1;
        failures += !done[i].p;
        run = done[i].p ? 0 : run + 1; /* stop after 40 failures in a row */
        if (s1.failed - s0.failed != want)
            ktest_fail_at(t, __FILE__, __LINE__, "step %u (%s): failed +%llu", i,
                          done[i].p ? "served" : "NULL",
                          (unsigned long long)(s1.failed - s0.failed));
    }
    ktest_diag(t, "%u allocations failed", failures);
    KT_EXPECT(t, failures > 0);
    KT_EXPECT_HEALTHY(t, k);
    for (unsigned i = STEPS; i-- > 0;)
        if (done[i].p)
            KT_EXPECT_EQ(t,
                         done[i].cache ? kmm_cache_free(k, done[i].cache, done[i].p)
                                       : kmm_free(k, done[i].p),
                         KMM_OK);
    if (own)
        KT_EXPECT_EQ(t, kmm_cache_destroy(k, own), KMM_OK);
    kt_heap_settle(&h);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_held, base);
    struct kmm_page_stats p1;
    kmm_page_stats(k, &p1);
    KT_EXPECT_EQ(t, p1.allocated_pages, p0.allocated_pages);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- pointers inside blocks of every size ----------------------------------------------- */

#define INTERIOR KT_CLASS(KMM_MISUSE_NOT_BLOCK)

/* The calls that take a block, given p inside a live block: refused as
 * an interior pointer (the log says so), the block untouched. */
static void expect_interior_refused_at(struct ktest *t, struct kt_heap *h, const void *p, int line)
{
    struct kmm *k = h->f.k;
    struct kt_heap_snap s;
    const struct kt_heap_verdict v = {KMM_EINVAL, INTERIOR};
    const char *needle = "inside a heap block";
    kt_heap_snap(h, &s);
    kt_expect_heap_misuse_at(t, h, &s, kmm_free(k, p), &v, 1, "kmm_free", needle, __FILE__, line);
    kt_heap_snap(h, &s);
    kt_expect_heap_misuse_at(t, h, &s, kmm_free_sized(k, p, 64), &v, 1, "kmm_free_sized", needle,
                             __FILE__, line);
    kt_heap_snap(h, &s);
    int got = kmm_usable_size(k, p) == 0 ? KMM_EINVAL : KMM_OK;
    kt_expect_heap_misuse_at(t, h, &s, got, &v, 1, "kmm_usable_size", needle, __FILE__, line);
    kt_heap_snap(h, &s);
    got = KT_NULL_AS(kmm_realloc(k, (void *)(uintptr_t)p, 64, 0), KMM_EINVAL);
    kt_expect_heap_misuse_at(t, h, &s, got, &v, 1, "kmm_realloc", needle, __FILE__, line);
}
#define EXPECT_INTERIOR_REFUSED(t, h, p) expect_interior_refused_at((t), (h), (p), __LINE__)

/*
 * A pointer inside a block of whole pages of any order the heap hands
 * out (up to KMM_HEAP_ALIGN_MAX, from kmm_aligned_alloc), past its first
 * 32 pages too, and inside a vmalloc'd block, is refused as what it is:
 * inside a heap block, not foreign memory.
 */
KTEST(heap_attack, a_pointer_inside_a_block_of_any_size_is_refused_as_interior)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    for (size_t bytes = 2 * PAGE; bytes <= KMM_HEAP_ALIGN_MAX; bytes *= 2) {
        uint8_t *p = kmm_aligned_alloc(k, PAGE, bytes, 0);
        KT_ASSERT(t, p != NULL);
        KT_EXPECT_EQ(t, kmm_usable_size(k, p), bytes);
        const size_t offs[] = {16, PAGE, bytes / 2 + 64, bytes - PAGE, bytes - 16};
        for (size_t i = 0; i < N(offs); i++) {
            ktest_diag(t, "%zu bytes, offset %zu", bytes, offs[i]);
            EXPECT_INTERIOR_REFUSED(t, &h, p + offs[i]);
        }
        KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    }
    uint8_t *v = kmm_malloc(k, 300 * KIB, 0);
    KT_ASSERT(t, v != NULL);
    const size_t voffs[] = {16, PAGE, 300 * KIB - 16};
    for (size_t i = 0; i < N(voffs); i++) {
        ktest_diag(t, "vmalloc'd, offset %zu", voffs[i]);
        EXPECT_INTERIOR_REFUSED(t, &h, v + voffs[i]);
    }
    KT_EXPECT_EQ(t, kmm_free(k, v), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- the figures ------------------------------------------------------------------------ */

/*
 * bytes_peak is the most the heap ever held: a request that fails (a
 * vmalloc'd block the machine has no RAM or window for, whole pages when
 * the page allocator has none) held nothing, so it leaves the peak where
 * it was.
 */
KTEST(heap_attack, a_failed_request_leaves_the_peak_where_it_was)
{
    struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    struct kmm_heap_stats s0 = kt_heap_stats(&h);
    KT_EXPECT(t, kmm_malloc(k, (size_t)1 << 30, 0) == NULL);   /* no RAM for it */
    KT_EXPECT(t, kmm_malloc(k, KMM_HEAP_SIZE_MAX, 0) == NULL); /* nor window */
    /* Every page taken from the page allocator, chained through their
     * first words: then whole pages fail too. */
    uint64_t chain = 0, pa;
    while ((pa = kmm_page_alloc(k, 0, 0)) != 0) {
        *(uint64_t *)kt_machine_phys(h.f.m, pa) = chain;
        chain = pa;
    }
    KT_EXPECT(t, kmm_malloc(k, 20 * KIB, 0) == NULL);
    struct kmm_heap_stats s1 = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, s1.failed, s0.failed + 3);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, s1.bytes_peak, s0.bytes_peak);
    while (chain) {
        pa = chain;
        chain = *(uint64_t *)kt_machine_phys(h.f.m, pa);
        KT_EXPECT_EQ(t, kmm_page_free(k, pa, 0), KMM_OK);
    }
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}
