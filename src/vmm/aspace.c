/*
 * aspace.c - address spaces: the kernel space and user spaces, their
 * statistics, and the vmm's part of kmm_check. The tables themselves are
 * the arch layer's (vmm/mmu.h): a space here is its identity, its lock and
 * its place on the instance's list of spaces.
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"):
 *     0 space list lock  ->  1 a space's lock      (vmm_check: each space in turn)
 * kmm_aspace_create and kmm_aspace_destroy take the list lock alone; a
 * destroyed space's tables and frames go back (-> 4, 6) with no lock held.
 */
#include "internal.h"

#include <kmm/check.h>
#include <kmm/page.h>

#include "pmm/api.h"
#include "vmm/validate.h"
#include "vmm/vmm.h"

KMM_INIT unsigned vmm_init_pages(void)
{
    return mmu_kernel_tables();
}

static void aspace_init(struct kmm_aspace *as, struct kmm *k)
{
    __builtin_memset(as, 0, sizeof(*as));
    as->k = k;
    kmm_lock_init(&as->lock);
    atomic_init(&as->pending_gathers, 0);
    as->canary = KMM_ASPACE_CANARY;
}

KMM_INIT void vmm_init(struct kmm *k, unsigned levels)
{
    struct kmm_vm *vm = &k->vm;
    vm->levels = levels;
    kmm_lock_init(&vm->list_lock);
    vm->spaces = 0;
    aspace_init(&vm->kernel, k);
    struct vmm_tables t = {0, 0};
    bool filled = vmm_tables_fill(k, &t, mmu_kernel_tables(), 0);
    KMM_ASSERT(k->port, filled); /* kmm_init left vmm_init_pages() pages free */
    mmu_init_kernel(&vm->kernel.mmu, k, levels, &t);
}

struct kmm_aspace *kmm_kernel_aspace(struct kmm *k)
{
    return &k->vm.kernel;
}

/* A new user space, on no list yet: nobody else can reach it. Returns it,
 * or NULL (nothing allocated). */
static struct kmm_aspace *space_new(struct kmm *k)
{
    struct vmm_tables t = {0, 0};
    uint64_t self = kmm_page_alloc(k, 0, KMM_GFP_ZERO);
    if (!self || !vmm_tables_fill(k, &t, 1, 0)) {
        vmm_tables_release(k, &t);
        if (self)
            KMM_MUST(k->port, kmm_page_free(k, self, 0));
        return 0;
    }
    struct kmm_aspace *as = kmm_phys_to_virt(k, self);
    aspace_init(as, k);
    as->self_pa = self;
    mmu_init_user(&as->mmu, &k->vm.kernel.mmu, &t);
    return as;
}

/* Frees a space that is on no list (its tables, owned frames' references,
 * and itself). Nothing is invalidated: no CPU has used it. */
static void space_free(struct kmm *k, struct kmm_aspace *as)
{
    mmu_destroy(&as->mmu);
    as->canary = 0;
    KMM_MUST(k->port, kmm_page_free(k, as->self_pa, 0));
}

static void space_link(struct kmm *k, struct kmm_aspace *as)
{
    kmm_irqstate_t s = kmm_lock_irqsave(&k->vm.list_lock);
    as->next = k->vm.spaces;
    k->vm.spaces = as;
    kmm_unlock_irqrestore(&k->vm.list_lock, s);
}

int kmm_aspace_create(struct kmm *k, struct kmm_aspace **out)
{
    struct kmm_aspace *as = space_new(k);
    if (!as)
        return KMM_ENOMEM;
    space_link(k, as);
    *out = as;
    return KMM_OK;
}

/* --- clone ---------------------------------------------------------------------------------- */

bool vmm_share_owned(struct kmm *k, uint64_t pa)
{
    return pmm_page_map_get(k, pa);
}

static int count_clone(const struct mmu_space *s, const void *op)
{
    (void)op;
    return (int)mmu_clone_tables(s);
}

