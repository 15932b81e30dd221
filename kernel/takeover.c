/*
 * takeover.c - the library takes over the machine (contract: takeover.h).
 */
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/port.h>
#include <kmm/vm.h>

#include "boot.h"
#include "console.h"
#include "kernel.h"
#include "takeover.h"
#include "trap.h"

#define GIB           (UINT64_C(1) << 30)
#define MIB           (UINT64_C(1) << 20)
#define VGA_START     UINT64_C(0xA0000)
#define VGA_END       UINT64_C(0xC0000)
#define PTE_P         UINT64_C(1)
#define PTE_W         (UINT64_C(1) << 1)
#define PTE_PS        (UINT64_C(1) << 7)
#define PDPT_ENTRIES  512
#define CPUID_EXT_1GB (1u << 26) /* CPUID 0x80000001 EDX: 1 GiB pages */
#define DIRECT_PROT   (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL)
#define MAX_RECLAIM   64

struct kmm *kernel_kmm;
static struct kmm_port kernel_port;

extern uint64_t boot_pdpt_low[PDPT_ENTRIES]; /* boot.S: the early direct map's PDPT */
extern const char __text_start[], __rodata_start[], __data_start[], __bss_end[];
extern const char boot_stack_guard[];

static struct kernel_section sections[KERNEL_SECTIONS];

const struct kernel_section *kernel_sections(void)
{
    return sections;
}

static bool cpu_has_1g_pages(void)
{
    uint32_t a = 0x80000001u, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return d & CPUID_EXT_1GB;
}

static noreturn void fail(const char *what, int err)
{
    kprintf("kmm kernel: takeover: %s: %s\n", what, kmm_strerror(err));
    kernel_panic("takeover failed");
}

static uint64_t align_down(uint64_t v, uint64_t a)
{
    return v & ~(a - 1);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* --- PAT ---------------------------------------------------------------------------- */

#define MSR_IA32_PAT   0x277u
#define CPUID1_EDX_PAT (1u << 16)

/* Programs IA32_PAT with the library's layout (kmm/vm.h), which a kernel must
 * do on every CPU before mapping anything write-combining. Returns whether
 * the CPU has a PAT (every x86_64 CPU does; QEMU's too). */
static bool pat_init(void)
{
    uint32_t a = 1, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    if (!(d & CPUID1_EDX_PAT))
        return false;
    uint64_t v = KMM_PAT_VALUE;
    __asm__ volatile("wrmsr" : : "c"(MSR_IA32_PAT), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_IA32_PAT));
    return ((uint64_t)hi << 32 | lo) == v;
}

/* Step 1: boot.S mapped 4 GiB with 2 MiB pages; RAM above that (kmm_init
 * puts its metadata at the top of memory) gets 1 GiB pages in the same
 * PDPT, which reaches 512 GiB. */
static void early_direct_extend(uint64_t ram_end)
{
    if (ram_end <= EARLY_DIRECT_BYTES)
        return;
    if (!cpu_has_1g_pages())
        kernel_panic("takeover: RAM above 4 GiB needs 1 GiB pages (CPUID pdpe1gb)");
    if (ram_end > (uint64_t)PDPT_ENTRIES * GIB)
        kernel_panic("takeover: RAM above 512 GiB is not mapped early");
    for (uint64_t i = EARLY_DIRECT_BYTES / GIB; i < align_up(ram_end, GIB) / GIB; i++)
        boot_pdpt_low[i] = i * GIB | PTE_P | PTE_W | PTE_PS;
}

static void map_or_fail(struct kmm_aspace *as, uint64_t va, uint64_t pa, uint64_t size,
                        unsigned flags, const char *what)
{
    int err = kmm_vm_map(as, va, pa, size, flags);
    if (err)
        fail(what, err);
}

/* RAM as the library counts it (the direct map covers it). */
static bool is_ram(uint32_t type)
{
    return type == KMM_MEM_USABLE || type == KMM_MEM_ACPI_RECLAIMABLE || type == KMM_MEM_ACPI_NVS ||
           type == KMM_MEM_BOOTLOADER_RECLAIMABLE || type == KMM_MEM_KERNEL ||
           type == KMM_MEM_KMM_META;
}

