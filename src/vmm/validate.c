/*
 * validate.c - how the range calls refuse a caller's mistake: the misuse
 * reports (counted in the instance's table under the class the caller
 * names, logged once with the caller), and the cold reasons that
 * validate.h's inline checks leave out of line.
 */
#include "internal.h"

#include "vmm/validate.h"
#include "vmm/vmm.h"

int vm_misuse(struct kmm *k, int err, enum kmm_misuse cls, const char *fn, uint64_t va,
              uint64_t size, const char *why, const void *caller)
{
    return kmm_misuse(k, KMM_LAYER_VM, cls, err, caller, "%s(0x%llx, size 0x%llx): %s", fn,
                      (unsigned long long)va, (unsigned long long)size, why);
}

int vm_misuse_handle(struct kmm *k, const char *fn, uint64_t va, uint64_t size, const char *why,
                     const void *caller)
{
    return vm_misuse(k, KMM_EINVAL, KMM_MISUSE_BAD_HANDLE, fn, va, size, why, caller);
}

/* Every refusal of validate.h's checks: its text, class and error value. */
static const struct {
    const char *text;
    enum kmm_misuse cls;
    int err;
} whys[VM_WHYS] = {
#define BAD(why, text, cls) [why] = {text, cls, KMM_EINVAL}
    BAD(VM_VALID, "valid", KMM_MISUSE_BAD_ARG),
    BAD(VM_NOT_A_SPACE, "not an address space", KMM_MISUSE_BAD_HANDLE),
    BAD(VM_UNALIGNED, "address or size not page aligned", KMM_MISUSE_UNALIGNED),
    BAD(VM_SIZE_0, "size 0", KMM_MISUSE_BAD_ARG),
    BAD(VM_WRAPS, "range wraps around", KMM_MISUSE_OUTSIDE),
    BAD(VM_NOT_CANONICAL, "address not canonical", KMM_MISUSE_OUTSIDE),
    BAD(VM_CROSSES_HALVES, "range crosses between the halves", KMM_MISUSE_OUTSIDE),
    BAD(VM_USER_KERNEL_HALF, "a user space cannot change the kernel half", KMM_MISUSE_OUTSIDE),
    BAD(VM_NO_GATHER, "no gather (NULL)", KMM_MISUSE_BAD_ARG),
    BAD(VM_OTHER_GATHER, "the gather was begun on another address space", KMM_MISUSE_BAD_HANDLE),
    BAD(VM_GLOBAL_NOT_KERNEL, "global mappings are for the kernel space only",
        KMM_MISUSE_BAD_FLAGS),
    BAD(VM_USER_IN_KERNEL_HALF, "user access in the kernel half", KMM_MISUSE_BAD_FLAGS),
    BAD(VM_PA_UNALIGNED, "physical address not page aligned", KMM_MISUSE_UNALIGNED),
    BAD(VM_PA_BEYOND, "physical range beyond 52 bits", KMM_MISUSE_OUTSIDE),
    BAD(VM_UNKNOWN_FLAGS, "unknown flags", KMM_MISUSE_BAD_FLAGS),
    BAD(VM_UNKNOWN_CACHE, "unknown cache mode", KMM_MISUSE_BAD_FLAGS),
    BAD(VM_UNKNOWN_PROT, "unknown protection bits", KMM_MISUSE_BAD_FLAGS),
    BAD(VM_NULL_RESULT, "NULL result pointer", KMM_MISUSE_BAD_ARG),
    BAD(VM_VA_UNALIGNED, "address not page aligned", KMM_MISUSE_UNALIGNED),
    BAD(VM_LIMIT_NOT_ABOVE, "limit not above the address", KMM_MISUSE_BAD_ARG),
    BAD(VM_DEMAND_FLAGS,
        "KMM_MAP_DEMAND maps no frame: pa 0, and no OWNED, REPLACE, HUGE, ALIAS or cache mode "
        "other than write-back",
        KMM_MISUSE_BAD_FLAGS),
    BAD(VM_UNKNOWN_ACCESS, "unknown access bits (KMM_FAULT_*)", KMM_MISUSE_BAD_FLAGS),
    BAD(VM_KERNEL_SPACE, "the kernel space cannot be cloned", KMM_MISUSE_BAD_HANDLE),
    BAD(VM_ALIAS,
        "RAM in a cache mode other than write-back aliases the direct map (KMM_MAP_ALIAS "
        "accepts that)",
        KMM_MISUSE_BAD_FLAGS),
#undef BAD
    [VM_NOT_RAM] = {"physical range is not RAM (device memory needs a cache mode)",
                    KMM_MISUSE_OUTSIDE, KMM_ERANGE},
    [VM_OWNED_NOT_RAM] = {"owned frames must be RAM", KMM_MISUSE_OUTSIDE, KMM_ERANGE},
    [VM_OWNED_NOT_PAGE] = {"an owned frame is not an allocated single page", KMM_MISUSE_NOT_BLOCK,
                           KMM_ESTATE},
    [VM_FRAME_MAPS_MAX] = {"an owned frame has the most owned mappings a frame can",
                           KMM_MISUSE_LIMIT, KMM_ESTATE},
};

int vm_refuse(const struct kmm_aspace *as, enum vm_why why, const char *fn, uint64_t va,
              uint64_t size, const void *caller)
{
    if (!vm_is_space(as))
        return KMM_EINVAL;
    KMM_ASSERT(as->k->port, why > VM_VALID && why < VM_WHYS);
    return vm_misuse(as->k, whys[why].err, whys[why].cls, fn, va, size, whys[why].text, caller);
}

enum vm_why vm_half_problem(const struct kmm_aspace *as, uint64_t va, uint64_t last)
{
    if (!mmu_canonical(&as->mmu, va) || !mmu_canonical(&as->mmu, last))
        return VM_NOT_CANONICAL;
    return VM_CROSSES_HALVES;
}
