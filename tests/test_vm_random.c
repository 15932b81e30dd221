/*
 * test_vm_random.c - random map / unmap / protect over a window, checked
 * after every step against a shadow model through the independent software
 * MMU (tests/ktest/soft_mmu.h), in 4- and 5-level mode, in the kernel half
 * and in a user space; with page accounting: no leaked table, no leaked
 * owned frame. First with 4 KiB pages only (and a variant that also maps
 * demand-zero ranges and takes faults on them), then with every page size.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "fuzz_input.h"
#include "ktest_levels.h"
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
    uint64_t pa[WINDOW_PAGES]; /* 0: unmapped (or demand-zero) */
    unsigned prot[WINDOW_PAGES];
    bool owned[WINDOW_PAGES];
    bool demand[WINDOW_PAGES]; /* a demand-zero page not touched yet (pa 0) */
} shadow;

/* Whether page i is in use: mapped, or demand-zero. */
static bool in_use(unsigned i)
{
    return shadow.pa[i] != 0 || shadow.demand[i];
}

/* What kmm_vm_fault must answer for an access (KMM_FAULT_*) to page i. */
static int fault_answer(unsigned i, unsigned access)
{
    if (!in_use(i))
        return KMM_ENOENT;
    unsigned p = shadow.prot[i];
    if (((access & KMM_FAULT_WRITE) && !(p & KMM_PROT_WRITE)) ||
        ((access & KMM_FAULT_EXEC) && !(p & KMM_PROT_EXEC)))
        return KMM_EACCES;
    return KMM_OK;
}

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

static void run_random(struct ktest *t, unsigned levels, bool user_space, uint64_t seed,
                       bool faults)
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
            mapped += in_use(i + j);
        /* Without faults the stream of choices is the one it always was. */
        unsigned op = (unsigned)(kt_rng(&seed) % (faults ? 5 : 3));
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
            bool busy = false; /* over n as it is now */
            for (unsigned j = 0; j < n; j++)
                busy |= in_use(i + j);
            KT_ASSERT_EQ(t, err, busy ? KMM_EBUSY : KMM_OK);
            for (unsigned j = 0; !busy && j < n; j++) {
                shadow.pa[i + j] = pool[from] + j * PAGE;
                shadow.prot[i + j] = prot;
                shadow.owned[i + j] = owned;
            }
        } else if (op == 1) {
            int err = kmm_vm_unmap(as, va, (uint64_t)n * PAGE);
            KT_ASSERT_EQ(t, err, mapped == n ? KMM_OK : KMM_ENOENT);
            for (unsigned j = 0; mapped == n && j < n; j++) {
                shadow.pa[i + j] = 0;
                shadow.demand[i + j] = false;
            }
        } else if (op == 3) { /* reserve a demand-zero range */
            int err = kmm_vm_map(as, va, 0, (uint64_t)n * PAGE, prot | KMM_MAP_DEMAND);
            KT_ASSERT_EQ(t, err, mapped ? KMM_EBUSY : KMM_OK);
            for (unsigned j = 0; !mapped && j < n; j++) {
                shadow.demand[i + j] = true;
                shadow.prot[i + j] = prot;
            }
        } else if (op == 4) { /* a fault on the range's first page */
            unsigned access = (unsigned)(kt_rng(&seed) % 3);
            access = access == 1 ? KMM_FAULT_WRITE : access == 2 ? KMM_FAULT_EXEC : 0;
            access |= user_space ? KMM_FAULT_USER : 0;
            enum kmm_vm_fault_kind how;
            int err = kmm_vm_fault(as, va + 0x10, access, &how);
            KT_ASSERT_EQ(t, err, fault_answer(i, access));
            if (err == KMM_OK) {
                KT_ASSERT_EQ(t, how, shadow.demand[i] ? KMM_FAULT_DEMAND_ZERO : KMM_FAULT_SPURIOUS);
                struct kmm_vm_translation tr;
                KT_ASSERT_EQ(t, kmm_vm_translate(as, va, &tr), KMM_OK);
                if (shadow.demand[i]) { /* a zeroed frame of its own, owned */
                    const uint8_t *z = kt_machine_phys(m, tr.pa);
                    bool zero = true;
                    for (unsigned b = 0; b < PAGE; b++)
                        zero &= z[b] == 0;
                    KT_ASSERT(t, zero && tr.owned);
                    shadow.pa[i] = tr.pa;
                    shadow.owned[i] = true;
                    shadow.demand[i] = false;
                }
                KT_ASSERT_EQ(t, tr.pa, shadow.pa[i]);
            }
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
        unsigned want = 0, demand = 0;
        for (unsigned p = 0; p < WINDOW_PAGES; p++) {
            want += shadow.pa[p] != 0;
            demand += shadow.demand[p];
        }
        KT_ASSERT_EQ(t, c.leaves, want);
        struct kmm_vm_fault_stats fs;
        kmm_vm_fault_stats(as, &fs);
        KT_ASSERT_EQ(t, fs.demand_pages, demand);
        if (step % 50 == 0) {
            struct kmm_check_result r;
            if (kmm_check(k, &r) != KMM_CHECK_OK)
                ktest_fail_at(t, __FILE__, __LINE__, "step %d: %s", step, r.first);
        }
    }
    if (faults) { /* the run took faults of each kind */
        struct kmm_vm_fault_stats fs;
        kmm_vm_fault_stats(as, &fs);
        ktest_diag(t, "faults: demand-zero %llu, spurious %llu, refused %llu",
                   (unsigned long long)fs.demand_zero, (unsigned long long)fs.spurious,
                   (unsigned long long)fs.refused);
        KT_EXPECT(t, fs.demand_zero > 0 && fs.spurious > 0 && fs.refused > 0);
    }
    /* Unmap what is left: every table and owned frame must come back. */
    for (unsigned p = 0; p < WINDOW_PAGES; p++)
        if (in_use(p))
            KT_ASSERT_EQ(t, kmm_vm_unmap(as, base + (uint64_t)p * PAGE, PAGE), KMM_OK);
    kmm_vm_stats(as, &vs);
    KT_EXPECT_EQ(t, vs.table_bytes, vs0.table_bytes);
    KT_EXPECT_EQ(t, vs.mapped_pages, 0);
    for (unsigned i = 0; i < 256; i++)
        KT_ASSERT_EQ(t, kmm_page_free(k, pool[i], 0), KMM_OK);
    if (user_space)
        KT_EXPECT_EQ(t, kmm_aspace_destroy(k, as), KMM_OK);
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
    run_random(t, 4, false, 0x4b1, false);
}

