/*
 * validate.h - the checks of the range calls' arguments (map.c): inline,
 * because every call runs them first, and with no side effect: each
 * returns VM_VALID for valid input or names why not (enum vm_why), and
 * the caller refuses the call (vm_refuse, vm_misuse) before it changes
 * anything. Private to src/vmm/.
 */
#ifndef KMM_VMM_VALIDATE_H
#define KMM_VMM_VALIDATE_H

#include "internal.h"

#include <kmm/page.h>

#include "pmm/api.h"
#include "vmm/vmm.h"

/* Whether as is a live address space (its canary). */
static inline bool vm_is_space(const struct kmm_aspace *as)
{
    return as && as->canary == KMM_ASPACE_CANARY;
}

/*
 * Why a check refuses its input: one name per refusal, each with its text
 * and the class of mistake it is counted under (the table in validate.c).
 * Classes mean what they mean in the page layer (kmm/misuse.h): an address
 * or size not page aligned is UNALIGNED; an address outside what the call
 * manages (not canonical, across the halves, wrapping, beyond 52 bits, the
 * kernel half from a user space) OUTSIDE; an unknown or conflicting flag,
 * protection or cache mode BAD_FLAGS; a NULL, zero or otherwise malformed
 * argument BAD_ARG; a gather of another space BAD_HANDLE; an owned frame
 * that is no allocated single page NOT_BLOCK, one with the most owned
 * mappings a frame can LIMIT. A plain enum, so
 * that a refusal travels in one register and the callers' common path
 * stays short.
 */
enum vm_why {
    VM_VALID,
    VM_NOT_A_SPACE,
    VM_UNALIGNED,
    VM_SIZE_0,
    VM_WRAPS,
    VM_NOT_CANONICAL,
    VM_CROSSES_HALVES,
    VM_USER_KERNEL_HALF,
    VM_NO_GATHER,
    VM_OTHER_GATHER,
    VM_GLOBAL_NOT_KERNEL,
    VM_USER_IN_KERNEL_HALF,
    VM_PA_UNALIGNED,
    VM_PA_BEYOND,
    VM_UNKNOWN_FLAGS,
    VM_UNKNOWN_CACHE,
    VM_UNKNOWN_PROT,
    VM_NULL_RESULT,
    VM_VA_UNALIGNED,
    VM_LIMIT_NOT_ABOVE,
    VM_NOT_RAM,
    VM_OWNED_NOT_RAM,
    VM_ALIAS,
    VM_OWNED_NOT_PAGE,
    VM_DEMAND_FLAGS,
    VM_UNKNOWN_ACCESS,
    VM_KERNEL_SPACE,
    VM_FRAME_MAPS_MAX,
    VM_WHYS
};

/* Refuses a call on as for why: returns its error value (KMM_EINVAL but
 * for the frames' refusals), counted under its class when as is a space
 * (otherwise there is no instance to count it in). Out of line and cold,
 * so that the callers' common path stays short. validate.c. */
__attribute__((cold)) int vm_refuse(const struct kmm_aspace *as, enum vm_why why, const char *fn,
                                    uint64_t va, uint64_t size, const void *caller);

/* Why [va, last], which is not canonical in one half, is not. validate.c. */
__attribute__((cold)) enum vm_why vm_half_problem(const struct kmm_aspace *as, uint64_t va,
                                                  uint64_t last);

/* Checks a range's shape. */
static inline enum vm_why bad_range(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    if (!vm_is_space(as))
        return VM_NOT_A_SPACE;
    if ((va | size) & (KMM_PAGE_SIZE - 1))
        return VM_UNALIGNED;
    if (size == 0)
        return VM_SIZE_0;
    uint64_t last = va + size - 1;
    if (last < va)
        return VM_WRAPS;
    if (!mmu_one_half(&as->mmu, va, last))
        return vm_half_problem(as, va, last);
    if (!as->mmu.kernel && mmu_in_kernel_half(&as->mmu, va))
        return VM_USER_KERNEL_HALF;
    return VM_VALID;
}

/* Checks the gather of an unmap or protect. A gather names the space whose
 * root its shootdown goes to, and the frames it releases are this space's:
 * one begun on another space would invalidate the wrong TLB entries before
 * this space's tables are freed. */
static inline enum vm_why bad_gather(const struct kmm_aspace *as, const struct kmm_tlb_gather *g)
{
    if (!g)
        return VM_NO_GATHER;
    if (g->priv.as != as)
        return VM_OTHER_GATHER;
    return VM_VALID;
}

