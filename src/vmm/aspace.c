/*
 * aspace.c - address spaces: the kernel space, user spaces, their
 * statistics, and the vmm's part of kmm_check.
 *
 * The kernel half is shared by construction: at init the kernel space gets
 * every table of the level below the top for the kernel half (256 tables,
 * 1 MiB), and a user space's top-level table links to the same tables. A
 * kernel mapping made later changes only those shared tables and below, so
 * it appears in every space at once, and nothing ever has to be copied.
 */
#include "internal.h"

#include <kmm/check.h>
#include <kmm/page.h>

#include "pmm/pmm.h"
#include "vmm/vmm.h"

#define KERNEL_HALF_FIRST (PTE_ENTRIES / 2) /* top-level index of the kernel half */

static inline pte_t *table(struct kmm *k, uint64_t pa)
{
    return (pte_t *)kmm_phys_to_virt(k, pa);
}

unsigned vmm_init_pages(void)
{
    return 1 + KERNEL_HALF_FIRST; /* the root and the shared kernel-half tables */
}

static void aspace_init(struct kmm_aspace *as, struct kmm *k, uint64_t root, bool kernel)
{
    __builtin_memset(as, 0, sizeof(*as));
    as->k = k;
    as->root = root;
    as->kernel = kernel;
    kmm_lock_init(&as->lock);
    as->tables[k->vm.levels] = 1;
    as->canary = KMM_ASPACE_CANARY;
}

void vmm_init(struct kmm *k, unsigned levels)
{
    struct kmm_vm *vm = &k->vm;
    vm->levels = levels;
    vm->kernel_half = pte_kernel_half(levels);
    kmm_lock_init(&vm->list_lock);
    vm->spaces = 0;
    uint64_t root = pmm_table_alloc(k, 0);
    KMM_ASSERT(k->port, root != 0);
    aspace_init(&vm->kernel, k, root, true);
    pte_t *top = table(k, root);
    for (unsigned i = KERNEL_HALF_FIRST; i < PTE_ENTRIES; i++) {
        uint64_t t = pmm_table_alloc(k, 0);
        KMM_ASSERT(k->port, t != 0);
        pte_set(&top[i], pte_table(t, false));
    }
    *pmm_table_entries(&k->pmm, root) = PTE_ENTRIES - KERNEL_HALF_FIRST;
    vm->kernel.tables[levels - 1] = PTE_ENTRIES - KERNEL_HALF_FIRST;
}

struct kmm_aspace *kmm_kernel_aspace(struct kmm *k)
{
    return &k->vm.kernel;
}

int kmm_aspace_create(struct kmm *k, struct kmm_aspace **out)
{
    uint64_t self = kmm_page_alloc(k, 0, KMM_GFP_ZERO);
    uint64_t root = self ? pmm_table_alloc(k, 0) : 0;
    if (!root) {
        if (self)
            kmm_page_free(k, self, 0);
        return KMM_ENOMEM;
    }
    struct kmm_aspace *as = kmm_phys_to_virt(k, self);
    aspace_init(as, k, root, false);
    as->self_pa = self;
    /* Link the shared kernel half: the kernel space's entries never change
     * after init, so a plain copy stays right. */
    const pte_t *kernel_top = table(k, k->vm.kernel.root);
    pte_t *top = table(k, root);
    for (unsigned i = KERNEL_HALF_FIRST; i < PTE_ENTRIES; i++)
        pte_set(&top[i], kernel_top[i]);
    *pmm_table_entries(&k->pmm, root) = PTE_ENTRIES - KERNEL_HALF_FIRST;
    kmm_irqstate_t s = kmm_lock_irqsave(&k->vm.list_lock);
    as->next = k->vm.spaces;
    k->vm.spaces = as;
    kmm_unlock_irqrestore(&k->vm.list_lock, s);
    *out = as;
    return KMM_OK;
}

/* Frees the subtree of a level-`level` table: owned frames' references
 * dropped, every table below freed. The space is not active anywhere, so
 * no CPU can hold a translation of it and nothing needs invalidating. */
static void free_subtree(struct kmm_aspace *as, uint64_t t, unsigned level)
{
    struct kmm *k = as->k;
    pte_t *e = table(k, t);
    for (unsigned i = 0; i < PTE_ENTRIES; i++) {
        if (!pte_present(e[i]))
            continue;
        if (!pte_is_leaf(e[i], level)) {
            free_subtree(as, pte_frame(e[i]), level - 1);
            *pmm_table_entries(&k->pmm, pte_frame(e[i])) = 0;
            pmm_table_free(k, pte_frame(e[i]));
        } else if (e[i] & PTE_SW_OWNED) {
            int err = kmm_page_free(k, pte_frame(e[i]), 0);
            KMM_ASSERT(k->port, err == KMM_OK);
        }
        pte_set(&e[i], 0);
    }
}

