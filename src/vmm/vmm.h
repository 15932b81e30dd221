/*
 * vmm.h - address spaces and the page-table engine's private interface.
 *
 * Lock order (docs/architecture.md): the space list lock is taken before any
 * space's lock and only by code that visits every space (kmm_check); a
 * space's lock is taken before zone locks (it allocates table pages). No
 * lock is held across a TLB shootdown, which may wait for other CPUs.
 */
#ifndef KMM_VMM_VMM_H
#define KMM_VMM_VMM_H

#include <kmm/page.h>
#include <kmm/vm.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/mmu.h"

struct kmm;

/* "kmm-aspc": a live space starts with this. */
#define KMM_ASPACE_CANARY UINT64_C(0x6b6d6d2d61737063)

/*
 * An address space: the generic part (identity, lock, list link) around
 * its tables (struct mmu_space, the arch layer's). Its lock protects the
 * tables (for the kernel space: the kernel half, shared by every space)
 * and their figures (mmu.counts).
 * Invariants (kmm_check, mmu_check_locked): every table reachable from the
 * root is a PAGETABLE page whose entry count is its number of present
 * entries, and mmu.counts is exact.
 */
struct kmm_aspace {
    uint64_t canary;
    struct kmm *k;
    uint64_t self_pa; /* the page holding this structure (user spaces), else 0 */
    kmm_lock_t lock;
    struct mmu_space mmu;    /* its tables */
    struct kmm_aspace *next; /* on the space list */
};

struct kmm_vm {
    unsigned levels;           /* 4, or 5 with LA57 */
    kmm_lock_t list_lock;      /* the space list */
    struct kmm_aspace *spaces; /* every user space, newest first */
    struct kmm_aspace kernel;
};

/* kmm_init's part: the kernel space and its shared kernel-half tables. The
 * page count it needs must be free (vmm_init_pages). Cannot fail then. */
void vmm_init(struct kmm *k, unsigned levels);
unsigned vmm_init_pages(void);

/* A refused call: counted in kmm_vm_stats.misuse, logged once with fn, the
 * address, the size, why and the caller. Returns err. Any context. */
int vm_misuse(struct kmm *k, int err, const char *fn, uint64_t va, uint64_t size, const char *why,
              const void *caller);

/* vm_misuse of a handle that is no live object of its kind (a space that
 * is none, a gather of another space): KMM_EINVAL, counted as
 * KMM_MISUSE_BAD_HANDLE. */
int vm_misuse_handle(struct kmm *k, const char *fn, uint64_t va, uint64_t size, const char *why,
                     const void *caller);

/* Sets table pages aside in t until it holds need (flags: 0, or
 * KMM_GFP_ATOMIC under a lock). Returns whether it does; on false t keeps
 * what it got. Release what is left with vmm_tables_release (map.c). */
bool vmm_tables_fill(struct kmm *k, struct vmm_tables *t, unsigned need, kmm_gfp_t flags);
void vmm_tables_release(struct kmm *k, struct vmm_tables *t);

/* kmm_vm_map on the kernel space for the kernel virtual area allocator's
 * own areas (vmalloc.c): every check but the window's (kva_map_conflict),
 * which keeps an area's pages from everyone else. */
int vmm_map_area(struct kmm *k, uint64_t va, uint64_t pa, uint64_t size, unsigned flags);

/* kmm_check's part. */
struct kmm_check_result;
void vmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_VMM_VMM_H */
