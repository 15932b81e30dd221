/*
 * test_misuse.c - the one misuse service: every layer's rejected call is
 * counted once in its (layer, class) cell, logged once with the call and the
 * caller, shown by the per-layer figures and the report, and changes nothing.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB (UINT64_C(1) << 20)

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

/*
 * Expects the call that returned got to have been rejected with err,
 * counted once in cell (layer, what) and nowhere else, and logged in exactly
 * one error line that contains needle and names the caller; kmm_check clean.
 */
static void expect_cell_at(struct ktest *t, struct kt_kmm *f, const struct kmm_misuse_stats *before,
                           unsigned long lines_before, int got, int err, unsigned layer,
                           unsigned what, const char *needle, const char *file, int line)
{
    struct kmm_misuse_stats after;
    kmm_misuse_stats(f->k, &after);
    if (got != err)
        ktest_fail_at(t, file, line, "returned %s, want %s", kmm_strerror(got), kmm_strerror(err));
    for (unsigned l = 0; l < KMM_LAYER_COUNT; l++)
        for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++)
            if (after.count[l][m] != before->count[l][m] + (l == layer && m == what))
                ktest_fail_at(t, file, line, "cell %s/%s went %llu -> %llu", kmm_layer_name(l),
                              kmm_misuse_name(m), (unsigned long long)before->count[l][m],
                              (unsigned long long)after.count[l][m]);
    if (after.total != before->total + 1 ||
        after.layer_total[layer] != before->layer_total[layer] + 1)
        ktest_fail_at(t, file, line, "totals went %llu -> %llu", (unsigned long long)before->total,
                      (unsigned long long)after.total);
    unsigned long lines = kt_machine_log_count(f->m, KMM_LOG_ERR) - lines_before;
    if (lines != 1)
        ktest_fail_at(t, file, line, "%lu error lines, want 1", lines);
    const char *last = kt_machine_last_error(f->m);
    if (!ktest_contains(last, needle) || !ktest_contains(last, ", caller "))
        ktest_fail_at(t, file, line, "logged \"%s\", want \"%s\" and the caller", last, needle);
    kt_expect_healthy_at(t, f->k, file, line);
}

/* Runs call and checks it as expect_cell_at says. */
#define EXPECT_CELL(t, f, call, err, layer, what, needle)                                          \
    do {                                                                                           \
        struct kmm_misuse_stats b_;                                                                \
        kmm_misuse_stats((f)->k, &b_);                                                             \
        unsigned long l_ = kt_machine_log_count((f)->m, KMM_LOG_ERR);                              \
        int got_ = (call);                                                                         \
        expect_cell_at((t), (f), &b_, l_, got_, (err), (layer), (what), (needle), __FILE__,        \
                       __LINE__);                                                                  \
    } while (0)

static uint64_t no_scan(struct kmm *k, void *ctx, uint64_t want, kmm_gfp_t flags)
{
    (void)k;
    (void)ctx;
    (void)want;
    (void)flags;
    return 0;
}

