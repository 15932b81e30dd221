/*
 * pte.h - everything that knows the x86_64 page-table entry format.
 * Private to src/vmm/x86_64/: the generic vmm reaches the tables through
 * vmm/mmu.h and never sees an entry.
 *
 * A virtual address (4-level paging; 5-level adds PML5 above, bits 56..48):
 *
 *   63        48 47     39 38     30 29     21 20     12 11          0
 *  +------------+---------+---------+---------+---------+-------------+
 *  | sign ext.  | PML4    | PDPT    | PD      | PT      | offset      |
 *  +------------+---------+---------+---------+---------+-------------+
 *                  level 4   level 3   level 2   level 1
 *
 * Each table is one 4 KiB page of 512 eight-byte entries. Levels count up
 * from the leaf: level 1 (PT) maps 4 KiB pages, a level-2 (PD) entry with PS
 * maps 2 MiB, a level-3 (PDPT) entry with PS maps 1 GiB. An address is
 * canonical when bits 63..47 (63..56 with LA57) are all equal.
 *
 * An entry:
 *   bit 0 P present       bit 1 RW writable      bit 2 US user
 *   bit 3 PWT             bit 4 PCD              bit 5 A accessed
 *   bit 6 D dirty         bit 7 PS (levels 2, 3) / PAT (level 1)
 *   bit 8 G global        bits 9..11 (ignored by the CPU): kmm's own, below
 *   bits 12..51 frame     bit 52 (ignored) kmm's own     bit 63 XD execute-disable
 * A leaf with PS (a 2 MiB or 1 GiB page) has its PAT bit at 12 instead, and
 * its frame from bit 21 (30) up. Access rights combine across levels: user
 * needs US everywhere, write needs RW everywhere, XD anywhere forbids
 * execution.
 *
 * Cache modes pick one of the eight IA32_PAT entries with PAT:PCD:PWT
 * (KMM_PAT_VALUE in kmm/vm.h): WB 0, WT 1 (PWT), UC 3 (PCD PWT), WC 4 (PAT).
 */
#ifndef KMM_VMM_X86_64_PTE_H
#define KMM_VMM_X86_64_PTE_H

#include <stdbool.h>
#include <stdint.h>

#include <kmm/vm.h> /* KMM_PROT_* */

typedef uint64_t pte_t;

#define PTE_P     (UINT64_C(1) << 0)
#define PTE_RW    (UINT64_C(1) << 1)
#define PTE_US    (UINT64_C(1) << 2)
#define PTE_PWT   (UINT64_C(1) << 3)
#define PTE_PCD   (UINT64_C(1) << 4)
#define PTE_A     (UINT64_C(1) << 5)
#define PTE_D     (UINT64_C(1) << 6)
#define PTE_PS    (UINT64_C(1) << 7)
#define PTE_G     (UINT64_C(1) << 8)
#define PTE_XD    (UINT64_C(1) << 63)
#define PTE_PAT4K (UINT64_C(1) << 7)           /* PAT in a 4 KiB leaf (where PS is elsewhere) */
#define PTE_PATPS (UINT64_C(1) << 12)          /* PAT in a 2 MiB or 1 GiB leaf */
#define PTE_FRAME UINT64_C(0x000ffffffffff000) /* bits 12..51 */

/*
 * Software bits: the CPU ignores bits 9..11 and 52..58 of a present leaf,
 * and every bit but P of an entry that is not present.
 *
 *   OWNED  (9)   present 4 KiB leaf: it holds a reference on its frame
 *                (KMM_MAP_OWNED, a fault's page, a clone's share).
 *   COW    (10)  present owned 4 KiB leaf whose frame a clone may share:
 *                RW is clear whatever the protection, and a write faults
 *                into kmm_vm_fault, which copies the frame (or, the last
 *                mapping of it, takes it back writable).
 *   WRITE  (52)  on a COW leaf only: the mapping's write right, which RW
 *                cannot show while the frame may be shared.
 *   DEMAND (11)  an entry that is NOT present: a demand-zero page
 *                (KMM_MAP_DEMAND). No frame; RW, US, G, XD and the cache
 *                bits hold what the first touch maps (an owned zeroed page).
 *
 *   present 4 KiB leaf:   | XD | .. | W52 | frame | .. | COW | OWNED | G | .. | P=1 |
 *   demand-zero entry:    | XD | 0  | 0   | 0     | DEMAND=1 | 0 | 0 | G | .. | P=0 |
 *
 * An entry is in use (counted in its table, refused by a map, removed by
 * an unmap) when it is present or demand-zero; every other entry is 0.
 */
