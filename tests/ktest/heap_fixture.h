/*
 * heap_fixture.h - what the heap's test suites share (tests/test_heap*.c,
 * tests/hosted/test_heap_threads.c): an instance whose kernel virtual area
 * window is live where the world has one, access to any heap block's bytes
 * in both worlds, heap.h's size classes computed independently of the
 * library, fill patterns, and the checks SPEC §9 asks of a rejected heap
 * call.
 *
 * Blocks of a size class or of whole pages lie in the direct map and are
 * usable at their addresses in both worlds. Blocks beyond KMM_HEAP_PAGES_MAX
 * are vmalloc'd: hosted, the window is the port's mirror window and they are
 * usable at their addresses too; in the kernel a test machine's tables are
 * never live, and kt_heap_at reaches their bytes through kmm_vm_translate.
 */
#ifndef KTEST_HEAP_FIXTURE_H
#define KTEST_HEAP_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>

#include "fixture.h"
#include "ktest.h"

#define KT_PAGE         ((size_t)4096)
/* How many size classes heap.h lists: multiples of 16 up to 128, then eight
 * per power of two up to KMM_HEAP_SLAB_MAX (144 .. 256, ..., 4608 .. 8192). */
#define KT_HEAP_CLASSES 56u

struct kt_heap {
    struct kt_kmm f;
    uint64_t window_base, window_size; /* the kernel virtual area window */
    bool live;                         /* vmalloc'd blocks are usable at their addresses (hosted) */
};

/*
 * kt_heap_up - an instance on the machine map[0..n) with cpus CPUs, its
 * window the live (mirror) window where the world has one, else the
 * default window; this CPU's page cache drained. As kt_kmm_up: false when
 * the test is skipped or failed, with nothing to tear down.
 */
bool kt_heap_up(struct ktest *t, struct kt_heap *h, const struct kmm_region *map, size_t n,
                unsigned cpus);
void kt_heap_down(struct kt_heap *h);

/* The size class heap.h gives a request of n bytes (1 .. KMM_HEAP_SLAB_MAX;
 * 0 counts as 1), and the i-th class (i < KT_HEAP_CLASSES). */
size_t kt_heap_class_of(size_t n);
size_t kt_heap_class_at(unsigned i);
/* The bytes of a whole-page block for a request of n bytes
 * (KMM_HEAP_SLAB_MAX < n <= KMM_HEAP_PAGES_MAX): a power-of-two page count. */
size_t kt_heap_pages_of(size_t n);
/* Whether a request of n bytes is served by vmalloc. */
bool kt_heap_is_vmalloc_size(size_t n);

/*
 * kt_heap_at - where the test reads and writes byte off of the block at p,
 * and through *run how many bytes from there are contiguous at that
 * address (up to the end of a page of a vmalloc'd block in the kernel; all
 * the rest otherwise). NULL if a vmalloc'd page is not mapped.
 */
uint8_t *kt_heap_at(struct kt_heap *h, const void *p, size_t off, size_t *run);

/* The pattern byte off of a block filled with seed: no two nearby bytes and
 * no two seeds alike, so a block that overlaps another or moved in part
 * shows it. */
static inline uint8_t kt_heap_pattern(uint32_t seed, size_t off)
{
    uint32_t v = seed * 0x9e3779b1u + (uint32_t)off * 0x85ebca6bu;
    return (uint8_t)(v ^ (v >> 13) ^ (uint32_t)(off >> 8));
}
/* Fill bytes [off, off + len) of block p with seed's pattern; check them;
 * check they are all `byte`. */
void kt_heap_fill(struct kt_heap *h, const void *p, size_t off, size_t len, uint32_t seed);
bool kt_heap_holds(struct kt_heap *h, const void *p, size_t off, size_t len, uint32_t seed);
bool kt_heap_all(struct kt_heap *h, const void *p, size_t off, size_t len, uint8_t byte);

/* kmm_heap_stats and kmm_cache_stats as values. */
struct kmm_heap_stats kt_heap_stats(struct kt_heap *h);
struct kmm_cache_stats kt_cache_stats(struct ktest *t, struct kt_heap *h,
                                      const struct kmm_cache *c);
/* The size-class cache whose objects are `size` bytes, or NULL. */
struct kmm_cache *kt_heap_class_cache(struct kt_heap *h, size_t size);

/*
 * kt_heap_settle - a quiet point: this CPU's heap objects back to their
 * slabs, every cache shrunk, this CPU's page cache drained, pass after pass
 * (at most KT_HEAP_SETTLE_PASSES) until no more pages come back. Returns
 * the pages the shrinks said they gave back. What the heap still holds
 * then is what it keeps for itself.
 */
#define KT_HEAP_SETTLE_PASSES 4
size_t kt_heap_settle(struct kt_heap *h);

/* kt_heap_warm - allocates and frees a block of every size class and of
 * each kind of large block, then settles: whatever the heap sets up lazily
 * on first use is then in place, so later figures compare like with like. */
void kt_heap_warm(struct ktest *t, struct kt_heap *h);

/* Everything a rejected call must leave as it was. */
struct kt_heap_snap {
    struct kmm_page_stats page;
    struct kmm_heap_stats heap;
    struct kmm_misuse_stats misuse;
    unsigned long err_lines;
};
void kt_heap_snap(struct kt_heap *h, struct kt_heap_snap *s);

/* One acceptable outcome of a rejected call: its error value and the
 * misuse classes (a mask of 1 << KMM_MISUSE_*) it may be counted under. */
struct kt_heap_verdict {
    int err;
    unsigned classes;
};
#define KT_CLASS(c) (1u << (c))

/*
 * kt_expect_heap_misuse_at - the checks SPEC §9 asks of a rejected heap
 * call, against *before: it returned the error of one of the n verdicts;
 * exactly one misuse cell moved, by one, in the heap's row and in a class
 * that verdict allows; kmm_heap_stats counted it (misuse + 1) and nothing
 * else moved (blocks, bytes, calls); the page allocator's free lists are as
 * they were; exactly one error line, containing needle and the caller;
 * kmm_check clean. `what` names the case in failure messages.
 */
void kt_expect_heap_misuse_at(struct ktest *t, struct kt_heap *h, const struct kt_heap_snap *before,
                              int got, const struct kt_heap_verdict *v, size_t n, const char *what,
                              const char *needle, const char *file, int line);

/* Runs call (an int expression) and checks it rejected as above, with the
 * one verdict {err, classes}. */
#define KT_EXPECT_HEAP_MISUSE(t, h, call, err, classes, needle)                                    \
    do {                                                                                           \
        struct kt_heap_snap snap_;                                                                 \
        kt_heap_snap((h), &snap_);                                                                 \
        int got_ = (call);                                                                         \
        const struct kt_heap_verdict v_ = {(err), (classes)};                                      \
        kt_expect_heap_misuse_at((t), (h), &snap_, got_, &v_, 1, #call, (needle), __FILE__,        \
                                 __LINE__);                                                        \
    } while (0)

/* A pointer result as an error value for the checks above: KMM_OK if the
 * call returned a block (it should not have), else err. */
#define KT_NULL_AS(p, err) ((p) ? KMM_OK : (err))

#endif /* KTEST_HEAP_FIXTURE_H */
