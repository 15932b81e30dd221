/*
 * kva.h - kernel virtual areas: the window's range allocator (kva.c) and
 * what the mapping half (vmalloc.c) needs from it. Contracts of the public
 * calls: kmm/vmalloc.h.
 *
 * Lock order (docs/architecture.md): the window lock is order 2, after the
 * address space locks (1). It is never held while the kernel space's
 * tables are read or changed (kmm_vm_query, kmm_vm_map, kmm_vm_unmap take
 * the space's lock), nor while pages are allocated with reclaim: a range is
 * reserved under the lock, the lock dropped, then the range is looked up
 * and mapped, and on failure its reservation is removed again.
 */
#ifndef KMM_VMM_KVA_H
#define KMM_VMM_KVA_H

#include "lib/lib.h"
#include <kmm/misuse.h>
#include <kmm/port.h>
#include <kmm/vmalloc.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct kmm;
struct kmm_config;
struct kmm_check_result;

#include "vmm/state.h"

/* kmm_init's part: whether cfg's window is valid for `levels` paging
 * levels (logs why not), and setting the window up (allocates nothing). */
bool kva_config_valid(const struct kmm_config *cfg, unsigned levels, struct kmm_port *p);
KMM_INIT void kva_init(struct kmm *k, const struct kmm_config *cfg);

/*
 * kva_reserve - reserve `pages` pages plus a guard page that are all
 * unmapped in the kernel space, as an area of kind in state SETUP, for
 * caller: for a vmalloc or vmap area, the newest parked area of that size
 * if there is one (its tables held: kva.c, "Parked areas"), else the first
 * gap with room. Returns KMM_OK and *va, or KMM_ENOMEM (no room even with
 * the parked areas given back: counted in failed; or no memory for the
 * records). IRQs on.
 */
int kva_reserve(struct kmm *k, uint64_t pages, enum kva_kind kind, const void *caller,
                uint64_t *va);

/* kva_reserve_aligned - kva_reserve at an address that is a multiple of
 * align pages (a power of two). */
int kva_reserve_aligned(struct kmm *k, uint64_t pages, uint64_t align, enum kva_kind kind,
                        const void *caller, uint64_t *va);

/* kva_publish - the area at va (SETUP) is handed out: READY. */
void kva_publish(struct kmm *k, uint64_t va);

/* kva_release - remove the area at va (SETUP or DYING), whose pages and
 * guard page are unmapped, and free the records' array if it was the last.
 * A raw area's or a vmap block's; vmalloc and vmap areas go through
 * kva_retire. */
void kva_release(struct kmm *k, uint64_t va);

/*
 * kva_retire - the end of the vmalloc or vmap area at va (SETUP or DYING),
 * whose pages are unmapped and invalidated: parked if park says its pages
 * were all unmapped cleanly, its tables are held (held: the caller has
 * just added the holds, kva_hold_spans; or its record says so) and it is
 * small enough (KVA_PARK_PAGES), the oldest parked area going if
 * KVA_PARK_MAX are; else removed as kva_release does, its holds dropped.
 * IRQs on, no lock held.
 */
void kva_retire(struct kmm *k, uint64_t va, bool held, bool park);

/* kva_hold_spans - add a hold (vb_hold_table) to the page table of every
 * 2 MiB span [va, end) meets. Returns KMM_OK, or the error of the first
 * that failed with the holds before it dropped again. kva_unhold_spans
 * drops one from each (vb_unhold_table). IRQs on, no lock held. */
int kva_hold_spans(struct kmm *k, uint64_t va, uint64_t end);
void kva_unhold_spans(struct kmm *k, uint64_t va, uint64_t end);

/* The kernel space's page tables below the top level, read under its lock:
 * read before and after dropping holds, what the drops freed (a figure:
 * other CPUs may map meanwhile). */
uint64_t kva_kernel_tables(struct kmm *k);

/*
 * kva_begin_free - the first step of freeing the area at va that fn's
 * caller says is of kind: marks it DYING and stores its usable page count
 * in *pages and, if held is not NULL, whether its tables are held in
 * *held. Returns KMM_OK, or a misuse error (counted and logged with fn and
 * caller; nothing changed) as kmm_vfree lists. A parked area is no area
 * to free: KMM_ENOENT, freed already.
 */
int kva_begin_free(struct kmm *k, uint64_t va, enum kva_kind kind, const char *fn,
                   const void *caller, uint64_t *pages, bool *held);

