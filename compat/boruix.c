/*
 * boruix.c - the Boruix interface (SPEC §8; boruix/rust_memory.h) as thin
 * wrappers over kmm's public interface.
 *
 * Why here and not in src/: this file is a client of the library, not a
 * layer of it. It includes only public headers (<kmm/...>, <boruix/...>),
 * keeps a global (the one instance Boruix's calls act on, which the core
 * must never have: tests create many instances), and needs a world behind
 * it (compat/world.h: a simulated machine hosted, a boot loader's memory
 * map in a kernel) that src/ may not know about. tools/check-layers.sh
 * holds it to public headers.
 *
 * Failure values (SPEC §8, §9): 0 for addresses, -1 for ints. What this
 * layer rejects itself (a NULL out pointer, an unknown flag, a call before
 * init) is counted in its own counter (kmm_boruix_misuse) and logged once
 * with the caller; what it passes on is rejected, counted and logged by the
 * library.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <boruix/rust_memory.h>
#include <kmm/check.h>
#include <kmm/fmt.h>
#include <kmm/events.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/memmap.h>
#include <kmm/page.h>
#include <kmm/port.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "world.h"

#define PAGE       UINT64_C(4096)
#define MIB        (UINT64_C(1) << 20)
/* The low memory the original kept for the kernel image. */
#define KERNEL_LOW (16 * MIB)
/* Room for the caller's regions plus the kept low memory and the world's
 * own reservations, within kmm's limit for one map. */
#define MAX_IN     (KMM_MAX_REGIONS - 1)
#define MAX_LINE   192

/* The x86_64 entry bits rust_map_page understands. */
#define X86_PRESENT UINT64_C(0x1)
#define X86_RW      UINT64_C(0x2)
#define X86_USER    UINT64_C(0x4)
#define X86_PWT     UINT64_C(0x8)
#define X86_PCD     UINT64_C(0x10)
#define X86_A       UINT64_C(0x20)
#define X86_D       UINT64_C(0x40)
#define X86_PAT     UINT64_C(0x80)
#define X86_G       UINT64_C(0x100)
#define X86_NX      (UINT64_C(1) << 63)
#define X86_KNOWN                                                                                  \
    (X86_PRESENT | X86_RW | X86_USER | X86_PWT | X86_PCD | X86_A | X86_D | X86_G | X86_NX)

/* Debug levels (rust_memory_set_debug_level) as the heap's modes. */
#define DEBUG_LEVEL_MAX 3u
static const unsigned heap_modes[DEBUG_LEVEL_MAX + 1] = {
    0,
    KMM_HEAP_DEBUG_EVENTS,
    KMM_HEAP_DEBUG_EVENTS | KMM_HEAP_DEBUG_POISON | KMM_HEAP_DEBUG_QUARANTINE,
    KMM_HEAP_DEBUG_ALL,
};
#define PAGE_POISON_LEVEL 2u

/* The stress test's live slots, and one in this many steps is a page. */
#define STRESS_SLOTS      64u
#define STRESS_PAGE_EVERY 8u
#define STRESS_SEED       UINT64_C(0x9e3779b97f4a7c15)

/* The one instance and what belongs to it. */
static struct {
    struct kmm *k;
    struct kmm_aspace *ks; /* its kernel space */
    struct kmm_boruix_world w;
    uint64_t hhdm; /* rust_set_hhdm_offset's, before init */
    uint64_t misuse;
    unsigned debug_level;
    const struct kmm_sink *console;
    bool adopted; /* k is its caller's (kmm_boruix_adopt): never kmm_fini'd here */
} g;

#define CALLER() __builtin_return_address(0)

/* --- logging and refusals ------------------------------------------------------------- */

static void log_line(int level, const char *line)
{
    if (g.k)
        kmm_port_log(kmm_port_of(g.k), level, line);
    else
        kmm_boruix_world_log(level, line);
}

/* A call this layer rejects: counted once, logged once with its caller. */
__attribute__((format(printf, 3, 4))) static void refuse(const char *call, const void *caller,
                                                         const char *fmt, ...)
{
    char what[MAX_LINE / 2], line[MAX_LINE];
    va_list ap;
    va_start(ap, fmt);
    kmm_vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    g.misuse++;
    kmm_snprintf(line, sizeof(line), "%s: %s, caller %p", call, what, caller);
    log_line(KMM_LOG_ERR, line);
}

