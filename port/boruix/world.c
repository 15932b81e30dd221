/*
 * world.c - the Boruix compat layer's world in a Limine-booted kernel
 * (compat/world.h): what the machine really has, and the page tables.
 *
 * Boruix calls rust_memory_init with one hard-coded region (16 MiB + 1008
 * MiB) whatever the machine has, and never asks Limine for a memory map.
 * This file carries its own Limine memory-map request, in the `.requests`
 * section Boruix's linker script keeps (KEEP(*(.requests)), between its
 * start and end markers; base revision 2 is the kernel's own tag), in this
 * object, which every link pulls in (rust_memory_init calls
 * kmm_boruix_world_up). Everything the response does not call usable RAM,
 * holes included, is handed to kmm_init as reserved, so the manager never
 * hands out memory the machine lacks, nor the kernel image, its page
 * tables or its stack (Limine's executable-and-modules and
 * bootloader-reclaimable memory).
 *
 * The page tables: the library keeps its kernel space in tables of its
 * own. After init, every mapping of the live tables (CR3: Limine's, with
 * the direct map, the kernel image, the framebuffer) is copied into the
 * library's kernel space, IA32_PAT is programmed with KMM_PAT_VALUE (so the
 * cache modes mean what the library writes), and that space is loaded:
 * from then on rust_map_page changes the tables the CPU walks.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/bootmap.h>
#include <kmm/fmt.h>
#include <kmm/kmm.h>
#include <kmm/memmap.h>
#include <kmm/port.h>
#include <kmm/vm.h>

#include "world.h"

/* The Limine boot protocol's memory-map request (limine.h's layout; the
 * boot loader reads the fields this file never does). */
struct limine_memmap_response {
    uint64_t revision; // cppcheck-suppress unusedStructMember
    uint64_t entry_count;
    struct kmm_limine_memmap_entry **entries;
};

struct limine_memmap_request {
    uint64_t id[4];    // cppcheck-suppress unusedStructMember
    uint64_t revision; // cppcheck-suppress unusedStructMember
    struct limine_memmap_response *volatile response;
};

#define LIMINE_COMMON_MAGIC 0xc7b1dd30df4c8b88ULL, 0x0a82e883a194f07bULL

__attribute__((
    used, section(".requests"))) static volatile struct limine_memmap_request kmm_limine_memmap = {
    .id = {LIMINE_COMMON_MAGIC, 0x67cf3d9d378a806fULL, 0xe304acdfc50c3c62ULL},
    .revision = 0,
    .response = NULL,
};

/* The heap window (boruix/rust_memory.h): its first 32 MiB are the kernel's
 * fixed mappings', the rest the library's kernel virtual areas. */
#define HEAP_WINDOW   0xFFFFFFFF90000000ULL
#define HEAP_SIZE     (256ULL << 20)
#define IA32_PAT      0x277u
#define PAGE          4096ULL
#define ENTRIES       512u
#define X86_P         0x1ULL
#define X86_RW        0x2ULL
#define X86_US        0x4ULL
#define X86_PWT       0x8ULL
#define X86_PCD       0x10ULL
#define X86_PS        0x80ULL
#define X86_G         0x100ULL
#define X86_PAT_4K    0x80ULL
#define X86_PAT_LARGE 0x1000ULL
#define X86_NX        (1ULL << 63)
#define X86_ADDR      0x000ffffffffff000ULL

static struct kmm_port port;

int kmm_boruix_world_up(const struct kmm_region *map, size_t n, uint64_t hhdm,
                        struct kmm_boruix_world *w, struct kmm_region *extra, size_t cap,
                        size_t *extra_n)
{
    if (hhdm == 0) {
        kmm_boruix_world_log(KMM_LOG_ERR, "rust_memory_init: rust_set_hhdm_offset was not called");
        return KMM_EINVAL;
    }
    port.direct_map = (uintptr_t)hhdm;
    w->port = &port;
    w->kva_base = HEAP_WINDOW + KMM_BORUIX_FIXED_PART;
    w->kva_size = HEAP_SIZE - KMM_BORUIX_FIXED_PART;
    w->heap_base = HEAP_WINDOW;
    w->heap_size = HEAP_SIZE;
    struct limine_memmap_response *resp = kmm_limine_memmap.response;
    if (!resp) {
        kmm_boruix_world_log(KMM_LOG_WARN, "no Limine memory map: trusting rust_memory_init's "
                                           "regions as they are");
        return KMM_OK;
    }
    uint64_t end = 0;
    for (size_t i = 0; i < n; i++)
        if (map[i].base + map[i].length > end)
            end = map[i].base + map[i].length;
    int err =
        kmm_boruix_limine_reserved((const struct kmm_limine_memmap_entry *const *)resp->entries,
                                   resp->entry_count, end, extra, cap, extra_n);
    if (err != KMM_OK) {
        kmm_boruix_world_log(KMM_LOG_ERR, "rust_memory_init: the Limine memory map is unusable "
                                          "or has too many ranges");
        return err;
    }
    return KMM_OK;
}

