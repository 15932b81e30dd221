/*
 * hwtest.c - the checks only real hardware can make (contract: hwtest.h).
 *
 * Each maps something through the library on the live kernel space, then
 * lets the CPU judge: an access either works or faults, and the trap
 * handler's recovery point (trap.h: trap_probe_*) turns the fault into an
 * answer. A check that expects a fault fails when there is none: an unmap
 * whose TLB invalidation was missing leaves the old translation usable, a
 * protection the tables do not hold lets the access through.
 *
 * Scratch mappings go to SCRATCH_BASE (layout.h), away from everything
 * else, and are gone when a check returns.
 */
#include <kmm/check.h>
#include <kmm/fmt.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/port.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "boot.h"
#include "console.h"
#include "hwtest.h"
#include "kernel.h"
#include "takeover.h"
#include "trap.h"

#define PAGE      KMM_PAGE_4K
#define PAGE_2M   KMM_PAGE_2M
#define PAGE_1G   KMM_PAGE_1G
#define RW_GLOBAL (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL)
#define RO_GLOBAL (KMM_PROT_READ | KMM_PROT_GLOBAL)
#define X86_RET   0xC3
#define PATTERN   UINT64_C(0x6b6d6d2d68772d31) /* "1-wh-mmk" */
#define CR4_LA57  (UINT64_C(1) << 12)
#define MSR_PAT   0x277u

extern const struct ktest_case __start_khw_cases[], __stop_khw_cases[];
extern const char boot_stack_guard[];
extern const char __kernel_phys_start[], __kernel_phys_end[];

const struct ktest_case *hwtest_cases(size_t *count)
{
    *count =
        ((uintptr_t)__stop_khw_cases - (uintptr_t)__start_khw_cases) / sizeof(struct ktest_case);
    return __start_khw_cases;
}

static struct kmm_aspace *kspace(void)
{
    return kmm_kernel_aspace(kernel_kmm);
}

static volatile uint64_t *at(uint64_t va)
{
    return (volatile uint64_t *)(uintptr_t)va;
}

static uint64_t read_cr3(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

static uint64_t read_cr4(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

/* Expects a page fault at addr whose error code has the bits of want set
 * and those of refuse clear. */
static void expect_pf(struct ktest *t, bool faulted, const struct trap_fault *f, uint64_t addr,
                      unsigned want, unsigned refuse, const char *what)
{
    if (!faulted) {
        ktest_fail_at(t, __FILE__, __LINE__, "%s: no fault", what);
        return;
    }
    if (f->vector != TRAP_PF || f->addr != addr || (f->error & want) != want || (f->error & refuse))
        ktest_fail_at(t, __FILE__, __LINE__,
                      "%s: vector %llu error 0x%llx at 0x%llx, expected a page fault at 0x%llx "
                      "with error bits 0x%x set and 0x%x clear",
                      what, (unsigned long long)f->vector, (unsigned long long)f->error,
                      (unsigned long long)f->addr, (unsigned long long)addr, want, refuse);
}

static uint32_t map_type_at(uint64_t pa)
{
    size_t n;
    const struct kmm_region *map = kmm_memory_map(kernel_kmm, &n);
    for (size_t i = 0; i < n; i++)
        if (pa >= map[i].base && pa - map[i].base < map[i].length)
            return map[i].type;
    return 0;
}

/* --- the takeover -------------------------------------------------------------------- */

KHW_TEST(hw, the_cpu_runs_on_the_library_kernel_tables_with_its_pat)
{
    KT_EXPECT_EQ(t, read_cr3() & ~UINT64_C(0xFFF), kmm_aspace_root(kspace()));
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_PAT));
    KT_EXPECT_EQ(t, (uint64_t)hi << 32 | lo, KMM_PAT_VALUE);
    KT_EXPECT_EQ(t, (read_cr4() & CR4_LA57) ? 5u : 4u, boot_paging_levels);
    struct kmm_vm_stats vs;
    kmm_vm_stats(kspace(), &vs);
    KT_EXPECT_EQ(t, vs.tables[KMM_VM_PML5], boot_paging_levels == 5 ? 1u : 0u);
}

/* The type the loader's map gave pa (before the library resolved it). */
static uint32_t boot_type_at(uint64_t pa)
{
    for (size_t i = 0; i < kernel_boot.map_count; i++)
        if (pa - kernel_boot.map[i].base < kernel_boot.map[i].length)
            return kernel_boot.map[i].type;
    return KMM_MEM_RESERVED;
}

