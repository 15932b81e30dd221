/*
 * test_vm_fault.c - demand-zero pages, the fault entry (kmm_vm_fault) and
 * fork's copy-on-write clone (kmm_aspace_clone): what each fault maps, that
 * clones share frames until one side writes, that every frame comes back,
 * that running out of memory at any step changes nothing, and every bad
 * input. Memory is read and written through the direct map
 * (kmm_vm_translate and kt_machine_phys); where the world mirrors mappings
 * (hosted), also at the virtual address right after a fault. Every test
 * runs with 4 and with 5 paging levels.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "ktest_levels.h"
#include "soft_mmu.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)
#define M2   (2 * MIB)
#define KVA  UINT64_C(0xffffffffc0000000) /* a kernel-half address outside the window */
#define RW   (KMM_PROT_READ | KMM_PROT_WRITE)
#define URW  (RW | KMM_PROT_USER)
#define UR   (KMM_PROT_READ | KMM_PROT_USER)
#define WR   KMM_FAULT_WRITE
#define UWR  (KMM_FAULT_WRITE | KMM_FAULT_USER)

static const struct kmm_region map32[] = {
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
};

struct fx {
    struct kt_kmm f;
    struct kmm_aspace *ks;
    uint64_t user;  /* where the tests map in user spaces */
    bool live;      /* ... and the program can use that address (hosted mirror) */
    uint64_t free0; /* free pages once set up */
};

static bool up(struct ktest *t, struct fx *x, unsigned levels)
{
    if (!kt_kmm_up(t, &x->f, map32, N(map32), 1, levels))
        return false;
    x->ks = kmm_kernel_aspace(x->f.k);
    uint64_t base, size;
    kt_machine_live_window(x->f.m, &base, &size);
    x->live = size >= 4 * M2;
    x->user = x->live ? (base + M2 - 1) & ~(M2 - 1) : UINT64_C(0x400000);
    x->free0 = kt_free_pages(x->f.k);
    return true;
}

static void down(struct fx *x)
{
    kt_kmm_down(&x->f);
}

static const void *fx_phys(void *ctx, uint64_t pa)
{
    return pa >= 1 * MIB && pa < 32 * MIB ? kt_machine_phys(ctx, pa) : 0;
}

/* Whether the CPU (the tests' software MMU: NX on, CR0.WP on) lets a user
 * access of kind acc at va of as through. */
static bool cpu_allows(struct fx *x, struct kmm_aspace *as, uint64_t va, enum smmu_access acc,
                       unsigned levels)
{
    struct smmu m = {.phys = fx_phys, .ctx = x->f.m, .la57 = levels == 5, .nxe = true, .wp = true};
    return smmu_translate(&m, kmm_aspace_root(as), va, acc, true).ok;
}

/* The byte at va of as through the direct map; NULL if no frame maps it. */
static uint8_t *byte_at(struct fx *x, struct kmm_aspace *as, uint64_t va)
{
    struct kmm_vm_translation tr;
    if (kmm_vm_translate(as, va, &tr) != KMM_OK)
        return 0;
    return kt_machine_phys(x->f.m, tr.pa);
}

static bool all_bytes(const uint8_t *p, uint8_t b)
{
    for (uint64_t i = 0; i < PAGE; i++)
        if (p[i] != b)
            return false;
    return true;
}

/* Faults at va and returns what was done (KMM_FAULT_NONE on a refusal). */
static enum kmm_vm_fault_kind fault(struct kmm_aspace *as, uint64_t va, unsigned access)
{
    enum kmm_vm_fault_kind how = KMM_FAULT_SPURIOUS;
    int err = kmm_vm_fault(as, va, access, &how);
    return err == KMM_OK ? how : KMM_FAULT_NONE;
}

static struct kmm_vm_fault_stats fstats(struct kmm_aspace *as)
{
    struct kmm_vm_fault_stats s;
    kmm_vm_fault_stats(as, &s);
    return s;
}

/* A page of its own, filled with b, mapped owned at va of as with prot;
 * the caller's reference dropped, so only the mapping holds it. */
