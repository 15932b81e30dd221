/*
 * vmm/state.h - the page-table engine's and the kernel virtual areas'
 * state, as the instance (internal.h) embeds it: types only. Their
 * functions are in vmm.h and kva.h, private to src/vmm/.
 */
#ifndef KMM_VMM_STATE_H
#define KMM_VMM_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <kmm/page.h>
#include <kmm/port.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

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
    /* The kernel virtual area window [kva_base, kva_base + kva_span) for the
     * kernel space (set by kva_init), 0 and 0 for user spaces: every range
     * call asks whether it meets the window, so the question reads only
     * the space, and a user space's answer is no without a branch of its
     * own. */
    uint64_t kva_base, kva_span;
    struct mmu_space mmu;    /* its tables */
    struct kmm_aspace *next; /* on the space list */
    /* kmm_vm_fault's and kmm_aspace_clone's figures (kmm_vm_fault_stats),
     * under lock; cow_pages and demand_pages are mmu.counts'. */
    struct {
        uint64_t demand_zero, cow_copy, cow_reuse, spurious, refused, clones;
    } faults;
    /* Callers' gathers holding work of this space that a _g call left in
     * them (kmm_tlb_finish not called yet): destroying the space then
     * would leave them pointing at freed memory (tlb.c). */
    atomic_uint pending_gathers;
};

struct kmm_vm {
    unsigned levels;           /* 4, or 5 with LA57 */
    kmm_lock_t list_lock;      /* the space list */
    struct kmm_aspace *spaces; /* every user space, newest first */
    struct kmm_aspace kernel;
};

/* "kmm-kvaw": a live window starts with this. */
#define KMM_KVA_CANARY UINT64_C(0x6b6d6d2d6b766177)

/* What a record describes. FOREIGN: pages found mapped by someone else, a
 * hint; RAW to VBLOCK are live areas (enum kmm_kva_kind's values); VBLOCK:
 * a vmap block, kmm_vm_map_ram's (vblock.c); PARKED: a vmalloc or vmap
 * area freed by its owner whose range and page tables the window keeps for
 * the next area of the same size (kva.c, "Parked areas"). */
enum kva_kind {
    KVA_FOREIGN = 0,
    KVA_RAW = 1,
    KVA_VMALLOC = 2,
    KVA_VMAP = 3,
    KVA_VBLOCK = 4,
    KVA_PARKED = 5,
    KVA_KINDS = 6
};

/* How many parked areas the window keeps at most (the oldest goes when a
 * free would park one more), and the most usable pages an area may have
 * to be parked: one 2 MiB page table's worth, so a parked area holds at
 * most two tables (its usable pages meet at most two spans; the guard page
 * is not held). */
#define KVA_PARK_MAX   KMM_KVA_PARKED
#define KVA_PARK_PAGES KMM_KVA_PARK_PAGES

/* An area's life: reserved and being looked up or mapped (SETUP), handed
 * out (READY), being unmapped (DYING). Foreign records are always READY. */
enum kva_state { KVA_SETUP = 1, KVA_READY = 2, KVA_DYING = 3 };

/*
 * One record: a run of window pages [first, first + pages), in page
 * indexes from the window's base. An area's run ends with its guard page,
 * so it has pages - 1 usable pages; a foreign run has no guard page.
 */
struct kva_rec {
    uint64_t caller; /* who allocated the area (0 for foreign runs) */
    uint32_t first;  /* first page index */
    uint32_t pages;  /* pages covered, guard page included */
    uint8_t kind;    /* enum kva_kind */
    uint8_t state;   /* enum kva_state */
    /* The page tables of the area's 2 MiB spans carry one hold of this
     * record's (pt_held.c): a raw area's since kmm_kva_populate, a vmalloc
     * or vmap area's since its range was first parked, a parked one's
     * always. */
    uint8_t held;
};

/*
 * A range of the window that a replacing kmm_vm_map holds while it runs:
 * such a map drops the kernel space's lock between chunks (to finish its
 * gather), and without the hold a reservation could take the part not
 * replaced yet in that gap and have its pages mapped over. Taken with the
 * window check, under the window lock (kva_map_conflict), and given back
 * at the end (kva_unhold); reservations step over it, nothing else looks
 * at it. It lives in the replacing call's frame.
 */
