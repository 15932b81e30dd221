/*
 * test_heap_random.c - the heap against a shadow model: a random mix of
 * every allocation call (kmm_malloc, the zero flag, kmm_zalloc, kmm_calloc,
 * kmm_aligned_alloc, kmm_realloc, two object caches) and every free call
 * (kmm_free, kmm_free_sized, kmm_cache_free) over slots of live blocks,
 * with drains, shrinks and changes of the lending setting between. The
 * model keeps each block's size, alignment and fill pattern: every block
 * is checked when it is freed or reallocated and, every few steps, all of
 * them (blocks that overlap or move lose their pattern); the statistics
 * must agree with the model and kmm_check must pass. At the end everything
 * is freed and every page comes back.
 *
 * The same run is driven by bytes (tests/fuzz/fuzz_heap.c).
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "fuzz_input.h"
#include "heap_fixture.h"

#include <kmm/check.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vmalloc.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  ((size_t)1 << 20)

static const struct kmm_region ram32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

/* Live blocks at most: with the largest size, 64 x 256 KiB stays well
 * inside the machine, so an allocation never fails for want of memory. */
#define SLOTS       64
/* Steps between checks of every live block's pattern. */
#define SWEEP_EVERY 25

enum kind { EMPTY, BLOCK, CACHE_A, CACHE_B };

/* The two object caches: (size, alignment). */
#define A_SIZE  48
#define A_ALIGN 0
#define B_SIZE  200
#define B_ALIGN 64

struct slot {
    enum kind kind;
    void *p;
    size_t size;   /* bytes the caller asked for last: the pattern covers them */
    size_t align;  /* what the block must be aligned to */
    uint32_t seed; /* its fill pattern */
    bool sized;    /* kmm_free_sized with size is right (plain allocation, no realloc) */
};

struct run {
    struct ktest *t;
    struct kt_heap h;
    struct kt_chooser *c;
    struct kmm_cache *cache[2];
    struct slot s[SLOTS];
    unsigned live;
    uint32_t next_seed;
    int step;
};

/* A size, log-uniform: 0, 1, then [2^(b-1), 2^b) for b up to max_bits. */
static size_t pick_size(struct kt_chooser *c, unsigned max_bits)
{
    unsigned b = (unsigned)kt_choose(c, max_bits + 1);
    if (b == 0)
        return (size_t)kt_choose(c, 2);
    size_t low = (size_t)1 << (b - 1);
    return low + (size_t)kt_choose(c, low);
}

#define FAIL(r, ...) ktest_fail_at((r)->t, __FILE__, __LINE__, __VA_ARGS__)

/* Whether slot i still holds its pattern; fails the test if not. */
static bool intact(struct run *r, unsigned i)
{
    struct slot *s = &r->s[i];
    if (kt_heap_holds(&r->h, s->p, 0, s->size, s->seed))
        return true;
    FAIL(r, "step %d: slot %u (%p, %zu bytes) lost its pattern", r->step, i, s->p, s->size);
    return false;
}

/* Records block p of size bytes in slot i and fills it; checks its
 * alignment, usable size and (zeroed) contents. */
static bool got_block(struct run *r, unsigned i, enum kind kind, void *p, size_t size, size_t align,
                      bool zeroed, bool sized)
{
    if (!p) {
        FAIL(r, "step %d: an allocation of %zu bytes (align %zu) failed", r->step, size, align);
        return false;
    }
    size_t u = kmm_usable_size(r->h.f.k, p);
    if ((uintptr_t)p % align != 0 || u < size) {
        FAIL(r, "step %d: %zu bytes aligned %zu: %p, usable %zu", r->step, size, align, p, u);
        return false;
    }
    if (zeroed && !kt_heap_all(&r->h, p, 0, kind == BLOCK ? u : size, 0)) {
        FAIL(r, "step %d: a zeroed block of %zu bytes holds a non-zero byte", r->step, size);
        return false;
    }
    struct slot *s = &r->s[i];
    *s = (struct slot){kind, p, size, align, r->next_seed++, sized};
    kt_heap_fill(&r->h, p, 0, size, s->seed);
    r->live++;
    return true;
}

