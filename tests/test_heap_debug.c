/*
 * test_heap_debug.c - the heap's debugging modes (kmm/heap.h, "Debugging"),
 * each catching its bug class: one byte past the end or before the start
 * (red zones), a write after free (poison, named with the free's caller),
 * a double free long after the fact (quarantine), a leak since a mark by
 * call site (tracking), a write past a sampled object (guard pages); each
 * report counted and kmm_check's verdict as heap.h says; the event ring;
 * switching on and off with live objects; and the switches' misuse.
 * (tests/hosted/test_heap_guard.c: the guard page as a real fault.)
 */
#include "call_sites.h"
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

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

static uint64_t heap_misuse(struct kmm *k, unsigned cls)
{
    struct kmm_misuse_stats m;
    kmm_misuse_stats(k, &m);
    return m.count[KMM_LAYER_HEAP][cls];
}

/* The address printed after key in text ("... freed by 0x1234 ..."), 0 if
 * none. */
static uintptr_t hex_after(const char *text, const char *key)
{
    for (const char *s = text; *s; s++) {
        const char *a = s, *b = key;
        while (*b && *a == *b)
            a++, b++;
        if (*b)
            continue;
        if (a[0] != '0' || a[1] != 'x')
            return 0;
        uintptr_t v = 0;
        for (a += 2;; a++) {
            unsigned d = *a >= '0' && *a <= '9'   ? (unsigned)(*a - '0')
                         : *a >= 'a' && *a <= 'f' ? (unsigned)(*a - 'a' + 10)
                                                  : 16u;
            if (d == 16)
                return v;
            v = v * 16 + d;
        }
    }
    return 0;
}

/* An instance with the heap-wide modes `modes` from the start. */
static bool up(struct ktest *t, struct kt_heap *h, unsigned modes)
{
    if (!kt_heap_up(t, h, map64, 1, 1))
        return false;
    if (modes && kmm_heap_debug(h->f.k, modes) != 0) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_heap_debug(0x%x) at boot", modes);
        kt_heap_down(h);
        return false;
    }
    return true;
}

/* --- red zones ------------------------------------------------------------------------- */

KTEST(heap_debug, one_byte_past_the_end_is_caught_by_check_and_by_the_free)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_REDZONE));
    struct kmm *k = h.f.k;
    uint8_t *p = kt_malloc_at_a(k, 100); /* class 112: 12 bytes of slack */
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, (uintptr_t)p % 16, 0);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 100);
    kt_fill(p, 0x5a, 100); /* every byte asked for is the caller's */
    KT_EXPECT_HEALTHY(t, k);
    p[100] = 1;
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "red zone"));
    KT_EXPECT_EQ(t, kt_free_at_c(k, p), KMM_OK); /* freed all the same */
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 1);
    const char *line = kt_machine_last_error(h.f.m);
    KT_EXPECT(t, ktest_contains(line, "kmm_free"));
    KT_EXPECT(t, ktest_contains(line, "written past the end of its 100 bytes"));
    KT_EXPECT(
        t, kt_inside((const void *)hex_after(line, "allocated by "), (const void *)kt_malloc_at_a));
    KT_EXPECT(t, kt_inside((const void *)hex_after(line, "caller "), (const void *)kt_free_at_c));
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_debug, a_byte_before_the_start_is_caught_and_large_classes_keep_their_alignment)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_REDZONE));
    struct kmm *k = h.f.k;
    static const size_t sizes[] = {1, 16, 48, 200, 256, 1000, 4096, 8192};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i], cls = kt_heap_class_of(n);
        uint8_t *p = kmm_malloc(k, n, 0);
        KT_ASSERT(t, p != NULL);
        size_t align = cls & (0 - cls);
        KT_EXPECT_EQ(t, (uintptr_t)p % (align < KT_PAGE ? align : KT_PAGE), 0);
        kt_fill(p, 0x11, n);
        p[-1] = 0x22;
        KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
        KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), i + 1);
        KT_EXPECT(t, ktest_contains(kt_machine_last_error(h.f.m), "before the object"));
    }
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