/* Takes as off k's list of user spaces. Returns why it cannot be (NULL when
 * done): only a live user space of this instance is on the list, so the
 * lookup never reads through a pointer that is not one. */
static const char *unlink_space(struct kmm *k, const struct kmm_aspace *as)
{
    if (as == &k->vm.kernel)
        return "the kernel space cannot be destroyed";
    const char *why = "not a user space of this instance (destroyed already, or another's)";
    kmm_irqstate_t s = kmm_lock_irqsave(&k->vm.list_lock);
    for (struct kmm_aspace **link = &k->vm.spaces; *link; link = &(*link)->next) {
        if (*link != as)
            continue;
        why = as->canary == KMM_ASPACE_CANARY ? 0 : "the space's canary is overwritten";
        if (!why)
            *link = as->next;
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
        return vm_misuse(k, KMM_EINVAL, "kmm_aspace_destroy", 0, 0, "NULL space", caller);
    const char *why = unlink_space(k, as);
    if (why)
        return vm_misuse_handle(k, "kmm_aspace_destroy", (uint64_t)(uintptr_t)as, 0, why, caller);

    unsigned levels = k->vm.levels;
    pte_t *top = table(k, as->root);
    for (unsigned i = 0; i < KERNEL_HALF_FIRST; i++) {
        if (!pte_present(top[i]))
            continue;
        free_subtree(as, pte_frame(top[i]), levels - 1);
        *pmm_table_entries(&k->pmm, pte_frame(top[i])) = 0;
        pmm_table_free(k, pte_frame(top[i]));
        pte_set(&top[i], 0);
    }
    *pmm_table_entries(&k->pmm, as->root) = 0;
    pmm_table_free(k, as->root);
    as->canary = 0;
    kmm_page_free(k, as->self_pa, 0);
    return KMM_OK;
}

void kmm_aspace_activate(struct kmm_aspace *as)
{
    kmm_port_load_root(as->k->port, as->root);
}

uint64_t kmm_aspace_root(const struct kmm_aspace *as)
{
    return as->root;
}

void kmm_vm_stats(struct kmm_aspace *as, struct kmm_vm_stats *out)
{
    kmm_irqstate_t s = kmm_lock_irqsave(&as->lock);
    *out = (struct kmm_vm_stats){.mapped_pages = as->leaves[1],
                                 .mapped_2m = as->leaves[2],
                                 .mapped_1g = as->leaves[3],
                                 .owned_pages = as->owned,
                                 .misuse = kmm_misuse_layer_total(as->k, KMM_LAYER_VM)};
    uint64_t n = 0;
    for (unsigned l = 1; l <= 5; l++) {
        out->tables[l] = as->tables[l];
        n += as->tables[l];
    }
    out->table_bytes = n * KMM_PAGE_SIZE;
    kmm_unlock_irqrestore(&as->lock, s);
}

/* --- kmm_check's part -------------------------------------------------------------- */

struct vm_count {
    uint64_t tables[6];
    uint64_t leaves[4], owned;
};

/* Recounts the table at t (level `level`) and everything below it. */
static void check_table(struct kmm_aspace *as, uint64_t t, unsigned level, uint64_t va,
                        struct vm_count *c, struct kmm_check_result *r)
{
    struct kmm *k = as->k;
    const struct kmm_frame *f = pmm_frame_lookup(&k->pmm, t >> KMM_PAGE_SHIFT);
    if (!f || frame_state_get(f) != FRAME_PAGETABLE) {
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "space %p: level-%u table at 0x%llx is %s",
                          (void *)as, level, (unsigned long long)t,
                          f ? "not marked a page table" : "outside managed memory");
        return;
    }
    c->tables[level]++;
    const pte_t *e = table(k, t);
    uint32_t present = 0;
    for (unsigned i = 0; i < PTE_ENTRIES; i++) {
        if (!pte_present(e[i]))
            continue;
        present++;
        uint64_t sub = va | ((uint64_t)i << pte_level_shift(level));
        if (!pte_is_leaf(e[i], level)) {
            check_table(as, pte_frame(e[i]), level - 1, sub, c, r);
            continue;
        }
        if (level <= PTE_MAX_LEAF_LEVEL)
            c->leaves[level]++;
        if (level > PTE_MAX_LEAF_LEVEL ||
            (level > 1 &&
             (e[i] & (PTE_SW_OWNED | (PTE_FRAME & (pte_level_size(level) - 1) & ~PTE_PATPS)))))
            kmm_check_problem(r, KMM_CHECK_CORRUPT,
                              "space %p: level-%u leaf at 0x%llx is malformed (0x%llx)", (void *)as,
                              level, (unsigned long long)sub, (unsigned long long)e[i]);
        if (e[i] & PTE_SW_OWNED) {
            c->owned++;
            if (!pmm_is_allocated_page(k, pte_frame(e[i])))
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "space %p: page 0x%llx owns frame 0x%llx, which is not allocated",
                                  (void *)as, (unsigned long long)sub,
                                  (unsigned long long)pte_frame(e[i]));
        }
    }
    if (f->count != present)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "space %p: level-%u table at 0x%llx counts %u entries, holds %u",
                          (void *)as, level, (unsigned long long)t, f->count, present);
}