/* kva_abort_free - the free of the DYING area at va is refused after all:
 * READY again. */
void kva_abort_free(struct kmm *k, uint64_t va);

/* kva_set_held - the raw area at va (DYING: the caller's) holds its page
 * tables (kmm_kva_populate), or not. */
void kva_set_held(struct kmm *k, uint64_t va, bool held);

/* The holds that areas keep on page tables, populated raw areas' and
 * parked ones' (kmm_check). */
uint64_t kva_area_holds(struct kmm *k);

/* kva_lock / kva_unlock - take and drop the window lock. Every hold of it
 * goes through these, which step the window's generation (state.h) to odd
 * and back to even, so that a reader without the lock can tell that no
 * record changed while it looked (kva_map_conflict's hint). */
static inline kmm_irqstate_t kva_lock(struct kmm_kva *v)
{
    kmm_irqstate_t irq = kmm_lock_irqsave(&v->lock);
    /* Odd: seen by anyone who sees a hint this hold writes (hint_set_locked
     * stores with release). */
    __atomic_store_n(&v->gen, v->gen + 1, __ATOMIC_RELAXED);
    return irq;
}

static inline void kva_unlock(struct kmm_kva *v, kmm_irqstate_t irq)
{
    __atomic_store_n(&v->gen, v->gen + 1, __ATOMIC_RELEASE); /* after what the hold wrote */
    kmm_unlock_irqrestore(&v->lock, irq);
}

/* The 2 MiB spans (page tables) [va, va + size) meets. */
static inline uint64_t kva_spans(uint64_t va, uint64_t size)
{
    return ((va + size - 1) >> 21) - (va >> 21) + 1;
}

/* Why a call is refused: the text (NULL: it is not), its error value and
 * the class it is counted under. */
struct kva_refusal {
    const char *why;
    int err;
    enum kmm_misuse cls;
};

#define KVA_ACCEPTED ((struct kva_refusal){0, KMM_OK, KMM_MISUSE_BAD_ARG})

/* kva_misuse - count a rejected call under class cls (the page layer's
 * meaning of each class, kmm/misuse.h), log one line with fn, the address,
 * the size, why and the caller. Returns err. */
int kva_misuse(struct kmm *k, int err, enum kmm_misuse cls, const char *fn, uint64_t va,
               uint64_t size, const char *why, const void *caller);

/* Whether [va, va + size) (a validated range: it does not wrap) meets the
 * window. No lock: the window never moves. */
static inline bool kva_window_meets(const struct kmm_kva *v, uint64_t va, uint64_t size)
{
    /* One compare: the range's last byte, counted from the window's base,
     * lies below the window's end plus the range's length (a last byte
     * below the base wraps to a huge offset). Neither sum wraps: the window
     * ends below the top of the address space and a range lies in one half. */
    return va + (size - 1) - v->base < (v->pages << KMM_PAGE_SHIFT) + (size - 1);
}

/*
 * kva_hint_covers - whether [va, last] lies in the window's hint (state.h)
 * while no record has changed: then kva_map_conflict would answer NULL.
 * The seqlock read: no store, no lock. For the common case, a caller
 * mapping page after page of its own raw area; the caller holds the kernel
 * space's lock, so the answer is as exact as kva_map_conflict's (a
 * reservation starting now looks its range up under that lock, after the
 * caller's change).
 */
static inline bool kva_hint_covers(const struct kmm_kva *v, uint64_t va, uint64_t last)
{
    /* Acquire loads throughout (plain loads on x86): a hint read here that
     * a later hold wrote makes that hold's odd generation visible to the
     * recheck, which then fails. */
    uint64_t gen = __atomic_load_n(&v->gen, __ATOMIC_ACQUIRE);
    if (gen != __atomic_load_n(&v->hint_gen, __ATOMIC_ACQUIRE))
        return false; /* a hold ran since the hint was set, or runs now (odd) */
    bool in = va >= __atomic_load_n(&v->hint_first, __ATOMIC_ACQUIRE) &&
              last <= __atomic_load_n(&v->hint_last, __ATOMIC_ACQUIRE);
    return in && __atomic_load_n(&v->gen, __ATOMIC_RELAXED) == gen;
}

