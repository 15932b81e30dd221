/*
 * test_heap_attack_inside.c - the heap attacked from inside: pointers to
 * its own bookkeeping (slab records, magazines) handed to the calls that
 * take a block, the outcome of a race reproduced by hand (one object on a
 * CPU stack twice), and corruptions of its structures that kmm_check must
 * report. White-box and hosted only: it reaches the heap's private
 * structures through the library's private headers.
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

#include "heap/heap.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  ((size_t)1 << 20)

static const struct kmm_region ram32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

#define FOREIGN (KT_CLASS(KMM_MISUSE_OUTSIDE) | KT_CLASS(KMM_MISUSE_NOT_BLOCK))

/* The calls that take a block pointer, each given p, which is none of the
 * caller's blocks: refused as foreign, counted, nothing changed. */
static void expect_every_call_refuses_at(struct ktest *t, struct kt_heap *h, const void *p,
                                         int line)
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
#define EXPECT_EVERY_CALL_REFUSES(t, h, p) expect_every_call_refuses_at((t), (h), (p), __LINE__)

/* --- the heap's own objects ------------------------------------------------------------ */

/*
 * Slab records and magazines are objects of the heap's own caches, in
 * slabs the frame database names like any other; but the heap never hands
 * them to a caller, so no call that takes a caller's block accepts them.
 */
/* Allocates and frees enough 64-byte blocks to fill this CPU's stack and
 * put magazines in the class's depot; returns the class's cache, or NULL
 * (the test failed). */
static struct kmm_cache *fill_depot(struct ktest *t, struct kmm *k)
{
    enum { OBJS = 600 };
    static void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        if (!(o[i] = kmm_malloc(k, 64, 0))) {
            ktest_fail_at(t, __FILE__, __LINE__, "allocation %u of 64 bytes failed", i);
            return NULL;
        }
    for (unsigned i = 0; i < OBJS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    return ktest_failed(t) ? NULL : k->heap.classes[heap_class_of(&k->heap, 64)];
}

KTEST(heap_inside, the_heaps_own_records_and_magazines_are_no_callers_blocks)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    struct kmm_cache *c = fill_depot(t, k);
    KT_ASSERT(t, c != NULL);
    struct kmm_cache *rc = k->heap.records;
    KT_ASSERT(t, c != NULL && rc != NULL && c->full != NULL);
    const struct slab *rec = NULL, *self = NULL;
    for (unsigned l = 0; l < SLAB_LISTS && !rec; l++)
        rec = c->lists[l];
    for (unsigned l = 0; l < SLAB_LISTS && !self; l++)
        for (const struct slab *s = rc->lists[l]; s && !self; s = s->next)
            if (s->self)
                self = s;
    KT_ASSERT(t, rec != NULL && self != NULL);
    const void *own[] = {
        rec,     /* a slab's record, an object of the records' cache */
        self,    /* a records slab's own record, its first object */
        c->full, /* a full magazine in a depot */
    };
    for (size_t i = 0; i < N(own); i++) {
        ktest_diag(t, "the heap's own object %zu", i);
        EXPECT_EVERY_CALL_REFUSES(t, &h, own[i]);
    }
    kt_heap_settle(&h);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- one object on a stack twice ------------------------------------------------------- */

/*
 * Two CPUs freeing one object at the same instant can both find it
 * untagged and both push it (heap.h): made here by hand, the tag cleared
 * between two frees. The first copy is then allocated again; the second,
 * still on the stack, must not take the live object back to its slab when
 * the stack drains (that would write the free list's words into the
 * caller's bytes and hand the object out twice): it is dropped.
 */
KTEST(heap_inside, a_stale_copy_of_a_reallocated_object_never_goes_back_to_its_slab)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    void *keep = kmm_malloc(k, 64, 0); /* keeps the slab alive */
    uint8_t *x = kmm_malloc(k, 64, 0);
    KT_ASSERT(t, keep != NULL && x != NULL);
    struct kmm_cache *c = k->heap.classes[heap_class_of(&k->heap, 64)];
    KT_ASSERT_EQ(t, kmm_free(k, x), KMM_OK);
    heap_tag_set(c, (uintptr_t)x, 0); /* the other CPU read the tag before it was written */
    KT_ASSERT_EQ(t, kmm_free(k, x), KMM_OK);
    KT_ASSERT(t, kmm_malloc(k, 64, 0) == x); /* the first copy, live again */
    kt_heap_fill(&h, x, 0, 64, 7);
    kmm_heap_drain_cpu(k); /* the second copy goes back */
    KT_EXPECT(t, kt_heap_holds(&h, x, 0, 64, 7));
    KT_EXPECT_HEALTHY(t, k);
    /* Never handed out again while live. */
    enum { OBJS = 300 };
    static void *o[OBJS];
    unsigned twice = 0;
    for (unsigned i = 0; i < OBJS; i++) {
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 64, 0)) != NULL);
        twice += o[i] == x;
    }
    KT_EXPECT_EQ(t, twice, 0);
    for (unsigned i = 0; i < OBJS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    KT_EXPECT(t, kt_heap_holds(&h, x, 0, 64, 7));
    KT_EXPECT_EQ(t, kmm_free(k, x), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, keep), KMM_OK);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* --- corruption kmm_check must see ---------------------------------------------------- */