KTEST(misuse, each_layer_counts_its_rejections_in_its_own_cell_once)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 2, 0))
        return;
    EXPECT_CELL(t, &f, kmm_page_free(f.k, 8 * MIB + 1, 0), KMM_EINVAL, KMM_LAYER_PAGE,
                KMM_MISUSE_UNALIGNED, "kmm_page_free");
    EXPECT_CELL(t, &f, kmm_pages_free(f.k, 8 * MIB, 0), KMM_EINVAL, KMM_LAYER_PAGE,
                KMM_MISUSE_BAD_ORDER, "kmm_pages_free");
    EXPECT_CELL(t, &f, kmm_page_drain_offline_cpu(f.k, 2), KMM_EINVAL, KMM_LAYER_PAGE,
                KMM_MISUSE_ABSENT, "kmm_page_drain_offline_cpu(2)");
    EXPECT_CELL(t, &f, kmm_page_add_memory(f.k, 8 * MIB, 4096, KMM_MEM_USABLE), KMM_EBUSY,
                KMM_LAYER_GROW, KMM_MISUSE_BUSY, "kmm_page_add_memory");
    EXPECT_CELL(t, &f, kmm_shrinker_register(f.k, NULL), KMM_EINVAL, KMM_LAYER_RECLAIM,
                KMM_MISUSE_BAD_ARG, "kmm_shrinker_register");
    struct kmm_shrinker s = {.name = "never-registered", .scan = no_scan};
    EXPECT_CELL(t, &f, kmm_shrinker_unregister(f.k, &s), KMM_ENOENT, KMM_LAYER_RECLAIM,
                KMM_MISUSE_ABSENT, "not registered");
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    EXPECT_CELL(t, &f, kmm_vm_map(ks, UINT64_C(0xffff800000001001), 8 * MIB, 4096, KMM_PROT_READ),
                KMM_EINVAL, KMM_LAYER_VM, KMM_MISUSE_UNALIGNED, "kmm_vm_map");
    EXPECT_CELL(t, &f, kmm_kva_free(f.k, 0x1000), KMM_ERANGE, KMM_LAYER_KVA, KMM_MISUSE_OUTSIDE,
                "kmm_kva_free");
    kt_kmm_down(&f);
}

#define PAGE   UINT64_C(4096)
#define KERNEL UINT64_C(0xffff800000000000) /* the kernel half's first page (4 levels) */

/* The page layer's classes mean the same in the vm and kva layers: an
 * unaligned address is UNALIGNED, a non-canonical one OUTSIDE, an address
 * inside a block NOT_BLOCK, a handle of the wrong kind BAD_HANDLE. */
