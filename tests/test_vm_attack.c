/*
 * test_vm_attack.c - the newest public calls as a careless or hostile
 * caller uses them: faults (kmm_vm_fault) at odd addresses and with odd
 * access bits, on ranges cut up by protect and unmap after a clone or a
 * demand-zero map; clones (kmm_aspace_clone) of spaces that are not
 * there; kmm_vm_unmap_ram on every kind of address but a range's start;
 * kmm_kva_populate on every kind of area but a raw one. Each refusal is
 * checked the way SPEC §9 asks: its error value, counted once under its
 * class, logged once naming the call and its caller (the call sites
 * below), nothing changed, kmm_check clean, and every frame back at the
 * end. Runs hosted and in the kernel, with 4 and 5 paging levels.
 */
#include "ktest.h"
#include "call_sites.h"
#include "env.h"
#include "fixture.h"
#include "ktest_levels.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MIB  (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)
#define M2   (2 * MIB)
#define RW   (KMM_PROT_READ | KMM_PROT_WRITE)
#define URW  (RW | KMM_PROT_USER)
#define UR   (KMM_PROT_READ | KMM_PROT_USER)
#define UWR  (KMM_FAULT_WRITE | KMM_FAULT_USER)
/* Where user spaces map here: no world mirrors it, every access goes
 * through the direct map. */
#define USER UINT64_C(0x0000000040000000)

static const struct kmm_region map32[] = {
    {1 * MIB, 31 * MIB, KMM_MEM_USABLE},
    {32 * MIB, 1 * MIB, KMM_MEM_RESERVED}, /* device memory, say */
};

struct fx {
    struct kt_kmm f;
    struct kmm *k;
    struct kmm_aspace *ks;
    uint64_t base, size; /* the kernel virtual area window */
    uint64_t free0;      /* free pages once set up */
};

/* An instance on map32, one CPU, with an 8 MiB window: in the live window
 * where the world has one, so that the window's mappings are real. */
static bool up(struct ktest *t, struct fx *x, unsigned levels)
{
    x->f.m = kt_machine_create(t, map32, N(map32));
    if (!x->f.m)
        return false;
    uint64_t live_base, live_size;
    kt_machine_live_window(x->f.m, &live_base, &live_size);
    x->size = 8 * MIB;
    x->base = x->size <= live_size ? live_base : KMM_KVA_DEFAULT_BASE;
    struct kmm_config cfg = {.port = kt_machine_port(x->f.m),
                             .regions = map32,
                             .region_count = N(map32),
                             .cpu_count = 1,
                             .paging_levels = levels,
                             .kva_base = x->base,
                             .kva_size = x->size};
    int err = kmm_init(&cfg, &x->f.k);
    if (err) {
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_init: %s", kmm_strerror(err));
        kt_machine_destroy(x->f.m);
        return false;
    }
    x->k = x->f.k;
    x->ks = kmm_kernel_aspace(x->k);
    x->free0 = kt_free_pages(x->k);
    return true;
}

/* Every frame back, kmm_check clean, and the instance gone. */
static void down(struct ktest *t, struct fx *x)
{
    kmm_vm_map_ram_drain(x->k);
    kmm_kva_purge(x->k);
    KT_EXPECT_EQ(t, kt_free_pages(x->k), x->free0);
    KT_EXPECT_HEALTHY(t, x->k);
    kt_kmm_down(&x->f);
}

static uint64_t noncanonical(unsigned levels)
{
    return levels == 5 ? UINT64_C(0x0100000000000000) : UINT64_C(0x0000800000000000);
}

/* The last address below the kernel half, and the first in it. */
static uint64_t user_top(unsigned levels)
{
    return levels == 5 ? UINT64_C(0x00fffffffffff000) : UINT64_C(0x00007ffffffff000);
}

static uint64_t kernel_bottom(unsigned levels)
{
    return levels == 5 ? UINT64_C(0xff00000000000000) : UINT64_C(0xffff800000000000);
}

/* --- call sites: the caller a refusal must name ------------------------------------- */

KT_SITE int site_fault(struct kmm_aspace *as, uint64_t va, unsigned access)
{
    enum kmm_vm_fault_kind how = KMM_FAULT_SPURIOUS;
    int err = kmm_vm_fault(as, va, access, &how);
    __asm__ volatile("" ::: "memory");
    return err == KMM_OK || how == KMM_FAULT_NONE ? err : KMM_EINVAL; /* how NONE on refusal */
}

KT_SITE int site_clone(struct kmm_aspace *as, struct kmm_aspace **out)
{
    int err = kmm_aspace_clone(as, out);
    __asm__ volatile("" ::: "memory");
    return err;
}

KT_SITE int site_unmap_ram(struct kmm *k, uint64_t va, size_t count)
{
    int err = kmm_vm_unmap_ram(k, (const void *)(uintptr_t)va, count);
    __asm__ volatile("" ::: "memory");
    return err;
}

KT_SITE int site_populate(struct kmm *k, uint64_t va)
{
    int err = kmm_kva_populate(k, va);
    __asm__ volatile("" ::: "memory");
    return err;
}

KT_SITE int site_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags)
{
    int err = kmm_vm_map(as, va, pa, size, flags);
    __asm__ volatile("" ::: "memory");
    return err;
}

KT_SITE int site_protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot)
{
    int err = kmm_vm_protect(as, va, size, prot);
    __asm__ volatile("" ::: "memory");
    return err;
}

/* The address after "caller 0x" in text, or 0. */
static uintptr_t caller_in(const char *text)
{
    static const char key[] = "caller 0x";
    for (const char *s = text; *s; s++) {
        const char *a = s, *b = key;
        while (*b && *a == *b)
            a++, b++;
        if (*b)
            continue;
        uintptr_t v = 0;
        for (;; a++) {
            unsigned d = *a >= '0' && *a <= '9'   ? (unsigned)(*a - '0')
                         : *a >= 'a' && *a <= 'f' ? (unsigned)(*a - 'a' + 10)
                                                  : 16u;
            if (d == 16)
                return v;
            v = v * 16 + d;
        }
    }
    return 0;
}