/* Step 3a: the direct map. Runs of RAM ranges (rounded out to pages: a
 * range of another type than usable may have unaligned edges) are mapped
 * with an explicit write-back mode, which the library accepts for a page
 * that is only partly RAM. Above the first MiB only; that is mapped whole. */
static void map_direct(struct kmm *k, struct kmm_aspace *as, unsigned huge)
{
    unsigned flags = DIRECT_PROT | KMM_CACHE_WB | huge;
    map_or_fail(as, HHDM_BASE, 0, VGA_START, flags, "direct map of 0 - 640 KiB");
    map_or_fail(as, HHDM_BASE + VGA_START, VGA_START, VGA_END - VGA_START,
                DIRECT_PROT | KMM_CACHE_UC, "direct map of VGA memory");
    map_or_fail(as, HHDM_BASE + VGA_END, VGA_END, MIB - VGA_END, flags,
                "direct map of 768 KiB - 1 MiB");
    size_t n;
    const struct kmm_region *map = kmm_memory_map(k, &n);
    uint64_t run_start = 0, run_end = 0; /* the run being collected, page aligned */
    for (size_t i = 0; i <= n; i++) {
        bool ram = i < n && is_ram(map[i].type) && map[i].base + map[i].length > MIB;
        uint64_t s = ram ? align_down(map[i].base, KERNEL_PAGE_SIZE) : 0;
        uint64_t e = ram ? align_up(map[i].base + map[i].length, KERNEL_PAGE_SIZE) : 0;
        if (s < MIB)
            s = MIB;
        if (ram && run_end && s <= run_end) {
            run_end = e > run_end ? e : run_end;
            continue;
        }
        if (run_end)
            map_or_fail(as, HHDM_BASE + run_start, run_start, run_end - run_start, flags,
                        "direct map");
        run_start = s;
        run_end = ram ? e : 0;
    }
}

/* Step 3b: the image, W^X by section, without the stacks' guard pages. */
static void map_image(struct kmm_aspace *as)
{
    uint64_t text = (uint64_t)(uintptr_t)__text_start;
    uint64_t rodata = (uint64_t)(uintptr_t)__rodata_start;
    uint64_t data = (uint64_t)(uintptr_t)__data_start;
    uint64_t end = (uint64_t)(uintptr_t)__bss_end;
    sections[0] = (struct kernel_section){".text", text, rodata,
                                          KMM_PROT_READ | KMM_PROT_EXEC | KMM_PROT_GLOBAL};
    sections[1] = (struct kernel_section){".rodata", rodata, data, KMM_PROT_READ | KMM_PROT_GLOBAL};
    sections[2] = (struct kernel_section){".data .bss", data, end,
                                          KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL};
    for (int i = 0; i < 2; i++)
        map_or_fail(as, sections[i].start, sections[i].start - KERNEL_VMA,
                    sections[i].end - sections[i].start, sections[i].prot, sections[i].name);
    /* .data and .bss around the two guard pages, lower one first. */
    uint64_t g1 = (uint64_t)(uintptr_t)boot_stack_guard;
    uint64_t g2 = (uint64_t)(uintptr_t)trap_ist_guard();
    if (g2 < g1) {
        uint64_t t = g1;
        g1 = g2;
        g2 = t;
    }
    const uint64_t pieces[3][2] = {
        {data, g1}, {g1 + KERNEL_PAGE_SIZE, g2}, {g2 + KERNEL_PAGE_SIZE, end}};
    for (int i = 0; i < 3; i++)
        if (pieces[i][1] > pieces[i][0])
            map_or_fail(as, pieces[i][0], pieces[i][0] - KERNEL_VMA, pieces[i][1] - pieces[i][0],
                        sections[2].prot, ".data .bss");
}

/* Step 5: the loader's information and the ACPI tables back to the page
 * allocator, whole pages of them (the map changes as they go back, so the
 * ranges are collected first). */
