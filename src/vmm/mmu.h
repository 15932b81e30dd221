/*
 * mmu.h - the arch MMU layer's narrow interface: everything the generic vmm
 * asks of the page tables (Zircon's ArchVmAspaceInterface is the model).
 * src/vmm/x86_64/ implements it; the generic vmm (aspace.c, map.c, tlb.c,
 * kva.c, vmalloc.c) keeps validation, ownership references, gathers,
 * statistics and the public calls, and knows no entry bit.
 *
 *   generic vmm                              arch layer (x86_64/)
 *   validates the call, takes the lock  -->  counts the tables a change needs
 *   sets table pages aside (vmm_tables) -->  walks, builds tables from them,
 *                                            splits huge leaves, frees empty
 *   owns the gather (tlb.c)             <--  tables, keeps entry counts and
 *                                            records invalidations/releases
 *   takes and drops frame references         writes leaves for prot, cache
 *   tells the port (mapping hook)       <--  mode and ownership it is given
 *
 * Locking: a *_locked function expects the space's lock held (struct
 * kmm_aspace's lock); the others say what they need. Nothing here
 * allocates: table pages come from the vmm_tables the caller filled, after
 * asking the matching count function under the same lock hold, so a change
 * that starts cannot fail half-way. Releases go through the caller's
 * gather, which the caller finishes after dropping the lock.
 */
#ifndef KMM_VMM_MMU_H
#define KMM_VMM_MMU_H

#include <stdbool.h>
#include <stdint.h>

#include <kmm/port.h>
#include <kmm/vm.h>

struct kmm;
struct kmm_check_result;
struct kmm_tlb_gather;

/*
 * Indexes of the per-level figures, 0-based. Levels are numbered as the
 * x86_64 manuals do, up from the leaf: a table of level l (1 = PT ... 5 =
 * PML5) is counted at index l - 1, and so is a leaf of level l (1: 4 KiB,
 * 2: 2 MiB, 3: 1 GiB).
 */
enum mmu_table_ix { MMU_PT, MMU_PD, MMU_PDPT, MMU_PML4, MMU_PML5, MMU_LEVELS };
enum mmu_page_ix { MMU_PAGE_4K, MMU_PAGE_2M, MMU_PAGE_1G, MMU_PAGE_SIZES };

/* What a space's tables hold. The arch layer keeps these as it changes the
 * tables; mmu_check_locked recounts them. Read under the space's lock. */
struct mmu_counts {
    uint64_t tables[MMU_LEVELS];     /* the space's own tables per level */
    uint64_t leaves[MMU_PAGE_SIZES]; /* present leaves per page size */
    uint64_t owned;                  /* leaves holding a frame reference (all 4 KiB) */
    uint64_t held;                   /* holds on page tables (pt_held.c) */
    uint64_t cow;                    /* owned leaves marked copy-on-write */
    uint64_t demand;                 /* demand-zero entries (not present, not in leaves) */
};

/* struct mmu_space, struct mmu_cursor and the address-format questions. */
#include "vmm/x86_64/mmu_arch.h"

/* Outcomes of the single-page shortcuts besides KMM_OK and KMM_E*. */
#define MMU_SLOW                                                                                   \
    1 /* not for the shortcut (a table to build, a huge leaf to cut): take the range path */

/* --- what the generic vmm provides to the arch layer ------------------------------- */

/* Table pages set aside for one operation, linked through their first word:
 * the table-page allocator the generic vmm passes in (map.c). */
struct vmm_tables {
    uint64_t head;
    unsigned n;
};

/* A zeroed table page from t (state PAGETABLE, entry count 0). t holds one:
 * the count function said how many the change takes. */
uint64_t vmm_tables_take(struct kmm *k, struct vmm_tables *t);

/* The gather (tlb.c): record the invalidation of one leaf [va, va + size)
 * (global: the TLB may hold it as a global entry); queue a frame or a table
 * page for release once the invalidations are done (a table that mapped
 * va: its release needs some invalidation on every CPU, so if none is
 * recorded yet va's page is: an INVLPG of any address drops every
 * paging-structure cache entry of the current PCID, Intel SDM Vol. 3A
 * §4.10.4.1, and the library uses no other PCID);
 * whether frees more releases fit. */
void vmm_gather_range(struct kmm_tlb_gather *g, uint64_t va, uint64_t size, bool global);
/* As n calls of vmm_gather_range for the 4 KiB leaves from va on. */
void vmm_gather_run(struct kmm_tlb_gather *g, uint64_t va, uint64_t n, bool global);
void vmm_gather_frame(struct kmm_tlb_gather *g, uint64_t pa);
void vmm_gather_table(struct kmm_tlb_gather *g, uint64_t pa, uint64_t va, bool global);
bool vmm_gather_room(const struct kmm_tlb_gather *g, unsigned frees);

