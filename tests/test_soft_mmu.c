/*
 * test_soft_mmu.c - the tests' software MMU (tests/ktest/soft_mmu.h) checked
 * against page tables built by hand, one architectural rule at a time (Intel
 * SDM Vol. 3A §4.5, §4.6, §4.9). The page-table engine's tests trust it, so
 * it gets its own.
 *
 * Every test builds its tables in a 16 MiB test machine: the top-level table
 * at 1 MiB, further tables in the pages after it. Physical addresses from
 * 16 MiB up are not memory (phys() returns NULL there); leaves may still
 * point there, since a walk never reads a leaf's frame.
 */
#include "ktest.h"
#include "env.h"
#include "soft_mmu.h"

#define BIT(n) (UINT64_C(1) << (n))
#define PAGE   UINT64_C(4096)
#define MIB    (UINT64_C(1) << 20)
#define GIB    (UINT64_C(1) << 30)
#define RAM    (16 * MIB)
#define TABLES (1 * MIB) /* the first table page */

/* Entry bits, written out here from the SDM, not shared with soft_mmu.c. */
#define P      BIT(0)
#define RW     BIT(1)
#define US     BIT(2)
#define PWT    BIT(3)
#define PCD    BIT(4)
#define PS     BIT(7)
#define PAT4K  BIT(7)
#define G      BIT(8)
#define PATBIG BIT(12)
#define XD     BIT(63)
#define ADDR   UINT64_C(0x000ffffffffff000)

static const struct kmm_region ram16[] = {{0, RAM, KMM_MEM_USABLE}};

struct fx {
    struct kt_machine *km;
    struct smmu m;
    uint64_t root;       /* the top-level table */
    uint64_t next;       /* the next free table page */
    unsigned long reads; /* phys() calls */
};

static const void *fx_phys(void *ctx, uint64_t pa)
{
    struct fx *f = ctx;
    f->reads++;
    if (pa >= RAM)
        return NULL;
    return kt_machine_phys(f->km, pa);
}

static uint64_t new_table(struct fx *f)
{
    uint64_t pa = f->next;
    f->next += PAGE;
    kt_fill(kt_machine_phys(f->km, pa), 0, PAGE);
    return pa;
}

/* A machine with an empty top-level table; NXE and WP on, SMEP/SMAP off. */
static bool setup(struct ktest *t, struct fx *f, bool la57)
{
    f->km = kt_machine_create(t, ram16, 1);
    if (!f->km)
        return false;
    f->m = (struct smmu){.phys = fx_phys, .ctx = f, .la57 = la57, .nxe = true, .wp = true};
    f->next = TABLES;
    f->root = new_table(f);
    f->reads = 0;
    return true;
}

static void teardown(struct fx *f)
{
    kt_machine_destroy(f->km);
}

static unsigned top(const struct fx *f)
{
    return f->m.la57 ? 5 : 4;
}

/* The index of va's entry in a table at level (1 = PT ... 5 = PML5). */
static unsigned idx(uint64_t va, unsigned level)
{
    return (unsigned)(va >> (12 + 9 * (level - 1))) & 511;
}

static uint64_t *entry(struct fx *f, uint64_t table, unsigned i)
{
    return (uint64_t *)kt_machine_phys(f->km, table) + i;
}

/* va's entry at level, creating the tables above it (entries P|RW|US).
 * Call before clearing P or setting address bits above it. */
static uint64_t *slot(struct fx *f, uint64_t va, unsigned level)
{
    uint64_t table = f->root;
    for (unsigned l = top(f); l > level; l--) {
        uint64_t *e = entry(f, table, idx(va, l));
        if (!(*e & P))
            *e = new_table(f) | P | RW | US;
        table = *e & ADDR;
    }
    return entry(f, table, idx(va, level));
}

/* Map va with the leaf entry e at level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB). */
static void map(struct fx *f, uint64_t va, unsigned level, uint64_t e)
{
    *slot(f, va, level) = e;
}

static struct smmu_result tr(struct fx *f, uint64_t va, enum smmu_access a, bool user)
{
    return smmu_translate(&f->m, f->root, va, a, user);
}

/* Whether the access succeeds. */
static bool can(struct fx *f, uint64_t va, enum smmu_access a, bool user)
{
    return tr(f, va, a, user).ok;
}

/* Fails the test unless the access faults with fault at level. */
static void expect_fault(struct ktest *t, struct fx *f, uint64_t va, enum smmu_access a, bool user,
                         int fault, unsigned level, int line)
{
    struct smmu_result r = tr(f, va, a, user);
    if (r.ok || r.fault != fault || r.level != level)
        ktest_fail_at(
            t, __FILE__, line,
            "va 0x%llx access %d user %d: ok %d fault %d level %u, want fault %d level %u",
            (unsigned long long)va, (int)a, (int)user, (int)r.ok, r.fault, r.level, fault, level);
}
#define EXPECT_FAULT(t, f, va, a, user, fault, level)                                              \
    expect_fault((t), (f), (va), (a), (user), (fault), (level), __LINE__)

/* --- translation ------------------------------------------------------------------------------ */

KTEST(soft_mmu, a_4k_page_translates_to_its_frame_plus_the_offset)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = UINT64_C(0x0000123456789000);
    map(&f, va, 1, 0x345000 | P | RW);
    struct smmu_result r = tr(&f, va + 0xabc, SMMU_READ, false);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_NONE);
    KT_EXPECT_EQ(t, r.pa, 0x345abc);
    KT_EXPECT_EQ(t, r.page_size, PAGE);
    KT_EXPECT_EQ(t, r.level, 1);
    KT_ASSERT_EQ(t, r.nentries, 4);
    KT_EXPECT_EQ(t, r.entries[0], *slot(&f, va, 4));
    KT_EXPECT_EQ(t, r.entries[1], *slot(&f, va, 3));
    KT_EXPECT_EQ(t, r.entries[2], *slot(&f, va, 2));
    KT_EXPECT_EQ(t, r.entries[3], 0x345000 | P | RW);
    KT_EXPECT(t, r.writable && !r.user && r.executable && !r.global);
    KT_EXPECT_EQ(t, r.pat_index, 0);
    /* The neighbouring page is not mapped: its PT entry is empty. */
    EXPECT_FAULT(t, &f, va + PAGE, SMMU_READ, false, SMMU_FAULT_NOT_PRESENT, 1);
    teardown(&f);
}

