/*
 * bench_vm.c - M1 of WORKLOADS.md: the page-table engine.
 *
 * 262,144 pages of 4 KiB at 0xffff_c000_0000_0000 (PML4 index 384), in
 * ascending order, three timed loops per run:
 *   map:       a frame from kmm's page allocator, mapped present + writable
 *   translate: each page, compared with the frame that was mapped
 *   unmap:     each page unmapped, its frame returned to the page allocator
 * Each run starts from a fresh instance (fresh top-level tables). ns per
 * op, median of BENCH_RUNS runs. kmm frees page tables as they empty, so
 * the unmap figure includes freeing the 512 page tables and the directory
 * (the peer's does not free tables; WORKLOADS.md asks to say so).
 *
 * Then, untimed in between, the same 1 GiB window with huge pages allowed
 * (SPEC §10): one kmm_vm_map call onto physical [1 GiB, 2 GiB), RAM on the
 * M1 machine, with KMM_MAP_HUGE (512 leaves of 2 MiB) and with
 * KMM_MAP_HUGE_1G (one leaf), no frame allocation; µs per call, median of
 * BENCH_RUNS. Each is checked through kmm_vm_translate (page size and
 * frame) and unmapped untimed; a wrong answer fails the run.
 *
 * With --instr there is one run, each loop marked for callgrind, and each
 * huge-page map call too, plus loops of their own, after the Linux
 * anchor's M1 workloads: one page mapped and unmapped at one address (M1c,
 * page table included); 512 pages mapped one call each in a populated raw
 * area of the kernel virtual area window, then unmapped in one call (M1d);
 * kmm_vmap + kmm_vunmap and kmm_vm_map_ram + kmm_vm_unmap_ram of 1 and 16
 * pages (M1a, M1b). The hosted port invalidates every removed leaf (no MMU
 * sets accessed flags here), which the demo kernel skips for leaves never
 * read. The first loop is not reduced: fewer
 * pages give back frames that merge less deeply in the buddy allocator, and count about 5 % fewer
 * instructions per unmap (622 for 32,768 pages, 654 for all of them).
 *
 * The floor is the bare store of 262,144 entries into a page-table array.
 * TLB requests reach the port (which records nothing here: user space has
 * no INVLPG, so the machine is made with no_tlb_log), and the calls stay in
 * the figure.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hosted.h"

#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#define M1_PAGES       262144u
#define M1_FIXED_PAIRS 65536u /* the map + unmap pairs at one address (--instr) */
#define M1_WINDOW      UINT64_C(0xffffc00000000000)
#define GIB            (UINT64_C(1) << 30)
#define MIB            (UINT64_C(1) << 20)

struct m1_run {
    struct bench_elapsed map, translate, unmap;
    double huge_2m, huge_1g; /* µs to map the whole window in one call */
    uint64_t mismatches, failures;
};

/* Marks a measured loop's end for callgrind (--instr): "M1 <key> <ops>". */
static void m1_instr_end(const struct bench_mode *mode, const char *key, uint64_t ops)
{
    if (!mode->instr)
        return;
    char what[64];
    snprintf(what, sizeof(what), "M1 %s %" PRIu64, key, ops);
    bench_instr_end(what);
}

/* Maps the window onto [1 GiB, 2 GiB) in one call with flag, timed (or
 * counted as key); checks that it translates to `page`-sized leaves; unmaps
 * it. Returns µs. */
static double m1_huge(struct kmm_aspace *ks, unsigned flag, uint64_t page, const char *key,
                      const struct bench_mode *mode, struct m1_run *out)
{
    bench_instr_begin();
    uint64_t t0 = bench_now_ns();
    int err = kmm_vm_map(ks, M1_WINDOW, GIB, GIB, KMM_PROT_READ | KMM_PROT_WRITE | flag);
    uint64_t t1 = bench_now_ns();
    m1_instr_end(mode, key, 1);
    if (err != KMM_OK) {
        fprintf(stderr, "M1: huge map (flag 0x%x): %s\n", flag, kmm_strerror(err));
        out->failures++;
        return (double)(t1 - t0) / 1000;
    }
    for (uint64_t off = 0x123; off < GIB; off += GIB / 16 + 0x201000) {
        struct kmm_vm_translation tr;
        if (kmm_vm_translate(ks, M1_WINDOW + off, &tr) != KMM_OK || tr.pa != GIB + off ||
            tr.page_size != page || tr.cache != KMM_CACHE_WB)
            out->mismatches++;
    }
    if (kmm_vm_unmap(ks, M1_WINDOW, GIB) != KMM_OK)
        out->failures++;
    return (double)(t1 - t0) / 1000;
}

