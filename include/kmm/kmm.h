/*
 * kmm/kmm.h - the kmm instance: creating it, tearing it down, error values.
 *
 * One struct kmm holds all of the library's state; there is no other global.
 * A kernel creates one at boot. Tests create, use and tear down as many as
 * they like, one after the other or side by side on separate simulated
 * machines.
 *
 * Errors: every call that can fail returns an int, 0 (KMM_OK) on success and a
 * negative KMM_E* value otherwise, or NULL / 0 where the contract says so. A
 * caller mistake is rejected with KMM_EINVAL (or a more specific value),
 * counted in one table by layer and class (kmm/misuse.h: kmm_misuse_stats;
 * it says what has no instance to be counted in), logged once through the
 * port with the caller's address, and leaves
 * every structure as it was. Running out of memory returns KMM_ENOMEM. The
 * library panics (kmm_port_panic) only when it finds its own invariants broken.
 */
#ifndef KMM_KMM_H
#define KMM_KMM_H

#include <stddef.h>
#include <stdint.h>

#include <kmm/memmap.h>

struct kmm;
struct kmm_port;

/* Error values. Negative, so that "if (err < 0)" reads naturally. */
#define KMM_OK     0
#define KMM_ENOMEM (-1) /* out of memory: nothing was allocated */
#define KMM_EINVAL (-2) /* a malformed argument: nothing was changed */
#define KMM_ERANGE (-3) /* an address outside what the library manages */
#define KMM_EBUSY  (-4) /* the target is in use (mapped, allocated) */
#define KMM_ENOENT (-5) /* nothing there (not mapped, not allocated) */
#define KMM_ESTATE (-6) /* the object is in the wrong state (double free) */
#define KMM_EACCES (-7) /* the mapping does not allow the access (kmm_vm_fault) */

/* Log levels of the lines the library writes through the port. */
#define KMM_LOG_ERR   0 /* a misuse was rejected, or memory ran out */
#define KMM_LOG_WARN  1 /* something the host should look at */
#define KMM_LOG_INFO  2 /* one-off facts: init, memory added */
#define KMM_LOG_DEBUG 3 /* chatty; only at debug level 3 */

/* A short name for an error value ("ENOMEM"); "E?" for an unknown one. */
const char *kmm_strerror(int err);

/* The most CPUs and NUMA nodes an instance can describe. */
#define KMM_MAX_CPUS  256
#define KMM_MAX_NODES 16

/* The page size the library manages physical memory in. */
#define KMM_PAGE_SHIFT 12
#define KMM_PAGE_SIZE  ((uint64_t)1 << KMM_PAGE_SHIFT)

/* Everything kmm_init() needs to know about the machine. */
struct kmm_config {
    /* The host's port context (kmm/port.h). Must outlive the instance. */
    struct kmm_port *port;
    /* The firmware's memory map: any order, overlaps and unaligned edges
     * allowed (kmm/memmap.h says how they are resolved). Copied; the caller
     * may free it after kmm_init() returns. */
    const struct kmm_region *regions;
    size_t region_count;
    /* Ranges the host already uses (kernel image, modules, boot information,
     * framebuffer): regions whose type wins over usable memory, so any type
     * but KMM_MEM_USABLE (which would reserve nothing: kmm_init rejects
     * it). Copied. */
    const struct kmm_region *reserved;
    size_t reserved_count;
    /* The most CPUs that will ever call the library: 1 .. KMM_MAX_CPUS. Per-CPU
     * state is sized for this many and kmm_port_cpu_id() must stay below it. */
    unsigned cpu_count;
    /* Paging levels of every address space: 4, or 5 for LA57 (the boot code
     * must have enabled it; it cannot change later). 0 means 4. */
    unsigned paging_levels;
    /* Memory hot-add (kmm_page_add_memory): the highest physical address,
     * exclusive, that RAM added after init may reach. kmm_init sizes the
     * section table for it (8 bytes per 128 MiB of address space, plus 16
     * for the growth record). 0: no hot-add beyond the initial map's end
     * (its usable and reclaimable RAM). Rounded down to a page; at most
     * KMM_PAGE_PFN_LIMIT pages (16 TiB). */
    uint64_t hotplug_limit;
    /* The window of kernel virtual areas (kmm/vmalloc.h: vmalloc, vmap,
     * kmm_kva_alloc): [kva_base, kva_base + kva_size). Both 0: the default,
     * KMM_KVA_DEFAULT_BASE 0xffffffff90000000 and 256 MiB (the Boruix heap
     * window). Otherwise both page aligned, kva_size from 2 pages to
     * KMM_KVA_MAX_SIZE (64 GiB), the range canonical, inside one half of the
     * address space, not holding address 0 and ending below 2^64. Mappings
     * the kernel makes inside the window itself are allowed: areas avoid
     * them. Hosted tests put it inside the hosted port's mirror window. */
    uint64_t kva_base;
    uint64_t kva_size;
};