KTEST(soft_mmu, a_2m_page_keeps_the_low_21_bits_of_the_address)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = UINT64_C(0x40000000) + MIB * 12;
    map(&f, va, 2, 0xa00000 | PS | P);
    f.reads = 0;
    struct smmu_result r = tr(&f, va + 0x1fedcb, SMMU_READ, false);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.pa, 0xa00000 + 0x1fedcb);
    KT_EXPECT_EQ(t, r.page_size, 2 * MIB);
    KT_EXPECT_EQ(t, r.level, 2);
    KT_EXPECT_EQ(t, r.nentries, 3);
    KT_EXPECT_EQ(t, f.reads, 3); /* PML4E, PDPTE, PDE: the walk stops at PS */
    KT_EXPECT(t, !r.writable);
    teardown(&f);
}

KTEST(soft_mmu, a_1g_page_keeps_the_low_30_bits_of_the_address)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = UINT64_C(0x0000008000000000) + 3 * GIB; /* PML4 slot 1, PDPT slot 3 */
    map(&f, va, 3, 5 * GIB | PS | P | RW | US);
    f.reads = 0;
    struct smmu_result r = tr(&f, va + 0x3ffffff8, SMMU_WRITE, true);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.pa, 5 * GIB + 0x3ffffff8);
    KT_EXPECT_EQ(t, r.page_size, GIB);
    KT_EXPECT_EQ(t, r.level, 3);
    KT_EXPECT_EQ(t, r.nentries, 2);
    KT_EXPECT_EQ(t, f.reads, 2);
    KT_EXPECT(t, r.writable && r.user);
    teardown(&f);
}

KTEST(soft_mmu, upper_half_addresses_index_the_top_table_with_their_sign_bit)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t kva = UINT64_C(0xffffffff80000000);
    map(&f, kva, 1, 0x7000 | P);
    KT_EXPECT_EQ(t, idx(kva, 4), 511);
    KT_EXPECT(t, *entry(&f, f.root, 511) & P);
    struct smmu_result r = tr(&f, kva + 0x10, SMMU_READ, false);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.pa, 0x7010);
    /* The lowest upper-half address uses PML4 slot 256, not slot 0. */
    map(&f, UINT64_C(0xffff800000000000), 1, 0x8000 | P);
    KT_EXPECT(t, *entry(&f, f.root, 256) & P);
    KT_EXPECT_EQ(t, tr(&f, UINT64_C(0xffff800000000000), SMMU_READ, false).pa, 0x8000);
    EXPECT_FAULT(t, &f, 0, SMMU_READ, false, SMMU_FAULT_NOT_PRESENT, 4);
    teardown(&f);
}

KTEST(soft_mmu, canonical_means_sign_extended_from_bit_47_or_bit_56)
{
    KT_EXPECT_EQ(t, smmu_canonical(UINT64_C(0x0000800000000000), false),
                 UINT64_C(0xffff800000000000));
    KT_EXPECT_EQ(t, smmu_canonical(UINT64_C(0x00007fffffffffff), false),
                 UINT64_C(0x00007fffffffffff));
    KT_EXPECT_EQ(t, smmu_canonical(UINT64_C(0xffff7fffffffffff), false),
                 UINT64_C(0x00007fffffffffff));
    KT_EXPECT_EQ(t, smmu_canonical(UINT64_C(0x0100000000000000), true),
                 UINT64_C(0xff00000000000000));
    KT_EXPECT_EQ(t, smmu_canonical(UINT64_C(0x0000800000000000), true),
                 UINT64_C(0x0000800000000000));
    KT_EXPECT(t, smmu_is_canonical(0, false) && smmu_is_canonical(0, true));
    KT_EXPECT(t, smmu_is_canonical(UINT64_MAX, false) && smmu_is_canonical(UINT64_MAX, true));
    KT_EXPECT(t, smmu_is_canonical(UINT64_C(0x00007fffffffffff), false));
    KT_EXPECT(t, !smmu_is_canonical(UINT64_C(0x0000800000000000), false));
    KT_EXPECT(t, smmu_is_canonical(UINT64_C(0x0000800000000000), true));
    KT_EXPECT(t, smmu_is_canonical(UINT64_C(0x00ffffffffffffff), true));
    KT_EXPECT(t, !smmu_is_canonical(UINT64_C(0x0100000000000000), true));
    KT_EXPECT(t, !smmu_is_canonical(UINT64_C(0xff00000000000000), false));
    KT_EXPECT(t, smmu_is_canonical(UINT64_C(0xff00000000000000), true));
    KT_EXPECT(t, !smmu_is_canonical(UINT64_C(0x8000000000000000), true));
}

KTEST(soft_mmu, a_non_canonical_address_faults_before_any_table_is_read)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    map(&f, 0, 1, 0x5000 | P);
    f.reads = 0;
    struct smmu_result r = tr(&f, UINT64_C(0x0000800000000000), SMMU_READ, false);
    KT_EXPECT(t, !r.ok);
    KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_NON_CANONICAL);
    KT_EXPECT_EQ(t, r.level, 0);
    KT_EXPECT_EQ(t, r.nentries, 0);
    KT_EXPECT_EQ(t, f.reads, 0);
    /* The same low bits, made canonical, are walked (and found empty). */
    EXPECT_FAULT(t, &f, UINT64_C(0xffff800000000000), SMMU_READ, false, SMMU_FAULT_NOT_PRESENT, 4);
    EXPECT_FAULT(t, &f, UINT64_C(0x8000000000000000), SMMU_READ, false, SMMU_FAULT_NON_CANONICAL,
                 0);
    teardown(&f);
}