/* --- the refusal check ---------------------------------------------------------------- */

/* What a refusal must leave as it found it. */
struct before {
    struct kmm_misuse_stats misuse;
    struct kmm_page_stats pages;
    unsigned long errors;
};

static struct before before_now(struct fx *x)
{
    struct before b;
    kmm_misuse_stats(x->k, &b.misuse);
    kmm_page_drain_cpu(x->k);
    kmm_page_stats(x->k, &b.pages);
    b.errors = kt_machine_log_count(x->f.m, KMM_LOG_ERR);
    return b;
}

/*
 * A refused call: it returned want; misuse counter [layer][cls] went up by
 * one and no other (none at all when layer < 0: an answer, or a handle
 * with no instance); one error line naming fn and the call site site
 * (NULL: not checked), none when not counted; the page allocator's free
 * lists as before; kmm_check clean.
 */
static void expect_refused_at(struct ktest *t, struct fx *x, const struct before *b, int got,
                              int want, int layer, int cls, const char *fn, const void *site,
                              const char *what, int line)
{
    if (got != want)
        ktest_fail_at(t, __FILE__, line, "%s: %s, want %s", what, kmm_strerror(got),
                      kmm_strerror(want));
    bool logged = layer >= 0;
    struct kmm_misuse_stats after;
    kmm_misuse_stats(x->k, &after);
    if (after.total - b->misuse.total != (uint64_t)logged)
        ktest_fail_at(t, __FILE__, line, "%s: misuse went up by %llu", what,
                      (unsigned long long)(after.total - b->misuse.total));
    if (layer >= 0 && after.count[layer][cls] - b->misuse.count[layer][cls] != 1)
        ktest_fail_at(t, __FILE__, line, "%s: not counted as misuse [%d][%d]", what, layer, cls);
    unsigned long now = kt_machine_log_count(x->f.m, KMM_LOG_ERR);
    if (now != b->errors + logged)
        ktest_fail_at(t, __FILE__, line, "%s: %lu error lines", what, now - b->errors);
    const char *last = kt_machine_last_error(x->f.m);
    if (logged && !ktest_contains(last, fn))
        ktest_fail_at(t, __FILE__, line, "%s: logged \"%s\"", what, last);
    if (logged && site && !kt_inside((const void *)caller_in(last), site))
        ktest_fail_at(t, __FILE__, line, "%s: the caller logged is not the call site: \"%s\"", what,
                      last);
    struct kmm_page_stats p;
    kmm_page_drain_cpu(x->k);
    kmm_page_stats(x->k, &p);
    if (!kt_same_buddyinfo(&b->pages, &p) || p.free_pages != b->pages.free_pages)
        ktest_fail_at(t, __FILE__, line, "%s: the page allocator changed", what);
    struct kmm_check_result r;
    if (kmm_check(x->k, &r) != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, line, "%s: kmm_check: %s", what, r.first);
}

/* REFUSED(call, want, layer, cls, fn, site): call refused as above. */
#define REFUSED(call, want, layer, cls, fn, site)                                                  \
    do {                                                                                           \
        struct before b_ = before_now(&x);                                                         \
        int got_ = (call);                                                                         \
        expect_refused_at(t, &x, &b_, got_, (want), (layer), (cls), (fn), (const void *)(site),    \
                          #call, __LINE__);                                                        \
    } while (0)

/* An answer: the error, nothing counted or logged, nothing changed. */
#define ANSWERED(call, want) REFUSED(call, want, -1, 0, "", 0)

#define VM  KMM_LAYER_VM
#define KVA KMM_LAYER_KVA

/* --- helpers ------------------------------------------------------------------------------- */

/* A page of its own filled with b, mapped owned at va of as with prot
 * (only the mapping holds it). */
static uint64_t map_owned(struct ktest *t, struct fx *x, struct kmm_aspace *as, uint64_t va,
                          unsigned prot, uint8_t b)
{
    uint64_t pa = kmm_page_alloc(x->k, 0, 0);
    if (!pa)
        return 0;
    kt_fill(kt_machine_phys(x->f.m, pa), b, PAGE);
    KT_EXPECT_EQ(t, kmm_vm_map(as, va, pa, PAGE, prot | KMM_MAP_OWNED), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x->k, pa, 0), KMM_OK);
    return pa;
}

/* What a fault did, KMM_FAULT_NONE for a refusal. */
static enum kmm_vm_fault_kind fault(struct kmm_aspace *as, uint64_t va, unsigned access)
{
    enum kmm_vm_fault_kind how = KMM_FAULT_SPURIOUS;
    return kmm_vm_fault(as, va, access, &how) == KMM_OK ? how : KMM_FAULT_NONE;
}

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
    if (l.err == KMM_OK)
        l = (struct look){.pa = tr.pa, .prot = tr.prot, .owned = tr.owned, .cow = tr.cow};
    return l;
}

static uint8_t *bytes_at(struct fx *x, struct kmm_aspace *as, uint64_t va)
{
    struct look l = look(as, va);
    return l.err == KMM_OK ? kt_machine_phys(x->f.m, l.pa) : 0;
}

static struct kmm_vm_fault_stats fstats(struct kmm_aspace *as)
{
    struct kmm_vm_fault_stats s;
    kmm_vm_fault_stats(as, &s);
    return s;
}

/* --- faults -------------------------------------------------------------------------------- */