/* One run on a fresh instance. */
/* The Linux anchor's M1d, counted only: in a 2 MiB area of the kernel
 * virtual area window whose page table is held (kmm_kva_populate), 512
 * pages mapped one kmm_vm_map call each, then unmapped with one call;
 * M1D_ROUNDS times. Per page. */
#define M1D_PAGES  512u
#define M1D_ROUNDS 64u
static void m1_instr_window(struct kmm *k, const uint64_t *pa, const struct bench_mode *mode,
                            struct m1_run *out)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    uint64_t base;
    if (kmm_kva_alloc(k, (uint64_t)M1D_PAGES * KMM_PAGE_SIZE, &base) != KMM_OK ||
        kmm_kva_populate(k, base) != KMM_OK) {
        out->failures++;
        return;
    }
    bench_instr_begin();
    for (uint64_t r = 0; r < M1D_ROUNDS; r++) {
        for (uint64_t i = 0; i < M1D_PAGES; i++)
            if (kmm_vm_map(ks, base + (i << 12), pa[r * M1D_PAGES + i], 4096,
                           KMM_PROT_READ | KMM_PROT_WRITE) != KMM_OK)
                out->failures++;
        if (kmm_vm_unmap(ks, base, (uint64_t)M1D_PAGES * KMM_PAGE_SIZE) != KMM_OK)
            out->failures++;
    }
    m1_instr_end(mode, "instr_window_map512_unmap", (uint64_t)M1D_ROUNDS * M1D_PAGES);
    kmm_kva_free(k, base);
}

/* The Linux anchor's M1a, counted only: kmm_vmap of n of the pages and
 * kmm_vunmap, M1A_CALLS times. Per page. */
#define M1A_CALLS 512u
static void m1_instr_vmap(struct kmm *k, const uint64_t *pa, unsigned n, const char *key,
                          const struct bench_mode *mode, struct m1_run *out)
{
    bench_instr_begin();
    for (uint64_t i = 0; i < M1A_CALLS; i++) {
        void *p = kmm_vmap(k, pa + (i * n) % (M1_PAGES - n), n, KMM_PROT_READ | KMM_PROT_WRITE);
        if (!p || kmm_vunmap(k, p) != KMM_OK)
            out->failures++;
    }
    m1_instr_end(mode, key, (uint64_t)M1A_CALLS * n);
}

/* The Linux anchor's M1b, counted only: kmm_vm_map_ram of n of the pages
 * and kmm_vm_unmap_ram, M1A_CALLS times. Per page. */
static void m1_instr_map_ram(struct kmm *k, const uint64_t *pa, unsigned n, const char *key,
                             const struct bench_mode *mode, struct m1_run *out)
{
    bench_instr_begin();
    for (uint64_t i = 0; i < M1A_CALLS; i++) {
        const uint64_t *pages = pa + (i * n) % (M1_PAGES - n);
        void *p = kmm_vm_map_ram(k, pages, n, KMM_PROT_READ | KMM_PROT_WRITE);
        if (!p || kmm_vm_unmap_ram(k, p, n) != KMM_OK)
            out->failures++;
    }
    m1_instr_end(mode, key, (uint64_t)M1A_CALLS * n);
    kmm_vm_map_ram_drain(k);
}