/* Whether the instance exists; a call before init is refused. */
static bool ready(const char *call, const void *caller)
{
    if (g.k)
        return true;
    refuse(call, caller, "called before rust_memory_init");
    return false;
}

/* --- set-up ------------------------------------------------------------------------------ */

void rust_set_hhdm_offset(uint64_t offset)
{
    if (offset & (PAGE - 1)) {
        refuse("rust_set_hhdm_offset", CALLER(), "offset %#llx is not page aligned",
               (unsigned long long)offset);
        return;
    }
    if (g.k) {
        /* The library read the direct map once, at init. */
        if (offset != (uint64_t)kmm_port_direct_map(g.w.port))
            refuse("rust_set_hhdm_offset", CALLER(), "offset %#llx after init (in use: %#llx)",
                   (unsigned long long)offset, (unsigned long long)kmm_port_direct_map(g.w.port));
        return;
    }
    g.hhdm = offset;
}

uint64_t rust_get_hhdm_offset(void)
{
    return g.k ? (uint64_t)kmm_port_direct_map(g.w.port) : g.hhdm;
}

int rust_memory_init(const rust_memory_region_t *regions, size_t count)
{
    const void *caller = CALLER();
    if (g.k) {
        refuse("rust_memory_init", caller, "called a second time");
        return -1;
    }
    if (!regions || count == 0 || count > MAX_IN) {
        refuse("rust_memory_init", caller, "regions %p, count %zu (1..%u)", (const void *)regions,
               count, (unsigned)MAX_IN);
        return -1;
    }
    static struct kmm_region map[MAX_IN], extra[KMM_MAX_REGIONS];
    for (size_t i = 0; i < count; i++) {
        uint32_t t = regions[i].memory_type;
        if (t < RUST_MEMORY_TYPE_AVAILABLE || t > RUST_MEMORY_TYPE_BAD) {
            refuse("rust_memory_init", caller, "region %zu has type %u (1..5)", i, (unsigned)t);
            return -1;
        }
        /* RUST_MEMORY_TYPE_* and KMM_MEM_* share their numbers 1..5. */
        map[i] = (struct kmm_region){regions[i].base_addr, regions[i].length, t};
    }
    if (kmm_memmap_validate(map, count) != KMM_MEMMAP_VALID) {
        refuse("rust_memory_init", caller, "entry %ld of the map is invalid",
               kmm_memmap_validate(map, count));
        return -1;
    }
    size_t n_extra = 0;
    extra[n_extra++] = (struct kmm_region){0, KERNEL_LOW, KMM_MEM_KERNEL};
    struct kmm_boruix_world w = {0};
    int err = kmm_boruix_world_up(map, count, g.hhdm, &w, extra, KMM_MAX_REGIONS - count, &n_extra);
    if (err != KMM_OK) {
        char line[MAX_LINE];
        kmm_snprintf(line, sizeof(line), "rust_memory_init: no machine for the map (%s)",
                     kmm_strerror(err));
        kmm_boruix_world_log(KMM_LOG_ERR, line);
        return -1;
    }
    struct kmm_config cfg = {.port = w.port,
                             .regions = map,
                             .region_count = count,
                             .reserved = extra,
                             .reserved_count = n_extra,
                             .cpu_count = 1,
                             .kva_base = w.kva_base,
                             .kva_size = w.kva_size};
    err = kmm_init(&cfg, &g.k);
    if (err == KMM_OK && (err = kmm_boruix_world_ready(g.k)) != KMM_OK)
        kmm_fini(g.k);
    if (err != KMM_OK) {
        kmm_boruix_world_down(&w);
        g.k = NULL;
        char line[MAX_LINE];
        kmm_snprintf(line, sizeof(line), "rust_memory_init: kmm_init failed (%s)",
                     kmm_strerror(err));
        kmm_boruix_world_log(KMM_LOG_ERR, line);
        return -1;
    }
    g.w = w;
    g.ks = kmm_kernel_aspace(g.k);
    g.debug_level = 0;
    return 0;
}

