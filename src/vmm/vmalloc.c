/*
 * vmalloc.c - the mapping half of kernel virtual areas: vmalloc and vfree,
 * vmap and vunmap, raw ranges. Contracts in kmm/vmalloc.h; the range
 * allocator (records, the window lock) is kva.c.
 *
 * Every call checks all of its arguments first (a misuse changes nothing),
 * then reserves a range (kva_reserve), maps it with the window lock dropped
 * (lock order: the kernel space's lock, taken by kmm_vm_map, comes before
 * the window lock), and publishes the area. A failure part-way unmaps what
 * was mapped, frees what was allocated and releases the range: nothing is
 * left half-done. A free marks the area DYING under the lock, so a second
 * free of it is refused, unmaps it without the lock, then releases it.
 *
 * A freed vmalloc or vmap area is parked (kva.c, "Parked areas"): its
 * tables are held before its unmap, so that the next area of its size
 * finds them in place.
 *
 * vmalloc's pages are single pages mapped with KMM_MAP_OWNED: the mapping
 * takes a reference on each frame and the allocation's own reference is
 * dropped right after, so the mapping holds the only one and the unmap in
 * kmm_vfree frees the pages, once the TLB invalidations are complete.
 */
#include "internal.h"

#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "pmm/api.h"
#include "vmm/kva.h"
#include "vmm/vmm.h"

#define PAGE          KMM_PAGE_SIZE
#define VMALLOC_GFP   (KMM_GFP_ZERO | KMM_GFP_DMA | KMM_GFP_DMA32)
#define VMAP_PROT     (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_EXEC | KMM_PROT_GLOBAL)
/* vmap checks that its frames are RAM a chunk of this size at a time: one
 * memory-map lookup for the pages of an all-RAM chunk in a row, where one
 * per page cost more than mapping it. */
#define RAM_CHUNK     KMM_PAGE_2M
/* vmalloc maps its pages this many at a time (an array on the stack). */
#define VMALLOC_BATCH 64u

static inline void *to_ptr(uint64_t va)
{
    return (void *)(uintptr_t)va;
}

static inline uint64_t from_ptr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* --- mapping and unmapping an area ------------------------------------------------- */

/*
 * Backs the n pages at va with single pages from the page allocator (gfp),
 * VMALLOC_BATCH at a time: allocated into an array, mapped owned with one
 * call (one lock hold, one walk per page table), then the allocation's own
 * reference on each dropped: the mappings hold the only ones. Returns
 * KMM_OK, or an error with nothing mapped and nothing allocated.
 */
static int back_with_pages(struct kmm *k, uint64_t va, uint64_t n, kmm_gfp_t gfp)
{
    uint64_t batch[VMALLOC_BATCH];
    uint64_t done = 0; /* pages mapped */
    int err = KMM_OK;
    /* A mirror that shows memory of its own, zeroed where a range is mapped
     * anew, not the frames (kmm_port_mirror_needs_frames): zeroing them
     * would only make them resident too. */
    if (!kmm_port_mirror_needs_frames(k->port))
        gfp &= ~KMM_GFP_ZERO;
    while (done < n) {
        uint64_t want = n - done, got = 0;
        if (want > VMALLOC_BATCH)
            want = VMALLOC_BATCH;
        for (; got < want; got++) {
            batch[got] = kmm_page_alloc(k, 0, gfp);
            if (!batch[got])
                break;
        }
        err = got != want ? KMM_ENOMEM
                          : vmm_map_pages_area(k, va + done * PAGE, batch, got,
                                               KMM_VMALLOC_PROT | KMM_MAP_OWNED);
        for (uint64_t i = 0; i < got; i++) /* mapped: the allocation's reference; else the page */
            KMM_MUST(k->port, kmm_page_free(k, batch[i], 0));
        if (err)
            break;
        done += got;
    }
    if (!err)
        return KMM_OK;
    if (done)
        KMM_MUST(k->port, vmm_unmap_area(k, va, done * PAGE));
    return err;
}