KTEST_LEVELS(vm_attack, faults_at_the_edges_of_the_halves_and_with_odd_access_bits)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &us), KMM_OK);
    const char *fn = "kmm_vm_fault";
    uint64_t top = user_top(levels), bottom = kernel_bottom(levels);
    /* Demand-zero pages at the last user page and the first kernel one. */
    KT_ASSERT_EQ(t, kmm_vm_map(us, top, 0, PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, bottom, 0, PAGE, RW | KMM_MAP_DEMAND), KMM_OK);

    /* Not canonical, on either side of the hole, in either space. */
    REFUSED(site_fault(us, noncanonical(levels), 0), KMM_EINVAL, VM, KMM_MISUSE_OUTSIDE, fn,
            site_fault);
    REFUSED(site_fault(us, bottom - 1, UWR), KMM_EINVAL, VM, KMM_MISUSE_OUTSIDE, fn, site_fault);
    REFUSED(site_fault(x.ks, top + PAGE, KMM_FAULT_WRITE), KMM_EINVAL, VM, KMM_MISUSE_OUTSIDE, fn,
            site_fault);
    /* Access bits the CPU's error code has but the call does not take
     * (P, RSVD, PK, SS), and all of them. */
    REFUSED(site_fault(us, top, 0x1), KMM_EINVAL, VM, KMM_MISUSE_BAD_FLAGS, fn, site_fault);
    REFUSED(site_fault(us, top, 0x8), KMM_EINVAL, VM, KMM_MISUSE_BAD_FLAGS, fn, site_fault);
    REFUSED(site_fault(us, top, 0x20 | UWR), KMM_EINVAL, VM, KMM_MISUSE_BAD_FLAGS, fn, site_fault);
    REFUSED(site_fault(us, top, ~0u), KMM_EINVAL, VM, KMM_MISUSE_BAD_FLAGS, fn, site_fault);
    /* A user space cannot put a demand-zero page in the kernel half, nor
     * one across the hole. */
    REFUSED(site_map(us, bottom, 0, PAGE, RW | KMM_MAP_DEMAND), KMM_EINVAL, VM, KMM_MISUSE_OUTSIDE,
            "kmm_vm_map", site_map);
    REFUSED(site_map(us, top, 0, 2 * PAGE, URW | KMM_MAP_DEMAND), KMM_EINVAL, VM,
            KMM_MISUSE_OUTSIDE, "kmm_vm_map", site_map);
    REFUSED(site_map(x.ks, bottom - PAGE, 0, 2 * PAGE, RW | KMM_MAP_DEMAND), KMM_EINVAL, VM,
            KMM_MISUSE_OUTSIDE, "kmm_vm_map", site_map);
    /* Answers: nothing there, or not allowed. Neither counted nor logged. */
    ANSWERED(site_fault(us, top - PAGE, UWR), KMM_ENOENT);
    ANSWERED(site_fault(x.ks, USER, KMM_FAULT_WRITE), KMM_ENOENT); /* the kernel's lower half */
    ANSWERED(site_fault(us, UINT64_MAX, 0), KMM_ENOENT);
    ANSWERED(site_fault(us, 0, UWR), KMM_ENOENT);
    ANSWERED(site_fault(us, bottom, KMM_FAULT_USER), KMM_EACCES);               /* a kernel page */
    ANSWERED(site_fault(us, top, KMM_FAULT_EXEC | KMM_FAULT_USER), KMM_EACCES); /* no execute */
    ANSWERED(site_fault(us, top, KMM_FAULT_MASK), KMM_EACCES);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 1);
    KT_EXPECT_EQ(t, fstats(x.ks).demand_pages, 1);
    /* The pages themselves, at any offset in them: the kernel page through
     * the user space, resolved (and counted) in the kernel space. */
    KT_EXPECT_EQ(t, fault(us, top + PAGE - 1, UWR), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_EQ(t, fault(us, bottom + 7, KMM_FAULT_WRITE), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_EQ(t, fault(us, bottom, KMM_FAULT_WRITE), KMM_FAULT_SPURIOUS);
    KT_EXPECT_EQ(t, fstats(x.ks).demand_zero, 1);
    KT_EXPECT_EQ(t, fstats(x.ks).spurious, 1);
    KT_EXPECT_EQ(t, fstats(us).demand_zero, 1);
    KT_EXPECT_EQ(t, look(us, bottom).pa, look(x.ks, bottom).pa);
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, bottom, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, us), KMM_OK);
    down(t, &x);
}

KTEST_LEVELS(vm_attack, a_destroyed_space_is_neither_faulted_nor_cloned)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *us, *c = 0;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &us), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, 0, PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    KT_ASSERT_EQ(t, kmm_aspace_destroy(x.k, us), KMM_OK);
    /* No instance to count in: refused unlogged. (Until its page makes
     * another space: kmm/vm.h.) */
    ANSWERED(site_fault(us, USER, UWR), KMM_EINVAL);
    ANSWERED(site_clone(us, &c), KMM_EINVAL);
    KT_EXPECT(t, c == 0);
    REFUSED(kmm_aspace_destroy(x.k, us), KMM_EINVAL, VM, KMM_MISUSE_BAD_HANDLE,
            "kmm_aspace_destroy", 0);
    down(t, &x);
}

KT_SITE int site_fault_stats(struct kmm_aspace *as, struct kmm_vm_fault_stats *out)
{
    int err = kmm_vm_fault_stats(as, out);
    __asm__ volatile("" ::: "memory");
    return err;
}

KT_SITE int site_vm_stats(struct kmm_aspace *as, struct kmm_vm_stats *out)
{
    int err = kmm_vm_stats(as, out);
    __asm__ volatile("" ::: "memory");
    return err;
}

