/*
 * kmm/vm.h - address spaces and the page-table engine (x86_64).
 *
 * An address space is a tree of page tables. The kernel space exists from
 * kmm_init on; user spaces are created and destroyed at will. The upper
 * (kernel) half is the same in every space: kmm_init creates every table of
 * the level below the top for the kernel half once, and each user space
 * links to them, so a kernel mapping made later appears in every space
 * without touching any of them. Those tables are never freed.
 *
 * Ranges: map, unmap and protect act on [va, va + size) in whole 4 KiB
 * pages. Every call validates all of its input and everything it would
 * change first; a call that fails changes nothing (no entry, no table, no
 * reference). Intermediate tables are created on demand and freed when
 * their last entry goes.
 *
 * Huge pages: with KMM_MAP_HUGE (KMM_MAP_HUGE_1G), map uses a 2 MiB (1 GiB)
 * page for each part of the range where va and pa are both aligned to it
 * and the range covers it whole, and 4 KiB pages elsewhere. Owned mappings
 * always use 4 KiB pages (a reference is per single page), and so does a
 * span whose page table is kept (a populated raw area's: kmm/vmalloc.h). An unmap or
 * protect (or a replacing map) that covers only part of a huge page first
 * splits it into a table of the next smaller size, every other byte keeping
 * its frame, protection and cache mode; the tables a split needs are
 * allocated before anything changes, and without them the call fails with
 * KMM_ENOMEM and nothing changed.
 *
 * Ownership: by default a mapping does not own its frame: unmapping it
 * leaves the frame to the caller (kmm_vm_translate before unmapping tells
 * which one it was). With KMM_MAP_OWNED, mapping takes a reference on each
 * frame (an allocated single page of kmm_page_alloc, not the first page of
 * a kmm_run_alloc run; kmm/page.h) and unmapping drops it once the TLBs are
 * clean, freeing the frame if nothing else holds it. That reference is the
 * mapping's own: the caller may drop theirs (kmm_page_free) right after the
 * map, as vmalloc does, but kmm_page_free never drops the mapping's, so a
 * frame cannot be freed while it is mapped owned (KMM_EBUSY).
 *
 * TLB: a change that removes or weakens a mapping is followed by the
 * invalidation it needs: per page up to KMM_TLB_PAGE_LIMIT pages, the whole
 * TLB beyond (global entries too when the kernel space changed), on this
 * CPU and, through the port's shootdown, on the others. Frames and table
 * pages an operation releases go back to the page allocator only after
 * those invalidations are complete. The *_g variants collect the work in a
 * caller's kmm_tlb_gather instead; it completes at kmm_tlb_finish.
 *
 * Misuse (SPEC §9): every refused call returns its error with nothing
 * changed, is counted once in kmm_vm_stats.misuse (the instance's, for
 * every space) and logged once with the caller's address. A call given
 * something that is not a live space (NULL, destroyed, scribbled) has no
 * instance to count in: it returns KMM_EINVAL unlogged.
 *
 * Context: a call holds the space's lock, a spinlock taken with IRQs
 * saved and disabled, only while it looks at or changes the tables. Calls
 * that change mappings (map, unmap, protect and their _g forms) may
 * allocate table pages with reclaim and may wait for other CPUs' TLB
 * shootdowns: call them with IRQs on, never from an interrupt handler.
 * Translate, query, kmm_vm_stats and kmm_aspace_root may run with IRQs on
 * or off and in an interrupt handler (not an NMI). Calls on different
 * ranges of one space, or on different spaces, may run at the same time;
 * calls on overlapping ranges of one space must not (a kernel serialises
 * them as it does mmap and munmap).
 */
#ifndef KMM_VM_H
#define KMM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>

struct kmm_aspace;

/* Protections. Every present page is readable (x86 has no write-only or
 * execute-only pages); KMM_PROT_READ alone means read-only, no execute. */
#define KMM_PROT_READ   0x01u
#define KMM_PROT_WRITE  0x02u
#define KMM_PROT_EXEC   0x04u
#define KMM_PROT_USER   0x08u /* accessible from user mode */
#define KMM_PROT_GLOBAL 0x10u /* survives address-space switches (kernel only) */
#define KMM_PROT_MASK   0x1fu