/*
 * kva_map_conflict - why a plain kmm_vm_map, kmm_vm_unmap or kmm_vm_protect
 * of [va, va + size) on the kernel space would touch pages the window
 * keeps, or NULL if it would not.
 * The window keeps every guard page, every page of a vmalloc or vmap area
 * (the allocator maps them itself) and every page of an area being set up
 * or freed; a ready raw area's own pages are its caller's to map, and pages
 * outside every area anybody's. Takes the window lock, so the caller may
 * hold the kernel space's lock (order 1 before 2) and, holding it, knows
 * no reservation can start on the range unseen: a reservation looks its
 * range up under that lock after recording it. With hold (a replacing map,
 * which drops that lock between chunks), a range found free of conflicts
 * is held in the same lock hold, so no reservation starts on it until
 * kva_unhold; hold->end says whether it was (0: the range misses the
 * window, or a conflict was found). O(log areas + areas met).
 */
const char *kva_map_conflict(struct kmm *k, uint64_t va, uint64_t size, struct kva_hold *hold);

/* kva_unhold - give back a range kva_map_conflict held (hold->end != 0).
 * Takes the window lock; O(holds). */
void kva_unhold(struct kmm *k, struct kva_hold *hold);

/* How many usable pages a request of size bytes needs, or 0 if it cannot
 * fit in the window (size 0 or larger than the window minus a guard page). */
uint64_t kva_pages_for(const struct kmm *k, uint64_t size);

/* The first ready area at or after *from (a window address), for walks
 * that take the lock once per area (kmm_report, kmm_check). Returns false
 * at the end; else fills *out and moves *from past the area's guard page. */
bool kva_next_area(struct kmm *k, uint64_t *from, struct kmm_kva_area *out);

/* "raw", "vmalloc", "vmap" ("foreign" for 0; "?" if unknown). */
const char *kva_kind_name(unsigned kind);

/* kmm_check's part. */
void kva_check(struct kmm *k, struct kmm_check_result *r);

/* --- vmap blocks (vblock.c): kmm_vm_map_ram's per-CPU fast path ------------------------ */

/* kmm_init's part (after kva_init): the block list and the CPU slots. */
KMM_INIT void vb_init(struct kmm *k);

/* vb_map - map pages[0 .. n) (checked: page aligned RAM; 1 <= n <=
 * KMM_MAP_RAM_MAX) with prot in a range of this CPU's vmap block, making a
 * block if it has none or it is full. Returns true and *va, or false (no
 * room for a block in the window, or no memory for one): nothing changed,
 * and the caller maps an area of its own instead. IRQs on. */
bool vb_map(struct kmm *k, const uint64_t *pages, uint64_t n, unsigned prot, const void *caller,
            uint64_t *va);

/* What vb_unmap returns when va lies in no vmap block. */
#define VB_NOT_A_BLOCK 1

/* vb_unmap - unmap the n-page range vb_map returned at va (page aligned,
 * in the window) and give it back to its block, whichever CPU's it is.
 * Returns KMM_OK once the invalidations are complete, VB_NOT_A_BLOCK
 * (nothing done, nothing counted), or a refusal counted and logged with fn
 * and caller (KMM_ENOENT no range starts at va, KMM_EINVAL va is inside
 * a range or n is not its count, KMM_ESTATE it is being unmapped). IRQs
 * on. */
int vb_unmap(struct kmm *k, uint64_t va, uint64_t n, const char *fn, const void *caller);

/* vb_hold_table - build the page table of va's 2 MiB span and add a hold
 * to it (pt_held.c), allocating tables with reclaim; its physical address
 * in *table if table is not NULL. Returns KMM_OK, KMM_ENOMEM, or KMM_EBUSY
 * (a huge page maps the span). vb_unhold_table drops one hold, freeing
 * the table (after its invalidation) if it was the last and nothing is
 * mapped. IRQs on, no lock held. */
int vb_hold_table(struct kmm *k, uint64_t va, uint64_t *table);
void vb_unhold_table(struct kmm *k, uint64_t va);

/* vb_drain - give back every vmap block that holds no range; returns the
 * pages that freed. IRQs on, no kmm lock held (a shrinker may call it). */
uint64_t vb_drain(struct kmm *k);

/* kmm_vmalloc_stats' part: the block figures of *out. */
void vb_stats(struct kmm *k, struct kmm_vmalloc_stats *out);

/* kmm_check's part: the block whose area is a (a ready KVA_VBLOCK area)
 * against its bitmap and the tables; then the list against the window's
 * records, the CPU slots and the kernel space's held tables. */
void vb_check_area(struct kmm *k, const struct kmm_kva_area *a, struct kmm_check_result *r);
void vb_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_VMM_KVA_H */