/*
 * Unmaps the n pages of the area at va, with the window's own unmap
 * (vmm_unmap_area: the area's pages are refused to everyone else's
 * kmm_vm_unmap and kmm_vm_protect). Returns true. An area whose tables a
 * kernel changed behind the library's back (entries written directly) is
 * unmapped run by run, whatever is still mapped, with a warning, and false
 * returned: the range is released either way, not parked, and a page
 * still mapped then is found again by the next reservation's table lookup.
 */
static bool unmap_area(struct kmm *k, uint64_t va, uint64_t n, const char *fn)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    if (vmm_unmap_area(k, va, n * PAGE) == KMM_OK)
        return true;
    uint64_t end = va + n * PAGE;
    struct kmm_vm_run run;
    unsigned long left = 0;
    for (uint64_t at = va; at < end; at += run.size) {
        KMM_MUST(k->port, kmm_vm_query(ks, at, end, &run));
        if (run.mapped && vmm_unmap_area(k, at, run.size) != KMM_OK)
            left++;
    }
    kmm_logf(k->port, KMM_LOG_WARN,
             "%s(0x%llx): the area's mappings were changed behind its back (%lu runs left "
             "mapped)",
             fn, (unsigned long long)va, left);
    return false;
}

/* The end of the DYING vmalloc or vmap area of n pages at va (held: its
 * tables are held already, a parked range taken again): unmaps it and
 * hands its range to the window, which parks it if its tables are held.
 * An area small enough to park has them held before the unmap, so that
 * the unmap leaves them in place; a hold that cannot be had (no memory for
 * it, which cannot happen while the area is mapped) only means that the
 * range is released instead. */
static void retire_area(struct kmm *k, uint64_t va, uint64_t n, bool held, const char *fn)
{
    bool hold = !held && n <= KVA_PARK_PAGES && kva_hold_spans(k, va, va + n * PAGE) == KMM_OK;
    bool clean = unmap_area(k, va, n, fn);
    kva_retire(k, va, hold, clean);
}

/* The end of a new area at va whose mapping (for fn) failed with err,
 * nothing left mapped: parked again if it was a parked range and only
 * memory ran short; released if a page of it was found mapped (KMM_EBUSY:
 * entries a kernel wrote behind the library's back, found in a parked
 * range, which is taken without a table lookup), with a warning, so that
 * the next reservation's table lookup finds that page and steps over it.
 * Returns whether the caller should reserve again (once). */
static bool retire_unmapped(struct kmm *k, uint64_t va, int err, const char *fn)
{
    kva_retire(k, va, false, err == KMM_ENOMEM);
    if (err != KMM_EBUSY)
        return false;
    kmm_logf(k->port, KMM_LOG_WARN,
             "%s: a page of the range 0x%llx was mapped behind the window's back: released, "
             "reserving again",
             fn, (unsigned long long)va);
    return true;
}

/* --- vmalloc ------------------------------------------------------------------------ */

/* Why a vmalloc request is refused, or KVA_ACCEPTED. */
static struct kva_refusal bad_vmalloc(size_t size, uint64_t pages, kmm_gfp_t flags)
{
    if (size == 0)
        return (struct kva_refusal){"size 0", KMM_EINVAL, KMM_MISUSE_BAD_ARG};
    if (!pages)
        return (struct kva_refusal){"larger than the kernel virtual area window", KMM_EINVAL,
                                    KMM_MISUSE_BAD_ORDER};
    if (flags & KMM_GFP_ATOMIC)
        return (struct kva_refusal){"KMM_GFP_ATOMIC: vmalloc maps pages and may reclaim",
                                    KMM_EINVAL, KMM_MISUSE_BAD_FLAGS};
    if (flags & ~VMALLOC_GFP)
        return (struct kva_refusal){"unknown flags", KMM_EINVAL, KMM_MISUSE_BAD_FLAGS};
    if ((flags & KMM_GFP_DMA) && (flags & KMM_GFP_DMA32))
        return (struct kva_refusal){"two zone flags", KMM_EINVAL, KMM_MISUSE_BAD_FLAGS};
    return KVA_ACCEPTED;
}

