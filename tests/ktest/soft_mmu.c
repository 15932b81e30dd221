/*
 * soft_mmu.c - the tests' software MMU (contract: soft_mmu.h), written from
 * the Intel SDM Vol. 3A §4.5, §4.6 and §4.9 only.
 *
 * Implementation subtleties:
 *  - Faults found during the walk (not present, reserved bit, unreadable
 *    table) end it at that entry; access rights are looked at only once a
 *    leaf is reached, combined over every entry on the path (R/W and U/S
 *    must be set at every level, XD at any level denies execution).
 *  - Bit 7 means PS at levels 3 and 2, is reserved at 5 and 4, and is PAT
 *    at level 1; a huge leaf's PAT is bit 12, which is why the reserved
 *    address bits of a huge leaf start at 13. The PAT index picks a byte of
 *    IA32_PAT; its memory type is reported as the byte holds it.
 *  - smmu_collect walks in "u-space": the address with the sign extension
 *    stripped (bits w-1..0, w = 48 or 57), where the two canonical halves are
 *    contiguous and a table's region is [base, base + 512 * span). The
 *    caller's window becomes at most two inclusive u-ranges, one per half.
 */
#include "soft_mmu.h"

#define BIT(n) (UINT64_C(1) << (n))

#define E_P        BIT(0)
#define E_RW       BIT(1)
#define E_US       BIT(2)
#define E_PWT      BIT(3)
#define E_PCD      BIT(4)
#define E_A        BIT(5)
#define E_PS       BIT(7) /* levels 3 and 2 */
#define E_PAT_4K   BIT(7) /* level 1 */
#define E_G        BIT(8)
#define E_PAT_HUGE BIT(12)
#define E_XD       BIT(63)
/* Bits 51..12: a table or frame address, up to the architectural maximum. */
#define E_ADDR     (BIT(52) - BIT(12))

#define ENTRIES 512u

/* What the entries read so far say, top level first. */
struct path {
    uint64_t entries[5];
    unsigned n;
    bool rw, us, xd; /* R/W and U/S at every level so far; XD at any level */
};

static unsigned maxphyaddr(const struct smmu *m)
{
    return m->maxphyaddr ? m->maxphyaddr : 52;
}

static unsigned top_level(const struct smmu *m)
{
    return m->la57 ? SMMU_PML5 : SMMU_PML4;
}

/* log2 of the region one entry at this level maps. */
static unsigned level_shift(unsigned level)
{
    return 12 + 9 * (level - 1);
}

static bool is_leaf(uint64_t e, unsigned level)
{
    return level == SMMU_PT || ((level == SMMU_PD || level == SMMU_PDPT) && (e & E_PS));
}

/* Whether a present entry has a bit set that §4.5 reserves. */
static bool has_reserved_bits(const struct smmu *m, uint64_t e, unsigned level)
{
    uint64_t rsv = BIT(52) - BIT(maxphyaddr(m)); /* bits 51..M */
    if (!m->nxe)
        rsv |= E_XD;
    if (level >= SMMU_PML4)
        rsv |= E_PS;
    else if (is_leaf(e, level) && level != SMMU_PT)
        rsv |= BIT(level_shift(level)) - BIT(13); /* frame bits below the page size, PAT aside */
    return (e & rsv) != 0;
}

static void path_push(struct path *p, uint64_t e)
{
    p->entries[p->n++] = e;
    p->rw = p->rw && (e & E_RW);
    p->us = p->us && (e & E_US);
    p->xd = p->xd || (e & E_XD);
}

/* A result carrying the path's entries, ending at level. */
static struct smmu_result path_result(const struct path *p, unsigned level, int fault)
{
    struct smmu_result r = {.ok = fault == SMMU_FAULT_NONE, .fault = fault, .level = level};
    r.nentries = p->n;
    for (unsigned i = 0; i < p->n; i++)
        r.entries[i] = p->entries[i];
    return r;
}

/* The result for a leaf e at level (already pushed on p), without the
 * access check: pa is the frame base. */
