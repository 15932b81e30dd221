/*
 * acpi.c - the RSDP, the root table and the MADT (contract: acpi.h).
 *
 *   RSDP "RSD PTR " -> RSDT (32-bit entries) or, revision >= 2, XSDT (64-bit)
 *                      -> tables, each a 36-byte header then its body
 *   MADT "APIC": header, local APIC address, flags, then entries (type, length)
 */
#include <kmm/kmm.h>

#include "acpi.h"
#include "console.h"
#include "kernel.h"

#define RSDP_V1_LEN       20
#define RSDP_RSDT_OFF     16
#define RSDP_REV_OFF      15
#define RSDP_XSDT_OFF     24
#define SDT_HEADER_LEN    36
#define SDT_LENGTH_OFF    4
#define MADT_ENTRIES_OFF  44
#define MADT_LAPIC        0
#define MADT_X2APIC       9
#define MADT_LAPIC_FLAGS  4 /* offset of the flags in a type 0 entry */
#define MADT_X2APIC_FLAGS 8 /* offset of the flags in a type 9 entry */
#define MADT_ENABLED      1u
#define EBDA_SEGMENT_PTR  0x40E /* the BDA word holding the EBDA's segment */
#define EBDA_SCAN_LEN     1024
#define BIOS_AREA_START   0xE0000
#define BIOS_AREA_END     0x100000
#define RSDP_ALIGN        16
#define TABLE_MAX_LEN     (UINT64_C(16) << 20) /* larger is a broken header */

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static bool checksum_ok(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return sum == 0;
}

/* The table at pa, checked (inside the early direct map, sane length,
 * checksum), or NULL. */
static const uint8_t *table_at(uint64_t pa)
{
    if (pa == 0 || pa >= EARLY_DIRECT_BYTES || EARLY_DIRECT_BYTES - pa < SDT_HEADER_LEN)
        return NULL;
    const uint8_t *t = phys_to_virt(pa);
    uint32_t len = rd32(t + SDT_LENGTH_OFF);
    if (len < SDT_HEADER_LEN || len > TABLE_MAX_LEN || len > EARLY_DIRECT_BYTES - pa ||
        !checksum_ok(t, len))
        return NULL;
    return t;
}

static const uint8_t *scan_rsdp(uint64_t from, uint64_t to)
{
    for (uint64_t pa = from; pa + RSDP_V1_LEN <= to; pa += RSDP_ALIGN) {
        const uint8_t *p = phys_to_virt(pa);
        if (memcmp(p, "RSD PTR ", 8) == 0 && checksum_ok(p, RSDP_V1_LEN))
            return p;
    }
    return NULL;
}

/* Counts the enabled processors of the MADT t. */
static unsigned madt_cpus(const uint8_t *t)
{
    uint32_t len = rd32(t + SDT_LENGTH_OFF);
    unsigned cpus = 0;
    for (uint32_t off = MADT_ENTRIES_OFF; off + 2 <= len;) {
        uint8_t type = t[off], elen = t[off + 1];
        if (elen < 2 || elen > len - off)
            break;
        if (type == MADT_LAPIC && elen >= MADT_LAPIC_FLAGS + 4 &&
            (rd32(t + off + MADT_LAPIC_FLAGS) & MADT_ENABLED))
            cpus++;
        if (type == MADT_X2APIC && elen >= MADT_X2APIC_FLAGS + 4 &&
            (rd32(t + off + MADT_X2APIC_FLAGS) & MADT_ENABLED))
            cpus++;
        off += elen;
    }
    return cpus;
}

static void sig_copy(char out[5], const uint8_t *t)
{
    memcpy(out, t, 4);
    out[4] = '\0';
}

void acpi_scan(struct boot_info *bi, struct acpi_info *out)
{
    memset(out, 0, sizeof(*out));
    const uint8_t *rsdp = bi->rsdp_len >= RSDP_V1_LEN ? bi->rsdp : NULL;
    if (!rsdp) {
        const uint16_t *ebda_seg = phys_to_virt(EBDA_SEGMENT_PTR);
        uint64_t ebda = (uint64_t)*ebda_seg << 4;
        if (ebda >= 0x400 && ebda < BIOS_AREA_START)
            rsdp = scan_rsdp(ebda, ebda + EBDA_SCAN_LEN);
        if (!rsdp)
            rsdp = scan_rsdp(BIOS_AREA_START, BIOS_AREA_END);
        if (rsdp)
            out->rsdp_pa = (uint64_t)(uintptr_t)rsdp - HHDM_BASE;
    }
    if (!rsdp) {
        kprintf("# acpi: no RSDP\n");
        return;
    }
    bool xsdt =
        rsdp[RSDP_REV_OFF] >= 2 && bi->rsdp_len != RSDP_V1_LEN && rd64(rsdp + RSDP_XSDT_OFF) != 0;
    uint64_t root_pa = xsdt ? rd64(rsdp + RSDP_XSDT_OFF) : rd32(rsdp + RSDP_RSDT_OFF);
    const uint8_t *root = table_at(root_pa);
    if (!root) {
        kprintf("# acpi: the root table at 0x%llx is unreadable or broken\n",
                (unsigned long long)root_pa);
        return;
    }
    out->root_pa = root_pa;
    sig_copy(out->root_sig, root);
    uint32_t root_len = rd32(root + SDT_LENGTH_OFF);
    bootinfo_reserve(bi, root_pa, root_len, KMM_MEM_ACPI_RECLAIMABLE);
    size_t entry = xsdt ? 8 : 4;
    for (uint32_t off = SDT_HEADER_LEN; off + entry <= root_len; off += (uint32_t)entry) {
        uint64_t pa = xsdt ? rd64(root + off) : rd32(root + off);
        const uint8_t *t = table_at(pa);
        if (!t) {
            kprintf("# acpi: table at 0x%llx unreadable or broken, skipped\n",
                    (unsigned long long)pa);
            continue;
        }
        if (out->table_count < ACPI_MAX_TABLES)
            sig_copy(out->sigs[out->table_count], t);
        out->table_count++;
        bootinfo_reserve(bi, pa, rd32(t + SDT_LENGTH_OFF), KMM_MEM_ACPI_RECLAIMABLE);
        if (memcmp(t, "APIC", 4) == 0)
            out->cpus = madt_cpus(t);
    }
}
