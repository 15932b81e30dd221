/*
 * test_vm_huge.c - 2 MiB and 1 GiB pages, splits and cache modes, checked
 * against kmm/vm.h's contract through the independent software MMU
 * (tests/ktest/soft_mmu.h): which leaves a map makes, what translate says,
 * how an unmap, protect or replacing map that cuts a huge page splits it
 * (at every kind of boundary position), what the entries' PWT, PCD and PAT
 * bits select in KMM_PAT_VALUE, which inputs are refused, splits without
 * memory, statistics by size, destroying spaces with huge leaves, and
 * query runs across sizes. Every test runs with 4 and 5 paging levels.
 *
 * The machine has 63 MiB of RAM from 1 MiB, a 4 MiB reserved region (device
 * memory) at 64 MiB, and nothing at 4 GiB and up: 1 GiB pages are device
 * mappings there (a cache mode, no RAM needed), so the suite also runs in
 * the kernel's test arena.
 */
#include "ktest.h"
#include "env.h"
#include "fixture.h"
#include "ktest_levels.h"
#include "soft_mmu.h"

#include <kmm/check.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#define N(a)    (sizeof(a) / sizeof((a)[0]))
#define K4      UINT64_C(0x1000)
#define M2      UINT64_C(0x200000)
#define G1      UINT64_C(0x40000000)
#define MIB     (UINT64_C(1) << 20)
#define RAM_END (64 * MIB)
#define DEV     (64 * MIB)                   /* the reserved region: device memory */
#define MMIO    (4 * G1)                     /* a hole: device memory with no RAM */
#define KVA     UINT64_C(0xffffc00000000000) /* kernel half, 1 GiB aligned, both modes */
#define UVA     UINT64_C(0x0000004000000000) /* user half, 1 GiB aligned */
#define SPAN    (8 * G1)                     /* the part of a half the tests use */

#define R   KMM_PROT_READ
#define RW  (KMM_PROT_READ | KMM_PROT_WRITE)
#define RWX (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_EXEC)

/* Entry bits, from the SDM (not shared with src/). */
#define E_PWT    (UINT64_C(1) << 3)
#define E_PCD    (UINT64_C(1) << 4)
#define E_PAT4K  (UINT64_C(1) << 7)
#define E_PS     (UINT64_C(1) << 7)
#define E_PATBIG (UINT64_C(1) << 12)

static const struct kmm_region map64[] = {
    {1 * MIB, 63 * MIB, KMM_MEM_USABLE},
    {DEV, 4 * MIB, KMM_MEM_RESERVED},
};

struct hx {
    struct kt_kmm f;
    struct kmm_aspace *ks;
    struct smmu mmu; /* IA32_PAT = KMM_PAT_VALUE, as the kernel programs it */
    unsigned levels;
};

static const void *hx_phys(void *ctx, uint64_t pa)
{
    return pa >= 1 * MIB && pa < RAM_END ? kt_machine_phys(ctx, pa) : 0;
}

static bool up(struct ktest *t, struct hx *x, unsigned levels)
{
    if (!kt_kmm_up(t, &x->f, map64, N(map64), 1, levels))
        return false;
    x->ks = kmm_kernel_aspace(x->f.k);
    x->levels = levels;
    x->mmu = (struct smmu){.phys = hx_phys,
                           .ctx = x->f.m,
                           .la57 = levels == 5,
                           .nxe = true,
                           .wp = true,
                           .pat = KMM_PAT_VALUE};
    return true;
}

static void down(struct hx *x)
{
    kt_kmm_down(&x->f);
}

static unsigned level_of(uint64_t size)
{
    return size == G1 ? 3 : size == M2 ? 2 : 1;
}

/* The base of the half (KVA or UVA) a space's test mappings live in. */
static uint64_t half_base(const struct hx *x, const struct kmm_aspace *as)
{
    return as == x->ks ? KVA : UVA;
}

/* RAM: count pages at an alignment, from the page allocator. */
static uint64_t ram_run(struct hx *x, uint64_t bytes, uint64_t align)
{
    return kmm_run_alloc(x->f.k, bytes / K4, align, 0, 0);
}

static struct kmm_vm_stats vstats(struct kmm_aspace *as)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(as, &s);
    return s;
}

/* --- what a page looks like --------------------------------------------------------- */

static unsigned memtype_of(unsigned cache)
{
    switch (cache) {
    case KMM_CACHE_WT:
        return SMMU_MT_WT;
    case KMM_CACHE_UC:
        return SMMU_MT_UC;
    case KMM_CACHE_WC:
        return SMMU_MT_WC;
    default:
        return SMMU_MT_WB;
    }
}

/* The PWT, PCD and PAT bits of a leaf of `size` (PAT is bit 7 of a 4 KiB
 * entry, bit 12 of a huge one). */
static uint64_t cache_field(uint64_t size)
{
    return E_PWT | E_PCD | (size == K4 ? E_PAT4K : E_PATBIG);
}

static uint64_t cache_bits(unsigned cache, uint64_t size)
{
    switch (cache) {
    case KMM_CACHE_WT:
        return E_PWT;
    case KMM_CACHE_UC:
        return E_PCD | E_PWT;
    case KMM_CACHE_WC:
        return size == K4 ? E_PAT4K : E_PATBIG;
    default:
        return 0;
    }
}

/* The cache mode a mapping made with `flags` has (none: write-back). */
static unsigned mode_of(unsigned cache)
{
    return cache ? cache : KMM_CACHE_WB;
}

struct want {
    uint64_t pa;    /* of the address itself */
    uint64_t size;  /* of its leaf */
    unsigned prot;  /* KMM_PROT_* */
    unsigned cache; /* KMM_CACHE_* (0: write-back) */
};

/* Checks va through kmm_vm_translate and through the software MMU: frame,
 * leaf size, rights, memory type and the entry's cache bits. Returns
 * whether everything matched (one failure line if not). */
static bool page_is(struct ktest *t, struct hx *x, struct kmm_aspace *as, uint64_t va,
                    struct want w, const char *file, int line)
{
    unsigned cache = mode_of(w.cache);
    struct kmm_vm_translation tr = {0};
    int err = kmm_vm_translate(as, va, &tr);
    if (err != KMM_OK || tr.pa != w.pa || tr.page_size != w.size || tr.prot != w.prot ||
        tr.cache != cache || tr.owned) {
        ktest_fail_at(t, file, line,
                      "translate 0x%llx: %s, pa 0x%llx size 0x%llx prot 0x%x cache 0x%x owned %d; "
                      "want pa 0x%llx size 0x%llx prot 0x%x cache 0x%x",
                      (unsigned long long)va, kmm_strerror(err), (unsigned long long)tr.pa,
                      (unsigned long long)tr.page_size, tr.prot, tr.cache, (int)tr.owned,
                      (unsigned long long)w.pa, (unsigned long long)w.size, w.prot, cache);
        return false;
    }
    struct smmu_result r = smmu_translate(&x->mmu, kmm_aspace_root(as), va, SMMU_READ, false);
    uint64_t e = r.nentries ? r.entries[r.nentries - 1] : 0;
    bool ok = r.ok && r.pa == w.pa && r.page_size == w.size &&
              r.writable == ((w.prot & KMM_PROT_WRITE) != 0) &&
              r.executable == ((w.prot & KMM_PROT_EXEC) != 0) &&
              r.global == ((w.prot & KMM_PROT_GLOBAL) != 0) &&
              r.user == ((w.prot & KMM_PROT_USER) != 0) && r.memtype == memtype_of(cache) &&
              (e & cache_field(w.size)) == cache_bits(cache, w.size);
    if (!ok)
        ktest_fail_at(t, file, line,
                      "soft MMU 0x%llx: fault %d pa 0x%llx size 0x%llx w%d x%d g%d u%d type %u "
                      "entry 0x%llx; want pa 0x%llx size 0x%llx prot 0x%x cache 0x%x",
                      (unsigned long long)va, r.fault, (unsigned long long)r.pa,
                      (unsigned long long)r.page_size, (int)r.writable, (int)r.executable,
                      (int)r.global, (int)r.user, r.memtype, (unsigned long long)e,
                      (unsigned long long)w.pa, (unsigned long long)w.size, w.prot, cache);
    return ok;
}
#define PAGE_IS(t, x, as, va, ...)                                                                 \
    page_is((t), (x), (as), (va), (struct want){__VA_ARGS__}, __FILE__, __LINE__)

/* Checks that va is not mapped, both ways. */
static void unmapped_at(struct ktest *t, struct hx *x, struct kmm_aspace *as, uint64_t va,
                        const char *file, int line)
{
    struct kmm_vm_translation tr;
    int err = kmm_vm_translate(as, va, &tr);
    struct smmu_result r = smmu_translate(&x->mmu, kmm_aspace_root(as), va, SMMU_READ, false);
    if (err != KMM_ENOENT || r.ok || r.fault != SMMU_FAULT_NOT_PRESENT)
        ktest_fail_at(t, file, line, "0x%llx: translate %s, soft MMU fault %d; want unmapped",
                      (unsigned long long)va, kmm_strerror(err), r.fault);
}
#define UNMAPPED(t, x, as, va) unmapped_at((t), (x), (as), (va), __FILE__, __LINE__)

/* --- leaves in a window, as the CPU sees them ----------------------------------------- */

struct census {
    uint64_t n[4]; /* leaves of 4 KiB, 2 MiB, 1 GiB (index = level) */
    uint64_t bad;  /* reserved bits, unreadable tables */
    uint64_t hash; /* over every leaf's va and entry */
};