KTEST(misuse, the_vm_layer_classes_its_rejections_as_the_page_layer_does)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    const unsigned r = KMM_PROT_READ, vm = KMM_LAYER_VM;
    uint64_t pair = kmm_page_alloc(f.k, 1, 0), pa = kmm_page_alloc(f.k, 0, 0);
    KT_ASSERT(t, pair && pa);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, KERNEL, pa, PAGE, r), KMM_OK);
    struct kmm_vm_run run;
    struct kmm_vm_translation tr;
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, ks);

    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pa + 1, PAGE, r), KMM_EINVAL, vm,
                KMM_MISUSE_UNALIGNED, "physical address not page aligned");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pa, 3, r), KMM_EINVAL, vm,
                KMM_MISUSE_UNALIGNED, "not page aligned");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, UINT64_C(0x0000800000000000), pa, PAGE, r), KMM_EINVAL, vm,
                KMM_MISUSE_OUTSIDE, "not canonical");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, UINT64_C(0x00007ffffffff000), pa, 2 * PAGE, r), KMM_EINVAL,
                vm, KMM_MISUSE_OUTSIDE, "kmm_vm_map");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, UINT64_C(1) << 52, PAGE, r | KMM_CACHE_UC),
                KMM_EINVAL, vm, KMM_MISUSE_OUTSIDE, "beyond 52 bits");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, 64 * MIB, PAGE, r), KMM_ERANGE, vm,
                KMM_MISUSE_OUTSIDE, "not RAM");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pa, 0, r), KMM_EINVAL, vm, KMM_MISUSE_BAD_ARG,
                "size 0");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pa, PAGE, r | 0x80000000u), KMM_EINVAL, vm,
                KMM_MISUSE_BAD_FLAGS, "unknown flags");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pa, PAGE, r | KMM_PROT_USER), KMM_EINVAL, vm,
                KMM_MISUSE_BAD_FLAGS, "user access");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pa, PAGE, r | KMM_CACHE_UC), KMM_EINVAL, vm,
                KMM_MISUSE_BAD_FLAGS, "KMM_MAP_ALIAS");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL + PAGE, pair + PAGE, PAGE, r | KMM_MAP_OWNED),
                KMM_ESTATE, vm, KMM_MISUSE_NOT_BLOCK, "not an allocated single page");
    EXPECT_CELL(t, &f, kmm_vm_map(ks, KERNEL, pa, PAGE, r), KMM_EBUSY, vm, KMM_MISUSE_BUSY,
                "mapped already");
    EXPECT_CELL(t, &f, kmm_vm_unmap(ks, KERNEL + PAGE, PAGE), KMM_ENOENT, vm, KMM_MISUSE_ABSENT,
                "not mapped");
    EXPECT_CELL(t, &f, kmm_vm_protect(ks, KERNEL, PAGE, 0x4000u), KMM_EINVAL, vm,
                KMM_MISUSE_BAD_FLAGS, "unknown protection bits");
    /* Each call logs its own name. */
    EXPECT_CELL(t, &f, kmm_vm_protect_g(ks, KERNEL, PAGE, r, NULL), KMM_EINVAL, vm,
                KMM_MISUSE_BAD_ARG, "kmm_vm_protect_g(");
    EXPECT_CELL(t, &f, kmm_vm_protect_g(ks, KERNEL + 1, PAGE, r, &g), KMM_EINVAL, vm,
                KMM_MISUSE_UNALIGNED, "kmm_vm_protect_g(");
    EXPECT_CELL(t, &f, kmm_vm_unmap_g(ks, KERNEL + 1, PAGE, &g), KMM_EINVAL, vm,
                KMM_MISUSE_UNALIGNED, "kmm_vm_unmap_g(");
    EXPECT_CELL(t, &f, kmm_vm_translate(ks, UINT64_C(0x0000800000000000), &tr), KMM_EINVAL, vm,
                KMM_MISUSE_OUTSIDE, "kmm_vm_translate");
    EXPECT_CELL(t, &f, kmm_vm_translate(ks, KERNEL, NULL), KMM_EINVAL, vm, KMM_MISUSE_BAD_ARG,
                "kmm_vm_translate");
    EXPECT_CELL(t, &f, kmm_vm_query(ks, KERNEL + 1, KERNEL + PAGE, &run), KMM_EINVAL, vm,
                KMM_MISUSE_UNALIGNED, "kmm_vm_query");
    EXPECT_CELL(t, &f, kmm_vm_query(ks, KERNEL, KERNEL, &run), KMM_EINVAL, vm, KMM_MISUSE_BAD_ARG,
                "kmm_vm_query");
    EXPECT_CELL(t, &f, kmm_vm_query(ks, 0, UINT64_MAX, &run), KMM_EINVAL, vm, KMM_MISUSE_OUTSIDE,
                "kmm_vm_query");
    EXPECT_CELL(t, &f, kmm_aspace_destroy(f.k, NULL), KMM_EINVAL, vm, KMM_MISUSE_BAD_ARG,
                "kmm_aspace_destroy");
    EXPECT_CELL(t, &f, kmm_aspace_destroy(f.k, ks), KMM_EINVAL, vm, KMM_MISUSE_BAD_HANDLE,
                "kmm_aspace_destroy");
    kmm_tlb_finish(&g);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, KERNEL, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pair, 1), KMM_OK);
    kt_kmm_down(&f);
}