KTEST_LEVELS(vm_attack, the_figures_of_a_destroyed_space_are_refused_not_read)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    /* Poisoned, the destroyed space's page holds no lock a reader could
     * take: one that did would spin on it for ever. */
    KT_ASSERT_EQ(t, kmm_page_debug(x.k, KMM_PAGE_DEBUG_POISON), 0);
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &us), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, USER, 0, PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    struct kmm_vm_fault_stats s;
    KT_ASSERT_EQ(t, kmm_vm_fault_stats(us, &s), KMM_OK);
    KT_EXPECT_EQ(t, s.demand_pages, 1);
    KT_ASSERT_EQ(t, kmm_aspace_destroy(x.k, us), KMM_OK);
    kmm_page_drain_cpu(x.k); /* its page back in the zone, poisoned */
    s.demand_pages = 7;
    ANSWERED(site_fault_stats(us, &s), KMM_EINVAL);
    KT_EXPECT_EQ(t, s.demand_pages, 0); /* zeroed, never read */
    struct kmm_vm_stats v = {.mapped_pages = 7};
    ANSWERED(site_vm_stats(us, &v), KMM_EINVAL); /* the same for kmm_vm_stats */
    KT_EXPECT_EQ(t, v.mapped_pages, 0);
    REFUSED(site_vm_stats(x.ks, 0), KMM_EINVAL, VM, KMM_MISUSE_BAD_ARG, "kmm_vm_stats",
            site_vm_stats);
    KT_EXPECT_EQ(t, site_vm_stats(x.ks, &v), KMM_OK);
    s.clones = 7;
    ANSWERED(site_fault_stats(0, &s), KMM_EINVAL);
    KT_EXPECT_EQ(t, s.clones, 0);
    REFUSED(site_fault_stats(x.ks, 0), KMM_EINVAL, VM, KMM_MISUSE_BAD_ARG, "kmm_vm_fault_stats",
            site_fault_stats);
    KT_EXPECT_EQ(t, kmm_page_debug(x.k, 0), KMM_PAGE_DEBUG_POISON);
    down(t, &x);
}

/* --- protect and unmap of part of a range, then faults -------------------------------------- */

KTEST_LEVELS(vm_attack, a_demand_zero_range_cut_up_by_protect_and_unmap_faults_as_each_piece_says)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &us), KMM_OK);
    const uint64_t va = USER;
    KT_ASSERT_EQ(t, kmm_vm_map(us, va, 0, 8 * PAGE, URW | KMM_MAP_DEMAND), KMM_OK);
    /* Pages 2-3 read-only, 4 kernel-only and executable, 5-6 gone. */
    KT_ASSERT_EQ(t, site_protect(us, va + 2 * PAGE, 2 * PAGE, UR), KMM_OK);
    KT_ASSERT_EQ(t, site_protect(us, va + 4 * PAGE, PAGE, RW | KMM_PROT_EXEC), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, va + 5 * PAGE, 2 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 6);
    /* A protect over the hole is refused whole: the pages around it keep
     * what they had. */
    REFUSED(site_protect(us, va + 4 * PAGE, 4 * PAGE, UR), KMM_ENOENT, VM, KMM_MISUSE_ABSENT,
            "kmm_vm_protect", site_protect);
    REFUSED(site_map(us, va + 4 * PAGE, 0, 2 * PAGE, URW | KMM_MAP_DEMAND), KMM_EBUSY, VM,
            KMM_MISUSE_BUSY, "kmm_vm_map", site_map);
    ANSWERED(site_fault(us, va + 2 * PAGE, UWR), KMM_EACCES);
    ANSWERED(site_fault(us, va + 4 * PAGE, KMM_FAULT_USER), KMM_EACCES);
    ANSWERED(site_fault(us, va + 5 * PAGE, KMM_FAULT_USER), KMM_ENOENT);
    ANSWERED(site_fault(us, va + 6 * PAGE + 100, UWR), KMM_ENOENT);
    ANSWERED(site_fault(us, va + 8 * PAGE, UWR), KMM_ENOENT);
    ANSWERED(site_fault(us, va + PAGE, KMM_FAULT_USER | KMM_FAULT_EXEC), KMM_EACCES);
    /* What each page allows, its first touch maps. */
    KT_EXPECT_EQ(t, fault(us, va + 2 * PAGE, KMM_FAULT_USER), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_EQ(t, look(us, va + 2 * PAGE).prot, UR);
    ANSWERED(site_fault(us, va + 2 * PAGE, UWR), KMM_EACCES); /* mapped now, still read-only */
    KT_EXPECT_EQ(t, fault(us, va + 4 * PAGE, KMM_FAULT_EXEC), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_EQ(t, look(us, va + 4 * PAGE).prot, RW | KMM_PROT_EXEC);
    KT_EXPECT_EQ(t, fault(us, va + 7 * PAGE, UWR), KMM_FAULT_DEMAND_ZERO);
    /* Made writable again after the touch: an ordinary owned page now. */
    KT_ASSERT_EQ(t, kmm_vm_protect(us, va + 2 * PAGE, PAGE, URW), KMM_OK);
    KT_EXPECT_EQ(t, fault(us, va + 2 * PAGE, UWR), KMM_FAULT_SPURIOUS);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 3);
    KT_EXPECT_EQ(t, fstats(us).demand_zero, 3);
    KT_EXPECT_HEALTHY(t, x.k);
    /* An unmap of everything left, touched or not, in one call is refused
     * over the hole, and fine around it. */
    REFUSED(kmm_vm_unmap(us, va, 8 * PAGE), KMM_ENOENT, VM, KMM_MISUSE_ABSENT, "kmm_vm_unmap", 0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(us, va, 5 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(us, va + 7 * PAGE, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 0);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, us), KMM_OK);
    down(t, &x);
}

