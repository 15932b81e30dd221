/*
 * kmm/heap.h - the kernel heap: kmalloc-style blocks of any size and
 * object caches, over the page allocator and kernel virtual areas.
 *
 * Where a block comes from (kmm_malloc picks; one free call takes any):
 *
 *   size 1 .. KMM_HEAP_SLAB_MAX (8 KiB)   a size class, served by slabs:
 *       multiples of 16 up to 128 bytes, then eight classes per power of
 *       two (144, 160, ..., 256, 288, ...), so a request above 128 bytes
 *       loses less than 12.5 % to rounding. Objects carry no header: the
 *       frame database names each slab's cache.
 *   up to KMM_HEAP_PAGES_MAX (128 KiB)     whole pages from the page
 *       allocator, a power-of-two count, physically contiguous.
 *   beyond                                  kernel virtual areas (vmalloc):
 *       scattered pages behind a guard page. Not with KMM_GFP_ATOMIC: an
 *       atomic request this large fails.
 *
 * Every block is aligned to at least KMM_HEAP_MIN_ALIGN (16) bytes; a block
 * of a power-of-two size class is aligned to its size up to the page size,
 * and so is every block for a request of a power-of-two size (as Linux
 * promises of kmalloc), lent or not (kmm_malloc).
 *
 * Calling context. Without KMM_GFP_ATOMIC an allocation may run the
 * page allocator's reclaim hooks (shrinkers) and may take kernel virtual
 * areas: call it where the kernel may block. With KMM_GFP_ATOMIC it never
 * reclaims and never uses vmalloc: any context, IRQs off or an interrupt
 * handler included. Frees (kmm_free, kmm_cache_free) never block and run in
 * any context, except the free of a vmalloc'd block, which takes the kernel
 * space's locks and must not run in an interrupt handler.
 *
 * Per-CPU caches. Each cache keeps a small stack of free objects per CPU;
 * the common allocation and free touch only the calling CPU's stack, with
 * IRQs and preemption off for a few instructions, no shared lock and no
 * atomic read-modify-write. An object may be freed on any CPU. A CPU's
 * stacks are bounded (KMM_HEAP_MAG_SIZE objects per cache, fewer for large
 * objects); beyond a stack, batches go to the cache's depot of full
 * magazines (bounded per cache, and KMM_HEAP_DEPOT_MAX bytes for all
 * depots together) and from there to the slabs. They go back to the
 * slabs when the page allocator runs short (the heap is a reclaim hook), on
 * kmm_cache_shrink and kmm_heap_shrink (the calling CPU's), and on
 * kmm_heap_drain_cpu.
 *
 * Always on (no debugging switch needed), each a clear error, counted in
 * kmm_misuse_stats (layer KMM_LAYER_HEAP) and logged once with the caller:
 *   - a free of a pointer the heap did not hand out, of one inside a block
 *     rather than at its start, or of another cache's object (the frame
 *     database checks every hop from pointer to cache);
 *   - a second free of a block that is still free (a tag written into each
 *     free object, checked on free and cleared on allocation). Two CPUs
 *     freeing one object at the same instant may both be told KMM_OK: the
 *     tag is checked and written without an atomic read-modify-write, which
 *     the common free does not pay. The second copy is caught where it
 *     meets the first: on an allocation (its tag is gone) or back at its
 *     slab (which marks each object out or back), logged, and dropped: a
 *     slab's free list never holds an object twice;
 *   - a sized free (kmm_free_sized) whose size belongs to another class;
 *   - slab free lists store their pointers encoded (XORed with a per-cache
 *     secret and the address they are stored at, as Linux's
 *     SLAB_FREELIST_HARDENED): a stray write turns into a detected
 *     corruption, not a pointer an attacker chose.
 * The costs are measured in docs/performance.md (H1, H2).
 */
#ifndef KMM_HEAP_H
#define KMM_HEAP_H

#include <kmm/page.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest block served by a size class, and by whole pages. */
#define KMM_HEAP_SLAB_MAX     ((size_t)8192)
#define KMM_HEAP_PAGES_MAX    ((size_t)128 << 10)
/* Every block's alignment, at least. */
#define KMM_HEAP_MIN_ALIGN    ((size_t)16)
/* Objects a CPU keeps per cache, at most (the upper bound of its stack),
 * and their bytes, at most, unless that is fewer than 4 objects. */