int kmm_boruix_adopt(struct kmm *k, const struct kmm_boruix_world *w)
{
    const void *caller = CALLER();
    if (g.k) {
        refuse("kmm_boruix_adopt", caller, "an instance exists already");
        return KMM_ESTATE;
    }
    if (!k || !w) {
        refuse("kmm_boruix_adopt", caller, "instance %p, world %p", (void *)k, (const void *)w);
        return KMM_EINVAL;
    }
    struct kmm_port *port = w->port ? w->port : kmm_port_of(k);
    if (port != kmm_port_of(k)) {
        refuse("kmm_boruix_adopt", caller, "the world's port is not the instance's");
        return KMM_EINVAL;
    }
    /* Boruix maps fixed addresses in the window's first part: the
     * instance's own areas must never be there. */
    struct kmm_vmalloc_stats v;
    kmm_vmalloc_stats(k, &v);
    uint64_t fixed_end = w->heap_base + KMM_BORUIX_FIXED_PART;
    if (w->heap_size < KMM_BORUIX_FIXED_PART || fixed_end < w->heap_base ||
        (v.window_base < fixed_end && w->heap_base < v.window_base + v.window_size)) {
        refuse("kmm_boruix_adopt", caller,
               "heap window %#llx: fixed part in the areas' window %#llx",
               (unsigned long long)w->heap_base, (unsigned long long)v.window_base);
        return KMM_EINVAL;
    }
    g.w = *w;
    g.w.port = port;
    g.w.kva_base = v.window_base;
    g.w.kva_size = v.window_size;
    g.k = k;
    g.ks = kmm_kernel_aspace(k);
    g.debug_level = 0;
    g.adopted = true;
    return KMM_OK;
}

void kmm_boruix_heap_window(uint64_t *base, uint64_t *size)
{
    *base = g.k ? g.w.heap_base : 0;
    *size = g.k ? g.w.heap_size : 0;
}

int kmm_boruix_fini(void)
{
    if (!g.k)
        return KMM_ESTATE;
    if (!g.adopted) {
        kmm_fini(g.k);
        kmm_boruix_world_down(&g.w);
    }
    g.adopted = false;
    g.k = NULL;
    g.ks = NULL;
    g.misuse = 0;
    g.debug_level = 0;
    return KMM_OK;
}

struct kmm *kmm_boruix_instance(void)
{
    return g.k;
}

uint64_t kmm_boruix_misuse(void)
{
    return g.misuse;
}

void kmm_boruix_set_console(const struct kmm_sink *sink)
{
    g.console = sink;
}

/* --- heap ----------------------------------------------------------------------------------- */

void *rust_kmalloc(size_t size)
{
    const void *caller = CALLER();
    if (!ready("rust_kmalloc", caller) || size == 0)
        return NULL;
    return kmm_malloc_caller(g.k, size, 0, caller);
}

void rust_kfree(void *ptr)
{
    if (!ptr || !ready("rust_kfree", CALLER()))
        return;
    (void)kmm_free_caller(g.k, ptr, CALLER());
}

/* --- physical pages ----------------------------------------------------------------------------
 */

uint64_t rust_alloc_page(void)
{
    const void *caller = CALLER();
    if (!ready("rust_alloc_page", caller))
        return 0;
    return kmm_page_alloc_caller(g.k, 0, KMM_GFP_ZERO, caller);
}

void rust_free_page(uint64_t page_addr)
{
    const void *caller = CALLER();
    if (page_addr == 0 || !ready("rust_free_page", caller))
        return;
    (void)kmm_page_free_caller(g.k, page_addr, 0, caller);
}

uint64_t rust_alloc_pages(size_t count)
{
    const void *caller = CALLER();
    if (!ready("rust_alloc_pages", caller))
        return 0;
    if (count == 0) {
        refuse("rust_alloc_pages", caller, "count 0");
        return 0;
    }
    return kmm_run_alloc_caller(g.k, count, 0, 0, KMM_GFP_ZERO, caller);
}

void rust_free_pages(uint64_t start_addr, size_t count)
{
    const void *caller = CALLER();
    if (start_addr == 0 || !ready("rust_free_pages", caller))
        return;
    (void)kmm_run_free_caller(g.k, start_addr, count, caller);
}

/* --- page tables
 * ---------------------------------------------------------------------------------- */

/* x86 entry bits -> kmm's protection and cache mode. */
static unsigned map_flags(uint64_t flags)
{
    unsigned f = KMM_PROT_READ;
    if (flags & X86_RW)
        f |= KMM_PROT_WRITE;
    if (flags & X86_USER)
        f |= KMM_PROT_USER;
    if (!(flags & X86_NX))
        f |= KMM_PROT_EXEC;
    if (flags & X86_G)
        f |= KMM_PROT_GLOBAL;
    /* PCD and PWT select PAT entries 0..3: WB, WT, UC-, UC. An explicit mode
     * lets a kernel map device memory; RAM in another mode than write-back
     * is an alias its caller asked for by the bits. */
    if (flags & X86_PCD)
        f |= KMM_CACHE_UC | KMM_MAP_ALIAS;
    else if (flags & X86_PWT)
        f |= KMM_CACHE_WT | KMM_MAP_ALIAS;
    else
        f |= KMM_CACHE_WB;
    return f;
}

