/*
 * soft_mmu.h - an independent software MMU for the tests: walks x86_64 page
 * tables as the CPU does and applies the architectural rules (Intel SDM
 * Vol. 3A §4.5 4-level and 5-level paging, §4.6 access rights, §4.9 PAT), so
 * the library's page-table engine can be checked against it. It shares no
 * code or constants with src/: it is written from the SDM alone.
 *
 * Freestanding (stdint, stddef, stdbool only): linked into the hosted test
 * runner and into the kernel. Not thread-safe against concurrent changes to
 * the tables it walks; otherwise reentrant (no state of its own).
 *
 * The linear address bit split (4-level: 48 bits; LA57: 57 bits):
 *
 *   63      57 56    48 47    39 38    30 29    21 20    12 11        0
 *  | sign ext | PML5  | PML4  | PDPT  |  PD   |  PT   |  offset    |
 *              level 5 level 4 level 3 level 2 level 1
 *                                        1 GiB leaf: offset = 29..0
 *                                               2 MiB leaf: offset = 20..0
 *
 * The entry bits it reads (every level unless said):
 *   0 P, 1 R/W, 2 U/S, 3 PWT, 4 PCD, 7 PS (levels 3, 2; reserved at 5, 4;
 *   PAT at level 1), 8 G (leaves only), 12 PAT (2 MiB / 1 GiB leaves),
 *   MAXPHYADDR-1..12 the frame or table address, 51..MAXPHYADDR reserved,
 *   63 XD (reserved when EFER.NXE is clear). Bits 62..52 are ignored
 *   (protection keys are not modelled: CR4.PKE is taken as clear).
 *
 * Memory types (§11.12.3): a leaf's PAT, PCD and PWT bits select one of the
 * eight entries of IA32_PAT (the PAT index); that entry's memory type is the
 * page's. MTRRs are not modelled (as if they said write-back everywhere, so
 * the PAT type is the effective one), nor are PWT/PCD of CR3 and of the
 * tables above the leaf (they only type the table reads).
 */
#ifndef KTEST_SOFT_MMU_H
#define KTEST_SOFT_MMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The machine: how to read physical memory, and the CPU mode. */
struct smmu {
    /*
     * phys(ctx, pa) - a pointer to the 8 bytes at physical address pa (always
     * 8-byte aligned), or NULL if pa is not memory. A walk that reaches such
     * an entry reports SMMU_FAULT_BAD_PHYS. Called once per entry read, so a
     * test can count reads through it.
     */
    const void *(*phys)(void *ctx, uint64_t pa);
    void *ctx;
    bool la57;           /* CR4.LA57: 5-level paging, 57-bit linear addresses */
    bool nxe;            /* IA32_EFER.NXE: bit 63 is XD; when clear, bit 63 is reserved */
    bool smep;           /* CR4.SMEP */
    bool smap;           /* CR4.SMAP (EFLAGS.AC is taken as clear) */
    bool wp;             /* CR0.WP */
    unsigned maxphyaddr; /* physical address width, 12 < M <= 52; 0 means 52 */
    uint64_t pat;        /* IA32_PAT (MSR 0x277); 0 means its power-on value, SMMU_PAT_DEFAULT */
};

/* IA32_PAT at power-on (§11.12.4): PAT0..7 = WB WT UC- UC WB WT UC- UC. */
#define SMMU_PAT_DEFAULT UINT64_C(0x0007040600070406)

/* Memory types, as IA32_PAT encodes them (§11.12.2; 2 and 3 are reserved). */
enum {
    SMMU_MT_UC = 0,       /* uncacheable (strong) */
    SMMU_MT_WC = 1,       /* write-combining */
    SMMU_MT_WT = 4,       /* write-through */
    SMMU_MT_WP = 5,       /* write-protected */
    SMMU_MT_WB = 6,       /* write-back */
    SMMU_MT_UC_MINUS = 7, /* UC-: uncacheable, MTRR WC may override */
};

enum smmu_access { SMMU_READ, SMMU_WRITE, SMMU_EXEC };

enum smmu_fault {
    SMMU_FAULT_NONE = 0,      /* ok */
    SMMU_FAULT_NOT_PRESENT,   /* P clear in the entry at .level */
    SMMU_FAULT_PROTECTION,    /* translated, but the access is not allowed (§4.6) */
    SMMU_FAULT_RESERVED_BIT,  /* P set and a reserved bit set in the entry at .level */
    SMMU_FAULT_NON_CANONICAL, /* the address is not canonical (a #GP, not a #PF); level 0 */
    SMMU_FAULT_BAD_PHYS,      /* phys() returned NULL for the table at .level */
};

/* Levels, as the result's .level counts them. */
enum { SMMU_PT = 1, SMMU_PD = 2, SMMU_PDPT = 3, SMMU_PML4 = 4, SMMU_PML5 = 5 };

