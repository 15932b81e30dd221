/*
 * bootinfo.c - Multiboot1 and Multiboot2 information into struct boot_info
 * (contract: bootinfo.h).
 *
 * Everything is read through the early direct map, which covers the first
 * 4 GiB: both protocols put their information below 4 GiB (32-bit
 * addresses), and boot_ptr() refuses anything beyond what is mapped.
 * The memory map is converted by the library's adapters (kmm/bootmap.h),
 * which also check its shape.
 */
#include <kmm/bootmap.h>
#include <kmm/kmm.h>

#include "bootinfo.h"
#include "kernel.h"

#define MIB UINT64_C(0x100000)

/* --- Multiboot1 --------------------------------------------------------------- */

#define MB1_INFO_CMDLINE     (1u << 2)
#define MB1_INFO_MODS        (1u << 3)
#define MB1_INFO_MMAP        (1u << 6)
#define MB1_INFO_LOADER_NAME (1u << 9)
#define MB1_INFO_SIZE        116 /* the whole structure, framebuffer fields included */

/* The fields of the Multiboot1 information structure read here (it goes
 * on; every address in it is physical). */
struct mb1_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr;
    uint32_t config_table;
    uint32_t boot_loader_name;
};

struct mb1_module {
    uint32_t mod_start, mod_end;
    uint32_t string, reserved;
};

/* --- Multiboot2 --------------------------------------------------------------- */

#define MB2_TAG_END         0
#define MB2_TAG_CMDLINE     1
#define MB2_TAG_LOADER_NAME 2
#define MB2_TAG_MODULE      3
#define MB2_TAG_MMAP        6
#define MB2_TAG_ACPI_OLD    14 /* a copy of the ACPI 1.0 RSDP */
#define MB2_TAG_ACPI_NEW    15 /* a copy of the ACPI 2.0+ RSDP */
#define MB2_TAG_EFI32       11 /* the EFI system table: UEFI firmware booted us */
#define MB2_TAG_EFI64       12
#define MB2_TAG_EFI_MMAP    17
#define MB2_TAG_ALIGN       8
#define MB2_INFO_HEADER     8  /* total_size, reserved */
#define MB2_TAG_HEADER      8  /* type, size */
#define MB2_MODULE_FIXED    16 /* type, size, mod_start, mod_end, then the string */

struct mb2_tag {
    uint32_t type, size;
};

/* --- helpers ---------------------------------------------------------------------- */

/* A pointer to len bytes at physical pa; panics unless the early direct map
 * holds them all. */
static const void *boot_ptr(uint64_t pa, uint64_t len)
{
    if (pa >= EARLY_DIRECT_BYTES || len > EARLY_DIRECT_BYTES - pa)
        kernel_panic("bootinfo: boot information outside the early direct map");
    return phys_to_virt(pa);
}

/* Copies the string at physical pa into out (cap bytes, cut, NUL
 * terminated); returns the physical end of the string, its NUL included. */
static uint64_t copy_string(uint64_t pa, char *out, size_t cap)
{
    const char *s = boot_ptr(pa, 1);
    size_t n = 0;
    while (pa + n + 1 < EARLY_DIRECT_BYTES && s[n]) {
        if (n + 1 < cap)
            out[n] = s[n];
        n++;
    }
    out[n + 1 < cap ? n : cap - 1] = '\0';
    return pa + n + 1;
}

/* Copies a string of at most max bytes (a Multiboot2 tag's payload, which
 * need not be terminated) into out. */
static void copy_bounded(const char *s, size_t max, char *out, size_t cap)
{
    size_t n = 0;
    while (n < max && s[n] && n + 1 < cap) {
        out[n] = s[n];
        n++;
    }
    out[n] = '\0';
}

void bootinfo_reserve(struct boot_info *bi, uint64_t base, uint64_t len, uint32_t type)
{
    if (len == 0)
        return;
    if (bi->reserved_count == BOOT_MAX_RESERVED)
        kernel_panic("bootinfo_reserve: more than BOOT_MAX_RESERVED reserved ranges");
    bi->reserved[bi->reserved_count++] = (struct kmm_region){base, len, type};
}

static void add_module(struct boot_info *bi, uint64_t start, uint64_t end)
{
    if (end < start)
        kernel_panic("bootinfo: a module ends before it starts");
    if (bi->module_count == BOOT_MAX_MODULES)
        kernel_panic("bootinfo: more than BOOT_MAX_MODULES modules");
    bi->modules[bi->module_count++] = (struct boot_module){start, end};
    bootinfo_reserve(bi, start, end - start, KMM_MEM_KERNEL);
}