KTEST(vm_random, user_space_four_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 4, true, 0x4b2, false);
}

KTEST(vm_random, kernel_half_five_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 5, false, 0x5b1, false);
}

KTEST(vm_random, user_space_five_levels_matches_the_shadow_at_every_step)
{
    run_random(t, 5, true, 0x5b2, false);
}

KTEST(vm_random, kernel_half_with_demand_zero_faults_four_levels_matches_the_shadow)
{
    run_random(t, 4, false, 0xdf41, true);
}

KTEST(vm_random, user_space_with_demand_zero_faults_five_levels_matches_the_shadow)
{
    run_random(t, 5, true, 0xdf52, true);
}

/* --- mixed page sizes ------------------------------------------------------------------- */

/*
 * The same, with 2 MiB and 1 GiB pages: a window of 1 GiB + 8 MiB around a
 * 1 GiB-aligned address, ranges drawn at 4 KiB, 2 MiB and 1 GiB scale with
 * ragged ends, mapped (HUGE, HUGE_1G or neither; replacing or not) from
 * RAM, from owned single pages or from device memory in any cache mode, and
 * unmapped or protected so that huge pages split. The shadow keeps each
 * 4 KiB page's frame, protection, cache mode, ownership and the size of
 * the leaf that maps it: a plain map's leaves are the largest its flags and
 * alignment allow, an unmap or protect splits the leaves its ends cut (and
 * nothing else), and a replacing map's leaves inside its range may be
 * smaller than its pieces (the contract leaves that open), so they are
 * taken from the tables once checked against that bound. After every step
 * every leaf of the window is compared with the shadow, page by page, and
 * the space's counts with the leaves found.
 */

#define M2        (UINT64_C(1) << 21)
#define G1        (UINT64_C(1) << 30)
#define MIX_PAGES ((G1 + 8 * MIB) / PAGE)
#define MIX_STEPS 400
#define MIX_RAM   (16 * MIB)          /* RAM for mappings that are not owned */
#define MIX_MMIO  (UINT64_C(8) << 30) /* device memory, far above RAM */
#define MIX_POOL  256                 /* owned single pages */

static const struct kmm_region map64[] = {{1 * MIB, 63 * MIB, KMM_MEM_USABLE}};

