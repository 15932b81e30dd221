/*
 * test_vm_fork_random.c - fork, demand zero and copy-on-write against a
 * shadow model, at random: a tree of up to FR_SPACES user spaces made by
 * kmm_aspace_clone, each with FR_PAGES pages that come and go (owned
 * pages filled with a value, demand-zero runs), written and read as a CPU
 * would (the tests' software MMU first; on a fault, kmm_vm_fault, which
 * must resolve exactly the faults fork semantics say it should), spaces
 * cloned and destroyed in any order. After every step each page of every
 * space reads what the model says (a page's value; a demand-zero page
 * zeros once touched), the CPU's view agrees (present or not, writable or
 * not), and now and then kmm_check passes; at the end every space goes and
 * every frame comes back. The same run is driven by a fuzzer's bytes
 * (tests/fuzz/fuzz_fork.c).
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

#define MIB       (UINT64_C(1) << 20)
#define PAGE      UINT64_C(4096)
#define FR_SPACES 6u    /* live spaces at most */
#define FR_PAGES  24u   /* pages per space, at FR_BASE */
#define FR_STEPS  2000u /* a seeded run's steps */
#define FR_BASE   UINT64_C(0x0000000000600000)
#define URW       (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER)

static const struct kmm_region map32[] = {
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
};

/* The model of one page of one space. */
enum fr_state {
    FR_NONE,   /* nothing maps it */
    FR_DEMAND, /* demand-zero, untouched: reads zeros after its fault */
    FR_PAGE,   /* a frame holding `val` in every byte */
};

struct fr_page {
    enum fr_state state;
    uint8_t val;
};

struct fr_space {
    struct kmm_aspace *as; /* NULL: the slot is free */
    struct fr_page page[FR_PAGES];
};

struct fr_run {
    struct ktest *t;
    struct kt_kmm f;
    struct smmu mmu;
    struct kt_chooser choice;
    struct fr_space space[FR_SPACES];
    unsigned live;
    uint64_t faults, clones, kills; /* what the run did, for the diagnosis */
};

static const void *fr_phys(void *ctx, uint64_t pa)
{
    return pa >= 1 * MIB && pa < 32 * MIB ? kt_machine_phys(ctx, pa) : 0;
}

static uint64_t pick(struct fr_run *r, uint64_t n)
{
    return kt_choose(&r->choice, n);
}

static uint64_t va_of(unsigned i)
{
    return FR_BASE + i * PAGE;
}

/* The CPU's answer for a user access of kind acc to page i of s. */
static struct smmu_result cpu(struct fr_run *r, const struct fr_space *s, unsigned i,
                              enum smmu_access acc)
{
    return smmu_translate(&r->mmu, kmm_aspace_root(s->as), va_of(i), acc, true);
}

static bool page_holds(struct fr_run *r, uint64_t pa, uint8_t val)
{
    const uint8_t *p = kt_machine_phys(r->f.m, pa & ~(PAGE - 1));
    for (uint64_t b = 0; b < PAGE; b += 509) /* a spread of bytes: the model fills whole pages */
        if (p[b] != val)
            return false;
    return p[PAGE - 1] == val;
}

/* An access as a CPU makes it: allowed, or a fault the fault entry must
 * resolve exactly when the model says it can (a demand-zero page, a write
 * to a copy-on-write page), after which the access is allowed. Returns the
 * frame the access reaches, or 0 for a page nothing maps (the fault entry
 * said KMM_ENOENT, as it must). */
static uint64_t access_page(struct fr_run *r, struct fr_space *s, unsigned i, bool write)
{
    struct ktest *t = r->t;
    enum smmu_access acc = write ? SMMU_WRITE : SMMU_READ;
    struct smmu_result c = cpu(r, s, i, acc);
    if (c.ok) {
        KT_EXPECT(t, s->page[i].state == FR_PAGE);
        return c.pa;
    }
    unsigned how = KMM_FAULT_USER | (write ? KMM_FAULT_WRITE : 0);
    enum kmm_vm_fault_kind kind = KMM_FAULT_NONE;
    int err = kmm_vm_fault(s->as, va_of(i), how, &kind);
    r->faults++;
    if (s->page[i].state == FR_NONE) {
        KT_EXPECT_EQ(t, err, KMM_ENOENT);
        return 0;
    }
    KT_EXPECT_EQ(t, err, KMM_OK);
    if (s->page[i].state == FR_DEMAND) {
        KT_EXPECT_EQ(t, kind, KMM_FAULT_DEMAND_ZERO);
        s->page[i] = (struct fr_page){FR_PAGE, 0};
    } else {
        /* Only a write to a page another space shares faults. */
        KT_EXPECT(t, write && (kind == KMM_FAULT_COW_COPY || kind == KMM_FAULT_COW_REUSE));
    }
    c = cpu(r, s, i, acc);
    KT_EXPECT(t, c.ok);
    return c.ok ? c.pa : 0;
}