static void *vmalloc_from(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller)
{
    uint64_t pages = kva_pages_for(k, size);
    struct kva_refusal no = bad_vmalloc(size, pages, flags);
    if (no.why) {
        kva_misuse(k, no.err, no.cls, "kmm_vmalloc", 0, size, no.why, caller);
        return 0;
    }
    uint64_t va;
    for (unsigned tries = 0;; tries++) {
        if (kva_reserve(k, pages, KVA_VMALLOC, caller, &va) != KMM_OK)
            return 0;
        int err = back_with_pages(k, va, pages, flags);
        if (!err)
            break;
        if (!retire_unmapped(k, va, err, "kmm_vmalloc") || tries)
            return 0;
    }
    kva_publish(k, va);
    return to_ptr(va);
}

void *kmm_vmalloc(struct kmm *k, size_t size, kmm_gfp_t flags)
{
    return vmalloc_from(k, size, flags, __builtin_return_address(0));
}

void *kmm_vmalloc_caller(struct kmm *k, size_t size, kmm_gfp_t flags, const void *caller)
{
    return vmalloc_from(k, size, flags, caller);
}

void *kmm_vzalloc(struct kmm *k, size_t size)
{
    return vmalloc_from(k, size, KMM_GFP_ZERO, __builtin_return_address(0));
}

/* The free of a vmalloc or vmap area: judge (kva_begin_free), retire. */
static int free_area(struct kmm *k, uint64_t va, enum kva_kind kind, const char *fn,
                     const void *caller)
{
    uint64_t pages;
    bool held;
    int err = kva_begin_free(k, va, kind, fn, caller, &pages, &held);
    if (err)
        return err;
    retire_area(k, va, pages, held, fn);
    return KMM_OK;
}

int kmm_vfree(struct kmm *k, const void *addr)
{
    if (!addr)
        return KMM_OK;
    return free_area(k, from_ptr(addr), KVA_VMALLOC, "kmm_vfree", __builtin_return_address(0));
}

/* --- vmap ---------------------------------------------------------------------------- */

/* Why a vmap request is refused, or KVA_ACCEPTED. */
static struct kva_refusal bad_vmap_any(const struct kmm *k, const uint64_t *pages, size_t count,
                                       unsigned prot)
{
    if (!pages)
        return (struct kva_refusal){"NULL page array", KMM_EINVAL, KMM_MISUSE_BAD_ARG};
    if (count == 0)
        return (struct kva_refusal){"count 0", KMM_EINVAL, KMM_MISUSE_BAD_ARG};
    if (count > k->kva.pages - 1)
        return (struct kva_refusal){"more pages than the kernel virtual area window holds",
                                    KMM_EINVAL, KMM_MISUSE_BAD_ORDER};
    if (!(prot & KMM_PROT_READ) || (prot & ~VMAP_PROT))
        return (struct kva_refusal){
            "protection is not KMM_PROT_READ with optional WRITE, EXEC and GLOBAL", KMM_EINVAL,
            KMM_MISUSE_BAD_FLAGS};
    uint64_t ram_chunk = UINT64_MAX; /* a RAM_CHUNK-aligned chunk known to be all RAM */
    for (size_t i = 0; i < count; i++) {
        if (pages[i] & (PAGE - 1))
            return (struct kva_refusal){"a page address is not page aligned", KMM_EINVAL,
                                        KMM_MISUSE_UNALIGNED};
        if ((pages[i] & ~(RAM_CHUNK - 1)) == ram_chunk)
            continue;
        if (pmm_ram_bytes(k, pages[i] & ~(RAM_CHUNK - 1), RAM_CHUNK) == RAM_CHUNK)
            ram_chunk = pages[i] & ~(RAM_CHUNK - 1);
        else if (pmm_ram_bytes(k, pages[i], PAGE) != PAGE)
            return (struct kva_refusal){
                "a page is not RAM (map device memory with kmm_kva_alloc and kmm_vm_map)",
                KMM_ERANGE, KMM_MISUSE_OUTSIDE};
    }
    return KVA_ACCEPTED;
}