static uint64_t map_owned(struct ktest *t, struct fx *x, struct kmm_aspace *as, uint64_t va,
                          unsigned prot, uint8_t b)
{
    uint64_t pa = kmm_page_alloc(x->f.k, 0, 0);
    if (!pa)
        return 0;
    kt_fill(kt_machine_phys(x->f.m, pa), b, PAGE);
    int err = kmm_vm_map(as, va, pa, PAGE, prot | KMM_MAP_OWNED);
    KT_EXPECT_EQ(t, err, KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x->f.k, pa, 0), KMM_OK);
    return pa;
}

/* --- demand-zero pages ------------------------------------------------------------ */

KTEST_LEVELS(vm_fault, a_demand_zero_page_reads_zeros_at_first_touch_and_keeps_what_is_written)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.f.k, &us), KMM_OK);
    uint64_t va = x.user;
    KT_ASSERT_EQ(t, kmm_vm_map(us, va, 0, 4 * PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    /* Reserved, no frame yet. */
    struct kmm_vm_translation tr;
    KT_EXPECT_EQ(t, kmm_vm_translate(us, va, &tr), KMM_ENOENT);
    struct kmm_vm_run run;
    KT_ASSERT_EQ(t, kmm_vm_query(us, va, va + M2, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.demand && !run.owned);
    KT_EXPECT_EQ(t, run.size, 4 * PAGE);
    KT_EXPECT_EQ(t, run.prot, URW);
    KT_EXPECT_EQ(t, run.pa, 0);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 4);
    struct kmm_vm_stats vs;
    kmm_vm_stats(us, &vs);
    KT_EXPECT_EQ(t, vs.mapped_pages, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* A map over it is refused: the range is taken. */
    uint64_t other = kmm_page_alloc(x.f.k, 0, 0);
    KT_EXPECT_EQ(t, kmm_vm_map(us, va, other, PAGE, UR), KMM_EBUSY);

    /* The first touch, a read: a zeroed page of its own, owned. */
    kt_fill(kt_machine_phys(x.f.m, other), 0xa5, PAGE); /* dirty memory around */
    KT_ASSERT_EQ(t, kmm_page_free(x.f.k, other, 0), KMM_OK);
    KT_EXPECT_EQ(t, fault(us, va + 0x123, KMM_FAULT_USER), KMM_FAULT_DEMAND_ZERO);
    KT_ASSERT_EQ(t, kmm_vm_translate(us, va, &tr), KMM_OK);
    KT_EXPECT(t, tr.owned && !tr.cow);
    KT_EXPECT_EQ(t, tr.prot, URW);
    uint8_t *p = byte_at(&x, us, va);
    KT_ASSERT(t, p != 0);
    KT_EXPECT(t, all_bytes(p, 0));
    if (x.live) { /* the mirror shows the page at its address */
        volatile uint8_t *v = (volatile uint8_t *)(uintptr_t)va;
        KT_EXPECT_EQ(t, v[77], 0);
        v[77] = 0x5c;
        KT_EXPECT_EQ(t, p[77], 0x5c);
    } else {
        p[77] = 0x5c;
    }
    /* Touched again: nothing to do. */
    KT_EXPECT_EQ(t, fault(us, va, UWR), KMM_FAULT_SPURIOUS);
    KT_EXPECT_EQ(t, byte_at(&x, us, va)[77], 0x5c);
    /* A write as the first touch. */
    KT_EXPECT_EQ(t, fault(us, va + 2 * PAGE, UWR), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT(t, all_bytes(byte_at(&x, us, va + 2 * PAGE), 0));
    struct kmm_vm_fault_stats fs = fstats(us);
    KT_EXPECT_EQ(t, fs.demand_pages, 2);
    KT_EXPECT_EQ(t, fs.demand_zero, 2);
    KT_EXPECT_EQ(t, fs.spurious, 1);
    kmm_vm_stats(us, &vs);
    KT_EXPECT_EQ(t, vs.mapped_pages, 2);
    KT_EXPECT_EQ(t, vs.owned_pages, 2);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Unmapping the four (two touched, two not) gives every frame back. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, va, 4 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 0);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_fault, a_demand_zero_page_keeps_its_protection_until_touched)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    /* In the kernel space, through a user space's fault: the kernel half
     * is the kernel space's whichever space faulted. */
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.f.k, &us), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA, 0, 3 * PAGE, RW | KMM_MAP_DEMAND), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_protect(x.ks, KVA + PAGE, PAGE, KMM_PROT_READ), KMM_OK);
    struct kmm_vm_run run;
    KT_ASSERT_EQ(t, kmm_vm_query(x.ks, KVA, KVA + M2, &run), KMM_OK);
    KT_EXPECT(t, run.demand);
    KT_EXPECT_EQ(t, run.size, PAGE); /* the protections differ */
    KT_EXPECT_EQ(t, fault(us, KVA + PAGE, WR), KMM_FAULT_NONE);
    KT_EXPECT_EQ(t, kmm_vm_fault(us, KVA + PAGE, WR, 0), KMM_EACCES);
    KT_EXPECT_EQ(t, kmm_vm_fault(us, KVA, KMM_FAULT_USER, 0), KMM_EACCES); /* a kernel page */
    KT_EXPECT_EQ(t, kmm_vm_fault(us, KVA, KMM_FAULT_EXEC, 0), KMM_EACCES); /* no exec */
    KT_EXPECT_EQ(t, fault(us, KVA + PAGE, 0), KMM_FAULT_DEMAND_ZERO);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, KVA + PAGE, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.prot, KMM_PROT_READ);
    KT_EXPECT_EQ(t, kmm_vm_fault(x.ks, KVA + PAGE, WR, 0), KMM_EACCES);
    KT_EXPECT_EQ(t, fstats(x.ks).demand_zero, 1);
    KT_EXPECT_EQ(t, fstats(x.ks).refused, 5);
    KT_EXPECT_EQ(t, fstats(us).refused, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA, 3 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* A refused call: its error, the vm misuse counter of class cls up by one,
 * one error line naming fn (or none, for an unlogged one), check clean. */
static void expect_refused_at(struct ktest *t, struct fx *x, int got, int want, int cls,
                              bool logged, const struct kmm_misuse_stats *before,
                              unsigned long errors, const char *fn, const char *what, int line)
{
    struct kmm_misuse_stats after;
    kmm_misuse_stats(x->f.k, &after);
    if (got != want)
        ktest_fail_at(t, __FILE__, line, "%s: %s, want %s", what, kmm_strerror(got),
                      kmm_strerror(want));
    for (int i = 0; i < KMM_MISUSE_COUNT; i++) {
        uint64_t d = after.count[KMM_LAYER_VM][i] - before->count[KMM_LAYER_VM][i];
        if (d != (uint64_t)(logged && i == cls))
            ktest_fail_at(t, __FILE__, line, "%s: vm misuse[%d] went up by %llu", what, i,
                          (unsigned long long)d);
    }
    unsigned long now = kt_machine_log_count(x->f.m, KMM_LOG_ERR);
    if (now != errors + logged)
        ktest_fail_at(t, __FILE__, line, "%s: %lu error lines", what, now - errors);
    if (logged && !ktest_contains(kt_machine_last_error(x->f.m), fn))
        ktest_fail_at(t, __FILE__, line, "%s: logged \"%s\"", what, kt_machine_last_error(x->f.m));
    struct kmm_check_result r;
    if (kmm_check(x->f.k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, line, "%s: kmm_check: %s", what, r.first);
}

#define REFUSED(call, want, cls, logged, fn)                                                       \
    do {                                                                                           \
        struct kmm_misuse_stats b_;                                                                \
        kmm_misuse_stats(x.f.k, &b_);                                                              \
        unsigned long e_ = kt_machine_log_count(x.f.m, KMM_LOG_ERR);                               \
        int got_ = (call);                                                                         \
        expect_refused_at(t, &x, got_, (want), (cls), (logged), &b_, e_, (fn), #call, __LINE__);   \
    } while (0)

static uint64_t noncanonical(unsigned levels)
{
    return levels == 5 ? UINT64_C(0x0100000000000000) : UINT64_C(0x0000800000000000);
}

KTEST_LEVELS(vm_fault, every_bad_input_is_refused_and_changes_nothing)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *us, *child = 0;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.f.k, &us), KMM_OK);
    uint64_t va = x.user;
    uint64_t pa = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT(t, pa != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(us, va, pa, PAGE, UR), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, va + PAGE, 0, PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    const char *map = "kmm_vm_map";
    unsigned d = URW | KMM_MAP_DEMAND;
    /* KMM_MAP_DEMAND maps no frame now and RAM later. */
    REFUSED(kmm_vm_map(us, va + 2 * PAGE, pa, PAGE, d), KMM_EINVAL, KMM_MISUSE_BAD_FLAGS, true,
            map);
    REFUSED(kmm_vm_map(us, va + 2 * PAGE, 0, PAGE, d | KMM_MAP_OWNED), KMM_EINVAL,
            KMM_MISUSE_BAD_FLAGS, true, map);
    REFUSED(kmm_vm_map(us, va + 2 * PAGE, 0, PAGE, d | KMM_MAP_REPLACE), KMM_EINVAL,
            KMM_MISUSE_BAD_FLAGS, true, map);
    REFUSED(kmm_vm_map(us, va, 0, M2, d | KMM_MAP_HUGE), KMM_EINVAL, KMM_MISUSE_BAD_FLAGS, true,
            map);
    REFUSED(kmm_vm_map(us, va + 2 * PAGE, 0, PAGE, d | KMM_CACHE_UC), KMM_EINVAL,
            KMM_MISUSE_BAD_FLAGS, true, map);
    REFUSED(kmm_vm_map(us, va + 2 * PAGE, 0, PAGE, d | KMM_CACHE_WC | KMM_MAP_ALIAS), KMM_EINVAL,
            KMM_MISUSE_BAD_FLAGS, true, map);
    REFUSED(kmm_vm_map(us, va + PAGE, 0, PAGE, d), KMM_EBUSY, KMM_MISUSE_BUSY, true, map);
    /* Faults: the caller's mistakes are counted; the answers are not. */
    const char *fn = "kmm_vm_fault";
    REFUSED(kmm_vm_fault(us, noncanonical(levels), 0, 0), KMM_EINVAL, KMM_MISUSE_OUTSIDE, true, fn);
    REFUSED(kmm_vm_fault(us, va, 0x100, 0), KMM_EINVAL, KMM_MISUSE_BAD_FLAGS, true, fn);
    REFUSED(kmm_vm_fault(0, va, 0, 0), KMM_EINVAL, 0, false, fn);
    REFUSED(kmm_vm_fault(us, va + 8 * PAGE, 0, 0), KMM_ENOENT, 0, false, fn);
    REFUSED(kmm_vm_fault(us, va, UWR, 0), KMM_EACCES, 0, false, fn);
    REFUSED(kmm_vm_fault(us, va, KMM_FAULT_EXEC, 0), KMM_EACCES, 0, false, fn);
    REFUSED(kmm_vm_fault(us, va + PAGE, KMM_FAULT_EXEC | KMM_FAULT_USER, 0), KMM_EACCES, 0, false,
            fn);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 1); /* the refusals left it untouched */
    /* Clones: of nothing, of the kernel space, into nowhere. */
    const char *cl = "kmm_aspace_clone";
    REFUSED(kmm_aspace_clone(0, &child), KMM_EINVAL, 0, false, cl);
    REFUSED(kmm_aspace_clone(x.ks, &child), KMM_EINVAL, KMM_MISUSE_BAD_HANDLE, true, cl);
    REFUSED(kmm_aspace_clone(us, 0), KMM_EINVAL, KMM_MISUSE_BAD_ARG, true, cl);
    KT_EXPECT(t, child == 0);
    KT_EXPECT_EQ(t, fstats(us).clones, 0);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, pa, 0), KMM_OK);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- clones -------------------------------------------------------------------------- */