/* Mapping flags, or-ed with the protection in kmm_vm_map. */
#define KMM_MAP_OWNED   0x100u  /* take a reference on each frame; unmap drops it */
#define KMM_MAP_REPLACE 0x200u  /* replace existing mappings instead of failing */
#define KMM_MAP_HUGE    0x400u  /* 2 MiB pages where va and pa are 2 MiB aligned */
#define KMM_MAP_HUGE_1G 0x800u  /* 1 GiB pages where aligned (and 2 MiB ones where not) */
#define KMM_MAP_ALIAS   0x1000u /* RAM in a cache mode other than write-back (see below) */
#define KMM_MAP_DEMAND  0x2000u /* demand-zero: no frame until first touched (see below) */

/*
 * Demand-zero pages (KMM_MAP_DEMAND): kmm_vm_map reserves [va, va + size)
 * with the protection given and pa 0, and maps no frame. The first access
 * faults (the CPU's page-fault handler calls kmm_vm_fault), which maps a
 * zeroed page there, owned (as KMM_MAP_OWNED). Until then the page is in
 * use as far as the range calls go: a map over it is KMM_EBUSY, unmap
 * removes it (no frame to drop), protect changes what the first touch will
 * map; kmm_vm_translate says KMM_ENOENT (no frame translates it), and
 * kmm_vm_query shows it as mapped with demand set and pa 0. With DEMAND,
 * OWNED, REPLACE, HUGE, HUGE_1G and ALIAS are refused, and so is a cache
 * mode other than KMM_CACHE_WB (the page will be RAM). Stored in a
 * non-present entry, it costs no memory but its page table.
 */

/*
 * Cache modes (memory types), one of them or-ed into kmm_vm_map's flags.
 * Without one, a mapping of RAM is write-back and a mapping of anything
 * else is refused (device memory must say how it is cached). RAM mapped in
 * another mode than write-back would alias the direct map's write-back
 * mapping of the same frames, which the CPU does not keep coherent: it
 * needs KMM_MAP_ALIAS as well, saying the caller has dealt with that.
 *
 * The entries select a PAT entry (PWT, PCD and the PAT bit: bit 7 of a 4 KiB
 * entry, bit 12 of a 2 MiB or 1 GiB one). The kernel programs IA32_PAT (MSR
 * 0x277) with KMM_PAT_VALUE on every CPU before using KMM_CACHE_WC:
 *   PAT0 WB  PAT1 WT  PAT2 UC-  PAT3 UC  PAT4 WC  PAT5 WT  PAT6 UC-  PAT7 UC
 * Entries 0..3 are the power-on default, so write-back, write-through and
 * uncached mean the same before it is programmed; WC is PAT4, which is
 * write-back until then.
 */
#define KMM_CACHE_WB   (1u << 16) /* write-back: ordinary memory */
#define KMM_CACHE_WT   (2u << 16) /* write-through */
#define KMM_CACHE_UC   (3u << 16) /* uncached (strong): device registers */
#define KMM_CACHE_WC   (4u << 16) /* write-combining: frame buffers */
#define KMM_CACHE_MASK (7u << 16)
#define KMM_PAT_VALUE  UINT64_C(0x0007040100070406)

/* Page sizes a mapping can have. */
#define KMM_PAGE_4K UINT64_C(0x1000)
#define KMM_PAGE_2M UINT64_C(0x200000)
#define KMM_PAGE_1G UINT64_C(0x40000000)

/* Above this many pages, one invalidation of the whole TLB is cheaper. */
#define KMM_TLB_PAGE_LIMIT 32

/* --- address spaces ------------------------------------------------------------ */

/* The kernel space (created by kmm_init; lives until kmm_fini). Any
 * context. */
struct kmm_aspace *kmm_kernel_aspace(struct kmm *k);

/*
 * kmm_aspace_create - a new user space of the live instance k: an empty
 * lower half and the kernel half shared with the kernel space (a kernel
 * mapping made later appears in it at once). It takes two pages: the one
 * holding the space and its top-level table. Returns KMM_OK and *out, or
 * KMM_ENOMEM (nothing allocated, *out untouched). The space is active on no
 * CPU until kmm_aspace_activate; free it with kmm_aspace_destroy before
 * kmm_fini. IRQs on (it may reclaim); O(1).
 */
int kmm_aspace_create(struct kmm *k, struct kmm_aspace **out);