static void reclaim(struct kmm *k)
{
    struct kmm_region r[MAX_RECLAIM];
    size_t count = 0, n;
    const struct kmm_region *map = kmm_memory_map(k, &n);
    for (size_t i = 0; i < n && count < MAX_RECLAIM; i++) {
        uint32_t t = map[i].type;
        uint64_t s = align_up(map[i].base, KERNEL_PAGE_SIZE);
        uint64_t e = align_down(map[i].base + map[i].length, KERNEL_PAGE_SIZE);
        if ((t == KMM_MEM_BOOTLOADER_RECLAIMABLE || t == KMM_MEM_ACPI_RECLAIMABLE) && e > s &&
            s != 0)
            r[count++] = (struct kmm_region){s, e - s, t};
    }
    for (size_t i = 0; i < count; i++) {
        int err = kmm_page_add_memory(k, r[i].base, r[i].length, r[i].type);
        if (err)
            fail("handing back reclaimable memory", err);
        uint64_t end = r[i].base + r[i].length;
        kprintf("# kmm kernel: reclaimed 0x%llx - 0x%llx (%s)\n", (unsigned long long)r[i].base,
                (unsigned long long)end, kmm_mem_type_name(r[i].type));
    }
}

void takeover(const struct boot_info *bi, const struct acpi_info *ai)
{
    if (!pat_init())
        kernel_panic("takeover: IA32_PAT missing or not taking KMM_PAT_VALUE");
    early_direct_extend(bi->ram_end);
    kport_init(&kernel_port, (uintptr_t)HHDM_BASE, true);
    unsigned cpus = ai->cpus ? ai->cpus : 1;
    struct kmm_config cfg = {
        .port = &kernel_port,
        .regions = bi->map,
        .region_count = bi->map_count,
        .reserved = bi->reserved,
        .reserved_count = bi->reserved_count,
        .cpu_count = cpus < KMM_MAX_CPUS ? cpus : KMM_MAX_CPUS,
        .paging_levels = boot_paging_levels,
        /* Past Boruix's fixed mappings (layout.h): the shell's Boruix
         * commands map fixed addresses there. */
        .kva_base = KVA_WINDOW_BASE,
        .kva_size = KVA_WINDOW_SIZE,
    };
    struct kmm *k;
    int err = kmm_init(&cfg, &k);
    if (err)
        fail("kmm_init", err);

    struct kmm_aspace *as = kmm_kernel_aspace(k);
    unsigned huge = KMM_MAP_HUGE | (cpu_has_1g_pages() ? KMM_MAP_HUGE_1G : 0);
    map_direct(k, as, huge);
    map_image(as);
    kmm_aspace_activate(as);
    kernel_kmm = k;
    reclaim(k);

    struct kmm_vm_stats vs;
    kmm_vm_stats(as, &vs);
    struct kmm_page_stats ps;
    kmm_page_stats(k, &ps);
    kprintf("# kmm kernel: the library took over: %llu MiB managed, %llu MiB free, %u CPU(s); "
            "kernel tables at 0x%llx: %llu x 1 GiB, %llu x 2 MiB, %llu x 4 KiB pages, %llu KiB "
            "of tables\n",
            (unsigned long long)(ps.managed_pages >> 8), (unsigned long long)(ps.free_pages >> 8),
            cfg.cpu_count, (unsigned long long)kmm_aspace_root(as),
            (unsigned long long)vs.mapped_1g, (unsigned long long)vs.mapped_2m,
            (unsigned long long)vs.mapped_pages, (unsigned long long)(vs.table_bytes >> 10));
}

unsigned long kernel_tlb_flushes(void)
{
    return kernel_port.tlb_flushes;
}

void *kalloc(size_t size)
{
    return kmm_malloc(kernel_kmm, size, 0);
}

void kfree(void *p)
{
    if (kmm_free(kernel_kmm, p) != KMM_OK)
        kernel_panic("kfree: the heap refused the block");
}