#define KMM_HEAP_MAG_SIZE     128u
#define KMM_HEAP_STACK_BYTES  ((size_t)32 << 10)
/* Bytes of free objects all caches' depots together keep, at most (beyond
 * the CPUs' stacks): what the per-CPU caching holds back from other sizes. */
#define KMM_HEAP_DEPOT_MAX    ((size_t)128 << 10)
/* How many larger size classes may lend a free object to a class that
 * has none, before it grows (kmm_malloc, kmm_heap_set_lend): by default
 * (eight: a power of two, so a lent block is at most about twice its
 * request's size), and at most. */
#define KMM_HEAP_LEND_DEFAULT 8u
#define KMM_HEAP_LEND_MAX     16u
/* The largest request kmm_malloc accepts: beyond it, NULL at once. */
#define KMM_HEAP_SIZE_MAX     ((size_t)1 << 40)

/* The largest alignment kmm_aligned_alloc honours. */
#define KMM_HEAP_ALIGN_MAX ((size_t)4 << 20)

/* Flags of kmm_malloc and friends: KMM_GFP_ZERO and KMM_GFP_ATOMIC
 * (kmm/page.h). DMA zones are the page allocator's business. */
#define KMM_HEAP_GFP_VALID (KMM_GFP_ZERO | KMM_GFP_ATOMIC)

/*
 * kmm_malloc - a block of at least size bytes, 16-byte aligned. Returns
 * NULL, with nothing changed, if memory (or the heap's limit) runs out, if
 * size exceeds KMM_HEAP_SIZE_MAX, or if flags are invalid (a misuse).
 * size 0 returns a unique 16-byte block, so that a caller can free it like
 * any other. The block is of size's class (kmm_usable_size: less than
 * 12.5 % more above 128 bytes), or, when that class has no free object
 * and would otherwise grow, a free object of one of the next classes
 * (kmm_heap_set_lend: eight by default) that holds memory idle (at least
 * a slab's worth of free objects in its slabs, or more than half a stack
 * of them on this CPU): memory one class no longer needs then serves its
 * neighbours instead of lying idle. O(1) from the CPU's
 * cache; a refill or growth takes the cache's lock and may call the page
 * allocator.
 */
void *kmm_malloc(struct kmm *k, size_t size, kmm_gfp_t flags);

/* kmm_zalloc - kmm_malloc with KMM_GFP_ZERO: the block's usable bytes are
 * zero. */
void *kmm_zalloc(struct kmm *k, size_t size, kmm_gfp_t flags);

/* kmm_calloc - a zeroed array of n elements of size bytes. NULL if n * size
 * overflows (nothing is allocated), else as kmm_zalloc. */
void *kmm_calloc(struct kmm *k, size_t n, size_t size, kmm_gfp_t flags);

/*
 * kmm_aligned_alloc - a block of at least size bytes aligned to align, a
 * power of two from 1 to KMM_HEAP_ALIGN_MAX (4 MiB, the page allocator's
 * largest block). Up to the page size the block comes from the size class
 * of max(size, align) rounded to align, which is aligned to align; beyond
 * it, from a block of whole pages of max(size, align) bytes rounded to a
 * power of two (aligned to its size), up to KMM_HEAP_ALIGN_MAX. A larger
 * block with align up to the page size comes from vmalloc as kmm_malloc's
 * do. NULL, nothing changed, if size exceeds KMM_HEAP_SIZE_MAX or memory
 * runs out; NULL and a misuse (counted) if align is not a power of two up
 * to KMM_HEAP_ALIGN_MAX, is above the page size for a block larger than
 * KMM_HEAP_ALIGN_MAX, or is above the alignment of the direct map's base
 * (whole pages are aligned physically; a kernel's direct map is aligned to
 * 1 GiB or more). Freed with kmm_free.
 */
void *kmm_aligned_alloc(struct kmm *k, size_t align, size_t size, kmm_gfp_t flags);