/* Runs kmm_check and expects a corruption whose first finding contains
 * needle. */
static void expect_corrupt_at(struct ktest *t, struct kmm *k, const char *needle, int line)
{
    struct kmm_check_result r;
    int status = kmm_check(k, &r);
    if (status != KMM_CHECK_CORRUPT || !ktest_contains(r.first, needle))
        ktest_fail_at(t, __FILE__, line, "status %d, first finding \"%s\", wanted \"%s\"", status,
                      r.first, needle);
}
#define EXPECT_CORRUPT(t, k, needle) expect_corrupt_at((t), (k), (needle), __LINE__)

/* A slab of the 64-byte class with objects both out and on its free list:
 * *s, its first free object *in_slab. */
struct places {
    struct kmm_cache *c;
    struct slab *s;
    uintptr_t in_slab;
};

static bool make_places(struct ktest *t, struct kt_heap *h, struct places *pl)
{
    struct kmm *k = h->f.k;
    enum { OBJS = 100 };
    static void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        if (!(o[i] = kmm_malloc(k, 64, 0)))
            return false;
    for (unsigned i = 0; i < OBJS; i += 2)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    kmm_heap_drain_cpu(k); /* the freed half back on the slabs' free lists */
    pl->c = k->heap.classes[heap_class_of(&k->heap, 64)];
    pl->s = NULL;
    for (struct slab *s = pl->c->lists[SLAB_PARTIAL]; s && !pl->s; s = s->next)
        if (s->free)
            pl->s = s;
    if (!pl->s)
        return false;
    pl->in_slab = pl->s->free;
    return true;
}

KTEST(heap_inside, kmm_check_sees_a_corrupt_free_list_link_and_tag)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct places pl;
    KT_ASSERT(t, make_places(t, &h, &pl));
    KT_EXPECT_HEALTHY(t, h.f.k);
    uintptr_t *w = heap_words(pl.c, pl.in_slab);
    w[0] ^= 8; /* the link: no object start */
    EXPECT_CORRUPT(t, h.f.k, "free list entry");
    w[0] ^= 8;
    KT_EXPECT_HEALTHY(t, h.f.k);
    w[1] ^= 1; /* the tag */
    EXPECT_CORRUPT(t, h.f.k, "free list entry");
    w[1] ^= 1;
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* A slab's marks say which of its objects are out of its free list: two
 * marks swapped (the count unchanged), or a mark past its last object,
 * contradict the list. */
