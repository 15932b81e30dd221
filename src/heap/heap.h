/*
 * heap.h - the kernel heap's private types and its inline fast paths.
 * Private to src/heap/. Contracts of the public calls: kmm/heap.h.
 *
 * Three levels, as in Bonwick's slab allocator with magazines:
 *
 *   kmm_malloc / kmm_cache_alloc          kmm_free / kmm_cache_free
 *        |   this CPU's stack of free objects (struct heap_cpu): no lock,
 *        v   no atomic read-modify-write, IRQs off for a few instructions
 *   refill: half a stack at a time       flush: half a stack at a time
 *        |   the cache's depot of full magazines (struct heap_mag), under
 *        |   the cache's lock: one copy of half a stack each way, so a
 *        |   burst larger than a stack still never touches a slab
 *        |   (illumos kmem's depot); when the depot is empty or full:
 *        |   the cache's slabs (struct slab), object by object
 *        v
 *   grow: a new slab from the page allocator (pmm_slab_alloc); empty slabs
 *   beyond HEAP_KEEP_EMPTY go back (and all of them when memory is short:
 *   the heap is a reclaim hook).
 *
 * A slab is a block of 2^order pages of objects laid out from its first
 * byte with no header; its head frame in the frame database is marked SLAB
 * with the cache's id and the address of the slab's record (pmm/api.h), so
 * a pointer leads to its cache and slab in O(1) and a free checks every hop.
 *
 * A free object holds two words at fp_off (0 for plain caches; after the
 * object for caches with a constructor, whose objects keep their state):
 *   word 0  the next free object of its slab's list, encoded:
 *           next ^ cache secret ^ the word's own address (a free list in a
 *           CPU stack does not use it)
 *   word 1  the free tag: cache secret ^ the object's address. Written on
 *           every free, checked and cleared on every allocation: a second
 *           free of an object still free finds it (a double free), and an
 *           allocation that does not find it knows the free object was
 *           written to or handed out twice.
 */
#ifndef KMM_HEAP_HEAP_H
#define KMM_HEAP_HEAP_H

#include "internal.h"

#include "pmm/api.h"

#include <kmm/heap.h>

/* What a cache is. */
enum heap_kind {
    HEAP_KIND_CLASS = 1, /* a size class of kmm_malloc */
    HEAP_KIND_RECORDS,   /* the slab records (each slab holds its own record) */
    HEAP_KIND_OBJECT,    /* kmm_cache_create's */
    HEAP_KIND_MAGS,      /* the depots' magazines */
};

/* The owner tag of a whole-page block in the frame database. */
#define HEAP_OWNER_LARGE KMM_HEAP_CACHES
/* Empty slabs a cache keeps for the next growth. */
#define HEAP_KEEP_EMPTY  2u
/* A CPU stack's bound in objects: HEAP_STACK_BYTES of them, at least 4 and
 * at most KMM_HEAP_MAG_SIZE. Small objects get deep stacks (a burst of them
 * never takes a lock); large ones shallower (what stacks hold is memory no
 * other size can use). At 8 KiB, H2's classes of 2 to 4 KiB had stacks of
 * 2 to 4 objects and a random walk of frees and allocations hit their
 * bounds every few steps (155 instructions a step); at 32 KiB, 136, with
 * the same memory (docs/performance.md). */
#define HEAP_STACK_BYTES ((uint32_t)KMM_HEAP_STACK_BYTES)
#define HEAP_STACK_MIN   4u
#define HEAP_STACK_MAX   KMM_HEAP_MAG_SIZE
/* A magazine holds a batch: half the largest stack. */
#define HEAP_MAG_OBJS    (HEAP_STACK_MAX / 2)
/* The most objects' bytes a cache's depot keeps in full magazines (at
 * least two magazines): the bound on what the depot holds back. */
#define HEAP_DEPOT_BYTES (64u << 10)
/* The most bytes all depots together keep (struct kmm_heap.depot_bytes):
 * a burst of one class (H1's thousand blocks) fills its depot, but many
 * classes each holding a full one would keep memory no other class can
 * use (H2: 40 classes, 2.5 MiB). A magazine that finds no room goes back
 * to its slabs. Measured on H2 with 32 KiB stacks (docs/performance.md):
 * 512 KiB 1.38 of peak live, 134 instructions a step; 256 KiB 1.36, 136;
 * 128 KiB 1.35, 138. */