KTEST(soft_mmu, la57_walks_five_levels_and_takes_57_bit_addresses)
{
    struct fx f;
    if (!setup(t, &f, true))
        return;
    uint64_t va = UINT64_C(0x00123456789ab000); /* non-canonical with 4 levels */
    map(&f, va, 1, 0x9000 | P | RW);
    KT_EXPECT_EQ(t, idx(va, 5), 0x12);
    f.reads = 0;
    struct smmu_result r = tr(&f, va + 0x42, SMMU_WRITE, false);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.pa, 0x9042);
    KT_EXPECT_EQ(t, r.level, 1);
    KT_ASSERT_EQ(t, r.nentries, 5);
    KT_EXPECT_EQ(t, f.reads, 5);
    KT_EXPECT_EQ(t, r.entries[0], *entry(&f, f.root, 0x12));
    /* An upper-half 57-bit address: PML5 slot 256 + 0x100. */
    uint64_t kva = UINT64_C(0xff00000000000000);
    map(&f, kva, 3, 2 * GIB | PS | P);
    KT_EXPECT_EQ(t, idx(kva, 5), 0x100);
    KT_EXPECT_EQ(t, tr(&f, kva + 0x1234, SMMU_READ, false).pa, 2 * GIB + 0x1234);
    /* Bits 63..56 must agree: bit 56 set alone is not canonical. */
    EXPECT_FAULT(t, &f, UINT64_C(0x0100000000000000), SMMU_READ, false, SMMU_FAULT_NON_CANONICAL,
                 0);
    /* The same tables read as 4-level: the 57-bit addresses are non-canonical. */
    f.m.la57 = false;
    EXPECT_FAULT(t, &f, va, SMMU_READ, false, SMMU_FAULT_NON_CANONICAL, 0);
    EXPECT_FAULT(t, &f, kva, SMMU_READ, false, SMMU_FAULT_NON_CANONICAL, 0);
    teardown(&f);
}

KTEST(soft_mmu, a_missing_entry_at_each_level_faults_at_that_level)
{
    for (int la57 = 0; la57 <= 1; la57++) {
        struct fx f;
        if (!setup(t, &f, la57))
            return;
        uint64_t va = UINT64_C(0x00007f0000201000);
        map(&f, va, 1, 0x6000 | P | RW | US);
        uint64_t *e[6];
        for (unsigned l = 1; l <= top(&f); l++)
            e[l] = slot(&f, va, l);
        KT_EXPECT(t, can(&f, va, SMMU_READ, true));
        for (unsigned l = top(&f); l >= 1; l--) {
            uint64_t saved = *e[l];
            *e[l] = ~P; /* every other bit set: all ignored without P */
            struct smmu_result r = tr(&f, va, SMMU_READ, false);
            KT_EXPECT(t, !r.ok);
            KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_NOT_PRESENT);
            KT_EXPECT_EQ(t, r.level, l);
            KT_EXPECT_EQ(t, r.nentries, top(&f) - l + 1);
            KT_EXPECT_EQ(t, r.entries[r.nentries - 1], ~P);
            KT_EXPECT_EQ(t, r.pa, 0);
            *e[l] = saved;
        }
        KT_EXPECT(t, can(&f, va, SMMU_READ, true));
        teardown(&f);
    }
}

/* --- access rights ---------------------------------------------------------------------------- */

KTEST(soft_mmu, a_user_page_under_a_supervisor_pde_is_not_user_accessible)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = 0x600000;
    map(&f, va, 1, 0x6000 | P | RW | US);
    uint64_t *e[5];
    for (unsigned l = 1; l <= 4; l++)
        e[l] = slot(&f, va, l);
    KT_EXPECT(t, tr(&f, va, SMMU_READ, true).user);
    for (unsigned l = 1; l <= 4; l++) { /* U/S clear at any one level */
        *e[l] &= ~US;
        struct smmu_result r = tr(&f, va, SMMU_READ, true);
        KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_PROTECTION);
        KT_EXPECT_EQ(t, r.level, 1);
        KT_EXPECT(t, !r.user);
        KT_EXPECT_EQ(t, r.pa, 0x6000); /* a protection fault still reports the translation */
        KT_EXPECT(t, !can(&f, va, SMMU_WRITE, true));
        KT_EXPECT(t, !can(&f, va, SMMU_EXEC, true));
        KT_EXPECT(t, can(&f, va, SMMU_READ, false));
        KT_EXPECT(t, can(&f, va, SMMU_WRITE, false));
        KT_EXPECT(t, can(&f, va, SMMU_EXEC, false));
        *e[l] |= US;
    }
    teardown(&f);
}

KTEST(soft_mmu, a_writable_pte_under_a_read_only_pdpte_is_not_writable)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = 0x600000;
    map(&f, va, 1, 0x6000 | P | RW | US);
    uint64_t *e[5];
    for (unsigned l = 1; l <= 4; l++)
        e[l] = slot(&f, va, l);
    KT_EXPECT(t, tr(&f, va, SMMU_READ, true).writable);
    for (unsigned l = 1; l <= 4; l++) { /* R/W clear at any one level */
        *e[l] &= ~RW;
        struct smmu_result r = tr(&f, va, SMMU_WRITE, true);
        KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_PROTECTION);
        KT_EXPECT(t, !r.writable);
        EXPECT_FAULT(t, &f, va, SMMU_WRITE, false, SMMU_FAULT_PROTECTION, 1); /* WP is on */
        KT_EXPECT(t, can(&f, va, SMMU_READ, true));
        KT_EXPECT(t, can(&f, va, SMMU_EXEC, true));
        *e[l] |= RW;
    }
    KT_EXPECT(t, can(&f, va, SMMU_WRITE, true));
    teardown(&f);
}

KTEST(soft_mmu, with_wp_clear_the_kernel_writes_read_only_pages_but_user_mode_cannot)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t kpage = 0x200000, upage = 0x400000;
    map(&f, kpage, 1, 0x2000 | P);
    map(&f, upage, 2, 0x400000 | PS | P | US);
    f.m.wp = false;
    KT_EXPECT(t, can(&f, kpage, SMMU_WRITE, false));
    KT_EXPECT(t, can(&f, upage, SMMU_WRITE, false));
    KT_EXPECT(t, !tr(&f, kpage, SMMU_WRITE, false).writable); /* the page's right is unchanged */
    EXPECT_FAULT(t, &f, upage, SMMU_WRITE, true, SMMU_FAULT_PROTECTION, 2);
    f.m.wp = true;
    EXPECT_FAULT(t, &f, kpage, SMMU_WRITE, false, SMMU_FAULT_PROTECTION, 1);
    EXPECT_FAULT(t, &f, upage, SMMU_WRITE, false, SMMU_FAULT_PROTECTION, 2);
    EXPECT_FAULT(t, &f, upage, SMMU_WRITE, true, SMMU_FAULT_PROTECTION, 2);
    KT_EXPECT(t, can(&f, kpage, SMMU_READ, false));
    teardown(&f);
}