/* Recounts one space: the kernel space all of it, a user space its lower
 * half (and that its kernel half is the kernel space's). */
static void check_space(struct kmm_aspace *as, struct kmm_check_result *r)
{
    struct kmm *k = as->k;
    unsigned levels = k->vm.levels;
    struct vm_count c = {{0}, {0}, 0};
    c.tables[levels] = 1;
    const pte_t *top = table(k, as->root);
    const pte_t *kernel_top = table(k, k->vm.kernel.root);
    uint32_t present = 0;
    for (unsigned i = 0; i < PTE_ENTRIES; i++) {
        if (!pte_present(top[i]))
            continue;
        present++;
        bool kernel_half = i >= KERNEL_HALF_FIRST;
        if (kernel_half && !as->kernel) {
            if (top[i] != kernel_top[i])
                kmm_check_problem(r, KMM_CHECK_CORRUPT,
                                  "space %p: kernel-half entry %u differs from the kernel's",
                                  (void *)as, i);
            continue;
        }
        uint64_t va = (uint64_t)i << pte_level_shift(levels);
        if (kernel_half)
            va |= k->vm.kernel_half;
        check_table(as, pte_frame(top[i]), levels - 1, va, &c, r);
    }
    const struct kmm_frame *rf = pmm_frame_lookup(&k->pmm, as->root >> KMM_PAGE_SHIFT);
    if (!rf || rf->count != present)
        kmm_check_problem(r, KMM_CHECK_CORRUPT, "space %p: root counts wrong", (void *)as);
    bool same = c.owned == as->owned;
    for (unsigned l = 1; l <= PTE_MAX_LEAF_LEVEL; l++)
        same &= c.leaves[l] == as->leaves[l];
    for (unsigned l = 1; l <= levels; l++)
        same &= c.tables[l] == as->tables[l];
    if (!same)
        kmm_check_problem(r, KMM_CHECK_CORRUPT,
                          "space %p: tables hold %llu/%llu/%llu leaves of 4K/2M/1G (%llu owned), "
                          "counters say %llu/%llu/%llu (%llu)",
                          (void *)as, (unsigned long long)c.leaves[1],
                          (unsigned long long)c.leaves[2], (unsigned long long)c.leaves[3],
                          (unsigned long long)c.owned, (unsigned long long)as->leaves[1],
                          (unsigned long long)as->leaves[2], (unsigned long long)as->leaves[3],
                          (unsigned long long)as->owned);
}

void vmm_check(struct kmm *k, struct kmm_check_result *r)
{
    kmm_irqstate_t ls = kmm_lock_irqsave(&k->vm.list_lock);
    kmm_irqstate_t s = kmm_lock_irqsave(&k->vm.kernel.lock);
    check_space(&k->vm.kernel, r);
    kmm_unlock_irqrestore(&k->vm.kernel.lock, s);
    for (struct kmm_aspace *as = k->vm.spaces; as; as = as->next) {
        if (as->canary != KMM_ASPACE_CANARY) {
            kmm_check_problem(r, KMM_CHECK_CORRUPT, "space %p: canary overwritten", (void *)as);
            continue;
        }
        s = kmm_lock_irqsave(&as->lock);
        check_space(as, r);
        kmm_unlock_irqrestore(&as->lock, s);
    }
    kmm_unlock_irqrestore(&k->vm.list_lock, ls);
}