static unsigned ctor_runs;
static void ctor(void *obj)
{
    ctor_runs++;
    *(uint32_t *)obj = 0xc0ffee;
}

KTEST(heap_debug, a_cache_made_with_red_zones_constructs_its_objects_and_catches_overruns)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, 0));
    struct kmm *k = h.f.k;
    struct kmm_cache *c =
        kmm_cache_create(k, "kt-dbg", 40, 64, ctor, KMM_HEAP_DEBUG_REDZONE | KMM_HEAP_DEBUG_TRACK);
    KT_ASSERT(t, c != NULL);
    struct kmm_cache_stats cs = kt_cache_stats(t, &h, c);
    KT_EXPECT_EQ(t, cs.debug_modes, KMM_HEAP_DEBUG_REDZONE | KMM_HEAP_DEBUG_TRACK);
    ctor_runs = 0;
    uint32_t *o[8];
    for (unsigned i = 0; i < 8; i++) {
        o[i] = kmm_cache_alloc(k, c, 0);
        KT_ASSERT(t, o[i] != NULL);
        KT_EXPECT_EQ(t, (uintptr_t)o[i] % 64, 0);
        KT_EXPECT_EQ(t, *o[i], 0xc0ffee); /* the constructor saw the object, not its red zone */
    }
    KT_EXPECT(t, ctor_runs >= 8);
    ((uint8_t *)o[3])[40] = 0; /* one past its 40 bytes */
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, o[3]), KMM_OK);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 1);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(h.f.m), "kmm_cache_free"));
    /* The slot's start is no object (the object lies after its red zone). */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_free(k, c, (uint8_t *)o[4] - 64), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_NOT_BLOCK), "kmm_cache_free");
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_EBUSY);
    for (unsigned i = 0; i < 8; i++)
        if (i != 3)
            KT_EXPECT_EQ(t, kmm_cache_free(k, c, o[i]), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    kt_heap_down(&h);
}

/* --- poison ------------------------------------------------------------------------------- */

