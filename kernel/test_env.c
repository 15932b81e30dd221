/*
 * test_env.c - tests/ktest/env.h in the kernel: test machines carved out of
 * the test arena of real RAM that kmain() found.
 *
 * A machine's fake physical address p lives at arena virtual address
 * base + offset + p, so its port's direct map is base + offset; the library
 * reaches the machine's memory exactly as it would reach real RAM through a
 * kernel's HHDM. Machines alive at the same time get disjoint pieces:
 *
 *   arena  |==machine A: phys 0 .. endA==|pad|==machine B: phys 0 .. endB==|  free  |
 *          ^ base                            ^ base + offset_B (2 MiB aligned)
 *
 * Differences from the hosted twin (tests/ktest/env_hosted.c), which tests
 * must not depend on:
 *   - holes in the map are backed by arena memory too (nothing faults there);
 *   - memory is not cleared: a new machine sees whatever the last one left;
 *   - at most KT_MACHINES machines at once, and only as large as the arena.
 */
#include <kmm/fmt.h>
#include <kmm/port.h>

#include "env.h"
#include "kernel.h"
#include "takeover.h"
#include "ktest.h"
#include "test_env.h"

#define KT_MACHINES      4
#define KT_MIB           (UINT64_C(1) << 20)
/* Machines start 2 MiB apart so a fake address keeps its real one's 2 MiB
 * alignment: what a test sees in a debugger lines up with its huge pages. */
#define KT_MACHINE_ALIGN (2 * KT_MIB)

struct kt_machine {
    uint64_t offset; /* of its physical address 0 from kernel_arena_base */
    uint64_t size;   /* arena bytes it owns: its memory end, page aligned */
    struct kmm_port port;
};

/* The live machines; each comes from the kernel's heap (kalloc). */
static struct kt_machine *machines[KT_MACHINES];

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* The highest end, page aligned, of the ranges the library may touch
 * (env.h: usable, bootloader- and ACPI-reclaimable). Entries that wrap or end
 * above KMM_PHYS_LIMIT are skipped: the library rejects such a map without
 * touching memory, and a test may well build one to see that happen. */
static uint64_t memory_end(const struct kmm_region *map, size_t n)
{
    uint64_t end = 0;
    for (size_t i = 0; map && i < n; i++) {
        const struct kmm_region *r = &map[i];
        bool touchable = r->type == KMM_MEM_USABLE || r->type == KMM_MEM_BOOTLOADER_RECLAIMABLE ||
                         r->type == KMM_MEM_ACPI_RECLAIMABLE;
        if (!touchable || r->length == 0 || r->base > KMM_PHYS_LIMIT ||
            r->length > KMM_PHYS_LIMIT - r->base)
            continue;
        if (r->base + r->length > end)
            end = r->base + r->length;
    }
    return align_up(end, KMM_PAGE_SIZE);
}

static bool overlaps_live(uint64_t offset, uint64_t size)
{
    for (size_t i = 0; i < KT_MACHINES; i++) {
        const struct kt_machine *m = machines[i];
        if (m && offset < m->offset + m->size && m->offset < offset + size)
            return true;
    }
    return false;
}

/* The lowest free offset with room for size bytes: at 0 or right after a
 * live machine. Returns false if there is none. */
static bool find_room(uint64_t size, uint64_t *offset)
{
    for (size_t i = 0; i <= KT_MACHINES; i++) {
        uint64_t c = 0;
        if (i < KT_MACHINES) {
            if (!machines[i])
                continue;
            c = align_up(machines[i]->offset + machines[i]->size, KT_MACHINE_ALIGN);
        }
        if (c <= kernel_arena_size && size <= kernel_arena_size - c && !overlaps_live(c, size)) {
            *offset = c;
            return true;
        }
    }
    return false;
}

/* A free entry of machines[], or NULL if all are taken. */
static struct kt_machine **free_slot(void)
{
    for (size_t i = 0; i < KT_MACHINES; i++)
        if (!machines[i])
            return &machines[i];
    return NULL;
}

struct kt_machine *kt_machine_create(struct ktest *t, const struct kmm_region *map, size_t n)
{
    char why[96];
    uint64_t need = memory_end(map, n);
    if (need > kernel_arena_size) {
        kmm_snprintf(why, sizeof(why), "machine needs %llu MiB, kernel test arena has %llu MiB",
                     (unsigned long long)((need + KT_MIB - 1) / KT_MIB),
                     (unsigned long long)(kernel_arena_size / KT_MIB));
        ktest_skip(t, why);
        return NULL;
    }
    struct kt_machine **slot = free_slot();
    if (!slot) {
        ktest_fail_at(t, __FILE__, __LINE__,
                      "kt_machine_create: all %d kernel test machines are in use", KT_MACHINES);
        return NULL;
    }
    uint64_t offset;
    if (!find_room(need, &offset)) {
        kmm_snprintf(why, sizeof(why),
                     "machine needs %llu MiB, the live machines leave less of the arena",
                     (unsigned long long)((need + KT_MIB - 1) / KT_MIB));
        ktest_skip(t, why);
        return NULL;
    }
    struct kt_machine *m = kalloc(sizeof(*m));
    if (!m) {
        ktest_fail_at(t, __FILE__, __LINE__, "kt_machine_create: the kernel heap is out of memory");
        return NULL;
    }
    *slot = m;
    m->offset = offset;
    m->size = need;
    kport_init(&m->port, kernel_arena_base + (uintptr_t)offset, false);
    return m;
}

struct kmm_port *kt_machine_port(struct kt_machine *m)
{
    return &m->port;
}

/* The arena keeps the machine's addresses beyond its memory end too (up to
 * the next machine), so this is only meaningful for pa in RAM, as env.h asks. */
void *kt_machine_phys(struct kt_machine *m, uint64_t pa)
{
    return (void *)(m->port.direct_map + (uintptr_t)pa);
}

/* A test machine's page tables are never loaded: nothing it maps is live. */
void kt_machine_live_window(struct kt_machine *m, uint64_t *base, uint64_t *size)
{
    (void)m;
    *base = 0;
    *size = 0;
}

unsigned long kt_machine_log_count(struct kt_machine *m, int level)
{
    if (level < 0 || level >= KPORT_LOG_LEVELS)
        return 0;
    return m->port.log_count[level];
}

const char *kt_machine_last_error(struct kt_machine *m)
{
    return m->port.last_error;
}

void kt_machine_destroy(struct kt_machine *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < KT_MACHINES; i++)
        if (machines[i] == m)
            machines[i] = NULL;
    kfree(m);
}

void kt_fill(void *p, uint8_t byte, size_t n)
{
    memset(p, byte, n);
}

int kt_cmp(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n);
}