KTEST_LEVELS(vm_attack, a_cow_range_cut_up_by_protect_and_unmap_copies_only_what_may_be_written)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *p, *c;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &p), KMM_OK);
    const uint64_t va = USER;
    uint64_t f[6];
    for (unsigned i = 0; i < 6; i++) {
        f[i] = map_owned(t, &x, p, va + i * PAGE, i == 5 ? UR : URW, (uint8_t)('a' + i));
        KT_ASSERT(t, f[i] != 0);
    }
    KT_ASSERT_EQ(t, site_clone(p, &c), KMM_OK);
    /* The child: page 1 read-only, page 2 kernel-only, page 3 gone; page 5
     * (read-only in both) made writable. */
    KT_ASSERT_EQ(t, kmm_vm_protect(c, va + PAGE, PAGE, UR), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_protect(c, va + 2 * PAGE, PAGE, RW), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(c, va + 3 * PAGE, PAGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_protect(c, va + 5 * PAGE, PAGE, URW), KMM_OK);
    struct look l5 = look(c, va + 5 * PAGE);
    KT_EXPECT(t, l5.cow && l5.prot == URW && l5.pa == f[5]);
    ANSWERED(site_fault(c, va + PAGE, UWR), KMM_EACCES);
    ANSWERED(site_fault(c, va + 2 * PAGE, UWR), KMM_EACCES);
    ANSWERED(site_fault(c, va + 3 * PAGE, UWR), KMM_ENOENT);
    ANSWERED(site_fault(p, va + 5 * PAGE, UWR), KMM_EACCES); /* the parent's stays read-only */
    KT_EXPECT_EQ(t, fstats(c).refused, 3);
    /* A kernel write to the kernel-only page copies it; the child's
     * read-only page stays the shared frame. */
    KT_EXPECT_EQ(t, fault(c, va + 2 * PAGE, KMM_FAULT_WRITE), KMM_FAULT_COW_COPY);
    KT_EXPECT(t, look(c, va + 2 * PAGE).pa != f[2]);
    KT_EXPECT_EQ(t, look(c, va + PAGE).pa, f[1]);
    /* Page 5, made writable in the child only: the child's write copies,
     * and the parent's read-only page keeps its bytes. */
    KT_EXPECT_EQ(t, fault(c, va + 5 * PAGE, UWR), KMM_FAULT_COW_COPY);
    bytes_at(&x, c, va + 5 * PAGE)[0] = 'X';
    KT_EXPECT_EQ(t, bytes_at(&x, p, va + 5 * PAGE)[0], 'f');
    /* The parent's page 3 is its frame's last mapping since the child's
     * unmap, and page 2's since the child's copy: both taken back. */
    KT_EXPECT_EQ(t, fault(p, va + 3 * PAGE, UWR), KMM_FAULT_COW_REUSE);
    KT_EXPECT_EQ(t, fault(p, va + 2 * PAGE, UWR), KMM_FAULT_COW_REUSE);
    KT_EXPECT_EQ(t, fault(p, va, UWR), KMM_FAULT_COW_COPY);
    /* Taking the write right away from a COW page and giving it back
     * leaves it COW: the write still copies (or reuses). */
    KT_ASSERT_EQ(t, kmm_vm_protect(c, va + 4 * PAGE, PAGE, UR), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_protect(c, va + 4 * PAGE, PAGE, URW), KMM_OK);
    KT_EXPECT(t, look(c, va + 4 * PAGE).cow);
    KT_EXPECT_EQ(t, fault(c, va + 4 * PAGE, UWR), KMM_FAULT_COW_COPY);
    KT_EXPECT_EQ(t, fault(p, va + 4 * PAGE, UWR), KMM_FAULT_COW_REUSE);
    KT_EXPECT_EQ(t, bytes_at(&x, p, va + 4 * PAGE)[9], 'e');
    KT_EXPECT_EQ(t, bytes_at(&x, c, va + 4 * PAGE)[9], 'e');
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, p), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, c), KMM_OK);
    down(t, &x);
}

/* --- clones ---------------------------------------------------------------------------------- */

KTEST_LEVELS(vm_attack, a_clone_while_a_gather_holds_the_parents_unmap_shares_only_what_is_mapped)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *p, *c;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &p), KMM_OK);
    const uint64_t va = USER;
    uint64_t a = map_owned(t, &x, p, va, URW, 'a');
    uint64_t b = map_owned(t, &x, p, va + PAGE, URW, 'b');
    KT_ASSERT(t, a && b);
    /* Page 0 unmapped into a gather not finished yet: its frame waits
     * there, and the clone must not see it. */
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, p);
    KT_ASSERT_EQ(t, kmm_vm_unmap_g(p, va, PAGE, &g), KMM_OK);
    KT_ASSERT_EQ(t, site_clone(p, &c), KMM_OK);
    KT_EXPECT_EQ(t, look(c, va).err, KMM_ENOENT);
    KT_EXPECT(t, look(c, va + PAGE).cow && look(c, va + PAGE).pa == b);
    /* A clone of the clone, and of the parent again: three sharers. */
    struct kmm_aspace *g2, *c2;
    KT_ASSERT_EQ(t, site_clone(c, &g2), KMM_OK);
    KT_ASSERT_EQ(t, site_clone(p, &c2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, p), KMM_EBUSY); /* the gather first */
    kmm_tlb_finish(&g);
    KT_EXPECT_EQ(t, fault(c, va + PAGE, UWR), KMM_FAULT_COW_COPY);
    KT_EXPECT_EQ(t, fault(g2, va + PAGE, UWR), KMM_FAULT_COW_COPY);
    KT_EXPECT_EQ(t, fault(p, va + PAGE, UWR), KMM_FAULT_COW_COPY);
    KT_EXPECT_EQ(t, fault(c2, va + PAGE, UWR), KMM_FAULT_COW_REUSE);
    KT_EXPECT_EQ(t, look(c2, va + PAGE).pa, b);
    KT_EXPECT_HEALTHY(t, x.k);
    struct kmm_aspace *all[4] = {c2, p, g2, c};
    for (unsigned i = 0; i < 4; i++)
        KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, all[i]), KMM_OK);
    down(t, &x);
}