KTEST(soft_mmu, xd_at_any_level_forbids_fetches_when_nxe_is_on)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = 0x600000;
    map(&f, va, 1, 0x6000 | P | RW | US);
    uint64_t *e[5];
    for (unsigned l = 1; l <= 4; l++)
        e[l] = slot(&f, va, l);
    KT_EXPECT(t, can(&f, va, SMMU_EXEC, false) && can(&f, va, SMMU_EXEC, true));
    for (unsigned l = 1; l <= 4; l++) {
        *e[l] |= XD;
        struct smmu_result r = tr(&f, va, SMMU_EXEC, false);
        KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_PROTECTION);
        KT_EXPECT(t, !r.executable);
        KT_EXPECT_EQ(t, r.pa, 0x6000); /* XD is not an address bit */
        EXPECT_FAULT(t, &f, va, SMMU_EXEC, true, SMMU_FAULT_PROTECTION, 1);
        KT_EXPECT(t, can(&f, va, SMMU_READ, true) && can(&f, va, SMMU_WRITE, true));
        *e[l] &= ~XD;
    }
    teardown(&f);
}

KTEST(soft_mmu, xd_with_nxe_off_is_a_reserved_bit_at_any_level)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = 0x600000;
    map(&f, va, 1, 0x6000 | P | RW | US);
    uint64_t *e[5];
    for (unsigned l = 1; l <= 4; l++)
        e[l] = slot(&f, va, l);
    f.m.nxe = false;
    KT_EXPECT(t, tr(&f, va, SMMU_EXEC, true).executable); /* without NXE everything executes */
    for (unsigned l = 1; l <= 4; l++) {
        *e[l] |= XD;
        EXPECT_FAULT(t, &f, va, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, l);
        EXPECT_FAULT(t, &f, va, SMMU_EXEC, true, SMMU_FAULT_RESERVED_BIT, l);
        *e[l] &= ~XD;
    }
    /* A huge leaf too. */
    map(&f, 0x800000, 2, 0x800000 | PS | P | XD);
    EXPECT_FAULT(t, &f, 0x800000, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, 2);
    f.m.nxe = true;
    EXPECT_FAULT(t, &f, 0x800000, SMMU_EXEC, false, SMMU_FAULT_PROTECTION, 2);
    teardown(&f);
}

KTEST(soft_mmu, smep_forbids_kernel_fetches_from_user_pages_only)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t upage = 0x200000, kpage = UINT64_C(0x0000008000000000); /* PML4 slot 1 */
    map(&f, upage, 1, 0x2000 | P | US);
    map(&f, kpage, 1, 0x3000 | P | US);
    *slot(&f, kpage, 4) &= ~US; /* a supervisor address: U/S clear in the PML4E */
    KT_EXPECT(t, can(&f, upage, SMMU_EXEC, false));
    f.m.smep = true;
    EXPECT_FAULT(t, &f, upage, SMMU_EXEC, false, SMMU_FAULT_PROTECTION, 1);
    KT_EXPECT(t, tr(&f, upage, SMMU_EXEC, false).executable); /* the page's right is unchanged */
    KT_EXPECT(t, can(&f, upage, SMMU_EXEC, true));
    KT_EXPECT(t, can(&f, upage, SMMU_READ, false)); /* SMEP is about fetches */
    KT_EXPECT(t, can(&f, kpage, SMMU_EXEC, false)); /* U/S at every level but one: kernel page */
    teardown(&f);
}

KTEST(soft_mmu, smap_forbids_kernel_data_accesses_to_user_pages_only)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t upage = 0x200000, kpage = 0x400000;
    map(&f, upage, 1, 0x2000 | P | RW | US);
    map(&f, kpage, 2, 0x400000 | PS | P | RW);
    f.m.smap = true;
    EXPECT_FAULT(t, &f, upage, SMMU_READ, false, SMMU_FAULT_PROTECTION, 1);
    EXPECT_FAULT(t, &f, upage, SMMU_WRITE, false, SMMU_FAULT_PROTECTION, 1);
    KT_EXPECT(t, can(&f, upage, SMMU_EXEC, false)); /* SMAP is about data; SMEP is off */
    KT_EXPECT(t, can(&f, upage, SMMU_READ, true) && can(&f, upage, SMMU_WRITE, true));
    KT_EXPECT(t, can(&f, kpage, SMMU_READ, false) && can(&f, kpage, SMMU_WRITE, false));
    f.m.wp = false; /* WP clear does not open user pages to kernel writes under SMAP */
    EXPECT_FAULT(t, &f, upage, SMMU_WRITE, false, SMMU_FAULT_PROTECTION, 1);
    f.m.smap = false;
    KT_EXPECT(t, can(&f, upage, SMMU_READ, false) && can(&f, upage, SMMU_WRITE, false));
    teardown(&f);
}

KTEST(soft_mmu, global_is_the_leaf_g_bit_and_ignored_above_it)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    map(&f, 0x200000, 1, 0x2000 | P);
    *slot(&f, 0x200000, 2) |= G;
    *slot(&f, 0x200000, 3) |= G;
    KT_EXPECT(t, can(&f, 0x200000, SMMU_READ, false));
    KT_EXPECT(t, !tr(&f, 0x200000, SMMU_READ, false).global);
    map(&f, 0x201000, 1, 0x3000 | P | G);
    KT_EXPECT(t, tr(&f, 0x201000, SMMU_READ, false).global);
    map(&f, 0x400000, 2, 0x400000 | PS | P | G);
    KT_EXPECT(t, tr(&f, 0x400000, SMMU_READ, false).global);
    map(&f, GIB, 3, GIB | PS | P | G);
    KT_EXPECT(t, tr(&f, GIB, SMMU_READ, false).global);
    teardown(&f);
}

/* --- reserved bits ---------------------------------------------------------------------------- */

KTEST(soft_mmu, ps_in_a_pml4e_or_pml5e_is_a_reserved_bit)
{
    for (int la57 = 0; la57 <= 1; la57++) {
        struct fx f;
        if (!setup(t, &f, la57))
            return;
        uint64_t va = 0x200000;
        map(&f, va, 1, 0x2000 | P);
        for (unsigned l = 4; l <= top(&f); l++) {
            uint64_t *e = slot(&f, va, l);
            *e |= PS;
            EXPECT_FAULT(t, &f, va, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, l);
            *e &= ~PS;
        }
        /* Bit 7 of a PTE is PAT, not PS: the walk ends there anyway. */
        *slot(&f, va, 1) |= PAT4K;
        KT_EXPECT(t, can(&f, va, SMMU_READ, false));
        teardown(&f);
    }
}