/* Every page of every space as the model says, through the CPU's view
 * (reads only: nothing faults, nothing changes). */
static void check_all(struct fr_run *r)
{
    struct ktest *t = r->t;
    for (unsigned k = 0; k < FR_SPACES && !ktest_failed(t); k++) {
        const struct fr_space *s = &r->space[k];
        for (unsigned i = 0; s->as && i < FR_PAGES; i++) {
            struct smmu_result c = cpu(r, s, i, SMMU_READ);
            if (s->page[i].state != FR_PAGE) {
                if (c.ok)
                    ktest_fail_at(t, __FILE__, __LINE__, "space %u page %u: readable, model %d", k,
                                  i, s->page[i].state);
                continue;
            }
            if (!c.ok || !page_holds(r, c.pa, s->page[i].val))
                ktest_fail_at(t, __FILE__, __LINE__, "space %u page %u: want 0x%02x (%s)", k, i,
                              s->page[i].val, c.ok ? "another value" : "not readable");
        }
    }
}

/* A page of its own filled with val, mapped owned at page i of s. */
static void map_one(struct fr_run *r, struct fr_space *s, unsigned i, uint8_t val)
{
    uint64_t pa = kmm_page_alloc(r->f.k, 0, 0);
    KT_ASSERT(r->t, pa != 0);
    kt_fill(kt_machine_phys(r->f.m, pa), val, PAGE);
    KT_EXPECT_EQ(r->t, kmm_vm_map(s->as, va_of(i), pa, PAGE, URW | KMM_MAP_OWNED), KMM_OK);
    KT_EXPECT_EQ(r->t, kmm_page_free(r->f.k, pa, 0), KMM_OK); /* the mapping's alone */
    s->page[i] = (struct fr_page){FR_PAGE, val};
}

/* A run of pages from i that nothing maps: how many (at most want). */
static unsigned free_run(const struct fr_space *s, unsigned i, unsigned want)
{
    unsigned n = 0;
    while (i + n < FR_PAGES && n < want && s->page[i + n].state == FR_NONE)
        n++;
    return n;
}

static struct fr_space *pick_space(struct fr_run *r)
{
    unsigned k = (unsigned)pick(r, FR_SPACES);
    for (unsigned tries = 0; tries < FR_SPACES; tries++, k = (k + 1) % FR_SPACES)
        if (r->space[k].as)
            return &r->space[k];
    return NULL;
}