KTEST(heap_debug, a_write_after_free_is_caught_on_the_next_allocation_naming_the_free)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_POISON));
    struct kmm *k = h.f.k;
    uint8_t *p = kmm_malloc(k, 64, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kt_free_at_c(k, p), KMM_OK);
    KT_EXPECT(t, kt_heap_all(&h, p, 24, 40, KMM_HEAP_POISON_BYTE));
    KT_EXPECT_HEALTHY(t, k);
    p[40] = 7; /* the stale pointer's write */
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT(t, ktest_contains(r.first, "written after it was freed"));
    uint8_t *q = kt_malloc_at_b(k, 64); /* the same object: the slab hands it out first */
    KT_EXPECT(t, q == p);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_USE_AFTER_FREE), 1);
    const char *line = kt_machine_last_error(h.f.m);
    KT_EXPECT(t, ktest_contains(line, "written after it was freed (byte 40"));
    KT_EXPECT(t, kt_inside((const void *)hex_after(line, "freed by "), (const void *)kt_free_at_c));
    KT_EXPECT(t, kt_inside((const void *)hex_after(line, "caller "), (const void *)kt_malloc_at_b));
    KT_EXPECT_EQ(t, kmm_free(k, q), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- quarantine ---------------------------------------------------------------------------- */

KTEST(heap_debug, a_double_free_is_caught_while_the_object_waits_in_quarantine)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_QUARANTINE | KMM_HEAP_DEBUG_POISON));
    struct kmm *k = h.f.k;
    uint8_t *p = kmm_malloc(k, 48, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kt_free_at_c(k, p), KMM_OK);
    /* Others come and go meanwhile: none of them gets p. */
    static void *others[100];
    for (unsigned i = 0; i < 100; i++) {
        others[i] = kmm_malloc(k, 48, 0);
        KT_ASSERT(t, others[i] != NULL);
        KT_EXPECT(t, others[i] != p);
    }
    for (unsigned i = 0; i < 100; i++)
        KT_EXPECT_EQ(t, kmm_free(k, others[i]), KMM_OK);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.quarantined, 101);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free(k, p), KMM_ESTATE, KT_CLASS(KMM_MISUSE_DOUBLE_FREE),
                          "already free");
    KT_EXPECT(t,
              kt_inside((const void *)hex_after(kt_machine_last_error(h.f.m), "freed before by "),
                        (const void *)kt_free_at_c));
    KT_EXPECT_HEALTHY(t, k);
    /* The quarantine is bounded: the oldest leave, checked, as more come. */
    static void *many[KMM_HEAP_QUARANTINE_OBJECTS + 10];
    for (unsigned i = 0; i < KMM_HEAP_QUARANTINE_OBJECTS + 10; i++)
        many[i] = kmm_malloc(k, 48, 0);
    for (unsigned i = 0; i < KMM_HEAP_QUARANTINE_OBJECTS + 10; i++)
        KT_EXPECT_EQ(t, kmm_free(k, many[i]), KMM_OK);
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.quarantined, KMM_HEAP_QUARANTINE_OBJECTS);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_USE_AFTER_FREE), 0);
    /* Memory short (the reclaim hook): the quarantine empties, checked,
     * and the slabs its objects kept go back. */
    uint64_t held = kt_heap_stats(&h).bytes_held;
    kmm_heap_shrink(k);
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.quarantined, 0);
    KT_EXPECT(t, kt_heap_stats(&h).bytes_held < held);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_USE_AFTER_FREE), 0);
    KT_EXPECT_HEALTHY(t, k);
    for (unsigned i = 0; i < 10; i++) /* it fills again */
        KT_EXPECT_EQ(t, kmm_free(k, kmm_malloc(k, 48, 0)), KMM_OK);
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.quarantined, 10);
    /* Switched off, the quarantine gives everything back. */
    KT_EXPECT_EQ(t, kmm_heap_debug(k, 0), 0);
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.quarantined, 0);
    KT_EXPECT_EQ(t, kt_heap_stats(&h).bytes_used, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- tracking ------------------------------------------------------------------------------ */

KTEST(heap_debug, a_leak_since_a_mark_is_reported_by_call_site)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_TRACK));
    struct kmm *k = h.f.k;
    void *before = kt_malloc_at_a(k, 300); /* before the mark: not in its report */
    KT_ASSERT(t, before != NULL);
    uint64_t mark = kmm_heap_mark(k);
    void *a[3], *b[2];
    for (unsigned i = 0; i < 3; i++)
        a[i] = kt_malloc_at_a(k, 100);
    for (unsigned i = 0; i < 2; i++)
        b[i] = kt_malloc_at_b(k, 1000);
    KT_ASSERT(t, a[0] && a[1] && a[2] && b[0] && b[1]);
    KT_EXPECT_EQ(t, kmm_free(k, a[1]), KMM_OK); /* not a leak */
    struct kmm_heap_site site[4];
    KT_ASSERT_EQ(t, kmm_heap_leak_sites(k, mark, site, 4), 2);
    KT_EXPECT(t, kt_inside(site[0].caller, (const void *)kt_malloc_at_b)); /* most bytes first */
    KT_EXPECT_EQ(t, site[0].objects, 2);
    KT_EXPECT_EQ(t, site[0].bytes, 2000);
    KT_EXPECT(t, kt_inside(site[1].caller, (const void *)kt_malloc_at_a));
    KT_EXPECT_EQ(t, site[1].objects, 2);
    KT_EXPECT_EQ(t, site[1].bytes, 200);
    /* Since the beginning: the early one too, at site a. */
    KT_ASSERT_EQ(t, kmm_heap_leak_sites(k, 0, site, 4), 2);
    KT_EXPECT_EQ(t, site[1].objects, 3);
    KT_EXPECT_EQ(t, site[1].bytes, 500);
    struct kt_text text = {.len = 0};
    KT_EXPECT_EQ(t, kmm_heap_leaks(k, mark, &(struct kmm_sink){kt_text_write, &text}), 4);
    KT_EXPECT(t, ktest_contains(text.buf, "4 objects, 2200 bytes, 2 call sites"));
    /* A mark after everything: nothing leaks since. */
    KT_EXPECT_EQ(t, kmm_heap_leak_sites(k, kmm_heap_mark(k), site, 4), 0);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_free(k, before), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, a[0]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, a[2]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, b[0]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, b[1]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_heap_leak_sites(k, 0, site, 4), 0);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.tracked, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_debug, a_wrapper_s_allocations_are_tracked_at_its_caller)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_TRACK));
    struct kmm *k = h.f.k;
    const void *site_a = (const void *)(uintptr_t)0x1234a000;
    const void *site_b = (const void *)(uintptr_t)0x1234b000;
    void *m = kmm_malloc_caller(k, 100, 0, site_a);
    void *z = kmm_malloc_caller(k, 50, KMM_GFP_ZERO, site_a);
    void *al = kmm_aligned_alloc_caller(k, 256, 200, 0, site_b);
    KT_ASSERT(t, m && z && al);
    KT_EXPECT_EQ(t, ((unsigned char *)z)[49], 0);
    KT_EXPECT_EQ(t, (uintptr_t)al % 256, 0);
    /* A move records the new block at the caller given. */
    void *r = kmm_realloc_caller(k, m, 3000, 0, site_b);
    KT_ASSERT(t, r != NULL);
    struct kmm_heap_site site[4];
    KT_ASSERT_EQ(t, kmm_heap_leak_sites(k, 0, site, 4), 2);
    KT_EXPECT(t, site[0].caller == site_b); /* most bytes first */
    KT_EXPECT_EQ(t, site[0].objects, 2);
    KT_EXPECT_EQ(t, site[0].bytes, 3000 + 256); /* an aligned block counts its class's size */
    KT_EXPECT(t, site[1].caller == site_a);
    KT_EXPECT_EQ(t, site[1].objects, 1);
    KT_EXPECT_EQ(t, site[1].bytes, 50);
    /* A rejection names the caller given. */
    int local;
    KT_EXPECT(t, kmm_realloc_caller(k, &local, 10, 0, site_b) == NULL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(h.f.m), "1234b000"));
    KT_EXPECT(t, kmm_aligned_alloc_caller(k, 3, 10, 0, site_a) == NULL);
    KT_EXPECT(t, ktest_contains(kt_machine_last_error(h.f.m), "1234a000"));
    KT_EXPECT_EQ(t, kmm_free(k, r), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, z), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, al), KMM_OK);
    KT_EXPECT_EQ(t, kmm_heap_leak_sites(k, 0, site, 4), 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- guard pages ---------------------------------------------------------------------------- */

KTEST(heap_debug, a_sampled_object_ends_at_a_guard_page_and_its_tail_is_checked_on_free)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, 0));
    if (!h.live) { /* the kernel's test machines: their tables are never loaded */
        kt_heap_down(&h);
        ktest_skip(t, "guarded objects are written through mappings never live here");
        return;
    }
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_guard_sample(k, 1), KMM_OK); /* every allocation */
    uint8_t *p = kt_malloc_at_a(k, 100);
    KT_ASSERT(t, p != NULL);
    uint64_t va = (uint64_t)(uintptr_t)p;
    KT_EXPECT(t, va >= h.window_base && va - h.window_base < h.window_size);
    KT_EXPECT_EQ(t, va % KT_PAGE, KT_PAGE - 112); /* 100 rounded to 16, at the page's end */
    struct kmm_vm_translation tr;
    KT_EXPECT_EQ(t, kmm_vm_translate(kmm_kernel_aspace(k), va, &tr), KMM_OK);
    KT_EXPECT(t, kmm_vm_translate(kmm_kernel_aspace(k), (va | (KT_PAGE - 1)) + 1, &tr) != KMM_OK);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 100);
    kt_heap_fill(&h, p, 0, 100, 7);
    KT_EXPECT_HEALTHY(t, k);
    *kt_heap_at(&h, p, 104, &(size_t){0}) = 0; /* in the page, past the object */
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    KT_EXPECT_EQ(t, kt_free_at_c(k, p), KMM_OK);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 1);
    const char *line = kt_machine_last_error(h.f.m);
    KT_EXPECT(t, ktest_contains(line, "guarded object"));
    KT_EXPECT(
        t, kt_inside((const void *)hex_after(line, "allocated by "), (const void *)kt_malloc_at_a));
    KT_EXPECT_HEALTHY(t, k);
    /* A second free: refused, naming the first. */
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_free(k, p), KMM_ESTATE, KT_CLASS(KMM_MISUSE_DOUBLE_FREE),
                          "freed before by");
    /* A write to it after the free: kmm_check, then the slot's next use. */
    *kt_heap_at(&h, p, 8, &(size_t){0}) = 0;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_CORRUPT);
    static void *next[KMM_HEAP_GUARD_SLOTS];
    for (unsigned i = 0; i < KMM_HEAP_GUARD_SLOTS; i++)
        next[i] = kmm_malloc(k, 32, KMM_GFP_ZERO);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_USE_AFTER_FREE), 1);
    for (unsigned i = 0; i < KMM_HEAP_GUARD_SLOTS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, next[i]), KMM_OK);
    struct kmm_heap_debug_stats ds;
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.guarded_allocs, 1 + KMM_HEAP_GUARD_SLOTS);
    KT_EXPECT_EQ(t, ds.guarded_live, 0);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_heap_guard_sample(k, 0), KMM_OK); /* the slots go back */
    kmm_heap_debug_stats(k, &ds);
    KT_EXPECT_EQ(t, ds.guard_slots, 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_debug, every_nth_allocation_is_sampled_and_the_rest_served_as_usual)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, 0));
    if (!h.live) { /* the kernel's test machines: their tables are never loaded */
        kt_heap_down(&h);
        ktest_skip(t, "guarded objects are written through mappings never live here");
        return;
    }
    struct kmm *k = h.f.k;
    KT_ASSERT_EQ(t, kmm_heap_guard_sample(k, 10), KMM_OK);
    static void *p[100];
    unsigned guarded = 0;
    for (unsigned i = 0; i < 100; i++) {
        p[i] = kmm_malloc(k, 24 + i, 0);
        KT_ASSERT(t, p[i] != NULL);
        uint64_t va = (uint64_t)(uintptr_t)p[i];
        guarded += va >= h.window_base && va - h.window_base < h.window_size;
        kt_heap_fill(&h, p[i], 0, 24 + i, i);
    }
    KT_EXPECT_EQ(t, guarded, 10);
    for (unsigned i = 0; i < 100; i++) {
        KT_EXPECT(t, kt_heap_holds(&h, p[i], 0, 24 + i, i));
        KT_EXPECT_EQ(t, kmm_free(k, p[i]), KMM_OK);
    }
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 0);
    KT_EXPECT_EQ(t, kmm_heap_guard_sample(k, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- the event ring ------------------------------------------------------------------------- */

/* A sink that looks for lines in a report too long to keep whole. */
struct needles {
    const char *needle[2];
    bool found[2];
};

static void needle_write(void *ctx, const char *s, size_t n)
{
    struct needles *nd = ctx;
    char line[256];
    size_t len = 0;
    for (; len < n && len + 1 < sizeof(line); len++)
        line[len] = s[len];
    line[len] = 0;
    for (unsigned i = 0; i < 2; i++)
        nd->found[i] |= ktest_contains(line, nd->needle[i]);
}

KTEST(heap_debug, the_event_ring_keeps_the_latest_calls_in_order_and_the_report_shows_them)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, KMM_HEAP_DEBUG_EVENTS));
    struct kmm *k = h.f.k;
    void *p = kt_malloc_at_a(k, 200);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kt_free_at_c(k, p), KMM_OK);
    struct kmm_heap_event ev[4];
    KT_ASSERT_EQ(t, kmm_heap_events(k, ev, 4), 2);
    KT_EXPECT_EQ(t, ev[0].op, KMM_HEAP_EVENT_ALLOC);
    KT_EXPECT_EQ(t, ev[0].addr, (uintptr_t)p);
    KT_EXPECT_EQ(t, ev[0].size, 200);
    KT_EXPECT(t, kt_inside(ev[0].caller, (const void *)kt_malloc_at_a));
    KT_EXPECT_EQ(t, ev[1].op, KMM_HEAP_EVENT_FREE);
    KT_EXPECT_EQ(t, ev[1].seq, ev[0].seq + 1);
    KT_EXPECT(t, kt_inside(ev[1].caller, (const void *)kt_free_at_c));
    /* The ring keeps the last KMM_HEAP_EVENTS. */
    for (unsigned i = 0; i < KMM_HEAP_EVENTS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, kmm_malloc(k, 16, 0)), KMM_OK);
    static struct kmm_heap_event all[KMM_HEAP_EVENTS + 1];
    KT_ASSERT_EQ(t, kmm_heap_events(k, all, KMM_HEAP_EVENTS + 1), KMM_HEAP_EVENTS);
    KT_EXPECT_EQ(t, all[KMM_HEAP_EVENTS - 1].seq, 2 + 2 * KMM_HEAP_EVENTS);
    KT_EXPECT_EQ(t, all[0].seq, 3 + KMM_HEAP_EVENTS);
    struct needles n = {{"Heap debugging: heap-wide modes events", "Recent heap events"}, {0}};
    kmm_report(k, &(struct kmm_sink){needle_write, &n});
    KT_EXPECT(t, n.found[0] && n.found[1]);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- switching at run time ------------------------------------------------------------------- */

