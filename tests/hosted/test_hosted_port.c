/*
 * test_hosted_port.c - the hosted port keeps its promises (port/hosted/hosted.h).
 *
 * Hosted only: it uses threads, signals and mmap. These tests prove the
 * approach of SPEC §4 "Hosted build": simulated RAM in a memfd, mappings
 * mirrored into the test process so that what the library maps is usable at
 * its address, and protection faults as real SIGSEGVs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faults_hosted.h"
#include "hosted.h"
#include "ktest.h"

#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define MIB   (UINT64_C(1) << 20)
#define PG    UINT64_C(4096)
#define PAGES 64u /* the fresh mirror's freed range mapped again */
#define GIB   (UINT64_C(1) << 30)

/* --- catching faults --------------------------------------------------------- */

static void *phys(struct hosted_machine *m, uint64_t pa)
{
    return (void *)(hosted_machine_direct_map(m) + pa);
}

/* --- RAM ------------------------------------------------------------------- */

KTEST(hosted_port, a_sparse_256_gib_machine_costs_only_what_is_touched)
{
    /* 3 GiB low, a hole up to 4 GiB, then 253 GiB: a big server's layout. */
    const struct kmm_region ram[] = {
        {0, 3 * GIB, KMM_MEM_USABLE},
        {4 * GIB, 253 * GIB, KMM_MEM_USABLE},
    };
    struct hosted_machine *m = hosted_machine_from_map(ram, 2, 0);
    KT_ASSERT(t, m != NULL);
    KT_EXPECT_EQ(t, hosted_machine_phys_end(m), 257 * GIB);
    KT_EXPECT_EQ(t, hosted_machine_direct_map(m) % GIB, 0);
    uint8_t *last = phys(m, 257 * GIB - 1);
    uint8_t *first = phys(m, 0x1000);
    *last = 7;
    *first = 9;
    KT_EXPECT_EQ(t, *last, 7);
    KT_EXPECT_EQ(t, *first, 9);
    /* The hole between 3 and 4 GiB is not RAM: touching it faults. */
    KT_EXPECT(t, kt_access_faults(phys(m, 3 * GIB + 0x1000), false));
    KT_EXPECT(t, !kt_access_faults(phys(m, 3 * GIB - 1), false));
    hosted_machine_destroy(m);
}

KTEST(hosted_port, non_ram_ranges_of_a_firmware_map_fault_when_touched)
{
    const struct kmm_region map[] = {
        {0, 0x9fc00, KMM_MEM_USABLE},          {0x9fc00, 0x400, KMM_MEM_RESERVED},
        {0xf0000, 0x10000, KMM_MEM_RESERVED},  {1 * MIB, 15 * MIB, KMM_MEM_USABLE},
        {16 * MIB, 1 * MIB, KMM_MEM_ACPI_NVS}, {17 * MIB, 1 * MIB, KMM_MEM_ACPI_RECLAIMABLE},
    };
    struct hosted_machine *m = hosted_machine_from_map(map, 6, 0);
    KT_ASSERT(t, m != NULL);
    KT_EXPECT(t, !kt_access_faults(phys(m, 0x1000), true));
    KT_EXPECT(t, kt_access_faults(phys(m, 0xf0000), false));  /* BIOS area */
    KT_EXPECT(t, kt_access_faults(phys(m, 16 * MIB), false)); /* ACPI NVS */
    KT_EXPECT(t, !kt_access_faults(phys(m, 17 * MIB), true)); /* reclaimable is RAM */
    KT_EXPECT(t, !kt_access_faults(phys(m, 16 * MIB - 1), true));
    hosted_machine_destroy(m);
}

/* --- mirroring ------------------------------------------------------------- */

static void mirror(struct hosted_machine *m, uint64_t va, uint64_t pa, uint64_t len, unsigned prot)
{
    struct kmm_port_mapping map = {.root = 0x1000, .va = va, .len = len, .pa = pa, .prot = prot};
    kmm_port_mapping_changed(hosted_machine_port(m), &map);
}