/* Releases at once, for tables no CPU can be using (mmu_destroy): a table
 * page (entry count 0) and an owned frame's reference (aspace.c). */
void vmm_free_table(struct kmm *k, uint64_t pa);
void vmm_drop_owned(struct kmm *k, uint64_t pa);

/* Takes one more owned-mapping reference on the frame at pa, which an owned
 * leaf maps (a clone's copy of that leaf): false, nothing taken, if the
 * frame has the most mappings it can (aspace.c). */
bool vmm_share_owned(struct kmm *k, uint64_t pa);

/* The port's hook after entries changed (a port may mirror mappings with it): [va, va + size)
 * now maps pa with prot (KMM_PROT_*), or nothing when prot is 0 (map.c). */
void vmm_mapping_changed(const struct mmu_space *s, uint64_t va, uint64_t size, uint64_t pa,
                         unsigned prot);

/* The same for pages[0 .. n) just mapped from va with prot: one call per
 * run of consecutive frames, as if each run had been mapped with one
 * kmm_vm_map; nothing at all where the port's hook does nothing
 * (kmm_port_mirrors_mappings), which spares a pass over the array (map.c). */
void vmm_pages_changed(const struct mmu_space *s, uint64_t va, const uint64_t *pages, uint64_t n,
                       unsigned prot);

/* --- setting up and tearing down ------------------------------------------------ */

/* The table pages mmu_init_kernel takes: the root and the shared tables of
 * the kernel half below it. */
unsigned mmu_kernel_tables(void);

/* The kernel space with `levels` (4 or 5) paging levels, its tables from t.
 * Init only; cannot fail. */
void mmu_init_kernel(struct mmu_space *s, struct kmm *k, unsigned levels, struct vmm_tables *t);

/* A user space: an empty lower half and the kernel's shared kernel half,
 * its root from t (one page). No lock needed: nobody else knows s yet; the
 * kernel space's top level never changes after init. */
void mmu_init_user(struct mmu_space *s, const struct mmu_space *kernel, struct vmm_tables *t);

/* Frees every table of the user space s, the root included, and drops its
 * owned frames' references (vmm_drop_owned). No CPU may use s any more, so
 * nothing needs invalidating. */
void mmu_destroy(struct mmu_space *s);

/* --- map -------------------------------------------------------------------------- */

/* One map request, checked by the caller: [va, va + size) onto [pa, pa +
 * size), page aligned, in one half. */
struct mmu_map {
    uint64_t va, pa, size;
    uint64_t max_page; /* the largest leaf allowed: KMM_PAGE_4K, _2M or _1G */
    unsigned prot;     /* KMM_PROT_* */
    unsigned cache;    /* KMM_CACHE_*, 0 for write-back */
    bool owned;        /* the leaves hold frame references (max_page is 4 KiB) */
    bool demand;       /* demand-zero entries instead (pa ignored, max_page 4 KiB) */
};

/*
 * mmu_map_page_locked - the shortcut for one page (m->size is a page, not
 * demand-zero: those take mmu_map_locked) whose page table exists: KMM_OK, mapped; KMM_EBUSY, a
 * page is mapped there (nothing changed); MMU_SLOW, there is no page table (nothing changed). With
 * cur, KMM_OK only finds the free entry and stores it in *cur for mmu_map_page_commit_locked, so
 * the caller can take the frame's reference in between, under the same lock hold; an owned page
 * takes that way, and without cur the page is plain (mmu_map_one_locked). O(levels).
 */
int mmu_map_page_locked(struct mmu_space *s, const struct mmu_map *m, struct mmu_cursor *cur);

/*
 * mmu_map_one_locked - mmu_map_page_locked for the commonest map: one page
 * at va onto pa with prot and cache (KMM_CACHE_*, 0 for write-back), not
 * owned, no cursor; the arguments in registers. Same answers.
 */
int mmu_map_one_locked(struct mmu_space *s, uint64_t va, uint64_t pa, unsigned prot,
                       unsigned cache);
void mmu_map_page_commit_locked(struct mmu_space *s, const struct mmu_map *m,
                                const struct mmu_cursor *cur);

/* mmu_map_count_locked - KMM_EBUSY if a page of m's range is mapped, else
 * how many tables mmu_map_locked takes. O(pieces x levels). */
int mmu_map_count_locked(const struct mmu_space *s, const struct mmu_map *m);

/* mmu_map_locked - map m's range, which mmu_map_count_locked found free,
 * with tables from t. Cannot fail. O(pieces + tables). */
