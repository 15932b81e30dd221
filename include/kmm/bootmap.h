/*
 * kmm/bootmap.h - boot loaders' memory maps turned into kmm's region list.
 *
 * Each adapter reads one loader's map where the loader left it and writes
 * struct kmm_region entries (kmm/memmap.h), in the loader's order, ready for
 * kmm_config.regions. They do not sort, merge or align: kmm_memmap_resolve()
 * and kmm_init() do that.
 *
 *   Multiboot1   mmap_addr, mmap_length        entry = size field + size bytes
 *   +0 u32 size   +4 u64 base_addr   +12 u64 length   +20 u32 type   [+24 ...]
 *   |<- 4 ->|<------------------- size bytes (>= 20) -------------------->|
 *
 *   Multiboot2   the memory map tag (type 6)   entries stepped by entry_size
 *   +0 u32 type=6  +4 u32 size  +8 u32 entry_size  +12 u32 entry_version
 *   +16 entry 0: u64 base_addr  u64 length  u32 type  u32 reserved  [pad]
 *   +16 + entry_size: entry 1 ...              up to +size (whole entries)
 *
 *   Limine       memmap response: entries[0 .. count) point at
 *                struct kmm_limine_memmap_entry
 *
 * Types:
 *   Multiboot 1 and 2     kmm                      Limine
 *   1 available           KMM_MEM_USABLE           0 usable
 *   3 ACPI reclaimable    KMM_MEM_ACPI_RECLAIMABLE 2 ACPI reclaimable
 *   4 ACPI NVS            KMM_MEM_ACPI_NVS         3 ACPI NVS
 *   5 bad RAM             KMM_MEM_BAD              4 bad memory
 *   -                     KMM_MEM_BOOTLOADER_RECL. 5 bootloader reclaimable
 *   -                     KMM_MEM_KERNEL           6 executable and modules
 *   anything else         KMM_MEM_RESERVED         1 reserved, 7 framebuffer,
 *                                                  anything else
 *   (unknown types become reserved: memory nobody explained is never used.)
 *
 * Rules common to the three adapters:
 *   - An entry of length 0 is skipped and not counted.
 *   - Addresses are clamped at KMM_PHYS_LIMIT (2^52, the most x86_64 can
 *     address): an entry that starts at or above it is dropped (not counted);
 *     one that ends above it, or whose base + length wraps past 2^64, is cut
 *     to end at KMM_PHYS_LIMIT. No memory can exist there, so the firmware's
 *     claim is wrong or describes nothing; clamping rather than rejecting the
 *     whole map keeps a machine with one odd entry bootable, and every region
 *     written passes kmm_memmap_validate().
 *   - The return value n is the number of regions the map holds; only the
 *     first min(n, cap) are written to out. Call once with out NULL and cap 0 to
 *     learn the size, then again with room for it.
 *   - Malformed input returns KMM_EINVAL and writes nothing: the whole input
 *     is checked before the first region is written.
 *   - The input is read, never written; it may sit at any alignment the
 *     loader's protocol allows (read byte-wise). Pure (no instance, no locks,
 *     no allocation): any context, IRQs off included, usable before kmm_init().
 *     O(n) in the number of entries; the input is read twice (check, copy).
 */
#ifndef KMM_BOOTMAP_H
#define KMM_BOOTMAP_H

#include <stddef.h>
#include <stdint.h>

#include <kmm/kmm.h>
#include <kmm/memmap.h>

/* Multiboot memory types (Multiboot1 mmap entries and Multiboot2 tag 6). */
#define KMM_MB_MEM_AVAILABLE        1
#define KMM_MB_MEM_RESERVED         2
#define KMM_MB_MEM_ACPI_RECLAIMABLE 3
#define KMM_MB_MEM_NVS              4
#define KMM_MB_MEM_BADRAM           5

/* The Multiboot2 memory map tag's type. */
#define KMM_MB2_TAG_TYPE_MMAP 6

/* Limine memory map entry types (the Limine boot protocol, LIMINE_MEMMAP_*). */
#define KMM_LIMINE_MEMMAP_USABLE                 0
#define KMM_LIMINE_MEMMAP_RESERVED               1
#define KMM_LIMINE_MEMMAP_ACPI_RECLAIMABLE       2
#define KMM_LIMINE_MEMMAP_ACPI_NVS               3
#define KMM_LIMINE_MEMMAP_BAD_MEMORY             4
#define KMM_LIMINE_MEMMAP_BOOTLOADER_RECLAIMABLE 5
#define KMM_LIMINE_MEMMAP_EXECUTABLE_AND_MODULES 6
#define KMM_LIMINE_MEMMAP_FRAMEBUFFER            7

/* One entry of a Limine memory map response: the layout of limine.h's
 * struct limine_memmap_entry, so a kernel passes its response's entries as
 * (const struct kmm_limine_memmap_entry *const *)response->entries. */
struct kmm_limine_memmap_entry {
    uint64_t base;
    uint64_t length;
    uint64_t type; /* KMM_LIMINE_MEMMAP_* */
};

/*
 * kmm_bootmap_multiboot1 - convert a Multiboot1 memory map: the length bytes
 * at mmap (the info structure's mmap_addr and mmap_length, as the kernel can
 * read them). Entries follow one another with no gap: the next one starts at
 * entry + size + 4 (size does not count itself); bytes past the first 20 of
 * an entry are skipped. mmap needs no alignment.
 *
 * Returns n, the number of regions the map holds (see the common rules
 * above), writing the first min(n, cap) to out, or KMM_EINVAL (nothing written)
 * iff mmap is NULL with length > 0; out is NULL with cap > 0; an entry's size
 * field is below 20; or an entry (its size field included) runs past length.
 * length 0 is an empty map (returns 0).
 */
long kmm_bootmap_multiboot1(const void *mmap, uint32_t length, struct kmm_region *out, size_t cap);

/*
 * kmm_bootmap_multiboot2 - convert the Multiboot2 memory map tag at tag (its
 * type field; the tag need not be aligned). Entries are stepped by
 * entry_size, which future versions may grow: bytes past the first 24 of an
 * entry are skipped. entry_version is not checked (the protocol keeps the
 * layout of the first 24 bytes across versions).
 *
 * Returns n, the number of regions the map holds (see the common rules
 * above), writing the first min(n, cap) to out, or KMM_EINVAL (nothing written)
 * iff tag is NULL; out is NULL with cap > 0; the tag's type is not 6; its size
 * is below 16; entry_size is below 24 or not a multiple of 8; or size - 16 is
 * not a whole number of entries (a trailing partial entry). A tag of size 16
 * is an empty map (returns 0).
 */
long kmm_bootmap_multiboot2(const void *tag, struct kmm_region *out, size_t cap);

/*
 * kmm_bootmap_limine - convert a Limine memory map response: entries[0 ..
 * count) (the response's entries and entry_count).
 *
 * Returns n, the number of regions the map holds (see the common rules
 * above), writing the first min(n, cap) to out, or KMM_EINVAL (nothing written)
 * iff entries is NULL with count > 0; any entries[i] is NULL; out is NULL with
 * cap > 0; or count exceeds LONG_MAX (it could not be returned). count 0 is
 * an empty map (returns 0).
 */
long kmm_bootmap_limine(const struct kmm_limine_memmap_entry *const *entries, uint64_t count,
                        struct kmm_region *out, size_t cap);

#endif /* KMM_BOOTMAP_H */