static uint64_t fnv(uint64_t h, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static void census_leaf(void *ctx, uint64_t va, const struct smmu_result *r)
{
    struct census *c = ctx;
    if (!r->ok || r->level < 1 || r->level > 3) {
        c->bad++;
        return;
    }
    c->n[r->level]++;
    c->hash = fnv(fnv(c->hash, va), r->entries[r->nentries - 1]);
}

static struct census census(struct hx *x, struct kmm_aspace *as, uint64_t lo, uint64_t hi)
{
    struct census c = {.hash = UINT64_C(0xcbf29ce484222325)};
    smmu_collect(&x->mmu, kmm_aspace_root(as), lo, hi, census_leaf, &c);
    return c;
}

static void census_is(struct ktest *t, struct hx *x, struct kmm_aspace *as, uint64_t lo,
                      uint64_t hi, uint64_t n4k, uint64_t n2m, uint64_t n1g, const char *file,
                      int line)
{
    struct census c = census(x, as, lo, hi);
    if (c.n[1] != n4k || c.n[2] != n2m || c.n[3] != n1g || c.bad)
        ktest_fail_at(t, file, line,
                      "leaves in [0x%llx, 0x%llx): %llu 4K, %llu 2M, %llu 1G, %llu bad; want %llu "
                      "4K, %llu 2M, %llu 1G",
                      (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)c.n[1],
                      (unsigned long long)c.n[2], (unsigned long long)c.n[3],
                      (unsigned long long)c.bad, (unsigned long long)n4k, (unsigned long long)n2m,
                      (unsigned long long)n1g);
}
#define CENSUS_IS(t, x, as, lo, hi, n4k, n2m, n1g)                                                 \
    census_is((t), (x), (as), (lo), (hi), (n4k), (n2m), (n1g), __FILE__, __LINE__)

/* Counters of a space compared with a baseline: leaves by size added and
 * tables per level added (index = level). */
static void stats_moved(struct ktest *t, const struct kmm_vm_stats *before, struct kmm_aspace *as,
                        int64_t d4k, int64_t d2m, int64_t d1g, const int64_t dtables[6],
                        const char *file, int line)
{
    struct kmm_vm_stats s = vstats(as);
    if ((int64_t)(s.mapped_pages - before->mapped_pages) != d4k ||
        (int64_t)(s.mapped_2m - before->mapped_2m) != d2m ||
        (int64_t)(s.mapped_1g - before->mapped_1g) != d1g)
        ktest_fail_at(t, file, line, "mapped 4K/2M/1G moved by %lld/%lld/%lld, want %lld/%lld/%lld",
                      (long long)(s.mapped_pages - before->mapped_pages),
                      (long long)(s.mapped_2m - before->mapped_2m),
                      (long long)(s.mapped_1g - before->mapped_1g), (long long)d4k, (long long)d2m,
                      (long long)d1g);
    int64_t total = 0;
    for (unsigned l = 1; l <= 5; l++) {
        int64_t want = dtables ? dtables[l] : 0;
        total += want;
        if ((int64_t)(s.tables[l] - before->tables[l]) != want)
            ktest_fail_at(t, file, line, "level-%u tables moved by %lld, want %lld", l,
                          (long long)(s.tables[l] - before->tables[l]), (long long)want);
    }
    if ((int64_t)(s.table_bytes - before->table_bytes) != total * (int64_t)K4)
        ktest_fail_at(t, file, line, "table_bytes moved by %lld, want %lld tables",
                      (long long)(s.table_bytes - before->table_bytes), (long long)total);
}
#define STATS_MOVED(t, before, as, d4k, d2m, d1g, dtables)                                         \
    stats_moved((t), (before), (as), (d4k), (d2m), (d1g), (dtables), __FILE__, __LINE__)

/* Everything a failed call must leave as it was. */
struct snapshot {
    struct census c;
    struct kmm_vm_stats vs;
    struct kmm_page_stats ps;
    unsigned long errors;
};

static struct snapshot snap(struct hx *x, struct kmm_aspace *as)
{
    struct snapshot s;
    s.c = census(x, as, half_base(x, as), half_base(x, as) + SPAN);
    s.vs = vstats(as);
    kmm_page_stats(x->f.k, &s.ps);
    s.errors = kt_machine_log_count(x->f.m, KMM_LOG_ERR);
    return s;
}

static void unchanged_since(struct ktest *t, struct hx *x, struct kmm_aspace *as,
                            const struct snapshot *s, const char *what, const char *file, int line)
{
    struct snapshot now = snap(x, as);
    if (now.c.hash != s->c.hash || now.c.n[1] != s->c.n[1] || now.c.n[2] != s->c.n[2] ||
        now.c.n[3] != s->c.n[3])
        ktest_fail_at(t, file, line, "%s: the entries changed", what);
    bool same = now.vs.mapped_pages == s->vs.mapped_pages && now.vs.mapped_2m == s->vs.mapped_2m &&
                now.vs.misuse == s->vs.misuse && now.vs.mapped_1g == s->vs.mapped_1g &&
                now.vs.owned_pages == s->vs.owned_pages && now.vs.table_bytes == s->vs.table_bytes;
    for (unsigned l = 1; l <= 5; l++)
        same &= now.vs.tables[l] == s->vs.tables[l];
    if (!same)
        ktest_fail_at(t, file, line, "%s: the space's statistics changed", what);
    if (!kt_same_buddyinfo(&now.ps, &s->ps) || now.ps.allocated_pages != s->ps.allocated_pages)
        ktest_fail_at(t, file, line, "%s: the page allocator changed", what);
    kt_expect_healthy_at(t, x->f.k, file, line);
}
#define UNCHANGED_SINCE(t, x, as, s, what)                                                         \
    unchanged_since((t), (x), (as), (s), (what), __FILE__, __LINE__)

/*
 * A call that must be refused as misuse (SPEC §9): the error, counted once
 * in kmm_vm_stats.misuse, one error line naming the function, no page
 * misuse counter moved, nothing changed in the space or the allocator,
 * kmm_check clean.
 */
static void refused_at(struct ktest *t, struct hx *x, struct kmm_aspace *as, struct snapshot *s,
                       int got, int err, const char *what, const char *needle, const char *file,
                       int line)
{
    kt_expect_misuse_at(t, &x->f, got, err, KMM_MISUSE_COUNT, &s->ps, what, needle, file, line);
    unsigned long lines = kt_machine_log_count(x->f.m, KMM_LOG_ERR) - s->errors;
    if (lines != 1)
        ktest_fail_at(t, file, line, "%s: %lu error lines, want 1", what, lines);
    uint64_t misuse = vstats(as).misuse;
    if (misuse != s->vs.misuse + 1)
        ktest_fail_at(t, file, line, "%s: misuse counted %llu times, want once", what,
                      (unsigned long long)(misuse - s->vs.misuse));
    s->vs.misuse = misuse;
    unchanged_since(t, x, as, s, what, file, line);
}
#define EXPECT_REFUSED(t, x, as, call, err, needle)                                                \
    do {                                                                                           \
        struct snapshot s_ = snap((x), (as));                                                      \
        int got_ = (call);                                                                         \
        refused_at((t), (x), (as), &s_, got_, (err), #call, (needle), __FILE__, __LINE__);         \
    } while (0)

/* --- cutting huge pages: the model ---------------------------------------------------- */

/*
 * A range [va, va + size) mapped to pa with leaves of `leaf` bytes (all
 * three aligned to it), then unmapped or protected over [lo, hi). What the
 * contract says comes out: a leaf entirely inside [lo, hi) goes (unmap) or
 * changes its rights and stays whole (protect); a leaf outside stays; any
 * other is split into 512 leaves one size down, each judged the same way.
 * Every byte keeps its frame and cache mode.
 */
struct cut {
    uint64_t va, pa, size, leaf;
    unsigned prot, cache; /* cache: the mode given to map (0: none) */
    uint64_t lo, hi;
    bool unmap;
    unsigned newprot; /* protect */
};

/* The size of the leaf that holds a after the cut. */
static uint64_t model_leaf(const struct cut *c, uint64_t a)
{
    for (uint64_t size = c->leaf;; size >>= 9) {
        uint64_t b = a & ~(size - 1);
        bool inside = b >= c->lo && b + size <= c->hi, apart = b + size <= c->lo || b >= c->hi;
        if (inside || apart || size == K4)
            return size;
    }
}

struct tally {
    uint64_t leaves[4]; /* by level */
    uint64_t splits[4]; /* leaves of each level split */
};

static void model_count(const struct cut *c, uint64_t b, uint64_t size, struct tally *n)
{
    bool inside = b >= c->lo && b + size <= c->hi, apart = b + size <= c->lo || b >= c->hi;
    if (inside && c->unmap)
        return;
    if (inside || apart || size == K4) {
        n->leaves[level_of(size)]++;
        return;
    }
    n->splits[level_of(size)]++;
    for (unsigned i = 0; i < 512; i++)
        model_count(c, b + i * (size >> 9), size >> 9, n);
}

struct judge {
    const struct cut *c;
    uint64_t wrong, first_va, first_entry;
    uint64_t n[4];
};

/* Each leaf the software MMU finds against the model. */
static void judge_leaf(void *ctx, uint64_t va, const struct smmu_result *r)
{
    struct judge *j = ctx;
    const struct cut *c = j->c;
    bool in = va >= c->lo && va < c->hi;
    unsigned prot = in && !c->unmap ? c->newprot : c->prot;
    unsigned cache = mode_of(c->cache);
    uint64_t e = r->nentries ? r->entries[r->nentries - 1] : 0;
    bool ok = r->ok && !(in && c->unmap) && va >= c->va && va - c->va < c->size &&
              r->page_size == model_leaf(c, va) && r->pa == c->pa + (va - c->va) &&
              r->writable == ((prot & KMM_PROT_WRITE) != 0) &&
              r->executable == ((prot & KMM_PROT_EXEC) != 0) &&
              r->global == ((prot & KMM_PROT_GLOBAL) != 0) &&
              r->user == ((prot & KMM_PROT_USER) != 0) && r->memtype == memtype_of(cache) &&
              (e & cache_field(r->page_size)) == cache_bits(cache, r->page_size);
    if (r->ok && r->level >= 1 && r->level <= 3)
        j->n[r->level]++;
    if (!ok && j->wrong++ == 0) {
        j->first_va = va;
        j->first_entry = e;
    }
}

/*
 * Maps c's range, cuts it, and checks every leaf of the range through the
 * software MMU, kmm_vm_translate at the edges, the statistics (leaves by
 * size, one new table per split) and kmm_check; then unmaps the rest and
 * checks that every table went.
 */
static void run_cut(struct ktest *t, struct hx *x, struct kmm_aspace *as, const struct cut *c,
                    const char *file, int line)
{
    unsigned top = level_of(c->leaf);
    unsigned flags =
        c->prot | c->cache | (top >= 2 ? KMM_MAP_HUGE : 0) | (top == 3 ? KMM_MAP_HUGE_1G : 0);
    struct kmm_vm_stats s0 = vstats(as);
    int err = kmm_vm_map(as, c->va, c->pa, c->size, flags);
    if (err != KMM_OK) {
        ktest_fail_at(t, file, line, "map: %s", kmm_strerror(err));
        return;
    }
    census_is(t, x, as, c->va, c->va + c->size, top == 1 ? c->size / K4 : 0,
              top == 2 ? c->size / M2 : 0, top == 3 ? c->size / G1 : 0, file, line);
    struct kmm_vm_stats s1 = vstats(as);

    err = c->unmap ? kmm_vm_unmap(as, c->lo, c->hi - c->lo)
                   : kmm_vm_protect(as, c->lo, c->hi - c->lo, c->newprot);
    if (err != KMM_OK) {
        ktest_fail_at(t, file, line, "%s [0x%llx, 0x%llx): %s", c->unmap ? "unmap" : "protect",
                      (unsigned long long)c->lo, (unsigned long long)c->hi, kmm_strerror(err));
        return;
    }
    struct tally want = {{0}, {0}};
    for (uint64_t b = c->va; b < c->va + c->size; b += c->leaf)
        model_count(c, b, c->leaf, &want);
    struct judge j = {.c = c};
    smmu_collect(&x->mmu, kmm_aspace_root(as), c->va - G1, c->va + c->size + G1, judge_leaf, &j);
    if (j.wrong)
        ktest_fail_at(t, file, line,
                      "%llu leaves differ from the model, first at 0x%llx (entry 0x%llx, want a "
                      "0x%llx leaf)",
                      (unsigned long long)j.wrong, (unsigned long long)j.first_va,
                      (unsigned long long)j.first_entry,
                      (unsigned long long)model_leaf(c, j.first_va));
    for (unsigned l = 1; l <= 3; l++)
        if (j.n[l] != want.leaves[l])
            ktest_fail_at(t, file, line, "%llu leaves of level %u, want %llu",
                          (unsigned long long)j.n[l], l, (unsigned long long)want.leaves[l]);
    int64_t dt[6] = {0, (int64_t)want.splits[2], (int64_t)want.splits[3], 0, 0, 0};
    int64_t d[4] = {0};
    for (unsigned l = 1; l <= 3; l++)
        d[l] = (int64_t)want.leaves[l] - (int64_t)(l == top ? c->size / c->leaf : 0);
    stats_moved(t, &s1, as, d[1], d[2], d[3], dt, file, line);
    /* kmm_vm_translate agrees at the edges of the cut. */
    uint64_t probe[] = {c->va, c->lo - K4, c->lo, c->hi - K4, c->hi, c->va + c->size - K4};
    for (unsigned i = 0; i < N(probe); i++) {
        uint64_t a = probe[i];
        if (a < c->va || a >= c->va + c->size)
            continue;
        bool in = a >= c->lo && a < c->hi;
        if (in && c->unmap)
            unmapped_at(t, x, as, a, file, line);
        else
            page_is(t, x, as, a + 8,
                    (struct want){c->pa + (a - c->va) + 8, model_leaf(c, a),
                                  in ? c->newprot : c->prot, c->cache},
                    file, line);
    }
    kt_expect_healthy_at(t, x->f.k, file, line);

    /* Unmap what is left: the split tables go too. */
    if (!c->unmap) {
        err = kmm_vm_unmap(as, c->va, c->size);
    } else {
        err = c->lo > c->va ? kmm_vm_unmap(as, c->va, c->lo - c->va) : KMM_OK;
        if (!err && c->hi < c->va + c->size)
            err = kmm_vm_unmap(as, c->hi, c->va + c->size - c->hi);
    }
    if (err != KMM_OK)
        ktest_fail_at(t, file, line, "unmapping the rest: %s", kmm_strerror(err));
    stats_moved(t, &s0, as, 0, 0, 0, NULL, file, line);
    census_is(t, x, as, c->va - G1, c->va + c->size + G1, 0, 0, 0, file, line);
    kt_expect_healthy_at(t, x->f.k, file, line);
}

/* Two adjacent 2 MiB pages of RAM (read, write, execute), cut at
 * [off, off + len) from the first one's start. */
static void cut_2m(struct ktest *t, unsigned levels, bool user, uint64_t off, uint64_t len,
                   bool unmap, const char *file, int line)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *as = x.ks;
    if (user && kmm_aspace_create(x.f.k, &as) != KMM_OK) {
        ktest_fail_at(t, file, line, "kmm_aspace_create failed");
        down(&x);
        return;
    }
    uint64_t pa = ram_run(&x, 2 * M2, M2);
    uint64_t va = half_base(&x, as) + 3 * M2;
    unsigned u = user ? KMM_PROT_USER : 0;
    if (!pa)
        ktest_fail_at(t, file, line, "no 4 MiB of RAM");
    else
        run_cut(t, &x, as,
                &(struct cut){.va = va,
                              .pa = pa,
                              .size = 2 * M2,
                              .leaf = M2,
                              .prot = RWX | u,
                              .lo = va + off,
                              .hi = va + off + len,
                              .unmap = unmap,
                              .newprot = R | u},
                file, line);
    if (pa && kmm_run_free(x.f.k, pa, 2 * M2 / K4) != KMM_OK) /* unmapping never frees frames */
        ktest_fail_at(t, file, line, "the frames were not the caller's any more");
    if (user && kmm_aspace_destroy(x.f.k, as) != KMM_OK)
        ktest_fail_at(t, file, line, "kmm_aspace_destroy failed");
    kt_expect_healthy_at(t, x.f.k, file, line);
    down(&x);
}
#define CUT_2M(off, len, unmap) cut_2m(t, levels, false, (off), (len), (unmap), __FILE__, __LINE__)
#define CUT_2M_USER(off, len, unmap)                                                               \
    cut_2m(t, levels, true, (off), (len), (unmap), __FILE__, __LINE__)

/* Two adjacent 1 GiB pages of device memory (read, write, global; the cache
 * mode given), cut at [off, off + len) from the first one's start. */
static void cut_1g(struct ktest *t, unsigned levels, unsigned cache, uint64_t off, uint64_t len,
                   bool unmap, const char *file, int line)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t va = KVA + G1;
    run_cut(t, &x, x.ks,
            &(struct cut){.va = va,
                          .pa = MMIO,
                          .size = 2 * G1,
                          .leaf = G1,
                          .prot = RW | KMM_PROT_GLOBAL,
                          .cache = cache,
                          .lo = va + off,
                          .hi = va + off + len,
                          .unmap = unmap,
                          .newprot = R},
            file, line);
    down(&x);
}
#define CUT_1G(off, len, unmap)                                                                    \
    cut_1g(t, levels, KMM_CACHE_UC, (off), (len), (unmap), __FILE__, __LINE__)

