/*
 * validate.c - how the range calls refuse a caller's mistake: the misuse
 * reports (counted in the instance's table, logged once with the caller),
 * and the cold reasons that validate.h's inline checks leave out of line.
 */
#include "internal.h"

#include "vmm/validate.h"
#include "vmm/vmm.h"

int vm_misuse(struct kmm *k, int err, const char *fn, uint64_t va, uint64_t size, const char *why,
              const void *caller)
{
    return kmm_misuse(k, KMM_LAYER_VM, kmm_misuse_of_error(err), err, caller,
                      "%s(0x%llx, size 0x%llx): %s", fn, (unsigned long long)va,
                      (unsigned long long)size, why);
}

int vm_misuse_handle(struct kmm *k, const char *fn, uint64_t va, uint64_t size, const char *why,
                     const void *caller)
{
    return kmm_misuse(k, KMM_LAYER_VM, KMM_MISUSE_BAD_HANDLE, KMM_EINVAL, caller,
                      "%s(0x%llx, size 0x%llx): %s", fn, (unsigned long long)va,
                      (unsigned long long)size, why);
}

int vm_refuse(const struct kmm_aspace *as, const char *fn, uint64_t va, uint64_t size,
              const char *why, const void *caller)
{
    if (!vm_is_space(as))
        return KMM_EINVAL;
    return vm_misuse(as->k, KMM_EINVAL, fn, va, size, why, caller);
}

const char *vm_half_problem(const struct kmm_aspace *as, uint64_t va, uint64_t last)
{
    if (!mmu_canonical(&as->mmu, va) || !mmu_canonical(&as->mmu, last))
        return "address not canonical";
    return "range crosses between the halves";
}