static int m1_once(struct hosted_machine *m, const struct kmm_region *ram, uint64_t *pa,
                   const struct bench_mode *mode, struct m1_run *out)
{
    struct kmm_config cfg = {
        .port = hosted_machine_port(m), .regions = ram, .region_count = 1, .cpu_count = 1};
    struct kmm *k;
    if (kmm_init(&cfg, &k) != KMM_OK)
        return -1;
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    *out = (struct m1_run){0};

    struct bench_clock clk;
    bench_clock_start(&clk);
    bench_instr_begin();
    for (uint64_t i = 0; i < M1_PAGES; i++) {
        pa[i] = kmm_page_alloc(k, 0, 0);
        if (!pa[i] || kmm_vm_map(ks, M1_WINDOW + (i << 12), pa[i], 4096,
                                 KMM_PROT_READ | KMM_PROT_WRITE) != KMM_OK)
            out->failures++;
    }
    m1_instr_end(mode, "instr_per_map", M1_PAGES);
    out->map = bench_clock_stop(&clk);
    bench_clock_start(&clk);
    bench_instr_begin();
    for (uint64_t i = 0; i < M1_PAGES; i++) {
        struct kmm_vm_translation tr;
        if (kmm_vm_translate(ks, M1_WINDOW + (i << 12), &tr) != KMM_OK || tr.pa != pa[i])
            out->mismatches++;
    }
    m1_instr_end(mode, "instr_per_translate", M1_PAGES);
    out->translate = bench_clock_stop(&clk);
    bench_clock_start(&clk);
    bench_instr_begin();
    for (uint64_t i = 0; i < M1_PAGES; i++) {
        if (kmm_vm_unmap(ks, M1_WINDOW + (i << 12), 4096) != KMM_OK ||
            kmm_page_free(k, pa[i], 0) != KMM_OK)
            out->failures++;
    }
    m1_instr_end(mode, "instr_per_unmap", M1_PAGES);
    out->unmap = bench_clock_stop(&clk);
    if (mode->instr) {
        /* The Linux anchor's M1c (docs/performance.md): one page mapped and
         * unmapped at one address, over and over; its page table is made
         * and freed each time. Counted only. */
        bench_instr_begin();
        for (uint64_t i = 0; i < M1_FIXED_PAIRS; i++)
            if (kmm_vm_map(ks, M1_WINDOW, pa[i], 4096, KMM_PROT_READ | KMM_PROT_WRITE) != KMM_OK ||
                kmm_vm_unmap(ks, M1_WINDOW, 4096) != KMM_OK)
                out->failures++;
        m1_instr_end(mode, "instr_map_unmap_fixed", M1_FIXED_PAIRS);
        m1_instr_window(k, pa, mode, out);
        m1_instr_vmap(k, pa, 1, "instr_vmap_vunmap_1", mode, out);
        m1_instr_vmap(k, pa, 16, "instr_vmap_vunmap_16", mode, out);
        m1_instr_vmap(k, pa, 512, "instr_vmap_vunmap_512", mode, out);
        m1_instr_map_ram(k, pa, 1, "instr_map_ram_1", mode, out);
        m1_instr_map_ram(k, pa, 16, "instr_map_ram_16", mode, out);
    }
    out->huge_2m = m1_huge(ks, KMM_MAP_HUGE, KMM_PAGE_2M, "instr_huge_2m", mode, out);
    out->huge_1g = m1_huge(ks, KMM_MAP_HUGE_1G, KMM_PAGE_1G, "instr_huge_1g", mode, out);
    kmm_fini(k);
    return 0;
}

/* The floor: storing each entry into a flat page-table array. The store
 * goes through a function the optimiser cannot see into, as kmm's calls
 * are in another translation unit. */
static __attribute__((noinline)) void store_pte(uint64_t *table, uint64_t i, uint64_t pa)
{
    table[i] = pa | 0x3;
}

static void m1_floor(uint64_t *table, const uint64_t *pa)
{
    for (uint64_t i = 0; i < M1_PAGES; i++)
        store_pte(table, i, pa[i]);
}

/* Checks a run's counts; prints what went wrong. */
static int m1_check(uint64_t failures, uint64_t mismatches)
{
    if (failures || mismatches) {
        fprintf(stderr, "M1: %" PRIu64 " failures, %" PRIu64 " wrong translations\n", failures,
                mismatches);
        return -1;
    }
    return 0;
}

/* Adds the figures of the timed runs to r. */
static void m1_report(struct bench_results *r, const struct bench_figure *map,
                      const struct bench_figure *tr, const struct bench_figure *un,
                      const struct bench_figure *fl, const double *h2, const double *h1)
{
    double share = bench_figure_share(map);
    share = bench_figure_share(tr) < share ? bench_figure_share(tr) : share;
    share = bench_figure_share(un) < share ? bench_figure_share(un) : share;
    double h2_med = bench_median(h2, BENCH_RUNS), h1_med = bench_median(h1, BENCH_RUNS);
    bench_figure_print("M1 map", map);
    bench_figure_print("M1 translate", tr);
    bench_figure_print("M1 unmap (frees tables too)", un);
    bench_figure_print("M1 floor (entry store)", fl);
    bench_print_runs("M1 1 GiB in 2 MiB pages, one map (us)", h2, BENCH_RUNS, h2_med);
    bench_print_runs("M1 1 GiB in one 1 GiB page, one map (us)", h1, BENCH_RUNS, h1_med);
    bench_print_mode("M1", share);
    bench_add_row(r, &(struct bench_row){.workload = "M1 map",
                                         .unit = "ns/page",
                                         .ns = bench_figure_wall(map),
                                         .cpu_ns = bench_figure_cpu(map),
                                         .share = bench_figure_share(map),
                                         .floor_ns = bench_figure_cpu(fl),
                                         .peers = "x86_64 crate OffsetPageTable 10.3 (190 instr)"});
    bench_add_row(r, &(struct bench_row){.workload = "M1 transl",
                                         .unit = "ns/page",
                                         .ns = bench_figure_wall(tr),
                                         .cpu_ns = bench_figure_cpu(tr),
                                         .share = bench_figure_share(tr),
                                         .floor_ns = -1,
                                         .peers = "x86_64 crate OffsetPageTable 4.2 (77 instr)"});
    bench_add_row(r, &(struct bench_row){.workload = "M1 unmap",
                                         .unit = "ns/page",
                                         .ns = bench_figure_wall(un),
                                         .cpu_ns = bench_figure_cpu(un),
                                         .share = bench_figure_share(un),
                                         .floor_ns = -1,
                                         .peers = "x86_64 crate OffsetPageTable 4.2 (86 instr, "
                                                  "keeps its tables)"});
    bench_add_field(r, "M1", "map_ns", bench_figure_wall(map));
    bench_add_field(r, "M1", "translate_ns", bench_figure_wall(tr));
    bench_add_field(r, "M1", "unmap_ns", bench_figure_wall(un));
    bench_add_field(r, "M1", "floor_ns", bench_figure_wall(fl));
    bench_add_field(r, "M1", "map_cpu_ns", bench_figure_cpu(map));
    bench_add_field(r, "M1", "translate_cpu_ns", bench_figure_cpu(tr));
    bench_add_field(r, "M1", "unmap_cpu_ns", bench_figure_cpu(un));
    bench_add_field(r, "M1", "floor_cpu_ns", bench_figure_cpu(fl));
    bench_add_field(r, "M1", "share", share);
    bench_add_row(r, &(struct bench_row){.workload = "M1 huge2M",
                                         .unit = "us/GiB",
                                         .ns = h2_med,
                                         .cpu_ns = -1,
                                         .share = -1,
                                         .floor_ns = -1,
                                         .peers = "1 GiB as 512 x 2 MiB, one kmm_vm_map (target "
                                                  "< 20 us)"});
    bench_add_row(r, &(struct bench_row){.workload = "M1 huge1G",
                                         .unit = "us/GiB",
                                         .ns = h1_med,
                                         .cpu_ns = -1,
                                         .share = -1,
                                         .floor_ns = -1,
                                         .peers = "1 GiB as one 1 GiB page, one kmm_vm_map "
                                                  "(target < 5 us)"});
    bench_add_field(r, "M1", "huge_2m_us", h2_med);
    bench_add_field(r, "M1", "huge_1g_us", h1_med);
}