/* --- mapping ---------------------------------------------------------------------------- */

KTEST_LEVELS(vm_huge, huge_maps_2m_leaves_where_va_and_pa_are_aligned_and_4k_pages_around_them)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t p = ram_run(&x, 4 * M2, M2);
    KT_ASSERT(t, p != 0);
    uint64_t before = kt_free_pages(x.f.k);
    struct kmm_vm_stats s0 = vstats(x.ks);
    uint64_t va = KVA + M2 - 3 * K4, pa = p + M2 - 3 * K4, size = 3 * K4 + 2 * M2 + 5 * K4;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va, pa, size, RW | KMM_MAP_HUGE), KMM_OK);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + G1, 8, 2, 0);
    /* A PD; a PT before the 2 MiB pages and one after; and, with 5 levels, a PDPT. */
    int64_t dt[6] = {0, 2, 1, levels == 5, 0, 0};
    STATS_MOVED(t, &s0, x.ks, 8, 2, 0, dt);
    PAGE_IS(t, &x, x.ks, va, pa, K4, RW, 0);
    PAGE_IS(t, &x, x.ks, va + 2 * K4 + 0xfff, pa + 2 * K4 + 0xfff, K4, RW, 0);
    PAGE_IS(t, &x, x.ks, KVA + M2, p + M2, M2, RW, 0);
    PAGE_IS(t, &x, x.ks, KVA + M2 + 0x12345, p + M2 + 0x12345, M2, RW, 0);
    PAGE_IS(t, &x, x.ks, KVA + 2 * M2, p + 2 * M2, M2, RW, 0);
    PAGE_IS(t, &x, x.ks, KVA + 3 * M2 - 1, p + 3 * M2 - 1, M2, RW, 0);
    PAGE_IS(t, &x, x.ks, KVA + 3 * M2, p + 3 * M2, K4, RW, 0);
    PAGE_IS(t, &x, x.ks, KVA + 3 * M2 + 4 * K4, p + 3 * M2 + 4 * K4, K4, RW, 0);
    UNMAPPED(t, &x, x.ks, va - K4);
    UNMAPPED(t, &x, x.ks, va + size);
    KT_EXPECT_HEALTHY(t, x.f.k);
    /* Unmapped, every table goes back and the frames stay the caller's. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, va, size), KMM_OK);
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), before);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 4 * M2 / K4), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, without_the_flag_or_the_alignment_every_leaf_is_4k)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t p = ram_run(&x, 4 * M2, M2);
    KT_ASSERT(t, p != 0);
    struct kmm_vm_stats s0 = vstats(x.ks);
    static const struct {
        uint64_t va, pa, size;
        unsigned flags;
    } cases[] = {
        {KVA + M2, 0, M2, RW},                                   /* no flag */
        {KVA + M2, K4, M2, RW | KMM_MAP_HUGE | KMM_MAP_HUGE_1G}, /* pa not aligned */
        {KVA + M2 + K4, 0, M2, RW | KMM_MAP_HUGE},               /* va not aligned */
        {KVA + M2, 0, M2 - K4, RW | KMM_MAP_HUGE},               /* not a whole 2 MiB */
        {KVA + M2 + M2 / 2, M2 / 2, M2, RW | KMM_MAP_HUGE},      /* both off by 1 MiB */
    };
    for (unsigned i = 0; i < N(cases); i++) {
        KT_ASSERT_EQ(t,
                     kmm_vm_map(x.ks, cases[i].va, p + cases[i].pa, cases[i].size, cases[i].flags),
                     KMM_OK);
        CENSUS_IS(t, &x, x.ks, KVA, KVA + G1, cases[i].size / K4, 0, 0);
        PAGE_IS(t, &x, x.ks, cases[i].va + cases[i].size - K4, p + cases[i].pa + cases[i].size - K4,
                K4, RW, 0);
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, cases[i].va, cases[i].size), KMM_OK);
    }
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 4 * M2 / K4), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, huge_1g_maps_1g_leaves_and_2m_and_4k_pages_around_them)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_vm_stats s0 = vstats(x.ks);
    uint64_t off = G1 - M2 - K4, size = K4 + M2 + G1 + M2 + K4;
    unsigned fl = RW | KMM_PROT_GLOBAL | KMM_CACHE_UC | KMM_MAP_HUGE_1G;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + off, MMIO + off, size, fl), KMM_OK);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + 3 * G1, 2, 2, 1);
    int64_t dt[6] = {0, 2, 2, levels == 5, 0, 0};
    STATS_MOVED(t, &s0, x.ks, 2, 2, 1, dt);
    unsigned p = RW | KMM_PROT_GLOBAL;
    PAGE_IS(t, &x, x.ks, KVA + off, MMIO + off, K4, p, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + G1 - M2 + 0x1000, MMIO + G1 - M2 + 0x1000, M2, p, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + G1, MMIO + G1, G1, p, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + G1 + 0x12345678, MMIO + G1 + 0x12345678, G1, p, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + 2 * G1 - 8, MMIO + 2 * G1 - 8, G1, p, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + 2 * G1, MMIO + 2 * G1, M2, p, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + 2 * G1 + M2, MMIO + 2 * G1 + M2, K4, p, KMM_CACHE_UC);
    UNMAPPED(t, &x, x.ks, KVA + 2 * G1 + M2 + K4);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + off, size), KMM_OK);
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, huge_alone_never_makes_1g_leaves)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_vm_stats s0 = vstats(x.ks);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE), KMM_OK);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + 3 * G1, 0, 512, 0);
    int64_t dt[6] = {0, 0, 1, levels == 5, 0, 0};
    STATS_MOVED(t, &s0, x.ks, 0, 512, 0, dt);
    PAGE_IS(t, &x, x.ks, KVA + G1 + 7 * M2 + 5, MMIO + 7 * M2 + 5, M2, RW, KMM_CACHE_UC);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + G1, G1), KMM_OK);
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* Takes 512 allocated single pages at one 2 MiB-aligned address: allocates
 * every page, keeps an aligned window whose pages all came, frees the rest.
 * Returns the window, or 0. */