/*
 * kmm_aspace_destroy - unmap everything in the lower half of the user space
 * as of instance k, free every table and the space itself. Frames mapped
 * with KMM_MAP_OWNED lose the mapping's reference (freed if it was the last
 * one); every other frame stays the caller's. Returns KMM_OK, or with
 * nothing changed, counted and logged:
 *   KMM_EINVAL  as is NULL, the kernel space (it cannot be destroyed),
 *               destroyed already (but see below), or not a space of k: as
 *               is looked up in k's list of spaces before it is read;
 *   KMM_EBUSY   a gather holds work of this space that kmm_vm_unmap_g or
 *               kmm_vm_protect_g left in it (invalidations, releases): it
 *               must be finished first, since kmm_tlb_finish reads its
 *               space.
 * k NULL: KMM_EINVAL, unlogged. The space must be active on no CPU (nothing
 * is invalidated), and no other call may be using it: a clone, fault, map
 * or query on another CPU meanwhile would read freed tables (the refusal
 * of a destroyed space holds only for calls that start after destroy). A gather begun on it that
 * holds no work is not seen: it must not be used or finished once the space is gone (kmm_tlb_finish
 * would read freed memory). as is invalid afterwards.
 * Stale handles: the space's page goes back to the page allocator, and a
 * later kmm_aspace_create may make a space of that same page, with the
 * same address. A destroyed handle is refused only until that happens;
 * from then on it is the new space's handle, and destroying through it
 * destroys the new space. Drop the handle at destroy, as a freed pointer.
 * IRQs on; O(tables + mapped pages).
 */
int kmm_aspace_destroy(struct kmm *k, struct kmm_aspace *as);

/*
 * kmm_aspace_clone - a new user space of parent's instance whose lower half
 * is a copy of the user space parent's, for fork. Owned 4 KiB pages
 * (KMM_MAP_OWNED, demand-zero pages touched, earlier clones' copies) are
 * shared copy-on-write: each becomes read-only in both spaces, marked COW,
 * and the child's entry takes a reference on the frame; the first write in
 * either space faults and kmm_vm_fault gives that space a private copy (or
 * the frame itself back, writable, when no other mapping holds it). The
 * parent's pages that lose their write right this way are invalidated on
 * every CPU before the call returns. An owned page is private to the space
 * that maps it: memory to share writable between spaces is mapped without
 * KMM_MAP_OWNED. Demand-zero pages are copied as demand-zero pages.
 * Everything else (the caller's frames, device memory, huge pages) is
 * copied as it is: the child maps the same frames with the same rights, and
 * they stay the caller's. The kernel half is the shared one, as in every
 * space.
 *
 * Returns KMM_OK and *out (the child: active on no CPU, freed with
 * kmm_aspace_destroy), or, with parent exactly as it was and *out
 * untouched:
 *   KMM_ENOMEM  no memory for the child's space or tables (they are counted
 *               and set aside, then the child is built under the parent's
 *               lock with code that cannot fail, and only then is the
 *               parent marked);
 *   KMM_ESTATE  an owned frame already has the most owned mappings a frame
 *               can (UINT32_MAX - 1);
 *   KMM_EINVAL  parent is NULL, not a live space, or the kernel space, or
 *               out is NULL (counted and logged; NULL or a dead parent
 *               unlogged, as there is no instance).
 * Calls on the parent at the same time wait for its lock; the parent's
 * other CPUs may keep running its threads (their writes until the
 * invalidation reach the shared frames, as with fork anywhere). IRQs on (it
 * may reclaim and waits for shootdowns); O(parent's tables + entries).
 */
int kmm_aspace_clone(struct kmm_aspace *parent, struct kmm_aspace **out);

/*
 * kmm_aspace_activate - make the live space as the current one of this CPU:
 * the port loads its root (kmm_port_load_root, CR3), with the TLB effects
 * that has (global entries stay). as is not checked: a bad one reaches the
 * port. The caller keeps the CPU from being switched meanwhile (IRQs off
 * or preemption off) and must activate another space before destroying
 * this one. Any context but an NMI; O(1).
 */
void kmm_aspace_activate(struct kmm_aspace *as);

/* The physical address of the live space's top-level table (what CR3
 * holds). Any context; O(1). */
uint64_t kmm_aspace_root(const struct kmm_aspace *as);

/* --- ranges ------------------------------------------------------------------------ */