/* Runs an adapter's answer n through the common checks. */
static void take_map(struct boot_info *bi, long n)
{
    if (n < 0)
        kernel_panic("bootinfo: the loader's memory map is malformed");
    if (n > BOOT_MAX_MAP)
        kernel_panic("bootinfo: the memory map has more than BOOT_MAX_MAP entries");
    bi->map_count = (size_t)n;
}

/* --- the two protocols --------------------------------------------------------------- */

/* Multiboot1: the structure, then what it points at, each reserved where it is. */
static void parse_mb1(uint32_t info_pa, struct boot_info *bi)
{
    const struct mb1_info *mbi = boot_ptr(info_pa, MB1_INFO_SIZE);
    bootinfo_reserve(bi, info_pa, MB1_INFO_SIZE, KMM_MEM_BOOTLOADER_RECLAIMABLE);
    if (!(mbi->flags & MB1_INFO_MMAP))
        kernel_panic("bootinfo: the Multiboot1 loader passed no memory map");
    const void *mmap = boot_ptr(mbi->mmap_addr, mbi->mmap_length);
    take_map(bi, kmm_bootmap_multiboot1(mmap, mbi->mmap_length, bi->map, BOOT_MAX_MAP));
    bootinfo_reserve(bi, mbi->mmap_addr, mbi->mmap_length, KMM_MEM_BOOTLOADER_RECLAIMABLE);
    if (mbi->flags & MB1_INFO_CMDLINE) {
        uint64_t end = copy_string(mbi->cmdline, bi->cmdline, sizeof(bi->cmdline));
        bootinfo_reserve(bi, mbi->cmdline, end - mbi->cmdline, KMM_MEM_BOOTLOADER_RECLAIMABLE);
    }
    if (mbi->flags & MB1_INFO_LOADER_NAME) {
        uint64_t end = copy_string(mbi->boot_loader_name, bi->loader, sizeof(bi->loader));
        bootinfo_reserve(bi, mbi->boot_loader_name, end - mbi->boot_loader_name,
                         KMM_MEM_BOOTLOADER_RECLAIMABLE);
    }
    if (mbi->flags & MB1_INFO_MODS) {
        uint64_t bytes = (uint64_t)mbi->mods_count * sizeof(struct mb1_module);
        const struct mb1_module *mod = boot_ptr(mbi->mods_addr, bytes);
        bootinfo_reserve(bi, mbi->mods_addr, bytes, KMM_MEM_BOOTLOADER_RECLAIMABLE);
        for (uint32_t i = 0; i < mbi->mods_count; i++)
            add_module(bi, mod[i].mod_start, mod[i].mod_end);
    }
}

/* Multiboot2: one block of tags, reserved whole. */
static void parse_mb2(uint32_t info_pa, struct boot_info *bi)
{
    const uint32_t *head = boot_ptr(info_pa, MB2_INFO_HEADER);
    uint32_t total = head[0];
    if (total < MB2_INFO_HEADER + MB2_TAG_HEADER)
        kernel_panic("bootinfo: Multiboot2 information too short");
    const uint8_t *base = boot_ptr(info_pa, total);
    bootinfo_reserve(bi, info_pa, total, KMM_MEM_BOOTLOADER_RECLAIMABLE);
    bool have_map = false;
    for (uint32_t off = MB2_INFO_HEADER;;) {
        if (total - off < MB2_TAG_HEADER)
            kernel_panic("bootinfo: Multiboot2 information without an end tag");
        const struct mb2_tag *tag = (const struct mb2_tag *)(base + off);
        if (tag->size < MB2_TAG_HEADER || tag->size > total - off)
            kernel_panic("bootinfo: a Multiboot2 tag runs past the information");
        const uint8_t *payload = (const uint8_t *)tag + MB2_TAG_HEADER;
        uint32_t len = tag->size - MB2_TAG_HEADER;
        switch (tag->type) {
        case MB2_TAG_END:
            if (!have_map)
                kernel_panic("bootinfo: the Multiboot2 loader passed no memory map");
            return;
        case MB2_TAG_CMDLINE:
            copy_bounded((const char *)payload, len, bi->cmdline, sizeof(bi->cmdline));
            break;
        case MB2_TAG_LOADER_NAME:
            copy_bounded((const char *)payload, len, bi->loader, sizeof(bi->loader));
            break;
        case MB2_TAG_MODULE: {
            if (tag->size < MB2_MODULE_FIXED)
                kernel_panic("bootinfo: a Multiboot2 module tag too short");
            const uint32_t *m = (const uint32_t *)payload;
            add_module(bi, m[0], m[1]);
            break;
        }
        case MB2_TAG_MMAP:
            take_map(bi, kmm_bootmap_multiboot2(tag, bi->map, BOOT_MAX_MAP));
            have_map = true;
            break;
        case MB2_TAG_EFI32:
        case MB2_TAG_EFI64:
        case MB2_TAG_EFI_MMAP:
            bi->uefi = true;
            break;
        case MB2_TAG_ACPI_OLD:
        case MB2_TAG_ACPI_NEW:
            /* The newer tag wins: it carries the XSDT's address. */
            if (tag->type == MB2_TAG_ACPI_NEW || bi->rsdp_len == 0) {
                bi->rsdp_len = len < BOOT_RSDP_MAX ? len : BOOT_RSDP_MAX;
                memcpy(bi->rsdp, payload, bi->rsdp_len);
            }
            break;
        default:
            break;
        }
        uint32_t step = (tag->size + MB2_TAG_ALIGN - 1) & ~(uint32_t)(MB2_TAG_ALIGN - 1);
        if (step > total - off)
            kernel_panic("bootinfo: Multiboot2 information without an end tag");
        off += step;
    }
}