KHW_TEST(hw, the_kernel_image_modules_low_memory_and_unread_acpi_tables_are_not_handed_out)
{
    uint64_t ks = (uint64_t)(uintptr_t)__kernel_phys_start;
    uint64_t ke = (uint64_t)(uintptr_t)__kernel_phys_end;
    for (uint64_t pa = ks; pa < ke; pa += PAGE)
        if (map_type_at(pa) != KMM_MEM_KERNEL) {
            ktest_fail_at(t, __FILE__, __LINE__, "kernel page 0x%llx has type %s",
                          (unsigned long long)pa, kmm_mem_type_name(map_type_at(pa)));
            return;
        }
    for (uint64_t pa = 0; pa < (UINT64_C(1) << 20); pa += PAGE)
        KT_ASSERT(t, map_type_at(pa) != KMM_MEM_USABLE);
    /* The ACPI tables: in firmware-reserved memory (SeaBIOS) they stay out
     * of the allocator; in ACPI-reclaimable memory (UEFI) they were handed
     * back once read (takeover.c), and that range is RAM to use now. */
    if (kernel_acpi.root_pa && boot_type_at(kernel_acpi.root_pa) == KMM_MEM_ACPI_RECLAIMABLE)
        KT_EXPECT_EQ(t, map_type_at(kernel_acpi.root_pa & ~(PAGE - 1)), KMM_MEM_USABLE);
    else if (kernel_acpi.root_pa)
        KT_EXPECT(t, map_type_at(kernel_acpi.root_pa) != KMM_MEM_USABLE);
    for (size_t i = 0; i < kernel_boot.module_count; i++) {
        const struct boot_module *m = &kernel_boot.modules[i];
        for (uint64_t pa = m->start & ~(PAGE - 1); pa < m->end; pa += PAGE)
            if (map_type_at(pa) != KMM_MEM_KERNEL) {
                ktest_fail_at(t, __FILE__, __LINE__, "module page 0x%llx has type %s",
                              (unsigned long long)pa, kmm_mem_type_name(map_type_at(pa)));
                return;
            }
    }
    ktest_diag(t, "%zu module(s) reserved", kernel_boot.module_count);
    /* And the page allocator agrees: freeing a kernel page is refused. */
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, ks, 0), KMM_EINVAL);
}

KHW_TEST(hw, a_write_through_a_fresh_mapping_reads_back_through_the_direct_map)
{
    uint64_t pa = kmm_page_alloc(kernel_kmm, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, pa != 0);
    uint64_t va = SCRATCH_BASE;
    KT_ASSERT_EQ(t, kmm_vm_map(kspace(), va, pa, PAGE, RW_GLOBAL), KMM_OK);
    for (unsigned i = 0; i < PAGE / 8; i++)
        at(va)[i] = PATTERN ^ i;
    const volatile uint64_t *direct = phys_to_virt(pa);
    unsigned bad = 0;
    for (unsigned i = 0; i < PAGE / 8; i++)
        bad += direct[i] != (PATTERN ^ i);
    KT_EXPECT_EQ(t, bad, 0);
    KT_EXPECT_EQ(t, kmm_vm_unmap(kspace(), va, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, pa, 0), KMM_OK);
}

/* --- protections ------------------------------------------------------------------------ */

KHW_TEST(hw, a_write_to_a_read_only_page_faults_and_a_read_does_not)
{
    uint64_t pa = kmm_page_alloc(kernel_kmm, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, pa != 0);
    uint64_t va = SCRATCH_BASE;
    KT_ASSERT_EQ(t, kmm_vm_map(kspace(), va, pa, PAGE, RO_GLOBAL), KMM_OK);
    struct trap_fault f;
    KT_EXPECT(t, !trap_probe_read((const void *)(uintptr_t)va, &f));
    bool faulted = trap_probe_write((void *)(uintptr_t)(va + 8), &f);
    expect_pf(t, faulted, &f, va + 8, PF_PRESENT | PF_WRITE, PF_FETCH, "write to read-only");
    /* Made writable, the same write goes through (the TLB took the upgrade). */
    KT_EXPECT_EQ(t, kmm_vm_protect(kspace(), va, PAGE, RW_GLOBAL), KMM_OK);
    KT_EXPECT(t, !trap_probe_write((void *)(uintptr_t)(va + 8), &f));
    KT_EXPECT_EQ(t, kmm_vm_unmap(kspace(), va, PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, pa, 0), KMM_OK);
}