#define HEAP_DEPOT_TOTAL ((uint32_t)KMM_HEAP_DEPOT_MAX)
/* "kmm-cach" XORed with the cache's address: a live cache. */
#define HEAP_CACHE_MAGIC UINT64_C(0x6b6d6d2d63616368)

/* The most objects a slab holds (a 16-byte class in one page). */
#define HEAP_SLAB_OBJECTS_MAX 256u

/*
 * A slab's record. Lives in the records cache (heap/slab.c), or for a slab
 * of the records cache as its own first object. Under the cache's lock.
 * `out` has a bit per object that is not on the slab's free list: set when
 * a refill takes it, cleared when it comes back. A CPU stack or magazine
 * never hands the slab an object whose bit is clear: that would be one
 * object freed twice at the same instant on two CPUs (the common free
 * cannot tell without an atomic read-modify-write), and it is dropped
 * there, so the free list never holds an object twice.
 */
struct slab {
    struct slab *next, *prev; /* on the cache's partial, full or empty list */
    uintptr_t base;           /* direct-map address of its first object */
    uintptr_t free;           /* its first free object (0: none); the list is encoded */
    uint32_t inuse;           /* objects not on its free list */
    uint8_t list;             /* enum slab_list */
    uint8_t self;             /* the record is the slab's own first object */
    uint64_t out[HEAP_SLAB_OBJECTS_MAX / 64];
    /* Objects lent to a smaller class's request (kmalloc.c), by index:
     * set with an atomic OR when lent, cleared when the object comes back
     * to the slab, so only an object marked out may be marked lent. A
     * sized free reads it to accept a smaller class's size. */
    uint64_t lent[HEAP_SLAB_OBJECTS_MAX / 64];
};

enum slab_list { SLAB_PARTIAL, SLAB_FULL, SLAB_EMPTY, SLAB_LISTS };

/* A magazine: a batch of free objects in a cache's depot (full list), or
 * an empty one kept for the next flush. Objects of the magazine cache. */
struct heap_mag {
    struct heap_mag *next;
    uint32_t n;
    uint32_t pad;
    void *objs[HEAP_MAG_OBJS];
};

/* One CPU's stack of free objects of one cache. Only its CPU touches it,
 * with IRQs off, except a drain of an offline CPU. The counters have one
 * writer. */
struct heap_cpu {
    uint32_t n; /* objects on the stack */
    uint32_t pad;
    uint64_t allocs; /* successful allocations on this CPU */
    uint64_t frees;  /* successful frees on this CPU */
    uint64_t lent;   /* of allocs: lent to a smaller class's request (kmalloc.c) */
    void *objs[];    /* the cache's limit of them (cpu_stride) */
};

/*
 * A cache. Fixed after creation: everything above `lock` and the fast
 * paths' line at the end (but the layout and the stack bound, which the
 * debugging switches change: heap/debug.h). Under the lock: the slab lists
 * and their counters.
 * Invariants (heap/check.c): every slab is on the list its inuse says
 * (0: empty, objects: full, else partial; for the records cache a slab
 * holding only its own record is empty); its free list has objects -
 * inuse entries, each an object start of the slab carrying the free tag;
 * total_inuse is the sum of inuse; nslabs[] count the lists; the depot's
 * full magazines hold depot_objs tagged objects of c, nfull of them at
 * most depot_max, and nempty empty ones.
 */
struct kmm_cache {
    uint64_t magic;   /* HEAP_CACHE_MAGIC ^ address while alive */
    uint32_t id;      /* caches[id], the owner tag of its slabs */
    uint32_t size;    /* stride between objects */
    uint32_t usable;  /* bytes the caller may use */
    uint32_t objects; /* per slab */
    uint32_t recip;   /* 2^32 / size, rounded up: offset -> index */
    uint8_t order;    /* pages per slab: 2^order */
    uint8_t kind;     /* enum heap_kind */
    uint16_t batch;   /* objects moved per refill or flush */
    kmm_ctor_t ctor;
    struct kmm *k;
    char name[KMM_CACHE_NAME_MAX];
    uint64_t mem_pa; /* the pages holding this structure and its stacks */
    size_t mem_pages;
    size_t colour; /* where in them this structure starts (cache.c) */