static struct {
    uint32_t frame[MIX_PAGES]; /* pa >> 12; 0: unmapped */
    uint8_t attr[MIX_PAGES];   /* prot | cache index << 5 | owned << 7 */
    uint8_t level[MIX_PAGES];  /* of the leaf that maps it: 1 4 KiB, 2 2 MiB, 3 1 GiB */
} mix;

#define ATTR_OWNED 0x80u

struct mixer {
    struct ktest *t;
    struct kmm *k;
    struct kmm_aspace *as;
    struct smmu mmu;
    uint64_t base; /* the window: [base, base + MIX_PAGES pages) */
    uint64_t g;    /* its 1 GiB-aligned part: [g, g + 1 GiB) */
    bool user;
    uint64_t ram; /* MIX_RAM bytes at a 2 MiB boundary */
    uint64_t pool[MIX_POOL];
    struct kt_chooser choice; /* a seed's stream, or a fuzzer's bytes */
    int step;
    /* What the run exercised: splits of 1 GiB and 2 MiB leaves in the
     * shadow, steps that saw 1 GiB and 2 MiB leaves, refused calls. */
    unsigned split[4], saw[4], refused;
    uint64_t dirty_lo, dirty_hi; /* pages the step's operations may have changed */
};

static const void *phys64(void *ctx, uint64_t pa)
{
    return pa >= 1 * MIB && pa < 64 * MIB ? kt_machine_phys(ctx, pa) : 0;
}

static uint64_t rnd(struct mixer *x, uint64_t n)
{
    return kt_choose(&x->choice, n);
}

static uint64_t level_size(unsigned level)
{
    return level == 3 ? G1 : level == 2 ? M2 : PAGE;
}

static unsigned cache_index(unsigned cache)
{
    switch (cache) {
    case KMM_CACHE_WT:
        return 1;
    case KMM_CACHE_UC:
        return 2;
    case KMM_CACHE_WC:
        return 3;
    default:
        return 0;
    }
}

static unsigned memtype_index(unsigned memtype)
{
    switch (memtype) {
    case SMMU_MT_WB:
        return 0;
    case SMMU_MT_WT:
        return 1;
    case SMMU_MT_UC:
        return 2;
    case SMMU_MT_WC:
        return 3;
    default:
        return 7; /* matches nothing the shadow holds */
    }
}

/* A leaf's attributes as the shadow writes them (ownership aside). */
static uint8_t leaf_attr(const struct smmu_result *r)
{
    unsigned prot = KMM_PROT_READ | (r->writable ? KMM_PROT_WRITE : 0) |
                    (r->executable ? KMM_PROT_EXEC : 0) | (r->user ? KMM_PROT_USER : 0) |
                    (r->global ? KMM_PROT_GLOBAL : 0);
    return (uint8_t)(prot | memtype_index(r->memtype) << 5);
}

/* Splits, in the shadow, the leaf holding page c until a leaf boundary
 * falls at c (c == MIX_PAGES: the window's end, where none is). */
static void shadow_cut(struct mixer *x, uint64_t c)
{
    if (c >= MIX_PAGES || !mix.frame[c])
        return;
    uint64_t va = x->base + c * PAGE;
    for (unsigned l = mix.level[c]; l > 1; l--) {
        uint64_t off = va & (level_size(l) - 1);
        if (off == 0)
            return;
        uint64_t first = c - off / PAGE, n = level_size(l) / PAGE;
        x->split[l]++;
        for (uint64_t j = first; j < first + n; j++)
            mix.level[j] = (uint8_t)(l - 1);
    }
}

/* Notes that an operation on [i, i + n) is coming: it may change the
 * leaves holding those pages, whole (a cut splits them). */
static void touch(struct mixer *x, uint64_t i, uint64_t n)
{
    uint64_t lo = i, hi = i + n;
    if (mix.frame[lo])
        lo -= ((x->base + lo * PAGE) & (level_size(mix.level[lo]) - 1)) / PAGE;
    if (mix.frame[hi - 1]) {
        uint64_t size = level_size(mix.level[hi - 1]);
        hi += (size - ((x->base + hi * PAGE) & (size - 1))) % size / PAGE;
    }
    if (lo < x->dirty_lo)
        x->dirty_lo = lo;
    if (hi > x->dirty_hi)
        x->dirty_hi = hi;
}

/* The leaf levels a fresh map of [i, i + n) at pa with leaves up to `top`
 * gets: the largest each piece's alignment and the range allow. */