KTEST(soft_mmu, a_huge_leaf_with_frame_bits_below_its_size_is_reserved_except_pat)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va2 = 0x400000, va1 = GIB;
    map(&f, va2, 2, 0xc00000 | PS | P);
    map(&f, va1, 3, 3 * GIB | PS | P);
    uint64_t *pde = slot(&f, va2, 2), *pdpte = slot(&f, va1, 3);
    static const unsigned bad2[] = {13, 14, 16, 20};
    for (unsigned i = 0; i < sizeof(bad2) / sizeof(bad2[0]); i++) {
        *pde |= BIT(bad2[i]);
        EXPECT_FAULT(t, &f, va2, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, 2);
        *pde &= ~BIT(bad2[i]);
    }
    static const unsigned bad1[] = {13, 20, 21, 29};
    for (unsigned i = 0; i < sizeof(bad1) / sizeof(bad1[0]); i++) {
        *pdpte |= BIT(bad1[i]);
        EXPECT_FAULT(t, &f, va1, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, 3);
        *pdpte &= ~BIT(bad1[i]);
    }
    /* Bit 12 is PAT, not an address bit; bit 21 (2 MiB) and 30 (1 GiB) are address bits. */
    *pde |= PATBIG | BIT(21);
    struct smmu_result r = tr(&f, va2 + 0x100, SMMU_READ, false);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.pa, 0xe00100);
    KT_EXPECT_EQ(t, r.pat_index, 4);
    *pdpte |= PATBIG | BIT(30);
    r = tr(&f, va1 + 0x100, SMMU_READ, false);
    KT_EXPECT(t, r.ok);
    KT_EXPECT_EQ(t, r.pa, 3 * GIB + 0x100); /* 3 GiB already has bit 30 */
    *pdpte = 4 * GIB | PATBIG | BIT(30) | PS | P;
    KT_EXPECT_EQ(t, tr(&f, va1, SMMU_READ, false).pa, 5 * GIB);
    KT_EXPECT_EQ(t, tr(&f, va1, SMMU_READ, false).pat_index, 4);
    /* A non-leaf PDE's bits 20..13 are table address bits, not reserved. */
    uint64_t pt = 0x1fe000; /* bits 20..13 all set */
    kt_fill(kt_machine_phys(f.km, pt), 0, PAGE);
    *entry(&f, pt, idx(0x200000, 1)) = 0x2000 | P;
    *slot(&f, 0x200000, 2) = pt | P;
    KT_EXPECT_EQ(t, tr(&f, 0x200123, SMMU_READ, false).pa, 0x2123);
    teardown(&f);
}

KTEST(soft_mmu, pat_index_comes_from_pwt_pcd_and_bit_7_or_bit_12)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    for (unsigned i = 0; i < 8; i++) {
        uint64_t cache = ((i & 1) ? PWT : 0) | ((i & 2) ? PCD : 0);
        uint64_t va4 = 0x200000 + i * PAGE, va2 = MIB * 2 * (4 + i), va1 = GIB * (2 + i);
        map(&f, va4, 1, 0x8000 | P | cache | ((i & 4) ? PAT4K : 0));
        map(&f, va2, 2, 0x1000000 | PS | P | cache | ((i & 4) ? PATBIG : 0));
        map(&f, va1, 3, 8 * GIB | PS | P | cache | ((i & 4) ? PATBIG : 0));
        struct smmu_result r4 = tr(&f, va4, SMMU_READ, false);
        struct smmu_result r2 = tr(&f, va2, SMMU_READ, false);
        struct smmu_result r1 = tr(&f, va1, SMMU_READ, false);
        KT_EXPECT_EQ(t, r4.pat_index, i);
        KT_EXPECT_EQ(t, r2.pat_index, i);
        KT_EXPECT_EQ(t, r1.pat_index, i);
        KT_EXPECT_EQ(t, r4.pa, 0x8000); /* the PAT bits never reach the address */
        KT_EXPECT_EQ(t, r2.pa, 0x1000000);
        KT_EXPECT_EQ(t, r1.pa, 8 * GIB);
    }
    /* PWT/PCD of the tables above describe the tables, not the page. */
    map(&f, 0x300000, 1, 0x9000 | P);
    *slot(&f, 0x300000, 2) |= PWT | PCD;
    *slot(&f, 0x300000, 4) |= PWT | PCD;
    KT_EXPECT_EQ(t, tr(&f, 0x300000, SMMU_READ, false).pat_index, 0);
    /* Bit 12 of a 4 KiB PTE is an address bit. */
    map(&f, 0x301000, 1, 0x9000 | P);
    KT_EXPECT_EQ(t, tr(&f, 0x301000, SMMU_READ, false).pat_index, 0);
    KT_EXPECT_EQ(t, tr(&f, 0x301000, SMMU_READ, false).pa, 0x9000);
    teardown(&f);
}

/* An IA32_PAT value from its eight entries, PAT0 first (§11.12.2). */
static uint64_t pat_msr(const uint8_t type[8])
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)type[i] << (8 * i);
    return v;
}