KHW_TEST(hw, executing_from_a_no_execute_page_faults_and_from_an_executable_one_does_not)
{
    uint64_t pa = kmm_page_alloc(kernel_kmm, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, pa != 0);
    *(volatile uint8_t *)phys_to_virt(pa) = X86_RET;
    uint64_t nx = SCRATCH_BASE, x = SCRATCH_BASE + PAGE;
    KT_ASSERT_EQ(t, kmm_vm_map(kspace(), nx, pa, PAGE, RW_GLOBAL), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(kspace(), x, pa, PAGE, KMM_PROT_READ | KMM_PROT_EXEC), KMM_OK);
    struct trap_fault f;
    bool faulted = trap_probe_exec((const void *)(uintptr_t)nx, &f);
    expect_pf(t, faulted, &f, nx, PF_PRESENT | PF_FETCH, PF_WRITE, "execute from no-execute");
    KT_EXPECT(t, !trap_probe_exec((const void *)(uintptr_t)x, &f));
    KT_EXPECT_EQ(t, kmm_vm_unmap(kspace(), nx, 2 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, pa, 0), KMM_OK);
}

/* Every page of every kernel section is mapped as its section says, and
 * the CPU holds it to that: text cannot be written, rodata neither, data
 * cannot be executed, nor can anything through the direct map. */
KHW_TEST(hw, w_xor_x_holds_for_every_kernel_section_and_the_direct_map)
{
    const struct kernel_section *s = kernel_sections();
    for (int i = 0; i < KERNEL_SECTIONS; i++) {
        for (uint64_t va = s[i].start; va < s[i].end; va += PAGE) {
            struct kmm_vm_translation tr;
            int err = kmm_vm_translate(kspace(), va, &tr);
            if (err == KMM_ENOENT && va - (uint64_t)(uintptr_t)boot_stack_guard < PAGE)
                continue; /* the guard pages are holes on purpose */
            if (err == KMM_ENOENT && va - (uint64_t)(uintptr_t)trap_ist_guard() < PAGE)
                continue;
            if (err != KMM_OK ||
                (tr.prot & (KMM_PROT_WRITE | KMM_PROT_EXEC)) == (KMM_PROT_WRITE | KMM_PROT_EXEC) ||
                (tr.prot & KMM_PROT_MASK) != s[i].prot) {
                ktest_fail_at(t, __FILE__, __LINE__, "%s page 0x%llx: %s, prot 0x%x (want 0x%x)",
                              s[i].name, (unsigned long long)va, kmm_strerror(err), tr.prot,
                              s[i].prot);
                return;
            }
        }
    }
    struct trap_fault f;
    /* Code cannot be written. */
    const void *code = (const void *)(uintptr_t)kernel_sections;
    bool faulted = trap_probe_write((void *)(uintptr_t)code, &f);
    expect_pf(t, faulted, &f, (uint64_t)(uintptr_t)code, PF_PRESENT | PF_WRITE, 0, ".text write");
    /* Read-only data cannot be written. */
    static const uint64_t constant = PATTERN;
    faulted = trap_probe_write((void *)(uintptr_t)&constant, &f);
    expect_pf(t, faulted, &f, (uint64_t)(uintptr_t)&constant, PF_PRESENT | PF_WRITE, 0,
              ".rodata write");
    /* Data cannot be executed (a RET there, in case it could). */
    static volatile uint8_t data_ret = X86_RET;
    faulted = trap_probe_exec((const void *)(uintptr_t)&data_ret, &f);
    expect_pf(t, faulted, &f, (uint64_t)(uintptr_t)&data_ret, PF_PRESENT | PF_FETCH, 0,
              ".data execute");
    /* Nor can code through its direct-map alias. */
    const void *alias = phys_to_virt(kernel_image_phys(code));
    faulted = trap_probe_exec(alias, &f);
    expect_pf(t, faulted, &f, (uint64_t)(uintptr_t)alias, PF_PRESENT | PF_FETCH, 0,
              "direct map execute");
}

/* --- TLB invalidation ------------------------------------------------------------------ */

/* Maps [SCRATCH_BASE, + size) to pa read-only with flags, checks the page
 * size, reads every probe address (the TLB now holds the translation),
 * unmaps [SCRATCH_BASE + off, + len) and expects the probe addresses
 * inside it to fault and those outside to read what the direct map holds. */