static void step(struct fr_run *r)
{
    struct ktest *t = r->t;
    struct fr_space *s = pick_space(r);
    unsigned i = (unsigned)pick(r, FR_PAGES);
    switch (pick(r, 10)) {
    case 0: /* an owned page where nothing is */
        if (s->page[i].state == FR_NONE)
            map_one(r, s, i, (uint8_t)(1 + pick(r, 255)));
        break;
    case 1: { /* a demand-zero run where nothing is */
        unsigned n = free_run(s, i, 1 + (unsigned)pick(r, 6));
        if (n) {
            KT_EXPECT_EQ(t, kmm_vm_map(s->as, va_of(i), 0, n * PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
            for (unsigned j = 0; j < n; j++)
                s->page[i + j] = (struct fr_page){FR_DEMAND, 0};
        }
        break;
    }
    case 2: /* unmap a page, whatever it is */
        if (s->page[i].state != FR_NONE) {
            KT_EXPECT_EQ(t, kmm_vm_unmap(s->as, va_of(i), PAGE), KMM_OK);
            s->page[i] = (struct fr_page){FR_NONE, 0};
        }
        break;
    case 3:
    case 4:
    case 5: { /* a write: the whole page takes a new value */
        uint64_t pa = access_page(r, s, i, true);
        if (pa) {
            uint8_t val = (uint8_t)(1 + pick(r, 255));
            kt_fill(kt_machine_phys(r->f.m, pa & ~(PAGE - 1)), val, PAGE);
            s->page[i].val = val;
        }
        break;
    }
    case 6:
    case 7: { /* a read */
        uint64_t pa = access_page(r, s, i, false);
        if (pa && !page_holds(r, pa, s->page[i].val))
            ktest_fail_at(t, __FILE__, __LINE__, "read of page %u: want 0x%02x", i, s->page[i].val);
        break;
    }
    case 8: { /* fork: a free slot takes a clone of s */
        struct fr_space *child = NULL;
        for (unsigned k = 0; k < FR_SPACES && !child; k++)
            if (!r->space[k].as)
                child = &r->space[k];
        if (!child)
            break;
        KT_ASSERT_EQ(t, kmm_aspace_clone(s->as, &child->as), KMM_OK);
        for (unsigned j = 0; j < FR_PAGES; j++)
            child->page[j] = s->page[j];
        r->live++;
        r->clones++;
        break;
    }
    default: /* exit: a space goes, unless it is the last */
        if (r->live > 1) {
            KT_EXPECT_EQ(t, kmm_aspace_destroy(r->f.k, s->as), KMM_OK);
            s->as = NULL;
            r->live--;
            r->kills++;
        }
        break;
    }
}

static void run_fork(struct ktest *t, unsigned levels, const struct kt_chooser *c)
{
    static struct fr_run r;
    r = (struct fr_run){.t = t, .choice = *c};
    if (!kt_kmm_up(t, &r.f, map32, 1, 1, levels))
        return;
    kmm_page_drain_cpu(r.f.k);
    struct kmm_page_stats ps0, ps;
    kmm_page_stats(r.f.k, &ps0);
    r.mmu =
        (struct smmu){.phys = fr_phys, .ctx = r.f.m, .la57 = levels == 5, .nxe = true, .wp = true};
    KT_ASSERT_EQ(t, kmm_aspace_create(r.f.k, &r.space[0].as), KMM_OK);
    r.live = 1;
    unsigned steps = c->bytes ? UINT32_MAX : FR_STEPS;
    for (unsigned n = 0; n < steps && !ktest_failed(t) && !r.choice.ended; n++) {
        step(&r);
        check_all(&r);
        if (n % 50 == 0) {
            struct kmm_check_result cr;
            if (kmm_check(r.f.k, &cr) != KMM_CHECK_OK)
                ktest_fail_at(t, __FILE__, __LINE__, "step %u: %s", n, cr.first);
        }
    }
    ktest_diag(t, "%llu faults, %llu clones, %llu spaces gone", (unsigned long long)r.faults,
               (unsigned long long)r.clones, (unsigned long long)r.kills);
    if (!c->bytes) /* a seeded run does every kind of thing */
        KT_EXPECT(t, r.faults > FR_STEPS / 10 && r.clones > 5 && r.kills > 3);
    for (unsigned k = 0; k < FR_SPACES; k++)
        if (r.space[k].as)
            KT_EXPECT_EQ(t, kmm_aspace_destroy(r.f.k, r.space[k].as), KMM_OK);
    kmm_page_drain_cpu(r.f.k);
    kmm_page_stats(r.f.k, &ps);
    KT_EXPECT_EQ(t, ps.free_pages, ps0.free_pages);
    KT_EXPECT_HEALTHY(t, r.f.k);
    kt_kmm_down(&r.f);
}

KTEST_LEVELS(vm_fork_random, a_tree_of_forked_spaces_matches_the_shadow_at_every_step)
{
    run_fork(t, levels, &(struct kt_chooser){.seed = 0xf0c4 + levels});
}

/*
 * The same run driven by bytes (kt_fuzz_input: tests/fuzz/fuzz_fork.c);
 * the first choice picks the paging mode. Without an input it replays a
 * fixed one, so the byte-driven path is tested in every world.
 */
KTEST(vm_fork_random, a_tree_of_forked_spaces_driven_by_bytes_matches_the_shadow)
{
    static uint8_t fixed[4096];
    struct kt_chooser c = kt_fuzz_chooser(fixed, sizeof(fixed), 0xf0c45);
    unsigned levels = kt_choose(&c, 2) ? 5 : 4;
    run_fork(t, levels, &c);
}