void mmu_map_locked(struct mmu_space *s, const struct mmu_map *m, struct vmm_tables *t);

/* A map of single pages at consecutive addresses, each its own frame (the
 * frames of kmm_vmap's array, or of a vmalloc batch): pages[i], page
 * aligned RAM, at va + i pages; [va, va + n pages) in one half. */
struct mmu_pages {
    uint64_t va;
    const uint64_t *pages;
    uint64_t n;
    unsigned prot;  /* KMM_PROT_* */
    unsigned cache; /* KMM_CACHE_*, 0 for write-back */
    bool owned;     /* the leaves hold frame references (taken by the caller) */
};

/* mmu_map_pages_count_locked - KMM_EBUSY if a page of m's range is mapped,
 * else how many tables mmu_map_pages_locked takes. One walk per page table
 * the range meets, then a look at each of its entries:
 * O(pages + tables x levels). */
int mmu_map_pages_count_locked(const struct mmu_space *s, const struct mmu_pages *m);

/* mmu_map_pages_locked - map m's pages, which mmu_map_pages_count_locked
 * found free, with tables from t: one walk per page table, then its entries
 * written in a row and its count raised once. Cannot fail.
 * O(pages + tables x levels). */
void mmu_map_pages_locked(struct mmu_space *s, const struct mmu_pages *m, struct vmm_tables *t);

/* mmu_map_pages_table_locked - the count and the walk above in one, for m
 * within one page table that exists (an area's whose tables are held, or a
 * neighbour's): that table's physical address if every entry of m, and the
 * one after them if the table holds it (an area's next page or guard
 * page), is free; 0 with *busy if one is used (or a huge leaf maps the span);
 * 0 otherwise (m meets two tables, or its table is missing: count and map
 * as above). mmu_map_pages_in_locked then writes m's leaves into the table
 * it returned, with the lock held since. One walk; O(levels + pages). */
uint64_t mmu_map_pages_table_locked(const struct mmu_space *s, const struct mmu_pages *m,
                                    bool *busy);
void mmu_map_pages_in_locked(struct mmu_space *s, uint64_t table, const struct mmu_pages *m);

/* mmu_replace_tables - the most tables mmu_replace_locked can take,
 * whatever is mapped now: the caller sets them aside before the lock, since
 * a replace may drop the lock between chunks. Reads no table; no lock. */
unsigned mmu_replace_tables(const struct mmu_space *s, const struct mmu_map *m);

/*
 * mmu_replace_locked - map m's range over whatever is there, from byte
 * `done` of it on: cuts huge leaves the range's ends fall in, invalidates
 * and (if owned) releases what it replaces through g, takes tables from t
 * and frees none. Stops when g has no room for another release and returns
 * the bytes done so far (m->size when finished): the caller finishes g
 * with the lock dropped and calls again. O(pieces + tables).
 */
uint64_t mmu_replace_locked(struct mmu_space *s, const struct mmu_map *m, uint64_t done,
                            struct vmm_tables *t, struct kmm_tlb_gather *g);

/* --- unmap and protect ------------------------------------------------------------------ */

/* mmu_cut_count_locked - KMM_ENOENT if a page of [va, va + size) is not
 * mapped, else how many tables cutting the huge leaves that hold its ends
 * takes (mmu_cut_locked). O(leaves of the range x levels). */
int mmu_cut_count_locked(const struct mmu_space *s, uint64_t va, uint64_t size);

/* mmu_cut_locked - split the huge leaves that hold va or va + size (but do
 * not start there), with tables from t, recording each split leaf's
 * invalidation in g: afterwards every leaf lies inside or outside the
 * range. Cannot fail. O(levels). */
void mmu_cut_locked(struct mmu_space *s, uint64_t va, uint64_t size, struct vmm_tables *t,
                    struct kmm_tlb_gather *g);

/* mmu_unmap_page_locked - the shortcut for one 4 KiB leaf at va: KMM_OK,
 * unmapped (invalidation and releases in g); KMM_ENOENT, va is not mapped;
 * MMU_SLOW, a huge leaf holds va or g has no room (nothing changed).
 * O(levels). */
int mmu_unmap_page_locked(struct mmu_space *s, uint64_t va, struct kmm_tlb_gather *g);

/* mmu_unmap_locked - unmap [va, va + size), cut already, from byte done on,
 * freeing tables as they empty (through g); stops when g has no room for
 * another leaf's releases and returns the bytes done (size when finished).
 * A page found unmapped is skipped: the caller's check said it was mapped,
 * so only a caller racing on the same range (which it must not) gets
 * there. O(leaves + tables freed). */