/* --- map_ram: every kind of address but a range's start -------------------------------------- */

static bool alloc_n(struct fx *x, uint64_t *pg, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!(pg[i] = kmm_page_alloc(x->k, 0, 0)))
            return false;
    return true;
}

static void free_n(struct fx *x, const uint64_t *pg, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        kmm_page_free(x->k, pg[i], 0);
}

static uint64_t va_of(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

#define LONG (KMM_MAP_RAM_MAX + 2) /* a range longer than a block serves */

KTEST_LEVELS(vm_attack, unmap_ram_refuses_every_address_but_a_ranges_start_with_its_count)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    static uint64_t pg[LONG];
    KT_ASSERT(t, alloc_n(&x, pg, LONG));
    const char *fn = "kmm_vm_unmap_ram";
    uint64_t r3 = va_of(kmm_vm_map_ram(x.k, pg, 3, KMM_PROT_READ));
    uint64_t rl = va_of(kmm_vm_map_ram(x.k, pg, LONG, RW)); /* an area of its own */
    uint64_t vm = va_of(kmm_vmap(x.k, pg, 2, KMM_PROT_READ));
    uint64_t va = va_of(kmm_vmalloc(x.k, PAGE, 0));
    uint64_t raw;
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.k, 2 * PAGE, &raw), KMM_OK);
    KT_ASSERT(t, r3 && rl && vm && va);
    struct kmm_kva_area blk;
    KT_ASSERT_EQ(t, kmm_kva_lookup(x.k, r3, &blk), KMM_OK);
    KT_EXPECT_EQ(t, blk.kind, KMM_KVA_VMAP_BLOCK);

    /* A block's range: with another count, past the block's bound, or
     * "huge". */
    REFUSED(site_unmap_ram(x.k, r3, 2), KMM_EINVAL, KVA, KMM_MISUSE_BAD_ORDER, fn, site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, r3, KMM_MAP_RAM_MAX + 1), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE,
            fn, site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, r3, (size_t)-1), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, r3 + PAGE, 2), KMM_EINVAL, KVA, KMM_MISUSE_NOT_BLOCK, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, r3 + 3 * PAGE, 1), KMM_EINVAL, KVA, KMM_MISUSE_NOT_BLOCK, fn,
            site_unmap_ram);
    /* The block's own guard page, at its end, and its free pages. */
    REFUSED(site_unmap_ram(x.k, blk.va + blk.size, 1), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, blk.va + blk.size - PAGE, KMM_MAP_RAM_MAX), KMM_ENOENT, KVA,
            KMM_MISUSE_ABSENT, fn, site_unmap_ram);
    /* A long range (an area): another count, its middle. */
    REFUSED(site_unmap_ram(x.k, rl, LONG - 1), KMM_EINVAL, KVA, KMM_MISUSE_BAD_ORDER, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, rl, 3), KMM_EINVAL, KVA, KMM_MISUSE_BAD_ORDER, fn, site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, rl + PAGE, LONG - 1), KMM_EINVAL, KVA, KMM_MISUSE_NOT_BLOCK, fn,
            site_unmap_ram);
    /* Areas of the other kinds, whatever the count. */
    REFUSED(site_unmap_ram(x.k, va, 1), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, fn, site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, raw, 2), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, raw, LONG), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, vm, 3), KMM_EINVAL, KVA, KMM_MISUSE_BAD_ORDER, fn, site_unmap_ram);
    /* Outside the window: below, above, the user half, not canonical. */
    REFUSED(site_unmap_ram(x.k, x.base - PAGE, 1), KMM_ERANGE, KVA, KMM_MISUSE_OUTSIDE, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, x.base + x.size, 1), KMM_ERANGE, KVA, KMM_MISUSE_OUTSIDE, fn,
            site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, UINT64_MAX & ~(PAGE - 1), 1), KMM_ERANGE, KVA, KMM_MISUSE_OUTSIDE,
            fn, site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, noncanonical(levels), 1), KMM_ERANGE, KVA, KMM_MISUSE_OUTSIDE, fn,
            site_unmap_ram);
    /* The kernel's range calls and faults leave the block's pages alone. */
    REFUSED(site_protect(x.ks, r3, PAGE, RW), KMM_EBUSY, VM, KMM_MISUSE_BUSY, "kmm_vm_protect",
            site_protect);
    REFUSED(site_map(x.ks, blk.va + blk.size - PAGE, 0, PAGE, RW | KMM_MAP_DEMAND), KMM_EBUSY, VM,
            KMM_MISUSE_BUSY, "kmm_vm_map", site_map);
    ANSWERED(site_fault(x.ks, r3 + 3 * PAGE, 0), KMM_ENOENT);
    ANSWERED(site_fault(x.ks, r3, KMM_FAULT_WRITE), KMM_EACCES);
    ANSWERED(site_fault(x.ks, blk.va + blk.size - PAGE, KMM_FAULT_WRITE), KMM_ENOENT);
    /* kmm_kva_populate is for raw areas only. */
    REFUSED(site_populate(x.k, blk.va), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, "kmm_kva_populate",
            site_populate);
    REFUSED(site_populate(x.k, r3 + PAGE), KMM_EINVAL, KVA, KMM_MISUSE_NOT_BLOCK,
            "kmm_kva_populate", site_populate);
    REFUSED(site_populate(x.k, rl), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, "kmm_kva_populate",
            site_populate);
    REFUSED(site_populate(x.k, vm), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE, "kmm_kva_populate",
            site_populate);

    /* A range in a block is no area of its own (this one starts the
     * block's); a long range is a vmap area, which kmm_vunmap takes, and
     * kmm_vm_unmap_ram takes a kmm_vmap area given its count. */
    KT_EXPECT_EQ(t, r3, blk.va);
    REFUSED(kmm_vunmap(x.k, (void *)(uintptr_t)r3), KMM_EINVAL, KVA, KMM_MISUSE_BAD_HANDLE,
            "kmm_vunmap", 0);
    KT_EXPECT_EQ(t, kmm_vunmap(x.k, (void *)(uintptr_t)rl), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.k, (void *)(uintptr_t)vm, 2), KMM_OK);
    /* Gone: a second unmap, also after the block itself went back. */
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.k, (void *)(uintptr_t)r3, 3), KMM_OK);
    REFUSED(site_unmap_ram(x.k, r3, 3), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, fn, site_unmap_ram);
    KT_EXPECT(t, kmm_vm_map_ram_drain(x.k) > 0);
    REFUSED(site_unmap_ram(x.k, r3, 3), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, fn, site_unmap_ram);
    REFUSED(site_unmap_ram(x.k, rl, LONG), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, fn, site_unmap_ram);
    KT_EXPECT_EQ(t, kmm_vm_map_ram_drain(x.k), 0);
    KT_EXPECT_EQ(t, kmm_vfree(x.k, (void *)(uintptr_t)va), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(x.k, raw), KMM_OK);
    free_n(&x, pg, LONG);
    down(t, &x);
}