    kmm_lock_t lock;
    struct slab *lists[SLAB_LISTS];
    uint64_t nslabs[SLAB_LISTS];
    uint64_t total_inuse;   /* objects out of the slabs: allocated, on a stack, in the depot */
    uint64_t grown, shrunk; /* slabs made and given back */
    struct heap_mag *full, *empty; /* the depot */
    uint32_t nfull, nempty;
    uint32_t depot_max;          /* full magazines kept at most (0: no depot) */
    uint64_t depot_objs;         /* objects in full magazines */
    struct heap_cache_debug dbg; /* the debugging modes (heap/debug.h) */

    /* What the fast paths read, in one cache line with the first CPUs'
     * stack pointers after it: an allocation or a free touches this line
     * of its cache and nothing else of it. */
    _Alignas(64) uintptr_t secret;
    uint64_t divm;   /* 2^64 / size, rounded up: whether size divides an offset */
    uint32_t span;   /* objects * size: the bytes of a slab its objects cover */
    uint32_t fp_off; /* offset of the free-list word; the tag follows it */
    uint16_t limit;  /* CPU stack bound */
    uint16_t pad;
    unsigned ncpu;
    /* CPU i's stack, in the same pages after this structure: one load from
     * the CPU's number, where a multiply by a stride would cost three. */
    struct heap_cpu *stack[];
};

_Static_assert(__builtin_offsetof(struct kmm_cache, stack) + 4 * sizeof(void *) -
                       __builtin_offsetof(struct kmm_cache, secret) <=
                   64,
               "the fast paths' fields and four CPUs' stack pointers share a line");

/* heap_layout_set - c's objects: stride bytes apart in slabs of 2^order
 * pages; sets the figures derived from them (objects, recip, span, divm).
 * c holds no slab. */
void heap_layout_set(struct kmm_cache *c, uint32_t stride, unsigned order);

/* --- the free tag and the encoded list ------------------------------------------------- */

static inline uintptr_t heap_tag(const struct kmm_cache *c, uintptr_t obj)
{
    return c->secret ^ obj;
}

static inline uintptr_t *heap_words(const struct kmm_cache *c, uintptr_t obj)
{
    return (uintptr_t *)(obj + c->fp_off);
}

/* The free tag word of obj, read and written with single (relaxed atomic)
 * loads and stores: a plain mov, but two CPUs racing on one object (a
 * double free at the same instant) are then a race the heap tolerates
 * (kmm/heap.h), not undefined behaviour. */
static inline uintptr_t heap_tag_get(const struct kmm_cache *c, uintptr_t obj)
{
    return __atomic_load_n(&heap_words(c, obj)[1], __ATOMIC_RELAXED);
}

static inline void heap_tag_set(const struct kmm_cache *c, uintptr_t obj, uintptr_t v)
{
    __atomic_store_n(&heap_words(c, obj)[1], v, __ATOMIC_RELAXED);
}

/* --- finding the cache of a pointer ----------------------------------------------------- */

/*
 * heap_object_start - whether byte off of a slab of c starts an object:
 * inside the objects (off < span) and a multiple of the stride. The
 * multiple test is Lemire's: for off < 2^32, size divides off iff
 * off * divm, modulo 2^64, is below divm (divm = 2^64 / size rounded up).
 */
static inline bool heap_object_start(const struct kmm_cache *c, uint64_t off)
{
    return off < c->span && off * c->divm < c->divm;
}

/* Where a pointer leads, once every hop checked. */
struct heap_ref {
    struct kmm_cache *cache; /* NULL for a whole-page block */
    uint64_t pa;             /* the block's (slab's or large block's) first byte */
    unsigned order;
};