/*
 * kmm_vm_map - map [va, va + size) to [pa, pa + size) with flags (KMM_PROT_*
 * | KMM_MAP_*). Returns KMM_OK, or with nothing changed:
 *   KMM_EINVAL  va, pa or size not page aligned; size 0; the range wraps,
 *               is not canonical, or crosses from one half to the other; a
 *               user space asked to map in the kernel half; unknown flags
 *               or cache mode; KMM_PROT_GLOBAL in a user space or with
 *               KMM_PROT_USER; a cache mode other than KMM_CACHE_WB for
 *               RAM without KMM_MAP_ALIAS;
 *   KMM_ERANGE  no cache mode and the physical range is not entirely RAM
 *               (device memory needs one), or OWNED and it is not RAM;
 *   KMM_EBUSY   a page of the range is mapped already (without REPLACE);
 *               or, on the kernel space and with or without REPLACE, the
 *               kernel virtual area window keeps a page of it (kmm/vmalloc.h):
 *               an area's guard page, a page of a vmalloc or vmap area,
 *               of an area being set up or freed, or of a freed area the
 *               window keeps for reuse (parked; kmm_kva_purge gives it
 *               back) (a raw area's own pages are its caller's to map);
 *   KMM_ESTATE  OWNED and a frame is not an allocated single page (or is a
 *               run's first page), also when another CPU frees it while
 *               this call maps it: the references are taken, under the
 *               frame's zone lock, before any entry changes; or a frame has
 *               the most owned mappings a frame can (UINT32_MAX - 1);
 *   KMM_ENOMEM  no memory for the tables.
 * With KMM_MAP_REPLACE, what is replaced is invalidated and (if owned)
 * released through a gather that is finished whenever it fills, with the
 * space's lock dropped meanwhile (KMM_TLB_GATHER_FREES owned frames per
 * chunk). The call is still validated once, before anything changes, and
 * that validation holds to its end: on the kernel space, the part of the
 * range inside the kernel virtual area window is held there from the
 * window check on, so no area can be reserved in it (kmm/vmalloc.h) while
 * the lock is dropped; the replace then always completes.
 * O(pages + tables).
 */
int kmm_vm_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags);

/*
 * kmm_vm_unmap - unmap [va, va + size). Every page of the range must be
 * mapped. Returns KMM_OK, or with nothing changed KMM_EINVAL (alignment,
 * canonical, halves, size), KMM_EBUSY (on the kernel space, the kernel
 * virtual area window keeps a page of the range: a guard page, a page of a
 * vmalloc or vmap area, of an area being set up or freed, or of a parked
 * area, as for kmm_vm_map; kmm/vmalloc.h), KMM_ENOENT (a page of the range is not
 * mapped) or KMM_ENOMEM (a huge page must be split and there is no memory
 * for the table). Frames mapped without KMM_MAP_OWNED stay the caller's;
 * owned ones lose the mapping's reference after the invalidations. Tables
 * that empty are freed, after the invalidations too. O(pages + tables).
 */
int kmm_vm_unmap(struct kmm_aspace *as, uint64_t va, uint64_t size);

/*
 * kmm_vm_protect - set the protection of [va, va + size) (KMM_PROT_* only;
 * ownership and cache mode do not change). Every page must be mapped.
 * Errors as kmm_vm_unmap (KMM_EBUSY for the window's pages included), plus
 * KMM_EINVAL for flags as in kmm_vm_map.
 */
int kmm_vm_protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot);

/* What one address translates to. */
struct kmm_vm_translation {
    uint64_t pa;        /* the physical address of va (with its page offset) */
    unsigned prot;      /* KMM_PROT_* of the mapping */
    unsigned cache;     /* its KMM_CACHE_* mode */
    uint64_t page_size; /* KMM_PAGE_4K, KMM_PAGE_2M or KMM_PAGE_1G */
    bool owned;         /* the mapping holds a reference on its frame */
    bool cow;           /* copy-on-write (kmm_aspace_clone): prot says what the mapping
                           allows, but the CPU sees it read-only until a write fault
                           copies the frame (kmm_vm_fault) */
};

/* kmm_vm_translate - fill *out for va. Returns KMM_OK, KMM_ENOENT if va is
 * not mapped or is a demand-zero page not touched yet (no frame: an
 * answer, not a mistake: not counted; *out untouched), or
 * KMM_EINVAL if va is not canonical or out is NULL (counted in
 * kmm_vm_stats.misuse and logged with the caller). What it says may be
 * stale as soon as it returns if another CPU changes the page. IRQs on or
 * off, interrupt handlers too; O(levels). */
int kmm_vm_translate(struct kmm_aspace *as, uint64_t va, struct kmm_vm_translation *out);