/*
 * kmm_realloc - resizes block p to size bytes, keeping the contents up to
 * the smaller size. In place (p returned) when kmm_free_sized would
 * accept size for p: size is of p's size class, or of one it may have been
 * lent to (p's power of two of whole pages, p's vmalloc'd pages; for a cache
 * object, at most its size), so that a sized free with the new size
 * matches; else a new block, the contents copied, p freed. kmm_realloc(k, NULL, n, f) is
 * kmm_malloc; a size of 0 frees p and returns a unique 16-byte block as
 * kmm_malloc(k, 0) does. On failure NULL and p untouched (still allocated,
 * contents intact); with KMM_GFP_ATOMIC, a vmalloc'd block that would
 * have to move also fails so (its free is not for atomic context). A p
 * that is no live block is a misuse: NULL, counted.
 * KMM_GFP_ZERO zeroes the bytes beyond the old usable size.
 */
void *kmm_realloc(struct kmm *k, void *p, size_t size, kmm_gfp_t flags);

/*
 * kmm_free - frees a block of kmm_malloc, kmm_zalloc, kmm_calloc,
 * kmm_aligned_alloc or kmm_realloc, or an object of any cache. NULL is
 * ignored (KMM_OK). Returns KMM_OK, or, with nothing changed and the
 * misuse counted and logged:
 *   KMM_EINVAL  p is not the start of a live heap block (a foreign or
 *               interior pointer);
 *   KMM_ESTATE  p is already free (a double free).
 * O(1) for a slab object (the CPU's cache; a full cache moves a batch back
 * under the cache's lock); a vmalloc'd block takes the window's lock.
 */
int kmm_free(struct kmm *k, const void *p);

/* kmm_free_caller - kmm_free for a wrapper (a malloc, a compatibility
 * layer): a rejection is logged with caller, the wrapper's own caller,
 * instead of the wrapper. */
int kmm_free_caller(struct kmm *k, const void *p, const void *caller);

/* kmm_malloc_caller, kmm_aligned_alloc_caller, kmm_realloc_caller - the
 * same for the allocations: caller, the wrapper's own caller, is the one a
 * rejection is logged with and the one allocation tracking
 * (KMM_HEAP_DEBUG_TRACK) records, so that a leak report names the
 * wrapper's callers. kmm_malloc_caller skips kmm_malloc's inline path (a
 * call more per allocation): for wrappers that track, not for hot paths. */
void *kmm_malloc_caller(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller);
void *kmm_aligned_alloc_caller(struct kmm *k, size_t align, size_t size, kmm_gfp_t flags,
                               const void *caller);
void *kmm_realloc_caller(struct kmm *k, void *p, size_t size, kmm_gfp_t flags, const void *caller);

/*
 * kmm_free_sized - kmm_free of a block the caller believes to be size bytes
 * long (as C++'s sized delete). Also KMM_EINVAL (nothing freed, counted as
 * KMM_MISUSE_WRONG_ORDER) if size could not have produced p: it must be at
 * most p's usable size and in p's size class, or in one of the classes
 * below it that p's class may have lent to (as many as kmm_heap_set_lend
 * ever allowed: eight by default; set 0 at once for an exact check) (for
 * whole pages: round to the same power of two of pages; for a vmalloc'd
 * block: to the same pages). For a cache object,
 * size must be at most the object size. A block of kmm_aligned_alloc is
 * freed with kmm_free: its size class is its alignment's as much as its
 * size's.
 */
int kmm_free_sized(struct kmm *k, const void *p, size_t size);

/* kmm_usable_size - the bytes of live block p the caller may use (at
 * least what it asked for); 0 for NULL, and 0 (a misuse, counted) for a
 * pointer that is no live block. */
size_t kmm_usable_size(struct kmm *k, const void *p);

/* --- object caches ---------------------------------------------------------------- */

struct kmm_cache;

/* A constructor, run on each object when its slab is created (not on each
 * allocation): objects come back to kmm_cache_free in their constructed
 * state, as Bonwick's object caches promise. */
typedef void (*kmm_ctor_t)(void *obj);

/* The longest cache name kept, with its terminating NUL. */
#define KMM_CACHE_NAME_MAX 24