/* Why heap_find refused a pointer. */
enum heap_bad {
    HEAP_FOUND = 0,
    HEAP_FOREIGN,  /* not in memory the heap holds */
    HEAP_INTERIOR, /* inside an object or block, not at its start */
};

_Static_assert(HEAP_ID_MAGS == HEAP_ID_RECORDS + 1 && HEAP_OWNER_LARGE == HEAP_ID_MAGS + 1,
               "the heap's own caches and whole-page blocks are the ids from HEAP_ID_RECORDS");

/*
 * heap_find_in - from pointer p to its cache, slab and block: the direct
 * map, the frame database's SLAB head and owner, the live cache of that
 * id, and an object start inside the slab's objects. An object of the
 * heap's own caches (a slab record, a magazine) is foreign unless own:
 * the heap never hands one to a caller. Lock-free; O(1).
 */
static inline __attribute__((always_inline)) enum heap_bad
heap_find_in(struct kmm *k, uintptr_t p, struct heap_ref *out, bool own)
{
    /* An address below the direct map wraps to a frame beyond the
     * database, which pmm_slab_find refuses like any frame it lacks. */
    uint64_t pa = (uint64_t)(p - k->direct_map);
    struct pmm_slab_ref ref;
    if (!pmm_slab_find(k, pa, &ref))
        return HEAP_FOREIGN;
    uint64_t off = pa - ref.pa;
    if (__builtin_expect(ref.owner >= HEAP_ID_RECORDS, 0)) {
        if (ref.owner == HEAP_OWNER_LARGE) {
            *out = (struct heap_ref){NULL, ref.pa, ref.order};
            return off ? HEAP_INTERIOR : HEAP_FOUND;
        }
        if (!own || ref.owner > HEAP_ID_MAGS)
            return HEAP_FOREIGN;
    }
    /* The owner is a cache id, so the block is one of its slabs, of its
     * order: the offset check below keeps the pointer inside it. */
    struct kmm_cache *c = __atomic_load_n(&k->heap.caches[ref.owner], __ATOMIC_ACQUIRE);
    if (!c)
        return HEAP_FOREIGN;
    if (!heap_object_start(c, off))
        return HEAP_INTERIOR;
    *out = (struct heap_ref){c, ref.pa, ref.order};
    return HEAP_FOUND;
}

/*
 * heap_cache_of - kmm_free's common case of heap_find: the cache c if p is
 * an object start of a slab of c (a caller's cache: not the heap's own),
 * else NULL for the slow path, which judges every other case. The same
 * hops as heap_find (an address below the direct map wraps to a frame
 * beyond the database). Lock-free.
 */
static inline __attribute__((always_inline)) struct kmm_cache *heap_cache_of(struct kmm *k,
                                                                             uintptr_t p)
{
    uint64_t pa = (uint64_t)(p - k->direct_map);
    uint64_t pfn = pa >> KMM_PAGE_SHIFT;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, pfn);
    if (!f)
        return NULL;
    union frame_meta m = frame_meta_get(f);
    uint64_t off = pa & (KMM_PAGE_SIZE - 1);
    /* A slab's head page first: every object of a one-page slab, which
     * the small classes have, is in it. */
    if (__builtin_expect(m.state != FRAME_SLAB, 0)) {
        /* A later page of a slab: one hop to its head by the order the
         * frame carries (pmm/slab.c), believed only if it lands on a SLAB
         * head of that order. */
        unsigned order = m.order;
        if (m.state != FRAME_INTERIOR || order > PMM_SLAB_MAX_ORDER)
            return NULL;
        uint64_t in = pfn & ((UINT64_C(1) << order) - 1);
        m = frame_meta_get(f - in);
        if (m.state != FRAME_SLAB || m.order != order)
            return NULL;
        off += in << KMM_PAGE_SHIFT;
    }
    if (__builtin_expect(m.count >= HEAP_ID_RECORDS, 0))
        return NULL;
    struct kmm_cache *c = __atomic_load_n(&k->heap.caches[m.count], __ATOMIC_ACQUIRE);
    if (!c || !heap_object_start(c, off))
        return NULL;
    return c;
}