int bench_vm_m1(struct bench_results *r, const struct bench_mode *mode)
{
    /* 1 GiB + 8 MiB of RAM as WORKLOADS.md has it, plus kmm's metadata: the
     * huge-page maps' [1 GiB, 2 GiB) is all RAM (kmm's metadata counts). */
    const struct kmm_region ram = {GIB, GIB + 8 * MIB + 64 * MIB, KMM_MEM_USABLE};
    struct hosted_machine_config mc = {
        .ram = &ram, .ram_count = 1, .anonymous = true, .no_tlb_log = true};
    struct hosted_machine *m = hosted_machine_create(&mc);
    uint64_t *pa = calloc(M1_PAGES, sizeof(*pa));
    uint64_t *table = calloc(M1_PAGES, sizeof(*table));
    int ret = -1;
    if (!m || !pa || !table) {
        perror("M1: setup");
        goto out;
    }
    if (mode->instr) {
        struct m1_run one;
        if (m1_once(m, &ram, pa, mode, &one) != 0) {
            fprintf(stderr, "M1: kmm_init failed\n");
            goto out;
        }
        printf("M1 counted %u pages\n", M1_PAGES);
        ret = m1_check(one.failures, one.mismatches);
        goto out;
    }
    memset((void *)(hosted_machine_direct_map(m) + ram.base), 0, ram.length); /* pre-fault */
    struct bench_figure map = {0}, tr = {0}, un = {0}, fl = {0};
    double h2[BENCH_RUNS], h1[BENCH_RUNS];
    uint64_t mismatches = 0, failures = 0;
    for (unsigned run = 0; run < BENCH_RUNS; run++) {
        struct m1_run one;
        if (m1_once(m, &ram, pa, mode, &one) != 0) {
            fprintf(stderr, "M1: kmm_init failed\n");
            goto out;
        }
        bench_figure_add(&map, &one.map, M1_PAGES);
        bench_figure_add(&tr, &one.translate, M1_PAGES);
        bench_figure_add(&un, &one.unmap, M1_PAGES);
        struct bench_clock clk;
        bench_clock_start(&clk);
        m1_floor(table, pa);
        struct bench_elapsed el = bench_clock_stop(&clk);
        bench_figure_add(&fl, &el, M1_PAGES);
        h2[run] = one.huge_2m;
        h1[run] = one.huge_1g;
        mismatches += one.mismatches;
        failures += one.failures;
    }
    printf("M1 pages=%u failures=%" PRIu64 " mismatches=%" PRIu64 " thp_kb=%ld\n", M1_PAGES,
           failures, mismatches, bench_thp_kb());
    if (m1_check(failures, mismatches) != 0)
        goto out;
    m1_report(r, &map, &tr, &un, &fl, h2, h1);
    ret = 0;
out:
    free(pa);
    free(table);
    hosted_machine_destroy(m);
    return ret;
}
