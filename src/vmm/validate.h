/*
 * validate.h - the checks of the range calls' arguments (map.c): inline,
 * because every call runs them first, and with no side effect: each
 * returns NULL for valid input or says why not, and the caller refuses the
 * call (vm_refuse, vm_misuse) before it changes anything. Private to
 * src/vmm/.
 */
#ifndef KMM_VMM_VALIDATE_H
#define KMM_VMM_VALIDATE_H

#include "internal.h"

#include <kmm/page.h>

#include "pmm/pmm.h"
#include "vmm/vmm.h"

/* Whether as is a live address space (its canary). */
static inline bool vm_is_space(const struct kmm_aspace *as)
{
    return as && as->canary == KMM_ASPACE_CANARY;
}

/* Refuses a call on as with KMM_EINVAL: counted and logged when as is a
 * space (otherwise there is no instance to count it in). Out of line and
 * cold, so that the callers' common path stays short. validate.c. */
__attribute__((cold)) int vm_refuse(const struct kmm_aspace *as, const char *fn, uint64_t va,
                                    uint64_t size, const char *why, const void *caller);

/* Why [va, last], which is not canonical in one half, is not. validate.c. */
__attribute__((cold)) const char *vm_half_problem(const struct kmm_aspace *as, uint64_t va,
                                                  uint64_t last);

/* Checks a range's shape; returns NULL if valid, else why not. */
static inline const char *bad_range(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    if (!vm_is_space(as))
        return "not an address space";
    if ((va | size) & (KMM_PAGE_SIZE - 1))
        return "address or size not page aligned";
    if (size == 0)
        return "size 0";
    uint64_t last = va + size - 1;
    if (last < va)
        return "range wraps around";
    if (!mmu_one_half(&as->mmu, va, last))
        return vm_half_problem(as, va, last);
    if (!as->mmu.kernel && mmu_in_kernel_half(&as->mmu, va))
        return "a user space cannot change the kernel half";
    return 0;
}

/* Checks the gather of an unmap or protect; returns NULL if valid. A gather
 * names the space whose root its shootdown goes to, and the frames it
 * releases are this space's: one begun on another space would invalidate
 * the wrong TLB entries before this space's tables are freed. */
static inline const char *bad_gather(const struct kmm_aspace *as, const struct kmm_tlb_gather *g)
{
    if (!g)
        return "no gather (NULL)";
    if (g->priv.as != as)
        return "the gather was begun on another address space";
    return 0;
}

/* Checks a protection for the range; returns NULL if valid. */
static inline const char *bad_prot(const struct kmm_aspace *as, uint64_t va, unsigned prot)
{
    if ((prot & KMM_PROT_GLOBAL) && (!as->mmu.kernel || (prot & KMM_PROT_USER)))
        return "global mappings are for the kernel space only";
    if ((prot & KMM_PROT_USER) && mmu_in_kernel_half(&as->mmu, va))
        return "user access in the kernel half";
    return 0;
}

#define MAP_FLAGS                                                                                  \
    (KMM_PROT_MASK | KMM_MAP_OWNED | KMM_MAP_REPLACE | KMM_MAP_HUGE | KMM_MAP_HUGE_1G |            \
     KMM_MAP_ALIAS | KMM_CACHE_MASK)

/* The largest physical address an entry can hold (MAXPHYADDR at most 52). */
#define PHYS_LIMIT (UINT64_C(1) << 52)

/* Checks the shape of a map: everything that depends neither on the
 * tables nor on the memory map; returns NULL if valid. */
static inline const char *bad_map(const struct kmm_aspace *as, uint64_t va, uint64_t pa,
                                  uint64_t size, unsigned flags)
{
    const char *why = bad_range(as, va, size);
    if (!why && (pa & (KMM_PAGE_SIZE - 1)))
        why = "physical address not page aligned";
    if (!why && (pa >= PHYS_LIMIT || size > PHYS_LIMIT - pa))
        why = "physical range beyond 52 bits";
    if (!why && (flags & ~MAP_FLAGS))
        why = "unknown flags";
    if (!why && (flags & KMM_CACHE_MASK) > KMM_CACHE_WC)
        why = "unknown cache mode";
    if (!why)
        why = bad_prot(as, va, flags & KMM_PROT_MASK);
    return why;
}

/* What a map reports for an owned frame that is not an allocated single
 * page: found here, or when map.c takes its reference under the frame's
 * zone lock (another CPU may free it in between). */
#define VM_OWNED_NOT_A_PAGE "an owned frame is not an allocated single page"

/* Checks the frames of a map against the memory map and, when owned, the
 * page allocator (racy: map.c takes the references before it changes an
 * entry). Returns KMM_OK or the refusal (counted and logged). */
static inline __attribute__((always_inline)) int check_frames(struct kmm *k, uint64_t va,
                                                              uint64_t pa, uint64_t size,
                                                              unsigned flags, const void *caller)
{
    unsigned cache = flags & KMM_CACHE_MASK;
    uint64_t ram = pmm_ram_bytes(k, pa, size);
    if (!cache && ram != size)
        return vm_misuse(k, KMM_ERANGE, "kmm_vm_map", va, size,
                         "physical range is not RAM (device memory needs a cache mode)", caller);
    if ((flags & KMM_MAP_OWNED) && ram != size)
        return vm_misuse(k, KMM_ERANGE, "kmm_vm_map", va, size, "owned frames must be RAM", caller);
    if (cache && cache != KMM_CACHE_WB && ram && !(flags & KMM_MAP_ALIAS))
        return vm_misuse(k, KMM_EINVAL, "kmm_vm_map", va, size,
                         "RAM in a cache mode other than write-back aliases the direct map "
                         "(KMM_MAP_ALIAS accepts that)",
                         caller);
    if (flags & KMM_MAP_OWNED) {
        for (uint64_t off = 0; off < size; off += KMM_PAGE_SIZE)
            if (!pmm_is_allocated_page(k, pa + off))
                return vm_misuse(k, KMM_ESTATE, "kmm_vm_map", va, size, VM_OWNED_NOT_A_PAGE,
                                 caller);
    }
    return KMM_OK;
}

/* Checks a query's arguments; returns NULL if valid, else why not. Both
 * ends in one canonical half: a walk across the hole between the halves
 * would index the other half's tables with non-canonical addresses. */
static inline const char *bad_query(const struct kmm_aspace *as, uint64_t va, uint64_t limit,
                                    const struct kmm_vm_run *out)
{
    if (!vm_is_space(as))
        return "not an address space";
    if (!out)
        return "NULL result pointer";
    if (va & (KMM_PAGE_SIZE - 1))
        return "address not page aligned";
    if (limit <= va)
        return "limit not above the address";
    if (!mmu_one_half(&as->mmu, va, limit - 1))
        return vm_half_problem(as, va, limit - 1);
    return 0;
}

#endif /* KMM_VMM_VALIDATE_H */