extern const char __kernel_phys_start[], __kernel_phys_end[]; /* linker.ld, physical */

/* RAM as the library counts it (src/pmm/map.c): memory a direct map covers. */
static bool is_ram(uint32_t type)
{
    return type == KMM_MEM_USABLE || type == KMM_MEM_ACPI_RECLAIMABLE || type == KMM_MEM_ACPI_NVS ||
           type == KMM_MEM_BOOTLOADER_RECLAIMABLE || type == KMM_MEM_KERNEL;
}

void bootinfo_parse(uint32_t magic, uint32_t info_pa, struct boot_info *bi)
{
    memset(bi, 0, sizeof(*bi));
    /* Below 1 MiB: the real-mode IVT and BDA, the EBDA, VGA memory and the
     * BIOS; boot.S's loaders put nothing of ours there either way. */
    bootinfo_reserve(bi, 0, MIB, KMM_MEM_RESERVED);
    uint64_t kstart = (uint64_t)(uintptr_t)__kernel_phys_start;
    bootinfo_reserve(bi, kstart, (uint64_t)(uintptr_t)__kernel_phys_end - kstart, KMM_MEM_KERNEL);
    if (magic == MB1_BOOT_MAGIC) {
        bi->protocol = 1;
        parse_mb1(info_pa, bi);
    } else if (magic == MB2_BOOT_MAGIC) {
        bi->protocol = 2;
        parse_mb2(info_pa, bi);
    } else {
        kernel_panic("bootinfo: not started by a Multiboot1 or Multiboot2 loader");
    }
    for (size_t i = 0; i < bi->map_count; i++) {
        const struct kmm_region *r = &bi->map[i];
        if (is_ram(r->type) && r->base + r->length > bi->ram_end)
            bi->ram_end = r->base + r->length;
    }
}

/* The command line is words separated by spaces. Calls fn for each until
 * it returns true; returns whether one did. */
static bool each_word(const struct boot_info *bi, bool (*fn)(const char *w, size_t n, void *ctx),
                      void *ctx)
{
    const char *s = bi->cmdline;
    while (*s) {
        while (*s == ' ')
            s++;
        size_t n = 0;
        while (s[n] && s[n] != ' ')
            n++;
        if (n && fn(s, n, ctx))
            return true;
        s += n;
    }
    return false;
}

struct word_query {
    const char *key; /* the word, or the key before '=' */
    bool option;     /* match key=value */
    char *out;
    size_t cap;
};

static bool match_word(const char *w, size_t n, void *ctx)
{
    struct word_query *q = ctx;
    size_t k = kstrlen(q->key);
    if (n < k || memcmp(w, q->key, k) != 0)
        return false;
    if (!q->option)
        return n == k;
    if (n == k || w[k] != '=')
        return false;
    size_t v = n - k - 1;
    if (v + 1 > q->cap)
        v = q->cap - 1;
    memcpy(q->out, w + k + 1, v);
    q->out[v] = '\0';
    return true;
}

bool bootinfo_option(const struct boot_info *bi, const char *key, char *out, size_t cap)
{
    struct word_query q = {key, true, out, cap};
    return cap > 0 && each_word(bi, match_word, &q);
}

bool bootinfo_has_word(const struct boot_info *bi, const char *word)
{
    struct word_query q = {word, false, NULL, 0};
    return each_word(bi, match_word, &q);
}