uint64_t mmu_unmap_locked(struct mmu_space *s, uint64_t va, uint64_t size, uint64_t done,
                          struct kmm_tlb_gather *g);

/* mmu_unmap_area_locked - the window's unmap of an area (4 KiB pages that
 * only the window maps) in one pass, with no count first: as
 * mmu_unmap_locked from byte *done on, but a page found unmapped is added
 * to *missing (an area whose entries a kernel changed behind the library's
 * back; the rest is unmapped all the same), and a huge leaf, which only
 * such entries put there, stops it at that leaf. Updates *done; returns
 * true iff it stopped at a huge leaf (nothing changed from there on).
 * O(leaves + tables freed). */
bool mmu_unmap_area_locked(struct mmu_space *s, uint64_t va, uint64_t size, uint64_t *done,
                           struct kmm_tlb_gather *g, uint64_t *missing);

/* mmu_protect_locked - give every leaf of [va, va + size), mapped and cut
 * already, the protection prot (KMM_PROT_*; frame, size, cache mode and
 * ownership stay), recording in g each leaf that loses a right, and telling
 * the port of each (vmm_mapping_changed). O(leaves). */
void mmu_protect_locked(struct mmu_space *s, uint64_t va, uint64_t size, unsigned prot,
                        struct kmm_tlb_gather *g);

/* --- held page tables (vmap blocks, vmm/vblock.c; x86_64/pt_held.c) ------------------ */

/* What a hold adds to a page table's entry count: the count never reaches
 * 0 while the hold is there, so the table is never freed by an unmap. */
#define MMU_TABLE_HOLD (UINT32_C(1) << 16)

/* mmu_hold_count_locked - how many tables mmu_hold_table_locked takes to
 * build the path to va's page table, or KMM_EBUSY if a huge leaf maps its
 * span (or the table carries as many holds as its count takes). A table
 * may carry several holds. O(levels). */
int mmu_hold_count_locked(const struct mmu_space *s, uint64_t va);

/* mmu_hold_table_locked - build va's page table (tables from t) and add a
 * hold to it; returns its physical address. Cannot fail. O(levels). */
uint64_t mmu_hold_table_locked(struct mmu_space *s, uint64_t va, struct vmm_tables *t);

/* mmu_unhold_table_locked - drop a hold of va's page table: if it was the
 * last and no entry is present, the table and the tables that empty above
 * it are queued in g (a fresh gather: it has room). O(levels). */
void mmu_unhold_table_locked(struct mmu_space *s, uint64_t va, struct kmm_tlb_gather *g);

/* mmu_held_table_locked - the held page table of va's span, or 0 if that
 * span has no page table or it carries no hold (kmm_check). O(levels). */
uint64_t mmu_held_table_locked(const struct mmu_space *s, uint64_t va);

/* mmu_held_map_locked - write pages[0 .. n) (not owned, all inside the
 * held page table `table`, their entries clear) as 4 KiB write-back leaves
 * from va with protection prot, without a walk. Cannot fail. O(n). */
void mmu_held_map_locked(struct mmu_space *s, uint64_t table, uint64_t va, const uint64_t *pages,
                         uint64_t n, unsigned prot);

/* mmu_held_unmap_locked - clear the n present, unowned 4 KiB leaves from va
 * inside the held page table `table`, the invalidation of each that a TLB
 * may hold (pt_leaf_cached) recorded in g; frees nothing (the table stays
 * held). Returns whether it recorded any: if not, no TLB holds any of the
 * n pages, and the range may be reused at once. O(n). */
bool mmu_held_unmap_locked(struct mmu_space *s, uint64_t table, uint64_t va, uint64_t n,
                           struct kmm_tlb_gather *g);

/* What mmu_held_unmap_one_locked found of the leaf it cleared: 0 if no TLB
 * may hold it (nothing to invalidate), else MMU_HELD_CACHED, with
 * MMU_HELD_GLOBAL if its translation may be global. */
#define MMU_HELD_CACHED 1u
#define MMU_HELD_GLOBAL 2u

/* mmu_held_unmap_one_locked - mmu_held_unmap_locked of the one page at va,
 * with no gather: the caller records the page's invalidation itself when
 * the answer asks for one. O(1). */
unsigned mmu_held_unmap_one_locked(struct mmu_space *s, uint64_t table, uint64_t va);

/* --- faults and clones (pt_fork.c) --------------------------------------------------- */