/*
 * kmm_cache_create - a cache of objects of size bytes (1 .. KMM_HEAP_SLAB_MAX),
 * aligned to align (0 for KMM_HEAP_MIN_ALIGN; a power of two up to the page
 * size), each constructed by ctor (may be NULL) when its slab is made.
 * name is copied (truncated to KMM_CACHE_NAME_MAX - 1 characters) and shown
 * in the report. flags: 0, or debugging modes (KMM_HEAP_DEBUG_*) the cache
 * starts with, its layout included (kmm_cache_debug). Returns NULL with nothing changed if
 * an argument is bad (a misuse) or no memory or no cache slot is left (at
 * most KMM_HEAP_OBJECT_CACHES live at once). May block.
 */
/* Cache slots: the KMM_HEAP_CLASSES size classes, two of the heap's own
 * (slab records, magazines), slot 0 unused, the rest for object caches. */
#define KMM_HEAP_CACHES        256u
#define KMM_HEAP_CLASSES       56u
#define KMM_HEAP_OBJECT_CACHES (KMM_HEAP_CACHES - KMM_HEAP_CLASSES - 3u)
struct kmm_cache *kmm_cache_create(struct kmm *k, const char *name, size_t size, size_t align,
                                   kmm_ctor_t ctor, unsigned flags);

/* kmm_cache_alloc - an object of cache c (constructed if c has a
 * constructor; zeroed if flags has KMM_GFP_ZERO, which a cache with a
 * constructor refuses). NULL if memory runs out or c is no live cache (a
 * misuse). Context as kmm_malloc. */
void *kmm_cache_alloc(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags);

/* kmm_cache_free - frees object p of cache c. As kmm_free, and KMM_EINVAL
 * if p belongs to another cache (nothing freed). NULL is ignored. */
int kmm_cache_free(struct kmm *k, struct kmm_cache *c, const void *p);

/* kmm_cache_shrink - gives every empty slab of c back to the page allocator,
 * after moving this CPU's cached objects back (other CPUs keep theirs until
 * they drain). Returns the pages given back. May block. */
size_t kmm_cache_shrink(struct kmm *k, struct kmm_cache *c);

/*
 * kmm_cache_destroy - destroys cache c and gives its memory back. Refuses
 * with KMM_EBUSY (nothing changed; the log says how many objects are live)
 * while objects are live. The calling CPU's stack and the depot are
 * emptied first; objects other CPUs' stacks still hold count as live until
 * those CPUs drain (kmm_heap_drain_cpu, kmm_heap_drain_offline_cpu): their
 * stacks are theirs alone. KMM_EINVAL for NULL (KMM_MISUSE_BAD_ARG), a
 * size-class cache, or a cache that is no live cache of k (BAD_HANDLE).
 * c must not be used afterwards. May block: c's memory goes back once no
 * other CPU is inside it (a kmm_heap_shrink, which the reclaim hook runs
 * on any CPU, a drain, the figures, kmm_check).
 */
int kmm_cache_destroy(struct kmm *k, struct kmm_cache *c);

/* --- CPUs and limits ------------------------------------------------------------------ */

/* kmm_heap_drain_cpu - moves every object the calling CPU caches back to
 * its slab, and clears a pending drain request. Any context where the CPU
 * may take a cache lock. */
void kmm_heap_drain_cpu(struct kmm *k);

/* kmm_heap_drain_pending - whether another CPU's kmm_heap_shrink asked the
 * calling CPU to drain its stacks. The heap honours the request at this
 * CPU's next refill or flush of a stack; a host whose CPUs may stay away
 * from the heap for long (idle, offline) calls kmm_heap_drain_cpu from its
 * IPI or idle path when this says so. Any context; O(1). */
bool kmm_heap_drain_pending(struct kmm *k);

/* kmm_heap_shrink - gives back every page the heap holds without a live
 * object in it: the quarantine (KMM_HEAP_DEBUG_QUARANTINE), the calling
 * CPU's stacks and every depot are emptied into the slabs, then every empty slab of every cache
 * (the heap's own included) goes back to the page allocator, and every other CPU is asked to drain
 * its stacks (kmm_heap_drain_pending). Returns the pages given back. What the heap's reclaim hook
 * does when memory runs short. May block. */
size_t kmm_heap_shrink(struct kmm *k);

/* kmm_heap_drain_offline_cpu - the same for cpu, which must be offline
 * (not running kmm code). KMM_EINVAL (counted) if cpu is out of range. */
int kmm_heap_drain_offline_cpu(struct kmm *k, unsigned cpu);

