/*
 * test_vm_random.c - random map / unmap / protect over a window, checked
 * after every step against a shadow model through the independent software
 * MMU (tests/ktest/soft_mmu.h), in 4- and 5-level mode, in the kernel half
 * and in a user space; with page accounting: no leaked table, no leaked
 * owned frame.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "soft_mmu.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define MIB          (UINT64_C(1) << 20)
#define PAGE         UINT64_C(4096)
#define WINDOW_PAGES 1536 /* 6 MiB: four page tables' worth, unaligned start */
#define STEPS        1500

static const struct kmm_region map32[] = {{1 * MIB, 31 * MIB, KMM_MEM_USABLE}};

static struct {
    uint64_t pa[WINDOW_PAGES]; /* 0: unmapped */
    unsigned prot[WINDOW_PAGES];
    bool owned[WINDOW_PAGES];
} shadow;

static const void *phys(void *ctx, uint64_t pa)
{
    return pa < 32 * MIB ? kt_machine_phys(ctx, pa) : 0;
}

/* Whether the software MMU sees page i exactly as the shadow says. */
static bool page_matches(const struct smmu *mmu, uint64_t root, uint64_t va, unsigned i,
                         bool user_space)
{
    struct smmu_result rd = smmu_translate(mmu, root, va, SMMU_READ, user_space);
    if (!shadow.pa[i])
        return !rd.ok && rd.fault == SMMU_FAULT_NOT_PRESENT;
    unsigned p = shadow.prot[i];
    if (!rd.ok || rd.pa != shadow.pa[i] || rd.page_size != PAGE)
        return false;
    struct smmu_result wr = smmu_translate(mmu, root, va, SMMU_WRITE, user_space);
    struct smmu_result ex = smmu_translate(mmu, root, va, SMMU_EXEC, user_space);
    return wr.ok == ((p & KMM_PROT_WRITE) != 0) && ex.ok == ((p & KMM_PROT_EXEC) != 0) &&
           rd.global == ((p & KMM_PROT_GLOBAL) != 0) && rd.user == user_space;
}

struct count {
    size_t leaves;
};

static void count_leaf(void *ctx, uint64_t va, const struct smmu_result *r)
{
    (void)va;
    struct count *c = ctx;
    c->leaves += r->ok;
}