static void shadow_pieces(struct mixer *x, uint64_t i, uint64_t n, uint64_t pa, unsigned top)
{
    for (uint64_t j = i; j < i + n;) {
        uint64_t va = x->base + j * PAGE, at = pa + (j - i) * PAGE;
        unsigned l = top;
        while (l > 1 && (((va | at) & (level_size(l) - 1)) || (i + n - j) * PAGE < level_size(l)))
            l--;
        for (uint64_t p = 0; p < level_size(l) / PAGE; p++)
            mix.level[j + p] = (uint8_t)l;
        j += level_size(l) / PAGE;
    }
}

struct mix_check {
    struct mixer *x;
    uint64_t lo, hi;   /* adopt: the replaced range's pages */
    uint64_t covered;  /* pages in the leaves seen */
    uint64_t n[4];     /* leaves by level */
    uint64_t wrong;    /* leaves that differ */
    uint64_t first_va; /* the first of them */
};

static void note_wrong(struct mix_check *c, uint64_t va)
{
    if (c->wrong++ == 0)
        c->first_va = va;
}

/* Every page of each leaf against the shadow. */
static void check_leaf(void *ctx, uint64_t va, const struct smmu_result *r)
{
    struct mix_check *c = ctx;
    struct mixer *x = c->x;
    if (!r->ok || r->level < 1 || r->level > 3 || va < x->base ||
        (va - x->base) / PAGE + r->page_size / PAGE > MIX_PAGES) {
        note_wrong(c, va);
        return;
    }
    uint64_t i = (va - x->base) / PAGE, n = r->page_size / PAGE;
    uint32_t f = (uint32_t)(r->pa >> 12);
    uint8_t a = leaf_attr(r);
    for (uint64_t j = 0; j < n; j++) {
        if (mix.frame[i + j] != f + j || (mix.attr[i + j] & ~ATTR_OWNED) != a ||
            mix.level[i + j] != r->level) {
            note_wrong(c, va + j * PAGE);
            break;
        }
    }
    uint64_t from = i > c->lo ? i : c->lo, to = i + n < c->hi ? i + n : c->hi;
    c->covered += to > from ? to - from : 0;
    c->n[r->level]++;
}

/* After a replacing map: the leaves of its range must lie inside it and be
 * no larger than its pieces (the shadow holds those); the shadow takes them. */
static void adopt_leaf(void *ctx, uint64_t va, const struct smmu_result *r)
{
    struct mix_check *c = ctx;
    struct mixer *x = c->x;
    if (!r->ok || va < x->base) {
        note_wrong(c, va);
        return;
    }
    uint64_t i = (va - x->base) / PAGE, n = r->page_size / PAGE;
    if (i < c->lo || i + n > c->hi) {
        note_wrong(c, va);
        return;
    }
    for (uint64_t j = i; j < i + n; j++) {
        if (r->level > mix.level[j])
            note_wrong(c, va);
        mix.level[j] = (uint8_t)r->level;
    }
}

/* The whole window against the shadow, and the space's counters. */
/* The pages [lo, hi) of the window against the shadow, every page of each
 * leaf that holds one of them; with the whole window, the space's counters
 * against the leaves found too. */
static bool mix_matches(struct mixer *x, uint64_t lo, uint64_t hi)
{
    struct ktest *t = x->t;
    struct mix_check c = {.x = x, .lo = lo, .hi = hi};
    smmu_collect(&x->mmu, kmm_aspace_root(x->as), x->base + lo * PAGE, x->base + hi * PAGE,
                 check_leaf, &c);
    uint64_t mapped = 0, owned = 0;
    for (uint64_t i = lo; i < hi; i++) {
        mapped += mix.frame[i] != 0;
        owned += mix.frame[i] && (mix.attr[i] & ATTR_OWNED);
    }
    if (c.wrong || c.covered != mapped) {
        ktest_fail_at(t, __FILE__, __LINE__,
                      "step %d: %llu leaves differ from the shadow (first at 0x%llx), %llu of "
                      "%llu mapped pages seen",
                      x->step, (unsigned long long)c.wrong, (unsigned long long)c.first_va,
                      (unsigned long long)c.covered, (unsigned long long)mapped);
        return false;
    }
    if (lo != 0 || hi != MIX_PAGES)
        return true;
    for (unsigned l = 1; l <= 3; l++)
        x->saw[l] += c.n[l] != 0;
    struct kmm_vm_stats s;
    kmm_vm_stats(x->as, &s);
    if (s.mapped_pages != c.n[1] || s.mapped_2m != c.n[2] || s.mapped_1g != c.n[3] ||
        s.owned_pages != owned) {
        ktest_fail_at(t, __FILE__, __LINE__,
                      "step %d: counters say %llu/%llu/%llu leaves (%llu owned), the tables hold "
                      "%llu/%llu/%llu (%llu)",
                      x->step, (unsigned long long)s.mapped_pages, (unsigned long long)s.mapped_2m,
                      (unsigned long long)s.mapped_1g, (unsigned long long)s.owned_pages,
                      (unsigned long long)c.n[1], (unsigned long long)c.n[2],
                      (unsigned long long)c.n[3], (unsigned long long)owned);
        return false;
    }
    return true;
}