KTEST(hosted_port, a_mirrored_mapping_aliases_physical_memory_both_ways)
{
    const struct kmm_region ram[] = {{0, 64 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 16 * MIB);
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    KT_ASSERT_EQ(t, size, 16 * MIB);
    KT_EXPECT_EQ(t, win % (2 * MIB), 0);

    /* Unmapped window: a fault, as an unmapped kernel address would be. */
    KT_EXPECT(t, kt_access_faults((uint8_t *)(uintptr_t)win, false));

    /* Map two scattered frames at consecutive virtual pages. */
    mirror(m, win, 5 * MIB, 4096, KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE);
    mirror(m, win + 4096, 9 * MIB, 4096, KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE);
    uint8_t *va = (uint8_t *)(uintptr_t)win;
    memset(va, 0x11, 8192);
    KT_EXPECT_EQ(t, *(uint8_t *)phys(m, 5 * MIB + 4095), 0x11);
    KT_EXPECT_EQ(t, *(uint8_t *)phys(m, 9 * MIB), 0x11);
    *(uint8_t *)phys(m, 9 * MIB + 7) = 0x22;
    KT_EXPECT_EQ(t, va[4096 + 7], 0x22);
    KT_EXPECT_EQ(t, hosted_machine_mirror_ignored(m), 0);
    hosted_machine_destroy(m);
}

KTEST(hosted_port, a_write_to_a_read_only_mirror_is_a_real_sigsegv)
{
    const struct kmm_region ram[] = {{0, 64 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 16 * MIB);
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    uint8_t *va = (uint8_t *)(uintptr_t)(win + 2 * MIB);

    mirror(m, win + 2 * MIB, 3 * MIB, 4096, KMM_PORT_PROT_READ);
    *(uint8_t *)phys(m, 3 * MIB) = 0x33;
    KT_EXPECT(t, !kt_access_faults(va, false));
    KT_EXPECT_EQ(t, va[0], 0x33);
    KT_EXPECT(t, kt_access_faults(va, true));
    KT_EXPECT_EQ(t, kt_last_fault_addr(), (uintptr_t)va);
    KT_EXPECT_EQ(t, *(uint8_t *)phys(m, 3 * MIB), 0x33); /* the write did not land */

    /* Upgrade to writable, then unmap: the page faults again. */
    mirror(m, win + 2 * MIB, 3 * MIB, 4096, KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE);
    KT_EXPECT(t, !kt_access_faults(va, true));
    mirror(m, win + 2 * MIB, 0, 4096, 0);
    KT_EXPECT(t, kt_access_faults(va, false));
    KT_EXPECT_EQ(t, *(uint8_t *)phys(m, 3 * MIB), 0x5a); /* the frame kept the data */
    hosted_machine_destroy(m);
}

KTEST(hosted_port, mappings_outside_the_window_are_counted_and_ignored)
{
    const struct kmm_region ram[] = {{0, 16 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 2 * MIB);
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    mirror(m, UINT64_C(0xffffffff90000000), MIB, 4096, KMM_PORT_PROT_READ);
    mirror(m, win + size - 4096, MIB, 8192, KMM_PORT_PROT_READ); /* runs past the end */
    KT_EXPECT_EQ(t, hosted_machine_mirror_ignored(m), 2);
    hosted_machine_destroy(m);
}

/* A machine of 64 MiB of anonymous RAM with a fresh mirror window of
 * 16 MiB, as the preloadable malloc's (hosted.h, fresh_mirror). */
static const struct kmm_region fresh_ram[] = {{0, 64 * MIB, KMM_MEM_USABLE}};

static struct hosted_machine *fresh_machine(void)
{
    struct hosted_machine_config mc = {.ram = fresh_ram,
                                       .ram_count = 1,
                                       .mirror_size = 16 * MIB,
                                       .anonymous = true,
                                       .fresh_mirror = true};
    return hosted_machine_create(&mc);
}

/* What a forked child saw in a fresh window's page before writing its own
 * byte, as its exit status. */
static int child_writes_then_reports(volatile uint8_t *va, volatile uint8_t *pa_view)
{
    int saw = va[0];
    va[0] = 0x77;
    pa_view[0] = 0x66;
    return saw;
}

KTEST(hosted_port, a_fresh_mirror_is_zeroed_private_memory_that_fork_copies)
{
    struct hosted_machine *m = fresh_machine();
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    KT_ASSERT_EQ(t, size, 16 * MIB);
    volatile uint8_t *va = (uint8_t *)(uintptr_t)win;
    volatile uint8_t *pa_view = phys(m, 5 * MIB);
    KT_EXPECT(t, kt_access_faults(va, false));

    /* Mapped: zeroed, writable, and not an alias of the frame. */
    pa_view[0] = 0x11;
    mirror(m, win, 5 * MIB, 4096, KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE);
    KT_EXPECT_EQ(t, va[0], 0);
    va[0] = 0x5a;
    KT_EXPECT_EQ(t, pa_view[0], 0x11);

    /* A child's writes, to the window and to the RAM, stay in the child. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_writes_then_reports(va, pa_view));
    KT_ASSERT(t, pid > 0);
    int status = 0;
    KT_ASSERT_EQ(t, waitpid(pid, &status, 0), pid);
    KT_EXPECT(t, WIFEXITED(status) && WEXITSTATUS(status) == 0x5a);
    KT_EXPECT_EQ(t, va[0], 0x5a);
    KT_EXPECT_EQ(t, pa_view[0], 0x11);

    /* Unmapped: a fault again; mapped again: zeroed again. */
    mirror(m, win, 0, 4096, 0);
    KT_EXPECT(t, kt_access_faults(va, false));
    mirror(m, win, 5 * MIB, 4096, KMM_PORT_PROT_READ);
    KT_EXPECT_EQ(t, va[0], 0);
    KT_EXPECT(t, kt_access_faults(va, true));
    hosted_machine_destroy(m);
}

/* A fresh mirror needs no frames (kmm_port_mirror_needs_frames): the
 * library describes a range of scattered pages once, with its first page's
 * address, so that range is mapped whole even where the first frame's
 * address plus its length runs past the RAM; a first frame beyond the RAM
 * is device memory, kept inaccessible as before. A mirror of the RAM needs
 * the frames, run by run. */
KTEST(hosted_port, a_fresh_mirror_maps_a_range_of_scattered_pages_from_its_first_frame)
{
    struct hosted_machine *m = fresh_machine();
    KT_ASSERT(t, m != NULL);
    KT_EXPECT(t, !kmm_port_mirror_needs_frames(hosted_machine_port(m)));
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    /* The last frame first: 4 pages from it would end 3 pages past the RAM. */
    mirror(m, win, 64 * MIB - PG, 4 * PG, KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE);
    for (unsigned i = 0; i < 4; i++) {
        volatile uint8_t *va = (uint8_t *)(uintptr_t)(win + i * PG);
        KT_EXPECT_EQ(t, va[0], 0);
        KT_EXPECT(t, !kt_access_faults(va, true));
    }
    KT_EXPECT_EQ(t, hosted_machine_mirror_ignored(m), 0);
    mirror(m, win + MIB, 64 * MIB, 4096, KMM_PORT_PROT_READ); /* beyond the RAM */
    KT_EXPECT(t, kt_access_faults((uint8_t *)(uintptr_t)(win + MIB), false));
    KT_EXPECT_EQ(t, hosted_machine_mirror_ignored(m), 1);
    hosted_machine_destroy(m);

    const struct kmm_region ram[] = {{0, 64 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *shows_ram = hosted_machine_from_map(ram, 1, 16 * MIB);
    KT_ASSERT(t, shows_ram != NULL);
    KT_EXPECT(t, kmm_port_mirror_needs_frames(hosted_machine_port(shows_ram)));
    hosted_machine_destroy(shows_ram);
}

/* How many of the n pages at va are resident (mincore). */
static unsigned resident_pages(const void *va, unsigned n)
{
    unsigned char vec[64];
    unsigned count = 0;
    if (n > sizeof(vec) || mincore((void *)(uintptr_t)va, (size_t)n * PG, vec) != 0)
        return 0;
    for (unsigned i = 0; i < n; i++)
        count += vec[i] & 1;
    return count;
}

/* A fresh mirror keeps the memory of a range that is unmapped (resident,
 * for the kernel to reclaim only under pressure), so that mapping it again
 * costs no page fault: mapped again, the range reads zero (only its pages
 * an earlier mapping wrote are zeroed), and a protection change keeps what
 * was written. */
KTEST(hosted_port, a_fresh_mirror_maps_a_freed_range_again_zeroed_from_memory_it_kept)
{
    struct hosted_machine *m = fresh_machine();
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    uint8_t *va = (uint8_t *)(uintptr_t)win;
    const unsigned rw = KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE;
    mirror(m, win, MIB, PAGES * PG, rw);
    memset(va, 0xa5, PAGES * PG);
    mirror(m, win, 0, PAGES * PG, 0);
    KT_EXPECT(t, kt_access_faults(va, false));
    KT_EXPECT_EQ(t, resident_pages(va, PAGES), PAGES); /* a fresh mapping would hold none */

    /* Half of it mapped again (scattered frames: one range), then all. */
    mirror(m, win, 2 * MIB, PAGES / 2 * PG, rw);
    mirror(m, win + PAGES / 2 * PG, 3 * MIB, PAGES / 2 * PG, rw);
    unsigned nonzero = 0;
    for (unsigned i = 0; i < PAGES * PG; i++)
        nonzero += va[i] != 0;
    KT_EXPECT_EQ(t, nonzero, 0);
    memset(va, 0x3c, PAGES * PG);

    /* Read-only now, then another frame: the contents stay, and a write
     * faults. */
    mirror(m, win, 2 * MIB, PG, KMM_PORT_PROT_READ);
    KT_EXPECT_EQ(t, va[100], 0x3c);
    KT_EXPECT(t, kt_access_faults(va, true));
    mirror(m, win, 4 * MIB, PG, KMM_PORT_PROT_READ);
    KT_EXPECT_EQ(t, va[100], 0x3c);

    /* A stale page mapped again read-only and executable: zeroed, and
     * still not writable. */
    mirror(m, win + PG, 0, PG, 0);
    mirror(m, win + PG, 5 * MIB, PG, KMM_PORT_PROT_READ | KMM_PORT_PROT_EXEC);
    KT_EXPECT_EQ(t, va[PG + 100], 0);
    KT_EXPECT(t, kt_access_faults(va + PG, true));
    hosted_machine_destroy(m);
}

/* The stale bits by word: a range that crosses a word of the bitmap on
 * neither boundary, mapped again in pieces, and the window's last page. */
KTEST(hosted_port, a_fresh_mirror_zeroes_stale_ranges_across_the_bitmaps_words)
{
    struct hosted_machine *m = fresh_machine();
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    const unsigned rw = KMM_PORT_PROT_READ | KMM_PORT_PROT_WRITE;
    const uint64_t spans[][2] = {{60, 10}, {size / PG - 1, 1}}; /* first page, pages */
    for (unsigned s = 0; s < 2; s++) {
        uint64_t va = win + spans[s][0] * PG, len = spans[s][1] * PG;
        mirror(m, va, MIB, len, rw);
        memset((void *)(uintptr_t)va, 0x5a, len);
        mirror(m, va, 0, len, 0);
    }
    /* [62, 68) first, then the pages either side of it, then the last. */
    mirror(m, win + 62 * PG, MIB, 6 * PG, rw);
    mirror(m, win + 60 * PG, MIB, 2 * PG, rw);
    mirror(m, win + 68 * PG, MIB, 2 * PG, rw);
    mirror(m, win + size - PG, MIB, PG, rw);
    unsigned nonzero = 0;
    for (uint64_t b = 60 * PG; b < 70 * PG; b++)
        nonzero += ((volatile uint8_t *)(uintptr_t)win)[b] != 0;
    for (uint64_t b = size - PG; b < size; b++)
        nonzero += ((volatile uint8_t *)(uintptr_t)win)[b] != 0;
    KT_EXPECT_EQ(t, nonzero, 0);
    hosted_machine_destroy(m);
}

/* On a fresh mirror a zeroed vmalloc reads zero at its address and leaves
 * its frames alone: nothing shows them, and zeroing them would make them
 * resident beside the window's own memory (twice a calloc's size). */
KTEST(hosted_port, a_zeroed_vmalloc_on_a_fresh_mirror_leaves_its_frames_alone)
{
    struct hosted_machine *m = fresh_machine();
    KT_ASSERT(t, m != NULL);
    uint64_t win, size;
    hosted_machine_mirror_window(m, &win, &size);
    struct kmm_config cfg = {.port = hosted_machine_port(m),
                             .regions = fresh_ram,
                             .region_count = 1,
                             .cpu_count = 1,
                             .kva_base = win,
                             .kva_size = size};
    struct kmm *k;
    KT_ASSERT_EQ(t, kmm_init(&cfg, &k), KMM_OK);
    /* Every free page written, so that a frame not zeroed shows it. */
    static uint64_t held[64 * MIB / PG];
    size_t n = 0;
    while (n < sizeof(held) / sizeof(held[0]) && (held[n] = kmm_page_alloc(k, 0, 0)) != 0)
        memset(phys(m, held[n++]), 0xa5, PG);
    while (n > 0)
        KT_EXPECT_EQ(t, kmm_page_free(k, held[--n], 0), KMM_OK);

    const unsigned pages = 16;
    uint8_t *p = kmm_vzalloc(k, pages * PG);
    KT_ASSERT(t, p != NULL);
    unsigned nonzero = 0, zeroed_frames = 0;
    for (unsigned i = 0; i < pages * PG; i++)
        nonzero += p[i] != 0;
    for (unsigned i = 0; i < pages; i++) {
        struct kmm_vm_translation tr;
        KT_ASSERT_EQ(t,
                     kmm_vm_translate(kmm_kernel_aspace(k), (uint64_t)(uintptr_t)p + i * PG, &tr),
                     KMM_OK);
        zeroed_frames += *(uint8_t *)phys(m, tr.pa) == 0;
    }
    KT_EXPECT_EQ(t, nonzero, 0);
    KT_EXPECT_EQ(t, zeroed_frames, 0);
    KT_EXPECT_EQ(t, kmm_vfree(k, p), KMM_OK);
    kmm_fini(k);
    hosted_machine_destroy(m);
}

KTEST(hosted_port, a_mirror_of_anonymous_ram_must_be_fresh_and_a_fresh_one_anonymous)
{
    const struct kmm_region ram[] = {{0, 16 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine_config shows_ram = {
        .ram = ram, .ram_count = 1, .mirror_size = 2 * MIB, .anonymous = true};
    errno = 0;
    KT_EXPECT(t, hosted_machine_create(&shows_ram) == NULL);
    KT_EXPECT_EQ(t, errno, EINVAL);
    struct hosted_machine_config memfd_fresh = {
        .ram = ram, .ram_count = 1, .mirror_size = 2 * MIB, .fresh_mirror = true};
    errno = 0;
    KT_EXPECT(t, hosted_machine_create(&memfd_fresh) == NULL);
    KT_EXPECT_EQ(t, errno, EINVAL);
}

/* Whether the mapping holding addr has VmFlags flag ("hg": MADV_HUGEPAGE)
 * in /proc/self/smaps; false if it cannot be read. */
static bool has_vm_flag(uintptr_t addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return false;
    char line[512];
    bool inside = false, found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) /* a mapping's first line */
            inside = addr >= lo && addr < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0)
            found = strstr(line, flag) != NULL;
    }
    fclose(f);
    return found;
}

KTEST(hosted_port, anonymous_ram_asks_for_huge_pages_unless_told_not_to)
{
    const struct kmm_region ram[] = {{0, 64 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine_config hinted = {.ram = ram, .ram_count = 1, .anonymous = true};
    struct hosted_machine_config plain = hinted;
    plain.no_huge_hint = true;
    struct hosted_machine *a = hosted_machine_create(&hinted);
    struct hosted_machine *b = hosted_machine_create(&plain);
    KT_ASSERT(t, a != NULL && b != NULL);
    KT_EXPECT(t, has_vm_flag(hosted_machine_direct_map(a) + MIB, " hg"));
    KT_EXPECT(t, !has_vm_flag(hosted_machine_direct_map(b) + MIB, " hg"));
    hosted_machine_destroy(a);
    hosted_machine_destroy(b);
}

/* --- TLB log --------------------------------------------------------------- */

KTEST(hosted_port, tlb_requests_are_logged_in_order_with_their_arguments)
{
    const struct kmm_region ram[] = {{0, 16 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_port *p = hosted_machine_port(m);
    kmm_port_tlb_flush_page(p, 0x400000);
    uint64_t mark = hosted_machine_seq(m);
    kmm_port_tlb_flush_range(p, 0x800000, UINT64_C(3) * 4096);
    kmm_port_tlb_flush_all(p, true);
    kmm_port_tlb_shootdown(p, 0x5000, 0x400000, 4096, false);
    kmm_port_load_root(p, 0x5000);

    KT_ASSERT_EQ(t, hosted_tlb_log_count(m), 5);
    struct hosted_tlb_event e[5];
    for (size_t i = 0; i < 5; i++)
        e[i] = hosted_tlb_log_get(m, i);
    KT_EXPECT_EQ(t, e[0].op, HOSTED_TLB_FLUSH_PAGE);
    KT_EXPECT_EQ(t, e[0].va, 0x400000);
    KT_EXPECT(t, e[0].seq < mark && mark < e[1].seq);
    KT_EXPECT_EQ(t, e[1].op, HOSTED_TLB_FLUSH_RANGE);
    KT_EXPECT_EQ(t, e[1].len, UINT64_C(3) * 4096);
    KT_EXPECT_EQ(t, e[2].op, HOSTED_TLB_FLUSH_ALL);
    KT_EXPECT(t, e[2].global);
    KT_EXPECT_EQ(t, e[3].op, HOSTED_TLB_SHOOTDOWN);
    KT_EXPECT_EQ(t, e[3].root, 0x5000);
    KT_EXPECT_EQ(t, e[4].op, HOSTED_TLB_LOAD_ROOT);
    for (size_t i = 1; i < 5; i++)
        KT_EXPECT(t, e[i - 1].seq < e[i].seq);
    hosted_tlb_log_clear(m);
    KT_EXPECT_EQ(t, hosted_tlb_log_count(m), 0);
    hosted_machine_destroy(m);
}

/* --- CPUs and locks -------------------------------------------------------- */

/* One lock and the counter it protects, shared by every worker. */
struct lock_shared {
    kmm_lock_t lock;
    unsigned long counter; /* protected by lock */
};

/* One worker thread acting as one CPU; written only by its own thread. */
struct lock_worker {
    struct lock_shared *shared;
    unsigned cpu;
    bool entered;
    bool cpu_id_stable;
    bool irqs_off_inside;
};

#define LOCK_ROUNDS 20000

static void *lock_worker(void *arg)
{
    struct lock_worker *w = arg;
    w->entered = hosted_cpu_enter(w->cpu);
    w->cpu_id_stable = true;
    w->irqs_off_inside = true;
    for (int i = 0; i < LOCK_ROUNDS; i++) {
        kmm_irqstate_t s = kmm_lock_irqsave(&w->shared->lock);
        w->irqs_off_inside &= !hosted_irqs_enabled;
        w->shared->counter++; /* a lost update (and a TSan report) unless the lock works */
        kmm_unlock_irqrestore(&w->shared->lock, s);
        w->irqs_off_inside &= hosted_irqs_enabled; /* restored after unlock */
        w->cpu_id_stable &= kmm_port_cpu_id() == w->cpu;
    }
    hosted_cpu_exit();
    return NULL;
}

KTEST(hosted_port, threads_act_as_cpus_and_locks_exclude_them)
{
    enum { THREADS = 4 };
    static struct lock_shared shared;
    struct lock_worker workers[THREADS];
    pthread_t th[THREADS];
    kmm_lock_init(&shared.lock);
    shared.counter = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        workers[i] = (struct lock_worker){.shared = &shared, .cpu = i + 1};
        pthread_create(&th[i], NULL, lock_worker, &workers[i]);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < THREADS; i++) {
        KT_EXPECT(t, workers[i].entered);
        KT_EXPECT(t, workers[i].cpu_id_stable);
        KT_EXPECT(t, workers[i].irqs_off_inside);
    }
    KT_EXPECT_EQ(t, shared.counter, (unsigned long)THREADS * LOCK_ROUNDS);
    KT_EXPECT(t, hosted_irqs_enabled); /* the main thread's IF is untouched */
}

static void *try_cpu(void *arg)
{
    unsigned cpu = *(unsigned *)arg;
    return (void *)(uintptr_t)hosted_cpu_enter(cpu);
}

KTEST(hosted_port, two_threads_cannot_be_the_same_cpu)
{
    KT_ASSERT(t, hosted_cpu_enter(7));
    KT_EXPECT_EQ(t, kmm_port_cpu_id(), 7);
    unsigned cpu = 7;
    pthread_t th;
    void *got;
    pthread_create(&th, NULL, try_cpu, &cpu);
    pthread_join(th, &got);
    KT_EXPECT(t, got == NULL);
    hosted_cpu_exit();
    KT_EXPECT_EQ(t, kmm_port_cpu_id(), 0);
    pthread_create(&th, NULL, try_cpu, &cpu); /* free again; the thread exits holding it */
    pthread_join(th, &got);
    KT_EXPECT(t, got != NULL);
    KT_EXPECT(t, !hosted_cpu_enter(KMM_MAX_CPUS));
}

/* --- log and panic ---------------------------------------------------------- */

KTEST(hosted_port, library_errors_are_logged_with_their_text)
{
    const struct kmm_region ram[] = {{0, 16 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {.port = hosted_machine_port(m), .regions = ram, .region_count = 1};
    struct kmm *k;
    KT_EXPECT_EQ(t, kmm_init(&cfg, &k), KMM_EINVAL); /* cpu_count 0 */
    KT_EXPECT_EQ(t, hosted_log_count(m, KMM_LOG_ERR), 1);
    KT_EXPECT(t, strstr(hosted_log_last_error(m), "cpu_count 0") != NULL);
    hosted_machine_destroy(m);
}

/* What the log hook saw. */
struct seen_log {
    unsigned calls;
    int level;
    char line[128];
};

static void seen_log_hook(void *ctx, int level, const char *line)
{
    struct seen_log *s = ctx;
    s->calls++;
    s->level = level;
    snprintf(s->line, sizeof(s->line), "%s", line);
}

KTEST(hosted_port, a_log_hook_sees_each_line_with_its_level)
{
    const struct kmm_region ram[] = {{0, 16 * MIB, KMM_MEM_USABLE}};
    struct seen_log seen = {0};
    const struct hosted_machine_config mc = {
        .ram = ram, .ram_count = 1, .log_hook = seen_log_hook, .log_ctx = &seen};
    struct hosted_machine *m = hosted_machine_create(&mc);
    KT_ASSERT(t, m != NULL);
    struct kmm_config cfg = {.port = hosted_machine_port(m), .regions = ram, .region_count = 1};
    struct kmm *k;
    KT_EXPECT_EQ(t, kmm_init(&cfg, &k), KMM_EINVAL); /* cpu_count 0 */
    KT_EXPECT_EQ(t, seen.calls, 1);
    KT_EXPECT_EQ(t, seen.level, KMM_LOG_ERR);
    KT_EXPECT(t, strstr(seen.line, "cpu_count 0") != NULL);
    hosted_machine_destroy(m);
}

KTEST(hosted_port, a_panic_can_be_caught_by_a_test)
{
    const struct kmm_region ram[] = {{0, 16 * MIB, KMM_MEM_USABLE}};
    struct hosted_machine *m = hosted_machine_from_map(ram, 1, 0);
    KT_ASSERT(t, m != NULL);
    jmp_buf env;
    volatile bool caught = false;
    hosted_panic_catch(m, &env);
    if (setjmp(env) == 0)
        kmm_port_panic(hosted_machine_port(m), "broken invariant");
    else
        caught = true;
    hosted_panic_catch(m, NULL);
    KT_EXPECT(t, caught);
    KT_EXPECT_STREQ(t, hosted_panic_message(m), "broken invariant");
    hosted_machine_destroy(m);
}