/* kmm_heap_set_limit - caps the bytes the heap may hold from the page
 * allocator and vmalloc (0: no cap). Growth that would pass it fails
 * cleanly (NULL); memory held beyond a lowered cap stays until freed.
 * Returns the previous cap. */
uint64_t kmm_heap_set_limit(struct kmm *k, uint64_t bytes);

/*
 * kmm_heap_set_lend - how many larger size classes may lend a free object
 * to a request whose class has none, before that class grows (kmm_malloc):
 * 0 .. KMM_HEAP_LEND_MAX, KMM_HEAP_LEND_DEFAULT (8) from kmm_init. 0
 * turns lending off: every block is then of its request's class, at the
 * cost of memory a class holds free while its neighbours grow
 * (docs/performance.md, "Lending": H2 takes 1.36 times its live bytes
 * without, 1.25 with eight). Returns KMM_OK, or KMM_EINVAL (a misuse,
 * counted) above KMM_HEAP_LEND_MAX, nothing changed. Any context.
 */
int kmm_heap_set_lend(struct kmm *k, unsigned classes);

/* --- statistics ------------------------------------------------------------------------ */

/* One cache, as a line of /proc/slabinfo. Objects in CPU caches count as
 * free (not active). */
struct kmm_cache_stats {
    char name[KMM_CACHE_NAME_MAX];
    uint32_t object_size; /* bytes per object, as laid out */
    uint32_t objects_per_slab;
    uint32_t pages_per_slab;
    uint32_t debug_modes;    /* KMM_HEAP_DEBUG_* in force (kmm_cache_debug, kmm_heap_debug) */
    uint64_t active_objects; /* allocated, not in any free list or CPU cache */
    uint64_t total_objects;  /* in all slabs */
    uint64_t active_slabs;   /* slabs with at least one object allocated or cached */
    uint64_t total_slabs;
    uint64_t cpu_cached;    /* free objects in CPU caches and the depot */
    uint64_t allocs, frees; /* calls that succeeded */
    uint64_t lent;          /* of allocs: objects lent to smaller classes' requests */
};

/* The whole heap. Bytes are as laid out (size classes, whole pages). */
struct kmm_heap_stats {
    uint64_t bytes_held;                /* from the page allocator and vmalloc, now (the
                                           caches' own structures and CPU stacks too) */
    uint64_t bytes_peak;                /* the most ever held */
    uint64_t bytes_used;                /* in allocated blocks */
    uint64_t bytes_free;                /* held but not in allocated blocks */
    uint64_t limit;                     /* kmm_heap_set_limit; 0: none */
    uint64_t allocs, frees;             /* successful calls */
    uint64_t alloc_bytes, free_bytes;   /* their block sizes summed */
    uint64_t failed;                    /* allocations that returned NULL for want of memory */
    uint64_t large_blocks, large_bytes; /* live blocks of whole pages or vmalloc */
    uint64_t misuse;                    /* rejected calls (kmm_misuse_stats has them by class) */
    unsigned caches;                    /* live size classes and object caches */
};

/* kmm_heap_stats - fills *out. Any context; figures racing with
 * allocations may be from slightly different moments. */
void kmm_heap_stats(struct kmm *k, struct kmm_heap_stats *out);

/* kmm_cache_stats - the figures of cache c; KMM_EINVAL if c is no live
 * cache of k. */
int kmm_cache_stats(struct kmm *k, const struct kmm_cache *c, struct kmm_cache_stats *out);

/* kmm_heap_cache_at - the i-th live cache (size classes first, then object
 * caches in slot order: a new cache may take the slot of a destroyed one),
 * to list them all; NULL past the last. The heap's own caches are not
 * listed (the report shows them). */
struct kmm_cache *kmm_heap_cache_at(struct kmm *k, unsigned i);

/* --- debugging ------------------------------------------------------------------------ */