int rust_map_page(uint64_t virtual_addr, uint64_t physical_addr, uint64_t flags)
{
    const void *caller = CALLER();
    if (!ready("rust_map_page", caller))
        return -1;
    if (flags & X86_PAT) {
        refuse("rust_map_page", caller,
               "va %#llx: flags %#llx have bit 7 (PAT in a 4 KiB entry, not a page size)",
               (unsigned long long)virtual_addr, (unsigned long long)flags);
        return -1;
    }
    if (flags & ~X86_KNOWN) {
        refuse("rust_map_page", caller, "va %#llx: unknown flags %#llx",
               (unsigned long long)virtual_addr, (unsigned long long)(flags & ~X86_KNOWN));
        return -1;
    }
    return kmm_vm_map_caller(g.ks, virtual_addr, physical_addr, PAGE, map_flags(flags), caller) ==
                   KMM_OK
               ? 0
               : -1;
}

uint64_t rust_unmap_page(uint64_t virtual_addr)
{
    const void *caller = CALLER();
    if (!ready("rust_unmap_page", caller))
        return 0;
    struct kmm_vm_translation t;
    bool mapped = (virtual_addr & (PAGE - 1)) == 0 &&
                  kmm_vm_translate_caller(g.ks, virtual_addr, &t, caller) == KMM_OK;
    /* An unaligned or unmapped page goes to the library all the same, which
     * refuses it, counts it and logs it with Boruix's caller. */
    if (kmm_vm_unmap_caller(g.ks, virtual_addr, PAGE, caller) != KMM_OK || !mapped)
        return 0;
    return t.pa;
}

uint64_t rust_virt_to_phys(uint64_t virtual_addr)
{
    const void *caller = CALLER();
    if (!ready("rust_virt_to_phys", caller))
        return 0;
    struct kmm_vm_translation t;
    return kmm_vm_translate_caller(g.ks, virtual_addr, &t, caller) == KMM_OK ? t.pa : 0;
}

/* Sets or clears prot bits of the mapped page at va: -1 (the library's
 * refusal for an unaligned, unmapped or reserved page, logged with caller,
 * Boruix's) or 0. */
static int change_prot(uint64_t va, unsigned set, unsigned clear, const void *caller)
{
    struct kmm_vm_translation t;
    unsigned prot = 0;
    if ((va & (PAGE - 1)) == 0 && kmm_vm_translate_caller(g.ks, va, &t, caller) == KMM_OK)
        prot = t.prot;
    /* An unmapped page (prot 0) reaches kmm_vm_protect too: its refusal. */
    prot = prot ? (prot | set) & ~clear : KMM_PROT_READ;
    return kmm_vm_protect_caller(g.ks, va, PAGE, prot, caller) == KMM_OK ? 0 : -1;
}

int rust_set_page_readonly(uint64_t virt_addr)
{
    const void *caller = CALLER();
    if (!ready("rust_set_page_readonly", caller))
        return -1;
    return change_prot(virt_addr, 0, KMM_PROT_WRITE, caller);
}

int rust_set_page_readwrite(uint64_t virt_addr)
{
    const void *caller = CALLER();
    if (!ready("rust_set_page_readwrite", caller))
        return -1;
    return change_prot(virt_addr, KMM_PROT_WRITE, 0, caller);
}

int rust_set_page_no_execute(uint64_t virt_addr)
{
    const void *caller = CALLER();
    if (!ready("rust_set_page_no_execute", caller))
        return -1;
    return change_prot(virt_addr, 0, KMM_PROT_EXEC, caller);
}