/* What va of as translates to, for comparisons: pa, prot, owned, cow. */
struct look {
    int err;
    uint64_t pa;
    unsigned prot;
    bool owned, cow;
};

static struct look look(struct kmm_aspace *as, uint64_t va)
{
    struct kmm_vm_translation tr = {0};
    struct look l = {.err = kmm_vm_translate(as, va, &tr)};
    if (l.err == KMM_OK) {
        l.pa = tr.pa;
        l.prot = tr.prot;
        l.owned = tr.owned;
        l.cow = tr.cow;
    }
    return l;
}

/* The parent every clone test starts from, at x->user:
 *   +0      owned, writable, 'A'
 *   +1 pg   owned, read-only, 'B'
 *   +2 pg   demand-zero, writable
 *   +3 pg   the caller's frame (not owned), writable, 'D'
 *   +2 MiB  a 2 MiB page of the caller's (not owned), read-only */
struct parent {
    struct kmm_aspace *as;
    uint64_t a, b, dframe, huge;
};

static bool make_parent(struct ktest *t, struct fx *x, struct parent *p)
{
    if (kmm_aspace_create(x->f.k, &p->as) != KMM_OK)
        return false;
    uint64_t va = x->user;
    p->a = map_owned(t, x, p->as, va, URW, 'A');
    p->b = map_owned(t, x, p->as, va + PAGE, UR, 'B');
    p->dframe = kmm_page_alloc(x->f.k, 0, 0);
    p->huge = kmm_pages_alloc(x->f.k, 512, 0); /* an order-9 block: 2 MiB aligned */
    if (!p->a || !p->b || !p->dframe || !p->huge)
        return false;
    kt_fill(kt_machine_phys(x->f.m, p->dframe), 'D', PAGE);
    return kmm_vm_map(p->as, va + 2 * PAGE, 0, PAGE, URW | KMM_MAP_DEMAND) == KMM_OK &&
           kmm_vm_map(p->as, va + 3 * PAGE, p->dframe, PAGE, URW) == KMM_OK &&
           kmm_vm_map(p->as, va + M2, p->huge, M2, UR | KMM_MAP_HUGE) == KMM_OK;
}