#define PTE_SW_OWNED  (UINT64_C(1) << 9)
#define PTE_SW_COW    (UINT64_C(1) << 10)
#define PTE_SW_DEMAND (UINT64_C(1) << 11)
#define PTE_SW_WRITE  (UINT64_C(1) << 52)

#define PTE_ENTRIES     512
#define PTE_LEVEL_SHIFT 9

/* The lowest address bit a level's index covers: 12, 21, 30, 39, 48. */
static inline unsigned pte_level_shift(unsigned level)
{
    return 12 + PTE_LEVEL_SHIFT * (level - 1);
}

/* The index of va in a table of the level (1 = PT ... 5 = PML5). */
static inline unsigned pte_index(uint64_t va, unsigned level)
{
    return (unsigned)(va >> pte_level_shift(level)) & (PTE_ENTRIES - 1);
}

/* Bytes one entry of the level covers: 4 KiB, 2 MiB, 1 GiB, 512 GiB, 256 TiB. */
static inline uint64_t pte_level_size(unsigned level)
{
    return UINT64_C(1) << pte_level_shift(level);
}

/* The level of the largest leaf: 3 (1 GiB pages). */
#define PTE_MAX_LEAF_LEVEL 3

/* Writes an entry with one 8-byte store: the CPU's page walker may read it
 * at any moment, and must never see half of an old and half of a new entry
 * (a plain assignment leaves the compiler free to split or repeat it). */
static inline void pte_set(pte_t *e, pte_t v)
{
    __atomic_store_n(e, v, __ATOMIC_RELAXED);
}

/* Links a table that was just filled: a release store, so that a CPU (or
 * a lockless reader) that sees the link also sees the table's entries. */
static inline void pte_publish(pte_t *e, pte_t v)
{
    __atomic_store_n(e, v, __ATOMIC_RELEASE);
}

static inline bool pte_present(pte_t e)
{
    return (e & PTE_P) != 0;
}

/* Whether e is in use: present, or a demand-zero page (PTE_SW_DEMAND). */
static inline bool pte_used(pte_t e)
{
    return (e & (PTE_P | PTE_SW_DEMAND)) != 0;
}

/* Whether e is a demand-zero page not touched yet. */
static inline bool pte_demand(pte_t e)
{
    return (e & (PTE_P | PTE_SW_DEMAND)) == PTE_SW_DEMAND;
}

/* Whether e is a present copy-on-write leaf. */
static inline bool pte_cow(pte_t e)
{
    return (e & (PTE_P | PTE_SW_COW)) == (PTE_P | PTE_SW_COW);
}

/* Whether entry e of a level above 1 links a lower table: present, and no
 * PS (which would make it a huge leaf). At level 1 every entry is a leaf. */
static inline bool pte_links_table(pte_t e)
{
    return (e & (PTE_P | PTE_PS)) == PTE_P;
}

/* Whether e holds a reference on its frame (PTE_SW_OWNED). */
static inline bool pte_owned(pte_t e)
{
    return (e & PTE_SW_OWNED) != 0;
}

/* The frame of a 4 KiB leaf or of a table entry. */
static inline uint64_t pte_frame(pte_t e)
{
    return e & PTE_FRAME;
}

