/*
 * kmm/vmalloc.h - kernel virtual areas: vmalloc, vmap, and the raw range
 * allocator under them.
 *
 * The window: every area lies in one window of kernel virtual addresses,
 * by default [KMM_KVA_DEFAULT_BASE, + KMM_KVA_DEFAULT_SIZE) (256 MiB, the
 * Boruix heap window), or where kmm_config.kva_base / kva_size put it. An
 * area is a run of whole pages followed by one guard page that is never
 * mapped, so running off the end of an area faults:
 *
 *   window  |==area A==|g|   |==area B========|g|..foreign..|==C==|g|    |
 *                        ^ guard page                      ^ mapped by the kernel itself
 *
 * Mapped pages are never handed out: a kernel may map pages inside the
 * window itself (kmm_vm_map on the kernel space, as Boruix does). Before an
 * area is handed out, its pages and its guard page are looked up in the
 * kernel space's tables, and a range with any mapped page is skipped. The
 * library remembers such foreign pages as a hint (kmm_vmalloc_stats) so it
 * does not look them up again; it forgets the hints when the window seems
 * full and looks again, so pages the kernel unmaps become usable.
 *
 * Kinds of area, each freed by its own call:
 *   kmm_vmalloc  scattered single pages of the page allocator, mapped
 *                contiguously and owned by their mappings (KMM_MAP_OWNED):
 *                kmm_vfree unmaps them, and that frees them;
 *   kmm_vmap     pages the caller owns, mapped contiguously; kmm_vunmap
 *                unmaps them and leaves them to the caller;
 *   kmm_kva_alloc  a bare range the caller maps itself (kmm_vm_map on
 *                the kernel space) and must unmap before kmm_kva_free;
 *                kmm_kva_populate keeps its page tables while it lives;
 *   kmm_vm_map_ram  a short mapping of the caller's pages carved from a
 *                per-CPU vmap block (an area of its own kind, 2 MiB,
 *                whose page table stays while it lives), unmapped with
 *                kmm_vm_unmap_ram.
 *
 * The window keeps what is its own: kmm_vm_map, kmm_vm_unmap and
 * kmm_vm_protect (and their _g forms) on the kernel space refuse (KMM_EBUSY,
 * counted in kmm_vm_stats.misuse) a range that holds a guard page, a page
 * of a vmalloc or vmap area, a page of an area being set up or freed, or
 * a page of a parked area (below); only a ready raw area's own pages, and
 * pages outside every area, are the caller's to map, unmap and protect.
 *
 * Parked areas: kmm_vfree, kmm_vunmap and kmm_vm_unmap_ram of an area
 * unmap its pages (their TLB invalidations complete before they return)
 * but may leave its range to the window, parked with its page tables, so
 * that the next kmm_vmalloc, kmm_vmap or kmm_vm_map_ram area of exactly
 * its size takes it again without a search, a table lookup or a page
 * table allocation (Linux defers the same work for its lazily freed vmap
 * areas). At most KMM_KVA_PARKED areas of at most KMM_KVA_PARK_PAGES pages
 * each are parked; the oldest goes when one more would be, and all go with
 * kmm_kva_purge, under memory pressure, and when the window has no room
 * for a new area. A parked area is no area: freeing it again is
 * KMM_ENOENT, as for any area freed already, and kmm_kva_lookup does not
 * find it.
 *
 * Addresses: in a kernel the window is kernel-half memory of every address
 * space. In the hosted build, hosted tests put the window inside the
 * hosted port's mirror window (port/hosted/hosted.h), where the mappings
 * are real memory of the test process and a guard page is a real SIGSEGV.
 *
 * Misuse (SPEC §9): freeing an address that is not the start of an area of
 * that kind, a double free, size 0, a size larger than the window, unknown
 * flags, bad pages: rejected with an error value (NULL for the calls that
 * return a pointer), counted in kmm_vmalloc_stats.misuse, logged once with
 * the caller's address, and nothing changes; kmm_check passes afterwards.
 *
 * Context: every call here may allocate with reclaim, or wait for a TLB
 * shootdown: IRQs on, never from an interrupt handler. Calls on different
 * areas may run at the same time on different CPUs. Time: O(areas in the
 * window) to find or look up an area (a sorted array of area records), plus
 * O(pages) to map or unmap.
 */
#ifndef KMM_VMALLOC_H
#define KMM_VMALLOC_H

#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>

/* The default window (kmm_config.kva_base and kva_size both 0). */
#define KMM_KVA_DEFAULT_BASE UINT64_C(0xffffffff90000000)
#define KMM_KVA_DEFAULT_SIZE (UINT64_C(256) << 20)
/* The largest window kmm_init accepts. */
#define KMM_KVA_MAX_SIZE     (UINT64_C(64) << 30)
/* Parked areas (above): at most this many, of at most this many pages. */
#define KMM_KVA_PARKED       16u
#define KMM_KVA_PARK_PAGES   512u