/* A range of the window at one of three scales, with ragged ends. */
/* Returns the scale: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB). */
static unsigned pick_range(struct mixer *x, uint64_t *first, uint64_t *count)
{
    int64_t start, len;
    uint64_t r = rnd(x, 100);
    unsigned scale = r < 45 ? 1 : r < 85 ? 2 : 3;
    if (scale == 1) {
        start = (int64_t)rnd(x, MIX_PAGES);
        len = 1 + (int64_t)rnd(x, 40);
    } else if (scale == 2) {
        start = (int64_t)(rnd(x, MIX_PAGES / 512) * 512);
        len = (1 + (int64_t)rnd(x, 3)) * 512;
    } else {
        start =
            (int64_t)((x->g - x->base) / PAGE) + (rnd(x, 4) == 0 ? 512 * (int64_t)rnd(x, 3) : 0);
        len = (int64_t)(G1 / PAGE);
    }
    if (rnd(x, 2))
        start += (int64_t)rnd(x, 7) - 3;
    if (rnd(x, 2))
        len += (int64_t)rnd(x, 7) - 3;
    if (start < 0)
        start = 0;
    if (start >= (int64_t)MIX_PAGES)
        start = MIX_PAGES - 1;
    if (len < 1)
        len = 1;
    if (start + len > (int64_t)MIX_PAGES)
        len = (int64_t)MIX_PAGES - start;
    *first = (uint64_t)start;
    *count = (uint64_t)len;
    return scale;
}

static unsigned pick_prot(struct mixer *x)
{
    unsigned prot =
        KMM_PROT_READ | (rnd(x, 2) ? KMM_PROT_WRITE : 0) | (rnd(x, 2) ? KMM_PROT_EXEC : 0);
    if (x->user)
        prot |= KMM_PROT_USER;
    else if (rnd(x, 4) == 0)
        prot |= KMM_PROT_GLOBAL;
    return prot;
}

/* One random map; returns false once the test failed. */
/* scale: of the range (3 makes 1 GiB pages likelier); whole: a fresh 1 GiB
 * page of device memory wherever alignment allows. */