/* Whether a present entry of the level maps memory (rather than a table). */
static inline bool pte_is_leaf(pte_t e, unsigned level)
{
    return level == 1 || (e & PTE_PS) != 0;
}

/* The first physical address of a leaf of the level. */
static inline uint64_t pte_leaf_frame(pte_t e, unsigned level)
{
    return e & PTE_FRAME & ~(pte_level_size(level) - 1);
}

/* The PAT:PCD:PWT bits of a cache mode in a leaf of the level. */
static inline pte_t pte_cache_bits(unsigned cache, unsigned level)
{
    if (cache <= KMM_CACHE_WB) /* the common case: PAT entry 0 */
        return 0;
    switch (cache) {
    case KMM_CACHE_WT:
        return PTE_PWT;
    case KMM_CACHE_UC:
        return PTE_PCD | PTE_PWT;
    case KMM_CACHE_WC:
        return level == 1 ? PTE_PAT4K : PTE_PATPS;
    default:
        return 0;
    }
}

/* The cache mode (KMM_CACHE_*) of a leaf of the level, read back through
 * KMM_PAT_VALUE: entries 5..7 repeat 1..3, and UC- (2, 6) counts as UC. */
static inline unsigned pte_cache(pte_t e, unsigned level)
{
    unsigned pat = (e & (level == 1 ? PTE_PAT4K : PTE_PATPS)) != 0;
    unsigned index = pat << 2 | (unsigned)((e & PTE_PCD) != 0) << 1 | ((e & PTE_PWT) != 0);
    static const unsigned mode[8] = {KMM_CACHE_WB, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_UC,
                                     KMM_CACHE_WC, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_UC};
    return mode[index];
}

/* The entry of a 4 KiB leaf mapping pa with prot (KMM_PROT_*). Readable is implied by
 * present: x86 has no write-only or execute-only pages. */
static inline pte_t pte_leaf(uint64_t pa, unsigned prot)
{
    /* Each right moved to its bit without a branch (the asserts hold the
     * distances the shifts assume). */
    _Static_assert(KMM_PROT_WRITE == PTE_RW, "write is RW");
    _Static_assert(KMM_PROT_USER == PTE_US << 1, "user is US, one bit up");
    _Static_assert(KMM_PROT_GLOBAL << 4 == PTE_G, "global is G, four bits down");
    _Static_assert((pte_t)KMM_PROT_EXEC << 61 == PTE_XD, "not exec is XD, 61 bits down");
    return (pa & PTE_FRAME) | PTE_P | (prot & KMM_PROT_WRITE) | (prot & KMM_PROT_USER) >> 1 |
           (pte_t)(prot & KMM_PROT_GLOBAL) << 4 | (pte_t)(~prot & KMM_PROT_EXEC) << 61;
}

/* A leaf of the level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) mapping pa with prot
 * and cache mode (KMM_CACHE_*). pa must be aligned to the leaf's size. */
static inline pte_t pte_make_leaf(uint64_t pa, unsigned prot, unsigned cache, unsigned level)
{
    return pte_leaf(pa, prot) | pte_cache_bits(cache, level) | (level > 1 ? PTE_PS : 0);
}

/* A leaf (or demand-zero entry) with its rights (RW, US, G, XD) replaced
 * by prot's: frame, size, cache mode and software bits stay. A COW leaf
 * keeps RW clear and its write right goes to PTE_SW_WRITE. */
static inline pte_t pte_with_prot(pte_t e, unsigned prot)
{
    pte_t rights = pte_leaf(0, prot) & ~PTE_P;
    if (pte_cow(e))
        rights = (rights & ~PTE_RW) | ((prot & KMM_PROT_WRITE) ? PTE_SW_WRITE : 0);
    return (e & ~(PTE_RW | PTE_US | PTE_G | PTE_XD | PTE_SW_WRITE)) | rights;
}

/* The demand-zero entry for prot and cache mode (4 KiB). */
static inline pte_t pte_make_demand(unsigned prot, unsigned cache)
{
    return (pte_make_leaf(0, prot, cache, 1) & ~PTE_P) | PTE_SW_DEMAND;
}