/* The protection of vmalloc areas: kernel read/write, no execute, global. */
#define KMM_VMALLOC_PROT (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL)

/*
 * kmm_vmalloc - size bytes of virtually contiguous memory, rounded up to
 * whole pages, backed by single pages from anywhere in the allowed zones
 * and mapped KMM_VMALLOC_PROT. flags: KMM_GFP_ZERO (zeroed, as vzalloc),
 * KMM_GFP_DMA32 or KMM_GFP_DMA (every page from those zones, as
 * vmalloc_32); KMM_GFP_ATOMIC is refused (mapping may reclaim).
 * Returns the area's first address, or NULL iff
 *   - size is 0 or larger than the window minus its guard page, or flags
 *     are unknown or include KMM_GFP_ATOMIC (misuse, counted and logged);
 *   - the window has no unmapped range of that size plus a guard page
 *     (counted in kmm_vmalloc_stats.failed_allocs), or the pages or page
 *     tables cannot be allocated: nothing is left allocated or mapped.
 * Free with kmm_vfree. IRQs on; O(areas + pages).
 */
void *kmm_vmalloc(struct kmm *k, size_t size, kmm_gfp_t flags);

/* kmm_vmalloc_caller - kmm_vmalloc for a wrapper (a compatibility layer):
 * a rejection is logged, and the area recorded, with caller, the wrapper's
 * own caller, instead of the wrapper. */
void *kmm_vmalloc_caller(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller);

/* kmm_vzalloc - kmm_vmalloc(k, size, KMM_GFP_ZERO). */
void *kmm_vzalloc(struct kmm *k, size_t size);

/*
 * kmm_vfree - free the area kmm_vmalloc returned at addr: unmap it (which
 * frees its pages once the TLB invalidations are complete) and release its
 * range, or park it (above: "Parked areas"). addr NULL does nothing and returns KMM_OK. Returns
 * KMM_OK, or with nothing changed, counted and logged: KMM_ERANGE  addr is outside the window;
 *   KMM_EINVAL  addr is inside an area but not its start, or starts an area
 *               of another kind (kmm_vmap, kmm_kva_alloc);
 *   KMM_ENOENT  no area starts at addr: never allocated, or freed already;
 *   KMM_ESTATE  another CPU is freeing the area at this moment (double free).
 * IRQs on; O(areas + pages).
 */
int kmm_vfree(struct kmm *k, const void *addr);

/*
 * kmm_vmap - map count pages the caller owns (pages[i]: a page-aligned
 * physical address of RAM, in any order, repeats allowed) contiguously in
 * a new area, with prot: KMM_PROT_READ, optionally | KMM_PROT_WRITE,
 * KMM_PROT_EXEC, KMM_PROT_GLOBAL (write-back; for device memory use
 * kmm_kva_alloc and kmm_vm_map with a cache mode). The mappings take no
 * reference: the pages stay the caller's and must stay allocated until
 * kmm_vunmap. Returns the area's first address, or NULL iff
 *   - pages is NULL, count is 0 or larger than the window minus its guard
 *     page, prot is not of that form, or a page is unaligned or not RAM
 *     (misuse, counted and logged);
 *   - the window has no room (failed_allocs) or the tables cannot be
 *     allocated: nothing is left mapped.
 * IRQs on; O(areas + count * memory map ranges).
 */
void *kmm_vmap(struct kmm *k, const uint64_t *pages, size_t count, unsigned prot);

/*
 * kmm_vunmap - unmap the area kmm_vmap returned at addr and release (or
 * park) its range; its pages stay allocated, the caller's. Returns and refuses as
 * kmm_vfree (a vmalloc or raw area is the wrong kind). IRQs on;
 * O(areas + pages).
 */
int kmm_vunmap(struct kmm *k, const void *addr);

/*
 * kmm_kva_alloc - reserve size bytes (rounded up to pages) of the window,
 * plus a guard page, none of them mapped, for the caller to map itself
 * with kmm_vm_map on the kernel space (device memory, a heap that maps on
 * demand). Stores the range's first address in *va and returns KMM_OK, or:
 *   KMM_EINVAL  va is NULL, size is 0 or larger than the window minus its
 *               guard page (misuse, counted and logged; *va untouched);
 *   KMM_ENOMEM  no room in the window (failed_allocs), or no memory for the
 *               area records.
 * IRQs on; O(areas).
 */
int kmm_kva_alloc(struct kmm *k, uint64_t size, uint64_t *va);

/* kmm_kva_alloc_caller - kmm_kva_alloc for a wrapper: a rejection is
 * logged, and the range recorded, with caller, the wrapper's own caller. */
