/*
 * test_bootmap.c - boot loaders' memory maps into kmm regions (kmm/bootmap.h).
 *
 * The Multiboot maps are built byte by byte, little-endian, as the loaders
 * lay them out (put_* below), from a list of the regions the adapter should
 * give back; one test holds the bytes written out by hand, to check the
 * builders themselves. Loader type numbers come from the protocols (the
 * tables mb_type and limine_type), not from kmm/bootmap.h.
 *
 * Every call's out array is first filled with a sentinel: a test checks
 * every field written and that nothing was written beyond what it should.
 */
#include "env.h"
#include "ktest.h"

#include <kmm/bootmap.h>
#include <kmm/kmm.h>
#include <kmm/memmap.h>

#define N(a)        (sizeof(a) / sizeof((a)[0]))
#define MIB         (UINT64_C(1) << 20)
#define GIB         (UINT64_C(1) << 30)
#define SENTINEL    0xa5 /* every byte of an out array before a call */
#define JUNK        0xee /* bytes a loader adds past the fields we read */
#define MAX_ENTRIES 32
#define BYTES_CAP   (16 + MAX_ENTRIES * 40)

/* --- the machines' maps, as kmm regions (what the adapters must return) ---- */

/* QEMU pc, -m 128M: the e820 map SeaBIOS reports. */
static const struct kmm_region qemu_pc_128m[] = {
    {0x0, 0x9fc00, KMM_MEM_USABLE},
    {0x9fc00, 0x400, KMM_MEM_RESERVED},
    {0xf0000, 0x10000, KMM_MEM_RESERVED},
    {0x100000, 0x7ee0000, KMM_MEM_USABLE}, /* to 0x7fdffff */
    {0x7fe0000, 0x20000, KMM_MEM_RESERVED},
    {0xfffc0000, 0x40000, KMM_MEM_RESERVED},
};

/* QEMU q35, -m 8G: 2 GiB below the PCI hole, 6 GiB above 4 GiB. */
static const struct kmm_region qemu_q35_8g[] = {
    {0x0, 0x9fc00, KMM_MEM_USABLE},
    {0x9fc00, 0x400, KMM_MEM_RESERVED},
    {0xf0000, 0x10000, KMM_MEM_RESERVED},
    {0x100000, 0x7fedf000, KMM_MEM_USABLE}, /* to 0x7ffdefff */
    {0x7ffdf000, 0x21000, KMM_MEM_RESERVED},
    {0xb0000000, 0x10000000, KMM_MEM_RESERVED}, /* PCIe MMCONFIG */
    {0xfed1c000, 0x4000, KMM_MEM_RESERVED},
    {0xfeffc000, 0x4000, KMM_MEM_RESERVED},
    {0xfffc0000, 0x40000, KMM_MEM_RESERVED},
    {0x100000000, 0x180000000, KMM_MEM_USABLE},
    {0xfd00000000, 0x300000000, KMM_MEM_RESERVED},
};

/* A UEFI-era desktop with 16 GiB (e820 as its firmware reports it), plus a
 * bad range the firmware's memory test found. */
static const struct kmm_region uefi_pc[] = {
    {0x0, 0x9f000, KMM_MEM_USABLE},
    {0x9f000, 0x61000, KMM_MEM_RESERVED},
    {0x100000, 0x9a00000, KMM_MEM_USABLE},
    {0x9b00000, 0x300000, KMM_MEM_RESERVED},
    {0x9e00000, 0x100000, KMM_MEM_USABLE},
    {0x9f00000, 0xc000, KMM_MEM_ACPI_NVS},
    {0x9f0c000, 0xaf052000, KMM_MEM_USABLE}, /* to 0xb8f5dfff */
    {0xb8f5e000, 0x20000, KMM_MEM_BAD},
    {0xb8f7e000, 0x4381000, KMM_MEM_USABLE}, /* to 0xbd2fefff */
    {0xbd2ff000, 0x100000, KMM_MEM_ACPI_RECLAIMABLE},
    {0xbd3ff000, 0x200000, KMM_MEM_ACPI_NVS},
    {0xbd5ff000, 0xa01000, KMM_MEM_RESERVED},
    {0xbe000000, 0x2000000, KMM_MEM_RESERVED},
    {0xf0000000, 0x8000000, KMM_MEM_RESERVED},
    {0xfd000000, 0x3000000, KMM_MEM_RESERVED},
    {0x100000000, 0x33f380000, KMM_MEM_USABLE}, /* to 0x43f37ffff */
    {0x43f380000, 0xc80000, KMM_MEM_RESERVED},
};

/* The loaders' numbers for kmm's types (Multiboot spec 3.3, Multiboot2 spec
 * 3.6.8, Limine protocol "Memory Map Feature"). */
static const uint32_t mb_type[KMM_MEM_TYPE_LIMIT] = {
    [KMM_MEM_USABLE] = 1,   [KMM_MEM_RESERVED] = 2, [KMM_MEM_ACPI_RECLAIMABLE] = 3,
    [KMM_MEM_ACPI_NVS] = 4, [KMM_MEM_BAD] = 5,
};
static const uint64_t limine_type[KMM_MEM_TYPE_LIMIT] = {
    [KMM_MEM_USABLE] = 0,   [KMM_MEM_RESERVED] = 1, [KMM_MEM_ACPI_RECLAIMABLE] = 2,
    [KMM_MEM_ACPI_NVS] = 3, [KMM_MEM_BAD] = 4,      [KMM_MEM_BOOTLOADER_RECLAIMABLE] = 5,
    [KMM_MEM_KERNEL] = 6,
};

