/*
 * vmm.h - address spaces and the page-table engine's private interface.
 *
 * Lock order (the numbers of docs/architecture.md, "Lock order"): 0 the
 * space list lock, taken before any space's lock and only by code that
 * visits every space (kmm_check) or links one in or out; 1 a space's lock,
 * taken before 2 the window lock (the kernel space's window check) and
 * before 4/6 the page allocator's (table pages, atomically). No lock is
 * held across a TLB shootdown, which may wait for other CPUs.
 */
#ifndef KMM_VMM_VMM_H
#define KMM_VMM_VMM_H

#include "lib/lib.h"
#include <kmm/misuse.h>
#include <kmm/page.h>
#include <kmm/vm.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/mmu.h"
#include "vmm/state.h"

struct kmm;

/* kmm_init's part: the kernel space and its shared kernel-half tables. The
 * page count it needs must be free (vmm_init_pages). Cannot fail then. */
KMM_INIT void vmm_init(struct kmm *k, unsigned levels);
KMM_INIT unsigned vmm_init_pages(void);

/* --- refusals (validate.c) --------------------------------------------------------- */

/* A refused call: counted in kmm_vm_stats.misuse under class cls (the
 * page layer's meaning of each class, kmm/misuse.h), logged once with fn,
 * the address, the size, why and the caller. Returns err. Any context. */
int vm_misuse(struct kmm *k, int err, enum kmm_misuse cls, const char *fn, uint64_t va,
              uint64_t size, const char *why, const void *caller);

/* vm_misuse of a handle that is no live object of its kind (a space that
 * is none, a gather of another space): KMM_EINVAL, counted as
 * KMM_MISUSE_BAD_HANDLE. */
int vm_misuse_handle(struct kmm *k, const char *fn, uint64_t va, uint64_t size, const char *why,
                     const void *caller);

/* Whether [va, va + size) (validated: it does not wrap) meets the kernel
 * virtual area window of as (never, for a user space). One compare: the
 * range's last byte, counted from the window's base, lies below the
 * window's end plus the range's length (a last byte below the base wraps to
 * a huge offset); neither sum wraps, as the window ends below the top of
 * the address space and a range lies in one half. */
static inline bool vmm_window_meets(const struct kmm_aspace *as, uint64_t va, uint64_t size)
{
    return va + (size - 1) - as->kva_base < as->kva_span + (size - 1);
}

/* vmm_window_meets for the one page at va (page aligned). */
static inline bool vmm_window_has_page(const struct kmm_aspace *as, uint64_t va)
{
    return va - as->kva_base < as->kva_span;
}

/* --- the range engine (range.c) ------------------------------------------------------ */

/* Sets table pages aside in t until it holds need (flags: 0, or
 * KMM_GFP_ATOMIC under a lock). Returns whether it does; on false t keeps
 * what it got. vmm_tables_release gives back what t holds. */
bool vmm_tables_fill(struct kmm *k, struct vmm_tables *t, unsigned need, kmm_gfp_t flags);
void vmm_tables_release(struct kmm *k, struct vmm_tables *t);

/* What a change needs, counted under the space's lock: tables (>= 0) or a
 * negative error that ends the change. */
typedef int (*vmm_count_fn)(const struct mmu_space *s, const void *op);

/*
 * vmm_lock_with_tables - take as's lock with t holding what count(op)
 * says the change needs. Tables are taken atomically under the lock; if
 * that fails the lock is dropped, the tables allocated with reclaim
 * allowed, and the count taken again. Returns KMM_OK with the lock held and
 * *irq set, or count's error or KMM_ENOMEM with the lock not held and t
 * emptied. IRQs on (it may reclaim).
 */
int vmm_lock_with_tables(struct kmm_aspace *as, struct vmm_tables *t, vmm_count_fn count,
                         const void *op, kmm_irqstate_t *irq);

/* vmm_lock_for_map - vmm_lock_with_tables for a map: the tables counted
 * (KMM_EBUSY if a page is mapped), or with replace the most it could take. */