/* The present owned leaf a demand-zero entry d becomes with frame pa. */
static inline pte_t pte_demand_filled(pte_t d, uint64_t pa)
{
    return (d & ~PTE_SW_DEMAND) | (pa & PTE_FRAME) | PTE_P | PTE_SW_OWNED;
}

/* Leaf e (present, owned, 4 KiB) marked copy-on-write: RW moves to
 * PTE_SW_WRITE. A COW leaf stays as it is. */
static inline pte_t pte_make_cow(pte_t e)
{
    if (pte_cow(e))
        return e;
    return (e & ~PTE_RW) | PTE_SW_COW | ((e & PTE_RW) ? PTE_SW_WRITE : 0);
}

/* COW leaf e made private again with frame pa: writable if it has the
 * write right, no longer COW. */
static inline pte_t pte_cow_resolved(pte_t e, uint64_t pa)
{
    pte_t w = (e & PTE_SW_WRITE) ? PTE_RW : 0;
    return (e & ~(PTE_FRAME | PTE_SW_COW | PTE_SW_WRITE)) | (pa & PTE_FRAME) | w;
}

/* The first of the 512 entries a leaf of the level splits into (level - 1
 * leaves with the same rights and cache mode; entry i adds i times their
 * size): a 4 KiB leaf has no PS and its PAT bit at 7, not 12. */
static inline pte_t pte_split_first(pte_t e, unsigned level)
{
    pte_t child = e;
    if (level == 2) {
        child &= ~(PTE_PS | PTE_PATPS);
        if (e & PTE_PATPS)
            child |= PTE_PAT4K;
    }
    return child;
}

/* The protection (KMM_PROT_*) of a leaf entry as the CPU applies it (a
 * COW leaf's write right not included). */
static inline unsigned pte_hw_prot(pte_t e)
{
    unsigned prot = KMM_PROT_READ;
    if (e & PTE_RW)
        prot |= KMM_PROT_WRITE;
    if (e & PTE_US)
        prot |= KMM_PROT_USER;
    if (e & PTE_G)
        prot |= KMM_PROT_GLOBAL;
    if (!(e & PTE_XD))
        prot |= KMM_PROT_EXEC;
    return prot;
}

/* The protection (KMM_PROT_*) of a leaf or demand-zero entry: the
 * mapping's, a COW leaf's write right included. */
static inline unsigned pte_prot(pte_t e)
{
    return pte_hw_prot(e) | ((e & PTE_SW_WRITE) ? KMM_PROT_WRITE : 0);
}

/* The entry linking to a lower table. Intermediate entries grant writing
 * and execution, so the leaf alone decides and changing one page's
 * protection never touches the upper levels. They grant user access only in
 * the user half: a kernel leaf that wrongly carried US would still be
 * closed to user mode by its tables. */
static inline pte_t pte_table(uint64_t table_pa, bool user_half)
{
    return (table_pa & PTE_FRAME) | PTE_P | PTE_RW | (user_half ? PTE_US : 0);
}

/* Whether going from old to new takes a right away (a TLB entry of the old
 * one would allow something the new one does not): the cases that need an
 * invalidation before the change is safe. Adding rights needs none. */
static inline bool pte_downgrade(pte_t old, pte_t new)
{
    if (!pte_present(old))
        return false;
    const pte_t kept = PTE_FRAME | PTE_PS | PTE_PCD | PTE_PWT; /* PS is PAT4K at level 1 */
    if (!pte_present(new) || (old & kept) != (new &kept))
        return true; /* another frame, size or cache mode */
    return ((old & PTE_RW) && !(new &PTE_RW)) || ((old & PTE_US) && !(new &PTE_US)) ||
           (!(old & PTE_XD) && (new &PTE_XD)) || ((old & PTE_G) != (new &PTE_G));
}

#endif /* KMM_VMM_X86_64_PTE_H */