/* --- building loader maps ----------------------------------------------------- */

/* A byte buffer a loader map is built in. */
struct bytes {
    uint8_t b[BYTES_CAP];
    size_t len;
    bool overflow; /* something did not fit (the builder's caller checks) */
};

static void put_u8(struct bytes *b, uint8_t v)
{
    if (b->len < BYTES_CAP)
        b->b[b->len++] = v;
    else
        b->overflow = true;
}

static void put_le32(struct bytes *b, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        put_u8(b, (uint8_t)(v >> (8 * i)));
}

static void put_le64(struct bytes *b, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        put_u8(b, (uint8_t)(v >> (8 * i)));
}

static void put_junk(struct bytes *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_u8(b, JUNK);
}

/* One Multiboot1 entry with size field size (>= 20): base_addr, length, type,
 * then size - 20 junk bytes. */
static void put_mb1_entry(struct bytes *b, uint32_t size, uint64_t base, uint64_t length,
                          uint32_t type)
{
    put_le32(b, size);
    put_le64(b, base);
    put_le64(b, length);
    put_le32(b, type);
    put_junk(b, size - 20);
}

/* The Multiboot2 memory map tag's header, for n entries of entry_size. */
static void put_mb2_header(struct bytes *b, size_t n, uint32_t entry_size)
{
    put_le32(b, 6);                               /* type */
    put_le32(b, (uint32_t)(16 + n * entry_size)); /* size */
    put_le32(b, entry_size);                      /* entry_size */
    put_le32(b, 0);                               /* entry_version */
}

/* One Multiboot2 entry of entry_size (>= 24): base_addr, length, type, a zero
 * reserved field, then entry_size - 24 junk bytes. */
static void put_mb2_entry(struct bytes *b, uint32_t entry_size, uint64_t base, uint64_t length,
                          uint32_t type)
{
    put_le64(b, base);
    put_le64(b, length);
    put_le32(b, type);
    put_le32(b, 0);
    put_junk(b, entry_size - 24);
}

/* A Limine memmap response: the entries and the pointer array to them. */
struct limine_map {
    struct kmm_limine_memmap_entry entry[MAX_ENTRIES];
    const struct kmm_limine_memmap_entry *ptr[MAX_ENTRIES];
    uint64_t count;
    bool overflow;
};

static void put_limine(struct limine_map *m, uint64_t base, uint64_t length, uint64_t type)
{
    if (m->count >= MAX_ENTRIES) {
        m->overflow = true;
        return;
    }
    m->entry[m->count] = (struct kmm_limine_memmap_entry){base, length, type};
    m->ptr[m->count] = &m->entry[m->count];
    m->count++;
}

/* The ways a map reaches the kernel. */
enum encoding {
    MB1_SIZE20, /* Multiboot1, every size field 20 (GRUB) */
    MB1_SIZE24, /* Multiboot1, size 24: 4 junk bytes per entry */
    MB1_MIXED,  /* Multiboot1, sizes 20, 24, 21, 35 in turn: unaligned entries */
    MB2_ENTRY24,
    MB2_ENTRY32, /* Multiboot2 with 8 junk bytes per entry (a future version) */
    LIMINE,
    ENCODINGS
};

static const char *const encoding_name[ENCODINGS] = {
    "multiboot1 size 20",  "multiboot1 size 24",  "multiboot1 mixed sizes",
    "multiboot2 entry 24", "multiboot2 entry 32", "limine",
};

static uint32_t mb1_size(enum encoding enc, size_t i)
{
    static const uint32_t mixed[] = {20, 24, 21, 35};
    return enc == MB1_SIZE20 ? 20 : enc == MB1_SIZE24 ? 24 : mixed[i % N(mixed)];
}

/*
 * convert - encode map[0 .. n) (kmm types, translated to the loader's) as enc
 * and run the adapter on it with out and cap. Returns what the adapter did.
 */
static long convert(struct ktest *t, enum encoding enc, const struct kmm_region *map, size_t n,
                    struct kmm_region *out, size_t cap)
{
    struct bytes b = {.len = 0};
    struct limine_map lm = {.count = 0};
    long ret = 0;
    uint32_t entry_size = enc == MB2_ENTRY32 ? 32 : 24;
    if (enc == MB2_ENTRY24 || enc == MB2_ENTRY32)
        put_mb2_header(&b, n, entry_size);
    for (size_t i = 0; i < n; i++) {
        const struct kmm_region *r = &map[i];
        if (enc == LIMINE)
            put_limine(&lm, r->base, r->length, limine_type[r->type]);
        else if (enc == MB2_ENTRY24 || enc == MB2_ENTRY32)
            put_mb2_entry(&b, entry_size, r->base, r->length, mb_type[r->type]);
        else
            put_mb1_entry(&b, mb1_size(enc, i), r->base, r->length, mb_type[r->type]);
    }
    if (b.overflow || lm.overflow) {
        ktest_fail_at(t, __FILE__, __LINE__, "%s: a map of %zu entries does not fit",
                      encoding_name[enc], n);
        return KMM_EINVAL;
    }
    if (enc == LIMINE)
        ret = kmm_bootmap_limine(lm.ptr, lm.count, out, cap);
    else if (enc == MB2_ENTRY24 || enc == MB2_ENTRY32)
        ret = kmm_bootmap_multiboot2(b.b, out, cap);
    else
        ret = kmm_bootmap_multiboot1(b.b, (uint32_t)b.len, out, cap);
    return ret;
}