KTEST(heap_inside, kmm_check_sees_a_slabs_marks_that_contradict_its_free_list)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct places pl;
    KT_ASSERT(t, make_places(t, &h, &pl));
    struct slab *s = pl.s;
    uint32_t free_i = (uint32_t)((pl.in_slab - s->base) / pl.c->size), out_i = 0;
    while (out_i < pl.c->objects && !(s->out[out_i / 64] >> (out_i % 64) & 1))
        out_i++;
    KT_ASSERT(t, out_i < pl.c->objects && pl.c->objects < HEAP_SLAB_OBJECTS_MAX);
    uint64_t free_bit = UINT64_C(1) << (free_i % 64), out_bit = UINT64_C(1) << (out_i % 64);
    uint32_t past = pl.c->objects;
    uint64_t past_bit = UINT64_C(1) << (past % 64);
    /* Swapped: a free object marked out, an object out marked back. */
    s->out[free_i / 64] ^= free_bit;
    s->out[out_i / 64] ^= out_bit;
    EXPECT_CORRUPT(t, h.f.k, "slab");
    s->out[free_i / 64] ^= free_bit;
    s->out[out_i / 64] ^= out_bit;
    KT_EXPECT_HEALTHY(t, h.f.k);
    /* Moved past the last object. */
    s->out[out_i / 64] ^= out_bit;
    s->out[past / 64] ^= past_bit;
    EXPECT_CORRUPT(t, h.f.k, "slab");
    s->out[out_i / 64] ^= out_bit;
    s->out[past / 64] ^= past_bit;
    KT_EXPECT_HEALTHY(t, h.f.k);
    kt_heap_down(&h);
}

/* A link of the depot or of a slab list that leads nowhere: kmm_check
 * reports it, and follows it no further (it would read whatever is
 * there, or fault). */
KTEST(heap_inside, kmm_check_sees_a_depot_or_slab_list_link_that_leads_nowhere)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    kt_heap_warm(t, &h);
    /* A depot with full and empty magazines: a full stack's worth of
     * frees beyond it, then a stack emptied and loaded from the depot. */
    enum { OBJS = 600 };
    static void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 64, 0)) != NULL);
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    for (unsigned i = 0; i < 200; i++)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 64, 0)) != NULL);
    struct kmm_cache *c = k->heap.classes[heap_class_of(&k->heap, 64)];
    KT_ASSERT(t, c->full != NULL && c->empty != NULL && c->lists[SLAB_FULL] != NULL);
    KT_EXPECT_HEALTHY(t, k);
    static const uintptr_t nowhere[] = {
        0x10,                         /* low memory */
        UINT64_C(0x0000800000000000), /* not canonical */
    };
    for (size_t i = 0; i < N(nowhere); i++) {
        struct heap_mag *was = c->full->next;
        c->full->next = (struct heap_mag *)nowhere[i];
        EXPECT_CORRUPT(t, k, "magazine");
        c->full->next = was;
        was = c->empty->next;
        c->empty->next = (struct heap_mag *)nowhere[i];
        EXPECT_CORRUPT(t, k, "magazine");
        c->empty->next = was;
        struct slab *s = c->lists[SLAB_FULL], *next = s->next;
        s->next = (struct slab *)nowhere[i];
        EXPECT_CORRUPT(t, k, "slab record");
        s->next = next;
        KT_EXPECT_HEALTHY(t, k);
    }
    for (unsigned i = 0; i < 200; i++)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    kt_heap_settle(&h);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

/* The structure's colour (where in its pages it starts) and the heap's
 * count of the bytes in all depots are walked too. */