static void run_random(struct ktest *t, unsigned levels, bool user_space, uint64_t seed)
{
    struct kt_machine *m = kt_machine_create(t, map32, 1);
    if (!m)
        return;
    struct kmm_config cfg = {.port = kt_machine_port(m),
                             .regions = map32,
                             .region_count = 1,
                             .cpu_count = 1,
                             .paging_levels = levels};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    kmm_page_drain_cpu(k);
    struct kmm_page_stats ps0, ps;
    kmm_page_stats(k, &ps0);
    struct kmm_aspace *as = kmm_kernel_aspace(k);
    if (user_space)
        KT_ASSERT_EQ(t, kmm_aspace_create(k, &as), KMM_OK);
    struct kmm_vm_stats vs0, vs;
    kmm_vm_stats(as, &vs0);
    uint64_t base =
        user_space ? UINT64_C(0x0000000040000000) - 5 * PAGE
                   : (levels == 5 ? UINT64_C(0xff00000040000000) : UINT64_C(0xffffffff90000000)) -
                         5 * PAGE;
    unsigned user = user_space ? KMM_PROT_USER : 0;
    struct smmu mmu = {.phys = phys, .ctx = m, .la57 = levels == 5, .nxe = true, .wp = true};
    kt_fill(&shadow, 0, sizeof(shadow));

    /* A pool of frames to map: allocated single pages. */
    static uint64_t pool[256];
    for (unsigned i = 0; i < 256; i++)
        KT_ASSERT((t), (pool[i] = kmm_page_alloc(k, 0, 0)) != 0);

    for (int step = 0; step < STEPS && !ktest_failed(t); step++) {
        unsigned i = (unsigned)(kt_rng(&seed) % WINDOW_PAGES);
        unsigned n = 1 + (unsigned)(kt_rng(&seed) % 24);
        if (i + n > WINDOW_PAGES)
            n = WINDOW_PAGES - i;
        uint64_t va = base + (uint64_t)i * PAGE;
        unsigned mapped = 0;
        for (unsigned j = 0; j < n; j++)
            mapped += shadow.pa[i + j] != 0;
        unsigned op = (unsigned)(kt_rng(&seed) % 3);
        unsigned prot = KMM_PROT_READ | user | (unsigned)(kt_rng(&seed) % 2) * KMM_PROT_WRITE |
                        (unsigned)(kt_rng(&seed) % 2) * KMM_PROT_EXEC;
        if (!user_space && kt_rng(&seed) % 4 == 0)
            prot |= KMM_PROT_GLOBAL;
        if (op == 0) { /* map a run of consecutive pool frames */
            unsigned from = (unsigned)(kt_rng(&seed) % (256 - n + 1));
            bool contiguous = true;
            for (unsigned j = 1; j < n; j++)
                contiguous &= pool[from + j] == pool[from] + j * PAGE;
            if (!contiguous)
                n = 1;
            bool owned = kt_rng(&seed) % 2;
            int err = kmm_vm_map(as, va, pool[from], (uint64_t)n * PAGE,
                                 prot | (owned ? KMM_MAP_OWNED : 0));
            bool busy = false;
            for (unsigned j = 0; j < n; j++)
                busy |= shadow.pa[i + j] != 0;
            KT_ASSERT_EQ(t, err, busy ? KMM_EBUSY : KMM_OK);
            for (unsigned j = 0; !busy && j < n; j++) {
                shadow.pa[i + j] = pool[from] + j * PAGE;
                shadow.prot[i + j] = prot;
                shadow.owned[i + j] = owned;
            }
        } else if (op == 1) {
            int err = kmm_vm_unmap(as, va, (uint64_t)n * PAGE);
            KT_ASSERT_EQ(t, err, mapped == n ? KMM_OK : KMM_ENOENT);
            for (unsigned j = 0; mapped == n && j < n; j++)
                shadow.pa[i + j] = 0;
        } else {
            int err = kmm_vm_protect(as, va, (uint64_t)n * PAGE, prot);
            KT_ASSERT_EQ(t, err, mapped == n ? KMM_OK : KMM_ENOENT);
            for (unsigned j = 0; mapped == n && j < n; j++)
                shadow.prot[i + j] = prot;
        }
        /* The whole window, as the CPU would see it. */
        for (unsigned p = 0; p < WINDOW_PAGES; p++) {
            if (!page_matches(&mmu, kmm_aspace_root(as), base + (uint64_t)p * PAGE, p,
                              user_space)) {
                ktest_fail_at(t, __FILE__, __LINE__, "step %d: page %u differs from the shadow",
                              step, p);
                break;
            }
        }
        struct count c = {0};
        smmu_collect(&mmu, kmm_aspace_root(as), base, base + WINDOW_PAGES * PAGE, count_leaf, &c);
        unsigned want = 0;
        for (unsigned p = 0; p < WINDOW_PAGES; p++)
            want += shadow.pa[p] != 0;
        KT_ASSERT_EQ(t, c.leaves, want);
        if (step % 50 == 0) {
            struct kmm_check_result r;
            if (kmm_check(k, &r) != KMM_CHECK_OK)
                ktest_fail_at(t, __FILE__, __LINE__, "step %d: %s", step, r.first);
        }
    }
    /* Unmap what is left: every table and owned frame must come back. */
    for (unsigned p = 0; p < WINDOW_PAGES; p++)
        if (shadow.pa[p])
            KT_ASSERT_EQ(t, kmm_vm_unmap(as, base + (uint64_t)p * PAGE, PAGE), KMM_OK);
    kmm_vm_stats(as, &vs);
    KT_EXPECT_EQ(t, vs.table_bytes, vs0.table_bytes);
    KT_EXPECT_EQ(t, vs.mapped_pages, 0);
    for (unsigned i = 0; i < 256; i++)
        KT_ASSERT_EQ(t, kmm_page_free(k, pool[i], 0), KMM_OK);
    if (user_space)
        KT_EXPECT_EQ(t, kmm_aspace_destroy(as), KMM_OK);
    kmm_page_drain_cpu(k);
    kmm_page_stats(k, &ps);
    KT_EXPECT_EQ(t, ps.free_pages, ps0.free_pages);
    struct kmm_check_result r;
    KT_EXPECT_EQ(t, kmm_check(k, &r), KMM_CHECK_OK);
    kmm_fini(k);
    kt_machine_destroy(m);
}

KTEST(vm_random, kernel_half_four_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 4, false, 0x4b1);
}

KTEST(vm_random, user_space_four_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 4, true, 0x4b2);
}

KTEST(vm_random, kernel_half_five_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 5, false, 0x5b1);
}

KTEST(vm_random, user_space_five_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 5, true, 0x5b2);
}
