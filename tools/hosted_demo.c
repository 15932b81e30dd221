/*
 * hosted_demo.c - "make run" until the demo kernel exists: bring kmm up on a
 * simulated machine with a real PC's memory map and print its report.
 *
 * The map is the e820 table QEMU's SeaBIOS gives a q35 machine with 8 GiB of
 * RAM (RAM split around the 32-bit PCI hole, so 6 GiB sit above 4 GiB), plus
 * the reservations a kernel makes for itself (its image, an initrd module and
 * a framebuffer). kmm resolves it, places its instance, maps RAM and the
 * frame buffer in the kernel space as a kernel would, and reports.
 *
 * kmm-demo --dump FILE also writes the machine-readable dump (kmm/dump.h) of
 * the busy moment (blocks allocated, every other one freed, vmalloc areas
 * live) to FILE, for tools/mempicture.py (make demo draws it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kmm/check.h>
#include <kmm/dump.h>
#include <kmm/heap.h>
#include <kmm/kmm.h>
#include <kmm/page.h>
#include <kmm/vm.h>
#include <kmm/vmalloc.h>

#include "hosted.h"

static const struct kmm_region qemu_q35_8g[] = {
    {0x0000000000000000, 0x000000000009fc00, KMM_MEM_USABLE},
    {0x000000000009fc00, 0x0000000000000400, KMM_MEM_RESERVED},
    {0x00000000000f0000, 0x0000000000010000, KMM_MEM_RESERVED},
    {0x0000000000100000, 0x000000007fedf000, KMM_MEM_USABLE},
    {0x000000007ffdf000, 0x0000000000021000, KMM_MEM_RESERVED},
    {0x00000000b0000000, 0x0000000010000000, KMM_MEM_RESERVED}, /* PCIe ECAM */
    {0x00000000fed1c000, 0x0000000000004000, KMM_MEM_RESERVED},
    {0x00000000feffc000, 0x0000000000004000, KMM_MEM_RESERVED},
    {0x00000000fffc0000, 0x0000000000040000, KMM_MEM_RESERVED},
    {0x0000000100000000, 0x0000000180000000, KMM_MEM_USABLE},
    {0x000000fd00000000, 0x0000000300000000, KMM_MEM_RESERVED},
};

/* What a kernel reserves for itself before handing the map over. */
static const struct kmm_region kernel_reserved[] = {
    {0x0000000000100000, 0x0000000000400000, KMM_MEM_KERNEL},   /* image, 4 MiB */
    {0x0000000000500000, 0x0000000000200000, KMM_MEM_KERNEL},   /* initrd module */
    {0x0000000000008000, 0x0000000000001000, KMM_MEM_RESERVED}, /* AP trampoline */
};

/* Where a kernel would put its direct map of RAM (Linux's base). */
#define DIRECT_MAP  UINT64_C(0xffff888000000000)
#define FRAMEBUFFER UINT64_C(0x000000fd00000000) /* 8 MiB of the reserved PCI window */
#define FB_VA       UINT64_C(0xffffc90000000000)

/* What a kernel does first with the engine: map all RAM at DIRECT_MAP with
 * the largest pages that fit (1 GiB above 4 GiB, 2 MiB and 4 KiB around the
 * holes below), and a frame buffer write-combining. The report then shows
 * the page sizes used. */
static int map_kernel_view(struct kmm *k)
{
    struct kmm_aspace *ks = kmm_kernel_aspace(k);
    size_t n;
    const struct kmm_region *r = kmm_memory_map(k, &n);
    for (size_t i = 0; i < n; i++) {
        if (r[i].type == KMM_MEM_RESERVED || r[i].type == KMM_MEM_BAD)
            continue;
        int err = kmm_vm_map(ks, DIRECT_MAP + r[i].base, r[i].base, r[i].length,
                             KMM_PROT_READ | KMM_PROT_WRITE | KMM_PROT_GLOBAL | KMM_MAP_HUGE_1G);
        if (err) {
            fprintf(stderr, "kmm-demo: direct map of [%#llx, +%#llx): %s\n",
                    (unsigned long long)r[i].base, (unsigned long long)r[i].length,
                    kmm_strerror(err));
            return err;
        }
    }
    int err = kmm_vm_map(ks, FB_VA, FRAMEBUFFER, 8u << 20,
                         KMM_PROT_READ | KMM_PROT_WRITE | KMM_CACHE_WC | KMM_MAP_HUGE);
    if (err)
        fprintf(stderr, "kmm-demo: frame buffer: %s\n", kmm_strerror(err));
    return err;
}

static void write_stdout(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
}

static void write_file(void *ctx, const char *text, size_t len)
{
    fwrite(text, 1, len, ctx);
}

/* Writes k's dump to path; false (and says why) if it cannot. */
static bool write_dump(struct kmm *k, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return false;
    }
    int err = kmm_dump_json(k, &(struct kmm_sink){write_file, f});
    bool ok = fclose(f) == 0 && err == KMM_OK;
    if (!ok)
        fprintf(stderr, "kmm-demo: writing the dump to %s failed (%s)\n", path, kmm_strerror(err));
    else
        printf("\nThe dump of this moment (kmm_dump_json) is in %s\n", path);
    return ok;
}