static uint64_t aligned_single_pages(struct kmm *k)
{
    static uint64_t got[RAM_END / 0x1000];
    static uint8_t ours[RAM_END / 0x1000];
    size_t n = 0;
    kt_fill(ours, 0, sizeof(ours));
    while (n < N(got) && (got[n] = kmm_page_alloc(k, 0, 0)) != 0) {
        if (got[n] < RAM_END)
            ours[got[n] / K4] = 1;
        n++;
    }
    uint64_t base = 0;
    for (uint64_t b = M2; b < RAM_END && !base; b += M2) {
        bool all = true;
        for (uint64_t i = 0; i < 512 && all; i++)
            all = ours[b / K4 + i];
        if (all)
            base = b;
    }
    for (size_t i = 0; i < n; i++)
        if (!base || got[i] < base || got[i] >= base + M2)
            kmm_page_free(k, got[i], 0);
    return base;
}

KTEST_LEVELS(vm_huge, owned_mappings_always_use_4k_pages)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t before = kt_free_pages(x.f.k);
    uint64_t p = aligned_single_pages(x.f.k);
    KT_ASSERT(t, p != 0);
    struct kmm_vm_stats s0 = vstats(x.ks);
    unsigned fl = RW | KMM_MAP_OWNED | KMM_MAP_HUGE | KMM_MAP_HUGE_1G;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + M2, p, M2, fl), KMM_OK);
    for (uint64_t i = 0; i < 512; i++)
        KT_ASSERT_EQ(t, kmm_page_free(x.f.k, p + i * K4, 0), KMM_OK); /* the space owns them */
    CENSUS_IS(t, &x, x.ks, KVA, KVA + G1, 512, 0, 0);
    struct kmm_vm_stats s = vstats(x.ks);
    KT_EXPECT_EQ(t, s.owned_pages - s0.owned_pages, 512);
    KT_EXPECT_EQ(t, s.mapped_2m, s0.mapped_2m);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(x.ks, KVA + M2 + 77 * K4, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.pa, p + 77 * K4);
    KT_EXPECT_EQ(t, tr.page_size, K4);
    KT_EXPECT(t, tr.owned);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + M2, M2), KMM_OK);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), before); /* the frames and tables came back */
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, a_map_over_any_part_of_a_huge_page_is_busy_and_changes_nothing)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t p = ram_run(&x, 2 * M2, M2);
    KT_ASSERT(t, p != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + M2, p, M2, RW | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    struct kmm_aspace *ks = x.ks;
    const char *n = "kmm_vm_map";
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2 + 2 * K4, p + M2, K4, R), KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2 - K4, p + M2, 2 * K4, R), KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + 2 * M2 - K4, p + M2, 2 * K4, R), KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, p + M2, M2, R | KMM_MAP_HUGE), KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA, p, 2 * M2, R | KMM_MAP_HUGE), KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks,
                   kmm_vm_map(ks, KVA + G1 + 5 * M2 + 3 * K4, MMIO, K4, R | KMM_CACHE_UC),
                   KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks,
                   kmm_vm_map(ks, KVA + G1 - M2, MMIO, 2 * M2, R | KMM_CACHE_UC | KMM_MAP_HUGE),
                   KMM_EBUSY, n);
    EXPECT_REFUSED(t, &x, ks,
                   kmm_vm_map(ks, KVA + G1, MMIO + G1, G1, R | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
                   KMM_EBUSY, n);
    PAGE_IS(t, &x, ks, KVA + M2 + 2 * K4, p + 2 * K4, M2, RW, 0);
    PAGE_IS(t, &x, ks, KVA + G1 + 5 * M2, MMIO + 5 * M2, G1, RW, KMM_CACHE_UC);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + M2, M2), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + G1, G1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 2 * M2 / K4), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- splits by unmap, at every kind of position ----------------------------------------- */

/* An unmap whose pages all lie in page tables cuts nothing, whatever huge
 * page begins right after its end or ends right before its start (the
 * count stops at the page tables it walked: mmu_cut_count_locked). */