int rust_get_page_flags(uint64_t virt_addr, bool *present, bool *writable, bool *user,
                        bool *executable)
{
    const void *caller = CALLER();
    if (!present || !writable || !user || !executable) {
        refuse("rust_get_page_flags", caller, "a NULL answer pointer");
        return -1;
    }
    *present = *writable = *user = *executable = false;
    if (!ready("rust_get_page_flags", caller))
        return -1;
    struct kmm_vm_translation t;
    if (kmm_vm_translate_caller(g.ks, virt_addr, &t, caller) != KMM_OK)
        return -1; /* not mapped: an answer, not a mistake */
    *present = true;
    *writable = (t.prot & KMM_PROT_WRITE) != 0;
    *user = (t.prot & KMM_PROT_USER) != 0;
    *executable = (t.prot & KMM_PROT_EXEC) != 0;
    return 0;
}

/* --- the heap window
 * --------------------------------------------------------------------------------- */

uint64_t rust_vmm_allocate(uint64_t size)
{
    const void *caller = CALLER();
    if (!ready("rust_vmm_allocate", caller))
        return 0;
    uint64_t va;
    return kmm_kva_alloc_caller(g.k, size, &va, caller) == KMM_OK ? va : 0;
}

int rust_vmm_map_and_allocate(uint64_t size, uint64_t *out_virt_addr)
{
    const void *caller = CALLER();
    if (!ready("rust_vmm_map_and_allocate", caller))
        return -1;
    if (!out_virt_addr) {
        refuse("rust_vmm_map_and_allocate", caller, "out_virt_addr is NULL");
        return -1;
    }
    if (size > SIZE_MAX) {
        refuse("rust_vmm_map_and_allocate", caller, "size %#llx", (unsigned long long)size);
        return -1;
    }
    void *p = kmm_vmalloc_caller(g.k, (size_t)size, KMM_GFP_ZERO, caller);
    if (!p)
        return -1;
    *out_virt_addr = (uint64_t)(uintptr_t)p;
    return 0;
}

void rust_vmm_get_heap_usage(uint64_t *used, uint64_t *total)
{
    const void *caller = CALLER();
    if (!used || !total) {
        refuse("rust_vmm_get_heap_usage", caller, "a NULL answer pointer");
        return;
    }
    *used = *total = 0;
    if (!ready("rust_vmm_get_heap_usage", caller))
        return;
    struct kmm_vmalloc_stats v;
    kmm_vmalloc_stats(g.k, &v);
    *used = v.used_pages * PAGE;
    *total = v.window_size;
}

void rust_heap_stats(size_t *total_alloc, size_t *total_freed, size_t *current, size_t *alloc_count,
                     size_t *free_count)
{
    const void *caller = CALLER();
    if (!total_alloc || !total_freed || !current || !alloc_count || !free_count) {
        refuse("rust_heap_stats", caller, "a NULL answer pointer");
        return;
    }
    *total_alloc = *total_freed = *current = *alloc_count = *free_count = 0;
    if (!ready("rust_heap_stats", caller))
        return;
    struct kmm_heap_stats h;
    kmm_heap_stats(g.k, &h);
    *total_alloc = (size_t)h.alloc_bytes;
    *total_freed = (size_t)h.free_bytes;
    *current = (size_t)h.bytes_used;
    *alloc_count = (size_t)h.allocs;
    *free_count = (size_t)h.frees;
}

/* --- statistics --------------------------------------------------------------------------------
 */

static uint32_t percent(uint64_t part, uint64_t whole)
{
    return whole ? (uint32_t)(part * 100 / whole) : 0;
}

static void physical_stats(rust_physical_memory_stats_t *p)
{
    struct kmm_page_stats s;
    kmm_page_stats(g.k, &s);
    /* Deferred pages are usable on demand: free. The metadata is used. */
    uint64_t total = s.usable_pages;
    uint64_t free = s.free_pages + s.deferred_pages;
    uint64_t reserved = 0;
    for (unsigned t = 1; t < KMM_MEM_TYPE_LIMIT; t++)
        reserved += s.reserved_bytes[t];
    p->total_memory = total * PAGE;
    p->available_memory = free * PAGE;
    p->allocated_memory = (total - free) * PAGE;
    p->reserved_memory = reserved;
    p->total_pages = (size_t)total;
    p->allocated_pages = (size_t)(total - free);
    p->free_pages = (size_t)free;
    p->usage_percent = percent(total - free, total);
}