int main(int argc, char **argv)
{
    const char *dump_path = NULL;
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
        dump_path = argv[2];
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--dump FILE]\n", argv[0]);
        return 2;
    }
    size_t n = sizeof(qemu_q35_8g) / sizeof(qemu_q35_8g[0]);
    struct hosted_machine_config mc = {.ram = qemu_q35_8g, .ram_count = n, .echo_log = true};
    /* Back only the usable ranges with RAM: the library must not touch the rest. */
    struct kmm_region ram[sizeof(qemu_q35_8g) / sizeof(qemu_q35_8g[0])];
    size_t nram = 0;
    for (size_t i = 0; i < n; i++)
        if (qemu_q35_8g[i].type == KMM_MEM_USABLE)
            ram[nram++] = qemu_q35_8g[i];
    mc.ram = ram;
    mc.ram_count = nram;
    struct hosted_machine *m = hosted_machine_create(&mc);
    if (!m) {
        perror("kmm-demo: cannot create the simulated machine");
        return EXIT_FAILURE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep the log (stderr) in order with the report */
    printf("kmm hosted demo: a QEMU q35 machine with 8 GiB of RAM, simulated in a sparse memfd\n"
           "direct-mapped at %p (RAM up to %llu GiB)\n\n",
           (void *)hosted_machine_direct_map(m),
           (unsigned long long)(hosted_machine_phys_end(m) >> 30));

    struct kmm_config cfg = {
        .port = hosted_machine_port(m),
        .regions = qemu_q35_8g,
        .region_count = n,
        .reserved = kernel_reserved,
        .reserved_count = sizeof(kernel_reserved) / sizeof(kernel_reserved[0]),
        .cpu_count = 2,
    };
    struct kmm *k;
    int err = kmm_init(&cfg, &k);
    if (err) {
        fprintf(stderr, "kmm-demo: kmm_init failed: %s\n", kmm_strerror(err));
        hosted_machine_destroy(m);
        return EXIT_FAILURE;
    }
    struct kmm_sink out = {write_stdout, NULL};
    if (map_kernel_view(k) != KMM_OK) {
        kmm_fini(k);
        hosted_machine_destroy(m);
        return EXIT_FAILURE;
    }
    printf("\n");
    kmm_report(k, &out);

    /* Some work: 20,000 blocks of mixed orders (a third of them from DMA32
     * for a pretend device), then every other one freed, which leaves holes
     * that show in the buddyinfo and the unusable index. */
    enum { BLOCKS = 20000 };
    static uint64_t pa[BLOCKS];
    static unsigned order[BLOCKS];
    uint64_t seed = 42;
    for (int i = 0; i < BLOCKS; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        order[i] = (unsigned)(seed >> 60) % 4;
        pa[i] = kmm_page_alloc(k, order[i], i % 3 == 0 ? KMM_GFP_DMA32 : 0);
    }
    for (int i = 0; i < BLOCKS; i += 2)
        kmm_page_free(k, pa[i], order[i]);
    /* And three vmalloc areas in the kernel heap window, which the report
     * lists as /proc/vmallocinfo does. */
    static const size_t area_bytes[] = {1u << 20, 64u << 10, 12u << 10};
    void *area[3];
    for (int i = 0; i < 3; i++)
        area[i] = kmm_vmalloc(k, area_bytes[i], 0);
    /* And the heap at work: 4,000 kmalloc blocks of 16 B to 2 KiB, a third
     * of them freed again, and an object cache of 600-byte "inodes", which
     * the slabinfo lines show. */
    enum { HEAP_BLOCKS = 4000, INODES = 700 };
    static void *blk[HEAP_BLOCKS];
    for (int i = 0; i < HEAP_BLOCKS; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        blk[i] = kmm_malloc(k, (size_t)16 << ((seed >> 59) % 8), 0);
    }
    for (int i = 0; i < HEAP_BLOCKS; i += 3) {
        kmm_free(k, blk[i]);
        blk[i] = NULL;
    }
    struct kmm_cache *inodes = kmm_cache_create(k, "demo_inode", 600, 0, NULL, 0);
    static void *inode[INODES];
    for (int i = 0; inodes && i < INODES; i++)
        inode[i] = kmm_cache_alloc(k, inodes, 0);
    printf("\nAfter allocating %d blocks of orders 0-3, freeing every other one, three "
           "vmalloc areas, and heap blocks and objects:\n\n",
           BLOCKS);
    kmm_report(k, &out);
    bool dumped = !dump_path || write_dump(k, dump_path);
    for (int i = 0; i < 3; i++)
        kmm_vfree(k, area[i]);
    for (int i = 0; i < HEAP_BLOCKS; i++)
        kmm_free(k, blk[i]);
    for (int i = 0; inodes && i < INODES; i++)
        kmm_cache_free(k, inodes, inode[i]);
    if (inodes)
        kmm_cache_destroy(k, inodes);
    for (int i = 1; i < BLOCKS; i += 2)
        kmm_page_free(k, pa[i], order[i]);
    struct kmm_check_result r;
    kmm_check(k, &r);
    printf("\nAll freed again. Integrity check: %s (%llu frames and %llu free blocks walked)\n",
           r.status == KMM_CHECK_OK ? "ok" : r.first, (unsigned long long)r.frames_walked,
           (unsigned long long)r.blocks_walked);
    kmm_fini(k);
    hosted_machine_destroy(m);
    return r.status == KMM_CHECK_OK && dumped ? EXIT_SUCCESS : EXIT_FAILURE;
}