/* --- populated raw areas ---------------------------------------------------------------------- */

static uint64_t tables_now(struct fx *x)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(x->ks, &s);
    return s.table_bytes / PAGE;
}

KTEST_LEVELS(vm_attack, a_populated_area_takes_demand_zero_and_huge_maps_and_keeps_its_tables)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    const char *fn = "kmm_kva_populate";
    uint64_t tables0 = tables_now(&x), raw;
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.k, 4 * MIB, &raw), KMM_OK);
    uint64_t span = (raw | (M2 - 1)) + 1; /* a whole 2 MiB span in the area, a page before it */
    KT_ASSERT(t, span + M2 <= raw + 4 * MIB);
    KT_ASSERT_EQ(t, site_populate(x.k, raw), KMM_OK);
    uint64_t tables1 = tables_now(&x);
    REFUSED(site_populate(x.k, raw), KMM_ESTATE, KVA, KMM_MISUSE_BUSY, fn, site_populate);
    /* Demand-zero pages in it, touched through the kernel space. */
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, raw, 0, 3 * PAGE, RW | KMM_MAP_DEMAND), KMM_OK);
    KT_EXPECT_EQ(t, fault(x.ks, raw + PAGE, KMM_FAULT_WRITE), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_EQ(t, tables_now(&x), tables1);
    REFUSED(kmm_kva_free(x.k, raw), KMM_EBUSY, KVA, KMM_MISUSE_BUSY, "kmm_kva_free", 0);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, raw, 3 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, tables_now(&x), tables1);
    /* A map allowing 2 MiB pages over a span whose page table the area
     * holds: 4 KiB pages there (the table stays), a plain map as a
     * replacing one. From the page before the span on. */
    uint64_t huge = kmm_page_alloc(x.k, 9, 0);
    KT_ASSERT(t, huge != 0);
    const unsigned hflags = KMM_PROT_READ | KMM_MAP_HUGE;
    for (unsigned replace = 0; replace < 2; replace++) {
        unsigned fl = hflags | (replace ? KMM_MAP_REPLACE : 0);
        KT_ASSERT_EQ(t, kmm_vm_map(x.ks, span - PAGE, huge - PAGE, M2 + PAGE, fl), KMM_OK);
        struct kmm_vm_translation tr;
        KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, span + 5 * PAGE, &tr), KMM_OK);
        KT_EXPECT_EQ(t, tr.pa, huge + 5 * PAGE);
        KT_EXPECT_EQ(t, tr.page_size, KMM_PAGE_4K);
        KT_EXPECT_EQ(t, tables_now(&x), tables1);
        KT_EXPECT_HEALTHY(t, x.k);
        REFUSED(site_map(x.ks, span, huge, M2, hflags), KMM_EBUSY, VM, KMM_MISUSE_BUSY,
                "kmm_vm_map", site_map);
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, span - PAGE, M2 + PAGE), KMM_OK);
    }
    KT_EXPECT_EQ(t, tables_now(&x), tables1);
    KT_EXPECT_EQ(t, kmm_page_free(x.k, huge, 9), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(x.k, raw), KMM_OK);
    KT_EXPECT_EQ(t, tables_now(&x), tables0);
    REFUSED(site_populate(x.k, raw), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, fn, site_populate);
    down(t, &x);
}

/* --- out of memory at every step ------------------------------------------------------------- */

static uint64_t taken[32 * MIB / PAGE];

/* Allocates every free page but `spare` into taken[]; returns how many. */
static size_t take_all_but(struct fx *x, size_t spare)
{
    kmm_page_drain_cpu(x->k);
    size_t n = 0;
    while (n < N(taken) && (taken[n] = kmm_page_alloc(x->k, 0, 0)) != 0)
        n++;
    for (size_t i = 0; i < spare && n > 0; i++)
        kmm_page_free(x->k, taken[--n], 0);
    return n;
}

static void give_back(struct fx *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kmm_page_free(x->k, taken[i], 0);
}