/* --- checking results ----------------------------------------------------------- */

static void fill_sentinel(struct kmm_region *out, size_t n)
{
    kt_fill(out, SENTINEL, n * sizeof(*out));
}

static bool is_sentinel(const struct kmm_region *r, size_t n)
{
    const uint8_t *p = (const uint8_t *)r;
    for (size_t i = 0; i < n * sizeof(*r); i++) {
        if (p[i] != SENTINEL)
            return false;
    }
    return true;
}

/*
 * expect_regions - an adapter returned got_n into out (cap entries, filled
 * with the sentinel before): got_n must be want_n, out[0 .. min(want_n, cap))
 * must equal want field by field, and the rest of out must be untouched.
 * Failures are reported at the caller's line, labelled what.
 */
static void expect_regions(struct ktest *t, int line, const char *what, long got_n,
                           const struct kmm_region *out, size_t cap, const struct kmm_region *want,
                           size_t want_n)
{
    if (got_n != (long)want_n)
        ktest_fail_at(t, __FILE__, line, "%s: returned %ld, want %zu", what, got_n, want_n);
    size_t written = want_n < cap ? want_n : cap;
    for (size_t i = 0; i < written; i++) {
        if (out[i].base != want[i].base || out[i].length != want[i].length ||
            out[i].type != want[i].type)
            ktest_fail_at(t, __FILE__, line,
                          "%s: region %zu: got [0x%llx +0x%llx type %u], want [0x%llx +0x%llx %s]",
                          what, i, (unsigned long long)out[i].base,
                          (unsigned long long)out[i].length, out[i].type,
                          (unsigned long long)want[i].base, (unsigned long long)want[i].length,
                          kmm_mem_type_name(want[i].type));
    }
    if (out != NULL && !is_sentinel(out + written, cap - written))
        ktest_fail_at(t, __FILE__, line, "%s: wrote past region %zu", what, written);
}

/* Converts map through enc into a fresh out and checks the result is want. */
static void expect_converted(struct ktest *t, int line, enum encoding enc,
                             const struct kmm_region *map, size_t n, const struct kmm_region *want,
                             size_t want_n)
{
    struct kmm_region out[MAX_ENTRIES];
    fill_sentinel(out, N(out));
    long got = convert(t, enc, map, n, out, N(out));
    expect_regions(t, line, encoding_name[enc], got, out, N(out), want, want_n);
}

/* A map that every encoding must return unchanged. */
#define EXPECT_SAME(t, enc, map)                                                                   \
    expect_converted((t), __LINE__, (enc), (map), N(map), (map), N(map))

/* A malformed input: the call returned got and left out (all sentinel). */
#define EXPECT_REJECTED(t, got, out)                                                               \
    do {                                                                                           \
        KT_EXPECT_EQ((t), (got), KMM_EINVAL);                                                      \
        KT_EXPECT(t, is_sentinel((out), N(out)));                                                  \
    } while (0)

/* --- the maps of real machines ------------------------------------------------------ */

KTEST(bootmap, multiboot1_buffer_written_out_by_hand_converts_field_by_field)
{
    /* Four entries as GRUB lays them out: size 20, base, length, type. */
    static const uint8_t raw[] = {
        0x14, 0x00, 0x00, 0x00,                         /* size 20 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* base 0 */
        0x00, 0xfc, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, /* length 0x9fc00 */
        0x01, 0x00, 0x00, 0x00,                         /* available */
        0x14, 0x00, 0x00, 0x00,                         /* size 20 */
        0x00, 0xfc, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, /* base 0x9fc00 */
        0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* length 0x400 */
        0x02, 0x00, 0x00, 0x00,                         /* reserved */
        0x14, 0x00, 0x00, 0x00,                         /* size 20 */
        0x00, 0x00, 0xfc, 0xff, 0x00, 0x00, 0x00, 0x00, /* base 0xfffc0000 */
        0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, /* length 0x40000 */
        0x02, 0x00, 0x00, 0x00,                         /* reserved */
        0x14, 0x00, 0x00, 0x00,                         /* size 20 */
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* base 0x100000000 */
        0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, /* length 0x180000000 */
        0x01, 0x00, 0x00, 0x00,                         /* available */
    };
    const struct kmm_region want[] = {
        {0x0, 0x9fc00, KMM_MEM_USABLE},
        {0x9fc00, 0x400, KMM_MEM_RESERVED},
        {0xfffc0000, 0x40000, KMM_MEM_RESERVED},
        {0x100000000, 0x180000000, KMM_MEM_USABLE},
    };
    struct kmm_region out[8];
    fill_sentinel(out, N(out));
    long n = kmm_bootmap_multiboot1(raw, sizeof(raw), out, N(out));
    expect_regions(t, __LINE__, "literal", n, out, N(out), want, N(want));

    /* The builder the other tests use writes exactly these bytes. */
    struct bytes b = {.len = 0};
    for (size_t i = 0; i < N(want); i++)
        put_mb1_entry(&b, 20, want[i].base, want[i].length, mb_type[want[i].type]);
    KT_ASSERT_EQ(t, b.len, sizeof(raw));
    KT_EXPECT_EQ(t, kt_cmp(b.b, raw, sizeof(raw)), 0);
}