static void unmap_then_probe(struct ktest *t, uint64_t pa, uint64_t size, unsigned flags,
                             uint64_t page_size, uint64_t off, uint64_t len)
{
    struct kmm_aspace *as = kspace();
    uint64_t va = SCRATCH_BASE;
    KT_ASSERT_EQ(t, kmm_vm_map(as, va, pa, size, RO_GLOBAL | KMM_CACHE_WB | flags), KMM_OK);
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(as, va, &tr), KMM_OK);
    KT_EXPECT_EQ(t, tr.page_size, page_size);
    const uint64_t probes[] = {0, PAGE, off, off + len - 8, off + len, size / 2, size - 8};
    const size_t nprobes = sizeof(probes) / sizeof(probes[0]);
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < nprobes; i++)
        if (probes[i] < size)
            sink += *at(va + probes[i]);
    (void)sink;
    KT_ASSERT_EQ(t, kmm_vm_unmap(as, va + off, len), KMM_OK);
    for (size_t i = 0; i < nprobes; i++) {
        uint64_t o = probes[i];
        if (o >= size)
            continue;
        struct trap_fault f;
        bool faulted = trap_probe_read((const void *)(uintptr_t)(va + o), &f);
        if (o >= off && o < off + len) {
            expect_pf(t, faulted, &f, va + o, 0, PF_PRESENT | PF_WRITE | PF_FETCH,
                      "read after unmap");
        } else if (faulted) {
            ktest_fail_at(t, __FILE__, __LINE__, "offset 0x%llx outside the unmap faults",
                          (unsigned long long)o);
        } else if (kmm_vm_translate(as, (uint64_t)(uintptr_t)phys_to_virt(pa + o), &tr) ==
                   KMM_OK) { /* RAM: the direct map has it to compare */
            KT_EXPECT_EQ(t, *at(va + o), *(const volatile uint64_t *)phys_to_virt(pa + o));
        }
    }
    /* The rest goes too. */
    if (off > 0)
        KT_EXPECT_EQ(t, kmm_vm_unmap(as, va, off), KMM_OK);
    if (off + len < size)
        KT_EXPECT_EQ(t, kmm_vm_unmap(as, va + off + len, size - off - len), KMM_OK);
}

/* Whether QEMU's TCG runs us: its hypervisor leaf says "TCGTCGTCGTCG". */
static bool under_tcg(void)
{
    uint32_t a = 1, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    if (!(c & (1u << 31))) /* no hypervisor */
        return false;
    a = 0x40000000u;
    c = 0;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    /* The signature's twelve bytes in EBX, ECX, EDX, little-endian. */
    return b == 0x54474354u && c == 0x43544743u && d == 0x47435447u; /* TCGT CGTC GTCG */
}

/* The CPU sets a leaf's accessed flag before it caches the translation
 * (SDM Vol. 3A §4.10.2.3), so the library removes a page never read
 * without an invalidation (kmm_port_tlb_skip_unaccessed) and one read with
 * it; either way an access afterwards faults, and a page mapped there next
 * reads its own frame. The count of invalidations is checked under QEMU's
 * TCG only, which walks the tables only for an access: a real CPU (or KVM)
 * may walk speculatively, set the flag and so earn the page an
 * invalidation, just as correct. */