static bool mix_map(struct mixer *x, uint64_t i, uint64_t n, unsigned scale, bool whole)
{
    struct ktest *t = x->t;
    uint64_t va = x->base + i * PAGE, size = n * PAGE, pa;
    unsigned prot = pick_prot(x), flags = prot, cache = 0;
    bool owned = false, replace = !whole && rnd(x, 4) == 0;
    if (whole) {
        pa = MIX_MMIO + (va - x->g);
        cache = KMM_CACHE_UC;
        flags |= KMM_CACHE_UC | KMM_MAP_HUGE | KMM_MAP_HUGE_1G;
    } else if (n <= 16 && rnd(x, 4) == 0) { /* consecutive owned single pages, or one */
        uint64_t from = rnd(x, MIX_POOL - n + 1);
        for (uint64_t j = 1; j < n; j++)
            if (x->pool[from + j] != x->pool[from] + j * PAGE)
                n = 1;
        size = n * PAGE;
        pa = x->pool[from];
        owned = true;
        flags |= KMM_MAP_OWNED;
    } else if (size + va % M2 <= MIX_RAM && rnd(x, 2)) { /* RAM, 2 MiB-congruent mostly */
        pa = x->ram + rnd(x, (MIX_RAM - size - va % M2) / M2 + 1) * M2 + va % M2;
        if (rnd(x, 4) == 0 && pa + size + PAGE <= x->ram + MIX_RAM)
            pa += PAGE;
        if (rnd(x, 4) == 0) {
            cache = KMM_CACHE_WT;
            flags |= KMM_CACHE_WT | KMM_MAP_ALIAS;
        }
    } else { /* device memory in some cache mode, 1 GiB-congruent mostly */
        static const unsigned modes[] = {KMM_CACHE_WB, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_WC};
        pa = MIX_MMIO + (va - x->g);
        if (rnd(x, 4) == 0)
            pa += PAGE;
        else if (rnd(x, 6) == 0)
            pa += M2;
        cache = modes[rnd(x, 4)];
        flags |= cache;
    }
    if (rnd(x, 3) != 0)
        flags |= KMM_MAP_HUGE;
    if (rnd(x, 3) < (scale == 3 ? 2 : 1))
        flags |= KMM_MAP_HUGE_1G;
    if (replace)
        flags |= KMM_MAP_REPLACE;
    bool busy = false;
    for (uint64_t j = i; j < i + n && !busy; j++)
        busy = mix.frame[j] != 0;
    touch(x, i, n);
    int err = kmm_vm_map(x->as, va, pa, size, flags);
    int want = busy && !replace ? KMM_EBUSY : KMM_OK;
    if (err != want) {
        ktest_fail_at(t, __FILE__, __LINE__,
                      "step %d: map(0x%llx, pa 0x%llx, size 0x%llx, flags 0x%x): %s, want %s",
                      x->step, (unsigned long long)va, (unsigned long long)pa,
                      (unsigned long long)size, flags, kmm_strerror(err), kmm_strerror(want));
        return false;
    }
    if (err != KMM_OK) {
        x->refused++;
        return true;
    }
    if (replace) {
        shadow_cut(x, i);
        shadow_cut(x, i + n);
    }
    unsigned top = owned ? 1 : flags & KMM_MAP_HUGE_1G ? 3 : flags & KMM_MAP_HUGE ? 2 : 1;
    shadow_pieces(x, i, n, pa, top);
    uint8_t a = (uint8_t)(prot | cache_index(cache) << 5 | (owned ? ATTR_OWNED : 0));
    for (uint64_t j = 0; j < n; j++) {
        mix.frame[i + j] = (uint32_t)((pa >> 12) + j);
        mix.attr[i + j] = a;
    }
    if (replace) {
        struct mix_check c = {.x = x, .lo = i, .hi = i + n};
        smmu_collect(&x->mmu, kmm_aspace_root(x->as), va, va + size, adopt_leaf, &c);
        if (c.wrong) {
            ktest_fail_at(t, __FILE__, __LINE__,
                          "step %d: a replacing map left a leaf at 0x%llx that crosses its range "
                          "or is larger than its flags allow",
                          x->step, (unsigned long long)c.first_va);
            return false;
        }
    }
    return true;
}

/* Moves [*i, *i + *n) to the first run of pages inside it that are all
 * mapped (or all unmapped); leaves it as it is if there is none. */
static void fit(uint64_t *i, uint64_t *n, bool mapped)
{
    uint64_t j = *i, end = *i + *n;
    while (j < end && (mix.frame[j] != 0) != mapped)
        j++;
    if (j == end)
        return;
    uint64_t k = j;
    while (k < end && (mix.frame[k] != 0) == mapped)
        k++;
    *i = j;
    *n = k - j;
}

static uint64_t mapped_in(uint64_t i, uint64_t n)
{
    uint64_t m = 0;
    for (uint64_t j = i; j < i + n; j++)
        m += mix.frame[j] != 0;
    return m;
}

static bool mix_unmap(struct mixer *x, uint64_t i, uint64_t n)
{
    uint64_t va = x->base + i * PAGE, size = n * PAGE;
    touch(x, i, n);
    int err = kmm_vm_unmap(x->as, va, size);
    int want = mapped_in(i, n) == n ? KMM_OK : KMM_ENOENT;
    if (err != want) {
        ktest_fail_at(x->t, __FILE__, __LINE__, "step %d: unmap(0x%llx, 0x%llx): %s, want %s",
                      x->step, (unsigned long long)va, (unsigned long long)size, kmm_strerror(err),
                      kmm_strerror(want));
        return false;
    }
    x->refused += err != KMM_OK;
    if (err == KMM_OK) {
        shadow_cut(x, i);
        shadow_cut(x, i + n);
        for (uint64_t j = i; j < i + n; j++)
            mix.frame[j] = 0;
    }
    return true;
}

/* Unmaps every mapped run in [i, i + n). */
static bool mix_clear(struct mixer *x, uint64_t i, uint64_t n)
{
    bool ok = true;
    for (uint64_t j = i; j < i + n && ok;) {
        uint64_t k = j;
        while (k < i + n && (mix.frame[k] != 0) == (mix.frame[j] != 0))
            k++;
        if (mix.frame[j])
            ok = mix_unmap(x, j, k - j);
        j = k;
    }
    return ok;
}