struct smmu_result {
    bool ok;           /* the access is allowed; fault == SMMU_FAULT_NONE */
    int fault;         /* enum smmu_fault */
    unsigned level;    /* where the walk ended: the leaf's level, or the failing entry's */
    unsigned nentries; /* how many entries[] were read (0 if none) */
    /* The fields below are filled when the walk reached a leaf: on success
     * and on SMMU_FAULT_PROTECTION; otherwise they are 0. */
    uint64_t pa;         /* the frame base from the leaf + the offset within the page */
    uint64_t page_size;  /* 4 KiB, 2 MiB or 1 GiB */
    bool writable;       /* R/W set at every level (supervisor writes also pass with WP clear) */
    bool user;           /* U/S set at every level: a user-mode address */
    bool executable;     /* NXE clear, or XD clear at every level (SMEP not applied) */
    bool global;         /* G of the leaf entry (ignored above it) */
    unsigned pat_index;  /* PAT*4 + PCD*2 + PWT of the leaf: the IA32_PAT entry (0..7) */
    unsigned memtype;    /* that entry of m->pat (byte pat_index, as it is: SMMU_MT_*) */
    uint64_t entries[5]; /* the entries read, top level first */
};

/*
 * smmu_translate - translate va for one access as the CPU would, in mode m,
 * with the top-level table at physical address root (CR3: bits 11..0, the
 * PCID or PWT/PCD, and bit 63 are ignored; address bits at or above
 * MAXPHYADDR give SMMU_FAULT_BAD_PHYS at the top level, where the CPU would
 * have refused the CR3 load). user: a CPL 3 access.
 *
 * The walk stops at the first entry that is not present (NOT_PRESENT), that
 * has a reserved bit set (RESERVED_BIT) or whose table phys() cannot read
 * (BAD_PHYS), with .level that entry's level; only a completed walk is
 * checked for access rights (PROTECTION, .level the leaf's). Reserved: bits
 * 51..MAXPHYADDR; bit 63 without NXE; PS at PML5/PML4; bits 20..13 of a
 * 2 MiB leaf and 29..13 of a 1 GiB leaf (address bits below the page size;
 * bit 12 is PAT). 1 GiB pages are taken as supported.
 *
 * Access rights (§4.6; EFLAGS.AC clear, protection keys off):
 *   user read        user address
 *   user write       user address and R/W at every level (WP irrelevant)
 *   user fetch       user address and executable
 *   supervisor read  any address, except a user address under SMAP
 *   supervisor write WP clear: any address; WP set: R/W at every level;
 *                    and not a user address under SMAP
 *   supervisor fetch executable, and not a user address under SMEP
 *
 * Reads at most la57 ? 5 : 4 entries; no side effects (A/D bits are not set:
 * smmu_touch below does that).
 */
struct smmu_result smmu_translate(const struct smmu *m, uint64_t root, uint64_t va,
                                  enum smmu_access access, bool user);

/*
 * smmu_touch - what the CPU does to the tables when it caches the
 * translation of va for a supervisor read (§4.8, §4.10.2.3): sets the
 * accessed flag of every entry the walk uses. Returns false, changing
 * nothing, if such a read would fault. The one call here with a side
 * effect: it writes through phys(), whose memory must be writable.
 */
bool smmu_touch(const struct smmu *m, uint64_t root, uint64_t va);

/* smmu_canonical - va sign-extended from bit 47 (bit 56 with la57). */
uint64_t smmu_canonical(uint64_t va, bool la57);

/* smmu_is_canonical - whether bits 63..47 (63..56 with la57) of va are all equal. */
bool smmu_is_canonical(uint64_t va, bool la57);

/*
 * smmu_collect - call fn for every leaf that maps part of [va_start, va_end),
 * in ascending address order, and return how many leaves there were.
 * va_end == 0 means the end of the address space; the non-canonical hole in
 * the window is skipped. A leaf (4 KiB PTE, 2 MiB PDE or 1 GiB PDPTE) is
 * reported once, with its own base va (which may lie below va_start for a
 * huge page straddling it) and a result as smmu_translate gives for that va,
 * without the access check: ok, pa = the frame base, page_size, the
 * effective rights, pat_index, memtype, entries.
 *
 * A present entry with a reserved bit set, and a table phys() cannot read,
 * is reported instead through fn with ok false, the fault and its level (va
 * is the base of the region the entry maps; for a table, of the region the
 * table maps); its subtree is skipped and it is not counted.
 *
 * Cost: one read per entry of a table the window touches; a not-present
 * entry's subtree costs nothing more (an empty PML4 slot is one read).
 * Preconditions: m->phys set; fn non-NULL.
 */
size_t smmu_collect(const struct smmu *m, uint64_t root, uint64_t va_start, uint64_t va_end,
                    void (*fn)(void *ctx, uint64_t va, const struct smmu_result *r), void *fn_ctx);

#endif /* KTEST_SOFT_MMU_H */