KHW_TEST(hw, a_page_never_read_is_unmapped_without_an_invalidation)
{
    struct kmm_aspace *as = kspace();
    uint64_t va = SCRATCH_BASE, a = kmm_page_alloc(kernel_kmm, 0, 0),
             b = kmm_page_alloc(kernel_kmm, 0, 0);
    KT_ASSERT(t, a && b);
    *(volatile uint64_t *)phys_to_virt(a) = 0xa;
    *(volatile uint64_t *)phys_to_virt(b) = 0xb;
    /* Read, then unmapped: one invalidation at least. */
    KT_ASSERT_EQ(t, kmm_vm_map(as, va, a, PAGE, RO_GLOBAL), KMM_OK);
    KT_EXPECT_EQ(t, *at(va), 0xa);
    unsigned long before = kernel_tlb_flushes();
    KT_ASSERT_EQ(t, kmm_vm_unmap(as, va, PAGE), KMM_OK);
    KT_EXPECT(t, kernel_tlb_flushes() > before);
    /* Never read: none. */
    KT_ASSERT_EQ(t, kmm_vm_map(as, va, b, PAGE, RO_GLOBAL), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_map(as, va + PAGE, a, PAGE, RO_GLOBAL), KMM_OK); /* keeps the table */
    before = kernel_tlb_flushes();
    KT_ASSERT_EQ(t, kmm_vm_unmap(as, va, PAGE), KMM_OK);
    if (under_tcg())
        KT_EXPECT_EQ(t, kernel_tlb_flushes(), before);
    struct trap_fault f;
    bool faulted = trap_probe_read((const void *)(uintptr_t)va, &f);
    expect_pf(t, faulted, &f, va, 0, PF_PRESENT | PF_WRITE | PF_FETCH, "read after unmap");
    /* Mapped again to the other frame: that frame is what a read sees. */
    KT_ASSERT_EQ(t, kmm_vm_map(as, va, a, PAGE, RO_GLOBAL), KMM_OK);
    KT_EXPECT_EQ(t, *at(va), 0xa);
    KT_EXPECT_EQ(t, kmm_vm_unmap(as, va, 2 * PAGE), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, a, 0), KMM_OK);
    KT_EXPECT_EQ(t, kmm_page_free(kernel_kmm, b, 0), KMM_OK);
}

KHW_TEST(hw, an_access_after_unmap_faults_for_a_4k_page)
{
    unmap_then_probe(t, 0, 4 * PAGE, 0, PAGE, PAGE, PAGE);
}

KHW_TEST(hw, an_access_after_unmap_faults_for_a_2m_page)
{
    unmap_then_probe(t, 0, PAGE_2M, KMM_MAP_HUGE, PAGE_2M, 0, PAGE_2M);
}

static bool cpu_has_1g_pages(void)
{
    uint32_t a = 0x80000001u, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return d & (1u << 26);
}

KHW_TEST(hw, an_access_after_unmap_faults_for_a_1g_page)
{
    if (!cpu_has_1g_pages()) {
        ktest_skip(t, "the CPU has no 1 GiB pages");
        return;
    }
    unmap_then_probe(t, 0, PAGE_1G, KMM_MAP_HUGE_1G, PAGE_1G, 0, PAGE_1G);
}

KHW_TEST(hw, an_access_after_unmapping_part_of_a_2m_page_faults_there_only)
{
    unmap_then_probe(t, 0, PAGE_2M, KMM_MAP_HUGE, PAGE_2M, 5 * PAGE, PAGE);
}

KHW_TEST(hw, an_access_after_unmapping_part_of_a_1g_page_faults_there_only)
{
    if (!cpu_has_1g_pages()) {
        ktest_skip(t, "the CPU has no 1 GiB pages");
        return;
    }
    unmap_then_probe(t, 0, PAGE_1G, KMM_MAP_HUGE_1G, PAGE_1G, PAGE_2M + 3 * PAGE, 2 * PAGE);
}

/* --- the fault entry ------------------------------------------------------------------- */

#define USER_VA UINT64_C(0x400000) /* a user-half address for the clone checks */
#define URW     (KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_USER)

static uint64_t free_pages_now(void)
{
    kmm_page_drain_cpu(kernel_kmm);
    struct kmm_page_stats s;
    kmm_page_stats(kernel_kmm, &s);
    return s.free_pages;
}

static struct kmm_vm_fault_stats fault_stats(struct kmm_aspace *as)
{
    struct kmm_vm_fault_stats s;
    kmm_vm_fault_stats(as, &s);
    return s;
}

/* A real load and a real store to pages that have no frame yet: the CPU
 * faults, the handler's kmm_vm_fault maps a zeroed page, and the access
 * completes (a probe catches only a fault the handler leaves). */