static void vm_figures(rust_virtual_memory_stats_t *v, rust_page_table_stats_t *pt)
{
    struct kmm_vm_stats s;
    kmm_vm_stats(g.ks, &s);
    uint64_t pages =
        s.mapped_pages + s.mapped_2m * (KMM_PAGE_2M / PAGE) + s.mapped_1g * (KMM_PAGE_1G / PAGE);
    v->kernel_virtual_size = pages * PAGE;
    v->user_virtual_size = 0;
    v->mapped_pages = (size_t)pages;
    v->page_table_memory = (size_t)s.table_bytes;
    uint64_t tables = 0;
    for (unsigned l = KMM_VM_PT; l <= KMM_VM_PML5; l++)
        tables += s.tables[l];
    uint64_t tops = s.tables[KMM_VM_PML5] ? s.tables[KMM_VM_PML5] : s.tables[KMM_VM_PML4];
    pt->pml4_tables = (size_t)s.tables[KMM_VM_PML4];
    pt->pdp_tables = (size_t)s.tables[KMM_VM_PDPT];
    pt->pd_tables = (size_t)s.tables[KMM_VM_PD];
    pt->pt_tables = (size_t)s.tables[KMM_VM_PT];
    pt->total_entries = (size_t)(tables * (PAGE / sizeof(uint64_t)));
    /* Every table below the top is linked from one present entry. */
    pt->valid_entries = (size_t)(s.mapped_pages + s.mapped_2m + s.mapped_1g + tables - tops);
}

static void heap_figures(rust_heap_stats_t *h)
{
    struct kmm_heap_stats s;
    kmm_heap_stats(g.k, &s);
    h->total_size = (size_t)s.bytes_held;
    h->allocated = (size_t)s.bytes_used;
    h->free = (size_t)s.bytes_free;
    h->peak_usage = (size_t)s.bytes_peak;
    h->total_allocated = (size_t)s.alloc_bytes;
    h->total_freed = (size_t)s.free_bytes;
}

int rust_memory_stats(rust_memory_stats_t *stats)
{
    const void *caller = CALLER();
    if (!ready("rust_memory_stats", caller))
        return -1;
    if (!stats) {
        refuse("rust_memory_stats", caller, "stats is NULL");
        return -1;
    }
    physical_stats(&stats->physical);
    vm_figures(&stats->virtual_memory, &stats->page_tables);
    heap_figures(&stats->heap);
    return 0;
}

static void summary_of(rust_memory_summary_t *s)
{
    rust_memory_stats_t st;
    physical_stats(&st.physical);
    vm_figures(&st.virtual_memory, &st.page_tables);
    heap_figures(&st.heap);
    s->total_physical_mb = st.physical.total_memory / MIB;
    s->used_physical_mb = st.physical.allocated_memory / MIB;
    s->free_physical_mb = st.physical.available_memory / MIB;
    s->heap_used_kb = st.heap.allocated / 1024;
    s->heap_free_kb = st.heap.free / 1024;
    s->page_tables_count = st.page_tables.pml4_tables + st.page_tables.pdp_tables +
                           st.page_tables.pd_tables + st.page_tables.pt_tables;
    s->usage_percent = st.physical.usage_percent;
}

int rust_memory_summary(rust_memory_summary_t *summary)
{
    const void *caller = CALLER();
    if (!ready("rust_memory_summary", caller))
        return -1;
    if (!summary) {
        refuse("rust_memory_summary", caller, "summary is NULL");
        return -1;
    }
    summary_of(summary);
    return 0;
}

int rust_memory_report(rust_memory_report_t *report)
{
    const void *caller = CALLER();
    if (!ready("rust_memory_report", caller))
        return -1;
    if (!report) {
        refuse("rust_memory_report", caller, "report is NULL");
        return -1;
    }
    summary_of(&report->summary);
    struct kmm_heap_debug_stats d;
    kmm_heap_debug_stats(g.k, &d);
    report->leak_count = (size_t)d.tracked;
    struct kmm_page_stats s;
    kmm_page_stats(g.k, &s);
    uint64_t free = 0, whole = 0;
    for (unsigned z = 0; z < KMM_ZONE_COUNT; z++) {
        free += s.zones[z].free_pages;
        whole += s.zones[z].free_blocks[KMM_PAGE_MAX_ORDER] << KMM_PAGE_MAX_ORDER;
    }
    report->fragmentation_percent = percent(free - whole, free);
    size_t ranges;
    (void)kmm_memory_map(g.k, &ranges);
    report->region_count = ranges;
    struct kmm_heap_stats h;
    kmm_heap_stats(g.k, &h);
    report->allocation_count = (size_t)(h.allocs - h.frees);
    return 0;
}

