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

#include <kmm/vm.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/x86_64/pte.h"

struct kmm;

/* "kmm-aspc": a live space starts with this. */
#define KMM_ASPACE_CANARY UINT64_C(0x6b6d6d2d61737063)

/* A software bit of a leaf entry: the mapping holds a frame reference. */
#define PTE_SW_OWNED (UINT64_C(1) << 9)

/*
 * An address space. Its lock protects its tables (for the kernel space: the
 * kernel half, shared by every space) and its figures.
 * Invariants (kmm_check): every table reachable from root is a PAGETABLE
 * frame whose count is its number of present entries; tables[l] counts the
 * space's own tables of level l; leaves[l] its present leaves of level l
 * (PS set at levels 2 and 3; never above) and owned those with PTE_SW_OWNED,
 * which only 4 KiB leaves carry.
 */
struct kmm_aspace {
    uint64_t canary;
    struct kmm *k;
    uint64_t root;    /* physical address of the top-level table */
    bool kernel;      /* the kernel space */
    uint64_t self_pa; /* the page holding this structure (user spaces), else 0 */
    kmm_lock_t lock;
    uint64_t tables[6];      /* own tables per level (1 = PT ... 5 = PML5) */
    uint64_t leaves[4];      /* present leaves per level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) */
    uint64_t owned;          /* 4 KiB leaves holding a frame reference */
    struct kmm_aspace *next; /* on the space list */
};

struct kmm_vm {
    unsigned levels;           /* 4, or 5 with LA57 */
    uint64_t kernel_half;      /* the first kernel-half address */
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

/* kmm_vm_map on the kernel space for the kernel virtual area allocator's
 * own areas (vmalloc.c): every check but the window's (kva_map_conflict),
 * which keeps an area's pages from everyone else. */
int vmm_map_area(struct kmm *k, uint64_t va, uint64_t pa, uint64_t size, unsigned flags);

/* The gather's internals (tlb.c), used by map.c. */
void vmm_gather_range(struct kmm_tlb_gather *g, uint64_t va, uint64_t size, bool global);
void vmm_gather_free(struct kmm_tlb_gather *g, uint64_t pa, bool table);
bool vmm_gather_room(const struct kmm_tlb_gather *g, unsigned frees);

/* kmm_check's part. */
struct kmm_check_result;
void vmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_VMM_VMM_H */