/*
 * Debugging modes, switched at run time for one cache (kmm_cache_debug, or
 * kmm_cache_create's flags) or for the whole heap (kmm_heap_debug: every
 * size class and object cache, and those made later). A cache's modes are
 * its own or-ed with the heap's. Never for the heap's own caches.
 *
 * Off, they cost nothing: the inline paths of kmm_malloc, kmm_free and the
 * cache calls are unchanged. A cache with any mode on gives up its CPU
 * stacks: their bound drops to 0 and this CPU's stack and the cache's depot
 * are emptied, so that each of its allocations and frees takes the cache's
 * lock and the checking path (the figures: docs/performance.md). Objects
 * other CPUs' stacks still hold are handed out by those CPUs unchecked
 * until their stacks run dry (at most KMM_HEAP_MAG_SIZE each). Switching a
 * cache's last mode off gives the stacks back.
 *
 *   KMM_HEAP_DEBUG_REDZONE     red zones: the bytes after the size asked for
 *       (the class's rounding slack and at least KMM_HEAP_REDZONE_MIN more)
 *       and, for objects aligned to at most 64 bytes, 16 to 64 bytes before
 *       the object hold KMM_HEAP_REDZONE_BYTE; checked on every free and by
 *       kmm_check. kmm_usable_size is then the size asked for.
 *   KMM_HEAP_DEBUG_TRACK       allocation tracking: each live object's
 *       allocation caller, size and generation (kmm_heap_mark), for
 *       kmm_heap_leaks; each free object's last free caller, for reports.
 *   KMM_HEAP_DEBUG_POISON      a freed object is filled with
 *       KMM_HEAP_POISON_BYTE (but for the 16 bytes that hold the free list,
 *       and 8 more that keep its last free caller in an object of 32 bytes
 *       or more without TRACK) and checked when it is handed out again and
 *       by kmm_check. Never for a cache with a constructor: its free objects
 *       keep their constructed state.
 *   KMM_HEAP_DEBUG_QUARANTINE  a freed object waits in the heap's FIFO
 *       quarantine (at most KMM_HEAP_QUARANTINE_OBJECTS objects and
 *       KMM_HEAP_QUARANTINE_BYTES bytes, the oldest leaving first) before it
 *       can be handed out again, so that a second free of it, or a write to
 *       it (with POISON), is caught rather than hitting its next owner.
 *   KMM_HEAP_DEBUG_EVENTS      each allocation and free is recorded in the
 *       heap's ring of recent events (kmm_heap_events, kmm_report).
 *
 * REDZONE and TRACK need the debug layout: each object's slot gains the red
 * zones and a trailer (KMM_HEAP_DEBUG_TRAILER bytes). A cache's layout can
 * change only while it holds no object, so a cache takes these two modes,
 * or gives them up, only then: at creation (kmm_cache_create's flags, or
 * the heap's modes when a size class is made on first use), or when a
 * switch finds it empty. kmm_cache_debug refuses such a change for a cache
 * that holds objects (KMM_EBUSY); kmm_heap_debug leaves those caches'
 * layout as it is and counts them. So red zones and tracking for the size
 * classes are a boot-time choice (kmm_heap_debug before the first
 * kmm_malloc), as Linux's slub_debug is. A cache keeps the other modes
 * whatever objects it holds.
 *
 * Sampled guard pages (kmm_heap_guard_sample) are set for the whole heap.
 *
 * Reports. A problem found after the fact (an overrun, a write after free)
 * is logged at KMM_LOG_ERR naming the call that found it and its caller, the
 * object, its cache and size, and its allocation and last free callers
 * where known (TRACK, guard pages; the free caller also from POISON or the
 * quarantine), counted in kmm_misuse_stats (layer KMM_LAYER_HEAP) as
 * KMM_MISUSE_OVERRUN or KMM_MISUSE_USE_AFTER_FREE, and recorded in the
 * event ring (op KMM_HEAP_EVENT_BAD) once it exists. The call that found it
 * completes as usual (the free frees, the allocation hands the object out,
 * its poison and red zones written anew). A double free or a free of no
 * block is refused as always (KMM_ESTATE, KMM_EINVAL), the log naming the
 * last free caller where known. kmm_check reports a damaged red zone,
 * poison pattern or guard page as KMM_CHECK_CORRUPT.
 */
/* (Above the low byte, which kmm_cache_create keeps for other flags.) */
#define KMM_HEAP_DEBUG_REDZONE    0x0100u
#define KMM_HEAP_DEBUG_POISON     0x0200u
#define KMM_HEAP_DEBUG_QUARANTINE 0x0400u
#define KMM_HEAP_DEBUG_TRACK      0x0800u
#define KMM_HEAP_DEBUG_EVENTS     0x1000u
#define KMM_HEAP_DEBUG_ALL        0x1f00u