/* heap_find - heap_find_in for a caller's pointer: a block the heap may
 * have handed out, never its own bookkeeping. */
static inline __attribute__((always_inline)) enum heap_bad heap_find(struct kmm *k, uintptr_t p,
                                                                     struct heap_ref *out)
{
    return heap_find_in(k, p, out, false);
}

/* --- the CPU stacks --------------------------------------------------------------------- */

/* CPU cpu's stack of c. */
static inline struct heap_cpu *heap_cpu_at(const struct kmm_cache *c, unsigned cpu)
{
    return c->stack[cpu];
}

/* This CPU's stack of c. IRQs off, which also keeps the caller on its CPU
 * (kmm/port.h): the CPU stacks need nothing else. */
static inline struct heap_cpu *heap_this_cpu(struct kmm_cache *c)
{
    unsigned cpu = kmm_port_cpu_id();
    KMM_ASSERT(c->k->port, cpu < c->ncpu);
    return heap_cpu_at(c, cpu);
}

/*
 * heap_take - an object from this CPU's stack of c into *obj, its tag
 * checked and cleared: true; false if the stack is empty or the top
 * object's tag is wrong (the slow path then judges it). A leaf: its
 * callers tail-call their slow paths, so the common case needs no saved
 * register. heap_take_counted - the same, false unless more than keep
 * objects are on the stack, and counted as lent if lend (kmalloc.c's
 * lending; constants for heap_take, so it compiles to the same code).
 */
static inline __attribute__((always_inline)) bool
heap_take_counted(struct kmm_cache *c, uintptr_t *obj, bool lend, uint32_t keep)
{
    kmm_irqstate_t s = kmm_irq_save();
    struct heap_cpu *hc = heap_this_cpu(c);
    uint32_t n = hc->n;
    if (__builtin_expect(n > keep, 1)) {
        uintptr_t top = (uintptr_t)hc->objs[n - 1];
        /* The tag compared as tag ^ obj == secret: the secret stays a
         * memory operand, one register fewer. */
        if (__builtin_expect((heap_tag_get(c, top) ^ top) == c->secret, 1)) {
            heap_tag_set(c, top, 0);
            hc->n = n - 1;
            hc->allocs++;
            if (lend)
                hc->lent++;
            kmm_irq_restore(s);
            *obj = top;
            return true;
        }
    }
    kmm_irq_restore(s);
    return false;
}

static inline __attribute__((always_inline)) bool heap_take(struct kmm_cache *c, uintptr_t *obj)
{
    return heap_take_counted(c, obj, false, 0);
}

/* heap_pop - heap_take's object, or 0. */
static inline uintptr_t heap_pop(struct kmm_cache *c)
{
    uintptr_t obj;
    return heap_take(c, &obj) ? obj : 0;
}

/* What heap_push did. */
enum heap_push {
    HEAP_PUSHED,      /* on this CPU's stack */
    HEAP_STACK_FULL,  /* not pushed: the stack is full (flush, then push) */
    HEAP_ALREADY_FREE /* not pushed: the object carries the free tag */
};

/*
 * heap_push - puts object obj of c on this CPU's stack, tagged free. A
 * leaf. The tag is read before IRQs go off: only the stack needs them off,
 * and an object freed twice at the same instant (here and in an interrupt
 * handler, or on two CPUs) is the race the slabs' `out` bits already
 * tolerate (struct slab). Fewer values live across the IRQs-off section
 * keep the common case in scratch registers.
 */
static inline __attribute__((always_inline)) enum heap_push heap_push(struct kmm_cache *c,
                                                                      uintptr_t obj)
{
    uintptr_t tag = heap_tag(c, obj);
    if (__builtin_expect(heap_tag_get(c, obj) == tag, 0))
        return HEAP_ALREADY_FREE;
    enum heap_push r = HEAP_STACK_FULL;
    kmm_irqstate_t s = kmm_irq_save();
    struct heap_cpu *hc = heap_this_cpu(c);
    uint32_t n = hc->n;
    if (__builtin_expect(n < c->limit, 1)) {
        heap_tag_set(c, obj, tag);
        hc->objs[n] = (void *)obj;
        hc->n = n + 1;
        hc->frees++;
        r = HEAP_PUSHED;
    }
    kmm_irq_restore(s);
    return r;
}