KTEST(bootmap, multiboot2_tag_written_out_by_hand_converts_field_by_field)
{
    static const uint8_t raw[] = {
        0x06, 0x00, 0x00, 0x00,                         /* type 6: memory map */
        0x40, 0x00, 0x00, 0x00,                         /* size 16 + 2 * 24 */
        0x18, 0x00, 0x00, 0x00,                         /* entry_size 24 */
        0x00, 0x00, 0x00, 0x00,                         /* entry_version 0 */
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, /* base 0x100000 */
        0x00, 0x00, 0xee, 0x07, 0x00, 0x00, 0x00, 0x00, /* length 0x7ee0000 */
        0x01, 0x00, 0x00, 0x00,                         /* available */
        0x00, 0x00, 0x00, 0x00,                         /* reserved field */
        0x00, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, /* base 0xfd00000000 */
        0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, /* length 0x300000000 */
        0x02, 0x00, 0x00, 0x00,                         /* reserved */
        0x00, 0x00, 0x00, 0x00,                         /* reserved field */
    };
    const struct kmm_region want[] = {
        {0x100000, 0x7ee0000, KMM_MEM_USABLE},
        {0xfd00000000, 0x300000000, KMM_MEM_RESERVED},
    };
    struct kmm_region out[8];
    fill_sentinel(out, N(out));
    long n = kmm_bootmap_multiboot2(raw, out, N(out));
    expect_regions(t, __LINE__, "literal", n, out, N(out), want, N(want));

    struct bytes b = {.len = 0};
    put_mb2_header(&b, N(want), 24);
    for (size_t i = 0; i < N(want); i++)
        put_mb2_entry(&b, 24, want[i].base, want[i].length, mb_type[want[i].type]);
    KT_ASSERT_EQ(t, b.len, sizeof(raw));
    KT_EXPECT_EQ(t, kt_cmp(b.b, raw, sizeof(raw)), 0);
}

KTEST(bootmap, multiboot1_converts_qemu_pc_128m_map_exactly)
{
    EXPECT_SAME(t, MB1_SIZE20, qemu_pc_128m);
    EXPECT_SAME(t, MB1_SIZE24, qemu_pc_128m);
    EXPECT_SAME(t, MB1_MIXED, qemu_pc_128m);
}

KTEST(bootmap, multiboot1_converts_qemu_q35_8g_map_exactly)
{
    EXPECT_SAME(t, MB1_SIZE20, qemu_q35_8g);
    EXPECT_SAME(t, MB1_SIZE24, qemu_q35_8g);
    EXPECT_SAME(t, MB1_MIXED, qemu_q35_8g);
}

KTEST(bootmap, multiboot1_converts_uefi_pc_map_exactly)
{
    EXPECT_SAME(t, MB1_SIZE20, uefi_pc);
    EXPECT_SAME(t, MB1_SIZE24, uefi_pc);
    EXPECT_SAME(t, MB1_MIXED, uefi_pc);
}

KTEST(bootmap, multiboot2_converts_qemu_pc_128m_map_exactly)
{
    EXPECT_SAME(t, MB2_ENTRY24, qemu_pc_128m);
    EXPECT_SAME(t, MB2_ENTRY32, qemu_pc_128m);
}

KTEST(bootmap, multiboot2_converts_qemu_q35_8g_map_exactly)
{
    EXPECT_SAME(t, MB2_ENTRY24, qemu_q35_8g);
    EXPECT_SAME(t, MB2_ENTRY32, qemu_q35_8g);
}

KTEST(bootmap, multiboot2_converts_uefi_pc_map_exactly)
{
    EXPECT_SAME(t, MB2_ENTRY24, uefi_pc);
    EXPECT_SAME(t, MB2_ENTRY32, uefi_pc);
}

KTEST(bootmap, limine_converts_qemu_pc_128m_map_exactly)
{
    EXPECT_SAME(t, LIMINE, qemu_pc_128m);
}

KTEST(bootmap, limine_converts_qemu_q35_8g_map_exactly)
{
    EXPECT_SAME(t, LIMINE, qemu_q35_8g);
}

KTEST(bootmap, limine_converts_uefi_pc_map_exactly)
{
    EXPECT_SAME(t, LIMINE, uefi_pc);
}