/* The freeing side of a step on an occupied slot. */
static bool release(struct run *r, unsigned i, unsigned how)
{
    struct slot *s = &r->s[i];
    struct kmm *k = r->h.f.k;
    if (!intact(r, i))
        return false;
    int err;
    if (s->kind != BLOCK)
        err = how % 2 ? kmm_free(k, s->p) : kmm_cache_free(k, r->cache[s->kind - CACHE_A], s->p);
    else if (how % 2 && s->sized)
        err = kmm_free_sized(k, s->p, s->size);
    else
        err = kmm_free(k, s->p);
    if (err != KMM_OK) {
        FAIL(r, "step %d: freeing slot %u (%p, %zu bytes): %s", r->step, i, s->p, s->size,
             kmm_strerror(err));
        return false;
    }
    s->kind = EMPTY;
    r->live--;
    return true;
}

static bool reallocate(struct run *r, unsigned i, unsigned max_bits)
{
    struct slot *s = &r->s[i];
    if (!intact(r, i))
        return false;
    size_t n = pick_size(r->c, max_bits);
    kmm_gfp_t f = kt_choose(r->c, 4) == 0 ? KMM_GFP_ZERO : 0;
    size_t old_usable = kmm_usable_size(r->h.f.k, s->p);
    void *q = kmm_realloc(r->h.f.k, s->p, n, f);
    if (!q) {
        FAIL(r, "step %d: realloc(%zu -> %zu) failed", r->step, s->size, n);
        return false;
    }
    size_t keep = n < s->size ? n : s->size;
    if (!kt_heap_holds(&r->h, q, 0, keep, s->seed)) {
        FAIL(r, "step %d: realloc(%zu -> %zu) lost the contents", r->step, s->size, n);
        return false;
    }
    size_t u = kmm_usable_size(r->h.f.k, q);
    if (f && u > old_usable && !kt_heap_all(&r->h, q, old_usable, u - old_usable, 0)) {
        FAIL(r, "step %d: realloc(%zu -> %zu, ZERO) left a non-zero byte", r->step, s->size, n);
        return false;
    }
    if ((uintptr_t)q % KMM_HEAP_MIN_ALIGN != 0 || u < n) {
        FAIL(r, "step %d: realloc(%zu -> %zu): %p, usable %zu", r->step, s->size, n, q, u);
        return false;
    }
    /* The kept bytes keep their pattern; the rest gets it. */
    s->p = q;
    s->align = KMM_HEAP_MIN_ALIGN;
    s->sized = false;
    if (n > s->size)
        kt_heap_fill(&r->h, q, s->size, n - s->size, s->seed);
    s->size = n;
    return true;
}

/* The allocating side of a step on an empty slot. */
static bool allocate(struct run *r, unsigned i, unsigned max_bits)
{
    struct kmm *k = r->h.f.k;
    struct kt_chooser *c = r->c;
    size_t n = pick_size(c, max_bits);
    /* Atomic requests only where they are served (no vmalloc). */
    kmm_gfp_t atomic = kt_choose(c, 8) == 0 && !kt_heap_is_vmalloc_size(n) ? KMM_GFP_ATOMIC : 0;
    switch (kt_choose(c, 9)) {
    case 0:
    case 1:
        return got_block(r, i, BLOCK, kmm_malloc(k, n, atomic), n, KMM_HEAP_MIN_ALIGN, false, true);
    case 2:
        return got_block(r, i, BLOCK, kmm_malloc(k, n, atomic | KMM_GFP_ZERO), n,
                         KMM_HEAP_MIN_ALIGN, true, true);
    case 3:
        return got_block(r, i, BLOCK, kmm_zalloc(k, n, atomic), n, KMM_HEAP_MIN_ALIGN, true, true);
    case 4: {
        size_t each = 1 + (size_t)kt_choose(c, 64);
        size_t count = n / each;
        return got_block(r, i, BLOCK, kmm_calloc(k, count, each, atomic), count * each,
                         KMM_HEAP_MIN_ALIGN, true, true);
    }
    case 5: {
        /* Above the page only for blocks of whole pages: a vmalloc'd
         * block is page aligned at most. */
        size_t align = (size_t)1 << kt_choose(c, kt_heap_is_vmalloc_size(n) ? 13 : 17);
        void *p = kmm_aligned_alloc(k, align, n, atomic);
        return got_block(r, i, BLOCK, p, n, align < KMM_HEAP_MIN_ALIGN ? KMM_HEAP_MIN_ALIGN : align,
                         false, false);
    }
    case 6:
        return got_block(r, i, BLOCK, kmm_realloc(k, NULL, n, 0), n, KMM_HEAP_MIN_ALIGN, false,
                         false);
    case 7: {
        kmm_gfp_t f = kt_choose(c, 3) == 0 ? KMM_GFP_ZERO : 0;
        return got_block(r, i, CACHE_A, kmm_cache_alloc(k, r->cache[0], f | atomic), A_SIZE,
                         KMM_HEAP_MIN_ALIGN, f != 0, false);
    }
    default: {
        kmm_gfp_t f = kt_choose(c, 3) == 0 ? KMM_GFP_ZERO : 0;
        return got_block(r, i, CACHE_B, kmm_cache_alloc(k, r->cache[1], f | atomic), B_SIZE,
                         B_ALIGN, f != 0, false);
    }
    }
}