/* Frees what make_parent allocated for the caller (destroy the spaces first). */
static void free_parent_frames(struct ktest *t, struct fx *x, struct parent *p)
{
    KT_EXPECT_EQ(t, kmm_page_free(x->f.k, p->dframe, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_pages_free(x->f.k, p->huge, 512), KMM_OK);
}

KTEST_LEVELS(vm_fault, a_clone_shares_owned_pages_until_a_write_copies_them)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct parent p;
    KT_ASSERT(t, make_parent(t, &x, &p));
    uint64_t va = x.user;
    struct kmm_aspace *c;
    KT_ASSERT_EQ(t, kmm_aspace_clone(p.as, &c), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Both sides: the owned pages are COW on the same frames, the rest as
     * it was. */
    struct kmm_aspace *both[2] = {p.as, c};
    for (unsigned i = 0; i < 2; i++) {
        struct look a = look(both[i], va), b = look(both[i], va + PAGE);
        KT_EXPECT(t, a.err == KMM_OK && a.pa == p.a && a.owned && a.cow && a.prot == URW);
        KT_EXPECT(t, b.err == KMM_OK && b.pa == p.b && b.owned && b.cow && b.prot == UR);
        KT_EXPECT_EQ(t, look(both[i], va + 2 * PAGE).err, KMM_ENOENT);
        struct look dd = look(both[i], va + 3 * PAGE);
        KT_EXPECT(t, dd.pa == p.dframe && !dd.owned && !dd.cow && dd.prot == URW);
        struct kmm_vm_translation tr;
        KT_ASSERT_EQ(t, kmm_vm_translate(both[i], va + M2 + PAGE, &tr), KMM_OK);
        KT_EXPECT(t, tr.pa == p.huge + PAGE && tr.page_size == M2 && !tr.owned);
        struct kmm_vm_fault_stats fs = fstats(both[i]);
        KT_EXPECT_EQ(t, fs.cow_pages, 2);
        KT_EXPECT_EQ(t, fs.demand_pages, 1);
    }
    KT_EXPECT_EQ(t, fstats(p.as).clones, 1);
    /* The CPU, walking the tables: reads go through, writes fault on both
     * sides, the caller's frame stays writable. */
    for (unsigned i = 0; i < 2; i++) {
        KT_EXPECT(t, cpu_allows(&x, both[i], va, SMMU_READ, levels));
        KT_EXPECT(t, !cpu_allows(&x, both[i], va, SMMU_WRITE, levels));
        KT_EXPECT(t, !cpu_allows(&x, both[i], va + 2 * PAGE, SMMU_READ, levels));
        KT_EXPECT(t, cpu_allows(&x, both[i], va + 3 * PAGE, SMMU_WRITE, levels));
    }
    /* The frames only mappings hold cannot be freed under them. */
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, p.a, 0), KMM_EBUSY);

    /* The child writes: a copy of its own. */
    KT_EXPECT_EQ(t, fault(c, va + 5, UWR), KMM_FAULT_COW_COPY);
    KT_EXPECT(t, cpu_allows(&x, c, va, SMMU_WRITE, levels));
    KT_EXPECT(t, !cpu_allows(&x, p.as, va, SMMU_WRITE, levels));
    struct look ca = look(c, va);
    KT_EXPECT(t, ca.pa != p.a && ca.owned && !ca.cow && ca.prot == URW);
    uint8_t *cp = byte_at(&x, c, va);
    KT_EXPECT(t, all_bytes(cp, 'A'));
    if (x.live) { /* the mirror shows the child's copy, writable */
        volatile uint8_t *v = (volatile uint8_t *)(uintptr_t)va;
        v[5] = 'c';
    } else {
        cp[5] = 'c';
    }
    KT_EXPECT_EQ(t, cp[5], 'c');
    KT_EXPECT(t, all_bytes(byte_at(&x, p.as, va), 'A')); /* the parent's is unchanged */
    /* The parent writes: the last mapping of its frame takes it back. */
    KT_EXPECT_EQ(t, fault(p.as, va, UWR), KMM_FAULT_COW_REUSE);
    struct look pa_ = look(p.as, va);
    KT_EXPECT(t, pa_.pa == p.a && pa_.owned && !pa_.cow && pa_.prot == URW);
    byte_at(&x, p.as, va)[5] = 'p';
    KT_EXPECT_EQ(t, cp[5], 'c');
    /* A read-only COW page stays read-only; reading it needs nothing. */
    KT_EXPECT_EQ(t, kmm_vm_fault(c, va + PAGE, UWR, 0), KMM_EACCES);
    KT_EXPECT_EQ(t, fault(c, va + PAGE, KMM_FAULT_USER), KMM_FAULT_SPURIOUS);
    /* ... until it is made writable: then its first write copies it. */
    KT_ASSERT_EQ(t, kmm_vm_protect(c, va + PAGE, PAGE, URW), KMM_OK);
    struct look cb = look(c, va + PAGE);
    KT_EXPECT(t, cb.cow && cb.prot == URW && cb.pa == p.b);
    KT_EXPECT_EQ(t, fault(c, va + PAGE, UWR), KMM_FAULT_COW_COPY);
    KT_EXPECT(t, all_bytes(byte_at(&x, c, va + PAGE), 'B'));
    /* The demand-zero page: each side gets its own zeros. */
    KT_EXPECT_EQ(t, fault(c, va + 2 * PAGE, UWR), KMM_FAULT_DEMAND_ZERO);
    byte_at(&x, c, va + 2 * PAGE)[0] = 'z';
    KT_EXPECT_EQ(t, look(p.as, va + 2 * PAGE).err, KMM_ENOENT);
    KT_EXPECT_EQ(t, fault(p.as, va + 2 * PAGE, KMM_FAULT_USER), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT(t, all_bytes(byte_at(&x, p.as, va + 2 * PAGE), 0));
    /* The caller's frame stays shared: a write is seen on both sides. */
    byte_at(&x, c, va + 3 * PAGE)[9] = 'd';
    KT_EXPECT_EQ(t, byte_at(&x, p.as, va + 3 * PAGE)[9], 'd');
    struct kmm_vm_fault_stats cs = fstats(c), ps = fstats(p.as);
    KT_EXPECT(t, cs.cow_copy == 2 && cs.demand_zero == 1 && cs.cow_reuse == 0);
    KT_EXPECT(t, ps.cow_copy == 0 && ps.cow_reuse == 1 && ps.demand_zero == 1);
    KT_EXPECT_EQ(t, cs.cow_pages, 0);
    KT_EXPECT_EQ(t, ps.cow_pages, 1); /* B, read-only */
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* The report's page-table section sums them over every space. */
    static struct kt_text tx;
    tx.len = 0;
    struct kmm_sink sink = {kt_text_write, &tx};
    kmm_report(x.f.k, &sink);
    KT_EXPECT(t, ktest_contains(tx.buf, "every space: copy-on-write pages 1, demand-zero pages 0, "
                                        "clones 1; faults resolved: demand-zero 2, cow copy 2, "
                                        "cow reuse 1, spurious 1; refused 1"));
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, p.as), KMM_OK);
    free_parent_frames(t, &x, &p);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_fault, a_fork_of_a_fork_keeps_three_separate_copies)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct parent p;
    KT_ASSERT(t, make_parent(t, &x, &p));
    uint64_t va = x.user;
    struct kmm_aspace *c, *g;
    KT_ASSERT_EQ(t, kmm_aspace_clone(p.as, &c), KMM_OK);
    KT_ASSERT_EQ(t, kmm_aspace_clone(c, &g), KMM_OK);
    KT_EXPECT(t, look(g, va).pa == p.a && look(g, va).cow);
    KT_EXPECT_EQ(t, fault(g, va, UWR), KMM_FAULT_COW_COPY);
    byte_at(&x, g, va)[0] = 'g';
    KT_EXPECT_EQ(t, fault(c, va, UWR), KMM_FAULT_COW_COPY);
    byte_at(&x, c, va)[0] = 'c';
    KT_EXPECT_EQ(t, fault(p.as, va, UWR), KMM_FAULT_COW_REUSE);
    KT_EXPECT_EQ(t, byte_at(&x, p.as, va)[0], 'A');
    KT_EXPECT_EQ(t, byte_at(&x, c, va)[0], 'c');
    KT_EXPECT_EQ(t, byte_at(&x, g, va)[0], 'g');
    KT_EXPECT_EQ(t, byte_at(&x, g, va)[1], 'A');
    KT_EXPECT(t, look(p.as, va).pa == p.a);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Destroyed in the order they were made, not the reverse. */
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, p.as), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, c), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, g), KMM_OK);
    free_parent_frames(t, &x, &p);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_fault, the_child_outlives_its_parent_and_every_frame_comes_back)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct parent p;
    KT_ASSERT(t, make_parent(t, &x, &p));
    uint64_t va = x.user;
    struct kmm_aspace *c;
    KT_ASSERT_EQ(t, kmm_aspace_clone(p.as, &c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, p.as), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* The child's COW pages are the frames' last mappings now. */
    KT_EXPECT(t, all_bytes(byte_at(&x, c, va), 'A'));
    KT_EXPECT_EQ(t, fault(c, va, UWR), KMM_FAULT_COW_REUSE);
    KT_EXPECT_EQ(t, look(c, va).pa, p.a);
    KT_EXPECT(t, look(c, va + PAGE).cow); /* read-only, still marked */
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, c), KMM_OK);
    free_parent_frames(t, &x, &p);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- out of memory ------------------------------------------------------------------- */