/* bad_vmap_any, with a good request for one page accepted inline: the same
 * checks folded for a count of 1, the page's RAM asked of the memory map's
 * last range (pmm_ram_page). */
static inline struct kva_refusal bad_vmap(const struct kmm *k, const uint64_t *pages, size_t count,
                                          unsigned prot)
{
    if (count == 1 && pages && k->kva.pages > 1 && (prot & KMM_PROT_READ) && !(prot & ~VMAP_PROT) &&
        !(pages[0] & (PAGE - 1)) && pmm_ram_page(k, pages[0]) == PAGE)
        return KVA_ACCEPTED;
    return bad_vmap_any(k, pages, count, prot);
}

/* A vmap area for count checked pages: its first address, or 0. */
static uint64_t vmap_area(struct kmm *k, const uint64_t *pages, size_t count, unsigned prot,
                          const void *caller)
{
    uint64_t va;
    for (unsigned tries = 0;; tries++) {
        if (kva_reserve(k, count, KVA_VMAP, caller, &va) != KMM_OK)
            return 0;
        int err = vmm_map_pages_area(k, va, pages, count, prot);
        if (!err)
            break;
        if (!retire_unmapped(k, va, err, "kmm_vmap") || tries)
            return 0;
    }
    kva_publish(k, va);
    return va;
}

void *kmm_vmap(struct kmm *k, const uint64_t *pages, size_t count, unsigned prot)
{
    const void *caller = __builtin_return_address(0);
    struct kva_refusal no = bad_vmap(k, pages, count, prot);
    if (no.why) {
        kva_misuse(k, no.err, no.cls, "kmm_vmap", 0, (uint64_t)count * PAGE, no.why, caller);
        return 0;
    }
    return to_ptr(vmap_area(k, pages, count, prot, caller));
}

int kmm_vunmap(struct kmm *k, const void *addr)
{
    if (!addr)
        return KMM_OK;
    return free_area(k, from_ptr(addr), KVA_VMAP, "kmm_vunmap", __builtin_return_address(0));
}

/* --- vm_map_ram: vmap blocks (vblock.c), or an area ------------------------------------ */

void *kmm_vm_map_ram(struct kmm *k, const uint64_t *pages, size_t count, unsigned prot)
{
    const void *caller = __builtin_return_address(0);
    struct kva_refusal no = bad_vmap(k, pages, count, prot);
    if (no.why) {
        kva_misuse(k, no.err, no.cls, "kmm_vm_map_ram", 0, (uint64_t)count * PAGE, no.why, caller);
        return 0;
    }
    uint64_t va;
    if (count <= KMM_MAP_RAM_MAX && vb_map(k, pages, count, prot, caller, &va))
        return to_ptr(va);
    return to_ptr(vmap_area(k, pages, count, prot, caller));
}

int kmm_vm_unmap_ram(struct kmm *k, const void *addr, size_t count)
{
    const void *caller = __builtin_return_address(0);
    uint64_t va = from_ptr(addr);
    const char *fn = "kmm_vm_unmap_ram";
    if (!addr || !count || (va & (PAGE - 1)))
        return kva_misuse(k, KMM_EINVAL,
                          !addr || !count ? KMM_MISUSE_BAD_ARG : KMM_MISUSE_UNALIGNED, fn, va,
                          (uint64_t)count * PAGE,
                          !addr    ? "NULL address"
                          : !count ? "count 0"
                                   : "not page aligned: not a range's start",
                          caller);
    if (!kva_window_meets(&k->kva, va, PAGE))
        return kva_misuse(k, KMM_ERANGE, KMM_MISUSE_OUTSIDE, fn, va, (uint64_t)count * PAGE,
                          "not in the kernel virtual area window", caller);
    int err = count <= KMM_MAP_RAM_MAX ? vb_unmap(k, va, count, fn, caller) : VB_NOT_A_BLOCK;
    if (err != VB_NOT_A_BLOCK)
        return err;
    /* Not in a block: an area of its own (a vmap area), or a mistake. */
    uint64_t pages;
    bool held;
    err = kva_begin_free(k, va, KVA_VMAP, fn, caller, &pages, &held);
    if (err)
        return err;
    if (pages != count) {
        kva_abort_free(k, va);
        return kva_misuse(k, KMM_EINVAL, KMM_MISUSE_BAD_ORDER, fn, va, (uint64_t)count * PAGE,
                          "count is not the range's page count", caller);
    }
    retire_area(k, va, pages, held, fn);
    return KMM_OK;
}