KTEST_LEVELS(vm_huge, unmap_of_4k_pages_next_to_huge_pages_splits_nothing)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_vm_stats s0 = vstats(x.ks);
    unsigned r = RW | KMM_CACHE_UC, p = RW;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + M2 - 2 * K4, MMIO, 2 * K4, r), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + M2, MMIO + M2, M2, r | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + 2 * M2, MMIO, 2 * K4, r), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1 - 2 * K4, MMIO, 2 * K4, r), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1, MMIO + G1, G1, r | KMM_MAP_HUGE_1G), KMM_OK);
    /* The 4 KiB pages before the 2 MiB page, those after it, those before
     * the 1 GiB page (two each: a range, not the one-page path): each huge
     * page stays one leaf. */
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, KVA + M2 - 2 * K4, 2 * K4), KMM_OK);
    PAGE_IS(t, &x, x.ks, KVA + M2, MMIO + M2, M2, p, KMM_CACHE_UC);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, KVA + 2 * M2, 2 * K4), KMM_OK);
    PAGE_IS(t, &x, x.ks, KVA + 2 * M2 - K4, MMIO + 2 * M2 - K4, M2, p, KMM_CACHE_UC);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, KVA + G1 - 2 * K4, 2 * K4), KMM_OK);
    PAGE_IS(t, &x, x.ks, KVA + G1, MMIO + G1, G1, p, KMM_CACHE_UC);
    UNMAPPED(t, &x, x.ks, KVA + M2 - K4);
    UNMAPPED(t, &x, x.ks, KVA + 2 * M2);
    UNMAPPED(t, &x, x.ks, KVA + G1 - K4);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, KVA + M2, M2), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(x.ks, KVA + G1, G1), KMM_OK);
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, unmap_of_the_first_4k_of_a_2m_page_splits_it)
{
    CUT_2M(0, K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_the_last_4k_of_a_2m_page_splits_it)
{
    CUT_2M(M2 - K4, K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_a_middle_4k_of_a_2m_page_splits_it)
{
    CUT_2M(M2 / 2 + 3 * K4, K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_a_run_inside_a_2m_page_splits_it)
{
    CUT_2M(5 * K4, 100 * K4, true);
}

KTEST_LEVELS(vm_huge, unmap_across_two_2m_pages_splits_both)
{
    CUT_2M(M2 - 2 * K4, 4 * K4, true);
}

KTEST_LEVELS(vm_huge, unmap_from_inside_a_2m_page_through_the_next_splits_only_the_first)
{
    CUT_2M(M2 / 2, M2 + M2 / 2, true);
}

KTEST_LEVELS(vm_huge, unmap_from_the_start_into_the_next_2m_page_splits_only_the_second)
{
    CUT_2M(0, M2 + K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_a_whole_2m_page_splits_nothing)
{
    CUT_2M(M2, M2, true);
}

KTEST_LEVELS(vm_huge, unmap_inside_a_2m_page_of_a_user_space_splits_it)
{
    CUT_2M_USER(M2 - 3 * K4, 5 * K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_a_middle_4k_of_a_1g_page_leaves_511_2m_and_511_4k_leaves)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    struct kmm_vm_stats s0 = vstats(x.ks);
    uint64_t hole = KVA + G1 + 300 * M2 + 17 * K4;
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, hole, K4), KMM_OK);
    struct kmm_vm_stats s = vstats(x.ks);
    KT_EXPECT_EQ(t, s.mapped_1g, 0);
    KT_EXPECT_EQ(t, s.mapped_2m, 511);
    KT_EXPECT_EQ(t, s.mapped_pages, 511);
    int64_t dt[6] = {0, 1, 1, 0, 0, 0}; /* one new PD and one new PT */
    STATS_MOVED(t, &s0, x.ks, 511, 511, -1, dt);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + 3 * G1, 511, 511, 0);
    UNMAPPED(t, &x, x.ks, hole);
    PAGE_IS(t, &x, x.ks, hole - K4, MMIO + 300 * M2 + 16 * K4, K4, RW, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, hole + K4, MMIO + 300 * M2 + 18 * K4, K4, RW, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + G1 + 299 * M2, MMIO + 299 * M2, M2, RW, KMM_CACHE_UC);
    PAGE_IS(t, &x, x.ks, KVA + G1 + 301 * M2, MMIO + 301 * M2, M2, RW, KMM_CACHE_UC);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + G1, hole - (KVA + G1)), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, hole + K4, KVA + 2 * G1 - hole - K4), KMM_OK);
    s = vstats(x.ks);
    KT_EXPECT_EQ(t, s.mapped_pages + s.mapped_2m + s.mapped_1g, 0);
    KT_EXPECT_EQ(t, s.table_bytes + (levels == 5 ? K4 : 0), s0.table_bytes); /* 5: the PDPT went */
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, unmap_of_the_first_4k_of_a_1g_page_splits_it_down_to_4k)
{
    CUT_1G(0, K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_the_last_4k_of_a_1g_page_splits_it_down_to_4k)
{
    CUT_1G(G1 - K4, K4, true);
}

KTEST_LEVELS(vm_huge, unmap_of_a_2m_aligned_piece_of_a_1g_page_splits_it_to_2m_only)
{
    CUT_1G(6 * M2, 3 * M2, true);
}

KTEST_LEVELS(vm_huge, unmap_across_a_2m_boundary_inside_a_1g_page_splits_two_2m_pages)
{
    CUT_1G(9 * M2 - 3 * K4, 5 * K4, true);
}

KTEST_LEVELS(vm_huge, unmap_from_a_2m_boundary_to_a_4k_one_inside_a_1g_page)
{
    CUT_1G(2 * M2, M2 + 7 * K4, true);
}

KTEST_LEVELS(vm_huge, unmap_across_two_1g_pages_splits_both_down_to_4k)
{
    CUT_1G(G1 - K4, 2 * K4, true);
}

KTEST_LEVELS(vm_huge, unmap_across_two_1g_pages_on_2m_boundaries_splits_both_to_2m)
{
    CUT_1G(G1 - 2 * M2, 3 * M2, true);
}

KTEST_LEVELS(vm_huge, unmap_from_a_4k_page_of_one_1g_page_to_a_2m_boundary_in_the_next)
{
    CUT_1G(G1 / 2 + K4, G1 / 2 - K4 + 5 * M2, true);
}

KTEST_LEVELS(vm_huge, unmap_of_a_whole_1g_page_splits_nothing)
{
    CUT_1G(G1, G1, true);
}

/* --- splits by protect -------------------------------------------------------------------- */

KTEST_LEVELS(vm_huge, protect_of_the_first_4k_of_a_2m_page_splits_it)
{
    CUT_2M(0, K4, false);
}

KTEST_LEVELS(vm_huge, protect_of_the_last_4k_of_a_2m_page_splits_it)
{
    CUT_2M(M2 - K4, K4, false);
}

KTEST_LEVELS(vm_huge, protect_across_two_2m_pages_splits_both)
{
    CUT_2M(M2 - 5 * K4, 10 * K4, false);
}

KTEST_LEVELS(vm_huge, protect_of_whole_2m_pages_keeps_them_huge)
{
    CUT_2M(0, 2 * M2, false);
}

KTEST_LEVELS(vm_huge, protect_inside_a_2m_page_of_a_user_space_splits_it)
{
    CUT_2M_USER(K4, 2 * K4, false);
}

KTEST_LEVELS(vm_huge, protect_of_a_middle_4k_of_a_1g_page_splits_it_down_to_4k)
{
    CUT_1G(100 * M2 + 100 * K4, K4, false);
}

KTEST_LEVELS(vm_huge, protect_of_a_2m_piece_of_a_1g_page_splits_it_to_2m_only)
{
    CUT_1G(G1 - M2, M2, false);
}

KTEST_LEVELS(vm_huge, protect_across_two_1g_pages_splits_both)
{
    CUT_1G(G1 - M2 - K4, M2 + 2 * K4, false);
}

KTEST_LEVELS(vm_huge, protect_of_a_whole_1g_page_keeps_it_huge)
{
    CUT_1G(0, G1, false);
}

KTEST_LEVELS(vm_huge, a_split_keeps_every_cache_mode_and_moves_the_pat_bit_from_12_to_7)
{
    static const unsigned modes[] = {KMM_CACHE_WB, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_WC};
    for (unsigned i = 0; i < N(modes) && !ktest_failed(t); i++) {
        cut_1g(t, levels, modes[i], 7 * M2 + 9 * K4, 2 * K4, true, __FILE__, __LINE__);
        cut_1g(t, levels, modes[i], 3 * M2 - K4, M2, false, __FILE__, __LINE__);
    }
}

/* --- replacing maps -------------------------------------------------------------------------- */

KTEST_LEVELS(vm_huge, a_replacing_map_inside_a_2m_page_splits_it_and_replaces_only_the_range)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t p = ram_run(&x, M2, M2), q = ram_run(&x, 4 * K4, K4);
    KT_ASSERT(t, p && q);
    uint64_t va = KVA + M2;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va, p, M2, RWX | KMM_MAP_HUGE), KMM_OK);
    struct kmm_vm_stats s0 = vstats(x.ks);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va + 8 * K4, q, 4 * K4, R | KMM_MAP_REPLACE), KMM_OK);
    int64_t dt[6] = {0, 1, 0, 0, 0, 0};
    STATS_MOVED(t, &s0, x.ks, 512, -1, 0, dt);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + G1, 512, 0, 0);
    bool ok = true;
    for (uint64_t i = 0; i < 512 && ok; i++) {
        bool in = i >= 8 && i < 12;
        ok = PAGE_IS(t, &x, x.ks, va + i * K4, in ? q + (i - 8) * K4 : p + i * K4, K4, in ? R : RWX,
                     0);
    }
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, va, M2), KMM_OK);
    int64_t gone[6] = {0, 0, -1, -(levels == 5), 0, 0};
    STATS_MOVED(t, &s0, x.ks, 0, -1, 0, gone);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, q, 4), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, a_replacing_map_of_a_whole_2m_page_keeps_one_leaf_with_the_new_frame)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t p = ram_run(&x, M2, M2), q = ram_run(&x, M2, M2);
    KT_ASSERT(t, p && q);
    uint64_t va = KVA + 5 * M2;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va, p, M2, RW | KMM_MAP_HUGE), KMM_OK);
    struct kmm_vm_stats s0 = vstats(x.ks);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va, q, M2, R | KMM_MAP_HUGE | KMM_MAP_REPLACE), KMM_OK);
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + G1, 0, 1, 0);
    PAGE_IS(t, &x, x.ks, va + 0x54321, q + 0x54321, M2, R, 0);
    /* And a 1 GiB one, in another cache mode. */
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    s0 = vstats(x.ks);
    KT_ASSERT_EQ(t,
                 kmm_vm_map(x.ks, KVA + G1, MMIO + G1, G1,
                            RW | KMM_CACHE_WC | KMM_MAP_HUGE_1G | KMM_MAP_REPLACE),
                 KMM_OK);
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    PAGE_IS(t, &x, x.ks, KVA + G1 + 0x1234567, MMIO + G1 + 0x1234567, G1, RW, KMM_CACHE_WC);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, va, M2), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + G1, G1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, q, 512), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, a_replacing_map_across_a_1g_page_splits_the_cut_leaves_and_replaces_the_rest)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t q = ram_run(&x, 4 * MIB, K4);
    KT_ASSERT(t, q != 0);
    uint64_t va = KVA + G1;
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G), KMM_OK);
    struct kmm_vm_stats s0 = vstats(x.ks);
    /* [1 MiB, 5 MiB) of it: cuts the 2 MiB pages at 0 and 4 MiB, covers the one at 2 MiB. */
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, va + MIB, q, 4 * MIB, RW | KMM_MAP_REPLACE), KMM_OK);
    KT_EXPECT_EQ(t, vstats(x.ks).mapped_1g, 0);
    CENSUS_IS(t, &x, x.ks, KVA, KVA + 3 * G1, 1536, 509, 0);
    int64_t dt[6] = {0, 3, 1, 0, 0, 0};
    STATS_MOVED(t, &s0, x.ks, 1536, 509, -1, dt);
    bool ok = true;
    for (uint64_t a = 0; a < 6 * MIB && ok; a += K4) {
        bool in = a >= MIB && a < 5 * MIB;
        ok = PAGE_IS(t, &x, x.ks, va + a, in ? q + a - MIB : MMIO + a, K4, RW,
                     in ? 0 : KMM_CACHE_UC);
    }
    for (uint64_t a = 6 * MIB; a < G1 && ok; a += M2)
        ok = PAGE_IS(t, &x, x.ks, va + a + M2 - K4, MMIO + a + M2 - K4, M2, RW, KMM_CACHE_UC);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, va, G1), KMM_OK);
    int64_t gone[6] = {0, 0, 0, -(levels == 5), 0, 0}; /* 5 levels: the PDPT goes too */
    STATS_MOVED(t, &s0, x.ks, 0, 0, -1, gone);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, q, 4 * MIB / K4), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- the top of the address space ------------------------------------------------------- */