static bool mix_protect(struct mixer *x, uint64_t i, uint64_t n, unsigned prot)
{
    uint64_t va = x->base + i * PAGE, size = n * PAGE;
    touch(x, i, n);
    int err = kmm_vm_protect(x->as, va, size, prot);
    int want = mapped_in(i, n) == n ? KMM_OK : KMM_ENOENT;
    if (err != want) {
        ktest_fail_at(x->t, __FILE__, __LINE__,
                      "step %d: protect(0x%llx, 0x%llx, 0x%x): %s, want %s", x->step,
                      (unsigned long long)va, (unsigned long long)size, prot, kmm_strerror(err),
                      kmm_strerror(want));
        return false;
    }
    x->refused += err != KMM_OK;
    if (err == KMM_OK) {
        shadow_cut(x, i);
        shadow_cut(x, i + n);
        for (uint64_t j = i; j < i + n; j++)
            mix.attr[j] = (uint8_t)((mix.attr[j] & ~KMM_PROT_MASK) | prot);
    }
    return true;
}

/* One mixed run whose choices come from c: MIX_STEPS steps from a seed, or
 * as many as a byte-driven chooser's bytes last. */
static void run_mixed(struct ktest *t, unsigned levels, bool user, const struct kt_chooser *c)
{
    struct kt_kmm f;
    if (!kt_kmm_up(t, &f, map64, 1, 1, levels))
        return;
    static struct mixer x;
    x = (struct mixer){.t = t, .k = f.k, .user = user, .choice = *c};
    struct kmm_page_stats ps0, ps;
    kmm_page_stats(f.k, &ps0);
    x.as = kmm_kernel_aspace(f.k);
    if (user)
        KT_ASSERT_EQ(t, kmm_aspace_create(f.k, &x.as), KMM_OK);
    struct kmm_vm_stats vs0, vs;
    kmm_vm_stats(x.as, &vs0);
    x.g = user ? UINT64_C(0x0000004000000000) : UINT64_C(0xffffc00040000000);
    x.base = x.g - 4 * MIB;
    x.mmu = (struct smmu){.phys = phys64,
                          .ctx = f.m,
                          .la57 = levels == 5,
                          .nxe = true,
                          .wp = true,
                          .pat = KMM_PAT_VALUE};
    x.ram = kmm_run_alloc(f.k, MIX_RAM / PAGE, M2, 0, 0);
    KT_ASSERT(t, x.ram != 0);
    for (unsigned i = 0; i < MIX_POOL; i++)
        KT_ASSERT(t, (x.pool[i] = kmm_page_alloc(f.k, 0, 0)) != 0);
    kt_fill(&mix, 0, sizeof(mix));
    x.dirty_lo = MIX_PAGES;
    unsigned counts[3] = {0};

    for (x.step = 0; x.step < MIX_STEPS && !ktest_failed(t) && !x.choice.ended; x.step++) {
        uint64_t i, n;
        unsigned scale = pick_range(&x, &i, &n);
        unsigned op = (unsigned)rnd(&x, 20);
        bool ok = true;
        if (op < 8) { /* map, mostly where nothing is */
            counts[0]++;
            if (rnd(&x, 8) != 0)
                fit(&i, &n, false);
            ok = mix_map(&x, i, n, scale, false);
        } else if (op < 13) { /* unmap, mostly where everything is */
            counts[1]++;
            if (rnd(&x, 8) != 0)
                fit(&i, &n, true);
            ok = mix_unmap(&x, i, n);
        } else if (op < 18) { /* protect, the same */
            counts[2]++;
            if (rnd(&x, 8) != 0)
                fit(&i, &n, true);
            ok = mix_protect(&x, i, n, pick_prot(&x));
        } else { /* clear a range, mapped run by mapped run */
            counts[1]++;
            ok = mix_clear(&x, i, n);
        }
        /* Now and then the 1 GiB-aligned part anew as one 1 GiB page, for
         * the others to cut. */
        bool whole = x.step % 30 == 15;
        if (ok && whole) {
            uint64_t g = (x.g - x.base) / PAGE;
            ok = mix_clear(&x, g, G1 / PAGE) && mix_map(&x, g, G1 / PAGE, 3, true);
        }
        /* Where the step worked every step, and everywhere now and then. */
        bool full = x.step % 10 == 0 || whole || x.step == MIX_STEPS - 1;
        if (!ok || !mix_matches(&x, full ? 0 : x.dirty_lo, full ? MIX_PAGES : x.dirty_hi))
            break;
        x.dirty_lo = MIX_PAGES;
        x.dirty_hi = 0;
        if (x.step % 40 == 0) {
            struct kmm_check_result r;
            if (kmm_check(f.k, &r) != KMM_CHECK_OK)
                ktest_fail_at(t, __FILE__, __LINE__, "step %d: %s", x.step, r.first);
        }
    }
    KT_ASSERT(t, !ktest_failed(t));
    KT_ASSERT(t, mix_matches(&x, 0, MIX_PAGES));
    /* Unmap what is left, run by run: every table and owned frame must come back. */
    for (uint64_t i = 0; i < MIX_PAGES;) {
        uint64_t j = i;
        while (j < MIX_PAGES && (mix.frame[j] != 0) == (mix.frame[i] != 0))
            j++;
        if (mix.frame[i])
            KT_ASSERT_EQ(t, kmm_vm_unmap(x.as, x.base + i * PAGE, (j - i) * PAGE), KMM_OK);
        i = j;
    }
    kmm_vm_stats(x.as, &vs);
    KT_EXPECT_EQ(t, vs.table_bytes, vs0.table_bytes);
    for (unsigned l = 1; l <= 5; l++)
        KT_EXPECT_EQ(t, vs.tables[l], vs0.tables[l]);
    KT_EXPECT_EQ(t, vs.mapped_pages + vs.mapped_2m + vs.mapped_1g + vs.owned_pages, 0);
    /* Every kind of operation ran, and huge pages came and split. */
    ktest_diag(
        t,
        "maps %u unmaps %u protects %u (%u refused); full checks with 4K/2M/1G leaves %u/%u/%u; "
        "splits of 2M %u, of 1G %u",
        counts[0], counts[1], counts[2], x.refused, x.saw[1], x.saw[2], x.saw[3], x.split[2],
        x.split[3]);
    if (!c->bytes) { /* a byte-driven run may do anything, or little */
        KT_EXPECT(t,
                  x.saw[2] > MIX_STEPS / 40 && x.saw[3] > 0 && x.split[2] > 10 && x.split[3] > 0);
        KT_EXPECT(t, counts[0] > MIX_STEPS / 8 && counts[1] > MIX_STEPS / 8 &&
                         counts[2] > MIX_STEPS / 8);
    }
    for (unsigned i = 0; i < MIX_POOL; i++)
        KT_ASSERT_EQ(t, kmm_page_free(f.k, x.pool[i], 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(f.k, x.ram, MIX_RAM / PAGE), KMM_OK);
    if (user)
        KT_EXPECT_EQ(t, kmm_aspace_destroy(f.k, x.as), KMM_OK);
    kmm_page_drain_cpu(f.k);
    kmm_page_stats(f.k, &ps);
    KT_EXPECT_EQ(t, ps.free_pages, ps0.free_pages);
    KT_EXPECT_HEALTHY(t, f.k);
    kt_kmm_down(&f);
}

KTEST_LEVELS(vm_random, mixed_page_sizes_in_the_kernel_half_match_the_shadow_at_every_step)
{
    run_mixed(t, levels, false, &(struct kt_chooser){.seed = 0x3b1 + levels});
}

KTEST_LEVELS(vm_random, mixed_page_sizes_in_a_user_space_match_the_shadow_at_every_step)
{
    run_mixed(t, levels, true, &(struct kt_chooser){.seed = 0x3b2 + levels});
}

/* --- the same run driven by bytes: the fuzz target's ------------------------------------- */

/*
 * kt_fuzz_input (fuzz_input.h): set by the fuzz target (tests/fuzz/fuzz_vm.c)
 * before it runs this test; its first choice picks the paging mode and
 * the space, the rest make the mixed run's choices. Without one, the test
 * replays a fixed input, so the byte-driven path is itself tested in every
 * world.
 */
KTEST(vm_random, mixed_page_sizes_driven_by_bytes_match_the_shadow)
{
    static uint8_t fixed[2048];
    struct kt_chooser c = kt_fuzz_chooser(fixed, sizeof(fixed), 0xb17e5);
    unsigned mode = (unsigned)kt_choose(&c, 4); /* bit 0: 5 levels; bit 1: a user space */
    run_mixed(t, mode & 1 ? 5 : 4, (mode & 2) != 0, &c);
}