/* kmm_vm_map_caller, kmm_vm_unmap_caller, kmm_vm_protect_caller,
 * kmm_vm_translate_caller - the calls above for a wrapper (a compatibility
 * layer): a rejection is logged with caller, the wrapper's own caller,
 * instead of the wrapper. Same results, bounds and contexts. */
int kmm_vm_map_caller(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size,
                      unsigned flags, const void *caller);
int kmm_vm_unmap_caller(struct kmm_aspace *as, uint64_t va, uint64_t size, const void *caller);
int kmm_vm_protect_caller(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                          const void *caller);
int kmm_vm_translate_caller(struct kmm_aspace *as, uint64_t va, struct kmm_vm_translation *out,
                            const void *caller);

/*
 * kmm_vm_query - describe the mapping state from va up to limit: *out gets
 * the longest run starting at va of pages that are all unmapped, or all
 * mapped with the same protection, cache mode, ownership and copy-on-write
 * state to consecutive frames (whatever their page sizes), or all
 * demand-zero with the same protection and cache mode, cut at limit. out->va is va,
 * out->size the run's bytes (> 0); pa, prot, cache and owned are set for a
 * mapped run and 0 for an unmapped one. Returns KMM_OK, or KMM_EINVAL
 * (counted and logged; *out untouched) when out is NULL, va is not page
 * aligned, limit <= va, va or limit - 1 is not canonical, or the two lie
 * in different halves (a range never spans the non-canonical hole). Walk
 * the whole of [va, limit) by calling again from out->va + out->size.
 *
 * It holds the space's lock, IRQs off, for the whole walk: O(levels) per
 * table the run crosses and per leaf it holds; an unmapped stretch costs
 * one step per absent entry or empty table, never one per page, so
 * querying a whole empty half takes at most 512 steps. IRQs on or off,
 * interrupt handlers too (mind the walk's length with long mapped runs).
 */
struct kmm_vm_run {
    uint64_t va, size;
    bool mapped;
    uint64_t pa; /* when mapped: the physical address of va */
    unsigned prot;
    unsigned cache; /* KMM_CACHE_* */
    bool owned;
    bool demand; /* demand-zero pages not touched yet (mapped, pa 0, not owned) */
    bool cow;    /* copy-on-write pages (see kmm_vm_translation.cow) */
};
int kmm_vm_query(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out);

/* --- faults ------------------------------------------------------------------------ */

/* What the faulting access was, for kmm_vm_fault (a read is none of them).
 * On x86_64 they are the page-fault error code's bits W (1), U/S (2) and
 * I/D (4) as they are: kmm_vm_fault(as, cr2, err & KMM_FAULT_MASK, &how). */
#define KMM_FAULT_WRITE 0x2u  /* a write */
#define KMM_FAULT_USER  0x4u  /* from user mode */
#define KMM_FAULT_EXEC  0x10u /* an instruction fetch */
#define KMM_FAULT_MASK  (KMM_FAULT_WRITE | KMM_FAULT_USER | KMM_FAULT_EXEC)

/* What kmm_vm_fault did about a fault it handled. */
enum kmm_vm_fault_kind {
    KMM_FAULT_NONE = 0,    /* not handled */
    KMM_FAULT_DEMAND_ZERO, /* a demand-zero page got a zeroed frame */
    KMM_FAULT_COW_COPY,    /* a copy-on-write page got a private copy of its frame */
    KMM_FAULT_COW_REUSE,   /* a copy-on-write page was the frame's last mapping: made
                              writable again in place */
    KMM_FAULT_SPURIOUS,    /* the entry allows the access already (another CPU resolved
                              it, or a stale TLB entry): this CPU's entry invalidated */
};

