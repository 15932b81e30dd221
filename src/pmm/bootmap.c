/*
 * bootmap.c - boot loaders' memory maps turned into kmm's region list
 * (layouts, type tables and contracts in kmm/bootmap.h).
 *
 * Implementation subtleties:
 *   - Multiboot fields are read byte by byte (load_le32/load_le64), never
 *     through a struct pointer: a Multiboot1 entry starts wherever the one
 *     before it says, so a struct access could be misaligned (undefined
 *     behaviour, and a trap under -fsanitize=alignment). x86_64 is little
 *     endian, but the loads do not rely on it.
 *   - Check, then copy: each adapter validates the whole input (*_check)
 *     before it writes the first region, so malformed input leaves out as it
 *     was. The copying walk then needs no error paths.
 *   - Offsets are uint64_t: a 32-bit size field from the firmware added to a
 *     32-bit offset can pass 2^32, which must read as "past the end", not
 *     wrap around to a small offset.
 *   - No instance, no port, no internal.h: the adapters run before kmm_init()
 *     and depend on nothing but the public headers.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kmm/bootmap.h>
#include <kmm/kmm.h>

/* LONG_MAX, the largest count an adapter can return. Not from limits.h: GCC's
 * copy chains to the C library's, which the freestanding build (-nostdinc)
 * does not have. long has no padding bits on any ABI kmm targets. */
#define LONG_MAX_U64 ((uint64_t)(~0UL >> 1))

/* Multiboot1: a u32 size field, then size >= 20 bytes (base, length, type). */
#define MB1_SIZE_FIELD   4
#define MB1_ENTRY_MIN    20
/* Multiboot2 tag 6: a 16-byte header, then entries of entry_size >= 24 bytes,
 * a multiple of 8. */
#define MB2_HEADER       16
#define MB2_ENTRY_MIN    24
#define MB2_ENTRY_ALIGN  8
#define MB2_OFF_TYPE     0
#define MB2_OFF_SIZE     4
#define MB2_OFF_ENTRY_SZ 8

/* The Limine protocol's entry layout, which callers cast the loader's to. */
_Static_assert(sizeof(struct kmm_limine_memmap_entry) == 24, "limine entry is 24 bytes");
_Static_assert(offsetof(struct kmm_limine_memmap_entry, length) == 8, "limine length at +8");
_Static_assert(offsetof(struct kmm_limine_memmap_entry, type) == 16, "limine type at +16");

/* The little-endian u32 at p; p needs no alignment. */
static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The little-endian u64 at p; p needs no alignment. */
static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

/* Where converted regions go: out[0 .. cap) receives the first ones, n counts
 * all of them. */
struct region_list {
    struct kmm_region *out;
    size_t cap;
    size_t n;
};

/*
 * add_region - append [base, base + length) of kmm type type to l: skipped if
 * empty or at or above KMM_PHYS_LIMIT, cut at KMM_PHYS_LIMIT if it ends above
 * it (or wraps past 2^64), written only while there is room, always counted.
 */
static void add_region(struct region_list *l, uint64_t base, uint64_t length, uint32_t type)
{
    if (length == 0 || base >= KMM_PHYS_LIMIT)
        return;
    if (length > KMM_PHYS_LIMIT - base)
        length = KMM_PHYS_LIMIT - base;
    if (l->n < l->cap)
        l->out[l->n] = (struct kmm_region){.base = base, .length = length, .type = type};
    l->n++;
}

/* The kmm type of a Multiboot (1 or 2) type; unknown ones are reserved. */
static uint32_t multiboot_type(uint32_t type)
{
    switch (type) {
    case KMM_MB_MEM_AVAILABLE:
        return KMM_MEM_USABLE;
    case KMM_MB_MEM_ACPI_RECLAIMABLE:
        return KMM_MEM_ACPI_RECLAIMABLE;
    case KMM_MB_MEM_NVS:
        return KMM_MEM_ACPI_NVS;
    case KMM_MB_MEM_BADRAM:
        return KMM_MEM_BAD;
    default:
        return KMM_MEM_RESERVED;
    }
}

/* The kmm type of a Limine type; unknown ones (and the framebuffer) are
 * reserved. */