static struct smmu_result leaf_result(const struct smmu *m, const struct path *p, uint64_t e,
                                      unsigned level)
{
    struct smmu_result r = path_result(p, level, SMMU_FAULT_NONE);
    r.page_size = BIT(level_shift(level));
    r.pa = e & E_ADDR & ~(r.page_size - 1);
    r.writable = p->rw;
    r.user = p->us;
    r.executable = !m->nxe || !p->xd;
    r.global = (e & E_G) != 0;
    uint64_t pat = level == SMMU_PT ? E_PAT_4K : E_PAT_HUGE;
    r.pat_index = ((e & pat) ? 4u : 0u) | ((e & E_PCD) ? 2u : 0u) | ((e & E_PWT) ? 1u : 0u);
    uint64_t msr = m->pat ? m->pat : SMMU_PAT_DEFAULT;
    r.memtype = (unsigned)(msr >> (8 * r.pat_index)) & 0xffu;
    return r;
}

/* §4.6.1 with EFLAGS.AC clear and protection keys off. */
static bool access_allowed(const struct smmu *m, const struct smmu_result *r,
                           enum smmu_access access, bool user)
{
    if (user) {
        if (!r->user)
            return false;
        if (access == SMMU_WRITE)
            return r->writable;
        if (access == SMMU_EXEC)
            return r->executable;
        return true;
    }
    if (r->user && (access == SMMU_EXEC ? m->smep : m->smap))
        return false;
    if (access == SMMU_WRITE)
        return r->writable || !m->wp;
    if (access == SMMU_EXEC)
        return r->executable;
    return true;
}

/* CR3 to the top-level table's address; false if it cannot be memory. */
static bool root_table(const struct smmu *m, uint64_t root, uint64_t *table)
{
    *table = root & ~BIT(63) & ~(BIT(12) - 1);
    return (*table & ~(BIT(maxphyaddr(m)) - 1)) == 0;
}

/* Reads entry idx of the table at pa; false if phys() has no memory there. */
static bool read_entry(const struct smmu *m, uint64_t table, unsigned idx, uint64_t *e)
{
    const uint64_t *p = m->phys(m->ctx, table + (uint64_t)idx * 8);
    if (!p)
        return false;
    *e = *p;
    return true;
}

uint64_t smmu_canonical(uint64_t va, bool la57)
{
    unsigned sign = la57 ? 56 : 47;
    uint64_t low = BIT(sign + 1) - 1;
    return (va & BIT(sign)) ? (va | ~low) : (va & low);
}

bool smmu_is_canonical(uint64_t va, bool la57)
{
    return smmu_canonical(va, la57) == va;
}

struct smmu_result smmu_translate(const struct smmu *m, uint64_t root, uint64_t va,
                                  enum smmu_access access, bool user)
{
    struct path p = {.rw = true, .us = true};
    if (!smmu_is_canonical(va, m->la57))
        return path_result(&p, 0, SMMU_FAULT_NON_CANONICAL);
    unsigned level = top_level(m);
    uint64_t table;
    if (!root_table(m, root, &table))
        return path_result(&p, level, SMMU_FAULT_BAD_PHYS);
    uint64_t e;
    for (;; level--) {
        unsigned idx = (unsigned)(va >> level_shift(level)) & (ENTRIES - 1);
        if (!read_entry(m, table, idx, &e))
            return path_result(&p, level, SMMU_FAULT_BAD_PHYS);
        path_push(&p, e);
        if (!(e & E_P))
            return path_result(&p, level, SMMU_FAULT_NOT_PRESENT);
        if (has_reserved_bits(m, e, level))
            return path_result(&p, level, SMMU_FAULT_RESERVED_BIT);
        if (is_leaf(e, level))
            break;
        table = e & E_ADDR;
    }
    struct smmu_result r = leaf_result(m, &p, e, level);
    r.pa |= va & (r.page_size - 1);
    if (!access_allowed(m, &r, access, user)) {
        r.ok = false;
        r.fault = SMMU_FAULT_PROTECTION;
    }
    return r;
}