KTEST(soft_mmu, the_memory_type_is_the_pat_entry_the_leaf_selects)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    /* Power-on IA32_PAT (f.m.pat 0): WB WT UC- UC, twice. */
    static const unsigned power_on[8] = {SMMU_MT_WB, SMMU_MT_WT, SMMU_MT_UC_MINUS, SMMU_MT_UC,
                                         SMMU_MT_WB, SMMU_MT_WT, SMMU_MT_UC_MINUS, SMMU_MT_UC};
    /* A programmed one with every type, each at another index. */
    static const uint8_t programmed[8] = {SMMU_MT_UC,       SMMU_MT_WB, SMMU_MT_WC, SMMU_MT_WT,
                                          SMMU_MT_UC_MINUS, SMMU_MT_WP, SMMU_MT_WB, SMMU_MT_WC};
    KT_EXPECT_EQ(t, pat_msr((const uint8_t[8]){6, 4, 7, 0, 6, 4, 7, 0}), SMMU_PAT_DEFAULT);
    for (unsigned i = 0; i < 8; i++) {
        uint64_t cache = ((i & 1) ? PWT : 0) | ((i & 2) ? PCD : 0);
        uint64_t va4 = 0x200000 + i * PAGE, va2 = MIB * 2 * (4 + i), va1 = GIB * (2 + i);
        map(&f, va4, 1, 0x8000 | P | cache | ((i & 4) ? PAT4K : 0));
        map(&f, va2, 2, 0x1000000 | PS | P | cache | ((i & 4) ? PATBIG : 0));
        map(&f, va1, 3, 8 * GIB | PS | P | cache | ((i & 4) ? PATBIG : 0));
        f.m.pat = 0;
        KT_EXPECT_EQ(t, tr(&f, va4, SMMU_READ, false).memtype, power_on[i]);
        KT_EXPECT_EQ(t, tr(&f, va2, SMMU_READ, false).memtype, power_on[i]);
        KT_EXPECT_EQ(t, tr(&f, va1, SMMU_READ, false).memtype, power_on[i]);
        f.m.pat = SMMU_PAT_DEFAULT; /* the same, written out */
        KT_EXPECT_EQ(t, tr(&f, va1 + 0x1234, SMMU_READ, false).memtype, power_on[i]);
        f.m.pat = pat_msr(programmed);
        KT_EXPECT_EQ(t, tr(&f, va4, SMMU_READ, false).memtype, programmed[i]);
        KT_EXPECT_EQ(t, tr(&f, va2 + 0x1fffff, SMMU_READ, false).memtype, programmed[i]);
        KT_EXPECT_EQ(t, tr(&f, va1, SMMU_WRITE, false).memtype, programmed[i]); /* faults, typed */
        KT_EXPECT_EQ(t, tr(&f, va1, SMMU_WRITE, false).fault, SMMU_FAULT_PROTECTION);
    }
    /* A 4 KiB leaf's bit 12 is an address bit and a huge leaf's bit 7 is PS:
     * neither selects the upper half of the PAT. */
    f.m.pat = pat_msr(programmed);
    map(&f, 0x301000, 1, 0x9000 | P | PWT);
    KT_EXPECT_EQ(t, tr(&f, 0x301000, SMMU_READ, false).memtype, programmed[1]);
    /* A fault before the leaf reports no type. */
    struct smmu_result r = tr(&f, 0x7000000000, SMMU_READ, false);
    KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_NOT_PRESENT);
    KT_EXPECT_EQ(t, r.memtype, 0);
    KT_EXPECT_EQ(t, r.page_size, 0);
    teardown(&f);
}

KTEST(soft_mmu, address_bits_at_or_above_maxphyaddr_are_reserved)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = 0x200000, va2 = 0x400000, va1 = GIB;
    map(&f, va, 1, BIT(35) | 0x2000 | P);
    map(&f, va2, 2, 0x400000 | PS | P);
    map(&f, va1, 3, GIB | PS | P);
    /* 52 by default: bit 51 is an address bit, bits 62..52 are ignored. */
    *slot(&f, va, 1) |= BIT(51) | BIT(52) | BIT(62);
    KT_EXPECT_EQ(t, tr(&f, va, SMMU_READ, false).pa, BIT(51) | BIT(35) | 0x2000);
    *slot(&f, va, 1) &= ~BIT(51);
    f.m.maxphyaddr = 36;
    KT_EXPECT_EQ(t, tr(&f, va, SMMU_READ, false).pa, BIT(35) | 0x2000);
    static const unsigned bad[] = {36, 40, 51};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (unsigned l = 1; l <= 4; l++) {
            uint64_t *e = slot(&f, va, l);
            *e |= BIT(bad[i]);
            EXPECT_FAULT(t, &f, va, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, l);
            *e &= ~BIT(bad[i]);
        }
        *slot(&f, va2, 2) |= BIT(bad[i]);
        EXPECT_FAULT(t, &f, va2, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, 2);
        *slot(&f, va2, 2) &= ~BIT(bad[i]);
        *slot(&f, va1, 3) |= BIT(bad[i]);
        EXPECT_FAULT(t, &f, va1, SMMU_READ, false, SMMU_FAULT_RESERVED_BIT, 3);
        *slot(&f, va1, 3) &= ~BIT(bad[i]);
    }
    KT_EXPECT(t, can(&f, va, SMMU_READ, false));
    teardown(&f);
}

/* --- unreadable tables and CR3 ---------------------------------------------------------------- */

KTEST(soft_mmu, a_table_outside_memory_faults_as_bad_phys_at_its_level)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    uint64_t va = 0x200000;
    map(&f, va, 1, 0x2000 | P);
    uint64_t *pde = slot(&f, va, 2);
    uint64_t saved = *pde;
    *pde = 64 * MIB | P | RW; /* a page table beyond RAM */
    struct smmu_result r = tr(&f, va, SMMU_READ, false);
    KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_BAD_PHYS);
    KT_EXPECT_EQ(t, r.level, 1);
    KT_EXPECT_EQ(t, r.nentries, 3);
    *pde = saved;
    /* The root itself. */
    r = smmu_translate(&f.m, 32 * MIB, va, SMMU_READ, false);
    KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_BAD_PHYS);
    KT_EXPECT_EQ(t, r.level, 4);
    KT_EXPECT_EQ(t, r.nentries, 0);
    /* A leaf's frame is never read: a page beyond RAM translates. */
    map(&f, 0x201000, 1, 128 * MIB | P);
    KT_EXPECT_EQ(t, tr(&f, 0x201000, SMMU_READ, false).pa, 128 * MIB);
    teardown(&f);
}

KTEST(soft_mmu, cr3_low_bits_and_bit_63_are_ignored_and_bits_above_maxphyaddr_refused)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    map(&f, 0x200000, 1, 0x2000 | P);
    uint64_t cr3 = f.root | 0xabc | BIT(63); /* a PCID and the no-flush bit */
    KT_EXPECT_EQ(t, smmu_translate(&f.m, cr3, 0x200000, SMMU_READ, false).pa, 0x2000);
    f.m.maxphyaddr = 36;
    f.reads = 0;
    struct smmu_result r = smmu_translate(&f.m, f.root | BIT(40), 0x200000, SMMU_READ, false);
    KT_EXPECT_EQ(t, r.fault, SMMU_FAULT_BAD_PHYS);
    KT_EXPECT_EQ(t, r.level, 4);
    KT_EXPECT_EQ(t, f.reads, 0);
    teardown(&f);
}

/* --- smmu_collect ----------------------------------------------------------------------------- */