static uint64_t taken[32 * MIB / PAGE];

/* Allocates every free page into taken[]; returns how many. */
static size_t take_all(struct kmm *k)
{
    kmm_page_drain_cpu(k);
    size_t n = 0;
    while (n < N(taken) && (taken[n] = kmm_page_alloc(k, 0, 0)) != 0)
        n++;
    return n;
}

/* Frees taken[from .. to). */
static void give_back(struct ktest *t, struct kmm *k, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        KT_EXPECT_EQ(t, kmm_page_free(k, taken[i], 0), KMM_OK);
}

/* Whether every page of the parent's range translates as it did. */
static bool parent_as_before(struct kmm_aspace *as, uint64_t va, const struct look *before)
{
    for (unsigned i = 0; i < 4; i++) {
        struct look l = look(as, va + i * PAGE);
        const struct look *b = &before[i];
        if (l.err != b->err || l.pa != b->pa || l.prot != b->prot || l.owned != b->owned ||
            l.cow != b->cow)
            return false;
    }
    return true;
}

KTEST_LEVELS(vm_fault, a_clone_without_memory_at_any_step_changes_nothing)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct parent p;
    KT_ASSERT(t, make_parent(t, &x, &p));
    uint64_t va = x.user;
    struct look before[4];
    for (unsigned i = 0; i < 4; i++)
        before[i] = look(p.as, va + i * PAGE);
    struct kmm_vm_stats vs0, vs;
    kmm_vm_stats(p.as, &vs0);
    struct kmm_aspace *c = 0;
    int err = KMM_ENOMEM;
    unsigned failures = 0;
    /* With 0, 1, 2, ... pages to spare until it succeeds: every
     * allocation of the clone fails once. */
    for (size_t spare = 0; err == KMM_ENOMEM && spare < 64; spare++) {
        size_t n = take_all(x.f.k);
        KT_ASSERT(t, n > spare && n < N(taken));
        give_back(t, x.f.k, 0, spare);
        err = kmm_aspace_clone(p.as, &c);
        give_back(t, x.f.k, spare, n);
        if (err != KMM_ENOMEM)
            break;
        failures++;
        KT_EXPECT(t, c == 0);
        KT_EXPECT(t, parent_as_before(p.as, va, before));
        kmm_vm_stats(p.as, &vs);
        KT_EXPECT_EQ(t, vs.mapped_pages, vs0.mapped_pages);
        KT_EXPECT_EQ(t, vs.table_bytes, vs0.table_bytes);
        KT_EXPECT_EQ(t, fstats(p.as).cow_pages, 0);
        KT_EXPECT_EQ(t, fstats(p.as).clones, 0);
        KT_EXPECT_HEALTHY(t, x.f.k);
    }
    KT_ASSERT_EQ(t, err, KMM_OK);
    /* The space's page, its root, and one table per level below it at
     * least (a PDPT, a PD, a PT; a PML4 too with 5 levels). */
    KT_EXPECT(t, failures >= levels + 1);
    KT_EXPECT(t, look(p.as, va).cow && look(c, va).cow);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, p.as), KMM_OK);
    free_parent_frames(t, &x, &p);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_fault, a_fault_without_memory_changes_nothing_and_can_be_retried)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct parent p;
    KT_ASSERT(t, make_parent(t, &x, &p));
    uint64_t va = x.user;
    struct kmm_aspace *c;
    KT_ASSERT_EQ(t, kmm_aspace_clone(p.as, &c), KMM_OK);
    size_t n = take_all(x.f.k);
    KT_ASSERT(t, n > 0 && n < N(taken));
    /* A copy and a zeroed page need a page; there is none. */
    KT_EXPECT_EQ(t, kmm_vm_fault(c, va, UWR, 0), KMM_ENOMEM);
    struct look l = look(c, va);
    KT_EXPECT(t, l.cow && l.pa == p.a);
    KT_EXPECT_EQ(t, kmm_vm_fault(c, va + 2 * PAGE, UWR, 0), KMM_ENOMEM);
    KT_EXPECT_EQ(t, fstats(c).demand_pages, 1);
    KT_EXPECT_EQ(t, fstats(c).refused, 2);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Taking a frame back needs none. */
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, p.as), KMM_OK);
    KT_EXPECT_EQ(t, fault(c, va, UWR), KMM_FAULT_COW_REUSE);
    /* With a page again, the retry works. */
    give_back(t, x.f.k, 0, n);
    KT_EXPECT_EQ(t, fault(c, va + 2 * PAGE, UWR), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, c), KMM_OK);
    free_parent_frames(t, &x, &p);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_fault, demand_zero_and_copy_on_write_pages_can_be_replaced_and_unmapped_one_by_one)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct parent p;
    KT_ASSERT(t, make_parent(t, &x, &p));
    uint64_t va = x.user;
    struct kmm_aspace *c;
    KT_ASSERT_EQ(t, kmm_aspace_clone(p.as, &c), KMM_OK);
    uint64_t q = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT(t, q != 0);
    /* A replacing map over a demand-zero page and over a COW page. */
    KT_ASSERT_EQ(t, kmm_vm_map(c, va + 2 * PAGE, q, PAGE, UR | KMM_MAP_REPLACE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(c, va, q, PAGE, UR | KMM_MAP_REPLACE), KMM_OK);
    KT_EXPECT(t, look(c, va).pa == q && !look(c, va).cow && !look(c, va).owned);
    KT_EXPECT(t, look(c, va + 2 * PAGE).pa == q);
    struct kmm_vm_fault_stats fs = fstats(c);
    KT_EXPECT_EQ(t, fs.cow_pages, 1);
    KT_EXPECT_EQ(t, fs.demand_pages, 0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* The parent's page is the frame's last mapping now. */
    KT_EXPECT_EQ(t, fault(p.as, va, UWR), KMM_FAULT_COW_REUSE);
    /* Single pages: a demand-zero one and a COW one. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(p.as, va + 2 * PAGE, PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(c, va + PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, fstats(p.as).demand_pages, 0);
    KT_EXPECT_EQ(t, fstats(c).cow_pages, 0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(p.as, va + 2 * PAGE, PAGE), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_vm_fault(p.as, va + 2 * PAGE, 0, 0), KMM_ENOENT);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, c), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, p.as), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, q, 0), KMM_OK);
    free_parent_frames(t, &x, &p);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), x.free0);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}
