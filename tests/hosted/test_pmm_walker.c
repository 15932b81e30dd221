/*
 * test_pmm_walker.c - kmm_check finds each kind of corruption in the page
 * allocator's structures. White-box and hosted only: it reaches into the
 * frame database through the library's private headers to break it on
 * purpose, then puts it back.
 */
#include "ktest.h"
#include "env.h"

#include <kmm/check.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#include "internal.h"
#include "pmm/pmm.h"

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

struct fixture {
    struct kt_machine *m;
    struct kmm *k;
};

static bool setup(struct ktest *t, struct fixture *f)
{
    f->m = kt_machine_create(t, map, 1);
    if (!f->m)
        return false;
    struct kmm_config cfg = {
        .port = kt_machine_port(f->m), .regions = map, .region_count = 1, .cpu_count = 1};
    return kmm_init(&cfg, &f->k) == KMM_OK;
}

/* Runs the check and expects it to report corruption whose first finding
 * contains needle. */
static void expect_corrupt(struct ktest *t, struct kmm *k, const char *needle, int line)
{
    struct kmm_check_result r;
    int status = kmm_check(k, &r);
    if (status != KMM_CHECK_CORRUPT || !ktest_contains(r.first, needle))
        ktest_fail_at(t, __FILE__, line, "status %d, first finding \"%s\", wanted \"%s\"", status,
                      r.first, needle);
}

static void expect_ok(struct ktest *t, struct kmm *k, int line)
{
    struct kmm_check_result r;
    if (kmm_check(k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, line, "after repair: %s", r.first);
}

/* Fragments the DMA32 zone (64 single pages allocated, every other one
 * freed, the CPU cache drained) so that its order-0 free list holds at least
 * two pages that cannot merge. Returns that zone; *second is the list's
 * second entry. */
static struct kmm_zone *fragment(struct kmm *k, uint32_t *second)
{
    uint64_t pages[64];
    for (unsigned i = 0; i < 64; i++)
        pages[i] = kmm_page_alloc(k, 0, KMM_GFP_DMA32);
    for (unsigned i = 0; i < 64; i += 2)
        kmm_page_free(k, pages[i], 0);
    kmm_page_drain_cpu(k);
    struct kmm_zone *z = &k->pmm.zones[0][KMM_ZONE_DMA32];
    *second =
        z->free_head[0] == KMM_PFN_NONE ? KMM_PFN_NONE : pmm_frame(&k->pmm, z->free_head[0])->next;
    return z;
}

KTEST(pmm_walker, a_broken_back_link_is_found)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    uint32_t second;
    fragment(f.k, &second);
    KT_ASSERT(t, second != KMM_PFN_NONE);
    struct kmm_frame *fa = pmm_frame(&f.k->pmm, second);
    uint32_t saved = fa->prev;
    fa->prev = 12345;
    expect_corrupt(t, f.k, "bad entry", __LINE__);
    fa->prev = saved;
    expect_ok(t, f.k, __LINE__);
    kmm_fini(f.k);
    kt_machine_destroy(f.m);
}

KTEST(pmm_walker, a_free_counter_that_disagrees_with_the_list_is_found)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    struct kmm_zone *z = &f.k->pmm.zones[0][KMM_ZONE_DMA32];
    z->free_pages++;
    expect_corrupt(t, f.k, "zone DMA32 node 0", __LINE__);
    z->free_pages--;
    z->free_blocks[3]++;
    expect_corrupt(t, f.k, "order 3", __LINE__);
    z->free_blocks[3]--;
    expect_ok(t, f.k, __LINE__);
    kmm_fini(f.k);
    kt_machine_destroy(f.m);
}

KTEST(pmm_walker, a_stray_state_change_inside_a_block_is_found)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    uint64_t pa = kmm_page_alloc(f.k, 3, 0);
    struct kmm_frame *inner = pmm_frame(&f.k->pmm, (pa >> 12) + 5);
    inner->state = FRAME_ALLOCATED;
    expect_corrupt(t, f.k, "inside the block", __LINE__);
    inner->state = FRAME_INTERIOR;
    struct kmm_frame *head = pmm_frame(&f.k->pmm, pa >> 12);
    head->count = 0;
    expect_corrupt(t, f.k, "allocated with no reference", __LINE__);
    head->count = 1;
    expect_ok(t, f.k, __LINE__);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 3), KMM_OK);
    kmm_fini(f.k);
    kt_machine_destroy(f.m);
}

KTEST(pmm_walker, a_broken_mapping_reference_is_found)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    uint64_t pa = kmm_page_alloc(f.k, 0, 0);
    uint64_t va = UINT64_C(0xffffc00000000000);
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va, pa, 4096, KMM_PROT_READ | KMM_MAP_OWNED), KMM_OK);
    struct kmm_frame *fr = pmm_frame(&f.k->pmm, pa >> 12);
    KT_EXPECT_EQ(t, fr->count, FRAME_MAPPED | 1); /* the caller's and the mapping's */
    KT_EXPECT_EQ(t, fr->prev, 1);                 /* one owned mapping */
    fr->prev = 0;
    expect_corrupt(t, f.k, "mapped owned", __LINE__);
    fr->prev = 1;
    fr->count = 1; /* the mapping's reference lost */
    expect_corrupt(t, f.k, "holds no mapping reference", __LINE__);
    fr->count = FRAME_MAPPED | 1;
    expect_ok(t, f.k, __LINE__);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, va, 4096), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_ESTATE); /* the unmap freed it */
    expect_ok(t, f.k, __LINE__);
    kmm_fini(f.k);
    kt_machine_destroy(f.m);
}

KTEST(pmm_walker, a_free_list_cycle_is_found_without_hanging)
{
    struct fixture f;
    KT_ASSERT(t, setup(t, &f));
    uint32_t second;
    struct kmm_zone *z = fragment(f.k, &second);
    KT_ASSERT(t, second != KMM_PFN_NONE);
    /* Point the second entry back at the first: a list that never ends.
     * The walk stops at the list's count (so it cannot hang) and reports the
     * first inconsistency it meets on the order-0 list. */
    struct kmm_frame *fa = pmm_frame(&f.k->pmm, second);
    uint32_t saved = fa->next;
    fa->next = z->free_head[0];
    expect_corrupt(t, f.k, "order 0", __LINE__);
    fa->next = saved;
    expect_ok(t, f.k, __LINE__);
    kmm_fini(f.k);
    kt_machine_destroy(f.m);
}