struct seen {
    uint64_t va, pa, size;
    unsigned level;
    int fault;
    bool ok, writable, user;
};

struct seen_log {
    struct seen s[16];
    unsigned n; /* calls, even beyond s[] */
};

static void record(void *ctx, uint64_t va, const struct smmu_result *r)
{
    struct seen_log *l = ctx;
    if (l->n < sizeof(l->s) / sizeof(l->s[0]))
        l->s[l->n] =
            (struct seen){va, r->pa, r->page_size, r->level, r->fault, r->ok, r->writable, r->user};
    l->n++;
}

static size_t collect(struct fx *f, uint64_t start, uint64_t end, struct seen_log *l)
{
    l->n = 0;
    return smmu_collect(&f->m, f->root, start, end, record, l);
}

KTEST(soft_mmu, collect_finds_scattered_leaves_of_every_size_in_address_order)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    static const struct {
        uint64_t va, e;
        unsigned level;
    } maps[] = {
        /* Inserted out of order on purpose. */
        {UINT64_C(0xffffffff80000000), 0x400000 | PS | P | RW, 2},
        {0x1ff000, 0x5000 | P | US, 1},
        {2 * GIB, 4 * GIB | PS | P | RW | US, 3},
        {0x1000, 0x4000 | P | RW | US, 1},
        {0x400000, 0x600000 | PS | P | RW | US, 2},
        {UINT64_C(0x00007ffffffff000), 0x7000 | P | RW | US, 1},
    };
    static const uint64_t want_va[] = {0x1000,
                                       0x1ff000,
                                       0x400000,
                                       2 * GIB,
                                       UINT64_C(0x00007ffffffff000),
                                       UINT64_C(0xffffffff80000000)};
    static const uint64_t want_size[] = {PAGE, PAGE, 2 * MIB, GIB, PAGE, 2 * MIB};
    for (unsigned i = 0; i < 6; i++)
        map(&f, maps[i].va, maps[i].level, maps[i].e);
    struct seen_log l;
    KT_ASSERT_EQ(t, collect(&f, 0, 0, &l), 6); /* the whole address space */
    KT_ASSERT_EQ(t, l.n, 6);
    for (unsigned i = 0; i < 6; i++) {
        KT_EXPECT_EQ(t, l.s[i].va, want_va[i]);
        KT_EXPECT_EQ(t, l.s[i].size, want_size[i]);
        KT_EXPECT(t, l.s[i].ok);
        /* Every leaf agrees with a translation of its first byte. */
        struct smmu_result r = tr(&f, l.s[i].va, SMMU_READ, false);
        KT_EXPECT_EQ(t, l.s[i].pa, r.pa);
        KT_EXPECT_EQ(t, l.s[i].level, r.level);
        KT_EXPECT_EQ(t, l.s[i].writable, r.writable);
        KT_EXPECT_EQ(t, l.s[i].user, r.user);
    }
    KT_EXPECT_EQ(t, l.s[1].pa, 0x5000);
    KT_EXPECT(t, !l.s[1].writable && l.s[1].user);
    KT_EXPECT(t, l.s[5].writable && !l.s[5].user);
    /* A window in the first 3 GiB past the first page. */
    KT_EXPECT_EQ(t, collect(&f, 0x2000, 3 * GIB, &l), 3);
    KT_EXPECT_EQ(t, l.s[0].va, 0x1ff000);
    KT_EXPECT_EQ(t, l.s[2].va, 2 * GIB);
    /* A window inside a huge page reports the whole page, with its own va. */
    KT_EXPECT_EQ(t, collect(&f, 0x401000, 0x402000, &l), 1);
    KT_EXPECT_EQ(t, l.s[0].va, 0x400000);
    KT_EXPECT_EQ(t, collect(&f, 2 * GIB + 5 * MIB, 2 * GIB + 6 * MIB, &l), 1);
    KT_EXPECT_EQ(t, l.s[0].va, 2 * GIB);
    /* The end is exclusive; an empty or inverted window is empty. */
    KT_EXPECT_EQ(t, collect(&f, 0x2000, 0x1ff000, &l), 0);
    KT_EXPECT_EQ(t, collect(&f, 0x1000, 0x1000, &l), 0);
    KT_EXPECT_EQ(t, collect(&f, 0x2000, 0x1000, &l), 0);
    KT_EXPECT_EQ(t, l.n, 0);
    teardown(&f);
}

struct typed {
    uint64_t va, size;
    unsigned pat_index, memtype;
};

struct typed_log {
    struct typed s[8];
    unsigned n;
};

static void record_type(void *ctx, uint64_t va, const struct smmu_result *r)
{
    struct typed_log *l = ctx;
    if (l->n < sizeof(l->s) / sizeof(l->s[0]))
        l->s[l->n] = (struct typed){va, r->page_size, r->pat_index, r->memtype};
    l->n++;
}

KTEST(soft_mmu, collect_reports_each_leaf_with_its_size_and_memory_type)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    static const uint8_t types[8] = {SMMU_MT_WB, SMMU_MT_WT, SMMU_MT_UC_MINUS, SMMU_MT_UC,
                                     SMMU_MT_WC, SMMU_MT_WT, SMMU_MT_UC_MINUS, SMMU_MT_UC};
    f.m.pat = pat_msr(types);
    map(&f, 0x1000, 1, 0x4000 | P | PAT4K);                 /* index 4 */
    map(&f, 0x2000, 1, 0x5000 | P | PCD | PWT);             /* index 3 */
    map(&f, 0x400000, 2, 0x400000 | PS | P | PWT);          /* index 1 */
    map(&f, 0x600000, 2, 0x600000 | PS | P | PATBIG | PCD); /* index 6 */
    map(&f, GIB, 3, 4 * GIB | PS | P | PATBIG);             /* index 4 */
    map(&f, 2 * GIB, 3, 5 * GIB | PS | P);                  /* index 0 */
    struct typed_log l = {.n = 0};
    KT_ASSERT_EQ(t, smmu_collect(&f.m, f.root, 0, 4 * GIB, record_type, &l), 6);
    static const struct typed want[6] = {
        {0x1000, PAGE, 4, SMMU_MT_WC},      {0x2000, PAGE, 3, SMMU_MT_UC},
        {0x400000, 2 * MIB, 1, SMMU_MT_WT}, {0x600000, 2 * MIB, 6, SMMU_MT_UC_MINUS},
        {GIB, GIB, 4, SMMU_MT_WC},          {2 * GIB, GIB, 0, SMMU_MT_WB},
    };
    for (unsigned i = 0; i < 6; i++) {
        KT_EXPECT_EQ(t, l.s[i].va, want[i].va);
        KT_EXPECT_EQ(t, l.s[i].size, want[i].size);
        KT_EXPECT_EQ(t, l.s[i].pat_index, want[i].pat_index);
        KT_EXPECT_EQ(t, l.s[i].memtype, want[i].memtype);
    }
    teardown(&f);
}