KTEST(bootmap, limine_map_with_kernel_bootloader_and_framebuffer_keeps_their_types)
{
    /* What Limine reports on QEMU pc with 128 MiB and a framebuffer. */
    struct limine_map m = {.count = 0};
    put_limine(&m, 0x1000, 0x9e000, 0);      /* usable */
    put_limine(&m, 0x9fc00, 0x400, 1);       /* reserved */
    put_limine(&m, 0xf0000, 0x10000, 1);     /* reserved */
    put_limine(&m, 0x100000, 0x5f00000, 0);  /* usable */
    put_limine(&m, 0x6000000, 0x200000, 6);  /* executable and modules */
    put_limine(&m, 0x6200000, 0x1c00000, 0); /* usable */
    put_limine(&m, 0x7e00000, 0x1a0000, 5);  /* bootloader reclaimable */
    put_limine(&m, 0x7fa0000, 0x40000, 2);   /* ACPI reclaimable */
    put_limine(&m, 0x7fe0000, 0x20000, 3);   /* ACPI NVS */
    put_limine(&m, 0xfd000000, 0x300000, 7); /* framebuffer */
    put_limine(&m, 0xfffc0000, 0x40000, 4);  /* bad memory */
    const struct kmm_region want[] = {
        {0x1000, 0x9e000, KMM_MEM_USABLE},
        {0x9fc00, 0x400, KMM_MEM_RESERVED},
        {0xf0000, 0x10000, KMM_MEM_RESERVED},
        {0x100000, 0x5f00000, KMM_MEM_USABLE},
        {0x6000000, 0x200000, KMM_MEM_KERNEL},
        {0x6200000, 0x1c00000, KMM_MEM_USABLE},
        {0x7e00000, 0x1a0000, KMM_MEM_BOOTLOADER_RECLAIMABLE},
        {0x7fa0000, 0x40000, KMM_MEM_ACPI_RECLAIMABLE},
        {0x7fe0000, 0x20000, KMM_MEM_ACPI_NVS},
        {0xfd000000, 0x300000, KMM_MEM_RESERVED},
        {0xfffc0000, 0x40000, KMM_MEM_BAD},
    };
    struct kmm_region out[16];
    fill_sentinel(out, N(out));
    long n = kmm_bootmap_limine(m.ptr, m.count, out, N(out));
    expect_regions(t, __LINE__, "limine", n, out, N(out), want, N(want));
}

/* --- types ----------------------------------------------------------------------------- */

KTEST(bootmap, multiboot_types_map_to_kmm_types_and_unknown_ones_to_reserved)
{
    static const uint32_t raw[] = {1, 2, 3, 4, 5, 0, 6, 7, 12, 0x80000001, 0xffffffff};
    static const uint32_t want_type[] = {
        KMM_MEM_USABLE,   KMM_MEM_RESERVED, KMM_MEM_ACPI_RECLAIMABLE, KMM_MEM_ACPI_NVS,
        KMM_MEM_BAD,      KMM_MEM_RESERVED, KMM_MEM_RESERVED,         KMM_MEM_RESERVED,
        KMM_MEM_RESERVED, KMM_MEM_RESERVED, KMM_MEM_RESERVED,
    };
    struct kmm_region want[N(raw)];
    struct bytes mb1 = {.len = 0}, mb2 = {.len = 0};
    put_mb2_header(&mb2, N(raw), 24);
    for (size_t i = 0; i < N(raw); i++) {
        want[i] = (struct kmm_region){(i + 1) * MIB, MIB, want_type[i]};
        put_mb1_entry(&mb1, 20, want[i].base, want[i].length, raw[i]);
        put_mb2_entry(&mb2, 24, want[i].base, want[i].length, raw[i]);
    }
    struct kmm_region out[16];
    fill_sentinel(out, N(out));
    long n = kmm_bootmap_multiboot1(mb1.b, (uint32_t)mb1.len, out, N(out));
    expect_regions(t, __LINE__, "multiboot1", n, out, N(out), want, N(want));
    fill_sentinel(out, N(out));
    n = kmm_bootmap_multiboot2(mb2.b, out, N(out));
    expect_regions(t, __LINE__, "multiboot2", n, out, N(out), want, N(want));
}

KTEST(bootmap, limine_unknown_types_become_reserved_even_with_high_bits_set)
{
    /* 1 << 32 reads "usable" if the adapter truncates the type to 32 bits. */
    static const uint64_t raw[] = {7, 8, 99, UINT64_C(1) << 32, UINT64_MAX};
    struct limine_map m = {.count = 0};
    struct kmm_region want[N(raw)];
    for (size_t i = 0; i < N(raw); i++) {
        want[i] = (struct kmm_region){(i + 1) * MIB, MIB, KMM_MEM_RESERVED};
        put_limine(&m, want[i].base, want[i].length, raw[i]);
    }
    struct kmm_region out[8];
    fill_sentinel(out, N(out));
    long n = kmm_bootmap_limine(m.ptr, m.count, out, N(out));
    expect_regions(t, __LINE__, "limine", n, out, N(out), want, N(want));
}

/* --- counting, truncation, empty entries ----------------------------------------------- */

KTEST(bootmap, count_only_call_with_null_out_returns_the_region_count)
{
    for (int enc = 0; enc < ENCODINGS; enc++) {
        KT_EXPECT_EQ(t, convert(t, (enum encoding)enc, qemu_pc_128m, N(qemu_pc_128m), NULL, 0),
                     N(qemu_pc_128m));
        KT_EXPECT_EQ(t, convert(t, (enum encoding)enc, uefi_pc, N(uefi_pc), NULL, 0), N(uefi_pc));
    }
}

KTEST(bootmap, output_is_truncated_to_cap_but_the_full_count_is_returned)
{
    for (int enc = 0; enc < ENCODINGS; enc++) {
        for (size_t cap = 1; cap <= 4; cap++) {
            struct kmm_region out[8];
            fill_sentinel(out, N(out));
            long n = convert(t, (enum encoding)enc, qemu_q35_8g, N(qemu_q35_8g), out, cap);
            /* out[cap ..] must hold the sentinel: expect_regions checks all of out. */
            expect_regions(t, __LINE__, encoding_name[enc], n, out, cap, qemu_q35_8g,
                           N(qemu_q35_8g));
            KT_EXPECT(t, is_sentinel(out + cap, N(out) - cap));
        }
    }
}

