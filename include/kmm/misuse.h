/*
 * kmm/misuse.h - how the library counts the caller mistakes it rejects.
 *
 * Every public call validates what it is given before it changes anything
 * (SPEC §9). A call it rejects returns an error value, leaves every
 * structure as it was, logs one KMM_LOG_ERR line through the port naming
 * the call, its arguments, what was wrong and the caller's address, and is
 * counted once in one table: by the layer whose entry point rejected it and
 * by the class of mistake. The per-layer `misuse` figures of the layers'
 * statistics (kmm_page_stats, kmm_vm_stats, kmm_vmalloc_stats) are views of
 * this table's rows.
 *
 * What cannot be counted: a call with no live instance to count in. A
 * rejected kmm_init is logged only; a handle that is not a live instance
 * (kmm_fini a second time, kmm_report) or a space handle that leads to no
 * instance (NULL, destroyed, corrupt) is refused with its error value, and
 * logged where the call still knows a port.
 */
#ifndef KMM_MISUSE_H
#define KMM_MISUSE_H

#include <stdint.h>

struct kmm;

/* The layer of the entry point that rejected a call. */
enum kmm_layer {
    KMM_LAYER_PAGE,    /* kmm_page_*, kmm_pages_*, kmm_run_* */
    KMM_LAYER_GROW,    /* kmm_page_add_memory */
    KMM_LAYER_RECLAIM, /* kmm_shrinker_register, kmm_shrinker_unregister */
    KMM_LAYER_VM,      /* kmm_aspace_*, kmm_vm_*, kmm_tlb_* */
    KMM_LAYER_KVA,     /* kmm_vmalloc, kmm_vmap, kmm_kva_* and their frees */
    KMM_LAYER_HEAP,    /* kmm_malloc, kmm_free and friends, kmm_cache_*, kmm_heap_* */
    KMM_LAYER_DIAG,    /* kmm_report_section */
    KMM_LAYER_COUNT
};

/*
 * Classes of mistakes. The first eight are the page allocator's historic
 * kinds (kmm_page_stats.misuse[] is indexed by this enum); the others are
 * shared by every layer. A class means the same in every layer: an
 * unaligned virtual address is UNALIGNED as an unaligned frame is, a
 * non-canonical one OUTSIDE, an address inside a kernel virtual area (or
 * its guard page) NOT_BLOCK, a second free of an area still being freed
 * DOUBLE_FREE (once it is gone, its address is ABSENT: the window keeps no
 * history), a frame mapped as owned that is no allocated single page
 * NOT_BLOCK, a size too large for the window BAD_ORDER. The last two are
 * found by the debugging modes (kmm_heap_debug, kmm_page_debug) after the
 * fact: the call counted is the one that found the damage (a free, an
 * allocation), and its log line names the block's allocation and last free
 * where they are known.
 */
enum kmm_misuse {
    KMM_MISUSE_BAD_ORDER,      /* order or page count out of range */
    KMM_MISUSE_BAD_FLAGS,      /* unknown or conflicting flags */
    KMM_MISUSE_UNALIGNED,      /* an address or size not aligned as the call needs */
    KMM_MISUSE_OUTSIDE,        /* an address outside what the call manages */
    KMM_MISUSE_RESERVED,       /* a reserved page (firmware, kernel, kmm metadata) */
    KMM_MISUSE_DOUBLE_FREE,    /* the block is already free */
    KMM_MISUSE_NOT_BLOCK,      /* inside a block, not at its start (or never allocated) */
    KMM_MISUSE_WRONG_ORDER,    /* freed with another size than allocated */
    KMM_MISUSE_BAD_ARG,        /* a NULL, zero or otherwise malformed argument */
    KMM_MISUSE_BAD_HANDLE,     /* not a live object of the kind: foreign, destroyed, corrupt */
    KMM_MISUSE_ABSENT,         /* nothing there: not mapped, no such area, CPU or shrinker */
    KMM_MISUSE_BUSY,           /* the target is taken: mapped, registered, a guard page */
    KMM_MISUSE_LIMIT,          /* a count the call would take past its limit: references */
    KMM_MISUSE_OVERRUN,        /* a write outside a block: its red zone, its guard page's tail */
    KMM_MISUSE_USE_AFTER_FREE, /* a write to a block after it was freed: its poison */
    KMM_MISUSE_COUNT
};

/* The table. Every figure never decreases. */
struct kmm_misuse_stats {
    uint64_t count[KMM_LAYER_COUNT][KMM_MISUSE_COUNT];
    uint64_t layer_total[KMM_LAYER_COUNT]; /* each row's sum */
    uint64_t total;                        /* every rejection counted */
};

/* kmm_misuse_stats - fill *out. Any context, IRQs off included; lock-free:
 * each counter is read once, so figures racing with rejections may be from
 * slightly different moments. */
void kmm_misuse_stats(struct kmm *k, struct kmm_misuse_stats *out);

/* Short names for the report: "page", "vm", ...; "bad-arg", "double-free",
 * ...; "?" for a value out of range. */
const char *kmm_layer_name(unsigned layer);
const char *kmm_misuse_name(unsigned misuse);

#endif /* KMM_MISUSE_H */