KTEST(heap_debug, switching_on_and_off_with_live_objects_keeps_them_whole)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, 0));
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    struct kmm_heap_stats before = kt_heap_stats(&h);
    static void *old[64];
    for (unsigned i = 0; i < 64; i++) {
        old[i] = kmm_malloc(k, 64 + 8 * i, 0);
        KT_ASSERT(t, old[i] != NULL);
        kt_heap_fill(&h, old[i], 0, 64 + 8 * i, i);
    }
    /* The classes hold objects: they take poison, quarantine and events,
     * and keep their layout (no red zones, no tracking). */
    int kept = kmm_heap_debug(k, KMM_HEAP_DEBUG_ALL);
    KT_EXPECT(t, kept > 0);
    struct kmm_cache_stats cs = kt_cache_stats(t, &h, kt_heap_class_cache(&h, 64));
    KT_EXPECT_EQ(t, cs.debug_modes,
                 KMM_HEAP_DEBUG_POISON | KMM_HEAP_DEBUG_QUARANTINE | KMM_HEAP_DEBUG_EVENTS);
    static void *mid[64];
    for (unsigned i = 0; i < 64; i++) {
        KT_EXPECT(t, kt_heap_holds(&h, old[i], 0, 64 + 8 * i, i));
        if (i % 2)
            KT_EXPECT_EQ(t, kmm_free(k, old[i]), KMM_OK);
        mid[i] = kmm_malloc(k, 64 + 8 * i, 0);
        KT_ASSERT(t, mid[i] != NULL);
        kt_heap_fill(&h, mid[i], 0, 64 + 8 * i, 100 + i);
    }
    KT_EXPECT_HEALTHY(t, k);
    /* Off: the caches that took the layout keep it while they hold objects
     * (counted), and go plain once empty. */
    KT_EXPECT(t, kmm_heap_debug(k, 0) >= 0);
    for (unsigned i = 0; i < 64; i++) {
        KT_EXPECT(t, kt_heap_holds(&h, mid[i], 0, 64 + 8 * i, 100 + i));
        KT_EXPECT_EQ(t, kmm_free(k, mid[i]), KMM_OK);
        if (i % 2 == 0) {
            KT_EXPECT(t, kt_heap_holds(&h, old[i], 0, 64 + 8 * i, i));
            KT_EXPECT_EQ(t, kmm_free(k, old[i]), KMM_OK);
        }
    }
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN) + heap_misuse(k, KMM_MISUSE_USE_AFTER_FREE),
                 0);
    KT_EXPECT_EQ(t, kmm_heap_debug(k, 0), 0);
    kt_heap_settle(&h);
    struct kmm_heap_stats after = kt_heap_stats(&h);
    KT_EXPECT_EQ(t, after.bytes_used, before.bytes_used);
    KT_EXPECT_EQ(t, after.allocs - before.allocs, after.frees - before.frees);
    KT_EXPECT_HEALTHY(t, k);
    /* Empty again: the layout modes come on now, and the objects get them. */
    KT_EXPECT_EQ(t, kmm_heap_debug(k, KMM_HEAP_DEBUG_REDZONE), 0);
    uint8_t *p = kmm_malloc(k, 60, 0);
    KT_ASSERT(t, p != NULL);
    p[60] = 0;
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 1);
    KT_EXPECT_EQ(t, kmm_heap_debug(k, 0), 0);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_debug, red_zones_for_a_cache_that_holds_objects_wait_until_it_is_empty)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, 0));
    struct kmm *k = h.f.k;
    struct kmm_cache *c = kmm_cache_create(k, "kt-busy", 100, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    void *o = kmm_cache_alloc(k, c, 0);
    KT_ASSERT(t, o != NULL);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_debug(k, c, KMM_HEAP_DEBUG_REDZONE), KMM_EBUSY,
                          KT_CLASS(KMM_MISUSE_BUSY), "kmm_cache_debug");
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, c).debug_modes, 0);
    /* Poison needs no layout: it comes on at once, and goes. */
    KT_EXPECT_EQ(t, kmm_cache_debug(k, c, KMM_HEAP_DEBUG_POISON), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, o), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_debug(k, c, KMM_HEAP_DEBUG_REDZONE | KMM_HEAP_DEBUG_POISON), KMM_OK);
    uint8_t *p = kmm_cache_alloc(k, c, 0);
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_usable_size(k, p), 112); /* an object cache's size, as laid out */
    p[112] = 0;
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, p), KMM_OK);
    KT_EXPECT_EQ(t, heap_misuse(k, KMM_MISUSE_OVERRUN), 1);
    KT_EXPECT_EQ(t, kmm_cache_debug(k, c, 0), KMM_OK);
    KT_EXPECT_EQ(t, kt_cache_stats(t, &h, c).debug_modes, 0);
    p = kmm_cache_alloc(k, c, 0); /* plain again */
    KT_ASSERT(t, p != NULL);
    KT_EXPECT_EQ(t, kmm_cache_free(k, c, p), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    kt_heap_down(&h);
}