KTEST(bootmap, zero_length_entries_are_skipped_and_not_counted)
{
    const struct kmm_region in[] = {
        {0x0, 0x9fc00, KMM_MEM_USABLE}, {0x9fc00, 0, KMM_MEM_RESERVED},
        {0x100000, 0, KMM_MEM_USABLE},  {0x100000, 0x7ee0000, KMM_MEM_USABLE},
        {0xfffc0000, 0, KMM_MEM_BAD},
    };
    const struct kmm_region want[] = {
        {0x0, 0x9fc00, KMM_MEM_USABLE},
        {0x100000, 0x7ee0000, KMM_MEM_USABLE},
    };
    const struct kmm_region only_empty[] = {{0x1000, 0, KMM_MEM_USABLE}};
    for (int enc = 0; enc < ENCODINGS; enc++) {
        expect_converted(t, __LINE__, (enum encoding)enc, in, N(in), want, N(want));
        expect_converted(t, __LINE__, (enum encoding)enc, only_empty, N(only_empty), NULL, 0);
    }
}

KTEST(bootmap, empty_maps_convert_to_no_regions)
{
    struct kmm_region out[4];
    fill_sentinel(out, N(out));
    static const uint8_t byte = 0;
    KT_EXPECT_EQ(t, kmm_bootmap_multiboot1(NULL, 0, out, N(out)), 0);
    KT_EXPECT_EQ(t, kmm_bootmap_multiboot1(&byte, 0, out, N(out)), 0);
    KT_EXPECT_EQ(t, kmm_bootmap_limine(NULL, 0, out, N(out)), 0);
    KT_EXPECT_EQ(t, kmm_bootmap_limine(NULL, 0, NULL, 0), 0);
    for (int enc = 0; enc < ENCODINGS; enc++)
        KT_EXPECT_EQ(t, convert(t, (enum encoding)enc, NULL, 0, out, N(out)), 0);
    KT_EXPECT(t, is_sentinel(out, N(out)));
}

/* --- where the input sits ---------------------------------------------------------------- */

KTEST(bootmap, maps_at_odd_addresses_are_read_byte_by_byte)
{
    /* Alignment is the loader's business; a 64-bit load through a struct
     * pointer here would trap under -fsanitize=alignment. */
    struct bytes mb1 = {.len = 0}, mb2 = {.len = 0};
    put_mb2_header(&mb2, N(qemu_pc_128m), 24);
    for (size_t i = 0; i < N(qemu_pc_128m); i++) {
        const struct kmm_region *r = &qemu_pc_128m[i];
        put_mb1_entry(&mb1, mb1_size(MB1_MIXED, i), r->base, r->length, mb_type[r->type]);
        put_mb2_entry(&mb2, 24, r->base, r->length, mb_type[r->type]);
    }
    KT_ASSERT(t, !mb1.overflow && !mb2.overflow);
    for (size_t shift = 1; shift < 8; shift++) {
        uint8_t buf[BYTES_CAP + 8];
        struct kmm_region out[8];
        for (size_t i = 0; i < mb1.len; i++)
            buf[shift + i] = mb1.b[i];
        fill_sentinel(out, N(out));
        long n = kmm_bootmap_multiboot1(buf + shift, (uint32_t)mb1.len, out, N(out));
        expect_regions(t, __LINE__, "multiboot1", n, out, N(out), qemu_pc_128m, N(qemu_pc_128m));
        for (size_t i = 0; i < mb2.len; i++)
            buf[shift + i] = mb2.b[i];
        fill_sentinel(out, N(out));
        n = kmm_bootmap_multiboot2(buf + shift, out, N(out));
        expect_regions(t, __LINE__, "multiboot2", n, out, N(out), qemu_pc_128m, N(qemu_pc_128m));
    }
}

KTEST(bootmap, multiboot2_entry_version_is_not_checked)
{
    struct bytes b = {.len = 0};
    put_mb2_header(&b, 1, 32);
    b.b[12] = 1; /* entry_version 1 */
    put_mb2_entry(&b, 32, 0x100000, MIB, 1);
    const struct kmm_region want[] = {{0x100000, MIB, KMM_MEM_USABLE}};
    struct kmm_region out[2];
    fill_sentinel(out, N(out));
    long n = kmm_bootmap_multiboot2(b.b, out, N(out));
    expect_regions(t, __LINE__, "multiboot2", n, out, N(out), want, N(want));
}

/* --- KMM_PHYS_LIMIT ---------------------------------------------------------------------- */