/*
 * seL4's order: everything that can fail first, with the parent untouched
 * (the child's space and root, then its tables, counted under the parent's
 * lock and set aside, then under that same lock hold the copy, whose only
 * failure is a frame's mapping limit and leaves the parent as it was);
 * then the parent's marking, which cannot fail. The child is linked on
 * the space list only at the end, so nobody sees it half built.
 */
int kmm_aspace_clone(struct kmm_aspace *parent, struct kmm_aspace **out)
{
    const void *caller = __builtin_return_address(0);
    enum vm_why why = !vm_is_space(parent)              ? VM_NOT_A_SPACE
                      : parent == &parent->k->vm.kernel ? VM_KERNEL_SPACE
                      : !out                            ? VM_NULL_RESULT
                                                        : VM_VALID;
    if (why)
        return vm_refuse(parent, why, "kmm_aspace_clone", 0, 0, caller);
    struct kmm *k = parent->k;
    struct kmm_aspace *child = space_new(k);
    if (!child)
        return KMM_ENOMEM;
    struct vmm_tables t = {0, 0};
    kmm_irqstate_t irq;
    if (vmm_lock_with_tables(parent, &t, count_clone, 0, &irq) != KMM_OK) {
        space_free(k, child);
        return KMM_ENOMEM;
    }
    if (!mmu_clone_copy_locked(&parent->mmu, &child->mmu, &t)) {
        kmm_unlock_irqrestore(&parent->lock, irq);
        vmm_tables_release(k, &t);
        space_free(k, child);
        return vm_refuse(parent, VM_FRAME_MAPS_MAX, "kmm_aspace_clone", 0, 0, caller);
    }
    struct kmm_tlb_gather g;
    kmm_tlb_gather_init(&g, parent);
    mmu_clone_mark_locked(&parent->mmu, &g);
    parent->faults.clones++;
    kmm_unlock_irqrestore(&parent->lock, irq);
    vmm_tables_release(k, &t); /* more than needed if the parent lost tables meanwhile */
    kmm_tlb_finish(&g);
    space_link(k, child);
    *out = child;
    return KMM_OK;
}

void vmm_free_table(struct kmm *k, uint64_t pa)
{
    pmm_table_free(k, pa);
}

void vmm_drop_owned(struct kmm *k, uint64_t pa)
{
    pmm_page_map_put(k, pa);
}

/* Takes as off k's list of user spaces. Returns why it cannot be (NULL when
 * done; *busy set when the refusal is a gather still holding the space's
 * work): only a live user space of this instance is on the list, so the
 * lookup never reads through a pointer that is not one. */
static const char *unlink_space(struct kmm *k, struct kmm_aspace *as, bool *busy)
{
    *busy = false;
    if (as == &k->vm.kernel)
        return "the kernel space cannot be destroyed";
    const char *why = "not a user space of this instance (destroyed already, or another's)";
    kmm_irqstate_t s = kmm_lock_irqsave(&k->vm.list_lock);
    for (struct kmm_aspace **link = &k->vm.spaces; *link; link = &(*link)->next) {
        if (*link != as)
            continue;
        if (as->canary != KMM_ASPACE_CANARY) {
            why = "the space's canary is overwritten";
        } else if (atomic_load_explicit(&as->pending_gathers, memory_order_acquire)) {
            why = "a gather still holds its invalidations (kmm_tlb_finish it first)";
            *busy = true;
        } else {
            why = 0;
            *link = as->next;
        }
        break;
    }
    kmm_unlock_irqrestore(&k->vm.list_lock, s);
    return why;
}

int kmm_aspace_destroy(struct kmm *k, struct kmm_aspace *as)
{
    if (!k)
        return KMM_EINVAL;
    const void *caller = __builtin_return_address(0);
    if (!as)
        return vm_misuse(k, KMM_EINVAL, KMM_MISUSE_BAD_ARG, "kmm_aspace_destroy", 0, 0,
                         "NULL space", caller);
    bool busy;
    const char *why = unlink_space(k, as, &busy);
    if (busy)
        return vm_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_aspace_destroy",
                         (uint64_t)(uintptr_t)as, 0, why, caller);
    if (why)
        return vm_misuse_handle(k, "kmm_aspace_destroy", (uint64_t)(uintptr_t)as, 0, why, caller);
    space_free(k, as);
    return KMM_OK;
}