/*
 * kmm_vm_fault - resolve a page fault at va in the space as (the space
 * active on the faulting CPU; a fault in the kernel half is resolved in the
 * kernel space, whichever space as is), for an access of kind access
 * (KMM_FAULT_*). Handles a demand-zero page (maps a zeroed page, owned) and
 * a write to a copy-on-write page that allows writing (a private copy,
 * owned and writable, the shared frame's reference dropped once every CPU's
 * TLB has let go of it; or the frame itself made writable when this is its
 * only mapping). The entry is looked at again under the space's lock after
 * the page is allocated, so two CPUs faulting on one page at once both
 * return handled, one of them SPURIOUS.
 *
 * Returns KMM_OK iff the fault is handled: the faulting instruction can be
 * run again; *how (if not NULL) says what was done. Otherwise *how is
 * KMM_FAULT_NONE and the return value is why, with nothing changed:
 *   KMM_ENOENT  nothing maps va (a kernel's own bug, or a user program's:
 *               SIGSEGV): an answer, neither counted nor logged;
 *   KMM_EACCES  the mapping does not allow the access and it is not
 *               copy-on-write: a write to a read-only page, a fetch from a
 *               no-execute page, a user access to a kernel page (SIGSEGV);
 *               not counted either;
 *   KMM_ENOMEM  no page for the zeroed page or the copy (the kernel may
 *               wait and retry, or kill the faulting program);
 *   KMM_EINVAL  as is not a live space (unlogged), va is not canonical (the
 *               CPU raises #GP there, never #PF), or access has unknown
 *               bits: counted in kmm_vm_stats.misuse and logged.
 * It allocates with reclaim allowed and with no lock held, and a copy's
 * invalidation waits for other CPUs: call it with IRQs on (a #PF handler
 * turns them back on if the faulting code had them on; see
 * docs/architecture.md, "Faults"), never while holding a kmm lock.
 * O(levels) + one page's zeroing or copy.
 */
int kmm_vm_fault(struct kmm_aspace *as, uint64_t va, unsigned access, enum kmm_vm_fault_kind *how);

/* --- TLB batching ---------------------------------------------------------------- */

/* The most frame and table releases one gather holds before it must be
 * finished (an unmap that releases more finishes it early, in chunks). */
#define KMM_TLB_GATHER_FREES 64

/*
 * A gather's bookkeeping. Private to the library: a caller never reads or
 * writes these fields; they are in the header only so that a gather can
 * live on the caller's stack.
 */
struct kmm_tlb_gather_private {
    struct kmm_aspace *as;               /* the space whose changes it holds */
    uint64_t start, last;                /* the span of the changes (inclusive) */
    uint64_t table_mask;                 /* bit i set: free[i] is a table page, else a frame */
    uint16_t npages;                     /* leaves recorded in pages[] */
    uint16_t nfree;                      /* releases waiting in free[] */
    bool all;                            /* more than KMM_TLB_PAGE_LIMIT: flush everything */
    bool global;                         /* kernel-half or global mappings changed */
    bool pending;                        /* counted in its space's unfinished gathers */
    uint64_t pages[KMM_TLB_PAGE_LIMIT];  /* leaves to invalidate one by one (first address) */
    uint64_t free[KMM_TLB_GATHER_FREES]; /* frames and table pages to release afterwards */
};

/* A gather's size: its stack cost, mostly the pages to invalidate and the
 * releases waiting. The calls without _g keep one in their own frame. */
#define KMM_TLB_GATHER_BYTES 808

/*
 * A gather: the invalidations and releases of one or more unmaps and
 * protects on one space, done together at kmm_tlb_finish. Declare one (on
 * the stack: KMM_TLB_GATHER_BYTES), start it with kmm_tlb_gather_init,
 * pass it to kmm_vm_unmap_g and kmm_vm_protect_g on that space, and finish
 * it. Until it is finished, the frames and tables it holds stay allocated
 * and the TLBs may still hold what it would invalidate: finish it before
 * the unmapped memory is reused, before the space is destroyed
 * (kmm_aspace_destroy refuses while a gather holds the space's work), and
 * before the gather goes out of scope.
 */
struct kmm_tlb_gather {
    struct kmm_tlb_gather_private priv; /* the library's: never touched by callers */
};

/* kmm_tlb_gather_init - start gather g on the live space as (empty). A
 * finished gather is started again by kmm_tlb_finish; starting one that
 * still holds work instead drops that work (its releases leak, and its
 * space can no longer be destroyed). Any context; O(1). */
void kmm_tlb_gather_init(struct kmm_tlb_gather *g, struct kmm_aspace *as);

/*
 * kmm_tlb_finish - do the invalidations g collected: page by page up to
 * KMM_TLB_PAGE_LIMIT pages, the whole TLB beyond (global entries too when
 * the kernel half changed), on this CPU and then, through the port's
 * shootdown, on every other CPU, which completes before it returns. Only
 * then are the frames and tables g holds released: an owned frame loses
 * the mapping's reference (freed if it was the last), a table page goes
 * back to the page allocator. g is empty afterwards, started on the same
 * space. Cannot fail. It waits for other CPUs: IRQs on, no kmm lock held
 * (the space's lock included), never from an interrupt handler;
 * O(pages + releases).
 */