/*
 * The figures agree with the model: live objects of every cache plus live
 * large blocks are the model's live blocks, and the bytes in use are those
 * of the objects (as laid out) plus the large blocks'.
 */
static bool figures_agree(struct run *r)
{
    struct kmm_heap_stats hs = kt_heap_stats(&r->h);
    uint64_t objects = 0, object_bytes = 0;
    /* The size classes (the first caches listed once all are made) and the
     * run's two caches: the blocks of the model. */
    for (unsigned i = 0; i < KT_HEAP_CLASSES + 2; i++) {
        struct kmm_cache *c =
            i < KT_HEAP_CLASSES ? kmm_heap_cache_at(r->h.f.k, i) : r->cache[i - KT_HEAP_CLASSES];
        struct kmm_cache_stats cs = kt_cache_stats(r->t, &r->h, c);
        objects += cs.active_objects;
        object_bytes += cs.active_objects * cs.object_size;
        if (cs.total_objects != (uint64_t)cs.objects_per_slab * cs.total_slabs ||
            cs.active_objects + cs.cpu_cached > cs.total_objects) {
            FAIL(r, "step %d: cache %s: %llu objects in %llu slabs of %u, %llu active, %llu cached",
                 r->step, cs.name, (unsigned long long)cs.total_objects,
                 (unsigned long long)cs.total_slabs, cs.objects_per_slab,
                 (unsigned long long)cs.active_objects, (unsigned long long)cs.cpu_cached);
            return false;
        }
    }
    if (objects + hs.large_blocks != r->live || object_bytes + hs.large_bytes != hs.bytes_used ||
        hs.bytes_held != hs.bytes_used + hs.bytes_free) {
        FAIL(r,
             "step %d: %u live, the figures say %llu objects + %llu large; used %llu, objects "
             "%llu + large %llu",
             r->step, r->live, (unsigned long long)objects, (unsigned long long)hs.large_blocks,
             (unsigned long long)hs.bytes_used, (unsigned long long)object_bytes,
             (unsigned long long)hs.large_bytes);
        return false;
    }
    return true;
}

/* One step: pick a slot; free, reallocate or check what it holds, or fill
 * it; now and then drain this CPU or shrink a cache. */
static bool step(struct run *r, unsigned max_bits)
{
    struct kt_chooser *c = r->c;
    unsigned i = (unsigned)kt_choose(c, SLOTS);
    unsigned op = (unsigned)kt_choose(c, 16);
    if (op == 15) {
        unsigned what = (unsigned)kt_choose(c, 4);
        if (what == 0)
            kmm_heap_drain_cpu(r->h.f.k);
        else if (what == 1) {
            /* Blocks lent under the old setting stay sized-freeable. */
            unsigned lend = (unsigned)kt_choose(c, KMM_HEAP_LEND_MAX + 1);
            if (kmm_heap_set_lend(r->h.f.k, lend) != KMM_OK) {
                FAIL(r, "step %d: kmm_heap_set_lend(%u) refused", r->step, lend);
                return false;
            }
        } else {
            unsigned ci = (unsigned)kt_choose(c, KT_HEAP_CLASSES + 2);
            kmm_cache_shrink(r->h.f.k, kmm_heap_cache_at(r->h.f.k, ci));
        }
        return true;
    }
    struct slot *s = &r->s[i];
    if (s->kind == EMPTY)
        return allocate(r, i, max_bits);
    if (op < 4 && s->kind == BLOCK)
        return reallocate(r, i, max_bits);
    if (op < 6)
        return intact(r, i) && kmm_usable_size(r->h.f.k, s->p) >= s->size;
    return release(r, i, op);
}

/*
 * run_random - steps operations from c (or until its bytes end) on a fresh
 * instance; kmm_check every check_every steps, every live block's pattern
 * every SWEEP_EVERY steps, the figures after every step. Sizes
 * reach beyond KMM_HEAP_PAGES_MAX only where the window is live (the
 * library then copies and zeroes vmalloc'd blocks the test can see).
 */
