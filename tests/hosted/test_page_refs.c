/*
 * test_page_refs.c - the reference count's limit: kmm_page_get refuses the
 * reference beyond KMM_PAGE_REFS_MAX, counted and logged, instead of
 * wrapping or panicking. White-box and hosted only: 2^31 gets would take
 * a minute, so the test sets a frame's count near the limit through the
 * library's private headers, then puts it back.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#include "internal.h"
#include "pmm/pmm.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)

static const struct kmm_region map[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

/* The descriptor's count, set under the zone lock as the library would. */
static void set_count(struct kmm *k, uint64_t pa, uint32_t count)
{
    struct kmm_frame *f = pmm_frame(&k->pmm, pa >> KMM_PAGE_SHIFT);
    struct kmm_zone *z = pmm_zone_of(&k->pmm, f);
    kmm_irqstate_t s = kmm_lock_irqsave(&z->lock);
    __atomic_store_n(&f->count, count, __ATOMIC_RELAXED);
    kmm_unlock_irqrestore(&z->lock, s);
}

KTEST(page_refs, a_get_beyond_the_reference_limit_is_refused)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map, N(map), 1, 0));
    uint64_t pa = kmm_page_alloc(f.k, 1, 0);
    KT_ASSERT(t, pa != 0);
    set_count(f.k, pa, KMM_PAGE_REFS_MAX - 1);
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_OK); /* the last one there is */
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    kt_expect_misuse(t, &f, kmm_page_get(f.k, pa), KMM_EBUSY, KMM_MISUSE_LIMIT, &s,
                     "one reference too many", "kmm_page_get");
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 1), KMM_OK); /* drops one: a get fits again */
    KT_EXPECT_EQ(t, kmm_page_get(f.k, pa), KMM_OK);
    set_count(f.k, pa, 1);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 1), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(page_refs, a_mapped_page_has_the_same_limit_for_its_callers)
{
    struct kt_kmm f;
    KT_ASSERT(t, kt_kmm_up(t, &f, map, N(map), 1, 0));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0), va = UINT64_C(0xffffc00000000000);
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va, pa, PAGE, KMM_PROT_READ | KMM_MAP_OWNED), KMM_OK);
    /* The mapping's reference does not count against the callers' limit. */
    set_count(f.k, pa, FRAME_MAPPED | KMM_PAGE_REFS_MAX);
    struct kmm_page_stats s;
    kmm_page_stats(f.k, &s);
    kt_expect_misuse(t, &f, kmm_page_get(f.k, pa), KMM_EBUSY, KMM_MISUSE_LIMIT, &s,
                     "one reference too many", "kmm_page_get");
    set_count(f.k, pa, FRAME_MAPPED | 1);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, va, PAGE), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}