uint64_t kmm_vm_map_ram_drain(struct kmm *k)
{
    return vb_drain(k);
}

/* --- raw ranges ------------------------------------------------------------------------ */

int kmm_kva_alloc(struct kmm *k, uint64_t size, uint64_t *va)
{
    return kmm_kva_alloc_caller(k, size, va, __builtin_return_address(0));
}

int kmm_kva_alloc_caller(struct kmm *k, uint64_t size, uint64_t *va, const void *caller)
{
    uint64_t pages = kva_pages_for(k, size);
    if (!va || !pages)
        return kva_misuse(k, KMM_EINVAL, !va || !size ? KMM_MISUSE_BAD_ARG : KMM_MISUSE_BAD_ORDER,
                          "kmm_kva_alloc", 0, size,
                          !va     ? "NULL result pointer"
                          : !size ? "size 0"
                                  : "larger than the kernel virtual area window",
                          caller);
    uint64_t at;
    int err = kva_reserve(k, pages, KVA_RAW, caller, &at);
    if (err)
        return err;
    kva_publish(k, at);
    *va = at;
    return KMM_OK;
}

int kmm_kva_free(struct kmm *k, uint64_t va)
{
    const void *caller = __builtin_return_address(0);
    uint64_t pages;
    bool held;
    int err = kva_begin_free(k, va, KVA_RAW, "kmm_kva_free", caller, &pages, &held);
    if (err)
        return err;
    struct kmm_vm_run run;
    uint64_t end = va + (pages + 1) * PAGE; /* the guard page too */
    KMM_MUST(k->port, kmm_vm_query(kmm_kernel_aspace(k), va, end, &run));
    if (run.mapped || run.size != end - va) {
        kva_abort_free(k, va);
        return kva_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, "kmm_kva_free", va, pages * PAGE,
                          "a page of the area or its guard page is still mapped", caller);
    }
    if (held)
        kva_unhold_spans(k, va, va + pages * PAGE);
    kva_release(k, va);
    return KMM_OK;
}

int kmm_kva_populate(struct kmm *k, uint64_t va)
{
    const void *caller = __builtin_return_address(0);
    const char *fn = "kmm_kva_populate";
    uint64_t pages;
    bool held;
    int err = kva_begin_free(k, va, KVA_RAW, fn, caller, &pages, &held); /* DYING: ours meanwhile */
    if (err)
        return err;
    if (held) {
        kva_abort_free(k, va);
        return kva_misuse(k, KMM_ESTATE, KMM_MISUSE_BUSY, fn, va, pages * PAGE,
                          "its page tables are populated already", caller);
    }
    /* First the check (a huge leaf covers a whole span, so one look per
     * span finds it; nobody maps in the area while it is DYING), then the
     * holds, which can only run out of memory. */
    uint64_t at, end = va + pages * PAGE;
    for (at = va; at < end; at = (at | (KMM_PAGE_2M - 1)) + 1) {
        struct kmm_vm_translation tr;
        if (kmm_vm_translate(kmm_kernel_aspace(k), at, &tr) == KMM_OK &&
            tr.page_size != KMM_PAGE_4K) {
            kva_abort_free(k, va);
            return kva_misuse(k, KMM_EBUSY, KMM_MISUSE_BUSY, fn, va, pages * PAGE,
                              "a huge page maps part of it", caller);
        }
    }
    err = kva_hold_spans(k, va, end);
    if (err) {
        kva_abort_free(k, va);
        return err;
    }
    kva_set_held(k, va, true);
    kva_abort_free(k, va); /* READY again */
    return KMM_OK;
}