/* The patterns (Linux's values): red zones, freed objects. */
#define KMM_HEAP_REDZONE_BYTE       0xcc
#define KMM_HEAP_POISON_BYTE        0x6b
/* Red zone bytes after an object at least, and the debug layout's trailer. */
#define KMM_HEAP_REDZONE_MIN        16u
#define KMM_HEAP_DEBUG_TRAILER      64u
/* The quarantine's bounds. */
#define KMM_HEAP_QUARANTINE_OBJECTS 256u
#define KMM_HEAP_QUARANTINE_BYTES   ((size_t)1 << 20)
/* Guard-page slots (kmm_heap_guard_sample) and recorded events. */
#define KMM_HEAP_GUARD_SLOTS        64u
#define KMM_HEAP_EVENTS             256u

/*
 * kmm_cache_debug - sets cache c's own debugging modes to flags
 * (KMM_HEAP_DEBUG_*; 0: none of its own, the heap's still apply). Returns
 * KMM_OK, or, with nothing changed:
 *   KMM_EINVAL  c is NULL (KMM_MISUSE_BAD_ARG) or no live cache of k, or the
 *               heap's own (BAD_HANDLE), or flags has an unknown bit
 *               (BAD_FLAGS); counted and logged;
 *   KMM_EBUSY   the change adds or removes REDZONE or TRACK while c holds
 *               objects: live ones, or free ones on other CPUs' stacks
 *               (kmm_heap_drain_cpu or kmm_heap_drain_offline_cpu empties
 *               them). Not counted: the cache may simply be in use;
 *   KMM_ENOMEM  no memory for the heap's debugging state (its first use).
 * The calling CPU's stack and c's depot are emptied first. While c's layout
 * changes no other CPU may allocate from it (the check sees objects, not
 * an allocation in flight), nor from a smaller class that c may lend to
 * (kmm_heap_set_lend): change layouts at boot or before c is shared. A
 * request that judged c just before a mode came on may still take one
 * object of it unchecked, as its own class's inline path may.
 * IRQs on, may block; O(c's free objects) when POISON comes on (each is
 * filled). Calls that switch modes are serialised with each other.
 */
int kmm_cache_debug(struct kmm *k, struct kmm_cache *c, unsigned flags);

/*
 * kmm_heap_debug - sets the heap-wide debugging modes to flags: every size
 * class and object cache gets them (or-ed with its own), as kmm_cache_debug
 * would give them, and every cache made later starts with them. A cache that
 * holds objects keeps its layout (REDZONE and TRACK stay as they were for
 * it) and takes the other modes. Returns the number of caches that kept
 * their layout for that reason (0: every cache has the modes asked for), or
 * KMM_EINVAL for an unknown flag (counted; nothing changed) or KMM_ENOMEM
 * (no memory for the debugging state; nothing changed). IRQs on, may block;
 * O(caches + their free objects).
 */
int kmm_heap_debug(struct kmm *k, unsigned flags);

/*
 * kmm_heap_guard_sample - sampled guard pages, KFENCE's idea: every Nth
 * allocation (every > 0: N; 0: off) of a size class or of an object cache
 * without a constructor, of at most the page size, is served from one of
 * KMM_HEAP_GUARD_SLOTS pages of its own in kernel virtual areas, placed at
 * the end of the page (its alignment kept) against an unmapped guard page:
 * a write past it faults at once. The bytes of the page around the object
 * hold KMM_HEAP_REDZONE_BYTE and are checked when it is freed (by the one
 * kmm_free, kmm_cache_free, kmm_realloc) and by kmm_check; a freed guarded
 * page holds KMM_HEAP_POISON_BYTE until its slot is used again, checked
 * then (the slots are reused oldest first). The sampled object records its
 * allocation and free callers, and counts in kmm_heap_leaks. When every
 * slot is taken the allocation is served as usual. While sampling is on,
 * every size class and object cache takes the checking path (as with a
 * debugging mode). The slots are mapped when sampling first comes on and
 * given back by a call with 0 once no guarded object is live. Returns
 * KMM_OK, or KMM_ENOMEM (no pages or window for the slots: sampling stays
 * as it was). The heap's window is kmm_config.kva_base/kva_size. IRQs on,
 * may block.
 */