/* heap_drain_asked - honours a drain request another CPU's kmm_heap_shrink
 * left for this CPU: its stacks go back to the slabs (cache.c). Cheap when
 * there is none. No lock held; any context. */
void heap_drain_asked(struct kmm *k);

/* --- slabs (slab.c) ---------------------------------------------------------------------- */

/* heap_alloc_slow - an object of c when this CPU's stack has none:
 * refills it from the slabs (growing c if they are empty) and pops. 0 if
 * memory or the heap's limit runs out; the public call that asked counts
 * the failure (kmm_heap_stats.failed), not the heap's own bookkeeping. */
uintptr_t heap_alloc_slow(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags);

/* heap_alloc_cached - heap_alloc_slow without growing: an object of c
 * from this CPU's stack, c's depot or its slabs, or 0 if c has no free
 * object there. Any context (it takes no memory). */
uintptr_t heap_alloc_cached(struct kmm *k, struct kmm_cache *c);

/* heap_lend_one - one object of c straight from its slabs (none moved to
 * a stack: the rest stay idle there), counted as an allocation and as
 * lent; 0 if its slabs have no free object. Any context. */
uintptr_t heap_lend_one(struct kmm *k, struct kmm_cache *c);

/* heap_spare - whether c may have a free object outside the CPUs'
 * stacks (a partly used or empty slab, a full magazine in its depot):
 * read without c's lock, so a hint, for a slow path that would otherwise
 * take the lock only to find none. */
static inline bool heap_spare(const struct kmm_cache *c)
{
    return __atomic_load_n(&c->nslabs[SLAB_PARTIAL], __ATOMIC_RELAXED) |
           __atomic_load_n(&c->nslabs[SLAB_EMPTY], __ATOMIC_RELAXED) |
           __atomic_load_n(&c->nfull, __ATOMIC_RELAXED);
}

/* heap_lent_set - marks obj, an object of c just taken for a smaller
 * class's request, as lent. heap_lent_test - whether obj, an allocated
 * object of c, is so marked (it was lent when it was allocated, or lent
 * earlier and has not been back to its slab since). Any context. */
void heap_lent_set(struct kmm *k, struct kmm_cache *c, uintptr_t obj);
bool heap_lent_test(struct kmm *k, struct kmm_cache *c, uintptr_t obj);

/* heap_idle - whether c holds at least a slab's worth of free objects in
 * its slabs (its CPUs' stacks and depot not counted): memory it does not
 * need now, which it may lend to a smaller class (kmalloc.c). A class that
 * is growing holds less (a new slab's objects less the batch its stack
 * took), so it never lends what it is about to need. Read without c's
 * lock: a hint. */
static inline bool heap_idle(const struct kmm_cache *c)
{
    uint64_t slabs = __atomic_load_n(&c->nslabs[SLAB_PARTIAL], __ATOMIC_RELAXED) +
                     __atomic_load_n(&c->nslabs[SLAB_FULL], __ATOMIC_RELAXED) +
                     __atomic_load_n(&c->nslabs[SLAB_EMPTY], __ATOMIC_RELAXED);
    uint64_t out = __atomic_load_n(&c->total_inuse, __ATOMIC_RELAXED);
    return slabs * c->objects >= out + c->objects;
}

/* heap_free_slow - frees obj of c (found by heap_find) when this CPU's
 * stack is full: moves a batch back to the slabs, then pushes. Returns
 * KMM_OK or KMM_ESTATE (already free: not counted here). */
int heap_free_slow(struct kmm *k, struct kmm_cache *c, uintptr_t obj);

/* heap_drain - moves every object of stack hc of c back to the slabs. The
 * stack's owner with IRQs on, or hc's CPU is offline. */
void heap_drain(struct kmm *k, struct kmm_cache *c, struct heap_cpu *hc);

/* heap_shrink_cache - moves this CPU's stack of c back, then gives every
 * empty slab of c back; returns the pages given back. */