KTEST_LEVELS(vm_huge, huge_pages_at_the_top_of_the_address_space_split_and_go)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    const uint64_t top = UINT64_C(0xffffffffc0000000); /* the last GiB */
    struct kmm_vm_stats s0 = vstats(ks);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, top, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G), KMM_OK);
    PAGE_IS(t, &x, ks, UINT64_MAX, MMIO + G1 - 1, G1, RW, KMM_CACHE_UC);
    /* The last page: the split reaches the end of the address space. */
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, top + G1 - K4, K4), KMM_OK);
    UNMAPPED(t, &x, ks, top + G1 - K4);
    PAGE_IS(t, &x, ks, top + G1 - 2 * K4, MMIO + G1 - 2 * K4, K4, RW, KMM_CACHE_UC);
    PAGE_IS(t, &x, ks, top + G1 - 2 * M2, MMIO + G1 - 2 * M2, M2, RW, KMM_CACHE_UC);
    int64_t dt[6] = {0, 1, 1, levels == 5, 0, 0};
    STATS_MOVED(t, &s0, ks, 511, 511, 0, dt);
    /* Protect everything left, and unmap it. */
    KT_ASSERT_EQ(t, kmm_vm_protect(ks, top, G1 - K4, R), KMM_OK);
    PAGE_IS(t, &x, ks, top, MMIO, M2, R, KMM_CACHE_UC);
    PAGE_IS(t, &x, ks, top + G1 - 2 * K4, MMIO + G1 - 2 * K4, K4, R, KMM_CACHE_UC);
    STATS_MOVED(t, &s0, ks, 511, 511, 0, dt);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, top, G1 - K4), KMM_OK);
    STATS_MOVED(t, &s0, ks, 0, 0, 0, NULL);
    /* A 2 MiB page as the very last one, cut at its first page. */
    uint64_t p = ram_run(&x, M2, M2);
    KT_ASSERT(t, p != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, UINT64_MAX - M2 + 1, p, M2, RW | KMM_MAP_HUGE), KMM_OK);
    PAGE_IS(t, &x, ks, UINT64_MAX - 7, p + M2 - 8, M2, RW, 0);
    KT_ASSERT_EQ(t, kmm_vm_protect(ks, UINT64_MAX - M2 + 1, K4, R), KMM_OK);
    PAGE_IS(t, &x, ks, UINT64_MAX - M2 + 1, p, K4, R, 0);
    PAGE_IS(t, &x, ks, UINT64_MAX - K4 + 1, p + M2 - K4, K4, RW, 0);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, UINT64_MAX - M2 + 1, M2), KMM_OK);
    STATS_MOVED(t, &s0, ks, 0, 0, 0, NULL);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- cache modes ------------------------------------------------------------------------------ */