/* What the entry of a faulting address needs (mmu_fault_look_locked). */
enum mmu_fault_need {
    MMU_FAULT_UNMAPPED, /* nothing maps the address */
    MMU_FAULT_DENIED,   /* the mapping does not allow the access (and it is no COW write) */
    MMU_FAULT_ALLOWED,  /* the entry allows the access already */
    MMU_FAULT_DEMAND,   /* a demand-zero page: a zeroed frame (mmu_fault_fill_locked) */
    MMU_FAULT_COW,      /* a write to a COW page that may be written (mmu_fault_cow_locked) */
};

/* What mmu_fault_look_locked found, for the commit under the same lock hold. */
struct mmu_fault {
    enum mmu_fault_need need;
    uint64_t frame;        /* MMU_FAULT_COW: the shared frame */
    struct mmu_cursor cur; /* the entry */
};

/* mmu_fault_look_locked - what a fault at va (page aligned, canonical, in
 * s's own half) by an access of kind access (KMM_FAULT_*) needs, as s's
 * entry for va says now. Changes nothing. O(levels). */
void mmu_fault_look_locked(const struct mmu_space *s, uint64_t va, unsigned access,
                           struct mmu_fault *f);

/* mmu_fault_fill_locked - the demand-zero page f found at va becomes a
 * present owned leaf of frame pa (zeroed, its owned-mapping reference
 * taken by the caller), and the port is told. Nothing to invalidate: the
 * entry was not present. O(1). */
void mmu_fault_fill_locked(struct mmu_space *s, uint64_t va, const struct mmu_fault *f,
                           uint64_t pa);

/* mmu_fault_cow_locked - the COW leaf f found at va becomes private and
 * writable (if the mapping may write): with pa 0 on its own frame (the
 * last mapping of it: nothing to invalidate, its rights only grow), else
 * on frame pa (a copy, its reference taken by the caller), the old
 * translation's invalidation and the shared frame's release recorded in
 * g. The port is told. O(1). */
void mmu_fault_cow_locked(struct mmu_space *s, uint64_t va, const struct mmu_fault *f, uint64_t pa,
                          struct kmm_tlb_gather *g);

/* mmu_clone_tables - the tables a copy of the user space s's lower half
 * takes: its own, but the root. Under s's lock; O(1). */
unsigned mmu_clone_tables(const struct mmu_space *s);

/*
 * mmu_clone_copy_locked - make the empty lower half of child (a new user
 * space nobody else knows) a copy of s's, with tables from t (as many as
 * mmu_clone_tables said): every entry as it is, except that an owned leaf
 * takes a reference for the child (vmm_share_owned) and is marked COW in
 * the child. s does not change. Returns false if a reference could not be
 * taken: child then holds a consistent part of the copy, which
 * mmu_destroy takes apart (dropping the references taken). O(tables +
 * entries).
 */
bool mmu_clone_copy_locked(const struct mmu_space *s, struct mmu_space *child,
                           struct vmm_tables *t);

/* mmu_clone_mark_locked - after mmu_clone_copy_locked succeeded, mark s's
 * owned leaves COW as the child's are, recording in g each that loses its
 * write right and telling the port. Cannot fail. O(tables + entries). */
void mmu_clone_mark_locked(struct mmu_space *s, struct kmm_tlb_gather *g);

/* --- looking -------------------------------------------------------------------------------- */

/* mmu_translate - KMM_OK and *out for the canonical va, or KMM_ENOENT if
 * nothing maps it. Unlike the *_locked calls it takes lock, the space's, by
 * itself, for the walk alone, and describes the entry it read after
 * dropping it: the shortest hold for the most frequent call (M1's
 * translate is 5 % faster than with the description under the lock).
 * O(levels). */
int mmu_translate(const struct mmu_space *s, kmm_lock_t *lock, uint64_t va,
                  struct kmm_vm_translation *out);

/* mmu_query_locked - *out: the longest run from va (page aligned) below
 * limit, both in one half, of pages unmapped alike or mapped alike
 * (kmm_vm_query). Returns its steps (walks: one per leaf, absent entry or
 * empty table passed; the tests' seam, vmm/seam.h). O(levels) per table
 * crossed and per leaf of the run; an empty shared table is passed whole. */
uint64_t mmu_query_locked(const struct mmu_space *s, uint64_t va, uint64_t limit,
                          struct kmm_vm_run *out);

/* mmu_check_locked - kmm_check's recount of s (a user space: its lower
 * half, and that its kernel half links the kernel's tables): every table a
 * PAGETABLE page whose entry count is right, leaves well formed, owned
 * frames allocated, s->counts exact. Reports through r, naming s as tag. */
void mmu_check_locked(const struct mmu_space *s, const struct mmu_space *kernel, const void *tag,
                      struct kmm_check_result *r);

#endif /* KMM_VMM_MMU_H */
