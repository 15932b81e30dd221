/*
 * mmu_arch.h - the part of the x86_64 MMU layer the generic vmm sees
 * (through vmm/mmu.h only): the state of one space's tables, and the
 * address-format questions that validating a call asks, inline because
 * every public call asks them. No entry bit here: those are pte.h's,
 * private to this folder.
 *
 * The 64-bit virtual address space; the halves are 2^47 bytes each with 4
 * paging levels, 2^56 with 5 (LA57):
 *
 *   0                   lower_end                   kernel_half          2^64
 *   |==== lower (user) half ====|== non-canonical ==|==== kernel half ====|
 *                          2^47 or 2^56        2^64 - 2^47 or 2^64 - 2^56
 *
 * Addresses in the hole are not canonical: the CPU faults on them, and no
 * range of the library's may reach into it or cross it.
 */
#ifndef KMM_VMM_X86_64_MMU_ARCH_H
#define KMM_VMM_X86_64_MMU_ARCH_H

#include <stdbool.h>
#include <stdint.h>

struct kmm;

/*
 * One space's tables. root and the address figures are fixed at init;
 * counts change under the space's lock. A user space's kernel half is the
 * kernel space's: its top-level entries there link the kernel's tables.
 */
struct mmu_space {
    struct kmm *k;
    uint64_t root;        /* physical address of the top-level table (CR3) */
    uint64_t lower_end;   /* the first address above the lower half */
    uint64_t kernel_half; /* the first address of the kernel half */
    unsigned levels;      /* 4, or 5 with LA57 */
    bool kernel;          /* the kernel space */
    /* The port's kmm_port_tlb_skip_unaccessed, read at init: a leaf
     * cleared with its accessed flag clear needs no invalidation. */
    bool skip_unaccessed;
    struct mmu_counts counts; /* what its own tables hold (vmm/mmu.h) */
};

/* Where mmu_map_page_locked found a free entry; for the commit only. */
struct mmu_cursor {
    void *entry;    /* the entry */
    uint64_t table; /* the page table holding it */
};

/* The size of one half with `levels` paging levels. */
static inline uint64_t mmu_half_size(unsigned levels)
{
    return UINT64_C(1) << (levels == 5 ? 56 : 47);
}

/* The first address of the kernel half with `levels` levels: the top
 * half's size below 2^64. */
static inline uint64_t mmu_kernel_half_for(unsigned levels)
{
    return ~(mmu_half_size(levels) - 1);
}

/* Whether va is canonical with `levels` levels (before a space exists). */
static inline bool mmu_canonical_for(unsigned levels, uint64_t va)
{
    return va < mmu_half_size(levels) || va >= mmu_kernel_half_for(levels);
}

static inline bool mmu_canonical(const struct mmu_space *s, uint64_t va)
{
    return va < s->lower_end || va >= s->kernel_half;
}

static inline bool mmu_in_kernel_half(const struct mmu_space *s, uint64_t va)
{
    return va >= s->kernel_half;
}

/* Whether [va, last] (va <= last) is canonical and lies in one half. */
static inline bool mmu_one_half(const struct mmu_space *s, uint64_t va, uint64_t last)
{
    return va >= s->kernel_half || last < s->lower_end;
}

static inline uint64_t mmu_root(const struct mmu_space *s)
{
    return s->root;
}

#endif /* KMM_VMM_X86_64_MMU_ARCH_H */
