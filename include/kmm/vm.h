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
 * always use 4 KiB pages (a reference is per single page). An unmap or
 * protect (or a replacing map) that covers only part of a huge page first
 * splits it into a table of the next smaller size, every other byte keeping
 * its frame, protection and cache mode; the tables a split needs are
 * allocated before anything changes, and without them the call fails with
 * KMM_ENOMEM and nothing changed.
 *
 * Ownership: by default a mapping does not own its frame: unmapping it
 * leaves the frame to the caller (kmm_vm_translate before unmapping tells
 * which one it was). With KMM_MAP_OWNED, mapping takes a reference on each
 * frame (an allocated single page, kmm/page.h) and unmapping drops it.
 *
 * TLB: a change that removes or weakens a mapping is followed by the
 * invalidation it needs: per page up to KMM_TLB_PAGE_LIMIT pages, the whole
 * TLB beyond (global entries too when the kernel space changed), on this
 * CPU and, through the port's shootdown, on the others. Frames and table
 * pages an operation releases go back to the page allocator only after
 * those invalidations are complete. The *_g variants collect the work in a
 * caller's kmm_tlb_gather instead; it completes at kmm_tlb_finish.
 *
 * Context: every call takes the space's lock (IRQs disabled) and may
 * allocate table pages; call with IRQs on (the allocation may reclaim).
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

/* The kernel space (created by kmm_init). Any context. */
struct kmm_aspace *kmm_kernel_aspace(struct kmm *k);

/*
 * kmm_aspace_create - a new user space: an empty lower half and the shared
 * kernel half. Returns KMM_OK and *out, or KMM_ENOMEM (nothing allocated).
 */
int kmm_aspace_create(struct kmm *k, struct kmm_aspace **out);

/*
 * kmm_aspace_destroy - unmap everything in the lower half of the user space
 * as of instance k (dropping owned frames' references), free every table
 * and the space itself. The space must not be active on any CPU. Returns
 * KMM_OK, or KMM_EINVAL with nothing changed, counted in
 * kmm_vm_stats.misuse and logged with the caller, when as is the kernel
 * space (it cannot be destroyed), NULL, destroyed already, or not a space
 * of k (as is looked up in k's list of spaces before it is read).
 */
int kmm_aspace_destroy(struct kmm *k, struct kmm_aspace *as);

/* Makes as the current space of this CPU (the port loads its root). */
void kmm_aspace_activate(struct kmm_aspace *as);

/* The physical address of the top-level table (what CR3 holds). */
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
 *               an area's guard page, a page of a vmalloc or vmap area, or
 *               of an area being set up or freed (a raw area's own pages
 *               are its caller's to map);
 *   KMM_ESTATE  OWNED and a frame is not an allocated single page;
 *   KMM_ENOMEM  no memory for the tables.
 * O(pages + tables).
 */
int kmm_vm_map(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size, unsigned flags);

/*
 * kmm_vm_unmap - unmap [va, va + size). Every page of the range must be
 * mapped. Returns KMM_OK, or with nothing changed KMM_EINVAL (alignment,
 * canonical, halves, size), KMM_ENOENT (a page of the range is not mapped)
 * or KMM_ENOMEM (a huge page must be split and there is no memory for the
 * table).
 */
int kmm_vm_unmap(struct kmm_aspace *as, uint64_t va, uint64_t size);

/*
 * kmm_vm_protect - set the protection of [va, va + size) (KMM_PROT_* only;
 * ownership and cache mode do not change). Every page must be mapped.
 * Errors as kmm_vm_unmap, plus KMM_EINVAL for flags as in kmm_vm_map.
 */
int kmm_vm_protect(struct kmm_aspace *as, uint64_t va, uint64_t size, unsigned prot);

/* What one address translates to. */
struct kmm_vm_translation {
    uint64_t pa;        /* the physical address of va (with its page offset) */
    unsigned prot;      /* KMM_PROT_* of the mapping */
    unsigned cache;     /* its KMM_CACHE_* mode */
    uint64_t page_size; /* KMM_PAGE_4K, KMM_PAGE_2M or KMM_PAGE_1G */
    bool owned;         /* the mapping holds a reference on its frame */
};

/* kmm_vm_translate - fill *out for va. Returns KMM_OK, KMM_ENOENT if va is
 * not mapped (an answer, not a mistake: not counted), KMM_EINVAL if va is
 * not canonical or out is NULL (counted in kmm_vm_stats.misuse and logged
 * with the caller). O(levels). */
int kmm_vm_translate(struct kmm_aspace *as, uint64_t va, struct kmm_vm_translation *out);

/*
 * kmm_vm_query - describe the mapping state from va up to limit: *out gets
 * the longest run starting at va of pages that are all unmapped, or all
 * mapped with the same protection, cache mode and ownership to consecutive
 * frames (whatever their page sizes). Returns KMM_OK (run in *out;
 * out->mapped says which kind), or KMM_EINVAL (counted and logged; *out
 * untouched) when out is NULL, va is not page aligned, limit <= va, va or
 * limit - 1 is not canonical, or the two lie in different halves (a range
 * never spans the non-canonical hole). Time: O(levels) per table the run
 * crosses and per leaf it holds; an unmapped stretch costs one step per
 * absent entry or empty table, never one per page.
 */
struct kmm_vm_run {
    uint64_t va, size;
    bool mapped;
    uint64_t pa; /* when mapped: the physical address of va */
    unsigned prot;
    unsigned cache; /* KMM_CACHE_* */
    bool owned;
};
int kmm_vm_query(struct kmm_aspace *as, uint64_t va, uint64_t limit, struct kmm_vm_run *out);

/* --- TLB batching ---------------------------------------------------------------- */

#define KMM_TLB_GATHER_FREES 64

/*
 * A gather: the invalidations and releases of one or more operations on one
 * space, done together at kmm_tlb_finish. Fields are private.
 */
struct kmm_tlb_gather {
    struct kmm_aspace *as;
    unsigned npages;                     /* pages recorded in pages[] */
    bool all;                            /* more than KMM_TLB_PAGE_LIMIT: flush everything */
    bool global;                         /* kernel mappings changed */
    uint64_t start, last;                /* the span of the changes (inclusive) */
    uint64_t pages[KMM_TLB_PAGE_LIMIT];  /* pages to invalidate one by one */
    unsigned nfree;                      /* frames and tables waiting */
    uint64_t free[KMM_TLB_GATHER_FREES]; /* their addresses; bit 0 set: a table */
};

/* Start a gather on as. */
void kmm_tlb_gather_init(struct kmm_tlb_gather *g, struct kmm_aspace *as);

/* Do the invalidations collected (locally and on other CPUs), then release
 * the frames and tables waiting. The gather can be used again. */
void kmm_tlb_finish(struct kmm_tlb_gather *g);

/* kmm_vm_unmap and kmm_vm_protect whose invalidations and releases go to g
 * (whose space must be as); they complete at kmm_tlb_finish(g). A gather
 * that fills up completes what it has early, so memory is never held
 * back unboundedly. Errors as kmm_vm_unmap and kmm_vm_protect, and
 * KMM_EINVAL (nothing changed, counted and logged) when g is NULL or was
 * begun on another space. */
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

/* kmm_vm_stats - the figures of one space (the kernel space's count its
 * shared kernel-half tables; a user space's count only its own). */
void kmm_vm_stats(struct kmm_aspace *as, struct kmm_vm_stats *out);

#endif /* KMM_VM_H */