KTEST(heap_inside, kmm_check_sees_a_wrong_colour_or_depot_budget)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    struct kmm_cache *c = fill_depot(t, k);
    KT_ASSERT(t, c != NULL && c->depot_objs != 0);
    KT_EXPECT_HEALTHY(t, k);
    size_t colour = c->colour;
    c->colour = colour ^ 64;
    EXPECT_CORRUPT(t, k, "colour");
    c->colour = colour;
    KT_EXPECT_HEALTHY(t, k);
    atomic_fetch_add(&k->heap.depot_bytes, 64);
    EXPECT_CORRUPT(t, k, "the depots hold");
    atomic_fetch_sub(&k->heap.depot_bytes, 64);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_settle(&h);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_inside, kmm_check_sees_a_wrong_class_table_entry_or_stack_pointer)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 2))
        return;
    struct kmm *k = h.f.k;
    void *a = kmm_malloc(k, 64, 0), *b = kmm_malloc(k, 256, 0);
    KT_ASSERT(t, a != NULL && b != NULL);
    KT_EXPECT_HEALTHY(t, k);
    /* kmm_malloc's one-load table sends 64 bytes to the 256-byte class. */
    struct kmm_cache **slot = &k->heap.small[64 / 16], *was = *slot;
    *slot = k->heap.classes[heap_class_of(&k->heap, 256)];
    EXPECT_CORRUPT(t, k, "kmm_malloc's table");
    *slot = was;
    KT_EXPECT_HEALTHY(t, k);
    /* A CPU's stack pointer outside its cache, then onto the other CPU's. */
    struct kmm_cache *c = k->heap.classes[heap_class_of(&k->heap, 64)];
    struct heap_cpu *stack = c->stack[1];
    c->stack[1] = (struct heap_cpu *)(uintptr_t)0x10;
    EXPECT_CORRUPT(t, k, "stack at");
    c->stack[1] = c->stack[0];
    EXPECT_CORRUPT(t, k, "stack at");
    c->stack[1] = stack;
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, kmm_free(k, a), KMM_OK);
    KT_EXPECT_EQ(t, kmm_free(k, b), KMM_OK);
    kt_heap_settle(&h);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_inside, kmm_check_sees_a_slab_page_that_lost_its_way_to_the_head)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    /* A class of several pages per slab; an object in a later page. */
    enum { OBJS = 8 };
    void *o[OBJS];
    for (unsigned i = 0; i < OBJS; i++)
        KT_ASSERT(t, (o[i] = kmm_malloc(k, 1792, 0)) != NULL);
    struct kmm_cache *c = k->heap.classes[heap_class_of(&k->heap, 1792)];
    KT_ASSERT(t, c->order >= 1);
    unsigned later = OBJS;
    for (unsigned i = 0; i < OBJS && later == OBJS; i++)
        if (((uintptr_t)o[i] - k->direct_map) & (((uint64_t)KMM_PAGE_SIZE << c->order) - 1) &
            ~(uint64_t)(KMM_PAGE_SIZE - 1))
            later = i;
    KT_ASSERT(t, later < OBJS);
    struct kmm_frame *f = (struct kmm_frame *)pmm_frame_lookup(
        &k->pmm, ((uintptr_t)o[later] - k->direct_map) >> KMM_PAGE_SHIFT);
    KT_ASSERT(t, f != NULL);
    KT_EXPECT_HEALTHY(t, k);
    uint8_t was = f->order;
    f->order = 0; /* the hop to the head lost */
    EXPECT_CORRUPT(t, k, "carries order");
    f->order = was;
    KT_EXPECT_HEALTHY(t, k);
    for (unsigned i = 0; i < OBJS; i++)
        KT_EXPECT_EQ(t, kmm_free(k, o[i]), KMM_OK);
    kt_heap_settle(&h);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}

KTEST(heap_inside, every_walk_of_the_caches_gives_preemption_back)
{
    static struct kt_heap h;
    if (!kt_heap_up(t, &h, ram32, N(ram32), 1))
        return;
    struct kmm *k = h.f.k;
    int depth = hosted_preempt_depth;
    void *p = kmm_malloc(k, 64, 0);
    KT_ASSERT(t, p != NULL);
    struct kmm_cache *c = kmm_cache_create(k, "walked", 48, 16, NULL, 0);
    KT_ASSERT(t, c != NULL);
    struct kmm_heap_stats st;
    kmm_heap_stats(k, &st);
    KT_EXPECT_EQ(t, hosted_preempt_depth, depth);
    KT_EXPECT(t, kmm_heap_cache_at(k, 0) != NULL);
    KT_EXPECT_EQ(t, hosted_preempt_depth, depth);
    KT_EXPECT_HEALTHY(t, k);
    KT_EXPECT_EQ(t, hosted_preempt_depth, depth);
    kmm_heap_shrink(k);
    KT_EXPECT_EQ(t, hosted_preempt_depth, depth);
    KT_EXPECT_EQ(t, kmm_cache_destroy(k, c), KMM_OK);
    KT_EXPECT_EQ(t, hosted_preempt_depth, depth);
    KT_EXPECT_EQ(t, kmm_free(k, p), KMM_OK);
    kt_heap_settle(&h);
    KT_EXPECT_HEALTHY(t, k);
    kt_heap_down(&h);
}