KTEST(misuse, the_kva_layer_classes_its_rejections_as_the_page_layer_does)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    const unsigned kva = KMM_LAYER_KVA;
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    uint8_t *p = kmm_vmalloc(f.k, 2 * PAGE, 0);
    uint64_t pg = kmm_page_alloc(f.k, 0, 0), raw = 0, out = 0, unaligned = pg + 8;
    uint64_t device = 64 * MIB;
    void *v = kmm_vmap(f.k, &pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, p && pg && v && kmm_kva_alloc(f.k, PAGE, &raw) == KMM_OK);
    uint64_t window = KMM_KVA_DEFAULT_BASE;

    EXPECT_CELL(t, &f, kmm_vfree(f.k, p + PAGE), KMM_EINVAL, kva, KMM_MISUSE_NOT_BLOCK,
                "inside an area");
    EXPECT_CELL(t, &f, kmm_vfree(f.k, p + 2 * PAGE), KMM_EINVAL, kva, KMM_MISUSE_NOT_BLOCK,
                "guard page");
    EXPECT_CELL(t, &f, kmm_vfree(f.k, p + 1), KMM_EINVAL, kva, KMM_MISUSE_UNALIGNED,
                "not page aligned");
    EXPECT_CELL(t, &f, kmm_vfree(f.k, (void *)(uintptr_t)(window - PAGE)), KMM_ERANGE, kva,
                KMM_MISUSE_OUTSIDE, "window");
    EXPECT_CELL(t, &f, kmm_vfree(f.k, v), KMM_EINVAL, kva, KMM_MISUSE_BAD_HANDLE, "kmm_vunmap");
    EXPECT_CELL(t, &f, kmm_kva_free(f.k, (uint64_t)(uintptr_t)p), KMM_EINVAL, kva,
                KMM_MISUSE_BAD_HANDLE, "kmm_vfree");
    EXPECT_CELL(t, &f, kmm_vmalloc(f.k, 0, 0) ? KMM_OK : KMM_EINVAL, KMM_EINVAL, kva,
                KMM_MISUSE_BAD_ARG, "size 0");
    EXPECT_CELL(t, &f, kmm_vmalloc(f.k, (size_t)-1, 0) ? KMM_OK : KMM_EINVAL, KMM_EINVAL, kva,
                KMM_MISUSE_BAD_ORDER, "larger");
    EXPECT_CELL(t, &f, kmm_vmalloc(f.k, PAGE, KMM_GFP_ATOMIC) ? KMM_OK : KMM_EINVAL, KMM_EINVAL,
                kva, KMM_MISUSE_BAD_FLAGS, "ATOMIC");
    EXPECT_CELL(t, &f, kmm_vmap(f.k, NULL, 1, KMM_PROT_READ) ? KMM_OK : KMM_EINVAL, KMM_EINVAL, kva,
                KMM_MISUSE_BAD_ARG, "NULL");
    EXPECT_CELL(t, &f, kmm_vmap(f.k, &pg, 1, KMM_PROT_USER) ? KMM_OK : KMM_EINVAL, KMM_EINVAL, kva,
                KMM_MISUSE_BAD_FLAGS, "protection");
    EXPECT_CELL(t, &f, kmm_vmap(f.k, &unaligned, 1, KMM_PROT_READ) ? KMM_OK : KMM_EINVAL,
                KMM_EINVAL, kva, KMM_MISUSE_UNALIGNED, "aligned");
    EXPECT_CELL(t, &f, kmm_vmap(f.k, &device, 1, KMM_PROT_READ) ? KMM_OK : KMM_ERANGE, KMM_ERANGE,
                kva, KMM_MISUSE_OUTSIDE, "not RAM");
    EXPECT_CELL(t, &f, kmm_kva_alloc(f.k, 0, &out), KMM_EINVAL, kva, KMM_MISUSE_BAD_ARG, "size 0");
    EXPECT_CELL(t, &f, kmm_kva_alloc(f.k, PAGE, NULL), KMM_EINVAL, kva, KMM_MISUSE_BAD_ARG, "NULL");
    KT_ASSERT_EQ(t, kmm_vm_map(ks, raw, pg, PAGE, KMM_PROT_READ), KMM_OK);
    EXPECT_CELL(t, &f, kmm_kva_free(f.k, raw), KMM_EBUSY, kva, KMM_MISUSE_BUSY, "still mapped");
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, raw, PAGE), KMM_OK);

    KT_ASSERT_EQ(t, kmm_vfree(f.k, p), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vunmap(f.k, v), KMM_OK);
    KT_ASSERT_EQ(t, kmm_kva_free(f.k, raw), KMM_OK);
    /* Once an area is gone, the window cannot tell its address from one
     * never handed out (it keeps no history): ABSENT. */
    EXPECT_CELL(t, &f, kmm_vfree(f.k, p), KMM_ENOENT, kva, KMM_MISUSE_ABSENT, "freed already");
    KT_EXPECT_EQ(t, kmm_page_free(f.k, pg, 0), KMM_OK);
    kt_kmm_down(&f);
}