KTEST(bootmap, entries_past_the_physical_limit_are_clamped_or_dropped)
{
    const uint64_t lim = KMM_PHYS_LIMIT;
    const struct kmm_region in[] = {
        {0x1000, 0x1000, KMM_MEM_USABLE},                  /* kept */
        {lim - 0x2000, 0x2000, KMM_MEM_RESERVED},          /* ends at the limit: kept */
        {lim - 0x1000, 0x2000, KMM_MEM_USABLE},            /* crosses it: clamped */
        {lim, 0x1000, KMM_MEM_RESERVED},                   /* starts at it: dropped */
        {lim + 0x5000, 0x1000, KMM_MEM_USABLE},            /* above it: dropped */
        {UINT64_MAX - 0xfff, 0x2000, KMM_MEM_RESERVED},    /* wraps, above: dropped */
        {0x100000, UINT64_MAX, KMM_MEM_ACPI_NVS},          /* wraps past 2^64: clamped */
        {0x200000, UINT64_MAX - 0x1fffff, KMM_MEM_USABLE}, /* ends at exactly 2^64 */
    };
    const struct kmm_region want[] = {
        {0x1000, 0x1000, KMM_MEM_USABLE},           {lim - 0x2000, 0x2000, KMM_MEM_RESERVED},
        {lim - 0x1000, 0x1000, KMM_MEM_USABLE},     {0x100000, lim - 0x100000, KMM_MEM_ACPI_NVS},
        {0x200000, lim - 0x200000, KMM_MEM_USABLE},
    };
    for (int enc = 0; enc < ENCODINGS; enc++) {
        struct kmm_region out[8];
        fill_sentinel(out, N(out));
        long n = convert(t, (enum encoding)enc, in, N(in), out, N(out));
        expect_regions(t, __LINE__, encoding_name[enc], n, out, N(out), want, N(want));
        KT_EXPECT_EQ(t, kmm_memmap_validate(out, n > 0 ? (size_t)n : 0), KMM_MEMMAP_VALID);
    }
}

/* --- malformed input ------------------------------------------------------------------------ */