/* --- misuse -------------------------------------------------------------------------------- */

KTEST(heap_debug, bad_switches_are_refused_counted_and_harmless)
{
    struct kt_heap h;
    KT_ASSERT(t, up(t, &h, 0));
    struct kmm *k = h.f.k;
    struct kmm_cache *c = kmm_cache_create(k, "kt-sw", 32, 0, NULL, 0);
    KT_ASSERT(t, c != NULL);
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_debug(k, NULL, KMM_HEAP_DEBUG_POISON), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_ARG), "kmm_cache_debug");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_debug(k, c, 0x1), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_FLAGS), "kmm_cache_debug");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_cache_debug(k, (struct kmm_cache *)&h, 0), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_HANDLE), "kmm_cache_debug");
    KT_EXPECT_HEAP_MISUSE(t, &h, kmm_heap_debug(k, 0x80000000u), KMM_EINVAL,
                          KT_CLASS(KMM_MISUSE_BAD_FLAGS), "kmm_heap_debug");
    KT_EXPECT_HEAP_MISUSE(t, &h,
                          KT_NULL_AS(kmm_cache_create(k, "kt", 64, 0, NULL, 0x2000), KMM_EINVAL),
                          KMM_EINVAL, KT_CLASS(KMM_MISUSE_BAD_FLAGS), "kmm_cache_create");
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}