static void run_random(struct ktest *t, struct kt_chooser *c, int steps, int check_every)
{
    static struct run r; /* too large for a kernel stack */
    r = (struct run){.t = t, .c = c, .next_seed = 1};
    if (!kt_heap_up(t, &r.h, ram32, N(ram32), 1))
        return;
    kt_heap_warm(t, &r.h);
    struct kmm_page_stats p0;
    kmm_page_stats(r.h.f.k, &p0);
    struct kmm_heap_stats s0 = kt_heap_stats(&r.h);
    r.cache[0] = kmm_cache_create(r.h.f.k, "kt-random-a", A_SIZE, A_ALIGN, NULL, 0);
    r.cache[1] = kmm_cache_create(r.h.f.k, "kt-random-b", B_SIZE, B_ALIGN, NULL, 0);
    KT_ASSERT(t, r.cache[0] && r.cache[1]);
    unsigned max_bits = r.h.live ? 18 : 17; /* 256 KiB, or 128 KiB at most */
    for (r.step = 0; r.step < steps && !c->ended; r.step++) {
        if (!step(&r, max_bits) || !figures_agree(&r))
            break;
        if (r.step % check_every == 0)
            KT_EXPECT_HEALTHY(t, r.h.f.k);
        /* Every block is checked whenever the run touches it; all of them
         * (a write that strayed into an untouched one) now and then. */
        if (r.step % SWEEP_EVERY == 0)
            for (unsigned i = 0; i < SLOTS; i++)
                if (r.s[i].kind != EMPTY && !intact(&r, i))
                    break;
        if (ktest_failed(t))
            break;
    }
    ktest_diag(t, "%d steps, %u blocks live at the end", r.step, r.live);
    KT_EXPECT_HEALTHY(t, r.h.f.k);
    if (ktest_failed(t)) {
        kt_heap_down(&r.h);
        return;
    }
    for (unsigned i = 0; i < SLOTS; i++)
        if (r.s[i].kind != EMPTY)
            KT_ASSERT(t, release(&r, i, 0));
    KT_EXPECT_EQ(t, kmm_cache_destroy(r.h.f.k, r.cache[0]), KMM_OK);
    KT_EXPECT_EQ(t, kmm_cache_destroy(r.h.f.k, r.cache[1]), KMM_OK);
    kt_heap_settle(&r.h);
    struct kmm_page_stats p1;
    kmm_page_stats(r.h.f.k, &p1);
    struct kmm_heap_stats s1 = kt_heap_stats(&r.h);
    KT_EXPECT(t, kt_same_buddyinfo(&p0, &p1));
    KT_EXPECT_EQ(t, p1.allocated_pages, p0.allocated_pages);
    KT_EXPECT_EQ(t, s1.bytes_held, s0.bytes_held);
    KT_EXPECT_EQ(t, s1.bytes_used, s0.bytes_used);
    KT_EXPECT_EQ(t, s1.large_blocks, 0);
    KT_EXPECT_EQ(t, s1.allocs - s0.allocs, s1.frees - s0.frees);
    KT_EXPECT_EQ(t, s1.misuse, 0);
    KT_EXPECT_EQ(t, s1.failed, s0.failed);
    KT_EXPECT_HEALTHY(t, r.h.f.k);
    kt_heap_down(&r.h);
}

KTEST(heap_random, a_long_random_mix_matches_the_shadow_model)
{
    struct kt_chooser c = {.seed = 0x4ea9};
    run_random(t, &c, 6000, 50);
}

KTEST(heap_random, a_random_mix_checked_after_every_step_matches_the_shadow_model)
{
    struct kt_chooser c = {.seed = 0x51ab};
    run_random(t, &c, 400, 1);
}

/* The same driven by bytes: a fuzzer's input (tests/fuzz/fuzz_heap.c), or a
 * fixed one; kmm_check every FUZZ_CHECK_EVERY steps (its walk of every
 * frame and table would otherwise be most of a fuzzer's time). */
#define FUZZ_CHECK_EVERY 4
KTEST(heap_random, a_random_mix_driven_by_bytes_matches_the_shadow_model)
{
    static uint8_t fixed[2048];
    struct kt_chooser c = kt_fuzz_chooser(fixed, sizeof(fixed), 0xf022);
    run_random(t, &c, 1 << 20, FUZZ_CHECK_EVERY);
}