KTEST(bootmap, malformed_multiboot1_maps_are_rejected_and_out_is_untouched)
{
    struct kmm_region out[4];
    fill_sentinel(out, N(out));
    struct bytes ok = {.len = 0};
    put_mb1_entry(&ok, 20, 0x100000, MIB, 1);
    put_mb1_entry(&ok, 24, 0x200000, MIB, 1);
    KT_ASSERT_EQ(t, ok.len, 24 + 28);
    KT_ASSERT_EQ(t, kmm_bootmap_multiboot1(ok.b, 52, NULL, 0), 2);

    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(NULL, 24, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(ok.b, 52, NULL, 1), out);
    /* The second entry runs past length: by one byte, by its 4 junk bytes,
     * by all of its body, or its size field itself is cut; a lone partial
     * size field. The first entry is fine and is still not written: the
     * whole map is checked first. */
    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(ok.b, 51, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(ok.b, 48, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(ok.b, 28, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(ok.b, 25, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot1(ok.b, 3, out, N(out)), out);

    static const uint32_t bad_sizes[] = {0, 4, 19, 0xffffffec, 0xffffffff};
    for (size_t i = 0; i < N(bad_sizes); i++) {
        struct bytes b = {.len = 0};
        put_mb1_entry(&b, 20, 0x100000, MIB, 1);
        put_le32(&b, bad_sizes[i]); /* the second entry's size field */
        put_le64(&b, 0x200000);
        put_le64(&b, MIB);
        put_le32(&b, 1);
        KT_ASSERT(t, !b.overflow);
        EXPECT_REJECTED(t, kmm_bootmap_multiboot1(b.b, (uint32_t)b.len, out, N(out)), out);
    }
}

KTEST(bootmap, malformed_multiboot2_tags_are_rejected_and_out_is_untouched)
{
    struct kmm_region out[4];
    fill_sentinel(out, N(out));
    EXPECT_REJECTED(t, kmm_bootmap_multiboot2(NULL, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot2(NULL, NULL, 0), out);

    struct bytes ok = {.len = 0};
    put_mb2_header(&ok, 2, 24);
    put_mb2_entry(&ok, 24, 0x100000, MIB, 1);
    put_mb2_entry(&ok, 24, 0x200000, MIB, 1);
    KT_ASSERT_EQ(t, kmm_bootmap_multiboot2(ok.b, NULL, 0), 2);
    EXPECT_REJECTED(t, kmm_bootmap_multiboot2(ok.b, NULL, 2), out);

    /* {type, size, entry_size} of a tag followed by two 24-byte entries' worth of bytes */
    static const uint32_t bad[][3] = {
        {5, 64, 24},          /* not the memory map tag */
        {0, 64, 24},          /* the end tag */
        {6, 8, 24},           /* shorter than its own header */
        {6, 0, 24},           /* size 0 */
        {6, 64, 0},           /* entry_size 0 */
        {6, 64, 16},          /* entry_size below 24 */
        {6, 64, 20},          /* entry_size below 24, not a multiple of 8 */
        {6, 16 + 56, 28},     /* whole entries of 28: not a multiple of 8 */
        {6, 16 + 24 + 8, 24}, /* a trailing partial entry */
        {6, 16 + 24 - 1, 24}, /* one byte short of a whole entry */
        {6, 17, 24},          /* one byte of an entry */
    };
    for (size_t i = 0; i < N(bad); i++) {
        struct bytes b = {.len = 0};
        put_le32(&b, bad[i][0]);
        put_le32(&b, bad[i][1]);
        put_le32(&b, bad[i][2]);
        put_le32(&b, 0);
        put_mb2_entry(&b, 24, 0x100000, MIB, 1);
        put_mb2_entry(&b, 24, 0x200000, MIB, 1);
        put_junk(&b, 16);
        KT_ASSERT(t, !b.overflow);
        long n = kmm_bootmap_multiboot2(b.b, out, N(out));
        if (n != KMM_EINVAL)
            ktest_diag(t, "tag {type %u size %u entry_size %u}", bad[i][0], bad[i][1], bad[i][2]);
        EXPECT_REJECTED(t, n, out);
    }

    /* The smallest well-formed tag: no entries. */
    struct bytes empty = {.len = 0};
    put_mb2_header(&empty, 0, 24);
    KT_EXPECT_EQ(t, kmm_bootmap_multiboot2(empty.b, out, N(out)), 0);
    KT_EXPECT(t, is_sentinel(out, N(out)));
}

KTEST(bootmap, malformed_limine_maps_are_rejected_and_out_is_untouched)
{
    struct kmm_region out[4];
    fill_sentinel(out, N(out));
    struct limine_map m = {.count = 0};
    put_limine(&m, 0x1000, MIB, 0);
    put_limine(&m, 0x200000, MIB, 0);
    put_limine(&m, 0x300000, MIB, 0);
    KT_ASSERT_EQ(t, kmm_bootmap_limine(m.ptr, m.count, NULL, 0), 3);

    EXPECT_REJECTED(t, kmm_bootmap_limine(NULL, 3, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_limine(m.ptr, m.count, NULL, 1), out);
    /* A count too large to return: rejected before a pointer is read. Every
     * pointer here is good, so only a read past the array could find a NULL
     * (and AddressSanitizer reports that read). */
    const struct kmm_limine_memmap_entry *good[4] = {&m.entry[0], &m.entry[1], &m.entry[2],
                                                     &m.entry[0]};
    EXPECT_REJECTED(t, kmm_bootmap_limine(good, UINT64_C(1) << 63, out, N(out)), out);
    EXPECT_REJECTED(t, kmm_bootmap_limine(good, UINT64_MAX, out, N(out)), out);
    /* a NULL entry after good ones: the good ones are not written either */
    m.ptr[2] = NULL;
    EXPECT_REJECTED(t, kmm_bootmap_limine(m.ptr, m.count, out, N(out)), out);
    m.ptr[2] = &m.entry[2];
    m.ptr[0] = NULL;
    EXPECT_REJECTED(t, kmm_bootmap_limine(m.ptr, m.count, out, N(out)), out);
}

/* --- end to end ------------------------------------------------------------------------------- */

KTEST(bootmap, qemu_pc_128m_map_resolves_without_page_zero_and_with_page_aligned_usable_edges)
{
    const struct kmm_region want[] = {
        {0x1000, 0x9e000, KMM_MEM_USABLE}, /* page 0 gone, 0x9f000..0x9fc00 a partial tail */
        {0x9fc00, 0x400, KMM_MEM_RESERVED},      {0xf0000, 0x10000, KMM_MEM_RESERVED},
        {0x100000, 0x7ee0000, KMM_MEM_USABLE},   {0x7fe0000, 0x20000, KMM_MEM_RESERVED},
        {0xfffc0000, 0x40000, KMM_MEM_RESERVED},
    };
    for (int enc = 0; enc < ENCODINGS; enc++) {
        struct kmm_region regions[MAX_ENTRIES], map[MAX_ENTRIES];
        fill_sentinel(regions, N(regions));
        long n = convert(t, (enum encoding)enc, qemu_pc_128m, N(qemu_pc_128m), regions, N(regions));
        KT_ASSERT_EQ(t, n, N(qemu_pc_128m));
        KT_EXPECT_EQ(t, kmm_memmap_validate(regions, (size_t)n), KMM_MEMMAP_VALID);
        fill_sentinel(map, N(map));
        size_t m = kmm_memmap_resolve(regions, (size_t)n, map, N(map));
        expect_regions(t, __LINE__, encoding_name[enc], (long)m, map, N(map), want, N(want));

        struct kmm_memmap_totals tot;
        kmm_memmap_totals(map, m, &tot);
        KT_EXPECT_EQ(t, tot.usable_pages, (0x9e000 + 0x7ee0000) / KMM_PAGE_SIZE);
        KT_EXPECT_EQ(t, tot.phys_end, 4 * GIB);
    }
}

KTEST(bootmap, qemu_q35_8g_map_resolves_with_six_gib_above_4g)
{
    struct kmm_region regions[MAX_ENTRIES], map[MAX_ENTRIES];
    fill_sentinel(regions, N(regions));
    long n = convert(t, MB2_ENTRY24, qemu_q35_8g, N(qemu_q35_8g), regions, N(regions));
    KT_ASSERT_EQ(t, n, N(qemu_q35_8g));
    size_t m = kmm_memmap_resolve(regions, (size_t)n, map, N(map));
    KT_ASSERT_EQ(t, m, N(qemu_q35_8g)); /* nothing overlaps or touches */
    KT_EXPECT_EQ(t, map[0].base, 0x1000);
    KT_EXPECT_EQ(t, map[0].length, 0x9e000);
    for (size_t i = 1; i < m; i++) {
        KT_EXPECT_EQ(t, map[i].base, qemu_q35_8g[i].base);
        KT_EXPECT_EQ(t, map[i].length, qemu_q35_8g[i].length);
        KT_EXPECT_EQ(t, map[i].type, qemu_q35_8g[i].type);
    }
    struct kmm_memmap_totals tot;
    kmm_memmap_totals(map, m, &tot);
    KT_EXPECT_EQ(t, tot.bytes[KMM_MEM_USABLE], 0x9e000 + 0x7fedf000 + 6 * GIB);
    KT_EXPECT_EQ(t, tot.phys_end, 0xfd00000000 + 0x300000000);
}