KHW_TEST(hw, a_load_and_a_store_to_demand_zero_pages_complete_after_the_fault)
{
    struct kmm_aspace *ks = kspace();
    uint64_t va = SCRATCH_BASE, before = free_pages_now();
    struct kmm_vm_fault_stats fs0 = fault_stats(ks);
    uint64_t resolved0 = trap_faults_resolved();
    KT_ASSERT_EQ(t, kmm_vm_map(ks, va, 0, 2 * PAGE, RW_GLOBAL | KMM_MAP_DEMAND), KMM_OK);
    struct trap_fault f;
    KT_EXPECT(t, !trap_probe_read((const void *)(uintptr_t)(va + 16), &f));
    KT_EXPECT_EQ(t, at(va)[2], 0);
    struct trap_catch c;
    if (trap_catch_arm(&c) == 0) { /* a plain store, no read before it */
        at(va + PAGE)[3] = PATTERN;
        trap_catch_disarm();
    } else {
        ktest_fail_at(t, __FILE__, __LINE__, "the store faulted at 0x%llx, error 0x%llx",
                      (unsigned long long)c.fault.addr, (unsigned long long)c.fault.error);
    }
    struct kmm_vm_translation tr;
    KT_ASSERT_EQ(t, kmm_vm_translate(ks, va + PAGE, &tr), KMM_OK);
    KT_EXPECT(t, tr.owned);
    const volatile uint64_t *direct = phys_to_virt(tr.pa);
    KT_EXPECT_EQ(t, direct[3], PATTERN);
    KT_EXPECT_EQ(t, direct[4], 0);
    struct kmm_vm_fault_stats fs = fault_stats(ks);
    KT_EXPECT_EQ(t, fs.demand_zero - fs0.demand_zero, 2);
    KT_EXPECT_EQ(t, trap_faults_resolved() - resolved0, 2);
    KT_EXPECT_EQ(t, kmm_vm_unmap(ks, va, 2 * PAGE), KMM_OK);
    /* Gone: a fault the handler leaves, which the probe catches. */
    bool faulted = trap_probe_read((const void *)(uintptr_t)va, &f);
    expect_pf(t, faulted, &f, va, 0, PF_PRESENT, "read after unmap");
    KT_EXPECT_EQ(t, free_pages_now(), before);
}

/* fork as a kernel does it: a user space cloned, the child switched to
 * with CR3, and a kernel-mode store to a user page (CR0.WP holds the
 * kernel to read-only pages; inside SMAP's window) faults on the copy-on-write
 * page; the handler copies it and the store completes in the child only. */
KHW_TEST(hw, a_store_to_a_copy_on_write_page_after_a_clone_copies_it_for_that_space_only)
{
    uint64_t before = free_pages_now();
    struct kmm_aspace *parent, *child;
    KT_ASSERT_EQ(t, kmm_aspace_create(kernel_kmm, &parent), KMM_OK);
    uint64_t pa = kmm_page_alloc(kernel_kmm, 0, KMM_GFP_ZERO);
    KT_ASSERT(t, pa != 0);
    *(volatile uint64_t *)phys_to_virt(pa) = PATTERN;
    KT_ASSERT_EQ(t, kmm_vm_map(parent, USER_VA, pa, PAGE, URW | KMM_MAP_OWNED), KMM_OK);
    KT_ASSERT_EQ(t, kmm_page_free(kernel_kmm, pa, 0), KMM_OK); /* the mapping's now */
    KT_ASSERT_EQ(t, kmm_aspace_clone(parent, &child), KMM_OK);
    struct trap_fault f;
    /* The user page's accesses inside SMAP's window (trap.h). */
    trap_activate_space(child);
    trap_user_access_begin();
    uint64_t shared = at(USER_VA)[0];
    bool faulted = trap_probe_write((void *)(uintptr_t)USER_VA, &f);
    if (!faulted)
        at(USER_VA)[0] = PATTERN + 1;
    trap_user_access_end();
    trap_activate_space(parent);
    trap_user_access_begin();
    uint64_t parents = at(USER_VA)[0];
    /* The parent's page is its frame's last mapping now: made writable in place. */
    bool parent_faulted = trap_probe_write((void *)(uintptr_t)USER_VA, &f);
    if (!parent_faulted)
        at(USER_VA)[1] = PATTERN;
    trap_user_access_end();
    trap_activate_space(NULL);
    KT_EXPECT_EQ(t, shared, PATTERN); /* shared, readable */
    KT_EXPECT(t, !faulted);
    KT_EXPECT_EQ(t, parents, PATTERN); /* the parent's is unchanged */
    KT_EXPECT(t, !parent_faulted);
    struct kmm_vm_translation pt, ct;
    KT_ASSERT_EQ(t, kmm_vm_translate(parent, USER_VA, &pt), KMM_OK);
    KT_ASSERT_EQ(t, kmm_vm_translate(child, USER_VA, &ct), KMM_OK);
    KT_EXPECT(t, pt.pa == pa && !pt.cow && ct.pa != pa && !ct.cow);
    KT_EXPECT_EQ(t, *(const volatile uint64_t *)phys_to_virt(ct.pa), PATTERN + 1);
    KT_EXPECT_EQ(t, ((const volatile uint64_t *)phys_to_virt(pa))[1], PATTERN);
    KT_EXPECT_EQ(t, fault_stats(child).cow_copy, 1);
    KT_EXPECT_EQ(t, fault_stats(parent).cow_reuse, 1);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(kernel_kmm, child), KMM_OK);
    KT_EXPECT_EQ(t, kmm_aspace_destroy(kernel_kmm, parent), KMM_OK);
    KT_EXPECT_EQ(t, free_pages_now(), before);
}