int rust_memory_check(void)
{
    if (!ready("rust_memory_check", CALLER()))
        return -1;
    struct kmm_check_result r;
    int status = kmm_check(g.k, &r);
    if (status != KMM_CHECK_OK) {
        char line[MAX_LINE];
        kmm_snprintf(line, sizeof(line), "rust_memory_check: %lu problem(s); first: %s", r.problems,
                     r.first);
        log_line(KMM_LOG_WARN, line);
    }
    return status; /* KMM_CHECK_* are Boruix's 0, 1, 2 */
}

uint32_t rust_memory_usage_percent(void)
{
    if (!g.k)
        return 0;
    rust_physical_memory_stats_t p;
    physical_stats(&p);
    return p.usage_percent;
}

uint32_t rust_heap_usage_percent(void)
{
    if (!g.k)
        return 0;
    struct kmm_heap_stats s;
    kmm_heap_stats(g.k, &s);
    return percent(s.bytes_used, s.bytes_held);
}

void rust_memory_debug_print(void)
{
    if (!ready("rust_memory_debug_print", CALLER()))
        return;
    struct kmm_sink world = {kmm_boruix_world_console, NULL};
    kmm_report(g.k, g.console ? g.console : &world);
}

void rust_memory_set_debug_level(uint32_t level)
{
    const void *caller = CALLER();
    if (!ready("rust_memory_set_debug_level", caller))
        return;
    if (level > DEBUG_LEVEL_MAX) {
        refuse("rust_memory_set_debug_level", caller, "level %u (0..%u)", (unsigned)level,
               DEBUG_LEVEL_MAX);
        return;
    }
    int err = kmm_heap_debug(g.k, heap_modes[level]);
    if (err < 0) {
        char line[MAX_LINE];
        kmm_snprintf(line, sizeof(line), "rust_memory_set_debug_level: level %u: %s",
                     (unsigned)level, kmm_strerror(err));
        log_line(KMM_LOG_WARN, line);
        return;
    }
    (void)kmm_page_debug(g.k, level >= PAGE_POISON_LEVEL ? KMM_PAGE_DEBUG_POISON : 0);
    /* The library's ring of recent events from level 1: the page
     * allocator's as well as the heap's (which the heap's modes above
     * switched already; the ring keeps them in one order). */
    err = kmm_events_switch(g.k, level ? KMM_EVENTS_PAGE | KMM_EVENTS_HEAP : 0);
    if (err < 0) {
        char line[MAX_LINE];
        kmm_snprintf(line, sizeof(line),
                     "rust_memory_set_debug_level: level %u: no ring of recent events: %s",
                     (unsigned)level, kmm_strerror(err));
        log_line(KMM_LOG_WARN, line);
    }
    g.debug_level = level;
}

/* --- workloads ---------------------------------------------------------------------------------
 */

/* xorshift64*: the workloads' reproducible random numbers. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(0x2545f4914f6cdd1d);
}

/* The byte at offset i of a block with tag `tag`: differs between blocks
 * and along each one, so a block written over another shows. */
static uint8_t pattern(uint64_t tag, size_t i)
{
    return (uint8_t)(tag * 31u + i * 7u + (i >> 8));
}

static void fill(uint8_t *p, size_t n, uint64_t tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(tag, i);
}

static bool intact(const uint8_t *p, size_t n, uint64_t tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern(tag, i))
            return false;
    return true;
}

/* One live object of the stress test: a heap block or a page. */
struct stress_slot {
    uint8_t *p;  /* where its bytes are (a page's through the direct map) */
    uint64_t pa; /* a page's physical address; 0 for a heap block */
    size_t size;
    uint64_t tag;
};

/* Checks and frees slot s; false if its contents changed. */
static bool stress_release(struct stress_slot *s)
{
    bool ok = intact(s->p, s->size, s->tag);
    if (s->pa)
        ok = kmm_page_free(g.k, s->pa, 0) == KMM_OK && ok;
    else
        ok = kmm_free(g.k, s->p) == KMM_OK && ok;
    s->p = NULL;
    return ok;
}