size_t heap_shrink_cache(struct kmm *k, struct kmm_cache *c);

/* heap_release_empty - gives every empty slab of c back (the stacks stay);
 * returns the pages. */
size_t heap_release_empty(struct kmm *k, struct kmm_cache *c);

/* heap_held_add - takes `bytes` more into the heap's held figure if the
 * limit allows; false if it does not. heap_held_sub gives them back (the
 * memory could not be had, or went back); heap_held_got, once the memory
 * is had, moves the peak up to what is held: a request that fails never
 * counts in the peak. */
bool heap_held_add(struct kmm *k, uint64_t bytes);
void heap_held_sub(struct kmm *k, uint64_t bytes);
void heap_held_got(struct kmm *k);

/* heap_slab_get - one object of c straight off its slabs (growing c if
 * they are empty), its free tag cleared, for the debugging paths; 0 if
 * memory or the heap's limit runs out. *poisoned: c poisoned its free
 * objects when it was taken (so it carries the pattern). No lock held. */
uintptr_t heap_slab_get(struct kmm *k, struct kmm_cache *c, kmm_gfp_t flags, bool *poisoned);

/* heap_slab_put - object obj of c (free-tagged or not) straight back to its
 * slab, for the debugging paths. No lock held. */
void heap_slab_put(struct kmm *k, struct kmm_cache *c, uintptr_t obj);

/* heap_depot_drain - returns every object in c's depot to the slabs and
 * frees its magazines; returns the slab pages that gave back (beyond the
 * empty slabs c keeps). No lock held. */
size_t heap_depot_drain(struct kmm *k, struct kmm_cache *c);

/* --- caches (cache.c) ---------------------------------------------------------------------- */

/* heap_cache_make - a cache (id chosen, published in caches[]) of objects
 * of `size` bytes aligned to align, or NULL. flags: KMM_GFP_ATOMIC keeps
 * its page allocation from reclaiming. */
struct kmm_cache *heap_cache_make(struct kmm *k, const char *name, size_t size, size_t align,
                                  kmm_ctor_t ctor, enum heap_kind kind, kmm_gfp_t flags);

/* heap_choose_order - the slab order for objects of stride bytes, at
 * least min_objects per slab (cache.c). */
unsigned heap_choose_order(uint32_t stride, uint32_t min_objects);

/* heap_ready - the slab records' cache made and the reclaim hook
 * registered, on the first slow path; false without memory. */
bool heap_ready(struct kmm *k, kmm_gfp_t flags);

/* heap_class_cache - size class i's cache, made on first use; NULL
 * without memory. */
struct kmm_cache *heap_class_cache(struct kmm *k, unsigned i, kmm_gfp_t flags);

/*
 * heap_walk_begin - a walk of caches[] begins (a shrink, a drain, the
 * figures, kmm_check): until heap_walk_end(k, its return value), no cache
 * the walk finds in caches[] is freed under it (kmm_cache_destroy waits).
 * Never waits itself: any context. Preemption is off until the end (so a
 * destroyer never waits for a walk its own CPU preempted).
 */
unsigned heap_walk_begin(struct kmm *k);
void heap_walk_end(struct kmm *k, unsigned epoch);

/* Whether c is a live cache of k (lock-free; for misuse judgement). */
bool heap_cache_live(struct kmm *k, const struct kmm_cache *c);

/* Logs a rejected heap call: counted under KMM_LAYER_HEAP. Returns err. */
#define heap_misuse(k, cls, err, caller, ...)                                                      \
    kmm_misuse((k), KMM_LAYER_HEAP, (cls), (err), (caller), __VA_ARGS__)

/* --- size classes (class.c) ------------------------------------------------------------------ */

/* The class index of a size 1 .. KMM_HEAP_SLAB_MAX. */
unsigned heap_class_of(const struct kmm_heap *h, size_t size);
/* The object size of class i. */
uint32_t heap_class_size(unsigned i);
/* Fills h's table of the classes of sizes up to HEAP_SMALL_MAX. Init. */
void heap_classes_setup(struct kmm_heap *h);

#endif /* KMM_HEAP_HEAP_H */