int kmm_kva_alloc_caller(struct kmm *k, uint64_t size, uint64_t *va, const void *caller);

/*
 * kmm_kva_free - release the range kmm_kva_alloc returned at va. Every page
 * of it must be unmapped again. Returns KMM_OK, or with nothing changed,
 * counted and logged: as kmm_vfree (KMM_ESTATE also while kmm_kva_populate
 * runs on it), and KMM_EBUSY if a page of the area or its guard page is
 * still mapped (a demand-zero page included). IRQs on; O(areas + pages).
 */
int kmm_kva_free(struct kmm *k, uint64_t va);

/*
 * kmm_kva_populate - build the page tables of the raw area kmm_kva_alloc
 * returned at va and keep them while the area lives (Linux's populated
 * get_vm_area): kmm_vm_map and kmm_vm_unmap of its pages then never
 * allocate or free a page table, the unmap leaves them in place however
 * empty, and kmm_kva_free gives them back. A map there with KMM_MAP_HUGE
 * gets 4 KiB pages in the spans whose tables are kept. The one kind of page table kept
 * empty besides a vmap block's (SPEC §4), bounded by the populated areas;
 * kmm_vm_stats counts them among the tables. Returns KMM_OK, or with
 * nothing changed (counted and logged but KMM_ENOMEM):
 *   as kmm_kva_free: KMM_ERANGE, KMM_EINVAL, KMM_ENOENT, KMM_ESTATE (also
 *               while another CPU populates it);
 *   KMM_ESTATE  its page tables are populated already;
 *   KMM_EBUSY   a huge page maps part of the area;
 *   KMM_ENOMEM  no memory for a table.
 * While it runs the area counts as being set up: a kmm_vm_map, unmap or
 * protect of its pages meanwhile is refused (KMM_EBUSY), so populate a
 * range before using it. IRQs on; O(areas + tables).
 */
int kmm_kva_populate(struct kmm *k, uint64_t va);

/* Kinds of area, as kmm_kva_lookup reports them. */
enum kmm_kva_kind {
    KMM_KVA_RAW = 1,
    KMM_KVA_VMALLOC = 2,
    KMM_KVA_VMAP = 3,
    KMM_KVA_VMAP_BLOCK = 4 /* a vmap block: kmm_vm_map_ram's ranges */
};

/* One area, as kmm_kva_lookup describes it. */
struct kmm_kva_area {
    uint64_t va;   /* its first address */
    uint64_t size; /* its bytes, the guard page not included */
    enum kmm_kva_kind kind;
    const void *caller; /* who allocated it */
};

/* The most pages kmm_vm_map_ram maps in a vmap block; a longer range gets
 * an area of its own (a kmm_vmap area). */
#define KMM_MAP_RAM_MAX 64u

/*
 * kmm_vm_map_ram - map count pages the caller owns contiguously, as
 * kmm_vmap does (same pages and prot rules, no reference taken), made for
 * short-lived mappings of a few pages (Linux's vm_map_ram): up to
 * KMM_MAP_RAM_MAX pages are carved from this CPU's vmap block, a 2 MiB
 * area of the window reserved once, whose page table stays allocated while
 * the block lives, so the common path takes no window lock and allocates
 * nothing: one hold of the kernel space's lock, for this CPU's block and
 * the leaves.
 * Each range is followed by a guard page that is never mapped. A block is
 * made when this CPU has none or it is full; a longer request, or one for
 * which no block can be made (the window has no free aligned 2 MiB, or no
 * memory), gets a kmm_vmap area instead (counted in vmap_areas).
 * Returns the first address, or NULL iff
 *   - pages is NULL, count is 0 or larger than the window minus its guard
 *     page, prot is not READ with optional WRITE, EXEC and GLOBAL, or a
 *     page is unaligned or not RAM (misuse, counted and logged);
 *   - neither a block nor an area can be had: nothing is left mapped.
 * Unmap with kmm_vm_unmap_ram(k, va, count), from any CPU. A range that
 * got an area is a kmm_vmap area in every respect: kmm_vunmap frees it
 * too, and kmm_vm_unmap_ram frees any kmm_vmap area given its count (a
 * range in a block is no area: kmm_vunmap refuses it). IRQs on;
 * O(count) on the common path (plus O(blocks) to make a block, O(areas)
 * for an area).
 */
void *kmm_vm_map_ram(struct kmm *k, const uint64_t *pages, size_t count, unsigned prot);