int rust_memory_stress_test(uint32_t iterations, size_t max_alloc_size)
{
    const void *caller = CALLER();
    if (!ready("rust_memory_stress_test", caller))
        return -1;
    if (iterations == 0 || max_alloc_size == 0 || max_alloc_size > KMM_HEAP_SIZE_MAX) {
        refuse("rust_memory_stress_test", caller, "iterations %u, max_alloc_size %zu",
               (unsigned)iterations, max_alloc_size);
        return -1;
    }
    struct kmm_heap_stats before;
    kmm_heap_stats(g.k, &before);
    struct stress_slot slots[STRESS_SLOTS] = {{0}};
    uint64_t rng = STRESS_SEED ^ iterations ^ max_alloc_size;
    uintptr_t dm = kmm_port_direct_map(g.w.port);
    bool ok = true;
    unsigned long failed = 0;
    for (uint32_t i = 0; i < iterations && ok; i++) {
        struct stress_slot *s = &slots[next_random(&rng) % STRESS_SLOTS];
        if (s->p) {
            ok = stress_release(s);
            continue;
        }
        s->tag = i + 1;
        if (next_random(&rng) % STRESS_PAGE_EVERY == 0) {
            s->pa = kmm_page_alloc(g.k, 0, KMM_GFP_ZERO);
            s->size = PAGE;
            s->p = s->pa ? (uint8_t *)(dm + s->pa) : NULL;
        } else {
            s->pa = 0;
            s->size = (size_t)(next_random(&rng) % max_alloc_size) + 1;
            s->p = kmm_malloc(g.k, s->size, 0);
        }
        if (!s->p) {
            failed++; /* out of memory is an answer, not a failure */
            continue;
        }
        fill(s->p, s->size, s->tag);
    }
    for (unsigned i = 0; i < STRESS_SLOTS; i++)
        if (slots[i].p && !stress_release(&slots[i]))
            ok = false;
    struct kmm_heap_stats after;
    kmm_heap_stats(g.k, &after);
    struct kmm_check_result r;
    int status = kmm_check(g.k, &r);
    char line[MAX_LINE];
    kmm_snprintf(line, sizeof(line),
                 "rust_memory_stress_test: %u iterations up to %zu bytes: %s (%lu without memory, "
                 "heap in use %llu -> %llu bytes, check %d)",
                 (unsigned)iterations, max_alloc_size, ok ? "contents intact" : "CONTENTS CHANGED",
                 failed, (unsigned long long)before.bytes_used,
                 (unsigned long long)after.bytes_used, status);
    log_line(ok && status == KMM_CHECK_OK ? KMM_LOG_INFO : KMM_LOG_ERR, line);
    return ok && status == KMM_CHECK_OK && after.bytes_used == before.bytes_used ? 0 : -1;
}

uint64_t rust_memory_benchmark(uint32_t alloc_count, size_t alloc_size)
{
    const void *caller = CALLER();
    if (!ready("rust_memory_benchmark", caller))
        return 0;
    if (alloc_count == 0 || alloc_size == 0 || alloc_size > KMM_HEAP_SIZE_MAX) {
        refuse("rust_memory_benchmark", caller, "alloc_count %u, alloc_size %zu",
               (unsigned)alloc_count, alloc_size);
        return 0;
    }
    if (kmm_port_clock_ns() == 0) {
        log_line(KMM_LOG_WARN, "rust_memory_benchmark: the port has no clock");
        return 0;
    }
    /* The pointers themselves live on the heap, allocated before the clock
     * starts (vmalloc'd when there are many). */
    void **blocks = kmm_malloc(g.k, (size_t)alloc_count * sizeof(void *), 0);
    if (!blocks)
        return 0;
    uint32_t got = 0;
    uint64_t t0 = kmm_port_clock_ns();
    for (; got < alloc_count; got++) {
        uint8_t *p = kmm_malloc(g.k, alloc_size, 0);
        if (!p)
            break;
        p[0] = (uint8_t)got; /* touched, as a real user would */
        blocks[got] = p;
    }
    for (uint32_t i = 0; i < got; i++)
        (void)kmm_free(g.k, blocks[i]);
    uint64_t t1 = kmm_port_clock_ns();
    (void)kmm_free(g.k, blocks);
    if (got < alloc_count)
        return 0; /* out of memory: no figure */
    uint64_t us = (t1 - t0) / 1000;
    return us ? us : 1;
}

const char *rust_memory_version(void)
{
    return kmm_version();
}

uint32_t rust_memory_features(void)
{
    return RUST_MEMORY_FEATURE_PAGING | RUST_MEMORY_FEATURE_HEAP | RUST_MEMORY_FEATURE_STATS |
           RUST_MEMORY_FEATURE_DEBUG;
}