/* Checks a protection for the range. */
static inline enum vm_why bad_prot(const struct kmm_aspace *as, uint64_t va, unsigned prot)
{
    if ((prot & KMM_PROT_GLOBAL) && (!as->mmu.kernel || (prot & KMM_PROT_USER)))
        return VM_GLOBAL_NOT_KERNEL;
    if ((prot & KMM_PROT_USER) && mmu_in_kernel_half(&as->mmu, va))
        return VM_USER_IN_KERNEL_HALF;
    return VM_VALID;
}

#define MAP_FLAGS                                                                                  \
    (KMM_PROT_MASK | KMM_MAP_OWNED | KMM_MAP_REPLACE | KMM_MAP_HUGE | KMM_MAP_HUGE_1G |            \
     KMM_MAP_ALIAS | KMM_MAP_DEMAND | KMM_CACHE_MASK)

/* What KMM_MAP_DEMAND refuses beside it: it maps no frame now, and RAM
 * (write-back) later (map.c's map_demand checks, after bad_map). */
#define DEMAND_REFUSES                                                                             \
    (KMM_MAP_OWNED | KMM_MAP_REPLACE | KMM_MAP_HUGE | KMM_MAP_HUGE_1G | KMM_MAP_ALIAS)

/* The largest physical address an entry can hold (MAXPHYADDR at most 52). */
#define PHYS_LIMIT (UINT64_C(1) << 52)

/* Checks the shape of a map: everything that depends neither on the
 * tables nor on the memory map. */
static inline enum vm_why bad_map(const struct kmm_aspace *as, uint64_t va, uint64_t pa,
                                  uint64_t size, unsigned flags)
{
    enum vm_why why = bad_range(as, va, size);
    if (why)
        return why;
    if (pa & (KMM_PAGE_SIZE - 1))
        return VM_PA_UNALIGNED;
    if (pa >= PHYS_LIMIT || size > PHYS_LIMIT - pa)
        return VM_PA_BEYOND;
    if (flags & ~MAP_FLAGS)
        return VM_UNKNOWN_FLAGS;
    if ((flags & KMM_CACHE_MASK) > KMM_CACHE_WC)
        return VM_UNKNOWN_CACHE;
    return bad_prot(as, va, flags & KMM_PROT_MASK);
}

/* Checks the frames of a map against the memory map and, when owned, the
 * page allocator (racy: map.c takes the references under the frames' zone
 * locks before it changes an entry, and refuses VM_OWNED_NOT_PAGE then if
 * another CPU freed one in between). */
static inline __attribute__((always_inline)) enum vm_why
bad_frames(const struct kmm_aspace *as, uint64_t pa, uint64_t size, unsigned flags)
{
    unsigned cache = flags & KMM_CACHE_MASK;
    uint64_t ram = size == KMM_PAGE_SIZE ? pmm_ram_page(as->k, pa) : pmm_ram_bytes(as->k, pa, size);
    if (!cache && ram != size)
        return VM_NOT_RAM;
    if ((flags & KMM_MAP_OWNED) && ram != size)
        return VM_OWNED_NOT_RAM;
    if (cache && cache != KMM_CACHE_WB && ram && !(flags & KMM_MAP_ALIAS))
        return VM_ALIAS;
    if (flags & KMM_MAP_OWNED) {
        for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE)
            if (!pmm_is_allocated_page(as->k, pa + off))
                return VM_OWNED_NOT_PAGE;
    }
    return VM_VALID;
}

/* Checks a query's arguments. Both ends in one canonical half: a walk
 * across the hole between the halves would index the other half's tables
 * with non-canonical addresses. */
static inline enum vm_why bad_query(const struct kmm_aspace *as, uint64_t va, uint64_t limit,
                                    const struct kmm_vm_run *out)
{
    if (!vm_is_space(as))
        return VM_NOT_A_SPACE;
    if (!out)
        return VM_NULL_RESULT;
    if (va & (KMM_PAGE_SIZE - 1))
        return VM_VA_UNALIGNED;
    if (limit <= va)
        return VM_LIMIT_NOT_ABOVE;
    if (!mmu_one_half(&as->mmu, va, limit - 1))
        return vm_half_problem(as, va, limit - 1);
    return VM_VALID;
}

#endif /* KMM_VMM_VALIDATE_H */