/*
 * kmm_init - create an instance that manages the machine described by cfg.
 *
 * Resolves the memory map (kmm/memmap.h), places the library's metadata (the
 * instance and the page frame database, 16 bytes per page of usable RAM
 * rounded to 128 MiB sections) in usable memory, and hands the other usable
 * pages to the page allocator (kmm/page.h). The metadata goes at the end of
 * the highest usable range above 1 MiB with room for it (high memory first,
 * so the DMA zones stay for devices); it is accounted as KMM_MEM_KMM_META.
 * Descriptors are written now only for all memory below 4 GiB and the first
 * 1 GiB of each node's memory above it; the rest is deferred (kmm/page.h,
 * kmm_page_init_deferred), so a large machine is ready in milliseconds.
 *
 * Returns KMM_OK and stores the instance in *out, or:
 *   KMM_EINVAL  cfg, out or cfg->port is NULL; cpu_count is 0 or above
 *               KMM_MAX_CPUS; paging_levels is not 0, 4 or 5; a region
 *               list is NULL with a non-zero count; hotplug_limit above
 *               KMM_PAGE_PFN_LIMIT pages; a kva_base / kva_size window
 *               that breaks the rules above;
 *               the map is invalid (kmm_memmap_validate() says which entry);
 *               a reserved range of type KMM_MEM_USABLE (and non-zero length);
 *   KMM_ENOMEM  no usable range can hold the metadata, or too little memory
 *               remains for the kernel address space (kmm/vm.h: 257 pages
 *               of tables).
 * Nothing is written to memory on failure. IRQs on; init-time only; O(n^2) in
 * the number of regions (n <= KMM_MAX_REGIONS) plus O(sections) plus
 * O(pages initialised now).
 */
int kmm_init(const struct kmm_config *cfg, struct kmm **out);

/*
 * kmm_fini - tear an instance down. The memory it managed, its own metadata
 * included, goes back to being plain memory of the host. Nothing is walked
 * or freed: pages still allocated, address spaces, kernel virtual areas and
 * registered shrinkers cease to exist with the instance, and every pointer
 * and address it handed out becomes the host's to forget. The caller must
 * make sure that no other CPU is inside a kmm call and none will be, and
 * that no address space of the instance is loaded on a CPU if its memory is
 * to be reused (kmm_check before kmm_fini finds what is still held).
 * Returns KMM_OK; KMM_OK for NULL (nothing happens); KMM_ESTATE, with
 * nothing done, if k is not a live instance (a second kmm_fini): there is
 * no instance left to count or log the mistake in. IRQs on; O(1).
 */
int kmm_fini(struct kmm *k);

/* The port context an instance was created with. Any context. */
struct kmm_port *kmm_port_of(const struct kmm *k);

/*
 * kmm_memory_map - the resolved physical memory map the instance manages,
 * lowest address first; *count receives the number of ranges, at most
 * KMM_MAX_MAP_RANGES (kmm/memmap.h). The instance's
 * own pages appear as one KMM_MEM_KMM_META range. Valid until kmm_fini().
 * Any context.
 */
const struct kmm_region *kmm_memory_map(const struct kmm *k, size_t *count);

/*
 * Where reports go: write() is called with pieces of text (not NUL-terminated,
 * lines end in '\n'). It must not call back into the library.
 */
struct kmm_sink {
    void (*write)(void *ctx, const char *text, size_t len);
    void *ctx;
};

/*
 * kmm_report - write a human-readable report of the instance to sink: the
 * resolved memory map and its totals, the page allocator's figures, and free
 * blocks per order with the unusable free space index of each (buddyinfo).
 * Later layers add their sections (page tables, kernel virtual areas as
 * /proc/vmallocinfo shows them, heap), the rejected calls by layer and
 * class, each zone's figures, the latest events of the ring (kmm/events.h)
 * and the top allocation sites (the heap's tracked live objects grouped by
 * caller, most bytes first: kmm_heap_leak_sites since generation 0). Its
 * figures come from the calls kmm_stats gathers (kmm/stats.h) and the
 * memory map. Takes each zone lock in turn while it reads
 * the statistics. For a k that is not a live instance (torn down already) it writes one line that
 * says so and reads nothing else. IRQs on.
 */
void kmm_report(struct kmm *k, const struct kmm_sink *sink);

/* The sections of kmm_report, in the order it writes them. */
enum kmm_report_section {
    KMM_REPORT_MEMMAP,     /* the resolved memory map and its totals by type */
    KMM_REPORT_MEMINFO,    /* the page allocator's figures (like /proc/meminfo) */
    KMM_REPORT_BUDDYINFO,  /* free blocks per order and zone, the unusable index */
    KMM_REPORT_RECLAIM,    /* the shrinkers, and NUMA nodes on a NUMA machine */
    KMM_REPORT_PAGETABLES, /* the kernel space's and user spaces' page tables */
    KMM_REPORT_VMALLOC,    /* kernel virtual areas (like /proc/vmallocinfo) */
    KMM_REPORT_HEAP,       /* the heap's totals and its caches (like /proc/slabinfo) */
    KMM_REPORT_HEAP_DEBUG, /* the heap's debugging modes and recent events */
    KMM_REPORT_MISUSE,     /* the rejected calls by layer and class */
    KMM_REPORT_ZONEINFO,   /* each zone's range, pages and calls (like /proc/zoneinfo) */
    KMM_REPORT_EVENTS,     /* the latest events of the ring (kmm/events.h) */
    KMM_REPORT_SITES,      /* top allocation sites: live tracked heap objects by caller */
    KMM_REPORT_SECTIONS
};

/*
 * kmm_report_section - write one section of kmm_report to sink, exactly as
 * kmm_report writes it (a debug shell's meminfo or slabinfo command).
 * Returns KMM_OK, or, with nothing written but the refusal:
 *   KMM_EINVAL  section is not an enum kmm_report_section value below
 *               KMM_REPORT_SECTIONS (misuse, counted under KMM_LAYER_DIAG
 *               and logged);
 *   KMM_ESTATE  k is not a live instance (one line says so, as kmm_report).
 * Locks as kmm_report takes them for that section. IRQs on.
 */
int kmm_report_section(struct kmm *k, unsigned section, const struct kmm_sink *sink);

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *kmm_version(void);

#endif /* KMM_KMM_H */