void kmm_boruix_world_down(struct kmm_boruix_world *w)
{
    (void)w;
}

void kmm_boruix_world_log(int level, const char *line)
{
    kmm_boruix_log(level, line);
}

void kmm_boruix_world_console(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    /* The log hook takes lines: cut the text at its newlines. */
    char line[160];
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n' || k + 1 == sizeof(line)) {
            line[k] = '\0';
            kmm_boruix_log(KMM_LOG_INFO, line);
            k = 0;
            if (text[i] == '\n')
                continue;
        }
        line[k++] = text[i];
    }
    if (k) {
        line[k] = '\0';
        kmm_boruix_log(KMM_LOG_INFO, line);
    }
}

/* --- the page tables ---------------------------------------------------------------------- */

static uint64_t read_cr3(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

static void write_msr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* The cache mode of a leaf as the CPU reads it with KMM_PAT_VALUE's layout
 * (PAT0 WB, PAT1 WT, PAT2 UC-, PAT3 UC, PAT4 WC, PAT5 WT, PAT6 UC-, PAT7 UC). */
static unsigned leaf_cache(uint64_t e, bool large)
{
    uint64_t pat = large ? X86_PAT_LARGE : X86_PAT_4K;
    unsigned idx = ((e & X86_PWT) ? 1u : 0u) | ((e & X86_PCD) ? 2u : 0u) | ((e & pat) ? 4u : 0u);
    static const unsigned modes[8] = {KMM_CACHE_WB, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_UC,
                                      KMM_CACHE_WC, KMM_CACHE_WT, KMM_CACHE_UC, KMM_CACHE_UC};
    unsigned m = modes[idx];
    return m == KMM_CACHE_WB ? m : m | KMM_MAP_ALIAS;
}

/* Copies one leaf (size bytes at va) into the library's kernel space. */
static int copy_leaf(struct kmm_aspace *ks, uint64_t va, uint64_t e, uint64_t size)
{
    bool large = size != PAGE;
    uint64_t pa = e & X86_ADDR & ~(size - 1);
    unsigned f = KMM_PROT_READ | leaf_cache(e, large);
    f |= (e & X86_RW) ? KMM_PROT_WRITE : 0;
    f |= (e & X86_NX) ? 0 : KMM_PROT_EXEC;
    /* The kernel half is never user memory; global only there. */
    if (va >> 63)
        f |= (e & X86_G) ? KMM_PROT_GLOBAL : 0;
    else
        f |= (e & X86_US) ? KMM_PROT_USER : 0;
    if (size == KMM_PAGE_1G)
        f |= KMM_MAP_HUGE_1G;
    else if (size == KMM_PAGE_2M)
        f |= KMM_MAP_HUGE;
    return kmm_vm_map(ks, va, pa, size, f);
}

/* Walks the table at pa (level 4: PML4 .. 1: PT) covering va, copying every
 * present leaf. */
static int copy_table(struct kmm_aspace *ks, uint64_t pa, unsigned level, uint64_t va)
{
    const volatile uint64_t *t = (const volatile uint64_t *)(port.direct_map + pa);
    uint64_t span = PAGE << (9 * (level - 1));
    for (unsigned i = 0; i < ENTRIES; i++) {
        uint64_t e = t[i];
        if (!(e & X86_P))
            continue;
        uint64_t at = va + i * span;
        if (level == 4 && i >= ENTRIES / 2)
            at |= 0xffff000000000000ULL; /* sign-extend the kernel half */
        int err = level == 1 || (level <= 3 && (e & X86_PS))
                      ? copy_leaf(ks, at, e, span)
                      : copy_table(ks, e & X86_ADDR, level - 1, at);
        if (err != KMM_OK)
            return err;
    }
    return KMM_OK;
}

int kmm_boruix_world_ready(struct kmm *k)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    int err = copy_table(ks, read_cr3() & X86_ADDR, 4, 0);
    if (err != KMM_OK) {
        char line[128];
        kmm_snprintf(line, sizeof(line), "rust_memory_init: copying the boot page tables: %s",
                     kmm_strerror(err));
        kmm_boruix_world_log(KMM_LOG_ERR, line);
        return err;
    }
    write_msr(IA32_PAT, KMM_PAT_VALUE);
    kmm_aspace_activate(ks);
    /* The copies are fresh leaves, never accessed: the library would unmap
     * them without an invalidation (kmm_port_tlb_skip_unaccessed), while
     * the boot tables' global entries survive the CR3 write. Drop those. */
    kmm_x86_flush_all(true);
    return KMM_OK;
}