int vmm_lock_for_map(struct kmm_aspace *as, const struct mmu_map *m, bool replace,
                     struct vmm_tables *t, kmm_irqstate_t *irq);

/* vmm_lock_and_cut - take the lock with [va, va + size) found mapped and
 * its ends cut out of their huge leaves (splits recorded in g). With
 * window (the kernel space, a range that meets the window, a caller that
 * is not the window's allocator), the window is asked first, under the
 * same lock hold (kva_map_conflict). Returns KMM_OK (lock held), KMM_EBUSY
 * (the window keeps a page: *kept says why), KMM_ENOENT (a page is not
 * mapped) or KMM_ENOMEM, with nothing changed and the lock not held. */
int vmm_lock_and_cut(struct kmm_aspace *as, uint64_t va, uint64_t size, bool window,
                     const char **kept, struct kmm_tlb_gather *g, kmm_irqstate_t *irq);

/* Run a replace or an unmap (cut already) to its end with the lock held,
 * finishing g with the lock dropped whenever it fills. Cannot fail. */
void vmm_replace_locked(struct kmm_aspace *as, const struct mmu_map *m, struct vmm_tables *t,
                        struct kmm_tlb_gather *g, kmm_irqstate_t *irq);
void vmm_unmap_locked(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g,
                      kmm_irqstate_t *irq);

/* vmm_unmap_area_locked - mmu_unmap_area_locked (an area's pages in one
 * pass, no count first) to the range's end, from byte *done on, finishing
 * g with the lock dropped whenever it fills; *missed says whether a page
 * was found missing on the way. Returns KMM_OK, KMM_ENOENT (pages were
 * missing; the rest is unmapped), or MMU_SLOW: a huge leaf at *done,
 * nothing changed from there on. */
int vmm_unmap_area_locked(struct kmm_aspace *as, uint64_t va, uint64_t size, uint64_t *done,
                          bool *missed, struct kmm_tlb_gather *g, kmm_irqstate_t *irq);

/* --- gathers (tlb.c) --------------------------------------------------------------------- */

/* After a _g call: if g holds work now and is not counted yet in its
 * space's pending_gathers, count it (kmm_tlb_finish uncounts it). */
void vmm_gather_note_pending(struct kmm_tlb_gather *g);

/* --- the range calls (map.c) -------------------------------------------------------- */

/* kmm_vm_map on the kernel space for the kernel virtual area allocator's
 * own areas (vmalloc.c), for an array of single pages: pages[i] at va + i
 * pages with flags (protection, cache mode and KMM_MAP_OWNED: not huge or
 * replacing), in one lock hold, one walk per page table; every check but
 * the window's (kva_map_conflict), which keeps an area's pages from
 * everyone else. The caller checked that each frame is page aligned RAM
 * (and, owned, an allocated single page). Returns KMM_OK, or an error with
 * nothing mapped: KMM_EBUSY (a page of the range, or the entry right after
 * it in the same page table, mapped already: entries written behind the
 * library's back; neither counted nor logged, the caller warns), KMM_ENOMEM
 * (no page for a table), KMM_ESTATE (owned: a page was freed meanwhile). */
int vmm_map_pages_area(struct kmm *k, uint64_t va, const uint64_t *pages, uint64_t n,
                       unsigned flags);

/* kmm_vm_unmap on the kernel space for the window's allocator (vmalloc.c):
 * no window check, and a page found unmapped is not the caller's mistake
 * (the allocator unmaps what it mapped; a kernel writing the tables behind
 * its back is): KMM_ENOENT, neither counted nor logged, with the pages
 * still mapped either left as they were or unmapped (the caller unmaps
 * whatever is left, run by run). */
int vmm_unmap_area(struct kmm *k, uint64_t va, uint64_t size);

/* --- spaces (aspace.c) ---------------------------------------------------------------- */

/* kmm_check's part. */
struct kmm_check_result;
void vmm_check(struct kmm *k, struct kmm_check_result *r);

#endif /* KMM_VMM_VMM_H */