/*
 * kmm_vm_unmap_ram - unmap the count pages kmm_vm_map_ram mapped at addr
 * and give the range back; the pages stay the caller's. The TLB
 * invalidations are complete when it returns (per page up to the gather's
 * threshold), and only then may the range be handed out again. A block that
 * holds no range any more goes back to the window unless it is a CPU's
 * current block (those go under memory pressure, or kmm_vm_map_ram_drain).
 * Returns KMM_OK, or with nothing changed, counted and logged:
 *   KMM_EINVAL  addr is NULL or not page aligned, count is 0 or not the
 *               range's count, or addr is inside a range or area, or is a
 *               range's guard page, or starts an area of another kind
 *               (kmm_vmalloc, kmm_kva_alloc; a count above KMM_MAP_RAM_MAX
 *               looks for an area at addr, so a block's range is inside
 *               the block's area then, or starts it);
 *   KMM_ERANGE  addr is outside the window;
 *   KMM_ENOENT  no range starts at addr: never mapped, or unmapped already;
 *   KMM_ESTATE  another CPU is unmapping it at this moment (double unmap).
 * IRQs on; O(count) for a range in this CPU's block, plus O(blocks) in
 * another CPU's, O(areas + count) for an area.
 */
int kmm_vm_unmap_ram(struct kmm *k, const void *addr, size_t count);

/*
 * kmm_vm_map_ram_drain - give back every vmap block that holds no range
 * (CPUs' current blocks included): their areas, page tables and records.
 * Returns the pages freed. The "vmap-blocks" shrinker does the same when
 * the page allocator runs short. IRQs on; O(blocks).
 */
uint64_t kmm_vm_map_ram_drain(struct kmm *k);

/*
 * kmm_kva_lookup - the area whose pages or guard page hold addr, for a
 * fault handler ("addr is the guard page of the area at ...") or a heap
 * asking whether a pointer is a vmalloc block. Returns KMM_OK with *out
 * (addr >= out->va + out->size means the guard page), or KMM_ENOENT (not
 * logged: probing is fine) when no area holds addr, or it is being set up
 * or freed. IRQs on or off, not in an NMI; O(log areas).
 */
int kmm_kva_lookup(struct kmm *k, uint64_t addr, struct kmm_kva_area *out);

/* The window's figures (Linux's VmallocTotal, VmallocUsed, VmallocChunk
 * and the /proc/vmallocinfo totals). */
struct kmm_vmalloc_stats {
    uint64_t window_base;        /* the window's first address */
    uint64_t window_size;        /* its bytes */
    uint64_t areas;              /* live areas of every kind */
    uint64_t vmalloc_areas;      /* of those, from kmm_vmalloc */
    uint64_t vmap_areas;         /* from kmm_vmap */
    uint64_t raw_areas;          /* from kmm_kva_alloc */
    uint64_t used_pages;         /* window pages the areas cover, their guard pages included */
    uint64_t vmalloc_pages;      /* pages of RAM that vmalloc areas own */
    uint64_t vmap_pages;         /* pages vmap areas map (the callers' own) */
    uint64_t foreign_pages;      /* window pages last seen mapped by someone else (a hint) */
    uint64_t largest_free_pages; /* the longest run neither used nor known mapped */
    uint64_t metadata_pages;     /* pages holding the area records (0 while no area exists) */
    uint64_t failed_allocs;      /* allocations that found no room; never decreases */
    uint64_t misuse;             /* rejected calls; never decreases */
    /* kmm_vm_map_ram's vmap blocks (their areas are in areas and used_pages). */
    uint64_t vmap_blocks;     /* live blocks */
    uint64_t map_ram_ranges;  /* ranges mapped in them */
    uint64_t map_ram_pages;   /* pages those ranges map (the callers' own) */
    uint64_t vmap_block_free; /* pages of the live blocks no range or guard page takes */
};

/* The parked areas' figures: a structure of its own, as struct kmm_stats
 * embeds kmm_vmalloc_stats's layout, which grows no more. A parked area's
 * pages are free pages, in neither kmm_vmalloc_stats.areas nor used_pages,
 * nor in a free run (largest_free_pages) until it is given back. */
struct kmm_kva_park_stats {
    uint64_t areas; /* freed vmalloc and vmap areas the window keeps now */
    uint64_t pages; /* their usable pages (none mapped) */
};

/* kmm_kva_park_stats - fill *out. Takes the window's lock. IRQs on or off;
 * O(1). */
void kmm_kva_park_stats(struct kmm *k, struct kmm_kva_park_stats *out);

/*
 * kmm_kva_purge - give back every parked area: its range, and the page
 * tables it kept. Returns the pages freed (tables, and the window's record
 * array if no area is left). The "kva-parked" shrinker does the same when
 * the page allocator runs short, and a reservation that finds no room does
 * it before it fails. IRQs on; O(parked areas * (areas + tables)).
 */
uint64_t kmm_kva_purge(struct kmm *k);

/* kmm_vmalloc_stats - fill *out. Takes the window's lock. IRQs on or off;
 * O(areas). */
void kmm_vmalloc_stats(struct kmm *k, struct kmm_vmalloc_stats *out);

#endif /* KMM_VMALLOC_H */