KTEST_LEVELS(vm_huge, cache_modes_select_pwt_pcd_and_the_pat_bit_of_4k_2m_and_1g_leaves)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    /* KMM_PAT_VALUE: PAT0..7 = WB WT UC- UC WC WT UC- UC; 0..3 as at power-on. */
    static const unsigned pat[8] = {SMMU_MT_WB, SMMU_MT_WT, SMMU_MT_UC_MINUS, SMMU_MT_UC,
                                    SMMU_MT_WC, SMMU_MT_WT, SMMU_MT_UC_MINUS, SMMU_MT_UC};
    for (unsigned i = 0; i < 8; i++)
        KT_EXPECT_EQ(t, (KMM_PAT_VALUE >> (8 * i)) & 0xff, pat[i]);
    KT_EXPECT_EQ(t, KMM_PAT_VALUE & 0xffffffff, SMMU_PAT_DEFAULT & 0xffffffff);
    static const unsigned modes[] = {KMM_CACHE_WB, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_WC};
    static const unsigned index[] = {0, 1, 3, 4}; /* the PAT entry each must select */
    struct kmm_vm_stats s0 = vstats(x.ks);
    for (unsigned i = 0; i < N(modes); i++) {
        uint64_t v4 = KVA + 16 * M2 + i * K4, v2 = KVA + (2 + i) * M2, v1 = KVA + (1 + i) * G1;
        uint64_t p4 = MMIO + 8 * G1 + i * K4, p2 = MMIO + 8 * G1 + (2 + i) * M2;
        uint64_t p1 = MMIO + i * G1;
        unsigned m = modes[i];
        KT_ASSERT_EQ(t, kmm_vm_map(x.ks, v4, p4, K4, RW | m), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_map(x.ks, v2, p2, M2, RW | m | KMM_MAP_HUGE), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_map(x.ks, v1, p1, G1, RW | m | KMM_MAP_HUGE_1G), KMM_OK);
        PAGE_IS(t, &x, x.ks, v4, p4, K4, RW, m);
        PAGE_IS(t, &x, x.ks, v2 + 0x1008, p2 + 0x1008, M2, RW, m);
        PAGE_IS(t, &x, x.ks, v1 + 0x3ffff000, p1 + 0x3ffff000, G1, RW, m);
        uint64_t root = kmm_aspace_root(x.ks);
        KT_EXPECT_EQ(t, smmu_translate(&x.mmu, root, v4, SMMU_READ, false).pat_index, index[i]);
        KT_EXPECT_EQ(t, smmu_translate(&x.mmu, root, v2, SMMU_READ, false).pat_index, index[i]);
        KT_EXPECT_EQ(t, smmu_translate(&x.mmu, root, v1, SMMU_READ, false).pat_index, index[i]);
        struct kmm_vm_run run;
        KT_ASSERT_EQ(t, kmm_vm_query(x.ks, v2, v2 + M2, &run), KMM_OK);
        KT_EXPECT(t, run.mapped && run.cache == m && run.pa == p2 && run.size == M2);
    }
    int64_t dt[6] = {0, 1, 1, levels == 5, 0, 0}; /* a PT, a PD, with 5 levels a PDPT */
    STATS_MOVED(t, &s0, x.ks, 4, 4, 4, dt);
    for (unsigned i = 0; i < N(modes); i++) {
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + 16 * M2 + i * K4, K4), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + (2 + i) * M2, M2), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + (1 + i) * G1, G1), KMM_OK);
    }
    STATS_MOVED(t, &s0, x.ks, 0, 0, 0, NULL);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, ram_in_a_cache_mode_other_than_write_back_needs_alias)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    uint64_t p = ram_run(&x, M2, M2);
    KT_ASSERT(t, p != 0);
    static const unsigned modes[] = {KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_WC};
    const char *n = "kmm_vm_map";
    for (unsigned i = 0; i < N(modes); i++) {
        unsigned m = modes[i];
        EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, p, M2, RW | m | KMM_MAP_HUGE),
                       KMM_EINVAL, n);
        EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, p, K4, RW | m), KMM_EINVAL, n);
        KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + M2, p, M2, RW | m | KMM_MAP_HUGE | KMM_MAP_ALIAS),
                     KMM_OK);
        PAGE_IS(t, &x, ks, KVA + M2 + 0x777, p + 0x777, M2, RW, m);
        KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + 4 * M2, p + K4, K4, RW | m | KMM_MAP_ALIAS), KMM_OK);
        PAGE_IS(t, &x, ks, KVA + 4 * M2, p + K4, K4, RW, m);
        KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + M2, M2), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + 4 * M2, K4), KMM_OK);
    }
    /* Write-back RAM, said or not, needs nothing. */
    KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + M2, p, M2, RW | KMM_CACHE_WB | KMM_MAP_HUGE), KMM_OK);
    PAGE_IS(t, &x, ks, KVA + M2, p, M2, RW, KMM_CACHE_WB);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + 4 * M2, p, K4, RW), KMM_OK);
    PAGE_IS(t, &x, ks, KVA + 4 * M2, p, K4, RW, KMM_CACHE_WB);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + M2, M2), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + 4 * M2, K4), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, device_memory_needs_a_cache_mode_and_may_have_any)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    const char *n = "kmm_vm_map";
    /* Without a mode: the reserved region, a hole, and a range half RAM. */
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, DEV, K4, RW), KMM_ERANGE, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, DEV, M2, RW | KMM_MAP_HUGE), KMM_ERANGE, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + G1, MMIO, G1, RW | KMM_MAP_HUGE_1G), KMM_ERANGE,
                   n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, RAM_END - K4, 2 * K4, RW), KMM_ERANGE, n);
    /* Half RAM with a mode other than write-back aliases the RAM half. */
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, RAM_END - K4, 2 * K4, RW | KMM_CACHE_UC),
                   KMM_EINVAL, n);
    KT_ASSERT_EQ(t,
                 kmm_vm_map(ks, KVA + M2, RAM_END - K4, 2 * K4, RW | KMM_CACHE_UC | KMM_MAP_ALIAS),
                 KMM_OK);
    PAGE_IS(t, &x, ks, KVA + M2, RAM_END - K4, K4, RW, KMM_CACHE_UC);
    PAGE_IS(t, &x, ks, KVA + M2 + K4, DEV, K4, RW, KMM_CACHE_UC);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + M2, 2 * K4), KMM_OK);
    /* With any mode: huge pages where aligned, no RAM needed. */
    static const unsigned modes[] = {KMM_CACHE_WB, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_WC};
    for (unsigned i = 0; i < N(modes); i++) {
        unsigned m = modes[i];
        KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + 2 * M2, DEV, 2 * M2, RW | m | KMM_MAP_HUGE), KMM_OK);
        PAGE_IS(t, &x, ks, KVA + 3 * M2 + 0x10, DEV + M2 + 0x10, M2, RW, m);
        KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + G1, MMIO + G1, G1, RW | m | KMM_MAP_HUGE_1G), KMM_OK);
        PAGE_IS(t, &x, ks, KVA + G1 + 0x10, MMIO + G1 + 0x10, G1, RW, m);
        KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + 7 * K4, MMIO + 5 * K4, K4, R | m), KMM_OK);
        PAGE_IS(t, &x, ks, KVA + 7 * K4, MMIO + 5 * K4, K4, R, m);
        KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + 2 * M2, 2 * M2), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + G1, G1), KMM_OK);
        KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + 7 * K4, K4), KMM_OK);
    }
    /* Owned frames must be RAM. */
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, DEV, K4, RW | KMM_CACHE_UC | KMM_MAP_OWNED),
                   KMM_ERANGE, n);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, unknown_cache_modes_and_flags_are_refused)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    uint64_t p = ram_run(&x, M2, M2);
    KT_ASSERT(t, p != 0);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + G1, MMIO, G1, RW | KMM_CACHE_WC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    const char *n = "kmm_vm_map";
    for (unsigned v = 5; v <= 7; v++) {
        unsigned bad = v << 16;
        EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, DEV, M2, RW | bad | KMM_MAP_HUGE),
                       KMM_EINVAL, n);
        EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, p, K4, RW | bad | KMM_MAP_ALIAS),
                       KMM_EINVAL, n);
    }
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, p, K4, RW | (1u << 19)), KMM_EINVAL, n);
    EXPECT_REFUSED(t, &x, ks, kmm_vm_map(ks, KVA + M2, p, K4, RW | (1u << 13)), KMM_EINVAL, n);
    /* protect takes protections only: the cache mode cannot change through it. */
    EXPECT_REFUSED(t, &x, ks, kmm_vm_protect(ks, KVA + G1, G1, R | KMM_CACHE_UC), KMM_EINVAL,
                   "kmm_vm_protect");
    EXPECT_REFUSED(t, &x, ks, kmm_vm_protect(ks, KVA + G1, K4, R | KMM_MAP_HUGE), KMM_EINVAL,
                   "kmm_vm_protect");
    PAGE_IS(t, &x, ks, KVA + G1, MMIO, G1, RW, KMM_CACHE_WC);
    /* A protect that works keeps the mode too, whole or split. */
    KT_ASSERT_EQ(t, kmm_vm_protect(ks, KVA + G1, G1, R), KMM_OK);
    PAGE_IS(t, &x, ks, KVA + G1, MMIO, G1, R, KMM_CACHE_WC);
    KT_ASSERT_EQ(t, kmm_vm_protect(ks, KVA + G1 + M2, K4, RW), KMM_OK);
    PAGE_IS(t, &x, ks, KVA + G1 + M2, MMIO + M2, K4, RW, KMM_CACHE_WC);
    PAGE_IS(t, &x, ks, KVA + G1 + M2 + K4, MMIO + M2 + K4, K4, R, KMM_CACHE_WC);
    PAGE_IS(t, &x, ks, KVA + G1, MMIO, M2, R, KMM_CACHE_WC);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + G1, G1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- splits without memory ---------------------------------------------------------------- */

static uint64_t taken[RAM_END / 0x1000];

/* Allocates every free page into taken[]; returns how many. */
static size_t take_all(struct kmm *k)
{
    size_t n = 0;
    while (n < N(taken) && (taken[n] = kmm_page_alloc(k, 0, 0)) != 0)
        n++;
    return n;
}

/* A failed split: ENOMEM, nothing changed. */
#define EXPECT_NOMEM(t, x, call)                                                                   \
    do {                                                                                           \
        struct snapshot s_ = snap((x), (x)->ks);                                                   \
        KT_EXPECT_EQ((t), (call), KMM_ENOMEM);                                                     \
        UNCHANGED_SINCE((t), (x), (x)->ks, &s_, #call);                                            \
    } while (0)

KTEST_LEVELS(vm_huge, a_split_without_memory_fails_with_enomem_and_changes_nothing)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    uint64_t p = ram_run(&x, M2, M2), q = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT(t, p && q);
    uint64_t v2 = KVA + G1 - M2, v1 = KVA + G1; /* adjacent */
    KT_ASSERT_EQ(t, kmm_vm_map(ks, v2, p, M2, RW | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, v1, MMIO, G1, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G), KMM_OK);
    size_t n = take_all(x.f.k);
    KT_ASSERT(t, n > 0 && n < N(taken));
    EXPECT_NOMEM(t, &x, kmm_vm_unmap(ks, v2 + K4, K4));
    EXPECT_NOMEM(t, &x, kmm_vm_protect(ks, v2 + M2 - K4, K4, R));
    EXPECT_NOMEM(t, &x, kmm_vm_unmap(ks, v1 + 3 * M2 + K4, 2 * K4));
    EXPECT_NOMEM(t, &x, kmm_vm_unmap(ks, v1 + 4 * M2, M2));
    EXPECT_NOMEM(t, &x, kmm_vm_protect(ks, v1, K4, R));
    EXPECT_NOMEM(t, &x, kmm_vm_unmap(ks, v1 - K4, 2 * K4)); /* cuts both */
    EXPECT_NOMEM(t, &x, kmm_vm_map(ks, v2 + 2 * K4, q, K4, R | KMM_MAP_REPLACE));
    EXPECT_NOMEM(t, &x, kmm_vm_map(ks, v1 + 5 * K4, q, K4, R | KMM_MAP_REPLACE));
    /* One page back: enough for a 2 MiB split (one table), not a 1 GiB one
     * down to 4 KiB (two). */
    KT_ASSERT_EQ(t, kmm_page_free(x.f.k, taken[--n], 0), KMM_OK);
    EXPECT_NOMEM(t, &x, kmm_vm_unmap(ks, v1 + 3 * M2 + K4, K4));
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, v2 + K4, K4), KMM_OK);
    PAGE_IS(t, &x, ks, v2, p, K4, RW, 0);
    PAGE_IS(t, &x, ks, v2 + 2 * K4, p + 2 * K4, K4, RW, 0);
    KT_ASSERT_EQ(t, kmm_page_free(x.f.k, taken[--n], 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(x.f.k, taken[--n], 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, v1 + 3 * M2 + K4, K4), KMM_OK);
    PAGE_IS(t, &x, ks, v1 + 3 * M2, MMIO + 3 * M2, K4, RW, KMM_CACHE_UC);
    PAGE_IS(t, &x, ks, v1 + 4 * M2, MMIO + 4 * M2, M2, RW, KMM_CACHE_UC);
    KT_EXPECT_HEALTHY(t, x.f.k);
    while (n)
        KT_ASSERT_EQ(t, kmm_page_free(x.f.k, taken[--n], 0), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, v2, K4), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, v2 + 2 * K4, M2 - 2 * K4), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, v1, 3 * M2 + K4), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, v1 + 3 * M2 + 2 * K4, G1 - 3 * M2 - 2 * K4), KMM_OK);
    struct kmm_vm_stats s = vstats(ks);
    KT_EXPECT_EQ(t, s.mapped_pages + s.mapped_2m + s.mapped_1g, 0);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, q, 0), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- statistics, spaces ------------------------------------------------------------------ */