int kmm_heap_guard_sample(struct kmm *k, unsigned every);

/*
 * kmm_heap_mark - a new generation of allocations: returns it, and every
 * tracked object allocated from now on belongs to it or a later one. For
 * kmm_heap_leaks(k, kmm_heap_mark(k) ...) around a piece of work. Any
 * context; O(1).
 */
uint64_t kmm_heap_mark(struct kmm *k);

/* One call site's live objects (kmm_heap_leak_sites). */
struct kmm_heap_site {
    const void *caller; /* the allocation's caller; NULL: several sites beyond the table's */
    uint64_t objects;   /* live objects it allocated */
    uint64_t bytes;     /* their sizes as asked for */
};

/*
 * kmm_heap_leak_sites - the call sites of the tracked objects allocated in
 * generation `since` or later (0: all) that are still live, most bytes
 * first: fills out[0 .. min(n, max)) and returns n, the number of sites.
 * Needs no scan of the heap: each tracking cache keeps its live objects in
 * allocation order, walked from the newest back to the mark (O(objects
 * allocated since the mark and still live)). Tracked: objects of caches
 * with KMM_HEAP_DEBUG_TRACK and guarded objects; not whole-page or vmalloc'd
 * blocks. Sites beyond 64 are summed in one entry with caller NULL. Takes
 * each cache's lock in turn; IRQs on or off.
 */
size_t kmm_heap_leak_sites(struct kmm *k, uint64_t since, struct kmm_heap_site *out, size_t max);

/*
 * kmm_heap_leaks - writes the leak report to sink: one line per call site
 * of kmm_heap_leak_sites(k, since), with its objects and bytes, under a
 * line of totals. Returns the number of live objects reported.
 */
uint64_t kmm_heap_leaks(struct kmm *k, uint64_t since, const struct kmm_sink *sink);

/* What a recorded event was. */
enum kmm_heap_event_op {
    KMM_HEAP_EVENT_ALLOC = 1, /* size: as asked for */
    KMM_HEAP_EVENT_FREE,      /* size: as asked for at allocation, where known */
    KMM_HEAP_EVENT_BAD,       /* a report: size is the misuse class (enum kmm_misuse) */
};

/* One recent heap event. */
struct kmm_heap_event {
    uint64_t seq;       /* 1 for the first event recorded; never decreases */
    uint64_t addr;      /* the block's address */
    uint64_t size;      /* see the op */
    const void *caller; /* the call's caller */
    uint32_t op;        /* enum kmm_heap_event_op */
    uint32_t cpu;       /* the CPU it happened on */
};

/*
 * kmm_heap_events - copies the most recent events (at most max, and at most
 * KMM_HEAP_EVENTS kept) into out, oldest first; returns how many. Events
 * are recorded for caches with KMM_HEAP_DEBUG_EVENTS and for every report.
 * Any context; O(max).
 */
size_t kmm_heap_events(struct kmm *k, struct kmm_heap_event *out, size_t max);

/* The debugging modes' figures. */
struct kmm_heap_debug_stats {
    unsigned flags;            /* the heap-wide modes (kmm_heap_debug) */
    unsigned guard_every;      /* kmm_heap_guard_sample's N; 0: off */
    unsigned debug_caches;     /* caches with any mode (or sampling) in force */
    uint64_t generation;       /* the current generation (kmm_heap_mark) */
    uint64_t tracked;          /* live tracked objects */
    uint64_t quarantined;      /* objects in the quarantine now */
    uint64_t quarantine_bytes; /* their bytes */
    uint64_t guarded_live;     /* live objects on guard pages */
    uint64_t guarded_allocs;   /* allocations sampled onto guard pages; never decreases */
    uint64_t guard_slots;      /* slots mapped (0 or KMM_HEAP_GUARD_SLOTS) */
    uint64_t events;           /* events recorded; never decreases */
    uint64_t overruns;         /* red zones or guard pages found damaged; never decreases */
    uint64_t use_after_free;   /* poison found damaged; never decreases */
};

/* kmm_heap_debug_stats - fills *out. Any context. */
void kmm_heap_debug_stats(struct kmm *k, struct kmm_heap_debug_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* KMM_HEAP_H */