void kmm_aspace_activate(struct kmm_aspace *as)
{
    kmm_port_load_root(as->k->port, mmu_root(&as->mmu));
}

uint64_t kmm_aspace_root(const struct kmm_aspace *as)
{
    return mmu_root(&as->mmu);
}

int kmm_vm_stats(struct kmm_aspace *as, struct kmm_vm_stats *out)
{
    if (!vm_is_space(as) || !out) { /* a stale handle's lock may be anything now */
        if (out)
            *out = (struct kmm_vm_stats){0};
        return vm_refuse(as, VM_NULL_RESULT, "kmm_vm_stats", 0, 0, __builtin_return_address(0));
    }
    kmm_irqstate_t s = kmm_lock_irqsave(&as->lock);
    const struct mmu_counts *c = &as->mmu.counts;
    *out = (struct kmm_vm_stats){.mapped_pages = c->leaves[MMU_PAGE_4K],
                                 .mapped_2m = c->leaves[MMU_PAGE_2M],
                                 .mapped_1g = c->leaves[MMU_PAGE_1G],
                                 .owned_pages = c->owned,
                                 .misuse = kmm_misuse_layer_total(as->k, KMM_LAYER_VM)};
    uint64_t n = 0;
    for (unsigned i = 0; i < MMU_LEVELS; i++) {
        out->tables[KMM_VM_PT + i] = c->tables[i];
        n += c->tables[i];
    }
    out->table_bytes = n * KMM_PAGE_SIZE;
    kmm_unlock_irqrestore(&as->lock, s);
    return KMM_OK;
}

int kmm_vm_fault_stats(struct kmm_aspace *as, struct kmm_vm_fault_stats *out)
{
    if (!vm_is_space(as) || !out) { /* a stale handle's lock may be anything now */
        if (out)
            *out = (struct kmm_vm_fault_stats){0};
        return vm_refuse(as, VM_NULL_RESULT, "kmm_vm_fault_stats", 0, 0,
                         __builtin_return_address(0));
    }
    kmm_irqstate_t s = kmm_lock_irqsave(&as->lock);
    *out = (struct kmm_vm_fault_stats){.cow_pages = as->mmu.counts.cow,
                                       .demand_pages = as->mmu.counts.demand,
                                       .demand_zero = as->faults.demand_zero,
                                       .cow_copy = as->faults.cow_copy,
                                       .cow_reuse = as->faults.cow_reuse,
                                       .spurious = as->faults.spurious,
                                       .refused = as->faults.refused,
                                       .clones = as->faults.clones};
    kmm_unlock_irqrestore(&as->lock, s);
    return KMM_OK;
}

/* --- kmm_check's part -------------------------------------------------------------- */

void vmm_check(struct kmm *k, struct kmm_check_result *r)
{
    const struct mmu_space *kernel = &k->vm.kernel.mmu;
    kmm_irqstate_t ls = kmm_lock_irqsave(&k->vm.list_lock);
    kmm_irqstate_t s = kmm_lock_irqsave(&k->vm.kernel.lock);
    mmu_check_locked(kernel, kernel, &k->vm.kernel, r);
    kmm_unlock_irqrestore(&k->vm.kernel.lock, s);
    for (struct kmm_aspace *as = k->vm.spaces; as; as = as->next) {
        if (as->canary != KMM_ASPACE_CANARY) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "space %p: canary overwritten", (void *)as);
            continue;
        }
        s = kmm_lock_irqsave(&as->lock);
        mmu_check_locked(&as->mmu, kernel, as, r);
        kmm_unlock_irqrestore(&as->lock, s);
    }
    kmm_unlock_irqrestore(&k->vm.list_lock, ls);
}