KTEST_LEVELS(vm_huge, statistics_count_leaves_by_size_in_each_space)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_vm_stats k0 = vstats(x.ks);
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.f.k, &us), KMM_OK);
    uint64_t p = ram_run(&x, M2, M2), one = kmm_page_alloc(x.f.k, 0, 0);
    KT_ASSERT(t, p && one);
    unsigned u = RW | KMM_PROT_USER;
    KT_ASSERT_EQ(t, kmm_vm_map(us, UVA, one, K4, u | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, UVA + M2, p, M2, u | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, UVA + G1, MMIO, G1, u | KMM_CACHE_UC | KMM_MAP_HUGE_1G), KMM_OK);
    struct kmm_vm_stats s = vstats(us);
    KT_EXPECT_EQ(t, s.mapped_pages, 1);
    KT_EXPECT_EQ(t, s.mapped_2m, 1);
    KT_EXPECT_EQ(t, s.mapped_1g, 1);
    KT_EXPECT_EQ(t, s.owned_pages, 1);
    /* The root, and one table of each level below it down to the PT. */
    for (unsigned l = 1; l <= 5; l++)
        KT_EXPECT_EQ(t, s.tables[l], l <= levels ? 1 : 0);
    KT_EXPECT_EQ(t, s.table_bytes, levels * K4);
    CENSUS_IS(t, &x, us, UVA, UVA + SPAN, 1, 1, 1);
    /* User mode may read and write all three. */
    uint64_t root = kmm_aspace_root(us);
    KT_EXPECT(t, smmu_translate(&x.mmu, root, UVA + 8, SMMU_WRITE, true).ok);
    KT_EXPECT(t, smmu_translate(&x.mmu, root, UVA + M2 + 0x1ffff8, SMMU_WRITE, true).ok);
    KT_EXPECT(t, smmu_translate(&x.mmu, root, UVA + G1 + 0x3ffffff8, SMMU_WRITE, true).ok);
    /* The kernel space's counts did not move; a huge kernel mapping is seen from the user space. */
    STATS_MOVED(t, &k0, x.ks, 0, 0, 0, NULL);
    KT_ASSERT_EQ(t, kmm_vm_map(x.ks, KVA + G1, MMIO + G1, G1, RW | KMM_CACHE_WT | KMM_MAP_HUGE_1G),
                 KMM_OK);
    int64_t dt[6] = {0, 0, 0, levels == 5, 0, 0};
    STATS_MOVED(t, &k0, x.ks, 0, 0, 1, dt);
    PAGE_IS(t, &x, us, KVA + G1 + 0x42, MMIO + G1 + 0x42, G1, RW, KMM_CACHE_WT);
    s = vstats(us);
    KT_EXPECT_EQ(t, s.mapped_1g, 1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_ASSERT_EQ(t, kmm_vm_unmap(x.ks, KVA + G1, G1), KMM_OK);
    KT_EXPECT_EQ(t, kmm_vm_translate(us, KVA + G1, &(struct kmm_vm_translation){0}), KMM_ENOENT);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_get(x.f.k, one), KMM_OK); /* still ours: the owned reference went */
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, one, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(x.f.k, one, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 512), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, destroying_a_space_with_huge_and_split_leaves_frees_every_table)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    uint64_t p = ram_run(&x, 4 * M2, M2);
    KT_ASSERT(t, p != 0);
    uint64_t before = kt_free_pages(x.f.k);
    struct kmm_aspace *us;
    KT_ASSERT_EQ(t, kmm_aspace_create(x.f.k, &us), KMM_OK);
    unsigned u = RW | KMM_PROT_USER, mmio = u | KMM_CACHE_UC | KMM_MAP_HUGE_1G;
    KT_ASSERT_EQ(t, kmm_vm_map(us, UVA, p, 4 * M2, u | KMM_MAP_HUGE), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, UVA + G1, MMIO, 3 * G1, mmio), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(us, UVA + 512 * G1, MMIO, G1, mmio), KMM_OK); /* another PDPT */
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, UVA + M2 + K4, K4), KMM_OK);            /* a split 2 MiB */
    KT_ASSERT_EQ(t, kmm_vm_unmap(us, UVA + 2 * G1 + 3 * M2, K4), KMM_OK);    /* a split 1 GiB */
    KT_ASSERT_EQ(t, kmm_vm_protect(us, UVA + 3 * G1 + M2, M2, R | KMM_PROT_USER), KMM_OK);
    for (unsigned i = 0; i < 8; i++) {
        uint64_t f = kmm_page_alloc(x.f.k, 0, 0);
        KT_ASSERT(t, f != 0);
        KT_ASSERT_EQ(t,
                     kmm_vm_map(us, UVA + 5 * M2 + (uint64_t)i * 37 * K4, f, K4, u | KMM_MAP_OWNED),
                     KMM_OK);
        KT_ASSERT_EQ(t, kmm_page_free(x.f.k, f, 0), KMM_OK);
    }
    struct kmm_vm_stats s = vstats(us);
    KT_EXPECT_EQ(t, s.mapped_1g, 2);
    KT_EXPECT_EQ(t, s.mapped_2m, 3 + 511 + 512);
    KT_EXPECT_EQ(t, s.mapped_pages, 511 + 511 + 8);
    KT_EXPECT_EQ(t, s.owned_pages, 8);
    KT_EXPECT_HEALTHY(t, x.f.k);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(x.f.k, us), KMM_OK);
    KT_EXPECT_EQ(t, kt_free_pages(x.f.k), before); /* tables, owned frames, the space itself */
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 4 * M2 / K4), KMM_OK); /* never the others' frames */
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

/* --- query --------------------------------------------------------------------------------- */

KTEST_LEVELS(vm_huge, query_merges_one_run_across_4k_2m_and_1g_leaves)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    uint64_t p = ram_run(&x, 4 * M2, M2);
    KT_ASSERT(t, p != 0);
    struct kmm_vm_run run;
    /* RAM: 4K 4K 2M 4K 4K at consecutive frames. */
    uint64_t va = KVA + M2 - 2 * K4, size = M2 + 4 * K4;
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va, p + M2 - 2 * K4, size, RW | KMM_MAP_HUGE), KMM_OK);
    CENSUS_IS(t, &x, ks, KVA, KVA + G1, 4, 1, 0);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va, KVA + G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.va == va && run.size == size && run.pa == p + M2 - 2 * K4);
    KT_EXPECT(t, run.prot == RW && run.cache == KMM_CACHE_WB && !run.owned);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, KVA + M2 + 5 * K4, KVA + G1, &run), KMM_OK); /* mid-leaf */
    KT_EXPECT(t, run.mapped && run.size == M2 - 3 * K4 && run.pa == p + M2 + 5 * K4);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va + size, KVA + G1, &run), KMM_OK);
    KT_EXPECT(t, !run.mapped && run.size == KVA + G1 - va - size);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, va, size), KMM_OK);
    /* Device memory: 4K 2M 1G 2M 4K, a limit inside the 1 GiB page. */
    uint64_t off = G1 - M2 - K4, big = K4 + M2 + G1 + M2 + K4;
    KT_ASSERT_EQ(t, kmm_vm_map(ks, KVA + off, MMIO + off, big, RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G),
                 KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, KVA + off, KVA + 4 * G1, &run), KMM_OK);
    KT_EXPECT(t,
              run.mapped && run.size == big && run.pa == MMIO + off && run.cache == KMM_CACHE_UC);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, KVA + off, KVA + G1 + 3 * M2, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == G1 + 3 * M2 - off);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, KVA + G1 + 0x5000, KVA + 4 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.size == big - (G1 + 0x5000 - off) && run.pa == MMIO + G1 + 0x5000);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, KVA + off, big), KMM_OK);
    KT_EXPECT_EQ(t, kmm_run_free(x.f.k, p, 4 * M2 / K4), KMM_OK);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}

KTEST_LEVELS(vm_huge, query_ends_a_run_where_protection_cache_mode_or_frames_change)
{
    struct hx x;
    if (!up(t, &x, levels))
        return;
    struct kmm_aspace *ks = x.ks;
    struct kmm_vm_run run;
    uint64_t va = KVA + G1;
    unsigned uc = RW | KMM_CACHE_UC | KMM_MAP_HUGE_1G;
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va, MMIO, G1, uc), KMM_OK);
    /* Then consecutive frames in another cache mode, then a gap in the frames. */
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va + G1, MMIO + G1, M2, RW | KMM_CACHE_WT | KMM_MAP_HUGE),
                 KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va + G1 + M2, MMIO + G1 + 2 * M2, M2, RW | KMM_CACHE_WT),
                 KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == G1 && run.cache == KMM_CACHE_UC);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va + G1, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == M2 && run.cache == KMM_CACHE_WT);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va + G1 + M2, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == M2 && run.pa == MMIO + G1 + 2 * M2);
    /* A protection change in the middle of the 1 GiB page. */
    KT_ASSERT_EQ(t, kmm_vm_protect(ks, va + 4 * M2, M2 + K4, R), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == 4 * M2 && run.prot == RW);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va + 4 * M2, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == M2 + K4 && run.prot == R && run.pa == MMIO + 4 * M2);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va + 5 * M2 + K4, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, run.mapped && run.size == G1 - 5 * M2 - K4 && run.prot == RW);
    KT_ASSERT_EQ(t, kmm_vm_unmap(ks, va, G1 + 2 * M2), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_query(ks, va, va + 2 * G1, &run), KMM_OK);
    KT_EXPECT(t, !run.mapped && run.size == 2 * G1);
    KT_EXPECT_HEALTHY(t, x.f.k);
    down(&x);
}