KTEST_LEVELS(vm_attack, demand_zero_maps_populates_and_kernel_faults_without_memory_change_nothing)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.k, &us), KMM_OK);
    /* A demand-zero map whose tables outgrow memory: 16 GiB takes 8192
     * page tables (32 MiB). */
    struct before b = before_now(&x);
    KT_EXPECT_EQ(t, kmm_vm_map(us, USER, 0, UINT64_C(16) << 30, URW | KMM_MAP_DEMAND), KMM_ENOMEM);
    expect_refused_at(t, &x, &b, KMM_ENOMEM, KMM_ENOMEM, -1, 0, "", 0, "16 GiB demand-zero map",
                      __LINE__);
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 0);
    /* Small ones, across a 1 GiB boundary (two of each table below the
     * top), with 0, 1, 2, ... pages to spare. */
    const uint64_t va = (UINT64_C(1) << 30) - 2 * PAGE;
    int err = KMM_ENOMEM;
    unsigned failures = 0;
    for (size_t spare = 0; err == KMM_ENOMEM && spare < 16; spare++) {
        size_t n = take_all_but(&x, spare);
        b = before_now(&x);
        err = kmm_vm_map(us, va, 0, 4 * PAGE, URW | KMM_MAP_DEMAND);
        if (err == KMM_ENOMEM) {
            failures++;
            expect_refused_at(t, &x, &b, err, KMM_ENOMEM, -1, 0, "", 0, "demand-zero map",
                              __LINE__);
            KT_EXPECT_EQ(t, look(us, va).err, KMM_ENOENT);
        }
        give_back(&x, n);
    }
    KT_EXPECT_EQ(t, err, KMM_OK);
    KT_EXPECT(t, failures >= levels + 1); /* the tables below the root, two of them twice */
    KT_EXPECT_EQ(t, fstats(us).demand_pages, 4);
    /* A kernel demand-zero page faulted without a page: refused, counted
     * in the kernel space's figures, retried with one. */
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, kernel_bottom(levels), 0, PAGE, RW | KMM_MAP_DEMAND), KMM_OK);
    size_t n = take_all_but(&x, 0);
    b = before_now(&x);
    KT_EXPECT_EQ(t, kmm_vm_fault(us, kernel_bottom(levels), KMM_FAULT_WRITE, 0), KMM_ENOMEM);
    expect_refused_at(t, &x, &b, KMM_ENOMEM, KMM_ENOMEM, -1, 0, "", 0, "kernel fault", __LINE__);
    KT_EXPECT_EQ(t, fstats(x.ks).refused, 1);
    KT_EXPECT_EQ(t, fstats(us).refused, 0);
    give_back(&x, n);
    KT_EXPECT_EQ(t, fault(us, kernel_bottom(levels), KMM_FAULT_WRITE), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, kernel_bottom(levels), PAGE), KMM_OK);
    /* A populate of an area over three spans, with 0, 1, 2, ... pages to
     * spare: each failure gives back the spans it held. */
    uint64_t raw, tables0 = tables_now(&x);
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.k, 4 * MIB, &raw), KMM_OK);
    err = KMM_ENOMEM;
    failures = 0;
    for (size_t spare = 0; err == KMM_ENOMEM && spare < 16; spare++) {
        n = take_all_but(&x, spare);
        b = before_now(&x);
        err = kmm_kva_populate(x.k, raw);
        if (err == KMM_ENOMEM) {
            failures++;
            expect_refused_at(t, &x, &b, err, KMM_ENOMEM, -1, 0, "", 0, "populate", __LINE__);
            KT_EXPECT_EQ(t, tables_now(&x), tables0);
        }
        give_back(&x, n);
    }
    KT_EXPECT_EQ(t, err, KMM_OK);
    KT_EXPECT(t, failures >= 2);
    KT_EXPECT_EQ(t, kmm_kva_free(x.k, raw), KMM_OK);
    KT_EXPECT_EQ(t, tables_now(&x), tables0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(us, va, 4 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.k, us), KMM_OK);
    down(t, &x);
}

/* --- the kernel's own pages in the window ------------------------------------------------------
 */

KTEST_LEVELS(vm_attack, demand_zero_pages_the_kernel_maps_in_the_window_are_never_handed_out)
{
    struct fx x;
    if (!up(t, &x, levels))
        return;
    /* The kernel reserves the window's first page and a 2 MiB-aligned one
     * in the middle for itself, demand-zero (not touched: no frame). */
    const uint64_t mid = ((x.base + x.size / 2) | (M2 - 1)) + 1;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, x.base, 0, PAGE, RW | KMM_MAP_DEMAND), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, mid, 0, PAGE, RW | KMM_MAP_DEMAND), KMM_OK);
    /* Neither a raw area, nor vmalloc, nor a vmap block takes them. */
    uint64_t raw;
    KT_ASSERT_EQ(t, kmm_kva_alloc(x.k, PAGE, &raw), KMM_OK);
    void *v = kmm_vmalloc(x.k, x.size / 2 - M2, 0);
    uint64_t pg[1];
    KT_ASSERT(t, alloc_n(&x, pg, 1));
    void *r = kmm_vm_map_ram(x.k, pg, 1, KMM_PROT_READ);
    KT_ASSERT(t, v != 0 && r != 0);
    const uint64_t starts[3] = {raw, va_of(v), va_of(r)};
    const uint64_t ends[3] = {raw + 2 * PAGE, va_of(v) + x.size / 2 - M2 + PAGE, va_of(r) + M2};
    for (unsigned i = 0; i < 3; i++) {
        KT_EXPECT(t, !(x.base >= starts[i] && x.base < ends[i]));
        KT_EXPECT(t, !(mid >= starts[i] && mid < ends[i]));
    }
    /* They are nobody's to free, and still the kernel's to fault in. */
    REFUSED(site_unmap_ram(x.k, mid, 1), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, "kmm_vm_unmap_ram",
            site_unmap_ram);
    REFUSED(site_populate(x.k, x.base), KMM_ENOENT, KVA, KMM_MISUSE_ABSENT, "kmm_kva_populate",
            site_populate);
    KT_EXPECT_EQ(t, fault(x.ks, mid, KMM_FAULT_WRITE), KMM_FAULT_DEMAND_ZERO);
    KT_EXPECT_HEALTHY(t, x.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap_ram(x.k, r, 1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vfree(x.k, v), KMM_OK);
    KT_EXPECT_EQ(t, kmm_kva_free(x.k, raw), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, x.base, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, mid, PAGE), KMM_OK);
    free_n(&x, pg, 1);
    down(t, &x);
}