/* The caller a wrapper passes (a compatibility layer's own caller). */
#define WRAPPED_CALLER ((const void *)(uintptr_t)0x1234abcd)
#define WRAPPED_NEEDLE "1234abcd"

/* An allocation's refusal as an error value, for EXPECT_CELL. */
static int refused_if_zero(uint64_t got)
{
    return got ? KMM_OK : KMM_EINVAL;
}

KTEST(misuse, the_caller_forms_log_the_wrappers_caller_in_the_same_cell)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    struct kmm_aspace *ks = kmm_kernel_aspace(f.k);
    const void *w = WRAPPED_CALLER;
    const unsigned r = KMM_PROT_READ;
    struct kmm_vm_translation tr;
    uint64_t out = 0;
    EXPECT_CELL(t, &f, refused_if_zero(kmm_page_alloc_caller(f.k, KMM_PAGE_MAX_ORDER + 1, 0, w)),
                KMM_EINVAL, KMM_LAYER_PAGE, KMM_MISUSE_BAD_ORDER, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_page_free_caller(f.k, 8 * MIB + 1, 0, w), KMM_EINVAL, KMM_LAYER_PAGE,
                KMM_MISUSE_UNALIGNED, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, refused_if_zero(kmm_run_alloc_caller(f.k, 0, 0, 0, 0, w)), KMM_EINVAL,
                KMM_LAYER_PAGE, KMM_MISUSE_BAD_ORDER, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_run_free_caller(f.k, 8 * MIB, 0, w), KMM_EINVAL, KMM_LAYER_PAGE,
                KMM_MISUSE_BAD_ORDER, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_vm_map_caller(ks, KERNEL + 1, 8 * MIB, PAGE, r, w), KMM_EINVAL,
                KMM_LAYER_VM, KMM_MISUSE_UNALIGNED, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_vm_unmap_caller(ks, KERNEL + 1, PAGE, w), KMM_EINVAL, KMM_LAYER_VM,
                KMM_MISUSE_UNALIGNED, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_vm_protect_caller(ks, KERNEL + 1, PAGE, r, w), KMM_EINVAL, KMM_LAYER_VM,
                KMM_MISUSE_UNALIGNED, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_vm_translate_caller(ks, UINT64_C(0x0000800000000000), &tr, w),
                KMM_EINVAL, KMM_LAYER_VM, KMM_MISUSE_OUTSIDE, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, refused_if_zero((uint64_t)(uintptr_t)kmm_vmalloc_caller(f.k, 0, 0, w)),
                KMM_EINVAL, KMM_LAYER_KVA, KMM_MISUSE_BAD_ARG, WRAPPED_NEEDLE);
    EXPECT_CELL(t, &f, kmm_kva_alloc_caller(f.k, 0, &out, w), KMM_EINVAL, KMM_LAYER_KVA,
                KMM_MISUSE_BAD_ARG, WRAPPED_NEEDLE);
    /* Accepted, they are the plain calls. */
    uint64_t pa = kmm_page_alloc_caller(f.k, 0, 0, w),
             run = kmm_run_alloc_caller(f.k, 3, 0, 0, 0, w);
    KT_ASSERT(t, pa && run);
    KT_EXPECT_EQ(t, kmm_vm_map_caller(ks, KERNEL, pa, PAGE, r, w), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_translate_caller(ks, KERNEL, &tr, w), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, pa);
    KT_EXPECT_EQ(t, kmm_vm_protect_caller(ks, KERNEL, PAGE, r | KMM_PROT_WRITE, w), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap_caller(ks, KERNEL, PAGE, w), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free_caller(f.k, pa, 0, w), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free_caller(f.k, run, 3, w), KMM_OK);
    void *v = kmm_vmalloc_caller(f.k, PAGE, 0, w);
    KT_ASSERT(t, v != NULL && kmm_kva_alloc_caller(f.k, PAGE, &out, w) == KMM_OK);
    KT_EXPECT_EQ(t, kmm_vfree(f.k, v), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(f.k, out), KMM_OK);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST(misuse, the_layers_figures_are_their_rows_of_the_table)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    kmm_page_free(f.k, 8 * MIB + 1, 0);
    kmm_page_free(f.k, 8 * MIB + 2, 0);
    kmm_shrinker_unregister(f.k, NULL);
    kmm_vm_unmap(kmm_kernel_aspace(f.k), 0x1001, 4096);
    kmm_vfree(f.k, (void *)0x1000);
    struct kmm_misuse_stats ms;
    kmm_misuse_stats(f.k, &ms);
    struct kmm_page_stats ps;
    kmm_page_stats(f.k, &ps);
    uint64_t page = 0;
    for (unsigned m = 0; m < KMM_MISUSE_COUNT; m++) {
        KT_EXPECT_EQ(t, ps.misuse[m], ms.count[KMM_LAYER_PAGE][m]);
        page += ps.misuse[m];
    }
    KT_EXPECT_EQ(t, page, 2);
    KT_EXPECT_EQ(t, ms.layer_total[KMM_LAYER_PAGE], 2);
    KT_EXPECT_EQ(t, ps.shrinker_misuse, ms.layer_total[KMM_LAYER_RECLAIM]);
    KT_EXPECT_EQ(t, ps.shrinker_misuse, 1);
    struct kmm_vm_stats vs;
    kmm_vm_stats(kmm_kernel_aspace(f.k), &vs);
    KT_EXPECT_EQ(t, vs.misuse, ms.layer_total[KMM_LAYER_VM]);
    KT_EXPECT_EQ(t, vs.misuse, 1);
    struct kmm_vmalloc_stats ks;
    kmm_vmalloc_stats(f.k, &ks);
    KT_EXPECT_EQ(t, ks.misuse, ms.layer_total[KMM_LAYER_KVA]);
    KT_EXPECT_EQ(t, ks.misuse, 1);
    KT_EXPECT_EQ(t, ms.total, 5);
    kt_kmm_down(&f);
}