bool smmu_touch(const struct smmu *m, uint64_t root, uint64_t va)
{
    struct smmu_result r = smmu_translate(m, root, va, SMMU_READ, false);
    if (!r.ok)
        return false;
    unsigned level = top_level(m);
    uint64_t table;
    (void)root_table(m, root, &table); /* smmu_translate read it */
    for (;; level--) {
        unsigned idx = (unsigned)(va >> level_shift(level)) & (ENTRIES - 1);
        /* The machine's memory is the caller's: writable behind phys(). */
        uint64_t *e = (uint64_t *)(uintptr_t)m->phys(m->ctx, table + (uint64_t)idx * 8);
        *e |= E_A;
        if (is_leaf(*e, level))
            return true;
        table = *e & E_ADDR;
    }
}

/* --- smmu_collect ----------------------------------------------------------------------- */

struct collector {
    const struct smmu *m;
    void (*fn)(void *ctx, uint64_t va, const struct smmu_result *r);
    void *fn_ctx;
    size_t leaves;
};

/*
 * Visits the entries of the table at pa (level), which maps u-space
 * [base, base + 512 << level_shift(level)), that overlap the inclusive
 * u-range [lo, hi] (inside the table's region). p: the entries above.
 */
static void collect_table(struct collector *c, uint64_t table, unsigned level, uint64_t base,
                          uint64_t lo, uint64_t hi, const struct path *p)
{
    const struct smmu *m = c->m;
    unsigned shift = level_shift(level);
    unsigned first = (unsigned)((lo - base) >> shift);
    unsigned last = (unsigned)((hi - base) >> shift);
    for (unsigned i = first; i <= last; i++) {
        uint64_t u = base + ((uint64_t)i << shift);
        uint64_t va = smmu_canonical(u, m->la57);
        uint64_t e;
        if (!read_entry(m, table, i, &e)) {
            struct smmu_result r = path_result(p, level, SMMU_FAULT_BAD_PHYS);
            c->fn(c->fn_ctx, smmu_canonical(base, m->la57), &r);
            return;
        }
        if (!(e & E_P))
            continue;
        struct path q = *p;
        path_push(&q, e);
        if (has_reserved_bits(m, e, level)) {
            struct smmu_result r = path_result(&q, level, SMMU_FAULT_RESERVED_BIT);
            c->fn(c->fn_ctx, va, &r);
            continue;
        }
        if (is_leaf(e, level)) {
            struct smmu_result r = leaf_result(m, &q, e, level);
            c->fn(c->fn_ctx, va, &r);
            c->leaves++;
            continue;
        }
        uint64_t end = u + (BIT(shift) - 1);
        collect_table(c, e & E_ADDR, level - 1, u, lo > u ? lo : u, hi < end ? hi : end, &q);
    }
}

size_t smmu_collect(const struct smmu *m, uint64_t root, uint64_t va_start, uint64_t va_end,
                    void (*fn)(void *ctx, uint64_t va, const struct smmu_result *r), void *fn_ctx)
{
    struct collector c = {.m = m, .fn = fn, .fn_ctx = fn_ctx};
    if (va_end != 0 && va_start >= va_end)
        return 0;
    uint64_t last = va_end - 1; /* va_end == 0: the top of the address space */
    unsigned width = m->la57 ? 57 : 48;
    uint64_t half = BIT(width - 1);
    uint64_t upper = ~(half - 1); /* the first canonical upper-half address */
    unsigned top = top_level(m);
    struct path p = {.rw = true, .us = true};
    uint64_t table;
    if (!root_table(m, root, &table)) {
        struct smmu_result r = path_result(&p, top, SMMU_FAULT_BAD_PHYS);
        fn(fn_ctx, 0, &r);
        return 0;
    }
    /* Lower half: u == va. */
    if (va_start < half)
        collect_table(&c, table, top, 0, va_start, last < half ? last : half - 1, &p);
    /* Upper half: u == va with the sign extension stripped. */
    if (last >= upper) {
        uint64_t from = va_start > upper ? va_start : upper;
        uint64_t mask = BIT(width) - 1;
        collect_table(&c, table, top, 0, from & mask, last & mask, &p);
    }
    return c.leaves;
}