/* --- guard pages ------------------------------------------------------------------------- */

KHW_TEST(hw, a_vmalloc_guard_page_faults_and_a_freed_area_too)
{
    const size_t pages = 3;
    uint8_t *p = kmm_vmalloc(kernel_kmm, pages * PAGE, KMM_GFP_ZERO);
    KT_ASSERT(t, p != NULL);
    struct trap_fault f;
    KT_EXPECT(t, !trap_probe_write(p, &f));
    KT_EXPECT(t, !trap_probe_write(p + pages * PAGE - 1, &f));
    /* (A probe's write reads the byte first: the read faults.) */
    bool faulted = trap_probe_write(p + pages * PAGE, &f);
    expect_pf(t, faulted, &f, (uint64_t)(uintptr_t)(p + pages * PAGE), 0, PF_PRESENT,
              "access to the guard page");
    KT_EXPECT_EQ(t, kmm_vfree(kernel_kmm, p), KMM_OK);
    faulted = trap_probe_read(p, &f);
    expect_pf(t, faulted, &f, (uint64_t)(uintptr_t)p, 0, PF_PRESENT, "read after vfree");
}

KHW_TEST(hw, a_kernel_stack_overflow_is_a_double_fault_at_the_guard_page)
{
    struct trap_fault f;
    KT_ASSERT(t, trap_probe_stack_overflow(&f));
    KT_EXPECT_EQ(t, f.vector, TRAP_DF);
    uint64_t guard = (uint64_t)(uintptr_t)boot_stack_guard;
    if (f.addr - guard >= PAGE)
        ktest_fail_at(t, __FILE__, __LINE__, "cr2 0x%llx is not in the guard page at 0x%llx",
                      (unsigned long long)f.addr, (unsigned long long)guard);
}

KHW_TEST(hw, the_lower_half_is_unmapped)
{
    struct trap_fault f;
    static const void *volatile low = (const void *)(uintptr_t)0x1000;
    bool faulted = trap_probe_read(low, &f);
    expect_pf(t, faulted, &f, 0x1000, 0, PF_PRESENT, "read of a low address");
}

/* --- the console and the instance ------------------------------------------------------ */

#define VGA_PHYS  UINT64_C(0xB8000)
#define VGA_CELLS ((size_t)80 * 25)

/* Whether the VGA text screen shows text (character bytes of its cells). */
static bool vga_shows(const char *text)
{
    const volatile uint16_t *cells = phys_to_virt(VGA_PHYS);
    size_t n = kstrlen(text);
    for (size_t i = 0; i + n <= VGA_CELLS; i++) {
        size_t j = 0;
        while (j < n && (char)(cells[i + j] & 0xFF) == text[j])
            j++;
        if (j == n)
            return true;
    }
    return false;
}

KHW_TEST(hw, the_console_mirrors_to_the_vga_screen)
{
    if (kernel_boot.uefi) {
        ktest_skip(t, "booted on UEFI: the display is in a graphics mode, no text screen");
        return;
    }
    /* A token no earlier line printed: its tail is the TSC. */
    char token[48];
    kmm_snprintf(token, sizeof(token), "vga-mirror-%llx", (unsigned long long)kmm_port_cycles());
    KT_ASSERT(t, !vga_shows(token));
    bool was = console_vga_enable(true);
    ktest_diag(t, "%s", token);
    console_vga_enable(was);
    KT_EXPECT(t, vga_shows(token));
}

/* Last: everything the checks above did left the kernel's instance whole. */
KHW_TEST(hw, the_kernel_instance_passes_its_integrity_check)
{
    struct kmm_check_result r;
    int status = kmm_check(kernel_kmm, &r);
    if (status != KMM_CHECK_OK)
        ktest_fail_at(t, __FILE__, __LINE__, "kmm_check: %d, %lu problem(s), first: %s", status,
                      r.problems, r.first);
}