KTEST(misuse, the_report_shows_each_layer_with_its_classes)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, 0))
        return;
    static struct kt_text tx;
    const char *buf = tx.buf;
    kmm_report(f.k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT(t, ktest_contains(buf, "Rejected calls (misuse): 0\n"));
    kmm_page_free(f.k, 8 * MIB + 1, 0);
    kmm_page_free(f.k, 8 * MIB + 1, 0);
    kmm_shrinker_register(f.k, NULL);
    tx.len = 0;
    kmm_report(f.k, &(struct kmm_sink){kt_text_write, &tx});
    KT_EXPECT(t, ktest_contains(buf, "Rejected calls (misuse): 3\n"));
    KT_EXPECT(t, ktest_contains(buf, "  page     2: unaligned 2\n"));
    KT_EXPECT(t, ktest_contains(buf, "  reclaim  1: bad-arg 1\n"));
    KT_EXPECT(t, !ktest_contains(buf, "  vm "));
    kt_kmm_down(&f);
}

KTEST(misuse, every_layer_and_class_has_its_own_name)
{
    for (unsigned a = 0; a < KMM_LAYER_COUNT; a++) {
        KT_EXPECT(t, kmm_layer_name(a)[0] != '?');
        for (unsigned b = a + 1; b < KMM_LAYER_COUNT; b++)
            KT_EXPECT(t, !ktest_streq(kmm_layer_name(a), kmm_layer_name(b)));
    }
    for (unsigned a = 0; a < KMM_MISUSE_COUNT; a++) {
        KT_EXPECT(t, kmm_misuse_name(a)[0] != '?');
        for (unsigned b = a + 1; b < KMM_MISUSE_COUNT; b++)
            KT_EXPECT(t, !ktest_streq(kmm_misuse_name(a), kmm_misuse_name(b)));
    }
    KT_EXPECT(t, kmm_layer_name(KMM_LAYER_COUNT)[0] == '?');
    KT_EXPECT(t, kmm_misuse_name(KMM_MISUSE_COUNT)[0] == '?');
}