struct kva_hold {
    uint64_t first, end;   /* window pages [first, end); end 0: not held */
    struct kva_hold *next; /* the window's other holds */
};

struct vblock; /* a vmap block: private to vblock.c */

/* One CPU's vmap block slot: the block that CPU carves kmm_vm_map_ram's
 * ranges from (NULL: none yet), under the kernel space's lock (vblock.c). */
struct kva_vb_cpu {
    struct vblock *cur;
};

/*
 * The window and its records.
 *
 * Invariants (kva_check):
 *   - recs[0 .. count) is sorted by first and disjoint, every record lies
 *     inside [0, pages), an area has at least 2 pages, a foreign run at
 *     least 1, and two foreign runs never touch (they merge);
 *   - recs is NULL and count == cap == 0 iff no area, live or parked,
 *     exists: the array (a run of run_pages pages of the page allocator,
 *     cap records) goes back when the last area does, and the foreign
 *     hints with it;
 *   - parked[0 .. nparked) are the PARKED records (first page and pages),
 *     oldest first, at most KVA_PARK_MAX; a parked record is READY and
 *     held, and its pages and guard page are unmapped;
 *   - nrec[kind] counts the records of each kind; used_pages is the sum of
 *     the live areas' pages (guards included), foreign_pages of the foreign
 *     runs' pages, backed[VMALLOC] of vmalloc areas' pages - 1, backed[VMAP]
 *     of vmap areas' pages - 1, backed[PARKED] of parked areas' pages - 1;
 *   - no two areas share a page, so an area's pages and guard page are
 *     mapped only by their owner: at a quiet point, a READY vmalloc area's
 *     pages are mapped and owned, a READY vmap area's mapped and not owned,
 *     and every READY area's guard page is unmapped.
 * Everything but base, pages and the counters read atomically is under
 * lock.
 */
struct kmm_kva {
    uint64_t canary;
    uint64_t base;  /* the window's first address */
    uint64_t pages; /* its size in pages: at most 2^24 */
    kmm_lock_t lock;
    struct kva_rec *recs; /* NULL while no area exists */
    uint64_t recs_pa;     /* the record array's run (kmm_run_alloc) */
    uint32_t run_pages;   /* its pages */
    uint32_t count, cap;  /* records held / room */
    uint64_t nrec[KVA_KINDS];
    uint64_t used_pages;
    uint64_t foreign_pages;
    uint64_t backed[KVA_KINDS];
    struct kva_hold *holds; /* ranges replacing maps hold (few: one per running replace) */
    struct kva_park {
        uint32_t first, pages; /* a parked record's: its place in the list */
    } parked[KVA_PARK_MAX];    /* oldest first */
    uint32_t nparked;
    bool park_shrinker_on; /* registered with the first park, never unregistered */
    struct kmm_shrinker park_shrinker;
    /* The window's generation, a sequence count: odd while a CPU holds the
     * lock (kva_lock), even between holds, so an unchanged even value means
     * no record has changed. The hint is a range of addresses [hint_first,
     * hint_last] that the window keeps from nobody (the pages of a ready
     * raw area), valid while the generation is hint_gen: a call inside it
     * needs no look under the lock (kva_hint_covers). All four are written
     * only under the lock and read without it (__atomic builtins). */
    uint64_t gen;
    uint64_t hint_gen, hint_first, hint_last;
    atomic_uint_fast64_t failed; /* allocations that found no room; never decreases */
    /* vmap blocks (vblock.c, which lists their invariants): the list of
     * live blocks and each CPU's current one, under the kernel space's
     * lock, and the shrinker that gives back empty ones (registered with
     * the first block). */
    struct vblock *blocks;
    uint64_t nblocks;
    bool vb_shrinker_on;
    struct kmm_shrinker vb_shrinker;
    struct kva_vb_cpu vb_cpu[KMM_MAX_CPUS];
};

#endif /* KMM_VMM_STATE_H */