static uint32_t limine_type(uint64_t type)
{
    switch (type) {
    case KMM_LIMINE_MEMMAP_USABLE:
        return KMM_MEM_USABLE;
    case KMM_LIMINE_MEMMAP_ACPI_RECLAIMABLE:
        return KMM_MEM_ACPI_RECLAIMABLE;
    case KMM_LIMINE_MEMMAP_ACPI_NVS:
        return KMM_MEM_ACPI_NVS;
    case KMM_LIMINE_MEMMAP_BAD_MEMORY:
        return KMM_MEM_BAD;
    case KMM_LIMINE_MEMMAP_BOOTLOADER_RECLAIMABLE:
        return KMM_MEM_BOOTLOADER_RECLAIMABLE;
    case KMM_LIMINE_MEMMAP_EXECUTABLE_AND_MODULES:
        return KMM_MEM_KERNEL;
    default:
        return KMM_MEM_RESERVED;
    }
}

/*
 * mb1_check - whether the length bytes at p are whole Multiboot1 entries:
 * each has its 4-byte size field and size >= 20 bytes before length. p may be
 * NULL iff length is 0. Reads only [p, p + length).
 */
static bool mb1_check(const uint8_t *p, uint32_t length)
{
    uint64_t off = 0;
    while (off < length) {
        if (length - off < MB1_SIZE_FIELD)
            return false;
        uint32_t size = load_le32(p + off);
        if (size < MB1_ENTRY_MIN || size > length - off - MB1_SIZE_FIELD)
            return false;
        off += MB1_SIZE_FIELD + (uint64_t)size;
    }
    return true;
}

long kmm_bootmap_multiboot1(const void *mmap, uint32_t length, struct kmm_region *out, size_t cap)
{
    const uint8_t *p = mmap;
    if ((p == NULL && length > 0) || (out == NULL && cap > 0) || !mb1_check(p, length))
        return KMM_EINVAL;
    struct region_list l = {.out = out, .cap = cap};
    for (uint64_t off = 0; off < length; off += MB1_SIZE_FIELD + (uint64_t)load_le32(p + off)) {
        const uint8_t *e = p + off + MB1_SIZE_FIELD; /* base_addr, length, type */
        add_region(&l, load_le64(e), load_le64(e + 8), multiboot_type(load_le32(e + 16)));
    }
    return (long)l.n;
}

/*
 * mb2_check - whether the 16-byte header at tag describes a well-formed
 * memory map tag: type 6, size >= 16, entry_size >= 24 and a multiple of 8,
 * and size - 16 a whole number of entries. Reads only the header, and only
 * the part the tag's size says is there.
 */
static bool mb2_check(const uint8_t *tag)
{
    uint32_t type = load_le32(tag + MB2_OFF_TYPE);
    uint32_t size = load_le32(tag + MB2_OFF_SIZE);
    if (type != KMM_MB2_TAG_TYPE_MMAP || size < MB2_HEADER)
        return false; /* entry_size may lie past a tag this short */
    uint32_t entry_size = load_le32(tag + MB2_OFF_ENTRY_SZ);
    return entry_size >= MB2_ENTRY_MIN && entry_size % MB2_ENTRY_ALIGN == 0 &&
           (size - MB2_HEADER) % entry_size == 0;
}

long kmm_bootmap_multiboot2(const void *tag, struct kmm_region *out, size_t cap)
{
    const uint8_t *p = tag;
    if (p == NULL || (out == NULL && cap > 0) || !mb2_check(p))
        return KMM_EINVAL;
    uint32_t size = load_le32(p + MB2_OFF_SIZE);
    uint32_t entry_size = load_le32(p + MB2_OFF_ENTRY_SZ);
    struct region_list l = {.out = out, .cap = cap};
    for (uint64_t off = MB2_HEADER; off < size; off += entry_size) {
        const uint8_t *e = p + off; /* base_addr, length, type, reserved */
        add_region(&l, load_le64(e), load_le64(e + 8), multiboot_type(load_le32(e + 16)));
    }
    return (long)l.n;
}

/* limine_check - whether entries[0 .. count) are all there and count can be
 * returned as a long. Reads only the pointer array. */
static bool limine_check(const struct kmm_limine_memmap_entry *const *entries, uint64_t count)
{
    if (count > LONG_MAX_U64 || (entries == NULL && count > 0))
        return false;
    for (uint64_t i = 0; i < count; i++) {
        if (entries[i] == NULL)
            return false;
    }
    return true;
}

long kmm_bootmap_limine(const struct kmm_limine_memmap_entry *const *entries, uint64_t count,
                        struct kmm_region *out, size_t cap)
{
    if ((out == NULL && cap > 0) || !limine_check(entries, count))
        return KMM_EINVAL;
    struct region_list l = {.out = out, .cap = cap};
    for (uint64_t i = 0; i < count; i++) {
        const struct kmm_limine_memmap_entry *e = entries[i];
        add_region(&l, e->base, e->length, limine_type(e->type));
    }
    return (long)l.n;
}