KTEST(soft_mmu, collect_reads_an_empty_pml4_slot_once_and_skips_the_hole)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    map(&f, 0x1000, 1, 0x4000 | P);
    struct seen_log l;
    /* One 512 GiB slot: its PML4E, then each table on the path in full. */
    f.reads = 0;
    KT_EXPECT_EQ(t, collect(&f, 0, 512 * GIB, &l), 1);
    KT_EXPECT_EQ(t, f.reads, 1 + 3 * 512);
    /* Three more, empty, slots: three more reads. */
    f.reads = 0;
    KT_EXPECT_EQ(t, collect(&f, 0, GIB * 512 * 4, &l), 1);
    KT_EXPECT_EQ(t, f.reads, 4 + 3 * 512);
    /* A 1 GiB window: one PML4E, one PDPTE, the PD and the PT in full. */
    f.reads = 0;
    KT_EXPECT_EQ(t, collect(&f, 0, GIB, &l), 1);
    KT_EXPECT_EQ(t, f.reads, 2 + 2 * 512);
    /* A window across the non-canonical hole reads the two slots around it. */
    map(&f, UINT64_C(0x00007ffffffff000), 1, 0x5000 | P);
    map(&f, UINT64_C(0xffff800000000000), 1, 0x6000 | P);
    f.reads = 0;
    KT_EXPECT_EQ(t, collect(&f, UINT64_C(0x00007ffffffff000), UINT64_C(0xffff800000001000), &l), 2);
    KT_EXPECT_EQ(t, f.reads, 2 * 4);
    KT_EXPECT_EQ(t, l.s[0].va, UINT64_C(0x00007ffffffff000));
    KT_EXPECT_EQ(t, l.s[1].va, UINT64_C(0xffff800000000000));
    /* A window entirely inside the hole reads nothing. */
    f.reads = 0;
    KT_EXPECT_EQ(t, collect(&f, UINT64_C(0x0000800000000000), UINT64_C(0xffff800000000000), &l), 0);
    KT_EXPECT_EQ(t, f.reads, 0);
    teardown(&f);
}

KTEST(soft_mmu, collect_reports_reserved_and_unreadable_entries_and_skips_them)
{
    struct fx f;
    if (!setup(t, &f, false))
        return;
    map(&f, 0x1000, 1, 0x4000 | P);
    map(&f, 0x400000, 2, 0x400000 | PS | P | BIT(13)); /* misaligned 2 MiB frame */
    map(&f, GIB + 0x1000, 1, 0x5000 | P);
    *slot(&f, GIB, 3) |= XD;                   /* reserved once NXE is off */
    map(&f, 2 * GIB, 1, 0x6000 | P);           /* its page table ... */
    *slot(&f, 2 * GIB, 2) = 64 * MIB | P | RW; /* ... moved beyond RAM */
    map(&f, 3 * GIB, 3, 3 * GIB | PS | P);
    f.m.nxe = false;
    struct seen_log l;
    KT_EXPECT_EQ(t, collect(&f, 0, 4 * GIB, &l), 2);
    KT_ASSERT_EQ(t, l.n, 5);
    KT_EXPECT(t, l.s[0].ok && l.s[0].va == 0x1000);
    KT_EXPECT(t, !l.s[1].ok);
    KT_EXPECT_EQ(t, l.s[1].fault, SMMU_FAULT_RESERVED_BIT);
    KT_EXPECT_EQ(t, l.s[1].level, 2);
    KT_EXPECT_EQ(t, l.s[1].va, 0x400000);
    KT_EXPECT_EQ(t, l.s[2].fault, SMMU_FAULT_RESERVED_BIT); /* the PDPTE; its PT is skipped */
    KT_EXPECT_EQ(t, l.s[2].level, 3);
    KT_EXPECT_EQ(t, l.s[2].va, GIB);
    KT_EXPECT_EQ(t, l.s[3].fault, SMMU_FAULT_BAD_PHYS);
    KT_EXPECT_EQ(t, l.s[3].level, 1);
    KT_EXPECT_EQ(t, l.s[3].va, 2 * GIB);
    KT_EXPECT(t, l.s[4].ok && l.s[4].va == 3 * GIB && l.s[4].size == GIB);
    /* An unreadable table is reported with the base of the region it maps. */
    KT_EXPECT_EQ(t, collect(&f, 2 * GIB + 0x5000, 2 * GIB + 0x6000, &l), 0);
    KT_ASSERT_EQ(t, l.n, 1);
    KT_EXPECT_EQ(t, l.s[0].fault, SMMU_FAULT_BAD_PHYS);
    KT_EXPECT_EQ(t, l.s[0].va, 2 * GIB);
    teardown(&f);
}

KTEST(soft_mmu, collect_in_la57_mode_covers_both_57_bit_halves)
{
    struct fx f;
    if (!setup(t, &f, true))
        return;
    uint64_t low = UINT64_C(0x00123456789ab000), high = UINT64_C(0xff00000000200000);
    map(&f, high, 2, 0x200000 | PS | P);
    map(&f, low, 1, 0x9000 | P);
    map(&f, 0x1000, 1, 0x8000 | P);
    struct seen_log l;
    KT_EXPECT_EQ(t, collect(&f, 0, 0, &l), 3);
    KT_EXPECT_EQ(t, l.s[0].va, 0x1000);
    KT_EXPECT_EQ(t, l.s[1].va, low);
    KT_EXPECT_EQ(t, l.s[2].va, high);
    KT_EXPECT_EQ(t, l.s[2].size, 2 * MIB);
    KT_EXPECT_EQ(t, collect(&f, UINT64_C(0x0010000000000000), 0, &l), 2);
    KT_EXPECT_EQ(t, collect(&f, UINT64_C(0xff00000000000000), UINT64_C(0xff00000000400000), &l), 1);
    teardown(&f);
}