void kmm_tlb_finish(struct kmm_tlb_gather *g);

/*
 * kmm_vm_unmap_g, kmm_vm_protect_g - kmm_vm_unmap and kmm_vm_protect whose
 * invalidations and releases go to the caller's g, started on as; they
 * complete at kmm_tlb_finish(g), so a caller changing many ranges pays for
 * one shootdown. A g that fills up is finished early (its earlier work
 * included), so memory is never held back without bound: the call may
 * therefore wait for other CPUs like kmm_tlb_finish. Returns as
 * kmm_vm_unmap and kmm_vm_protect, and KMM_EINVAL with nothing changed,
 * counted and logged, when g is NULL or was started on another space
 * (its shootdown would name the wrong root). IRQs on, never from an
 * interrupt handler; O(pages + tables).
 */
int kmm_vm_unmap_g(struct kmm_aspace *as, uint64_t va, uint64_t size, struct kmm_tlb_gather *g);
int kmm_vm_protect_g(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot,
                     struct kmm_tlb_gather *g);

/* --- statistics ------------------------------------------------------------------ */

/* Indexes of kmm_vm_stats.tables: a table's level, numbered up from the
 * leaf as the x86_64 manuals do (index 0 is unused). */
enum kmm_vm_level {
    KMM_VM_PT = 1,   /* page tables: 4 KiB leaves */
    KMM_VM_PD = 2,   /* page directories: 2 MiB leaves or page tables */
    KMM_VM_PDPT = 3, /* directory pointer tables: 1 GiB leaves or directories */
    KMM_VM_PML4 = 4, /* the top with 4 levels */
    KMM_VM_PML5 = 5, /* the top with 5 levels (LA57) */
};

struct kmm_vm_stats {
    uint64_t tables[6];    /* page tables per level, by enum kmm_vm_level */
    uint64_t mapped_pages; /* 4 KiB leaves present */
    uint64_t mapped_2m;    /* 2 MiB leaves present */
    uint64_t mapped_1g;    /* 1 GiB leaves present */
    uint64_t owned_pages;  /* 4 KiB leaves holding a frame reference */
    uint64_t table_bytes;  /* memory in page tables */
    uint64_t misuse;       /* calls rejected on any space of the instance; never decreases */
};

/*
 * Copy-on-write and demand-zero figures of one space (kmm_vm_fault_stats).
 * A separate structure from kmm_vm_stats, whose layout struct kmm_stats
 * embeds (kmm/stats.h grows at its end only).
 */
struct kmm_vm_fault_stats {
    uint64_t cow_pages;    /* owned 4 KiB leaves marked copy-on-write now */
    uint64_t demand_pages; /* demand-zero pages not touched yet */
    /* Faults kmm_vm_fault handled in this space, by enum kmm_vm_fault_kind
     * (a kernel-half fault counts in the kernel space's, whichever space
     * the call named); each never decreases. */
    uint64_t demand_zero, cow_copy, cow_reuse, spurious;
    uint64_t refused; /* faults it did not handle (ENOENT, EACCES, ENOMEM; not the
                         misuses, KMM_EINVAL); never decreases */
    uint64_t clones;  /* kmm_aspace_clone calls that cloned this space; never decreases */
};

/* kmm_vm_fault_stats - the figures of the live space as, taken under its
 * lock. Returns KMM_OK, or KMM_EINVAL when as is not a live space (NULL,
 * destroyed, scribbled: *out zeroed, unlogged, as there is no instance)
 * or out is NULL (counted in kmm_vm_stats.misuse and logged). IRQs on or
 * off, interrupt handlers too; O(1). */
int kmm_vm_fault_stats(struct kmm_aspace *as, struct kmm_vm_fault_stats *out);

/* kmm_vm_stats - the figures of the live space as (the kernel space's count
 * its shared kernel-half tables; a user space's count only its own), taken
 * under its lock, so they agree with each other. Returns KMM_OK, or
 * KMM_EINVAL as kmm_vm_fault_stats does: as not a live space (*out zeroed,
 * unlogged), out NULL (counted and logged). IRQs on or off, interrupt
 * handlers too; O(1). */
int kmm_vm_stats(struct kmm_aspace *as, struct kmm_vm_stats *out);

#endif /* KMM_VM_H */
